//! Virtual disks: every `device/vbd/<id>` as a blkfront, driven by the main loop and exported to the NBD service.
//!
//! Sources: `xen/include/public/io/blkif.h` (via the `blkfront` crate), Xen's
//! `docs/misc/xenstore-paths.pandoc` (`device/vbd/<id>`). See `docs/BLK.md`.
//!
//! **Bring-up** ([`start`], after the core services, before the network): each
//! `device/vbd/<id>` (in id order) becomes a [`Disk`]: blkfront probes it, its back
//! end's `state` node is watched ([`StateWatch`]), the xenbus handshake starts.
//!
//! **Driving** ([`poll`], from the main loop after every wake-up): back-end state
//! changes, connection up/down, fault recovery (a reconnect), responses, and the
//! completions routed to whoever submitted them. When nothing moved the rings are
//! re-armed; the back end's event wakes the loop.
//!
//! **The NBD service's view** ([`with_disks`]): the disks as `nbd_server::Disks`
//! (export id = device id). Requests a disk cannot take now are `Busy` (the service
//! retries); answers come back per owner.
//!
//! **Suspend/resume** ([`BlkHook`]): cancelled, nothing changes; new domain, every
//! disk reconnects to its new back end, and the requests that were in flight are
//! posted again on the new ring (blkfront keeps them).

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use blkfront::{BlkError, BlkFront, Config as BlkConfig, Op, ReqId, SubmitError};
use nbd_server::{DiskError, DiskOp, Disks, ExportInfo};
use spin::Mutex;

use crate::xen::store::{self, StoreError};
use crate::xen::suspend::{self, ResumeMode, SuspendHook};
use crate::xenbus::platform::{EvtchnCounters, KernelEvtchn, KernelGrants, KernelPages};
use crate::xenbus::watch::StateWatch;

/// The blkfront type the kernel runs.
pub type KernelBlkFront = BlkFront<KernelPages, KernelGrants, KernelEvtchn>;

/// Most disks driven (further ones are reported and ignored).
const MAX_DISKS: usize = 8;
/// Heap left free when a disk is brought up.
const HEAP_RESERVE: usize = 512 * 1024;
/// Completions kept per owner before the oldest owner queue stops growing
/// (the NBD service bounds what it submits; this is a second bound).
const MAX_DONE_PER_OWNER: usize = 1024;

/// One virtual disk.
struct Disk {
    /// The front end.
    bf: KernelBlkFront,
    /// The watch on `<backend>/state`.
    watch: Option<StateWatch>,
    /// Event-channel counters.
    counters: Arc<EvtchnCounters>,
    /// Event-channel failures already reported.
    failures_reported: u64,
    /// Up at the last poll.
    was_up: bool,
    /// A fault was seen and a reconnect requested.
    reconnecting: bool,
    /// The export line was printed.
    exported: bool,
    /// Who submitted each request: (owner, tag).
    routes: BTreeMap<ReqId, (u16, u64)>,
    /// Times the connection came up.
    connects: u64,
}

/// The disks.
struct Blk {
    disks: Vec<Disk>,
    /// Finished requests per owner: (tag, result).
    done: BTreeMap<u16, VecDeque<(u64, Result<Vec<u8>, DiskError>)>>,
    /// Whether the NBD service runs (its export lines are printed).
    nbd: bool,
}

/// The disks, once [`start`] found one.
static BLK: Mutex<Option<Blk>> = Mutex::new(None);

/// Brings every `device/vbd/<id>` up and registers the suspend hook. Prints
/// `xenrs blk error: ...` for each disk that cannot be used. `nbd`: the NBD
/// service runs, so each disk's export is announced when it first connects.
pub fn start(nbd: bool) {
    let ids = match crate::xenbus::devices::ids("vbd") {
        Ok(ids) => ids,
        Err(e) => {
            crate::println!("xenrs blk error: listing device/vbd: {e}");
            return;
        }
    };
    if ids.is_empty() {
        log::info!("blk: no disk");
        return;
    }
    if ids.len() > MAX_DISKS {
        crate::println!(
            "xenrs blk error: {} disks; only the first {MAX_DISKS} are used",
            ids.len()
        );
    }
    let mut disks = Vec::new();
    for &id in ids.iter().take(MAX_DISKS) {
        match Disk::new(id) {
            Ok(d) => disks.push(d),
            Err(e) => crate::println!("xenrs blk error: vbd/{id}: {e}"),
        }
    }
    if disks.is_empty() {
        return;
    }
    *BLK.lock() = Some(Blk {
        disks,
        done: BTreeMap::new(),
        nbd,
    });
    suspend::register(Box::new(BlkHook));
}

