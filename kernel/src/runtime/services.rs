//! Core-services bring-up: the order, the services line, and the boot self-tests.
//!
//! Bring-up (each step needs the previous ones): shared info page → event delivery
//! (callback vector) → `VIRQ_TIMER` → interrupts on → grant table → xenstore (domid)
//! → control nodes and watches → xenbus device monitor. Then the contract's line
//! `xenrs services: domid=<n> evtchn=vector:<hex> xenstore=ready grant_frames=<n>/<max>
//! clock_ns=<n>`, the grant counts, the self-tests and `data/ready`.

use alloc::boxed::Box;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use x86_64::instructions::interrupts;
use xen_abi::DomId;

use crate::mm::memory;
use crate::xen::console;
use crate::xen::control::{self, ControlError};
use crate::xen::events::{self, EventError};
use crate::xen::grants::{self, GrantSetupError};
use crate::xen::shared_info::{self, SharedInfoError};
use crate::xen::store::{self, StoreError};
use crate::xen::suspend;
use crate::xen::time::{self, Utc};
use crate::xenbus::devices::Monitor;

/// A step of the core's bring-up, or of its rebuild after a resume in a new domain,
/// that failed.
#[derive(Clone, Copy, Debug)]
pub enum CoreError {
    /// Mapping shared info.
    SharedInfo(SharedInfoError),
    /// Setting up event delivery.
    Events(EventError),
    /// Binding the timer.
    Timer(EventError),
    /// Setting up (or re-mapping) the grant table.
    Grants(GrantSetupError),
    /// Connecting to xenstore.
    Store(StoreError),
    /// Publishing the control nodes.
    Control(ControlError),
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::SharedInfo(e) => write!(f, "shared info: {e}"),
            CoreError::Events(e) => write!(f, "event channels: {e}"),
            CoreError::Timer(e) => write!(f, "timer: {e}"),
            CoreError::Grants(e) => write!(f, "grant table: {e}"),
            CoreError::Store(e) => write!(f, "xenstore: {e}"),
            CoreError::Control(e) => write!(f, "control: {e}"),
        }
    }
}

/// What came up.
struct Report {
    /// Our domid.
    domid: DomId,
    /// The upcall vector.
    vector: u8,
    /// Grant-table frames mapped.
    grant_frames: u32,
    /// Grant-table frames allowed.
    grant_max: u32,
}

/// Brings the services up in order.
fn bring_up() -> Result<Report, CoreError> {
    suspend::register(Box::new(console::ConsoleHook));
    let gpfn = shared_info::map().map_err(CoreError::SharedInfo)?;
    log::debug!("shared info at pfn {gpfn:#x}");
    let vector = events::init().map_err(CoreError::Events)?;
    time::init().map_err(CoreError::Timer)?;
    // Upcalls may arrive from here on; the handler only touches atomics.
    interrupts::enable();
    let (grant_frames, grant_max) = grants::init().map_err(CoreError::Grants)?;
    let domid = store::init().map_err(CoreError::Store)?;
    control::init(domid).map_err(CoreError::Control)?;
    suspend::register(Box::new(Monitor::start(domid)));
    Ok(Report {
        domid,
        vector,
        grant_frames,
        grant_max,
    })
}

/// Brings the core services up and prints the services line. Returns false (after
/// printing `xenrs services error: ...`) if they could not be.
pub fn start() -> bool {
    match bring_up() {
        Ok(r) => {
            let (wall, _) = time::wallclock();
            log::info!(
                "clock: wall {} (unix {wall}), tsc {} Hz",
                Utc(wall),
                time::tsc_hz()
            );
            crate::println!(
                "xenrs services: domid={} evtchn=vector:{:#x} xenstore=ready grant_frames={}/{} clock_ns={}",
                r.domid,
                r.vector,
                r.grant_frames,
                r.grant_max,
                time::now_ns()
            );
            grants::print_counts("services-up");
            memory::print_usage("services-up");
            timer_self_test();
            event_loopback_test();
            // One more than frame 0's 504 free entries: the table must grow.
            grants::self_test(510);
            let ev = events::stats();
            log::debug!(
                "events: {} upcalls, {} handler runs, {} unhandled; {} frames free",
                ev.upcalls,
                ev.dispatched,
                ev.unhandled,
                memory::free_frames()
            );
            control::mark_ready();
            true
        }
        Err(e) => {
            crate::println!("xenrs services error: {e}");
            false
        }
    }
}

/// Asked delay of the timer self-test.
const SELF_TEST_DELAY_NS: u64 = 5_000_000;
/// When the self-test timer fired (monotonic ns), 0 until then.
static SELF_TEST_FIRED: AtomicU64 = AtomicU64::new(0);

/// Set if the cancelled self-test timer ran (it must not).
static CANCELLED_RAN: AtomicBool = AtomicBool::new(false);

