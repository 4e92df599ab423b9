//! Xen error numbers as hypercalls return them (`errno.h`).
//!
//! Source: `xen/include/public/errno.h` (Xen 4.17). A failing hypercall returns
//! the *negated* number in `rax`; [`Errno::from_ret`] splits a raw return value
//! into success or an [`Errno`]. The values match Linux's on x86 but are Xen's
//! own ABI. `EINTR` (4) and `ERESTART` (85) are Xen-internal and never reach a
//! guest, so they are not defined here.

use core::fmt;

/// `EPERM` (1): the caller lacks the privilege for this operation.
pub const EPERM: i32 = 1;
/// `ENOENT` (2): the named object does not exist.
pub const ENOENT: i32 = 2;
/// `ESRCH` (3): no such domain or vCPU.
pub const ESRCH: i32 = 3;
/// `EIO` (5): input/output error.
pub const EIO: i32 = 5;
/// `ENXIO` (6): no such device or address.
pub const ENXIO: i32 = 6;
/// `E2BIG` (7): argument list or batch too large.
pub const E2BIG: i32 = 7;
/// `ENOEXEC` (8): bad executable format.
pub const ENOEXEC: i32 = 8;
/// `EBADF` (9): bad handle.
pub const EBADF: i32 = 9;
/// `ECHILD` (10): no child.
pub const ECHILD: i32 = 10;
/// `EAGAIN` (11): temporarily unavailable; retry.
pub const EAGAIN: i32 = 11;
/// `EWOULDBLOCK` (11): alias of [`EAGAIN`].
pub const EWOULDBLOCK: i32 = 11;
/// `ENOMEM` (12): out of memory.
pub const ENOMEM: i32 = 12;
/// `EACCES` (13): access denied.
pub const EACCES: i32 = 13;
/// `EFAULT` (14): a guest buffer address could not be accessed.
pub const EFAULT: i32 = 14;
/// `EBUSY` (16): resource busy.
pub const EBUSY: i32 = 16;
/// `EEXIST` (17): already exists.
pub const EEXIST: i32 = 17;
/// `EXDEV` (18): cross-device (cross-domain) operation.
pub const EXDEV: i32 = 18;
/// `ENODEV` (19): no such device.
pub const ENODEV: i32 = 19;
/// `ENOTDIR` (20): not a directory.
pub const ENOTDIR: i32 = 20;
/// `EISDIR` (21): is a directory.
pub const EISDIR: i32 = 21;
/// `EINVAL` (22): invalid argument.
pub const EINVAL: i32 = 22;
/// `ENFILE` (23): too many open objects system-wide.
pub const ENFILE: i32 = 23;
/// `EMFILE` (24): too many open objects.
pub const EMFILE: i32 = 24;
/// `ENOSPC` (28): no space left (e.g. no free event channel port).
pub const ENOSPC: i32 = 28;
/// `EROFS` (30): read-only.
pub const EROFS: i32 = 30;
/// `EMLINK` (31): too many links.
pub const EMLINK: i32 = 31;
/// `EDOM` (33): argument out of domain.
pub const EDOM: i32 = 33;
/// `ERANGE` (34): result out of range.
pub const ERANGE: i32 = 34;
/// `EDEADLK` (35): deadlock avoided.
pub const EDEADLK: i32 = 35;
/// `EDEADLOCK` (35): alias of [`EDEADLK`].
pub const EDEADLOCK: i32 = 35;
/// `ENAMETOOLONG` (36): name too long.
pub const ENAMETOOLONG: i32 = 36;
/// `ENOLCK` (37): no locks available.
pub const ENOLCK: i32 = 37;
/// `ENOSYS` (38): operation not implemented (or not available to this guest).
pub const ENOSYS: i32 = 38;
/// `ENOTEMPTY` (39): not empty.
pub const ENOTEMPTY: i32 = 39;
/// `ENODATA` (61): no data available.
pub const ENODATA: i32 = 61;
/// `ETIME` (62): timer expired (e.g. a single-shot timeout already in the past).
pub const ETIME: i32 = 62;
/// `EBADMSG` (74): malformed message.
pub const EBADMSG: i32 = 74;
/// `EOVERFLOW` (75): value too large for the target type.
pub const EOVERFLOW: i32 = 75;
/// `EILSEQ` (84): illegal byte sequence.
pub const EILSEQ: i32 = 84;
/// `ENOTSOCK` (88): not a socket.
pub const ENOTSOCK: i32 = 88;
/// `EMSGSIZE` (90): message too large.
pub const EMSGSIZE: i32 = 90;
/// `EOPNOTSUPP` (95): operation not supported.
pub const EOPNOTSUPP: i32 = 95;
/// `EADDRINUSE` (98): address in use.
pub const EADDRINUSE: i32 = 98;
/// `EADDRNOTAVAIL` (99): address not available.
pub const EADDRNOTAVAIL: i32 = 99;
/// `ENOBUFS` (105): no buffer space.
pub const ENOBUFS: i32 = 105;
/// `EISCONN` (106): already connected.
pub const EISCONN: i32 = 106;
/// `ENOTCONN` (107): not connected.
pub const ENOTCONN: i32 = 107;
/// `ETIMEDOUT` (110): timed out.
pub const ETIMEDOUT: i32 = 110;
/// `ECONNREFUSED` (111): connection refused.
pub const ECONNREFUSED: i32 = 111;

