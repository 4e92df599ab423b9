//! `SimNetback`, a simulated netback that misbehaves on purpose, and `SimWorld`, which wires it to the generic fakes (feature `test-utils`).
//!
//! The generic fakes (guest memory, pages, grant table, event channels) are
//! `xen_frontend::sim`'s, re-exported here. [`SimNetback`] plays Linux
//! netback: publishes its features and InitWait, follows the front end's
//! state (`frontend_changed`), maps the rings the front end publishes,
//! delivers queued packets into posted rx buffers (grant copy: map, write,
//! unmap) and collects transmitted frames. It audits every rx request it
//! takes (the grant must be valid for this back end, issued in the current
//! domain epoch, not a ring page, not shared with another outstanding
//! request). Knobs make it misbehave: stale/wrong ids, bad statuses, offsets
//! and sizes, bad or endless extra-info chains, `rsp_prod` jumps, holding tx,
//! closing or reloading mid-traffic, keeping mappings after close, and
//! save/restore into a new domain with a possibly different back-end domain.
//! [`SimWorld`] pairs it with a `SimGuest` (one `SimXenstored`) for tests.
//! The fuzz target's session body lives in `fuzz/src/netfront.rs`.
//!
//! This is test support: it may panic to fail a test.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use grant_table::sim::SimError;
use grant_table::{Access, DomId, GrantRef};
use xen_abi::PAGE_SIZE;
use xen_abi::event_channel::EvtchnPort;
use xen_abi::netif::{
    NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETRXF_EXTRA_INFO, NETRXF_MORE_DATA,
    NETTXF_EXTRA_INFO, NETTXF_MORE_DATA, NetifExtraInfo, NetifRxResponse, NetifTxRequest,
    NetifTxResponse, XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_GSO,
    XEN_NETIF_EXTRA_TYPE_HASH, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6,
    XEN_NETIF_NR_SLOTS_MIN,
};
use xen_frontend::sim::SimXenbusDevice;
use xen_ring::sim::SimBackend;
use xen_ring::{RingIndex, SharedRing};
use xenbus::XenbusState;

pub use xen_frontend::sim::{
    POISON, SimEvtchn, SimGrantMem, SimGrants, SimGuest, SimMapping, SimMemory, SimPage, SimPages,
    SimTable, pseudo_random_corpus,
};

use crate::driver::{Config, NetFront};
use crate::error::{NetError, ProbeError};
use crate::wire::{self, RxReq, RxRsp, TxReq, TxRsp};

/// The page type of the simulation (the generic one).
pub type SimNetPage = SimPage;

// --- the back end -------------------------------------------------------------------

/// Why the simulated back end could not connect (netback's `xenbus_dev_fatal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimNetError {
    /// A front-end node is missing or malformed.
    BadNode(&'static str),
    /// `request-rx-copy` is not 1.
    NoRxCopy,
    /// `feature-rx-notify` is not 1 (mandatory for Linux netback).
    NoRxNotify,
    /// A ring reference could not be mapped.
    Map(SimError),
    /// The event channel was not allocated for this back end.
    BadPort(EvtchnPort),
}

/// What the back end advertises and how the toolstack set the vif up.
#[derive(Clone, Debug)]
pub struct SimNetConfig {
    /// The guest's domid.
    pub front_domid: u16,
    /// The back end's domid.
    pub backend_domid: DomId,
    /// The vif id.
    pub devid: u32,
    /// `device/vif/<id>/mac`.
    pub mac: Vec<u8>,
    /// `device/vif/<id>/mtu`, if written.
    pub mtu: Option<Vec<u8>>,
    /// `feature-rx-copy`.
    pub rx_copy: bool,
    /// `feature-sg`.
    pub sg: bool,
    /// `feature-gso-tcpv4`.
    pub gso: bool,
}

impl Default for SimNetConfig {
    fn default() -> Self {
        Self {
            front_domid: 7,
            backend_domid: 0,
            devid: 0,
            mac: b"00:16:3e:12:34:56".to_vec(),
            mtu: None,
            rx_copy: true,
            sg: true,
            gso: true,
        }
    }
}

/// A packet queued for delivery to the guest, and how to deliver it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimRxPacket {
    /// The frame.
    pub data: Vec<u8>,
    /// `NETRXF_csum_blank` / `NETRXF_data_validated` flags of the first slot.
    pub flags: u16,
    /// Extra-info segments after the first slot.
    pub extras: Vec<NetifExtraInfo>,
    /// Data bytes per slot (at most a page minus `offset`).
    pub chunk: usize,
    /// Offset of the data in the first slot's page.
    pub offset: u16,
}

impl SimRxPacket {
    /// A frame delivered in page-sized slots at offset 0, no flags.
    pub fn new(data: &[u8]) -> Self {
        Self {
            data: data.to_vec(),
            flags: 0,
            extras: Vec::new(),
            chunk: PAGE_SIZE,
            offset: 0,
        }
    }
}

/// A frame the guest transmitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimTxFrame {
    /// The frame.
    pub data: Vec<u8>,
    /// Flags of its first request (`NETTXF_*`).
    pub flags: u16,
    /// The extra-info slots that followed its first request (a GSO one for
    /// a TSO frame).
    pub extras: Vec<NetifExtraInfo>,
}

