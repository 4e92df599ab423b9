//! Scripted-client tests of the sans-IO iperf3 server.

use super::*;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use serde_json::Value;

const COOKIE_A: &[u8; 37] = b"abcdefghijklmnopqrstuvwxyz0123456789\0";
const COOKIE_B: &[u8; 37] = b"zyxwvutsrqponmlkjihgfedcba9876543210\0";
const S: u64 = 1_000_000;

fn frame(json: &str) -> Vec<u8> {
    let mut v = (json.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(json.as_bytes());
    v
}

fn params(extra: &str) -> Vec<u8> {
    let base = r#"{"tcp":true,"omit":0,"time":10,"num":0,"blockcount":0"#;
    frame(&alloc::format!(
        r#"{base}{extra},"len":131072,"pacing_timer":1000,"client_version":"3.12"}}"#
    ))
}

fn client_results(streams: &[(u32, u64)]) -> Vec<u8> {
    let mut s = String::from(
        r#"{"cpu_util_total":1.5,"cpu_util_user":0.5,"cpu_util_system":1,"sender_has_retransmits":1,"congestion_used":"cubic","streams":["#,
    );
    for (i, (id, bytes)) in streams.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&alloc::format!(
            r#"{{"id":{id},"bytes":{bytes},"retransmits":0,"jitter":0,"errors":0,"packets":0,"start_time":0,"end_time":10.000046}}"#
        ));
    }
    s.push_str("]}");
    frame(&s)
}

struct H {
    s: Server,
    now: u64,
}

impl H {
    fn new() -> Self {
        H {
            s: Server::new(ServerConfig::default()),
            now: 1_000,
        }
    }

    fn with(cfg: ServerConfig) -> Self {
        H {
            s: Server::new(cfg),
            now: 1_000,
        }
    }

    fn accept(&mut self, id: usize) {
        self.s.accept(ConnId(id), self.now).unwrap();
    }

    fn send(&mut self, id: usize, bytes: &[u8]) {
        self.s.receive(ConnId(id), bytes, self.now);
    }

    /// Everything the server has for `id` right now (bounded, for payload streams).
    fn out(&mut self, id: usize, max: usize) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = [0u8; 1000];
        while all.len() < max {
            let n = self.s.poll_transmit(ConnId(id), &mut buf, self.now);
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        all
    }

    fn ctrl(&mut self, id: usize) -> Vec<u8> {
        self.out(id, usize::MAX)
    }

    fn events(&mut self) -> Vec<Event> {
        core::iter::from_fn(|| self.s.next_event()).collect()
    }

    /// Control connection 0 through to CREATE_STREAMS.
    fn handshake(&mut self, extra: &str) {
        self.accept(0);
        self.send(0, COOKIE_A);
        assert_eq!(self.ctrl(0), [State::ParamExchange.byte()]);
        self.send(0, &params(extra));
        assert_eq!(self.ctrl(0), [State::CreateStreams.byte()]);
        assert_eq!(self.s.phase(), Some(Phase::CreateStreams));
    }

    /// Connects `n` streams as ids 1..=n.
    fn streams(&mut self, n: usize) {
        for i in 1..=n {
            self.accept(i);
            self.send(i, COOKIE_A);
            let expect: &[u8] = if i == n {
                &[State::TestStart as u8, State::TestRunning as u8]
            } else {
                &[]
            };
            assert_eq!(self.ctrl(0), expect, "after stream {i}");
        }
        assert_eq!(self.s.phase(), Some(Phase::Running));
    }

    /// TEST_END → EXCHANGE_RESULTS; client results → server results + DISPLAY_RESULTS.
    /// Returns the server's results JSON.
    fn finish(&mut self, client: &[(u32, u64)]) -> Vec<u8> {
        self.send(0, &[State::TestEnd as u8]);
        assert_eq!(self.ctrl(0), [State::ExchangeResults as u8]);
        self.send(0, &client_results(client));
        let out = self.ctrl(0);
        assert_eq!(out.last(), Some(&(State::DisplayResults as u8)));
        let len = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
        assert_eq!(out.len(), 4 + len + 1);
        let body = out[4..4 + len].to_vec();
        assert_eq!(self.s.phase(), Some(Phase::DisplayResults));
        self.send(0, &[State::IperfDone as u8]);
        assert_eq!(self.s.take_close(ConnId(0)), Some(CloseKind::Close));
        assert_eq!(self.s.phase(), None);
        body
    }
}

