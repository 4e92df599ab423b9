//! NBD wire format: checked views, field ranges and `Repr`s for every message this server reads or writes.
//!
//! Source: `NetworkBlockDevice/nbd` `doc/proto.md` (fixed newstyle
//! negotiation, simple replies; no structured replies, no TLS, no extended
//! headers). All integers are big-endian.
//!
//! Each fixed-size message has a view over a byte buffer (`new_checked`
//! checks the length once) whose accessors read the ranges in its `field`
//! module, and a `Repr` with `parse` (from a checked view) and `emit`
//! (into a buffer at least `Repr::LEN` / `buffer_len()` long).
//!
//! # No-panic promise
//!
//! Once `new_checked` (or `check_len`) returned `Ok`, no accessor of a view
//! panics: every field range lies inside the checked length. `parse`
//! functions return an [`Error`] on any input, never panic. `emit` functions
//! write only inside `buffer_len()` bytes and do nothing to a shorter buffer
//! (they are given correctly sized buffers by this crate).

use alloc::vec::Vec;
use core::fmt;

/// `NBDMAGIC`: first 8 bytes the server sends.
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: second 8 bytes of the greeting, and the magic of each option request.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of each option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of a transmission request (`NBD_REQUEST_MAGIC`).
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of a simple reply (`NBD_SIMPLE_REPLY_MAGIC`).
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// The IANA-assigned NBD port.
pub const NBD_PORT: u16 = 10809;
/// Zero bytes after the `NBD_OPT_EXPORT_NAME` reply unless `NO_ZEROES` was agreed.
pub const EXPORT_NAME_ZEROES: usize = 124;
/// The longest string (export name) the protocol allows, bytes.
pub const MAX_STRING: usize = 4096;

/// Handshake flags (server → client, 16 bits).
pub mod handshake_flags {
    /// `NBD_FLAG_FIXED_NEWSTYLE`.
    pub const FIXED_NEWSTYLE: u16 = 1 << 0;
    /// `NBD_FLAG_NO_ZEROES`.
    pub const NO_ZEROES: u16 = 1 << 1;
}

/// Client flags (client → server, 32 bits).
pub mod client_flags {
    /// `NBD_FLAG_C_FIXED_NEWSTYLE`.
    pub const FIXED_NEWSTYLE: u32 = 1 << 0;
    /// `NBD_FLAG_C_NO_ZEROES`.
    pub const NO_ZEROES: u32 = 1 << 1;
    /// Every flag this server knows; a client setting another one is dropped.
    pub const KNOWN: u32 = FIXED_NEWSTYLE | NO_ZEROES;
}

/// Transmission flags (per export, 16 bits).
pub mod transmission_flags {
    /// `NBD_FLAG_HAS_FLAGS`: always set.
    pub const HAS_FLAGS: u16 = 1 << 0;
    /// `NBD_FLAG_READ_ONLY`.
    pub const READ_ONLY: u16 = 1 << 1;
    /// `NBD_FLAG_SEND_FLUSH`.
    pub const SEND_FLUSH: u16 = 1 << 2;
    /// `NBD_FLAG_SEND_FUA`.
    pub const SEND_FUA: u16 = 1 << 3;
    /// `NBD_FLAG_ROTATIONAL` (never set here).
    pub const ROTATIONAL: u16 = 1 << 4;
    /// `NBD_FLAG_SEND_TRIM`.
    pub const SEND_TRIM: u16 = 1 << 5;
    /// `NBD_FLAG_SEND_WRITE_ZEROES`.
    pub const SEND_WRITE_ZEROES: u16 = 1 << 6;
    /// `NBD_FLAG_SEND_DF` (never set here).
    pub const SEND_DF: u16 = 1 << 7;
    /// `NBD_FLAG_CAN_MULTI_CONN`: a flush covers every connection's completed writes.
    pub const CAN_MULTI_CONN: u16 = 1 << 8;
}

