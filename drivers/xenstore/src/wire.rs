//! The xenstore message codec: header view, request encoding, incremental decoder.
//!
//! Message framing is `struct xsd_sockmsg` followed by `len` payload bytes
//! (`xen/include/public/io/xs_wire.h`); payload syntax per message type is from
//! `docs/misc/xenstore.txt`.
//!
//! # No-panic promise
//!
//! Nothing in this module panics on any input: [`Header`] accessors read through
//! `get()` (a short buffer reads as zero and writes are dropped),
//! [`Decoder::feed`] accepts any byte sequence in any chunking and turns every
//! violation into a [`DecodeError`], and [`Reply::parse`] reports malformed
//! payloads as [`Malformed`]. Memory is bounded: the decoder buffers at most one
//! header plus [`XENSTORE_PAYLOAD_MAX`] bytes and skips over longer frames
//! without storing them.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use xen_abi::xenstore as abi;
pub use xen_abi::xenstore::{
    XENSTORE_ABS_PATH_MAX, XENSTORE_PAYLOAD_MAX, XENSTORE_REL_PATH_MAX, XSD_SOCKMSG_SIZE,
};

use crate::error::XsError;

/// Byte ranges of the header fields (`struct xsd_sockmsg`, little-endian `u32`s).
pub mod field {
    use core::ops::Range;

    /// `type`: the `XS_*` message type.
    pub const TYPE: Range<usize> = 0..4;
    /// `req_id`: echoed by the daemon in its reply.
    pub const REQ_ID: Range<usize> = 4..8;
    /// `tx_id`: transaction id, 0 outside transactions.
    pub const TX_ID: Range<usize> = 8..12;
    /// `len`: payload length in bytes.
    pub const LEN: Range<usize> = 12..16;
    /// First payload byte.
    pub const PAYLOAD: usize = 16;
}

/// Length of a message header on the wire.
pub const HEADER_LEN: usize = XSD_SOCKMSG_SIZE;

/// A xenstore message type (`enum xsd_sockmsg_type`, Xen 4.17).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MsgType {
    /// `XS_CONTROL` (formerly `XS_DEBUG`).
    Control,
    /// `XS_DIRECTORY`.
    Directory,
    /// `XS_READ`.
    Read,
    /// `XS_GET_PERMS`.
    GetPerms,
    /// `XS_WATCH`.
    Watch,
    /// `XS_UNWATCH`.
    Unwatch,
    /// `XS_TRANSACTION_START`.
    TransactionStart,
    /// `XS_TRANSACTION_END`.
    TransactionEnd,
    /// `XS_INTRODUCE`.
    Introduce,
    /// `XS_RELEASE`.
    Release,
    /// `XS_GET_DOMAIN_PATH`.
    GetDomainPath,
    /// `XS_WRITE`.
    Write,
    /// `XS_MKDIR`.
    Mkdir,
    /// `XS_RM`.
    Rm,
    /// `XS_SET_PERMS`.
    SetPerms,
    /// `XS_WATCH_EVENT`.
    WatchEvent,
    /// `XS_ERROR`.
    Error,
    /// `XS_IS_DOMAIN_INTRODUCED`.
    IsDomainIntroduced,
    /// `XS_RESUME`.
    Resume,
    /// `XS_SET_TARGET`.
    SetTarget,
    /// `XS_RESET_WATCHES`.
    ResetWatches,
    /// `XS_DIRECTORY_PART`.
    DirectoryPart,
}

impl MsgType {
    /// Every valid message type, in wire-number order.
    pub const ALL: [MsgType; 22] = [
        MsgType::Control,
        MsgType::Directory,
        MsgType::Read,
        MsgType::GetPerms,
        MsgType::Watch,
        MsgType::Unwatch,
        MsgType::TransactionStart,
        MsgType::TransactionEnd,
        MsgType::Introduce,
        MsgType::Release,
        MsgType::GetDomainPath,
        MsgType::Write,
        MsgType::Mkdir,
        MsgType::Rm,
        MsgType::SetPerms,
        MsgType::WatchEvent,
        MsgType::Error,
        MsgType::IsDomainIntroduced,
        MsgType::Resume,
        MsgType::SetTarget,
        MsgType::ResetWatches,
        MsgType::DirectoryPart,
    ];

