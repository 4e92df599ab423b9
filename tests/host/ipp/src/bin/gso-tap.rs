//! Linux TCP with TSO/GSO against the guest's netfront -> smoltcp -> services path, on the host.
//!
//! Why: on real Xen a Linux dom0 hands netback TCP segments of up to 64 KiB
//! (TSO) and netback passes them to the guest whole, as GSO packets. The
//! smoltcp-peer tests cannot produce Linux's sending behaviour (congestion
//! window, TSO autosizing, window probes), so this binary puts the real Linux
//! stack and the real `iperf3` client on the other side:
//!
//! - a TAP device opened with `IFF_VNET_HDR` and `TUNSETOFFLOAD(CSUM|TSO4)`, so
//!   Linux gives it unsegmented TCP segments (`virtio_net_hdr` with
//!   `GSO_TCPV4` and `NEEDS_CSUM`), exactly what it gives netback;
//! - each one is injected into `netfront::sim`'s simulated netback as netback
//!   would deliver it: `NETRXF_csum_blank | NETRXF_data_validated` and a
//!   TCPv4 GSO extra with the segment size, in page-sized slots;
//! - the guest is the kernel's pieces: netfront (256 rx buffers, or `GSO_TAP_RX_BUFS`), a smoltcp
//!   interface polled as `kernel/src/net/vif.rs` does (64 frames in, then the
//!   services, then 16 egress rounds), and `net_services::Services` sized as a
//!   `memory=32` guest's;
//! - the guest's frames go back through the TAP with a `virtio_net_hdr`
//!   (`NEEDS_CSUM`, and `GSO_TCPV4` for TSO frames).
//!
//! Usage (root, inside a private network namespace so nothing leaves it):
//! `unshare --net target/debug/gso-tap [iperf3 args...]` — runs
//! `iperf3 -c 192.0.2.1 -t 5 --json ARGS` and prints the client's summary and
//! the guest's counters; exits 1 if iperf3 failed or the test did not finish.
//! `GSO_TAP_BUDGET` (bytes for the services, default a `memory=32` guest's 12 MiB),
//! `GSO_TAP_SLOW_US` (a pause after every pass) and `GSO_TAP_RX_BUFS` vary the guest.
#![allow(unsafe_code)] // the TAP ioctls; nothing else

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use nbd_server::NoDisks;
use net_services::smol::ServiceEvent;
use net_services::{Selection, Services, ServicesConfig};
use netfront::Config;
use netfront::sim::{SimNetConfig, SimRxPacket, SimWorld};
use smoltcp::iface::{
    Config as IfConfig, Interface, PollIngressSingleResult, PollResult, SocketSet,
};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use xen_abi::netif::{
    NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED, NetifExtraInfo, XEN_NETIF_GSO_TYPE_TCPV4,
};

const TAP: &str = "xgso0";
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;
const VNET_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;

/// Frames in per pass and egress rounds, as the kernel (`kernel/src/net/vif.rs`).
const INGRESS_BUDGET: usize = 64;
const EGRESS_ROUNDS: usize = 16;

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    pad: [u8; 22],
}

fn sh(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().expect(cmd);
    assert!(st.success(), "{cmd} {args:?} failed");
}

