//! Front end of Xen's classic shared request/response ring (`xen/include/public/io/ring.h`).
//!
//! The ring's private state ([`FrontRing`]: `req_prod_pvt`, `rsp_cons`, the size)
//! is kept apart from the shared memory, which is reached only through the
//! [`SharedRing`] trait (as rust-vmm's `virtio-queue` keeps `Queue` apart from
//! `GuestMemory`). The guest kernel implements [`SharedRing`] with atomics and
//! volatile copies on a granted page; host tests use the [`sim`] implementations
//! (feature `test-utils`).
//!
//! Requests and responses are plain values that convert to and from their wire
//! image ([`RingEntry`]); a response is copied out of the shared page exactly once,
//! into a local byte array, before it is decoded (`RING_COPY_RESPONSE`), so the
//! back end cannot change it under the driver's feet.
//!
//! The back end is not trusted. Every `rsp_prod` it publishes is validated: it may
//! not run more than the ring size ahead of `rsp_cons`
//! (`RING_RESPONSE_PROD_OVERFLOW`), may not announce more responses than requests
//! were pushed, and may not move backwards. A violation is reported as
//! [`RingError::Backend`] and is sticky: the ring refuses all further work until the
//! driver reconnects with a fresh ring.
//!
//! No-panic promise: no method panics for any values the back end writes. All index
//! arithmetic is wrapping (`Wrapping<u32>`) as the C macros' `RING_IDX` is, and every
//! byte offset handed to [`SharedRing`] lies inside [`SharedRing::area_len`] because
//! [`FrontRing::init`]/[`FrontRing::attach`] check the layout against it once.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "test-utils"))]
extern crate alloc;

#[cfg(any(test, feature = "test-utils"))]
pub mod sim;

#[cfg(test)]
mod tests;

use core::fmt;
use core::marker::PhantomData;
use core::num::Wrapping;
use core::sync::atomic::{Ordering, fence};

use xen_abi::ring as abi;
pub use xen_abi::ring::RingIdx;

/// One of the four indices in the shared ring header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RingIndex {
    /// `req_prod`: written by the front end.
    ReqProd,
    /// `req_event`: written by the back end.
    ReqEvent,
    /// `rsp_prod`: written by the back end.
    RspProd,
    /// `rsp_event`: written by the front end.
    RspEvent,
}

impl RingIndex {
    /// Byte offset of the index in the shared page (`io/ring.h` header layout).
    pub const fn offset(self) -> usize {
        match self {
            Self::ReqProd => abi::REQ_PROD_OFFSET,
            Self::ReqEvent => abi::REQ_EVENT_OFFSET,
            Self::RspProd => abi::RSP_PROD_OFFSET,
            Self::RspEvent => abi::RSP_EVENT_OFFSET,
        }
    }
}

/// Access to the memory of one shared ring (header plus entries).
///
/// Implementations: the guest kernel's over a granted page (an `AtomicU32` per
/// index, volatile byte copies for entries); [`sim::VecRing`] and
/// [`sim::AtomicRing`] for tests.
///
/// Contract for callers (kept by [`FrontRing`]): `offset + len <= area_len()` for
/// every [`read_bytes`](Self::read_bytes)/[`write_bytes`](Self::write_bytes); the
/// only byte access to the 64-byte header is [`FrontRing::init`] zeroing its
/// private/padding bytes, indices go through [`load`](Self::load)/[`store`](Self::store).
/// Implementations must not panic; an out-of-range access (a caller bug) may be
/// ignored.
pub trait SharedRing {
    /// Size in bytes of the shared area, header included.
    fn area_len(&self) -> usize;
    /// Atomically loads a header index with `order` (`Relaxed` or `Acquire`).
    fn load(&self, index: RingIndex, order: Ordering) -> RingIdx;
    /// Atomically stores a header index with `order` (`Relaxed` or `Release`).
    fn store(&self, index: RingIndex, value: RingIdx, order: Ordering);
    /// Copies `out.len()` bytes starting at byte `offset` of the area into `out`,
    /// reading each shared byte once (volatile; the peer may be writing).
    fn read_bytes(&self, offset: usize, out: &mut [u8]);
    /// Copies `bytes` into the area at byte `offset` (volatile).
    fn write_bytes(&self, offset: usize, bytes: &[u8]);
}

