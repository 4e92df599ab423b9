//! blkfront against the simulated blkback: negotiation, the data path, refusals, errors, resume, closing, hostile answers.

use blkfront::sim::{
    InFlightOnDisconnect, RspCorruption, SimBlkConfig, SimBlkFront as Front, SimBlkWorld,
    pseudo_random_corpus,
};
use blkfront::{BlkError, Completion, Config, Fault, Op, ReqId, SubmitError, disk_name};
use xenbus::Phase;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// A write without FUA.
fn write(data: Vec<u8>) -> Op {
    Op::Write { data, fua: false }
}

/// Back-end steps, back-end state and driver polls until nothing moves.
fn pump(w: &mut SimBlkWorld, bf: &mut Front) {
    for _ in 0..200 {
        let moved = w.step();
        let phase = bf.phase();
        let _ = bf.on_backend_state(&mut w.xs);
        let handled = bf.poll().unwrap_or(0);
        if !moved && phase == bf.phase() && handled == 0 && !w.step() {
            break;
        }
    }
}

fn connect(cfg: SimBlkConfig, config: Config) -> (SimBlkWorld, Front) {
    let mut w = SimBlkWorld::new(cfg);
    let mut bf = w.probe(config).unwrap_or_else(|e| panic!("probe: {e}"));
    bf.start(&mut w.xs).expect("start");
    pump(&mut w, &mut bf);
    assert!(
        bf.is_up(),
        "connected: phase {:?}, fault {:?}",
        bf.phase(),
        bf.fault()
    );
    (w, bf)
}

fn completions(bf: &mut Front) -> Vec<Completion> {
    std::iter::from_fn(|| bf.take_completion()).collect()
}

fn run(w: &mut SimBlkWorld, bf: &mut Front, offset: u64, op: Op) -> Result<Vec<u8>, BlkError> {
    let id = bf.submit(offset, op).expect("submit");
    pump(w, bf);
    let done = completions(bf);
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].id, id);
    done[0].result.clone()
}

fn active_grants(w: &SimBlkWorld) -> u32 {
    w.grants.with_table(|t| t.stats().active)
}

#[test]
fn disk_names_follow_linux() {
    assert_eq!(disk_name(51712), "xvda");
    assert_eq!(disk_name(51728), "xvdb");
    assert_eq!(disk_name((1 << 28) | (26 << 8)), "xvdaa");
    assert_eq!(disk_name(768), "vbd768");
}

