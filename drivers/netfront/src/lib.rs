//! Xen network front end (netif over xenbus) that survives save/restore and hostile back ends.
//!
//! Implements the front half of `xen/include/public/io/netif.h` (Xen 4.17)
//! over the shared [`xenbus::Frontend`] state machine, [`xen_ring::FrontRing`]
//! and [`grant_table::GrantTable`]. Protocol facts follow `netif.h`,
//! `io/ring.h` and `io/xenbus.h`, and the behaviour of Linux
//! `xen-netfront.c`/`xen-netback` (response-in-request-slot rule, mandatory
//! `feature-rx-notify`, extra-info chaining, checksum flags).
//!
//! # Plugging it in
//!
//! [`NetFront`] is generic over small platform traits ([`platform`]): a
//! [`PageProvider`] of [`NetPage`]s (a gfn plus byte/atomic access), a
//! [`GrantAccess`] to the grant table, an [`EventChannel`], and per call a
//! [`XenstoreAccess`] (implemented for `xenstore::Xenstore`). Host tests plug
//! in the simulations of [`sim`] (feature `test-utils`).
//!
//! # Connection
//!
//! [`NetFront::new`] reads and validates `device/vif/<id>/{backend,
//! backend-id, mac, mtu}`. [`NetFront::start`] writes Initialising; when the
//! back end waits in InitWait the driver reads its features
//! (`feature-rx-copy` required; `feature-sg`, `feature-split-event-channels`,
//! `multi-queue-max-queues`, ... recorded), initialises and grants the two
//! ring pages, allocates an unbound event channel, grants every rx buffer and
//! tx pool page, posts the rx buffers, and writes `tx-ring-ref`,
//! `rx-ring-ref`, `event-channel`, `request-rx-copy=1`, `feature-rx-notify=1`,
//! `feature-sg=1` and `feature-no-csum-offload=0` in one xenstore transaction
//! (retried on `EAGAIN`), then announces Connected (netfront's handshake).
//!
//! # Checksums (the choice, and why)
//!
//! **Receive:** checksum offload stays negotiated ON (`feature-no-csum-offload=0`)
//! and packets flagged `NETRXF_csum_blank` get their TCP/UDP checksum completed
//! in software over the IPv4 pseudo-header ([`csum::complete_checksum`]),
//! before the stack sees them. Why: it works with a stock Linux dom0 as it
//! is (no `ethtool -K vifX.Y tx off`), and it does not depend on every back
//! end honouring `feature-no-csum-offload` — a packet that arrives blank is
//! correct either way. The cost is one pass over the packets dom0 did not
//! checksum (which dom0 would otherwise do itself). Blank packets we cannot
//! complete (IPv6, IP fragments, other protocols — none of which a back end
//! sends blank to a front end that did not advertise IPv6 offload) are
//! dropped with [`RxError::Checksum`]. `NETRXF_data_validated` is not relied
//! on: the stack still verifies every checksum.
//!
//! **Transmit:** we send full checksums (the stack computes them) and set no
//! `NETTXF_csum_blank`/`NETTXF_data_validated` flag: simplest and correct for
//! every receiver. Hence the smoltcp device reports the default
//! `ChecksumCapabilities` (compute on tx, verify on rx).
//!
//! # Data path
//!
//! - rx ([`rx`] module docs): buffers are pre-granted pages, refilled in
//!   batches with one push and at most one notify; every response is read once
//!   into a local copy and validated; multi-slot packets are reassembled and
//!   extra-info slots skipped; a violation drops the packet with an
//!   [`RxError`] and recycles its buffers.
//! - tx ([`tx`] module docs): a pool of pre-granted pages reused on
//!   completion — no allocation and no new grant in the steady state;
//!   frames over a page use several slots (`NETTXF_more_data`, needs the back
//!   end's `feature-sg`).
//! - A back end that breaks the ring protocol (impossible `rsp_prod`, tx
//!   responses for ids not in flight, unknown statuses) leaves a sticky
//!   [`Fault`] until [`NetFront::reconnect`].
//!
//! # Suspend, resume, back-end reload
//!
//! [`NetFront::suspend`] stops I/O. [`NetFront::resume`]`(new_domain: false)`
//! (cancelled suspend) touches nothing. After a real save/restore
//! (`new_domain: true`, after the kernel reset the grant table with
//! `GrantTable::reset_for_resume`): the old rings are dropped without ending
//! access (their grants are stale), Initialising is written, and when the
//! (possibly different) back end waits in InitWait new rings are set up;
//! every rx buffer is granted again BEFORE its request is posted (no stale
//! grant reference ever reaches a ring), and tx frames that were in flight and
//! not partly completed are posted again in order. A back end that closes or
//! is reloaded is waited for (Closing/Closed) before any grant is ended;
//! pages it still maps are left to the grant table's deferred list; then the
//! driver connects again.
//!
//! # No-panic promise
//!
//! No code path panics on anything the back end, the toolstack or xenstore
//! provide: wire data is decoded from local copies into plain values and
//! validated; ids, positions and lengths are checked before use; arithmetic
//! on peer values is checked or saturating.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod csum;
#[cfg(feature = "smoltcp")]
pub mod device;
mod driver;
pub mod error;
pub mod nodes;
pub mod rx;
#[cfg(feature = "test-utils")]
pub mod sim;
pub mod tx;
pub mod wire;

pub use driver::{Config, NetFront, Netif, RingIndex, RingIndices, Stats};
pub use error::{Fault, NetError, Node, ProbeError, RxError, SetupError, TxError};
pub use nodes::{BackendFeatures, MacAddr};
pub use xen_frontend::{DevicePage, EventChannel, GrantAccess, PageProvider, XenstoreAccess};

/// Length of an Ethernet header (destination, source, ethertype).
pub const ETH_HLEN: usize = 14;
