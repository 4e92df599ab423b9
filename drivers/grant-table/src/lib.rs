//! Grant table v1 bookkeeping: owning typed grants, deferred end-access, resume (`xen/include/public/grant_table.h`).
//!
//! [`GrantTable`] hands out grant references from a free list (never the
//! `GNTTAB_NR_RESERVED_ENTRIES` = 8 toolstack entries), grows the table a frame
//! at a time up to the `GNTTABOP_query_size` maximum, and fills entries through
//! the [`GrantTableMemory`] trait, which the kernel implements over the mapped
//! grant-table frames (and [`sim::SimGrantTable`] implements for tests).
//!
//! A grant is an owning handle: [`Grant<B>`] holds the buffer `B` whose frame the
//! peer may map. The only ways to get `B` back are
//! - [`GrantTable::end_access`], split-phase: it succeeds only if the entry could be
//!   invalidated (the peer holds no mapping), otherwise the grant is handed back
//!   with [`EndAccessError::InUse`] to retry later;
//! - [`GrantTable::end_access_or_defer`]: if the peer still maps the page, the
//!   table keeps the page on a deferred list and [`GrantTable::poll_deferred`]
//!   retries, releasing it only once the peer has let go (Linux's
//!   `gnttab_end_foreign_access` deferred list, born of "g.e. still in use");
//! - after [`GrantTable::reset_for_resume`], a grant from the old domain is stale
//!   and returns its buffer at once (the old table, and every peer mapping of it,
//!   is gone).
//!
//! So a page can never return to its allocator while the back end may still map
//! it. Dropping a [`Grant`] without ending it leaks both the buffer and the grant
//! reference — the safe failure mode.
//!
//! No-panic promise: no method panics for any sequence of calls or any flags the
//! peer or Xen leave in the table; entry states are looked up with `get`, and the
//! arithmetic on counts is checked or saturating.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(any(test, feature = "test-utils"))]
pub mod sim;

#[cfg(test)]
mod tests;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

pub use xen_abi::DomId;
pub use xen_abi::grant_table::GrantRef;
use xen_abi::grant_table::{
    ENTRIES_PER_FRAME_V1, GTF_PERMIT_ACCESS, GTF_READONLY, NR_RESERVED_ENTRIES,
};

/// The entry is still mapped or accessed by the peer (`GTF_reading`/`GTF_writing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InUse {
    /// The `flags` word observed.
    pub flags: u16,
}

/// Why [`GrantTableMemory::grow`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrowError {
    /// The table already has `max_nr_frames` frames.
    AtMaximum,
    /// The hypervisor refused to map another frame (a negative errno or `GNTST_*`).
    Hypervisor(i32),
    /// `grow()` reported success but `frames()` did not increase by exactly one.
    NotGrown,
}

impl fmt::Display for GrowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrowError::AtMaximum => f.write_str("grant table already at its maximum frames"),
            GrowError::Hypervisor(rc) => write!(f, "hypervisor refused a grant frame: {rc}"),
            GrowError::NotGrown => f.write_str("grant table did not grow by one frame"),
        }
    }
}

/// The guest's mapped grant-table frames (version 1 entries).
///
/// The kernel implements this over the frames it mapped with
/// `XENMEM_add_to_physmap(XENMAPSPACE_grant_table)`; [`GrantTable`] keeps every
/// `gref` it passes below `frames() * 512`.
pub trait GrantTableMemory {
    /// Frames mapped now.
    fn frames(&self) -> u32;
    /// The most frames the table may have (`max_nr_frames` of `GNTTABOP_query_size`).
    fn max_frames(&self) -> u32;
    /// Maps one more frame; on success [`frames`](Self::frames) has grown by one
    /// and the new frame's entries are zero (invalid).
    fn grow(&mut self) -> Result<(), GrowError>;
    /// Fills entry `gref`: writes `domid` and `frame` first, then stores `flags`
    /// with Release ordering, so Xen never sees a valid type with stale
    /// domid/frame (steps 1-4 of "Introducing a valid entry" in `grant_table.h`).
    fn publish(&mut self, gref: GrantRef, domid: DomId, frame: u32, flags: u16);
    /// Invalidates entry `gref` unless the peer uses it: an atomic
    /// compare-exchange of `flags` to 0 that fails, returning the flags, while
    /// `GTF_reading | GTF_writing` is set (retrying if Xen changes the flags in
    /// between).
    fn try_end_access(&mut self, gref: GrantRef) -> Result<(), InUse>;
}

