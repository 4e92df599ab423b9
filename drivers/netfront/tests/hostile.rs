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
            NetError::Rx(
                RxError::TooManyExtras | RxError::BadExtraType(_) | RxError::DuplicateExtra(_)
            )
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

/// A connected vif whose tx watchdog trips after `ms`.
fn with_tx_stall_ms(ms: u64) -> (SimWorld, netfront::sim::SimNetFront) {
    let mut w = SimWorld::new(SimNetConfig::default());
    let nf = w.connect(Config {
        tx_stall_ms: ms,
        ..small()
    });
    (w, nf)
}

#[test]
fn tx_stall_renotifies_then_faults_and_a_reconnect_recovers() {
    let (mut w, mut nf) = with_tx_stall_ms(2000);
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

/// A check that comes late (the guest was not scheduled for seconds, as
/// under a loaded dom0 in CI, where a 5.4 s-late check once faulted a vif
/// that a notification would have woken) notifies first and faults only
/// half the limit after that notification, and not if the back end then moves.
#[test]
fn a_late_tx_check_notifies_before_it_faults() {
    let (mut w, mut nf) = with_tx_stall_ms(2000);
    w.back.hold_tx(true);
    nf.transmit(60, |b| b.fill(1)).unwrap();
    nf.check_tx_progress(0).unwrap();
    let notifies = nf.stats().notifies;
    // Far past the whole limit: a notification, no fault.
    nf.check_tx_progress(5429).unwrap();
    assert_eq!(nf.fault(), None);
    assert_eq!(nf.stats().notifies, notifies + 1);
    assert_eq!(nf.tx_watchdog_deadline_ms(), Some(6429));
    nf.check_tx_progress(6428).unwrap();
    assert_eq!(nf.fault(), None);
    // The back end woke up: the clock starts afresh.
    w.back.hold_tx(false);
    w.back.service();
    nf.check_tx_progress(6500).unwrap();
    assert_eq!(nf.fault(), None);
    assert_eq!(nf.tx_watchdog_deadline_ms(), None);
    // Still stuck half a limit after the late notification: a fault.
    w.back.hold_tx(true);
    nf.transmit(60, |b| b.fill(2)).unwrap();
    nf.check_tx_progress(7000).unwrap();
    nf.check_tx_progress(20_000).unwrap();
    assert_eq!(nf.fault(), None);
    assert_eq!(
        nf.check_tx_progress(21_000),
        Err(NetError::Faulted(Fault::TxStalled { waited_ms: 14_000 }))
    );
}

#[test]
fn tx_watchdog_restarts_on_progress_and_after_a_suspend() {
    let (mut w, mut nf) = with_tx_stall_ms(2000);
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

// --- bounded work, the fault budget, the deferred cap, the rx watchdog ---------------

/// An rx response slot: id, offset, flags, status (`netif_rx_response`).
fn raw_rx(id: u16, offset: u16, flags: u16, status: i16) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..2].copy_from_slice(&id.to_le_bytes());
    b[2..4].copy_from_slice(&offset.to_le_bytes());
    b[4..6].copy_from_slice(&flags.to_le_bytes());
    b[6..8].copy_from_slice(&status.to_le_bytes());
    b
}

#[test]
fn rx_a_backend_answering_every_refill_with_bad_packets_costs_one_batch_per_poll() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    let bad = [
        raw_rx(0xffff, 0, 0, 60),
        raw_rx(0, 0, 0, NETIF_RSP_ERROR),
        raw_rx(0, 4000, 0, 500),
    ];
    for round in 0..100usize {
        // The back end answers every request posted so far with a bad packet.
        w.back.push_raw_rx(&[]);
        let posted = w.back.rx_posted();
        assert!(posted > 0, "round {round}: buffers are re-posted");
        let slots: Vec<[u8; 8]> = (0..posted).map(|i| bad[(round + i) % bad.len()]).collect();
        w.back.push_raw_rx(&slots);
        let before = nf.stats();
        // One poll: every bad packet dropped, nothing more than was posted
        // before the call consumed, and one refill at most.
        assert_eq!(nf.poll_rx(), Ok(false));
        let after = nf.stats();
        assert_eq!(after.rx.slots - before.rx.slots, posted as u64);
        assert_eq!(after.rx.errors - before.rx.errors, posted as u64);
        assert!(after.rx.refills - before.rx.refills <= 1);
        assert!(nf.stats().last_rx_error.is_some());
        assert_eq!(nf.fault(), None);
    }
    // A back end that behaves again is served as usual.
    let good = frame(300, 9);
    w.back.inject(SimRxPacket::new(&good));
    let (frames, errors) = w.receive_all(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(frames, vec![good]);
}

