//! Parses the xenrs kernel command line into a typed [`Config`].
//!
//! The command line comes from `extra=`/`cmdline=` in the xl domain config and is
//! handed over through `cmdline_paddr` of `struct hvm_start_info`
//! (`xen/include/public/arch-x86/hvm/start_info.h`). It is a list of tokens
//! separated by ASCII whitespace; each token is `key=value` or a bare `key`.
//! The accepted keys are those of the guest console contract:
//!
//! | token              | effect                                   |
//! |--------------------|------------------------------------------|
//! | `then=block`       | [`AfterBoot::Block`] (default)           |
//! | `then=poweroff`    | [`AfterBoot::PowerOff`]                  |
//! | `test=panic\|fault` | [`TestHook`] run right after the banner |
//! | `log=error\|warn\|info\|debug` | [`LogLevel`] (default info)   |
//! | `ip=A.B.C.D/N`     | [`NetMode::Static`], `N` in `0..=32`     |
//! | `gw=A.B.C.D`       | [`NetConfig::gateway`]                   |
//! | `dhcp`             | [`NetMode::Dhcp`]                        |
//! | `services=LIST`    | [`Services`]: comma-separated `echo`, `udp-echo`, `iperf3`, `nbd`, or `all` / `none` (default all) |
//! | `tso=on\|off`       | [`NetConfig::tso`] (default on)          |
//!
//! Error policy: a token that cannot be applied (unknown key, bad or missing
//! value, repeated key, conflicting key) is recorded as a [`ConfigError`] and
//! otherwise ignored, so boot continues with the defaults for that setting. The
//! first occurrence of a key wins; later ones are reported as
//! [`ConfigError::Duplicate`]. Up to [`MAX_ERRORS`] errors are kept, the rest are
//! only counted ([`Parsed::dropped_errors`]).
//!
//! No-panic promise: [`parse`] accepts any `&str` (any length, any Unicode, any
//! control characters) and never panics; it does no arithmetic that can overflow
//! and indexes nothing by untrusted values. It allocates nothing.
//!
//! Adding a key: add a variant's worth of state to [`Config`], write an
//! `apply_*` function, and add one row to the private `OPTIONS` table (pick a new `Slot` unless the key is mutually exclusive
//! with an existing one, like `ip=` and `dhcp`).
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;
use core::net::Ipv4Addr;

/// How many errors [`Parsed`] keeps; further errors are only counted.
pub const MAX_ERRORS: usize = 8;

/// Longest piece of a user-supplied string that [`ConfigError`]'s `Display`
/// prints, in characters; longer strings are cut and end in `...`.
pub const DISPLAY_MAX_CHARS: usize = 64;

/// What the kernel does once boot is complete (`then=`).
///
/// The default is [`AfterBoot::Block`] (guest contract for issue 3: the guest runs
/// its event loop until the toolstack tells it to shut down).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AfterBoot {
    /// `then=poweroff`: `SCHEDOP_shutdown(SHUTDOWN_poweroff)` (the issue-2 behaviour).
    PowerOff,
    /// `then=block`: stay up and run the event loop (idle in `sti; hlt`) until a
    /// control request ends it.
    #[default]
    Block,
}

impl AfterBoot {
    /// The command-line spelling of this value.
    pub const fn as_str(self) -> &'static str {
        match self {
            AfterBoot::PowerOff => "poweroff",
            AfterBoot::Block => "block",
        }
    }
}

/// A deliberate failure injected right after the banner (`test=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TestHook {
    /// `test=panic`: call `panic!`.
    Panic,
    /// `test=fault`: touch an unmapped address (page fault).
    Fault,
}

impl TestHook {
    /// The command-line spelling of this value.
    pub const fn as_str(self) -> &'static str {
        match self {
            TestHook::Panic => "panic",
            TestHook::Fault => "fault",
        }
    }
}

