//! The transmit side: a pool of pre-granted pages reused on completion, multi-slot frames, re-send after resume.
//!
//! Protocol (`xen/include/public/io/netif.h`, "Guest transmit"): a frame is
//! one `netif_tx_request` whose `size` is the whole frame, followed, while
//! `NETTXF_more_data` is set, by requests whose `size` is their fragment's
//! (multi-slot frames need the back end's `feature-sg`). Every request gets a
//! `netif_tx_response` echoing its id, in any order.
//!
//! Each pool slot owns one page, granted read-only to the back end when the
//! connection is set up and kept granted for the connection's lifetime, and
//! the slot's index is the request id. Sending copies the frame into free
//! slots' pages and posts them; a response frees its slot once every slot of
//! its frame has completed. So the steady state allocates nothing and issues
//! no grant.
//!
//! TSO: a TCP frame of up to 64 KiB with a segment size (from smoltcp's
//! `segmentation-offload`) is posted with `NETTXF_extra_info` on its first
//! request and a `XEN_NETIF_EXTRA_TYPE_GSO` extra slot right after it, when
//! the back end has `feature-gso-tcpv4` and there is room; otherwise it is
//! segmented here into MSS-sized frames (as many as fit). The head slot
//! remembers the segment size, so a re-send after a resume posts the extra
//! again.
//!
//! Responses are validated on a local copy: the id must name a pool slot with
//! a request in flight, the status must be `NETIF_RSP_OKAY`, `_ERROR` or
//! `_DROPPED`; `NETIF_RSP_NULL` (the answer to an extra slot, whose id is
//! whatever the slot held) only while an extra slot is unanswered. A violation is a sticky [`Fault`] (as Linux netfront marks
//! the device broken): the back end's view of our ids is then unknowable.
//!
//! After a resume in a new domain, frames still in flight whose slots have
//! not completed are posted again, in their original order, on the new ring
//! with the pages' new grants.
//!
//! No-panic promise: ids index through `get`/`get_mut`, chunk arithmetic is
//! bounded by the frame length, which is checked first.

use alloc::vec;
use alloc::vec::Vec;

use xen_abi::PAGE_SIZE;
use xen_abi::netif::{
    NETIF_RSP_DROPPED, NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETTXF_CSUM_BLANK,
    NETTXF_DATA_VALIDATED, NETTXF_EXTRA_INFO, NETTXF_MORE_DATA, NetifExtraInfo, NetifTxRequest,
    XEN_NETIF_GSO_TYPE_TCPV4,
};
use xen_ring::{RingError, SharedRing};

use crate::error::{Fault, NetError, TxError};
use crate::wire::{TxReq, TxRsp};
use xen_frontend::{Held, RingHalf};

/// "No slot" in the per-frame slot chains.
const NONE: u16 = u16::MAX;
/// Most slots one frame may use (`XEN_NETIF_NR_SLOTS_MIN`: every back end
/// accepts this many); a 65535-byte frame needs 16.
const MAX_TX_SLOTS: usize = xen_abi::netif::XEN_NETIF_NR_SLOTS_MIN;
/// Largest TSO frame: the first request's `size` states the whole frame in 16
/// bits (`XEN_NETIF_MAX_TX_SIZE`; Linux netfront's TSO limit too).
pub const TSO_MAX_FRAME: usize = xen_abi::netif::XEN_NETIF_MAX_TX_SIZE as usize;

