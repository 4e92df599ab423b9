//! Suspend and resume of the core (`SCHEDOP_shutdown(SHUTDOWN_suspend)`), and the hook drivers register with.
//!
//! Sources: `xen/include/public/sched.h` (`SHUTDOWN_suspend`: the hypercall returns 0
//! in the domain created by restore/migration, 1 if the suspend was cancelled, e.g.
//! `xl save -c`), `docs/misc/xenstore-ring.txt`, and the resume order of Linux's
//! `xen_hvm_post_suspend`/`xenbus` resume and of the `xenbus` crate's
//! [`xenbus::resume`] module.
//!
//! Order (see `docs/CORE.md`):
//! 1. `xenrs suspending n=<k>`; hooks' [`SuspendHook::suspend`] (reverse
//!    registration order); xenstore quiesced (no request in flight); the clock read;
//!    console flushed; interrupts off; `SCHEDOP_shutdown(SHUTDOWN_suspend)`.
//! 2. Returned 1 (cancelled): nothing is re-initialised.
//! 3. Returned 0 (new domain), interrupts still off, nothing printed until the
//!    console hook ran (the console's event channel is stale until then):
//!    shared info re-mapped → event delivery reset (old ports stale, all masked,
//!    callback vector re-registered) → clock offset raised (monotonic) and
//!    `VIRQ_TIMER` re-bound, timer re-armed → grant frames re-mapped, grant
//!    bookkeeping reset → interrupts on → xenstore: new store port from
//!    `HVM_PARAM_STORE_EVTCHN`, stale responses dropped, every watch re-sent and
//!    acknowledged, domid re-read → control: suspend event channel re-allocated and
//!    re-published, features re-written.
//! 4. Every hook's [`SuspendHook::resume`] in registration order (the console's first).
//! 5. `xenrs resumed n=<k> mode=new-domain|cancelled mono_ns=<n>`, grant counts,
//!    `data/ready`.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use spin::Mutex;
use x86_64::instructions::interrupts;
use xen_abi::sched::SHUTDOWN_SUSPEND;

use crate::{console, control, events, grants, hypercall, shared_info, store, time};

/// How the domain came back from a suspend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeMode {
    /// A new domain (restore or migration): event channels, grants and back-end
    /// connections of the old domain are gone.
    NewDomain,
    /// The suspend was cancelled: everything is as it was.
    Cancelled,
}

impl ResumeMode {
    /// The console spelling: `new-domain` / `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResumeMode::NewDomain => "new-domain",
            ResumeMode::Cancelled => "cancelled",
        }
    }
}

/// What a driver does around a suspend. Hooks run in the main loop, never in
/// interrupt context; they may use xenstore.
///
/// On [`ResumeMode::NewDomain`] the core is back (shared info, event delivery,
/// timers, an empty grant table, xenstore with every watch re-registered) when
/// [`resume`](SuspendHook::resume) runs: a driver feeds its `xenbus::Frontend`
/// `Resume { new_domain: true }`, drops stale ring grants (`GrantTable::end_access`
/// returns their pages at once), re-grants, re-binds its event channels and
/// reconnects. On [`ResumeMode::Cancelled`] it must not re-initialise anything.
pub trait SuspendHook: Send {
    /// A short name for error messages.
    fn name(&self) -> &'static str;
    /// Before the suspend: stop starting new I/O. Default: nothing.
    fn suspend(&mut self) {}
    /// After the suspend hypercall returned.
    fn resume(&mut self, mode: ResumeMode);
}

/// Registered hooks, in registration order.
static HOOKS: Mutex<Vec<Box<dyn SuspendHook>>> = Mutex::new(Vec::new());
/// Suspends since boot.
static SUSPENDS: AtomicU32 = AtomicU32::new(0);

/// Registers a hook (for the domain's life).
pub fn register(hook: Box<dyn SuspendHook>) {
    HOOKS.lock().push(hook);
}

