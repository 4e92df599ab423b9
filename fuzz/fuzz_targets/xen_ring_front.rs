//! Fuzz target: a hostile back end against `xen_ring::FrontRing` (io/ring.h).
//!
//! Each input byte pair is one operation: the front end produces, pushes,
//! consumes and final-checks; the "back end" stores arbitrary `rsp_prod` /
//! `req_event` values and scribbles arbitrary bytes over entries and the
//! front end's own header fields. The front ring must never panic, never
//! count more responses than requests it pushed, and stay broken once broken.
#![no_main]

use core::sync::atomic::Ordering::{Relaxed, Release};

use libfuzzer_sys::fuzz_target;
use xen_ring::sim::VecRing;
use xen_ring::{FrontRing, RingError, RingIndex, RingLayout, SharedRing};

fuzz_target!(|data: &[u8]| {
    let Some((&shape, ops)) = data.split_first() else {
        return;
    };
    let entries = 1u32 << (shape % 4); // 1, 2, 4 or 8 entries of 8 bytes
    let Ok(layout) = RingLayout::with_entries(4096, 8, entries) else {
        return;
    };
    let mem = VecRing::new(4096);
    let start = u32::from(shape).wrapping_mul(0x0101_0101).wrapping_sub(3);
    for idx in [RingIndex::ReqProd, RingIndex::RspProd] {
        mem.store(idx, start, Relaxed);
    }
    let Ok(mut front) = FrontRing::<[u8; 8], [u8; 4]>::attach(layout, &mem, start) else {
        return;
    };
    let mut pushed = 0u64;
    let mut consumed = 0u64;
    let mut broken = false;
    for op in ops.chunks_exact(5) {
        let arg = u32::from_le_bytes([op[1], op[2], op[3], op[4]]);
        let [kind, a, b, c, d] = [op[0], op[1], op[2], op[3], op[4]];
        let res = match kind % 9 {
            0 => front.produce(&mem, &[a, b, c, d, a, b, c, d]).map(|_| ()),
            1 => {
                let before = front.unpushed();
                front
                    .push_requests_and_check_notify(&mem)
                    .map(|_| pushed += u64::from(before))
            }
            2 => front
                .next_response(&mem)
                .map(|r| consumed += u64::from(r.is_some())),
            3 => front.final_check_for_responses(&mem).map(|_| ()),
            4 => front.consume_responses(&mem, |_| consumed += 1).map(|_| ()),
            // Hostile back end.
            5 => {
                mem.store(RingIndex::RspProd, start.wrapping_add(arg % 64), Release);
                Ok(())
            }
            6 => {
                mem.store(RingIndex::RspProd, arg, Release);
                Ok(())
            }
            7 => {
                mem.store(RingIndex::ReqEvent, arg, Relaxed);
                Ok(())
            }
            _ => {
                mem.poke(arg as usize % 4096, &[a, b, c, d]);
                Ok(())
            }
        };
        match res {
            Err(RingError::Backend(_)) => broken = true,
            Err(RingError::Full) => assert!(!broken && front.is_full()),
            Ok(()) => assert!(!broken || kind % 9 >= 5, "a broken ring kept working"),
        }
        assert!(front.in_flight() <= front.size());
        assert!(
            consumed <= pushed,
            "consumed {consumed} responses for {pushed} requests"
        );
    }
});
