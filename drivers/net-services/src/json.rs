//! Minimal JSON: a bounded, allocation-free reader and a small writer, for iperf3's control messages.
//!
//! iperf3 exchanges its test parameters and results as JSON objects printed
//! by cJSON (`iperf_api.c`: `send_parameters`, `get_parameters`,
//! `send_results`, `get_results`). This module implements just enough of
//! RFC 8259 to read those objects and to write the results object:
//!
//! - [`for_each_member`] walks the members of one object, handing each key
//!   (as a [`JsonStr`]) and [`Value`] to a callback. Nested objects and arrays
//!   are validated and handed over as raw text ([`Value::Object`],
//!   [`Value::Array`]) that the callback may walk again with
//!   [`for_each_member`] / [`for_each_element`].
//! - [`Writer`] appends compact JSON to a `Vec<u8>`.
//!
//! # No-panic promise
//!
//! The reader never panics, never allocates and never recurses deeper than
//! [`MAX_DEPTH`] for any input bytes: every index is checked (`get`), every
//! violation of the grammar is a [`JsonError`]. Inputs are bounded by the
//! caller (the iperf3 server limits each message, see
//! [`crate::iperf3::MAX_PARAMS_JSON`]).

use alloc::vec::Vec;
use core::fmt::{self, Write as _};

/// Deepest nesting of objects/arrays the reader accepts (cJSON's own limit is 1000;
/// iperf3's messages nest three levels).
pub const MAX_DEPTH: usize = 32;

/// Why a JSON text was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// The input ended inside a value.
    UnexpectedEnd,
    /// A byte that the grammar does not allow here, at this offset.
    UnexpectedByte(usize),
    /// Objects/arrays nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A string holds a raw control character or a bad escape, at this offset.
    BadString(usize),
    /// A number does not follow the JSON number grammar, at this offset.
    BadNumber(usize),
    /// Non-whitespace bytes follow the top-level value.
    TrailingBytes,
    /// The top-level value is not of the kind the caller asked for.
    WrongType,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::UnexpectedEnd => f.write_str("unexpected end of JSON"),
            JsonError::UnexpectedByte(at) => write!(f, "unexpected byte at offset {at}"),
            JsonError::TooDeep => f.write_str("JSON nested too deeply"),
            JsonError::BadString(at) => write!(f, "bad JSON string at offset {at}"),
            JsonError::BadNumber(at) => write!(f, "bad JSON number at offset {at}"),
            JsonError::TrailingBytes => f.write_str("bytes after the JSON value"),
            JsonError::WrongType => f.write_str("JSON value of the wrong type"),
        }
    }
}

/// The still-escaped contents of a JSON string (between the quotes), already
/// validated against the string grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonStr<'a>(&'a [u8]);

impl<'a> JsonStr<'a> {
    /// The raw (escaped) bytes between the quotes.
    pub fn raw(&self) -> &'a [u8] {
        self.0
    }

    /// Whether the string equals `s` ignoring ASCII case, as cJSON's
    /// `cJSON_GetObjectItem` (which iperf3 uses) compares keys. Strings with
    /// escapes never match (no iperf3 key needs one).
    pub fn eq_ignore_ascii_case(&self, s: &str) -> bool {
        !self.0.contains(&b'\\') && self.0.eq_ignore_ascii_case(s.as_bytes())
    }

    /// Copies the string into `out`, decoding the simple escapes; `\u` escapes
    /// and non-printable bytes become `?`. Returns how many bytes were written
    /// (at most `out.len()`: longer strings are truncated).
    pub fn copy_lossy(&self, out: &mut [u8]) -> usize {
        let mut n = 0;
        let mut i = 0;
        while let (Some(&b), true) = (self.0.get(i), n < out.len()) {
            let (c, step) = if b == b'\\' {
                match self.0.get(i + 1) {
                    Some(b'u') => (b'?', 6),
                    Some(&e) => (unescape_simple(e).unwrap_or(b'?'), 2),
                    None => (b'?', 1),
                }
            } else {
                (b, 1)
            };
            if let Some(slot) = out.get_mut(n) {
                *slot = if (0x20..0x7f).contains(&c) { c } else { b'?' };
            }
            n += 1;
            i += step;
        }
        n
    }
}

/// A validated JSON number, kept as its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Number<'a>(&'a str);

