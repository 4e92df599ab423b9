//! The shared info page: placed with `XENMEM_add_to_physmap`, read and written atomically.
//!
//! Layout: `struct shared_info` / `struct vcpu_info` / `struct vcpu_time_info` of
//! `xen/include/public/xen.h` (byte offsets from `xen_abi::shared_info`). A PVH guest
//! chooses where the page appears: [`map`] asks Xen to put it at a frame taken from the
//! frame allocator (`XENMAPSPACE_shared_info`, `xen/include/public/memory.h`); Xen frees
//! the RAM page that was there. After a resume in a new domain the same frame is mapped
//! again ([`remap`]): the copy the save stream restored there is stale.
//!
//! Xen writes this page concurrently with the guest, including from other physical
//! CPUs, so every access is atomic (event words, flags) or a copy taken under the
//! version counter (the clocks). No Rust reference to a plain field is ever formed.

use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

use xen_abi::memory::XENMAPSPACE_SHARED_INFO;
use xen_abi::shared_info as abi;
use xen_abi::shared_info::VcpuTimeInfo;

use crate::arch::hypercall::{self, HypercallError};
use crate::mm::memory::Frame;
use crate::mm::page::MappedPage;

/// Identity-mapped address of the page, 0 until [`map`] succeeded. Read by the
/// upcall handler, so an atomic rather than a lock.
static BASE: AtomicUsize = AtomicUsize::new(0);
/// Guest frame the page is mapped at (for [`remap`]).
static GPFN: AtomicU64 = AtomicU64::new(0);

/// Attempts at a consistent copy of a version-protected record before giving up and
/// using the last copy (Xen's updates take nanoseconds; this only bounds a broken page).
const VERSION_RETRIES: u32 = 10_000;

/// Why the page could not be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedInfoError {
    /// No free frame to place the page at.
    NoFrame,
    /// `XENMEM_add_to_physmap` failed.
    Hypercall(HypercallError),
    /// [`remap`] before [`map`].
    NotMapped,
}

impl core::fmt::Display for SharedInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SharedInfoError::NoFrame => f.write_str("no free frame for the shared info page"),
            SharedInfoError::Hypercall(e) => write!(f, "XENMEM_add_to_physmap: {e}"),
            SharedInfoError::NotMapped => f.write_str("shared info page not mapped yet"),
        }
    }
}

/// Places the shared info page at a fresh frame. Call once.
pub fn map() -> Result<u64, SharedInfoError> {
    let frame = Frame::alloc().ok_or(SharedInfoError::NoFrame)?;
    let gpfn = frame.pfn();
    hypercall::add_to_physmap(XENMAPSPACE_SHARED_INFO, 0, gpfn)
        .map_err(SharedInfoError::Hypercall)?;
    // The frame now belongs to Xen's page; its RAM was given back: never free it.
    let gpfn = frame.into_pfn();
    GPFN.store(gpfn, Ordering::Relaxed);
    // Release: the mapping hypercall happens before any reader that sees the address.
    BASE.store((gpfn << xen_abi::PAGE_SHIFT) as usize, Ordering::Release);
    Ok(gpfn)
}

/// After a resume in a new domain: maps the new domain's shared info at the same frame.
pub fn remap() -> Result<(), SharedInfoError> {
    let gpfn = GPFN.load(Ordering::Relaxed);
    if gpfn == 0 {
        return Err(SharedInfoError::NotMapped);
    }
    hypercall::add_to_physmap(XENMAPSPACE_SHARED_INFO, 0, gpfn).map_err(SharedInfoError::Hypercall)
}

/// A handle on the mapped page (only obtainable once it is mapped).
#[derive(Clone, Copy, Debug)]
pub struct SharedInfo {
    /// The page.
    page: MappedPage,
}

/// The mapped page, or `None` before [`map`].
pub fn get() -> Option<SharedInfo> {
    // Acquire: pairs with the Release in `map`.
    let pfn = BASE.load(Ordering::Acquire) as u64 >> xen_abi::PAGE_SHIFT;
    // SAFETY: a non-zero BASE is the frame `map` gave to Xen's shared info page: taken
    // from the frame allocator and never freed, so it stays mapped for the domain's
    // life; Xen and this module's atomics are its only users.
    let page = unsafe { MappedPage::from_pfn(pfn) }?;
    Some(SharedInfo { page })
}

/// Stands in for a field outside the page, which the `xen_abi` offsets used below
/// never are; it keeps the accessors total without a panic.
static OUTSIDE: (AtomicU64, AtomicU32, AtomicU8) =
    (AtomicU64::new(0), AtomicU32::new(0), AtomicU8::new(0));

