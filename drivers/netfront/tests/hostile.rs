//! A misbehaving SimNetback: every violation is a typed error (or a sticky
//! fault for ring-level ones), buffers are recycled, nothing panics, and the
//! driver recovers (by itself for per-packet errors, by reconnecting after a
//! fault).
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use netfront::sim::{
    POISON, RingSel, RxCorruption, SimNetConfig, SimRxPacket, SimWorld, TxCorruption,
    buffer_config, pseudo_random_corpus, test_frame,
};
use netfront::{Config, Fault, NetError, RxError};
use xen_abi::netif::{NETIF_RSP_DROPPED, NETIF_RSP_ERROR, NETIF_RSP_NULL};
use xen_ring::BackendFault;
use xenbus::{Phase, XenbusState};

fn frame(len: usize, seed: u8) -> Vec<u8> {
    test_frame(len, 1, seed)
}

fn small() -> Config {
    buffer_config(32, 8, 4)
}

/// Reconnects after a fault (as the kernel does) and checks that it is the
/// second connection, up and without a fault.
fn reconnect_clean(w: &mut SimWorld, nf: &mut netfront::sim::SimNetFront) {
    nf.reconnect(&mut w.xs).unwrap();
    let errors = w.pump(nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(nf.is_up());
    assert_eq!(nf.fault(), None);
    assert_eq!(w.back.stats().connects, 2);
}

/// Injects a corrupted packet followed by a good one; returns what came out.
fn rx_case(c: RxCorruption, len: usize) -> (Vec<Vec<u8>>, Vec<NetError>, Vec<u8>) {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    // Some traffic first, so that "stale" ids exist.
    for i in 0..5 {
        w.back.inject(SimRxPacket::new(&frame(100, i)));
    }
    let (f, e) = w.receive_all(&mut nf);
    assert_eq!(f.len(), 5);
    assert!(e.is_empty());
    w.back.corrupt_next_rx(c);
    let mut p = SimRxPacket::new(&frame(len, 50));
    p.chunk = 1000;
    w.back.inject(p);
    let good = frame(200, 60);
    for _ in 0..3 {
        w.back.inject(SimRxPacket::new(&good));
    }
    let (frames, errors) = w.receive_all(&mut nf);
    // No fault: the ring keeps working, and every buffer is back in use.
    assert_eq!(nf.fault(), None);
    assert!(nf.is_up());
    for _ in 0..3 {
        w.back.inject(SimRxPacket::new(&good));
    }
    let (more, e2) = w.receive_all(&mut nf);
    assert!(e2.is_empty(), "{e2:?}");
    assert_eq!(more.len(), 3);
    let st = nf.stats();
    assert_eq!(st.rx.errors as usize, errors.len());
    (frames, errors, good)
}

#[test]
fn rx_stale_id_is_dropped_and_recycled() {
    let (frames, errors, good) = rx_case(RxCorruption::StaleId, 3000);
    assert!(matches!(
        errors.as_slice(),
        [NetError::Rx(RxError::UnexpectedId { .. })]
    ));
    assert_eq!(frames, vec![good.clone(), good.clone(), good]);
}

#[test]
fn rx_id_out_of_range_is_dropped() {
    let (frames, errors, _) = rx_case(RxCorruption::Id(60000), 100);
    assert!(matches!(
        errors.as_slice(),
        [NetError::Rx(RxError::UnexpectedId { got: 60000, .. })]
    ));
    assert_eq!(frames.len(), 3);
}

#[test]
fn rx_negative_status_is_dropped() {
    for s in [NETIF_RSP_ERROR, NETIF_RSP_DROPPED, i16::MIN] {
        let (frames, errors, _) = rx_case(RxCorruption::Status(s), 2500);
        assert_eq!(errors, vec![NetError::Rx(RxError::BackendStatus(s))]);
        assert_eq!(frames.len(), 3);
    }
}

#[test]
fn rx_size_or_offset_beyond_the_page_is_dropped() {
    for (c, len, offset, size) in [
        (RxCorruption::Status(4097), 100, 0, 4097),
        (RxCorruption::Offset(4000), 200, 4000, 200),
    ] {
        let (frames, errors, _) = rx_case(c, len);
        let want = RxError::OutOfPage { offset, size };
        assert_eq!(errors, vec![NetError::Rx(want)]);
        assert_eq!(frames.len(), 3);
    }
    let (frames, errors, _) = rx_case(RxCorruption::Offset(u16::MAX), 14);
    assert!(matches!(
        errors.as_slice(),
        [NetError::Rx(RxError::OutOfPage { .. })]
    ));
    assert_eq!(frames.len(), 3);
}

#[test]
fn rx_bad_extra_types_are_dropped() {
    for t in [0u8, 5, 200] {
        let (frames, errors, _) = rx_case(RxCorruption::ExtraType(t), 1500);
        assert_eq!(errors, vec![NetError::Rx(RxError::BadExtraType(t))]);
        assert_eq!(frames.len(), 3);
    }
}

#[test]
fn rx_endless_extra_chain_is_bounded() {
    // Every extra says "more", so the chain swallows following slots too:
    // the driver reports one error and resynchronises on the next packet
    // boundary it can see.
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    w.back.corrupt_next_rx(RxCorruption::EndlessExtras(10));
    w.back.inject(SimRxPacket::new(&frame(100, 1)));
    let (_, errors) = w.receive_all(&mut nf);
    assert!(
        errors.iter().all(|e| matches!(
            e,
            NetError::Rx(RxError::TooManyExtras | RxError::BadExtraType(_))
        )),
        "{errors:?}"
    );
    // Later packets flow again.
    let good = frame(300, 9);
    let mut got = Vec::new();
    for _ in 0..20 {
        w.back.inject(SimRxPacket::new(&good));
        let (f, _) = w.receive_all(&mut nf);
        got.extend(f);
    }
    assert!(got.len() >= 18, "{}", got.len());
    assert!(got.iter().all(|f| *f == good));
    assert_eq!(nf.fault(), None);
}

#[test]
fn rx_dangling_more_data_merges_but_stays_bounded() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    let a = frame(100, 1);
    let b = frame(200, 2);
    w.back.corrupt_next_rx(RxCorruption::DanglingMoreData);
    w.back.inject(SimRxPacket::new(&a));
    w.back.inject(SimRxPacket::new(&b));
    let (frames, errors) = w.receive_all(&mut nf);
    assert!(errors.is_empty());
    // The back end glued two packets into one: legal on the wire.
    assert_eq!(frames, vec![[a, b].concat()]);
}

