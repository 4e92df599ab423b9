//! Unit and randomized model tests for the frame allocator and `usable_ram`.

extern crate std;

use super::*;
use std::vec;
use std::vec::Vec;

/// xorshift64*: a small deterministic generator for the randomized tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn bitmap_words_rounds_up() {
    assert_eq!(bitmap_words(0, 0), 0);
    assert_eq!(bitmap_words(10, 5), 0);
    assert_eq!(bitmap_words(0, 1), 1);
    assert_eq!(bitmap_words(0, 64), 1);
    assert_eq!(bitmap_words(0, 65), 2);
    assert_eq!(bitmap_words(100, 164), 1);
    assert_eq!(bitmap_words(0x100, 0x1000), (0x1000 - 0x100) / 64);
    assert_eq!(bitmap_words(0, u64::MAX), (u64::MAX / 64 + 1) as usize);
    assert_eq!(FrameAllocator::bitmap_words(3, 200), bitmap_words(3, 200));
}

#[test]
fn new_validates_and_starts_all_used() {
    let mut bm = [u64::MAX; 4];
    assert_eq!(
        FrameAllocator::new(&mut bm, 5, 5).err(),
        Some(FrameError::EmptyRange {
            first_frame: 5,
            end_frame: 5
        })
    );
    assert!(matches!(
        FrameAllocator::new(&mut bm, 9, 5),
        Err(FrameError::EmptyRange { .. })
    ));
    assert_eq!(
        FrameAllocator::new(&mut bm, 0, 257).err(),
        Some(FrameError::BitmapTooSmall {
            needed: 5,
            given: 4
        })
    );
    {
        let mut fa = FrameAllocator::new(&mut bm, 16, 16 + 200).expect("valid allocator range");
        assert_eq!(fa.total_frames(), 200);
        assert_eq!(fa.free_frames(), 0);
        assert_eq!(fa.first_frame(), 16);
        assert_eq!(fa.end_frame(), 216);
        assert!(!fa.is_free(16));
        assert_eq!(fa.alloc(), None);
        assert_eq!(fa.alloc_contiguous(1, 1), None);
        assert_eq!(
            std::format!("{fa:?}"),
            "FrameAllocator { first_frame: 16, end_frame: 216, free_frames: 0, cursor: 0, .. }"
        );
    }
    // The junk in the bitmap was cleared.
    assert_eq!(bm, [0; 4]);
}

#[test]
fn add_free_and_reserve_clip_and_count() {
    let mut bm = [0u64; 2];
    let mut fa = FrameAllocator::new(&mut bm, 100, 200).expect("valid allocator range");
    assert_eq!(fa.add_free(0, 50), 0);
    assert_eq!(fa.add_free(300, 400), 0);
    assert_eq!(fa.add_free(150, 140), 0);
    assert_eq!(fa.add_free(90, 110), 10);
    assert_eq!(fa.add_free(100, 120), 10);
    assert_eq!(fa.add_free(190, u64::MAX), 10);
    assert_eq!(fa.free_frames(), 30);
    assert!(fa.is_free(100) && fa.is_free(119) && !fa.is_free(120) && fa.is_free(199));
    assert!(!fa.is_free(99) && !fa.is_free(200));
    assert_eq!(fa.reserve(0, 105), 5);
    assert_eq!(fa.reserve(0, 105), 0);
    assert_eq!(fa.reserve(195, 1000), 5);
    assert_eq!(fa.free_frames(), 20);
    assert_eq!(fa.add_free(0, u64::MAX), 80);
    assert_eq!(fa.free_frames(), 100);
    assert_eq!(fa.reserve(0, u64::MAX), 100);
    assert_eq!(fa.free_frames(), 0);
}

#[test]
fn alloc_is_next_fit_and_wraps() {
    let mut bm = [0u64; 3];
    let mut fa = FrameAllocator::new(&mut bm, 1000, 1150).expect("valid allocator range");
    fa.add_free(1000, 1150);
    assert_eq!(fa.alloc(), Some(1000));
    assert_eq!(fa.alloc(), Some(1001));
    assert_eq!(fa.free(1000), Ok(()));
    // Next-fit: does not go back to 1000 yet.
    assert_eq!(fa.alloc(), Some(1002));
    fa.reserve(1003, 1149);
    assert_eq!(fa.alloc(), Some(1149));
    // Wraps around to the freed frame.
    assert_eq!(fa.alloc(), Some(1000));
    assert_eq!(fa.alloc(), None);
    assert_eq!(fa.free_frames(), 0);
}

