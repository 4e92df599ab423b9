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
//! `feature-sg=1`, `feature-no-csum-offload=0` and `feature-gso-tcpv4=1` in one xenstore transaction
//! (retried on `EAGAIN`), then announces Connected (netfront's handshake).
//!
//! # Checksums and offloads (the choice, and why)
//!
//! **Receive:** checksum offload stays negotiated ON (`feature-no-csum-offload=0`).
//! As Linux netfront does, a packet flagged `NETRXF_csum_blank` or
//! `NETRXF_data_validated` is delivered on the back end's word, its TCP/UDP
//! checksum not looked at (a blank one must still be TCP/UDP over IPv4,
//! unfragmented, or it is dropped with [`RxError::Checksum`]); every other
//! TCP/UDP packet has its checksum verified here ([`csum::checksum_ok`]) and
//! is dropped with [`RxError::BadChecksum`] if it is wrong. So the smoltcp
//! device tells the stack not to verify TCP/UDP checksums (`Checksum::None`;
//! smoltcp can only be told per device, not per packet), and nothing reaches
//! it unchecked except what the back end vouched for. Why trusting the back
//! end is no weaker than before: it writes every byte of every packet we
//! receive, so it can forge a packet with a correct checksum just as well;
//! the flags only save a pass over data it already validated (or that never
//! left dom0's memory). IP fragments pass unverified (their checksum spans
//! the whole datagram), and smoltcp does not verify the reassembled datagram.
//!
//! **Transmit:** smoltcp leaves TCP/UDP checksums out; the device writes the
//! folded pseudo-header sum into the field ([`csum::blank_checksum`]) and sets
//! `NETTXF_csum_blank | NETTXF_data_validated` on the frame's first request,
//! as Linux netfront does for `CHECKSUM_PARTIAL` packets. Linux netback
//! turns such a frame into a `CHECKSUM_PARTIAL` skb without recalculating
//! the pseudo-header, so the partial sum must be in the field; every netback
//! accepts IPv4 checksum offload from a front end (it has no feature node for
//! it). IPv4 header and ICMP checksums stay with smoltcp; frames sent through
//! [`NetFront::transmit`] go out as the caller built them, with no flags.
//!
//! **TSO on send:** smoltcp's `segmentation-offload` (compiled in with
//! `proto-ipv6`, which smoltcp 0.14.0 needs for it to build; see
//! docs/NET.md) hands the device TCP segments of up to 64 KiB; with the
//! back end's `feature-gso-tcpv4` they go whole with a GSO extra slot, else
//! they are segmented here ([`tx`] module docs). Unflagged IPv6 other than
//! ICMPv6 is ignored on receive: smoltcp would not verify its checksums and
//! the guest has no IPv6 address.
//!
//! **GSO on receive:** the front end writes `feature-gso-tcpv4=1`, so Linux
//! netback keeps TSO on the vif and delivers TCP segments of up to 64 KiB as
//! multi-slot packets with a `XEN_NETIF_EXTRA_TYPE_GSO` extra slot. The extra
//! is validated (type TCPv4, size not 0, at most one per packet, the packet
//! TCP over IPv4, at most [`rx::RX_MAX_PACKET`] bytes and
//! [`rx::RX_MAX_SLOTS`] slots) and the packet goes to smoltcp as one TCP
//! segment larger than the MTU, which smoltcp accepts (it bounds what it
//! sends by the MTU, not what it receives).
//!
//! # Data path
//!
//! - rx ([`rx`] module docs): buffers are pre-granted pages, refilled in
//!   batches with one push and at most one notify; every response is read once
//!   into a local copy and validated; multi-slot packets are reassembled and
//!   extra-info slots validated (GSO's acted on, the rest skipped); a violation drops the packet with an
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
