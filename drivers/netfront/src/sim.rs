//! Test doubles: guest memory, grant table, event channels and `SimNetback`, a hostile-capable netback (feature `test-utils`).
//!
//! - [`SimMemory`] holds guest page contents by gfn; [`SimPages`] hands out
//!   [`SimNetPage`]s (owning page handles implementing [`crate::NetPage`]).
//! - [`SimGrants`] is a shared `GrantTable` over [`SimGrantMem`], which wraps
//!   `grant_table::sim::SimGrantTable` (Xen's side: entry checks, in-use flags
//!   while a back end maps a page), logs every publish with the domain epoch,
//!   and can poison a page's contents when access to it ends.
//! - [`SimEvtchn`] allocates ports, counts notifications both ways.
//! - [`SimNetback`] plays Linux netback: publishes its features and InitWait,
//!   follows the front end's state (`frontend_changed`), maps the rings the
//!   front end publishes, delivers queued packets into posted rx buffers
//!   (grant copy: map, write, unmap) and collects transmitted frames. It audits
//!   every rx request it takes (the grant must be valid for this back end,
//!   issued in the current domain epoch, not a ring page, not shared with
//!   another outstanding request). Knobs make it misbehave: stale/wrong ids,
//!   bad statuses, offsets and sizes, bad or endless extra-info chains,
//!   `rsp_prod` jumps, holding tx, closing or reloading mid-traffic, keeping
//!   mappings after close, and save/restore into a new domain with a
//!   possibly different back-end domain.
//! - [`SimWorld`] wires all of it to a `SimXenstored` for tests.
//!
//! This is test support: it may panic to fail a test.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::sync::atomic::Ordering;

use grant_table::sim::{SimError, SimGrantTable};
use grant_table::{
    Access, Config as GrantConfig, DomId, GrantRef, GrantTable, GrantTableMemory, Grantable,
    GrowError, InUse, PollReport,
};
use xen_abi::PAGE_SIZE;
use xen_abi::event_channel::EvtchnPort;
use xen_abi::netif::{
    NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETRXF_EXTRA_INFO, NETRXF_MORE_DATA, NETTXF_MORE_DATA,
    NetifExtraInfo, NetifRxResponse, NetifTxRequest, NetifTxResponse, XEN_NETIF_EXTRA_FLAG_MORE,
    XEN_NETIF_EXTRA_TYPE_HASH,
};
use xen_ring::sim::SimBackend;
use xen_ring::{RingIdx, RingIndex, SharedRing};
use xenbus::XenbusState;
use xenstore::Xenstore;
use xenstore::sim::{SimPage as XsPage, SimPlatform, SimRing, SimXenstored};

use crate::driver::{Config, NetFront};
use crate::error::{NetError, ProbeError};
use crate::platform::{EventChannel, GrantAccess, PageProvider};
use crate::wire::{self, RxReq, RxRsp, TxReq, TxRsp};

// --- memory ---------------------------------------------------------------------

/// Guest page contents by gfn (shared handle). Pages never written read as zero.
#[derive(Clone, Debug, Default)]
pub struct SimMemory(Rc<RefCell<BTreeMap<u64, Box<[u8]>>>>);

impl SimMemory {
    /// Empty memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Copies bytes of page `gfn` from `offset` into `out` (out of range: zeros).
    pub fn read(&self, gfn: u64, offset: usize, out: &mut [u8]) {
        let m = self.0.borrow();
        let src = m.get(&gfn).and_then(|p| {
            offset
                .checked_add(out.len())
                .and_then(|end| p.get(offset..end))
        });
        match src {
            Some(src) => out.copy_from_slice(src),
            None => out.fill(0),
        }
    }

    /// Writes bytes into page `gfn` at `offset` (out of range: ignored).
    pub fn write(&self, gfn: u64, offset: usize, data: &[u8]) {
        let mut m = self.0.borrow_mut();
        let page = m
            .entry(gfn)
            .or_insert_with(|| vec![0u8; PAGE_SIZE].into_boxed_slice());
        if let Some(dst) = offset
            .checked_add(data.len())
            .and_then(|end| page.get_mut(offset..end))
        {
            dst.copy_from_slice(data);
        }
    }

    /// Fills page `gfn` with `byte`.
    pub fn fill(&self, gfn: u64, byte: u8) {
        self.write(gfn, 0, &[byte; PAGE_SIZE]);
    }

    /// A copy of page `gfn`.
    pub fn page(&self, gfn: u64) -> Vec<u8> {
        let mut v = vec![0; PAGE_SIZE];
        self.read(gfn, 0, &mut v);
        v
    }
}

fn ring_load(mem: &SimMemory, gfn: u64, index: RingIndex) -> RingIdx {
    let mut b = [0u8; 4];
    mem.read(gfn, index.offset(), &mut b);
    u32::from_le_bytes(b)
}

/// An owning handle on one simulated guest page (deliberately not `Clone`).
#[derive(Debug)]
pub struct SimNetPage {
    gfn: u64,
    mem: SimMemory,
}

impl SimNetPage {
    /// The page's frame number.
    pub fn gfn_of(&self) -> u64 {
        self.gfn
    }
}

impl Grantable for SimNetPage {
    fn gfn(&self) -> u64 {
        self.gfn
    }
}

impl SharedRing for SimNetPage {
    fn area_len(&self) -> usize {
        PAGE_SIZE
    }
    fn load(&self, index: RingIndex, _order: Ordering) -> RingIdx {
        ring_load(&self.mem, self.gfn, index)
    }
    fn store(&self, index: RingIndex, value: RingIdx, _order: Ordering) {
        self.mem
            .write(self.gfn, index.offset(), &value.to_le_bytes());
    }
    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        self.mem.read(self.gfn, offset, out);
    }
    fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        self.mem.write(self.gfn, offset, bytes);
    }
}

/// A back end's mapping of a guest page (for the simulated back ring).
#[derive(Clone, Debug)]
pub struct SimMapping {
    gfn: u64,
    mem: SimMemory,
}

impl SharedRing for SimMapping {
    fn area_len(&self) -> usize {
        PAGE_SIZE
    }
    fn load(&self, index: RingIndex, _order: Ordering) -> RingIdx {
        ring_load(&self.mem, self.gfn, index)
    }
    fn store(&self, index: RingIndex, value: RingIdx, _order: Ordering) {
        self.mem
            .write(self.gfn, index.offset(), &value.to_le_bytes());
    }
    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        self.mem.read(self.gfn, offset, out);
    }
    fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        self.mem.write(self.gfn, offset, bytes);
    }
}

#[derive(Debug)]
struct PagesState {
    mem: SimMemory,
    next_gfn: u64,
    free: Vec<u64>,
    allocs: u64,
    frees: u64,
    limit: Option<u64>,
}

/// A page provider over [`SimMemory`] (shared handle) counting allocations.
#[derive(Clone, Debug)]
pub struct SimPages(Rc<RefCell<PagesState>>);

impl SimPages {
    /// A provider of pages of `mem`, gfns from 0x1000.
    pub fn new(mem: SimMemory) -> Self {
        Self(Rc::new(RefCell::new(PagesState {
            mem,
            next_gfn: 0x1000,
            free: Vec::new(),
            allocs: 0,
            frees: 0,
            limit: None,
        })))
    }

