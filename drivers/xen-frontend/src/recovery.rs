//! Recovery policy of a device: retries with back-off, the fault budget, the deferred-page cap.
//!
//! A back end (or xenstore) that fails once must not close a device for good,
//! and one that fails again and again must not make the guest spend its
//! memory on reconnects. So:
//!
//! - a failed connection setup (xenstore `EAGAIN`s, a brief lack of pages or
//!   grant references, an odd feature node) and a failed write of our own
//!   `state` node are retried with exponential back-off ([`Backoff`]) from
//!   [`crate::Device::poll`], which the caller drives with its clock (time is
//!   passed in, as smoltcp's `Interface::poll(now, ..)`);
//! - faults of the back end (ring-protocol violations) are counted in a
//!   sliding window ([`FaultBudget`]): after [`RecoveryConfig::max_faults`]
//!   in [`RecoveryConfig::fault_window_ms`] the device is broken and does not
//!   reconnect (a back end that keeps its mappings and faults again makes every
//!   reconnect allocate and grant a fresh set of pages while the old ones sit
//!   on the grant table's deferred list);
//! - pages a device left on the deferred list are capped
//!   ([`RecoveryConfig::max_deferred_pages`]): over the cap no new connection
//!   is set up and the device is broken, so deferred pages cannot starve the
//!   rest of the guest.
//!
//! Model: Linux `xen-netfront`/`xenbus_probe` retry nothing and leak on
//! "g.e. still in use"; this policy is ours. Pure logic, host-tested below.

/// The tuning of a device's recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecoveryConfig {
    /// Faults tolerated in [`fault_window_ms`](Self::fault_window_ms); one more
    /// breaks the device. 0: the first fault breaks it.
    pub max_faults: u32,
    /// The fault budget's window (milliseconds).
    pub fault_window_ms: u64,
    /// Most pages this device may leave on the grant table's deferred list
    /// before it stops connecting (a netfront connection holds 514 pages).
    pub max_deferred_pages: usize,
    /// First retry delay after a failure (milliseconds).
    pub retry_initial_ms: u64,
    /// Longest retry delay (milliseconds).
    pub retry_max_ms: u64,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            max_faults: 4,
            fault_window_ms: 60_000,
            max_deferred_pages: 1100,
            retry_initial_ms: 100,
            retry_max_ms: 10_000,
        }
    }
}

/// Why a device is broken (it will not connect again by itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Broken {
    /// The back end faulted more often than the budget allows.
    TooManyFaults {
        /// Faults counted in the window.
        faults: u32,
        /// The window (milliseconds).
        window_ms: u64,
    },
    /// The device left more pages on the deferred list than the cap allows
    /// (the back end keeps mapping pages it was asked to release).
    TooManyDeferred {
        /// Pages still deferred.
        pages: usize,
        /// The cap.
        cap: usize,
    },
}

impl core::fmt::Display for Broken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Broken::TooManyFaults { faults, window_ms } => write!(
                f,
                "the back end faulted {faults} times within {} s",
                window_ms / 1000
            ),
            Broken::TooManyDeferred { pages, cap } => write!(
                f,
                "the back end still maps {pages} released pages (cap {cap})"
            ),
        }
    }
}

/// Faults in a sliding window.
#[derive(Clone, Debug, Default)]
pub struct FaultBudget {
    /// Times (milliseconds) of the faults inside the window, oldest first; at
    /// most `max_faults + 1` are kept.
    times: alloc::collections::VecDeque<u64>,
}

impl FaultBudget {
    /// Records a fault at `now_ms`; returns the faults inside the window
    /// (this one included) if that exceeds `cfg.max_faults`, i.e. the device
    /// must be broken.
    pub fn record(&mut self, cfg: &RecoveryConfig, now_ms: u64) -> Option<u32> {
        while self
            .times
            .front()
            .is_some_and(|&t| now_ms.saturating_sub(t) >= cfg.fault_window_ms)
        {
            self.times.pop_front();
        }
        self.times.push_back(now_ms);
        let keep = usize::try_from(cfg.max_faults)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        while self.times.len() > keep {
            self.times.pop_front();
        }
        let n = u32::try_from(self.times.len()).unwrap_or(u32::MAX);
        (n > cfg.max_faults).then_some(n)
    }

    /// Faults currently counted.
    pub fn count(&self) -> usize {
        self.times.len()
    }
}

