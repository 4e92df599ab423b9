//! A pool of TCP sockets listening on one port, re-armed after each connection.
//!
//! smoltcp hands each incoming connection to one socket in the LISTEN state,
//! so serving N connections at once takes N sockets listening on the same
//! port. Each pool slot cycles: listening → active (owned by a service) →
//! closing (FIN sent, or a reset whose RST has not gone out yet) → listening
//! again.
//!
//! A socket smoltcp closed with a RST still to send (our abort, or its own
//! timeout) keeps its connection until the RST went out: listening again
//! forgets the connection and the RST with it, and a peer that waits for an
//! answer (with nothing of its own to retransmit) would then wait forever.
//! That happens when the reset comes while the device cannot send (netfront
//! reconnecting after a restore); the slot waits at most `linger_ms`.

use alloc::vec;
use alloc::vec::Vec;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Duration;

/// How a pool's sockets are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPoolConfig {
    /// Port to listen on (not 0).
    pub port: u16,
    /// Sockets, hence connections served at once.
    pub sockets: usize,
    /// Receive buffer per socket, bytes (above 64 KiB smoltcp uses window scaling).
    pub rx_buffer: usize,
    /// Transmit buffer per socket, bytes.
    pub tx_buffer: usize,
    /// TCP keep-alive interval in milliseconds (0: off).
    pub keep_alive_ms: u64,
    /// Abort a connection whose peer is silent this long while we wait for it
    /// (smoltcp's `set_timeout`; needs keep-alive to cover idle connections), ms (0: off).
    pub timeout_ms: u64,
    /// Whether Nagle's algorithm is on (off suits request/response protocols).
    pub nagle: bool,
    /// How long a closing connection may take to finish before it is reset, ms.
    pub linger_ms: u64,
}

impl TcpPoolConfig {
    /// Heap bytes the socket buffers take.
    pub fn buffer_bytes(&self) -> usize {
        self.sockets
            .saturating_mul(self.rx_buffer.saturating_add(self.tx_buffer))
    }
}

/// Why a pool could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// Port 0 cannot be listened on.
    PortZero,
    /// A pool needs at least one socket.
    NoSockets,
}

impl core::fmt::Display for PoolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            PoolError::PortZero => "cannot listen on port 0",
            PoolError::NoSockets => "socket pool of 0 sockets",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// In LISTEN (or SYN-RECEIVED), not yet handed to the service.
    Listening,
    /// An established connection the service owns.
    Active,
    /// Closed by us; waiting for the close to finish (or `linger` to pass).
    Closing { since_us: u64 },
    /// Reset (by us or by smoltcp's timeout); listen again once the RST went
    /// out (or `linger` passed).
    Rearm { since_us: u64 },
}

/// What a slot is at the start of a pump step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotStep {
    /// Nothing for the service.
    Idle,
    /// An established connection; `new` on the first step after the handshake.
    Active {
        /// First step of this connection.
        new: bool,
    },
}

/// The sockets of one listening port.
#[derive(Debug)]
pub struct TcpPool {
    cfg: TcpPoolConfig,
    handles: Vec<SocketHandle>,
    slots: Vec<Slot>,
    accepted: u64,
    lingered: u64,
}

/// Whether the peer's FIN (or a reset/timeout) ended the receive direction.
pub(crate) fn peer_finished(state: tcp::State) -> bool {
    use tcp::State::*;
    matches!(state, CloseWait | LastAck | Closing | TimeWait | Closed)
}

/// One `recv` into `take` (which returns how many bytes it consumed);
/// whether any were.
pub(crate) fn recv_with(sock: &mut tcp::Socket<'_>, take: impl FnOnce(&mut [u8]) -> usize) -> bool {
    let got = sock.recv(|buf| {
        let n = take(buf);
        (n, n)
    });
    matches!(got, Ok(n) if n > 0)
}

/// One `send` from `fill` (which returns how many bytes it wrote); whether
/// any were.
pub(crate) fn send_with(sock: &mut tcp::Socket<'_>, fill: impl FnOnce(&mut [u8]) -> usize) -> bool {
    let sent = sock.send(|buf| {
        let n = fill(buf);
        (n, n)
    });
    matches!(sent, Ok(n) if n > 0)
}

