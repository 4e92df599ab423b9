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
use xen_abi::netif::{NETRXF_CSUM_BLANK, NETTXF_CSUM_BLANK, NETTXF_DATA_VALIDATED};

use netfront::sim::PeerWire as Wire;

#[test]
fn tcp_transfer_through_netfront_with_blank_checksums() {
    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config {
        rx_buffers: 64,
        tx_buffers: 32,
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
    let mut peer = Interface::new(
        IfConfig::new(HardwareAddress::Ethernet(EthernetAddress([
            0x02, 0, 0, 0, 0, 1,
        ]))),
        &mut wire,
        Instant::ZERO,
    );
    peer.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(10, 0, 0, 1), 24)).unwrap();
    });

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
        for mut f in wire.tx.drain(..) {
            let mut p = SimRxPacket::new(&f);
            if blank_checksum(&mut f).is_ok() {
                p = SimRxPacket::new(&f);
                p.flags = NETRXF_CSUM_BLANK;
                blanked += 1;
            }
            w.back.inject(p);
        }
        w.back.service();
        guest.poll(now, &mut nf, &mut gsockets);
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
        w.back.service();
        for mut f in w.back.take_sent_frames() {
            if f.data.get(23) == Some(&6) {
                // TCP: offloaded, the field holds the pseudo-header sum.
                assert_eq!(f.flags, NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED);
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
    assert!(blanked > 100);
    assert_eq!(st.rx.csum_trusted, blanked);
    assert_eq!(st.tx.csum_offloaded, offloaded);
    assert!(offloaded > 100);
    assert_eq!(st.rx.errors, 0);
    assert!(st.tx.completed > 100);
    assert_eq!(w.back.stats().bad_rx_grefs, 0);
}
