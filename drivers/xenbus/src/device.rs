//! Device enumeration: checked parsing of `device/<class>/<id>`, `backend` and `backend-id`.
//!
//! The toolstack describes each paravirtual device of a domain under the
//! domain's home directory (`/local/domain/<domid>/`) as `device/<class>/<id>`
//! (e.g. `device/vif/0`, `device/vbd/51712`), with the nodes `backend` (the
//! absolute path of the back end's directory, conventionally
//! `/local/domain/<backend-domid>/backend/<class>/<frontend-domid>/<id>`),
//! `backend-id` (the back end's domid in decimal) and `state`. See Xen's
//! `docs/misc/xenstore-paths.pandoc`.
//!
//! Everything read from xenstore is untrusted: values are checked views that
//! borrow the input and become typed values only after validation.

use core::fmt;

use xen_abi::DomId;
use xen_abi::xenstore::XENSTORE_ABS_PATH_MAX;

/// `DOMID_FIRST_RESERVED` (`xen.h`): domids from here on are special, never a
/// real back-end domain.
pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;

/// Longest device class name accepted.
pub const MAX_CLASS_LEN: usize = 32;

/// Why a device entry, `backend` path or `backend-id` is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceError {
    /// The value is empty.
    Empty,
    /// The value is too long.
    TooLong,
    /// A byte outside the allowed set for that component.
    BadCharacter,
    /// A number with a sign, leading zero or non-digit.
    NotDecimal,
    /// A number that does not fit (or a reserved domid).
    OutOfRange,
    /// The path does not have the expected components.
    BadShape,
    /// The `backend` path names another class, device or domain than expected.
    Mismatch,
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceError::Empty => "empty value",
            DeviceError::TooLong => "value too long",
            DeviceError::BadCharacter => "byte not allowed in this component",
            DeviceError::NotDecimal => "not a plain decimal number",
            DeviceError::OutOfRange => "number out of range (or a reserved domid)",
            DeviceError::BadShape => "path does not have the expected components",
            DeviceError::Mismatch => "backend path names another class, device or domain",
        })
    }
}

/// A validated device class (`vif`, `vbd`, `console`, `9pfs`, ...): 1 to 32
/// bytes of `[a-z0-9_-]`, starting with a letter or digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceClass<'a>(&'a str);

impl<'a> DeviceClass<'a> {
    /// Checks a class name.
    pub fn parse(s: &'a str) -> Result<Self, DeviceError> {
        let b = s.as_bytes();
        let first = *b.first().ok_or(DeviceError::Empty)?;
        if b.len() > MAX_CLASS_LEN {
            return Err(DeviceError::TooLong);
        }
        let ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-';
        if !first.is_ascii_alphanumeric() || !b.iter().all(|c| ok(*c)) {
            return Err(DeviceError::BadCharacter);
        }
        Ok(Self(s))
    }

    /// The name.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

impl fmt::Display for DeviceClass<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Parses a canonical unsigned decimal (no sign, no leading zero except "0").
fn parse_decimal(b: &[u8], max: u64) -> Result<u64, DeviceError> {
    if b.is_empty() {
        return Err(DeviceError::Empty);
    }
    if !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b.first() == Some(&b'0')) {
        return Err(DeviceError::NotDecimal);
    }
    if b.len() > 10 {
        return Err(DeviceError::OutOfRange);
    }
    // At most 10 digits: no u64 overflow.
    let n = b.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    if n > max {
        return Err(DeviceError::OutOfRange);
    }
    Ok(n)
}

/// A device id: the `<id>` of `device/<class>/<id>`, a canonical decimal `u32`
/// (for vbd it encodes the disk, e.g. 51712 = xvda).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub u32);

