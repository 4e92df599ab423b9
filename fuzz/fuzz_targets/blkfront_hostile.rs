//! Fuzz target: a hostile blkback against `blkfront::BlkFront` (io/blkif.h).
//!
//! The input drives `xenrs_fuzz::blkfront_hostile::hostile_session`
//! (fuzz/src/blkfront.rs), which blkfront's tests also run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xenrs_fuzz::blkfront_hostile::hostile_session(data);
});
