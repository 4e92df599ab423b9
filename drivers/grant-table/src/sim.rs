//! An in-memory grant table with a simulated back end and page poisoning (feature `test-utils`).
//!
//! [`SimGrantTable`] implements [`GrantTableMemory`] over a `Vec` of
//! [`GrantEntryV1`] and plays Xen's part for a back end: [`SimGrantTable::backend_map`]
//! checks the entry (type, domid, read-only) and sets `GTF_reading`/`GTF_writing`
//! as Xen does while a mapping exists, so `try_end_access` fails until
//! [`SimGrantTable::backend_unmap`]. It also keeps guest page contents by gfn;
//! when access to a page ends its contents are overwritten with [`POISON`]
//! (unless disabled), so a test sees at once if anything still reads a page the
//! guest took back.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use xen_abi::PAGE_SIZE;
use xen_abi::grant_table::{
    ENTRIES_PER_FRAME_V1, GTF_IN_USE, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_TYPE_MASK,
    GTF_WRITING, GrantEntryV1,
};

use crate::{Access, DomId, GrantRef, GrantTableMemory, Grantable, GrowError, InUse};

/// The byte a page is filled with when access to it ends.
pub const POISON: u8 = 0xDB;

/// A test page handle: owns the guest frame `gfn` (deliberately not `Clone`).
#[derive(Debug, PartialEq, Eq)]
pub struct SimPage {
    gfn: u64,
}

impl SimPage {
    /// A handle on frame `gfn`.
    pub fn new(gfn: u64) -> Self {
        Self { gfn }
    }
}

impl Grantable for SimPage {
    fn gfn(&self) -> u64 {
        self.gfn
    }
}

/// Why a simulated back-end operation failed (what Xen would refuse).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimError {
    /// The reference is outside the table (`GNTST_bad_gntref`).
    BadRef,
    /// The entry does not permit access (`GNTST_bad_gntref`).
    NotGranted,
    /// The entry grants another domain (`GNTST_permission_denied`).
    WrongDomain,
    /// A write mapping of a read-only grant (`GNTST_permission_denied`).
    ReadOnly,
    /// No such mapping to use or remove.
    NotMapped,
}

impl core::fmt::Display for SimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SimError::BadRef => "grant reference outside the table",
            SimError::NotGranted => "entry does not permit access",
            SimError::WrongDomain => "entry grants another domain",
            SimError::ReadOnly => "write mapping of a read-only grant",
            SimError::NotMapped => "no such mapping",
        })
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Mapping {
    domid: DomId,
    readers: u32,
    writers: u32,
}

/// An in-memory grant table plus the Xen side of a back end's mappings.
#[derive(Debug)]
pub struct SimGrantTable {
    entries: Vec<GrantEntryV1>,
    initial_frames: u32,
    max_frames: u32,
    maps: BTreeMap<GrantRef, Mapping>,
    pages: BTreeMap<u64, Vec<u8>>,
    poison_on_end: bool,
    fail_next_grow: Option<GrowError>,
    publishes: u64,
}

impl SimGrantTable {
    /// A table of `initial_frames` frames that may grow to `max_frames`.
    pub fn new(initial_frames: u32, max_frames: u32) -> Self {
        let mut t = Self {
            entries: Vec::new(),
            initial_frames,
            max_frames,
            maps: BTreeMap::new(),
            pages: BTreeMap::new(),
            poison_on_end: true,
            fail_next_grow: None,
            publishes: 0,
        };
        t.new_domain();
        t
    }

    /// Resume in a new domain: the table is back to its initial frames, all
    /// entries invalid, no back-end mappings. Page contents are kept (memory is
    /// migrated).
    pub fn new_domain(&mut self) {
        let n =
            usize::try_from(self.initial_frames.saturating_mul(ENTRIES_PER_FRAME_V1)).unwrap_or(0);
        self.entries = vec![GrantEntryV1::default(); n];
        self.maps.clear();
    }

    fn index(&self, gref: GrantRef) -> Result<usize, SimError> {
        usize::try_from(gref)
            .ok()
            .filter(|i| *i < self.entries.len())
            .ok_or(SimError::BadRef)
    }

    /// Entry `gref`, if inside the table.
    pub fn entry(&self, gref: GrantRef) -> Option<GrantEntryV1> {
        self.index(gref)
            .ok()
            .and_then(|i| self.entries.get(i))
            .copied()
    }

    /// Overwrites an entry's flags, as Xen or a confused guest might.
    pub fn set_flags(&mut self, gref: GrantRef, flags: u16) {
        if let Some(e) = self.index(gref).ok().and_then(|i| self.entries.get_mut(i)) {
            e.flags = flags;
        }
    }

    /// Number of `publish` calls so far.
    pub fn publishes(&self) -> u64 {
        self.publishes
    }

    /// Sets guest page `gfn`'s contents (padded/truncated to a page).
    pub fn set_page(&mut self, gfn: u64, data: &[u8]) {
        let mut page = vec![0u8; PAGE_SIZE];
        for (d, s) in page.iter_mut().zip(data) {
            *d = *s;
        }
        self.pages.insert(gfn, page);
    }

    /// Guest page `gfn`'s contents, if set.
    pub fn page(&self, gfn: u64) -> Option<&[u8]> {
        self.pages.get(&gfn).map(Vec::as_slice)
    }

    /// Whether ending access poisons the page (default true).
    pub fn set_poison_on_end(&mut self, on: bool) {
        self.poison_on_end = on;
    }

    /// Makes the next `grow` fail with `e`.
    pub fn fail_next_grow(&mut self, e: GrowError) {
        self.fail_next_grow = Some(e);
    }