/// Command flags (per request, 16 bits).
pub mod command_flags {
    /// `NBD_CMD_FLAG_FUA`: reply only once the written data is durable.
    pub const FUA: u16 = 1 << 0;
    /// `NBD_CMD_FLAG_NO_HOLE` (WRITE_ZEROES only).
    pub const NO_HOLE: u16 = 1 << 1;
    /// `NBD_CMD_FLAG_DF` (READ, only with `SEND_DF`; refused here).
    pub const DF: u16 = 1 << 2;
    /// `NBD_CMD_FLAG_REQ_ONE` (BLOCK_STATUS; refused here).
    pub const REQ_ONE: u16 = 1 << 3;
    /// `NBD_CMD_FLAG_FAST_ZERO` (only with `SEND_FAST_ZERO`; refused here).
    pub const FAST_ZERO: u16 = 1 << 4;
}

/// Option types (`NBD_OPT_*`).
pub mod option {
    /// `NBD_OPT_EXPORT_NAME`.
    pub const EXPORT_NAME: u32 = 1;
    /// `NBD_OPT_ABORT`.
    pub const ABORT: u32 = 2;
    /// `NBD_OPT_LIST`.
    pub const LIST: u32 = 3;
    /// `NBD_OPT_STARTTLS` (answered `ERR_UNSUP`).
    pub const STARTTLS: u32 = 5;
    /// `NBD_OPT_INFO`.
    pub const INFO: u32 = 6;
    /// `NBD_OPT_GO`.
    pub const GO: u32 = 7;
    /// `NBD_OPT_STRUCTURED_REPLY` (answered `ERR_UNSUP`).
    pub const STRUCTURED_REPLY: u32 = 8;
    /// `NBD_OPT_LIST_META_CONTEXT` (answered `ERR_UNSUP`).
    pub const LIST_META_CONTEXT: u32 = 9;
    /// `NBD_OPT_SET_META_CONTEXT` (answered `ERR_UNSUP`).
    pub const SET_META_CONTEXT: u32 = 10;
}

/// Option reply types (`NBD_REP_*`); errors have bit 31 set.
pub mod reply {
    /// `NBD_REP_ACK`.
    pub const ACK: u32 = 1;
    /// `NBD_REP_SERVER`: one export in a `NBD_OPT_LIST` answer.
    pub const SERVER: u32 = 2;
    /// `NBD_REP_INFO`: one information item of `NBD_OPT_INFO`/`NBD_OPT_GO`.
    pub const INFO: u32 = 3;
    /// `NBD_REP_ERR_UNSUP`: unknown option.
    pub const ERR_UNSUP: u32 = (1 << 31) + 1;
    /// `NBD_REP_ERR_POLICY`.
    pub const ERR_POLICY: u32 = (1 << 31) + 2;
    /// `NBD_REP_ERR_INVALID`: known option, bad data.
    pub const ERR_INVALID: u32 = (1 << 31) + 3;
    /// `NBD_REP_ERR_UNKNOWN`: no such export.
    pub const ERR_UNKNOWN: u32 = (1 << 31) + 6;
    /// `NBD_REP_ERR_TOO_BIG`: the option's data is larger than this server takes.
    pub const ERR_TOO_BIG: u32 = (1 << 31) + 9;
}

/// Information types (`NBD_INFO_*`).
pub mod info {
    /// `NBD_INFO_EXPORT`: size and transmission flags.
    pub const EXPORT: u16 = 0;
    /// `NBD_INFO_NAME`.
    pub const NAME: u16 = 1;
    /// `NBD_INFO_DESCRIPTION`.
    pub const DESCRIPTION: u16 = 2;
    /// `NBD_INFO_BLOCK_SIZE`: minimum, preferred and maximum sizes.
    pub const BLOCK_SIZE: u16 = 3;
}

/// Error values of a simple reply (`NBD_E*`).
pub mod errno {
    /// `NBD_EPERM`: write or trim on a read-only export.
    pub const EPERM: u32 = 1;
    /// `NBD_EIO`: the disk operation failed.
    pub const EIO: u32 = 5;
    /// `NBD_ENOMEM`.
    pub const ENOMEM: u32 = 12;
    /// `NBD_EINVAL`: out of range, misaligned, unknown command or flag.
    pub const EINVAL: u32 = 22;
    /// `NBD_ENOSPC`.
    pub const ENOSPC: u32 = 28;
    /// `NBD_EOVERFLOW`.
    pub const EOVERFLOW: u32 = 75;
    /// `NBD_ENOTSUP`.
    pub const ENOTSUP: u32 = 95;
    /// `NBD_ESHUTDOWN`.
    pub const ESHUTDOWN: u32 = 108;
}

