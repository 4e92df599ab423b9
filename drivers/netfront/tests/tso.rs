//! TSO on send through the `smoltcp::phy::Device` token: a TCP frame of up to
//! 64 KiB with smoltcp's segment size goes to a back end with
//! `feature-gso-tcpv4` whole, with a GSO extra slot answered by
//! `XEN_NETIF_RSP_NULL`; without the feature, or without room for the whole
//! frame, it is segmented here; a save/restore re-sends it with its extra; a
//! NULL response no extra slot asked for is a fault.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use std::num::NonZeroU16;

use netfront::csum::{checksum_ok, complete_checksum};
use netfront::sim::{
    SimNetConfig, SimNetFront, SimRxPacket, SimTxFrame, SimWorld, TxCorruption, test_frame,
};
use netfront::{Config, Fault, NetError};
use smoltcp::phy::{Device, PacketMeta, TxToken};
use smoltcp::time::Instant;
use xen_abi::netif::{
    NETIF_RSP_NULL, NETTXF_CSUM_BLANK, NETTXF_DATA_VALIDATED, NETTXF_EXTRA_INFO, NETTXF_MORE_DATA,
    NetifExtraInfo, XEN_NETIF_GSO_TYPE_TCPV4,
};

mod common;

const MSS: u16 = 1460;
const CSUM: u16 = NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED;

/// A TCP/IPv4 frame (PSH) with `payload`, its checksum complete (smoltcp's
fn tcp_frame(payload: &[u8], seq: u32) -> Vec<u8> {
    common::tcp_frame(
        &common::TcpEnds {
            src_mac: [0x00, 0x16, 0x3e, 0x12, 0x34, 0x56],
            dst_mac: [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff],
            src: smoltcp::wire::Ipv4Address::new(10, 0, 0, 2),
            dst: smoltcp::wire::Ipv4Address::new(10, 0, 0, 1),
            src_port: 5201,
            dst_port: 40000,
        },
        payload,
        seq,
    )
}

/// The default configuration with TSO on.
fn with_tso() -> Config {
    Config {
        tso: true,
        ..Config::default()
    }
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

fn meta(mss: u16) -> PacketMeta {
    let mut m = PacketMeta::default();
    m.segmentation_offload_size = NonZeroU16::new(mss);
    m
}

/// Sends `f` through a transmit token as smoltcp would a TSO segment.
fn send_tso(nf: &mut SimNetFront, f: &[u8]) {
    let mut t = Device::transmit(nf, Instant::ZERO).expect("a transmit token");
    t.set_meta(meta(MSS));
    t.consume(f.len(), |b| b.copy_from_slice(f));
    nf.flush_tx().unwrap();
}

/// Checks that `segs` are `f` cut at `MSS` bytes of payload: each a proper
/// TCP/IPv4 segment with the pseudo-header sum and the offload flags.
fn check_segments(f: &[u8], segs: &[SimTxFrame], seq0: u32) {
    let data = &f[54..];
    assert_eq!(segs.len(), data.len().div_ceil(usize::from(MSS)));
    let id0 = u16::from_be_bytes([f[18], f[19]]);
    let mut got = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s.flags, CSUM);
        assert!(s.extras.is_empty());
        assert!(s.data.len() <= 1514);
        let mut full = s.data.clone();
        complete_checksum(&mut full).unwrap();
        assert_eq!(checksum_ok(&full), Ok(true));
        assert_eq!(
            u16::from_be_bytes([s.data[16], s.data[17]]) as usize,
            s.data.len() - 14
        );
        assert_eq!(
            u16::from_be_bytes([s.data[18], s.data[19]]),
            id0.wrapping_add(i as u16)
        );
        let seq = u32::from_be_bytes([s.data[38], s.data[39], s.data[40], s.data[41]]);
        assert_eq!(seq, seq0 + got.len() as u32);
        let last = i + 1 == segs.len();
        assert_eq!(s.data[47] & 0x08 != 0, last, "PSH on the last segment only");
        got.extend_from_slice(&s.data[54..]);
    }
    assert!(got == data);
}