    /// Back end `domid` maps `gref` (`GNTTABOP_map_grant_ref`): checks the entry
    /// and sets `GTF_reading` (and `GTF_writing` for a writable mapping).
    pub fn backend_map(
        &mut self,
        domid: DomId,
        gref: GrantRef,
        access: Access,
    ) -> Result<(), SimError> {
        let i = self.index(gref)?;
        let e = self.entries.get_mut(i).ok_or(SimError::BadRef)?;
        if e.flags & GTF_TYPE_MASK != GTF_PERMIT_ACCESS {
            return Err(SimError::NotGranted);
        }
        if e.domid != domid {
            return Err(SimError::WrongDomain);
        }
        if access == Access::ReadWrite && e.flags & GTF_READONLY != 0 {
            return Err(SimError::ReadOnly);
        }
        let m = self.maps.entry(gref).or_insert(Mapping {
            domid,
            ..Mapping::default()
        });
        match access {
            Access::ReadOnly => m.readers = m.readers.saturating_add(1),
            Access::ReadWrite => m.writers = m.writers.saturating_add(1),
        }
        e.flags |= GTF_READING;
        if m.writers > 0 {
            e.flags |= GTF_WRITING;
        }
        Ok(())
    }

    /// Back end `domid` unmaps one mapping of `gref` (`GNTTABOP_unmap_grant_ref`);
    /// the in-use flags clear when the last mapping of their kind goes.
    pub fn backend_unmap(
        &mut self,
        domid: DomId,
        gref: GrantRef,
        access: Access,
    ) -> Result<(), SimError> {
        let i = self.index(gref)?;
        let m = self
            .maps
            .get_mut(&gref)
            .filter(|m| m.domid == domid)
            .ok_or(SimError::NotMapped)?;
        let count = match access {
            Access::ReadOnly => &mut m.readers,
            Access::ReadWrite => &mut m.writers,
        };
        *count = count.checked_sub(1).ok_or(SimError::NotMapped)?;
        let (readers, writers) = (m.readers, m.writers);
        if readers == 0 && writers == 0 {
            self.maps.remove(&gref);
        }
        if let Some(e) = self.entries.get_mut(i) {
            if writers == 0 {
                e.flags &= !GTF_WRITING;
            }
            if readers == 0 && writers == 0 {
                e.flags &= !GTF_READING;
            }
        }
        Ok(())
    }

    /// Whether the back end holds any mapping of `gref`.
    pub fn is_mapped(&self, gref: GrantRef) -> bool {
        self.maps.contains_key(&gref)
    }

    fn mapped_gfn(&self, domid: DomId, gref: GrantRef) -> Result<u64, SimError> {
        let m = self.maps.get(&gref).ok_or(SimError::NotMapped)?;
        if m.domid != domid {
            return Err(SimError::WrongDomain);
        }
        self.entry(gref)
            .map(|e| u64::from(e.frame))
            .ok_or(SimError::BadRef)
    }

    /// The back end reads the page through its mapping of `gref`.
    pub fn backend_read(&self, domid: DomId, gref: GrantRef) -> Result<Vec<u8>, SimError> {
        let gfn = self.mapped_gfn(domid, gref)?;
        Ok(self
            .pages
            .get(&gfn)
            .cloned()
            .unwrap_or_else(|| vec![0; PAGE_SIZE]))
    }

    /// The back end writes the page through a writable mapping of `gref`.
    pub fn backend_write(
        &mut self,
        domid: DomId,
        gref: GrantRef,
        data: &[u8],
    ) -> Result<(), SimError> {
        let gfn = self.mapped_gfn(domid, gref)?;
        if self.maps.get(&gref).is_none_or(|m| m.writers == 0) {
            return Err(SimError::ReadOnly);
        }
        self.set_page(gfn, data);
        Ok(())
    }
}

impl GrantTableMemory for SimGrantTable {
    fn frames(&self) -> u32 {
        u32::try_from(self.entries.len() / ENTRIES_PER_FRAME_V1 as usize).unwrap_or(u32::MAX)
    }

    fn max_frames(&self) -> u32 {
        self.max_frames
    }

    fn grow(&mut self) -> Result<(), GrowError> {
        if let Some(e) = self.fail_next_grow.take() {
            return Err(e);
        }
        if self.frames() >= self.max_frames {
            return Err(GrowError::AtMaximum);
        }
        let n = self
            .entries
            .len()
            .saturating_add(ENTRIES_PER_FRAME_V1 as usize);
        self.entries.resize(n, GrantEntryV1::default());
        Ok(())
    }

    fn publish(&mut self, gref: GrantRef, domid: DomId, frame: u32, flags: u16) {
        self.publishes = self.publishes.saturating_add(1);
        if let Some(e) = self.index(gref).ok().and_then(|i| self.entries.get_mut(i)) {
            e.domid = domid;
            e.frame = frame;
            e.flags = flags;
        }
    }

    fn try_end_access(&mut self, gref: GrantRef) -> Result<(), InUse> {
        let poison = self.poison_on_end;
        let Some(e) = self.index(gref).ok().and_then(|i| self.entries.get_mut(i)) else {
            return Err(InUse { flags: 0 });
        };
        if e.flags & GTF_IN_USE != 0 {
            return Err(InUse { flags: e.flags });
        }
        e.flags = 0;
        let gfn = u64::from(e.frame);
        if poison && let Some(page) = self.pages.get_mut(&gfn) {
            page.fill(POISON);
        }
        Ok(())
    }
}
