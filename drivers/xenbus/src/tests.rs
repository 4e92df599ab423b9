//! Host tests: scripted transitions, a model back end (Linux netback/blkback
//! `frontend_changed` rules), and an exhaustive exploration of every reachable
//! state with safety and liveness checks.

extern crate std;

use std::collections::{HashSet, VecDeque};
use std::string::String;
use std::vec;
use std::vec::Vec;

use crate::device::*;
use crate::frontend::*;
use xen_abi::xenbus::{StateParseError, XenbusState as S};

use Action as A;

const STYLES: [Handshake; 2] = [Handshake::InitialisedFirst, Handshake::ConnectedAfterSetup];

const DRIVER_EVENTS: [DriverEvent; 7] = [
    DriverEvent::Connect,
    DriverEvent::SetupDone,
    DriverEvent::SetupFailed,
    DriverEvent::RequestClose,
    DriverEvent::Suspend,
    DriverEvent::Resume { new_domain: false },
    DriverEvent::Resume { new_domain: true },
];

fn all_inputs() -> Vec<Input> {
    let mut v: Vec<Input> = S::ALL.iter().map(|s| Input::Backend(*s)).collect();
    v.push(Input::BackendVanished);
    v.extend(DRIVER_EVENTS.iter().map(|e| Input::Driver(*e)));
    v
}

fn step(fe: &mut Frontend, input: Input) -> Vec<Action> {
    match fe.handle(input) {
        Ok(a) => a.as_slice().to_vec(),
        Err(e) => panic!("{input:?} in {:?}: {e:?}", fe.phase()),
    }
}

fn backend(fe: &mut Frontend, s: S) -> Vec<Action> {
    step(fe, Input::Backend(s))
}

fn driver(fe: &mut Frontend, e: DriverEvent) -> Vec<Action> {
    step(fe, Input::Driver(e))
}

/// A front end that is connected, for the given style.
fn connected(style: Handshake) -> Frontend {
    let mut fe = Frontend::new(style);
    driver(&mut fe, DriverEvent::Connect);
    backend(&mut fe, S::InitWait);
    driver(&mut fe, DriverEvent::SetupDone);
    backend(&mut fe, S::Connected);
    assert_eq!(fe.phase(), Phase::Connected);
    fe
}

#[test]
fn netfront_style_connects() {
    let mut fe = Frontend::new(Handshake::ConnectedAfterSetup);
    assert_eq!(fe.phase(), Phase::Idle);
    assert_eq!(
        driver(&mut fe, DriverEvent::Connect),
        [A::WriteOwnState(S::Initialising)]
    );
    assert_eq!(backend(&mut fe, S::Initialising), []);
    assert_eq!(backend(&mut fe, S::InitWait), [A::SetupRings]);
    assert!(fe.holds_grants());
    // Spurious watch firings while the driver sets up change nothing.
    assert_eq!(backend(&mut fe, S::InitWait), []);
    assert_eq!(
        driver(&mut fe, DriverEvent::SetupDone),
        [A::WriteOwnState(S::Connected)]
    );
    assert_eq!(fe.phase(), Phase::Announced);
    assert_eq!(backend(&mut fe, S::InitWait), []);
    assert_eq!(backend(&mut fe, S::Connected), [A::Connected]);
    assert_eq!(backend(&mut fe, S::Connected), []);
    assert_eq!(fe.own_state(), Some(S::Connected));
}

#[test]
fn blkfront_style_connects() {
    let mut fe = Frontend::new(Handshake::InitialisedFirst);
    driver(&mut fe, DriverEvent::Connect);
    assert_eq!(backend(&mut fe, S::InitWait), [A::SetupRings]);
    assert_eq!(
        driver(&mut fe, DriverEvent::SetupDone),
        [A::WriteOwnState(S::Initialised)]
    );
    assert_eq!(
        backend(&mut fe, S::Connected),
        [A::WriteOwnState(S::Connected), A::Connected]
    );
    assert_eq!(fe.phase(), Phase::Connected);
}

#[test]
fn backend_already_waiting_at_connect_starts_setup_at_once() {
    let mut fe = Frontend::new(Handshake::ConnectedAfterSetup);
    assert_eq!(backend(&mut fe, S::InitWait), [], "idle: recorded only");
    assert_eq!(
        driver(&mut fe, DriverEvent::Connect),
        [A::WriteOwnState(S::Initialising), A::SetupRings]
    );
}

#[test]
fn close_handshake_releases_grants_only_once_the_backend_closes() {
    for style in STYLES {
        let mut fe = connected(style);
        assert_eq!(
            driver(&mut fe, DriverEvent::RequestClose),
            [A::Disconnected, A::WriteOwnState(S::Closing)]
        );
        assert!(fe.holds_grants());
        // The back end is slow; nothing it shows short of Closing releases.
        for s in [
            S::Connected,
            S::InitWait,
            S::Initialised,
            S::Initialising,
            S::Unknown,
            S::Reconfiguring,
        ] {
            assert_eq!(backend(&mut fe, s), [], "{s:?}");
            assert!(fe.holds_grants());
        }
        assert_eq!(
            backend(&mut fe, S::Closing),
            [A::ReleaseGrants, A::WriteOwnState(S::Closed)]
        );
        assert!(!fe.holds_grants());
        assert_eq!(fe.phase(), Phase::ClosedWait);
        assert_eq!(backend(&mut fe, S::Closed), [A::Closed]);
        assert_eq!(fe.phase(), Phase::Closed);
        // Closed for good: back-end changes are ignored, a second close is a no-op.
        assert_eq!(backend(&mut fe, S::InitWait), []);
        assert_eq!(driver(&mut fe, DriverEvent::RequestClose), []);
        // Reopen.
        assert_eq!(
            driver(&mut fe, DriverEvent::Connect),
            [A::WriteOwnState(S::Initialising), A::SetupRings]
        );
    }
}

