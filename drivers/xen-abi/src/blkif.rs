//! TODO(abi helper): filled in from the Xen 4.17 public headers.