fn open_tap() -> File {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .expect("/dev/net/tun");
    let mut req = IfReq {
        name: [0; 16],
        flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
        pad: [0; 22],
    };
    req.name[..TAP.len()].copy_from_slice(TAP.as_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq` (40 bytes, IfReq's
    // layout: name, then the flags at offset 16) for the lifetime of the call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
    assert_eq!(r, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4) };
    assert_eq!(r, 0, "TUNSETOFFLOAD: {}", std::io::Error::last_os_error());
    // SAFETY: fcntl on our own descriptor.
    unsafe {
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    f
}

/// smoltcp time from the monotonic clock.
fn now() -> Instant {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let t0 = *START.get_or_init(std::time::Instant::now);
    Instant::from_micros(t0.elapsed().as_micros() as i64 + 1_000_000)
}

fn main() {
    let extra: Vec<String> = std::env::args().skip(1).collect();
    let mut tap = open_tap();
    sh("ip", &["link", "set", "lo", "up"]);
    sh("ip", &["addr", "add", "192.0.2.2/24", "dev", TAP]);
    sh("ip", &["link", "set", TAP, "up"]);

    let mut w = SimWorld::new(SimNetConfig::default());
    // GSO_TAP_RX_BUFS: fewer rx buffers (a small guest gets as few as 32; a 64 KiB GSO packet
    // takes 18 slots).
    let rx_buffers: u16 = std::env::var("GSO_TAP_RX_BUFS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    // TSO on: this tool checks that path (the kernel runs with it off, see
    // netfront's `Config::tso`).
    let mut nf = w.connect(Config {
        rx_buffers,
        tso: true,
        ..Config::default()
    });
    let mut iface = Interface::new(
        IfConfig::new(HardwareAddress::Ethernet(EthernetAddress(nf.mac().0))),
        &mut nf,
        now(),
    );
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::v4(192, 0, 2, 1), 24));
    });
    let mut sockets = SocketSet::new(vec![]);
    let budget: usize = std::env::var("GSO_TAP_BUDGET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12 * 1024 * 1024);
    let cfg = ServicesConfig::for_budget(Selection::ALL, budget, false).expect("budget");
    eprintln!("gso-tap: services {}", cfg.sizes());
    let mut services = Services::new(&mut sockets, &cfg).expect("services");

    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let client = thread::spawn(move || {
        thread::sleep(std::time::Duration::from_millis(300));
        let out = Command::new("timeout")
            .args(["60", "iperf3", "-c", "192.0.2.1", "-t", "5", "--json"])
            .args(&extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("iperf3");
        s2.store(true, Ordering::Relaxed);
        out
    });

    let mut buf = vec![0u8; 70 * 1024];
    let (mut gso_in, mut tso_out, mut frames_in, mut biggest) = (0u64, 0u64, 0u64, 0usize);
    let mut finished = false;
    // GSO_TAP_SLOW_US: a pause after every pass (a slow guest, as under QEMU TCG).
    let slow: u64 = std::env::var("GSO_TAP_SLOW_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Pumps on for 2 s after the client is done (its IPERF_DONE, the close).
    let mut until: Option<Instant> = None;
    loop {
        let now = now();
        if until.is_none() && stop.load(Ordering::Relaxed) {
            until = Some(now + smoltcp::time::Duration::from_secs(2));
        }
        if until.is_some_and(|u| now > u) || (until.is_some() && finished) {
            break;
        }
        let mut idle = true;
        // Linux -> netback -> guest.
        loop {
            match tap.read(&mut buf) {
                Ok(n) if n > VNET_HDR_LEN => {
                    idle = false;
                    frames_in += 1;
                    let (h, f) = buf[..n].split_at(VNET_HDR_LEN);
                    let mut p = SimRxPacket::new(f);
                    if h[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
                        p.flags = NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED;
                    }
                    if h[1] == VIRTIO_NET_HDR_GSO_TCPV4 {
                        let size = u16::from_le_bytes([h[4], h[5]]);
                        p.extras = vec![NetifExtraInfo::gso(size, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0)];
                        gso_in += 1;
                        biggest = biggest.max(f.len());
                    }
                    w.back.inject(p);
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("tap read: {e}"),
            }
            if w.back.queued() > 512 {
                break;
            }
        }
        w.back.service();
        // The guest's pump (kernel/src/net/vif.rs `poll_iface` + services).
        iface.poll_maintenance(now);
        for _ in 0..INGRESS_BUDGET {
            match iface.poll_ingress_single(now, &mut nf, &mut sockets) {
                PollIngressSingleResult::None => break,
                _ => idle = false,
            }
        }
        for _ in 0..EGRESS_ROUNDS {
            if let PollResult::None = iface.poll_egress(now, &mut nf, &mut sockets) {
                break;
            }
        }
        let _ = nf.flush_tx();
        if services.poll(&mut sockets, now, &mut NoDisks) {
            idle = false;
        }
        while let Some(e) = services.next_event() {
            if let ServiceEvent::Iperf3(e) = e {
                eprintln!("gso-tap: guest iperf3 event: {e:?}");
                if matches!(e, net_services::iperf3::Event::TestFinished(_)) {
                    finished = true;
                }
            }
        }
        iface.poll_maintenance(now);
        for _ in 0..INGRESS_BUDGET {
            if let PollIngressSingleResult::None =
                iface.poll_ingress_single(now, &mut nf, &mut sockets)
            {
                break;
            }
        }
        for _ in 0..EGRESS_ROUNDS {
            if let PollResult::None = iface.poll_egress(now, &mut nf, &mut sockets) {
                break;
            }
        }
        let _ = nf.flush_tx();
        w.back.service();
        // Guest -> netback -> Linux.
        for fr in w.back.take_sent_frames() {
            idle = false;
            let mut h = [0u8; VNET_HDR_LEN];
            let tcp = fr.data.get(23) == Some(&6);
            let udp = fr.data.get(23) == Some(&17);
            if (tcp || udp) && fr.flags & 1 != 0 {
                // NETTXF_csum_blank: the field holds the pseudo-header sum.
                let ihl = usize::from(fr.data[14] & 0xf) * 4;
                let start = (14 + ihl) as u16;
                h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
                h[6..8].copy_from_slice(&start.to_le_bytes());
                h[8..10].copy_from_slice(&(if tcp { 16u16 } else { 6 }).to_le_bytes());
            }
            if let Some(e) = fr.extras.first() {
                let tcp_off = 14 + usize::from(fr.data[14] & 0xf) * 4;
                let hdr_len = tcp_off + usize::from(fr.data[tcp_off + 12] >> 4) * 4;
                h[1] = VIRTIO_NET_HDR_GSO_TCPV4;
                h[2..4].copy_from_slice(&(hdr_len as u16).to_le_bytes());
                h[4..6].copy_from_slice(&e.gso_size().to_le_bytes());
                tso_out += 1;
            }
            let mut out = h.to_vec();
            out.extend_from_slice(&fr.data);
            if let Err(e) = tap.write_all(&out) {
                eprintln!("gso-tap: tap write ({} bytes): {e}", out.len());
            }
        }
        if slow > 0 {
            thread::sleep(std::time::Duration::from_micros(slow));
        } else if idle {
            thread::sleep(std::time::Duration::from_micros(200));
        }
    }
    let out = client.join().expect("the iperf3 thread panicked");
    let st = nf.stats();
    eprintln!(
        "gso-tap: frames in {frames_in} ({gso_in} GSO, biggest {biggest} B), TSO out {tso_out}; guest rx {} pkts {} B errors {} gso {}; tx {} pkts dropped {} tso {} segmented {}",
        st.rx.packets,
        st.rx.bytes,
        st.rx.errors,
        st.rx.gso_packets,
        st.tx.packets,
        st.tx.dropped,
        st.tx.tso,
        st.tx.segmented
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.contains("\"bytes\"") || l.contains("bits_per_second") || l.contains("\"error\"")
        })
        .collect();
    eprintln!(
        "gso-tap: iperf3 exit {}; {}",
        out.status,
        summary.join(" | ")
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() || !finished {
        eprintln!("gso-tap: FAIL (finished={finished})");
        std::process::exit(1);
    }
    eprintln!("gso-tap: PASS");
}
