//! Networking: netfront vifs under a smoltcp stack with the echo and iperf3 services, driven by the main loop.
//!
//! Sources: `xen/include/public/io/netif.h` (via the `netfront` crate),
//! `xen/include/public/io/xenbus.h`, Xen's `docs/misc/xenstore-paths.pandoc`
//! (`device/vif/<id>/{backend,backend-id,mac,mtu}`). See `docs/NET.md`.
//!
//! **Bring-up** ([`start`], after the core services): every `device/vif/<id>` (in id
//! order) becomes a [`Vif`]: netfront probes it (MAC from xenstore), its back end's
//! `state` node is watched, the xenbus handshake starts, a smoltcp interface is built
//! over it with the services' sockets. The first vif takes the command line's address
//! (`ip=A.B.C.D/N` [+ `gw=`], or `dhcp`) and the default route; further vifs ask for
//! an address by DHCP if `dhcp` was given and stay unaddressed otherwise.
//!
//! **Hotplug** ([`sync`], when the runtime saw `device/` change): a vif removed by
//! `xl network-detach` closes with its back end (grants end once it let go, see
//! `docs/NET.md`) and is dropped once its back end vanished; a vif added by `xl
//! network-attach` is brought up as at boot, the primary one with the command
//! line's address (a new interface and sockets over the new device).
//!
//! **Driving** ([`poll`], from the main loop after every wake-up): each vif's
//! [`Vif::pump`] (back-end state, packets, services, DHCP). When nothing moved, the
//! vifs re-arm their rings' response events (`RING_FINAL_CHECK_FOR_RESPONSES`); only if
//! no response slipped in does the loop sleep, with a one-shot timer at the earliest
//! smoltcp/service deadline. The back end's event channel or that timer wakes it.
//!
//! **Suspend/resume** ([`NetHook`], a core [`SuspendHook`]): before the suspend every
//! vif stops I/O; after a cancelled suspend (`xl save -c`) nothing is touched; after a
//! resume in a new domain (the core has re-mapped and reset the grant table and resumed
//! xenstore) each netfront reconnects to its new back end, re-granting its buffers and
//! re-sending frames that were in flight, and announces our address. smoltcp's state
//! (TCP connections included) is ordinary memory and survives as it is; the monotonic
//! clock continues from where it stopped, so no TCP timer fires because of the pause.

mod arp;
mod frag;
mod vif;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use guest_config::{NetConfig, NetMode};
use net_services::{Selection, ServicesConfig};

use smoltcp::time::Instant;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};
use spin::Mutex;

use crate::xen::suspend::{self, ResumeMode, SuspendHook};
use crate::xen::time::{self, TimerHandle};
use crate::xen::trace::{self, Step, TimerAction};
use vif::{Addressing, Vif};

/// Most vifs driven (further ones are reported and ignored).
const MAX_VIFS: usize = 4;
/// Heap smoltcp's IPv4 reassembly of one vif may grow to (see [`lazy_bytes`]).
const REASSEMBLY_WORST: usize = 4 * 132 * 1024;
/// How long smoltcp keeps an incomplete IPv4 datagram: fragments of one datagram
/// arrive within milliseconds on a LAN, and a flood of fragments that never
/// complete holds the four reassembly buffers at most this long.
pub(crate) const REASSEMBLY_TIMEOUT_MS: u64 = 5_000;
/// Interval of the grant table's deferred end-access retries, ns.
const DEFERRED_POLL_NS: u64 = time::NS_PER_SEC;
/// Least sleep when the stack wants a pass "now" but the last pass moved nothing
/// (it waits for ring space or a response; the event wakes it earlier).
const MIN_SLEEP_NS: u64 = 1_000_000;
/// Busy passes in a row that reuse one clock reading (see [`Net::clock`]).
const CLOCK_REUSE: u32 = 8;

/// The network state.
struct Net {
    /// The vifs, first = primary.
    vifs: Vec<Vif>,
    /// The command line's network configuration (for vifs added later).
    cfg: NetConfig,
    /// The services each vif runs (sized per vif from the heap, [`Net::add_vif`]).
    selection: Selection,
    /// The console's list of those services.
    listening: String,
    /// The programmed wake-up: (deadline ns, handle).
    timer: Option<(u64, TimerHandle)>,
    /// When the deferred grants were last retried.
    deferred_at: u64,
    /// The clock as last read (see [`Net::clock`]).
    clock_at: Instant,
    /// Passes that reused `clock_at`.
    clock_reused: u32,
    /// Whether the previous pass was busy (the loop did not sleep since).
    last_busy: bool,
}

