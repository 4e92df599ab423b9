//! Event-storm damping: a port whose events keep finding no work is masked for a growing while (Linux's late-EOI back-off).
//!
//! A back end may call `EVTCHNOP_send` as often as it likes; every send
//! raises an upcall and a full pass over the device. Linux answers such
//! storms with "lateeoi" (`drivers/xen/events/events_base.c`,
//! `xen_irq_lateeoi_locked`): the handler reports whether the event found
//! work; after more than one spurious event in a row the EOI (here: the
//! unmask) is delayed, 1, 2, 4, ... jiffies up to a second. Events arriving
//! while the port is masked stay pending in Xen and are delivered when it is
//! unmasked, so no notification is lost, only delayed.
//!
//! [`SpuriousLimiter`] is that decision, per port, with the caller's
//! millisecond clock passed in; the kernel masks and unmasks the port and
//! prints the counters. An event that finds work resets the streak at once.
//!
//! Busy TCP traffic has runs of spurious events too (an event whose
//! responses an earlier pass already consumed), so a streak alone is not a
//! storm: a port is masked only when its spurious events also exceed a rate
//! (a token bucket of `burst` events refilled at `rate_per_s`). A storm then
//! costs at most about `burst + rate_per_s` passes in its first second.

/// The tuning of a [`SpuriousLimiter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StormConfig {
    /// Spurious events in a row tolerated before the port is masked.
    pub tolerated: u32,
    /// First mask duration (milliseconds); doubled per further spurious event.
    pub initial_ms: u64,
    /// Longest mask duration (milliseconds).
    pub max_ms: u64,
    /// Spurious events per second tolerated however long the streak.
    pub rate_per_s: u32,
    /// Spurious events tolerated at once (the bucket's size).
    pub burst: u32,
}

impl StormConfig {
    /// Counts spurious events and never masks (the kernel's default until the
    /// damping is tuned on real Xen: with 4 tolerated misses a busy vif was
    /// masked under ordinary TCP traffic).
    pub const COUNT_ONLY: Self = Self {
        tolerated: u32::MAX,
        initial_ms: 1,
        max_ms: 256,
        rate_per_s: u32::MAX,
        burst: u32::MAX,
    };
}

impl Default for StormConfig {
    fn default() -> Self {
        // Our "found work" test is per pass of the device (coarser than
        // Linux's per handler), so a few more misses are tolerated; the
        // ceiling is lower than Linux's second, as one channel carries both
        // directions of a vif. The rate is well above what busy TCP shows (a
        // real-Xen bench: 7345 spurious of 30765 events in about a minute of
        // iperf3 traffic) and well below a back end's send loop.
        Self {
            tolerated: 4,
            initial_ms: 1,
            max_ms: 256,
            rate_per_s: 500,
            burst: 250,
        }
    }
}

/// What to do with the port after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Leave it unmasked.
    Keep,
    /// Mask it until this time (milliseconds, the caller's clock), then
    /// unmask ([`SpuriousLimiter::unmask_due`]).
    Mask {
        /// When to unmask.
        until_ms: u64,
    },
}

/// One port's spurious-event streak and mask state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpuriousLimiter {
    config: StormConfig,
    streak: u32,
    /// Masks since work was last found (the back-off's exponent).
    masks_in_row: u32,
    masked_until: Option<u64>,
    spurious: u64,
    masks: u64,
    /// The token bucket, in thousandths of an event (`None`: not started,
    /// full), and when it was last refilled.
    bucket: Option<(u64, u64)>,
}

