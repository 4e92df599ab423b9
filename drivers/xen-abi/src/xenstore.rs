//! The xenstore wire protocol and shared ring page (`io/xs_wire.h`).
//!
//! Written from Xen 4.17's `xen/include/public/io/xs_wire.h`, with the payload
//! formats from `docs/misc/xenstore.txt` and the ring rules from
//! `docs/misc/xenstore-ring.txt`. Every message in either direction is a
//! [`XsdSockmsg`] header (four little-endian `u32`s on x86) followed by `len`
//! payload bytes. The guest accesses the live page through the byte offsets
//! below (with atomics for the indices); the structs exist for layout checks.

// ---------------------------------------------------------------------------
// enum xsd_sockmsg_type
// ---------------------------------------------------------------------------

/// `XS_CONTROL`: implementation-specific daemon control (dom0 only).
pub const XS_CONTROL: u32 = 0;
/// `XS_DEBUG`: the old name of [`XS_CONTROL`].
pub const XS_DEBUG: u32 = XS_CONTROL;
/// `XS_DIRECTORY`: `<path>|` → `<child-leaf-name>|*`.
pub const XS_DIRECTORY: u32 = 1;
/// `XS_READ`: `<path>|` → `<value|>`.
pub const XS_READ: u32 = 2;
/// `XS_GET_PERMS`: `<path>|` → `<perm-as-string>|+`.
pub const XS_GET_PERMS: u32 = 3;
/// `XS_WATCH`: `<wpath>|<token>|` → `OK|`, then an initial [`XS_WATCH_EVENT`].
pub const XS_WATCH: u32 = 4;
/// `XS_UNWATCH`: `<wpath>|<token>|` → `OK|`.
pub const XS_UNWATCH: u32 = 5;
/// `XS_TRANSACTION_START`: `|` → `<transid>|` (unsigned decimal).
pub const XS_TRANSACTION_START: u32 = 6;
/// `XS_TRANSACTION_END`: `T|` (commit) or `F|` (abort) → `OK|` or `EAGAIN`.
pub const XS_TRANSACTION_END: u32 = 7;
/// `XS_INTRODUCE`: `<domid>|<gfn>|<evtchn>|` (dom0 only).
pub const XS_INTRODUCE: u32 = 8;
/// `XS_RELEASE`: `<domid>|` (dom0 only).
pub const XS_RELEASE: u32 = 9;
/// `XS_GET_DOMAIN_PATH`: `<domid>|` → `<path>|`.
pub const XS_GET_DOMAIN_PATH: u32 = 10;
/// `XS_WRITE`: `<path>|<value|>` → `OK|`.
pub const XS_WRITE: u32 = 11;
/// `XS_MKDIR`: `<path>|` → `OK|`.
pub const XS_MKDIR: u32 = 12;
/// `XS_RM`: `<path>|` → `OK|`.
pub const XS_RM: u32 = 13;
/// `XS_SET_PERMS`: `<path>|<perm-as-string>|+` → `OK|`.
pub const XS_SET_PERMS: u32 = 14;
/// `XS_WATCH_EVENT`: unsolicited `<epath>|<token>|`, `req_id` and `tx_id` 0.
pub const XS_WATCH_EVENT: u32 = 15;
/// `XS_ERROR`: error reply `E<something>|` (the errno *name*, see [`XSD_ERRORS`]).
pub const XS_ERROR: u32 = 16;
/// `XS_IS_DOMAIN_INTRODUCED`: `<domid>|` → `T|` or `F|`.
pub const XS_IS_DOMAIN_INTRODUCED: u32 = 17;
/// `XS_RESUME`: `<domid>|` (dom0 only).
pub const XS_RESUME: u32 = 18;
/// `XS_SET_TARGET`: `<domid>|<tdomid>|` (dom0 only).
pub const XS_SET_TARGET: u32 = 19;
/// Type 20 was `XS_RESTRICT`, removed; `xs_wire.h` keeps the number unused.
pub const XS_RESTRICT_REMOVED: u32 = 20;
/// `XS_RESET_WATCHES` (`XS_SET_TARGET + 2`): `|` → `OK|`; drops all watches and
/// transactions of the connection.
pub const XS_RESET_WATCHES: u32 = 21;
/// `XS_DIRECTORY_PART`: `<path>|<offset>|` → `<gencnt>|<child-leaf-name>|*`, and
/// an extra empty string once the end of the child list is reached.
pub const XS_DIRECTORY_PART: u32 = 22;
/// `XS_TYPE_COUNT`: one past the highest valid type.
pub const XS_TYPE_COUNT: u32 = 23;
/// `XS_INVALID`: guaranteed to remain an invalid type.
pub const XS_INVALID: u32 = 0xffff;

