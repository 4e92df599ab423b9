//! The platform every front-end driver needs, implemented once: pages, the grant table, event channels.
//!
//! `xen_frontend::platform` lists what a driver needs; this module supplies it
//! for every device class (netfront today, blkfront next):
//!
//! - the page is [`Frame`] (a frame from the kernel's frame allocator, identity
//!   mapped): [`grant_table::Grantable`] (in `mm/memory.rs`) and
//!   [`xen_ring::SharedRing`] (in `mm/page.rs`, over the audited `MappedPage`);
//! - [`KernelPages`]: the [`PageProvider`] over the frame allocator;
//! - [`KernelGrants`]: the [`GrantAccess`] over the kernel's one global grant table
//!   ([`crate::xen::grants::with`]);
//! - [`KernelEvtchn`]: the [`EventChannel`] (`EVTCHNOP_alloc_unbound`, `_send`,
//!   `_close` of `xen/include/public/event_channel.h`); every port it allocates gets
//!   a handler that only counts (the upcall wakes the main loop out of `hlt`, and the
//!   main loop polls the devices after every wake-up).
//!
//! The xenstore side is `xenstore::Xenstore` itself (behind [`crate::xen::store`]),
//! and the back-end state watch is [`super::watch::StateWatch`].

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use grant_table::GrantTable;
use xen_abi::DomId;
use xen_abi::event_channel::EvtchnPort;
use xen_frontend::{EventChannel, GrantAccess, PageProvider};

use crate::arch::hypercall::HypercallError;
use crate::mm::memory::Frame;
use crate::xen::events::{self, EventError, Port};
use crate::xen::grants::{self, GrantFrames};

/// Pages for a front-end driver from the kernel's frame allocator (counted for the report).
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

/// A driver's handle on the kernel's global grant table.
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
            None => panic!("xenbus: the grant table vanished after it was set up"),
        }
    }
}

/// Counters of one device's event channel, shared with its port handlers.
#[derive(Debug, Default)]
pub struct EvtchnCounters {
    /// Notifications from the back end (handler runs).
    pub events: AtomicU64,
    /// `EVTCHNOP_send`/`_close` failures.
    pub failures: AtomicU64,
}

/// Event channels for one device: owns the [`Port`] handles the driver's numbers stand for.
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
        log::debug!("xenbus: event channel {what}: {e}");
    }

    /// The live port numbered `port`, if we hold it.
    fn find(&self, port: EvtchnPort) -> Option<&Port> {
        self.ports
            .iter()
            .find(|p| p.number() == port && !p.is_stale())
    }
}

/// Xen's negative errno for an event-channel failure (the `EventChannel` convention).
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

    fn peer_bound(&mut self, port: EvtchnPort) -> Option<bool> {
        match self.find(port)?.peer_bound() {
            Ok(bound) => Some(bound),
            Err(e) => {
                self.failed("status", e);
                None
            }
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
