//! Unit and randomized tests for the command-line parser.

extern crate std;

use super::*;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

fn errors_of(cmdline: &str) -> Vec<ConfigError<'_>> {
    parse(cmdline).errors().copied().collect()
}

fn messages(cmdline: &str) -> Vec<String> {
    parse(cmdline).errors().map(|e| e.to_string()).collect()
}

#[test]
fn empty_and_blank_give_defaults() {
    for line in ["", " ", "\t", "\n\r\t  \x0c", "     "] {
        let p = parse(line);
        assert_eq!(p.config, Config::default(), "{line:?}");
        assert!(p.is_clean());
        assert_eq!(p.errors().count(), 0);
        assert_eq!(p.dropped_errors(), 0);
    }
    let d = Config::default();
    assert_eq!(d.then, AfterBoot::Block);
    assert_eq!(d.test, None);
    assert_eq!(d.log, LogLevel::Info);
    assert_eq!(d.net.mode, NetMode::Unconfigured);
    assert_eq!(d.net.gateway, None);
}

#[test]
fn then_key() {
    assert_eq!(parse("then=poweroff").config.then, AfterBoot::PowerOff);
    assert_eq!(parse("then=block").config.then, AfterBoot::Block);
    assert!(parse("then=block").is_clean());
    assert_eq!(AfterBoot::Block.as_str(), "block");
    assert_eq!(AfterBoot::PowerOff.as_str(), "poweroff");
}

#[test]
fn test_key() {
    assert_eq!(parse("test=panic").config.test, Some(TestHook::Panic));
    assert_eq!(parse("test=fault").config.test, Some(TestHook::Fault));
    assert_eq!(TestHook::Fault.as_str(), "fault");
    assert_eq!(TestHook::Panic.as_str(), "panic");
    let p = parse("test=oops");
    assert_eq!(p.config.test, None);
    assert_eq!(
        messages("test=oops"),
        ["bad value 'oops' for 'test' (expected panic|fault)"]
    );
}

#[test]
fn log_key_and_ordering() {
    for (text, level) in [
        ("error", LogLevel::Error),
        ("warn", LogLevel::Warn),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
    ] {
        let p = parse_owned(&format!("log={text}"));
        assert_eq!(p, (level, 0));
        assert_eq!(level.as_str(), text);
    }
    assert!(LogLevel::Error < LogLevel::Warn);
    assert!(LogLevel::Warn < LogLevel::Info);
    assert!(LogLevel::Info < LogLevel::Debug);
    assert_eq!(
        messages("log=DEBUG"),
        ["bad value 'DEBUG' for 'log' (expected error|warn|info|debug)"]
    );

    fn parse_owned(s: &str) -> (LogLevel, usize) {
        let p = parse(s);
        (p.config.log, p.errors().count())
    }
}

#[test]
fn ip_key_accepts_prefix_range() {
    let p = parse("ip=10.0.2.15/24");
    assert!(p.is_clean());
    assert_eq!(
        p.config.net.mode,
        NetMode::Static {
            addr: [10, 0, 2, 15],
            prefix: 24
        }
    );
    for prefix in 0..=32u8 {
        let line = format!("ip=192.168.1.2/{prefix}");
        let p = parse(&line);
        assert!(p.is_clean(), "{line}");
        assert_eq!(
            p.config.net.mode,
            NetMode::Static {
                addr: [192, 168, 1, 2],
                prefix
            }
        );
    }
    assert_eq!(
        parse("ip=0.0.0.0/0").config.net.mode,
        NetMode::Static {
            addr: [0; 4],
            prefix: 0
        }
    );
    assert_eq!(
        parse("ip=255.255.255.255/32").config.net.mode,
        NetMode::Static {
            addr: [255; 4],
            prefix: 32
        }
    );
}

#[test]
fn ip_key_rejects_malformed() {
    for bad in [
        "1.2.3.4",
        "1.2.3.4/",
        "1.2.3.4/33",
        "1.2.3.4/100",
        "1.2.3.4/08",
        "1.2.3.4/+8",
        "1.2.3.4/-1",
        "1.2.3.4/8/9",
        "1.2.3.4/8x",
        "/24",
        "1.2.3/24",
        "1.2.3.4.5/24",
        "256.1.1.1/24",
        "01.2.3.4/24",
        "1..3.4/24",
        "a.b.c.d/24",
        "1.2.3.4/٣",
        "１.2.3.4/8",
    ] {
        let line = format!("ip={bad}");
        let p = parse(&line);
        assert_eq!(p.config.net.mode, NetMode::Unconfigured, "{line}");
        let errs: Vec<_> = p.errors().copied().collect();
        assert_eq!(
            errs,
            [ConfigError::BadValue {
                key: "ip",
                value: bad,
                expected: "A.B.C.D/N with N in 0..=32"
            }],
            "{line}"
        );
    }
}

