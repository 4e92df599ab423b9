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
//! **Hotplug** ([`sync`], when the runtime saw `device/` change): a disk removed
//! by `xl block-detach` closes with its back end; the requests it still held
//! fail with an I/O error (never a hang, never a false success) and it is
//! dropped once its back end vanished, so its export goes away; a disk added by
//! `xl block-attach` is brought up as at boot and exported again. See
//! `docs/BLK.md`.
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

/// How long a disk whose back end shows Closing keeps its connection for the
/// answers to the requests in flight (blkback, told nothing yet, answers
/// them; libxl gives the whole close 10 s).
const CLOSING_GRACE_NS: u64 = 5 * crate::xen::time::NS_PER_SEC;

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
    /// Since when the back end shows Closing while requests are in flight
    /// (their answers are awaited, see [`Disk::await_answers`]).
    closing_since: Option<u64>,
}

/// Finished requests per owner: (tag, result).
type DoneQueues = BTreeMap<u16, VecDeque<(u64, Result<Vec<u8>, DiskError>)>>;

/// The disks.
struct Blk {
    disks: Vec<Disk>,
    /// Finished requests per owner: (tag, result).
    done: DoneQueues,
    /// Whether the NBD service runs (its export lines are printed).
    nbd: bool,
}

/// The disks, once [`start`] found one.
static BLK: Mutex<Option<Blk>> = Mutex::new(None);

/// Brings every `device/vbd/<id>` up and registers the suspend hook. Prints
/// `xenrs blk error: ...` for each disk that cannot be used. `nbd`: the NBD
/// service runs, so each disk's export is announced when it first connects.
/// With no disk yet the (empty) set is kept for disks added later ([`sync`]).
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
    *BLK.lock() = Some(Blk {
        disks,
        done: BTreeMap::new(),
        nbd,
    });
    suspend::register(Box::new(BlkHook));
}

/// The device directory changed: `ids` are the `device/vbd/<id>` listed now.
/// A disk no longer listed acts on its back end's state at its next pass (its
/// back end is gone: the device ends Removed, every request it still held
/// fails with an I/O error, and [`poll`] drops it); an id listed for the first
/// time becomes a disk (`xenrs xenbus: device vbd/<id> added`), exported again
/// once it connects.
pub fn sync(ids: &[u32]) {
    let mut guard = BLK.lock();
    let Some(blk) = guard.as_mut() else {
        return;
    };
    for d in &mut blk.disks {
        if !ids.contains(&d.bf.devid())
            && let Some(w) = d.watch.as_ref()
        {
            w.again();
        }
    }
    for &id in ids {
        if blk.disks.iter().any(|d| d.bf.devid() == id) {
            continue;
        }
        if blk.disks.len() >= MAX_DISKS {
            log::warn!("blk: vbd/{id} added, but {MAX_DISKS} disks are driven already");
            continue;
        }
        crate::println!("xenrs xenbus: device vbd/{id} added");
        match Disk::new(id) {
            Ok(d) => blk.disks.push(d),
            Err(e) => crate::println!("xenrs blk error: vbd/{id}: {e}"),
        }
    }
}

