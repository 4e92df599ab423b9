//! Sizing the services from a memory budget: socket counts and buffer sizes that fit the heap the guest has.
//!
//! The kernel knows its heap; it hands [`ServicesConfig::for_budget`] the bytes
//! the services may take (heap free minus its reserve). Every selected service
//! first gets its minimum (a few small sockets: echo, UDP echo, iperf3 `-P 4`
//! and one NBD client still work), then the rest is shared by weight, and each
//! service grows from its share up to its cap:
//!
//! | service | minimum | cap |
//! |---|---|---|
//! | TCP echo | 4 sockets × 4 KiB each way | 40 × 16 KiB |
//! | UDP echo | 16 KiB each way | 64 KiB |
//! | iperf3 | 6 sockets (`-P 4`) × 16 KiB | 10 sockets (`-P 8`) × 512 KiB |
//! | NBD | 1 client: 32 KiB sockets + 256 KiB payload | 4 × (128 KiB + 512 KiB) |
//!
//! A pool first gains sockets (at its "knee" buffer size), then, with all its
//! sockets, larger buffers; so every figure grows with the budget (host
//! tests: monotone, within the budget, never below the minimums). Without a
//! disk at boot the NBD service keeps its minimum (a disk attached later is
//! still served, one client at a time).

use super::echo::UdpEchoConfig;
use super::nbd::NbdConfig;
use super::pool::TcpPoolConfig;
use super::{Selection, ServicesConfig};
use core::fmt;

const KIB: usize = 1024;

/// How a TCP pool grows: sockets `min..=max`, buffers (each way) from `min_buffer`;
/// sockets are added at `knee_buffer`, buffers grow past it only with `max_sockets`.
#[derive(Debug, Clone, Copy)]
struct PoolShape {
    min_sockets: usize,
    max_sockets: usize,
    min_buffer: usize,
    knee_buffer: usize,
    max_buffer: usize,
}

impl PoolShape {
    /// The least bytes of this pool.
    const fn min_bytes(&self) -> usize {
        self.min_sockets * 2 * self.min_buffer
    }

    /// Sockets and buffer size (each way) for `share` bytes (at least [`PoolShape::min_bytes`]).
    fn size(&self, share: usize) -> (usize, usize) {
        let sockets = (share / (2 * self.knee_buffer)).clamp(self.min_sockets, self.max_sockets);
        let per = share / (2 * sockets);
        let cap = if sockets < self.max_sockets {
            self.knee_buffer
        } else {
            self.max_buffer
        };
        let buffer = (per.min(cap) / KIB * KIB).max(self.min_buffer);
        (sockets, buffer)
    }
}

const TCP_ECHO: PoolShape = PoolShape {
    min_sockets: 4,
    max_sockets: 40,
    min_buffer: 4 * KIB,
    knee_buffer: 16 * KIB,
    max_buffer: 16 * KIB,
};

const IPERF3: PoolShape = PoolShape {
    // Control + 4 streams + a spare to refuse a second client: `-P 4` always works.
    min_sockets: 6,
    max_sockets: 10,
    min_buffer: 16 * KIB,
    knee_buffer: 128 * KIB,
    max_buffer: 512 * KIB,
};

/// UDP echo payload queue each way.
const UDP_MIN: usize = 16 * KIB;
const UDP_MAX: usize = 64 * KIB;

/// NBD: per client, socket buffers (each way) and payload in flight.
const NBD_MIN_BUFFER: usize = 32 * KIB;
const NBD_MAX_BUFFER: usize = 128 * KIB;
const NBD_MIN_PAYLOAD: usize = 256 * KIB;
const NBD_MAX_PAYLOAD: usize = 512 * KIB;
const NBD_MAX_CLIENTS: usize = 4;
const NBD_MIN_CLIENT: usize = 2 * NBD_MIN_BUFFER + NBD_MIN_PAYLOAD;
const NBD_FULL_CLIENT: usize = 2 * NBD_MAX_BUFFER + NBD_MAX_PAYLOAD;