#[test]
fn gw_key() {
    let p = parse("gw=10.0.2.2");
    assert!(p.is_clean());
    assert_eq!(p.config.net.gateway, Some([10, 0, 2, 2]));
    assert_eq!(p.config.net.mode, NetMode::Unconfigured);
    assert_eq!(
        messages("gw=10.0.2.2/24"),
        ["bad value '10.0.2.2/24' for 'gw' (expected A.B.C.D)"]
    );
    assert_eq!(parse("gw=10.0.2.256").config.net.gateway, None);
}

#[test]
fn services_key() {
    assert_eq!(parse("").config.net.services, Services::ALL);
    assert_eq!(parse("services=all").config.net.services, Services::ALL);
    assert_eq!(parse("services=none").config.net.services, Services::NONE);
    let p = parse("services=udp-echo,echo");
    assert!(p.is_clean());
    assert_eq!(
        p.config.net.services,
        Services {
            tcp_echo: true,
            udp_echo: true,
            iperf3: false,
            nbd: false
        }
    );
    let only = parse("services=iperf3").config.net.services;
    assert_eq!(only.to_string(), "iperf3");
    assert!(only.iperf3 && !only.tcp_echo && !only.udp_echo && !only.nbd);
    let nbd = parse("services=nbd,echo").config.net.services;
    assert!(nbd.nbd && nbd.tcp_echo && !nbd.iperf3 && !nbd.udp_echo);
    assert_eq!(nbd.to_string(), "echo,nbd");
    const { assert!(Services::ALL.nbd && !Services::NONE.nbd) };
    assert_eq!(p.config.net.services.to_string(), "echo,udp-echo");
    assert_eq!(Services::ALL.to_string(), "all");
    assert_eq!(Services::NONE.to_string(), "none");
    // Every refused value leaves the default (all) in place.
    for bad in [
        "services=",
        "services",
        "services=echo,",
        "services=,echo",
        "services=echo,,iperf3",
        "services=echo,echo",
        "services=all,echo",
        "services=none,iperf3",
        "services=ECHO",
        "services=ssh",
        "services=nbd,nbd",
        "services=NBD",
    ] {
        let p = parse(bad);
        assert_eq!(p.errors().count(), 1, "{bad}");
        assert_eq!(p.config.net.services, Services::ALL, "{bad}");
    }
    assert_eq!(
        messages("services=echo,ssh"),
        [
            "bad value 'echo,ssh' for 'services' (expected all|none or a comma-separated list of echo,udp-echo,iperf3,nbd)"
        ]
    );
    assert_eq!(
        errors_of("services=echo services=iperf3"),
        [ConfigError::Duplicate("services")]
    );
    assert!(
        parse("services=echo services=iperf3")
            .config
            .net
            .services
            .tcp_echo
    );
}

#[test]
fn dhcp_flag() {
    let p = parse("dhcp");
    assert!(p.is_clean());
    assert_eq!(p.config.net.mode, NetMode::Dhcp);
    assert_eq!(
        errors_of("dhcp=yes"),
        [ConfigError::UnexpectedValue {
            key: "dhcp",
            value: "yes"
        }]
    );
    assert_eq!(
        messages("dhcp=yes"),
        ["option 'dhcp' takes no value (got 'yes')"]
    );
    assert_eq!(messages("dhcp="), ["option 'dhcp' takes no value (got '')"]);
    assert_eq!(parse("dhcp=").config.net.mode, NetMode::Unconfigured);
}

