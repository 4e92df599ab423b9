//! Device hotplug: a watch on our `device/` directory tells the main loop that devices may have come or gone.
//!
//! `xl network-attach`/`network-detach` and `xl block-attach`/`block-detach` add
//! and remove `device/<class>/<id>` while the guest runs (libxl writes a device's
//! front-end and back-end directories in one transaction, and removes them in
//! one, after the back end reached Closed). The watch handler only raises a flag,
//! as [`super::watch::StateWatch`] does; the runtime's main loop takes it
//! ([`take`]) and lets each device class compare the ids listed now
//! ([`super::devices::ids`]) with the devices it drives (`net::sync`,
//! `blk::sync`). The watch also fires for our own writes under `device/` (state
//! nodes); a pass that finds nothing new costs one directory read per class.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::xen::store::{self, StoreError};

/// Events kept for the watch before older ones are dropped (a flag needs one).
const QUEUE: usize = 4;

/// Raised by the watch (and by [`again`]), taken by [`take`].
static CHANGED: AtomicBool = AtomicBool::new(false);

/// Watches `device` (relative: it follows the domain across resumes). Xenstore
/// fires a new watch once at once, so the first pass looks at what is there.
pub fn start() -> Result<(), StoreError> {
    store::watch(
        "device",
        QUEUE,
        Box::new(|_path| {
            // Release: pairs with the Acquire swap in `take`; the directory
            // is re-read there, nothing else is published.
            CHANGED.store(true, Ordering::Release);
        }),
    )?;
    Ok(())
}

/// Whether `device/` may have changed since the last call.
pub fn take() -> bool {
    // Acquire: pairs with the handler's Release.
    CHANGED.swap(false, Ordering::Acquire)
}

/// Look again at the next pass (a device went away on its own: an id it left
/// may already have been taken by a new device).
pub fn again() {
    CHANGED.store(true, Ordering::Release);
}
