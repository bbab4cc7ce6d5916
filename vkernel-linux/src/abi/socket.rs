//! Socket constants: address families, socket types and their flags.

/// AF_UNIX.
pub const AF_UNIX: u64 = 1;
/// AF_UNIX as a `sa_family_t`.
pub const AF_UNIX_FAMILY: u16 = 1;
/// AF_INET.
pub const AF_INET: u64 = 2;
/// AF_INET6.
pub const AF_INET6: u64 = 10;
/// SOCK_STREAM.
pub const SOCK_STREAM: u64 = 1;
/// SOCK_NONBLOCK (O_NONBLOCK).
pub const SOCK_NONBLOCK: u64 = 0o4000;
/// SOCK_CLOEXEC (O_CLOEXEC).
pub const SOCK_CLOEXEC: u64 = 0o2000000;
/// SOL_SOCKET.
pub const SOL_SOCKET: u64 = 1;