/// A one-shot corruption of the next rx packet's first data response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxCorruption {
    /// The id of the previously answered request (a replay).
    StaleId,
    /// This id instead of the request's.
    Id(u16),
    /// This status (negative: an error code; positive: a size).
    Status(i16),
    /// This offset.
    Offset(u16),
    /// An extra-info slot of this type after the first slot.
    ExtraType(u8),
    /// A chain of this many extra-info slots, each saying "more".
    EndlessExtras(u16),
    /// `NETRXF_more_data` on the packet's last slot (it then swallows the
    /// next packet).
    DanglingMoreData,
}

/// A one-shot corruption of the next tx response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxCorruption {
    /// The response after the next one repeats the next one's id (a replay)
    /// instead of answering its own request.
    StaleId,
    /// This id instead of the request's.
    Id(u16),
    /// This status.
    Status(i16),
}

/// Which ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingSel {
    /// The tx ring.
    Tx,
    /// The rx ring.
    Rx,
}

/// Counters of the simulated back end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimNetStats {
    /// Successful connects.
    pub connects: u64,
    /// Last connect failure.
    pub connect_error: Option<SimNetError>,
    /// Rx requests taken.
    pub rx_requests: u64,
    /// Rx requests that failed the audit (see [`SimNetback::audit_failures`]).
    pub bad_rx_grefs: u64,
    /// Rx packets delivered.
    pub rx_packets: u64,
    /// Rx response slots produced.
    pub rx_slots: u64,
    /// Tx requests taken.
    pub tx_requests: u64,
    /// Tx requests whose grant could not be mapped.
    pub bad_tx_grefs: u64,
    /// Tx frames received from the guest.
    pub tx_frames: u64,
}

/// Why an rx request failed the back end's audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditError {
    /// The grant could not be mapped writable by this back end.
    Map(SimError),
    /// The grant was last published in an earlier domain epoch.
    OldEpoch,
    /// The grant names a ring page.
    RingPage,
    /// Another outstanding request names the same frame or reference.
    Duplicate,
}

#[derive(Debug)]
struct BackConn {
    tx_map: SimMapping,
    rx_map: SimMapping,
    tx_ref: GrantRef,
    rx_ref: GrantRef,
    port: EvtchnPort,
    tx: SimBackend<TxReq, TxRsp>,
    rx: SimBackend<RxReq, RxRsp>,
}

/// A taken rx request and the frame its grant resolved to.
#[derive(Clone, Copy, Debug)]
struct Posted {
    req: RxReq,
    frame: Option<u64>,
}

/// The simulated netback. See the module docs.
#[derive(Debug)]
pub struct SimNetback {
    dev: SimXenbusDevice,
    grants: SimGrants,
    mem: SimMemory,
    evt: SimEvtchn,
    cfg: SimNetConfig,
    conn: Option<BackConn>,
    /// Ring mappings kept after a close (knob), unmapped by `release_mappings`.
    kept: Vec<GrantRef>,
    rx_queue: VecDeque<SimRxPacket>,
    rx_pending: VecDeque<Posted>,
    last_rx_id: Option<u16>,
    tx_partial: Vec<NetifTxRequest>,
    /// Extra-info slots of the frame being collected (raw, for the NULL
    /// responses' ids), and whether another is expected.
    tx_extras: Vec<NetifTxRequest>,
    tx_extra_expected: bool,
    tx_replay: Option<u16>,
    sent: Vec<SimTxFrame>,
    hold_tx: bool,
    keep_mappings: bool,
    rx_corrupt: Option<RxCorruption>,
    tx_corrupt: Option<TxCorruption>,
    audit: Vec<(GrantRef, AuditError)>,
    stats: SimNetStats,
}

fn parse_u32(v: &[u8]) -> Option<u32> {
    crate::nodes::parse_u32(v).ok()
}

impl SimNetback {
    /// Creates the vif of `guest` as the toolstack does (front-end nodes
    /// `backend`, `backend-id`, `mac`, `state`=Initialising; back-end nodes)
    /// and probes the back end: features published, state InitWait.
    pub fn new(guest: &SimGuest, cfg: SimNetConfig) -> Self {
        let dev = SimXenbusDevice::new(
            guest.xs_ring.clone(),
            "vif",
            cfg.front_domid,
            cfg.backend_domid,
            cfg.devid,
        );
        let mut b = Self {
            dev,
            grants: guest.grants.clone(),
            mem: guest.mem.clone(),
            evt: guest.evt.clone(),
            cfg,
            conn: None,
            kept: Vec::new(),
            rx_queue: VecDeque::new(),
            rx_pending: VecDeque::new(),
            last_rx_id: None,
            tx_partial: Vec::new(),
            tx_extras: Vec::new(),
            tx_extra_expected: false,
            tx_replay: None,
            sent: Vec::new(),
            hold_tx: false,
            keep_mappings: false,
            rx_corrupt: None,
            tx_corrupt: None,
            audit: Vec::new(),
            stats: SimNetStats::default(),
        };
        b.toolstack_create();
        b
    }

