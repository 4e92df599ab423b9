//! The shared runtime's life cycle with a small recording driver: connect, close, reconnect, suspend, both resumes.
//!
//! The driver grants one ring page and a few buffer pages and records every
//! call the runtime makes; the test plays the back end by writing its `state`
//! node into a simulated xenstored. Every class (vif, vbd) gets exactly this
//! sequence.

use std::cell::RefCell;
use std::rc::Rc;

use grant_table::Access;
use xen_abi::event_channel::EvtchnPort;
use xen_frontend::sim::{SimEvtchn, SimGrants, SimMemory, SimPage, SimPages};
use xen_frontend::{
    Backend, Device, Driver, Error, Held, Nodes, Resources, RingHalf, SetupError, XenstoreAccess,
};
use xen_ring::RingLayout;
use xenbus::{Handshake, Phase};
use xenstore::Xenstore;
use xenstore::sim::{SimPage as XsPage, SimPlatform, SimRing, SimXenstored};
use xenstore::{TxId, XsError};

const FRONT: u16 = 7;
const DEVID: u32 = 51712;
const FRONT_DIR: &str = "/local/domain/7/device/vbd/51712";
const BACK_DIR: &str = "/local/domain/0/backend/vbd/7/51712";

type Io = Resources<SimPages, SimGrants, SimEvtchn>;

/// What the runtime asked of the driver, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Setup,
    Connected,
    Disconnected,
    Release,
    DiscardStale,
    Reinitialise,
    Free,
}

struct Recorder {
    trace: Rc<RefCell<Vec<Call>>>,
    ring: Option<RingHalf<[u8; 8], [u8; 8], SimPage>>,
    bufs: Vec<Held<SimPage>>,
    fail_setup: bool,
}

impl Recorder {
    fn log(&self, c: Call) {
        self.trace.borrow_mut().push(c);
    }
}

impl Driver<SimPages, SimGrants, SimEvtchn> for Recorder {
    const CLASS: &'static str = "vbd";
    const HANDSHAKE: Handshake = Handshake::InitialisedFirst;

    fn setup(
        &mut self,
        io: &mut Io,
        _xs: &mut impl XenstoreAccess,
        backend: &Backend,
        _port: EvtchnPort,
        nodes: &mut Nodes,
    ) -> Result<(), SetupError> {
        self.log(Call::Setup);
        if self.fail_setup {
            return Err(SetupError::MissingFeature("feature-test"));
        }
        if self.ring.is_none() {
            self.ring = Some(io.new_ring(RingLayout::new(4096, 8), backend.domid)?);
        }
        for b in &mut self.bufs {
            io.ensure_granted(b, backend.domid, Access::ReadWrite)?;
        }
        let Some(ring) = &self.ring else {
            return Err(SetupError::OutOfPages);
        };
        nodes.push("ring-ref", ring.page.gref());
        nodes.push("feature-test", 1);
        Ok(())
    }

    fn connected(&mut self, io: &mut Io, _xs: &mut impl XenstoreAccess, _backend: &Backend) {
        self.log(Call::Connected);
        io.notify();
    }

    fn disconnected(&mut self) {
        self.log(Call::Disconnected);
    }

    fn release(&mut self, io: &mut Io) {
        self.log(Call::Release);
        if let Some(r) = self.ring.take() {
            io.end_ring(r);
        }
        for b in &mut self.bufs {
            io.release_held(b);
        }
    }

    fn discard_stale(&mut self, io: &mut Io) {
        self.log(Call::DiscardStale);
        if let Some(r) = self.ring.take() {
            io.end_ring(r);
        }
    }

    fn reinitialise(&mut self) {
        self.log(Call::Reinitialise);
    }

    fn free(&mut self, io: &mut Io) {
        self.log(Call::Free);
        for b in &mut self.bufs {
            io.free_held(b);
        }
    }
}

/// A xenstore connection whose writes all fail with `EACCES`.
struct FailingWrites<'a> {
    inner: &'a mut Xenstore<XsPage, SimPlatform>,
}