    /// Pages handed out so far.
    pub fn allocs(&self) -> u64 {
        self.0.borrow().allocs
    }

    /// Pages returned so far.
    pub fn frees(&self) -> u64 {
        self.0.borrow().frees
    }

    /// Pages handed out and not returned.
    pub fn live(&self) -> u64 {
        let s = self.0.borrow();
        s.allocs - s.frees
    }

    /// Refuse allocations once `live()` reaches `limit`.
    pub fn set_limit(&self, limit: Option<u64>) {
        self.0.borrow_mut().limit = limit;
    }

    fn give_back(&self, page: SimNetPage) {
        let mut s = self.0.borrow_mut();
        s.frees += 1;
        s.free.push(page.gfn);
    }
}

impl PageProvider for SimPages {
    type Page = SimNetPage;
    fn alloc_page(&mut self) -> Option<SimNetPage> {
        let mut s = self.0.borrow_mut();
        if s.limit.is_some_and(|l| s.allocs - s.frees >= l) {
            return None;
        }
        let gfn = match s.free.pop() {
            Some(g) => g,
            None => {
                let g = s.next_gfn;
                s.next_gfn += 1;
                g
            }
        };
        s.allocs += 1;
        // The frame exists from now on (its storage is not created lazily
        // inside a driver call).
        s.mem.write(gfn, 0, &[0]);
        Some(SimNetPage {
            gfn,
            mem: s.mem.clone(),
        })
    }
    fn free_page(&mut self, page: SimNetPage) {
        self.give_back(page);
    }
}

// --- grant table ----------------------------------------------------------------

/// [`SimGrantTable`] plus a publish log (with domain epochs) and poisoning of
/// [`SimMemory`] pages when access to them ends.
#[derive(Debug)]
pub struct SimGrantMem {
    /// Xen's side of the table.
    pub inner: SimGrantTable,
    mem: SimMemory,
    poison: bool,
    epoch: u32,
    /// Latest publish of each reference: (epoch, frame).
    latest: BTreeMap<GrantRef, (u32, u32)>,
    publishes: u64,
    poisoned: u64,
}

/// The byte a page is filled with when access to it ends (if enabled).
pub const POISON: u8 = grant_table::sim::POISON;

impl SimGrantMem {
    /// The domain epoch (bumped by every simulated restore).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The epoch and frame of the latest publish of `gref`.
    pub fn latest_publish(&self, gref: GrantRef) -> Option<(u32, u32)> {
        self.latest.get(&gref).copied()
    }

    /// Entries published so far (all epochs).
    pub fn publishes(&self) -> u64 {
        self.publishes
    }

    /// Pages poisoned so far.
    pub fn poisoned(&self) -> u64 {
        self.poisoned
    }
}

impl GrantTableMemory for SimGrantMem {
    fn frames(&self) -> u32 {
        self.inner.frames()
    }
    fn max_frames(&self) -> u32 {
        self.inner.max_frames()
    }
    fn grow(&mut self) -> Result<(), GrowError> {
        self.inner.grow()
    }
    fn publish(&mut self, gref: GrantRef, domid: DomId, frame: u32, flags: u16) {
        self.publishes += 1;
        self.latest.insert(gref, (self.epoch, frame));
        self.inner.publish(gref, domid, frame, flags);
    }
    fn try_end_access(&mut self, gref: GrantRef) -> Result<(), InUse> {
        let frame = self.inner.entry(gref).map(|e| e.frame);
        self.inner.try_end_access(gref)?;
        if self.poison
            && let Some(f) = frame
        {
            self.mem.fill(u64::from(f), POISON);
            self.poisoned += 1;
        }
        Ok(())
    }
}

/// The guest's grant table over [`SimGrantMem`].
pub type SimTable = GrantTable<SimGrantMem, SimNetPage>;

/// A shared handle on the guest's grant table (the driver's [`GrantAccess`];
/// the simulated back end maps through the same table).
#[derive(Clone)]
pub struct SimGrants(Rc<RefCell<SimTable>>);

impl core::fmt::Debug for SimGrants {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SimGrants")
    }
}

impl SimGrants {
    /// A table of one frame that may grow to `max_frames` (poisoning off).
    pub fn new(mem: SimMemory, max_frames: u32) -> Self {
        let mut inner = SimGrantTable::new(1, max_frames);
        inner.set_poison_on_end(false);
        let m = SimGrantMem {
            inner,
            mem,
            poison: false,
            epoch: 0,
            latest: BTreeMap::new(),
            publishes: 0,
            poisoned: 0,
        };
        Self(Rc::new(RefCell::new(GrantTable::new(
            m,
            GrantConfig::default(),
        ))))
    }

    /// Runs `f` on the table.
    pub fn with_table<R>(&self, f: impl FnOnce(&mut SimTable) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }

    /// Runs `f` on the table's memory (Xen's side).
    pub fn with_mem<R>(&self, f: impl FnOnce(&mut SimGrantMem) -> R) -> R {
        f(self.0.borrow_mut().memory_mut())
    }

    /// Entries published so far.
    pub fn publishes(&self) -> u64 {
        self.with_mem(|m| m.publishes)
    }

    /// Poison page contents when access ends.
    pub fn set_poison_on_end(&self, on: bool) {
        self.with_mem(|m| m.poison = on);
    }

    /// Xen's side of a restore into a new domain: the table is back to its
    /// initial frames, every entry invalid, no mappings; the epoch advances.
    pub fn new_domain(&self) {
        self.with_mem(|m| {
            m.inner.new_domain();
            m.epoch += 1;
        });
    }

    /// The guest kernel's side of a restore (`GrantTable::reset_for_resume`):
    /// pages the table still held go back to `pages`.
    pub fn reset_for_resume(&self, pages: &SimPages) {
        let held = self.with_table(|t| t.reset_for_resume());
        for p in held {
            pages.give_back(p);
        }
    }

    /// The guest kernel's periodic `poll_deferred`: released pages go back to `pages`.
    pub fn poll_deferred(&self, pages: &SimPages) -> PollReport {
        let mut released = Vec::new();
        let report = self.with_table(|t| t.poll_deferred(|p| released.push(p)));
        for p in released {
            pages.give_back(p);
        }
        report
    }
}