#[test]
fn rx_rsp_prod_jump_faults_until_reconnect() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    w.back.inject(SimRxPacket::new(&frame(100, 1)));
    w.back.service();
    w.back.jump_rsp_prod(RingSel::Rx, 300);
    let e = nf.receive(|_| ()).unwrap_err();
    assert!(matches!(
        e,
        NetError::Faulted(Fault::RxRing(BackendFault::ResponseOverflow { .. }))
    ));
    // Sticky, for rx and tx alike.
    assert_eq!(nf.receive(|_| ()).unwrap_err(), e);
    assert_eq!(nf.transmit(60, |_| ()).unwrap_err(), e);
    assert!(!nf.is_up());
    reconnect_clean(&mut w, &mut nf);
    let f = frame(500, 7);
    w.back.inject(SimRxPacket::new(&f));
    let (frames, _) = w.receive_all(&mut nf);
    assert_eq!(frames, vec![f]);
}

#[test]
fn rx_rsp_prod_beyond_requests_faults() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    w.back.service();
    // 32 requests posted; claim 33 responses.
    w.back.jump_rsp_prod(RingSel::Rx, 33);
    assert!(matches!(
        nf.receive(|_| ()),
        Err(NetError::Faulted(Fault::RxRing(
            BackendFault::UnrequestedResponses { .. }
        )))
    ));
}

#[test]
fn tx_rsp_prod_jump_faults() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    nf.transmit(60, |b| b.fill(1)).unwrap();
    w.back.jump_rsp_prod(RingSel::Tx, 2);
    assert!(matches!(
        nf.poll_tx(),
        Err(NetError::Faulted(Fault::TxRing(_)))
    ));
    assert!(matches!(nf.rearm(), Err(NetError::Faulted(_))));
}

fn tx_case(c: TxCorruption) -> (SimWorld, netfront::sim::SimNetFront) {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    nf.transmit(60, |b| b.fill(1)).unwrap();
    w.back.service();
    nf.poll_tx().unwrap();
    w.back.corrupt_next_tx(c);
    nf.transmit(60, |b| b.fill(2)).unwrap();
    nf.transmit(60, |b| b.fill(3)).unwrap();
    w.back.service();
    (w, nf)
}

#[test]
fn tx_replayed_id_faults() {
    let (_w, mut nf) = tx_case(TxCorruption::StaleId);
    assert!(matches!(
        nf.poll_tx(),
        Err(NetError::Faulted(Fault::TxNotInFlight(_)))
    ));
    assert!(matches!(
        nf.transmit(60, |_| ()),
        Err(NetError::Faulted(Fault::TxNotInFlight(_)))
    ));
}

#[test]
fn tx_unknown_id_faults() {
    let (_w, mut nf) = tx_case(TxCorruption::Id(9999));
    assert_eq!(
        nf.poll_tx(),
        Err(NetError::Faulted(Fault::TxUnknownId(9999)))
    );
}

