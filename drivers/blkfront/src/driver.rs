//! [`BlkFront`]: one virtual disk on the shared front-end runtime; [`Blkif`] is what blkif adds (negotiation, the request engine).

use alloc::format;
use alloc::string::String;

use grant_table::Access;
use xen_abi::blkif::{VDISK_CDROM, VDISK_READONLY, VDISK_REMOVABLE, XEN_IO_PROTO_ABI_X86_64};
use xen_abi::event_channel::EvtchnPort;
use xen_frontend::nodes::{parse_u64, read_flag, read_u32_or, read_u64_or};
use xen_frontend::{
    Backend, Device, Driver, EventChannel, GrantAccess, Held, Nodes, PageProvider, Resources,
    SetupError, XenstoreAccess,
};
use xenbus::{Handshake, Phase};
use xenstore::TxId;

use crate::error::{BlkError, Error, Fault, ProbeError, SubmitError};
use crate::queue::{BlkStats, Completion, Limits, Op, Queue, QueueState, ReqId};
use crate::wire;

/// Largest ring order this driver accepts (`2^4` pages, 512 slots).
pub const MAX_RING_ORDER: u8 = 4;
/// Segments one indirect page holds; this driver uses at most one indirect
/// page per request.
pub const MAX_INDIRECT_SEGMENTS: u16 = xen_abi::blkif::BLKIF_SEGS_PER_INDIRECT_FRAME as u16;

/// Tuning of a [`BlkFront`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Bounce pages granted to the back end for data (the most bytes in
    /// flight is this many pages), 1..=4096.
    pub pool_pages: u16,
    /// Largest ring order asked for (`ring-page-order`), at most
    /// [`MAX_RING_ORDER`]; the back end's `max-ring-page-order` may lower it.
    pub max_ring_order: u8,
    /// Most indirect segments per request (0: direct requests only), at most
    /// [`MAX_INDIRECT_SEGMENTS`]; the back end may lower it.
    pub max_indirect_segments: u16,
    /// Pages kept for indirect requests (each in-flight indirect request
    /// holds one).
    pub indirect_pages: u16,
    /// Largest request a caller may submit.
    pub max_request_bytes: u32,
    /// Most requests queued or in flight.
    pub max_queued: u16,
    /// Attempts of the xenstore transaction that publishes the ring.
    pub xs_attempts: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            pool_pages: 128,
            max_ring_order: 2,
            max_indirect_segments: 64,
            indirect_pages: 8,
            max_request_bytes: 1024 * 1024,
            max_queued: 64,
            xs_attempts: 16,
        }
    }
}

/// What the back end says about the disk (`sectors`, `info`, `sector-size`,
/// `physical-sector-size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DiskInfo {
    /// Size in 512-byte sectors (blkif counts in 512 bytes whatever the
    /// sector size).
    pub sectors: u64,
    /// Logical sector size in bytes: requests are multiples of it.
    pub sector_size: u32,
    /// Physical sector size in bytes.
    pub physical_sector_size: u32,
    /// `VDISK_READONLY`.
    pub read_only: bool,
    /// `VDISK_REMOVABLE`.
    pub removable: bool,
    /// `VDISK_CDROM`.
    pub cdrom: bool,
}

impl DiskInfo {
    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.sectors.saturating_mul(512)
    }
}

/// `feature-discard` and its parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Discard {
    /// `discard-granularity` in bytes (0: the sector size).
    pub granularity: u32,
    /// `discard-alignment` in bytes.
    pub alignment: u32,
    /// `discard-secure`.
    pub secure: bool,
}

/// What the current connection negotiated (read afresh on every connect).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Features {
    /// Ring order in use (`2^order` pages).
    pub ring_order: u8,
    /// Indirect segments per request in use (0: none).
    pub indirect_segments: u16,
    /// `feature-flush-cache`.
    pub flush: bool,
    /// `feature-barrier`.
    pub barrier: bool,
    /// `feature-discard`, if offered.
    pub discard: Option<Discard>,
    /// Both ends offer `feature-persistent` (our pool pages stay mapped).
    pub persistent: bool,
}