/// Transmit counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TxStats {
    /// Frames posted (re-sends not included).
    pub packets: u64,
    /// Bytes posted.
    pub bytes: u64,
    /// Frames completed with `NETIF_RSP_OKAY`.
    pub completed: u64,
    /// Frames the back end answered with `NETIF_RSP_ERROR`/`_DROPPED`.
    pub errors: u64,
    /// Frames posted again on a new ring after a resume.
    pub resent: u64,
    /// Frames lost: in flight when the back end closed, partly completed
    /// when the domain was saved, or handed to the smoltcp token when no pool
    /// page was free.
    pub dropped: u64,
    /// Frames that needed more than one slot.
    pub multi_slot: u64,
    /// Frames sent with their TCP/UDP checksum left to the back end
    /// (`NETTXF_csum_blank`).
    pub csum_offloaded: u64,
    /// TSO frames posted with a GSO extra slot (the back end segments them).
    pub tso: u64,
    /// TSO frames segmented here (no room for the whole frame, or a back end
    /// without `feature-gso-tcpv4`); their segments count as packets.
    pub segmented: u64,
    /// `XEN_NETIF_RSP_NULL` responses consumed (one per GSO extra slot).
    pub null_responses: u64,
    /// Ring pushes (`req_prod` published): one per frame sent with
    /// [`crate::NetFront::transmit`], at most one per
    /// [`crate::NetFront::flush_tx`] for frames from the smoltcp device.
    pub pushes: u64,
    /// TCP segments with RST set that the stack sent.
    pub resets: u64,
    /// The last of them.
    pub last_reset: Option<crate::csum::TcpReset>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Free,
    /// Posted (or waiting to be re-posted after a resume).
    InFlight {
        /// Frame sequence number (orders re-sends).
        seq: u64,
        /// The request, without its grant reference.
        req: NetifTxRequest,
        /// First slot of the frame.
        head: u16,
        /// Next slot of the frame, or [`NONE`].
        next: u16,
        /// Its response has arrived.
        done: bool,
        /// (Head only) slots of the frame still without a response.
        pending: u16,
        /// (Head only) some slot was answered with an error.
        failed: bool,
        /// (Head only) the GSO segment size, 0 for none: a GSO extra slot
        /// follows the head's request.
        gso: u16,
    },
}

#[derive(Debug)]
pub(crate) struct TxSlot<Pg> {
    pub(crate) held: Held<Pg>,
    state: SlotState,
}

/// The transmit half of the driver.
#[derive(Debug)]
pub(crate) struct Tx<Pg> {
    pub(crate) ring: Option<RingHalf<TxReq, TxRsp, Pg>>,
    pub(crate) slots: Vec<TxSlot<Pg>>,
    /// Free slots with a current grant (capacity = pool size).
    free: Vec<u16>,
    seq: u64,
    /// Where smoltcp builds a frame (room for a TSO frame).
    scratch: Vec<u8>,
    /// Where a segment of a TSO frame is built when segmenting here.
    seg: Vec<u8>,
    /// Largest frame accepted.
    pub(crate) max_frame: usize,
    /// Largest TSO frame accepted (0: no TSO; bounded by half the pool).
    pub(crate) tso_limit: usize,
    /// The back end accepts multi-slot frames (`feature-sg`).
    pub(crate) sg: bool,
    /// The back end takes TCPv4 GSO requests (`feature-gso-tcpv4`).
    pub(crate) gso: bool,
    /// GSO extra slots posted whose `XEN_NETIF_RSP_NULL` has not come yet.
    extras_pending: u32,
    /// Frames posted by [`Self::post_deferred`] whose requests are not
    /// published yet ([`Self::flush`] does it).
    unpushed: bool,
    pub(crate) stats: TxStats,
}

impl<Pg: SharedRing> Tx<Pg> {
    /// A pool of `n` slots (no pages yet) for frames up to `max_frame` bytes
    /// and TSO frames up to [`TSO_MAX_FRAME`] bytes, or as many pages as
    /// half the pool less one (no TSO below 2 pages).
    /// `tso` false: no TSO at all (smoltcp sends MSS-sized segments).
    pub(crate) fn new(n: usize, max_frame: usize, tso: bool) -> Self {
        let pages = (n / 2).saturating_sub(1);
        let tso_limit = if pages < 2 || !tso {
            0
        } else {
            TSO_MAX_FRAME.min(pages * PAGE_SIZE)
        };
        let mut slots = Vec::with_capacity(n);
        slots.resize_with(n, || TxSlot {
            held: Held::Empty,
            state: SlotState::Free,
        });
        Self {
            ring: None,
            slots,
            free: Vec::with_capacity(n),
            seq: 0,
            scratch: vec![0; max_frame.max(tso_limit)],
            seg: vec![0; max_frame],
            max_frame,
            tso_limit,
            sg: false,
            gso: false,
            extras_pending: 0,
            unpushed: false,
            stats: TxStats::default(),
        }
    }

    /// A new ring: no extra slot of the old one will be answered.
    pub(crate) fn new_ring(&mut self) {
        self.extras_pending = 0;
    }

    /// Whether a TSO frame can go to the back end whole (with its extra).
    fn tso_to_backend(&self) -> bool {
        self.gso && self.sg
    }

