//! Two smoltcp interfaces joined by an in-memory Ethernet link: the services' pumps against smoltcp client sockets.
//!
//! The server side is exactly what the guest runs ([`Services`] over a
//! `SocketSet`); the client side is plain smoltcp sockets driven by the
//! test. Time is simulated (1 ms per step), so the tests are deterministic.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use nbd_server::mem::MemDisks;
use net_services::iperf3::{AbortReason, Event, Phase, State};
use net_services::smol::{NbdEvent, ServiceEvent, Services, ServicesConfig};
use serde_json::Value;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};
use std::cell::Cell;
use std::rc::Rc;

#[path = "common/pipe.rs"]
mod pipe;
use pipe::{PipeEnd, cable};

/// Addresses from TEST-NET-1 (RFC 5737); nothing leaves the process.
const SERVER_IP: Ipv4Address = Ipv4Address::new(192, 0, 2, 1);
const CLIENT_IP: Ipv4Address = Ipv4Address::new(192, 0, 2, 2);

struct Net {
    now: Instant,
    /// How far the server's (the guest's) clock is behind the client's: the
    /// time it spent suspended, when its clock stood still meanwhile.
    s_behind: Duration,
    /// The server's link is down (see [`PipeEnd`]).
    s_down: Rc<Cell<bool>>,
    s_iface: Interface,
    s_dev: PipeEnd,
    s_sockets: SocketSet<'static>,
    services: Services,
    c_iface: Interface,
    c_dev: PipeEnd,
    c_sockets: SocketSet<'static>,
    next_port: u16,
    events: Vec<Event>,
    /// The NBD service's disks (two RAM disks: `xvda` 4 MiB, `ro` 1 MiB read-only).
    disks: MemDisks,
    nbd_events: Vec<NbdEvent>,
}

fn iface(dev: &mut PipeEnd, mac: [u8; 6], ip: Ipv4Address, seed: u64) -> Interface {
    let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    cfg.random_seed = seed;
    let mut i = Interface::new(cfg, dev, Instant::ZERO);
    i.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::Ipv4(ip), 24)).unwrap());
    i
}

impl Net {
    fn new(cfg: &ServicesConfig) -> Net {
        let (mut s_dev, mut c_dev) = cable();
        let s_down = s_dev.down.clone();
        let s_iface = iface(&mut s_dev, [2, 0, 0, 0, 0, 1], SERVER_IP, 1);
        let c_iface = iface(&mut c_dev, [2, 0, 0, 0, 0, 2], CLIENT_IP, 2);
        let mut s_sockets = SocketSet::new(vec![]);
        let services = Services::new(&mut s_sockets, cfg).unwrap();
        Net {
            now: Instant::ZERO,
            s_behind: Duration::ZERO,
            s_down,
            s_iface,
            s_dev,
            s_sockets,
            services,
            c_iface,
            c_dev,
            c_sockets: SocketSet::new(vec![]),
            next_port: 49152,
            events: vec![],
            disks: {
                let mut d = MemDisks::new();
                d.add("xvda", 4 << 20, false);
                d.add("ro", 1 << 20, true);
                d
            },
            nbd_events: vec![],
        }
    }

    /// One millisecond: the guest's event-loop order on the server side.
    fn step(&mut self) {
        self.client_step();
        let now = self.now - self.s_behind;
        self.s_iface.poll(now, &mut self.s_dev, &mut self.s_sockets);
        self.services
            .poll(&mut self.s_sockets, now, &mut self.disks);
        self.s_iface.poll(now, &mut self.s_dev, &mut self.s_sockets);
        while let Some(e) = self.services.next_event() {
            match e {
                ServiceEvent::Iperf3(e) => self.events.push(e),
                ServiceEvent::Nbd(e) => self.nbd_events.push(e),
            }
        }
    }

    /// One millisecond of the client alone (the guest is suspended).
    fn client_step(&mut self) {
        self.now += Duration::from_millis(1);
        self.c_iface
            .poll(self.now, &mut self.c_dev, &mut self.c_sockets);
    }

    /// The guest is saved for `pause` and restored: its link is down
    /// meanwhile and for its first 200 ms after the restore (netfront
    /// reconnecting). `clock_stands_still`: the guest's clock does not count
    /// the pause (the kernel since the fix of the NBD stall); otherwise it
    /// jumps by the pause at the restore.
    fn save_restore(&mut self, pause: Duration, clock_stands_still: bool) {
        self.s_down.set(true);
        for _ in 0..pause.total_millis() {
            self.client_step();
        }
        if clock_stands_still {
            self.s_behind += pause;
        }
        for _ in 0..200 {
            self.step();
        }
        self.s_down.set(false);
    }

