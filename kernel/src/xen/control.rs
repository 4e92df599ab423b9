//! Toolstack control: `control/shutdown` requests, the suspend event channel, the echo and ready nodes.
//!
//! Protocol (the guest contract in `docs/CONSOLE.md`, and what libxl expects of a PV-aware
//! guest: `tools/libs/light/libxl_domain.c` writes `control/shutdown`, and
//! `libxl_dom_suspend.c` notifies `device/suspend/event-channel` instead when the
//! guest published one):
//! - the guest writes `control/feature-poweroff`, `-reboot` and `-suspend` = `1`;
//! - it watches `control/shutdown`; a non-empty value is a request, acknowledged by
//!   writing `""` in the same transaction that read it (retried on `EAGAIN`), then
//!   announced (`xenrs control: request '<s>'`) and carried out by the main loop;
//! - it allocates an unbound event channel for dom0 and writes its number to
//!   `device/suspend/event-channel`; a notification on it is a suspend request;
//! - echo: each non-empty value of `data/echo-in` (at most 256 bytes) is written to
//!   `data/echo-out` and printed (`xenrs echo: '<v>'`, escaped);
//! - `data/ready` = `1` once services are up and after every resume;
//! - status: each new non-empty value of `data/dump` asks the main loop for a dump of
//!   its state (`xenrs dump: ...` lines: clock, timers, events, every disk and vif with
//!   its NBD connections), for diagnosing a stall from dom0.
//!
//! All paths are relative to the domain's home, so they follow the domain to its new
//! domid after a restore or migration (the client re-sends watches as registered).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

use spin::Mutex;
use xen_abi::DomId;
use xenstore::{TxId, XsError};

use crate::xen::console::Escaped;
use crate::xen::events::{self, EventError, Port};
use crate::xen::store::{self, StoreError};

/// Why publishing the control nodes failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// A xenstore request failed.
    Store(StoreError),
    /// Allocating the suspend event channel or installing its handler failed.
    SuspendPort(EventError),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Store(e) => write!(f, "{e}"),
            ControlError::SuspendPort(e) => write!(f, "suspend event channel: {e}"),
        }
    }
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        ControlError::Store(e)
    }
}

/// What the toolstack asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `poweroff`.
    PowerOff,
    /// `reboot`.
    Reboot,
    /// `suspend` (also a notification on the suspend event channel).
    Suspend,
}

/// The pending request: 0 none, else `Request as u8 + 1`.
static REQUEST: AtomicU8 = AtomicU8::new(0);
/// Our domid (changes with every restore/migration).
static DOMID: AtomicU32 = AtomicU32::new(0);
/// The suspend event channel.
static SUSPEND_PORT: Mutex<Option<Port>> = Mutex::new(None);

/// A status dump was asked for (`data/dump`).
static DUMP: AtomicBool = AtomicBool::new(false);
/// The last `data/dump` value acted on (a watch fires again on re-registration).
static DUMP_SEEN: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Takes a pending status-dump request.
pub fn take_dump() -> bool {
    // Relaxed: set and taken by main-loop code.
    DUMP.swap(false, Ordering::Relaxed)
}

/// Longest echo value handled; longer values are cut.
pub const ECHO_MAX: usize = 256;

/// Records `domid` (printed in the services line; set again after a resume).
pub fn set_domid(domid: DomId) {
    // Relaxed: informational.
    DOMID.store(u32::from(domid), Ordering::Relaxed);
}

/// Our domid as last read.
pub fn domid() -> DomId {
    // Relaxed: informational.
    DomId::try_from(DOMID.load(Ordering::Relaxed)).unwrap_or(0)
}

/// Stores a request for the main loop.
fn post(request: Request) {
    let code = match request {
        Request::PowerOff => 1,
        Request::Reboot => 2,
        Request::Suspend => 3,
    };
    // Relaxed: read by the same (main-loop) context.
    REQUEST.store(code, Ordering::Relaxed);
}

/// Takes the pending request, if any.
pub fn take_request() -> Option<Request> {
    // Relaxed: see `post`.
    match REQUEST.swap(0, Ordering::Relaxed) {
        1 => Some(Request::PowerOff),
        2 => Some(Request::Reboot),
        3 => Some(Request::Suspend),
        _ => None,
    }
}

/// Publishes the features and the suspend event channel, and installs the watches.
pub fn init(domid: DomId) -> Result<(), ControlError> {
    set_domid(domid);
    publish_features()?;
    publish_suspend_port()?;
    store::watch("control/shutdown", 4, Box::new(on_shutdown))?;
    store::watch("data/echo-in", 16, Box::new(on_echo))?;
    store::watch("data/dump", 4, Box::new(on_dump))?;
    Ok(())
}

