//! Sans-IO client tests against the stream-level simulator and hand-made frames.

use super::*;
use crate::wire::{HEADER_LEN, Header};
use alloc::vec;
use xen_abi::xenstore as abi;

fn frame(msg_type: u32, req_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; HEADER_LEN];
    let mut h = Header::new_unchecked(&mut v[..]);
    h.set_msg_type(msg_type);
    h.set_req_id(req_id);
    h.set_len(payload.len() as u32);
    v.extend_from_slice(payload);
    v
}

/// Takes everything the client has queued, as whole frames.
fn drain(c: &mut Client) -> Vec<u8> {
    let out = c.output().to_vec();
    c.consume_output(out.len());
    out
}

#[test]
fn replies_are_matched_by_req_id_in_any_order() {
    let mut c = Client::new();
    let a = c.submit(TxId::NONE, &Request::Read { path: "/a" }).unwrap();
    let b = c.submit(TxId::NONE, &Request::Read { path: "/b" }).unwrap();
    let w = c
        .submit(
            TxId(5),
            &Request::Write {
                path: "/c",
                value: b"1",
            },
        )
        .unwrap();
    assert_eq!(c.in_flight(), 3);
    assert!(!c.is_idle());
    // The wire carries the three requests, the write in transaction 5.
    let mut d = Decoder::new();
    let mut seen = Vec::new();
    d.feed_all(&drain(&mut c), |m| seen.push(m.unwrap()));
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].tx_id, 5);
    assert_eq!(seen[2].body, Body::Payload(b"/c\x001".to_vec()));

    // Answer out of order, split at awkward points.
    let mut replies = frame(abi::XS_WRITE, w.0, b"OK\0");
    replies.extend(frame(abi::XS_ERROR, b.0, b"ENOENT\0"));
    replies.extend(frame(abi::XS_READ, a.0, b"value-a"));
    for chunk in replies.chunks(5) {
        assert_eq!(c.poll_reply(a), None);
        c.receive(chunk);
    }
    assert_eq!(c.poll_reply(b), Some(Err(XsError::Enoent)));
    assert_eq!(c.poll_reply(a), Some(Ok(Reply::Value(b"value-a".to_vec()))));
    assert_eq!(c.poll_reply(w), Some(Ok(Reply::Ok)));
    // Collected exactly once.
    assert_eq!(c.poll_reply(a), Some(Err(XsError::NotInFlight)));
    assert!(c.is_idle());
    assert_eq!(c.stats(), ClientStats::default());
}

#[test]
fn stray_and_bad_replies_are_counted_not_fatal() {
    let mut c = Client::new();
    let r = c.submit(TxId::NONE, &Request::Read { path: "/a" }).unwrap();
    let d = c
        .submit(TxId::NONE, &Request::Directory { path: "/" })
        .unwrap();
    let t = c.submit(TxId::NONE, &Request::TransactionStart).unwrap();
    let m = c
        .submit(TxId::NONE, &Request::Mkdir { path: "/m" })
        .unwrap();
    drain(&mut c);
    let mut bytes = Vec::new();
    // Unknown req_id.
    bytes.extend(frame(abi::XS_READ, 999, b"x"));
    // Wrong reply type for the read.
    bytes.extend(frame(abi::XS_DIRECTORY, r.0, b""));
    // Duplicate reply for the same id afterwards.
    bytes.extend(frame(abi::XS_READ, r.0, b"late"));
    // Malformed directory list.
    bytes.extend(frame(abi::XS_DIRECTORY, d.0, b"a\0b"));
    // Unknown message type aimed at the transaction start: fails it.
    bytes.extend(frame(0x4242, t.0, b"1\0"));
    // Spurious event for an unknown token, and a malformed one.
    bytes.extend(frame(abi::XS_WATCH_EVENT, 0, b"/x\0nobody\0"));
    bytes.extend(frame(abi::XS_WATCH_EVENT, 0, b"/x\0"));
    // Garbage-sized frame, skipped as it streams by.
    bytes.extend(frame(abi::XS_READ, 12345, &[7u8; 5000]));
    // And a good reply still gets through after all that.
    bytes.extend(frame(abi::XS_MKDIR, m.0, b"OK\0"));
    c.receive(&bytes);

    assert_eq!(
        c.poll_reply(r),
        Some(Err(XsError::Protocol(ProtocolError::UnexpectedReplyType {
            expected: MsgType::Read,
            got: MsgType::Directory
        })))
    );
    assert_eq!(
        c.poll_reply(d),
        Some(Err(XsError::Protocol(ProtocolError::MalformedReply(
            crate::wire::Malformed::MissingNul
        ))))
    );
    assert!(matches!(
        c.poll_reply(t),
        Some(Err(XsError::Protocol(ProtocolError::Decode(
            DecodeError::UnknownType {
                msg_type: 0x4242,
                ..
            }
        ))))
    ));
    assert_eq!(c.poll_reply(m), Some(Ok(Reply::Ok)));
    let s = c.stats();
    assert_eq!(s.unknown_replies, 2); // 999 and the duplicate
    assert_eq!(s.bad_replies, 2);
    assert_eq!(s.decode_errors, 3); // unknown type, malformed event, oversized
    assert_eq!(s.unmatched_events, 1);
    assert!(c.is_idle());
}

