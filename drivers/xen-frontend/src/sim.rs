//! Generic fakes every driver's tests build on: guest memory, pages, a grant table, event channels (feature `test-utils`).
//!
//! - [`SimMemory`] holds guest page contents by gfn; [`SimPages`] hands out
//!   [`SimPage`]s (owning page handles implementing [`crate::DevicePage`]).
//! - [`SimGrants`] is a shared `GrantTable` over [`SimGrantMem`], which wraps
//!   `grant_table::sim::SimGrantTable` (Xen's side: entry checks, in-use flags
//!   while a back end maps a page), logs every publish with the domain epoch,
//!   and can poison a page's contents when access to it ends, so a driver that
//!   reads a page after ending its grant sees garbage.
//! - [`SimEvtchn`] allocates ports and counts notifications both ways.
//! - [`SimGuest`] is all of them plus a xenstore connection;
//!   [`crate::sim_world!`] pairs one with a class's simulated back end.
//! - [`SimXenbusDevice`] is a back end's xenstore side of a device (the
//!   toolstack's directories, its `state`).
//!
//! Simulated back ends (`netfront::sim::SimNetback`, ...) map pages through
//! these. [`pseudo_random_corpus`] runs a fuzz body under `cargo test`. This
//! is test support: it may panic to fail a test.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
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
use xen_ring::{RingIdx, RingIndex, SharedRing};
use xenbus::XenbusState;
use xenstore::sim::{SimPage as XsPage, SimPlatform, SimRing, SimXenstored};
use xenstore::{Xenstore, XsError};

use crate::platform::{EventChannel, GrantAccess, PageProvider};

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