#[test]
fn a_tso_frame_goes_whole_with_a_gso_extra_slot() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(with_tso());
    for len in [20_000, 65535 - 54] {
        let f = tcp_frame(&payload(len), 1000);
        send_tso(&mut nf, &f);
        w.back.service();
        let sent = w.back.take_sent_frames();
        assert_eq!(sent.len(), 1);
        let s = &sent[0];
        assert_eq!(
            s.flags,
            CSUM | NETTXF_EXTRA_INFO | NETTXF_MORE_DATA,
            "flags on the first request"
        );
        assert_eq!(
            s.extras,
            vec![NetifExtraInfo::gso(MSS, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0)]
        );
        // The field holds the pseudo-header sum; completed, it is `f`.
        assert_ne!(s.data, f);
        let mut full = s.data.clone();
        complete_checksum(&mut full).unwrap();
        assert!(full == f);
    }
    nf.poll_tx().unwrap();
    let st = nf.stats().tx;
    assert_eq!((st.tso, st.null_responses, st.completed), (2, 2, 2));
    assert_eq!(st.segmented, 0);
    assert_eq!(nf.tx_in_flight(), 0);
    assert_eq!(w.back.stats().bad_tx_grefs, 0);
}

#[test]
fn without_backend_gso_the_frame_is_segmented_here() {
    let mut w = SimWorld::new(SimNetConfig {
        gso: false,
        ..SimNetConfig::default()
    });
    let mut nf = w.connect(with_tso());
    let f = tcp_frame(&payload(20_000), 77);
    send_tso(&mut nf, &f);
    w.back.service();
    let sent = w.back.take_sent_frames();
    check_segments(&f, &sent, 77);
    nf.poll_tx().unwrap();
    let st = nf.stats().tx;
    assert_eq!((st.tso, st.segmented, st.null_responses), (0, 1, 0));
    assert_eq!(st.completed, sent.len() as u64);
    assert_eq!(st.dropped, 0);
}

#[test]
fn without_room_a_tso_frame_is_segmented_as_far_as_it_fits() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config {
        tx_buffers: 40,
        tso: true,
        ..Config::default()
    });
    // Fill 30 of the 40 pool pages while the back end holds tx.
    w.back.hold_tx(true);
    for i in 0..30 {
        let g = test_frame(100, 3, i);
        nf.transmit(g.len(), |b| b.copy_from_slice(&g)).unwrap();
    }
    // The reply token of a receive has no room check: 10 pages are left
    // for a frame of 15.
    w.back.inject(SimRxPacket::new(&test_frame(80, 1, 1)));
    w.back.service();
    let f = tcp_frame(&payload(60_000), 5);
    {
        let (rx, mut tx) = Device::receive(&mut nf, Instant::ZERO).expect("a packet");
        smoltcp::phy::RxToken::consume(rx, |_| ());
        tx.set_meta(meta(MSS));
        tx.consume(f.len(), |b| b.copy_from_slice(&f));
    }
    nf.flush_tx().unwrap();
    w.back.hold_tx(false);
    w.back.service();
    let sent = w.back.take_sent_frames();
    assert_eq!(sent.len(), 30 + 10);
    // The first 10 segments went; the rest is dropped (TCP resends it).
    let segs = &sent[30..];
    let data: Vec<u8> = segs.iter().flat_map(|s| s.data[54..].to_vec()).collect();
    assert!(data == f[54..54 + 10 * usize::from(MSS)]);
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s.flags, CSUM);
        let seq = u32::from_be_bytes([s.data[38], s.data[39], s.data[40], s.data[41]]);
        assert_eq!(seq, 5 + (i * usize::from(MSS)) as u32);
        // Not the frame's last segment: no PSH anywhere.
        assert_eq!(s.data[47] & 0x08, 0);
    }
    let st = nf.stats().tx;
    assert_eq!((st.segmented, st.dropped, st.tso), (1, 1, 0));
}