#[test]
fn close_when_the_backend_jumps_straight_to_closed() {
    let mut fe = connected(Handshake::ConnectedAfterSetup);
    driver(&mut fe, DriverEvent::RequestClose);
    assert_eq!(
        backend(&mut fe, S::Closed),
        [A::ReleaseGrants, A::WriteOwnState(S::Closed), A::Closed]
    );
}

#[test]
fn backend_initiated_close_then_reinitialise_and_reconnect() {
    let mut fe = connected(Handshake::ConnectedAfterSetup);
    assert_eq!(
        backend(&mut fe, S::Closing),
        [
            A::Disconnected,
            A::ReleaseGrants,
            A::WriteOwnState(S::Closed)
        ]
    );
    assert_eq!(backend(&mut fe, S::Closing), []);
    // Announce Initialising again so the Closed back end re-enters InitWait.
    assert_eq!(
        backend(&mut fe, S::Closed),
        [A::Reinitialise, A::WriteOwnState(S::Initialising)]
    );
    assert_eq!(backend(&mut fe, S::InitWait), [A::SetupRings]);
    assert_eq!(
        driver(&mut fe, DriverEvent::SetupDone),
        [A::WriteOwnState(S::Connected)]
    );
    assert_eq!(backend(&mut fe, S::Connected), [A::Connected]);
}

#[test]
fn backend_reloaded_while_connected_is_walked_through_close() {
    // Unbind/rebind: the back end shows InitWait while we are connected. It may
    // still map our old rings until it has closed, so no release yet.
    let mut fe = connected(Handshake::ConnectedAfterSetup);
    assert_eq!(
        backend(&mut fe, S::InitWait),
        [A::Disconnected, A::WriteOwnState(S::Closing)]
    );
    assert!(fe.holds_grants());
    assert_eq!(
        backend(&mut fe, S::Closing),
        [A::ReleaseGrants, A::WriteOwnState(S::Closed)]
    );
    assert_eq!(
        backend(&mut fe, S::Closed),
        [A::Reinitialise, A::WriteOwnState(S::Initialising)]
    );
    assert_eq!(backend(&mut fe, S::InitWait), [A::SetupRings]);
}

fn connected_reattaching(style: Handshake) -> Frontend {
    let mut fe = Frontend::new(style).with_rebind(Rebind::Reattach);
    driver(&mut fe, DriverEvent::Connect);
    backend(&mut fe, S::InitWait);
    driver(&mut fe, DriverEvent::SetupDone);
    backend(&mut fe, S::Connected);
    assert_eq!(fe.phase(), Phase::Connected);
    fe
}

#[test]
fn reattach_policy_keeps_the_rings_through_an_unbind_and_bind() {
    // Linux netback's dynamic unbind leaves its state at Connected; the bind
    // probes (InitWait) and re-attaches to our rings when it sees us Connected.
    for style in STYLES {
        let mut fe = connected_reattaching(style);
        assert_eq!(backend(&mut fe, S::InitWait), []);
        assert_eq!(fe.phase(), Phase::Connected);
        assert!(fe.is_reattaching());
        assert!(fe.holds_grants());
        assert_eq!(fe.own_state(), Some(S::Connected));
        // Repeated events change nothing.
        assert_eq!(backend(&mut fe, S::InitWait), []);
        assert_eq!(backend(&mut fe, S::Initialised), []);
        assert_eq!(backend(&mut fe, S::Connected), [A::Connected]);
        assert!(!fe.is_reattaching());
        assert_eq!(backend(&mut fe, S::Connected), []);
        // Ten more rounds.
        for _ in 0..10 {
            assert_eq!(backend(&mut fe, S::InitWait), []);
            assert!(fe.is_reattaching());
            assert_eq!(backend(&mut fe, S::Connected), [A::Connected]);
            assert!(!fe.is_reattaching());
        }
    }
}

#[test]
fn reattach_policy_still_resets_a_fresh_or_closing_backend() {
    let mut fe = connected_reattaching(Handshake::ConnectedAfterSetup);
    backend(&mut fe, S::InitWait);
    // Initialising is a back end created afresh: it knows nothing of our rings.
    assert_eq!(
        backend(&mut fe, S::Initialising),
        [A::Disconnected, A::WriteOwnState(S::Closing)]
    );
    assert!(!fe.is_reattaching());
    let mut fe = connected_reattaching(Handshake::ConnectedAfterSetup);
    backend(&mut fe, S::InitWait);
    assert_eq!(
        backend(&mut fe, S::Closing),
        [
            A::Disconnected,
            A::ReleaseGrants,
            A::WriteOwnState(S::Closed)
        ]
    );
    assert!(!fe.is_reattaching());
    assert_eq!(
        backend(&mut fe, S::Closed),
        [A::Reinitialise, A::WriteOwnState(S::Initialising)]
    );
    // A request to close while it is away starts the close handshake.
    let mut fe = connected_reattaching(Handshake::ConnectedAfterSetup);
    backend(&mut fe, S::InitWait);
    assert_eq!(
        driver(&mut fe, DriverEvent::RequestClose),
        [A::Disconnected, A::WriteOwnState(S::Closing)]
    );
    assert!(!fe.is_reattaching());
}