impl XenstoreAccess for FailingWrites<'_> {
    fn read(&mut self, tx: TxId, path: &str) -> Result<Vec<u8>, XsError> {
        self.inner.read(tx, path)
    }
    fn write(&mut self, _tx: TxId, _path: &str, _value: &[u8]) -> Result<(), XsError> {
        Err(XsError::Eacces)
    }
    fn transaction<T>(
        &mut self,
        _attempts: usize,
        mut body: impl FnMut(&mut Self, TxId) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        body(self, TxId::NONE)
    }
}

struct World {
    xs_ring: SimRing,
    xs: Xenstore<XsPage, SimPlatform>,
    pages: SimPages,
    grants: SimGrants,
    evt: SimEvtchn,
    trace: Rc<RefCell<Vec<Call>>>,
    dev: Device<Recorder, SimPages, SimGrants, SimEvtchn>,
}

impl World {
    fn new() -> Self {
        let xs_ring = SimRing::new(SimXenstored::new(FRONT), 0);
        xs_ring.with_sim(|s| {
            s.write(&format!("{FRONT_DIR}/backend"), BACK_DIR.as_bytes());
            s.write(&format!("{FRONT_DIR}/backend-id"), b"0");
            s.write(&format!("{FRONT_DIR}/state"), b"1");
            s.write(&format!("{BACK_DIR}/state"), b"1");
        });
        let mut xs = xs_ring.connect();
        let mem = SimMemory::new();
        let pages = SimPages::new(mem.clone());
        let grants = SimGrants::new(mem, 4);
        let evt = SimEvtchn::new();
        let trace = Rc::new(RefCell::new(Vec::new()));
        let driver = Recorder {
            trace: trace.clone(),
            ring: None,
            bufs: (0..3).map(|_| Held::Empty).collect(),
            fail_setup: false,
        };
        let io = Resources::new(pages.clone(), grants.clone(), evt.clone());
        let dev = match Device::new(&mut xs, DEVID, driver, io, 4) {
            Ok(d) => d,
            Err(e) => panic!("probe: {e}"),
        };
        Self {
            xs_ring,
            xs,
            pages,
            grants,
            evt,
            trace,
            dev,
        }
    }

    /// The back end moves to `state` and the watch fires.
    fn backend(&mut self, state: &str) -> Result<(), Error> {
        self.xs_ring
            .with_sim(|s| s.write(&format!("{BACK_DIR}/state"), state.as_bytes()));
        self.dev.on_backend_state(&mut self.xs)
    }

