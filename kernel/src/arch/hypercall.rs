//! The hypercall page and typed hypercall wrappers.
//!
//! Setup follows `xen/include/public/arch-x86/cpuid.h`: find Xen's CPUID leaves
//! (signature "XenVMMXenVMM" at `0x4000_0000 + k * 0x100`), read the MSR index from
//! leaf base+2, and write the guest-physical address of a page to that MSR; Xen fills
//! the page with one 32-byte stub per hypercall (`mov $N, %eax; vmmcall; ret`).
//! Calling through the page rather than issuing `vmmcall` directly keeps the guest
//! independent of the CPU vendor (and see docs/TESTING-XEN.md, "Port 0xE9 and the
//! triple fault").
//!
//! Calling convention (`xen/include/public/arch-x86/xen-x86_64.h`): arguments in
//! `rdi, rsi, rdx, r10, r8`, result in `rax`; a negative result is `-errno`
//! (`xen/include/public/errno.h`). Xen may clobber the argument registers.

use core::arch::asm;
use core::arch::x86_64::__cpuid;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::registers::model_specific::Msr;
use xen_abi::event_channel::{
    EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN, EVTCHNOP_BIND_VIRQ, EVTCHNOP_CLOSE,
    EVTCHNOP_SEND, EVTCHNOP_STATUS, EVTCHNOP_UNMASK, EvtchnAllocUnbound, EvtchnBindInterdomain,
    EvtchnBindVirq, EvtchnClose, EvtchnPort, EvtchnSend, EvtchnStatus, EvtchnUnmask,
};
use xen_abi::grant_table::{GNTTABOP_QUERY_SIZE, GnttabQuerySize, GrantStatusError};
use xen_abi::hvm::{HVMOP_GET_PARAM, HVMOP_SET_PARAM, HvmParam};
use xen_abi::memory::{XENMEM_ADD_TO_PHYSMAP, XenAddToPhysmap};
use xen_abi::sched::{
    SCHED_POLL_MAX_PORTS, SCHEDOP_BLOCK, SCHEDOP_POLL, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD, SchedPoll,
    SchedShutdown,
};
use xen_abi::vcpu::{
    VCPUOP_SET_SINGLESHOT_TIMER, VCPUOP_STOP_PERIODIC_TIMER, VCPUOP_STOP_SINGLESHOT_TIMER,
    VcpuSetSingleshotTimer,
};
use xen_abi::version::{
    ExtraVersion, FeatureInfo, XENVER_EXTRAVERSION, XENVER_GET_FEATURES, XENVER_VERSION,
};
use xen_abi::{DOMID_SELF, DomId, cpuid, hypercall};

/// Why a hypercall could not be made or what Xen answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypercallError {
    /// [`init`] has not installed the hypercall page yet.
    NotReady,
    /// Xen returned `-errno`; the value here is the positive errno (`errno.h`).
    Errno(i64),
    /// A grant-table operation returned a non-`GNTST_okay` status.
    Grant(GrantStatusError),
}

impl fmt::Display for HypercallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HypercallError::NotReady => f.write_str("hypercall page not installed"),
            HypercallError::Errno(e) => match i32::try_from(*e)
                .ok()
                .and_then(|n| xen_abi::errno::Errno(n).name())
            {
                Some(name) => write!(f, "Xen returned -{e} ({name})"),
                None => write!(f, "Xen returned -{e}"),
            },
            HypercallError::Grant(e) => write!(f, "grant-table status {e:?}"),
        }
    }
}

/// Why [`init`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// No CPUID leaf range carries Xen's signature: not running on Xen.
    NotXen,
    /// Xen's leaves stop before the hypercall leaf (base+2).
    NoHypercallLeaf {
        /// The base leaf found.
        base: u32,
    },
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::NotXen => f.write_str("no Xen CPUID signature"),
            InitError::NoHypercallLeaf { base } => {
                write!(f, "Xen CPUID leaves at {base:#x} lack the hypercall leaf")
            }
        }
    }
}

/// What [`init`] found.
#[derive(Clone, Copy, Debug)]
pub struct XenCpuid {
    /// Xen's base CPUID leaf.
    pub base: u32,
    /// `major << 16 | minor` from leaf base+1.
    pub version: u32,
    /// The MSR Xen takes the hypercall page address from.
    pub msr: u32,
    /// Physical address of the installed hypercall page.
    pub page: u64,
}