/// Every guest-visible number with its name, aliases excluded, in ascending order.
const NAMES: &[(i32, &str)] = &[
    (EPERM, "EPERM"),
    (ENOENT, "ENOENT"),
    (ESRCH, "ESRCH"),
    (EIO, "EIO"),
    (ENXIO, "ENXIO"),
    (E2BIG, "E2BIG"),
    (ENOEXEC, "ENOEXEC"),
    (EBADF, "EBADF"),
    (ECHILD, "ECHILD"),
    (EAGAIN, "EAGAIN"),
    (ENOMEM, "ENOMEM"),
    (EACCES, "EACCES"),
    (EFAULT, "EFAULT"),
    (EBUSY, "EBUSY"),
    (EEXIST, "EEXIST"),
    (EXDEV, "EXDEV"),
    (ENODEV, "ENODEV"),
    (ENOTDIR, "ENOTDIR"),
    (EISDIR, "EISDIR"),
    (EINVAL, "EINVAL"),
    (ENFILE, "ENFILE"),
    (EMFILE, "EMFILE"),
    (ENOSPC, "ENOSPC"),
    (EROFS, "EROFS"),
    (EMLINK, "EMLINK"),
    (EDOM, "EDOM"),
    (ERANGE, "ERANGE"),
    (EDEADLK, "EDEADLK"),
    (ENAMETOOLONG, "ENAMETOOLONG"),
    (ENOLCK, "ENOLCK"),
    (ENOSYS, "ENOSYS"),
    (ENOTEMPTY, "ENOTEMPTY"),
    (ENODATA, "ENODATA"),
    (ETIME, "ETIME"),
    (EBADMSG, "EBADMSG"),
    (EOVERFLOW, "EOVERFLOW"),
    (EILSEQ, "EILSEQ"),
    (ENOTSOCK, "ENOTSOCK"),
    (EMSGSIZE, "EMSGSIZE"),
    (EOPNOTSUPP, "EOPNOTSUPP"),
    (EADDRINUSE, "EADDRINUSE"),
    (EADDRNOTAVAIL, "EADDRNOTAVAIL"),
    (ENOBUFS, "ENOBUFS"),
    (EISCONN, "EISCONN"),
    (ENOTCONN, "ENOTCONN"),
    (ETIMEDOUT, "ETIMEDOUT"),
    (ECONNREFUSED, "ECONNREFUSED"),
];

