//! The sans-IO NBD connection: bytes in, bytes out, disk operations out, disk completions in.
//!
//! One [`Connection`] per TCP connection. The caller (the smoltcp pump in
//! `net-services`, or a test) loops:
//!
//! ```text
//! n = conn.receive(socket_bytes, exports)   // consume only n bytes (backpressure)
//! while let Some(req) = conn.next_disk_request() { disks.submit(..) or conn.retry(req) }
//! conn.complete(tag, result)                 // for each disk completion
//! n = conn.transmit(socket_space)            // replies
//! conn.close_action()                        // Close (FIN after the replies) / Abort
//! ```
//!
//! # Memory bounds
//!
//! - Negotiation: one option's data is buffered up to [`Limits::max_option`]
//!   bytes (larger data is skipped without buffering and refused); no new
//!   option is read while more than [`Limits::negotiation_output`] reply bytes
//!   wait to be sent.
//! - Transmission: a READ or WRITE longer than [`Limits::max_payload`] ends the
//!   connection. A new request header is read only while the payload bytes
//!   reserved by this connection (write data received or at the disk, read
//!   data requested or waiting to be sent) plus one maximal payload stay within
//!   [`Limits::budget`], fewer than [`Limits::max_requests`] requests are
//!   pending, and the reply queue is short. Otherwise [`Connection::receive`]
//!   consumes nothing and the TCP window closes.
//!
//! # No-panic promise
//!
//! No input bytes, completion (unknown tag, wrong length, repeated) or call
//! order makes this module panic: lengths are checked before use, indexing
//! goes through `get`, counters saturate.

use crate::disk::{DiskError, DiskOp, ExportInfo};
use crate::wire::{
    self, ClientFlagsRepr, Command, GreetingRepr, InfoBlockSizeRepr, InfoExportRepr, InfoRequest,
    OptionHeader, OptionHeaderRepr, OptionReplyRepr, Request, RequestRepr, SimpleReplyRepr,
    client_flags, command_flags, errno, handshake_flags, option, reply, transmission_flags,
};
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Size limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Minimum block size: offsets and lengths must be multiples (power of two).
    pub min_block: u32,
    /// Preferred block size (power of two, ≥ `min_block`).
    pub preferred_block: u32,
    /// Largest READ/WRITE payload (power of two, ≥ `preferred_block`).
    pub max_payload: u32,
    /// Payload bytes one connection may hold in flight (≥ `max_payload`).
    pub budget: usize,
    /// Requests one connection may have pending.
    pub max_requests: usize,
    /// Largest option data buffered during negotiation.
    pub max_option: u32,
    /// Reply bytes queued during negotiation before input pauses.
    pub negotiation_output: usize,
    /// Whether to advertise `NBD_FLAG_CAN_MULTI_CONN` (clients such as nbdcopy
    /// then open several connections: turn it off when the server takes only
    /// one or two at a time).
    pub multi_conn: bool,
}

impl Default for Limits {
    /// 512 / 4 KiB / 256 KiB block sizes, 512 KiB in flight, 64 requests.
    fn default() -> Self {
        Limits {
            min_block: 512,
            preferred_block: 4096,
            max_payload: 256 * 1024,
            budget: 512 * 1024,
            max_requests: 64,
            max_option: 8192,
            negotiation_output: 64 * 1024,
            multi_conn: true,
        }
    }
}

/// Longest export name kept in an event.
pub const NAME_CAPACITY: usize = 32;

/// An export name as events carry it (the first [`NAME_CAPACITY`] bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name {
    bytes: [u8; NAME_CAPACITY],
    len: u8,
    truncated: bool,
}

impl Name {
    /// Keeps the first [`NAME_CAPACITY`] bytes of `name`.
    pub fn new(name: &[u8]) -> Name {
        let mut bytes = [0u8; NAME_CAPACITY];
        let n = name.len().min(NAME_CAPACITY);
        if let (Some(d), Some(s)) = (bytes.get_mut(..n), name.get(..n)) {
            d.copy_from_slice(s);
        }
        Name {
            bytes,
            len: n as u8,
            truncated: name.len() > NAME_CAPACITY,
        }
    }

