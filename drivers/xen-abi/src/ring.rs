//! The classic shared request/response ring page (`io/ring.h`).
//!
//! A shared ring is one (or `2^order`) granted page(s) that start with a 64-byte
//! header holding four free-running 32-bit indices, followed by an array of
//! entries. Each entry is a C `union` of the request and the response type, so an
//! entry's stride is the larger of the two sizes rounded up to the union's
//! alignment. The number of entries is the number that fits after the header,
//! rounded down to a power of two so that an index is reduced to a slot with a
//! mask (`__RING_SIZE` / `__RD32` in `io/ring.h`).
//!
//! The indices (`RING_IDX`, an `unsigned int`) run freely and wrap at 2^32; the
//! distance between two of them is always taken with wrapping subtraction.
//! `SHARED_RING_INIT` sets both producer indices to 0 and both event indices to 1.

/// `RING_IDX`: a free-running ring index (wraps at 2^32).
pub type RingIdx = u32;

/// Byte offset of `req_prod` (written by the front end) in the shared page.
pub const REQ_PROD_OFFSET: usize = 0;
/// Byte offset of `req_event` (written by the back end) in the shared page.
pub const REQ_EVENT_OFFSET: usize = 4;
/// Byte offset of `rsp_prod` (written by the back end) in the shared page.
pub const RSP_PROD_OFFSET: usize = 8;
/// Byte offset of `rsp_event` (written by the front end) in the shared page.
pub const RSP_EVENT_OFFSET: usize = 12;
/// Byte offset of the `pvt` union (protocol-private bytes, e.g. netif smartpoll).
pub const PVT_OFFSET: usize = 16;
/// Size of the `pvt` union in bytes.
pub const PVT_SIZE: usize = 4;
/// Size of the `__pad` array that follows `pvt`.
pub const PAD_SIZE: usize = 44;
/// Size of the whole header: `offsetof(struct xxx_sring, ring)`.
pub const HEADER_SIZE: usize = 64;

/// Value `SHARED_RING_INIT` stores in both producer indices.
pub const INIT_PROD: RingIdx = 0;
/// Value `SHARED_RING_INIT` stores in both event indices ("notify me on the first
/// message").
pub const INIT_EVENT: RingIdx = 1;

/// The fixed header of `struct xxx_sring` (everything before `ring[]`).
///
/// Used for layout checks and by tests; a guest accesses the live page through the
/// `*_OFFSET` constants with atomics, never through a Rust reference.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SringHeader {
    /// Requests produced so far (front end writes).
    pub req_prod: RingIdx,
    /// Back end wants a notification when `req_prod` passes this (back end writes).
    pub req_event: RingIdx,
    /// Responses produced so far (back end writes).
    pub rsp_prod: RingIdx,
    /// Front end wants a notification when `rsp_prod` passes this (front end writes).
    pub rsp_event: RingIdx,
    /// The protocol-private `pvt` union, zeroed by `SHARED_RING_INIT`.
    pub pvt: [u8; PVT_SIZE],
    /// Padding up to [`HEADER_SIZE`], zeroed by `SHARED_RING_INIT`.
    pub pad: [u8; PAD_SIZE],
}

impl SringHeader {
    /// The header as `SHARED_RING_INIT` leaves it.
    pub const INIT: Self = Self {
        req_prod: INIT_PROD,
        req_event: INIT_EVENT,
        rsp_prod: INIT_PROD,
        rsp_event: INIT_EVENT,
        pvt: [0; PVT_SIZE],
        pad: [0; PAD_SIZE],
    };
}

/// Rounds `x` down to the nearest power of two; 0 stays 0 (`__RD32`).
pub const fn round_down_pow2(x: u32) -> u32 {
    if x == 0 {
        0
    } else {
        1 << (31 - x.leading_zeros())
    }
}

