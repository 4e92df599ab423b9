//! Emergency output on Xen's HVM debug port 0xE9 (shows in `xl dmesg` as `(dN) ...`).
//!
//! Xen emulates the port for HVM/PVH guests (`xen/arch/x86/hvm/hvm.c`,
//! `hvm_print_line`) and prints each line on its own console. It needs no setup and
//! no hypercall, so it works before the hypercall page and after everything else has
//! failed. `console_io` is not an alternative: Xen refuses it to a domU (-EPERM).

use core::fmt;

use x86_64::instructions::port::Port;

/// Xen's HVM debug console I/O port.
const PORT: u16 = 0xe9;

/// Writes `bytes` to the debug port, one `outb` each.
pub fn write_bytes(bytes: &[u8]) {
    let mut port: Port<u8> = Port::new(PORT);
    for &b in bytes {
        // SAFETY: port 0xE9 is Xen's debug console; writing a byte only logs it.
        unsafe { port.write(b) };
    }
}

/// Formats straight to the debug port (for use before the console exists).
pub fn print(args: fmt::Arguments<'_>) {
    /// The port as a `fmt::Write` sink.
    struct Sink;
    impl fmt::Write for Sink {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            write_bytes(s.as_bytes());
            Ok(())
        }
    }
    let _ = fmt::write(&mut Sink, args);
}
