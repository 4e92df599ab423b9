//! Xen core services: shared info, event channels, time, grants, xenstore, control, console.
//!
//! Each module owns one Xen interface and offers plain functions or handles; none of
//! them orchestrates the others (bring-up and the suspend sequence are
//! [`crate::runtime`]'s). Dependencies only point downwards: shared info ← events ←
//! time ← wait ← store ← control.

pub mod console;
pub mod control;
pub mod events;
pub mod grants;
pub mod logger;
pub mod shared_info;
pub mod store;
pub mod suspend;
pub mod time;
pub mod trace;
pub mod wait;
