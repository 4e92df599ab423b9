//! The runtime: boot sequence, core-services bring-up, the main loop and the suspend sequence.
//!
//! This is the only module that orchestrates; the modules under `arch`, `mm`, `xen`,
//! `xenbus` and `net` offer interfaces and never call each other's set-up. Boot order
//! (see `docs/BOOT.md`): fault reporter, hypercall page, PV console, `hvm_start_info`,
//! command line, banner, memory (frame allocator + heap), core services
//! ([`services::start`], `docs/CORE.md`), the network (`docs/NET.md`), then what `then=`
//! asks: the main loop ([`run`]) or power off. The console lines are the contract of
//! `docs/CONSOLE.md`.

mod counters;
mod panic;
mod services;
mod suspend;

use core::fmt;

use boot::BootInfo;
use guest_config::{AfterBoot, Config, TestHook};
use xen_abi::sched::SHUTDOWN_REBOOT;

use crate::arch::debugcon;
use crate::arch::hypercall;

use crate::arch::start_info::{self, BootData};
use crate::blk;
use crate::mm::memory;
use crate::net;
use crate::xen::console::{self, Escaped};
use crate::xen::control::{self, Request};
use crate::xen::events;
use crate::xen::logger;
use crate::xen::store;
use crate::xen::trace::{self, Step};
use crate::xenbus::{devices, hotplug};

/// The kernel's version, printed in the banner.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Address `test=fault` reads: canonical, far above the 4 GiB identity map, so never
/// mapped. Its page fault report must show exactly this `cr2`.
pub const FAULT_TEST_ADDR: u64 = 0x0000_0bad_f00d_0000;

/// The kernel's main, called by boot on the boot stack with interrupts off.
pub fn kernel_main(info: BootInfo) -> ! {
    boot::set_fault_reporter(panic::report_fault);

    let xen = hypercall::init();
    if let Err(e) = xen {
        // Without the hypercall page there is no console ring and no shutdown.
        debugcon::print(format_args!(
            "xenrs FATAL: cannot install the hypercall page: {e}\n"
        ));
        panic::shutdown_now(xen_abi::sched::SHUTDOWN_CRASH);
    }
    let console = console::init();

    let image = info.image_start..info.image_end;
    let data = match start_info::read(info.start_info_paddr, image.clone()) {
        Ok(data) => data,
        Err(e) => fatal(format_args!("{e}")),
    };

    let cmdline = data.cmdline();
    let text = match core::str::from_utf8(cmdline) {
        Ok(text) => text,
        // Parse the valid prefix; the rest is reported below.
        Err(e) => core::str::from_utf8(cmdline.get(..e.valid_up_to()).unwrap_or(&[])).unwrap_or(""),
    };
    let parsed = guest_config::parse(text);
    let config: Config = parsed.config;
    logger::init(config.log);

    crate::println!(
        "xenrs {VERSION} booting: xen={} mode=pvh ram_kib={} cmdline=\"{}\"",
        XenVersion,
        memory::ram_kib(data.memmap()),
        Escaped(cmdline)
    );
    for error in parsed.errors() {
        crate::println!("xenrs config error: {error}");
    }
    if parsed.dropped_errors() > 0 {
        crate::println!(
            "xenrs config error: {} more errors not shown",
            parsed.dropped_errors()
        );
    }
    if text.len() < cmdline.len() {
        crate::println!(
            "xenrs config error: command line is not UTF-8 after byte {} (rest ignored)",
            text.len()
        );
    }
    if let Ok(x) = xen {
        log::debug!(
            "Xen CPUID base {:#x} version {:#x}; hypercall page at {:#x} via MSR {:#x}",
            x.base,
            x.version,
            x.page,
            x.msr
        );
    }
    report_boot_details(&info, &data, &console);

    match config.test {
        Some(TestHook::Panic) => panic!("test=panic requested on the command line"),
        Some(TestHook::Fault) => {
            // SAFETY: deliberately reads an address the boot identity map does not
            // cover; the resulting #PF is reported by boot's handler, which never
            // returns, so the read never completes.
            let value = unsafe { core::ptr::read_volatile(FAULT_TEST_ADDR as *const u64) };
            fatal(format_args!(
                "test=fault read {value:#x} from unmapped {FAULT_TEST_ADDR:#x}"
            ));
        }
        None => {}
    }

    // The console ring page must never be handed out, whatever the memory map says.
    let keep_out = console.as_ref().map(|c| c.pfn).ok();
    let mem = match memory::init(data.memmap(), image, keep_out.as_slice()) {
        Ok(mem) => mem,
        Err(e) => fatal(format_args!("memory setup failed: {e}")),
    };
    crate::println!(
        "xenrs memory: ram_kib={} heap_kib={} free_frames={} kernel_kib={}",
        mem.ram_kib,
        mem.heap_kib,
        mem.free_frames,
        mem.kernel_kib
    );
    log::debug!(
        "heap {:#x}..{:#x}, frame bitmap {:#x}..{:#x}, usable {} KiB",
        mem.heap.start,
        mem.heap.end,
        mem.bitmap.start,
        mem.bitmap.end,
        mem.usable_bytes / 1024
    );
    if mem.dropped_ranges > 0 || mem.unmapped_kib > 0 {
        log::warn!(
            "unused RAM: {} ranges over the limit, {} KiB above the identity map",
            mem.dropped_ranges,
            mem.unmapped_kib
        );
    }
    heap_self_test();
    let services_up = services::start();
    if services_up {
        blk::start(config.net.services.nbd);
        net::start(&config.net);
        if let Err(e) = hotplug::start() {
            crate::println!("xenrs xenbus error: watching device/ for hotplug: {e}");
        }
    }

    crate::println!("xenrs boot complete");
    match config.then {
        AfterBoot::PowerOff => {
            crate::println!("xenrs powering off");
            panic::poweroff()
        }
        AfterBoot::Block => {
            crate::println!("xenrs blocking");
            console::flush(false);
            if services_up {
                run()
            }
            loop {
                // Without services nothing can be serviced: block again after any
                // wake-up (docs/CORE.md, "Bring-up order").
                let _ = hypercall::block();
            }
        }
    }
}

