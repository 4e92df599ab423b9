//! [`NetFront`]: one vif on the shared front-end runtime; [`Netif`] is what netif adds to it (rings, buffers, features, the tx watchdog).

use alloc::format;

use grant_table::Access;
use xen_abi::event_channel::EvtchnPort;
use xen_frontend::{
    Backend, Device, Driver, Held, Nodes, Resources, SetupError, XenstoreAccess, nodes::read_flag,
    nodes::read_u32_or,
};
use xen_ring::RingError;
use xenbus::{Handshake, Phase, Rebind, XenbusState};
use xenstore::{TxId, XsError};

use crate::ETH_HLEN;
use crate::error::{Fault, NetError, Node, ProbeError, RxError, TxError};
use crate::nodes::{BackendFeatures, DEFAULT_MTU, MacAddr};
use crate::rx::{Rx, RxStats};
use crate::tx::{Tx, TxStats};
use crate::wire::{self, RxReq, RxRsp, TxReq, TxRsp};
use xen_frontend::{EventChannel, GrantAccess, PageProvider};

/// Tuning of a [`NetFront`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Receive buffers (pages granted to the back end), 1..=256.
    pub rx_buffers: u16,
    /// TSO on send (smoltcp's `segmentation-offload`, TCP segments of up
    /// to 64 KiB). Off by default: with it, a 2026-12-03 real-Xen suite
    /// stalled an `nbdcopy` read (the guest sending NBD replies) for 400 s
    /// with no error on either side; cause not found (docs/NET.md).
    pub tso: bool,
    /// Transmit pool pages, 1..=256.
    pub tx_buffers: u16,
    /// Re-post rx buffers once this many are free (one push and at most one
    /// notification per batch).
    pub rx_refill_batch: u16,
    /// Attempts of the xenstore transaction that publishes the rings.
    pub xs_attempts: u32,
    /// Tx watchdog: with tx requests waiting, the back end notified, and no tx
    /// response for this many milliseconds, the connection counts as stalled
    /// ([`Fault::TxStalled`]); half-way the back end is notified once more,
    /// and at least half of it must pass after that notification. 0 turns the
    /// watchdog off. See [`NetFront::check_tx_progress`].
    pub tx_stall_ms: u64,
    /// Rx watchdog: with rx buffers posted, no rx response for this many
    /// milliseconds while at least [`rx_stall_min_tx`](Self::rx_stall_min_tx)
    /// of our tx frames completed meanwhile, the connection counts as stalled
    /// ([`Fault::RxStalled`]); half-way the back end is notified once more.
    /// 0 turns the watchdog off. See [`NetFront::check_rx_progress`].
    pub rx_stall_ms: u64,
    /// Tx frames that must complete during [`rx_stall_ms`](Self::rx_stall_ms)
    /// without any rx for it to count as a stall: an idle link (nothing
    /// sent, nothing received) is not one.
    pub rx_stall_min_tx: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rx_buffers: 256,
            tso: false,
            tx_buffers: 256,
            rx_refill_batch: 32,
            xs_attempts: 16,
            tx_stall_ms: 4000,
            rx_stall_ms: 20_000,
            rx_stall_min_tx: 64,
        }
    }
}

/// Counters of a [`NetFront`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stats {
    /// Receive counters.
    pub rx: RxStats,
    /// Transmit counters.
    pub tx: TxStats,
    /// Event-channel notifications sent to the back end.
    pub notifies: u64,
    /// Ring setups completed (connections made, including after resume).
    pub setups: u64,
    /// Extra notifications the tx watchdog sent half-way to a stall
    /// ([`NetFront::check_tx_progress`]).
    pub watchdog_notifies: u64,
    /// Connections the tx watchdog failed as stalled ([`Fault::TxStalled`]).
    pub watchdog_stalls: u64,
    /// Connections the rx watchdog failed as stalled ([`Fault::RxStalled`]).
    pub rx_watchdog_stalls: u64,
    /// Faults of the back end counted against the fault budget.
    pub faults: u64,
    /// Connection setups retried after a failure.
    pub setup_retries: u64,
    /// The last rx error swallowed by [`NetFront::poll_rx`].
    pub last_rx_error: Option<RxError>,
}

/// One ring's private indices (see [`NetFront::ring_indices`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingIndex {
    /// Requests produced (`req_prod_pvt`).
    pub req_prod: u32,
    /// Responses consumed (`rsp_cons`).
    pub rsp_cons: u32,
}

/// Both rings' private indices; `None` while a ring does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingIndices {
    /// The rx ring.
    pub rx: Option<RingIndex>,
    /// The tx ring.
    pub tx: Option<RingIndex>,
}

/// The tx watchdog's state (see [`NetFront::check_tx_progress`]).
#[derive(Clone, Copy, Debug, Default)]
struct TxWatch {
    /// The tx ring's `rsp_cons` when progress was last seen.
    rsp_cons: u32,
    /// When progress was last seen (the caller's millisecond clock); `None`
    /// while nothing waits.
    since_ms: Option<u64>,
    /// When the half-way notification was sent (`None`: not yet).
    renotified_ms: Option<u64>,
}

