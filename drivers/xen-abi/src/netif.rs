//! Network frontend/backend ring entries (`io/netif.h`).
//!
//! Source: `xen/include/public/io/netif.h` (Xen 4.17). The transmit ring carries
//! [`NetifTxRequest`]s (12-byte slots) and [`NetifTxResponse`]s; the receive
//! ring [`NetifRxRequest`]s and [`NetifRxResponse`]s (8-byte slots). A
//! [`NetifExtraInfo`] may occupy a request slot (tx, after `NETTXF_extra_info`)
//! or a response slot (rx, after `NETRXF_extra_info`).
//!
//! Each entry has `to_bytes`/`from_bytes` for its little-endian wire image, so
//! ring code can copy a slot out of shared memory once and decode the copy.
//! Decoding accepts any bytes (no panics); validating ids, sizes and flags
//! against what was posted is the driver's job.

/// `XEN_NETIF_NR_SLOTS_MIN`: slots per packet every backend must accept.
pub const XEN_NETIF_NR_SLOTS_MIN: usize = 18;
/// `XEN_NETIF_MAX_TX_SIZE`: largest packet size a tx request can state.
pub const XEN_NETIF_MAX_TX_SIZE: u32 = 0xFFFF;

/// Entries in a one-page tx ring: `(4096 - 64) / 12` rounded down to a power of
/// two (the `__RING_SIZE` rule of `io/ring.h`).
pub const NET_TX_RING_SIZE: usize = 256;
/// Entries in a one-page rx ring: `(4096 - 64) / 8` rounded down to a power of two.
pub const NET_RX_RING_SIZE: usize = 256;

/// `NETTXF_csum_blank`: the protocol checksum is not filled in (offload).
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// `NETTXF_data_validated`: the checksum has been validated.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// `NETTXF_more_data`: the packet continues in the next request.
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
/// `NETTXF_extra_info`: a [`NetifExtraInfo`] follows in the next slot.
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

/// `NETRXF_data_validated`: the checksum has been validated.
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
/// `NETRXF_csum_blank`: the protocol checksum is not filled in.
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
/// `NETRXF_more_data`: the packet continues in the next response.
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
/// `NETRXF_extra_info`: a [`NetifExtraInfo`] follows in the next slot.
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;
/// `NETRXF_gso_prefix` (deprecated): a GSO prefix precedes the packet.
pub const NETRXF_GSO_PREFIX: u16 = 1 << 4;

/// `NETIF_RSP_DROPPED`: the packet was dropped.
pub const NETIF_RSP_DROPPED: i16 = -2;
/// `NETIF_RSP_ERROR`: the request failed.
pub const NETIF_RSP_ERROR: i16 = -1;
/// `NETIF_RSP_OKAY`: success.
pub const NETIF_RSP_OKAY: i16 = 0;
/// `NETIF_RSP_NULL`: no response (slot used by an extra-info request).
pub const NETIF_RSP_NULL: i16 = 1;

/// `XEN_NETIF_EXTRA_TYPE_NONE` (never valid).
pub const XEN_NETIF_EXTRA_TYPE_NONE: u8 = 0;
/// `XEN_NETIF_EXTRA_TYPE_GSO`: segmentation offload parameters.
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
/// `XEN_NETIF_EXTRA_TYPE_MCAST_ADD`: add a multicast address.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_ADD: u8 = 2;
/// `XEN_NETIF_EXTRA_TYPE_MCAST_DEL`: remove a multicast address.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_DEL: u8 = 3;
/// `XEN_NETIF_EXTRA_TYPE_HASH`: packet hash value.
pub const XEN_NETIF_EXTRA_TYPE_HASH: u8 = 4;
/// `XEN_NETIF_EXTRA_TYPE_MAX`: one past the highest type.
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 5;

/// `XEN_NETIF_EXTRA_FLAG_MORE`: another extra-info slot follows.
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;

/// `XEN_NETIF_GSO_TYPE_NONE`.
pub const XEN_NETIF_GSO_TYPE_NONE: u8 = 0;
/// `XEN_NETIF_GSO_TYPE_TCPV4`.
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
/// `XEN_NETIF_GSO_TYPE_TCPV6`.
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