    fn run_until(&mut self, what: &str, max_steps: u32, mut done: impl FnMut(&mut Net) -> bool) {
        for _ in 0..max_steps {
            if done(self) {
                return;
            }
            self.step();
        }
        panic!("{what}: not done after {max_steps} steps");
    }

    fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.c_sockets.get_mut::<tcp::Socket>(h)
    }

    fn connect(&mut self, port: u16, buf: usize) -> SocketHandle {
        let s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; buf]),
            tcp::SocketBuffer::new(vec![0; buf]),
        );
        let h = self.c_sockets.add(s);
        let local = self.next_port;
        self.next_port += 1;
        let cx = self.c_iface.context();
        self.c_sockets
            .get_mut::<tcp::Socket>(h)
            .connect(cx, (IpAddress::Ipv4(SERVER_IP), port), local)
            .unwrap();
        self.run_until("connect", 2000, |n| n.tcp(h).may_send());
        h
    }

    fn send_all(&mut self, h: SocketHandle, data: &[u8]) {
        let mut off = 0;
        self.run_until("send", 100_000, |n| {
            off += n.tcp(h).send_slice(&data[off..]).unwrap();
            off == data.len()
        });
    }

    fn recv_exact(&mut self, h: SocketHandle, len: usize) -> Vec<u8> {
        let mut out = vec![];
        self.run_until("recv", 100_000, |n| {
            let s = n.tcp(h);
            while s.can_recv() {
                s.recv(|b| {
                    let k = b.len().min(len - out.len());
                    out.extend_from_slice(&b[..k]);
                    (k, ())
                })
                .unwrap();
                if out.len() == len {
                    break;
                }
            }
            out.len() == len
        });
        out
    }

    /// Reads and counts until the peer's FIN.
    fn drain_to_fin(&mut self, h: SocketHandle) -> u64 {
        let mut n = 0u64;
        self.run_until("drain", 100_000, |net| {
            let s = net.tcp(h);
            while s.can_recv() {
                n += s.recv(|b| (b.len(), b.len())).unwrap() as u64;
            }
            !s.may_recv()
        });
        n
    }
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn tcp_echo_one_mebibyte() {
    let mut net = Net::new(&ServicesConfig::default());
    let h = net.connect(7, 64 * 1024);
    let data = pattern(1 << 20, 7);
    // Send and receive concurrently (the echo applies back-pressure).
    let mut sent = 0;
    let mut got = Vec::with_capacity(data.len());
    net.run_until("echo 1 MiB", 200_000, |n| {
        let s = n.tcp(h);
        if sent < data.len() {
            sent += s.send_slice(&data[sent..]).unwrap();
        }
        while s.can_recv() {
            s.recv(|b| {
                got.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
        }
        got.len() == data.len()
    });
    assert!(got == data, "echoed bytes differ");
    // Client closes; the server closes its half after echoing everything.
    net.tcp(h).close();
    net.run_until("server FIN", 5000, |n| !n.tcp(h).may_recv());
    let stats = net.services.tcp_echo().unwrap().stats();
    assert_eq!(stats.bytes, 1 << 20);
    assert_eq!(stats.connections, 1);
    // The server socket re-arms (listening again) once its close finishes.
    net.run_until("re-arm", 20_000, |n| {
        n.services.tcp_echo().unwrap().pool().busy() == 0
    });
}

#[test]
fn tcp_echo_many_concurrent_connections() {
    let mut net = Net::new(&ServicesConfig::default());
    let conns: Vec<(SocketHandle, Vec<u8>)> = (0..12)
        .map(|i| (net.connect(7, 16 * 1024), pattern(48 * 1024, 100 + i)))
        .collect();
    assert_eq!(net.services.tcp_echo().unwrap().pool().busy(), 12);
    let mut sent = vec![0usize; conns.len()];
    let mut got: Vec<Vec<u8>> = vec![vec![]; conns.len()];
    net.run_until("12 echoes", 200_000, |n| {
        for (i, (h, data)) in conns.iter().enumerate() {
            let s = n.tcp(*h);
            if sent[i] < data.len() {
                sent[i] += s.send_slice(&data[sent[i]..]).unwrap();
            }
            while s.can_recv() {
                s.recv(|b| {
                    got[i].extend_from_slice(b);
                    (b.len(), ())
                })
                .unwrap();
            }
        }
        got.iter().zip(&conns).all(|(g, (_, d))| g.len() == d.len())
    });
    for (g, (_, d)) in got.iter().zip(&conns) {
        assert!(g == d);
    }
    // Close half of them, abort the others; every server socket comes back.
    for (i, (h, _)) in conns.iter().enumerate() {
        if i % 2 == 0 {
            net.tcp(*h).close();
        } else {
            net.tcp(*h).abort();
        }
    }
    net.run_until("all re-armed", 50_000, |n| {
        n.services.tcp_echo().unwrap().pool().busy() == 0
    });
    // And they serve again.
    let h = net.connect(7, 4096);
    net.send_all(h, b"again");
    assert_eq!(net.recv_exact(h, 5), b"again");
}

#[test]
fn udp_echo() {
    let mut net = Net::new(&ServicesConfig::default());
    let mk = |port: u16, net: &mut Net| {
        let mut s = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 16 * 2048]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 16 * 2048]),
        );
        s.bind(port).unwrap();
        net.c_sockets.add(s)
    };
    let h = mk(40000, &mut net);
    let server = IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), 7);
    let msgs: Vec<Vec<u8>> = (0..10).map(|i| pattern(100 + i * 130, i as u32)).collect();
    for m in &msgs {
        net.c_sockets
            .get_mut::<udp::Socket>(h)
            .send_slice(m, server)
            .unwrap();
    }
    let mut got = vec![];
    net.run_until("udp echoes", 1000, |n| {
        let s = n.c_sockets.get_mut::<udp::Socket>(h);
        while let Ok((d, meta)) = s.recv() {
            assert_eq!(meta.endpoint, server, "reply comes from port 7");
            got.push(d.to_vec());
        }
        got.len() == msgs.len()
    });
    assert_eq!(got, msgs);
    // From port 19 (chargen) no answer: that would be a packet loop.
    let loop_src = mk(19, &mut net);
    net.c_sockets
        .get_mut::<udp::Socket>(loop_src)
        .send_slice(b"ping", server)
        .unwrap();
    for _ in 0..50 {
        net.step();
    }
    assert!(
        net.c_sockets
            .get_mut::<udp::Socket>(loop_src)
            .recv()
            .is_err()
    );
    let st = net.services.udp_echo().unwrap().stats();
    assert_eq!((st.echoed, st.refused), (10, 1));
}

