//! The hypercall page and typed hypercall wrappers.
//!
//! Setup follows `xen/include/public/arch-x86/cpuid.h`: find Xen's CPUID leaves
//! (signature "XenVMMXenVMM" at `0x4000_0000 + k * 0x100`), read the MSR index from
//! leaf base+2, and write the guest-physical address of a page to that MSR; Xen fills
//! the page with one 32-byte stub per hypercall (`mov $N, %eax; vmmcall; ret`).
//! Calling through the page rather than issuing `vmmcall` directly keeps the guest
//! independent of the CPU vendor (and avoided a triple fault seen under nested SVM).
//!
//! Calling convention (`xen/include/public/arch-x86/xen-x86_64.h`): arguments in
//! `rdi, rsi, rdx, r10, r8`, result in `rax`; a negative result is `-errno`
//! (`xen/include/public/errno.h`). Xen may clobber the argument registers.

use core::arch::asm;
use core::arch::x86_64::__cpuid;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::registers::model_specific::Msr;
use xen_abi::event_channel::{EVTCHNOP_SEND, EvtchnSend};
use xen_abi::hvm::{HVMOP_GET_PARAM, HvmParam};
use xen_abi::sched::{SCHEDOP_BLOCK, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD, SchedShutdown};
use xen_abi::version::{ExtraVersion, XENVER_EXTRAVERSION, XENVER_VERSION};
use xen_abi::{DOMID_SELF, cpuid, hypercall};

/// Why a hypercall could not be made or what Xen answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypercallError {
    /// [`init`] has not installed the hypercall page yet.
    NotReady,
    /// Xen returned `-errno`; the value here is the positive errno (`errno.h`).
    Errno(i64),
}

impl fmt::Display for HypercallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HypercallError::NotReady => f.write_str("hypercall page not installed"),
            HypercallError::Errno(e) => write!(f, "Xen returned -{e}"),
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
