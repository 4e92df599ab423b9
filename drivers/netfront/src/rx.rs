//! The receive side: pre-granted rx buffers, batched refill, validated reassembly.
//!
//! Protocol (`xen/include/public/io/netif.h`, "Guest receive"): we post
//! `netif_rx_request`s naming a buffer id and the grant of a page; with
//! `feature-rx-copy` the back end copies packet data into those pages and
//! answers with `netif_rx_response`s. A response occupies the ring slot of the
//! request it consumed; a packet is one data slot, optionally followed (flag
//! `NETRXF_extra_info`) by `netif_extra_info` slots chained with
//! `XEN_NETIF_EXTRA_FLAG_MORE`, then further data slots while
//! `NETRXF_more_data` is set. An extra-info slot also consumes the request of
//! its slot.
//!
//! Validation, on a local copy of each slot (read once by `xen-ring`): the
//! buffer concerned is always the one *we* posted in that slot (never one the
//! back end names); its id must match, the status must not be negative,
//! `offset + size` must lie within the page, the packet must fit the
//! reassembly buffer, extra types must be known, not repeated and chains
//! bounded, a GSO extra must be TCPv4 with a size and its packet TCP/IPv4. Data is
//! copied out of the page into the reassembly buffer at once, so the back end
//! cannot change a packet after we looked at it. A violation drops the packet
//! (its remaining slots are consumed and recycled) and is reported as an
//! [`RxError`]; a bad `rsp_prod` is a sticky [`Fault`].
//!
//! Buffers are recycled as soon as their slot is consumed and re-posted in
//! batches: one `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY` (hence at most one
//! notification) per refill.
//!
//! No-panic promise: ids and ring positions index through `get`/`get_mut`;
//! lengths are checked before slicing.

use alloc::vec;
use alloc::vec::Vec;

use xen_abi::PAGE_SIZE;
use xen_abi::netif::{
    NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED, NETRXF_EXTRA_INFO, NETRXF_MORE_DATA, NetifRxRequest,
    XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_TYPE_MAX,
    XEN_NETIF_EXTRA_TYPE_NONE, XEN_NETIF_GSO_TYPE_TCPV4,
};
use xen_ring::{RingError, SharedRing};

use crate::csum::{
    ChecksumError, IPPROTO_TCP, check_offloadable, checksum_ok, offloadable_protocol,
};
use crate::error::{Fault, NetError, RxError};
use crate::wire::{RxReq, RxRsp};
use xen_frontend::{Held, RingHalf};

/// Largest packet reassembled: the largest IPv4 packet (a TCPv4 GSO packet
/// is one, at most 64 KiB) in an untagged Ethernet frame.
pub const RX_MAX_PACKET: usize = crate::ETH_HLEN + 65535;
/// Most slots (data and extra) one packet may use; real back ends use at most
/// about 20 (`XEN_NETIF_NR_SLOTS_MIN` plus extras).
pub const RX_MAX_SLOTS: u32 = 64;
/// Most extra-info slots one packet may carry: one per extra type.
const RX_MAX_EXTRAS: u32 = XEN_NETIF_EXTRA_TYPE_MAX as u32 - 1;

/// Receive counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RxStats {
    /// Packets delivered.
    pub packets: u64,
    /// Bytes delivered.
    pub bytes: u64,
    /// Packets dropped because of an [`RxError`].
    pub errors: u64,
    /// Packets delivered on the back end's word (`NETRXF_csum_blank` or
    /// `NETRXF_data_validated`), their TCP/UDP checksum not looked at.
    pub csum_trusted: u64,
    /// TCP/UDP packets without those flags whose checksum was verified here.
    pub csum_verified: u64,
    /// Extra-info slots consumed (validated; only GSO's is acted on).
    pub extras: u64,
    /// TCPv4 GSO packets delivered (one segment of up to 64 KiB each).
    pub gso_packets: u64,
    /// IPv6 packets other than ICMPv6 without a checksum flag, dropped
    /// (the guest has no IPv6 address; see the crate docs).
    pub ipv6_ignored: u64,
    /// Response slots consumed.
    pub slots: u64,
    /// Refill batches pushed to the ring.
    pub refills: u64,
    /// Requests posted.
    pub posted: u64,
    /// TCP segments with RST set that were delivered.
    pub resets: u64,
    /// The last of them.
    pub last_reset: Option<crate::csum::TcpReset>,
}