/// A request or response type and its wire image (the C struct's bytes, little
/// endian on x86).
///
/// `Wire` is a byte array such as `[u8; 12]`; its length must not exceed the ring's
/// entry stride. [`from_wire`](Self::from_wire) receives a local copy of
/// peer-written bytes: it must accept every bit pattern (validation of field
/// values is the driver's job, after decoding).
pub trait RingEntry: Sized {
    /// The wire image, a byte array.
    type Wire: AsRef<[u8]> + AsMut<[u8]> + Copy;
    /// An all-zero wire image (the buffer responses are copied into).
    const ZERO_WIRE: Self::Wire;
    /// Encodes the value.
    fn to_wire(&self) -> Self::Wire;
    /// Decodes a local copy of an entry.
    fn from_wire(wire: &Self::Wire) -> Self;
}

/// Raw byte entries: a ring of `N`-byte messages whose meaning the caller decodes.
impl<const N: usize> RingEntry for [u8; N] {
    type Wire = [u8; N];
    const ZERO_WIRE: Self::Wire = [0; N];
    fn to_wire(&self) -> Self::Wire {
        *self
    }
    fn from_wire(wire: &Self::Wire) -> Self {
        *wire
    }
}

/// The geometry of a ring: entry count (a power of two), stride, and area size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RingLayout {
    entries: u32,
    stride: usize,
    area_len: usize,
}

/// Why a [`RingLayout`] or [`FrontRing`] cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayoutError {
    /// The stride is 0, or the union alignment is not a power of two.
    BadStride,
    /// Not even one entry fits after the 64-byte header.
    NoEntries,
    /// The requested entry count is 0 or not a power of two.
    EntriesNotPowerOfTwo(u32),
    /// The requested entries do not fit in the area.
    TooManyEntries {
        /// Entries requested.
        entries: u32,
        /// Entries that fit.
        fit: u32,
    },
    /// A request or response wire image is larger than the stride.
    EntryTooLarge {
        /// The wire image size.
        size: usize,
        /// The stride.
        stride: usize,
    },
    /// The shared memory is smaller than the layout's area.
    AreaTooSmall {
        /// Bytes the layout needs.
        needed: usize,
        /// Bytes [`SharedRing::area_len`] reports.
        actual: usize,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayoutError::BadStride => {
                f.write_str("ring stride is 0 or not a power-of-two alignment")
            }
            LayoutError::NoEntries => f.write_str("no ring entry fits after the 64-byte header"),
            LayoutError::EntriesNotPowerOfTwo(n) => {
                write!(f, "ring entry count {n} is not a non-zero power of two")
            }
            LayoutError::TooManyEntries { entries, fit } => {
                write!(f, "{entries} ring entries requested, only {fit} fit")
            }
            LayoutError::EntryTooLarge { size, stride } => {
                write!(
                    f,
                    "ring entry of {size} bytes is larger than the stride {stride}"
                )
            }
            LayoutError::AreaTooSmall { needed, actual } => {
                write!(
                    f,
                    "ring area of {actual} bytes is below the {needed} the layout needs"
                )
            }
        }
    }
}

impl RingLayout {
    /// The standard layout: as many `stride`-byte entries as fit in `area_len`
    /// bytes, rounded down to a power of two (`__CONST_RING_SIZE`).
    pub fn new(area_len: usize, stride: usize) -> Result<Self, LayoutError> {
        if stride == 0 {
            return Err(LayoutError::BadStride);
        }
        match abi::ring_entries(area_len, stride) {
            0 => Err(LayoutError::NoEntries),
            entries => Ok(Self {
                entries,
                stride,
                area_len,
            }),
        }
    }

