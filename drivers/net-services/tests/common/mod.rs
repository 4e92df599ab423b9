//! What the TAP tests share: re-running a test in a private network namespace, the TAP link, the smoltcp pump.
//!
//! Linux gets 192.0.2.2/24 and the smoltcp side [`GUEST_IP`]/24 (TEST-NET-1,
//! RFC 5737); nothing leaves the namespace. Needs root (for `unshare --net`
//! and the TAP device), `unshare` (util-linux) and `ip` (iproute2).

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{self, Medium, TunTapInterface};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::thread::{self, JoinHandle};

/// The smoltcp side's address.
pub const GUEST_IP: Ipv4Address = Ipv4Address::new(192, 0, 2, 1);

fn sh(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{cmd} not runnable ({e}); this test needs iproute2"));
    assert!(st.success(), "{cmd} {args:?} failed: {st}");
}

/// Whether this process runs inside the namespace (`env` is set).
pub fn in_netns(env: &str) -> bool {
    std::env::var_os(env).is_some()
}

/// Outside the namespace: runs just `test` again inside a fresh one
/// (`unshare --net`, with `env` set), asserts that it passed, echoes the
/// lines of its stderr that `keep` picks, and returns true (the caller
/// returns). Inside: returns false.
pub fn rerun_in_netns(env: &str, test: &str, keep: impl Fn(&str) -> bool) -> bool {
    if in_netns(env) {
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env, "1")
        .output()
        .unwrap_or_else(|e| panic!("`unshare` not runnable ({e}); this test needs util-linux"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the test failed inside its network namespace (or `unshare --net` is not \
         permitted: it needs root): {}\n--- stdout\n{}\n--- stderr\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
    );
    for line in stderr.lines().filter(|l| keep(l)) {
        eprintln!("{line}");
    }
    true
}

/// Brings `lo` up, runs `guest` on a thread (it sends on the given channel
/// once its TAP device `tap` exists), then gives the device Linux's
/// address and brings it up.
pub fn start_guest<T: Send + 'static>(
    tap: &str,
    guest: impl FnOnce(Sender<()>) -> T + Send + 'static,
) -> JoinHandle<T> {
    sh("ip", &["link", "set", "lo", "up"]);
    let (ready_tx, ready) = channel();
    let handle = thread::spawn(move || guest(ready_tx));
    ready
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("guest thread did not create the TAP device");
    sh("ip", &["addr", "add", "192.0.2.2/24", "dev", tap]);
    sh("ip", &["link", "set", tap, "up"]);
    handle
}

/// The guest's end of the link: a TAP device and a smoltcp interface on it.
pub struct Tap {
    dev: TunTapInterface,
    iface: Interface,
    /// The sockets the services add theirs to.
    pub sockets: SocketSet<'static>,
}

impl Tap {
    /// Creates the TAP device `name` (tells `ready` then) and an interface
    /// with MAC 02:00:00:58:52:`mac` and address [`GUEST_IP`]/24.
    pub fn new(name: &str, mac: u8, seed: u64, ready: &Sender<()>) -> Tap {
        let mut dev = TunTapInterface::new(name, Medium::Ethernet)
            .unwrap_or_else(|e| panic!("cannot create TAP device {name}: {e} (needs root)"));
        ready.send(()).unwrap();
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress([
            2, 0, 0, 0x58, 0x52, mac,
        ])));
        cfg.random_seed = seed;
        let mut iface = Interface::new(cfg, &mut dev, Instant::now());
        iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::Ipv4(GUEST_IP), 24)).unwrap());
        Tap {
            dev,
            iface,
            sockets: SocketSet::new(vec![]),
        }
    }

    /// Pumps until `stop`: the interface, then `services` (which returns
    /// whether anything moved and when its timers next need a pump), then
    /// the interface again. When nothing moved it waits for the device, at
    /// most `max_wait` (or until the services' or the interface's next timer).
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        max_wait: Duration,
        mut services: impl FnMut(&mut SocketSet<'static>, Instant) -> (bool, Option<Instant>),
    ) {
        let fd = self.dev.as_raw_fd();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            self.iface.poll(now, &mut self.dev, &mut self.sockets);
            let (busy, wake) = services(&mut self.sockets, now);
            self.iface.poll(now, &mut self.dev, &mut self.sockets);
            if !busy {
                let mut delay = self
                    .iface
                    .poll_delay(now, &self.sockets)
                    .unwrap_or(max_wait)
                    .min(max_wait);
                if let Some(at) = wake {
                    delay = delay.min(at - now.min(at));
                }
                let _ = phy::wait(fd, Some(delay));
            }
        }
    }
}
