//! The transmit side: a pool of pre-granted pages reused on completion, multi-slot frames, re-send after resume.
//!
//! Protocol (`xen/include/public/io/netif.h`, "Guest transmit"): a frame is
//! one `netif_tx_request` whose `size` is the whole frame, followed, while
//! `NETTXF_more_data` is set, by requests whose `size` is their fragment's
//! (multi-slot frames need the back end's `feature-sg`). Every request gets a
//! `netif_tx_response` echoing its id, in any order.
//!
//! Each pool slot owns one page, granted read-only to the back end when the
//! connection is set up and kept granted for the connection's lifetime, and
//! the slot's index is the request id. Sending copies the frame into free
//! slots' pages and posts them; a response frees its slot once every slot of
//! its frame has completed. So the steady state allocates nothing and issues
//! no grant.
//!
//! Responses are validated on a local copy: the id must name a pool slot with
//! a request in flight, the status must be `NETIF_RSP_OKAY`, `_ERROR` or
//! `_DROPPED` (we send no extra-info requests, so `NETIF_RSP_NULL` is a
//! violation). A violation is a sticky [`Fault`] (as Linux netfront marks
//! the device broken): the back end's view of our ids is then unknowable.
//!
//! After a resume in a new domain, frames still in flight whose slots have
//! not completed are posted again, in their original order, on the new ring
//! with the pages' new grants.
//!
//! No-panic promise: ids index through `get`/`get_mut`, chunk arithmetic is
//! bounded by the frame length, which is checked first.

use alloc::vec;
use alloc::vec::Vec;

use xen_abi::PAGE_SIZE;
use xen_abi::netif::{
    NETIF_RSP_DROPPED, NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETTXF_CSUM_BLANK, NETTXF_MORE_DATA,
    NetifTxRequest,
};
use xen_ring::{RingError, SharedRing};

use crate::error::{Fault, NetError, TxError};
use crate::wire::{TxReq, TxRsp};
use xen_frontend::{Held, RingHalf};

/// "No slot" in the per-frame slot chains.
const NONE: u16 = u16::MAX;
/// Most slots one frame may use (`XEN_NETIF_NR_SLOTS_MIN`: every back end
/// accepts this many); a 65535-byte frame needs 16.
const MAX_TX_SLOTS: usize = xen_abi::netif::XEN_NETIF_NR_SLOTS_MIN;

/// Transmit counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TxStats {
    /// Frames posted (re-sends not included).
    pub packets: u64,
    /// Bytes posted.
    pub bytes: u64,
    /// Frames completed with `NETIF_RSP_OKAY`.
    pub completed: u64,
    /// Frames the back end answered with `NETIF_RSP_ERROR`/`_DROPPED`.
    pub errors: u64,
    /// Frames posted again on a new ring after a resume.
    pub resent: u64,
    /// Frames lost: in flight when the back end closed, partly completed
    /// when the domain was saved, or handed to the smoltcp token when no pool
    /// page was free.
    pub dropped: u64,
    /// Frames that needed more than one slot.
    pub multi_slot: u64,
    /// Frames sent with their TCP/UDP checksum left to the back end
    /// (`NETTXF_csum_blank`).
    pub csum_offloaded: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Free,
    /// Posted (or waiting to be re-posted after a resume).
    InFlight {
        /// Frame sequence number (orders re-sends).
        seq: u64,
        /// The request, without its grant reference.
        req: NetifTxRequest,
        /// First slot of the frame.
        head: u16,
        /// Next slot of the frame, or [`NONE`].
        next: u16,
        /// Its response has arrived.
        done: bool,
        /// (Head only) slots of the frame still without a response.
        pending: u16,
        /// (Head only) some slot was answered with an error.
        failed: bool,
    },
}

#[derive(Debug)]
pub(crate) struct TxSlot<Pg> {
    pub(crate) held: Held<Pg>,
    state: SlotState,
}

