//! `SimBlkback`, a simulated Linux blkback that misbehaves on purpose, and `SimBlkWorld`, which wires it to the generic fakes (feature `test-utils`).
//!
//! The generic fakes (guest memory, pages, grant table, event channels) are
//! `xen_frontend::sim`'s, re-exported here. [`SimBlkback`] plays Linux 6.1
//! blkback (`drivers/block/xen-blkback/{xenbus,blkback}.c`) over the
//! interface of `xen/include/public/io/blkif.h`, seeing only what a back end
//! in dom0 sees: xenstore, the guest's grant table, its memory through grant
//! mappings, and event channels. It never uses the driver's types.
//!
//! - **Toolstack and probe** ([`SimBlkback::new`]): the front-end directory
//!   `/local/domain/<front>/device/vbd/<devid>` (`backend`, `backend-id`,
//!   `virtual-device`, `device-type`, `state` = 1), the back-end directory
//!   (`frontend`, `frontend-id`, `mode`, ...), the probe features
//!   (`feature-max-indirect-segments`, `max-ring-page-order`,
//!   `multi-queue-max-queues`, each optional in [`SimBlkConfig`]), InitWait.
//! - **Connect** ([`SimBlkback::step`], like `frontend_changed`, reacting to
//!   *changes* of the front end's `state` as a watch does): Initialised or
//!   Connected reads `ring-page-order`, `ring-ref`/`ring-ref0`..`ring-ref<n>`,
//!   `event-channel`, `protocol`, `feature-persistent`,
//!   `multi-queue-num-queues`; validates them (a bad one: `error` node and
//!   Closing, like `xenbus_dev_fatal`; see [`SimBlkError`]); maps the ring
//!   pages, binds the event channel, writes the connect nodes (`sectors`,
//!   `info`, `sector-size`, `physical-sector-size`, `feature-flush-cache`,
//!   `feature-barrier`, `feature-discard` + `discard-*`,
//!   `feature-persistent`) and goes Connected. Front end Closing or Closed:
//!   the back end disconnects (unmaps, unless told to keep mappings) and
//!   answers Closed. Front end Initialising after Closed: InitWait again.
//! - **Data path** over an in-memory disk of `sectors * 512` bytes and a ring
//!   of `2^order` pages ([`SimRingPages`]): READ/WRITE with up to 11 direct
//!   segments, INDIRECT (the response echoes `indirect_op`, as Linux does),
//!   FLUSH_DISKCACHE and WRITE_BARRIER (with or without data), DISCARD. Bad
//!   requests answer `BLKIF_RSP_ERROR`, unsupported ones
//!   `BLKIF_RSP_EOPNOTSUPP`; see [`SimBlkback::service`] for the rules.
//! - **Audit** ([`SimBlkback::audit_failures`]): every grant a request names
//!   must map for this back end, be published in the current grant-table
//!   epoch and not be a ring page; a persistent grant must not change under
//!   the back end; no two outstanding requests may name the same grant; a
//!   request must not use a feature the back end did not advertise.
//! - **Persistent grants**: with `feature-persistent` on both ends every data
//!   and indirect page is mapped read-write on first use and stays mapped
//!   until disconnect (up to [`SimBlkConfig::max_persistent_grants`]), so a
//!   driver that ends one early gets `InUse`; otherwise each request maps and
//!   unmaps its pages (read-only for writes, as Linux does).
//! - **Knobs** to misbehave: hold requests, answer out of order, corrupt the
//!   next response ([`RspCorruption`]: wrong or unknown id, replayed id,
//!   wrong operation, bad status), raw responses, `rsp_prod` jumps, failing
//!   the next N requests, closing with I/O in flight (dropping it, or keeping
//!   it busy like Linux, [`InFlightOnDisconnect`]), reloading, keeping
//!   mappings after close, and save/restore into a new domain with a new
//!   configuration ([`SimBlkback::new_domain`]).
//!
//! [`SimBlkWorld`] pairs it with a `SimGuest` (one `SimXenstored`) for tests
//! and probes the driver. This is test support: it may panic to fail a test.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use grant_table::sim::SimError;
use grant_table::{Access, DomId, GrantRef};
use xen_abi::PAGE_SIZE;
use xen_abi::blkif::{
    BLKIF_DISCARD_SECURE, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST,
    BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE,
    BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
    BLKIF_SEGS_PER_INDIRECT_FRAME, BlkifRequest, BlkifRequestDiscard, BlkifRequestIndirect,
    BlkifRequestSegment, BlkifResponse, SECTOR_SIZE, VDISK_READONLY, VDISK_REMOVABLE,
    XEN_IO_PROTO_ABI_X86_64,
};
use xen_abi::event_channel::EvtchnPort;
use xen_frontend::sim::SimXenbusDevice;
use xen_ring::sim::SimBackend;
use xen_ring::{LayoutError, RingIdx, RingIndex, RingLayout, SharedRing};
use xenbus::XenbusState;

use crate::{BlkFront, Config, ProbeError};

pub use xen_frontend::sim::{
    POISON, SimEvtchn, SimGrantMem, SimGrants, SimGuest, SimMapping, SimMemory, SimPage, SimPages,
    SimTable, pseudo_random_corpus,
};

/// The wire image of a request slot (`blkif_request`, 112 bytes on x86_64).
pub type BlkReqWire = [u8; BlkifRequest::SIZE];
/// The wire image of a response (`blkif_response`, 16 bytes on x86_64).
pub type BlkRspWire = [u8; BlkifResponse::SIZE];

/// `XENBUS_MAX_RING_GRANT_ORDER` (Linux): the largest ring order blkback offers.
pub const MAX_RING_PAGE_ORDER: u32 = 4;

/// Linux blkback's `MAX_INDIRECT_SEGMENTS` cap times pages per request: the
/// largest `feature-max-indirect-segments` the simulator accepts in its config.
pub const MAX_INDIRECT_SEGMENTS: u32 =
    (BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * BLKIF_SEGS_PER_INDIRECT_FRAME) as u32;

/// The blkif ring layout over `2^order` pages (`__CONST_RING_SIZE(blkif,
/// PAGE_SIZE << order)`: 32 entries for order 0, 128 for order 2).
pub fn blk_ring_layout(order: u32) -> Result<RingLayout, LayoutError> {
    let area = PAGE_SIZE.checked_shl(order).ok_or(LayoutError::BadStride)?;
    // The C union of request and response is 8-aligned on x86_64.
    RingLayout::for_entries::<BlkReqWire, BlkRspWire>(area, 8)
}

// --- a ring over several pages ----------------------------------------------------

/// A shared ring area spanning several mapped pages (a multi-page blkif ring):
/// the header lives in the first page, entries cross page boundaries, and
/// byte copies are split at them. Usable by the back end (over its mappings)
/// and by a test's hand-written front end (over the guest's own pages).
#[derive(Clone, Debug)]
pub struct SimRingPages {
    pages: Vec<SimMapping>,
}

impl SimRingPages {
    /// The pages `gfns` of `mem`, in ring order.
    pub fn new(mem: &SimMemory, gfns: &[u64]) -> Self {
        Self {
            pages: gfns.iter().map(|g| SimMapping::new(mem, *g)).collect(),
        }
    }

    /// The frames, in ring order.
    pub fn gfns(&self) -> Vec<u64> {
        self.pages.iter().map(SimMapping::gfn).collect()
    }