#[test]
fn full_line_with_odd_whitespace() {
    let p = parse("\t then=block  log=debug\ttest=fault\n ip=10.0.0.2/8   gw=10.0.0.1 \r\n");
    assert!(p.is_clean());
    assert_eq!(
        p.config,
        Config {
            then: AfterBoot::Block,
            test: Some(TestHook::Fault),
            log: LogLevel::Debug,
            net: NetConfig {
                mode: NetMode::Static {
                    addr: [10, 0, 0, 2],
                    prefix: 8
                },
                gateway: Some([10, 0, 0, 1]),
                services: Services::ALL,
                tso: true,
            },
        }
    );
}

#[test]
fn contract_messages_are_exact() {
    assert_eq!(messages("foo"), ["unknown option 'foo'"]);
    assert_eq!(
        messages("then=x"),
        ["bad value 'x' for 'then' (expected poweroff|block)"]
    );
}

#[test]
fn unknown_options() {
    assert_eq!(errors_of("foo"), [ConfigError::UnknownOption("foo")]);
    assert_eq!(errors_of("foo=bar"), [ConfigError::UnknownOption("foo")]);
    assert_eq!(
        errors_of("THEN=block"),
        [ConfigError::UnknownOption("THEN")]
    );
    assert_eq!(errors_of("=block"), [ConfigError::UnknownOption("")]);
    assert_eq!(errors_of("="), [ConfigError::UnknownOption("")]);
    assert_eq!(messages("=x"), ["unknown option ''"]);
    // An unknown option does not disturb the others.
    let p = parse("foo then=poweroff bar=1");
    assert_eq!(p.config.then, AfterBoot::PowerOff);
    assert_eq!(
        p.errors().copied().collect::<Vec<_>>(),
        [
            ConfigError::UnknownOption("foo"),
            ConfigError::UnknownOption("bar")
        ]
    );
}

#[test]
fn missing_values() {
    for key in ["then", "test", "log", "ip", "gw"] {
        for line in [key.to_string(), format!("{key}=")] {
            let p = parse(&line);
            assert_eq!(p.config, Config::default(), "{line}");
            assert_eq!(
                p.errors().copied().collect::<Vec<_>>(),
                [ConfigError::MissingValue(key)]
            );
            assert_eq!(
                p.errors().map(|e| e.to_string()).collect::<Vec<_>>(),
                [format!("missing value for '{key}'")]
            );
        }
    }
}

#[test]
fn values_keep_everything_after_first_equals() {
    assert_eq!(
        errors_of("then==block"),
        [ConfigError::BadValue {
            key: "then",
            value: "=block",
            expected: "poweroff|block"
        }]
    );
}

#[test]
fn duplicates_keep_the_first() {
    // (then=poweroff first: the default is block, so keeping the second token
    // would be visible.)
    let p = parse("then=poweroff then=block");
    assert_eq!(p.config.then, AfterBoot::PowerOff);
    assert_eq!(
        p.errors().copied().collect::<Vec<_>>(),
        [ConfigError::Duplicate("then")]
    );
    assert_eq!(
        messages("log=warn log=warn"),
        ["duplicate option 'log' (first one kept)"]
    );
    assert_eq!(errors_of("dhcp dhcp"), [ConfigError::Duplicate("dhcp")]);
    assert_eq!(
        errors_of("gw=1.1.1.1 gw=2.2.2.2"),
        [ConfigError::Duplicate("gw")]
    );
    assert_eq!(
        parse("gw=1.1.1.1 gw=2.2.2.2").config.net.gateway,
        Some([1, 1, 1, 1])
    );
    assert_eq!(
        errors_of("test=panic test=fault"),
        [ConfigError::Duplicate("test")]
    );
}

#[test]
fn a_failed_token_does_not_claim_the_key() {
    let p = parse("then=bogus then=poweroff");
    assert_eq!(p.config.then, AfterBoot::PowerOff);
    assert_eq!(p.errors().count(), 1);
    let p = parse("ip=1.2.3.4 dhcp");
    assert_eq!(p.config.net.mode, NetMode::Dhcp);
    assert_eq!(p.errors().count(), 1);
}

#[test]
fn ip_and_dhcp_conflict() {
    let p = parse("ip=10.0.0.2/24 dhcp");
    assert_eq!(
        p.config.net.mode,
        NetMode::Static {
            addr: [10, 0, 0, 2],
            prefix: 24
        }
    );
    assert_eq!(
        p.errors().copied().collect::<Vec<_>>(),
        [ConfigError::Conflict {
            key: "dhcp",
            with: "ip"
        }]
    );
    assert_eq!(
        messages("dhcp ip=10.0.0.2/24"),
        ["option 'ip' conflicts with earlier 'dhcp' (ignored)"]
    );
    assert_eq!(parse("dhcp ip=10.0.0.2/24").config.net.mode, NetMode::Dhcp);
    // The gateway is independent of the address mode.
    let p = parse("dhcp gw=10.0.0.1");
    assert!(p.is_clean());
    assert_eq!(p.config.net.gateway, Some([10, 0, 0, 1]));
}