impl Blk {
    /// Drops the disks whose device was removed (after their last
    /// completions were routed); true if there was one.
    fn reap(&mut self) -> bool {
        let mut reaped = false;
        let mut i = 0;
        while i < self.disks.len() {
            let removed = self
                .disks
                .get(i)
                .is_some_and(|d| d.bf.phase() == ::xenbus::Phase::Removed);
            if removed {
                let mut d = self.disks.remove(i);
                if let Some(w) = d.watch.take() {
                    w.cancel();
                }
                crate::println!(
                    "xenrs xenbus: device vbd/{} removed ({} requests failed)",
                    d.bf.devid(),
                    d.bf.stats().failed
                );
                reaped = true;
            } else {
                i += 1;
            }
        }
        reaped
    }
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
            closing_since: None,
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
    fn pump(&mut self, nbd: bool, done: &mut DoneQueues) -> bool {
        let mut busy = false;
        let name = alloc::string::String::from(self.bf.name());
        if self.watch.as_ref().is_some_and(StateWatch::take) {
            busy = true;
            if !self.await_answers() {
                self.closing_since = None;
                match store::with(|xs| self.bf.on_backend_state(xs)) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => crate::println!("xenrs blk error: {name}: back-end state: {e}"),
                    Err(StoreError::Busy) => {
                        if let Some(w) = self.watch.as_ref() {
                            w.again();
                        }
                    }
                    Err(e) => crate::println!("xenrs blk error: {name}: xenstore: {e}"),
                }
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
        if let Some(since) = self.closing_since
            && (self.bf.in_flight() == 0
                || crate::xen::time::now_ns().saturating_sub(since) >= CLOSING_GRACE_NS)
            && let Some(w) = self.watch.as_ref()
        {
            // Answered (or waited long enough): act on the Closing now.
            w.again();
            busy = true;
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

    /// Whether to hold off acting on the back end's state: it shows Closing
    /// while requests are in flight on a live connection. `xl block-detach`
    /// writes blkback's state Closing, but blkback learns of the close only
    /// from our Closed and goes on answering what it took, so the disk keeps
    /// its connection (and every page granted) for those answers, for at most
    /// [`CLOSING_GRACE_NS`]; it posts nothing new meanwhile (the NBD service
    /// sees `Busy`). Then the close goes on and what is still unanswered fails
    /// with an I/O error (its pages stay granted until blkback let go).
    fn await_answers(&mut self) -> bool {
        if !self.bf.is_up() || self.bf.in_flight() == 0 {
            return false;
        }
        let closing = store::read(&self.bf.backend_state_path())
            .ok()
            .and_then(|v| ::xenbus::XenbusState::parse(&v).ok())
            == Some(::xenbus::XenbusState::Closing);
        if !closing {
            return false;
        }
        let now = crate::xen::time::now_ns();
        match self.closing_since {
            None => {
                self.closing_since = Some(now);
                // A wake-up at the end of the grace (the callback does nothing).
                let _ = crate::xen::time::schedule_at(
                    now.saturating_add(CLOSING_GRACE_NS),
                    Box::new(|| {}),
                );
                log::info!(
                    "blk: {}: back end closing; awaiting {} requests in flight",
                    self.bf.name(),
                    self.bf.in_flight()
                );
                true
            }
            Some(since) => now.saturating_sub(since) < CLOSING_GRACE_NS,
        }
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
        if disk.closing_since.is_some() {
            // Nothing new while the answers to what is in flight are awaited.
            return Err((DiskError::Busy, op));
        }
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
    if blk.reap() {
        // A removed disk's id may be listed again already (a quick re-attach).
        crate::xenbus::hotplug::again();
        busy = true;
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

/// Prints every disk's state (`xenrs dump: blk ...`, the status dump asked
/// through `data/dump`). Skipped if the disks are busy (cannot happen from
/// the main loop).
pub fn dump() {
    let Some(guard) = BLK.try_lock() else {
        crate::println!("xenrs dump: blk busy");
        return;
    };
    let Some(blk) = guard.as_ref() else {
        crate::println!("xenrs dump: blk none");
        return;
    };
    for d in &blk.disks {
        let port = d.bf.event_channel();
        let bits = port.and_then(crate::xen::events::port_bits);
        crate::println!(
            "xenrs dump: blk {} phase={:?} up={} fault={:?} closing={:?} routes={} events={} notifies={} port={:?} (pending,masked,marked)={:?} {}",
            d.bf.name(),
            d.bf.phase(),
            d.bf.is_up(),
            d.bf.fault(),
            d.closing_since,
            d.routes.len(),
            // Relaxed: a statistic.
            d.counters.events.load(Ordering::Relaxed),
            d.bf.notifies(),
            port,
            bits,
            d.bf.queue_state()
        );
    }
    for (owner, q) in &blk.done {
        crate::println!("xenrs dump: blk done owner {owner}: {}", q.len());
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
