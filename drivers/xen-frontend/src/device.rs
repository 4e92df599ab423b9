//! [`Device`]: one xenbus device's connection, carried out for any driver (handshake, close, reconnect, suspend, resume).
//!
//! The [`xenbus::Frontend`] state machine decides; this module carries out its
//! [`Action`]s with the platform ([`Resources`]) and asks the [`Driver`] only
//! for what is its own: the rings and nodes of a connection, what to do once
//! connected, what to release when the back end lets go, what to drop as
//! stale after a restore.
//!
//! Resume (Linux's `xenbus_dev_resume` does the same): `Resume { new_domain:
//! false }` (a cancelled suspend) touches nothing. After a restore or
//! migration (`new_domain: true`, once the kernel re-mapped and reset the grant
//! table and resumed xenstore), in this order: the driver drops the old rings
//! without ending access ([`Driver::discard_stale`]); the back end is re-read;
//! Initialising is written; when the (possibly different) back end waits in
//! InitWait, [`Driver::setup`] grants every page afresh before it posts a
//! request; the nodes are published in one transaction; Connected or
//! Initialised is announced; the back end's Connected makes the device live.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Display;

use xen_abi::DomId;
use xen_abi::event_channel::EvtchnPort;
use xenbus::{
    Action, BackendPath, DeviceClass, DeviceId, DriverEvent, Frontend, FrontendDevice, Handshake,
    Input, Phase, Rebind, XenbusState, parse_backend_id,
};
use xenstore::{TxId, XsError};

use crate::error::{DeviceNode, Error, ProbeError, SetupError};
use crate::held::Resources;
use crate::platform::{EventChannel, GrantAccess, PageProvider, XenstoreAccess};
use crate::recovery::{Broken, Health, RecoveryConfig};

/// The back end a device is connected (or connecting) to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Its directory, e.g. `/local/domain/0/backend/vif/5/0`.
    pub path: String,
    /// Its domain.
    pub domid: DomId,
}

impl Backend {
    /// `<backend>/state`, the node to watch.
    pub fn state_path(&self) -> String {
        format!("{}/state", self.path)
    }
}

/// `device/<class>/<id>`, relative to the domain's home.
pub fn device_dir(class: &str, devid: u32) -> String {
    format!("device/{class}/{devid}")
}

/// Reads and checks `device/<class>/<devid>/{backend,backend-id}`: the path
/// must be a back-end directory of that class and id in that domain.
pub fn read_backend(
    xs: &mut impl XenstoreAccess,
    class: &str,
    devid: u32,
) -> Result<Backend, ProbeError> {
    let dir = device_dir(class, devid);
    let raw = xs
        .read(TxId::NONE, &format!("{dir}/backend"))
        .map_err(|err| ProbeError::Xenstore {
            node: DeviceNode::Backend,
            err,
        })?;
    let id_raw = xs
        .read(TxId::NONE, &format!("{dir}/backend-id"))
        .map_err(|err| ProbeError::Xenstore {
            node: DeviceNode::BackendId,
            err,
        })?;
    let domid = parse_backend_id(&id_raw).map_err(ProbeError::Device)?;
    let path = BackendPath::parse(&raw).map_err(ProbeError::Device)?;
    let device = FrontendDevice {
        class: DeviceClass::parse(class).map_err(ProbeError::Device)?,
        id: DeviceId(devid),
    };
    path.check(&device, domid, None)
        .map_err(ProbeError::Device)?;
    Ok(Backend {
        path: String::from(path.as_str()),
        domid,
    })
}

/// The nodes a connection publishes in our device directory (names relative
/// to it), written in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nodes {
    entries: Vec<(String, String)>,
}

impl Nodes {
    /// No nodes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `<name> = <value>`.
    pub fn push(&mut self, name: impl Display, value: impl Display) {
        self.entries.push((format!("{name}"), format!("{value}")));
    }

    /// The nodes, in order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }
}

