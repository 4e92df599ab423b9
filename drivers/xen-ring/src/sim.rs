//! Test doubles: shared rings in host memory and a simulated back end (feature `test-utils`).
//!
//! [`VecRing`] is a single-threaded page image (indices stored little endian at
//! their `io/ring.h` offsets, so tests can poke the header like a hostile back end
//! would). [`AtomicRing`] is `Sync` and uses real atomics, for tests that run the
//! front and back ends on two threads. [`SimBackend`] is the back half of the ring
//! as `io/ring.h` defines it (`RING_COPY_REQUEST`,
//! `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`, `RING_FINAL_CHECK_FOR_REQUESTS`), plus
//! knobs to misbehave.

use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::marker::PhantomData;
use core::num::Wrapping;
use core::sync::atomic::{AtomicU8, AtomicU32, Ordering, fence};

use crate::{RingEntry, RingIdx, RingIndex, RingLayout, SharedRing};

/// A shared ring area in a `Vec<u8>` (single-threaded; orderings are irrelevant
/// and ignored). Out-of-range accesses are ignored / read as zero.
#[derive(Debug)]
pub struct VecRing {
    bytes: RefCell<Vec<u8>>,
}

impl VecRing {
    /// A zeroed area of `len` bytes.
    pub fn new(len: usize) -> Self {
        Self {
            bytes: RefCell::new(vec![0; len]),
        }
    }

    /// A copy of the whole area.
    pub fn snapshot(&self) -> Vec<u8> {
        self.bytes.borrow().clone()
    }

    /// Overwrites bytes of the area (e.g. to corrupt an entry after the fact).
    pub fn poke(&self, offset: usize, bytes: &[u8]) {
        self.write_bytes(offset, bytes);
    }
}

impl SharedRing for VecRing {
    fn area_len(&self) -> usize {
        self.bytes.borrow().len()
    }

    fn load(&self, index: RingIndex, _order: Ordering) -> RingIdx {
        let mut b = [0u8; 4];
        self.read_bytes(index.offset(), &mut b);
        u32::from_le_bytes(b)
    }

    fn store(&self, index: RingIndex, value: RingIdx, _order: Ordering) {
        self.write_bytes(index.offset(), &value.to_le_bytes());
    }

    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        let bytes = self.bytes.borrow();
        let src = offset
            .checked_add(out.len())
            .and_then(|end| bytes.get(offset..end));
        match src {
            Some(src) => out.copy_from_slice(src),
            None => out.fill(0),
        }
    }

    fn write_bytes(&self, offset: usize, data: &[u8]) {
        let mut bytes = self.bytes.borrow_mut();
        if let Some(dst) = offset
            .checked_add(data.len())
            .and_then(|end| bytes.get_mut(offset..end))
        {
            dst.copy_from_slice(data);
        }
    }
}

/// A `Sync` shared ring area: the four indices are `AtomicU32`s accessed with the
/// caller's orderings, entry bytes are `AtomicU8`s accessed `Relaxed` (as a
/// volatile copy would be). Out-of-range accesses are ignored / read as zero.
#[derive(Debug)]
pub struct AtomicRing {
    indices: [AtomicU32; 4],
    bytes: Vec<AtomicU8>,
}

impl AtomicRing {
    /// A zeroed area of `len` bytes.
    pub fn new(len: usize) -> Self {
        Self {
            indices: [const { AtomicU32::new(0) }; 4],
            bytes: (0..len).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    fn slot(&self, index: RingIndex) -> &AtomicU32 {
        match index {
            RingIndex::ReqProd => &self.indices[0],
            RingIndex::ReqEvent => &self.indices[1],
            RingIndex::RspProd => &self.indices[2],
            RingIndex::RspEvent => &self.indices[3],
        }
    }
}

impl SharedRing for AtomicRing {
    fn area_len(&self) -> usize {
        self.bytes.len()
    }

    fn load(&self, index: RingIndex, order: Ordering) -> RingIdx {
        self.slot(index).load(order)
    }

    fn store(&self, index: RingIndex, value: RingIdx, order: Ordering) {
        self.slot(index).store(value, order);
    }

    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        for (i, o) in out.iter_mut().enumerate() {
            // Relaxed: the caller orders entry accesses with the index atomics.
            *o = offset
                .checked_add(i)
                .and_then(|j| self.bytes.get(j))
                .map_or(0, |b| b.load(Ordering::Relaxed));
        }
    }

    fn write_bytes(&self, offset: usize, data: &[u8]) {
        for (i, d) in data.iter().enumerate() {
            if let Some(b) = offset.checked_add(i).and_then(|j| self.bytes.get(j)) {
                // Relaxed: the caller orders entry accesses with the index atomics.
                b.store(*d, Ordering::Relaxed);
            }
        }
    }
}

/// The back half of a ring (`xxx_back_ring` in `io/ring.h`), for tests.
#[derive(Debug)]
pub struct SimBackend<Req, Rsp> {
    rsp_prod_pvt: Wrapping<RingIdx>,
    req_cons: Wrapping<RingIdx>,
    rsp_prod_pushed: Wrapping<RingIdx>,
    layout: RingLayout,
    _entries: PhantomData<fn(Req) -> Rsp>,
}

impl<Req: RingEntry, Rsp: RingEntry> SimBackend<Req, Rsp> {
    /// A back end at index 0 (`BACK_RING_INIT`).
    pub fn new(layout: RingLayout) -> Self {
        Self::attach(layout, 0)
    }