#[test]
fn event_storms_without_responses_find_no_work_and_change_nothing() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(small());
    let before = nf.stats();
    for _ in 0..10_000 {
        w.evt.notify_guest();
        assert!(w.evt.take_guest_event());
        assert_eq!(nf.poll_rx(), Ok(false));
        assert_eq!(nf.poll_tx(), Ok(0));
    }
    let after = nf.stats();
    assert_eq!(before, after, "a spurious event costs no ring work");
    assert_eq!(after.notifies, before.notifies, "and notifies nobody");
    // The port damping itself (mask with back-off) is evtchn-scan's
    // `storm::SpuriousLimiter`, which the kernel applies per vif.
}

/// Everything a faulting back end leaves behind returns once it lets go.
fn assert_baseline(w: &mut SimWorld, pages_before: u64) {
    w.back.release_mappings();
    let pages = w.pages.clone();
    w.grants.poll_deferred(&pages);
    let s = w.grants.with_table(|t| t.stats());
    assert_eq!((s.active, s.deferred, s.leaked), (0, 0, 0), "{s:?}");
    assert!(
        w.pages.live() <= pages_before,
        "{} pages kept",
        w.pages.live()
    );
}

/// The back end provokes a fault (an impossible rx `rsp_prod`).
fn provoke_fault(w: &mut SimWorld, nf: &mut netfront::sim::SimNetFront) {
    w.back.jump_rsp_prod(RingSel::Rx, 1000);
    assert!(matches!(
        nf.poll_rx(),
        Err(NetError::Faulted(Fault::RxRing(_)))
    ));
}

#[test]
fn a_backend_that_keeps_its_mappings_and_faults_again_and_again_breaks_the_device() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let pages_before = w.pages.live();
    let mut nf = w.connect(small());
    nf.set_recovery(xen_frontend::RecoveryConfig {
        max_faults: 3,
        fault_window_ms: 60_000,
        ..xen_frontend::RecoveryConfig::default()
    });
    w.back.keep_mappings_on_close(true);
    let mut now = 0;
    for round in 0..3 {
        provoke_fault(&mut w, &mut nf);
        nf.recover(&mut w.xs, now).expect("within the budget");
        let errors = w.pump(&mut nf);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(nf.is_up(), "round {round}: reconnected");
        now += 1000;
    }
    assert_eq!(nf.deferred_pages(), 6, "two ring pages per connection");
    provoke_fault(&mut w, &mut nf);
    let err = nf.recover(&mut w.xs, now).unwrap_err();
    assert!(matches!(
        err,
        NetError::Broken(xen_frontend::Broken::TooManyFaults { faults: 4, .. })
    ));
    let line = format!("xenrs net error: vif/0: {err}");
    assert!(line.contains("broken"), "{line}");
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!nf.is_up());
    assert_eq!(nf.phase(), Phase::Closed);
    assert_eq!(nf.stats().faults, 4);
    // Broken for good: no retry, no reconnect, even much later.
    nf.poll(&mut w.xs, now + 3_600_000).expect("poll");
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(nf.phase(), Phase::Closed);
    assert!(matches!(
        nf.recover(&mut w.xs, now),
        Ok(()) | Err(NetError::Broken(_))
    ));
    assert_eq!(w.back.stats().connects, 4);
    assert_baseline(&mut w, pages_before);
}