/// What a device class adds to the shared runtime.
///
/// The runtime calls these while carrying out the xenbus state machine's
/// actions; the driver owns its rings and buffers, the runtime owns the
/// platform ([`Resources`]: pages, grants, the event channel).
pub trait Driver<P, G, E>
where
    P: PageProvider,
    G: GrantAccess<Page = P::Page>,
    E: EventChannel,
{
    /// The device class: `device/<CLASS>/<id>` (`vif`, `vbd`).
    const CLASS: &'static str;
    /// Who announces first (netfront: Connected after setup; blkfront:
    /// Initialised first).
    const HANDSHAKE: Handshake;
    /// What to do when the back end shows InitWait/Initialised while we are
    /// connected (it was unbound and bound again): reset the connection (the
    /// default) or keep the rings for it to re-attach ([`Rebind::Reattach`],
    /// Linux netback's dynamic unbind/bind; see the `xenbus` crate).
    const REBIND: Rebind = Rebind::Reset;

    /// Sets up a connection to `backend`: reads its features, creates and
    /// grants the rings, grants every page a request names BEFORE posting it
    /// (stale grants from before a restore are replaced), posts what is
    /// pending, and lists in `nodes` what to publish (ring references,
    /// features). The runtime adds `event-channel` and publishes everything
    /// in one transaction. `port` is the channel, already allocated.
    fn setup(
        &mut self,
        io: &mut Resources<P, G, E>,
        xs: &mut impl XenstoreAccess,
        backend: &Backend,
        port: EvtchnPort,
        nodes: &mut Nodes,
    ) -> Result<(), SetupError>;

    /// The back end is Connected: I/O may flow. A driver reads here what the
    /// back end publishes only when it connects (blkback: `sectors`, most
    /// features). The default notifies the back end (it may have missed
    /// requests posted before it bound the channel).
    fn connected(
        &mut self,
        io: &mut Resources<P, G, E>,
        xs: &mut impl XenstoreAccess,
        backend: &Backend,
    ) {
        let _ = (xs, backend);
        io.notify();
    }

    /// The back end left Connected; its close handshake follows.
    fn disconnected(&mut self) {}

    /// The back end is Closing or Closed: it has unmapped our pages, or the
    /// grant table defers those it still maps. End every grant (ring pages
    /// with [`Resources::end_ring`]). The event channel is already closed.
    fn release(&mut self, io: &mut Resources<P, G, E>);

    /// Resumed in a new domain: rings, grants and the event channel belong to
    /// the old domain. Forget the rings' state (end their grants: they are
    /// stale, so the pages come back at once); keep what must be re-issued.
    fn discard_stale(&mut self, io: &mut Resources<P, G, E>);

    /// Per-connection state is reset before a new connection (a fault of the
    /// old one is forgotten). The default does nothing.
    fn reinitialise(&mut self) {}

    /// The device is closed for good or removed: return every page.
    fn free(&mut self, io: &mut Resources<P, G, E>);
}

/// One front-end device: the xenbus connection, the platform resources and
/// the driver.
pub struct Device<D, P, G, E> {
    driver: D,
    io: Resources<P, G, E>,
    xenbus: Frontend,
    devid: u32,
    own_dir: String,
    backend: Backend,
    reopen: bool,
    last_setup_error: Option<SetupError>,
    setups: u64,
    reattaches: u64,
    xs_attempts: usize,
    health: Health,
}

