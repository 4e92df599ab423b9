//! Codec tests: header view, request encoding, decoder, reply parsing.

use super::*;
use alloc::vec;
use std::string::ToString;

fn frame(msg_type: u32, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; HEADER_LEN];
    let mut h = Header::new_unchecked(&mut v[..]);
    h.set_msg_type(msg_type);
    h.set_req_id(req_id);
    h.set_tx_id(tx_id);
    h.set_len(payload.len() as u32);
    v.extend_from_slice(payload);
    v
}

/// A small deterministic PRNG (xorshift) for chunking and garbage.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn decode_chunked(bytes: &[u8], rng: &mut Rng) -> Vec<Result<Message, DecodeError>> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let n = 1 + rng.below(40);
        let end = (pos + n).min(bytes.len());
        d.feed_all(&bytes[pos..end], |m| out.push(m));
        pos = end;
    }
    out
}

#[test]
fn header_field_ranges_match_xs_wire_h() {
    assert_eq!(field::TYPE, 0..4);
    assert_eq!(field::REQ_ID, 4..8);
    assert_eq!(field::TX_ID, 8..12);
    assert_eq!(field::LEN, 12..16);
    assert_eq!(field::PAYLOAD, HEADER_LEN);
    assert_eq!(HEADER_LEN, 16);
}

#[test]
fn header_view_checks_and_reads_little_endian() {
    assert_eq!(
        Header::new_checked(&[0u8; 15][..]).err(),
        Some(DecodeError::Truncated)
    );
    let bytes = frame(abi::XS_READ, 0x0102_0304, 7, b"abc");
    assert_eq!(&bytes[4..8], &[4, 3, 2, 1]);
    let h = Header::new_checked(&bytes[..]).unwrap();
    assert_eq!(h.msg_type(), 2);
    assert_eq!(h.req_id(), 0x0102_0304);
    assert_eq!(h.tx_id(), 7);
    assert_eq!(h.len(), 3);
    assert_eq!(h.payload(), b"abc");
    // A truncated payload is returned as far as it goes.
    let h = Header::new_checked(&bytes[..17]).unwrap();
    assert_eq!(h.payload(), b"a");
    // Oversized len is rejected by the checked constructor.
    let mut big = frame(abi::XS_READ, 9, 0, b"");
    Header::new_unchecked(&mut big[..]).set_len(4097);
    assert_eq!(
        Header::new_checked(&big[..]).err(),
        Some(DecodeError::Oversized {
            len: 4097,
            req_id: 9
        })
    );
    // 4096 exactly is fine.
    Header::new_unchecked(&mut big[..]).set_len(4096);
    assert!(Header::new_checked(&big[..]).is_ok());
    // Unchecked short views read zero and drop writes instead of panicking.
    let mut short = [0xffu8; 5];
    let mut h = Header::new_unchecked(&mut short[..]);
    assert_eq!(h.len(), 0);
    assert!(h.payload().is_empty());
    h.set_len(1);
    assert_eq!(short, [0xff; 5]);
}