impl GrantAccess for SimGrants {
    type Memory = SimGrantMem;
    type Page = SimNetPage;
    fn with<R>(&mut self, f: impl FnOnce(&mut SimTable) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

// --- event channels ---------------------------------------------------------------

#[derive(Debug, Default)]
struct EvtState {
    next_port: EvtchnPort,
    /// Allocated ports and the remote domain each was allocated for.
    ports: BTreeMap<EvtchnPort, DomId>,
    /// Ports bound by a back end.
    bound: BTreeSet<EvtchnPort>,
    closed: Vec<EvtchnPort>,
    to_backend: u64,
    to_guest: u64,
    guest_pending: bool,
}

/// Simulated event channels (shared handle): the driver's [`EventChannel`].
#[derive(Clone, Debug, Default)]
pub struct SimEvtchn(Rc<RefCell<EvtState>>);

impl SimEvtchn {
    /// No ports yet; the first allocated is 5.
    pub fn new() -> Self {
        let s = Self::default();
        s.0.borrow_mut().next_port = 5;
        s
    }

    /// Notifications the guest sent to a back end.
    pub fn to_backend(&self) -> u64 {
        self.0.borrow().to_backend
    }

    /// Notifications a back end sent to the guest.
    pub fn to_guest(&self) -> u64 {
        self.0.borrow().to_guest
    }

    /// Takes the guest's pending-event flag.
    pub fn take_guest_event(&self) -> bool {
        core::mem::take(&mut self.0.borrow_mut().guest_pending)
    }

    /// Ports the guest closed.
    pub fn closed(&self) -> Vec<EvtchnPort> {
        self.0.borrow().closed.clone()
    }

    /// Ports allocated and not closed.
    pub fn open_ports(&self) -> usize {
        self.0.borrow().ports.len()
    }

    /// A restore: every port of the old domain is gone.
    pub fn new_domain(&self) {
        let mut s = self.0.borrow_mut();
        s.ports.clear();
        s.bound.clear();
        s.guest_pending = false;
    }

    fn bind(&self, port: EvtchnPort, backend: DomId) -> Result<(), SimNetError> {
        let mut s = self.0.borrow_mut();
        match s.ports.get(&port) {
            Some(&remote) if remote == backend => {
                s.bound.insert(port);
                Ok(())
            }
            _ => Err(SimNetError::BadPort(port)),
        }
    }

    fn unbind(&self, port: EvtchnPort) {
        self.0.borrow_mut().bound.remove(&port);
    }

    fn notify_guest(&self) {
        let mut s = self.0.borrow_mut();
        s.to_guest += 1;
        s.guest_pending = true;
    }
}

impl EventChannel for SimEvtchn {
    fn alloc_unbound(&mut self, remote: DomId) -> Result<EvtchnPort, i32> {
        let mut s = self.0.borrow_mut();
        let port = s.next_port;
        s.next_port += 1;
        s.ports.insert(port, remote);
        Ok(port)
    }
    fn notify(&mut self, _port: EvtchnPort) {
        self.0.borrow_mut().to_backend += 1;
    }
    fn close(&mut self, port: EvtchnPort) {
        let mut s = self.0.borrow_mut();
        s.ports.remove(&port);
        s.bound.remove(&port);
        s.closed.push(port);
    }
}

// --- the back end -------------------------------------------------------------------

/// Why the simulated back end could not connect (netback's `xenbus_dev_fatal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimNetError {
    /// A front-end node is missing or malformed.
    BadNode(&'static str),
    /// `request-rx-copy` is not 1.
    NoRxCopy,
    /// `feature-rx-notify` is not 1 (mandatory for Linux netback).
    NoRxNotify,
    /// A ring reference could not be mapped.
    Map(SimError),
    /// The event channel was not allocated for this back end.
    BadPort(EvtchnPort),
}

/// What the back end advertises and how the toolstack set the vif up.
#[derive(Clone, Debug)]
pub struct SimNetConfig {
    /// The guest's domid.
    pub front_domid: u16,
    /// The back end's domid.
    pub backend_domid: DomId,
    /// The vif id.
    pub devid: u32,
    /// `device/vif/<id>/mac`.
    pub mac: Vec<u8>,
    /// `device/vif/<id>/mtu`, if written.
    pub mtu: Option<Vec<u8>>,
    /// `feature-rx-copy`.
    pub rx_copy: bool,
    /// `feature-sg`.
    pub sg: bool,
}

impl Default for SimNetConfig {
    fn default() -> Self {
        Self {
            front_domid: 7,
            backend_domid: 0,
            devid: 0,
            mac: b"00:16:3e:12:34:56".to_vec(),
            mtu: None,
            rx_copy: true,
            sg: true,
        }
    }
}

/// A packet queued for delivery to the guest, and how to deliver it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimRxPacket {
    /// The frame.
    pub data: Vec<u8>,
    /// `NETRXF_csum_blank` / `NETRXF_data_validated` flags of the first slot.
    pub flags: u16,
    /// Extra-info segments after the first slot.
    pub extras: Vec<NetifExtraInfo>,
    /// Data bytes per slot (at most a page minus `offset`).
    pub chunk: usize,
    /// Offset of the data in the first slot's page.
    pub offset: u16,
}

impl SimRxPacket {
    /// A frame delivered in page-sized slots at offset 0, no flags.
    pub fn new(data: &[u8]) -> Self {
        Self {
            data: data.to_vec(),
            flags: 0,
            extras: Vec::new(),
            chunk: PAGE_SIZE,
            offset: 0,
        }
    }
}

/// A one-shot corruption of the next rx packet's first data response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxCorruption {
    /// The id of the previously answered request (a replay).
    StaleId,
    /// This id instead of the request's.
    Id(u16),
    /// This status (negative: an error code; positive: a size).
    Status(i16),
    /// This offset.
    Offset(u16),
    /// An extra-info slot of this type after the first slot.
    ExtraType(u8),
    /// A chain of this many extra-info slots, each saying "more".
    EndlessExtras(u16),
    /// `NETRXF_more_data` on the packet's last slot (it then swallows the
    /// next packet).
    DanglingMoreData,
}

/// A one-shot corruption of the next tx response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxCorruption {
    /// The response after the next one repeats the next one's id (a replay)
    /// instead of answering its own request.
    StaleId,
    /// This id instead of the request's.
    Id(u16),
    /// This status.
    Status(i16),
}

/// Which ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingSel {
    /// The tx ring.
    Tx,
    /// The rx ring.
    Rx,
}

/// Counters of the simulated back end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimNetStats {
    /// Successful connects.
    pub connects: u64,
    /// Last connect failure.
    pub connect_error: Option<SimNetError>,
    /// Rx requests taken.
    pub rx_requests: u64,
    /// Rx requests that failed the audit (see [`SimNetback::audit_failures`]).
    pub bad_rx_grefs: u64,
    /// Rx packets delivered.
    pub rx_packets: u64,
    /// Rx response slots produced.
    pub rx_slots: u64,
    /// Tx requests taken.
    pub tx_requests: u64,
    /// Tx requests whose grant could not be mapped.
    pub bad_tx_grefs: u64,
    /// Tx frames received from the guest.
    pub tx_frames: u64,
}

/// Why an rx request failed the back end's audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditError {
    /// The grant could not be mapped writable by this back end.
    Map(SimError),
    /// The grant was last published in an earlier domain epoch.
    OldEpoch,
    /// The grant names a ring page.
    RingPage,
    /// Another outstanding request names the same frame or reference.
    Duplicate,
}

#[derive(Debug)]
struct BackConn {
    tx_map: SimMapping,
    rx_map: SimMapping,
    tx_ref: GrantRef,
    rx_ref: GrantRef,
    port: EvtchnPort,
    tx: SimBackend<TxReq, TxRsp>,
    rx: SimBackend<RxReq, RxRsp>,
}

/// A taken rx request and the frame its grant resolved to.
#[derive(Clone, Copy, Debug)]
struct Posted {
    req: RxReq,
    frame: Option<u64>,
}