#[test]
fn reattach_policy_forgets_an_away_back_end_after_a_restore() {
    let mut fe = connected_reattaching(Handshake::ConnectedAfterSetup);
    backend(&mut fe, S::InitWait);
    driver(&mut fe, DriverEvent::Suspend);
    let acts = driver(&mut fe, DriverEvent::Resume { new_domain: true });
    assert_eq!(acts.first(), Some(&A::DiscardStaleRings));
    assert!(!fe.is_reattaching());
    assert_eq!(fe.phase(), Phase::Initialising);
}

#[test]
fn stale_connected_backend_at_start_is_reset() {
    let mut fe = Frontend::new(Handshake::InitialisedFirst);
    backend(&mut fe, S::Connected);
    // Connected to a previous instance of us: walk it through a close.
    assert_eq!(
        driver(&mut fe, DriverEvent::Connect),
        [
            A::WriteOwnState(S::Initialising),
            A::WriteOwnState(S::Closing)
        ]
    );
    assert_eq!(
        backend(&mut fe, S::Connected),
        [],
        "a re-fired watch changes nothing"
    );
    assert_eq!(
        backend(&mut fe, S::Closing),
        [A::WriteOwnState(S::Closed)],
        "no grants to release"
    );
    assert_eq!(
        backend(&mut fe, S::Closed),
        [A::Reinitialise, A::WriteOwnState(S::Initialising)]
    );
    assert_eq!(backend(&mut fe, S::InitWait), [A::SetupRings]);
}

#[test]
fn backend_closing_during_setup_is_handled_when_setup_ends() {
    let mut fe = Frontend::new(Handshake::ConnectedAfterSetup);
    driver(&mut fe, DriverEvent::Connect);
    backend(&mut fe, S::InitWait);
    assert_eq!(
        backend(&mut fe, S::Closing),
        [],
        "the driver is mid-transaction"
    );
    assert_eq!(
        driver(&mut fe, DriverEvent::SetupDone),
        [A::ReleaseGrants, A::WriteOwnState(S::Closed)]
    );
    assert_eq!(
        backend(&mut fe, S::Closed),
        [A::Reinitialise, A::WriteOwnState(S::Initialising)]
    );
}

#[test]
fn setup_failure_closes_and_stays_closed() {
    let mut fe = Frontend::new(Handshake::InitialisedFirst);
    driver(&mut fe, DriverEvent::Connect);
    backend(&mut fe, S::InitWait);
    assert_eq!(
        driver(&mut fe, DriverEvent::SetupFailed),
        [A::WriteOwnState(S::Closing)]
    );
    assert!(
        fe.holds_grants(),
        "partial grants wait for the back end to close"
    );
    assert_eq!(
        backend(&mut fe, S::Closing),
        [A::ReleaseGrants, A::WriteOwnState(S::Closed)]
    );
    assert_eq!(backend(&mut fe, S::Closed), [A::Closed]);
}

#[test]
fn close_requested_during_setup_waits_for_setup() {
    let mut fe = Frontend::new(Handshake::InitialisedFirst);
    driver(&mut fe, DriverEvent::Connect);
    backend(&mut fe, S::InitWait);
    assert_eq!(driver(&mut fe, DriverEvent::RequestClose), []);
    assert_eq!(
        driver(&mut fe, DriverEvent::SetupDone),
        [A::WriteOwnState(S::Closing)]
    );
    assert_eq!(
        backend(&mut fe, S::Closed),
        [A::ReleaseGrants, A::WriteOwnState(S::Closed), A::Closed]
    );
}

#[test]
fn close_before_setup_needs_no_handshake() {
    let mut fe = Frontend::new(Handshake::InitialisedFirst);
    driver(&mut fe, DriverEvent::Connect);
    assert_eq!(
        driver(&mut fe, DriverEvent::RequestClose),
        [A::WriteOwnState(S::Closed), A::Closed]
    );
}

#[test]
fn vanished_backend() {
    let mut fe = connected(Handshake::ConnectedAfterSetup);
    assert_eq!(
        step(&mut fe, Input::BackendVanished),
        [A::Disconnected, A::ReleaseGrants, A::Removed]
    );
    assert_eq!(fe.phase(), Phase::Removed);
    // Before the back end ever appeared, a missing node just means "not yet".
    let mut fe = Frontend::new(Handshake::ConnectedAfterSetup);
    driver(&mut fe, DriverEvent::Connect);
    assert_eq!(
        fe.handle_backend_value(None).map(|a| a.as_slice().to_vec()),
        Ok(Vec::new())
    );
    assert_eq!(fe.phase(), Phase::Initialising);
    assert_eq!(backend(&mut fe, S::Initialising), []);
    assert_eq!(
        fe.handle_backend_value(None).map(|a| a.as_slice().to_vec()),
        Ok(vec![A::Removed])
    );
}

