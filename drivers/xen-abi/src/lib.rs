//! Xen guest ABI definitions for a PVH domU, written from Xen 4.17's public headers.
//!
//! Every item cites the header it comes from (paths are relative to
//! `xen/include/public/` in the Xen source tree). Struct layouts are `#[repr(C)]`
//! and are checked by host tests against the sizes and offsets of the C ABI.
//!
//! This crate holds definitions only: no hypercalls, no pointers into shared
//! memory. Glossary used across the project: *gref* is a grant reference, *evtchn*
//! an event channel port, *domid* a domain id, *pfn*/*gfn* a guest frame number.
#![no_std]
#![forbid(unsafe_code)]

pub mod blkif;
pub mod console;
pub mod cpuid;
pub mod elfnote;
pub mod errno;
pub mod event_channel;
pub mod features;
pub mod grant_table;
pub mod hvm;
pub mod hypercall;
pub mod memory;
pub mod netif;

pub mod ring;
pub mod sched;
pub mod shared_info;
pub mod start_info;
pub mod vcpu;
pub mod version;
pub mod xenbus;
pub mod xenstore;

/// A domain id (`domid_t` in `xen.h`).
pub type DomId = u16;

/// `DOMID_SELF` from `xen.h`: names the calling domain.
pub const DOMID_SELF: DomId = 0x7FF0;

/// The page size every Xen x86 ABI here assumes (`XEN_PAGE_SIZE`).
pub const PAGE_SIZE: usize = 4096;

/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
