//! Host tests: a simulated back end drives the front ring through normal
//! operation, index wrap-around, event suppression and misbehaviour.

extern crate std;

use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32 as StdAtomicU32};
use std::time::{Duration, Instant};

use super::*;
use crate::sim::{AtomicRing, SimBackend, VecRing};

/// A request with a blkif-like shape: 16-byte wire image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Req {
    id: u16,
    op: u8,
    sector: u64,
}

impl RingEntry for Req {
    type Wire = [u8; 16];
    const ZERO_WIRE: [u8; 16] = [0; 16];
    fn to_wire(&self) -> [u8; 16] {
        let mut w = [0u8; 16];
        let [a, b] = self.id.to_le_bytes();
        w[0] = a;
        w[1] = b;
        w[2] = self.op;
        let s = self.sector.to_le_bytes();
        for (i, byte) in s.into_iter().enumerate() {
            if let Some(slot) = w.get_mut(8 + i) {
                *slot = byte;
            }
        }
        w
    }
    fn from_wire(w: &[u8; 16]) -> Self {
        let [a, b, op, _, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = *w;
        Self {
            id: u16::from_le_bytes([a, b]),
            op,
            sector: u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
        }
    }
}

/// A 4-byte response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rsp {
    id: u16,
    status: i16,
}

impl RingEntry for Rsp {
    type Wire = [u8; 4];
    const ZERO_WIRE: [u8; 4] = [0; 4];
    fn to_wire(&self) -> [u8; 4] {
        let [a, b] = self.id.to_le_bytes();
        let [c, d] = self.status.to_le_bytes();
        [a, b, c, d]
    }
    fn from_wire(w: &[u8; 4]) -> Self {
        let [a, b, c, d] = *w;
        Self {
            id: u16::from_le_bytes([a, b]),
            status: i16::from_le_bytes([c, d]),
        }
    }
}

type Front = FrontRing<Req, Rsp>;
type Back = SimBackend<Req, Rsp>;

fn req(id: u16) -> Req {
    Req {
        id,
        op: (id % 3) as u8,
        sector: u64::from(id) * 8 + 0x1_0000_0000,
    }
}

fn rsp_for(r: &Req) -> Rsp {
    Rsp {
        id: r.id,
        status: -(i16::from(r.op)),
    }
}

/// A page-sized ring (4096 bytes, stride 16 -> 252 fit -> 128 entries).
fn page_ring() -> (VecRing, RingLayout) {
    let layout = RingLayout::for_entries::<Req, Rsp>(4096, 8).expect("layout");
    (VecRing::new(4096), layout)
}

/// A small ring with `entries` entries, the shared indices at `start`.
fn small_ring(entries: u32, start: RingIdx) -> (VecRing, Front, Back) {
    let layout = RingLayout::with_entries(4096, 16, entries).expect("layout");
    let mem = VecRing::new(4096);
    Back::set_shared_indices(&mem, start);
    let front = Front::attach(layout, &mem, start).expect("attach");
    let back = Back::attach(layout, start);
    (mem, front, back)
}

/// Back end answers every pending request; returns whether it must notify.
fn serve_all(mem: &VecRing, back: &mut Back) -> (usize, bool) {
    let reqs = back.take_requests(mem);
    for r in &reqs {
        back.produce_response(mem, &rsp_for(r));
    }
    let notify = back.push_responses_and_check_notify(mem);
    (reqs.len(), notify)
}

fn header(mem: &VecRing) -> [u32; 4] {
    [
        RingIndex::ReqProd,
        RingIndex::ReqEvent,
        RingIndex::RspProd,
        RingIndex::RspEvent,
    ]
    .map(|i| mem.load(i, Ordering::Relaxed))
}

#[test]
fn init_is_shared_ring_init() {
    let (mem, layout) = page_ring();
    mem.poke(0, &[0xAA; 4096]);
    let front = Front::init(layout, &mem).expect("init");
    assert_eq!(front.size(), 128);
    assert_eq!(layout.stride(), 16);
    let snap = mem.snapshot();
    assert_eq!(header(&mem), [0, 1, 0, 1]);
    assert!(snap[16..64].iter().all(|b| *b == 0), "pvt and pad zeroed");
    assert!(snap[64..].iter().all(|b| *b == 0xAA), "entries untouched");
    assert_eq!(front.free_requests(), 128);
    assert_eq!(front.req_prod_pvt(), 0);
    assert_eq!(front.rsp_cons(), 0);
}

