//! Rx/tx round trips against SimNetback: single and multi-slot, ring wrap,
//! extra-info, checksum completion, refill batching, and the steady state
//! (no new grant, no page allocation).
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use netfront::csum::{blank_checksum, checksum_ok};
use netfront::sim::{SimNetConfig, SimRxPacket, SimWorld, buffer_config};
use netfront::{Config, NetError, TxError};
use xen_abi::netif::{
    NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED, NetifExtraInfo, XEN_NETIF_EXTRA_TYPE_GSO,
    XEN_NETIF_EXTRA_TYPE_HASH, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6,
};

mod common;

/// A frame of `len` bytes whose content depends on `seed`.
fn frame(len: usize, seed: u32) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed) as u8)
        .collect();
    // A plausible Ethernet header (ethertype 0x88b5, local experimental).
    f[..6].copy_from_slice(&[0x00, 0x16, 0x3e, 0x12, 0x34, 0x56]);
    f[6..12].copy_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]);
    f[12] = 0x88;
    f[13] = 0xb5;
    f
}

/// A UDP/IPv4 frame with a correct checksum, built with smoltcp's wire
/// module (an independent implementation).
fn udp_frame(payload: &[u8], src_port: u16) -> Vec<u8> {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::*;
    let src = Ipv4Address::new(10, 0, 0, 1);
    let dst = Ipv4Address::new(10, 0, 0, 2);
    let udp = UdpRepr {
        src_port,
        dst_port: 7,
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]),
        dst_addr: EthernetAddress([0x00, 0x16, 0x3e, 0x12, 0x34, 0x56]),
        ethertype: EthernetProtocol::Ipv4,
    };
    let len = eth.buffer_len() + ip.buffer_len() + udp.header_len() + payload.len();
    let mut buf = vec![0u8; len];
    let mut e = EthernetFrame::new_unchecked(&mut buf);
    eth.emit(&mut e);
    let mut p = Ipv4Packet::new_unchecked(e.payload_mut());
    ip.emit(&mut p, &ChecksumCapabilities::default());
    let mut u = UdpPacket::new_unchecked(p.payload_mut());
    udp.emit(
        &mut u,
        &src.into(),
        &dst.into(),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    buf
}

/// A TCP/IPv4 frame with a correct checksum (smoltcp's wire module).
fn tcp_frame(payload: &[u8], seq: u32) -> Vec<u8> {
    common::tcp_frame(
        &common::TcpEnds {
            src_mac: [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff],
            dst_mac: [0x00, 0x16, 0x3e, 0x12, 0x34, 0x56],
            src: smoltcp::wire::Ipv4Address::new(192, 168, 1, 1),
            dst: smoltcp::wire::Ipv4Address::new(192, 168, 1, 77),
            src_port: 80,
            dst_port: 40000,
        },
        payload,
        seq,
    )
}

#[test]
fn rx_round_trip_single_and_multi_slot() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config::default());
    let small = frame(60, 1);
    let mtu = frame(1514, 2);
    let jumbo = frame(9000, 3);
    let max = frame(65535, 4);
    w.back.inject(SimRxPacket::new(&small));
    w.back.inject(SimRxPacket::new(&mtu));
    w.back.inject(SimRxPacket::new(&jumbo));
    w.back.inject(SimRxPacket::new(&max));
    // Data at an offset, in small slots.
    let mut odd = SimRxPacket::new(&frame(3000, 5));
    odd.offset = 100;
    odd.chunk = 700;
    w.back.inject(odd.clone());
    let (frames, errors) = w.receive_all(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(frames, vec![small, mtu, jumbo, max, odd.data]);
    let st = nf.stats();
    assert_eq!(st.rx.packets, 5);
    assert_eq!(st.rx.errors, 0);
    assert!(st.rx.slots >= 1 + 1 + 3 + 16 + 5);
    assert_eq!(w.back.stats().bad_rx_grefs, 0);
}

