//! End to end: the guest's smoltcp pump ([`Services`]) on a TAP device against the real iperf3 client and Linux TCP.
//!
//! The test re-runs itself inside a private network namespace (`unshare
//! --net`, as root), creates a TAP device there, gives the Linux side
//! 192.0.2.2/24 and the smoltcp side 192.0.2.1/24 (TEST-NET-1, RFC 5737),
//! and runs `iperf3 -c 192.0.2.1` (normal, `-R`, `-P 4`), TCP echo of 1 MiB
//! and UDP echo against it. Nothing leaves the namespace.
//!
//! Needs root (for the namespace and the TAP device), `unshare`, `ip` and
//! `iperf3`; without them the test FAILS saying what is missing.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use net_services::iperf3::{AbortReason, Event, Phase};
use net_services::smol::{ServiceEvent, Services, ServicesConfig};
use serde_json::Value;
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{self, Medium, TunTapInterface};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::Duration;

const IN_NETNS: &str = "NET_SERVICES_TAP_NETNS";
const TEST_NAME: &str = "real_iperf3_client_through_smoltcp_over_tap";
const TAP: &str = "xenrs-tap0";
const GUEST_IP: Ipv4Address = Ipv4Address::new(192, 0, 2, 1);

fn sh(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{cmd} not runnable ({e}); this test needs iproute2"));
    assert!(st.success(), "{cmd} {args:?} failed: {st}");
}

/// Runs the guest's network stack (smoltcp + services) on the TAP device until `stop`.
fn guest(
    stop: Arc<AtomicBool>,
    events: std::sync::mpsc::Sender<Event>,
    ready: std::sync::mpsc::Sender<()>,
) {
    let mut dev = TunTapInterface::new(TAP, Medium::Ethernet)
        .unwrap_or_else(|e| panic!("cannot create TAP device {TAP}: {e} (needs root)"));
    ready.send(()).unwrap();
    let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress([
        2, 0, 0, 0x58, 0x52, 1,
    ])));
    cfg.random_seed = 0x5eed;
    let mut iface = Interface::new(cfg, &mut dev, Instant::now());
    iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::Ipv4(GUEST_IP), 24)).unwrap());
    let mut sockets = SocketSet::new(vec![]);
    let mut services = Services::new(&mut sockets, &ServicesConfig::default()).unwrap();
    let fd = dev.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        iface.poll(now, &mut dev, &mut sockets);
        let busy = services.poll(&mut sockets, now, &mut nbd_server::NoDisks);
        iface.poll(now, &mut dev, &mut sockets);
        while let Some(e) = services.next_event() {
            if let ServiceEvent::Iperf3(e) = e {
                let _ = events.send(e);
            }
        }
        if !busy {
            let mut delay = iface
                .poll_delay(now, &sockets)
                .unwrap_or(smoltcp::time::Duration::from_millis(50));
            if let Some(at) = services.poll_at() {
                delay = delay.min(at - now.min(at));
            }
            let delay = delay.min(smoltcp::time::Duration::from_millis(50));
            let _ = phy::wait(fd, Some(delay));
        }
    }
}

fn client_bytes(stdout: &[u8]) -> (i64, i64, Option<String>) {
    let v: Value = serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 output not JSON ({e}): {}",
            String::from_utf8_lossy(stdout)
        )
    });
    let bytes = |o: &Value| o["bytes"].as_i64().unwrap_or(0);
    (
        bytes(&v["end"]["sum_sent"]),
        bytes(&v["end"]["sum_received"]),
        v["error"].as_str().map(String::from),
    )
}

