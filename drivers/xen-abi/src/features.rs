//! Feature bits reported by `XENVER_get_features` (`features.h`).
//!
//! Source: `xen/include/public/features.h` (Xen 4.17). Each `XENFEAT_*` is a bit
//! number in the feature bitmap; bit `n` lives in 32-bit word `n / 32`, which is
//! read with `XENVER_get_features` and a [`crate::version::FeatureInfo`] whose
//! `submap_idx` is that word. Xen 4.17 has [`XENFEAT_NR_SUBMAPS`] = 1 word.

/// `XENFEAT_writable_page_tables`: page tables may be written directly (PV).
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// `XENFEAT_writable_descriptor_tables`: descriptor tables may be written directly (PV).
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// `XENFEAT_auto_translated_physmap`: Xen translates guest frames (true for PVH).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// `XENFEAT_supervisor_mode_kernel`: the guest kernel runs in ring 0.
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// `XENFEAT_pae_pgdir_above_4gb`: PAE page directories may live above 4 GiB.
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// `XENFEAT_mmu_pt_update_preserve_ad`: `MMU_PT_UPDATE_PRESERVE_AD` available (PV).
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// `XENFEAT_highmem_assist`: `MMU_{CLEAR,COPY}_PAGE` available (PV).
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
/// `XENFEAT_gnttab_map_avail_bits`: grant maps honour the PTE available-bit flags.
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// `XENFEAT_hvm_callback_vector`: event upcalls can be delivered on an IDT
/// vector (`HVM_PARAM_CALLBACK_IRQ` type vector / `HVMOP_set_evtchn_upcall_vector`).
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// `XENFEAT_hvm_safe_pvclock`: the pvclock in `vcpu_time_info` is safe to use
/// in an HVM/PVH guest.
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// `XENFEAT_hvm_pirqs`: HVM guests may use PIRQs.
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// `XENFEAT_dom0`: the guest may run as dom0.
pub const XENFEAT_DOM0: u32 = 11;
/// `XENFEAT_memory_op_vnode_supported`: `XENMEMF_vnode` is accepted.
/// (Bit 12, `XENFEAT_grant_map_identity`, is deprecated and not defined.)
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// `XENFEAT_ARM_SMCCC_supported`: Arm SMC calling convention (Arm only).
pub const XENFEAT_ARM_SMCCC_SUPPORTED: u32 = 14;
/// `XENFEAT_linux_rsdp_unrestricted`: the ACPI RSDP may be anywhere (PVH).
pub const XENFEAT_LINUX_RSDP_UNRESTRICTED: u32 = 15;
/// `XENFEAT_not_direct_mapped`: guest frames are not machine frames.
pub const XENFEAT_NOT_DIRECT_MAPPED: u32 = 16;
/// `XENFEAT_direct_mapped`: guest frame == machine frame.
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;

/// `XENFEAT_NR_SUBMAPS`: number of 32-bit words in the feature bitmap.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

/// The `submap_idx` that holds feature bit `feature`.
pub const fn submap_index(feature: u32) -> u32 {
    feature / 32
}

/// True if `submap` (the word read for [`submap_index`]`(feature)`) has
/// `feature` set.
pub const fn has_feature(submap: u32, feature: u32) -> bool {
    submap & (1 << (feature % 32)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_match_features_h() {
        assert_eq!(XENFEAT_AUTO_TRANSLATED_PHYSMAP, 2);
        assert_eq!(XENFEAT_HVM_CALLBACK_VECTOR, 8);
        assert_eq!(XENFEAT_HVM_SAFE_PVCLOCK, 9);
        assert_eq!(XENFEAT_DOM0, 11);
        assert_eq!(XENFEAT_MEMORY_OP_VNODE_SUPPORTED, 13);
        assert_eq!(XENFEAT_DIRECT_MAPPED, 17);
        // Every defined bit fits in the advertised number of submaps.
        assert!(submap_index(XENFEAT_DIRECT_MAPPED) < XENFEAT_NR_SUBMAPS);
    }

    #[test]
    fn feature_test_helpers() {
        let submap = (1 << XENFEAT_HVM_CALLBACK_VECTOR) | (1 << XENFEAT_HVM_SAFE_PVCLOCK);
        assert!(has_feature(submap, XENFEAT_HVM_CALLBACK_VECTOR));
        assert!(has_feature(submap, XENFEAT_HVM_SAFE_PVCLOCK));
        assert!(!has_feature(submap, XENFEAT_DOM0));
        assert_eq!(submap_index(31), 0);
        assert_eq!(submap_index(32), 1);
        assert!(has_feature(1, 32));
    }
}