impl DeviceId {
    /// Checks a device id string.
    pub fn parse(s: &str) -> Result<Self, DeviceError> {
        parse_decimal(s.as_bytes(), u64::from(u32::MAX)).map(|n| Self(n as u32))
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A front-end device entry `device/<class>/<id>` (relative to the domain's home).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrontendDevice<'a> {
    /// The class.
    pub class: DeviceClass<'a>,
    /// The id.
    pub id: DeviceId,
}

impl<'a> FrontendDevice<'a> {
    /// From the two names a directory listing gives (`device` lists classes,
    /// `device/<class>` lists ids).
    pub fn new(class: &'a str, id: &str) -> Result<Self, DeviceError> {
        Ok(Self {
            class: DeviceClass::parse(class)?,
            id: DeviceId::parse(id)?,
        })
    }

    /// Parses `device/<class>/<id>`.
    pub fn parse(path: &'a str) -> Result<Self, DeviceError> {
        let mut parts = path.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("device"), Some(class), Some(id), None) => Self::new(class, id),
            _ => Err(DeviceError::BadShape),
        }
    }

    /// Writes `device/<class>/<id>/<leaf>` (e.g. leaf `state`, `backend`,
    /// `backend-id`, `ring-ref`) to `w`.
    pub fn write_node(&self, w: &mut impl fmt::Write, leaf: &str) -> fmt::Result {
        write!(w, "device/{}/{}/{}", self.class, self.id, leaf)
    }
}

impl fmt::Display for FrontendDevice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device/{}/{}", self.class, self.id)
    }
}

/// Parses a domid: canonical decimal below [`DOMID_FIRST_RESERVED`].
fn parse_domid(b: &[u8]) -> Result<DomId, DeviceError> {
    parse_decimal(b, u64::from(DOMID_FIRST_RESERVED) - 1).map(|n| n as DomId)
}

/// Parses the `backend-id` node: the back end's domid, canonical decimal below
/// [`DOMID_FIRST_RESERVED`].
pub fn parse_backend_id(value: &[u8]) -> Result<DomId, DeviceError> {
    parse_domid(value)
}

/// A validated `backend` node:
/// `/local/domain/<backend-domid>/backend/<class>/<frontend-domid>/<id>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BackendPath<'a> {
    path: &'a str,
    /// The back end's domain.
    pub backend_domid: DomId,
    /// The device class.
    pub class: DeviceClass<'a>,
    /// The front end's domain (ours).
    pub frontend_domid: DomId,
    /// The device id.
    pub id: DeviceId,
}

impl<'a> BackendPath<'a> {
    /// Checks a `backend` value: ASCII xenstore path characters only
    /// (`[A-Za-z0-9/_@-]`), at most `XENSTORE_ABS_PATH_MAX` bytes, and the
    /// conventional shape.
    pub fn parse(value: &'a [u8]) -> Result<Self, DeviceError> {
        if value.is_empty() {
            return Err(DeviceError::Empty);
        }
        if value.len() > XENSTORE_ABS_PATH_MAX {
            return Err(DeviceError::TooLong);
        }
        let ok = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'_' | b'@' | b'-');
        if !value.iter().all(|c| ok(*c)) {
            return Err(DeviceError::BadCharacter);
        }
        let path = core::str::from_utf8(value).map_err(|_| DeviceError::BadCharacter)?;
        let mut p = path.split('/');
        let parts = (
            p.next(),
            p.next(),
            p.next(),
            p.next(),
            p.next(),
            p.next(),
            p.next(),
            p.next(),
            p.next(),
        );
        match parts {
            (
                Some(""),
                Some("local"),
                Some("domain"),
                Some(bdom),
                Some("backend"),
                Some(class),
                Some(fdom),
                Some(id),
                None,
            ) => Ok(Self {
                path,
                backend_domid: parse_domid(bdom.as_bytes())?,
                class: DeviceClass::parse(class)?,
                frontend_domid: parse_domid(fdom.as_bytes())?,
                id: DeviceId::parse(id)?,
            }),
            _ => Err(DeviceError::BadShape),
        }
    }

    /// The path as read.
    pub fn as_str(&self) -> &'a str {
        self.path
    }

    /// Checks the path against the device it was read from and its
    /// `backend-id` (and, if known, our own domid).
    pub fn check(
        &self,
        device: &FrontendDevice<'_>,
        backend_id: DomId,
        own_domid: Option<DomId>,
    ) -> Result<(), DeviceError> {
        let ok = self.class.as_str() == device.class.as_str()
            && self.id == device.id
            && self.backend_domid == backend_id
            && own_domid.is_none_or(|d| d == self.frontend_domid);
        if ok {
            Ok(())
        } else {
            Err(DeviceError::Mismatch)
        }
    }

    /// Writes `<backend>/<leaf>` (e.g. `state`, `feature-...`) to `w`.
    pub fn write_node(&self, w: &mut impl fmt::Write, leaf: &str) -> fmt::Result {
        write!(w, "{}/{}", self.path, leaf)
    }
}
