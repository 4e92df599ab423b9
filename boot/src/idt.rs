//! The IDT: every CPU exception is fatal and handed to the kernel's fault reporter.
//!
//! #DF, NMI, #MC and #PF run on their own IST stacks ([`crate::gdt`]), so a stack
//! overflow into a guard page still produces a report. Each handler builds a
//! [`FaultReport`] and calls the reporter registered with [`set_fault_reporter`]; the
//! kernel's reporter prints it and shuts the domain down. Of the vectors 32 and up,
//! only the block [`crate::interrupts::EXTERNAL_VECTORS`] has entries (trampolines to
//! the handlers the kernel registers); any other would arrive as a reported #NP
//! (error code = the vector's IDT entry).

use core::fmt;

use spin::Once;
use x86_64::instructions::interrupts;
use x86_64::instructions::port::Port;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode};

use crate::gdt;

/// What the CPU reported for one exception.
#[derive(Clone, Copy, Debug)]
pub struct FaultReport {
    /// Mnemonic such as `#PF`.
    pub name: &'static str,
    /// The exception vector.
    pub vector: u8,
    /// The error code the CPU pushed (0 for exceptions without one).
    pub error: u64,
    /// Saved instruction pointer.
    pub rip: u64,
    /// Saved code segment selector.
    pub cs: u64,
    /// Saved flags.
    pub rflags: u64,
    /// Saved stack pointer.
    pub rsp: u64,
    /// Saved stack segment selector.
    pub ss: u64,
    /// The faulting linear address (`CR2`), for #PF only.
    pub cr2: Option<u64>,
}

impl FaultReport {
    /// Collects a report from the interrupt stack frame.
    pub(crate) fn new(
        name: &'static str,
        vector: u8,
        error: u64,
        frame: &InterruptStackFrame,
        cr2: Option<u64>,
    ) -> Self {
        Self {
            name,
            vector,
            error,
            rip: frame.instruction_pointer.as_u64(),
            cs: u64::from(frame.code_segment.0),
            rflags: frame.cpu_flags.bits(),
            rsp: frame.stack_pointer.as_u64(),
            ss: u64::from(frame.stack_segment.0),
            cr2,
        }
    }
}

/// Formats the report as the console contract's fault line, without the `xenrs `
/// prefix: `FAULT #PF vector=14 error=0x2 rip=0x... cs=0x8 rflags=0x... rsp=0x... ss=0x10 cr2=0x...`.
impl fmt::Display for FaultReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FAULT {} vector={} error={:#x} rip={:#x} cs={:#x} rflags={:#x} rsp={:#x} ss={:#x}",
            self.name, self.vector, self.error, self.rip, self.cs, self.rflags, self.rsp, self.ss
        )?;
        if let Some(cr2) = self.cr2 {
            write!(f, " cr2={cr2:#x}")?;
        }
        Ok(())
    }
}

/// A fault reporter: prints the report and ends the domain; never returns.
pub type FaultReporter = fn(&FaultReport) -> !;

/// The registered reporter.
static REPORTER: Once<FaultReporter> = Once::new();

/// Registers the function every exception handler calls. Only the first call has an
/// effect; the kernel calls it first thing in its main.
pub fn set_fault_reporter(reporter: FaultReporter) {
    REPORTER.call_once(|| reporter);
}

/// Hands a report to the reporter; without one, writes it to Xen's debug port 0xE9
/// (`xl dmesg`) and halts with interrupts on (the vCPU stays blocked; halting with
/// interrupts off would make Xen treat the vCPU as powered down).
pub(crate) fn report(report: &FaultReport) -> ! {
    if let Some(reporter) = REPORTER.get() {
        reporter(report);
    }
    let mut port = DebugPort(Port::new(0xe9));
    let _ = fmt::write(&mut port, format_args!("xenrs {report} (no reporter)\n"));
    loop {
        interrupts::enable_and_hlt();
    }
}

/// Xen's HVM debug console port as a `fmt::Write` sink (boot's last resort only).
struct DebugPort(Port<u8>);

impl fmt::Write for DebugPort {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: port 0xE9 is Xen's HVM debug console; writing it has no effect
            // other than logging the byte.
            unsafe { self.0.write(b) };
        }
        Ok(())
    }
}

