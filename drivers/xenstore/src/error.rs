//! Errors: xenstored's errno names, protocol violations and local failures.

use core::fmt;

use xen_abi::xenstore::XSD_ERRORS;

use crate::ring::RingError;
use crate::wire::{DecodeError, Malformed, MsgType, RequestError};

/// The result of a xenstore request.
///
/// The first sixteen variants are the errno names of `xsd_errors[]`
/// (`xen/include/public/io/xs_wire.h`) that xenstored sends in `XS_ERROR`
/// replies; the rest are raised locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XsError {
    /// `EINVAL`: invalid argument (also xenstored's fallback for unlisted errors).
    Einval,
    /// `EACCES`: permission denied.
    Eacces,
    /// `EEXIST`: already exists (e.g. a duplicate watch).
    Eexist,
    /// `EISDIR`: is a directory.
    Eisdir,
    /// `ENOENT`: no such node (or transaction).
    Enoent,
    /// `ENOMEM`: daemon out of memory.
    Enomem,
    /// `ENOSPC`: quota exceeded.
    Enospc,
    /// `EIO`: I/O error.
    Eio,
    /// `ENOTEMPTY`: directory not empty.
    Enotempty,
    /// `ENOSYS`: operation not supported.
    Enosys,
    /// `EROFS`: read-only.
    Erofs,
    /// `EBUSY`: busy.
    Ebusy,
    /// `EAGAIN`: transaction conflict, retry.
    Eagain,
    /// `EISCONN`: already connected.
    Eisconn,
    /// `E2BIG`: reply or quota too big.
    E2big,
    /// `EPERM`: operation not permitted.
    Eperm,
    /// An `XS_ERROR` reply naming an errno not in `xsd_errors[]`.
    Unknown,
    /// The daemon's reply violated the protocol.
    Protocol(ProtocolError),
    /// The request could not be encoded; nothing was sent.
    Request(RequestError),
    /// The request was in flight when the connection was reset ([`crate::Client::resume`]).
    Cancelled,
    /// No request with that id is known (never submitted, or already collected).
    NotInFlight,
    /// No watch with that id is registered.
    NoSuchWatch,
    /// The shared ring is inconsistent or the server flagged a connection error.
    Ring(RingError),
}

/// A protocol violation by the daemon, reported to the request it hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The reply frame could not be decoded.
    Decode(DecodeError),
    /// The reply's type is neither the request's nor `XS_ERROR`.
    UnexpectedReplyType {
        /// The request's type.
        expected: MsgType,
        /// The reply's type.
        got: MsgType,
    },
    /// The reply payload does not match the request type's syntax.
    MalformedReply(Malformed),
    /// A typed helper got a different [`crate::Reply`] variant than it expects.
    UnexpectedReply,
    /// `DIRECTORY_PART` kept changing under us (generation count moved on
    /// every attempt).
    DirectoryUnstable,
    /// `DIRECTORY_PART` chunks went on past [`crate::DIRECTORY_MAX_BYTES`]
    /// without the end marker.
    DirectoryTooLarge,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Decode(e) => write!(f, "undecodable reply: {e}"),
            ProtocolError::UnexpectedReplyType { expected, got } => {
                write!(f, "reply of type {got:?} to a {expected:?} request")
            }
            ProtocolError::MalformedReply(m) => write!(f, "malformed reply: {m}"),
            ProtocolError::UnexpectedReply => f.write_str("reply of another kind than expected"),
            ProtocolError::DirectoryUnstable => {
                f.write_str("directory kept changing on every DIRECTORY_PART attempt")
            }
            ProtocolError::DirectoryTooLarge => write!(
                f,
                "DIRECTORY_PART went on past {} bytes without an end",
                crate::DIRECTORY_MAX_BYTES
            ),
        }
    }
}

/// The errno variants in `xsd_errors[]` order.
const ERRNO_VARIANTS: [XsError; 16] = [
    XsError::Einval,
    XsError::Eacces,
    XsError::Eexist,
    XsError::Eisdir,
    XsError::Enoent,
    XsError::Enomem,
    XsError::Enospc,
    XsError::Eio,
    XsError::Enotempty,
    XsError::Enosys,
    XsError::Erofs,
    XsError::Ebusy,
    XsError::Eagain,
    XsError::Eisconn,
    XsError::E2big,
    XsError::Eperm,
];

impl XsError {
    /// Maps an `XS_ERROR` payload name (without its NUL) to an error;
    /// unlisted names give [`XsError::Unknown`].
    pub fn from_wire_name(name: &[u8]) -> XsError {
        XSD_ERRORS
            .iter()
            .zip(ERRNO_VARIANTS)
            .find(|(n, _)| n.as_bytes() == name)
            .map_or(XsError::Unknown, |(_, e)| e)
    }

    /// The errno name xenstored uses for this error, for errno variants.
    pub fn wire_name(&self) -> Option<&'static str> {
        ERRNO_VARIANTS
            .iter()
            .position(|e| e == self)
            .and_then(|i| XSD_ERRORS.get(i).copied())
    }

    /// Whether this is one of the errno names a daemon can send.
    pub fn is_errno(&self) -> bool {
        self.wire_name().is_some()
    }
}

impl From<RequestError> for XsError {
    fn from(e: RequestError) -> Self {
        XsError::Request(e)
    }
}

impl From<RingError> for XsError {
    fn from(e: RingError) -> Self {
        XsError::Ring(e)
    }
}

impl From<ProtocolError> for XsError {
    fn from(e: ProtocolError) -> Self {
        XsError::Protocol(e)
    }
}

impl fmt::Display for XsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.wire_name() {
            Some(name) => f.write_str(name),
            None => fmt::Debug::fmt(self, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_the_abi_table() {
        for (i, name) in XSD_ERRORS.iter().enumerate() {
            let e = XsError::from_wire_name(name.as_bytes());
            assert_eq!(e, ERRNO_VARIANTS[i]);
            assert_eq!(e.wire_name(), Some(*name));
            assert!(e.is_errno());
        }
        assert_eq!(XsError::from_wire_name(b"EWHATEVER"), XsError::Unknown);
        assert_eq!(XsError::from_wire_name(b""), XsError::Unknown);
        assert_eq!(XsError::Cancelled.wire_name(), None);
        assert_eq!(alloc::format!("{}", XsError::Enoent), "ENOENT");
    }
}
