//! Checked parsing of the numeric xenstore nodes front ends read (`%u` values, feature flags).

use alloc::format;
use core::fmt;

use xenstore::{TxId, XsError};

use crate::error::SetupError;
use crate::platform::XenstoreAccess;

/// Why a numeric node (feature flag, order, port, gref, size) is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NumberError {
    /// Empty value.
    Empty,
    /// Not a canonical unsigned decimal (sign, leading zero, other bytes).
    NotDecimal,
    /// Does not fit in the type.
    TooLarge,
}

impl fmt::Display for NumberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NumberError::Empty => "empty value",
            NumberError::NotDecimal => "not a canonical unsigned decimal",
            NumberError::TooLarge => "number too large",
        })
    }
}

/// Parses a canonical unsigned decimal `u64` (no sign, no leading zeros except
/// `"0"`, no whitespace) as xenstore nodes written with `%u`/`%llu` look.
pub fn parse_u64(value: &[u8]) -> Result<u64, NumberError> {
    if value.is_empty() {
        return Err(NumberError::Empty);
    }
    if !value.iter().all(u8::is_ascii_digit) || (value.len() > 1 && value.first() == Some(&b'0')) {
        return Err(NumberError::NotDecimal);
    }
    value.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(NumberError::TooLarge)
    })
}

/// [`parse_u64`] for values that must fit in 32 bits.
pub fn parse_u32(value: &[u8]) -> Result<u32, NumberError> {
    parse_u64(value).and_then(|n| u32::try_from(n).map_err(|_| NumberError::TooLarge))
}

/// Parses a boolean feature node: any canonical decimal, non-zero meaning
/// "on" (back ends write `"0"`/`"1"`; Linux reads them with `%u`).
pub fn parse_feature(value: &[u8]) -> Result<bool, NumberError> {
    parse_u32(value).map(|n| n != 0)
}

/// Reads the optional boolean feature node `<dir>/<name>`: absent is off.
pub fn read_flag(
    xs: &mut impl XenstoreAccess,
    dir: &str,
    name: &'static str,
) -> Result<bool, SetupError> {
    match xs.read(TxId::NONE, &format!("{dir}/{name}")) {
        Ok(v) => parse_feature(&v).map_err(|err| SetupError::BadFeature { name, err }),
        Err(XsError::Enoent) => Ok(false),
        Err(e) => Err(SetupError::Xenstore(e)),
    }
}

/// Reads the optional numeric node `<dir>/<name>`, `default` when absent.
pub fn read_u64_or(
    xs: &mut impl XenstoreAccess,
    dir: &str,
    name: &'static str,
    default: u64,
) -> Result<u64, SetupError> {
    match xs.read(TxId::NONE, &format!("{dir}/{name}")) {
        Ok(v) => parse_u64(&v).map_err(|err| SetupError::BadFeature { name, err }),
        Err(XsError::Enoent) => Ok(default),
        Err(e) => Err(SetupError::Xenstore(e)),
    }
}

/// [`read_u64_or`] for values that must fit in 32 bits.
pub fn read_u32_or(
    xs: &mut impl XenstoreAccess,
    dir: &str,
    name: &'static str,
    default: u32,
) -> Result<u32, SetupError> {
    let n = read_u64_or(xs, dir, name, u64::from(default))?;
    u32::try_from(n).map_err(|_| SetupError::BadFeature {
        name,
        err: NumberError::TooLarge,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_canonical_decimals() {
        assert_eq!(parse_u32(b"0"), Ok(0));
        assert_eq!(parse_u32(b"4294967295"), Ok(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), Err(NumberError::TooLarge));
        assert_eq!(parse_u64(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_u64(b"18446744073709551616"),
            Err(NumberError::TooLarge)
        );
        assert_eq!(parse_u32(b""), Err(NumberError::Empty));
        for bad in [&b"01"[..], b"-1", b"+1", b" 1", b"1 ", b"0x1", b"1\0"] {
            assert_eq!(parse_u32(bad), Err(NumberError::NotDecimal), "{bad:?}");
        }
        assert_eq!(parse_feature(b"2"), Ok(true));
        assert_eq!(parse_feature(b"0"), Ok(false));
        assert_eq!(
            alloc::string::ToString::to_string(&NumberError::NotDecimal),
            "not a canonical unsigned decimal"
        );
    }
}