/// Why bytes are not a valid message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the message needs.
    Truncated {
        /// Bytes the message needs.
        need: usize,
        /// Bytes there were.
        have: usize,
    },
    /// A magic number is wrong.
    BadMagic {
        /// The magic this message must start with.
        expected: u64,
        /// The value found.
        found: u64,
    },
    /// A length inside the message does not fit the bytes around it.
    BadLength,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { need, have } => {
                write!(f, "message truncated: {have} of {need} bytes")
            }
            Error::BadMagic { expected, found } => {
                write!(f, "bad magic {found:#x} (expected {expected:#x})")
            }
            Error::BadLength => f.write_str("inner length does not fit the message"),
        }
    }
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    u16::from_be_bytes(a)
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(at..at + v.len()) {
        d.copy_from_slice(v);
    }
}

fn check(have: usize, need: usize) -> Result<(), Error> {
    if have < need {
        Err(Error::Truncated { need, have })
    } else {
        Ok(())
    }
}

/// The server's greeting: `NBDMAGIC`, `IHAVEOPT`, 16-bit handshake flags (18 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreetingRepr {
    /// Handshake flags ([`handshake_flags`]).
    pub flags: u16,
}

/// Field ranges of the greeting.
pub mod greeting_field {
    use core::ops::Range;
    /// `NBDMAGIC`.
    pub const MAGIC: Range<usize> = 0..8;
    /// `IHAVEOPT`.
    pub const OPT_MAGIC: Range<usize> = 8..16;
    /// Handshake flags.
    pub const FLAGS: Range<usize> = 16..18;
}

impl GreetingRepr {
    /// Bytes on the wire.
    pub const LEN: usize = greeting_field::FLAGS.end;

    /// Parses a greeting (for clients and tests).
    pub fn parse(b: &[u8]) -> Result<Self, Error> {
        check(b.len(), Self::LEN)?;
        let (m, o) = (be_u64(b, 0), be_u64(b, 8));
        if m != NBD_MAGIC {
            return Err(Error::BadMagic {
                expected: NBD_MAGIC,
                found: m,
            });
        }
        if o != IHAVEOPT {
            return Err(Error::BadMagic {
                expected: IHAVEOPT,
                found: o,
            });
        }
        Ok(GreetingRepr {
            flags: be_u16(b, greeting_field::FLAGS.start),
        })
    }

    /// Writes the greeting into `b[..LEN]`.
    pub fn emit(&self, b: &mut [u8]) {
        put(b, greeting_field::MAGIC.start, &NBD_MAGIC.to_be_bytes());
        put(b, greeting_field::OPT_MAGIC.start, &IHAVEOPT.to_be_bytes());
        put(b, greeting_field::FLAGS.start, &self.flags.to_be_bytes());
    }
}

/// The client's 32-bit flags after the greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFlagsRepr {
    /// Client flags ([`client_flags`]).
    pub flags: u32,
}

impl ClientFlagsRepr {
    /// Bytes on the wire.
    pub const LEN: usize = 4;

    /// Parses the client flags.
    pub fn parse(b: &[u8]) -> Result<Self, Error> {
        check(b.len(), Self::LEN)?;
        Ok(ClientFlagsRepr {
            flags: be_u32(b, 0),
        })
    }

    /// Writes the flags into `b[..LEN]`.
    pub fn emit(&self, b: &mut [u8]) {
        put(b, 0, &self.flags.to_be_bytes());
    }

    /// The flags this server does not know (a client setting any is dropped).
    pub fn unknown(&self) -> u32 {
        self.flags & !client_flags::KNOWN
    }
}

/// Field ranges of an option request header.
pub mod option_field {
    use core::ops::Range;
    /// `IHAVEOPT`.
    pub const MAGIC: Range<usize> = 0..8;
    /// The option (`NBD_OPT_*`).
    pub const OPTION: Range<usize> = 8..12;
    /// Length of the data that follows.
    pub const LENGTH: Range<usize> = 12..16;
}

