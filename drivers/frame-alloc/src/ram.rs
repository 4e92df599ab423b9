//! Usable-RAM computation from an e820-style memory map and reserved ranges.
//!
//! The memory map is the PVH one (`struct hvm_memmap_table_entry`,
//! `xen/include/public/arch-x86/hvm/start_info.h`): `(addr, size, type)`
//! entries that may be unsorted, overlapping, empty, or (if corrupt) wrap past
//! the end of the address space.

use crate::FRAME_SIZE;

/// A half-open range of physical byte addresses `start..end`.
///
/// A range with `end < start` is *wrapped*: it came from a base and size whose
/// sum overflowed (see [`RamRange::from_base_size`]). [`usable_ram`] ignores
/// wrapped RAM ranges and treats a wrapped reserved range as reaching the top
/// of the address space; both are the conservative choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RamRange {
    /// First byte address.
    pub start: u64,
    /// One past the last byte address.
    pub end: u64,
}

impl RamRange {
    /// The range `start..end`.
    pub const fn new(start: u64, end: u64) -> Self {
        RamRange { start, end }
    }

    /// The range of an e820 entry: `base..base + size`, with the end computed
    /// modulo 2^64 so an overflowing entry becomes a wrapped range.
    pub const fn from_base_size(base: u64, size: u64) -> Self {
        RamRange {
            start: base,
            end: base.wrapping_add(size),
        }
    }

    /// True if `end < start` (the entry's end overflowed).
    pub const fn is_wrapped(&self) -> bool {
        self.end < self.start
    }

    /// True if the range holds no bytes (`end <= start`, including wrapped).
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Length in bytes (0 if empty or wrapped).
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// The frames fully inside this range: `ceil(start / 4096)..floor(end / 4096)`
    /// (an empty pair if none).
    pub const fn frames(&self) -> (u64, u64) {
        let first = self.start.div_ceil(FRAME_SIZE);
        let end = self.end / FRAME_SIZE;
        if first < end {
            (first, end)
        } else {
            (first, first)
        }
    }
}

/// Sorted, page-aligned, non-overlapping, non-adjacent usable RAM ranges, at
/// most `N` of them; what does not fit is counted, not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsableRam<const N: usize> {
    ranges: [RamRange; N],
    len: usize,
    dropped_ranges: usize,
    dropped_bytes: u64,
}

impl<const N: usize> UsableRam<N> {
    /// The stored ranges, lowest address first.
    pub fn as_slice(&self) -> &[RamRange] {
        self.ranges.get(..self.len).unwrap_or(&[])
    }

    /// Iterates over the stored ranges, lowest address first.
    pub fn iter(&self) -> core::slice::Iter<'_, RamRange> {
        self.as_slice().iter()
    }

    /// Number of stored ranges.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no usable RAM was stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total bytes in the stored ranges (saturating).
    pub fn total_bytes(&self) -> u64 {
        self.iter().fold(0u64, |acc, r| acc.saturating_add(r.len()))
    }

    /// Usable ranges found above the `N` stored ones and not stored.
    pub fn dropped_ranges(&self) -> usize {
        self.dropped_ranges
    }

    /// Bytes in the dropped ranges (saturating).
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped_bytes
    }

    fn push(&mut self, range: RamRange) {
        match self.ranges.get_mut(self.len) {
            Some(slot) => {
                *slot = range;
                self.len += 1;
            }
            None => {
                self.dropped_ranges = self.dropped_ranges.saturating_add(1);
                self.dropped_bytes = self.dropped_bytes.saturating_add(range.len());
            }
        }
    }
}

impl<'r, const N: usize> IntoIterator for &'r UsableRam<N> {
    type Item = &'r RamRange;
    type IntoIter = core::slice::Iter<'r, RamRange>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

const PAGE_MASK: u64 = FRAME_SIZE - 1;

/// A reserved range grown to whole pages (saturating at the top of the
/// address space), or `None` if it holds no bytes.
fn reserved_pages(r: &RamRange) -> Option<(u64, u64)> {
    if r.start == r.end {
        return None;
    }
    let start = r.start & !PAGE_MASK;
    let end = if r.is_wrapped() {
        u64::MAX
    } else {
        r.end
            .checked_add(PAGE_MASK)
            .map_or(u64::MAX, |e| e & !PAGE_MASK)
    };
    Some((start, end))
}

/// Computes the usable RAM: the union of `ram`, shrunk inwards to whole pages,
/// minus the union of `reserved` grown outwards to whole pages. Inputs may be
/// in any order, overlap, be empty or be wrapped (see [`RamRange`]); RAM
/// entries that overlap or touch are merged before aligning, so two entries
/// meeting in the middle of a page keep that page.
///
/// The result is sorted, page-aligned and maximal (no two ranges touch). If
/// there are more than `N` ranges, the lowest `N` are kept and the rest are
/// counted in [`UsableRam::dropped_ranges`]/[`UsableRam::dropped_bytes`].
///
/// Cost is `O((K + M) * (R + S)^2)` for `R` RAM entries, `S` reserved entries,
/// `M` merged RAM runs and `K` result ranges, with no allocation; callers
/// should cap untrusted entry counts.
pub fn usable_ram<const N: usize>(ram: &[RamRange], reserved: &[RamRange]) -> UsableRam<N> {
    let mut out = UsableRam {
        ranges: [RamRange::default(); N],
        len: 0,
        dropped_ranges: 0,
        dropped_bytes: 0,
    };
    let rams = || {
        ram.iter()
            .filter(|r| !r.is_empty())
            .map(|r| (r.start, r.end))
    };
    let reserveds = || reserved.iter().filter_map(reserved_pages);

    // Walk the merged RAM runs in address order. Every step below strictly
    // raises a cursor to the endpoint of some range, so all loops terminate.
    let mut cursor = 0u64;
    loop {
        let run_start = if rams().any(|(s, e)| s <= cursor && cursor < e) {
            cursor
        } else {
            match rams().map(|(s, _)| s).filter(|&s| s > cursor).min() {
                Some(s) => s,
                None => break,
            }
        };
        // Extend through overlapping or touching RAM ranges.
        let mut run_end = run_start;
        while let Some(e) = rams()
            .filter(|&(s, e)| s <= run_end && run_end < e)
            .map(|(_, e)| e)
            .max()
        {
            run_end = e;
        }
        cursor = run_end;

        // Shrink the run to whole pages, then cut out the reserved ranges.
        let Some(page_start) = run_start.checked_add(PAGE_MASK).map(|s| s & !PAGE_MASK) else {
            break;
        };
        let page_end = run_end & !PAGE_MASK;
        let mut at = page_start;
        while at < page_end {
            if let Some(e) = reserveds()
                .filter(|&(s, e)| s <= at && at < e)
                .map(|(_, e)| e)
                .max()
            {
                at = e;
                continue;
            }
            // No reserved range contains `at`, so any that overlaps starts above it.
            let end = reserveds()
                .filter(|&(s, e)| s < page_end && e > at)
                .map(|(s, _)| s)
                .min()
                .map_or(page_end, |s| s.min(page_end));
            out.push(RamRange { start: at, end });
            at = end;
        }
    }
    out
}
