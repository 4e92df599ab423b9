//! Error types: probe, setup, per-packet rx/tx errors and sticky back-end faults.

use core::fmt;

use xen_ring::BackendFault;
use xenbus::{DeviceError, FrontendError};
use xenstore::XsError;

use crate::csum::ChecksumError;
use crate::nodes::{MacError, MtuError};

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

pub use xen_frontend::SetupError;

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
    /// The back end filled no rx buffer for this long although buffers were
    /// posted and our tx frames kept completing (the peer is alive), after a
    /// half-way notification
    /// ([`NetFront::check_rx_progress`](crate::NetFront::check_rx_progress)).
    RxStalled {
        /// Milliseconds without an rx response.
        waited_ms: u64,
    },
}

impl Fault {
    /// Whether this is a stall found by a watchdog (the back end stopped
    /// working) rather than a protocol violation: stalls are recovered from
    /// by reconnecting and do not count against the fault budget.
    pub fn is_stall(&self) -> bool {
        matches!(self, Fault::TxStalled { .. } | Fault::RxStalled { .. })
    }
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
    /// Two extra-info slots of the same type in one packet.
    DuplicateExtra(u8),
    /// A GSO extra-info slot whose GSO type is not TCPv4 (the only one we
    /// advertise, `feature-gso-tcpv4`) or whose segment size is 0.
    BadGso {
        /// `u.gso.type`.
        gso_type: u8,
        /// `u.gso.size`.
        size: u16,
    },
    /// A packet with a TCPv4 GSO extra that is not TCP over IPv4.
    GsoNotTcpV4(ChecksumError),
    /// More slots in one packet than any back end uses.
    TooManySlots,
    /// The packet is larger than the reassembly buffer.
    TooLong,
    /// A packet of zero bytes.
    Empty,
    /// A TCP/UDP checksum that could not be checked: `NETRXF_csum_blank` on
    /// a frame that is not TCP/UDP over IPv4 (unfragmented), or a packet the
    /// back end did not vouch for whose TCP/UDP headers are malformed.
    Checksum(ChecksumError),
    /// A packet without `NETRXF_csum_blank`/`NETRXF_data_validated` whose
    /// TCP/UDP checksum is wrong.
    BadChecksum,
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

impl From<xen_frontend::ProbeError> for ProbeError {
    fn from(e: xen_frontend::ProbeError) -> Self {
        match e {
            xen_frontend::ProbeError::Xenstore { node, err } => ProbeError::Xenstore {
                node: match node {
                    xen_frontend::DeviceNode::Backend => Node::Backend,
                    xen_frontend::DeviceNode::BackendId => Node::BackendId,
                },
                err,
            },
            xen_frontend::ProbeError::Device(d) => ProbeError::Device(d),
        }
    }
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
    /// Ring setup failed; the connection is being closed (and retried after
    /// a back-off, see [`crate::NetFront::poll`]).
    Setup(SetupError),
    /// The device is broken and will not connect again.
    Broken(xen_frontend::Broken),
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

impl From<xen_frontend::Error> for NetError {
    fn from(e: xen_frontend::Error) -> Self {
        match e {
            xen_frontend::Error::Xenstore(e) => Self::Xenstore(e),
            xen_frontend::Error::Xenbus(e) => Self::Xenbus(e),
            xen_frontend::Error::Setup(e) => Self::Setup(e),
            xen_frontend::Error::Broken(b) => Self::Broken(b),
        }
    }
}

impl From<SetupError> for NetError {
    fn from(e: SetupError) -> Self {
        Self::Setup(e)
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Backend => f.write_str("backend"),
            Node::BackendId => f.write_str("backend-id"),
            Node::Mac => f.write_str("mac"),
            Node::Mtu => f.write_str("mtu"),
            Node::OwnState => f.write_str("state"),
            Node::BackendState => f.write_str("<backend>/state"),
            Node::Feature(name) => write!(f, "<backend>/{name}"),
        }
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Xenstore { node, err } => write!(f, "reading {node}: {err}"),
            ProbeError::Device(e) => write!(f, "{e:?}"),
            ProbeError::Mac(e) => write!(f, "mac: {e}"),
            ProbeError::Mtu(e) => write!(f, "mtu: {e}"),
            ProbeError::BadConfig => f.write_str("rx/tx buffers must be 1..=256"),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::RxRing(b) => write!(f, "rx ring: {b:?}"),
            Fault::TxRing(b) => write!(f, "tx ring: {b:?}"),
            Fault::TxUnknownId(id) => write!(f, "tx response for unknown id {id}"),
            Fault::TxNotInFlight(id) => {
                write!(f, "tx response for id {id}, which is not in flight")
            }
            Fault::TxBadStatus { id, status } => {
                write!(f, "tx response for id {id} with unknown status {status}")
            }
            Fault::TxStalled { waited_ms } => {
                write!(f, "no tx response for {waited_ms} ms with requests waiting")
            }
            Fault::RxStalled { waited_ms } => write!(
                f,
                "no rx response for {waited_ms} ms with buffers posted while tx kept completing"
            ),
        }
    }
}

impl fmt::Display for RxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RxError::UnexpectedId { expected, got } => {
                write!(
                    f,
                    "rx response id {got} in the slot of request id {expected}"
                )
            }
            RxError::BackendStatus(s) => write!(f, "rx response status {s}"),
            RxError::OutOfPage { offset, size } => {
                write!(
                    f,
                    "rx response offset {offset} + size {size} is past the page"
                )
            }
            RxError::BadExtraType(t) => write!(f, "rx extra-info type {t}"),
            RxError::TooManyExtras => f.write_str("too many rx extra-info slots"),
            RxError::DuplicateExtra(t) => write!(f, "two rx extra-info slots of type {t}"),
            RxError::BadGso { gso_type, size } => {
                write!(f, "rx GSO extra of type {gso_type} and size {size}")
            }
            RxError::GsoNotTcpV4(e) => write!(f, "rx TCPv4 GSO packet is not TCP/IPv4: {e}"),
            RxError::TooManySlots => f.write_str("too many slots in one rx packet"),
            RxError::TooLong => f.write_str("rx packet longer than the reassembly buffer"),
            RxError::Empty => f.write_str("rx packet of zero bytes"),
            RxError::Checksum(e) => write!(f, "rx checksum: {e}"),
            RxError::BadChecksum => f.write_str("rx TCP/UDP checksum is wrong"),
        }
    }
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::TooShort(n) => {
                write!(f, "frame of {n} bytes is shorter than an Ethernet header")
            }
            TxError::TooLong(n) => write!(f, "frame of {n} bytes is over the limit"),
            TxError::Busy => f.write_str("no free tx buffer or ring slot"),
        }
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::NotConnected => f.write_str("not connected"),
            NetError::Suspended => f.write_str("suspended"),
            NetError::Faulted(x) => write!(f, "back end broke the ring protocol: {x}"),
            NetError::Rx(e) => write!(f, "{e}"),
            NetError::Tx(e) => write!(f, "{e}"),
            NetError::Xenstore(e) => write!(f, "xenstore: {e}"),
            NetError::Xenbus(e) => write!(f, "xenbus: {e:?}"),
            NetError::Setup(e) => write!(f, "connection setup: {e}"),
            NetError::Broken(b) => write!(f, "device broken: {b}"),
        }
    }
}
