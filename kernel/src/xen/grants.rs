//! The grant table (v1): frames placed with `XENMAPSPACE_grant_table`, entries written atomically.
//!
//! Sources: `xen/include/public/grant_table.h` (v1 entries, `GNTTABOP_query_size`, the
//! order of writes for a valid entry, the compare-exchange for ending access) and
//! `xen/include/public/memory.h` (`XENMAPSPACE_grant_table`). Version 1 is the default
//! of a new domain and is never changed here.
//!
//! The bookkeeping (free list, owning grants, deferred end-access, resume) is the
//! `grant-table` crate's [`GrantTable`]; this module implements its
//! [`GrantTableMemory`] over the mapped frames. Each table frame is a frame taken from
//! the frame allocator: `XENMEM_add_to_physmap(XENMAPSPACE_grant_table, idx, gpfn)`
//! puts table frame `idx` there (Xen grows the table to `idx + 1` frames on demand and
//! gives the RAM page back). Frames are added one at a time up to the
//! `GNTTABOP_query_size` maximum. After a resume in a new domain the same guest frames
//! are mapped again (the old table died with the old domain) and the bookkeeping is
//! reset; drivers re-grant through their resume hook.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU16, Ordering};

use grant_table::{
    Access, Config, DomId, GrantRef, GrantTable, GrantTableMemory, Grantable, GrowError, InUse,
    Stats,
};
use spin::Mutex;
use xen_abi::grant_table::{
    ENTRIES_PER_FRAME_V1, ENTRY_DOMID_OFFSET, ENTRY_FLAGS_OFFSET, ENTRY_FRAME_OFFSET,
    ENTRY_V1_SIZE, GTF_IN_USE,
};
use xen_abi::memory::XENMAPSPACE_GRANT_TABLE;

use crate::arch::hypercall::{self, HypercallError};
use crate::mm::memory::Frame;

/// The kernel's grant table; deferred pages are [`Frame`]s.
pub type KernelGrantTable = GrantTable<GrantFrames, Frame>;

/// The grant table, once [`init`] ran.
static GRANTS: Mutex<Option<KernelGrantTable>> = Mutex::new(None);

/// The mapped grant-table frames.
#[derive(Debug)]
pub struct GrantFrames {
    /// Guest frame of table frame `i`, for each mapped `i`.
    gpfns: Vec<u64>,
    /// `max_nr_frames` from `GNTTABOP_query_size`.
    max: u32,
}

/// Why the grant table could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantSetupError {
    /// `GNTTABOP_query_size` failed.
    Query(HypercallError),
    /// Mapping the first frame failed.
    Grow(GrowError),
    /// Re-mapping the table frames after a resume in a new domain failed.
    Remap(GrowError),
}

impl core::fmt::Display for GrantSetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GrantSetupError::Query(e) => write!(f, "GNTTABOP_query_size: {e}"),
            GrantSetupError::Grow(e) => write!(f, "mapping grant frame 0: {e:?}"),
            GrantSetupError::Remap(e) => write!(f, "re-mapping grant frames: {e:?}"),
        }
    }
}

impl GrantFrames {
    /// The identity-mapped address of entry `gref`, if its frame is mapped.
    fn entry_addr(&self, gref: GrantRef) -> Option<usize> {
        let frame = usize::try_from(gref / ENTRIES_PER_FRAME_V1).ok()?;
        let index = usize::try_from(gref % ENTRIES_PER_FRAME_V1).ok()?;
        let gpfn = *self.gpfns.get(frame)?;
        usize::try_from(gpfn << xen_abi::PAGE_SHIFT)
            .ok()
            .map(|base| base + index * ENTRY_V1_SIZE)
    }

    /// The `flags` word of entry `gref` as an atomic.
    fn flags(&self, gref: GrantRef) -> Option<&AtomicU16> {
        let addr = self.entry_addr(gref)?;
        // SAFETY: `addr` is the 8-aligned start of a v1 entry inside a mapped,
        // identity-mapped grant-table frame, which stays mapped for the domain's life;
        // `flags` is its first u16. Xen updates it with atomic instructions too.
        Some(unsafe { AtomicU16::from_ptr((addr + ENTRY_FLAGS_OFFSET) as *mut u16) })
    }

    /// Maps table frame `idx` at `gpfn`.
    fn map(idx: usize, gpfn: u64) -> Result<(), GrowError> {
        hypercall::add_to_physmap(XENMAPSPACE_GRANT_TABLE, idx as u64, gpfn).map_err(|e| {
            GrowError::Hypervisor(match e {
                HypercallError::Errno(n) => i32::try_from(-n).unwrap_or(i32::MIN),
                HypercallError::Grant(_) | HypercallError::NotReady => -1,
            })
        })
    }

    /// Maps every known frame again (resume in a new domain).
    fn remap(&self) -> Result<(), GrowError> {
        for (idx, &gpfn) in self.gpfns.iter().enumerate() {
            Self::map(idx, gpfn)?;
        }
        Ok(())
    }
}

impl GrantTableMemory for GrantFrames {
    fn frames(&self) -> u32 {
        u32::try_from(self.gpfns.len()).unwrap_or(u32::MAX)
    }

    fn max_frames(&self) -> u32 {
        self.max
    }

    fn grow(&mut self) -> Result<(), GrowError> {
        if self.frames() >= self.max {
            return Err(GrowError::AtMaximum);
        }
        let frame = Frame::alloc().ok_or(GrowError::Hypervisor(-12))?;
        // Xen zeroes a new table frame; on failure the frame goes back to the allocator.
        Self::map(self.gpfns.len(), frame.pfn())?;
        // The guest frame is now the table frame; its RAM went back to Xen.
        self.gpfns.push(frame.into_pfn());
        Ok(())
    }

