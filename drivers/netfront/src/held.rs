//! Page ownership states shared by the rx buffers, the tx pool and the rings.

use grant_table::Grant;
use xen_ring::FrontRing;

/// What a buffer slot holds.
#[derive(Debug)]
pub(crate) enum Held<Pg> {
    /// No page (never allocated, or its end of access was deferred and the
    /// grant table now owns it).
    Empty,
    /// A page of ours that no back end can access.
    Spare(Pg),
    /// A granted page. After a resume in a new domain the grant is stale
    /// until re-granted.
    Granted(Grant<Pg>),
}

impl<Pg> Held<Pg> {
    /// Takes the contents, leaving [`Held::Empty`].
    pub(crate) fn take(&mut self) -> Held<Pg> {
        core::mem::replace(self, Held::Empty)
    }

    /// The grant, if granted.
    pub(crate) fn grant(&self) -> Option<&Grant<Pg>> {
        match self {
            Held::Granted(g) => Some(g),
            Held::Empty | Held::Spare(_) => None,
        }
    }
}

/// One shared ring of a connection: the granted page and our private indices.
#[derive(Debug)]
pub(crate) struct RingHalf<Req, Rsp, Pg> {
    /// The ring page, granted read-write to the back end.
    pub(crate) page: Grant<Pg>,
    /// The front end's half of the ring.
    pub(crate) front: FrontRing<Req, Rsp>,
}
