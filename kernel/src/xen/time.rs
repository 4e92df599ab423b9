//! Time: a monotonic clock from the pvclock, the wall clock, and one-shot timers.
//!
//! Sources: `struct vcpu_time_info` and the wall-clock fields of `struct shared_info`
//! in `xen/include/public/xen.h`; `VCPUOP_set_singleshot_timer` in
//! `xen/include/public/vcpu.h`; `VIRQ_TIMER` in `xen.h`.
//!
//! **Monotonic clock.** Xen system time (ns since the host booted) is
//! `system_time + scale(tsc - tsc_timestamp)` from vCPU 0's `vcpu_time_info`, read as a
//! version-checked copy with `rdtsc` in the same window (never `rdtscp`). The guest's
//! clock is that plus a signed offset. While the domain is suspended (saved, migrated, or
//! checkpointed by `xl save -c`) Xen system time goes on, or restarts on another host;
//! after every resume ([`resume_new_domain`], [`resume_cancelled`]) the offset is set so
//! the clock continues from just above the last value returned before the suspend: it
//! never goes backwards and the suspended time does not count (`timer_queue::clock`: a
//! pause longer than a socket timeout must not reset every connection). Reads are also
//! clamped to the last value returned ([`now_ns`] never decreases).
//!
//! **Timers.** A deadline-ordered queue of one-shot callbacks ([`schedule_at`],
//! [`cancel`] by handle). The earliest deadline is programmed with
//! `VCPUOP_set_singleshot_timer` (converted back to Xen system time); `VIRQ_TIMER`
//! fires and the main loop runs the expired callbacks ([`run_expired`]). With no timer
//! queued, nothing is programmed: an idle guest is never woken.

use alloc::boxed::Box;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;
pub use timer_queue::TimerHandle;
use timer_queue::{Program, TimerQueue, clock};
use xen_abi::event_channel::VIRQ_TIMER;

use crate::arch::hypercall;
use crate::xen::events::{self, EventError, Port};
use crate::xen::shared_info;

/// Added to Xen system time to get the guest's monotonic time (an `i64`'s bits:
/// negative after a save on the same host, see `timer_queue::clock`).
static OFFSET: AtomicU64 = AtomicU64::new(0);

/// The offset as the signed value it is.
fn offset() -> i64 {
    // Relaxed: the offset only changes in resume, with interrupts off, before any
    // other code runs.
    OFFSET.load(Ordering::Relaxed) as i64
}
/// The largest value [`now_ns`] has returned.
static LAST: AtomicU64 = AtomicU64::new(0);

/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;

/// Xen system time now (ns since the host booted; restarts on another host), or 0
/// before the shared info page is mapped.
fn xen_system_ns() -> u64 {
    match shared_info::get() {
        Some(si) => {
            let (info, tsc) = si.time_snapshot();
            info.system_time_ns(tsc)
        }
        None => 0,
    }
}

/// The guest's monotonic clock in ns. Never decreases, also across resumes.
pub fn now_ns() -> u64 {
    let now = clock::to_guest(xen_system_ns(), offset());
    // AcqRel: keeps LAST a running maximum even if an interrupt handler read the
    // clock in between (none does today).
    let prev = LAST.fetch_max(now, Ordering::AcqRel);
    now.max(prev)
}

/// Wall-clock time now: `(seconds since the Unix epoch, nanoseconds)`, from the
/// shared info wall clock plus Xen system time. `(0, 0)` before mapping.
pub fn wallclock() -> (u64, u32) {
    let Some(si) = shared_info::get() else {
        return (0, 0);
    };
    let (sec, nsec) = si.wallclock_base();
    let total =
        u128::from(sec) * u128::from(NS_PER_SEC) + u128::from(nsec) + u128::from(xen_system_ns());
    let secs = u64::try_from(total / u128::from(NS_PER_SEC)).unwrap_or(u64::MAX);
    (secs, (total % u128::from(NS_PER_SEC)) as u32)
}

/// The TSC frequency the pvclock implies, in Hz (0 if unknown).
pub fn tsc_hz() -> u64 {
    shared_info::get()
        .and_then(|si| si.time_snapshot().0.tsc_hz())
        .unwrap_or(0)
}

/// Formats a Unix time as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub struct Utc(pub u64);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0 / 86_400;
        let rem = self.0 % 86_400;
        // Civil-from-days (Howard Hinnant's algorithm), all in u64/i64 without overflow
        // for any u64 input divided down to days.
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

/// A timer callback, run by the main loop (never in interrupt context).
pub type Callback = Box<dyn FnOnce() + Send>;

/// The timer queue (host-tested logic of the `timer-queue` crate) and the
/// `VIRQ_TIMER` port.
struct Timers {
    /// Callbacks by deadline in guest monotonic ns; knows what Xen's one-shot holds.
    queue: TimerQueue<Callback>,
    /// The `VIRQ_TIMER` port.
    port: Option<Port>,
}

/// The timer state (main loop only).
static TIMERS: Mutex<Timers> = Mutex::new(Timers {
    queue: TimerQueue::new(),
    port: None,
});

/// Binds `VIRQ_TIMER` and stops Xen's default periodic tick. Call after
/// [`events::init`].
pub fn init() -> Result<(), EventError> {
    // The periodic timer would wake an idle guest every 10 ms; one-shot only here.
    // An error (Xen without a periodic timer for this vCPU) changes nothing.
    let _ = hypercall::vcpu_stop_periodic_timer(0);
    bind()
}