#[test]
fn deferred_pages_over_the_cap_stop_the_reconnects_before_they_allocate() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let pages_before = w.pages.live();
    let mut nf = w.connect(small());
    nf.set_recovery(xen_frontend::RecoveryConfig {
        max_faults: 100,
        max_deferred_pages: 3,
        ..xen_frontend::RecoveryConfig::default()
    });
    w.back.keep_mappings_on_close(true);
    for now in [0, 1] {
        provoke_fault(&mut w, &mut nf);
        nf.recover(&mut w.xs, now).expect("reconnect");
        let _ = w.pump(&mut nf);
    }
    // Two connections' ring pages (4) are still mapped: over the cap, the
    // second reconnect was refused and the device is broken.
    assert_eq!(nf.deferred_pages(), 4);
    assert!(matches!(
        nf.broken(),
        Some(xen_frontend::Broken::TooManyDeferred { pages: 4, cap: 3 })
    ));
    assert!(!nf.is_up());
    assert_eq!(w.back.stats().connects, 2);
    let live = w.pages.live();
    nf.poll(&mut w.xs, 1_000_000).expect("poll");
    let _ = w.pump(&mut nf);
    assert_eq!(
        w.pages.live(),
        live,
        "nothing allocated for a broken device"
    );
    assert_baseline(&mut w, pages_before);
}

#[test]
fn stalls_do_not_count_against_the_fault_budget() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config {
        tx_stall_ms: 100,
        ..small()
    });
    nf.set_recovery(xen_frontend::RecoveryConfig {
        max_faults: 0,
        ..xen_frontend::RecoveryConfig::default()
    });
    w.back.hold_tx(true);
    for round in 0..3u64 {
        nf.transmit(60, |b| b.fill(round as u8)).unwrap();
        w.back.service();
        let t0 = round * 1000;
        let _ = nf.check_tx_progress(t0);
        let _ = nf.check_tx_progress(t0 + 50);
        assert!(matches!(
            nf.check_tx_progress(t0 + 100),
            Err(NetError::Faulted(Fault::TxStalled { .. }))
        ));
        nf.recover(&mut w.xs, t0 + 100).expect("a stall reconnects");
        let errors = w.pump(&mut nf);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(nf.is_up());
    }
    assert_eq!(nf.stats().faults, 0);
    assert_eq!(nf.broken(), None);
}

fn rx_watch_config() -> Config {
    Config {
        rx_stall_ms: 1000,
        rx_stall_min_tx: 4,
        ..small()
    }
}

#[test]
fn rx_watchdog_fires_when_the_backend_takes_our_frames_but_fills_no_buffer() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(rx_watch_config());
    let mut now = 0;
    nf.check_rx_progress(now).unwrap();
    assert_eq!(nf.rx_watchdog_deadline_ms(), Some(500));
    let notifies = w.evt.to_backend();
    // We keep sending (the back end takes and completes every frame) and
    // nothing comes back.
    while now < 1000 {
        nf.transmit(60, |b| b.fill(1)).unwrap();
        w.back.service();
        nf.poll_tx().unwrap();
        now += 100;
        match nf.check_rx_progress(now) {
            Ok(()) => assert!(now < 1000),
            Err(e) => {
                assert_eq!(now, 1000);
                assert_eq!(e, NetError::Faulted(Fault::RxStalled { waited_ms: 1000 }));
            }
        }
    }
    assert!(w.evt.to_backend() > notifies, "notified half-way");
    assert_eq!(nf.stats().rx_watchdog_stalls, 1);
    assert!(!nf.is_up());
    // The same recovery as a tx stall: a reconnect, not counted as a fault.
    nf.recover(&mut w.xs, now).unwrap();
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(nf.is_up());
    assert_eq!(nf.stats().faults, 0);
    let good = frame(100, 3);
    w.back.inject(SimRxPacket::new(&good));
    assert_eq!(w.receive_all(&mut nf).0, vec![good]);
}