/// The page Xen fills with hypercall stubs. It lives in `.bss`, which the boot
/// identity map leaves writable and executable. Only ever addressed through raw
/// pointers: Rust never reads or writes it.
#[repr(C, align(4096))]
struct HypercallPage([u8; xen_abi::PAGE_SIZE]);

/// See [`HypercallPage`].
static mut HYPERCALL_PAGE: HypercallPage = HypercallPage([0; xen_abi::PAGE_SIZE]);

/// Address of the installed hypercall page, 0 until [`init`] succeeds.
static PAGE: AtomicU64 = AtomicU64::new(0);

/// Finds Xen's CPUID leaves and installs the hypercall page. Idempotent.
pub fn init() -> Result<XenCpuid, InitError> {
    let base = find_base().ok_or(InitError::NotXen)?;
    // CPUID is always available in long mode; these leaves only read Xen's data.
    let top = __cpuid(base).eax;
    if top < base + cpuid::LEAF_HYPERCALL {
        return Err(InitError::NoHypercallLeaf { base });
    }
    let version = __cpuid(base + cpuid::LEAF_VERSION).eax;
    let msr = __cpuid(base + cpuid::LEAF_HYPERCALL).ebx;
    let page = (&raw const HYPERCALL_PAGE) as u64;
    // SAFETY: writing Xen's hypercall MSR with the physical (= virtual, identity
    // map) address of a page-aligned page we own makes Xen fill that page with
    // stubs; the value's low 12 bits (0) select hypercall page 0. Nothing else uses
    // this page.
    unsafe { Msr::new(msr).write(page) };
    // Release: the MSR write (which fills the page) happens before any caller that
    // sees the address (with Acquire) calls into the page.
    PAGE.store(page, Ordering::Release);
    Ok(XenCpuid {
        base,
        version,
        msr,
        page,
    })
}

/// Searches the candidate CPUID bases for Xen's signature.
fn find_base() -> Option<u32> {
    (cpuid::BASE_FIRST..=cpuid::BASE_LAST)
        .step_by(cpuid::BASE_STEP as usize)
        .find(|&leaf| {
            let r = __cpuid(leaf);
            cpuid::is_xen_signature(r.ebx, r.ecx, r.edx)
        })
}

/// Calls hypercall `op` through the page with five arguments.
///
/// # Safety
/// The arguments must be valid for `op` as Xen's public headers define it: every
/// pointer argument must point to memory of the right type and size that stays valid
/// (and, for outputs, writable and not otherwise borrowed) for the whole call.
unsafe fn call5(
    op: u32,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
    a5: u64,
) -> Result<i64, HypercallError> {
    // Acquire: pairs with the Release in `init`, so the page is filled before use.
    let page = PAGE.load(Ordering::Acquire);
    if page == 0 {
        return Err(HypercallError::NotReady);
    }
    let entry = page + u64::from(op) * hypercall::ENTRY_SIZE as u64;
    let ret: i64;
    // SAFETY: `entry` is the stub for `op` in the page Xen filled; the stub only
    // does `mov $op, %eax; vmmcall; ret`. The argument registers are declared
    // clobbered (Xen may change them), memory is clobbered (the default) because
    // Xen reads and writes guest memory through the pointer arguments, which the
    // caller vouches for. The call needs a stack (no `nostack`); the target has no
    // red zone.
    unsafe {
        asm!(
            "call {entry}",
            entry = in(reg) entry,
            lateout("rax") ret,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
        );
    }
    if ret < 0 {
        Err(HypercallError::Errno(ret.wrapping_neg()))
    } else {
        Ok(ret)
    }
}

/// `SCHEDOP_shutdown` with `reason` (a `SHUTDOWN_*` value, `sched.h`). Returns only
/// if Xen refuses (or, for `SHUTDOWN_suspend`, on resume).
pub fn shutdown(reason: u32) -> Result<i64, HypercallError> {
    let arg = SchedShutdown { reason };
    // SAFETY: SCHEDOP_shutdown takes a pointer to a `struct sched_shutdown`, which
    // `arg` is; Xen only reads it during the call.
    unsafe {
        call5(
            hypercall::SCHED_OP,
            u64::from(SCHEDOP_SHUTDOWN),
            (&raw const arg) as u64,
            0,
            0,
            0,
        )
    }
}

