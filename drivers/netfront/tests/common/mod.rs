//! Frames the netfront host tests share, built with smoltcp's wire module
//! (an implementation independent of netfront's own checksum code).

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Address,
    Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};

/// The two ends of a TCP/IPv4 conversation over Ethernet.
pub struct TcpEnds {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Address,
    pub dst: Ipv4Address,
    pub src_port: u16,
    pub dst_port: u16,
}

/// A TCP/IPv4 frame (PSH, ACK 1, window 1024) carrying `payload` at `seq`,
/// its checksums complete.
pub fn tcp_frame(ends: &TcpEnds, payload: &[u8], seq: u32) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: ends.src_port,
        dst_port: ends.dst_port,
        control: TcpControl::Psh,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: Some(TcpSeqNumber(1)),
        window_len: 1024,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload,
    };
    let ip = Ipv4Repr {
        src_addr: ends.src,
        dst_addr: ends.dst,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(ends.src_mac),
        dst_addr: EthernetAddress(ends.dst_mac),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
    let mut e = EthernetFrame::new_unchecked(&mut buf);
    eth.emit(&mut e);
    let mut p = Ipv4Packet::new_unchecked(e.payload_mut());
    ip.emit(&mut p, &ChecksumCapabilities::default());
    let mut t = TcpPacket::new_unchecked(p.payload_mut());
    tcp.emit(
        &mut t,
        &ends.src.into(),
        &ends.dst.into(),
        &ChecksumCapabilities::default(),
    );
    buf
}