    fn toolstack_create(&mut self) {
        let cfg = &self.cfg;
        let handle = format!("{}", cfg.devid);
        let flag = |on: bool| if on { &b"1"[..] } else { &b"0"[..] };
        let mut front: Vec<(&str, &[u8])> = vec![("mac", &cfg.mac)];
        if let Some(mtu) = &cfg.mtu {
            front.push(("mtu", mtu));
        }
        front.push(("handle", handle.as_bytes()));
        self.dev.create(
            &front,
            &[
                ("mac", b"fe:ff:ff:ff:ff:ff"),
                ("feature-rx-copy", flag(cfg.rx_copy)),
                ("feature-rx-flip", b"0"),
                ("feature-sg", flag(cfg.sg)),
                ("feature-gso-tcpv4", flag(cfg.gso)),
                ("feature-gso-tcpv6", b"1"),
                ("feature-ipv6-csum-offload", b"1"),
                ("feature-split-event-channels", b"1"),
                ("multi-queue-max-queues", b"2"),
            ],
        );
        self.dev.set_state(XenbusState::InitWait);
    }

    /// The back end's state.
    pub fn state(&self) -> XenbusState {
        self.dev.state()
    }

    /// The back end's directory.
    pub fn backend_dir(&self) -> &str {
        self.dev.back_dir()
    }

    /// Whether the rings are mapped.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Counters.
    pub fn stats(&self) -> &SimNetStats {
        &self.stats
    }

    /// Rx requests that failed the audit, with the reason.
    pub fn audit_failures(&self) -> &[(GrantRef, AuditError)] {
        &self.audit
    }

    /// Rx requests taken and not yet used for a packet.
    pub fn rx_posted(&self) -> usize {
        self.rx_pending.len()
    }

    /// Takes the frames the guest transmitted so far.
    pub fn take_sent(&mut self) -> Vec<Vec<u8>> {
        core::mem::take(&mut self.sent)
            .into_iter()
            .map(|f| f.data)
            .collect()
    }

    /// Takes the frames the guest transmitted, with their flags, as they
    /// came (a `NETTXF_csum_blank` frame holds the pseudo-header sum).
    pub fn take_sent_frames(&mut self) -> Vec<SimTxFrame> {
        core::mem::take(&mut self.sent)
    }

    /// Queues a frame for the guest.
    pub fn inject(&mut self, pkt: SimRxPacket) {
        self.rx_queue.push_back(pkt);
    }

    /// Packets queued and not yet delivered.
    pub fn queued(&self) -> usize {
        self.rx_queue.len()
    }

    /// Stops (true) or resumes (false) taking tx requests.
    pub fn hold_tx(&mut self, on: bool) {
        self.hold_tx = on;
    }

    /// Forgets queued packets and pending corruptions, and stops holding tx.
    pub fn reset_knobs(&mut self) {
        self.rx_queue.clear();
        self.rx_corrupt = None;
        self.tx_corrupt = None;
        self.tx_replay = None;
        self.hold_tx = false;
    }

    /// Corrupts the next rx packet.
    pub fn corrupt_next_rx(&mut self, c: RxCorruption) {
        self.rx_corrupt = Some(c);
    }

    /// Corrupts the next tx response.
    pub fn corrupt_next_tx(&mut self, c: TxCorruption) {
        self.tx_corrupt = Some(c);
    }

    /// When closing, keep the ring mappings (the front end must defer ending
    /// access) until [`release_mappings`](Self::release_mappings).
    pub fn keep_mappings_on_close(&mut self, on: bool) {
        self.keep_mappings = on;
    }

    /// Drops mappings kept by [`keep_mappings_on_close`](Self::keep_mappings_on_close).
    pub fn release_mappings(&mut self) {
        for gref in core::mem::take(&mut self.kept) {
            self.unmap_ring(gref);
        }
    }

    fn unmap_ring(&self, gref: GrantRef) {
        let domid = self.cfg.backend_domid;
        let _ = self.grants.backend_unmap(domid, gref, Access::ReadWrite);
    }

    /// Writes raw bytes as the next rx response slots (each takes the slot
    /// of the oldest posted request, if any) and publishes them.
    pub fn push_raw_rx(&mut self, slots: &[[u8; 8]]) {
        self.take_rx_requests();
        for slot in slots {
            let _ = self.rx_pending.pop_front();
            if let Some(c) = self.conn.as_mut() {
                c.rx.produce_response(&c.rx_map, &RxRsp(*slot));
            }
        }
        if let Some(c) = self.conn.as_mut()
            && c.rx.push_responses_and_check_notify(&c.rx_map)
        {
            self.evt.notify_guest();
        }
    }

    /// Writes raw bytes as the next tx responses and publishes them.
    pub fn push_raw_tx(&mut self, rsps: &[[u8; 4]]) {
        if let Some(c) = self.conn.as_mut() {
            for r in rsps {
                c.tx.produce_response(&c.tx_map, &TxRsp(NetifTxResponse::from_bytes(r)));
            }
        }
        self.push_tx();
    }

    /// Publishes `rsp_prod = rsp_prod_pvt + by` on a ring (a jump past what
    /// was requested).
    pub fn jump_rsp_prod(&mut self, ring: RingSel, by: u32) {
        if let Some(c) = self.conn.as_mut() {
            match ring {
                RingSel::Tx => {
                    let v = c.tx.rsp_prod_pvt().wrapping_add(by);
                    c.tx.force_rsp_prod(&c.tx_map, v);
                }
                RingSel::Rx => {
                    let v = c.rx.rsp_prod_pvt().wrapping_add(by);
                    c.rx.force_rsp_prod(&c.rx_map, v);
                }
            }
        }
    }

