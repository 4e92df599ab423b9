//! The NBD disk service over a smoltcp socket pool (TCP 10809): one `nbd_server::Connection` per socket, disks passed in at poll time.
//!
//! Each pool slot holding a connection has a [`Connection`] and a
//! service-unique connection id. Disk operations go to
//! [`Disks::submit`] with `owner` = this service's owner and
//! `tag` = `(connection id << 32) | connection-local tag`; completions are
//! routed back by the id, so a completion for a connection that has gone is
//! recognised and dropped, never given to the slot's next client.
//!
//! A connection whose socket goes away (reset, timeout, protocol violation)
//! while disk operations are outstanding is kept as an orphan until they
//! complete: its buffers stay counted in the service's budget (at most
//! `sockets × Limits::budget` payload bytes for all connections), and new
//! requests are not read while the total is over it.

use super::micros;
use super::pool::{PoolError, TcpPool, TcpPoolConfig, peer_finished, recv_with, send_with};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use nbd_server::{CloseAction, Connection, DiskError, DiskRequest, Disks, ExportInfo, Limits};
use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::IpEndpoint;

/// How the NBD service is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NbdConfig {
    /// The listening sockets (port 10809 by default): clients served at once.
    pub pool: TcpPoolConfig,
    /// This instance's owner id for [`Disks`] (one per network interface).
    pub owner: u16,
    /// Per-connection protocol limits.
    pub limits: Limits,
}

impl Default for NbdConfig {
    /// 4 sockets of 128 KiB each way, owner 0, [`Limits::default`].
    fn default() -> Self {
        NbdConfig {
            pool: TcpPoolConfig {
                port: nbd_server::wire::NBD_PORT,
                sockets: 4,
                rx_buffer: 128 * 1024,
                tx_buffer: 128 * 1024,
                keep_alive_ms: 10_000,
                timeout_ms: 60_000,
                nagle: false,
                linger_ms: 10_000,
            },
            owner: 0,
            limits: Limits::default(),
        }
    }
}

impl NbdConfig {
    /// Heap bytes the service may take: socket buffers plus every
    /// connection's payload budget.
    pub fn buffer_bytes(&self) -> usize {
        self.pool
            .buffer_bytes()
            .saturating_add(self.pool.sockets.saturating_mul(self.limits.budget))
    }
}

/// Something the NBD service reports: what happened on which connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NbdEvent {
    /// Service-unique connection id (counts from 1).
    pub conn: u32,
    /// The client's address, when the socket still knew it.
    pub peer: Option<IpEndpoint>,
    /// What happened.
    pub event: nbd_server::Event,
}

impl NbdEvent {
    /// Whether the kernel should print this as an error (`xenrs nbd error: …`):
    /// protocol violations, refused requests and disk failures.
    pub fn is_error(&self) -> bool {
        matches!(
            self.event,
            nbd_server::Event::Client(_) | nbd_server::Event::Disk { .. }
        )
    }
}

impl fmt::Display for NbdEvent {
    /// `conn 3 from 192.0.2.2:41234: write at 0 length 4096 refused with EPERM`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn {}", self.conn)?;
        if let Some(p) = self.peer {
            write!(f, " from {p}")?;
        }
        write!(f, ": {}", self.event)
    }
}

/// Counters of the NBD service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NbdStats {
    /// Connections accepted.
    pub connections: u64,
    /// Completions whose connection had gone or whose tag was unknown.
    pub stray_completions: u64,
    /// Events dropped because the kernel did not collect them in time.
    pub dropped_events: u64,
}

struct Live {
    id: u32,
    peer: Option<IpEndpoint>,
    conn: Connection,
}

impl Live {
    fn event(&self, event: nbd_server::Event) -> NbdEvent {
        NbdEvent {
            conn: self.id,
            peer: self.peer,
            event,
        }
    }
}

/// Events kept before the oldest are dropped.
const MAX_EVENTS: usize = 64;

/// The NBD server bound to a pool of TCP sockets.
pub struct NbdService {
    cfg: NbdConfig,
    pool: TcpPool,
    slots: Vec<Option<Live>>,
    orphans: Vec<Live>,
    next_id: u32,
    events: VecDeque<NbdEvent>,
    stats: NbdStats,
}