const COOKIE: &[u8; 37] = b"smoltcpclientcookie0123456789abcdefg\0";

fn frame(json: &str) -> Vec<u8> {
    let mut v = (json.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(json.as_bytes());
    v
}

/// (id, bytes) of each stream in a results JSON.
fn result_bytes(body: &[u8]) -> Vec<(i64, i64)> {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_i64().unwrap(), s["bytes"].as_i64().unwrap()))
        .collect()
}

/// A scripted iperf3 client over smoltcp: the 3.12 client's message sequence.
/// Returns the server's per-stream (id, bytes) and what the client moved per stream.
fn scripted_iperf3(
    net: &mut Net,
    parallel: usize,
    reverse: bool,
    per_stream: usize,
) -> (Vec<(i64, i64)>, Vec<u64>) {
    let ctrl = net.connect(5201, 8192);
    net.send_all(ctrl, COOKIE);
    assert_eq!(net.recv_exact(ctrl, 1), [State::ParamExchange as u8]);
    let params = format!(
        r#"{{"tcp":true,"omit":0,"time":10,"num":0,"blockcount":0,"parallel":{parallel}{},"len":131072,"pacing_timer":1000,"client_version":"3.12"}}"#,
        if reverse { r#","reverse":true"# } else { "" }
    );
    net.send_all(ctrl, &frame(&params));
    assert_eq!(net.recv_exact(ctrl, 1), [State::CreateStreams as u8]);
    let streams: Vec<SocketHandle> = (0..parallel)
        .map(|_| {
            let h = net.connect(5201, 64 * 1024);
            net.send_all(h, COOKIE);
            h
        })
        .collect();
    assert_eq!(
        net.recv_exact(ctrl, 2),
        [State::TestStart as u8, State::TestRunning as u8]
    );
    let mut moved = vec![0u64; parallel];
    if reverse {
        net.run_until("reverse data", 200_000, |n| {
            for (i, h) in streams.iter().enumerate() {
                let s = n.tcp(*h);
                while s.can_recv() {
                    moved[i] += s.recv(|b| (b.len(), b.len())).unwrap() as u64;
                }
            }
            moved.iter().all(|&m| m >= per_stream as u64)
        });
    } else {
        let data = pattern(per_stream, 5);
        let mut off = vec![0usize; parallel];
        net.run_until("forward data", 200_000, |n| {
            for (i, h) in streams.iter().enumerate() {
                off[i] += n.tcp(*h).send_slice(&data[off[i]..]).unwrap();
            }
            off.iter().all(|&o| o == per_stream)
        });
        // Let it all arrive before ending, as a real client's data would
        // (TEST_END on the control connection can overtake stream data).
        net.run_until("acked", 100_000, |n| {
            streams.iter().all(|h| n.tcp(*h).send_queue() == 0)
        });
        moved.fill(per_stream as u64);
    }
    net.send_all(ctrl, &[State::TestEnd as u8]);
    assert_eq!(net.recv_exact(ctrl, 1), [State::ExchangeResults as u8]);
    if reverse {
        // The server stops and closes its streams: read the rest up to FIN,
        // so "received" is exact.
        for (i, h) in streams.iter().enumerate() {
            moved[i] += net.drain_to_fin(*h);
        }
    }
    let mut client = String::from(
        r#"{"cpu_util_total":1,"cpu_util_user":0.5,"cpu_util_system":0.5,"sender_has_retransmits":0,"streams":["#,
    );
    for (i, m) in moved.iter().enumerate() {
        let id = if i == 0 { 1 } else { i + 2 };
        if i > 0 {
            client.push(',');
        }
        client.push_str(&format!(
            r#"{{"id":{id},"bytes":{m},"retransmits":0,"jitter":0,"errors":0,"packets":0,"start_time":0,"end_time":1}}"#
        ));
    }
    client.push_str("]}");
    net.send_all(ctrl, &frame(&client));
    let len = u32::from_be_bytes(net.recv_exact(ctrl, 4).try_into().unwrap()) as usize;
    let body = net.recv_exact(ctrl, len);
    assert_eq!(net.recv_exact(ctrl, 1), [State::DisplayResults as u8]);
    net.send_all(ctrl, &[State::IperfDone as u8]);
    net.tcp(ctrl).close();
    for h in &streams {
        net.tcp(*h).close();
    }
    net.run_until("control FIN", 5000, |n| !n.tcp(ctrl).may_recv());
    (result_bytes(&body), moved)
}

#[test]
fn iperf3_forward_and_reverse_through_the_pump() {
    let mut net = Net::new(&ServicesConfig::default());
    // Forward, one stream: the server counts exactly what the client sent.
    let (server, client) = scripted_iperf3(&mut net, 1, false, 3 << 20);
    assert_eq!(server, [(1, (3 << 20) as i64)]);
    assert_eq!(client, [3 << 20]);
    // Reverse, 4 parallel streams: what the server says it sent is exactly
    // what the client read up to each stream's FIN.
    let (server, client) = scripted_iperf3(&mut net, 4, true, 1 << 20);
    assert_eq!(server.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 3, 4, 5]);
    for (s, c) in server.iter().zip(&client) {
        assert_eq!(s.1 as u64, *c);
        assert!(*c >= 1 << 20);
    }
    // Forward, 4 streams.
    let (server, _) = scripted_iperf3(&mut net, 4, false, 512 * 1024);
    assert!(server.iter().all(|s| s.1 == 512 * 1024), "{server:?}");
    let finished = net
        .events
        .iter()
        .filter(|e| matches!(e, Event::TestFinished(_)))
        .count();
    assert_eq!(finished, 3);
    // Every pool socket is free again afterwards.
    net.run_until("iperf3 pool re-armed", 50_000, |n| {
        n.services.iperf3().unwrap().pool().busy() == 0
    });
}

