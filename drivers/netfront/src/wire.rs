//! Ring entries of the netif tx/rx rings and their one-page layouts (`xen/include/public/io/netif.h`).
//!
//! `xen-abi` defines the C structs with `to_bytes`/`from_bytes`; these
//! newtypes make them [`RingEntry`]s so [`xen_ring::FrontRing`] can copy them
//! in and out of the shared page. Decoding accepts every bit pattern.

use xen_abi::PAGE_SIZE;
use xen_abi::netif::{
    NET_RX_RING_SIZE, NET_TX_RING_SIZE, NetifExtraInfo, NetifRxRequest, NetifRxResponse,
    NetifTxRequest, NetifTxResponse,
};
use xen_ring::{LayoutError, RingEntry, RingLayout};

/// A tx request slot (`netif_tx_request_t`, 12 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxReq(pub NetifTxRequest);

/// A tx response slot (`netif_tx_response_t`, 4 bytes of a 12-byte slot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxRsp(pub NetifTxResponse);

/// An rx request slot (`netif_rx_request_t`, 8 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxReq(pub NetifRxRequest);

/// An rx response slot: the 8 raw bytes, which are a `netif_rx_response_t`
/// or, after `NETRXF_extra_info`, a `netif_extra_info_t`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxRsp(pub [u8; 8]);

impl RxRsp {
    /// The slot read as a data response.
    pub const fn response(&self) -> NetifRxResponse {
        NetifRxResponse::from_bytes(&self.0)
    }

    /// The slot read as an extra-info segment.
    pub const fn extra(&self) -> NetifExtraInfo {
        NetifExtraInfo::from_bytes(&self.0)
    }

    /// A data response slot.
    pub const fn from_response(r: &NetifRxResponse) -> Self {
        Self(r.to_bytes())
    }

    /// An extra-info slot.
    pub const fn from_extra(e: &NetifExtraInfo) -> Self {
        Self(e.to_bytes())
    }
}

impl RingEntry for TxReq {
    type Wire = [u8; 12];
    const ZERO_WIRE: [u8; 12] = [0; 12];
    fn to_wire(&self) -> [u8; 12] {
        self.0.to_bytes()
    }
    fn from_wire(w: &[u8; 12]) -> Self {
        Self(NetifTxRequest::from_bytes(w))
    }
}

impl RingEntry for TxRsp {
    type Wire = [u8; 4];
    const ZERO_WIRE: [u8; 4] = [0; 4];
    fn to_wire(&self) -> [u8; 4] {
        self.0.to_bytes()
    }
    fn from_wire(w: &[u8; 4]) -> Self {
        Self(NetifTxResponse::from_bytes(w))
    }
}

impl RingEntry for RxReq {
    type Wire = [u8; 8];
    const ZERO_WIRE: [u8; 8] = [0; 8];
    fn to_wire(&self) -> [u8; 8] {
        self.0.to_bytes()
    }
    fn from_wire(w: &[u8; 8]) -> Self {
        Self(NetifRxRequest::from_bytes(w))
    }
}

impl RingEntry for RxRsp {
    type Wire = [u8; 8];
    const ZERO_WIRE: [u8; 8] = [0; 8];
    fn to_wire(&self) -> [u8; 8] {
        self.0
    }
    fn from_wire(w: &[u8; 8]) -> Self {
        Self(*w)
    }
}

/// Stride of a tx ring slot: the union of a 12-byte request and a 4-byte
/// response, 4-aligned.
pub const TX_STRIDE: usize = NetifTxRequest::SIZE;
/// Stride of an rx ring slot: 8 bytes for both directions.
pub const RX_STRIDE: usize = NetifRxRequest::SIZE;

/// The one-page tx ring layout (256 entries).
pub fn tx_layout() -> Result<RingLayout, LayoutError> {
    RingLayout::with_entries(PAGE_SIZE, TX_STRIDE, NET_TX_RING_SIZE as u32)
}

/// The one-page rx ring layout (256 entries).
pub fn rx_layout() -> Result<RingLayout, LayoutError> {
    RingLayout::with_entries(PAGE_SIZE, RX_STRIDE, NET_RX_RING_SIZE as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_the_netif_h_ring_sizes() {
        assert_eq!(
            RingLayout::new(PAGE_SIZE, TX_STRIDE).map(|l| l.entries()),
            Ok(256)
        );
        assert_eq!(
            RingLayout::new(PAGE_SIZE, RX_STRIDE).map(|l| l.entries()),
            Ok(256)
        );
        assert_eq!(
            tx_layout().map(|l| l.entries()),
            Ok(NET_TX_RING_SIZE as u32)
        );
        assert_eq!(
            rx_layout().map(|l| l.entries()),
            Ok(NET_RX_RING_SIZE as u32)
        );
        assert_eq!(
            xen_abi::ring::ring_entries_for::<NetifTxRequest, NetifTxResponse>(PAGE_SIZE),
            256
        );
    }

    #[test]
    fn rx_slot_reads_as_response_or_extra() {
        let r = NetifRxResponse {
            id: 3,
            offset: 0,
            flags: 1,
            status: 60,
        };
        let s = RxRsp::from_wire(&RxRsp::from_response(&r).to_wire());
        assert_eq!(s.response(), r);
        let e = NetifExtraInfo::gso(1448, 1, 0, 0);
        assert_eq!(RxRsp::from_extra(&e).extra(), e);
    }
}
