//! Xen block front end (blkif over xenbus) on the shared front-end runtime (work in progress).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
