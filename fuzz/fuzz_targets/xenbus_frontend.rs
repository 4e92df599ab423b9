//! Fuzz target: arbitrary back-end `state` values and driver events into the
//! shared `xenbus::Frontend` state machine.
//!
//! Byte 0 picks the handshake; then each byte is an input: 0..=9 a back-end
//! value (the next `len` bytes, raw, possibly garbage), 10 a vanished node,
//! 11.. a driver event. Checks: no panic, errors change nothing, grants are
//! released only once the back end is Closing/Closed/gone, and never forgotten.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenbus::XenbusState;
use xenbus::frontend::{Action, BackendSeen, DriverEvent, Frontend, Handshake, Input};

const EVENTS: [DriverEvent; 7] = [
    DriverEvent::Connect,
    DriverEvent::SetupDone,
    DriverEvent::SetupFailed,
    DriverEvent::RequestClose,
    DriverEvent::Suspend,
    DriverEvent::Resume { new_domain: false },
    DriverEvent::Resume { new_domain: true },
];

fuzz_target!(|data: &[u8]| {
    let Some((&style, mut rest)) = data.split_first() else {
        return;
    };
    let style = if style & 1 == 0 {
        Handshake::InitialisedFirst
    } else {
        Handshake::ConnectedAfterSetup
    };
    let mut fe = Frontend::new(style);
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let before = fe.clone();
        let res = match op % 18 {
            n @ 0..=9 => {
                let len = (usize::from(n) % 4).min(rest.len());
                let (value, tail) = rest.split_at(len);
                rest = tail;
                fe.handle_backend_value(Some(value))
            }
            10 => fe.handle_backend_value(None),
            n => fe.handle(Input::Driver(EVENTS[usize::from(n - 11) % EVENTS.len()])),
        };
        let Ok(acts) = res else {
            assert_eq!(fe, before, "an error changed the machine");
            continue;
        };
        let acts = acts.as_slice();
        if acts.contains(&Action::ReleaseGrants) {
            assert!(matches!(
                fe.backend(),
                BackendSeen::State(XenbusState::Closing | XenbusState::Closed)
                    | BackendSeen::Vanished
            ));
        }
        if before.holds_grants() && !fe.holds_grants() {
            assert!(
                acts.iter()
                    .any(|a| matches!(a, Action::ReleaseGrants | Action::DiscardStaleRings))
            );
        }
    }
});