/// A buffer whose frame can be granted.
pub trait Grantable {
    /// The guest frame number the peer will map.
    fn gfn(&self) -> u64;
}

/// Access a grant permits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// The peer may only read (`GTF_readonly`).
    ReadOnly,
    /// The peer may read and write.
    ReadWrite,
}

/// Why a grant could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrantError {
    /// No free reference and the table is at its maximum size.
    Exhausted,
    /// Growing the table failed.
    Grow(GrowError),
    /// A v1 entry holds a 32-bit frame; this gfn does not fit.
    FrameTooLarge(u64),
    /// The grant belongs to another [`GrantTable`].
    ForeignTable,
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantError::Exhausted => f.write_str("no free grant reference at maximum table size"),
            GrantError::Grow(e) => write!(f, "growing the grant table: {e}"),
            GrantError::FrameTooLarge(gfn) => {
                write!(f, "gfn {gfn:#x} does not fit a v1 grant entry (32 bits)")
            }
            GrantError::ForeignTable => f.write_str("grant belongs to another grant table"),
        }
    }
}

/// Why [`GrantTable::end_access`] handed the grant back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndAccessError {
    /// The peer still maps or accesses the page; retry later.
    InUse(InUse),
    /// The grant belongs to another [`GrantTable`].
    ForeignTable,
}

impl fmt::Display for EndAccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndAccessError::InUse(InUse { flags }) => {
                write!(f, "peer still uses the grant (flags {flags:#06x})")
            }
            EndAccessError::ForeignTable => f.write_str("grant belongs to another grant table"),
        }
    }
}

/// Outcome of [`GrantTable::end_access_or_defer`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Ended<P> {
    /// Access ended; the page is yours again.
    Released(P),
    /// The peer still uses the page: the table keeps it and releases it from
    /// [`GrantTable::poll_deferred`] once the peer lets go.
    Deferred(GrantRef),
}

/// Tuning for a [`GrantTable`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Config {
    /// Give up on a deferred entry after this many failed polls: its reference
    /// and page are then leaked forever. `None` (the default) retries forever.
    pub give_up_after: Option<u32>,
}

/// Counters of a [`GrantTable`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stats {
    /// Frames mapped.
    pub frames: u32,
    /// Usable references (`frames * 512 - 8`).
    pub capacity: u32,
    /// References on the free list.
    pub free: u32,
    /// References granted in this epoch and not ended (including ones whose
    /// [`Grant`] was dropped: those are leaked by design).
    pub active: u32,
    /// References whose end-access is deferred.
    pub deferred: u32,
    /// References given up on (never reused; their pages are kept forever).
    pub leaked: u32,
    /// Times the table grew by a frame.
    pub grows: u32,
    /// Grants re-issued with [`GrantTable::regrant`] after a resume.
    pub regrants: u64,
    /// Stale grants (from before a resume) whose buffer was returned at once.
    pub stale_released: u64,
    /// Deferred pages released by [`GrantTable::poll_deferred`].
    pub deferred_released: u64,
}

/// What one [`GrantTable::poll_deferred`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PollReport {
    /// Pages released to the callback.
    pub released: u32,
    /// Entries still in use.
    pub still_deferred: u32,
    /// Entries given up on during this poll.
    pub gave_up: u32,
}

/// The allocator's view of one reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Reserved,
    Free,
    Active,
    Deferred,
    Leaked,
}

struct DeferredEntry<P> {
    gref: GrantRef,
    page: P,
    attempts: u32,
}

/// Source of table identities, so a grant cannot be ended on the wrong table.
static NEXT_TABLE_ID: AtomicU32 = AtomicU32::new(1);

