//! The sans-IO iperf3 server: connections in, bytes and close requests out, time passed in.
//!
//! The driver (the smoltcp pump in [`crate::smol`], or the std adapter of the
//! host tests) owns the sockets and reports, per connection id:
//! [`Server::accept`] when a connection is established, [`Server::receive`]
//! with every received chunk, [`Server::closed`] when the peer closed or
//! reset it. It asks [`Server::poll_transmit`] for bytes to send (control
//! messages, or payload on the streams of a reverse test) and
//! [`Server::take_close`] whether to close it, and calls [`Server::poll`]
//! for the timers (no later than [`Server::poll_at`]).
//!
//! The server runs one test at a time, like iperf3's: a control connection
//! arriving during a test (outside stream creation) gets `ACCESS_DENIED`.
//! The protocol sequence is described in [`super::proto`].
//!
//! # No-panic promise
//!
//! No input sequence makes the server panic: connection ids are checked
//! against the table, frame lengths are bounded ([`MAX_PARAMS_JSON`],
//! [`MAX_RESULTS_JSON`]) before anything is buffered, the JSON reader is
//! bounded (see [`crate::json`]), counters saturate, and time going
//! backwards is treated as no time passing.

use super::proto::{
    COOKIE_SIZE, ClientResults, CpuUtil, IperfErrno, MAX_PARAMS_JSON, MAX_RESULTS_JSON, ParamError,
    State, StreamResult, TestParams, parse_client_results, parse_params, stream_id, write_results,
};
use crate::json::JsonError;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

/// A connection, named by the driver: an index below [`ServerConfig::max_conns`]
/// (the smoltcp pump uses its socket pool slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub usize);

/// How the driver should close a connection the server is done with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseKind {
    /// Send what is queued, then FIN (graceful close).
    Close,
    /// Reset it now.
    Abort,
}

/// Limits and timeouts of a [`Server`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Size of the connection table: ids are `0..max_conns`. One test needs
    /// one control connection plus its streams.
    pub max_conns: usize,
    /// Most streams per direction a test may ask for (`-P`); also limited by
    /// `max_conns - 1` (twice that for `--bidir`) and iperf3's own 128.
    pub max_parallel: u32,
    /// How long the server waits for the client in every phase but the
    /// running one (cookie, parameters, stream connections, results,
    /// `IPERF_DONE`), in microseconds.
    pub handshake_timeout_us: u64,
    /// How long a running test may go without any byte moving on any of its
    /// streams before it is aborted (a vanished client), in microseconds.
    pub stall_timeout_us: u64,
    /// Extra seconds past `time + omit` before a timed test is aborted
    /// (iperf3's server allows 40: `max_rtt * state_transitions`).
    pub grace_s: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_conns: 9,
            max_parallel: 8,
            handshake_timeout_us: 30_000_000,
            stall_timeout_us: 60_000_000,
            grace_s: 40,
        }
    }
}

/// Phase of the current test, named after the state the server last sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `PARAM_EXCHANGE` sent; reading the parameter JSON.
    ParamExchange,
    /// `CREATE_STREAMS` sent; waiting for the data connections.
    CreateStreams,
    /// `TEST_START`/`TEST_RUNNING` sent; data flows until `TEST_END`.
    Running,
    /// `EXCHANGE_RESULTS` sent; reading the client's results JSON.
    ExchangeResults,
    /// Results and `DISPLAY_RESULTS` sent; waiting for `IPERF_DONE`.
    DisplayResults,
}

/// A control-channel protocol violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// A state byte iperf3 does not define.
    UnknownMessage(u8),
    /// A defined state byte that a client does not send in this phase.
    UnexpectedMessage(State, Phase),
    /// A JSON frame longer than this server accepts.
    FrameTooLong(u32),
    /// The client's results are not what `get_results` expects.
    BadResults(JsonError),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::UnknownMessage(b) => write!(f, "unknown control message {b}"),
            ProtocolError::UnexpectedMessage(s, p) => write!(f, "unexpected {s:?} in {p:?}"),
            ProtocolError::FrameTooLong(n) => write!(f, "JSON frame of {n} bytes is too long"),
            ProtocolError::BadResults(e) => write!(f, "bad client results: {e}"),
        }
    }
}