/// Logs what boot found (debug level) and anything odd (warn level).
fn report_boot_details(
    info: &BootInfo,
    data: &BootData,
    console: &Result<console::ConsoleInfo, console::ConsoleError>,
) {
    match console {
        Ok(c) => log::debug!("PV console ring pfn {:#x}, event channel {}", c.pfn, c.port),
        Err(e) => log::warn!("no PV console ring ({e}); output on port 0xE9 only"),
    }
    if !info.guards_ok {
        log::warn!("a boot stack guard page is outside the 4 KiB-mapped range");
    }
    log::debug!(
        "image {:#x}..{:#x}, hvm_start_info at {:#x} version {} flags {:#x} rsdp {:#x}",
        info.image_start,
        info.image_end,
        info.start_info_paddr,
        data.version,
        data.flags,
        data.rsdp_paddr
    );
    for e in data.memmap() {
        log::debug!(
            "e820 {:#012x}..{:#012x} type {}",
            e.addr,
            e.addr.saturating_add(e.size),
            e.kind
        );
    }
    if data.memmap_dropped > 0 {
        log::warn!(
            "memory map: {} entries beyond {} ignored",
            data.memmap_dropped,
            start_info::MAX_MEMMAP
        );
    }
    if data.cmdline_truncated {
        log::warn!("command line cut at {} bytes", start_info::MAX_CMDLINE);
    }
    if data.cmdline_unreadable {
        log::warn!("command line address is not readable; using an empty command line");
    }
    if data.nr_modules > 0 {
        log::warn!("{} boot modules ignored", data.nr_modules);
    }
}

/// Exercises the heap once (allocate, write, read back, free) and logs the result.
fn heap_self_test() {
    let v: alloc::vec::Vec<u64> = (0..512u64).collect();
    let sum: u64 = v.iter().sum();
    let (used, free) = memory::heap_usage();
    if sum == 511 * 512 / 2 {
        log::debug!("heap ok: {used} bytes used, {free} free");
    } else {
        log::error!("heap self-test read back a wrong sum {sum}");
    }
}

/// A fatal boot error: prints `xenrs FATAL: <what>` and `xenrs crashing`, then
/// `SHUTDOWN_crash`. Used for bad boot data (not a bug, so not a panic).
fn fatal(what: fmt::Arguments<'_>) -> ! {
    crate::println!("xenrs FATAL: {what}");
    crate::println!("xenrs crashing");
    console::flush(false);
    panic::shutdown_now(xen_abi::sched::SHUTDOWN_CRASH)
}

