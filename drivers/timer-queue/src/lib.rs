//! A deadline-ordered queue of one-shot timers that tells its owner what to program, free of `unsafe`.
//!
//! The kernel keeps one [`TimerQueue`] behind a lock and programs Xen's one-shot timer
//! (`VCPUOP_set_singleshot_timer`, `xen/include/public/vcpu.h`) with what
//! [`TimerQueue::to_program`] asks for: the earliest deadline, or stop when the queue is
//! empty, and nothing when that is already programmed. Entries are keyed by
//! (deadline, id), so equal deadlines fire in queueing order; a [`TimerHandle`] cancels
//! exactly its entry. Time is passed in, never read here, so the logic is the same
//! under test. [`clock`]: the guest clock's offset over Xen system time, which stands
//! still while the domain is suspended.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod clock;

use alloc::collections::BTreeMap;

/// Identifies a queued timer; [`TimerQueue::cancel`] consumes it.
#[must_use = "keep the handle to cancel the timer (or drop it: the timer still fires)"]
#[derive(Debug, PartialEq, Eq)]
pub struct TimerHandle {
    /// The deadline it was queued with (part of the queue key).
    deadline: u64,
    /// Unique id (the other part of the key).
    id: u64,
}

impl TimerHandle {
    /// The deadline the timer was queued with.
    pub fn deadline(&self) -> u64 {
        self.deadline
    }
}

/// What the hardware timer should be set to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// Fire at this deadline (the queue's time base).
    At(u64),
    /// Nothing queued: stop the timer.
    Stop,
}

impl Program {
    /// The deadline this programs, `None` for [`Program::Stop`].
    pub fn deadline(self) -> Option<u64> {
        match self {
            Program::At(d) => Some(d),
            Program::Stop => None,
        }
    }
}

/// One-shot timers carrying a `T` each (the kernel's is a boxed callback).
#[derive(Debug)]
pub struct TimerQueue<T> {
    /// Entries by (deadline, id): earliest first, ties in queueing order.
    queue: BTreeMap<(u64, u64), T>,
    /// Next id.
    next_id: u64,
    /// The deadline the hardware timer is programmed with, if any.
    programmed: Option<u64>,
    /// Entries handed out by [`TimerQueue::pop_expired`] since creation.
    fired: u64,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TimerQueue<T> {
    /// An empty queue, nothing programmed.
    pub const fn new() -> Self {
        TimerQueue {
            queue: BTreeMap::new(),
            next_id: 1,
            programmed: None,
            fired: 0,
        }
    }

    /// Queues `item` for `deadline`.
    pub fn schedule_at(&mut self, deadline: u64, item: T) -> TimerHandle {
        // Ids wrap after 2^64 timers; a key is (deadline, id), so a reused id only
        // collides with a timer still queued at the same deadline, which would need
        // 2^64 timers queued at once.
        let mut id = self.next_id;
        while self.queue.contains_key(&(deadline, id)) {
            id = id.wrapping_add(1);
        }
        self.next_id = id.wrapping_add(1);
        self.queue.insert((deadline, id), item);
        TimerHandle { deadline, id }
    }

    /// Removes a queued timer and returns its item; `None` if it already fired.
    pub fn cancel(&mut self, handle: TimerHandle) -> Option<T> {
        self.queue.remove(&(handle.deadline, handle.id))
    }

    /// Whether the timer of `handle` is still queued (not fired, not cancelled).
    pub fn is_queued(&self, handle: &TimerHandle) -> bool {
        self.queue.contains_key(&(handle.deadline, handle.id))
    }

    /// The earliest deadline queued.
    pub fn earliest(&self) -> Option<u64> {
        self.queue.keys().next().map(|&(d, _)| d)
    }

    /// Takes the earliest entry if its deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: u64) -> Option<T> {
        match self.queue.first_key_value() {
            Some((&(deadline, _), _)) if deadline <= now => {
                self.fired = self.fired.wrapping_add(1);
                self.queue.pop_first().map(|(_, item)| item)
            }
            _ => None,
        }
    }

    /// What the hardware timer must be set to now, or `None` if it already is.
    pub fn to_program(&self) -> Option<Program> {
        let earliest = self.earliest();
        if earliest == self.programmed {
            return None;
        }
        Some(earliest.map_or(Program::Stop, Program::At))
    }

    /// Records what the hardware timer now holds: `Some(deadline)` after programming
    /// it, `None` after stopping it, after it fired, or after programming failed (so
    /// the next [`TimerQueue::to_program`] asks again).
    pub fn set_programmed(&mut self, deadline: Option<u64>) {
        self.programmed = deadline;
    }

    /// The deadline the hardware timer is recorded as programmed with.
    pub fn programmed(&self) -> Option<u64> {
        self.programmed
    }

    /// Number of queued timers.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no timer is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Entries handed out by [`TimerQueue::pop_expired`] so far.
    pub fn fired(&self) -> u64 {
        self.fired
    }
}

#[cfg(test)]
mod tests;