/// The simulated netback. See the module docs.
#[derive(Debug)]
pub struct SimNetback {
    xs: SimRing,
    grants: SimGrants,
    mem: SimMemory,
    evt: SimEvtchn,
    cfg: SimNetConfig,
    front_dir: String,
    back_dir: String,
    state: XenbusState,
    conn: Option<BackConn>,
    /// Ring mappings kept after a close (knob), unmapped by `release_mappings`.
    kept: Vec<GrantRef>,
    rx_queue: VecDeque<SimRxPacket>,
    rx_pending: VecDeque<Posted>,
    last_rx_id: Option<u16>,
    tx_partial: Vec<NetifTxRequest>,
    tx_replay: Option<u16>,
    sent: Vec<Vec<u8>>,
    hold_tx: bool,
    keep_mappings: bool,
    rx_corrupt: Option<RxCorruption>,
    tx_corrupt: Option<TxCorruption>,
    audit: Vec<(GrantRef, AuditError)>,
    stats: SimNetStats,
}

fn parse_u32(v: &[u8]) -> Option<u32> {
    crate::nodes::parse_u32(v).ok()
}

impl SimNetback {
    /// Creates the vif as the toolstack does (front-end nodes `backend`,
    /// `backend-id`, `mac`, `state`=Initialising; back-end nodes) and probes
    /// the back end: features published, state InitWait.
    pub fn new(
        xs: SimRing,
        grants: SimGrants,
        mem: SimMemory,
        evt: SimEvtchn,
        cfg: SimNetConfig,
    ) -> Self {
        let front_dir = format!("/local/domain/{}/device/vif/{}", cfg.front_domid, cfg.devid);
        let back_dir = Self::back_dir_for(&cfg);
        let mut b = Self {
            xs,
            grants,
            mem,
            evt,
            cfg,
            front_dir,
            back_dir,
            state: XenbusState::Initialising,
            conn: None,
            kept: Vec::new(),
            rx_queue: VecDeque::new(),
            rx_pending: VecDeque::new(),
            last_rx_id: None,
            tx_partial: Vec::new(),
            tx_replay: None,
            sent: Vec::new(),
            hold_tx: false,
            keep_mappings: false,
            rx_corrupt: None,
            tx_corrupt: None,
            audit: Vec::new(),
            stats: SimNetStats::default(),
        };
        b.toolstack_create();
        b
    }

    fn back_dir_for(cfg: &SimNetConfig) -> String {
        format!(
            "/local/domain/{}/backend/vif/{}/{}",
            cfg.backend_domid, cfg.front_domid, cfg.devid
        )
    }

    fn toolstack_create(&mut self) {
        let (fd, bd) = (self.front_dir.clone(), self.back_dir.clone());
        let cfg = self.cfg.clone();
        self.xs.with_sim(|s| {
            s.write(&format!("{fd}/backend"), bd.as_bytes());
            s.write(
                &format!("{fd}/backend-id"),
                format!("{}", cfg.backend_domid).as_bytes(),
            );
            s.write(&format!("{fd}/mac"), &cfg.mac);
            if let Some(mtu) = &cfg.mtu {
                s.write(&format!("{fd}/mtu"), mtu);
            }
            s.write(&format!("{fd}/handle"), format!("{}", cfg.devid).as_bytes());
            s.write(&format!("{fd}/state"), b"1");
            s.write(&format!("{bd}/frontend"), fd.as_bytes());
            s.write(
                &format!("{bd}/frontend-id"),
                format!("{}", cfg.front_domid).as_bytes(),
            );
            s.write(&format!("{bd}/mac"), b"fe:ff:ff:ff:ff:ff");
            let flag = |on: bool| if on { &b"1"[..] } else { &b"0"[..] };
            s.write(&format!("{bd}/feature-rx-copy"), flag(cfg.rx_copy));
            s.write(&format!("{bd}/feature-rx-flip"), b"0");
            s.write(&format!("{bd}/feature-sg"), flag(cfg.sg));
            s.write(&format!("{bd}/feature-gso-tcpv4"), b"1");
            s.write(&format!("{bd}/feature-gso-tcpv6"), b"1");
            s.write(&format!("{bd}/feature-ipv6-csum-offload"), b"1");
            s.write(&format!("{bd}/feature-split-event-channels"), b"1");
            s.write(&format!("{bd}/multi-queue-max-queues"), b"2");
        });
        self.set_state(XenbusState::InitWait);
    }

    fn set_state(&mut self, s: XenbusState) {
        self.state = s;
        let bd = self.back_dir.clone();
        self.xs
            .with_sim(|x| x.write(&format!("{bd}/state"), s.as_str().as_bytes()));
    }

    fn front_node(&self, leaf: &str) -> Option<Vec<u8>> {
        let p = format!("{}/{leaf}", self.front_dir);
        self.xs.with_sim(|s| s.read(&p))
    }

    /// The back end's state.
    pub fn state(&self) -> XenbusState {
        self.state
    }

    /// The back end's directory.
    pub fn backend_dir(&self) -> &str {
        &self.back_dir
    }

    /// Whether the rings are mapped.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Counters.
    pub fn stats(&self) -> &SimNetStats {
        &self.stats
    }

    /// Rx requests that failed the audit, with the reason.
    pub fn audit_failures(&self) -> &[(GrantRef, AuditError)] {
        &self.audit
    }

    /// Rx requests taken and not yet used for a packet.
    pub fn rx_posted(&self) -> usize {
        self.rx_pending.len()
    }

    /// Takes the frames the guest transmitted so far.
    pub fn take_sent(&mut self) -> Vec<Vec<u8>> {
        core::mem::take(&mut self.sent)
    }

    /// Queues a frame for the guest.
    pub fn inject(&mut self, pkt: SimRxPacket) {
        self.rx_queue.push_back(pkt);
    }

    /// Packets queued and not yet delivered.
    pub fn queued(&self) -> usize {
        self.rx_queue.len()
    }

    /// Stops (true) or resumes (false) taking tx requests.
    pub fn hold_tx(&mut self, on: bool) {
        self.hold_tx = on;
    }

    /// Forgets queued packets and pending corruptions, and stops holding tx.
    pub fn reset_knobs(&mut self) {
        self.rx_queue.clear();
        self.rx_corrupt = None;
        self.tx_corrupt = None;
        self.tx_replay = None;
        self.hold_tx = false;
    }

    /// Corrupts the next rx packet.
    pub fn corrupt_next_rx(&mut self, c: RxCorruption) {
        self.rx_corrupt = Some(c);
    }

    /// Corrupts the next tx response.
    pub fn corrupt_next_tx(&mut self, c: TxCorruption) {
        self.tx_corrupt = Some(c);
    }

    /// When closing, keep the ring mappings (the front end must defer ending
    /// access) until [`release_mappings`](Self::release_mappings).
    pub fn keep_mappings_on_close(&mut self, on: bool) {
        self.keep_mappings = on;
    }

    /// Drops mappings kept by [`keep_mappings_on_close`](Self::keep_mappings_on_close).
    pub fn release_mappings(&mut self) {
        let domid = self.cfg.backend_domid;
        for gref in core::mem::take(&mut self.kept) {
            let _ = self
                .grants
                .with_mem(|m| m.inner.backend_unmap(domid, gref, Access::ReadWrite));
        }
    }

