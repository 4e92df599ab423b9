//! Physical memory: the frame allocator and the kernel heap, sized from the e820 map.
//!
//! Usable RAM is the `XEN_HVM_MEMMAP_TYPE_RAM` entries of the PVH memory map
//! (`xen/include/public/arch-x86/hvm/start_info.h`) minus page 0, the kernel image,
//! every non-RAM entry and everything at or above the end of the boot identity map
//! (`frame_alloc::usable_ram` does the page alignment and subtraction). The frame
//! allocator's bitmap is carved from the first usable range that fits it. Policy
//! (console contract): the heap gets HALF of the frames still free after that, as one
//! contiguous run; the rest stays with the frame allocator for page-granular users
//! (ring pages, granted buffers).

use core::fmt;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, Ordering};

use frame_alloc::{FRAME_SHIFT, FRAME_SIZE, FrameAllocator, FrameError, RamRange, usable_ram};
use linked_list_allocator::LockedHeap;
use spin::Mutex;
use xen_abi::start_info::{HvmMemmapEntry, MEMMAP_TYPE_RAM};

use crate::arch::start_info::MAX_MEMMAP;

/// The kernel heap (`alloc`), filled by [`init`].
#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// The frame allocator for page-granular allocations, set by [`init`].
pub static FRAMES: Mutex<Option<FrameAllocator<'static>>> = Mutex::new(None);

/// Most usable-RAM ranges tracked (more are counted and left unused).
const MAX_USABLE: usize = 32;

/// Set by the first [`init`]: the bitmap and heap memory are handed out once.
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Why memory setup failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// [`init`] was called twice.
    AlreadyInitialised,
    /// No usable RAM outside the image.
    NoUsableRam,
    /// No usable range can hold the frame bitmap.
    NoRoomForBitmap {
        /// Bytes the bitmap needs.
        bytes: u64,
    },
    /// The frame allocator rejected its setup.
    Frames(FrameError),
    /// Not even one frame is left for the heap.
    NoHeap,
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::AlreadyInitialised => f.write_str("memory already initialised"),
            MemoryError::NoUsableRam => f.write_str("no usable RAM in the memory map"),
            MemoryError::NoRoomForBitmap { bytes } => {
                write!(f, "no usable RAM range holds the {bytes}-byte frame bitmap")
            }
            MemoryError::Frames(e) => write!(f, "frame allocator: {e}"),
            MemoryError::NoHeap => f.write_str("no free frame left for the heap"),
        }
    }
}

/// What [`init`] set up (the figures of the contract's `xenrs memory:` line).
#[derive(Clone, Debug)]
pub struct MemoryReport {
    /// Sum of the e820 RAM entries, in KiB.
    pub ram_kib: u64,
    /// Heap size in KiB.
    pub heap_kib: u64,
    /// Frames left free in the frame allocator after the heap was taken.
    pub free_frames: u64,
    /// Kernel image size (`.bss` included) in KiB.
    pub kernel_kib: u64,
    /// Physical range of the heap.
    pub heap: Range<u64>,
    /// Physical range of the frame bitmap.
    pub bitmap: Range<u64>,
    /// Usable bytes (after reservations, before the bitmap and heap).
    pub usable_bytes: u64,
    /// Usable ranges that did not fit [`MAX_USABLE`] and are not used.
    pub dropped_ranges: usize,
    /// RAM at or above the identity map's end, which is not used, in KiB.
    pub unmapped_kib: u64,
}

/// Sum of the RAM entries of `memmap`, in KiB (saturating).
pub fn ram_kib(memmap: &[HvmMemmapEntry]) -> u64 {
    memmap
        .iter()
        .filter(|e| e.kind == MEMMAP_TYPE_RAM)
        .fold(0u64, |acc, e| acc.saturating_add(e.size))
        / 1024
}

/// Most extra pages [`init`] can be told to keep out of the allocator.
pub const MAX_KEEP_OUT: usize = 4;