/// One rx buffer: a page granted read-write to the back end.
#[derive(Debug)]
pub(crate) struct RxBuf<Pg> {
    pub(crate) held: Held<Pg>,
    /// A request naming this buffer is on the ring.
    posted: bool,
}

/// Where reassembly of the current packet stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// The first data slot of a packet.
    First,
    /// An extra-info slot; `more_data`: data slots follow the extras.
    Extra { more_data: bool },
    /// A further data slot.
    Data,
}

#[derive(Clone, Copy, Debug)]
struct Assembly {
    expect: Expect,
    len: usize,
    slots: u32,
    extras: u32,
    /// Extra types seen (bit `1 << type`).
    extra_types: u8,
    /// The GSO segment size, if a valid TCPv4 GSO extra came.
    gso: Option<u16>,
    flags: u16,
    error: Option<RxError>,
}

impl Assembly {
    const NEW: Self = Self {
        expect: Expect::First,
        len: 0,
        slots: 0,
        extras: 0,
        extra_types: 0,
        gso: None,
        flags: 0,
        error: None,
    };

    fn fail(&mut self, e: RxError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
}

/// The receive half of the driver.
#[derive(Debug)]
pub(crate) struct Rx<Pg> {
    pub(crate) ring: Option<RingHalf<RxReq, RxRsp, Pg>>,
    pub(crate) bufs: Vec<RxBuf<Pg>>,
    /// Buffer id posted in each ring slot (indexed by ring index & mask).
    slot_ids: Vec<u16>,
    /// Granted, current, unposted buffers (capacity = number of buffers).
    idle: Vec<u16>,
    asm: Assembly,
    scratch: Vec<u8>,
    /// Length of a complete, validated packet waiting in `scratch`.
    ready: Option<usize>,
    refill_batch: usize,
    pub(crate) stats: RxStats,
}

impl<Pg: SharedRing> Rx<Pg> {
    /// `n` buffer slots (no pages yet); refill when `refill_batch` buffers are idle.
    pub(crate) fn new(n: usize, refill_batch: usize) -> Self {
        let mut bufs = Vec::with_capacity(n);
        bufs.resize_with(n, || RxBuf {
            held: Held::Empty,
            posted: false,
        });
        Self {
            ring: None,
            bufs,
            slot_ids: vec![0; xen_abi::netif::NET_RX_RING_SIZE],
            idle: Vec::with_capacity(n),
            asm: Assembly::NEW,
            scratch: vec![0; RX_MAX_PACKET],
            ready: None,
            refill_batch: refill_batch.clamp(1, n.max(1)),
            stats: RxStats::default(),
        }
    }

    /// Forgets every posting and the packet being reassembled (the ring they
    /// lived on is gone). The packet already validated into `ready` stays.
    pub(crate) fn forget_ring_state(&mut self) {
        for b in &mut self.bufs {
            b.posted = false;
        }
        self.idle.clear();
        self.asm = Assembly::NEW;
    }

    /// Marks every buffer whose grant is current (per `is_current`) idle, for
    /// posting on a new ring.
    pub(crate) fn collect_idle(&mut self, mut is_current: impl FnMut(&Held<Pg>) -> bool) {
        self.idle.clear();
        for (id, b) in self.bufs.iter().enumerate() {
            if !b.posted
                && is_current(&b.held)
                && let Ok(id) = u16::try_from(id)
            {
                self.idle.push(id);
            }
        }
    }