    /// Whether the transmit token can be handed out: room for the largest
    /// frame smoltcp may build (a whole TSO frame when the back end takes
    /// them; else one frame, a TSO frame being segmented here as far as
    /// there is room).
    pub(crate) fn token_room(&self) -> bool {
        if self.tso_limit > 0 && self.tso_to_backend() {
            self.can_send_with(self.tso_limit, 1)
        } else {
            self.can_send(self.frame_limit())
        }
    }

    /// The largest frame sendable now.
    pub(crate) fn frame_limit(&self) -> usize {
        if self.sg {
            self.max_frame
        } else {
            self.max_frame.min(PAGE_SIZE)
        }
    }

    /// Whether a frame of `len` bytes could be posted now.
    pub(crate) fn can_send(&self, len: usize) -> bool {
        self.can_send_with(len, 0)
    }

    /// Whether a frame of `len` bytes and `extras` extra slots could be
    /// posted now.
    fn can_send_with(&self, len: usize, extras: usize) -> bool {
        let n = len.div_ceil(PAGE_SIZE).max(1);
        self.ring
            .as_ref()
            .is_some_and(|r| r.front.free_requests() as usize >= n + extras)
            && self.free.len() >= n
    }

    /// Rebuilds the free list from the slots that are free and granted
    /// (`is_current`), after (re)granting the pool.
    pub(crate) fn collect_free(&mut self, mut is_current: impl FnMut(&Held<Pg>) -> bool) {
        self.free.clear();
        for (id, s) in self.slots.iter().enumerate() {
            if s.state == SlotState::Free
                && is_current(&s.held)
                && let Ok(id) = u16::try_from(id)
            {
                self.free.push(id);
            }
        }
    }

    /// Forgets the free list (the grants are about to go).
    pub(crate) fn forget_free(&mut self) {
        self.free.clear();
    }

    /// The back end closed: every frame in flight is lost.
    pub(crate) fn drop_in_flight(&mut self) {
        for id in 0..self.slots.len() {
            if let Some(head) = self.head_of(id) {
                self.stats.dropped += 1;
                self.free_frame(head, false);
            }
        }
    }

    /// The head id of the frame occupying slot `id`, if `id` is a head.
    fn head_of(&self, id: usize) -> Option<u16> {
        match self.slots.get(id)?.state {
            SlotState::InFlight { head, .. } if usize::from(head) == id => Some(head),
            _ => None,
        }
    }

    /// Frees every slot of the frame starting at `head`.
    fn free_frame(&mut self, head: u16, to_free_list: bool) {
        let mut id = head;
        let mut guard = self.slots.len();
        while id != NONE && guard > 0 {
            guard -= 1;
            let Some(slot) = self.slots.get_mut(usize::from(id)) else {
                break;
            };
            let next = match slot.state {
                SlotState::InFlight { next, .. } => next,
                SlotState::Free => NONE,
            };
            slot.state = SlotState::Free;
            if to_free_list && self.free.len() < self.free.capacity() {
                self.free.push(id);
            }
            id = next;
        }
    }

    /// Copies a frame built by `fill` into pool pages and posts it. Returns
    /// `fill`'s result and whether the back end must be notified; a frame
    /// that cannot be sent is [`NetError::Tx`], a broken ring
    /// [`NetError::Faulted`].
    pub(crate) fn send<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<(R, bool), NetError> {
        self.check(len, 0)?;
        let r = fill(self.frame_mut(len));
        Ok((r, self.post(len, 0, 0)?))
    }

    /// Whether a frame of `len` bytes can be sent now; `gso` (a TSO frame's
    /// segment size, 0 for none) allows up to the TSO limit, and such a
    /// frame is segmented here as far as there is room if it cannot go whole.
    pub(crate) fn check(&self, len: usize, gso: u16) -> Result<(), TxError> {
        if len < crate::ETH_HLEN {
            return Err(TxError::TooShort(len));
        }
        let limit = if gso != 0 {
            self.tso_limit
        } else {
            self.frame_limit()
        };
        if len > limit || len > self.scratch.len() {
            return Err(TxError::TooLong(len));
        }
        if !self.can_send(len.min(self.frame_limit())) {
            return Err(TxError::Busy);
        }
        Ok(())
    }

