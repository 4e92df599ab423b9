//! The disk interface the NBD server drives: exports, split-phase operations, completions polled by owner.
//!
//! The kernel implements [`Disks`] over blkfront; host tests and the fuzz
//! target use [`crate::mem::MemDisks`] (feature `test-utils`).
//!
//! # Contract
//!
//! - [`Disks::submit`] either starts the operation and returns `Ok(())` — its
//!   result then comes back exactly once from [`Disks::poll_completion`] with
//!   the same `owner` and `tag` — or returns the error *and the operation*
//!   (split-phase, the buffer comes back: a write's data is not lost) and
//!   starts nothing. [`DiskError::Busy`] means "nothing was started, try
//!   again later" (ring full, no memory); the server resubmits the same
//!   operation on a later poll. Any other error fails that request.
//! - A `Write`/`Trim`/`WriteZeroes` completes `Ok` only once the disk accepted
//!   it (blkback's response said OK); with `fua: true` only once it is
//!   durable. `Flush` completes `Ok` only once every write that completed
//!   before the flush was submitted — from any owner and any connection — is
//!   durable (the server advertises `NBD_FLAG_CAN_MULTI_CONN` on that
//!   promise). A disk without a volatile cache (`can_flush: false`) must make
//!   writes durable before completing them.
//! - A `Read` completes with exactly `len` bytes; any other length is treated
//!   as an I/O error by the server.
//! - Tags are chosen by the server and unique among one owner's outstanding
//!   operations; the disk only hands them back.
//! - The server checks range, alignment and read-only before submitting; the
//!   disk still refuses bad operations with [`DiskError::OutOfRange`],
//!   [`DiskError::ReadOnly`] or [`DiskError::Unsupported`].
//! - When a disk goes away, its outstanding operations must still complete
//!   (with [`DiskError::Gone`]), so their buffers are released.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// One export: a disk as NBD clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportInfo {
    /// Stable identifier of the disk while it exists (e.g. the xenbus device
    /// id); what [`Disks::submit`] takes. Never given to another disk while
    /// operations of this one can still be outstanding.
    pub id: usize,
    /// The export name clients ask for (`xvda`, …).
    pub name: String,
    /// Size in bytes; the server exports it rounded down to a multiple of 512.
    pub size: u64,
    /// Writes, trims and write-zeroes are refused (`NBD_EPERM`).
    pub read_only: bool,
    /// The disk has a volatile cache that `Flush` empties.
    pub can_flush: bool,
    /// The disk honours `fua` on writes itself; otherwise the server follows
    /// a FUA write with a `Flush` (when `can_flush`) before replying.
    pub can_fua: bool,
    /// The disk can discard (`Trim`).
    pub can_trim: bool,
}

/// An operation at a byte offset of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskOp {
    /// Read `len` bytes.
    Read {
        /// Bytes to read.
        len: u32,
    },
    /// Write `data`; with `fua`, complete only once it is durable.
    Write {
        /// The bytes.
        data: Vec<u8>,
        /// Force unit access.
        fua: bool,
    },
    /// Make every completed write durable.
    Flush,
    /// Discard `len` bytes (contents afterwards unspecified).
    Trim {
        /// Bytes to discard.
        len: u32,
    },
    /// Write `len` zero bytes; with `fua`, complete only once durable.
    WriteZeroes {
        /// Bytes to zero.
        len: u32,
        /// Force unit access.
        fua: bool,
    },
}

impl DiskOp {
    /// Payload bytes the operation holds or will return (reads and writes).
    pub fn payload_len(&self) -> usize {
        match self {
            DiskOp::Read { len } => *len as usize,
            DiskOp::Write { data, .. } => data.len(),
            _ => 0,
        }
    }
}

/// Why a disk operation was not started or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskError {
    /// Retry later: ring full or no memory; nothing was started (submit only).
    Busy,
    /// The disk reported an error.
    Io,
    /// The disk is read-only.
    ReadOnly,
    /// The disk cannot do this operation (e.g. discard).
    Unsupported,
    /// The range lies outside the disk.
    OutOfRange,
    /// The disk is detached.
    Gone,
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiskError::Busy => "disk busy",
            DiskError::Io => "disk i/o error",
            DiskError::ReadOnly => "disk is read-only",
            DiskError::Unsupported => "operation not supported by the disk",
            DiskError::OutOfRange => "range outside the disk",
            DiskError::Gone => "disk detached",
        })
    }
}

impl DiskError {
    /// The NBD error value a reply carries for this failure.
    pub fn errno(self) -> u32 {
        use crate::wire::errno;
        match self {
            DiskError::ReadOnly => errno::EPERM,
            DiskError::OutOfRange | DiskError::Unsupported => errno::EINVAL,
            DiskError::Busy | DiskError::Io | DiskError::Gone => errno::EIO,
        }
    }
}

/// The disks the NBD service exports (implemented by the kernel over blkfront).
pub trait Disks {
    /// The exports, in a stable order; the list may change when disks come and go.
    fn exports(&self) -> Vec<ExportInfo>;

    /// Starts `op` at byte `offset` of the export whose [`ExportInfo::id`] is
    /// `export`. On `Ok(())` the result comes back once from
    /// [`Disks::poll_completion`]`(owner)` with `tag`; on `Err` nothing was
    /// started and `op` is handed back (`Busy`: the server retries it later).
    fn submit(
        &mut self,
        owner: u16,
        tag: u64,
        export: usize,
        offset: u64,
        op: DiskOp,
    ) -> Result<(), (DiskError, DiskOp)>;

    /// A finished operation of `owner`: its tag and the read data (empty for
    /// other operations) or the error.
    fn poll_completion(&mut self, owner: u16) -> Option<(u64, Result<Vec<u8>, DiskError>)>;
}

/// No disks at all (a guest without block devices).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDisks;

impl Disks for NoDisks {
    fn exports(&self) -> Vec<ExportInfo> {
        Vec::new()
    }

    fn submit(
        &mut self,
        _: u16,
        _: u64,
        _: usize,
        _: u64,
        op: DiskOp,
    ) -> Result<(), (DiskError, DiskOp)> {
        Err((DiskError::Gone, op))
    }

    fn poll_completion(&mut self, _: u16) -> Option<(u64, Result<Vec<u8>, DiskError>)> {
        None
    }
}
