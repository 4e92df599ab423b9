//! Checked parsing of the vif's xenstore nodes: `mac`, `mtu`, back-end `feature-*` flags.
//!
//! Sources: `xen/include/public/io/netif.h` (feature negotiation, the `mtu`
//! node) and `docs/misc/xenstore-paths.pandoc` (`device/vif/<id>/mac`).
//! Values come from the toolstack or the back end and are untrusted: each is
//! parsed from a borrowed byte slice into a typed value, and every malformed
//! value is a typed error. No-panic promise: nothing here indexes unchecked or
//! overflows, whatever the bytes.

use core::fmt;

/// A unicast Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

/// Why a `mac` value is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MacError {
    /// Not 17 bytes (`xx:xx:xx:xx:xx:xx`).
    BadLength(usize),
    /// A byte that is not a hex digit where one is expected.
    BadDigit {
        /// Byte offset in the value.
        at: usize,
    },
    /// A byte other than `:` where a separator is expected.
    BadSeparator {
        /// Byte offset in the value.
        at: usize,
    },
    /// The group bit is set: a multicast/broadcast address cannot be a NIC's.
    Multicast,
    /// All zero.
    Zero,
}

impl MacAddr {
    /// Parses `xx:xx:xx:xx:xx:xx` (hex digits of either case; exactly that
    /// shape, no trailing NUL or newline), rejecting multicast and all-zero
    /// addresses as Linux's `is_valid_ether_addr` does.
    pub fn parse(value: &[u8]) -> Result<Self, MacError> {
        if value.len() != 17 {
            return Err(MacError::BadLength(value.len()));
        }
        let mut mac = [0u8; 6];
        for (i, byte) in mac.iter_mut().enumerate() {
            let at = i * 3;
            let hi = hex(value.get(at).copied()).ok_or(MacError::BadDigit { at })?;
            let lo = hex(value.get(at + 1).copied()).ok_or(MacError::BadDigit { at: at + 1 })?;
            *byte = hi << 4 | lo;
            if i < 5 && value.get(at + 2) != Some(&b':') {
                return Err(MacError::BadSeparator { at: at + 2 });
            }
        }
        if mac[0] & 1 != 0 {
            return Err(MacError::Multicast);
        }
        if mac == [0; 6] {
            return Err(MacError::Zero);
        }
        Ok(Self(mac))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

fn hex(c: Option<u8>) -> Option<u8> {
    match c? {
        c @ b'0'..=b'9' => Some(c - b'0'),
        c @ b'a'..=b'f' => Some(c - b'a' + 10),
        c @ b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

pub use xen_frontend::nodes::{NumberError, parse_feature, parse_u32};

/// The IP MTU assumed when the toolstack writes no `mtu` node (`netif.h`).
pub const DEFAULT_MTU: u32 = 1500;
/// The smallest IPv4 MTU (RFC 791).
pub const MIN_MTU: u32 = 68;

/// Why an `mtu` value is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MtuError {
    /// Not a number.
    Number(NumberError),
    /// Below [`MIN_MTU`] or above what one netif packet can carry.
    OutOfRange(u32),
}

/// Parses the toolstack's `device/vif/<id>/mtu` (the IP MTU): between
/// [`MIN_MTU`] and `XEN_NETIF_MAX_TX_SIZE - 14`.
pub fn parse_mtu(value: &[u8]) -> Result<u32, MtuError> {
    let mtu = parse_u32(value).map_err(MtuError::Number)?;
    let max = xen_abi::netif::XEN_NETIF_MAX_TX_SIZE - crate::ETH_HLEN as u32;
    if !(MIN_MTU..=max).contains(&mtu) {
        return Err(MtuError::OutOfRange(mtu));
    }
    Ok(mtu)
}

impl fmt::Display for MacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MacError::BadLength(n) => write!(f, "{n} bytes, not xx:xx:xx:xx:xx:xx"),
            MacError::BadDigit { at } => write!(f, "byte {at} is not a hex digit"),
            MacError::BadSeparator { at } => write!(f, "byte {at} is not ':'"),
            MacError::Multicast => f.write_str("a multicast address"),
            MacError::Zero => f.write_str("the all-zero address"),
        }
    }
}