#[test]
fn layout_errors() {
    assert_eq!(RingLayout::new(4096, 0), Err(LayoutError::BadStride));
    assert_eq!(RingLayout::new(64, 8), Err(LayoutError::NoEntries));
    assert_eq!(
        RingLayout::for_entries::<Req, Rsp>(4096, 3),
        Err(LayoutError::BadStride)
    );
    assert_eq!(
        RingLayout::with_entries(4096, 16, 6),
        Err(LayoutError::EntriesNotPowerOfTwo(6))
    );
    assert_eq!(
        RingLayout::with_entries(4096, 16, 0),
        Err(LayoutError::EntriesNotPowerOfTwo(0))
    );
    assert_eq!(
        RingLayout::with_entries(4096, 16, 256),
        Err(LayoutError::TooManyEntries {
            entries: 256,
            fit: 128
        })
    );
    // A stride too small for the request wire image.
    let small = RingLayout::new(4096, 8).expect("layout");
    let mem = VecRing::new(4096);
    assert_eq!(
        Front::init(small, &mem).err(),
        Some(LayoutError::EntryTooLarge {
            size: 16,
            stride: 8
        })
    );
    // Shared memory smaller than the layout.
    let layout = RingLayout::new(4096, 16).expect("layout");
    let tiny = VecRing::new(1024);
    assert_eq!(
        Front::init(layout, &tiny).err(),
        Some(LayoutError::AreaTooSmall {
            needed: 64 + 128 * 16,
            actual: 1024
        })
    );
    // Multi-page: two pages of 112-byte entries hold 64.
    assert_eq!(RingLayout::new(8192, 112).map(|l| l.entries()), Ok(64));
}

#[test]
fn round_trip_copies_requests_and_responses() {
    let (mem, layout) = page_ring();
    let mut front = Front::init(layout, &mem).expect("init");
    let mut back = Back::new(layout);
    for id in 0..5 {
        assert_eq!(front.produce(&mem, &req(id)), Ok(u32::from(id)));
    }
    assert_eq!(front.unpushed(), 5);
    assert_eq!(front.in_flight(), 5);
    assert_eq!(back.take_request(&mem), None, "not visible before the push");
    assert_eq!(front.push_requests_and_check_notify(&mem), Ok(true));
    assert_eq!(front.unpushed(), 0);
    let got = back.take_requests(&mem);
    assert_eq!(got, (0..5).map(req).collect::<Vec<_>>());
    for r in &got {
        back.produce_response(&mem, &rsp_for(r));
    }
    assert_eq!(
        front.unconsumed_responses(&mem),
        Ok(0),
        "not visible before the push"
    );
    back.push_responses_and_check_notify(&mem);
    assert_eq!(front.unconsumed_responses(&mem), Ok(5));
    let mut seen = Vec::new();
    assert_eq!(front.consume_responses(&mem, |r| seen.push(r)), Ok(5));
    assert_eq!(seen, got.iter().map(rsp_for).collect::<Vec<_>>());
    assert_eq!(front.in_flight(), 0);
    assert_eq!(front.next_response(&mem), Ok(None));
    assert_eq!(front.fault(), None);
}

#[test]
fn full_ring_refuses_and_recovers() {
    let (mem, mut front, mut back) = small_ring(8, 0);
    for id in 0..8 {
        assert_eq!(front.free_requests(), 8 - u32::from(id));
        assert!(front.produce(&mem, &req(id)).is_ok());
    }
    assert!(front.is_full());
    assert_eq!(front.produce(&mem, &req(99)), Err(RingError::Full));
    front.push_requests(&mem).expect("push");
    // Back end answering does not free slots until the front consumes.
    assert_eq!(serve_all(&mem, &mut back).0, 8);
    assert_eq!(front.produce(&mem, &req(99)), Err(RingError::Full));
    assert_eq!(
        front.next_response(&mem).map(|r| r.map(|r| r.id)),
        Ok(Some(0))
    );
    assert_eq!(front.free_requests(), 1);
    assert!(front.produce(&mem, &req(8)).is_ok());
    assert_eq!(front.produce(&mem, &req(99)), Err(RingError::Full));
    // "Full" is not a back-end fault.
    assert_eq!(front.fault(), None);
}