/// `SharedRing` over one page of a [`SimMemory`], for a type with fields
/// `gfn` and `mem` (a guest's page and a back end's mapping of one).
macro_rules! page_shared_ring {
    ($t:ty) => {
        impl SharedRing for $t {
            fn area_len(&self) -> usize {
                PAGE_SIZE
            }
            fn load(&self, index: RingIndex, _order: Ordering) -> RingIdx {
                let mut b = [0u8; 4];
                self.mem.read(self.gfn, index.offset(), &mut b);
                u32::from_le_bytes(b)
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
    };
}

/// An owning handle on one simulated guest page (deliberately not `Clone`).
#[derive(Debug)]
pub struct SimPage {
    gfn: u64,
    mem: SimMemory,
}

impl SimPage {
    /// The page's frame number.
    pub fn gfn_of(&self) -> u64 {
        self.gfn
    }
}

impl Grantable for SimPage {
    fn gfn(&self) -> u64 {
        self.gfn
    }
}

page_shared_ring!(SimPage);

/// A back end's mapping of a guest page (for the simulated back ring).
#[derive(Clone, Debug)]
pub struct SimMapping {
    gfn: u64,
    mem: SimMemory,
}

impl SimMapping {
    /// A back end's view of page `gfn` of `mem`.
    pub fn new(mem: &SimMemory, gfn: u64) -> Self {
        Self {
            gfn,
            mem: mem.clone(),
        }
    }

    /// The mapped frame.
    pub fn gfn(&self) -> u64 {
        self.gfn
    }
}

page_shared_ring!(SimMapping);

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

    /// Takes back a page (as `free_page` does; also for pages a grant table released).
    pub fn give_back(&self, page: SimPage) {
        let mut s = self.0.borrow_mut();
        s.frees += 1;
        s.free.push(page.gfn);
    }
}

impl PageProvider for SimPages {
    type Page = SimPage;
    fn alloc_page(&mut self) -> Option<SimPage> {
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
        Some(SimPage {
            gfn,
            mem: s.mem.clone(),
        })
    }
    fn free_page(&mut self, page: SimPage) {
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
pub type SimTable = GrantTable<SimGrantMem, SimPage>;

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

    /// Back end `domid` maps `gref` with `access` (Xen's checks); the frame
    /// the entry names.
    pub fn backend_map(
        &self,
        domid: DomId,
        gref: GrantRef,
        access: Access,
    ) -> Result<u64, SimError> {
        self.with_mem(|m| {
            m.inner.backend_map(domid, gref, access)?;
            m.inner
                .entry(gref)
                .map(|e| u64::from(e.frame))
                .ok_or(SimError::BadRef)
        })
    }

    /// Back end `domid` undoes one `access` mapping of `gref`.
    pub fn backend_unmap(
        &self,
        domid: DomId,
        gref: GrantRef,
        access: Access,
    ) -> Result<(), SimError> {
        self.with_mem(|m| m.inner.backend_unmap(domid, gref, access))
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
    type Page = SimPage;
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

    /// A back end in `backend` binds `port`; `Err(port)` unless the guest
    /// allocated it for that domain.
    pub fn bind(&self, port: EvtchnPort, backend: DomId) -> Result<(), EvtchnPort> {
        let mut s = self.0.borrow_mut();
        match s.ports.get(&port) {
            Some(&remote) if remote == backend => {
                s.bound.insert(port);
                Ok(())
            }
            _ => Err(port),
        }
    }

    /// The back end unbinds `port`.
    pub fn unbind(&self, port: EvtchnPort) {
        self.0.borrow_mut().bound.remove(&port);
    }

    /// The back end notifies the guest.
    pub fn notify_guest(&self) {
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
    fn peer_bound(&mut self, port: EvtchnPort) -> Option<bool> {
        let s = self.0.borrow();
        s.ports.contains_key(&port).then(|| s.bound.contains(&port))
    }
}

// --- fuzz bodies under `cargo test` -----------------------------------------------------

/// Runs `body` over a deterministic pseudo-random corpus: `count` inputs of
/// 0, `step`, 2 * `step`, ... bytes, all from one xorshift64 stream seeded with
/// `seed` (a fuzz target's body exercised by a plain `cargo test`).
pub fn pseudo_random_corpus(seed: u64, count: usize, step: usize, mut body: impl FnMut(&[u8])) {
    let mut x = seed;
    for len in 0..count {
        let data: Vec<u8> = (0..len * step)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        body(&data);
    }
}

// --- a guest, and a back end's xenstore side ------------------------------------------

/// A whole simulated guest, shared with one back end: a xenstore connection
/// to a `SimXenstored`, memory, pages, a grant table and event channels. A
/// test hands the pieces to the driver; a simulated back end keeps handles
/// on them.
#[derive(Debug)]
pub struct SimGuest {
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
}

impl SimGuest {
    /// Domain `domid` connected to a fresh `SimXenstored`, with a grant table
    /// that may grow to `max_grant_frames`.
    pub fn new(domid: u16, max_grant_frames: u32) -> Self {
        let xs_ring = SimRing::new(SimXenstored::new(domid), 0);
        let xs = xs_ring.connect();
        let mem = SimMemory::new();
        Self {
            xs_ring,
            xs,
            pages: SimPages::new(mem.clone()),
            grants: SimGrants::new(mem.clone(), max_grant_frames),
            mem,
            evt: SimEvtchn::new(),
        }
    }

    /// Runs a driver's constructor on the guest's xenstore connection and
    /// (clones of) its pages, grant table and event channels.
    pub fn probe_with<T>(
        &mut self,
        new: impl FnOnce(&mut Xenstore<XsPage, SimPlatform>, SimPages, SimGrants, SimEvtchn) -> T,
    ) -> T {
        new(
            &mut self.xs,
            self.pages.clone(),
            self.grants.clone(),
            self.evt.clone(),
        )
    }

    /// The guest kernel's side of a restore into a new domain, once Xen's is
    /// done: `SimGrants::reset_for_resume`, the xenstore ring reconnected
    /// and the client resumed. The drivers' resume comes next.
    pub fn restore(&mut self) -> Result<(), XsError> {
        self.grants.reset_for_resume(&self.pages);
        self.resume_xenstore()
    }

    /// The xenstore ring reconnected and the client resumed (a restore's
    /// step after the grant table's).
    pub fn resume_xenstore(&mut self) -> Result<(), XsError> {
        self.xs_ring.reconnect(0);
        self.xs.resume()
    }
}

/// Defines a simulation world: a public [`SimGuest`] `guest`, whose pieces
/// are the world's through `Deref` (`w.xs`, `w.pages`, ...), and a public
/// back end `back`, with `new(cfg)` creating the guest (domain
/// `cfg.front_domid`, a grant table of up to `grant_frames` frames) and the
/// back end (`Back::new(&guest, cfg)`).
#[macro_export]
macro_rules! sim_world {
    ($(#[$doc:meta])* $vis:vis struct $name:ident($back:ty, $cfg:ty, grant_frames = $frames:expr);) => {
        $(#[$doc])*
        #[derive(Debug)]
        $vis struct $name {
            /// The guest.
            pub guest: $crate::sim::SimGuest,
            /// The back end.
            pub back: $back,
        }

        impl core::ops::Deref for $name {
            type Target = $crate::sim::SimGuest;
            fn deref(&self) -> &Self::Target {
                &self.guest
            }
        }

        impl core::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.guest
            }
        }

        impl $name {
            /// A world with the device created as `cfg` says.
            pub fn new(cfg: $cfg) -> Self {
                let guest = $crate::sim::SimGuest::new(cfg.front_domid, $frames);
                let back = <$back>::new(&guest, cfg);
                Self { guest, back }
            }
        }
    };
}

/// A simulated back end's xenstore side of one device: the front- and
/// back-end directories the toolstack creates, and the back end's `state`.
#[derive(Debug)]
pub struct SimXenbusDevice {
    xs: SimRing,
    class: &'static str,
    front_domid: u16,
    backend_domid: DomId,
    front_dir: String,
    back_dir: String,
    state: XenbusState,
}

impl SimXenbusDevice {
    /// Device `devid` of `class` (`vif`, `vbd`) of domain `front_domid`,
    /// served from `backend_domid`; nothing written yet, state Initialising.
    pub fn new(
        xs: SimRing,
        class: &'static str,
        front_domid: u16,
        backend_domid: DomId,
        devid: u32,
    ) -> Self {
        let mut d = Self {
            xs,
            class,
            front_domid,
            backend_domid,
            front_dir: format!("/local/domain/{front_domid}/device/{class}/{devid}"),
            back_dir: String::new(),
            state: XenbusState::Initialising,
        };
        d.move_backend(backend_domid, devid);
        d
    }

    /// The back-end directory moves to `backend_domid`'s tree, device `devid`
    /// (after [`destroy`](Self::destroy), before [`create`](Self::create)).
    pub fn move_backend(&mut self, backend_domid: DomId, devid: u32) {
        self.backend_domid = backend_domid;
        self.back_dir = format!(
            "/local/domain/{backend_domid}/backend/{}/{}/{devid}",
            self.class, self.front_domid
        );
    }

    /// The toolstack creates the device: the front end's `backend`,
    /// `backend-id`, the `front` nodes, `state` Initialising; the back end's
    /// `frontend`, `frontend-id`, the `back` nodes.
    pub fn create(&self, front: &[(&str, &[u8])], back: &[(&str, &[u8])]) {
        let (fd, bd) = (&self.front_dir, &self.back_dir);
        self.xs.with_sim(|s| {
            s.write(&format!("{fd}/backend"), bd.as_bytes());
            s.write(
                &format!("{fd}/backend-id"),
                format!("{}", self.backend_domid).as_bytes(),
            );
            for (leaf, v) in front {
                s.write(&format!("{fd}/{leaf}"), v);
            }
            s.write(&format!("{fd}/state"), b"1");
            s.write(&format!("{bd}/frontend"), fd.as_bytes());
            s.write(
                &format!("{bd}/frontend-id"),
                format!("{}", self.front_domid).as_bytes(),
            );
            for (leaf, v) in back {
                s.write(&format!("{bd}/{leaf}"), v);
            }
        });
    }

    /// The toolstack removes both directories.
    pub fn destroy(&self) {
        self.xs.with_sim(|s| {
            s.rm(&self.front_dir);
            s.rm(&self.back_dir);
        });
    }

    /// The daemon.
    pub fn xs(&self) -> &SimRing {
        &self.xs
    }

    /// The front end's directory.
    pub fn front_dir(&self) -> &str {
        &self.front_dir
    }

    /// The back end's directory.
    pub fn back_dir(&self) -> &str {
        &self.back_dir
    }

    /// The back end's state (as last written).
    pub fn state(&self) -> XenbusState {
        self.state
    }

    /// Writes the back end's `state`.
    pub fn set_state(&mut self, s: XenbusState) {
        self.state = s;
        self.write_back("state", s.as_str().as_bytes());
    }

    /// A front-end node's value.
    pub fn front_node(&self, leaf: &str) -> Option<Vec<u8>> {
        self.xs
            .with_sim(|s| s.read(&format!("{}/{leaf}", self.front_dir)))
    }

    /// The front end's `state` (Unknown if absent or malformed).
    pub fn front_state(&self) -> XenbusState {
        self.front_node("state")
            .and_then(|v| XenbusState::parse(&v).ok())
            .unwrap_or(XenbusState::Unknown)
    }

    /// A back-end node's value.
    pub fn back_node(&self, leaf: &str) -> Option<Vec<u8>> {
        self.xs
            .with_sim(|s| s.read(&format!("{}/{leaf}", self.back_dir)))
    }

    /// Writes a back-end node.
    pub fn write_back(&self, leaf: &str, value: &[u8]) {
        self.xs
            .with_sim(|s| s.write(&format!("{}/{leaf}", self.back_dir), value));
    }

    /// Removes a back-end node.
    pub fn rm_back(&self, leaf: &str) {
        self.xs
            .with_sim(|s| s.rm(&format!("{}/{leaf}", self.back_dir)));
    }
}