impl<D, P, G, E> Device<D, P, G, E>
where
    D: Driver<P, G, E>,
    P: PageProvider,
    G: GrantAccess<Page = P::Page>,
    E: EventChannel,
{
    /// Probes `device/<class>/<devid>` (its back end) for `driver`. Grants
    /// nothing yet. `xs_attempts`: tries of the publishing transaction.
    pub fn new(
        xs: &mut impl XenstoreAccess,
        devid: u32,
        driver: D,
        io: Resources<P, G, E>,
        xs_attempts: usize,
    ) -> Result<Self, ProbeError> {
        let backend = read_backend(xs, D::CLASS, devid)?;
        Ok(Self {
            driver,
            io,
            xenbus: Frontend::new(D::HANDSHAKE).with_rebind(D::REBIND),
            devid,
            own_dir: device_dir(D::CLASS, devid),
            backend,
            reopen: false,
            last_setup_error: None,
            setups: 0,
            reattaches: 0,
            xs_attempts: xs_attempts.max(1),
            health: Health::default(),
        })
    }

    // --- accessors -------------------------------------------------------------

    /// The driver.
    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// The driver, mutably.
    pub fn driver_mut(&mut self) -> &mut D {
        &mut self.driver
    }

    /// The resources.
    pub fn resources(&self) -> &Resources<P, G, E> {
        &self.io
    }

    /// The driver and the resources at once (a data path needs both).
    pub fn parts_mut(&mut self) -> (&mut D, &mut Resources<P, G, E>) {
        (&mut self.driver, &mut self.io)
    }

    /// The device id.
    pub fn devid(&self) -> u32 {
        self.devid
    }

    /// Our device directory, `device/<class>/<id>`.
    pub fn device_dir(&self) -> &str {
        &self.own_dir
    }

    /// The back end (as last read).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// `<backend>/state`, the node to watch. It may change after a resume
    /// (the path names our domid): re-register the watch then.
    pub fn backend_state_path(&self) -> String {
        self.backend.state_path()
    }

    /// The xenbus phase.
    pub fn phase(&self) -> Phase {
        self.xenbus.phase()
    }

    /// Whether the back end is Connected to our current rings (and we are not
    /// suspended): the one source of "may I/O flow".
    pub fn is_connected(&self) -> bool {
        self.xenbus.phase() == Phase::Connected
    }

    /// Whether the back end is away while we stay connected: it showed
    /// InitWait/Initialised after Connected ([`Rebind::Reattach`]) and has not
    /// re-attached yet. Requests posted meanwhile wait in the rings for it.
    pub fn is_reattaching(&self) -> bool {
        self.xenbus.is_reattaching()
    }

    /// Times the back end re-attached to our rings (see
    /// [`is_reattaching`](Self::is_reattaching)).
    pub fn reattaches(&self) -> u64 {
        self.reattaches
    }

    /// Whether a connected device's back end is away: it closed its end of
    /// the event channel (unbound from its driver) while its `state` node may
    /// still say Connected. Requests wait in the rings for it to come back
    /// (and re-attach, [`Rebind::Reattach`]); a watchdog should not count this
    /// time as a stall. Asks the platform (a hypercall in the guest): call it
    /// only when a watchdog is about to act.
    pub fn backend_away(&mut self) -> bool {
        self.is_connected() && self.io.kick_mut().peer_bound() == Some(false)
    }

    /// The back end's state as last read (None: not read yet, or its node
    /// was missing).
    pub fn backend_state(&self) -> Option<XenbusState> {
        match self.xenbus.backend() {
            xenbus::frontend::BackendSeen::State(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the domain is between [`suspend`](Self::suspend) and
    /// [`resume`](Self::resume).
    pub fn is_suspended(&self) -> bool {
        self.xenbus.phase() == Phase::Suspended
    }

    /// The event channel to the back end, while one exists.
    pub fn event_channel(&self) -> Option<EvtchnPort> {
        self.io.kick().port()
    }

    /// Why the last connection setup failed, if it did.
    pub fn last_setup_error(&self) -> Option<SetupError> {
        self.last_setup_error
    }

    /// Connections set up so far (including after resumes).
    pub fn setups(&self) -> u64 {
        self.setups
    }

    /// Whether the device is closed for good (closed without a reconnect or
    /// setup retry pending) or removed: it will not connect again by itself.
    pub fn is_gone(&self) -> bool {
        match self.xenbus.phase() {
            Phase::Removed => true,
            Phase::Closed => !self.reopen && !self.health.setup_retry.is_armed(),
            _ => false,
        }
    }

    /// The recovery state: retries, faults counted, why it is broken.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Sets the recovery policy (see [`crate::recovery`]).
    pub fn set_recovery(&mut self, config: RecoveryConfig) {
        self.health.config = config;
    }

    /// Why the device is broken, if it is: it will not connect again.
    pub fn broken(&self) -> Option<Broken> {
        self.health.broken
    }

    // --- the xenbus life cycle -----------------------------------------------------

    /// Starts connecting: writes Initialising, then acts on the back end's
    /// current state (setting up if it already waits in InitWait).
    pub fn start(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), Error> {
        self.drive(xs, Input::Driver(DriverEvent::Connect))?;
        self.on_backend_state(xs)
    }

    /// Reads `<backend>/state` and feeds it to the state machine, carrying
    /// out what follows. Call it whenever the watch on
    /// [`backend_state_path`](Self::backend_state_path) fires (spurious calls
    /// are harmless). A garbage state value is an error and changes nothing.
    pub fn on_backend_state(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), Error> {
        let input = match xs.read(TxId::NONE, &self.backend_state_path()) {
            Ok(v) => Input::Backend(
                XenbusState::parse(&v)
                    .map_err(|e| Error::Xenbus(xenbus::FrontendError::BadBackendState(e)))?,
            ),
            Err(XsError::Enoent) => Input::BackendVanished,
            Err(e) => return Err(e.into()),
        };
        self.drive(xs, input)
    }

    /// Closes the device for good (the back end is walked through
    /// Closing/Closed; grants end once it has let go).
    pub fn close(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), Error> {
        self.reopen = false;
        self.health.setup_retry.disarm();
        self.drive(xs, Input::Driver(DriverEvent::RequestClose))
    }

    /// Tears the connection down and connects again (after a fault): the back
    /// end is walked through Closing/Closed, every grant ends once it has let
    /// go, and a fresh connection is set up.
    pub fn reconnect(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), Error> {
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

    /// A fault of the back end (a ring-protocol violation) at `now_ms`: counted
    /// in the fault budget; within the budget the device reconnects
    /// ([`reconnect`](Self::reconnect)), over it the device is closed and
    /// broken ([`Error::Broken`]; it does not connect again).
    pub fn reconnect_after_fault(
        &mut self,
        xs: &mut impl XenstoreAccess,
        now_ms: u64,
    ) -> Result<(), Error> {
        if let Some(b) = self.health.broken {
            return Err(Error::Broken(b));
        }
        self.health.fault_count = self.health.fault_count.saturating_add(1);
        let cfg = self.health.config;
        match self.health.faults.record(&cfg, now_ms) {
            Some(faults) => self.break_device(
                xs,
                Broken::TooManyFaults {
                    faults,
                    window_ms: cfg.fault_window_ms,
                },
            ),
            None => self.reconnect(xs),
        }
    }

    /// Marks the device broken and closes it (grants end once the back end
    /// lets go, or stay deferred).
    fn break_device(&mut self, xs: &mut impl XenstoreAccess, why: Broken) -> Result<(), Error> {
        self.health.broken = Some(why);
        self.health.setup_retry.disarm();
        let _ = self.close(xs);
        Err(Error::Broken(why))
    }

    /// Retries what failed, with back-off: a connection setup (then the
    /// device connects anew) and a write of our own `state` node (then the
    /// back end's state is acted on again). Call it regularly with a
    /// monotonic millisecond clock, at least by [`poll_at`](Self::poll_at).
    pub fn poll(&mut self, xs: &mut impl XenstoreAccess, now_ms: u64) -> Result<(), Error> {
        if self.is_suspended() {
            return Ok(());
        }
        let cfg = self.health.config;
        if self.health.state_retry.due(&cfg, now_ms)
            && let Some(s) = self.xenbus.own_state()
        {
            if let Err(e) = self.write_own_state(xs, s) {
                self.health.state_retry.arm();
                return Err(e.into());
            }
            self.health.state_retry.succeeded();
            self.on_backend_state(xs)?;
        }
        if self.health.broken.is_none()
            && matches!(self.xenbus.phase(), Phase::Idle | Phase::Closed)
            && !self.reopen
            && self.health.setup_retry.due(&cfg, now_ms)
        {
            self.health.retries = self.health.retries.saturating_add(1);
            self.start(xs)?;
        }
        Ok(())
    }

    /// When [`poll`](Self::poll) next has something to do (its clock), if a
    /// retry is pending. A retry that is wanted but not yet scheduled is due
    /// at once (the next `poll` schedules it).
    pub fn poll_at(&self) -> Option<u64> {
        [&self.health.state_retry, &self.health.setup_retry]
            .iter()
            .filter(|b| b.is_armed())
            .map(|b| b.at_ms().unwrap_or(0))
            .min()
    }

    /// The domain is about to suspend: I/O stops (the phase says so). Call
    /// before `SCHEDOP_shutdown(SHUTDOWN_suspend)`.
    pub fn suspend(&mut self) -> Result<(), Error> {
        self.xenbus
            .handle(Input::Driver(DriverEvent::Suspend))
            .map(|_| ())
            .map_err(Error::Xenbus)
    }

    /// The domain resumed; see the module docs for the sequence.
    /// `new_domain` false (cancelled): nothing is touched. True: call after
    /// the kernel reset the grant table and resumed xenstore.
    /// A failed xenstore write here still leaves Suspended (the state
    /// machine moved on); the write is retried by [`poll`](Self::poll).
    pub fn resume(&mut self, xs: &mut impl XenstoreAccess, new_domain: bool) -> Result<(), Error> {
        self.drive(xs, Input::Driver(DriverEvent::Resume { new_domain }))?;
        if new_domain {
            self.on_backend_state(xs)?;
        }
        Ok(())
    }

    /// Feeds one input and carries out the resulting actions (and those of
    /// the driver events they lead to). Every action is carried out even if
    /// an earlier one failed; the first error is returned.
    fn drive(&mut self, xs: &mut impl XenstoreAccess, input: Input) -> Result<(), Error> {
        let mut next = Some(input);
        let mut first_err: Option<Error> = None;
        while let Some(input) = next.take() {
            // Connected again while connected: the back end re-attached.
            let was_connected = self.xenbus.phase() == Phase::Connected;
            let actions = self.xenbus.handle(input)?;
            for action in &actions {
                match *action {
                    Action::WriteOwnState(s) => match self.write_own_state(xs, s) {
                        Ok(()) => self.health.state_retry.succeeded(),
                        Err(e) => {
                            self.health.state_retry.arm();
                            first_err.get_or_insert(Error::Xenstore(e));
                        }
                    },
                    Action::SetupRings => {
                        let event = match self.setup(xs) {
                            Ok(()) => {
                                self.last_setup_error = None;
                                self.setups += 1;
                                DriverEvent::SetupDone
                            }
                            Err(e) => {
                                self.last_setup_error = Some(e);
                                if let SetupError::TooManyDeferred { pages, cap } = e {
                                    self.health.broken =
                                        Some(Broken::TooManyDeferred { pages, cap });
                                } else {
                                    // Closed for now; poll() sets up again.
                                    self.health.setup_retry.arm();
                                }
                                first_err.get_or_insert(Error::Setup(e));
                                DriverEvent::SetupFailed
                            }
                        };
                        next = Some(Input::Driver(event));
                    }
                    Action::Connected => {
                        if was_connected {
                            self.reattaches += 1;
                        }
                        self.health.setup_retry.succeeded();
                        self.driver.connected(&mut self.io, xs, &self.backend)
                    }
                    Action::Disconnected => self.driver.disconnected(),
                    Action::ReleaseGrants => {
                        self.io.kick_mut().close();
                        self.driver.release(&mut self.io);
                    }
                    Action::DiscardStaleRings => {
                        self.io.kick_mut().forget();
                        self.io.forget_deferred();
                        self.driver.discard_stale(&mut self.io);
                    }
                    Action::Reinitialise => {
                        self.driver.reinitialise();
                        // The back end may have moved; setup reads it again,
                        // so this read is best effort.
                        if let Ok(b) = read_backend(xs, D::CLASS, self.devid) {
                            self.backend = b;
                        }
                    }
                    Action::Closed => {
                        self.driver.free(&mut self.io);
                        if self.reopen {
                            self.reopen = false;
                            next = Some(Input::Driver(DriverEvent::Connect));
                        }
                    }
                    Action::Removed => self.driver.free(&mut self.io),
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Writes our `state` node, but only while it exists (Linux's
    /// `xenbus_switch_state` checks the same): once the toolstack has removed
    /// our device directory (`xl network-detach`, `xl block-detach`), a late
    /// write (the Initialising that follows the back end's Closed) would
    /// create `device/<class>/<id>/state` again, a stray node that looks like
    /// a device and makes libxl pick another id for the next attach. A removed
    /// directory is not an error: the back end's state node vanishes with it,
    /// and that input ends the device. The check and the write are two
    /// requests, not one transaction (a transaction per state change would
    /// contend with the toolstack's): libxl removes the directories only
    /// after the back end reached Closed and its hotplug script ran, long
    /// after we wrote what follows the Closed.
    fn write_own_state(
        &mut self,
        xs: &mut impl XenstoreAccess,
        state: XenbusState,
    ) -> Result<(), XsError> {
        let path = format!("{}/state", self.own_dir);
        match xs.read(TxId::NONE, &path) {
            Ok(_) => xs.write(TxId::NONE, &path, state.as_str().as_bytes()),
            Err(XsError::Enoent) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `Action::SetupRings`: the back end is read again, the event channel
    /// allocated, the driver sets up, and the nodes are published.
    fn setup(&mut self, xs: &mut impl XenstoreAccess) -> Result<(), SetupError> {
        self.driver.reinitialise();
        self.backend = read_backend(xs, D::CLASS, self.devid).map_err(|e| match e {
            ProbeError::Xenstore { err, .. } => SetupError::Xenstore(err),
            ProbeError::Device(d) => SetupError::Device(d),
        })?;
        let (pages, cap) = (
            self.io.deferred_pages(),
            self.health.config.max_deferred_pages,
        );
        if pages > cap {
            return Err(SetupError::TooManyDeferred { pages, cap });
        }
        let port = self.io.kick_mut().ensure(self.backend.domid)?;
        let mut nodes = Nodes::new();
        self.driver
            .setup(&mut self.io, xs, &self.backend, port, &mut nodes)?;
        nodes.push("event-channel", port);
        let dir = &self.own_dir;
        xs.transaction(self.xs_attempts, |xs, tx| {
            for (name, value) in nodes.entries() {
                xs.write(tx, &format!("{dir}/{name}"), value.as_bytes())?;
            }
            Ok(())
        })
        .map_err(|e| match e {
            XsError::Eagain => SetupError::TransactionRetries,
            e => SetupError::Xenstore(e),
        })
    }
}
