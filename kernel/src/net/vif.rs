//! One vif: its netfront, smoltcp interface, sockets, services and address configuration.
//!
//! A [`Vif`] owns everything of one `device/vif/<id>`: the [`NetFront`] (the device),
//! a smoltcp [`Interface`] over it, a [`SocketSet`] with the services' sockets
//! (`net-services`: TCP echo :7, UDP echo :7, iperf3 :5201) and, for `dhcp`, a DHCPv4
//! socket. [`Vif::pump`] is one pass of the event loop's network work: back-end state
//! changes, packets in and out (bounded), the services, DHCP, the iperf3 events, fault
//! recovery. It reports whether anything moved and when it next needs a pass.
//!
//! Hardening applied here (the decisions are host-tested in the driver crates):
//! failed setups and state writes are retried with back-off (`NetFront::poll`); a
//! fault is recovered from within the fault budget, over it the vif is broken
//! (`NetFront::recover`); both watchdogs (tx and rx) run every pass; and an event
//! storm (events that find no work) masks the port with a growing back-off
//! (`evtchn_scan::storm`), counted on the stats line.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use core::cell::RefCell;
use core::fmt;
use core::sync::atomic::Ordering;

use evtchn_scan::storm::{SpuriousLimiter, StormConfig, Verdict};
use net_services::iperf3::Event as IperfEvent;
use net_services::smol::{EchoReplyFix, FixedDevice, ServiceEvent};
use net_services::{Services, ServicesConfig};
use netfront::{Config as NetConfig, Fault, NetError, NetFront, ProbeError};
use smoltcp::iface::{
    Config as IfaceConfig, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};
use xen_abi::event_channel::EvtchnPort;
use xenbus::XenbusState;

use super::arp;
use crate::xen::store::{self, StoreError};
use crate::xenbus::platform::{EvtchnCounters, KernelEvtchn, KernelGrants, KernelPages};
use crate::xenbus::watch::StateWatch;

/// The netfront type the kernel runs.
pub type KernelNetFront = NetFront<KernelPages, KernelGrants, KernelEvtchn>;

/// Packets taken from the ring per pump before the other work gets a turn.
const INGRESS_BUDGET: usize = 64;
/// `poll_egress` rounds per pump (each sends what every socket has ready).
const EGRESS_ROUNDS: usize = 16;

/// How a vif gets its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// `ip=A.B.C.D/N` (and optionally `gw=`).
    Static {
        /// Address and prefix.
        cidr: Ipv4Cidr,
        /// Default gateway.
        gateway: Option<Ipv4Address>,
    },
    /// `dhcp`; `gateway` (`gw=`) is used if the server names no router.
    Dhcp {
        /// Fallback default gateway.
        gateway: Option<Ipv4Address>,
    },
    /// No address (no `ip=`/`dhcp`).
    None,
}

/// Why a vif could not be brought up.
#[derive(Debug)]
pub enum VifError {
    /// The grant table is not set up.
    NoGrantTable,
    /// Reading `device/vif/<id>` failed.
    Probe(ProbeError),
    /// The xenstore client could not be used.
    Store(StoreError),
    /// The first xenbus step failed.
    Start(NetError),
}

impl fmt::Display for VifError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VifError::NoGrantTable => f.write_str("the grant table is not set up"),
            VifError::Probe(e) => write!(f, "probing the device: {e}"),
            VifError::Store(e) => write!(f, "xenstore: {e}"),
            VifError::Start(e) => write!(f, "starting the xenbus handshake: {e}"),
        }
    }
}

/// What one [`Vif::pump`] did.
#[derive(Clone, Copy, Debug, Default)]
pub struct PumpReport {
    /// Something moved (packets, socket state, service bytes, xenbus): pump again
    /// before sleeping.
    pub busy: bool,
    /// When the stack or a service next needs a pump without any packet (None:
    /// only on an event).
    pub next: Option<Instant>,
}