#[test]
fn garbage_backend_state_strings_are_refused_without_effect() {
    let mut fe = connected(Handshake::InitialisedFirst);
    let before = fe.clone();
    for (bytes, err) in [
        (&b""[..], StateParseError::Empty),
        (b"9", StateParseError::OutOfRange),
        (b"42", StateParseError::OutOfRange),
        (b"4294967301", StateParseError::OutOfRange),
        (b"-5", StateParseError::NotDecimal),
        (b"5 ", StateParseError::NotDecimal),
        (b"5\0", StateParseError::NotDecimal),
        (b"Closing", StateParseError::NotDecimal),
        (&[0xC3, 0x28], StateParseError::NotDecimal),
    ] {
        assert_eq!(
            fe.handle_backend_value(Some(bytes)),
            Err(FrontendError::BadBackendState(err))
        );
        assert_eq!(fe, before);
    }
    // A valid value still works afterwards.
    assert_eq!(
        fe.handle_backend_value(Some(b"5"))
            .map(|a| a.as_slice().to_vec()),
        Ok(vec![
            A::Disconnected,
            A::ReleaseGrants,
            A::WriteOwnState(S::Closed)
        ])
    );
}

#[test]
fn unexpected_driver_events_are_refused_without_effect() {
    let mut fe = connected(Handshake::ConnectedAfterSetup);
    let before = fe.clone();
    for e in [
        DriverEvent::Connect,
        DriverEvent::SetupDone,
        DriverEvent::SetupFailed,
        DriverEvent::Resume { new_domain: true },
    ] {
        assert_eq!(
            fe.handle(Input::Driver(e)),
            Err(FrontendError::UnexpectedEvent {
                event: e,
                phase: Phase::Connected
            })
        );
        assert_eq!(fe, before);
    }
}

#[test]
fn cancelled_suspend_does_nothing() {
    for style in STYLES {
        let mut fe = connected(style);
        let before = fe.clone();
        assert_eq!(driver(&mut fe, DriverEvent::Suspend), []);
        assert_eq!(fe.phase(), Phase::Suspended);
        assert_eq!(backend(&mut fe, S::Connected), [], "recorded only");
        assert_eq!(
            driver(&mut fe, DriverEvent::Resume { new_domain: false }),
            []
        );
        assert_eq!(fe.phase(), Phase::Connected);
        assert_eq!(fe.own_state(), before.own_state());
        assert!(fe.holds_grants());
    }
    // A back-end change seen while suspended is acted on after the resume.
    let mut fe = connected(Handshake::ConnectedAfterSetup);
    driver(&mut fe, DriverEvent::Suspend);
    assert_eq!(backend(&mut fe, S::Closing), []);
    assert_eq!(
        driver(&mut fe, DriverEvent::Resume { new_domain: false }),
        [
            A::Disconnected,
            A::ReleaseGrants,
            A::WriteOwnState(S::Closed)
        ]
    );
}

#[test]
fn resume_in_a_new_domain_reconnects_from_scratch() {
    for style in STYLES {
        let mut fe = connected(style);
        driver(&mut fe, DriverEvent::Suspend);
        let mut trace: Vec<ResumeStep> = Vec::new();
        let record = |acts: &[Action], trace: &mut Vec<ResumeStep>| {
            for a in acts {
                trace.push(match a {
                    A::DiscardStaleRings => ResumeStep::DiscardStaleRings,
                    A::Reinitialise => ResumeStep::Reinitialise,
                    A::WriteOwnState(S::Initialising) => ResumeStep::WriteOwnState(S::Initialising),
                    A::WriteOwnState(S::Initialised | S::Connected)
                        if trace.last() == Some(&ResumeStep::SetupRings) =>
                    {
                        ResumeStep::Announce
                    }
                    A::WriteOwnState(_) => continue,
                    A::SetupRings => ResumeStep::SetupRings,
                    A::Connected => ResumeStep::Connected,
                    other => panic!("unexpected {other:?} during resume"),
                });
            }
        };
        let acts = driver(&mut fe, DriverEvent::Resume { new_domain: true });
        record(&acts, &mut trace);
        assert!(!fe.holds_grants());
        assert_eq!(
            fe.backend(),
            BackendSeen::NotSeen,
            "old observation discarded"
        );
        trace.push(ResumeStep::AwaitBackend(S::InitWait));
        record(&backend(&mut fe, S::InitWait), &mut trace);
        record(&driver(&mut fe, DriverEvent::SetupDone), &mut trace);
        trace.push(ResumeStep::AwaitBackend(S::Connected));
        record(&backend(&mut fe, S::Connected), &mut trace);
        assert_eq!(trace, sequence(true), "{style:?}");
        assert_eq!(fe.phase(), Phase::Connected);
    }
    assert_eq!(sequence(false), []);
}

#[test]
fn resume_in_a_new_domain_keeps_a_requested_close() {
    let mut fe = connected(Handshake::ConnectedAfterSetup);
    driver(&mut fe, DriverEvent::RequestClose);
    driver(&mut fe, DriverEvent::Suspend);
    assert_eq!(
        driver(&mut fe, DriverEvent::Resume { new_domain: true }),
        [A::DiscardStaleRings, A::WriteOwnState(S::Closed), A::Closed]
    );
}

// ---------------------------------------------------------------------------
// Model back end and exhaustive exploration
// ---------------------------------------------------------------------------

/// A back end following Linux netback (`ConnectedAfterSetup`) or blkback
/// (`InitialisedFirst`) `frontend_changed` rules, reacting to every write of the
/// front end's state (a xenstore watch fires on every write).
#[derive(Clone, Debug)]
struct ModelBackend {
    style: Handshake,
    state: S,
    /// Ring references are published by the front end (set up and not released).
    rings_published: bool,
    /// The back end maps the front end's rings.
    mapped: bool,
}