/// Sets up the frame allocator and the heap from the memory map. Call once.
///
/// `keep_out` lists page frames that must never be handed out even if the memory map
/// calls them RAM (the console ring page, say); at most [`MAX_KEEP_OUT`] are used.
pub fn init(
    memmap: &[HvmMemmapEntry],
    image: Range<u64>,
    keep_out: &[u64],
) -> Result<MemoryReport, MemoryError> {
    // AcqRel: the swap is the claim itself; no other data is published through it.
    if INITIALISED.swap(true, Ordering::AcqRel) {
        return Err(MemoryError::AlreadyInitialised);
    }
    let mut ram = [RamRange::default(); MAX_MEMMAP];
    let mut reserved = [RamRange::default(); MAX_MEMMAP + 3 + MAX_KEEP_OUT];
    let (mut n_ram, mut n_res) = (0, 0);
    let mut unmapped = 0u64;
    for entry in memmap {
        let range = RamRange::from_base_size(entry.addr, entry.size);
        let (list, n): (&mut [RamRange], &mut usize) = if entry.kind == MEMMAP_TYPE_RAM {
            let above = RamRange::new(range.start.max(boot::IDENTITY_MAP_END), range.end);
            unmapped = unmapped.saturating_add(above.len());
            (&mut ram, &mut n_ram)
        } else {
            (&mut reserved, &mut n_res)
        };
        if let Some(slot) = list.get_mut(*n) {
            *slot = range;
            *n += 1;
        }
    }
    for fixed in [
        // Page 0 is unmapped (null-pointer guard).
        RamRange::new(0, FRAME_SIZE),
        // The kernel image, .bss and boot stacks included.
        RamRange::new(image.start, image.end),
        // Beyond the identity map.
        RamRange::new(boot::IDENTITY_MAP_END, u64::MAX),
    ] {
        if let Some(slot) = reserved.get_mut(n_res) {
            *slot = fixed;
            n_res += 1;
        }
    }
    for &pfn in keep_out.iter().take(MAX_KEEP_OUT) {
        let start = pfn.saturating_mul(FRAME_SIZE);
        if let Some(slot) = reserved.get_mut(n_res) {
            *slot = RamRange::new(start, start.saturating_add(FRAME_SIZE));
            n_res += 1;
        }
    }
    let usable = usable_ram::<MAX_USABLE>(
        ram.get(..n_ram).unwrap_or(&[]),
        reserved.get(..n_res).unwrap_or(&[]),
    );
    let (Some(first), Some(last)) = (usable.as_slice().first(), usable.as_slice().last()) else {
        return Err(MemoryError::NoUsableRam);
    };
    let first_frame = first.start >> FRAME_SHIFT;
    let end_frame = last.end >> FRAME_SHIFT;

    // The bitmap: one bit per frame, in whole pages, from the first range that fits.
    let words = frame_alloc::bitmap_words(first_frame, end_frame);
    let bitmap_bytes = (words as u64)
        .saturating_mul(8)
        .div_ceil(FRAME_SIZE)
        .saturating_mul(FRAME_SIZE);
    let bitmap_at = usable
        .iter()
        .find(|r| r.len() >= bitmap_bytes)
        .map(|r| r.start)
        .ok_or(MemoryError::NoRoomForBitmap {
            bytes: bitmap_bytes,
        })?;
    // SAFETY: `bitmap_at..bitmap_at + bitmap_bytes` is usable RAM (inside one range
    // `usable_ram` returned: RAM, page aligned, below the identity map's end, not page
    // 0 and not the image), so it is mapped, writable and used by nothing else; it is
    // page aligned (so `u64` aligned); `INITIALISED` makes this the only slice ever
    // made over it, and the range is reserved in the allocator below so it is never
    // handed out. `words * 8 <= bitmap_bytes`.
    let bitmap: &'static mut [u64] =
        unsafe { core::slice::from_raw_parts_mut(bitmap_at as *mut u64, words) };
    let mut frames =
        FrameAllocator::new(bitmap, first_frame, end_frame).map_err(MemoryError::Frames)?;
    for range in &usable {
        let (start, end) = range.frames();
        frames.add_free(start, end);
    }
    let bitmap_range = bitmap_at..bitmap_at + bitmap_bytes;
    frames.reserve(
        bitmap_range.start >> FRAME_SHIFT,
        bitmap_range.end >> FRAME_SHIFT,
    );

    // The heap: half of what is free, contiguous. If the free memory is split into
    // ranges, take the largest run that fits by halving the request.
    let mut heap_frames = frames.free_frames() / 2;
    let heap_first = loop {
        if heap_frames == 0 {
            return Err(MemoryError::NoHeap);
        }
        if let Some(f) = frames.alloc_contiguous(heap_frames, 1) {
            break f;
        }
        heap_frames /= 2;
    };
    let heap_start = heap_first << FRAME_SHIFT;
    let heap_bytes = heap_frames << FRAME_SHIFT;
    // SAFETY: the frames were just allocated from the frame allocator, which only
    // holds usable RAM (mapped, writable, unused) and never hands them out again;
    // `INITIALISED` makes this the heap's only initialisation.
    unsafe {
        HEAP.lock().init(heap_start as *mut u8, heap_bytes as usize);
    }
    let report = MemoryReport {
        ram_kib: ram_kib(memmap),
        heap_kib: heap_bytes / 1024,
        free_frames: frames.free_frames(),
        kernel_kib: image.end.saturating_sub(image.start) / 1024,
        heap: heap_start..heap_start + heap_bytes,
        bitmap: bitmap_range,
        usable_bytes: usable.total_bytes(),
        dropped_ranges: usable.dropped_ranges(),
        unmapped_kib: unmapped / 1024,
    };
    *FRAMES.lock() = Some(frames);
    Ok(report)
}

