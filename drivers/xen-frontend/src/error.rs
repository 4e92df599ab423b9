//! The runtime's errors: reading the device's nodes, setting up a connection, driving the xenbus handshake.

use core::fmt;

use grant_table::GrantError;
use xen_ring::LayoutError;
use xenbus::{DeviceError, FrontendError};
use xenstore::XsError;

use crate::nodes::NumberError;
use crate::recovery::Broken;

/// A node of the device directory named in a [`ProbeError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceNode {
    /// `device/<class>/<id>/backend`.
    Backend,
    /// `device/<class>/<id>/backend-id`.
    BackendId,
}

impl fmt::Display for DeviceNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceNode::Backend => "backend",
            DeviceNode::BackendId => "backend-id",
        })
    }
}

/// Why the device's `backend`/`backend-id` pair could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// A xenstore request failed.
    Xenstore {
        /// The node.
        node: DeviceNode,
        /// The error.
        err: XsError,
    },
    /// `backend` or `backend-id` is malformed or inconsistent.
    Device(DeviceError),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Xenstore { node, err } => write!(f, "reading {node}: {err}"),
            ProbeError::Device(e) => write!(f, "{e:?}"),
        }
    }
}

/// Why setting up a connection failed (the connection is then closed; see
/// [`crate::Device::last_setup_error`]).
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
    /// The back end does not offer a feature this driver requires.
    MissingFeature(&'static str),
    /// The page provider ran out of pages.
    OutOfPages,
    /// A page from the provider is smaller than a page.
    BadPage,
    /// Granting failed.
    Grant(GrantError),
    /// `EVTCHNOP_alloc_unbound` failed (Xen's negative errno).
    EventChannel(i32),
    /// The ring layout does not fit the page (a provider bug).
    Layout(LayoutError),
    /// The device left more pages on the grant table's deferred list than
    /// its cap allows (see [`crate::recovery`]); it is broken.
    TooManyDeferred {
        /// Pages still deferred.
        pages: usize,
        /// The cap.
        cap: usize,
    },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Xenstore(e) => write!(f, "xenstore: {e}"),
            SetupError::TransactionRetries => {
                f.write_str("the xenstore transaction kept conflicting (EAGAIN)")
            }
            SetupError::Device(e) => write!(f, "{e:?}"),
            SetupError::BadFeature { name, err } => write!(f, "back-end node {name}: {err}"),
            SetupError::MissingFeature(name) => {
                write!(
                    f,
                    "the back end does not offer {name}, which this driver needs"
                )
            }
            SetupError::OutOfPages => f.write_str("out of pages"),
            SetupError::BadPage => f.write_str("the page provider returned a short page"),
            SetupError::Grant(e) => write!(f, "granting a page: {e:?}"),
            SetupError::EventChannel(errno) => {
                write!(f, "EVTCHNOP_alloc_unbound failed (errno {errno})")
            }
            SetupError::Layout(e) => write!(f, "ring layout: {e:?}"),
            SetupError::TooManyDeferred { pages, cap } => write!(
                f,
                "{pages} pages still mapped by an earlier back end (cap {cap})"
            ),
        }
    }
}

/// Why an operation of a [`crate::Device`] (start, back-end state change,
/// close, reconnect, suspend, resume) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A xenstore request failed.
    Xenstore(XsError),
    /// The xenbus state machine refused an input (e.g. a garbage back-end
    /// `state` value); nothing changed.
    Xenbus(FrontendError),
    /// Setting up the connection failed; it is being closed (and set up
    /// again after a back-off, see [`crate::Device::poll`]).
    Setup(SetupError),
    /// The device is broken and will not connect again (see
    /// [`crate::recovery`]).
    Broken(Broken),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Xenstore(e) => write!(f, "xenstore: {e}"),
            Error::Xenbus(e) => write!(f, "xenbus: {e:?}"),
            Error::Setup(e) => write!(f, "connection setup: {e}"),
            Error::Broken(b) => write!(f, "device broken: {b}"),
        }
    }
}

impl From<XsError> for Error {
    fn from(e: XsError) -> Self {
        Error::Xenstore(e)
    }
}

impl From<FrontendError> for Error {
    fn from(e: FrontendError) -> Self {
        Error::Xenbus(e)
    }
}

impl From<SetupError> for Error {
    fn from(e: SetupError) -> Self {
        Error::Setup(e)
    }
}