impl ModelBackend {
    fn set(&mut self, s: S) -> Option<S> {
        if s == self.state {
            return None;
        }
        match s {
            S::Connected => self.mapped = true,
            // netback unmaps when it goes Closing, blkback when it goes Closed.
            S::Closing if self.style == Handshake::ConnectedAfterSetup => self.mapped = false,
            S::Closed => self.mapped = false,
            _ => {}
        }
        self.state = s;
        Some(s)
    }

    /// Reacts to the front end writing `f`; returns the back end's new state.
    fn on_frontend(&mut self, f: S) -> Option<S> {
        match f {
            S::Initialising if self.state == S::Closed => self.set(S::InitWait),
            S::Initialised if self.style == Handshake::InitialisedFirst => self.connect(),
            S::Connected => self.connect(),
            S::Closing => self.set(S::Closing),
            S::Closed => self.set(S::Closed),
            _ => None,
        }
    }

    fn connect(&mut self) -> Option<S> {
        match self.state {
            S::Connected => None,
            S::InitWait | S::Initialised if self.rings_published => self.set(S::Connected),
            // No ring references to map: xenbus_dev_fatal -> Closing.
            S::InitWait | S::Initialised => self.set(S::Closing),
            _ => None,
        }
    }
}

#[derive(Default, Debug)]
struct Counts {
    setups: u32,
    releases: u32,
    releases_while_mapped: u32,
    steps: u32,
}

/// Runs front end and model back end (and a driver that sets up instantly)
/// until nothing changes; returns the counts.
fn run(fe: &mut Frontend, be: &mut ModelBackend, first: Vec<Input>, log: &mut String) -> Counts {
    let mut counts = Counts::default();
    let mut queue: VecDeque<Input> = first.into();
    while let Some(input) = queue.pop_front() {
        counts.steps += 1;
        assert!(counts.steps < 200, "no progress: {log}");
        let acts = match fe.handle(input) {
            Ok(a) => a,
            Err(e) => panic!("{input:?}: {e:?}\n{log}"),
        };
        log.push_str(&std::format!(
            "{input:?} -> {:?} => {:?}\n",
            acts.as_slice(),
            fe.phase()
        ));
        for a in acts.iter() {
            match *a {
                A::WriteOwnState(s) => {
                    if let Some(b) = be.on_frontend(s) {
                        queue.push_back(Input::Backend(b));
                    }
                }
                A::SetupRings => {
                    // The driver writes the ring references, then reports done.
                    be.rings_published = true;
                    counts.setups += 1;
                    queue.push_back(Input::Driver(DriverEvent::SetupDone));
                }
                A::ReleaseGrants | A::DiscardStaleRings => {
                    if *a == A::ReleaseGrants {
                        counts.releases += 1;
                        if be.mapped {
                            counts.releases_while_mapped += 1;
                        }
                    }
                    be.rings_published = false;
                }
                A::Connected | A::Disconnected | A::Reinitialise | A::Closed | A::Removed => {}
            }
        }
    }
    counts
}

#[test]
fn model_backend_full_lifecycles() {
    for style in STYLES {
        let mut fe = Frontend::new(style);
        let mut be = ModelBackend {
            style,
            state: S::InitWait,
            rings_published: false,
            mapped: false,
        };
        let mut log = String::new();
        let c = run(
            &mut fe,
            &mut be,
            vec![
                Input::Driver(DriverEvent::Connect),
                Input::Backend(S::InitWait),
            ],
            &mut log,
        );
        assert_eq!(
            (fe.phase(), be.state, c.setups),
            (Phase::Connected, S::Connected, 1),
            "{log}"
        );
        // Back end reloaded (unbind + rebind) behind our back.
        be = ModelBackend {
            style,
            state: S::InitWait,
            rings_published: false,
            mapped: false,
        };
        let c = run(
            &mut fe,
            &mut be,
            vec![Input::Backend(S::InitWait)],
            &mut log,
        );
        assert_eq!(
            (fe.phase(), be.state, c.setups, c.releases),
            (Phase::Connected, S::Connected, 1, 1),
            "{log}"
        );
        assert_eq!(c.releases_while_mapped, 0, "{log}");
        // Back end closes on its own (error / reload), then comes back.
        be.set(S::Closing);
        let c = run(&mut fe, &mut be, vec![Input::Backend(S::Closing)], &mut log);
        assert_eq!(
            (fe.phase(), be.state, c.setups, c.releases),
            (Phase::Connected, S::Connected, 1, 1),
            "{log}"
        );
        // Driver-requested close.
        let c = run(
            &mut fe,
            &mut be,
            vec![Input::Driver(DriverEvent::RequestClose)],
            &mut log,
        );
        assert_eq!(
            (fe.phase(), be.state, c.releases),
            (Phase::Closed, S::Closed, 1),
            "{log}"
        );
        if style == Handshake::ConnectedAfterSetup {
            assert_eq!(
                c.releases_while_mapped, 0,
                "netback unmaps on Closing: {log}"
            );
        }
    }
}

