//! The front-end xenbus state machine every split driver shares (sans-IO).
//!
//! A driver owns one [`Frontend`] per device. It feeds in what it reads from
//! xenstore — the back end's `state` node ([`Input::Backend`], or
//! [`Frontend::handle_backend_value`] for the raw bytes) — and its own
//! [`DriverEvent`]s, and carries out the [`Action`]s that come back, in order.
//!
//! The rules, and where they come from:
//! - Start ([`DriverEvent::Connect`]): write Initialising; when the back end
//!   reaches InitWait (or Initialised) ask for [`Action::SetupRings`]; when the
//!   driver reports [`DriverEvent::SetupDone`], announce Initialised
//!   ([`Handshake::InitialisedFirst`], blkfront) or Connected
//!   ([`Handshake::ConnectedAfterSetup`], netfront); when the back end is
//!   Connected, the device is live ([`Action::Connected`]).
//! - Grants are released ([`Action::ReleaseGrants`]) ONLY once the back end is
//!   Closing or Closed (or its state node has vanished): before that it may still
//!   map the ring pages, and ending access would fail ("g.e. still in use").
//!   A close this side starts therefore writes Closing and waits.
//! - After the back end closes or is reloaded, the front end announces
//!   Initialising again ([`Action::Reinitialise`], then `WriteOwnState(Initialising)`),
//!   which is what makes a Closed back end re-enter InitWait. A back end that
//!   was unbound and rebound while we were connected shows up in an earlier
//!   state (InitWait or Initialised); what follows is the driver's
//!   [`Rebind`] policy: [`Rebind::Reset`] walks it through Closing/Closed so
//!   that nothing of the old connection survives, then reconnects;
//!   [`Rebind::Reattach`] keeps the rings and grants, because a Linux
//!   netback (`allow_rebind`) maps the rings we published again when it sees us
//!   Connected and picks the indices up from the shared page
//!   (`BACK_RING_ATTACH`), then shows Connected again ([`Action::Connected`] is
//!   repeated: the driver notifies it). Linux netfront does the same (it ignores
//!   InitWait once connected). A back end in Initialising/Unknown is a fresh one
//!   and is reset either way.
//! - A back end that is Connected while we have not connected (left over from a
//!   previous instance of this driver) is reset the same way.
//! - Suspend/resume: `Resume { new_domain }` (see `xen_frontend::device` for the
//!   sequence a driver sees).
//!
//! Watches fire spuriously and coalesce, so every input may repeat or skip
//! states; repeated states are no-ops. Back-end Reconfiguring/Reconfigured are
//! ignored. Timeouts (a back end that never answers) are the driver's policy.
//!
//! No-panic promise: [`Frontend::handle`] never panics; unexpected driver events
//! and garbage back-end values return an error and leave the machine unchanged.

use xen_abi::xenbus::{StateParseError, XenbusState};

/// When the front end announces Connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Handshake {
    /// After setup write Initialised, and Connected once the back end is
    /// Connected (Linux blkfront; blkback connects on Initialised).
    InitialisedFirst,
    /// After setup write Connected at once (Linux netfront; netback connects
    /// only on Connected).
    ConnectedAfterSetup,
}

/// What a connected front end does when its back end shows up again in
/// InitWait or Initialised (it was unbound and bound again, or reloaded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rebind {
    /// Walk it through Closing/Closed and reconnect with fresh rings.
    Reset,
    /// Keep the rings and grants and wait for it to re-attach and show
    /// Connected again (Linux netback's dynamic unbind/bind).
    Reattach,
}

/// Something the driver tells the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DriverEvent {
    /// Start connecting (at probe, or to reopen after a requested close).
    Connect,
    /// [`Action::SetupRings`] is done: rings granted, references and event
    /// channels written (in one xenstore transaction).
    SetupDone,
    /// [`Action::SetupRings`] failed; the device is closed (grants made so far
    /// are released once the back end has closed).
    SetupFailed,
    /// Close the device for good (unplug, shutdown, driver unload).
    RequestClose,
    /// The domain is about to suspend.
    Suspend,
    /// The domain resumed: `new_domain` false for a cancelled suspend
    /// (`SCHEDOP_shutdown(suspend)` returned 1), true after a real save/restore or
    /// migration.
    Resume {
        /// Resumed as a new domain (grants and event channels are gone).
        new_domain: bool,
    },
}