    /// The bytes kept.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl fmt::Display for Name {
    /// Quoted, printable ASCII as is, anything else as `\xNN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("'")?;
        for &b in self.as_bytes() {
            if (b.is_ascii_graphic() && b != b'\'' && b != b'\\') || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_str(if self.truncated { "...'" } else { "'" })
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A client's protocol violation or a request refused for its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientError {
    /// Client flags this server does not know (connection dropped).
    UnknownClientFlags(u32),
    /// An option request without `IHAVEOPT` (connection dropped).
    BadOptionMagic(u64),
    /// Option data longer than the server buffers (`NBD_REP_ERR_TOO_BIG`;
    /// dropped for `NBD_OPT_EXPORT_NAME`).
    OptionTooLarge {
        /// The option.
        option: u32,
        /// Its data length.
        length: u32,
    },
    /// Option data that does not parse (`NBD_REP_ERR_INVALID`).
    MalformedOption(u32),
    /// No export of that name (`NBD_REP_ERR_UNKNOWN`; dropped for
    /// `NBD_OPT_EXPORT_NAME`).
    UnknownExport(Name),
    /// A request without `NBD_REQUEST_MAGIC` (connection dropped).
    BadRequestMagic(u32),
    /// A READ or WRITE longer than the maximum payload (connection dropped).
    PayloadTooLarge {
        /// The command.
        command: Command,
        /// Its length.
        length: u32,
        /// The advertised maximum.
        max: u32,
    },
    /// A request refused with an error reply (the connection goes on).
    Refused {
        /// The command.
        command: Command,
        /// The reply's error (`NBD_E*`).
        errno: u32,
        /// Its offset.
        offset: u64,
        /// Its length.
        length: u32,
    },
}

fn errno_name(e: u32) -> &'static str {
    match e {
        errno::EPERM => "EPERM",
        errno::EIO => "EIO",
        errno::EINVAL => "EINVAL",
        errno::ENOSPC => "ENOSPC",
        errno::ENOTSUP => "ENOTSUP",
        _ => "error",
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::UnknownClientFlags(v) => {
                write!(f, "unknown client flags {v:#x}, connection dropped")
            }
            ClientError::BadOptionMagic(v) => {
                write!(
                    f,
                    "option without IHAVEOPT magic ({v:#x}), connection dropped"
                )
            }
            ClientError::OptionTooLarge { option, length } => {
                write!(f, "option {option} with {length} bytes of data, refused")
            }
            ClientError::MalformedOption(o) => write!(f, "malformed option {o}, refused"),
            ClientError::UnknownExport(n) => write!(f, "unknown export {n}"),
            ClientError::BadRequestMagic(v) => {
                write!(f, "request with bad magic {v:#x}, connection dropped")
            }
            ClientError::PayloadTooLarge {
                command,
                length,
                max,
            } => write!(
                f,
                "{command} of {length} bytes exceeds the maximum {max}, connection dropped"
            ),
            ClientError::Refused {
                command,
                errno,
                offset,
                length,
            } => write!(
                f,
                "{command} at {offset} length {length} refused with {}",
                errno_name(*errno)
            ),
        }
    }
}

/// What a connection reports (the service adds the connection id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The client chose an export and entered transmission.
    Opened {
        /// The export.
        export: Name,
        /// Its size as advertised.
        size: u64,
        /// Whether it is read-only.
        read_only: bool,
    },
    /// A protocol violation or a refused request (the first
    /// [`MAX_REPORTS`] refusals of a connection; later ones are counted).
    Client(ClientError),
    /// A disk operation failed (the first [`MAX_REPORTS`] of a connection).
    Disk {
        /// The command.
        command: Command,
        /// The disk's error.
        error: DiskError,
    },
    /// The connection ended (after its last reply, or when dropped).
    Closed(Stats),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Opened {
                export,
                size,
                read_only,
            } => write!(
                f,
                "export {export} opened ({size} bytes{})",
                if *read_only { ", read-only" } else { "" }
            ),
            Event::Client(e) => write!(f, "{e}"),
            Event::Disk { command, error } => write!(f, "{command} failed: {error}"),
            Event::Closed(s) => write!(
                f,
                "{} after {} requests ({} bytes read, {} written, {} refused, {} failed)",
                if s.reset {
                    "reset (by the client, or timed out)"
                } else {
                    "closed"
                },
                s.requests,
                s.bytes_read,
                s.bytes_written,
                s.refused,
                s.failed
            ),
        }
    }
}

/// Refusals and disk failures reported per connection (the rest are counted).
pub const MAX_REPORTS: u64 = 4;

/// Counters of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Requests answered.
    pub requests: u64,
    /// Bytes read and sent.
    pub bytes_read: u64,
    /// Bytes written (acknowledged).
    pub bytes_written: u64,
    /// Requests refused by the server (EINVAL/EPERM before reaching the disk).
    pub refused: u64,
    /// Requests the disk failed.
    pub failed: u64,
    /// Whether the connection ended by a reset (the client's, or ours after
    /// a TCP timeout) rather than by a close ([`Connection::lost`]).
    pub reset: bool,
}

/// A disk operation the connection wants started; `tag` is connection-local.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskRequest {
    /// Connection-local tag, handed back with [`Connection::complete`].
    pub tag: u32,
    /// [`ExportInfo::id`] of the export.
    pub export: usize,
    /// Byte offset.
    pub offset: u64,
    /// The operation.
    pub op: DiskOp,
}

/// How the caller should end the TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAction {
    /// Every reply is out: close normally (FIN).
    Close,
    /// Protocol violation: reset now (outstanding disk operations are abandoned).
    Abort,
}