/// The rx watchdog's state (see [`NetFront::check_rx_progress`]).
#[derive(Clone, Copy, Debug, Default)]
struct RxWatch {
    /// The rx ring's `rsp_cons` when progress was last seen.
    rsp_cons: u32,
    /// Tx frames completed then.
    tx_completed: u64,
    /// When progress was last seen; `None` while no buffer is posted.
    since_ms: Option<u64>,
    /// When the half-way notification was sent (`None`: not yet).
    renotified_ms: Option<u64>,
}

/// A watchdog's verdict at `now` (see [`NetFront::check_tx_progress`]):
/// the back end gets a second notification once half of `limit` has passed
/// without progress, and the connection counts as stalled only when all of
/// `limit` has passed *and* half of it since that notification. A check
/// that runs late (the guest was not scheduled, or the clock was stopped
/// for a suspend) therefore notifies first and never faults at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watch {
    Wait,
    Renotify,
    Stalled,
}

fn watch_verdict(since: u64, renotified: Option<u64>, limit: u64, now: u64) -> Watch {
    let half = limit / 2;
    match renotified {
        None if now.saturating_sub(since) >= half => Watch::Renotify,
        Some(r) if now.saturating_sub(since) >= limit && now.saturating_sub(r) >= half => {
            Watch::Stalled
        }
        _ => Watch::Wait,
    }
}

/// When [`watch_verdict`] next changes.
fn watch_deadline(since: u64, renotified: Option<u64>, limit: u64) -> u64 {
    let half = limit / 2;
    match renotified {
        None => since.saturating_add(half),
        Some(r) => since.saturating_add(limit).max(r.saturating_add(half)),
    }
}

/// What netif adds to the shared runtime: the two rings, the rx buffers and
/// tx pool, the MAC and MTU, the back end's features, the sticky fault.
pub struct Netif<Pg> {
    config: Config,
    devid: u32,
    mac: MacAddr,
    mtu: u32,
    features: BackendFeatures,
    pub(crate) rx: Rx<Pg>,
    pub(crate) tx: Tx<Pg>,
    pub(crate) fault: Option<Fault>,
    last_rx_error: Option<RxError>,
    tx_watch: TxWatch,
    rx_watch: RxWatch,
    watchdog_notifies: u64,
    watchdog_stalls: u64,
    /// Times the tx watchdog found the back end away and waited.
    watchdog_away_waits: u64,
    rx_watchdog_stalls: u64,
}

impl<Pg: xen_frontend::DevicePage> Netif<Pg> {
    /// Every page the connection grants: rx buffers, then tx slots.
    fn pages_mut(&mut self) -> impl Iterator<Item = &mut Held<Pg>> {
        self.rx
            .bufs
            .iter_mut()
            .map(|b| &mut b.held)
            .chain(self.tx.slots.iter_mut().map(|s| &mut s.held))
    }

    /// Ends every buffer's grant (pages kept as spares, or deferred) and
    /// forgets the rings' state.
    fn release_buffers<P, G, E>(&mut self, io: &mut Resources<P, G, E>)
    where
        P: PageProvider<Page = Pg>,
        G: GrantAccess<Page = Pg>,
        E: EventChannel,
    {
        self.tx.drop_in_flight();
        self.tx.forget_free();
        self.rx.forget_ring_state();
        for h in self.pages_mut() {
            io.release_held(h);
        }
    }

    /// Ends both rings' grants (stale ones come back at once).
    fn end_rings<P, G, E>(&mut self, io: &mut Resources<P, G, E>)
    where
        P: PageProvider<Page = Pg>,
        G: GrantAccess<Page = Pg>,
        E: EventChannel,
    {
        if let Some(r) = self.tx.ring.take() {
            io.end_ring(r);
        }
        if let Some(r) = self.rx.ring.take() {
            io.end_ring(r);
        }
    }
}

/// Reads what the back end advertises (`netif.h`).
fn read_features(
    xs: &mut impl XenstoreAccess,
    backend: &str,
) -> Result<BackendFeatures, SetupError> {
    Ok(BackendFeatures {
        rx_copy: read_flag(xs, backend, "feature-rx-copy")?,
        sg: read_flag(xs, backend, "feature-sg")?,
        split_event_channels: read_flag(xs, backend, "feature-split-event-channels")?,
        gso_tcpv4: read_flag(xs, backend, "feature-gso-tcpv4")?,
        ipv6_csum_offload: read_flag(xs, backend, "feature-ipv6-csum-offload")?,
        max_queues: read_u32_or(xs, backend, "multi-queue-max-queues", 1)?,
    })
}

