//! iperf3 wire facts: control-channel state bytes, error codes, the parameter and results JSON.
//!
//! Facts from iperf 3.12 (`esnet/iperf`, `src/iperf.h`, `src/iperf_api.h`,
//! `src/iperf_api.c`, `src/iperf_server_api.c`, `src/iperf_client_api.c`):
//!
//! - Every connection (control and data) starts with the client's 37-byte
//!   cookie (`COOKIE_SIZE`: 36 printable characters and a NUL).
//! - On the control connection the server and the client exchange single
//!   signed state bytes ([`State`]). The server's sequence for a test is
//!   `PARAM_EXCHANGE`, `CREATE_STREAMS`, `TEST_START`, `TEST_RUNNING`,
//!   `EXCHANGE_RESULTS`, `DISPLAY_RESULTS`; the client sends `TEST_END`,
//!   then `IPERF_DONE` (or `CLIENT_TERMINATE` when interrupted).
//! - The parameters (client → server, after `PARAM_EXCHANGE`) and the results
//!   (both ways, after `EXCHANGE_RESULTS`: client first) are JSON objects
//!   framed by a 4-byte big-endian length (`JSON_write`/`JSON_read`).
//! - `SERVER_ERROR` is followed by two 4-byte big-endian integers: iperf's
//!   error number (`i_errno`) and the C `errno`.
//! - Data streams connect to the same port, send the cookie, and get the ids
//!   1, 3, 4, 5, … in connection order (`iperf_add_stream`). In bidirectional
//!   mode the client connects its sending streams first.

use crate::json::{self, Flag, JsonError, Number};
use alloc::vec::Vec;
use core::fmt;
use serde::de::{Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Bytes of the cookie that opens every connection (`COOKIE_SIZE` in `iperf.h`).
pub const COOKIE_SIZE: usize = 37;
/// iperf3's default server port (`PORT` in `iperf.h`).
pub const DEFAULT_PORT: u16 = 5201;
/// Most parallel streams iperf3 allows (`MAX_STREAMS` in `iperf.h`).
pub const MAX_STREAMS: u32 = 128;
/// Longest test iperf3 allows, in seconds (`MAX_TIME` in `iperf.h`).
pub const MAX_TIME: u32 = 86_400;
/// Largest block size iperf3 allows (`MAX_BLOCKSIZE` in `iperf.h`).
pub const MAX_BLOCKSIZE: u32 = 1024 * 1024;
/// Largest parameter JSON this server accepts (3.12 sends ~250 bytes;
/// `--title`/`--extra-data` add user strings).
pub const MAX_PARAMS_JSON: u32 = 16 * 1024;
/// Largest client results JSON this server accepts (~130 bytes per stream,
/// up to 128 streams each way, plus `server_output`-free framing).
pub const MAX_RESULTS_JSON: u32 = 64 * 1024;
/// Longest `client_version` string kept.
pub const VERSION_MAX: usize = 16;

/// A control-channel state byte (`iperf_api.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum State {
    /// Server → client: streams are connected, the test begins.
    TestStart = 1,
    /// Server → client: data may flow.
    TestRunning = 2,
    /// Client → server: the client's end condition was met.
    TestEnd = 4,
    /// Server → client: send your parameters.
    ParamExchange = 9,
    /// Server → client: connect the data streams.
    CreateStreams = 10,
    /// Server → client: the server is going away.
    ServerTerminate = 11,
    /// Client → server: the client was interrupted.
    ClientTerminate = 12,
    /// Server → client: exchange results (client sends first).
    ExchangeResults = 13,
    /// Server → client: results exchanged, print them.
    DisplayResults = 14,
    /// Client → server: all done.
    IperfDone = 16,
    /// Server → client: busy with another test (or bad cookie).
    AccessDenied = -1,
    /// Server → client: an error follows (two 32-bit big-endian numbers).
    ServerError = -2,
}

impl State {
    /// The byte as it goes on the wire.
    pub fn byte(self) -> u8 {
        (self as i8).to_be_bytes()[0]
    }

    /// Decodes a wire byte; `None` for values iperf3 does not define or
    /// marks unused (`RESULT_REQUEST`, `STREAM_*`, `IPERF_START`).
    pub fn from_byte(b: u8) -> Option<State> {
        Some(match i8::from_be_bytes([b]) {
            1 => State::TestStart,
            2 => State::TestRunning,
            4 => State::TestEnd,
            9 => State::ParamExchange,
            10 => State::CreateStreams,
            11 => State::ServerTerminate,
            12 => State::ClientTerminate,
            13 => State::ExchangeResults,
            14 => State::DisplayResults,
            16 => State::IperfDone,
            -1 => State::AccessDenied,
            -2 => State::ServerError,
            _ => return None,
        })
    }
}