    /// The standard layout for `Req`/`Rsp`, with the stride of the C union of
    /// their wire images aligned to `align` (the larger C alignment of the two).
    pub fn for_entries<Req: RingEntry, Rsp: RingEntry>(
        area_len: usize,
        align: usize,
    ) -> Result<Self, LayoutError> {
        let req = Req::ZERO_WIRE.as_ref().len();
        let rsp = Rsp::ZERO_WIRE.as_ref().len();
        let stride = abi::entry_stride(req, align, rsp, align).ok_or(LayoutError::BadStride)?;
        Self::new(area_len, stride)
    }

    /// A layout with exactly `entries` entries (a power of two that fits), for
    /// protocols that negotiate a smaller ring and for tests.
    pub fn with_entries(area_len: usize, stride: usize, entries: u32) -> Result<Self, LayoutError> {
        let fit = Self::new(area_len, stride)?.entries;
        if !entries.is_power_of_two() {
            return Err(LayoutError::EntriesNotPowerOfTwo(entries));
        }
        if entries > fit {
            return Err(LayoutError::TooManyEntries { entries, fit });
        }
        Ok(Self {
            entries,
            stride,
            area_len,
        })
    }

    /// Number of entries (`RING_SIZE`), a power of two.
    pub const fn entries(&self) -> u32 {
        self.entries
    }

    /// Bytes per entry.
    pub const fn stride(&self) -> usize {
        self.stride
    }

    /// Bytes of shared area the layout was computed for.
    pub const fn area_len(&self) -> usize {
        self.area_len
    }

    /// Byte offset of the entry selected by a free-running index.
    pub const fn entry_offset(&self, idx: RingIdx) -> usize {
        abi::entry_offset(idx, self.entries, self.stride)
    }

    /// Checks that `Req`/`Rsp` wire images fit the stride and that `mem` is large
    /// enough; after this every entry access is in bounds.
    fn check<Req: RingEntry, Rsp: RingEntry>(
        &self,
        mem: &impl SharedRing,
    ) -> Result<(), LayoutError> {
        for size in [Req::ZERO_WIRE.as_ref().len(), Rsp::ZERO_WIRE.as_ref().len()] {
            if size > self.stride {
                return Err(LayoutError::EntryTooLarge {
                    size,
                    stride: self.stride,
                });
            }
        }
        // Cannot overflow: `entries * stride` fitted in `area_len` when built.
        let needed = abi::HEADER_SIZE + self.entries as usize * self.stride;
        if mem.area_len() < needed {
            return Err(LayoutError::AreaTooSmall {
                needed,
                actual: mem.area_len(),
            });
        }
        Ok(())
    }
}

/// A protocol violation by the back end, detected on its `rsp_prod`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendFault {
    /// `rsp_prod - rsp_cons > size` (`RING_RESPONSE_PROD_OVERFLOW`).
    ResponseOverflow {
        /// The `rsp_prod` read.
        rsp_prod: RingIdx,
        /// Our `rsp_cons`.
        rsp_cons: RingIdx,
    },
    /// More responses announced than requests were pushed and not yet answered.
    UnrequestedResponses {
        /// The `rsp_prod` read.
        rsp_prod: RingIdx,
        /// Our `rsp_cons`.
        rsp_cons: RingIdx,
        /// The `req_prod` we last pushed.
        req_prod: RingIdx,
    },
    /// `rsp_prod` moved backwards from a value already seen.
    ProducerRewound {
        /// The `rsp_prod` seen before.
        seen: RingIdx,
        /// The smaller `rsp_prod` read now.
        now: RingIdx,
    },
}

impl fmt::Display for BackendFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BackendFault::ResponseOverflow { rsp_prod, rsp_cons } => write!(
                f,
                "rsp_prod {rsp_prod} is {} past rsp_cons {rsp_cons}, more than the ring holds",
                rsp_prod.wrapping_sub(rsp_cons)
            ),
            BackendFault::UnrequestedResponses {
                rsp_prod,
                rsp_cons,
                req_prod,
            } => write!(
                f,
                "rsp_prod {rsp_prod} is {} past req_prod {req_prod} (rsp_cons {rsp_cons})",
                rsp_prod.wrapping_sub(req_prod)
            ),
            BackendFault::ProducerRewound { seen, now } => {
                write!(f, "rsp_prod went back from {seen} to {now}")
            }
        }
    }
}