    /// The wire number (`XS_*`).
    pub const fn to_u32(self) -> u32 {
        match self {
            MsgType::Control => abi::XS_CONTROL,
            MsgType::Directory => abi::XS_DIRECTORY,
            MsgType::Read => abi::XS_READ,
            MsgType::GetPerms => abi::XS_GET_PERMS,
            MsgType::Watch => abi::XS_WATCH,
            MsgType::Unwatch => abi::XS_UNWATCH,
            MsgType::TransactionStart => abi::XS_TRANSACTION_START,
            MsgType::TransactionEnd => abi::XS_TRANSACTION_END,
            MsgType::Introduce => abi::XS_INTRODUCE,
            MsgType::Release => abi::XS_RELEASE,
            MsgType::GetDomainPath => abi::XS_GET_DOMAIN_PATH,
            MsgType::Write => abi::XS_WRITE,
            MsgType::Mkdir => abi::XS_MKDIR,
            MsgType::Rm => abi::XS_RM,
            MsgType::SetPerms => abi::XS_SET_PERMS,
            MsgType::WatchEvent => abi::XS_WATCH_EVENT,
            MsgType::Error => abi::XS_ERROR,
            MsgType::IsDomainIntroduced => abi::XS_IS_DOMAIN_INTRODUCED,
            MsgType::Resume => abi::XS_RESUME,
            MsgType::SetTarget => abi::XS_SET_TARGET,
            MsgType::ResetWatches => abi::XS_RESET_WATCHES,
            MsgType::DirectoryPart => abi::XS_DIRECTORY_PART,
        }
    }

    /// The message type for a wire number; `None` for the removed `XS_RESTRICT`
    /// (20), `XS_INVALID` and anything unassigned.
    pub const fn from_u32(value: u32) -> Option<MsgType> {
        Some(match value {
            abi::XS_CONTROL => MsgType::Control,
            abi::XS_DIRECTORY => MsgType::Directory,
            abi::XS_READ => MsgType::Read,
            abi::XS_GET_PERMS => MsgType::GetPerms,
            abi::XS_WATCH => MsgType::Watch,
            abi::XS_UNWATCH => MsgType::Unwatch,
            abi::XS_TRANSACTION_START => MsgType::TransactionStart,
            abi::XS_TRANSACTION_END => MsgType::TransactionEnd,
            abi::XS_INTRODUCE => MsgType::Introduce,
            abi::XS_RELEASE => MsgType::Release,
            abi::XS_GET_DOMAIN_PATH => MsgType::GetDomainPath,
            abi::XS_WRITE => MsgType::Write,
            abi::XS_MKDIR => MsgType::Mkdir,
            abi::XS_RM => MsgType::Rm,
            abi::XS_SET_PERMS => MsgType::SetPerms,
            abi::XS_WATCH_EVENT => MsgType::WatchEvent,
            abi::XS_ERROR => MsgType::Error,
            abi::XS_IS_DOMAIN_INTRODUCED => MsgType::IsDomainIntroduced,
            abi::XS_RESUME => MsgType::Resume,
            abi::XS_SET_TARGET => MsgType::SetTarget,
            abi::XS_RESET_WATCHES => MsgType::ResetWatches,
            abi::XS_DIRECTORY_PART => MsgType::DirectoryPart,
            _ => return None,
        })
    }
}

/// Why a payload does not follow the syntax of `docs/misc/xenstore.txt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// A string that must be NUL-terminated is not.
    MissingNul,
    /// The payload has a different number of strings than the type requires.
    WrongFieldCount,
    /// A string that must be non-empty is empty.
    EmptyField,
    /// A path, name or token is not UTF-8.
    NotUtf8,
    /// A decimal number field does not parse or is out of range.
    BadNumber,
    /// An acknowledgement is not `OK`.
    NotOk,
    /// A permission string is not `[rwbn]<domid>`.
    BadPermission,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::MissingNul => "string not NUL-terminated",
            Malformed::WrongFieldCount => "wrong number of fields",
            Malformed::EmptyField => "empty field",
            Malformed::NotUtf8 => "field not UTF-8",
            Malformed::BadNumber => "bad decimal number",
            Malformed::NotOk => "acknowledgement not OK",
            Malformed::BadPermission => "permission not [rwbn]<domid>",
        })
    }
}

