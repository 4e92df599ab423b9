//! Fuzz target: the NBD server (`nbd_server`): wire parsers and one `Connection` against RAM disks.
//!
//! Byte 0 picks the mode. Even: the rest goes into every wire parser (no
//! panic; a parsed request re-emits to the same bytes). Odd: the rest is a
//! stream of operations on one `Connection` over `MemDisks` holding its
//! completions — receive arbitrary bytes or a canned valid message (client
//! flags, GO/INFO/LIST/EXPORT_NAME/ABORT/unknown options, every command, a
//! write with its payload) so transmission is reached; submit (with Busy);
//! release held completions in any order, corrupted or not; bogus
//! completions; transmit into buffers of any size; peer close; abandon.
//! The connection must never panic, never hand out more bytes than the
//! buffer holds, keep its reserved payload within the budget, and send
//! nothing once abandoned.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nbd_server::mem::MemDisks;
use nbd_server::wire::{
    ClientFlagsRepr, Command, GreetingRepr, InfoBlockSizeRepr, InfoExportRepr, InfoRequest,
    OptionHeader, OptionHeaderRepr, OptionReplyRepr, Request, RequestRepr, SimpleReplyRepr,
    option, parse_server_reply,
};
use nbd_server::{CloseAction, Connection, DiskError, DiskRequest, Disks, Limits};

fn opt(o: u32, data: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; OptionHeaderRepr::LEN];
    OptionHeaderRepr {
        option: o,
        length: data.len() as u32,
    }
    .emit(&mut b);
    b.extend_from_slice(data);
    b
}

fn canned(k: u8, arg: u8) -> Vec<u8> {
    let off = u64::from(arg) * 512;
    let req = |c: u16, flags: u16, len: u32| {
        RequestRepr {
            flags,
            command: Command::from_u16(c),
            handle: u64::from(k),
            offset: off,
            length: len,
        }
        .to_bytes()
        .to_vec()
    };
    match k % 14 {
        0 => 3u32.to_be_bytes().to_vec(),
        1 => opt(option::GO, &InfoRequest::emit(b"xvda", &[3])),
        2 => opt(option::GO, &InfoRequest::emit(b"ro", &[])),
        3 => opt(option::INFO, &InfoRequest::emit(b"", &[3, 0, 1])),
        4 => opt(option::LIST, &[]),
        5 => opt(option::EXPORT_NAME, b"xvda"),
        6 => opt(option::STRUCTURED_REPLY, &[]),
        7 => opt(option::ABORT, &[]),
        8 => {
            let len = 512 * (u32::from(arg % 8) + 1);
            let mut b = req(1, u16::from(arg & 1), len);
            b.extend(std::iter::repeat_n(arg, len as usize));
            b
        }
        9 => req(0, 0, 512 * (u32::from(arg % 16) + 1)),
        10 => req(3, u16::from(arg & 1), 0),
        11 => req(4, u16::from(arg & 1), 4096),
        12 => req(6, u16::from(arg & 3), 8192),
        _ => req(u16::from(arg % 10), u16::from(arg), u32::from(arg) << 9),
    }
}

fn parsers(b: &[u8]) {
    let _ = GreetingRepr::parse(b);
    let _ = ClientFlagsRepr::parse(b);
    if let Ok(h) = OptionHeader::new_checked(b) {
        let _ = OptionHeaderRepr::parse(&h);
    }
    let _ = OptionReplyRepr::parse(b);
    if let Ok(r) = InfoRequest::parse(b) {
        assert!(r.name.len() <= b.len());
        let _ = r.requests().count();
    }
    let _ = InfoExportRepr::parse(b);
    let _ = InfoBlockSizeRepr::parse(b);
    let _ = parse_server_reply(b);
    let _ = SimpleReplyRepr::parse(b);
    if let Ok(v) = Request::new_checked(b)
        && let Ok(r) = RequestRepr::parse(&v)
    {
        assert_eq!(&r.to_bytes()[..], &b[..RequestRepr::LEN]);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        parsers(rest);
        return;
    }
    let limits = Limits {
        budget: 64 * 1024,
        max_payload: 16 * 1024,
        max_requests: 8,
        max_option: 1024,
        negotiation_output: 4096,
        ..Limits::default()
    };
    let mut disks = MemDisks::new();
    disks.add("xvda", 256 * 1024, false);
    disks.add("ro", 16 * 1024, true);
    disks.hold = mode & 2 != 0;
    if mode & 4 != 0 {
        disks.disks[0].info.can_fua = false;
    }
    if mode & 8 != 0 {
        disks.disks[0].info.can_trim = false;
    }
    let mut conn = Connection::new(limits);
    let mut abandoned = false;
    let mut ops = rest.iter().copied();
    let mut buf = vec![0u8; 70_000];
    while let Some(op) = ops.next() {
        let arg = ops.next().unwrap_or(0);
        let exports = disks.exports();
        match op % 10 {
            0 => {
                let raw: Vec<u8> = ops.by_ref().take(usize::from(arg)).collect();
                let n = conn.receive(&raw, &exports);
                assert!(n <= raw.len());
            }
            1 | 2 => {
                let msg = canned(arg, ops.next().unwrap_or(0));
                let n = conn.receive(&msg, &exports);
                assert!(n <= msg.len());
            }
            3 => {
                while let Some(r) = conn.next_disk_request() {
                    if arg & 1 != 0 {
                        disks.busy_next = 1;
                    }
                    let (tag, export, offset) = (r.tag, r.export, r.offset);
                    match disks.submit(0, u64::from(tag), export, offset, r.op) {
                        Ok(()) => {}
                        Err((DiskError::Busy, op)) => {
                            conn.retry(DiskRequest {
                                tag,
                                export,
                                offset,
                                op,
                            });
                            break;
                        }
                        Err((e, _)) => {
                            conn.complete(tag, Err(e));
                        }
                    }
                }
            }
            4 => {
                disks.release(&[usize::from(arg % 4), usize::from(arg / 64)]);
                while let Some((tag, res)) = disks.poll_completion(0) {
                    let res = match (arg % 5, res) {
                        (0, Ok(mut d)) => {
                            d.pop();
                            Ok(d)
                        }
                        (1, _) => Err(DiskError::Gone),
                        (_, r) => r,
                    };
                    conn.complete(tag as u32, res);
                }
            }
            5 => {
                conn.complete(u32::from(arg), Ok(vec![0; usize::from(arg)]));
            }
            6 | 7 => {
                let len = usize::from(arg) * 300 + 1;
                let b = &mut buf[..len.min(70_000)];
                let n = conn.transmit(b);
                assert!(n <= b.len());
                assert!(!abandoned || n == 0, "bytes sent after abandon");
            }
            8 => conn.peer_closed(),
            _ => {
                if arg % 4 == 0 {
                    conn.abandon();
                    abandoned = true;
                }
            }
        }
        while conn.next_event().is_some() {}
        assert!(conn.reserved() <= limits.budget);
        if conn.close_action() == Some(CloseAction::Abort) && !abandoned {
            conn.abandon();
            abandoned = true;
        }
    }
});
