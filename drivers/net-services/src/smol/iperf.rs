//! The iperf3 server over a smoltcp socket pool: slot index = connection id.

use super::micros;
use super::pool::{PoolError, TcpPool, TcpPoolConfig, peer_finished, recv_with, send_with};
use crate::iperf3::{CloseKind, ConnId, CpuUtil, Server, ServerConfig};
use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

/// The iperf3 server bound to a pool of TCP sockets (control connection and
/// data streams share the port, as with iperf3).
pub struct Iperf3Service {
    pool: TcpPool,
    server: Server,
}

impl Iperf3Service {
    /// Adds `pool.sockets` listening sockets to `sockets`; the server's
    /// connection table gets one entry per socket.
    pub fn new(
        sockets: &mut SocketSet<'_>,
        pool: TcpPoolConfig,
        server: ServerConfig,
    ) -> Result<Self, PoolError> {
        let pool = TcpPool::new(sockets, pool)?;
        let server = Server::new(ServerConfig {
            max_conns: pool.len(),
            ..server
        });
        Ok(Iperf3Service { pool, server })
    }

    /// The protocol state machine (stats, phase).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The protocol state machine, mutably (events).
    pub fn server_mut(&mut self) -> &mut Server {
        &mut self.server
    }

    /// The socket pool.
    pub fn pool(&self) -> &TcpPool {
        &self.pool
    }

    /// Sets the CPU utilisation the server reports with its results.
    pub fn set_cpu_util(&mut self, cpu: CpuUtil) {
        self.server.set_cpu_util(cpu);
    }

    /// When the server's timers next need a pump.
    pub fn poll_at(&self) -> Option<Instant> {
        self.server
            .poll_at()
            .map(|us| Instant::from_micros(i64::try_from(us).unwrap_or(i64::MAX)))
    }

    /// Moves bytes between the sockets and the server, applies its close
    /// requests, runs its timers, re-arms free sockets. Returns whether
    /// anything moved.
    pub fn poll(&mut self, sockets: &mut SocketSet<'_>, now: Instant) -> bool {
        let now_us = micros(now);
        let mut busy = false;
        for i in 0..self.pool.len() {
            let Some((sock, new)) = self.pool.active(i, sockets, now_us) else {
                continue;
            };
            let id = ConnId(i);
            if new && self.server.accept(id, now_us).is_err() {
                // The table and the pool are the same size, so this means the
                // two lost step; reset rather than serve blind.
                self.server.closed(id, now_us);
                self.pool.abort(i, sock, now_us);
                continue;
            }
            busy |= new;
            busy |= self.pump(i, sock, now_us);
        }
        self.server.poll(now_us);
        // Timers may have ended a test: apply the resulting closes now.
        for i in 0..self.pool.len() {
            if let Some(kind) = self.server.take_close(ConnId(i))
                && let Some(sock) = self.pool.socket(i, sockets)
            {
                self.apply_close(i, sock, kind, now_us);
                busy = true;
            }
        }
        busy
    }

    fn apply_close(&mut self, i: usize, sock: &mut tcp::Socket<'_>, kind: CloseKind, now_us: u64) {
        match kind {
            CloseKind::Close => self.pool.close(i, sock, now_us),
            CloseKind::Abort => self.pool.abort(i, sock, now_us),
        }
    }

    /// One active connection: receive, transmit, close.
    fn pump(&mut self, i: usize, sock: &mut tcp::Socket<'_>, now_us: u64) -> bool {
        let id = ConnId(i);
        let server = &mut self.server;
        let mut busy = false;
        // Receive everything queued (two calls when the ring wraps).
        while sock.can_recv() {
            let took = recv_with(sock, |buf| {
                server.receive(id, buf, now_us);
                buf.len()
            });
            if !took {
                break;
            }
            busy = true;
        }
        // Send what the server has, while the socket takes it.
        while sock.can_send() && server.wants_transmit(id) {
            if !send_with(sock, |buf| server.poll_transmit(id, buf, now_us)) {
                break;
            }
            busy = true;
        }
        if let Some(kind) = self.server.take_close(id) {
            self.apply_close(i, sock, kind, now_us);
            return true;
        }
        if !sock.may_recv() && peer_finished(sock.state()) {
            // FIN with nothing left to read, or reset/timed out.
            self.server.closed(id, now_us);
            self.pool.finished(i, sock, now_us);
            return true;
        }
        busy
    }
}
