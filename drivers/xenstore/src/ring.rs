//! Byte-stream transport over the shared xenstore ring page.
//!
//! Layout and rules from `xen/include/public/io/xs_wire.h` and
//! `docs/misc/xenstore-ring.txt`: two 1024-byte rings (`req` guest → daemon,
//! `rsp` daemon → guest), each with free-running `u32` producer/consumer
//! indices; byte `x` of a stream lives at slot `x mod 1024`. Indices do not
//! start at zero and wrap at 2^32, so all arithmetic is wrapping.
//!
//! The page is reached only through [`RingMemory`]: the kernel implements it
//! over the mapped page with volatile byte copies and atomic index accesses,
//! host tests with [`VecPage`]. Both sides' index values are read once per
//! operation into locals and validated (`prod - cons <= 1024`) before use: a
//! producer that jumps ahead is an error, never a panic or an out-of-range copy.

use alloc::vec;
use alloc::vec::Vec;

use xen_abi::xenstore::{
    CONNECTION_OFFSET, ERROR_OFFSET, REQ_CONS_OFFSET, REQ_OFFSET, REQ_PROD_OFFSET, RSP_CONS_OFFSET,
    RSP_OFFSET, RSP_PROD_OFFSET, SERVER_FEATURES_OFFSET, XENSTORE_RING_SIZE,
    XENSTORE_SERVER_FEATURE_ERROR, mask_xenstore_idx,
};

/// Access to the shared xenstore page.
///
/// Offsets are byte offsets into the 4096-byte page; callers in this crate only
/// pass ranges inside `struct xenstore_domain_interface`. Implementations must
/// not panic for any offset (ignore or zero-fill what is out of range).
pub trait RingMemory {
    /// Copies `buf.len()` bytes starting at `offset` out of the page.
    fn read_bytes(&self, offset: usize, buf: &mut [u8]);
    /// Copies `data` into the page at `offset`.
    fn write_bytes(&mut self, offset: usize, data: &[u8]);
    /// Loads the `u32` index at `offset` with Acquire ordering: page bytes read
    /// after this load observe everything the other side wrote before its
    /// Release store of that index.
    fn load_acquire(&self, offset: usize) -> u32;
    /// Stores the `u32` index at `offset` with Release ordering: every page
    /// access before this store is visible to the other side before the index.
    fn store_release(&mut self, offset: usize, value: u32);
}

/// A ring whose indices are inconsistent, or a connection the server flagged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// `req_prod - req_cons > 1024`: the daemon's consumer index is bogus.
    BadRequestIndexes {
        /// `req_cons` as read.
        cons: u32,
        /// `req_prod` as read.
        prod: u32,
    },
    /// `rsp_prod - rsp_cons > 1024`: the daemon's producer jumped.
    BadResponseIndexes {
        /// `rsp_cons` as read.
        cons: u32,
        /// `rsp_prod` as read.
        prod: u32,
    },
    /// The server set the `error` field (`XENSTORE_ERROR_*`) and stopped
    /// serving the connection.
    ServerError(u32),
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            RingError::BadRequestIndexes { cons, prod } => write!(
                f,
                "xenstore req_prod {prod} is {} past req_cons {cons}, more than the ring holds",
                prod.wrapping_sub(cons)
            ),
            RingError::BadResponseIndexes { cons, prod } => write!(
                f,
                "xenstore rsp_prod {prod} is {} past rsp_cons {cons}, more than the ring holds",
                prod.wrapping_sub(cons)
            ),
            RingError::ServerError(code) => {
                write!(f, "xenstored flagged the ring with error {code}")
            }
        }
    }
}

/// One direction of the page: data area and its two index offsets.
#[derive(Clone, Copy)]
struct Lane {
    data: usize,
    cons: usize,
    prod: usize,
}

const REQ: Lane = Lane {
    data: REQ_OFFSET,
    cons: REQ_CONS_OFFSET,
    prod: REQ_PROD_OFFSET,
};
const RSP: Lane = Lane {
    data: RSP_OFFSET,
    cons: RSP_CONS_OFFSET,
    prod: RSP_PROD_OFFSET,
};

/// Copies as much of `data` as fits into the lane; returns the byte count, or
/// the offending `(cons, prod)` pair.
fn produce<M: RingMemory + ?Sized>(
    mem: &mut M,
    lane: Lane,
    data: &[u8],
) -> Result<usize, (u32, u32)> {
    // Acquire: pairs with the consumer's Release store of `cons`; its reads of
    // the slots it freed happen before we overwrite them below.
    let cons = mem.load_acquire(lane.cons);
    // Our own index (only we store it); Acquire is stronger than needed.
    let prod = mem.load_acquire(lane.prod);
    let used = prod.wrapping_sub(cons) as usize;
    if used > XENSTORE_RING_SIZE {
        return Err((cons, prod));
    }
    let n = (XENSTORE_RING_SIZE - used).min(data.len());
    if n == 0 {
        return Ok(0);
    }
    let start = mask_xenstore_idx(prod);
    let first = n.min(XENSTORE_RING_SIZE - start);
    let (a, b) = data.get(..n).unwrap_or(&[]).split_at(first.min(n));
    mem.write_bytes(lane.data + start, a);
    mem.write_bytes(lane.data, b);
    // Release: the bytes written above become visible before the new producer
    // index that publishes them.
    mem.store_release(lane.prod, prod.wrapping_add(n as u32));
    Ok(n)
}