    /// Writes raw bytes as the next rx response slots (each takes the slot
    /// of the oldest posted request, if any) and publishes them.
    pub fn push_raw_rx(&mut self, slots: &[[u8; 8]]) {
        self.take_rx_requests();
        for slot in slots {
            let _ = self.rx_pending.pop_front();
            if let Some(c) = self.conn.as_mut() {
                c.rx.produce_response(&c.rx_map, &RxRsp(*slot));
            }
        }
        if let Some(c) = self.conn.as_mut()
            && c.rx.push_responses_and_check_notify(&c.rx_map)
        {
            self.evt.notify_guest();
        }
    }

    /// Writes raw bytes as the next tx responses and publishes them.
    pub fn push_raw_tx(&mut self, rsps: &[[u8; 4]]) {
        if let Some(c) = self.conn.as_mut() {
            for r in rsps {
                c.tx.produce_response(&c.tx_map, &TxRsp(NetifTxResponse::from_bytes(r)));
            }
        }
        self.push_tx();
    }

    /// Publishes `rsp_prod = rsp_prod_pvt + by` on a ring (a jump past what
    /// was requested).
    pub fn jump_rsp_prod(&mut self, ring: RingSel, by: u32) {
        if let Some(c) = self.conn.as_mut() {
            match ring {
                RingSel::Tx => {
                    let v = c.tx.rsp_prod_pvt().wrapping_add(by);
                    c.tx.force_rsp_prod(&c.tx_map, v);
                }
                RingSel::Rx => {
                    let v = c.rx.rsp_prod_pvt().wrapping_add(by);
                    c.rx.force_rsp_prod(&c.rx_map, v);
                }
            }
        }
    }

    /// Drops the connection mid-traffic: the back end switches to `state`
    /// (Closing or Closed) and unmaps (unless told to keep mappings).
    pub fn drop_connection(&mut self, state: XenbusState) {
        self.disconnect();
        self.set_state(state);
    }

    /// The back end is reloaded (unbound and probed again): it forgets the
    /// connection and shows InitWait while the front end is still connected.
    pub fn reload(&mut self) {
        self.disconnect();
        self.set_state(XenbusState::InitWait);
    }

    /// Save/restore into a new domain: Xen's grant table and event channels
    /// are new, the old connection is gone (no unmap needed), and the
    /// toolstack re-creates the vif, with the back end in `new_backend` if
    /// given. The guest kernel must then call `SimGrants::reset_for_resume`
    /// and resume xenstore before the driver's `resume(.., true)`.
    pub fn new_domain(&mut self, new_backend: Option<DomId>) {
        self.grants.new_domain();
        self.evt.new_domain();
        self.conn = None;
        self.kept.clear();
        self.rx_pending.clear();
        self.tx_partial.clear();
        self.last_rx_id = None;
        self.tx_replay = None;
        let (fd, bd) = (self.front_dir.clone(), self.back_dir.clone());
        self.xs.with_sim(|s| {
            s.rm(&fd);
            s.rm(&bd);
        });
        if let Some(d) = new_backend {
            self.cfg.backend_domid = d;
            self.back_dir = Self::back_dir_for(&self.cfg);
        }
        self.toolstack_create();
    }

    fn disconnect(&mut self) {
        let domid = self.cfg.backend_domid;
        if let Some(c) = self.conn.take() {
            self.evt.unbind(c.port);
            for gref in [c.tx_ref, c.rx_ref] {
                if self.keep_mappings {
                    self.kept.push(gref);
                } else {
                    let _ = self
                        .grants
                        .with_mem(|m| m.inner.backend_unmap(domid, gref, Access::ReadWrite));
                }
            }
        }
        self.rx_pending.clear();
        self.tx_partial.clear();
    }