    /// The staging buffer for a frame of `len` bytes (`len` checked).
    pub(crate) fn frame_mut(&mut self, len: usize) -> &mut [u8] {
        let n = len.min(self.scratch.len());
        self.scratch.get_mut(..n).unwrap_or(&mut [])
    }

    /// Copies the staged frame of `len` bytes (checked by [`Self::check`])
    /// into free pool pages and posts it, with `flags` (`NETTXF_csum_blank`,
    /// `NETTXF_data_validated`) on its first request. A TSO frame (`gso`,
    /// its segment size, not 0) goes whole with a GSO extra slot if the back
    /// end takes them and there is room, else it is segmented here. Returns
    /// whether the back end must be notified.
    pub(crate) fn post(&mut self, len: usize, flags: u16, gso: u16) -> Result<bool, Fault> {
        self.post_deferred(len, flags, gso)?;
        self.flush()
    }

    /// [`Self::post`] without publishing the requests: they stay in the
    /// ring's private producer index until [`Self::flush`], so the frames a
    /// pass of the stack sends become visible (and the back end notified)
    /// once, as Linux netfront does for a burst (`netdev_xmit_more`). The
    /// frames are in flight from here on (a resume re-sends them).
    pub(crate) fn post_deferred(&mut self, len: usize, flags: u16, gso: u16) -> Result<(), Fault> {
        let posted = if gso == 0 {
            self.post_buf(false, len, flags, 0)
        } else if self.tso_to_backend() && self.can_send_with(len, 1) {
            self.post_buf(false, len, flags | NETTXF_EXTRA_INFO, gso)
        } else {
            self.post_segmented(len, gso)
        };
        // A frame that was not posted leaves nothing to publish; one more
        // flush is harmless.
        self.unpushed = true;
        posted
    }

    /// Publishes the requests posted since the last push. Returns whether
    /// the back end must be notified.
    pub(crate) fn flush(&mut self) -> Result<bool, Fault> {
        if !core::mem::take(&mut self.unpushed) {
            return Ok(false);
        }
        self.push()
    }

    /// Segments the staged TSO frame of `len` bytes into frames of at most
    /// `mss` payload bytes (and at most one frame each) and posts as many as
    /// there is room for; the rest is dropped (TCP sends it again).
    fn post_segmented(&mut self, len: usize, mss: u16) -> Result<(), Fault> {
        let frame = self.scratch.get(..len).unwrap_or(&[]);
        let Ok(hdr) = crate::csum::tcp_headers_len(frame) else {
            self.stats.dropped += 1;
            return Ok(());
        };
        let room = self.frame_limit().saturating_sub(hdr);
        let step = usize::from(mss).min(room);
        if step == 0 {
            self.stats.dropped += 1;
            return Ok(());
        }
        self.stats.segmented += 1;
        let payload = len.saturating_sub(hdr);
        let mut offset = 0usize;
        let mut index = 0u16;
        while offset < payload {
            let chunk = step.min(payload - offset);
            let seg_len = hdr + chunk;
            if !self.can_send(seg_len) {
                // The tail is lost; TCP retransmits it.
                self.stats.dropped += 1;
                break;
            }
            let (Some(dst), Some(h), Some(data)) = (
                self.seg.get_mut(..seg_len),
                self.scratch.get(..hdr),
                self.scratch.get(hdr + offset..hdr + offset + chunk),
            ) else {
                break;
            };
            dst[..hdr].copy_from_slice(h);
            dst[hdr..].copy_from_slice(data);
            let last = offset + chunk >= payload;
            let flags = match crate::csum::fix_tso_segment(dst, index, offset as u32, last) {
                Ok(()) => NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED,
                Err(_) => {
                    self.stats.dropped += 1;
                    break;
                }
            };
            self.post_buf(true, seg_len, flags, 0)?;
            offset += chunk;
            index = index.wrapping_add(1);
        }
        Ok(())
    }

