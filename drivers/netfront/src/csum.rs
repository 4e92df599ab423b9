//! Software completion of TCP/UDP checksums over IPv4 for `NETRXF_csum_blank` packets.
//!
//! A Linux dom0 hands a guest packets whose transport checksum was never
//! filled in (`CHECKSUM_PARTIAL` on its side: locally generated traffic, or
//! traffic from another guest that offloaded it); netback flags them
//! `NETRXF_csum_blank` (`xen/include/public/io/netif.h`). Such a packet holds at
//! best the pseudo-header sum in the checksum field, so a stack that verifies
//! checksums would drop it. [`complete_checksum`] computes the real checksum
//! (RFC 793 / RFC 768 over the RFC 791 pseudo-header, arithmetic of RFC 1071)
//! from scratch, ignoring whatever the field held, as Linux netfront does with
//! `skb_checksum_setup(skb, true)`.
//!
//! No-panic promise: every header field is read through bounds-checked
//! accessors; a frame too short for what its headers claim is an error.

/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// Why a checksum could not be completed (the packet is dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChecksumError {
    /// Not an IPv4 frame (IPv6 and VLAN-tagged frames are not offloaded to us:
    /// we do not advertise `feature-ipv6-csum-offload`).
    NotIpv4 {
        /// The frame's ethertype.
        ethertype: u16,
    },
    /// The frame ends before the headers or the IP total length it announces.
    Truncated,
    /// The IPv4 header is malformed (version is not 4, or IHL below 5).
    BadIpHeader,
    /// An IP fragment: the transport header/payload is not all here.
    Fragment,
    /// Neither TCP nor UDP.
    UnsupportedProtocol(u8),
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at.checked_add(1)?)?,
    ]))
}

/// One's-complement sum of `data` as big-endian 16-bit words (an odd last
/// byte is padded with zero), added to `acc` without folding.
pub fn sum_words(acc: u64, data: &[u8]) -> u64 {
    let (words, rest) = data.as_chunks::<2>();
    let mut sum = acc;
    for w in words {
        sum += u64::from(u16::from_be_bytes(*w));
    }
    if let [last] = *rest {
        sum += u64::from(u16::from_be_bytes([last, 0]));
    }
    sum
}

/// Folds a sum to 16 bits (end-around carry).
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

/// Where the IPv4 transport segment of an Ethernet frame lies.
struct L4<'a> {
    src: &'a [u8],
    dst: &'a [u8],
    proto: u8,
    start: usize,
    end: usize,
}

fn locate(frame: &[u8]) -> Result<L4<'_>, ChecksumError> {
    let ethertype = be16(frame, 12).ok_or(ChecksumError::Truncated)?;
    if ethertype != ETHERTYPE_IPV4 {
        return Err(ChecksumError::NotIpv4 { ethertype });
    }
    let ip = frame
        .get(crate::ETH_HLEN..)
        .ok_or(ChecksumError::Truncated)?;
    let vihl = *ip.first().ok_or(ChecksumError::Truncated)?;
    let ihl = usize::from(vihl & 0x0F) * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        return Err(ChecksumError::BadIpHeader);
    }
    if ip.len() < ihl {
        return Err(ChecksumError::Truncated);
    }
    let total = usize::from(be16(ip, 2).ok_or(ChecksumError::Truncated)?);
    if total < ihl {
        return Err(ChecksumError::BadIpHeader);
    }
    if total > ip.len() {
        return Err(ChecksumError::Truncated);
    }
    let frag = be16(ip, 6).ok_or(ChecksumError::Truncated)?;
    // MF set or a non-zero fragment offset.
    if frag & 0x3FFF != 0 {
        return Err(ChecksumError::Fragment);
    }
    let proto = *ip.get(9).ok_or(ChecksumError::Truncated)?;
    Ok(L4 {
        src: ip.get(12..16).ok_or(ChecksumError::Truncated)?,
        dst: ip.get(16..20).ok_or(ChecksumError::Truncated)?,
        proto,
        start: crate::ETH_HLEN + ihl,
        end: crate::ETH_HLEN + total,
    })
}

/// The offset of the checksum field within the transport header, and the
/// smallest valid transport header.
fn csum_field(proto: u8) -> Result<(usize, usize), ChecksumError> {
    match proto {
        IPPROTO_TCP => Ok((16, 20)),
        IPPROTO_UDP => Ok((6, 8)),
        p => Err(ChecksumError::UnsupportedProtocol(p)),
    }
}

fn pseudo_sum(l4: &L4<'_>) -> u64 {
    let len = (l4.end - l4.start) as u64;
    sum_words(sum_words(0, l4.src), l4.dst) + u64::from(l4.proto) + len
}

/// Computes and stores the TCP or UDP checksum of an Ethernet/IPv4 frame whose
/// checksum field is blank or holds only the pseudo-header sum. Bytes beyond
/// the IP total length (Ethernet padding) are left alone.
pub fn complete_checksum(frame: &mut [u8]) -> Result<(), ChecksumError> {
    let l4 = locate(frame)?;
    let (field, min) = csum_field(l4.proto)?;
    let (start, end, proto) = (l4.start, l4.end, l4.proto);
    if end - start < min {
        return Err(ChecksumError::Truncated);
    }
    let pseudo = pseudo_sum(&l4);
    let seg = frame.get_mut(start..end).ok_or(ChecksumError::Truncated)?;
    let slot = seg
        .get_mut(field..field + 2)
        .ok_or(ChecksumError::Truncated)?;
    slot.copy_from_slice(&[0, 0]);
    let mut csum = !fold(sum_words(pseudo, seg));
    if proto == IPPROTO_UDP && csum == 0 {
        // RFC 768: a computed zero is sent as all ones (zero means "none").
        csum = 0xFFFF;
    }
    if let Some(slot) = seg.get_mut(field..field + 2) {
        slot.copy_from_slice(&csum.to_be_bytes());
    }
    Ok(())
}

/// Whether the TCP/UDP checksum of an Ethernet/IPv4 frame verifies (a UDP
/// checksum of zero, "none", counts as valid).
pub fn checksum_ok(frame: &[u8]) -> Result<bool, ChecksumError> {
    let l4 = locate(frame)?;
    let (field, min) = csum_field(l4.proto)?;
    if l4.end - l4.start < min {
        return Err(ChecksumError::Truncated);
    }
    let seg = frame
        .get(l4.start..l4.end)
        .ok_or(ChecksumError::Truncated)?;
    if l4.proto == IPPROTO_UDP && be16(seg, field) == Some(0) {
        return Ok(true);
    }
    Ok(fold(sum_words(pseudo_sum(&l4), seg)) == 0xFFFF)
}

/// Replaces the transport checksum with the folded pseudo-header sum, as a
/// Linux sender with checksum offload leaves it (`CHECKSUM_PARTIAL`). For
/// tests and the simulator.
pub fn blank_checksum(frame: &mut [u8]) -> Result<(), ChecksumError> {
    let l4 = locate(frame)?;
    let (field, min) = csum_field(l4.proto)?;
    let (start, end) = (l4.start, l4.end);
    if end - start < min {
        return Err(ChecksumError::Truncated);
    }
    let partial = fold(pseudo_sum(&l4));
    if let Some(slot) = frame
        .get_mut(start..end)
        .and_then(|seg| seg.get_mut(field..field + 2))
    {
        slot.copy_from_slice(&partial.to_be_bytes());
    }
    Ok(())
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
        }
    }
}
