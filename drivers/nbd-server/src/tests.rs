//! Host tests: wire views, the handshake, every option and command, error mapping, ordering, backpressure, hostile input.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

extern crate std;

use crate::conn::{ClientError, CloseAction, Connection, Event, Limits, Name, Phase};
use crate::disk::{DiskError, DiskOp, Disks, ExportInfo};
use crate::mem::MemDisks;
use crate::wire::*;
use alloc::vec;
use alloc::vec::Vec;
use std::format;
use std::string::ToString;

// ---------------------------------------------------------------- wire

#[test]
fn greeting_round_trip_and_bad_magic() {
    let mut b = [0u8; GreetingRepr::LEN];
    let g = GreetingRepr { flags: 3 };
    g.emit(&mut b);
    assert_eq!(&b[..8], b"NBDMAGIC");
    assert_eq!(&b[8..16], b"IHAVEOPT");
    assert_eq!(GreetingRepr::parse(&b), Ok(g));
    assert!(matches!(
        GreetingRepr::parse(&b[..17]),
        Err(Error::Truncated { need: 18, have: 17 })
    ));
    b[0] = b'X';
    assert!(matches!(
        GreetingRepr::parse(&b),
        Err(Error::BadMagic { .. })
    ));
}

#[test]
fn client_flags_unknown_bits() {
    let mut b = [0u8; 4];
    ClientFlagsRepr { flags: 3 }.emit(&mut b);
    assert_eq!(ClientFlagsRepr::parse(&b).unwrap().unknown(), 0);
    assert_eq!(ClientFlagsRepr { flags: 0x8001 }.unknown(), 0x8000);
    assert!(ClientFlagsRepr::parse(&b[..3]).is_err());
}

#[test]
fn option_header_view_and_repr() {
    let mut b = [0u8; 16];
    let r = OptionHeaderRepr {
        option: option::GO,
        length: 77,
    };
    r.emit(&mut b);
    let v = OptionHeader::new_checked(&b[..]).unwrap();
    assert_eq!((v.magic(), v.option(), v.length()), (IHAVEOPT, 7, 77));
    assert_eq!(OptionHeaderRepr::parse(&v), Ok(r));
    assert!(OptionHeader::new_checked(&b[..15]).is_err());
    b[3] ^= 1;
    let v = OptionHeader::new_checked(&b[..]).unwrap();
    assert!(matches!(
        OptionHeaderRepr::parse(&v),
        Err(Error::BadMagic { .. })
    ));
}

#[test]
fn option_reply_round_trip() {
    let m = OptionReplyRepr::message(option::LIST, reply::SERVER, b"abc");
    let h = OptionReplyRepr::parse(&m).unwrap();
    assert_eq!(
        h,
        OptionReplyRepr {
            option: 3,
            reply_type: 2,
            length: 3
        }
    );
    assert_eq!(&m[20..], b"abc");
    assert_eq!(reply::ERR_UNSUP, 0x8000_0001);
    assert_eq!(reply::ERR_UNKNOWN, 0x8000_0006);
    assert!(OptionReplyRepr::parse(&m[..19]).is_err());
}

#[test]
fn info_request_parse() {
    let d = InfoRequest::emit(b"xvda", &[info::BLOCK_SIZE, info::NAME]);
    let r = InfoRequest::parse(&d).unwrap();
    assert_eq!(r.name, b"xvda");
    assert!(r.wants_block_size());
    assert_eq!(r.requests().collect::<Vec<_>>(), vec![3, 1]);
    let empty = InfoRequest::emit(b"", &[]);
    let r = InfoRequest::parse(&empty).unwrap();
    assert!(r.name.is_empty() && !r.wants_block_size());
    // Lengths that do not match the data.
    for bad in [
        &d[..d.len() - 1],
        &d[..3],
        &[0, 0, 0, 9, b'a', 0, 0][..],
        &[0, 0, 0, 0, 0, 1][..],
        &[0, 0, 0, 0][..],
    ] {
        assert!(InfoRequest::parse(bad).is_err(), "{bad:?}");
    }
    let mut long = d.clone();
    long.push(0);
    assert!(InfoRequest::parse(&long).is_err());
}

#[test]
fn info_payloads_round_trip() {
    let e = InfoExportRepr {
        size: 1 << 30,
        flags: 0x14d,
    };
    let mut b = [0u8; 12];
    e.emit(&mut b);
    assert_eq!(InfoExportRepr::parse(&b), Ok(e));
    assert!(InfoExportRepr::parse(&b[..11]).is_err());
    assert_eq!(e.export_name_reply(true).len(), 10);
    let z = e.export_name_reply(false);
    assert_eq!(z.len(), 134);
    assert!(z[10..].iter().all(|&x| x == 0));
    let bs = InfoBlockSizeRepr {
        minimum: 512,
        preferred: 4096,
        maximum: 1 << 18,
    };
    let mut b = [0u8; 14];
    bs.emit(&mut b);
    assert_eq!(InfoBlockSizeRepr::parse(&b), Ok(bs));
    assert!(InfoExportRepr::parse(&b[..12]).is_err());
    let s = server_reply_data(b"xvdb");
    assert_eq!(parse_server_reply(&s), Ok(&b"xvdb"[..]));
    assert!(parse_server_reply(&s[..6]).is_err());
}

