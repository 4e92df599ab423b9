//! PVH entry: 32-bit protected mode to long mode, descriptor tables and early page tables.
#![no_std]
