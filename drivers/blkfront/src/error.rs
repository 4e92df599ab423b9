//! Error types: probing, submitting, per-request failures and sticky back-end faults.

use core::fmt;

use xen_ring::BackendFault;

pub use xen_frontend::SetupError;

/// Why [`crate::BlkFront::new`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// `backend`/`backend-id` could not be read or are inconsistent.
    Frontend(xen_frontend::ProbeError),
    /// [`crate::Config`] is out of range.
    BadConfig,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Frontend(e) => write!(f, "{e}"),
            ProbeError::BadConfig => f.write_str("configuration out of range"),
        }
    }
}

/// Why a request was refused before it reached the ring (nothing happened).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubmitError {
    /// A write or discard to a read-only disk.
    ReadOnly,
    /// Discard on a disk whose back end does not offer it.
    Unsupported,
    /// Offset or length not a multiple of the sector size, zero length, or
    /// past the end of the disk.
    OutOfRange,
    /// Longer than [`crate::Config::max_request_bytes`].
    TooLarge,
    /// Too many requests queued; retry after completions.
    Busy,
    /// The device is closed for good or its back end is gone.
    Gone,
    /// The disk's size is not known yet (never connected).
    NotReady,
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SubmitError::ReadOnly => "the disk is read-only",
            SubmitError::Unsupported => "the back end does not support this operation",
            SubmitError::OutOfRange => "offset or length misaligned or past the end of the disk",
            SubmitError::TooLarge => "request too large",
            SubmitError::Busy => "too many requests queued",
            SubmitError::Gone => "the disk is gone",
            SubmitError::NotReady => "the disk has not connected yet",
        })
    }
}

/// Why a submitted request failed (the back end answered so, or the
/// connection ended before it did).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlkError {
    /// `BLKIF_RSP_ERROR`.
    Io,
    /// `BLKIF_RSP_EOPNOTSUPP`.
    NotSupported,
    /// The back end closed (or broke the protocol) before answering.
    Disconnected,
}

impl fmt::Display for BlkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlkError::Io => "I/O error (BLKIF_RSP_ERROR)",
            BlkError::NotSupported => "operation not supported (BLKIF_RSP_EOPNOTSUPP)",
            BlkError::Disconnected => "the back end disconnected before answering",
        })
    }
}

/// A back-end protocol violation that stops the connection until a
/// reconnect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The ring's `rsp_prod` is impossible.
    Ring(BackendFault),
    /// A response names an id outside the ring.
    UnknownId(u64),
    /// A response names an id with no request in flight (a replay).
    NotInFlight(u64),
    /// A response's operation is not the request's.
    WrongOperation {
        /// The id.
        id: u64,
        /// What was posted.
        posted: u8,
        /// What came back.
        answered: u8,
    },
    /// A status that is not `BLKIF_RSP_OKAY/ERROR/EOPNOTSUPP`.
    BadStatus {
        /// The id.
        id: u64,
        /// The status.
        status: i16,
    },
    /// A node the back end writes when it connects is missing or malformed.
    BadNode(&'static str),
    /// The ring refused a request although a slot was free (the ring and the
    /// slot table disagree).
    Overrun,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Ring(b) => write!(f, "ring: {b}"),
            Fault::UnknownId(id) => write!(f, "response for unknown id {id}"),
            Fault::NotInFlight(id) => write!(f, "response for id {id}, which is not in flight"),
            Fault::WrongOperation {
                id,
                posted,
                answered,
            } => write!(
                f,
                "response for id {id} names operation {answered}, the request was {posted}"
            ),
            Fault::BadStatus { id, status } => {
                write!(f, "response for id {id} with unknown status {status}")
            }
            Fault::BadNode(name) => write!(f, "back-end node {name} missing or malformed"),
            Fault::Overrun => f.write_str("the ring was full with a slot free"),
        }
    }
}

/// Any error of the driver's connection operations: the runtime's.
pub use xen_frontend::Error;