#[test]
fn free_errors() {
    let mut bm = [0u64; 1];
    let mut fa = FrameAllocator::new(&mut bm, 10, 20).expect("valid allocator range");
    fa.add_free(10, 20);
    assert_eq!(fa.free(9), Err(FrameError::OutOfRange(9)));
    assert_eq!(fa.free(20), Err(FrameError::OutOfRange(20)));
    assert_eq!(fa.free(u64::MAX), Err(FrameError::OutOfRange(u64::MAX)));
    assert_eq!(fa.free(15), Err(FrameError::DoubleFree(15)));
    let f = fa.alloc().expect("a free frame");
    assert_eq!(fa.free(f), Ok(()));
    assert_eq!(fa.free(f), Err(FrameError::DoubleFree(f)));
    assert_eq!(fa.free_frames(), 10);
}

#[test]
fn contiguous_respects_absolute_alignment() {
    let mut bm = [0u64; 8];
    // first frame deliberately unaligned
    let mut fa = FrameAllocator::new(&mut bm, 3, 3 + 500).expect("valid allocator range");
    fa.add_free(3, 503);
    assert_eq!(fa.alloc_contiguous(0, 1), None);
    assert_eq!(fa.alloc_contiguous(501, 1), None);
    assert_eq!(fa.alloc_contiguous(4, 16), Some(16));
    assert_eq!(fa.alloc_contiguous(1, 0), Some(3));
    assert_eq!(fa.alloc_contiguous(13, 1), Some(20));
    assert_eq!(fa.alloc_contiguous(12, 1), Some(4));
    assert_eq!(fa.alloc_contiguous(16, 16), Some(48));
    // Non-power-of-two alignment is honoured literally.
    assert_eq!(fa.alloc_contiguous(2, 24), Some(72));
    assert_eq!(fa.alloc_contiguous(2, u64::MAX), None);
    assert_eq!(fa.alloc_contiguous(u64::MAX, 1), None);
    // A used frame in the middle forces the run past it.
    fa.reserve(100, 101);
    assert_eq!(fa.alloc_contiguous(50, 1), Some(101));
    assert_eq!(fa.alloc_contiguous(64, 64), Some(192));
    assert_eq!(
        fa.free_frames(),
        500 - 4 - 1 - 13 - 12 - 16 - 2 - 1 - 50 - 64
    );
    // Frames from a run can be freed one by one or as a run.
    assert_eq!(fa.free(192), Ok(()));
    assert_eq!(
        fa.free_contiguous(192, 64),
        Err(FrameError::DoubleFree(192))
    );
    assert_eq!(fa.free_contiguous(193, 63), Ok(()));
    assert_eq!(
        fa.free_contiguous(500, 10),
        Err(FrameError::OutOfRange(503))
    );
    assert_eq!(fa.free_contiguous(1, 10), Err(FrameError::OutOfRange(1)));
    assert_eq!(
        fa.free_contiguous(u64::MAX, 2),
        Err(FrameError::OutOfRange(u64::MAX))
    );
    assert_eq!(fa.free_contiguous(16, 0), Ok(()));
    assert!(!fa.is_free(16));
}

#[test]
fn contiguous_at_the_very_top_of_frame_space() {
    let mut bm = [0u64; 1];
    let top = u64::MAX - 10;
    let mut fa = FrameAllocator::new(&mut bm, top, u64::MAX).expect("valid allocator range");
    fa.add_free(0, u64::MAX);
    assert_eq!(fa.free_frames(), 10);
    assert_eq!(fa.alloc_contiguous(10, 1), Some(top));
    assert_eq!(fa.alloc_contiguous(1, 1), None);
    assert_eq!(fa.free(u64::MAX - 1), Ok(()));
    assert_eq!(fa.alloc_contiguous(1, 1 << 63), None);
    assert_eq!(fa.alloc(), Some(u64::MAX - 1));
}

/// Reference: one bool per frame, with the allocator's documented policies.
struct Model {
    first: u64,
    free: Vec<bool>,
    cursor: usize,
}

