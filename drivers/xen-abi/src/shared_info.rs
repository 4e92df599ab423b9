//! The shared info page, per-vCPU info and the pvclock (`xen.h`, `arch-x86/xen*.h`).
//!
//! Sources: `struct shared_info`, `struct vcpu_info` and `struct vcpu_time_info`
//! in `xen/include/public/xen.h`; `struct arch_vcpu_info` in
//! `xen/include/public/arch-x86/xen-x86_64.h`; `struct arch_shared_info`,
//! `XEN_LEGACY_MAX_VCPUS` and `xen_ulong_t` in `xen/include/public/arch-x86/xen.h`
//! (Xen 4.17). A PVH guest maps the page with `XENMEM_add_to_physmap`
//! ([`crate::memory::XENMAPSPACE_SHARED_INFO`]).
//!
//! The structs document the layout and are checked against it; the live page is
//! written by Xen concurrently, so the kernel accesses it through the byte
//! offsets below (with atomics for the flags and event words) and copies the
//! time record under its version counter.

/// `XEN_LEGACY_MAX_VCPUS`: `vcpu_info` slots in the shared info page (x86).
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

/// `xen_ulong_t` on x86_64.
pub type XenUlong = u64;

/// Number of `xen_ulong_t` words in `evtchn_pending` / `evtchn_mask`
/// (`sizeof(xen_ulong_t) * 8`); 64 words of 64 bits = 4096 ports.
pub const EVTCHN_WORDS: usize = 64;

/// `XEN_PVCLOCK_TSC_STABLE_BIT` in [`VcpuTimeInfo::flags`]: the TSC is stable
/// across vCPUs.
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// `XEN_PVCLOCK_GUEST_STOPPED` in [`VcpuTimeInfo::flags`]: the guest was paused.
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

