//! The simulated blkback on its own, driven by a tiny hand-written front end (no blkfront driver involved).

use blkfront::sim::{
    AuditError, BlkReqWire, BlkRspWire, InFlightOnDisconnect, RspCorruption, SimBlkConfig,
    SimBlkError, SimBlkWorld, SimPage, SimRingPages, blk_ring_layout,
};
use grant_table::sim::SimError;
use grant_table::{Access, DomId, Grant, GrantTableMemory};
use xen_abi::PAGE_SIZE;
use xen_abi::blkif::{
    BLKIF_DISCARD_SECURE, BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT,
    BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR,
    BLKIF_RSP_OKAY, BlkifRequest, BlkifRequestDiscard, BlkifRequestIndirect, BlkifRequestSegment,
    BlkifResponse,
};
use xen_abi::event_channel::EvtchnPort;
use xen_abi::grant_table::GTF_PERMIT_ACCESS;
use xen_frontend::{EventChannel, PageProvider};
use xen_ring::{FrontRing, RingError};
use xenbus::XenbusState;

const BACKEND: DomId = 0;

fn grant(w: &mut SimBlkWorld, domid: DomId, access: Access) -> Grant<SimPage> {
    let page = w.pages.alloc_page().expect("page");
    match w.grants.with_table(|t| t.grant_access(domid, page, access)) {
        Ok(g) => g,
        Err((_, e)) => panic!("grant: {e}"),
    }
}

fn gfn(g: &Grant<SimPage>) -> u64 {
    g.buffer().gfn_of()
}

