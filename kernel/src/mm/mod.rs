//! Memory: the frame allocator and heap, and the one audited view of a shared page.

pub mod memory;
pub mod page;