/// `SCHEDOP_yield`: let other vCPUs (dom0's console daemon, say) run.
pub fn yield_now() -> Result<(), HypercallError> {
    // SAFETY: SCHEDOP_yield takes no argument (the pointer is ignored and null).
    unsafe { call5(hypercall::SCHED_OP, u64::from(SCHEDOP_YIELD), 0, 0, 0, 0) }.map(drop)
}

/// `SCHEDOP_block`: sleep until an event channel is pending for this vCPU.
pub fn block() -> Result<(), HypercallError> {
    // SAFETY: SCHEDOP_block takes no argument (the pointer is ignored and null).
    unsafe { call5(hypercall::SCHED_OP, u64::from(SCHEDOP_BLOCK), 0, 0, 0, 0) }.map(drop)
}

/// `SCHEDOP_poll`: block until one of `ports` is pending, an event wakes the vCPU, or
/// Xen system time reaches `timeout_abs_ns` (0: no timeout). At most
/// [`SCHED_POLL_MAX_PORTS`] ports are passed (the rest are left out).
pub fn poll(ports: &[u32], timeout_abs_ns: u64) -> Result<(), HypercallError> {
    let ports = ports
        .get(..ports.len().min(SCHED_POLL_MAX_PORTS))
        .unwrap_or(&[]);
    let arg = SchedPoll {
        ports: ports.as_ptr() as u64,
        nr_ports: ports.len() as u32,
        timeout: timeout_abs_ns,
    };
    // SAFETY: SCHEDOP_poll reads one `struct sched_poll` (which `arg` is) and
    // `nr_ports` `evtchn_port_t`s at `ports` (a live slice of u32s of that length,
    // identity-mapped, so its address is the guest address Xen expects), only during
    // the call.
    unsafe {
        call5(
            hypercall::SCHED_OP,
            u64::from(SCHEDOP_POLL),
            (&raw const arg) as u64,
            0,
            0,
            0,
        )
    }
    .map(drop)
}

/// `XENVER_version`: `(major, minor)`.
pub fn xen_version() -> Result<(u16, u16), HypercallError> {
    // SAFETY: XENVER_version takes no argument (null pointer) and returns the version.
    let raw = unsafe {
        call5(
            hypercall::XEN_VERSION,
            u64::from(XENVER_VERSION),
            0,
            0,
            0,
            0,
        )
    }?;
    Ok(xen_abi::version::split_version(raw as u32))
}

/// `XENVER_extraversion`: the raw 16-byte, NUL-padded extra version (such as `.7`).
pub fn xen_extraversion() -> Result<ExtraVersion, HypercallError> {
    let mut buf: ExtraVersion = [0; 16];
    // SAFETY: XENVER_extraversion writes exactly one `xen_extraversion_t` (16 bytes)
    // to the pointer, which is `buf`, live and exclusively borrowed for the call.
    unsafe {
        call5(
            hypercall::XEN_VERSION,
            u64::from(XENVER_EXTRAVERSION),
            (&raw mut buf) as u64,
            0,
            0,
            0,
        )
    }?;
    Ok(buf)
}

/// `HVMOP_get_param` for this domain.
pub fn hvm_get_param(index: u32) -> Result<u64, HypercallError> {
    let mut param = HvmParam {
        domid: DOMID_SELF,
        index,
        value: 0,
    };
    // SAFETY: HVMOP_get_param reads and writes one `struct xen_hvm_param`, which
    // `param` is, live and exclusively borrowed for the call.
    unsafe {
        call5(
            hypercall::HVM_OP,
            u64::from(HVMOP_GET_PARAM),
            (&raw mut param) as u64,
            0,
            0,
            0,
        )
    }?;
    Ok(param.value)
}

/// `EVTCHNOP_send`: notify the remote end of local event channel `port`.
pub fn evtchn_send(port: u32) -> Result<(), HypercallError> {
    let arg = EvtchnSend { port };
    // SAFETY: EVTCHNOP_send reads one `struct evtchn_send`, which `arg` is.
    unsafe {
        call5(
            hypercall::EVENT_CHANNEL_OP,
            u64::from(EVTCHNOP_SEND),
            (&raw const arg) as u64,
            0,
            0,
            0,
        )
    }
    .map(drop)
}