    fn connect(&mut self) -> Result<(), SimNetError> {
        let num = |b: &Self, leaf: &'static str| {
            b.front_node(leaf)
                .and_then(|v| parse_u32(&v))
                .ok_or(SimNetError::BadNode(leaf))
        };
        let tx_ref = num(self, "tx-ring-ref")?;
        let rx_ref = num(self, "rx-ring-ref")?;
        let port = num(self, "event-channel")?;
        if self.front_node("request-rx-copy").as_deref() != Some(b"1") {
            return Err(SimNetError::NoRxCopy);
        }
        if self.front_node("feature-rx-notify").as_deref() != Some(b"1") {
            return Err(SimNetError::NoRxNotify);
        }
        let domid = self.cfg.backend_domid;
        let tx_gfn = self.map_ring(tx_ref)?;
        let rx_gfn = match self.map_ring(rx_ref) {
            Ok(g) => g,
            Err(e) => {
                let _ = self
                    .grants
                    .with_mem(|m| m.inner.backend_unmap(domid, tx_ref, Access::ReadWrite));
                return Err(e);
            }
        };
        if let Err(e) = self.evt.bind(port, domid) {
            let _ = self.grants.with_mem(|m| {
                m.inner.backend_unmap(domid, tx_ref, Access::ReadWrite)?;
                m.inner.backend_unmap(domid, rx_ref, Access::ReadWrite)
            });
            return Err(e);
        }
        let tx_layout = wire::tx_layout().map_err(|_| SimNetError::BadNode("tx-ring-ref"))?;
        let rx_layout = wire::rx_layout().map_err(|_| SimNetError::BadNode("rx-ring-ref"))?;
        self.conn = Some(BackConn {
            tx_map: SimMapping {
                gfn: tx_gfn,
                mem: self.mem.clone(),
            },
            rx_map: SimMapping {
                gfn: rx_gfn,
                mem: self.mem.clone(),
            },
            tx_ref,
            rx_ref,
            port,
            tx: SimBackend::new(tx_layout),
            rx: SimBackend::new(rx_layout),
        });
        self.stats.connects += 1;
        Ok(())
    }

    fn map_ring(&mut self, gref: GrantRef) -> Result<u64, SimNetError> {
        let domid = self.cfg.backend_domid;
        self.grants.with_mem(|m| {
            m.inner
                .backend_map(domid, gref, Access::ReadWrite)
                .map_err(SimNetError::Map)?;
            m.inner
                .entry(gref)
                .map(|e| u64::from(e.frame))
                .ok_or(SimNetError::Map(SimError::BadRef))
        })
    }

    /// Maps `gref` with `access`, runs `f` on its frame, unmaps (a grant copy).
    fn with_grant<R>(
        &mut self,
        gref: GrantRef,
        access: Access,
        f: impl FnOnce(&SimMemory, u64) -> R,
    ) -> Result<R, SimError> {
        let domid = self.cfg.backend_domid;
        let frame = self.grants.with_mem(|m| {
            m.inner.backend_map(domid, gref, access)?;
            m.inner
                .entry(gref)
                .map(|e| u64::from(e.frame))
                .ok_or(SimError::BadRef)
        })?;
        let r = f(&self.mem, frame);
        self.grants
            .with_mem(|m| m.inner.backend_unmap(domid, gref, access))?;
        Ok(r)
    }

    /// One pass: reacts to the front end's state (netback's
    /// `frontend_changed`), then services the rings if connected. Returns
    /// whether anything changed or moved.
    pub fn step(&mut self) -> bool {
        use XenbusState as S;
        let before = (self.state, self.stats.clone());
        let front = self
            .front_node("state")
            .and_then(|v| XenbusState::parse(&v).ok())
            .unwrap_or(S::Unknown);
        match front {
            S::Initialising | S::Initialised if self.state == S::Closed => {
                // "prepare for reconnect"
                self.set_state(S::InitWait);
            }
            S::Connected if matches!(self.state, S::InitWait | S::Initialised) => {
                match self.connect() {
                    Ok(()) => self.set_state(S::Connected),
                    Err(e) => {
                        self.stats.connect_error = Some(e);
                        self.set_state(S::Closing);
                    }
                }
            }
            S::Closing if !matches!(self.state, S::Closing | S::Closed) => {
                self.disconnect();
                self.set_state(S::Closing);
            }
            S::Closed | S::Unknown if self.state != S::Closed => {
                self.disconnect();
                self.set_state(S::Closed);
            }
            _ => {}
        }
        let moved = if self.state == S::Connected && self.conn.is_some() {
            self.service()
        } else {
            false
        };
        moved || before != (self.state, self.stats.clone())
    }

    /// Services both rings once; returns whether anything moved.
    pub fn service(&mut self) -> bool {
        let mut moved = self.service_tx();
        moved |= self.take_rx_requests();
        moved |= self.deliver_rx();
        moved
    }

    fn service_tx(&mut self) -> bool {
        if self.hold_tx {
            return false;
        }
        let mut moved = false;
        loop {
            let Some(c) = self.conn.as_mut() else {
                return moved;
            };
            let Some(TxReq(req)) = c.tx.take_request(&c.tx_map) else {
                if c.tx.final_check_for_requests(&c.tx_map) {
                    continue;
                }
                break;
            };
            moved = true;
            self.stats.tx_requests += 1;
            self.tx_partial.push(req);
            if req.flags & NETTXF_MORE_DATA == 0 {
                let frame = core::mem::take(&mut self.tx_partial);
                self.transmit_frame(&frame);
            }
        }
        if moved {
            self.push_tx();
        }
        moved
    }

    /// Reads one frame (netif.h: the first request's size is the total; its
    /// own data is what the later fragments do not cover) and answers every
    /// request.
    fn transmit_frame(&mut self, reqs: &[NetifTxRequest]) {
        let total = reqs.first().map_or(0, |r| usize::from(r.size));
        let rest: usize = reqs.iter().skip(1).map(|r| usize::from(r.size)).sum();
        let mut frame = Vec::with_capacity(total);
        let mut ok = total >= rest;
        for (i, r) in reqs.iter().enumerate() {
            let len = if i == 0 {
                total.saturating_sub(rest)
            } else {
                usize::from(r.size)
            };
            let off = usize::from(r.offset);
            if off + len > PAGE_SIZE {
                ok = false;
                continue;
            }
            let mut buf = vec![0u8; len];
            match self.with_grant(r.gref, Access::ReadOnly, |mem, frame| {
                mem.read(frame, off, &mut buf)
            }) {
                Ok(()) => frame.extend_from_slice(&buf),
                Err(_) => {
                    self.stats.bad_tx_grefs += 1;
                    ok = false;
                }
            }
        }
        if ok {
            self.stats.tx_frames += 1;
            self.sent.push(frame);
        }
        let status = if ok { NETIF_RSP_OKAY } else { NETIF_RSP_ERROR };
        for r in reqs {
            self.respond_tx(r.id, status);
        }
    }

    fn respond_tx(&mut self, id: u16, status: i16) {
        let mut rsp = NetifTxResponse { id, status };
        match self.tx_corrupt.take() {
            // This response is correct; the next one replays its id instead
            // of answering its own request (so the ring indices stay plausible).
            Some(TxCorruption::StaleId) => self.tx_replay = Some(id),
            Some(TxCorruption::Id(i)) => rsp.id = i,
            Some(TxCorruption::Status(s)) => rsp.status = s,
            None => {
                if let Some(old) = self.tx_replay.take() {
                    rsp.id = old;
                }
            }
        }
        let Some(c) = self.conn.as_mut() else { return };
        c.tx.produce_response(&c.tx_map, &TxRsp(rsp));
    }

    fn push_tx(&mut self) {
        if let Some(c) = self.conn.as_mut()
            && c.tx.push_responses_and_check_notify(&c.tx_map)
        {
            self.evt.notify_guest();
        }
    }

    fn ring_frames(&self) -> [Option<u64>; 2] {
        match &self.conn {
            Some(c) => [Some(c.tx_map.gfn), Some(c.rx_map.gfn)],
            None => [None, None],
        }
    }

    /// Takes every posted rx request and audits its grant.
    fn take_rx_requests(&mut self) -> bool {
        let mut moved = false;
        loop {
            let Some(c) = self.conn.as_mut() else {
                return moved;
            };
            let Some(req) = c.rx.take_request(&c.rx_map) else {
                // Idle: ask to be notified of the next request (netback's
                // RING_FINAL_CHECK_FOR_REQUESTS), unless one raced in.
                if c.rx.final_check_for_requests(&c.rx_map) {
                    continue;
                }
                return moved;
            };
            moved = true;
            self.stats.rx_requests += 1;
            let gref = req.0.gref;
            let mapped = self.with_grant(gref, Access::ReadWrite, |_, frame| frame);
            let epoch = self.grants.with_mem(|m| m.epoch());
            let latest = self.grants.with_mem(|m| m.latest_publish(gref));
            let rings = self.ring_frames();
            let failure = match mapped {
                Err(e) => Some(AuditError::Map(e)),
                Ok(_) if latest.is_none_or(|(ep, _)| ep != epoch) => Some(AuditError::OldEpoch),
                Ok(frame) if rings.contains(&Some(frame)) => Some(AuditError::RingPage),
                Ok(frame) => self
                    .rx_pending
                    .iter()
                    .any(|p| p.frame == Some(frame) || p.req.0.gref == gref)
                    .then_some(AuditError::Duplicate),
            };
            if let Some(f) = failure {
                self.stats.bad_rx_grefs += 1;
                self.audit.push((gref, f));
            }
            self.rx_pending.push_back(Posted {
                req,
                frame: mapped.ok(),
            });
        }
    }

    /// Delivers queued packets while enough requests are posted.
    fn deliver_rx(&mut self) -> bool {
        let mut moved = false;
        while let Some(pkt) = self.rx_queue.front() {
            let chunk = pkt
                .chunk
                .clamp(1, PAGE_SIZE - usize::from(pkt.offset).min(PAGE_SIZE - 1));
            let data_slots = pkt.data.len().div_ceil(chunk).max(1);
            let extra_slots = match self.rx_corrupt {
                Some(RxCorruption::EndlessExtras(n)) => usize::from(n),
                Some(RxCorruption::ExtraType(_)) => 1,
                _ => pkt.extras.len(),
            };
            if data_slots + extra_slots > xen_abi::netif::NET_RX_RING_SIZE {
                // Could never be delivered; netback would drop it too.
                self.rx_queue.pop_front();
                continue;
            }
            if self.rx_pending.len() < data_slots + extra_slots {
                break;
            }
            let Some(pkt) = self.rx_queue.pop_front() else {
                break;
            };
            self.deliver(&pkt, chunk, data_slots);
            moved = true;
        }
        if moved
            && let Some(c) = self.conn.as_mut()
            && c.rx.push_responses_and_check_notify(&c.rx_map)
        {
            self.evt.notify_guest();
        }
        moved
    }

    fn deliver(&mut self, pkt: &SimRxPacket, chunk: usize, data_slots: usize) {
        let corrupt = self.rx_corrupt.take();
        let mut extras = pkt.extras.clone();
        match corrupt {
            Some(RxCorruption::ExtraType(t)) => {
                extras = vec![NetifExtraInfo {
                    kind: t,
                    flags: 0,
                    u: [0; 6],
                }]
            }
            Some(RxCorruption::EndlessExtras(n)) => {
                extras = (0..n)
                    .map(|_| NetifExtraInfo {
                        kind: XEN_NETIF_EXTRA_TYPE_HASH,
                        flags: XEN_NETIF_EXTRA_FLAG_MORE,
                        u: [0; 6],
                    })
                    .collect();
            }
            _ => {
                // Chain the given extras: MORE on all but the last.
                let n = extras.len();
                for (i, e) in extras.iter_mut().enumerate() {
                    if i + 1 < n {
                        e.flags |= XEN_NETIF_EXTRA_FLAG_MORE;
                    } else {
                        e.flags &= !XEN_NETIF_EXTRA_FLAG_MORE;
                    }
                }
            }
        }
        for i in 0..data_slots {
            let Some(posted) = self.rx_pending.pop_front() else {
                return;
            };
            let start = i * chunk;
            let end = (start + chunk).min(pkt.data.len());
            let part = pkt.data.get(start..end).unwrap_or(&[]);
            let offset = if i == 0 { pkt.offset } else { 0 };
            let id = posted.req.0.id;
            let status = match self.with_grant(posted.req.0.gref, Access::ReadWrite, |mem, f| {
                mem.write(f, usize::from(offset), part)
            }) {
                Ok(()) => part.len() as i16,
                Err(_) => NETIF_RSP_ERROR,
            };
            let mut flags = if i == 0 { pkt.flags } else { 0 };
            if i == 0 && !extras.is_empty() {
                flags |= NETRXF_EXTRA_INFO;
            }
            if i + 1 < data_slots {
                flags |= NETRXF_MORE_DATA;
            }
            let mut rsp = NetifRxResponse {
                id,
                offset,
                flags,
                status,
            };
            if i == 0 {
                match corrupt {
                    Some(RxCorruption::StaleId) => {
                        rsp.id = self.last_rx_id.unwrap_or(id.wrapping_add(1));
                    }
                    Some(RxCorruption::Id(x)) => rsp.id = x,
                    Some(RxCorruption::Status(s)) => rsp.status = s,
                    Some(RxCorruption::Offset(o)) => rsp.offset = o,
                    _ => {}
                }
            }
            if i + 1 == data_slots && corrupt == Some(RxCorruption::DanglingMoreData) {
                rsp.flags |= NETRXF_MORE_DATA;
            }
            self.last_rx_id = Some(id);
            self.stats.rx_slots += 1;
            if let Some(c) = self.conn.as_mut() {
                c.rx.produce_response(&c.rx_map, &RxRsp::from_response(&rsp));
            }
            if i == 0 {
                for e in &extras {
                    // An extra-info slot consumes a request too.
                    let _ = self.rx_pending.pop_front();
                    self.stats.rx_slots += 1;
                    if let Some(c) = self.conn.as_mut() {
                        c.rx.produce_response(&c.rx_map, &RxRsp::from_extra(e));
                    }
                }
            }
        }
        self.stats.rx_packets += 1;
    }
}

