//! TCP/UDP-over-IPv4 checksums for the offloads netfront negotiates: checking what the back end did not vouch for, writing the partial sum on transmit.
//!
//! Receive: a Linux back end flags a packet `NETRXF_csum_blank` (its checksum
//! was never filled in: `CHECKSUM_PARTIAL` in dom0, locally generated or from
//! a guest that offloaded it; the field holds at best the pseudo-header sum)
//! or `NETRXF_data_validated` (dom0 or its NIC verified it). Like Linux
//! netfront, netfront trusts both flags, and verifies in software
//! ([`checksum_ok`]) only packets that carry neither; a blank packet must
//! still be one whose checksum could be set up ([`check_offloadable`]: IPv4,
//! TCP or UDP, not a fragment), as Linux's `skb_checksum_setup` demands.
//!
//! Transmit: [`blank_checksum`] writes the folded pseudo-header sum into the
//! field (RFC 793 / RFC 768 over the RFC 791 pseudo-header, RFC 1071
//! arithmetic), which is what a back end given `NETTXF_csum_blank` expects:
//! Linux netback marks the packet `CHECKSUM_PARTIAL` without recalculating the
//! pseudo-header, and whoever completes it sums from the transport header on,
//! field included. [`complete_checksum`] computes the full checksum (the
//! simulator completes the guest's blank frames with it, as dom0 would).
//!
//! Parsing goes through smoltcp's checked wire views (`EthernetFrame`,
//! `Ipv4Packet`, `TcpPacket`, `UdpPacket`, each built with `new_checked`) and
//! the sums through `smoltcp::wire::checksum` and the views' `fill_checksum`.
//!
//! No-panic promise: every view is length-checked (`new_checked`) before a
//! field is read; a frame too short for what its headers claim is an error.

use core::fmt;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket,
    checksum,
};

/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// Why a frame's TCP/UDP checksum could not be checked, completed or set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChecksumError {
    /// Not an IPv4 frame (IPv6 and VLAN-tagged frames are not offloaded to us:
    /// we do not advertise `feature-ipv6-csum-offload`).
    NotIpv4 {
        /// The frame's ethertype.
        ethertype: u16,
    },
    /// The frame ends before the headers or the IP total length it announces,
    /// or a TCP data offset / UDP length does not fit the segment.
    Truncated,
    /// The IPv4 header is malformed (version is not 4, IHL below 5, or a
    /// total length shorter than the header).
    BadIpHeader,
    /// An IP fragment: the transport header/payload is not all here.
    Fragment,
    /// Neither TCP nor UDP.
    UnsupportedProtocol(u8),
}

impl fmt::Display for ChecksumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChecksumError::NotIpv4 { ethertype } => {
                write!(f, "ethertype {ethertype:#06x} is not IPv4")
            }
            ChecksumError::Truncated => f.write_str("frame shorter than its headers announce"),
            ChecksumError::BadIpHeader => f.write_str("malformed IPv4 header"),
            ChecksumError::Fragment => f.write_str("IPv4 fragment"),
            ChecksumError::UnsupportedProtocol(p) => {
                write!(f, "IP protocol {p} is neither TCP nor UDP")
            }
        }
    }
}

/// Where the transport segment of an Ethernet/IPv4 frame lies, and its
/// pseudo-header fields.
struct Segment {
    src: IpAddress,
    dst: IpAddress,
    proto: IpProtocol,
    /// Offsets in the frame: the IP payload, up to the IP total length.
    start: usize,
    end: usize,
}