/// `XS_WRITE_NONE`: legacy write-flag string.
pub const XS_WRITE_NONE: &str = "NONE";
/// `XS_WRITE_CREATE`: legacy write-flag string.
pub const XS_WRITE_CREATE: &str = "CREATE";
/// `XS_WRITE_CREATE_EXCL`: legacy write-flag string.
pub const XS_WRITE_CREATE_EXCL: &str = "CREATE|EXCL";

/// The `xsd_errors[]` table: errno *names* carried in `XS_ERROR` payloads, in the
/// header's order (new names are only ever appended; the daemon falls back to the
/// first, `EINVAL`, for errors not in the table).
pub const XSD_ERRORS: [&str; 16] = [
    "EINVAL",
    "EACCES",
    "EEXIST",
    "EISDIR",
    "ENOENT",
    "ENOMEM",
    "ENOSPC",
    "EIO",
    "ENOTEMPTY",
    "ENOSYS",
    "EROFS",
    "EBUSY",
    "EAGAIN",
    "EISCONN",
    "E2BIG",
    "EPERM",
];

// ---------------------------------------------------------------------------
// struct xsd_sockmsg
// ---------------------------------------------------------------------------

/// `struct xsd_sockmsg`: the 16-byte header before every payload.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XsdSockmsg {
    /// Message type (`XS_*`).
    pub msg_type: u32,
    /// Request identifier, echoed in the daemon's response.
    pub req_id: u32,
    /// Transaction id (0 if not related to a transaction).
    pub tx_id: u32,
    /// Length of the payload following the header.
    pub len: u32,
}

/// Size of [`XsdSockmsg`] on the wire.
pub const XSD_SOCKMSG_SIZE: usize = 16;

/// `enum xs_watch_type` `XS_WATCH_PATH`: index of the path string in a watch event.
pub const XS_WATCH_PATH: usize = 0;
/// `enum xs_watch_type` `XS_WATCH_TOKEN`: index of the token string in a watch event.
pub const XS_WATCH_TOKEN: usize = 1;

/// `XENSTORE_PAYLOAD_MAX`: the payload limit in both directions. A client that
/// sends more has its connection killed by xenstored.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`: longest absolute path xenstored accepts.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`: longest relative path a client should send.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;

// ---------------------------------------------------------------------------
// struct xenstore_domain_interface
// ---------------------------------------------------------------------------

/// `XENSTORE_RING_SIZE`: bytes in each direction's ring.
pub const XENSTORE_RING_SIZE: usize = 1024;

/// `MASK_XENSTORE_IDX`: the ring slot of a free-running `XENSTORE_RING_IDX`.
pub const fn mask_xenstore_idx(index: u32) -> usize {
    (index as usize) & (XENSTORE_RING_SIZE - 1)
}

/// Byte offset of `req[]` (guest → xenstored bytes).
pub const REQ_OFFSET: usize = 0;
/// Byte offset of `rsp[]` (xenstored → guest replies and watch events).
pub const RSP_OFFSET: usize = 1024;
/// Byte offset of `req_cons` (written by xenstored).
pub const REQ_CONS_OFFSET: usize = 2048;
/// Byte offset of `req_prod` (written by the guest).
pub const REQ_PROD_OFFSET: usize = 2052;
/// Byte offset of `rsp_cons` (written by the guest).
pub const RSP_CONS_OFFSET: usize = 2056;
/// Byte offset of `rsp_prod` (written by xenstored).
pub const RSP_PROD_OFFSET: usize = 2060;
/// Byte offset of `server_features` (written by xenstored only).
pub const SERVER_FEATURES_OFFSET: usize = 2064;
/// Byte offset of `connection` ([`XENSTORE_CONNECTED`] / [`XENSTORE_RECONNECT`]).
pub const CONNECTION_OFFSET: usize = 2068;
/// Byte offset of `error` (valid if [`XENSTORE_SERVER_FEATURE_ERROR`] is set).
pub const ERROR_OFFSET: usize = 2072;
/// Bytes of the page covered by `struct xenstore_domain_interface`.
pub const INTERFACE_SIZE: usize = 2076;