    /// Drops the connection mid-traffic: the back end switches to `state`
    /// (Closing or Closed) and unmaps (unless told to keep mappings).
    pub fn drop_connection(&mut self, state: XenbusState) {
        self.disconnect();
        self.dev.set_state(state);
    }

    /// The back end is reloaded (unbound and probed again): it forgets the
    /// connection and shows InitWait while the front end is still connected.
    pub fn reload(&mut self) {
        self.disconnect();
        self.dev.set_state(XenbusState::InitWait);
    }

    /// Linux netback's dynamic unbind (`echo vif-<dom>-<id> >
    /// /sys/bus/xen-backend/drivers/vif/unbind`; the driver sets
    /// `allow_rebind`): it unmaps the rings and closes its end of the event
    /// channel, but its `state` node stays as it was (Connected), so the front
    /// end sees nothing in xenstore while the back end is away. Requests it had
    /// taken and not answered are forgotten (they are taken again on re-attach).
    pub fn unbind(&mut self) {
        self.disconnect();
    }

    /// Linux netback's bind after [`unbind`](Self::unbind): the probe shows
    /// InitWait; the next [`step`](Self::step) that finds the front end still
    /// Connected re-attaches to the rings it published, at the shared indices
    /// (`BACK_RING_ATTACH`), re-binds the event channel and shows Connected.
    /// A front end that reset in the meantime is followed as usual.
    pub fn bind(&mut self) {
        self.dev.set_state(XenbusState::InitWait);
    }

    /// Save/restore into a new domain: Xen's grant table and event channels
    /// are new, the old connection is gone (no unmap needed), and the
    /// toolstack re-creates the vif, with the back end in `new_backend` if
    /// given. The guest kernel must then call `SimGrants::reset_for_resume`
    /// and resume xenstore before the driver's `resume(.., true)`.
    pub fn new_domain(&mut self, new_backend: Option<DomId>) {
        self.grants.new_domain();
        self.evt.new_domain();
        self.conn = None;
        self.kept.clear();
        self.rx_pending.clear();
        self.tx_partial.clear();
        self.tx_extras.clear();
        self.tx_extra_expected = false;
        self.last_rx_id = None;
        self.tx_replay = None;
        self.dev.destroy();
        if let Some(d) = new_backend {
            self.cfg.backend_domid = d;
            self.dev.move_backend(d, self.cfg.devid);
        }
        self.toolstack_create();
    }

    fn disconnect(&mut self) {
        if let Some(c) = self.conn.take() {
            self.evt.unbind(c.port);
            for gref in [c.tx_ref, c.rx_ref] {
                if self.keep_mappings {
                    self.kept.push(gref);
                } else {
                    self.unmap_ring(gref);
                }
            }
        }
        self.rx_pending.clear();
        self.tx_partial.clear();
        self.tx_extras.clear();
        self.tx_extra_expected = false;
    }