/// How long the boot self-tests wait for a timer or an event. Generous on purpose: under
/// QEMU TCG on a loaded 2-core host a vCPU can be descheduled for over a second, and a
/// late delivery is reported with its latency rather than as an error.
const SELF_TEST_LIMIT_NS: u64 = 10 * time::NS_PER_SEC;

/// Runs dispatch/idle until `done` holds or [`SELF_TEST_LIMIT_NS`] passed; false on timeout.
fn spin_events_until(done: impl Fn() -> bool) -> bool {
    let start = time::now_ns();
    while !done() {
        if time::now_ns() > start + SELF_TEST_LIMIT_NS {
            return false;
        }
        if events::dispatch(None) == 0 {
            events::idle();
        }
    }
    true
}

/// Queues a 5 ms timer (and a 1 ms one that is cancelled at once), runs the event
/// loop's dispatch until the first fires (at most 10 s), and logs how late it was.
/// Proves `VCPUOP_set_singleshot_timer` + `VIRQ_TIMER` and cancel by handle.
fn timer_self_test() {
    let start = time::now_ns();
    let doomed = time::schedule_after(
        SELF_TEST_DELAY_NS / 5,
        Box::new(|| {
            // Relaxed: a flag checked after the wait below.
            CANCELLED_RAN.store(true, Ordering::Relaxed);
        }),
    );
    let _ = time::schedule_at(
        start + SELF_TEST_DELAY_NS,
        Box::new(|| {
            // Release: the main loop reads it with Acquire.
            SELF_TEST_FIRED.store(time::now_ns(), Ordering::Release);
        }),
    );
    if !time::cancel(doomed) {
        crate::println!("xenrs timer error: cancelling a queued timer failed");
    }
    // Acquire: pairs with the callback's Release.
    if !spin_events_until(|| SELF_TEST_FIRED.load(Ordering::Acquire) != 0) {
        crate::println!("xenrs timer error: self-test timer did not fire within 10 s");
        return;
    }
    // Acquire: as above.
    let fired = SELF_TEST_FIRED.load(Ordering::Acquire);
    // Relaxed: set (or not) by a callback that ran in this context.
    if CANCELLED_RAN.load(Ordering::Relaxed) {
        crate::println!("xenrs timer error: a cancelled timer ran");
    }
    let (queued, total) = time::counts();
    if fired.saturating_sub(start) > time::NS_PER_SEC {
        log::warn!("timer: the self-test timer fired over 1 s late (vCPU descheduled?)");
    }
    log::info!(
        "timer: one-shot asked {} us, fired after {} us ({queued} queued, {total} fired)",
        SELF_TEST_DELAY_NS / 1000,
        fired.saturating_sub(start) / 1000
    );
}

/// Set by the loopback test's handler.
static LOOPBACK_FIRED: AtomicU64 = AtomicU64::new(0);

/// Event-channel loopback: an unbound port for ourselves, bound from our own side,
/// one `send` on the bound end must run the other end's handler; both are closed.
/// Exercises alloc_unbound, bind_interdomain, set_handler/unmask, send, dispatch and
/// close on real Xen.
fn event_loopback_test() {
    /// How the loopback failed.
    #[derive(Debug)]
    enum LoopbackError {
        /// An operation failed.
        Event(EventError),
        /// The handler did not run within the self-test limit (10 s).
        NotDelivered,
    }
    impl fmt::Display for LoopbackError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                LoopbackError::Event(e) => write!(f, "{e}"),
                LoopbackError::NotDelivered => f.write_str("not delivered within 10 s"),
            }
        }
    }
    impl From<EventError> for LoopbackError {
        fn from(e: EventError) -> Self {
            LoopbackError::Event(e)
        }
    }
    let result = (|| -> Result<u64, LoopbackError> {
        let listener = events::alloc_unbound(xen_abi::DOMID_SELF)?;
        let sender = events::bind_interdomain(xen_abi::DOMID_SELF, listener.number())?;
        listener.set_handler(Box::new(|| {
            // Release: read with Acquire by the waiting loop.
            LOOPBACK_FIRED.store(time::now_ns(), Ordering::Release);
        }))?;
        let start = time::now_ns();
        sender.send()?;
        // Acquire: pairs with the handler's Release.
        let ok = spin_events_until(|| LOOPBACK_FIRED.load(Ordering::Acquire) != 0);
        // Acquire: as above.
        let latency = LOOPBACK_FIRED.load(Ordering::Acquire).saturating_sub(start);
        sender.close()?;
        listener.close()?;
        if ok {
            Ok(latency)
        } else {
            Err(LoopbackError::NotDelivered)
        }
    })();
    match result {
        Ok(ns) => log::info!(
            "events: loopback notification delivered in {} us",
            ns / 1000
        ),
        Err(e) => crate::println!("xenrs events error: loopback self-test: {e}"),
    }
}