fn seg(g: &Grant<SimPage>, first: u8, last: u8) -> BlkifRequestSegment {
    BlkifRequestSegment {
        gref: g.gref(),
        first_sect: first,
        last_sect: last,
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn rw(op: u8, id: u64, sector: u64, segs: &[BlkifRequestSegment]) -> BlkReqWire {
    let mut r = BlkifRequest {
        operation: op,
        nr_segments: segs.len() as u8,
        handle: 0,
        id,
        sector_number: sector,
        ..BlkifRequest::default()
    };
    r.seg[..segs.len()].copy_from_slice(segs);
    r.to_bytes()
}

fn slot(head: &[u8]) -> BlkReqWire {
    let mut b = [0u8; 112];
    b[..head.len()].copy_from_slice(head);
    b
}

/// The minimal front end: a ring over granted pages, an event channel, nodes
/// written straight into xenstored.
struct Front {
    ring_grants: Vec<Grant<SimPage>>,
    area: SimRingPages,
    ring: FrontRing<BlkReqWire, BlkRspWire>,
    port: EvtchnPort,
}

impl Front {
    /// Sets a ring of `2^order` pages up for a back end in `domid` and
    /// publishes it (`ring-ref` for order 0 unless `ref0`), its
    /// `event-channel` and, if `persistent` is given, `protocol` and
    /// `feature-persistent`; then Initialised.
    fn publish_to(
        w: &mut SimBlkWorld,
        domid: DomId,
        order: u32,
        ref0: bool,
        persistent: Option<bool>,
    ) -> Front {
        let ring_grants: Vec<_> = (0..1 << order)
            .map(|_| grant(w, domid, Access::ReadWrite))
            .collect();
        let gfns: Vec<u64> = ring_grants.iter().map(gfn).collect();
        let area = SimRingPages::new(&w.mem, &gfns);
        let ring = FrontRing::init(blk_ring_layout(order).expect("layout"), &area).expect("init");
        let port = w.evt.alloc_unbound(domid).expect("port");
        let fd = w.back.frontend_dir().to_string();
        let refs: Vec<u32> = ring_grants.iter().map(Grant::gref).collect();
        w.xs_ring.with_sim(|s| {
            if order == 0 && !ref0 {
                s.write(&format!("{fd}/ring-ref"), refs[0].to_string().as_bytes());
            } else {
                for (i, r) in refs.iter().enumerate() {
                    s.write(&format!("{fd}/ring-ref{i}"), r.to_string().as_bytes());
                }
            }
            if order > 0 {
                s.write(
                    &format!("{fd}/ring-page-order"),
                    order.to_string().as_bytes(),
                );
            }
            s.write(&format!("{fd}/event-channel"), port.to_string().as_bytes());
            if let Some(persistent) = persistent {
                s.write(&format!("{fd}/protocol"), b"x86_64-abi");
                s.write(
                    &format!("{fd}/feature-persistent"),
                    if persistent { b"1" } else { b"0" },
                );
            }
        });
        set_front_state(w, XenbusState::Initialised);
        Front {
            ring_grants,
            area,
            ring,
            port,
        }
    }

    /// [`Front::publish_to`] the default back end, with `protocol` and
    /// `persistent` as `feature-persistent`.
    fn publish(w: &mut SimBlkWorld, order: u32, ref0: bool, persistent: bool) -> Front {
        Self::publish_to(w, BACKEND, order, ref0, Some(persistent))
    }

    /// Publishes, and the back end connects.
    fn connect(w: &mut SimBlkWorld, order: u32, persistent: bool) -> Front {
        let f = Self::publish(w, order, false, persistent);
        settle_connected(w);
        set_front_state(w, XenbusState::Connected);
        w.settle();
        f
    }

    /// A ring of `ring-ref<i>` nodes only, for a back end in `domid`, which connects.
    fn connect_for(w: &mut SimBlkWorld, order: u32, domid: DomId) -> Front {
        let f = Self::publish_to(w, domid, order, true, None);
        settle_connected(w);
        f
    }

    fn post(&mut self, w: &mut SimBlkWorld, req: BlkReqWire) {
        self.ring.produce(&self.area, &req).expect("produce");
        if self
            .ring
            .push_requests_and_check_notify(&self.area)
            .expect("push")
        {
            w.evt.notify(self.port);
        }
    }

    fn responses(&mut self) -> Result<Vec<BlkifResponse>, RingError> {
        let mut out = Vec::new();
        while let Some(r) = self.ring.next_response(&self.area)? {
            out.push(BlkifResponse::from_bytes(&r));
        }
        Ok(out)
    }

    /// Posts one request, lets the back end run, returns the responses.
    fn call(&mut self, w: &mut SimBlkWorld, req: BlkReqWire) -> Vec<BlkifResponse> {
        self.post(w, req);
        w.settle();
        self.responses().expect("ring")
    }

    fn call_one(&mut self, w: &mut SimBlkWorld, req: BlkReqWire) -> BlkifResponse {
        let r = self.call(w, req);
        assert_eq!(r.len(), 1, "{r:?}");
        r[0]
    }
}

/// A default back end connected to a ring of `2^order` pages (`persistent`:
/// the front end's `feature-persistent`), and a page granted to it.
fn connected(order: u32, persistent: bool, access: Access) -> (SimBlkWorld, Front, Grant<SimPage>) {
    let mut w = SimBlkWorld::new(SimBlkConfig::default());
    let f = Front::connect(&mut w, order, persistent);
    let p = grant(&mut w, BACKEND, access);
    (w, f, p)
}

/// Ends every grant of `grants`: none may still be mapped.
fn end_all(w: &SimBlkWorld, grants: impl IntoIterator<Item = Grant<SimPage>>) {
    for g in grants {
        assert!(end(w, g).is_ok());
    }
}

/// A one-page ring with a one-sector READ (id 1) into the page taken and
/// held by the back end.
fn held_read() -> (SimBlkWorld, Front, Grant<SimPage>) {
    let (mut w, mut f, p) = connected(0, false, Access::ReadWrite);
    w.back.hold(true);
    f.post(&mut w, rw(BLKIF_OP_READ, 1, 0, &[seg(&p, 0, 0)]));
    w.settle();
    (w, f, p)
}

/// Lets the back end run; it must be Connected.
fn settle_connected(w: &mut SimBlkWorld) {
    w.settle();
    assert_eq!(
        w.back.state(),
        XenbusState::Connected,
        "{:?}",
        w.back.stats().connect_error
    );
}

fn set_front_state(w: &mut SimBlkWorld, s: XenbusState) {
    let p = format!("{}/state", w.back.frontend_dir());
    w.xs_ring.with_sim(|x| x.write(&p, s.as_str().as_bytes()));
}

fn ok(id: u64, op: u8) -> BlkifResponse {
    BlkifResponse {
        id,
        operation: op,
        status: BLKIF_RSP_OKAY,
    }
}

fn status(id: u64, op: u8, status: i16) -> BlkifResponse {
    BlkifResponse {
        id,
        operation: op,
        status,
    }
}

fn end(w: &SimBlkWorld, g: Grant<SimPage>) -> Result<SimPage, Grant<SimPage>> {
    w.grants.with_table(|t| t.end_access(g)).map_err(|(g, _)| g)
}

// --- toolstack, probe, connect ------------------------------------------------------------

#[test]
fn toolstack_and_probe_write_what_linux_does() {
    let w = SimBlkWorld::new(SimBlkConfig::default());
    assert_eq!(w.back.state(), XenbusState::InitWait);
    assert_eq!(w.front_node("state").as_deref(), Some(&b"1"[..]));
    assert_eq!(
        w.front_node("backend").as_deref(),
        Some(&b"/local/domain/0/backend/vbd/7/51712"[..])
    );
    assert_eq!(w.front_node("backend-id").as_deref(), Some(&b"0"[..]));
    assert_eq!(
        w.front_node("virtual-device").as_deref(),
        Some(&b"51712"[..])
    );
    assert_eq!(w.front_node("device-type").as_deref(), Some(&b"disk"[..]));
    assert_eq!(w.back_node("frontend-id").as_deref(), Some(&b"7"[..]));
    assert_eq!(w.back_node("state").as_deref(), Some(&b"2"[..]));
    assert_eq!(
        w.back_node("feature-max-indirect-segments").as_deref(),
        Some(&b"256"[..])
    );
    assert_eq!(
        w.back_node("max-ring-page-order").as_deref(),
        Some(&b"4"[..])
    );
    assert_eq!(
        w.back_node("multi-queue-max-queues").as_deref(),
        Some(&b"1"[..])
    );
    // Connect-time nodes are not there yet.
    assert_eq!(w.back_node("sectors"), None);
    assert_eq!(w.disk().len(), 2048 * 512);

    let w = SimBlkWorld::new(SimBlkConfig::minimal());
    for leaf in [
        "feature-max-indirect-segments",
        "max-ring-page-order",
        "multi-queue-max-queues",
    ] {
        assert_eq!(w.back_node(leaf), None, "{leaf}");
    }
}

#[test]
fn connect_writes_the_disk_and_features() {
    let mut w = SimBlkWorld::new(SimBlkConfig {
        read_only: true,
        removable: true,
        sectors: 4096,
        discard_secure: true,
        ..SimBlkConfig::default()
    });
    let _f = Front::connect(&mut w, 0, true);
    let node = |leaf: &str| w.back_node(leaf);
    assert_eq!(node("sectors").as_deref(), Some(&b"4096"[..]));
    assert_eq!(node("info").as_deref(), Some(&b"6"[..]));
    assert_eq!(node("sector-size").as_deref(), Some(&b"512"[..]));
    assert_eq!(node("physical-sector-size").as_deref(), Some(&b"4096"[..]));
    assert_eq!(node("feature-flush-cache").as_deref(), Some(&b"1"[..]));
    assert_eq!(node("feature-barrier").as_deref(), Some(&b"1"[..]));
    assert_eq!(node("feature-discard").as_deref(), Some(&b"1"[..]));
    assert_eq!(node("discard-granularity").as_deref(), Some(&b"4096"[..]));
    assert_eq!(node("discard-alignment").as_deref(), Some(&b"0"[..]));
    assert_eq!(node("discard-secure").as_deref(), Some(&b"1"[..]));
    assert_eq!(node("feature-persistent").as_deref(), Some(&b"1"[..]));
    assert_eq!(w.back.ring_order(), Some(0));
    assert!(w.back.persistent_in_use());
    assert_eq!(w.back.stats().connects, 1);

    let mut w = SimBlkWorld::new(SimBlkConfig::minimal());
    let _f = Front::connect(&mut w, 0, true);
    assert_eq!(
        w.back_node("feature-flush-cache").as_deref(),
        Some(&b"0"[..])
    );
    assert_eq!(w.back_node("feature-barrier").as_deref(), Some(&b"0"[..]));
    assert_eq!(
        w.back_node("feature-persistent").as_deref(),
        Some(&b"0"[..])
    );
    assert_eq!(w.back_node("feature-discard"), None);
    assert_eq!(w.back_node("discard-granularity"), None);
    assert!(!w.back.persistent_in_use(), "persistent needs both ends");
}

#[test]
fn ring_ref0_is_accepted_for_one_page() {
    let mut w = SimBlkWorld::new(SimBlkConfig::default());
    let f = Front::publish(&mut w, 0, true, false);
    w.settle();
    assert_eq!(w.back.state(), XenbusState::Connected);
    assert_eq!(w.back.ring_refs(), vec![f.ring_grants[0].gref()]);
}

#[test]
fn bad_front_nodes_are_fatal() {
    type Poke = fn(&mut SimBlkWorld, &str);
    let cases: [(Poke, SimBlkError); 6] = [
        (
            |w, fd| {
                w.xs_ring
                    .with_sim(|s| s.write(&format!("{fd}/protocol"), b"x86_32-abi"))
            },
            SimBlkError::Protocol,
        ),
        (
            |w, fd| w.xs_ring.with_sim(|s| s.rm(&format!("{fd}/event-channel"))),
            SimBlkError::BadNode("event-channel"),
        ),
        (
            |w, fd| {
                w.xs_ring
                    .with_sim(|s| s.write(&format!("{fd}/ring-ref"), b"12x"))
            },
            SimBlkError::BadNode("ring-ref"),
        ),
        (
            |w, fd| {
                w.xs_ring
                    .with_sim(|s| s.write(&format!("{fd}/ring-page-order"), b"5"))
            },
            SimBlkError::RingOrder(5),
        ),
        (
            |w, fd| {
                w.xs_ring
                    .with_sim(|s| s.write(&format!("{fd}/event-channel"), b"99"))
            },
            SimBlkError::BadPort(99),
        ),
        (
            |w, fd| {
                w.xs_ring
                    .with_sim(|s| s.write(&format!("{fd}/multi-queue-num-queues"), b"2"))
            },
            SimBlkError::Queues(2),
        ),
    ];
    for (poke, want) in cases {
        let mut w = SimBlkWorld::new(SimBlkConfig::default());
        let fd = w.back.frontend_dir().to_string();
        let f = Front::publish(&mut w, 0, false, false);
        set_front_state(&mut w, XenbusState::Initialising);
        w.settle();
        poke(&mut w, &fd);
        set_front_state(&mut w, XenbusState::Initialised);
        w.settle();
        assert_eq!(w.back.state(), XenbusState::Closing, "{want:?}");
        assert_eq!(w.back.stats().connect_error, Some(want));
        let err = w
            .xs_ring
            .with_sim(|s| s.read("/local/domain/0/error/backend/vbd/7/51712/error"));
        assert!(err.is_some_and(|e| !e.is_empty()), "{want:?}: error node");
        // Nothing stays mapped: the ring page can be taken back.
        for g in f.ring_grants {
            assert!(end(&w, g).is_ok(), "{want:?}: ring still mapped");
        }
    }
}

#[test]
fn a_ring_ref_that_is_not_granted_is_fatal() {
    let mut w = SimBlkWorld::new(SimBlkConfig::default());
    let fd = w.back.frontend_dir().to_string();
    let _f = Front::publish(&mut w, 0, false, false);
    set_front_state(&mut w, XenbusState::Initialising);
    w.settle();
    w.xs_ring
        .with_sim(|s| s.write(&format!("{fd}/ring-ref"), b"300"));
    set_front_state(&mut w, XenbusState::Initialised);
    w.settle();
    assert_eq!(
        w.back.stats().connect_error,
        Some(SimBlkError::Map(SimError::NotGranted))
    );
}

#[test]
fn a_ring_order_above_the_advertised_maximum_is_fatal() {
    let mut w = SimBlkWorld::new(SimBlkConfig {
        max_ring_page_order: Some(1),
        ..SimBlkConfig::default()
    });
    let _f = Front::publish(&mut w, 2, false, false);
    w.settle();
    assert_eq!(
        w.back.stats().connect_error,
        Some(SimBlkError::RingOrder(2))
    );
    let mut w = SimBlkWorld::new(SimBlkConfig::minimal());
    let _f = Front::publish(&mut w, 1, false, false);
    w.settle();
    assert_eq!(
        w.back.stats().connect_error,
        Some(SimBlkError::RingOrder(1))
    );
}

// --- data path --------------------------------------------------------------------------

#[test]
fn write_then_read_with_direct_segments_on_a_one_page_ring() {
    let (mut w, mut f, a) = connected(0, false, Access::ReadOnly);
    let b = grant(&mut w, BACKEND, Access::ReadOnly);
    let data_a = pattern(PAGE_SIZE, 1);
    let data_b = pattern(PAGE_SIZE, 2);
    w.mem.write(gfn(&a), 0, &data_a);
    w.mem.write(gfn(&b), 0, &data_b);
    // Sectors 10..18 from all of a, then 18..20 from b's sectors 2 and 3.
    let r = f.call_one(
        &mut w,
        rw(BLKIF_OP_WRITE, 77, 10, &[seg(&a, 0, 7), seg(&b, 2, 3)]),
    );
    assert_eq!(r, ok(77, BLKIF_OP_WRITE));
    assert_eq!(&w.disk()[10 * 512..18 * 512], &data_a[..]);
    assert_eq!(&w.disk()[18 * 512..20 * 512], &data_b[1024..2048]);
    assert!(w.disk()[..10 * 512].iter().all(|x| *x == 0));
    assert!(w.disk()[20 * 512..].iter().all(|x| *x == 0));

    // Read them back into a writable page at sectors 4..7 and 0..5 of another.
    let c = grant(&mut w, BACKEND, Access::ReadWrite);
    let r = f.call_one(&mut w, rw(BLKIF_OP_READ, 78, 16, &[seg(&c, 4, 7)]));
    assert_eq!(r, ok(78, BLKIF_OP_READ));
    assert_eq!(
        &w.mem.page(gfn(&c))[2048..4096],
        &w.disk()[16 * 512..20 * 512]
    );

    let s = w.back.stats();
    assert_eq!((s.reads, s.writes, s.segments), (1, 1, 3));
    assert_eq!((s.bytes_written, s.bytes_read), (5 * 1024, 2048));
    assert_eq!(w.back.audit_failures(), &[]);
    // Not persistent: nothing stays mapped after the answers.
    end_all(&w, [a, b, c]);
    assert!(w.evt.to_guest() > 0, "the back end notified the guest");
}

#[test]
fn multi_page_rings_of_order_0_and_2_carry_many_requests() {
    for order in [0u32, 2] {
        let mut w = SimBlkWorld::new(SimBlkConfig::default());
        let mut f = Front::connect(&mut w, order, false);
        assert_eq!(w.back.ring_order(), Some(order));
        assert_eq!(f.ring.size(), if order == 0 { 32 } else { 128 });
        let page = grant(&mut w, BACKEND, Access::ReadOnly);
        // 300 one-sector writes, posted in batches that fill the ring, so
        // entries cross page boundaries (entry 72 of an order-2 ring spans
        // pages 1 and 2) and indices wrap the ring several times.
        let mut next = 0u64;
        while next < 300 {
            let batch = u64::from(f.ring.free_requests()).min(300 - next);
            for i in next..next + batch {
                w.mem.write(gfn(&page), 0, &[i as u8; 512]);
                // The page is read when the request is answered: answer each.
                f.post(&mut w, rw(BLKIF_OP_WRITE, 1000 + i, i, &[seg(&page, 0, 0)]));
            }
            w.settle();
            let rsps = f.responses().expect("ring");
            assert_eq!(rsps.len() as u64, batch);
            for (k, r) in rsps.iter().enumerate() {
                assert_eq!(*r, ok(1000 + next + k as u64, BLKIF_OP_WRITE));
            }
            next += batch;
        }
        assert_eq!(w.back.stats().writes, 300);
        // Each sector holds the last byte written before the back end ran.
        assert!(
            w.disk()[299 * 512..300 * 512].iter().all(|x| *x == 43),
            "order {order}"
        );
    }
}

#[test]
fn requests_spanning_page_boundaries_of_the_ring_are_read_whole() {
    let (mut w, mut f, page) = connected(2, false, Access::ReadOnly);
    w.mem.write(gfn(&page), 0, &pattern(PAGE_SIZE, 9));
    // Advance to entry 72 (bytes 8128..8240 of the ring area).
    for i in 0..72 {
        f.call_one(&mut w, rw(BLKIF_OP_WRITE, i, 0, &[seg(&page, 0, 0)]));
    }
    // A request whose 11 segments lie in the part past the page boundary.
    let segs: Vec<_> = (0..8).map(|s| seg(&page, s, s)).collect();
    let r = f.call_one(
        &mut w,
        rw(BLKIF_OP_WRITE, 0xdead_beef_0000_0001, 100, &segs),
    );
    assert_eq!(r, ok(0xdead_beef_0000_0001, BLKIF_OP_WRITE));
    assert_eq!(&w.disk()[100 * 512..108 * 512], &pattern(PAGE_SIZE, 9)[..]);
}

#[test]
fn indirect_requests_up_to_the_advertised_maximum() {
    let mut w = SimBlkWorld::new(SimBlkConfig::default());
    let mut f = Front::connect(&mut w, 1, false);
    // 40 one-page segments (more than 11) described in one indirect page.
    let pages: Vec<_> = (0..40)
        .map(|_| grant(&mut w, BACKEND, Access::ReadWrite))
        .collect();
    for (i, p) in pages.iter().enumerate() {
        w.mem.write(gfn(p), 0, &pattern(PAGE_SIZE, i as u8));
    }
    let ind_page = grant(&mut w, BACKEND, Access::ReadOnly);
    for (i, p) in pages.iter().enumerate() {
        w.mem.write(gfn(&ind_page), i * 8, &seg(p, 0, 7).to_bytes());
    }
    let mut req = BlkifRequestIndirect {
        operation: BLKIF_OP_INDIRECT,
        indirect_op: BLKIF_OP_WRITE,
        nr_segments: 40,
        id: 5,
        sector_number: 8,
        handle: 0,
        ..BlkifRequestIndirect::default()
    };
    req.indirect_grefs[0] = ind_page.gref();
    let r = f.call_one(&mut w, slot(&req.to_bytes()));
    // Linux echoes the indirect_op, not BLKIF_OP_INDIRECT.
    assert_eq!(r, ok(5, BLKIF_OP_WRITE));
    for i in 0..40 {
        let at = (8 + i * 8) * 512;
        assert_eq!(
            &w.disk()[at..at + PAGE_SIZE],
            &pattern(PAGE_SIZE, i as u8)[..],
            "page {i}"
        );
    }
    // Read it back into zeroed pages.
    for p in &pages {
        w.mem.fill(gfn(p), 0);
    }
    req.indirect_op = BLKIF_OP_READ;
    req.id = 6;
    assert_eq!(
        f.call_one(&mut w, slot(&req.to_bytes())),
        ok(6, BLKIF_OP_READ)
    );
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(w.mem.page(gfn(p)), pattern(PAGE_SIZE, i as u8), "page {i}");
    }
    let s = w.back.stats();
    assert_eq!((s.indirect, s.reads, s.writes, s.segments), (2, 1, 1, 80));
    assert_eq!(w.back.audit_failures(), &[]);

    // Past the maximum, and a bad indirect_op: errors.
    req.nr_segments = 257;
    req.id = 7;
    assert_eq!(
        f.call_one(&mut w, slot(&req.to_bytes())),
        status(7, BLKIF_OP_READ, BLKIF_RSP_ERROR)
    );
    assert_eq!(
        w.back.audit_failures().last().map(|a| a.error),
        Some(AuditError::Unadvertised(BLKIF_OP_INDIRECT))
    );
    req.nr_segments = 1;
    req.indirect_op = BLKIF_OP_FLUSH_DISKCACHE;
    req.id = 8;
    assert_eq!(
        f.call_one(&mut w, slot(&req.to_bytes())),
        status(8, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_RSP_ERROR)
    );

    // A back end without indirect segments refuses any.
    let mut w = SimBlkWorld::new(SimBlkConfig::minimal());
    let mut f = Front::connect(&mut w, 0, false);
    let ind_page = grant(&mut w, BACKEND, Access::ReadOnly);
    let mut req = BlkifRequestIndirect {
        operation: BLKIF_OP_INDIRECT,
        indirect_op: BLKIF_OP_READ,
        nr_segments: 12,
        id: 9,
        ..BlkifRequestIndirect::default()
    };
    req.indirect_grefs[0] = ind_page.gref();
    assert_eq!(
        f.call_one(&mut w, slot(&req.to_bytes())),
        status(9, BLKIF_OP_READ, BLKIF_RSP_ERROR)
    );
    assert_eq!(
        w.back.audit_failures()[0].error,
        AuditError::Unadvertised(BLKIF_OP_INDIRECT)
    );
}

#[test]
fn flush_barrier_and_discard() {
    let mut w = SimBlkWorld::new(SimBlkConfig {
        discard_zeroes: false,
        ..SimBlkConfig::default()
    });
    let mut f = Front::connect(&mut w, 0, false);
    w.write_disk(0, &[0xab; 64 * 512]);
    let r = f.call_one(&mut w, rw(BLKIF_OP_FLUSH_DISKCACHE, 1, 0, &[]));
    assert_eq!(r, ok(1, BLKIF_OP_FLUSH_DISKCACHE));
    let r = f.call_one(&mut w, rw(BLKIF_OP_WRITE_BARRIER, 2, 0, &[]));
    assert_eq!(r, ok(2, BLKIF_OP_WRITE_BARRIER));
    // A barrier with data writes it.
    let p = grant(&mut w, BACKEND, Access::ReadOnly);
    w.mem.write(gfn(&p), 0, &[0x11; 512]);
    let r = f.call_one(&mut w, rw(BLKIF_OP_WRITE_BARRIER, 3, 40, &[seg(&p, 0, 0)]));
    assert_eq!(r, ok(3, BLKIF_OP_WRITE_BARRIER));
    assert!(w.disk()[40 * 512..41 * 512].iter().all(|x| *x == 0x11));
    let s = w.back.stats();
    assert_eq!((s.flush_requests, s.barriers, s.flushes), (1, 2, 3));

    let discard = |id, sector, n, flag| {
        slot(
            &BlkifRequestDiscard {
                operation: BLKIF_OP_DISCARD,
                flag,
                handle: 0,
                id,
                sector_number: sector,
                nr_sectors: n,
            }
            .to_bytes(),
        )
    };
    // discard_zeroes off: the data stays.
    assert_eq!(
        f.call_one(&mut w, discard(4, 0, 8, 0)),
        ok(4, BLKIF_OP_DISCARD)
    );
    assert!(w.disk()[..8 * 512].iter().all(|x| *x == 0xab));
    // Secure discard without discard-secure: not supported.
    assert_eq!(
        f.call_one(&mut w, discard(5, 0, 8, BLKIF_DISCARD_SECURE)),
        status(5, BLKIF_OP_DISCARD, BLKIF_RSP_EOPNOTSUPP)
    );
    // Out of range.
    assert_eq!(
        f.call_one(&mut w, discard(6, 2040, 9, 0)),
        status(6, BLKIF_OP_DISCARD, BLKIF_RSP_ERROR)
    );
    w.back.config_mut().discard_zeroes = true;
    assert_eq!(
        f.call_one(&mut w, discard(7, 8, 8, 0)),
        ok(7, BLKIF_OP_DISCARD)
    );
    assert!(w.disk()[8 * 512..16 * 512].iter().all(|x| *x == 0));
    assert!(w.disk()[16 * 512..17 * 512].iter().all(|x| *x == 0xab));
    assert_eq!(w.back.stats().discarded_sectors, 16);

    // A back end without the features: EOPNOTSUPP, and the audit notes the cheat.
    let mut w = SimBlkWorld::new(SimBlkConfig::minimal());
    let mut f = Front::connect(&mut w, 0, false);
    for (id, op) in [(1, BLKIF_OP_FLUSH_DISKCACHE), (2, BLKIF_OP_WRITE_BARRIER)] {
        assert_eq!(
            f.call_one(&mut w, rw(op, id, 0, &[])),
            status(id, op, BLKIF_RSP_EOPNOTSUPP)
        );
    }
    assert_eq!(
        f.call_one(&mut w, discard(3, 0, 8, 0)),
        status(3, BLKIF_OP_DISCARD, BLKIF_RSP_EOPNOTSUPP)
    );
    let errs: Vec<_> = w.back.audit_failures().iter().map(|a| a.error).collect();
    assert_eq!(
        errs,
        vec![
            AuditError::Unadvertised(BLKIF_OP_FLUSH_DISKCACHE),
            AuditError::Unadvertised(BLKIF_OP_WRITE_BARRIER),
            AuditError::Unadvertised(BLKIF_OP_DISCARD),
        ]
    );
    assert_eq!(w.back.stats().not_supported, 3);
}

#[test]
fn invalid_requests_get_errors_and_unknown_operations_eopnotsupp() {
    let (mut w, mut f, p) = connected(0, false, Access::ReadWrite);
    let bad_seg = BlkifRequestSegment {
        gref: p.gref(),
        first_sect: 5,
        last_sect: 4,
    };
    let past_page = BlkifRequestSegment {
        gref: p.gref(),
        first_sect: 0,
        last_sect: 8,
    };
    let cases = [
        (rw(BLKIF_OP_READ, 1, 0, &[]), BLKIF_OP_READ),
        (rw(BLKIF_OP_WRITE, 2, 0, &[bad_seg]), BLKIF_OP_WRITE),
        (rw(BLKIF_OP_READ, 3, 0, &[past_page]), BLKIF_OP_READ),
        (rw(BLKIF_OP_READ, 4, 2041, &[seg(&p, 0, 7)]), BLKIF_OP_READ),
        (
            rw(BLKIF_OP_READ, 5, u64::MAX - 2, &[seg(&p, 0, 7)]),
            BLKIF_OP_READ,
        ),
        (
            {
                let mut b = rw(BLKIF_OP_READ, 6, 0, &[seg(&p, 0, 0)]);
                b[1] = 12;
                b
            },
            BLKIF_OP_READ,
        ),
    ];
    for (req, op) in cases {
        let id = BlkifRequest::from_bytes(&req).id;
        assert_eq!(
            f.call_one(&mut w, req),
            status(id, op, BLKIF_RSP_ERROR),
            "request {id}"
        );
    }
    // The last sector of the disk is fine.
    assert_eq!(
        f.call_one(&mut w, rw(BLKIF_OP_READ, 7, 2047, &[seg(&p, 0, 0)])),
        ok(7, BLKIF_OP_READ)
    );
    let mut other = [0u8; 112];
    other[0] = 9;
    other[8] = 42;
    assert_eq!(
        f.call_one(&mut w, other),
        status(42, 9, BLKIF_RSP_EOPNOTSUPP)
    );
    assert_eq!(w.back.stats().unknown_ops, 1);
    assert_eq!(w.back.stats().errors, 6);
    assert_eq!(w.back.audit_failures(), &[]);
}

#[test]
fn a_read_only_disk_refuses_writes() {
    let mut w = SimBlkWorld::new(SimBlkConfig {
        read_only: true,
        ..SimBlkConfig::default()
    });
    let mut f = Front::connect(&mut w, 0, false);
    let p = grant(&mut w, BACKEND, Access::ReadWrite);
    assert_eq!(
        f.call_one(&mut w, rw(BLKIF_OP_WRITE, 1, 0, &[seg(&p, 0, 0)])),
        status(1, BLKIF_OP_WRITE, BLKIF_RSP_ERROR)
    );
    assert_eq!(
        f.call_one(&mut w, rw(BLKIF_OP_READ, 2, 0, &[seg(&p, 0, 0)])),
        ok(2, BLKIF_OP_READ)
    );
}

// --- audit --------------------------------------------------------------------------------

#[test]
fn the_audit_catches_bad_grants() {
    let mut w = SimBlkWorld::new(SimBlkConfig::default());
    let mut f = Front::connect(&mut w, 0, false);
    // A read into a read-only grant (the back end must write it).
    let ro = grant(&mut w, BACKEND, Access::ReadOnly);
    let r = f.call_one(&mut w, rw(BLKIF_OP_READ, 1, 0, &[seg(&ro, 0, 0)]));
    assert_eq!(r.status, BLKIF_RSP_ERROR);
    // A grant for another domain.
    let other = grant(&mut w, 5, Access::ReadWrite);
    let r = f.call_one(&mut w, rw(BLKIF_OP_WRITE, 2, 0, &[seg(&other, 0, 0)]));
    assert_eq!(r.status, BLKIF_RSP_ERROR);
    // A reference never granted.
    let r = f.call_one(
        &mut w,
        rw(
            BLKIF_OP_WRITE,
            3,
            0,
            &[BlkifRequestSegment {
                gref: 400,
                first_sect: 0,
                last_sect: 0,
            }],
        ),
    );
    assert_eq!(r.status, BLKIF_RSP_ERROR);
    // The ring page as a data page.
    let ring_ref = f.ring_grants[0].gref();
    let r = f.call_one(
        &mut w,
        rw(
            BLKIF_OP_WRITE,
            4,
            0,
            &[BlkifRequestSegment {
                gref: ring_ref,
                first_sect: 0,
                last_sect: 0,
            }],
        ),
    );
    assert_eq!(r.status, BLKIF_RSP_ERROR);
    // An entry valid in the table but not published in this epoch (written
    // behind the grant table's back).
    let ok_page = grant(&mut w, BACKEND, Access::ReadWrite);
    w.grants.with_mem(|m| {
        let frame = m.inner.entry(ok_page.gref()).expect("entry").frame;
        m.inner.publish(450, BACKEND, frame, GTF_PERMIT_ACCESS);
    });
    let r = f.call_one(
        &mut w,
        rw(
            BLKIF_OP_WRITE,
            5,
            0,
            &[BlkifRequestSegment {
                gref: 450,
                first_sect: 0,
                last_sect: 0,
            }],
        ),
    );
    assert_eq!(r.status, BLKIF_RSP_ERROR);
    let got: Vec<_> = w
        .back
        .audit_failures()
        .iter()
        .map(|a| (a.id, a.gref, a.error))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, Some(ro.gref()), AuditError::Map(SimError::ReadOnly)),
            (
                2,
                Some(other.gref()),
                AuditError::Map(SimError::WrongDomain)
            ),
            (3, Some(400), AuditError::Map(SimError::NotGranted)),
            (4, Some(ring_ref), AuditError::RingPage),
            (5, Some(450), AuditError::OldEpoch),
        ]
    );
    assert_eq!(w.back.stats().audit_failures, 5);
    // The ring page was not unmapped by mistake, and the others were released.
    assert!(end(&w, ok_page).is_ok());
    assert!(end(&w, ro).is_ok());
    let rg = f.ring_grants.remove(0);
    assert!(end(&w, rg).is_err(), "the ring is still mapped");
}