impl TcpPool {
    /// Creates `cfg.sockets` sockets in `sockets`, all listening on `cfg.port`.
    pub fn new(sockets: &mut SocketSet<'_>, cfg: TcpPoolConfig) -> Result<Self, PoolError> {
        if cfg.port == 0 {
            return Err(PoolError::PortZero);
        }
        if cfg.sockets == 0 {
            return Err(PoolError::NoSockets);
        }
        let mut handles = Vec::with_capacity(cfg.sockets);
        for _ in 0..cfg.sockets {
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0u8; cfg.rx_buffer]),
                tcp::SocketBuffer::new(vec![0u8; cfg.tx_buffer]),
            );
            s.set_nagle_enabled(cfg.nagle);
            if cfg.keep_alive_ms > 0 {
                s.set_keep_alive(Some(Duration::from_millis(cfg.keep_alive_ms)));
            }
            if cfg.timeout_ms > 0 {
                s.set_timeout(Some(Duration::from_millis(cfg.timeout_ms)));
            }
            // Cannot fail: the port is not 0 and a new socket is closed.
            s.listen(cfg.port).map_err(|_| PoolError::PortZero)?;
            handles.push(sockets.add(s));
        }
        Ok(TcpPool {
            cfg,
            slots: vec![Slot::Listening; handles.len()],
            handles,
            accepted: 0,
            lingered: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TcpPoolConfig {
        &self.cfg
    }

    /// Number of sockets.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether the pool has no sockets (never: [`TcpPool::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The socket handles, by slot.
    pub fn handles(&self) -> &[SocketHandle] {
        &self.handles
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Closing connections that were reset after `linger_ms`.
    pub fn lingered(&self) -> u64 {
        self.lingered
    }

    /// Slots holding a connection (active or closing).
    pub fn busy(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::Active | Slot::Closing { .. }))
            .count()
    }

    fn relisten(&mut self, i: usize, sock: &mut tcp::Socket<'_>, now_us: u64) {
        // From CLOSED or TIME-WAIT `listen` succeeds; anything else is reset first.
        if sock.is_open() {
            sock.abort();
        }
        if sock.listen(self.cfg.port).is_ok() {
            if let Some(s) = self.slots.get_mut(i) {
                *s = Slot::Listening;
            }
        } else if let Some(s) = self.slots.get_mut(i) {
            *s = Slot::Rearm { since_us: now_us };
        }
    }

    /// Whether `sock` is closed with a RST still to send: smoltcp keeps the
    /// connection (its endpoints) until the RST is on the wire.
    fn reset_pending(sock: &tcp::Socket<'_>) -> bool {
        sock.state() == tcp::State::Closed && sock.remote_endpoint().is_some()
    }

    /// Listens again on a closed socket, or, while its RST has not gone out,
    /// waits for it (at most `linger_ms` from `since_us`).
    fn relisten_after_reset(
        &mut self,
        i: usize,
        sock: &mut tcp::Socket<'_>,
        since_us: u64,
        now_us: u64,
    ) {
        let lingered = now_us.saturating_sub(since_us) > self.cfg.linger_ms.saturating_mul(1000);
        if Self::reset_pending(sock) && !lingered {
            if let Some(s) = self.slots.get_mut(i) {
                *s = Slot::Rearm { since_us };
            }
        } else {
            if lingered && Self::reset_pending(sock) {
                self.lingered = self.lingered.saturating_add(1);
            }
            self.relisten(i, sock, now_us);
        }
    }

    /// The socket of slot `i`.
    pub(crate) fn socket<'s, 'a>(
        &self,
        i: usize,
        sockets: &'s mut SocketSet<'a>,
    ) -> Option<&'s mut tcp::Socket<'a>> {
        let &h = self.handles.get(i)?;
        Some(sockets.get_mut::<tcp::Socket>(h))
    }

    /// Advances slot `i` through the non-service states; when the service
    /// should handle it, its socket and whether the connection is new (first
    /// step after the handshake).
    pub(crate) fn active<'s, 'a>(
        &mut self,
        i: usize,
        sockets: &'s mut SocketSet<'a>,
        now_us: u64,
    ) -> Option<(&'s mut tcp::Socket<'a>, bool)> {
        let sock = self.socket(i, sockets)?;
        match self.step(i, sock, now_us) {
            SlotStep::Active { new } => Some((sock, new)),
            SlotStep::Idle => None,
        }
    }

    /// Advances slot `i` (whose socket is `sock`) through the non-service
    /// states, and says whether the service should handle it.
    fn step(&mut self, i: usize, sock: &mut tcp::Socket<'_>, now_us: u64) -> SlotStep {
        let Some(&slot) = self.slots.get(i) else {
            return SlotStep::Idle;
        };
        match slot {
            Slot::Listening => match sock.state() {
                tcp::State::Listen | tcp::State::SynReceived => SlotStep::Idle,
                tcp::State::Closed => {
                    self.relisten_after_reset(i, sock, now_us, now_us);
                    SlotStep::Idle
                }
                _ => {
                    self.accepted = self.accepted.saturating_add(1);
                    if let Some(s) = self.slots.get_mut(i) {
                        *s = Slot::Active;
                    }
                    SlotStep::Active { new: true }
                }
            },
            Slot::Active => SlotStep::Active { new: false },
            Slot::Closing { since_us } => {
                // Whatever still arrives is not wanted; keep the window open.
                while sock.can_recv() {
                    if sock.recv(|b| (b.len(), ())).is_err() {
                        break;
                    }
                }
                if !sock.is_open() {
                    self.relisten_after_reset(i, sock, now_us, now_us);
                } else if now_us.saturating_sub(since_us) > self.cfg.linger_ms.saturating_mul(1000)
                {
                    self.lingered = self.lingered.saturating_add(1);
                    sock.abort();
                    if let Some(s) = self.slots.get_mut(i) {
                        *s = Slot::Rearm { since_us: now_us };
                    }
                }
                SlotStep::Idle
            }
            Slot::Rearm { since_us } => {
                self.relisten_after_reset(i, sock, since_us, now_us);
                SlotStep::Idle
            }
        }
    }

    /// The service is done with slot `i`: FIN after the queued data.
    pub(crate) fn close(&mut self, i: usize, sock: &mut tcp::Socket<'_>, now_us: u64) {
        sock.close();
        if let Some(s) = self.slots.get_mut(i) {
            *s = Slot::Closing { since_us: now_us };
        }
    }

    /// The service is done with slot `i`: reset it (listening again once the
    /// RST went out).
    pub(crate) fn abort(&mut self, i: usize, sock: &mut tcp::Socket<'_>, now_us: u64) {
        sock.abort();
        if let Some(s) = self.slots.get_mut(i) {
            *s = Slot::Rearm { since_us: now_us };
        }
    }

    /// The connection in slot `i` is gone (peer reset, timeout): listen again
    /// (once the RST of a timeout went out), or close our half first if it is
    /// still open.
    pub(crate) fn finished(&mut self, i: usize, sock: &mut tcp::Socket<'_>, now_us: u64) {
        if sock.is_open() {
            self.close(i, sock, now_us);
        } else {
            self.relisten_after_reset(i, sock, now_us, now_us);
        }
    }
}
