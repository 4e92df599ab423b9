//! Boot and interrupt stacks, each with an unmapped guard page below it.
//!
//! The kernel runs on [`BOOT_STACK`] for its whole life. #DF, #NMI, #MC and #PF run on
//! their own interrupt-stack-table (IST) stacks, so a kernel stack overflow (a #PF on
//! the guard page) is still reported. All of them live in `.bss.xenrs_boot`, which the
//! linker script keeps below 2 MiB where [`crate::paging`] can unmap the guard pages.

/// Size of one page.
const PAGE: usize = 4096;

/// A stack of `N` bytes (a multiple of 4 KiB) with a guard page directly below it.
// The fields are only ever addressed through raw pointers, never read as fields.
#[allow(dead_code)]
#[repr(C, align(4096))]
pub(crate) struct GuardedStack<const N: usize> {
    /// Unmapped at boot: running off the bottom of `stack` faults here.
    guard: [u8; PAGE],
    /// The stack itself (grows down from its end).
    stack: [u8; N],
}

impl<const N: usize> GuardedStack<N> {
    /// A zeroed stack (placed in `.bss`).
    const fn new() -> Self {
        Self {
            guard: [0; PAGE],
            stack: [0; N],
        }
    }
}

/// Offset of the top of a `GuardedStack<N>` from its start.
const fn top_offset(n: usize) -> usize {
    PAGE + n
}

/// Size of the kernel's main stack.
pub const BOOT_STACK_SIZE: usize = 64 * 1024;
/// Size of each IST stack.
pub const IST_STACK_SIZE: usize = 16 * 1024;

/// Offset of [`BOOT_STACK`]'s top from the symbol (used by the entry assembly).
pub(crate) const BOOT_STACK_TOP_OFFSET: usize = top_offset(BOOT_STACK_SIZE);

/// The kernel's main stack (loaded by the entry assembly before calling Rust).
#[unsafe(link_section = ".bss.xenrs_boot.stack")]
pub(crate) static mut BOOT_STACK: GuardedStack<BOOT_STACK_SIZE> = GuardedStack::new();
/// IST stack for #DF.
#[unsafe(link_section = ".bss.xenrs_boot.stack")]
static mut DF_STACK: GuardedStack<IST_STACK_SIZE> = GuardedStack::new();
/// IST stack for NMI.
#[unsafe(link_section = ".bss.xenrs_boot.stack")]
static mut NMI_STACK: GuardedStack<IST_STACK_SIZE> = GuardedStack::new();
/// IST stack for #MC.
#[unsafe(link_section = ".bss.xenrs_boot.stack")]
static mut MC_STACK: GuardedStack<IST_STACK_SIZE> = GuardedStack::new();
/// IST stack for #PF.
#[unsafe(link_section = ".bss.xenrs_boot.stack")]
static mut PF_STACK: GuardedStack<IST_STACK_SIZE> = GuardedStack::new();

/// Address of the guard page and of the top of one stack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StackBounds {
    /// Address of the guard page (the stack's lowest byte is one page above it).
    pub guard: u64,
    /// One past the stack's highest byte; the initial stack pointer.
    pub top: u64,
}

/// Bounds of a stack from its raw pointer (no reference to the `static mut` is made).
fn bounds<const N: usize>(stack: *const GuardedStack<N>) -> StackBounds {
    let guard = stack as u64;
    StackBounds {
        guard,
        top: guard + top_offset(N) as u64,
    }
}

/// The stacks the IDT's IST entries use, in [`crate::gdt`] IST-index order.
pub(crate) fn ist_stacks() -> [StackBounds; 4] {
    [
        bounds(&raw const DF_STACK),
        bounds(&raw const NMI_STACK),
        bounds(&raw const MC_STACK),
        bounds(&raw const PF_STACK),
    ]
}

/// The kernel's main stack.
pub(crate) fn boot_stack() -> StackBounds {
    bounds(&raw const BOOT_STACK)
}
