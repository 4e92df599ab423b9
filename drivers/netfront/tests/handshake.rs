//! Probe and xenbus handshake against SimXenstored and SimNetback.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use netfront::sim::{SimNetConfig, SimWorld};
use netfront::{Config, MacAddr, NetError, ProbeError, SetupError};
use xenbus::{Phase, XenbusState};
use xenstore::wire::MsgType;

fn read(w: &SimWorld, path: &str) -> Option<Vec<u8>> {
    w.xs_ring.with_sim(|s| s.read(path))
}

#[test]
fn connects_and_publishes_nodes_in_one_transaction() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.probe(Config::default()).unwrap();
    assert_eq!(nf.mac(), MacAddr([0x00, 0x16, 0x3e, 0x12, 0x34, 0x56]));
    assert_eq!(nf.mtu(), 1500);
    assert_eq!(nf.backend_path(), "/local/domain/0/backend/vif/7/0");
    assert_eq!(nf.backend_id(), 0);
    assert_eq!(nf.phase(), Phase::Idle);
    let before = w.xs_ring.with_sim(|s| s.stats().clone());
    nf.start(&mut w.xs).unwrap();
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(nf.is_up());
    assert_eq!(nf.phase(), Phase::Connected);
    assert_eq!(w.back.state(), XenbusState::Connected);
    assert_eq!(w.back.stats().connects, 1);
    let after = w.xs_ring.with_sim(|s| s.stats().clone());
    // One transaction carried the connection nodes.
    assert_eq!(
        after.count(MsgType::TransactionStart) - before.count(MsgType::TransactionStart),
        1
    );
    assert_eq!(after.commits - before.commits, 1);

    let dir = "/local/domain/7/device/vif/0";
    let num = |p: &str| {
        String::from_utf8(read(&w, &format!("{dir}/{p}")).unwrap())
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    let tx_ref = num("tx-ring-ref");
    let rx_ref = num("rx-ring-ref");
    assert_ne!(tx_ref, rx_ref);
    assert_eq!(Some(num("event-channel")), nf.event_channel());
    assert_eq!(read(&w, &format!("{dir}/request-rx-copy")).unwrap(), b"1");
    assert_eq!(read(&w, &format!("{dir}/feature-rx-notify")).unwrap(), b"1");
    assert_eq!(read(&w, &format!("{dir}/feature-sg")).unwrap(), b"1");
    assert_eq!(
        read(&w, &format!("{dir}/feature-no-csum-offload")).unwrap(),
        b"0"
    );
    assert_eq!(read(&w, &format!("{dir}/feature-gso-tcpv4")).unwrap(), b"1");
    assert_eq!(read(&w, &format!("{dir}/state")).unwrap(), b"4");
    let f = nf.features();
    assert!(f.rx_copy && f.sg && f.split_event_channels && f.gso_tcpv4);
    assert_eq!(f.max_queues, 2);
    // All rx buffers were posted before the back end connected.
    w.back.service();
    assert_eq!(w.back.rx_posted(), 256);
    assert_eq!(w.back.stats().bad_rx_grefs, 0);
    // The back end was notified once the connection was up.
    assert!(w.evt.to_backend() >= 1);
}

#[test]
fn transaction_retried_on_eagain() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.probe(Config::default()).unwrap();
    w.xs_ring.with_sim(|s| s.fail_next_commits(3));
    nf.start(&mut w.xs).unwrap();
    assert!(w.pump(&mut nf).is_empty());
    assert!(nf.is_up());
    let st = w.xs_ring.with_sim(|s| s.stats().clone());
    assert_eq!(st.conflicts, 3);
    assert_eq!(st.count(MsgType::TransactionStart), 4);
}

#[test]
fn transaction_gives_up_after_the_configured_attempts() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let cfg = Config {
        xs_attempts: 2,
        ..Config::default()
    };
    let mut nf = w.probe(cfg).unwrap();
    w.xs_ring.with_sim(|s| s.fail_next_commits(2));
    let r = nf.start(&mut w.xs);
    assert_eq!(r, Err(NetError::Setup(SetupError::TransactionRetries)));
    assert_eq!(nf.last_setup_error(), Some(SetupError::TransactionRetries));
    // The machine closes the device; the back end follows; every grant ends.
    let _ = w.pump(&mut nf);
    assert_eq!(nf.phase(), Phase::Closed);
    assert_eq!(w.back.state(), XenbusState::Closed);
    assert_eq!(w.grants.with_table(|t| t.stats().active), 0);
    assert_eq!(w.pages.live(), 0);
}