/// iperf3 error numbers (`i_errno`, the enum in `iperf_api.h`) this server sends
/// after `SERVER_ERROR`; the client prints its text for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum IperfErrno {
    /// `IEDURATION`: test duration too long.
    Duration = 5,
    /// `IENUMSTREAMS`: too many parallel streams.
    NumStreams = 6,
    /// `IEBLOCKSIZE`: block size too large.
    BlockSize = 7,
    /// `IEOMIT`: bogus value for `--omit`.
    Omit = 12,
    /// `IEUNIMP`: not implemented (UDP and SCTP tests).
    Unimplemented = 13,
    /// `IEREVERSEBIDIR`: both reverse and bidirectional.
    ReverseBidir = 25,
    /// `IERECVPARAMS`: unable to receive parameters.
    RecvParams = 114,
    /// `IERECVRESULTS`: unable to receive results.
    RecvResults = 117,
    /// `IEMESSAGE`: an unknown control message.
    Message = 110,
}

/// The transport a test asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `"tcp": true` (what the client sends by default).
    Tcp,
    /// `"udp": true` (`-u`): not served here.
    Udp,
    /// `"sctp": true` (`--sctp`): not served here.
    Sctp,
}

/// The test parameters this server uses, read from the client's parameter JSON
/// (`get_parameters`), with iperf3's own bounds applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestParams {
    /// Transport; the last of `tcp`/`udp`/`sctp` present wins, as in
    /// `get_parameters`. Defaults to TCP.
    pub protocol: Protocol,
    /// Seconds at the start whose bytes are not counted (`omit`).
    pub omit_s: u32,
    /// Test length in seconds (`time`); 0 when the client ends by bytes or blocks.
    pub time_s: u32,
    /// Byte count end condition (`num`), 0 if none.
    pub bytes: u64,
    /// Block count end condition (`blockcount`), 0 if none.
    pub blockcount: u64,
    /// Streams per direction (`parallel`), 1..=[`MAX_STREAMS`].
    pub parallel: u32,
    /// The server sends (`reverse`, `-R`).
    pub reverse: bool,
    /// Both directions (`bidirectional`, `--bidir`).
    pub bidirectional: bool,
    /// Block size (`len`); 0 if not given (the client's default is 128 KiB).
    pub len: u32,
    /// Bitrate limit in bit/s (`bandwidth`), 0 for none. Not enforced by this
    /// server's sender (the client limits its own sending).
    pub bandwidth: u64,
    /// The client wants the server's output in the results (`get_server_output`).
    pub get_server_output: bool,
    /// `client_version`, printable ASCII, truncated to [`VERSION_MAX`] bytes.
    pub client_version: [u8; VERSION_MAX],
    /// Used length of `client_version`.
    pub client_version_len: u8,
}

impl Default for TestParams {
    fn default() -> Self {
        TestParams {
            protocol: Protocol::Tcp,
            omit_s: 0,
            time_s: 10,
            bytes: 0,
            blockcount: 0,
            parallel: 1,
            reverse: false,
            bidirectional: false,
            len: 0,
            bandwidth: 0,
            get_server_output: false,
            client_version: [0; VERSION_MAX],
            client_version_len: 0,
        }
    }
}

impl TestParams {
    /// The client's version string (possibly empty).
    pub fn client_version(&self) -> &str {
        let n = usize::from(self.client_version_len).min(VERSION_MAX);
        let bytes = self.client_version.get(..n).unwrap_or(&[]);
        // Only printable ASCII is stored (see `json::copy_lossy`).
        core::str::from_utf8(bytes).unwrap_or("")
    }

    /// Data streams the client will connect: `parallel`, doubled for `--bidir`.
    pub fn total_streams(&self) -> u32 {
        if self.bidirectional {
            self.parallel.saturating_mul(2)
        } else {
            self.parallel
        }
    }
}

