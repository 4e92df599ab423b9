//! The Xen CPUID leaves (`arch-x86/cpuid.h`).
//!
//! Xen's leaves start at `0x4000_0000` or, when Xen also presents a Viridian
//! interface, at a multiple of `0x100` above it. Search for the signature; do not
//! assume the base.

/// The first candidate base leaf.
pub const BASE_FIRST: u32 = 0x4000_0000;
/// The last candidate base leaf (inclusive).
pub const BASE_LAST: u32 = 0x4001_0000;
/// Step between candidate base leaves.
pub const BASE_STEP: u32 = 0x100;

/// `XEN_CPUID_SIGNATURE_EBX`: "XenV".
pub const SIGNATURE_EBX: u32 = 0x566e_6558;
/// `XEN_CPUID_SIGNATURE_ECX`: "MMXe".
pub const SIGNATURE_ECX: u32 = 0x6558_4d4d;
/// `XEN_CPUID_SIGNATURE_EDX`: "nVMM".
pub const SIGNATURE_EDX: u32 = 0x4d4d_566e;

/// Offset of the version leaf: `eax = major << 16 | minor`.
pub const LEAF_VERSION: u32 = 1;
/// Offset of the hypercall leaf: `eax` = number of hypercall pages, `ebx` = MSR index.
pub const LEAF_HYPERCALL: u32 = 2;
/// Offset of the time leaf; sub-leaf 0 `eax` bit 0 is vtsc, sub-leaf 1 gives the
/// pvclock scaling of the TSC, sub-leaf 2 `eax` the TSC frequency in kHz.
pub const LEAF_TIME: u32 = 3;
/// Offset of the HVM-specific leaf (`XEN_HVM_CPUID_*` flags in `eax`).
pub const LEAF_HVM: u32 = 4;

/// Returns true if `(ebx, ecx, edx)` of a base leaf spell Xen's signature.
pub const fn is_xen_signature(ebx: u32, ecx: u32, edx: u32) -> bool {
    ebx == SIGNATURE_EBX && ecx == SIGNATURE_ECX && edx == SIGNATURE_EDX
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_spells_xenvmmxenvmm() {
        let mut s = [0u8; 12];
        s[0..4].copy_from_slice(&super::SIGNATURE_EBX.to_le_bytes());
        s[4..8].copy_from_slice(&super::SIGNATURE_ECX.to_le_bytes());
        s[8..12].copy_from_slice(&super::SIGNATURE_EDX.to_le_bytes());
        assert_eq!(&s, b"XenVMMXenVMM");
    }
}
