//! The guest's monotonic clock over Xen system time, and how it carries on across a suspend.
//!
//! The kernel reads Xen system time (`raw`, ns since the host booted) and adds a signed
//! offset: `guest = raw + offset`. Its one-shot timer is programmed in raw time
//! (`raw = guest - offset`).
//!
//! **A suspended domain's clock stands still.** While the domain is saved (`xl save` until
//! `xl restore`, the stop-and-copy of `xl migrate`, the save of a checkpoint `xl save -c`)
//! Xen system time goes on, or restarts on another host. After every resume,
//! [`offset_after_resume`] makes the guest clock continue just above its last reading
//! before the suspend, as Linux does for the suspended time (it goes to `CLOCK_BOOTTIME`,
//! never to `CLOCK_MONOTONIC`). Otherwise every timeout that counts "time since the peer
//! was last heard" (smoltcp's socket timeout, keep-alive) sees the whole pause at once: a
//! save slower than the 60 s NBD socket timeout under load resets every NBD connection at
//! the first poll after the restore, before the network is back, so the peer never hears
//! of it (docs/BLK.md, "NBD I/O after a suspend").

/// The offset that makes the guest clock read `continue_from + 1` when Xen system time
/// reads `raw_now` (a signed offset: `raw_now` is usually far ahead after a save on the
/// same host, and may be far behind after a migration to a younger host).
pub fn offset_after_resume(continue_from: u64, raw_now: u64) -> i64 {
    let target = i128::from(continue_from) + 1;
    clamp_i64(target - i128::from(raw_now))
}

/// Guest time at Xen system time `raw` (clamped to `0..=u64::MAX`).
pub fn to_guest(raw: u64, offset: i64) -> u64 {
    clamp_u64(i128::from(raw) + i128::from(offset))
}

/// Xen system time at guest time `guest` (a deadline before Xen's time 0 is 0: at once).
pub fn to_raw(guest: u64, offset: i64) -> u64 {
    clamp_u64(i128::from(guest) - i128::from(offset))
}

fn clamp_u64(v: i128) -> u64 {
    u64::try_from(v.max(0)).unwrap_or(u64::MAX)
}

fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// An `xl save` + `xl restore` on the same host: Xen system time went on by the 70 s
    /// the domain was saved; the guest clock continues where it stopped.
    #[test]
    fn a_save_on_the_same_host_does_not_count() {
        let offset = 0;
        let before = to_guest(500 * S, offset);
        let raw_after = 570 * S;
        let offset = offset_after_resume(before, raw_after);
        assert_eq!(to_guest(raw_after, offset), before + 1);
        // One second of running later, one second later on the guest clock.
        assert_eq!(to_guest(raw_after + S, offset), before + 1 + S);
    }

    /// A migration to a host booted later: Xen system time restarted lower.
    #[test]
    fn a_younger_host_does_not_send_the_clock_back() {
        let offset = 3 * S as i64;
        let before = to_guest(900 * S, offset);
        let raw_after = 20 * S;
        let offset = offset_after_resume(before, raw_after);
        assert!(offset > 0);
        assert_eq!(to_guest(raw_after, offset), before + 1);
    }

    /// Several suspends in a row: the guest clock counts only running time.
    #[test]
    fn repeated_suspends_count_only_running_time() {
        let mut offset = 0i64;
        let mut raw = 100 * S;
        let mut ran = 0;
        for (k, pause) in [5 * S, 70 * S, 2 * S, 300 * S].into_iter().enumerate() {
            raw += 10 * S;
            ran += 10 * S;
            let before = to_guest(raw, offset);
            raw += pause;
            offset = offset_after_resume(before, raw);
            // Running time, plus the 1 ns step of each resume.
            assert_eq!(to_guest(raw, offset), 100 * S + ran + k as u64 + 1);
        }
    }

    /// Timers queued before the suspend keep their remaining delay in raw time.
    #[test]
    fn timers_keep_their_remaining_delay() {
        let before = to_guest(500 * S, 0);
        let deadline = before + 10 * S;
        let raw_after = 570 * S;
        let offset = offset_after_resume(before, raw_after);
        assert_eq!(to_raw(deadline, offset), raw_after + 10 * S - 1);
        assert_eq!(to_guest(to_raw(deadline, offset), offset), deadline);
        // A deadline from before Xen's time 0 fires at once rather than wrapping.
        assert_eq!(to_raw(0, 7 * S as i64), 0);
        assert_eq!(to_raw(u64::MAX, -5), u64::MAX);
    }
}