impl Number<'_> {
    /// The number's text.
    pub fn as_str(&self) -> &str {
        self.0
    }

    /// The value as `f64` (always succeeds for grammar-valid numbers; huge
    /// exponents give infinities, which callers bound).
    pub fn as_f64(&self) -> f64 {
        self.0.parse::<f64>().unwrap_or(0.0)
    }

    /// The value as an integer the way cJSON's `valueint` gets it: integers
    /// exactly, fractions truncated toward zero, out-of-range values
    /// saturated, NaN as 0.
    pub fn as_i64(&self) -> i64 {
        match self.0.parse::<i64>() {
            Ok(v) => v,
            // `as` saturates and maps NaN to 0.
            Err(_) => self.as_f64() as i64,
        }
    }
}

/// One JSON value as handed to the member/element callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number.
    Number(Number<'a>),
    /// A string.
    String(JsonStr<'a>),
    /// A validated nested object, as its raw text including the braces.
    Object(&'a [u8]),
    /// A validated nested array, as its raw text including the brackets.
    Array(&'a [u8]),
}

impl Value<'_> {
    /// Whether the value counts as "set" for iperf3's presence flags
    /// (`"reverse": true`): anything but `null`, `false` and the number 0.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null | Value::Bool(false) => false,
            Value::Number(n) => n.as_f64() != 0.0,
            _ => true,
        }
    }
}

/// Calls `f` for every member of the JSON object `text` (which must be one
/// object, optionally surrounded by whitespace), in order. The whole text is
/// validated before the first call, so `f` never sees a prefix of bad input.
pub fn for_each_member<'a>(
    text: &'a [u8],
    mut f: impl FnMut(JsonStr<'a>, Value<'a>),
) -> Result<(), JsonError> {
    let mut r = Reader { buf: text, pos: 0 };
    r.skip_ws();
    if r.peek() != Some(b'{') {
        return if r.peek().is_none() {
            Err(JsonError::UnexpectedEnd)
        } else {
            Err(JsonError::WrongType)
        };
    }
    // Validate everything first (including trailing bytes).
    r.value(0)?;
    r.skip_ws();
    if r.pos != text.len() {
        return Err(JsonError::TrailingBytes);
    }
    // Then walk the (now known-good) members; errors here cannot happen but
    // are propagated rather than assumed away.
    let mut r = Reader { buf: text, pos: 0 };
    r.skip_ws();
    r.expect(b'{')?;
    r.skip_ws();
    if r.peek() == Some(b'}') {
        return Ok(());
    }
    loop {
        r.skip_ws();
        let key = r.string()?;
        r.skip_ws();
        r.expect(b':')?;
        r.skip_ws();
        let v = r.value(1)?;
        f(key, v);
        r.skip_ws();
        match r.next() {
            Some(b',') => continue,
            Some(b'}') => return Ok(()),
            Some(_) => return Err(JsonError::UnexpectedByte(r.pos.saturating_sub(1))),
            None => return Err(JsonError::UnexpectedEnd),
        }
    }
}

