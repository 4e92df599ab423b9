//! A small ring of the main loop's recent steps (wake-ups, timer expiries, network passes), printed by the status dump.
//!
//! For stalls where the guest sleeps although it has work: the dump shows the state
//! after the fact, the trace how the loop got there (which pass last ran, what it
//! armed, whether the timer fired and whether the loop woke). Recorded from the main
//! loop only (never from the interrupt handler), a fixed number of entries, no
//! allocation.

use core::fmt::{self, Write};

use spin::Mutex;

/// Entries kept.
const LEN: usize = 48;

/// One step.
#[derive(Clone, Copy)]
pub enum Step {
    /// Nothing recorded in this slot yet.
    Empty,
    /// A network pass: clock used (ns), whether it was a fresh reading, busy, the
    /// deadline it wanted (ns), and what it did with the wake-up timer.
    Net {
        clock: u64,
        fresh: bool,
        busy: bool,
        deadline: Option<u64>,
        timer: TimerAction,
    },
    /// `run_expired` ran: callbacks it ran.
    Expired { ran: u32 },
    /// The main loop halts: upcalls counted so far.
    Idle { upcalls: u64 },
    /// The main loop woke from the halt: upcalls counted so far.
    Woke { upcalls: u64 },
    /// A pass that did not idle: why (dispatch count, busy, nested work).
    Pass {
        dispatched: u32,
        busy: bool,
        nested: bool,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Step::Empty => f.write_str("-"),
            Step::Net {
                clock,
                fresh,
                busy,
                deadline,
                timer,
            } => write!(
                f,
                "net clock={clock}{} busy={busy} deadline={deadline:?} timer={timer:?}",
                if fresh { "" } else { " (reused)" }
            ),
            Step::Expired { ran } => write!(f, "timers expired: {ran} run"),
            Step::Idle { upcalls } => write!(f, "idle (upcalls {upcalls})"),
            Step::Woke { upcalls } => write!(f, "woke (upcalls {upcalls})"),
            Step::Pass {
                dispatched,
                busy,
                nested,
            } => write!(
                f,
                "pass dispatched={dispatched} busy={busy} nested={nested}"
            ),
        }
    }
}

/// What a network pass did with its wake-up timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerAction {
    /// Busy: no timer needed.
    None,
    /// An armed timer fires early enough: kept (its deadline).
    Kept(u64),
    /// A new timer was queued.
    Armed,
    /// No deadline and no timer.
    Unarmed,
}

struct Ring {
    at: [(u64, Step); LEN],
    next: usize,
}

static RING: Mutex<Ring> = Mutex::new(Ring {
    at: [(0, Step::Empty); LEN],
    next: 0,
});

/// Records `step` at time `now_ns` (main loop only; skipped if the ring is in use).
pub fn record(now_ns: u64, step: Step) {
    if let Some(mut r) = RING.try_lock() {
        let i = r.next % LEN;
        if let Some(slot) = r.at.get_mut(i) {
            *slot = (now_ns, step);
        }
        r.next = r.next.wrapping_add(1);
    }
}

/// Writes the entries, oldest first, one per line after `prefix`.
pub fn write_to(out: &mut dyn Write, prefix: &str) -> fmt::Result {
    let r = RING.lock();
    for k in 0..LEN {
        let Some(&(t, step)) = r.at.get((r.next + k) % LEN) else {
            continue;
        };
        if matches!(step, Step::Empty) {
            continue;
        }
        writeln!(out, "{prefix}{t} {step}")?;
    }
    Ok(())
}
