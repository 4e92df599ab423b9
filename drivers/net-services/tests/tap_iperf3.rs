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

mod common;

use common::Tap;
use net_services::iperf3::{AbortReason, Event, Phase};
use net_services::smol::{ServiceEvent, Services, ServicesConfig};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread;
use std::time::Duration;

const IN_NETNS: &str = "NET_SERVICES_TAP_NETNS";
const TEST_NAME: &str = "real_iperf3_client_through_smoltcp_over_tap";
const TAP: &str = "xenrs-tap0";

/// Runs the guest's network stack (smoltcp + services) on the TAP device until `stop`.
fn guest(stop: Arc<AtomicBool>, events: Sender<Event>, ready: Sender<()>) {
    let mut tap = Tap::new(TAP, 1, 0x5eed, &ready);
    let mut services = Services::new(&mut tap.sockets, &ServicesConfig::default()).unwrap();
    let max_wait = smoltcp::time::Duration::from_millis(50);
    tap.run(&stop, max_wait, |sockets, now| {
        let busy = services.poll(sockets, now, &mut nbd_server::NoDisks);
        while let Some(e) = services.next_event() {
            if let ServiceEvent::Iperf3(e) = e {
                let _ = events.send(e);
            }
        }
        (busy, services.poll_at())
    });
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
    if common::rerun_in_netns(IN_NETNS, TEST_NAME, |l| l.contains("through smoltcp/TAP")) {
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (ev_tx, events) = channel();
    let s2 = stop.clone();
    let guest = common::start_guest(TAP, move |ready| guest(s2, ev_tx, ready));

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
