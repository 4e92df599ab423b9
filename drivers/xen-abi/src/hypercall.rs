//! Hypercall numbers (`xen.h`, `__HYPERVISOR_*`).
//!
//! A PVH guest calls entry `N` of the hypercall page at offset `N * 32`; arguments go
//! in `rdi, rsi, rdx, r10, r8` and the result comes back in `rax` (`arch-x86/xen-x86_64.h`).

/// Size in bytes of one hypercall page entry.
pub const ENTRY_SIZE: usize = 32;

/// `__HYPERVISOR_memory_op`.
pub const MEMORY_OP: u32 = 12;
/// `__HYPERVISOR_xen_version`.
pub const XEN_VERSION: u32 = 17;
/// `__HYPERVISOR_console_io` (refused to a domU on release builds of Xen).
pub const CONSOLE_IO: u32 = 18;
/// `__HYPERVISOR_grant_table_op`.
pub const GRANT_TABLE_OP: u32 = 20;
/// `__HYPERVISOR_vcpu_op`.
pub const VCPU_OP: u32 = 24;
/// `__HYPERVISOR_sched_op`.
pub const SCHED_OP: u32 = 29;
/// `__HYPERVISOR_event_channel_op`.
pub const EVENT_CHANNEL_OP: u32 = 32;
/// `__HYPERVISOR_physdev_op`.
pub const PHYSDEV_OP: u32 = 33;
/// `__HYPERVISOR_hvm_op`.
pub const HVM_OP: u32 = 34;
