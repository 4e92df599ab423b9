//! Host tests of the scan and the dispatch cursor.

extern crate std;

use core::cell::RefCell;
use std::vec::Vec;

use super::*;

/// Xen's words, as plain memory.
struct Words {
    pending: RefCell<[u64; EVTCHN_WORDS]>,
    mask: [u64; EVTCHN_WORDS],
}

impl Words {
    fn new() -> Self {
        Words {
            pending: RefCell::new([0; EVTCHN_WORDS]),
            mask: [0; EVTCHN_WORDS],
        }
    }

    fn fire(&self, port: u32) -> u64 {
        self.pending.borrow_mut()[evtchn_word(port)] |= evtchn_bit(port);
        1u64 << evtchn_word(port)
    }
}

impl SharedEventWords for Words {
    fn pending(&self, w: usize) -> u64 {
        self.pending.borrow().get(w).copied().unwrap_or(0)
    }
    fn mask(&self, w: usize) -> u64 {
        self.mask.get(w).copied().unwrap_or(u64::MAX)
    }
    fn acknowledge(&self, w: usize, bits: u64) {
        if let Some(word) = self.pending.borrow_mut().get_mut(w) {
            *word &= !bits;
        }
    }
}

fn drain(marks: &PortMarks, keep: Option<u32>) -> Vec<u32> {
    let mut seen = Vec::new();
    marks.dispatch(keep, |p| {
        seen.push(p);
        true
    });
    seen
}

#[test]
fn scan_marks_and_acknowledges_unmasked_pending_ports_only() {
    let xen = Words::new();
    let mut sel = xen.fire(3) | xen.fire(70) | xen.fire(4095);
    sel |= xen.fire(71);
    let mut masked = Words::new();
    masked.mask[1] = evtchn_bit(71);
    *masked.pending.borrow_mut() = *xen.pending.borrow();
    let marks = PortMarks::new();
    assert_eq!(marks.scan(sel, &masked), 3);
    // The masked port stays pending in Xen and is not marked.
    assert_eq!(masked.pending(1), evtchn_bit(71));
    assert_eq!(masked.pending(0), 0);
    assert!(marks.is_marked(3) && marks.is_marked(70) && marks.is_marked(4095));
    assert!(!marks.is_marked(71));
    assert_eq!(drain(&marks, None), [3, 70, 4095]);
    assert!(!marks.any());
}

#[test]
fn scan_ignores_words_not_selected() {
    let xen = Words::new();
    xen.fire(5);
    let sel = xen.fire(200);
    let marks = PortMarks::new();
    assert_eq!(marks.scan(sel, &xen), 1);
    assert!(!marks.is_marked(5));
    assert_eq!(xen.pending(0), evtchn_bit(5));
}

#[test]
fn dispatch_resumes_after_the_last_port_and_wraps() {
    let marks = PortMarks::new();
    for p in [1, 2, 3] {
        marks.mark(p);
    }
    // Stop after port 1: the handler of port 1 marks everything again (a busy port).
    let mut first = Vec::new();
    marks.dispatch(None, |p| {
        first.push(p);
        true
    });
    assert_eq!(first, [1, 2, 3]);
    for p in [1, 2, 3, 4000] {
        marks.mark(p);
    }
    // The cursor is after port 3: 4000 first, then wrap to 1, 2, 3.
    assert_eq!(drain(&marks, None), [4000, 1, 2, 3]);
}

#[test]
fn a_busy_port_cannot_starve_the_others() {
    let marks = PortMarks::new();
    marks.mark(10);
    marks.mark(11);
    marks.mark(500);
    let mut order = Vec::new();
    for _ in 0..4 {
        // Port 10 fires again during every dispatch.
        marks.dispatch(None, |p| {
            order.push(p);
            if p == 10 {
                marks.mark(10);
            }
            true
        });
    }
    // Every port ran once per pass at most, and 11 and 500 ran in the first pass.
    assert_eq!(&order[..3], &[10, 11, 500]);
    assert_eq!(order.iter().filter(|&&p| p == 11).count(), 1);
    assert_eq!(order.iter().filter(|&&p| p == 10).count(), 4);
}

#[test]
fn first_word_ports_before_the_cursor_run_last() {
    let marks = PortMarks::new();
    marks.mark(20);
    drain(&marks, None); // cursor = 21
    for p in [5, 30, 64] {
        marks.mark(p);
    }
    assert_eq!(drain(&marks, None), [30, 64, 5]);
}

#[test]
fn the_kept_port_stays_marked() {
    let marks = PortMarks::new();
    marks.mark(7);
    marks.mark(8);
    assert!(marks.any_except(7));
    assert_eq!(drain(&marks, Some(7)), [8]);
    assert!(marks.any());
    assert!(marks.is_marked(7));
    assert!(!marks.any_except(7));
    assert!(marks.take(7));
    assert!(!marks.take(7));
}

#[test]
fn dispatch_counts_only_handled_ports() {
    let marks = PortMarks::new();
    marks.mark(1);
    marks.mark(2);
    assert_eq!(marks.dispatch(None, |p| p == 2), 1);
}

#[test]
fn nested_dispatch_sees_marks_left_by_the_outer_one() {
    let marks = PortMarks::new();
    marks.mark(1);
    marks.mark(2);
    let mut inner = Vec::new();
    let mut outer = Vec::new();
    marks.dispatch(None, |p| {
        outer.push(p);
        if p == 1 {
            marks.mark(3);
            marks.dispatch(None, |q| {
                inner.push(q);
                true
            });
        }
        true
    });
    // Port 2 was taken by the outer pass already; 3 runs in the nested one.
    assert_eq!(outer, [1, 2]);
    assert_eq!(inner, [3]);
}

#[test]
fn clear_forgets_everything() {
    let marks = PortMarks::new();
    marks.mark(100);
    marks.clear();
    assert!(!marks.any());
    assert!(drain(&marks, None).is_empty());
}

#[test]
fn scan_start_rotates_past_the_last_word_served() {
    let xen = Words::new();
    let marks = PortMarks::new();
    let sel = xen.fire(64 * 5 + 1);
    marks.scan(sel, &xen);
    assert_eq!(marks.scan_word.load(Ordering::Relaxed), 6);
    let sel = xen.fire(64 * 63);
    marks.scan(sel, &xen);
    assert_eq!(marks.scan_word.load(Ordering::Relaxed), 0);
}

#[test]
fn port_numbers_are_checked() {
    assert_eq!(checked_port(0), Err(BadPort(0)));
    assert_eq!(checked_port(1), Ok(1));
    assert_eq!(checked_port(4095), Ok(4095));
    assert_eq!(checked_port(4096), Err(BadPort(4096)));
    assert_eq!(checked_port(u64::MAX), Err(BadPort(u64::MAX)));
    assert_eq!(
        std::format!("{}", BadPort(4096)),
        "port 4096 is outside the 2-level range"
    );
    marks_out_of_range_is_ignored();
}

fn marks_out_of_range_is_ignored() {
    let marks = PortMarks::new();
    marks.mark(4096);
    assert!(!marks.any());
}