    /// Splits `[offset, offset + len)` at page boundaries: (page, offset in
    /// page, range in the caller's buffer). Stops at the end of the area.
    fn pieces(&self, offset: usize, len: usize) -> Vec<(usize, usize, core::ops::Range<usize>)> {
        let mut out = Vec::new();
        let mut done = 0;
        while done < len {
            let at = offset.saturating_add(done);
            let page = at / PAGE_SIZE;
            if page >= self.pages.len() {
                break;
            }
            let in_page = at % PAGE_SIZE;
            let n = (PAGE_SIZE - in_page).min(len - done);
            out.push((page, in_page, done..done + n));
            done += n;
        }
        out
    }
}

impl SharedRing for SimRingPages {
    fn area_len(&self) -> usize {
        self.pages.len() * PAGE_SIZE
    }
    fn load(&self, index: RingIndex, order: Ordering) -> RingIdx {
        self.pages.first().map_or(0, |p| p.load(index, order))
    }
    fn store(&self, index: RingIndex, value: RingIdx, order: Ordering) {
        if let Some(p) = self.pages.first() {
            p.store(index, value, order);
        }
    }
    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        out.fill(0);
        for (page, at, range) in self.pieces(offset, out.len()) {
            if let (Some(p), Some(dst)) = (self.pages.get(page), out.get_mut(range)) {
                p.read_bytes(at, dst);
            }
        }
    }
    fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        for (page, at, range) in self.pieces(offset, bytes.len()) {
            if let (Some(p), Some(src)) = (self.pages.get(page), bytes.get(range)) {
                p.write_bytes(at, src);
            }
        }
    }
}

// --- configuration, errors, stats ---------------------------------------------------

/// What the back end advertises and how the toolstack set the vbd up.
/// Defaults: what Linux 6.1 blkback offers for a 1 MiB writable file disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimBlkConfig {
    /// The guest's domid.
    pub front_domid: u16,
    /// The back end's domid.
    pub backend_domid: DomId,
    /// The vbd id (`virtual-device`; 51712 is xvda).
    pub devid: u32,
    /// `sectors`: disk size in 512-byte sectors (the disk is `sectors * 512` bytes).
    pub sectors: u64,
    /// `info` bit `VDISK_READONLY`; writes, flushes and discards then fail.
    pub read_only: bool,
    /// `info` bit `VDISK_REMOVABLE`.
    pub removable: bool,
    /// `sector-size` (logical; requests still count 512-byte sectors).
    pub sector_size: u32,
    /// `physical-sector-size`.
    pub physical_sector_size: u32,
    /// `feature-max-indirect-segments` at probe (0: node absent, no indirect
    /// requests; at most [`MAX_INDIRECT_SEGMENTS`]).
    pub max_indirect_segments: u32,
    /// `max-ring-page-order` at probe (`None`: absent, single-page ring only).
    pub max_ring_page_order: Option<u32>,
    /// `multi-queue-max-queues` at probe (`None`: absent). Only one queue is
    /// simulated: a front end asking for more fails to connect.
    pub max_queues: Option<u32>,
    /// `feature-flush-cache` (written as 0/1 at connect).
    pub flush: bool,
    /// `feature-barrier` (written as 0/1 at connect).
    pub barrier: bool,
    /// `feature-discard` (with `discard-granularity`, `discard-alignment`,
    /// `discard-secure`; all absent when off).
    pub discard: bool,
    /// `discard-granularity` in bytes.
    pub discard_granularity: u32,
    /// `discard-alignment` in bytes.
    pub discard_alignment: u32,
    /// `discard-secure`: secure discards (`BLKIF_DISCARD_SECURE`) allowed.
    pub discard_secure: bool,
    /// Whether a plain discard zeroes its range (a secure one always does);
    /// otherwise the data stays (a discard promises nothing about it).
    pub discard_zeroes: bool,
    /// `feature-persistent` (written as 0/1 at connect; used when the front
    /// end writes `feature-persistent` = 1 too).
    pub persistent: bool,
    /// Linux's `max_persistent_grants` (1056): grants past it are mapped per request.
    pub max_persistent_grants: usize,
}

impl Default for SimBlkConfig {
    fn default() -> Self {
        Self {
            front_domid: 7,
            backend_domid: 0,
            devid: 51712,
            sectors: 2048,
            read_only: false,
            removable: false,
            sector_size: 512,
            physical_sector_size: 4096,
            max_indirect_segments: 256,
            max_ring_page_order: Some(MAX_RING_PAGE_ORDER),
            max_queues: Some(1),
            flush: true,
            barrier: true,
            discard: true,
            discard_granularity: 4096,
            discard_alignment: 0,
            discard_secure: false,
            discard_zeroes: true,
            persistent: true,
            max_persistent_grants: 1056,
        }
    }
}

impl SimBlkConfig {
    /// A back end with none of the optional features: one-page ring only, no
    /// indirect segments, no persistent grants, flush, barrier or discard.
    pub fn minimal() -> Self {
        Self {
            max_indirect_segments: 0,
            max_ring_page_order: None,
            max_queues: None,
            flush: false,
            barrier: false,
            discard: false,
            persistent: false,
            ..Self::default()
        }
    }
}

/// Why the simulated back end could not connect (blkback's `xenbus_dev_fatal`:
/// the back end writes its `error` node and goes Closing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimBlkError {
    /// A front-end node is missing or malformed.
    BadNode(&'static str),
    /// `ring-page-order` above the advertised `max-ring-page-order`.
    RingOrder(u32),
    /// `protocol` is neither absent nor `x86_64-abi`.
    Protocol,
    /// `multi-queue-num-queues` other than 1 (only one queue is simulated).
    Queues(u32),
    /// A ring reference could not be mapped.
    Map(SimError),
    /// The event channel was not allocated for this back end.
    BadPort(EvtchnPort),
    /// The front end reconnected while the old ring still had I/O in flight
    /// ("pending I/O", see [`InFlightOnDisconnect::KeepBusy`]).
    PendingIo,
}

impl SimBlkError {
    fn message(&self) -> String {
        match self {
            SimBlkError::BadNode(n) => format!("22 reading {n}"),
            SimBlkError::RingOrder(o) => format!("22 requested ring page order {o} exceed max"),
            SimBlkError::Protocol => String::from("95 unknown fe protocol"),
            SimBlkError::Queues(n) => format!("22 Frontend wants {n} queues"),
            SimBlkError::Map(e) => format!("22 mapping ring-ref: {e}"),
            SimBlkError::BadPort(p) => format!("22 binding event-channel {p}"),
            SimBlkError::PendingIo => String::from("16 pending I/O"),
        }
    }
}

/// Why a request failed the back end's audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditError {
    /// The grant could not be mapped by this back end with the access needed.
    Map(SimError),
    /// The grant entry was last published in an earlier domain epoch (a
    /// reference from before a restore).
    OldEpoch,
    /// The grant names a ring page.
    RingPage,
    /// Another outstanding (not yet answered) request names the same grant.
    Duplicate,
    /// A persistent grant the back end still maps was re-published (ended
    /// and granted again, or now names another frame) before disconnect.
    PersistentChanged,
    /// The request uses an operation or size the back end did not advertise
    /// (the `BLKIF_OP_*` is given).
    Unadvertised(u8),
}

