//! Granted pages as owning values, one ring half, and the platform resources a driver borrows from its device.
//!
//! A page is [`Held`] in one of three states; it is handed back to the
//! [`PageProvider`] only once its grant ended (or the grant table keeps it on
//! its deferred list while a back end still maps it), so a page a back end can
//! still see is never reused (the XSA-396 class cannot be written).

use alloc::vec::Vec;

use grant_table::{Access, Ended, Grant};
use xen_abi::DomId;
use xen_abi::PAGE_SIZE;
use xen_abi::event_channel::EvtchnPort;
use xen_ring::{FrontRing, RingEntry, RingLayout, SharedRing};

use crate::error::SetupError;
use crate::platform::{EventChannel, GrantAccess, PageProvider};

/// What a buffer slot holds.
#[derive(Debug)]
pub enum Held<Pg> {
    /// No page (never allocated, or its end of access was deferred and the
    /// grant table now owns it).
    Empty,
    /// A page of ours that no back end can access.
    Spare(Pg),
    /// A granted page. After a resume in a new domain the grant is stale
    /// until granted again.
    Granted(Grant<Pg>),
}

impl<Pg> Held<Pg> {
    /// Takes the contents, leaving [`Held::Empty`].
    pub fn take(&mut self) -> Held<Pg> {
        core::mem::replace(self, Held::Empty)
    }

    /// The grant, if granted.
    pub fn grant(&self) -> Option<&Grant<Pg>> {
        match self {
            Held::Granted(g) => Some(g),
            Held::Empty | Held::Spare(_) => None,
        }
    }
}

/// One shared ring of a connection: the granted page and our private indices.
#[derive(Debug)]
pub struct RingHalf<Req, Rsp, Pg> {
    /// The ring page, granted read-write to the back end.
    pub page: Grant<Pg>,
    /// The front end's half of the ring.
    pub front: FrontRing<Req, Rsp>,
}

/// A shared ring over `2^order` granted pages (`ring-page-order`, blkif's
/// multi-page rings): the back end maps the pages in order as one area, so an
/// entry may cross a page boundary.
#[derive(Debug)]
pub struct MultiPageRing<Req, Rsp, Pg> {
    /// The pages, in the order their references are published.
    pub pages: Vec<Grant<Pg>>,
    /// The front end's half of the ring.
    pub front: FrontRing<Req, Rsp>,
}

impl<Req, Rsp, Pg: SharedRing> MultiPageRing<Req, Rsp, Pg> {
    /// The ring's shared area, for [`FrontRing`]'s calls.
    pub fn area(&self) -> RingArea<'_, Pg> {
        RingArea(&self.pages)
    }
}

/// Several granted pages seen as one shared ring area (page `i` holds bytes
/// `i * PAGE_SIZE ..`): byte copies are split at page boundaries; the header
/// indices live in page 0.
#[derive(Debug)]
pub struct RingArea<'a, Pg>(pub &'a [Grant<Pg>]);

impl<Pg: SharedRing> RingArea<'_, Pg> {
    /// Calls `f(page, offset in page, range in the caller's buffer)` for each
    /// page piece of `offset..offset + len`; nothing past the area.
    fn pieces(
        &self,
        offset: usize,
        len: usize,
        mut f: impl FnMut(&Pg, usize, core::ops::Range<usize>),
    ) {
        let mut done = 0usize;
        while done < len {
            let at = offset.saturating_add(done);
            let (page, within) = (at / PAGE_SIZE, at % PAGE_SIZE);
            let Some(g) = self.0.get(page) else {
                return;
            };
            let n = (PAGE_SIZE - within).min(len - done);
            f(g.buffer(), within, done..done + n);
            done += n;
        }
    }
}