/// A frame the [`Decoder`] (or [`HeaderRepr::parse`]) rejected. The stream stays
/// framed after every variant: the offending frame's bytes are consumed (for
/// [`DecodeError::Oversized`], skipped as they arrive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The buffer is shorter than a header (only from [`Header::new_checked`]).
    Truncated,
    /// `len` exceeds [`XENSTORE_PAYLOAD_MAX`]; the decoder skips `len` bytes.
    Oversized {
        /// The claimed payload length.
        len: u32,
        /// The header's `req_id`.
        req_id: u32,
    },
    /// The `type` field is not a known [`MsgType`].
    UnknownType {
        /// The raw type.
        msg_type: u32,
        /// The header's `req_id`.
        req_id: u32,
    },
    /// An `XS_ERROR` or `XS_WATCH_EVENT` payload is malformed.
    Malformed {
        /// The message type.
        msg_type: MsgType,
        /// The header's `req_id`.
        req_id: u32,
        /// What is wrong.
        what: Malformed,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::Truncated => f.write_str("buffer shorter than a xenstore header"),
            DecodeError::Oversized { len, req_id } => write!(
                f,
                "payload length {len} over {XENSTORE_PAYLOAD_MAX} (req_id {req_id})"
            ),
            DecodeError::UnknownType { msg_type, req_id } => {
                write!(f, "unknown message type {msg_type} (req_id {req_id})")
            }
            DecodeError::Malformed {
                msg_type,
                req_id,
                what,
            } => write!(
                f,
                "malformed {msg_type:?} payload (req_id {req_id}): {what}"
            ),
        }
    }
}

impl DecodeError {
    /// The `req_id` of the rejected frame, if the header was readable.
    pub fn req_id(&self) -> Option<u32> {
        match *self {
            DecodeError::Truncated => None,
            DecodeError::Oversized { req_id, .. }
            | DecodeError::UnknownType { req_id, .. }
            | DecodeError::Malformed { req_id, .. } => Some(req_id),
        }
    }
}

/// Why a request cannot be encoded (a local argument error; nothing was sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The path is empty.
    EmptyPath,
    /// The path is longer than `XENSTORE_ABS_PATH_MAX` (absolute) or
    /// `XENSTORE_REL_PATH_MAX` (relative).
    PathTooLong,
    /// The path has a byte outside `[A-Za-z0-9-/_@]`, a doubled slash or a
    /// trailing slash.
    BadPath,
    /// A string field (token, path) contains a NUL byte.
    EmbeddedNul,
    /// The encoded payload would exceed [`XENSTORE_PAYLOAD_MAX`], which makes
    /// xenstored drop the connection.
    PayloadTooLarge,
    /// `XS_TRANSACTION_START` and `XS_WATCH` must be sent with `tx_id` 0.
    TransactionNotAllowed,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A checked view over a message header (and the payload after it).
#[derive(Clone, Copy, Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

fn get_u32(buf: &[u8], range: core::ops::Range<usize>) -> u32 {
    buf.get(range)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes)
}

fn set_u32(buf: &mut [u8], range: core::ops::Range<usize>, value: u32) {
    if let Some(b) = buf.get_mut(range) {
        b.copy_from_slice(&value.to_le_bytes());
    }
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps a buffer without checking it (short buffers read as zero).
    pub const fn new_unchecked(buffer: T) -> Self {
        Header { buffer }
    }

    /// Wraps a buffer after [`Header::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let header = Header::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// Checks the buffer holds a whole header and that `len` is within
    /// [`XENSTORE_PAYLOAD_MAX`]. The payload itself may be incomplete.
    pub fn check_len(&self) -> Result<(), DecodeError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(DecodeError::Truncated);
        }
        let len = self.len();
        if len as usize > XENSTORE_PAYLOAD_MAX {
            return Err(DecodeError::Oversized {
                len,
                req_id: self.req_id(),
            });
        }
        Ok(())
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The raw `type` field.
    pub fn msg_type(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::TYPE)
    }

    /// The `req_id` field.
    pub fn req_id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::REQ_ID)
    }

    /// The `tx_id` field.
    pub fn tx_id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::TX_ID)
    }

    /// The `len` field.
    pub fn len(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::LEN)
    }

    /// Whether `len` is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload bytes present in the buffer, at most `len` of them.
    pub fn payload(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        let end = field::PAYLOAD
            .saturating_add(self.len() as usize)
            .min(buf.len());
        buf.get(field::PAYLOAD..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Sets the `type` field.
    pub fn set_msg_type(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::TYPE, value);
    }

    /// Sets the `req_id` field.
    pub fn set_req_id(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::REQ_ID, value);
    }

    /// Sets the `tx_id` field.
    pub fn set_tx_id(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::TX_ID, value);
    }

    /// Sets the `len` field.
    pub fn set_len(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::LEN, value);
    }
}

/// A parsed, validated message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderRepr {
    /// Message type.
    pub msg_type: MsgType,
    /// Request id.
    pub req_id: u32,
    /// Transaction id.
    pub tx_id: u32,
    /// Payload length, at most [`XENSTORE_PAYLOAD_MAX`].
    pub len: u32,
}