/// A checked view of an option request header (16 bytes; the data follows).
#[derive(Debug, Clone, Copy)]
pub struct OptionHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> OptionHeader<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        OptionHeader { buffer }
    }

    /// Wraps `buffer`, checking it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Checks the buffer holds a whole header.
    pub fn check_len(&self) -> Result<(), Error> {
        check(self.buffer.as_ref().len(), option_field::LENGTH.end)
    }

    /// The magic (should be `IHAVEOPT`).
    pub fn magic(&self) -> u64 {
        be_u64(self.buffer.as_ref(), option_field::MAGIC.start)
    }

    /// The option.
    pub fn option(&self) -> u32 {
        be_u32(self.buffer.as_ref(), option_field::OPTION.start)
    }

    /// The data length.
    pub fn length(&self) -> u32 {
        be_u32(self.buffer.as_ref(), option_field::LENGTH.start)
    }
}

/// An option request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeaderRepr {
    /// The option (`NBD_OPT_*`).
    pub option: u32,
    /// Bytes of data following the header.
    pub length: u32,
}

impl OptionHeaderRepr {
    /// Bytes on the wire.
    pub const LEN: usize = option_field::LENGTH.end;

    /// Parses a checked header; a wrong magic is an error.
    pub fn parse<T: AsRef<[u8]>>(h: &OptionHeader<T>) -> Result<Self, Error> {
        if h.magic() != IHAVEOPT {
            return Err(Error::BadMagic {
                expected: IHAVEOPT,
                found: h.magic(),
            });
        }
        Ok(OptionHeaderRepr {
            option: h.option(),
            length: h.length(),
        })
    }

    /// Writes the header into `b[..LEN]`.
    pub fn emit(&self, b: &mut [u8]) {
        put(b, option_field::MAGIC.start, &IHAVEOPT.to_be_bytes());
        put(b, option_field::OPTION.start, &self.option.to_be_bytes());
        put(b, option_field::LENGTH.start, &self.length.to_be_bytes());
    }
}

/// Field ranges of an option reply header.
pub mod option_reply_field {
    use core::ops::Range;
    /// Option reply magic.
    pub const MAGIC: Range<usize> = 0..8;
    /// The option answered.
    pub const OPTION: Range<usize> = 8..12;
    /// Reply type (`NBD_REP_*`).
    pub const TYPE: Range<usize> = 12..16;
    /// Length of the reply data.
    pub const LENGTH: Range<usize> = 16..20;
}

/// An option reply header (20 bytes; `length` bytes of data follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionReplyRepr {
    /// The option answered.
    pub option: u32,
    /// Reply type ([`reply`]).
    pub reply_type: u32,
    /// Data length.
    pub length: u32,
}

impl OptionReplyRepr {
    /// Bytes on the wire (header only).
    pub const LEN: usize = option_reply_field::LENGTH.end;

    /// Parses a reply header (for clients and tests).
    pub fn parse(b: &[u8]) -> Result<Self, Error> {
        check(b.len(), Self::LEN)?;
        let m = be_u64(b, 0);
        if m != OPTION_REPLY_MAGIC {
            return Err(Error::BadMagic {
                expected: OPTION_REPLY_MAGIC,
                found: m,
            });
        }
        Ok(OptionReplyRepr {
            option: be_u32(b, option_reply_field::OPTION.start),
            reply_type: be_u32(b, option_reply_field::TYPE.start),
            length: be_u32(b, option_reply_field::LENGTH.start),
        })
    }

    /// Writes the header into `b[..LEN]`.
    pub fn emit(&self, b: &mut [u8]) {
        put(
            b,
            option_reply_field::MAGIC.start,
            &OPTION_REPLY_MAGIC.to_be_bytes(),
        );
        put(
            b,
            option_reply_field::OPTION.start,
            &self.option.to_be_bytes(),
        );
        put(
            b,
            option_reply_field::TYPE.start,
            &self.reply_type.to_be_bytes(),
        );
        put(
            b,
            option_reply_field::LENGTH.start,
            &self.length.to_be_bytes(),
        );
    }

    /// A whole reply: header then `data`.
    pub fn message(option: u32, reply_type: u32, data: &[u8]) -> Vec<u8> {
        let mut v = alloc::vec![0u8; Self::LEN];
        OptionReplyRepr {
            option,
            reply_type,
            length: u32::try_from(data.len()).unwrap_or(u32::MAX),
        }
        .emit(&mut v);
        v.extend_from_slice(data);
        v
    }
}

/// The data of `NBD_OPT_INFO` / `NBD_OPT_GO`: an export name and the information types asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoRequest<'a> {
    /// The export name (empty: the default export).
    pub name: &'a [u8],
    /// The requested information types, two bytes each (big-endian).
    requests: &'a [u8],
}