impl core::fmt::Display for Features {
    /// `flush,barrier,discard,persistent,indirect=N,ring-order=N` (the parts
    /// that apply), or `none`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        let mut part = |f: &mut core::fmt::Formatter<'_>, s: core::fmt::Arguments<'_>| {
            let sep = if first { "" } else { "," };
            first = false;
            write!(f, "{sep}{s}")
        };
        if self.flush {
            part(f, format_args!("flush"))?;
        }
        if self.barrier {
            part(f, format_args!("barrier"))?;
        }
        if self.discard.is_some() {
            part(f, format_args!("discard"))?;
        }
        if self.persistent {
            part(f, format_args!("persistent"))?;
        }
        if self.indirect_segments > 0 {
            part(f, format_args!("indirect={}", self.indirect_segments))?;
        }
        if self.ring_order > 0 {
            part(f, format_args!("ring-order={}", self.ring_order))?;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// The Linux name of virtual disk `devid` (`xen-blkfront.c`'s scheme): the
/// Xen major 202 (`(202 << 8) | (disk << 4) | partition`) and the extended
/// form (`1 << 28 | disk << 8 | partition`) give `xvda`, `xvdb`, ... `xvdaa`;
/// anything else is `vbd<devid>`.
pub fn disk_name(devid: u32) -> String {
    let disk = if devid & (1 << 28) != 0 {
        Some((devid >> 8) & 0xf_ffff)
    } else if devid >> 8 == 202 {
        Some((devid & 0xff) >> 4)
    } else {
        None
    };
    let Some(mut n) = disk else {
        return format!("vbd{devid}");
    };
    // Bijective base 26: a..z, aa..zz, ...
    let mut letters = [0u8; 8];
    let mut at = letters.len();
    loop {
        at -= 1;
        if let Some(slot) = letters.get_mut(at) {
            *slot = b'a' + (n % 26) as u8;
        }
        if n < 26 || at == 0 {
            break;
        }
        n = n / 26 - 1;
    }
    let tail = letters.get(at..).unwrap_or(&[]);
    format!("xvd{}", core::str::from_utf8(tail).unwrap_or("?"))
}

/// What blkif adds to the shared runtime: negotiation, the disk's facts, the
/// request engine, the sticky fault.
pub struct Blkif<Pg> {
    config: Config,
    queue: Queue<Pg>,
    info: Option<DiskInfo>,
    features: Features,
    fault: Option<Fault>,
}

impl<Pg: xen_frontend::DevicePage> Blkif<Pg> {
    /// Every page the connection grants: the pool, then the indirect pages.
    fn pages_mut(&mut self) -> impl Iterator<Item = &mut Held<Pg>> {
        self.queue
            .pool
            .iter_mut()
            .chain(self.queue.indirect_pages.iter_mut())
    }

    /// Ends every page's grant (pages kept as spares, or deferred).
    fn release_pages<P, G, E>(&mut self, io: &mut Resources<P, G, E>)
    where
        P: PageProvider<Page = Pg>,
        G: GrantAccess<Page = Pg>,
        E: EventChannel,
    {
        if let Some(r) = self.queue.ring.take() {
            io.end_multi_page_ring(r);
        }
        for h in self.pages_mut() {
            io.release_held(h);
        }
    }

    fn limits(&self) -> Limits {
        let f = self.features;
        Limits {
            indirect_segments: f.indirect_segments,
            flush: f.flush,
            barrier: f.barrier,
            discard: f.discard.is_some(),
            max_segments: if f.indirect_segments > 0 {
                f.indirect_segments
            } else {
                xen_abi::blkif::BLKIF_MAX_SEGMENTS_PER_REQUEST as u16
            },
        }
    }

    /// The indirect segments to use for a back end offering `offered`.
    fn indirect_for(&self, offered: u32) -> u16 {
        let direct = xen_abi::blkif::BLKIF_MAX_SEGMENTS_PER_REQUEST as u32;
        if offered <= direct || self.config.indirect_pages == 0 {
            return 0;
        }
        let cap = u32::from(self.config.max_indirect_segments.min(MAX_INDIRECT_SEGMENTS));
        if cap <= direct {
            return 0;
        }
        u16::try_from(offered.min(cap)).unwrap_or(0)
    }

    /// Reads what blkback writes when it connects. A missing `sectors` is a
    /// fault (the back end must say how big the disk is).
    fn read_connect_nodes(&mut self, xs: &mut impl XenstoreAccess, dir: &str) -> Result<(), Fault> {
        let sectors = xs
            .read(TxId::NONE, &format!("{dir}/sectors"))
            .ok()
            .and_then(|v| parse_u64(&v).ok())
            .ok_or(Fault::BadNode("sectors"))?;
        let info = read_u32_or(xs, dir, "info", 0).map_err(|_| Fault::BadNode("info"))?;
        let sector_size = read_u32_or(xs, dir, "sector-size", 512)
            .ok()
            .filter(|s| s.is_power_of_two() && (512..=65536).contains(s))
            .ok_or(Fault::BadNode("sector-size"))?;
        let physical = read_u32_or(xs, dir, "physical-sector-size", sector_size)
            .ok()
            .filter(|s| s.is_power_of_two() && *s >= sector_size)
            .ok_or(Fault::BadNode("physical-sector-size"))?;
        let flag = |xs: &mut _, name: &'static str| {
            read_flag(xs, dir, name).map_err(|_| Fault::BadNode(name))
        };
        let flush = flag(xs, "feature-flush-cache")?;
        let barrier = flag(xs, "feature-barrier")?;
        let discard = if flag(xs, "feature-discard")? {
            Some(Discard {
                granularity: read_u32_or(xs, dir, "discard-granularity", 0)
                    .map_err(|_| Fault::BadNode("discard-granularity"))?,
                alignment: read_u32_or(xs, dir, "discard-alignment", 0)
                    .map_err(|_| Fault::BadNode("discard-alignment"))?,
                secure: flag(xs, "discard-secure")?,
            })
        } else {
            None
        };
        let persistent = flag(xs, "feature-persistent")?;
        let offered = read_u64_or(xs, dir, "feature-max-indirect-segments", 0)
            .map_err(|_| Fault::BadNode("feature-max-indirect-segments"))?;
        self.info = Some(DiskInfo {
            sectors,
            sector_size,
            physical_sector_size: physical,
            read_only: info & VDISK_READONLY != 0,
            removable: info & VDISK_REMOVABLE != 0,
            cdrom: info & VDISK_CDROM != 0,
        });
        // The ring order stays what setup chose; indirect segments may only
        // shrink to what the pages set up allow.
        let indirect = self
            .indirect_for(u32::try_from(offered).unwrap_or(u32::MAX))
            .min(self.features.indirect_segments);
        self.features = Features {
            ring_order: self.features.ring_order,
            indirect_segments: indirect,
            flush,
            barrier,
            discard,
            persistent,
        };
        Ok(())
    }
}

