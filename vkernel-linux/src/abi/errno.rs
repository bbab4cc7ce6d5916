//! Linux errnos, as the `i64` a handler returns in `Err`; the values are
//! libc's `E*` constants.

/// `pub const E: i64 = libc::E as i64;` for each name.
macro_rules! errnos {
    ($($e:ident),* $(,)?) => {
        $(
            #[doc = concat!("`", stringify!($e), "` (libc::", stringify!($e), ").")]
            pub const $e: i64 = libc::$e as i64;
        )*
    };
}
errnos!(
    EPERM,
    ENOENT,
    ESRCH,
    EINTR,
    EIO,
    ENXIO,
    E2BIG,
    ENOEXEC,
    EBADF,
    ECHILD,
    EAGAIN,
    ENOMEM,
    EACCES,
    EFAULT,
    EEXIST,
    ENODEV,
    ENOTDIR,
    EISDIR,
    EINVAL,
    ENOTTY,
    ESPIPE,
    EROFS,
    EPIPE,
    ERANGE,
    ENAMETOOLONG,
    ENOSYS,
    ENOTEMPTY,
    EXDEV,
    ENODATA,
    ENOSPC,
    EFBIG,
    EBUSY,
    ELOOP,
    EOVERFLOW,
    EOPNOTSUPP,
    EAFNOSUPPORT,
    ENOPROTOOPT,
    EISCONN,
    ENOTCONN,
    ECONNREFUSED,
    EADDRINUSE,
    ENOBUFS,
    EPROTONOSUPPORT,
    ESOCKTNOSUPPORT,
    ETIMEDOUT,
    ENOTSOCK,
    EMSGSIZE,
    EDOM,
    EINPROGRESS,
    EADDRNOTAVAIL,
    ENETUNREACH,
    ECONNRESET,
    EALREADY,
    EDESTADDRREQ,
    EIDRM,
    ENOMSG,
);