#[test]
fn request_view_and_repr() {
    let r = RequestRepr {
        flags: command_flags::FUA,
        command: Command::Write,
        handle: 0x1122_3344_5566_7788,
        offset: 4096,
        length: 512,
    };
    let b = r.to_bytes();
    let v = Request::new_checked(&b[..]).unwrap();
    assert_eq!(v.magic(), REQUEST_MAGIC);
    assert_eq!(v.command(), 1);
    assert_eq!(RequestRepr::parse(&v), Ok(r));
    assert!(Request::new_checked(&b[..27]).is_err());
    let mut bad = b;
    bad[0] = 0;
    let v = Request::new_checked(&bad[..]).unwrap();
    assert!(matches!(
        RequestRepr::parse(&v),
        Err(Error::BadMagic { .. })
    ));
    for t in 0..12u16 {
        assert_eq!(Command::from_u16(t).to_u16(), t);
    }
    assert_eq!(Command::Other(9).to_string(), "command 9");
}

#[test]
fn simple_reply_round_trip() {
    let r = SimpleReplyRepr {
        error: errno::EINVAL,
        handle: 42,
    };
    let b = r.to_bytes();
    assert_eq!(&b[..4], &[0x67, 0x44, 0x66, 0x98]);
    assert_eq!(SimpleReplyRepr::parse(&b), Ok(r));
    assert!(SimpleReplyRepr::parse(&b[..15]).is_err());
}

#[test]
fn errors_display() {
    let s = Error::Truncated { need: 4, have: 1 }.to_string();
    assert!(s.contains("1 of 4"), "{s}");
    assert!(Error::BadLength.to_string().contains("length"));
    assert_eq!(DiskError::Gone.to_string(), "disk detached");
    let e = ClientError::Refused {
        command: Command::Write,
        errno: errno::EPERM,
        offset: 0,
        length: 512,
    };
    assert_eq!(e.to_string(), "write at 0 length 512 refused with EPERM");
    assert_eq!(
        ClientError::UnknownExport(Name::new(b"x\x01'")).to_string(),
        "unknown export 'x\\x01\\x27'"
    );
    let long = Name::new(&[b'a'; 40]);
    assert!(long.to_string().ends_with("...'"));
}

// ---------------------------------------------------------------- harness

const MIB: usize = 1 << 20;

struct Harness {
    conn: Connection,
    disks: MemDisks,
    out: Vec<u8>,
    events: Vec<Event>,
}

impl Harness {
    fn new() -> Harness {
        let mut disks = MemDisks::new();
        disks.add("xvda", 4 * MIB, false);
        disks.add("ro", MIB, true);
        Harness::with(disks, Limits::default())
    }

    /// One writable 1 MiB disk `x` whose features `f` changes.
    fn one_disk(f: impl FnOnce(&mut ExportInfo)) -> Harness {
        let mut d = MemDisks::new();
        d.add("x", MIB, false);
        f(&mut d.disks[0].info);
        Harness::with(d, Limits::default())
    }

    fn with(disks: MemDisks, limits: Limits) -> Harness {
        let mut h = Harness {
            conn: Connection::new(limits),
            disks,
            out: Vec::new(),
            events: Vec::new(),
        };
        h.pump();
        h
    }

    /// Feeds all of `data` (pumping between partial takes); panics if the
    /// connection stops taking input for good.
    fn send(&mut self, data: &[u8]) {
        let mut rest = data;
        let mut stalls = 0;
        while !rest.is_empty() {
            let ex = self.disks.exports();
            let n = self.conn.receive(rest, &ex);
            rest = &rest[n..];
            self.pump();
            if n == 0 {
                stalls += 1;
                assert!(stalls < 1000, "input stalled");
            }
        }
        self.pump();
    }

    fn pump(&mut self) {
        loop {
            let mut progress = false;
            while let Some(r) = self.conn.next_disk_request() {
                let (tag, export, offset) = (r.tag, r.export, r.offset);
                match self.disks.submit(0, u64::from(tag), export, offset, r.op) {
                    Ok(()) => {}
                    Err((DiskError::Busy, op)) => {
                        self.conn.retry(crate::conn::DiskRequest {
                            tag,
                            export,
                            offset,
                            op,
                        });
                        break;
                    }
                    Err((e, _)) => {
                        self.conn.complete(tag, Err(e));
                    }
                }
                progress = true;
            }
            while let Some((tag, res)) = self.disks.poll_completion(0) {
                assert!(self.conn.complete(tag as u32, res));
                progress = true;
            }
            let mut buf = [0u8; 7000];
            loop {
                let n = self.conn.transmit(&mut buf);
                if n == 0 {
                    break;
                }
                self.out.extend_from_slice(&buf[..n]);
                progress = true;
            }
            while let Some(e) = self.conn.next_event() {
                self.events.push(e);
            }
            if !progress {
                break;
            }
        }
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        assert!(
            self.out.len() >= n,
            "want {n} bytes, have {}",
            self.out.len()
        );
        self.out.drain(..n).collect()
    }

    fn handshake(&mut self, flags: u32) {
        let g = self.take(GreetingRepr::LEN);
        assert_eq!(GreetingRepr::parse(&g).unwrap().flags, 3);
        self.send(&flags.to_be_bytes());
    }

    fn option(&mut self, opt: u32, data: &[u8]) {
        self.send(&option_bytes(opt, data));
    }

    fn option_reply(&mut self) -> (OptionReplyRepr, Vec<u8>) {
        let h = OptionReplyRepr::parse(&self.take(20)).unwrap();
        let d = self.take(h.length as usize);
        (h, d)
    }

