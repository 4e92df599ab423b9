//! The back-end state watch every front-end device uses: the handler only raises a flag, the device's owner acts on it.
//!
//! Watch events only say "something changed" (they may repeat and coalesce), so
//! the owner re-reads `<backend>/state` in its next pass through the runtime's
//! `Device::on_backend_state`. Acting there, not in the handler, keeps the
//! xenstore client from being re-entered and keeps one slow device from holding
//! up another's watch (each watch has its own queue in the client).

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use xenstore::WatchId;

use crate::xen::store::{self, StoreError};

/// Events kept per watch before older ones are dropped (a flag needs one).
const QUEUE: usize = 4;

/// A watch on one back end's `state` node.
pub struct StateWatch {
    /// The xenstore watch, while registered.
    id: Option<WatchId>,
    /// Set by the handler, taken by [`StateWatch::take`].
    changed: Arc<AtomicBool>,
}

impl StateWatch {
    /// Watches `path` (`<backend>/state`). The flag starts raised, so the
    /// owner looks at the current state in its first pass.
    pub fn new(path: &str) -> Result<StateWatch, StoreError> {
        let mut w = StateWatch {
            id: None,
            changed: Arc::new(AtomicBool::new(true)),
        };
        w.register(path)?;
        Ok(w)
    }

    fn register(&mut self, path: &str) -> Result<(), StoreError> {
        let flag = self.changed.clone();
        let id = store::watch(
            path,
            QUEUE,
            Box::new(move |_path| {
                // Release: pairs with the Acquire swap in `take` (nothing else
                // is published; the state node is re-read there).
                flag.store(true, Ordering::Release);
            }),
        )?;
        self.id = Some(id);
        Ok(())
    }

    /// Whether the back end's state may have changed since the last call.
    pub fn take(&self) -> bool {
        // Acquire: pairs with the handler's Release.
        self.changed.swap(false, Ordering::Acquire)
    }

    /// Raises the flag again (the owner could not act now, e.g. xenstore busy).
    pub fn again(&self) {
        self.changed.store(true, Ordering::Release);
    }

    /// Moves the watch to `path` (after a resume in a new domain the back-end
    /// path names our new domid) and raises the flag.
    pub fn follow(&mut self, path: &str) -> Result<(), StoreError> {
        if let Some(id) = self.id.take() {
            // The old path is dead; failing to remove its watch changes nothing.
            let _ = store::unwatch(id);
        }
        self.again();
        self.register(path)
    }

    /// Removes the watch.
    pub fn cancel(mut self) {
        if let Some(id) = self.id.take() {
            let _ = store::unwatch(id);
        }
    }
}
