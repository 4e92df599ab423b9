//! Event channels: the upcall on an IDT vector, the 2-level scan, typed ports, dispatch, idle.
//!
//! Sources: `xen/include/public/event_channel.h` (operations, 2-level ABI),
//! `xen/include/public/xen.h` (`evtchn_pending`, `evtchn_mask`, `evtchn_pending_sel`,
//! `evtchn_upcall_pending`), `xen/include/public/hvm/params.h` (`HVM_PARAM_CALLBACK_IRQ`)
//! and `xen/include/public/features.h` (`XENFEAT_hvm_callback_vector`).
//!
//! **Delivery.** Upcalls arrive on IDT vector [`UPCALL_VECTOR`], registered with
//! `HVM_PARAM_CALLBACK_IRQ` of type "vector" (the global callback). Xen injects that
//! vector directly, not through the local APIC, for as long as vCPU 0's
//! `evtchn_upcall_pending` is set and `RFLAGS.IF` allows: so no LAPIC EOI is needed, but
//! the handler must clear `evtchn_upcall_pending`. (The alternative, the per-vCPU
//! `HVMOP_set_evtchn_upcall_vector`, goes through the LAPIC and would need an EOI; one
//! vCPU needs none of its benefits.)
//!
//! **The interrupt handler only marks.** [`upcall`] clears `evtchn_upcall_pending`,
//! takes `evtchn_pending_sel`, and for each selected word takes the pending, unmasked
//! bits: it clears them in Xen's `evtchn_pending` (the acknowledgement: the next event
//! on that port sets the bit again and raises another upcall) and ORs them into this
//! module's own bitmap. The word scan starts after the word where the previous upcall
//! stopped, so no word is always served first. It takes no lock and calls no handler.
//!
//! **The main loop dispatches.** [`dispatch`] takes the marked ports and calls the
//! handler registered for each ([`Port::set_handler`]), resuming the port order where
//! the previous dispatch stopped. A handler runs outside every lock of this module; if
//! its port fires again while it runs (from a nested dispatch, see `xen::wait`), the
//! event is kept and the handler runs again once it returns.
//!
//! **Ports** are move-only handles ([`Port`]): [`Port::close`] consumes the handle, so a
//! closed port cannot be used. A handle from before a resume in a new domain is stale
//! (the port number may now mean something else) and every operation on it fails with
//! [`EventError::Stale`]. Ports start masked and are unmasked when a handler is set.
//!
//! **Idle** ([`idle`]) is race-free: with interrupts disabled it checks for marked
//! ports, and only if there are none executes `sti; hlt` (the `sti` shadow covers the
//! `hlt`, so an upcall arriving after the check wakes the `hlt` rather than being
//! taken before it). Xen blocks the vCPU in `hlt` until an event: an idle guest uses
//! no CPU.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use evtchn_scan::{PortMarks, SharedEventWords};
use spin::Mutex;
use x86_64::instructions::interrupts;
use xen_abi::DomId;
use xen_abi::event_channel::EvtchnPort;
use xen_abi::features::{XENFEAT_HVM_CALLBACK_VECTOR, has_feature, submap_index};
use xen_abi::hvm::{HVM_PARAM_CALLBACK_IRQ, callback_via_vector};
use xen_abi::shared_info::{EVTCHN_WORDS, evtchn_bit, evtchn_word};

use crate::arch::hypercall::{self, HypercallError};
use crate::xen::shared_info::{self, SharedInfo};

/// The IDT vector Xen delivers event upcalls on (Linux's `HYPERVISOR_CALLBACK_VECTOR`).
pub const UPCALL_VECTOR: u8 = 0xf3;

/// Upcall loop passes before returning (the vector is re-raised if more is pending).
const MAX_UPCALL_PASSES: u32 = 64;

/// Ports marked pending by [`upcall`], with the scan's and the dispatch's cursors
/// (the logic is the host-tested `evtchn-scan` crate).
static MARKS: PortMarks = PortMarks::new();
/// Incremented by every resume in a new domain: ports of older epochs are stale.
static EPOCH: AtomicU32 = AtomicU32::new(0);
/// True once the upcall vector is registered with Xen.
static READY: AtomicBool = AtomicBool::new(false);

/// Upcalls taken.
static UPCALLS: AtomicU64 = AtomicU64::new(0);
/// Handler calls made by [`dispatch`].
static DISPATCHED: AtomicU64 = AtomicU64::new(0);
/// Marked ports that had no handler.
static UNHANDLED: AtomicU64 = AtomicU64::new(0);

