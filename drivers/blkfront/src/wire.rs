//! blkif ring entries (`xen/include/public/io/blkif.h`): the 112-byte request slot and the 16-byte response.

use xen_abi::PAGE_SIZE;
use xen_abi::blkif::{BlkifRequest, BlkifRequestDiscard, BlkifRequestIndirect, BlkifResponse};
use xen_ring::{LayoutError, RingEntry, RingLayout};

/// Bytes of one ring slot: the largest request (`struct blkif_request`).
pub const SLOT_STRIDE: usize = BlkifRequest::SIZE;

/// A request as posted: one of the `blkif_request` union's shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkReq {
    /// Read, write, flush or barrier with direct segments.
    Rw(BlkifRequest),
    /// `BLKIF_OP_DISCARD`.
    Discard(BlkifRequestDiscard),
    /// `BLKIF_OP_INDIRECT`.
    Indirect(BlkifRequestIndirect),
}

impl RingEntry for BlkReq {
    type Wire = [u8; SLOT_STRIDE];
    const ZERO_WIRE: Self::Wire = [0; SLOT_STRIDE];

    fn to_wire(&self) -> Self::Wire {
        let mut w = [0u8; SLOT_STRIDE];
        match self {
            BlkReq::Rw(r) => w = r.to_bytes(),
            BlkReq::Discard(d) => {
                if let Some(dst) = w.get_mut(..BlkifRequestDiscard::SIZE) {
                    dst.copy_from_slice(&d.to_bytes());
                }
            }
            BlkReq::Indirect(i) => {
                if let Some(dst) = w.get_mut(..BlkifRequestIndirect::SIZE) {
                    dst.copy_from_slice(&i.to_bytes());
                }
            }
        }
        w
    }

    /// The front end never reads requests back; a slot decodes as the
    /// read/write shape (what a back end would see first).
    fn from_wire(wire: &Self::Wire) -> Self {
        BlkReq::Rw(BlkifRequest::from_bytes(wire))
    }
}

/// A response as read (a local copy; validated by the driver).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkRsp(pub BlkifResponse);

impl RingEntry for BlkRsp {
    type Wire = [u8; BlkifResponse::SIZE];
    const ZERO_WIRE: Self::Wire = [0; BlkifResponse::SIZE];

    fn to_wire(&self) -> Self::Wire {
        self.0.to_bytes()
    }

    fn from_wire(wire: &Self::Wire) -> Self {
        BlkRsp(BlkifResponse::from_bytes(wire))
    }
}

/// The layout of a ring over `2^order` pages (`__CONST_RING_SIZE(blkif,
/// PAGE_SIZE << order)`: 32, 64, 128, ... entries).
pub fn layout(order: u8) -> Result<RingLayout, LayoutError> {
    let area = PAGE_SIZE
        .checked_shl(u32::from(order))
        .ok_or(LayoutError::BadStride)?;
    RingLayout::new(area, SLOT_STRIDE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes_follow_ring_h() {
        for (order, entries) in [(0u8, 32u32), (1, 64), (2, 128), (4, 512)] {
            let l = layout(order).expect("layout");
            assert_eq!(l.entries(), entries, "order {order}");
        }
    }
}