/// One input to [`Frontend::handle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// The back end's `state` node, parsed.
    Backend(XenbusState),
    /// The back end's `state` node does not exist (any more).
    BackendVanished,
    /// A driver event.
    Driver(DriverEvent),
}

/// Something the driver must do, in the order given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Write this value to our own `state` node.
    WriteOwnState(XenbusState),
    /// Allocate and grant the rings, bind event channels, and write the ring
    /// references/event channels (one transaction); then report
    /// [`DriverEvent::SetupDone`] or [`DriverEvent::SetupFailed`].
    SetupRings,
    /// The back end is connected: read its connect-time nodes and start I/O.
    Connected,
    /// Stop I/O: the connection is going away (in-flight requests will not
    /// complete on this connection).
    Disconnected,
    /// The back end is Closing/Closed (or gone): end access to every grant of
    /// this connection and free the rings and event channels.
    ReleaseGrants,
    /// After resuming in a new domain: the ring grants belong to a table that no
    /// longer exists; drop the ring state without ending access (the grant table's
    /// stale-grant path returns the pages at once).
    DiscardStaleRings,
    /// Reset per-connection driver state (request ids, queues) before
    /// connecting again.
    Reinitialise,
    /// The device is closed, as requested (terminal until [`DriverEvent::Connect`]).
    Closed,
    /// The back end is gone (terminal).
    Removed,
}

/// Where the machine is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Not started.
    Idle,
    /// Initialising written; waiting for the back end to reach InitWait.
    Initialising,
    /// [`Action::SetupRings`] issued; waiting for the driver.
    SettingUp,
    /// Initialised/Connected written; waiting for the back end to connect.
    Announced,
    /// Live.
    Connected,
    /// Closing written; waiting for the back end to reach Closing/Closed.
    Closing,
    /// Closed written (grants released); waiting for the back end to be Closed.
    ClosedWait,
    /// Closed as requested.
    Closed,
    /// The back end is gone.
    Removed,
    /// Suspended; back-end changes are recorded but not acted on.
    Suspended,
}

/// The last thing read from the back end's `state` node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendSeen {
    /// Nothing read yet (or the reading predates a resume in a new domain).
    NotSeen,
    /// A valid state.
    State(XenbusState),
    /// The node was missing.
    Vanished,
}

/// Why [`Frontend::handle`] refused an input (the machine is unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrontendError {
    /// The back end's `state` value is not a valid state.
    BadBackendState(StateParseError),
    /// The driver event makes no sense in this phase (e.g. a late
    /// [`DriverEvent::SetupDone`] after the connection was reset: drop it).
    UnexpectedEvent {
        /// The event.
        event: DriverEvent,
        /// The phase it arrived in.
        phase: Phase,
    },
}

impl core::fmt::Display for FrontendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrontendError::BadBackendState(e) => f.write_str(match e {
                StateParseError::Empty => "back-end state is empty",
                StateParseError::NotDecimal => "back-end state is not a decimal number",
                StateParseError::OutOfRange => "back-end state is not a xenbus state",
            }),
            FrontendError::UnexpectedEvent { event, phase } => {
                write!(f, "driver event {event:?} unexpected in phase {phase:?}")
            }
        }
    }
}

/// Capacity of [`Actions`]; one input produces at most 6 actions.
pub const MAX_ACTIONS: usize = 8;

/// The actions one input produced, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Actions {
    buf: [Action; MAX_ACTIONS],
    len: usize,
}

impl Actions {
    const fn new() -> Self {
        Self {
            buf: [Action::Closed; MAX_ACTIONS],
            len: 0,
        }
    }

    fn push(&mut self, a: Action) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = a;
            self.len += 1;
        }
    }

    /// The actions as a slice.
    pub fn as_slice(&self) -> &[Action] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Whether no action was produced.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Iterates over the actions.
    pub fn iter(&self) -> core::slice::Iter<'_, Action> {
        self.as_slice().iter()
    }
}

impl<'a> IntoIterator for &'a Actions {
    type Item = &'a Action;
    type IntoIter = core::slice::Iter<'a, Action>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// What to do once a close handshake completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Goal {
    /// Announce Initialising again and reconnect.
    Reconnect,
    /// Stay closed.
    Stay,
}