    /// Posts idle buffers if enough have accumulated (or `force`), in one
    /// batch. Returns whether the back end must be notified.
    pub(crate) fn refill(&mut self, force: bool) -> Result<bool, Fault> {
        let posted = self.bufs.len().saturating_sub(self.idle.len());
        let due = force || self.idle.len() >= self.refill_batch || posted < self.refill_batch;
        if self.idle.is_empty() || !due {
            return Ok(false);
        }
        let Some(ring) = self.ring.as_mut() else {
            return Ok(false);
        };
        let mask = self.slot_ids.len().wrapping_sub(1);
        let mut any = false;
        while !ring.front.is_full() {
            let Some(id) = self.idle.pop() else { break };
            let Some(buf) = self.bufs.get_mut(usize::from(id)) else {
                continue;
            };
            let Some(grant) = buf.held.grant() else {
                continue;
            };
            let req = RxReq(NetifRxRequest {
                id,
                pad: 0,
                gref: grant.gref(),
            });
            match ring.front.produce(ring.page.buffer(), &req) {
                Ok(idx) => {
                    if let Some(slot) = self.slot_ids.get_mut(idx as usize & mask) {
                        *slot = id;
                    }
                    buf.posted = true;
                    any = true;
                    self.stats.posted += 1;
                }
                Err(RingError::Full) => {
                    self.idle.push(id);
                    break;
                }
                Err(RingError::Backend(f)) => {
                    self.idle.push(id);
                    return Err(Fault::RxRing(f));
                }
            }
        }
        if !any {
            return Ok(false);
        }
        self.stats.refills += 1;
        match ring
            .front
            .push_requests_and_check_notify(ring.page.buffer())
        {
            Ok(notify) => Ok(notify),
            Err(RingError::Full) => Ok(true),
            Err(RingError::Backend(f)) => Err(Fault::RxRing(f)),
        }
    }

    /// Whether a validated packet is waiting.
    pub(crate) fn has_ready(&self) -> bool {
        self.ready.is_some()
    }

    /// Hands the waiting packet to `f` and frees the reassembly buffer.
    pub(crate) fn consume<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        self.ready?;
        Some(f(self.take_ready()))
    }

    /// The waiting packet (empty if none), which is then no longer waiting.
    pub(crate) fn take_ready(&mut self) -> &[u8] {
        let Some(len) = self.ready.take() else {
            return &[];
        };
        self.stats.packets += 1;
        self.stats.bytes += len as u64;
        let frame = self.scratch.get(..len).unwrap_or(&[]);
        if let Some(r) = crate::csum::tcp_reset(frame) {
            self.stats.resets += 1;
            self.stats.last_reset = Some(r);
        }
        frame
    }

    /// Consumes responses until one packet is complete and valid (then it is
    /// `ready`, `Ok(true)`), the ring has no more (`Ok(false)`), or a packet
    /// was dropped (`Err(Rx)`), or the ring faulted (`Err(Faulted)`).
    pub(crate) fn assemble(&mut self) -> Result<bool, NetError> {
        if self.ready.is_some() {
            return Ok(true);
        }
        if self.ring.is_none() {
            return Err(NetError::NotConnected);
        }
        loop {
            let Some(ring) = self.ring.as_mut() else {
                return Err(NetError::NotConnected);
            };
            let idx = ring.front.rsp_cons();
            let slot = match ring.front.next_response(ring.page.buffer()) {
                Ok(Some(s)) => s,
                Ok(None) | Err(RingError::Full) => return Ok(false),
                Err(RingError::Backend(f)) => return Err(NetError::Faulted(Fault::RxRing(f))),
            };
            self.stats.slots += 1;
            let mask = self.slot_ids.len().wrapping_sub(1);
            let id = self.slot_ids.get(idx as usize & mask).copied().unwrap_or(0);
            // The slot's request is consumed: whatever the response says, the
            // buffer posted there is ours again (copy first, recycle after).
            let done = step(
                &mut self.asm,
                &slot,
                id,
                self.bufs.get(usize::from(id)),
                &mut self.scratch,
            );
            if let Some(buf) = self.bufs.get_mut(usize::from(id))
                && buf.posted
            {
                buf.posted = false;
                self.idle.push(id);
            }
            if done {
                let asm = core::mem::replace(&mut self.asm, Assembly::NEW);
                match self.finish(asm) {
                    // Silently dropped: on to the next packet.
                    None => continue,
                    Some(r) => return r,
                }
            }
        }
    }

