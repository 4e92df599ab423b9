//! The platform netfront needs: shared pages, the grant table, event channels.
//!
//! Sources: `xen/include/public/io/ring.h` (the shared ring header: `req_prod`,
//! `req_event`, `rsp_prod`, `rsp_event` as 32-bit indices at the start of the page),
//! `xen/include/public/grant_table.h` and `xen/include/public/event_channel.h`
//! (`EVTCHNOP_alloc_unbound`, `_send`, `_close`). The `netfront` crate's
//! [`netfront::platform`] lists what it needs; this module supplies it:
//!
//! - [`Frame`] (a frame from the kernel's frame allocator, identity mapped) is the
//!   driver's page: [`grant_table::Grantable`] (in `memory.rs`) and
//!   [`xen_ring::SharedRing`] (here): the ring indices are `AtomicU32`s at the
//!   `io/ring.h` header offsets, data moves with volatile copies (the back end may
//!   write the page at any time, so no Rust reference to its bytes ever exists);
//! - [`KernelPages`]: the [`PageProvider`] over the frame allocator;
//! - [`KernelGrants`]: the [`GrantAccess`] over the kernel's one global grant table
//!   ([`crate::xen::grants::with`]);
//! - [`KernelEvtchn`]: the [`EventChannel`]; every port it allocates gets a handler
//!   that only counts (the upcall wakes the main loop out of `hlt`, and the main loop
//!   polls the network after every wake-up).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use grant_table::GrantTable;
use netfront::{EventChannel, GrantAccess, PageProvider};
use xen_abi::DomId;
use xen_abi::event_channel::EvtchnPort;
use xen_ring::{RingIdx, RingIndex, SharedRing};

use crate::arch::hypercall::HypercallError;
use crate::mm::memory::Frame;
use crate::xen::events::{self, EventError, Port};
use crate::xen::grants::{self, GrantFrames};

/// Bytes in a frame.
const FRAME_BYTES: usize = xen_abi::PAGE_SIZE;

impl Frame {
    /// The address of byte `offset` of the frame, if `len` bytes from there fit in it.
    fn span(&self, offset: usize, len: usize) -> Option<usize> {
        let end = offset.checked_add(len)?;
        if end > FRAME_BYTES {
            return None;
        }
        usize::try_from(self.addr()).ok().map(|base| base + offset)
    }

    /// The ring index at `index`'s header offset as an atomic.
    fn ring_index(&self, index: RingIndex) -> Option<&AtomicU32> {
        let addr = self.span(index.offset(), 4)?;
        if !addr.is_multiple_of(4) {
            return None;
        }
        // SAFETY: `addr` is 4-aligned and inside this frame, which is identity mapped
        // and owned by this handle for as long as `&self` lives (the allocator hands a
        // frame to one owner only). The back end accesses the same u32 with atomic or
        // plain aligned 32-bit accesses, which an AtomicU32 tolerates.
        Some(unsafe { AtomicU32::from_ptr(addr as *mut u32) })
    }
}

impl SharedRing for Frame {
    fn area_len(&self) -> usize {
        FRAME_BYTES
    }

    fn load(&self, index: RingIndex, order: Ordering) -> RingIdx {
        // The caller's `order` (Relaxed or Acquire) is what the ring protocol needs:
        // Acquire on `rsp_prod` makes the responses before it visible (ring.h's rmb()).
        self.ring_index(index).map_or(0, |a| a.load(order))
    }

    fn store(&self, index: RingIndex, value: RingIdx, order: Ordering) {
        if let Some(a) = self.ring_index(index) {
            // The caller's `order` (Relaxed or Release): Release on `req_prod` publishes
            // the requests written before it (ring.h's wmb()).
            a.store(value, order);
        }
    }

    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        let Some(addr) = self.span(offset, out.len()) else {
            // A caller bug (the ring checks its offsets); the trait allows ignoring it.
            out.fill(0);
            return;
        };
        let mut i = 0;
        // Bytes until the source is 8-aligned, then words, then the tail: every shared
        // byte is read exactly once.
        while i < out.len() && !(addr + i).is_multiple_of(8) {
            // SAFETY: `addr + i` is inside the frame (checked by `span`). Volatile:
            // the back end may write the page concurrently; we read each byte once.
            let b = unsafe { core::ptr::read_volatile((addr + i) as *const u8) };
            if let Some(slot) = out.get_mut(i) {
                *slot = b;
            }
            i += 1;
        }
        while i + 8 <= out.len() {
            // SAFETY: `addr + i` is 8-aligned and the 8 bytes from it are inside the
            // frame (checked by `span`). Volatile: as above.
            let w = unsafe { core::ptr::read_volatile((addr + i) as *const u64) };
            if let Some(dst) = out.get_mut(i..i + 8) {
                dst.copy_from_slice(&w.to_le_bytes());
            }
            i += 8;
        }
        while i < out.len() {
            // SAFETY: inside the frame (checked by `span`). Volatile: as above.
            let b = unsafe { core::ptr::read_volatile((addr + i) as *const u8) };
            if let Some(slot) = out.get_mut(i) {
                *slot = b;
            }
            i += 1;
        }
    }

    fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        let Some(addr) = self.span(offset, bytes.len()) else {
            return;
        };
        let mut i = 0;
        while i < bytes.len() && !(addr + i).is_multiple_of(8) {
            if let Some(&b) = bytes.get(i) {
                // SAFETY: `addr + i` is inside the frame (checked by `span`), which this
                // handle owns. Volatile: the back end reads the page from another domain.
                unsafe { core::ptr::write_volatile((addr + i) as *mut u8, b) };
            }
            i += 1;
        }
        while i + 8 <= bytes.len() {
            let mut w = [0u8; 8];
            if let Some(src) = bytes.get(i..i + 8) {
                w.copy_from_slice(src);
            }
            // SAFETY: `addr + i` is 8-aligned and the 8 bytes from it are inside the
            // frame (checked by `span`). Volatile: as above.
            unsafe { core::ptr::write_volatile((addr + i) as *mut u64, u64::from_le_bytes(w)) };
            i += 8;
        }
        while i < bytes.len() {
            if let Some(&b) = bytes.get(i) {
                // SAFETY: inside the frame (checked by `span`). Volatile: as above.
                unsafe { core::ptr::write_volatile((addr + i) as *mut u8, b) };
            }
            i += 1;
        }
    }
}