#[test]
fn the_audit_catches_a_stale_grant_after_a_restore() {
    let (mut w, mut f, p) = connected(0, false, Access::ReadWrite);
    let stale = seg(&p, 0, 0);
    assert_eq!(
        f.call_one(&mut w, rw(BLKIF_OP_READ, 1, 0, &[stale])).status,
        BLKIF_RSP_OKAY
    );
    w.write_disk(0, &[0x5a; 512]);

    w.new_domain(SimBlkConfig::default());
    assert_eq!(w.back.state(), XenbusState::InitWait);
    assert_eq!(w.front_node("state").as_deref(), Some(&b"1"[..]));
    assert_eq!(
        w.front_node("ring-ref"),
        None,
        "the toolstack re-created the directory"
    );
    let mut f = Front::connect(&mut w, 0, false);
    // A driver that re-posts with the old reference instead of granting afresh.
    let r = f.call_one(&mut w, rw(BLKIF_OP_READ, 2, 0, &[stale]));
    assert_eq!(r, status(2, BLKIF_OP_READ, BLKIF_RSP_ERROR));
    let a = w.back.audit_failures();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].gref, Some(stale.gref));
    // The old reference is either not granted any more or now names a ring page.
    assert!(matches!(
        a[0].error,
        AuditError::Map(SimError::NotGranted) | AuditError::RingPage
    ));
    // The same read through a fresh grant works, and the disk survived.
    let q = grant(&mut w, BACKEND, Access::ReadWrite);
    assert_eq!(
        f.call_one(&mut w, rw(BLKIF_OP_READ, 3, 0, &[seg(&q, 0, 0)]))
            .status,
        0
    );
    assert!(w.mem.page(gfn(&q))[..512].iter().all(|x| *x == 0x5a));
}

