//! `blkfront_hostile`: a byte-driven hostile blkback session against `blkfront::BlkFront`.
//!
//! Shared by the fuzz target and by blkfront's own tests (which include this
//! file and run it over a pseudo-random corpus, so a plain `cargo test`
//! exercises the same body without cargo-fuzz).

use blkfront::sim::{InFlightOnDisconnect, RspCorruption, SimBlkConfig, SimBlkWorld};
use blkfront::{Config, Op, SubmitError};
use xen_abi::blkif::BlkifResponse;

/// Runs a session driven by `data`: a connected disk whose back end, per
/// input byte, holds or answers requests (in or out of order), corrupts the
/// next response (unknown, replayed or foreign ids, wrong operations, bad
/// statuses), pushes raw responses, jumps `rsp_prod`, fails requests, closes,
/// reloads, or the domain is saved and restored into a back end with other
/// features; the driver submits reads, writes, flushes and discards, polls,
/// re-arms, suspends and resumes, and reconnects after a fault.
///
/// Checked after every step (a violation panics): a fault is sticky until a
/// reconnect; no request is answered twice; a read answers with exactly its
/// length; the driver never holds more pages than its pool, indirect pages and
/// ring need. At the end the back end behaves: every request gets an answer,
/// and the disk reconnects and reads.
pub fn hostile_session(data: &[u8]) {
    let config = Config {
        pool_pages: 24,
        max_ring_order: 1,
        max_indirect_segments: 16,
        indirect_pages: 2,
        max_request_bytes: 128 * 1024,
        max_queued: 12,
        xs_attempts: 4,
    };
    let page_budget = 24 + 2 + 2;
    let mut w = SimBlkWorld::new(SimBlkConfig {
        sectors: 1024,
        ..SimBlkConfig::default()
    });
    let mut bf = w.probe(config).unwrap_or_else(|e| panic!("probe: {e}"));
    let _ = bf.start(&mut w.xs);
    // The storm and the recovery checks (they return early once the disk is gone or
    // the read after the storm came back); then the disk is closed.
    (|| {
        let mut answered = std::collections::BTreeSet::new();
        let mut reads = std::collections::BTreeMap::new();
        let mut it = data.iter().copied();
        let mut next = move || it.next();
        let mut steps = 0;
        let mut suspended = false;
        while let Some(op) = next() {
            steps += 1;
            if steps > 300 {
                break;
            }
            let mut arg = [0u8; 8];
            for a in &mut arg {
                *a = next().unwrap_or(0);
            }
            let offset = u64::from(u16::from_le_bytes([arg[0], arg[1]]) % 1024) * 512;
            let len = (u32::from(arg[2]) % 64 + 1) * 512;
            match op % 20 {
                0..=3 => {
                    let r = match arg[3] % 4 {
                        0 => bf.submit(offset, Op::Read { len }),
                        1 => bf.submit(
                            offset,
                            Op::Write {
                                data: vec![arg[4]; len as usize],
                                fua: arg[5] & 1 != 0,
                            },
                        ),
                        2 => bf.submit(0, Op::Flush),
                        _ => bf.submit(offset & !4095, Op::Discard { len: 4096 }),
                    };
                    if let (Ok(id), 0) = (r, arg[3] % 4) {
                        reads.insert(id, len as usize);
                    }
                    if let Err(e) = r {
                        // Refusals are typed; none is a panic.
                        let _ = matches!(e, SubmitError::Busy | SubmitError::OutOfRange);
                    }
                }
                4 => w.back.hold(arg[0] & 1 != 0),
                5 => {
                    w.back.release_held(usize::from(arg[0]));
                }
                6 => w.back.answer_out_of_order(arg[0] & 1 != 0),
                7 => w.back.corrupt_next(match arg[0] % 5 {
                    0 => RspCorruption::UnknownId,
                    1 => RspCorruption::Replay,
                    2 => RspCorruption::Id(u64::from_le_bytes(arg)),
                    3 => RspCorruption::Operation(arg[1]),
                    _ => RspCorruption::Status(i16::from_le_bytes([arg[1], arg[2]])),
                }),
                8 => w.back.push_raw_response(BlkifResponse {
                    id: u64::from(arg[0]),
                    operation: arg[1],
                    status: i16::from_le_bytes([arg[2], arg[3]]),
                }),
                9 => w.back.jump_rsp_prod(u32::from(arg[0])),
                10 => w.back.fail_next(u32::from(arg[0] % 4)),
                11 => {
                    w.back.set_in_flight_on_disconnect(if arg[0] & 1 == 0 {
                        InFlightOnDisconnect::Drop
                    } else {
                        InFlightOnDisconnect::KeepBusy
                    });
                    w.back.close();
                }
                12 => w.back.reload(),
                13 => {
                    if !suspended && bf.suspend().is_ok() {
                        suspended = true;
                    }
                }
                14 => {
                    if suspended {
                        let new_domain = arg[0] & 1 != 0;
                        if new_domain {
                            w.new_domain(SimBlkConfig {
                                sectors: 1024,
                                max_indirect_segments: u32::from(arg[1] % 2) * 32,
                                max_ring_page_order: (arg[2] & 1 != 0)
                                    .then_some(u32::from(arg[3] % 3)),
                                persistent: arg[4] & 1 != 0,
                                flush: arg[5] & 1 != 0,
                                barrier: arg[5] & 2 != 0,
                                discard: arg[5] & 4 != 0,
                                ..SimBlkConfig::default()
                            });
                        }
                        let _ = bf.resume(&mut w.xs, new_domain);
                        suspended = false;
                    }
                }
                15 => {
                    if bf.fault().is_some() {
                        let _ = bf.reconnect(&mut w.xs);
                    }
                }
                16 => {
                    let _ = bf.rearm();
                }
                _ => {
                    w.step();
                    let _ = bf.on_backend_state(&mut w.xs);
                }
            }
            if !suspended {
                w.step();
                let _ = bf.on_backend_state(&mut w.xs);
                let before = bf.fault();
                let r = bf.poll();
                if let Some(f) = before {
                    assert_eq!(r, Err(f), "a fault stays until a reconnect");
                }
            }
            while let Some(c) = bf.take_completion() {
                assert!(answered.insert(c.id), "request {} answered twice", c.id);
                if let (Ok(data), Some(len)) = (&c.result, reads.remove(&c.id)) {
                    assert_eq!(data.len(), len, "a read answers with its length");
                }
            }
            // The kernel's periodic retry of deferred grants.
            w.grants.poll_deferred(&w.pages);
            // The driver's own pages, plus at most one old connection's pages
            // that a closing back end still maps (deferred, not reused).
            assert!(
                w.pages.live() <= 2 * page_budget,
                "pages held: {} (budget {page_budget} + one deferred connection)",
                w.pages.live()
            );
        }
        // The end: the back end behaves and the disk works again.
        if suspended {
            let _ = bf.resume(&mut w.xs, false);
        }
        w.back.reset_knobs();
        w.back.hold(false);
        w.back.release_held(usize::MAX);
        let mut reconnects = 0;
        for _ in 0..200 {
            // Leftovers of the storm (a raw response queued for the next ring)
            // may fault a fresh connection once more: reconnect, boundedly.
            if (bf.fault().is_some() || (!bf.is_up() && !bf.is_gone())) && reconnects < 4 {
                reconnects += 1;
                let _ = bf.reconnect(&mut w.xs);
            }
            w.step();
            let _ = bf.on_backend_state(&mut w.xs);
            let _ = bf.poll();
            while let Some(c) = bf.take_completion() {
                assert!(answered.insert(c.id), "request {} answered twice", c.id);
            }
            if bf.is_up() && bf.outstanding() == 0 {
                break;
            }
        }
        if bf.is_gone() {
            return;
        }
        assert!(
            bf.is_up(),
            "the disk reconnects: {:?} {:?}; back end {:?} {:?} in flight {}",
            bf.phase(),
            bf.fault(),
            w.back.state(),
            w.back.stats().connect_error,
            w.back.in_flight()
        );
        assert_eq!(bf.outstanding(), 0, "every request answered");
        let id = bf
            .submit(0, Op::Read { len: 512 })
            .expect("a read after the storm");
        for _ in 0..50 {
            w.step();
            let _ = bf.poll();
            if let Some(c) = bf.take_completion() {
                assert_eq!(c.id, id);
                assert_eq!(c.result.map(|d| d.len()), Ok(512));
                return;
            }
        }
        panic!("the read after the storm was never answered");
    })();
    // Closing ends every grant (dropping a driver that still holds grants would
    // leak their pages, by design, and in this simulation the whole simulated
    // memory with them: a fuzz run then grows by ~115 KiB per input).
    let _ = bf.close(&mut w.xs);
    for _ in 0..100 {
        w.step();
        let _ = bf.on_backend_state(&mut w.xs);
        let _ = bf.poll();
        if w.grants.with_table(|t| t.stats().active) == 0 {
            break;
        }
    }
    let st = w.grants.with_table(|t| t.stats());
    assert_eq!(st.active, 0, "grants left after close: {st:?}");
}
