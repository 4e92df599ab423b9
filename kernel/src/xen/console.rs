//! The console: the Xen PV console ring, with the 0xE9 debug port for early and emergency output.
//!
//! The ring page (`struct xencons_interface`, `xen/include/public/io/console.h`) and its
//! event channel come from `HVM_PARAM_CONSOLE_PFN`/`_EVTCHN` (`hvm/params.h`). The
//! producer logic (index checks, what fits, waiting for a full ring, the stalled state)
//! is the host-tested `console-ring` crate; this module gives it the page and the
//! event channel. A ring whose back end breaks the index rule is abandoned (output
//! continues on port 0xE9 only). The panic/fault path uses [`emergency_print`], which
//! never waits for a lock.

use core::fmt::{self, Write};
use core::sync::atomic::Ordering;

use console_ring::{OutPage, OutRing};
use spin::Mutex;
use xen_abi::console as abi;
use xen_abi::hvm::{HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN};

use crate::arch::debugcon;
use crate::arch::hypercall;
use crate::mm::page::MappedPage;

/// Yields to wait for ring space in normal operation before declaring it stalled.
const FULL_RING_YIELDS: u32 = 20_000;
/// Yields to wait for ring space on the panic/fault path.
const EMERGENCY_YIELDS: u32 = 2_000;

/// A mapped PV console ring: the page and event channel under the `console-ring`
/// crate's producer.
struct Ring {
    /// The page and its event channel.
    page: ConsolePage,
    /// The producer's state (stalled or not).
    out: OutRing,
}

/// The console page and event channel, as `console-ring` reaches them.
struct ConsolePage {
    /// The ring page (`struct xencons_interface`).
    page: MappedPage,
    /// The console event channel.
    port: u32,
}

impl OutPage for ConsolePage {
    fn load_cons(&self) -> u32 {
        // Acquire: the backend's reads of the slots it consumed happen before we
        // reuse them (pairs with the backend's barrier before it advances out_cons).
        self.page.load_u32(abi::OUT_CONS_OFFSET, Ordering::Acquire)
    }

    fn load_prod(&self) -> u32 {
        // Relaxed: only this guest writes out_prod.
        self.page.load_u32(abi::OUT_PROD_OFFSET, Ordering::Relaxed)
    }

    fn store_prod(&mut self, prod: u32) {
        // Release: the bytes copied before are visible to the backend before it can
        // see the new out_prod that covers them.
        self.page
            .store_u32(abi::OUT_PROD_OFFSET, prod, Ordering::Release);
    }

    fn copy_out(&mut self, at: usize, bytes: &[u8]) {
        // The slots are free (between out_prod and out_cons + size): the backend is
        // not reading them.
        self.page.write_bytes(abi::OUT_OFFSET + at, bytes);
    }

    fn notify(&mut self) {
        // A failed notify leaves the bytes in the ring for the next one.
        let _ = hypercall::evtchn_send(self.port);
    }

    fn yield_now(&mut self) {
        let _ = hypercall::yield_now();
    }
}

/// Why the ring could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleError {
    /// A hypercall for the console parameters failed.
    Hypercall(hypercall::HypercallError),
    /// The console pfn is 0 or outside the boot identity map.
    BadPfn(u64),
    /// The event channel does not fit a `u32` port number.
    BadPort(u64),
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleError::Hypercall(e) => write!(f, "HVM_PARAM query failed: {e}"),
            ConsoleError::BadPfn(pfn) => write!(f, "console pfn {pfn:#x} is not mapped"),
            ConsoleError::BadPort(p) => write!(f, "console event channel {p:#x} is invalid"),
        }
    }
}

/// The console state: the ring once [`init`] found it.
struct Console {
    /// The PV console ring, if usable.
    ring: Option<Ring>,
}

/// The one console.
static CONSOLE: Mutex<Console> = Mutex::new(Console { ring: None });

/// Where the PV console ring is.
#[derive(Clone, Copy, Debug)]
pub struct ConsoleInfo {
    /// Guest frame number of the ring page.
    pub pfn: u64,
    /// Event channel port.
    pub port: u32,
}

/// Finds the PV console ring through the HVM params and starts using it.
pub fn init() -> Result<ConsoleInfo, ConsoleError> {
    attach()
}

/// Reads the console HVM params and (re)attaches the ring.
fn attach() -> Result<ConsoleInfo, ConsoleError> {
    let pfn = hypercall::hvm_get_param(HVM_PARAM_CONSOLE_PFN).map_err(ConsoleError::Hypercall)?;
    let evtchn =
        hypercall::hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN).map_err(ConsoleError::Hypercall)?;
    let port = u32::try_from(evtchn).map_err(|_| ConsoleError::BadPort(evtchn))?;
    // SAFETY: the console pfn is the ring page Xen set up for this domain (kept out of
    // the frame allocator by `mm::memory::init`); it stays mapped for the domain's life
    // and is reached only through this `MappedPage`.
    let page = unsafe { MappedPage::from_pfn(pfn) }.ok_or(ConsoleError::BadPfn(pfn))?;
    CONSOLE.lock().ring = Some(Ring {
        page: ConsolePage { page, port },
        out: OutRing::new(),
    });
    Ok(ConsoleInfo { pfn, port })
}

impl Ring {
    /// Puts `bytes` into the ring (see `console_ring::OutRing::write`). Returns false
    /// if the ring is inconsistent.
    fn write(&mut self, bytes: &[u8], max_yields: u32) -> bool {
        self.out.write(&mut self.page, bytes, max_yields).is_ok()
    }

    /// Waits (bounded) until the backend has consumed everything. Returns true if the
    /// ring is empty.
    fn flush(&mut self, max_yields: u32) -> bool {
        self.out.flush(&mut self.page, max_yields) == Ok(true)
    }
}