    fn go(&mut self, name: &str) -> InfoExportRepr {
        self.handshake(3);
        self.option(
            option::GO,
            &InfoRequest::emit(name.as_bytes(), &[info::BLOCK_SIZE]),
        );
        let (h, d) = self.option_reply();
        assert_eq!(h.reply_type, reply::INFO);
        let e = InfoExportRepr::parse(&d).unwrap();
        let (h, d) = self.option_reply();
        assert_eq!((h.reply_type, d.len()), (reply::INFO, 14));
        let (h, _) = self.option_reply();
        assert_eq!(h.reply_type, reply::ACK);
        assert_eq!(self.conn.phase(), Phase::Transmission);
        e
    }

    fn request(
        &mut self,
        command: Command,
        flags: u16,
        handle: u64,
        offset: u64,
        length: u32,
        payload: &[u8],
    ) {
        let mut b = request_bytes(command, flags, handle, offset, length).to_vec();
        b.extend_from_slice(payload);
        self.send(&b);
    }

    fn reply(&mut self) -> SimpleReplyRepr {
        SimpleReplyRepr::parse(&self.take(16)).unwrap()
    }

    /// The next reply is `error` for `handle`.
    #[track_caller]
    fn expect_reply(&mut self, error: u32, handle: u64) {
        assert_eq!(self.reply(), SimpleReplyRepr { error, handle });
    }

    fn client_errors(&self) -> Vec<ClientError> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Client(c) => Some(*c),
                _ => None,
            })
            .collect()
    }
}

/// A request header.
fn request_bytes(
    command: Command,
    flags: u16,
    handle: u64,
    offset: u64,
    length: u32,
) -> [u8; RequestRepr::LEN] {
    RequestRepr {
        flags,
        command,
        handle,
        offset,
        length,
    }
    .to_bytes()
}

/// An option request with its data.
fn option_bytes(option: u32, data: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; OptionHeaderRepr::LEN];
    OptionHeaderRepr {
        option,
        length: data.len() as u32,
    }
    .emit(&mut b);
    b.extend_from_slice(data);
    b
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

// ---------------------------------------------------------------- handshake

#[test]
fn greeting_is_fixed_newstyle_no_zeroes() {
    let mut h = Harness::new();
    assert_eq!(h.out.len(), 18);
    assert_eq!(h.conn.phase(), Phase::Handshake);
    h.handshake(client_flags::FIXED_NEWSTYLE);
    assert_eq!(h.conn.phase(), Phase::Options);
}

#[test]
fn unknown_client_flags_drop_the_client() {
    let mut h = Harness::new();
    h.handshake(3 | 4);
    assert_eq!(h.conn.close_action(), Some(CloseAction::Abort));
    assert_eq!(h.client_errors(), vec![ClientError::UnknownClientFlags(7)]);
    assert_eq!(h.conn.receive(b"more", &[]), 0);
}

#[test]
fn go_with_block_size_and_flags() {
    let mut h = Harness::new();
    let e = h.go("xvda");
    assert_eq!(e.size, 4 * MIB as u64);
    use transmission_flags::*;
    assert_eq!(
        e.flags,
        HAS_FLAGS | SEND_FLUSH | SEND_FUA | CAN_MULTI_CONN | SEND_WRITE_ZEROES | SEND_TRIM
    );
    assert!(
        matches!(h.events[0], Event::Opened { size, read_only: false, .. } if size == 4 * MIB as u64)
    );
}

#[test]
fn go_block_size_values() {
    let mut h = Harness::new();
    h.handshake(3);
    h.option(
        option::INFO,
        &InfoRequest::emit(b"xvda", &[info::BLOCK_SIZE]),
    );
    let _ = h.option_reply();
    let (_, d) = h.option_reply();
    let bs = InfoBlockSizeRepr::parse(&d).unwrap();
    assert_eq!(
        (bs.minimum, bs.preferred, bs.maximum),
        (512, 4096, 256 * 1024)
    );
    for v in [bs.minimum, bs.preferred, bs.maximum] {
        assert!(v.is_power_of_two());
    }
    let (a, _) = h.option_reply();
    assert_eq!(a.reply_type, reply::ACK);
    // INFO stays in negotiation.
    assert_eq!(h.conn.phase(), Phase::Options);
}

#[test]
fn go_without_block_size_request_sends_only_export() {
    let mut h = Harness::new();
    h.handshake(3);
    h.option(option::GO, &InfoRequest::emit(b"ro", &[]));
    let (r, d) = h.option_reply();
    assert_eq!(r.reply_type, reply::INFO);
    let e = InfoExportRepr::parse(&d).unwrap();
    use transmission_flags::*;
    assert_eq!(
        e.flags,
        HAS_FLAGS | SEND_FLUSH | SEND_FUA | CAN_MULTI_CONN | READ_ONLY
    );
    assert_eq!(h.option_reply().0.reply_type, reply::ACK);
    assert!(h.out.is_empty());
}

#[test]
fn export_size_rounded_to_minimum_block() {
    let mut d = MemDisks::new();
    d.add("odd", 4096 + 100, false);
    let mut h = Harness::with(d, Limits::default());
    assert_eq!(h.go("odd").size, 4096);
}

#[test]
fn empty_name_is_the_first_export() {
    let mut h = Harness::new();
    assert_eq!(h.go("").size, 4 * MIB as u64);
}

