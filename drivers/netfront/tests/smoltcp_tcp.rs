//! End to end through the `smoltcp::phy::Device` impl: a smoltcp peer on
//! the back end's side talks TCP to a smoltcp stack on NetFront. Every
//! TCP/UDP packet the peer sends reaches the guest with its checksum blanked
//! and `NETRXF_csum_blank` set, as from a Linux dom0 with offload on: if the
//! driver mishandled them, the guest stack would drop the segments and the
//! transfer would not finish. Every TCP frame the guest sends leaves with
//! `NETTXF_csum_blank | NETTXF_data_validated` and the pseudo-header sum in
//! its checksum field; the test completes it as dom0 would before the peer
//! (which verifies every checksum) sees it.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use netfront::Config;
use netfront::csum::{blank_checksum, checksum_ok, complete_checksum};
use netfront::sim::{SimNetConfig, SimRxPacket, SimWorld};
use smoltcp::iface::{Config as IfConfig, Interface, SocketSet};
use smoltcp::phy::{Device, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use xen_abi::netif::{
    NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED, NETTXF_CSUM_BLANK, NETTXF_DATA_VALIDATED,
    NETTXF_EXTRA_INFO, NetifExtraInfo, XEN_NETIF_GSO_TYPE_TCPV4,
};

use netfront::sim::PeerWire as Wire;

/// Merges runs of in-order TCP/IPv4 data segments of one flow into segments
/// of up to 64 KiB, as dom0's GRO/TSO does before netback sees them (the
/// header of the run's last segment, the sequence number of its first).
/// Returns the frames and, per frame, its GSO segment size if merged.
fn coalesce(frames: Vec<Vec<u8>>) -> Vec<(Vec<u8>, Option<u16>)> {
    use smoltcp::wire::{EthernetFrame, Ipv4Packet, TcpPacket};
    // (ip header len, tcp header len, seq, payload len, flow key) of a plain data segment.
    fn parse(f: &[u8]) -> Option<(usize, usize, u32, usize, [u8; 12])> {
        let eth = EthernetFrame::new_checked(f).ok()?;
        if u16::from(eth.ethertype()) != 0x0800 {
            return None;
        }
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        if u8::from(ip.next_header()) != 6 || ip.more_frags() || ip.frag_offset() != 0 {
            return None;
        }
        let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
        if tcp.syn() || tcp.fin() || tcp.rst() || tcp.payload().is_empty() {
            return None;
        }
        let mut key = [0u8; 12];
        key[..4].copy_from_slice(&ip.src_addr().octets());
        key[4..8].copy_from_slice(&ip.dst_addr().octets());
        key[8..10].copy_from_slice(&tcp.src_port().to_be_bytes());
        key[10..].copy_from_slice(&tcp.dst_port().to_be_bytes());
        Some((
            usize::from(ip.header_len()),
            usize::from(tcp.header_len()),
            tcp.seq_number().0 as u32,
            tcp.payload().len(),
            key,
        ))
    }
    let mut out: Vec<(Vec<u8>, Option<u16>)> = Vec::new();
    // The run being built: (frame, next seq, key, gso size, segments).
    type Run = (Vec<u8>, u32, [u8; 12], u16, usize);
    let mut run: Option<Run> = None;
    let flush = |run: &mut Option<Run>, out: &mut Vec<(Vec<u8>, Option<u16>)>| {
        if let Some((f, _, _, gso, n)) = run.take() {
            out.push((f, (n > 1).then_some(gso)));
        }
    };
    for f in frames {
        let Some((ihl, thl, seq, len, key)) = parse(&f) else {
            flush(&mut run, &mut out);
            out.push((f, None));
            continue;
        };
        let hdr = 14 + ihl + thl;
        if let Some((acc, next, k, _, n)) = run.as_mut()
            && *k == key
            && *next == seq
            && acc.len() + len <= 14 + 65535
            && acc.len() - 14 >= ihl + thl
        {
            // Take the newer header (ack, window), keep the first seq.
            let first_seq = acc[14 + ihl + 4..14 + ihl + 8].to_vec();
            let payload = f[hdr..].to_vec();
            let mut merged = f[..hdr].to_vec();
            merged[14 + ihl + 4..14 + ihl + 8].copy_from_slice(&first_seq);
            let old_hdr = 14 + ihl + thl;
            merged.extend_from_slice(&acc[old_hdr..]);
            merged.extend_from_slice(&payload);
            let total = (merged.len() - 14) as u16;
            let mut ip = Ipv4Packet::new_unchecked(&mut merged[14..]);
            ip.set_total_len(total);
            ip.fill_checksum();
            *acc = merged;
            *next = seq.wrapping_add(len as u32);
            *n += 1;
            continue;
        }
        flush(&mut run, &mut out);
        run = Some((f, seq.wrapping_add(len as u32), key, len as u16, 1));
    }
    flush(&mut run, &mut out);
    out
}

#[test]
fn tcp_transfer_through_netfront_with_blank_checksums() {
    transfer(false, true);
}

/// A back end without `feature-gso-tcpv4`: the guest's TSO segments are
/// segmented by netfront.
#[test]
fn tcp_transfer_through_netfront_without_backend_gso() {
    transfer(false, false);
}

/// The peer's segments reach the guest merged into GSO packets of up to
/// 64 KiB (TCPv4 GSO extra, blank checksum): smoltcp takes segments far
/// larger than the MTU.
#[test]
fn tcp_transfer_through_netfront_with_gso_packets() {
    transfer(true, true);
}

fn transfer(gso: bool, backend_gso: bool) {
    let mut w = SimWorld::new(SimNetConfig {
        gso: backend_gso,
        ..SimNetConfig::default()
    });
    let mut nf = w.connect(Config {
        rx_buffers: 64,
        tx_buffers: 32,
        tso: true,
        ..Config::default()
    });
    let caps = nf.capabilities();
    assert_eq!(caps.max_transmission_unit, 1514);
    assert_eq!(caps.medium, Medium::Ethernet);

    let guest_mac = EthernetAddress(nf.mac().0);
    let mut guest = Interface::new(
        IfConfig::new(HardwareAddress::Ethernet(guest_mac)),
        &mut nf,
        Instant::ZERO,
    );
    guest.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(10, 0, 0, 2), 24)).unwrap();
    });
    let mut wire = Wire::default();
    let mut peer = wire.interface();

    let mut gsockets = SocketSet::new(vec![]);
    let server = gsockets.add(tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 65536]),
        tcp::SocketBuffer::new(vec![0; 65536]),
    ));
    gsockets
        .get_mut::<tcp::Socket>(server)
        .listen(5000)
        .unwrap();
    let mut psockets = SocketSet::new(vec![]);
    let client = psockets.add(tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 65536]),
        tcp::SocketBuffer::new(vec![0; 65536]),
    ));
    psockets
        .get_mut::<tcp::Socket>(client)
        .connect(peer.context(), (Ipv4Address::new(10, 0, 0, 2), 5000), 49152)
        .unwrap();

    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut sent = 0usize;
    let mut echoed = Vec::new();
    let mut blanked = 0u64;
    let mut offloaded = 0u64;
    let mut biggest = 0usize;
    let mut merged = 0u64;
    let mut tso = 0u64;
    let mut now = Instant::ZERO;
    for _ in 0..200_000 {
        now += smoltcp::time::Duration::from_millis(1);
        // Peer: send what fits, read the echo.
        {
            let s = psockets.get_mut::<tcp::Socket>(client);
            if s.may_send() && sent < data.len() {
                sent += s.send_slice(&data[sent..]).unwrap();
            }
            if s.can_recv() {
                let mut buf = [0u8; 8192];
                let n = s.recv_slice(&mut buf).unwrap();
                echoed.extend_from_slice(&buf[..n]);
            }
        }
        peer.poll(now, &mut wire, &mut psockets);
        // Peer -> back end -> guest, TCP/UDP checksums blanked like dom0's.
        let frames: Vec<Vec<u8>> = std::mem::take(&mut wire.tx);
        let frames = if gso {
            coalesce(frames)
        } else {
            frames.into_iter().map(|f| (f, None)).collect()
        };
        for (mut f, gso_size) in frames {
            let mut p = SimRxPacket::new(&f);
            if blank_checksum(&mut f).is_ok() {
                p = SimRxPacket::new(&f);
                p.flags = NETRXF_CSUM_BLANK;
                blanked += 1;
            }
            if let Some(size) = gso_size {
                p.flags |= NETRXF_DATA_VALIDATED;
                p.extras = vec![NetifExtraInfo::gso(size, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0)];
                biggest = biggest.max(f.len());
                merged += 1;
            }
            w.back.inject(p);
        }
        w.back.service();
        guest.poll(now, &mut nf, &mut gsockets);
        nf.flush_tx().unwrap();
        // Guest: echo.
        {
            let s = gsockets.get_mut::<tcp::Socket>(server);
            if s.can_recv() && s.may_send() {
                let mut buf = [0u8; 8192];
                let room = s.send_capacity() - s.send_queue();
                let n = s.recv_slice(&mut buf[..room.min(8192)]).unwrap();
                s.send_slice(&buf[..n]).unwrap();
            }
        }
        guest.poll(now, &mut nf, &mut gsockets);
        nf.flush_tx().unwrap();
        w.back.service();
        for mut f in w.back.take_sent_frames() {
            if f.data.get(23) == Some(&6) {
                // TCP: offloaded, the field holds the pseudo-header sum.
                let csum = NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED;
                assert_eq!(f.flags & csum, csum);
                if f.extras.is_empty() {
                    assert!(f.data.len() <= 1514);
                    assert_eq!(f.flags & NETTXF_EXTRA_INFO, 0);
                } else {
                    // TSO: one GSO extra with the MSS; the peer takes the
                    // whole segment (smoltcp accepts it), as dom0 would
                    // after segmenting it.
                    assert_eq!(f.flags & NETTXF_EXTRA_INFO, NETTXF_EXTRA_INFO);
                    assert_eq!(
                        f.extras,
                        vec![NetifExtraInfo::gso(1460, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0)]
                    );
                    assert!(f.data.len() > 1514);
                    tso += 1;
                }
                let mut partial = f.data.clone();
                blank_checksum(&mut partial).unwrap();
                assert_eq!(partial, f.data, "field is not the pseudo-header sum");
                complete_checksum(&mut f.data).unwrap();
                offloaded += 1;
            } else {
                assert_eq!(f.flags & NETTXF_CSUM_BLANK, 0);
            }
            assert_ne!(checksum_ok(&f.data), Ok(false));
            wire.rx.push_back(f.data);
        }
        if echoed.len() == data.len() {
            break;
        }
    }
    assert_eq!(echoed.len(), data.len(), "transfer did not finish");
    assert!(echoed == data);
    let st = nf.stats();
    assert!(blanked > if gso { 10 } else { 100 }, "{blanked}");
    assert_eq!(st.rx.csum_trusted, blanked);
    assert_eq!(st.rx.gso_packets, merged);
    if gso {
        assert!(merged > 10, "{merged} GSO packets");
        assert!(biggest > 30_000, "largest GSO frame {biggest} bytes");
    }
    assert_eq!(st.tx.csum_offloaded, offloaded);
    assert!(offloaded > 20, "{offloaded}");
    if backend_gso {
        assert!(tso > 3, "{tso} TSO frames");
        assert_eq!(st.tx.segmented, 0);
    } else {
        assert_eq!(tso, 0);
        assert!(st.tx.segmented > 3, "{}", st.tx.segmented);
    }
    assert_eq!(st.tx.tso, tso);
    // Every GSO extra answered with XEN_NETIF_RSP_NULL (the last ones
    // reclaimed now).
    w.back.service();
    nf.poll_tx().unwrap();
    assert_eq!(nf.stats().tx.null_responses, tso);
    assert_eq!(st.rx.errors, 0);
    assert!(st.tx.completed > 20, "{}", st.tx.completed);
    assert_eq!(w.back.stats().bad_rx_grefs, 0);
}