#[test]
fn negotiates_what_both_ends_offer() {
    let (w, bf) = connect(SimBlkConfig::default(), Config::default());
    let info = bf.info().expect("info");
    assert_eq!(info.sectors, 2048);
    assert_eq!(info.sector_size, 512);
    assert!(!info.read_only);
    let f = bf.features();
    assert_eq!(f.ring_order, 2, "min(back end 4, ours 2)");
    assert_eq!(f.indirect_segments, 64, "min(back end 256, ours 64)");
    assert!(f.flush && f.barrier && f.discard.is_some() && f.persistent);
    assert_eq!(
        f.to_string(),
        "flush,barrier,discard,persistent,indirect=64,ring-order=2"
    );
    assert_eq!(w.front_node("ring-page-order").as_deref(), Some(&b"2"[..]));
    assert!(w.front_node("ring-ref3").is_some() && w.front_node("ring-ref").is_none());
    assert_eq!(
        w.front_node("protocol").as_deref(),
        Some(&b"x86_64-abi"[..])
    );
    assert_eq!(
        w.front_node("feature-persistent").as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(w.back.ring_order(), Some(2));
    assert!(w.back.persistent_in_use());

    let (w, bf) = connect(SimBlkConfig::minimal(), Config::default());
    let f = bf.features();
    assert_eq!((f.ring_order, f.indirect_segments), (0, 0));
    assert_eq!(f.to_string(), "none");
    assert!(w.front_node("ring-ref").is_some() && w.front_node("ring-page-order").is_none());
}

#[test]
fn writes_and_reads_of_every_shape_reach_the_disk() {
    for cfg in [SimBlkConfig::default(), SimBlkConfig::minimal()] {
        let (mut w, mut bf) = connect(cfg.clone(), Config::default());
        let mut at = 0u64;
        for (k, len) in [512usize, 4096, 8192 + 512, 44 * 1024, 64 * 1024, 256 * 1024]
            .into_iter()
            .enumerate()
        {
            let data = pattern(len, k as u8);
            let r = run(&mut w, &mut bf, at, write(data.clone()));
            assert_eq!(
                r,
                Ok(Vec::new()),
                "{len}: audit {:?} stats {:?}",
                w.back.audit_failures(),
                w.back.stats()
            );
            assert_eq!(
                &w.disk()[at as usize..at as usize + len],
                &data[..],
                "{cfg:?} {len}"
            );
            let back = run(&mut w, &mut bf, at, Op::Read { len: len as u32 });
            assert_eq!(back.as_deref(), Ok(&data[..]), "{len}");
            at += len as u64;
        }
        assert_eq!(w.back.audit_failures(), &[]);
        if cfg.max_indirect_segments > 0 {
            assert!(bf.stats().indirect > 0 && w.back.stats().indirect > 0);
        } else {
            assert_eq!(w.back.stats().indirect, 0);
        }
    }
}

#[test]
fn many_requests_in_flight_complete_out_of_order() {
    let (mut w, mut bf) = connect(SimBlkConfig::default(), Config::default());
    w.back.answer_out_of_order(true);
    let mut ids: Vec<(ReqId, u64, Vec<u8>)> = Vec::new();
    for k in 0..24u64 {
        let data = pattern(12 * 1024, k as u8);
        let id = bf
            .submit(k * 16 * 1024, write(data.clone()))
            .expect("submit");
        ids.push((id, k * 16 * 1024, data));
    }
    pump(&mut w, &mut bf);
    let done = completions(&mut bf);
    assert_eq!(done.len(), 24);
    assert!(done.iter().all(|c| c.result == Ok(Vec::new())));
    for (_, at, data) in &ids {
        assert_eq!(
            &w.disk()[*at as usize..*at as usize + data.len()],
            &data[..]
        );
    }
    assert_eq!(bf.outstanding(), 0);
    assert_eq!(bf.in_flight(), 0);
}

#[test]
fn what_the_back_end_cannot_do_is_refused_before_the_ring() {
    let (mut w, mut bf) = connect(
        SimBlkConfig {
            read_only: true,
            ..SimBlkConfig::minimal()
        },
        Config::default(),
    );
    let posted = bf.stats().posted;
    let refused = [
        (0, write(vec![1; 512]), SubmitError::ReadOnly),
        (0, Op::Discard { len: 4096 }, SubmitError::ReadOnly),
        (100, Op::Read { len: 512 }, SubmitError::OutOfRange),
        (0, Op::Read { len: 100 }, SubmitError::OutOfRange),
        (0, Op::Read { len: 0 }, SubmitError::OutOfRange),
        (
            2048 * 512 - 512,
            Op::Read { len: 1024 },
            SubmitError::OutOfRange,
        ),
        (
            u64::MAX - 511,
            Op::Read { len: 512 },
            SubmitError::OutOfRange,
        ),
    ];
    for (offset, op, err) in refused {
        assert_eq!(bf.submit(offset, op), Err(err), "at {offset}");
    }
    assert_eq!(bf.stats().posted, posted, "nothing reached the ring");
    // Reads work; a flush on a disk without a cache completes at once.
    assert!(run(&mut w, &mut bf, 0, Op::Read { len: 4096 }).is_ok());
    assert_eq!(run(&mut w, &mut bf, 0, Op::Flush), Ok(Vec::new()));
    assert_eq!(w.back.stats().flush_requests + w.back.stats().barriers, 0);

    let (_w, mut bf) = connect(SimBlkConfig::minimal(), Config::default());
    assert_eq!(
        bf.submit(0, Op::Discard { len: 4096 }),
        Err(SubmitError::Unsupported)
    );
    let big = write(vec![0; 2 * 1024 * 1024]);
    assert_eq!(bf.submit(0, big), Err(SubmitError::OutOfRange));
    let (_w, mut bf) = connect(
        SimBlkConfig {
            sectors: 8192,
            ..SimBlkConfig::minimal()
        },
        Config::default(),
    );
    let big = write(vec![0; 2 * 1024 * 1024]);
    assert_eq!(bf.submit(0, big), Err(SubmitError::TooLarge));
}

#[test]
fn error_responses_fail_their_request_only() {
    let (mut w, mut bf) = connect(SimBlkConfig::default(), Config::default());
    w.back.fail_next(1);
    let r = run(&mut w, &mut bf, 0, write(vec![7; 4096]));
    assert_eq!(r, Err(BlkError::Io));
    assert!(bf.is_up() && bf.fault().is_none());
    let r = run(&mut w, &mut bf, 0, write(vec![7; 4096]));
    assert_eq!(r, Ok(Vec::new()));
}

#[test]
fn fua_writes_and_flushes_reach_the_cache_flush() {
    let (mut w, mut bf) = connect(SimBlkConfig::default(), Config::default());
    let before = w.back.stats().flush_requests;
    let r = run(
        &mut w,
        &mut bf,
        4096,
        Op::Write {
            data: vec![9; 8192],
            fua: true,
        },
    );
    assert_eq!(r, Ok(Vec::new()));
    assert_eq!(
        w.back.stats().flush_requests,
        before + 1,
        "a flush after the data"
    );
    assert_eq!(&w.disk()[4096..4096 + 8192], &[9u8; 8192][..]);
    assert_eq!(run(&mut w, &mut bf, 0, Op::Flush), Ok(Vec::new()));
    assert_eq!(w.back.stats().flush_requests, before + 2);
    // Barrier only: the flush uses it.
    let (mut w, mut bf) = connect(
        SimBlkConfig {
            flush: false,
            ..SimBlkConfig::default()
        },
        Config::default(),
    );
    assert_eq!(run(&mut w, &mut bf, 0, Op::Flush), Ok(Vec::new()));
    assert_eq!(w.back.stats().barriers, 1);
    assert_eq!(w.back.audit_failures(), &[]);
}

#[test]
fn discard_follows_granularity() {
    let (mut w, mut bf) = connect(SimBlkConfig::default(), Config::default());
    run(&mut w, &mut bf, 0, write(vec![5; 16384])).expect("write");
    assert_eq!(
        bf.submit(512, Op::Discard { len: 4096 }),
        Err(SubmitError::OutOfRange)
    );
    assert_eq!(
        run(&mut w, &mut bf, 4096, Op::Discard { len: 8192 }),
        Ok(Vec::new())
    );
    assert_eq!(w.back.stats().discards, 1);
    assert_eq!(&w.disk()[4096..12288], &[0u8; 8192][..]);
    assert_eq!(&w.disk()[..4096], &[5u8; 4096][..]);
}

#[test]
fn cancelled_suspend_lets_requests_in_flight_complete() {
    let (mut w, mut bf) = connect(SimBlkConfig::default(), Config::default());
    w.back.hold(true);
    let id = bf.submit(0, write(pattern(64 * 1024, 3))).expect("submit");
    pump(&mut w, &mut bf);
    assert!(bf.in_flight() > 0);
    let publishes = w.grants.publishes();
    bf.suspend().expect("suspend");
    bf.resume(&mut w.xs, false).expect("resume");
    w.back.hold(false);
    pump(&mut w, &mut bf);
    let done = completions(&mut bf);
    assert_eq!(
        done,
        vec![Completion {
            id,
            result: Ok(Vec::new())
        }]
    );
    assert_eq!(w.grants.publishes(), publishes, "nothing granted again");
    assert_eq!(w.back.stats().connects, 1);
}

#[test]
fn new_domain_resume_reissues_in_flight_requests_under_the_new_limits() {
    let (mut w, mut bf) = connect(SimBlkConfig::default(), Config::default());
    w.back.hold(true);
    let mut expect = Vec::new();
    for k in 0..4u64 {
        let data = pattern(200 * 1024, k as u8 + 10);
        let fua = k == 3;
        let id = bf
            .submit(
                k * 256 * 1024,
                Op::Write {
                    data: data.clone(),
                    fua,
                },
            )
            .expect("submit");
        expect.push((id, k * 256 * 1024, data));
    }
    let flush = bf.submit(0, Op::Flush).expect("flush");
    let read_back = bf.submit(0, Op::Read { len: 4096 }).expect("read");
    pump(&mut w, &mut bf);
    assert!(bf.in_flight() > 0, "requests wait on the held back end");
    let indirect_before = w.back.stats().indirect;
    assert!(indirect_before > 0);

    bf.suspend().expect("suspend");
    // Restored into a new domain whose back end offers less: one page, no
    // indirect segments, no persistent grants, no barrier.
    w.new_domain(SimBlkConfig {
        sectors: 2048,
        barrier: false,
        ..SimBlkConfig::minimal()
    });
    w.back.config_mut().flush = true;
    w.back.hold(false);
    bf.resume(&mut w.xs, true).expect("resume");
    pump(&mut w, &mut bf);
    assert!(
        bf.is_up(),
        "reconnected: {:?} {:?}",
        bf.phase(),
        bf.last_setup_error()
    );
    let f = bf.features();
    assert_eq!(
        (f.ring_order, f.indirect_segments, f.persistent),
        (0, 0, false)
    );
    pump(&mut w, &mut bf);
    let done = completions(&mut bf);
    assert_eq!(done.len(), 6, "{done:?}");
    assert!(done.iter().all(|c| c.result.is_ok()), "{done:?}");
    for (_, at, data) in &expect {
        assert_eq!(
            &w.disk()[*at as usize..*at as usize + data.len()],
            &data[..]
        );
    }
    assert!(done.iter().any(|c| c.id == flush) && done.iter().any(|c| c.id == read_back));
    assert_eq!(
        w.back.stats().indirect,
        indirect_before,
        "re-split into direct requests"
    );
    assert_eq!(
        w.back.audit_failures(),
        &[],
        "no grant of the old domain reached the new ring"
    );
    assert!(bf.stats().reposted > 0);
}

#[test]
fn back_end_closing_with_io_in_flight_fails_it_and_leaks_nothing() {
    for policy in [InFlightOnDisconnect::Drop, InFlightOnDisconnect::KeepBusy] {
        let (mut w, mut bf) = connect(SimBlkConfig::default(), Config::default());
        let baseline = (active_grants(&w), w.pages.live());
        w.back.set_in_flight_on_disconnect(policy);
        w.back.hold(true);
        let a = bf.submit(0, write(pattern(32 * 1024, 1))).expect("submit");
        let b = bf.submit(65536, Op::Read { len: 8192 }).expect("submit");
        pump(&mut w, &mut bf);
        assert_eq!(bf.in_flight(), 2);
        w.back.close();
        pump(&mut w, &mut bf);
        let done = completions(&mut bf);
        assert_eq!(done.len(), 2, "{policy:?}: {done:?}");
        for c in &done {
            assert!(c.id == a || c.id == b);
            assert_eq!(
                c.result,
                Err(BlkError::Disconnected),
                "never a false success"
            );
        }
        // Held requests the back end still had are answered on the old ring
        // (KeepBusy) or dropped; either way the grants come back.
        w.back.hold(false);
        w.back.release_held(usize::MAX);
        pump(&mut w, &mut bf);
        w.grants.poll_deferred(&w.pages);
        // The back end went Closed and probed again: the disk reconnected,
        // holding exactly what a fresh connection holds (nothing leaked).
        assert!(bf.is_up(), "{policy:?}: reconnected ({:?})", bf.phase());
        assert_eq!((active_grants(&w), w.pages.live()), baseline, "{policy:?}");
        assert_eq!(bf.outstanding(), 0);
    }
}

#[test]
fn a_back_end_that_comes_back_gets_the_disk_again() {
    let (mut w, mut bf) = connect(SimBlkConfig::default(), Config::default());
    run(&mut w, &mut bf, 0, write(vec![3; 4096])).expect("write");
    w.back.reload();
    pump(&mut w, &mut bf);
    assert!(bf.is_up(), "{:?}", bf.phase());
    assert_eq!(
        run(&mut w, &mut bf, 0, Op::Read { len: 4096 }),
        Ok(vec![3; 4096])
    );
    assert!(w.back.stats().connects >= 2);
}

#[test]
fn hostile_responses_fault_reconnect_and_leak_nothing() {
    let corruptions = [
        RspCorruption::UnknownId,
        RspCorruption::Id(9999),
        RspCorruption::Replay,
        RspCorruption::Operation(42),
        RspCorruption::Status(7),
    ];
    for c in corruptions {
        let (mut w, mut bf) = connect(SimBlkConfig::default(), Config::default());
        w.back.corrupt_next(c);
        for k in 0..3u64 {
            bf.submit(k * 4096, write(vec![k as u8; 4096]))
                .expect("submit");
        }
        pump(&mut w, &mut bf);
        let fault = bf.fault();
        assert!(fault.is_some(), "{c:?} went unnoticed");
        assert!(!bf.is_up());
        bf.reconnect(&mut w.xs).expect("reconnect");
        pump(&mut w, &mut bf);
        assert!(bf.is_up(), "{c:?}: reconnected ({:?})", bf.phase());
        let done = completions(&mut bf);
        assert_eq!(done.len(), 3, "{c:?}: every request answered ({done:?})");
        assert_eq!(
            run(&mut w, &mut bf, 0, Op::Read { len: 512 }).map(|v| v.len()),
            Ok(512)
        );
        assert_eq!(bf.outstanding(), 0);
    }
    let (mut w, mut bf) = connect(SimBlkConfig::default(), Config::default());
    bf.submit(0, Op::Read { len: 4096 }).expect("submit");
    w.back.hold(true);
    pump(&mut w, &mut bf);
    w.back.jump_rsp_prod(1000);
    let _ = bf.poll();
    assert!(
        matches!(bf.fault(), Some(Fault::Ring(_))),
        "{:?}",
        bf.fault()
    );
}

#[test]
fn a_closed_disk_refuses_requests() {
    let (mut w, mut bf) = connect(SimBlkConfig::default(), Config::default());
    bf.close(&mut w.xs).expect("close");
    pump(&mut w, &mut bf);
    assert_eq!(bf.phase(), Phase::Closed);
    assert_eq!(bf.submit(0, Op::Read { len: 512 }), Err(SubmitError::Gone));
    w.grants.poll_deferred(&w.pages);
    assert_eq!(active_grants(&w), 0);
    assert_eq!(w.pages.live(), 0, "every page back with the provider");
}

/// The fuzz target's session body, shared with `fuzz/`.
#[path = "../../../fuzz/src/blkfront.rs"]
mod hostile_session;

/// The fuzz target's body over a deterministic pseudo-random corpus (so a
/// plain `cargo test` exercises it without cargo-fuzz).
#[test]
fn hostile_sessions_from_pseudo_random_bytes() {
    pseudo_random_corpus(
        0x2545_F491_4F6C_DD1D,
        250,
        4,
        hostile_session::hostile_session,
    );
}

#[test]
fn write_zeroes_past_the_request_limit_is_split_and_refusals_hand_the_op_back() {
    // 4 MiB disk, 3 MiB of zeroes: three times the 1 MiB limit of a write.
    let (mut w, mut bf) = connect(
        SimBlkConfig {
            sectors: 8192,
            ..SimBlkConfig::default()
        },
        Config::default(),
    );
    let data = pattern(4 << 20, 9);
    w.write_disk(0, &data);
    let r = run(
        &mut w,
        &mut bf,
        512 * 1024,
        Op::WriteZeroes {
            len: 3 << 20,
            fua: true,
        },
    );
    assert_eq!(r, Ok(Vec::new()));
    let disk = w.disk();
    assert_eq!(&disk[..512 * 1024], &data[..512 * 1024]);
    assert!(
        disk[512 * 1024..(512 + 3072) * 1024]
            .iter()
            .all(|&b| b == 0)
    );
    assert_eq!(&disk[(512 + 3072) * 1024..], &data[(512 + 3072) * 1024..]);
    assert!(w.back.stats().flush_requests + w.back.stats().barriers > 0);
    assert_eq!(w.back.audit_failures(), &[]);

    // A discard has no data and no size limit either.
    assert_eq!(
        run(&mut w, &mut bf, 0, Op::Discard { len: 2 << 20 }),
        Ok(Vec::new())
    );

    // A refused write comes back whole, with its data.
    let big = write(pattern(2 << 20, 3));
    match bf.try_submit(0, big.clone()) {
        Err((SubmitError::TooLarge, op)) => assert_eq!(op, big),
        other => panic!("expected TooLarge with the op, got {other:?}"),
    }
    let past_end = Op::WriteZeroes {
        len: 8192,
        fua: false,
    };
    assert_eq!(
        bf.try_submit((4 << 20) - 4096, past_end.clone()),
        Err((SubmitError::OutOfRange, past_end))
    );
}

/// A fault the back end provokes (an impossible `rsp_prod`) with one request
/// in flight.
fn provoke_fault(w: &mut SimBlkWorld, bf: &mut Front) {
    bf.submit(0, Op::Read { len: 4096 }).expect("submit");
    w.back.hold(true);
    pump(w, bf);
    w.back.jump_rsp_prod(1000);
    let _ = bf.poll();
    assert!(
        matches!(bf.fault(), Some(Fault::Ring(_))),
        "{:?}",
        bf.fault()
    );
    w.back.hold(false);
}

#[test]
fn a_back_end_that_keeps_its_mappings_and_faults_again_and_again_breaks_the_disk() {
    let mut w = SimBlkWorld::new(SimBlkConfig::default());
    let pages_before = w.pages.live();
    let mut bf = w.probe(Config::default()).expect("probe");
    bf.start(&mut w.xs).expect("start");
    pump(&mut w, &mut bf);
    assert!(bf.is_up());
    bf.set_recovery(xen_frontend::RecoveryConfig {
        max_faults: 2,
        fault_window_ms: 60_000,
        ..xen_frontend::RecoveryConfig::default()
    });
    w.back.keep_mappings_on_close(true);
    for now in [0u64, 10] {
        provoke_fault(&mut w, &mut bf);
        bf.reconnect_after_fault(&mut w.xs, now)
            .expect("within the budget");
        pump(&mut w, &mut bf);
        assert!(bf.is_up(), "reconnected ({:?})", bf.phase());
        // The request in flight failed with the old connection.
        assert!(completions(&mut bf).iter().all(|c| c.result.is_err()));
    }
    assert!(bf.deferred_pages() > 0, "the back end keeps pages mapped");
    provoke_fault(&mut w, &mut bf);
    let err = bf
        .reconnect_after_fault(&mut w.xs, 20)
        .expect_err("over the budget");
    assert!(
        matches!(
            err,
            blkfront::Error::Broken(xen_frontend::Broken::TooManyFaults { faults: 3, .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("broken"), "{err}");
    pump(&mut w, &mut bf);
    assert!(!bf.is_up());
    assert_eq!(bf.phase(), Phase::Closed);
    assert!(completions(&mut bf).iter().all(|c| c.result.is_err()));
    assert_eq!(bf.outstanding(), 0);
    // Broken for good: polls retry nothing, submits are refused.
    bf.poll_recovery(&mut w.xs, 3_600_000).expect("poll");
    pump(&mut w, &mut bf);
    assert_eq!(bf.phase(), Phase::Closed);
    assert!(bf.submit(0, Op::Read { len: 512 }).is_err());
    // Once the back end lets go, every grant and page comes back.
    w.back.release_mappings();
    let pages = w.pages.clone();
    w.grants.poll_deferred(&pages);
    let s = w.grants.with_table(|t| t.stats());
    assert_eq!((s.active, s.deferred, s.leaked), (0, 0, 0), "{s:?}");
    assert!(w.pages.live() <= pages_before);
}

#[test]
fn event_storms_without_responses_find_no_work_and_change_nothing() {
    let (mut w, mut bf) = connect(SimBlkConfig::default(), Config::default());
    let before = bf.stats();
    let grants = active_grants(&w);
    for _ in 0..10_000 {
        w.evt.notify_guest();
        assert!(w.evt.take_guest_event());
        assert_eq!(bf.poll(), Ok(0));
    }
    assert_eq!(bf.stats(), before, "a spurious event costs no ring work");
    assert_eq!(active_grants(&w), grants);
    assert!(bf.is_up());
    assert_eq!(
        run(&mut w, &mut bf, 0, Op::Read { len: 512 }).map(|v| v.len()),
        Ok(512)
    );
}

// --- the guest's wake-up discipline across suspends ------------------------------------
//
// The tests above pump the back end and the driver on every step. The guest does
// not: its main loop polls a disk only when the back end's event (or the watch on
// the back end's state) woke it, and re-arms the ring before it sleeps; blkback
// services the ring only when we notify it (or its watch on our state fires).
// These tests drive both sides that way, so a lost notification or a lost wake-up
// (lead (d) of the NBD stall after a suspend, docs/BLK.md) leaves a request
// unanswered and fails them (the simulated blkback takes requests only when
// notified: `SimBlkback::events_only`).

/// What each side last saw: the back end runs when our notifications or our
/// state changed since, the guest when its event came or the back end's state
/// changed.
struct Seen {
    notifies: u64,
    front: Option<Vec<u8>>,
    back: Option<Vec<u8>>,
}

impl Seen {
    fn now(w: &SimBlkWorld) -> Seen {
        Seen {
            notifies: w.guest.evt.to_backend(),
            front: w.front_node("state"),
            back: w.back_node("state"),
        }
    }
}

/// Runs both sides by events only until neither has anything to do.
fn pump_on_events(w: &mut SimBlkWorld, bf: &mut Front, seen: &mut Seen) {
    for _ in 0..1000 {
        let mut moved = false;
        // blkback: our notification, or its watch on our state.
        let (notifies, front) = (w.guest.evt.to_backend(), w.front_node("state"));
        let back_ran = notifies != seen.notifies || front != seen.front;
        if back_ran {
            (seen.notifies, seen.front) = (notifies, front);
            w.settle();
            moved = true;
        }
        // The guest: the back end's event, or its watch on the back end's state
        // (which fires on every write of it: after a back-end pass that may have
        // written it, the guest looks).
        let back = w.back_node("state");
        let event = w.guest.evt.take_guest_event();
        if back != seen.back || (back_ran && !bf.is_up()) {
            seen.back = back;
            let _ = bf.on_backend_state(&mut w.xs);
            moved = true;
        }
        if event || moved {
            let _ = bf.poll();
            // Before sleeping: re-arm, and poll again if a response slipped in.
            while bf.rearm() {
                let _ = bf.poll();
            }
        }
        if !moved && !event {
            return;
        }
    }
    panic!("the event pump did not settle");
}

/// Responses the back end writes while the domain is suspended (`xl save -c`)
/// are taken after the cancelled resume, and a request submitted afterwards is
/// answered, with wake-ups by events only.
#[test]
fn cancelled_suspend_by_events_only_loses_no_completion_and_no_notification() {
    let (mut w, mut bf) = connect(SimBlkConfig::default(), Config::default());
    w.back.events_only(true);
    let seen = &mut Seen::now(&w);
    let data = pattern(256 * 1024, 7);
    let id = bf.submit(0, write(data.clone())).expect("submit");
    w.back.hold(true);
    pump_on_events(&mut w, &mut bf, seen);
    assert!(bf.in_flight() > 0);
    bf.suspend().expect("suspend");
    // blkback finishes the I/O while the guest is paused; its event waits.
    w.back.hold(false);
    w.service();
    assert_eq!(bf.poll(), Ok(0), "a suspended disk takes no response");
    bf.resume(&mut w.xs, false).expect("resume");
    // The main loop runs a pass after the resume, then only on events.
    let _ = bf.poll();
    pump_on_events(&mut w, &mut bf, seen);
    assert_eq!(
        completions(&mut bf),
        vec![Completion {
            id,
            result: Ok(Vec::new())
        }]
    );
    let read = bf.submit(0, Op::Read { len: 64 * 1024 }).expect("read");
    pump_on_events(&mut w, &mut bf, seen);
    let done = completions(&mut bf);
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].id, read);
    assert_eq!(done[0].result.as_deref(), Ok(&data[..64 * 1024]));
}

/// After a restore, the requests that were in flight, and one submitted while
/// the disk reconnects, are answered with wake-ups by events only.
#[test]
fn new_domain_resume_by_events_only_answers_reposted_and_new_requests() {
    let (mut w, mut bf) = connect(SimBlkConfig::default(), Config::default());
    w.back.events_only(true);
    let seen = &mut Seen::now(&w);
    w.back.hold(true);
    let a = bf.submit(0, write(pattern(200 * 1024, 1))).expect("a");
    let b = bf
        .submit(
            512 * 1024,
            Op::Write {
                data: pattern(64 * 1024, 2),
                fua: true,
            },
        )
        .expect("b");
    pump_on_events(&mut w, &mut bf, seen);
    assert!(bf.in_flight() > 0);
    bf.suspend().expect("suspend");
    w.new_domain(SimBlkConfig::default());
    w.back.events_only(true);
    bf.resume(&mut w.xs, true).expect("resume");
    // Submitted while the disk reconnects (the NBD service does not wait).
    let c = bf.submit(0, Op::Read { len: 4096 }).expect("c");
    let _ = bf.poll();
    pump_on_events(&mut w, &mut bf, seen);
    assert!(bf.is_up(), "{:?}", bf.phase());
    let done = completions(&mut bf);
    let mut ids: Vec<ReqId> = done.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![a, b, c], "{done:?}");
    assert!(done.iter().all(|c| c.result.is_ok()), "{done:?}");
    assert_eq!(&w.disk()[..4096], &pattern(200 * 1024, 1)[..4096]);
    assert!(bf.stats().reposted > 0);
    // And the disk goes on.
    let d = bf.submit(4096, Op::Read { len: 4096 }).expect("d");
    pump_on_events(&mut w, &mut bf, seen);
    assert_eq!(completions(&mut bf).first().map(|c| c.id), Some(d));
}