#[test]
fn header_repr_round_trip() {
    for t in MsgType::ALL {
        let repr = HeaderRepr {
            msg_type: t,
            req_id: 0xdead_beef,
            tx_id: 42,
            len: 4096,
        };
        let bytes = repr.to_bytes();
        let parsed = HeaderRepr::parse(&Header::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(parsed, repr);
        assert_eq!(repr.buffer_len(), 16);
    }
    let bytes = frame(20, 5, 0, b"");
    assert_eq!(
        HeaderRepr::parse(&Header::new_unchecked(&bytes[..])),
        Err(DecodeError::UnknownType {
            msg_type: 20,
            req_id: 5
        })
    );
}

#[test]
fn msg_type_numbers_are_xen_4_17s() {
    for (i, t) in MsgType::ALL.iter().enumerate() {
        let n = t.to_u32();
        assert_eq!(MsgType::from_u32(n), Some(*t));
        // 0..=19 are contiguous; 20 (XS_RESTRICT) was removed.
        let expect = if i < 20 { i as u32 } else { i as u32 + 1 };
        assert_eq!(n, expect);
    }
    assert_eq!(MsgType::from_u32(abi::XS_RESTRICT_REMOVED), None);
    assert_eq!(MsgType::from_u32(abi::XS_TYPE_COUNT), None);
    assert_eq!(MsgType::from_u32(abi::XS_INVALID), None);
    assert_eq!(MsgType::ResetWatches.to_u32(), 21);
    assert_eq!(MsgType::DirectoryPart.to_u32(), 22);
}

fn encoded(req: Request<'_>, tx: u32) -> Vec<u8> {
    let mut out = Vec::new();
    req.encode(3, tx, &mut out).unwrap();
    let h = Header::new_checked(&out[..]).unwrap();
    assert_eq!(h.msg_type(), req.msg_type().to_u32());
    assert_eq!(h.req_id(), 3);
    assert_eq!(h.tx_id(), tx);
    assert_eq!(h.len() as usize, out.len() - HEADER_LEN);
    assert_eq!(req.payload_len(), out.len() - HEADER_LEN);
    out[HEADER_LEN..].to_vec()
}

#[test]
fn request_payloads_follow_the_nul_rules() {
    assert_eq!(encoded(Request::Read { path: "/a/b" }, 0), b"/a/b\0");
    assert_eq!(encoded(Request::Mkdir { path: "dev" }, 5), b"dev\0");
    assert_eq!(encoded(Request::Rm { path: "/x" }, 0), b"/x\0");
    assert_eq!(encoded(Request::Directory { path: "/" }, 0), b"/\0");
    assert_eq!(encoded(Request::GetPerms { path: "/p" }, 0), b"/p\0");
    // The value of a write is raw and unterminated (may hold NULs).
    assert_eq!(
        encoded(
            Request::Write {
                path: "/k",
                value: b"v\0w"
            },
            9
        ),
        b"/k\0v\0w"
    );
    assert_eq!(
        encoded(
            Request::Write {
                path: "/k",
                value: b""
            },
            0
        ),
        b"/k\0"
    );
    assert_eq!(
        encoded(
            Request::DirectoryPart {
                path: "/d",
                offset: 1234
            },
            0
        ),
        b"/d\x001234\0"
    );
    assert_eq!(
        encoded(
            Request::Watch {
                path: "@releaseDomain",
                token: "t1"
            },
            0
        ),
        b"@releaseDomain\0t1\0"
    );
    assert_eq!(
        encoded(
            Request::Unwatch {
                path: "/w",
                token: ""
            },
            0
        ),
        b"/w\0\0"
    );
    assert_eq!(encoded(Request::TransactionStart, 0), b"\0");
    assert_eq!(encoded(Request::TransactionEnd { commit: true }, 4), b"T\0");
    assert_eq!(
        encoded(Request::TransactionEnd { commit: false }, 4),
        b"F\0"
    );
    assert_eq!(encoded(Request::GetDomainPath { domid: 0 }, 0), b"0\0");
    assert_eq!(
        encoded(Request::GetDomainPath { domid: 65535 }, 0),
        b"65535\0"
    );
    assert_eq!(encoded(Request::ResetWatches, 0), b"\0");
    let perms = [
        Perm {
            domid: 0,
            access: Access::None,
        },
        Perm {
            domid: 17,
            access: Access::Both,
        },
        Perm {
            domid: 3,
            access: Access::Read,
        },
        Perm {
            domid: 4,
            access: Access::Write,
        },
    ];
    assert_eq!(
        encoded(
            Request::SetPerms {
                path: "/p",
                perms: &perms
            },
            0
        ),
        b"/p\0n0\0b17\0r3\0w4\0"
    );
}

#[test]
fn bad_requests_are_refused_before_encoding() {
    let mut out = Vec::new();
    let mut enc = |r: Request<'_>, tx: u32| r.encode(1, tx, &mut out);
    assert_eq!(
        enc(Request::Read { path: "" }, 0),
        Err(RequestError::EmptyPath)
    );
    assert_eq!(
        enc(Request::Read { path: "/a\0b" }, 0),
        Err(RequestError::EmbeddedNul)
    );
    assert_eq!(
        enc(Request::Read { path: "/a b" }, 0),
        Err(RequestError::BadPath)
    );
    assert_eq!(
        enc(Request::Read { path: "/a//b" }, 0),
        Err(RequestError::BadPath)
    );
    assert_eq!(
        enc(Request::Read { path: "/a/" }, 0),
        Err(RequestError::BadPath)
    );
    assert_eq!(enc(Request::Read { path: "@x" }, 0), Ok(()));
    assert_eq!(
        enc(
            Request::Watch {
                path: "@weird stuff",
                token: "t"
            },
            0
        ),
        Ok(())
    );
    assert_eq!(
        enc(
            Request::Watch {
                path: "/a",
                token: "t\0"
            },
            0
        ),
        Err(RequestError::EmbeddedNul)
    );
    let long_abs = "/".to_string() + &"a".repeat(3072);
    assert_eq!(
        enc(Request::Read { path: &long_abs }, 0),
        Err(RequestError::PathTooLong)
    );
    let long_rel = "a".repeat(2049);
    assert_eq!(
        enc(Request::Read { path: &long_rel }, 0),
        Err(RequestError::PathTooLong)
    );
    let value = vec![b'v'; 4094];
    assert_eq!(
        enc(
            Request::Write {
                path: "/k",
                value: &value
            },
            0
        ),
        Err(RequestError::PayloadTooLarge)
    );
    // 4096 bytes exactly is the limit.
    assert_eq!(
        enc(
            Request::Write {
                path: "/k",
                value: &value[..4093]
            },
            0
        ),
        Ok(())
    );
    assert_eq!(
        enc(Request::TransactionStart, 7),
        Err(RequestError::TransactionNotAllowed)
    );
    assert_eq!(
        enc(
            Request::SetPerms {
                path: "/p",
                perms: &[]
            },
            0
        ),
        Err(RequestError::BadPath)
    );
    drop(enc);
    // Only the two successful encodes (and the 4096-byte one) left bytes.
    let mut d = Decoder::new();
    let mut n = 0;
    d.feed_all(&out, |m| {
        assert!(m.is_ok());
        n += 1;
    });
    assert_eq!(n, 3);
}

#[test]
fn decoder_reassembles_any_chunking() {
    let mut stream = Vec::new();
    let mut expect = Vec::new();
    for i in 0..50u32 {
        let payload: Vec<u8> = (0..(i * 83 % 4097)).map(|j| (j % 200) as u8 + 1).collect();
        stream.extend(frame(abi::XS_READ, i, i * 2, &payload));
        expect.push(Message {
            msg_type: MsgType::Read,
            req_id: i,
            tx_id: i * 2,
            body: Body::Payload(payload),
        });
    }
    stream.extend(frame(abi::XS_WATCH_EVENT, 0, 0, b"/a/b\0tok\0"));
    expect.push(Message {
        msg_type: MsgType::WatchEvent,
        req_id: 0,
        tx_id: 0,
        body: Body::WatchEvent(WatchEvent {
            path: "/a/b".into(),
            token: "tok".into(),
        }),
    });
    stream.extend(frame(abi::XS_ERROR, 77, 0, b"ENOENT\0"));
    expect.push(Message {
        msg_type: MsgType::Error,
        req_id: 77,
        tx_id: 0,
        body: Body::Error(XsError::Enoent),
    });
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for _ in 0..20 {
        let got: Vec<_> = decode_chunked(&stream, &mut rng)
            .into_iter()
            .map(|m| m.unwrap())
            .collect();
        assert_eq!(got, expect);
    }
    // Byte at a time too.
    let mut d = Decoder::new();
    let mut got = Vec::new();
    for b in &stream {
        let (used, m) = d.feed(core::slice::from_ref(b));
        assert_eq!(used, 1);
        got.extend(m);
    }
    assert_eq!(got.len(), expect.len());
}

#[test]
fn decoder_rejects_and_stays_framed() {
    let mut stream = Vec::new();
    // Oversized: 5000 claimed and 5000 sent -> rejected, skipped.
    let mut big = frame(abi::XS_READ, 1, 0, &vec![b'x'; 5000]);
    stream.append(&mut big);
    // Unknown type with a payload.
    stream.extend(frame(0x1234, 2, 0, b"abc\0"));
    // Removed XS_RESTRICT number.
    stream.extend(frame(20, 3, 0, b""));
    // Error reply without NUL; with two strings.
    stream.extend(frame(abi::XS_ERROR, 4, 0, b"EINVAL"));
    stream.extend(frame(abi::XS_ERROR, 5, 0, b"EINVAL\0x\0"));
    // Watch events: one string, three strings, empty path, bad UTF-8, no NUL.
    stream.extend(frame(abi::XS_WATCH_EVENT, 0, 0, b"/a\0"));
    stream.extend(frame(abi::XS_WATCH_EVENT, 0, 0, b"/a\0t\0x\0"));
    stream.extend(frame(abi::XS_WATCH_EVENT, 0, 0, b"\0t\0"));
    stream.extend(frame(abi::XS_WATCH_EVENT, 0, 0, b"/\xff\0t\0"));
    stream.extend(frame(abi::XS_WATCH_EVENT, 0, 0, b"/a\0t"));
    // An unknown error name is not malformed.
    stream.extend(frame(abi::XS_ERROR, 6, 0, b"EFOO\0"));
    // A good frame at the end proves the stream is still in sync.
    stream.extend(frame(abi::XS_WRITE, 7, 0, b"OK\0"));
    let mut rng = Rng(99);
    let got = decode_chunked(&stream, &mut rng);
    let wev = |what| {
        Err(DecodeError::Malformed {
            msg_type: MsgType::WatchEvent,
            req_id: 0,
            what,
        })
    };
    assert_eq!(
        got,
        vec![
            Err(DecodeError::Oversized {
                len: 5000,
                req_id: 1
            }),
            Err(DecodeError::UnknownType {
                msg_type: 0x1234,
                req_id: 2
            }),
            Err(DecodeError::UnknownType {
                msg_type: 20,
                req_id: 3
            }),
            Err(DecodeError::Malformed {
                msg_type: MsgType::Error,
                req_id: 4,
                what: Malformed::MissingNul
            }),
            Err(DecodeError::Malformed {
                msg_type: MsgType::Error,
                req_id: 5,
                what: Malformed::WrongFieldCount
            }),
            wev(Malformed::WrongFieldCount),
            wev(Malformed::WrongFieldCount),
            wev(Malformed::EmptyField),
            wev(Malformed::NotUtf8),
            wev(Malformed::MissingNul),
            Ok(Message {
                msg_type: MsgType::Error,
                req_id: 6,
                tx_id: 0,
                body: Body::Error(XsError::Unknown)
            }),
            Ok(Message {
                msg_type: MsgType::Write,
                req_id: 7,
                tx_id: 0,
                body: Body::Payload(b"OK\0".to_vec())
            }),
        ]
    );
}

#[test]
fn huge_claimed_length_is_skipped_without_buffering() {
    let mut d = Decoder::new();
    let mut hdr = frame(abi::XS_READ, 1, 0, b"");
    Header::new_unchecked(&mut hdr[..]).set_len(u32::MAX);
    let (used, m) = d.feed(&hdr);
    assert_eq!(used, 16);
    assert_eq!(
        m,
        Some(Err(DecodeError::Oversized {
            len: u32::MAX,
            req_id: 1
        }))
    );
    // Everything after is swallowed until the claimed length is consumed.
    let junk = vec![0u8; 100_000];
    assert_eq!(d.feed(&junk), (100_000, None));
    assert!(!d.is_idle());
    assert!(d.payload.capacity() <= XENSTORE_PAYLOAD_MAX);
    d.reset();
    assert!(d.is_idle());
}

#[test]
fn zero_length_frames_complete_immediately() {
    let mut d = Decoder::new();
    let f = frame(abi::XS_READ, 8, 0, b"");
    assert_eq!(
        d.feed(&f),
        (
            16,
            Some(Ok(Message {
                msg_type: MsgType::Read,
                req_id: 8,
                tx_id: 0,
                body: Body::Payload(Vec::new())
            }))
        )
    );
    assert_eq!(d.feed(&[]), (0, None));
}

#[test]
fn replies_parse_by_request_type() {
    assert_eq!(Reply::parse(MsgType::Write, b"OK\0"), Ok(Reply::Ok));
    assert_eq!(Reply::parse(MsgType::Watch, b"OK"), Ok(Reply::Ok));
    assert_eq!(Reply::parse(MsgType::Rm, b"NO\0"), Err(Malformed::NotOk));
    assert_eq!(Reply::parse(MsgType::Mkdir, b""), Err(Malformed::NotOk));
    assert_eq!(
        Reply::parse(MsgType::Read, b"a\0b"),
        Ok(Reply::Value(b"a\0b".to_vec()))
    );
    assert_eq!(
        Reply::parse(MsgType::Directory, b"vbd\0vif\0"),
        Ok(Reply::Directory(vec!["vbd".into(), "vif".into()]))
    );
    assert_eq!(
        Reply::parse(MsgType::Directory, b""),
        Ok(Reply::Directory(vec![]))
    );
    assert_eq!(
        Reply::parse(MsgType::Directory, b"vbd\0vif"),
        Err(Malformed::MissingNul)
    );
    assert_eq!(
        Reply::parse(MsgType::Directory, b"vbd\0\0"),
        Err(Malformed::EmptyField)
    );
    assert_eq!(
        Reply::parse(MsgType::TransactionStart, b"4294967295\0"),
        Ok(Reply::Transaction(TxId(u32::MAX)))
    );
    assert_eq!(
        Reply::parse(MsgType::TransactionStart, b"4294967296\0"),
        Err(Malformed::BadNumber)
    );
    assert_eq!(
        Reply::parse(MsgType::TransactionStart, b"-1\0"),
        Err(Malformed::BadNumber)
    );
    assert_eq!(
        Reply::parse(MsgType::TransactionStart, b"12"),
        Err(Malformed::MissingNul)
    );
    assert_eq!(
        Reply::parse(MsgType::GetDomainPath, b"/local/domain/3\0"),
        Ok(Reply::DomainPath("/local/domain/3".into()))
    );
    assert_eq!(
        Reply::parse(MsgType::GetDomainPath, b"\0"),
        Err(Malformed::EmptyField)
    );
    assert_eq!(
        Reply::parse(MsgType::GetPerms, b"b0\0r5\0"),
        Ok(Reply::Perms(vec![
            Perm {
                domid: 0,
                access: Access::Both
            },
            Perm {
                domid: 5,
                access: Access::Read
            }
        ]))
    );
    assert_eq!(
        Reply::parse(MsgType::GetPerms, b"x0\0"),
        Err(Malformed::BadPermission)
    );
    assert_eq!(
        Reply::parse(MsgType::GetPerms, b"b70000\0"),
        Err(Malformed::BadPermission)
    );
    assert_eq!(
        Reply::parse(MsgType::GetPerms, b""),
        Err(Malformed::WrongFieldCount)
    );
    // DIRECTORY_PART: generation, names, and an empty string at the end.
    assert_eq!(
        Reply::parse(MsgType::DirectoryPart, b"17\0a\0bc\0"),
        Ok(Reply::DirectoryPart {
            gencnt: 17,
            names: vec!["a".into(), "bc".into()],
            chunk_len: 5,
            complete: false
        })
    );
    assert_eq!(
        Reply::parse(MsgType::DirectoryPart, b"17\0a\0\0"),
        Ok(Reply::DirectoryPart {
            gencnt: 17,
            names: vec!["a".into()],
            chunk_len: 2,
            complete: true
        })
    );
    assert_eq!(
        Reply::parse(MsgType::DirectoryPart, b"17\0\0"),
        Ok(Reply::DirectoryPart {
            gencnt: 17,
            names: vec![],
            chunk_len: 0,
            complete: true
        })
    );
    assert_eq!(
        Reply::parse(MsgType::DirectoryPart, b"x\0\0"),
        Err(Malformed::BadNumber)
    );
    assert_eq!(
        Reply::parse(MsgType::DirectoryPart, b""),
        Err(Malformed::WrongFieldCount)
    );
    assert_eq!(
        Reply::parse(MsgType::DirectoryPart, b"1\0a\0\0b\0"),
        Err(Malformed::EmptyField)
    );
}

#[test]
fn decimal_helpers() {
    for v in [0u64, 9, 10, 99, 100, 65535, u64::from(u32::MAX), u64::MAX] {
        let mut out = Vec::new();
        push_decimal(&mut out, v);
        assert_eq!(out, v.to_string().as_bytes());
        assert_eq!(decimal_len(v), out.len());
        assert_eq!(parse_decimal(&out), Some(v));
    }
    assert_eq!(parse_decimal(b""), None);
    assert_eq!(parse_decimal(b"+1"), None);
    assert_eq!(parse_decimal(b"18446744073709551616"), None);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0xfeed_f00d);
    for round in 0..300 {
        let len = rng.below(3000);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Bias some headers towards plausible values so payload parsing runs.
        if round % 2 == 0 && bytes.len() >= 16 {
            let t = MsgType::ALL[rng.below(MsgType::ALL.len())].to_u32();
            bytes[0..4].copy_from_slice(&t.to_le_bytes());
            let l = rng.below(bytes.len() - 15) as u32;
            bytes[12..16].copy_from_slice(&l.to_le_bytes());
        }
        let _ = decode_chunked(&bytes, &mut rng);
        for t in MsgType::ALL {
            let _ = Reply::parse(t, &bytes);
        }
        let _ = WatchEvent::parse(&bytes);
    }
}
