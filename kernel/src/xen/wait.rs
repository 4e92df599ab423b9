//! Blocking waits for one event-channel port, bounded by a one-shot timer.
//!
//! Kept apart from [`crate::xen::events`] because it needs the timers of
//! [`crate::xen::time`], which themselves sit on event channels. A wait dispatches
//! every other marked port meanwhile, so a xenstore request in flight never stalls
//! timers or other devices (`docs/CORE.md` §2, "Waiting for one port").

use alloc::boxed::Box;

use crate::arch::hypercall;
use crate::xen::events::{self, Port};
use crate::xen::time;

/// Blocks until `port` fires (at once if it fired since its last take) or the
/// monotonic clock reaches `deadline_ns`, dispatching other ports' handlers
/// meanwhile; a one-shot timer bounds the sleep. Returns true if `port` fired, false
/// at the deadline. Without upcalls (set-up failed) it yields the CPU once and
/// returns false, so callers poll.
pub fn for_port_until(port: &Port, deadline_ns: u64) -> bool {
    if !events::ready() || port.is_stale() {
        let _ = hypercall::yield_now();
        return false;
    }
    // The timer only wakes the vCPU from `hlt`; the check below does the rest.
    let timer = time::schedule_at(deadline_ns, Box::new(|| {}));
    let fired = loop {
        if port.take_pending() {
            break true;
        }
        if events::dispatch(Some(port)) > 0 {
            continue;
        }
        if time::now_ns() >= deadline_ns {
            break false;
        }
        // Sleeps unless anything (this port included) is marked; the poll's timeout
        // is the earliest timer, this wait's own deadline at the latest.
        events::idle_until(time::next_deadline_raw());
    };
    time::cancel(timer);
    fired
}