/// Heap bytes in use and free, from the allocator.
pub fn heap_usage() -> (usize, usize) {
    let heap = HEAP.lock();
    (heap.used(), heap.free())
}

/// One 4 KiB frame owned by its holder: taken from [`FRAMES`], given back on drop.
///
/// The frame is identity mapped (its address is `pfn * 4096`). It is handed out
/// zeroed. A frame that Xen takes over ([`Frame::into_pfn`]: shared info, grant-table
/// frames) is never given back. A `Frame` gives no `&[u8]` view of its bytes: once
/// granted, another domain may write them at any time, so accesses go through raw
/// pointers (volatile) in the code that owns the protocol.
#[derive(Debug)]
pub struct Frame {
    /// Guest frame number (= physical address / 4096).
    pfn: u64,
}

impl Frame {
    /// Takes a free frame and zeroes it; `None` if the allocator is empty or not set up.
    pub fn alloc() -> Option<Frame> {
        let pfn = FRAMES.lock().as_mut()?.alloc()?;
        let frame = Frame { pfn };
        // SAFETY: the allocator only hands out usable RAM inside the identity map,
        // and it just gave this frame to us alone: no reference to it exists.
        unsafe { core::ptr::write_bytes(frame.addr() as *mut u8, 0, FRAME_SIZE as usize) };
        Some(frame)
    }

    /// The guest frame number.
    pub fn pfn(&self) -> u64 {
        self.pfn
    }

    /// The identity-mapped address of the frame's first byte.
    pub fn addr(&self) -> u64 {
        self.pfn << FRAME_SHIFT
    }

    /// Gives up ownership without freeing: the frame is never reused (for frames
    /// whose guest-physical slot Xen takes over).
    pub fn into_pfn(self) -> u64 {
        let pfn = self.pfn;
        core::mem::forget(self);
        pfn
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        if let Some(frames) = FRAMES.lock().as_mut() {
            // A double free cannot happen (the frame is owned); an error here would
            // mean allocator corruption, which is reported rather than hidden.
            if let Err(e) = frames.free(self.pfn) {
                log::error!("freeing frame {:#x}: {e}", self.pfn);
            }
        }
    }
}

impl grant_table::Grantable for Frame {
    fn gfn(&self) -> u64 {
        self.pfn
    }
}

/// Prints the guest's memory use now: `xenrs memory: <when> free_frames=<n>
/// heap_used=<bytes> heap_free=<bytes>` (after services are up and after every resume,
/// so a long save/restore run shows whether frames or heap leak).
pub fn print_usage(when: &str) {
    let (used, free) = heap_usage();
    crate::println!(
        "xenrs memory: {when} free_frames={} heap_used={used} heap_free={free}",
        free_frames()
    );
}

/// Frames free in the frame allocator (0 before [`init`]).
pub fn free_frames() -> u64 {
    FRAMES
        .lock()
        .as_ref()
        .map_or(0, FrameAllocator::free_frames)
}
