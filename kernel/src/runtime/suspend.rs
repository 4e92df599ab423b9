//! The suspend sequence (`SCHEDOP_shutdown(SHUTDOWN_suspend)`) and the rebuild of the core afterwards.
//!
//! Sources: `xen/include/public/sched.h` (`SHUTDOWN_suspend`: the hypercall returns 0
//! in the domain created by restore/migration, 1 if the suspend was cancelled, e.g.
//! `xl save -c`), `docs/misc/xenstore-ring.txt`, and the resume order of Linux's
//! `xen_hvm_post_suspend`/`xenbus` resume, which the front-end runtime
//! (`xen_frontend::device`) follows for every device. Drivers take part through
//! [`crate::xen::suspend`].
//!
//! Order (see `docs/CORE.md` §8):
//! 1. `xenrs suspending n=<k>`; hooks' `suspend()` (reverse registration order);
//!    xenstore quiesced (no request in flight); the clock read; console flushed;
//!    interrupts off; `SCHEDOP_shutdown(SHUTDOWN_suspend)`.
//! 2. Returned 1 (cancelled): nothing is re-initialised; the clock continues where it
//!    stopped (the time spent saving does not count) and the one-shot timer is re-armed.
//! 3. Returned 0 (new domain), interrupts still off, nothing printed until the
//!    console hook ran (the console's event channel is stale until then):
//!    shared info re-mapped → event delivery reset (old ports stale, all masked,
//!    callback vector re-registered) → clock continued where it stopped (the suspended time does not count) and
//!    `VIRQ_TIMER` re-bound, timer re-armed → grant frames re-mapped, grant
//!    bookkeeping reset → interrupts on → xenstore: new store port from
//!    `HVM_PARAM_STORE_EVTCHN`, stale responses dropped, every watch re-sent and
//!    acknowledged, domid re-read → control: suspend event channel re-allocated and
//!    re-published, features re-written.
//! 4. Every hook's `resume(mode)` in registration order (the console's first).
//! 5. `xenrs resumed n=<k> mode=new-domain|cancelled mono_ns=<n>`, grant counts,
//!    memory use, `data/ready`.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use x86_64::instructions::interrupts;
use xen_abi::sched::SHUTDOWN_SUSPEND;

use crate::arch::hypercall;
use crate::runtime::services::CoreError;
use crate::xen::console;
use crate::xen::control;
use crate::xen::events;
use crate::xen::grants;
use crate::xen::shared_info;
use crate::xen::store;
use crate::xen::suspend::{self, ResumeMode};
use crate::xen::time;

/// Suspends since boot.
static SUSPENDS: AtomicU32 = AtomicU32::new(0);

/// Suspends the domain and brings the core back; returns how it came back.
pub fn suspend() -> ResumeMode {
    // Relaxed: a counter only the main loop touches.
    let n = SUSPENDS.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    crate::println!("xenrs suspending n={n}");
    suspend::for_each_hook(true, |hook| hook.suspend());
    if let Err(e) = store::quiesce() {
        crate::println!("xenrs xenstore error: quiesce before suspend: {e}");
    }
    let before = time::raw_before_suspend();
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
    let paused = if mode == ResumeMode::NewDomain {
        core_resume(before, &mut errors)
    } else {
        time::resume_cancelled(before)
    };
    interrupts::enable();

    suspend::for_each_hook(false, |hook| {
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
    log::info!(
        "suspend: Xen system time moved {} ms while suspended (not counted by the clock)",
        paused / 1_000_000
    );
    grants::print_counts("after-resume");
    crate::mm::memory::print_usage("after-resume");
    control::mark_ready();
    mode
}

/// Rebuilds the core in a new domain (step 3 of the module docs). Prints nothing.
/// Returns the time the domain was suspended (ns of Xen system time, 0 if it
/// restarted on another host).
fn core_resume(before: u64, errors: &mut Vec<CoreError>) -> u64 {
    if let Err(e) = shared_info::remap() {
        errors.push(CoreError::SharedInfo(e));
    }
    if let Err(e) = events::resume_new_domain() {
        errors.push(CoreError::Events(e));
    }
    let paused = match time::resume_new_domain(before) {
        Ok(p) => p,
        Err(e) => {
            errors.push(CoreError::Timer(e));
            0
        }
    };
    if let Err(e) = grants::resume_new_domain() {
        errors.push(CoreError::Grants(e));
    }
    // Xenstore waits for replies (sti; hlt): upcalls must be on from here.
    interrupts::enable();
    match store::resume_new_domain() {
        Ok(domid) => control::set_domid(domid),
        Err(e) => errors.push(CoreError::Store(e)),
    }
    if let Err(e) = control::resume_new_domain() {
        errors.push(CoreError::Control(e));
    }
    paused
}