#[test]
fn invalid_requests_leave_nothing_behind() {
    let mut c = Client::new();
    assert_eq!(
        c.submit(TxId::NONE, &Request::Read { path: "bad path" }),
        Err(XsError::Request(crate::wire::RequestError::BadPath))
    );
    assert_eq!(
        c.submit(TxId(3), &Request::TransactionStart),
        Err(XsError::Request(
            crate::wire::RequestError::TransactionNotAllowed
        ))
    );
    assert!(matches!(c.watch("", 4), Err(XsError::Request(_))));
    assert!(c.output().is_empty());
    assert!(c.is_idle());
    assert_eq!(c.watch_ids().count(), 0);
}

#[test]
fn watch_queue_coalesces_when_full_and_counts() {
    let mut c = Client::new();
    let (w, req) = c.watch("/dev", 3).unwrap();
    let token = "xenrs-w1";
    let out = drain(&mut c);
    assert!(out.ends_with(b"/dev\0xenrs-w1\0"));
    assert_eq!(c.watch_stats(w).unwrap().state, WatchState::Registering);
    let mut bytes = frame(abi::XS_WATCH, req.0, b"OK\0");
    for p in ["/dev", "/dev/a", "/dev/b", "/dev/c", "/dev/a", "/dev/d"] {
        let mut payload = Vec::from(p.as_bytes());
        payload.push(0);
        payload.extend_from_slice(token.as_bytes());
        payload.push(0);
        bytes.extend(frame(abi::XS_WATCH_EVENT, 0, &payload));
    }
    c.receive(&bytes);
    assert_eq!(c.poll_reply(req), Some(Ok(Reply::Ok)));
    let s = c.watch_stats(w).unwrap();
    assert_eq!(s.state, WatchState::Active);
    assert_eq!(s.received, 6);
    assert_eq!(s.queued, 3);
    // /dev/c, /dev/a and /dev/d arrived with the queue full: all absorbed by
    // the queued watch root "/dev".
    assert_eq!(s.coalesced, 3);
    let events: Vec<_> = core::iter::from_fn(|| c.next_event(w)).collect();
    assert_eq!(events, ["/dev", "/dev/a", "/dev/b"]);

    // Without the root queued, overflow replaces the newest entry by the root.
    let mut bytes = Vec::new();
    for p in ["/dev/1", "/dev/2", "/dev/3", "/dev/4", "/dev/5"] {
        let mut payload = Vec::from(p.as_bytes());
        payload.extend_from_slice(b"\0xenrs-w1\0");
        bytes.extend(frame(abi::XS_WATCH_EVENT, 0, &payload));
    }
    c.receive(&bytes);
    let events: Vec<_> = core::iter::from_fn(|| c.next_event(w)).collect();
    assert_eq!(events, ["/dev/1", "/dev/2", "/dev"]);
    assert_eq!(c.watch_stats(w).unwrap().coalesced, 5);
}

#[test]
fn failed_watch_registration_is_reported() {
    let mut c = Client::new();
    let (w, req) = c.watch("/nope", 2).unwrap();
    drain(&mut c);
    c.receive(&frame(abi::XS_ERROR, req.0, b"EACCES\0"));
    assert_eq!(c.poll_reply(req), Some(Err(XsError::Eacces)));
    assert_eq!(
        c.watch_stats(w).unwrap().state,
        WatchState::Failed(XsError::Eacces)
    );
    // Its token no longer routes events.
    c.receive(&frame(abi::XS_WATCH_EVENT, 0, b"/nope\0xenrs-w1\0"));
    assert_eq!(c.stats().unmatched_events, 1);
    // Unwatching a failed watch sends nothing.
    c.unwatch(w).unwrap();
    assert!(c.output().is_empty());
    assert_eq!(c.unwatch(w), Err(XsError::NoSuchWatch));
}