/// `struct xenstore_domain_interface`, for layout checks only.
#[repr(C)]
pub struct XenstoreDomainInterface {
    /// Requests to the xenstore daemon.
    pub req: [u8; XENSTORE_RING_SIZE],
    /// Replies and asynchronous watch events.
    pub rsp: [u8; XENSTORE_RING_SIZE],
    /// Request consumer index (xenstored).
    pub req_cons: u32,
    /// Request producer index (guest).
    pub req_prod: u32,
    /// Response consumer index (guest).
    pub rsp_cons: u32,
    /// Response producer index (xenstored).
    pub rsp_prod: u32,
    /// Bitmap of features supported by the server.
    pub server_features: u32,
    /// Connection state.
    pub connection: u32,
    /// Connection error indicator.
    pub error: u32,
}

/// `XENSTORE_SERVER_FEATURE_RECONNECTION`: the ring can be reset via `connection`.
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `XENSTORE_SERVER_FEATURE_ERROR`: the `error` field is present.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;

/// `XENSTORE_CONNECTED`: the steady state of `connection`.
pub const XENSTORE_CONNECTED: u32 = 0;
/// `XENSTORE_RECONNECT`: a ring reconnect is in progress (set by the guest,
/// cleared by the server).
pub const XENSTORE_RECONNECT: u32 = 1;

/// `XENSTORE_ERROR_NONE`: no error.
pub const XENSTORE_ERROR_NONE: u32 = 0;
/// `XENSTORE_ERROR_COMM`: communication problem (event channel not functional).
pub const XENSTORE_ERROR_COMM: u32 = 1;
/// `XENSTORE_ERROR_RINGIDX`: inconsistent producer or consumer index.
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
/// `XENSTORE_ERROR_PROTO`: protocol violation (payload too long).
pub const XENSTORE_ERROR_PROTO: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn sockmsg_layout_matches_xs_wire_h() {
        assert_eq!(size_of::<XsdSockmsg>(), XSD_SOCKMSG_SIZE);
        assert_eq!(offset_of!(XsdSockmsg, msg_type), 0);
        assert_eq!(offset_of!(XsdSockmsg, req_id), 4);
        assert_eq!(offset_of!(XsdSockmsg, tx_id), 8);
        assert_eq!(offset_of!(XsdSockmsg, len), 12);
    }

    #[test]
    fn interface_layout_matches_xenstore_ring_txt() {
        type I = XenstoreDomainInterface;
        assert_eq!(offset_of!(I, req), REQ_OFFSET);
        assert_eq!(offset_of!(I, rsp), RSP_OFFSET);
        assert_eq!(offset_of!(I, req_cons), REQ_CONS_OFFSET);
        assert_eq!(offset_of!(I, req_prod), REQ_PROD_OFFSET);
        assert_eq!(offset_of!(I, rsp_cons), RSP_CONS_OFFSET);
        assert_eq!(offset_of!(I, rsp_prod), RSP_PROD_OFFSET);
        assert_eq!(offset_of!(I, server_features), SERVER_FEATURES_OFFSET);
        assert_eq!(offset_of!(I, connection), CONNECTION_OFFSET);
        assert_eq!(offset_of!(I, error), ERROR_OFFSET);
        assert_eq!(size_of::<I>(), INTERFACE_SIZE);
        const { assert!(INTERFACE_SIZE <= crate::PAGE_SIZE) };
    }

    #[test]
    fn message_type_numbers() {
        // XS_RESTRICT (20) was removed; XS_RESET_WATCHES is XS_SET_TARGET + 2.
        assert_eq!(XS_RESET_WATCHES, XS_SET_TARGET + 2);
        assert_eq!(XS_DIRECTORY_PART, 22);
        assert_eq!(XS_TYPE_COUNT, XS_DIRECTORY_PART + 1);
        assert_eq!(XS_WATCH_EVENT, 15);
        assert_eq!(XS_ERROR, 16);
    }

    #[test]
    fn ring_masking() {
        assert_eq!(mask_xenstore_idx(1023), 1023);
        assert_eq!(mask_xenstore_idx(1024), 0);
        assert_eq!(mask_xenstore_idx(u32::MAX), 1023);
    }

    #[test]
    fn error_table_order() {
        // EINVAL must stay first (xenstored's fallback); EPERM was appended in 4.17.
        assert_eq!(XSD_ERRORS[0], "EINVAL");
        assert_eq!(XSD_ERRORS[12], "EAGAIN");
        assert_eq!(XSD_ERRORS[15], "EPERM");
    }
}
