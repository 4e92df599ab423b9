//! Producer side of the Xen PV console's output ring (`xen/include/public/io/console.h`), free of `unsafe`.
//!
//! The guest writes into `out[]` (2048 bytes) and advances `out_prod`; the back end
//! (xenconsoled in dom0) consumes and advances `out_cons`. Both are free-running `u32`
//! indices, masked by the ring size. The page is reached only through [`OutPage`]
//! (the kernel's is the mapped console page and its event channel; tests use plain
//! memory), and [`OutRing`] keeps the producer's own state.
//!
//! The back end is another domain: `out_cons` is read once per step and checked
//! (`prod - cons <= size`); a ring that breaks the rule is reported as
//! [`ConsoleRingError::Inconsistent`] and the caller abandons it. A full ring is
//! waited for (notify + yield) a bounded number of times; after that the ring is
//! stalled and later writes only put what fits, so a dead back end never hangs the
//! guest. A write that finds space again clears the stall.

#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

use xen_abi::console::OUT_SIZE;

/// The console page and event channel, as the producer needs them.
pub trait OutPage {
    /// Loads `out_cons`. The kernel uses Acquire: the back end's reads of the slots it
    /// consumed happen before the guest reuses them.
    fn load_cons(&self) -> u32;
    /// Loads `out_prod` (only the guest writes it: Relaxed is enough).
    fn load_prod(&self) -> u32;
    /// Stores `out_prod`. The kernel uses Release: the bytes copied before are visible
    /// to the back end before the index that covers them.
    fn store_prod(&mut self, prod: u32);
    /// Copies `bytes` into `out[]` from byte `at`; the ring guarantees
    /// `at + bytes.len() <= 2048` and that the slots are free.
    fn copy_out(&mut self, at: usize, bytes: &[u8]);
    /// Tells the back end there is output (`EVTCHNOP_send`); failures are ignored (the
    /// bytes stay for the next notification).
    fn notify(&mut self);
    /// Gives the CPU away once while waiting for space (`SCHEDOP_yield`).
    fn yield_now(&mut self);
}

/// The back end broke the index rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleRingError {
    /// `out_prod - out_cons` is over the ring size.
    Inconsistent {
        /// `out_prod` as read.
        prod: u32,
        /// `out_cons` as read.
        cons: u32,
    },
}

impl fmt::Display for ConsoleRingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleRingError::Inconsistent { prod, cons } => write!(
                f,
                "ring indices inconsistent (out_prod {prod}, out_cons {cons})"
            ),
        }
    }
}

/// Free bytes between `prod` and `cons` (free-running indices), or the error if the
/// back end's `cons` is impossible.
pub fn free_space(prod: u32, cons: u32) -> Result<usize, ConsoleRingError> {
    let used = prod.wrapping_sub(cons) as usize;
    OUT_SIZE
        .checked_sub(used)
        .ok_or(ConsoleRingError::Inconsistent { prod, cons })
}

/// The producer's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutRing {
    /// Waiting for space timed out: only write what fits until space appears.
    stalled: bool,
}

impl OutRing {
    /// A fresh producer (not stalled).
    pub const fn new() -> Self {
        OutRing { stalled: false }
    }

    /// Whether the last wait for space timed out.
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// `(out_prod, free bytes)`, read once.
    fn space(page: &impl OutPage) -> Result<(u32, usize), ConsoleRingError> {
        let cons = page.load_cons();
        let prod = page.load_prod();
        Ok((prod, free_space(prod, cons)?))
    }

    /// Puts `bytes` into the ring, waiting (notify + yield) at most `max_yields` times
    /// for space; a stalled ring does not wait at all and drops what does not fit.
    /// Notifies the back end at the end.
    pub fn write(
        &mut self,
        page: &mut impl OutPage,
        mut bytes: &[u8],
        max_yields: u32,
    ) -> Result<(), ConsoleRingError> {
        let mut yields = 0;
        while !bytes.is_empty() {
            let (prod, space) = Self::space(page)?;
            if space == 0 {
                if self.stalled || yields >= max_yields {
                    self.stalled = true;
                    break;
                }
                page.notify();
                page.yield_now();
                yields += 1;
                continue;
            }
            let (now, rest) = bytes.split_at(space.min(bytes.len()));
            let at = xen_abi::console::mask(prod, OUT_SIZE);
            let first = now.len().min(OUT_SIZE - at);
            let (head, tail) = now.split_at(first);
            page.copy_out(at, head);
            if !tail.is_empty() {
                page.copy_out(0, tail);
            }
            page.store_prod(prod.wrapping_add(now.len() as u32));
            self.stalled = false;
            bytes = rest;
        }
        page.notify();
        Ok(())
    }

    /// Waits (notify + yield, at most `max_yields` times) until the back end has
    /// consumed everything. `Ok(true)` if the ring is empty.
    pub fn flush(
        &mut self,
        page: &mut impl OutPage,
        max_yields: u32,
    ) -> Result<bool, ConsoleRingError> {
        for _ in 0..max_yields {
            let (_, space) = Self::space(page)?;
            if space == OUT_SIZE {
                return Ok(true);
            }
            page.notify();
            page.yield_now();
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests;