impl Console {
    /// Writes to the ring, or to port 0xE9 while there is no ring (early boot, or a ring
    /// abandoned as inconsistent). Once the ring works, port 0xE9 is left to the panic and
    /// fault path: each byte there is a VM exit (why that matters under the emulator:
    /// docs/TESTING-XEN.md, "Port 0xE9 and the triple fault").
    /// `mirror` also copies the bytes to port 0xE9 when the ring works (the panic/fault path,
    /// whose lines must show in `xl dmesg` even if the ring's backend is gone).
    fn write_bytes(&mut self, bytes: &[u8], max_yields: u32, mirror: bool) {
        let Some(ring) = self.ring.as_mut() else {
            debugcon::write_bytes(bytes);
            return;
        };
        if mirror {
            debugcon::write_bytes(bytes);
        }
        if !ring.write(bytes, max_yields) {
            self.ring = None;
            debugcon::write_bytes(b"xenrs console: ring indices inconsistent, ring abandoned\n");
            if !mirror {
                debugcon::write_bytes(bytes);
            }
        }
    }
}

/// Bytes gathered before one ring write + notify (a line, usually).
const SINK_BUF: usize = 256;

/// A `fmt::Write` sink over the locked console that batches output, so a line costs
/// one event-channel notification rather than one per formatting fragment.
struct Sink<'a> {
    /// The locked console.
    console: &'a mut Console,
    /// Yield budget for a full ring.
    max_yields: u32,
    /// Copy to port 0xE9 even while the ring works (the panic/fault path).
    mirror: bool,
    /// Pending bytes.
    buf: [u8; SINK_BUF],
    /// How many bytes of `buf` are pending.
    len: usize,
}

impl<'a> Sink<'a> {
    /// A sink with an empty buffer.
    fn new(console: &'a mut Console, max_yields: u32, mirror: bool) -> Self {
        Sink {
            console,
            max_yields,
            mirror,
            buf: [0; SINK_BUF],
            len: 0,
        }
    }

    /// Writes out the pending bytes.
    fn flush(&mut self) {
        if let Some(pending) = self.buf.get(..self.len) {
            self.console
                .write_bytes(pending, self.max_yields, self.mirror);
        }
        self.len = 0;
    }
}

impl Write for Sink<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s.as_bytes();
        while !rest.is_empty() {
            if self.len == SINK_BUF {
                self.flush();
            }
            let Some(free) = self.buf.get_mut(self.len..) else {
                self.len = 0;
                continue;
            };
            let n = free.len().min(rest.len());
            let (now, later) = rest.split_at(n);
            if let Some(dst) = free.get_mut(..n) {
                dst.copy_from_slice(now);
            }
            self.len += n;
            rest = later;
        }
        Ok(())
    }
}

/// Prints formatted text (normal path; waits for the console lock).
pub fn print(args: fmt::Arguments<'_>) {
    let mut console = CONSOLE.lock();
    let mut sink = Sink::new(&mut console, FULL_RING_YIELDS, false);
    let _ = sink.write_fmt(args);
    sink.flush();
}

/// Prints on the panic/fault path: never waits for the console lock.
///
/// The kernel runs on one vCPU with interrupts off, so if the lock is held the holder
/// is the code this panic or fault interrupted, which never resumes; the lock is
/// broken in that case.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    let mut guard = match CONSOLE.try_lock() {
        Some(guard) => guard,
        None => {
            // SAFETY: single vCPU, interrupts off: the holder is the interrupted
            // context, which is being abandoned (this path ends in SHUTDOWN_crash)
            // and never touches the console again.
            unsafe { CONSOLE.force_unlock() };
            CONSOLE.lock()
        }
    };
    let mut sink = Sink::new(&mut guard, EMERGENCY_YIELDS, true);
    let _ = sink.write_fmt(args);
    sink.flush();
}

/// Waits until the backend has read the ring (bounded), so the last lines reach
/// the console log before the domain goes away. `emergency` selects the short
/// budget and skips waiting for the lock.
pub fn flush(emergency: bool) -> bool {
    let budget = if emergency {
        EMERGENCY_YIELDS
    } else {
        FULL_RING_YIELDS
    };
    let guard = if emergency {
        CONSOLE.try_lock()
    } else {
        Some(CONSOLE.lock())
    };
    match guard {
        Some(mut console) => console.ring.as_mut().is_none_or(|ring| ring.flush(budget)),
        None => false,
    }
}

/// After a resume in a NEW domain: the toolstack bound a new console event channel
/// (the pfn is part of the saved state, and the restore cleared the page, so both
/// indices start again at 0, which [`Ring`] reads from the page). Re-reads both.
pub fn resume_new_domain() -> Result<ConsoleInfo, ConsoleError> {
    attach()
}

/// The console's suspend hook (the first one registered): after a resume in a new
/// domain it re-reads the console's event channel before anything else prints.
pub struct ConsoleHook;

impl crate::xen::suspend::SuspendHook for ConsoleHook {
    fn name(&self) -> &'static str {
        "console"
    }

    fn resume(&mut self, mode: crate::xen::suspend::ResumeMode) {
        if mode == crate::xen::suspend::ResumeMode::NewDomain
            && let Err(e) = resume_new_domain()
        {
            // Port 0xE9 still works; say why the ring is gone.
            crate::println!("xenrs console error: {e}");
        }
    }
}

/// Displays bytes as printable ASCII, escaping quotes, `\` and everything else
/// (`\xNN`), so untrusted text stays on one line.
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            write!(f, "{}", core::ascii::escape_default(b))?;
        }
        Ok(())
    }
}

/// Prints a line on the console (the ring; port 0xE9 until the ring is attached).
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::xen::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