/// The transmit half of the driver.
#[derive(Debug)]
pub(crate) struct Tx<Pg> {
    pub(crate) ring: Option<RingHalf<TxReq, TxRsp, Pg>>,
    pub(crate) slots: Vec<TxSlot<Pg>>,
    /// Free slots with a current grant (capacity = pool size).
    free: Vec<u16>,
    seq: u64,
    scratch: Vec<u8>,
    /// Largest frame accepted.
    pub(crate) max_frame: usize,
    /// The back end accepts multi-slot frames (`feature-sg`).
    pub(crate) sg: bool,
    pub(crate) stats: TxStats,
}

impl<Pg: SharedRing> Tx<Pg> {
    /// A pool of `n` slots (no pages yet) for frames up to `max_frame` bytes.
    pub(crate) fn new(n: usize, max_frame: usize) -> Self {
        let mut slots = Vec::with_capacity(n);
        slots.resize_with(n, || TxSlot {
            held: Held::Empty,
            state: SlotState::Free,
        });
        Self {
            ring: None,
            slots,
            free: Vec::with_capacity(n),
            seq: 0,
            scratch: vec![0; max_frame],
            max_frame,
            sg: false,
            stats: TxStats::default(),
        }
    }

    /// The largest frame sendable now.
    pub(crate) fn frame_limit(&self) -> usize {
        if self.sg {
            self.max_frame
        } else {
            self.max_frame.min(PAGE_SIZE)
        }
    }

    /// Whether a frame of `len` bytes could be posted now.
    pub(crate) fn can_send(&self, len: usize) -> bool {
        let n = len.div_ceil(PAGE_SIZE).max(1);
        self.ring
            .as_ref()
            .is_some_and(|r| r.front.free_requests() as usize >= n)
            && self.free.len() >= n
    }

    /// Rebuilds the free list from the slots that are free and granted
    /// (`is_current`), after (re)granting the pool.
    pub(crate) fn collect_free(&mut self, mut is_current: impl FnMut(&Held<Pg>) -> bool) {
        self.free.clear();
        for (id, s) in self.slots.iter().enumerate() {
            if s.state == SlotState::Free
                && is_current(&s.held)
                && let Ok(id) = u16::try_from(id)
            {
                self.free.push(id);
            }
        }
    }

    /// Forgets the free list (the grants are about to go).
    pub(crate) fn forget_free(&mut self) {
        self.free.clear();
    }

    /// The back end closed: every frame in flight is lost.
    pub(crate) fn drop_in_flight(&mut self) {
        for id in 0..self.slots.len() {
            if let Some(head) = self.head_of(id) {
                self.stats.dropped += 1;
                self.free_frame(head, false);
            }
        }
    }

    /// The head id of the frame occupying slot `id`, if `id` is a head.
    fn head_of(&self, id: usize) -> Option<u16> {
        match self.slots.get(id)?.state {
            SlotState::InFlight { head, .. } if usize::from(head) == id => Some(head),
            _ => None,
        }
    }

    /// Frees every slot of the frame starting at `head`.
    fn free_frame(&mut self, head: u16, to_free_list: bool) {
        let mut id = head;
        let mut guard = self.slots.len();
        while id != NONE && guard > 0 {
            guard -= 1;
            let Some(slot) = self.slots.get_mut(usize::from(id)) else {
                break;
            };
            let next = match slot.state {
                SlotState::InFlight { next, .. } => next,
                SlotState::Free => NONE,
            };
            slot.state = SlotState::Free;
            if to_free_list && self.free.len() < self.free.capacity() {
                self.free.push(id);
            }
            id = next;
        }
    }

    /// Copies a frame built by `fill` into pool pages and posts it. Returns
    /// `fill`'s result and whether the back end must be notified; a frame
    /// that cannot be sent is [`NetError::Tx`], a broken ring
    /// [`NetError::Faulted`].
    pub(crate) fn send<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<(R, bool), NetError> {
        self.check(len)?;
        let r = fill(self.frame_mut(len));
        Ok((r, self.post(len, 0)?))
    }

