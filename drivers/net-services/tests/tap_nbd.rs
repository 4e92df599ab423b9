//! End to end: the guest's NBD service ([`Services`] over smoltcp) on a TAP device against the real NBD clients.
//!
//! Like `tap_iperf3.rs`, the test re-runs itself inside a private network
//! namespace (`unshare --net`, as root), creates a TAP device there, gives
//! Linux 192.0.2.2/24 and the smoltcp side 192.0.2.1/24 (TEST-NET-1), and
//! serves two RAM disks (`xvda` 64 MiB read-write, `ro` 4 MiB read-only)
//! with [`MemDisks`]. Then it runs Debian's clients against it:
//! - `nbdinfo` (libnbd-bin): size and flags, `--list`;
//! - `nbdcopy`: 32 MiB of random data written (4 connections, as
//!   CAN_MULTI_CONN allows), read back, compared; a write to `ro` fails;
//! - `qemu-img` (qemu-utils): `convert -n` of 64 MiB into the export, then
//!   `compare`;
//! - `qemu-io`: `write -P 0xab 0 1M` then `read -P 0xab 0 1M`.
//!
//! At the end the RAM disk holds exactly what the clients wrote.
//!
//! Needs root, `unshare`, `ip`, and the clients (`apt-get install -y
//! libnbd-bin qemu-utils`; `./run.sh test` installs them). Without them the
//! test FAILS saying what is missing; it never passes silently.
#![allow(clippy::unwrap_used)] // in tests a panic is the failure report

mod common;

use common::Tap;
use nbd_server::mem::MemDisks;
use net_services::Selection;
use net_services::smol::{NbdEvent, ServiceEvent, Services, ServicesConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::thread;
use std::time::{Duration, Instant};

const IN_NETNS: &str = "NET_SERVICES_TAP_NBD_NETNS";
const TEST_NAME: &str = "real_nbd_clients_through_smoltcp_over_tap";
const TAP: &str = "xenrs-nbd0";
const MIB: usize = 1 << 20;
const XVDA: usize = 64 * MIB;
const RO: usize = 4 * MIB;
const INSTALL: &str = "install the NBD clients: apt-get install -y libnbd-bin qemu-utils \
                       (./run.sh test does this)";

/// What the guest thread shares with the test.
struct Shared {
    stop: AtomicBool,
    /// NBD pool slots holding a connection (active or closing).
    busy_slots: AtomicUsize,
}

/// Runs the guest's network stack (smoltcp + the NBD service over RAM disks) until `stop`.
fn guest(shared: Arc<Shared>, events: Sender<NbdEvent>, ready: Sender<()>) -> MemDisks {
    let mut tap = Tap::new(TAP, 2, 0x1bd, &ready);
    let cfg = ServicesConfig {
        selection: Selection {
            nbd: true,
            ..Selection::NONE
        },
        ..ServicesConfig::default()
    };
    let mut services = Services::new(&mut tap.sockets, &cfg).unwrap();
    let mut disks = MemDisks::new();
    disks.add("xvda", XVDA, false);
    disks.add("ro", RO, true);
    let max_wait = smoltcp::time::Duration::from_millis(20);
    tap.run(&shared.stop, max_wait, |sockets, now| {
        let mut busy = services.poll(sockets, now, &mut disks);
        // MemDisks completes at submit: collect those completions now.
        busy |= services.poll(sockets, now, &mut disks);
        while let Some(e) = services.next_event() {
            if let ServiceEvent::Nbd(e) = e {
                let _ = events.send(e);
            }
        }
        let nbd = services.nbd().unwrap();
        shared
            .busy_slots
            .store(nbd.pool().busy(), Ordering::Relaxed);
        (busy, None)
    });
    disks
}

/// Runs a client with a 180 s limit; panics naming the package if it is missing.
fn client(cmd: &str, args: &[&str]) -> Output {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd} not runnable ({e}): {INSTALL}"));
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "$ {cmd} {} -> {} in {:.2}s",
        args.join(" "),
        out.status,
        start.elapsed().as_secs_f64()
    );
    out
}