/// Why a ring operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RingError {
    /// No free request slot (`RING_FULL`): consume responses first.
    Full,
    /// The back end broke the protocol (now or earlier; the fault is sticky).
    Backend(BackendFault),
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::Full => f.write_str("ring full"),
            RingError::Backend(fault) => write!(f, "back end broke the ring protocol: {fault}"),
        }
    }
}

impl From<BackendFault> for RingError {
    fn from(f: BackendFault) -> Self {
        Self::Backend(f)
    }
}

/// The front end's private half of a shared ring (`xxx_front_ring` in `io/ring.h`).
///
/// `Req` is what the driver produces, `Rsp` what it consumes.
#[derive(Debug)]
pub struct FrontRing<Req, Rsp> {
    /// Next request index to fill (`req_prod_pvt`).
    req_prod_pvt: Wrapping<RingIdx>,
    /// The `req_prod` we last published. Kept here rather than read back from the
    /// page, which the back end can overwrite.
    req_prod_pushed: Wrapping<RingIdx>,
    /// Next response index to consume (`rsp_cons`).
    rsp_cons: Wrapping<RingIdx>,
    /// The last `rsp_prod` that passed validation.
    rsp_prod_seen: Wrapping<RingIdx>,
    layout: RingLayout,
    fault: Option<BackendFault>,
    _entries: PhantomData<fn(Req) -> Rsp>,
}

impl<Req: RingEntry, Rsp: RingEntry> FrontRing<Req, Rsp> {
    /// Initialises the shared header (`SHARED_RING_INIT`: producers 0, events 1,
    /// private and padding bytes zeroed) and returns a front ring at index 0
    /// (`FRONT_RING_INIT`). Call before granting the page to the back end.
    pub fn init(layout: RingLayout, mem: &impl SharedRing) -> Result<Self, LayoutError> {
        layout.check::<Req, Rsp>(mem)?;
        mem.write_bytes(abi::PVT_OFFSET, &[0; abi::PVT_SIZE + abi::PAD_SIZE]);
        // Relaxed: the back end does not have the page yet; granting it (and
        // writing the ring-ref to xenstore) happens after and orders these.
        mem.store(RingIndex::ReqProd, abi::INIT_PROD, Ordering::Relaxed);
        // Relaxed: as above, published by the later grant.
        mem.store(RingIndex::RspProd, abi::INIT_PROD, Ordering::Relaxed);
        // Relaxed: as above.
        mem.store(RingIndex::ReqEvent, abi::INIT_EVENT, Ordering::Relaxed);
        // Relaxed: as above.
        mem.store(RingIndex::RspEvent, abi::INIT_EVENT, Ordering::Relaxed);
        Ok(Self::at(layout, abi::INIT_PROD))
    }

    /// Attaches to a ring whose indices are already at `start`
    /// (`FRONT_RING_ATTACH`); does not touch the shared memory.
    pub fn attach(
        layout: RingLayout,
        mem: &impl SharedRing,
        start: RingIdx,
    ) -> Result<Self, LayoutError> {
        layout.check::<Req, Rsp>(mem)?;
        Ok(Self::at(layout, start))
    }

    fn at(layout: RingLayout, start: RingIdx) -> Self {
        Self {
            req_prod_pvt: Wrapping(start),
            req_prod_pushed: Wrapping(start),
            rsp_cons: Wrapping(start),
            rsp_prod_seen: Wrapping(start),
            layout,
            fault: None,
            _entries: PhantomData,
        }
    }

    /// The ring's geometry.
    pub fn layout(&self) -> RingLayout {
        self.layout
    }

    /// Number of entries (`RING_SIZE`).
    pub fn size(&self) -> u32 {
        self.layout.entries
    }

