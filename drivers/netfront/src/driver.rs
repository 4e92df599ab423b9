//! [`NetFront`]: one vif, its xenbus connection, rings, buffers and resume logic.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use grant_table::{Access, Ended, Grant};
use xen_abi::DomId;
use xen_abi::PAGE_SIZE;
use xen_abi::event_channel::EvtchnPort;
use xen_ring::{FrontRing, RingEntry, RingError, RingLayout, SharedRing};
use xenbus::{
    Action, BackendPath, DeviceClass, DeviceId, DriverEvent, Frontend, FrontendDevice,
    FrontendError, Handshake, Input, Phase, XenbusState, parse_backend_id,
};
use xenstore::{TxId, XsError};

use crate::ETH_HLEN;
use crate::error::{Fault, NetError, Node, ProbeError, RxError, SetupError, TxError};
use crate::held::{Held, RingHalf};
use crate::nodes::{self, BackendFeatures, DEFAULT_MTU, MacAddr};
use crate::platform::{EventChannel, GrantAccess, PageProvider, XenstoreAccess};
use crate::rx::{Rx, RxStats};
use crate::tx::{Tx, TxStats};
use crate::wire::{self, RxReq, RxRsp, TxReq, TxRsp};

/// Tuning of a [`NetFront`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Receive buffers (pages granted to the back end), 1..=256.
    pub rx_buffers: u16,
    /// Transmit pool pages, 1..=256.
    pub tx_buffers: u16,
    /// Re-post rx buffers once this many are free (one push and at most one
    /// notification per batch).
    pub rx_refill_batch: u16,
    /// Attempts of the xenstore transaction that publishes the rings.
    pub xs_attempts: u32,
    /// Tx watchdog: with tx requests waiting, the back end notified, and no tx
    /// response for this many milliseconds, the connection counts as stalled
    /// ([`Fault::TxStalled`]); half-way the back end is notified once more.
    /// 0 turns the watchdog off. See [`NetFront::check_tx_progress`].
    pub tx_stall_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rx_buffers: 256,
            tx_buffers: 256,
            rx_refill_batch: 32,
            xs_attempts: 16,
            tx_stall_ms: 2000,
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
    /// The last rx error swallowed by [`NetFront::poll_rx`].
    pub last_rx_error: Option<RxError>,
}

/// The event channel to the back end and its notification counter.
#[derive(Debug)]
pub(crate) struct Kick<E> {
    pub(crate) evtchn: E,
    pub(crate) port: Option<EvtchnPort>,
    pub(crate) notifies: u64,
}

impl<E: EventChannel> Kick<E> {
    pub(crate) fn notify(&mut self) {
        if let Some(port) = self.port {
            self.evtchn.notify(port);
            self.notifies += 1;
        }
    }
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
    /// Whether the half-way notification was sent.
    renotified: bool,
}

/// A Xen network front end for one vif (`device/vif/<id>`).
///
/// Drive it with [`start`](Self::start), then call
/// [`on_backend_state`](Self::on_backend_state) whenever the watch on
/// [`backend_state_path`](Self::backend_state_path) fires; move packets with
/// [`receive`](Self::receive)/[`transmit`](Self::transmit) (or the
/// `smoltcp::phy::Device` impl); around a save, call
/// [`suspend`](Self::suspend) and [`resume`](Self::resume).
pub struct NetFront<P: PageProvider, G, E> {
    pub(crate) pages: P,
    pub(crate) grants: G,
    pub(crate) kick: Kick<E>,
    config: Config,
    devid: u32,
    own_dir: String,
    backend: String,
    backend_id: DomId,
    mac: MacAddr,
    mtu: u32,
    features: BackendFeatures,
    xenbus: Frontend,
    pub(crate) rx: Rx<P::Page>,
    pub(crate) tx: Tx<P::Page>,
    live: bool,
    suspended: bool,
    reopen: bool,
    pub(crate) fault: Option<Fault>,
    last_setup_error: Option<SetupError>,
    setups: u64,
    last_rx_error: Option<RxError>,
    tx_watch: TxWatch,
    watchdog_notifies: u64,
    watchdog_stalls: u64,
}

/// Why the `backend`/`backend-id` pair could not be read.
enum BackendReadError {
    Xs(Node, XsError),
    Device(xenbus::DeviceError),
}

