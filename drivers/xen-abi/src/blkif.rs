//! Block frontend/backend ring entries (`io/blkif.h`), x86_64 layout.
//!
//! Source: `xen/include/public/io/blkif.h` and `io/protocols.h` (Xen 4.17).
//! The C structs use natural alignment, so on x86_64 `blkif_request` has 4
//! padding bytes before `id` (offset 8) and is 112 bytes; the i386 ABI
//! (`x86_32-abi`) packs `id` at offset 4 instead and is NOT what these types
//! describe. A frontend using them writes `protocol = "x86_64-abi"`
//! ([`XEN_IO_PROTO_ABI_X86_64`]) to xenstore.
//!
//! Each entry has `to_bytes`/`from_bytes` for its little-endian wire image
//! (padding written as zero, ignored when read). Decoding accepts any bytes;
//! validating ids and statuses is the driver's job.

/// `XEN_IO_PROTO_ABI_X86_64` (`io/protocols.h`): the ring ABI these types use.
pub const XEN_IO_PROTO_ABI_X86_64: &str = "x86_64-abi";

/// `BLKIF_OP_READ`.
pub const BLKIF_OP_READ: u8 = 0;
/// `BLKIF_OP_WRITE`.
pub const BLKIF_OP_WRITE: u8 = 1;
/// `BLKIF_OP_WRITE_BARRIER` (optional, `feature-barrier`).
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
/// `BLKIF_OP_FLUSH_DISKCACHE` (optional, `feature-flush-cache`).
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
/// `BLKIF_OP_RESERVED_1` (reserved).
pub const BLKIF_OP_RESERVED_1: u8 = 4;
/// `BLKIF_OP_DISCARD` (optional, `feature-discard`); see [`BlkifRequestDiscard`].
pub const BLKIF_OP_DISCARD: u8 = 5;
/// `BLKIF_OP_INDIRECT` (optional, `feature-max-indirect-segments`); see
/// [`BlkifRequestIndirect`].
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`: segments in a direct request.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`: indirect segment pages per request.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// Segments per indirect page: `PAGE_SIZE / sizeof(blkif_request_segment)`.
pub const BLKIF_SEGS_PER_INDIRECT_FRAME: usize = crate::PAGE_SIZE / BlkifRequestSegment::SIZE;

/// `BLKIF_RSP_EOPNOTSUPP`: operation not supported.
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;
/// `BLKIF_RSP_ERROR`: the operation failed.
pub const BLKIF_RSP_ERROR: i16 = -1;
/// `BLKIF_RSP_OKAY`: success.
pub const BLKIF_RSP_OKAY: i16 = 0;

/// `BLKIF_DISCARD_SECURE` in [`BlkifRequestDiscard::flag`].
pub const BLKIF_DISCARD_SECURE: u8 = 1 << 0;

/// `VDISK_CDROM` bit of the backend's `info` node.
pub const VDISK_CDROM: u32 = 0x1;
/// `VDISK_REMOVABLE` bit of the backend's `info` node.
pub const VDISK_REMOVABLE: u32 = 0x2;
/// `VDISK_READONLY` bit of the backend's `info` node.
pub const VDISK_READONLY: u32 = 0x4;

/// Sector unit of `sector_number`, `first_sect`, `last_sect` unless the frontend
/// advertises `feature-large-sector-size` (then the backend's `sector-size`).
pub const SECTOR_SIZE: usize = 512;
/// 512-byte sectors in a page; segment sectors must be `< SECTORS_PER_PAGE`.
pub const SECTORS_PER_PAGE: u8 = (crate::PAGE_SIZE / SECTOR_SIZE) as u8;

/// Entries in a one-page blkif ring: `(4096 - 64) / 112` rounded down to a power
/// of two (the `__RING_SIZE` rule of `io/ring.h`).
pub const BLK_RING_SIZE: usize = 32;

