//! End-to-end tests: the blocking facade over a shared ring served by `SimXenstored`.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

use xenstore::sim::{ReplyFault, SimPage, SimPlatform, SimRing, SimXenstored};
use xenstore::wire::MsgType;
use xenstore::{ProtocolError, RingError, TxId, WatchState, Xenstore, XsError};

const DOMID: u16 = 7;

fn setup(start_index: u32) -> (SimRing, Xenstore<SimPage, SimPlatform>) {
    let ring = SimRing::new(SimXenstored::new(DOMID), start_index);
    let xs = ring.connect();
    (ring, xs)
}

#[test]
fn basic_operations() {
    let (ring, mut xs) = setup(0);
    let home = xs.get_domain_path(DOMID).unwrap();
    assert_eq!(home, "/local/domain/7");
    xs.write(
        TxId::NONE,
        "/local/domain/7/device/vif/0/mac",
        b"00:16:3e:00:00:01",
    )
    .unwrap();
    // Relative paths resolve under the domain's home.
    assert_eq!(
        xs.read(TxId::NONE, "device/vif/0/mac").unwrap(),
        b"00:16:3e:00:00:01"
    );
    xs.mkdir(TxId::NONE, "data/empty").unwrap();
    assert_eq!(xs.read(TxId::NONE, "data/empty").unwrap(), b"");
    let mut names = xs.directory(TxId::NONE, "/local/domain/7").unwrap();
    names.sort();
    assert_eq!(names, ["data", "device"]);
    assert_eq!(
        xs.directory(TxId::NONE, "data/empty").unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(xs.read(TxId::NONE, "/nope"), Err(XsError::Enoent));
    assert_eq!(xs.directory(TxId::NONE, "/nope"), Err(XsError::Enoent));
    xs.rm(TxId::NONE, "device").unwrap();
    assert_eq!(
        xs.read(TxId::NONE, "device/vif/0/mac"),
        Err(XsError::Enoent)
    );
    // rm of a missing node is fine while its parent exists...
    xs.rm(TxId::NONE, "device").unwrap();
    // ...and ENOENT when the parent is missing too.
    assert_eq!(xs.rm(TxId::NONE, "/a/b/c"), Err(XsError::Enoent));
    // Binary values with NULs round-trip.
    xs.write(TxId::NONE, "bin", b"\0a\0").unwrap();
    assert_eq!(xs.read(TxId::NONE, "bin").unwrap(), b"\0a\0");
    // Privileged requests are refused like xenstored does for a domU.
    assert!(ring.with_sim(|s| s.read("/local/domain/7/bin")).is_some());
    assert!(xs.is_idle());
    assert_eq!(xs.client().stats(), Default::default());
    assert!(!ring.with_sim(|s| s.connection_killed()));
}

#[test]
fn large_directory_falls_back_to_directory_part() {
    let (ring, mut xs) = setup(0);
    // 300 children x ~25 bytes > 4096: DIRECTORY gives E2BIG.
    ring.with_sim(|s| {
        for i in 0..300 {
            s.write(&format!("/big/child-with-a-long-name-{i:04}"), b"");
        }
    });
    let names = xs.directory(TxId::NONE, "/big").unwrap();
    assert_eq!(names.len(), 300);
    assert!(names.iter().any(|n| n == "child-with-a-long-name-0299"));
    let stats = ring.with_sim(|s| s.stats().clone());
    assert_eq!(stats.count(MsgType::Directory), 1);
    assert!(stats.count(MsgType::DirectoryPart) >= 2);
}

#[test]
fn endless_directory_part_is_bounded() {
    let (ring, mut xs) = setup(0);
    ring.with_sim(|s| {
        for i in 0..300 {
            s.write(&format!("/big/child-with-a-long-name-{i:04}"), b"");
        }
        s.set_endless_directory_part(true);
    });
    assert_eq!(
        xs.directory(TxId::NONE, "/big"),
        Err(ProtocolError::DirectoryTooLarge.into())
    );
    let parts = ring.with_sim(|s| s.stats().count(MsgType::DirectoryPart)) as usize;
    // About DIRECTORY_MAX_BYTES / 4 KiB chunks, then the error: bounded.
    assert!(
        parts <= (xenstore::DIRECTORY_MAX_BYTES as usize / 3000) + 2,
        "{parts}"
    );
    // The connection is still good.
    ring.with_sim(|s| s.set_endless_directory_part(false));
    assert_eq!(xs.directory(TxId::NONE, "/big").unwrap().len(), 300);
}

#[test]
fn transactions_commit_and_conflict() {
    let (ring, mut xs) = setup(0);
    xs.write(TxId::NONE, "/counter", b"0").unwrap();
    // A plain commit.
    let tx = xs.transaction_start().unwrap();
    assert_ne!(tx, TxId::NONE);
    xs.write(tx, "/counter", b"1").unwrap();
    // Outside the transaction the old value is still visible.
    assert_eq!(xs.read(TxId::NONE, "/counter").unwrap(), b"0");
    xs.transaction_end(tx, true).unwrap();
    assert_eq!(xs.read(TxId::NONE, "/counter").unwrap(), b"1");

    // Concurrent modification of a node the transaction read -> EAGAIN.
    let tx = xs.transaction_start().unwrap();
    assert_eq!(xs.read(tx, "/counter").unwrap(), b"1");
    ring.with_sim(|s| s.write("/counter", b"99"));
    xs.write(tx, "/counter", b"2").unwrap();
    assert_eq!(xs.transaction_end(tx, true), Err(XsError::Eagain));
    assert_eq!(xs.read(TxId::NONE, "/counter").unwrap(), b"99");

    // An unrelated concurrent write does not conflict.
    let tx = xs.transaction_start().unwrap();
    xs.read(tx, "/counter").unwrap();
    ring.with_sim(|s| s.write("/elsewhere", b"x"));
    xs.write(tx, "/counter", b"3").unwrap();
    xs.transaction_end(tx, true).unwrap();

    // Abort discards.
    let tx = xs.transaction_start().unwrap();
    xs.write(tx, "/counter", b"4").unwrap();
    xs.transaction_end(tx, false).unwrap();
    assert_eq!(xs.read(TxId::NONE, "/counter").unwrap(), b"3");
    // The id is gone afterwards.
    assert_eq!(xs.read(tx, "/counter"), Err(XsError::Enoent));
    assert_eq!(ring.with_sim(|s| s.transaction_count()), 0);
}

#[test]
fn transaction_helper_retries_on_eagain() {
    let (ring, mut xs) = setup(0);
    xs.write(TxId::NONE, "/n", b"10").unwrap();
    let mut runs = 0;
    let result = xs.transaction(5, |xs, tx| {
        runs += 1;
        let v: u32 = String::from_utf8(xs.read(tx, "/n")?)
            .unwrap()
            .parse()
            .unwrap();
        if runs < 3 {
            // Someone else bumps the counter while we work: our commit conflicts.
            ring.with_sim(|s| s.write("/n", format!("{}", v + 100).as_bytes()));
        }
        xs.write(tx, "/n", format!("{}", v + 1).as_bytes())?;
        Ok(v)
    });
    assert_eq!(runs, 3);
    // Third run saw 10 + 100 + 100 and committed +1.
    assert_eq!(result, Ok(210));
    assert_eq!(xs.read(TxId::NONE, "/n").unwrap(), b"211");
    let stats = ring.with_sim(|s| s.stats().clone());
    assert_eq!(stats.conflicts, 2);
    assert_eq!(stats.commits, 1);
}

#[test]
fn transaction_helper_gives_up_after_bounded_attempts() {
    let (ring, mut xs) = setup(0);
    ring.with_sim(|s| s.fail_next_commits(1000));
    let mut runs = 0;
    let result = xs.transaction(4, |xs, tx| {
        runs += 1;
        xs.write(tx, "/x", b"1")
    });
    assert_eq!(result, Err(XsError::Eagain));
    assert_eq!(runs, 4);
    assert_eq!(ring.with_sim(|s| s.stats().conflicts), 4);
    assert_eq!(xs.read(TxId::NONE, "/x"), Err(XsError::Enoent));

    // A non-EAGAIN error from the body aborts immediately, once.
    ring.with_sim(|s| s.fail_next_commits(0));
    let mut runs = 0;
    let result: Result<(), _> = xs.transaction(4, |xs, tx| {
        runs += 1;
        xs.write(tx, "/y", b"1")?;
        xs.read(tx, "/missing").map(|_| ())
    });
    assert_eq!(result, Err(XsError::Enoent));
    assert_eq!(runs, 1);
    assert_eq!(xs.read(TxId::NONE, "/y"), Err(XsError::Enoent));
    assert_eq!(ring.with_sim(|s| s.transaction_count()), 0);
}

#[test]
fn watches_fire_initially_and_on_changes_in_order() {
    let (ring, mut xs) = setup(0);
    let w = xs.watch("/backend", 64).unwrap();
    // xenstored fires once on registration.
    assert_eq!(xs.wait_event(w).unwrap(), "/backend");
    xs.write(TxId::NONE, "/backend/vif/1", b"x").unwrap();
    ring.with_sim(|s| s.write("/backend/vbd/2/state", b"4"));
    xs.write(TxId::NONE, "/unrelated", b"x").unwrap();
    assert_eq!(xs.wait_event(w).unwrap(), "/backend/vif/1");
    assert_eq!(xs.wait_event(w).unwrap(), "/backend/vbd/2/state");
    assert_eq!(xs.next_event(w).unwrap(), None);
    // Transactional writes fire on commit only.
    let tx = xs.transaction_start().unwrap();
    xs.write(tx, "/backend/t", b"1").unwrap();
    assert_eq!(xs.next_event(w).unwrap(), None);
    xs.transaction_end(tx, true).unwrap();
    assert_eq!(xs.wait_event(w).unwrap(), "/backend/t");
    // Removing a parent of a watched node reports the watch path.
    let inner = xs.watch("/backend/vbd/2", 8).unwrap();
    assert_eq!(xs.wait_event(inner).unwrap(), "/backend/vbd/2");
    xs.rm(TxId::NONE, "/backend/vbd").unwrap();
    assert_eq!(xs.wait_event(inner).unwrap(), "/backend/vbd/2");
    assert_eq!(xs.wait_event(w).unwrap(), "/backend/vbd");
    // Relative watches get relative event paths.
    let rel = xs.watch("control/shutdown", 4).unwrap();
    assert_eq!(xs.wait_event(rel).unwrap(), "control/shutdown");
    ring.with_sim(|s| s.write("/local/domain/7/control/shutdown", b"poweroff"));
    assert_eq!(xs.wait_event(rel).unwrap(), "control/shutdown");
    // Special watches.
    let sp = xs.watch("@releaseDomain", 4).unwrap();
    assert_eq!(xs.wait_event(sp).unwrap(), "@releaseDomain");
    ring.with_sim(|s| s.fire_special("@releaseDomain"));
    assert_eq!(xs.wait_event(sp).unwrap(), "@releaseDomain");
    // Unwatch reaches the daemon.
    xs.unwatch(w).unwrap();
    xs.quiesce().unwrap();
    assert_eq!(ring.with_sim(|s| s.watches().len()), 3);
    assert_eq!(xs.next_event(w), Err(XsError::NoSuchWatch));
    assert_eq!(xs.client().stats(), Default::default());
}

#[test]
fn a_stuck_watch_consumer_delays_nobody() {
    let (ring, mut xs) = setup(u32::MAX - 3000);
    // `stuck` is never read; `live` is read after every write.
    let stuck = xs.watch("/data", 4).unwrap();
    let live = xs.watch("/data", 4).unwrap();
    assert_eq!(xs.wait_event(live).unwrap(), "/data");
    for i in 0..500 {
        let path = format!("/data/k{i}");
        // Replies keep flowing although `stuck` overflowed long ago.
        xs.write(TxId::NONE, &path, b"v").unwrap();
        if i % 3 == 0 {
            // Out-of-band writes too (another domain).
            ring.with_sim(|s| s.write("/data/other", b"x"));
        }
        assert_eq!(xs.wait_event(live).unwrap(), path);
        if i % 3 == 0 {
            assert_eq!(xs.wait_event(live).unwrap(), "/data/other");
        }
    }
    let live_stats = xs.watch_stats(live).unwrap();
    assert_eq!(live_stats.coalesced, 0);
    assert_eq!(live_stats.received, 1 + 500 + 167);
    let stuck_stats = xs.watch_stats(stuck).unwrap();
    assert_eq!(stuck_stats.state, WatchState::Active);
    assert_eq!(stuck_stats.received, 1 + 500 + 167);
    assert_eq!(stuck_stats.queued, 4);
    assert_eq!(stuck_stats.coalesced, 500 + 167 + 1 - 4);
    // The stuck queue is bounded and still says "rescan /data".
    let events: Vec<_> = std::iter::from_fn(|| xs.client_mut().next_event(stuck)).collect();
    assert_eq!(events[0], "/data");
    assert_eq!(events.len(), 4);
}

#[test]
fn split_delivery_and_ring_wrap() {
    // Indices start just below 2^32 and replies arrive 7 bytes at a time, so
    // messages straddle both the ring's wrap point and the u32 overflow.
    let (ring, mut xs) = setup(u32::MAX - 40);
    ring.with_sim(|s| s.set_max_chunk(Some(7)));
    let value: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    for i in 0..6 {
        let path = format!("/v{i}");
        xs.write(TxId::NONE, &path, &value[i * 100..]).unwrap();
        assert_eq!(xs.read(TxId::NONE, &path).unwrap(), &value[i * 100..]);
    }
    let w = xs.watch("/v0", 2).unwrap();
    assert_eq!(xs.wait_event(w).unwrap(), "/v0");
    // Pipelined requests, replies in reverse order.
    ring.with_sim(|s| s.set_reverse_replies(true));
    let ids: Vec<_> = (0..6)
        .map(|i| {
            xs.client_mut()
                .submit(
                    TxId::NONE,
                    &xenstore::Request::Read {
                        path: &format!("/v{i}"),
                    },
                )
                .unwrap()
        })
        .collect();
    for (i, id) in ids.iter().enumerate().rev() {
        match xs.wait_reply(*id).unwrap() {
            xenstore::Reply::Value(v) => assert_eq!(v, &value[i * 100..]),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(xs.is_idle());
    assert_eq!(xs.client().stats(), Default::default());
    assert!(ring.kicks() > 100);
}

#[test]
fn misbehaving_daemon_is_contained() {
    let (ring, mut xs) = setup(1000);
    xs.write(TxId::NONE, "/k", b"v").unwrap();
    let w = xs.watch("/k", 4).unwrap();
    assert_eq!(xs.wait_event(w).unwrap(), "/k");

    ring.with_sim(|s| s.fault_next_reply(ReplyFault::WrongType));
    assert!(matches!(
        xs.read(TxId::NONE, "/k"),
        Err(XsError::Protocol(ProtocolError::UnexpectedReplyType { .. }))
    ));
    ring.with_sim(|s| s.fault_next_reply(ReplyFault::DropNul));
    assert!(matches!(
        xs.read(TxId::NONE, "/missing"),
        Err(XsError::Protocol(ProtocolError::Decode(_)))
    ));
    ring.with_sim(|s| s.fault_next_reply(ReplyFault::DropNul));
    assert!(matches!(
        xs.transaction_start(),
        Err(XsError::Protocol(ProtocolError::MalformedReply(_)))
    ));
    ring.with_sim(|s| s.fault_next_reply(ReplyFault::UnknownErrorName));
    assert_eq!(xs.mkdir(TxId::NONE, "/m"), Err(XsError::Unknown));
    ring.with_sim(|s| s.fault_next_reply(ReplyFault::Duplicate));
    assert_eq!(xs.read(TxId::NONE, "/k").unwrap(), b"v");
    ring.with_sim(|s| {
        s.inject_unknown_req_id_reply();
        s.inject_oversized(6000);
        s.inject_unknown_type();
        s.inject_watch_event("/k", "not-a-token-of-ours");
        s.inject_malformed_watch_event();
        s.inject_watch_event("/k/spurious", "xenrs-w1");
    });
    // The connection keeps working through all of it.
    assert_eq!(xs.read(TxId::NONE, "/k").unwrap(), b"v");
    assert_eq!(xs.wait_event(w).unwrap(), "/k/spurious");
    let s = xs.client().stats();
    assert_eq!(s.unknown_replies, 2); // the duplicate and the stray
    assert_eq!(s.unmatched_events, 1);
    assert_eq!(s.bad_replies, 2); // wrong type, malformed tx id
    // DropNul error reply, oversized, unknown type, malformed event.
    assert_eq!(s.decode_errors, 4);
    assert!(xs.is_idle());
}

#[test]
fn bad_length_breaks_framing_until_resume() {
    let (ring, mut xs) = setup(0);
    xs.write(TxId::NONE, "/k", b"v").unwrap();
    let w = xs.watch("/k", 4).unwrap();
    assert_eq!(xs.wait_event(w).unwrap(), "/k");
    // A reply claiming 40 bytes more than it has swallows what follows.
    ring.with_sim(|s| s.fault_next_reply(ReplyFault::BadLength(40)));
    let id = xs
        .client_mut()
        .submit(TxId::NONE, &xenstore::Request::Read { path: "/k" })
        .unwrap();
    xs.poll().unwrap();
    ring.service();
    xs.poll().unwrap();
    assert_eq!(xs.client_mut().poll_reply(id), None);
    // The next 40 bytes complete the frame: a stream protocol cannot detect
    // a lying length, so the reply carries them as value bytes.
    ring.with_sim(|s| s.inject_raw(&[0xff; 300]));
    ring.service();
    xs.poll().unwrap();
    let mut corrupted = b"v".to_vec();
    corrupted.extend([0xff; 40]);
    assert_eq!(
        xs.client_mut().poll_reply(id),
        Some(Ok(xenstore::Reply::Value(corrupted)))
    );
    // The rest parses as a header claiming 4 GiB, which the decoder skips
    // without buffering: the stream is dead, nothing panics, requests hang.
    assert_eq!(xs.client().stats().decode_errors, 1);
    let id = xs
        .client_mut()
        .submit(TxId::NONE, &xenstore::Request::Read { path: "/k" })
        .unwrap();
    for _ in 0..5 {
        ring.service();
        xs.poll().unwrap();
    }
    assert_eq!(xs.client_mut().poll_reply(id), None);
    assert!(!xs.is_idle());
    // The kernel's way out: reconnect the ring and resume.
    ring.reconnect(0x8000_0000);
    xs.resume().unwrap();
    assert_eq!(
        xs.client_mut().poll_reply(id),
        Some(Err(XsError::Cancelled))
    );
    assert_eq!(xs.read(TxId::NONE, "/k").unwrap(), b"v");
    assert_eq!(xs.wait_event(w).unwrap(), "/k");
}

#[test]
fn resume_reregisters_watches_and_fails_in_flight() {
    let (ring, mut xs) = setup(0);
    let a = xs.watch("/a", 4).unwrap();
    let b = xs.watch("rel", 4).unwrap();
    let c = xs.watch("@introduceDomain", 4).unwrap();
    assert_eq!(xs.wait_event(a).unwrap(), "/a");
    assert_eq!(xs.wait_event(b).unwrap(), "rel");
    assert_eq!(xs.wait_event(c).unwrap(), "@introduceDomain");
    let before = ring.with_sim(|s| s.watches());
    assert_eq!(before.len(), 3);
    let tx = xs.transaction_start().unwrap();
    xs.write(tx, "/a/x", b"1").unwrap();

    // A request goes out but its reply is lost in the suspend.
    ring.with_sim(|s| s.fault_next_reply(ReplyFault::Drop));
    let lost = xs
        .client_mut()
        .submit(TxId::NONE, &xenstore::Request::Read { path: "/a" })
        .unwrap();
    xs.poll().unwrap();
    assert!(!xs.is_idle());

    // Suspend/resume: the daemon forgets the connection, rings restart elsewhere.
    ring.reconnect(12345);
    assert!(ring.with_sim(|s| s.watches()).is_empty());
    xs.resume().unwrap();
    assert!(xs.is_idle());
    assert_eq!(
        xs.client_mut().poll_reply(lost),
        Some(Err(XsError::Cancelled))
    );
    let mut after = ring.with_sim(|s| s.watches());
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(after, before);
    for id in [a, b, c] {
        assert_eq!(xs.watch_stats(id).unwrap().state, WatchState::Active);
    }
    // Re-registration fires each watch once more, then changes flow again.
    assert_eq!(xs.wait_event(a).unwrap(), "/a");
    assert_eq!(xs.wait_event(b).unwrap(), "rel");
    ring.with_sim(|s| s.write("/a/y", b"2"));
    assert_eq!(xs.wait_event(a).unwrap(), "/a/y");
    // The open transaction is gone: EAGAIN tells its owner to retry.
    assert_eq!(xs.write(tx, "/a/x", b"1"), Err(XsError::Eagain));
    assert_eq!(xs.transaction_end(tx, true), Err(XsError::Eagain));
    // The helper retries into a fresh transaction.
    assert_eq!(
        xs.transaction(3, |xs, tx| xs.write(tx, "/a/x", b"1")),
        Ok(())
    );
    assert_eq!(xs.client().stats().cancelled, 1);
}

#[test]
fn ring_violations_are_errors() {
    let (ring, mut xs) = setup(500);
    xs.write(TxId::NONE, "/k", b"v").unwrap();
    // The daemon's producer jumps more than a ring ahead.
    ring.with_page(|p| {
        use xenstore::RingMemory;
        let prod = p.load_acquire(xen_abi::xenstore::RSP_PROD_OFFSET);
        p.store_release(xen_abi::xenstore::RSP_PROD_OFFSET, prod.wrapping_add(5000));
    });
    assert!(matches!(
        xs.read(TxId::NONE, "/k"),
        Err(XsError::Ring(RingError::BadResponseIndexes { .. }))
    ));
    // The server flags a connection error.
    ring.with_page(|p| {
        use xenstore::RingMemory;
        p.store_release(
            xen_abi::xenstore::SERVER_FEATURES_OFFSET,
            xen_abi::xenstore::XENSTORE_SERVER_FEATURE_ERROR,
        );
        p.store_release(
            xen_abi::xenstore::ERROR_OFFSET,
            xen_abi::xenstore::XENSTORE_ERROR_RINGIDX,
        );
    });
    assert_eq!(
        xs.poll(),
        Err(XsError::Ring(RingError::ServerError(
            xen_abi::xenstore::XENSTORE_ERROR_RINGIDX
        )))
    );
}

#[test]
fn payload_limits_are_enforced_locally() {
    let (ring, mut xs) = setup(0);
    let big = vec![b'x'; 4096];
    assert!(matches!(
        xs.write(TxId::NONE, "/big", &big),
        Err(XsError::Request(_))
    ));
    // The largest legal write goes through intact and the daemon never saw an
    // oversized frame.
    xs.write(TxId::NONE, "/big", &big[..4096 - 5]).unwrap();
    assert_eq!(xs.read(TxId::NONE, "/big").unwrap().len(), 4091);
    assert!(!ring.with_sim(|s| s.connection_killed()));
}