/// One audit failure: the request's id, the grant (if the failure is about
/// one) and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditFailure {
    /// The request's id.
    pub id: u64,
    /// The grant reference concerned, if any.
    pub gref: Option<GrantRef>,
    /// What was wrong.
    pub error: AuditError,
}

/// A one-shot corruption of the next response the back end produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RspCorruption {
    /// This id instead of the request's.
    Id(u64),
    /// An id the front end never used (the request's with the top bit flipped).
    UnknownId,
    /// The next response is correct; the one after it repeats its id and
    /// operation (a duplicate for an id already answered) instead of
    /// answering its own request, which is never answered. Ring indices stay
    /// plausible.
    Replay,
    /// This operation instead of the request's.
    Operation(u8),
    /// This status (e.g. 7: not a `BLKIF_RSP_*` value).
    Status(i16),
}

/// What a disconnect does with requests taken and not yet answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InFlightOnDisconnect {
    /// They are lost: never answered, their mappings (and the ring's) undone
    /// at once (counted in [`SimBlkStats::lost`]).
    #[default]
    Drop,
    /// Linux: the old ring and the requests' pages stay mapped until the I/O
    /// completes (when held requests are released, they are answered on the
    /// old ring, then everything is unmapped). A front end that reconnects
    /// meanwhile gets a fatal "pending I/O" ([`SimBlkError::PendingIo`]).
    KeepBusy,
}

/// Counters of the simulated back end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimBlkStats {
    /// Successful connects.
    pub connects: u64,
    /// Last connect failure.
    pub connect_error: Option<SimBlkError>,
    /// Requests taken from the ring.
    pub requests: u64,
    /// READ requests (direct or indirect).
    pub reads: u64,
    /// WRITE requests (direct or indirect).
    pub writes: u64,
    /// WRITE_BARRIER requests.
    pub barriers: u64,
    /// FLUSH_DISKCACHE requests.
    pub flush_requests: u64,
    /// DISCARD requests.
    pub discards: u64,
    /// INDIRECT requests.
    pub indirect: u64,
    /// Requests with an operation blkback does not know.
    pub unknown_ops: u64,
    /// Data segments named by requests.
    pub segments: u64,
    /// Bytes copied from the disk into guest pages.
    pub bytes_read: u64,
    /// Bytes copied from guest pages onto the disk.
    pub bytes_written: u64,
    /// Flushes done (FLUSH_DISKCACHE and WRITE_BARRIER answered OK).
    pub flushes: u64,
    /// Sectors discarded.
    pub discarded_sectors: u64,
    /// Responses produced (raw ones included).
    pub responses: u64,
    /// Responses with `BLKIF_RSP_ERROR` (before any corruption).
    pub errors: u64,
    /// Responses with `BLKIF_RSP_EOPNOTSUPP` (before any corruption).
    pub not_supported: u64,
    /// Requests never answered (dropped at a disconnect or a restore).
    pub lost: u64,
    /// Grants mapped persistently.
    pub persistent_maps: u64,
    /// Audit failures recorded.
    pub audit_failures: u64,
}

// --- the back end ---------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Seg {
    frame: u64,
    first: u8,
    last: u8,
}

impl Seg {
    fn sectors(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }
}

#[derive(Debug)]
enum Work {
    Read {
        sector: u64,
        segs: Vec<Seg>,
    },
    Write {
        sector: u64,
        segs: Vec<Seg>,
        flush: bool,
    },
    Flush,
    Discard {
        sector: u64,
        count: u64,
        zero: bool,
    },
}

/// A request taken from the ring, not yet answered.
#[derive(Debug)]
struct Pending {
    id: u64,
    /// The operation the response echoes.
    operation: u8,
    work: Result<Work, i16>,
    /// Mappings made for this request only, undone when it is answered.
    maps: Vec<(GrantRef, Access)>,
    /// Every grant the request names.
    grefs: Vec<GrantRef>,
}

#[derive(Debug)]
struct BackConn {
    ring: SimRingPages,
    ring_refs: Vec<GrantRef>,
    order: u32,
    port: EvtchnPort,
    back: SimBackend<BlkReqWire, BlkRspWire>,
    /// Persistent grants negotiated (both ends).
    persistent: bool,
    /// Persistent mappings: reference → frame mapped.
    pgrants: BTreeMap<GrantRef, u64>,
}

/// An old connection kept because I/O was in flight at disconnect.
#[derive(Debug)]
struct Busy {
    conn: BackConn,
    pending: VecDeque<Pending>,
}

/// The simulated blkback. See the module docs.
#[derive(Debug)]
pub struct SimBlkback {
    dev: SimXenbusDevice,
    grants: SimGrants,
    mem: SimMemory,
    evt: SimEvtchn,
    cfg: SimBlkConfig,
    /// The front-end state last reacted to (a watch fires on changes).
    seen_front: XenbusState,
    conn: Option<BackConn>,
    pending: VecDeque<Pending>,
    busy: Option<Busy>,
    /// Mappings kept after a close (knob), undone by `release_mappings`.
    kept: Vec<(GrantRef, Access)>,
    disk: Vec<u8>,
    hold: bool,
    /// Takes requests from the ring only after a notification (knob).
    events_only: bool,
    /// The guest's notifications counted at the last look at the ring.
    notifies_seen: u64,
    reverse: bool,
    keep_mappings: bool,
    in_flight_policy: InFlightOnDisconnect,
    fail_next: u32,
    corrupt: Option<RspCorruption>,
    replay: Option<(u64, u8)>,
    audit: Vec<AuditFailure>,
    stats: SimBlkStats,
}

fn parse_num(v: &[u8]) -> Option<u64> {
    let s = core::str::from_utf8(v).ok()?;
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn flag(on: bool) -> &'static [u8] {
    if on { b"1" } else { b"0" }
}

fn disk_len(sectors: u64) -> usize {
    usize::try_from(sectors)
        .ok()
        .and_then(|s| s.checked_mul(SECTOR_SIZE))
        .unwrap_or_else(|| panic!("SimBlkConfig::sectors {sectors} too large for memory"))
}

impl SimBlkback {
    /// Creates the vbd of `guest` as the toolstack does (front-end and
    /// back-end directories) over a zeroed disk of `cfg.sectors` sectors, and
    /// probes the back end: probe features published, state InitWait.
    pub fn new(guest: &SimGuest, cfg: SimBlkConfig) -> Self {
        let dev = SimXenbusDevice::new(
            guest.xs_ring.clone(),
            "vbd",
            cfg.front_domid,
            cfg.backend_domid,
            cfg.devid,
        );
        let disk = vec![0; disk_len(cfg.sectors)];
        let mut b = Self {
            dev,
            grants: guest.grants.clone(),
            mem: guest.mem.clone(),
            evt: guest.evt.clone(),
            cfg,
            seen_front: XenbusState::Initialising,
            conn: None,
            pending: VecDeque::new(),
            busy: None,
            kept: Vec::new(),
            disk,
            events_only: false,
            notifies_seen: 0,
            hold: false,
            reverse: false,
            keep_mappings: false,
            in_flight_policy: InFlightOnDisconnect::Drop,
            fail_next: 0,
            corrupt: None,
            replay: None,
            audit: Vec::new(),
            stats: SimBlkStats::default(),
        };
        b.toolstack_create();
        b
    }