#[test]
fn iperf3_vanishing_client_and_busy_server_through_the_pump() {
    let mut net = Net::new(&ServicesConfig::default());
    let ctrl = net.connect(5201, 8192);
    net.send_all(ctrl, COOKIE);
    assert_eq!(net.recv_exact(ctrl, 1), [State::ParamExchange as u8]);
    net.send_all(
        ctrl,
        &frame(r#"{"tcp":true,"time":10,"parallel":2,"reverse":true}"#),
    );
    assert_eq!(net.recv_exact(ctrl, 1), [State::CreateStreams as u8]);
    let streams: Vec<_> = (0..2)
        .map(|_| {
            let h = net.connect(5201, 16 * 1024);
            net.send_all(h, COOKIE);
            h
        })
        .collect();
    assert_eq!(net.recv_exact(ctrl, 2), [1, 2]);
    // Data flows.
    net.drain_some(streams[0], 100_000);
    // A second client is refused while the test runs.
    let other = net.connect(5201, 4096);
    assert_eq!(net.recv_exact(other, 1), [State::AccessDenied.byte()]);
    net.run_until("denied FIN", 5000, |n| !n.tcp(other).may_recv());
    // The client vanishes: every socket reset at once.
    net.tcp(ctrl).abort();
    for h in &streams {
        net.tcp(*h).abort();
    }
    net.run_until("abort seen", 5000, |n| {
        n.events.iter().any(|e| {
            matches!(
                e,
                Event::TestAborted(AbortReason::ControlClosed(Phase::Running))
            )
        })
    });
    net.run_until("pool re-armed", 50_000, |n| {
        n.services.iperf3().unwrap().pool().busy() == 0
    });
    // The next client gets a full test.
    let (server, client) = scripted_iperf3(&mut net, 2, true, 200_000);
    for (s, c) in server.iter().zip(&client) {
        assert_eq!(s.1 as u64, *c);
    }
}

#[test]
fn iperf3_silent_or_vanished_client_through_the_pump() {
    // A socket timeout below the server's handshake timeout, so that in
    // part 2 the socket's own timeout is what ends the connection.
    let mut cfg = ServicesConfig::default();
    cfg.iperf3.keep_alive_ms = 5_000;
    cfg.iperf3.timeout_ms = 20_000;
    assert!(cfg.iperf3.timeout_ms * 1000 < cfg.iperf3_server.handshake_timeout_us);
    let mut net = Net::new(&cfg);
    // 1. A client whose TCP stack is alive (answers keep-alives) but that
    //    never sends its parameters: the server's handshake timeout resets it.
    let ctrl = net.connect(5201, 8192);
    net.send_all(ctrl, COOKIE);
    assert_eq!(net.recv_exact(ctrl, 1), [State::ParamExchange as u8]);
    let steps = (cfg.iperf3_server.handshake_timeout_us / 1000 + 100) as u32;
    for _ in 0..steps {
        net.step();
    }
    assert_eq!(
        net.events,
        [Event::TestAborted(AbortReason::Timeout(
            Phase::ParamExchange
        ))]
    );
    assert_eq!(
        net.tcp(ctrl).state(),
        tcp::State::Closed,
        "reset by the server"
    );
    net.events.clear();

    // 2. A client that vanishes with its link (no FIN, no RST, frames to it
    //    lost): keep-alive and the socket timeout end the connection.
    let ctrl = net.connect(5201, 8192);
    net.send_all(ctrl, COOKIE);
    assert_eq!(net.recv_exact(ctrl, 1), [State::ParamExchange as u8]);
    let steps = (cfg.iperf3.timeout_ms + cfg.iperf3.keep_alive_ms + 100) as u32;
    for _ in 0..steps {
        net.c_dev.rx.borrow_mut().clear();
        net.s_dev.rx.borrow_mut().clear();
        net.step();
    }
    assert_eq!(
        net.events,
        [Event::TestAborted(AbortReason::ControlClosed(
            Phase::ParamExchange
        ))]
    );
    assert_eq!(net.services.iperf3().unwrap().server().phase(), None);
    assert_eq!(net.services.iperf3().unwrap().pool().busy(), 0);
}

impl Net {
    /// Reads at least `n` bytes from `h`.
    fn drain_some(&mut self, h: SocketHandle, n: u64) {
        let mut got = 0u64;
        self.run_until("drain some", 100_000, |net| {
            let s = net.tcp(h);
            while s.can_recv() {
                got += s.recv(|b| (b.len(), b.len())).unwrap() as u64;
            }
            got >= n
        });
    }
}

// ---------------------------------------------------------------- NBD (port 10809)

mod nbd {
    use super::*;
    use nbd_server::wire::{
        Command, GreetingRepr, InfoExportRepr, InfoRequest, OptionHeaderRepr, OptionReplyRepr,
        RequestRepr, SimpleReplyRepr, errno, info, option, reply,
    };
    use nbd_server::{ClientError, Event as NbdConnEvent};

    pub const PORT: u16 = 10809;

    /// Connects, negotiates (GO on `name`), returns the socket and the export info.
    pub fn open(net: &mut Net, name: &str) -> (SocketHandle, InfoExportRepr) {
        let h = net.connect(PORT, 256 * 1024);
        let g = net.recv_exact(h, GreetingRepr::LEN);
        assert_eq!(GreetingRepr::parse(&g).unwrap().flags, 3);
        net.send_all(h, &3u32.to_be_bytes());
        // QEMU's order: structured replies first (refused), then GO.
        send_option(net, h, option::STRUCTURED_REPLY, &[]);
        assert_eq!(option_reply(net, h).0.reply_type, reply::ERR_UNSUP);
        send_option(
            net,
            h,
            option::GO,
            &InfoRequest::emit(name.as_bytes(), &[info::BLOCK_SIZE]),
        );
        let (r, d) = option_reply(net, h);
        assert_eq!(r.reply_type, reply::INFO);
        let e = InfoExportRepr::parse(&d).unwrap();
        assert_eq!(option_reply(net, h).0.reply_type, reply::INFO);
        assert_eq!(option_reply(net, h).0.reply_type, reply::ACK);
        (h, e)
    }

    pub fn send_option(net: &mut Net, h: SocketHandle, opt: u32, data: &[u8]) {
        let mut b = vec![0u8; OptionHeaderRepr::LEN];
        OptionHeaderRepr {
            option: opt,
            length: data.len() as u32,
        }
        .emit(&mut b);
        b.extend_from_slice(data);
        net.send_all(h, &b);
    }

    pub fn option_reply(net: &mut Net, h: SocketHandle) -> (OptionReplyRepr, Vec<u8>) {
        let r = OptionReplyRepr::parse(&net.recv_exact(h, OptionReplyRepr::LEN)).unwrap();
        let d = net.recv_exact(h, r.length as usize);
        (r, d)
    }

    pub fn request(cmd: Command, flags: u16, handle: u64, offset: u64, length: u32) -> Vec<u8> {
        RequestRepr {
            flags,
            command: cmd,
            handle,
            offset,
            length,
        }
        .to_bytes()
        .to_vec()
    }

    pub fn reply(net: &mut Net, h: SocketHandle) -> SimpleReplyRepr {
        SimpleReplyRepr::parse(&net.recv_exact(h, SimpleReplyRepr::LEN)).unwrap()
    }

    #[test]
    fn nbd_three_clients_write_and_read_back() {
        let mut net = Net::new(&ServicesConfig::default());
        let clients: Vec<(SocketHandle, InfoExportRepr)> =
            (0..3).map(|_| open(&mut net, "xvda")).collect();
        assert_eq!(clients[0].1.size, 4 << 20);
        assert_eq!(net.services.nbd().unwrap().connections(), (3, 0));
        // Each client writes its own MiB in pipelined 64 KiB requests (one FUA), then flushes.
        for (c, &(h, _)) in clients.iter().enumerate() {
            let data = pattern(1 << 20, 40 + c as u32);
            let mut bytes = Vec::new();
            for k in 0..16u64 {
                let off = (c as u64) << 20 | k << 16;
                let flags = if k == 15 { 1 } else { 0 };
                bytes.extend(request(Command::Write, flags, k, off, 65536));
                bytes.extend_from_slice(&data[(k as usize) << 16..((k as usize) + 1) << 16]);
            }
            bytes.extend(request(Command::Flush, 0, 99, 0, 0));
            net.send_all(h, &bytes);
        }
        for &(h, _) in &clients {
            let mut handles: Vec<u64> = (0..17)
                .map(|_| reply(&mut net, h))
                .map(|r| {
                    assert_eq!(r.error, 0);
                    r.handle
                })
                .collect();
            handles.sort();
            assert_eq!(handles.last(), Some(&99));
        }
        for c in 0..3usize {
            let want = pattern(1 << 20, 40 + c as u32);
            assert!(
                net.disks.disks[0].data[c << 20..(c + 1) << 20] == want[..],
                "client {c}"
            );
        }
        // Read back through another connection (CAN_MULTI_CONN).
        let (h, _) = clients[2];
        net.send_all(h, &request(Command::Read, 0, 7, 0, 256 * 1024));
        let r = reply(&mut net, h);
        assert_eq!((r.error, r.handle), (0, 7));
        let got = net.recv_exact(h, 256 * 1024);
        assert!(got[..] == pattern(1 << 20, 40)[..256 * 1024]);
        // Disconnect each: the server closes, the sockets re-arm.
        for &(h, _) in &clients {
            net.send_all(h, &request(Command::Disconnect, 0, 0, 0, 0));
            net.drain_to_fin(h);
            net.tcp(h).close();
        }
        net.run_until("nbd re-arm", 50_000, |n| {
            n.services.nbd().unwrap().pool().busy() == 0
        });
        let opened = net
            .nbd_events
            .iter()
            .filter(|e| matches!(e.event, NbdConnEvent::Opened { .. }))
            .count();
        let closed = net
            .nbd_events
            .iter()
            .filter(|e| matches!(e.event, NbdConnEvent::Closed(s) if !s.reset))
            .count();
        assert_eq!((opened, closed), (3, 3), "three clean closes");
        assert!(
            net.nbd_events.iter().all(|e| !e.is_error()),
            "{:?}",
            net.nbd_events
        );
    }

    #[test]
    fn nbd_bad_clients_get_errors_and_the_service_goes_on() {
        let mut net = Net::new(&ServicesConfig::default());
        // Unknown client flags: dropped.
        let h = net.connect(PORT, 4096);
        net.recv_exact(h, GreetingRepr::LEN);
        net.send_all(h, &0xffff_ffffu32.to_be_bytes());
        net.run_until("reset", 5000, |n| {
            !n.tcp(h).is_open() || !n.tcp(h).may_recv()
        });
        // Garbage instead of options: dropped.
        let g = net.connect(PORT, 4096);
        net.recv_exact(g, GreetingRepr::LEN);
        net.send_all(g, b"\0\0\0\x01GET / HTTP/1.0\r\n\r\n");
        net.run_until("reset", 5000, |n| {
            !n.tcp(g).is_open() || !n.tcp(g).may_recv()
        });
        // A read-only export refuses writes; a bad request magic ends only that connection.
        let (ro, e) = open(&mut net, "ro");
        assert_ne!(e.flags & 2, 0, "READ_ONLY flag");
        let (rw, _) = open(&mut net, "xvda");
        let mut w = request(Command::Write, 0, 5, 0, 4096);
        w.extend_from_slice(&[1u8; 4096]);
        net.send_all(ro, &w);
        assert_eq!(reply(&mut net, ro).error, errno::EPERM);
        net.send_all(ro, &request(Command::Read, 0, 6, 1 << 20, 512));
        assert_eq!(reply(&mut net, ro).error, errno::EINVAL);
        let mut bad = request(Command::Read, 0, 7, 0, 512);
        bad[0] ^= 0xff;
        net.send_all(ro, &bad);
        net.run_until("reset", 5000, |n| {
            !n.tcp(ro).is_open() || !n.tcp(ro).may_recv()
        });
        net.send_all(rw, &request(Command::Read, 0, 8, 0, 512));
        assert_eq!(reply(&mut net, rw).handle, 8);
        net.recv_exact(rw, 512);
        let errors: Vec<String> = net
            .nbd_events
            .iter()
            .filter(|e| e.is_error())
            .map(|e| e.to_string())
            .collect();
        assert!(
            matches!(
                net.nbd_events.iter().find(|e| e.is_error()).unwrap().event,
                NbdConnEvent::Client(ClientError::UnknownClientFlags(0xffff_ffff))
            ),
            "{errors:?}"
        );
        let joined = errors.join("\n");
        for want in [
            "unknown client flags 0xffffffff",
            "option without IHAVEOPT",
            "write at 0 length 4096 refused with EPERM",
            "refused with EINVAL",
            "request with bad magic",
            "from 192.0.2.2:",
        ] {
            assert!(joined.contains(want), "missing {want:?} in\n{joined}");
        }
        assert!(net.disks.disks[1].data.iter().all(|&b| b == 0));
    }

    /// A write, answered: the connection is in use and then idle, the client
    /// waiting for nothing.
    fn one_write(net: &mut Net, h: SocketHandle, handle: u64) {
        let mut b = request(Command::Write, 0, handle, handle << 12, 4096);
        b.extend_from_slice(&pattern(4096, handle as u32));
        net.send_all(h, &b);
        let r = reply(net, h);
        assert_eq!((r.handle, r.error), (handle, 0));
    }

    /// The NBD stall after a suspend (docs/BLK.md): a save longer than the
    /// NBD socket timeout (60 s), with the guest's clock jumping by the pause
    /// (as the kernel's did), times the connection out at the first poll after
    /// the restore, while the link is still down. The RST must still reach the
    /// client once the link is back: a client that waits for a reply and has
    /// nothing of its own to retransmit (dom0's nbdcopy) would otherwise wait
    /// forever. (Before the pool waited for the RST, the socket listened again
    /// at once and the RST was never sent.)
    #[test]
    fn nbd_connection_timed_out_while_the_link_is_down_is_reset_once_it_is_back() {
        let mut net = Net::new(&ServicesConfig::default());
        let (h, _) = open(&mut net, "xvda");
        one_write(&mut net, h, 1);
        net.save_restore(Duration::from_secs(70), false);
        assert_eq!(
            net.services.nbd().unwrap().connections(),
            (0, 0),
            "the guest dropped the connection (timeout)"
        );
        net.run_until("the client learns of the reset", 5_000, |n| {
            n.tcp(h).state() == tcp::State::Closed
        });
        // And a new connection is served.
        let (h2, _) = open(&mut net, "xvda");
        one_write(&mut net, h2, 2);
    }

    /// The same save with the guest's clock standing still while suspended
    /// (the kernel's clock since the fix, `timer_queue::clock`): the
    /// connection survives and serves the next request.
    #[test]
    fn nbd_connection_survives_a_long_save_when_the_guest_clock_stands_still() {
        let mut net = Net::new(&ServicesConfig::default());
        let (h, _) = open(&mut net, "xvda");
        one_write(&mut net, h, 1);
        net.save_restore(Duration::from_secs(70), true);
        assert_eq!(net.services.nbd().unwrap().connections(), (1, 0));
        one_write(&mut net, h, 2);
        net.send_all(h, &request(Command::Read, 0, 3, 2 << 12, 4096));
        assert_eq!(reply(&mut net, h).error, 0);
        assert_eq!(net.recv_exact(h, 4096), pattern(4096, 2));
        assert_eq!(net.tcp(h).state(), tcp::State::Established);
    }

    #[test]
    fn nbd_backpressure_and_reset_with_disk_ops_in_flight() {
        let mut net = Net::new(&ServicesConfig::default());
        let (h, _) = open(&mut net, "xvda");
        net.disks.hold = true;
        // 12 maximal writes (3 MiB) while the disk completes nothing.
        let mut bytes = Vec::new();
        for k in 0..12u64 {
            bytes.extend(request(Command::Write, 0, k, k << 18, 1 << 18));
            bytes.extend_from_slice(&pattern(1 << 18, k as u32));
        }
        let mut sent = 0;
        for _ in 0..20_000 {
            sent += net.tcp(h).send_slice(&bytes[sent..]).unwrap();
            net.step();
        }
        let svc = net.services.nbd().unwrap();
        let budget = svc.config().limits.budget;
        assert!(svc.reserved() <= budget, "{} > {budget}", svc.reserved());
        assert_eq!(net.disks.held.len(), 2, "only two writes admitted");
        assert!(
            sent < bytes.len(),
            "the client was stopped by the TCP window"
        );
        // The client resets with writes at the disk: the connection waits as an orphan.
        net.tcp(h).abort();
        net.run_until("orphaned", 5000, |n| {
            n.services.nbd().unwrap().connections() == (0, 1)
        });
        net.disks.release(&[1, 0]);
        net.run_until("orphan done", 5000, |n| {
            n.services.nbd().unwrap().connections() == (0, 0)
        });
        assert_eq!(net.services.nbd().unwrap().reserved(), 0);
        assert_eq!(net.services.nbd().unwrap().stats().stray_completions, 0);
        // Its close event says it was reset, not closed.
        let last = net.nbd_events.last().unwrap();
        assert!(matches!(last.event, NbdConnEvent::Closed(s) if s.reset));
        assert!(
            last.to_string()
                .contains(": reset (by the client, or timed out) after"),
            "{last}"
        );
        // A new client is served.
        net.disks.hold = false;
        let (h2, _) = open(&mut net, "xvda");
        net.send_all(h2, &request(Command::Read, 0, 1, 0, 4096));
        assert_eq!(reply(&mut net, h2).error, 0);
        assert!(net.recv_exact(h2, 4096) == pattern(1 << 18, 0)[..4096]);
    }
}