#[test]
fn rx_extra_info_slots_are_validated_and_skipped() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config::default());
    // A GSO packet (TCP/IPv4) with a hash extra after the GSO one.
    let data = tcp_frame(&[7u8; 3900], 1);
    let mut p = SimRxPacket::new(&data);
    p.chunk = 1500;
    p.extras = vec![
        NetifExtraInfo::gso(1448, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0),
        NetifExtraInfo {
            kind: XEN_NETIF_EXTRA_TYPE_HASH,
            flags: 0,
            u: [1, 1, 4, 3, 2, 1],
        },
    ];
    w.back.inject(p);
    let single = tcp_frame(b"one", 2);
    let mut q = SimRxPacket::new(&single);
    q.extras = vec![NetifExtraInfo::gso(1448, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0)];
    w.back.inject(q);
    // A hash extra on any frame is skipped.
    let mut h = SimRxPacket::new(&frame(70, 11));
    h.extras = vec![NetifExtraInfo {
        kind: XEN_NETIF_EXTRA_TYPE_HASH,
        flags: 0,
        u: [0; 6],
    }];
    w.back.inject(h);
    let (frames, errors) = w.receive_all(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(frames, vec![data, single, frame(70, 11)]);
    let st = nf.stats().rx;
    assert_eq!(st.extras, 4);
    assert_eq!(st.gso_packets, 2);
    assert_eq!(XEN_NETIF_EXTRA_TYPE_GSO, 1);
}

/// A TCPv4 GSO packet as Linux netback delivers it: blank checksum, both
/// flags, the GSO extra after the first slot, data in page-sized slots.
fn gso_packet(payload_len: usize, seq: u32) -> (Vec<u8>, SimRxPacket) {
    let payload: Vec<u8> = (0..payload_len).map(|i| (i % 253) as u8).collect();
    let mut f = tcp_frame(&payload, seq);
    blank_checksum(&mut f).unwrap();
    let mut p = SimRxPacket::new(&f);
    p.flags = NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED;
    p.extras = vec![NetifExtraInfo::gso(1448, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0)];
    (f, p)
}

#[test]
fn gso_packets_up_to_64k_are_received_whole() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config::default());
    // The largest IPv4 packet: 65535 bytes of IP, 17 data slots.
    let max_payload = 65535 - 20 - 20;
    let mut expect = Vec::new();
    for (len, chunk) in [(max_payload, 4096), (30_000, 4096), (max_payload, 4000)] {
        let (f, mut p) = gso_packet(len, expect.len() as u32);
        p.chunk = chunk;
        w.back.inject(p);
        expect.push(f);
    }
    assert_eq!(expect[0].len(), netfront::rx::RX_MAX_PACKET);
    let (frames, errors) = w.receive_all(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(frames == expect);
    let st = nf.stats().rx;
    assert_eq!(st.gso_packets, 3);
    assert_eq!(st.csum_trusted, 3);
    assert_eq!(w.back.stats().bad_rx_grefs, 0);
}

