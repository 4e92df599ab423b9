//! The 2-level event-channel scan and the fair dispatch cursor, free of `unsafe` and host-tested.
//!
//! Xen's 2-level ABI (`xen/include/public/event_channel.h`, `xen.h`): 4096 ports, one
//! bit each in 64 `evtchn_pending` and `evtchn_mask` words of the shared info page, and
//! a per-vCPU `evtchn_pending_sel` whose bit `w` says word `w` may have pending bits.
//!
//! [`PortMarks`] is the guest's own copy of "which ports fired": one bit per port in 64
//! atomic words plus a word-summary word. The upcall handler calls [`PortMarks::scan`]
//! with the selector it took; the scan reads Xen's words through [`SharedEventWords`]
//! (the kernel's implementation uses the shared info page), acknowledges exactly the
//! pending unmasked bits it takes, and marks them. The main loop calls
//! [`PortMarks::dispatch`], which takes the marks and hands each port to a callback,
//! starting where the previous dispatch stopped, so a busy port cannot starve the
//! others. Both use only atomics: the scan may interrupt a dispatch at any point.
//!
//! [`storm`] decides when a port whose events keep finding no work is masked for a
//! while (event-storm damping, Linux's late EOI).

#![no_std]
#![forbid(unsafe_code)]

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use xen_abi::event_channel::EVTCHN_2L_NR_CHANNELS;
use xen_abi::shared_info::{EVTCHN_WORDS, evtchn_bit, evtchn_word};

/// Xen's pending and mask words of the 2-level ABI, as the scan needs them.
///
/// The implementation decides the memory orderings; the kernel's loads `pending`
/// with Acquire (pairs with Xen's locked set of the bit), `mask` with Relaxed (only
/// the guest writes it) and acknowledges with an AcqRel `fetch_and`.
pub trait SharedEventWords {
    /// Word `w` (0..64) of `evtchn_pending`; 0 if there is no such word.
    fn pending(&self, w: usize) -> u64;
    /// Word `w` (0..64) of `evtchn_mask`; all ones if there is no such word.
    fn mask(&self, w: usize) -> u64;
    /// Clears `bits` in word `w` of `evtchn_pending` (the acknowledgement: a new
    /// event on one of those ports sets its bit again and raises a new upcall).
    fn acknowledge(&self, w: usize, bits: u64);
}

/// A port number outside the 2-level range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadPort(pub u64);

impl fmt::Display for BadPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {} is outside the 2-level range", self.0)
    }
}

/// Checks a port number from Xen or an HVM parameter: `1..4096` (port 0 is never a
/// valid channel).
pub fn checked_port(raw: u64) -> Result<u32, BadPort> {
    u32::try_from(raw)
        .ok()
        .filter(|&p| p != 0 && p < EVTCHN_2L_NR_CHANNELS)
        .ok_or(BadPort(raw))
}

/// The ports marked as fired and not yet dispatched, with the scan's and the
/// dispatch's cursors.
#[derive(Debug)]
pub struct PortMarks {
    /// One bit per port, same layout as Xen's words.
    words: [AtomicU64; EVTCHN_WORDS],
    /// Bit `w` set: word `w` of `words` may have bits.
    summary: AtomicU64,
    /// Word the next scan starts at (only the upcall handler uses it).
    scan_word: AtomicUsize,
    /// Port the next dispatch starts at (only the main loop uses it).
    dispatch_cursor: AtomicU32,
}

impl Default for PortMarks {
    fn default() -> Self {
        Self::new()
    }
}

impl PortMarks {
    /// No port marked, both cursors at 0.
    pub const fn new() -> Self {
        PortMarks {
            words: [const { AtomicU64::new(0) }; EVTCHN_WORDS],
            summary: AtomicU64::new(0),
            scan_word: AtomicUsize::new(0),
            dispatch_cursor: AtomicU32::new(0),
        }
    }

    /// Takes the pending unmasked ports of the words selected in `sel`, acknowledges
    /// them in `shared` and marks them. The word order starts after the word where the
    /// previous scan last found ports, so no word is always served first. Returns the
    /// number of ports marked.
    pub fn scan(&self, sel: u64, shared: &impl SharedEventWords) -> u32 {
        // Relaxed: only the (non-reentrant) upcall handler touches scan_word.
        let start = self.scan_word.load(Ordering::Relaxed) % EVTCHN_WORDS;
        let mut resume_at = start;
        let mut marked = 0;
        for i in 0..EVTCHN_WORDS {
            let w = (start + i) % EVTCHN_WORDS;
            if sel & (1u64 << w) == 0 {
                continue;
            }
            let ready = shared.pending(w) & !shared.mask(w);
            if ready == 0 {
                continue;
            }
            shared.acknowledge(w, ready);
            self.mark_word(w, ready);
            marked += ready.count_ones();
            resume_at = (w + 1) % EVTCHN_WORDS;
        }
        // Relaxed: handler-private.
        self.scan_word.store(resume_at, Ordering::Relaxed);
        marked
    }

