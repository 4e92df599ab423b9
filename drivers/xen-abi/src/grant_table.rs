//! Grant table v1 entries, `GNTTABOP_*` operations and status codes (`grant_table.h`).
//!
//! A guest shares a page with another domain by filling an entry of its own grant
//! table (an array of [`GrantEntryV1`] in frames the guest maps with
//! `XENMAPSPACE_grant_table`) and passing the entry's index, the *grant reference*,
//! to the peer. The header prescribes the order of writes: `domid` and `frame`
//! first, a write barrier, then `flags`; access is revoked by an atomic
//! compare-exchange of `flags` to 0 that must fail while Xen has set
//! [`GTF_READING`] or [`GTF_WRITING`] for a peer mapping.

use crate::DomId;

/// `grant_ref_t`: an index into a domain's grant table.
pub type GrantRef = u32;

/// `grant_handle_t`: a mapping handle returned by `GNTTABOP_map_grant_ref`.
pub type GrantHandle = u32;

/// `struct grant_entry_v1`: one 8-byte entry of a version-1 grant table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantEntryV1 {
    /// `GTF_*` type and flags; the guest writes the type and `GTF_readonly`, Xen
    /// sets and clears `GTF_reading`/`GTF_writing`.
    pub flags: u16,
    /// The domain being granted access (written by the guest).
    pub domid: DomId,
    /// For `GTF_permit_access`: the guest frame the peer may map.
    pub frame: u32,
}

/// Byte offset of `flags` in a [`GrantEntryV1`].
pub const ENTRY_FLAGS_OFFSET: usize = 0;
/// Byte offset of `domid` in a [`GrantEntryV1`].
pub const ENTRY_DOMID_OFFSET: usize = 2;
/// Byte offset of `frame` in a [`GrantEntryV1`].
pub const ENTRY_FRAME_OFFSET: usize = 4;
/// Size of a [`GrantEntryV1`] in bytes.
pub const ENTRY_V1_SIZE: usize = 8;
/// Version-1 entries per 4 KiB grant-table frame.
pub const ENTRIES_PER_FRAME_V1: u32 = (crate::PAGE_SIZE / ENTRY_V1_SIZE) as u32;

/// `GNTTAB_NR_RESERVED_ENTRIES`: entries 0..8 are kept for the toolstack and are
/// never handed out by a guest allocator.
pub const NR_RESERVED_ENTRIES: u32 = 8;
/// `GNTTAB_RESERVED_CONSOLE`: the toolstack's grant of the console ring.
pub const RESERVED_CONSOLE: GrantRef = 0;
/// `GNTTAB_RESERVED_XENSTORE`: the toolstack's grant of the xenstore ring.
pub const RESERVED_XENSTORE: GrantRef = 1;

/// `GTF_invalid`: the entry grants nothing.
pub const GTF_INVALID: u16 = 0;
/// `GTF_permit_access`: allow `domid` to map/access `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `GTF_accept_transfer`: allow `domid` to transfer a frame to us.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// `GTF_transitive`: transitive grant (version 2 only).
pub const GTF_TRANSITIVE: u16 = 3;
/// `GTF_type_mask`: the bits holding the entry type.
pub const GTF_TYPE_MASK: u16 = 3;
/// `GTF_readonly`: restrict the peer to read-only mappings (guest sets).
pub const GTF_READONLY: u16 = 1 << 2;
/// `GTF_reading`: the peer currently has the frame mapped/accessed for reading (Xen sets).
pub const GTF_READING: u16 = 1 << 3;
/// `GTF_writing`: the peer currently has the frame mapped/accessed for writing (Xen sets).
pub const GTF_WRITING: u16 = 1 << 4;
/// `GTF_PWT`: x86 cache attribute for the grant.
pub const GTF_PWT: u16 = 1 << 5;
/// `GTF_PCD`: x86 cache attribute for the grant.
pub const GTF_PCD: u16 = 1 << 6;
/// `GTF_PAT`: x86 cache attribute for the grant.
pub const GTF_PAT: u16 = 1 << 7;
/// `GTF_sub_page`: grant only a sub-range of the page (version 2 only).
pub const GTF_SUB_PAGE: u16 = 1 << 8;
/// `GTF_reading | GTF_writing`: the "still in use by the peer" bits.
pub const GTF_IN_USE: u16 = GTF_READING | GTF_WRITING;