#[test]
fn two_outstanding_requests_on_one_grant_are_duplicates() {
    let (mut w, mut f, p) = connected(0, false, Access::ReadWrite);
    w.back.hold(true);
    f.post(&mut w, rw(BLKIF_OP_READ, 1, 0, &[seg(&p, 0, 0)]));
    f.post(&mut w, rw(BLKIF_OP_READ, 2, 8, &[seg(&p, 1, 1)]));
    w.settle();
    assert_eq!(
        w.back
            .audit_failures()
            .iter()
            .map(|a| (a.id, a.error))
            .collect::<Vec<_>>(),
        vec![(2, AuditError::Duplicate)]
    );
    w.back.hold(false);
    w.settle();
    assert_eq!(f.responses().expect("ring").len(), 2);
}

#[test]
fn persistent_grants_stay_mapped_until_disconnect() {
    let mut w = SimBlkWorld::new(SimBlkConfig::default());
    let mut f = Front::connect(&mut w, 0, true);
    assert!(w.back.persistent_in_use());
    let p = grant(&mut w, BACKEND, Access::ReadWrite);
    for id in 0..3 {
        let r = f.call_one(&mut w, rw(BLKIF_OP_WRITE, id, id, &[seg(&p, 0, 0)]));
        assert_eq!(r, ok(id, BLKIF_OP_WRITE));
    }
    assert_eq!(w.back.persistent_grants(), vec![p.gref()]);
    assert_eq!(w.back.stats().persistent_maps, 1, "mapped once, reused");
    // Ending access now fails: the back end still maps it.
    let p = end(&w, p).expect_err("still mapped");
    // A persistent grant must be writable (Linux maps them read-write).
    let ro = grant(&mut w, BACKEND, Access::ReadOnly);
    let r = f.call_one(&mut w, rw(BLKIF_OP_WRITE, 9, 0, &[seg(&ro, 0, 0)]));
    assert_eq!(r.status, BLKIF_RSP_ERROR);
    assert_eq!(
        w.back.audit_failures().last().map(|a| a.error),
        Some(AuditError::Map(SimError::ReadOnly))
    );
    // Close: Closing from the front end, Closed from the back end, all unmapped.
    set_front_state(&mut w, XenbusState::Closing);
    w.settle();
    assert_eq!(w.back.state(), XenbusState::Closed);
    assert!(w.back.persistent_grants().is_empty());
    assert!(end(&w, p).is_ok());
    end_all(&w, f.ring_grants.drain(..));
}