    /// Copies a frame of `len` bytes from the staging buffer (or, `from_seg`,
    /// the segment buffer) into free pool pages and posts it (unpublished).
    fn post_buf(&mut self, from_seg: bool, len: usize, flags: u16, gso: u16) -> Result<(), Fault> {
        let n = len.div_ceil(PAGE_SIZE);
        if n == 0 || n > MAX_TX_SLOTS || self.free.len() < n {
            return Ok(());
        }
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        // Take n free slots; link them in order.
        let mut ids = [NONE; MAX_TX_SLOTS];
        for slot in ids.iter_mut().take(n) {
            *slot = self.free.pop().unwrap_or(NONE);
        }
        let head = ids.first().copied().unwrap_or(NONE);
        for (k, &id) in ids.iter().enumerate().take(n) {
            let start = k * PAGE_SIZE;
            let chunk = (len - start).min(PAGE_SIZE);
            let more = k + 1 < n;
            // The first slot states the whole frame (len <= 65535, checked).
            let size = if k == 0 { len } else { chunk } as u16;
            let Some(slot) = self.slots.get_mut(usize::from(id)) else {
                continue;
            };
            let src = if from_seg { &self.seg } else { &self.scratch };
            if let (Some(g), Some(data)) = (slot.held.grant(), src.get(start..start + chunk)) {
                g.buffer().write_bytes(0, data);
            }
            slot.state = SlotState::InFlight {
                seq,
                req: NetifTxRequest {
                    gref: 0,
                    offset: 0,
                    flags: if more { NETTXF_MORE_DATA } else { 0 } | if k == 0 { flags } else { 0 },
                    id,
                    size,
                },
                head,
                next: if more {
                    ids.get(k + 1).copied().unwrap_or(NONE)
                } else {
                    NONE
                },
                done: false,
                pending: n as u16,
                failed: false,
                gso,
            };
        }
        self.stats.packets += 1;
        self.stats.bytes += len as u64;
        if flags & NETTXF_CSUM_BLANK != 0 {
            self.stats.csum_offloaded += 1;
        }
        if gso != 0 {
            self.stats.tso += 1;
        }
        if n > 1 {
            self.stats.multi_slot += 1;
        }
        self.post_frame(head)
    }

    /// Produces the requests of the frame starting at `head`, with the slots'
    /// current grant references.
    fn post_frame(&mut self, head: u16) -> Result<(), Fault> {
        let Some(ring) = self.ring.as_mut() else {
            return Ok(());
        };
        let mut id = head;
        let mut guard = self.slots.len();
        while id != NONE && guard > 0 {
            guard -= 1;
            let Some(slot) = self.slots.get(usize::from(id)) else {
                break;
            };
            let SlotState::InFlight {
                mut req, next, gso, ..
            } = slot.state
            else {
                break;
            };
            req.gref = slot.held.grant().map_or(0, |g| g.gref());
            match ring.front.produce(ring.page.buffer(), &TxReq(req)) {
                Ok(_) => {}
                // Capacity was checked; a full ring leaves the rest unposted.
                Err(RingError::Full) => break,
                Err(RingError::Backend(f)) => return Err(Fault::TxRing(f)),
            }
            if gso != 0 && id == head {
                // The GSO extra slot right after the head's request
                // (netif.h); the back end answers it with
                // `XEN_NETIF_RSP_NULL`.
                let extra = NetifExtraInfo::gso(gso, XEN_NETIF_GSO_TYPE_TCPV4, 0, 0).to_bytes();
                let mut w = [0u8; NetifTxRequest::SIZE];
                w[..extra.len()].copy_from_slice(&extra);
                match ring
                    .front
                    .produce(ring.page.buffer(), &TxReq(NetifTxRequest::from_bytes(&w)))
                {
                    Ok(_) => self.extras_pending = self.extras_pending.saturating_add(1),
                    Err(RingError::Full) => break,
                    Err(RingError::Backend(f)) => return Err(Fault::TxRing(f)),
                }
            }
            id = next;
        }
        Ok(())
    }

    fn push(&mut self) -> Result<bool, Fault> {
        let Some(ring) = self.ring.as_mut() else {
            return Ok(false);
        };
        self.stats.pushes += 1;
        match ring
            .front
            .push_requests_and_check_notify(ring.page.buffer())
        {
            Ok(n) => Ok(n),
            Err(RingError::Full) => Ok(true),
            Err(RingError::Backend(f)) => Err(Fault::TxRing(f)),
        }
    }

