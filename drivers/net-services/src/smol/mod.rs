//! The smoltcp binding: socket pools and pumps for TCP echo, UDP echo, the iperf3 server and the NBD disk service.
//!
//! The kernel owns the `Interface`, the device and the `SocketSet`; these
//! services add their sockets to the set once ([`Services::new`]) and are
//! pumped from the event loop:
//!
//! ```text
//! loop {
//!     iface.poll(now, &mut dev, &mut sockets);       // packets in, segments out
//!     let busy = services.poll(&mut sockets, now, &mut disks); // bytes between sockets and services
//!     iface.poll(now, &mut dev, &mut sockets);       // send what the services queued
//!     while let Some(e) = services.next_event() { log(e) }
//!     if !busy { block until an event or min(iface.poll_at, services.poll_at) }
//! }
//! ```
//!
//! Each pump only touches the sockets it created (by handle).

mod budget;
mod echo;
mod frag;
mod iperf;
mod nbd;
mod pool;

pub use budget::{BudgetTooSmall, Sizes, min_budget};
pub use echo::{TcpEcho, TcpEchoStats, UdpEcho, UdpEchoConfig, UdpEchoStats};
pub use frag::{EchoReplyFix, FixedDevice, FixedRx, FixedTx};
pub use iperf::Iperf3Service;
pub use nbd::{NbdConfig, NbdEvent, NbdService, NbdStats};
pub use pool::{PoolError, TcpPool, TcpPoolConfig};

use crate::echo::ECHO_PORT;
use crate::iperf3::{self, DEFAULT_PORT, ServerConfig};
use nbd_server::Disks;
use smoltcp::iface::SocketSet;
use smoltcp::time::Instant;

/// Microseconds since smoltcp's epoch, as the sans-IO parts take time (negative times as 0).
pub fn micros(now: Instant) -> u64 {
    u64::try_from(now.total_micros()).unwrap_or(0)
}

/// Which services run (the guest's command line chooses; default all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// TCP echo on port 7.
    pub tcp_echo: bool,
    /// UDP echo on port 7.
    pub udp_echo: bool,
    /// iperf3 server on port 5201.
    pub iperf3: bool,
    /// NBD disk service on port 10809.
    pub nbd: bool,
}

impl Selection {
    /// Every service.
    pub const ALL: Selection = Selection {
        tcp_echo: true,
        udp_echo: true,
        iperf3: true,
        nbd: true,
    };
    /// No service.
    pub const NONE: Selection = Selection {
        tcp_echo: false,
        udp_echo: false,
        iperf3: false,
        nbd: false,
    };
}

impl Default for Selection {
    fn default() -> Self {
        Selection::ALL
    }
}

/// Sizes and ports of all services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServicesConfig {
    /// Which services run.
    pub selection: Selection,
    /// TCP echo sockets (port 7 by default).
    pub tcp_echo: TcpPoolConfig,
    /// UDP echo socket (port 7 by default).
    pub udp_echo: UdpEchoConfig,
    /// iperf3 sockets (port 5201 by default): one control connection plus the
    /// streams of one test, and one spare to answer a second client `ACCESS_DENIED`.
    pub iperf3: TcpPoolConfig,
    /// The iperf3 state machine's limits; `max_conns` is set to the pool size.
    pub iperf3_server: ServerConfig,
    /// The NBD service (port 10809): sockets, disk owner id, limits.
    pub nbd: NbdConfig,
}

impl Default for ServicesConfig {
    /// All services, fixed sizes (the guest sizes them from its heap with
    /// [`ServicesConfig::for_budget`]); about 5.9 MiB of buffers: TCP echo 16 × (8 + 8)
    /// KiB, UDP echo 2 × 64 KiB, iperf3 10 × (128 + 128) KiB, NBD 4 ×
    /// (128 + 128 KiB sockets + 512 KiB payload in flight).
    fn default() -> Self {
        ServicesConfig {
            selection: Selection::ALL,
            tcp_echo: TcpPoolConfig {
                port: ECHO_PORT,
                sockets: 16,
                rx_buffer: 8 * 1024,
                tx_buffer: 8 * 1024,
                keep_alive_ms: 30_000,
                timeout_ms: 120_000,
                nagle: false,
                linger_ms: 10_000,
            },
            udp_echo: UdpEchoConfig::default(),
            iperf3: TcpPoolConfig {
                port: DEFAULT_PORT,
                sockets: 10,
                rx_buffer: 128 * 1024,
                tx_buffer: 128 * 1024,
                // A client silent for a minute (probed every 10 s) is gone;
                // shorter limits cut tests across an ordinary back-end pause
                // (a netback rebind or a migration keeps the link away for
                // 10-20 s, and TCP back-off stretches that).
                keep_alive_ms: 10_000,
                timeout_ms: 60_000,
                nagle: false,
                linger_ms: 5_000,
            },
            iperf3_server: ServerConfig {
                max_parallel: 8,
                ..ServerConfig::default()
            },
            nbd: NbdConfig::default(),
        }
    }
}

