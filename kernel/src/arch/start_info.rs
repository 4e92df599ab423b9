//! Reads `struct hvm_start_info` and copies out the command line and memory map.
//!
//! Layout: `xen/include/public/arch-x86/hvm/start_info.h` (via `xen_abi::start_info`).
//! Everything here is input from the domain builder and is treated as untrusted: every
//! address is checked to lie in the boot identity map, outside page 0 and outside the
//! kernel image, before it is read; the command line and the memory map are copied
//! into bounded buffers ([`MAX_CMDLINE`] bytes, [`MAX_MEMMAP`] entries) and whatever
//! does not fit is counted, not read. No-panic promise: no arithmetic here can
//! overflow and nothing is indexed by an untrusted value.

use core::fmt;
use core::ops::Range;

use xen_abi::start_info::{HVM_START_MAGIC, HvmMemmapEntry, HvmStartInfo};

/// Longest command line kept, in bytes (excluding the NUL).
pub const MAX_CMDLINE: usize = 1024;
/// Most memory-map entries kept.
pub const MAX_MEMMAP: usize = 64;

/// Why the start info is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    /// The start-info address itself is not readable memory.
    BadAddress(u64),
    /// The magic field is not `XEN_HVM_START_MAGIC_VALUE`.
    BadMagic(u32),
    /// Version 0 has no memory map, and memory is sized from it.
    NoMemmap {
        /// The version found.
        version: u32,
    },
    /// The memory map address or size is not readable memory.
    BadMemmap {
        /// Its physical address.
        paddr: u64,
        /// Its entry count.
        entries: u32,
    },
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            StartInfoError::BadAddress(a) => write!(f, "hvm_start_info at {a:#x} is not readable"),
            StartInfoError::BadMagic(m) => write!(f, "hvm_start_info magic {m:#x} is wrong"),
            StartInfoError::NoMemmap { version } => {
                write!(f, "hvm_start_info version {version} has no memory map")
            }
            StartInfoError::BadMemmap { paddr, entries } => write!(
                f,
                "memory map at {paddr:#x} ({entries} entries) is not readable"
            ),
        }
    }
}

/// What the kernel keeps from the start info, copied out of guest memory.
#[derive(Clone, Debug)]
pub struct BootData {
    /// The start info's version field.
    pub version: u32,
    /// The start info's `SIF_*` flags.
    pub flags: u32,
    /// ACPI RSDP address (0 if none).
    pub rsdp_paddr: u64,
    /// Number of boot modules Xen reported (not used by xenrs).
    pub nr_modules: u32,
    /// Command-line bytes (up to the first NUL).
    cmdline: [u8; MAX_CMDLINE],
    /// Valid bytes in `cmdline`.
    cmdline_len: usize,
    /// The command line had no NUL within [`MAX_CMDLINE`] bytes (or ran into
    /// unreadable memory) and was cut.
    pub cmdline_truncated: bool,
    /// The command-line address was set but not readable; the command line is empty.
    pub cmdline_unreadable: bool,
    /// Memory map entries.
    memmap: [HvmMemmapEntry; MAX_MEMMAP],
    /// Valid entries in `memmap`.
    memmap_len: usize,
    /// Entries beyond [`MAX_MEMMAP`] that were not read.
    pub memmap_dropped: u32,
}

impl BootData {
    /// The command line bytes (no NUL).
    pub fn cmdline(&self) -> &[u8] {
        self.cmdline.get(..self.cmdline_len).unwrap_or(&[])
    }

    /// The copied memory map.
    pub fn memmap(&self) -> &[HvmMemmapEntry] {
        self.memmap.get(..self.memmap_len).unwrap_or(&[])
    }
}

/// Physical memory the start info may point to: identity-mapped, not page 0, not
/// the kernel image (whose guard pages are unmapped and whose data is ours).
#[derive(Clone, Debug)]
struct Readable {
    /// The kernel image.
    image: Range<u64>,
}

impl Readable {
    /// The readable bytes starting at `paddr`, at most `len` of them: stops at the
    /// end of the identity map or at the kernel image. `None` if `paddr` itself is
    /// not readable.
    fn span(&self, paddr: u64, len: u64) -> Option<u64> {
        if paddr < xen_abi::PAGE_SIZE as u64
            || paddr >= boot::IDENTITY_MAP_END
            || self.image.contains(&paddr)
        {
            return None;
        }
        let mut limit = boot::IDENTITY_MAP_END - paddr;
        if paddr < self.image.start {
            limit = limit.min(self.image.start - paddr);
        }
        Some(len.min(limit))
    }