/// Weights of the bytes above the minimums.
const WEIGHT_TCP_ECHO: usize = 15;
const WEIGHT_UDP_ECHO: usize = 3;
const WEIGHT_IPERF3: usize = 50;
const WEIGHT_NBD: usize = 32;

/// The budget is below what the selected services need at the least.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetTooSmall {
    /// Bytes offered.
    pub budget: usize,
    /// Bytes the selected services need at the least.
    pub needed: usize,
}

impl fmt::Display for BudgetTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes for the services' buffers, they need at least {}",
            self.budget, self.needed
        )
    }
}

/// The least bytes the services of `selection` need ([`ServicesConfig::for_budget`]'s minimum).
pub fn min_budget(selection: Selection) -> usize {
    let mut n = 0;
    if selection.tcp_echo {
        n += TCP_ECHO.min_bytes();
    }
    if selection.udp_echo {
        n += 2 * UDP_MIN;
    }
    if selection.iperf3 {
        n += IPERF3.min_bytes();
    }
    if selection.nbd {
        n += NBD_MIN_CLIENT;
    }
    n
}

/// NBD clients, socket buffer (each way) and payload budget per client for `share` bytes.
fn nbd_size(share: usize) -> (usize, usize, usize) {
    let clients = (share / NBD_FULL_CLIENT).clamp(1, NBD_MAX_CLIENTS);
    let per = (share / clients).min(NBD_FULL_CLIENT);
    let payload = per
        .saturating_sub(2 * NBD_MAX_BUFFER)
        .clamp(NBD_MIN_PAYLOAD, NBD_MAX_PAYLOAD)
        / (4 * KIB)
        * (4 * KIB);
    let buffer =
        (per.saturating_sub(payload) / 2).clamp(NBD_MIN_BUFFER, NBD_MAX_BUFFER) / KIB * KIB;
    (clients, buffer, payload)
}

impl ServicesConfig {
    /// The services of `selection` sized to take at most `budget` heap bytes
    /// ([`ServicesConfig::buffer_bytes`]), ports and timeouts as
    /// [`ServicesConfig::default`]; `disks`: a disk is attached (else NBD keeps its minimum).
    pub fn for_budget(
        selection: Selection,
        budget: usize,
        disks: bool,
    ) -> Result<ServicesConfig, BudgetTooSmall> {
        let needed = min_budget(selection);
        if budget < needed {
            return Err(BudgetTooSmall { budget, needed });
        }
        let extra = budget - needed;
        let weight = |on: bool, w: usize| if on { w } else { 0 };
        let w_echo = weight(selection.tcp_echo, WEIGHT_TCP_ECHO);
        let w_udp = weight(selection.udp_echo, WEIGHT_UDP_ECHO);
        let w_iperf = weight(selection.iperf3, WEIGHT_IPERF3);
        let w_nbd = weight(selection.nbd && disks, WEIGHT_NBD);
        let total = (w_echo + w_udp + w_iperf + w_nbd).max(1);
        // `extra / total * w` would lose up to `total` bytes; exact enough and
        // cannot overflow (budget / total ≤ usize::MAX / 100).
        let share = |w: usize| extra / total * w;

        let d = ServicesConfig::default();
        let mut cfg = d;
        cfg.selection = selection;

        let (sockets, buffer) = TCP_ECHO.size(TCP_ECHO.min_bytes() + share(w_echo));
        cfg.tcp_echo = TcpPoolConfig {
            sockets,
            rx_buffer: buffer,
            tx_buffer: buffer,
            ..d.tcp_echo
        };

        let udp = ((2 * UDP_MIN + share(w_udp)) / 2).min(UDP_MAX) / KIB * KIB;
        cfg.udp_echo = UdpEchoConfig {
            payload_bytes: udp,
            ..d.udp_echo
        };

        let (sockets, buffer) = IPERF3.size(IPERF3.min_bytes() + share(w_iperf));
        cfg.iperf3 = TcpPoolConfig {
            sockets,
            rx_buffer: buffer,
            tx_buffer: buffer,
            ..d.iperf3
        };
        // One control connection and a spare (refuses a second client).
        cfg.iperf3_server.max_parallel = u32::try_from(sockets - 2).unwrap_or(u32::MAX);
        cfg.iperf3_server.max_conns = sockets;

        let (clients, buffer, payload) = nbd_size(NBD_MIN_CLIENT + share(w_nbd));
        cfg.nbd = NbdConfig {
            pool: TcpPoolConfig {
                sockets: clients,
                rx_buffer: buffer,
                tx_buffer: buffer,
                ..d.nbd.pool
            },
            limits: nbd_server::Limits {
                budget: payload,
                // nbdcopy opens 4 connections to a multi-conn server: with
                // fewer sockets the rest would be refused.
                multi_conn: clients >= NBD_MAX_CLIENTS,
                ..d.nbd.limits
            },
            ..d.nbd
        };
        Ok(cfg)
    }