/// Why a disk could not be brought up.
enum DiskSetupError {
    NoGrantTable,
    Memory(usize),
    Store(StoreError),
    Probe(blkfront::ProbeError),
    Start(blkfront::Error),
}

impl core::fmt::Display for DiskSetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DiskSetupError::NoGrantTable => f.write_str("the grant table is not set up"),
            DiskSetupError::Memory(free) => {
                write!(f, "{free} heap bytes free, not enough for a disk")
            }
            DiskSetupError::Store(e) => write!(f, "xenstore: {e}"),
            DiskSetupError::Probe(e) => write!(f, "probing the device: {e}"),
            DiskSetupError::Start(e) => write!(f, "starting the xenbus handshake: {e}"),
        }
    }
}

impl Disk {
    fn new(id: u32) -> Result<Disk, DiskSetupError> {
        let (_, heap_free) = crate::mm::memory::heap_usage();
        if heap_free < HEAP_RESERVE {
            return Err(DiskSetupError::Memory(heap_free));
        }
        let grants = KernelGrants::new().ok_or(DiskSetupError::NoGrantTable)?;
        let counters = Arc::new(EvtchnCounters::default());
        let evtchn = KernelEvtchn::new(counters.clone());
        let bf = store::with(|xs| {
            BlkFront::new(
                xs,
                id,
                KernelPages::default(),
                grants,
                evtchn,
                BlkConfig::default(),
            )
        })
        .map_err(DiskSetupError::Store)?
        .map_err(DiskSetupError::Probe)?;
        let watch = StateWatch::new(&bf.backend_state_path()).map_err(DiskSetupError::Store)?;
        let mut disk = Disk {
            bf,
            watch: Some(watch),
            counters,
            failures_reported: 0,
            was_up: false,
            reconnecting: false,
            exported: false,
            routes: BTreeMap::new(),
            connects: 0,
        };
        let started = store::with(|xs| disk.bf.start(xs))
            .map_err(DiskSetupError::Store)
            .and_then(|r| r.map_err(DiskSetupError::Start));
        if let Err(e) = started {
            if let Some(w) = disk.watch.take() {
                w.cancel();
            }
            return Err(e);
        }
        Ok(disk)
    }

    /// One pass: back-end state, connection changes, faults, responses.
    /// Returns whether anything moved.
    fn pump(
        &mut self,
        nbd: bool,
        done: &mut BTreeMap<u16, VecDeque<(u64, Result<Vec<u8>, DiskError>)>>,
    ) -> bool {
        let mut busy = false;
        let name = alloc::string::String::from(self.bf.name());
        if let Some(watch) = self.watch.as_ref()
            && watch.take()
        {
            busy = true;
            match store::with(|xs| self.bf.on_backend_state(xs)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => crate::println!("xenrs blk error: {name}: back-end state: {e}"),
                Err(StoreError::Busy) => watch.again(),
                Err(e) => crate::println!("xenrs blk error: {name}: xenstore: {e}"),
            }
        }
        let ms = crate::xen::time::now_ns() / 1_000_000;
        if self.bf.recovery_at().is_some_and(|t| t <= ms) {
            // A failed setup or state write, retried after its back-off (checked on
            // every wake-up of the main loop).
            busy = true;
            if let Ok(Err(e)) = store::with(|xs| self.bf.poll_recovery(xs, ms)) {
                crate::println!("xenrs blk error: {name}: retry: {e}");
            }
        }
        self.check_connection(nbd);
        match self.bf.poll() {
            Ok(n) => busy |= n > 0,
            // Reported and answered with a reconnect by the next check.
            Err(_) => busy = true,
        }
        self.check_connection(nbd);
        while let Some(c) = self.bf.take_completion() {
            busy = true;
            let Some((owner, tag)) = self.routes.remove(&c.id) else {
                continue;
            };
            let result = c.result.map_err(|e| match e {
                BlkError::Io | BlkError::Disconnected => DiskError::Io,
                BlkError::NotSupported => DiskError::Unsupported,
            });
            let q = done.entry(owner).or_default();
            if q.len() < MAX_DONE_PER_OWNER {
                q.push_back((tag, result));
            }
        }
        // Relaxed: a statistic.
        let failures = self.counters.failures.load(Ordering::Relaxed);
        if failures > self.failures_reported {
            crate::println!(
                "xenrs blk error: {}: {} event-channel operations failed",
                self.bf.name(),
                failures - self.failures_reported
            );
            self.failures_reported = failures;
        }
        busy
    }