#[test]
fn rx_watchdog_leaves_an_idle_or_receiving_link_alone() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(rx_watch_config());
    // Idle: nothing sent, nothing received, for a long time.
    for t in (0..20_000).step_by(100) {
        nf.check_rx_progress(t).unwrap();
    }
    // Few frames sent (fewer than rx_stall_min_tx per window): still alone.
    for t in (20_000..40_000).step_by(100) {
        if t % 1000 == 0 {
            nf.transmit(60, |b| b.fill(2)).unwrap();
            w.back.service();
            nf.poll_tx().unwrap();
        }
        nf.check_rx_progress(t).unwrap();
    }
    // Busy both ways: every window sees rx.
    for t in (40_000..60_000).step_by(100) {
        nf.transmit(60, |b| b.fill(3)).unwrap();
        w.back.inject(SimRxPacket::new(&frame(80, 4)));
        w.back.service();
        nf.poll_tx().unwrap();
        let _ = nf.receive(|_| ());
        nf.check_rx_progress(t).unwrap();
    }
    // Responses published but not yet consumed are progress too.
    for t in (60_000..70_000).step_by(100) {
        nf.transmit(60, |b| b.fill(5)).unwrap();
        w.back.service();
        nf.poll_tx().unwrap();
        if t == 60_000 {
            w.back.inject(SimRxPacket::new(&frame(80, 6)));
            w.back.service();
        }
        if t < 69_000 {
            nf.check_rx_progress(t).unwrap();
        }
    }
    assert!(nf.is_up());
    assert_eq!(nf.stats().rx_watchdog_stalls, 0);
}

#[test]
fn a_setup_that_runs_out_of_pages_is_retried_with_backoff() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.probe(small()).unwrap();
    nf.set_recovery(xen_frontend::RecoveryConfig {
        retry_initial_ms: 10,
        retry_max_ms: 100,
        ..xen_frontend::RecoveryConfig::default()
    });
    w.pages.set_limit(Some(5));
    // The back end already waits in InitWait: setup runs at once, and fails.
    let mut errors = vec![nf.start(&mut w.xs).unwrap_err()];
    errors.extend(w.pump(&mut nf));
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, NetError::Setup(xen_frontend::SetupError::OutOfPages))),
        "{errors:?}"
    );
    assert!(!nf.is_up());
    // Still short of pages for a while: every retry fails and closes again.
    let mut now = 0;
    let mut tries = 0;
    while now < 300 {
        nf.poll(&mut w.xs, now).unwrap_or(());
        let _ = w.pump(&mut nf);
        now += 1;
        if nf.stats().setup_retries > tries {
            tries = nf.stats().setup_retries;
            assert!(!nf.is_up());
        }
    }
    assert!((2..=5).contains(&tries), "{tries} retries in 300 ms");
    assert_eq!(w.grants.with_table(|t| t.stats().active), 0);
    // Pages again: the next retry connects.
    w.pages.set_limit(None);
    while !nf.is_up() && now < 1000 {
        let _ = nf.poll(&mut w.xs, now);
        let _ = w.pump(&mut nf);
        now += 1;
    }
    assert!(
        nf.is_up(),
        "connected after the shortage ({:?})",
        nf.phase()
    );
    assert_eq!(nf.poll_at(), None);
    let good = frame(100, 7);
    w.back.inject(SimRxPacket::new(&good));
    assert_eq!(w.receive_all(&mut nf).0, vec![good]);
}

/// Inputs that once kept the fuzz target busy for seconds (the simulated
/// netback's tx loop): each must finish quickly.
#[test]
fn fuzz_findings_finish() {
    for (name, data) in [
        (
            "timeout-ca2d702d",
            &include_bytes!("../../../fuzz/findings/netfront_hostile-timeout-ca2d702d")[..],
        ),
        (
            "slow-504196d6",
            &include_bytes!("../../../fuzz/findings/netfront_hostile-slow-504196d6")[..],
        ),
    ] {
        let t = std::time::Instant::now();
        hostile_session::hostile_session(data);
        assert!(t.elapsed().as_secs() < 5, "{name}: {:?}", t.elapsed());
    }
}