#[test]
fn indices_wrap_around_u32() {
    for start in [u32::MAX - 2, u32::MAX, 0x7FFF_FFFE, 0] {
        let (mem, mut front, mut back) = small_ring(8, start);
        let mut next_id: u16 = 0;
        let mut expect_id: u16 = 0;
        let mut total = 0u32;
        // Uneven batch sizes so that wraps happen mid-batch.
        for batch in [1u16, 3, 8, 5, 7, 2, 8, 8, 6, 4, 1, 8]
            .iter()
            .cycle()
            .take(60)
        {
            for _ in 0..*batch {
                match front.produce(&mem, &req(next_id)) {
                    Ok(idx) => {
                        assert_eq!(idx, start.wrapping_add(u32::from(next_id)));
                        next_id += 1;
                    }
                    Err(RingError::Full) => break,
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            front.push_requests_and_check_notify(&mem).expect("push");
            serve_all(&mem, &mut back);
            front
                .consume_responses(&mem, |r| {
                    assert_eq!(r.id, expect_id);
                    expect_id += 1;
                    total += 1;
                })
                .expect("consume");
        }
        assert_eq!(u32::from(next_id), total);
        assert!(total > 200);
        assert_eq!(front.rsp_cons(), start.wrapping_add(total));
        assert_eq!(front.req_prod_pvt(), start.wrapping_add(total));
        assert_eq!(header(&mem)[0], start.wrapping_add(total));
        assert_eq!(front.fault(), None);
    }
}

#[test]
fn request_notify_follows_req_event() {
    let (mem, layout) = page_ring();
    let mut front = Front::init(layout, &mem).expect("init");
    let mut back = Back::new(layout);
    // req_event = 1 after init: the first request notifies.
    front.produce(&mem, &req(0)).expect("produce");
    assert_eq!(front.push_requests_and_check_notify(&mem), Ok(true));
    // The back end has not re-armed: more requests do not notify.
    front.produce(&mem, &req(1)).expect("produce");
    assert_eq!(front.push_requests_and_check_notify(&mem), Ok(false));
    // Pushing nothing never notifies.
    assert_eq!(front.push_requests_and_check_notify(&mem), Ok(false));
    // The back end drains and re-arms (req_event = req_cons + 1 = 3).
    assert_eq!(back.take_requests(&mem).len(), 2);
    assert!(!back.final_check_for_requests(&mem));
    assert_eq!(header(&mem)[1], 3);
    // A batch of three crossing req_event notifies once.
    for id in 2..5 {
        front.produce(&mem, &req(id)).expect("produce");
    }
    assert_eq!(front.push_requests_and_check_notify(&mem), Ok(true));
    // A busy back end suppresses events by moving req_event far ahead.
    back.set_req_event(&mem, 1000);
    for id in 5..20 {
        front.produce(&mem, &req(id)).expect("produce");
        assert_eq!(front.push_requests_and_check_notify(&mem), Ok(false));
    }
    // Batched notification: "tell me when 25 is produced".
    back.set_req_event(&mem, 25);
    for id in 20..30 {
        front.produce(&mem, &req(id)).expect("produce");
        let notify = front.push_requests_and_check_notify(&mem).expect("push");
        assert_eq!(notify, id == 24, "id {id}");
    }
}

#[test]
fn request_notify_wraps() {
    // old = MAX-1, three requests: new = 1. req_event in (old, new] notifies.
    for (event, want) in [
        (u32::MAX, true),
        (0, true),
        (1, true),
        (2, false),
        (u32::MAX - 1, false),
        (u32::MAX - 100, false),
    ] {
        let (mem, mut front, mut back) = small_ring(8, u32::MAX - 1);
        back.set_req_event(&mem, event);
        for id in 0..3 {
            front.produce(&mem, &req(id)).expect("produce");
        }
        assert_eq!(
            front.push_requests_and_check_notify(&mem),
            Ok(want),
            "event {event:#x}"
        );
        assert_eq!(header(&mem)[0], 1);
    }
}

#[test]
fn response_event_suppression_and_final_check() {
    let (mem, layout) = page_ring();
    let mut front = Front::init(layout, &mem).expect("init");
    let mut back = Back::new(layout);
    // Nothing pending: the final check arms rsp_event = rsp_cons + 1 and says sleep.
    assert_eq!(front.final_check_for_responses(&mem), Ok(false));
    assert_eq!(header(&mem)[3], 1);
    for id in 0..4 {
        front.produce(&mem, &req(id)).expect("produce");
    }
    front.push_requests(&mem).expect("push");
    // The back end answers one at a time; only the first crosses rsp_event.
    let reqs = back.take_requests(&mem);
    let mut notes = Vec::new();
    for r in &reqs {
        back.produce_response(&mem, &rsp_for(r));
        notes.push(back.push_responses_and_check_notify(&mem));
    }
    assert_eq!(notes, [true, false, false, false]);
    // Work pending: the final check says so without re-arming.
    assert_eq!(front.final_check_for_responses(&mem), Ok(true));
    assert_eq!(header(&mem)[3], 1);
    assert_eq!(front.consume_responses(&mem, |_| ()), Ok(4));
    assert_eq!(front.final_check_for_responses(&mem), Ok(false));
    assert_eq!(header(&mem)[3], 5);
    front.produce(&mem, &req(4)).expect("produce");
    front.push_requests(&mem).expect("push");
    assert_eq!(serve_all(&mem, &mut back), (1, true));
}

/// Runs a hook after selected shared-memory accesses, to interleave a back end
/// at exact points inside a front-ring operation.
struct Hooked<'a, F: FnMut(RingIndex, bool)> {
    inner: &'a VecRing,
    hook: RefCell<F>,
}

impl<F: FnMut(RingIndex, bool)> SharedRing for Hooked<'_, F> {
    fn area_len(&self) -> usize {
        self.inner.area_len()
    }
    fn load(&self, index: RingIndex, order: Ordering) -> RingIdx {
        let v = self.inner.load(index, order);
        (self.hook.borrow_mut())(index, false);
        v
    }
    fn store(&self, index: RingIndex, value: RingIdx, order: Ordering) {
        self.inner.store(index, value, order);
        (self.hook.borrow_mut())(index, true);
    }
    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        self.inner.read_bytes(offset, out)
    }
    fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        self.inner.write_bytes(offset, bytes)
    }
}

