//! Fuzz target: the iperf3 control channel (`net_services::iperf3`).
//!
//! Byte 0 picks the mode. Even: the rest goes straight into the parameter
//! and client-results JSON parsers (no panic; accepted parameters are within
//! iperf3's bounds). Odd: the rest is a stream of operations on one
//! `Server` — accept / receive (arbitrary bytes, or a canned valid cookie,
//! parameter frame, results frame or state byte, so deep phases are reached)
//! / transmit / take_close / peer close / time passing. The server must
//! never panic, never hand out more bytes than the buffer holds, and forget
//! a connection once it says how to close it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use net_services::iperf3::{
    ConnId, MAX_STREAMS, Server, ServerConfig, parse_client_results, parse_params,
};

const COOKIE: &[u8; 37] = b"fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz\0";

fn frame(json: &[u8]) -> Vec<u8> {
    let mut v = (json.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(json);
    v
}

fn canned(k: u8) -> Vec<u8> {
    match k % 8 {
        0 => COOKIE.to_vec(),
        1 => frame(br#"{"tcp":true,"omit":0,"time":2,"parallel":1,"len":131072,"client_version":"3.12"}"#),
        2 => frame(br#"{"tcp":true,"omit":1,"time":2,"parallel":2,"reverse":true}"#),
        3 => frame(br#"{"tcp":true,"time":0,"num":1000,"parallel":2,"bidirectional":true}"#),
        4 => frame(br#"{"cpu_util_total":1,"cpu_util_user":0,"cpu_util_system":1,"sender_has_retransmits":0,"streams":[{"id":1,"bytes":5}]}"#),
        5 => vec![4],  // TEST_END
        6 => vec![16], // IPERF_DONE
        _ => vec![12], // CLIENT_TERMINATE
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(p) = parse_params(rest, MAX_STREAMS) {
            assert!((1..=MAX_STREAMS).contains(&p.parallel));
            assert!(!(p.reverse && p.bidirectional));
            let _ = p.client_version();
        }
        if let Ok(r) = parse_client_results(rest) {
            assert!(r.streams as usize <= rest.len());
        }
        return;
    }
    let cfg = ServerConfig {
        max_conns: 6,
        max_parallel: 4,
        handshake_timeout_us: 3_000_000,
        stall_timeout_us: 2_000_000,
        grace_s: 1,
    };
    let mut s = Server::new(cfg);
    let mut now: u64 = 0;
    let mut buf = [0u8; 512];
    let mut i = 0;
    while let Some(&op) = rest.get(i) {
        let arg = rest.get(i + 1).copied().unwrap_or(0);
        i += 2;
        let id = ConnId(usize::from(op >> 4) % 7); // one id past the table
        match op % 8 {
            0 => {
                let _ = s.accept(id, now);
            }
            1 => s.receive(id, &canned(arg), now),
            2 => {
                let tail = rest.get(i..).unwrap_or(&[]);
                let n = usize::from(arg).min(tail.len());
                s.receive(id, &tail[..n], now);
                i += n;
            }
            3 => {
                let len = usize::from(arg) % (buf.len() + 1);
                let wants = s.wants_transmit(id);
                let n = s.poll_transmit(id, &mut buf[..len], now);
                assert!(n <= len);
                if len > 0 && wants {
                    assert!(n > 0, "wants_transmit promised bytes");
                }
            }
            4 => {
                if s.take_close(id).is_some() {
                    assert!(!s.is_open(id));
                    assert_eq!(s.take_close(id), None);
                }
            }
            5 => {
                s.closed(id, now);
                assert!(!s.is_open(id));
            }
            6 => {
                now += u64::from(arg) * 50_000;
                s.poll(now);
                if let Some(at) = s.poll_at() {
                    // poll_at is never in the past after a poll.
                    assert!(at > now);
                }
            }
            _ => {
                let _ = s.next_event();
            }
        }
    }
    let st = s.stats();
    assert!(st.tests_completed + st.tests_aborted <= rest.len() as u64);
});