/// Why a test ended without its results being delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    /// The control connection closed or reset before the results (the client vanished).
    ControlClosed(Phase),
    /// The client sent `CLIENT_TERMINATE` (interrupted) or `IPERF_DONE` early.
    ClientTerminated(Phase),
    /// The parameters were refused; `SERVER_ERROR` was sent.
    Params(ParamError),
    /// A protocol violation on the control connection.
    Protocol(ProtocolError),
    /// The client did not move on in time (handshake timeout or stalled data).
    Timeout(Phase),
    /// A timed test ran past `time + omit + grace`.
    Overran,
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbortReason::ControlClosed(p) => write!(f, "control connection closed in {p:?}"),
            AbortReason::ClientTerminated(p) => write!(f, "client terminated in {p:?}"),
            AbortReason::Params(e) => write!(f, "parameters refused: {e}"),
            AbortReason::Protocol(e) => write!(f, "protocol error: {e}"),
            AbortReason::Timeout(p) => write!(f, "client timed out in {p:?}"),
            AbortReason::Overran => f.write_str("test overran its duration"),
        }
    }
}

/// What a finished test moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestSummary {
    /// Data streams that connected.
    pub streams: u32,
    /// The server sent (`-R`).
    pub reverse: bool,
    /// Both directions (`--bidir`).
    pub bidirectional: bool,
    /// Bytes the server received (after the omit period).
    pub bytes_received: u64,
    /// Bytes the server sent (after the omit period).
    pub bytes_sent: u64,
    /// Measured time from the end of the omit period to `TEST_END`, microseconds.
    pub duration_us: u64,
    /// What the client's results say: stream entries and their byte sum.
    pub client: ClientResults,
}

/// Something for the driver to log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// All streams connected; the test runs.
    TestStarted(TestParams),
    /// Results were exchanged.
    TestFinished(TestSummary),
    /// The test ended early.
    TestAborted(AbortReason),
    /// A connection was refused with `ACCESS_DENIED` (busy, or a bad cookie).
    AccessDenied,
}

/// Why [`Server::accept`] refused a connection (the driver should reset it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// The id is not below [`ServerConfig::max_conns`].
    IdOutOfRange,
    /// The id is still in use (the driver lost track of a connection).
    IdInUse,
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AcceptError::IdOutOfRange => "connection id not below max_conns",
            AcceptError::IdInUse => "connection id still in use",
        })
    }
}

/// Counters over the server's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStats {
    /// Tests whose results were delivered.
    pub tests_completed: u64,
    /// Tests that ended early.
    pub tests_aborted: u64,
    /// Connections refused with `ACCESS_DENIED`.
    pub denied: u64,
    /// Payload bytes received over all tests (omit periods included).
    pub bytes_received: u64,
    /// Payload bytes sent over all tests (omit periods included).
    pub bytes_sent: u64,
    /// Events dropped because the queue was full.
    pub events_dropped: u64,
}

/// Events kept for the driver before the oldest are dropped.
const EVENT_QUEUE: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Reading the cookie.
    Pending,
    /// The current test's control connection.
    Control,
    /// Data stream number `.0` (index into `Test::streams`).
    Stream(usize),
    /// Refused; only flushing `ACCESS_DENIED` (or nothing) before closing.
    Done,
}

#[derive(Debug)]
struct Conn {
    role: Role,
    /// Cookie / JSON frame being assembled (bounded by the frame limits).
    rx: Vec<u8>,
    /// Control bytes queued for sending, from `tx_off` on.
    tx: Vec<u8>,
    tx_off: usize,
    /// Close once `tx` is drained.
    close: Option<CloseKind>,
    opened_us: u64,
}

impl Conn {
    fn tx_pending(&self) -> bool {
        self.tx_off < self.tx.len()
    }
}

#[derive(Debug)]
struct Stream {
    conn: Option<ConnId>,
    id: u32,
    sender: bool,
    /// Bytes counted since the end of the omit period.
    bytes: u64,
    /// Where in [`PAYLOAD`] the next sent byte comes from.
    payload_off: usize,
}

#[derive(Debug)]
struct Test {
    ctrl: ConnId,
    cookie: [u8; COOKIE_SIZE],
    phase: Phase,
    phase_since_us: u64,
    params: TestParams,
    streams: Vec<Stream>,
    /// When `TEST_RUNNING` was sent.
    started_us: u64,
    /// End of the omit period (counting starts here).
    counting_from_us: u64,
    omitting: bool,
    ended_us: u64,
    last_progress_us: u64,
    client: ClientResults,
}