impl core::fmt::Display for MtuError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MtuError::Number(e) => write!(f, "{e}"),
            MtuError::OutOfRange(n) => write!(f, "{n} is out of range"),
        }
    }
}

/// What the back end advertises in its directory (`netif.h`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BackendFeatures {
    /// `feature-rx-copy`: the back end copies into our granted rx pages. Required.
    pub rx_copy: bool,
    /// `feature-sg`: the back end accepts multi-slot tx packets.
    pub sg: bool,
    /// `feature-split-event-channels`: separate tx/rx event channels offered
    /// (this driver uses one channel, which every back end accepts).
    pub split_event_channels: bool,
    /// `feature-gso-tcpv4` (recorded; this driver sends no GSO packets).
    pub gso_tcpv4: bool,
    /// `feature-ipv6-csum-offload` (recorded).
    pub ipv6_csum_offload: bool,
    /// `multi-queue-max-queues` (recorded; this driver uses one queue and
    /// writes the single-queue keys, which every back end accepts).
    pub max_queues: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_and_rejects() {
        assert_eq!(
            MacAddr::parse(b"00:16:3e:0A:bc:ff"),
            Ok(MacAddr([0x00, 0x16, 0x3e, 0x0a, 0xbc, 0xff]))
        );
        assert_eq!(
            alloc::format!("{}", MacAddr([0, 0x16, 0x3e, 1, 2, 0xab])),
            "00:16:3e:01:02:ab"
        );
        assert_eq!(MacAddr::parse(b""), Err(MacError::BadLength(0)));
        assert_eq!(
            MacAddr::parse(b"00:16:3e:00:00:01\0"),
            Err(MacError::BadLength(18))
        );
        assert_eq!(
            MacAddr::parse(b"00:16:3g:00:00:01"),
            Err(MacError::BadDigit { at: 7 })
        );
        assert_eq!(
            MacAddr::parse(b"00-16:3e:00:00:01"),
            Err(MacError::BadSeparator { at: 2 })
        );
        assert_eq!(
            MacAddr::parse(b"01:00:5e:00:00:01"),
            Err(MacError::Multicast)
        );
        assert_eq!(
            MacAddr::parse(b"ff:ff:ff:ff:ff:ff"),
            Err(MacError::Multicast)
        );
        assert_eq!(MacAddr::parse(b"00:00:00:00:00:00"), Err(MacError::Zero));
        assert_eq!(
            MacAddr::parse(b"0:016:3e:00:00:01"),
            Err(MacError::BadDigit { at: 1 })
        );
    }

    #[test]
    fn numbers_and_features() {
        assert_eq!(parse_u32(b"0"), Ok(0));
        assert_eq!(parse_u32(b"4294967295"), Ok(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), Err(NumberError::TooLarge));
        assert_eq!(
            parse_u32(b"99999999999999999999"),
            Err(NumberError::TooLarge)
        );
        assert_eq!(parse_u32(b""), Err(NumberError::Empty));
        assert_eq!(parse_u32(b"01"), Err(NumberError::NotDecimal));
        assert_eq!(parse_u32(b"-1"), Err(NumberError::NotDecimal));
        assert_eq!(parse_u32(b"1 "), Err(NumberError::NotDecimal));
        assert_eq!(parse_feature(b"1"), Ok(true));
        assert_eq!(parse_feature(b"0"), Ok(false));
        assert_eq!(parse_feature(b"yes"), Err(NumberError::NotDecimal));
        assert_eq!(parse_mtu(b"1500"), Ok(1500));
        assert_eq!(parse_mtu(b"9000"), Ok(9000));
        assert_eq!(parse_mtu(b"67"), Err(MtuError::OutOfRange(67)));
        assert_eq!(parse_mtu(b"65522"), Err(MtuError::OutOfRange(65522)));
        assert_eq!(
            parse_mtu(b"x"),
            Err(MtuError::Number(NumberError::NotDecimal))
        );
    }
}
