//! An iperf3-compatible server (TCP tests): protocol facts, parameter/results JSON, sans-IO state machine.
//!
//! Wire facts are in [`proto`] (with their sources in iperf 3.12); the state
//! machine is [`Server`]. The smoltcp binding is [`crate::smol::Iperf3Service`].

pub mod proto;
pub mod server;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests;

pub use proto::{
    COOKIE_SIZE, ClientResults, CpuUtil, DEFAULT_PORT, IperfErrno, MAX_PARAMS_JSON,
    MAX_RESULTS_JSON, MAX_STREAMS, ParamError, Protocol, State, StreamResult, TestParams,
    parse_client_results, parse_params, stream_id, write_results,
};
pub use server::{
    AbortReason, AcceptError, CloseKind, ConnId, Event, Phase, ProtocolError, Server, ServerConfig,
    ServerStats, TestSummary,
};