impl Test {
    fn summary(&self) -> TestSummary {
        let mut s = TestSummary {
            streams: u32::try_from(self.streams.len()).unwrap_or(u32::MAX),
            reverse: self.params.reverse,
            bidirectional: self.params.bidirectional,
            bytes_received: 0,
            bytes_sent: 0,
            duration_us: self.ended_us.saturating_sub(self.counting_from_us),
            client: self.client,
        };
        for st in &self.streams {
            if st.sender {
                s.bytes_sent = s.bytes_sent.saturating_add(st.bytes);
            } else {
                s.bytes_received = s.bytes_received.saturating_add(st.bytes);
            }
        }
        s
    }
}

/// The length announced by a JSON frame's 4-byte big-endian header, once
/// `rx` holds the header.
fn frame_len(rx: &[u8]) -> Option<u32> {
    rx.get(..4)
        .and_then(|h| <[u8; 4]>::try_from(h).ok())
        .map(u32::from_be_bytes)
}

/// Payload for the streams the server sends on: a fixed pseudo-random pattern
/// (iperf3 sends random bytes by default; nothing checks them).
static PAYLOAD: [u8; PAYLOAD_LEN] = payload_pattern();
const PAYLOAD_LEN: usize = 8192;

const fn payload_pattern() -> [u8; PAYLOAD_LEN] {
    let mut out = [0u8; PAYLOAD_LEN];
    let mut x: u32 = 0x2545_f491;
    let mut i = 0;
    while i < PAYLOAD_LEN {
        // xorshift32
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out[i] = x as u8;
        i += 1;
    }
    out
}

/// The sans-IO iperf3 server (see the module documentation).
pub struct Server {
    cfg: ServerConfig,
    conns: Vec<Option<Conn>>,
    test: Option<Test>,
    events: VecDeque<Event>,
    stats: ServerStats,
    cpu: CpuUtil,
}

