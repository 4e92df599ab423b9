//! The panic handler, the CPU fault reporter and domain shutdown.
//!
//! Both print the console contract's lines (`xenrs PANIC at <file>:<line>:<col>: <msg>`
//! or `xenrs FAULT ...`, then `xenrs crashing`) through the lock-free emergency console
//! path and end with `SCHEDOP_shutdown(SHUTDOWN_crash)` (`xen/include/public/sched.h`).
//! A panic or fault while already dying skips the console ring and goes straight to
//! port 0xE9 and the crash hypercall, so a broken console cannot loop.

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use boot::FaultReport;
use x86_64::instructions::interrupts;
use xen_abi::sched::{SHUTDOWN_CRASH, SHUTDOWN_POWEROFF};

use crate::arch::debugcon;
use crate::arch::hypercall;
use crate::xen::console;

/// Set by the first panic or fault.
static DYING: AtomicBool = AtomicBool::new(false);

/// Claims the right to print the crash report; false if already dying.
fn claim() -> bool {
    // AcqRel: the swap is the claim; a nested panic/fault sees the first one's claim.
    !DYING.swap(true, Ordering::AcqRel)
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if !claim() {
        debugcon::write_bytes(b"xenrs PANIC while crashing\n");
        shutdown_now(SHUTDOWN_CRASH);
    }
    match info.location() {
        Some(loc) => console::emergency_print(format_args!(
            "xenrs PANIC at {}:{}:{}: {}\n",
            loc.file(),
            loc.line(),
            loc.column(),
            info.message()
        )),
        None => console::emergency_print(format_args!(
            "xenrs PANIC at <unknown>: {}\n",
            info.message()
        )),
    }
    crash()
}

/// The fault reporter registered with boot: prints the report and crashes.
pub fn report_fault(report: &FaultReport) -> ! {
    if !claim() {
        debugcon::write_bytes(b"xenrs FAULT while crashing\n");
        shutdown_now(SHUTDOWN_CRASH);
    }
    console::emergency_print(format_args!("xenrs {report}\n"));
    crash()
}

/// Prints `xenrs crashing`, lets the console drain (bounded) and crashes the domain.
fn crash() -> ! {
    console::emergency_print(format_args!("xenrs crashing\n"));
    console::flush(true);
    shutdown_now(SHUTDOWN_CRASH)
}

/// Drains the console (bounded) and powers the domain off.
pub fn poweroff() -> ! {
    console::flush(false);
    shutdown_now(SHUTDOWN_POWEROFF)
}

/// `SCHEDOP_shutdown(reason)`; if that returns (no hypercall page, or Xen refused),
/// says so on port 0xE9 and halts with interrupts on, so the vCPU blocks for good
/// (halting with interrupts off would look like a power-off to Xen).
pub fn shutdown_now(reason: u32) -> ! {
    let _ = hypercall::shutdown(reason);
    debugcon::write_bytes(b"xenrs shutdown hypercall failed; halting\n");
    loop {
        interrupts::enable_and_hlt();
    }
}