/// `HVMOP_set_param` for this domain.
pub fn hvm_set_param(index: u32, value: u64) -> Result<(), HypercallError> {
    let mut param = HvmParam {
        domid: DOMID_SELF,
        index,
        value,
    };
    // SAFETY: HVMOP_set_param reads one `struct xen_hvm_param`, which `param` is,
    // live and exclusively borrowed for the call.
    unsafe {
        call5(
            hypercall::HVM_OP,
            u64::from(HVMOP_SET_PARAM),
            (&raw mut param) as u64,
            0,
            0,
            0,
        )
    }
    .map(drop)
}

/// `XENVER_get_features`: word `submap_idx` of the feature bitmap (`features.h`).
pub fn xen_features(submap_idx: u32) -> Result<u32, HypercallError> {
    let mut info = FeatureInfo {
        submap_idx,
        submap: 0,
    };
    // SAFETY: XENVER_get_features reads `submap_idx` and writes `submap` of one
    // `struct xen_feature_info`, which `info` is, live and exclusively borrowed.
    unsafe {
        call5(
            hypercall::XEN_VERSION,
            u64::from(XENVER_GET_FEATURES),
            (&raw mut info) as u64,
            0,
            0,
            0,
        )
    }?;
    Ok(info.submap)
}

/// `XENMEM_add_to_physmap` for this domain: makes page `idx` of `space`
/// (`XENMAPSPACE_*`, `memory.h`) appear at guest frame `gpfn`. Whatever RAM page
/// was at `gpfn` is given back to Xen.
pub fn add_to_physmap(space: u32, idx: u64, gpfn: u64) -> Result<(), HypercallError> {
    let mut arg = XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space,
        idx,
        gpfn,
    };
    // SAFETY: XENMEM_add_to_physmap reads one `struct xen_add_to_physmap`, which
    // `arg` is, live and exclusively borrowed for the call. It changes the p2m entry
    // of `gpfn`, which the caller owns (a frame it took from the frame allocator or
    // mapped there before), so no live Rust reference covers that page's old contents.
    unsafe {
        call5(
            hypercall::MEMORY_OP,
            u64::from(XENMEM_ADD_TO_PHYSMAP),
            (&raw mut arg) as u64,
            0,
            0,
            0,
        )
    }
    .map(drop)
}

/// Issues `EVTCHNOP_<cmd>` with `arg` (in/out).
///
/// # Safety
/// `T` must be the argument struct `event_channel.h` defines for `cmd`.
unsafe fn evtchn_op<T>(cmd: u32, arg: &mut T) -> Result<(), HypercallError> {
    // SAFETY: the caller guarantees `T` is `cmd`'s argument; `arg` is live and
    // exclusively borrowed for the call, so Xen may read and write it.
    unsafe {
        call5(
            hypercall::EVENT_CHANNEL_OP,
            u64::from(cmd),
            (arg as *mut T) as u64,
            0,
            0,
            0,
        )
    }
    .map(drop)
}

/// `EVTCHNOP_alloc_unbound`: a new local port that `remote_dom` may bind to.
pub fn evtchn_alloc_unbound(remote_dom: DomId) -> Result<EvtchnPort, HypercallError> {
    let mut arg = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom,
        port: 0,
    };
    // SAFETY: `EvtchnAllocUnbound` is EVTCHNOP_alloc_unbound's argument.
    unsafe { evtchn_op(EVTCHNOP_ALLOC_UNBOUND, &mut arg) }?;
    Ok(arg.port)
}

/// `EVTCHNOP_status` of our `port`: its state (`EVTCHNSTAT_*`) and peer.
pub fn evtchn_status(port: EvtchnPort) -> Result<EvtchnStatus, HypercallError> {
    let mut arg = EvtchnStatus {
        dom: DOMID_SELF,
        port,
        ..EvtchnStatus::default()
    };
    // SAFETY: `EvtchnStatus` is EVTCHNOP_status's argument.
    unsafe { evtchn_op(EVTCHNOP_STATUS, &mut arg) }?;
    Ok(arg)
}

/// `EVTCHNOP_bind_virq`: a new local port for `virq` on `vcpu`.
pub fn evtchn_bind_virq(virq: u32, vcpu: u32) -> Result<EvtchnPort, HypercallError> {
    let mut arg = EvtchnBindVirq {
        virq,
        vcpu,
        port: 0,
    };
    // SAFETY: `EvtchnBindVirq` is EVTCHNOP_bind_virq's argument.
    unsafe { evtchn_op(EVTCHNOP_BIND_VIRQ, &mut arg) }?;
    Ok(arg.port)
}