#[test]
fn error_store_is_bounded() {
    let line = (0..20)
        .map(|i| format!("x{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let p = parse(&line);
    let kept: Vec<_> = p.errors().copied().collect();
    assert_eq!(kept.len(), MAX_ERRORS);
    assert_eq!(p.dropped_errors(), 20 - MAX_ERRORS);
    assert!(!p.is_clean());
    assert_eq!(kept[0], ConfigError::UnknownOption("x0"));
    assert_eq!(kept[MAX_ERRORS - 1], ConfigError::UnknownOption("x7"));
    // Valid tokens after the store is full still apply.
    let line = format!("{line} then=poweroff");
    assert_eq!(parse(&line).config.then, AfterBoot::PowerOff);
}

#[test]
fn display_escapes_and_truncates() {
    assert_eq!(messages("fo\u{1b}[2Jo"), ["unknown option 'fo\\u{1b}[2Jo'"]);
    assert_eq!(messages("caf\u{e9}"), ["unknown option 'caf\\u{e9}'"]);
    assert_eq!(
        messages("then=\u{7f}"),
        ["bad value '\\u{7f}' for 'then' (expected poweroff|block)"]
    );
    let long = "k".repeat(1000);
    let msg = &messages(&long)[0];
    assert_eq!(
        *msg,
        format!("unknown option '{}...'", "k".repeat(DISPLAY_MAX_CHARS))
    );
    let exact = "k".repeat(DISPLAY_MAX_CHARS);
    assert_eq!(messages(&exact), [format!("unknown option '{exact}'")]);
    // Every message is a single line.
    for m in messages("a\u{85}b c\u{2028}d then=\u{0}") {
        assert!(
            !m.contains('\n') && !m.contains('\r') && !m.contains('\u{85}'),
            "{m}"
        );
        assert!(
            m.chars().all(|c| c.is_ascii() && !c.is_ascii_control()),
            "{m}"
        );
    }
}

#[test]
fn unicode_whitespace_is_not_a_separator() {
    // Only ASCII whitespace separates tokens; U+00A0 stays inside the token.
    assert_eq!(
        errors_of("then=block\u{a0}log=debug"),
        [ConfigError::BadValue {
            key: "then",
            value: "block\u{a0}log=debug",
            expected: "poweroff|block"
        }]
    );
}

/// xorshift64*: a small deterministic generator for the randomized tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// True if `inner` is a sub-slice of `outer` (points into the same memory).
fn within(outer: &str, inner: &str) -> bool {
    let o = outer.as_ptr() as usize;
    let i = inner.as_ptr() as usize;
    i >= o && i + inner.len() <= o + outer.len()
}

fn check_invariants(line: &str) {
    let p = parse(line);
    if let NetMode::Static { prefix, .. } = p.config.net.mode {
        assert!(prefix <= 32);
    }
    assert!(p.errors().count() <= MAX_ERRORS);
    if p.dropped_errors() > 0 {
        assert_eq!(p.errors().count(), MAX_ERRORS);
    }
    let tokens = line.split_ascii_whitespace().count();
    assert!(p.errors().count() + p.dropped_errors() <= tokens);
    for e in p.errors() {
        let text = e.to_string();
        assert!(!text.is_empty());
        assert!(text.chars().all(|c| c.is_ascii() && !c.is_ascii_control()));
        match *e {
            ConfigError::UnknownOption(k)
            | ConfigError::MissingValue(k)
            | ConfigError::Duplicate(k)
            | ConfigError::Conflict { key: k, .. } => assert!(within(line, k)),
            ConfigError::BadValue { key, value, .. }
            | ConfigError::UnexpectedValue { key, value } => {
                assert!(within(line, key) && within(line, value));
            }
        }
    }
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let alphabet: Vec<char> = "=/. \t\n\r0123456789abcdehiklnoprstwxyz\u{0}\u{7f}\u{a0}é€😀"
        .chars()
        .collect();
    for round in 0..20_000 {
        let len = rng.below(if round % 100 == 0 { 4000 } else { 60 });
        let line: String = if round % 2 == 0 {
            (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect()
        } else {
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        check_invariants(&line);
    }
}

/// A token together with its effect in the reference model.
#[derive(Clone, Copy)]
enum Effect {
    Set(Slot, &'static str, fn(&mut Config)),
    Error,
}

#[test]
fn randomized_model_of_valid_and_invalid_tokens() {
    let pool: &[(&str, Effect)] = &[
        (
            "then=block",
            Effect::Set(Slot::Then, "then", |c| c.then = AfterBoot::Block),
        ),
        (
            "then=poweroff",
            Effect::Set(Slot::Then, "then", |c| c.then = AfterBoot::PowerOff),
        ),
        (
            "test=panic",
            Effect::Set(Slot::Test, "test", |c| c.test = Some(TestHook::Panic)),
        ),
        (
            "test=fault",
            Effect::Set(Slot::Test, "test", |c| c.test = Some(TestHook::Fault)),
        ),
        (
            "log=error",
            Effect::Set(Slot::Log, "log", |c| c.log = LogLevel::Error),
        ),
        (
            "log=debug",
            Effect::Set(Slot::Log, "log", |c| c.log = LogLevel::Debug),
        ),
        (
            "log=warn",
            Effect::Set(Slot::Log, "log", |c| c.log = LogLevel::Warn),
        ),
        (
            "ip=10.1.2.3/16",
            Effect::Set(Slot::NetMode, "ip", |c| {
                c.net.mode = NetMode::Static {
                    addr: [10, 1, 2, 3],
                    prefix: 16,
                }
            }),
        ),
        (
            "ip=192.168.0.9/32",
            Effect::Set(Slot::NetMode, "ip", |c| {
                c.net.mode = NetMode::Static {
                    addr: [192, 168, 0, 9],
                    prefix: 32,
                }
            }),
        ),
        (
            "dhcp",
            Effect::Set(Slot::NetMode, "dhcp", |c| c.net.mode = NetMode::Dhcp),
        ),
        (
            "gw=10.1.0.1",
            Effect::Set(Slot::Gateway, "gw", |c| c.net.gateway = Some([10, 1, 0, 1])),
        ),
        ("then=reboot", Effect::Error),
        ("then", Effect::Error),
        ("log=", Effect::Error),
        ("ip=10.1.2.3/40", Effect::Error),
        ("gw=1.2.3", Effect::Error),
        ("dhcp=on", Effect::Error),
        ("disk=xvda", Effect::Error),
        ("=", Effect::Error),
        ("é=ü", Effect::Error),
    ];
    let seps = [" ", "  ", "\t", "\n", " \t "];
    let mut rng = Rng(42);
    for _ in 0..5_000 {
        let n = rng.below(14);
        let mut line = String::new();
        let mut expected = Config::default();
        let mut owner: [Option<&str>; SLOT_COUNT] = [None; SLOT_COUNT];
        let mut expected_errors = 0usize;
        for _ in 0..n {
            let (tok, effect) = pool[rng.below(pool.len())];
            line.push_str(seps[rng.below(seps.len())]);
            line.push_str(tok);
            match effect {
                Effect::Error => expected_errors += 1,
                Effect::Set(slot, _, _) if owner[slot.index()].is_some() => expected_errors += 1,
                Effect::Set(slot, name, f) => {
                    owner[slot.index()] = Some(name);
                    f(&mut expected);
                }
            }
        }
        let p = parse(&line);
        assert_eq!(p.config, expected, "{line:?}");
        assert_eq!(
            p.errors().count() + p.dropped_errors(),
            expected_errors,
            "{line:?}"
        );
        check_invariants(&line);
    }
}

#[test]
fn tso_is_on_unless_turned_off() {
    assert!(parse("").config.net.tso);
    assert!(parse("tso=on").config.net.tso);
    assert!(!parse("tso=off").config.net.tso);
    assert_eq!(
        messages("tso=yes"),
        ["bad value 'yes' for 'tso' (expected on|off)"]
    );
    assert_eq!(messages("tso"), ["missing value for 'tso'"]);
    assert!(parse("tso=on tso=off").config.net.tso);
}
