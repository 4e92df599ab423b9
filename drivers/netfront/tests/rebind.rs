//! Linux netback's dynamic unbind/bind against SimNetback: the front end keeps
//! its rings, waits (no watchdog reset, no busy work) while the back end is
//! away, and loses, duplicates or corrupts no frame when it re-attaches.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use netfront::Config;
use netfront::sim::{SimNetConfig, SimNetFront, SimRxPacket, SimWorld};
use xenbus::{Phase, XenbusState};

fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_add(seed)).collect();
    f[12] = 0x88;
    f[13] = 0xb5;
    f
}

fn small() -> Config {
    Config {
        rx_buffers: 32,
        tx_buffers: 8,
        rx_refill_batch: 4,
        ..Config::default()
    }
}

fn send(nf: &mut SimNetFront, f: &[u8]) {
    nf.transmit(f.len(), |buf| buf.copy_from_slice(f)).unwrap();
}

fn own_state(w: &SimWorld) -> Vec<u8> {
    w.xs_ring
        .with_sim(|s| s.read("/local/domain/7/device/vif/0/state"))
        .unwrap_or_default()
}

fn active_grants(w: &SimWorld) -> u32 {
    w.grants.with_table(|t| t.stats().active)
}

#[test]
fn unbind_then_bind_reattaches_to_the_same_rings() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    assert_eq!(own_state(&w), b"4");
    let grants = active_grants(&w);
    let setups = nf.stats().setups;
    // Traffic before.
    send(&mut nf, &frame(100, 1));
    w.back.inject(SimRxPacket::new(&frame(120, 2)));
    assert_eq!(w.receive_all(&mut nf).0, vec![frame(120, 2)]);
    assert_eq!(w.back.take_sent(), vec![frame(100, 1)]);

    // Unbound: its state node still says Connected; frames wait in the ring.
    w.back.unbind();
    assert!(!w.back.is_connected());
    send(&mut nf, &frame(200, 3));
    send(&mut nf, &frame(300, 4));
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(nf.is_up());
    assert_eq!(nf.tx_in_flight(), 2);
    assert!(w.back.take_sent().is_empty());

    // Bound again: InitWait first. The front end stays Connected, keeps its
    // rings and grants and does not write Closing.
    w.back.bind();
    nf.on_backend_state(&mut w.xs).unwrap();
    assert_eq!(nf.backend_state(), Some(XenbusState::InitWait));
    assert_eq!(nf.phase(), Phase::Connected);
    assert!(nf.is_reattaching());
    assert_eq!(own_state(&w), b"4");
    assert_eq!(active_grants(&w), grants);

    // It re-attaches at the shared indices and shows Connected.
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(w.back.state(), XenbusState::Connected);
    assert!(w.back.is_connected());
    assert!(nf.is_up());
    assert!(!nf.is_reattaching());
    assert_eq!(nf.reattaches(), 1);
    assert_eq!(w.back.stats().connects, 2);
    assert_eq!(nf.stats().setups, setups, "no new connection was set up");
    assert_eq!(w.back.take_sent(), vec![frame(200, 3), frame(300, 4)]);
    nf.poll_tx().unwrap();
    assert_eq!(nf.tx_in_flight(), 0);
    assert!(w.back.audit_failures().is_empty());
    assert_eq!(w.back.stats().bad_rx_grefs, 0);

    // Both directions work on the re-attached rings.
    for i in 0..40u8 {
        w.back
            .inject(SimRxPacket::new(&frame(60 + usize::from(i), i)));
    }
    let (got, errors) = w.receive_all(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(got.len(), 40);
    for (i, f) in got.iter().enumerate() {
        assert_eq!(f, &frame(60 + i, i as u8));
    }
    send(&mut nf, &frame(400, 5));
    w.back.service();
    assert_eq!(w.back.take_sent(), vec![frame(400, 5)]);
    assert_eq!(active_grants(&w), grants);
}

#[test]
fn a_rebind_the_watch_never_showed_still_delivers() {
    // The watch coalesced InitWait away: the front end only ever reads
    // Connected. The back end re-attached all the same.
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    w.back.unbind();
    send(&mut nf, &frame(90, 7));
    w.back.bind();
    assert!(w.back.step());
    assert_eq!(w.back.state(), XenbusState::Connected);
    nf.on_backend_state(&mut w.xs).unwrap();
    assert!(nf.is_up());
    assert_eq!(nf.reattaches(), 0);
    assert_eq!(w.back.take_sent(), vec![frame(90, 7)]);
    w.back.inject(SimRxPacket::new(&frame(70, 8)));
    assert_eq!(w.receive_all(&mut nf).0, vec![frame(70, 8)]);
}

