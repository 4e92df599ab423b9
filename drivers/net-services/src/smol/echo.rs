//! TCP and UDP echo over smoltcp sockets, applying the decisions of [`crate::echo`].

use super::SetupError;
use super::micros;
use super::pool::{PoolError, TcpPool, TcpPoolConfig, peer_finished};
use crate::echo::{ECHO_PORT, TcpEchoView, tcp_echo_step, udp_should_reply};
use alloc::vec;
use alloc::vec::Vec;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::phy::PacketMeta;
use smoltcp::socket::udp;
use smoltcp::time::Instant;

/// Bytes moved per copy step (the pump loops until the socket is drained or full).
const SCRATCH: usize = 4096;

/// TCP echo counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpEchoStats {
    /// Connections accepted.
    pub connections: u64,
    /// Bytes echoed back.
    pub bytes: u64,
    /// Connections reset because they could not finish closing in time.
    pub lingered: u64,
}

/// TCP echo (RFC 862) on a pool of sockets: many connections at once, each
/// echoing with back-pressure (a client that does not read stops being read).
pub struct TcpEcho {
    pool: TcpPool,
    scratch: Vec<u8>,
    bytes: u64,
}

impl TcpEcho {
    /// Adds `cfg.sockets` listening sockets to `sockets`.
    pub fn new(sockets: &mut SocketSet<'_>, cfg: TcpPoolConfig) -> Result<Self, PoolError> {
        Ok(TcpEcho {
            pool: TcpPool::new(sockets, cfg)?,
            scratch: vec![0u8; SCRATCH],
            bytes: 0,
        })
    }

    /// Counters.
    pub fn stats(&self) -> TcpEchoStats {
        TcpEchoStats {
            connections: self.pool.accepted(),
            bytes: self.bytes,
            lingered: self.pool.lingered(),
        }
    }

    /// The socket pool.
    pub fn pool(&self) -> &TcpPool {
        &self.pool
    }

    /// Echoes what arrived on every connection, closes finished ones,
    /// re-arms free sockets. Returns whether anything moved.
    pub fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) -> bool {
        let now_us = micros(now);
        let mut busy = false;
        for i in 0..self.pool.len() {
            let Some((sock, new)) = self.pool.active(i, sockets, now_us) else {
                continue;
            };
            busy |= new;
            loop {
                let view = TcpEchoView {
                    rx_queued: sock.recv_queue(),
                    tx_free: sock.send_capacity().saturating_sub(sock.send_queue()),
                    peer_finished: peer_finished(sock.state()),
                    may_send: sock.may_send(),
                };
                let step = tcp_echo_step(view, self.scratch.len());
                if step.take > 0 {
                    let Some(buf) = self.scratch.get_mut(..step.take) else {
                        break;
                    };
                    let got = sock.recv_slice(buf).unwrap_or(0);
                    let sent = buf
                        .get(..got)
                        .map_or(0, |b| sock.send_slice(b).unwrap_or(0));
                    self.bytes = self.bytes.saturating_add(sent as u64);
                    busy = true;
                    if got == 0 {
                        break;
                    }
                    continue;
                }
                if step.close {
                    self.pool.close(i, sock, now_us);
                    busy = true;
                } else if !view.may_send && view.peer_finished {
                    // Reset by the peer or timed out: nothing more to do.
                    self.pool.finished(i, sock, now_us);
                    busy = true;
                }
                break;
            }
        }
        busy
    }
}

/// How the UDP echo socket is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpEchoConfig {
    /// Port (not 0).
    pub port: u16,
    /// Datagrams queued per direction.
    pub packets: usize,
    /// Payload bytes queued per direction (also the largest datagram echoed).
    pub payload_bytes: usize,
}

impl Default for UdpEchoConfig {
    fn default() -> Self {
        UdpEchoConfig {
            port: ECHO_PORT,
            packets: 32,
            payload_bytes: 64 * 1024,
        }
    }
}

impl UdpEchoConfig {
    /// Heap bytes the buffers take (payload only; metadata adds a little per packet).
    pub fn buffer_bytes(&self) -> usize {
        self.payload_bytes.saturating_mul(2)
    }
}

/// UDP echo counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpEchoStats {
    /// Datagrams answered.
    pub echoed: u64,
    /// Datagrams dropped by the reply policy ([`crate::echo::udp_should_reply`]).
    pub refused: u64,
    /// Datagrams dropped because they cannot be sent (larger than the transmit
    /// buffer, or unaddressable).
    pub dropped: u64,
}

/// UDP echo (RFC 862): each datagram answered with the same payload, from the
/// address it was sent to.
pub struct UdpEcho {
    handle: SocketHandle,
    scratch: Vec<u8>,
    stats: UdpEchoStats,
}

impl UdpEcho {
    /// Adds a UDP socket bound to `cfg.port` to `sockets`.
    pub fn new(sockets: &mut SocketSet<'_>, cfg: UdpEchoConfig) -> Result<Self, SetupError> {
        let meta = || vec![udp::PacketMetadata::EMPTY; cfg.packets.max(1)];
        let mut s = udp::Socket::new(
            udp::PacketBuffer::new(meta(), vec![0u8; cfg.payload_bytes]),
            udp::PacketBuffer::new(meta(), vec![0u8; cfg.payload_bytes]),
        );
        s.bind(cfg.port).map_err(|_| SetupError::UdpBind)?;
        Ok(UdpEcho {
            handle: sockets.add(s),
            scratch: vec![0u8; cfg.payload_bytes],
            stats: UdpEchoStats::default(),
        })
    }

    /// Counters.
    pub fn stats(&self) -> UdpEchoStats {
        self.stats
    }

    /// Answers queued datagrams while the transmit queue has room (the rest
    /// wait for the next pump). Returns whether anything moved.
    pub fn poll(&mut self, sockets: &mut SocketSet<'_>, _now: Instant) -> bool {
        let sock = sockets.get_mut::<udp::Socket>(self.handle);
        let mut busy = false;
        while let Ok((data, meta)) = sock.peek() {
            let len = data.len();
            let meta = *meta;
            if let Some(dst) = self.scratch.get_mut(..len) {
                dst.copy_from_slice(data);
            }
            if !udp_should_reply(meta.endpoint) {
                self.stats.refused = self.stats.refused.saturating_add(1);
                let _ = sock.recv();
                busy = true;
                continue;
            }
            let Some(payload) = self.scratch.get(..len) else {
                self.stats.dropped = self.stats.dropped.saturating_add(1);
                let _ = sock.recv();
                continue;
            };
            let mut reply = meta;
            reply.meta = PacketMeta::default();
            match sock.send_slice(payload, reply) {
                Ok(()) => {
                    self.stats.echoed = self.stats.echoed.saturating_add(1);
                    let _ = sock.recv();
                }
                Err(udp::SendError::BufferFull) if sock.send_queue() > 0 => {
                    // Wait for the interface to drain the transmit queue.
                    break;
                }
                Err(_) => {
                    // Unaddressable, or too large even for an empty queue.
                    self.stats.dropped = self.stats.dropped.saturating_add(1);
                    let _ = sock.recv();
                }
            }
            busy = true;
        }
        busy
    }
}