    fn node(&self, name: &str) -> Option<String> {
        self.xs_ring
            .with_sim(|s| s.read(&format!("{FRONT_DIR}/{name}")))
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    fn take_trace(&self) -> Vec<Call> {
        std::mem::take(&mut *self.trace.borrow_mut())
    }

    fn active_grants(&self) -> u32 {
        self.grants.with_table(|t| t.stats().active)
    }

    /// Probed, started, back end InitWait then Connected.
    fn connected() -> Self {
        let mut w = Self::new();
        w.dev.start(&mut w.xs).expect("start");
        w.backend("2").expect("InitWait");
        w.backend("4").expect("Connected");
        assert!(w.dev.is_connected());
        w.take_trace();
        w
    }
}

#[test]
fn connect_publishes_in_one_transaction_and_announces() {
    let mut w = World::new();
    assert_eq!(w.dev.backend().path, BACK_DIR);
    w.dev.start(&mut w.xs).expect("start");
    assert_eq!(w.node("state").as_deref(), Some("1"));
    assert_eq!(w.take_trace(), []);
    let commits_before = w.xs_ring.with_sim(|s| s.transaction_count());
    w.backend("2").expect("InitWait");
    assert_eq!(w.take_trace(), [Call::Reinitialise, Call::Setup]);
    // Initialised first (blkfront's handshake), the nodes written.
    assert_eq!(w.node("state").as_deref(), Some("3"));
    let port = w.dev.event_channel().expect("a channel");
    assert_eq!(w.node("event-channel"), Some(port.to_string()));
    assert_eq!(w.node("feature-test").as_deref(), Some("1"));
    let gref: u32 = w
        .node("ring-ref")
        .expect("ring-ref")
        .parse()
        .expect("a number");
    assert!(
        w.grants.with_table(|t| t.stats().active) >= 4,
        "ring + 3 buffers"
    );
    assert!(gref > 0);
    assert_eq!(
        w.xs_ring.with_sim(|s| s.transaction_count()),
        commits_before
    );
    assert!(!w.dev.is_connected());
    w.backend("4").expect("Connected");
    assert!(w.dev.is_connected());
    assert_eq!(w.take_trace(), [Call::Connected]);
    assert_eq!(w.evt.to_backend(), 1);
    assert_eq!(w.dev.setups(), 1);
}

#[test]
fn publishing_retries_conflicting_commits() {
    let mut w = World::new();
    w.dev.start(&mut w.xs).expect("start");
    w.xs_ring.with_sim(|s| s.fail_next_commits(2));
    w.backend("2").expect("InitWait with two EAGAIN commits");
    assert_eq!(w.node("state").as_deref(), Some("3"));
    assert!(w.node("ring-ref").is_some());
}

#[test]
fn endless_conflicts_fail_the_setup_and_close() {
    let mut w = World::new();
    w.dev.start(&mut w.xs).expect("start");
    w.xs_ring.with_sim(|s| s.fail_next_commits(100));
    let r = w.backend("2");
    assert_eq!(r, Err(Error::Setup(SetupError::TransactionRetries)));
    assert_eq!(
        w.dev.last_setup_error(),
        Some(SetupError::TransactionRetries)
    );
    assert!(!w.dev.is_connected());
}

#[test]
fn grants_end_only_after_the_back_end_let_go() {
    let mut w = World::connected();
    let active = w.active_grants();
    w.dev.close(&mut w.xs).expect("close");
    // We said Closing; the back end is still Connected and maps our pages.
    assert_eq!(w.node("state").as_deref(), Some("5"));
    assert!(!w.dev.is_connected());
    assert_eq!(
        w.active_grants(),
        active,
        "no grant ended before the back end let go"
    );
    assert!(w.evt.closed().is_empty());
    assert!(!w.take_trace().contains(&Call::Release));
    w.backend("5").expect("back end Closing");
    assert_eq!(w.take_trace(), [Call::Release]);
    assert_eq!(w.active_grants(), 0);
    assert_eq!(
        w.evt.closed().len(),
        1,
        "the channel closed with the grants"
    );
    w.backend("6").expect("back end Closed");
    assert_eq!(w.node("state").as_deref(), Some("6"));
    assert_eq!(w.take_trace(), [Call::Free]);
    assert_eq!(w.pages.live(), 0, "every page back with the provider");
}

#[test]
fn reconnect_walks_the_close_handshake_then_connects_again() {
    let mut w = World::connected();
    w.dev.reconnect(&mut w.xs).expect("reconnect");
    assert_eq!(w.node("state").as_deref(), Some("5"));
    w.backend("6").expect("back end Closed");
    // Released, freed, then Initialising again for the back end to see.
    assert_eq!(
        w.take_trace(),
        [Call::Disconnected, Call::Release, Call::Free]
    );
    assert_eq!(w.node("state").as_deref(), Some("1"));
    w.backend("2").expect("InitWait");
    w.backend("4").expect("Connected");
    assert!(w.dev.is_connected());
    assert_eq!(w.dev.setups(), 2);
}

#[test]
fn cancelled_resume_touches_nothing() {
    let mut w = World::connected();
    let gref = w.node("ring-ref");
    let publishes = w.grants.publishes();
    w.dev.suspend().expect("suspend");
    assert!(w.dev.is_suspended() && !w.dev.is_connected());
    w.dev.resume(&mut w.xs, false).expect("resume");
    assert!(w.dev.is_connected());
    assert_eq!(w.take_trace(), []);
    assert_eq!(w.node("ring-ref"), gref);
    assert_eq!(w.grants.publishes(), publishes, "nothing granted again");
}

#[test]
fn new_domain_resume_regrants_everything_before_announcing() {
    let mut w = World::connected();
    w.dev.suspend().expect("suspend");
    // Xen's and the kernel's side of a restore.
    w.grants.new_domain();
    w.grants.reset_for_resume(&w.pages);
    w.evt.new_domain();
    w.xs_ring
        .with_sim(|s| s.write(&format!("{BACK_DIR}/state"), b"2"));
    w.dev.resume(&mut w.xs, true).expect("resume");
    // The sequence every front end shares.
    assert_eq!(
        w.take_trace(),
        [
            Call::DiscardStale,
            Call::Reinitialise,
            Call::Reinitialise,
            Call::Setup
        ]
    );
    assert_eq!(w.node("state").as_deref(), Some("3"));
    // Every grant the driver holds now is of the new domain.
    let epoch = w.grants.with_mem(|m| m.epoch());
    let gref: u32 = w
        .node("ring-ref")
        .expect("ring-ref")
        .parse()
        .expect("number");
    let published = w.grants.with_mem(|m| m.latest_publish(gref));
    assert_eq!(published.map(|(e, _)| e), Some(epoch));
    assert_eq!(w.active_grants(), 4);
    w.backend("4").expect("Connected");
    assert!(w.dev.is_connected());
    assert_eq!(w.take_trace(), [Call::Connected]);
}

#[test]
fn a_failed_write_during_resume_does_not_leave_the_device_suspended() {
    let mut w = World::connected();
    w.dev.suspend().expect("suspend");
    w.grants.new_domain();
    w.grants.reset_for_resume(&w.pages);
    w.evt.new_domain();
    let mut failing = FailingWrites { inner: &mut w.xs };
    assert_eq!(
        w.dev.resume(&mut failing, true),
        Err(Error::Xenstore(XsError::Eacces))
    );
    assert!(!w.dev.is_suspended(), "the phase moved on");
    // The next back-end event carries the connection on.
    w.backend("2").expect("InitWait");
    w.backend("4").expect("Connected");
    assert!(w.dev.is_connected());
}

#[test]
fn a_failed_setup_closes_and_a_back_end_event_retries() {
    let mut w = World::new();
    w.dev.driver_mut().fail_setup = true;
    w.dev.start(&mut w.xs).expect("start");
    assert_eq!(
        w.backend("2"),
        Err(Error::Setup(SetupError::MissingFeature("feature-test")))
    );
    assert!(!w.dev.is_connected());
    assert_ne!(w.dev.phase(), Phase::Connected);
    assert_eq!(w.active_grants(), 0, "nothing left granted");
}

#[test]
fn errors_display_what_went_wrong() {
    assert_eq!(
        SetupError::MissingFeature("feature-rx-copy").to_string(),
        "the back end does not offer feature-rx-copy, which this driver needs"
    );
    assert_eq!(
        Error::Setup(SetupError::TransactionRetries).to_string(),
        "connection setup: the xenstore transaction kept conflicting (EAGAIN)"
    );
}

impl World {
    /// Every reference the driver holds granted (ring page and buffers).
    fn grefs(&self) -> Vec<grant_table::GrantRef> {
        let d = self.dev.driver();
        let mut v: Vec<_> = d
            .bufs
            .iter()
            .filter_map(|b| b.grant().map(|g| g.gref()))
            .collect();
        if let Some(r) = &d.ring {
            v.push(r.page.gref());
        }
        v
    }