impl<P, G, E> Driver<P, G, E> for Netif<P::Page>
where
    P: PageProvider,
    G: GrantAccess<Page = P::Page>,
    E: EventChannel,
{
    const CLASS: &'static str = "vif";
    const HANDSHAKE: Handshake = Handshake::ConnectedAfterSetup;
    /// Linux netback (with dynamic unbind/bind) re-attaches to the rings we published after an
    /// unbind/bind, as Linux netfront expects: keep them (docs/NET.md).
    const REBIND: Rebind = Rebind::Reattach;

    /// Reads the features (`feature-rx-copy` required), initialises and
    /// grants the two rings, grants every rx buffer and tx pool page to this
    /// back end BEFORE any request naming it is posted, posts the rx buffers,
    /// re-sends tx frames that were in flight, and lists the nodes:
    /// `request-rx-copy=1` (the only rx mode implemented), `feature-rx-notify=1`
    /// (netback requires it), `feature-sg=1` (multi-slot packets are
    /// reassembled), `feature-no-csum-offload=0` (blank checksums are
    /// accepted, see the crate docs), `feature-gso-tcpv4=1` (TCPv4 GSO
    /// packets of up to 64 KiB are received as one segment); no IPv6 offload,
    /// multicast control or multi-queue.
    fn setup(
        &mut self,
        io: &mut Resources<P, G, E>,
        xs: &mut impl XenstoreAccess,
        backend: &Backend,
        _port: EvtchnPort,
        nodes: &mut Nodes,
    ) -> Result<(), SetupError> {
        let domid = backend.domid;
        let features = read_features(xs, &backend.path)?;
        self.features = features;
        if !features.rx_copy {
            return Err(SetupError::MissingFeature("feature-rx-copy"));
        }
        self.tx.sg = features.sg;
        self.tx.gso = features.gso_tcpv4;
        // The MAC normally stays; re-read it in case the toolstack changed it.
        if let Ok(v) = xs.read(TxId::NONE, &format!("device/vif/{}/mac", self.devid))
            && let Ok(mac) = MacAddr::parse(&v)
        {
            self.mac = mac;
        }

        if self.tx.ring.is_none() {
            self.tx.ring = Some(io.new_ring::<TxReq, TxRsp>(wire::tx_layout(), domid)?);
            self.tx.new_ring();
        }
        if self.rx.ring.is_none() {
            self.rx.ring = Some(io.new_ring::<RxReq, RxRsp>(wire::rx_layout(), domid)?);
        }
        for b in &mut self.rx.bufs {
            io.ensure_granted(&mut b.held, domid, Access::ReadWrite)?;
        }
        for s in &mut self.tx.slots {
            io.ensure_granted(&mut s.held, domid, Access::ReadOnly)?;
        }
        let mut current = |h: &Held<P::Page>| h.grant().is_some_and(|g| io.is_current(g, domid));
        self.rx.collect_idle(&mut current);
        self.tx.collect_free(&mut current);
        // Faults cannot happen on a fresh ring (nothing was read from the
        // back end yet); record one anyway rather than lose it.
        if let Err(f) = self.rx.refill(true) {
            self.fault = Some(f);
        }
        if let Err(f) = self.tx.resend() {
            self.fault = Some(f);
        }

        let (Some(tx), Some(rx)) = (&self.tx.ring, &self.rx.ring) else {
            return Err(SetupError::OutOfPages);
        };
        nodes.push("tx-ring-ref", tx.page.gref());
        nodes.push("rx-ring-ref", rx.page.gref());
        nodes.push("request-rx-copy", 1);
        nodes.push("feature-rx-notify", 1);
        nodes.push("feature-sg", 1);
        nodes.push("feature-no-csum-offload", 0);
        nodes.push("feature-gso-tcpv4", 1);
        Ok(())
    }

    fn release(&mut self, io: &mut Resources<P, G, E>) {
        self.end_rings(io);
        self.release_buffers(io);
    }

    fn discard_stale(&mut self, io: &mut Resources<P, G, E>) {
        // Tx responses the old back end published before the save are in our
        // own copy of the ring page: consume them first, so that frames it
        // already sent are not sent again (see docs/NET.md, "Save and
        // restore"). A bad ring (a fault) just means nothing more is consumed.
        let _ = self.tx.reclaim();
        self.end_rings(io);
        // Buffers keep their (stale) grants until setup grants them anew; tx
        // frames in flight stay for re-sending.
        self.rx.forget_ring_state();
        self.tx.forget_free();
    }

    fn reinitialise(&mut self) {
        // A fault belonged to the old rings.
        self.fault = None;
    }

    fn free(&mut self, io: &mut Resources<P, G, E>) {
        self.release_buffers(io);
        for h in self.pages_mut() {
            io.free_held(h);
        }
    }
}

/// A Xen network front end for one vif (`device/vif/<id>`).
///
/// Drive it with [`start`](Self::start), then call
/// [`on_backend_state`](Self::on_backend_state) whenever the watch on
/// [`backend_state_path`](Self::backend_state_path) fires; move packets with
/// [`receive`](Self::receive)/[`transmit`](Self::transmit) (or the
/// `smoltcp::phy::Device` impl); around a save, call
/// [`suspend`](Self::suspend) and [`resume`](Self::resume). The connection's
/// life cycle is the shared runtime's ([`xen_frontend::Device`]).
pub struct NetFront<P: PageProvider, G, E> {
    pub(crate) dev: Device<Netif<P::Page>, P, G, E>,
}

