//! `smoltcp::phy::Device` for [`NetFront`] (feature `smoltcp`).
//!
//! The receive token borrows only the rx reassembly buffer, the transmit
//! token only the tx pool, its ring and the event channel, so smoltcp can hold
//! both at once (to answer a packet while reading it). Capabilities: Ethernet,
//! MTU = IP MTU + 14 (1514 by default), and TCP/UDP checksums left to the
//! driver both ways (`Checksum::None`): on receive the driver delivers only
//! packets the back end vouched for (`NETRXF_csum_blank`/`_data_validated`)
//! or whose checksum it verified; on transmit it writes the pseudo-header sum
//! and sets `NETTXF_csum_blank | NETTXF_data_validated` (see the crate docs).
//! IPv4 header and ICMP checksums stay with smoltcp (`Checksum::Both`).
//! Segmentation: TCPv4 segments of up to 64 KiB (`segmentation.tcpv4`, less
//! than half the tx pool); the token takes smoltcp's segment size from
//! `set_meta` and the tx pool sends the frame whole with a GSO extra slot or
//! segments it (see [`crate::tx`]). A transmit token is handed out only with
//! room for the largest frame. Frames sent through the tokens are posted but
//! not published: the caller runs [`NetFront::flush_tx`] after each pass of the
//! stack (`Interface::poll*`), which pushes them in one go and notifies the
//! back end at most once (Linux netfront's `netdev_xmit_more` batching).

use alloc::vec;
use core::num::NonZeroUsize;

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use xen_abi::netif::{NETTXF_CSUM_BLANK, NETTXF_DATA_VALIDATED};

use crate::NetFront;
use crate::error::Fault;
use crate::rx::Rx;
use crate::tx::Tx;
use xen_frontend::{EventChannel, GrantAccess, PageProvider};

/// Receive token: the packet waiting in the reassembly buffer.
pub struct RxToken<'a, Pg> {
    rx: &'a mut Rx<Pg>,
}

/// Transmit token: one frame into the tx pool.
pub struct TxToken<'a, Pg> {
    tx: &'a mut Tx<Pg>,
    fault: &'a mut Option<Fault>,
    /// The TSO segment size smoltcp asked for (0: an ordinary frame).
    gso: u16,
}

impl<Pg: xen_ring::SharedRing> phy::RxToken for RxToken<'_, Pg> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        // A token exists only while a packet is ready.
        f(self.rx.take_ready())
    }
}

impl<Pg: xen_ring::SharedRing> phy::TxToken for TxToken<'_, Pg> {
    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.gso = meta.segmentation_offload_size.map_or(0, |s| s.get());
    }

    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        if self.fault.is_some() || self.tx.check(len, self.gso).is_err() {
            // The token was handed out with room for a full frame; only an
            // oversized or runt frame (or a fault meanwhile) gets here. The
            // stack builds it into a throwaway buffer and it is dropped.
            self.tx.stats.dropped += 1;
            return f(&mut vec![0u8; len]);
        }
        let frame = self.tx.frame_mut(len);
        let r = f(frame);
        // smoltcp left TCP/UDP checksums out (capabilities below): a
        // TCP/UDP-over-IPv4 frame gets the pseudo-header sum and the offload
        // flags; anything else (ARP, ICMP) is complete as it is.
        let flags = match crate::csum::blank_checksum(frame) {
            Ok(()) => NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED,
            Err(_) => 0,
        };
        if flags != 0
            && let Some(r) = crate::csum::tcp_reset(frame)
        {
            self.tx.stats.resets += 1;
            self.tx.stats.last_reset = Some(r);
        }
        // smoltcp asks for segmentation of TCP only; anything else with a
        // segment size (it cannot happen) goes as an ordinary frame if it fits.
        let gso = if flags != 0 { self.gso } else { 0 };
        // Published by `NetFront::flush_tx` after the stack's pass: one push
        // (and at most one notification) for all the frames of the pass.
        if let Err(fault) = self.tx.post_deferred(len, flags, gso) {
            *self.fault = Some(fault);
        }
        r
    }
}

impl<P, G, E> phy::Device for NetFront<P, G, E>
where
    P: PageProvider,
    G: GrantAccess<Page = P::Page>,
    E: EventChannel,
{
    type RxToken<'a>
        = RxToken<'a, P::Page>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, P::Page>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        if !self.poll_rx().ok()? {
            return None;
        }
        // The reply token may be unable to send; it then drops the reply
        // (counted), as a full NIC queue would.
        let _ = self.poll_tx();
        let (n, _) = self.dev.parts_mut();
        Some((
            RxToken { rx: &mut n.rx },
            TxToken {
                tx: &mut n.tx,
                fault: &mut n.fault,
                gso: 0,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if self.poll_tx().is_err() || !self.dev.driver().tx.token_room() {
            return None;
        }
        let (n, _) = self.dev.parts_mut();
        Some(TxToken {
            tx: &mut n.tx,
            fault: &mut n.fault,
            gso: 0,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = (self.mtu() as usize + crate::ETH_HLEN).min(self.max_frame());
        caps.max_burst_size = None;
        let mut checksum = ChecksumCapabilities::default();
        checksum.tcp = Checksum::None;
        checksum.udp = Checksum::None;
        caps.checksum = checksum;
        // TSO (smoltcp's `segmentation-offload`): TCP segments of up to
        // 64 KiB, sent whole with a GSO extra slot or segmented here.
        caps.segmentation.tcpv4 = NonZeroUsize::new(self.dev.driver().tx.tso_limit);
        caps
    }
}
