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

/// The tuning of a [`SpuriousLimiter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StormConfig {
    /// Spurious events in a row tolerated before the port is masked.
    pub tolerated: u32,
    /// First mask duration (milliseconds); doubled per further spurious event.
    pub initial_ms: u64,
    /// Longest mask duration (milliseconds).
    pub max_ms: u64,
}

impl StormConfig {
    /// Counts spurious events and never masks (the kernel's default until the
    /// damping is tuned on real Xen: with 4 tolerated misses a busy vif was
    /// masked under ordinary TCP traffic).
    pub const COUNT_ONLY: Self = Self {
        tolerated: u32::MAX,
        initial_ms: 1,
        max_ms: 256,
    };
}

impl Default for StormConfig {
    fn default() -> Self {
        // Our "found work" test is per pass of the device (coarser than
        // Linux's per handler), so a few more misses are tolerated; the
        // ceiling is lower than Linux's second, as one channel carries both
        // directions of a vif.
        Self {
            tolerated: 4,
            initial_ms: 1,
            max_ms: 256,
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
    masked_until: Option<u64>,
    spurious: u64,
    masks: u64,
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
            return Verdict::Keep;
        }
        self.spurious = self.spurious.saturating_add(1);
        if self.masked_until.is_some() {
            return Verdict::Keep;
        }
        self.streak = self.streak.saturating_add(1);
        if self.streak <= self.config.tolerated {
            return Verdict::Keep;
        }
        let doublings = (self.streak - self.config.tolerated - 1).min(63);
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
        self.masked_until = None;
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

    fn limiter() -> SpuriousLimiter {
        SpuriousLimiter::new(StormConfig {
            tolerated: 2,
            initial_ms: 1,
            max_ms: 8,
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

    #[test]
    fn a_storm_of_a_million_events_costs_a_bounded_number_of_unmasks() {
        // Each mask lasts at least 1 ms; events only arrive while unmasked
        // (Xen holds them pending otherwise): over one simulated second of a
        // storm, the port is unmasked at most ~1000/ceiling + ramp times.
        let mut l = SpuriousLimiter::new(StormConfig::default());
        let mut now = 0u64;
        let mut handled = 0u32;
        while now < 1000 {
            handled += 1;
            if let Verdict::Mask { until_ms } = l.on_event(false, now) {
                now = until_ms;
                assert!(l.unmask_due(now));
            }
        }
        assert!(
            handled < 30,
            "{handled} events handled in a second of storm"
        );
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