/// (id, bytes, end_time) of each stream in a results JSON, plus `sender_has_retransmits`.
fn read_results(body: &[u8]) -> (i64, Vec<(i64, i64, f64)>) {
    let v: Value = serde_json::from_slice(body).unwrap();
    for k in ["cpu_util_total", "cpu_util_user", "cpu_util_system"] {
        assert!(v[k].is_number(), "{k}");
    }
    let mut out = vec![];
    for s in v["streams"].as_array().unwrap() {
        let o = s.as_object().unwrap();
        // serde_json's map sorts its keys.
        assert_eq!(
            o.keys().collect::<Vec<_>>(),
            [
                "bytes",
                "end_time",
                "errors",
                "id",
                "jitter",
                "packets",
                "retransmits",
                "start_time"
            ]
        );
        assert!(o.values().all(Value::is_number));
        assert_eq!(o["retransmits"], -1);
        out.push((
            o["id"].as_i64().unwrap(),
            o["bytes"].as_i64().unwrap(),
            o["end_time"].as_f64().unwrap(),
        ));
    }
    (v["sender_has_retransmits"].as_i64().unwrap(), out)
}

#[test]
fn normal_test_one_stream() {
    let mut h = H::new();
    h.handshake(r#","parallel":1"#);
    h.streams(1);
    assert!(
        matches!(h.events()[..], [Event::TestStarted(p)] if p.parallel == 1 && !p.reverse && p.client_version() == "3.12")
    );
    // A receiving stream has nothing to send.
    assert!(!h.s.wants_transmit(ConnId(1)));
    h.now += S / 2;
    h.send(1, &[0x55; 1000]);
    h.now += S / 2;
    h.send(1, &[0x55; 234]);
    h.now += 9 * S;
    let body = {
        h.send(0, &[State::TestEnd as u8]);
        assert_eq!(h.ctrl(0), [State::ExchangeResults as u8]);
        // Streams are closed at TEST_END, gracefully.
        assert_eq!(h.s.take_close(ConnId(1)), Some(CloseKind::Close));
        assert!(!h.s.is_open(ConnId(1)));
        h.send(0, &client_results(&[(1, 1234)]));
        let out = h.ctrl(0);
        let len = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
        assert_eq!(out[4 + len..], [State::DisplayResults as u8]);
        out[4..4 + len].to_vec()
    };
    let (shr, streams) = read_results(&body);
    assert_eq!(shr, -1, "server only received");
    assert_eq!(streams.len(), 1);
    assert_eq!((streams[0].0, streams[0].1), (1, 1234));
    assert!(
        (streams[0].2 - 10.0).abs() < 1e-9,
        "end_time {}",
        streams[0].2
    );
    // IPERF_DONE ends the test; the control connection closes gracefully.
    assert_eq!(h.s.take_close(ConnId(0)), None);
    h.send(0, &[State::IperfDone as u8]);
    assert_eq!(h.s.take_close(ConnId(0)), Some(CloseKind::Close));
    let ev = h.events();
    let [Event::TestFinished(sum)] = ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(sum.bytes_received, 1234);
    assert_eq!(sum.bytes_sent, 0);
    assert_eq!(sum.duration_us, 10 * S);
    assert_eq!(sum.client.bytes, 1234);
    assert_eq!(sum.client.streams, 1);
    assert_eq!(h.s.stats().tests_completed, 1);
    assert_eq!(h.s.phase(), None);
}

#[test]
fn reverse_test_parallel_streams_send_payload() {
    let mut h = H::new();
    h.handshake(r#","parallel":2,"reverse":true"#);
    h.streams(2);
    assert!(h.s.wants_transmit(ConnId(1)));
    let a = h.out(1, 50_000);
    let b = h.out(2, 20_000);
    assert_eq!(a.len(), 50_000);
    assert_eq!(b.len(), 20_000);
    // Payload is not constant filler.
    assert!(a.iter().any(|&x| x != a[0]));
    // Bytes received on a sending stream are ignored.
    h.send(1, &[1, 2, 3]);
    h.now += 10 * S;
    let body = h.finish(&[(1, 50_000), (3, 20_000)]);
    let (shr, streams) = read_results(&body);
    assert_eq!(shr, 0, "server sent");
    assert_eq!(
        streams.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        [(1, 50_000), (3, 20_000)]
    );
    // After TEST_END nothing more is sent on the streams.
    assert_eq!(h.s.poll_transmit(ConnId(1), &mut [0; 10], h.now), 0);
    let ev = h.events();
    assert!(
        matches!(ev[..], [Event::TestStarted(_), Event::TestFinished(s)] if s.bytes_sent == 70_000 && s.bytes_received == 0)
    );
}

#[test]
fn bidirectional_streams_split_and_ids() {
    let mut h = H::new();
    h.handshake(r#","parallel":2,"bidirectional":true"#);
    h.streams(4);
    // First `parallel` streams receive, the rest send.
    assert!(!h.s.wants_transmit(ConnId(1)));
    assert!(!h.s.wants_transmit(ConnId(2)));
    assert!(h.s.wants_transmit(ConnId(3)));
    assert!(h.s.wants_transmit(ConnId(4)));
    h.send(1, &[0; 100]);
    h.send(2, &[0; 200]);
    assert_eq!(h.out(3, 3000).len(), 3000);
    assert_eq!(h.out(4, 4000).len(), 4000);
    let body = h.finish(&[(1, 100), (3, 200), (4, 3000), (5, 4000)]);
    let (shr, streams) = read_results(&body);
    assert_eq!(shr, 0);
    assert_eq!(
        streams.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        [(1, 100), (3, 200), (4, 3000), (5, 4000)]
    );
}

#[test]
fn stream_ids_follow_iperf3() {
    assert_eq!((0..5).map(stream_id).collect::<Vec<_>>(), [1, 3, 4, 5, 6]);
}

#[test]
fn byte_at_a_time_delivery() {
    let mut h = H::new();
    h.accept(0);
    for b in COOKIE_A.iter() {
        h.send(0, &[*b]);
    }
    assert_eq!(h.ctrl(0), [State::ParamExchange as u8]);
    for b in params(r#","parallel":1"#) {
        h.send(0, &[b]);
    }
    assert_eq!(h.ctrl(0), [State::CreateStreams as u8]);
    h.accept(1);
    for b in COOKIE_A.iter() {
        h.send(1, &[*b]);
    }
    assert_eq!(h.ctrl(0), [1, 2]);
    for _ in 0..10 {
        h.send(1, &[7]);
    }
    h.send(0, &[State::TestEnd as u8]);
    assert_eq!(h.ctrl(0), [State::ExchangeResults as u8]);
    for b in client_results(&[(1, 10)]) {
        h.send(0, &[b]);
    }
    let out = h.ctrl(0);
    let (_, streams) = read_results(&out[4..out.len() - 1]);
    assert_eq!(streams[0].1, 10);
}

#[test]
fn cookie_and_data_in_one_chunk() {
    // Cookie immediately followed by data on a stream (one segment).
    let mut h = H::new();
    h.handshake(r#","parallel":1"#);
    h.accept(1);
    let mut seg = COOKIE_A.to_vec();
    seg.extend_from_slice(&[9; 500]);
    h.send(1, &seg);
    assert_eq!(h.ctrl(0), [1, 2]);
    let body = h.finish(&[(1, 500)]);
    assert_eq!(read_results(&body).1[0].1, 500);
}

#[test]
fn second_client_is_denied_while_busy() {
    let mut h = H::new();
    h.handshake(r#","parallel":1"#);
    h.streams(1);
    h.events();
    // Running: a new connection is refused at once, without reading a cookie.
    h.accept(5);
    assert_eq!(h.ctrl(5), [0xff]);
    assert_eq!(h.s.take_close(ConnId(5)), Some(CloseKind::Close));
    assert_eq!(h.events(), [Event::AccessDenied]);
    assert_eq!(h.s.stats().denied, 1);
    // The running test is unaffected.
    h.send(1, &[0; 10]);
    let body = h.finish(&[(1, 10)]);
    assert_eq!(read_results(&body).1[0].1, 10);
}

#[test]
fn wrong_cookie_and_extra_streams_are_denied() {
    let mut h = H::new();
    h.handshake(r#","parallel":1"#);
    // Another client's control connection during stream creation: its cookie
    // does not match, so it is denied after the cookie.
    h.accept(3);
    assert_eq!(h.ctrl(3), [0u8; 0]);
    h.send(3, COOKIE_B);
    assert_eq!(h.ctrl(3), [0xff]);
    assert_eq!(h.s.take_close(ConnId(3)), Some(CloseKind::Close));
    assert_eq!(h.s.phase(), Some(Phase::CreateStreams));
    h.streams(1);
    // All streams connected: a further one (even with the right cookie) is refused.
    h.accept(4);
    assert_eq!(h.ctrl(4), [0xff]);
}

#[test]
fn udp_is_refused_with_server_error() {
    let mut h = H::new();
    h.accept(0);
    h.send(0, COOKIE_A);
    h.ctrl(0);
    h.send(
        0,
        &frame(r#"{"udp":true,"omit":0,"time":10,"parallel":1,"len":1448,"bandwidth":1048576}"#),
    );
    assert_eq!(
        h.ctrl(0),
        [0xfe, 0, 0, 0, 13, 0, 0, 0, 0],
        "SERVER_ERROR IEUNIMP errno 0"
    );
    assert_eq!(h.s.take_close(ConnId(0)), Some(CloseKind::Close));
    assert_eq!(
        h.events(),
        [Event::TestAborted(AbortReason::Params(
            ParamError::UnsupportedProtocol(Protocol::Udp)
        ))]
    );
    // The server is free for the next test.
    h.handshake(r#","parallel":1"#);
}

#[test]
fn parameter_bounds() {
    let cases: &[(&str, u8)] = &[
        (r#","parallel":9"#, 6), // above this server's max_parallel (8)
        (r#","parallel":0"#, 6),
        (r#","parallel":-1"#, 6),
        (r#","parallel":"2""#, 114), // wrong type
        (r#","reverse":true,"bidirectional":true"#, 25),
        (r#","len":2000000"#, 7),
    ];
    for (extra, errno) in cases {
        let mut h = H::new();
        h.accept(0);
        h.send(0, COOKIE_A);
        h.ctrl(0);
        h.send(0, &params(extra));
        assert_eq!(h.ctrl(0), [0xfe, 0, 0, 0, *errno, 0, 0, 0, 0], "{extra}");
        assert_eq!(h.s.phase(), None);
    }
    // time/omit bounds (params() fixes time=10/omit=0, so build these by hand).
    for (json, errno) in [
        (r#"{"tcp":true,"time":86401,"parallel":1}"#, 5u8),
        (r#"{"tcp":true,"time":-5,"parallel":1}"#, 5),
        (r#"{"tcp":true,"omit":-1,"parallel":1}"#, 12),
        (r#"{"tcp":true,"num":-1,"parallel":1}"#, 114),
        (r#"[1,2]"#, 114),
        (r#"{"tcp":true,"#, 114),
    ] {
        let mut h = H::new();
        h.accept(0);
        h.send(0, COOKIE_A);
        h.ctrl(0);
        h.send(0, &frame(json));
        assert_eq!(h.ctrl(0), [0xfe, 0, 0, 0, errno, 0, 0, 0, 0], "{json}");
    }
    // Bidirectional needs twice the connections: 2 × 5 streams + control > 9.
    let mut h = H::new();
    h.accept(0);
    h.send(0, COOKIE_A);
    h.ctrl(0);
    h.send(0, &params(r#","parallel":5,"bidirectional":true"#));
    assert_eq!(h.ctrl(0), [0xfe, 0, 0, 0, 6, 0, 0, 0, 0]);
}

#[test]
fn params_parse_like_cjson() {
    let p = parse_params(
        br#"{"TCP":true,"time":3,"Time":99,"parallel":2.9,"reverse":true,"x":{"y":[1,{}]},"client_version":"3.12-\u00e9\n-very-long-version-string"}"#,
        128,
    )
    .unwrap();
    assert_eq!(p.protocol, Protocol::Tcp);
    assert_eq!(p.time_s, 3, "first occurrence wins");
    assert_eq!(p.parallel, 2, "fractions truncate like valueint");
    assert!(p.reverse);
    assert_eq!(p.client_version(), "3.12-??-very-lon");
    assert!(!parse_params(br#"{"reverse":false}"#, 128).unwrap().reverse);
    assert!(!parse_params(br#"{"reverse":null}"#, 128).unwrap().reverse);
    // Flags are booleans, as iperf3 prints them; get_server_output is a number.
    assert_eq!(
        parse_params(br#"{"reverse":1}"#, 128),
        Err(ParamError::Type("reverse"))
    );
    assert!(
        parse_params(br#"{"get_server_output":1}"#, 128)
            .unwrap()
            .get_server_output
    );
    assert!(
        !parse_params(br#"{"get_server_output":0}"#, 128)
            .unwrap()
            .get_server_output
    );
    assert_eq!(
        parse_params(br#"{"tcp":true,"sctp":true}"#, 128),
        Err(ParamError::UnsupportedProtocol(Protocol::Sctp))
    );
}

#[test]
fn oversized_frame_is_refused_before_buffering() {
    let mut h = H::new();
    h.accept(0);
    h.send(0, COOKIE_A);
    h.ctrl(0);
    h.send(0, &(MAX_PARAMS_JSON + 1).to_be_bytes());
    assert_eq!(h.ctrl(0), [0xfe, 0, 0, 0, 114, 0, 0, 0, 0]);
    assert_eq!(h.s.take_close(ConnId(0)), Some(CloseKind::Close));
    assert!(matches!(
        h.events()[..],
        [Event::TestAborted(AbortReason::Protocol(ProtocolError::FrameTooLong(n)))] if n == MAX_PARAMS_JSON + 1
    ));
    // Later bytes on the refused connection are ignored.
    h.send(0, &[0; 100]);
    assert_eq!(h.ctrl(0), [0u8; 0]);
}

#[test]
fn bad_client_results_abort() {
    let mut h = H::new();
    h.handshake(r#","parallel":1"#);
    h.streams(1);
    h.send(0, &[State::TestEnd as u8]);
    h.ctrl(0);
    h.send(0, &frame(r#"{"streams":[]}"#)); // cpu_util_* missing
    assert_eq!(h.ctrl(0), [0xfe, 0, 0, 0, 117, 0, 0, 0, 0]);
    assert_eq!(h.s.phase(), None);
}

#[test]
fn unknown_and_unexpected_messages_abort() {
    for (msg, errno) in [(99u8, 110u8), (State::ExchangeResults as u8, 110)] {
        let mut h = H::new();
        h.handshake(r#","parallel":1"#);
        h.streams(1);
        h.send(0, &[msg]);
        assert_eq!(h.ctrl(0), [0xfe, 0, 0, 0, errno, 0, 0, 0, 0]);
        assert_eq!(h.s.take_close(ConnId(1)), Some(CloseKind::Close));
        assert_eq!(h.s.phase(), None);
    }
    // TEST_START from the client is ignored, as iperf3 does.
    let mut h = H::new();
    h.handshake(r#","parallel":1"#);
    h.streams(1);
    h.send(0, &[State::TestStart as u8]);
    assert_eq!(h.s.phase(), Some(Phase::Running));
}

#[test]
fn client_terminate_and_vanishing_client() {
    // CLIENT_TERMINATE (Ctrl-C on the client).
    let mut h = H::new();
    h.handshake(r#","parallel":2,"reverse":true"#);
    h.streams(2);
    h.events();
    h.send(0, &[State::ClientTerminate as u8]);
    assert_eq!(
        h.events(),
        [Event::TestAborted(AbortReason::ClientTerminated(
            Phase::Running
        ))]
    );
    for id in 0..3 {
        assert_eq!(h.s.take_close(ConnId(id)), Some(CloseKind::Close));
    }
    // The control connection vanishing mid-test (reset / FIN).
    h.handshake(r#","parallel":1"#);
    h.streams(1);
    h.events();
    h.s.closed(ConnId(0), h.now);
    assert_eq!(
        h.events(),
        [Event::TestAborted(AbortReason::ControlClosed(
            Phase::Running
        ))]
    );
    assert_eq!(h.s.take_close(ConnId(1)), Some(CloseKind::Close));
    assert_eq!(h.s.stats().tests_aborted, 2);
    // And the server serves the next client.
    h.handshake(r#","parallel":1"#);
    h.streams(1);
    h.finish(&[(1, 0)]);
    assert_eq!(h.s.stats().tests_completed, 1);
}

#[test]
fn close_after_results_counts_as_done() {
    let mut h = H::new();
    h.handshake(r#","parallel":1"#);
    h.streams(1);
    h.send(0, &[State::TestEnd as u8]);
    h.ctrl(0);
    h.send(0, &client_results(&[(1, 0)]));
    h.ctrl(0);
    h.s.closed(ConnId(0), h.now);
    assert!(matches!(
        h.events()[..],
        [Event::TestStarted(_), Event::TestFinished(_)]
    ));
}

#[test]
fn data_stream_closing_early_keeps_its_bytes() {
    let mut h = H::new();
    h.handshake(r#","parallel":2"#);
    h.streams(2);
    h.send(1, &[0; 100]);
    h.s.closed(ConnId(1), h.now);
    h.send(2, &[0; 50]);
    let body = h.finish(&[(1, 100), (3, 50)]);
    assert_eq!(
        read_results(&body)
            .1
            .iter()
            .map(|s| s.1)
            .collect::<Vec<_>>(),
        [100, 50]
    );
}

#[test]
fn omit_period_is_not_counted() {
    // params() fixes omit=0, so build the parameters by hand.
    let mut h2 = H::new();
    h2.accept(0);
    h2.send(0, COOKIE_A);
    h2.ctrl(0);
    h2.send(0, &frame(r#"{"tcp":true,"omit":2,"time":3,"parallel":1}"#));
    assert_eq!(h2.ctrl(0), [State::CreateStreams as u8]);
    h2.streams(1);
    assert_eq!(h2.s.poll_at(), Some(h2.now + 2 * S));
    h2.send(1, &[0; 1000]); // omitted
    h2.now += 2 * S;
    h2.s.poll(h2.now);
    h2.send(1, &[0; 300]);
    h2.now += 3 * S;
    let body = h2.finish(&[(1, 300)]);
    let (_, streams) = read_results(&body);
    assert_eq!(streams[0].1, 300);
    assert!((streams[0].2 - 3.0).abs() < 1e-9);
}

#[test]
fn timeouts() {
    let cfg = ServerConfig::default();
    // A connection that never sends its cookie.
    let mut h = H::new();
    h.accept(2);
    assert_eq!(h.s.poll_at(), Some(h.now + cfg.handshake_timeout_us + 1));
    h.now += cfg.handshake_timeout_us + 1;
    h.s.poll(h.now);
    assert_eq!(h.s.take_close(ConnId(2)), Some(CloseKind::Abort));

    // A client that never sends its parameters.
    let mut h = H::new();
    h.accept(0);
    h.send(0, COOKIE_A);
    h.ctrl(0);
    h.now += cfg.handshake_timeout_us + 1;
    h.s.poll(h.now);
    assert_eq!(h.s.take_close(ConnId(0)), Some(CloseKind::Abort));
    assert_eq!(
        h.events(),
        [Event::TestAborted(AbortReason::Timeout(
            Phase::ParamExchange
        ))]
    );

    // A running test where nothing moves (client vanished without a reset);
    // a stall limit below the 10 s test's deadline (time + grace), so the
    // stall is what ends it.
    let stall = ServerConfig {
        stall_timeout_us: 20_000_000,
        ..cfg
    };
    let mut h = H::with(stall);
    h.handshake(r#","parallel":1"#);
    h.streams(1);
    h.events();
    h.now += stall.stall_timeout_us / 2;
    h.send(1, &[0; 10]);
    h.now += stall.stall_timeout_us;
    h.s.poll(h.now);
    assert_eq!(
        h.s.phase(),
        Some(Phase::Running),
        "progress resets the stall timer"
    );
    h.now += 1;
    h.s.poll(h.now);
    assert_eq!(
        h.events(),
        [Event::TestAborted(AbortReason::Timeout(Phase::Running))]
    );
    assert_eq!(h.s.take_close(ConnId(0)), Some(CloseKind::Abort));
    assert_eq!(h.s.take_close(ConnId(1)), Some(CloseKind::Abort));

    // A reverse test whose client keeps reading but never ends it.
    let mut h = H::new();
    h.handshake(r#","parallel":1,"reverse":true"#);
    h.streams(1);
    h.events();
    let deadline = h.now + (10 + u64::from(cfg.grace_s)) * S; // time + omit (0) + grace
    while h.now <= deadline {
        h.now += S;
        h.out(1, 100);
        h.s.poll(h.now);
    }
    assert_eq!(h.events(), [Event::TestAborted(AbortReason::Overran)]);

    // Results delivered but IPERF_DONE never arrives: the test still counts.
    let mut h = H::new();
    h.handshake(r#","parallel":1"#);
    h.streams(1);
    h.send(0, &[State::TestEnd as u8]);
    h.send(0, &client_results(&[(1, 0)]));
    h.ctrl(0);
    h.now += cfg.handshake_timeout_us + 1;
    h.s.poll(h.now);
    assert_eq!(h.s.stats().tests_completed, 1);
    assert_eq!(h.s.take_close(ConnId(0)), Some(CloseKind::Close));
}

#[test]
fn accept_checks_ids() {
    let mut h = H::with(ServerConfig {
        max_conns: 2,
        ..ServerConfig::default()
    });
    assert_eq!(h.s.accept(ConnId(2), 0), Err(AcceptError::IdOutOfRange));
    h.accept(1);
    assert_eq!(h.s.accept(ConnId(1), 0), Err(AcceptError::IdInUse));
    // Unknown ids are ignored everywhere else.
    h.s.receive(ConnId(0), b"x", 0);
    h.s.receive(ConnId(77), b"x", 0);
    assert_eq!(h.s.poll_transmit(ConnId(77), &mut [0; 4], 0), 0);
    assert_eq!(h.s.take_close(ConnId(77)), None);
    h.s.closed(ConnId(77), 0);
    // With 2 connections a test can have one stream only.
    h.s.closed(ConnId(1), 0);
    h.accept(0);
    h.send(0, COOKIE_A);
    h.ctrl(0);
    h.send(0, &params(r#","parallel":2"#));
    assert_eq!(h.ctrl(0), [0xfe, 0, 0, 0, 6, 0, 0, 0, 0]);
}

#[test]
fn server_output_text_on_request() {
    let mut h = H::new();
    h.handshake(r#","parallel":1,"get_server_output":1"#);
    h.streams(1);
    h.send(1, &[0; 42]);
    let body = h.finish(&[(1, 42)]);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let text = v["server_output_text"].as_str().unwrap();
    assert!(text.contains("received 42 bytes"), "{text}");
}

#[test]
fn cpu_util_is_reported_as_set() {
    let mut h = H::new();
    h.s.set_cpu_util(CpuUtil {
        total: 12.5,
        user: 2.5,
        system: 10.0,
    });
    h.handshake(r#","parallel":1"#);
    h.streams(1);
    let body = h.finish(&[(1, 0)]);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["cpu_util_total"].as_f64(), Some(12.5));
}

/// Deterministic random operations: no panic, invariants hold, the server
/// still completes a clean test afterwards.
#[test]
fn random_operations_never_panic() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut h = H::new();
    let script = [
        COOKIE_A.to_vec(),
        params(r#","parallel":2"#),
        vec![4],
        client_results(&[(1, 5)]),
        vec![16],
        vec![12],
        (u32::MAX).to_be_bytes().to_vec(),
    ];
    for _ in 0..20_000 {
        let id = (rnd() % 11) as usize;
        match rnd() % 8 {
            0 => {
                let _ = h.s.accept(ConnId(id), h.now);
            }
            1 | 2 => {
                let s = &script[(rnd() % script.len() as u64) as usize];
                let cut = (rnd() as usize) % (s.len() + 1);
                h.s.receive(ConnId(id), &s[..cut], h.now);
            }
            3 => {
                let junk: Vec<u8> = (0..rnd() % 64).map(|_| rnd() as u8).collect();
                h.s.receive(ConnId(id), &junk, h.now);
            }
            4 => {
                let mut buf = [0u8; 333];
                let n = h.s.poll_transmit(ConnId(id), &mut buf, h.now);
                assert!(n <= buf.len());
            }
            5 => {
                let _ = h.s.take_close(ConnId(id));
            }
            6 => h.s.closed(ConnId(id), h.now),
            _ => {
                h.now += rnd() % (5 * S);
                h.s.poll(h.now);
            }
        }
        let _ = h.s.next_event();
    }
    // Clean up and run a proper test.
    for id in 0..ServerConfig::default().max_conns {
        h.s.closed(ConnId(id), h.now);
    }
    h.now += 100 * S;
    h.s.poll(h.now);
    assert_eq!(h.s.phase(), None);
    h.events();
    h.handshake(r#","parallel":1"#);
    h.streams(1);
    h.finish(&[(1, 0)]);
}

/// Arbitrary bytes (random, and mutations of valid messages) into both JSON
/// parsers: errors, never a panic; accepted parameters are within bounds.
#[test]
fn json_parsers_never_panic_on_arbitrary_bytes() {
    let mut x: u64 = 0x0123_4567_89ab_cdef;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let valid = [
        params(r#","parallel":2,"reverse":true,"get_server_output":1"#)[4..].to_vec(),
        client_results(&[(1, 5), (3, 7)])[4..].to_vec(),
    ];
    for i in 0..20_000 {
        let mut v = if i % 2 == 0 {
            valid[(rnd() % 2) as usize].clone()
        } else {
            (0..rnd() % 200).map(|_| rnd() as u8).collect()
        };
        for _ in 0..rnd() % 4 {
            if v.is_empty() {
                break;
            }
            let at = (rnd() as usize) % v.len();
            match rnd() % 3 {
                0 => v[at] = b"{}[]\",:\\-.e0n"[(rnd() % 13) as usize],
                1 => v.truncate(at),
                _ => v[at] = rnd() as u8,
            }
        }
        if let Ok(p) = parse_params(&v, MAX_STREAMS) {
            assert!((1..=MAX_STREAMS).contains(&p.parallel));
            assert!(!(p.reverse && p.bidirectional));
            assert!(p.client_version().len() <= proto::VERSION_MAX);
        }
        if let Ok(r) = parse_client_results(&v) {
            assert!(r.streams as usize <= v.len());
        }
    }
    let mut deep = b"{\"cpu_util_total\":".to_vec();
    deep.extend(core::iter::repeat_n(b'[', 60_000));
    assert!(parse_client_results(&deep).is_err());
    assert!(parse_params(&deep, MAX_STREAMS).is_err());
}

#[test]
fn client_results_fields() {
    let r = parse_client_results(&client_results(&[(1, 5), (3, u64::MAX)])[4..]).unwrap();
    assert_eq!(r.streams, 2);
    assert_eq!(r.bytes, u64::MAX, "saturates");
    // Streams of any content but objects are refused; missing members too.
    assert!(parse_client_results(br#"{"cpu_util_total":1,"cpu_util_user":0,"cpu_util_system":1,"sender_has_retransmits":0,"streams":[1]}"#).is_err());
    assert!(
        parse_client_results(
            br#"{"cpu_util_total":1,"cpu_util_user":0,"cpu_util_system":1,"streams":[]}"#
        )
        .is_err()
    );
    let r = parse_client_results(br#"{"cpu_util_total":1,"cpu_util_user":0,"cpu_util_system":1,"sender_has_retransmits":0,"streams":[{"bytes":-4},{"id":3}],"extra":{"a":[]}}"#).unwrap();
    assert_eq!((r.streams, r.bytes), (2, 0));
}