#[test]
fn without_persistent_grants_each_request_maps_and_unmaps() {
    let (mut w, mut f, p) = connected(0, false, Access::ReadOnly);
    assert_eq!(
        f.call_one(&mut w, rw(BLKIF_OP_WRITE, 1, 0, &[seg(&p, 0, 0)]))
            .status,
        0
    );
    assert!(w.back.persistent_grants().is_empty());
    assert!(end(&w, p).is_ok());
}

#[test]
fn a_persistent_grant_reissued_under_the_back_end_is_audited() {
    let mut w = SimBlkWorld::new(SimBlkConfig::default());
    w.grants.set_poison_on_end(false);
    let mut f = Front::connect(&mut w, 0, true);
    let p = grant(&mut w, BACKEND, Access::ReadWrite);
    let gref = p.gref();
    assert_eq!(
        f.call_one(&mut w, rw(BLKIF_OP_WRITE, 1, 0, &[seg(&p, 0, 0)]))
            .status,
        0
    );
    // A cheating table: the entry is re-published for another frame while mapped.
    w.grants
        .with_mem(|m| m.publish(gref, BACKEND, 0x9999, GTF_PERMIT_ACCESS));
    assert_eq!(
        f.call_one(&mut w, rw(BLKIF_OP_WRITE, 2, 0, &[seg(&p, 0, 0)]))
            .status,
        0
    );
    assert_eq!(
        w.back.audit_failures().last().map(|a| a.error),
        Some(AuditError::PersistentChanged)
    );
}