/// Console log verbosity (`log=`). Ordered: `Error < Warn < Info < Debug`, so
/// "print if `level <= config.log`" is the usual filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings.
    Warn,
    /// Normal boot messages (default).
    #[default]
    Info,
    /// Everything.
    Debug,
}

impl LogLevel {
    /// The command-line spelling of this value.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// How the network interface gets its IPv4 address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NetMode {
    /// `ip=A.B.C.D/N`: a fixed address and prefix length (`prefix <= 32`).
    Static {
        /// The address octets, most significant first.
        addr: [u8; 4],
        /// The prefix length, `0..=32`.
        prefix: u8,
    },
    /// `dhcp`: ask a DHCP server.
    Dhcp,
    /// Neither was given.
    #[default]
    Unconfigured,
}

/// Which network services the guest runs (`services=`); the default is all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Services {
    /// `echo`: TCP echo on port 7.
    pub tcp_echo: bool,
    /// `udp-echo`: UDP echo on port 7.
    pub udp_echo: bool,
    /// `iperf3`: the iperf3 server on port 5201.
    pub iperf3: bool,
    /// `nbd`: the NBD disk service on port 10809.
    pub nbd: bool,
}

impl Services {
    /// Every service (`services=all`, and the default).
    pub const ALL: Services = Services {
        tcp_echo: true,
        udp_echo: true,
        iperf3: true,
        nbd: true,
    };
    /// No service (`services=none`): the guest still answers ARP and ping.
    pub const NONE: Services = Services {
        tcp_echo: false,
        udp_echo: false,
        iperf3: false,
        nbd: false,
    };
}

impl Default for Services {
    fn default() -> Self {
        Services::ALL
    }
}

impl fmt::Display for Services {
    /// The command-line spelling: `all`, `none`, or the names joined by commas.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Services::ALL {
            return f.write_str("all");
        }
        if *self == Services::NONE {
            return f.write_str("none");
        }
        let mut sep = "";
        for (on, name) in [
            (self.tcp_echo, "echo"),
            (self.udp_echo, "udp-echo"),
            (self.iperf3, "iperf3"),
            (self.nbd, "nbd"),
        ] {
            if on {
                write!(f, "{sep}{name}")?;
                sep = ",";
            }
        }
        Ok(())
    }
}

/// Network settings from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NetConfig {
    /// Address assignment (`ip=` or `dhcp`).
    pub mode: NetMode,
    /// Default gateway (`gw=`); the parser does not cross-check it against
    /// [`NetConfig::mode`].
    pub gateway: Option<[u8; 4]>,
    /// The services to run (`services=`).
    pub services: Services,
    /// TCP segmentation offload on send (`tso=on|off`, default on): smoltcp hands
    /// netfront segments of up to 64 KiB and the back end (or netfront) cuts them.
    pub tso: bool,
}

impl Default for NetConfig {
    /// Unconfigured addressing, no gateway, every service, TSO on.
    fn default() -> Self {
        NetConfig {
            mode: NetMode::default(),
            gateway: None,
            services: Services::default(),
            tso: true,
        }
    }
}

/// The typed configuration; [`Default`] is what an empty command line gives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Config {
    /// What to do after boot (`then=`).
    pub then: AfterBoot,
    /// Failure to inject after the banner (`test=`), if any.
    pub test: Option<TestHook>,
    /// Log verbosity (`log=`).
    pub log: LogLevel,
    /// Network settings (`ip=`, `gw=`, `dhcp`).
    pub net: NetConfig,
}