/// An owning handle on a granted buffer.
///
/// While it exists, the peer may map `B`'s frame through [`gref`](Self::gref).
/// `B` comes back only through the [`GrantTable`] that issued it. Dropping a
/// `Grant` leaks `B` and the reference (never unsafe: the page is just never
/// reused).
#[must_use = "dropping a Grant leaks its buffer and grant reference; end access through the GrantTable"]
#[derive(Debug)]
pub struct Grant<B> {
    gref: GrantRef,
    domid: DomId,
    access: Access,
    table: u32,
    epoch: u32,
    buf: ManuallyDrop<B>,
}

impl<B> Grant<B> {
    /// The grant reference to hand to the peer.
    pub fn gref(&self) -> GrantRef {
        self.gref
    }

    /// The domain granted access.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// The access granted.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The granted buffer (shared access only: the buffer itself cannot be
    /// swapped out while granted).
    pub fn buffer(&self) -> &B {
        &self.buf
    }

    /// The buffer's contents (e.g. the page bytes behind a page handle).
    pub fn data(&self) -> &B::Target
    where
        B: Deref,
    {
        &self.buf
    }

    /// Mutable access to the buffer's contents, e.g. to fill a transmit buffer.
    /// `B::Target` must be the data, not another owner of the page.
    pub fn data_mut(&mut self) -> &mut B::Target
    where
        B: DerefMut,
    {
        &mut self.buf
    }

    fn into_buffer(self) -> B {
        let Grant { buf, .. } = self;
        ManuallyDrop::into_inner(buf)
    }
}

/// Grant-table v1 allocator over memory `M`; `P` is the page type the deferred
/// list can hold (see [`GrantTable::end_access_or_defer`]).
pub struct GrantTable<M, P> {
    mem: M,
    config: Config,
    id: u32,
    epoch: u32,
    slots: Vec<Slot>,
    free: VecDeque<GrantRef>,
    deferred: Vec<DeferredEntry<P>>,
    leaked: Vec<(GrantRef, P)>,
    stats: Stats,
}