// --- knobs --------------------------------------------------------------------------------

#[test]
fn held_requests_wait_until_released_and_may_be_answered_out_of_order() {
    let (mut w, mut f, p) = connected(0, false, Access::ReadWrite);
    w.back.hold(true);
    for id in 1..=3 {
        f.post(
            &mut w,
            rw(BLKIF_OP_READ, id, id, &[seg(&p, id as u8, id as u8)]),
        );
    }
    w.settle();
    assert_eq!(w.back.in_flight(), 3);
    assert_eq!(w.back.in_flight_ids(), vec![1, 2, 3]);
    assert!(f.responses().expect("ring").is_empty());
    // Held requests keep their pages mapped.
    let p = end(&w, p).expect_err("mapped while in flight");
    assert_eq!(w.back.release_held(1), 1);
    assert_eq!(f.responses().expect("ring"), vec![ok(1, BLKIF_OP_READ)]);
    w.back.answer_out_of_order(true);
    assert_eq!(w.back.release_held(10), 2);
    assert_eq!(
        f.responses().expect("ring"),
        vec![ok(3, BLKIF_OP_READ), ok(2, BLKIF_OP_READ)]
    );
    assert!(end(&w, p).is_ok());
    // hold(false): the next service answers.
    w.back.answer_out_of_order(false);
    let q = grant(&mut w, BACKEND, Access::ReadWrite);
    f.post(&mut w, rw(BLKIF_OP_READ, 4, 0, &[seg(&q, 0, 0)]));
    w.settle();
    assert!(f.responses().expect("ring").is_empty());
    w.back.hold(false);
    w.settle();
    assert_eq!(f.responses().expect("ring"), vec![ok(4, BLKIF_OP_READ)]);
}