impl Model {
    fn alloc(&mut self) -> Option<u64> {
        let n = self.free.len();
        let start = if self.cursor < n { self.cursor } else { 0 };
        let i = (start..n).chain(0..start).find(|&i| self.free[i])?;
        self.free[i] = false;
        self.cursor = i + 1;
        Some(self.first + i as u64)
    }
    fn alloc_contiguous(&mut self, count: u64, align: u64) -> Option<u64> {
        if count == 0 {
            return None;
        }
        let align = align.max(1);
        let n = self.free.len() as u64;
        let hit = (0..n).find(|&i| {
            (self.first + i).is_multiple_of(align)
                && i + count <= n
                && (i..i + count).all(|j| self.free[j as usize])
        })?;
        for j in hit..hit + count {
            self.free[j as usize] = false;
        }
        Some(self.first + hit)
    }
}

#[test]
fn randomized_against_model() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for round in 0..300 {
        let first = rng.below(5000);
        let n = 1 + rng.below(if round % 10 == 0 { 2000 } else { 300 });
        let mut bm = vec![u64::MAX; bitmap_words(first, first + n)];
        let mut fa = FrameAllocator::new(&mut bm, first, first + n).expect("valid allocator range");
        let mut model = Model {
            first,
            free: vec![false; n as usize],
            cursor: 0,
        };
        let mut held: Vec<u64> = Vec::new();
        for _ in 0..400 {
            let a = first.saturating_sub(20) + rng.below(n + 40);
            let b = a + rng.below(n / 2 + 2);
            match rng.below(10) {
                0 => {
                    let changed = fa.add_free(a, b);
                    let mut expect = 0;
                    for f in a.max(first)..b.min(first + n) {
                        let slot = &mut model.free[(f - first) as usize];
                        expect += u64::from(!*slot);
                        *slot = true;
                    }
                    held.retain(|&h| !(a..b).contains(&h));
                    assert_eq!(changed, expect);
                }
                1 => {
                    let changed = fa.reserve(a, b);
                    let mut expect = 0;
                    for f in a.max(first)..b.min(first + n) {
                        let slot = &mut model.free[(f - first) as usize];
                        expect += u64::from(*slot);
                        *slot = false;
                    }
                    assert_eq!(changed, expect);
                }
                2..=4 => {
                    let got = fa.alloc();
                    assert_eq!(got, model.alloc());
                    held.extend(got);
                }
                5 => {
                    let count = 1 + rng.below(8);
                    let align = [0, 1, 2, 4, 8, 3, 64][rng.below(7) as usize];
                    let got = fa.alloc_contiguous(count, align);
                    assert_eq!(got, model.alloc_contiguous(count, align));
                    if let Some(s) = got {
                        held.extend(s..s + count);
                    }
                }
                6 | 7 if !held.is_empty() => {
                    let h = held.swap_remove(rng.below(held.len() as u64) as usize);
                    assert_eq!(fa.free(h), Ok(()));
                    model.free[(h - first) as usize] = true;
                }
                _ => {
                    // Arbitrary free: must match the model's view of errors.
                    let f = a;
                    let expect = if !(first..first + n).contains(&f) {
                        Err(FrameError::OutOfRange(f))
                    } else if model.free[(f - first) as usize] {
                        Err(FrameError::DoubleFree(f))
                    } else {
                        model.free[(f - first) as usize] = true;
                        held.retain(|&h| h != f);
                        Ok(())
                    };
                    assert_eq!(fa.free(f), expect);
                }
            }
            let expect_free = model.free.iter().filter(|&&x| x).count() as u64;
            assert_eq!(fa.free_frames(), expect_free);
        }
        for (i, &is_free) in model.free.iter().enumerate() {
            assert_eq!(fa.is_free(first + i as u64), is_free);
        }
    }
}

const P: u64 = FRAME_SIZE;

fn ranges<const N: usize>(u: &UsableRam<N>) -> Vec<(u64, u64)> {
    u.iter().map(|r| (r.start, r.end)).collect()
}

#[test]
fn ram_range_helpers() {
    let r = RamRange::from_base_size(0x1000, 0x2000);
    assert_eq!(r, RamRange::new(0x1000, 0x3000));
    assert_eq!(r.len(), 0x2000);
    assert!(!r.is_empty() && !r.is_wrapped());
    let w = RamRange::from_base_size(u64::MAX - 10, 100);
    assert!(w.is_wrapped() && w.is_empty());
    assert_eq!(w.len(), 0);
    assert_eq!(RamRange::new(1, 8193).frames(), (1, 2));
    assert_eq!(RamRange::new(1, 4097).frames(), (1, 1));
    assert_eq!(RamRange::new(0, 4096).frames(), (0, 1));
    assert_eq!(
        RamRange::new(u64::MAX - 1, u64::MAX).frames().0,
        u64::MAX / P + 1
    );
}