/// Why a parameter JSON was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamError {
    /// Not a JSON object.
    Json(JsonError),
    /// A field has the wrong JSON type (the field's name).
    Type(&'static str),
    /// UDP or SCTP: this server runs TCP tests only.
    UnsupportedProtocol(Protocol),
    /// `parallel` outside 1..=[`MAX_STREAMS`] (or above this server's limit).
    Parallel(i64),
    /// `time` outside 0..=[`MAX_TIME`].
    Time(i64),
    /// `omit` outside 0..=[`MAX_TIME`].
    Omit(i64),
    /// `len` outside 0..=[`MAX_BLOCKSIZE`].
    BlockSize(i64),
    /// Negative `num`, `blockcount` or `bandwidth` (the field's name).
    Negative(&'static str),
    /// Both `reverse` and `bidirectional`.
    ReverseAndBidirectional,
}

impl ParamError {
    /// The `i_errno` to report to the client after `SERVER_ERROR`.
    pub fn errno(&self) -> IperfErrno {
        match self {
            ParamError::Json(_) | ParamError::Type(_) | ParamError::Negative(_) => {
                IperfErrno::RecvParams
            }
            ParamError::UnsupportedProtocol(_) => IperfErrno::Unimplemented,
            ParamError::Parallel(_) => IperfErrno::NumStreams,
            ParamError::Time(_) => IperfErrno::Duration,
            ParamError::Omit(_) => IperfErrno::Omit,
            ParamError::BlockSize(_) => IperfErrno::BlockSize,
            ParamError::ReverseAndBidirectional => IperfErrno::ReverseBidir,
        }
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Json(e) => write!(f, "parameters: {e}"),
            ParamError::Type(k) => write!(f, "parameter '{k}' has the wrong type"),
            ParamError::UnsupportedProtocol(p) => write!(f, "{p:?} tests are not supported"),
            ParamError::Parallel(n) => write!(f, "bad stream count {n}"),
            ParamError::Time(n) => write!(f, "bad duration {n}"),
            ParamError::Omit(n) => write!(f, "bad omit {n}"),
            ParamError::BlockSize(n) => write!(f, "bad block size {n}"),
            ParamError::Negative(k) => write!(f, "parameter '{k}' is negative"),
            ParamError::ReverseAndBidirectional => f.write_str("both reverse and bidirectional"),
        }
    }
}

fn in_range(v: i64, max: u32) -> Option<u32> {
    u32::try_from(v).ok().filter(|&x| x <= max)
}

/// The parameter members this server reads, in [`ParamsVisitor`]'s order.
const PARAM_KEYS: [&str; 14] = [
    "tcp",
    "udp",
    "sctp",
    "omit",
    "time",
    "num",
    "blockcount",
    "parallel",
    "reverse",
    "bidirectional",
    "len",
    "bandwidth",
    "get_server_output",
    "client_version",
];

/// The parameter members as read, before iperf3's bounds are applied.
#[derive(Default)]
struct RawParams<'a> {
    /// `tcp`, `udp`, `sctp` as flags.
    protocol: [bool; 3],
    omit: Option<Number>,
    time: Option<Number>,
    num: Option<Number>,
    blockcount: Option<Number>,
    parallel: Option<Number>,
    reverse: bool,
    bidirectional: bool,
    len: Option<Number>,
    bandwidth: Option<Number>,
    get_server_output: bool,
    /// Still escaped.
    client_version: Option<&'a str>,
}

/// Reads the parameter object as cJSON's `cJSON_GetObjectItem` finds members:
/// keys compared ignoring ASCII case (keys with escapes match nothing), the
/// first occurrence wins, unknown members (any shape) are skipped. Records in
/// `field` the member being read, so that a wrong type names it.
struct ParamsVisitor<'f> {
    field: &'f mut Option<&'static str>,
}

impl<'de> Visitor<'de> for ParamsVisitor<'_> {
    type Value = RawParams<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an iperf3 parameter object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawParams<'de>, A::Error> {
        let mut p = RawParams::default();
        let mut seen: u32 = 0;
        while let Some(key) = map.next_key::<&'de str>()? {
            let Some(i) = PARAM_KEYS
                .iter()
                .position(|k| k.eq_ignore_ascii_case(key))
                .filter(|&i| seen & (1 << i) == 0)
            else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            seen |= 1 << i;
            let name = PARAM_KEYS.get(i).copied().unwrap_or("");
            *self.field = Some(name);
            let number = |map: &mut A| map.next_value::<Number>().map(Some);
            let flag = |map: &mut A| map.next_value::<Flag>().map(|f| f.0);
            match i {
                0..=2 => {
                    let v = flag(&mut map)?;
                    if let Some(slot) = p.protocol.get_mut(i) {
                        *slot = v;
                    }
                }
                3 => p.omit = number(&mut map)?,
                4 => p.time = number(&mut map)?,
                5 => p.num = number(&mut map)?,
                6 => p.blockcount = number(&mut map)?,
                7 => p.parallel = number(&mut map)?,
                8 => p.reverse = flag(&mut map)?,
                9 => p.bidirectional = flag(&mut map)?,
                10 => p.len = number(&mut map)?,
                11 => p.bandwidth = number(&mut map)?,
                // iperf3 prints this one as a number (`cJSON_AddNumberToObject`).
                12 => p.get_server_output = number(&mut map)?.is_some_and(|n| n.0 != 0.0),
                _ => p.client_version = map.next_value::<Option<&'de str>>()?,
            }
            *self.field = None;
        }
        Ok(p)
    }
}