const fn u16_at<const N: usize>(b: &[u8; N], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

const fn u32_at<const N: usize>(b: &[u8; N], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

const fn u64_at<const N: usize>(b: &[u8; N], at: usize) -> u64 {
    u64::from_le_bytes([
        b[at],
        b[at + 1],
        b[at + 2],
        b[at + 3],
        b[at + 4],
        b[at + 5],
        b[at + 6],
        b[at + 7],
    ])
}

/// Copies `src` into `dst` at `at` (const-friendly `copy_from_slice`).
const fn put<const N: usize, const M: usize>(mut dst: [u8; N], at: usize, src: [u8; M]) -> [u8; N] {
    let mut i = 0;
    while i < M {
        dst[at + i] = src[i];
        i += 1;
    }
    dst
}

/// `struct blkif_request_segment`: one granted page and the sector span in it.
/// 8 bytes (2 bytes tail padding).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkifRequestSegment {
    /// Grant reference of the data page.
    pub gref: u32,
    /// First sector in the page to transfer (inclusive).
    pub first_sect: u8,
    /// Last sector in the page to transfer (inclusive).
    pub last_sect: u8,
}

impl BlkifRequestSegment {
    /// Wire size.
    pub const SIZE: usize = 8;

    /// True if `first_sect <= last_sect < SECTORS_PER_PAGE` (512-byte sectors).
    pub const fn is_valid(&self) -> bool {
        self.first_sect <= self.last_sect && self.last_sect < SECTORS_PER_PAGE
    }

    /// The wire image.
    pub const fn to_bytes(&self) -> [u8; 8] {
        let g = self.gref.to_le_bytes();
        [
            g[0],
            g[1],
            g[2],
            g[3],
            self.first_sect,
            self.last_sect,
            0,
            0,
        ]
    }

    /// Decodes a wire image.
    pub const fn from_bytes(b: &[u8; 8]) -> Self {
        BlkifRequestSegment {
            gref: u32_at(b, 0),
            first_sect: b[4],
            last_sect: b[5],
        }
    }
}

/// `struct blkif_request` (read/write/barrier/flush). 112 bytes on x86_64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkifRequest {
    /// `BLKIF_OP_*`.
    pub operation: u8,
    /// Segments used in `seg` (`<= BLKIF_MAX_SEGMENTS_PER_REQUEST`).
    pub nr_segments: u8,
    /// Virtual device handle (read/write only).
    pub handle: u16,
    /// Guest-chosen id, echoed in the response.
    pub id: u64,
    /// Start sector on the disk.
    pub sector_number: u64,
    /// The segments.
    pub seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
}

impl BlkifRequest {
    /// Wire size.
    pub const SIZE: usize = 112;

    /// The wire image (padding zeroed).
    pub const fn to_bytes(&self) -> [u8; 112] {
        let mut b = [0u8; 112];
        b[0] = self.operation;
        b[1] = self.nr_segments;
        b = put(b, 2, self.handle.to_le_bytes());
        b = put(b, 8, self.id.to_le_bytes());
        b = put(b, 16, self.sector_number.to_le_bytes());
        let mut i = 0;
        while i < BLKIF_MAX_SEGMENTS_PER_REQUEST {
            b = put(
                b,
                24 + i * BlkifRequestSegment::SIZE,
                self.seg[i].to_bytes(),
            );
            i += 1;
        }
        b
    }

    /// Decodes a wire image.
    pub const fn from_bytes(b: &[u8; 112]) -> Self {
        let mut seg = [BlkifRequestSegment {
            gref: 0,
            first_sect: 0,
            last_sect: 0,
        }; BLKIF_MAX_SEGMENTS_PER_REQUEST];
        let mut i = 0;
        while i < BLKIF_MAX_SEGMENTS_PER_REQUEST {
            let at = 24 + i * BlkifRequestSegment::SIZE;
            seg[i] = BlkifRequestSegment {
                gref: u32_at(b, at),
                first_sect: b[at + 4],
                last_sect: b[at + 5],
            };
            i += 1;
        }
        BlkifRequest {
            operation: b[0],
            nr_segments: b[1],
            handle: u16_at(b, 2),
            id: u64_at(b, 8),
            sector_number: u64_at(b, 16),
            seg,
        }
    }
}