/// One problem found on the command line. The borrowed strings point into the
/// command line that was parsed.
///
/// `Display` renders the text that follows `xenrs config error: ` on the
/// console (see the guest console contract), e.g.
/// `unknown option 'foo'` or `bad value 'x' for 'then' (expected poweroff|block)`.
/// User-supplied text is printed with control and non-ASCII characters escaped
/// and cut to [`DISPLAY_MAX_CHARS`], so one error is always one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigError<'a> {
    /// The key is not one we know (the whole token's key part).
    UnknownOption(&'a str),
    /// The key is known but its value does not parse.
    BadValue {
        /// The key.
        key: &'a str,
        /// The offending value.
        value: &'a str,
        /// What would have been accepted, e.g. `poweroff|block`.
        expected: &'static str,
    },
    /// The key needs a value but got none (`then` or `then=`).
    MissingValue(&'a str),
    /// The key was already applied; this occurrence is ignored.
    Duplicate(&'a str),
    /// A flag that takes no value was given one (`dhcp=yes`).
    UnexpectedValue {
        /// The key.
        key: &'a str,
        /// The value that was not expected.
        value: &'a str,
    },
    /// The key is mutually exclusive with one applied earlier (`ip=` and
    /// `dhcp`); this occurrence is ignored.
    Conflict {
        /// The key that was ignored.
        key: &'a str,
        /// The earlier key it conflicts with.
        with: &'static str,
    },
}

impl fmt::Display for ConfigError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigError::UnknownOption(key) => write!(f, "unknown option '{}'", Shown(key)),
            ConfigError::BadValue {
                key,
                value,
                expected,
            } => write!(
                f,
                "bad value '{}' for '{}' (expected {})",
                Shown(value),
                Shown(key),
                expected
            ),
            ConfigError::MissingValue(key) => write!(f, "missing value for '{}'", Shown(key)),
            ConfigError::Duplicate(key) => {
                write!(f, "duplicate option '{}' (first one kept)", Shown(key))
            }
            ConfigError::UnexpectedValue { key, value } => write!(
                f,
                "option '{}' takes no value (got '{}')",
                Shown(key),
                Shown(value)
            ),
            ConfigError::Conflict { key, with } => write!(
                f,
                "option '{}' conflicts with earlier '{}' (ignored)",
                Shown(key),
                with
            ),
        }
    }
}

/// Displays user text safely: printable ASCII as is, everything else escaped,
/// at most [`DISPLAY_MAX_CHARS`] characters.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, c) in self.0.chars().enumerate() {
            if n == DISPLAY_MAX_CHARS {
                return f.write_str("...");
            }
            if c.is_ascii_graphic() || c == ' ' {
                fmt::Write::write_char(f, c)?;
            } else {
                write!(f, "{}", c.escape_default())?;
            }
        }
        Ok(())
    }
}

/// The result of [`parse`]: the configuration plus the errors met on the way.
#[derive(Clone, Debug)]
pub struct Parsed<'a> {
    /// The configuration; settings whose tokens were in error keep their default.
    pub config: Config,
    errors: [Option<ConfigError<'a>>; MAX_ERRORS],
    kept: usize,
    dropped: usize,
}

impl<'a> Parsed<'a> {
    fn new() -> Self {
        Parsed {
            config: Config::default(),
            errors: [None; MAX_ERRORS],
            kept: 0,
            dropped: 0,
        }
    }

    fn push(&mut self, error: ConfigError<'a>) {
        match self.errors.get_mut(self.kept) {
            Some(slot) => {
                *slot = Some(error);
                self.kept += 1;
            }
            None => self.dropped = self.dropped.saturating_add(1),
        }
    }

    /// The first [`MAX_ERRORS`] errors, in command-line order.
    pub fn errors(&self) -> impl Iterator<Item = &ConfigError<'a>> {
        self.errors.iter().filter_map(Option::as_ref)
    }

    /// How many further errors were found but not kept.
    pub fn dropped_errors(&self) -> usize {
        self.dropped
    }

    /// True if the command line had no errors at all.
    pub fn is_clean(&self) -> bool {
        self.kept == 0 && self.dropped == 0
    }
}

/// Why a value was refused; turned into a [`ConfigError`] with the key attached.
enum Refusal {
    Bad(&'static str),
    Missing,
    Unexpected,
}

/// Settings that a key writes. Two keys sharing a slot are mutually exclusive.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Then,
    Test,
    Log,
    NetMode,
    Gateway,
    Services,
    Tso,
}