/// After a resume in a new domain: the new domain's nodes are fresh (the toolstack
/// re-created them empty), and the old suspend port is gone. The watches come back
/// with the xenstore client.
pub fn resume_new_domain() -> Result<(), ControlError> {
    publish_features()?;
    publish_suspend_port()
}

/// Writes `data/ready` = `1` (errors are printed and survived).
pub fn mark_ready() {
    if let Err(e) = store::write("data/ready", b"1") {
        crate::println!("xenrs control error: writing data/ready: {e}");
    }
}

/// `control/feature-{poweroff,reboot,suspend}` = `1`.
fn publish_features() -> Result<(), StoreError> {
    for node in [
        "control/feature-poweroff",
        "control/feature-reboot",
        "control/feature-suspend",
    ] {
        store::write(node, b"1")?;
    }
    Ok(())
}

/// Allocates the suspend event channel (unbound, for dom0), installs its handler and
/// writes its number to `device/suspend/event-channel`.
fn publish_suspend_port() -> Result<(), ControlError> {
    let port = events::alloc_unbound(0).map_err(ControlError::SuspendPort)?;
    port.set_handler(Box::new(|| {
        crate::println!("xenrs control: request 'suspend'");
        log::info!("control: the request came on the suspend event channel");
        post(Request::Suspend);
    }))
    .map_err(ControlError::SuspendPort)?;
    let mut number = [0u8; 10];
    let text = decimal(port.number(), &mut number);
    store::write("device/suspend/event-channel", text)?;
    if let Some(old) = SUSPEND_PORT.lock().replace(port) {
        // Stale after a resume (forgotten); otherwise really closed.
        let _ = old.close();
    }
    Ok(())
}

/// Formats `n` in decimal into `buf`, returning the digits.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(d) = buf.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or(&[])
}

/// Reads `control/shutdown` and, if it holds a request, clears it, in one transaction.
fn take_shutdown_node() -> Result<Option<Vec<u8>>, StoreError> {
    store::with(|xs| {
        xs.transaction(8, |xs, tx: TxId| {
            let value = match xs.read(tx, "control/shutdown") {
                Ok(v) => v,
                Err(XsError::Enoent) => return Ok(None),
                Err(e) => return Err(e),
            };
            if value.is_empty() {
                return Ok(None);
            }
            xs.write(tx, "control/shutdown", b"")?;
            Ok(Some(value))
        })
    })?
    .map_err(StoreError::from)
}

/// The `control/shutdown` watch handler.
fn on_shutdown(_path: &str) {
    let value = match take_shutdown_node() {
        Ok(Some(v)) => v,
        Ok(None) => return,
        Err(e) => {
            crate::println!("xenrs control error: {e}");
            return;
        }
    };
    let request = match value.as_slice() {
        b"poweroff" => Request::PowerOff,
        b"reboot" => Request::Reboot,
        b"suspend" => Request::Suspend,
        other => {
            let shown = other.get(..ECHO_MAX).unwrap_or(other);
            crate::println!(
                "xenrs control: ignoring unknown request '{}'",
                Escaped(shown)
            );
            return;
        }
    };
    crate::println!("xenrs control: request '{}'", Escaped(&value));
    post(request);
}

/// The `data/echo-in` watch handler.
fn on_echo(_path: &str) {
    let mut value = match store::read("data/echo-in") {
        Ok(v) => v,
        // Not written yet (the watch fires once when registered).
        Err(StoreError::Xs(XsError::Enoent)) => return,
        Err(e) => {
            crate::println!("xenrs echo error: {e}");
            return;
        }
    };
    if value.is_empty() {
        return;
    }
    value.truncate(ECHO_MAX);
    if let Err(e) = store::write("data/echo-out", &value) {
        crate::println!("xenrs echo error: {e}");
        return;
    }
    crate::println!("xenrs echo: '{}'", Escaped(&value));
}

/// The `data/dump` watch handler: a new non-empty value asks for a status dump.
fn on_dump(_path: &str) {
    let Ok(value) = store::read("data/dump") else {
        return;
    };
    let mut seen = DUMP_SEEN.lock();
    if value.is_empty() || *seen == value {
        return;
    }
    *seen = value;
    // Relaxed: see take_dump.
    DUMP.store(true, Ordering::Relaxed);
}