/// `struct vcpu_time_info` (pvclock). 32 bytes.
///
/// Xen bumps `version` to odd before an update and to even after; a consistent
/// copy is one read between two equal, even versions.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTimeInfo {
    /// Update counter (odd while an update is in progress).
    pub version: u32,
    /// Padding.
    pub pad0: u32,
    /// TSC value at the last update.
    pub tsc_timestamp: u64,
    /// Nanoseconds since boot at `tsc_timestamp`.
    pub system_time: u64,
    /// TSC-to-nanoseconds multiplier (32.32 fixed point after the shift).
    pub tsc_to_system_mul: u32,
    /// Power-of-two pre-shift applied to the TSC delta (may be negative).
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*` flags.
    pub flags: u8,
    /// Padding.
    pub pad1: [u8; 2],
}

impl VcpuTimeInfo {
    /// Nanoseconds since boot at TSC value `tsc`, by the formula in `xen.h`:
    /// `system_time + ((((tsc - tsc_timestamp) << tsc_shift) * mul) >> 32)`.
    /// A `tsc` before `tsc_timestamp` counts as no time elapsed; shifts of 64
    /// or more give a zero delta. Never panics.
    pub const fn system_time_ns(&self, tsc: u64) -> u64 {
        let delta = tsc.saturating_sub(self.tsc_timestamp);
        self.system_time
            .wrapping_add(scale_delta(delta, self.tsc_to_system_mul, self.tsc_shift))
    }

    /// The TSC frequency in Hz implied by the scaling factors:
    /// `((10^9 << 32) / mul) >> shift` (shift applied in the inverse
    /// direction). `None` if `mul` is 0.
    pub const fn tsc_hz(&self) -> Option<u64> {
        if self.tsc_to_system_mul == 0 {
            return None;
        }
        let hz = (1_000_000_000u128 << 32) / self.tsc_to_system_mul as u128;
        let shift = self.tsc_shift as i32;
        let hz = if shift >= 0 {
            hz >> shift
        } else if (-shift) as u32 <= hz.leading_zeros() {
            hz << -shift
        } else {
            u128::MAX
        };
        if hz > u64::MAX as u128 {
            Some(u64::MAX)
        } else {
            Some(hz as u64)
        }
    }
}

/// Scales a TSC delta to nanoseconds with pvclock parameters.
pub const fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let shifted = if shift >= 0 {
        match delta.checked_shl(shift as u32) {
            Some(d) => d,
            None => 0,
        }
    } else {
        match delta.checked_shr(shift.unsigned_abs() as u32) {
            Some(d) => d,
            None => 0,
        }
    };
    ((shifted as u128 * mul as u128) >> 32) as u64
}

/// `struct arch_vcpu_info` for x86_64. 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchVcpuInfo {
    /// CR2 at the last page fault (PV only).
    pub cr2: u64,
    /// Padding to make `vcpu_info` 64 bytes.
    pub pad: u64,
}

/// `struct vcpu_info` (x86, `XEN_HAVE_PV_UPCALL_MASK` defined). 64 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuInfo {
    /// Set by Xen when an event is pending for this vCPU; the guest clears it
    /// before scanning.
    pub evtchn_upcall_pending: u8,
    /// Non-zero blocks upcalls (honoured for PV; PVH uses RFLAGS.IF).
    pub evtchn_upcall_mask: u8,
    /// Bit `w` set: word `w` of `evtchn_pending` may have pending ports.
    pub evtchn_pending_sel: XenUlong,
    /// Architecture part.
    pub arch: ArchVcpuInfo,
    /// This vCPU's pvclock.
    pub time: VcpuTimeInfo,
}

/// `struct arch_shared_info` for x86_64. 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchSharedInfo {
    /// Valid entries in the PV p2m.
    pub max_pfn: u64,
    /// PV p2m frame list list.
    pub pfn_to_mfn_frame_list_list: u64,
    /// NMI reason bits.
    pub nmi_reason: u64,
    /// PV linear p2m: CR3 of its address space.
    pub p2m_cr3: u64,
    /// PV linear p2m: virtual address.
    pub p2m_vaddr: u64,
    /// PV linear p2m: generation counter.
    pub p2m_generation: u64,
}

/// `struct shared_info` for x86_64. 3136 bytes (fits in one page).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedInfo {
    /// Per-vCPU data for vCPUs 0..32.
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// 2-level ABI pending bits, one per port.
    pub evtchn_pending: [XenUlong; EVTCHN_WORDS],
    /// 2-level ABI mask bits, one per port (guest-owned).
    pub evtchn_mask: [XenUlong; EVTCHN_WORDS],
    /// Wallclock update counter (same protocol as [`VcpuTimeInfo::version`]).
    pub wc_version: u32,
    /// Wallclock seconds since the Unix epoch at system time 0 (low 32 bits).
    pub wc_sec: u32,
    /// Wallclock nanoseconds.
    pub wc_nsec: u32,
    /// Wallclock seconds, high 32 bits.
    pub wc_sec_hi: u32,
    /// Architecture part.
    pub arch: ArchSharedInfo,
}

/// Size of [`VcpuInfo`].
pub const VCPU_INFO_SIZE: usize = 64;
/// Offset of `evtchn_upcall_pending` in a `vcpu_info` (u8).
pub const VCPU_INFO_UPCALL_PENDING: usize = 0;
/// Offset of `evtchn_upcall_mask` in a `vcpu_info` (u8).
pub const VCPU_INFO_UPCALL_MASK: usize = 1;
/// Offset of `evtchn_pending_sel` in a `vcpu_info` (u64).
pub const VCPU_INFO_PENDING_SEL: usize = 8;
/// Offset of `arch` in a `vcpu_info`.
pub const VCPU_INFO_ARCH: usize = 16;
/// Offset of `time` (a [`VcpuTimeInfo`]) in a `vcpu_info`.
pub const VCPU_INFO_TIME: usize = 32;

/// Size of [`VcpuTimeInfo`].
pub const VCPU_TIME_INFO_SIZE: usize = 32;
/// Offset of `version` in `vcpu_time_info` (u32).
pub const TIME_VERSION: usize = 0;
/// Offset of `tsc_timestamp` in `vcpu_time_info` (u64).
pub const TIME_TSC_TIMESTAMP: usize = 8;
/// Offset of `system_time` in `vcpu_time_info` (u64).
pub const TIME_SYSTEM_TIME: usize = 16;
/// Offset of `tsc_to_system_mul` in `vcpu_time_info` (u32).
pub const TIME_TSC_TO_SYSTEM_MUL: usize = 24;
/// Offset of `tsc_shift` in `vcpu_time_info` (i8).
pub const TIME_TSC_SHIFT: usize = 28;
/// Offset of `flags` in `vcpu_time_info` (u8).
pub const TIME_FLAGS: usize = 29;

/// Offset of `evtchn_pending[0]` in the shared info page.
pub const SHARED_INFO_EVTCHN_PENDING: usize = 2048;
/// Offset of `evtchn_mask[0]` in the shared info page.
pub const SHARED_INFO_EVTCHN_MASK: usize = 2560;
/// Offset of `wc_version` in the shared info page.
pub const SHARED_INFO_WC_VERSION: usize = 3072;
/// Offset of `wc_sec` in the shared info page.
pub const SHARED_INFO_WC_SEC: usize = 3076;
/// Offset of `wc_nsec` in the shared info page.
pub const SHARED_INFO_WC_NSEC: usize = 3080;
/// Offset of `wc_sec_hi` in the shared info page.
pub const SHARED_INFO_WC_SEC_HI: usize = 3084;
/// Offset of `arch` in the shared info page.
pub const SHARED_INFO_ARCH: usize = 3088;
/// Size of [`SharedInfo`] on x86_64.
pub const SHARED_INFO_SIZE: usize = 3136;

/// Byte offset of vCPU `vcpu`'s `vcpu_info` in the shared info page, or
/// `None` if `vcpu >= XEN_LEGACY_MAX_VCPUS`.
pub const fn vcpu_info_offset(vcpu: usize) -> Option<usize> {
    if vcpu < XEN_LEGACY_MAX_VCPUS {
        Some(vcpu * VCPU_INFO_SIZE)
    } else {
        None
    }
}

/// Index of the `evtchn_pending`/`evtchn_mask` word holding `port` (also the
/// bit number in `evtchn_pending_sel`). Ports `>= 4096` give an index
/// `>= EVTCHN_WORDS`, which callers must reject.
pub const fn evtchn_word(port: u32) -> usize {
    (port / 64) as usize
}

/// The mask of `port`'s bit within its word.
pub const fn evtchn_bit(port: u32) -> u64 {
    1 << (port % 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn vcpu_layouts_match_xen_h() {
        assert_eq!(size_of::<VcpuTimeInfo>(), VCPU_TIME_INFO_SIZE);
        assert_eq!(offset_of!(VcpuTimeInfo, version), TIME_VERSION);
        assert_eq!(offset_of!(VcpuTimeInfo, tsc_timestamp), TIME_TSC_TIMESTAMP);
        assert_eq!(offset_of!(VcpuTimeInfo, system_time), TIME_SYSTEM_TIME);
        assert_eq!(
            offset_of!(VcpuTimeInfo, tsc_to_system_mul),
            TIME_TSC_TO_SYSTEM_MUL
        );
        assert_eq!(offset_of!(VcpuTimeInfo, tsc_shift), TIME_TSC_SHIFT);
        assert_eq!(offset_of!(VcpuTimeInfo, flags), TIME_FLAGS);
        assert_eq!(offset_of!(VcpuTimeInfo, pad1), 30);

        assert_eq!(size_of::<ArchVcpuInfo>(), 16);
        assert_eq!(size_of::<VcpuInfo>(), VCPU_INFO_SIZE);
        assert_eq!(
            offset_of!(VcpuInfo, evtchn_upcall_pending),
            VCPU_INFO_UPCALL_PENDING
        );
        assert_eq!(
            offset_of!(VcpuInfo, evtchn_upcall_mask),
            VCPU_INFO_UPCALL_MASK
        );
        assert_eq!(
            offset_of!(VcpuInfo, evtchn_pending_sel),
            VCPU_INFO_PENDING_SEL
        );
        assert_eq!(offset_of!(VcpuInfo, arch), VCPU_INFO_ARCH);
        assert_eq!(offset_of!(VcpuInfo, time), VCPU_INFO_TIME);
    }

    #[test]
    fn shared_info_layout_matches_xen_h() {
        assert_eq!(size_of::<ArchSharedInfo>(), 48);
        assert_eq!(size_of::<SharedInfo>(), SHARED_INFO_SIZE);
        const { assert!(SHARED_INFO_SIZE <= crate::PAGE_SIZE) };
        assert_eq!(offset_of!(SharedInfo, vcpu_info), 0);
        assert_eq!(
            offset_of!(SharedInfo, evtchn_pending),
            SHARED_INFO_EVTCHN_PENDING
        );
        assert_eq!(offset_of!(SharedInfo, evtchn_mask), SHARED_INFO_EVTCHN_MASK);
        assert_eq!(offset_of!(SharedInfo, wc_version), SHARED_INFO_WC_VERSION);
        assert_eq!(offset_of!(SharedInfo, wc_sec), SHARED_INFO_WC_SEC);
        assert_eq!(offset_of!(SharedInfo, wc_nsec), SHARED_INFO_WC_NSEC);
        assert_eq!(offset_of!(SharedInfo, wc_sec_hi), SHARED_INFO_WC_SEC_HI);
        assert_eq!(offset_of!(SharedInfo, arch), SHARED_INFO_ARCH);
        assert_eq!(
            EVTCHN_WORDS * 64,
            crate::event_channel::EVTCHN_2L_NR_CHANNELS as usize
        );
    }

    #[test]
    fn offsets_and_bits() {
        assert_eq!(vcpu_info_offset(0), Some(0));
        assert_eq!(vcpu_info_offset(31), Some(31 * 64));
        assert_eq!(vcpu_info_offset(32), None);
        assert_eq!(evtchn_word(0), 0);
        assert_eq!(evtchn_bit(0), 1);
        assert_eq!(evtchn_word(63), 0);
        assert_eq!(evtchn_bit(63), 1 << 63);
        assert_eq!(evtchn_word(64), 1);
        assert_eq!(evtchn_bit(65), 2);
        assert_eq!(evtchn_word(4095), EVTCHN_WORDS - 1);
        assert_eq!(evtchn_word(u32::MAX), (u32::MAX / 64) as usize);
    }

    #[test]
    fn pvclock_scaling() {
        // 1 GHz TSC: mul = 2^32 (does not fit), so Xen uses shift 1, mul 2^31.
        let t = VcpuTimeInfo {
            tsc_timestamp: 1_000,
            system_time: 5_000_000,
            tsc_to_system_mul: 1 << 31,
            tsc_shift: 1,
            ..VcpuTimeInfo::default()
        };
        assert_eq!(t.system_time_ns(1_000), 5_000_000);
        assert_eq!(t.system_time_ns(2_000), 5_001_000);
        assert_eq!(t.system_time_ns(500), 5_000_000); // before the snapshot
        assert_eq!(t.tsc_hz(), Some(1_000_000_000));

        // 2.5 GHz TSC: 0.4 ns per tick; mul = 0.8 * 2^32 with shift -1.
        let t = VcpuTimeInfo {
            tsc_to_system_mul: 3_435_973_837, // round(0.8 * 2^32)
            tsc_shift: -1,
            ..VcpuTimeInfo::default()
        };
        assert_eq!(t.system_time_ns(2_500_000_000), 1_000_000_000);
        let hz = t.tsc_hz().unwrap_or_default();
        // Truncation in the division and the shift loses a couple of Hz.
        assert!(hz.abs_diff(2_500_000_000) <= 4, "{hz}");

        // Extreme shifts do not panic.
        assert_eq!(scale_delta(u64::MAX, u32::MAX, 127), 0);
        assert_eq!(scale_delta(u64::MAX, u32::MAX, -128), 0);
        assert_eq!(scale_delta(u64::MAX, u32::MAX, 0), u64::MAX - (1 << 32));
        let zero = VcpuTimeInfo::default();
        assert_eq!(zero.tsc_hz(), None);
        let wide = VcpuTimeInfo {
            tsc_to_system_mul: 1,
            tsc_shift: -100,
            ..VcpuTimeInfo::default()
        };
        assert_eq!(wide.tsc_hz(), Some(u64::MAX));
    }
}
