//! Xenstore glue: the ring page and event channel under the `xenstore` crate's client, and watch dispatch.
//!
//! Sources: `xen/include/public/io/xs_wire.h` (`struct xenstore_domain_interface`),
//! `docs/misc/xenstore-ring.txt`, `xen/include/public/hvm/params.h`
//! (`HVM_PARAM_STORE_PFN`/`HVM_PARAM_STORE_EVTCHN`). The protocol (framing, request
//! matching, per-watch queues, transactions, resume) is the `xenstore` crate's
//! [`Xenstore`]; this module supplies:
//!
//! - [`StorePage`] (the audited [`MappedPage`]), its [`RingMemory`]: volatile byte
//!   copies in and out of the page, the indices as `AtomicU32` with Acquire loads and
//!   Release stores;
//! - [`StorePlatform`], its [`Platform`]: `kick` = `EVTCHNOP_send` on the store port,
//!   `wait` = [`wait::for_port_until`] the store port, at most 100 ms (other ports' handlers run meanwhile);
//! - one shared client behind a lock ([`with`]), which fails with
//!   [`StoreError::Busy`] instead of deadlocking when code that runs while a request is
//!   waiting (a port handler, a timer callback) tries to use xenstore;
//! - watch dispatch ([`watch`], [`service_watches`]): each watch has a handler; the
//!   main loop takes at most [`WATCH_BATCH`] events per watch per pass, round robin
//!   ([`xenbus::RoundRobin`], host-tested there), so
//!   a busy watch cannot starve the others (each already has its own queue in the
//!   client, so a slow consumer never delays replies either).
//!
//! The ring page sits just below 4 GiB, inside the boot identity map.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use spin::Mutex;
use xen_abi::DomId;
use xen_abi::hvm::{HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN};
use xen_abi::xenstore::{RSP_CONS_OFFSET, RSP_PROD_OFFSET};
use xenstore::{Platform, RingMemory, TxId, WatchId, Xenstore, XsError};

use crate::arch::hypercall::{self, HypercallError};
use crate::mm::page::MappedPage;
use crate::xen::events::{self, EventError, Port};
use crate::xen::time;
use crate::xen::wait;

/// Events taken from one watch per [`service_watches`] pass.
pub const WATCH_BATCH: usize = 8;

/// The xenstore ring page: the audited shared-page view, whose `RingMemory` impl
/// lives in `mm::page`.
pub type StorePage = MappedPage;

/// The event channel side of the xenstore connection.
#[derive(Debug)]
pub struct StorePlatform {
    /// The store port (re-read from `HVM_PARAM_STORE_EVTCHN` after a resume).
    port: Port,
}

impl Platform for StorePlatform {
    fn kick(&mut self) {
        // A failed notify (stale port during resume) is retried by the next kick.
        if let Err(e) = self.port.send() {
            log::debug!("xenstore kick: {e}");
        }
    }

    /// Waits for the store event, at most [`STORE_REPOLL_NS`]: the caller polls the
    /// ring again either way. After a timeout xenstored is kicked once more, so that
    /// neither a lost reply event nor a lost kick can leave a request waiting for good
    /// (why: docs/CORE.md §2, "Waiting for one port").
    fn wait(&mut self) {
        let deadline = time::now_ns().saturating_add(STORE_REPOLL_NS);
        if !wait::for_port_until(&self.port, deadline) {
            self.kick();
        }
    }
}

/// Longest sleep in [`StorePlatform::wait`] before the ring is polled again (100 ms).
const STORE_REPOLL_NS: u64 = 100_000_000;

/// The kernel's xenstore client type.
pub type Xs = Xenstore<StorePage, StorePlatform>;

