//! Echo service logic (RFC 862, port 7): what to move and when to close, as pure functions.
//!
//! RFC 862: a TCP echo server sends back every byte it receives until the
//! client closes; a UDP echo server answers each datagram with one carrying
//! the same data. The smoltcp pumps in [`crate::smol`] apply these decisions
//! to sockets.

use smoltcp::wire::{IpAddress, IpEndpoint};

/// The echo port (RFC 862).
pub const ECHO_PORT: u16 = 7;

/// What a TCP echo connection looks like at one pump step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpEchoView {
    /// Received bytes waiting in the socket.
    pub rx_queued: usize,
    /// Free space in the socket's transmit buffer.
    pub tx_free: usize,
    /// The peer sent FIN (nothing more will arrive).
    pub peer_finished: bool,
    /// Our transmit half is still open.
    pub may_send: bool,
}

/// What to do with a TCP echo connection at one pump step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpEchoStep {
    /// Bytes to move from receive to transmit now (bounded by both queues and
    /// the scratch buffer; 0 applies back-pressure: the peer's window closes).
    pub take: usize,
    /// Close our half (FIN after everything queued): the peer finished and
    /// every byte it sent has been queued back.
    pub close: bool,
}

/// Decides one echo step for a connection in state `v`, moving at most
/// `scratch_len` bytes.
pub fn tcp_echo_step(v: TcpEchoView, scratch_len: usize) -> TcpEchoStep {
    if !v.may_send {
        // Nothing can go back; the pump resets such a connection once the
        // peer finished too (see `crate::smol`).
        return TcpEchoStep {
            take: 0,
            close: false,
        };
    }
    let take = v.rx_queued.min(v.tx_free).min(scratch_len);
    TcpEchoStep {
        take,
        close: v.peer_finished && v.rx_queued == take,
    }
}

/// Well-known UDP ports of services that answer anything; echoing to them
/// would start a packet ping-pong (echo, daytime, qotd, chargen, time; the
/// "UDP port loop" of CVE-1999-0103).
pub const REFLECTOR_PORTS: [u16; 5] = [7, 13, 17, 19, 37];

/// Whether a UDP echo server answers a datagram from `src`: the source must
/// be a unicast address with a non-zero port that is not another
/// always-answering service ([`REFLECTOR_PORTS`]).
pub fn udp_should_reply(src: IpEndpoint) -> bool {
    if src.port == 0 || REFLECTOR_PORTS.contains(&src.port) {
        return false;
    }
    #[allow(unreachable_patterns)] // one arm per enabled IP version
    match src.addr {
        IpAddress::Ipv4(a) => !(a.is_unspecified() || a.is_broadcast() || a.is_multicast()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::Ipv4Address;

    fn view(rx: usize, tx_free: usize, fin: bool) -> TcpEchoView {
        TcpEchoView {
            rx_queued: rx,
            tx_free,
            peer_finished: fin,
            may_send: true,
        }
    }

    #[test]
    fn moves_what_fits() {
        assert_eq!(tcp_echo_step(view(100, 1000, false), 4096).take, 100);
        assert_eq!(tcp_echo_step(view(5000, 1000, false), 4096).take, 1000);
        assert_eq!(tcp_echo_step(view(5000, 9000, false), 4096).take, 4096);
        assert_eq!(tcp_echo_step(view(5000, 0, false), 4096).take, 0);
    }

    #[test]
    fn closes_only_after_echoing_everything() {
        assert!(!tcp_echo_step(view(10, 0, true), 4096).close);
        assert!(!tcp_echo_step(view(10, 5, true), 4096).close);
        assert!(tcp_echo_step(view(10, 10, true), 4096).close);
        assert!(tcp_echo_step(view(0, 0, true), 4096).close);
        assert!(!tcp_echo_step(view(0, 10, false), 4096).close);
        let closed_tx = TcpEchoView {
            may_send: false,
            ..view(10, 10, true)
        };
        assert_eq!(
            tcp_echo_step(closed_tx, 4096),
            TcpEchoStep {
                take: 0,
                close: false
            }
        );
    }

    #[test]
    fn udp_reply_policy() {
        let ep = |a: [u8; 4], port| IpEndpoint::new(Ipv4Address::from(a).into(), port);
        assert!(udp_should_reply(ep([10, 0, 0, 2], 40000)));
        assert!(!udp_should_reply(ep([10, 0, 0, 2], 0)));
        assert!(!udp_should_reply(ep([10, 0, 0, 2], 7)));
        assert!(!udp_should_reply(ep([10, 0, 0, 2], 19)));
        assert!(!udp_should_reply(ep([255, 255, 255, 255], 4000)));
        assert!(!udp_should_reply(ep([0, 0, 0, 0], 4000)));
        assert!(!udp_should_reply(ep([224, 0, 0, 1], 4000)));
    }
}