    fn toolstack_create(&mut self) {
        let cfg = &self.cfg;
        let devid = format!("{}", cfg.devid);
        let name = format!("xvd{}", char::from(b'a' + ((cfg.devid & 0xff) >> 4) as u8));
        self.dev.create(
            &[
                ("virtual-device", devid.as_bytes()),
                ("device-type", b"disk"),
            ],
            &[
                ("online", b"1"),
                ("removable", flag(cfg.removable)),
                ("device-type", b"disk"),
                ("mode", if cfg.read_only { b"r" } else { b"w" }),
                ("dev", name.as_bytes()),
            ],
        );
        self.seen_front = XenbusState::Initialising;
        self.probe();
    }

    /// blkback's `xen_blkbk_probe`: the probe features, then InitWait.
    fn probe(&mut self) {
        let cfg = &self.cfg;
        let optional = [
            (
                "feature-max-indirect-segments",
                (cfg.max_indirect_segments > 0).then_some(cfg.max_indirect_segments),
            ),
            ("multi-queue-max-queues", cfg.max_queues),
            ("max-ring-page-order", cfg.max_ring_page_order),
        ];
        for (leaf, v) in optional {
            match v {
                Some(v) => self.dev.write_back(leaf, format!("{v}").as_bytes()),
                None => self.dev.rm_back(leaf),
            }
        }
        self.dev.set_state(XenbusState::InitWait);
    }

    // --- inspection ---------------------------------------------------------------

    /// The back end's state.
    pub fn state(&self) -> XenbusState {
        self.dev.state()
    }

    /// The configuration in force (the probe and connect nodes follow it).
    pub fn config(&self) -> &SimBlkConfig {
        &self.cfg
    }

    /// The back end's directory.
    pub fn backend_dir(&self) -> &str {
        self.dev.back_dir()
    }

    /// The front end's directory.
    pub fn frontend_dir(&self) -> &str {
        self.dev.front_dir()
    }

    /// Whether the ring is mapped (Connected, or Closing after [`close`](Self::close)).
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The ring order of the current connection.
    pub fn ring_order(&self) -> Option<u32> {
        self.conn.as_ref().map(|c| c.order)
    }

    /// The ring references of the current connection.
    pub fn ring_refs(&self) -> Vec<GrantRef> {
        self.conn
            .as_ref()
            .map(|c| c.ring_refs.clone())
            .unwrap_or_default()
    }