#[test]
fn resume_cancels_in_flight_and_reregisters_watches() {
    let mut c = Client::new();
    let (w, wreq) = c.watch("/a", 4).unwrap();
    let (w2, _) = c.watch("b", 4).unwrap();
    c.receive(&frame(abi::XS_WATCH, wreq.0, b"OK\0"));
    assert_eq!(c.poll_reply(wreq), Some(Ok(Reply::Ok)));
    let tx_req = c.submit(TxId::NONE, &Request::TransactionStart).unwrap();
    c.receive(&frame(abi::XS_TRANSACTION_START, tx_req.0, b"77\0"));
    assert_eq!(c.poll_reply(tx_req), Some(Ok(Reply::Transaction(TxId(77)))));
    c.receive(&frame(abi::XS_WATCH_EVENT, 0, b"/a\0xenrs-w1\0"));
    let pending = c.submit(TxId::NONE, &Request::Read { path: "/x" }).unwrap();
    drain(&mut c);
    // Half a reply is in the decoder when the ring goes away.
    c.receive(&frame(abi::XS_READ, pending.0, b"xyz")[..10]);

    c.resume();
    assert_eq!(c.poll_reply(pending), Some(Err(XsError::Cancelled)));
    assert_eq!(c.stats().cancelled, 2); // the read and w2's registration
    // Both watches are being registered again with their old tokens.
    let mut d = Decoder::new();
    let mut sent = Vec::new();
    d.feed_all(&drain(&mut c), |m| sent.push(m.unwrap()));
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|m| m.msg_type == MsgType::Watch));
    assert_eq!(sent[0].body, Body::Payload(b"/a\0xenrs-w1\0".to_vec()));
    assert_eq!(sent[1].body, Body::Payload(b"b\0xenrs-w2\0".to_vec()));
    assert!(!c.is_idle());
    // The daemon acknowledges one and reports the other as still present.
    let mut bytes = frame(abi::XS_WATCH, sent[0].req_id, b"OK\0");
    bytes.extend(frame(abi::XS_ERROR, sent[1].req_id, b"EEXIST\0"));
    c.receive(&bytes);
    assert!(c.is_idle());
    assert_eq!(c.watch_stats(w).unwrap().state, WatchState::Active);
    assert_eq!(c.watch_stats(w2).unwrap().state, WatchState::Active);
    // The event queued before the suspend survived.
    assert_eq!(c.next_event(w).as_deref(), Some("/a"));
    // The transaction died with the old connection: EAGAIN, then forgotten.
    assert_eq!(
        c.submit(TxId(77), &Request::Read { path: "/x" }),
        Err(XsError::Eagain)
    );
    assert_eq!(
        c.submit(TxId(77), &Request::TransactionEnd { commit: true }),
        Err(XsError::Eagain)
    );
    assert!(c.submit(TxId(77), &Request::Read { path: "/x" }).is_ok());
}

#[test]
fn unwatch_drops_queue_and_late_events() {
    let mut c = Client::new();
    let (w, req) = c.watch("/a", 4).unwrap();
    drain(&mut c);
    c.receive(&frame(abi::XS_WATCH, req.0, b"OK\0"));
    c.receive(&frame(abi::XS_WATCH_EVENT, 0, b"/a\0xenrs-w1\0"));
    c.unwatch(w).unwrap();
    let out = drain(&mut c);
    let mut d = Decoder::new();
    let mut sent = Vec::new();
    d.feed_all(&out, |m| sent.push(m.unwrap()));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].msg_type, MsgType::Unwatch);
    assert_eq!(c.next_event(w), None);
    c.receive(&frame(abi::XS_WATCH_EVENT, 0, b"/a\0xenrs-w1\0"));
    assert_eq!(c.stats().unmatched_events, 1);
    // The internal unwatch reply is consumed silently.
    assert_eq!(c.poll_reply(RequestId(sent[0].req_id)), None);
    c.receive(&frame(abi::XS_UNWATCH, sent[0].req_id, b"OK\0"));
    assert!(c.is_idle());
    assert_eq!(c.stats().unknown_replies, 0);
}

#[test]
fn forgotten_requests_are_consumed_silently() {
    let mut c = Client::new();
    let r = c.submit(TxId::NONE, &Request::Read { path: "/a" }).unwrap();
    c.forget(r);
    drain(&mut c);
    c.receive(&frame(abi::XS_READ, r.0, b"v"));
    assert!(c.is_idle());
    assert_eq!(c.stats().unknown_replies, 0);
    assert_eq!(c.poll_reply(r), Some(Err(XsError::NotInFlight)));
}

#[test]
fn req_ids_skip_ids_still_in_use_after_wrap() {
    let mut c = Client::new();
    let first = c.submit(TxId::NONE, &Request::Read { path: "/a" }).unwrap();
    assert_eq!(first, RequestId(1));
    c.next_req_id = u32::MAX;
    let a = c.submit(TxId::NONE, &Request::Read { path: "/a" }).unwrap();
    let b = c.submit(TxId::NONE, &Request::Read { path: "/a" }).unwrap();
    assert_eq!(a, RequestId(u32::MAX));
    // 0 is skipped and 1 is still in flight.
    assert_eq!(b, RequestId(2));
}