impl<P, G, E> Driver<P, G, E> for Blkif<P::Page>
where
    P: PageProvider,
    G: GrantAccess<Page = P::Page>,
    E: EventChannel,
{
    const CLASS: &'static str = "vbd";
    const HANDSHAKE: Handshake = Handshake::InitialisedFirst;

    /// Reads what blkback offers at probe (`max-ring-page-order`,
    /// `feature-max-indirect-segments`), sets up a ring of the agreed order,
    /// grants every pool and indirect page to this back end (pages of an old
    /// domain are granted afresh), and lists the nodes: `ring-ref` (one page)
    /// or `ring-page-order` + `ring-ref0..`, `protocol`, and our own
    /// `feature-persistent=1` (the capability, never the last negotiation).
    /// Requests are posted once the back end is Connected.
    fn setup(
        &mut self,
        io: &mut Resources<P, G, E>,
        xs: &mut impl XenstoreAccess,
        backend: &Backend,
        _port: EvtchnPort,
        nodes: &mut Nodes,
    ) -> Result<(), SetupError> {
        let domid = backend.domid;
        let max_order = read_u32_or(xs, &backend.path, "max-ring-page-order", 0)?;
        let order = u8::try_from(max_order)
            .unwrap_or(u8::MAX)
            .min(self.config.max_ring_order.min(MAX_RING_ORDER));
        let offered = read_u32_or(xs, &backend.path, "feature-max-indirect-segments", 0)?;
        let indirect = self.indirect_for(offered);
        // A ring left from a setup that failed half-way may be granted to
        // another back end: always start from a fresh one.
        if let Some(r) = self.queue.ring.take() {
            io.end_multi_page_ring(r);
        }
        self.queue.ring = Some(io.new_multi_page_ring(order, wire::layout(order), domid)?);
        for h in &mut self.queue.pool {
            io.ensure_granted(h, domid, Access::ReadWrite)?;
        }
        if indirect > 0 {
            // Read-write like every page of the pool: blkback maps persistent
            // grants read-write, indirect pages included.
            for h in &mut self.queue.indirect_pages {
                io.ensure_granted(h, domid, Access::ReadWrite)?;
            }
        }
        let Some(ring) = self.queue.ring.take() else {
            return Err(SetupError::OutOfPages);
        };
        let real_order = u8::try_from(ring.pages.len().trailing_zeros()).unwrap_or(0);
        if real_order == 0 {
            if let Some(g) = ring.pages.first() {
                nodes.push("ring-ref", g.gref());
            }
        } else {
            nodes.push("ring-page-order", real_order);
            for (i, g) in ring.pages.iter().enumerate() {
                nodes.push(format_args!("ring-ref{i}"), g.gref());
            }
        }
        nodes.push("protocol", XEN_IO_PROTO_ABI_X86_64);
        nodes.push("feature-persistent", 1);
        self.features.ring_order = real_order;
        self.features.indirect_segments = indirect;
        let limits = self.limits();
        self.queue.attach(ring, limits);
        Ok(())
    }

    fn connected(
        &mut self,
        io: &mut Resources<P, G, E>,
        xs: &mut impl XenstoreAccess,
        backend: &Backend,
    ) {
        if let Err(f) = self.read_connect_nodes(xs, &backend.path) {
            self.fault = Some(f);
            return;
        }
        let limits = self.limits();
        self.queue.set_limits(limits);
        match self.queue.post() {
            Ok(_) => io.notify(),
            Err(f) => self.fault = Some(f),
        }
    }

    fn release(&mut self, io: &mut Resources<P, G, E>) {
        // Answers already on the ring still count; the rest fail (the back
        // end is closing: never hang a caller on it).
        if self.fault.is_none()
            && let Err(f) = self.queue.drain()
        {
            self.fault = Some(f);
        }
        self.queue.fail_all(BlkError::Disconnected);
        self.release_pages(io);
    }

    fn discard_stale(&mut self, io: &mut Resources<P, G, E>) {
        self.queue.requeue_in_flight();
        if let Some(r) = self.queue.ring.take() {
            io.end_multi_page_ring(r);
        }
    }

    fn reinitialise(&mut self) {
        self.fault = None;
    }

    fn free(&mut self, io: &mut Resources<P, G, E>) {
        self.queue.fail_all(BlkError::Disconnected);
        if let Some(r) = self.queue.ring.take() {
            io.end_multi_page_ring(r);
        }
        for h in self.pages_mut() {
            io.free_held(h);
        }
    }
}