/// Displays Xen's version as `major.minor` + extraversion (e.g. `4.17.7`).
struct XenVersion;

impl fmt::Display for XenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match hypercall::xen_version() {
            Ok((major, minor)) => write!(f, "{major}.{minor}")?,
            Err(_) => f.write_str("unknown")?,
        }
        if let Ok(extra) = hypercall::xen_extraversion() {
            let end = extra.iter().position(|&b| b == 0).unwrap_or(extra.len());
            write!(f, "{}", Escaped(extra.get(..end).unwrap_or(&[])))?;
        }
        Ok(())
    }
}

/// The main event loop (services up): never returns; leaves through a control request.
///
/// Each pass dispatches marked event-channel ports, then queued watch events (bounded
/// per watch), then a device sync if `device/` changed (hotplug), then one pass of the disks ([`blk::poll`]) and of the network ([`net::poll`]; each re-arms its rings and
/// wake-up timer when it is idle), then a pending control request; with nothing to do
/// it idles (`sti; hlt`, race-free, see [`events::idle`]). The grant counters go to
/// `data/grants` when they changed ([`counters::publish`]).
fn run() -> ! {
    loop {
        let dispatched = events::dispatch(None);
        let mut busy = dispatched > 0;
        busy |= store::service_watches() > 0;
        if control::take_dump() {
            // Before the pumps: the dump shows what this wake-up found (a stall's
            // state), not what one more pass made of it.
            dump();
            busy = true;
        }
        if hotplug::take() {
            sync_devices();
            busy = true;
        }
        busy |= blk::poll();
        busy |= net::poll();
        counters::publish();
        if let Some(request) = control::take_request() {
            act(request);
            busy = true;
        }
        // Handlers run inside a xenstore wait this pass (a timer or device event
        // spent there) call for another pass before any sleep.
        let nested = events::take_nested_work();
        if !busy && !nested && !store::events_queued() {
            let upcalls = events::stats().upcalls;
            trace::record(crate::xen::time::now_ns(), Step::Idle { upcalls });
            events::idle_until(crate::xen::time::next_deadline_raw());
            let upcalls = events::stats().upcalls;
            trace::record(crate::xen::time::now_ns(), Step::Woke { upcalls });
        } else {
            trace::record(
                crate::xen::time::now_ns(),
                Step::Pass {
                    dispatched: u32::try_from(dispatched).unwrap_or(u32::MAX),
                    busy,
                    nested,
                },
            );
        }
    }
}

/// The status dump asked through `data/dump` (see `docs/CONSOLE.md`).
fn dump() {
    let (queued, earliest, programmed) = crate::xen::time::queue_state();
    let ev = events::stats();
    crate::println!(
        "xenrs dump: clock now_ns={} timers queued={queued} earliest={earliest:?} programmed={programmed:?}; events upcalls={} dispatched={} unhandled={} marked={}",
        crate::xen::time::now_ns(),
        ev.upcalls,
        ev.dispatched,
        ev.unhandled,
        events::anything_marked()
    );
    blk::dump();
    net::dump();
    let mut text = alloc::string::String::new();
    let _ = trace::write_to(&mut text, "xenrs dump: trace ");
    for line in text.lines() {
        crate::println!("{line}");
    }
    crate::println!("xenrs dump: end");
}

/// `device/` changed (hotplug): each class compares the ids listed now with
/// the devices it drives. A class whose listing fails is left as it is (the
/// next change looks again).
fn sync_devices() {
    match devices::ids("vbd") {
        Ok(ids) => blk::sync(&ids),
        Err(e) => crate::println!("xenrs xenbus error: listing device/vbd: {e}"),
    }
    match devices::ids("vif") {
        Ok(ids) => net::sync(&ids),
        Err(e) => crate::println!("xenrs xenbus error: listing device/vif: {e}"),
    }
}

/// Carries out a control request.
fn act(request: Request) {
    match request {
        Request::PowerOff => {
            crate::println!("xenrs powering off");
            panic::poweroff()
        }
        Request::Reboot => {
            crate::println!("xenrs rebooting");
            console::flush(false);
            panic::shutdown_now(SHUTDOWN_REBOOT)
        }
        Request::Suspend => {
            suspend::suspend();
        }
    }
}