#[test]
fn unknown_export_in_go_and_info_goes_on() {
    let mut h = Harness::new();
    h.handshake(3);
    for opt in [option::GO, option::INFO] {
        h.option(opt, &InfoRequest::emit(b"nope", &[]));
        let (r, _) = h.option_reply();
        assert_eq!((r.option, r.reply_type), (opt, reply::ERR_UNKNOWN));
    }
    assert_eq!(h.conn.phase(), Phase::Options);
    assert!(
        matches!(h.client_errors()[0], ClientError::UnknownExport(n) if n.as_bytes() == b"nope")
    );
    h.option(option::GO, &InfoRequest::emit(b"xvda", &[]));
    assert_eq!(h.option_reply().0.reply_type, reply::INFO);
    assert_eq!(h.option_reply().0.reply_type, reply::ACK);
}

#[test]
fn malformed_go_is_invalid_and_goes_on() {
    let mut h = Harness::new();
    h.handshake(3);
    h.option(option::GO, &[0, 0, 0, 50, b'x']);
    assert_eq!(h.option_reply().0.reply_type, reply::ERR_INVALID);
    assert_eq!(
        h.client_errors(),
        vec![ClientError::MalformedOption(option::GO)]
    );
    assert_eq!(h.conn.phase(), Phase::Options);
}

#[test]
fn oversized_option_is_skipped_and_refused() {
    let mut h = Harness::new();
    h.handshake(3);
    h.option(option::GO, &vec![0u8; 20_000]);
    assert_eq!(h.option_reply().0.reply_type, reply::ERR_TOO_BIG);
    // An unknown option of any size is skipped unbuffered.
    h.option(99, &vec![7u8; 100_000]);
    assert_eq!(h.option_reply().0.reply_type, reply::ERR_UNSUP);
    assert_eq!(h.go_after_handshake("xvda"), 4 * MIB as u64);
}

impl Harness {
    fn go_after_handshake(&mut self, name: &str) -> u64 {
        self.option(option::GO, &InfoRequest::emit(name.as_bytes(), &[]));
        let (_, d) = self.option_reply();
        assert_eq!(self.option_reply().0.reply_type, reply::ACK);
        InfoExportRepr::parse(&d).unwrap().size
    }
}

#[test]
fn unknown_options_get_unsup_and_negotiation_goes_on() {
    let mut h = Harness::new();
    h.handshake(3);
    for opt in [
        option::STRUCTURED_REPLY,
        option::STARTTLS,
        option::LIST_META_CONTEXT,
        option::SET_META_CONTEXT,
        4,
        1000,
    ] {
        h.option(opt, b"some data");
        let (r, d) = h.option_reply();
        assert_eq!(
            (r.option, r.reply_type, d.len()),
            (opt, reply::ERR_UNSUP, 0)
        );
    }
    // QEMU 7.2's order: structured replies first, then GO.
    h.option(option::STRUCTURED_REPLY, &[]);
    assert_eq!(h.option_reply().0.reply_type, reply::ERR_UNSUP);
    assert_eq!(h.go_after_handshake("ro"), MIB as u64);
}

#[test]
fn list_names_every_export() {
    let mut h = Harness::new();
    h.handshake(3);
    h.option(option::LIST, &[]);
    let mut names = Vec::new();
    loop {
        let (r, d) = h.option_reply();
        if r.reply_type == reply::ACK {
            break;
        }
        assert_eq!(r.reply_type, reply::SERVER);
        names.push(parse_server_reply(&d).unwrap().to_vec());
    }
    assert_eq!(names, vec![b"xvda".to_vec(), b"ro".to_vec()]);
    h.option(option::LIST, b"x");
    assert_eq!(h.option_reply().0.reply_type, reply::ERR_INVALID);
}

#[test]
fn abort_acks_then_closes() {
    let mut h = Harness::new();
    h.handshake(3);
    h.option(option::ABORT, b"ignored");
    let (r, _) = h.option_reply();
    assert_eq!((r.option, r.reply_type), (option::ABORT, reply::ACK));
    assert_eq!(h.conn.close_action(), Some(CloseAction::Close));
    assert_eq!(h.conn.receive(b"x", &[]), 0);
}

#[test]
fn export_name_with_and_without_zeroes() {
    for (flags, len) in [(3u32, 10usize), (1, 134)] {
        let mut h = Harness::new();
        h.handshake(flags);
        h.option(option::EXPORT_NAME, b"xvda");
        let r = h.take(len);
        assert_eq!(
            u64::from_be_bytes(r[..8].try_into().unwrap()),
            4 * MIB as u64
        );
        assert!(h.out.is_empty());
        assert_eq!(h.conn.phase(), Phase::Transmission);
    }
}

#[test]
fn export_name_unknown_closes() {
    let mut h = Harness::new();
    h.handshake(3);
    h.option(option::EXPORT_NAME, b"zzz");
    assert!(h.out.is_empty());
    assert_eq!(h.conn.close_action(), Some(CloseAction::Close));
    assert!(matches!(
        h.client_errors()[0],
        ClientError::UnknownExport(_)
    ));
}

#[test]
fn bad_option_magic_drops() {
    let mut h = Harness::new();
    h.handshake(3);
    h.send(&[0u8; 16]);
    assert_eq!(h.conn.close_action(), Some(CloseAction::Abort));
    assert_eq!(h.client_errors(), vec![ClientError::BadOptionMagic(0)]);
}

// ---------------------------------------------------------------- commands

