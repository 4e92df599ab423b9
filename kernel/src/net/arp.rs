//! Gratuitous ARP: announces our MAC/IPv4 pair after the vif reconnects.
//!
//! After a restore or migration the vif is a new back-end port on the bridge (and
//! possibly another host); an unsolicited ARP request for our own address (RFC 5227
//! §3 "ARP Announcement": sender and target protocol address both ours, target
//! hardware address zero, broadcast) refreshes the bridge's forwarding table and the
//! peers' neighbour caches at once, as Linux netfront does with `netif_notify_peers`
//! on resume. Built with smoltcp's wire types (RFC 826 layout).

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Ipv4Address,
};

/// The frame's length: 14 (Ethernet) + 28 (ARP), padded to the 60-byte minimum
/// Ethernet frame (without FCS).
pub const ANNOUNCE_LEN: usize = 60;

/// Writes an ARP announcement of `ip` at `mac` into `buf` (which must be
/// [`ANNOUNCE_LEN`] bytes; a shorter buffer is left untouched).
pub fn write_announcement(buf: &mut [u8], mac: EthernetAddress, ip: Ipv4Address) {
    if buf.len() < ANNOUNCE_LEN {
        return;
    }
    buf.fill(0);
    let eth = EthernetRepr {
        src_addr: mac,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: ip,
    };
    let mut frame = EthernetFrame::new_unchecked(buf);
    eth.emit(&mut frame);
    // The payload is 46 bytes, more than the 28 an Ethernet/IPv4 ARP packet takes.
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
}
