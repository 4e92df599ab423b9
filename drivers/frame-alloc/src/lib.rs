//! A physical page-frame allocator over a caller-provided bitmap, plus e820 helpers.
//!
//! [`FrameAllocator`] manages the frames `first_frame..end_frame` (frame = physical
//! address / 4096) with one bit per frame in a `&mut [u64]` the caller owns, so it
//! needs no heap. Every frame starts *used*; the kernel then calls
//! [`FrameAllocator::add_free`] for each usable RAM range (from [`usable_ram`]) and
//! [`FrameAllocator::reserve`] for anything it must keep.
//!
//! [`usable_ram`] turns the PVH memory map (`struct hvm_memmap_table_entry` in
//! `xen/include/public/arch-x86/hvm/start_info.h`, e820 style) into sorted,
//! page-aligned, non-overlapping usable ranges.
//!
//! No-panic promise: no function here panics for any argument values. All
//! arithmetic on frame numbers and addresses is checked or saturating, and all
//! bitmap accesses go through `get`/`get_mut` on indices that are in range by
//! construction.
#![no_std]
#![forbid(unsafe_code)]

mod ram;

pub use ram::{RamRange, UsableRam, usable_ram};

/// Size of a frame in bytes (`XEN_PAGE_SIZE`).
pub const FRAME_SIZE: u64 = 4096;

/// log2 of [`FRAME_SIZE`].
pub const FRAME_SHIFT: u32 = 12;

/// Why a [`FrameAllocator`] operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameError {
    /// `end_frame <= first_frame` in [`FrameAllocator::new`].
    EmptyRange {
        /// The requested first frame.
        first_frame: u64,
        /// The requested end frame (exclusive).
        end_frame: u64,
    },
    /// The bitmap passed to [`FrameAllocator::new`] is shorter than
    /// [`bitmap_words`] requires.
    BitmapTooSmall {
        /// Words needed.
        needed: usize,
        /// Words given.
        given: usize,
    },
    /// The frame is not managed by this allocator.
    OutOfRange(u64),
    /// The frame being freed is already free.
    DoubleFree(u64),
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            FrameError::EmptyRange {
                first_frame,
                end_frame,
            } => write!(f, "empty frame range {first_frame:#x}..{end_frame:#x}"),
            FrameError::BitmapTooSmall { needed, given } => {
                write!(f, "frame bitmap too small: {given} words, need {needed}")
            }
            FrameError::OutOfRange(frame) => write!(f, "frame {frame:#x} is not managed"),
            FrameError::DoubleFree(frame) => write!(f, "frame {frame:#x} freed twice"),
        }
    }
}

/// Number of `u64` bitmap words needed to manage `first_frame..end_frame`
/// (0 for an empty or inverted range; saturates at `usize::MAX`).
pub fn bitmap_words(first_frame: u64, end_frame: u64) -> usize {
    let frames = end_frame.saturating_sub(first_frame);
    usize::try_from(frames.div_ceil(64)).unwrap_or(usize::MAX)
}

/// A next-fit single-frame allocator with first-fit contiguous allocation.
///
/// Bit `i` of the bitmap describes frame `first_frame + i`; a set bit means free.
pub struct FrameAllocator<'a> {
    bitmap: &'a mut [u64],
    first: u64,
    end: u64,
    free: u64,
    /// Relative index where the next [`FrameAllocator::alloc`] search starts.
    cursor: u64,
}