/// The shared front-end state machine of one device.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frontend {
    handshake: Handshake,
    phase: Phase,
    saved: Phase,
    backend: BackendSeen,
    backend_at_suspend: BackendSeen,
    own: Option<XenbusState>,
    grants: bool,
    goal: Goal,
    close_requested: bool,
    rebind: Rebind,
    reattaching: bool,
}

impl Frontend {
    /// A machine for a device that has not started ([`Phase::Idle`]).
    pub const fn new(handshake: Handshake) -> Self {
        Self {
            handshake,
            phase: Phase::Idle,
            saved: Phase::Idle,
            backend: BackendSeen::NotSeen,
            backend_at_suspend: BackendSeen::NotSeen,
            own: None,
            grants: false,
            goal: Goal::Reconnect,
            close_requested: false,
            rebind: Rebind::Reset,
            reattaching: false,
        }
    }

    /// The same machine with rebind policy `rebind` (the default is
    /// [`Rebind::Reset`]).
    pub const fn with_rebind(mut self, rebind: Rebind) -> Self {
        self.rebind = rebind;
        self
    }

    /// The rebind policy.
    pub fn rebind(&self) -> Rebind {
        self.rebind
    }

    /// Whether a connected device's back end is away: it showed InitWait or
    /// Initialised and has not shown Connected again ([`Rebind::Reattach`]).
    pub fn is_reattaching(&self) -> bool {
        self.reattaching
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The state we last asked to write to our own node.
    pub fn own_state(&self) -> Option<XenbusState> {
        self.own
    }

    /// The last back-end observation.
    pub fn backend(&self) -> BackendSeen {
        self.backend
    }

    /// Whether the driver may hold grants the back end could map (from
    /// [`Action::SetupRings`] until [`Action::ReleaseGrants`] or
    /// [`Action::DiscardStaleRings`]).
    pub fn holds_grants(&self) -> bool {
        self.grants
    }

    /// The handshake style.
    pub fn handshake(&self) -> Handshake {
        self.handshake
    }

    /// Whether a close was requested (the machine will stay closed).
    pub fn close_requested(&self) -> bool {
        self.goal == Goal::Stay || self.close_requested
    }

    /// Feeds the raw value of the back end's `state` node: `None` if the node
    /// does not exist, else its bytes (checked-parsed; garbage is an error and
    /// changes nothing).
    pub fn handle_backend_value(&mut self, value: Option<&[u8]>) -> Result<Actions, FrontendError> {
        match value {
            None => self.handle(Input::BackendVanished),
            Some(bytes) => {
                let state = XenbusState::parse(bytes).map_err(FrontendError::BadBackendState)?;
                self.handle(Input::Backend(state))
            }
        }
    }

    /// Processes one input; returns the actions to carry out, in order.
    pub fn handle(&mut self, input: Input) -> Result<Actions, FrontendError> {
        let mut out = Actions::new();
        match input {
            Input::Backend(s) => {
                self.backend = BackendSeen::State(s);
                self.on_backend(&mut out);
            }
            Input::BackendVanished => {
                let seen_before = self.backend != BackendSeen::NotSeen;
                self.backend = BackendSeen::Vanished;
                if seen_before || self.phase != Phase::Initialising {
                    self.on_backend(&mut out);
                }
            }
            Input::Driver(event) => self.on_driver(event, &mut out)?,
        }
        Ok(out)
    }

    fn write(&mut self, out: &mut Actions, s: XenbusState) {
        self.own = Some(s);
        out.push(Action::WriteOwnState(s));
    }

    fn release(&mut self, out: &mut Actions) {
        if self.grants {
            self.grants = false;
            out.push(Action::ReleaseGrants);
        }
    }

    fn disconnect(&mut self, out: &mut Actions) {
        self.reattaching = false;
        if self.phase == Phase::Connected {
            out.push(Action::Disconnected);
        }
    }

    fn start_setup(&mut self, out: &mut Actions) {
        self.grants = true;
        self.phase = Phase::SettingUp;
        out.push(Action::SetupRings);
    }

    /// Writes Initialising, then acts on what the back end last showed (e.g.
    /// starts setup if it already waits in InitWait, or resets a stale
    /// Connected one).
    fn enter_initialising(&mut self, out: &mut Actions) {
        self.goal = Goal::Reconnect;
        self.phase = Phase::Initialising;
        self.write(out, XenbusState::Initialising);
        // A Closed back end needs nothing more than the Initialising just written.
        if self.backend != BackendSeen::State(XenbusState::Closed) {
            self.on_backend(out);
        }
    }

    /// The back end is Closing (`closed` false) or Closed: release, answer
    /// Closed, and finish or wait for its Closed.
    fn backend_closing(&mut self, out: &mut Actions, closed: bool) {
        self.disconnect(out);
        self.release(out);
        if self.own != Some(XenbusState::Closed) {
            self.write(out, XenbusState::Closed);
        }
        if closed {
            self.finish_close(out);
        } else {
            self.phase = Phase::ClosedWait;
        }
    }

    fn finish_close(&mut self, out: &mut Actions) {
        match self.goal {
            Goal::Stay => {
                self.phase = Phase::Closed;
                out.push(Action::Closed);
            }
            Goal::Reconnect => {
                out.push(Action::Reinitialise);
                self.enter_initialising(out);
            }
        }
    }

    /// Starts the close handshake from this side (also used to reset a back end
    /// that is ahead of us).
    fn start_close(&mut self, out: &mut Actions) {
        self.disconnect(out);
        self.phase = Phase::Closing;
        self.write(out, XenbusState::Closing);
        // The back end may already be there.
        self.on_backend(out);
    }

    fn removed(&mut self, out: &mut Actions) {
        self.disconnect(out);
        self.release(out);
        self.phase = Phase::Removed;
        out.push(Action::Removed);
    }

    /// Acts on the current back-end observation in the current phase.
    fn on_backend(&mut self, out: &mut Actions) {
        use XenbusState as S;
        let s = match self.backend {
            BackendSeen::NotSeen => return,
            BackendSeen::Vanished => {
                if matches!(
                    self.phase,
                    Phase::Initialising
                        | Phase::Announced
                        | Phase::Connected
                        | Phase::Closing
                        | Phase::ClosedWait
                ) {
                    self.removed(out);
                }
                return;
            }
            BackendSeen::State(s) => s,
        };
        match self.phase {
            // Recorded only: not participating, suspended, or the driver is busy
            // setting up (decided on SetupDone/SetupFailed).
            Phase::Idle | Phase::Closed | Phase::Removed | Phase::Suspended | Phase::SettingUp => {}
            Phase::Initialising => match s {
                S::InitWait | S::Initialised => self.start_setup(out),
                // Connected to a previous instance of us: walk it through a close.
                S::Connected => self.start_close(out),
                S::Closing => self.backend_closing(out, false),
                // A Closed back end re-enters InitWait when it sees Initialising
                // written (again).
                S::Closed => self.write(out, S::Initialising),
                S::Unknown | S::Initialising | S::Reconfiguring | S::Reconfigured => {}
            },
            Phase::Announced => match s {
                S::Connected => {
                    if self.handshake == Handshake::InitialisedFirst {
                        self.write(out, S::Connected);
                    }
                    self.phase = Phase::Connected;
                    out.push(Action::Connected);
                }
                S::Closing => self.backend_closing(out, false),
                S::Closed => self.backend_closing(out, true),
                // Not connected yet (a reloaded back end reads our announced state
                // when it probes).
                S::Unknown
                | S::Initialising
                | S::InitWait
                | S::Initialised
                | S::Reconfiguring
                | S::Reconfigured => {}
            },
            Phase::Connected => match s {
                S::Connected => {
                    if self.reattaching {
                        // It mapped our rings again: I/O flows once more.
                        self.reattaching = false;
                        out.push(Action::Connected);
                    }
                }
                S::Reconfiguring | S::Reconfigured => {}
                S::Closing => self.backend_closing(out, false),
                S::Closed => self.backend_closing(out, true),
                // Unbound and bound again: it re-attaches to the rings we
                // published once it sees us Connected (our node says so).
                S::InitWait | S::Initialised if self.rebind == Rebind::Reattach => {
                    self.reattaching = true;
                }
                // The back end was reloaded under us: reset, then reconnect.
                S::Unknown | S::Initialising | S::InitWait | S::Initialised => {
                    self.start_close(out)
                }
            },
            Phase::Closing => match s {
                S::Closing => self.backend_closing(out, false),
                S::Closed => self.backend_closing(out, true),
                _ => {}
            },
            Phase::ClosedWait => match s {
                S::Closed => self.finish_close(out),
                // The back end restarted without showing Closed: our side is
                // closed, so the close is complete.
                S::Initialising | S::InitWait | S::Initialised => self.finish_close(out),
                S::Unknown | S::Connected | S::Closing | S::Reconfiguring | S::Reconfigured => {}
            },
        }
    }

    fn on_driver(&mut self, event: DriverEvent, out: &mut Actions) -> Result<(), FrontendError> {
        let unexpected = FrontendError::UnexpectedEvent {
            event,
            phase: self.phase,
        };
        match event {
            DriverEvent::Connect => match self.phase {
                Phase::Idle | Phase::Closed => self.enter_initialising(out),
                _ => return Err(unexpected),
            },
            DriverEvent::SetupDone => {
                if self.phase != Phase::SettingUp {
                    return Err(unexpected);
                }
                if self.close_requested {
                    self.close_requested = false;
                    self.goal = Goal::Stay;
                    self.start_close(out);
                } else {
                    self.announce(out);
                }
            }
            DriverEvent::SetupFailed => {
                if self.phase != Phase::SettingUp {
                    return Err(unexpected);
                }
                self.close_requested = false;
                self.goal = Goal::Stay;
                self.start_close(out);
            }
            DriverEvent::RequestClose => match self.phase {
                Phase::Idle | Phase::Closed | Phase::Removed => {}
                Phase::Initialising => {
                    self.goal = Goal::Stay;
                    self.write(out, XenbusState::Closed);
                    self.phase = Phase::Closed;
                    out.push(Action::Closed);
                }
                Phase::SettingUp => self.close_requested = true,
                Phase::Announced | Phase::Connected => {
                    self.goal = Goal::Stay;
                    self.start_close(out);
                }
                Phase::Closing | Phase::ClosedWait => self.goal = Goal::Stay,
                Phase::Suspended => return Err(unexpected),
            },
            DriverEvent::Suspend => {
                if self.phase == Phase::Suspended {
                    return Err(unexpected);
                }
                self.saved = self.phase;
                self.backend_at_suspend = self.backend;
                self.phase = Phase::Suspended;
            }
            DriverEvent::Resume { new_domain } => {
                if self.phase != Phase::Suspended {
                    return Err(unexpected);
                }
                if new_domain {
                    self.resume_new_domain(out);
                } else {
                    // Cancelled suspend: the connection survived; only catch up
                    // with a back-end change seen while suspended.
                    self.phase = self.saved;
                    if self.backend != self.backend_at_suspend {
                        self.on_backend(out);
                    }
                }
            }
        }
        Ok(())
    }

    /// After [`DriverEvent::SetupDone`]: announce, unless the back end moved
    /// meanwhile.
    fn announce(&mut self, out: &mut Actions) {
        use XenbusState as S;
        match self.backend {
            BackendSeen::State(S::Connected) => self.start_close(out),
            BackendSeen::State(S::Closing) => self.backend_closing(out, false),
            BackendSeen::State(S::Closed) => self.backend_closing(out, true),
            BackendSeen::Vanished => self.removed(out),
            BackendSeen::NotSeen | BackendSeen::State(_) => {
                self.phase = Phase::Announced;
                let s = match self.handshake {
                    Handshake::InitialisedFirst => S::Initialised,
                    Handshake::ConnectedAfterSetup => S::Connected,
                };
                self.write(out, s);
            }
        }
    }

    /// Resume in a new domain: everything of the old connection is void.
    fn resume_new_domain(&mut self, out: &mut Actions) {
        self.reattaching = false;
        self.backend = BackendSeen::NotSeen;
        self.backend_at_suspend = BackendSeen::NotSeen;
        if self.grants {
            self.grants = false;
            out.push(Action::DiscardStaleRings);
        }
        let wanted_close = self.goal == Goal::Stay || self.close_requested;
        self.close_requested = false;
        match self.saved {
            Phase::Idle | Phase::Closed | Phase::Removed | Phase::Suspended => {
                self.phase = self.saved
            }
            Phase::SettingUp | Phase::Closing | Phase::ClosedWait if wanted_close => {
                self.goal = Goal::Stay;
                self.write(out, XenbusState::Closed);
                self.phase = Phase::Closed;
                out.push(Action::Closed);
            }
            Phase::Initialising
            | Phase::SettingUp
            | Phase::Announced
            | Phase::Connected
            | Phase::Closing
            | Phase::ClosedWait => {
                out.push(Action::Reinitialise);
                self.enter_initialising(out);
            }
        }
    }
}