/// Checks one transition's safety properties.
fn check_transition(
    pre: &Frontend,
    input: Input,
    res: &Result<Actions, FrontendError>,
    post: &Frontend,
) {
    let ctx = || std::format!("{pre:?}\n  --{input:?}--> {res:?}\n  {post:?}");
    let acts = match res {
        Err(_) => {
            assert_eq!(pre, post, "an error must not change the machine: {}", ctx());
            return;
        }
        Ok(a) => a.as_slice(),
    };
    assert!(acts.len() <= 6, "{}", ctx());
    let has = |a: Action| acts.contains(&a);
    if has(A::ReleaseGrants) {
        assert!(
            matches!(
                post.backend(),
                BackendSeen::State(S::Closing | S::Closed) | BackendSeen::Vanished
            ),
            "ReleaseGrants before the back end closed: {}",
            ctx()
        );
    }
    if has(A::ReleaseGrants) || has(A::DiscardStaleRings) {
        assert!(pre.holds_grants() && !post.holds_grants(), "{}", ctx());
        assert_eq!(
            acts.iter()
                .filter(|a| matches!(a, A::ReleaseGrants | A::DiscardStaleRings))
                .count(),
            1
        );
    }
    if has(A::DiscardStaleRings) {
        assert_eq!(
            input,
            Input::Driver(DriverEvent::Resume { new_domain: true }),
            "{}",
            ctx()
        );
    }
    if pre.holds_grants() && !post.holds_grants() {
        assert!(
            has(A::ReleaseGrants) || has(A::DiscardStaleRings),
            "grants forgotten: {}",
            ctx()
        );
    }
    if has(A::SetupRings) {
        assert_eq!(acts.last(), Some(&A::SetupRings), "{}", ctx());
        assert!(
            post.holds_grants() && post.phase() == Phase::SettingUp,
            "{}",
            ctx()
        );
        assert!(
            matches!(
                post.backend(),
                BackendSeen::State(S::InitWait | S::Initialised)
            ),
            "{}",
            ctx()
        );
    }
    if has(A::Connected) {
        assert_eq!(
            post.backend(),
            BackendSeen::State(S::Connected),
            "{}",
            ctx()
        );
        assert_eq!(post.phase(), Phase::Connected, "{}", ctx());
    }
    if has(A::Disconnected) {
        // Connected, or suspended while connected (a cancelled suspend catching up).
        assert!(
            matches!(pre.phase(), Phase::Connected | Phase::Suspended),
            "{}",
            ctx()
        );
        assert_eq!(acts.first(), Some(&A::Disconnected), "{}", ctx());
    }
    for a in acts {
        if let A::WriteOwnState(s) = a {
            assert!(
                matches!(
                    s,
                    S::Initialising | S::Initialised | S::Connected | S::Closing | S::Closed
                ),
                "a front end never writes {s:?}: {}",
                ctx()
            );
        }
    }
    if matches!(
        post.phase(),
        Phase::Idle | Phase::Initialising | Phase::Closed | Phase::Removed
    ) {
        assert!(!post.holds_grants(), "{}", ctx());
    }
    if post.phase() == Phase::Connected {
        assert!(post.holds_grants(), "{}", ctx());
    }
}

/// Every machine a driver can start with: each handshake with each rebind
/// policy.
fn starts() -> Vec<Frontend> {
    let mut v = Vec::new();
    for style in STYLES {
        for rebind in [Rebind::Reset, Rebind::Reattach] {
            v.push(Frontend::new(style).with_rebind(rebind));
        }
    }
    v
}

/// Every state reachable from `start` by any input sequence.
fn reachable(start: Frontend) -> Vec<Frontend> {
    let inputs = all_inputs();
    let mut seen: HashSet<Frontend> = HashSet::new();
    let mut queue = VecDeque::from([start.clone()]);
    seen.insert(start);
    while let Some(fe) = queue.pop_front() {
        for input in &inputs {
            let mut next = fe.clone();
            let res = next.handle(*input);
            check_transition(&fe, *input, &res, &next);
            if seen.insert(next.clone()) {
                queue.push_back(next);
            }
        }
    }
    seen.into_iter().collect()
}

#[test]
fn exhaustive_transitions_are_safe() {
    for start in starts() {
        let reattach = start.rebind() == Rebind::Reattach;
        let states = reachable(start);
        if reattach {
            assert!(states.iter().any(|s| s.is_reattaching()));
        } else {
            assert!(states.iter().all(|s| !s.is_reattaching()));
        }
        // Every phase is reachable.
        for phase in [
            Phase::Idle,
            Phase::Initialising,
            Phase::SettingUp,
            Phase::Announced,
            Phase::Connected,
            Phase::Closing,
            Phase::ClosedWait,
            Phase::Closed,
            Phase::Removed,
            Phase::Suspended,
        ] {
            assert!(
                states.iter().any(|s| s.phase() == phase),
                "{phase:?} unreachable"
            );
        }
        assert!(states.len() > 100, "explored {} states", states.len());
    }
}

