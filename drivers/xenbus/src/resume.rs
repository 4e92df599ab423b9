//! The resume sequence every front end shares, as data (what [`crate::Frontend`] does on resume).
//!
//! `SCHEDOP_shutdown(SHUTDOWN_suspend)` returns 1 if the suspend was cancelled
//! (the domain simply continues: same grants, event channels and back ends) and
//! 0 after a real save/restore or migration, where the guest runs as a NEW
//! domain: its grant table, event channels and back-end connections are gone,
//! and the toolstack has re-created the devices, whose back ends wait in
//! InitWait for a front end that says Initialising.
//!
//! Kernel-wide order after a resume in a new domain (Linux's `xen_resume` /
//! `xenbus_dev_resume` do the same): re-map shared info and the grant table,
//! call `GrantTable::reset_for_resume` (all grants become stale), resume the
//! xenstore connection, then feed every device's [`crate::Frontend`]
//! `Resume { new_domain: true }` and carry out [`NEW_DOMAIN`]. After a cancelled
//! suspend: feed `Resume { new_domain: false }`; nothing else happens
//! ([`CANCELLED`]).

use xen_abi::xenbus::XenbusState;

/// One step of a resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResumeStep {
    /// Drop the old ring state without ending access (the grants are stale).
    DiscardStaleRings,
    /// Reset per-connection driver state.
    Reinitialise,
    /// Write this value to our `state` node.
    WriteOwnState(XenbusState),
    /// Wait until the back end reaches this state.
    AwaitBackend(XenbusState),
    /// Grant the rings and write their references.
    SetupRings,
    /// Announce: Initialised or Connected, per [`crate::Handshake`].
    Announce,
    /// The device is live again.
    Connected,
}

/// After resuming in a new domain (for a device that was connected).
pub const NEW_DOMAIN: &[ResumeStep] = &[
    ResumeStep::DiscardStaleRings,
    ResumeStep::Reinitialise,
    ResumeStep::WriteOwnState(XenbusState::Initialising),
    ResumeStep::AwaitBackend(XenbusState::InitWait),
    ResumeStep::SetupRings,
    ResumeStep::Announce,
    ResumeStep::AwaitBackend(XenbusState::Connected),
    ResumeStep::Connected,
];

/// After a cancelled suspend: nothing.
pub const CANCELLED: &[ResumeStep] = &[];

/// The sequence for a resume.
pub const fn sequence(new_domain: bool) -> &'static [ResumeStep] {
    if new_domain { NEW_DOMAIN } else { CANCELLED }
}