const fn u16_at<const N: usize>(b: &[u8; N], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

const fn u32_at<const N: usize>(b: &[u8; N], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// `struct netif_tx_request`. 12 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifTxRequest {
    /// Grant reference of the page holding the data.
    pub gref: u32,
    /// Offset of the data in that page.
    pub offset: u16,
    /// `NETTXF_*` flags.
    pub flags: u16,
    /// Request id, echoed in the response.
    pub id: u16,
    /// First slot: total packet size; later slots: fragment size.
    pub size: u16,
}

impl NetifTxRequest {
    /// Wire size.
    pub const SIZE: usize = 12;

    /// The little-endian wire image.
    pub const fn to_bytes(&self) -> [u8; 12] {
        let g = self.gref.to_le_bytes();
        let o = self.offset.to_le_bytes();
        let f = self.flags.to_le_bytes();
        let i = self.id.to_le_bytes();
        let s = self.size.to_le_bytes();
        [
            g[0], g[1], g[2], g[3], o[0], o[1], f[0], f[1], i[0], i[1], s[0], s[1],
        ]
    }

    /// Decodes a wire image.
    pub const fn from_bytes(b: &[u8; 12]) -> Self {
        NetifTxRequest {
            gref: u32_at(b, 0),
            offset: u16_at(b, 4),
            flags: u16_at(b, 6),
            id: u16_at(b, 8),
            size: u16_at(b, 10),
        }
    }
}

/// `struct netif_tx_response`. 4 bytes (in a 12-byte slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifTxResponse {
    /// The id of the request.
    pub id: u16,
    /// `NETIF_RSP_*`.
    pub status: i16,
}

impl NetifTxResponse {
    /// Wire size.
    pub const SIZE: usize = 4;

    /// The little-endian wire image.
    pub const fn to_bytes(&self) -> [u8; 4] {
        let i = self.id.to_le_bytes();
        let s = self.status.to_le_bytes();
        [i[0], i[1], s[0], s[1]]
    }

    /// Decodes a wire image.
    pub const fn from_bytes(b: &[u8; 4]) -> Self {
        NetifTxResponse {
            id: u16_at(b, 0),
            status: u16_at(b, 2) as i16,
        }
    }
}

/// `struct netif_rx_request`. 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifRxRequest {
    /// Request id, echoed in the response.
    pub id: u16,
    /// Padding.
    pub pad: u16,
    /// Grant reference of the page the backend fills.
    pub gref: u32,
}

impl NetifRxRequest {
    /// Wire size.
    pub const SIZE: usize = 8;

    /// The little-endian wire image.
    pub const fn to_bytes(&self) -> [u8; 8] {
        let i = self.id.to_le_bytes();
        let p = self.pad.to_le_bytes();
        let g = self.gref.to_le_bytes();
        [i[0], i[1], p[0], p[1], g[0], g[1], g[2], g[3]]
    }

    /// Decodes a wire image.
    pub const fn from_bytes(b: &[u8; 8]) -> Self {
        NetifRxRequest {
            id: u16_at(b, 0),
            pad: u16_at(b, 2),
            gref: u32_at(b, 4),
        }
    }
}

/// `struct netif_rx_response`. 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifRxResponse {
    /// The id of the request (Linux relies on slot position instead).
    pub id: u16,
    /// Offset of the data in the granted page.
    pub offset: u16,
    /// `NETRXF_*` flags.
    pub flags: u16,
    /// Negative: `NETIF_RSP_*`; otherwise the fragment size in bytes.
    pub status: i16,
}

impl NetifRxResponse {
    /// Wire size.
    pub const SIZE: usize = 8;

    /// The little-endian wire image.
    pub const fn to_bytes(&self) -> [u8; 8] {
        let i = self.id.to_le_bytes();
        let o = self.offset.to_le_bytes();
        let f = self.flags.to_le_bytes();
        let s = self.status.to_le_bytes();
        [i[0], i[1], o[0], o[1], f[0], f[1], s[0], s[1]]
    }