/// Pages for netfront from the kernel's frame allocator (counted for the report).
#[derive(Debug, Default)]
pub struct KernelPages {
    /// Frames handed out and not given back.
    pub held: usize,
}

impl PageProvider for KernelPages {
    type Page = Frame;

    fn alloc_page(&mut self) -> Option<Frame> {
        let f = Frame::alloc()?;
        self.held = self.held.saturating_add(1);
        Some(f)
    }

    fn free_page(&mut self, page: Frame) {
        self.held = self.held.saturating_sub(1);
        drop(page);
    }
}

/// Netfront's handle on the kernel's global grant table.
///
/// Invariant: only constructed by [`KernelGrants::new`], which checks that the grant
/// table is set up; the table is never torn down afterwards (a resume re-maps it in
/// place), so [`GrantAccess::with`] always finds it.
#[derive(Debug)]
pub struct KernelGrants(());

impl KernelGrants {
    /// The handle, if the grant table is set up.
    pub fn new() -> Option<KernelGrants> {
        grants::with(|_| ()).map(|()| KernelGrants(()))
    }
}

impl GrantAccess for KernelGrants {
    type Memory = GrantFrames;
    type Page = Frame;

    fn with<R>(&mut self, f: impl FnOnce(&mut GrantTable<GrantFrames, Frame>) -> R) -> R {
        match grants::with(f) {
            Some(r) => r,
            // Unreachable by the type's invariant (checked in `new`, never undone).
            None => panic!("net: the grant table vanished after it was set up"),
        }
    }
}

/// Counters of one vif's event channel, shared with its port handlers.
#[derive(Debug, Default)]
pub struct EvtchnCounters {
    /// Notifications from the back end (handler runs).
    pub events: AtomicU64,
    /// `EVTCHNOP_send`/`_close` failures.
    pub failures: AtomicU64,
}

/// Event channels for one vif: owns the [`Port`] handles netfront's numbers stand for.
pub struct KernelEvtchn {
    /// Ports allocated and not closed (stale ones are dropped at the next allocation).
    ports: Vec<Port>,
    /// Shared counters.
    counters: Arc<EvtchnCounters>,
}

impl KernelEvtchn {
    /// No ports yet; the handlers of future ports count into `counters`.
    pub fn new(counters: Arc<EvtchnCounters>) -> KernelEvtchn {
        KernelEvtchn {
            ports: Vec::new(),
            counters,
        }
    }

    /// Counts a failed operation (logged at debug level; the count is reported).
    fn failed(&self, what: &str, e: EventError) {
        // Relaxed: a statistic.
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        log::debug!("net: event channel {what}: {e}");
    }

    /// The live port numbered `port`, if we hold it.
    fn find(&self, port: EvtchnPort) -> Option<&Port> {
        self.ports
            .iter()
            .find(|p| p.number() == port && !p.is_stale())
    }
}

/// Xen's negative errno for an event-channel failure (netfront's convention).
fn errno_of(e: EventError) -> i32 {
    match e {
        EventError::Hypercall(HypercallError::Errno(n)) => {
            i32::try_from(n).map_or(-xen_abi::errno::EIO, |n| -n)
        }
        _ => -xen_abi::errno::EIO,
    }
}

impl EventChannel for KernelEvtchn {
    fn alloc_unbound(&mut self, remote: DomId) -> Result<EvtchnPort, i32> {
        // Ports from before a resume in a new domain died with it: forget them (their
        // numbers may be handed out again now).
        let (stale, live): (Vec<Port>, Vec<Port>) = self.ports.drain(..).partition(Port::is_stale);
        self.ports = live;
        for p in stale {
            // Closing a stale handle only forgets it.
            let _ = p.close();
        }
        let port = events::alloc_unbound(remote).map_err(errno_of)?;
        let counters = self.counters.clone();
        let handler = Box::new(move || {
            // Relaxed: a statistic; the wake-up itself is the upcall.
            counters.events.fetch_add(1, Ordering::Relaxed);
        });
        if let Err(e) = port.set_handler(handler) {
            let _ = port.close();
            return Err(errno_of(e));
        }
        let number = port.number();
        self.ports.push(port);
        Ok(number)
    }

    fn notify(&mut self, port: EvtchnPort) {
        let result = match self.find(port) {
            Some(p) => p.send(),
            None => Err(EventError::Stale),
        };
        if let Err(e) = result {
            self.failed("send", e);
        }
    }

    fn close(&mut self, port: EvtchnPort) {
        if let Some(i) = self.ports.iter().position(|p| p.number() == port) {
            let p = self.ports.swap_remove(i);
            if let Err(e) = p.close() {
                self.failed("close", e);
            }
        }
    }
}
