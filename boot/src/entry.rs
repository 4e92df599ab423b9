//! The PVH entry: the Xen ELF note, 32-bit protected mode to long mode, then Rust.
//!
//! Xen starts a PVH guest at the address in its `XEN_ELFNOTE_PHYS32_ENTRY` note
//! (`xen/include/public/elfnote.h`) in the state `docs/misc/pvh.pandoc` describes: 32-bit
//! protected mode with paging off, flat 4 GiB `cs`/`ds`/`es`/`ss`, interrupts off, and
//! `%ebx` holding the physical address of `struct hvm_start_info`
//! (`xen/include/public/arch-x86/hvm/start_info.h`). No stack is provided.
//!
//! The assembly below is the part that cannot be Rust: Rust code for this target is
//! 64-bit only. It zeroes `.bss`, builds the identity map in [`crate::paging`],
//! enables PAE + long mode + paging, switches to a three-entry boot GDT and jumps to
//! 64-bit code, which loads the boot stack and calls [`crate::rust_entry`]. The boot GDT
//! is built from the `x86_64` crate's descriptor flags and is replaced by the real
//! GDT (with the TSS) in [`crate::gdt`] as soon as Rust runs.

use core::arch::global_asm;
use x86_64::structures::gdt::DescriptorFlags;

use crate::paging::{BOOT_PD, BOOT_PDPT, BOOT_PML4, BOOT_PT_LOW, IDENTITY_MAP_PD_TABLES};
use crate::stacks::{BOOT_STACK, BOOT_STACK_TOP_OFFSET};

/// Page-table entry bits used by the 32-bit code (`P | RW`, and `PS` for 2 MiB pages).
const PTE_PRESENT_WRITABLE: u32 = 0x3;
/// `P | RW | PS`: a present, writable 2 MiB page.
const PDE_2M_PRESENT_WRITABLE: u32 = 0x83;
/// CR4.PAE.
const CR4_PAE: u32 = 1 << 5;
/// CR0.PG | CR0.WP.
const CR0_PG_WP: u32 = (1 << 31) | (1 << 16);
/// The `IA32_EFER` MSR and its `LME` bit.
const MSR_EFER: u32 = 0xC000_0080;
/// `EFER.LME`: long mode enable.
const EFER_LME: u32 = 1 << 8;
/// Boot GDT selectors: entry 1 is 64-bit code, entry 2 flat data.
const BOOT_CS: u32 = 0x08;
/// See [`BOOT_CS`].
const BOOT_DS: u32 = 0x10;

