//! Memory reservation and physmap operations (`memory.h`).
//!
//! Source: `xen/include/public/memory.h` (Xen 4.17). Each `XENMEM_*` is the first
//! argument of `__HYPERVISOR_memory_op`; the second points at the matching
//! struct. A PVH guest uses [`XENMEM_ADD_TO_PHYSMAP`] to place the shared info
//! page and grant table frames at guest frames of its choice.
//!
//! `XEN_GUEST_HANDLE(x)` fields are guest *virtual* addresses of buffers; they
//! are plain `u64` here because this crate holds no pointers.

use crate::DomId;

/// `XENMEM_increase_reservation`: argument is a [`XenMemoryReservation`].
pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
/// `XENMEM_decrease_reservation`: give frames back (ballooning); argument is a
/// [`XenMemoryReservation`] listing guest frames; returns the number freed.
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
/// `XENMEM_maximum_ram_page`: highest machine frame of RAM; no argument.
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
/// `XENMEM_current_reservation`: current pages of a domain; argument is a
/// [`XenMemoryDomain`].
pub const XENMEM_CURRENT_RESERVATION: u32 = 3;
/// `XENMEM_maximum_reservation`: maximum pages of a domain; argument is a
/// [`XenMemoryDomain`].
pub const XENMEM_MAXIMUM_RESERVATION: u32 = 4;
/// `XENMEM_populate_physmap`: back guest frames with memory; argument is a
/// [`XenMemoryReservation`]; returns the number of extents populated.
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
/// `XENMEM_add_to_physmap`: argument is a [`XenAddToPhysmap`].
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
/// `XENMEM_memory_map`: the guest's e820 map; argument is a [`XenMemoryMap`].
pub const XENMEM_MEMORY_MAP: u32 = 9;
/// `XENMEM_maximum_gpfn`: highest guest frame in use; argument is a
/// [`XenMemoryDomain`].
pub const XENMEM_MAXIMUM_GPFN: u32 = 14;
/// `XENMEM_remove_from_physmap`: argument is a [`XenRemoveFromPhysmap`].
pub const XENMEM_REMOVE_FROM_PHYSMAP: u32 = 15;

/// `XENMAPSPACE_shared_info`: map the shared info page (`idx` 0).
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// `XENMAPSPACE_grant_table`: map grant table frame `idx` (OR
/// [`XENMAPIDX_GRANT_TABLE_STATUS`] for v2 status frames).
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// `XENMAPSPACE_gmfn`: move guest frame `idx`.
pub const XENMAPSPACE_GMFN: u32 = 2;
/// `XENMAPSPACE_gmfn_range`: move `size` guest frames from `idx`.
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// `XENMAPSPACE_gmfn_foreign`: another domain's frame (batch op only).
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// `XENMAPSPACE_dev_mmio`: device MMIO (Arm only).
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;

/// `XENMAPIDX_grant_table_status`: flag in `idx` selecting grant status frames.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// `XENMEMF_populate_on_demand` flag for [`XenMemoryReservation::mem_flags`].
pub const XENMEMF_POPULATE_ON_DEMAND: u32 = 1 << 16;

/// `struct xen_memory_reservation`. 32 bytes on x86_64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryReservation {
    /// Guest virtual address of an array of `nr_extents` `xen_pfn_t` (u64):
    /// frames to free (decrease) or to populate (populate; OUT: backed frames).
    pub extent_start: u64,
    /// Number of extents.
    pub nr_extents: u64,
    /// Each extent is `2^extent_order` pages.
    pub extent_order: u32,
    /// `XENMEMF_*` flags (address bits in bits 0..8, node in 8..16).
    pub mem_flags: u32,
    /// The domain; a domU must pass [`crate::DOMID_SELF`].
    pub domid: DomId,
}

/// `struct xen_memory_domain`. 2 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryDomain {
    /// The domain to query ([`crate::DOMID_SELF`]).
    pub domid: DomId,
}

/// `struct xen_add_to_physmap`. 24 bytes on x86_64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenAddToPhysmap {
    /// The domain ([`crate::DOMID_SELF`]).
    pub domid: DomId,
    /// Number of pages, for [`XENMAPSPACE_GMFN_RANGE`] only.
    pub size: u16,
    /// One of the `XENMAPSPACE_*` values.
    pub space: u32,
    /// Index into the space (e.g. grant frame number).
    pub idx: u64,
    /// The guest frame where the page should appear.
    pub gpfn: u64,
}

/// `struct xen_remove_from_physmap`. 16 bytes on x86_64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenRemoveFromPhysmap {
    /// The domain ([`crate::DOMID_SELF`]).
    pub domid: DomId,
    /// The guest frame to unmap.
    pub gpfn: u64,
}

/// `struct xen_memory_map`. 16 bytes on x86_64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryMap {
    /// IN: capacity of `buffer` in entries; OUT: entries written.
    pub nr_entries: u32,
    /// Guest virtual address of an array of 20-byte e820 entries.
    pub buffer: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_memory_h() {
        assert_eq!(size_of::<XenMemoryReservation>(), 32);
        assert_eq!(offset_of!(XenMemoryReservation, nr_extents), 8);
        assert_eq!(offset_of!(XenMemoryReservation, extent_order), 16);
        assert_eq!(offset_of!(XenMemoryReservation, mem_flags), 20);
        assert_eq!(offset_of!(XenMemoryReservation, domid), 24);

        assert_eq!(size_of::<XenMemoryDomain>(), 2);

        assert_eq!(size_of::<XenAddToPhysmap>(), 24);
        assert_eq!(offset_of!(XenAddToPhysmap, size), 2);
        assert_eq!(offset_of!(XenAddToPhysmap, space), 4);
        assert_eq!(offset_of!(XenAddToPhysmap, idx), 8);
        assert_eq!(offset_of!(XenAddToPhysmap, gpfn), 16);

        assert_eq!(size_of::<XenRemoveFromPhysmap>(), 16);
        assert_eq!(offset_of!(XenRemoveFromPhysmap, gpfn), 8);

        assert_eq!(size_of::<XenMemoryMap>(), 16);
        assert_eq!(offset_of!(XenMemoryMap, buffer), 8);
    }

    #[test]
    fn numbers_match_memory_h() {
        assert_eq!(
            [
                XENMEM_INCREASE_RESERVATION,
                XENMEM_DECREASE_RESERVATION,
                XENMEM_POPULATE_PHYSMAP,
                XENMEM_ADD_TO_PHYSMAP,
                XENMEM_MEMORY_MAP,
                XENMEM_REMOVE_FROM_PHYSMAP,
            ],
            [0, 1, 6, 7, 9, 15]
        );
        assert_eq!(XENMAPSPACE_SHARED_INFO, 0);
        assert_eq!(XENMAPSPACE_GRANT_TABLE, 1);
    }
}