/// Runs `f` on every hook (in reverse order if `reverse`) outside the lock, so a
/// hook may register further hooks (they join after this pass).
fn for_each_hook(reverse: bool, mut f: impl FnMut(&mut dyn SuspendHook)) {
    let mut hooks = core::mem::take(&mut *HOOKS.lock());
    if reverse {
        hooks.iter_mut().rev().for_each(|h| f(h.as_mut()));
    } else {
        hooks.iter_mut().for_each(|h| f(h.as_mut()));
    }
    let mut registry = HOOKS.lock();
    let added = core::mem::take(&mut *registry);
    hooks.extend(added);
    *registry = hooks;
}

/// A step of the core resume that failed (printed once the console is back).
#[derive(Clone, Copy, Debug)]
enum ResumeError {
    /// Re-mapping shared info.
    SharedInfo(shared_info::SharedInfoError),
    /// Resetting event delivery.
    Events(events::EventError),
    /// Re-binding the timer.
    Timer(events::EventError),
    /// Re-mapping grant frames.
    Grants(grant_table::GrowError),
    /// Reconnecting xenstore.
    Store(store::StoreError),
    /// Re-publishing the control nodes.
    Control(store::StoreError),
}

impl fmt::Display for ResumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResumeError::SharedInfo(e) => write!(f, "shared info: {e}"),
            ResumeError::Events(e) => write!(f, "event channels: {e}"),
            ResumeError::Timer(e) => write!(f, "timer: {e}"),
            ResumeError::Grants(e) => write!(f, "grant frames: {e:?}"),
            ResumeError::Store(e) => write!(f, "xenstore: {e}"),
            ResumeError::Control(e) => write!(f, "control nodes: {e}"),
        }
    }
}

/// Suspends the domain and brings the core back; returns how it came back.
pub fn suspend() -> ResumeMode {
    // Relaxed: a counter only the main loop touches.
    let n = SUSPENDS.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    crate::println!("xenrs suspending n={n}");
    for_each_hook(true, |hook| hook.suspend());
    if let Err(e) = store::quiesce() {
        crate::println!("xenrs xenstore error: quiesce before suspend: {e}");
    }
    let before = time::now_ns();
    console::flush(false);

    interrupts::disable();
    let mode = match hypercall::shutdown(SHUTDOWN_SUSPEND) {
        Ok(0) => ResumeMode::NewDomain,
        Ok(_) => ResumeMode::Cancelled,
        Err(e) => {
            interrupts::enable();
            crate::println!("xenrs suspend error: SCHEDOP_shutdown(suspend): {e}");
            ResumeMode::Cancelled
        }
    };
    let mut errors = Vec::new();
    if mode == ResumeMode::NewDomain {
        core_resume(before, &mut errors);
    }
    interrupts::enable();

    for_each_hook(false, |hook| {
        log::debug!("resume hook {}", hook.name());
        hook.resume(mode);
    });
    for e in &errors {
        crate::println!("xenrs resume error: {e}");
    }
    crate::println!(
        "xenrs resumed n={n} mode={} mono_ns={}",
        mode.as_str(),
        time::now_ns()
    );
    grants::print_counts("after-resume");
    control::mark_ready();
    mode
}

/// Rebuilds the core in a new domain (step 3 of the module docs). Prints nothing.
fn core_resume(before: u64, errors: &mut Vec<ResumeError>) {
    if let Err(e) = shared_info::remap() {
        errors.push(ResumeError::SharedInfo(e));
    }
    if let Err(e) = events::resume_new_domain() {
        errors.push(ResumeError::Events(e));
    }
    if let Err(e) = time::resume_new_domain(before) {
        errors.push(ResumeError::Timer(e));
    }
    if let Err(e) = grants::resume_new_domain() {
        errors.push(ResumeError::Grants(e));
    }
    // Xenstore waits for replies (sti; hlt): upcalls must be on from here.
    interrupts::enable();
    match store::resume_new_domain() {
        Ok(domid) => control::set_domid(domid),
        Err(e) => errors.push(ResumeError::Store(e)),
    }
    if let Err(e) = control::resume_new_domain() {
        errors.push(ResumeError::Control(e));
    }
}
