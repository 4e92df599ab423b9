//! Interop: the sans-IO iperf3 server, driven over std `TcpListener` on 127.0.0.1, against the real `iperf3` client.
//!
//! Needs the `iperf3` binary (Debian: `apt-get install -y iperf3`; the
//! project's setup script installs it). Without it these tests FAIL with a
//! message saying so; they never pass silently.
//!
//! The std adapter here is test support only: one thread polls non-blocking
//! sockets and feeds the server, like the smoltcp pump does in the guest.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use net_services::iperf3::{AbortReason, CloseKind, ConnId, Event, Phase, Server, ServerConfig};
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Slots in the adapter's connection table (control + up to 8 streams + spares).
const CONNS: usize = 12;

/// Writes one connection may make per adapter step before the others get their turn.
const WRITE_BUDGET: usize = 16;

struct Conn {
    stream: TcpStream,
    /// Bytes taken from `poll_transmit` but not yet written.
    pending: Vec<u8>,
    pending_off: usize,
}

/// A connection we closed (FIN sent), read until EOF so unread data does not turn into a reset.
struct Draining {
    stream: TcpStream,
    since: Instant,
}

struct StdServer {
    listener: TcpListener,
    server: Server,
    conns: Vec<Option<Conn>>,
    draining: Vec<Draining>,
    epoch: Instant,
    events: Sender<Event>,
    buf: Vec<u8>,
}

impl StdServer {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn run(mut self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            let progress = self.step();
            while let Some(e) = self.server.next_event() {
                let _ = self.events.send(e);
            }
            if !progress {
                thread::sleep(Duration::from_micros(200));
            }
        }
    }

    fn step(&mut self) -> bool {
        let mut progress = false;
        let now = self.now_us();
        // Accept.
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    progress = true;
                    let Some(i) = self.conns.iter().position(Option::is_none) else {
                        drop(s);
                        continue;
                    };
                    s.set_nonblocking(true).unwrap();
                    s.set_nodelay(true).unwrap();
                    if self.server.accept(ConnId(i), now).is_ok() {
                        self.conns[i] = Some(Conn {
                            stream: s,
                            pending: Vec::new(),
                            pending_off: 0,
                        });
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("accept: {e}"),
            }
        }
        for i in 0..CONNS {
            progress |= self.pump(i, now);
        }
        self.server.poll(now);
        for i in 0..CONNS {
            progress |= self.apply_close(i);
        }
        // Drain closed connections until EOF (or give up after 5 s).
        self.draining.retain_mut(|d| {
            loop {
                match d.stream.read(&mut self.buf) {
                    Ok(0) => return false,
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        return d.since.elapsed() < Duration::from_secs(5);
                    }
                    Err(_) => return false,
                }
            }
        });
        progress
    }

    fn pump(&mut self, i: usize, now: u64) -> bool {
        let id = ConnId(i);
        let mut progress = false;
        let Some(c) = self.conns[i].as_mut() else {
            return false;
        };
        // Read everything available.
        let mut gone = false;
        loop {
            match c.stream.read(&mut self.buf) {
                Ok(0) => {
                    gone = true;
                    break;
                }
                Ok(n) => {
                    progress = true;
                    self.server.receive(id, &self.buf[..n], now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    gone = true;
                    break;
                }
            }
        }
        // Write while the socket takes it, but at most WRITE_BUDGET chunks per step: on an idle
        // loopback the client may drain the socket as fast as we fill it, and an unbounded loop
        // here would starve the other connections (the client's TEST_END on the control
        // connection) and never let `now` advance.
        let mut budget = WRITE_BUDGET;
        loop {
            if budget == 0 {
                progress = true;
                break;
            }
            budget -= 1;
            if c.pending_off == c.pending.len() {
                c.pending.clear();
                c.pending_off = 0;
                if !self.server.wants_transmit(id) {
                    break;
                }
                c.pending.resize(64 * 1024, 0);
                let n = self.server.poll_transmit(id, &mut c.pending, now);
                c.pending.truncate(n);
                if n == 0 {
                    break;
                }
            }
            match c.stream.write(&c.pending[c.pending_off..]) {
                Ok(n) => {
                    progress = true;
                    c.pending_off += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    gone = true;
                    break;
                }
            }
        }
        progress |= self.apply_close(i);
        if gone && self.conns[i].is_some() {
            self.server.closed(id, now);
            self.conns[i] = None;
            progress = true;
        }
        progress
    }

    fn apply_close(&mut self, i: usize) -> bool {
        let Some(c) = self.conns[i].as_ref() else {
            return false;
        };
        if c.pending_off < c.pending.len() {
            return false; // our own buffer first
        }
        match self.server.take_close(ConnId(i)) {
            None => false,
            Some(kind) => {
                let c = self.conns[i].take().unwrap();
                if kind == CloseKind::Close {
                    let _ = c.stream.shutdown(Shutdown::Write);
                    self.draining.push(Draining {
                        stream: c.stream,
                        since: Instant::now(),
                    });
                }
                true
            }
        }
    }
}