const SLOT_COUNT: usize = 7;

impl Slot {
    const fn index(self) -> usize {
        self as usize
    }
}

/// One accepted key: its name, the setting it writes, and how to apply it.
struct OptionSpec {
    name: &'static str,
    slot: Slot,
    /// Applies the (possibly absent) value; `Err` leaves `config` unchanged.
    apply: fn(&mut Config, Option<&str>) -> Result<(), Refusal>,
}

const EXPECT_THEN: &str = "poweroff|block";
const EXPECT_TEST: &str = "panic|fault";
const EXPECT_LOG: &str = "error|warn|info|debug";
const EXPECT_IP: &str = "A.B.C.D/N with N in 0..=32";
const EXPECT_GW: &str = "A.B.C.D";
const EXPECT_TSO: &str = "on|off";
const EXPECT_SERVICES: &str = "all|none or a comma-separated list of echo,udp-echo,iperf3,nbd";

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: "then",
        slot: Slot::Then,
        apply: apply_then,
    },
    OptionSpec {
        name: "test",
        slot: Slot::Test,
        apply: apply_test,
    },
    OptionSpec {
        name: "log",
        slot: Slot::Log,
        apply: apply_log,
    },
    OptionSpec {
        name: "ip",
        slot: Slot::NetMode,
        apply: apply_ip,
    },
    OptionSpec {
        name: "dhcp",
        slot: Slot::NetMode,
        apply: apply_dhcp,
    },
    OptionSpec {
        name: "gw",
        slot: Slot::Gateway,
        apply: apply_gw,
    },
    OptionSpec {
        name: "services",
        slot: Slot::Services,
        apply: apply_services,
    },
    OptionSpec {
        name: "tso",
        slot: Slot::Tso,
        apply: apply_tso,
    },
];

fn required(value: Option<&str>) -> Result<&str, Refusal> {
    match value {
        None | Some("") => Err(Refusal::Missing),
        Some(v) => Ok(v),
    }
}

fn apply_then(config: &mut Config, value: Option<&str>) -> Result<(), Refusal> {
    config.then = match required(value)? {
        "poweroff" => AfterBoot::PowerOff,
        "block" => AfterBoot::Block,
        _ => return Err(Refusal::Bad(EXPECT_THEN)),
    };
    Ok(())
}

fn apply_test(config: &mut Config, value: Option<&str>) -> Result<(), Refusal> {
    config.test = Some(match required(value)? {
        "panic" => TestHook::Panic,
        "fault" => TestHook::Fault,
        _ => return Err(Refusal::Bad(EXPECT_TEST)),
    });
    Ok(())
}

fn apply_log(config: &mut Config, value: Option<&str>) -> Result<(), Refusal> {
    config.log = match required(value)? {
        "error" => LogLevel::Error,
        "warn" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        _ => return Err(Refusal::Bad(EXPECT_LOG)),
    };
    Ok(())
}

/// Parses a dotted-quad IPv4 address: exactly four decimal octets, no leading
/// zeros, no signs (the rules of `core::net::Ipv4Addr`'s `FromStr`).
fn parse_ipv4(text: &str) -> Option<[u8; 4]> {
    text.parse::<Ipv4Addr>().ok().map(|a| a.octets())
}

/// Parses a prefix length: one or two decimal digits, no leading zero, `<= 32`.
fn parse_prefix(text: &str) -> Option<u8> {
    let digits_ok = !text.is_empty()
        && text.len() <= 2
        && text.bytes().all(|b| b.is_ascii_digit())
        && !(text.len() == 2 && text.starts_with('0'));
    if !digits_ok {
        return None;
    }
    text.parse::<u8>().ok().filter(|p| *p <= 32)
}

