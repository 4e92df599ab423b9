//! The request engine: caller requests split into ring requests over granted bounce pages, responses validated and gathered.
//!
//! A caller's request (an [`Op`]) is split into ring requests ("chunks") of
//! at most the negotiated segments (11 direct, or the indirect limit), each
//! staged in pages of a pool granted to the back end for the whole
//! connection (so `feature-persistent` costs nothing extra). Every ring slot
//! has a private shadow of what was posted; a response is matched against it
//! (id in range and in flight, operation echoed, status known) on a local
//! copy read once. Data of a read is copied out of the pages only after its
//! response arrived. An op completes when all its chunks did; a FUA write
//! then gets a cache flush, and is answered only after it.
//!
//! Across a restore (new domain) chunks that were in flight go back to their
//! op as byte ranges still to do, and are split again under the new back
//! end's limits; flushes are issued again whole after the writes of their op.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use xen_abi::PAGE_SIZE;
use xen_abi::blkif::{
    BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD,
    BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE,
    BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, BlkifRequest,
    BlkifRequestDiscard, BlkifRequestIndirect, BlkifRequestSegment, SECTOR_SIZE,
};
use xen_frontend::{Held, MultiPageRing};
use xen_ring::{RingError, SharedRing};

use crate::error::{BlkError, Fault};
use crate::wire::{BlkReq, BlkRsp};

/// A caller's request id.
pub type ReqId = u64;

/// The source of a write-zeroes chunk.
static ZEROES: [u8; PAGE_SIZE] = [0; PAGE_SIZE];

/// What a caller asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read `len` bytes.
    Read {
        /// Bytes.
        len: u32,
    },
    /// Write `data`; with `fua` the answer waits until it is durable.
    Write {
        /// The bytes.
        data: Vec<u8>,
        /// Force unit access.
        fua: bool,
    },
    /// Write `len` bytes of zeroes (staged from no caller buffer, so not
    /// bound by the request size limit); with `fua` as for [`Op::Write`].
    WriteZeroes {
        /// Bytes.
        len: u32,
        /// Force unit access.
        fua: bool,
    },
    /// Make every write completed so far durable.
    Flush,
    /// Discard `len` bytes.
    Discard {
        /// Bytes.
        len: u32,
    },
}

/// A finished request: read data (empty for other operations), or why it
/// failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The id [`crate::BlkFront::submit`] returned.
    pub id: ReqId,
    /// The result.
    pub result: Result<Vec<u8>, BlkError>,
}

/// The kind of an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Flush,
    Discard,
}

/// Where a FUA write stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Data (or the op's one request) still to do.
    Data,
    /// Data done; the flush is to be posted.
    FlushDue,
    /// The flush is on the ring.
    FlushPosted,
}

/// One caller request in progress.
#[derive(Debug)]
struct OpState {
    id: ReqId,
    kind: Kind,
    /// Byte offset on the disk.
    offset: u64,
    /// Bytes.
    len: u32,
    /// Write: the source (empty for write-zeroes); read: the destination.
    data: Vec<u8>,
    /// A write of zeroes (no source).
    zeroes: bool,
    fua: bool,
    /// Ranges (start, len) to post again (after a restore), before `next`.
    redo: Vec<(u32, u32)>,
    /// Bytes from here on were never posted.
    next: u32,
    /// Ring requests of this op in flight.
    in_flight: u16,
    error: Option<BlkError>,
    stage: Stage,
}

impl OpState {
    /// Whether data (or the op's single request) remains to be posted.
    fn has_unposted(&self) -> bool {
        match self.kind {
            Kind::Read | Kind::Write => !self.redo.is_empty() || self.next < self.len,
            Kind::Flush | Kind::Discard => self.next == 0,
        }
    }

    fn done(&self) -> bool {
        self.in_flight == 0 && !self.has_unposted() && self.stage != Stage::FlushPosted
    }
}

/// What a ring slot carries.
#[derive(Debug)]
struct Shadow {
    op: ReqId,
    start: u32,
    len: u32,
    /// Pool pages, in segment order.
    pages: Vec<u16>,
    /// The indirect page, if the request is indirect.
    indirect: Option<u16>,
    /// The operation posted (`BLKIF_OP_*`).
    operation: u8,
    /// For indirect requests, the real operation.
    inner: u8,
    /// This is a FUA write's flush.
    fua_flush: bool,
}

