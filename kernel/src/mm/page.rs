//! [`MappedPage`]: the one audited view of a page shared with Xen or another domain.
//!
//! Every shared page of the kernel goes through it: the xenstore ring, the console
//! ring, the shared info page and the frames a driver grants to its back end. The
//! other side may write the page at any time, so no Rust reference to its bytes is
//! ever formed: bytes move with the CPU's string moves (each shared byte read or
//! written exactly once per copy, opaque to the compiler like volatile accesses), and
//! index words are accessed as atomics. Accesses outside
//! the page are ignored (reads give 0), so a caller's bad offset never touches other
//! memory. The xenstore crate's `RingMemory` and xen-ring's `SharedRing` are both
//! implemented here on top of it.

use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use xen_ring::{RingIdx, RingIndex, SharedRing};
use xenstore::RingMemory;

use crate::mm::memory::Frame;

/// Bytes in a page.
pub const PAGE_BYTES: usize = xen_abi::PAGE_SIZE;

/// An identity-mapped 4 KiB page that another party may access concurrently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedPage {
    /// Address of the page (page-aligned, identity mapped).
    base: usize,
}

impl MappedPage {
    /// A view of the page at guest frame `pfn`, if it is not 0 and lies inside the
    /// boot identity map.
    ///
    /// # Safety
    ///
    /// The page must be RAM (or a Xen-provided page) that stays mapped for as long as
    /// this value or a copy of it is used, and that no Rust code accesses other than
    /// through a `MappedPage` (no references to its bytes).
    pub unsafe fn from_pfn(pfn: u64) -> Option<MappedPage> {
        let addr = pfn
            .checked_mul(PAGE_BYTES as u64)
            .filter(|&a| a != 0 && a < boot::IDENTITY_MAP_END)?;
        usize::try_from(addr).ok().map(|base| MappedPage { base })
    }

    /// The address of byte `offset`, with the number of bytes from there (at most
    /// `len`) that are inside the page.
    fn span(&self, offset: usize, len: usize) -> (usize, usize) {
        let inside = PAGE_BYTES.saturating_sub(offset).min(len);
        (self.base.wrapping_add(offset), inside)
    }

    /// The naturally aligned `T`-sized word at `offset`, if inside the page.
    fn word_addr(&self, offset: usize, size: usize) -> Option<usize> {
        (offset.is_multiple_of(size) && offset.checked_add(size)? <= PAGE_BYTES)
            .then(|| self.base + offset)
    }

    /// The `u32` at byte `offset` as an atomic (`None` if unaligned or outside).
    pub fn u32_at(&self, offset: usize) -> Option<&AtomicU32> {
        let addr = self.word_addr(offset, 4)?;
        // SAFETY: `addr` is 4-aligned and inside the page, which stays mapped while
        // `self` is used (the constructor's contract) and is only accessed through
        // `MappedPage`, never through references. The other side accesses the same
        // word with aligned 32-bit (atomic or plain) accesses, which an AtomicU32
        // tolerates.
        Some(unsafe { AtomicU32::from_ptr(addr as *mut u32) })
    }

    /// The `u64` at byte `offset` as an atomic (`None` if unaligned or outside).
    pub fn u64_at(&self, offset: usize) -> Option<&AtomicU64> {
        let addr = self.word_addr(offset, 8)?;
        // SAFETY: as in `u32_at`, for an 8-aligned word (Xen uses locked 64-bit
        // operations on the event words).
        Some(unsafe { AtomicU64::from_ptr(addr as *mut u64) })
    }

    /// The byte at `offset` as an atomic (`None` if outside).
    pub fn u8_at(&self, offset: usize) -> Option<&AtomicU8> {
        let addr = self.word_addr(offset, 1)?;
        // SAFETY: as in `u32_at`, for one byte.
        Some(unsafe { AtomicU8::from_ptr(addr as *mut u8) })
    }