#[test]
fn write_read_round_trip_with_fua_and_flush() {
    let mut h = Harness::new();
    h.go("xvda");
    let data = pattern(8192, 5);
    h.request(Command::Write, command_flags::FUA, 1, 4096, 8192, &data);
    h.expect_reply(0, 1);
    assert_eq!(&h.disks.disks[0].data[4096..4096 + 8192], &data[..]);
    assert_eq!(h.disks.disks[0].fua_writes, 1);
    h.request(Command::Read, 0, 2, 4096, 8192, &[]);
    h.expect_reply(0, 2);
    assert_eq!(h.take(8192), data);
    h.request(Command::Flush, 0, 3, 0, 0, &[]);
    assert_eq!(h.reply().error, 0);
    assert_eq!(h.disks.disks[0].flushes, 1);
    let s = h.conn.stats();
    assert_eq!((s.requests, s.bytes_read, s.bytes_written), (3, 8192, 8192));
    assert_eq!(h.conn.reserved(), 0);
}

#[test]
fn trim_and_write_zeroes() {
    let mut h = Harness::new();
    h.go("xvda");
    h.request(Command::Write, 0, 1, 0, 4096, &[0xff; 4096]);
    assert_eq!(h.reply().error, 0);
    h.request(
        Command::WriteZeroes,
        command_flags::NO_HOLE,
        2,
        0,
        2048,
        &[],
    );
    assert_eq!(h.reply().error, 0);
    assert!(h.disks.disks[0].data[..2048].iter().all(|&b| b == 0));
    assert!(h.disks.disks[0].data[2048..4096].iter().all(|&b| b == 0xff));
    h.request(Command::Trim, 0, 3, 2048, 2048, &[]);
    assert_eq!(h.reply().error, 0);
    assert_eq!(h.disks.disks[0].trims, 1);
    // A large write-zeroes (beyond the payload maximum) is fine: no payload.
    h.request(Command::WriteZeroes, 0, 4, 0, 2 * MIB as u32, &[]);
    assert_eq!(h.reply().error, 0);
    // Fast-zero was not advertised.
    h.request(
        Command::WriteZeroes,
        command_flags::FAST_ZERO,
        5,
        0,
        512,
        &[],
    );
    assert_eq!(h.reply().error, errno::EINVAL);
}

#[test]
fn trim_without_disk_support_is_einval_and_not_advertised() {
    let mut h = Harness::one_disk(|i| i.can_trim = false);
    let e = h.go("x");
    assert_eq!(e.flags & transmission_flags::SEND_TRIM, 0);
    h.request(Command::Trim, 0, 1, 0, 512, &[]);
    assert_eq!(h.reply().error, errno::EINVAL);
    assert!(h.disks.log.is_empty());
}

#[test]
fn read_only_refuses_writes_with_eperm() {
    let mut h = Harness::new();
    h.go("ro");
    h.request(Command::Write, 0, 1, 0, 4096, &[1; 4096]);
    h.request(Command::Trim, 0, 2, 0, 4096, &[]);
    h.request(Command::WriteZeroes, 0, 3, 0, 4096, &[]);
    for i in 1..=3 {
        h.expect_reply(errno::EPERM, i);
    }
    // Reads and flushes work; the write's payload was skipped, not parsed.
    h.request(Command::Read, 0, 4, 0, 512, &[]);
    assert_eq!(h.reply().error, 0);
    assert_eq!(h.take(512), vec![0u8; 512]);
    h.request(Command::Flush, 0, 5, 0, 0, &[]);
    assert_eq!(h.reply().error, 0);
    assert!(h.disks.disks[1].data.iter().all(|&b| b == 0));
    assert!(matches!(
        h.client_errors()[0],
        ClientError::Refused {
            command: Command::Write,
            errno: errno::EPERM,
            ..
        }
    ));
    assert_eq!(h.conn.stats().refused, 3);
}

#[test]
fn out_of_range_and_misaligned_are_einval() {
    let mut h = Harness::new();
    h.go("xvda");
    let size = 4 * MIB as u64;
    let cases: &[(Command, u64, u32)] = &[
        (Command::Read, size, 512),
        (Command::Read, size - 512, 1024),
        (Command::Read, u64::MAX - 511, 1024),
        (Command::Read, 100, 512),
        (Command::Read, 0, 100),
        (Command::Trim, size, 512),
        (Command::WriteZeroes, 1, 512),
    ];
    for (i, &(c, off, len)) in cases.iter().enumerate() {
        h.request(c, 0, i as u64, off, len, &[]);
        let r = h.reply();
        assert_eq!(
            (r.error, r.handle),
            (errno::EINVAL, i as u64),
            "{c:?} {off} {len}"
        );
    }
    // A misaligned write: payload skipped, EINVAL, the stream stays in sync.
    h.request(Command::Write, 0, 50, 0, 700, &[9u8; 700]);
    assert_eq!(h.reply().error, errno::EINVAL);
    h.request(Command::Write, 0, 51, size - 512, 1024, &[9u8; 1024]);
    assert_eq!(h.reply().error, errno::EINVAL);
    h.request(Command::Read, 0, 52, 0, 512, &[]);
    assert_eq!(h.reply().error, 0);
    h.take(512);
    assert!(h.disks.disks[0].data.iter().all(|&b| b == 0));
    assert!(h.disks.log.iter().all(|l| l.4 == "read"));
    // Only the first few refusals are reported.
    assert_eq!(h.client_errors().len(), crate::conn::MAX_REPORTS as usize);
}

#[test]
fn unknown_command_and_flags_are_einval() {
    let mut h = Harness::new();
    h.go("xvda");
    h.request(Command::Other(5), 0, 1, 0, 512, &[]);
    h.request(Command::Other(200), 0, 2, 0, 0, &[]);
    h.request(Command::Read, command_flags::DF, 3, 0, 512, &[]);
    h.request(Command::Flush, command_flags::NO_HOLE, 4, 0, 0, &[]);
    for i in 1..=4 {
        h.expect_reply(errno::EINVAL, i);
    }
    assert_eq!(h.conn.phase(), Phase::Transmission);
}