/// The negotiation/transmission phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Greeting sent, waiting for the client flags.
    Handshake,
    /// Option haggling.
    Options,
    /// Serving requests on an export.
    Transmission,
    /// No more input is read (disconnect, abort, end of stream, violation).
    Ending,
}

#[derive(Debug)]
enum Input {
    ClientFlags,
    OptionHeader,
    OptionData {
        option: u32,
        length: u32,
    },
    RequestHeader,
    WritePayload {
        request: RequestRepr,
        data: Vec<u8>,
    },
    /// Skip `remaining` bytes, then answer as `then` says.
    Skip {
        remaining: u32,
        then: AfterSkip,
    },
    Stopped,
}

/// The answer to input skipped unbuffered.
#[derive(Debug)]
enum AfterSkip {
    /// Option data: send `reply_type` (for ABORT: ACK, then close).
    OptionReply { option: u32, reply_type: u32 },
    /// A refused write's payload: reply `errno`.
    Refuse { request: RequestRepr, errno: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Queued,
    Submitted,
}

#[derive(Debug)]
struct Pending {
    tag: u32,
    handle: u64,
    command: Command,
    length: u32,
    /// Budget bytes this request holds until its reply (read: until sent).
    reserved: usize,
    stage: Stage,
    /// After the operation succeeds, flush before replying (emulated FUA).
    flush_after: bool,
}

struct Chunk {
    bytes: Vec<u8>,
    sent: usize,
    /// Budget bytes released once the chunk is fully sent.
    release: usize,
}

#[derive(Debug, Clone)]
struct Bound {
    info: ExportInfo,
    size: u64,
}

/// One NBD connection's protocol state.
pub struct Connection {
    limits: Limits,
    phase: Phase,
    input: Input,
    acc: Vec<u8>,
    no_zeroes: bool,
    export: Option<Bound>,
    out: VecDeque<Chunk>,
    out_bytes: usize,
    pending: Vec<Pending>,
    queue: VecDeque<DiskRequest>,
    reserved: usize,
    next_tag: u32,
    close: Option<CloseAction>,
    /// Close once drained (DISC, ABORT, EOF, unknown EXPORT_NAME).
    drain_then_close: bool,
    events: VecDeque<Event>,
    stats: Stats,
    closed_reported: bool,
}

/// [`Connection::debug_state`].
struct DebugState<'a>(&'a Connection);

impl fmt::Display for DebugState<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        let input = match &c.input {
            Input::ClientFlags => "client-flags",
            Input::OptionHeader => "option-header",
            Input::OptionData { .. } => "option-data",
            Input::RequestHeader => "request-header",
            Input::WritePayload { .. } => "write-payload",
            Input::Skip { .. } => "skip",
            Input::Stopped => "stopped",
        };
        write!(
            f,
            "phase={:?} input={input} acc={} wants_input={} reserved={} pending={} submitted={} queued={} out_chunks={} out_bytes={} close={:?} drain={}",
            c.phase,
            c.acc.len(),
            c.wants_input(),
            c.reserved,
            c.pending.len(),
            c.outstanding(),
            c.queue.len(),
            c.out.len(),
            c.out_bytes,
            c.close,
            c.drain_then_close
        )
    }
}

/// Events kept per connection before older ones are dropped.
const MAX_EVENTS: usize = 16;

impl Connection {
    /// A new connection; the greeting is queued for transmission.
    pub fn new(limits: Limits) -> Connection {
        let mut c = Connection {
            limits,
            phase: Phase::Handshake,
            input: Input::ClientFlags,
            acc: Vec::new(),
            no_zeroes: false,
            export: None,
            out: VecDeque::new(),
            out_bytes: 0,
            pending: Vec::new(),
            queue: VecDeque::new(),
            reserved: 0,
            next_tag: 1,
            close: None,
            drain_then_close: false,
            events: VecDeque::new(),
            stats: Stats::default(),
            closed_reported: false,
        };
        let mut g = vec![0u8; GreetingRepr::LEN];
        GreetingRepr {
            flags: handshake_flags::FIXED_NEWSTYLE | handshake_flags::NO_ZEROES,
        }
        .emit(&mut g);
        c.push_out(g, 0);
        c
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether [`Connection::receive`] needs the export list (negotiation).
    pub fn needs_exports(&self) -> bool {
        matches!(self.phase, Phase::Handshake | Phase::Options)
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Payload bytes this connection holds (write data, read data, requested reads).
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Disk operations submitted and not yet completed.
    pub fn outstanding(&self) -> usize {
        self.pending
            .iter()
            .filter(|p| p.stage == Stage::Submitted)
            .count()
    }

    /// One line of the connection's internals for diagnostics: input state,
    /// budget, requests by stage, queued submissions and reply bytes.
    pub fn debug_state(&self) -> impl fmt::Display + '_ {
        DebugState(self)
    }

    /// The next event.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn event(&mut self, e: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    fn push_out(&mut self, bytes: Vec<u8>, release: usize) {
        if bytes.is_empty() {
            self.release(release);
            return;
        }
        self.out_bytes = self.out_bytes.saturating_add(bytes.len());
        self.out.push_back(Chunk {
            bytes,
            sent: 0,
            release,
        });
    }