impl<Pg: SharedRing> SharedRing for RingArea<'_, Pg> {
    fn area_len(&self) -> usize {
        self.0.len().saturating_mul(PAGE_SIZE)
    }

    fn load(&self, index: xen_ring::RingIndex, order: core::sync::atomic::Ordering) -> u32 {
        self.0.first().map_or(0, |g| g.buffer().load(index, order))
    }

    fn store(&self, index: xen_ring::RingIndex, value: u32, order: core::sync::atomic::Ordering) {
        if let Some(g) = self.0.first() {
            g.buffer().store(index, value, order);
        }
    }

    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        let len = out.len();
        self.pieces(offset, len, |page, within, range| {
            if let Some(dst) = out.get_mut(range) {
                page.read_bytes(within, dst);
            }
        });
    }

    fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        self.pieces(offset, bytes.len(), |page, within, range| {
            if let Some(src) = bytes.get(range) {
                page.write_bytes(within, src);
            }
        });
    }
}

/// The event channel to the back end and its notification counter.
#[derive(Debug)]
pub struct Kick<E> {
    evtchn: E,
    port: Option<EvtchnPort>,
    notifies: u64,
}

impl<E: EventChannel> Kick<E> {
    /// `EVTCHNOP_send` to the back end, if a channel exists.
    pub fn notify(&mut self) {
        if let Some(port) = self.port {
            self.evtchn.notify(port);
            self.notifies += 1;
        }
    }

    /// The port, while a channel exists.
    pub fn port(&self) -> Option<EvtchnPort> {
        self.port
    }

    /// Whether the back end's end of the channel is bound (None: no channel,
    /// or the platform cannot tell); see [`EventChannel::peer_bound`].
    pub fn peer_bound(&mut self) -> Option<bool> {
        let port = self.port?;
        self.evtchn.peer_bound(port)
    }

    /// Notifications sent so far.
    pub fn notifies(&self) -> u64 {
        self.notifies
    }

    /// A channel to `domid` if there is none yet.
    pub(crate) fn ensure(&mut self, domid: DomId) -> Result<EvtchnPort, SetupError> {
        if let Some(p) = self.port {
            return Ok(p);
        }
        let port = self
            .evtchn
            .alloc_unbound(domid)
            .map_err(SetupError::EventChannel)?;
        self.port = Some(port);
        Ok(port)
    }

    /// `EVTCHNOP_close` (the back end has let go).
    pub(crate) fn close(&mut self) {
        if let Some(port) = self.port.take() {
            self.evtchn.close(port);
        }
    }

    /// Forgets a channel of the old domain (it died with it).
    pub(crate) fn forget(&mut self) {
        self.port = None;
    }
}

/// The platform resources of one device: pages, grants, the event channel.
///
/// Owned by the [`crate::Device`] and lent to its driver; every grant a driver
/// makes goes through here so that the rules hold in one place.
#[derive(Debug)]
pub struct Resources<P, G, E> {
    pages: P,
    grants: G,
    kick: Kick<E>,
    /// References this device left on the grant table's deferred list (pruned
    /// by [`deferred_pages`](Self::deferred_pages)).
    deferred: Vec<grant_table::GrantRef>,
}