    /// True if all of `paddr..paddr + len` is readable.
    fn all(&self, paddr: u64, len: u64) -> bool {
        self.span(paddr, len) == Some(len)
    }
}

/// Reads the start info at `paddr` (from `%ebx`), given the kernel image range.
pub fn read(paddr: u64, image: Range<u64>) -> Result<BootData, StartInfoError> {
    let readable = Readable { image };
    if !readable.all(paddr, size_of::<HvmStartInfo>() as u64) {
        return Err(StartInfoError::BadAddress(paddr));
    }
    // SAFETY: the whole struct lies in identity-mapped memory outside page 0 and the
    // kernel image (checked above); `read_unaligned` makes no alignment assumption
    // and every bit pattern is a valid `HvmStartInfo` (plain integers).
    let info = unsafe { core::ptr::read_unaligned(paddr as *const HvmStartInfo) };
    if info.magic != HVM_START_MAGIC {
        return Err(StartInfoError::BadMagic(info.magic));
    }
    if info.version < 1 {
        return Err(StartInfoError::NoMemmap {
            version: info.version,
        });
    }
    let mut data = BootData {
        version: info.version,
        flags: info.flags,
        rsdp_paddr: info.rsdp_paddr,
        nr_modules: info.nr_modules,
        cmdline: [0; MAX_CMDLINE],
        cmdline_len: 0,
        cmdline_truncated: false,
        cmdline_unreadable: false,
        memmap: [HvmMemmapEntry::default(); MAX_MEMMAP],
        memmap_len: 0,
        memmap_dropped: 0,
    };
    copy_memmap(&readable, &info, &mut data)?;
    copy_cmdline(&readable, info.cmdline_paddr, &mut data);
    Ok(data)
}

/// Copies up to [`MAX_MEMMAP`] memory-map entries.
fn copy_memmap(
    readable: &Readable,
    info: &HvmStartInfo,
    data: &mut BootData,
) -> Result<(), StartInfoError> {
    let bad = StartInfoError::BadMemmap {
        paddr: info.memmap_paddr,
        entries: info.memmap_entries,
    };
    let keep = (info.memmap_entries as usize).min(MAX_MEMMAP);
    data.memmap_dropped = info.memmap_entries.saturating_sub(keep as u32);
    let entry_size = size_of::<HvmMemmapEntry>() as u64;
    if keep == 0 || !readable.all(info.memmap_paddr, keep as u64 * entry_size) {
        return Err(bad);
    }
    let mut at = info.memmap_paddr;
    for slot in data.memmap.iter_mut().take(keep) {
        // SAFETY: `at` walks `keep` entries that were checked above to lie in
        // identity-mapped memory outside page 0 and the image; unaligned read, and
        // every bit pattern is a valid entry (plain integers).
        *slot = unsafe { core::ptr::read_unaligned(at as *const HvmMemmapEntry) };
        at += entry_size;
    }
    data.memmap_len = keep;
    Ok(())
}

/// Copies the NUL-terminated command line, at most [`MAX_CMDLINE`] bytes.
fn copy_cmdline(readable: &Readable, paddr: u64, data: &mut BootData) {
    if paddr == 0 {
        return;
    }
    // One byte more than kept, to see whether a NUL follows a full buffer.
    let Some(span) = readable.span(paddr, MAX_CMDLINE as u64 + 1) else {
        data.cmdline_unreadable = true;
        return;
    };
    let mut len = 0;
    let mut terminated = false;
    for offset in 0..span {
        // SAFETY: `paddr + offset` is inside the readable span checked above
        // (identity-mapped, not page 0, not the kernel image); a byte read has no
        // alignment requirement.
        let byte = unsafe { core::ptr::read_volatile((paddr + offset) as *const u8) };
        if byte == 0 {
            terminated = true;
            break;
        }
        match data.cmdline.get_mut(len) {
            Some(slot) => {
                *slot = byte;
                len += 1;
            }
            None => break,
        }
    }
    data.cmdline_len = len;
    data.cmdline_truncated = !terminated;
}
