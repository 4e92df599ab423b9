//! Scheduler operations (`sched.h`): block, yield, poll and shutdown.

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

/// `struct sched_poll`: the argument of `SCHEDOP_poll`, passed by pointer. The vCPU
/// blocks until one of the `nr_ports` ports at `ports` (a guest address of
/// `evtchn_port_t`s) is pending, an event wakes it, or Xen system time reaches
/// `timeout` (absolute ns; 0: none). Xen checks the ports' pending bits itself, and its
/// poll timer unblocks the vCPU directly (`poll_timer_fn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedPoll {
    /// `XEN_GUEST_HANDLE(evtchn_port_t)`: the address of the port array.
    pub ports: u64,
    /// Ports in the array (Xen refuses more than 128).
    pub nr_ports: u32,
    /// Absolute Xen system time to give up at, ns (0: no timeout).
    pub timeout: u64,
}

/// The most ports `SCHEDOP_poll` takes.
pub const SCHED_POLL_MAX_PORTS: usize = 128;

#[cfg(test)]
mod tests {
    #[test]
    fn sched_shutdown_is_one_u32() {
        assert_eq!(core::mem::size_of::<super::SchedShutdown>(), 4);
    }

    #[test]
    fn sched_poll_has_xens_layout() {
        // Handle (8), nr_ports (4) + 4 padding, timeout (8): as sched.h on x86_64.
        assert_eq!(core::mem::size_of::<super::SchedPoll>(), 24);
        assert_eq!(core::mem::offset_of!(super::SchedPoll, nr_ports), 8);
        assert_eq!(core::mem::offset_of!(super::SchedPoll, timeout), 16);
    }
}