/// Copies up to `buf.len()` available bytes out of the lane.
fn consume<M: RingMemory + ?Sized>(
    mem: &mut M,
    lane: Lane,
    buf: &mut [u8],
) -> Result<usize, (u32, u32)> {
    // Acquire: pairs with the producer's Release store of `prod`; the bytes
    // below are read only after we have seen the index that covers them.
    let prod = mem.load_acquire(lane.prod);
    // Our own index (only we store it); Acquire is stronger than needed.
    let cons = mem.load_acquire(lane.cons);
    let avail = prod.wrapping_sub(cons) as usize;
    if avail > XENSTORE_RING_SIZE {
        return Err((cons, prod));
    }
    let n = avail.min(buf.len());
    if n == 0 {
        return Ok(0);
    }
    let start = mask_xenstore_idx(cons);
    let first = n.min(XENSTORE_RING_SIZE - start);
    let (a, b) = buf
        .get_mut(..n)
        .unwrap_or(&mut [])
        .split_at_mut(first.min(n));
    mem.read_bytes(lane.data + start, a);
    mem.read_bytes(lane.data, b);
    // Release: our reads of the slots above complete before the producer can
    // see them as free and overwrite them.
    mem.store_release(lane.cons, cons.wrapping_add(n as u32));
    Ok(n)
}

/// Guest side: writes as much of `data` as fits into `req`; returns the count
/// (0 when the ring is full). Notify the daemon's event channel afterwards.
pub fn write_requests<M: RingMemory + ?Sized>(
    mem: &mut M,
    data: &[u8],
) -> Result<usize, RingError> {
    produce(mem, REQ, data).map_err(|(cons, prod)| RingError::BadRequestIndexes { cons, prod })
}

/// Guest side: reads up to `buf.len()` available bytes from `rsp`; returns the
/// count (0 when empty). Notify the daemon afterwards if anything was read,
/// since it may be waiting for space.
pub fn read_responses<M: RingMemory + ?Sized>(
    mem: &mut M,
    buf: &mut [u8],
) -> Result<usize, RingError> {
    consume(mem, RSP, buf).map_err(|(cons, prod)| RingError::BadResponseIndexes { cons, prod })
}

/// Daemon side (for simulators): reads pending request bytes from `req`.
pub fn server_read_requests<M: RingMemory + ?Sized>(
    mem: &mut M,
    buf: &mut [u8],
) -> Result<usize, RingError> {
    consume(mem, REQ, buf).map_err(|(cons, prod)| RingError::BadRequestIndexes { cons, prod })
}

/// Daemon side (for simulators): writes reply bytes into `rsp`.
pub fn server_write_responses<M: RingMemory + ?Sized>(
    mem: &mut M,
    data: &[u8],
) -> Result<usize, RingError> {
    produce(mem, RSP, data).map_err(|(cons, prod)| RingError::BadResponseIndexes { cons, prod })
}

/// The `server_features` bitmap (`XENSTORE_SERVER_FEATURE_*`).
pub fn server_features<M: RingMemory + ?Sized>(mem: &M) -> u32 {
    // Acquire: the server only ever sets bits; nothing else is ordered by it.
    mem.load_acquire(SERVER_FEATURES_OFFSET)
}

/// The `connection` field (`XENSTORE_CONNECTED` / `XENSTORE_RECONNECT`).
pub fn connection_state<M: RingMemory + ?Sized>(mem: &M) -> u32 {
    // Acquire: a reconnect completes with the server resetting the rings and
    // then storing XENSTORE_CONNECTED; seeing 0 means the reset rings are visible.
    mem.load_acquire(CONNECTION_OFFSET)
}

/// The server's connection error (`XENSTORE_ERROR_*`), if it advertises the
/// error feature and has set a non-zero value.
pub fn check_server_error<M: RingMemory + ?Sized>(mem: &M) -> Result<(), RingError> {
    if server_features(mem) & XENSTORE_SERVER_FEATURE_ERROR == 0 {
        return Ok(());
    }
    // Acquire: orders the read of `error` after the feature bit that makes it valid.
    match mem.load_acquire(ERROR_OFFSET) {
        0 => Ok(()),
        e => Err(RingError::ServerError(e)),
    }
}