fn read_backend(
    xs: &mut impl XenstoreAccess,
    own_dir: &str,
    devid: u32,
) -> Result<(String, DomId), BackendReadError> {
    let raw = xs
        .read(TxId::NONE, &format!("{own_dir}/backend"))
        .map_err(|e| BackendReadError::Xs(Node::Backend, e))?;
    let id_raw = xs
        .read(TxId::NONE, &format!("{own_dir}/backend-id"))
        .map_err(|e| BackendReadError::Xs(Node::BackendId, e))?;
    let domid = parse_backend_id(&id_raw).map_err(BackendReadError::Device)?;
    let path = BackendPath::parse(&raw).map_err(BackendReadError::Device)?;
    let class = DeviceClass::parse("vif").map_err(BackendReadError::Device)?;
    let device = FrontendDevice {
        class,
        id: DeviceId(devid),
    };
    path.check(&device, domid, None)
        .map_err(BackendReadError::Device)?;
    Ok((String::from(path.as_str()), domid))
}

/// Reads an optional boolean feature node of the back end.
fn read_flag(
    xs: &mut impl XenstoreAccess,
    backend: &str,
    name: &'static str,
) -> Result<bool, SetupError> {
    match xs.read(TxId::NONE, &format!("{backend}/{name}")) {
        Ok(v) => nodes::parse_feature(&v).map_err(|err| SetupError::BadFeature { name, err }),
        Err(XsError::Enoent) => Ok(false),
        Err(e) => Err(SetupError::Xenstore(e)),
    }
}

fn read_features(
    xs: &mut impl XenstoreAccess,
    backend: &str,
) -> Result<BackendFeatures, SetupError> {
    let max_queues = match xs.read(TxId::NONE, &format!("{backend}/multi-queue-max-queues")) {
        Ok(v) => nodes::parse_u32(&v).map_err(|err| SetupError::BadFeature {
            name: "multi-queue-max-queues",
            err,
        })?,
        Err(XsError::Enoent) => 1,
        Err(e) => return Err(SetupError::Xenstore(e)),
    };
    Ok(BackendFeatures {
        rx_copy: read_flag(xs, backend, "feature-rx-copy")?,
        sg: read_flag(xs, backend, "feature-sg")?,
        split_event_channels: read_flag(xs, backend, "feature-split-event-channels")?,
        gso_tcpv4: read_flag(xs, backend, "feature-gso-tcpv4")?,
        ipv6_csum_offload: read_flag(xs, backend, "feature-ipv6-csum-offload")?,
        max_queues,
    })
}

/// Takes a page from `pages` and checks it is a whole page.
fn alloc_page<P: PageProvider>(pages: &mut P) -> Result<P::Page, SetupError> {
    let page = pages.alloc_page().ok_or(SetupError::OutOfPages)?;
    if page.area_len() < PAGE_SIZE {
        pages.free_page(page);
        return Err(SetupError::BadPage);
    }
    Ok(page)
}

/// Makes `held` a current grant of its page to `domid`: a stale grant (from
/// before a resume) or a spare page is granted anew; an empty slot gets a
/// fresh page. A current grant to `domid` is kept as it is.
fn ensure_granted<P: PageProvider, G: GrantAccess<Page = P::Page>>(
    held: &mut Held<P::Page>,
    pages: &mut P,
    grants: &mut G,
    domid: DomId,
    access: Access,
) -> Result<(), SetupError> {
    let page = match held.take() {
        Held::Granted(g) => {
            if !grants.with(|t| t.is_stale(&g)) && g.domid() == domid {
                *held = Held::Granted(g);
                return Ok(());
            }
            // Stale: returned at once. A current grant to another domain
            // cannot survive a release, but if it did: defer, use a new page.
            match grants.with(|t| t.end_access_or_defer(g)) {
                Ok(Ended::Released(p)) => p,
                Ok(Ended::Deferred(_)) => alloc_page(pages)?,
                Err((g, _)) => {
                    // A grant of another table: never ours to end; leak it.
                    drop(g);
                    alloc_page(pages)?
                }
            }
        }
        Held::Spare(p) => p,
        Held::Empty => alloc_page(pages)?,
    };
    match grants.with(|t| t.grant_access(domid, page, access)) {
        Ok(g) => {
            *held = Held::Granted(g);
            Ok(())
        }
        Err((p, e)) => {
            *held = Held::Spare(p);
            Err(SetupError::Grant(e))
        }
    }
}