#[test]
fn tx_bad_status_faults_but_error_status_does_not() {
    let (_w, mut nf) = tx_case(TxCorruption::Status(NETIF_RSP_NULL));
    assert!(matches!(
        nf.poll_tx(),
        Err(NetError::Faulted(Fault::TxBadStatus {
            status: NETIF_RSP_NULL,
            ..
        }))
    ));
    let (_w, mut nf) = tx_case(TxCorruption::Status(-77));
    assert!(matches!(
        nf.poll_tx(),
        Err(NetError::Faulted(Fault::TxBadStatus { status: -77, .. }))
    ));
    let (_w, mut nf) = tx_case(TxCorruption::Status(NETIF_RSP_ERROR));
    assert_eq!(nf.poll_tx(), Ok(2));
    let st = nf.stats().tx;
    assert_eq!(st.errors, 1);
    assert_eq!(st.completed, 2);
    assert_eq!(nf.tx_in_flight(), 0);
}

#[test]
fn backend_closing_mid_traffic_then_reconnect_with_poisoned_pages() {
    let mut w = SimWorld::new(SimNetConfig::default());
    w.grants.set_poison_on_end(true);
    let mut nf = w.connect(small());
    let active = w.grants.with_table(|t| t.stats().active);
    // Traffic in flight both ways.
    w.back.hold_tx(true);
    nf.transmit(60, |b| b.fill(1)).unwrap();
    for i in 0..3 {
        w.back.inject(SimRxPacket::new(&frame(100, i)));
    }
    w.back.service();
    w.back.drop_connection(XenbusState::Closing);
    // Nothing is ended before we have read the back end's Closing.
    assert_eq!(w.grants.with_table(|t| t.stats().active), active);
    assert!(w.grants.with_mem(|m| m.poisoned()) == 0);
    nf.on_backend_state(&mut w.xs).unwrap();
    assert!(!nf.is_up());
    // Grants ended (the back end had unmapped everything), pages poisoned.
    let st = w.grants.with_table(|t| t.stats());
    assert_eq!(st.active, 0);
    assert_eq!(st.deferred, 0);
    assert!(w.grants.with_mem(|m| m.poisoned()) >= active as u64);
    assert_eq!(w.evt.closed().len(), 1);
    assert_eq!(nf.stats().tx.dropped, 1);
    // The machine answered Closed and, once the back end is Closed, reconnects.
    w.back.hold_tx(false);
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(nf.is_up());
    assert_eq!(w.back.stats().connects, 2);
    assert_eq!(w.back.stats().bad_rx_grefs, 0);
    // Packets flow, none carries poison or stale data.
    let good: Vec<Vec<u8>> = (10..20).map(|i| frame(1400, i)).collect();
    for f in &good {
        w.back.inject(SimRxPacket::new(f));
        nf.transmit(f.len(), |b| b.copy_from_slice(f)).unwrap();
        w.back.service();
        nf.poll_tx().unwrap();
    }
    let (frames, errors) = w.receive_all(&mut nf);
    assert!(errors.is_empty());
    assert_eq!(frames, good);
    assert!(frames.iter().all(|f| !f.iter().all(|b| *b == POISON)));
    assert_eq!(w.back.take_sent(), good);
}

#[test]
fn backend_keeping_mappings_defers_end_of_access() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    let live = w.pages.live();
    w.back.keep_mappings_on_close(true);
    w.back.drop_connection(XenbusState::Closed);
    nf.on_backend_state(&mut w.xs).unwrap();
    // The two ring pages are still mapped: deferred, not released.
    assert_eq!(w.grants.with_table(|t| t.stats().deferred), 2);
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(nf.is_up());
    // New ring pages were taken; the old ones are still the table's.
    assert_eq!(w.pages.live(), live + 2);
    assert_eq!(w.grants.poll_deferred(&w.pages).still_deferred, 2);
    w.back.release_mappings();
    let r = w.grants.poll_deferred(&w.pages);
    assert_eq!(r.released, 2);
    assert_eq!(w.pages.live(), live);
    let f = frame(100, 3);
    w.back.inject(SimRxPacket::new(&f));
    assert_eq!(w.receive_all(&mut nf).0, vec![f]);
}

#[test]
fn backend_reload_while_connected_is_walked_through_close() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    w.back.reload();
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(nf.is_up());
    assert_eq!(nf.phase(), Phase::Connected);
    assert_eq!(w.back.stats().connects, 2);
    assert_eq!(w.back.stats().bad_rx_grefs, 0);
    let f = frame(100, 3);
    w.back.inject(SimRxPacket::new(&f));
    assert_eq!(w.receive_all(&mut nf).0, vec![f]);
}

