//! Fuzz target: arbitrary response-ring bytes into the xenstore decoder and client.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xenrs_fuzz::xenstore_decoder::run(data);
});