/// Ends a grant after the back end let go (or after a resume, when it is
/// stale): the page comes back as a spare, or the table keeps it (deferred).
fn end_grant<Pg, G: GrantAccess<Page = Pg>>(grants: &mut G, g: Grant<Pg>) -> Held<Pg> {
    match grants.with(|t| t.end_access_or_defer(g)) {
        Ok(Ended::Released(p)) => Held::Spare(p),
        Ok(Ended::Deferred(_)) => Held::Empty,
        Err((g, _)) => {
            // Issued by another table: leaking is the safe failure.
            drop(g);
            Held::Empty
        }
    }
}

impl<P, G, E> NetFront<P, G, E>
where
    P: PageProvider,
    G: GrantAccess<Page = P::Page>,
    E: EventChannel,
{
    /// Probes `device/vif/<devid>`: reads and validates `backend`,
    /// `backend-id`, `mac` and the optional `mtu` (default 1500). Allocates
    /// the reassembly and transmit buffers; grants nothing yet.
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
        let own_dir = format!("device/vif/{devid}");
        let (backend, backend_id) = read_backend(xs, &own_dir, devid).map_err(|e| match e {
            BackendReadError::Xs(node, err) => ProbeError::Xenstore { node, err },
            BackendReadError::Device(d) => ProbeError::Device(d),
        })?;
        let mac_raw = xs
            .read(TxId::NONE, &format!("{own_dir}/mac"))
            .map_err(|err| ProbeError::Xenstore {
                node: Node::Mac,
                err,
            })?;
        let mac = MacAddr::parse(&mac_raw).map_err(ProbeError::Mac)?;
        let mtu = match xs.read(TxId::NONE, &format!("{own_dir}/mtu")) {
            Ok(v) => nodes::parse_mtu(&v).map_err(ProbeError::Mtu)?,
            Err(XsError::Enoent) => DEFAULT_MTU,
            Err(err) => {
                return Err(ProbeError::Xenstore {
                    node: Node::Mtu,
                    err,
                });
            }
        };
        let max_frame = mtu as usize + ETH_HLEN;
        Ok(Self {
            pages,
            grants,
            kick: Kick {
                evtchn,
                port: None,
                notifies: 0,
            },
            config,
            devid,
            own_dir,
            backend,
            backend_id,
            mac,
            mtu,
            features: BackendFeatures::default(),
            xenbus: Frontend::new(Handshake::ConnectedAfterSetup),
            rx: Rx::new(
                usize::from(config.rx_buffers),
                usize::from(config.rx_refill_batch),
            ),
            tx: Tx::new(usize::from(config.tx_buffers), max_frame),
            live: false,
            suspended: false,
            reopen: false,
            fault: None,
            last_setup_error: None,
            setups: 0,
            last_rx_error: None,
            tx_watch: TxWatch::default(),
            watchdog_notifies: 0,
            watchdog_stalls: 0,
        })
    }

    // --- accessors -----------------------------------------------------------

    /// The vif's MAC address (from `device/vif/<id>/mac`).
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// The IP MTU (from `device/vif/<id>/mtu`, default 1500).
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// The largest Ethernet frame (without FCS) [`transmit`](Self::transmit)
    /// accepts now: MTU + 14, and at most one page without `feature-sg`.
    pub fn max_frame(&self) -> usize {
        self.tx.frame_limit()
    }

    /// What the back end advertised at the last setup.
    pub fn features(&self) -> BackendFeatures {
        self.features
    }

    /// The back end's directory.
    pub fn backend_path(&self) -> &str {
        &self.backend
    }

    /// The back end's domain.
    pub fn backend_id(&self) -> DomId {
        self.backend_id
    }

    /// `<backend>/state`, the node to watch. It may change after a resume:
    /// re-register the watch if it does.
    pub fn backend_state_path(&self) -> String {
        format!("{}/state", self.backend)
    }

    /// Our device directory, `device/vif/<id>` (relative to the domain's home).
    pub fn device_dir(&self) -> &str {
        &self.own_dir
    }

    /// The vif's id.
    pub fn devid(&self) -> u32 {
        self.devid
    }

    /// The xenbus phase.
    pub fn phase(&self) -> Phase {
        self.xenbus.phase()
    }

    /// Whether packets can flow (the back end is Connected, no fault, not
    /// suspended).
    pub fn is_up(&self) -> bool {
        self.live && !self.suspended && self.fault.is_none()
    }

    /// The fault that stopped the connection, if any.
    pub fn fault(&self) -> Option<Fault> {
        self.fault
    }

    /// Why the last ring setup failed, if it did.
    pub fn last_setup_error(&self) -> Option<SetupError> {
        self.last_setup_error
    }

    /// The event channel to the back end (bind its upcall to whatever calls
    /// [`receive`](Self::receive)/[`poll_tx`](Self::poll_tx)).
    pub fn event_channel(&self) -> Option<EvtchnPort> {
        self.kick.port
    }

    /// Frames sent and not yet completed.
    pub fn tx_in_flight(&self) -> usize {
        self.tx.in_flight()
    }

    /// The rings' private indices, for debug output (compare them with the
    /// back end's view, e.g. Linux netback's debugfs `io_ring_q0`).
    pub fn ring_indices(&self) -> RingIndices {
        RingIndices {
            rx: self.rx.ring.as_ref().map(|r| RingIndex {
                req_prod: r.front.req_prod_pvt(),
                rsp_cons: r.front.rsp_cons(),
            }),
            tx: self.tx.ring.as_ref().map(|r| RingIndex {
                req_prod: r.front.req_prod_pvt(),
                rsp_cons: r.front.rsp_cons(),
            }),
        }
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            rx: self.rx.stats,
            tx: self.tx.stats,
            notifies: self.kick.notifies,
            watchdog_notifies: self.watchdog_notifies,
            watchdog_stalls: self.watchdog_stalls,
            setups: self.setups,
            last_rx_error: self.last_rx_error,
        }
    }

    /// The page provider (e.g. for the kernel to account pages).
    pub fn pages(&self) -> &P {
        &self.pages
    }

    /// The grant-table access.
    pub fn grants_mut(&mut self) -> &mut G {
        &mut self.grants
    }

    // --- xenbus ----------------------------------------------------------------

    /// Starts connecting: writes Initialising, then acts on the back end's
    /// current state (setting up the rings if it already waits in InitWait).
    pub fn start(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), NetError> {
        self.drive(xs, Input::Driver(DriverEvent::Connect))?;
        self.on_backend_state(xs)
    }

    /// Reads `<backend>/state` and feeds it to the xenbus state machine,
    /// carrying out what follows (ring setup, release, reconnect). Call it
    /// whenever the watch on [`backend_state_path`](Self::backend_state_path)
    /// fires (spurious calls are harmless). A garbage state value is an
    /// error and changes nothing.
    pub fn on_backend_state(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), NetError> {
        let input = match xs.read(TxId::NONE, &self.backend_state_path()) {
            Ok(v) => {
                Input::Backend(XenbusState::parse(&v).map_err(FrontendError::BadBackendState)?)
            }
            Err(XsError::Enoent) => Input::BackendVanished,
            Err(e) => return Err(e.into()),
        };
        self.drive(xs, input)
    }

    /// Closes the device for good (the back end is walked through
    /// Closing/Closed; grants are ended once it has let go).
    pub fn close(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), NetError> {
        self.reopen = false;
        self.drive(xs, Input::Driver(DriverEvent::RequestClose))
    }

    /// Tears the connection down and connects again (after a [`Fault`]): the
    /// back end is walked through Closing/Closed, every grant is ended once it
    /// has let go, and a fresh connection is set up.
    pub fn reconnect(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), NetError> {
        match self.xenbus.phase() {
            Phase::Idle | Phase::Closed => {
                self.reopen = false;
                self.start(xs)
            }
            _ => {
                self.reopen = true;
                self.drive(xs, Input::Driver(DriverEvent::RequestClose))
            }
        }
    }

    /// The domain is about to suspend: stops I/O. Call before
    /// `SCHEDOP_shutdown(SHUTDOWN_suspend)`.
    pub fn suspend(&mut self) -> Result<(), NetError> {
        self.xenbus
            .handle(Input::Driver(DriverEvent::Suspend))
            .map_err(NetError::Xenbus)?;
        self.suspended = true;
        // Time stands still for the guest while it is saved; start afresh after.
        self.tx_watch = TxWatch::default();
        Ok(())
    }

    /// The domain resumed. `new_domain` false (the suspend was cancelled):
    /// nothing is touched, I/O continues on the same rings and grants.
    /// `new_domain` true: call after the kernel has re-mapped the grant table
    /// and called `GrantTable::reset_for_resume`, and resumed xenstore. The old
    /// rings are dropped (their grants are stale), Initialising is written,
    /// and once the (possibly different) back end waits in InitWait new rings
    /// are set up, every rx buffer is granted again before it is posted, and
    /// frames that were in flight are sent again.
    pub fn resume(
        &mut self,
        xs: &mut impl XenstoreAccess,
        new_domain: bool,
    ) -> Result<(), NetError> {
        self.drive(xs, Input::Driver(DriverEvent::Resume { new_domain }))?;
        self.suspended = false;
        self.tx_watch = TxWatch::default();
        if new_domain {
            self.on_backend_state(xs)?;
        }
        Ok(())
    }

    /// Feeds one input and carries out the resulting actions (and those of
    /// the driver events they lead to).
    fn drive(&mut self, xs: &mut impl XenstoreAccess, input: Input) -> Result<(), NetError> {
        let mut next = Some(input);
        let mut first_err: Option<NetError> = None;
        while let Some(input) = next.take() {
            let actions = self.xenbus.handle(input)?;
            for action in &actions {
                match *action {
                    Action::WriteOwnState(s) => {
                        let path = format!("{}/state", self.own_dir);
                        if let Err(e) = xs.write(TxId::NONE, &path, s.as_str().as_bytes()) {
                            first_err.get_or_insert(NetError::Xenstore(e));
                        }
                    }
                    Action::SetupRings => {
                        let event = match self.setup(xs) {
                            Ok(()) => {
                                self.last_setup_error = None;
                                self.setups += 1;
                                DriverEvent::SetupDone
                            }
                            Err(e) => {
                                self.last_setup_error = Some(e);
                                first_err.get_or_insert(NetError::Setup(e));
                                DriverEvent::SetupFailed
                            }
                        };
                        next = Some(Input::Driver(event));
                    }
                    Action::Connected => self.on_connected(),
                    Action::Disconnected => self.live = false,
                    Action::ReleaseGrants => self.release_grants(),
                    Action::DiscardStaleRings => self.discard_stale_rings(),
                    Action::Reinitialise => self.reinitialise(xs),
                    Action::Closed => {
                        self.free_pages();
                        if self.reopen {
                            self.reopen = false;
                            next = Some(Input::Driver(DriverEvent::Connect));
                        }
                    }
                    Action::Removed => self.free_pages(),
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// `Action::SetupRings`.
    fn setup(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), SetupError> {
        // A fault belonged to the old rings.
        self.fault = None;
        let (backend, domid) =
            read_backend(xs, &self.own_dir, self.devid).map_err(|e| match e {
                BackendReadError::Xs(_, err) => SetupError::Xenstore(err),
                BackendReadError::Device(d) => SetupError::Device(d),
            })?;
        self.backend = backend;
        self.backend_id = domid;
        let features = read_features(xs, &self.backend)?;
        self.features = features;
        if !features.rx_copy {
            return Err(SetupError::NoRxCopy);
        }
        self.tx.sg = features.sg;
        // The MAC normally stays; re-read it in case the toolstack changed it.
        if let Ok(v) = xs.read(TxId::NONE, &format!("{}/mac", self.own_dir))
            && let Ok(mac) = MacAddr::parse(&v)
        {
            self.mac = mac;
        }

        // Rings: initialised before they are granted.
        if self.tx.ring.is_none() {
            self.tx.ring = Some(self.new_ring::<TxReq, TxRsp>(wire::tx_layout(), domid)?);
        }
        if self.rx.ring.is_none() {
            self.rx.ring = Some(self.new_ring::<RxReq, RxRsp>(wire::rx_layout(), domid)?);
        }
        if self.kick.port.is_none() {
            let port = self
                .kick
                .evtchn
                .alloc_unbound(domid)
                .map_err(SetupError::EventChannel)?;
            self.kick.port = Some(port);
        }

        // Every buffer is granted to this back end before any request naming
        // it is posted: stale grants from before a resume are replaced here.
        for b in &mut self.rx.bufs {
            ensure_granted(
                &mut b.held,
                &mut self.pages,
                &mut self.grants,
                domid,
                Access::ReadWrite,
            )?;
        }
        for s in &mut self.tx.slots {
            ensure_granted(
                &mut s.held,
                &mut self.pages,
                &mut self.grants,
                domid,
                Access::ReadOnly,
            )?;
        }
        let grants = &mut self.grants;
        let mut current = |h: &Held<P::Page>| {
            h.grant()
                .is_some_and(|g| g.domid() == domid && !grants.with(|t| t.is_stale(g)))
        };
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

        self.publish(xs)
    }

    /// Allocates, initialises and grants one ring page.
    fn new_ring<Req: RingEntry, Rsp: RingEntry>(
        &mut self,
        layout: Result<RingLayout, xen_ring::LayoutError>,
        domid: DomId,
    ) -> Result<RingHalf<Req, Rsp, P::Page>, SetupError> {
        let layout = layout.map_err(SetupError::Layout)?;
        let page = alloc_page(&mut self.pages)?;
        let front = match FrontRing::init(layout, &page) {
            Ok(f) => f,
            Err(e) => {
                self.pages.free_page(page);
                return Err(SetupError::Layout(e));
            }
        };
        match self
            .grants
            .with(|t| t.grant_access(domid, page, Access::ReadWrite))
        {
            Ok(page) => Ok(RingHalf { page, front }),
            Err((page, e)) => {
                self.pages.free_page(page);
                Err(SetupError::Grant(e))
            }
        }
    }

    /// Writes the connection nodes in one transaction, retrying on `EAGAIN`.
    ///
    /// Choices written (see the crate docs): `request-rx-copy=1` (the only rx
    /// mode we implement), `feature-rx-notify=1` (we notify after posting rx
    /// requests; netback requires it), `feature-sg=1` (we reassemble multi-slot
    /// packets), `feature-no-csum-offload=0` (we complete blank checksums in
    /// software), and no GSO, IPv6 offload, multicast control or multi-queue.
    fn publish(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), SetupError> {
        // `setup` created all three just before; without them there is
        // nothing to publish (reported as the allocation failure it implies).
        let (Some(tx), Some(rx), Some(port)) = (&self.tx.ring, &self.rx.ring, self.kick.port)
        else {
            return Err(SetupError::OutOfPages);
        };
        let tx_ref = format!("{}", tx.page.gref());
        let rx_ref = format!("{}", rx.page.gref());
        let port = format!("{port}");
        let dir = &self.own_dir;
        let nodes: [(String, &[u8]); 7] = [
            (format!("{dir}/tx-ring-ref"), tx_ref.as_bytes()),
            (format!("{dir}/rx-ring-ref"), rx_ref.as_bytes()),
            (format!("{dir}/event-channel"), port.as_bytes()),
            (format!("{dir}/request-rx-copy"), b"1"),
            (format!("{dir}/feature-rx-notify"), b"1"),
            (format!("{dir}/feature-sg"), b"1"),
            (format!("{dir}/feature-no-csum-offload"), b"0"),
        ];
        for _ in 0..self.config.xs_attempts.max(1) {
            let tx = match xs.transaction_start() {
                Ok(t) => t,
                Err(XsError::Eagain) => continue,
                Err(e) => return Err(SetupError::Xenstore(e)),
            };
            let mut result = Ok(());
            for (path, value) in &nodes {
                result = xs.write(tx, path, value);
                if result.is_err() {
                    break;
                }
            }
            match result {
                Ok(()) => match xs.transaction_end(tx, true) {
                    Ok(()) => return Ok(()),
                    Err(XsError::Eagain) => continue,
                    Err(e) => return Err(SetupError::Xenstore(e)),
                },
                Err(e) => {
                    // Abort; its own outcome changes nothing we report.
                    let _ = xs.transaction_end(tx, false);
                    if e != XsError::Eagain {
                        return Err(SetupError::Xenstore(e));
                    }
                }
            }
        }
        Err(SetupError::TransactionRetries)
    }

    /// `Action::Connected`: the back end mapped our rings.
    fn on_connected(&mut self) {
        self.live = true;
        // Tell the back end about the rx requests and re-sent frames posted
        // during setup (it may have missed them before binding the channel).
        self.kick.notify();
    }

    /// `Action::ReleaseGrants`: the back end is Closing/Closed.
    fn release_grants(&mut self) {
        self.live = false;
        if let Some(port) = self.kick.port.take() {
            self.kick.evtchn.close(port);
        }
        if let Some(r) = self.tx.ring.take() {
            self.end_ring_page(r.page);
        }
        if let Some(r) = self.rx.ring.take() {
            self.end_ring_page(r.page);
        }
        self.tx.drop_in_flight();
        self.tx.forget_free();
        self.rx.forget_ring_state();
        let helds = self
            .rx
            .bufs
            .iter_mut()
            .map(|b| &mut b.held)
            .chain(self.tx.slots.iter_mut().map(|s| &mut s.held));
        for h in helds {
            *h = match h.take() {
                Held::Granted(g) => end_grant(&mut self.grants, g),
                other => other,
            };
        }
    }

    fn end_ring_page(&mut self, g: Grant<P::Page>) {
        if let Held::Spare(p) = end_grant(&mut self.grants, g) {
            self.pages.free_page(p);
        }
    }

    /// `Action::DiscardStaleRings`: resumed in a new domain; the rings, their
    /// grants and the event channel belong to the old domain.
    fn discard_stale_rings(&mut self) {
        self.live = false;
        self.kick.port = None;
        if let Some(r) = self.tx.ring.take() {
            self.end_ring_page(r.page);
        }
        if let Some(r) = self.rx.ring.take() {
            self.end_ring_page(r.page);
        }
        // Buffers keep their (stale) grants until setup grants them anew; tx
        // frames in flight stay for re-sending.
        self.rx.forget_ring_state();
        self.tx.forget_free();
    }

    /// `Action::Reinitialise`: per-connection state is reset; the back end
    /// may have moved (re-read, best effort: setup reads it again).
    fn reinitialise(&mut self, xs: &mut impl XenstoreAccess) {
        self.fault = None;
        self.live = false;
        if let Ok((backend, domid)) = read_backend(xs, &self.own_dir, self.devid) {
            self.backend = backend;
            self.backend_id = domid;
        }
    }

    /// Returns every page the driver holds to the provider (the device is
    /// closed or gone).
    fn free_pages(&mut self) {
        let mut spare: Vec<P::Page> = Vec::new();
        let helds = self
            .rx
            .bufs
            .iter_mut()
            .map(|b| &mut b.held)
            .chain(self.tx.slots.iter_mut().map(|s| &mut s.held));
        for h in helds {
            let h = match h.take() {
                Held::Granted(g) => end_grant(&mut self.grants, g),
                other => other,
            };
            if let Held::Spare(p) = h {
                spare.push(p);
            }
        }
        for p in spare {
            self.pages.free_page(p);
        }
        self.tx.drop_in_flight();
        self.tx.forget_free();
        self.rx.forget_ring_state();
    }

    // --- data path -------------------------------------------------------------

    fn check_io(&self) -> Result<(), NetError> {
        if self.suspended {
            return Err(NetError::Suspended);
        }
        if let Some(f) = self.fault {
            return Err(NetError::Faulted(f));
        }
        if !self.live {
            return Err(NetError::NotConnected);
        }
        Ok(())
    }

    fn fail(&mut self, f: Fault) -> NetError {
        self.fault = Some(f);
        NetError::Faulted(f)
    }

    /// Re-posts free rx buffers (in a batch) and notifies if the back end asks.
    fn refill(&mut self, force: bool) -> Result<(), NetError> {
        match self.rx.refill(force) {
            Ok(true) => {
                self.kick.notify();
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
        let r = self.rx.assemble();
        let refill = self.refill(false);
        match r {
            Err(NetError::Faulted(f)) => Err(self.fail(f)),
            Err(e) => {
                if let NetError::Rx(rx) = e {
                    self.last_rx_error = Some(rx);
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
        if !self.rx.has_ready() {
            self.check_io()?;
            if !self.assemble_one()? {
                return Ok(None);
            }
        }
        Ok(self.rx.consume(f))
    }

    /// Makes a packet ready if one is complete, dropping (and counting, see
    /// [`Stats::last_rx_error`]) invalid ones on the way. Returns whether a
    /// packet is ready. Packet errors are swallowed; faults are returned.
    pub fn poll_rx(&mut self) -> Result<bool, NetError> {
        if self.rx.has_ready() {
            return Ok(true);
        }
        self.check_io()?;
        loop {
            match self.assemble_one() {
                Ok(ready) => return Ok(ready),
                Err(NetError::Rx(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Consumes tx responses, freeing completed frames' pool pages. Returns
    /// the number of responses consumed.
    pub fn poll_tx(&mut self) -> Result<u32, NetError> {
        self.check_io()?;
        self.tx.reclaim().map_err(|f| self.fail(f))
    }

    /// Whether a frame of `len` bytes can be sent now (after reclaiming).
    pub fn can_transmit(&mut self, len: usize) -> bool {
        self.poll_tx().is_ok() && len <= self.tx.frame_limit() && self.tx.can_send(len)
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
        self.tx.reclaim().map_err(|f| self.fail(f))?;
        match self.tx.send(len, f) {
            Ok(Ok((r, notify))) => {
                if notify {
                    self.kick.notify();
                }
                Ok(r)
            }
            Ok(Err(e)) => Err(NetError::Tx(e)),
            Err(fault) => Err(self.fail(fault)),
        }
    }

    /// The tx watchdog; call it regularly (at least by
    /// [`tx_watchdog_deadline_ms`](Self::tx_watchdog_deadline_ms)) with a
    /// monotonic millisecond clock.
    ///
    /// A back end that stops taking tx requests leaves the front end nothing
    /// to wait for: no response and no event will come. This was seen with a
    /// Linux 6.1 netback after `xl restore`: its end of the event channel
    /// stayed masked after the first interrupt, so it never heard our later
    /// notifications, while our requests sat on the ring (its debugfs ring
    /// dump showed `req prod 9 cons 1 event 2`). So: responses are consumed
    /// first; then, with requests waiting and no response for half of
    /// [`Config::tx_stall_ms`], the back end is notified once more (in case a
    /// notification was lost); after all of it, the connection is failed with
    /// [`Fault::TxStalled`], and the caller reconnects as for any fault
    /// ([`reconnect`](Self::reconnect)): the back end tears down its end,
    /// event channel included, and frames still in flight are sent again on
    /// the new rings. Suspend and resume restart the clock.
    pub fn check_tx_progress(&mut self, now_ms: u64) -> Result<(), NetError> {
        let limit = self.config.tx_stall_ms;
        if limit == 0 || self.check_io().is_err() {
            self.tx_watch = TxWatch::default();
            return Ok(());
        }
        self.poll_tx()?;
        let Some(ring) = self.tx.ring.as_ref() else {
            self.tx_watch = TxWatch::default();
            return Ok(());
        };
        let cons = ring.front.rsp_cons();
        let since = match self.tx_watch.since_ms {
            Some(t) if ring.front.in_flight() > 0 && cons == self.tx_watch.rsp_cons => t,
            _ => {
                // Nothing waits, or the back end moved: (re)start the clock.
                self.tx_watch = TxWatch {
                    rsp_cons: cons,
                    since_ms: (ring.front.in_flight() > 0).then_some(now_ms),
                    renotified: false,
                };
                return Ok(());
            }
        };
        let waited = now_ms.saturating_sub(since);
        if waited >= limit {
            self.tx_watch = TxWatch::default();
            self.watchdog_stalls += 1;
            return Err(self.fail(Fault::TxStalled { waited_ms: waited }));
        }
        if waited >= limit / 2 && !self.tx_watch.renotified {
            self.tx_watch.renotified = true;
            self.watchdog_notifies += 1;
            self.kick.notify();
        }
        Ok(())
    }

    /// When [`check_tx_progress`](Self::check_tx_progress) next has
    /// something to do (milliseconds, its clock), if tx requests are waiting.
    pub fn tx_watchdog_deadline_ms(&self) -> Option<u64> {
        let since = self.tx_watch.since_ms?;
        let limit = self.config.tx_stall_ms;
        Some(if self.tx_watch.renotified {
            since.saturating_add(limit)
        } else {
            since.saturating_add(limit / 2)
        })
    }

    /// Before the caller sleeps (`RING_FINAL_CHECK_FOR_RESPONSES` on both
    /// rings): asks for an event on the next response and returns whether
    /// responses are already pending (then do not sleep).
    pub fn rearm(&mut self) -> Result<bool, NetError> {
        self.check_io()?;
        if self.rx.has_ready() {
            return Ok(true);
        }
        let rx = match self.rx.ring.as_mut() {
            Some(r) => match r.front.final_check_for_responses(r.page.buffer()) {
                Ok(p) => p,
                Err(RingError::Backend(f)) => return Err(self.fail(Fault::RxRing(f))),
                Err(RingError::Full) => true,
            },
            None => false,
        };
        let tx = match self.tx.ring.as_mut() {
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