    /// A one-line summary of the sizes: `tcp-echo=40x16K udp-echo=64K
    /// iperf3=10x512K nbd=4x128K+512K` (unselected services left out).
    pub fn sizes(&self) -> Sizes<'_> {
        Sizes(self)
    }
}

/// See [`ServicesConfig::sizes`].
pub struct Sizes<'a>(&'a ServicesConfig);

impl fmt::Display for Sizes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        let s = c.selection;
        let mut sep = "";
        if s.tcp_echo {
            write!(
                f,
                "tcp-echo={}x{}K",
                c.tcp_echo.sockets,
                c.tcp_echo.rx_buffer / KIB
            )?;
            sep = " ";
        }
        if s.udp_echo {
            write!(f, "{sep}udp-echo={}K", c.udp_echo.payload_bytes / KIB)?;
            sep = " ";
        }
        if s.iperf3 {
            write!(
                f,
                "{sep}iperf3={}x{}K",
                c.iperf3.sockets,
                c.iperf3.rx_buffer / KIB
            )?;
            sep = " ";
        }
        if s.nbd {
            write!(
                f,
                "{sep}nbd={}x{}K+{}K",
                c.nbd.pool.sockets,
                c.nbd.pool.rx_buffer / KIB,
                c.nbd.limits.budget / KIB
            )?;
            sep = " ";
        }
        if sep.is_empty() {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;
    use alloc::format;

    const MIB: usize = 1024 * 1024;

    fn selections() -> [Selection; 4] {
        [
            Selection::ALL,
            Selection {
                nbd: false,
                ..Selection::ALL
            },
            Selection {
                iperf3: false,
                tcp_echo: false,
                ..Selection::ALL
            },
            Selection {
                tcp_echo: true,
                ..Selection::NONE
            },
        ]
    }

    /// Every size figure of `c`, for the monotonicity check.
    fn figures(c: &ServicesConfig) -> [usize; 11] {
        [
            c.tcp_echo.sockets,
            c.tcp_echo.rx_buffer,
            c.tcp_echo.tx_buffer,
            c.udp_echo.payload_bytes,
            c.iperf3.sockets,
            c.iperf3.rx_buffer,
            c.iperf3.tx_buffer,
            c.nbd.pool.sockets,
            c.nbd.pool.rx_buffer,
            c.nbd.limits.budget,
            c.buffer_bytes(),
        ]
    }

    #[test]
    fn below_the_minimum_is_refused() {
        for sel in selections() {
            let need = min_budget(sel);
            assert_eq!(
                ServicesConfig::for_budget(sel, need - 1, true),
                Err(BudgetTooSmall {
                    budget: need - 1,
                    needed: need
                })
            );
            assert!(ServicesConfig::for_budget(sel, need, true).is_ok());
        }
        assert_eq!(min_budget(Selection::NONE), 0);
        // The whole minimum: well under a mebibyte.
        assert!(min_budget(Selection::ALL) < 600 * 1024);
    }

    #[test]
    fn within_budget_minimums_and_monotone() {
        for sel in selections() {
            for disks in [false, true] {
                let mut prev: Option<[usize; 11]> = None;
                let mut budget = min_budget(sel);
                while budget < 128 * MIB {
                    let c = ServicesConfig::for_budget(sel, budget, disks).unwrap();
                    assert!(
                        c.buffer_bytes() <= budget,
                        "{sel:?} {budget}: {} > budget",
                        c.buffer_bytes()
                    );
                    assert!(c.tcp_echo.sockets >= 4 && c.tcp_echo.rx_buffer >= 4 * KIB);
                    assert!(c.udp_echo.payload_bytes >= 16 * KIB);
                    assert!(c.iperf3.sockets >= 6 && c.iperf3.rx_buffer >= 16 * KIB);
                    assert_eq!(c.iperf3_server.max_conns, c.iperf3.sockets);
                    assert!(c.iperf3_server.max_parallel >= 4);
                    assert!(c.nbd.pool.sockets >= 1 && c.nbd.pool.rx_buffer >= 32 * KIB);
                    // A full-size NBD request always fits one connection's budget.
                    assert!(c.nbd.limits.budget >= c.nbd.limits.max_payload as usize);
                    assert!(c.tcp_echo.sockets <= 40 && c.iperf3.rx_buffer <= 512 * KIB);
                    assert!(c.nbd.pool.sockets <= 4 && c.udp_echo.payload_bytes <= 64 * KIB);
                    let f = figures(&c);
                    if let Some(p) = prev {
                        for (i, (a, b)) in p.iter().zip(f.iter()).enumerate() {
                            assert!(
                                a <= b,
                                "{sel:?} disks={disks} budget {budget}: figure {i} fell {a} -> {b}"
                            );
                        }
                    }
                    prev = Some(f);
                    budget += budget / 97 + 1009;
                }
            }
        }
    }

    #[test]
    fn figures_at_typical_heaps() {
        // memory=8: ~2 MiB of budget; every service runs, iperf3 with -P 4.
        let small = ServicesConfig::for_budget(Selection::ALL, 2 * MIB, true).unwrap();
        assert!(small.iperf3_server.max_parallel >= 4);
        assert!(small.tcp_echo.sockets >= 6);
        // memory=32 (the harness default, ~13 MiB): at least what the fixed
        // configuration gave (40 × 16 KiB echo, 10 × 128 KiB iperf3, NBD 4 clients).
        let mid = ServicesConfig::for_budget(Selection::ALL, 13 * MIB, true).unwrap();
        assert_eq!(
            (mid.tcp_echo.sockets, mid.tcp_echo.rx_buffer),
            (40, 16 * KIB)
        );
        assert_eq!(mid.iperf3.sockets, 10);
        assert!(mid.iperf3.rx_buffer >= 128 * KIB);
        assert_eq!(mid.nbd.pool.sockets, 4);
        // memory=64: iperf3 at its cap.
        let big = ServicesConfig::for_budget(Selection::ALL, 28 * MIB, true).unwrap();
        assert_eq!(big.iperf3.rx_buffer, 512 * KIB);
        assert_eq!(
            format!("{}", big.sizes()),
            "tcp-echo=40x16K udp-echo=64K iperf3=10x512K nbd=4x128K+512K"
        );
        // Without a disk NBD keeps its minimum, the others get the room.
        let nodisk = ServicesConfig::for_budget(Selection::ALL, 2 * MIB, false).unwrap();
        assert_eq!(nodisk.nbd.pool.sockets, 1);
        // One client at a time: no multi-conn (nbdcopy would open 4 connections).
        assert!(!nodisk.nbd.limits.multi_conn && mid.nbd.limits.multi_conn);
        assert!(nodisk.iperf3.buffer_bytes() > small.iperf3.buffer_bytes());
        assert_eq!(
            format!(
                "{}",
                ServicesConfig::for_budget(Selection::NONE, 0, true)
                    .unwrap()
                    .sizes()
            ),
            "none"
        );
    }
}