#[test]
fn backend_without_rx_copy_is_refused() {
    let mut w = SimWorld::new(SimNetConfig {
        rx_copy: false,
        ..SimNetConfig::default()
    });
    let mut nf = w.probe(Config::default()).unwrap();
    assert_eq!(
        nf.start(&mut w.xs),
        Err(NetError::Setup(SetupError::MissingFeature(
            "feature-rx-copy"
        )))
    );
    let _ = w.pump(&mut nf);
    assert_eq!(nf.phase(), Phase::Closed);
    assert!(!nf.is_up());
    assert_eq!(w.grants.with_table(|t| t.stats().active), 0);
}

#[test]
fn probe_validates_mac_mtu_and_backend() {
    let mut w = SimWorld::new(SimNetConfig {
        mac: b"01:16:3e:12:34:56".to_vec(),
        ..SimNetConfig::default()
    });
    assert_eq!(
        w.probe(Config::default()).err(),
        Some(ProbeError::Mac(netfront::nodes::MacError::Multicast))
    );

    let mut w = SimWorld::new(SimNetConfig {
        mtu: Some(b"9000".to_vec()),
        ..SimNetConfig::default()
    });
    let nf = w.probe(Config::default()).unwrap();
    assert_eq!(nf.mtu(), 9000);

    let mut w = SimWorld::new(SimNetConfig {
        mtu: Some(b"15OO".to_vec()),
        ..SimNetConfig::default()
    });
    assert!(matches!(
        w.probe(Config::default()).err(),
        Some(ProbeError::Mtu(_))
    ));

    let mut w = SimWorld::new(SimNetConfig::default());
    w.xs_ring.with_sim(|s| {
        s.write(
            "/local/domain/7/device/vif/0/backend",
            b"/local/domain/0/backend/vbd/7/0",
        )
    });
    assert_eq!(
        w.probe(Config::default()).err(),
        Some(ProbeError::Device(xenbus::DeviceError::Mismatch))
    );

    let mut w = SimWorld::new(SimNetConfig::default());
    w.xs_ring
        .with_sim(|s| s.rm("/local/domain/7/device/vif/0/mac"));
    assert!(matches!(
        w.probe(Config::default()).err(),
        Some(ProbeError::Xenstore {
            node: netfront::Node::Mac,
            ..
        })
    ));
    assert_eq!(
        w.probe(Config {
            rx_buffers: 0,
            ..Config::default()
        })
        .err(),
        Some(ProbeError::BadConfig)
    );
}

#[test]
fn garbage_backend_state_changes_nothing() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config::default());
    let dir = w.back.backend_dir().to_string();
    w.xs_ring
        .with_sim(|s| s.write(&format!("{dir}/state"), b"4\n"));
    assert!(matches!(
        nf.on_backend_state(&mut w.xs),
        Err(NetError::Xenbus(_))
    ));
    assert!(nf.is_up());
}

#[test]
fn close_waits_for_the_backend_then_ends_every_grant() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config::default());
    let active = w.grants.with_table(|t| t.stats().active);
    assert_eq!(active, 256 + 256 + 2);
    nf.close(&mut w.xs).unwrap();
    // Closing written; nothing ended before the back end answers.
    assert_eq!(w.grants.with_table(|t| t.stats().active), active);
    let _ = w.pump(&mut nf);
    assert_eq!(nf.phase(), Phase::Closed);
    assert_eq!(w.back.state(), XenbusState::Closed);
    let st = w.grants.with_table(|t| t.stats());
    assert_eq!(st.active, 0);
    assert_eq!(st.deferred, 0);
    assert_eq!(w.pages.live(), 0);
    assert_eq!(w.evt.open_ports(), 0);
}