/// One vif and its network stack.
pub struct Vif {
    /// The vif's id (`device/vif/<id>`).
    id: u32,
    /// The first vif: owns the default route and the command line's address.
    primary: bool,
    /// The front end (the smoltcp device).
    nf: KernelNetFront,
    /// The smoltcp interface (boxed: its IPv4 fragmentation buffer is 16 KiB, too
    /// much to move around on the 64 KiB boot stack).
    iface: Box<Interface>,
    /// Sockets of the services and DHCP.
    sockets: SocketSet<'static>,
    /// The services, if there was memory for them.
    services: Option<Services>,
    /// Corrects the checksum of ping replies above the MTU (see `poll_iface`).
    echo_fix: RefCell<EchoReplyFix>,
    /// The DHCP socket, with `dhcp`.
    dhcp: Option<SocketHandle>,
    /// How the address is configured.
    addressing: Addressing,
    /// The watch on `<backend>/state`.
    watch: Option<StateWatch>,
    /// Event-channel counters (shared with the port handlers).
    counters: Arc<EvtchnCounters>,
    /// Event-channel failures already reported.
    failures_reported: u64,
    /// Whether the connection was up at the last pump.
    was_up: bool,
    /// Send an ARP announcement once the connection is up (after a resume).
    announce: bool,
    /// A fault was seen and a reconnect requested; cleared once up again.
    reconnecting: bool,
    /// Tx and rx stalls recovered from (see `NetFront::check_tx_progress`).
    stalls: u64,
    /// Times the connection came up.
    connects: u64,
    /// The back end's state as last logged.
    backend_state: Option<XenbusState>,
    /// Re-attaches of the back end already reported.
    reattaches_seen: u64,
    /// The tx watchdog's away-waits already seen.
    away_waits_seen: u64,
    /// Since when the back end is away (its end of the event channel closed),
    /// and the rx slots and tx completions then.
    away_since: Option<(Instant, (u64, u64))>,
    /// Back-end events seen by the last pump (see `storm`).
    events_seen: u64,
    /// Whether any pass found work since the last pass woken by an event.
    work_since_event: bool,
    /// Event-storm damping of the vif's port.
    storm: SpuriousLimiter,
    /// The port `storm` masked, while it is masked.
    masked_port: Option<EvtchnPort>,
    /// TCP resets sent and received already looked at, and the lines printed
    /// about each direction (see `log_resets`).
    resets_seen: (u64, u64),
    reset_lines: (u64, u64),
}

/// Microseconds of the guest's monotonic clock as a smoltcp [`Instant`].
pub fn instant_now() -> Instant {
    Instant::from_micros(i64::try_from(crate::xen::time::now_ns() / 1000).unwrap_or(i64::MAX))
}

/// Milliseconds of smoltcp instant `t` (negative as 0), netfront's watchdog clock.
fn now_ms(t: Instant) -> u64 {
    u64::try_from(t.total_millis()).unwrap_or(0)
}

/// The monotonic clock in ns at smoltcp instant `t` (negative as 0).
pub fn instant_ns(t: Instant) -> u64 {
    u64::try_from(t.total_micros())
        .unwrap_or(0)
        .saturating_mul(1000)
}

/// A random seed for smoltcp (TCP initial sequence numbers, ephemeral ports,
/// DHCP transaction ids): wall clock, monotonic clock and MAC mixed (splitmix64).
fn seed(mac: [u8; 6]) -> u64 {
    let (secs, nanos) = crate::xen::time::wallclock();
    let mut m = [0u8; 8];
    if let Some(dst) = m.get_mut(..6) {
        dst.copy_from_slice(&mac);
    }
    let mut x = secs
        .wrapping_mul(1_000_000_007)
        .wrapping_add(u64::from(nanos))
        ^ crate::xen::time::now_ns().rotate_left(17)
        ^ u64::from_le_bytes(m);
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// netfront's configuration for a guest with `free_frames` pages left: the default 256
/// rx and 256 tx buffers (one page each), fewer when they would take more than half the
/// free pages (a guest of a few MiB), never fewer than 32; TSO as `tso=` says.
fn netfront_config(free_frames: u64, tso: bool) -> NetConfig {
    let d = NetConfig::default();
    let fit = u16::try_from(free_frames / 4).unwrap_or(u16::MAX).max(32);
    NetConfig {
        rx_buffers: d.rx_buffers.min(fit),
        tx_buffers: d.tx_buffers.min(fit),
        tso,
        ..d
    }
}

/// Formats an optional gateway as `A.B.C.D` or `none`.
struct Gw(Option<Ipv4Address>);

impl fmt::Display for Gw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("none"),
        }
    }
}