impl HeaderRepr {
    /// Parses a header: checks its length, `len` and `type`.
    pub fn parse<T: AsRef<[u8]>>(header: &Header<T>) -> Result<HeaderRepr, DecodeError> {
        header.check_len()?;
        let msg_type = MsgType::from_u32(header.msg_type()).ok_or(DecodeError::UnknownType {
            msg_type: header.msg_type(),
            req_id: header.req_id(),
        })?;
        Ok(HeaderRepr {
            msg_type,
            req_id: header.req_id(),
            tx_id: header.tx_id(),
            len: header.len(),
        })
    }

    /// Bytes the header occupies.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `header` (which should hold [`HEADER_LEN`] bytes;
    /// fields that do not fit are dropped).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut Header<T>) {
        header.set_msg_type(self.msg_type.to_u32());
        header.set_req_id(self.req_id);
        header.set_tx_id(self.tx_id);
        header.set_len(self.len);
    }

    /// The header as its 16 wire bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0u8; HEADER_LEN];
        self.emit(&mut Header::new_unchecked(&mut bytes[..]));
        bytes
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// Access granted by one permission entry (`<perm-as-string>` in `xenstore.txt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `n`: no access.
    None,
    /// `r`: read only.
    Read,
    /// `w`: write only.
    Write,
    /// `b`: read and write.
    Both,
}

/// One permission entry: `<access><domid>`. The first entry names the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    /// The domain the entry is for.
    pub domid: u16,
    /// What it may do.
    pub access: Access,
}

impl Perm {
    fn letter(&self) -> u8 {
        match self.access {
            Access::None => b'n',
            Access::Read => b'r',
            Access::Write => b'w',
            Access::Both => b'b',
        }
    }

    /// Parses `[nrwb]<domid>`.
    pub fn parse(s: &[u8]) -> Result<Perm, Malformed> {
        let (&letter, digits) = s.split_first().ok_or(Malformed::BadPermission)?;
        let access = match letter {
            b'n' => Access::None,
            b'r' => Access::Read,
            b'w' => Access::Write,
            b'b' => Access::Both,
            _ => return Err(Malformed::BadPermission),
        };
        let domid = parse_decimal(digits)
            .and_then(|v| u16::try_from(v).ok())
            .ok_or(Malformed::BadPermission)?;
        Ok(Perm { domid, access })
    }
}

/// A request from the guest, with the payload rules of `docs/misc/xenstore.txt`:
/// every path and token is NUL-terminated, a written value is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `READ <path>|`.
    Read {
        /// Node path.
        path: &'a str,
    },
    /// `WRITE <path>|<value|>` (the value is raw bytes, no terminator).
    Write {
        /// Node path.
        path: &'a str,
        /// New value.
        value: &'a [u8],
    },
    /// `MKDIR <path>|`.
    Mkdir {
        /// Node path.
        path: &'a str,
    },
    /// `RM <path>|`.
    Rm {
        /// Node path.
        path: &'a str,
    },
    /// `DIRECTORY <path>|`.
    Directory {
        /// Node path.
        path: &'a str,
    },
    /// `DIRECTORY_PART <path>|<offset>|` (offset is a byte offset into the
    /// NUL-separated child list).
    DirectoryPart {
        /// Node path.
        path: &'a str,
        /// Byte offset into the child list.
        offset: u32,
    },
    /// `GET_PERMS <path>|`.
    GetPerms {
        /// Node path.
        path: &'a str,
    },
    /// `SET_PERMS <path>|<perm>|+`.
    SetPerms {
        /// Node path.
        path: &'a str,
        /// At least one entry; the first is the owner.
        perms: &'a [Perm],
    },
    /// `WATCH <wpath>|<token>|`.
    Watch {
        /// Watched path, or `@<special>`.
        path: &'a str,
        /// Token echoed in every event.
        token: &'a str,
    },
    /// `UNWATCH <wpath>|<token>|`.
    Unwatch {
        /// Watched path.
        path: &'a str,
        /// Token given to `WATCH`.
        token: &'a str,
    },
    /// `TRANSACTION_START |`.
    TransactionStart,
    /// `TRANSACTION_END T|` or `F|`.
    TransactionEnd {
        /// `true` to commit, `false` to abort.
        commit: bool,
    },
    /// `GET_DOMAIN_PATH <domid>|`.
    GetDomainPath {
        /// The domain.
        domid: u16,
    },
    /// `RESET_WATCHES |`.
    ResetWatches,
}