#[test]
fn corrupted_responses() {
    let (mut w, mut f, p) = connected(0, false, Access::ReadWrite);
    let read = |id| rw(BLKIF_OP_READ, id, 0, &[seg(&p, 0, 0)]);

    w.back.corrupt_next(RspCorruption::Id(999));
    assert_eq!(f.call_one(&mut w, read(1)), ok(999, BLKIF_OP_READ));
    w.back.corrupt_next(RspCorruption::UnknownId);
    assert_eq!(f.call_one(&mut w, read(2)), ok(2 | 1 << 63, BLKIF_OP_READ));
    w.back
        .corrupt_next(RspCorruption::Operation(BLKIF_OP_WRITE));
    assert_eq!(f.call_one(&mut w, read(3)), ok(3, BLKIF_OP_WRITE));
    w.back.corrupt_next(RspCorruption::Status(7));
    assert_eq!(f.call_one(&mut w, read(4)), status(4, BLKIF_OP_READ, 7));
    // Replay: 5 is answered, then 6's slot repeats 5.
    w.back.corrupt_next(RspCorruption::Replay);
    f.post(&mut w, read(5));
    f.post(&mut w, read(6));
    w.settle();
    assert_eq!(
        f.responses().expect("ring"),
        vec![ok(5, BLKIF_OP_READ), ok(5, BLKIF_OP_READ)]
    );
    // One-shot: the next one is right again.
    assert_eq!(f.call_one(&mut w, read(7)), ok(7, BLKIF_OP_READ));
    // fail_next(2): two errors, nothing done, then success.
    w.write_disk(0, &[0x77; 512]);
    w.mem.fill(gfn(&p), 0);
    w.back.fail_next(2);
    assert_eq!(
        f.call_one(&mut w, read(8)),
        status(8, BLKIF_OP_READ, BLKIF_RSP_ERROR)
    );
    assert_eq!(
        f.call_one(&mut w, read(9)),
        status(9, BLKIF_OP_READ, BLKIF_RSP_ERROR)
    );
    assert!(w.mem.page(gfn(&p))[..512].iter().all(|x| *x == 0));
    assert_eq!(f.call_one(&mut w, read(10)), ok(10, BLKIF_OP_READ));
    assert!(w.mem.page(gfn(&p))[..512].iter().all(|x| *x == 0x77));
    // A raw extra response for an id already answered.
    w.back.push_raw_response(ok(10, BLKIF_OP_READ));
    assert!(matches!(f.responses(), Err(RingError::Backend(_))));
}

#[test]
fn jump_rsp_prod_is_a_ring_fault() {
    let (mut w, mut f, _p) = held_read();
    w.back.jump_rsp_prod(5);
    assert!(matches!(f.responses(), Err(RingError::Backend(_))));
}

#[test]
fn close_with_requests_in_flight_drops_them() {
    let (mut w, mut f, p) = held_read();
    w.back.close();
    w.settle();
    assert_eq!(w.back.state(), XenbusState::Closing);
    assert!(
        w.back.is_connected(),
        "the ring stays until the front end answers"
    );
    let p = end(&w, p).expect_err("still mapped while Closing");
    // The front end answers Closed: the back end disconnects, the request is lost.
    set_front_state(&mut w, XenbusState::Closed);
    w.settle();
    assert_eq!(w.back.state(), XenbusState::Closed);
    assert_eq!(w.back.stats().lost, 1);
    assert!(f.responses().expect("ring").is_empty());
    assert!(end(&w, p).is_ok());
    end_all(&w, f.ring_grants.drain(..));
    // A new Initialising brings InitWait back, and a new ring connects.
    set_front_state(&mut w, XenbusState::Initialising);
    w.settle();
    assert_eq!(w.back.state(), XenbusState::InitWait);
    let _f = Front::connect(&mut w, 0, false);
    assert_eq!(w.back.stats().connects, 2);

    // close_now: Closing then Closed at once.
    w.back.close_now();
    assert_eq!(w.back.state(), XenbusState::Closed);
    assert!(!w.back.is_connected());
}