/// A port handler, run by the main loop (never in interrupt context).
pub type Handler = Box<dyn FnMut() + Send>;

/// The registered handler of one port.
struct Slot {
    /// `None` while the handler is running.
    handler: Option<Handler>,
    /// Changes whenever the slot is (re)registered, so a returning handler does not
    /// overwrite a newer one.
    generation: u64,
    /// The port fired while the handler was running: run it again afterwards.
    rerun: bool,
}

/// Handlers by port number (main loop only; never locked in interrupt context).
static HANDLERS: Mutex<BTreeMap<EvtchnPort, Slot>> = Mutex::new(BTreeMap::new());
/// Source of [`Slot::generation`] values.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// Why an event-channel operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventError {
    /// The hypercall failed.
    Hypercall(HypercallError),
    /// The handle is from before a resume in a new domain.
    Stale,
    /// Xen (or an HVM parameter) named a port outside the 2-level range.
    BadPort(u64),
    /// Xen lacks `XENFEAT_hvm_callback_vector`.
    NoCallbackVector,
    /// The shared info page is not mapped.
    NoSharedInfo,
    /// Registering the IDT vector failed.
    Vector(boot::interrupts::RegisterError),
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::Hypercall(e) => write!(f, "{e}"),
            EventError::Stale => f.write_str("port handle is from before the last resume"),
            EventError::BadPort(p) => write!(f, "port {p} is outside the 2-level range"),
            EventError::NoCallbackVector => f.write_str("Xen lacks XENFEAT_hvm_callback_vector"),
            EventError::NoSharedInfo => f.write_str("shared info page not mapped"),
            EventError::Vector(e) => write!(f, "IDT vector: {e}"),
        }
    }
}

impl From<HypercallError> for EventError {
    fn from(e: HypercallError) -> Self {
        EventError::Hypercall(e)
    }
}

/// Counters for diagnostics.
#[derive(Clone, Copy, Debug, Default)]
pub struct EventStats {
    /// Upcalls taken.
    pub upcalls: u64,
    /// Handler calls.
    pub dispatched: u64,
    /// Marked ports without a handler.
    pub unhandled: u64,
}

/// The counters.
pub fn stats() -> EventStats {
    // Relaxed (all three): plain counters, no data published through them.
    EventStats {
        upcalls: UPCALLS.load(Ordering::Relaxed),
        dispatched: DISPATCHED.load(Ordering::Relaxed),
        unhandled: UNHANDLED.load(Ordering::Relaxed),
    }
}

/// The upcall handler (interrupt context, interrupts disabled): clears the upcall
/// flag, scans and acknowledges pending unmasked ports, marks them. No locks.
fn upcall() {
    // Relaxed: a counter.
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    scan_pending();
}

/// The upcall's work: clears the upcall flag, scans and acknowledges pending unmasked
/// ports, marks them. Also run by [`idle_until`] with interrupts off, for events Xen
/// set pending whose upcall has not come.
fn scan_pending() {
    let Some(si) = shared_info::get() else {
        return;
    };
    for _ in 0..MAX_UPCALL_PASSES {
        // SeqCst store, then the swap below (a locked xchg): the flag is cleared before
        // the selector is read, so an event Xen posts after the read sets the flag again
        // and is caught by the check at the end of this pass (or re-raises the vector).
        si.upcall_pending().store(0, Ordering::SeqCst);
        // AcqRel: takes the selector; Acquire makes the pending bits Xen set before
        // setting the selector bits visible to the scan.
        let sel = si.pending_sel().swap(0, Ordering::AcqRel);
        if sel != 0 {
            MARKS.scan(sel, &si);
        }
        // Acquire: a flag Xen set after our clear comes with its pending/selector bits.
        if si.upcall_pending().load(Ordering::Acquire) == 0 {
            break;
        }
    }
}

/// Xen's pending and mask words on the mapped shared info page.
impl SharedEventWords for SharedInfo {
    fn pending(&self, w: usize) -> u64 {
        // Acquire: pairs with Xen's locked set of the pending bit.
        self.pending_word(w)
            .map_or(0, |p| p.load(Ordering::Acquire))
    }

    fn mask(&self, w: usize) -> u64 {
        // Relaxed: only the guest writes the mask.
        self.mask_word(w)
            .map_or(u64::MAX, |m| m.load(Ordering::Relaxed))
    }

    fn acknowledge(&self, w: usize, bits: u64) {
        if let Some(pending) = self.pending_word(w) {
            // AcqRel: acknowledges exactly the bits taken; a bit Xen sets again after
            // this is a new event (with a new selector bit and upcall).
            pending.fetch_and(!bits, Ordering::AcqRel);
        }
    }
}

