//! Xenbus glue: device enumeration and back-end watches for every device class.

pub mod devices;