    /// Copies `out.len()` bytes from `offset`, each shared byte read once (with
    /// [`copy_bytes`]). Bytes past the end of the page read as 0.
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        let (addr, inside) = self.span(offset, out.len());
        let (head, tail) = out.split_at_mut(inside);
        tail.fill(0);
        // SAFETY: the `inside` bytes from `addr` lie inside the page (`span`), which
        // stays mapped while `self` is used; `head` is our own buffer of that length
        // and cannot overlap a page no Rust reference points into.
        unsafe { copy_bytes(head.as_mut_ptr(), addr as *const u8, head.len()) };
    }

    /// Copies `bytes` to `offset`, each shared byte written once (with
    /// [`copy_bytes`]). Bytes past the end of the page are dropped.
    pub fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        let (addr, inside) = self.span(offset, bytes.len());
        let head = bytes.get(..inside).unwrap_or(&[]);
        // SAFETY: as in `read_bytes`, the other way round; the caller's ring protocol
        // gives these bytes to us until it publishes them.
        unsafe { copy_bytes(addr as *mut u8, head.as_ptr(), head.len()) };
    }

    /// Loads the `u32` at `offset` with `order` (0 if unaligned or outside).
    pub fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        self.u32_at(offset).map_or(0, |a| a.load(order))
    }

    /// Stores the `u32` at `offset` with `order` (ignored if unaligned or outside).
    pub fn store_u32(&self, offset: usize, value: u32, order: Ordering) {
        if let Some(a) = self.u32_at(offset) {
            a.store(value, order);
        }
    }
}

/// Copies `len` bytes from `src` to `dst` with the CPU's string moves (`rep movsq`
/// for the 8-byte words, `rep movsb` for the rest). Each byte is read and written
/// exactly once, by instructions the compiler can neither elide, merge nor repeat
/// (what volatile accesses give), in two instructions instead of a loop of about a
/// dozen per word: the copies between granted pages and the drivers' buffers are on
/// every packet's and every disk block's path, and under emulation (QEMU TCG) each
/// guest instruction counts.
///
/// # Safety
///
/// `src` must be valid for `len` bytes of reads and `dst` for `len` bytes of writes,
/// and the two ranges must not overlap.
unsafe fn copy_bytes(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the ranges are the caller's contract. `rep movs` copies upwards because
    // the direction flag is clear: the ABI requires it at every call and nothing in
    // this kernel sets it. The asm touches only rcx, rdi, rsi and the given register.
    unsafe {
        core::arch::asm!(
            "rep movsq",
            "mov rcx, {rest}",
            "rep movsb",
            rest = in(reg) len % 8,
            inout("rcx") len / 8 => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags),
        );
    }
}

/// The xenstore ring page (`xen/include/public/io/xs_wire.h`).
impl RingMemory for MappedPage {
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        MappedPage::read_bytes(self, offset, buf);
    }

    fn write_bytes(&mut self, offset: usize, data: &[u8]) {
        MappedPage::write_bytes(self, offset, data);
    }

    fn load_acquire(&self, offset: usize) -> u32 {
        // Acquire: page bytes read after this observe what xenstored wrote before
        // its store of this index (the trait's contract).
        self.load_u32(offset, Ordering::Acquire)
    }

    fn store_release(&mut self, offset: usize, value: u32) {
        // Release: our page accesses before this store are visible to xenstored
        // before the index that publishes/frees them (the trait's contract).
        self.store_u32(offset, value, Ordering::Release);
    }
}

impl Frame {
    /// The frame as a shared page, for the length of one access.
    fn page(&self) -> MappedPage {
        MappedPage {
            // Frames come from the allocator, page-aligned inside the identity map;
            // the view never outlives `&self` (it is used within one method call).
            base: usize::try_from(self.addr()).unwrap_or(0),
        }
    }
}

/// A driver's ring page (`xen/include/public/io/ring.h`): the indices are
/// `AtomicU32`s at the header offsets, data moves with [`copy_bytes`].
impl SharedRing for Frame {
    fn area_len(&self) -> usize {
        PAGE_BYTES
    }

    fn load(&self, index: RingIndex, order: Ordering) -> RingIdx {
        // The caller's `order` (Relaxed or Acquire) is what the ring protocol needs:
        // Acquire on `rsp_prod` makes the responses before it visible (ring.h's rmb()).
        self.page().load_u32(index.offset(), order)
    }

    fn store(&self, index: RingIndex, value: RingIdx, order: Ordering) {
        // The caller's `order` (Relaxed or Release): Release on `req_prod` publishes
        // the requests written before it (ring.h's wmb()).
        self.page().store_u32(index.offset(), value, order);
    }

    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        self.page().read_bytes(offset, out);
    }

    fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        self.page().write_bytes(offset, bytes);
    }
}