impl<'a> InfoRequest<'a> {
    /// Parses the option data: 32-bit name length, name, 16-bit count, count × 16-bit types.
    /// Every length must match the data exactly.
    pub fn parse(data: &'a [u8]) -> Result<Self, Error> {
        check(data.len(), 4)?;
        let name_len = be_u32(data, 0) as usize;
        let rest = data.get(4..).unwrap_or_default();
        if name_len > rest.len() {
            return Err(Error::BadLength);
        }
        let (name, rest) = rest.split_at(name_len);
        check(rest.len(), 2).map_err(|_| Error::BadLength)?;
        let count = usize::from(be_u16(rest, 0));
        let requests = rest.get(2..).unwrap_or_default();
        if requests.len() != count.saturating_mul(2) {
            return Err(Error::BadLength);
        }
        Ok(InfoRequest { name, requests })
    }

    /// The requested information types.
    pub fn requests(&self) -> impl Iterator<Item = u16> + 'a {
        self.requests
            .as_chunks::<2>()
            .0
            .iter()
            .map(|c| u16::from_be_bytes(*c))
    }

    /// Whether `NBD_INFO_BLOCK_SIZE` was requested.
    pub fn wants_block_size(&self) -> bool {
        self.requests().any(|t| t == info::BLOCK_SIZE)
    }

    /// Writes the option data for `name` and `requests` (for clients and tests).
    pub fn emit(name: &[u8], requests: &[u16]) -> Vec<u8> {
        let mut v = Vec::with_capacity(6 + name.len() + 2 * requests.len());
        v.extend_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_be_bytes());
        v.extend_from_slice(name);
        v.extend_from_slice(
            &u16::try_from(requests.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        for r in requests {
            v.extend_from_slice(&r.to_be_bytes());
        }
        v
    }
}

/// `NBD_INFO_EXPORT` (and the `NBD_OPT_EXPORT_NAME` reply): size and transmission flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoExportRepr {
    /// Export size in bytes.
    pub size: u64,
    /// Transmission flags ([`transmission_flags`]).
    pub flags: u16,
}

impl InfoExportRepr {
    /// Bytes of the `NBD_REP_INFO` data: type, size, flags.
    pub const LEN: usize = 12;

    /// Parses `NBD_REP_INFO` data of type `NBD_INFO_EXPORT`.
    pub fn parse(b: &[u8]) -> Result<Self, Error> {
        check(b.len(), Self::LEN)?;
        if b.len() != Self::LEN || be_u16(b, 0) != info::EXPORT {
            return Err(Error::BadLength);
        }
        Ok(InfoExportRepr {
            size: be_u64(b, 2),
            flags: be_u16(b, 10),
        })
    }

    /// Writes the `NBD_REP_INFO` data into `b[..LEN]`.
    pub fn emit(&self, b: &mut [u8]) {
        put(b, 0, &info::EXPORT.to_be_bytes());
        put(b, 2, &self.size.to_be_bytes());
        put(b, 10, &self.flags.to_be_bytes());
    }

    /// The `NBD_OPT_EXPORT_NAME` reply: size, flags, then 124 zeroes unless `no_zeroes`.
    pub fn export_name_reply(&self, no_zeroes: bool) -> Vec<u8> {
        let mut v = Vec::with_capacity(10 + EXPORT_NAME_ZEROES);
        v.extend_from_slice(&self.size.to_be_bytes());
        v.extend_from_slice(&self.flags.to_be_bytes());
        if !no_zeroes {
            v.resize(10 + EXPORT_NAME_ZEROES, 0);
        }
        v
    }
}

/// `NBD_INFO_BLOCK_SIZE`: the size constraints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoBlockSizeRepr {
    /// Minimum block size (alignment of offsets and lengths).
    pub minimum: u32,
    /// Preferred block size.
    pub preferred: u32,
    /// Maximum payload of one request.
    pub maximum: u32,
}

impl InfoBlockSizeRepr {
    /// Bytes of the `NBD_REP_INFO` data: type and three sizes.
    pub const LEN: usize = 14;

