//! The x86/Xen edge: hypercalls, the 0xE9 debug port, PVH start info.
//!
//! Everything here talks to the CPU or the hypervisor directly and knows nothing of
//! the services above it.

pub mod debugcon;
pub mod hypercall;
pub mod start_info;