#[test]
fn keep_busy_answers_in_flight_io_on_the_old_ring_and_refuses_a_reconnect_meanwhile() {
    let (mut w, mut f, p) = held_read();
    w.back
        .set_in_flight_on_disconnect(InFlightOnDisconnect::KeepBusy);
    set_front_state(&mut w, XenbusState::Closing);
    w.settle();
    assert_eq!(w.back.state(), XenbusState::Closed);
    assert_eq!(w.back.busy_in_flight(), 1);
    let ring = f.ring_grants.remove(0);
    let ring = end(&w, ring).expect_err("the old ring stays mapped");
    // Reconnecting now: "pending I/O".
    set_front_state(&mut w, XenbusState::Initialising);
    w.settle();
    let _g = Front::publish(&mut w, 0, false, false);
    w.settle();
    assert_eq!(w.back.stats().connect_error, Some(SimBlkError::PendingIo));
    assert_eq!(w.back.state(), XenbusState::Closing);
    // The I/O completes: answered on the old ring, then everything unmapped.
    assert_eq!(w.back.release_held(1), 0);
    assert_eq!(w.back.busy_in_flight(), 0);
    assert_eq!(f.responses().expect("ring"), vec![ok(1, BLKIF_OP_READ)]);
    assert!(end(&w, ring).is_ok());
    assert!(end(&w, p).is_ok());
}

#[test]
fn reload_goes_back_to_initwait() {
    let mut w = SimBlkWorld::new(SimBlkConfig::default());
    let mut f = Front::connect(&mut w, 2, false);
    w.back.config_mut().max_ring_page_order = Some(1);
    w.back.reload();
    assert_eq!(w.back.state(), XenbusState::InitWait);
    assert!(!w.back.is_connected());
    assert_eq!(
        w.back_node("max-ring-page-order").as_deref(),
        Some(&b"1"[..])
    );
    for g in f.ring_grants.drain(..) {
        assert!(end(&w, g).is_ok(), "unmapped by the reload");
    }
    // The front end walks Closing → Closed → Initialising and reconnects.
    set_front_state(&mut w, XenbusState::Closing);
    w.settle();
    assert_eq!(w.back.state(), XenbusState::Closed);
    set_front_state(&mut w, XenbusState::Initialising);
    w.settle();
    assert_eq!(w.back.state(), XenbusState::InitWait);
    let fd = w.back.frontend_dir().to_string();
    w.xs_ring.with_sim(|s| {
        for i in 0..4 {
            s.rm(&format!("{fd}/ring-ref{i}"));
        }
    });
    let _f = Front::connect(&mut w, 1, false);
    assert_eq!(w.back.ring_order(), Some(1));
}

#[test]
fn keep_mappings_after_close_until_released() {
    let mut w = SimBlkWorld::new(SimBlkConfig::default());
    w.back.keep_mappings_on_close(true);
    let mut f = Front::connect(&mut w, 1, true);
    let p = grant(&mut w, BACKEND, Access::ReadWrite);
    assert_eq!(
        f.call_one(&mut w, rw(BLKIF_OP_WRITE, 1, 0, &[seg(&p, 0, 0)]))
            .status,
        0
    );
    set_front_state(&mut w, XenbusState::Closing);
    w.settle();
    assert_eq!(w.back.state(), XenbusState::Closed);
    assert_eq!(
        w.back.kept_mappings(),
        3,
        "two ring pages and a persistent grant"
    );
    let p = end(&w, p).expect_err("kept");
    let ring: Vec<_> = f
        .ring_grants
        .drain(..)
        .map(|g| end(&w, g).expect_err("kept"))
        .collect();
    w.back.release_mappings();
    assert_eq!(w.back.kept_mappings(), 0);
    assert!(end(&w, p).is_ok());
    end_all(&w, ring);
}

#[test]
fn new_domain_with_fewer_features_loses_held_requests_and_keeps_the_disk() {
    let (mut w, mut f, p) = connected(2, true, Access::ReadWrite);
    w.mem.write(gfn(&p), 0, &[0x3c; 4096]);
    assert_eq!(
        f.call_one(&mut w, rw(BLKIF_OP_WRITE, 1, 16, &[seg(&p, 0, 7)]))
            .status,
        0
    );
    w.back.hold(true);
    f.post(&mut w, rw(BLKIF_OP_WRITE, 2, 0, &[seg(&p, 0, 7)]));
    w.settle();
    assert_eq!(w.back.in_flight(), 1);

    w.new_domain(SimBlkConfig {
        backend_domid: 3,
        ..SimBlkConfig::minimal()
    });
    assert_eq!(w.back.stats().lost, 1);
    assert_eq!(w.back.in_flight(), 0);
    assert!(!w.back.is_connected());
    assert_eq!(w.back.state(), XenbusState::InitWait);
    assert_eq!(w.back.backend_dir(), "/local/domain/3/backend/vbd/7/51712");
    assert_eq!(w.front_node("backend-id").as_deref(), Some(&b"3"[..]));
    assert_eq!(w.back_node("max-ring-page-order"), None);
    assert_eq!(w.back_node("feature-max-indirect-segments"), None);
    assert!(w.disk()[16 * 512..24 * 512].iter().all(|x| *x == 0x3c));
    assert!(
        w.disk()[..8 * 512].iter().all(|x| *x == 0),
        "the held write was lost"
    );
    assert_eq!(w.evt.open_ports(), 0, "event channels vanished");
    // The old grant is gone with the old domain (the table is reset).
    let stale = seg(&p, 0, 7);
    drop(f);
    // A front end that insists on its old order-2 ring cannot connect any more.
    let fd = w.back.frontend_dir().to_string();
    let old = Front::publish_to(&mut w, 3, 2, true, None);
    w.settle();
    assert_eq!(
        w.back.stats().connect_error,
        Some(SimBlkError::RingOrder(2))
    );
    drop(old);
    // ... and one that renegotiates (order 0, no persistent grants) can.
    set_front_state(&mut w, XenbusState::Closed);
    w.settle();
    w.xs_ring
        .with_sim(|s| s.rm(&format!("{fd}/ring-page-order")));
    set_front_state(&mut w, XenbusState::Initialising);
    w.settle();
    let mut f = Front::connect_for(&mut w, 0, 3);
    assert!(!w.back.persistent_in_use());
    let r = f.call_one(&mut w, rw(BLKIF_OP_WRITE, 3, 0, &[stale]));
    assert_eq!(r.status, BLKIF_RSP_ERROR, "old grant refused");
    let q = grant(&mut w, 3, Access::ReadWrite);
    w.mem.write(gfn(&q), 0, &[0x4d; 4096]);
    assert_eq!(
        f.call_one(&mut w, rw(BLKIF_OP_WRITE, 4, 0, &[seg(&q, 0, 7)])),
        ok(4, BLKIF_OP_WRITE)
    );
    assert!(w.disk()[..8 * 512].iter().all(|x| *x == 0x4d));
}

#[test]
fn a_front_end_that_writes_connected_directly_is_connected_too() {
    let mut w = SimBlkWorld::new(SimBlkConfig::default());
    let _f = Front::publish(&mut w, 1, false, false);
    set_front_state(&mut w, XenbusState::Connected);
    w.settle();
    assert_eq!(w.back.state(), XenbusState::Connected);
    assert_eq!(w.back.ring_order(), Some(1));
    // A repeated Connected changes nothing.
    set_front_state(&mut w, XenbusState::Connected);
    assert!(!w.step());
    assert_eq!(w.back.stats().connects, 1);
}
