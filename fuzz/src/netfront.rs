//! `netfront_hostile`: a byte-driven hostile netback session against `netfront::NetFront`.
//!
//! Shared by the fuzz target and by netfront's own tests (which include this
//! file and run it over a pseudo-random corpus, so a plain `cargo test`
//! exercises the same body without cargo-fuzz).

use netfront::NetError;
use netfront::sim::{
    RingSel, RxCorruption, SimNetConfig, SimRxPacket, SimWorld, TxCorruption, buffer_config,
};
use xen_abi::netif::NetifExtraInfo;
use xenbus::XenbusState;

/// An Ethernet/IPv4/TCP frame of `len` (at least 54) bytes filled with
/// `fill`; its IP total length matches the frame if `honest`, else it claims
/// 64 KiB. Checksums are left as they fall.
fn tcp_frame(len: usize, fill: u8, honest: bool) -> Vec<u8> {
    let mut f = vec![fill; len.max(54)];
    f[12] = 0x08;
    f[13] = 0x00;
    f[14] = 0x45;
    let total = if honest {
        (f.len() - 14) as u16
    } else {
        u16::MAX
    };
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[20] = 0;
    f[21] = 0;
    f[23] = 6;
    f[14 + 20 + 12] = 0x50;
    f
}

/// Runs a session driven by `data` (the `netfront_hostile` fuzz target's
/// body): a connected driver against a back end that, per input byte, delivers
/// good or corrupted packets, writes raw rx/tx response slots, jumps
/// `rsp_prod`, closes, reloads, or the domain is saved and restored; the
/// driver receives, transmits, reclaims, re-arms and reconnects in between.
///
/// Checked after every step (a violation panics): the driver never holds more
/// grants or pages than its buffers and rings need; a fault is sticky (every
/// rx/tx call reports it) until a reconnect; frames delivered are never
/// longer than the largest packet. At the end the driver must reconnect and
/// carry a packet each way.
pub fn hostile_session(data: &[u8]) {
    let config = buffer_config(8, 4, 2);
    let budget = u64::from(config.rx_buffers) + u64::from(config.tx_buffers) + 2;
    let mut w = SimWorld::new(SimNetConfig {
        mtu: Some(b"9000".to_vec()),
        ..SimNetConfig::default()
    });
    let mut nf = w.connect(config);
    let mut it = data.iter().copied();
    let mut next = move || it.next();
    let mut steps = 0;
    let mut clock = 0u64;
    while let Some(op) = next() {
        steps += 1;
        if steps > 400 {
            break;
        }
        let mut arg = [0u8; 8];
        for a in &mut arg {
            *a = next().unwrap_or(0);
        }
        let a16 = u16::from_le_bytes([arg[0], arg[1]]);
        match op % 16 {
            0 => {
                if arg[6] & 2 != 0 {
                    // A TCP/IPv4 GSO packet of up to 6 pages (with two extras,
                    // the 8 rx buffers the session posts), its IP length right or not, with
                    // a GSO extra of any type and size.
                    let len = 54 + usize::from(a16) % (6 * 4096 - 54);
                    let mut p = SimRxPacket::new(&tcp_frame(len, arg[2], arg[7] & 1 != 0));
                    p.flags = u16::from(arg[3]) & 0x1f;
                    p.extras.push(NetifExtraInfo::gso(
                        u16::from(arg[4]) * 23,
                        arg[5] % 3,
                        0,
                        arg[7] & 2,
                    ));
                    if arg[6] & 1 != 0 {
                        p.extras.push(NetifExtraInfo::from_bytes(&arg));
                    }
                    w.back.inject(p);
                } else {
                    let len = 14 + usize::from(a16) % 9000;
                    let mut p = SimRxPacket::new(&vec![arg[2]; len]);
                    p.flags = u16::from(arg[3]) & 0x1f;
                    p.chunk = 1 + usize::from(arg[4]) * 17;
                    p.offset = u16::from(arg[5]) * 16;
                    if arg[6] & 1 != 0 {
                        p.extras.push(NetifExtraInfo::from_bytes(&arg));
                    }
                    w.back.inject(p);
                }
            }
            1 => w.back.push_raw_rx(&[arg]),
            2 => w.back.push_raw_tx(&[[arg[0], arg[1], arg[2], arg[3]]]),
            3 => {
                let ring = if arg[0] & 1 == 0 {
                    RingSel::Rx
                } else {
                    RingSel::Tx
                };
                w.back.jump_rsp_prod(ring, u32::from(arg[1]));
            }
            4 => {
                for _ in 0..64 {
                    match nf.receive(|f| f.len()) {
                        Ok(Some(len)) => assert!(len <= netfront::rx::RX_MAX_PACKET),
                        Ok(None) => break,
                        Err(NetError::Rx(_)) => {}
                        Err(_) => break,
                    }
                }
            }
            5 => {
                if arg[3] & 1 == 0 {
                    let len = usize::from(a16) % 10000;
                    let _ = nf.transmit(len, |b| b.fill(arg[2]));
                } else {
                    // A TSO frame through the smoltcp token (a GSO extra slot,
                    // or segmented here), of any size and segment size.
                    use smoltcp::phy::{Device, TxToken};
                    let len = usize::from(a16);
                    let mut meta = smoltcp::phy::PacketMeta::default();
                    meta.segmentation_offload_size =
                        core::num::NonZeroU16::new(u16::from_le_bytes([arg[4], arg[5]]));
                    if let Some(mut t) = Device::transmit(&mut nf, smoltcp::time::Instant::ZERO) {
                        t.set_meta(meta);
                        let f = tcp_frame(len, arg[2], arg[7] & 1 != 0);
                        t.consume(len, |b| {
                            let n = b.len().min(f.len());
                            b[..n].copy_from_slice(&f[..n]);
                        });
                    }
                    let _ = nf.flush_tx();
                }
            }
            6 => {
                if arg[0] & 1 == 0 {
                    let _ = nf.poll_tx();
                } else {
                    // The tx watchdog, at a clock that only moves forward.
                    clock = clock.saturating_add(u64::from(a16));
                    let _ = nf.check_tx_progress(clock);
                    let _ = nf.tx_watchdog_deadline_ms();
                    // The rx watchdog and the retries, on the same clock.
                    let _ = nf.check_rx_progress(clock);
                    let _ = nf.rx_watchdog_deadline_ms();
                    let _ = nf.poll(&mut w.xs, clock);
                }
            }
            7 | 8 => {
                w.back.service();
            }
            9 => {
                let c = match arg[0] % 7 {
                    0 => RxCorruption::StaleId,
                    1 => RxCorruption::Id(a16),
                    2 => RxCorruption::Status(i16::from_le_bytes([arg[2], arg[3]])),
                    3 => RxCorruption::Offset(u16::from_le_bytes([arg[2], arg[3]])),
                    4 => RxCorruption::ExtraType(arg[2]),
                    5 => RxCorruption::EndlessExtras(u16::from(arg[2] % 16)),
                    _ => RxCorruption::DanglingMoreData,
                };
                w.back.corrupt_next_rx(c);
            }
            10 => {
                let c = match arg[0] % 3 {
                    0 => TxCorruption::StaleId,
                    1 => TxCorruption::Id(a16),
                    _ => TxCorruption::Status(i16::from_le_bytes([arg[2], arg[3]])),
                };
                w.back.corrupt_next_tx(c);
            }
            11 => {
                let _ = nf.rearm();
            }
            12 => {
                let _ = nf.reconnect(&mut w.xs);
                let _ = w.pump(&mut nf);
            }
            13 => {
                if nf.suspend().is_ok() {
                    w.back.new_domain(None);
                    let _ = w.restore();
                    let _ = nf.resume(&mut w.xs, true);
                    let _ = w.pump(&mut nf);
                }
            }
            14 => {
                let state = if arg[0] & 1 == 0 {
                    XenbusState::Closing
                } else {
                    XenbusState::Closed
                };
                w.back.drop_connection(state);
                let _ = w.pump(&mut nf);
            }
            _ => {
                if arg[0] & 1 == 0 {
                    w.back.hold_tx(arg[1] & 1 == 0);
                } else {
                    w.back.reload();
                    let _ = w.pump(&mut nf);
                }
            }
        }
        // Invariants.
        let st = w.grants.with_table(|t| t.stats());
        assert!(
            u64::from(st.active) <= budget,
            "grant leak: {st:?} (budget {budget})"
        );
        assert!(
            w.pages.live() <= budget + u64::from(st.deferred),
            "page leak: {} live",
            w.pages.live()
        );
        if let Some(f) = nf.fault() {
            assert_eq!(nf.receive(|_| ()), Err(NetError::Faulted(f)));
            assert_eq!(nf.transmit(60, |_| ()), Err(NetError::Faulted(f)));
        }
    }
    // Recovery: whatever happened, a reconnect to a back end that behaves
    // brings the device back, and a packet passes each way.
    w.back.reset_knobs();
    let _ = nf.reconnect(&mut w.xs);
    let _ = w.pump(&mut nf);
    assert!(
        nf.is_up(),
        "no recovery: {:?} back {:?}",
        nf.phase(),
        w.back.state()
    );
    w.back.take_sent();
    let probe = vec![0x5a; 300];
    w.back.inject(SimRxPacket::new(&probe));
    let (frames, errors) = w.receive_all(&mut nf);
    assert_eq!(frames, vec![probe], "rx does not recover: {errors:?}");
    nf.transmit(300, |b| b.fill(0xa5))
        .unwrap_or_else(|e| panic!("tx does not recover: {e:?}"));
    w.back.service();
    assert_eq!(
        w.back.take_sent(),
        vec![vec![0xa5; 300]],
        "tx does not recover"
    );
    assert!(w.grants.with_table(|t| t.stats().active) as u64 <= budget);
    // Closing ends every grant and returns every page (dropping a driver that
    // still holds grants would leak their pages, by design).
    let _ = nf.close(&mut w.xs);
    let _ = w.pump(&mut nf);
    let st = w.grants.with_table(|t| t.stats());
    assert_eq!(st.active, 0, "grants left after close: {st:?}");
    w.grants.poll_deferred(&w.pages);
    assert_eq!(w.pages.live(), 0, "pages left after close");
}
