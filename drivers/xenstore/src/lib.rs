//! Xenstore client for a PVH domU: wire codec, ring transport, sans-IO client.
//!
//! Implements the protocol of `xen/include/public/io/xs_wire.h` (Xen 4.17) as
//! described in `docs/misc/xenstore.txt` and `docs/misc/xenstore-ring.txt`.
//!
//! Layers, bottom up:
//! - [`wire`]: the `xsd_sockmsg` header as a checked view ([`wire::Header`]) and
//!   [`wire::HeaderRepr`], request encoding ([`Request`]), an incremental
//!   [`wire::Decoder`] and typed [`Reply`] parsing.
//! - [`ring`]: moving bytes through the shared page's `req`/`rsp` rings via the
//!   [`RingMemory`] trait the kernel implements.
//! - [`client`]: the sans-IO [`Client`]: many requests in flight matched by
//!   `req_id`, one bounded event queue per watch, `is_idle`/`resume` for
//!   suspend.
//! - [`blocking`]: [`Xenstore`], typed blocking operations over a
//!   [`Platform`] (event channel kick/wait), including a retrying
//!   [`Xenstore::transaction`].
//! - `sim` (feature `test-utils`): `SimXenstored`, an in-memory daemon with
//!   misbehaviour knobs, for host tests here and in other crates.
//!
//! # No-panic promise
//!
//! No function in this crate panics on data from the daemon or the shared
//! page: frames are parsed as a checked view, then a `Repr`; every violation
//! becomes an error value or a counter in [`ClientStats`]. Buffers are bounded
//! (one frame of at most `XENSTORE_PAYLOAD_MAX` bytes; per-watch queues of a
//! fixed capacity). The `sim` module is test support and may panic to fail a
//! test (e.g. on a guest/daemon deadlock).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod blocking;
pub mod client;
pub mod error;
pub mod ring;
#[cfg(feature = "test-utils")]
pub mod sim;
pub mod wire;

pub use blocking::{DIRECTORY_MAX_BYTES, Platform, Xenstore};
pub use client::{Client, ClientStats, RequestId, WatchId, WatchState, WatchStats};
pub use error::{ProtocolError, XsError};
pub use ring::{RingError, RingMemory, VecPage};
pub use wire::{Reply, Request, TxId};