#[test]
fn disk_errors_map_to_errno() {
    let mut h = Harness::new();
    h.go("xvda");
    h.disks.fail_next = 2;
    h.request(Command::Write, 0, 1, 0, 512, &[1; 512]);
    h.request(Command::Read, 0, 2, 0, 512, &[]);
    h.expect_reply(errno::EIO, 1);
    // A failed read sends no data.
    h.expect_reply(errno::EIO, 2);
    assert!(h.out.is_empty());
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::Disk {
            command: Command::Write,
            error: DiskError::Io
        }
    )));
    for (e, n) in [
        (DiskError::Io, errno::EIO),
        (DiskError::Gone, errno::EIO),
        (DiskError::ReadOnly, errno::EPERM),
        (DiskError::OutOfRange, errno::EINVAL),
        (DiskError::Unsupported, errno::EINVAL),
    ] {
        assert_eq!(e.errno(), n);
    }
    assert_eq!(h.conn.reserved(), 0);
}

#[test]
fn submit_errors_fail_the_request() {
    let mut h = Harness::new();
    h.go("xvda");
    let id = h.conn.next_disk_request();
    assert!(id.is_none());
    // Remove the disk under the connection: submit returns Gone.
    h.disks.disks.clear();
    h.request(Command::Write, 0, 7, 0, 512, &[1; 512]);
    h.expect_reply(errno::EIO, 7);
}

#[test]
fn short_read_from_disk_is_eio() {
    let mut h = Harness::new();
    h.go("xvda");
    h.disks.hold = true;
    h.request(Command::Read, 0, 1, 0, 1024, &[]);
    let c = h.disks.held.pop().unwrap();
    assert!(h.conn.complete(c.tag as u32, Ok(vec![0u8; 1000])));
    h.pump();
    h.expect_reply(errno::EIO, 1);
    assert!(h.out.is_empty());
    // The same tag again, and an unknown tag: ignored.
    assert!(!h.conn.complete(c.tag as u32, Ok(vec![])));
    assert!(!h.conn.complete(12345, Ok(vec![])));
}

#[test]
fn busy_disk_is_retried() {
    let mut h = Harness::new();
    h.go("xvda");
    h.disks.busy_next = 3;
    h.request(Command::Write, 0, 1, 0, 512, &[3; 512]);
    // The harness stops at Busy; pumping again retries.
    for _ in 0..4 {
        h.pump();
    }
    h.expect_reply(0, 1);
    assert_eq!(h.disks.disks[0].data[0], 3);
}

#[test]
fn write_acked_only_after_completion_and_out_of_order_replies() {
    let mut h = Harness::new();
    h.go("xvda");
    h.disks.hold = true;
    h.request(Command::Write, 0, 10, 0, 512, &[1; 512]);
    h.request(Command::Read, 0, 11, 512, 512, &[]);
    h.request(Command::Write, command_flags::FUA, 12, 1024, 512, &[2; 512]);
    h.request(Command::Flush, 0, 13, 0, 0, &[]);
    assert!(
        h.out.is_empty(),
        "nothing is acknowledged before the disk completes"
    );
    assert_eq!(h.disks.held.len(), 4);
    h.disks.release(&[3, 1, 2, 0]);
    h.pump();
    let mut handles = Vec::new();
    for _ in 0..4 {
        let r = h.reply();
        assert_eq!(r.error, 0);
        if r.handle == 11 {
            h.take(512);
        }
        handles.push(r.handle);
    }
    assert_eq!(handles, vec![13, 11, 12, 10]);
}

#[test]
fn fua_emulated_with_flush_when_disk_lacks_fua() {
    let mut h = Harness::one_disk(|i| i.can_fua = false);
    h.go("x");
    h.disks.hold = true;
    h.request(Command::Write, command_flags::FUA, 1, 0, 512, &[4; 512]);
    assert_eq!(h.disks.held.len(), 1);
    h.disks.release(&[]);
    h.pump();
    // The write completed; the flush is now held: still no reply.
    assert!(h.out.is_empty());
    assert_eq!(
        h.disks.log.iter().map(|l| l.4).collect::<Vec<_>>(),
        vec!["write", "flush"]
    );
    h.disks.release(&[]);
    h.pump();
    h.expect_reply(0, 1);
    assert_eq!(h.disks.disks[0].fua_writes, 0);
    assert_eq!(h.disks.disks[0].flushes, 1);
    // A failing flush fails the FUA write.
    h.disks.hold = false;
    h.disks.fail_next = 0;
    h.request(Command::Write, command_flags::FUA, 2, 0, 512, &[5; 512]);
    assert_eq!(h.reply().error, 0);
}

#[test]
fn fua_flush_failure_is_eio() {
    let mut h = Harness::one_disk(|i| i.can_fua = false);
    h.go("x");
    h.disks.hold = true;
    h.request(Command::Write, command_flags::FUA, 1, 0, 512, &[4; 512]);
    h.disks.release(&[]);
    h.pump();
    let flush = h.disks.held.pop().unwrap();
    assert!(h.conn.complete(flush.tag as u32, Err(DiskError::Io)));
    h.pump();
    h.expect_reply(errno::EIO, 1);
}

