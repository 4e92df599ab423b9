//! Cross-checks `xen_abi::errno` against Linux's x86 errno values (via `libc`),
//! which `xen/include/public/errno.h` says its numbers originate from.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use xen_abi::errno as xe;

#[test]
fn errno_values_match_linux_x86() {
    let pairs = [
        (xe::EPERM, libc::EPERM),
        (xe::ENOENT, libc::ENOENT),
        (xe::ESRCH, libc::ESRCH),
        (xe::EIO, libc::EIO),
        (xe::ENXIO, libc::ENXIO),
        (xe::E2BIG, libc::E2BIG),
        (xe::ENOEXEC, libc::ENOEXEC),
        (xe::EBADF, libc::EBADF),
        (xe::ECHILD, libc::ECHILD),
        (xe::EAGAIN, libc::EAGAIN),
        (xe::EWOULDBLOCK, libc::EWOULDBLOCK),
        (xe::ENOMEM, libc::ENOMEM),
        (xe::EACCES, libc::EACCES),
        (xe::EFAULT, libc::EFAULT),
        (xe::EBUSY, libc::EBUSY),
        (xe::EEXIST, libc::EEXIST),
        (xe::EXDEV, libc::EXDEV),
        (xe::ENODEV, libc::ENODEV),
        (xe::ENOTDIR, libc::ENOTDIR),
        (xe::EISDIR, libc::EISDIR),
        (xe::EINVAL, libc::EINVAL),
        (xe::ENFILE, libc::ENFILE),
        (xe::EMFILE, libc::EMFILE),
        (xe::ENOSPC, libc::ENOSPC),
        (xe::EROFS, libc::EROFS),
        (xe::EMLINK, libc::EMLINK),
        (xe::EDOM, libc::EDOM),
        (xe::ERANGE, libc::ERANGE),
        (xe::EDEADLK, libc::EDEADLK),
        (xe::EDEADLOCK, libc::EDEADLOCK),
        (xe::ENAMETOOLONG, libc::ENAMETOOLONG),
        (xe::ENOLCK, libc::ENOLCK),
        (xe::ENOSYS, libc::ENOSYS),
        (xe::ENOTEMPTY, libc::ENOTEMPTY),
        (xe::ENODATA, libc::ENODATA),
        (xe::ETIME, libc::ETIME),
        (xe::EBADMSG, libc::EBADMSG),
        (xe::EOVERFLOW, libc::EOVERFLOW),
        (xe::EILSEQ, libc::EILSEQ),
        (xe::ENOTSOCK, libc::ENOTSOCK),
        (xe::EMSGSIZE, libc::EMSGSIZE),
        (xe::EOPNOTSUPP, libc::EOPNOTSUPP),
        (xe::EADDRINUSE, libc::EADDRINUSE),
        (xe::EADDRNOTAVAIL, libc::EADDRNOTAVAIL),
        (xe::ENOBUFS, libc::ENOBUFS),
        (xe::EISCONN, libc::EISCONN),
        (xe::ENOTCONN, libc::ENOTCONN),
        (xe::ETIMEDOUT, libc::ETIMEDOUT),
        (xe::ECONNREFUSED, libc::ECONNREFUSED),
    ];
    for (ours, linux) in pairs {
        assert_eq!(ours, linux);
        assert_eq!(xe::Errno::from_ret(-i64::from(ours)), Err(xe::Errno(linux)));
    }
}