#[test]
fn a_tso_frame_in_flight_is_resent_with_its_extra_after_a_restore() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(with_tso());
    w.back.hold_tx(true);
    let f = tcp_frame(&payload(30_000), 9);
    send_tso(&mut nf, &f);
    w.back.service();
    assert_eq!(nf.tx_in_flight(), 1);
    nf.suspend().unwrap();
    w.back.new_domain(None);
    w.restore().unwrap();
    nf.resume(&mut w.xs, true).unwrap();
    w.back.hold_tx(false);
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    w.back.service();
    let sent = w.back.take_sent_frames();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].extras,
        vec![NetifExtraInfo::gso(MSS, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0)]
    );
    let mut full = sent[0].data.clone();
    complete_checksum(&mut full).unwrap();
    assert!(full == f);
    nf.poll_tx().unwrap();
    let st = nf.stats().tx;
    assert_eq!((st.resent, st.null_responses, st.completed), (1, 1, 1));
    assert_eq!(nf.tx_in_flight(), 0);
    assert_eq!(nf.fault(), None);
}

#[test]
fn a_null_response_no_extra_slot_asked_for_is_a_fault() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(with_tso());
    let f = tcp_frame(&payload(10_000), 1);
    send_tso(&mut nf, &f);
    w.back.service();
    nf.poll_tx().unwrap();
    assert_eq!(nf.stats().tx.null_responses, 1);
    // A back end that answers the next TSO frame's data request with NULL
    // too: one NULL more than there are extra slots.
    w.back.corrupt_next_tx(TxCorruption::Status(NETIF_RSP_NULL));
    send_tso(&mut nf, &f);
    w.back.service();
    assert!(matches!(
        nf.poll_tx(),
        Err(NetError::Faulted(Fault::TxBadStatus {
            status: NETIF_RSP_NULL,
            ..
        }))
    ));
    assert_eq!(nf.stats().tx.null_responses, 2);
}

#[test]
fn tso_frames_over_the_limit_are_refused() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(with_tso());
    assert_eq!(
        nf.capabilities().segmentation.tcpv4.map(|n| n.get()),
        Some(65535)
    );
    // A small pool gets a smaller limit, a tiny one none.
    let mut w2 = SimWorld::new(SimNetConfig::default());
    let nf2 = w2.connect(Config {
        tso: true,
        ..netfront::sim::buffer_config(32, 8, 4)
    });
    assert_eq!(
        nf2.capabilities().segmentation.tcpv4.map(|n| n.get()),
        Some(3 * 4096)
    );
    let mut w3 = SimWorld::new(SimNetConfig::default());
    let nf3 = w3.connect(Config {
        tso: true,
        ..netfront::sim::buffer_config(32, 4, 4)
    });
    assert_eq!(nf3.capabilities().segmentation.tcpv4, None);
    // Off by default (netfront's `Config::tso`).
    let mut w4 = SimWorld::new(SimNetConfig::default());
    let nf4 = w4.connect(Config::default());
    assert_eq!(nf4.capabilities().segmentation.tcpv4, None);
    // 65536 bytes cannot be stated in a request: dropped, counted.
    let f = tcp_frame(&payload(65536 - 54), 1);
    send_tso(&mut nf, &f);
    w.back.service();
    assert!(w.back.take_sent_frames().is_empty());
    assert_eq!(nf.stats().tx.dropped, 1);
}