impl Net {
    /// The time for this pass. Read fresh after an idle pass (the loop may have slept)
    /// and every [`CLOCK_REUSE`] busy passes; in between the last reading is reused. A
    /// burst of traffic runs many short passes back to back, and each clock read is an
    /// `rdtsc`, which exits to Xen when Xen emulates the TSC (xl's default `tsc_mode`
    /// on a CPU without an invariant TSC, as the test harness's emulated one), and
    /// under emulated SVM every VM exit is a chance of the emulator's triple fault (see
    /// docs/TESTING-XEN.md); smoltcp's timers (10 ms delayed ACK at the finest) need
    /// no more than that.
    fn clock(&mut self) -> Instant {
        if self.last_busy && self.clock_reused < CLOCK_REUSE {
            self.clock_reused += 1;
            return self.clock_at;
        }
        self.clock_at = vif::instant_now();
        self.clock_reused = 0;
        self.clock_at
    }
}

/// The network, once [`start`] found a vif.
static NET: Mutex<Option<Net>> = Mutex::new(None);

/// The services chosen with `services=` (default all).
fn selection(chosen: guest_config::Services) -> Selection {
    Selection {
        tcp_echo: chosen.tcp_echo,
        udp_echo: chosen.udp_echo,
        iperf3: chosen.iperf3,
        nbd: chosen.nbd,
    }
}

/// Heap kept free beside the vifs' commitments: an eighth of the heap, 512 KiB
/// to 2 MiB (per-connection state, disks added later, events, DHCP).
fn heap_reserve(heap: usize) -> usize {
    (heap / 8).clamp(512 * 1024, 2 * 1024 * 1024)
}

/// Heap a vif may take after its setup without allocating it then: the worst case
/// of smoltcp's IPv4 reassembly (4 buffers, each grown to at most the largest
/// datagram a 1514-byte frame can announce, ~66 KiB, with `Vec`'s doubling) and
/// the NBD connections' payload in flight.
fn lazy_bytes(services: Option<&ServicesConfig>) -> usize {
    let nbd = services.filter(|s| s.selection.nbd).map_or(0, |s| {
        s.nbd.pool.sockets.saturating_mul(s.nbd.limits.budget)
    });
    REASSEMBLY_WORST.saturating_add(nbd)
}

/// The console's list of the services that run, e.g. `tcp-echo:7 iperf3:5201`,
/// or `none`.
fn services_listening(sel: &Selection) -> String {
    let mut out = String::new();
    for (on, name) in [
        (sel.tcp_echo, "tcp-echo:7"),
        (sel.udp_echo, "udp-echo:7"),
        (sel.iperf3, "iperf3:5201"),
        (sel.nbd, "nbd:10809"),
    ] {
        if on {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(name);
        }
    }
    if out.is_empty() {
        out.push_str("none");
    }
    out
}

/// The addressing of the vif at `index` (0 = primary) from the command line.
fn addressing(cfg: &NetConfig, index: usize) -> Result<Addressing, u8> {
    let gateway = cfg.gateway.map(Ipv4Address::from);
    Ok(match (cfg.mode, index) {
        (NetMode::Static { addr, prefix }, 0) => {
            if prefix > 32 {
                return Err(prefix);
            }
            Addressing::Static {
                cidr: Ipv4Cidr::new(Ipv4Address::from(addr), prefix),
                gateway,
            }
        }
        (NetMode::Dhcp, 0) => Addressing::Dhcp { gateway },
        (NetMode::Dhcp, _) => Addressing::Dhcp { gateway: None },
        _ => Addressing::None,
    })
}