    /// Ends a packet: `None` if it was dropped silently (IPv6 the guest does
    /// not speak), else ready (`Ok(true)`) or dropped with an error.
    fn finish(&mut self, asm: Assembly) -> Option<Result<bool, NetError>> {
        self.stats.extras += u64::from(asm.extras);
        let mut result = match asm.error {
            Some(e) => Err(e),
            None if asm.len == 0 => Err(RxError::Empty),
            None => Ok(asm.len),
        };
        if let (Ok(len), Some(_)) = (result, asm.gso) {
            // A TCPv4 GSO packet is one TCP segment over IPv4 (larger than
            // the MTU): smoltcp takes it as it is, nothing is re-segmented.
            let frame = self.scratch.get(..len).unwrap_or(&[]);
            result = match offloadable_protocol(frame) {
                Ok(IPPROTO_TCP) => Ok(len),
                Ok(p) => Err(RxError::GsoNotTcpV4(ChecksumError::UnsupportedProtocol(p))),
                Err(e) => Err(RxError::GsoNotTcpV4(e)),
            };
        }
        if let Ok(len) = result {
            let frame = self.scratch.get(..len).unwrap_or(&[]);
            result = match rx_checksum(asm.flags, frame) {
                Ok(Csum::Trusted) => {
                    self.stats.csum_trusted += 1;
                    Ok(len)
                }
                Ok(Csum::Verified) => {
                    self.stats.csum_verified += 1;
                    Ok(len)
                }
                Ok(Csum::NotTcpUdp) => Ok(len),
                Ok(Csum::Ignored) => {
                    self.stats.ipv6_ignored += 1;
                    return None;
                }
                Err(e) => Err(e),
            };
            if result.is_ok() && asm.gso.is_some() {
                self.stats.gso_packets += 1;
            }
        }
        Some(match result {
            Ok(len) => {
                self.ready = Some(len);
                Ok(true)
            }
            Err(e) => {
                self.stats.errors += 1;
                Err(NetError::Rx(e))
            }
        })
    }
}

/// What the receive path did about a packet's TCP/UDP checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Csum {
    /// The back end vouched for it (flags); not looked at.
    Trusted,
    /// Verified here.
    Verified,
    /// Not an unfragmented TCP/UDP-over-IPv4 frame: smoltcp checks what it
    /// accepts of it (IPv4 header and ICMP checksums; it has no IP
    /// reassembly, so it drops fragments).
    NotTcpUdp,
    /// IPv6 that is not plain ICMPv6, without a flag: not verifiable here,
    /// and nothing in the guest speaks it; dropped, not an error.
    Ignored,
}

/// Ethertype of IPv6.
const ETHERTYPE_IPV6: u16 = 0x86DD;
/// IPv6 next header of ICMPv6.
const IPPROTO_ICMPV6: u8 = 58;

/// The checksum policy (see the crate docs): trust `NETRXF_csum_blank` and
/// `NETRXF_data_validated` as Linux netfront does (a blank packet must be one
/// whose checksum could be set up, as `skb_checksum_setup` demands), verify
/// every other TCP/UDP packet, because the smoltcp device verifies none.
fn rx_checksum(flags: u16, frame: &[u8]) -> Result<Csum, RxError> {
    if flags & NETRXF_CSUM_BLANK != 0 {
        return match check_offloadable(frame) {
            Ok(()) => Ok(Csum::Trusted),
            Err(e) => Err(RxError::Checksum(e)),
        };
    }
    if flags & NETRXF_DATA_VALIDATED != 0 {
        return Ok(Csum::Trusted);
    }
    match checksum_ok(frame) {
        Ok(true) => Ok(Csum::Verified),
        Ok(false) => Err(RxError::BadChecksum),
        // IPv6 (smoltcp has it compiled in, see the crate docs): only ICMPv6,
        // whose checksum smoltcp verifies, goes on; anything else unflagged
        // could be TCP/UDP we cannot verify, and the guest has no IPv6
        // address for it anyway.
        Err(ChecksumError::NotIpv4 {
            ethertype: ETHERTYPE_IPV6,
        }) => {
            if frame.get(crate::ETH_HLEN + 6) == Some(&IPPROTO_ICMPV6) {
                Ok(Csum::NotTcpUdp)
            } else {
                Ok(Csum::Ignored)
            }
        }
        Err(
            ChecksumError::NotIpv4 { .. }
            | ChecksumError::UnsupportedProtocol(_)
            | ChecksumError::Fragment,
        ) => Ok(Csum::NotTcpUdp),
        Err(e @ (ChecksumError::Truncated | ChecksumError::BadIpHeader)) => {
            Err(RxError::Checksum(e))
        }
    }
}