fn check_path(path: &str, special_ok: bool) -> Result<(), RequestError> {
    let bytes = path.as_bytes();
    if bytes.is_empty() {
        return Err(RequestError::EmptyPath);
    }
    if bytes.contains(&0) {
        return Err(RequestError::EmbeddedNul);
    }
    let absolute = bytes.first() == Some(&b'/');
    let max = if absolute {
        XENSTORE_ABS_PATH_MAX
    } else {
        XENSTORE_REL_PATH_MAX
    };
    if bytes.len() > max {
        return Err(RequestError::PathTooLong);
    }
    // Special watch paths (`@releaseDomain`, ...) may have any syntax.
    if special_ok && bytes.first() == Some(&b'@') {
        return Ok(());
    }
    let valid_char = |c: &u8| c.is_ascii_alphanumeric() || b"-/_@".contains(c);
    if !bytes.iter().all(valid_char) {
        return Err(RequestError::BadPath);
    }
    if bytes.windows(2).any(|w| w == b"//") || (bytes.len() > 1 && bytes.ends_with(b"/")) {
        return Err(RequestError::BadPath);
    }
    Ok(())
}

fn check_string(s: &str) -> Result<(), RequestError> {
    if s.as_bytes().contains(&0) {
        Err(RequestError::EmbeddedNul)
    } else {
        Ok(())
    }
}

/// Number of decimal digits of `v`.
fn decimal_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

fn push_decimal(out: &mut Vec<u8>, v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = v;
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or(&[]));
}

/// Parses an unsigned decimal number with no sign, spaces or leading `+`.
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &c| {
        if c.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        } else {
            None
        }
    })
}

impl<'a> Request<'a> {
    /// The message type this request is sent as.
    pub const fn msg_type(&self) -> MsgType {
        match self {
            Request::Read { .. } => MsgType::Read,
            Request::Write { .. } => MsgType::Write,
            Request::Mkdir { .. } => MsgType::Mkdir,
            Request::Rm { .. } => MsgType::Rm,
            Request::Directory { .. } => MsgType::Directory,
            Request::DirectoryPart { .. } => MsgType::DirectoryPart,
            Request::GetPerms { .. } => MsgType::GetPerms,
            Request::SetPerms { .. } => MsgType::SetPerms,
            Request::Watch { .. } => MsgType::Watch,
            Request::Unwatch { .. } => MsgType::Unwatch,
            Request::TransactionStart => MsgType::TransactionStart,
            Request::TransactionEnd { .. } => MsgType::TransactionEnd,
            Request::GetDomainPath { .. } => MsgType::GetDomainPath,
            Request::ResetWatches => MsgType::ResetWatches,
        }
    }

    /// Whether the request may carry a non-zero `tx_id`.
    pub const fn allows_transaction(&self) -> bool {
        !matches!(
            self,
            Request::TransactionStart
                | Request::Watch { .. }
                | Request::Unwatch { .. }
                | Request::ResetWatches
        )
    }

    /// Checks paths, tokens and the payload size.
    pub fn validate(&self) -> Result<(), RequestError> {
        match *self {
            Request::Read { path }
            | Request::Write { path, .. }
            | Request::Mkdir { path }
            | Request::Rm { path }
            | Request::Directory { path }
            | Request::DirectoryPart { path, .. }
            | Request::GetPerms { path } => check_path(path, false)?,
            Request::SetPerms { path, perms } => {
                check_path(path, true)?;
                if perms.is_empty() {
                    return Err(RequestError::BadPath);
                }
            }
            Request::Watch { path, token } | Request::Unwatch { path, token } => {
                check_path(path, true)?;
                check_string(token)?;
            }
            Request::TransactionStart
            | Request::TransactionEnd { .. }
            | Request::GetDomainPath { .. }
            | Request::ResetWatches => {}
        }
        if self.payload_len() > XENSTORE_PAYLOAD_MAX {
            return Err(RequestError::PayloadTooLarge);
        }
        Ok(())
    }

    /// Length of the encoded payload (without the header).
    pub fn payload_len(&self) -> usize {
        match *self {
            Request::Read { path }
            | Request::Mkdir { path }
            | Request::Rm { path }
            | Request::Directory { path }
            | Request::GetPerms { path } => path.len() + 1,
            Request::Write { path, value } => path.len() + 1 + value.len(),
            Request::DirectoryPart { path, offset } => {
                path.len() + 1 + decimal_len(u64::from(offset)) + 1
            }
            Request::SetPerms { path, perms } => {
                path.len()
                    + 1
                    + perms
                        .iter()
                        .map(|p| 2 + decimal_len(u64::from(p.domid)))
                        .sum::<usize>()
            }
            Request::Watch { path, token } | Request::Unwatch { path, token } => {
                path.len() + 1 + token.len() + 1
            }
            Request::TransactionStart | Request::ResetWatches => 1,
            Request::TransactionEnd { .. } => 2,
            Request::GetDomainPath { domid } => decimal_len(u64::from(domid)) + 1,
        }
    }