/// An exponential back-off for one kind of retry.
///
/// [`arm`](Self::arm) says a retry is wanted (from code that has no clock);
/// the next [`due`](Self::due) with the clock schedules it `delay` later, and
/// a later `due` at or after that time says "now" once. Each failure that
/// arms it again doubles the delay (up to the maximum); [`succeeded`](Self::succeeded)
/// resets it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    armed: bool,
    at_ms: Option<u64>,
    delay_ms: u64,
    /// Retries carried out since the last success.
    pub attempts: u32,
}

impl Backoff {
    /// A retry is wanted.
    pub fn arm(&mut self) {
        self.armed = true;
    }

    /// No retry is wanted any more (the thing it would retry happened).
    pub fn disarm(&mut self) {
        self.armed = false;
        self.at_ms = None;
    }

    /// Success: no retry pending, the delay starts afresh.
    pub fn succeeded(&mut self) {
        self.disarm();
        self.delay_ms = 0;
        self.attempts = 0;
    }

    /// Whether a retry is wanted.
    pub fn is_armed(&self) -> bool {
        self.armed
    }

    /// With the clock: true once the retry is due (then it is disarmed; arm it
    /// again if it fails).
    pub fn due(&mut self, cfg: &RecoveryConfig, now_ms: u64) -> bool {
        if !self.armed {
            return false;
        }
        match self.at_ms {
            None => {
                self.delay_ms = if self.delay_ms == 0 {
                    cfg.retry_initial_ms.max(1)
                } else {
                    self.delay_ms.saturating_mul(2)
                }
                .min(cfg.retry_max_ms.max(1));
                self.at_ms = Some(now_ms.saturating_add(self.delay_ms));
                false
            }
            Some(t) if now_ms >= t => {
                self.disarm();
                self.attempts = self.attempts.saturating_add(1);
                true
            }
            Some(_) => false,
        }
    }

    /// When the retry is due (None: not scheduled yet or not armed).
    pub fn at_ms(&self) -> Option<u64> {
        if self.armed { self.at_ms } else { None }
    }
}

/// A device's recovery state (owned by [`crate::Device`]).
#[derive(Clone, Debug, Default)]
pub struct Health {
    /// The policy.
    pub config: RecoveryConfig,
    /// Faults counted.
    pub faults: FaultBudget,
    /// Faults recorded in total.
    pub fault_count: u64,
    /// Why the device is broken, once it is.
    pub broken: Option<Broken>,
    /// Retry of a failed connection setup.
    pub setup_retry: Backoff,
    /// Retry of a failed write of our own `state` node.
    pub state_retry: Backoff,
    /// Setup retries carried out in total.
    pub retries: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RecoveryConfig {
        RecoveryConfig {
            max_faults: 2,
            fault_window_ms: 1000,
            max_deferred_pages: 10,
            retry_initial_ms: 10,
            retry_max_ms: 40,
        }
    }

    #[test]
    fn the_budget_breaks_only_on_faults_inside_the_window() {
        let c = cfg();
        let mut b = FaultBudget::default();
        assert_eq!(b.record(&c, 0), None);
        assert_eq!(b.record(&c, 500), None);
        // The first fault left the window: still two inside.
        assert_eq!(b.record(&c, 1200), None);
        assert_eq!(b.record(&c, 1300), Some(3));
        assert!(b.count() <= 3);
    }

    #[test]
    fn a_zero_budget_breaks_on_the_first_fault() {
        let c = RecoveryConfig {
            max_faults: 0,
            ..cfg()
        };
        assert_eq!(FaultBudget::default().record(&c, 7), Some(1));
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_resets_on_success() {
        let c = cfg();
        let mut b = Backoff::default();
        assert!(!b.due(&c, 0));
        let mut now = 0;
        let mut delays = alloc::vec::Vec::new();
        for _ in 0..5 {
            b.arm();
            assert!(!b.due(&c, now));
            let at = b.at_ms().expect("scheduled");
            delays.push(at - now);
            assert!(!b.due(&c, at - 1));
            assert!(b.due(&c, at));
            assert!(!b.due(&c, at));
            now = at;
        }
        assert_eq!(delays, [10, 20, 40, 40, 40]);
        assert_eq!(b.attempts, 5);
        b.succeeded();
        b.arm();
        assert!(!b.due(&c, now));
        assert_eq!(b.at_ms(), Some(now + 10));
    }
}
