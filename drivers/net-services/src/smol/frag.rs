//! IPv4 fragments: a device wrapper that corrects smoltcp 0.14's checksum of ICMP echo replies above the MTU.
//!
//! With `proto-ipv4-fragmentation`, smoltcp 0.14 emits a datagram that needs
//! fragmenting into its whole fragmentation buffer and, for ICMP, computes the
//! checksum over everything after the IP header up to the end of that buffer
//! (`Icmpv4Packet::fill_checksum` on the rest of the slice), so bytes left
//! there by an earlier, larger datagram end up in the sum: a `ping -s 4000`
//! after an 8000-byte UDP echo gets a reply Linux drops. UDP and TCP sum only
//! their own length and are not affected.
//!
//! [`EchoReplyFix`] sets the checksum right without seeing the whole reply: an
//! echo reply carries the request's identifier, sequence number and data, so
//! its checksum is the request's with the type changed from 8 to 0 (RFC 1624,
//! eqn. 3). The request's checksum (verified by smoltcp) is taken from the
//! first fragment received; the reply's first fragment, which holds the ICMP
//! header, is patched as it is transmitted. [`FixedDevice`] applies it to any
//! smoltcp device.

use core::cell::RefCell;
use smoltcp::phy::{self, Device, DeviceCapabilities, PacketMeta};
use smoltcp::time::Instant;

/// Requests remembered (the newest replace the oldest).
const SEEN: usize = 8;

/// An echo request seen in a first fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Request {
    /// Its source address (the reply's destination).
    peer: [u8; 4],
    ident: u16,
    seq: u16,
    checksum: u16,
}

/// The checksums of fragmented echo requests, to correct their replies (see the module docs).
#[derive(Debug, Default)]
pub struct EchoReplyFix {
    seen: [Option<Request>; SEEN],
    next: usize,
    fixed: u64,
}

/// The parts of an Ethernet frame carrying the first fragment of a
/// fragmented ICMP echo message: source, destination, and the offset of the
/// ICMP header. `None` for anything else (never panics on short input).
fn first_icmp_fragment(frame: &[u8]) -> Option<([u8; 4], [u8; 4], usize)> {
    const ETH: usize = 14;
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(ETH..)?;
    let &vihl = ip.first()?;
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 || ip.len() < ihl + 8 {
        return None;
    }
    let flags_offset = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    let more_fragments = flags_offset & 0x2000 != 0;
    let offset = flags_offset & 0x1fff;
    if !more_fragments || offset != 0 || *ip.get(9)? != 1 {
        return None;
    }
    let src = ip.get(12..16)?.try_into().ok()?;
    let dst = ip.get(16..20)?.try_into().ok()?;
    Some((src, dst, ETH + ihl))
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The checksum after one 16-bit word of the message changed from `old` to
/// `new` (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`).
fn adjust(checksum: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!checksum) + u32::from(!old) + u32::from(new);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl EchoReplyFix {
    /// Notes a received frame: the first fragment of an echo request.
    pub fn received(&mut self, frame: &[u8]) {
        let Some((src, _, icmp)) = first_icmp_fragment(frame) else {
            return;
        };
        // Type 8 (echo request), code 0.
        if be16(frame, icmp) != Some(0x0800) {
            return;
        }
        let (Some(checksum), Some(ident), Some(seq)) = (
            be16(frame, icmp + 2),
            be16(frame, icmp + 4),
            be16(frame, icmp + 6),
        ) else {
            return;
        };
        let req = Request {
            peer: src,
            ident,
            seq,
            checksum,
        };
        if let Some(slot) = self.seen.get_mut(self.next) {
            *slot = Some(req);
        }
        self.next = (self.next + 1) % SEEN;
    }

    /// Corrects a transmitted frame in place if it is the first fragment of
    /// the reply to a request seen by [`EchoReplyFix::received`].
    pub fn transmitting(&mut self, frame: &mut [u8]) {
        let Some((_, dst, icmp)) = first_icmp_fragment(frame) else {
            return;
        };
        // Type 0 (echo reply), code 0.
        if be16(frame, icmp) != Some(0x0000) {
            return;
        }
        let (Some(ident), Some(seq)) = (be16(frame, icmp + 4), be16(frame, icmp + 6)) else {
            return;
        };
        let found = self
            .seen
            .iter_mut()
            .find(|s| s.is_some_and(|r| r.peer == dst && r.ident == ident && r.seq == seq));
        let Some(slot) = found else {
            return;
        };
        let Some(req) = slot.take() else {
            return;
        };
        let checksum = adjust(req.checksum, 0x0800, 0x0000);
        if let Some(field) = frame.get_mut(icmp + 2..icmp + 4) {
            field.copy_from_slice(&checksum.to_be_bytes());
            self.fixed = self.fixed.saturating_add(1);
        }
    }

    /// Replies whose checksum was set from their request.
    pub fn fixed(&self) -> u64 {
        self.fixed
    }
}

/// A smoltcp device that passes every frame through [`EchoReplyFix`]; pass it
/// to `Interface::poll*` in place of `dev`.
pub struct FixedDevice<'a, D: Device + ?Sized> {
    dev: &'a mut D,
    fix: &'a RefCell<EchoReplyFix>,
}

