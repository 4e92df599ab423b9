//! [`RoundRobin`]: the order in which a main loop hands watch events to their handlers, so that one watch never holds up another.
//!
//! Every watch has its own bounded queue in the xenstore client (a storm on one
//! path coalesces there and never pushes another watch's events out). A pass
//! visits every watch once, starting one after where the previous pass started,
//! and hands over at most `batch` events of each. Handlers only record the event
//! (the back-end state watches raise a flag) and return; the device acts in its
//! own pass, so a device whose back end never answers waits in its own state
//! (e.g. xenbus `Announced`) instead of in a handler. The wait of any watch's
//! event is thus bounded by one pass: at most `batch × (watches − 1)` other
//! events, whatever the other watches' paths or handlers do.

/// The dispatch order of watch events (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundRobin {
    start: usize,
}

impl RoundRobin {
    /// A dispatcher whose first pass starts with watch 0.
    pub const fn new() -> Self {
        Self { start: 0 }
    }

    /// One pass over `watches` watches (indices `0..watches`). `take(i)` hands
    /// at most one queued event of watch `i` to its handler and returns whether
    /// there was one; it is called until it returns false or `batch` times per
    /// watch. Returns the number of events handed over.
    pub fn pass(
        &mut self,
        watches: usize,
        batch: usize,
        mut take: impl FnMut(usize) -> bool,
    ) -> usize {
        if watches == 0 {
            return 0;
        }
        let start = self.start % watches;
        self.start = start.wrapping_add(1);
        let mut handled = 0;
        for k in 0..watches {
            let i = (start + k) % watches;
            for _ in 0..batch {
                if !take(i) {
                    break;
                }
                handled += 1;
            }
        }
        handled
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    extern crate std;
    use super::RoundRobin;
    use std::vec::Vec;

    /// Watch 0's handler never gets its work done: its queue is never empty
    /// (a storm, or a handler that puts its event back to wait). Every other
    /// watch's events are all handed over in the same pass they were queued.
    #[test]
    fn a_watch_that_never_empties_does_not_delay_the_others() {
        let mut rr = RoundRobin::new();
        let mut queued = [usize::MAX, 0, 0, 0];
        let mut handed = [0usize; 4];
        for pass in 0..50 {
            queued[1 + pass % 3] += 2;
            let n = rr.pass(4, 4, |i| {
                if queued[i] == 0 {
                    return false;
                }
                queued[i] -= 1;
                handed[i] += 1;
                true
            });
            assert!(n <= 4 * 4);
            assert_eq!(&queued[1..], &[0, 0, 0], "pass {pass}");
        }
        assert_eq!(
            handed[0],
            50 * 4,
            "the stuck watch gets at most a batch per pass"
        );
        assert_eq!(handed[1..].iter().sum::<usize>(), 100);
    }

    #[test]
    fn passes_start_with_the_next_watch() {
        let mut rr = RoundRobin::new();
        let mut firsts = Vec::new();
        for _ in 0..6 {
            let mut first = None;
            rr.pass(3, 1, |i| {
                first.get_or_insert(i);
                false
            });
            firsts.push(first.unwrap());
        }
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
        // Watches come and go: the start stays in range.
        let mut seen = Vec::new();
        rr.pass(2, 1, |i| {
            seen.push(i);
            false
        });
        assert_eq!(seen.len(), 2);
        assert_eq!(rr.pass(0, 4, |_| true), 0);
    }
}
