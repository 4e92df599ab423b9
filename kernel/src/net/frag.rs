//! IPv4 fragments out: a datagram's remaining fragments go before any other packet.
//!
//! smoltcp 0.14 (`proto-ipv4-fragmentation`) holds ONE datagram being
//! fragmented: the first fragment leaves with the packet, each later
//! `poll_egress` sends one more, and a second datagram above the MTU
//! dispatched meanwhile (the next big UDP echo or ping reply) overwrites it,
//! so the first never completes at its receiver. [`drain`] sends the rest
//! right away, while the device takes frames. With an empty socket set
//! `poll_at` is `Some(0)` exactly while fragments are pending, and
//! `poll_egress` sends only those.

use alloc::vec::Vec;

use smoltcp::iface::{Interface, SocketSet};
use smoltcp::phy::Device;
use smoltcp::time::Instant;

/// Most fragments sent per call: a 16 KiB datagram (the fragmentation
/// buffer, kernel/Cargo.toml) is 12 fragments of 1480 bytes, plus the round
/// that resets the finished buffer.
const MAX_ROUNDS: usize = 16;

/// Sends the pending fragments of the datagram being fragmented (fewer if the
/// device has no room: the rest go at the next pass, see the module docs).
pub fn drain(iface: &mut Interface, device: &mut (impl Device + ?Sized), now: Instant) {
    let mut none = SocketSet::new(Vec::new());
    for _ in 0..MAX_ROUNDS {
        if iface.poll_at(now, &none) != Some(Instant::ZERO) {
            return;
        }
        let _ = iface.poll_egress(now, device, &mut none);
    }
}
