//! Xenbus for split-driver front ends: one sans-IO state machine and device enumeration (`xen/include/public/io/xenbus.h`).
//!
//! - [`frontend`]: [`Frontend`], the state machine every front-end driver
//!   (netfront, blkfront, ...) shares. Inputs are the back end's state as read
//!   from xenstore and the driver's own events; outputs are [`Action`]s for the
//!   driver to carry out (write our `state` node, set up rings, release grants,
//!   ...). It does no I/O.
//! - [`dispatch`]: [`RoundRobin`], the order a main loop hands watch events to
//!   their handlers in, so that one watch never holds up another.
//! - [`device`]: checked parsing of `device/<class>/<id>` entries, of the
//!   `backend` path and of `backend-id`, with typed errors.
//!
//! Protocol facts this follows (from `io/xenbus.h`, Linux's `xenbus_client.c`,
//! `xen-netfront.c`, `xen-blkfront.c` and the back ends' `frontend_changed`):
//! states are decimal strings `"0"`..`"8"`; a back end publishes its features and
//! goes to InitWait, the front end then grants its rings, writes their
//! references and moves to Initialised (blkfront) or Connected (netfront); the
//! back end maps them and goes Connected. Either side starts a close by going
//! Closing; the other answers Closed. A back end that is Closed re-enters InitWait
//! ("prepare for reconnect") when the front end writes Initialising again.
//!
//! No-panic promise: nothing here panics for any input, including any bytes read
//! from xenstore; peer strings are parsed as checked views into typed values.
#![no_std]
#![forbid(unsafe_code)]

pub mod device;
pub mod dispatch;
pub mod frontend;

#[cfg(test)]
mod tests;

pub use device::{
    BackendPath, DeviceClass, DeviceError, DeviceId, FrontendDevice, parse_backend_id,
};
pub use dispatch::RoundRobin;
pub use frontend::{
    Action, Actions, DriverEvent, Frontend, FrontendError, Handshake, Input, Phase, Rebind,
};
pub use xen_abi::xenbus::{StateParseError, XenbusState};