// --- the whole world ------------------------------------------------------------------

/// The driver type the simulation plugs into.
pub type SimNetFront = NetFront<SimPages, SimGrants, SimEvtchn>;

/// A guest (xenstore client, memory, grant table, event channels) and a
/// [`SimNetback`], all wired to one `SimXenstored`.
#[derive(Debug)]
pub struct SimWorld {
    /// The daemon and its ring.
    pub xs_ring: SimRing,
    /// The guest's xenstore connection (what the driver is given).
    pub xs: Xenstore<XsPage, SimPlatform>,
    /// Guest memory.
    pub mem: SimMemory,
    /// The guest's page provider.
    pub pages: SimPages,
    /// The guest's grant table.
    pub grants: SimGrants,
    /// Event channels.
    pub evt: SimEvtchn,
    /// The back end.
    pub back: SimNetback,
}

impl SimWorld {
    /// A world with the vif created as `cfg` says.
    pub fn new(cfg: SimNetConfig) -> Self {
        let xs_ring = SimRing::new(SimXenstored::new(cfg.front_domid), 0);
        let xs = xs_ring.connect();
        let mem = SimMemory::new();
        let pages = SimPages::new(mem.clone());
        let grants = SimGrants::new(mem.clone(), 4);
        let evt = SimEvtchn::new();
        let back = SimNetback::new(
            xs_ring.clone(),
            grants.clone(),
            mem.clone(),
            evt.clone(),
            cfg,
        );
        Self {
            xs_ring,
            xs,
            mem,
            pages,
            grants,
            evt,
            back,
        }
    }

    /// Probes the vif with the driver.
    pub fn probe(&mut self, config: Config) -> Result<SimNetFront, ProbeError> {
        NetFront::new(
            &mut self.xs,
            self.back.cfg.devid,
            self.pages.clone(),
            self.grants.clone(),
            self.evt.clone(),
            config,
        )
    }

    /// Alternates back-end steps and `on_backend_state` until nothing
    /// changes (at most 64 rounds); returns the driver errors seen.
    pub fn pump(&mut self, nf: &mut SimNetFront) -> Vec<NetError> {
        let mut errors = Vec::new();
        for _ in 0..64 {
            let moved = self.back.step();
            let phase = nf.phase();
            if let Err(e) = nf.on_backend_state(&mut self.xs) {
                errors.push(e);
            }
            if !moved && phase == nf.phase() && !self.back.step() {
                break;
            }
        }
        errors
    }

    /// Probes, starts and pumps until connected.
    pub fn connect(&mut self, config: Config) -> SimNetFront {
        let mut nf = match self.probe(config) {
            Ok(nf) => nf,
            Err(e) => panic!("probe failed: {e:?}"),
        };
        if let Err(e) = nf.start(&mut self.xs) {
            panic!("start failed: {e:?}");
        }
        let errors = self.pump(&mut nf);
        assert!(errors.is_empty(), "errors while connecting: {errors:?}");
        assert!(nf.is_up(), "not connected: {:?}", nf.phase());
        nf
    }

    /// Receives every packet the back end can deliver now (servicing it in
    /// between); returns the frames and the packet errors.
    pub fn receive_all(&mut self, nf: &mut SimNetFront) -> (Vec<Vec<u8>>, Vec<NetError>) {
        let mut frames = Vec::new();
        let mut errors = Vec::new();
        let mut idle = 0;
        while idle < 2 {
            let moved = self.back.service();
            match nf.receive(|f| f.to_vec()) {
                Ok(Some(f)) => {
                    frames.push(f);
                    idle = 0;
                }
                Ok(None) => {
                    if moved {
                        idle = 0;
                    } else {
                        idle += 1;
                    }
                }
                Err(e @ NetError::Rx(_)) => {
                    errors.push(e);
                    idle = 0;
                }
                Err(e) => {
                    errors.push(e);
                    break;
                }
            }
        }
        (frames, errors)
    }
}