    /// Appends the payload bytes to `out` (no validation).
    pub fn emit_payload(&self, out: &mut Vec<u8>) {
        let push_str = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        };
        match *self {
            Request::Read { path }
            | Request::Mkdir { path }
            | Request::Rm { path }
            | Request::Directory { path }
            | Request::GetPerms { path } => push_str(out, path),
            Request::Write { path, value } => {
                push_str(out, path);
                out.extend_from_slice(value);
            }
            Request::DirectoryPart { path, offset } => {
                push_str(out, path);
                push_decimal(out, u64::from(offset));
                out.push(0);
            }
            Request::SetPerms { path, perms } => {
                push_str(out, path);
                for p in perms {
                    out.push(p.letter());
                    push_decimal(out, u64::from(p.domid));
                    out.push(0);
                }
            }
            Request::Watch { path, token } | Request::Unwatch { path, token } => {
                push_str(out, path);
                push_str(out, token);
            }
            Request::TransactionStart | Request::ResetWatches => out.push(0),
            Request::TransactionEnd { commit } => {
                out.push(if commit { b'T' } else { b'F' });
                out.push(0);
            }
            Request::GetDomainPath { domid } => {
                push_decimal(out, u64::from(domid));
                out.push(0);
            }
        }
    }

    /// Validates the request and appends header + payload to `out`.
    pub fn encode(&self, req_id: u32, tx_id: u32, out: &mut Vec<u8>) -> Result<(), RequestError> {
        self.validate()?;
        if tx_id != 0 && !self.allows_transaction() {
            return Err(RequestError::TransactionNotAllowed);
        }
        let len = self.payload_len();
        let header = HeaderRepr {
            msg_type: self.msg_type(),
            req_id,
            tx_id,
            // validate() bounded len by XENSTORE_PAYLOAD_MAX.
            len: u32::try_from(len).map_err(|_| RequestError::PayloadTooLarge)?,
        };
        out.reserve(HEADER_LEN + len);
        out.extend_from_slice(&header.to_bytes());
        self.emit_payload(out);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Payload helpers
// ---------------------------------------------------------------------------

/// Splits a payload of NUL-terminated strings (`<foo>|*`). Fails if the last
/// string lacks its NUL.
pub fn split_strings(payload: &[u8]) -> Result<Vec<&[u8]>, Malformed> {
    if payload.is_empty() {
        return Ok(Vec::new());
    }
    let body = payload.strip_suffix(&[0]).ok_or(Malformed::MissingNul)?;
    Ok(body.split(|&b| b == 0).collect())
}

fn to_string(bytes: &[u8]) -> Result<String, Malformed> {
    core::str::from_utf8(bytes)
        .map(String::from)
        .map_err(|_| Malformed::NotUtf8)
}

/// Strips the single trailing NUL of a one-string payload (`<foo>|`).
fn single_string(payload: &[u8]) -> Result<&[u8], Malformed> {
    let body = payload.strip_suffix(&[0]).ok_or(Malformed::MissingNul)?;
    if body.contains(&0) {
        return Err(Malformed::WrongFieldCount);
    }
    Ok(body)
}

/// A watch event: `<epath>|<token>|`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The path that changed (a child of the watched path, or the watched path
    /// itself).
    pub path: String,
    /// The token given when the watch was registered.
    pub token: String,
}

impl WatchEvent {
    /// Parses an `XS_WATCH_EVENT` payload: exactly two NUL-terminated UTF-8
    /// strings, the path non-empty.
    pub fn parse(payload: &[u8]) -> Result<WatchEvent, Malformed> {
        let strings = split_strings(payload)?;
        let [path, token] = strings.as_slice() else {
            return Err(Malformed::WrongFieldCount);
        };
        if path.is_empty() {
            return Err(Malformed::EmptyField);
        }
        Ok(WatchEvent {
            path: to_string(path)?,
            token: to_string(token)?,
        })
    }

    /// Appends the `XS_WATCH_EVENT` payload (`path\0token\0`).
    pub fn emit_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.path.as_bytes());
        out.push(0);
        out.extend_from_slice(self.token.as_bytes());
        out.push(0);
    }
}