/// Parses and validates the client's parameter JSON. `max_parallel` is this
/// server's own stream limit (at most [`MAX_STREAMS`]).
///
/// Keys are matched ignoring ASCII case and the first occurrence wins, as
/// with cJSON's `cJSON_GetObjectItem`. Numbers are read as doubles and
/// truncated like cJSON's `valueint`; flags (`reverse`, `tcp`, …) are
/// `true`, `false` or `null` (iperf3 prints `true`), `get_server_output` a
/// number (set unless 0). Unknown keys are ignored, whatever their shape.
pub fn parse_params(text: &[u8], max_parallel: u32) -> Result<TestParams, ParamError> {
    json::check_depth(text).map_err(ParamError::Json)?;
    let mut field = None;
    let mut de = serde_json_core::de::Deserializer::new(text, None);
    let raw = de
        .deserialize_map(ParamsVisitor { field: &mut field })
        .and_then(|raw| de.end().map(|_| raw))
        .map_err(|e| match field {
            Some(name) => ParamError::Type(name),
            None => ParamError::Json(JsonError::Syntax(e)),
        })?;
    let mut p = TestParams::default();
    if let Some(n) = raw.omit.map(Number::as_i64) {
        p.omit_s = in_range(n, MAX_TIME).ok_or(ParamError::Omit(n))?;
    }
    if let Some(n) = raw.time.map(Number::as_i64) {
        p.time_s = in_range(n, MAX_TIME).ok_or(ParamError::Time(n))?;
    }
    let count = |v: Option<Number>, name| {
        u64::try_from(v.map_or(0, Number::as_i64)).map_err(|_| ParamError::Negative(name))
    };
    p.bytes = count(raw.num, "num")?;
    p.blockcount = count(raw.blockcount, "blockcount")?;
    if let Some(n) = raw.parallel.map(Number::as_i64) {
        p.parallel = in_range(n, max_parallel.min(MAX_STREAMS))
            .filter(|&x| x >= 1)
            .ok_or(ParamError::Parallel(n))?;
    }
    if let Some(n) = raw.len.map(Number::as_i64) {
        p.len = in_range(n, MAX_BLOCKSIZE).ok_or(ParamError::BlockSize(n))?;
    }
    p.bandwidth = count(raw.bandwidth, "bandwidth")?;
    p.reverse = raw.reverse;
    p.bidirectional = raw.bidirectional;
    p.get_server_output = raw.get_server_output;
    // `get_parameters` applies tcp, then udp, then sctp: the last one set wins.
    if raw.protocol[2] {
        p.protocol = Protocol::Sctp;
    } else if raw.protocol[1] {
        p.protocol = Protocol::Udp;
    }
    if p.protocol != Protocol::Tcp {
        return Err(ParamError::UnsupportedProtocol(p.protocol));
    }
    if p.reverse && p.bidirectional {
        return Err(ParamError::ReverseAndBidirectional);
    }
    if let Some(s) = raw.client_version {
        let n = json::copy_lossy(s, &mut p.client_version);
        p.client_version_len = u8::try_from(n).unwrap_or(0);
    }
    Ok(p)
}

/// What the client reported in its results JSON (only what this server logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientResults {
    /// Number of stream entries.
    pub streams: u32,
    /// Sum of the entries' `bytes` (saturating; negative entries count as 0).
    pub bytes: u64,
}

/// The client's results object (`send_results` on the client). The members
/// `get_results` requires must be there; others (`congestion_used`, …) are skipped.
#[derive(Deserialize)]
struct ClientResultsJson {
    #[serde(rename = "cpu_util_total")]
    _cpu_util_total: Number,
    #[serde(rename = "cpu_util_user")]
    _cpu_util_user: Number,
    #[serde(rename = "cpu_util_system")]
    _cpu_util_system: Number,
    #[serde(rename = "sender_has_retransmits")]
    _sender_has_retransmits: Number,
    streams: StreamSums,
}