/// A running adapter on a random 127.0.0.1 port; stops when dropped.
struct Running {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    events: Receiver<Event>,
}

impl Running {
    fn start() -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = channel();
        let srv = StdServer {
            listener,
            server: Server::new(ServerConfig {
                max_conns: CONNS,
                ..ServerConfig::default()
            }),
            conns: (0..CONNS).map(|_| None).collect(),
            draining: Vec::new(),
            epoch: Instant::now(),
            events: tx,
            buf: vec![0u8; 128 * 1024],
        };
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = thread::spawn(move || srv.run(s2));
        Running {
            port,
            stop,
            thread: Some(thread),
            events: rx,
        }
    }

    /// Waits for the next event that is not `TestStarted`/`AccessDenied`.
    fn test_end(&self, within: Duration) -> Event {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::TestStarted(_) | Event::AccessDenied) => continue,
                Ok(e) => return e,
                Err(_) => panic!("no test end event within {within:?}"),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The `iperf3` client command; fails the test clearly when it is not installed.
fn iperf3() -> Command {
    match Command::new("iperf3").arg("--version").output() {
        Ok(o) if o.status.success() => Command::new("iperf3"),
        Ok(o) => panic!(
            "`iperf3 --version` failed ({}): the interop tests need the real iperf3 client \
             (Debian: apt-get install -y iperf3)",
            o.status
        ),
        Err(e) => panic!(
            "iperf3 not found ({e}): the interop tests need the real iperf3 client \
             (Debian: apt-get install -y iperf3; the project's setup script installs it)"
        ),
    }
}