#[test]
fn hostile_gso_is_dropped_and_the_next_packet_flows() {
    use netfront::RxError;
    use netfront::csum::ChecksumError;
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config::default());
    let good = tcp_frame(b"after", 9);
    let mut cases: Vec<(SimRxPacket, RxError)> = Vec::new();
    // A GSO type we did not advertise, and a segment size of 0.
    let (_, mut p) = gso_packet(5000, 1);
    p.extras = vec![NetifExtraInfo::gso(1448, XEN_NETIF_GSO_TYPE_TCPV6, 0, 0)];
    cases.push((
        p,
        RxError::BadGso {
            gso_type: XEN_NETIF_GSO_TYPE_TCPV6,
            size: 1448,
        },
    ));
    let (_, mut p) = gso_packet(5000, 1);
    p.extras = vec![NetifExtraInfo::gso(0, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0)];
    cases.push((
        p,
        RxError::BadGso {
            gso_type: XEN_NETIF_GSO_TYPE_TCPV4,
            size: 0,
        },
    ));
    // Two GSO extras.
    let (_, mut p) = gso_packet(5000, 1);
    p.extras
        .push(NetifExtraInfo::gso(1448, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0));
    cases.push((p, RxError::DuplicateExtra(XEN_NETIF_EXTRA_TYPE_GSO)));
    // GSO on UDP and on a non-IP frame.
    let mut p = SimRxPacket::new(&udp_frame(&[1u8; 3000], 7));
    p.extras = vec![NetifExtraInfo::gso(1448, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0)];
    cases.push((
        p,
        RxError::GsoNotTcpV4(ChecksumError::UnsupportedProtocol(17)),
    ));
    let mut p = SimRxPacket::new(&frame(3000, 3));
    p.extras = vec![NetifExtraInfo::gso(1448, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0)];
    cases.push((
        p,
        RxError::GsoNotTcpV4(ChecksumError::NotIpv4 { ethertype: 0x88b5 }),
    ));
    // An IP total length past the data the slots carried.
    let (f, _) = gso_packet(20_000, 1);
    let mut p = SimRxPacket::new(&f[..12_000]);
    p.flags = NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED;
    p.extras = vec![NetifExtraInfo::gso(1448, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0)];
    cases.push((p, RxError::GsoNotTcpV4(ChecksumError::Truncated)));
    // Longer than the largest IPv4 packet.
    let (_, mut p) = gso_packet(65535 - 40, 1);
    p.data.push(0);
    cases.push((p, RxError::TooLong));
    // More slots than any back end uses (a 64 KiB packet in 1000-byte slots).
    let (_, mut p) = gso_packet(65535 - 40, 1);
    p.chunk = 1000;
    cases.push((p, RxError::TooManySlots));
    // No checksum flag and a blank checksum: verified, wrong.
    let (_, mut p) = gso_packet(20_000, 1);
    p.flags = 0;
    cases.push((p, RxError::BadChecksum));
    for (p, want) in cases {
        w.back.inject(p);
        w.back.inject(SimRxPacket::new(&good));
        let (frames, errors) = w.receive_all(&mut nf);
        assert_eq!(errors, vec![NetError::Rx(want)], "{want:?}");
        assert_eq!(frames, vec![good.clone()], "{want:?}");
        assert_eq!(nf.fault(), None);
    }
    assert_eq!(nf.stats().rx.gso_packets, 0);
    assert_eq!(w.back.stats().bad_rx_grefs, 0);
}

#[test]
fn rx_ring_wraps_many_times() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config {
        rx_buffers: 64,
        rx_refill_batch: 8,
        ..Config::default()
    });
    let mut expected = Vec::new();
    for i in 0..1500u32 {
        let f = frame(60 + (i as usize * 7) % 5000, i);
        w.back.inject(SimRxPacket::new(&f));
        expected.push(f);
    }
    let (frames, errors) = w.receive_all(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(frames.len(), expected.len());
    assert!(frames == expected);
    assert_eq!(w.back.stats().bad_rx_grefs, 0);
    // Refills are batched: far fewer pushes than packets.
    let st = nf.stats();
    assert!(st.rx.refills * 4 < st.rx.slots, "{st:?}");
}

#[test]
fn refill_is_batched_with_one_notify_per_batch() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config {
        rx_buffers: 64,
        rx_refill_batch: 16,
        ..Config::default()
    });
    w.back.service();
    let notifies0 = w.evt.to_backend();
    let refills0 = nf.stats().rx.refills;
    for i in 0..15 {
        w.back.inject(SimRxPacket::new(&frame(60, i)));
    }
    w.back.service();
    for _ in 0..15 {
        assert!(nf.receive(|_| ()).unwrap().is_some());
    }
    // 15 buffers free, below the batch of 16: nothing re-posted yet.
    assert_eq!(nf.stats().rx.refills, refills0);
    w.back.inject(SimRxPacket::new(&frame(60, 99)));
    w.back.service();
    assert!(nf.receive(|_| ()).unwrap().is_some());
    let st = nf.stats();
    assert_eq!(st.rx.refills, refills0 + 1);
    assert_eq!(st.rx.posted, 64 + 16);
    // One push; the back end, which went idle, asked to be notified: one notify.
    assert_eq!(w.evt.to_backend(), notifies0 + 1);
}