#[test]
fn final_check_closes_the_lost_wakeup_race() {
    // The back end pushes a response after the front's first look at rsp_prod but
    // before it re-arms rsp_event: the back end sees the stale rsp_event and does
    // not notify, so the final check itself must report the response.
    let (mem, layout) = page_ring();
    let mut front = Front::init(layout, &mem).expect("init");
    let mut back = Back::new(layout);
    for id in 0..3 {
        front.produce(&mem, &req(id)).expect("produce");
    }
    front.push_requests(&mem).expect("push");
    let reqs = back.take_requests(&mem);
    back.produce_response(&mem, &rsp_for(&reqs[0]));
    assert!(back.push_responses_and_check_notify(&mem));
    assert_eq!(front.consume_responses(&mem, |_| ()), Ok(1));
    // rsp_event is still 1 (stale); rsp_cons = 1.
    let back = RefCell::new(back);
    let notified = Cell::new(None);
    let loads = Cell::new(0);
    let hooked = Hooked {
        inner: &mem,
        hook: RefCell::new(|index: RingIndex, is_store: bool| {
            if index == RingIndex::RspProd && !is_store {
                loads.set(loads.get() + 1);
                if loads.get() == 1 {
                    let mut b = back.borrow_mut();
                    b.produce_response(&mem, &rsp_for(&reqs[1]));
                    notified.set(Some(b.push_responses_and_check_notify(&mem)));
                }
            }
        }),
    };
    assert_eq!(
        front.final_check_for_responses(&hooked),
        Ok(true),
        "the re-check finds it"
    );
    assert_eq!(
        notified.get(),
        Some(false),
        "back end saw the stale rsp_event: no event"
    );
    assert_eq!(loads.get(), 2, "first look empty, re-check after re-arming");
    assert_eq!(header(&mem)[3], 2);

    // Same, but the back end pushes right after the re-arm: it notifies, and the
    // re-check also sees the response.
    assert_eq!(front.consume_responses(&mem, |_| ()), Ok(1));
    let notified2 = Cell::new(None);
    let hooked2 = Hooked {
        inner: &mem,
        hook: RefCell::new(|index: RingIndex, is_store: bool| {
            if index == RingIndex::RspEvent && is_store {
                let mut b = back.borrow_mut();
                b.produce_response(&mem, &rsp_for(&reqs[2]));
                notified2.set(Some(b.push_responses_and_check_notify(&mem)));
            }
        }),
    };
    assert_eq!(front.final_check_for_responses(&hooked2), Ok(true));
    assert_eq!(notified2.get(), Some(true));
    assert_eq!(front.consume_responses(&mem, |_| ()), Ok(1));
    assert_eq!(front.in_flight(), 0);
}