impl Vif {
    /// Probes `device/vif/<id>`, watches its back end, starts the xenbus handshake,
    /// and builds the interface, services (if `services` is given) and addressing.
    pub fn new(
        id: u32,
        primary: bool,
        addressing: Addressing,
        services: Option<&ServicesConfig>,
        tso: bool,
    ) -> Result<Vif, VifError> {
        let grants = KernelGrants::new().ok_or(VifError::NoGrantTable)?;
        let counters = Arc::new(EvtchnCounters::default());
        let evtchn = KernelEvtchn::new(counters.clone());
        let mut nf = store::with(|xs| {
            NetFront::new(
                xs,
                id,
                KernelPages::default(),
                grants,
                evtchn,
                netfront_config(crate::mm::memory::free_frames(), tso),
            )
        })
        .map_err(VifError::Store)?
        .map_err(VifError::Probe)?;

        // `MacAddr::parse` rejected multicast and all-zero addresses, so smoltcp's
        // unicast assertion in `Interface::new` holds.
        let mac = nf.mac();
        let mut cfg = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac.0)));
        cfg.random_seed = seed(mac.0);
        let now = instant_now();
        let mut iface = Box::new(Interface::new(cfg, &mut nf, now));
        iface.set_reassembly_timeout(smoltcp::time::Duration::from_millis(
            super::REASSEMBLY_TIMEOUT_MS,
        ));
        let mut vif = Vif {
            id,
            primary,
            nf,
            iface,
            sockets: SocketSet::new(vec![]),
            services: None,
            echo_fix: RefCell::default(),
            dhcp: None,
            addressing,
            watch: None,
            counters,
            failures_reported: 0,
            was_up: false,
            announce: false,
            reconnecting: false,
            stalls: 0,
            connects: 0,
            backend_state: None,
            reattaches_seen: 0,
            away_waits_seen: 0,
            away_since: None,
            events_seen: 0,
            resets_seen: (0, 0),
            reset_lines: (0, 0),
            work_since_event: false,
            // Masks only a streak of spurious events above a rate (StormConfig).
            storm: SpuriousLimiter::new(StormConfig::default()),
            masked_port: None,
        };
        vif.watch_backend()?;
        let started = store::with(|xs| vif.nf.start(xs))
            .map_err(VifError::Store)
            .and_then(|r| r.map_err(VifError::Start));
        if let Err(e) = started {
            if let Some(w) = vif.watch.take() {
                w.cancel();
            }
            return Err(e);
        }
        vif.configure_address();
        if let Some(cfg) = services {
            match Services::new(&mut vif.sockets, cfg) {
                Ok(s) => vif.services = Some(s),
                Err(e) => crate::println!("xenrs net error: vif/{id}: services: {e}"),
            }
        }
        Ok(vif)
    }

    /// The vif's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Whether this vif owns the command line's address and the default route.
    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// Whether the device was removed (its back end vanished): only dropping
    /// it is left ([`Vif::retire`]).
    pub fn is_removed(&self) -> bool {
        self.nf.phase() == ::xenbus::Phase::Removed
    }

    /// Sends an ARP announcement of our address once connected (a vif added
    /// while the guest runs sits on a new bridge port).
    pub fn announce_when_up(&mut self) {
        self.announce = true;
    }

    /// Acts on the back end's state now (the device directory changed: a
    /// removed device's back end is gone too).
    pub fn refresh(&mut self) {
        if let Some(w) = self.watch.as_ref() {
            w.again();
        }
    }

    /// Drops a removed vif: its watch goes; its pages went back when it was
    /// removed (those the back end still mapped wait on the grant table's
    /// deferred list).
    pub fn retire(mut self) {
        if let Some(w) = self.watch.take() {
            w.cancel();
        }
    }

    /// Whether the services run on this vif.
    pub fn has_services(&self) -> bool {
        self.services.is_some()
    }

    /// The services' configuration, if they run on this vif.
    pub fn services_config(&self) -> Option<&ServicesConfig> {
        self.services.as_ref().map(Services::config)
    }

    /// Watches `<backend>/state` (the shared [`StateWatch`]: the handler only flags
    /// the change for [`Vif::pump`]).
    fn watch_backend(&mut self) -> Result<(), VifError> {
        self.watch = Some(StateWatch::new(&self.nf.backend_state_path()).map_err(VifError::Store)?);
        Ok(())
    }

    /// Applies the static address (printing the contract's `ip=` line) or adds the
    /// DHCP socket.
    fn configure_address(&mut self) {
        match self.addressing {
            Addressing::Static { cidr, gateway } => {
                self.set_address(cidr, gateway);
                self.print_address(cidr, "static", gateway);
            }
            Addressing::Dhcp { .. } => {
                let mut socket = dhcpv4::Socket::new();
                // Leases are renewed well before they end; cap them so a lost server
                // is noticed within minutes rather than days.
                socket.set_max_lease_duration(Some(smoltcp::time::Duration::from_secs(600)));
                self.dhcp = Some(self.sockets.add(socket));
                log::info!("net: vif/{} asking for an address by DHCP", self.id);
            }
            Addressing::None => {
                crate::println!(
                    "xenrs net: vif/{} has no address (no ip= or dhcp on the command line)",
                    self.id
                );
            }
        }
    }

    /// Sets the interface's only IPv4 address and, on the primary vif, the default
    /// route.
    fn set_address(&mut self, cidr: Ipv4Cidr, gateway: Option<Ipv4Address>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            // Capacity is at least one address.
            let _ = addrs.push(IpCidr::Ipv4(cidr));
        });
        if self.primary {
            let routes = self.iface.routes_mut();
            match gateway {
                Some(gw) => {
                    if routes.add_default_ipv4_route(gw).is_err() {
                        crate::println!("xenrs net error: vif/{}: route table full", self.id);
                    }
                }
                None => {
                    let _ = routes.remove_default_ipv4_route();
                }
            }
        }
    }

    /// Prints `xenrs net: ip=<addr>/<n> (static|dhcp) gw=<gw>` (with a `vif/<id>`
    /// prefix for vifs other than the first).
    fn print_address(&self, cidr: Ipv4Cidr, how: &str, gateway: Option<Ipv4Address>) {
        let gw = if self.primary { gateway } else { None };
        if self.primary {
            crate::println!(
                "xenrs net: ip={}/{} ({how}) gw={}",
                cidr.address(),
                cidr.prefix_len(),
                Gw(gw)
            );
        } else {
            crate::println!(
                "xenrs net: vif/{} ip={}/{} ({how}) gw={}",
                self.id,
                cidr.address(),
                cidr.prefix_len(),
                Gw(gw)
            );
        }
    }

    /// One pass of this vif's network work at `now`.
    pub fn pump(&mut self, now: Instant) -> PumpReport {
        let ms = now_ms(now);
        // Relaxed: a statistic; the wake-up itself was the upcall.
        let events = self.counters.events.load(Ordering::Relaxed);
        let woken = events != self.events_seen;
        self.events_seen = events;
        self.unmask_if_due(ms);
        let mut busy = false;
        if self.nf.poll_at().is_some_and(|t| t <= ms) {
            // A failed setup or state write, retried after its back-off.
            match store::with(|xs| self.nf.poll(xs, ms)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => crate::println!("xenrs net error: vif/{}: retry: {e}", self.id),
                Err(StoreError::Busy) => {}
                Err(e) => crate::println!("xenrs net error: vif/{}: xenstore: {e}", self.id),
            }
            busy = true;
        }
        if let Some(watch) = self.watch.as_ref()
            && watch.take()
        {
            busy = true;
            match store::with(|xs| self.nf.on_backend_state(xs)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    crate::println!("xenrs net error: vif/{}: back-end state: {e}", self.id)
                }
                Err(StoreError::Busy) => watch.again(),
                Err(e) => crate::println!("xenrs net error: vif/{}: xenstore: {e}", self.id),
            }
            self.log_backend_state();
        }
        // A back end that stopped taking tx requests becomes a fault here, which
        // check_connection answers with a reconnect. Err means exactly that fault
        // (or one found while consuming responses): nothing more to do with it.
        let _ = self.nf.check_tx_progress(ms);
        // The same for a back end that stopped filling rx buffers.
        let _ = self.nf.check_rx_progress(ms);
        self.check_connection(ms);
        self.check_backend_away(now);

        let before = self.traffic();
        busy |= self.poll_iface(now);
        if let Some(services) = self.services.as_mut()
            && crate::blk::with_disks(|disks| services.poll(&mut self.sockets, now, disks))
        {
            busy = true;
            self.poll_iface(now);
        }
        self.poll_dhcp();
        self.log_service_events();
        self.log_resets();
        if self.traffic() != before {
            busy = true;
        }
        // Relaxed: a statistic.
        let failures = self.counters.failures.load(Ordering::Relaxed);
        if failures > self.failures_reported {
            crate::println!(
                "xenrs net error: vif/{}: {} event-channel operations failed",
                self.id,
                failures - self.failures_reported
            );
            self.failures_reported = failures;
        }

        let mut next = self.iface.poll_at(now, &self.sockets);
        if let Some(t) = self.services.as_ref().and_then(Services::poll_at) {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        // An event is spurious only if nothing moved since the previous event: a pass
        // woken by a timer or the disk often consumes the responses whose event
        // arrives just after it (the back end notifies once it published them).
        self.work_since_event |= busy;
        if woken {
            self.damp_storm(self.work_since_event, ms);
            self.work_since_event = false;
        }
        let deadlines = [
            self.nf.tx_watchdog_deadline_ms(),
            self.nf.rx_watchdog_deadline_ms(),
            self.nf.poll_at(),
            self.storm.masked_until(),
        ];
        for ms in deadlines.into_iter().flatten() {
            let t = Instant::from_millis(i64::try_from(ms).unwrap_or(i64::MAX));
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        PumpReport { busy, next }
    }

    /// Names the TCP resets that went out or came in since the last pass (the
    /// last of them, with the count), so a connection a reset ended can be told
    /// from one that closed: which side reset it, and when. At most 64 lines
    /// each way per vif; the counts stay on the stats line.
    fn log_resets(&mut self) {
        let s = self.nf.stats();
        let (id, (sent, got), (sent_lines, got_lines)) =
            (self.id, &mut self.resets_seen, &mut self.reset_lines);
        log_reset(
            id,
            "sent",
            "sent",
            s.tx.resets,
            s.tx.last_reset,
            sent,
            sent_lines,
        );
        log_reset(
            id,
            "got",
            "received",
            s.rx.resets,
            s.rx.last_reset,
            got,
            got_lines,
        );
    }

    /// Event-storm damping: an event after which no pass found work (since the
    /// previous event) counts as spurious; a run of them masks the port for a growing while
    /// (`evtchn_scan::storm`, Linux's late EOI). Events meanwhile stay pending in Xen.
    fn damp_storm(&mut self, found_work: bool, ms: u64) {
        let Some(port) = self.nf.event_channel() else {
            return;
        };
        if let Verdict::Mask { .. } = self.storm.on_event(found_work, ms) {
            match crate::xen::events::set_masked(port, true) {
                Ok(()) => self.masked_port = Some(port),
                Err(e) => {
                    self.storm.reset();
                    log::debug!("net: vif/{} masking port {port}: {e}", self.id);
                }
            }
        }
    }

    /// Unmasks the port masked by [`Vif::damp_storm`] once its time is up (or at once
    /// if the connection moved to another port meanwhile: that port was closed).
    fn unmask_if_due(&mut self, ms: u64) {
        let Some(port) = self.masked_port else {
            return;
        };
        if self.nf.event_channel() != Some(port) {
            self.masked_port = None;
            self.storm.reset();
            return;
        }
        if self.storm.unmask_due(ms) {
            self.masked_port = None;
            if let Err(e) = crate::xen::events::set_masked(port, false) {
                crate::println!(
                    "xenrs net error: vif/{}: unmasking port {port}: {e}",
                    self.id
                );
            }
        }
    }

    /// Before the main loop sleeps: asks the back end for an event on the next
    /// response; true if responses are already waiting (then do not sleep).
    pub fn rearm(&mut self) -> bool {
        if !self.nf.is_up() {
            return false;
        }
        // A fault (Err) counts as pending: the next pump reports it and reconnects.
        self.nf.rearm().unwrap_or(true)
    }

    /// Counters that change whenever a packet moves.
    fn traffic(&self) -> (u64, u64, u64) {
        let s = self.nf.stats();
        (s.rx.slots, s.tx.packets, s.tx.completed)
    }

    /// Notices the connection coming up or going down, recovers from faults (at `ms`,
    /// for the fault budget).
    fn check_connection(&mut self, ms: u64) {
        let up = self.nf.is_up();
        if up && !self.was_up {
            self.connects += 1;
            self.reconnecting = false;
            crate::println!(
                "xenrs net: vif/{} mac={} backend={} state=Connected",
                self.id,
                self.nf.mac(),
                self.nf.backend_id()
            );
            let f = self.nf.features();
            log::info!(
                "net: vif/{} mtu {} sg {} split-evtchn {} max-queues {} (connection {})",
                self.id,
                self.nf.mtu(),
                f.sg,
                f.split_event_channels,
                f.max_queues,
                self.connects
            );
            if self.announce {
                self.announce = false;
                self.send_announcement();
            }
        } else if !up && self.was_up {
            log::info!("net: vif/{} down (phase {:?})", self.id, self.nf.phase());
        }
        self.was_up = up;
        if let Some(fault) = self.nf.fault()
            && !self.reconnecting
        {
            self.reconnecting = true;
            match fault {
                Fault::TxStalled { waited_ms } => {
                    // Recovered from, and seen with a stock Linux netback: a notice.
                    self.stalls += 1;
                    crate::println!(
                        "xenrs net: vif/{}: the back end took no tx request for {waited_ms} ms (stall {}); reconnecting",
                        self.id,
                        self.stalls
                    );
                }
                Fault::RxStalled { waited_ms } => {
                    self.stalls += 1;
                    crate::println!(
                        "xenrs net: vif/{}: the back end filled no rx buffer for {waited_ms} ms while taking our frames (stall {}); reconnecting",
                        self.id,
                        self.stalls
                    );
                }
                _ => {}
            }
            let result = store::with(|xs| self.nf.recover(xs, ms));
            if !fault.is_stall() && !matches!(result, Ok(Err(NetError::Broken(_)))) {
                crate::println!(
                    "xenrs net error: vif/{}: back end broke the ring protocol ({fault}); reconnecting",
                    self.id
                );
            }
            match result {
                Ok(Ok(())) => {}
                Ok(Err(NetError::Broken(why))) => crate::println!(
                    "xenrs net error: vif/{}: back end broke the ring protocol ({fault}); {why}: device broken, not reconnecting",
                    self.id
                ),
                Ok(Err(e)) => crate::println!("xenrs net error: vif/{}: reconnect: {e}", self.id),
                Err(e) => {
                    self.reconnecting = false;
                    crate::println!("xenrs net error: vif/{}: reconnect: xenstore: {e}", self.id)
                }
            }
        }
    }

    /// Logs each change of the back end's state (`xenrs info: net: vif/<id> back
    /// end <old> -> <new> (phase <p>)`): an unbind/bind of the back end shows here.
    fn log_backend_state(&mut self) {
        let state = self.nf.backend_state();
        if state != self.backend_state {
            log::info!(
                "net: vif/{} back end {:?} -> {:?} (phase {:?})",
                self.id,
                self.backend_state,
                state,
                self.nf.phase()
            );
            self.backend_state = state;
        }
    }

    /// The back end going away and coming back while we stay connected (Linux
    /// netback's dynamic unbind/bind; docs/NET.md): the tx watchdog waits
    /// instead of resetting, and a re-attach is announced (ARP) so that the
    /// bridge learns the back end's new port.
    fn check_backend_away(&mut self, now: Instant) {
        let (rx, _, completed) = self.traffic();
        let waits = self.nf.watchdog_away_waits();
        if waits > self.away_waits_seen {
            self.away_waits_seen = waits;
            if self.away_since.is_none() {
                self.away_since = Some((now, (rx, completed)));
                crate::println!(
                    "xenrs net: vif/{}: the back end is away (its end of the event channel is closed); waiting for it",
                    self.id
                );
            }
        }
        let reattaches = self.nf.reattaches();
        let reattached = reattaches > self.reattaches_seen;
        if let Some((since, seen)) = self.away_since
            && (reattached || (rx, completed) != seen || !self.nf.is_up())
        {
            self.away_since = None;
            crate::println!(
                "xenrs net: vif/{}: the back end is back after {} ms",
                self.id,
                (now - since).total_millis()
            );
        }
        if reattached {
            self.reattaches_seen = reattaches;
            crate::println!(
                "xenrs net: vif/{} back end re-attached to our rings (re-attach {reattaches})",
                self.id
            );
            self.send_announcement();
        }
    }

    /// Packets in (at most [`INGRESS_BUDGET`]) and out. Returns whether anything
    /// happened.
    fn poll_iface(&mut self, now: Instant) -> bool {
        let mut moved = false;
        self.iface.poll_maintenance(now);
        // Big ping replies get their checksum from the request (smoltcp 0.14's
        // is wrong after a bigger datagram: net_services::smol::EchoReplyFix).
        let mut dev = FixedDevice::new(&mut self.nf, &self.echo_fix);
        for _ in 0..INGRESS_BUDGET {
            match self
                .iface
                .poll_ingress_single(now, &mut dev, &mut self.sockets)
            {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed
                | PollIngressSingleResult::SocketStateChanged => moved = true,
            }
            // A ping reply above the MTU: its fragments before the next reply.
            super::frag::drain(&mut self.iface, &mut dev, now);
        }
        for _ in 0..EGRESS_ROUNDS {
            let r = self.iface.poll_egress(now, &mut dev, &mut self.sockets);
            super::frag::drain(&mut self.iface, &mut dev, now);
            match r {
                PollResult::None => break,
                PollResult::SocketStateChanged => moved = true,
            }
        }
        // Everything this pass sent, published in one push (and at most one
        // notification); a fault here is the ring's, handled as any other.
        if let Err(e) = self.nf.flush_tx() {
            log::debug!("net: vif/{}: publishing tx: {e}", self.id);
        }
        moved
    }

    /// Applies DHCP events to the interface.
    fn poll_dhcp(&mut self) {
        let Some(handle) = self.dhcp else {
            return;
        };
        // `handle` came from adding a DHCPv4 socket to this set, so the typed lookup
        // (which panics on a type mismatch) cannot fail.
        let event = match self.sockets.get_mut::<dhcpv4::Socket>(handle).poll() {
            None => return,
            Some(dhcpv4::Event::Configured(c)) => Some((c.address, c.router)),
            Some(dhcpv4::Event::Deconfigured) => None,
        };
        let fallback = match self.addressing {
            Addressing::Dhcp { gateway } => gateway,
            _ => None,
        };
        match event {
            Some((cidr, router)) => {
                let gateway = router.or(fallback);
                self.set_address(cidr, gateway);
                self.print_address(cidr, "dhcp", gateway);
            }
            // The socket reports Deconfigured once at start too: only a lease we
            // held is news.
            None if self.iface.ipv4_addr().is_none() => {}
            None => {
                self.iface.update_ip_addrs(|addrs| addrs.clear());
                if self.primary {
                    let _ = self.iface.routes_mut().remove_default_ipv4_route();
                }
                crate::println!(
                    "xenrs net: vif/{} DHCP lease lost; address removed",
                    self.id
                );
            }
        }
    }

    /// Prints the services' events (iperf3 test starts, summaries, aborts).
    fn log_service_events(&mut self) {
        let Some(services) = self.services.as_mut() else {
            return;
        };
        while let Some(event) = services.next_event() {
            let e = match event {
                ServiceEvent::Iperf3(e) => e,
                ServiceEvent::Nbd(n) => {
                    if n.is_error() {
                        crate::println!("xenrs nbd error: {n}");
                    } else {
                        log::info!("nbd: {n}");
                    }
                    continue;
                }
            };
            match e {
                IperfEvent::TestStarted(p) => crate::println!(
                    "xenrs net: iperf3 test started: streams={} reverse={} bidir={} time_s={} protocol={:?}",
                    p.parallel,
                    p.reverse,
                    p.bidirectional,
                    p.time_s,
                    p.protocol
                ),
                IperfEvent::TestFinished(s) => {
                    let bytes = s.bytes_received.saturating_add(s.bytes_sent);
                    // Mbit/s with two decimals, in integers: bits * 100 / us.
                    let centi = u128::from(bytes) * 8 * 100 / u128::from(s.duration_us.max(1));
                    crate::println!(
                        "xenrs net: iperf3 test finished: streams={} reverse={} received={} sent={} duration_ms={} rate={}.{:02} Mbit/s client_bytes={}",
                        s.streams,
                        s.reverse,
                        s.bytes_received,
                        s.bytes_sent,
                        s.duration_us / 1000,
                        centi / 100,
                        centi % 100,
                        s.client.bytes
                    );
                }
                IperfEvent::TestAborted(r) => {
                    crate::println!("xenrs net error: iperf3 test aborted: {r}")
                }
                IperfEvent::AccessDenied => {
                    crate::println!("xenrs net: iperf3 refused a client (a test is running)")
                }
            }
        }
    }

    /// Sends an ARP announcement of our address, if we have one.
    fn send_announcement(&mut self) {
        let Some(ip) = self.iface.ipv4_addr() else {
            return;
        };
        let mac = EthernetAddress(self.nf.mac().0);
        match self.nf.transmit(arp::ANNOUNCE_LEN, |buf| {
            arp::write_announcement(buf, mac, ip)
        }) {
            Ok(()) => log::info!("net: vif/{} announced {ip} at {mac}", self.id),
            Err(e) => crate::println!("xenrs net error: vif/{}: ARP announcement: {e}", self.id),
        }
    }

    /// Before a suspend: stops I/O.
    pub fn suspend(&mut self) {
        if let Err(e) = self.nf.suspend() {
            crate::println!("xenrs net error: vif/{}: suspend: {e}", self.id);
        }
    }

    /// After the suspend hypercall returned. Cancelled: I/O continues on the same
    /// rings and grants (netfront touches nothing). New domain (the core already
    /// re-mapped and reset the grant table and resumed xenstore): netfront drops the
    /// stale rings and reconnects to the new back end, whose path names our new domid,
    /// so the state watch moves there; the connection announces our address once up.
    pub fn resume(&mut self, new_domain: bool) {
        match store::with(|xs| self.nf.resume(xs, new_domain)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => crate::println!("xenrs net error: vif/{}: resume: {e}", self.id),
            Err(e) => crate::println!("xenrs net error: vif/{}: resume: xenstore: {e}", self.id),
        }
        if new_domain {
            self.was_up = false;
            self.announce = true;
            self.away_since = None;
            // Every port of the old domain is gone (and the new ones start unmasked).
            self.masked_port = None;
            self.storm.reset();
            // The old path names the old domid; the watch follows the back end, and
            // its raised flag makes the next pump act on the current state.
            let path = self.nf.backend_state_path();
            let moved = match self.watch.as_mut() {
                Some(w) => w.follow(&path),
                None => StateWatch::new(&path).map(|w| self.watch = Some(w)),
            };
            if let Err(e) = moved {
                crate::println!(
                    "xenrs net error: vif/{}: watching the back end: {e}",
                    self.id
                );
            }
        }
    }

    /// Prints this vif's state (`xenrs dump: ...` lines; see `net::dump`).
    pub fn dump(&mut self) {
        let now = instant_now();
        let port = self.nf.event_channel();
        let poll_at = self
            .iface
            .poll_at(now, &self.sockets)
            .map(|t| t.total_micros());
        crate::println!(
            "xenrs dump: {} iface_poll_at={:?} now={} services_poll_at={:?} port_bits={:?} masked_port={:?}",
            self.stats_line(),
            poll_at,
            now.total_micros(),
            self.services
                .as_ref()
                .and_then(Services::poll_at)
                .map(|t| t.total_micros()),
            port.and_then(crate::xen::events::port_bits),
            self.masked_port
        );
        // Every TCP socket with a connection (listening ones left out).
        for (_, socket) in self.sockets.iter() {
            if let smoltcp::socket::Socket::Tcp(t) = socket
                && !matches!(t.state(), tcp::State::Listen | tcp::State::Closed)
            {
                crate::println!(
                    "xenrs dump: tcp {:?} <- {:?} {} send_queue={} recv_queue={} can_send={} can_recv={}",
                    t.local_endpoint(),
                    t.remote_endpoint(),
                    t.state(),
                    t.send_queue(),
                    t.recv_queue(),
                    t.can_send(),
                    t.can_recv()
                );
            }
        }
        if let Some(iperf) = self.services.as_ref().and_then(Services::iperf3) {
            let mut text = alloc::string::String::new();
            let _ = iperf.server().describe(&mut text);
            crate::println!("xenrs dump: iperf3 {text}");
        }
        if let Some(nbd) = self.services.as_ref().and_then(Services::nbd) {
            let mut text = alloc::string::String::new();
            let _ = nbd.describe(&self.sockets, &mut text, "xenrs dump: ");
            for line in text.lines() {
                crate::println!("{line}");
            }
        }
    }

    /// Counters for the debug log.
    pub fn stats_line(&self) -> impl fmt::Display + '_ {
        StatsLine(self)
    }
}