fn apply_ip(config: &mut Config, value: Option<&str>) -> Result<(), Refusal> {
    let value = required(value)?;
    let (addr, prefix) = value.split_once('/').ok_or(Refusal::Bad(EXPECT_IP))?;
    let addr = parse_ipv4(addr).ok_or(Refusal::Bad(EXPECT_IP))?;
    let prefix = parse_prefix(prefix).ok_or(Refusal::Bad(EXPECT_IP))?;
    config.net.mode = NetMode::Static { addr, prefix };
    Ok(())
}

fn apply_gw(config: &mut Config, value: Option<&str>) -> Result<(), Refusal> {
    let addr = parse_ipv4(required(value)?).ok_or(Refusal::Bad(EXPECT_GW))?;
    config.net.gateway = Some(addr);
    Ok(())
}

/// `services=`: `all`, `none`, or a list of distinct service names separated by
/// single commas (no empty items, no repeats; `all`/`none` only alone).
fn apply_services(config: &mut Config, value: Option<&str>) -> Result<(), Refusal> {
    let value = required(value)?;
    let chosen = match value {
        "all" => Services::ALL,
        "none" => Services::NONE,
        list => {
            let mut s = Services::NONE;
            for name in list.split(',') {
                let flag = match name {
                    "echo" => &mut s.tcp_echo,
                    "udp-echo" => &mut s.udp_echo,
                    "iperf3" => &mut s.iperf3,
                    "nbd" => &mut s.nbd,
                    _ => return Err(Refusal::Bad(EXPECT_SERVICES)),
                };
                if *flag {
                    return Err(Refusal::Bad(EXPECT_SERVICES));
                }
                *flag = true;
            }
            s
        }
    };
    config.net.services = chosen;
    Ok(())
}

fn apply_tso(config: &mut Config, value: Option<&str>) -> Result<(), Refusal> {
    config.net.tso = match required(value)? {
        "on" => true,
        "off" => false,
        _ => return Err(Refusal::Bad(EXPECT_TSO)),
    };
    Ok(())
}

fn apply_dhcp(config: &mut Config, value: Option<&str>) -> Result<(), Refusal> {
    if value.is_some() {
        return Err(Refusal::Unexpected);
    }
    config.net.mode = NetMode::Dhcp;
    Ok(())
}

/// Parses a kernel command line. Never fails and never panics: problems are
/// collected in the returned [`Parsed`] (see the crate docs for the policy).
pub fn parse(cmdline: &str) -> Parsed<'_> {
    let mut parsed = Parsed::new();
    // Which key (if any) has written each setting so far.
    let mut owner: [Option<&'static str>; SLOT_COUNT] = [None; SLOT_COUNT];

    for token in cmdline.split_ascii_whitespace() {
        let (key, value) = match token.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (token, None),
        };
        let Some(spec) = OPTIONS.iter().find(|o| o.name == key) else {
            parsed.push(ConfigError::UnknownOption(key));
            continue;
        };
        let slot = spec.slot.index();
        match owner.get(slot).copied().flatten() {
            Some(prev) if prev == spec.name => {
                parsed.push(ConfigError::Duplicate(key));
                continue;
            }
            Some(prev) => {
                parsed.push(ConfigError::Conflict { key, with: prev });
                continue;
            }
            None => {}
        }
        match (spec.apply)(&mut parsed.config, value) {
            Ok(()) => {
                if let Some(o) = owner.get_mut(slot) {
                    *o = Some(spec.name);
                }
            }
            Err(Refusal::Missing) => parsed.push(ConfigError::MissingValue(key)),
            Err(Refusal::Bad(expected)) => parsed.push(ConfigError::BadValue {
                key,
                value: value.unwrap_or(""),
                expected,
            }),
            Err(Refusal::Unexpected) => parsed.push(ConfigError::UnexpectedValue {
                key,
                value: value.unwrap_or(""),
            }),
        }
    }
    parsed
}

#[cfg(test)]
mod tests;