#[test]
fn every_reachable_state_reconnects_with_a_cooperative_backend() {
    // Liveness: from any reachable state, a well-behaved back end that starts
    // in the state the front end last saw (or a fresh one) ends Connected with
    // the front end, or both Closed if a close was requested.
    let mut checked = 0;
    for machine in starts() {
        let style = machine.handshake();
        for start in reachable(machine) {
            let mut first = Vec::new();
            let mut fe = start.clone();
            // Bring the driver side to a point where it waits on the back end:
            // resume if suspended, start if idle, finish a setup under way.
            let mut probe = fe.clone();
            let mut new_setup = false;
            if probe.phase() == Phase::Suspended {
                let resume = Input::Driver(DriverEvent::Resume { new_domain: false });
                new_setup = probe
                    .handle(resume)
                    .is_ok_and(|a| a.as_slice().contains(&A::SetupRings));
                first.push(resume);
            }
            match probe.phase() {
                Phase::Removed | Phase::Closed => continue,
                Phase::Idle => first.push(Input::Driver(DriverEvent::Connect)),
                Phase::SettingUp if !new_setup => first.push(Input::Driver(DriverEvent::SetupDone)),
                _ => {}
            }
            let b = match fe.backend() {
                BackendSeen::Vanished => continue,
                BackendSeen::State(S::Reconfiguring | S::Reconfigured) => continue,
                // A back end not yet probed (or unknown) probes now and waits.
                BackendSeen::NotSeen | BackendSeen::State(S::Unknown | S::Initialising) => {
                    first.push(Input::Backend(S::InitWait));
                    S::InitWait
                }
                BackendSeen::State(s) => s,
            };
            let published = fe.holds_grants();
            let mut be = ModelBackend {
                style,
                state: b,
                rings_published: published,
                mapped: b == S::Connected,
            };
            // The back end's watch on our state fires once when it (re)starts.
            if let Some(own) = fe.own_state()
                && let Some(nb) = be.on_frontend(own)
            {
                first.push(Input::Backend(nb));
            }
            let mut log = std::format!("start {start:?} backend {b:?}\n");
            let c = run(&mut fe, &mut be, first, &mut log);
            let want_closed = fe.close_requested();
            if want_closed {
                assert_eq!((fe.phase(), be.state), (Phase::Closed, S::Closed), "{log}");
            } else {
                assert_eq!(
                    (fe.phase(), be.state),
                    (Phase::Connected, S::Connected),
                    "{log}"
                );
                assert!(c.setups <= 1, "{log}");
            }
            if style == Handshake::ConnectedAfterSetup {
                assert_eq!(c.releases_while_mapped, 0, "{log}");
            }
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} starting states checked");
}

// ---------------------------------------------------------------------------
// Device enumeration
// ---------------------------------------------------------------------------

#[test]
fn device_entries_parse() {
    let d = FrontendDevice::parse("device/vif/0");
    assert_eq!(
        d.map(|d| (d.class.as_str(), d.id)),
        Ok(("vif", DeviceId(0)))
    );
    let d = FrontendDevice::parse("device/vbd/51712");
    assert_eq!(
        d.map(|d| (d.class.as_str(), d.id)),
        Ok(("vbd", DeviceId(51712)))
    );
    assert_eq!(
        FrontendDevice::new("9pfs", "3").map(|d| d.id),
        Ok(DeviceId(3))
    );
    let d = FrontendDevice::parse("device/vif/12").expect("device");
    let mut s = String::new();
    d.write_node(&mut s, "state").expect("fmt");
    assert_eq!(s, "device/vif/12/state");
    assert_eq!(std::format!("{d}"), "device/vif/12");

    use DeviceError::*;
    for (path, err) in [
        ("", BadShape),
        ("device", BadShape),
        ("device/vif", BadShape),
        ("device/vif/0/state", BadShape),
        ("devices/vif/0", BadShape),
        ("/device/vif/0", BadShape),
        ("device//0", Empty),
        ("device/vif/", Empty),
        ("device/VIF/0", BadCharacter),
        ("device/-vif/0", BadCharacter),
        ("device/v.f/0", BadCharacter),
        ("device/v f/0", BadCharacter),
        ("device/abcdefghijklmnopqrstuvwxyz0123456/0", TooLong),
        ("device/vif/00", NotDecimal),
        ("device/vif/+1", NotDecimal),
        ("device/vif/-1", NotDecimal),
        ("device/vif/0x1", NotDecimal),
        ("device/vif/4294967296", OutOfRange),
        ("device/vif/99999999999", OutOfRange),
    ] {
        assert_eq!(FrontendDevice::parse(path), Err(err), "{path:?}");
    }
    assert_eq!(DeviceId::parse("4294967295"), Ok(DeviceId(u32::MAX)));
}

#[test]
fn backend_id_parses() {
    assert_eq!(parse_backend_id(b"0"), Ok(0));
    assert_eq!(parse_backend_id(b"32751"), Ok(0x7FEF));
    use DeviceError::*;
    for (v, err) in [
        (&b""[..], Empty),
        (b"32752", OutOfRange),
        (b"65535", OutOfRange),
        (b"4294967296", OutOfRange),
        (b"01", NotDecimal),
        (b"-0", NotDecimal),
        (b"1 ", NotDecimal),
        (b"1\0", NotDecimal),
        (&[0xFF], NotDecimal),
    ] {
        assert_eq!(parse_backend_id(v), Err(err), "{v:?}");
    }
}

#[test]
fn backend_paths_parse_and_check() {
    let p = BackendPath::parse(b"/local/domain/0/backend/vif/5/0").expect("path");
    assert_eq!(
        (p.backend_domid, p.class.as_str(), p.frontend_domid, p.id),
        (0, "vif", 5, DeviceId(0))
    );
    assert_eq!(p.as_str(), "/local/domain/0/backend/vif/5/0");
    let mut s = String::new();
    p.write_node(&mut s, "state").expect("fmt");
    assert_eq!(s, "/local/domain/0/backend/vif/5/0/state");

    let dev = FrontendDevice::parse("device/vif/0").expect("device");
    assert_eq!(p.check(&dev, 0, Some(5)), Ok(()));
    assert_eq!(p.check(&dev, 0, None), Ok(()));
    assert_eq!(
        p.check(&dev, 1, Some(5)),
        Err(DeviceError::Mismatch),
        "backend-id disagrees"
    );
    assert_eq!(
        p.check(&dev, 0, Some(6)),
        Err(DeviceError::Mismatch),
        "not our domain"
    );
    let vbd = FrontendDevice::parse("device/vbd/0").expect("device");
    assert_eq!(
        p.check(&vbd, 0, Some(5)),
        Err(DeviceError::Mismatch),
        "other class"
    );
    let vif1 = FrontendDevice::parse("device/vif/1").expect("device");
    assert_eq!(
        p.check(&vif1, 0, Some(5)),
        Err(DeviceError::Mismatch),
        "other device"
    );
    // A driver domain back end.
    let p = BackendPath::parse(b"/local/domain/3/backend/vbd/7/51712").expect("path");
    assert_eq!((p.backend_domid, p.id), (3, DeviceId(51712)));

    use DeviceError::*;
    let long = [b'a'; 3073];
    for (v, err) in [
        (&b""[..], Empty),
        (&long[..], TooLong),
        (b"/local/domain/0/backend/vif/5/0/", BadShape),
        (b"local/domain/0/backend/vif/5/0", BadShape),
        (b"/local/domain/0/frontend/vif/5/0", BadShape),
        (b"/local/domain/0/backend/vif/5", BadShape),
        (b"/local/domain//backend/vif/5/0", Empty),
        (b"/local/domain/0/backend/vif/5/0 ", BadCharacter),
        (b"/local/domain/0/backend/vif/5/0\0", BadCharacter),
        (b"/local/domain/0/backend/vif/5/../0", BadCharacter),
        (b"/local/domain/0/backend/v\xC3\xA9/5/0", BadCharacter),
        (b"/local/domain/32752/backend/vif/5/0", OutOfRange),
        (b"/local/domain/0/backend/vif/99999/0", OutOfRange),
        (b"/local/domain/00/backend/vif/5/0", NotDecimal),
        (b"/local/domain/0/backend/Vif/5/0", BadCharacter),
        (b"/local/domain/0/backend/vif/5/x", NotDecimal),
    ] {
        assert_eq!(
            BackendPath::parse(v).map(|p| p.as_str()),
            Err(err),
            "{:?}",
            String::from_utf8_lossy(v)
        );
    }
}

#[test]
fn device_parsers_never_panic_on_short_inputs() {
    // Every string of up to 3 bytes over an alphabet of interesting bytes.
    let alphabet = b"0159/ad-_@ \0\xFF";
    let mut inputs: Vec<Vec<u8>> = vec![Vec::new()];
    for _ in 0..3 {
        let mut next = Vec::new();
        for i in &inputs {
            for c in alphabet {
                let mut j = i.clone();
                j.push(*c);
                next.push(j);
            }
        }
        inputs.extend(next);
    }
    inputs.sort();
    inputs.dedup();
    let mut ok = 0;
    for v in &inputs {
        if parse_backend_id(v).is_ok() {
            ok += 1;
        }
        let _ = BackendPath::parse(v);
        if let Ok(s) = core::str::from_utf8(v) {
            let _ = DeviceClass::parse(s);
            let _ = DeviceId::parse(s);
            let _ = FrontendDevice::parse(s);
        }
    }
    // "0", "1", "5", "9", two- and three-digit canonical numbers.
    assert!(ok > 10);
}

#[test]
fn errors_display() {
    use std::string::ToString;
    assert_eq!(
        FrontendError::BadBackendState(StateParseError::NotDecimal).to_string(),
        "back-end state is not a decimal number"
    );
    let e = FrontendError::UnexpectedEvent {
        event: DriverEvent::SetupDone,
        phase: Phase::Closed,
    };
    assert_eq!(
        e.to_string(),
        "driver event SetupDone unexpected in phase Closed"
    );
    assert_eq!(
        DeviceError::NotDecimal.to_string(),
        "not a plain decimal number"
    );
}

// --- the resume sequence every front end shares, as the tests expect it --------

use xen_abi::xenbus::XenbusState;
//
// After a resume in a new domain (xen-frontend's `Device::resume` carries it out;
// Linux's `xenbus_dev_resume` does the same): drop the old rings without ending
// access, reset per-connection state, write Initialising, wait for InitWait, set
// up and announce, wait for Connected. After a cancelled suspend: nothing.

/// One step of a resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ResumeStep {
    /// Drop the old ring state without ending access (the grants are stale).
    DiscardStaleRings,
    /// Reset per-connection driver state.
    Reinitialise,
    /// Write this value to our `state` node.
    WriteOwnState(XenbusState),
    /// Wait until the back end reaches this state.
    AwaitBackend(XenbusState),
    /// Grant the rings and write their references.
    SetupRings,
    /// Announce: Initialised or Connected, per [`crate::Handshake`].
    Announce,
    /// The device is live again.
    Connected,
}

/// After resuming in a new domain (for a device that was connected).
const NEW_DOMAIN: &[ResumeStep] = &[
    ResumeStep::DiscardStaleRings,
    ResumeStep::Reinitialise,
    ResumeStep::WriteOwnState(XenbusState::Initialising),
    ResumeStep::AwaitBackend(XenbusState::InitWait),
    ResumeStep::SetupRings,
    ResumeStep::Announce,
    ResumeStep::AwaitBackend(XenbusState::Connected),
    ResumeStep::Connected,
];

/// After a cancelled suspend: nothing.
const CANCELLED: &[ResumeStep] = &[];

/// The sequence for a resume.
const fn sequence(new_domain: bool) -> &'static [ResumeStep] {
    if new_domain { NEW_DOMAIN } else { CANCELLED }
}