fn spawn_client(port: u16, extra: &[&str]) -> Child {
    iperf3()
        .args(["-c", "127.0.0.1", "-p", &port.to_string(), "--json"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_client(mut child: Child, within: Duration) -> Output {
    let deadline = Instant::now() + within;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "iperf3 client did not finish within {within:?}; stdout:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `end.sum_sent.bytes`, `end.sum_received.bytes` (and for --bidir the
/// `_bidir_reverse` sums) of the client's JSON output, plus `error` if any.
#[derive(Debug, Default)]
struct ClientJson {
    sent: i64,
    received: i64,
    bidir_sent: Option<i64>,
    bidir_received: Option<i64>,
    streams: usize,
    error: Option<String>,
}

fn sum_bytes(obj: &Value) -> i64 {
    obj["bytes"].as_i64().unwrap_or(-1)
}

fn parse_client_json(stdout: &[u8]) -> ClientJson {
    let v: Value = serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "client output is not JSON ({e}):\n{}",
            String::from_utf8_lossy(stdout)
        )
    });
    let mut out = ClientJson {
        error: v["error"].as_str().map(String::from),
        ..ClientJson::default()
    };
    let end = &v["end"];
    if end.is_object() {
        out.sent = end.get("sum_sent").map_or(0, sum_bytes);
        out.received = end.get("sum_received").map_or(0, sum_bytes);
        out.bidir_sent = end.get("sum_sent_bidir_reverse").map(sum_bytes);
        out.bidir_received = end.get("sum_received_bidir_reverse").map(sum_bytes);
        out.streams = end["streams"].as_array().map_or(0, Vec::len);
    }
    out
}

/// Runs one client to completion and checks exit 0 and non-zero byte sums.
fn run_ok(srv: &Running, extra: &[&str]) -> ClientJson {
    let out = wait_client(spawn_client(srv.port, extra), Duration::from_secs(60));
    let j = parse_client_json(&out.stdout);
    assert!(
        out.status.success(),
        "iperf3 {extra:?} failed ({}): {:?}\nstderr: {}",
        out.status,
        j.error,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(j.error.is_none(), "{:?}", j.error);
    assert!(j.sent > 0, "sum_sent.bytes = {} for {extra:?}", j.sent);
    assert!(
        j.received > 0,
        "sum_received.bytes = {} for {extra:?}",
        j.received
    );
    j
}

fn finished(srv: &Running) -> net_services::iperf3::TestSummary {
    match srv.test_end(Duration::from_secs(10)) {
        Event::TestFinished(s) => s,
        e => panic!("expected TestFinished, got {e:?}"),
    }
}

#[test]
fn normal_test() {
    let srv = Running::start();
    let j = run_ok(&srv, &["-t", "2"]);
    let s = finished(&srv);
    // Normal mode: the client sends; its "received" sum is what we reported.
    assert_eq!(s.bytes_received as i64, j.received);
    assert_eq!(s.bytes_sent, 0);
    assert!(j.received <= j.sent);
    assert_eq!(
        s.client.bytes as i64, j.sent,
        "client results match its own output"
    );
    assert!(s.duration_us >= 1_900_000, "duration {} us", s.duration_us);
}

#[test]
fn reverse_test() {
    let srv = Running::start();
    let j = run_ok(&srv, &["-t", "2", "-R"]);
    let s = finished(&srv);
    // Reverse: we send; the client's "sent" sum is what we reported.
    assert!(s.reverse);
    assert_eq!(s.bytes_sent as i64, j.sent);
    assert_eq!(s.bytes_received, 0);
    assert!(j.received <= j.sent);
}

#[test]
fn parallel_test() {
    let srv = Running::start();
    let j = run_ok(&srv, &["-t", "2", "-P", "4"]);
    assert_eq!(j.streams, 4);
    let s = finished(&srv);
    assert_eq!(s.streams, 4);
    assert_eq!(s.bytes_received as i64, j.received);
    // And -R -P 4 on the same server (it keeps running between tests).
    let j = run_ok(&srv, &["-t", "2", "-P", "4", "-R"]);
    assert_eq!(j.streams, 4);
    let s = finished(&srv);
    assert_eq!(s.bytes_sent as i64, j.sent);
}

#[test]
fn bidirectional_test() {
    let srv = Running::start();
    let j = run_ok(&srv, &["-t", "2", "--bidir"]);
    assert!(j.bidir_sent.unwrap_or(0) > 0, "{j:?}");
    assert!(j.bidir_received.unwrap_or(0) > 0, "{j:?}");
    let s = finished(&srv);
    assert!(s.bytes_sent > 0 && s.bytes_received > 0, "{s:?}");
}

#[test]
fn byte_count_and_server_output() {
    let srv = Running::start();
    // End by bytes (-n) instead of time, and ask for the server's output.
    let out = wait_client(
        spawn_client(srv.port, &["-n", "20M", "--get-server-output"]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let j = parse_client_json(&out.stdout);
    assert!(j.sent >= 20 * 1024 * 1024, "{j:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("xenrs iperf3 server"),
        "server output missing:\n{text}"
    );
    finished(&srv);
}

#[test]
fn udp_is_refused_cleanly_and_server_survives() {
    let srv = Running::start();
    let out = wait_client(
        spawn_client(srv.port, &["-u", "-t", "1"]),
        Duration::from_secs(30),
    );
    // iperf 3.12 with --json reports errors in the JSON's "error" member (and
    // may still exit 0), so the error text is what is checked.
    let j = parse_client_json(&out.stdout);
    assert_eq!(j.sent, 0, "a UDP test must not run");
    let err = j.error.unwrap_or_default();
    assert!(err.contains("not implemented"), "error: {err}");
    assert!(matches!(
        srv.test_end(Duration::from_secs(5)),
        Event::TestAborted(AbortReason::Params(_))
    ));
    run_ok(&srv, &["-t", "1"]);
}

#[test]
fn vanishing_client_and_busy_server() {
    let srv = Running::start();
    // A long test; a second client meanwhile is told the server is busy.
    let long = spawn_client(srv.port, &["-t", "30"]);
    match srv.events.recv_timeout(Duration::from_secs(10)) {
        Ok(Event::TestStarted(p)) => assert_eq!(p.time_s, 30),
        e => panic!("expected TestStarted, got {e:?}"),
    }
    let busy = wait_client(
        spawn_client(srv.port, &["-t", "1"]),
        Duration::from_secs(20),
    );
    let err = parse_client_json(&busy.stdout).error.unwrap_or_default();
    assert!(err.contains("busy"), "error: {err}");
    // Now the first client vanishes mid-test (SIGKILL: its kernel resets/closes).
    let mut long = long;
    thread::sleep(Duration::from_millis(500));
    long.kill().unwrap();
    let _ = long.wait();
    match srv.test_end(Duration::from_secs(10)) {
        Event::TestAborted(AbortReason::ControlClosed(Phase::Running)) => {}
        e => panic!("expected the test to abort, got {e:?}"),
    }
    // The server is free again.
    run_ok(&srv, &["-t", "1", "-R"]);
    finished(&srv);
}