/// `EVTCHNOP_bind_interdomain`: a new local port connected to `remote_port` of
/// `remote_dom` (which must be unbound and allow us).
pub fn evtchn_bind_interdomain(
    remote_dom: DomId,
    remote_port: EvtchnPort,
) -> Result<EvtchnPort, HypercallError> {
    let mut arg = EvtchnBindInterdomain {
        remote_dom,
        remote_port,
        local_port: 0,
    };
    // SAFETY: `EvtchnBindInterdomain` is EVTCHNOP_bind_interdomain's argument.
    unsafe { evtchn_op(EVTCHNOP_BIND_INTERDOMAIN, &mut arg) }?;
    Ok(arg.local_port)
}

/// `EVTCHNOP_close`.
pub fn evtchn_close(port: EvtchnPort) -> Result<(), HypercallError> {
    let mut arg = EvtchnClose { port };
    // SAFETY: `EvtchnClose` is EVTCHNOP_close's argument.
    unsafe { evtchn_op(EVTCHNOP_CLOSE, &mut arg) }
}

/// `EVTCHNOP_unmask`: clears the port's mask bit and re-raises it if pending.
pub fn evtchn_unmask(port: EvtchnPort) -> Result<(), HypercallError> {
    let mut arg = EvtchnUnmask { port };
    // SAFETY: `EvtchnUnmask` is EVTCHNOP_unmask's argument.
    unsafe { evtchn_op(EVTCHNOP_UNMASK, &mut arg) }
}

/// `VCPUOP_set_singleshot_timer`: raise `VIRQ_TIMER` on `vcpu` once Xen's system
/// time reaches `timeout_abs_ns` (at once if it already has; no
/// `VCPU_SSHOTTMR_future`).
pub fn vcpu_set_singleshot_timer(vcpu: u32, timeout_abs_ns: u64) -> Result<(), HypercallError> {
    let mut arg = VcpuSetSingleshotTimer {
        timeout_abs_ns,
        flags: 0,
    };
    // SAFETY: VCPUOP_set_singleshot_timer reads one `struct
    // vcpu_set_singleshot_timer`, which `arg` is, live for the call.
    unsafe {
        call5(
            hypercall::VCPU_OP,
            u64::from(VCPUOP_SET_SINGLESHOT_TIMER),
            u64::from(vcpu),
            (&raw mut arg) as u64,
            0,
            0,
        )
    }
    .map(drop)
}

/// `VCPUOP_stop_singleshot_timer`.
pub fn vcpu_stop_singleshot_timer(vcpu: u32) -> Result<(), HypercallError> {
    // SAFETY: VCPUOP_stop_singleshot_timer takes no argument (null).
    unsafe {
        call5(
            hypercall::VCPU_OP,
            u64::from(VCPUOP_STOP_SINGLESHOT_TIMER),
            u64::from(vcpu),
            0,
            0,
            0,
        )
    }
    .map(drop)
}

/// `VCPUOP_stop_periodic_timer`: no periodic `VIRQ_TIMER` ticks (an idle guest
/// must not be woken for nothing).
pub fn vcpu_stop_periodic_timer(vcpu: u32) -> Result<(), HypercallError> {
    // SAFETY: VCPUOP_stop_periodic_timer takes no argument (null).
    unsafe {
        call5(
            hypercall::VCPU_OP,
            u64::from(VCPUOP_STOP_PERIODIC_TIMER),
            u64::from(vcpu),
            0,
            0,
            0,
        )
    }
    .map(drop)
}

/// `GNTTABOP_query_size` for this domain: `(nr_frames, max_nr_frames)`.
pub fn gnttab_query_size() -> Result<(u32, u32), HypercallError> {
    let mut arg = GnttabQuerySize {
        dom: DOMID_SELF,
        ..GnttabQuerySize::default()
    };
    // SAFETY: GNTTABOP_query_size reads and writes `count` (1) `struct
    // gnttab_query_size`, which `arg` is, live and exclusively borrowed.
    unsafe {
        call5(
            hypercall::GRANT_TABLE_OP,
            u64::from(GNTTABOP_QUERY_SIZE),
            (&raw mut arg) as u64,
            1,
            0,
            0,
        )
    }?;
    xen_abi::grant_table::check_status(arg.status).map_err(HypercallError::Grant)?;
    Ok((arg.nr_frames, arg.max_nr_frames))
}
