//! Per-vCPU operations: timers and vcpu_info placement (`vcpu.h`).
//!
//! Source: `xen/include/public/vcpu.h` (Xen 4.17). Each `VCPUOP_*` is the first
//! argument of `__HYPERVISOR_vcpu_op(cmd, vcpuid, extra_arg)`; `extra_arg`
//! points at the matching struct (or is NULL).

/// `VCPUOP_initialise`: set a vCPU's initial register state.
pub const VCPUOP_INITIALISE: u32 = 0;
/// `VCPUOP_up`: make an initialised vCPU runnable.
pub const VCPUOP_UP: u32 = 1;
/// `VCPUOP_down`: make a vCPU non-runnable.
pub const VCPUOP_DOWN: u32 = 2;
/// `VCPUOP_is_up`: returns 1 if the vCPU is up.
pub const VCPUOP_IS_UP: u32 = 3;
/// `VCPUOP_get_runstate_info`: argument is a [`VcpuRunstateInfo`].
pub const VCPUOP_GET_RUNSTATE_INFO: u32 = 4;
/// `VCPUOP_register_runstate_memory_area`: argument is a [`VcpuRegisterArea`].
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;
/// `VCPUOP_set_periodic_timer`: argument is a [`VcpuSetPeriodicTimer`].
pub const VCPUOP_SET_PERIODIC_TIMER: u32 = 6;
/// `VCPUOP_stop_periodic_timer`: no argument.
pub const VCPUOP_STOP_PERIODIC_TIMER: u32 = 7;
/// `VCPUOP_set_singleshot_timer`: argument is a [`VcpuSetSingleshotTimer`];
/// the timer raises `VIRQ_TIMER` on the vCPU.
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
/// `VCPUOP_stop_singleshot_timer`: no argument.
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u32 = 9;
/// `VCPUOP_register_vcpu_info`: argument is a [`VcpuRegisterVcpuInfo`]; once
/// per vCPU.
pub const VCPUOP_REGISTER_VCPU_INFO: u32 = 10;
/// `VCPUOP_send_nmi`: no argument.
pub const VCPUOP_SEND_NMI: u32 = 11;
/// `VCPUOP_get_physid`: argument is a `u64`.
pub const VCPUOP_GET_PHYSID: u32 = 12;
/// `VCPUOP_register_vcpu_time_memory_area`: argument is a [`VcpuRegisterArea`].
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u32 = 13;

/// `VCPU_SSHOTTMR_future`: fail with `-ETIME` if the deadline has already
/// passed (Xen may ignore the flag).
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

/// `struct vcpu_set_singleshot_timer`. 16 bytes (4 bytes of tail padding).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetSingleshotTimer {
    /// Deadline in Xen system time (ns since boot, the pvclock's timebase).
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*` flags.
    pub flags: u32,
}

/// `struct vcpu_set_periodic_timer`. 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetPeriodicTimer {
    /// Period in ns (periods under 1 ms may be refused).
    pub period_ns: u64,
}

/// `struct vcpu_register_vcpu_info`. 16 bytes.
///
/// The `vcpu_info` must not cross a page boundary.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterVcpuInfo {
    /// Guest frame holding the new `vcpu_info`.
    pub mfn: u64,
    /// Byte offset of the `vcpu_info` in that frame.
    pub offset: u32,
    /// Reserved, zero.
    pub rsvd: u32,
}

/// `struct vcpu_register_runstate_memory_area` and
/// `struct vcpu_register_time_memory_area`: one union of handle / pointer /
/// u64, i.e. a guest virtual address on x86. 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterArea {
    /// Guest virtual address of the area.
    pub addr: u64,
}

/// `RUNSTATE_running`.
pub const RUNSTATE_RUNNING: i32 = 0;
/// `RUNSTATE_runnable`.
pub const RUNSTATE_RUNNABLE: i32 = 1;
/// `RUNSTATE_blocked`.
pub const RUNSTATE_BLOCKED: i32 = 2;
/// `RUNSTATE_offline`.
pub const RUNSTATE_OFFLINE: i32 = 3;

/// `struct vcpu_runstate_info`. 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuRunstateInfo {
    /// One of the `RUNSTATE_*` values.
    pub state: i32,
    /// System time (ns) when `state` was entered; bit 63 is
    /// `XEN_RUNSTATE_UPDATE` while an update is in progress.
    pub state_entry_time: u64,
    /// Time spent in each `RUNSTATE_*` (ns).
    pub time: [u64; 4],
}

/// `XEN_RUNSTATE_UPDATE` in [`VcpuRunstateInfo::state_entry_time`].
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_vcpu_h() {
        assert_eq!(size_of::<VcpuSetSingleshotTimer>(), 16);
        assert_eq!(offset_of!(VcpuSetSingleshotTimer, flags), 8);
        assert_eq!(size_of::<VcpuSetPeriodicTimer>(), 8);
        assert_eq!(size_of::<VcpuRegisterVcpuInfo>(), 16);
        assert_eq!(offset_of!(VcpuRegisterVcpuInfo, offset), 8);
        assert_eq!(offset_of!(VcpuRegisterVcpuInfo, rsvd), 12);
        assert_eq!(size_of::<VcpuRegisterArea>(), 8);
        assert_eq!(size_of::<VcpuRunstateInfo>(), 48);
        assert_eq!(offset_of!(VcpuRunstateInfo, state_entry_time), 8);
        assert_eq!(offset_of!(VcpuRunstateInfo, time), 16);
    }

    #[test]
    fn numbers_match_vcpu_h() {
        let ops = [
            VCPUOP_INITIALISE,
            VCPUOP_UP,
            VCPUOP_DOWN,
            VCPUOP_IS_UP,
            VCPUOP_GET_RUNSTATE_INFO,
            VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
            VCPUOP_SET_PERIODIC_TIMER,
            VCPUOP_STOP_PERIODIC_TIMER,
            VCPUOP_SET_SINGLESHOT_TIMER,
            VCPUOP_STOP_SINGLESHOT_TIMER,
            VCPUOP_REGISTER_VCPU_INFO,
            VCPUOP_SEND_NMI,
            VCPUOP_GET_PHYSID,
            VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA,
        ];
        for (i, op) in ops.into_iter().enumerate() {
            assert_eq!(op as usize, i);
        }
        assert_eq!(VCPU_SSHOTTMR_FUTURE, 1);
    }
}
