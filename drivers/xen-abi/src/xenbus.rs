//! Xenbus device states (`io/xenbus.h`, `enum xenbus_state`).
//!
//! Each end of a split device keeps its state in its xenstore directory under the
//! key `state`, as a decimal string (`"4"` for Connected). Values read from the
//! peer are untrusted: [`XenbusState::parse`] is a checked parse that accepts only
//! a plain decimal number in `0..=8`.
//!
//! No-panic promise: the functions here never panic, for any input bytes.

/// `enum xenbus_state`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum XenbusState {
    /// `XenbusStateUnknown` (0): no state yet, or the node could not be read.
    Unknown = 0,
    /// `XenbusStateInitialising` (1): early initialisation in progress.
    Initialising = 1,
    /// `XenbusStateInitWait` (2): finished early initialisation, waiting for
    /// information from the peer or the hotplug scripts (back ends use it to say
    /// "my features are published, set up your rings").
    InitWait = 2,
    /// `XenbusStateInitialised` (3): initialised, waiting for a connection from the peer.
    Initialised = 3,
    /// `XenbusStateConnected` (4).
    Connected = 4,
    /// `XenbusStateClosing` (5): being closed because of an error or an unplug.
    Closing = 5,
    /// `XenbusStateClosed` (6).
    Closed = 6,
    /// `XenbusStateReconfiguring` (7): the device is being reconfigured.
    Reconfiguring = 7,
    /// `XenbusStateReconfigured` (8).
    Reconfigured = 8,
}

/// Why a xenstore `state` value is not a [`XenbusState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateParseError {
    /// The value is empty.
    Empty,
    /// The value contains a byte that is not an ASCII digit (signs, spaces and
    /// NULs included).
    NotDecimal,
    /// The value is a number, but not one of the defined states (or absurdly long).
    OutOfRange,
}

impl XenbusState {
    /// All states, in numeric order.
    pub const ALL: [XenbusState; 9] = [
        Self::Unknown,
        Self::Initialising,
        Self::InitWait,
        Self::Initialised,
        Self::Connected,
        Self::Closing,
        Self::Closed,
        Self::Reconfiguring,
        Self::Reconfigured,
    ];

    /// The numeric value.
    pub const fn as_u32(self) -> u32 {
        self as u32
    }

    /// The state with numeric value `v`, if defined.
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Unknown,
            1 => Self::Initialising,
            2 => Self::InitWait,
            3 => Self::Initialised,
            4 => Self::Connected,
            5 => Self::Closing,
            6 => Self::Closed,
            7 => Self::Reconfiguring,
            8 => Self::Reconfigured,
            _ => return None,
        })
    }

    /// The decimal string to write to xenstore (`"0"`..`"8"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "0",
            Self::Initialising => "1",
            Self::InitWait => "2",
            Self::Initialised => "3",
            Self::Connected => "4",
            Self::Closing => "5",
            Self::Closed => "6",
            Self::Reconfiguring => "7",
            Self::Reconfigured => "8",
        }
    }

    /// Checked parse of a xenstore `state` value: ASCII digits only (leading zeros
    /// allowed, at most 10 digits), value in `0..=8`.
    pub fn parse(value: &[u8]) -> Result<Self, StateParseError> {
        if value.is_empty() {
            return Err(StateParseError::Empty);
        }
        if !value.iter().all(u8::is_ascii_digit) {
            return Err(StateParseError::NotDecimal);
        }
        if value.len() > 10 {
            return Err(StateParseError::OutOfRange);
        }
        let mut n: u64 = 0;
        for d in value {
            // At most 10 digits: n < 10^10 never overflows a u64.
            n = n * 10 + u64::from(d - b'0');
        }
        u32::try_from(n)
            .ok()
            .and_then(Self::from_u32)
            .ok_or(StateParseError::OutOfRange)
    }
}

impl TryFrom<u32> for XenbusState {
    type Error = StateParseError;

    fn try_from(v: u32) -> Result<Self, Self::Error> {
        Self::from_u32(v).ok_or(StateParseError::OutOfRange)
    }
}

impl core::fmt::Display for XenbusState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_xenbus_h() {
        for (i, s) in XenbusState::ALL.iter().enumerate() {
            assert_eq!(s.as_u32() as usize, i);
            assert_eq!(XenbusState::from_u32(i as u32), Some(*s));
            assert_eq!(XenbusState::parse(s.as_str().as_bytes()), Ok(*s));
        }
        assert_eq!(XenbusState::Connected.as_u32(), 4);
        assert_eq!(XenbusState::Closed.as_u32(), 6);
        assert_eq!(XenbusState::Reconfigured.as_u32(), 8);
        assert_eq!(XenbusState::from_u32(9), None);
        assert_eq!(XenbusState::try_from(9), Err(StateParseError::OutOfRange));
    }

    #[test]
    fn parse_rejects_garbage() {
        use StateParseError::*;
        assert_eq!(XenbusState::parse(b""), Err(Empty));
        assert_eq!(XenbusState::parse(b"9"), Err(OutOfRange));
        assert_eq!(XenbusState::parse(b"10"), Err(OutOfRange));
        assert_eq!(XenbusState::parse(b"4294967300"), Err(OutOfRange));
        assert_eq!(XenbusState::parse(b"99999999999999999999"), Err(OutOfRange));
        assert_eq!(XenbusState::parse(b"-1"), Err(NotDecimal));
        assert_eq!(XenbusState::parse(b"+4"), Err(NotDecimal));
        assert_eq!(XenbusState::parse(b" 4"), Err(NotDecimal));
        assert_eq!(XenbusState::parse(b"4\0"), Err(NotDecimal));
        assert_eq!(XenbusState::parse(b"4\n"), Err(NotDecimal));
        assert_eq!(XenbusState::parse(b"0x4"), Err(NotDecimal));
        assert_eq!(XenbusState::parse(b"Connected"), Err(NotDecimal));
        assert_eq!(XenbusState::parse(&[0xff, 0xfe]), Err(NotDecimal));
        assert_eq!(XenbusState::parse(b"04"), Ok(XenbusState::Connected));
        assert_eq!(XenbusState::parse(b"0000000006"), Ok(XenbusState::Closed));
    }

    #[test]
    fn parse_never_panics_on_short_inputs() {
        // Every 0..=2 byte input: no panic, and any success round-trips.
        let mut buf = [0u8; 2];
        for len in 0..=2 {
            for v in 0..(1u32 << (8 * len)) {
                for (i, b) in buf.iter_mut().enumerate().take(len) {
                    *b = (v >> (8 * i)) as u8;
                }
                if let Ok(s) = XenbusState::parse(&buf[..len]) {
                    let digits = &buf[..len];
                    let n = digits
                        .iter()
                        .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
                    assert_eq!(s.as_u32(), n);
                }
            }
        }
    }
}