/// Calls `f` for every element of the JSON array `text`, in order (validated
/// first, like [`for_each_member`]).
pub fn for_each_element<'a>(text: &'a [u8], mut f: impl FnMut(Value<'a>)) -> Result<(), JsonError> {
    let mut r = Reader { buf: text, pos: 0 };
    r.skip_ws();
    if r.peek() != Some(b'[') {
        return if r.peek().is_none() {
            Err(JsonError::UnexpectedEnd)
        } else {
            Err(JsonError::WrongType)
        };
    }
    r.value(0)?;
    r.skip_ws();
    if r.pos != text.len() {
        return Err(JsonError::TrailingBytes);
    }
    let mut r = Reader { buf: text, pos: 0 };
    r.skip_ws();
    r.expect(b'[')?;
    r.skip_ws();
    if r.peek() == Some(b']') {
        return Ok(());
    }
    loop {
        r.skip_ws();
        let v = r.value(1)?;
        f(v);
        r.skip_ws();
        match r.next() {
            Some(b',') => continue,
            Some(b']') => return Ok(()),
            Some(_) => return Err(JsonError::UnexpectedByte(r.pos.saturating_sub(1))),
            None => return Err(JsonError::UnexpectedEnd),
        }
    }
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

/// Cursor over the input; every access is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Result<(), JsonError> {
        match self.next() {
            Some(b) if b == want => Ok(()),
            Some(_) => Err(JsonError::UnexpectedByte(self.pos - 1)),
            None => Err(JsonError::UnexpectedEnd),
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        for &w in word {
            self.expect(w)?;
        }
        Ok(())
    }

    /// One value; `depth` is the nesting level of the value being read.
    fn value(&mut self, depth: usize) -> Result<Value<'a>, JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        match self.peek() {
            None => Err(JsonError::UnexpectedEnd),
            Some(b'n') => self.literal(b"null").map(|()| Value::Null),
            Some(b't') => self.literal(b"true").map(|()| Value::Bool(true)),
            Some(b'f') => self.literal(b"false").map(|()| Value::Bool(false)),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number().map(Value::Number),
            Some(b'{') => {
                let start = self.pos;
                self.object_body(depth)?;
                Ok(Value::Object(self.buf.get(start..self.pos).unwrap_or(&[])))
            }
            Some(b'[') => {
                let start = self.pos;
                self.array_body(depth)?;
                Ok(Value::Array(self.buf.get(start..self.pos).unwrap_or(&[])))
            }
            Some(_) => Err(JsonError::UnexpectedByte(self.pos)),
        }
    }

    fn object_body(&mut self, depth: usize) -> Result<(), JsonError> {
        self.expect(b'{')?;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return match self.peek() {
                    None => Err(JsonError::UnexpectedEnd),
                    Some(_) => Err(JsonError::UnexpectedByte(self.pos)),
                };
            }
            self.string()?;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            self.value(depth + 1)?;
            self.skip_ws();
            match self.next() {
                Some(b',') => continue,
                Some(b'}') => return Ok(()),
                Some(_) => return Err(JsonError::UnexpectedByte(self.pos - 1)),
                None => return Err(JsonError::UnexpectedEnd),
            }
        }
    }

    fn array_body(&mut self, depth: usize) -> Result<(), JsonError> {
        self.expect(b'[')?;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            self.value(depth + 1)?;
            self.skip_ws();
            match self.next() {
                Some(b',') => continue,
                Some(b']') => return Ok(()),
                Some(_) => return Err(JsonError::UnexpectedByte(self.pos - 1)),
                None => return Err(JsonError::UnexpectedEnd),
            }
        }
    }

    /// A string starting at the opening quote; returns its escaped contents.
    fn string(&mut self) -> Result<JsonStr<'a>, JsonError> {
        self.expect(b'"')?;
        let start = self.pos;
        loop {
            let at = self.pos;
            match self.next() {
                None => return Err(JsonError::UnexpectedEnd),
                Some(b'"') => {
                    return Ok(JsonStr(self.buf.get(start..at).unwrap_or(&[])));
                }
                Some(b'\\') => match self.next() {
                    None => return Err(JsonError::UnexpectedEnd),
                    Some(b'u') => {
                        for _ in 0..4 {
                            match self.next() {
                                Some(h) if h.is_ascii_hexdigit() => {}
                                Some(_) => return Err(JsonError::BadString(self.pos - 1)),
                                None => return Err(JsonError::UnexpectedEnd),
                            }
                        }
                    }
                    Some(e) if unescape_simple(e).is_some() => {}
                    Some(_) => return Err(JsonError::BadString(self.pos - 1)),
                },
                Some(c) if c < 0x20 => return Err(JsonError::BadString(at)),
                // Other bytes (including UTF-8 sequences) are kept as they are;
                // nothing here interprets them.
                Some(_) => {}
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<Number<'a>, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            Some(_) => return Err(JsonError::BadNumber(start)),
            None => return Err(JsonError::UnexpectedEnd),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(JsonError::BadNumber(start));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(JsonError::BadNumber(start));
            }
            self.digits();
        }
        let raw = self.buf.get(start..self.pos).unwrap_or(&[]);
        // The grammar above only admits ASCII, so this cannot fail.
        core::str::from_utf8(raw)
            .map(Number)
            .map_err(|_| JsonError::BadNumber(start))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }
}

/// Appends compact JSON text (as `cJSON_PrintUnformatted` prints it) to a
/// `Vec<u8>`. The caller writes a well-formed sequence of calls; commas are
/// inserted automatically.
pub struct Writer<'v> {
    out: &'v mut Vec<u8>,
    /// Whether the next item at the current level needs a leading comma.
    need_comma: bool,
}

impl<'v> Writer<'v> {
    /// A writer appending to `out`.
    pub fn new(out: &'v mut Vec<u8>) -> Self {
        Writer {
            out,
            need_comma: false,
        }
    }

    fn sep(&mut self) {
        if self.need_comma {
            self.out.push(b',');
        }
        self.need_comma = true;
    }

    /// Opens an object (as a value, or as the value of the preceding [`Writer::key`]).
    pub fn begin_object(&mut self) {
        self.sep();
        self.out.push(b'{');
        self.need_comma = false;
    }