/// `struct blkif_request_discard` (`operation == BLKIF_OP_DISCARD`). 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkifRequestDiscard {
    /// [`BLKIF_OP_DISCARD`].
    pub operation: u8,
    /// [`BLKIF_DISCARD_SECURE`] or 0.
    pub flag: u8,
    /// Virtual device handle.
    pub handle: u16,
    /// Guest-chosen id, echoed in the response.
    pub id: u64,
    /// First sector to discard.
    pub sector_number: u64,
    /// Number of sectors to discard.
    pub nr_sectors: u64,
}

impl BlkifRequestDiscard {
    /// Wire size.
    pub const SIZE: usize = 32;

    /// The wire image (padding zeroed).
    pub const fn to_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0] = self.operation;
        b[1] = self.flag;
        b = put(b, 2, self.handle.to_le_bytes());
        b = put(b, 8, self.id.to_le_bytes());
        b = put(b, 16, self.sector_number.to_le_bytes());
        put(b, 24, self.nr_sectors.to_le_bytes())
    }

    /// Decodes a wire image (the first 32 bytes of a request slot).
    pub const fn from_bytes(b: &[u8; 32]) -> Self {
        BlkifRequestDiscard {
            operation: b[0],
            flag: b[1],
            handle: u16_at(b, 2),
            id: u64_at(b, 8),
            sector_number: u64_at(b, 16),
            nr_sectors: u64_at(b, 24),
        }
    }
}

/// `struct blkif_request_indirect` (`operation == BLKIF_OP_INDIRECT`). 64 bytes
/// on x86_64 (2 bytes padding after `handle`, 4 at the end).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkifRequestIndirect {
    /// [`BLKIF_OP_INDIRECT`].
    pub operation: u8,
    /// The real operation: [`BLKIF_OP_READ`] or [`BLKIF_OP_WRITE`].
    pub indirect_op: u8,
    /// Total segments, spread over the indirect pages.
    pub nr_segments: u16,
    /// Guest-chosen id, echoed in the response.
    pub id: u64,
    /// Start sector on the disk.
    pub sector_number: u64,
    /// Virtual device handle.
    pub handle: u16,
    /// Grant references of pages holding arrays of [`BlkifRequestSegment`].
    pub indirect_grefs: [u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
}

impl BlkifRequestIndirect {
    /// Wire size.
    pub const SIZE: usize = 64;

    /// The wire image (padding zeroed).
    pub const fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0] = self.operation;
        b[1] = self.indirect_op;
        b = put(b, 2, self.nr_segments.to_le_bytes());
        b = put(b, 8, self.id.to_le_bytes());
        b = put(b, 16, self.sector_number.to_le_bytes());
        b = put(b, 24, self.handle.to_le_bytes());
        let mut i = 0;
        while i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST {
            b = put(b, 28 + i * 4, self.indirect_grefs[i].to_le_bytes());
            i += 1;
        }
        b
    }

    /// Decodes a wire image (the first 64 bytes of a request slot).
    pub const fn from_bytes(b: &[u8; 64]) -> Self {
        let mut indirect_grefs = [0u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
        let mut i = 0;
        while i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST {
            indirect_grefs[i] = u32_at(b, 28 + i * 4);
            i += 1;
        }
        BlkifRequestIndirect {
            operation: b[0],
            indirect_op: b[1],
            nr_segments: u16_at(b, 2),
            id: u64_at(b, 8),
            sector_number: u64_at(b, 16),
            handle: u16_at(b, 24),
            indirect_grefs,
        }
    }
}

