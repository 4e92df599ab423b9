//! Instructions per packet of the guest's network path, on the host.
//!
//! A guest made of the kernel's own pieces (netfront over `netfront::sim`'s simulated netback,
//! a smoltcp interface on it, and `net_services::Services` configured as the kernel does: TCP
//! echo on port 7 among 40 echo sockets, UDP echo, iperf3 and NBD listening) echoes one TCP
//! stream from a smoltcp peer on the back end's side. As from a Linux dom0 with offload on,
//! every TCP segment the peer sends reaches the guest with its checksum blanked and
//! `NETRXF_csum_blank` set. Time is simulated (1 ms a pass), so a run is deterministic.
//!
//! The guest's work runs in three functions of its own, so that `valgrind --tool=callgrind
//! --toggle-collect=...` (tests/host/ipp.sh) counts only them, not the peer or the simulator:
//! - `ipp_guest_rx`: smoltcp's maintenance and ingress (at most 64 frames a pass, as the
//!   kernel); netfront hands it the frames from its rx ring, refills the ring, and sends the
//!   replies smoltcp makes at once (ACKs);
//! - `ipp_guest_services`: one pump of the services (the echo moves received bytes to its
//!   send buffer);
//! - `ipp_guest_tx`: smoltcp's egress (the echoed data), netfront posting the frames on its
//!   tx ring and reaping completions.
//!
//! It prints the counts the script divides by: frames received and sent in each step, bytes
//! echoed, and netfront's notifications. Usage: `net-ipp [BYTES]` (default 2 MiB).
#![forbid(unsafe_code)]

use std::hint::black_box;

use nbd_server::NoDisks;
use net_services::{Selection, Services, ServicesConfig};
use netfront::Config;
use netfront::csum::{blank_checksum, complete_checksum};
use netfront::sim::{SimNetConfig, SimNetFront, SimRxPacket, SimWorld};
use smoltcp::iface::{
    Config as IfConfig, Interface, PollIngressSingleResult, PollResult, SocketSet,
};

use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use xen_abi::netif::{NETRXF_CSUM_BLANK, NETTXF_CSUM_BLANK};

/// Frames smoltcp takes from the ring per pass (the kernel's `INGRESS_BUDGET`).
const INGRESS_BUDGET: usize = 64;
/// Egress rounds per pass (the kernel's `EGRESS_ROUNDS`).
const EGRESS_ROUNDS: usize = 16;
/// The echo port.
const ECHO_PORT: u16 = 7;

use netfront::sim::PeerWire as Wire;

/// The budget the services get in a `memory=32` guest, the harness default (the kernel
/// prints its own as `xenrs net: vif/0 buffers ... budget_kib=...`; at 32 MiB every cap but
/// iperf3's windows is reached, docs/NET.md "Memory budget").
const BUDGET_32MIB: usize = 12 * 1024 * 1024;

/// The services as the kernel sizes them (`kernel/src/net/mod.rs`, `size_services`, through
/// the same `ServicesConfig::for_budget`), with a disk attached.
fn kernel_services() -> ServicesConfig {
    ServicesConfig::for_budget(Selection::ALL, BUDGET_32MIB, true)
        .expect("a 32 MiB guest's budget holds every service")
}

/// The guest: netfront, its interface, sockets and services.
struct Guest {
    nf: SimNetFront,
    iface: Interface,
    sockets: SocketSet<'static>,
    services: Services,
}

/// smoltcp's maintenance and ingress (netfront's rx ring, and the replies sent at once).
#[inline(never)]
fn ipp_guest_rx(g: &mut Guest, now: Instant) -> bool {
    let mut moved = false;
    g.iface.poll_maintenance(now);
    for _ in 0..INGRESS_BUDGET {
        match g.iface.poll_ingress_single(now, &mut g.nf, &mut g.sockets) {
            PollIngressSingleResult::None => break,
            PollIngressSingleResult::PacketProcessed
            | PollIngressSingleResult::SocketStateChanged => moved = true,
        }
    }
    let _ = g.nf.flush_tx();
    moved
}

/// One pump of the services.
#[inline(never)]
fn ipp_guest_services(g: &mut Guest, now: Instant) -> bool {
    g.services.poll(&mut g.sockets, now, &mut NoDisks)
}

/// smoltcp's egress (netfront's tx ring).
#[inline(never)]
fn ipp_guest_tx(g: &mut Guest, now: Instant) -> bool {
    let mut moved = false;
    for _ in 0..EGRESS_ROUNDS {
        match g.iface.poll_egress(now, &mut g.nf, &mut g.sockets) {
            PollResult::None => break,
            PollResult::SocketStateChanged => moved = true,
        }
    }
    let _ = g.nf.flush_tx();
    moved
}

/// What the run counted.
#[derive(Debug, Default)]
struct Counts {
    rx_step_rx: u64,
    rx_step_tx: u64,
    tx_step_tx: u64,
    services_tx: u64,
    passes: u64,
}

