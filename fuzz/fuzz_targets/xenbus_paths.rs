//! Fuzz target: arbitrary bytes into the xenbus device parsers (`device/<class>/<id>`,
//! `backend`, `backend-id`, and the xenbus `state` value). No panics; every
//! accepted value round-trips through its printed form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenbus::{BackendPath, FrontendDevice, XenbusState, parse_backend_id};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = XenbusState::parse(data) {
        assert_eq!(XenbusState::parse(s.as_str().as_bytes()), Ok(s));
    }
    if let Ok(id) = parse_backend_id(data) {
        assert!(id < 0x7FF0);
    }
    if let Ok(p) = BackendPath::parse(data) {
        assert_eq!(p.as_str().as_bytes(), data);
        let mut node = String::new();
        let _ = p.write_node(&mut node, "state");
        assert!(node.ends_with("/state"));
    }
    if let Ok(s) = core::str::from_utf8(data) {
        if let Ok(d) = FrontendDevice::parse(s) {
            assert_eq!(d.to_string(), s, "device paths are canonical");
        }
    }
});