    fn connect(&mut self) -> Result<(), SimNetError> {
        let num = |b: &Self, leaf: &'static str| {
            b.dev
                .front_node(leaf)
                .and_then(|v| parse_u32(&v))
                .ok_or(SimNetError::BadNode(leaf))
        };
        let tx_ref = num(self, "tx-ring-ref")?;
        let rx_ref = num(self, "rx-ring-ref")?;
        let port = num(self, "event-channel")?;
        if self.dev.front_node("request-rx-copy").as_deref() != Some(b"1") {
            return Err(SimNetError::NoRxCopy);
        }
        if self.dev.front_node("feature-rx-notify").as_deref() != Some(b"1") {
            return Err(SimNetError::NoRxNotify);
        }
        let domid = self.cfg.backend_domid;
        let tx_gfn = self.map_ring(tx_ref)?;
        let rx_gfn = match self.map_ring(rx_ref) {
            Ok(g) => g,
            Err(e) => {
                self.unmap_ring(tx_ref);
                return Err(e);
            }
        };
        if let Err(e) = self.evt.bind(port, domid).map_err(SimNetError::BadPort) {
            let g = &self.grants;
            let _ = g
                .backend_unmap(domid, tx_ref, Access::ReadWrite)
                .and_then(|()| g.backend_unmap(domid, rx_ref, Access::ReadWrite));
            return Err(e);
        }
        let tx_layout = wire::tx_layout().map_err(|_| SimNetError::BadNode("tx-ring-ref"))?;
        let rx_layout = wire::rx_layout().map_err(|_| SimNetError::BadNode("rx-ring-ref"))?;
        let tx_map = SimMapping::new(&self.mem, tx_gfn);
        let rx_map = SimMapping::new(&self.mem, rx_gfn);
        // Linux netback (since its dynamic unbind/bind support) attaches at the shared `rsp_prod`
        // (`BACK_RING_ATTACH`): 0 on a fresh ring; after an unbind/bind it
        // continues where the old back end stopped (see `unbind`).
        let tx_start = tx_map.load(RingIndex::RspProd, core::sync::atomic::Ordering::Acquire);
        let rx_start = rx_map.load(RingIndex::RspProd, core::sync::atomic::Ordering::Acquire);
        // And refuses indices that cannot be (`req_prod - rsp_prod > RING_SIZE`).
        let bogus = |map: &SimMapping, start: u32, entries: u32| {
            map.load(RingIndex::ReqProd, core::sync::atomic::Ordering::Acquire)
                .wrapping_sub(start)
                > entries
        };
        let ring_error = if bogus(&tx_map, tx_start, tx_layout.entries()) {
            Some("tx-ring-ref")
        } else if bogus(&rx_map, rx_start, rx_layout.entries()) {
            Some("rx-ring-ref")
        } else {
            None
        };
        if let Some(node) = ring_error {
            self.evt.unbind(port);
            let _ = self.grants.with_mem(|m| {
                m.inner.backend_unmap(domid, tx_ref, Access::ReadWrite)?;
                m.inner.backend_unmap(domid, rx_ref, Access::ReadWrite)
            });
            return Err(SimNetError::BadNode(node));
        }
        self.conn = Some(BackConn {
            tx_map,
            rx_map,
            tx_ref,
            rx_ref,
            port,
            tx: SimBackend::attach(tx_layout, tx_start),
            rx: SimBackend::attach(rx_layout, rx_start),
        });
        self.stats.connects += 1;
        Ok(())
    }

    fn map_ring(&mut self, gref: GrantRef) -> Result<u64, SimNetError> {
        let domid = self.cfg.backend_domid;
        self.grants
            .backend_map(domid, gref, Access::ReadWrite)
            .map_err(SimNetError::Map)
    }

    /// Maps `gref` with `access`, runs `f` on its frame, unmaps (a grant copy).
    fn with_grant<R>(
        &mut self,
        gref: GrantRef,
        access: Access,
        f: impl FnOnce(&SimMemory, u64) -> R,
    ) -> Result<R, SimError> {
        let domid = self.cfg.backend_domid;
        let frame = self.grants.backend_map(domid, gref, access)?;
        let r = f(&self.mem, frame);
        self.grants.backend_unmap(domid, gref, access)?;
        Ok(r)
    }

    /// One pass: reacts to the front end's state (netback's
    /// `frontend_changed`), then services the rings if connected. Returns
    /// whether anything changed or moved.
    pub fn step(&mut self) -> bool {
        use XenbusState as S;
        let before = (self.state(), self.stats.clone());
        let front = self.dev.front_state();
        match front {
            S::Initialising | S::Initialised if self.state() == S::Closed => {
                // "prepare for reconnect"
                self.dev.set_state(S::InitWait);
            }
            S::Connected if matches!(self.state(), S::InitWait | S::Initialised) => {
                match self.connect() {
                    Ok(()) => self.dev.set_state(S::Connected),
                    Err(e) => {
                        self.stats.connect_error = Some(e);
                        self.dev.set_state(S::Closing);
                    }
                }
            }
            S::Closing if !matches!(self.state(), S::Closing | S::Closed) => {
                self.disconnect();
                self.dev.set_state(S::Closing);
            }
            S::Closed | S::Unknown if self.state() != S::Closed => {
                self.disconnect();
                self.dev.set_state(S::Closed);
            }
            _ => {}
        }
        let moved = if self.state() == S::Connected && self.conn.is_some() {
            self.service()
        } else {
            false
        };
        moved || before != (self.state(), self.stats.clone())
    }

    /// Services both rings once; returns whether anything moved.
    pub fn service(&mut self) -> bool {
        let mut moved = self.service_tx();
        moved |= self.take_rx_requests();
        moved |= self.deliver_rx();
        moved
    }

    fn service_tx(&mut self) -> bool {
        if self.hold_tx {
            return false;
        }
        let mut moved = false;
        loop {
            let Some(c) = self.conn.as_mut() else {
                return moved;
            };
            let Some(TxReq(req)) = c.tx.take_request(&c.tx_map) else {
                if c.tx.final_check_for_requests(&c.tx_map) {
                    continue;
                }
                break;
            };
            moved = true;
            self.stats.tx_requests += 1;
            if self.tx_extra_expected {
                // An extra-info slot (netif.h: after the first request
                // flagged NETTXF_extra_info, chained by XEN_NETIF_EXTRA_FLAG_MORE).
                let w = req.to_bytes();
                let mut e = [0u8; 8];
                e.copy_from_slice(&w[..8]);
                let more = NetifExtraInfo::from_bytes(&e).flags & XEN_NETIF_EXTRA_FLAG_MORE != 0;
                self.tx_extras.push(req);
                self.tx_extra_expected = more && self.tx_extras.len() < 8;
            } else {
                self.tx_partial.push(req);
                if self.tx_partial.len() == 1 && req.flags & NETTXF_EXTRA_INFO != 0 {
                    self.tx_extra_expected = true;
                }
            }
            let last = self.tx_partial.last().map_or(0, |r| r.flags);
            if !self.tx_extra_expected && last & NETTXF_MORE_DATA == 0 {
                let frame = core::mem::take(&mut self.tx_partial);
                let extras = core::mem::take(&mut self.tx_extras);
                self.transmit_frame(&frame, &extras);
            }
        }
        if moved {
            self.push_tx();
        }
        moved
    }

    /// Reads one frame (netif.h: the first request's size is the total; its
    /// own data is what the later fragments do not cover) and answers every
    /// request.
    fn transmit_frame(&mut self, reqs: &[NetifTxRequest], extra_slots: &[NetifTxRequest]) {
        let extras: Vec<NetifExtraInfo> = extra_slots
            .iter()
            .map(|r| {
                let w = r.to_bytes();
                let mut e = [0u8; 8];
                e.copy_from_slice(&w[..8]);
                NetifExtraInfo::from_bytes(&e)
            })
            .collect();
        // Linux netback's checks (`xenvif_set_skb_gso`): a GSO extra needs
        // a size and a known type; only GSO extras are valid on tx here.
        let extras_ok = extras.iter().all(|e| {
            e.kind == XEN_NETIF_EXTRA_TYPE_GSO
                && e.gso_size() != 0
                && matches!(
                    e.gso_type(),
                    XEN_NETIF_GSO_TYPE_TCPV4 | XEN_NETIF_GSO_TYPE_TCPV6
                )
        });
        let total = reqs.first().map_or(0, |r| usize::from(r.size));
        let rest: usize = reqs.iter().skip(1).map(|r| usize::from(r.size)).sum();
        let mut frame = Vec::with_capacity(total);
        let mut ok = total >= rest && extras_ok && reqs.len() <= XEN_NETIF_NR_SLOTS_MIN;
        for (i, r) in reqs.iter().enumerate() {
            let len = if i == 0 {
                total.saturating_sub(rest)
            } else {
                usize::from(r.size)
            };
            let off = usize::from(r.offset);
            if off + len > PAGE_SIZE {
                ok = false;
                continue;
            }
            let mut buf = vec![0u8; len];
            match self.with_grant(r.gref, Access::ReadOnly, |mem, frame| {
                mem.read(frame, off, &mut buf)
            }) {
                Ok(()) => frame.extend_from_slice(&buf),
                Err(_) => {
                    self.stats.bad_tx_grefs += 1;
                    ok = false;
                }
            }
        }
        if ok {
            self.stats.tx_frames += 1;
            self.sent.push(SimTxFrame {
                data: frame,
                flags: reqs.first().map_or(0, |r| r.flags),
                extras,
            });
        }
        let status = if ok { NETIF_RSP_OKAY } else { NETIF_RSP_ERROR };
        for (i, r) in reqs.iter().enumerate() {
            self.respond_tx(r.id, status);
            if i == 0 {
                // netback's make_tx_response: each extra slot's response is
                // XEN_NETIF_RSP_NULL, its id whatever the slot held.
                for e in extra_slots {
                    if let Some(c) = self.conn.as_mut() {
                        let rsp = NetifTxResponse {
                            id: e.id,
                            status: NETIF_RSP_NULL,
                        };
                        c.tx.produce_response(&c.tx_map, &TxRsp(rsp));
                    }
                }
            }
        }
    }

    fn respond_tx(&mut self, id: u16, status: i16) {
        let mut rsp = NetifTxResponse { id, status };
        match self.tx_corrupt.take() {
            // This response is correct; the next one replays its id instead
            // of answering its own request (so the ring indices stay plausible).
            Some(TxCorruption::StaleId) => self.tx_replay = Some(id),
            Some(TxCorruption::Id(i)) => rsp.id = i,
            Some(TxCorruption::Status(s)) => rsp.status = s,
            None => {
                if let Some(old) = self.tx_replay.take() {
                    rsp.id = old;
                }
            }
        }
        let Some(c) = self.conn.as_mut() else { return };
        c.tx.produce_response(&c.tx_map, &TxRsp(rsp));
    }

    fn push_tx(&mut self) {
        if let Some(c) = self.conn.as_mut()
            && c.tx.push_responses_and_check_notify(&c.tx_map)
        {
            self.evt.notify_guest();
        }
    }

    fn ring_frames(&self) -> [Option<u64>; 2] {
        match &self.conn {
            Some(c) => [Some(c.tx_map.gfn()), Some(c.rx_map.gfn())],
            None => [None, None],
        }
    }

    /// Takes every posted rx request and audits its grant.
    fn take_rx_requests(&mut self) -> bool {
        let mut moved = false;
        loop {
            let Some(c) = self.conn.as_mut() else {
                return moved;
            };
            let Some(req) = c.rx.take_request(&c.rx_map) else {
                // Idle: ask to be notified of the next request (netback's
                // RING_FINAL_CHECK_FOR_REQUESTS), unless one raced in.
                if c.rx.final_check_for_requests(&c.rx_map) {
                    continue;
                }
                return moved;
            };
            moved = true;
            self.stats.rx_requests += 1;
            let gref = req.0.gref;
            let mapped = self.with_grant(gref, Access::ReadWrite, |_, frame| frame);
            let epoch = self.grants.with_mem(|m| m.epoch());
            let latest = self.grants.with_mem(|m| m.latest_publish(gref));
            let rings = self.ring_frames();
            let failure = match mapped {
                Err(e) => Some(AuditError::Map(e)),
                Ok(_) if latest.is_none_or(|(ep, _)| ep != epoch) => Some(AuditError::OldEpoch),
                Ok(frame) if rings.contains(&Some(frame)) => Some(AuditError::RingPage),
                Ok(frame) => self
                    .rx_pending
                    .iter()
                    .any(|p| p.frame == Some(frame) || p.req.0.gref == gref)
                    .then_some(AuditError::Duplicate),
            };
            if let Some(f) = failure {
                self.stats.bad_rx_grefs += 1;
                self.audit.push((gref, f));
            }
            self.rx_pending.push_back(Posted {
                req,
                frame: mapped.ok(),
            });
        }
    }

    /// Delivers queued packets while enough requests are posted.
    fn deliver_rx(&mut self) -> bool {
        let mut moved = false;
        while let Some(pkt) = self.rx_queue.front() {
            let chunk = pkt
                .chunk
                .clamp(1, PAGE_SIZE - usize::from(pkt.offset).min(PAGE_SIZE - 1));
            let data_slots = pkt.data.len().div_ceil(chunk).max(1);
            let extra_slots = match self.rx_corrupt {
                Some(RxCorruption::EndlessExtras(n)) => usize::from(n),
                Some(RxCorruption::ExtraType(_)) => 1,
                _ => pkt.extras.len(),
            };
            if data_slots + extra_slots > xen_abi::netif::NET_RX_RING_SIZE {
                // Could never be delivered; netback would drop it too.
                self.rx_queue.pop_front();
                continue;
            }
            if self.rx_pending.len() < data_slots + extra_slots {
                break;
            }
            let Some(pkt) = self.rx_queue.pop_front() else {
                break;
            };
            self.deliver(&pkt, chunk, data_slots);
            moved = true;
        }
        if moved
            && let Some(c) = self.conn.as_mut()
            && c.rx.push_responses_and_check_notify(&c.rx_map)
        {
            self.evt.notify_guest();
        }
        moved
    }

    fn deliver(&mut self, pkt: &SimRxPacket, chunk: usize, data_slots: usize) {
        let corrupt = self.rx_corrupt.take();
        let mut extras = pkt.extras.clone();
        match corrupt {
            Some(RxCorruption::ExtraType(t)) => {
                extras = vec![NetifExtraInfo {
                    kind: t,
                    flags: 0,
                    u: [0; 6],
                }]
            }
            Some(RxCorruption::EndlessExtras(n)) => {
                extras = (0..n)
                    .map(|_| NetifExtraInfo {
                        kind: XEN_NETIF_EXTRA_TYPE_HASH,
                        flags: XEN_NETIF_EXTRA_FLAG_MORE,
                        u: [0; 6],
                    })
                    .collect();
            }
            _ => {
                // Chain the given extras: MORE on all but the last.
                let n = extras.len();
                for (i, e) in extras.iter_mut().enumerate() {
                    if i + 1 < n {
                        e.flags |= XEN_NETIF_EXTRA_FLAG_MORE;
                    } else {
                        e.flags &= !XEN_NETIF_EXTRA_FLAG_MORE;
                    }
                }
            }
        }
        for i in 0..data_slots {
            let Some(posted) = self.rx_pending.pop_front() else {
                return;
            };
            let start = i * chunk;
            let end = (start + chunk).min(pkt.data.len());
            let part = pkt.data.get(start..end).unwrap_or(&[]);
            let offset = if i == 0 { pkt.offset } else { 0 };
            let id = posted.req.0.id;
            let status = match self.with_grant(posted.req.0.gref, Access::ReadWrite, |mem, f| {
                mem.write(f, usize::from(offset), part)
            }) {
                Ok(()) => part.len() as i16,
                Err(_) => NETIF_RSP_ERROR,
            };
            let mut flags = if i == 0 { pkt.flags } else { 0 };
            if i == 0 && !extras.is_empty() {
                flags |= NETRXF_EXTRA_INFO;
            }
            if i + 1 < data_slots {
                flags |= NETRXF_MORE_DATA;
            }
            let mut rsp = NetifRxResponse {
                id,
                offset,
                flags,
                status,
            };
            if i == 0 {
                match corrupt {
                    Some(RxCorruption::StaleId) => {
                        rsp.id = self.last_rx_id.unwrap_or(id.wrapping_add(1));
                    }
                    Some(RxCorruption::Id(x)) => rsp.id = x,
                    Some(RxCorruption::Status(s)) => rsp.status = s,
                    Some(RxCorruption::Offset(o)) => rsp.offset = o,
                    _ => {}
                }
            }
            if i + 1 == data_slots && corrupt == Some(RxCorruption::DanglingMoreData) {
                rsp.flags |= NETRXF_MORE_DATA;
            }
            self.last_rx_id = Some(id);
            self.stats.rx_slots += 1;
            if let Some(c) = self.conn.as_mut() {
                c.rx.produce_response(&c.rx_map, &RxRsp::from_response(&rsp));
            }
            if i == 0 {
                for e in &extras {
                    // An extra-info slot consumes a request too.
                    let _ = self.rx_pending.pop_front();
                    self.stats.rx_slots += 1;
                    if let Some(c) = self.conn.as_mut() {
                        c.rx.produce_response(&c.rx_map, &RxRsp::from_extra(e));
                    }
                }
            }
        }
        self.stats.rx_packets += 1;
    }
}