    /// Closes the innermost object.
    pub fn end_object(&mut self) {
        self.out.push(b'}');
        self.need_comma = true;
    }

    /// Opens an array.
    pub fn begin_array(&mut self) {
        self.sep();
        self.out.push(b'[');
        self.need_comma = false;
    }

    /// Closes the innermost array.
    pub fn end_array(&mut self) {
        self.out.push(b']');
        self.need_comma = true;
    }

    /// Writes an object key; the next call writes its value.
    pub fn key(&mut self, k: &str) {
        self.sep();
        self.raw_string(k.as_bytes());
        self.out.push(b':');
        self.need_comma = false;
    }

    /// Writes a string value, escaping as RFC 8259 requires (bytes >= 0x80
    /// are written as they are).
    pub fn string(&mut self, s: &[u8]) {
        self.sep();
        self.raw_string(s);
    }

    fn raw_string(&mut self, s: &[u8]) {
        self.out.push(b'"');
        for &b in s {
            match b {
                b'"' => self.out.extend_from_slice(b"\\\""),
                b'\\' => self.out.extend_from_slice(b"\\\\"),
                b'\n' => self.out.extend_from_slice(b"\\n"),
                b'\r' => self.out.extend_from_slice(b"\\r"),
                b'\t' => self.out.extend_from_slice(b"\\t"),
                c if c < 0x20 => {
                    let hex = b"0123456789abcdef";
                    self.out.extend_from_slice(b"\\u00");
                    self.out.push(hex[usize::from(c >> 4)]);
                    self.out.push(hex[usize::from(c & 0xf)]);
                }
                c => self.out.push(c),
            }
        }
        self.out.push(b'"');
    }

    /// Writes an unsigned integer.
    pub fn u64(&mut self, v: u64) {
        self.sep();
        let _ = write!(VecFmt(self.out), "{v}");
    }

    /// Writes a signed integer.
    pub fn i64(&mut self, v: i64) {
        self.sep();
        let _ = write!(VecFmt(self.out), "{v}");
    }

    /// Writes a floating-point number; NaN and infinities (not JSON) are written as 0.
    pub fn f64(&mut self, v: f64) {
        self.sep();
        if v.is_finite() {
            let _ = write!(VecFmt(self.out), "{v}");
        } else {
            self.out.push(b'0');
        }
    }

    /// Writes `true` or `false`.
    pub fn bool(&mut self, v: bool) {
        self.sep();
        self.out
            .extend_from_slice(if v { b"true" as &[u8] } else { b"false" });
    }
}

/// `core::fmt::Write` into a byte vector.
struct VecFmt<'v>(&'v mut Vec<u8>);