/// Masks every port of the current shared info page.
fn mask_all(si: &SharedInfo) {
    for w in 0..EVTCHN_WORDS {
        if let Some(mask) = si.mask_word(w) {
            // Release: Xen reads the mask when it posts an event; no guest data is
            // published through it, Release just keeps the stores in program order.
            mask.store(u64::MAX, Ordering::Release);
        }
    }
}

/// Sets up delivery: checks `XENFEAT_hvm_callback_vector`, masks all ports, registers
/// [`upcall`] on [`UPCALL_VECTOR`] and tells Xen (`HVM_PARAM_CALLBACK_IRQ`). Interrupts
/// stay as they are (the caller enables them).
pub fn init() -> Result<u8, EventError> {
    let submap = hypercall::xen_features(submap_index(XENFEAT_HVM_CALLBACK_VECTOR))?;
    if !has_feature(submap, XENFEAT_HVM_CALLBACK_VECTOR) {
        return Err(EventError::NoCallbackVector);
    }
    let si = shared_info::get().ok_or(EventError::NoSharedInfo)?;
    mask_all(&si);
    boot::interrupts::register_interrupt_handler(UPCALL_VECTOR, upcall)
        .map_err(EventError::Vector)?;
    hypercall::hvm_set_param(HVM_PARAM_CALLBACK_IRQ, callback_via_vector(UPCALL_VECTOR))?;
    // Release: everything above happens before code that sees READY relies on upcalls.
    READY.store(true, Ordering::Release);
    Ok(UPCALL_VECTOR)
}

/// After a resume in a NEW domain (shared info already re-mapped): every old port is
/// gone. Makes old handles stale, drops all handlers and marks, masks all ports of the
/// new page and registers the callback vector again (`HVM_PARAM_CALLBACK_IRQ` is not
/// part of the saved state). Call with interrupts disabled.
pub fn resume_new_domain() -> Result<(), EventError> {
    // Relaxed: the epoch is only compared by main-loop code, which runs after this.
    EPOCH.fetch_add(1, Ordering::Relaxed);
    HANDLERS.lock().clear();
    MARKS.clear();
    let si = shared_info::get().ok_or(EventError::NoSharedInfo)?;
    mask_all(&si);
    hypercall::hvm_set_param(HVM_PARAM_CALLBACK_IRQ, callback_via_vector(UPCALL_VECTOR))?;
    Ok(())
}

/// Whether upcalls are set up (otherwise waiting falls back to polling).
pub fn ready() -> bool {
    // Acquire: pairs with the Release in `init`.
    READY.load(Ordering::Acquire)
}

/// Whether any port is marked and not yet dispatched.
pub fn anything_marked() -> bool {
    MARKS.any()
}

/// Checks a port number from Xen or an HVM parameter.
fn checked_port(raw: u64) -> Result<EvtchnPort, EventError> {
    evtchn_scan::checked_port(raw).map_err(|e| EventError::BadPort(e.0))
}

/// A bound local event channel. Move-only: [`Port::close`] consumes it. Dropping it
/// without closing leaves the port bound (a leak, never a misuse).
#[must_use = "dropping a Port leaves it bound; close it with Port::close"]
#[derive(Debug, PartialEq, Eq)]
pub struct Port {
    /// The port number.
    number: EvtchnPort,
    /// The epoch it was bound in.
    epoch: u32,
}

impl Port {
    /// Wraps a port number Xen returned in the current epoch.
    fn new(raw: u64) -> Result<Port, EventError> {
        Ok(Port {
            number: checked_port(raw)?,
            // Relaxed: see EPOCH.
            epoch: EPOCH.load(Ordering::Relaxed),
        })
    }

    /// The port number (for xenstore, e.g. `event-channel`).
    pub fn number(&self) -> EvtchnPort {
        self.number
    }

    /// Whether the handle predates the last resume in a new domain.
    pub fn is_stale(&self) -> bool {
        // Relaxed: see EPOCH.
        self.epoch != EPOCH.load(Ordering::Relaxed)
    }

    /// Fails with [`EventError::Stale`] for a stale handle.
    fn live(&self) -> Result<EvtchnPort, EventError> {
        if self.is_stale() {
            Err(EventError::Stale)
        } else {
            Ok(self.number)
        }
    }

    /// `EVTCHNOP_send`: notifies the remote end.
    pub fn send(&self) -> Result<(), EventError> {
        hypercall::evtchn_send(self.live()?).map_err(EventError::from)
    }

