//! JSON glue for iperf3's control messages: `serde-json-core` with a nesting bound and cJSON-like values.
//!
//! iperf3 exchanges its test parameters and results as JSON objects printed
//! by cJSON (`iperf_api.c`: `send_parameters`, `get_parameters`,
//! `send_results`, `get_results`). Parsing and printing are done by
//! `serde-json-core` (`no_std`, no allocation while parsing); this module adds
//! what iperf3's peers need on top:
//!
//! - [`from_slice`]: one value from a whole text, after a cheap scan that
//!   refuses nesting deeper than [`MAX_DEPTH`] (`serde-json-core` skips
//!   unknown members by recursion, so a hostile `[[[[…` would otherwise
//!   exhaust the stack).
//! - [`Number`] and [`Flag`]: numbers read as cJSON reads them (a double;
//!   `valueint` truncates and saturates), and presence flags (`true`/`false`/`null`).
//! - [`copy_lossy`]: a still-escaped string as printable ASCII.
//! - [`to_vec`]: compact JSON of a `Serialize` value into a `Vec<u8>`.
//!
//! # No-panic promise
//!
//! [`from_slice`] never panics and never recurses deeper than [`MAX_DEPTH`]
//! for any input bytes; every violation of the grammar is a [`JsonError`].
//! Inputs are bounded by the caller (the iperf3 server limits each message,
//! see [`crate::iperf3::MAX_PARAMS_JSON`]).

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};
use serde::ser::Serialize;

/// Deepest nesting of objects/arrays accepted (cJSON's own limit is 1000;
/// iperf3's messages nest three levels).
pub const MAX_DEPTH: usize = 32;

/// Why a JSON text was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// The text does not parse as the expected value (`serde-json-core`'s reason).
    Syntax(serde_json_core::de::Error),
    /// Objects/arrays nested deeper than [`MAX_DEPTH`], at this offset.
    TooDeep(usize),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax(e) => write!(f, "bad JSON: {e}"),
            JsonError::TooDeep(at) => {
                write!(f, "JSON nested deeper than {MAX_DEPTH} at offset {at}")
            }
        }
    }
}

/// Refuses texts whose objects/arrays nest deeper than [`MAX_DEPTH`]
/// (brackets inside strings do not count). Nothing else is checked here.
pub fn check_depth(text: &[u8]) -> Result<(), JsonError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, &b) in text.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(JsonError::TooDeep(at));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses `text` (one value, optionally surrounded by whitespace) as a `T`.
/// Strings are borrowed as they are, still escaped.
pub fn from_slice<'a, T: Deserialize<'a>>(text: &'a [u8]) -> Result<T, JsonError> {
    check_depth(text)?;
    serde_json_core::from_slice(text)
        .map(|(v, _len)| v)
        .map_err(JsonError::Syntax)
}

/// Compact JSON text of `value`. `size_hint` is the expected length; the
/// buffer grows (doubling, a bounded number of times) when it is too small.
/// Returns `None` only when the value does not serialize in 64 times the hint.
pub fn to_vec<T: Serialize + ?Sized>(value: &T, size_hint: usize) -> Option<Vec<u8>> {
    let mut size = size_hint.max(64);
    for _ in 0..7 {
        let mut buf = vec![0u8; size];
        match serde_json_core::to_slice(value, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Some(buf);
            }
            Err(serde_json_core::ser::Error::BufferFull) => size = size.saturating_mul(2),
            Err(_) => return None,
        }
    }
    None
}

/// A JSON number read the way cJSON reads it: as a double.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number(pub f64);

impl Number {
    /// The value as cJSON's `valueint` would give it: fractions truncated
    /// toward zero, out-of-range values saturated.
    pub fn as_i64(self) -> i64 {
        // `as` truncates and saturates; NaN cannot occur (refused when read).
        self.0 as i64
    }

    /// The value as a count: fractions truncated, negative values 0,
    /// values past `u64::MAX` saturated.
    pub fn as_u64(self) -> u64 {
        // `as` truncates and saturates (negative to 0).
        self.0 as u64
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                // serde-json-core reads `null` as NaN here; it is not a number.
                if v.is_nan() {
                    Err(E::invalid_type(Unexpected::Unit, &self))
                } else {
                    Ok(Number(v))
                }
            }
        }
        deserializer.deserialize_f64(V)
    }
}

/// A presence flag (`"reverse": true`): `true` sets it, `false` and `null` do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<bool>::deserialize(deserializer).map(|b| Flag(b.unwrap_or(false)))
    }
}

/// Copies the still-escaped JSON string `escaped` into `out`, decoding the
/// simple escapes; `\u` escapes and non-printable bytes become `?`. Returns
/// how many bytes were written (at most `out.len()`: longer strings are truncated).
pub fn copy_lossy(escaped: &str, out: &mut [u8]) -> usize {
    let s = escaped.as_bytes();
    let mut n = 0;
    let mut i = 0;
    while let (Some(&b), Some(slot)) = (s.get(i), out.get_mut(n)) {
        let (c, step) = if b == b'\\' {
            match s.get(i + 1) {
                Some(b'u') => (b'?', 6),
                Some(&e) => (unescape_simple(e).unwrap_or(b'?'), 2),
                None => (b'?', 1),
            }
        } else {
            (b, 1)
        };
        *slot = if (0x20..0x7f).contains(&c) { c } else { b'?' };
        n += 1;
        i += step;
    }
    n
}

