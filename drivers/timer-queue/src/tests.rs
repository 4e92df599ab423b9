//! Host tests of the timer queue.

extern crate std;

use std::vec::Vec;

use super::*;

fn drain(q: &mut TimerQueue<u32>, now: u64) -> Vec<u32> {
    core::iter::from_fn(|| q.pop_expired(now)).collect()
}

#[test]
fn fires_in_deadline_order_ties_in_queueing_order() {
    let mut q = TimerQueue::new();
    let _ = q.schedule_at(30, 1);
    let _ = q.schedule_at(10, 2);
    let _ = q.schedule_at(20, 3);
    let _ = q.schedule_at(10, 4);
    assert_eq!(drain(&mut q, 15), [2, 4]);
    assert_eq!(drain(&mut q, 100), [3, 1]);
    assert_eq!(q.fired(), 4);
    assert!(q.is_empty());
}

#[test]
fn nothing_fires_before_its_deadline() {
    let mut q = TimerQueue::new();
    let _ = q.schedule_at(10, 1);
    assert_eq!(q.pop_expired(9), None);
    assert_eq!(q.pop_expired(10), Some(1));
}

#[test]
fn cancel_removes_exactly_its_timer() {
    let mut q = TimerQueue::new();
    let a = q.schedule_at(10, 1);
    let _b = q.schedule_at(10, 2);
    assert_eq!(a.deadline(), 10);
    assert_eq!(q.cancel(a), Some(1));
    assert_eq!(drain(&mut q, 10), [2]);
}

#[test]
fn cancel_after_firing_returns_none() {
    let mut q = TimerQueue::new();
    let a = q.schedule_at(5, 1);
    assert_eq!(q.pop_expired(5), Some(1));
    assert_eq!(q.cancel(a), None);
}

#[test]
fn programs_the_earliest_deadline_once() {
    let mut q = TimerQueue::new();
    assert_eq!(q.to_program(), None, "empty and stopped: nothing to do");
    let late = q.schedule_at(50, 1);
    assert_eq!(q.to_program(), Some(Program::At(50)));
    q.set_programmed(Some(50));
    assert_eq!(q.to_program(), None);
    let _ = q.schedule_at(60, 2);
    assert_eq!(q.to_program(), None, "a later timer changes nothing");
    let early = q.schedule_at(20, 3);
    assert_eq!(q.to_program(), Some(Program::At(20)));
    q.set_programmed(Some(20));
    let _ = q.cancel(early);
    assert_eq!(q.to_program(), Some(Program::At(50)));
    q.set_programmed(Some(50));
    let _ = q.cancel(late);
    assert_eq!(q.to_program(), Some(Program::At(60)));
    q.set_programmed(Some(60));
    assert_eq!(q.pop_expired(60), Some(2));
    assert_eq!(q.to_program(), Some(Program::Stop));
    assert_eq!(Program::Stop.deadline(), None);
}

#[test]
fn a_failed_program_is_asked_again() {
    let mut q = TimerQueue::new();
    let _ = q.schedule_at(7, 1);
    q.set_programmed(None);
    assert_eq!(q.to_program(), Some(Program::At(7)));
}

#[test]
fn ids_wrap_without_colliding() {
    let mut q = TimerQueue::new();
    q.next_id = u64::MAX;
    let a = q.schedule_at(1, 1);
    let b = q.schedule_at(1, 2);
    let c = q.schedule_at(1, 3);
    assert_ne!(a, b);
    assert_ne!(b, c);
    assert_eq!(q.len(), 3);
    // Force a collision: the next id is one still queued at the same deadline.
    q.next_id = b.id;
    let d = q.schedule_at(1, 4);
    assert_ne!(d, b);
    assert_eq!(q.len(), 4);
    assert_eq!(drain(&mut q, 1).len(), 4);
}

#[test]
fn extreme_deadlines() {
    let mut q = TimerQueue::new();
    let _ = q.schedule_at(u64::MAX, 1);
    let _ = q.schedule_at(0, 2);
    assert_eq!(drain(&mut q, 0), [2]);
    assert_eq!(q.pop_expired(u64::MAX - 1), None);
    assert_eq!(q.pop_expired(u64::MAX), Some(1));
}

#[test]
fn a_handle_is_queued_until_it_fires_or_is_cancelled() {
    let mut q = TimerQueue::new();
    let a = q.schedule_at(10, 1);
    let b = q.schedule_at(20, 2);
    assert!(q.is_queued(&a) && q.is_queued(&b));
    assert_eq!(q.pop_expired(10), Some(1));
    assert!(!q.is_queued(&a), "fired");
    assert!(q.is_queued(&b));
    assert_eq!(q.cancel(b), Some(2));
    let c = q.schedule_at(20, 3);
    assert!(q.is_queued(&c));
}