    /// The next request index to fill (`req_prod_pvt`).
    pub fn req_prod_pvt(&self) -> RingIdx {
        self.req_prod_pvt.0
    }

    /// The next response index to consume (`rsp_cons`).
    pub fn rsp_cons(&self) -> RingIdx {
        self.rsp_cons.0
    }

    /// Requests produced (pushed or not) whose responses are not yet consumed.
    pub fn in_flight(&self) -> u32 {
        (self.req_prod_pvt - self.rsp_cons).0
    }

    /// Requests produced but not yet published with a push.
    pub fn unpushed(&self) -> u32 {
        (self.req_prod_pvt - self.req_prod_pushed).0
    }

    /// Free request slots (`RING_FREE_REQUESTS`).
    pub fn free_requests(&self) -> u32 {
        // in_flight <= size always: produce refuses when full, and rsp_cons only
        // advances over validated responses to pushed requests.
        self.size().saturating_sub(self.in_flight())
    }

    /// `RING_FULL`.
    pub fn is_full(&self) -> bool {
        self.free_requests() == 0
    }

    /// The back-end fault that broke this ring, if any.
    pub fn fault(&self) -> Option<BackendFault> {
        self.fault
    }

    fn check_fault(&self) -> Result<(), RingError> {
        match self.fault {
            Some(f) => Err(RingError::Backend(f)),
            None => Ok(()),
        }
    }

    /// Writes `req` into the next free slot and returns its index; the back end
    /// sees it only after [`push_requests_and_check_notify`](Self::push_requests_and_check_notify).
    pub fn produce(&mut self, mem: &impl SharedRing, req: &Req) -> Result<RingIdx, RingError> {
        self.check_fault()?;
        if self.is_full() {
            return Err(RingError::Full);
        }
        let idx = self.req_prod_pvt.0;
        let wire = req.to_wire();
        // Plain (volatile) write: ordered before the back end can read it by the
        // Release store of req_prod in the push.
        mem.write_bytes(self.layout.entry_offset(idx), wire.as_ref());
        self.req_prod_pvt += 1;
        Ok(idx)
    }

    /// Publishes produced requests (`RING_PUSH_REQUESTS`), without the notify check.
    pub fn push_requests(&mut self, mem: &impl SharedRing) -> Result<(), RingError> {
        self.check_fault()?;
        // Release: the request entries written by `produce` become visible to the
        // back end before the new req_prod does (the xen_wmb of the macro).
        mem.store(RingIndex::ReqProd, self.req_prod_pvt.0, Ordering::Release);
        self.req_prod_pushed = self.req_prod_pvt;
        Ok(())
    }

    /// Publishes produced requests and says whether the back end must be notified
    /// (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`): true iff `req_event` lies in
    /// `(old, new]`, i.e. `new - req_event < new - old` in wrapping arithmetic.
    pub fn push_requests_and_check_notify(
        &mut self,
        mem: &impl SharedRing,
    ) -> Result<bool, RingError> {
        self.check_fault()?;
        let old = self.req_prod_pushed;
        let new = self.req_prod_pvt;
        // Release: the request entries become visible before the new req_prod
        // (the xen_wmb of the macro).
        mem.store(RingIndex::ReqProd, new.0, Ordering::Release);
        self.req_prod_pushed = new;
        // Full barrier: the req_prod store above is globally visible before the
        // req_event load below (the xen_mb), so either the back end sees our new
        // requests in its final check or we see the req_event it set before it.
        fence(Ordering::SeqCst);
        // Relaxed: ordered after the req_prod store by the fence; any value is
        // acceptable (it only decides whether to notify).
        let event = Wrapping(mem.load(RingIndex::ReqEvent, Ordering::Relaxed));
        Ok((new - event).0 < (new - old).0)
    }

