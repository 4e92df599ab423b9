//! Fuzz target: a hostile netback against `netfront::NetFront` (io/netif.h).
//!
//! The input drives `xenrs_fuzz::netfront_hostile::hostile_session` (fuzz/src/netfront.rs): corrupted and raw rx/tx
//! response slots, `rsp_prod` jumps, closes, reloads and save/restore, with
//! the driver receiving, transmitting and reconnecting in between. The
//! driver must never panic, never leak grants or pages, keep a fault sticky
//! until it reconnects, and work again after a reconnect.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xenrs_fuzz::netfront_hostile::hostile_session(data);
});