#[test]
fn backend_vanishing_removes_the_device() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    let dir = w.back.backend_dir().to_string();
    w.back.drop_connection(XenbusState::Closed);
    w.xs_ring.with_sim(|s| s.rm(&dir));
    nf.on_backend_state(&mut w.xs).unwrap();
    assert_eq!(nf.phase(), Phase::Removed);
    assert!(!nf.is_up());
    assert_eq!(w.grants.with_table(|t| t.stats().active), 0);
    assert_eq!(w.pages.live(), 0);
}

/// The fuzz target's session body, shared with `fuzz/`.
#[path = "../../../fuzz/src/netfront.rs"]
mod hostile_session;

/// The fuzz target's body over a deterministic pseudo-random corpus (so a
/// plain `cargo test` exercises it without cargo-fuzz).
#[test]
fn hostile_sessions_from_pseudo_random_bytes() {
    pseudo_random_corpus(
        0x9E37_79B9_7F4A_7C15,
        300,
        3,
        hostile_session::hostile_session,
    );
}

#[test]
fn tx_stall_renotifies_then_faults_and_a_reconnect_recovers() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    // Nothing waits: the watchdog is idle.
    nf.check_tx_progress(0).unwrap();
    assert_eq!(nf.tx_watchdog_deadline_ms(), None);
    // A back end that stops taking tx requests.
    w.back.hold_tx(true);
    nf.transmit(60, |b| b.fill(1)).unwrap();
    let notifies = nf.stats().notifies;
    nf.check_tx_progress(1000).unwrap();
    assert_eq!(nf.tx_watchdog_deadline_ms(), Some(2000));
    nf.check_tx_progress(1999).unwrap();
    assert_eq!(nf.stats().notifies, notifies);
    // Half-way: one more notification, once.
    nf.check_tx_progress(2000).unwrap();
    nf.check_tx_progress(2500).unwrap();
    assert_eq!(nf.stats().notifies, notifies + 1);
    assert_eq!(nf.stats().watchdog_notifies, 1);
    assert_eq!(nf.tx_watchdog_deadline_ms(), Some(3000));
    nf.check_tx_progress(2999).unwrap();
    assert_eq!(nf.fault(), None);
    // The whole limit: a sticky fault.
    assert_eq!(
        nf.check_tx_progress(3000),
        Err(NetError::Faulted(Fault::TxStalled { waited_ms: 2000 }))
    );
    assert_eq!(nf.fault(), Some(Fault::TxStalled { waited_ms: 2000 }));
    assert_eq!(nf.stats().watchdog_stalls, 1);
    assert!(nf.transmit(60, |_| ()).is_err());
    // Reconnecting (what the kernel does on any fault) gives working rings.
    w.back.reset_knobs();
    reconnect_clean(&mut w, &mut nf);
    let _ = w.back.take_sent();
    nf.transmit(60, |b| b.fill(9)).unwrap();
    w.back.service();
    assert_eq!(nf.poll_tx(), Ok(1));
    assert_eq!(w.back.take_sent(), vec![vec![9u8; 60]]);
    nf.check_tx_progress(10_000).unwrap();
    assert_eq!(nf.tx_watchdog_deadline_ms(), None);
}

#[test]
fn tx_watchdog_restarts_on_progress_and_after_a_suspend() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    // A slow back end that still moves never trips it.
    w.back.hold_tx(true);
    nf.transmit(60, |b| b.fill(1)).unwrap();
    nf.transmit(60, |b| b.fill(2)).unwrap();
    nf.check_tx_progress(0).unwrap();
    w.back.hold_tx(false);
    w.back.service();
    nf.check_tx_progress(1900).unwrap();
    assert_eq!(nf.tx_watchdog_deadline_ms(), None);
    // Requests waiting across a cancelled suspend: the saved time does not count.
    w.back.hold_tx(true);
    nf.transmit(60, |b| b.fill(3)).unwrap();
    nf.check_tx_progress(2000).unwrap();
    nf.suspend().unwrap();
    nf.resume(&mut w.xs, false).unwrap();
    nf.check_tx_progress(60_000).unwrap();
    assert_eq!(nf.fault(), None);
    assert_eq!(nf.tx_watchdog_deadline_ms(), Some(61_000));
    // Turned off: never.
    let mut off = w.connect(Config {
        tx_stall_ms: 0,
        ..small()
    });
    w.back.hold_tx(true);
    off.transmit(60, |b| b.fill(4)).unwrap();
    off.check_tx_progress(0).unwrap();
    off.check_tx_progress(1_000_000).unwrap();
    assert_eq!(off.fault(), None);
}