fn iperf3_ok(events: &Receiver<Event>, extra: &[&str]) {
    let out = Command::new("iperf3")
        .args([
            "-c",
            "192.0.2.1",
            "-t",
            "2",
            "--json",
            "--connect-timeout",
            "5000",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| {
            panic!("iperf3 not runnable ({e}): install it (Debian: apt-get install -y iperf3)")
        });
    let (sent, recv, err) = client_bytes(&out.stdout);
    assert!(
        out.status.success() && err.is_none(),
        "iperf3 {extra:?}: {} {err:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        sent > 0 && recv > 0,
        "iperf3 {extra:?}: sent {sent} received {recv}"
    );
    eprintln!(
        "iperf3 {extra:?} through smoltcp/TAP: sent {sent} received {recv} bytes ({:.1} Mbit/s)",
        recv as f64 * 8.0 / 2.0 / 1e6
    );
    loop {
        match events.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::TestFinished(s)) => {
                let ours = if extra.contains(&"-R") {
                    s.bytes_sent
                } else {
                    s.bytes_received
                };
                let theirs = if extra.contains(&"-R") { sent } else { recv };
                assert_eq!(ours as i64, theirs);
                return;
            }
            Ok(Event::TestStarted(_)) => continue,
            other => panic!("expected TestFinished, got {other:?}"),
        }
    }
}

#[test]
fn real_iperf3_client_through_smoltcp_over_tap() {
    if std::env::var_os(IN_NETNS).is_none() {
        // Re-run just this test in a fresh network namespace.
        let exe = std::env::current_exe().unwrap();
        let out = Command::new("unshare")
            .arg("--net")
            .arg("--")
            .arg(exe)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(IN_NETNS, "1")
            .output()
            .unwrap_or_else(|e| panic!("`unshare` not runnable ({e}); this test needs util-linux"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "the test failed inside its network namespace (or `unshare --net` is not \
             permitted: it needs root): {}\n--- stdout\n{}\n--- stderr\n{stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
        );
        for line in stderr.lines().filter(|l| l.contains("through smoltcp/TAP")) {
            eprintln!("{line}");
        }
        return;
    }
    sh("ip", &["link", "set", "lo", "up"]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ev_tx, events) = channel();
    let (ready_tx, ready) = channel();
    let s2 = stop.clone();
    let guest = thread::spawn(move || guest(s2, ev_tx, ready_tx));
    ready
        .recv_timeout(Duration::from_secs(10))
        .expect("guest thread did not create the TAP device");
    sh("ip", &["addr", "add", "192.0.2.2/24", "dev", TAP]);
    sh("ip", &["link", "set", TAP, "up"]);

    // TCP echo, 1 MiB, with a concurrent reader.
    let mut s = TcpStream::connect_timeout(&"192.0.2.1:7".parse().unwrap(), Duration::from_secs(5))
        .expect("TCP echo connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut w = s.try_clone().unwrap();
    let d2 = data.clone();
    let writer = thread::spawn(move || {
        w.write_all(&d2).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert!(
        got == data,
        "TCP echo returned {} bytes, differing",
        got.len()
    );

    // UDP echo.
    let u = UdpSocket::bind("192.0.2.2:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for i in 0..5u8 {
        let msg = vec![i; 100 + usize::from(i) * 300];
        u.send_to(&msg, "192.0.2.1:7").unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = u.recv_from(&mut buf).unwrap();
        assert_eq!(from.to_string(), "192.0.2.1:7");
        assert_eq!(&buf[..n], &msg[..]);
    }

    // iperf3: normal, reverse, 4 parallel streams (each way).
    iperf3_ok(&events, &[]);
    iperf3_ok(&events, &["-R"]);

    // A client killed mid-test (its sockets close/reset): the test is
    // aborted and the next client is served.
    let mut doomed = Command::new("iperf3")
        .args(["-c", "192.0.2.1", "-t", "30", "-R", "-P", "2", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    match events.recv_timeout(Duration::from_secs(10)) {
        Ok(Event::TestStarted(p)) => assert_eq!((p.time_s, p.parallel), (30, 2)),
        other => panic!("expected TestStarted, got {other:?}"),
    }
    thread::sleep(Duration::from_millis(1500));
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    match events.recv_timeout(Duration::from_secs(10)) {
        Ok(Event::TestAborted(AbortReason::ControlClosed(Phase::Running))) => {}
        other => panic!("expected the killed client's test to abort, got {other:?}"),
    }

    iperf3_ok(&events, &["-P", "4"]);
    iperf3_ok(&events, &["-P", "4", "-R"]);

    stop.store(true, Ordering::Relaxed);
    guest.join().unwrap();
}