    /// Parses `NBD_REP_INFO` data of type `NBD_INFO_BLOCK_SIZE`.
    pub fn parse(b: &[u8]) -> Result<Self, Error> {
        check(b.len(), Self::LEN)?;
        if b.len() != Self::LEN || be_u16(b, 0) != info::BLOCK_SIZE {
            return Err(Error::BadLength);
        }
        Ok(InfoBlockSizeRepr {
            minimum: be_u32(b, 2),
            preferred: be_u32(b, 6),
            maximum: be_u32(b, 10),
        })
    }

    /// Writes the `NBD_REP_INFO` data into `b[..LEN]`.
    pub fn emit(&self, b: &mut [u8]) {
        put(b, 0, &info::BLOCK_SIZE.to_be_bytes());
        put(b, 2, &self.minimum.to_be_bytes());
        put(b, 6, &self.preferred.to_be_bytes());
        put(b, 10, &self.maximum.to_be_bytes());
    }
}

/// `NBD_REP_SERVER` data: 32-bit name length, then the name.
pub fn server_reply_data(name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + name.len());
    v.extend_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_be_bytes());
    v.extend_from_slice(name);
    v
}

/// Parses `NBD_REP_SERVER` data into the export name.
pub fn parse_server_reply(data: &[u8]) -> Result<&[u8], Error> {
    check(data.len(), 4)?;
    let n = be_u32(data, 0) as usize;
    data.get(4..)
        .and_then(|r| r.get(..n))
        .ok_or(Error::BadLength)
}

/// Field ranges of a transmission request.
pub mod request_field {
    use core::ops::Range;
    /// `NBD_REQUEST_MAGIC`.
    pub const MAGIC: Range<usize> = 0..4;
    /// Command flags.
    pub const FLAGS: Range<usize> = 4..6;
    /// Command type.
    pub const TYPE: Range<usize> = 6..8;
    /// The client's handle ("cookie"), echoed in the reply.
    pub const HANDLE: Range<usize> = 8..16;
    /// Byte offset in the export.
    pub const OFFSET: Range<usize> = 16..24;
    /// Length in bytes (of the payload for WRITE, of the effect otherwise).
    pub const LENGTH: Range<usize> = 24..28;
}

/// A checked view of a transmission request header (28 bytes; a WRITE's payload follows).
#[derive(Debug, Clone, Copy)]
pub struct Request<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Request<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Request { buffer }
    }

    /// Wraps `buffer`, checking it holds a whole request header.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let r = Self::new_unchecked(buffer);
        r.check_len()?;
        Ok(r)
    }

    /// Checks the buffer holds a whole request header.
    pub fn check_len(&self) -> Result<(), Error> {
        check(self.buffer.as_ref().len(), request_field::LENGTH.end)
    }

    /// The magic (should be [`REQUEST_MAGIC`]).
    pub fn magic(&self) -> u32 {
        be_u32(self.buffer.as_ref(), request_field::MAGIC.start)
    }

    /// Command flags.
    pub fn flags(&self) -> u16 {
        be_u16(self.buffer.as_ref(), request_field::FLAGS.start)
    }

    /// Command type.
    pub fn command(&self) -> u16 {
        be_u16(self.buffer.as_ref(), request_field::TYPE.start)
    }

    /// Handle.
    pub fn handle(&self) -> u64 {
        be_u64(self.buffer.as_ref(), request_field::HANDLE.start)
    }

    /// Offset.
    pub fn offset(&self) -> u64 {
        be_u64(self.buffer.as_ref(), request_field::OFFSET.start)
    }

    /// Length.
    pub fn length(&self) -> u32 {
        be_u32(self.buffer.as_ref(), request_field::LENGTH.start)
    }
}

/// A transmission command type (`NBD_CMD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `NBD_CMD_READ` (0).
    Read,
    /// `NBD_CMD_WRITE` (1): `length` payload bytes follow the header.
    Write,
    /// `NBD_CMD_DISC` (2).
    Disconnect,
    /// `NBD_CMD_FLUSH` (3).
    Flush,
    /// `NBD_CMD_TRIM` (4).
    Trim,
    /// `NBD_CMD_WRITE_ZEROES` (6).
    WriteZeroes,
    /// Any other type (CACHE, BLOCK_STATUS, …: answered `NBD_EINVAL`).
    Other(u16),
}