/// The reset counters: a TCP RST received is counted on rx with its
/// endpoints, one sent through a transmit token on tx; other segments are not.
#[test]
fn tcp_resets_are_counted_both_ways() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config::default());
    // A segment with RST set (the PSH flag of the common frame replaced).
    let mut rst = tcp_frame(&payload(0), 77);
    rst[14 + 20 + 13] = 0x14; // RST|ACK
    // The flag changed: its checksum again (blank, then completed).
    netfront::csum::blank_checksum(&mut rst).unwrap();
    complete_checksum(&mut rst).unwrap();
    assert_eq!(checksum_ok(&rst), Ok(true));
    let plain = tcp_frame(&payload(10), 78);
    for f in [&plain, &rst] {
        w.back.inject(SimRxPacket::new(f));
    }
    w.back.service();
    for _ in 0..2 {
        let (rx, _) = Device::receive(&mut nf, Instant::ZERO).expect("a packet");
        smoltcp::phy::RxToken::consume(rx, |_| ());
    }
    let st = nf.stats();
    assert_eq!(st.rx.resets, 1);
    let r = st.rx.last_reset.expect("the reset");
    assert_eq!(
        (r.src, r.src_port, r.dst_port, r.seq),
        ([10, 0, 0, 2], 5201, 40000, 77)
    );
    // Sent: the plain segment, then the reset.
    for f in [&plain, &rst] {
        let t = Device::transmit(&mut nf, Instant::ZERO).expect("a transmit token");
        t.consume(f.len(), |b| b.copy_from_slice(f));
    }
    let st = nf.stats();
    assert_eq!(st.tx.resets, 1);
    assert_eq!(st.tx.last_reset.map(|r| r.seq), Some(77));
    nf.flush_tx().unwrap();
    w.back.service();
    assert_eq!(w.back.take_sent_frames().len(), 2);
}

/// Frames sent through the smoltcp tokens are posted but not published until
/// `flush_tx`: the back end sees none of them before it, all of them after,
/// with one push and at most one notification for the batch; frames posted
/// and never flushed before a save are re-sent on the new ring.
#[test]
fn token_frames_are_published_once_per_flush() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(with_tso());
    let pushes0 = nf.stats().tx.pushes;
    let notifies0 = nf.stats().notifies;
    let frames: Vec<Vec<u8>> = (0..4u32)
        .map(|k| tcp_frame(&payload(1000 + 9000 * k as usize), 100 + k))
        .collect();
    for f in &frames {
        let mut t = Device::transmit(&mut nf, Instant::ZERO).expect("a transmit token");
        t.set_meta(meta(MSS));
        t.consume(f.len(), |b| b.copy_from_slice(f));
    }
    // Posted (in flight), not yet visible to the back end.
    assert_eq!(nf.tx_in_flight(), 4);
    w.back.service();
    assert!(w.back.take_sent_frames().is_empty());
    assert_eq!(nf.stats().tx.pushes, pushes0);
    nf.flush_tx().unwrap();
    assert_eq!(nf.stats().tx.pushes, pushes0 + 1);
    assert!(nf.stats().notifies <= notifies0 + 1);
    w.back.service();
    let sent = w.back.take_sent_frames();
    assert_eq!(sent.len(), 4);
    for (s, f) in sent.iter().zip(&frames) {
        let mut full = s.data.clone();
        complete_checksum(&mut full).unwrap();
        assert!(full == *f);
    }
    // A flush with nothing posted publishes nothing.
    nf.flush_tx().unwrap();
    assert_eq!(nf.stats().tx.pushes, pushes0 + 1);
    nf.poll_tx().unwrap();
    assert_eq!(nf.tx_in_flight(), 0);

    // Posted, not flushed, then the domain is saved: the new ring gets it.
    let f = tcp_frame(&payload(5000), 7);
    send_tso_unflushed(&mut nf, &f);
    assert_eq!(nf.tx_in_flight(), 1);
    nf.suspend().unwrap();
    w.back.new_domain(None);
    w.restore().unwrap();
    nf.resume(&mut w.xs, true).unwrap();
    let errors = w.pump(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    w.back.service();
    let sent = w.back.take_sent_frames();
    assert_eq!(sent.len(), 1);
    let mut full = sent[0].data.clone();
    complete_checksum(&mut full).unwrap();
    assert!(full == f);
    assert_eq!(w.back.stats().bad_tx_grefs, 0);
}

/// A TSO frame through a transmit token, not flushed.
fn send_tso_unflushed(nf: &mut SimNetFront, f: &[u8]) {
    let mut t = Device::transmit(nf, Instant::ZERO).expect("a transmit token");
    t.set_meta(meta(MSS));
    t.consume(f.len(), |b| b.copy_from_slice(f));
}