/// A positive Xen error number, e.g. [`ENOENT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Splits a raw hypercall return value: non-negative values are success,
    /// negative ones are `-errno`. Values below `-i32::MAX` (not a valid errno)
    /// map to `Errno(i32::MAX)` rather than wrapping.
    pub const fn from_ret(ret: i64) -> Result<u64, Errno> {
        if ret >= 0 {
            return Ok(ret as u64);
        }
        if ret >= -(i32::MAX as i64) {
            Err(Errno((-ret) as i32))
        } else {
            Err(Errno(i32::MAX))
        }
    }

    /// The symbolic name (`"ENOENT"`), or `None` for a number `errno.h` does
    /// not define. Aliases resolve to the primary name (`EAGAIN`, `EDEADLK`).
    pub const fn name(self) -> Option<&'static str> {
        let mut i = 0;
        while i < NAMES.len() {
            if NAMES[i].0 == self.0 {
                return Some(NAMES[i].1);
            }
            i += 1;
        }
        None
    }
}

/// Prints `ENOENT (2)`, or `errno 200` for an unknown number.
impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "errno {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn values_match_errno_h() {
        let expected: &[(i32, i32)] = &[
            (EPERM, 1),
            (ENOENT, 2),
            (ESRCH, 3),
            (EIO, 5),
            (ENXIO, 6),
            (E2BIG, 7),
            (ENOEXEC, 8),
            (EBADF, 9),
            (ECHILD, 10),
            (EAGAIN, 11),
            (EWOULDBLOCK, 11),
            (ENOMEM, 12),
            (EACCES, 13),
            (EFAULT, 14),
            (EBUSY, 16),
            (EEXIST, 17),
            (EXDEV, 18),
            (ENODEV, 19),
            (ENOTDIR, 20),
            (EISDIR, 21),
            (EINVAL, 22),
            (ENFILE, 23),
            (EMFILE, 24),
            (ENOSPC, 28),
            (EROFS, 30),
            (EMLINK, 31),
            (EDOM, 33),
            (ERANGE, 34),
            (EDEADLK, 35),
            (EDEADLOCK, 35),
            (ENAMETOOLONG, 36),
            (ENOLCK, 37),
            (ENOSYS, 38),
            (ENOTEMPTY, 39),
            (ENODATA, 61),
            (ETIME, 62),
            (EBADMSG, 74),
            (EOVERFLOW, 75),
            (EILSEQ, 84),
            (ENOTSOCK, 88),
            (EMSGSIZE, 90),
            (EOPNOTSUPP, 95),
            (EADDRINUSE, 98),
            (EADDRNOTAVAIL, 99),
            (ENOBUFS, 105),
            (EISCONN, 106),
            (ENOTCONN, 107),
            (ETIMEDOUT, 110),
            (ECONNREFUSED, 111),
        ];
        for &(got, want) in expected {
            assert_eq!(got, want);
        }
        assert_eq!(EWOULDBLOCK, EAGAIN);
        assert_eq!(EDEADLOCK, EDEADLK);
    }

    #[test]
    fn name_table_is_sorted_unique_and_complete() {
        assert!(NAMES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(NAMES.len(), 47);
        assert_eq!(Errno(EWOULDBLOCK).name(), Some("EAGAIN"));
        assert_eq!(Errno(EDEADLOCK).name(), Some("EDEADLK"));
        assert_eq!(Errno(4).name(), None);
        assert_eq!(Errno(85).name(), None);
        assert_eq!(Errno(0).name(), None);
        assert_eq!(Errno(-1).name(), None);
    }

    #[test]
    fn from_ret_splits_success_and_errors() {
        assert_eq!(Errno::from_ret(0), Ok(0));
        assert_eq!(Errno::from_ret(7), Ok(7));
        assert_eq!(Errno::from_ret(i64::MAX), Ok(i64::MAX as u64));
        assert_eq!(Errno::from_ret(-2), Err(Errno(ENOENT)));
        assert_eq!(Errno::from_ret(-38), Err(Errno(ENOSYS)));
        assert_eq!(Errno::from_ret(-(i32::MAX as i64)), Err(Errno(i32::MAX)));
        assert_eq!(Errno::from_ret(i64::MIN), Err(Errno(i32::MAX)));
    }

    #[test]
    fn display() {
        assert_eq!(Errno(ENOENT).to_string(), "ENOENT (2)");
        assert_eq!(Errno(EAGAIN).to_string(), "EAGAIN (11)");
        assert_eq!(Errno(200).to_string(), "errno 200");
    }
}