// --- test data ----------------------------------------------------------------------

/// A test frame of `len` (at least 14) bytes: byte `i` is `i * step + seed`
/// (mod 256), but the EtherType is 0x88b5 (local experimental).
pub fn test_frame(len: usize, step: u8, seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(step).wrapping_add(seed))
        .collect();
    f[12] = 0x88;
    f[13] = 0xb5;
    f
}

/// A driver configuration with `rx` rx buffers refilled `batch` at a time
/// and `tx` tx buffers; the rest default.
pub fn buffer_config(rx: u16, tx: u16, batch: u16) -> Config {
    Config {
        rx_buffers: rx,
        tx_buffers: tx,
        rx_refill_batch: batch,
        ..Config::default()
    }
}

// --- the whole world ------------------------------------------------------------------

/// The driver type the simulation plugs into.
pub type SimNetFront = NetFront<SimPages, SimGrants, SimEvtchn>;

xen_frontend::sim_world! {
    /// A guest (xenstore client, memory, pages, grant table, event channels)
    /// and a [`SimNetback`], all wired to one `SimXenstored`.
    pub struct SimWorld(SimNetback, SimNetConfig, grant_frames = 4);
}

impl SimWorld {
    /// Probes the vif with the driver.
    pub fn probe(&mut self, config: Config) -> Result<SimNetFront, ProbeError> {
        let devid = self.back.cfg.devid;
        self.guest.probe_with(|xs, pages, grants, evt| {
            NetFront::new(xs, devid, pages, grants, evt, config)
        })
    }

