//! The small platform traits a front-end driver needs; the kernel implements them once for every device class.
//!
//! A driver never touches hardware or hypercalls itself. It needs:
//! - pages of guest memory with a gfn and byte access ([`DevicePage`], handed
//!   out by a [`PageProvider`]): ring pages and data buffers;
//! - the grant table ([`GrantAccess`], usually a handle on the kernel's one
//!   global `grant_table::GrantTable`);
//! - event channels ([`EventChannel`]: `EVTCHNOP_alloc_unbound`, `_send`,
//!   `_close` of `xen/include/public/event_channel.h`);
//! - xenstore ([`XenstoreAccess`], implemented here for `xenstore::Xenstore`).
//!
//! Host tests plug in the fakes of [`crate::sim`] (feature `test-utils`).

use alloc::vec::Vec;

use grant_table::{GrantTable, GrantTableMemory, Grantable};
use xen_abi::DomId;
use xen_abi::event_channel::EvtchnPort;
use xen_ring::SharedRing;
use xenstore::{TxId, XsError};

/// A page of guest memory a driver can grant to a back end.
///
/// `gfn()` ([`Grantable`]) is the frame the back end maps. The byte access is
/// [`SharedRing`]'s: `read_bytes`/`write_bytes` (volatile copies: the back end
/// may write the page concurrently) and, when the page holds a ring, the atomic
/// `load`/`store` of the `io/ring.h` header indices. `area_len()` must be at
/// least [`xen_abi::PAGE_SIZE`]; the runtime refuses smaller pages
/// ([`crate::SetupError::BadPage`]).
pub trait DevicePage: Grantable + SharedRing {}

impl<T: Grantable + SharedRing> DevicePage for T {}

/// Where a driver's pages come from and go back to.
pub trait PageProvider {
    /// The page handle.
    type Page: DevicePage;
    /// A page (contents unspecified), or `None` when memory is exhausted.
    fn alloc_page(&mut self) -> Option<Self::Page>;
    /// Returns a page no back end can access any more.
    fn free_page(&mut self, page: Self::Page);
}

/// Access to the grant table a driver's grants live in.
///
/// Implemented for an owned [`GrantTable`]; the kernel implements it on a
/// handle that locks its global table for the duration of `f`. `f` never
/// calls back into the driver.
pub trait GrantAccess {
    /// The table's memory.
    type Memory: GrantTableMemory;
    /// The page type the table's deferred list holds (the driver's page).
    type Page;
    /// Runs `f` on the table.
    fn with<R>(&mut self, f: impl FnOnce(&mut GrantTable<Self::Memory, Self::Page>) -> R) -> R;
}

impl<M: GrantTableMemory, P> GrantAccess for GrantTable<M, P> {
    type Memory = M;
    type Page = P;
    fn with<R>(&mut self, f: impl FnOnce(&mut GrantTable<M, P>) -> R) -> R {
        f(self)
    }
}

/// Event-channel operations (`xen/include/public/event_channel.h`).
pub trait EventChannel {
    /// `EVTCHNOP_alloc_unbound` with `dom = DOMID_SELF`, `remote_dom = remote`:
    /// a fresh port the back end binds to. The kernel also routes the port's
    /// upcalls to whatever polls the driver. Errors are Xen's negative errno.
    fn alloc_unbound(&mut self, remote: DomId) -> Result<EvtchnPort, i32>;
    /// `EVTCHNOP_send` on `port`.
    fn notify(&mut self, port: EvtchnPort);
    /// `EVTCHNOP_close` of `port` (after the back end has disconnected).
    fn close(&mut self, port: EvtchnPort);
    /// Whether the back end's end of `port` is bound (`EVTCHNOP_status`
    /// says interdomain). A back end that closed its end (unbound from its
    /// driver, e.g. Linux netback's dynamic unbind) leaves ours unbound,
    /// waiting for it: `Some(false)`. `None` when unknown (the default).
    fn peer_bound(&mut self, port: EvtchnPort) -> Option<bool> {
        let _ = port;
        None
    }
}

/// The xenstore operations a driver uses (`docs/misc/xenstore.txt`).
///
/// Paths without a leading `/` are relative to the domain's home
/// (`/local/domain/<domid>`), as xenstored resolves them.
pub trait XenstoreAccess {
    /// `READ`.
    fn read(&mut self, tx: TxId, path: &str) -> Result<Vec<u8>, XsError>;
    /// `WRITE`.
    fn write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), XsError>;
    /// Runs `body` in a transaction, up to `attempts` times while the commit
    /// (or a request inside) answers `EAGAIN`; aborts on any other error.
    /// For `xenstore::Xenstore` this is `Xenstore::transaction`.
    fn transaction<T>(
        &mut self,
        attempts: usize,
        body: impl FnMut(&mut Self, TxId) -> Result<T, XsError>,
    ) -> Result<T, XsError>;
}

impl<M: xenstore::RingMemory, P: xenstore::Platform> XenstoreAccess for xenstore::Xenstore<M, P> {
    fn read(&mut self, tx: TxId, path: &str) -> Result<Vec<u8>, XsError> {
        xenstore::Xenstore::read(self, tx, path)
    }
    fn write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), XsError> {
        xenstore::Xenstore::write(self, tx, path, value)
    }
    fn transaction<T>(
        &mut self,
        attempts: usize,
        body: impl FnMut(&mut Self, TxId) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        xenstore::Xenstore::transaction(self, attempts, body)
    }
}
