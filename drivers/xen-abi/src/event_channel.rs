//! Event channel operations (`event_channel.h`).

/// `EVTCHNOP_send`: notify the remote end of a port; argument is an [`EvtchnSend`].
pub const EVTCHNOP_SEND: u32 = 4;

/// `struct evtchn_send`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvtchnSend {
    /// The local port to notify through.
    pub port: u32,
}