fn locate(frame: &[u8]) -> Result<Segment, ChecksumError> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| ChecksumError::Truncated)?;
    let ethertype = eth.ethertype();
    if ethertype != EthernetProtocol::Ipv4 {
        return Err(ChecksumError::NotIpv4 {
            ethertype: u16::from(ethertype),
        });
    }
    let bytes = eth.payload();
    let version_ihl = *bytes.first().ok_or(ChecksumError::Truncated)?;
    if version_ihl >> 4 != 4 || version_ihl & 0x0F < 5 {
        return Err(ChecksumError::BadIpHeader);
    }
    let ip = Ipv4Packet::new_checked(bytes).map_err(|_| {
        // `new_checked` does not say which check failed: a total length
        // shorter than a header that is all here is malformed, the rest is
        // truncation. (The view over 20 bytes reads only its fixed header.)
        match bytes.get(..20).map(Ipv4Packet::new_unchecked) {
            Some(h)
                if usize::from(h.header_len()) <= bytes.len()
                    && h.total_len() < u16::from(h.header_len()) =>
            {
                ChecksumError::BadIpHeader
            }
            _ => ChecksumError::Truncated,
        }
    })?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(ChecksumError::Fragment);
    }
    let start = EthernetFrame::<&[u8]>::header_len() + usize::from(ip.header_len());
    Ok(Segment {
        src: IpAddress::Ipv4(ip.src_addr()),
        dst: IpAddress::Ipv4(ip.dst_addr()),
        proto: ip.next_header(),
        start,
        end: start + ip.payload().len(),
    })
}

/// A TCP reset seen on the wire: its endpoints and sequence number. The
/// counters keep the last one, so a connection that a reset ended can be named
/// on the console (`xenrs info: net: vif/N: sent TCP RST ...`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpReset {
    /// Source address (IPv4, network order as read).
    pub src: [u8; 4],
    /// Source port.
    pub src_port: u16,
    /// Destination address.
    pub dst: [u8; 4],
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful when the ACK flag is set).
    pub ack: Option<u32>,
}

impl fmt::Display for TcpReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.src;
        let [e, g, h, i] = self.dst;
        write!(
            f,
            "{a}.{b}.{c}.{d}:{} -> {e}.{g}.{h}.{i}:{} seq={}",
            self.src_port, self.dst_port, self.seq
        )?;
        if let Some(ack) = self.ack {
            write!(f, " ack={ack}")?;
        }
        Ok(())
    }
}

/// The reset an Ethernet/IPv4 frame carries, if it is a TCP segment with RST
/// set (anything else, malformed frames included, is `None`).
pub fn tcp_reset(frame: &[u8]) -> Option<TcpReset> {
    let at = locate(frame).ok()?;
    if at.proto != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(frame.get(at.start..at.end)?).ok()?;
    if !tcp.rst() {
        return None;
    }
    // `locate` reads IPv4 headers only, so both are IPv4 addresses.
    #[allow(irrefutable_let_patterns)]
    let (IpAddress::Ipv4(src), IpAddress::Ipv4(dst)) = (at.src, at.dst) else {
        return None;
    };
    Some(TcpReset {
        src: src.octets(),
        src_port: tcp.src_port(),
        dst: dst.octets(),
        dst_port: tcp.dst_port(),
        seq: tcp.seq_number().0 as u32,
        ack: tcp.ack().then(|| tcp.ack_number().0 as u32),
    })
}

/// Computes and stores the TCP or UDP checksum of an Ethernet/IPv4 frame whose
/// checksum field is blank or holds only the pseudo-header sum. Bytes beyond
/// the IP total length (Ethernet padding) are left alone.
pub fn complete_checksum(frame: &mut [u8]) -> Result<(), ChecksumError> {
    let at = locate(frame)?;
    let seg = frame
        .get_mut(at.start..at.end)
        .ok_or(ChecksumError::Truncated)?;
    match at.proto {
        IpProtocol::Tcp => TcpPacket::new_checked(seg)
            .map_err(|_| ChecksumError::Truncated)?
            .fill_checksum(&at.src, &at.dst),
        // Writes all ones for a computed zero (RFC 768: zero means "none").
        IpProtocol::Udp => UdpPacket::new_checked(seg)
            .map_err(|_| ChecksumError::Truncated)?
            .fill_checksum(&at.src, &at.dst),
        p => return Err(ChecksumError::UnsupportedProtocol(u8::from(p))),
    }
    Ok(())
}