/// Processes one response slot; returns whether the packet ended with it.
fn step<Pg: SharedRing>(
    asm: &mut Assembly,
    slot: &RxRsp,
    posted_id: u16,
    buf: Option<&RxBuf<Pg>>,
    scratch: &mut [u8],
) -> bool {
    asm.slots = asm.slots.saturating_add(1);
    if asm.slots > RX_MAX_SLOTS {
        asm.fail(RxError::TooManySlots);
    }
    match asm.expect {
        Expect::Extra { more_data } => {
            let extra = slot.extra();
            asm.extras = asm.extras.saturating_add(1);
            if extra.kind == XEN_NETIF_EXTRA_TYPE_NONE || extra.kind >= XEN_NETIF_EXTRA_TYPE_MAX {
                asm.fail(RxError::BadExtraType(extra.kind));
            } else {
                let bit = 1u8 << extra.kind;
                if asm.extra_types & bit != 0 {
                    asm.fail(RxError::DuplicateExtra(extra.kind));
                }
                asm.extra_types |= bit;
            }
            if asm.extras > RX_MAX_EXTRAS {
                asm.fail(RxError::TooManyExtras);
            }
            // GSO: validated as Linux netfront does (`xennet_set_skb_gso`:
            // size not 0, a type we advertised); the packet is delivered as
            // one large TCP segment. Hash and multicast extras carry nothing
            // we act on.
            if extra.kind == XEN_NETIF_EXTRA_TYPE_GSO {
                let (gso_type, size) = (extra.gso_type(), extra.gso_size());
                if gso_type != XEN_NETIF_GSO_TYPE_TCPV4 || size == 0 {
                    asm.fail(RxError::BadGso { gso_type, size });
                } else {
                    asm.gso = Some(size);
                }
            }
            if extra.flags & XEN_NETIF_EXTRA_FLAG_MORE != 0 {
                false
            } else if more_data {
                asm.expect = Expect::Data;
                false
            } else {
                true
            }
        }
        Expect::First | Expect::Data => {
            let rsp = slot.response();
            let first = asm.expect == Expect::First;
            if first {
                asm.flags = rsp.flags;
            }
            if asm.error.is_none()
                && let Err(e) = copy_fragment(asm, &rsp, posted_id, buf, scratch)
            {
                asm.fail(e);
            }
            let more = rsp.flags & NETRXF_MORE_DATA != 0;
            if first && rsp.flags & NETRXF_EXTRA_INFO != 0 {
                asm.expect = Expect::Extra { more_data: more };
                false
            } else if more {
                asm.expect = Expect::Data;
                false
            } else {
                true
            }
        }
    }
}

/// Validates a data slot and copies its fragment out of the posted buffer.
fn copy_fragment<Pg: SharedRing>(
    asm: &mut Assembly,
    rsp: &xen_abi::netif::NetifRxResponse,
    posted_id: u16,
    buf: Option<&RxBuf<Pg>>,
    scratch: &mut [u8],
) -> Result<(), RxError> {
    if rsp.id != posted_id {
        return Err(RxError::UnexpectedId {
            expected: posted_id,
            got: rsp.id,
        });
    }
    let size = rsp.fragment_len().map_err(RxError::BackendStatus)?;
    let (offset, len) = (usize::from(rsp.offset), usize::from(size));
    if offset + len > PAGE_SIZE {
        return Err(RxError::OutOfPage {
            offset: rsp.offset,
            size,
        });
    }
    let end = asm.len + len;
    let dst = scratch.get_mut(asm.len..end).ok_or(RxError::TooLong)?;
    // The buffer posted in this slot is granted (posting requires it); a
    // missing one would be a driver bug and reads as an empty fragment.
    if let Some(grant) = buf.and_then(|b| b.held.grant()) {
        grant.buffer().read_bytes(offset, dst);
    } else {
        dst.fill(0);
    }
    asm.len = end;
    Ok(())
}