impl<P, G, E> NetFront<P, G, E>
where
    P: PageProvider,
    G: GrantAccess<Page = P::Page>,
    E: EventChannel,
{
    /// Probes `device/vif/<devid>`: reads and validates `mac`, the optional
    /// `mtu` (default 1500), `backend` and `backend-id`. Allocates the
    /// reassembly and transmit buffers; grants nothing yet.
    pub fn new(
        xs: &mut impl XenstoreAccess,
        devid: u32,
        pages: P,
        grants: G,
        evtchn: E,
        config: Config,
    ) -> Result<Self, ProbeError> {
        let in_range = |n: u16| (1..=xen_abi::netif::NET_RX_RING_SIZE as u16).contains(&n);
        if !in_range(config.rx_buffers) || !in_range(config.tx_buffers) {
            return Err(ProbeError::BadConfig);
        }
        // The back end first: a device without one is not ours to probe.
        xen_frontend::read_backend(xs, "vif", devid).map_err(ProbeError::from)?;
        let own_dir = xen_frontend::device_dir("vif", devid);
        let mac_raw = xs
            .read(TxId::NONE, &format!("{own_dir}/mac"))
            .map_err(|err| ProbeError::Xenstore {
                node: Node::Mac,
                err,
            })?;
        let mac = MacAddr::parse(&mac_raw).map_err(ProbeError::Mac)?;
        let mtu = match xs.read(TxId::NONE, &format!("{own_dir}/mtu")) {
            Ok(v) => crate::nodes::parse_mtu(&v).map_err(ProbeError::Mtu)?,
            Err(XsError::Enoent) => DEFAULT_MTU,
            Err(err) => {
                return Err(ProbeError::Xenstore {
                    node: Node::Mtu,
                    err,
                });
            }
        };
        let max_frame = mtu as usize + ETH_HLEN;
        let netif = Netif {
            config,
            devid,
            mac,
            mtu,
            features: BackendFeatures::default(),
            rx: Rx::new(
                usize::from(config.rx_buffers),
                usize::from(config.rx_refill_batch),
            ),
            tx: Tx::new(usize::from(config.tx_buffers), max_frame, config.tso),
            fault: None,
            last_rx_error: None,
            tx_watch: TxWatch::default(),
            rx_watch: RxWatch::default(),
            watchdog_notifies: 0,
            watchdog_stalls: 0,
            watchdog_away_waits: 0,
            rx_watchdog_stalls: 0,
        };
        let io = Resources::new(pages, grants, evtchn);
        let attempts = usize::try_from(config.xs_attempts).unwrap_or(usize::MAX);
        let dev = Device::new(xs, devid, netif, io, attempts).map_err(ProbeError::from)?;
        Ok(Self { dev })
    }

    fn nif(&self) -> &Netif<P::Page> {
        self.dev.driver()
    }

    fn nif_mut(&mut self) -> &mut Netif<P::Page> {
        self.dev.driver_mut()
    }

    // --- accessors -----------------------------------------------------------

    /// The vif's MAC address (from `device/vif/<id>/mac`).
    pub fn mac(&self) -> MacAddr {
        self.nif().mac
    }

    /// The IP MTU (from `device/vif/<id>/mtu`, default 1500).
    pub fn mtu(&self) -> u32 {
        self.nif().mtu
    }

    /// The largest Ethernet frame (without FCS) [`transmit`](Self::transmit)
    /// accepts now: MTU + 14, and at most one page without `feature-sg`.
    pub fn max_frame(&self) -> usize {
        self.nif().tx.frame_limit()
    }

    /// What the back end advertised at the last setup.
    pub fn features(&self) -> BackendFeatures {
        self.nif().features
    }

    /// The back end's directory.
    pub fn backend_path(&self) -> &str {
        &self.dev.backend().path
    }

    /// The back end's domain.
    pub fn backend_id(&self) -> xen_abi::DomId {
        self.dev.backend().domid
    }

    /// `<backend>/state`, the node to watch. It may change after a resume:
    /// re-register the watch if it does.
    pub fn backend_state_path(&self) -> alloc::string::String {
        self.dev.backend_state_path()
    }

    /// Our device directory, `device/vif/<id>` (relative to the domain's home).
    pub fn device_dir(&self) -> &str {
        self.dev.device_dir()
    }

    /// The vif's id.
    pub fn devid(&self) -> u32 {
        self.dev.devid()
    }

    /// The xenbus phase.
    pub fn phase(&self) -> Phase {
        self.dev.phase()
    }

    /// Whether packets can flow (the back end is Connected, no fault, not
    /// suspended).
    pub fn is_up(&self) -> bool {
        self.dev.is_connected() && self.nif().fault.is_none()
    }

    /// Whether the back end is away while we stay connected (unbound and
    /// bound again; it has not re-attached to our rings yet).
    pub fn is_reattaching(&self) -> bool {
        self.dev.is_reattaching()
    }

    /// Times the back end re-attached to our rings after an unbind/bind.
    pub fn reattaches(&self) -> u64 {
        self.dev.reattaches()
    }

    /// The back end's state as last read.
    pub fn backend_state(&self) -> Option<XenbusState> {
        self.dev.backend_state()
    }

    /// Times the tx watchdog found the back end away (its end of the event
    /// channel closed: unbound) and waited instead of failing the connection.
    pub fn watchdog_away_waits(&self) -> u64 {
        self.nif().watchdog_away_waits
    }

    /// The fault that stopped the connection, if any.
    pub fn fault(&self) -> Option<Fault> {
        self.nif().fault
    }

    /// Why the last ring setup failed, if it did.
    pub fn last_setup_error(&self) -> Option<SetupError> {
        self.dev.last_setup_error()
    }

    /// The event channel to the back end (bind its upcall to whatever calls
    /// [`receive`](Self::receive)/[`poll_tx`](Self::poll_tx)).
    pub fn event_channel(&self) -> Option<EvtchnPort> {
        self.dev.event_channel()
    }

    /// Frames sent and not yet completed.
    pub fn tx_in_flight(&self) -> usize {
        self.nif().tx.in_flight()
    }

    /// The rings' private indices, for debug output (compare them with the
    /// back end's view, e.g. Linux netback's debugfs `io_ring_q0`).
    pub fn ring_indices(&self) -> RingIndices {
        let n = self.nif();
        RingIndices {
            rx: n.rx.ring.as_ref().map(|r| RingIndex {
                req_prod: r.front.req_prod_pvt(),
                rsp_cons: r.front.rsp_cons(),
            }),
            tx: n.tx.ring.as_ref().map(|r| RingIndex {
                req_prod: r.front.req_prod_pvt(),
                rsp_cons: r.front.rsp_cons(),
            }),
        }
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let n = self.nif();
        Stats {
            rx: n.rx.stats,
            tx: n.tx.stats,
            notifies: self.dev.resources().kick().notifies(),
            watchdog_notifies: n.watchdog_notifies,
            watchdog_stalls: n.watchdog_stalls,
            rx_watchdog_stalls: n.rx_watchdog_stalls,
            faults: self.dev.health().fault_count,
            setup_retries: self.dev.health().retries,
            setups: self.dev.setups(),
            last_rx_error: n.last_rx_error,
        }
    }

    /// The page provider (e.g. for the kernel to account pages).
    pub fn pages(&self) -> &P {
        self.dev.resources().pages()
    }

    /// The grant-table access.
    pub fn grants_mut(&mut self) -> &mut G {
        self.dev.parts_mut().1.grants_mut()
    }

    // --- xenbus (the shared runtime) ---------------------------------------------

    /// Starts connecting: writes Initialising, then acts on the back end's
    /// current state (setting up the rings if it already waits in InitWait).
    pub fn start(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), NetError> {
        Ok(self.dev.start(xs)?)
    }

    /// Reads `<backend>/state` and carries out what follows (ring setup,
    /// release, reconnect). Call it whenever the watch on
    /// [`backend_state_path`](Self::backend_state_path) fires (spurious calls
    /// are harmless). A garbage state value is an error and changes nothing.
    pub fn on_backend_state(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), NetError> {
        Ok(self.dev.on_backend_state(xs)?)
    }

    /// Closes the device for good (the back end is walked through
    /// Closing/Closed; grants are ended once it has let go).
    pub fn close(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), NetError> {
        Ok(self.dev.close(xs)?)
    }

    /// Tears the connection down and connects again (after a [`Fault`]): the
    /// back end is walked through Closing/Closed, every grant is ended once it
    /// has let go, and a fresh connection is set up; frames still in flight
    /// are sent again on the new rings.
    pub fn reconnect(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), NetError> {
        Ok(self.dev.reconnect(xs)?)
    }

    /// Recovers from the current [`Fault`] at `now_ms`: a stall (a watchdog's
    /// finding) reconnects; a protocol violation is counted against the fault
    /// budget ([`xen_frontend::recovery`]) and reconnects within it, else the
    /// device is closed and broken ([`NetError::Broken`]; it does not connect
    /// again). Without a fault, nothing happens.
    pub fn recover(&mut self, xs: &mut impl XenstoreAccess, now_ms: u64) -> Result<(), NetError> {
        match self.nif().fault {
            None => Ok(()),
            Some(f) if f.is_stall() => self.reconnect(xs),
            Some(_) => Ok(self.dev.reconnect_after_fault(xs, now_ms)?),
        }
    }

    /// Why the device is broken, if it is (see [`recover`](Self::recover)).
    pub fn broken(&self) -> Option<xen_frontend::Broken> {
        self.dev.broken()
    }

    /// Sets the recovery policy (fault budget, deferred-page cap, retry
    /// back-off; see [`xen_frontend::recovery`]).
    pub fn set_recovery(&mut self, config: xen_frontend::RecoveryConfig) {
        self.dev.set_recovery(config);
    }

    /// Pages of this vif still on the grant table's deferred list.
    pub fn deferred_pages(&mut self) -> usize {
        self.dev.parts_mut().1.deferred_pages()
    }

    /// Retries a failed connection setup or own-state write once its
    /// back-off has passed (see [`xen_frontend::Device::poll`]). Call it
    /// regularly with a monotonic millisecond clock, at least by
    /// [`poll_at`](Self::poll_at).
    pub fn poll(&mut self, xs: &mut impl XenstoreAccess, now_ms: u64) -> Result<(), NetError> {
        Ok(self.dev.poll(xs, now_ms)?)
    }

    /// When [`poll`](Self::poll) next has work (milliseconds), if any.
    pub fn poll_at(&self) -> Option<u64> {
        self.dev.poll_at()
    }

    /// The domain is about to suspend: stops I/O. Call before
    /// `SCHEDOP_shutdown(SHUTDOWN_suspend)`.
    pub fn suspend(&mut self) -> Result<(), NetError> {
        self.dev.suspend()?;
        // Time stands still for the guest while it is saved; start afresh after.
        self.nif_mut().tx_watch = TxWatch::default();
        self.nif_mut().rx_watch = RxWatch::default();
        Ok(())
    }

    /// The domain resumed. `new_domain` false (the suspend was cancelled):
    /// nothing is touched, I/O continues on the same rings and grants.
    /// `new_domain` true: call after the kernel has re-mapped the grant table
    /// and called `GrantTable::reset_for_resume`, and resumed xenstore; the
    /// runtime reconnects (see [`xen_frontend::device`]): every rx buffer is
    /// granted again before it is posted, and frames that were in flight are
    /// sent again.
    pub fn resume(
        &mut self,
        xs: &mut impl XenstoreAccess,
        new_domain: bool,
    ) -> Result<(), NetError> {
        self.nif_mut().tx_watch = TxWatch::default();
        self.nif_mut().rx_watch = RxWatch::default();
        Ok(self.dev.resume(xs, new_domain)?)
    }

    // --- data path -------------------------------------------------------------

    fn check_io(&self) -> Result<(), NetError> {
        if self.dev.is_suspended() {
            return Err(NetError::Suspended);
        }
        if let Some(f) = self.nif().fault {
            return Err(NetError::Faulted(f));
        }
        if !self.dev.is_connected() {
            return Err(NetError::NotConnected);
        }
        Ok(())
    }

    fn fail(&mut self, f: Fault) -> NetError {
        self.nif_mut().fault = Some(f);
        NetError::Faulted(f)
    }

    /// Re-posts free rx buffers (in a batch) and notifies if the back end asks.
    fn refill(&mut self, force: bool) -> Result<(), NetError> {
        let (n, io) = self.dev.parts_mut();
        match n.rx.refill(force) {
            Ok(true) => {
                io.notify();
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(f) => Err(self.fail(f)),
        }
    }

    /// Makes the next valid packet ready, consuming responses. Returns
    /// `Ok(true)` if one is ready, `Ok(false)` if the ring has no complete
    /// packet, `Err(Rx)` for a dropped packet (call again for the next).
    fn assemble_one(&mut self) -> Result<bool, NetError> {
        let r = self.nif_mut().rx.assemble();
        let refill = self.refill(false);
        match r {
            Err(NetError::Faulted(f)) => Err(self.fail(f)),
            Err(e) => {
                if let NetError::Rx(rx) = e {
                    self.nif_mut().last_rx_error = Some(rx);
                }
                refill.and(Err(e))
            }
            Ok(ready) => refill.map(|()| ready),
        }
    }

    /// Receives one packet: `f` sees the frame (validated, reassembled, its
    /// checksum completed if it was blank). `Ok(None)`: nothing pending.
    /// `Err(Rx(_))`: a packet was dropped; call again for the next one.
    pub fn receive<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, NetError> {
        if !self.nif().rx.has_ready() {
            self.check_io()?;
            if !self.assemble_one()? {
                return Ok(None);
            }
        }
        Ok(self.nif_mut().rx.consume(f))
    }

    /// Makes a packet ready if one is complete, dropping (and counting, see
    /// [`Stats::last_rx_error`]) invalid ones on the way. Returns whether a
    /// packet is ready. Packet errors are swallowed; faults are returned.
    ///
    /// The work is bounded: free buffers are re-posted only after the batch,
    /// so the responses consumed here are at most those to requests posted
    /// before the call (the ring's validation refuses more): a back end that
    /// answers every refill with bad packets costs one ring's worth per call,
    /// not an endless loop.
    pub fn poll_rx(&mut self) -> Result<bool, NetError> {
        if self.nif().rx.has_ready() {
            return Ok(true);
        }
        self.check_io()?;
        let result = loop {
            match self.nif_mut().rx.assemble() {
                Ok(ready) => break Ok(ready),
                Err(NetError::Rx(e)) => self.nif_mut().last_rx_error = Some(e),
                Err(NetError::Faulted(f)) => return Err(self.fail(f)),
                Err(e) => break Err(e),
            }
        };
        self.refill(false)?;
        result
    }

    /// Consumes tx responses, freeing completed frames' pool pages. Returns
    /// the number of responses consumed.
    pub fn poll_tx(&mut self) -> Result<u32, NetError> {
        self.check_io()?;
        self.nif_mut().tx.reclaim().map_err(|f| self.fail(f))
    }

    /// Publishes the frames the smoltcp device posted since the last push
    /// (see [`crate::device`]) and notifies the back end if it asks. Call it
    /// after every pass of the stack over this device; without it those
    /// frames stay invisible to the back end.
    pub fn flush_tx(&mut self) -> Result<(), NetError> {
        let (n, io) = self.dev.parts_mut();
        match n.tx.flush() {
            Ok(true) => {
                io.notify();
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(f) => Err(self.fail(f)),
        }
    }

    /// Whether a frame of `len` bytes can be sent now (after reclaiming).
    pub fn can_transmit(&mut self, len: usize) -> bool {
        self.poll_tx().is_ok() && len <= self.nif().tx.frame_limit() && self.nif().tx.can_send(len)
    }

    /// Sends one frame of `len` bytes that `f` writes (copied into pool pages;
    /// frames over one page use several slots, which needs `feature-sg`).
    /// No allocation and no new grant happen here.
    pub fn transmit<R>(
        &mut self,
        len: usize,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, NetError> {
        self.check_io()?;
        self.nif_mut().tx.reclaim().map_err(|f| self.fail(f))?;
        let (n, io) = self.dev.parts_mut();
        match n.tx.send(len, f) {
            Ok((r, notify)) => {
                if notify {
                    io.notify();
                }
                Ok(r)
            }
            Err(NetError::Faulted(fault)) => Err(self.fail(fault)),
            Err(e) => Err(e),
        }
    }

    /// The tx watchdog; call it regularly (at least by
    /// [`tx_watchdog_deadline_ms`](Self::tx_watchdog_deadline_ms)) with a
    /// monotonic millisecond clock.
    ///
    /// A back end that stops taking tx requests leaves the front end nothing
    /// to wait for: no response and no event will come (seen with a Linux 6.1
    /// netback after `xl restore`; see docs/NET.md, "The tx watchdog"). So:
    /// responses are consumed first; then, with requests waiting and no
    /// response for half of [`Config::tx_stall_ms`], the back end is notified
    /// once more; after all of it, and at least half of it after that
    /// notification (a late check never faults at once), the connection fails with
    /// [`Fault::TxStalled`] and the caller reconnects as for any fault
    /// ([`reconnect`](Self::reconnect)). Suspend and resume restart the clock.
    /// Before acting, it asks whether the back end is away (its end of the
    /// event channel closed: unbound from its driver, e.g. Linux netback's
    /// dynamic unbind, which leaves its `state` node at Connected): then it
    /// waits, restarting the clock, for the back end to come back and
    /// re-attach to the rings (see [`watchdog_away_waits`](Self::watchdog_away_waits)).
    pub fn check_tx_progress(&mut self, now_ms: u64) -> Result<(), NetError> {
        let limit = self.nif().config.tx_stall_ms;
        if limit == 0 || self.check_io().is_err() {
            self.nif_mut().tx_watch = TxWatch::default();
            return Ok(());
        }
        self.poll_tx()?;
        let n = self.nif_mut();
        let Some(ring) = n.tx.ring.as_ref() else {
            n.tx_watch = TxWatch::default();
            return Ok(());
        };
        let cons = ring.front.rsp_cons();
        let waiting = ring.front.in_flight() > 0;
        let since = match n.tx_watch.since_ms {
            Some(t) if waiting && cons == n.tx_watch.rsp_cons => t,
            _ => {
                // Nothing waits, or the back end moved: (re)start the clock.
                n.tx_watch = TxWatch {
                    rsp_cons: cons,
                    since_ms: waiting.then_some(now_ms),
                    renotified_ms: None,
                };
                return Ok(());
            }
        };
        let verdict = watch_verdict(since, n.tx_watch.renotified_ms, limit, now_ms);
        if verdict != Watch::Wait && self.dev.backend_away() {
            // The back end closed its end of the event channel (unbound from
            // its driver): it is away, not stalled. Wait for it to come back
            // and re-attach to the rings; check again after another half.
            let n = self.nif_mut();
            n.watchdog_away_waits += 1;
            n.tx_watch.since_ms = Some(now_ms);
            n.tx_watch.renotified_ms = None;
            return Ok(());
        }
        let (n, io) = self.dev.parts_mut();
        match verdict {
            Watch::Wait => {}
            Watch::Renotify => {
                n.tx_watch.renotified_ms = Some(now_ms);
                n.watchdog_notifies += 1;
                io.notify();
            }
            Watch::Stalled => {
                n.tx_watch = TxWatch::default();
                n.watchdog_stalls += 1;
                let waited_ms = now_ms.saturating_sub(since);
                return Err(self.fail(Fault::TxStalled { waited_ms }));
            }
        }
        Ok(())
    }

    /// The rx watchdog; call it regularly (at least by
    /// [`rx_watchdog_deadline_ms`](Self::rx_watchdog_deadline_ms)) with a
    /// monotonic millisecond clock.
    ///
    /// A back end that stops filling rx buffers is as silent as one that
    /// stops taking tx requests, but an idle link is silent too. So the rx
    /// side counts as stalled only when, with buffers posted and no rx
    /// response (none consumed, none waiting) for [`Config::rx_stall_ms`], at
    /// least [`Config::rx_stall_min_tx`] of our tx frames completed meanwhile:
    /// we keep talking and the back end keeps taking it, yet nothing comes
    /// back. Half-way the back end is notified once more; then the connection
    /// fails with [`Fault::RxStalled`] and the caller recovers as from a tx
    /// stall ([`recover`](Self::recover)). Suspend and resume restart the clock.
    pub fn check_rx_progress(&mut self, now_ms: u64) -> Result<(), NetError> {
        let limit = self.nif().config.rx_stall_ms;
        let min_tx = self.nif().config.rx_stall_min_tx;
        if limit == 0 || self.check_io().is_err() {
            self.nif_mut().rx_watch = RxWatch::default();
            return Ok(());
        }
        let (n, io) = self.dev.parts_mut();
        let completed = n.tx.stats.completed;
        let ready = n.rx.has_ready();
        let Some(ring) = n.rx.ring.as_mut() else {
            n.rx_watch = RxWatch::default();
            return Ok(());
        };
        let cons = ring.front.rsp_cons();
        let posted = ring.front.in_flight() > 0;
        let waiting = match ring.front.unconsumed_responses(ring.page.buffer()) {
            Ok(w) => w > 0,
            Err(RingError::Backend(f)) => return Err(self.fail(Fault::RxRing(f))),
            Err(RingError::Full) => true,
        };
        let restart = |n: &mut Netif<P::Page>| {
            n.rx_watch = RxWatch {
                rsp_cons: cons,
                tx_completed: completed,
                since_ms: posted.then_some(now_ms),
                renotified_ms: None,
            };
        };
        let since = match n.rx_watch.since_ms {
            Some(t) if posted && !ready && !waiting && cons == n.rx_watch.rsp_cons => t,
            _ => {
                restart(n);
                return Ok(());
            }
        };
        let waited = now_ms.saturating_sub(since);
        let talked = completed.saturating_sub(n.rx_watch.tx_completed);
        match watch_verdict(since, n.rx_watch.renotified_ms, limit, now_ms) {
            Watch::Wait => {}
            Watch::Renotify => {
                // Half-way (once, so the deadline moves on): a back end that
                // missed our refill notification gets another one.
                n.rx_watch.renotified_ms = Some(now_ms);
                if talked > 0 {
                    n.watchdog_notifies += 1;
                    io.notify();
                }
            }
            Watch::Stalled if talked < min_tx => {
                // An idle (or one-way quiet) link: not a stall.
                restart(n);
            }
            Watch::Stalled => {
                n.rx_watch = RxWatch::default();
                n.rx_watchdog_stalls += 1;
                return Err(self.fail(Fault::RxStalled { waited_ms: waited }));
            }
        }
        Ok(())
    }

    /// When [`check_rx_progress`](Self::check_rx_progress) next has something
    /// to do (milliseconds, its clock), if rx buffers are posted.
    pub fn rx_watchdog_deadline_ms(&self) -> Option<u64> {
        let n = self.nif();
        let since = n.rx_watch.since_ms?;
        Some(watch_deadline(
            since,
            n.rx_watch.renotified_ms,
            n.config.rx_stall_ms,
        ))
    }

    /// When [`check_tx_progress`](Self::check_tx_progress) next has
    /// something to do (milliseconds, its clock), if tx requests are waiting.
    pub fn tx_watchdog_deadline_ms(&self) -> Option<u64> {
        let n = self.nif();
        let since = n.tx_watch.since_ms?;
        Some(watch_deadline(
            since,
            n.tx_watch.renotified_ms,
            n.config.tx_stall_ms,
        ))
    }

    /// Before the caller sleeps (`RING_FINAL_CHECK_FOR_RESPONSES` on both
    /// rings): asks for an event on the next response and returns whether
    /// responses are already pending (then do not sleep).
    pub fn rearm(&mut self) -> Result<bool, NetError> {
        self.check_io()?;
        if self.nif().rx.has_ready() {
            return Ok(true);
        }
        let n = self.nif_mut();
        let rx = match n.rx.ring.as_mut() {
            Some(r) => match r.front.final_check_for_responses(r.page.buffer()) {
                Ok(p) => p,
                Err(RingError::Backend(f)) => return Err(self.fail(Fault::RxRing(f))),
                Err(RingError::Full) => true,
            },
            None => false,
        };
        let n = self.nif_mut();
        let tx = match n.tx.ring.as_mut() {
            Some(r) => match r.front.final_check_for_responses(r.page.buffer()) {
                Ok(p) => p,
                Err(RingError::Backend(f)) => return Err(self.fail(Fault::TxRing(f))),
                Err(RingError::Full) => true,
            },
            None => false,
        };
        Ok(rx || tx)
    }
}

impl TxError {
    /// Whether retrying after [`NetFront::poll_tx`] may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, TxError::Busy)
    }
}