    fn release(&mut self, n: usize) {
        self.reserved = self.reserved.saturating_sub(n);
    }

    fn fatal(&mut self, e: ClientError) {
        self.event(Event::Client(e));
        self.abort();
    }

    /// Reads no more and resets the connection now.
    fn abort(&mut self) {
        self.stop_input();
        self.phase = Phase::Ending;
        self.close = Some(CloseAction::Abort);
    }

    fn option_reply(&mut self, opt: u32, reply_type: u32, data: &[u8]) {
        let m = OptionReplyRepr::message(opt, reply_type, data);
        self.push_out(m, 0);
    }

    /// Whether input would be taken now (false: backpressure or ended).
    pub fn wants_input(&self) -> bool {
        match self.input {
            Input::Stopped => false,
            Input::OptionHeader => self.out_bytes <= self.limits.negotiation_output,
            Input::RequestHeader => !self.acc.is_empty() || self.can_admit(),
            _ => true,
        }
    }

    fn can_admit(&self) -> bool {
        self.reserved
            .saturating_add(self.limits.max_payload as usize)
            <= self.limits.budget
            && self.pending.len() < self.limits.max_requests
            && self.out.len() < self.limits.max_requests.saturating_mul(2)
    }

    /// Consumes bytes from the client; returns how many were taken (fewer
    /// than offered when a limit pauses input: offer the rest later).
    /// `exports` is needed only while [`Connection::needs_exports`].
    pub fn receive(&mut self, data: &[u8], exports: &[ExportInfo]) -> usize {
        let mut rest = data;
        // Each step either makes progress (consumes bytes or finishes a
        // message) or says it waits; input is finite and every message
        // consumes at least its header, so this ends.
        while self.step(&mut rest, exports) {}
        data.len() - rest.len()
    }

    /// Takes bytes into `acc` until it holds `need`; true when it does.
    fn fill(&mut self, need: usize, rest: &mut &[u8]) -> bool {
        let want = need.saturating_sub(self.acc.len());
        let n = want.min(rest.len());
        let (take, left) = rest.split_at(n);
        self.acc.extend_from_slice(take);
        *rest = left;
        self.acc.len() >= need
    }

    fn step(&mut self, rest: &mut &[u8], exports: &[ExportInfo]) -> bool {
        match core::mem::replace(&mut self.input, Input::Stopped) {
            Input::Stopped => return false,
            Input::ClientFlags => {
                if !self.fill(ClientFlagsRepr::LEN, rest) {
                    self.input = Input::ClientFlags;
                    return false;
                }
                let f = ClientFlagsRepr::parse(&self.acc).unwrap_or(ClientFlagsRepr { flags: 0 });
                self.acc.clear();
                if f.unknown() != 0 {
                    self.fatal(ClientError::UnknownClientFlags(f.flags));
                    return false;
                }
                self.no_zeroes = f.flags & client_flags::NO_ZEROES != 0;
                self.phase = Phase::Options;
                self.input = Input::OptionHeader;
            }
            Input::OptionHeader => {
                if self.acc.is_empty() && self.out_bytes > self.limits.negotiation_output {
                    self.input = Input::OptionHeader;
                    return false;
                }
                if !self.fill(OptionHeaderRepr::LEN, rest) {
                    self.input = Input::OptionHeader;
                    return false;
                }
                let parsed = OptionHeader::new_checked(&self.acc[..])
                    .and_then(|h| OptionHeaderRepr::parse(&h));
                let magic = OptionHeader::new_unchecked(&self.acc[..]).magic();
                self.acc.clear();
                match parsed {
                    Err(_) => self.fatal(ClientError::BadOptionMagic(magic)),
                    Ok(h) => self.start_option(h),
                }
            }
            Input::OptionData { option, length } => {
                if !self.fill(length as usize, rest) {
                    self.input = Input::OptionData { option, length };
                    return false;
                }
                let data = core::mem::take(&mut self.acc);
                self.input = Input::OptionHeader;
                self.handle_option(option, &data, exports);
            }
            Input::Skip { remaining, then } => {
                let n = (remaining as usize).min(rest.len());
                *rest = rest.get(n..).unwrap_or_default();
                let remaining = remaining.saturating_sub(n as u32);
                if remaining > 0 {
                    self.input = Input::Skip { remaining, then };
                    return false;
                }
                match then {
                    AfterSkip::OptionReply { option, reply_type } => {
                        self.input = Input::OptionHeader;
                        if option == option::ABORT {
                            self.option_reply(option, reply::ACK, &[]);
                            self.end_input();
                        } else {
                            self.option_reply(option, reply_type, &[]);
                        }
                    }
                    AfterSkip::Refuse { request, errno } => {
                        self.input = Input::RequestHeader;
                        self.refuse(request, errno);
                    }
                }
            }
            Input::RequestHeader => {
                if self.acc.is_empty() && !self.can_admit() {
                    self.input = Input::RequestHeader;
                    return false;
                }
                if !self.fill(RequestRepr::LEN, rest) {
                    self.input = Input::RequestHeader;
                    return false;
                }
                let view = Request::new_unchecked(&self.acc[..]);
                let magic = view.magic();
                let parsed =
                    Request::new_checked(&self.acc[..]).and_then(|r| RequestRepr::parse(&r));
                self.acc.clear();
                self.input = Input::RequestHeader;
                match parsed {
                    Err(_) => self.fatal(ClientError::BadRequestMagic(magic)),
                    Ok(r) => self.start_request(r),
                }
            }
            Input::WritePayload { request, mut data } => {
                let need = (request.length as usize).saturating_sub(data.len());
                let n = need.min(rest.len());
                data.extend_from_slice(rest.get(..n).unwrap_or_default());
                *rest = rest.get(n..).unwrap_or_default();
                if data.len() < request.length as usize {
                    self.input = Input::WritePayload { request, data };
                    return false;
                }
                self.input = Input::RequestHeader;
                self.queue_write(request, data);
            }
        }
        true
    }