// --- a byte-driven hostile session (fuzz target body) -----------------------------

/// Runs a session driven by `data` (the `netfront_hostile` fuzz target's
/// body): a connected driver against a back end that, per input byte, delivers
/// good or corrupted packets, writes raw rx/tx response slots, jumps
/// `rsp_prod`, closes, reloads, or the domain is saved and restored; the
/// driver receives, transmits, reclaims, re-arms and reconnects in between.
///
/// Checked after every step (a violation panics): the driver never holds more
/// grants or pages than its buffers and rings need; a fault is sticky (every
/// rx/tx call reports it) until a reconnect; frames delivered are never
/// longer than the largest packet. At the end the driver must reconnect and
/// carry a packet each way.
pub fn hostile_session(data: &[u8]) {
    let config = Config {
        rx_buffers: 8,
        tx_buffers: 4,
        rx_refill_batch: 2,
        ..Config::default()
    };
    let budget = u64::from(config.rx_buffers) + u64::from(config.tx_buffers) + 2;
    let mut w = SimWorld::new(SimNetConfig {
        mtu: Some(b"9000".to_vec()),
        ..SimNetConfig::default()
    });
    let mut nf = w.connect(config);
    let mut it = data.iter().copied();
    let mut next = move || it.next();
    let mut steps = 0;
    let mut clock = 0u64;
    while let Some(op) = next() {
        steps += 1;
        if steps > 400 {
            break;
        }
        let mut arg = [0u8; 8];
        for a in &mut arg {
            *a = next().unwrap_or(0);
        }
        let a16 = u16::from_le_bytes([arg[0], arg[1]]);
        match op % 16 {
            0 => {
                let len = 14 + usize::from(a16) % 9000;
                let mut p = SimRxPacket::new(&vec![arg[2]; len]);
                p.flags = u16::from(arg[3]) & 0x1f;
                p.chunk = 1 + usize::from(arg[4]) * 17;
                p.offset = u16::from(arg[5]) * 16;
                if arg[6] & 1 != 0 {
                    p.extras.push(NetifExtraInfo::from_bytes(&arg));
                }
                w.back.inject(p);
            }
            1 => w.back.push_raw_rx(&[arg]),
            2 => w.back.push_raw_tx(&[[arg[0], arg[1], arg[2], arg[3]]]),
            3 => {
                let ring = if arg[0] & 1 == 0 {
                    RingSel::Rx
                } else {
                    RingSel::Tx
                };
                w.back.jump_rsp_prod(ring, u32::from(arg[1]));
            }
            4 => {
                for _ in 0..64 {
                    match nf.receive(|f| f.len()) {
                        Ok(Some(len)) => assert!(len <= crate::rx::RX_MAX_PACKET),
                        Ok(None) => break,
                        Err(NetError::Rx(_)) => {}
                        Err(_) => break,
                    }
                }
            }
            5 => {
                let len = usize::from(a16) % 10000;
                let _ = nf.transmit(len, |b| b.fill(arg[2]));
            }
            6 => {
                if arg[0] & 1 == 0 {
                    let _ = nf.poll_tx();
                } else {
                    // The tx watchdog, at a clock that only moves forward.
                    clock = clock.saturating_add(u64::from(a16));
                    let _ = nf.check_tx_progress(clock);
                    let _ = nf.tx_watchdog_deadline_ms();
                }
            }
            7 | 8 => {
                w.back.service();
            }
            9 => {
                let c = match arg[0] % 7 {
                    0 => RxCorruption::StaleId,
                    1 => RxCorruption::Id(a16),
                    2 => RxCorruption::Status(i16::from_le_bytes([arg[2], arg[3]])),
                    3 => RxCorruption::Offset(u16::from_le_bytes([arg[2], arg[3]])),
                    4 => RxCorruption::ExtraType(arg[2]),
                    5 => RxCorruption::EndlessExtras(u16::from(arg[2] % 16)),
                    _ => RxCorruption::DanglingMoreData,
                };
                w.back.corrupt_next_rx(c);
            }
            10 => {
                let c = match arg[0] % 3 {
                    0 => TxCorruption::StaleId,
                    1 => TxCorruption::Id(a16),
                    _ => TxCorruption::Status(i16::from_le_bytes([arg[2], arg[3]])),
                };
                w.back.corrupt_next_tx(c);
            }
            11 => {
                let _ = nf.rearm();
            }
            12 => {
                let _ = nf.reconnect(&mut w.xs);
                let _ = w.pump(&mut nf);
            }
            13 => {
                if nf.suspend().is_ok() {
                    w.back.new_domain(None);
                    w.grants.reset_for_resume(&w.pages);
                    w.xs_ring.reconnect(0);
                    let _ = w.xs.resume();
                    let _ = nf.resume(&mut w.xs, true);
                    let _ = w.pump(&mut nf);
                }
            }
            14 => {
                let state = if arg[0] & 1 == 0 {
                    XenbusState::Closing
                } else {
                    XenbusState::Closed
                };
                w.back.drop_connection(state);
                let _ = w.pump(&mut nf);
            }
            _ => {
                if arg[0] & 1 == 0 {
                    w.back.hold_tx(arg[1] & 1 == 0);
                } else {
                    w.back.reload();
                    let _ = w.pump(&mut nf);
                }
            }
        }
        // Invariants.
        let st = w.grants.with_table(|t| t.stats());
        assert!(
            u64::from(st.active) <= budget,
            "grant leak: {st:?} (budget {budget})"
        );
        assert!(
            w.pages.live() <= budget + u64::from(st.deferred),
            "page leak: {} live",
            w.pages.live()
        );
        if let Some(f) = nf.fault() {
            assert_eq!(nf.receive(|_| ()), Err(NetError::Faulted(f)));
            assert_eq!(nf.transmit(60, |_| ()), Err(NetError::Faulted(f)));
        }
    }
    // Recovery: whatever happened, a reconnect to a back end that behaves
    // brings the device back, and a packet passes each way.
    w.back.reset_knobs();
    let _ = nf.reconnect(&mut w.xs);
    let _ = w.pump(&mut nf);
    assert!(
        nf.is_up(),
        "no recovery: {:?} back {:?}",
        nf.phase(),
        w.back.state()
    );
    w.back.take_sent();
    let probe = vec![0x5a; 300];
    w.back.inject(SimRxPacket::new(&probe));
    let (frames, errors) = w.receive_all(&mut nf);
    assert_eq!(frames, vec![probe], "rx does not recover: {errors:?}");
    nf.transmit(300, |b| b.fill(0xa5))
        .unwrap_or_else(|e| panic!("tx does not recover: {e:?}"));
    w.back.service();
    assert_eq!(
        w.back.take_sent(),
        vec![vec![0xa5; 300]],
        "tx does not recover"
    );
    assert!(w.grants.with_table(|t| t.stats().active) as u64 <= budget);
    // Closing ends every grant and returns every page (dropping a driver that
    // still holds grants would leak their pages, by design).
    let _ = nf.close(&mut w.xs);
    let _ = w.pump(&mut nf);
    let st = w.grants.with_table(|t| t.stats());
    assert_eq!(st.active, 0, "grants left after close: {st:?}");
    w.grants.poll_deferred(&w.pages);
    assert_eq!(w.pages.live(), 0, "pages left after close");
}
