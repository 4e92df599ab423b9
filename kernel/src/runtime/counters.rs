//! The grant counters in xenstore: `data/grants`, kept current for dom0 scripts (leak checks across hotplug).
//!
//! The value is `active=<n> deferred=<n> leaked=<n> free=<n> frames=<n>`
//! (`grant_table::Stats`: references granted and not ended, ends deferred while
//! a back end still maps the page, references given up on, free references,
//! table frames). The main loop calls [`publish`] after every pass; it writes
//! when the counters changed, at most once per [`MIN_INTERVAL_NS`], and arms a
//! wake-up so that the last change is written even if the guest then idles.
//! Written relative to our home, so it follows the domain across resumes.

use alloc::boxed::Box;
use alloc::format;

use grant_table::Stats;
use spin::Mutex;

use crate::xen::time::{self, TimerHandle};
use crate::xen::{grants, store};

/// Least time between two writes.
const MIN_INTERVAL_NS: u64 = 200_000_000;
/// The xenstore node (relative to our home).
const NODE: &str = "data/grants";

/// What was published and when.
struct Published {
    /// The counters last written (None: never, or the write failed).
    last: Option<(u32, u32, u32, u32, u32)>,
    /// When they were written, ns.
    at: u64,
    /// A wake-up armed for a change not yet written: (deadline, handle).
    wake: Option<(u64, TimerHandle)>,
}

static STATE: Mutex<Published> = Mutex::new(Published {
    last: None,
    at: 0,
    wake: None,
});

/// The published fields of `s`.
fn fields(s: &Stats) -> (u32, u32, u32, u32, u32) {
    (s.active, s.deferred, s.leaked, s.free, s.frames)
}

/// Writes `data/grants` if the counters changed (rate-limited, see the module docs).
pub fn publish() {
    let Some(stats) = grants::stats() else {
        return;
    };
    let now = fields(&stats);
    let Some(mut st) = STATE.try_lock() else {
        return;
    };
    if st.last == Some(now) {
        return;
    }
    let t = time::now_ns();
    if let Some((_, handle)) = &st.wake
        && !time::is_pending(handle)
    {
        // Fired: its handle is spent.
        st.wake = None;
    }
    let due = st.at.saturating_add(MIN_INTERVAL_NS);
    if st.at > 0 && t < due {
        if st.wake.is_none() {
            // The callback does nothing: its upcall wakes the loop, which calls us.
            st.wake = Some((due, time::schedule_at(due, Box::new(|| {}))));
        }
        return;
    }
    let (active, deferred, leaked, free, frames) = now;
    let value =
        format!("active={active} deferred={deferred} leaked={leaked} free={free} frames={frames}");
    st.at = t;
    match store::write(NODE, value.as_bytes()) {
        Ok(()) => st.last = Some(now),
        // Busy (the store is in use, e.g. mid-resume) or failed: written
        // again at the next pass after the interval.
        Err(e) => {
            st.last = None;
            log::debug!("counters: writing {NODE}: {e}");
        }
    }
}