impl SharedInfo {
    /// The `u64` at byte `offset` of the page as an atomic (an 8-aligned u64 field
    /// of `struct shared_info`; Xen accesses these words atomically too).
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        self.page.u64_at(offset).unwrap_or(&OUTSIDE.0)
    }

    /// The `u32` at byte `offset` as an atomic.
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        self.page.u32_at(offset).unwrap_or(&OUTSIDE.1)
    }

    /// The `u8` at byte `offset` as an atomic.
    fn u8_at(&self, offset: usize) -> &AtomicU8 {
        self.page.u8_at(offset).unwrap_or(&OUTSIDE.2)
    }

    /// vCPU 0's `evtchn_upcall_pending` flag.
    pub fn upcall_pending(&self) -> &AtomicU8 {
        self.u8_at(abi::VCPU_INFO_UPCALL_PENDING)
    }

    /// vCPU 0's `evtchn_pending_sel` word.
    pub fn pending_sel(&self) -> &AtomicU64 {
        self.u64_at(abi::VCPU_INFO_PENDING_SEL)
    }

    /// Word `w` (0..64) of `evtchn_pending`.
    pub fn pending_word(&self, w: usize) -> Option<&AtomicU64> {
        (w < abi::EVTCHN_WORDS).then(|| self.u64_at(abi::SHARED_INFO_EVTCHN_PENDING + 8 * w))
    }

    /// Word `w` (0..64) of `evtchn_mask`.
    pub fn mask_word(&self, w: usize) -> Option<&AtomicU64> {
        (w < abi::EVTCHN_WORDS).then(|| self.u64_at(abi::SHARED_INFO_EVTCHN_MASK + 8 * w))
    }

    /// A consistent copy of vCPU 0's `vcpu_time_info` and a TSC value read inside the
    /// same version window (so the pair can be converted to system time).
    pub fn time_snapshot(&self) -> (VcpuTimeInfo, u64) {
        let t = abi::VCPU_INFO_TIME;
        let version = self.u32_at(t + abi::TIME_VERSION);
        let mut copy = VcpuTimeInfo::default();
        let mut tsc = 0;
        for _ in 0..VERSION_RETRIES {
            // Acquire: the field loads below are not performed before this load, so
            // they belong to this version (or a later one, caught by the re-check).
            let v1 = version.load(Ordering::Acquire);
            if v1 & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            copy = VcpuTimeInfo {
                version: v1,
                pad0: 0,
                // Relaxed (all four): ordered by the Acquire above and the fence below.
                tsc_timestamp: self
                    .u64_at(t + abi::TIME_TSC_TIMESTAMP)
                    .load(Ordering::Relaxed),
                system_time: self
                    .u64_at(t + abi::TIME_SYSTEM_TIME)
                    .load(Ordering::Relaxed),
                tsc_to_system_mul: self
                    .u32_at(t + abi::TIME_TSC_TO_SYSTEM_MUL)
                    .load(Ordering::Relaxed),
                tsc_shift: self.u8_at(t + abi::TIME_TSC_SHIFT).load(Ordering::Relaxed) as i8,
                flags: self.u8_at(t + abi::TIME_FLAGS).load(Ordering::Relaxed),
                pad1: [0; 2],
            };
            tsc = read_tsc();
            // Acquire fence: the field loads (and the TSC read's position) complete
            // before the version is read again.
            fence(Ordering::Acquire);
            // Relaxed: ordered after the field loads by the fence above.
            if version.load(Ordering::Relaxed) == v1 {
                break;
            }
        }
        (copy, tsc)
    }

    /// The wall clock at Xen system time 0: `(seconds since the Unix epoch, ns)`
    /// (`wc_sec`/`wc_sec_hi`/`wc_nsec`, version-checked).
    pub fn wallclock_base(&self) -> (u64, u32) {
        let version = self.u32_at(abi::SHARED_INFO_WC_VERSION);
        let mut out = (0, 0);
        for _ in 0..VERSION_RETRIES {
            // Acquire: as in `time_snapshot`.
            let v1 = version.load(Ordering::Acquire);
            if v1 & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            // Relaxed (all three): ordered by the Acquire above and the fence below.
            let lo = self.u32_at(abi::SHARED_INFO_WC_SEC).load(Ordering::Relaxed);
            let hi = self
                .u32_at(abi::SHARED_INFO_WC_SEC_HI)
                .load(Ordering::Relaxed);
            let nsec = self
                .u32_at(abi::SHARED_INFO_WC_NSEC)
                .load(Ordering::Relaxed);
            out = ((u64::from(hi) << 32) | u64::from(lo), nsec);
            // Acquire fence: the loads above complete before the version re-check.
            fence(Ordering::Acquire);
            // Relaxed: ordered by the fence.
            if version.load(Ordering::Relaxed) == v1 {
                break;
            }
        }
        out
    }
}

/// Reads the TSC, ordered after earlier loads (`lfence; rdtsc`). The TSC is
/// CPUID-advertised on every x86-64 CPU; `rdtscp` is deliberately not used (QEMU's
/// nested SVM cannot emulate its length, see `docs/BOOT.md`).
fn read_tsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: `lfence` and `rdtsc` only read the time-stamp counter into edx:eax and
    // order earlier loads; no memory is written (`nomem` would let the compiler move
    // the read across the version loads, so memory is not excluded). CR4.TSD is clear
    // (ring 0 anyway).
    unsafe {
        core::arch::asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}