/// The limits and features of the current connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Indirect segments per request (0: direct requests only).
    pub indirect_segments: u16,
    /// `feature-flush-cache`.
    pub flush: bool,
    /// `feature-barrier`.
    pub barrier: bool,
    /// `feature-discard`.
    pub discard: bool,
    /// Segments per request this connection uses.
    pub max_segments: u16,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlkStats {
    /// Caller requests completed OK.
    pub completed: u64,
    /// Caller requests failed.
    pub failed: u64,
    /// Ring requests posted.
    pub posted: u64,
    /// Of which indirect.
    pub indirect: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub written_bytes: u64,
    /// Flushes (and barriers) posted.
    pub flushes: u64,
    /// Ring requests posted again after a restore.
    pub reposted: u64,
    /// Error responses.
    pub errors: u64,
}

/// A snapshot of the engine for diagnostics ([`crate::BlkFront::queue_state`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueState {
    /// Caller ops queued or in flight.
    pub ops: usize,
    /// Of which some part was never posted (or must be posted again).
    pub unposted_ops: usize,
    /// Ring requests in flight (shadows in use).
    pub in_flight: usize,
    /// Free ring slots.
    pub free_slots: usize,
    /// Free pool pages.
    pub free_pages: usize,
    /// Free indirect pages.
    pub free_indirect: usize,
    /// Completions not yet taken.
    pub done: usize,
    /// Our `req_prod_pvt` and `rsp_cons`, and the shared `req_prod`,
    /// `req_event`, `rsp_prod`, `rsp_event` (None without a ring).
    pub ring: Option<[u32; 6]>,
}

impl core::fmt::Display for QueueState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "ops={} unposted={} in_flight={} free_slots={} free_pages={} free_indirect={} done={}",
            self.ops,
            self.unposted_ops,
            self.in_flight,
            self.free_slots,
            self.free_pages,
            self.free_indirect,
            self.done
        )?;
        match self.ring {
            Some([pvt, cons, prod, req_event, rsp_prod, rsp_event]) => write!(
                f,
                " ring req_prod_pvt={pvt} rsp_cons={cons} req_prod={prod} req_event={req_event} rsp_prod={rsp_prod} rsp_event={rsp_event}"
            ),
            None => f.write_str(" ring none"),
        }
    }
}

/// The engine.
pub(crate) struct Queue<Pg> {
    ops: VecDeque<OpState>,
    shadows: Vec<Option<Shadow>>,
    free_slots: Vec<u16>,
    pub(crate) pool: Vec<Held<Pg>>,
    free_pages: Vec<u16>,
    pub(crate) indirect_pages: Vec<Held<Pg>>,
    free_indirect: Vec<u16>,
    pub(crate) ring: Option<MultiPageRing<BlkReq, BlkRsp, Pg>>,
    pub(crate) limits: Limits,
    done: VecDeque<Completion>,
    next_id: ReqId,
    pub(crate) handle: u16,
    pub(crate) stats: BlkStats,
}

impl<Pg: SharedRing> Queue<Pg> {
    pub(crate) fn new(pool_pages: u16, indirect_pages: u16, handle: u16) -> Self {
        Self {
            ops: VecDeque::new(),
            shadows: Vec::new(),
            free_slots: Vec::new(),
            pool: (0..pool_pages).map(|_| Held::Empty).collect(),
            free_pages: Vec::new(),
            indirect_pages: (0..indirect_pages).map(|_| Held::Empty).collect(),
            free_indirect: Vec::new(),
            ring: None,
            limits: Limits::default(),
            done: VecDeque::new(),
            next_id: 1,
            handle,
            stats: BlkStats::default(),
        }
    }

    /// Ops queued or in flight.
    pub(crate) fn outstanding(&self) -> usize {
        self.ops.len()
    }

