//! One device's watch that is never drained (its handler blocks or waits) does not delay another's: the xenstore client keeps a bounded queue per watch.
//!
//! The guest kernel registers one watch per back end (`kernel/src/xenbus/watch.rs`)
//! and one on `data/echo-in`; its main loop takes events per watch, round robin
//! (`xenbus::RoundRobin`). Here watch A belongs to a device whose handler is stuck:
//! nobody takes its events while its back end's state node is rewritten hundreds
//! of times. Watch B's events still arrive, every one, in order, and A's queue
//! stays bounded (the surplus is coalesced: a state watch only needs "changed").

#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use xenstore::sim::{SimRing, SimXenstored};

const A_PATH: &str = "/local/domain/0/backend/vif/7/5/state";
const B_PATH: &str = "/local/domain/7/data/echo-in";

#[test]
fn a_watch_nobody_drains_does_not_delay_another() {
    let ring = SimRing::new(SimXenstored::new(7), 0);
    ring.with_sim(|s| {
        s.write(A_PATH, b"2");
        s.write(B_PATH, b"");
    });
    let mut xs = ring.connect();
    let a = xs.watch(A_PATH, 4).unwrap();
    let b = xs.watch(B_PATH, 4).unwrap();
    // Registration fires each watch once.
    assert_eq!(xs.wait_event(b).unwrap(), B_PATH);
    for round in 0..20 {
        // A storm on A's node: 25 events nobody takes.
        for _ in 0..25 {
            ring.with_sim(|s| s.write(A_PATH, b"2"));
        }
        ring.with_sim(|s| s.write(B_PATH, format!("v{round}").as_bytes()));
        // B's event comes through behind A's storm in the ring (the client
        // reads the ring into the per-watch queues as it goes), while A's
        // queue is never drained.
        assert_eq!(xs.wait_event(b).unwrap(), B_PATH, "round {round}");
        assert_eq!(xs.next_event(b).unwrap(), None, "round {round}");
        let sa = xs.watch_stats(a).unwrap();
        assert!(sa.queued <= sa.capacity, "{sa:?}");
        let sb = xs.watch_stats(b).unwrap();
        assert_eq!(sb.coalesced, 0, "B lost events: {sb:?}");
    }
    let sa = xs.watch_stats(a).unwrap();
    assert_eq!(sa.queued, 4);
    assert!(sa.coalesced >= 20 * 25 - 4, "{sa:?}");
    assert_eq!(xs.watch_stats(b).unwrap().received, 21);
    // When A's handler runs again it learns that its node changed.
    assert_eq!(xs.next_event(a).unwrap().as_deref(), Some(A_PATH));
}