    /// Stops reading; a partly received write gives its reservation back.
    fn stop_input(&mut self) {
        if let Input::WritePayload { request, .. } =
            core::mem::replace(&mut self.input, Input::Stopped)
        {
            self.release(request.length as usize);
        }
    }

    fn end_input(&mut self) {
        self.stop_input();
        self.phase = Phase::Ending;
        self.drain_then_close = true;
    }

    fn start_option(&mut self, h: OptionHeaderRepr) {
        let known_data = matches!(h.option, option::EXPORT_NAME | option::INFO | option::GO);
        if known_data {
            let max = self
                .limits
                .max_option
                .min(if h.option == option::EXPORT_NAME {
                    wire::MAX_STRING as u32
                } else {
                    u32::MAX
                });
            if h.length > max {
                let e = ClientError::OptionTooLarge {
                    option: h.option,
                    length: h.length,
                };
                if h.option == option::EXPORT_NAME {
                    // No error reply exists for EXPORT_NAME: drop the client.
                    self.fatal(e);
                    return;
                }
                self.event(Event::Client(e));
                self.skip_option(h, reply::ERR_TOO_BIG);
                return;
            }
            self.input = Input::OptionData {
                option: h.option,
                length: h.length,
            };
            return;
        }
        let reply_type = match h.option {
            option::ABORT => reply::ACK,
            option::LIST if h.length == 0 => reply::ACK,
            option::LIST => {
                self.event(Event::Client(ClientError::MalformedOption(h.option)));
                reply::ERR_INVALID
            }
            _ => reply::ERR_UNSUP,
        };
        if h.option == option::LIST && h.length == 0 {
            self.input = Input::OptionData {
                option: h.option,
                length: 0,
            };
            return;
        }
        self.skip_option(h, reply_type);
    }

    fn skip_option(&mut self, h: OptionHeaderRepr, reply_type: u32) {
        self.input = Input::Skip {
            remaining: h.length,
            then: AfterSkip::OptionReply {
                option: h.option,
                reply_type,
            },
        };
    }

