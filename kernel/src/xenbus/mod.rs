//! Xenbus glue for every device class: enumeration, hotplug, the platform the front-end runtime needs, the back-end state watch.

pub mod devices;
pub mod hotplug;
pub mod platform;
pub mod watch;