fn unescape_simple(e: u8) -> Option<u8> {
    Some(match e {
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;
    use alloc::string::ToString;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct A {
        a: Number,
    }

    #[test]
    fn numbers_like_cjson() {
        let n = |s: &str| from_slice::<A>(alloc::format!("{{\"a\":{s}}}").as_bytes()).map(|v| v.a);
        assert_eq!(n("0").unwrap().as_i64(), 0);
        assert_eq!(n("-12").unwrap().as_i64(), -12);
        assert_eq!(n("2.75").unwrap().as_i64(), 2);
        assert_eq!(n("-2.75").unwrap().as_i64(), -2);
        assert_eq!(n("1e3").unwrap().as_i64(), 1000);
        assert_eq!(n("1e400").unwrap().as_i64(), i64::MAX);
        assert_eq!(n("-5").unwrap().as_u64(), 0);
        assert_eq!(n("99999999999999999999").unwrap().as_i64(), i64::MAX);
        for bad in ["null", "\"1\"", "true", "-", "1e", "{}", "[]"] {
            assert!(n(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_malformed_input() {
        let bad: &[&[u8]] = &[
            b"",
            b"   ",
            b"[]",
            b"{",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"{\"a\":1} x",
            b"{\"a\":\"unterminated}",
            b"{\"a\":[1,2}",
            b"{a:1}",
        ];
        for b in bad {
            assert!(
                from_slice::<A>(b).is_err(),
                "accepted {:?}",
                alloc::string::String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn depth_is_bounded_before_parsing() {
        let mut deep = Vec::new();
        deep.extend_from_slice(b"{\"a\":1,\"b\":");
        deep.extend(core::iter::repeat_n(b'[', 100_000));
        assert_eq!(from_slice::<A>(&deep), Err(JsonError::TooDeep(42)));
        // Brackets in strings do not count; MAX_DEPTH levels are fine.
        let mut ok = Vec::new();
        ok.extend_from_slice(b"{\"a\":1,\"s\":\"[[[[\\\"[[[\",\"b\":");
        ok.extend(core::iter::repeat_n(b'[', MAX_DEPTH - 1));
        ok.extend(core::iter::repeat_n(b']', MAX_DEPTH - 1));
        ok.push(b'}');
        assert_eq!(from_slice::<A>(&ok).unwrap().a, Number(1.0));
    }

    #[test]
    fn unknown_members_of_any_shape_are_skipped() {
        let text = br#" { "x" : {"y":[1,{"z":"}"}],"w":null} , "a" : 7 , "t":true, "s":"q\"" } "#;
        assert_eq!(from_slice::<A>(text).unwrap().a, Number(7.0));
    }

    #[test]
    fn flags() {
        #[derive(Deserialize)]
        struct F {
            #[serde(default)]
            f: Flag,
        }
        let f = |s: &str| from_slice::<F>(s.as_bytes()).map(|v| v.f.0);
        assert_eq!(f(r#"{"f":true}"#), Ok(true));
        assert_eq!(f(r#"{"f":false}"#), Ok(false));
        assert_eq!(f(r#"{"f":null}"#), Ok(false));
        assert_eq!(f(r#"{}"#), Ok(false));
        assert!(f(r#"{"f":"yes"}"#).is_err());
    }

    #[test]
    fn lossy_strings() {
        let mut buf = [0u8; 32];
        let n = copy_lossy(r#"3.12\n\"x\"\u00e9é"#, &mut buf);
        assert_eq!(&buf[..n], b"3.12?\"x\"???");
        let mut small = [0u8; 3];
        assert_eq!(copy_lossy("3.12", &mut small), 3);
        assert_eq!(&small, b"3.1");
        assert_eq!(copy_lossy("ab\\", &mut buf), 3);
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            JsonError::TooDeep(7).to_string(),
            "JSON nested deeper than 32 at offset 7"
        );
        assert!(
            JsonError::Syntax(serde_json_core::de::Error::TrailingCharacters)
                .to_string()
                .starts_with("bad JSON: ")
        );
    }

    #[test]
    fn to_vec_grows() {
        let v = to_vec(&[1u32; 100][..], 1).unwrap();
        assert_eq!(v.len(), 201);
        assert!(v.starts_with(b"[1,1,"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let alphabet = b"{}[]\":,\\ tfn0123456789.-eEaruls";
        for len in 0..2000usize {
            let mut v = Vec::new();
            for _ in 0..(len % 97) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let b = (x >> 24) as u8;
                v.push(if b & 1 == 0 {
                    alphabet[usize::from(b >> 1) % alphabet.len()]
                } else {
                    b
                });
            }
            let _ = from_slice::<A>(&v);
            let _ = check_depth(&v);
        }
    }
}
