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
/// SOCK_DGRAM.
pub const SOCK_DGRAM: u64 = 2;
/// SOCK_SEQPACKET.
pub const SOCK_SEQPACKET: u64 = 5;
/// AF_UNSPEC (connect: dissolve a datagram socket's association).
pub const AF_UNSPEC_FAMILY: u16 = 0;
/// MSG_OOB.
pub const MSG_OOB: u64 = 0x1;
/// MSG_PEEK.
pub const MSG_PEEK: u64 = 0x2;
/// MSG_TRUNC: return a message's real length (in flags); it was cut
/// (in msg_flags).
pub const MSG_TRUNC: u64 = 0x20;
/// MSG_DONTWAIT.
pub const MSG_DONTWAIT: u64 = 0x40;
/// MSG_WAITALL.
pub const MSG_WAITALL: u64 = 0x100;
/// MSG_NOSIGNAL.
pub const MSG_NOSIGNAL: u64 = 0x4000;
/// MSG_CMSG_CLOEXEC.
pub const MSG_CMSG_CLOEXEC: u64 = 0x4000_0000;
/// SO_RCVTIMEO (the 64-bit struct timeval form).
pub const SO_RCVTIMEO: u64 = 20;
/// SO_SNDTIMEO.
pub const SO_SNDTIMEO: u64 = 21;