fn main() {
    let total: usize = match std::env::args().nth(1) {
        None => 2 << 20,
        Some(a) => match a.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("usage: net-ipp [BYTES]   (BYTES > 0, default 2097152)");
                std::process::exit(2);
            }
        },
    };

    let mut w = SimWorld::new(SimNetConfig::default());
    let mut nf = w.connect(Config::default());
    let guest_mac = EthernetAddress(nf.mac().0);
    let mut iface = Interface::new(
        IfConfig::new(HardwareAddress::Ethernet(guest_mac)),
        &mut nf,
        Instant::ZERO,
    );
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::v4(10, 0, 0, 2), 24));
    });
    let mut sockets = SocketSet::new(vec![]);
    let services = match Services::new(&mut sockets, &kernel_services()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("net-ipp: the services did not start: {e}");
            std::process::exit(1);
        }
    };
    let mut g = Guest {
        nf,
        iface,
        sockets,
        services,
    };

    let mut wire = Wire::default();
    let mut peer = wire.interface();
    let mut psockets = SocketSet::new(vec![]);
    let client = psockets.add(tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 256 * 1024]),
        tcp::SocketBuffer::new(vec![0; 256 * 1024]),
    ));
    if let Err(e) = psockets.get_mut::<tcp::Socket>(client).connect(
        peer.context(),
        (Ipv4Address::new(10, 0, 0, 2), ECHO_PORT),
        49152,
    ) {
        eprintln!("net-ipp: connect: {e}");
        std::process::exit(1);
    }

    let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let mut sent = 0usize;
    let mut echoed = 0usize;
    let mut bad = 0usize;
    let mut c = Counts::default();
    let mut now = Instant::ZERO;
    let mut buf = vec![0u8; 64 * 1024];
    // Generous: a healthy run needs a few passes per 64 KiB.
    let max_passes = 1000 + 20 * (total / 1024);
    while echoed < total && (c.passes as usize) < max_passes {
        c.passes += 1;
        now += Duration::from_millis(1);
        // The peer: send what fits, read and check the echo.
        {
            let s = psockets.get_mut::<tcp::Socket>(client);
            if s.may_send() && sent < total {
                sent += s.send_slice(&data[sent..]).unwrap_or(0);
            }
            while s.can_recv() {
                let n = s.recv_slice(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                for (i, b) in buf[..n].iter().enumerate() {
                    if *b != ((echoed + i) % 251) as u8 {
                        bad += 1;
                    }
                }
                echoed += n;
            }
        }
        peer.poll(now, &mut wire, &mut psockets);
        // Peer -> back end, TCP/UDP checksums blanked like dom0's.
        for mut f in wire.tx.drain(..) {
            let p = if blank_checksum(&mut f).is_ok() {
                let mut p = SimRxPacket::new(&f);
                p.flags = NETRXF_CSUM_BLANK;
                p
            } else {
                SimRxPacket::new(&f)
            };
            w.back.inject(p);
        }
        w.back.service();

        // The guest, step by step; frames counted from netfront's own counters.
        let (rx0, tx0) = (g.nf.stats().rx.packets, g.nf.stats().tx.packets);
        black_box(ipp_guest_rx(&mut g, now));
        let (rx1, tx1) = (g.nf.stats().rx.packets, g.nf.stats().tx.packets);
        black_box(ipp_guest_services(&mut g, now));
        let tx2 = g.nf.stats().tx.packets;
        black_box(ipp_guest_tx(&mut g, now));
        let tx3 = g.nf.stats().tx.packets;
        c.rx_step_rx += rx1 - rx0;
        c.rx_step_tx += tx1 - tx0;
        c.services_tx += tx2 - tx1;
        c.tx_step_tx += tx3 - tx2;

        w.back.service();
        // Back end -> peer: blank checksums completed, as dom0 delivers them.
        for mut f in w.back.take_sent_frames() {
            if f.flags & NETTXF_CSUM_BLANK != 0 {
                complete_checksum(&mut f.data).expect("an offloaded frame is TCP/UDP over IPv4");
            }
            wire.rx.push_back(f.data);
        }
    }
    let st = g.nf.stats();
    println!(
        "net-ipp bytes={total} echoed={echoed} bad_bytes={bad} passes={} rx_step_rx_frames={} rx_step_tx_frames={} services_tx_frames={} tx_step_tx_frames={} rx_frames={} tx_frames={} rx_bytes={} tx_bytes={} notifies={} rx_errors={} tx_dropped={} csum_trusted={} csum_verified={}",
        c.passes,
        c.rx_step_rx,
        c.rx_step_tx,
        c.services_tx,
        c.tx_step_tx,
        st.rx.packets,
        st.tx.packets,
        st.rx.bytes,
        st.tx.bytes,
        st.notifies,
        st.rx.errors,
        st.tx.dropped,
        st.rx.csum_trusted,
        st.rx.csum_verified,
    );
    if echoed != total || bad != 0 {
        eprintln!(
            "net-ipp: the echo did not complete: {echoed} of {total} bytes back, {bad} wrong, after {} passes",
            c.passes
        );
        std::process::exit(1);
    }
}
