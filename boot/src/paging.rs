//! The boot identity map: low 4 GiB, 2 MiB pages, 4 KiB pages for the first 2 MiB.
//!
//! [`crate::entry`] fills these tables in 32-bit mode (a PML4, one PDPT, four page
//! directories of 2 MiB pages, and one 4 KiB page table for the first 2 MiB). The Xen
//! console and xenstore pages sit just below 4 GiB (pfn 0xfefff and 0xfeffc on Xen
//! 4.17), so the whole low 4 GiB is mapped. Once in Rust, [`unmap_guards`] removes
//! page 0 (null-pointer dereferences fault) and the guard page below every boot stack.

use x86_64::VirtAddr;
use x86_64::instructions::tlb;
use x86_64::structures::paging::PageTable;

/// Number of page directories (1 GiB each) in the identity map.
pub(crate) const IDENTITY_MAP_PD_TABLES: usize = 4;

/// End (exclusive) of the identity map: every physical address below it is mapped at
/// the same virtual address, except page 0 and the boot stacks' guard pages.
pub const IDENTITY_MAP_END: u64 = (IDENTITY_MAP_PD_TABLES as u64) << 30;

/// End (exclusive) of the range mapped with 4 KiB pages by [`BOOT_PT_LOW`].
const LOW_TABLE_END: u64 = 2 << 20;

/// The top-level table; `CR3` points here.
pub(crate) static mut BOOT_PML4: PageTable = PageTable::new();
/// The page-directory-pointer table: four entries, one per GiB.
pub(crate) static mut BOOT_PDPT: PageTable = PageTable::new();
/// The four page directories (contiguous: the 32-bit code walks them as one array).
pub(crate) static mut BOOT_PD: [PageTable; IDENTITY_MAP_PD_TABLES] =
    [const { PageTable::new() }; IDENTITY_MAP_PD_TABLES];
/// 4 KiB pages for the first 2 MiB (kernel image and boot stacks live there).
#[unsafe(link_section = ".bss.xenrs_boot.pt")]
pub(crate) static mut BOOT_PT_LOW: PageTable = PageTable::new();

/// Unmaps page 0 and the given guard pages (each must lie in the first 2 MiB).
///
/// Returns false if an address is outside the 4 KiB-mapped range (the linker script
/// asserts this cannot happen for the boot stacks).
///
/// # Safety
/// Runs once, on the boot CPU, before anything else uses the page tables, and none of
/// `guards` may hold live data.
pub(crate) unsafe fn unmap_guards(guards: &[u64]) -> bool {
    let table: *mut PageTable = &raw mut BOOT_PT_LOW;
    // SAFETY: single-threaded boot code; no other reference to BOOT_PT_LOW exists
    // (the 32-bit code that filled it has finished and only the MMU reads it).
    let table = unsafe { &mut *table };
    let mut ok = true;
    for &addr in core::iter::once(&0u64).chain(guards) {
        if addr >= LOW_TABLE_END {
            ok = false;
            continue;
        }
        let index = (addr >> 12) as usize;
        if let Some(entry) = table.iter_mut().nth(index) {
            entry.set_unused();
            tlb::flush(VirtAddr::new(addr));
        }
    }
    ok
}