/// Brings every vif up (see the module docs) and registers the suspend hook.
/// Prints `xenrs net error: ...` for each vif that cannot be used. With no vif
/// yet the (empty) network is kept for vifs added later ([`sync`]).
pub fn start(cfg: &NetConfig) {
    let ids = match crate::xenbus::devices::ids("vif") {
        Ok(ids) => ids,
        Err(e) => {
            crate::println!("xenrs net error: listing device/vif: {e}");
            return;
        }
    };
    if ids.is_empty() {
        log::info!("net: no vif");
    }
    if ids.len() > MAX_VIFS {
        crate::println!(
            "xenrs net error: {} vifs; only the first {MAX_VIFS} are used",
            ids.len()
        );
    }
    let selection = selection(cfg.services);
    let mut net = Net {
        vifs: Vec::new(),
        cfg: *cfg,
        selection,
        listening: services_listening(&selection),
        timer: None,
        deferred_at: time::now_ns(),
        clock_at: vif::instant_now(),
        clock_reused: 0,
        last_busy: false,
    };
    for &id in ids.iter().take(MAX_VIFS) {
        net.add_vif(id);
    }
    *NET.lock() = Some(net);
    suspend::register(Box::new(NetHook));
    if let Err(e) = crate::xen::store::watch(STATS_IN, 4, Box::new(on_stats_request)) {
        crate::println!("xenrs net error: watching {STATS_IN}: {e}");
    }
}

/// The stats request node: dom0 writes a tag there (`data/stats-in`, relative to
/// our home); see [`on_stats_request`].
const STATS_IN: &str = "data/stats-in";
/// Where the answer goes: `<tag> <vif stats line>[ | <vif stats line>]...`.
const STATS_OUT: &str = "data/stats-out";
/// The longest tag taken (longer ones are cut).
const STATS_TAG_MAX: usize = 32;

/// The `data/stats-in` watch handler: for a non-empty value `<tag>`, prints
/// `xenrs stats <tag>: vif/<id>: rx ...` (every vif's counters, the line of
/// [`log_stats`]) and writes them, after the tag, to `data/stats-out`, so that a
/// dom0 script (the bench) can read the counters around a run without disturbing
/// it. Runs in the main loop, like every watch handler.
fn on_stats_request(_path: &str) {
    use core::fmt::Write;
    let tag = match crate::xen::store::read(STATS_IN) {
        Ok(v) => v,
        // Fired once when registered, before dom0 wrote anything.
        Err(_) => return,
    };
    let tag: String = tag
        .iter()
        .take(STATS_TAG_MAX)
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
                char::from(b)
            } else {
                '_'
            }
        })
        .collect();
    if tag.is_empty() {
        return;
    }
    let mut out = tag.clone();
    if let Some(net) = NET.lock().as_ref() {
        for (i, v) in net.vifs.iter().enumerate() {
            let line = alloc::format!("{}", v.stats_line());
            crate::println!("xenrs stats {tag}: {line}");
            let _ = write!(out, "{}{line}", if i == 0 { " " } else { " | " });
        }
    }
    if let Err(e) = crate::xen::store::write(STATS_OUT, out.as_bytes()) {
        crate::println!("xenrs net error: writing {STATS_OUT}: {e}");
    }
}

impl Net {
    /// Brings up `device/vif/<id>` (the primary if no vif is) and adds it.
    /// Prints `xenrs net error: ...` if it cannot be used.
    fn add_vif(&mut self, id: u32) {
        let primary = !self.vifs.iter().any(Vif::is_primary);
        let addressing = match addressing(&self.cfg, usize::from(!primary)) {
            Ok(a) => a,
            Err(prefix) => {
                crate::println!("xenrs net error: ip= prefix /{prefix} is over 32");
                Addressing::None
            }
        };
        let services = self.size_services(id);
        match Vif::new(id, primary, addressing, services.as_ref(), self.cfg.tso) {
            Ok(v) => {
                if v.has_services() {
                    if primary {
                        crate::println!("xenrs net: services {}", self.listening);
                    } else {
                        crate::println!("xenrs net: vif/{} services {}", v.id(), self.listening);
                    }
                }
                self.vifs.push(v);
            }
            Err(e) => crate::println!("xenrs net error: vif/{id}: {e}"),
        }
    }