/// A Xen block front end for one virtual disk (`device/vbd/<id>`).
///
/// Drive it like [`netfront::NetFront`]: [`start`](Self::start), then
/// [`on_backend_state`](Self::on_backend_state) when the watch on
/// [`backend_state_path`](Self::backend_state_path) fires; submit requests
/// with [`submit`](Self::submit), move them with [`poll`](Self::poll) (after
/// every event), collect them with [`take_completion`](Self::take_completion);
/// around a save, [`suspend`](Self::suspend) and [`resume`](Self::resume).
///
/// [`netfront::NetFront`]: https://docs.rs/netfront
pub struct BlkFront<P: PageProvider, G, E> {
    dev: Device<Blkif<P::Page>, P, G, E>,
    name: String,
}

impl<P, G, E> BlkFront<P, G, E>
where
    P: PageProvider,
    G: GrantAccess<Page = P::Page>,
    E: EventChannel,
{
    /// Probes `device/vbd/<devid>` (its back end). Grants nothing yet.
    pub fn new(
        xs: &mut impl XenstoreAccess,
        devid: u32,
        pages: P,
        grants: G,
        evtchn: E,
        config: Config,
    ) -> Result<Self, ProbeError> {
        if config.pool_pages == 0
            || config.pool_pages > 4096
            || config.max_ring_order > MAX_RING_ORDER
            || config.max_indirect_segments > MAX_INDIRECT_SEGMENTS
            || config.max_request_bytes == 0
            || config.max_queued == 0
        {
            return Err(ProbeError::BadConfig);
        }
        let blkif = Blkif {
            config,
            // The handle field of requests: the device id, as Linux does.
            queue: Queue::new(config.pool_pages, config.indirect_pages, devid as u16),
            info: None,
            features: Features::default(),
            fault: None,
        };
        let io = Resources::new(pages, grants, evtchn);
        let attempts = usize::try_from(config.xs_attempts).unwrap_or(usize::MAX);
        let dev = Device::new(xs, devid, blkif, io, attempts).map_err(ProbeError::Frontend)?;
        Ok(Self {
            dev,
            name: disk_name(devid),
        })
    }

    fn bi(&self) -> &Blkif<P::Page> {
        self.dev.driver()
    }

    fn bi_mut(&mut self) -> &mut Blkif<P::Page> {
        self.dev.driver_mut()
    }

    // --- accessors -----------------------------------------------------------

    /// The disk's name (`xvda`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device id.
    pub fn devid(&self) -> u32 {
        self.dev.devid()
    }

    /// What the back end said about the disk at the last connect.
    pub fn info(&self) -> Option<DiskInfo> {
        self.bi().info
    }

    /// What the current (or last) connection negotiated.
    pub fn features(&self) -> Features {
        self.bi().features
    }

    /// The xenbus phase.
    pub fn phase(&self) -> Phase {
        self.dev.phase()
    }

    /// Whether requests flow (Connected, no fault).
    pub fn is_up(&self) -> bool {
        self.dev.is_connected() && self.bi().fault.is_none() && self.bi().info.is_some()
    }

    /// Whether the device is closed for good or removed.
    pub fn is_gone(&self) -> bool {
        self.dev.is_gone()
    }

    /// The fault that stopped the connection, if any.
    pub fn fault(&self) -> Option<Fault> {
        self.bi().fault
    }

    /// Why the last setup failed, if it did.
    pub fn last_setup_error(&self) -> Option<SetupError> {
        self.dev.last_setup_error()
    }

    /// The back end's domain.
    pub fn backend_id(&self) -> xen_abi::DomId {
        self.dev.backend().domid
    }

    /// `<backend>/state`, the node to watch (it moves after a restore).
    pub fn backend_state_path(&self) -> String {
        self.dev.backend_state_path()
    }

    /// The event channel to the back end.
    pub fn event_channel(&self) -> Option<EvtchnPort> {
        self.dev.event_channel()
    }

    /// Counters.
    pub fn stats(&self) -> BlkStats {
        self.bi().queue.stats
    }

    /// Notifications sent to the back end.
    pub fn notifies(&self) -> u64 {
        self.dev.resources().kick().notifies()
    }

    /// Requests queued or in flight.
    pub fn outstanding(&self) -> usize {
        self.bi().queue.outstanding()
    }

    /// A snapshot of the request engine and the ring's indices (diagnostics).
    pub fn queue_state(&self) -> QueueState {
        self.bi().queue.state()
    }

    /// Ring requests in flight.
    pub fn in_flight(&self) -> usize {
        self.bi().queue.in_flight()
    }

    /// The page provider.
    pub fn pages(&self) -> &P {
        self.dev.resources().pages()
    }

    // --- xenbus (the shared runtime) ---------------------------------------------

    /// Starts connecting.
    pub fn start(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), Error> {
        self.dev.start(xs)
    }

    /// Acts on the back end's state (call when its watch fires).
    pub fn on_backend_state(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), Error> {
        self.dev.on_backend_state(xs)
    }

    /// Closes the disk for good; outstanding requests fail.
    pub fn close(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), Error> {
        self.dev.close(xs)
    }

    /// Tears the connection down and connects again (after a [`Fault`]);
    /// requests outstanding fail with [`BlkError::Disconnected`].
    pub fn reconnect(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), Error> {
        self.dev.reconnect(xs)
    }

    /// Recovers from a [`Fault`] at `now_ms`: counted against the fault
    /// budget ([`xen_frontend::recovery`]); within it the disk reconnects,
    /// over it the disk is closed and broken ([`Error::Broken`]).
    pub fn reconnect_after_fault(
        &mut self,
        xs: &mut impl XenstoreAccess,
        now_ms: u64,
    ) -> Result<(), Error> {
        self.dev.reconnect_after_fault(xs, now_ms)
    }

    /// Why the disk is broken, if it is: it will not connect again.
    pub fn broken(&self) -> Option<xen_frontend::Broken> {
        self.dev.broken()
    }

    /// Sets the recovery policy (see [`xen_frontend::recovery`]).
    pub fn set_recovery(&mut self, config: xen_frontend::RecoveryConfig) {
        self.dev.set_recovery(config);
    }

    /// Pages of this disk still on the grant table's deferred list.
    pub fn deferred_pages(&mut self) -> usize {
        self.dev.parts_mut().1.deferred_pages()
    }

    /// Retries a failed connection setup or own-state write once its
    /// back-off has passed (see [`xen_frontend::Device::poll`]).
    pub fn poll_recovery(
        &mut self,
        xs: &mut impl XenstoreAccess,
        now_ms: u64,
    ) -> Result<(), Error> {
        self.dev.poll(xs, now_ms)
    }

    /// When [`poll_recovery`](Self::poll_recovery) next has work, if any.
    pub fn recovery_at(&self) -> Option<u64> {
        self.dev.poll_at()
    }

    /// The domain is about to suspend: requests stop moving.
    pub fn suspend(&mut self) -> Result<(), Error> {
        self.dev.suspend()
    }

    /// The domain resumed. Cancelled (`new_domain` false): nothing changes,
    /// requests in flight complete normally. New domain: every request that
    /// was in flight is kept and posted again, split under the new back end's
    /// limits, once its pages are granted afresh and the back end is
    /// Connected.
    pub fn resume(&mut self, xs: &mut impl XenstoreAccess, new_domain: bool) -> Result<(), Error> {
        self.dev.resume(xs, new_domain)
    }

    // --- requests ------------------------------------------------------------------

    /// Queues a request at byte `offset` and posts it if the ring has room.
    /// Refused before the ring (nothing happens): writes, write-zeroes and
    /// discards to a read-only disk, discard without `feature-discard`,
    /// misaligned or out-of-range requests, reads and writes over the size
    /// limit (write-zeroes and discards carry no data and have none), a full
    /// queue, a device that is gone or never connected.
    pub fn submit(&mut self, offset: u64, op: Op) -> Result<ReqId, SubmitError> {
        self.try_submit(offset, op).map_err(|(e, _)| e)
    }

    /// [`Self::submit`], handing a refused op back to the caller (so a write
    /// that meets a full queue is retried without a copy of its data).
    pub fn try_submit(&mut self, offset: u64, op: Op) -> Result<ReqId, (SubmitError, Op)> {
        if let Err(e) = self.check(offset, &op) {
            return Err((e, op));
        }
        let id = self.bi_mut().queue.push(op, offset);
        if self.is_up() {
            self.kick();
        }
        Ok(id)
    }

    /// Whether [`Self::submit`] would take `op` at `offset` now.
    pub fn check(&self, offset: u64, op: &Op) -> Result<(), SubmitError> {
        if self.dev.is_gone() {
            return Err(SubmitError::Gone);
        }
        let Some(info) = self.bi().info else {
            return Err(SubmitError::NotReady);
        };
        let features = self.bi().features;
        let config = self.bi().config;
        let len: u64 = match op {
            Op::Read { len } | Op::Discard { len } | Op::WriteZeroes { len, .. } => u64::from(*len),
            Op::Write { data, .. } => data.len() as u64,
            Op::Flush => 0,
        };
        if !matches!(op, Op::Read { .. } | Op::Flush) && info.read_only {
            return Err(SubmitError::ReadOnly);
        }
        if let Op::Discard { .. } = op {
            let Some(d) = features.discard else {
                return Err(SubmitError::Unsupported);
            };
            let g = u64::from(d.granularity.max(info.sector_size));
            if !offset
                .wrapping_sub(u64::from(d.alignment))
                .is_multiple_of(g)
                || !len.is_multiple_of(g)
            {
                return Err(SubmitError::OutOfRange);
            }
        }
        if !matches!(op, Op::Flush) {
            let ss = u64::from(info.sector_size);
            let end = offset.checked_add(len).ok_or(SubmitError::OutOfRange)?;
            if len == 0
                || !offset.is_multiple_of(ss)
                || !len.is_multiple_of(ss)
                || end > info.size_bytes()
            {
                return Err(SubmitError::OutOfRange);
            }
            if matches!(op, Op::Read { .. } | Op::Write { .. })
                && len > u64::from(config.max_request_bytes)
            {
                return Err(SubmitError::TooLarge);
            }
        }
        if self.bi().queue.outstanding() >= usize::from(config.max_queued) {
            return Err(SubmitError::Busy);
        }
        Ok(())
    }

    /// Posts what fits and notifies the back end if it asks.
    fn kick(&mut self) {
        let (b, io) = self.dev.parts_mut();
        match b.queue.post() {
            Ok(true) => io.notify(),
            Ok(false) => {}
            Err(f) => b.fault = Some(f),
        }
    }

    /// Consumes responses (at most a ring's worth) and posts queued requests.
    /// Returns the responses handled; a broken protocol is a sticky
    /// [`Fault`] (reconnect).
    pub fn poll(&mut self) -> Result<u32, Fault> {
        if let Some(f) = self.bi().fault {
            return Err(f);
        }
        if !self.is_up() {
            return Ok(0);
        }
        let (b, io) = self.dev.parts_mut();
        match b.queue.poll() {
            Ok((n, notify)) => {
                if notify {
                    io.notify();
                }
                Ok(n)
            }
            Err(f) => {
                b.fault = Some(f);
                Err(f)
            }
        }
    }

    /// A finished request.
    pub fn take_completion(&mut self) -> Option<Completion> {
        self.bi_mut().queue.take_completion()
    }

    /// Whether finished requests wait to be taken.
    pub fn has_completions(&self) -> bool {
        self.bi().queue.completions_waiting() > 0
    }

    /// Before sleeping: asks for an event on the next response; true if one
    /// is already there (then do not sleep).
    pub fn rearm(&mut self) -> bool {
        if !self.is_up() {
            return false;
        }
        let b = self.bi_mut();
        match b.queue.rearm() {
            Ok(p) => p,
            Err(f) => {
                b.fault = Some(f);
                true
            }
        }
    }
}
