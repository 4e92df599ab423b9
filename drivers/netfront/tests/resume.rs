//! Save/restore: new rings, every rx buffer granted again before it is
//! posted (checked on the back end's side), tx re-sent, a possibly different
//! back end; cancelled suspend touches nothing.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use netfront::sim::{
    AuditError, SimNetConfig, SimNetFront, SimRxPacket, SimWorld, buffer_config, test_frame,
};
use netfront::{Config, NetError};
use xenbus::Phase;

fn frame(len: usize, seed: u8) -> Vec<u8> {
    test_frame(len, 7, seed)
}

fn cfg() -> Config {
    buffer_config(48, 16, 8)
}

/// Some traffic both ways so that indices and grants are far from initial.
fn traffic(w: &mut SimWorld, nf: &mut SimNetFront, n: u8) {
    for i in 0..n {
        let f = frame(200 + usize::from(i) * 10, i);
        w.back.inject(SimRxPacket::new(&f));
        nf.transmit(f.len(), |b| b.copy_from_slice(&f)).unwrap();
        w.back.service();
        nf.poll_tx().unwrap();
    }
    let (frames, errors) = w.receive_all(nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(frames.len(), usize::from(n));
    assert_eq!(w.back.take_sent().len(), usize::from(n));
}

/// What the kernel does around `SCHEDOP_shutdown(suspend)` returning 0.
fn save_restore(w: &mut SimWorld, nf: &mut SimNetFront, new_backend: Option<u16>, reset: bool) {
    nf.suspend().unwrap();
    assert_eq!(nf.receive(|_| ()), Err(NetError::Suspended));
    assert_eq!(nf.transmit(60, |_| ()), Err(NetError::Suspended));
    // The toolstack saves and restores the domain: Xen's tables are new.
    w.back.new_domain(new_backend);
    // The kernel: grant table first, then xenstore, then the drivers
    // (without `reset`: a kernel that forgets the grant table).
    if reset {
        w.restore().unwrap();
    } else {
        w.resume_xenstore().unwrap();
    }
    nf.resume(&mut w.xs, true).unwrap();
}

#[test]
fn every_rx_request_after_resume_carries_a_grant_issued_after_resume() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(cfg());
    traffic(&mut w, &mut nf, 100);
    let requests_before = w.back.stats().rx_requests;
    let pages_before = w.pages.live();
    save_restore(&mut w, &mut nf, None, true);
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(nf.is_up());
    assert_eq!(nf.phase(), Phase::Connected);
    assert_eq!(nf.stats().setups, 2);
    w.back.service();
    // The back end audited each request: mapped writable by it, grant last
    // published in the new domain epoch, not a ring page, no duplicates.
    assert_eq!(w.back.stats().rx_requests - requests_before, 48);
    assert_eq!(w.back.audit_failures(), &[]);
    assert_eq!(w.back.stats().bad_rx_grefs, 0);
    // Same buffers (no page churn beyond the two ring pages recycled).
    assert_eq!(w.pages.live(), pages_before);
    // 48 rx + 16 tx re-granted, 2 new rings.
    assert_eq!(w.grants.with_table(|t| t.stats().active), 48 + 16 + 2);
    traffic(&mut w, &mut nf, 120);
    assert_eq!(w.back.stats().bad_rx_grefs, 0);
}

#[test]
fn audit_catches_stale_grants_when_the_table_is_not_reset() {
    // Negative control: a kernel that forgets GrantTable::reset_for_resume
    // leaves the driver believing its old grants are current; the back end's
    // audit must flag every rx request then.
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(cfg());
    traffic(&mut w, &mut nf, 10);
    save_restore(&mut w, &mut nf, None, false);
    let _ = w.pump(&mut nf);
    w.back.service();
    let failures = w.back.audit_failures();
    assert_eq!(failures.len(), 48);
    assert!(failures.iter().all(|(_, e)| matches!(
        e,
        AuditError::Map(_) | AuditError::OldEpoch | AuditError::RingPage | AuditError::Duplicate
    )));
}

#[test]
fn resume_into_a_different_backend_domain() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(cfg());
    traffic(&mut w, &mut nf, 30);
    save_restore(&mut w, &mut nf, Some(5), true);
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(nf.is_up());
    assert_eq!(nf.backend_id(), 5);
    assert_eq!(nf.backend_path(), "/local/domain/5/backend/vif/7/0");
    assert_eq!(
        nf.backend_state_path(),
        "/local/domain/5/backend/vif/7/0/state"
    );
    w.back.service();
    // The back end in domain 5 can map every buffer: all granted to it.
    assert_eq!(w.back.audit_failures(), &[]);
    traffic(&mut w, &mut nf, 30);
}

#[test]
fn tx_in_flight_is_resent_after_resume() {
    let mut w = SimWorld::new(SimNetConfig {
        mtu: Some(b"9000".to_vec()),
        ..SimNetConfig::default()
    });
    let mut nf = w.connect(cfg());
    traffic(&mut w, &mut nf, 5);
    w.back.hold_tx(true);
    let frames = vec![frame(60, 1), frame(9014, 2), frame(1514, 3), frame(4097, 4)];
    for f in &frames {
        nf.transmit(f.len(), |b| b.copy_from_slice(f)).unwrap();
    }
    w.back.service();
    assert_eq!(nf.tx_in_flight(), 4);
    save_restore(&mut w, &mut nf, None, true);
    w.back.hold_tx(false);
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(nf.is_up());
    w.back.service();
    assert_eq!(w.back.take_sent(), frames);
    assert_eq!(w.back.stats().bad_tx_grefs, 0);
    assert_eq!(nf.stats().tx.resent, 4);
    nf.poll_tx().unwrap();
    assert_eq!(nf.tx_in_flight(), 0);
    assert_eq!(nf.stats().tx.completed, 5 + 4);
}