    /// The services of vif `id` sized from the heap free now, less the reserve
    /// and what the vifs up already may still take (their reassembly buffers and
    /// NBD payloads). Prints the chosen sizes (`xenrs net: vif/<id> buffers ...`),
    /// or `xenrs net error: ...` and `None` if not even the minimum fits.
    fn size_services(&self, id: u32) -> Option<ServicesConfig> {
        if self.selection == Selection::NONE {
            return None;
        }
        let (heap_used, heap_free) = crate::mm::memory::heap_usage();
        let heap = heap_used.saturating_add(heap_free);
        let committed: usize = self
            .vifs
            .iter()
            .map(|v| lazy_bytes(v.services_config()))
            .fold(REASSEMBLY_WORST, usize::saturating_add);
        let budget = heap_free
            .saturating_sub(heap_reserve(heap))
            .saturating_sub(committed);
        let disks = crate::xenbus::devices::ids("vbd").is_ok_and(|ids| !ids.is_empty());
        // `buffer_bytes` counts the NBD payloads too, so they fit the budget.
        let sized = ServicesConfig::for_budget(self.selection, budget, disks);
        match sized {
            Ok(c) => {
                crate::println!(
                    "xenrs net: vif/{id} buffers heap_kib={} heap_free_kib={} budget_kib={} services_kib={} {}",
                    heap / 1024,
                    heap_free / 1024,
                    budget / 1024,
                    c.buffer_bytes() / 1024,
                    c.sizes()
                );
                Some(c)
            }
            Err(e) => {
                crate::println!(
                    "xenrs net error: vif/{id}: {heap_free} heap bytes free of {heap}: {e}; services not started on this vif"
                );
                None
            }
        }
    }

    /// Drops the vifs whose device was removed; true if there was one.
    fn reap(&mut self) -> bool {
        let mut reaped = false;
        let mut i = 0;
        while i < self.vifs.len() {
            if self.vifs.get(i).is_some_and(Vif::is_removed) {
                let v = self.vifs.remove(i);
                let id = v.id();
                v.retire();
                crate::println!("xenrs xenbus: device vif/{id} removed");
                reaped = true;
            } else {
                i += 1;
            }
        }
        reaped
    }
}

/// The device directory changed: `ids` are the `device/vif/<id>` listed now.
/// A vif no longer listed acts on its back end's state at its next pump (its
/// back end is gone: the device ends Removed and [`poll`] drops it); an id
/// listed for the first time becomes a vif (`xenrs xenbus: device vif/<id>
/// added`), announcing Initialising; the primary (the one that owns `ip=`, the
/// default route and `gw=`) is rebuilt with the command line's address.
pub fn sync(ids: &[u32]) {
    let mut guard = NET.lock();
    let Some(net) = guard.as_mut() else {
        return;
    };
    for v in &mut net.vifs {
        if !ids.contains(&v.id()) {
            v.refresh();
        }
    }
    for &id in ids {
        if net.vifs.iter().any(|v| v.id() == id) {
            continue;
        }
        if net.vifs.len() >= MAX_VIFS {
            log::warn!("net: vif/{id} added, but {MAX_VIFS} vifs are driven already");
            continue;
        }
        crate::println!("xenrs xenbus: device vif/{id} added");
        net.add_vif(id);
        if let Some(v) = net.vifs.last_mut()
            && v.id() == id
        {
            // Its bridge port is new: tell the bridge and dom0 where we are.
            v.announce_when_up();
        }
    }
}

/// One pass of the network work; called by the main loop after every wake-up.
/// Returns whether anything moved (then the loop must not sleep). When nothing did,
/// the rings are re-armed and the wake-up timer set for the next deadline.
pub fn poll() -> bool {
    // A pass never nests (the lock is only taken here and by the suspend hook, both
    // from the main loop); if it somehow did, the outer pass finishes the work.
    let Some(mut guard) = NET.try_lock() else {
        return false;
    };
    let Some(net) = guard.as_mut() else {
        return false;
    };
    let reused = net.last_busy && net.clock_reused < CLOCK_REUSE;
    let now = net.clock();
    let now_ns = vif::instant_ns(now);
    let mut busy = false;
    let mut next: Option<u64> = None;
    for v in &mut net.vifs {
        let r = v.pump(now);
        busy |= r.busy;
        if let Some(t) = r.next {
            let t = vif::instant_ns(t);
            next = Some(next.map_or(t, |n| n.min(t)));
        }
    }
    if net.reap() {
        // A removed vif's id may be listed again already (a quick re-attach).
        crate::xenbus::hotplug::again();
        busy = true;
    }
    if now_ns.saturating_sub(net.deferred_at) >= DEFERRED_POLL_NS {
        net.deferred_at = now_ns;
        retry_deferred_grants();
    }
    if crate::xen::grants::stats().is_some_and(|s| s.deferred > 0) {
        // Wake up for the next retry even if the network is idle.
        let t = net.deferred_at.saturating_add(DEFERRED_POLL_NS);
        next = Some(next.map_or(t, |n| n.min(t)));
    }
    if !busy {
        // Nothing moved: ask for events, then sleep unless something slipped in.
        for v in &mut net.vifs {
            busy |= v.rearm();
        }
    }
    let mut deadline = None;
    let mut action = TimerAction::None;
    if !busy {
        deadline = next.map(|t| t.max(now_ns.saturating_add(MIN_SLEEP_NS)));
        action = program_timer(net, deadline);
    }
    trace::record(
        now_ns,
        Step::Net {
            clock: now_ns,
            fresh: !reused,
            busy,
            deadline,
            timer: action,
        },
    );
    net.last_busy = busy;
    busy
}