/// The body of a decoded message, interpreted as far as the type alone allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Any type but `XS_ERROR`/`XS_WATCH_EVENT`: the raw payload, to be parsed
    /// against the request it answers ([`Reply::parse`]).
    Payload(Vec<u8>),
    /// `XS_ERROR`: the named error (an errno variant or [`XsError::Unknown`]).
    Error(XsError),
    /// `XS_WATCH_EVENT`.
    WatchEvent(WatchEvent),
}

/// One whole decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Message type.
    pub msg_type: MsgType,
    /// Request id.
    pub req_id: u32,
    /// Transaction id.
    pub tx_id: u32,
    /// Payload.
    pub body: Body,
}

impl Message {
    /// Builds a message from a validated header and its full payload.
    pub fn parse(header: HeaderRepr, payload: Vec<u8>) -> Result<Message, DecodeError> {
        let malformed = |what| DecodeError::Malformed {
            msg_type: header.msg_type,
            req_id: header.req_id,
            what,
        };
        let body = match header.msg_type {
            MsgType::Error => {
                let name = single_string(&payload).map_err(malformed)?;
                Body::Error(XsError::from_wire_name(name))
            }
            MsgType::WatchEvent => {
                Body::WatchEvent(WatchEvent::parse(&payload).map_err(malformed)?)
            }
            _ => Body::Payload(payload),
        };
        Ok(Message {
            msg_type: header.msg_type,
            req_id: header.req_id,
            tx_id: header.tx_id,
            body,
        })
    }
}

// ---------------------------------------------------------------------------
// Incremental decoder
// ---------------------------------------------------------------------------

/// Reassembles whole messages from arbitrary chunks of the response stream.
#[derive(Clone, Debug, Default)]
pub struct Decoder {
    header: [u8; HEADER_LEN],
    header_have: usize,
    /// Parsed header of the frame whose payload is being collected.
    current: Option<(u32, u32, u32, u32)>,
    payload: Vec<u8>,
    /// Bytes of an oversized frame still to discard.
    skip: u32,
}

impl Decoder {
    /// A decoder at a frame boundary.
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Forgets any partial frame (after the ring was reset on a packet boundary).
    pub fn reset(&mut self) {
        *self = Decoder::default();
    }

    /// Whether the decoder is at a frame boundary.
    pub fn is_idle(&self) -> bool {
        self.header_have == 0 && self.current.is_none() && self.skip == 0
    }

    /// Consumes bytes from `input` until one frame completes or the input runs
    /// out. Returns how many bytes were consumed and the completed frame, if
    /// any; call again with the rest of the input. Never panics.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<Result<Message, DecodeError>>) {
        let mut used = 0usize;
        loop {
            let rest = input.get(used..).unwrap_or(&[]);
            if self.skip > 0 {
                let n = rest.len().min(self.skip as usize);
                used += n;
                // n <= skip, so this cannot underflow; n fits u32 since n <= skip.
                self.skip -= n as u32;
                if self.skip > 0 {
                    return (used, None);
                }
                continue;
            }
            let Some((msg_type, req_id, tx_id, len)) = self.current else {
                // Collecting the header.
                let want = HEADER_LEN - self.header_have;
                let n = rest.len().min(want);
                if let (Some(dst), Some(src)) = (
                    self.header.get_mut(self.header_have..self.header_have + n),
                    rest.get(..n),
                ) {
                    dst.copy_from_slice(src);
                }
                self.header_have += n;
                used += n;
                if self.header_have < HEADER_LEN {
                    return (used, None);
                }
                self.header_have = 0;
                let view = Header::new_unchecked(&self.header[..]);
                let (msg_type, req_id, tx_id, len) =
                    (view.msg_type(), view.req_id(), view.tx_id(), view.len());
                if len as usize > XENSTORE_PAYLOAD_MAX {
                    self.skip = len;
                    return (used, Some(Err(DecodeError::Oversized { len, req_id })));
                }
                self.payload.clear();
                self.payload.reserve(len as usize);
                self.current = Some((msg_type, req_id, tx_id, len));
                continue;
            };
            let missing = (len as usize).saturating_sub(self.payload.len());
            let n = rest.len().min(missing);
            self.payload.extend_from_slice(rest.get(..n).unwrap_or(&[]));
            used += n;
            if self.payload.len() < len as usize {
                return (used, None);
            }
            self.current = None;
            let payload = core::mem::take(&mut self.payload);
            let result = match MsgType::from_u32(msg_type) {
                None => Err(DecodeError::UnknownType { msg_type, req_id }),
                Some(msg_type) => Message::parse(
                    HeaderRepr {
                        msg_type,
                        req_id,
                        tx_id,
                        len,
                    },
                    payload,
                ),
            };
            return (used, Some(result));
        }
    }

    /// Feeds all of `input`, calling `sink` for every completed frame.
    pub fn feed_all(&mut self, input: &[u8], mut sink: impl FnMut(Result<Message, DecodeError>)) {
        let mut rest = input;
        while !rest.is_empty() {
            let (used, frame) = self.feed(rest);
            if let Some(frame) = frame {
                sink(frame);
            }
            if used == 0 {
                break;
            }
            rest = rest.get(used..).unwrap_or(&[]);
        }
    }
}