    /// `EVTCHNOP_status`: whether the remote end is bound (interdomain). After the
    /// peer closed its end, Xen leaves ours unbound, waiting for it: false.
    pub fn peer_bound(&self) -> Result<bool, EventError> {
        let st = hypercall::evtchn_status(self.live()?)?;
        Ok(st.status == xen_abi::event_channel::EVTCHNSTAT_INTERDOMAIN)
    }

    /// `EVTCHNOP_unmask`: enables delivery (a pending event is delivered at once).
    pub fn unmask(&self) -> Result<(), EventError> {
        hypercall::evtchn_unmask(self.live()?).map_err(EventError::from)
    }

    /// Masks the port (delivery stops; events stay pending in Xen).
    pub fn mask(&self) -> Result<(), EventError> {
        let port = self.live()?;
        let si = shared_info::get().ok_or(EventError::NoSharedInfo)?;
        if let Some(mask) = si.mask_word(evtchn_word(port)) {
            // Release: keeps program order with the caller's earlier accesses; Xen
            // reads the bit with a locked instruction.
            mask.fetch_or(evtchn_bit(port), Ordering::Release);
        }
        Ok(())
    }

    /// Registers `handler` to run in the main loop whenever the port fires (replacing
    /// any previous one), then unmasks the port.
    pub fn set_handler(&self, handler: Handler) -> Result<(), EventError> {
        let port = self.live()?;
        // Relaxed: a unique-id counter.
        let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        HANDLERS.lock().insert(
            port,
            Slot {
                handler: Some(handler),
                generation,
                rerun: false,
            },
        );
        self.unmask()
    }

    /// Takes this port's mark: true if it fired since the last take or dispatch.
    pub fn take_pending(&self) -> bool {
        let Ok(port) = self.live() else {
            return false;
        };
        MARKS.take(port)
    }

    /// `EVTCHNOP_close`: masks and closes the port and drops its handler. A stale
    /// handle is just forgotten (its port died with the old domain).
    pub fn close(self) -> Result<(), EventError> {
        if self.is_stale() {
            return Ok(());
        }
        let _ = self.mask();
        HANDLERS.lock().remove(&self.number);
        hypercall::evtchn_close(self.number).map_err(EventError::from)
    }
}

/// Masks (`masked`) or unmasks the port numbered `port` of the current domain: event
/// storm damping (`evtchn_scan::storm`) by the device that owns the port. Events that
/// arrive while it is masked stay pending in Xen and are delivered by the unmask.
pub fn set_masked(port: EvtchnPort, masked: bool) -> Result<(), EventError> {
    // A handle of the current epoch for the number; it is not closed when dropped
    // (the owner keeps its own handle).
    let handle = Port::new(u64::from(port))?;
    if masked {
        handle.mask()
    } else {
        handle.unmask()
    }
}

/// `EVTCHNOP_alloc_unbound`: a new port that `remote_dom` may bind to.
pub fn alloc_unbound(remote_dom: DomId) -> Result<Port, EventError> {
    Port::new(u64::from(hypercall::evtchn_alloc_unbound(remote_dom)?))
}

/// `EVTCHNOP_bind_virq` on vCPU 0.
pub fn bind_virq(virq: u32) -> Result<Port, EventError> {
    Port::new(u64::from(hypercall::evtchn_bind_virq(virq, 0)?))
}

/// `EVTCHNOP_bind_interdomain`: connects to `remote_port` of `remote_dom`.
pub fn bind_interdomain(remote_dom: DomId, remote_port: EvtchnPort) -> Result<Port, EventError> {
    Port::new(u64::from(hypercall::evtchn_bind_interdomain(
        remote_dom,
        remote_port,
    )?))
}

/// Takes over a port the toolstack bound for us (xenstore, console), as read from an
/// HVM parameter; the value is checked.
pub fn adopt(raw: u64) -> Result<Port, EventError> {
    Port::new(raw)
}

/// Set when a nested [`dispatch`] (one that waits for a port, `xen::wait`) ran
/// handlers: see [`take_nested_work`].
static NESTED_WORK: AtomicBool = AtomicBool::new(false);

/// Runs the handlers of marked ports, except `except` (whose mark is left for
/// [`Port::take_pending`]). Returns the number of handlers run.
pub fn dispatch(except: Option<&Port>) -> usize {
    let keep = except.and_then(|p| p.live().ok());
    let n = MARKS.dispatch(keep, run_handler);
    if except.is_some() && n > 0 {
        // Relaxed: read by the same (only) CPU's main loop, no data published.
        NESTED_WORK.store(true, Ordering::Relaxed);
    }
    n
}