impl<'a, D: Device + ?Sized> FixedDevice<'a, D> {
    /// Wraps `dev`.
    pub fn new(dev: &'a mut D, fix: &'a RefCell<EchoReplyFix>) -> Self {
        FixedDevice { dev, fix }
    }
}

/// The receive token of a [`FixedDevice`].
pub struct FixedRx<'a, T> {
    inner: T,
    fix: &'a RefCell<EchoReplyFix>,
}

/// The transmit token of a [`FixedDevice`].
pub struct FixedTx<'a, T> {
    inner: T,
    fix: &'a RefCell<EchoReplyFix>,
}

impl<T: phy::RxToken> phy::RxToken for FixedRx<'_, T> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let fix = self.fix;
        self.inner.consume(|frame| {
            // Released before `f`, which may transmit (and borrow it again).
            if let Ok(mut fix) = fix.try_borrow_mut() {
                fix.received(frame);
            }
            f(frame)
        })
    }

    fn meta(&self) -> PacketMeta {
        self.inner.meta()
    }
}

impl<T: phy::TxToken> phy::TxToken for FixedTx<'_, T> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let fix = self.fix;
        self.inner.consume(len, |frame| {
            let r = f(frame);
            if let Ok(mut fix) = fix.try_borrow_mut() {
                fix.transmitting(frame);
            }
            r
        })
    }

    fn set_meta(&mut self, meta: PacketMeta) {
        self.inner.set_meta(meta);
    }
}

impl<D: Device + ?Sized> Device for FixedDevice<'_, D> {
    type RxToken<'t>
        = FixedRx<'t, D::RxToken<'t>>
    where
        Self: 't;
    type TxToken<'t>
        = FixedTx<'t, D::TxToken<'t>>
    where
        Self: 't;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let fix = self.fix;
        let (rx, tx) = self.dev.receive(timestamp)?;
        Some((FixedRx { inner: rx, fix }, FixedTx { inner: tx, fix }))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let fix = self.fix;
        let tx = self.dev.transmit(timestamp)?;
        Some(FixedTx { inner: tx, fix })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.dev.capabilities()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn checksum(data: &[u8]) -> u16 {
        let mut sum = 0u32;
        for c in data.chunks(2) {
            let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
            sum += u32::from(w);
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// An Ethernet frame with the first fragment of an ICMP message (`icmp`
    /// is the whole message; the frame holds its first `first` bytes).
    fn frame(src: [u8; 4], dst: [u8; 4], icmp: &[u8], first: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20];
        f[12] = 0x08;
        f[14] = 0x45;
        f[14 + 6] = 0x20; // MF, offset 0
        f[14 + 9] = 1;
        f[14 + 12..14 + 16].copy_from_slice(&src);
        f[14 + 16..14 + 20].copy_from_slice(&dst);
        f.extend_from_slice(&icmp[..first]);
        f
    }

    fn echo(kind: u8, ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
        let mut m = vec![kind, 0, 0, 0];
        m.extend_from_slice(&ident.to_be_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(data);
        let c = checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }

    #[test]
    fn a_reply_gets_the_checksum_of_its_whole_message() {
        let peer = [192, 0, 2, 2];
        let us = [192, 0, 2, 1];
        for len in [1473usize, 1600, 3999, 4000, 8000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let req = echo(8, 0x1234, len as u16, &data);
            let good = echo(0, 0x1234, len as u16, &data);
            let mut fix = EchoReplyFix::default();
            fix.received(&frame(peer, us, &req, 1480));
            // The reply's first fragment with a checksum smoltcp got wrong.
            let mut bad = good.clone();
            bad[2] ^= 0x5a;
            let mut out = frame(us, peer, &bad, 1480);
            fix.transmitting(&mut out);
            assert_eq!(&out[36..38], &good[2..4], "len {len}");
            assert_eq!(fix.fixed(), 1);
            // Used once: a second frame with the same ids is left alone.
            let mut again = frame(us, peer, &bad, 1480);
            fix.transmitting(&mut again);
            assert_eq!(&again[36..38], &bad[2..4]);
        }
    }

    #[test]
    fn other_frames_are_left_alone() {
        let peer = [192, 0, 2, 2];
        let us = [192, 0, 2, 1];
        let data = [7u8; 2000];
        let req = echo(8, 1, 1, &data);
        let mut fix = EchoReplyFix::default();
        fix.received(&frame(peer, us, &req, 1480));
        let reply = echo(0, 1, 1, &data);
        // Not a first fragment, another peer, another sequence number, short frames.
        let mut later = frame(us, peer, &reply, 1480);
        later[14 + 7] = 0xb9;
        let mut other_peer = frame(us, [192, 0, 2, 3], &reply, 1480);
        let mut other_seq = frame(us, peer, &echo(0, 1, 2, &data), 1480);
        for f in [&mut later, &mut other_peer, &mut other_seq] {
            let before = f.clone();
            fix.transmitting(f);
            assert_eq!(*f, before);
        }
        for n in 0..40 {
            let mut short = frame(us, peer, &reply, 1480);
            short.truncate(n);
            fix.transmitting(&mut short);
            fix.received(&short);
        }
        assert_eq!(fix.fixed(), 0);
    }
}