    /// Whether a frame of `len` bytes can be sent now.
    pub(crate) fn check(&self, len: usize) -> Result<(), TxError> {
        if len < crate::ETH_HLEN {
            return Err(TxError::TooShort(len));
        }
        if len > self.frame_limit() || len > self.scratch.len() {
            return Err(TxError::TooLong(len));
        }
        if !self.can_send(len) {
            return Err(TxError::Busy);
        }
        Ok(())
    }

    /// The staging buffer for a frame of `len` bytes (`len` checked).
    pub(crate) fn frame_mut(&mut self, len: usize) -> &mut [u8] {
        let n = len.min(self.scratch.len());
        self.scratch.get_mut(..n).unwrap_or(&mut [])
    }

    /// Copies the staged frame of `len` bytes (checked by [`Self::check`])
    /// into free pool pages and posts it, with `flags` (`NETTXF_csum_blank`,
    /// `NETTXF_data_validated`) on its first request. Returns whether the
    /// back end must be notified.
    pub(crate) fn post(&mut self, len: usize, flags: u16) -> Result<bool, Fault> {
        let n = len.div_ceil(PAGE_SIZE);
        if n == 0 || n > MAX_TX_SLOTS || self.free.len() < n {
            return Ok(false);
        }
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        // Take n free slots; link them in order.
        let mut ids = [NONE; MAX_TX_SLOTS];
        for slot in ids.iter_mut().take(n) {
            *slot = self.free.pop().unwrap_or(NONE);
        }
        let head = ids.first().copied().unwrap_or(NONE);
        for (k, &id) in ids.iter().enumerate().take(n) {
            let start = k * PAGE_SIZE;
            let chunk = (len - start).min(PAGE_SIZE);
            let more = k + 1 < n;
            // The first slot states the whole frame (len <= 65535, checked).
            let size = if k == 0 { len } else { chunk } as u16;
            let Some(slot) = self.slots.get_mut(usize::from(id)) else {
                continue;
            };
            if let (Some(g), Some(data)) =
                (slot.held.grant(), self.scratch.get(start..start + chunk))
            {
                g.buffer().write_bytes(0, data);
            }
            slot.state = SlotState::InFlight {
                seq,
                req: NetifTxRequest {
                    gref: 0,
                    offset: 0,
                    flags: if more { NETTXF_MORE_DATA } else { 0 } | if k == 0 { flags } else { 0 },
                    id,
                    size,
                },
                head,
                next: if more {
                    ids.get(k + 1).copied().unwrap_or(NONE)
                } else {
                    NONE
                },
                done: false,
                pending: n as u16,
                failed: false,
            };
        }
        self.stats.packets += 1;
        self.stats.bytes += len as u64;
        if flags & NETTXF_CSUM_BLANK != 0 {
            self.stats.csum_offloaded += 1;
        }
        if n > 1 {
            self.stats.multi_slot += 1;
        }
        self.post_frame(head)?;
        self.push()
    }

    /// Produces the requests of the frame starting at `head`, with the slots'
    /// current grant references.
    fn post_frame(&mut self, head: u16) -> Result<(), Fault> {
        let Some(ring) = self.ring.as_mut() else {
            return Ok(());
        };
        let mut id = head;
        let mut guard = self.slots.len();
        while id != NONE && guard > 0 {
            guard -= 1;
            let Some(slot) = self.slots.get(usize::from(id)) else {
                break;
            };
            let SlotState::InFlight { mut req, next, .. } = slot.state else {
                break;
            };
            req.gref = slot.held.grant().map_or(0, |g| g.gref());
            match ring.front.produce(ring.page.buffer(), &TxReq(req)) {
                Ok(_) => {}
                // Capacity was checked; a full ring leaves the rest unposted.
                Err(RingError::Full) => break,
                Err(RingError::Backend(f)) => return Err(Fault::TxRing(f)),
            }
            id = next;
        }
        Ok(())
    }

    fn push(&mut self) -> Result<bool, Fault> {
        let Some(ring) = self.ring.as_mut() else {
            return Ok(false);
        };
        match ring
            .front
            .push_requests_and_check_notify(ring.page.buffer())
        {
            Ok(n) => Ok(n),
            Err(RingError::Full) => Ok(true),
            Err(RingError::Backend(f)) => Err(Fault::TxRing(f)),
        }
    }