    /// Consumes tx responses, freeing completed frames' slots. Returns how
    /// many responses were consumed.
    pub(crate) fn reclaim(&mut self) -> Result<u32, Fault> {
        let mut n = 0u32;
        loop {
            let Some(ring) = self.ring.as_mut() else {
                return Ok(n);
            };
            let rsp = match ring.front.next_response(ring.page.buffer()) {
                Ok(Some(TxRsp(r))) => r,
                Ok(None) | Err(RingError::Full) => return Ok(n),
                Err(RingError::Backend(f)) => return Err(Fault::TxRing(f)),
            };
            n = n.wrapping_add(1);
            self.complete(rsp.id, rsp.status)?;
        }
    }

    fn complete(&mut self, id: u16, status: i16) -> Result<(), Fault> {
        if status == NETIF_RSP_NULL {
            // The answer to a GSO extra slot (its id is whatever the slot
            // held): accepted only while one is unanswered.
            if self.extras_pending == 0 {
                return Err(Fault::TxBadStatus { id, status });
            }
            self.extras_pending -= 1;
            self.stats.null_responses += 1;
            return Ok(());
        }
        let failed = match status {
            NETIF_RSP_OKAY => false,
            NETIF_RSP_ERROR | NETIF_RSP_DROPPED => true,
            _ => return Err(Fault::TxBadStatus { id, status }),
        };
        let slot = self
            .slots
            .get_mut(usize::from(id))
            .ok_or(Fault::TxUnknownId(id))?;
        let head = match &mut slot.state {
            SlotState::InFlight { done, head, .. } if !*done => {
                *done = true;
                *head
            }
            _ => return Err(Fault::TxNotInFlight(id)),
        };
        let finished = match self.slots.get_mut(usize::from(head)).map(|s| &mut s.state) {
            Some(SlotState::InFlight {
                pending, failed: f, ..
            }) => {
                *pending = pending.saturating_sub(1);
                *f |= failed;
                (*pending == 0).then_some(*f)
            }
            _ => None,
        };
        if let Some(frame_failed) = finished {
            if frame_failed {
                self.stats.errors += 1;
            } else {
                self.stats.completed += 1;
            }
            self.free_frame(head, true);
        }
        Ok(())
    }

    /// After a resume: frames none of whose slots completed are posted again
    /// in their original order (the pool must be re-granted first); frames
    /// that partly completed were consumed by the old back end and are
    /// dropped. Returns whether the back end must be notified.
    pub(crate) fn resend(&mut self) -> Result<bool, Fault> {
        // Heads of frames in flight, ordered by sequence number (no
        // allocation: at most one head per slot, sorted in place).
        let mut heads = [(0u64, NONE); xen_abi::netif::NET_TX_RING_SIZE];
        let mut count = 0usize;
        for id in 0..self.slots.len() {
            let Some(head) = self.head_of(id) else {
                continue;
            };
            let (seq, intact) = self.frame_status(head);
            let gso = matches!(
                self.slots.get(usize::from(head)).map(|s| s.state),
                Some(SlotState::InFlight { gso, .. }) if gso != 0
            );
            // A TSO frame cannot go to a back end without GSO: lost (TCP
            // sends it again, segmented here then).
            if !intact || (gso && !self.tso_to_backend()) {
                self.stats.dropped += 1;
                self.free_frame(head, true);
                continue;
            }
            if let Some(h) = heads.get_mut(count) {
                *h = (seq, head);
                count += 1;
            }
        }
        let heads = heads.get_mut(..count).unwrap_or(&mut []);
        heads.sort_unstable_by_key(|(seq, _)| *seq);
        for &(_, head) in heads.iter() {
            self.post_frame(head)?;
            self.stats.resent += 1;
        }
        if count == 0 {
            return Ok(false);
        }
        self.push()
    }

    /// (sequence number, whether no slot of the frame has completed).
    fn frame_status(&self, head: u16) -> (u64, bool) {
        let mut id = head;
        let mut seq0 = 0;
        let mut guard = self.slots.len();
        while id != NONE && guard > 0 {
            guard -= 1;
            match self.slots.get(usize::from(id)).map(|s| s.state) {
                Some(SlotState::InFlight {
                    seq, next, done, ..
                }) => {
                    if done {
                        return (seq, false);
                    }
                    seq0 = seq;
                    id = next;
                }
                _ => break,
            }
        }
        (seq0, true)
    }

    /// Frames in flight.
    pub(crate) fn in_flight(&self) -> usize {
        (0..self.slots.len())
            .filter(|&id| self.head_of(id).is_some())
            .count()
    }
}
