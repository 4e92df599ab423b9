//! PVH entry: 32-bit protected mode to long mode, descriptor tables and early page tables.
//!
//! Boot flow (see `docs/BOOT.md`): Xen enters [`entry`]'s `pvh_start32` in 32-bit mode
//! with `%ebx` = the `hvm_start_info` physical address; the assembly builds the
//! identity map of the low 4 GiB ([`paging`]), enters long mode and calls
//! [`rust_entry`], which unmaps page 0 and the stack guard pages, loads the GDT/TSS
//! ([`gdt`]) and the IDT ([`idt`]), then calls the kernel's main, declared with
//! [`entry_point!`]. External interrupts (Xen's event-channel upcall) reach kernel
//! handlers registered with [`interrupts::register_interrupt_handler`].
//!
//! This crate only sets up the CPU; it knows nothing about Xen services.
#![no_std]
#![feature(abi_x86_interrupt)]

mod entry;
mod gdt;
mod idt;
pub mod interrupts;
mod paging;
mod stacks;

pub use idt::{FaultReport, FaultReporter, set_fault_reporter};
pub use paging::IDENTITY_MAP_END;
pub use stacks::{BOOT_STACK_SIZE, IST_STACK_SIZE};

/// What boot hands the kernel's main.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    /// Physical (= virtual) address of `struct hvm_start_info`, exactly as Xen passed
    /// it in `%ebx`: not validated here.
    pub start_info_paddr: u64,
    /// Physical address of the first byte of the kernel image (1 MiB).
    pub image_start: u64,
    /// Physical address one past the image's last byte, `.bss` included (page aligned).
    pub image_end: u64,
    /// False if a guard page could not be unmapped (it stays mapped; see
    /// [`paging`]). The linker script makes this impossible for the current layout.
    pub guards_ok: bool,
}

unsafe extern "C" {
    /// First byte of the image (linker script).
    static __image_start: u8;
    /// One past the image's last byte (linker script).
    static __image_end: u8;
}

unsafe extern "Rust" {
    /// The kernel's main, defined by [`entry_point!`].
    fn __xenrs_kernel_main(info: BootInfo) -> !;
}

/// Declares the kernel's main: `boot::entry_point!(main)` with `fn main(BootInfo) -> !`.
///
/// Boot calls it once, on the boot stack, with interrupts disabled, after the GDT, TSS
/// and IDT are loaded.
#[macro_export]
macro_rules! entry_point {
    ($main:path) => {
        /// The symbol boot calls; forwards to the kernel's main.
        #[unsafe(no_mangle)]
        pub fn __xenrs_kernel_main(info: $crate::BootInfo) -> ! {
            let main: fn($crate::BootInfo) -> ! = $main;
            main(info)
        }
    };
}

/// Called by the entry assembly in 64-bit mode on the boot stack.
extern "C" fn rust_entry(start_info_paddr: u32) -> ! {
    let mut guards = [0u64; 5];
    for (slot, stack) in guards
        .iter_mut()
        .zip(core::iter::once(stacks::boot_stack()).chain(stacks::ist_stacks()))
    {
        *slot = stack.guard;
    }
    // SAFETY: first thing in Rust on the only CPU; the guard pages are never used as
    // memory (they are the padding below each stack).
    let guards_ok = unsafe { paging::unmap_guards(&guards) };
    // SAFETY: once, on the boot CPU, right after the assembly's boot GDT.
    unsafe { gdt::init() };
    // SAFETY: after gdt::init, as required.
    unsafe { idt::init() };
    let info = BootInfo {
        start_info_paddr: u64::from(start_info_paddr),
        image_start: (&raw const __image_start) as u64,
        image_end: (&raw const __image_end) as u64,
        guards_ok,
    };
    // SAFETY: the kernel defines this symbol with the declared signature through
    // `entry_point!` (which type-checks the function it forwards to).
    unsafe { __xenrs_kernel_main(info) }
}