/// Counts entry reads per offset.
struct Counting<'a> {
    inner: &'a VecRing,
    reads: RefCell<Vec<usize>>,
}

impl SharedRing for Counting<'_> {
    fn area_len(&self) -> usize {
        self.inner.area_len()
    }
    fn load(&self, index: RingIndex, order: Ordering) -> RingIdx {
        self.inner.load(index, order)
    }
    fn store(&self, index: RingIndex, value: RingIdx, order: Ordering) {
        self.inner.store(index, value, order)
    }
    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        self.reads.borrow_mut().push(offset);
        self.inner.read_bytes(offset, out)
    }
    fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        self.inner.write_bytes(offset, bytes)
    }
}

#[test]
fn each_response_is_copied_exactly_once() {
    let (mem, mut front, mut back) = small_ring(8, u32::MAX - 3);
    let counting = Counting {
        inner: &mem,
        reads: RefCell::new(Vec::new()),
    };
    for id in 0..6 {
        front.produce(&counting, &req(id)).expect("produce");
    }
    front.push_requests(&counting).expect("push");
    serve_all(&mem, &mut back);
    let mut got = Vec::new();
    while let Some(r) = front.next_response(&counting).expect("next") {
        got.push(r);
        // The back end scribbles over the slot just consumed: our value is a copy.
        mem.poke(
            front
                .layout()
                .entry_offset(front.rsp_cons().wrapping_sub(1)),
            &[0xEE; 16],
        );
        // Checking again does not re-read consumed entries.
        let _ = front.unconsumed_responses(&counting);
    }
    assert_eq!(
        got.iter().map(|r| r.id).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    let reads = counting.reads.borrow();
    assert_eq!(reads.len(), 6);
    let expect: Vec<usize> = (0..6u32)
        .map(|i| front.layout().entry_offset((u32::MAX - 3).wrapping_add(i)))
        .collect();
    assert_eq!(*reads, expect);
}

#[test]
fn backend_jumping_rsp_prod_past_the_ring_is_an_error() {
    for start in [0, u32::MAX - 1, 0x8000_0000] {
        let (mem, mut front, mut back) = small_ring(8, start);
        for id in 0..2 {
            front.produce(&mem, &req(id)).expect("produce");
        }
        front.push_requests(&mem).expect("push");
        let bad = start.wrapping_add(9);
        back.force_rsp_prod(&mem, bad);
        let fault = BackendFault::ResponseOverflow {
            rsp_prod: bad,
            rsp_cons: start,
        };
        assert_eq!(front.next_response(&mem), Err(RingError::Backend(fault)));
        // Sticky: every operation now refuses, even if the back end "fixes" it.
        back.force_rsp_prod(&mem, start);
        assert_eq!(
            front.unconsumed_responses(&mem),
            Err(RingError::Backend(fault))
        );
        assert_eq!(front.produce(&mem, &req(5)), Err(RingError::Backend(fault)));
        assert_eq!(
            front.push_requests_and_check_notify(&mem),
            Err(RingError::Backend(fault))
        );
        assert_eq!(
            front.final_check_for_responses(&mem),
            Err(RingError::Backend(fault))
        );
        assert_eq!(front.fault(), Some(fault));
        assert_eq!(front.rsp_cons(), start, "nothing consumed");
    }
}

#[test]
fn more_responses_than_requests_is_an_error() {
    let (mem, mut front, mut back) = small_ring(8, u32::MAX);
    for id in 0..3 {
        front.produce(&mem, &req(id)).expect("produce");
    }
    front.push_requests(&mem).expect("push");
    // Two more produced but not pushed: the back end cannot have seen them.
    for id in 3..5 {
        front.produce(&mem, &req(id)).expect("produce");
    }
    let bad = u32::MAX.wrapping_add(4);
    back.force_rsp_prod(&mem, bad);
    assert_eq!(
        front.final_check_for_responses(&mem),
        Err(RingError::Backend(BackendFault::UnrequestedResponses {
            rsp_prod: bad,
            rsp_cons: u32::MAX,
            req_prod: u32::MAX.wrapping_add(3),
        }))
    );
}

#[test]
fn rewinding_rsp_prod_is_an_error() {
    let start = u32::MAX - 1;
    let (mem, mut front, mut back) = small_ring(8, start);
    for id in 0..4 {
        front.produce(&mem, &req(id)).expect("produce");
    }
    front.push_requests(&mem).expect("push");
    serve_all(&mem, &mut back);
    assert_eq!(
        front.next_response(&mem).map(|r| r.map(|r| r.id)),
        Ok(Some(0))
    );
    // rsp_prod seen = start + 4; rewind to start + 2 (still ahead of rsp_cons).
    back.force_rsp_prod(&mem, start.wrapping_add(2));
    assert_eq!(
        front.next_response(&mem),
        Ok(Some(Rsp { id: 1, status: -1 })),
        "cached rsp_prod: the rewind is not read until the next refresh"
    );
    assert_eq!(
        front.unconsumed_responses(&mem),
        Err(RingError::Backend(BackendFault::ProducerRewound {
            seen: start.wrapping_add(4),
            now: start.wrapping_add(2)
        }))
    );

    // Rewind behind rsp_cons.
    let (mem, mut front, mut back) = small_ring(8, start);
    for id in 0..2 {
        front.produce(&mem, &req(id)).expect("produce");
    }
    front.push_requests(&mem).expect("push");
    serve_all(&mem, &mut back);
    assert_eq!(front.consume_responses(&mem, |_| ()), Ok(2));
    back.force_rsp_prod(&mem, start);
    assert_eq!(
        front.final_check_for_responses(&mem),
        Err(RingError::Backend(BackendFault::ProducerRewound {
            seen: start.wrapping_add(2),
            now: start
        }))
    );
}

#[test]
fn backend_scribbling_front_fields_does_not_confuse_the_front() {
    let (mem, mut front, mut back) = small_ring(8, 100);
    for id in 0..3 {
        front.produce(&mem, &req(id)).expect("produce");
    }
    assert_eq!(front.push_requests_and_check_notify(&mem), Ok(true));
    // The back end overwrites req_prod and rsp_event, fields only we write.
    mem.store(RingIndex::ReqProd, 7, Ordering::Relaxed);
    mem.store(RingIndex::RspEvent, 0xDEAD_BEEF, Ordering::Relaxed);
    back.set_req_event(&mem, 104);
    front.produce(&mem, &req(3)).expect("produce");
    // old is our own copy (103), not the scribbled 7: req_event 104 is in (103, 104].
    assert_eq!(front.push_requests_and_check_notify(&mem), Ok(true));
    assert_eq!(header(&mem)[0], 104);
    assert_eq!(serve_all(&mem, &mut back).0, 4);
    assert_eq!(front.consume_responses(&mem, |_| ()), Ok(4));
    assert_eq!(front.fault(), None);
}

#[test]
fn arbitrary_rsp_prod_values_never_panic() {
    // Sweep rsp_prod around every interesting boundary; the front either accepts
    // at most the outstanding count or reports a fault.
    let starts = [0u32, 5, u32::MAX - 3, 0x7FFF_FFFF];
    for start in starts {
        for outstanding in [0u32, 1, 7, 8] {
            let mut probes: Vec<u32> = (0..40)
                .map(|d| start.wrapping_add(d).wrapping_sub(20))
                .collect();
            probes.extend([0, u32::MAX, 0x8000_0000, start ^ 0x8000_0000]);
            for probe in probes {
                let (mem, mut front, mut back) = small_ring(8, start);
                for id in 0..outstanding {
                    front.produce(&mem, &req(id as u16)).expect("produce");
                }
                front.push_requests(&mem).expect("push");
                back.force_rsp_prod(&mem, probe);
                let ahead = probe.wrapping_sub(start);
                match front.unconsumed_responses(&mem) {
                    Ok(n) => {
                        assert_eq!(n, ahead);
                        assert!(n <= outstanding);
                    }
                    Err(RingError::Backend(_)) => assert!(ahead > outstanding),
                    Err(RingError::Full) => panic!("Full from a read"),
                }
            }
        }
    }
}

#[test]
fn threaded_front_and_back_with_events_lose_no_wakeup() {
    // Front and back on two threads over real atomics; each side sleeps (spins on
    // its event flag) only after its final check says there is no work, and sends
    // an event only when the notify rule says so. A lost wakeup would hang, which
    // the deadline turns into a failure.
    const N: u32 = 20_000;
    let start = u32::MAX - 1000;
    let layout = RingLayout::with_entries(4096, 16, 4).expect("layout");
    let mem = Arc::new(AtomicRing::new(4096));
    SimBackend::<Req, Rsp>::set_shared_indices(&*mem, start);
    let to_back = Arc::new(AtomicBool::new(false));
    let to_front = Arc::new(AtomicBool::new(false));
    let events = Arc::new(StdAtomicU32::new(0));
    let deadline = Instant::now() + Duration::from_secs(60);

    let wait = move |flag: &AtomicBool| {
        while !flag.swap(false, Ordering::AcqRel) {
            assert!(Instant::now() < deadline, "lost wakeup: nobody notified");
            std::thread::yield_now();
        }
    };

    let back_thread = {
        let (mem, to_back, to_front, events) = (
            mem.clone(),
            to_back.clone(),
            to_front.clone(),
            events.clone(),
        );
        std::thread::spawn(move || {
            let mut back = SimBackend::<Req, Rsp>::attach(layout, start);
            let mut served = 0u32;
            while served < N {
                while let Some(r) = back.take_request(&*mem) {
                    back.produce_response(&*mem, &rsp_for(&r));
                    served += 1;
                    if back.push_responses_and_check_notify(&*mem) {
                        events.fetch_add(1, Ordering::Relaxed);
                        to_front.store(true, Ordering::Release);
                    }
                }
                if served < N && !back.final_check_for_requests(&*mem) {
                    wait(&to_back);
                }
            }
        })
    };

    let mut front = Front::attach(layout, &*mem, start).expect("attach");
    let (mut sent, mut received) = (0u32, 0u32);
    while received < N {
        while sent < N && !front.is_full() {
            front.produce(&*mem, &req(sent as u16)).expect("produce");
            sent += 1;
        }
        if front.push_requests_and_check_notify(&*mem).expect("push") {
            events.fetch_add(1, Ordering::Relaxed);
            to_back.store(true, Ordering::Release);
        }
        front
            .consume_responses(&*mem, |r| {
                assert_eq!(r.id, received as u16);
                received += 1;
            })
            .expect("consume");
        // Sleep only when no more requests can be sent and no response is pending.
        let can_send = sent < N && !front.is_full();
        if received < N
            && !can_send
            && !front.final_check_for_responses(&*mem).expect("final check")
        {
            wait(&to_front);
        }
    }
    back_thread.join().expect("back end thread");
    assert_eq!(front.rsp_cons(), start.wrapping_add(N));
    assert_eq!(front.fault(), None);
    // Event suppression worked: far fewer events than messages in both directions.
    assert!(events.load(Ordering::Relaxed) < 2 * N);
}

#[test]
fn errors_name_the_values() {
    use alloc::string::ToString;
    let fault = BackendFault::UnrequestedResponses {
        rsp_prod: 300,
        rsp_cons: 250,
        req_prod: 256,
    };
    assert_eq!(
        fault.to_string(),
        "rsp_prod 300 is 44 past req_prod 256 (rsp_cons 250)"
    );
    assert_eq!(
        RingError::Backend(BackendFault::ProducerRewound { seen: 9, now: 3 }).to_string(),
        "back end broke the ring protocol: rsp_prod went back from 9 to 3"
    );
    assert_eq!(
        LayoutError::TooManyEntries {
            entries: 64,
            fit: 32
        }
        .to_string(),
        "64 ring entries requested, only 32 fit"
    );
    assert_eq!(RingError::Full.to_string(), "ring full");
}