#[test]
fn cancelled_suspend_touches_nothing() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(cfg());
    traffic(&mut w, &mut nf, 20);
    w.back.hold_tx(true);
    nf.transmit(100, |b| b.fill(3)).unwrap();
    let xs_stats = w.xs_ring.with_sim(|s| s.stats().clone());
    let publishes = w.grants.publishes();
    let grant_stats = w.grants.with_table(|t| t.stats());
    let allocs = w.pages.allocs();
    let notifies = w.evt.to_backend();
    let ring_pages: Vec<Vec<u8>> = (0x1000..0x1000 + 80).map(|g| w.mem.page(g)).collect();
    nf.suspend().unwrap();
    // SCHEDOP_shutdown(suspend) returned 1: nothing happened to the domain.
    nf.resume(&mut w.xs, false).unwrap();
    assert_eq!(w.xs_ring.with_sim(|s| s.stats().clone()), xs_stats);
    assert_eq!(w.grants.publishes(), publishes);
    assert_eq!(w.grants.with_table(|t| t.stats()), grant_stats);
    assert_eq!(w.pages.allocs(), allocs);
    assert_eq!(w.evt.to_backend(), notifies);
    let after: Vec<Vec<u8>> = (0x1000..0x1000 + 80).map(|g| w.mem.page(g)).collect();
    assert!(after == ring_pages, "guest pages changed");
    assert!(nf.is_up());
    // The same connection carries on, the held frame included.
    w.back.hold_tx(false);
    w.back.service();
    assert_eq!(w.back.take_sent(), vec![vec![3u8; 100]]);
    traffic(&mut w, &mut nf, 20);
    assert_eq!(w.back.stats().connects, 1);
    assert_eq!(nf.stats().setups, 1);
}

#[test]
fn resume_before_the_backend_is_back() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(cfg());
    traffic(&mut w, &mut nf, 10);
    nf.suspend().unwrap();
    w.back.new_domain(None);
    // The toolstack has not re-created the back end's state node yet.
    let dir = w.back.backend_dir().to_string();
    w.xs_ring.with_sim(|s| s.rm(&format!("{dir}/state")));
    w.restore().unwrap();
    nf.resume(&mut w.xs, true).unwrap();
    assert_eq!(nf.phase(), Phase::Initialising);
    assert!(!nf.is_up());
    w.xs_ring
        .with_sim(|s| s.write(&format!("{dir}/state"), b"2"));
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(nf.is_up());
    w.back.service();
    assert_eq!(w.back.audit_failures(), &[]);
    traffic(&mut w, &mut nf, 10);
}

#[test]
fn repeated_save_restore_cycles() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(cfg());
    let pages = w.pages.live();
    for round in 0..5 {
        traffic(&mut w, &mut nf, 40);
        w.back.hold_tx(true);
        nf.transmit(80, |b| b.fill(round)).unwrap();
        save_restore(&mut w, &mut nf, Some(u16::from(round % 2) * 3), true);
        w.back.hold_tx(false);
        let errors = w.pump(&mut nf);
        assert!(errors.is_empty(), "{errors:?}");
        w.back.service();
        assert_eq!(w.back.take_sent(), vec![vec![round; 80]]);
        nf.poll_tx().unwrap();
        assert_eq!(w.back.audit_failures(), &[]);
        assert_eq!(w.pages.live(), pages);
    }
    assert_eq!(nf.stats().setups, 6);
}

#[test]
fn tx_the_old_backend_already_answered_is_not_sent_again_after_a_restore() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(cfg());
    traffic(&mut w, &mut nf, 2);
    w.back.take_sent();
    // Three frames the back end sends and answers, but the guest is saved
    // before it consumes the responses. (Frames without a response are sent
    // again: `tx_in_flight_is_resent_after_resume`.)
    let answered = vec![frame(60, 1), frame(342, 2), frame(1514, 3)];
    for f in &answered {
        nf.transmit(f.len(), |b| b.copy_from_slice(f)).unwrap();
    }
    w.back.service();
    assert_eq!(w.back.take_sent(), answered);
    assert_eq!(nf.tx_in_flight(), 3, "no response consumed yet");
    let completed = nf.stats().tx.completed;
    save_restore(&mut w, &mut nf, None, true);
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(nf.is_up());
    w.back.service();
    // Nothing is sent again (no duplicate UDP, ARP or DHCP on the wire).
    assert_eq!(w.back.take_sent(), Vec::<Vec<u8>>::new());
    assert_eq!(nf.stats().tx.resent, 0);
    assert_eq!(nf.stats().tx.completed, completed + 3);
    assert_eq!(nf.tx_in_flight(), 0);
    // The new connection carries traffic as usual.
    traffic(&mut w, &mut nf, 2);
    assert_eq!(w.back.stats().bad_tx_grefs, 0);
}