/// Whether handlers ran inside a wait for one port since the last call (and
/// clears it). Such a wait (a xenstore request, e.g. the grant counters' write
/// after the pumps) takes the marks of every port it dispatches: a device's
/// event or the one-shot timer that was to wake the main loop for its next
/// pass is spent there, and the loop must not go idle as if nothing had come,
/// or it could sleep with no wake-up left until some other event (a hazard
/// found while tracing the stall of docs/CORE.md, "The lost wake-up of
/// 2026-12-03", not that stall's cause).
pub fn take_nested_work() -> bool {
    // Relaxed: see `dispatch`.
    NESTED_WORK.swap(false, Ordering::Relaxed)
}

/// Runs `port`'s handler outside the lock. Returns whether one ran.
fn run_handler(port: EvtchnPort) -> bool {
    let taken = {
        let mut handlers = HANDLERS.lock();
        match handlers.get_mut(&port) {
            Some(slot) => match slot.handler.take() {
                Some(h) => Some((h, slot.generation)),
                None => {
                    // Running further up the stack: run it again when it returns.
                    slot.rerun = true;
                    return false;
                }
            },
            None => None,
        }
    };
    let Some((mut handler, generation)) = taken else {
        // Relaxed: a counter.
        UNHANDLED.fetch_add(1, Ordering::Relaxed);
        return false;
    };
    handler();
    // Relaxed: a counter.
    DISPATCHED.fetch_add(1, Ordering::Relaxed);
    let mut handlers = HANDLERS.lock();
    if let Some(slot) = handlers.get_mut(&port)
        && slot.generation == generation
        && slot.handler.is_none()
    {
        slot.handler = Some(handler);
        if core::mem::take(&mut slot.rerun) {
            // Fired while its handler ran: mark it again.
            MARKS.mark(port);
        }
    }
    true
}

/// Halts until an interrupt unless a port is already marked (race-free: the check
/// runs with interrupts off and `sti; hlt` re-enables them atomically with the halt).
pub fn idle() {
    interrupts::disable();
    if anything_marked() {
        interrupts::enable();
        return;
    }
    interrupts::enable_and_hlt();
}

/// Sleeps until an event or Xen system time `timeout_raw` (0: no timeout), unless a
/// port is already marked. Race-free like [`idle`], and robust where a halt is not:
/// with interrupts off it first scans Xen's pending bits itself (an event whose
/// upcall never came is taken now), then blocks in `SCHEDOP_poll` on every port that
/// has a handler: Xen returns at once if one of them is pending, wakes the vCPU when
/// one becomes pending, and its poll timer unblocks it at the timeout without any
/// event delivery. Interrupts are enabled again on return, which takes any upcall
/// that came meanwhile. (A halt relies on one upcall per event and on the one-shot
/// timer's event; in the real-Xen harness a guest once slept 180 s past its 1 ms
/// timer in `hlt`, see docs/CORE.md.)
pub fn idle_until(timeout_raw: u64) {
    interrupts::disable();
    if !anything_marked() {
        scan_pending();
    }
    if anything_marked() {
        interrupts::enable();
        return;
    }
    let mut ports = [0u32; xen_abi::sched::SCHED_POLL_MAX_PORTS];
    let mut n = 0;
    let si = shared_info::get();
    if let (Some(handlers), Some(si)) = (HANDLERS.try_lock(), si) {
        // Unmasked ports only: a masked one may stay pending (storm damping), and Xen
        // would return from the poll at once, again and again.
        let unmasked = handlers
            .keys()
            .filter(|&&p| si.mask(evtchn_word(p)) & evtchn_bit(p) == 0);
        for (slot, &port) in ports.iter_mut().zip(unmasked) {
            *slot = port;
            n += 1;
        }
    }
    if n == 0 {
        // No port known (or the table busy, which cannot happen here): halt instead.
        interrupts::enable_and_hlt();
        return;
    }
    if hypercall::poll(ports.get(..n).unwrap_or(&[]), timeout_raw).is_err() {
        // Xen refused the poll: fall back to the halt (an upcall ends it).
        interrupts::enable_and_hlt();
        return;
    }
    interrupts::enable();
}

/// For diagnostics: port `port`'s pending and mask bits in shared info and whether
/// it is marked here (`None` without shared info).
pub fn port_bits(port: EvtchnPort) -> Option<(bool, bool, bool)> {
    let si = shared_info::get()?;
    let (w, b) = (evtchn_word(port), evtchn_bit(port));
    let pending = si.pending(w) & b != 0;
    let masked = si.mask(w) & b != 0;
    Some((pending, masked, MARKS.is_marked(port)))
}