impl Server {
    /// A server with an empty connection table of `cfg.max_conns` entries.
    pub fn new(cfg: ServerConfig) -> Self {
        let mut conns = Vec::new();
        conns.resize_with(cfg.max_conns, || None);
        Server {
            cfg,
            conns,
            test: None,
            events: VecDeque::new(),
            stats: ServerStats::default(),
            cpu: CpuUtil::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Lifetime counters.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// Whether a test is in progress, and its phase.
    pub fn phase(&self) -> Option<Phase> {
        self.test.as_ref().map(|t| t.phase)
    }

    /// Sets the CPU utilisation reported in the next results (percentages; the
    /// server does not measure CPU itself, and reports 0 unless told).
    pub fn set_cpu_util(&mut self, cpu: CpuUtil) {
        self.cpu = cpu;
    }

    /// The next event to log, oldest first.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether the server knows connection `id` (accepted and not yet
    /// handed back through [`Server::take_close`] or [`Server::closed`]).
    pub fn is_open(&self, id: ConnId) -> bool {
        matches!(self.conns.get(id.0), Some(Some(_)))
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() >= EVENT_QUEUE {
            self.events.pop_front();
            self.stats.events_dropped = self.stats.events_dropped.saturating_add(1);
        }
        self.events.push_back(e);
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(id.0).and_then(Option::as_mut)
    }

    /// A new established connection `id`. While a test is past stream
    /// creation the connection is refused with `ACCESS_DENIED` at once, as
    /// iperf3 does (`iperf_accept`), without reading its cookie.
    pub fn accept(&mut self, id: ConnId, now_us: u64) -> Result<(), AcceptError> {
        let slot = self.conns.get_mut(id.0).ok_or(AcceptError::IdOutOfRange)?;
        if slot.is_some() {
            return Err(AcceptError::IdInUse);
        }
        let busy = matches!(&self.test, Some(t) if t.phase != Phase::CreateStreams);
        let mut conn = Conn {
            role: Role::Pending,
            rx: Vec::new(),
            tx: Vec::new(),
            tx_off: 0,
            close: None,
            opened_us: now_us,
        };
        if busy {
            conn.role = Role::Done;
            conn.tx.push(State::AccessDenied.byte());
            conn.close = Some(CloseKind::Close);
        }
        *slot = Some(conn);
        if busy {
            self.stats.denied = self.stats.denied.saturating_add(1);
            self.push_event(Event::AccessDenied);
        }
        Ok(())
    }

    /// Bytes received on connection `id`. All of `data` is consumed (data
    /// streams are counted, control bytes parsed); unknown ids are ignored.
    pub fn receive(&mut self, id: ConnId, data: &[u8], now_us: u64) {
        self.tick(now_us);
        let Some(role) = self.conn_mut(id).map(|c| c.role) else {
            return;
        };
        match role {
            Role::Pending => self.receive_cookie(id, data, now_us),
            Role::Control => self.receive_control(id, data, now_us),
            Role::Stream(i) => self.count_received(i, data.len(), now_us),
            Role::Done => {}
        }
    }

    fn count_received(&mut self, i: usize, n: usize, now_us: u64) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        let Some(t) = self.test.as_mut() else { return };
        if t.phase != Phase::Running || n == 0 {
            return;
        }
        // iperf3 counts only while TEST_RUNNING (`iperf_tcp_recv`).
        if let Some(s) = t.streams.get_mut(i).filter(|s| !s.sender) {
            s.bytes = s.bytes.saturating_add(n);
            t.last_progress_us = now_us;
            self.stats.bytes_received = self.stats.bytes_received.saturating_add(n);
        }
    }

    fn receive_cookie(&mut self, id: ConnId, data: &[u8], now_us: u64) {
        let Some(c) = self.conn_mut(id) else { return };
        let want = COOKIE_SIZE.saturating_sub(c.rx.len());
        let (head, rest) = data.split_at(want.min(data.len()));
        c.rx.extend_from_slice(head);
        if c.rx.len() < COOKIE_SIZE {
            return;
        }
        let mut cookie = [0u8; COOKIE_SIZE];
        cookie.copy_from_slice(c.rx.get(..COOKIE_SIZE).unwrap_or(&[0; COOKIE_SIZE]));
        c.rx.clear();
        match &mut self.test {
            None => {
                // A new test: this is its control connection.
                self.test = Some(Test {
                    ctrl: id,
                    cookie,
                    phase: Phase::ParamExchange,
                    phase_since_us: now_us,
                    params: TestParams::default(),
                    streams: Vec::new(),
                    started_us: now_us,
                    counting_from_us: now_us,
                    omitting: false,
                    ended_us: now_us,
                    last_progress_us: now_us,
                    client: ClientResults::default(),
                });
                if let Some(c) = self.conn_mut(id) {
                    c.role = Role::Control;
                    c.tx.push(State::ParamExchange.byte());
                }
                if !rest.is_empty() {
                    self.receive_control(id, rest, now_us);
                }
            }
            Some(t)
                if t.phase == Phase::CreateStreams
                    && t.cookie == cookie
                    && t.streams.len() < usize::try_from(t.params.total_streams()).unwrap_or(0) =>
            {
                let index = t.streams.len();
                let idx32 = u32::try_from(index).unwrap_or(u32::MAX);
                // Server receives on the first `parallel` streams (the
                // client's senders, connected first), then sends.
                let sender = if t.params.bidirectional {
                    idx32 >= t.params.parallel
                } else {
                    t.params.reverse
                };
                t.streams.push(Stream {
                    conn: Some(id),
                    id: stream_id(idx32),
                    sender,
                    bytes: 0,
                    payload_off: index.wrapping_mul(977) % PAYLOAD_LEN,
                });
                let all = t.streams.len() == usize::try_from(t.params.total_streams()).unwrap_or(0);
                let ctrl = t.ctrl;
                if let Some(c) = self.conn_mut(id) {
                    c.role = Role::Stream(index);
                }
                if all {
                    self.start_test(ctrl, now_us);
                }
                if !rest.is_empty() {
                    self.count_received(index, rest.len(), now_us);
                }
            }
            Some(_) => {
                // Busy, wrong cookie, or more streams than announced.
                self.deny(id);
            }
        }
    }

    fn deny(&mut self, id: ConnId) {
        if let Some(c) = self.conn_mut(id) {
            c.role = Role::Done;
            c.tx.push(State::AccessDenied.byte());
            c.close = Some(CloseKind::Close);
            self.stats.denied = self.stats.denied.saturating_add(1);
            self.push_event(Event::AccessDenied);
        }
    }

    fn start_test(&mut self, ctrl: ConnId, now_us: u64) {
        let Some(t) = self.test.as_mut() else { return };
        t.phase = Phase::Running;
        t.phase_since_us = now_us;
        t.started_us = now_us;
        t.counting_from_us = now_us;
        t.omitting = t.params.omit_s > 0;
        t.last_progress_us = now_us;
        let params = t.params;
        if let Some(c) = self.conn_mut(ctrl) {
            c.tx.push(State::TestStart.byte());
            c.tx.push(State::TestRunning.byte());
        }
        self.push_event(Event::TestStarted(params));
    }

    fn receive_control(&mut self, id: ConnId, mut data: &[u8], now_us: u64) {
        while !data.is_empty() {
            let Some(phase) = self.test.as_ref().filter(|t| t.ctrl == id).map(|t| t.phase) else {
                return;
            };
            match phase {
                Phase::ParamExchange | Phase::ExchangeResults => {
                    let limit = if phase == Phase::ParamExchange {
                        MAX_PARAMS_JSON
                    } else {
                        MAX_RESULTS_JSON
                    };
                    let Some(c) = self.conn_mut(id) else { return };
                    // Header first, then exactly the announced length (checked
                    // against `limit` as soon as the header is in).
                    let need = match frame_len(&c.rx) {
                        None => 4usize.saturating_sub(c.rx.len()),
                        Some(len) => (len as usize).saturating_add(4).saturating_sub(c.rx.len()),
                    };
                    let (head, rest) = data.split_at(need.min(data.len()));
                    c.rx.extend_from_slice(head);
                    data = rest;
                    let hdr = frame_len(&c.rx);
                    let complete =
                        hdr.is_some_and(|len| c.rx.len() == (len as usize).saturating_add(4));
                    if let Some(len) = hdr.filter(|&len| len > limit) {
                        let errno = if phase == Phase::ParamExchange {
                            IperfErrno::RecvParams
                        } else {
                            IperfErrno::RecvResults
                        };
                        self.abort_test(
                            AbortReason::Protocol(ProtocolError::FrameTooLong(len)),
                            Some(errno),
                        );
                        return;
                    }
                    if complete {
                        let Some(c) = self.conn_mut(id) else { return };
                        let frame = core::mem::take(&mut c.rx);
                        let body = frame.get(4..).unwrap_or(&[]);
                        if phase == Phase::ParamExchange {
                            self.on_params(id, body, now_us);
                        } else {
                            self.on_client_results(id, body, now_us);
                        }
                    }
                }
                _ => {
                    let (&b, rest) = match data.split_first() {
                        Some(x) => x,
                        None => return,
                    };
                    data = rest;
                    self.on_state_byte(b, phase, now_us);
                }
            }
        }
    }

    fn on_params(&mut self, ctrl: ConnId, body: &[u8], now_us: u64) {
        let conn_limit = u32::try_from(self.cfg.max_conns.saturating_sub(1)).unwrap_or(u32::MAX);
        let parsed = parse_params(body, self.cfg.max_parallel).and_then(|p| {
            if p.total_streams() > conn_limit {
                Err(ParamError::Parallel(i64::from(p.parallel)))
            } else {
                Ok(p)
            }
        });
        match parsed {
            Ok(p) => {
                if let Some(t) = self.test.as_mut() {
                    t.params = p;
                    t.phase = Phase::CreateStreams;
                    t.phase_since_us = now_us;
                }
                if let Some(c) = self.conn_mut(ctrl) {
                    c.tx.push(State::CreateStreams.byte());
                }
            }
            Err(e) => {
                let errno = e.errno();
                self.abort_test(AbortReason::Params(e), Some(errno));
            }
        }
    }

    fn on_state_byte(&mut self, b: u8, phase: Phase, now_us: u64) {
        match State::from_byte(b) {
            Some(State::TestStart) | Some(State::TestRunning) => {
                // `iperf_handle_message_server` ignores TEST_START; a client
                // echoing TEST_RUNNING is harmless too.
            }
            Some(State::TestEnd) if matches!(phase, Phase::Running | Phase::CreateStreams) => {
                self.end_test(now_us);
            }
            Some(State::IperfDone) if phase == Phase::DisplayResults => {
                self.finish_test();
            }
            Some(State::ClientTerminate) | Some(State::IperfDone) => {
                self.abort_test(AbortReason::ClientTerminated(phase), None);
            }
            Some(s) => self.abort_test(
                AbortReason::Protocol(ProtocolError::UnexpectedMessage(s, phase)),
                Some(IperfErrno::Message),
            ),
            None => self.abort_test(
                AbortReason::Protocol(ProtocolError::UnknownMessage(b)),
                Some(IperfErrno::Message),
            ),
        }
    }

    /// `TEST_END`: stop counting, close the streams, ask for the client's results.
    fn end_test(&mut self, now_us: u64) {
        let Some(t) = self.test.as_mut() else { return };
        t.phase = Phase::ExchangeResults;
        t.phase_since_us = now_us;
        t.ended_us = now_us;
        let ctrl = t.ctrl;
        let stream_conns: Vec<ConnId> =
            t.streams.iter_mut().filter_map(|s| s.conn.take()).collect();
        for id in stream_conns {
            if let Some(c) = self.conn_mut(id) {
                c.role = Role::Done;
                c.close = Some(CloseKind::Close);
            }
        }
        if let Some(c) = self.conn_mut(ctrl) {
            c.tx.push(State::ExchangeResults.byte());
        }
    }

    fn on_client_results(&mut self, ctrl: ConnId, body: &[u8], now_us: u64) {
        match parse_client_results(body) {
            Ok(r) => {
                let Some(t) = self.test.as_mut() else { return };
                t.client = r;
                t.phase = Phase::DisplayResults;
                t.phase_since_us = now_us;
                let results: Vec<StreamResult> = t
                    .streams
                    .iter()
                    .map(|s| StreamResult {
                        id: s.id,
                        bytes: s.bytes,
                        end_time_s: t.ended_us.saturating_sub(t.counting_from_us) as f64 / 1e6,
                    })
                    .collect();
                let server_sends = t.params.reverse || t.params.bidirectional;
                let text = if t.params.get_server_output {
                    let s = t.summary();
                    Some(alloc::format!(
                        "xenrs iperf3 server: {} stream(s), received {} bytes, sent {} bytes in {}.{:06} s\n",
                        s.streams,
                        s.bytes_received,
                        s.bytes_sent,
                        s.duration_us / 1_000_000,
                        s.duration_us % 1_000_000
                    ))
                } else {
                    None
                };
                let mut json = Vec::new();
                write_results(&mut json, self.cpu, server_sends, &results, text.as_deref());
                if let Some(c) = self.conn_mut(ctrl) {
                    let len = u32::try_from(json.len()).unwrap_or(u32::MAX);
                    c.tx.extend_from_slice(&len.to_be_bytes());
                    c.tx.extend_from_slice(&json);
                    c.tx.push(State::DisplayResults.byte());
                }
            }
            Err(e) => self.abort_test(
                AbortReason::Protocol(ProtocolError::BadResults(e)),
                Some(IperfErrno::RecvResults),
            ),
        }
    }

    /// Results delivered and `IPERF_DONE` (or the client's close) seen.
    fn finish_test(&mut self) {
        let Some(t) = self.test.take() else { return };
        let summary = t.summary();
        if let Some(c) = self.conn_mut(t.ctrl) {
            c.role = Role::Done;
            c.close = Some(CloseKind::Close);
        }
        self.stats.tests_completed = self.stats.tests_completed.saturating_add(1);
        self.push_event(Event::TestFinished(summary));
    }

    /// Ends the current test early. With `errno`, `SERVER_ERROR` is sent and
    /// the control connection closed gracefully; timeouts reset everything.
    fn abort_test(&mut self, reason: AbortReason, errno: Option<IperfErrno>) {
        let Some(t) = self.test.take() else { return };
        let kind = match reason {
            AbortReason::Timeout(_) | AbortReason::Overran => CloseKind::Abort,
            _ => CloseKind::Close,
        };
        for s in &t.streams {
            if let Some(c) = s.conn.and_then(|id| self.conn_mut(id)) {
                c.role = Role::Done;
                c.close = Some(kind);
            }
        }
        if let Some(c) = self.conn_mut(t.ctrl) {
            c.role = Role::Done;
            c.rx.clear();
            if let Some(e) = errno {
                c.tx.push(State::ServerError.byte());
                c.tx.extend_from_slice(&(e as i32).to_be_bytes());
                c.tx.extend_from_slice(&0i32.to_be_bytes());
            }
            c.close = Some(kind);
        }
        self.stats.tests_aborted = self.stats.tests_aborted.saturating_add(1);
        self.push_event(Event::TestAborted(reason));
    }

    /// Fills `buf` with bytes to send on connection `id` and returns how many:
    /// queued control bytes first; on a sending stream of a running test,
    /// payload (counted as sent). Returns 0 when there is nothing to send.
    pub fn poll_transmit(&mut self, id: ConnId, buf: &mut [u8], now_us: u64) -> usize {
        self.tick(now_us);
        let Some(c) = self.conns.get_mut(id.0).and_then(Option::as_mut) else {
            return 0;
        };
        if c.tx_pending() {
            let src = c.tx.get(c.tx_off..).unwrap_or(&[]);
            let n = src.len().min(buf.len());
            if let (Some(dst), Some(src)) = (buf.get_mut(..n), src.get(..n)) {
                dst.copy_from_slice(src);
            }
            c.tx_off += n;
            if !c.tx_pending() {
                c.tx.clear();
                c.tx_off = 0;
            }
            return n;
        }
        let Role::Stream(i) = c.role else { return 0 };
        if c.close.is_some() {
            return 0;
        }
        let Some(t) = self.test.as_mut() else {
            return 0;
        };
        if t.phase != Phase::Running {
            return 0;
        }
        let Some(s) = t.streams.get_mut(i).filter(|s| s.sender) else {
            return 0;
        };
        let mut n = 0;
        while n < buf.len() {
            let off = s.payload_off % PAYLOAD_LEN;
            let chunk = (PAYLOAD_LEN - off).min(buf.len() - n);
            if let (Some(dst), Some(src)) =
                (buf.get_mut(n..n + chunk), PAYLOAD.get(off..off + chunk))
            {
                dst.copy_from_slice(src);
            }
            n += chunk;
            s.payload_off = (off + chunk) % PAYLOAD_LEN;
        }
        let n64 = u64::try_from(n).unwrap_or(u64::MAX);
        s.bytes = s.bytes.saturating_add(n64);
        if n > 0 {
            t.last_progress_us = now_us;
        }
        self.stats.bytes_sent = self.stats.bytes_sent.saturating_add(n64);
        n
    }

    /// Whether connection `id` has bytes to send right now (queued control
    /// bytes, or payload of a running reverse test).
    pub fn wants_transmit(&self, id: ConnId) -> bool {
        let Some(Some(c)) = self.conns.get(id.0) else {
            return false;
        };
        if c.tx_pending() {
            return true;
        }
        match (c.role, &self.test) {
            (Role::Stream(i), Some(t)) if c.close.is_none() && t.phase == Phase::Running => {
                t.streams.get(i).is_some_and(|s| s.sender)
            }
            _ => false,
        }
    }

    /// If the server is done with connection `id` and everything queued for
    /// it has been handed out by [`Server::poll_transmit`], forgets the
    /// connection and says how to close it. The id is free again afterwards.
    pub fn take_close(&mut self, id: ConnId) -> Option<CloseKind> {
        let slot = self.conns.get_mut(id.0)?;
        let c = slot.as_ref()?;
        let kind = c.close?;
        if kind == CloseKind::Close && c.tx_pending() {
            return None;
        }
        *slot = None;
        Some(kind)
    }

    /// The peer closed (FIN) or reset connection `id`, or the driver lost it;
    /// the server forgets it (the driver closes its end itself). The control
    /// connection closing after the results counts as `IPERF_DONE`; closing
    /// earlier aborts the test.
    pub fn closed(&mut self, id: ConnId, _now_us: u64) {
        let Some(slot) = self.conns.get_mut(id.0) else {
            return;
        };
        let Some(c) = slot.take() else { return };
        match c.role {
            Role::Control => {
                if let Some(phase) = self.test.as_ref().filter(|t| t.ctrl == id).map(|t| t.phase) {
                    if phase == Phase::DisplayResults {
                        self.finish_test();
                    } else {
                        self.abort_test(AbortReason::ControlClosed(phase), None);
                    }
                }
            }
            Role::Stream(i) => {
                if let Some(s) = self.test.as_mut().and_then(|t| t.streams.get_mut(i)) {
                    s.conn = None;
                }
            }
            Role::Pending | Role::Done => {}
        }
    }

    /// One line of the test's state for diagnostics (the kernel's status dump):
    /// phase and its timestamps, bytes per stream, and each connection's role
    /// and queued control bytes.
    pub fn describe(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        match &self.test {
            Some(t) => {
                write!(
                    out,
                    "test phase={:?} since_us={} started_us={} last_progress_us={} ended_us={} streams=",
                    t.phase, t.phase_since_us, t.started_us, t.last_progress_us, t.ended_us
                )?;
                for st in &t.streams {
                    write!(
                        out,
                        "[{} sender={} bytes={} conn={:?}]",
                        st.id,
                        st.sender,
                        st.bytes,
                        st.conn.map(|c| c.0)
                    )?;
                }
            }
            None => out.write_str("no test")?,
        }
        for (i, c) in self.conns.iter().enumerate() {
            if let Some(c) = c {
                write!(
                    out,
                    " conn{i}={:?} rx={} tx_pending={} close={:?}",
                    c.role,
                    c.rx.len(),
                    c.tx.len().saturating_sub(c.tx_off),
                    c.close
                )?;
            }
        }
        Ok(())
    }

    /// Runs the timers: the omit period, handshake and stall timeouts, the
    /// overall deadline of a timed test.
    pub fn poll(&mut self, now_us: u64) {
        self.tick(now_us);
        let hs = self.cfg.handshake_timeout_us;
        let mut expired: Vec<ConnId> = Vec::new();
        for (i, c) in self.conns.iter().enumerate() {
            if let Some(c) = c
                && c.role == Role::Pending
                && now_us.saturating_sub(c.opened_us) > hs
            {
                expired.push(ConnId(i));
            }
        }
        for id in expired {
            if let Some(c) = self.conn_mut(id) {
                c.role = Role::Done;
                c.close = Some(CloseKind::Abort);
            }
        }
        let Some(t) = self.test.as_ref() else { return };
        let phase = t.phase;
        let stalled = now_us.saturating_sub(t.last_progress_us) > self.cfg.stall_timeout_us;
        let overran = self.run_deadline(t).is_some_and(|d| now_us > d);
        let handshake_expired = now_us.saturating_sub(t.phase_since_us) > hs;
        if phase == Phase::Running {
            if stalled {
                self.abort_test(AbortReason::Timeout(Phase::Running), None);
            } else if overran {
                self.abort_test(AbortReason::Overran, None);
            }
        } else if handshake_expired {
            if phase == Phase::DisplayResults {
                // Results were delivered; a client that never says IPERF_DONE
                // still got its test.
                self.finish_test();
            } else {
                self.abort_test(AbortReason::Timeout(phase), None);
            }
        }
    }

    fn run_deadline(&self, t: &Test) -> Option<u64> {
        if t.params.time_s == 0 {
            return None;
        }
        let secs =
            u64::from(t.params.time_s) + u64::from(t.params.omit_s) + u64::from(self.cfg.grace_s);
        Some(t.started_us.saturating_add(secs.saturating_mul(1_000_000)))
    }

    /// The earliest time [`Server::poll`] has something to do, if any.
    pub fn poll_at(&self) -> Option<u64> {
        let hs = self.cfg.handshake_timeout_us;
        let mut at: Option<u64> = None;
        let mut min = |v: u64| at = Some(at.map_or(v, |a| a.min(v)));
        for c in self.conns.iter().flatten() {
            if c.role == Role::Pending {
                min(c.opened_us.saturating_add(hs).saturating_add(1));
            }
        }
        if let Some(t) = &self.test {
            if t.phase == Phase::Running {
                min(t
                    .last_progress_us
                    .saturating_add(self.cfg.stall_timeout_us)
                    .saturating_add(1));
                if let Some(d) = self.run_deadline(t) {
                    min(d.saturating_add(1));
                }
                if t.omitting {
                    min(self.omit_end(t));
                }
            } else {
                min(t.phase_since_us.saturating_add(hs).saturating_add(1));
            }
        }
        at
    }

    fn omit_end(&self, t: &Test) -> u64 {
        t.started_us
            .saturating_add(u64::from(t.params.omit_s).saturating_mul(1_000_000))
    }

    /// Ends the omit period when its time has come: counters restart, like
    /// iperf3's `iperf_reset_stats`.
    fn tick(&mut self, now_us: u64) {
        let end = match &self.test {
            Some(t) if t.omitting && t.phase == Phase::Running => self.omit_end(t),
            _ => return,
        };
        if now_us < end {
            return;
        }
        if let Some(t) = self.test.as_mut() {
            t.omitting = false;
            t.counting_from_us = now_us;
            for s in &mut t.streams {
                s.bytes = 0;
            }
        }
    }
}