    /// Consumes tx responses, freeing completed frames' slots. Returns how
    /// many responses were consumed.
    pub(crate) fn reclaim(&mut self) -> Result<u32, Fault> {
        let mut n = 0u32;
        loop {
            let Some(ring) = self.ring.as_mut() else {
                return Ok(n);
            };
            let rsp = match ring.front.next_response(ring.page.buffer()) {
                Ok(Some(TxRsp(r))) => r,
                Ok(None) | Err(RingError::Full) => return Ok(n),
                Err(RingError::Backend(f)) => return Err(Fault::TxRing(f)),
            };
            n = n.wrapping_add(1);
            self.complete(rsp.id, rsp.status)?;
        }
    }

    fn complete(&mut self, id: u16, status: i16) -> Result<(), Fault> {
        let failed = match status {
            NETIF_RSP_OKAY => false,
            NETIF_RSP_ERROR | NETIF_RSP_DROPPED => true,
            _ => return Err(Fault::TxBadStatus { id, status }),
        };
        let slot = self
            .slots
            .get_mut(usize::from(id))
            .ok_or(Fault::TxUnknownId(id))?;
        let head = match &mut slot.state {
            SlotState::InFlight { done, head, .. } if !*done => {
                *done = true;
                *head
            }
            _ => return Err(Fault::TxNotInFlight(id)),
        };
        let finished = match self.slots.get_mut(usize::from(head)).map(|s| &mut s.state) {
            Some(SlotState::InFlight {
                pending, failed: f, ..
            }) => {
                *pending = pending.saturating_sub(1);
                *f |= failed;
                (*pending == 0).then_some(*f)
            }
            _ => None,
        };
        if let Some(frame_failed) = finished {
            if frame_failed {
                self.stats.errors += 1;
            } else {
                self.stats.completed += 1;
            }
            self.free_frame(head, true);
        }
        Ok(())
    }

    /// After a resume: frames none of whose slots completed are posted again
    /// in their original order (the pool must be re-granted first); frames
    /// that partly completed were consumed by the old back end and are
    /// dropped. Returns whether the back end must be notified.
    pub(crate) fn resend(&mut self) -> Result<bool, Fault> {
        // Heads of frames in flight, ordered by sequence number (no
        // allocation: at most one head per slot, sorted in place).
        let mut heads = [(0u64, NONE); xen_abi::netif::NET_TX_RING_SIZE];
        let mut count = 0usize;
        for id in 0..self.slots.len() {
            let Some(head) = self.head_of(id) else {
                continue;
            };
            let (seq, intact) = self.frame_status(head);
            if !intact {
                self.stats.dropped += 1;
                self.free_frame(head, true);
                continue;
            }
            if let Some(h) = heads.get_mut(count) {
                *h = (seq, head);
                count += 1;
            }
        }
        let heads = heads.get_mut(..count).unwrap_or(&mut []);
        heads.sort_unstable_by_key(|(seq, _)| *seq);
        for &(_, head) in heads.iter() {
            self.post_frame(head)?;
            self.stats.resent += 1;
        }
        if count == 0 {
            return Ok(false);
        }
        self.push()
    }

    /// (sequence number, whether no slot of the frame has completed).
    fn frame_status(&self, head: u16) -> (u64, bool) {
        let mut id = head;
        let mut seq0 = 0;
        let mut guard = self.slots.len();
        while id != NONE && guard > 0 {
            guard -= 1;
            match self.slots.get(usize::from(id)).map(|s| s.state) {
                Some(SlotState::InFlight {
                    seq, next, done, ..
                }) => {
                    if done {
                        return (seq, false);
                    }
                    seq0 = seq;
                    id = next;
                }
                _ => break,
            }
        }
        (seq0, true)
    }

    /// Frames in flight.
    pub(crate) fn in_flight(&self) -> usize {
        (0..self.slots.len())
            .filter(|&id| self.head_of(id).is_some())
            .count()
    }
}