/// Binds `VIRQ_TIMER`, installs its handler and re-arms the earliest deadline.
fn bind() -> Result<(), EventError> {
    let port = events::bind_virq(VIRQ_TIMER)?;
    port.set_handler(Box::new(run_expired))?;
    let mut t = TIMERS.lock();
    t.port = Some(port);
    t.queue.set_programmed(None);
    arm(&mut t);
    Ok(())
}

/// Sets the offset so the clock continues at just above its last value: the time the
/// domain spent suspended does not count. Returns that time in ns (Xen system time
/// between `raw_before`, read just before the suspend, and now; 0 after a restart
/// of Xen system time on another host).
fn continue_clock(raw_before: u64) -> u64 {
    let raw = xen_system_ns();
    // Acquire: pairs with fetch_max in now_ns (same context; a plain read).
    let last = LAST.load(Ordering::Acquire);
    // Relaxed: resume runs alone (interrupts off, one vCPU); readers run after it.
    OFFSET.store(
        clock::offset_after_resume(last, raw) as u64,
        Ordering::Relaxed,
    );
    raw.saturating_sub(raw_before)
}

/// Xen system time now, read right before a suspend (for [`resume_new_domain`] and
/// [`resume_cancelled`]).
pub fn raw_before_suspend() -> u64 {
    xen_system_ns()
}

/// After a resume in a new domain: the clock continues where it stopped (see the
/// module docs), `VIRQ_TIMER` is bound again and the timer re-armed. Call after the
/// shared info page and event delivery are back. Returns the suspended time (ns).
pub fn resume_new_domain(raw_before: u64) -> Result<u64, EventError> {
    let paused = continue_clock(raw_before);
    // The old port died with the old domain: forget the stale handle.
    if let Some(old) = TIMERS.lock().port.take() {
        let _ = old.close();
    }
    let _ = hypercall::vcpu_stop_periodic_timer(0);
    bind()?;
    Ok(paused)
}

/// After a cancelled suspend (`xl save -c`): the clock continues where it stopped and
/// the one-shot timer is programmed again under the new offset. Returns the
/// suspended time (ns).
pub fn resume_cancelled(raw_before: u64) -> u64 {
    let paused = continue_clock(raw_before);
    let mut t = TIMERS.lock();
    t.queue.set_programmed(None);
    arm(&mut t);
    paused
}

/// Queues `callback` to run once the monotonic clock reaches `deadline_ns`.
pub fn schedule_at(deadline_ns: u64, callback: Callback) -> TimerHandle {
    let mut t = TIMERS.lock();
    let handle = t.queue.schedule_at(deadline_ns, callback);
    arm(&mut t);
    handle
}

/// Queues `callback` to run `delay_ns` from now.
pub fn schedule_after(delay_ns: u64, callback: Callback) -> TimerHandle {
    schedule_at(now_ns().saturating_add(delay_ns), callback)
}

/// Cancels a queued timer. Returns false if it already fired.
pub fn cancel(handle: TimerHandle) -> bool {
    let mut t = TIMERS.lock();
    let removed = t.queue.cancel(handle).is_some();
    if removed {
        arm(&mut t);
    }
    removed
}

/// Whether the timer of `handle` is still queued: false once it fired (its callback
/// ran or is running) or was cancelled. The truth for "is my wake-up still armed",
/// which the clock cannot tell (a caller's clock reading may be older than the
/// expiry).
pub fn is_pending(handle: &TimerHandle) -> bool {
    TIMERS.lock().queue.is_queued(handle)
}

/// The earliest queued deadline as Xen system time (what `SCHEDOP_poll` takes as its
/// timeout), or 0 when no timer is queued.
pub fn next_deadline_raw() -> u64 {
    let t = TIMERS.lock();
    t.queue
        .earliest()
        .map_or(0, |d| clock::to_raw(d, offset()).max(1))
}

/// For diagnostics: (queued, earliest deadline, deadline recorded as programmed).
pub fn queue_state() -> (usize, Option<u64>, Option<u64>) {
    let t = TIMERS.lock();
    (t.queue.len(), t.queue.earliest(), t.queue.programmed())
}

/// Number of queued timers and timers fired since boot.
pub fn counts() -> (usize, u64) {
    let t = TIMERS.lock();
    (t.queue.len(), t.queue.fired())
}

/// Programs Xen's one-shot timer for the earliest deadline (or stops it when the queue
/// is empty). Skips the hypercall when that deadline is already programmed.
fn arm(t: &mut Timers) {
    let Some(program) = t.queue.to_program() else {
        return;
    };
    let result = match program {
        Program::At(deadline) => {
            let xen = clock::to_raw(deadline, offset());
            hypercall::vcpu_set_singleshot_timer(0, xen)
        }
        Program::Stop => hypercall::vcpu_stop_singleshot_timer(0),
    };
    match result {
        Ok(()) => t.queue.set_programmed(program.deadline()),
        Err(e) => {
            t.queue.set_programmed(None);
            log::error!("programming the one-shot timer: {e}");
        }
    }
}

/// Runs every callback whose deadline has passed (outside the lock), then re-arms.
/// The `VIRQ_TIMER` handler.
pub fn run_expired() {
    let mut ran = 0u32;
    loop {
        let now = now_ns();
        let due = {
            let mut t = TIMERS.lock();
            // The programmed deadline has fired (or is about to be replaced).
            t.queue.set_programmed(None);
            let due = t.queue.pop_expired(now);
            if due.is_none() {
                arm(&mut t);
            }
            due
        };
        match due {
            Some(callback) => {
                callback();
                ran = ran.saturating_add(1);
            }
            None => {
                crate::xen::trace::record(now, crate::xen::trace::Step::Expired { ran });
                return;
            }
        }
    }
}