    /// Loads and validates `rsp_prod`; returns the number of unconsumed responses
    /// (`RING_HAS_UNCONSUMED_RESPONSES`).
    pub fn unconsumed_responses(&mut self, mem: &impl SharedRing) -> Result<u32, RingError> {
        self.check_fault()?;
        // Acquire: response entries up to rsp_prod, written by the back end before
        // its (release/wmb) store of rsp_prod, are visible to our later slot reads
        // (the rmb Linux issues after reading rsp_prod).
        let rsp_prod = mem.load(RingIndex::RspProd, Ordering::Acquire);
        self.accept_rsp_prod(rsp_prod)?;
        Ok((self.rsp_prod_seen - self.rsp_cons).0)
    }

    /// Validates a freshly read `rsp_prod` against our indices and records it.
    fn accept_rsp_prod(&mut self, rsp_prod: RingIdx) -> Result<(), BackendFault> {
        let prod = Wrapping(rsp_prod);
        let size = self.size();
        let back = (self.rsp_prod_seen - prod).0;
        let fault = if back != 0 && back <= size {
            Some(BackendFault::ProducerRewound {
                seen: self.rsp_prod_seen.0,
                now: rsp_prod,
            })
        } else if (prod - self.rsp_cons).0 > size {
            Some(BackendFault::ResponseOverflow {
                rsp_prod,
                rsp_cons: self.rsp_cons.0,
            })
        } else if (prod - self.rsp_cons).0 > (self.req_prod_pushed - self.rsp_cons).0 {
            Some(BackendFault::UnrequestedResponses {
                rsp_prod,
                rsp_cons: self.rsp_cons.0,
                req_prod: self.req_prod_pushed.0,
            })
        } else {
            None
        };
        match fault {
            Some(f) => {
                self.fault = Some(f);
                Err(f)
            }
            None => {
                self.rsp_prod_seen = prod;
                Ok(())
            }
        }
    }

    /// Consumes the next response, if one is available: copies the entry out of
    /// the shared page once into a local buffer, advances `rsp_cons`, and decodes
    /// the local copy (`RING_COPY_RESPONSE`).
    pub fn next_response(&mut self, mem: &impl SharedRing) -> Result<Option<Rsp>, RingError> {
        self.check_fault()?;
        if self.rsp_cons == self.rsp_prod_seen && self.unconsumed_responses(mem)? == 0 {
            return Ok(None);
        }
        let mut wire = Rsp::ZERO_WIRE;
        // Plain (volatile) copy: ordered after the Acquire load of rsp_prod that
        // validated this index (in this call or an earlier one).
        mem.read_bytes(self.layout.entry_offset(self.rsp_cons.0), wire.as_mut());
        self.rsp_cons += 1;
        Ok(Some(Rsp::from_wire(&wire)))
    }

    /// Consumes every available response, passing each (decoded from its local
    /// copy) to `f`; returns how many were consumed. Stops at the first fault.
    pub fn consume_responses(
        &mut self,
        mem: &impl SharedRing,
        mut f: impl FnMut(Rsp),
    ) -> Result<u32, RingError> {
        let mut n = 0u32;
        while let Some(rsp) = self.next_response(mem)? {
            f(rsp);
            n = n.wrapping_add(1);
        }
        Ok(n)
    }

    /// Before sleeping (`RING_FINAL_CHECK_FOR_RESPONSES`): if no response is
    /// pending, asks for a notification on the next one (`rsp_event = rsp_cons + 1`)
    /// and checks again, closing the race with a back end that produced in between.
    /// Returns true if responses are pending (do not sleep).
    pub fn final_check_for_responses(&mut self, mem: &impl SharedRing) -> Result<bool, RingError> {
        if self.unconsumed_responses(mem)? > 0 {
            return Ok(true);
        }
        // Relaxed: ordered before the re-read of rsp_prod by the fence below.
        mem.store(
            RingIndex::RspEvent,
            (self.rsp_cons + Wrapping(1)).0,
            Ordering::Relaxed,
        );
        // Full barrier: the rsp_event store is globally visible before rsp_prod is
        // read again (the xen_mb), so either the back end's push sees the new
        // rsp_event and notifies us, or we see its new rsp_prod here.
        fence(Ordering::SeqCst);
        Ok(self.unconsumed_responses(mem)? > 0)
    }
}