    /// Alternates back-end steps and `on_backend_state` until nothing
    /// changes (at most 64 rounds); returns the driver errors seen.
    pub fn pump(&mut self, nf: &mut SimNetFront) -> Vec<NetError> {
        let mut errors = Vec::new();
        for _ in 0..64 {
            let moved = self.back.step();
            let phase = nf.phase();
            if let Err(e) = nf.on_backend_state(&mut self.xs) {
                errors.push(e);
            }
            if !moved && phase == nf.phase() && !self.back.step() {
                break;
            }
        }
        errors
    }

    /// Probes, starts and pumps until connected.
    pub fn connect(&mut self, config: Config) -> SimNetFront {
        let mut nf = match self.probe(config) {
            Ok(nf) => nf,
            Err(e) => panic!("probe failed: {e:?}"),
        };
        if let Err(e) = nf.start(&mut self.xs) {
            panic!("start failed: {e:?}");
        }
        let errors = self.pump(&mut nf);
        assert!(errors.is_empty(), "errors while connecting: {errors:?}");
        assert!(nf.is_up(), "not connected: {:?}", nf.phase());
        nf
    }

    /// Receives every packet the back end can deliver now (servicing it in
    /// between); returns the frames and the packet errors.
    pub fn receive_all(&mut self, nf: &mut SimNetFront) -> (Vec<Vec<u8>>, Vec<NetError>) {
        let mut frames = Vec::new();
        let mut errors = Vec::new();
        let mut idle = 0;
        while idle < 2 {
            let moved = self.back.service();
            match nf.receive(|f| f.to_vec()) {
                Ok(Some(f)) => {
                    frames.push(f);
                    idle = 0;
                }
                Ok(None) => {
                    if moved {
                        idle = 0;
                    } else {
                        idle += 1;
                    }
                }
                Err(e @ NetError::Rx(_)) => {
                    errors.push(e);
                    idle = 0;
                }
                Err(e) => {
                    errors.push(e);
                    break;
                }
            }
        }
        (frames, errors)
    }
}

