//! Xenbus glue: device enumeration, and the core's monitor that prints every device.
//!
//! Sources: `xen/include/public/io/xenbus.h` (states), Xen's
//! `docs/misc/xenstore-paths.pandoc` (`device/<class>/<id>/{backend,backend-id,state}`).
//! Parsing and validation are the `xenbus` crate's ([`FrontendDevice`],
//! [`BackendPath`], [`parse_backend_id`], [`XenbusState::parse`]); the shared state
//! machine is its [`::xenbus::Frontend`]. This module reads xenstore for them:
//!
//! - [`enumerate`] lists `device/<class>/<id>` with the back end's path, domid and
//!   state (everything read is checked; bad entries are reported, not trusted);
//! - [`ids`] lists the ids of one class (what a driver brings up);
//! - [`watch_backend`] watches `<backend>/state` and turns each event into an
//!   [`Input`] (the node is re-read on every event: watch events only say "something
//!   changed", may repeat and may coalesce). Drivers use the flag-only
//!   [`super::watch::StateWatch`] instead and act in their own pass.
//!
//! [`Monitor`] is the core's own user: it prints every device at boot and after each
//! resume in a new domain (back-end paths contain our domid, which changes), and logs
//! back-end state changes at debug level.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use ::xenbus::{BackendPath, DeviceError, FrontendDevice, Input, XenbusState, parse_backend_id};
use xen_abi::DomId;
use xenstore::{WatchId, XsError};

use crate::xen::store::{self, StoreError};
use crate::xen::suspend::{ResumeMode, SuspendHook};

/// The back end's `state` node as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendState {
    /// A valid state.
    State(XenbusState),
    /// The node does not exist.
    Missing,
    /// The node holds something that is not a state.
    Invalid,
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendState::State(s) => write!(f, "{s:?}"),
            BackendState::Missing => f.write_str("missing"),
            BackendState::Invalid => f.write_str("invalid"),
        }
    }
}

/// A validated front-end device entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Device class (`vif`, `vbd`, ...).
    pub class: String,
    /// Device id.
    pub id: u32,
    /// The back end's directory.
    pub backend: String,
    /// The back end's domain.
    pub backend_id: DomId,
    /// The back end's state when enumerated.
    pub backend_state: BackendState,
}

impl Device {
    /// `<backend>/<leaf>`.
    pub fn backend_node(&self, leaf: &str) -> String {
        format!("{}/{}", self.backend, leaf)
    }
}

/// An entry under `device/` that is not a usable device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadEntry {
    /// `<class>/<id>` as listed (escaped when printed).
    pub name: String,
    /// What is wrong.
    pub error: EntryError,
}

/// Why an entry was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// The names or the `backend`/`backend-id` values are invalid.
    Device(DeviceError),
    /// Reading a node failed.
    Store(StoreError),
}