/// `GNTTABOP_map_grant_ref`.
pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
/// `GNTTABOP_unmap_grant_ref`.
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
/// `GNTTABOP_setup_table`: argument is a [`GnttabSetupTable`].
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
/// `GNTTABOP_dump_table`.
pub const GNTTABOP_DUMP_TABLE: u32 = 3;
/// `GNTTABOP_transfer`.
pub const GNTTABOP_TRANSFER: u32 = 4;
/// `GNTTABOP_copy`.
pub const GNTTABOP_COPY: u32 = 5;
/// `GNTTABOP_query_size`: argument is a [`GnttabQuerySize`].
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
/// `GNTTABOP_unmap_and_replace`.
pub const GNTTABOP_UNMAP_AND_REPLACE: u32 = 7;
/// `GNTTABOP_set_version`: argument is a [`GnttabSetVersion`].
pub const GNTTABOP_SET_VERSION: u32 = 8;
/// `GNTTABOP_get_status_frames`.
pub const GNTTABOP_GET_STATUS_FRAMES: u32 = 9;
/// `GNTTABOP_get_version`.
pub const GNTTABOP_GET_VERSION: u32 = 10;
/// `GNTTABOP_swap_grant_ref`.
pub const GNTTABOP_SWAP_GRANT_REF: u32 = 11;
/// `GNTTABOP_cache_flush`.
pub const GNTTABOP_CACHE_FLUSH: u32 = 12;

/// `struct gnttab_setup_table` (x86_64 layout, 24 bytes).
///
/// `frame_list` is a `XEN_GUEST_HANDLE(ulong)`: on x86_64 the guest virtual
/// address of an array of `nr_frames` 64-bit frame numbers Xen fills in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSetupTable {
    /// IN: domain ([`crate::DOMID_SELF`]).
    pub dom: DomId,
    /// Explicit C padding.
    pub pad0: u16,
    /// IN: number of frames wanted.
    pub nr_frames: u32,
    /// OUT: a `GNTST_*` code.
    pub status: i16,
    /// Explicit C padding before the 8-byte aligned handle.
    pub pad1: [u8; 6],
    /// IN: address of the output frame array (`XEN_GUEST_HANDLE(ulong)`).
    pub frame_list: u64,
}

/// `struct gnttab_query_size` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabQuerySize {
    /// IN: domain ([`crate::DOMID_SELF`]).
    pub dom: DomId,
    /// Explicit C padding.
    pub pad0: u16,
    /// OUT: frames the table has now.
    pub nr_frames: u32,
    /// OUT: the most frames the table may grow to.
    pub max_nr_frames: u32,
    /// OUT: a `GNTST_*` code.
    pub status: i16,
    /// Explicit C tail padding.
    pub pad1: u16,
}

/// `struct gnttab_set_version` (4 bytes): IN the wanted version, OUT the one in effect.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GnttabSetVersion {
    /// The grant table version (1 or 2).
    pub version: u32,
}

/// `GNTST_okay`.
pub const GNTST_OKAY: i16 = 0;
/// `GNTST_general_error`.
pub const GNTST_GENERAL_ERROR: i16 = -1;
/// `GNTST_bad_domain`.
pub const GNTST_BAD_DOMAIN: i16 = -2;
/// `GNTST_bad_gntref`.
pub const GNTST_BAD_GNTREF: i16 = -3;
/// `GNTST_bad_handle`.
pub const GNTST_BAD_HANDLE: i16 = -4;
/// `GNTST_bad_virt_addr`.
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
/// `GNTST_bad_dev_addr`.
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
/// `GNTST_no_device_space`.
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
/// `GNTST_permission_denied`.
pub const GNTST_PERMISSION_DENIED: i16 = -8;
/// `GNTST_bad_page`.
pub const GNTST_BAD_PAGE: i16 = -9;
/// `GNTST_bad_copy_arg`.
pub const GNTST_BAD_COPY_ARG: i16 = -10;
/// `GNTST_address_too_big`.
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
/// `GNTST_eagain`.
pub const GNTST_EAGAIN: i16 = -12;
/// `GNTST_no_space`.
pub const GNTST_NO_SPACE: i16 = -13;

/// A non-`okay` `GNTST_*` status, checked from the raw `int16_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrantStatusError {
    /// `GNTST_general_error`: general undefined error.
    GeneralError,
    /// `GNTST_bad_domain`: unrecognised domain id.
    BadDomain,
    /// `GNTST_bad_gntref`: unrecognised or inappropriate grant reference.
    BadGntref,
    /// `GNTST_bad_handle`: unrecognised or inappropriate handle.
    BadHandle,
    /// `GNTST_bad_virt_addr`: inappropriate virtual address to map.
    BadVirtAddr,
    /// `GNTST_bad_dev_addr`: inappropriate device address to unmap.
    BadDevAddr,
    /// `GNTST_no_device_space`: out of space in the I/O MMU.
    NoDeviceSpace,
    /// `GNTST_permission_denied`: not enough privilege.
    PermissionDenied,
    /// `GNTST_bad_page`: the page was invalid for the operation.
    BadPage,
    /// `GNTST_bad_copy_arg`: copy arguments cross a page boundary.
    BadCopyArg,
    /// `GNTST_address_too_big`: transfer page address too large.
    AddressTooBig,
    /// `GNTST_eagain`: operation not done; try again.
    Eagain,
    /// `GNTST_no_space`: out of space (handles etc.).
    NoSpace,
    /// A value the header does not define.
    Unknown(i16),
}