    fn find<'e>(exports: &'e [ExportInfo], name: &[u8]) -> Option<&'e ExportInfo> {
        if name.is_empty() {
            return exports.first();
        }
        exports.iter().find(|e| e.name.as_bytes() == name)
    }

    fn export_size(&self, e: &ExportInfo) -> u64 {
        let min = u64::from(self.limits.min_block.max(1));
        e.size - e.size % min
    }

    /// The transmission flags advertised for `e`.
    pub fn transmission_flags(&self, e: &ExportInfo) -> u16 {
        use transmission_flags::*;
        let mut f = HAS_FLAGS | SEND_FLUSH | SEND_FUA;
        if self.limits.multi_conn {
            f |= CAN_MULTI_CONN;
        }
        if e.read_only {
            f |= READ_ONLY;
        } else {
            f |= SEND_WRITE_ZEROES;
            if e.can_trim {
                f |= SEND_TRIM;
            }
        }
        f
    }

    fn handle_option(&mut self, opt: u32, data: &[u8], exports: &[ExportInfo]) {
        match opt {
            option::LIST => {
                for e in exports {
                    let d = wire::server_reply_data(e.name.as_bytes());
                    self.option_reply(opt, reply::SERVER, &d);
                }
                self.option_reply(opt, reply::ACK, &[]);
            }
            option::EXPORT_NAME => match Self::find(exports, data) {
                None => {
                    self.event(Event::Client(ClientError::UnknownExport(Name::new(data))));
                    // The protocol has no error reply here: end the session.
                    self.end_input();
                }
                Some(e) => {
                    let e = e.clone();
                    let size = self.export_size(&e);
                    let r = InfoExportRepr {
                        size,
                        flags: self.transmission_flags(&e),
                    }
                    .export_name_reply(self.no_zeroes);
                    self.push_out(r, 0);
                    self.enter_transmission(e, size);
                }
            },
            option::INFO | option::GO => {
                let Ok(req) = InfoRequest::parse(data) else {
                    self.event(Event::Client(ClientError::MalformedOption(opt)));
                    self.option_reply(opt, reply::ERR_INVALID, &[]);
                    return;
                };
                let Some(e) = Self::find(exports, req.name) else {
                    self.event(Event::Client(ClientError::UnknownExport(Name::new(
                        req.name,
                    ))));
                    self.option_reply(opt, reply::ERR_UNKNOWN, &[]);
                    return;
                };
                let e = e.clone();
                let size = self.export_size(&e);
                let mut d = [0u8; InfoExportRepr::LEN];
                InfoExportRepr {
                    size,
                    flags: self.transmission_flags(&e),
                }
                .emit(&mut d);
                self.option_reply(opt, reply::INFO, &d);
                if req.wants_block_size() {
                    let mut d = [0u8; InfoBlockSizeRepr::LEN];
                    InfoBlockSizeRepr {
                        minimum: self.limits.min_block,
                        preferred: self.limits.preferred_block,
                        maximum: self.limits.max_payload,
                    }
                    .emit(&mut d);
                    self.option_reply(opt, reply::INFO, &d);
                }
                self.option_reply(opt, reply::ACK, &[]);
                if opt == option::GO {
                    self.enter_transmission(e, size);
                }
            }
            _ => self.option_reply(opt, reply::ERR_UNSUP, &[]),
        }
    }

    fn enter_transmission(&mut self, e: ExportInfo, size: u64) {
        self.event(Event::Opened {
            export: Name::new(e.name.as_bytes()),
            size,
            read_only: e.read_only,
        });
        self.export = Some(Bound { info: e, size });
        self.phase = Phase::Transmission;
        self.input = Input::RequestHeader;
    }

    fn alloc_tag(&mut self) -> u32 {
        loop {
            let t = self.next_tag;
            self.next_tag = self.next_tag.wrapping_add(1);
            if !self.pending.iter().any(|p| p.tag == t) {
                return t;
            }
        }
    }

    /// Checks range and alignment: `None` if fine, else the error.
    fn range_error(&self, offset: u64, length: u32) -> Option<u32> {
        let size = self.export.as_ref().map_or(0, |b| b.size);
        let min = u64::from(self.limits.min_block.max(1));
        let end = offset.checked_add(u64::from(length));
        match end {
            Some(end)
                if end <= size
                    && offset.is_multiple_of(min)
                    && u64::from(length).is_multiple_of(min) =>
            {
                None
            }
            _ => Some(errno::EINVAL),
        }
    }

    /// The error for `r` before it reaches the disk: flags outside
    /// `allowed` (EINVAL), a write to a read-only export (EPERM), a bad range.
    fn check(&self, r: &RequestRepr, allowed: u16, writes: bool) -> Option<u32> {
        let read_only = self.export.as_ref().is_some_and(|b| b.info.read_only);
        if r.flags & !allowed != 0 {
            Some(errno::EINVAL)
        } else if writes && read_only {
            Some(errno::EPERM)
        } else {
            self.range_error(r.offset, r.length)
        }
    }

    /// Refuses `r` with `err`, or answers it at once if it has length 0;
    /// true when it still needs the disk.
    fn accept(&mut self, r: RequestRepr, err: Option<u32>) -> bool {
        match err {
            Some(e) => self.refuse(r, e),
            None if r.length == 0 => self.reply(r.handle, 0, Vec::new(), 0),
            None => return true,
        }
        false
    }

    fn start_request(&mut self, r: RequestRepr) {
        use command_flags::{FUA, NO_HOLE};
        let Some(b) = self.export.as_ref() else {
            self.fatal(ClientError::BadRequestMagic(0));
            return;
        };
        let (read_only, can_trim) = (b.info.read_only, b.info.can_trim);
        let max = self.limits.max_payload;
        match r.command {
            Command::Disconnect => self.end_input(),
            Command::Read | Command::Write if r.length > max => {
                self.fatal(ClientError::PayloadTooLarge {
                    command: r.command,
                    length: r.length,
                    max,
                });
            }
            Command::Read => {
                if self.accept(r, self.check(&r, FUA, false)) {
                    self.queue_op(r, DiskOp::Read { len: r.length }, r.length as usize, false);
                }
            }
            Command::Write => {
                match self.check(&r, FUA, true) {
                    Some(errno) => {
                        self.input = Input::Skip {
                            remaining: r.length,
                            then: AfterSkip::Refuse { request: r, errno },
                        };
                    }
                    None => {
                        // Admission reserved room for a maximal payload.
                        self.reserved = self.reserved.saturating_add(r.length as usize);
                        self.input = Input::WritePayload {
                            request: r,
                            data: Vec::with_capacity(r.length as usize),
                        };
                    }
                }
            }
            Command::Flush => {
                if r.flags & !FUA != 0 {
                    self.refuse(r, errno::EINVAL);
                } else if self.export.as_ref().is_some_and(|b| b.info.can_flush) {
                    self.queue_op(r, DiskOp::Flush, 0, false);
                } else {
                    // No volatile cache: completed writes are already durable.
                    self.reply(r.handle, 0, Vec::new(), 0);
                }
            }
            Command::Trim => {
                // A writable export that cannot trim refuses it as unsupported.
                let err = if !can_trim && !read_only {
                    Some(errno::EINVAL)
                } else {
                    self.check(&r, FUA, true)
                };
                if self.accept(r, err) {
                    let (_, flush_after) = self.fua_plan(&r, true);
                    self.queue_op(r, DiskOp::Trim { len: r.length }, 0, flush_after);
                }
            }
            Command::WriteZeroes => {
                if self.accept(r, self.check(&r, FUA | NO_HOLE, true)) {
                    let (fua, flush_after) = self.fua_plan(&r, false);
                    let op = DiskOp::WriteZeroes { len: r.length, fua };
                    self.queue_op(r, op, 0, flush_after);
                }
            }
            Command::Other(_) => self.refuse(r, errno::EINVAL),
        }
    }

    /// How `r`'s FUA flag is honoured: (the disk's own `fua`, flush after).
    /// A flush follows when the disk has a cache and (for writes) no FUA of
    /// its own; trims always flush.
    fn fua_plan(&self, r: &RequestRepr, trim: bool) -> (bool, bool) {
        let fua = r.flags & command_flags::FUA != 0;
        let (can_flush, can_fua) = self
            .export
            .as_ref()
            .map_or((false, false), |b| (b.info.can_flush, b.info.can_fua));
        let flush_after = fua && can_flush && (trim || !can_fua);
        (fua && !flush_after && can_fua, flush_after)
    }

    fn queue_write(&mut self, r: RequestRepr, data: Vec<u8>) {
        let len = data.len();
        if len == 0 {
            self.reply(r.handle, 0, Vec::new(), 0);
            return;
        }
        let (fua, flush_after) = self.fua_plan(&r, false);
        let op = DiskOp::Write { data, fua };
        // The payload was reserved when its header was admitted.
        self.queue_op_reserved(r, op, len, flush_after);
    }

    fn queue_op(&mut self, r: RequestRepr, op: DiskOp, reserve: usize, flush_after: bool) {
        self.reserved = self.reserved.saturating_add(reserve);
        self.queue_op_reserved(r, op, reserve, flush_after);
    }

    fn queue_op_reserved(
        &mut self,
        r: RequestRepr,
        op: DiskOp,
        reserved: usize,
        flush_after: bool,
    ) {
        let Some(export) = self.export.as_ref().map(|b| b.info.id) else {
            self.release(reserved);
            return;
        };
        let tag = self.alloc_tag();
        self.pending.push(Pending {
            tag,
            handle: r.handle,
            command: r.command,
            length: r.length,
            reserved,
            stage: Stage::Queued,
            flush_after,
        });
        self.queue.push_back(DiskRequest {
            tag,
            export,
            offset: r.offset,
            op,
        });
    }

    fn refuse(&mut self, r: RequestRepr, errno: u32) {
        self.stats.refused = self.stats.refused.saturating_add(1);
        if self.stats.refused <= MAX_REPORTS {
            self.event(Event::Client(ClientError::Refused {
                command: r.command,
                errno,
                offset: r.offset,
                length: r.length,
            }));
        }
        self.reply(r.handle, errno, Vec::new(), 0);
    }

    fn reply(&mut self, handle: u64, error: u32, data: Vec<u8>, release: usize) {
        self.stats.requests = self.stats.requests.saturating_add(1);
        let h = SimpleReplyRepr { error, handle }.to_bytes();
        if self.close == Some(CloseAction::Abort) {
            self.release(release);
            return;
        }
        self.push_out(h.to_vec(), 0);
        self.push_out(data, release);
    }

    /// The next disk operation to submit (marked submitted; give it back with
    /// [`Connection::retry`] if the disk was busy).
    pub fn next_disk_request(&mut self) -> Option<DiskRequest> {
        let req = self.queue.pop_front()?;
        if let Some(p) = self.pending.iter_mut().find(|p| p.tag == req.tag) {
            p.stage = Stage::Submitted;
        }
        Some(req)
    }

    /// The disk said Busy: `req` goes back to the front of the queue.
    pub fn retry(&mut self, req: DiskRequest) {
        if let Some(p) = self.pending.iter_mut().find(|p| p.tag == req.tag) {
            p.stage = Stage::Queued;
        }
        self.queue.push_front(req);
    }

    /// Whether disk operations wait to be submitted.
    pub fn has_disk_requests(&self) -> bool {
        !self.queue.is_empty()
    }

    /// A disk operation finished. Returns false (and changes nothing) for a
    /// tag that is not submitted and outstanding.
    pub fn complete(&mut self, tag: u32, result: Result<Vec<u8>, DiskError>) -> bool {
        let Some(i) = self
            .pending
            .iter()
            .position(|p| p.tag == tag && p.stage == Stage::Submitted)
        else {
            return false;
        };
        let export = self.export.as_ref().map_or(0, |b| b.info.id);
        let p = self.pending.get_mut(i);
        let Some(p) = p else { return false };
        let result = match result {
            Ok(data) if p.command == Command::Read && data.len() != p.length as usize => {
                Err(DiskError::Io)
            }
            r => r,
        };
        if result.is_ok() && p.flush_after {
            // Emulated FUA: the write is done, now make it durable.
            p.flush_after = false;
            p.stage = Stage::Queued;
            if p.command == Command::Write {
                // The data went to the disk; only the flush remains.
                let n = p.reserved;
                p.reserved = 0;
                self.stats.bytes_written = self.stats.bytes_written.saturating_add(n as u64);
                self.release(n);
            }
            self.queue.push_back(DiskRequest {
                tag,
                export,
                offset: 0,
                op: DiskOp::Flush,
            });
            return true;
        }
        let p = self.pending.swap_remove(i);
        match result {
            Ok(data) => {
                match p.command {
                    Command::Read => {
                        self.stats.bytes_read =
                            self.stats.bytes_read.saturating_add(data.len() as u64);
                    }
                    Command::Write => {
                        self.stats.bytes_written =
                            self.stats.bytes_written.saturating_add(p.reserved as u64);
                    }
                    _ => {}
                }
                if p.command == Command::Read {
                    self.reply(p.handle, 0, data, p.reserved);
                } else {
                    self.release(p.reserved);
                    self.reply(p.handle, 0, Vec::new(), 0);
                }
            }
            Err(e) => {
                self.stats.failed = self.stats.failed.saturating_add(1);
                if self.stats.failed <= MAX_REPORTS {
                    self.event(Event::Disk {
                        command: p.command,
                        error: e,
                    });
                }
                self.release(p.reserved);
                self.reply(p.handle, e.errno(), Vec::new(), 0);
            }
        }
        true
    }

    /// Whether reply bytes wait to be sent.
    pub fn wants_transmit(&self) -> bool {
        self.out_bytes > 0
    }

    /// Copies reply bytes into `buf`; returns how many.
    pub fn transmit(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            let Some(c) = self.out.front_mut() else { break };
            let src = c.bytes.get(c.sent..).unwrap_or_default();
            let k = src.len().min(buf.len() - n);
            if let (Some(d), Some(s)) = (buf.get_mut(n..n + k), src.get(..k)) {
                d.copy_from_slice(s);
            }
            c.sent += k;
            n += k;
            if c.sent >= c.bytes.len() {
                let release = c.release;
                self.out.pop_front();
                self.release(release);
            }
        }
        self.out_bytes = self.out_bytes.saturating_sub(n);
        n
    }

    /// The client closed its sending side (or the connection ended): read
    /// no more; close once every reply is out.
    pub fn peer_closed(&mut self) {
        if !matches!(self.input, Input::Stopped) {
            self.end_input();
        }
    }

    /// How to end the connection now, if it should end.
    pub fn close_action(&mut self) -> Option<CloseAction> {
        if self.close == Some(CloseAction::Abort) {
            return Some(CloseAction::Abort);
        }
        if self.drain_then_close && self.pending.is_empty() && self.out.is_empty() {
            return Some(CloseAction::Close);
        }
        None
    }

    /// The transport ended without a close (a reset, or a TCP timeout): the
    /// close event says so. Then [`Connection::abandon`].
    pub fn lost(&mut self) {
        self.stats.reset = true;
        self.abandon();
    }

    /// The socket is gone: drop queued replies and unsubmitted operations.
    /// Submitted operations stay outstanding until their completions come
    /// back ([`Connection::outstanding`]).
    pub fn abandon(&mut self) {
        self.abort();
        while let Some(c) = self.out.pop_front() {
            self.release(c.release);
        }
        self.out_bytes = 0;
        self.queue.clear();
        let mut released = 0usize;
        self.pending.retain(|p| {
            if p.stage == Stage::Queued {
                released = released.saturating_add(p.reserved);
                false
            } else {
                true
            }
        });
        self.release(released);
    }

    /// The `Closed` event with the final counters (once).
    pub fn closed_event(&mut self) -> Option<Event> {
        if self.closed_reported {
            return None;
        }
        self.closed_reported = true;
        Some(Event::Closed(self.stats))
    }
}
