//! Host tests: a simulated back end that consumes on yield, or never.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on an unexpected error"
)]

extern crate std;

use std::vec::Vec;

use super::*;

/// Plain memory and a back end that consumes `per_yield` bytes at every yield.
struct Sim {
    out: [u8; OUT_SIZE],
    prod: u32,
    cons: u32,
    per_yield: u32,
    consumed: Vec<u8>,
    notifies: u32,
    yields: u32,
}

impl Sim {
    fn new(start: u32, per_yield: u32) -> Self {
        Sim {
            out: [0; OUT_SIZE],
            prod: start,
            cons: start,
            per_yield,
            consumed: Vec::new(),
            notifies: 0,
            yields: 0,
        }
    }

    fn consume(&mut self, n: u32) {
        for _ in 0..n.min(self.prod.wrapping_sub(self.cons)) {
            self.consumed
                .push(self.out[xen_abi::console::mask(self.cons, OUT_SIZE)]);
            self.cons = self.cons.wrapping_add(1);
        }
    }
}

impl OutPage for Sim {
    fn load_cons(&self) -> u32 {
        self.cons
    }
    fn load_prod(&self) -> u32 {
        self.prod
    }
    fn store_prod(&mut self, prod: u32) {
        self.prod = prod;
    }
    fn copy_out(&mut self, at: usize, bytes: &[u8]) {
        assert!(at + bytes.len() <= OUT_SIZE, "write past out[]");
        self.out[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fn notify(&mut self) {
        self.notifies += 1;
    }
    fn yield_now(&mut self) {
        self.yields += 1;
        self.consume(self.per_yield);
    }
}

fn text(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

#[test]
fn free_space_checks_the_indices() {
    assert_eq!(free_space(0, 0), Ok(OUT_SIZE));
    assert_eq!(free_space(2048, 0), Ok(0));
    assert_eq!(free_space(5, u32::MAX), Ok(OUT_SIZE - 6));
    assert_eq!(
        free_space(2049, 0),
        Err(ConsoleRingError::Inconsistent {
            prod: 2049,
            cons: 0
        })
    );
    // cons ahead of prod is just as impossible.
    assert!(free_space(0, 1).is_err());
}

#[test]
fn a_line_goes_in_with_one_notify() {
    let mut sim = Sim::new(0, 0);
    let mut ring = OutRing::new();
    ring.write(&mut sim, b"hello\n", 10).unwrap();
    assert_eq!(sim.prod, 6);
    assert_eq!(&sim.out[..6], b"hello\n");
    assert_eq!(sim.notifies, 1);
    assert_eq!(sim.yields, 0);
}

#[test]
fn indices_wrap_around_u32_and_the_ring() {
    let start = u32::MAX - 3;
    let mut sim = Sim::new(start, 4096);
    let mut ring = OutRing::new();
    let data = text(5000);
    ring.write(&mut sim, &data, 100).unwrap();
    sim.consume(u32::MAX);
    assert_eq!(sim.consumed, data);
    assert_eq!(sim.prod, start.wrapping_add(5000));
}

#[test]
fn a_full_ring_waits_then_continues() {
    let mut sim = Sim::new(0, 100);
    let mut ring = OutRing::new();
    let data = text(3000);
    ring.write(&mut sim, &data, 100).unwrap();
    assert!(!ring.is_stalled());
    assert!(sim.yields > 0);
    sim.consume(u32::MAX);
    assert_eq!(sim.consumed, data);
}

#[test]
fn a_dead_back_end_stalls_the_ring_and_later_writes_do_not_wait() {
    let mut sim = Sim::new(0, 0);
    let mut ring = OutRing::new();
    ring.write(&mut sim, &text(2048 + 10), 5).unwrap();
    assert!(ring.is_stalled());
    assert_eq!(sim.yields, 5);
    assert_eq!(sim.prod, 2048);
    ring.write(&mut sim, b"more", 5).unwrap();
    assert_eq!(sim.yields, 5, "a stalled ring never waits");
    // Space again: the next write clears the stall.
    sim.consume(3);
    ring.write(&mut sim, b"abc", 5).unwrap();
    assert!(!ring.is_stalled());
    assert_eq!(sim.prod, 2051);
}

#[test]
fn a_hostile_cons_is_reported_not_trusted() {
    let mut sim = Sim::new(0, 0);
    sim.cons = 5000;
    let mut ring = OutRing::new();
    assert_eq!(
        ring.write(&mut sim, b"x", 5),
        Err(ConsoleRingError::Inconsistent {
            prod: 0,
            cons: 5000
        })
    );
    assert_eq!(sim.prod, 0, "nothing written");
    assert_eq!(
        ring.flush(&mut sim, 5),
        Err(ConsoleRingError::Inconsistent {
            prod: 0,
            cons: 5000
        })
    );
    assert_eq!(
        std::format!(
            "{}",
            ConsoleRingError::Inconsistent {
                prod: 0,
                cons: 5000
            }
        ),
        "ring indices inconsistent (out_prod 0, out_cons 5000)"
    );
}

#[test]
fn flush_waits_until_empty_or_budget() {
    let mut sim = Sim::new(0, 10);
    let mut ring = OutRing::new();
    ring.write(&mut sim, &text(35), 0).unwrap();
    assert_eq!(ring.flush(&mut sim, 100), Ok(true));
    assert_eq!(sim.yields, 4);
    let mut dead = Sim::new(0, 0);
    ring.write(&mut dead, b"x", 0).unwrap();
    assert_eq!(ring.flush(&mut dead, 3), Ok(false));
    assert_eq!(dead.yields, 3);
}

#[test]
fn empty_write_only_notifies() {
    let mut sim = Sim::new(7, 0);
    let mut ring = OutRing::new();
    ring.write(&mut sim, b"", 0).unwrap();
    assert_eq!((sim.prod, sim.notifies), (7, 1));
}