    /// Notices the connection coming up or going down; recovers from faults.
    fn check_connection(&mut self, nbd: bool) {
        let up = self.bf.is_up();
        if up && !self.was_up {
            self.connects += 1;
            self.reconnecting = false;
            if let Some(info) = self.bf.info() {
                crate::println!(
                    "xenrs blk: {} vbd/{} sectors={} sector-size={} ro={} backend={} features={}",
                    self.bf.name(),
                    self.bf.devid(),
                    info.sectors,
                    info.sector_size,
                    u8::from(info.read_only),
                    self.bf.backend_id(),
                    self.bf.features()
                );
                if nbd && !self.exported {
                    self.exported = true;
                    crate::println!(
                        "xenrs nbd: export {} size={} ro={}",
                        self.bf.name(),
                        info.size_bytes(),
                        u8::from(info.read_only)
                    );
                }
            }
        } else if !up && self.was_up {
            log::info!("blk: {} down (phase {:?})", self.bf.name(), self.bf.phase());
        }
        self.was_up = up;
        if let Some(fault) = self.bf.fault()
            && !self.reconnecting
        {
            self.reconnecting = true;
            // Counted against the fault budget (xen_frontend::recovery): over it the
            // disk is broken instead of reconnecting again and again.
            let ms = crate::xen::time::now_ns() / 1_000_000;
            match store::with(|xs| self.bf.reconnect_after_fault(xs, ms)) {
                Ok(Err(blkfront::Error::Broken(why))) => crate::println!(
                    "xenrs blk error: {}: back end broke the ring protocol ({fault}); {why}: device broken, not reconnecting",
                    self.bf.name()
                ),
                Ok(Ok(())) => crate::println!(
                    "xenrs blk error: {}: back end broke the ring protocol ({fault}); reconnecting",
                    self.bf.name()
                ),
                Ok(Err(e)) => {
                    crate::println!("xenrs blk error: {}: reconnect: {e}", self.bf.name())
                }
                Err(e) => {
                    self.reconnecting = false;
                    crate::println!(
                        "xenrs blk error: {}: reconnect: xenstore: {e}",
                        self.bf.name()
                    )
                }
            }
        }
    }

    /// What the NBD service sees of this disk, once its size is known.
    fn export(&self) -> Option<ExportInfo> {
        let info = self.bf.info()?;
        if self.bf.is_gone() {
            return None;
        }
        let f = self.bf.features();
        Some(ExportInfo {
            id: self.bf.devid() as usize,
            name: alloc::string::String::from(self.bf.name()),
            size: info.size_bytes(),
            read_only: info.read_only,
            can_flush: f.flush || f.barrier,
            can_fua: true,
            can_trim: f.discard.is_some(),
        })
    }
}

impl Disks for Blk {
    fn exports(&self) -> Vec<ExportInfo> {
        self.disks.iter().filter_map(Disk::export).collect()
    }

    fn submit(
        &mut self,
        owner: u16,
        tag: u64,
        export: usize,
        offset: u64,
        op: DiskOp,
    ) -> Result<(), (DiskError, DiskOp)> {
        let Some(disk) = self
            .disks
            .iter_mut()
            .find(|d| d.bf.devid() as usize == export)
        else {
            return Err((DiskError::Gone, op));
        };
        let op = match op {
            DiskOp::Read { len } => Op::Read { len },
            DiskOp::Write { data, fua } => Op::Write { data, fua },
            DiskOp::Flush => Op::Flush,
            DiskOp::Trim { len } => Op::Discard { len },
            DiskOp::WriteZeroes { len, fua } => Op::WriteZeroes { len, fua },
        };
        let id = match disk.bf.try_submit(offset, op) {
            Ok(id) => id,
            Err((e, op)) => {
                let e = match e {
                    SubmitError::ReadOnly => DiskError::ReadOnly,
                    SubmitError::Unsupported => DiskError::Unsupported,
                    SubmitError::OutOfRange | SubmitError::TooLarge => DiskError::OutOfRange,
                    SubmitError::Busy | SubmitError::NotReady => DiskError::Busy,
                    SubmitError::Gone => DiskError::Gone,
                };
                // Handed back unchanged (Busy is retried by the service).
                let op = match op {
                    Op::Read { len } => DiskOp::Read { len },
                    Op::Write { data, fua } => DiskOp::Write { data, fua },
                    Op::Flush => DiskOp::Flush,
                    Op::Discard { len } => DiskOp::Trim { len },
                    Op::WriteZeroes { len, fua } => DiskOp::WriteZeroes { len, fua },
                };
                return Err((e, op));
            }
        };
        disk.routes.insert(id, (owner, tag));
        Ok(())
    }