#[test]
fn tx_round_trip_single_and_multi_slot() {
    let mut w = SimWorld::new(SimNetConfig {
        mtu: Some(b"65000".to_vec()),
        ..SimNetConfig::default()
    });
    let mut nf = w.connect(Config::default());
    assert_eq!(nf.max_frame(), 65014);
    let frames = [
        frame(14, 1),
        frame(1514, 2),
        frame(4096, 3),
        frame(4097, 4),
        frame(65014, 5),
    ];
    for f in &frames {
        nf.transmit(f.len(), |b| b.copy_from_slice(f)).unwrap();
    }
    w.back.service();
    assert_eq!(w.back.take_sent(), frames.to_vec());
    assert_eq!(nf.poll_tx().unwrap(), 1 + 1 + 1 + 2 + 16);
    let st = nf.stats().tx;
    assert_eq!(st.packets, 5);
    assert_eq!(st.completed, 5);
    assert_eq!(st.multi_slot, 2);
    assert_eq!(nf.tx_in_flight(), 0);
    assert_eq!(
        nf.transmit(13, |_| ()),
        Err(NetError::Tx(TxError::TooShort(13)))
    );
    assert_eq!(
        nf.transmit(65015, |_| ()),
        Err(NetError::Tx(TxError::TooLong(65015)))
    );
}

#[test]
fn tx_without_sg_is_limited_to_a_page() {
    let mut w = SimWorld::new(SimNetConfig {
        mtu: Some(b"9000".to_vec()),
        sg: false,
        ..SimNetConfig::default()
    });
    let mut nf = w.connect(Config::default());
    assert_eq!(nf.max_frame(), 4096);
    assert_eq!(
        nf.transmit(4097, |_| ()),
        Err(NetError::Tx(TxError::TooLong(4097)))
    );
    nf.transmit(4096, |b| b.fill(7)).unwrap();
    w.back.service();
    assert_eq!(w.back.take_sent(), vec![vec![7u8; 4096]]);
}

#[test]
fn tx_pool_exhaustion_is_busy_until_completions() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config {
        tx_buffers: 4,
        ..Config::default()
    });
    w.back.hold_tx(true);
    for i in 0..4 {
        nf.transmit(60, |b| b.fill(i)).unwrap();
    }
    assert_eq!(nf.transmit(60, |_| ()), Err(NetError::Tx(TxError::Busy)));
    assert!(TxError::Busy.is_transient());
    assert!(!nf.can_transmit(60));
    w.back.hold_tx(false);
    w.back.service();
    assert!(nf.can_transmit(60));
    nf.transmit(60, |b| b.fill(9)).unwrap();
    w.back.service();
    assert_eq!(w.back.take_sent().len(), 5);
}

#[test]
fn steady_state_issues_no_grant_and_allocates_no_page() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(buffer_config(32, 16, 8));
    // Warm up, then measure across several ring wraps in both directions.
    let publishes = w.grants.publishes();
    let allocs = w.pages.allocs();
    let active = w.grants.with_table(|t| t.stats().active);
    for round in 0..40u32 {
        for i in 0..20u32 {
            let f = frame(100 + i as usize * 50, round * 100 + i);
            nf.transmit(f.len(), |b| b.copy_from_slice(&f))
                .unwrap_or_else(|e| {
                    w.back.service();
                    nf.poll_tx().unwrap();
                    panic!("{e:?}")
                });
            if i % 8 == 7 {
                w.back.service();
                nf.poll_tx().unwrap();
            }
            w.back.inject(SimRxPacket::new(&f));
        }
        w.back.service();
        nf.poll_tx().unwrap();
        let (frames, errors) = w.receive_all(&mut nf);
        assert!(errors.is_empty());
        assert_eq!(frames.len(), 20);
        assert_eq!(w.back.take_sent().len(), 20);
    }
    assert_eq!(
        w.grants.publishes(),
        publishes,
        "new grants in steady state"
    );
    assert_eq!(w.pages.allocs(), allocs, "pages allocated in steady state");
    assert_eq!(w.grants.with_table(|t| t.stats().active), active);
    let st = nf.stats();
    assert_eq!(st.tx.completed, 800);
    assert_eq!(st.rx.packets, 800);
}