impl ServicesConfig {
    /// Heap bytes the selected services' buffers take (socket buffers, and
    /// the NBD connections' payload budgets).
    pub fn buffer_bytes(&self) -> usize {
        let mut n = 0usize;
        if self.selection.tcp_echo {
            n = n.saturating_add(self.tcp_echo.buffer_bytes());
        }
        if self.selection.udp_echo {
            n = n.saturating_add(self.udp_echo.buffer_bytes());
        }
        if self.selection.iperf3 {
            n = n.saturating_add(self.iperf3.buffer_bytes());
        }
        if self.selection.nbd {
            n = n.saturating_add(self.nbd.buffer_bytes());
        }
        n
    }
}

/// Why the services could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupError {
    /// A TCP pool's configuration is unusable.
    Pool(PoolError),
    /// The UDP echo socket could not be bound (port 0).
    UdpBind,
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SetupError::Pool(e) => write!(f, "tcp pool: {e}"),
            SetupError::UdpBind => f.write_str("cannot bind the udp echo socket to port 0"),
        }
    }
}

impl From<PoolError> for SetupError {
    fn from(e: PoolError) -> Self {
        SetupError::Pool(e)
    }
}

/// Something for the kernel to log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ServiceEvent {
    /// From the iperf3 server.
    Iperf3(iperf3::Event),
    /// From the NBD service (print those with [`NbdEvent::is_error`] as
    /// `xenrs nbd error: {event}`).
    Nbd(NbdEvent),
}

/// The selected services, bound to sockets in one `SocketSet`.
pub struct Services {
    cfg: ServicesConfig,
    tcp_echo: Option<TcpEcho>,
    udp_echo: Option<UdpEcho>,
    iperf3: Option<Iperf3Service>,
    nbd: Option<NbdService>,
}

impl Services {
    /// Adds the selected services' sockets to `sockets`, listening/bound.
    /// The bulk-traffic services come first (iperf3, then NBD): smoltcp looks
    /// a segment's socket up by walking the set in order, and the TCP echo
    /// pool's dozens of sockets would otherwise be walked for every iperf3 or
    /// NBD segment (issue 11, "iperf3's sockets found first").
    pub fn new(sockets: &mut SocketSet<'_>, cfg: &ServicesConfig) -> Result<Self, SetupError> {
        let sel = cfg.selection;
        let iperf3 = if sel.iperf3 {
            Some(Iperf3Service::new(sockets, cfg.iperf3, cfg.iperf3_server)?)
        } else {
            None
        };
        let nbd = if sel.nbd {
            Some(NbdService::new(sockets, cfg.nbd)?)
        } else {
            None
        };
        let udp_echo = if sel.udp_echo {
            Some(UdpEcho::new(sockets, cfg.udp_echo)?)
        } else {
            None
        };
        let tcp_echo = if sel.tcp_echo {
            Some(TcpEcho::new(sockets, cfg.tcp_echo)?)
        } else {
            None
        };
        Ok(Services {
            cfg: *cfg,
            tcp_echo,
            udp_echo,
            iperf3,
            nbd,
        })
    }

    /// Pumps every service once; the NBD service submits to `disks` and
    /// takes its completions (pass [`nbd_server::NoDisks`] without disks).
    /// Returns whether any byte, connection or disk operation moved (then
    /// call `iface.poll` and this again before blocking). Call it also when
    /// a disk completion may have arrived (the disks' interrupt).
    pub fn poll(
        &mut self,
        sockets: &mut SocketSet<'_>,
        now: Instant,
        disks: &mut dyn Disks,
    ) -> bool {
        let mut busy = false;
        if let Some(s) = &mut self.tcp_echo {
            busy |= s.poll(sockets, now);
        }
        if let Some(s) = &mut self.udp_echo {
            busy |= s.poll(sockets, now);
        }
        if let Some(s) = &mut self.iperf3 {
            busy |= s.poll(sockets, now);
        }
        if let Some(s) = &mut self.nbd {
            busy |= s.poll(sockets, now, disks);
        }
        busy
    }

    /// The earliest time a service timer needs [`Services::poll`] even
    /// without network activity (combine with `iface.poll_at`).
    pub fn poll_at(&self) -> Option<Instant> {
        self.iperf3.as_ref().and_then(Iperf3Service::poll_at)
    }

    /// The next event to log.
    pub fn next_event(&mut self) -> Option<ServiceEvent> {
        if let Some(e) = self
            .iperf3
            .as_mut()
            .and_then(|s| s.server_mut().next_event())
        {
            return Some(ServiceEvent::Iperf3(e));
        }
        self.nbd
            .as_mut()
            .and_then(NbdService::next_event)
            .map(ServiceEvent::Nbd)
    }

    /// The configuration the services were made with.
    pub fn config(&self) -> &ServicesConfig {
        &self.cfg
    }

    /// The TCP echo service, if selected.
    pub fn tcp_echo(&self) -> Option<&TcpEcho> {
        self.tcp_echo.as_ref()
    }

    /// The UDP echo service, if selected.
    pub fn udp_echo(&self) -> Option<&UdpEcho> {
        self.udp_echo.as_ref()
    }

    /// The iperf3 service, if selected.
    pub fn iperf3(&self) -> Option<&Iperf3Service> {
        self.iperf3.as_ref()
    }

    /// The NBD service, if selected.
    pub fn nbd(&self) -> Option<&NbdService> {
        self.nbd.as_ref()
    }

    /// The iperf3 service, if selected (e.g. to set the CPU utilisation it reports).
    pub fn iperf3_mut(&mut self) -> Option<&mut Iperf3Service> {
        self.iperf3.as_mut()
    }
}