impl Command {
    /// From the wire value.
    pub fn from_u16(v: u16) -> Command {
        match v {
            0 => Command::Read,
            1 => Command::Write,
            2 => Command::Disconnect,
            3 => Command::Flush,
            4 => Command::Trim,
            6 => Command::WriteZeroes,
            o => Command::Other(o),
        }
    }

    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Command::Read => 0,
            Command::Write => 1,
            Command::Disconnect => 2,
            Command::Flush => 3,
            Command::Trim => 4,
            Command::WriteZeroes => 6,
            Command::Other(o) => o,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Read => f.write_str("read"),
            Command::Write => f.write_str("write"),
            Command::Disconnect => f.write_str("disconnect"),
            Command::Flush => f.write_str("flush"),
            Command::Trim => f.write_str("trim"),
            Command::WriteZeroes => f.write_str("write-zeroes"),
            Command::Other(o) => write!(f, "command {o}"),
        }
    }
}

/// A transmission request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRepr {
    /// Command flags ([`command_flags`]).
    pub flags: u16,
    /// Command.
    pub command: Command,
    /// Handle echoed in the reply.
    pub handle: u64,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub length: u32,
}

impl RequestRepr {
    /// Bytes on the wire (header only).
    pub const LEN: usize = request_field::LENGTH.end;

    /// Parses a checked request header; a wrong magic is an error.
    pub fn parse<T: AsRef<[u8]>>(r: &Request<T>) -> Result<Self, Error> {
        if r.magic() != REQUEST_MAGIC {
            return Err(Error::BadMagic {
                expected: u64::from(REQUEST_MAGIC),
                found: u64::from(r.magic()),
            });
        }
        Ok(RequestRepr {
            flags: r.flags(),
            command: Command::from_u16(r.command()),
            handle: r.handle(),
            offset: r.offset(),
            length: r.length(),
        })
    }

    /// Writes the header into `b[..LEN]` (for clients and tests).
    pub fn emit(&self, b: &mut [u8]) {
        put(b, request_field::MAGIC.start, &REQUEST_MAGIC.to_be_bytes());
        put(b, request_field::FLAGS.start, &self.flags.to_be_bytes());
        put(
            b,
            request_field::TYPE.start,
            &self.command.to_u16().to_be_bytes(),
        );
        put(b, request_field::HANDLE.start, &self.handle.to_be_bytes());
        put(b, request_field::OFFSET.start, &self.offset.to_be_bytes());
        put(b, request_field::LENGTH.start, &self.length.to_be_bytes());
    }

    /// The header as bytes.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        self.emit(&mut b);
        b
    }
}

/// Field ranges of a simple reply.
pub mod simple_reply_field {
    use core::ops::Range;
    /// `NBD_SIMPLE_REPLY_MAGIC`.
    pub const MAGIC: Range<usize> = 0..4;
    /// Error (`NBD_E*`, 0 for success).
    pub const ERROR: Range<usize> = 4..8;
    /// The request's handle.
    pub const HANDLE: Range<usize> = 8..16;
}

/// A simple reply header (16 bytes; a successful READ's data follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimpleReplyRepr {
    /// Error ([`errno`]), 0 for success.
    pub error: u32,
    /// The request's handle.
    pub handle: u64,
}

impl SimpleReplyRepr {
    /// Bytes on the wire.
    pub const LEN: usize = simple_reply_field::HANDLE.end;

    /// Parses a reply header (for clients and tests).
    pub fn parse(b: &[u8]) -> Result<Self, Error> {
        check(b.len(), Self::LEN)?;
        let m = be_u32(b, 0);
        if m != SIMPLE_REPLY_MAGIC {
            return Err(Error::BadMagic {
                expected: u64::from(SIMPLE_REPLY_MAGIC),
                found: u64::from(m),
            });
        }
        Ok(SimpleReplyRepr {
            error: be_u32(b, simple_reply_field::ERROR.start),
            handle: be_u64(b, simple_reply_field::HANDLE.start),
        })
    }

    /// Writes the header into `b[..LEN]`.
    pub fn emit(&self, b: &mut [u8]) {
        put(
            b,
            simple_reply_field::MAGIC.start,
            &SIMPLE_REPLY_MAGIC.to_be_bytes(),
        );
        put(
            b,
            simple_reply_field::ERROR.start,
            &self.error.to_be_bytes(),
        );
        put(
            b,
            simple_reply_field::HANDLE.start,
            &self.handle.to_be_bytes(),
        );
    }

    /// The header as bytes.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        self.emit(&mut b);
        b
    }
}