    /// The back end (dom0) maps every reference read-write.
    fn backend_maps(&self, grefs: &[grant_table::GrantRef]) {
        for &g in grefs {
            self.grants
                .with_mem(|m| m.inner.backend_map(0, g, Access::ReadWrite))
                .expect("map");
        }
    }

    /// The back end unmaps every reference.
    fn backend_unmaps(&self, grefs: &[grant_table::GrantRef]) {
        for &g in grefs {
            self.grants
                .with_mem(|m| m.inner.backend_unmap(0, g, Access::ReadWrite))
                .expect("unmap");
        }
    }

    fn deferred_grants(&self) -> u32 {
        self.grants.with_table(|t| t.stats().deferred)
    }
}

/// `xl network-detach` / `xl block-detach`: libxl writes the BACK END's state
/// Closing while the back end still maps everything (it only learns of the
/// close from our Closed), waits for its Closed, then removes both
/// directories. Every grant ends: deferred while mapped, released once the
/// back end unmapped; nothing leaks and the device ends Removed.
#[test]
fn toolstack_detach_ends_every_grant_and_removes_the_device() {
    let mut w = World::connected();
    let grefs = w.grefs();
    assert_eq!(grefs.len(), 4, "ring page and three buffers");
    w.backend_maps(&grefs);
    // libxl: backend state = Closing (the back end itself has not noticed).
    w.backend("5").expect("toolstack's Closing");
    assert_eq!(w.take_trace(), [Call::Disconnected, Call::Release]);
    assert_eq!(w.node("state").as_deref(), Some("6"), "we answer Closed");
    assert_eq!(w.active_grants(), 0);
    assert_eq!(
        w.deferred_grants(),
        4,
        "still mapped: deferred, not freed under the back end"
    );
    // The back end sees our Closed, unmaps, says Closed.
    w.backend_unmaps(&grefs);
    w.backend("6").expect("back end Closed");
    assert_eq!(w.take_trace(), [Call::Reinitialise]);
    assert_eq!(w.node("state").as_deref(), Some("1"), "Initialising again");
    // libxl removes both directories.
    w.xs_ring.with_sim(|s| {
        s.rm(FRONT_DIR);
        s.rm(BACK_DIR);
    });
    w.dev.on_backend_state(&mut w.xs).expect("vanished");
    assert_eq!(w.take_trace(), [Call::Free]);
    assert_eq!(w.dev.phase(), Phase::Removed);
    assert!(w.dev.is_gone());
    assert_eq!(w.node("state"), None);
    let report = w.grants.poll_deferred(&w.pages);
    assert_eq!(report.released, 4);
    assert_eq!((w.active_grants(), w.deferred_grants()), (0, 0));
    assert_eq!(w.pages.live(), 0, "every page back with the provider");
}

/// The toolstack removed our directory before we acted on the back end's
/// Closed: the Initialising that follows must not create
/// `device/<class>/<id>/state` again (a stray node that looks like a device).
#[test]
fn no_state_write_recreates_a_removed_device_directory() {
    let mut w = World::connected();
    w.backend("5").expect("toolstack's Closing");
    w.xs_ring.with_sim(|s| {
        s.write(&format!("{BACK_DIR}/state"), b"6");
        s.rm(FRONT_DIR);
    });
    w.dev.on_backend_state(&mut w.xs).expect("back end Closed");
    assert_eq!(w.node("state"), None, "no stray state node");
    assert_eq!(w.node("backend"), None);
    w.xs_ring.with_sim(|s| s.rm(BACK_DIR));
    w.dev.on_backend_state(&mut w.xs).expect("vanished");
    assert!(w.dev.is_gone());
    assert_eq!(w.node("state"), None);
    assert_eq!(w.pages.live(), 0);
}

// --- recovery: retries with back-off, the fault budget, the deferred cap ---------

/// Polls the runtime at `now` (ms) and returns the result.
fn poll(w: &mut World, now: u64) -> Result<(), Error> {
    w.dev.poll(&mut w.xs, now)
}

/// Polls until the pending retry fired (at most `limit` ms of simulated time,
/// stepping 1 ms); returns the time it fired.
fn poll_until_retry(w: &mut World, mut now: u64, limit: u64) -> u64 {
    let end = now + limit;
    while now < end {
        let _ = poll(w, now);
        if w.dev.poll_at().is_none() {
            return now;
        }
        now += 1;
    }
    panic!("no retry within {limit} ms (poll_at {:?})", w.dev.poll_at());
}

fn fast_recovery() -> xen_frontend::RecoveryConfig {
    xen_frontend::RecoveryConfig {
        max_faults: 2,
        fault_window_ms: 10_000,
        max_deferred_pages: 2,
        retry_initial_ms: 10,
        retry_max_ms: 80,
    }
}

#[test]
fn a_failed_state_write_during_resume_is_retried_with_backoff() {
    let mut w = World::connected();
    w.dev.set_recovery(fast_recovery());
    w.dev.suspend().expect("suspend");
    w.grants.new_domain();
    w.grants.reset_for_resume(&w.pages);
    w.evt.new_domain();
    // The toolstack re-created the back end, waiting in InitWait.
    w.xs_ring
        .with_sim(|s| s.write(&format!("{BACK_DIR}/state"), b"2"));
    let mut failing = FailingWrites { inner: &mut w.xs };
    assert!(w.dev.resume(&mut failing, true).is_err());
    // Initialising was not written: the node still says Connected.
    assert_eq!(w.node("state").as_deref(), Some("4"));
    assert_eq!(w.dev.poll_at(), Some(0), "a retry is wanted");
    // Not before the back-off.
    poll(&mut w, 1000).expect("schedules");
    assert_eq!(w.dev.poll_at(), Some(1010));
    poll(&mut w, 1009).expect("not yet");
    assert_eq!(w.node("state").as_deref(), Some("4"));
    poll(&mut w, 1010).expect("retried");
    // Initialising written, then the waiting back end acted on: set up anew
    // and Initialised announced.
    assert_eq!(w.node("state").as_deref(), Some("3"));
    assert_eq!(w.dev.poll_at(), None);
    w.backend("4").expect("Connected");
    assert!(w.dev.is_connected());
}

#[test]
fn a_failed_closing_write_does_not_leave_a_reconnect_stuck() {
    let mut w = World::connected();
    w.dev.set_recovery(fast_recovery());
    let mut failing = FailingWrites { inner: &mut w.xs };
    assert_eq!(
        w.dev.reconnect(&mut failing),
        Err(Error::Xenstore(XsError::Eacces))
    );
    assert_eq!(w.node("state").as_deref(), Some("4"), "Closing not written");
    assert_eq!(w.dev.phase(), Phase::Closing);
    let t = poll_until_retry(&mut w, 0, 100);
    assert!(t >= 10, "not before the back-off ({t})");
    assert_eq!(w.node("state").as_deref(), Some("5"));
    // The back end follows, and the reconnect completes.
    w.backend("5").expect("Closing");
    w.backend("6").expect("Closed");
    w.backend("2").expect("InitWait");
    w.backend("4").expect("Connected");
    assert!(w.dev.is_connected());
    assert_eq!(w.dev.setups(), 2);
}

#[test]
fn a_failed_setup_is_retried_with_backoff_until_it_works() {
    let mut w = World::new();
    w.dev.set_recovery(fast_recovery());
    w.dev.driver_mut().fail_setup = true;
    w.dev.start(&mut w.xs).expect("start");
    assert!(w.backend("2").is_err());
    // The close handshake of the failed setup.
    w.backend("5").expect("Closing");
    w.backend("6").expect("Closed");
    assert_eq!(w.dev.phase(), Phase::Closed);
    assert!(!w.dev.is_gone(), "a retry is pending");
    assert_eq!(w.active_grants(), 0);
    // Still failing: each retry goes through the handshake, and the delay
    // doubles.
    let mut now = 0;
    let mut fired = Vec::new();
    for _ in 0..3 {
        now = poll_until_retry(&mut w, now, 1000);
        fired.push(now);
        assert_eq!(w.node("state").as_deref(), Some("1"));
        assert!(w.backend("2").is_err());
        w.backend("5").expect("Closing");
        w.backend("6").expect("Closed");
        assert_eq!(w.active_grants(), 0, "nothing granted between tries");
    }
    assert!(fired[1] - fired[0] > fired[0], "back-off grows: {fired:?}");
    // The cause goes away: the next retry connects.
    w.dev.driver_mut().fail_setup = false;
    poll_until_retry(&mut w, now, 1000);
    w.backend("2").expect("InitWait");
    w.backend("4").expect("Connected");
    assert!(w.dev.is_connected());
    assert_eq!(w.dev.health().retries, 4);
    assert_eq!(w.dev.poll_at(), None);
}

#[test]
fn a_closed_device_is_not_retried() {
    let mut w = World::new();
    w.dev.set_recovery(fast_recovery());
    w.dev.driver_mut().fail_setup = true;
    w.dev.start(&mut w.xs).expect("start");
    assert!(w.backend("2").is_err());
    w.dev.close(&mut w.xs).expect("close");
    assert_eq!(w.dev.poll_at(), None);
}

#[test]
fn faults_over_the_budget_break_the_device() {
    let mut w = World::connected();
    w.dev.set_recovery(fast_recovery());
    // Two faults in the window: each reconnects.
    for (i, t) in [0u64, 100].into_iter().enumerate() {
        w.dev
            .reconnect_after_fault(&mut w.xs, t)
            .expect("within the budget");
        w.backend("5").expect("Closing");
        w.backend("6").expect("Closed");
        w.backend("2").expect("InitWait");
        w.backend("4").expect("Connected");
        assert!(w.dev.is_connected());
        assert_eq!(w.dev.setups(), i as u64 + 2);
    }
    // The third: broken, closed, not reconnecting.
    let err = w
        .dev
        .reconnect_after_fault(&mut w.xs, 200)
        .expect_err("over the budget");
    assert!(matches!(
        err,
        Error::Broken(xen_frontend::Broken::TooManyFaults { faults: 3, .. })
    ));
    assert!(err.to_string().contains("broken"), "{err}");
    w.backend("5").expect("Closing");
    w.backend("6").expect("Closed");
    assert_eq!(w.dev.phase(), Phase::Closed);
    assert!(w.dev.is_gone());
    assert_eq!(w.active_grants(), 0, "every grant ended");
    assert_eq!(poll(&mut w, 100_000), Ok(()));
    assert_eq!(w.dev.phase(), Phase::Closed, "no retry for a broken device");
    assert!(matches!(
        w.dev.reconnect_after_fault(&mut w.xs, 100_000),
        Err(Error::Broken(_))
    ));
}

#[test]
fn faults_spread_out_in_time_do_not_break_the_device() {
    let mut w = World::connected();
    w.dev.set_recovery(fast_recovery());
    for t in [0u64, 6000, 12_000, 18_000, 24_000] {
        w.dev
            .reconnect_after_fault(&mut w.xs, t)
            .expect("reconnect");
        w.backend("5").expect("Closing");
        w.backend("6").expect("Closed");
        w.backend("2").expect("InitWait");
        w.backend("4").expect("Connected");
    }
    assert!(w.dev.is_connected());
    assert_eq!(w.dev.broken(), None);
}

#[test]
fn deferred_pages_over_the_cap_stop_the_reconnects() {
    let mut w = World::connected();
    w.dev.set_recovery(xen_frontend::RecoveryConfig {
        max_faults: 100,
        ..fast_recovery()
    });
    let baseline_pages = w.pages.live();
    // A back end that keeps every page mapped and is Closed anyway.
    let grefs: Vec<u32> = w.grants.with_mem(|m| {
        (8..64u32)
            .filter(|&g| m.inner.entry(g).is_some_and(|e| e.flags != 0))
            .collect::<Vec<_>>()
    });
    assert_eq!(grefs.len(), 4, "ring + 3 buffers");
    for &g in &grefs {
        w.grants.backend_map(0, g, Access::ReadWrite).expect("map");
    }
    w.dev
        .reconnect_after_fault(&mut w.xs, 0)
        .expect("first fault");
    w.backend("5").expect("Closing");
    w.backend("6").expect("Closed");
    assert_eq!(w.grants.with_table(|t| t.stats().deferred), 4);
    // Four pages deferred, cap two: no new connection, broken.
    let err = w.backend("2").expect_err("refused");
    assert!(matches!(
        err,
        Error::Setup(SetupError::TooManyDeferred { pages: 4, cap: 2 })
    ));
    assert!(matches!(
        w.dev.broken(),
        Some(xen_frontend::Broken::TooManyDeferred { pages: 4, cap: 2 })
    ));
    w.backend("5").expect("Closing");
    w.backend("6").expect("Closed");
    assert!(w.dev.is_gone());
    assert_eq!(w.dev.poll_at(), None);
    // No page allocated for the refused connection.
    assert!(w.pages.live() <= baseline_pages);
    // The back end lets go at last: everything returns.
    for &g in &grefs {
        w.grants
            .backend_unmap(0, g, Access::ReadWrite)
            .expect("unmap");
    }
    w.grants.poll_deferred(&w.pages);
    assert_eq!(w.active_grants(), 0);
    assert_eq!(w.grants.with_table(|t| t.stats().deferred), 0);
}
