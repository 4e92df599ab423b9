//! Granted pages as owning values, one ring half, and the platform resources a driver borrows from its device.
//!
//! A page is [`Held`] in one of three states; it is handed back to the
//! [`PageProvider`] only once its grant ended (or the grant table keeps it on
//! its deferred list while a back end still maps it), so a page a back end can
//! still see is never reused (the XSA-396 class cannot be written).

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
        }
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
                    Ok(Ended::Deferred(_)) => self.alloc_page()?,
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
            Ok(Ended::Deferred(_)) => Held::Empty,
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

    /// Ends a ring page's grant and returns the page (or leaves it deferred).
    pub fn end_ring<Req, Rsp>(&mut self, ring: RingHalf<Req, Rsp, P::Page>) {
        if let Held::Spare(p) = self.end_grant(ring.page) {
            self.pages.free_page(p);
        }
    }
}
