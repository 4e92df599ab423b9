//! ELF note types the domain builder reads (`elfnote.h`).

/// `XEN_ELFNOTE_PHYS32_ENTRY`: 32-bit physical entry point for PVH.
pub const PHYS32_ENTRY: u32 = 18;
/// The note owner name, including the terminating NUL.
pub const NOTE_NAME: &[u8; 4] = b"Xen\0";