/// The peer's NIC for host tests that run smoltcp on the other end of the
/// simulated netback: frames the test hands to the peer (`rx`) and frames
/// the peer's stack sent (`tx`).
#[cfg(feature = "smoltcp")]
#[derive(Default)]
pub struct PeerWire {
    /// Frames for the peer's stack to receive.
    pub rx: VecDeque<Vec<u8>>,
    /// Frames the peer's stack sent.
    pub tx: Vec<Vec<u8>>,
}

/// A frame for the peer ([`PeerWire`]).
#[cfg(feature = "smoltcp")]
pub struct PeerRx(Vec<u8>);

/// Room for a frame from the peer ([`PeerWire`]).
#[cfg(feature = "smoltcp")]
pub struct PeerTx<'a>(&'a mut Vec<Vec<u8>>);

#[cfg(feature = "smoltcp")]
impl smoltcp::phy::RxToken for PeerRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

#[cfg(feature = "smoltcp")]
impl smoltcp::phy::TxToken for PeerTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = vec![0; len];
        let r = f(&mut b);
        self.0.push(b);
        r
    }
}

/// The peer's address on the [`PeerWire`] (the guest side of host tests uses
/// another address of 10.0.0.0/24).
#[cfg(feature = "smoltcp")]
pub const PEER_IP: [u8; 4] = [10, 0, 0, 1];

#[cfg(feature = "smoltcp")]
impl PeerWire {
    /// The peer's smoltcp interface on this wire: MAC 02:00:00:00:00:01,
    /// [`PEER_IP`]/24.
    pub fn interface(&mut self) -> smoltcp::iface::Interface {
        use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
        let mut iface = smoltcp::iface::Interface::new(
            smoltcp::iface::Config::new(HardwareAddress::Ethernet(EthernetAddress([
                0x02, 0, 0, 0, 0, 1,
            ]))),
            self,
            smoltcp::time::Instant::ZERO,
        );
        let [a, b, c, d] = PEER_IP;
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::v4(a, b, c, d), 24));
        });
        iface
    }
}

#[cfg(feature = "smoltcp")]
impl smoltcp::phy::Device for PeerWire {
    type RxToken<'a> = PeerRx;
    type TxToken<'a> = PeerTx<'a>;
    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(PeerRx, PeerTx<'_>)> {
        let f = self.rx.pop_front()?;
        Some((PeerRx(f), PeerTx(&mut self.tx)))
    }
    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<PeerTx<'_>> {
        Some(PeerTx(&mut self.tx))
    }
    fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
        let mut c = smoltcp::phy::DeviceCapabilities::default();
        c.medium = smoltcp::phy::Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}