impl<M: GrantTableMemory, P> GrantTable<M, P> {
    /// Takes over the table `mem` (which must have no entries in use besides the
    /// reserved ones) with every non-reserved reference of its frames free.
    pub fn new(mem: M, config: Config) -> Self {
        let mut t = Self {
            mem,
            config,
            id: NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed),
            epoch: 0,
            slots: Vec::new(),
            free: VecDeque::new(),
            deferred: Vec::new(),
            leaked: Vec::new(),
            stats: Stats::default(),
        };
        t.rebuild();
        t
    }

    /// Resets the bookkeeping to `mem`'s current frames, all free.
    fn rebuild(&mut self) {
        self.slots.clear();
        self.free.clear();
        self.stats.frames = 0;
        self.stats.capacity = 0;
        for _ in 0..self.mem.frames() {
            self.add_frame();
        }
    }

    /// Adds the references of one more (already mapped) frame to the free list.
    fn add_frame(&mut self) {
        let first = self.stats.frames.saturating_mul(ENTRIES_PER_FRAME_V1);
        let end = first.saturating_add(ENTRIES_PER_FRAME_V1);
        for gref in first..end {
            if gref < NR_RESERVED_ENTRIES {
                self.slots.push(Slot::Reserved);
            } else {
                self.slots.push(Slot::Free);
                self.free.push_back(gref);
                self.stats.capacity = self.stats.capacity.saturating_add(1);
            }
        }
        self.stats.frames = self.stats.frames.saturating_add(1);
    }

    fn set_slot(&mut self, gref: GrantRef, slot: Slot) {
        if let Some(s) = usize::try_from(gref)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
        {
            *s = slot;
        }
    }

    fn slot(&self, gref: GrantRef) -> Option<Slot> {
        usize::try_from(gref)
            .ok()
            .and_then(|i| self.slots.get(i))
            .copied()
    }

    /// The underlying memory (e.g. for the kernel to read `frames()`, or a test
    /// to drive the simulated back end).
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Mutable access to the underlying memory.
    pub fn memory_mut(&mut self) -> &mut M {
        &mut self.mem
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.free = u32::try_from(self.free.len()).unwrap_or(u32::MAX);
        s.deferred = u32::try_from(self.deferred.len()).unwrap_or(u32::MAX);
        s.leaked = u32::try_from(self.leaked.len()).unwrap_or(u32::MAX);
        s
    }

    /// Takes a free reference, growing the table by a frame if none is left.
    fn alloc_ref(&mut self) -> Result<GrantRef, GrantError> {
        if let Some(gref) = self.free.pop_front() {
            return Ok(gref);
        }
        if self.stats.frames >= self.mem.max_frames() {
            return Err(GrantError::Exhausted);
        }
        let before = self.mem.frames();
        self.mem.grow().map_err(GrantError::Grow)?;
        if self.mem.frames() != before.saturating_add(1) {
            // The memory did not grow as promised; do not trust new entries.
            return Err(GrantError::Grow(GrowError::NotGrown));
        }
        self.add_frame();
        self.stats.grows = self.stats.grows.saturating_add(1);
        self.free.pop_front().ok_or(GrantError::Exhausted)
    }

    fn publish<B: Grantable>(
        &mut self,
        domid: DomId,
        buf: &B,
        access: Access,
    ) -> Result<GrantRef, GrantError> {
        let gfn = buf.gfn();
        let frame = u32::try_from(gfn).map_err(|_| GrantError::FrameTooLarge(gfn))?;
        let gref = self.alloc_ref()?;
        let flags = match access {
            Access::ReadOnly => GTF_PERMIT_ACCESS | GTF_READONLY,
            Access::ReadWrite => GTF_PERMIT_ACCESS,
        };
        self.mem.publish(gref, domid, frame, flags);
        self.set_slot(gref, Slot::Active);
        self.stats.active = self.stats.active.saturating_add(1);
        Ok(gref)
    }

    /// Grants `domid` access to `buf`'s frame. On failure `buf` is handed back.
    pub fn grant_access<B: Grantable>(
        &mut self,
        domid: DomId,
        buf: B,
        access: Access,
    ) -> Result<Grant<B>, (B, GrantError)> {
        match self.publish(domid, &buf, access) {
            Ok(gref) => Ok(Grant {
                gref,
                domid,
                access,
                table: self.id,
                epoch: self.epoch,
                buf: ManuallyDrop::new(buf),
            }),
            Err(e) => Err((buf, e)),
        }
    }

    /// Whether `gref`'s end of access is deferred (the peer still maps it; see
    /// [`end_access_or_defer`](Self::end_access_or_defer)). Lets a device count
    /// the pages it has left on the deferred list.
    pub fn is_deferred(&self, gref: GrantRef) -> bool {
        self.slot(gref) == Some(Slot::Deferred)
    }

    /// Whether `grant` was issued by this table before the last
    /// [`reset_for_resume`](Self::reset_for_resume).
    pub fn is_stale<B>(&self, grant: &Grant<B>) -> bool {
        grant.table == self.id && grant.epoch != self.epoch
    }

    /// Ends access (split phase). Returns the buffer if the entry was
    /// invalidated, or the grant itself if the peer still uses it (retry later)
    /// or it belongs to another table. A stale grant (from before a resume)
    /// returns its buffer at once without touching the table.
    pub fn end_access<B>(&mut self, grant: Grant<B>) -> Result<B, (Grant<B>, EndAccessError)> {
        if grant.table != self.id {
            return Err((grant, EndAccessError::ForeignTable));
        }
        if grant.epoch != self.epoch {
            self.stats.stale_released = self.stats.stale_released.saturating_add(1);
            return Ok(grant.into_buffer());
        }
        match self.mem.try_end_access(grant.gref) {
            Ok(()) => {
                self.release_ref(grant.gref);
                self.stats.active = self.stats.active.saturating_sub(1);
                Ok(grant.into_buffer())
            }
            Err(in_use) => Err((grant, EndAccessError::InUse(in_use))),
        }
    }

    /// Ends access, or if the peer still uses the page, keeps it on the
    /// deferred list (its reference is not reused, the page not released) for
    /// [`poll_deferred`](Self::poll_deferred). Hands a foreign grant back.
    pub fn end_access_or_defer(
        &mut self,
        grant: Grant<P>,
    ) -> Result<Ended<P>, (Grant<P>, EndAccessError)> {
        match self.end_access(grant) {
            Ok(page) => Ok(Ended::Released(page)),
            Err((grant, EndAccessError::InUse(_))) => {
                let gref = grant.gref;
                self.set_slot(gref, Slot::Deferred);
                self.stats.active = self.stats.active.saturating_sub(1);
                self.deferred.push(DeferredEntry {
                    gref,
                    page: grant.into_buffer(),
                    attempts: 0,
                });
                Ok(Ended::Deferred(gref))
            }
            Err(other) => Err(other),
        }
    }

    /// Retries every deferred entry: pages whose access could now be ended are
    /// passed to `release` (e.g. back to the frame allocator) and their
    /// references freed; with [`Config::give_up_after`], entries that failed too
    /// often are leaked for good.
    pub fn poll_deferred(&mut self, mut release: impl FnMut(P)) -> PollReport {
        let mut report = PollReport::default();
        let pending = core::mem::take(&mut self.deferred);
        for mut entry in pending {
            match self.mem.try_end_access(entry.gref) {
                Ok(()) => {
                    self.release_ref(entry.gref);
                    self.stats.deferred_released = self.stats.deferred_released.saturating_add(1);
                    report.released = report.released.saturating_add(1);
                    release(entry.page);
                }
                Err(_) => {
                    entry.attempts = entry.attempts.saturating_add(1);
                    if self
                        .config
                        .give_up_after
                        .is_some_and(|n| entry.attempts >= n)
                    {
                        self.set_slot(entry.gref, Slot::Leaked);
                        self.leaked.push((entry.gref, entry.page));
                        report.gave_up = report.gave_up.saturating_add(1);
                    } else {
                        self.deferred.push(entry);
                        report.still_deferred = report.still_deferred.saturating_add(1);
                    }
                }
            }
        }
        report
    }

    fn release_ref(&mut self, gref: GrantRef) {
        if self.slot(gref) != Some(Slot::Free) && gref >= NR_RESERVED_ENTRIES {
            self.set_slot(gref, Slot::Free);
            self.free.push_back(gref);
        }
    }

    /// After resuming in a NEW domain (not after a cancelled suspend): the old
    /// table and every peer mapping of it are gone, so forget all entries.
    /// Call after the kernel has mapped the new domain's table frames; the free
    /// list is rebuilt from `frames()`. Outstanding [`Grant`]s become stale:
    /// [`end_access`](Self::end_access) returns their buffers at once and
    /// [`regrant`](Self::regrant) grants them again. Deferred and leaked pages
    /// can no longer be mapped by anyone and are returned.
    pub fn reset_for_resume(&mut self) -> Vec<P> {
        self.epoch = self.epoch.wrapping_add(1);
        let mut pages: Vec<P> = self.deferred.drain(..).map(|d| d.page).collect();
        pages.extend(self.leaked.drain(..).map(|(_, p)| p));
        self.stats.active = 0;
        self.rebuild();
        pages
    }

    /// Grants a stale grant (from before [`reset_for_resume`](Self::reset_for_resume))
    /// again, to the same domain with the same access, under a new reference. A
    /// current grant is returned unchanged. On failure the grant is handed back
    /// (still stale).
    pub fn regrant<B: Grantable>(
        &mut self,
        grant: Grant<B>,
    ) -> Result<Grant<B>, (Grant<B>, GrantError)> {
        if grant.table != self.id {
            return Err((grant, GrantError::ForeignTable));
        }
        if grant.epoch == self.epoch {
            return Ok(grant);
        }
        match self.publish(grant.domid, grant.buffer(), grant.access) {
            Ok(gref) => {
                self.stats.regrants = self.stats.regrants.saturating_add(1);
                Ok(Grant {
                    gref,
                    epoch: self.epoch,
                    ..grant
                })
            }
            Err(e) => Err((grant, e)),
        }
    }
}