impl<P, G, E> Resources<P, G, E>
where
    P: PageProvider,
    G: GrantAccess<Page = P::Page>,
    E: EventChannel,
{
    /// Resources over these platform handles (no channel yet).
    pub fn new(pages: P, grants: G, evtchn: E) -> Self {
        Self {
            pages,
            grants,
            kick: Kick {
                evtchn,
                port: None,
                notifies: 0,
            },
            deferred: Vec::new(),
        }
    }

    /// Pages this device left on the grant table's deferred list that are
    /// still there (the back end still maps them).
    pub fn deferred_pages(&mut self) -> usize {
        let mut list = core::mem::take(&mut self.deferred);
        self.grants
            .with(|t| list.retain(|&gref| t.is_deferred(gref)));
        self.deferred = list;
        self.deferred.len()
    }

    /// Forgets the deferred references (a resume in a new domain: the grant
    /// table gave every deferred page back).
    pub(crate) fn forget_deferred(&mut self) {
        self.deferred.clear();
    }

    /// The page provider.
    pub fn pages(&self) -> &P {
        &self.pages
    }

    /// The grant-table access.
    pub fn grants_mut(&mut self) -> &mut G {
        &mut self.grants
    }

    /// The event channel.
    pub fn kick(&self) -> &Kick<E> {
        &self.kick
    }

    /// The event channel, to notify from a data path that borrows other
    /// parts of the driver at the same time.
    pub fn kick_mut(&mut self) -> &mut Kick<E> {
        &mut self.kick
    }

    /// Notifies the back end.
    pub fn notify(&mut self) {
        self.kick.notify();
    }

    /// Takes a page from the provider and checks it is a whole page.
    pub fn alloc_page(&mut self) -> Result<P::Page, SetupError> {
        let page = self.pages.alloc_page().ok_or(SetupError::OutOfPages)?;
        if page.area_len() < PAGE_SIZE {
            self.pages.free_page(page);
            return Err(SetupError::BadPage);
        }
        Ok(page)
    }

    /// Returns a page to the provider.
    pub fn free_page(&mut self, page: P::Page) {
        self.pages.free_page(page);
    }

    /// Whether `g` is a current (not stale) grant to `domid`.
    pub fn is_current(&mut self, g: &Grant<P::Page>, domid: DomId) -> bool {
        g.domid() == domid && !self.grants.with(|t| t.is_stale(g))
    }

    /// Makes `held` a current grant of its page to `domid`: a stale grant
    /// (from before a resume) or a spare page is granted anew; an empty slot
    /// gets a fresh page. A current grant to `domid` is kept as it is.
    pub fn ensure_granted(
        &mut self,
        held: &mut Held<P::Page>,
        domid: DomId,
        access: Access,
    ) -> Result<(), SetupError> {
        let page = match held.take() {
            Held::Granted(g) => {
                if self.is_current(&g, domid) {
                    *held = Held::Granted(g);
                    return Ok(());
                }
                // Stale: returned at once. A current grant to another domain
                // cannot survive a release, but if it did: defer, use a new page.
                match self.grants.with(|t| t.end_access_or_defer(g)) {
                    Ok(Ended::Released(p)) => p,
                    Ok(Ended::Deferred(gref)) => {
                        self.deferred.push(gref);
                        self.alloc_page()?
                    }
                    Err((g, _)) => {
                        // A grant of another table: never ours to end; leak it.
                        drop(g);
                        self.alloc_page()?
                    }
                }
            }
            Held::Spare(p) => p,
            Held::Empty => self.alloc_page()?,
        };
        match self.grants.with(|t| t.grant_access(domid, page, access)) {
            Ok(g) => {
                *held = Held::Granted(g);
                Ok(())
            }
            Err((p, e)) => {
                *held = Held::Spare(p);
                Err(SetupError::Grant(e))
            }
        }
    }

    /// Ends a grant after the back end let go (or after a resume, when it is
    /// stale): the page comes back as a spare, or the table keeps it (deferred).
    pub fn end_grant(&mut self, g: Grant<P::Page>) -> Held<P::Page> {
        match self.grants.with(|t| t.end_access_or_defer(g)) {
            Ok(Ended::Released(p)) => Held::Spare(p),
            Ok(Ended::Deferred(gref)) => {
                self.deferred.push(gref);
                Held::Empty
            }
            Err((g, _)) => {
                // Issued by another table: leaking is the safe failure.
                drop(g);
                Held::Empty
            }
        }
    }

    /// Ends `held`'s grant, if any, keeping the page as a spare.
    pub fn release_held(&mut self, held: &mut Held<P::Page>) {
        *held = match held.take() {
            Held::Granted(g) => self.end_grant(g),
            other => other,
        };
    }

    /// Ends `held`'s grant, if any, and returns its page to the provider.
    pub fn free_held(&mut self, held: &mut Held<P::Page>) {
        self.release_held(held);
        if let Held::Spare(p) = held.take() {
            self.pages.free_page(p);
        }
    }

    /// Allocates, initialises and grants (read-write, to `domid`) one ring
    /// page: initialised before it is granted.
    pub fn new_ring<Req: RingEntry, Rsp: RingEntry>(
        &mut self,
        layout: Result<RingLayout, xen_ring::LayoutError>,
        domid: DomId,
    ) -> Result<RingHalf<Req, Rsp, P::Page>, SetupError> {
        let layout = layout.map_err(SetupError::Layout)?;
        let page = self.alloc_page()?;
        let front = match FrontRing::init(layout, &page) {
            Ok(f) => f,
            Err(e) => {
                self.pages.free_page(page);
                return Err(SetupError::Layout(e));
            }
        };
        match self
            .grants
            .with(|t| t.grant_access(domid, page, Access::ReadWrite))
        {
            Ok(page) => Ok(RingHalf { page, front }),
            Err((page, e)) => {
                self.pages.free_page(page);
                Err(SetupError::Grant(e))
            }
        }
    }

    /// Allocates `2^order` pages, initialises one ring over them (`layout` for
    /// that area) and grants them read-write to `domid`, in order.
    pub fn new_multi_page_ring<Req: RingEntry, Rsp: RingEntry>(
        &mut self,
        order: u8,
        layout: Result<RingLayout, xen_ring::LayoutError>,
        domid: DomId,
    ) -> Result<MultiPageRing<Req, Rsp, P::Page>, SetupError> {
        let layout = layout.map_err(SetupError::Layout)?;
        let count = 1usize
            .checked_shl(u32::from(order))
            .ok_or(SetupError::BadPage)?;
        let mut spare: Vec<P::Page> = Vec::with_capacity(count);
        for _ in 0..count {
            match self.alloc_page() {
                Ok(p) => spare.push(p),
                Err(e) => {
                    for p in spare {
                        self.pages.free_page(p);
                    }
                    return Err(e);
                }
            }
        }
        let mut granted: Vec<Grant<P::Page>> = Vec::with_capacity(count);
        let mut result = Ok(());
        for page in spare {
            if result.is_err() {
                self.pages.free_page(page);
                continue;
            }
            match self
                .grants
                .with(|t| t.grant_access(domid, page, Access::ReadWrite))
            {
                Ok(g) => granted.push(g),
                Err((page, e)) => {
                    self.pages.free_page(page);
                    result = Err(SetupError::Grant(e));
                }
            }
        }
        // Initialised before the references are published (the back end
        // learns them only from xenstore, after this).
        let front = match result
            .and_then(|()| FrontRing::init(layout, &RingArea(&granted)).map_err(SetupError::Layout))
        {
            Ok(f) => f,
            Err(e) => {
                for g in granted {
                    if let Held::Spare(p) = self.end_grant(g) {
                        self.pages.free_page(p);
                    }
                }
                return Err(e);
            }
        };
        Ok(MultiPageRing {
            pages: granted,
            front,
        })
    }

    /// Ends a multi-page ring's grants and returns its pages (or leaves them
    /// deferred).
    pub fn end_multi_page_ring<Req, Rsp>(&mut self, ring: MultiPageRing<Req, Rsp, P::Page>) {
        for g in ring.pages {
            if let Held::Spare(p) = self.end_grant(g) {
                self.pages.free_page(p);
            }
        }
    }

    /// Ends a ring page's grant and returns the page (or leaves it deferred).
    pub fn end_ring<Req, Rsp>(&mut self, ring: RingHalf<Req, Rsp, P::Page>) {
        if let Held::Spare(p) = self.end_grant(ring.page) {
            self.pages.free_page(p);
        }
    }
}
