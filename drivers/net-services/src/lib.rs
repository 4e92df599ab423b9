//! Guest network services: TCP/UDP echo (port 7), an iperf3-compatible server (port 5201) and the NBD disk service (port 10809).
//!
//! Layers:
//! - [`json`]: JSON through `serde-json-core` (`no_std`), with a nesting
//!   bound and cJSON-like numbers for iperf3's peers.
//! - [`iperf3`]: iperf3's control protocol (facts from iperf 3.12's
//!   `iperf_api.c`, `iperf_server_api.c`, `iperf_client_api.c`, `iperf.h`) and
//!   a sans-IO [`iperf3::Server`]: connection events and bytes in, bytes and
//!   close requests out, time passed in.
//! - [`echo`]: the echo services' logic (RFC 862) as small pure pieces.
//! - the NBD protocol lives in the `nbd-server` crate; [`smol::NbdService`]
//!   pumps its connections.
//! - [`smol`]: the binding to smoltcp: a re-arming pool of listening TCP
//!   sockets, and pumps that move bytes between smoltcp sockets and the
//!   services. [`smol::Services`] bundles what the kernel's event loop runs.
//!
//! # No-panic promise
//!
//! Nothing in this crate panics on peer data (bytes, datagrams, connection
//! events in any order): parsers work on checked views with bounded lengths,
//! counters saturate, unknown connection ids are ignored. See the promises in
//! [`json`] and [`iperf3::server`].
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod echo;
pub mod iperf3;
pub mod json;
pub mod smol;

pub use smol::{Selection, Services, ServicesConfig};