#[test]
fn flush_without_cache_answers_at_once() {
    let mut h = Harness::one_disk(|i| {
        i.can_flush = false;
        i.can_fua = false;
    });
    h.go("x");
    h.request(Command::Flush, 0, 1, 0, 0, &[]);
    h.request(Command::Write, command_flags::FUA, 2, 0, 512, &[1; 512]);
    assert_eq!(h.reply().handle, 1);
    assert_eq!(h.reply().handle, 2);
    assert_eq!(
        h.disks.log.iter().map(|l| l.4).collect::<Vec<_>>(),
        vec!["write"]
    );
}

#[test]
fn disconnect_waits_for_outstanding_then_closes() {
    let mut h = Harness::new();
    h.go("xvda");
    h.disks.hold = true;
    h.request(Command::Write, 0, 1, 0, 512, &[1; 512]);
    h.request(Command::Disconnect, 0, 2, 0, 0, &[]);
    assert_eq!(h.conn.close_action(), None);
    // Bytes after DISC are not read.
    assert_eq!(h.conn.receive(b"junk", &[]), 0);
    h.disks.release(&[]);
    h.pump();
    assert_eq!(h.reply().handle, 1);
    assert_eq!(h.conn.close_action(), Some(CloseAction::Close));
    assert!(matches!(h.conn.closed_event(), Some(Event::Closed(s)) if s.requests == 1));
    assert_eq!(h.conn.closed_event(), None);
}

#[test]
fn malformed_requests_end_the_connection() {
    for (bytes, expect) in [
        (
            {
                let mut b = request_bytes(Command::Read, 0, 1, 0, 512);
                b[0] = 0xde;
                b.to_vec()
            },
            "magic",
        ),
        (
            request_bytes(Command::Write, 0, 1, 0, 256 * 1024 + 512).to_vec(),
            "exceeds",
        ),
        (
            request_bytes(Command::Read, 0, 1, 0, u32::MAX).to_vec(),
            "exceeds",
        ),
    ] {
        let mut h = Harness::new();
        h.go("xvda");
        h.send(&bytes);
        assert_eq!(h.conn.close_action(), Some(CloseAction::Abort));
        let msg = h.client_errors()[0].to_string();
        assert!(msg.contains(expect) && msg.contains("dropped"), "{msg}");
        assert!(h.out.is_empty());
    }
}

#[test]
fn backpressure_stops_reading_at_the_budget() {
    let mut h = Harness::new();
    h.go("xvda");
    h.disks.hold = true;
    // Two maximal reads fill the 512 KiB budget; the third header is not taken.
    let max = 256 * 1024u32;
    let mut bytes = Vec::new();
    for i in 0..3u64 {
        bytes.extend_from_slice(&request_bytes(Command::Read, 0, i, i * u64::from(max), max));
    }
    let ex = h.disks.exports();
    let n = h.conn.receive(&bytes, &ex);
    // The first is admitted (0 + max <= budget), the second too (max + max <= budget),
    // the third waits.
    assert_eq!(n, 2 * RequestRepr::LEN);
    assert!(!h.conn.wants_input());
    assert_eq!(h.conn.reserved(), 2 * max as usize);
    h.pump();
    assert_eq!(h.conn.receive(&bytes[n..], &ex), 0);
    // Completing one read is not enough: its data still waits to be sent.
    let c = h.disks.held.remove(0);
    h.conn.complete(c.tag as u32, c.result);
    assert_eq!(h.conn.receive(&bytes[n..], &ex), 0);
    // Sending it frees the budget.
    let mut sink = vec![0u8; 300_000];
    while h.conn.transmit(&mut sink) > 0 {}
    assert!(h.conn.wants_input());
    assert_eq!(h.conn.receive(&bytes[n..], &ex), RequestRepr::LEN);
}

#[test]
fn backpressure_bounds_pending_requests() {
    let mut h = Harness::new();
    h.go("xvda");
    h.disks.hold = true;
    let mut bytes = Vec::new();
    for i in 0..100u64 {
        bytes.extend_from_slice(&request_bytes(Command::Flush, 0, i, 0, 0));
    }
    let ex = h.disks.exports();
    let n = h.conn.receive(&bytes, &ex);
    assert_eq!(n, 64 * RequestRepr::LEN);
}

#[test]
fn negotiation_output_is_bounded() {
    let mut d = MemDisks::new();
    for i in 0..8 {
        d.add(&format!("{:0>300}", i), 4096, false);
    }
    let mut h = Harness::with(d, Limits::default());
    h.take(18);
    let ex = h.disks.exports();
    h.conn.receive(&3u32.to_be_bytes(), &ex);
    let list = option_bytes(option::LIST, &[]);
    let many: Vec<u8> = list.iter().copied().cycle().take(16 * 1000).collect();
    // Without transmitting, the connection stops taking options.
    let n = h.conn.receive(&many, &ex);
    assert!(n < many.len(), "{n}");
    assert!(!h.conn.wants_input());
}

#[test]
fn abandon_releases_unsubmitted_and_keeps_outstanding() {
    let mut h = Harness::new();
    h.go("xvda");
    h.disks.hold = true;
    h.request(Command::Read, 0, 1, 0, 4096, &[]);
    h.request(Command::Write, 0, 2, 0, 4096, &[1; 4096]);
    // A partial write payload.
    let hdr = request_bytes(Command::Write, 0, 3, 0, 4096);
    let ex = h.disks.exports();
    h.conn.receive(&hdr, &ex);
    h.conn.receive(&[0u8; 100], &ex);
    assert_eq!(h.conn.reserved(), 3 * 4096);
    h.conn.abandon();
    assert_eq!(h.conn.outstanding(), 2);
    assert_eq!(h.conn.reserved(), 2 * 4096);
    assert_eq!(h.conn.close_action(), Some(CloseAction::Abort));
    h.disks.release(&[]);
    while let Some((tag, r)) = h.disks.poll_completion(0) {
        assert!(h.conn.complete(tag as u32, r));
    }
    assert_eq!(h.conn.outstanding(), 0);
    assert_eq!(h.conn.reserved(), 0);
    assert!(!h.conn.wants_transmit());
}

