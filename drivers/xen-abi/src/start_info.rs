//! The PVH start-of-day structures (`arch-x86/hvm/start_info.h`).
//!
//! On PVH entry `%ebx` holds the physical address of an [`HvmStartInfo`]. Version 1
//! added the memory map; Xen 4.17 writes version 1.

/// `XEN_HVM_START_MAGIC_VALUE`: the first field of a valid [`HvmStartInfo`].
pub const HVM_START_MAGIC: u32 = 0x336e_c578;

/// `struct hvm_start_info`: what the domain builder hands a PVH guest.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmStartInfo {
    /// Must be [`HVM_START_MAGIC`].
    pub magic: u32,
    /// Version of this structure (0 or 1).
    pub version: u32,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Number of [`HvmModlistEntry`] at `modlist_paddr`.
    pub nr_modules: u32,
    /// Physical address of the module list.
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated command line, or 0.
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP, or 0.
    pub rsdp_paddr: u64,
    /// (version 1) Physical address of the [`HvmMemmapEntry`] table.
    pub memmap_paddr: u64,
    /// (version 1) Number of entries in the memory map.
    pub memmap_entries: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// `struct hvm_modlist_entry`: one boot module.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmModlistEntry {
    /// Physical address of the module.
    pub paddr: u64,
    /// Size of the module in bytes.
    pub size: u64,
    /// Physical address of the module's command line, or 0.
    pub cmdline_paddr: u64,
    /// Must be zero.
    pub reserved: u64,
}

/// `struct hvm_memmap_table_entry`: one range of the e820-style memory map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmMemmapEntry {
    /// Base physical address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// One of the `MEMMAP_TYPE_*` values.
    pub kind: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// `XEN_HVM_MEMMAP_TYPE_RAM`: usable RAM.
pub const MEMMAP_TYPE_RAM: u32 = 1;
/// `XEN_HVM_MEMMAP_TYPE_RESERVED`.
pub const MEMMAP_TYPE_RESERVED: u32 = 2;
/// `XEN_HVM_MEMMAP_TYPE_ACPI`: ACPI tables, reclaimable.
pub const MEMMAP_TYPE_ACPI: u32 = 3;
/// `XEN_HVM_MEMMAP_TYPE_NVS`: ACPI non-volatile storage.
pub const MEMMAP_TYPE_NVS: u32 = 4;
/// `XEN_HVM_MEMMAP_TYPE_UNUSABLE`.
pub const MEMMAP_TYPE_UNUSABLE: u32 = 5;
/// `XEN_HVM_MEMMAP_TYPE_DISABLED`.
pub const MEMMAP_TYPE_DISABLED: u32 = 6;
/// `XEN_HVM_MEMMAP_TYPE_PMEM`: persistent memory.
pub const MEMMAP_TYPE_PMEM: u32 = 7;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_start_info_h() {
        assert_eq!(size_of::<HvmStartInfo>(), 56);
        assert_eq!(offset_of!(HvmStartInfo, modlist_paddr), 16);
        assert_eq!(offset_of!(HvmStartInfo, cmdline_paddr), 24);
        assert_eq!(offset_of!(HvmStartInfo, rsdp_paddr), 32);
        assert_eq!(offset_of!(HvmStartInfo, memmap_paddr), 40);
        assert_eq!(offset_of!(HvmStartInfo, memmap_entries), 48);
        assert_eq!(size_of::<HvmModlistEntry>(), 32);
        assert_eq!(size_of::<HvmMemmapEntry>(), 24);
        assert_eq!(offset_of!(HvmMemmapEntry, kind), 16);
    }
}
