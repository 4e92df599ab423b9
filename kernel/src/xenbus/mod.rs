//! Xenbus glue for every device class: enumeration, the platform the front-end runtime needs, the back-end state watch.

pub mod devices;
pub mod platform;
pub mod watch;
