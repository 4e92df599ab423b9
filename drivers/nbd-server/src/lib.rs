//! An NBD server (fixed newstyle, simple replies) as wire views and a sans-IO per-connection state machine.
//!
//! Protocol: `NetworkBlockDevice/nbd` `doc/proto.md`. The subset:
//! - handshake: fixed newstyle with `NO_ZEROES`; a client setting unknown
//!   flags is dropped;
//! - options: `NBD_OPT_GO` / `NBD_OPT_INFO` (`NBD_INFO_EXPORT`, and
//!   `NBD_INFO_BLOCK_SIZE` when asked: 512 / 4096 / 256 KiB),
//!   `NBD_OPT_EXPORT_NAME`, `NBD_OPT_LIST`, `NBD_OPT_ABORT`; anything else
//!   gets `NBD_REP_ERR_UNSUP` and negotiation goes on;
//! - commands: READ, WRITE (with FUA), FLUSH, DISC, TRIM (if the disk can),
//!   WRITE_ZEROES; simple replies, in completion order.
//!
//! Layers:
//! - [`wire`]: checked views and `Repr`s of every message;
//! - [`disk`]: the [`Disks`] trait the kernel implements over blkfront;
//! - [`conn`]: [`Connection`], bytes and disk completions in, bytes and disk
//!   operations out, with bounded memory;
//! - `mem` (feature `test-utils`): RAM disks for tests and fuzzing.
//!
//! # No-panic promise
//!
//! Nothing in this crate panics on client bytes or on disk completions (see
//! the promises in [`wire`] and [`conn`]).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod conn;
pub mod disk;
#[cfg(any(test, feature = "test-utils"))]
pub mod mem;
pub mod wire;

#[cfg(test)]
mod tests;

pub use conn::{
    ClientError, CloseAction, Connection, DiskRequest, Event, Limits, Name, Phase, Stats,
};
pub use disk::{DiskError, DiskOp, Disks, ExportInfo, NoDisks};
