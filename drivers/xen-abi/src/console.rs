//! The PV console ring page (`io/console.h`).
//!
//! Its pfn and event channel come from `HVM_PARAM_CONSOLE_PFN` and
//! `HVM_PARAM_CONSOLE_EVTCHN`. The guest produces into `out` and consumes from `in`.

/// Size of the input (backend to guest) ring in bytes.
pub const IN_SIZE: usize = 1024;
/// Size of the output (guest to backend) ring in bytes.
pub const OUT_SIZE: usize = 2048;

/// Byte offset of `in[]` in the page.
pub const IN_OFFSET: usize = 0;
/// Byte offset of `out[]` in the page.
pub const OUT_OFFSET: usize = 1024;
/// Byte offset of `in_cons` (`XENCONS_RING_IDX`, a u32).
pub const IN_CONS_OFFSET: usize = 3072;
/// Byte offset of `in_prod`.
pub const IN_PROD_OFFSET: usize = 3076;
/// Byte offset of `out_cons`.
pub const OUT_CONS_OFFSET: usize = 3080;
/// Byte offset of `out_prod`.
pub const OUT_PROD_OFFSET: usize = 3084;

/// `struct xencons_interface`, for layout checks; the guest accesses the live page
/// through the offsets above, with atomics for the indices.
#[repr(C)]
pub struct XenconsInterface {
    /// Backend-to-guest bytes.
    pub input: [u8; IN_SIZE],
    /// Guest-to-backend bytes.
    pub output: [u8; OUT_SIZE],
    /// Input consumer index (guest writes).
    pub in_cons: u32,
    /// Input producer index (backend writes).
    pub in_prod: u32,
    /// Output consumer index (backend writes).
    pub out_cons: u32,
    /// Output producer index (guest writes).
    pub out_prod: u32,
}

/// Masks a free-running index into a ring of `size` bytes (a power of two).
pub const fn mask(index: u32, size: usize) -> usize {
    (index as usize) & (size - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn offsets_match_console_h() {
        assert_eq!(offset_of!(XenconsInterface, output), OUT_OFFSET);
        assert_eq!(offset_of!(XenconsInterface, in_cons), IN_CONS_OFFSET);
        assert_eq!(offset_of!(XenconsInterface, in_prod), IN_PROD_OFFSET);
        assert_eq!(offset_of!(XenconsInterface, out_cons), OUT_CONS_OFFSET);
        assert_eq!(offset_of!(XenconsInterface, out_prod), OUT_PROD_OFFSET);
        assert_eq!(mask(2049, OUT_SIZE), 1);
    }
}
