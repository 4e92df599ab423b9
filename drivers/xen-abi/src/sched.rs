//! Scheduler operations (`sched.h`): block, yield and shutdown.

/// `SCHEDOP_yield`: give up the CPU.
pub const SCHEDOP_YIELD: u32 = 0;
/// `SCHEDOP_block`: sleep until an event is pending (with event delivery enabled).
pub const SCHEDOP_BLOCK: u32 = 1;
/// `SCHEDOP_shutdown`: argument is a pointer to [`SchedShutdown`].
pub const SCHEDOP_SHUTDOWN: u32 = 2;
/// `SCHEDOP_poll`.
pub const SCHEDOP_POLL: u32 = 3;

/// `SHUTDOWN_poweroff`: the domain is finished.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// `SHUTDOWN_reboot`: restart the domain.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// `SHUTDOWN_suspend`: save the domain; the hypercall returns on resume.
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// `SHUTDOWN_crash`: the domain crashed.
pub const SHUTDOWN_CRASH: u32 = 3;
/// `SHUTDOWN_watchdog`: the watchdog fired.
pub const SHUTDOWN_WATCHDOG: u32 = 4;

/// `struct sched_shutdown`: the argument of `SCHEDOP_shutdown`, passed by pointer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedShutdown {
    /// One of the `SHUTDOWN_*` reasons.
    pub reason: u32,
}

#[cfg(test)]
mod tests {
    #[test]
    fn sched_shutdown_is_one_u32() {
        assert_eq!(core::mem::size_of::<super::SchedShutdown>(), 4);
    }
}