/// Whether a frame is one whose checksum can be offloaded: Ethernet, IPv4
/// (not a fragment), and a TCP or UDP header that fits the segment. Reads
/// headers only.
pub fn check_offloadable(frame: &[u8]) -> Result<(), ChecksumError> {
    offloadable_protocol(frame).map(|_| ())
}

/// The IP protocol number ([`IPPROTO_TCP`] or [`IPPROTO_UDP`]) of a frame
/// whose checksum can be offloaded (see [`check_offloadable`]).
pub fn offloadable_protocol(frame: &[u8]) -> Result<u8, ChecksumError> {
    let at = locate(frame)?;
    let seg = frame
        .get(at.start..at.end)
        .ok_or(ChecksumError::Truncated)?;
    match at.proto {
        IpProtocol::Tcp => TcpPacket::new_checked(seg)
            .map(|_| IPPROTO_TCP)
            .map_err(|_| ChecksumError::Truncated),
        IpProtocol::Udp => UdpPacket::new_checked(seg)
            .map(|_| IPPROTO_UDP)
            .map_err(|_| ChecksumError::Truncated),
        p => Err(ChecksumError::UnsupportedProtocol(u8::from(p))),
    }
}

/// Whether the TCP/UDP checksum of an Ethernet/IPv4 frame verifies (a UDP
/// checksum of zero, "none", counts as valid).
pub fn checksum_ok(frame: &[u8]) -> Result<bool, ChecksumError> {
    let at = locate(frame)?;
    let seg = frame
        .get(at.start..at.end)
        .ok_or(ChecksumError::Truncated)?;
    // Summed here rather than with the views' `verify_checksum`, which
    // smoltcp makes always true under `cfg(fuzzing)`.
    let (len, covered) = match at.proto {
        IpProtocol::Tcp => {
            TcpPacket::new_checked(seg).map_err(|_| ChecksumError::Truncated)?;
            (seg.len(), seg)
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(seg).map_err(|_| ChecksumError::Truncated)?;
            if udp.checksum() == 0 {
                return Ok(true);
            }
            let len = usize::from(udp.len());
            (len, seg.get(..len).ok_or(ChecksumError::Truncated)?)
        }
        p => return Err(ChecksumError::UnsupportedProtocol(u8::from(p))),
    };
    let sum = checksum::combine(&[pseudo_header(&at, len), checksum::data(covered)]);
    Ok(sum == 0xFFFF)
}

/// The folded pseudo-header sum over `len` transport bytes.
fn pseudo_header(at: &Segment, len: usize) -> u16 {
    // An IPv4 payload is below 64 KiB.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    checksum::pseudo_header(&at.src, &at.dst, at.proto, len)
}

/// Replaces the transport checksum with the folded pseudo-header sum, as a
/// Linux sender with checksum offload leaves it (`CHECKSUM_PARTIAL`): what
/// netfront's transmit offload writes before setting `NETTXF_csum_blank`.
pub fn blank_checksum(frame: &mut [u8]) -> Result<(), ChecksumError> {
    let at = locate(frame)?;
    let seg = frame
        .get_mut(at.start..at.end)
        .ok_or(ChecksumError::Truncated)?;
    match at.proto {
        IpProtocol::Tcp => {
            let partial = pseudo_header(&at, seg.len());
            TcpPacket::new_checked(seg)
                .map_err(|_| ChecksumError::Truncated)?
                .set_checksum(partial);
        }
        IpProtocol::Udp => {
            let mut udp = UdpPacket::new_checked(seg).map_err(|_| ChecksumError::Truncated)?;
            let partial = pseudo_header(&at, usize::from(udp.len()));
            udp.set_checksum(partial);
        }
        p => return Err(ChecksumError::UnsupportedProtocol(u8::from(p))),
    }
    Ok(())
}

