//! The suspend/resume interface: what a driver implements to take part, and the hook registry.
//!
//! The sequence itself (quiesce, `SHUTDOWN_suspend`, rebuilding the core in a new
//! domain, calling the hooks) is the runtime's (`runtime::suspend`, `docs/CORE.md` §8);
//! this module only holds the hooks, so drivers need not depend on the runtime.

use alloc::boxed::Box;
use alloc::vec::Vec;

use spin::Mutex;

/// How the domain came back from a suspend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeMode {
    /// A new domain (restore or migration): event channels, grants and back-end
    /// connections of the old domain are gone.
    NewDomain,
    /// The suspend was cancelled: everything is as it was.
    Cancelled,
}

impl ResumeMode {
    /// The console spelling: `new-domain` / `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResumeMode::NewDomain => "new-domain",
            ResumeMode::Cancelled => "cancelled",
        }
    }
}

/// What a driver does around a suspend. Hooks run in the main loop, never in
/// interrupt context; they may use xenstore.
///
/// On [`ResumeMode::NewDomain`] the core is back (shared info, event delivery,
/// timers, an empty grant table, xenstore with every watch re-registered) when
/// [`resume`](SuspendHook::resume) runs: a driver feeds its `xenbus::Frontend`
/// `Resume { new_domain: true }`, drops stale ring grants (`GrantTable::end_access`
/// returns their pages at once), re-grants, re-binds its event channels and
/// reconnects. On [`ResumeMode::Cancelled`] it must not re-initialise anything.
pub trait SuspendHook: Send {
    /// A short name for error messages.
    fn name(&self) -> &'static str;
    /// Before the suspend: stop starting new I/O. Default: nothing.
    fn suspend(&mut self) {}
    /// After the suspend hypercall returned.
    fn resume(&mut self, mode: ResumeMode);
}

/// Registered hooks, in registration order.
static HOOKS: Mutex<Vec<Box<dyn SuspendHook>>> = Mutex::new(Vec::new());

/// Registers a hook (for the domain's life).
pub fn register(hook: Box<dyn SuspendHook>) {
    HOOKS.lock().push(hook);
}

/// Runs `f` on every hook (in reverse order if `reverse`) outside the lock, so a
/// hook may register further hooks (they join after this pass).
pub fn for_each_hook(reverse: bool, mut f: impl FnMut(&mut dyn SuspendHook)) {
    let mut hooks = core::mem::take(&mut *HOOKS.lock());
    if reverse {
        hooks.iter_mut().rev().for_each(|h| f(h.as_mut()));
    } else {
        hooks.iter_mut().for_each(|h| f(h.as_mut()));
    }
    let mut registry = HOOKS.lock();
    let added = core::mem::take(&mut *registry);
    hooks.extend(added);
    *registry = hooks;
}