// ---------------------------------------------------------------------------
// Typed replies
// ---------------------------------------------------------------------------

/// A transaction id (`tx_id`); [`TxId::NONE`] outside transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxId(pub u32);

impl TxId {
    /// No transaction.
    pub const NONE: TxId = TxId(0);
}

/// A successful reply, parsed according to the request it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `OK|`: `WRITE`, `MKDIR`, `RM`, `SET_PERMS`, `WATCH`, `UNWATCH`,
    /// `TRANSACTION_END`, `RESET_WATCHES`.
    Ok,
    /// `READ`: the value, raw.
    Value(Vec<u8>),
    /// `DIRECTORY`: child leaf names.
    Directory(Vec<String>),
    /// `DIRECTORY_PART`: one chunk of the child list.
    DirectoryPart {
        /// Node generation; equal across chunks means the list did not change.
        gencnt: u64,
        /// Child leaf names in this chunk.
        names: Vec<String>,
        /// Byte length of this chunk in the child list (advance the offset by it).
        chunk_len: u32,
        /// Whether the chunk ends the list.
        complete: bool,
    },
    /// `GET_PERMS`.
    Perms(Vec<Perm>),
    /// `TRANSACTION_START`.
    Transaction(TxId),
    /// `GET_DOMAIN_PATH`.
    DomainPath(String),
}

fn parse_names(strings: &[&[u8]]) -> Result<Vec<String>, Malformed> {
    strings
        .iter()
        .map(|s| {
            if s.is_empty() {
                Err(Malformed::EmptyField)
            } else {
                to_string(s)
            }
        })
        .collect()
}

impl Reply {
    /// Parses the payload of a non-error reply to a request of type `request`.
    /// `OK` is accepted with or without its NUL; every other string must be
    /// NUL-terminated.
    pub fn parse(request: MsgType, payload: &[u8]) -> Result<Reply, Malformed> {
        match request {
            MsgType::Read => Ok(Reply::Value(payload.to_vec())),
            MsgType::Directory => Ok(Reply::Directory(parse_names(&split_strings(payload)?)?)),
            MsgType::DirectoryPart => {
                let strings = split_strings(payload)?;
                let (gen_str, rest) = strings.split_first().ok_or(Malformed::WrongFieldCount)?;
                let gencnt = parse_decimal(gen_str).ok_or(Malformed::BadNumber)?;
                // The final chunk carries an empty string after the last name.
                let (names, complete) = match rest.split_last() {
                    Some(([], names)) => (names, true),
                    _ => (rest, false),
                };
                let chunk_len = names.iter().map(|n| n.len() + 1).sum::<usize>();
                Ok(Reply::DirectoryPart {
                    gencnt,
                    names: parse_names(names)?,
                    chunk_len: u32::try_from(chunk_len).map_err(|_| Malformed::BadNumber)?,
                    complete,
                })
            }
            MsgType::GetPerms => {
                let strings = split_strings(payload)?;
                if strings.is_empty() {
                    return Err(Malformed::WrongFieldCount);
                }
                let perms = strings
                    .iter()
                    .map(|s| Perm::parse(s))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Reply::Perms(perms))
            }
            MsgType::TransactionStart => {
                let digits = single_string(payload)?;
                let id = parse_decimal(digits)
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or(Malformed::BadNumber)?;
                Ok(Reply::Transaction(TxId(id)))
            }
            MsgType::GetDomainPath => {
                let path = single_string(payload)?;
                if path.is_empty() {
                    return Err(Malformed::EmptyField);
                }
                Ok(Reply::DomainPath(to_string(path)?))
            }
            _ => {
                if payload == b"OK\0" || payload == b"OK" {
                    Ok(Reply::Ok)
                } else {
                    Err(Malformed::NotOk)
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests;