    /// ORs `bits` into word `w` and flags the word in the summary.
    fn mark_word(&self, w: usize, bits: u64) {
        if let Some(word) = self.words.get(w) {
            // Release (both): the marks are visible before the main loop can see the
            // summary bit that points at them.
            word.fetch_or(bits, Ordering::Release);
            self.summary.fetch_or(1u64 << w, Ordering::Release);
        }
    }

    /// Marks `port` (an event that arrived while its handler was running, or a test).
    pub fn mark(&self, port: u32) {
        if port < EVTCHN_2L_NR_CHANNELS {
            self.mark_word(evtchn_word(port), evtchn_bit(port));
        }
    }

    /// Whether any port is marked.
    pub fn any(&self) -> bool {
        // Acquire: pairs with the Release of the summary bit.
        self.summary.load(Ordering::Acquire) != 0
    }

    /// Whether `port` is marked (without taking it).
    pub fn is_marked(&self, port: u32) -> bool {
        // Acquire: pairs with the Release in `mark_word`.
        self.words
            .get(evtchn_word(port))
            .is_some_and(|w| w.load(Ordering::Acquire) & evtchn_bit(port) != 0)
    }

    /// Whether a port other than `port` is marked.
    pub fn any_except(&self, port: u32) -> bool {
        // Acquire: pairs with the Release of the summary bit.
        let words = self.summary.load(Ordering::Acquire);
        let own = evtchn_word(port);
        (0..EVTCHN_WORDS)
            .filter(|w| words & (1u64 << w) != 0)
            .any(|w| {
                let keep = if w == own { evtchn_bit(port) } else { 0 };
                // Acquire: as above.
                self.words
                    .get(w)
                    .is_some_and(|m| m.load(Ordering::Acquire) & !keep != 0)
            })
    }

    /// Takes `port`'s mark: true if it was marked.
    pub fn take(&self, port: u32) -> bool {
        let bit = evtchn_bit(port);
        self.words.get(evtchn_word(port)).is_some_and(|word| {
            // AcqRel: takes the mark; Acquire pairs with the Release in `mark_word`.
            word.fetch_and(!bit, Ordering::AcqRel) & bit != 0
        })
    }

    /// Forgets every mark (a resume in a new domain: the old ports are gone).
    pub fn clear(&self) {
        // AcqRel (all): discards; a scan may set new marks concurrently, which is
        // harmless (at worst a spurious dispatch of a port with no handler).
        self.summary.swap(0, Ordering::AcqRel);
        for word in &self.words {
            word.swap(0, Ordering::AcqRel);
        }
    }

    /// Takes the marked ports, except `keep` (whose mark stays for [`PortMarks::take`]),
    /// and calls `run` for each, in port order starting at the port after the one the
    /// previous dispatch handed out last and wrapping around; each port at most once
    /// per call however often it fired. `run` may re-enter (a nested dispatch, or a
    /// scan from an upcall): the cursor moves after each port. Returns how many calls
    /// of `run` returned true.
    pub fn dispatch(&self, keep: Option<u32>, mut run: impl FnMut(u32) -> bool) -> usize {
        // AcqRel: takes the summary; Acquire makes the marks it points at visible.
        let words = self.summary.swap(0, Ordering::AcqRel);
        if words == 0 {
            return 0;
        }
        // Relaxed: main-loop private.
        let cursor = self.dispatch_cursor.load(Ordering::Relaxed) % EVTCHN_2L_NR_CHANNELS;
        let start_word = evtchn_word(cursor);
        let cursor_bit = cursor % 64;
        let mut ran = 0;
        for i in 0..=EVTCHN_WORDS {
            let w = (start_word + i) % EVTCHN_WORDS;
            if words & (1u64 << w) == 0 {
                continue;
            }
            let Some(marked) = self.words.get(w) else {
                continue;
            };
            // The first word is visited twice: its ports from the cursor on first, the
            // ones before the cursor last.
            let range_mask = if i == 0 {
                u64::MAX << cursor_bit
            } else if i == EVTCHN_WORDS {
                !(u64::MAX << cursor_bit)
            } else {
                u64::MAX
            };
            let kept = keep.filter(|&p| evtchn_word(p) == w).map_or(0, evtchn_bit);
            let take = range_mask & !kept;
            // AcqRel: takes the marks in `take`, leaving the others.
            let old = marked.fetch_and(!take, Ordering::AcqRel);
            if old & !take != 0 {
                // Marks left (the kept port, or the other half of the first word):
                // keep the word visible. Release: pairs with the Acquire swap above.
                self.summary.fetch_or(1u64 << w, Ordering::Release);
            }
            let mut bits = old & take;
            while bits != 0 {
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                let port = (w as u32) * 64 + bit;
                if run(port) {
                    ran += 1;
                }
                // Relaxed: main-loop private.
                self.dispatch_cursor
                    .store(port.wrapping_add(1), Ordering::Relaxed);
            }
        }
        ran
    }
}

pub mod storm;

#[cfg(test)]
mod tests;
