//! Error types: probe, setup, per-packet rx/tx errors and sticky back-end faults.

use grant_table::GrantError;
use xen_ring::{BackendFault, LayoutError};
use xenbus::{DeviceError, FrontendError};
use xenstore::XsError;

use crate::csum::ChecksumError;
use crate::nodes::{MacError, MtuError, NumberError};

/// A node of our device directory or of the back end's, named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// `device/vif/<id>/backend`.
    Backend,
    /// `device/vif/<id>/backend-id`.
    BackendId,
    /// `device/vif/<id>/mac`.
    Mac,
    /// `device/vif/<id>/mtu`.
    Mtu,
    /// `device/vif/<id>/state`.
    OwnState,
    /// `<backend>/state`.
    BackendState,
    /// A `<backend>/feature-*` or `multi-queue-max-queues` node.
    Feature(&'static str),
}

/// Why [`crate::NetFront::new`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// A xenstore request failed.
    Xenstore {
        /// The node.
        node: Node,
        /// The error.
        err: XsError,
    },
    /// `backend` or `backend-id` is malformed or inconsistent.
    Device(DeviceError),
    /// `mac` is malformed.
    Mac(MacError),
    /// `mtu` is malformed or out of range.
    Mtu(MtuError),
    /// [`crate::Config`] is out of range (buffers must be 1..=256).
    BadConfig,
}

/// Why setting up the rings for a connection failed (the connection is then
/// closed; see [`crate::NetFront::last_setup_error`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// A xenstore request failed.
    Xenstore(XsError),
    /// The writes kept conflicting (`EAGAIN`) for every attempt.
    TransactionRetries,
    /// `backend`/`backend-id` changed into something malformed.
    Device(DeviceError),
    /// A back-end feature node is malformed.
    BadFeature {
        /// The node.
        name: &'static str,
        /// Why.
        err: NumberError,
    },
    /// The back end does not offer `feature-rx-copy` (required: this driver
    /// only grants rx pages for the back end to copy into).
    NoRxCopy,
    /// The page provider ran out of pages.
    OutOfPages,
    /// A page from the provider is smaller than a page.
    BadPage,
    /// Granting failed.
    Grant(GrantError),
    /// `EVTCHNOP_alloc_unbound` failed (Xen's errno).
    EventChannel(i32),
    /// The ring layout does not fit the page (a provider bug).
    Layout(LayoutError),
}

/// A back-end protocol violation that stops the connection until
/// [`crate::NetFront::reconnect`]; every further rx/tx call returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The rx ring's `rsp_prod` is impossible (`xen-ring` validation).
    RxRing(BackendFault),
    /// The tx ring's `rsp_prod` is impossible.
    TxRing(BackendFault),
    /// A tx response names an id outside the tx pool.
    TxUnknownId(u16),
    /// A tx response names an id with no request in flight (a replay).
    TxNotInFlight(u16),
    /// A tx response status that is not `NETIF_RSP_OKAY/ERROR/DROPPED`.
    TxBadStatus {
        /// The id.
        id: u16,
        /// The status.
        status: i16,
    },
    /// The back end took no tx request for this long although requests were
    /// waiting and it had been notified (again) half-way
    /// ([`NetFront::check_tx_progress`](crate::NetFront::check_tx_progress)).
    TxStalled {
        /// Milliseconds without progress.
        waited_ms: u64,
    },
}

/// Why one received packet was dropped. Its slots were consumed and their
/// buffers recycled; the next packet is unaffected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RxError {
    /// A response's id is not the id of the request posted in its slot
    /// (`netif.h`: a response occupies the slot of the request it answers).
    UnexpectedId {
        /// The id posted in that slot.
        expected: u16,
        /// The id in the response.
        got: u16,
    },
    /// A negative status (`NETIF_RSP_ERROR`, `NETIF_RSP_DROPPED`, or other).
    BackendStatus(i16),
    /// `offset + size` exceeds the page.
    OutOfPage {
        /// The offset.
        offset: u16,
        /// The size.
        size: u16,
    },
    /// An extra-info slot of type `XEN_NETIF_EXTRA_TYPE_NONE` or unknown.
    BadExtraType(u8),
    /// More extra-info slots than there are extra types.
    TooManyExtras,
    /// More slots in one packet than any back end uses.
    TooManySlots,
    /// The packet is larger than the reassembly buffer.
    TooLong,
    /// A packet of zero bytes.
    Empty,
    /// `NETRXF_csum_blank` set but the checksum could not be completed.
    Checksum(ChecksumError),
}

/// Why a frame was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxError {
    /// Shorter than an Ethernet header (netback rejects such packets).
    TooShort(usize),
    /// Longer than the MTU allows (or than one page without `feature-sg`).
    TooLong(usize),
    /// No free tx buffer or ring slot: reclaim completions and retry.
    Busy,
}

/// Any error of the driver's operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// No live connection (not yet connected, closing, or closed).
    NotConnected,
    /// Between [`crate::NetFront::suspend`] and [`crate::NetFront::resume`].
    Suspended,
    /// The back end broke the protocol; see [`Fault`].
    Faulted(Fault),
    /// A received packet was dropped.
    Rx(RxError),
    /// A frame was not sent.
    Tx(TxError),
    /// A xenstore request failed.
    Xenstore(XsError),
    /// The xenbus state machine refused an input (e.g. a garbage back-end
    /// `state` value); nothing changed.
    Xenbus(FrontendError),
    /// Ring setup failed; the connection is being closed.
    Setup(SetupError),
}

impl From<Fault> for NetError {
    fn from(f: Fault) -> Self {
        Self::Faulted(f)
    }
}

impl From<RxError> for NetError {
    fn from(e: RxError) -> Self {
        Self::Rx(e)
    }
}

impl From<TxError> for NetError {
    fn from(e: TxError) -> Self {
        Self::Tx(e)
    }
}

impl From<XsError> for NetError {
    fn from(e: XsError) -> Self {
        Self::Xenstore(e)
    }
}

impl From<FrontendError> for NetError {
    fn from(e: FrontendError) -> Self {
        Self::Xenbus(e)
    }
}

impl From<SetupError> for NetError {
    fn from(e: SetupError) -> Self {
        Self::Setup(e)
    }
}