    /// A snapshot for diagnostics (reads the shared indices once each).
    pub(crate) fn state(&self) -> QueueState {
        use core::sync::atomic::Ordering::Acquire;
        use xen_ring::RingIndex as I;
        let ring = self.ring.as_ref().map(|r| {
            let area = xen_frontend::RingArea(&r.pages);
            [
                r.front.req_prod_pvt(),
                r.front.rsp_cons(),
                area.load(I::ReqProd, Acquire),
                area.load(I::ReqEvent, Acquire),
                area.load(I::RspProd, Acquire),
                area.load(I::RspEvent, Acquire),
            ]
        });
        QueueState {
            ops: self.ops.len(),
            unposted_ops: self
                .ops
                .iter()
                .filter(|o| o.has_unposted() || o.stage == Stage::FlushDue)
                .count(),
            in_flight: self.in_flight(),
            free_slots: self.free_slots.len(),
            free_pages: self.free_pages.len(),
            free_indirect: self.free_indirect.len(),
            done: self.done.len(),
            ring,
        }
    }

    /// Ring requests in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.shadows.iter().filter(|s| s.is_some()).count()
    }

    /// A new connection's ring and limits; every pool page is granted to it.
    pub(crate) fn attach(&mut self, ring: MultiPageRing<BlkReq, BlkRsp, Pg>, limits: Limits) {
        let entries = ring.front.size();
        self.shadows = (0..entries).map(|_| None).collect();
        self.free_slots = (0..u16::try_from(entries).unwrap_or(u16::MAX))
            .rev()
            .collect();
        self.free_pages = (0..u16::try_from(self.pool.len()).unwrap_or(0))
            .rev()
            .collect();
        self.free_indirect = (0..u16::try_from(self.indirect_pages.len()).unwrap_or(0))
            .rev()
            .collect();
        self.ring = Some(ring);
        self.limits = limits;
    }

    /// The connection's limits (re-read when the back end connects).
    pub(crate) fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Queues an op (checked by the caller).
    pub(crate) fn push(&mut self, kind_op: Op, offset: u64) -> ReqId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let zeroes = matches!(kind_op, Op::WriteZeroes { .. });
        let (kind, len, data, fua) = match kind_op {
            Op::Read { len } => (Kind::Read, len, vec![0u8; len as usize], false),
            Op::Write { data, fua } => {
                let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
                (Kind::Write, len, data, fua)
            }
            Op::WriteZeroes { len, fua } => (Kind::Write, len, Vec::new(), fua),
            Op::Flush => (Kind::Flush, 0, Vec::new(), false),
            Op::Discard { len } => (Kind::Discard, len, Vec::new(), false),
        };
        self.ops.push_back(OpState {
            id,
            kind,
            offset,
            len,
            data,
            zeroes,
            fua,
            redo: Vec::new(),
            next: 0,
            in_flight: 0,
            error: None,
            stage: Stage::Data,
        });
        id
    }

    /// Takes a finished request.
    pub(crate) fn take_completion(&mut self) -> Option<Completion> {
        self.done.pop_front()
    }

    /// Finished requests waiting to be taken.
    pub(crate) fn completions_waiting(&self) -> usize {
        self.done.len()
    }

    fn finish(&mut self, index: usize) {
        let Some(op) = self.ops.remove(index) else {
            return;
        };
        let result = match op.error {
            Some(e) => {
                self.stats.failed += 1;
                Err(e)
            }
            None => {
                self.stats.completed += 1;
                match op.kind {
                    Kind::Read => {
                        self.stats.read_bytes += u64::from(op.len);
                        Ok(op.data)
                    }
                    Kind::Write => {
                        self.stats.written_bytes += u64::from(op.len);
                        Ok(Vec::new())
                    }
                    Kind::Flush | Kind::Discard => Ok(Vec::new()),
                }
            }
        };
        self.done.push_back(Completion { id: op.id, result });
    }

    /// After a response (or a disconnect) touched op `index`: completes it,
    /// or moves a FUA write on to its flush.
    fn settle(&mut self, index: usize) {
        let flush_possible = self.limits.flush || self.limits.barrier;
        let Some(op) = self.ops.get_mut(index) else {
            return;
        };
        if !op.done() {
            return;
        }
        if op.error.is_none() && op.fua && op.stage == Stage::Data && flush_possible {
            op.stage = Stage::FlushDue;
            return;
        }
        if op.stage == Stage::FlushDue {
            return;
        }
        self.finish(index);
    }

    fn index_of(&self, id: ReqId) -> Option<usize> {
        self.ops.iter().position(|o| o.id == id)
    }

    /// Posts what fits (ring slots, pool pages), in op order, then pushes.
    /// Returns whether the back end must be notified.
    pub(crate) fn post(&mut self) -> Result<bool, Fault> {
        if self.ring.is_none() {
            return Ok(false);
        }
        let mut i = 0;
        while i < self.ops.len() {
            if self.free_slots.is_empty() {
                break;
            }
            let Some(op) = self.ops.get(i) else {
                break;
            };
            let (kind, stage, in_flight, unposted) =
                (op.kind, op.stage, op.in_flight, op.has_unposted());
            if stage == Stage::FlushDue && in_flight == 0 {
                self.post_flush(i, true);
                i += 1;
                continue;
            }
            if !unposted {
                i += 1;
                continue;
            }
            match kind {
                Kind::Flush => {
                    if !(self.limits.flush || self.limits.barrier) {
                        // Nothing to flush: writes are durable when answered.
                        if let Some(op) = self.ops.get_mut(i) {
                            op.next = 1;
                        }
                        self.finish(i);
                        continue;
                    }
                    self.post_flush(i, false);
                }
                Kind::Discard => self.post_discard(i),
                Kind::Read | Kind::Write => {
                    if !self.post_data(i) {
                        // Out of pages: later ops wait too (in order).
                        break;
                    }
                    // The same op may have more to post.
                    continue;
                }
            }
            i += 1;
        }
        self.push_requests()
    }

    fn push_requests(&mut self) -> Result<bool, Fault> {
        let Some(ring) = self.ring.as_mut() else {
            return Ok(false);
        };
        let area = xen_frontend::RingArea(&ring.pages);
        ring.front
            .push_requests_and_check_notify(&area)
            .map_err(ring_fault)
    }

    fn produce(&mut self, req: BlkReq) -> bool {
        let Some(ring) = self.ring.as_mut() else {
            return false;
        };
        let area = xen_frontend::RingArea(&ring.pages);
        if ring.front.produce(&area, &req).is_err() {
            return false;
        }
        self.stats.posted += 1;
        true
    }

    fn take_slot(&mut self) -> Option<u16> {
        self.free_slots.pop()
    }

    fn post_flush(&mut self, i: usize, fua_flush: bool) {
        let Some(slot) = self.take_slot() else {
            return;
        };
        let operation = if self.limits.flush {
            BLKIF_OP_FLUSH_DISKCACHE
        } else {
            BLKIF_OP_WRITE_BARRIER
        };
        let Some(op) = self.ops.get_mut(i) else {
            self.free_slots.push(slot);
            return;
        };
        let req = BlkReq::Rw(BlkifRequest {
            operation,
            nr_segments: 0,
            handle: self.handle,
            id: u64::from(slot),
            sector_number: op.offset / SECTOR_SIZE as u64,
            ..BlkifRequest::default()
        });
        let op_id = op.id;
        if fua_flush {
            op.stage = Stage::FlushPosted;
        } else {
            op.next = 1;
        }
        op.in_flight += 1;
        self.place(slot, Self::bare(op_id, 0, operation, fua_flush));
        self.stats.flushes += 1;
        self.produce(req);
    }

    fn post_discard(&mut self, i: usize) {
        let Some(slot) = self.take_slot() else {
            return;
        };
        let Some(op) = self.ops.get_mut(i) else {
            self.free_slots.push(slot);
            return;
        };
        let req = BlkReq::Discard(BlkifRequestDiscard {
            operation: BLKIF_OP_DISCARD,
            flag: 0,
            handle: self.handle,
            id: u64::from(slot),
            sector_number: op.offset / SECTOR_SIZE as u64,
            nr_sectors: u64::from(op.len) / SECTOR_SIZE as u64,
        });
        op.next = 1;
        op.in_flight += 1;
        let (op_id, len) = (op.id, op.len);
        self.place(slot, Self::bare(op_id, len, BLKIF_OP_DISCARD, false));
        self.produce(req);
    }

    /// Posts one chunk of op `i`; false if no page is free.
    fn post_data(&mut self, i: usize) -> bool {
        if self.free_pages.is_empty() {
            return false;
        }
        let Some(op) = self.ops.get_mut(i) else {
            return true;
        };
        // The range: a redo range first, else the unposted tail.
        let (start, avail) = match op.redo.last() {
            Some(&(s, l)) => (s, l),
            None => (op.next, op.len.saturating_sub(op.next)),
        };
        let direct_max = BLKIF_MAX_SEGMENTS_PER_REQUEST as u16;
        let indirect_ok =
            self.limits.indirect_segments > direct_max && !self.free_indirect.is_empty();
        let max_segs = if indirect_ok {
            self.limits.indirect_segments
        } else {
            direct_max
        };
        let segs_wanted = (avail as usize).div_ceil(PAGE_SIZE);
        let segs = segs_wanted
            .min(usize::from(max_segs))
            .min(self.free_pages.len());
        if segs == 0 {
            return false;
        }
        let len = u32::try_from((segs * PAGE_SIZE).min(avail as usize)).unwrap_or(0);
        // Consume the range.
        match op.redo.last_mut() {
            Some(r) => {
                if len >= r.1 {
                    op.redo.pop();
                } else {
                    r.0 += len;
                    r.1 -= len;
                }
            }
            None => op.next += len,
        }
        op.in_flight += 1;
        let (op_id, kind, sector) = (
            op.id,
            op.kind,
            (op.offset + u64::from(start)) / SECTOR_SIZE as u64,
        );
        let Some(slot) = self.take_slot() else {
            // Cannot happen (checked by the caller); undo.
            if let Some(op) = self.ops.get_mut(i) {
                op.in_flight -= 1;
                op.redo.push((start, len));
            }
            return false;
        };
        let mut pages = Vec::with_capacity(segs);
        let mut segments = Vec::with_capacity(segs);
        for k in 0..segs {
            let Some(p) = self.free_pages.pop() else {
                break;
            };
            let from = k * PAGE_SIZE;
            let bytes = (len as usize - from).min(PAGE_SIZE);
            let held = self.pool.get(usize::from(p));
            let gref = held.and_then(Held::grant).map_or(0, |g| g.gref());
            if kind == Kind::Write
                && let (Some(g), Some(op)) = (held.and_then(Held::grant), self.ops.get(i))
            {
                let at = start as usize + from;
                if op.zeroes {
                    g.buffer()
                        .write_bytes(0, ZEROES.get(..bytes).unwrap_or(&ZEROES));
                } else if let Some(src) = op.data.get(at..at + bytes) {
                    g.buffer().write_bytes(0, src);
                }
            }
            segments.push(BlkifRequestSegment {
                gref,
                first_sect: 0,
                last_sect: u8::try_from(bytes / SECTOR_SIZE)
                    .unwrap_or(1)
                    .saturating_sub(1),
            });
            pages.push(p);
        }
        let inner = if kind == Kind::Write {
            BLKIF_OP_WRITE
        } else {
            BLKIF_OP_READ
        };
        let (req, indirect, operation) = if segs <= BLKIF_MAX_SEGMENTS_PER_REQUEST {
            let mut seg = [BlkifRequestSegment::default(); BLKIF_MAX_SEGMENTS_PER_REQUEST];
            for (d, s) in seg.iter_mut().zip(&segments) {
                *d = *s;
            }
            let req = BlkReq::Rw(BlkifRequest {
                operation: inner,
                nr_segments: u8::try_from(segs).unwrap_or(0),
                handle: self.handle,
                id: u64::from(slot),
                sector_number: sector,
                seg,
            });
            (req, None, inner)
        } else {
            let ind = self.free_indirect.pop();
            let gref = ind
                .and_then(|k| self.indirect_pages.get(usize::from(k)))
                .and_then(Held::grant);
            if let Some(g) = gref {
                let mut bytes = Vec::with_capacity(segments.len() * BlkifRequestSegment::SIZE);
                for s in &segments {
                    bytes.extend_from_slice(&s.to_bytes());
                }
                g.buffer().write_bytes(0, &bytes);
            }
            let mut indirect_grefs = [0u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
            indirect_grefs[0] = gref.map_or(0, |g| g.gref());
            let req = BlkReq::Indirect(BlkifRequestIndirect {
                operation: BLKIF_OP_INDIRECT,
                indirect_op: inner,
                nr_segments: u16::try_from(segs).unwrap_or(0),
                id: u64::from(slot),
                sector_number: sector,
                handle: self.handle,
                indirect_grefs,
            });
            self.stats.indirect += 1;
            (req, ind, BLKIF_OP_INDIRECT)
        };
        let shadow = Shadow {
            op: op_id,
            start,
            len,
            pages,
            indirect,
            operation,
            inner,
            fua_flush: false,
        };
        self.place(slot, shadow);
        self.produce(req);
        true
    }

    /// Records what ring slot `slot` carries.
    fn place(&mut self, slot: u16, shadow: Shadow) {
        if let Some(s) = self.shadows.get_mut(usize::from(slot)) {
            *s = Some(shadow);
        }
    }

    /// The shadow of a request without data pages (flush, barrier, discard).
    fn bare(op: ReqId, len: u32, operation: u8, fua_flush: bool) -> Shadow {
        Shadow {
            op,
            start: 0,
            len,
            pages: Vec::new(),
            indirect: None,
            operation,
            inner: operation,
            fua_flush,
        }
    }

    /// Consumes responses (at most one ring's worth per call, so a back end
    /// cannot keep the caller here) and posts what became possible. Returns
    /// the number of responses handled and whether to notify.
    pub(crate) fn poll(&mut self) -> Result<(u32, bool), Fault> {
        let budget = self.shadows.len();
        let mut handled = 0u32;
        for _ in 0..budget {
            let Some(ring) = self.ring.as_mut() else {
                break;
            };
            let area = xen_frontend::RingArea(&ring.pages);
            let rsp = match ring.front.next_response(&area) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => return Err(ring_fault(e)),
            };
            self.complete_one(rsp.0)?;
            handled += 1;
        }
        let notify = self.post()?;
        Ok((handled, notify))
    }

    /// Consumes the responses already on the ring without posting anything
    /// (the connection is closing).
    pub(crate) fn drain(&mut self) -> Result<u32, Fault> {
        let budget = self.shadows.len();
        let mut handled = 0u32;
        for _ in 0..budget {
            let Some(ring) = self.ring.as_mut() else {
                break;
            };
            let area = xen_frontend::RingArea(&ring.pages);
            match ring.front.next_response(&area) {
                Ok(Some(r)) => self.complete_one(r.0)?,
                Ok(None) => break,
                Err(e) => return Err(ring_fault(e)),
            }
            handled += 1;
        }
        Ok(handled)
    }

    /// Handles one response (a local copy).
    fn complete_one(&mut self, rsp: xen_abi::blkif::BlkifResponse) -> Result<(), Fault> {
        let slot = usize::try_from(rsp.id)
            .ok()
            .filter(|&s| s < self.shadows.len())
            .ok_or(Fault::UnknownId(rsp.id))?;
        let shadow_ref = self
            .shadows
            .get(slot)
            .and_then(Option::as_ref)
            .ok_or(Fault::NotInFlight(rsp.id))?;
        let echo_ok = rsp.operation == shadow_ref.operation
            || (shadow_ref.operation == BLKIF_OP_INDIRECT && rsp.operation == shadow_ref.inner);
        if !echo_ok {
            return Err(Fault::WrongOperation {
                id: rsp.id,
                posted: shadow_ref.operation,
                answered: rsp.operation,
            });
        }
        let status = match rsp.status {
            BLKIF_RSP_OKAY => None,
            BLKIF_RSP_ERROR => Some(BlkError::Io),
            BLKIF_RSP_EOPNOTSUPP => Some(BlkError::NotSupported),
            other => {
                return Err(Fault::BadStatus {
                    id: rsp.id,
                    status: other,
                });
            }
        };
        let Some(shadow) = self.shadows.get_mut(slot).and_then(Option::take) else {
            return Err(Fault::NotInFlight(rsp.id));
        };
        if status.is_some() {
            self.stats.errors += 1;
        }
        let index = self.index_of(shadow.op);
        if let Some(i) = index
            && let Some(op) = self.ops.get_mut(i)
        {
            if status.is_none() && shadow.inner == BLKIF_OP_READ && !shadow.fua_flush {
                // The data, read once from the pages now that the back end is done.
                for (k, &p) in shadow.pages.iter().enumerate() {
                    let from = shadow.start as usize + k * PAGE_SIZE;
                    let bytes = (shadow.len as usize)
                        .saturating_sub(k * PAGE_SIZE)
                        .min(PAGE_SIZE);
                    if let (Some(g), Some(dst)) = (
                        self.pool.get(usize::from(p)).and_then(Held::grant),
                        op.data.get_mut(from..from + bytes),
                    ) {
                        g.buffer().read_bytes(0, dst);
                    }
                }
            }
            op.in_flight = op.in_flight.saturating_sub(1);
            if shadow.fua_flush {
                op.stage = Stage::Data;
                op.fua = false;
            }
            if let Some(e) = status {
                op.error.get_or_insert(e);
            }
        }
        self.release_shadow(slot, shadow);
        if let Some(i) = index {
            self.settle(i);
        }
        Ok(())
    }

    fn release_shadow(&mut self, slot: usize, shadow: Shadow) {
        self.free_pages.extend(shadow.pages);
        if let Some(k) = shadow.indirect {
            self.free_indirect.push(k);
        }
        self.free_slots.push(u16::try_from(slot).unwrap_or(0));
    }

    /// The connection ended before these requests were answered: every op
    /// fails (queued ones too: nothing may wait for a back end that is gone).
    pub(crate) fn fail_all(&mut self, err: BlkError) {
        for s in &mut self.shadows {
            *s = None;
        }
        while let Some(op) = self.ops.front_mut() {
            op.error.get_or_insert(err);
            self.finish(0);
        }
        self.free_slots.clear();
        self.free_pages.clear();
        self.free_indirect.clear();
    }

    /// Resumed in a new domain: in-flight requests go back to their ops, to
    /// be split again under the next connection's limits.
    pub(crate) fn requeue_in_flight(&mut self) {
        let shadows: Vec<Shadow> = self.shadows.iter_mut().filter_map(Option::take).collect();
        for s in shadows {
            self.stats.reposted += 1;
            let Some(i) = self.index_of(s.op) else {
                continue;
            };
            let Some(op) = self.ops.get_mut(i) else {
                continue;
            };
            op.in_flight = op.in_flight.saturating_sub(1);
            if s.fua_flush {
                op.stage = Stage::FlushDue;
            } else {
                match op.kind {
                    Kind::Read | Kind::Write => op.redo.push((s.start, s.len)),
                    Kind::Flush | Kind::Discard => op.next = 0,
                }
            }
        }
        // Flushes after the data they order: plain reads and writes first.
        let (data, rest): (Vec<OpState>, Vec<OpState>) = self
            .ops
            .drain(..)
            .partition(|o| matches!(o.kind, Kind::Read | Kind::Write) && o.stage == Stage::Data);
        self.ops.extend(data);
        self.ops.extend(rest);
        self.free_slots.clear();
        self.free_pages.clear();
        self.free_indirect.clear();
        self.shadows.clear();
    }

    /// Before sleeping: asks for an event on the next response; true if one
    /// is already there.
    pub(crate) fn rearm(&mut self) -> Result<bool, Fault> {
        let Some(ring) = self.ring.as_mut() else {
            return Ok(false);
        };
        let area = xen_frontend::RingArea(&ring.pages);
        match ring.front.final_check_for_responses(&area) {
            Ok(p) => Ok(p),
            Err(RingError::Full) => Ok(true),
            Err(e) => Err(ring_fault(e)),
        }
    }
}

fn ring_fault(e: RingError) -> Fault {
    match e {
        RingError::Backend(f) => Fault::Ring(f),
        // Posting is bounded by free slots, so this means the ring and the
        // slot table disagree: the connection is restarted all the same.
        RingError::Full => Fault::Overrun,
    }
}