    /// A back end whose indices are at `start` (`BACK_RING_ATTACH`).
    pub fn attach(layout: RingLayout, start: RingIdx) -> Self {
        Self {
            rsp_prod_pvt: Wrapping(start),
            req_cons: Wrapping(start),
            rsp_prod_pushed: Wrapping(start),
            layout,
            _entries: PhantomData,
        }
    }

    /// Sets all four shared indices as if both ends had run to `start`
    /// (producers at `start`, events at `start + 1`).
    pub fn set_shared_indices(mem: &impl SharedRing, start: RingIdx) {
        mem.store(RingIndex::ReqProd, start, Ordering::Relaxed);
        mem.store(RingIndex::RspProd, start, Ordering::Relaxed);
        mem.store(
            RingIndex::ReqEvent,
            start.wrapping_add(1),
            Ordering::Relaxed,
        );
        mem.store(
            RingIndex::RspEvent,
            start.wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    /// `req_cons`.
    pub fn req_cons(&self) -> RingIdx {
        self.req_cons.0
    }

    /// `rsp_prod_pvt`.
    pub fn rsp_prod_pvt(&self) -> RingIdx {
        self.rsp_prod_pvt.0
    }

    /// `RING_HAS_UNCONSUMED_REQUESTS`: requests published and not yet taken,
    /// capped by the free response slots.
    pub fn unconsumed_requests(&self, mem: &impl SharedRing) -> u32 {
        // Acquire: request entries written before the front end's release store
        // of req_prod are visible to the reads that follow.
        let req_prod = Wrapping(mem.load(RingIndex::ReqProd, Ordering::Acquire));
        let req = (req_prod - self.req_cons).0;
        let rsp = self
            .layout
            .entries()
            .wrapping_sub((self.req_cons - self.rsp_prod_pvt).0);
        req.min(rsp)
    }

    /// Takes the next request, if any (`RING_COPY_REQUEST`).
    pub fn take_request(&mut self, mem: &impl SharedRing) -> Option<Req> {
        if self.unconsumed_requests(mem) == 0 {
            return None;
        }
        let mut wire = Req::ZERO_WIRE;
        mem.read_bytes(self.layout.entry_offset(self.req_cons.0), wire.as_mut());
        self.req_cons += 1;
        Some(Req::from_wire(&wire))
    }

    /// Takes every available request.
    pub fn take_requests(&mut self, mem: &impl SharedRing) -> Vec<Req> {
        let mut v = Vec::new();
        while let Some(r) = self.take_request(mem) {
            v.push(r);
        }
        v
    }

    /// Writes a response into the next response slot (not yet published).
    pub fn produce_response(&mut self, mem: &impl SharedRing, rsp: &Rsp) {
        let wire = rsp.to_wire();
        mem.write_bytes(self.layout.entry_offset(self.rsp_prod_pvt.0), wire.as_ref());
        self.rsp_prod_pvt += 1;
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: publishes responses; true if the
    /// front end asked to be notified.
    pub fn push_responses_and_check_notify(&mut self, mem: &impl SharedRing) -> bool {
        let old = self.rsp_prod_pushed;
        let new = self.rsp_prod_pvt;
        // Release: response entries are visible before the new rsp_prod.
        mem.store(RingIndex::RspProd, new.0, Ordering::Release);
        self.rsp_prod_pushed = new;
        // Full barrier: rsp_prod store before the rsp_event load.
        fence(Ordering::SeqCst);
        let event = Wrapping(mem.load(RingIndex::RspEvent, Ordering::Relaxed));
        (new - event).0 < (new - old).0
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: true if requests are pending; otherwise
    /// sets `req_event = req_cons + 1` and checks again.
    pub fn final_check_for_requests(&mut self, mem: &impl SharedRing) -> bool {
        if self.unconsumed_requests(mem) > 0 {
            return true;
        }
        mem.store(
            RingIndex::ReqEvent,
            (self.req_cons + Wrapping(1)).0,
            Ordering::Relaxed,
        );
        // Full barrier: req_event store before the req_prod re-read.
        fence(Ordering::SeqCst);
        self.unconsumed_requests(mem) > 0
    }

    /// Misbehaviour: stores an arbitrary `rsp_prod`.
    pub fn force_rsp_prod(&mut self, mem: &impl SharedRing, value: RingIdx) {
        mem.store(RingIndex::RspProd, value, Ordering::Release);
    }

    /// Event suppression: stores `req_event` (e.g. far ahead to say "I am busy,
    /// do not notify").
    pub fn set_req_event(&mut self, mem: &impl SharedRing, value: RingIdx) {
        mem.store(RingIndex::ReqEvent, value, Ordering::Relaxed);
    }
}