#[test]
fn byte_at_a_time_input() {
    let mut h = Harness::new();
    h.take(18);
    let mut script = 3u32.to_be_bytes().to_vec();
    script.extend_from_slice(&option_bytes(option::GO, &InfoRequest::emit(b"xvda", &[])));
    script.extend_from_slice(&request_bytes(Command::Write, 0, 9, 0, 512));
    script.extend_from_slice(&[0x5a; 512]);
    for b in script {
        h.send(&[b]);
    }
    let _ = h.option_reply();
    let _ = h.option_reply();
    h.expect_reply(0, 9);
    assert_eq!(h.disks.disks[0].data[511], 0x5a);
}

// ---------------------------------------------------------------- hostile

/// xorshift64*: deterministic pseudo-random bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Valid message pieces to splice into random input, so the fuzzing gets past the magic checks.
fn pieces() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    v.push(3u32.to_be_bytes().to_vec());
    for (opt, data) in [
        (option::GO, InfoRequest::emit(b"xvda", &[3])),
        (option::INFO, InfoRequest::emit(b"", &[3, 1])),
        (option::LIST, Vec::new()),
        (option::EXPORT_NAME, b"xvda".to_vec()),
        (option::STRUCTURED_REPLY, Vec::new()),
        (option::ABORT, Vec::new()),
    ] {
        v.push(option_bytes(opt, &data));
    }
    for c in [0u16, 1, 2, 3, 4, 5, 6, 7] {
        let mut b = request_bytes(
            Command::from_u16(c),
            (c & 1) * command_flags::FUA,
            u64::from(c),
            512 * u64::from(c),
            1024,
        )
        .to_vec();
        if c == 1 {
            b.extend_from_slice(&[0xab; 1024]);
        }
        v.push(b);
    }
    v
}

#[test]
fn hostile_bytes_and_completions_never_panic() {
    let pieces = pieces();
    for seed in 1..400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut disks = MemDisks::new();
        disks.add("xvda", 64 * 1024, false);
        disks.add("ro", 8192, true);
        disks.hold = rng.below(2) == 0;
        let limits = Limits {
            budget: 64 * 1024,
            max_payload: 16 * 1024,
            ..Limits::default()
        };
        let mut conn = Connection::new(limits);
        let mut sink = [0u8; 1500];
        for _ in 0..200 {
            let ex = disks.exports();
            let mut input = Vec::new();
            match rng.below(4) {
                0 => {
                    for _ in 0..rng.below(64) {
                        input.push(rng.next() as u8);
                    }
                }
                _ => {
                    let p = &pieces[rng.below(pieces.len() as u64) as usize];
                    input.extend_from_slice(p);
                    if rng.below(5) == 0 && !input.is_empty() {
                        let i = rng.below(input.len() as u64) as usize;
                        input[i] ^= 1 << rng.below(8);
                    }
                }
            }
            let n = conn.receive(&input, &ex);
            assert!(n <= input.len());
            while let Some(r) = conn.next_disk_request() {
                if rng.below(10) == 0 {
                    conn.retry(r);
                    break;
                }
                if disks
                    .submit(0, u64::from(r.tag), r.export, r.offset, r.op)
                    .is_err()
                {
                    conn.complete(r.tag, Err(DiskError::Gone));
                }
            }
            if rng.below(3) == 0 {
                disks.release(&[rng.below(4) as usize, rng.below(4) as usize]);
            }
            while let Some((tag, res)) = disks.poll_completion(0) {
                // Sometimes corrupt the completion.
                let res = match (rng.below(8), res) {
                    (0, Ok(mut d)) => {
                        d.truncate(d.len() / 2);
                        Ok(d)
                    }
                    (1, _) => Err(DiskError::Io),
                    (_, r) => r,
                };
                conn.complete(tag as u32, res);
                if rng.below(16) == 0 {
                    conn.complete(rng.next() as u32, Ok(vec![0; 3]));
                }
            }
            if rng.below(2) == 0 {
                conn.transmit(&mut sink);
            }
            while conn.next_event().is_some() {}
            assert!(conn.reserved() <= limits.budget, "seed {seed}");
            if rng.below(50) == 0 {
                conn.peer_closed();
            }
            if conn.close_action() == Some(CloseAction::Abort) || rng.below(200) == 0 {
                conn.abandon();
                break;
            }
        }
    }
}

#[test]
fn ram_disks_contract() {
    let mut d = MemDisks::new();
    d.add("a", 4096, false);
    assert_eq!(d.submit(1, 5, 0, 4000, DiskOp::Read { len: 512 }), Ok(()));
    assert_eq!(d.poll_completion(0), None);
    assert_eq!(d.poll_completion(1), Some((5, Err(DiskError::OutOfRange))));
    assert_eq!(d.submit(1, 6, 9, 0, DiskOp::Flush), Ok(()));
    assert_eq!(d.poll_completion(1), Some((6, Err(DiskError::Gone))));
    let ex: ExportInfo = d.exports().remove(0);
    assert_eq!((ex.id, ex.size), (0, 4096));
}