impl fmt::Write for VecFmt<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;

    fn members(text: &str) -> Result<Vec<(String, String)>, JsonError> {
        let mut v = Vec::new();
        for_each_member(text.as_bytes(), |k, val| {
            let key = String::from_utf8_lossy(k.raw()).into_owned();
            let val = match val {
                Value::Null => String::from("null"),
                Value::Bool(b) => alloc::format!("{b}"),
                Value::Number(n) => alloc::format!("n:{}", n.as_str()),
                Value::String(s) => alloc::format!("s:{}", String::from_utf8_lossy(s.raw())),
                Value::Object(o) => alloc::format!("o:{}", String::from_utf8_lossy(o)),
                Value::Array(a) => alloc::format!("a:{}", String::from_utf8_lossy(a)),
            };
            v.push((key, val));
        })?;
        Ok(v)
    }

    #[test]
    fn reads_iperf3_params_as_sent_by_3_12() {
        let text = r#"{"tcp":true,"omit":0,"time":10,"num":0,"blockcount":0,"parallel":4,"reverse":true,"len":131072,"pacing_timer":1000,"client_version":"3.12"}"#;
        let m = members(text).unwrap();
        assert_eq!(m.len(), 10);
        assert_eq!(m[0], ("tcp".into(), "true".into()));
        assert_eq!(m[5], ("parallel".into(), "n:4".into()));
        assert_eq!(m[9], ("client_version".into(), "s:3.12".into()));
    }

    #[test]
    fn nested_values_are_raw_and_walkable() {
        let text = br#" { "streams" : [ {"id":1,"bytes":12345678901,"jitter":0.5}, {"id":3} ] , "x":{} } "#;
        let mut streams = None;
        for_each_member(text, |k, v| {
            if k.eq_ignore_ascii_case("STREAMS") {
                streams = Some(v);
            }
        })
        .unwrap();
        let Some(Value::Array(a)) = streams else {
            panic!("streams not an array: {streams:?}")
        };
        let mut ids = vec![];
        for_each_element(a, |e| {
            let Value::Object(o) = e else { panic!() };
            for_each_member(o, |k, v| {
                if let (true, Value::Number(n)) = (k.eq_ignore_ascii_case("id"), v) {
                    ids.push(n.as_i64());
                }
            })
            .unwrap();
        })
        .unwrap();
        assert_eq!(ids, [1, 3]);
    }

    #[test]
    fn numbers() {
        let n = |s: &'static str| {
            let mut out = None;
            for_each_member(alloc::format!("{{\"a\":{s}}}").as_bytes(), |_, v| {
                if let Value::Number(n) = v {
                    out = Some((n.as_i64(), n.as_f64()));
                }
            })
            .map(|()| out.unwrap())
        };
        assert_eq!(n("0"), Ok((0, 0.0)));
        assert_eq!(n("-12"), Ok((-12, -12.0)));
        assert_eq!(n("2.75"), Ok((2, 2.75)));
        assert_eq!(n("-2.75"), Ok((-2, -2.75)));
        assert_eq!(n("1e3"), Ok((1000, 1000.0)));
        assert_eq!(n("1e400").map(|v| v.0), Ok(i64::MAX));
        assert_eq!(n("99999999999999999999").map(|v| v.0), Ok(i64::MAX));
        assert!(n("01").is_err());
        assert!(n("1.").is_err());
        assert!(n("-").is_err());
        assert!(n("1e").is_err());
        assert!(n(".5").is_err());
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
            b"{\"a\":tru}",
            b"{\"a\":\"x\x01\"}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"\\u12g4\"}",
            b"{\"a\":\"unterminated}",
            b"{\"a\":[1,2}",
            b"{a:1}",
        ];
        for b in bad {
            assert!(
                for_each_member(b, |_, _| {}).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn depth_is_bounded() {
        let mut deep = Vec::new();
        deep.extend_from_slice(b"{\"a\":");
        deep.extend(core::iter::repeat_n(b'[', 10_000));
        assert_eq!(for_each_member(&deep, |_, _| {}), Err(JsonError::TooDeep));
        let mut ok = Vec::new();
        ok.extend_from_slice(b"{\"a\":");
        ok.extend(core::iter::repeat_n(b'[', MAX_DEPTH));
        ok.extend(core::iter::repeat_n(b']', MAX_DEPTH));
        ok.push(b'}');
        assert_eq!(for_each_member(&ok, |_, _| {}), Ok(()));
    }

    #[test]
    fn callbacks_see_nothing_of_invalid_input() {
        let mut calls = 0;
        let r = for_each_member(br#"{"a":1,"b":2,"c":}"#, |_, _| calls += 1);
        assert!(r.is_err());
        assert_eq!(calls, 0);
    }

    #[test]
    fn string_helpers() {
        let mut got = None;
        for_each_member(br#"{"v":"3.12\n\"x\"\u00e9"}"#, |_, v| {
            if let Value::String(s) = v {
                got = Some(s);
            }
        })
        .unwrap();
        let s = got.unwrap();
        let mut buf = [0u8; 32];
        let n = s.copy_lossy(&mut buf);
        assert_eq!(&buf[..n], b"3.12?\"x\"?");
        let mut small = [0u8; 3];
        assert_eq!(s.copy_lossy(&mut small), 3);
        assert_eq!(&small, b"3.1");
        assert!(!s.eq_ignore_ascii_case("3.12"));
    }

    #[test]
    fn writer_output_reads_back() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.begin_object();
        w.key("cpu_util_total");
        w.f64(1.5);
        w.key("neg");
        w.i64(-1);
        w.key("nan");
        w.f64(f64::NAN);
        w.key("s");
        w.string(b"a\"b\\c\n\x01");
        w.key("streams");
        w.begin_array();
        w.begin_object();
        w.key("id");
        w.u64(1);
        w.end_object();
        w.begin_object();
        w.key("ok");
        w.bool(true);
        w.end_object();
        w.end_array();
        w.end_object();
        assert_eq!(
            core::str::from_utf8(&out).unwrap(),
            r#"{"cpu_util_total":1.5,"neg":-1,"nan":0,"s":"a\"b\\c\n\u0001","streams":[{"id":1},{"ok":true}]}"#
        );
        let m = members(core::str::from_utf8(&out).unwrap()).unwrap();
        assert_eq!(m.len(), 5);
    }
}