/// Why a xenstore operation could not be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// [`init`] has not run (or failed).
    NotReady,
    /// The client is in use further up the stack (a port handler or timer callback
    /// ran while a request was waiting).
    Busy,
    /// The request failed.
    Xs(XsError),
    /// Reading an HVM parameter failed.
    Param(HypercallError),
    /// The ring pfn is 0 or outside the identity map.
    BadPfn(u64),
    /// The event channel could not be used.
    Port(EventError),
    /// Our `domid` node is missing or not a domid.
    BadDomid,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotReady => f.write_str("xenstore not set up"),
            StoreError::Busy => f.write_str("xenstore client busy (re-entered)"),
            StoreError::Xs(e) => write!(f, "{e}"),
            StoreError::Param(e) => write!(f, "HVM_PARAM_STORE_*: {e}"),
            StoreError::BadPfn(p) => write!(f, "store pfn {p:#x} is not mapped"),
            StoreError::Port(e) => write!(f, "store event channel: {e}"),
            StoreError::BadDomid => f.write_str("the domid node is missing or invalid"),
        }
    }
}

impl From<XsError> for StoreError {
    fn from(e: XsError) -> Self {
        StoreError::Xs(e)
    }
}

/// The one client, once [`init`] ran.
static STORE: Mutex<Option<Xs>> = Mutex::new(None);

/// The ring page from `HVM_PARAM_STORE_PFN`, checked.
fn ring_page() -> Result<StorePage, StoreError> {
    let pfn = hypercall::hvm_get_param(HVM_PARAM_STORE_PFN).map_err(StoreError::Param)?;
    // SAFETY: the store pfn is the xenstore ring page Xen set up for this domain (just
    // below 4 GiB, outside the RAM the frame allocator hands out); it stays mapped for
    // the domain's life and is reached only through this `MappedPage`.
    unsafe { MappedPage::from_pfn(pfn) }.ok_or(StoreError::BadPfn(pfn))
}

/// The store port from `HVM_PARAM_STORE_EVTCHN`, with the service handler installed.
fn store_port() -> Result<Port, StoreError> {
    let raw = hypercall::hvm_get_param(HVM_PARAM_STORE_EVTCHN).map_err(StoreError::Param)?;
    let port = events::adopt(raw).map_err(StoreError::Port)?;
    port.set_handler(Box::new(service))
        .map_err(StoreError::Port)?;
    Ok(port)
}

/// Connects to xenstored and reads our domid. Call after [`events::init`].
pub fn init() -> Result<DomId, StoreError> {
    let page = ring_page()?;
    let port = store_port()?;
    *STORE.lock() = Some(Xenstore::new(page, StorePlatform { port }));
    read_domid()
}

/// Reads our `domid` node (relative to our home, `/local/domain/<domid>`).
fn read_domid() -> Result<DomId, StoreError> {
    let value = read("domid")?;
    xenbus::parse_backend_id(&value).map_err(|_| StoreError::BadDomid)
}

/// Runs `f` on the client. [`StoreError::Busy`] if it is already in use further up
/// the stack, [`StoreError::NotReady`] before [`init`].
pub fn with<R>(f: impl FnOnce(&mut Xs) -> R) -> Result<R, StoreError> {
    let mut guard = STORE.try_lock().ok_or(StoreError::Busy)?;
    let xs = guard.as_mut().ok_or(StoreError::NotReady)?;
    Ok(f(xs))
}

/// `READ` (path relative to our home or absolute).
pub fn read(path: &str) -> Result<Vec<u8>, StoreError> {
    with(|xs| xs.read(TxId::NONE, path))?.map_err(StoreError::from)
}

/// `WRITE`.
pub fn write(path: &str, value: &[u8]) -> Result<(), StoreError> {
    with(|xs| xs.write(TxId::NONE, path, value))?.map_err(StoreError::from)
}

/// `DIRECTORY`.
pub fn directory(path: &str) -> Result<Vec<String>, StoreError> {
    with(|xs| xs.directory(TxId::NONE, path))?.map_err(StoreError::from)
}