/// Defines a handler for an exception without an error code.
macro_rules! handler {
    ($fn_name:ident, $name:literal, $vector:literal) => {
        extern "x86-interrupt" fn $fn_name(frame: InterruptStackFrame) {
            report(&FaultReport::new($name, $vector, 0, &frame, None))
        }
    };
}

/// Defines a handler for an exception with an error code.
macro_rules! handler_with_code {
    ($fn_name:ident, $name:literal, $vector:literal) => {
        extern "x86-interrupt" fn $fn_name(frame: InterruptStackFrame, code: u64) {
            report(&FaultReport::new($name, $vector, code, &frame, None))
        }
    };
}

handler!(divide_error, "#DE", 0);
handler!(debug, "#DB", 1);
handler!(nmi, "#NMI", 2);
handler!(breakpoint, "#BP", 3);
handler!(overflow, "#OF", 4);
handler!(bound_range, "#BR", 5);
handler!(invalid_opcode, "#UD", 6);
handler!(device_not_available, "#NM", 7);
handler_with_code!(invalid_tss, "#TS", 10);
handler_with_code!(segment_not_present, "#NP", 11);
handler_with_code!(stack_segment, "#SS", 12);
handler_with_code!(general_protection, "#GP", 13);
handler!(x87_floating_point, "#MF", 16);
handler_with_code!(alignment_check, "#AC", 17);
handler!(simd_floating_point, "#XM", 19);
handler!(virtualization, "#VE", 20);
handler_with_code!(control_protection, "#CP", 21);
handler!(hv_injection, "#HV", 28);
handler_with_code!(vmm_communication, "#VC", 29);
handler_with_code!(security, "#SX", 30);

extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, code: u64) -> ! {
    report(&FaultReport::new("#DF", 8, code, &frame, None))
}

extern "x86-interrupt" fn page_fault(frame: InterruptStackFrame, code: PageFaultErrorCode) {
    let cr2 = Cr2::read_raw();
    report(&FaultReport::new("#PF", 14, code.bits(), &frame, Some(cr2)))
}

extern "x86-interrupt" fn machine_check(frame: InterruptStackFrame) -> ! {
    report(&FaultReport::new("#MC", 18, 0, &frame, None))
}

/// The IDT (built once, then `'static` for `lidt`).
static IDT: Once<InterruptDescriptorTable> = Once::new();

/// Builds and loads the IDT.
///
/// # Safety
/// Call after [`gdt::init`] (the IST indices refer to the TSS it loads).
pub(crate) unsafe fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        idt.divide_error.set_handler_fn(divide_error);
        idt.debug.set_handler_fn(debug);
        idt.breakpoint.set_handler_fn(breakpoint);
        idt.overflow.set_handler_fn(overflow);
        idt.bound_range_exceeded.set_handler_fn(bound_range);
        idt.invalid_opcode.set_handler_fn(invalid_opcode);
        idt.device_not_available
            .set_handler_fn(device_not_available);
        idt.invalid_tss.set_handler_fn(invalid_tss);
        idt.segment_not_present.set_handler_fn(segment_not_present);
        idt.stack_segment_fault.set_handler_fn(stack_segment);
        idt.general_protection_fault
            .set_handler_fn(general_protection);
        idt.x87_floating_point.set_handler_fn(x87_floating_point);
        idt.alignment_check.set_handler_fn(alignment_check);
        idt.simd_floating_point.set_handler_fn(simd_floating_point);
        idt.virtualization.set_handler_fn(virtualization);
        idt.cp_protection_exception
            .set_handler_fn(control_protection);
        idt.hv_injection_exception.set_handler_fn(hv_injection);
        idt.vmm_communication_exception
            .set_handler_fn(vmm_communication);
        idt.security_exception.set_handler_fn(security);
        crate::interrupts::install(&mut idt);
        // SAFETY: (all four) each IST index names a distinct, otherwise unused stack
        // that gdt::init stored in the loaded TSS.
        unsafe {
            idt.double_fault
                .set_handler_fn(double_fault)
                .set_stack_index(gdt::IST_DOUBLE_FAULT);
            idt.non_maskable_interrupt
                .set_handler_fn(nmi)
                .set_stack_index(gdt::IST_NMI);
            idt.machine_check
                .set_handler_fn(machine_check)
                .set_stack_index(gdt::IST_MACHINE_CHECK);
            idt.page_fault
                .set_handler_fn(page_fault)
                .set_stack_index(gdt::IST_PAGE_FAULT);
        }
        idt
    });
    idt.load();
}