global_asm!(
    // ---- the PVH ELF note: namesz, descsz, type, "Xen\0", 32-bit entry address ----
    ".pushsection .note.Xen, \"a\", @note",
    ".balign 4",
    ".long 4",
    ".long 4",
    ".long {note_type}",
    ".asciz \"Xen\"",
    ".balign 4",
    ".long pvh_start32",
    ".balign 4",
    ".popsection",
    // ---- the boot GDT: null, 64-bit code, flat data ----
    ".pushsection .rodata.xenrs_boot_gdt, \"a\"",
    ".balign 16",
    "xenrs_boot_gdt:",
    ".quad 0",
    ".quad {code64}",
    ".quad {data}",
    "xenrs_boot_gdt_end:",
    ".balign 8",
    "xenrs_boot_gdt_ptr:",
    ".word xenrs_boot_gdt_end - xenrs_boot_gdt - 1",
    ".long xenrs_boot_gdt",
    ".popsection",
    // ---- 32-bit protected mode, paging off; %ebx = hvm_start_info paddr (kept to the end) ----
    ".pushsection .text.boot32, \"ax\"",
    ".code32",
    ".global pvh_start32",
    ".type pvh_start32, @function",
    "pvh_start32:",
    "cli",
    "cld",
    // Zero .bss (page tables and stacks live there). Uses eax/ecx/edi only.
    "mov $__bss_start, %edi",
    "mov $__bss_end, %ecx",
    "sub %edi, %ecx",
    "xor %eax, %eax",
    "rep stosb",
    // PML4[0] -> PDPT.
    "mov ${pdpt}, %eax",
    "or ${pte}, %eax",
    "mov %eax, {pml4}",
    // PDPT[0..4] -> the four page directories (one per GiB).
    "mov ${pd}, %eax",
    "or ${pte}, %eax",
    "mov ${pdpt}, %edi",
    "mov ${pd_tables}, %ecx",
    "1:",
    "mov %eax, (%edi)",
    "add $0x1000, %eax",
    "add $8, %edi",
    "loop 1b",
    // Every PD entry: a 2 MiB identity page (4 * 512 entries = 4 GiB). High dwords stay 0.
    "mov ${pd}, %edi",
    "mov ${pde2m}, %eax",
    "mov ${pd_entries}, %ecx",
    "2:",
    "mov %eax, (%edi)",
    "add $0x200000, %eax",
    "add $8, %edi",
    "loop 2b",
    // PD[0] -> a 4 KiB table for the first 2 MiB (so Rust can unmap page 0 and guard pages).
    "mov ${pt_low}, %eax",
    "or ${pte}, %eax",
    "mov %eax, {pd}",
    "mov ${pt_low}, %edi",
    "mov ${pte}, %eax",
    "mov $512, %ecx",
    "3:",
    "mov %eax, (%edi)",
    "add $0x1000, %eax",
    "add $8, %edi",
    "loop 3b",
    // PAE on, CR3 = PML4, EFER.LME on, then paging on: this activates long mode.
    "mov %cr4, %eax",
    "or ${cr4_pae}, %eax",
    "mov %eax, %cr4",
    "mov ${pml4}, %eax",
    "mov %eax, %cr3",
    "mov ${efer}, %ecx",
    "rdmsr",
    "or ${efer_lme}, %eax",
    "wrmsr",
    "mov %cr0, %eax",
    "or ${cr0_pg_wp}, %eax",
    "mov %eax, %cr0",
    "lgdt xenrs_boot_gdt_ptr",
    "ljmpl ${boot_cs}, $xenrs_long_start",
    // ---- 64-bit mode ----
    ".code64",
    "xenrs_long_start:",
    "mov ${boot_ds}, %eax",
    "mov %eax, %ds",
    "mov %eax, %es",
    "mov %eax, %ss",
    "xor %eax, %eax",
    "mov %eax, %fs",
    "mov %eax, %gs",
    "lea {stack}+{stack_top}(%rip), %rsp",
    "xor %ebp, %ebp",
    // First argument: the hvm_start_info paddr (zero-extended from %ebx).
    "mov %ebx, %edi",
    "call {rust_entry}",
    "ud2",
    ".size pvh_start32, . - pvh_start32",
    ".popsection",
    note_type = const xen_abi::elfnote::PHYS32_ENTRY,
    code64 = const DescriptorFlags::KERNEL_CODE64.bits(),
    data = const DescriptorFlags::KERNEL_DATA.bits(),
    pml4 = sym BOOT_PML4,
    pdpt = sym BOOT_PDPT,
    pd = sym BOOT_PD,
    pt_low = sym BOOT_PT_LOW,
    pd_tables = const IDENTITY_MAP_PD_TABLES,
    pd_entries = const IDENTITY_MAP_PD_TABLES * 512,
    pte = const PTE_PRESENT_WRITABLE,
    pde2m = const PDE_2M_PRESENT_WRITABLE,
    cr4_pae = const CR4_PAE,
    cr0_pg_wp = const CR0_PG_WP,
    efer = const MSR_EFER,
    efer_lme = const EFER_LME,
    boot_cs = const BOOT_CS,
    boot_ds = const BOOT_DS,
    stack = sym BOOT_STACK,
    stack_top = const BOOT_STACK_TOP_OFFSET,
    rust_entry = sym crate::rust_entry,
    options(att_syntax)
);