    /// Decodes a wire image.
    pub const fn from_bytes(b: &[u8; 8]) -> Self {
        NetifRxResponse {
            id: u16_at(b, 0),
            offset: u16_at(b, 2),
            flags: u16_at(b, 4),
            status: u16_at(b, 6) as i16,
        }
    }

    /// `Ok(fragment size)` or `Err(NETIF_RSP_*)` for a negative status.
    pub const fn fragment_len(&self) -> Result<u16, i16> {
        if self.status < 0 {
            Err(self.status)
        } else {
            Ok(self.status as u16)
        }
    }
}

/// `struct netif_extra_info`: 8 bytes, 2-aligned. The C union `u` is kept as
/// its 6 raw bytes; use the accessors for the member that `kind` selects.
#[repr(C, align(2))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifExtraInfo {
    /// `XEN_NETIF_EXTRA_TYPE_*`.
    pub kind: u8,
    /// `XEN_NETIF_EXTRA_FLAG_*`.
    pub flags: u8,
    /// The union `u`, little-endian.
    pub u: [u8; 6],
}

impl NetifExtraInfo {
    /// Wire size.
    pub const SIZE: usize = 8;

    /// A GSO extra: `size` is the segment payload size (the TCP MSS).
    pub const fn gso(size: u16, gso_type: u8, features: u16, flags: u8) -> Self {
        let s = size.to_le_bytes();
        let f = features.to_le_bytes();
        NetifExtraInfo {
            kind: XEN_NETIF_EXTRA_TYPE_GSO,
            flags,
            u: [s[0], s[1], gso_type, 0, f[0], f[1]],
        }
    }

    /// A multicast add/delete extra (`kind` is `XEN_NETIF_EXTRA_TYPE_MCAST_*`).
    pub const fn mcast(kind: u8, addr: [u8; 6], flags: u8) -> Self {
        NetifExtraInfo {
            kind,
            flags,
            u: addr,
        }
    }

    /// `u.gso.size`.
    pub const fn gso_size(&self) -> u16 {
        u16::from_le_bytes([self.u[0], self.u[1]])
    }
    /// `u.gso.type` (`XEN_NETIF_GSO_TYPE_*`).
    pub const fn gso_type(&self) -> u8 {
        self.u[2]
    }
    /// `u.gso.features`.
    pub const fn gso_features(&self) -> u16 {
        u16::from_le_bytes([self.u[4], self.u[5]])
    }
    /// `u.mcast.addr`.
    pub const fn mcast_addr(&self) -> [u8; 6] {
        self.u
    }
    /// `u.hash`: `(type, algorithm, value)`.
    pub const fn hash(&self) -> (u8, u8, u32) {
        (
            self.u[0],
            self.u[1],
            u32::from_le_bytes([self.u[2], self.u[3], self.u[4], self.u[5]]),
        )
    }

    /// The wire image.
    pub const fn to_bytes(&self) -> [u8; 8] {
        let u = self.u;
        [self.kind, self.flags, u[0], u[1], u[2], u[3], u[4], u[5]]
    }