    fn publish(&mut self, gref: GrantRef, domid: DomId, frame: u32, flags: u16) {
        let Some(addr) = self.entry_addr(gref) else {
            return;
        };
        // SAFETY: `addr` is a v1 entry in a mapped table frame (see `flags`); the
        // entry is invalid (the allocator only publishes free entries), so Xen does
        // not read domid/frame until it sees the flags stored below. Volatile: Xen
        // reads them from another context.
        unsafe {
            core::ptr::write_volatile((addr + ENTRY_DOMID_OFFSET) as *mut u16, domid);
            core::ptr::write_volatile((addr + ENTRY_FRAME_OFFSET) as *mut u32, frame);
        }
        if let Some(f) = self.flags(gref) {
            // Release: domid and frame are visible to Xen before the valid type that
            // makes it read them (grant_table.h: "wmb() before writing flags").
            f.store(flags, Ordering::Release);
        }
    }

    fn try_end_access(&mut self, gref: GrantRef) -> Result<(), InUse> {
        let Some(f) = self.flags(gref) else {
            return Ok(());
        };
        // Relaxed: the compare-exchange below re-checks the value atomically.
        let mut current = f.load(Ordering::Relaxed);
        loop {
            if current & GTF_IN_USE != 0 {
                return Err(InUse { flags: current });
            }
            // AcqRel: on success, the peer's last accesses (which Xen ended by
            // clearing GTF_reading/writing) happen before we reuse the page; on
            // failure we retry with the value Xen just wrote.
            match f.compare_exchange(current, 0, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }
}

/// Sets up the table: queries the maximum and maps the first frame.
/// Returns `(frames, max_frames)`.
pub fn init() -> Result<(u32, u32), GrantSetupError> {
    let (_, max) = hypercall::gnttab_query_size().map_err(GrantSetupError::Query)?;
    let mut frames = GrantFrames {
        gpfns: Vec::new(),
        max,
    };
    frames.grow().map_err(GrantSetupError::Grow)?;
    let mapped = frames.frames();
    *GRANTS.lock() = Some(GrantTable::new(frames, Config::default()));
    Ok((mapped, max))
}

/// Runs `f` on the grant table (`None` before [`init`]).
pub fn with<R>(f: impl FnOnce(&mut KernelGrantTable) -> R) -> Option<R> {
    GRANTS.lock().as_mut().map(f)
}

/// The table's counters (`None` before [`init`]).
pub fn stats() -> Option<Stats> {
    with(|t| t.stats())
}

/// After a resume in a NEW domain: maps the new domain's table at the same frames and
/// resets the bookkeeping (every outstanding grant becomes stale; deferred pages, which
/// no peer can map any more, go back to the frame allocator).
///
/// The reset happens even if a re-map failed: the old references mean nothing in the
/// new domain, and a driver must never post one of them (a stale grant is re-granted,
/// or fails to, before any request names it). Entries of a frame that did not map are
/// unusable until it does; the error is returned for the console.
pub fn resume_new_domain() -> Result<(), GrantSetupError> {
    let mut guard = GRANTS.lock();
    let Some(table) = guard.as_mut() else {
        return Ok(());
    };
    let remapped = table.memory().remap().map_err(GrantSetupError::Remap);
    let released = table.reset_for_resume();
    drop(guard);
    drop(released);
    remapped
}

/// Prints the table's counters: `xenrs grants: <when> frames=<n>/<max> active=<n>
/// deferred=<n> free=<n>`.
pub fn print_counts(when: &str) {
    match stats() {
        Some(s) => crate::println!(
            "xenrs grants: {when} frames={}/{} active={} deferred={} free={} leaked={} regrants={}",
            s.frames,
            with(|t| t.memory().max_frames()).unwrap_or(0),
            s.active,
            s.deferred,
            s.free,
            s.leaked,
            s.regrants
        ),
        None => crate::println!("xenrs grants: {when} not set up"),
    }
}

/// A frame the self-test lends to the grant table (owned by a [`Frame`] elsewhere).
struct Lent(u64);

impl Grantable for Lent {
    fn gfn(&self) -> u64 {
        self.0
    }
}

/// Grants one page read-only to dom0 `count` times (enough to need a second table
/// frame: exercises `grow`, i.e. `XENMAPSPACE_grant_table` for frame 1), then ends every
/// grant (the compare-exchange on real entries). Logs what happened; errors are printed.
pub fn self_test(count: usize) {
    let Some(page) = Frame::alloc() else {
        crate::println!("xenrs grants error: self-test: no free frame");
        return;
    };
    let gfn = page.pfn();
    let outcome = with(|t| {
        let frames_before = t.stats().frames;
        let mut grants = Vec::with_capacity(count);
        for _ in 0..count {
            match t.grant_access(0, Lent(gfn), Access::ReadOnly) {
                Ok(g) => grants.push(g),
                Err((_, e)) => {
                    crate::println!("xenrs grants error: self-test grant: {e:?}");
                    break;
                }
            }
        }
        let issued = grants.len();
        let frames_after = t.stats().frames;
        let mut ended = 0;
        for g in grants {
            match t.end_access(g) {
                Ok(_) => ended += 1,
                // Dropping the handed-back grant leaks its reference: the safe outcome.
                Err((_, e)) => crate::println!("xenrs grants error: self-test end access: {e:?}"),
            }
        }
        (frames_before, frames_after, issued, ended, t.stats().active)
    });
    drop(page);
    if let Some((before, after, issued, ended, active)) = outcome {
        log::info!(
            "grants: self-test issued {issued} grants (table {before} -> {after} frames), ended {ended}, {active} active"
        );
    }
}