impl NbdService {
    /// Adds `cfg.pool.sockets` listening sockets to `sockets`.
    pub fn new(sockets: &mut SocketSet<'_>, cfg: NbdConfig) -> Result<Self, PoolError> {
        let pool = TcpPool::new(sockets, cfg.pool)?;
        let mut slots = Vec::with_capacity(pool.len());
        slots.resize_with(pool.len(), || None);
        Ok(NbdService {
            cfg,
            pool,
            slots,
            orphans: Vec::new(),
            next_id: 1,
            events: VecDeque::new(),
            stats: NbdStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NbdConfig {
        &self.cfg
    }

    /// The socket pool.
    pub fn pool(&self) -> &TcpPool {
        &self.pool
    }

    /// Counters.
    pub fn stats(&self) -> NbdStats {
        NbdStats {
            connections: self.pool.accepted(),
            ..self.stats
        }
    }

    /// Connections being served, and gone connections still waiting for disk completions.
    pub fn connections(&self) -> (usize, usize) {
        (self.slots.iter().flatten().count(), self.orphans.len())
    }

    /// Payload bytes held by all connections (see [`Limits::budget`]).
    pub fn reserved(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .chain(self.orphans.iter())
            .map(|l| l.conn.reserved())
            .fold(0usize, usize::saturating_add)
    }

    /// Writes one line per connection (and orphan) with its socket's and
    /// protocol's state, for diagnostics (`prefix` starts each line).
    pub fn describe(
        &self,
        sockets: &SocketSet<'_>,
        out: &mut dyn fmt::Write,
        prefix: &str,
    ) -> fmt::Result {
        let budget = self.pool.len().saturating_mul(self.cfg.limits.budget);
        writeln!(
            out,
            "{prefix}nbd: reserved={} budget={budget} orphans={} accepted={} stray={}",
            self.reserved(),
            self.orphans.len(),
            self.pool.accepted(),
            self.stats.stray_completions
        )?;
        for (i, live) in self.slots.iter().enumerate() {
            let Some(live) = live else { continue };
            write!(out, "{prefix}nbd: slot {i} conn {}", live.id)?;
            if let Some(h) = self.pool.handles().get(i) {
                let s = sockets.get::<tcp::Socket>(*h);
                write!(
                    out,
                    " tcp={} recv_queue={} send_queue={} can_recv={} can_send={} may_recv={} may_send={}",
                    s.state(),
                    s.recv_queue(),
                    s.send_queue(),
                    s.can_recv(),
                    s.can_send(),
                    s.may_recv(),
                    s.may_send()
                )?;
            }
            writeln!(out, " {}", live.conn.debug_state())?;
        }
        for o in &self.orphans {
            writeln!(
                out,
                "{prefix}nbd: orphan conn {} {}",
                o.id,
                o.conn.debug_state()
            )?;
        }
        Ok(())
    }

    /// The next event to log.
    pub fn next_event(&mut self) -> Option<NbdEvent> {
        self.events.pop_front()
    }

    fn push_event(&mut self, e: NbdEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
            self.stats.dropped_events = self.stats.dropped_events.saturating_add(1);
        }
        self.events.push_back(e);
    }

    fn drain_events(&mut self, live: &mut Live) {
        while let Some(event) = live.conn.next_event() {
            self.push_event(live.event(event));
        }
    }

    /// The connection's socket is gone: report it closed, or keep it as an
    /// orphan until its disk operations complete.
    fn closed(&mut self, mut live: Live) {
        self.drain_events(&mut live);
        if live.conn.outstanding() > 0 {
            self.orphans.push(live);
        } else if let Some(event) = live.conn.closed_event() {
            self.push_event(live.event(event));
        }
    }

    fn route_completion(&mut self, tag: u64, result: Result<Vec<u8>, DiskError>) -> bool {
        let id = (tag >> 32) as u32;
        let local = tag as u32;
        let live = self
            .slots
            .iter_mut()
            .flatten()
            .chain(self.orphans.iter_mut())
            .find(|l| l.id == id);
        match live {
            Some(l) => l.conn.complete(local, result),
            None => false,
        }
    }

    /// Moves bytes between the sockets and the connections, submits their
    /// disk operations to `disks` and hands back its completions, closes
    /// finished connections, re-arms free sockets. Returns whether anything moved.
    pub fn poll(
        &mut self,
        sockets: &mut SocketSet<'_>,
        now: Instant,
        disks: &mut dyn Disks,
    ) -> bool {
        let now_us = micros(now);
        let owner = self.cfg.owner;
        let mut busy = false;
        // Completions first: they free budget and queue replies.
        while let Some((tag, result)) = disks.poll_completion(owner) {
            busy = true;
            if !self.route_completion(tag, result) {
                self.stats.stray_completions = self.stats.stray_completions.saturating_add(1);
            }
        }
        let budget = self.pool.len().saturating_mul(self.cfg.limits.budget);
        let mut exports: Option<Vec<ExportInfo>> = None;
        let mut disk_busy = false;
        for i in 0..self.pool.len() {
            let Some((sock, new)) = self.pool.active(i, sockets, now_us) else {
                continue;
            };
            if new {
                busy = true;
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1).max(1);
                let live = Live {
                    id,
                    peer: sock.remote_endpoint(),
                    conn: Connection::new(self.cfg.limits),
                };
                if let Some(old) = self.slots.get_mut(i).and_then(|s| s.replace(live)) {
                    // Cannot happen: a slot is emptied when its socket is given back.
                    self.closed(old);
                }
            }
            let over_budget = self.reserved() >= budget;
            let Some(mut live) = self.slots.get_mut(i).and_then(Option::take) else {
                // An active socket without a connection (cannot happen): reset it.
                self.pool.abort(i, sock, now_us);
                continue;
            };
            busy |= Self::pump(
                &mut live,
                sock,
                owner,
                disks,
                &mut exports,
                !over_budget,
                &mut disk_busy,
            );
            self.drain_events(&mut live);
            let gone = !sock.may_send() && peer_finished(sock.state());
            match live.conn.close_action() {
                Some(CloseAction::Close) => {
                    self.pool.close(i, sock, now_us);
                    self.closed(live);
                    busy = true;
                }
                Some(CloseAction::Abort) => {
                    live.conn.abandon();
                    self.pool.abort(i, sock, now_us);
                    self.closed(live);
                    busy = true;
                }
                None if gone => {
                    // Reset or timed out: nothing more can be sent.
                    live.conn.lost();
                    self.pool.finished(i, sock, now_us);
                    self.closed(live);
                    busy = true;
                }
                None => {
                    if let Some(s) = self.slots.get_mut(i) {
                        *s = Some(live);
                    }
                }
            }
        }
        // Orphans: wait for their completions, then report them closed.
        let mut i = 0;
        while i < self.orphans.len() {
            if self
                .orphans
                .get(i)
                .is_some_and(|l| l.conn.outstanding() == 0)
            {
                let live = self.orphans.swap_remove(i);
                self.closed(live);
                busy = true;
            } else {
                i += 1;
            }
        }
        busy
    }

    /// One active connection: receive, submit, transmit.
    fn pump(
        live: &mut Live,
        sock: &mut tcp::Socket<'_>,
        owner: u16,
        disks: &mut dyn Disks,
        exports: &mut Option<Vec<ExportInfo>>,
        may_read: bool,
        disk_busy: &mut bool,
    ) -> bool {
        let conn = &mut live.conn;
        let mut busy = false;
        // Receive while the connection takes bytes (it stops at its budget:
        // what it leaves stays in the socket and the window closes).
        while may_read && sock.can_recv() && conn.wants_input() {
            let ex: &[ExportInfo] = if conn.needs_exports() {
                exports.get_or_insert_with(|| disks.exports())
            } else {
                &[]
            };
            if !recv_with(sock, |buf| conn.receive(buf, ex)) {
                break;
            }
            busy = true;
        }
        // Submit its disk operations until the disk is busy.
        while !*disk_busy && let Some(r) = conn.next_disk_request() {
            busy = true;
            let tag = (u64::from(live.id) << 32) | u64::from(r.tag);
            let (local, export, offset) = (r.tag, r.export, r.offset);
            match disks.submit(owner, tag, export, offset, r.op) {
                Ok(()) => {}
                Err((DiskError::Busy, op)) => {
                    conn.retry(DiskRequest {
                        tag: local,
                        export,
                        offset,
                        op,
                    });
                    *disk_busy = true;
                }
                Err((error, _)) => {
                    conn.complete(local, Err(error));
                }
            }
        }
        // Send its replies while the socket takes them.
        while sock.can_send() && conn.wants_transmit() {
            if !send_with(sock, |buf| conn.transmit(buf)) {
                break;
            }
            busy = true;
        }
        if !sock.may_recv() && peer_finished(sock.state()) && conn.wants_input() {
            // FIN: no more requests; close once the replies are out.
            conn.peer_closed();
            busy = true;
        }
        busy
    }
}
