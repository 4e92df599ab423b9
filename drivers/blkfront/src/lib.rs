//! Xen block front end (blkif over xenbus) on the shared front-end runtime, that keeps requests across save/restore.
//!
//! Implements the front half of `xen/include/public/io/blkif.h` (Xen 4.17)
//! over [`xen_frontend::Device`], following the behaviour of Linux
//! `xen-blkfront.c` where it is right and not where it is known wrong.
//!
//! - **Negotiation, from scratch on every connect** (a back end seen after a
//!   restore may offer less): multi-page rings (`max-ring-page-order` /
//!   `ring-page-order`), indirect descriptors
//!   (`feature-max-indirect-segments`), `feature-flush-cache` /
//!   `feature-barrier`, `feature-discard` (granularity, alignment),
//!   `feature-persistent` (our data pages are a pool granted for the whole
//!   connection, so persistence is free; the pool is granted anew on
//!   resume). `sectors`, `info`, `sector-size`, `physical-sector-size`.
//! - **Requests** ([`BlkFront::submit`]): reads, writes (FUA: a flush after
//!   the data), flushes, discards; split into ring requests over the pool
//!   ([`queue`]). A write is reported done only after blkback said OK; an
//!   error response is an error for that request. What blkback cannot do is
//!   refused before the ring ([`SubmitError`]).
//! - **Cancelled suspend**: nothing changes. **New-domain resume**: every
//!   request in flight is kept and posted again after its pages are granted
//!   afresh and the new back end is Connected, split under the new limits;
//!   flushes go after the writes. No grant of the old domain reaches the new
//!   ring.
//! - **Back end closing**: answers already on the ring count, the rest fail
//!   with [`BlkError::Disconnected`] (never a hang, never a false success);
//!   pages the back end still maps wait on the grant table's deferred list.
//! - **Hostile back end**: each response is read once into a local copy and
//!   checked against a private shadow (id in range and in flight, operation
//!   echoed, known status); a violation is a sticky [`Fault`] and the caller
//!   reconnects. No panic on anything a back end or xenstore provide.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod driver;
pub mod error;
pub mod queue;
#[cfg(feature = "test-utils")]
pub mod sim;
pub mod wire;

pub use driver::{
    BlkFront, Blkif, Config, Discard, DiskInfo, Features, MAX_INDIRECT_SEGMENTS, MAX_RING_ORDER,
    disk_name,
};
pub use error::{BlkError, Error, Fault, ProbeError, SubmitError};
pub use queue::{BlkStats, Completion, Op, QueueState, ReqId};