/// One entry of the client's `streams` array: only `bytes` is read.
#[derive(Deserialize)]
struct ClientStreamJson {
    #[serde(default)]
    bytes: Option<Number>,
}

/// The `streams` array, counted and summed as it is read (no allocation).
struct StreamSums(ClientResults);

impl<'de> Deserialize<'de> for StreamSums {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StreamSums;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of stream objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StreamSums, A::Error> {
                let mut out = ClientResults::default();
                while let Some(s) = seq.next_element::<ClientStreamJson>()? {
                    out.streams = out.streams.saturating_add(1);
                    out.bytes = out.bytes.saturating_add(s.bytes.map_or(0, Number::as_u64));
                }
                Ok(StreamSums(out))
            }
        }
        deserializer.deserialize_seq(V)
    }
}

/// Validates the client's results JSON (`send_results` on the client) and sums
/// its streams. Requires the members `get_results` requires: the three
/// `cpu_util_*` numbers, `sender_has_retransmits` and a `streams` array of objects.
pub fn parse_client_results(text: &[u8]) -> Result<ClientResults, JsonError> {
    json::from_slice::<ClientResultsJson>(text).map(|r| r.streams.0)
}

/// One stream's line in the server's results (`send_results`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamResult {
    /// The stream id (1, 3, 4, …).
    pub id: u32,
    /// Bytes this side sent (sender) or received (receiver), omit period excluded.
    pub bytes: u64,
    /// Seconds from the (post-omit) start to the end of the test.
    pub end_time_s: f64,
}

/// CPU utilisation percentages reported to the client (`cpu_util_*`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CpuUtil {
    /// Total, percent.
    pub total: f64,
    /// User, percent.
    pub user: f64,
    /// System, percent.
    pub system: f64,
}

/// The server's results object, in `send_results`' member order.
#[derive(Serialize)]
struct ResultsJson<'a> {
    cpu_util_total: f64,
    cpu_util_user: f64,
    cpu_util_system: f64,
    sender_has_retransmits: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_output_text: Option<&'a str>,
    streams: StreamsJson<'a>,
}

/// The `streams` array, written from the [`StreamResult`]s without copying them.
struct StreamsJson<'a>(&'a [StreamResult]);

impl Serialize for StreamsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|s| StreamJson {
            id: s.id,
            bytes: s.bytes,
            retransmits: -1,
            jitter: 0,
            errors: 0,
            packets: 0,
            start_time: 0,
            end_time: finite(s.end_time_s),
        }))
    }
}

/// One stream of the server's results (TCP: no jitter, errors or packets).
#[derive(Serialize)]
struct StreamJson {
    id: u32,
    bytes: u64,
    retransmits: i64,
    jitter: u8,
    errors: u8,
    packets: u8,
    start_time: u8,
    end_time: f64,
}

/// NaN and infinities (not JSON) become 0.
fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// Appends the server's results JSON (the object `send_results` builds) to `out`.
///
/// `sender_has_retransmits` is -1 when the server only received, else 0: this
/// server has no retransmit counter, so per-stream `retransmits` is -1 (which
/// the client reads as "unknown"). TCP streams have no jitter, errors or
/// packet counts (all 0).
pub fn write_results(
    out: &mut Vec<u8>,
    cpu: CpuUtil,
    server_sends: bool,
    streams: &[StreamResult],
    server_output_text: Option<&str>,
) {
    let results = ResultsJson {
        cpu_util_total: finite(cpu.total),
        cpu_util_user: finite(cpu.user),
        cpu_util_system: finite(cpu.system),
        sender_has_retransmits: if server_sends { 0 } else { -1 },
        server_output_text,
        streams: StreamsJson(streams),
    };
    // ~190 bytes per stream with 20-digit numbers; text escapes take up to 6 bytes a byte.
    let hint = 160 + streams.len() * 200 + server_output_text.map_or(0, |t| t.len() * 6);
    if let Some(text) = json::to_vec(&results, hint) {
        out.extend_from_slice(&text);
    }
}

/// The id iperf3 gives the `index`-th connected stream (0-based): 1, 3, 4, 5, …
/// (`iperf_add_stream` starts counting at 2 for the second stream and then
/// increments once per existing stream).
pub fn stream_id(index: u32) -> u32 {
    if index == 0 {
        1
    } else {
        index.saturating_add(2)
    }
}
