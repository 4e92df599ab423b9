//! The unikernel binary.
#![no_std]
#![no_main]