    /// Whether persistent grants are in use on the current connection.
    pub fn persistent_in_use(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.persistent)
    }

    /// The grants mapped persistently now (current connection).
    pub fn persistent_grants(&self) -> Vec<GrantRef> {
        self.conn
            .as_ref()
            .map(|c| c.pgrants.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Counters.
    pub fn stats(&self) -> &SimBlkStats {
        &self.stats
    }

    /// Every audit failure so far, oldest first.
    pub fn audit_failures(&self) -> &[AuditFailure] {
        &self.audit
    }

    /// Forgets recorded audit failures.
    pub fn clear_audit(&mut self) {
        self.audit.clear();
    }

    /// Requests taken and not yet answered (held ones included).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Requests of an old connection still in flight
    /// ([`InFlightOnDisconnect::KeepBusy`]).
    pub fn busy_in_flight(&self) -> usize {
        self.busy.as_ref().map_or(0, |b| b.pending.len())
    }

    /// The ids of the requests taken and not yet answered, oldest first.
    pub fn in_flight_ids(&self) -> Vec<u64> {
        self.pending.iter().map(|p| p.id).collect()
    }

    /// The disk contents.
    pub fn disk(&self) -> &[u8] {
        &self.disk
    }

    /// Writes `data` onto the disk from sector `sector` (as another tool in
    /// dom0 would). Panics past the end.
    pub fn write_disk(&mut self, sector: u64, data: &[u8]) {
        let at = disk_len(sector);
        let end = at + data.len();
        assert!(
            end <= self.disk.len(),
            "write_disk past the end of the disk"
        );
        self.disk[at..end].copy_from_slice(data);
    }

    // --- knobs --------------------------------------------------------------------

    /// Holds requests (true): they are taken from the ring, audited and mapped
    /// but not answered until released ([`release_held`](Self::release_held),
    /// or `hold(false)` and the next service). A slow disk.
    pub fn hold(&mut self, on: bool) {
        self.hold = on;
    }

    /// Takes requests from the ring only when the guest notified since the
    /// last look (true), as blkback does: its thread runs on the event
    /// channel's interrupt. Default false: every service looks at the ring, so
    /// a missing notification goes unseen. Answering what was taken (a slow
    /// disk finishing) needs no notification.
    pub fn events_only(&mut self, on: bool) {
        self.events_only = on;
        self.notifies_seen = self.evt.to_backend();
    }

    /// Answers up to `n` held requests now (oldest first, or newest first
    /// with [`answer_out_of_order`](Self::answer_out_of_order)), even while
    /// holding; returns how many were answered. Also completes the I/O of an
    /// old busy connection when no requests of the current one remain.
    pub fn release_held(&mut self, n: usize) -> usize {
        let done = self.complete(n);
        if self.pending.is_empty() {
            self.complete_busy();
        }
        done
    }

    /// Answers a batch of requests newest first (blkif allows any order).
    pub fn answer_out_of_order(&mut self, on: bool) {
        self.reverse = on;
    }

    /// Corrupts the next response.
    pub fn corrupt_next(&mut self, c: RspCorruption) {
        self.corrupt = Some(c);
    }

    /// Answers the next `n` requests with `BLKIF_RSP_ERROR` without doing them.
    pub fn fail_next(&mut self, n: u32) {
        self.fail_next = n;
    }

    /// What a disconnect does with requests in flight.
    pub fn set_in_flight_on_disconnect(&mut self, p: InFlightOnDisconnect) {
        self.in_flight_policy = p;
    }

    /// When disconnecting, keep every mapping (ring, persistent grants,
    /// requests' pages) until [`release_mappings`](Self::release_mappings):
    /// the front end must defer ending access.
    pub fn keep_mappings_on_close(&mut self, on: bool) {
        self.keep_mappings = on;
    }

    /// Undoes mappings kept by [`keep_mappings_on_close`](Self::keep_mappings_on_close).
    pub fn release_mappings(&mut self) {
        for (gref, access) in core::mem::take(&mut self.kept) {
            self.unmap(gref, access);
        }
    }

    /// Mappings kept after a close, not yet released.
    pub fn kept_mappings(&self) -> usize {
        self.kept.len()
    }

    /// Forgets pending corruptions and failures, stops holding and answers in order.
    pub fn reset_knobs(&mut self) {
        self.corrupt = None;
        self.replay = None;
        self.fail_next = 0;
        self.hold = false;
        self.reverse = false;
    }

    /// The configuration the next probe/connect uses (e.g. to switch a
    /// feature off before a [`reload`](Self::reload)). The disk keeps its size.
    pub fn config_mut(&mut self) -> &mut SimBlkConfig {
        &mut self.cfg
    }

    /// Writes `rsp` as the next response and publishes it (the slot need
    /// not answer any request: an extra duplicate overruns the ring).
    pub fn push_raw_response(&mut self, rsp: BlkifResponse) {
        if let Some(c) = self.conn.as_mut() {
            c.back.produce_response(&c.ring, &rsp.to_bytes());
            self.stats.responses += 1;
        }
        self.push();
    }

    /// Publishes `rsp_prod = rsp_prod_pvt + by` (a jump past what was requested).
    pub fn jump_rsp_prod(&mut self, by: u32) {
        if let Some(c) = self.conn.as_mut() {
            let v = c.back.rsp_prod_pvt().wrapping_add(by);
            c.back.force_rsp_prod(&c.ring, v);
            self.evt.notify_guest();
        }
    }

    /// The back end goes Closing (the toolstack detaches the disk) while
    /// keeping the ring: requests in flight stay in flight (and are answered
    /// if released); the front end's Closed then completes the disconnect
    /// (see [`set_in_flight_on_disconnect`](Self::set_in_flight_on_disconnect)).
    pub fn close(&mut self) {
        self.dev.set_state(XenbusState::Closing);
    }

    /// The back end goes Closing then Closed at once, disconnecting with
    /// whatever is in flight.
    pub fn close_now(&mut self) {
        self.dev.set_state(XenbusState::Closing);
        self.disconnect();
        self.dev.set_state(XenbusState::Closed);
    }

    /// The back end is reloaded (unbound and probed again): it disconnects,
    /// shows Closed, then probes again (features from the current config)
    /// and shows InitWait while the front end may still be connected.
    pub fn reload(&mut self) {
        self.disconnect();
        self.dev.set_state(XenbusState::Closed);
        // A freshly probed back end's watch on the front end's state fires
        // once at registration (xenbus does that), so it acts on the state
        // the front end is in now, changed or not.
        self.seen_front = XenbusState::Unknown;
        self.probe();
    }

    /// Save/restore into a new domain with `new_cfg` (its `front_domid` is
    /// ignored: the guest keeps its identity in the simulation): Xen's grant
    /// table starts over (epoch advances, no mapping survives), the event
    /// channels vanish, requests in flight are lost with the old back end,
    /// and the toolstack re-creates the vbd: a new back end (possibly in
    /// another domain, with fewer features) probes and waits in InitWait.
    /// The disk contents persist (resized to `new_cfg.sectors`); the traffic
    /// knobs are reset ([`reset_knobs`](Self::reset_knobs): the new back end
    /// answers at once), while the close-time knobs (kept mappings, in-flight
    /// policy) stay. The guest
    /// kernel must then call `SimGrants::reset_for_resume` and resume
    /// xenstore ([`SimBlkWorld::new_domain`] does all of it).
    pub fn new_domain(&mut self, new_cfg: SimBlkConfig) {
        self.grants.new_domain();
        self.evt.new_domain();
        self.conn = None;
        self.busy = None;
        self.kept.clear();
        self.stats.lost += self.pending.len() as u64;
        self.pending.clear();
        self.reset_knobs();
        self.dev.destroy();
        let front_domid = self.cfg.front_domid;
        self.cfg = SimBlkConfig {
            front_domid,
            ..new_cfg
        };
        self.disk.resize(disk_len(self.cfg.sectors), 0);
        self.dev
            .move_backend(self.cfg.backend_domid, self.cfg.devid);
        self.toolstack_create();
    }

    // --- state machine ------------------------------------------------------------

    /// One pass: reacts to a change of the front end's state (blkback's
    /// `frontend_changed`), then services the ring if mapped. Returns
    /// whether anything changed or moved.
    pub fn step(&mut self) -> bool {
        use XenbusState as S;
        let before = (self.state(), self.stats.clone());
        let front = self.dev.front_state();
        if front != self.seen_front {
            self.seen_front = front;
            match front {
                S::Initialising if self.state() == S::Closed => {
                    // "prepare for reconnect"
                    self.dev.set_state(S::InitWait);
                }
                S::Initialised | S::Connected if self.state() != S::Connected => {
                    if self.busy.is_some() {
                        self.fatal(SimBlkError::PendingIo);
                    } else {
                        self.disconnect();
                        match self.connect() {
                            Ok(()) => self.dev.set_state(S::Connected),
                            Err(e) => self.fatal(e),
                        }
                    }
                }
                S::Closing | S::Closed | S::Unknown if self.state() != S::Closed => {
                    self.disconnect();
                    self.dev.set_state(S::Closed);
                }
                _ => {}
            }
        }
        // Closing (the toolstack detaches, or a fatal error) while the front
        // end already shows Closed: nothing more will come from it, so the
        // disconnect completes now rather than on a change that never comes.
        if self.state() == S::Closing && front == S::Closed {
            self.disconnect();
            self.dev.set_state(S::Closed);
        }
        let moved = self.service();
        moved || before != (self.state(), self.stats.clone())
    }

    /// `xenbus_dev_fatal`: the error node, Closing.
    fn fatal(&mut self, e: SimBlkError) {
        self.stats.connect_error = Some(e);
        let path = format!(
            "/local/domain/{}/error/backend/vbd/{}/{}/error",
            self.cfg.backend_domid, self.cfg.front_domid, self.cfg.devid
        );
        let msg = e.message();
        self.dev.xs().with_sim(|s| s.write(&path, msg.as_bytes()));
        self.dev.set_state(XenbusState::Closing);
    }

    fn unmap(&self, gref: GrantRef, access: Access) {
        let _ = self
            .grants
            .backend_unmap(self.cfg.backend_domid, gref, access);
    }

    fn release(&mut self, gref: GrantRef, access: Access) {
        if self.keep_mappings {
            self.kept.push((gref, access));
        } else {
            self.unmap(gref, access);
        }
    }

    /// Undoes a connection's mappings (or keeps them, knob) and unbinds.
    fn teardown(&mut self, conn: BackConn, pending: VecDeque<Pending>) {
        self.evt.unbind(conn.port);
        for p in pending {
            for (gref, access) in p.maps {
                self.release(gref, access);
            }
        }
        for gref in conn.pgrants.keys() {
            self.release(*gref, Access::ReadWrite);
        }
        for gref in conn.ring_refs {
            self.release(gref, Access::ReadWrite);
        }
    }

    fn disconnect(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let pending = core::mem::take(&mut self.pending);
        self.replay = None;
        if !pending.is_empty() && self.in_flight_policy == InFlightOnDisconnect::KeepBusy {
            if let Some(old) = self.busy.take() {
                self.stats.lost += old.pending.len() as u64;
                self.teardown(old.conn, old.pending);
            }
            self.busy = Some(Busy { conn, pending });
            return;
        }
        self.stats.lost += pending.len() as u64;
        self.teardown(conn, pending);
    }

    fn connect(&mut self) -> Result<(), SimBlkError> {
        let num = |b: &Self, leaf: &'static str| {
            b.dev
                .front_node(leaf)
                .and_then(|v| parse_num(&v))
                .and_then(|v| u32::try_from(v).ok())
                .ok_or(SimBlkError::BadNode(leaf))
        };
        if let Some(v) = self.dev.front_node("multi-queue-num-queues") {
            let n = parse_num(&v)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or(SimBlkError::BadNode("multi-queue-num-queues"))?;
            if n != 1 || self.cfg.max_queues.is_none() {
                return Err(SimBlkError::Queues(n));
            }
        }
        let order = match self.dev.front_node("ring-page-order") {
            None => 0,
            Some(_) => num(self, "ring-page-order")?,
        };
        if order > self.cfg.max_ring_page_order.unwrap_or(0) || order > MAX_RING_PAGE_ORDER {
            return Err(SimBlkError::RingOrder(order));
        }
        const RING_REF_NAMES: [&str; 16] = [
            "ring-ref0",
            "ring-ref1",
            "ring-ref2",
            "ring-ref3",
            "ring-ref4",
            "ring-ref5",
            "ring-ref6",
            "ring-ref7",
            "ring-ref8",
            "ring-ref9",
            "ring-ref10",
            "ring-ref11",
            "ring-ref12",
            "ring-ref13",
            "ring-ref14",
            "ring-ref15",
        ];
        let mut refs = Vec::new();
        if order == 0 && self.dev.front_node("ring-ref").is_some() {
            refs.push(num(self, "ring-ref")?);
        } else {
            for name in RING_REF_NAMES.iter().take(1 << order) {
                refs.push(num(self, name)?);
            }
        }
        let port = num(self, "event-channel")?;
        match self.dev.front_node("protocol") {
            None => {}
            Some(p) if p == XEN_IO_PROTO_ABI_X86_64.as_bytes() => {}
            Some(_) => return Err(SimBlkError::Protocol),
        }
        let front_persistent = self
            .dev
            .front_node("feature-persistent")
            .and_then(|v| parse_num(&v))
            == Some(1);
        let layout = blk_ring_layout(order).map_err(|_| SimBlkError::RingOrder(order))?;
        let domid = self.cfg.backend_domid;
        let mut gfns = Vec::new();
        for (i, gref) in refs.iter().enumerate() {
            match self.grants.backend_map(domid, *gref, Access::ReadWrite) {
                Ok(g) => gfns.push(g),
                Err(e) => {
                    for done in refs.iter().take(i) {
                        self.unmap(*done, Access::ReadWrite);
                    }
                    return Err(SimBlkError::Map(e));
                }
            }
        }
        if let Err(p) = self.evt.bind(port, domid) {
            for gref in &refs {
                self.unmap(*gref, Access::ReadWrite);
            }
            return Err(SimBlkError::BadPort(p));
        }
        self.conn = Some(BackConn {
            ring: SimRingPages::new(&self.mem, &gfns),
            ring_refs: refs,
            order,
            port,
            back: SimBackend::new(layout),
            persistent: front_persistent && self.cfg.persistent,
            pgrants: BTreeMap::new(),
        });
        self.write_connect_nodes();
        self.stats.connects += 1;
        Ok(())
    }

    /// blkback's `connect`: the disk's nodes and the connect-time features.
    fn write_connect_nodes(&self) {
        let (cfg, d) = (&self.cfg, &self.dev);
        let num = |leaf: &str, v: u64| d.write_back(leaf, format!("{v}").as_bytes());
        d.write_back("feature-flush-cache", flag(cfg.flush));
        if cfg.discard {
            num("discard-granularity", cfg.discard_granularity.into());
            num("discard-alignment", cfg.discard_alignment.into());
            d.write_back("discard-secure", flag(cfg.discard_secure));
            d.write_back("feature-discard", b"1");
        } else {
            for leaf in [
                "feature-discard",
                "discard-granularity",
                "discard-alignment",
                "discard-secure",
            ] {
                d.rm_back(leaf);
            }
        }
        d.write_back("feature-barrier", flag(cfg.barrier));
        d.write_back("feature-persistent", flag(cfg.persistent));
        num("sectors", cfg.sectors);
        let mut info = 0;
        if cfg.read_only {
            info |= VDISK_READONLY;
        }
        if cfg.removable {
            info |= VDISK_REMOVABLE;
        }
        num("info", info.into());
        num("sector-size", cfg.sector_size.into());
        num("physical-sector-size", cfg.physical_sector_size.into());
    }

    // --- data path ----------------------------------------------------------------

    /// Services the ring once: takes every posted request (auditing and
    /// mapping its grants), answers them unless holding, and completes an old
    /// busy connection's I/O when not holding. Returns whether anything moved.
    ///
    /// The rules (Linux's `dispatch_rw_block_io`, `dispatch_discard_io`,
    /// `dispatch_other_io`): READ/WRITE need 1..=11 segments (INDIRECT
    /// 1..=`feature-max-indirect-segments`, `indirect_op` READ or WRITE);
    /// FLUSH_DISKCACHE and WRITE_BARRIER may carry 0..=11 segments of data.
    /// A segment needs `first_sect <= last_sect < 8`; the request's sectors
    /// must lie on the disk; every grant must map (read-write for READ and
    /// for persistent grants, read-only otherwise) and pass the audit.
    /// Otherwise, and for writes, flushes and discards to a read-only disk:
    /// `BLKIF_RSP_ERROR` with nothing done. Flush, barrier or discard not
    /// advertised, a secure discard without `discard-secure`, an unknown
    /// operation: `BLKIF_RSP_EOPNOTSUPP`. Responses echo the id and the
    /// operation (for INDIRECT: its `indirect_op`).
    pub fn service(&mut self) -> bool {
        let notifies = self.evt.to_backend();
        let notified = notifies != self.notifies_seen;
        self.notifies_seen = notifies;
        let mut moved = if self.events_only && !notified {
            false
        } else {
            self.take_requests()
        };
        if !self.hold {
            moved |= self.complete(usize::MAX) > 0;
            moved |= self.complete_busy();
        }
        moved
    }

    fn take_requests(&mut self) -> bool {
        let Some(mut conn) = self.conn.take() else {
            return false;
        };
        let mut moved = false;
        loop {
            let Some(wire) = conn.back.take_request(&conn.ring) else {
                // Idle: ask to be notified of the next request (blkback's
                // RING_FINAL_CHECK_FOR_REQUESTS), unless one raced in.
                if conn.back.final_check_for_requests(&conn.ring) {
                    continue;
                }
                break;
            };
            moved = true;
            let p = self.parse_request(&mut conn, &wire);
            self.pending.push_back(p);
        }
        self.conn = Some(conn);
        moved
    }

    fn record(&mut self, id: u64, gref: Option<GrantRef>, error: AuditError) {
        self.stats.audit_failures += 1;
        self.audit.push(AuditFailure { id, gref, error });
    }

    fn parse_request(&mut self, conn: &mut BackConn, wire: &BlkReqWire) -> Pending {
        self.stats.requests += 1;
        let op = wire[0];
        let rw = BlkifRequest::from_bytes(wire);
        let mut p = Pending {
            id: rw.id,
            operation: op,
            work: Err(BLKIF_RSP_ERROR),
            maps: Vec::new(),
            grefs: Vec::new(),
        };
        p.work = match op {
            BLKIF_OP_READ | BLKIF_OP_WRITE | BLKIF_OP_WRITE_BARRIER | BLKIF_OP_FLUSH_DISKCACHE => {
                let n = usize::from(rw.nr_segments);
                if n > BLKIF_MAX_SEGMENTS_PER_REQUEST {
                    self.count_op(op);
                    Err(BLKIF_RSP_ERROR)
                } else {
                    self.parse_rw(conn, &mut p, op, rw.sector_number, &rw.seg[..n])
                }
            }
            BLKIF_OP_INDIRECT => self.parse_indirect(conn, &mut p, wire),
            BLKIF_OP_DISCARD => self.parse_discard(&mut p, wire),
            _ => {
                self.stats.unknown_ops += 1;
                Err(BLKIF_RSP_EOPNOTSUPP)
            }
        };
        p
    }

    fn count_op(&mut self, op: u8) {
        let s = &mut self.stats;
        match op {
            BLKIF_OP_READ => s.reads += 1,
            BLKIF_OP_WRITE => s.writes += 1,
            BLKIF_OP_WRITE_BARRIER => s.barriers += 1,
            BLKIF_OP_FLUSH_DISKCACHE => s.flush_requests += 1,
            _ => {}
        }
    }

    fn parse_rw(
        &mut self,
        conn: &mut BackConn,
        p: &mut Pending,
        op: u8,
        sector: u64,
        segs: &[BlkifRequestSegment],
    ) -> Result<Work, i16> {
        self.count_op(op);
        let flush = matches!(op, BLKIF_OP_WRITE_BARRIER | BLKIF_OP_FLUSH_DISKCACHE);
        if (op == BLKIF_OP_WRITE_BARRIER && !self.cfg.barrier)
            || (op == BLKIF_OP_FLUSH_DISKCACHE && !self.cfg.flush)
        {
            self.record(p.id, None, AuditError::Unadvertised(op));
            return Err(BLKIF_RSP_EOPNOTSUPP);
        }
        if segs.is_empty() && !flush {
            return Err(BLKIF_RSP_ERROR);
        }
        if op != BLKIF_OP_READ && self.cfg.read_only {
            return Err(BLKIF_RSP_ERROR);
        }
        if !segs.iter().all(BlkifRequestSegment::is_valid) {
            return Err(BLKIF_RSP_ERROR);
        }
        let total: u64 = segs
            .iter()
            .map(|s| u64::from(s.last_sect - s.first_sect) + 1)
            .sum();
        if sector
            .checked_add(total)
            .is_none_or(|end| end > self.cfg.sectors)
        {
            return Err(BLKIF_RSP_ERROR);
        }
        self.stats.segments += segs.len() as u64;
        let access = if op == BLKIF_OP_READ {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        let mut out = Vec::with_capacity(segs.len());
        let mut ok = true;
        for s in segs {
            match self.map_for(conn, p, s.gref, access) {
                Some(frame) => out.push(Seg {
                    frame,
                    first: s.first_sect,
                    last: s.last_sect,
                }),
                None => ok = false,
            }
        }
        if !ok {
            return Err(BLKIF_RSP_ERROR);
        }
        Ok(match op {
            BLKIF_OP_READ => Work::Read { sector, segs: out },
            _ if out.is_empty() => Work::Flush,
            _ => Work::Write {
                sector,
                segs: out,
                flush,
            },
        })
    }

    fn parse_indirect(
        &mut self,
        conn: &mut BackConn,
        p: &mut Pending,
        wire: &BlkReqWire,
    ) -> Result<Work, i16> {
        self.stats.indirect += 1;
        let mut head = [0u8; BlkifRequestIndirect::SIZE];
        head.copy_from_slice(&wire[..BlkifRequestIndirect::SIZE]);
        let ind = BlkifRequestIndirect::from_bytes(&head);
        // Linux answers an indirect request with its indirect_op.
        p.operation = ind.indirect_op;
        if !matches!(ind.indirect_op, BLKIF_OP_READ | BLKIF_OP_WRITE) {
            return Err(BLKIF_RSP_ERROR);
        }
        let n = usize::from(ind.nr_segments);
        let max = self.cfg.max_indirect_segments.min(MAX_INDIRECT_SEGMENTS) as usize;
        if n > max {
            self.count_op(ind.indirect_op);
            self.record(p.id, None, AuditError::Unadvertised(BLKIF_OP_INDIRECT));
            return Err(BLKIF_RSP_ERROR);
        }
        if n == 0 {
            self.count_op(ind.indirect_op);
            return Err(BLKIF_RSP_ERROR);
        }
        let pages = n.div_ceil(BLKIF_SEGS_PER_INDIRECT_FRAME);
        let mut segs = Vec::with_capacity(n);
        let mut ok = true;
        for gref in ind.indirect_grefs.iter().take(pages) {
            match self.map_for(conn, p, *gref, Access::ReadOnly) {
                Some(frame) => {
                    let mut page = vec![0u8; PAGE_SIZE];
                    self.mem.read(frame, 0, &mut page);
                    for chunk in page.as_chunks::<{ BlkifRequestSegment::SIZE }>().0 {
                        if segs.len() == n {
                            break;
                        }
                        segs.push(BlkifRequestSegment::from_bytes(chunk));
                    }
                }
                None => ok = false,
            }
        }
        if !ok {
            self.count_op(ind.indirect_op);
            return Err(BLKIF_RSP_ERROR);
        }
        self.parse_rw(conn, p, ind.indirect_op, ind.sector_number, &segs)
    }

    fn parse_discard(&mut self, p: &mut Pending, wire: &BlkReqWire) -> Result<Work, i16> {
        self.stats.discards += 1;
        let mut head = [0u8; BlkifRequestDiscard::SIZE];
        head.copy_from_slice(&wire[..BlkifRequestDiscard::SIZE]);
        let d = BlkifRequestDiscard::from_bytes(&head);
        if !self.cfg.discard {
            self.record(p.id, None, AuditError::Unadvertised(BLKIF_OP_DISCARD));
            return Err(BLKIF_RSP_EOPNOTSUPP);
        }
        let secure = d.flag & BLKIF_DISCARD_SECURE != 0;
        if secure && !self.cfg.discard_secure {
            self.record(p.id, None, AuditError::Unadvertised(BLKIF_OP_DISCARD));
            return Err(BLKIF_RSP_EOPNOTSUPP);
        }
        if self.cfg.read_only
            || d.sector_number
                .checked_add(d.nr_sectors)
                .is_none_or(|end| end > self.cfg.sectors)
        {
            return Err(BLKIF_RSP_ERROR);
        }
        Ok(Work::Discard {
            sector: d.sector_number,
            count: d.nr_sectors,
            zero: secure || self.cfg.discard_zeroes,
        })
    }

    /// Maps `gref` for request `p` (persistently when negotiated) and audits
    /// it; the frame, or `None` if the request must fail.
    fn map_for(
        &mut self,
        conn: &mut BackConn,
        p: &mut Pending,
        gref: GrantRef,
        access: Access,
    ) -> Option<u64> {
        let domid = self.cfg.backend_domid;
        let id = p.id;
        if !p.grefs.contains(&gref) {
            let dup = self.pending.iter().any(|q| q.grefs.contains(&gref))
                || self
                    .busy
                    .as_ref()
                    .is_some_and(|b| b.pending.iter().any(|q| q.grefs.contains(&gref)));
            if dup {
                self.record(id, Some(gref), AuditError::Duplicate);
            }
            p.grefs.push(gref);
        }
        let (epoch, latest) = self
            .grants
            .with_mem(|m| (m.epoch(), m.latest_publish(gref)));
        let ring_frames = conn.ring.gfns();
        if conn.persistent
            && let Some(&frame) = conn.pgrants.get(&gref)
        {
            if latest.is_none_or(|(ep, f)| ep != epoch || u64::from(f) != frame) {
                self.record(id, Some(gref), AuditError::PersistentChanged);
            }
            // Like Linux, the back end uses the page it mapped back then.
            return Some(frame);
        }
        let access = if conn.persistent {
            Access::ReadWrite
        } else {
            access
        };
        let frame = match self.grants.backend_map(domid, gref, access) {
            Ok(f) => f,
            Err(e) => {
                self.record(id, Some(gref), AuditError::Map(e));
                return None;
            }
        };
        let failure = if latest.is_none_or(|(ep, _)| ep != epoch) {
            Some(AuditError::OldEpoch)
        } else if ring_frames.contains(&frame) {
            Some(AuditError::RingPage)
        } else {
            None
        };
        if let Some(f) = failure {
            self.record(id, Some(gref), f);
            p.maps.push((gref, access));
            return None;
        }
        if conn.persistent && conn.pgrants.len() < self.cfg.max_persistent_grants {
            conn.pgrants.insert(gref, frame);
            self.stats.persistent_maps += 1;
        } else {
            p.maps.push((gref, access));
        }
        Some(frame)
    }

    /// Answers up to `n` pending requests of the current connection.
    fn complete(&mut self, n: usize) -> usize {
        let Some(mut conn) = self.conn.take() else {
            return 0;
        };
        let mut done = 0;
        while done < n {
            let next = if self.reverse {
                self.pending.pop_back()
            } else {
                self.pending.pop_front()
            };
            let Some(p) = next else { break };
            self.finish(&mut conn, p);
            done += 1;
        }
        if done > 0 && conn.back.push_responses_and_check_notify(&conn.ring) {
            self.evt.notify_guest();
        }
        self.conn = Some(conn);
        done
    }

    /// Completes an old busy connection's I/O on its ring, then tears it down.
    fn complete_busy(&mut self) -> bool {
        let Some(Busy { mut conn, pending }) = self.busy.take() else {
            return false;
        };
        for p in pending {
            self.finish(&mut conn, p);
        }
        if conn.back.push_responses_and_check_notify(&conn.ring) {
            self.evt.notify_guest();
        }
        self.teardown(conn, VecDeque::new());
        true
    }

    /// Does a request's I/O, undoes its per-request mappings, writes its response.
    fn finish(&mut self, conn: &mut BackConn, p: Pending) {
        let status = if self.fail_next > 0 {
            self.fail_next -= 1;
            BLKIF_RSP_ERROR
        } else {
            match &p.work {
                Ok(w) => {
                    self.run(w);
                    BLKIF_RSP_OKAY
                }
                Err(s) => *s,
            }
        };
        for (gref, access) in &p.maps {
            self.unmap(*gref, *access);
        }
        self.respond(conn, p.id, p.operation, status);
    }

    fn run(&mut self, w: &Work) {
        match w {
            Work::Read { sector, segs } => {
                let mut at = disk_len(*sector);
                for s in segs {
                    let len = disk_len(s.sectors());
                    let data = &self.disk[at..at + len];
                    self.mem
                        .write(s.frame, usize::from(s.first) * SECTOR_SIZE, data);
                    at += len;
                    self.stats.bytes_read += len as u64;
                }
            }
            Work::Write {
                sector,
                segs,
                flush,
            } => {
                let mut at = disk_len(*sector);
                for s in segs {
                    let len = disk_len(s.sectors());
                    let mut buf = vec![0u8; len];
                    self.mem
                        .read(s.frame, usize::from(s.first) * SECTOR_SIZE, &mut buf);
                    self.disk[at..at + len].copy_from_slice(&buf);
                    at += len;
                    self.stats.bytes_written += len as u64;
                }
                if *flush {
                    self.stats.flushes += 1;
                }
            }
            Work::Flush => self.stats.flushes += 1,
            Work::Discard {
                sector,
                count,
                zero,
            } => {
                if *zero {
                    let at = disk_len(*sector);
                    let len = disk_len(*count);
                    self.disk[at..at + len].fill(0);
                }
                self.stats.discarded_sectors += count;
            }
        }
    }

    fn respond(&mut self, conn: &mut BackConn, id: u64, operation: u8, status: i16) {
        match status {
            BLKIF_RSP_ERROR => self.stats.errors += 1,
            BLKIF_RSP_EOPNOTSUPP => self.stats.not_supported += 1,
            _ => {}
        }
        let mut rsp = BlkifResponse {
            id,
            operation,
            status,
        };
        match self.corrupt.take() {
            Some(RspCorruption::Id(x)) => rsp.id = x,
            Some(RspCorruption::UnknownId) => rsp.id = id ^ (1 << 63),
            Some(RspCorruption::Operation(o)) => rsp.operation = o,
            Some(RspCorruption::Status(s)) => rsp.status = s,
            // This response is correct; the next one replays it.
            Some(RspCorruption::Replay) => self.replay = Some((id, operation)),
            None => {
                if let Some((old_id, old_op)) = self.replay.take() {
                    rsp.id = old_id;
                    rsp.operation = old_op;
                }
            }
        }
        self.stats.responses += 1;
        conn.back.produce_response(&conn.ring, &rsp.to_bytes());
    }

    fn push(&mut self) {
        if let Some(c) = self.conn.as_mut()
            && c.back.push_responses_and_check_notify(&c.ring)
        {
            self.evt.notify_guest();
        }
    }
}

// --- the whole world ------------------------------------------------------------------

/// The driver over the simulation's fakes.
pub type SimBlkFront = BlkFront<SimPages, SimGrants, SimEvtchn>;

xen_frontend::sim_world! {
    /// A guest (xenstore client, memory, pages, a grant table of 32 frames at
    /// most: room for persistent grants; event channels) and a
    /// [`SimBlkback`], all wired to one `SimXenstored`. A test probes the
    /// driver with [`SimBlkWorld::probe`], then hands it `&mut w.xs`.
    pub struct SimBlkWorld(SimBlkback, SimBlkConfig, grant_frames = 32);
}

impl SimBlkWorld {
    /// Probes the vbd with the driver.
    pub fn probe(&mut self, config: Config) -> Result<SimBlkFront, ProbeError> {
        let devid = self.devid();
        self.guest.probe_with(|xs, pages, grants, evt| {
            BlkFront::new(xs, devid, pages, grants, evt, config)
        })
    }

    /// The vbd id.
    pub fn devid(&self) -> u32 {
        self.back.cfg.devid
    }

    /// One back-end pass ([`SimBlkback::step`]).
    pub fn step(&mut self) -> bool {
        self.back.step()
    }

    /// Services the ring once ([`SimBlkback::service`]).
    pub fn service(&mut self) -> bool {
        self.back.service()
    }

    /// Steps the back end until nothing moves (at most 64 passes); returns the passes that moved.
    pub fn settle(&mut self) -> usize {
        let mut n = 0;
        while n < 64 && self.back.step() {
            n += 1;
        }
        n
    }

    /// The disk contents.
    pub fn disk(&self) -> &[u8] {
        self.back.disk()
    }

    /// Writes `data` onto the disk from sector `sector`.
    pub fn write_disk(&mut self, sector: u64, data: &[u8]) {
        self.back.write_disk(sector, data);
    }

    /// A front-end node's value (`leaf` under the vbd's front-end directory).
    pub fn front_node(&self, leaf: &str) -> Option<Vec<u8>> {
        self.back.dev.front_node(leaf)
    }

    /// A back-end node's value (`leaf` under the back-end directory).
    pub fn back_node(&self, leaf: &str) -> Option<Vec<u8>> {
        self.back.dev.back_node(leaf)
    }

    /// A whole save/restore into a new domain: the back end's and Xen's side
    /// ([`SimBlkback::new_domain`]) and the guest kernel's
    /// (`SimGrants::reset_for_resume`, the xenstore ring reconnected and the
    /// client resumed). The driver's resume comes next.
    pub fn new_domain(&mut self, new_cfg: SimBlkConfig) {
        self.back.new_domain(new_cfg);
        if let Err(e) = self.guest.restore() {
            panic!("xenstore resume failed: {e:?}");
        }
    }
}