#[test]
fn flagged_checksums_are_trusted_and_the_rest_verified() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config::default());
    let udp = udp_frame(b"hello, netfront", 5353);
    let tcp = tcp_frame(&[0xabu8; 1000], 12345);
    let odd = udp_frame(b"odd", 1);
    assert_eq!(checksum_ok(&udp), Ok(true));
    assert_eq!(checksum_ok(&tcp), Ok(true));
    let mut expect = Vec::new();
    for good in [&udp, &tcp, &odd] {
        // As a Linux dom0 sends it: pseudo-header sum in the field, wrong
        // on the wire, delivered as it is (the stack is told not to check).
        let mut blank = good.clone();
        blank_checksum(&mut blank).unwrap();
        assert_eq!(checksum_ok(&blank), Ok(false));
        let mut p = SimRxPacket::new(&blank);
        p.flags = NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED;
        w.back.inject(p);
        expect.push(blank.clone());
        // A zeroed field, split over slots, csum_blank alone.
        let mut zero = good.clone();
        let l4 = 14 + 20;
        let field = if good[23] == 6 { l4 + 16 } else { l4 + 6 };
        zero[field] = 0;
        zero[field + 1] = 0;
        let mut p = SimRxPacket::new(&zero);
        p.flags = NETRXF_CSUM_BLANK;
        p.chunk = 40;
        w.back.inject(p);
        expect.push(zero.clone());
        // The same wrong checksum with data_validated alone: trusted too.
        let mut p = SimRxPacket::new(&blank);
        p.flags = NETRXF_DATA_VALIDATED;
        w.back.inject(p);
        expect.push(blank.clone());
        // And with no flag: verified, wrong, dropped.
        w.back.inject(SimRxPacket::new(&blank));
        // A correct one with no flag: verified and delivered.
        w.back.inject(SimRxPacket::new(good));
        expect.push(good.clone());
    }
    // Not TCP/UDP (no flag): left to the stack.
    let other = frame(80, 9);
    w.back.inject(SimRxPacket::new(&other));
    expect.push(other);
    let (frames, errors) = w.receive_all(&mut nf);
    assert_eq!(frames, expect);
    assert_eq!(
        errors,
        vec![NetError::Rx(netfront::RxError::BadChecksum); 3],
        "each unflagged bad checksum is dropped"
    );
    let st = nf.stats().rx;
    assert_eq!(st.csum_trusted, 9);
    assert_eq!(st.csum_verified, 3);
    assert_eq!(st.errors, 3);
}

#[test]
fn unflagged_malformed_tcp_is_dropped() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config::default());
    // A TCP data offset past the segment: cannot be verified.
    let mut bad = tcp_frame(b"x", 1);
    bad[14 + 20 + 12] = 0xF0;
    w.back.inject(SimRxPacket::new(&bad));
    let (frames, errors) = w.receive_all(&mut nf);
    assert!(frames.is_empty());
    assert_eq!(
        errors,
        vec![NetError::Rx(netfront::RxError::Checksum(
            netfront::csum::ChecksumError::Truncated
        ))]
    );
}

#[test]
fn blank_checksum_on_non_ipv4_is_dropped_with_an_error() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config::default());
    let mut p = SimRxPacket::new(&frame(80, 1));
    p.flags = NETRXF_CSUM_BLANK;
    w.back.inject(p);
    let ok = frame(80, 2);
    w.back.inject(SimRxPacket::new(&ok));
    let (frames, errors) = w.receive_all(&mut nf);
    assert_eq!(frames, vec![ok]);
    assert_eq!(
        errors,
        vec![NetError::Rx(netfront::RxError::Checksum(
            netfront::csum::ChecksumError::NotIpv4 { ethertype: 0x88b5 }
        ))]
    );
}

#[test]
fn unflagged_ipv6_other_than_icmpv6_is_ignored() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config::default());
    // Ethernet + a fixed IPv6 header naming next header `nh`.
    let v6 = |nh: u8| {
        let mut f = frame(120, u32::from(nh));
        f[12] = 0x86;
        f[13] = 0xdd;
        f[14] = 0x60;
        f[20] = nh;
        f
    };
    let icmp = v6(58);
    w.back.inject(SimRxPacket::new(&v6(6)));
    w.back.inject(SimRxPacket::new(&v6(0)));
    w.back.inject(SimRxPacket::new(&icmp));
    let mut flagged = SimRxPacket::new(&v6(17));
    flagged.flags = NETRXF_DATA_VALIDATED;
    w.back.inject(flagged);
    let (frames, errors) = w.receive_all(&mut nf);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(frames, vec![icmp, v6(17)]);
    let st = nf.stats().rx;
    assert_eq!((st.ipv6_ignored, st.errors, st.packets), (2, 0, 2));
}