fn ok(cmd: &str, args: &[&str]) -> String {
    let out = client(cmd, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Waits until every NBD socket is free again (so the next client's
/// connections all find a listening socket).
fn idle(shared: &Shared) {
    let start = Instant::now();
    while shared.busy_slots.load(Ordering::Relaxed) > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "NBD connections did not close"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn random_file(dir: &Path, name: &str, len: usize, seed: u64) -> (PathBuf, Vec<u8>) {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..len / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    let p = dir.join(name);
    std::fs::write(&p, &data).unwrap();
    (p, data)
}

fn export_json<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["exports"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["export-name"] == name))
        .unwrap_or_else(|| panic!("export {name} not in nbdinfo output: {v}"))
}

#[test]
fn real_nbd_clients_through_smoltcp_over_tap() {
    if !common::in_netns(IN_NETNS) {
        // Fail loudly (before the namespace) when a client is missing.
        for c in ["nbdinfo", "nbdcopy", "qemu-img", "qemu-io"] {
            let found = Command::new(c)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok();
            assert!(found, "{c} not found: {INSTALL}");
        }
    }
    let echo = |l: &str| l.starts_with("$ ") || l.starts_with("nbd ");
    if common::rerun_in_netns(IN_NETNS, TEST_NAME, echo) {
        return;
    }
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        busy_slots: AtomicUsize::new(0),
    });
    let (ev_tx, events) = channel();
    let s2 = shared.clone();
    let guest = common::start_guest(TAP, move |ready| guest(s2, ev_tx, ready));
    let dir = std::env::temp_dir().join(format!("xenrs-tap-nbd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let uri = "nbd://192.0.2.1/xvda";
    let ro_uri = "nbd://192.0.2.1/ro";
    let qemu_uri = "nbd://192.0.2.1:10809/xvda";

    // nbdinfo: size and flags of each export, then --list.
    let v: Value = serde_json::from_str(&ok("nbdinfo", &["--json", uri])).unwrap();
    let x = export_json(&v, "xvda");
    assert_eq!(x["export-size"], XVDA as u64, "{x}");
    for (k, want) in [
        ("is_read_only", false),
        ("can_flush", true),
        ("can_fua", true),
        ("can_multi_conn", true),
        ("can_trim", true),
        ("can_zero", true),
    ] {
        assert_eq!(x[k], want, "xvda {k}: {x}");
    }
    assert_eq!(x["block_size_minimum"], 512, "{x}");
    assert_eq!(x["block_size_preferred"], 4096, "{x}");
    assert_eq!(x["block_size_maximum"], 256 * 1024, "{x}");
    idle(&shared);
    let v: Value = serde_json::from_str(&ok("nbdinfo", &["--json", ro_uri])).unwrap();
    let r = export_json(&v, "ro");
    assert_eq!(r["export-size"], RO as u64, "{r}");
    assert_eq!(r["is_read_only"], true, "{r}");
    idle(&shared);
    let list = ok("nbdinfo", &["--list", "--json", "nbd://192.0.2.1"]);
    let v: Value = serde_json::from_str(&list).unwrap();
    export_json(&v, "xvda");
    export_json(&v, "ro");
    idle(&shared);
    eprintln!("nbd nbdinfo: sizes, flags, block sizes and --list as expected");

    // nbdcopy: 32 MiB in (4 connections), read back, compared.
    let (src, data) = random_file(&dir, "src.img", 32 * MIB, 0x5eed);
    let t = Instant::now();
    ok("nbdcopy", &["--connections=4", src.to_str().unwrap(), uri]);
    let write_s = t.elapsed().as_secs_f64();
    idle(&shared);
    let back = dir.join("back.img");
    let t = Instant::now();
    ok("nbdcopy", &[uri, back.to_str().unwrap()]);
    let read_s = t.elapsed().as_secs_f64();
    idle(&shared);
    let got = std::fs::read(&back).unwrap();
    assert_eq!(got.len(), XVDA);
    assert!(
        got[..data.len()] == data[..],
        "nbdcopy read back different bytes"
    );
    eprintln!("nbd nbdcopy: 32 MiB written in {write_s:.2}s, 64 MiB read in {read_s:.2}s, equal");
    // A write to the read-only export fails.
    let small = dir.join("small.img");
    std::fs::write(&small, vec![7u8; MIB]).unwrap();
    let out = client("nbdcopy", &[small.to_str().unwrap(), ro_uri]);
    assert!(
        !out.status.success(),
        "nbdcopy into a read-only export succeeded"
    );
    idle(&shared);

    // qemu-img: convert -n of 64 MiB into the export, then compare.
    let (src2, data2) = random_file(&dir, "src2.img", XVDA, 0xfeed);
    ok(
        "qemu-img",
        &[
            "convert",
            "-n",
            "-f",
            "raw",
            "-O",
            "raw",
            src2.to_str().unwrap(),
            qemu_uri,
        ],
    );
    idle(&shared);
    let cmp = ok(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "raw",
            src2.to_str().unwrap(),
            qemu_uri,
        ],
    );
    assert!(cmp.contains("Images are identical"), "{cmp}");
    idle(&shared);
    eprintln!("nbd qemu-img: convert -n and compare of 64 MiB: identical");

    // qemu-io: pattern write and verified read.
    let io = ok(
        "qemu-io",
        &[
            "-f",
            "raw",
            qemu_uri,
            "-c",
            "write -P 0xab 0 1M",
            "-c",
            "read -P 0xab 0 1M",
        ],
    );
    assert!(
        io.contains("wrote 1048576/1048576") && io.contains("read 1048576/1048576"),
        "{io}"
    );
    assert!(!io.contains("verification failed"), "{io}");
    idle(&shared);
    eprintln!("nbd qemu-io: write -P 0xab / read -P 0xab of 1 MiB verified");

    shared.stop.store(true, Ordering::Relaxed);
    let disks = guest.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // The RAM disk holds what the clients wrote: qemu-io's MiB, then qemu-img's data.
    let d = &disks.disks[0].data;
    assert!(d[..MIB].iter().all(|&b| b == 0xab));
    assert!(
        d[MIB..] == data2[MIB..],
        "the disk differs from what qemu-img wrote"
    );
    assert!(
        disks.disks[1].data.iter().all(|&b| b == 0),
        "the read-only disk changed"
    );
    assert!(disks.disks[0].flushes > 0, "no client flushed");
    let events: Vec<NbdEvent> = events.try_iter().collect();
    let errors: Vec<String> = events
        .iter()
        .filter(|e| e.is_error())
        .map(ToString::to_string)
        .collect();
    eprintln!(
        "nbd events: {} ({} errors: {errors:?})",
        events.len(),
        errors.len()
    );
}