/// A heap-backed page for host tests and simulators (plain loads and stores;
/// single-threaded use needs no ordering).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VecPage {
    bytes: Vec<u8>,
}

impl Default for VecPage {
    fn default() -> Self {
        VecPage::new()
    }
}

impl VecPage {
    /// A zeroed 4096-byte page.
    pub fn new() -> Self {
        VecPage {
            bytes: vec![0; xen_abi::PAGE_SIZE],
        }
    }

    /// Sets all four ring indices to `start` (rings empty, indices not zero,
    /// as `xenstore-ring.txt` says guests must expect).
    pub fn set_indices(&mut self, start: u32) {
        for off in [
            REQ_CONS_OFFSET,
            REQ_PROD_OFFSET,
            RSP_CONS_OFFSET,
            RSP_PROD_OFFSET,
        ] {
            self.store_release(off, start);
        }
    }

    /// The raw page bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl RingMemory for VecPage {
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        match self.bytes.get(offset..offset.saturating_add(buf.len())) {
            Some(src) => buf.copy_from_slice(src),
            None => buf.fill(0),
        }
    }

    fn write_bytes(&mut self, offset: usize, data: &[u8]) {
        if let Some(dst) = self
            .bytes
            .get_mut(offset..offset.saturating_add(data.len()))
        {
            dst.copy_from_slice(data);
        }
    }

    fn load_acquire(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        self.read_bytes(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn store_release(&mut self, offset: usize, value: u32) {
        self.write_bytes(offset, &value.to_le_bytes());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn round_trip_across_wrap_and_index_overflow() {
        let mut page = VecPage::new();
        // Indices close to 2^32 and not ring-aligned: the stream wraps both the
        // 1024-byte ring and the u32 index space.
        page.set_indices(u32::MAX - 700);
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut sent = 0;
        let mut got = Vec::new();
        let mut buf = [0u8; 333];
        while got.len() < data.len() {
            sent += write_requests(&mut page, &data[sent..]).unwrap();
            let n = server_read_requests(&mut page, &mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, data);
        // Same for the response lane.
        let mut sent = 0;
        let mut got = Vec::new();
        while got.len() < data.len() {
            sent += server_write_responses(&mut page, &data[sent..]).unwrap();
            let n = read_responses(&mut page, &mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, data);
    }

    #[test]
    fn full_ring_accepts_nothing_more() {
        let mut page = VecPage::new();
        page.set_indices(5);
        assert_eq!(write_requests(&mut page, &[1u8; 2000]).unwrap(), 1024);
        assert_eq!(write_requests(&mut page, &[1u8; 10]).unwrap(), 0);
        let mut buf = [0u8; 10];
        assert_eq!(read_responses(&mut page, &mut buf).unwrap(), 0);
    }

    #[test]
    fn jumping_producer_is_an_error() {
        let mut page = VecPage::new();
        page.set_indices(100);
        page.store_release(RSP_PROD_OFFSET, 100 + 1025);
        let mut buf = [0u8; 64];
        assert_eq!(
            read_responses(&mut page, &mut buf),
            Err(RingError::BadResponseIndexes {
                cons: 100,
                prod: 1125
            })
        );
        // Consumer ahead of producer is the same violation (wraps to huge).
        page.store_release(RSP_PROD_OFFSET, 99);
        assert!(read_responses(&mut page, &mut buf).is_err());
        // Exactly 1024 available is legal.
        page.store_release(RSP_PROD_OFFSET, 100 + 1024);
        assert_eq!(read_responses(&mut page, &mut buf), Ok(64));
        // A bogus req_cons is reported on the request side.
        page.store_release(REQ_CONS_OFFSET, 100 + 5000);
        assert!(matches!(
            write_requests(&mut page, b"x"),
            Err(RingError::BadRequestIndexes { .. })
        ));
    }

    #[test]
    fn server_error_field_only_counts_with_the_feature() {
        let mut page = VecPage::new();
        page.store_release(ERROR_OFFSET, 2);
        assert_eq!(check_server_error(&page), Ok(()));
        page.store_release(SERVER_FEATURES_OFFSET, XENSTORE_SERVER_FEATURE_ERROR);
        assert_eq!(check_server_error(&page), Err(RingError::ServerError(2)));
        assert_eq!(connection_state(&page), 0);
    }

    #[test]
    fn out_of_range_page_access_does_not_panic() {
        let mut page = VecPage::new();
        let mut buf = [7u8; 8];
        page.read_bytes(4093, &mut buf);
        assert_eq!(buf, [0u8; 8]);
        page.write_bytes(usize::MAX, &[1, 2, 3]);
        assert_eq!(page.load_acquire(usize::MAX - 1), 0);
    }
}