/// Checks a raw `GNTST_*` status: `Ok(())` for `GNTST_okay`, otherwise the error.
pub const fn check_status(status: i16) -> Result<(), GrantStatusError> {
    use GrantStatusError as E;
    Err(match status {
        GNTST_OKAY => return Ok(()),
        GNTST_GENERAL_ERROR => E::GeneralError,
        GNTST_BAD_DOMAIN => E::BadDomain,
        GNTST_BAD_GNTREF => E::BadGntref,
        GNTST_BAD_HANDLE => E::BadHandle,
        GNTST_BAD_VIRT_ADDR => E::BadVirtAddr,
        GNTST_BAD_DEV_ADDR => E::BadDevAddr,
        GNTST_NO_DEVICE_SPACE => E::NoDeviceSpace,
        GNTST_PERMISSION_DENIED => E::PermissionDenied,
        GNTST_BAD_PAGE => E::BadPage,
        GNTST_BAD_COPY_ARG => E::BadCopyArg,
        GNTST_ADDRESS_TOO_BIG => E::AddressTooBig,
        GNTST_EAGAIN => E::Eagain,
        GNTST_NO_SPACE => E::NoSpace,
        other => E::Unknown(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn entry_layout_matches_grant_table_h() {
        assert_eq!(size_of::<GrantEntryV1>(), ENTRY_V1_SIZE);
        assert_eq!(offset_of!(GrantEntryV1, flags), ENTRY_FLAGS_OFFSET);
        assert_eq!(offset_of!(GrantEntryV1, domid), ENTRY_DOMID_OFFSET);
        assert_eq!(offset_of!(GrantEntryV1, frame), ENTRY_FRAME_OFFSET);
        assert_eq!(ENTRIES_PER_FRAME_V1, 512);
    }

    #[test]
    fn op_struct_layouts_are_x86_64() {
        assert_eq!(size_of::<GnttabSetupTable>(), 24);
        assert_eq!(align_of::<GnttabSetupTable>(), 8);
        assert_eq!(offset_of!(GnttabSetupTable, dom), 0);
        assert_eq!(offset_of!(GnttabSetupTable, nr_frames), 4);
        assert_eq!(offset_of!(GnttabSetupTable, status), 8);
        assert_eq!(offset_of!(GnttabSetupTable, frame_list), 16);

        assert_eq!(size_of::<GnttabQuerySize>(), 16);
        assert_eq!(offset_of!(GnttabQuerySize, dom), 0);
        assert_eq!(offset_of!(GnttabQuerySize, nr_frames), 4);
        assert_eq!(offset_of!(GnttabQuerySize, max_nr_frames), 8);
        assert_eq!(offset_of!(GnttabQuerySize, status), 12);

        assert_eq!(size_of::<GnttabSetVersion>(), 4);
    }

    #[test]
    fn flag_bits() {
        assert_eq!(GTF_READONLY, 0x04);
        assert_eq!(GTF_READING, 0x08);
        assert_eq!(GTF_WRITING, 0x10);
        assert_eq!(GTF_IN_USE, 0x18);
        assert_eq!(GTF_SUB_PAGE, 0x100);
        assert_eq!(GTF_PERMIT_ACCESS & GTF_TYPE_MASK, GTF_PERMIT_ACCESS);
        assert_eq!(GTF_IN_USE & GTF_TYPE_MASK, 0);
    }

    #[test]
    fn status_codes() {
        assert_eq!(check_status(0), Ok(()));
        assert_eq!(check_status(-1), Err(GrantStatusError::GeneralError));
        assert_eq!(check_status(-3), Err(GrantStatusError::BadGntref));
        assert_eq!(check_status(-12), Err(GrantStatusError::Eagain));
        assert_eq!(check_status(-13), Err(GrantStatusError::NoSpace));
        assert_eq!(check_status(-14), Err(GrantStatusError::Unknown(-14)));
        assert_eq!(check_status(5), Err(GrantStatusError::Unknown(5)));
        // Every defined code maps to a distinct variant.
        let mut seen = [None; 14];
        for (i, code) in (-13i16..=-1).enumerate() {
            let Err(e) = check_status(code) else {
                panic!("code {code} is not an error");
            };
            assert!(!matches!(e, GrantStatusError::Unknown(_)));
            assert!(!seen.contains(&Some(e)));
            seen[i] = Some(e);
        }
    }
}
