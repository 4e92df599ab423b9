//! The 64-bit GDT (kernel code, kernel data, TSS) and the TSS with the IST stacks.
//!
//! Replaces the assembly's boot GDT once Rust runs. Built with the `x86_64` crate.

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

use crate::stacks;

/// IST slot (0-based, as the TSS and `set_stack_index` count) of the #DF stack.
pub(crate) const IST_DOUBLE_FAULT: u16 = 0;
/// IST slot of the NMI stack.
pub(crate) const IST_NMI: u16 = 1;
/// IST slot of the #MC stack.
pub(crate) const IST_MACHINE_CHECK: u16 = 2;
/// IST slot of the #PF stack.
pub(crate) const IST_PAGE_FAULT: u16 = 3;

/// The task state segment: only its interrupt stack table is used (no ring changes).
static TSS: Once<TaskStateSegment> = Once::new();
/// The GDT and the selectors of its entries.
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

/// Segment selectors of [`GDT`].
#[derive(Clone, Copy, Debug)]
struct Selectors {
    /// 64-bit kernel code.
    code: SegmentSelector,
    /// Flat kernel data.
    data: SegmentSelector,
    /// The TSS.
    tss: SegmentSelector,
}

/// Builds the TSS and GDT, loads the GDT, reloads every segment register and loads TR.
///
/// # Safety
/// Call once on the boot CPU, with the boot GDT's layout still loaded (the segment
/// reloads must not happen while something relies on the old selectors).
pub(crate) unsafe fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let order = [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK, IST_PAGE_FAULT];
        // The TSS is packed: edit a copy of the table, then store it back whole.
        let mut ist = tss.interrupt_stack_table;
        for (slot, stack) in order.into_iter().zip(stacks::ist_stacks()) {
            if let Some(entry) = ist.get_mut(usize::from(slot)) {
                *entry = VirtAddr::new(stack.top);
            }
        }
        tss.interrupt_stack_table = ist;
        tss
    });
    let (gdt, sel) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        (gdt, Selectors { code, data, tss })
    });
    gdt.load();
    // SAFETY: the selectors index valid, present descriptors of the GDT just loaded
    // (code for CS, flat data for the others), and the TSS descriptor is available
    // (not busy): it is loaded exactly once.
    unsafe {
        CS::set_reg(sel.code);
        SS::set_reg(sel.data);
        DS::set_reg(sel.data);
        ES::set_reg(sel.data);
        load_tss(sel.tss);
    }
}