/// `struct blkif_response`. 16 bytes on x86_64.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkifResponse {
    /// The request's id.
    pub id: u64,
    /// The request's operation.
    pub operation: u8,
    /// `BLKIF_RSP_*`.
    pub status: i16,
}

impl BlkifResponse {
    /// Wire size.
    pub const SIZE: usize = 16;

    /// The wire image (padding zeroed).
    pub const fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b = put(b, 0, self.id.to_le_bytes());
        b[8] = self.operation;
        put(b, 10, self.status.to_le_bytes())
    }

    /// Decodes a wire image.
    pub const fn from_bytes(b: &[u8; 16]) -> Self {
        BlkifResponse {
            id: u64_at(b, 0),
            operation: b[8],
            status: u16_at(b, 10) as i16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn layouts_match_blkif_h_on_x86_64() {
        assert_eq!(size_of::<BlkifRequestSegment>(), BlkifRequestSegment::SIZE);
        assert_eq!(offset_of!(BlkifRequestSegment, first_sect), 4);
        assert_eq!(offset_of!(BlkifRequestSegment, last_sect), 5);

        assert_eq!(size_of::<BlkifRequest>(), BlkifRequest::SIZE);
        assert_eq!(align_of::<BlkifRequest>(), 8);
        assert_eq!(offset_of!(BlkifRequest, nr_segments), 1);
        assert_eq!(offset_of!(BlkifRequest, handle), 2);
        assert_eq!(offset_of!(BlkifRequest, id), 8);
        assert_eq!(offset_of!(BlkifRequest, sector_number), 16);
        assert_eq!(offset_of!(BlkifRequest, seg), 24);

        assert_eq!(size_of::<BlkifRequestDiscard>(), BlkifRequestDiscard::SIZE);
        assert_eq!(offset_of!(BlkifRequestDiscard, flag), 1);
        assert_eq!(offset_of!(BlkifRequestDiscard, handle), 2);
        assert_eq!(offset_of!(BlkifRequestDiscard, id), 8);
        assert_eq!(offset_of!(BlkifRequestDiscard, sector_number), 16);
        assert_eq!(offset_of!(BlkifRequestDiscard, nr_sectors), 24);

        assert_eq!(
            size_of::<BlkifRequestIndirect>(),
            BlkifRequestIndirect::SIZE
        );
        assert_eq!(offset_of!(BlkifRequestIndirect, nr_segments), 2);
        assert_eq!(offset_of!(BlkifRequestIndirect, id), 8);
        assert_eq!(offset_of!(BlkifRequestIndirect, sector_number), 16);
        assert_eq!(offset_of!(BlkifRequestIndirect, handle), 24);
        assert_eq!(offset_of!(BlkifRequestIndirect, indirect_grefs), 28);

        assert_eq!(size_of::<BlkifResponse>(), BlkifResponse::SIZE);
        assert_eq!(offset_of!(BlkifResponse, operation), 8);
        assert_eq!(offset_of!(BlkifResponse, status), 10);

        // Discard and indirect requests share the request slot.
        const { assert!(BlkifRequestDiscard::SIZE <= BlkifRequest::SIZE) };
        const { assert!(BlkifRequestIndirect::SIZE <= BlkifRequest::SIZE) };

        let n = (crate::PAGE_SIZE - 64) / BlkifRequest::SIZE;
        assert_eq!(BLK_RING_SIZE, 1 << (usize::BITS - 1 - n.leading_zeros()));
        assert_eq!(BLKIF_SEGS_PER_INDIRECT_FRAME, 512);
        assert_eq!(SECTORS_PER_PAGE, 8);
    }

    #[test]
    fn request_wire_image() {
        let mut req = BlkifRequest {
            operation: BLKIF_OP_WRITE,
            nr_segments: 2,
            handle: 0x0201,
            id: 0x1122_3344_5566_7788,
            sector_number: 0x0102_0304_0506_0708,
            ..BlkifRequest::default()
        };
        req.seg[0] = BlkifRequestSegment {
            gref: 9,
            first_sect: 0,
            last_sect: 7,
        };
        req.seg[10] = BlkifRequestSegment {
            gref: 0xaabb_ccdd,
            first_sect: 3,
            last_sect: 3,
        };
        let b = req.to_bytes();
        assert_eq!(b[..4], [BLKIF_OP_WRITE, 2, 0x01, 0x02]);
        assert_eq!(b[4..8], [0; 4]);
        assert_eq!(b[8..16], 0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(b[16..24], 0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(b[24..32], [9, 0, 0, 0, 0, 7, 0, 0]);
        assert_eq!(b[104..112], [0xdd, 0xcc, 0xbb, 0xaa, 3, 3, 0, 0]);
        assert_eq!(BlkifRequest::from_bytes(&b), req);
        assert!(req.seg[0].is_valid() && req.seg[10].is_valid());
        assert!(
            !BlkifRequestSegment {
                gref: 0,
                first_sect: 4,
                last_sect: 3
            }
            .is_valid()
        );
        assert!(
            !BlkifRequestSegment {
                gref: 0,
                first_sect: 0,
                last_sect: 8
            }
            .is_valid()
        );
        assert_eq!(
            BlkifRequestSegment::from_bytes(&req.seg[10].to_bytes()),
            req.seg[10]
        );
    }

    #[test]
    fn other_wire_images() {
        let d = BlkifRequestDiscard {
            operation: BLKIF_OP_DISCARD,
            flag: BLKIF_DISCARD_SECURE,
            handle: 3,
            id: 4,
            sector_number: 5,
            nr_sectors: 6,
        };
        let b = d.to_bytes();
        assert_eq!(b[..4], [5, 1, 3, 0]);
        assert_eq!(b[8], 4);
        assert_eq!(b[16], 5);
        assert_eq!(b[24], 6);
        assert_eq!(BlkifRequestDiscard::from_bytes(&b), d);
        let mut dirty = b;
        dirty[4..8].copy_from_slice(&[0xff; 4]);
        assert_eq!(BlkifRequestDiscard::from_bytes(&dirty), d);

        let mut ind = BlkifRequestIndirect {
            operation: BLKIF_OP_INDIRECT,
            indirect_op: BLKIF_OP_READ,
            nr_segments: 300,
            id: 1,
            sector_number: 2,
            handle: 0x0a0b,
            ..BlkifRequestIndirect::default()
        };
        ind.indirect_grefs[7] = 0x0403_0201;
        let b = ind.to_bytes();
        assert_eq!(b[..4], [6, 0, 0x2c, 0x01]);
        assert_eq!(b[24..28], [0x0b, 0x0a, 0, 0]);
        assert_eq!(b[56..64], [1, 2, 3, 4, 0, 0, 0, 0]);
        assert_eq!(BlkifRequestIndirect::from_bytes(&b), ind);
        // Padding bytes are ignored when decoding.
        let mut dirty = b;
        dirty[26] = 0xff;
        dirty[60] = 0xff;
        assert_eq!(BlkifRequestIndirect::from_bytes(&dirty), ind);

        let bytes = [
            8,
            7,
            6,
            5,
            4,
            3,
            2,
            1,
            BLKIF_OP_READ,
            0xee,
            0xff,
            0xff,
            0xee,
            0xee,
            0xee,
            0xee,
        ];
        let r = BlkifResponse::from_bytes(&bytes);
        assert_eq!(
            r,
            BlkifResponse {
                id: 0x0102_0304_0506_0708,
                operation: 0,
                status: BLKIF_RSP_ERROR
            }
        );
        let clean = r.to_bytes();
        assert_eq!(clean[9], 0);
        assert_eq!(clean[12..], [0; 4]);
        assert_eq!(BlkifResponse::from_bytes(&clean), r);
    }
}