#[test]
fn usable_ram_basic_pvh_map() {
    // A typical small PVH guest: RAM from 0, the top of it reserved by Xen
    // entries elsewhere, plus the kernel image and start info reserved by us.
    let ram = [
        RamRange::from_base_size(0, 0xfe_f000),
        RamRange::from_base_size(0xfc00_0000, 0),
    ];
    let reserved = [
        RamRange::new(0x10_0000, 0x15_0123), // kernel image
        RamRange::new(0x7000, 0x7038),       // start info
    ];
    let u = usable_ram::<8>(&ram, &reserved);
    assert_eq!(
        ranges(&u),
        [(0, 0x7000), (0x8000, 0x10_0000), (0x15_1000, 0xfe_f000)]
    );
    assert_eq!(u.len(), 3);
    assert!(!u.is_empty());
    assert_eq!(u.total_bytes(), 0x7000 + 0xf8000 + (0xfe_f000 - 0x15_1000));
    assert_eq!(u.dropped_ranges(), 0);
    assert_eq!(u.dropped_bytes(), 0);
    assert_eq!((&u).into_iter().count(), 3);
}

#[test]
fn usable_ram_aligns_inward_and_merges() {
    let ram = [
        RamRange::new(0x5001, 0x9fff), // -> 0x6000..0x9000
        RamRange::new(0x9000, 0xc000), // adjacent after alignment
        RamRange::new(0x2000, 0x3000),
        RamRange::new(0x2800, 0x4000),       // overlapping, unsorted
        RamRange::new(0x20_0000, 0x20_0fff), // under a page once aligned
        RamRange::new(0x30_0000, 0x30_0000), // zero size
        RamRange::from_base_size(u64::MAX - 0xfff, 0x2000), // wraps: ignored
    ];
    let u = usable_ram::<4>(&ram, &[]);
    assert_eq!(ranges(&u), [(0x2000, 0x4000), (0x6000, 0xc000)]);
    // Entries meeting mid-page keep that page; a gap of one byte loses it.
    let ram = [RamRange::new(0x1800, 0x3000), RamRange::new(0, 0x1800)];
    assert_eq!(ranges(&usable_ram::<4>(&ram, &[])), [(0, 0x3000)]);
    let ram = [RamRange::new(0x1801, 0x3000), RamRange::new(0, 0x1800)];
    assert_eq!(
        ranges(&usable_ram::<4>(&ram, &[])),
        [(0, 0x1000), (0x2000, 0x3000)]
    );
}

#[test]
fn usable_ram_reserved_grow_outward() {
    let ram = [RamRange::new(0, 0x10000)];
    let reserved = [
        RamRange::new(0x1fff, 0x2001), // -> 0x1000..0x3000
        RamRange::new(0x8000, 0x8000), // zero size: reserves nothing
        RamRange::new(0xf000, 0xf001),
        RamRange::new(0x5000, 0x4000), // inverted: to the top of memory
    ];
    let u = usable_ram::<4>(&ram, &reserved);
    assert_eq!(ranges(&u), [(0, 0x1000), (0x3000, 0x5000)]);
    // A reserved range ending near u64::MAX does not overflow.
    let reserved = [RamRange::new(0x4000, u64::MAX - 1)];
    assert_eq!(ranges(&usable_ram::<4>(&ram, &reserved)), [(0, 0x4000)]);
    // Everything reserved.
    let u = usable_ram::<4>(&ram, &[RamRange::new(0, u64::MAX)]);
    assert!(u.is_empty());
    assert_eq!(u.total_bytes(), 0);
}