impl SpuriousLimiter {
    /// A limiter with `config`.
    pub fn new(config: StormConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// An event was handled at `now_ms`; `found_work` says whether it found
    /// anything to do (responses, a state change). Returns whether to mask
    /// the port now. While masked, further events (there should be none)
    /// only count.
    pub fn on_event(&mut self, found_work: bool, now_ms: u64) -> Verdict {
        if found_work {
            self.streak = 0;
            self.masks_in_row = 0;
            return Verdict::Keep;
        }
        self.spurious = self.spurious.saturating_add(1);
        if self.masked_until.is_some() {
            return Verdict::Keep;
        }
        self.streak = self.streak.saturating_add(1);
        let within_rate = self.take_token(now_ms);
        if self.streak <= self.config.tolerated || within_rate {
            return Verdict::Keep;
        }
        let doublings = self.masks_in_row.min(63);
        self.masks_in_row = self.masks_in_row.saturating_add(1);
        let delay = self
            .config
            .initial_ms
            .max(1)
            .checked_shl(doublings)
            .unwrap_or(u64::MAX)
            .min(self.config.max_ms.max(1));
        let until_ms = now_ms.saturating_add(delay);
        self.masked_until = Some(until_ms);
        self.masks = self.masks.saturating_add(1);
        Verdict::Mask { until_ms }
    }

    /// Refills the bucket for the time since the last event and takes one
    /// event from it; false when it is empty (the rate is exceeded).
    fn take_token(&mut self, now_ms: u64) -> bool {
        const ONE: u64 = 1000;
        let cap = u64::from(self.config.burst).saturating_mul(ONE);
        let (level, at) = self.bucket.unwrap_or((cap, now_ms));
        // `rate_per_s` events per second = `rate_per_s` thousandths per ms.
        let refill = now_ms
            .saturating_sub(at)
            .saturating_mul(u64::from(self.config.rate_per_s));
        let level = level.saturating_add(refill).min(cap);
        let (level, ok) = if level >= ONE {
            (level - ONE, true)
        } else {
            (level, false)
        };
        self.bucket = Some((level, now_ms.max(at)));
        ok
    }

    /// With the clock: true once the port is to be unmasked (then it counts
    /// as unmasked).
    pub fn unmask_due(&mut self, now_ms: u64) -> bool {
        match self.masked_until {
            Some(t) if now_ms >= t => {
                self.masked_until = None;
                true
            }
            _ => false,
        }
    }

    /// When the port is to be unmasked, while it is masked.
    pub fn masked_until(&self) -> Option<u64> {
        self.masked_until
    }

    /// Forgets the streak and the mask (the port was closed or replaced).
    /// The counters stay.
    pub fn reset(&mut self) {
        self.streak = 0;
        self.masks_in_row = 0;
        self.masked_until = None;
        self.bucket = None;
    }

    /// Spurious events seen in total.
    pub fn spurious(&self) -> u64 {
        self.spurious
    }

    /// Times the port was masked.
    pub fn masks(&self) -> u64 {
        self.masks
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    /// Masks on the streak alone (an empty bucket).
    fn limiter() -> SpuriousLimiter {
        SpuriousLimiter::new(StormConfig {
            tolerated: 2,
            initial_ms: 1,
            max_ms: 8,
            rate_per_s: 0,
            burst: 0,
        })
    }

    #[test]
    fn useful_events_never_mask() {
        let mut l = limiter();
        for t in 0..1000 {
            assert_eq!(l.on_event(true, t), Verdict::Keep);
        }
        assert_eq!((l.spurious(), l.masks()), (0, 0));
    }

    #[test]
    fn a_few_spurious_events_in_a_row_are_tolerated() {
        let mut l = limiter();
        for t in 0..100 {
            assert_eq!(l.on_event(false, t), Verdict::Keep);
            assert_eq!(l.on_event(false, t), Verdict::Keep);
            assert_eq!(l.on_event(true, t), Verdict::Keep);
        }
        assert_eq!(l.spurious(), 200);
        assert_eq!(l.masks(), 0);
    }

    #[test]
    fn a_storm_is_masked_with_growing_delays_up_to_the_ceiling() {
        let mut l = limiter();
        let mut now = 0;
        let mut delays = Vec::new();
        assert_eq!(l.on_event(false, now), Verdict::Keep);
        assert_eq!(l.on_event(false, now), Verdict::Keep);
        for _ in 0..6 {
            let Verdict::Mask { until_ms } = l.on_event(false, now) else {
                panic!("not masked");
            };
            delays.push(until_ms - now);
            // Masked: a late event only counts.
            assert_eq!(l.on_event(false, now), Verdict::Keep);
            assert!(!l.unmask_due(until_ms - 1));
            assert!(l.unmask_due(until_ms));
            assert!(!l.unmask_due(until_ms));
            now = until_ms;
        }
        assert_eq!(delays, [1, 2, 4, 8, 8, 8]);
        assert_eq!(l.masks(), 6);
        // Work found: the streak is over, the next spurious ones are tolerated.
        assert_eq!(l.on_event(true, now), Verdict::Keep);
        assert_eq!(l.on_event(false, now), Verdict::Keep);
        assert_eq!(l.on_event(false, now), Verdict::Keep);
        assert_eq!(l.on_event(false, now), Verdict::Mask { until_ms: now + 1 });
    }

    /// A storm: a back end sending as fast as events are taken, 100 per
    /// millisecond while the port is unmasked (Xen holds them pending
    /// otherwise). Returns the events handled in `secs` seconds.
    fn storm(l: &mut SpuriousLimiter, secs: u64) -> u64 {
        let mut handled = 0u64;
        let mut tick = 0u64;
        while tick < secs * 100_000 {
            let now = tick / 100;
            handled += 1;
            tick += 1;
            if let Verdict::Mask { until_ms } = l.on_event(false, now) {
                tick = until_ms * 100;
                assert!(l.unmask_due(until_ms));
            }
        }
        handled
    }

    #[test]
    fn a_storm_costs_a_bounded_number_of_passes() {
        let c = StormConfig::default();
        let mut l = SpuriousLimiter::new(c);
        let first = storm(&mut l, 1);
        let bound = u64::from(c.burst + c.rate_per_s);
        assert!(first <= bound, "{first} events handled in the first second");
        // Later seconds: mostly masked at the ceiling.
        let later = storm(&mut l, 10);
        assert!(later <= 10 * u64::from(c.rate_per_s), "{later} in 10 s");
        assert!(l.masks() > 10);
    }

    #[test]
    fn busy_traffic_with_long_runs_of_spurious_events_is_never_masked() {
        // 390 spurious events a second (more than the real-Xen bench showed),
        // in runs of 20 between events that found work.
        let mut l = SpuriousLimiter::new(StormConfig::default());
        for ms in 0..60_000u64 {
            if ms % 10 < 3 {
                for _ in 0..(if ms % 100 == 0 { 20 } else { 0 }) {
                    assert_eq!(l.on_event(false, ms), Verdict::Keep);
                }
                assert_eq!(l.on_event(true, ms), Verdict::Keep);
            }
            if ms % 10 == 5 {
                for _ in 0..(if ms % 100 == 55 { 10 } else { 1 }) {
                    assert_eq!(l.on_event(false, ms), Verdict::Keep);
                }
            }
        }
        assert_eq!(l.masks(), 0);
        assert!(l.spurious() > 60 * 250, "{}", l.spurious());
    }

    #[test]
    fn reset_forgets_the_mask() {
        let mut l = limiter();
        for _ in 0..3 {
            let _ = l.on_event(false, 0);
        }
        assert!(l.masked_until().is_some());
        l.reset();
        assert_eq!(l.masked_until(), None);
        assert_eq!(l.on_event(false, 5), Verdict::Keep);
    }
}

#[cfg(test)]
mod count_only_tests {
    use super::*;

    #[test]
    fn count_only_never_masks_but_counts() {
        let mut l = SpuriousLimiter::new(StormConfig::COUNT_ONLY);
        for t in 0..10_000 {
            assert_eq!(l.on_event(false, t), Verdict::Keep);
        }
        assert_eq!(l.spurious(), 10_000);
        assert_eq!(l.masks(), 0);
        assert_eq!(l.masked_until(), None);
    }
}