/// Stride in bytes of one `union xxx_sring_entry { req; rsp; }`: the larger size,
/// rounded up to the larger alignment. Returns `None` if an alignment is not a
/// power of two or the rounding overflows.
pub const fn entry_stride(
    req_size: usize,
    req_align: usize,
    rsp_size: usize,
    rsp_align: usize,
) -> Option<usize> {
    if !req_align.is_power_of_two() || !rsp_align.is_power_of_two() {
        return None;
    }
    let size = if req_size > rsp_size {
        req_size
    } else {
        rsp_size
    };
    let align = if req_align > rsp_align {
        req_align
    } else {
        rsp_align
    };
    match size.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Number of entries of `stride` bytes in a ring occupying `area_bytes` (header
/// included): `__RD32((area_bytes - 64) / stride)`, as `__CONST_RING_SIZE` computes
/// it. Returns 0 when not even one entry fits or `stride` is 0.
pub const fn ring_entries(area_bytes: usize, stride: usize) -> u32 {
    if stride == 0 || area_bytes < HEADER_SIZE {
        return 0;
    }
    let fit = (area_bytes - HEADER_SIZE) / stride;
    let fit = if fit > u32::MAX as usize {
        u32::MAX
    } else {
        fit as u32
    };
    round_down_pow2(fit)
}

/// [`ring_entries`] for a ring whose request and response types are `Req` and `Rsp`
/// as laid out in C (use the `#[repr(C)]` definitions of this crate).
pub const fn ring_entries_for<Req, Rsp>(area_bytes: usize) -> u32 {
    match entry_stride(
        core::mem::size_of::<Req>(),
        core::mem::align_of::<Req>(),
        core::mem::size_of::<Rsp>(),
        core::mem::align_of::<Rsp>(),
    ) {
        Some(stride) => ring_entries(area_bytes, stride),
        None => 0,
    }
}

/// Byte offset, from the start of the shared page, of the entry an index selects:
/// `HEADER_SIZE + (idx & (entries - 1)) * stride`. `entries` must be a power of two
/// (as [`ring_entries`] returns); the result is in bounds of the area that
/// produced `entries`.
pub const fn entry_offset(idx: RingIdx, entries: u32, stride: usize) -> usize {
    HEADER_SIZE + ((idx & entries.wrapping_sub(1)) as usize) * stride
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn header_layout_matches_ring_h() {
        assert_eq!(size_of::<SringHeader>(), HEADER_SIZE);
        assert_eq!(offset_of!(SringHeader, req_prod), REQ_PROD_OFFSET);
        assert_eq!(offset_of!(SringHeader, req_event), REQ_EVENT_OFFSET);
        assert_eq!(offset_of!(SringHeader, rsp_prod), RSP_PROD_OFFSET);
        assert_eq!(offset_of!(SringHeader, rsp_event), RSP_EVENT_OFFSET);
        assert_eq!(offset_of!(SringHeader, pvt), PVT_OFFSET);
        assert_eq!(offset_of!(SringHeader, pad), PVT_OFFSET + PVT_SIZE);
        assert_eq!(PVT_SIZE + PAD_SIZE, 48);
    }

    #[test]
    fn round_down_matches_rd32() {
        assert_eq!(round_down_pow2(0), 0);
        assert_eq!(round_down_pow2(1), 1);
        assert_eq!(round_down_pow2(2), 2);
        assert_eq!(round_down_pow2(3), 2);
        assert_eq!(round_down_pow2(36), 32);
        assert_eq!(round_down_pow2(336), 256);
        assert_eq!(round_down_pow2(0x8000_0000), 0x8000_0000);
        assert_eq!(round_down_pow2(u32::MAX), 0x8000_0000);
        for shift in 0..32 {
            let p = 1u32 << shift;
            assert_eq!(round_down_pow2(p), p);
            if p > 2 {
                assert_eq!(round_down_pow2(p - 1), p >> 1);
            }
        }
    }

    // Known ring sizes of the one-page rings Linux and Mini-OS use.
    #[test]
    fn known_ring_sizes() {
        // blkif: request 112 bytes (align 8), response 16 bytes (align 8) -> 36 fit -> 32.
        assert_eq!(entry_stride(112, 8, 16, 8), Some(112));
        assert_eq!(ring_entries(4096, 112), 32);
        // netif tx: request 12 (align 4), response 4 (align 2) -> 336 fit -> 256.
        assert_eq!(entry_stride(12, 4, 4, 2), Some(12));
        assert_eq!(ring_entries(4096, 12), 256);
        // netif rx: request 8, response 8 -> 504 fit -> 256.
        assert_eq!(ring_entries(4096, 8), 256);
        // A 2-page blkif ring (ring-page-order 1): (8192 - 64) / 112 = 72 -> 64.
        assert_eq!(ring_entries(8192, 112), 64);
    }

    #[test]
    fn stride_rounds_to_union_alignment() {
        assert_eq!(entry_stride(12, 4, 8, 8), Some(16));
        assert_eq!(entry_stride(1, 1, 1, 1), Some(1));
        assert_eq!(entry_stride(12, 3, 8, 8), None);
        assert_eq!(entry_stride(usize::MAX, 8, 1, 1), None);

        #[repr(C)]
        struct Req {
            _a: u32,
            _b: u32,
            _c: u32,
        }
        #[repr(C)]
        struct Rsp {
            _a: u64,
        }
        // Stride 16 (align 8): (4096 - 64) / 16 = 252 -> 128.
        assert_eq!(ring_entries_for::<Req, Rsp>(4096), 128);
    }

    #[test]
    fn degenerate_areas() {
        assert_eq!(ring_entries(0, 8), 0);
        assert_eq!(ring_entries(63, 8), 0);
        assert_eq!(ring_entries(64, 8), 0);
        assert_eq!(ring_entries(72, 8), 1);
        assert_eq!(ring_entries(4096, 0), 0);
        assert_eq!(ring_entries(4096, 4096), 0);
    }

    #[test]
    fn entry_offsets_wrap() {
        assert_eq!(entry_offset(0, 32, 112), 64);
        assert_eq!(entry_offset(31, 32, 112), 64 + 31 * 112);
        assert_eq!(entry_offset(32, 32, 112), 64);
        assert_eq!(entry_offset(u32::MAX, 32, 112), 64 + 31 * 112);
        assert!(entry_offset(u32::MAX, 32, 112) + 112 <= 4096);
    }
}