/// One direction of [`Vif::log_resets`]: `total` resets so far, the last one
/// `last`, `seen` of them already looked at, `lines` printed so far.
fn log_reset(
    vif: u32,
    verb: &str,
    noun: &str,
    total: u64,
    last: Option<netfront::csum::TcpReset>,
    seen: &mut u64,
    lines: &mut u64,
) {
    const MAX_RESET_LINES: u64 = 64;
    if total == *seen {
        return;
    }
    if *lines < MAX_RESET_LINES
        && let Some(r) = last
    {
        log::info!("net: vif/{vif}: {verb} TCP RST {r} ({total} {noun} in all)");
        *lines += 1;
    }
    *seen = total;
}

/// `Display` of a vif's counters.
struct StatsLine<'a>(&'a Vif);

impl fmt::Display for StatsLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        let s = v.nf.stats();
        write!(
            f,
            "vif/{}: rx {} pkts {} B ({} errors, csum {} trusted {} verified, {} gso), tx {} pkts {} B ({} errors, {} dropped, {} resent, {} csum offloaded, {} tso, {} segmented, {} pushes), {} notifies ({} by the watchdogs, {} tx stalls, {} rx stalls), {} events ({} spurious, {} masked), {} setups ({} retried, {} faults{}), {} pages, up {} port {:?} {:?}, TCP RST {} sent {} received",
            v.id,
            s.rx.packets,
            s.rx.bytes,
            s.rx.errors,
            s.rx.csum_trusted,
            s.rx.csum_verified,
            s.rx.gso_packets,
            s.tx.packets,
            s.tx.bytes,
            s.tx.errors,
            s.tx.dropped,
            s.tx.resent,
            s.tx.csum_offloaded,
            s.tx.tso,
            s.tx.segmented,
            s.tx.pushes,
            s.notifies,
            s.watchdog_notifies,
            s.watchdog_stalls,
            s.rx_watchdog_stalls,
            // Relaxed: a statistic.
            v.counters.events.load(Ordering::Relaxed),
            v.storm.spurious(),
            v.storm.masks(),
            s.setups,
            s.setup_retries,
            s.faults,
            if v.nf.broken().is_some() {
                ", broken"
            } else {
                ""
            },
            v.nf.pages().held,
            v.nf.is_up(),
            v.nf.event_channel(),
            v.nf.ring_indices(),
            s.tx.resets,
            s.rx.resets
        )
    }
}