    fn poll_completion(&mut self, owner: u16) -> Option<(u64, Result<Vec<u8>, DiskError>)> {
        self.done.get_mut(&owner).and_then(VecDeque::pop_front)
    }
}

/// Runs `f` on the disks as the NBD service sees them (none if there is no
/// disk). Must not be called from inside [`poll`].
pub fn with_disks<R>(f: impl FnOnce(&mut dyn Disks) -> R) -> R {
    let mut guard = BLK.lock();
    match guard.as_mut() {
        Some(blk) => f(blk),
        None => f(&mut nbd_server::NoDisks),
    }
}

/// One pass of the disks' work; called by the main loop after every wake-up.
/// Returns whether anything moved (then the loop must not sleep); when
/// nothing did, the rings are re-armed.
pub fn poll() -> bool {
    let Some(mut guard) = BLK.try_lock() else {
        return false;
    };
    let Some(blk) = guard.as_mut() else {
        return false;
    };
    let mut busy = false;
    let nbd = blk.nbd;
    for d in &mut blk.disks {
        busy |= d.pump(nbd, &mut blk.done);
    }
    if !busy {
        for d in &mut blk.disks {
            busy |= d.bf.rearm();
        }
    }
    busy
}

/// Logs every disk's counters (info level; once per suspend).
pub fn log_stats() {
    if let Some(blk) = BLK.lock().as_ref() {
        for d in &blk.disks {
            let s = d.bf.stats();
            log::info!(
                "blk: {}: {} done, {} failed, {} posted ({} indirect, {} reposted), {} B read, {} B written, {} flushes, {} errors, {} notifies, {} events, {} connects, {} outstanding",
                d.bf.name(),
                s.completed,
                s.failed,
                s.posted,
                s.indirect,
                s.reposted,
                s.read_bytes,
                s.written_bytes,
                s.flushes,
                s.errors,
                d.bf.notifies(),
                // Relaxed: a statistic.
                d.counters.events.load(Ordering::Relaxed),
                d.connects,
                d.bf.outstanding()
            );
        }
    }
}

/// The disks' suspend hook (see the module docs).
pub struct BlkHook;

impl SuspendHook for BlkHook {
    fn name(&self) -> &'static str {
        "blk"
    }

    fn suspend(&mut self) {
        log_stats();
        if let Some(blk) = BLK.lock().as_mut() {
            for d in &mut blk.disks {
                if let Err(e) = d.bf.suspend() {
                    crate::println!("xenrs blk error: {}: suspend: {e}", d.bf.name());
                }
            }
        }
    }

    fn resume(&mut self, mode: ResumeMode) {
        let new_domain = mode == ResumeMode::NewDomain;
        if let Some(blk) = BLK.lock().as_mut() {
            for d in &mut blk.disks {
                match store::with(|xs| d.bf.resume(xs, new_domain)) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => crate::println!("xenrs blk error: {}: resume: {e}", d.bf.name()),
                    Err(e) => {
                        crate::println!("xenrs blk error: {}: resume: xenstore: {e}", d.bf.name())
                    }
                }
                if new_domain {
                    d.was_up = false;
                    let path = d.bf.backend_state_path();
                    let moved = match d.watch.as_mut() {
                        Some(w) => w.follow(&path),
                        None => StateWatch::new(&path).map(|w| d.watch = Some(w)),
                    };
                    if let Err(e) = moved {
                        crate::println!(
                            "xenrs blk error: {}: watching the back end: {e}",
                            d.bf.name()
                        );
                    }
                }
            }
        }
    }
}
