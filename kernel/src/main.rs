//! The xenrs unikernel: a PVH domU for Xen 4.17.
//!
//! Layers, lowest first: [`arch`] (hypercalls, debug port, start info), [`mm`]
//! (frames, heap, mapped pages), [`xen`] (shared info, event channels, time, grants,
//! xenstore, control, console), [`xenbus`] (device enumeration, the front-end
//! platform, back-end watches), [`blk`] (blkfront disks), [`net`] (netfront under
//! smoltcp, the services), and [`runtime`], which alone orchestrates: boot, bring-up,
//! the main loop, suspend/resume and the panic path. See `docs/BOOT.md` and `docs/CORE.md`.
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod blk;
mod mm;
mod net;
mod runtime;
mod xen;
mod xenbus;

boot::entry_point!(runtime::kernel_main);