/// Shows the managed range and counts, not the bitmap.
impl core::fmt::Debug for FrameAllocator<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameAllocator")
            .field("first_frame", &self.first)
            .field("end_frame", &self.end)
            .field("free_frames", &self.free)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl<'a> FrameAllocator<'a> {
    /// Same as the free function [`bitmap_words`].
    pub fn bitmap_words(first_frame: u64, end_frame: u64) -> usize {
        bitmap_words(first_frame, end_frame)
    }

    /// Manages frames `first_frame..end_frame` using `bitmap` (at least
    /// [`bitmap_words`] long; extra words are ignored). All frames start used.
    pub fn new(
        bitmap: &'a mut [u64],
        first_frame: u64,
        end_frame: u64,
    ) -> Result<Self, FrameError> {
        if end_frame <= first_frame {
            return Err(FrameError::EmptyRange {
                first_frame,
                end_frame,
            });
        }
        let needed = bitmap_words(first_frame, end_frame);
        let given = bitmap.len();
        let Some(bitmap) = bitmap.get_mut(..needed) else {
            return Err(FrameError::BitmapTooSmall { needed, given });
        };
        bitmap.fill(0);
        Ok(FrameAllocator {
            bitmap,
            first: first_frame,
            end: end_frame,
            free: 0,
            cursor: 0,
        })
    }

    /// The first managed frame.
    pub fn first_frame(&self) -> u64 {
        self.first
    }

    /// One past the last managed frame.
    pub fn end_frame(&self) -> u64 {
        self.end
    }

    /// Number of managed frames (free or used).
    pub fn total_frames(&self) -> u64 {
        self.end - self.first
    }

    /// Number of free frames.
    pub fn free_frames(&self) -> u64 {
        self.free
    }

    /// Whether `frame` is managed and free.
    pub fn is_free(&self, frame: u64) -> bool {
        self.relative(frame).is_some_and(|i| self.bit(i))
    }

    /// Marks `start_frame..end_frame` free, clipped to the managed range.
    /// Returns how many frames changed from used to free.
    pub fn add_free(&mut self, start_frame: u64, end_frame: u64) -> u64 {
        let (lo, hi) = self.clip(start_frame, end_frame);
        let changed = self.set_range(lo, hi, true);
        self.free += changed;
        changed
    }

    /// Marks `start_frame..end_frame` used, clipped to the managed range.
    /// Returns how many frames changed from free to used.
    pub fn reserve(&mut self, start_frame: u64, end_frame: u64) -> u64 {
        let (lo, hi) = self.clip(start_frame, end_frame);
        let changed = self.set_range(lo, hi, false);
        self.free -= changed;
        changed
    }

    /// Allocates one frame, searching onwards from just after the previous
    /// allocation (next-fit) and wrapping around once.
    pub fn alloc(&mut self) -> Option<u64> {
        if self.free == 0 {
            return None;
        }
        let total = self.total_frames();
        let start = if self.cursor < total { self.cursor } else { 0 };
        let found = self
            .find_free(start, total)
            .or_else(|| self.find_free(0, start))?;
        self.set_bit(found, false);
        self.free -= 1;
        self.cursor = found + 1;
        Some(self.first + found)
    }

    /// Allocates `count` consecutive frames whose first frame number is a
    /// multiple of `align_frames` (0 and 1 mean no alignment; any value is
    /// accepted, powers of two are the usual). First-fit from the lowest frame.
    /// Returns the first frame, or `None` if `count` is 0 or no run fits.
    pub fn alloc_contiguous(&mut self, count: u64, align_frames: u64) -> Option<u64> {
        if count == 0 || count > self.free {
            return None;
        }
        let align = align_frames.max(1);
        let mut candidate = align_up(self.first, align)?;
        loop {
            let run_end = candidate.checked_add(count)?;
            if run_end > self.end {
                return None;
            }
            let (lo, hi) = (candidate - self.first, run_end - self.first);
            match self.find_used(lo, hi) {
                None => {
                    self.set_range(lo, hi, false);
                    self.free -= count;
                    return Some(candidate);
                }
                Some(used) => candidate = align_up(self.first + used + 1, align)?,
            }
        }
    }

    /// Returns `frame` to the allocator.
    pub fn free(&mut self, frame: u64) -> Result<(), FrameError> {
        let i = self.relative(frame).ok_or(FrameError::OutOfRange(frame))?;
        if self.bit(i) {
            return Err(FrameError::DoubleFree(frame));
        }
        self.set_bit(i, true);
        self.free += 1;
        Ok(())
    }

    /// Frees `count` frames starting at `first`, as allocated by
    /// [`FrameAllocator::alloc_contiguous`]. Checks the whole run first and
    /// changes nothing on error.
    pub fn free_contiguous(&mut self, first: u64, count: u64) -> Result<(), FrameError> {
        let Some(end) = first.checked_add(count) else {
            return Err(FrameError::OutOfRange(first));
        };
        if count == 0 {
            return Ok(());
        }
        let lo = self.relative(first).ok_or(FrameError::OutOfRange(first))?;
        if end > self.end {
            return Err(FrameError::OutOfRange(self.end));
        }
        let hi = end - self.first;
        if let Some(i) = self.find_free(lo, hi) {
            return Err(FrameError::DoubleFree(self.first + i));
        }
        self.set_range(lo, hi, true);
        self.free += count;
        Ok(())
    }

    fn relative(&self, frame: u64) -> Option<u64> {
        (self.first..self.end)
            .contains(&frame)
            .then(|| frame - self.first)
    }

    /// Clips an absolute half-open range to relative indices `lo <= hi`.
    fn clip(&self, start: u64, end: u64) -> (u64, u64) {
        let lo = start.clamp(self.first, self.end) - self.first;
        let hi = end.clamp(self.first, self.end) - self.first;
        (lo, hi.max(lo))
    }

    fn word(&self, w: u64) -> u64 {
        usize::try_from(w)
            .ok()
            .and_then(|w| self.bitmap.get(w))
            .copied()
            .unwrap_or(0)
    }

    fn word_mut(&mut self, w: u64) -> Option<&mut u64> {
        usize::try_from(w).ok().and_then(|w| self.bitmap.get_mut(w))
    }

    fn bit(&self, i: u64) -> bool {
        self.word(i / 64) & (1 << (i % 64)) != 0
    }

    fn set_bit(&mut self, i: u64, free: bool) {
        if let Some(word) = self.word_mut(i / 64) {
            if free {
                *word |= 1 << (i % 64);
            } else {
                *word &= !(1 << (i % 64));
            }
        }
    }

    /// Sets relative `lo..hi` to `free`; returns how many bits changed.
    fn set_range(&mut self, lo: u64, hi: u64, free: bool) -> u64 {
        let mut changed = 0;
        let mut i = lo;
        while i < hi {
            let w = i / 64;
            let mask = span_mask(i % 64, (hi - w * 64).min(64));
            if let Some(word) = self.word_mut(w) {
                let old = *word;
                *word = if free { old | mask } else { old & !mask };
                changed += u64::from((old ^ *word).count_ones());
            }
            i = (w + 1) * 64;
        }
        changed
    }

    /// First relative index in `lo..hi` whose bit equals `want_free`.
    fn find(&self, lo: u64, hi: u64, want_free: bool) -> Option<u64> {
        let mut i = lo;
        while i < hi {
            let w = i / 64;
            let mask = span_mask(i % 64, (hi - w * 64).min(64));
            let bits = if want_free {
                self.word(w)
            } else {
                !self.word(w)
            } & mask;
            if bits != 0 {
                return Some(w * 64 + u64::from(bits.trailing_zeros()));
            }
            i = (w + 1) * 64;
        }
        None
    }

    fn find_free(&self, lo: u64, hi: u64) -> Option<u64> {
        self.find(lo, hi, true)
    }

    fn find_used(&self, lo: u64, hi: u64) -> Option<u64> {
        self.find(lo, hi, false)
    }
}

/// Bits `from..to` of a word set (`from < to <= 64`).
fn span_mask(from: u64, to: u64) -> u64 {
    let upper = if to >= 64 { u64::MAX } else { (1u64 << to) - 1 };
    upper & (u64::MAX << from)
}

/// Rounds `value` up to a multiple of `align` (`align >= 1`); `None` on overflow.
fn align_up(value: u64, align: u64) -> Option<u64> {
    let rem = value.checked_rem(align)?;
    if rem == 0 {
        Some(value)
    } else {
        value.checked_add(align - rem)
    }
}

#[cfg(test)]
mod tests;
