//! The `log` facade backend: records go to the console as `xenrs <level>: <message>`.
//!
//! The level comes from the `log=` command-line option (`guest-config`); the contract
//! lines (banner, memory, boot complete, ...) are printed directly, not through `log`,
//! so they appear at every level.

use guest_config::LogLevel;
use log::{Level, LevelFilter, Log, Metadata, Record};

/// The console logger.
struct ConsoleLogger;

/// The one logger instance.
static LOGGER: ConsoleLogger = ConsoleLogger;

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            crate::println!("xenrs {}: {}", name(record.level()), record.args());
        }
    }

    fn flush(&self) {}
}

/// The level's lower-case name.
fn name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// Installs the logger (first call only) and sets the level.
pub fn init(level: LogLevel) {
    // An error means a logger is already installed: keep it, just set the level.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(filter(level));
}

/// The `log` filter for a `log=` level.
fn filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warn => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
    }
}
