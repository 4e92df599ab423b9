//! The front-end runtime every Xen split driver shares: platform traits, granted pages, the xenbus connection and its resume sequence.
//!
//! A front-end driver (netfront, blkfront, ...) supplies only what is its own
//! through [`Driver`]: its rings and nodes, what to do once connected, what to
//! release, what to drop as stale after a restore. It gets for free:
//!
//! - the platform traits ([`platform`]) the kernel implements once for every
//!   device class, and their fakes for host tests ([`sim`], feature
//!   `test-utils`);
//! - granted pages as owning values ([`Held`], [`RingHalf`]) and the rules for
//!   granting ([`Resources`]): every page is granted to the current back end
//!   before a request names it, ends its grant only once the back end let go
//!   (or is left to the grant table's deferred list), and comes back to the
//!   provider only then;
//! - [`Device`]: the [`xenbus::Frontend`] state machine carried out: probe
//!   (`backend`, `backend-id`, checked), connect, publish in one xenstore
//!   transaction, close, reconnect after a fault, suspend, cancelled resume and
//!   new-domain resume (see [`device`] for the order);
//! - checked parsing of the numeric nodes back ends write ([`nodes`]);
//! - recovery ([`recovery`]): failed setups and state writes retried with
//!   back-off, a fault budget and a cap on deferred pages that mark a device
//!   broken instead of letting a hostile back end drain the guest.
//!
//! Model: virtio-drivers' `transport` module, whose initialisation every
//! device shares. Protocol: `xen/include/public/io/xenbus.h`, `io/ring.h`,
//! `grant_table.h`, `event_channel.h`; Linux `xenbus_client.c`.
//!
//! No-panic promise: nothing here panics on anything a back end, the
//! toolstack or xenstore provide.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod device;
pub mod error;
mod held;
pub mod nodes;
pub mod platform;
pub mod recovery;
#[cfg(feature = "test-utils")]
pub mod sim;

pub use device::{Backend, Device, Driver, Nodes, device_dir, read_backend};
pub use error::{DeviceNode, Error, ProbeError, SetupError};
pub use held::{Held, Kick, MultiPageRing, Resources, RingArea, RingHalf};
pub use platform::{DevicePage, EventChannel, GrantAccess, PageProvider, XenstoreAccess};
pub use recovery::{Broken, Health, RecoveryConfig};