/// The length of the Ethernet, IPv4 and TCP headers of a TCP/IPv4 frame
/// (unfragmented, its TCP header within the segment): the part every
/// segment of a software-segmented TSO frame repeats.
pub fn tcp_headers_len(frame: &[u8]) -> Result<usize, ChecksumError> {
    let at = locate(frame)?;
    let seg = frame
        .get(at.start..at.end)
        .ok_or(ChecksumError::Truncated)?;
    if at.proto != IpProtocol::Tcp {
        return Err(ChecksumError::UnsupportedProtocol(u8::from(at.proto)));
    }
    let tcp = TcpPacket::new_checked(seg).map_err(|_| ChecksumError::Truncated)?;
    Ok(at.start + usize::from(tcp.header_len()))
}

/// Turns a copy of a TSO frame's headers followed by one chunk of its
/// payload into a proper segment: IPv4 total length and identification
/// (`+ index`, as Linux numbers the segments of one TSO packet), IPv4 header
/// checksum, TCP sequence number (`+ offset`), FIN and PSH kept on the last
/// segment only, and the pseudo-header sum in the TCP checksum field (the
/// segment goes out with `NETTXF_csum_blank`).
pub fn fix_tso_segment(
    seg: &mut [u8],
    index: u16,
    offset: u32,
    last: bool,
) -> Result<(), ChecksumError> {
    let ip_len = seg
        .len()
        .checked_sub(EthernetFrame::<&[u8]>::header_len())
        .and_then(|n| u16::try_from(n).ok())
        .ok_or(ChecksumError::Truncated)?;
    let bytes = seg
        .get_mut(EthernetFrame::<&[u8]>::header_len()..)
        .ok_or(ChecksumError::Truncated)?;
    {
        // The total length is the old frame's: set it before the checked view
        // (which compares it with the buffer); 20 bytes are a fixed header.
        if bytes.len() < 20 {
            return Err(ChecksumError::Truncated);
        }
        Ipv4Packet::new_unchecked(&mut *bytes).set_total_len(ip_len);
        let mut ip = Ipv4Packet::new_checked(&mut *bytes).map_err(|_| ChecksumError::Truncated)?;
        let id = ip.ident().wrapping_add(index);
        ip.set_ident(id);
        ip.fill_checksum();
    }
    let ihl = usize::from(Ipv4Packet::new_unchecked(&*bytes).header_len());
    {
        let tcp_bytes = bytes.get_mut(ihl..).ok_or(ChecksumError::Truncated)?;
        let mut tcp = TcpPacket::new_checked(tcp_bytes).map_err(|_| ChecksumError::Truncated)?;
        let seq = tcp.seq_number() + offset as usize;
        tcp.set_seq_number(seq);
        if !last {
            tcp.set_fin(false);
            tcp.set_psh(false);
        }
    }
    blank_checksum(seg)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    /// Hex to bytes (test vectors).
    fn unhex(s: &str) -> alloc::vec::Vec<u8> {
        let s: alloc::vec::Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
        s.chunks(2)
            .map(|p| u8::from_str_radix(core::str::from_utf8(p).unwrap_or("00"), 16).unwrap_or(0))
            .collect()
    }

    /// A UDP/IPv4 frame 10.0.0.1:5353 -> 10.0.0.2:9 with payload "hello" and
    /// its UDP checksum 0x930D, worked out by hand:
    ///
    /// pseudo-header: 0a00+0001+0a00+0002+0011+000d = 0x1421
    /// UDP header + data: 14e9+0009+000d+0000+6865+6c6c+6f00 = 0x158d0
    /// 0x1421 + 0x158d0 = 0x16cf1, folded 0x6cf2, complemented 0x930d.
    const UDP_FRAME: &str = "
        020000000002 020000000001 0800
        4500 0021 0000 4000 4011 0000 0a000001 0a000002
        14e9 0009 000d 930d 68656c6c6f";

    /// A TCP/IPv4 frame 10.0.0.2:10809 -> 10.0.0.1:41900, RST|ACK,
    /// seq 0x01020304, ack 0x0a0b0c0d (checksum not filled in).
    const TCP_RST_FRAME: &str = "
        020000000001 020000000002 0800
        4500 0028 0000 4000 4006 0000 0a000002 0a000001
        2a39 a3ac 01020304 0a0b0c0d 5014 0000 0000 0000";

    #[test]
    fn tcp_resets_are_named() {
        let rst = unhex(TCP_RST_FRAME);
        let r = tcp_reset(&rst).expect("an RST");
        assert_eq!(r.src, [10, 0, 0, 2]);
        assert_eq!((r.src_port, r.dst_port), (10809, 41900));
        assert_eq!(r.seq, 0x0102_0304);
        assert_eq!(r.ack, Some(0x0a0b_0c0d));
        assert_eq!(
            alloc::format!("{r}"),
            "10.0.0.2:10809 -> 10.0.0.1:41900 seq=16909060 ack=168496141"
        );
        // The same segment without RST (ACK only), a UDP frame, and every
        // truncation of the RST frame: no reset, no panic.
        let mut ack = rst.clone();
        ack[47] = 0x10;
        assert_eq!(tcp_reset(&ack), None);
        assert_eq!(tcp_reset(&unhex(UDP_FRAME)), None);
        for n in 0..rst.len() {
            assert_eq!(tcp_reset(&rst[..n]), None, "{n} bytes");
        }
    }

    #[test]
    fn completes_a_known_udp_checksum() {
        let good = unhex(UDP_FRAME);
        assert_eq!(checksum_ok(&good), Ok(true));
        let mut blank = good.clone();
        // The field holds the pseudo-header sum, as Linux leaves it.
        blank_checksum(&mut blank).unwrap();
        assert_eq!(&blank[40..42], &0x1421u16.to_be_bytes());
        assert_eq!(checksum_ok(&blank), Ok(false));
        complete_checksum(&mut blank).unwrap();
        assert_eq!(blank, good);
        // A zeroed field completes the same way.
        let mut zero = good.clone();
        zero[40] = 0;
        zero[41] = 0;
        complete_checksum(&mut zero).unwrap();
        assert_eq!(zero, good);
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        let good = unhex(UDP_FRAME);
        let mut padded = good.clone();
        padded.resize(60, 0xAA);
        padded[40] = 0;
        padded[41] = 0;
        complete_checksum(&mut padded).unwrap();
        assert_eq!(&padded[..good.len()], &good[..]);
        assert!(padded[good.len()..].iter().all(|b| *b == 0xAA));
    }

    #[test]
    fn rejects_what_it_cannot_complete() {
        let good = unhex(UDP_FRAME);
        let mut v6 = good.clone();
        v6[12] = 0x86;
        v6[13] = 0xdd;
        assert_eq!(
            complete_checksum(&mut v6),
            Err(ChecksumError::NotIpv4 { ethertype: 0x86dd })
        );
        let mut frag = good.clone();
        frag[20] = 0x20; // MF
        assert_eq!(complete_checksum(&mut frag), Err(ChecksumError::Fragment));
        let mut icmp = good.clone();
        icmp[23] = 1;
        assert_eq!(
            complete_checksum(&mut icmp),
            Err(ChecksumError::UnsupportedProtocol(1))
        );
        let mut short = good.clone();
        short.truncate(40);
        assert_eq!(complete_checksum(&mut short), Err(ChecksumError::Truncated));
        let mut ihl = good.clone();
        ihl[14] = 0x44;
        assert_eq!(complete_checksum(&mut ihl), Err(ChecksumError::BadIpHeader));
        for n in 0..good.len() {
            let mut cut = good[..n].to_vec();
            assert!(complete_checksum(&mut cut).is_err());
            assert!(check_offloadable(&cut).is_err());
        }
        // What cannot be completed cannot be offloaded either.
        assert_eq!(check_offloadable(&good), Ok(()));
        assert_eq!(offloadable_protocol(&good), Ok(IPPROTO_UDP));
        assert_eq!(offloadable_protocol(&tcp_frame()), Ok(IPPROTO_TCP));
        assert_eq!(
            check_offloadable(&v6),
            Err(ChecksumError::NotIpv4 { ethertype: 0x86dd })
        );
        assert_eq!(check_offloadable(&frag), Err(ChecksumError::Fragment));
        assert_eq!(
            check_offloadable(&icmp),
            Err(ChecksumError::UnsupportedProtocol(1))
        );
        assert_eq!(check_offloadable(&ihl), Err(ChecksumError::BadIpHeader));
    }
    /// A TCP/IPv4 SYN 10.0.0.1:40000 -> 10.0.0.2:80, checksum completed.
    fn tcp_frame() -> alloc::vec::Vec<u8> {
        let mut f = unhex(
            "020000000002 020000000001 0800
             4500 0028 0000 4000 4006 0000 0a000001 0a000002
             9c40 0050 00000001 00000000 5002 ffff 0000 0000",
        );
        complete_checksum(&mut f).unwrap();
        f
    }

    #[test]
    fn tcp_completes_and_verifies() {
        let good = tcp_frame();
        assert_eq!(checksum_ok(&good), Ok(true));
        assert_ne!(&good[50..52], &[0, 0]);
        let mut blank = good.clone();
        blank_checksum(&mut blank).unwrap();
        assert_eq!(checksum_ok(&blank), Ok(false));
        complete_checksum(&mut blank).unwrap();
        assert_eq!(blank, good);
    }

    #[test]
    fn bad_lengths_are_errors() {
        let good = unhex(UDP_FRAME);
        // IP total length past the frame, and below the header.
        let mut long = good.clone();
        long[17] = 0x40;
        assert_eq!(complete_checksum(&mut long), Err(ChecksumError::Truncated));
        let mut short_total = good.clone();
        short_total[17] = 19;
        assert_eq!(
            complete_checksum(&mut short_total),
            Err(ChecksumError::BadIpHeader)
        );
        // IHL past the frame.
        let mut ihl = good[..30].to_vec();
        ihl[14] = 0x4F;
        assert_eq!(complete_checksum(&mut ihl), Err(ChecksumError::Truncated));
        // Version 6 in an IPv4 ethertype.
        let mut v = good.clone();
        v[14] = 0x65;
        assert_eq!(complete_checksum(&mut v), Err(ChecksumError::BadIpHeader));
        // UDP length field below 8 or past the IP payload.
        for udp_len in [7u8, 14] {
            let mut u = good.clone();
            u[39] = udp_len;
            assert_eq!(complete_checksum(&mut u), Err(ChecksumError::Truncated));
            assert_eq!(checksum_ok(&u), Err(ChecksumError::Truncated));
        }
        // TCP segment shorter than its fixed header, and a data offset past it.
        let tcp = tcp_frame();
        let mut cut = tcp.clone();
        cut[17] = 20 + 19;
        assert_eq!(complete_checksum(&mut cut), Err(ChecksumError::Truncated));
        let mut offset = tcp.clone();
        offset[46] = 0xF0;
        assert_eq!(
            complete_checksum(&mut offset),
            Err(ChecksumError::Truncated)
        );
        // Every prefix of a TCP frame too.
        for n in 0..tcp.len() {
            let mut c = tcp[..n].to_vec();
            assert!(complete_checksum(&mut c).is_err());
            assert!(blank_checksum(&mut c).is_err());
            assert!(checksum_ok(&c).is_err());
        }
    }

    #[test]
    fn fragments_and_other_frames_are_refused() {
        let good = unhex(UDP_FRAME);
        let mut offset = good.clone();
        offset[20] = 0x00;
        offset[21] = 0x01; // offset 8 bytes, DF clear
        assert_eq!(complete_checksum(&mut offset), Err(ChecksumError::Fragment));
        assert_eq!(checksum_ok(&offset), Err(ChecksumError::Fragment));
        let mut df = good.clone();
        df[20] = 0x40; // DF alone is no fragment
        assert!(complete_checksum(&mut df).is_ok());
        let mut arp = good.clone();
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert_eq!(
            blank_checksum(&mut arp),
            Err(ChecksumError::NotIpv4 { ethertype: 0x0806 })
        );
        let mut vlan = good.clone();
        vlan[12] = 0x81;
        vlan[13] = 0x00;
        assert_eq!(
            checksum_ok(&vlan),
            Err(ChecksumError::NotIpv4 { ethertype: 0x8100 })
        );
    }

    #[test]
    fn tso_segments_are_fixed_up() {
        let mut f = unhex(
            "020000000002 020000000001 0800
             4500 0030 1234 4000 4006 0000 0a000001 0a000002
             9c40 0050 00000001 00000000 5019 ffff 0000 0000
             0102030405060708",
        );
        assert_eq!(tcp_headers_len(&f), Ok(54));
        // The second half of the payload as segment 1 of 2 (FIN|PSH kept).
        let mut seg = f[..54].to_vec();
        seg.extend_from_slice(&f[58..]);
        fix_tso_segment(&mut seg, 1, 4, true).unwrap();
        assert_eq!(&seg[16..18], &[0, 44]);
        assert_eq!(&seg[18..20], &[0x12, 0x35]);
        assert_eq!(&seg[38..42], &[0, 0, 0, 5]);
        assert_eq!(seg[47], 0x19);
        let ip = Ipv4Packet::new_checked(&seg[14..]).unwrap();
        assert!(ip.verify_checksum());
        let mut full = seg.clone();
        complete_checksum(&mut full).unwrap();
        assert_eq!(checksum_ok(&full), Ok(true));
        let mut partial = full.clone();
        blank_checksum(&mut partial).unwrap();
        assert_eq!(partial, seg);
        // The first half: FIN and PSH cleared.
        f.truncate(58);
        fix_tso_segment(&mut f, 0, 0, false).unwrap();
        assert_eq!(f[47], 0x10);
        assert_eq!(&f[38..42], &[0, 0, 0, 1]);
        // Not TCP, or cut short: errors, no panic.
        let udp = unhex(UDP_FRAME);
        assert_eq!(
            tcp_headers_len(&udp),
            Err(ChecksumError::UnsupportedProtocol(17))
        );
        for n in 0..54 {
            let mut c = f[..n].to_vec();
            assert!(fix_tso_segment(&mut c, 0, 0, true).is_err());
            assert!(tcp_headers_len(&c).is_err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let base = [unhex(UDP_FRAME), tcp_frame()];
        for i in 0..50_000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut f = base[i % 2].clone();
            let at = (x as usize) % f.len();
            f[at] = (x >> 32) as u8;
            f.truncate((x >> 40) as usize % (f.len() + 8));
            let _ = checksum_ok(&f);
            let _ = check_offloadable(&f);
            let _ = tcp_headers_len(&f);
            let _ = fix_tso_segment(&mut f.clone(), 3, 7, i % 3 == 0);
            let _ = blank_checksum(&mut f);
            let _ = complete_checksum(&mut f);
        }
    }

    #[test]
    fn errors_display() {
        use alloc::string::ToString;
        assert_eq!(
            ChecksumError::NotIpv4 { ethertype: 0x86dd }.to_string(),
            "ethertype 0x86dd is not IPv4"
        );
        assert_eq!(
            ChecksumError::UnsupportedProtocol(1).to_string(),
            "IP protocol 1 is neither TCP nor UDP"
        );
    }
}