#[test]
fn usable_ram_top_of_address_space() {
    let ram = [RamRange::new(u64::MAX - 3 * P + 1, u64::MAX)];
    // start is page-aligned (2^64 - 3 pages); the end rounds down a page.
    let u = usable_ram::<2>(&ram, &[]);
    assert_eq!(ranges(&u), [(u64::MAX - 3 * P + 1, u64::MAX - P + 1)]);
    let u = usable_ram::<2>(&ram, &[RamRange::new(u64::MAX - 1, u64::MAX)]);
    assert_eq!(ranges(&u), [(u64::MAX - 3 * P + 1, u64::MAX - P + 1)]);
    let u = usable_ram::<2>(&ram, &[RamRange::new(u64::MAX - P, u64::MAX - P + 1)]);
    assert_eq!(ranges(&u), [(u64::MAX - 3 * P + 1, u64::MAX - 2 * P + 1)]);
    // A RAM entry ending exactly at 2^64 wraps to end == 0 and is ignored.
    assert!(usable_ram::<2>(&[RamRange::from_base_size(u64::MAX - P + 1, P)], &[]).is_empty());
    let ram = [RamRange::new(u64::MAX - 10, u64::MAX)];
    assert!(usable_ram::<2>(&ram, &[]).is_empty());
    assert!(usable_ram::<2>(&[], &[]).is_empty());
}

#[test]
fn usable_ram_capacity_overflow_is_counted() {
    let ram: Vec<_> = (0..10)
        .map(|i| RamRange::new(i * 2 * P, i * 2 * P + P))
        .collect();
    let u = usable_ram::<3>(&ram, &[]);
    assert_eq!(ranges(&u), [(0, P), (2 * P, 3 * P), (4 * P, 5 * P)]);
    assert_eq!(u.dropped_ranges(), 7);
    assert_eq!(u.dropped_bytes(), 7 * P);
    let u0 = usable_ram::<0>(&ram, &[]);
    assert!(u0.is_empty());
    assert_eq!(u0.dropped_ranges(), 10);
    assert_eq!(u0.as_slice(), &[]);
}

/// Reference for `usable_ram` over a small address space: one bool per page.
fn model_usable(pages: u64, ram: &[RamRange], reserved: &[RamRange]) -> Vec<(u64, u64)> {
    let mut usable = vec![false; pages as usize];
    for (p, slot) in usable.iter_mut().enumerate() {
        // Is the whole page covered by the union of the (unwrapped) RAM ranges?
        let (s, e) = (p as u64 * P, (p as u64 + 1) * P);
        let mut pos = s;
        while let Some(next) = ram
            .iter()
            .filter(|r| !r.is_wrapped() && r.start <= pos && pos < r.end)
            .map(|r| r.end)
            .max()
        {
            pos = next;
        }
        *slot = pos >= e;
    }
    for r in reserved.iter().filter(|r| r.start != r.end) {
        let end = if r.is_wrapped() { u64::MAX } else { r.end };
        for (p, slot) in usable.iter_mut().enumerate() {
            let (s, e) = (p as u64 * P, (p as u64 + 1) * P);
            if r.start < e && s < end {
                *slot = false;
            }
        }
    }
    let mut out = Vec::new();
    let mut p = 0;
    while p < pages {
        if usable[p as usize] {
            let s = p;
            while p < pages && usable[p as usize] {
                p += 1;
            }
            out.push((s * P, p * P));
        } else {
            p += 1;
        }
    }
    out
}

#[test]
fn usable_ram_randomized_against_model() {
    let mut rng = Rng(7);
    let pages = 48u64;
    let space = pages * P;
    for _ in 0..3000 {
        let gen_range = |rng: &mut Rng| {
            let start = rng.below(space);
            let len = match rng.below(6) {
                0 => 0,
                1 => rng.below(P),
                2 => rng.below(4) * P,
                5 => u64::MAX - rng.below(P), // wraps
                _ => rng.below(space / 3),
            };
            // Keep RAM inside the modelled space unless it wraps.
            let r = RamRange::from_base_size(start, len);
            if r.is_wrapped() {
                r
            } else {
                RamRange::new(start, r.end.min(space))
            }
        };
        let ram: Vec<_> = (0..rng.below(7)).map(|_| gen_range(&mut rng)).collect();
        let reserved: Vec<_> = (0..rng.below(5)).map(|_| gen_range(&mut rng)).collect();
        let u = usable_ram::<64>(&ram, &reserved);
        let expect = model_usable(pages, &ram, &reserved);
        assert_eq!(ranges(&u), expect, "ram={ram:?} reserved={reserved:?}");
        assert_eq!(u.dropped_ranges(), 0);
        // Cross-check: feeding the result to the allocator frees exactly its pages.
        let mut bm = [0u64; 1];
        let mut fa = FrameAllocator::new(&mut bm, 0, pages).expect("valid allocator range");
        for r in &u {
            let (a, b) = r.frames();
            fa.add_free(a, b);
        }
        assert_eq!(fa.free_frames() * P, u.total_bytes());
    }
}