/// Reads a node; `Ok(None)` if it does not exist.
fn read_optional(path: &str) -> Result<Option<Vec<u8>>, StoreError> {
    match store::read(path) {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::Xs(XsError::Enoent)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads and parses `<backend>/state`.
pub fn read_backend_state(backend: &str) -> Result<BackendState, StoreError> {
    Ok(match read_optional(&format!("{backend}/state"))? {
        None => BackendState::Missing,
        Some(v) => XenbusState::parse(&v).map_or(BackendState::Invalid, BackendState::State),
    })
}

/// Lists every device under `device/`. `own_domid` is checked against the back-end
/// paths. The `suspend` directory (libxl's `device/suspend/event-channel`) is not a
/// device class and is skipped.
pub fn enumerate(own_domid: DomId) -> Result<(Vec<Device>, Vec<BadEntry>), StoreError> {
    let mut devices = Vec::new();
    let mut bad = Vec::new();
    let classes = match store::directory("device") {
        Ok(c) => c,
        Err(StoreError::Xs(XsError::Enoent)) => return Ok((devices, bad)),
        Err(e) => return Err(e),
    };
    for class in classes.iter().filter(|c| c.as_str() != "suspend") {
        let ids = store::directory(&format!("device/{class}"))?;
        for id in ids {
            match probe(class, &id, own_domid) {
                Ok(dev) => devices.push(dev),
                Err(error) => bad.push(BadEntry {
                    name: format!("{class}/{id}"),
                    error,
                }),
            }
        }
    }
    Ok((devices, bad))
}

/// The ids under `device/<class>`, ascending (none if the class has no
/// directory). Names that are not device ids are reported on the console and
/// skipped.
pub fn ids(class: &str) -> Result<Vec<u32>, StoreError> {
    let names = match store::directory(&format!("device/{class}")) {
        Ok(n) => n,
        Err(StoreError::Xs(XsError::Enoent)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut ids = Vec::new();
    for name in names {
        match FrontendDevice::new(class, &name) {
            Ok(dev) => ids.push(dev.id.0),
            Err(e) => crate::println!(
                "xenrs xenbus error: device/{class}/{}: not a device id ({e:?})",
                crate::xen::console::Escaped(name.as_bytes())
            ),
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Reads and checks one `device/<class>/<id>`.
fn probe(class: &str, id: &str, own_domid: DomId) -> Result<Device, EntryError> {
    let dev = FrontendDevice::new(class, id).map_err(EntryError::Device)?;
    let backend_raw =
        store::read(&format!("device/{class}/{id}/backend")).map_err(EntryError::Store)?;
    let backend_id_raw =
        store::read(&format!("device/{class}/{id}/backend-id")).map_err(EntryError::Store)?;
    let backend_id = parse_backend_id(&backend_id_raw).map_err(EntryError::Device)?;
    let backend = BackendPath::parse(&backend_raw).map_err(EntryError::Device)?;
    backend
        .check(&dev, backend_id, Some(own_domid))
        .map_err(EntryError::Device)?;
    let backend_state = read_backend_state(backend.as_str()).map_err(EntryError::Store)?;
    Ok(Device {
        class: String::from(dev.class.as_str()),
        id: dev.id.0,
        backend: String::from(backend.as_str()),
        backend_id,
        backend_state,
    })
}

/// A watch on a back end's `state` node; [`BackendWatch::cancel`] removes it.
#[must_use = "dropping the handle keeps the watch; cancel it to remove it"]
#[derive(Debug)]
pub struct BackendWatch {
    /// The xenstore watch.
    id: WatchId,
}

impl BackendWatch {
    /// Removes the watch.
    pub fn cancel(self) -> Result<(), StoreError> {
        store::unwatch(self.id)
    }
}

/// Watches `<backend>/state` of `device`; `on_input` gets the back end's state as a
/// [`::xenbus::Input`] after every change (and once at registration). Invalid values are
/// reported and skipped.
pub fn watch_backend(
    device: &Device,
    mut on_input: Box<dyn FnMut(Input) + Send>,
) -> Result<BackendWatch, StoreError> {
    let backend = device.backend.clone();
    let name = format!("{}/{}", device.class, device.id);
    let id = store::watch(
        &device.backend_node("state"),
        4,
        Box::new(move |_path| match read_backend_state(&backend) {
            Ok(BackendState::State(s)) => on_input(Input::Backend(s)),
            Ok(BackendState::Missing) => on_input(Input::BackendVanished),
            Ok(BackendState::Invalid) => {
                crate::println!("xenrs xenbus error: {name}: back-end state is not a state");
            }
            Err(e) => crate::println!("xenrs xenbus error: {name}: {e}"),
        }),
    )?;
    Ok(BackendWatch { id })
}

/// Prints one device line: `xenrs xenbus: device <class>/<id> backend=<path>
/// backend-id=<n> state=<State>`.
fn print_device(d: &Device) {
    crate::println!(
        "xenrs xenbus: device {}/{} backend={} backend-id={} state={}",
        d.class,
        d.id,
        d.backend,
        d.backend_id,
        d.backend_state
    );
}

/// The core's device monitor: prints the devices and logs back-end state changes.
pub struct Monitor {
    /// The back-end watches of the current domain.
    watches: Vec<BackendWatch>,
}

impl Monitor {
    /// Enumerates, prints and watches every device.
    pub fn start(own_domid: DomId) -> Monitor {
        let mut m = Monitor {
            watches: Vec::new(),
        };
        m.scan(own_domid);
        m
    }

    /// One enumeration pass.
    fn scan(&mut self, own_domid: DomId) {
        let (devices, bad) = match enumerate(own_domid) {
            Ok(found) => found,
            Err(e) => {
                crate::println!("xenrs xenbus error: enumerating devices: {e}");
                return;
            }
        };
        for b in &bad {
            crate::println!(
                "xenrs xenbus error: device {}: {:?}",
                crate::xen::console::Escaped(b.name.as_bytes()),
                b.error
            );
        }
        for d in &devices {
            print_device(d);
            let name = format!("{}/{}", d.class, d.id);
            match watch_backend(
                d,
                Box::new(move |input| log::debug!("xenbus {name}: back end {input:?}")),
            ) {
                Ok(w) => self.watches.push(w),
                Err(e) => crate::println!("xenrs xenbus error: watching {}/{}: {e}", d.class, d.id),
            }
        }
        log::debug!(
            "xenbus: {} devices, {} bad entries",
            devices.len(),
            bad.len()
        );
    }
}

impl SuspendHook for Monitor {
    fn name(&self) -> &'static str {
        "xenbus-monitor"
    }

    fn resume(&mut self, mode: ResumeMode) {
        if mode != ResumeMode::NewDomain {
            return;
        }
        // The old back-end paths name the old domid: drop those watches, start over.
        for w in self.watches.drain(..) {
            let _ = w.cancel();
        }
        self.scan(crate::xen::control::domid());
    }
}