/// The store port's handler: moves everything xenstored produced into the client
/// (replies, watch events), and queued requests into the ring.
fn service() {
    let result = with(|xs| {
        // `poll` moves a bounded amount; repeat while it makes progress.
        for _ in 0..64 {
            match xs.poll() {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    match result {
        Ok(Ok(())) | Err(StoreError::Busy) => {}
        Ok(Err(e)) => crate::println!("xenrs xenstore error: {e}"),
        Err(e) => crate::println!("xenrs xenstore error: {e}"),
    }
}

/// Before a suspend: waits until no request is in flight.
pub fn quiesce() -> Result<(), StoreError> {
    with(Xs::quiesce)?.map_err(StoreError::from)
}

/// After a resume in a NEW domain: adopts the new store port, discards stale responses
/// (`rsp_cons = rsp_prod`, as Linux's `xb_init_comms` does), re-registers every watch
/// and waits for the acks (the client's `resume`), then reads the new domid.
pub fn resume_new_domain() -> Result<DomId, StoreError> {
    let new_page = ring_page()?;
    let port = store_port()?;
    with(|xs| {
        let old = core::mem::replace(&mut xs.platform_mut().port, port);
        // The old port died with the old domain (the handle is stale: just forgotten).
        let _ = old.close();
        let page = xs.memory_mut();
        *page = new_page;
        let prod = page.load_acquire(RSP_PROD_OFFSET);
        if page.load_acquire(RSP_CONS_OFFSET) != prod {
            page.store_release(RSP_CONS_OFFSET, prod);
        }
        xs.resume()
    })?
    .map_err(StoreError::from)?;
    read_domid()
}

/// A watch handler: called by the main loop with each event's path.
pub type WatchHandler = Box<dyn FnMut(&str) + Send>;

/// One registered watch.
struct WatchSlot {
    /// The client's watch.
    id: WatchId,
    /// `None` while the handler runs.
    handler: Option<WatchHandler>,
}

/// Watches with handlers (main loop only).
static WATCHES: Mutex<Vec<WatchSlot>> = Mutex::new(Vec::new());
/// The dispatch order ([`xenbus::RoundRobin`]: where the next pass starts).
static DISPATCH: Mutex<xenbus::RoundRobin> = Mutex::new(xenbus::RoundRobin::new());

/// Watches `path` (relative paths follow the domain across resumes) with an event
/// queue of `capacity`; `handler` runs in the main loop for each event.
pub fn watch(path: &str, capacity: usize, handler: WatchHandler) -> Result<WatchId, StoreError> {
    let id = with(|xs| xs.watch(path, capacity))??;
    WATCHES.lock().push(WatchSlot {
        id,
        handler: Some(handler),
    });
    Ok(id)
}

/// Removes a watch and its handler.
pub fn unwatch(id: WatchId) -> Result<(), StoreError> {
    WATCHES.lock().retain(|w| w.id != id);
    with(|xs| xs.unwatch(id))?.map_err(StoreError::from)
}

/// Runs watch handlers for queued events: at most [`WATCH_BATCH`] per watch, starting
/// with the watch after the one the previous pass started with. Returns the number of
/// events handled (more may be queued when it equals the batch limit somewhere).
pub fn service_watches() -> usize {
    let ids: Vec<WatchId> = WATCHES.lock().iter().map(|w| w.id).collect();
    // Copied out: handlers run without the lock (they may add or remove watches).
    let mut order = *DISPATCH.lock();
    let handled = order.pass(ids.len(), WATCH_BATCH, |i| {
        let Some(&id) = ids.get(i) else {
            return false;
        };
        let Ok(Some(path)) = with(|xs| xs.client_mut().next_event(id)) else {
            return false;
        };
        let taken = WATCHES
            .lock()
            .iter_mut()
            .find(|w| w.id == id)
            .and_then(|w| w.handler.take());
        let Some(mut handler) = taken else {
            return false;
        };
        handler(&path);
        if let Some(slot) = WATCHES.lock().iter_mut().find(|w| w.id == id) {
            slot.handler.get_or_insert(handler);
        }
        true
    });
    *DISPATCH.lock() = order;
    handled
}

/// Whether any watch has queued events (the main loop must not idle then).
pub fn events_queued() -> bool {
    let ids: Vec<WatchId> = WATCHES.lock().iter().map(|w| w.id).collect();
    with(|xs| {
        ids.iter()
            .any(|&id| xs.watch_stats(id).is_some_and(|s| s.queued > 0))
    })
    .unwrap_or(false)
}