/// Makes sure the loop wakes up by `deadline`. A timer that already fired is
/// forgotten. An armed timer that fires no later than `deadline` is kept (also when
/// there is no deadline): waking early only costs one idle pass, which programs the
/// timer again, while moving the timer at every pass would cost a
/// `VCPUOP_set_singleshot_timer` hypercall each time (every VM exit counts under the
/// emulated SVM of the test harness, see docs/TESTING-XEN.md).
fn program_timer(net: &mut Net, deadline: Option<u64>) -> TimerAction {
    if let Some((_, handle)) = &net.timer
        && !time::is_pending(handle)
    {
        // Fired: its handle is spent. Asked of the timer queue, not judged from
        // the pass's clock: a pass may reuse an older reading (`Net::clock`), and a
        // timer that expired after it would look armed, leaving the loop with no
        // wake-up (a hazard found while tracing the stall of CORE.md, "The lost
        // wake-up of 2026-12-03", not that stall's cause).
        net.timer = None;
    }
    let Some(at) = deadline else {
        return match &net.timer {
            Some((armed, _)) => TimerAction::Kept(*armed),
            None => TimerAction::Unarmed,
        };
    };
    if let Some((armed, _)) = &net.timer
        && *armed <= at
    {
        return TimerAction::Kept(*armed);
    }
    // The callback does nothing: the timer's upcall wakes the loop, which polls.
    // Queued before the old one is cancelled, so the core re-programs Xen once.
    let handle = time::schedule_at(at, Box::new(|| {}));
    if let Some((_, old)) = net.timer.replace((at, handle)) {
        let _ = time::cancel(old);
    }
    TimerAction::Armed
}

/// `GrantTable::poll_deferred`: pages whose grants the back end held when they were
/// ended go back to the frame allocator once it let go.
fn retry_deferred_grants() {
    let report = crate::xen::grants::with(|t| {
        if t.stats().deferred > 0 {
            Some(t.poll_deferred(drop))
        } else {
            None
        }
    });
    if let Some(Some(r)) = report
        && r.released > 0
    {
        log::debug!(
            "net: {} deferred grants ended, {} still held",
            r.released,
            r.still_deferred
        );
    }
}

/// Prints the network's state (`xenrs dump: net ...`, the status dump asked
/// through `data/dump`): the wake-up timer, every vif's counters, interface
/// deadline and NBD connections.
pub fn dump() {
    let Some(mut guard) = NET.try_lock() else {
        crate::println!("xenrs dump: net busy");
        return;
    };
    let Some(net) = guard.as_mut() else {
        crate::println!("xenrs dump: net none");
        return;
    };
    crate::println!(
        "xenrs dump: net timer={:?} last_busy={} clock_at={}",
        net.timer.as_ref().map(|(at, _)| *at),
        net.last_busy,
        vif::instant_ns(net.clock_at)
    );
    for v in &mut net.vifs {
        v.dump();
    }
}

/// Logs every vif's counters (info level; once per suspend).
pub fn log_stats() {
    if let Some(net) = NET.lock().as_ref() {
        for v in &net.vifs {
            log::info!("net: {}", v.stats_line());
        }
    }
}

/// The network's suspend hook (see the module docs).
pub struct NetHook;

impl SuspendHook for NetHook {
    fn name(&self) -> &'static str {
        "net"
    }

    fn suspend(&mut self) {
        log_stats();
        if let Some(net) = NET.lock().as_mut() {
            for v in &mut net.vifs {
                v.suspend();
            }
        }
    }

    fn resume(&mut self, mode: ResumeMode) {
        let new_domain = mode == ResumeMode::NewDomain;
        // The wake-up timer needs nothing: the core's timer queue (our handle
        // included) survives and is re-armed in the new domain.
        if let Some(net) = NET.lock().as_mut() {
            for v in &mut net.vifs {
                v.resume(new_domain);
            }
        }
    }
}