#[test]
fn the_tx_watchdog_waits_while_the_back_end_is_away() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    let limit = small().tx_stall_ms;
    w.back.unbind();
    send(&mut nf, &frame(100, 9));
    let notifies = nf.stats().notifies;
    // Far past the stall limit: no fault, no reset, no notification storm.
    let mut now = 0;
    for _ in 0..40 {
        nf.check_tx_progress(now).unwrap();
        now += limit / 4;
    }
    assert_eq!(nf.fault(), None);
    assert!(nf.is_up());
    assert!(
        nf.watchdog_away_waits() >= 10,
        "{}",
        nf.watchdog_away_waits()
    );
    assert_eq!(nf.stats().watchdog_stalls, 0);
    assert_eq!(nf.stats().notifies, notifies);
    // While it waits, the next deadline is half a limit away: one wake-up
    // per half limit, not a busy loop.
    let last = now - limit / 4;
    let next = nf.tx_watchdog_deadline_ms().unwrap();
    assert!(next > last && next <= last + limit / 2, "{next} vs {last}");
    w.back.bind();
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(w.back.take_sent(), vec![frame(100, 9)]);
    nf.check_tx_progress(now).unwrap();
    assert_eq!(nf.tx_in_flight(), 0);
    assert_eq!(nf.tx_watchdog_deadline_ms(), None);
}

#[test]
fn a_back_end_that_is_bound_but_stalled_still_trips_the_watchdog() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    let limit = small().tx_stall_ms;
    w.back.hold_tx(true);
    send(&mut nf, &frame(100, 9));
    nf.check_tx_progress(0).unwrap();
    nf.check_tx_progress(limit / 2).unwrap();
    assert!(nf.check_tx_progress(limit).is_err());
    assert_eq!(nf.watchdog_away_waits(), 0);
    assert!(nf.fault().is_some());
}

#[test]
fn ten_rebinds_lose_and_leak_nothing() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    let grants = active_grants(&w);
    let pages = w.pages.live();
    let mut seed = 0u8;
    let mut expect_tx = Vec::new();
    let mut sent = Vec::new();
    for round in 0..10 {
        for _ in 0..3 {
            seed = seed.wrapping_add(1);
            let f = frame(64 + usize::from(seed), seed);
            send(&mut nf, &f);
            expect_tx.push(f);
        }
        w.back.service();
        sent.extend(w.back.take_sent());
        w.back.unbind();
        for _ in 0..2 {
            seed = seed.wrapping_add(1);
            let f = frame(64 + usize::from(seed), seed);
            send(&mut nf, &f);
            expect_tx.push(f);
        }
        w.back.bind();
        // Every other round the front end sees InitWait before the re-attach.
        if round % 2 == 0 {
            nf.on_backend_state(&mut w.xs).unwrap();
            assert!(nf.is_reattaching());
        }
        let errors = w.pump(&mut nf);
        assert!(errors.is_empty(), "round {round}: {errors:?}");
        assert!(nf.is_up(), "round {round}: {:?}", nf.phase());
        sent.extend(w.back.take_sent());
        nf.poll_tx().unwrap();
        seed = seed.wrapping_add(1);
        let f = frame(100, seed);
        w.back.inject(SimRxPacket::new(&f));
        let (got, errors) = w.receive_all(&mut nf);
        assert!(errors.is_empty(), "round {round}: {errors:?}");
        assert_eq!(got, vec![f], "round {round}");
    }
    assert_eq!(sent, expect_tx);
    assert_eq!(nf.reattaches(), 5);
    assert_eq!(w.back.stats().connects, 11);
    assert_eq!(nf.stats().setups, 1);
    assert_eq!(active_grants(&w), grants);
    assert_eq!(w.pages.live(), pages);
    assert!(w.back.audit_failures().is_empty());
}

#[test]
fn a_back_end_that_closes_instead_is_followed_through_the_close() {
    // An older netback (no allow_rebind) shows Closed on unbind: the front
    // end releases its grants and connects afresh.
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    w.back.drop_connection(XenbusState::Closed);
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(nf.is_up());
    assert_eq!(nf.stats().setups, 2);
    assert_eq!(nf.reattaches(), 0);
    w.back.inject(SimRxPacket::new(&frame(80, 1)));
    assert_eq!(w.receive_all(&mut nf).0, vec![frame(80, 1)]);
}