    /// Decodes a wire image.
    pub const fn from_bytes(b: &[u8; 8]) -> Self {
        NetifExtraInfo {
            kind: b[0],
            flags: b[1],
            u: [b[2], b[3], b[4], b[5], b[6], b[7]],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    /// `__RING_SIZE` for a one-page ring with `slot`-byte entries.
    fn ring_size(slot: usize) -> usize {
        let n = (crate::PAGE_SIZE - 64) / slot;
        1 << (usize::BITS - 1 - n.leading_zeros())
    }

    #[test]
    fn layouts_match_netif_h() {
        assert_eq!(size_of::<NetifTxRequest>(), NetifTxRequest::SIZE);
        assert_eq!(offset_of!(NetifTxRequest, offset), 4);
        assert_eq!(offset_of!(NetifTxRequest, flags), 6);
        assert_eq!(offset_of!(NetifTxRequest, id), 8);
        assert_eq!(offset_of!(NetifTxRequest, size), 10);

        assert_eq!(size_of::<NetifTxResponse>(), NetifTxResponse::SIZE);
        assert_eq!(offset_of!(NetifTxResponse, status), 2);

        assert_eq!(size_of::<NetifRxRequest>(), NetifRxRequest::SIZE);
        assert_eq!(offset_of!(NetifRxRequest, gref), 4);

        assert_eq!(size_of::<NetifRxResponse>(), NetifRxResponse::SIZE);
        assert_eq!(offset_of!(NetifRxResponse, offset), 2);
        assert_eq!(offset_of!(NetifRxResponse, flags), 4);
        assert_eq!(offset_of!(NetifRxResponse, status), 6);

        assert_eq!(size_of::<NetifExtraInfo>(), NetifExtraInfo::SIZE);
        assert_eq!(align_of::<NetifExtraInfo>(), 2);
        assert_eq!(offset_of!(NetifExtraInfo, u), 2);
        // An extra fits in both a tx request slot and an rx response slot.
        const { assert!(NetifExtraInfo::SIZE <= NetifTxRequest::SIZE) };
        const { assert!(NetifExtraInfo::SIZE <= NetifRxResponse::SIZE) };

        assert_eq!(NET_TX_RING_SIZE, ring_size(12));
        assert_eq!(NET_RX_RING_SIZE, ring_size(8));
    }

    #[test]
    fn wire_images_put_fields_at_their_offsets() {
        let tx = NetifTxRequest {
            gref: 0x0403_0201,
            offset: 0x0605,
            flags: NETTXF_MORE_DATA | NETTXF_CSUM_BLANK,
            id: 0x0a09,
            size: 0x0c0b,
        };
        let b = tx.to_bytes();
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 5, 0, 9, 10, 11, 12]);
        assert_eq!(NetifTxRequest::from_bytes(&b), tx);

        let rsp = NetifTxResponse::from_bytes(&[0x34, 0x12, 0xfe, 0xff]);
        assert_eq!(
            rsp,
            NetifTxResponse {
                id: 0x1234,
                status: NETIF_RSP_DROPPED
            }
        );
        assert_eq!(rsp.to_bytes(), [0x34, 0x12, 0xfe, 0xff]);

        let rxq = NetifRxRequest {
            id: 7,
            pad: 0,
            gref: 0x1122_3344,
        };
        assert_eq!(rxq.to_bytes(), [7, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
        assert_eq!(NetifRxRequest::from_bytes(&rxq.to_bytes()), rxq);

        let rx = NetifRxResponse::from_bytes(&[7, 0, 0x10, 0, 0x05, 0, 0xdc, 0x05]);
        assert_eq!(rx.id, 7);
        assert_eq!(rx.offset, 16);
        assert_eq!(rx.flags, NETRXF_DATA_VALIDATED | NETRXF_MORE_DATA);
        assert_eq!(rx.fragment_len(), Ok(1500));
        assert_eq!(NetifRxResponse::from_bytes(&rx.to_bytes()), rx);
        let err = NetifRxResponse {
            status: NETIF_RSP_ERROR,
            ..rx
        };
        assert_eq!(err.fragment_len(), Err(NETIF_RSP_ERROR));
    }

    #[test]
    fn extra_info_members() {
        let gso = NetifExtraInfo::gso(1460, XEN_NETIF_GSO_TYPE_TCPV4, 0, XEN_NETIF_EXTRA_FLAG_MORE);
        assert_eq!(gso.to_bytes(), [1, 1, 0xb4, 0x05, 1, 0, 0, 0]);
        assert_eq!(gso.gso_size(), 1460);
        assert_eq!(gso.gso_type(), XEN_NETIF_GSO_TYPE_TCPV4);
        assert_eq!(gso.gso_features(), 0);
        assert_eq!(NetifExtraInfo::from_bytes(&gso.to_bytes()), gso);

        let addr = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
        let m = NetifExtraInfo::mcast(XEN_NETIF_EXTRA_TYPE_MCAST_ADD, addr, 0);
        assert_eq!(m.mcast_addr(), addr);
        assert_eq!(m.to_bytes()[2..], addr);

        let h = NetifExtraInfo::from_bytes(&[XEN_NETIF_EXTRA_TYPE_HASH, 0, 1, 1, 4, 3, 2, 1]);
        assert_eq!(h.hash(), (1, 1, 0x0102_0304));
    }
}
