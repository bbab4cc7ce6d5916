//! Byte streams between vprocs: reading and writing pipes (shared by
//! pipes, FIFOs and AF_UNIX stream sockets, whose two directions are
//! pipes), eventfd reads and writes, and the socket calls: socketpair,
//! send/recv and their msg forms, shutdown, socket options and names.
//!
//! Sockets are AF_UNIX ([`crate::files::Socket`]): made by socketpair, or
//! named ([`super::unix`]: bind, listen, connect, accept). The calls here
//! serve streams themselves and hand datagram and seqpacket sockets'
//! messages to [`super::dgram`]. AF_INET is not served yet
//! (EAFNOSUPPORT).

use std::time::Duration;

use super::errno::*;
use super::table::Handler;
use super::{int, R};
use crate::abi::socket::{
    MSG_CMSG_CLOEXEC, MSG_DONTWAIT, MSG_NOSIGNAL, MSG_OOB, MSG_PEEK, MSG_TRUNC, MSG_WAITALL,
};
use crate::files::{
    self, Dgram, EventFd, FileKind, OpenFile, Pipe, Shared, SockState, SockType, Socket, UnixStream,
};
use crate::fs::event::EventFdError;
use crate::signal::{self, SigInfo};
use crate::Vproc;

/// The largest single transfer (as read/write cap theirs).
const MAX_IO: usize = 1 << 24;

/// What came along with received bytes (SCM_RIGHTS' files).
pub(super) type Attached = Vec<Box<dyn std::any::Any + Send>>;

/// What one receive got: the call's return value, whether the message was
/// cut short (MSG_TRUNC in msg_flags), the sender's name, and what came
/// along (SCM_RIGHTS).
struct Got(i64, bool, Option<Vec<u8>>, Attached);

/// What a send or receive needs to know of its socket first.
pub(super) struct SockKind {
    ty: SockType,
    family: u16,
    rcvtimeo: Option<Duration>,
    sndtimeo: Option<Duration>,
}

/// A stream socket's parts for one send or receive.
struct Parts {
    rx: Shared<Pipe>,
    tx: Shared<Pipe>,
    nonblock: bool,
    shut_rd: bool,
    shut_wr: bool,
}

/// What sendmsg/recvmsg use of a struct msghdr.
struct MsgHdr {
    /// msg_name.
    name: u64,
    /// msg_namelen.
    namelen: u64,
    /// The data buffers.
    iov: Vec<(u64, usize)>,
    /// msg_control.
    control: u64,
    /// msg_controllen.
    controllen: u64,
}

impl Vproc {
    /// The socket calls: `(number, handler)` for the syscall table.
    pub(super) const SOCKET_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_socket, |v, _nr, a| v.sys_socket(a[0], a[1], a[2])),
        (libc::SYS_socketpair, |v, _nr, a| {
            v.sys_socketpair(a[0], a[1], a[2], a[3])
        }),
        (libc::SYS_sendto, |v, _nr, a| {
            v.sys_sendto(
                int(a[0]),
                a[1],
                usize::try_from(a[2]).unwrap_or(usize::MAX),
                a[3],
                a[4],
                a[5],
            )
        }),
        (libc::SYS_recvfrom, |v, _nr, a| {
            v.sys_recvfrom(
                int(a[0]),
                (a[1], usize::try_from(a[2]).unwrap_or(usize::MAX)),
                a[3],
                a[4],
                a[5],
            )
        }),
        (libc::SYS_sendmsg, |v, _nr, a| {
            v.sys_sendmsg(int(a[0]), a[1], a[2])
        }),
        (libc::SYS_recvmsg, |v, _nr, a| {
            v.sys_recvmsg(int(a[0]), a[1], a[2])
        }),
        (libc::SYS_shutdown, |v, _nr, a| {
            v.sys_shutdown(int(a[0]), a[1])
        }),
        (libc::SYS_getsockopt, |v, _nr, a| {
            v.sys_getsockopt(int(a[0]), a[1], a[2], a[3], a[4])
        }),
        (libc::SYS_setsockopt, |v, _nr, a| {
            v.sys_setsockopt(int(a[0]), a[1], a[2], a[3], a[4])
        }),
        (libc::SYS_getsockname, |v, _nr, a| {
            v.sys_getsockname(int(a[0]), a[1], a[2])
        }),
        (libc::SYS_getpeername, |v, _nr, a| {
            v.sys_getpeername(int(a[0]), a[1], a[2])
        }),
        (libc::SYS_connect, |v, _nr, a| {
            v.sys_connect(int(a[0]), a[1], a[2])
        }),
        (libc::SYS_bind, |v, _nr, a| {
            v.sys_bind(int(a[0]), a[1], a[2])
        }),
        (libc::SYS_listen, |v, _nr, a| v.listen_call(a)),
        (libc::SYS_accept, |v, _nr, a| {
            v.sys_accept(int(a[0]), a[1], a[2])
        }),
        (libc::SYS_accept4, |v, _nr, a| {
            v.sys_accept4(int(a[0]), a[1], a[2], a[3])
        }),
        (libc::SYS_sendmmsg, |v, _nr, a| {
            v.sys_mmsg(int(a[0]), a[1], a[2], a[3], true)
        }),
        (libc::SYS_recvmmsg, |v, _nr, a| {
            v.sys_mmsg(int(a[0]), a[1], a[2], a[3], false)
        }),
    ];

    /// The socket `fd` is: EBADF when not open, ENOTSOCK when not a
    /// socket.
    pub(super) fn socket_of(&self, fd: i64) -> Result<Shared<OpenFile>, i64> {
        let file = self.fds.get(fd)?.file.clone();
        if !matches!(file.borrow().kind, FileKind::Socket(_)) {
            return Err(ENOTSOCK);
        }
        Ok(file)
    }

    /// socketpair(domain, type, protocol, sv).
    fn sys_socketpair(&mut self, domain: u64, ty: u64, protocol: u64, sv: u64) -> R {
        let (ty, st, cloexec) = self.socket_type(domain, ty, protocol, true)?;
        let (a, b) = if ty == SockType::Dgram {
            let (a, b) = Dgram::pair();
            (Socket::dgram(a), Socket::dgram(b))
        } else {
            // Each end's peer is this process (SO_PEERCRED).
            let (mut a, mut b) = UnixStream::pair_of(ty);
            a.peer_cred = self.cred();
            b.peer_cred = self.cred();
            (Socket::connected_of(ty, a), Socket::connected_of(ty, b))
        };
        let fa = OpenFile::new(FileKind::Socket(a), st, b"socket:");
        let fb = OpenFile::new(FileKind::Socket(b), st, b"socket:");
        self.install_pair(fa, fb, cloexec, sv)
    }

    /// Socket `fd`'s type, family, SO_RCVTIMEO and SO_SNDTIMEO.
    pub(super) fn sock_kind(&self, fd: i64) -> Result<SockKind, i64> {
        let file = self.socket_of(fd)?;
        let f = file.borrow();
        match &f.kind {
            FileKind::Socket(s) => Ok(SockKind {
                ty: s.ty,
                family: s.family,
                rcvtimeo: s.rcvtimeo,
                sndtimeo: s.sndtimeo,
            }),
            _ => Err(ENOTSOCK),
        }
    }

    /// Send `data` on socket `fd` (to `to`, a datagram socket's
    /// destination), with SO_SNDTIMEO.
    pub(super) fn sock_send(
        &mut self,
        fd: i64,
        data: &[u8],
        flags: u64,
        to: Option<super::unix::Addr>,
        mut passed: super::scm::Passed,
    ) -> R {
        let SockKind { ty, sndtimeo, .. } = self.sock_kind(fd)?;
        let deadline = self.sock_deadline(sndtimeo);
        // A message always carries its sender's credentials; a stream's
        // bytes when the sender asks (SO_PASSCRED).
        if ty != SockType::Stream || self.passcred_of(fd)?.is_some() {
            passed.cred = passed.cred.or(Some(self.cred()));
        }
        let attach =
            (!passed.is_empty()).then(|| Box::new(passed) as Box<dyn std::any::Any + Send>);
        let r = if ty == SockType::Stream {
            self.stream_send(fd, data, flags, attach)
        } else {
            self.msg_send(fd, data, flags, to, attach)
        };
        self.sock_timed(deadline, r)
    }

    /// Socket `fd`'s SO_PASSCRED: None when off, else the credentials a
    /// receive reports when the sender's are not known (a stream's peer
    /// at connect; else pid 0 and the overflow ids, as Linux).
    fn passcred_of(&self, fd: i64) -> Result<Option<[i32; 3]>, i64> {
        let file = self.socket_of(fd)?;
        let f = file.borrow();
        let FileKind::Socket(s) = &f.kind else {
            return Err(ENOTSOCK);
        };
        Ok(s.passcred.then(|| match &s.state {
            SockState::Connected(c) if s.ty == SockType::Stream => c.peer_cred,
            _ => [0, 65534, 65534],
        }))
    }

    /// Receive from message socket `fd` into the user buffers `bufs`, with
    /// SO_RCVTIMEO: the return value (the whole length with MSG_TRUNC),
    /// whether the message was cut, its sender and what came along.
    fn sock_recv_msg(&mut self, fd: i64, bufs: &[(u64, usize)], flags: u64) -> Result<Got, i64> {
        let deadline = self.sock_deadline(self.sock_kind(fd)?.rcvtimeo);
        let room: usize = bufs.iter().map(|b| b.1).sum::<usize>().min(MAX_IO);
        let r = match self.msg_recv(fd, flags) {
            Ok(r) => r,
            Err(e) => {
                return self
                    .sock_timed(deadline, Err(e))
                    .map(|_| Got(0, false, None, Vec::new()))
            }
        };
        let len = r.msg.data.len();
        let n = len.min(room);
        if let Err(e) = self.scatter(bufs, 0, &r.msg.data[..n]) {
            r.put_back();
            return Err(e);
        }
        let m = r.msg;
        let ret = if flags & MSG_TRUNC != 0 { len } else { n };
        Ok(Got(
            ret as i64,
            n < len,
            m.from,
            m.attach.into_iter().collect(),
        ))
    }

    /// Receive from socket `fd` into `bufs` with SO_RCVTIMEO (streams and
    /// messages alike): (return value, cut, sender, what came along).
    fn sock_recv(&mut self, fd: i64, bufs: &[(u64, usize)], flags: u64) -> Result<Got, i64> {
        let SockKind {
            ty,
            rcvtimeo: timeo,
            ..
        } = self.sock_kind(fd)?;
        if ty != SockType::Stream {
            return self.sock_recv_msg(fd, bufs, flags);
        }
        let deadline = self.sock_deadline(timeo);
        let mut got = Vec::new();
        let r = self.stream_recv(fd, bufs, flags, &mut got);
        let n = self.sock_timed(deadline, r)?;
        Ok(Got(n, false, None, got))
    }

    /// A write to a pipe or socket nobody reads: SIGPIPE (unless
    /// `nosignal`), then the bytes a long write already moved, or EPIPE.
    pub(super) fn broken_pipe(&mut self, done: usize, signal: bool) -> R {
        if signal {
            self.queue_signal(SigInfo {
                signo: signal::SIGPIPE,
                pid: self.pid,
                ..Default::default()
            });
        }
        if done > 0 {
            Ok(done as i64)
        } else {
            Err(EPIPE)
        }
    }

    /// Write `data` into pipe `p`: everything (in as many rounds as the
    /// pipe needs, `call.progress` counting earlier rounds), or what fits
    /// when `nonblock`; writes up to PIPE_BUF are atomic. `sigpipe`: a
    /// pipe nobody reads raises SIGPIPE.
    pub(super) fn pipe_send(
        &mut self,
        p: &Shared<Pipe>,
        nonblock: bool,
        data: &[u8],
        sigpipe: bool,
    ) -> R {
        self.pipe_send_with(p, nonblock, data, sigpipe, None)
    }

    /// [`Vproc::pipe_send`], with `attach` going along with the first
    /// byte this call writes (SCM_RIGHTS).
    pub(super) fn pipe_send_with(
        &mut self,
        p: &Shared<Pipe>,
        nonblock: bool,
        data: &[u8],
        sigpipe: bool,
        mut attach: Option<Box<dyn std::any::Any + Send>>,
    ) -> R {
        let k = self.kernel()?;
        let mut pipe = p.borrow_mut();
        let done = self.call.progress.min(data.len());
        if pipe.readers == 0 {
            drop(pipe);
            return self.broken_pipe(done, sigpipe);
        }
        let rest = &data[done..];
        let room = pipe.capacity.saturating_sub(pipe.buf.len());
        let fits = if rest.len() <= files::PIPE_BUF {
            room >= rest.len()
        } else {
            room > 0
        };
        if !fits && !rest.is_empty() {
            if nonblock {
                return if done > 0 {
                    Ok(done as i64)
                } else {
                    Err(EAGAIN)
                };
            }
            pipe.wait(self.pid, k);
            drop(pipe);
            return self.block();
        }
        let n = room.min(rest.len());
        if done == 0 && n > 0 {
            if let Some(a) = attach.take() {
                let at = pipe.buf.len();
                pipe.attached.push_back((at, n, a));
            }
        }
        pipe.buf.extend(&rest[..n]);
        let w = pipe.take_waiters();
        let done = done + n;
        let more = done < data.len() && !nonblock;
        if more {
            pipe.wait(self.pid, k);
        }
        drop(pipe);
        files::wake_all(w);
        if more {
            self.call.progress = done;
            return self.block();
        }
        Ok(done as i64)
    }

    /// Read from pipe `p` into `data`: what is there (0 at EOF), waiting
    /// for something unless `nonblock`. Files a socket's peer sent along
    /// (SCM_RIGHTS) are closed: a plain read does not take them.
    pub(super) fn pipe_recv(
        &mut self,
        p: &Shared<Pipe>,
        nonblock: bool,
        data: &mut [u8],
    ) -> Result<usize, i64> {
        self.pipe_recv_attached(p, nonblock, data).map(|(n, _)| n)
    }

    /// [`Vproc::pipe_recv`], returning what was sent along with the bytes
    /// read; a read stops before a byte something else is attached to.
    pub(super) fn pipe_recv_attached(
        &mut self,
        p: &Shared<Pipe>,
        nonblock: bool,
        data: &mut [u8],
    ) -> Result<(usize, Attached), i64> {
        let mut pipe = p.borrow_mut();
        if pipe.buf.is_empty() {
            if pipe.writers == 0 || data.is_empty() {
                return Ok((0, Vec::new()));
            }
            if nonblock {
                return Err(EAGAIN);
            }
            let k = self.kernel()?;
            pipe.wait(self.pid, k);
            drop(pipe);
            return self.block().map(|_| (0, Vec::new()));
        }
        let n = data.len().min(pipe.readable_run());
        // Copy out the ring's two halves, then drop the bytes read.
        let (a, b) = pipe.buf.as_slices();
        let k = a.len().min(n);
        data[..k].copy_from_slice(&a[..k]);
        data[k..n].copy_from_slice(&b[..n - k]);
        pipe.buf.drain(..n);
        let got = pipe.consumed(n);
        let w = pipe.take_waiters();
        drop(pipe);
        files::wake_all(w);
        Ok((n, got))
    }

    /// read(2) of an eventfd: 8 bytes, the counter (or 1).
    pub(super) fn eventfd_read(
        &mut self,
        e: &Shared<EventFd>,
        nonblock: bool,
        data: &mut [u8],
    ) -> Result<usize, i64> {
        if data.len() < 8 {
            return Err(EINVAL);
        }
        let mut ev = e.borrow_mut();
        match ev.read() {
            Ok(v) => {
                data[..8].copy_from_slice(&v.to_le_bytes());
                let w = ev.take_waiters();
                drop(ev);
                files::wake_all(w);
                Ok(8)
            }
            Err(_) if nonblock => Err(EAGAIN),
            Err(_) => {
                let k = self.kernel()?;
                ev.wait(self.pid, k);
                drop(ev);
                self.block().map(|_| 0)
            }
        }
    }

    /// write(2) of an eventfd: adds the 8-byte value.
    pub(super) fn eventfd_write(&mut self, e: &Shared<EventFd>, nonblock: bool, data: &[u8]) -> R {
        let Some(b) = data.get(..8) else {
            return Err(EINVAL);
        };
        let v = u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let mut ev = e.borrow_mut();
        match ev.write(v) {
            Ok(()) => {
                let w = ev.take_waiters();
                drop(ev);
                files::wake_all(w);
                Ok(8)
            }
            Err(EventFdError::Invalid) => Err(EINVAL),
            Err(EventFdError::WouldBlock) if nonblock => Err(EAGAIN),
            Err(EventFdError::WouldBlock) => {
                let k = self.kernel()?;
                ev.wait(self.pid, k);
                drop(ev);
                self.block()
            }
        }
    }

    /// The socket's two pipes, whether it may block, and its shutdowns.
    fn stream_parts(&self, fd: i64, flags: u64) -> Result<Parts, i64> {
        let file = self.socket_of(fd)?;
        let f = file.borrow();
        let FileKind::Socket(sk) = &f.kind else {
            return Err(ENOTSOCK);
        };
        let Some(s) = sk.stream() else {
            return Err(ENOTCONN);
        };
        let nonblock = f.flags & files::O_NONBLOCK != 0 || flags & MSG_DONTWAIT != 0;
        Ok(Parts {
            rx: s.rx.clone(),
            tx: s.tx.clone(),
            nonblock,
            shut_rd: s.shut_rd,
            shut_wr: s.shut_wr,
        })
    }

    /// Send `data` on socket `fd` with MSG_* `flags`.
    fn stream_send(
        &mut self,
        fd: i64,
        data: &[u8],
        flags: u64,
        attach: Option<Box<dyn std::any::Any + Send>>,
    ) -> R {
        if flags & MSG_OOB != 0 {
            return Err(EOPNOTSUPP);
        }
        let Parts {
            tx,
            nonblock,
            shut_wr,
            ..
        } = self.stream_parts(fd, flags)?;
        let signal = flags & MSG_NOSIGNAL == 0;
        if shut_wr {
            return self.broken_pipe(0, signal);
        }
        if let Some(r) = self.tcp_send_into_void(fd, data.len()) {
            return r;
        }
        self.pipe_send_with(&tx, nonblock, data, signal, attach)
    }

    /// Receive up to `len` bytes from socket `fd` with MSG_* `flags` into
    /// the user buffers `bufs`: MSG_PEEK leaves them queued, MSG_WAITALL
    /// waits for all `len` (or EOF, or a signal).
    fn stream_recv(&mut self, fd: i64, bufs: &[(u64, usize)], flags: u64, out: &mut Attached) -> R {
        if flags & MSG_OOB != 0 {
            return Err(EOPNOTSUPP);
        }
        let Parts {
            rx,
            nonblock,
            shut_rd,
            ..
        } = self.stream_parts(fd, flags)?;
        let len: usize = bufs.iter().map(|b| b.1).sum::<usize>().min(MAX_IO);
        if shut_rd {
            return Ok(0);
        }
        let done = self.call.progress.min(len);
        let got = if flags & MSG_PEEK != 0 {
            let p = rx.borrow();
            if p.buf.is_empty() && p.writers > 0 && len > 0 {
                drop(p);
                if nonblock {
                    return Err(EAGAIN);
                }
                let k = self.kernel()?;
                rx.borrow_mut().wait(self.pid, k);
                return self.block();
            }
            p.buf
                .iter()
                .take(len.min(p.readable_run()))
                .copied()
                .collect::<Vec<u8>>()
        } else {
            let mut data = vec![0u8; len - done];
            let n = self.pipe_recv_attached(&rx, nonblock || done > 0, &mut data);
            let n = match n {
                Ok((n, got)) => {
                    out.extend(got);
                    n
                }
                Err(EAGAIN) if done > 0 => 0,
                Err(e) => return Err(e),
            };
            data.truncate(n);
            data
        };
        self.scatter(bufs, done, &got)?;
        let total = done + got.len();
        let eof = got.is_empty() && rx.borrow().writers == 0;
        // MSG_WAITALL waits for the rest, but not past files sent along.
        if flags & MSG_WAITALL != 0
            && flags & MSG_PEEK == 0
            && out.is_empty()
            && total < len
            && !eof
            && !nonblock
        {
            // Wait for the rest; what came so far is in the buffer.
            self.call.progress = total;
            let k = self.kernel()?;
            rx.borrow_mut().wait(self.pid, k);
            if rx.borrow().buf.is_empty() && rx.borrow().writers > 0 {
                return self.block();
            }
            return self.stream_recv(fd, bufs, flags, out);
        }
        Ok(total as i64)
    }

    /// Copy `data` into the user buffers `bufs`, starting `skip` bytes in.
    fn scatter(
        &mut self,
        bufs: &[(u64, usize)],
        mut skip: usize,
        mut data: &[u8],
    ) -> Result<(), i64> {
        for &(base, blen) in bufs {
            if data.is_empty() {
                break;
            }
            if skip >= blen {
                skip -= blen;
                continue;
            }
            let n = (blen - skip).min(data.len());
            self.mm.write(base + skip as u64, &data[..n])?;
            data = &data[n..];
            skip = 0;
        }
        Ok(())
    }

    /// The destination of sendto/sendmsg (`addr`, `len` bytes) for a
    /// socket `fd` of type `ty`: a Unix stream takes none (EISCONN); a
    /// seqpacket socket and TCP ignore it.
    fn destination(
        &mut self,
        kind: &SockKind,
        addr: u64,
        len: u64,
    ) -> Result<Option<super::unix::Addr>, i64> {
        let family = kind.family;
        match kind.ty {
            _ if addr == 0 => Ok(None),
            SockType::Stream if family == files::AF_UNIX => Err(EISCONN),
            SockType::Stream | SockType::SeqPacket => Ok(None),
            SockType::Dgram => self.sockaddr_for(family, addr, len).map(Some),
        }
    }

    /// sendto(fd, buf, len, flags, addr, addrlen).
    fn sys_sendto(&mut self, fd: i64, buf: u64, len: usize, flags: u64, addr: u64, alen: u64) -> R {
        let kind = self.sock_kind(fd)?;
        let to = self.destination(&kind, addr, alen)?;
        let data = self.mm.read_vec(buf, len.min(MAX_IO))?;
        self.sock_send(fd, &data, flags, to, Default::default())
    }

    /// recvfrom(fd, (buf, len), flags, addr, addrlen): the sender's name
    /// when it has one (else addrlen 0).
    fn sys_recvfrom(&mut self, fd: i64, buf: (u64, usize), flags: u64, addr: u64, lenp: u64) -> R {
        let family = self.sock_kind(fd)?.family;
        let Got(n, _, from, _) = self.sock_recv(fd, &[buf], flags)?;
        self.put_from(addr, lenp, family, from.as_deref())?;
        Ok(n)
    }

    /// Write the sender's name at `addr` (room and length at `lenp`) as a
    /// `family` socket sees it: no name is length 0.
    fn put_from(
        &mut self,
        addr: u64,
        lenp: u64,
        family: u16,
        from: Option<&[u8]>,
    ) -> Result<(), i64> {
        if lenp == 0 {
            return Ok(());
        }
        match from {
            Some(name) if addr != 0 => self
                .put_sockaddr(addr, lenp, family, Some(name))
                .map(|_| ()),
            _ => self.mm.write(lenp, &0u32.to_le_bytes()).map_err(Into::into),
        }
    }

    /// The msghdr at `msg`: (iovecs, control pointer, control length).
    fn msghdr(&mut self, msg: u64) -> Result<MsgHdr, i64> {
        let b = self.mm.read_vec(msg, 56)?;
        let q = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        // More than UIO_MAXIOV iovecs: EMSGSIZE here (readv says EINVAL).
        if q(24) > 1024 {
            return Err(EMSGSIZE);
        }
        let iov = self.iovecs(q(16), q(24))?;
        Ok(MsgHdr {
            name: q(0),
            namelen: q(8) & 0xffff_ffff,
            iov,
            control: q(32),
            controllen: q(40),
        })
    }

    /// sendmsg(fd, msg, flags): SCM_RIGHTS passes open files
    /// ([`super::scm`]), SCM_CREDENTIALS is accepted and not passed on.
    fn sys_sendmsg(&mut self, fd: i64, msg: u64, flags: u64) -> R {
        let kind = self.sock_kind(fd)?;
        let MsgHdr {
            name,
            namelen,
            iov,
            control,
            controllen,
        } = self.msghdr(msg)?;
        let to = self.destination(&kind, name, namelen)?;
        // Internet sockets pass no files or credentials: their control
        // messages are the IP layer's, which the loopback network ignores.
        let passed = if kind.family == files::AF_UNIX {
            self.scm_parse(control, controllen)?
        } else {
            Default::default()
        };
        let mut data = Vec::new();
        for (base, len) in iov {
            if data.len() >= MAX_IO {
                break;
            }
            let len = len.min(MAX_IO - data.len());
            data.extend(self.mm.read_vec(base, len)?);
        }
        self.sock_send(fd, &data, flags, to, passed)
    }

    /// recvmsg(fd, msg, flags): the sender's name, SCM_RIGHTS' files, and
    /// MSG_TRUNC in msg_flags for a message cut short.
    fn sys_recvmsg(&mut self, fd: i64, msg: u64, flags: u64) -> R {
        let family = self.sock_kind(fd)?.family;
        let MsgHdr {
            name,
            namelen,
            iov,
            control,
            controllen,
        } = self.msghdr(msg)?;
        let Got(n, cut, from, got) = self.sock_recv(fd, &iov, flags & !MSG_CMSG_CLOEXEC)?;
        let passcred = self.passcred_of(fd)?;
        let (clen, mut mflags) = self.scm_deliver(
            control,
            controllen,
            got,
            passcred,
            flags & MSG_CMSG_CLOEXEC != 0,
        )?;
        if cut {
            mflags |= u32::try_from(MSG_TRUNC).expect("a 32-bit flag");
        }
        // msg_name and msg_namelen, msg_controllen and msg_flags.
        match from {
            Some(f) if name != 0 => {
                let full = self.sockaddr_bytes(family, &f);
                let k = full.len().min(usize::try_from(namelen).unwrap_or(0));
                self.mm.write(name, &full[..k])?;
                self.mm.write(
                    msg + 8,
                    &u32::try_from(full.len()).unwrap_or(0).to_le_bytes(),
                )?;
            }
            _ => self.mm.write(msg + 8, &0u32.to_le_bytes())?,
        }
        self.mm.write(msg + 40, &clen.to_le_bytes())?;
        self.mm.write(msg + 48, &mflags.to_le_bytes())?;
        Ok(n)
    }

    /// shutdown(fd, how).
    fn sys_shutdown(&mut self, fd: i64, how: u64) -> R {
        let file = self.socket_of(fd)?;
        let (rd, wr) = match how {
            0 => (true, false),
            1 => (false, true),
            2 => (true, true),
            _ => return Err(EINVAL),
        };
        let w = {
            let mut f = file.borrow_mut();
            let FileKind::Socket(sk) = &mut f.kind else {
                return Err(ENOTSOCK);
            };
            if let SockState::Dgram(d) = &mut sk.state {
                // Only what this socket receives is affected.
                d.shut_rd |= rd;
                d.inbox.borrow_mut().take_waiters()
            } else {
                let Some(s) = sk.stream_mut() else {
                    return Err(ENOTCONN);
                };
                s.shutdown(rd, wr)
            }
        };
        files::wake_all(w);
        Ok(0)
    }

    /// sendmmsg/recvmmsg(fd, msgvec, vlen, flags): each struct mmsghdr's
    /// message in turn, its length into msg_len. The first may wait (as
    /// its flags say); the others do not (MSG_DONTWAIT), so a retried call
    /// never repeats a message: the count so far is returned at the first
    /// that would wait (Linux's MSG_WAITFORONE behaviour; Linux would also
    /// wait for the later ones of a blocking sendmmsg). recvmmsg's timeout
    /// is not used.
    fn sys_mmsg(&mut self, fd: i64, vec: u64, vlen: u64, flags: u64, send: bool) -> R {
        self.socket_of(fd)?;
        // UIO_MAXIOV.
        let n = vlen.min(1024);
        let mut done: u64 = 0;
        while done < n {
            let msg = vec + done * 64;
            let f = if done == 0 {
                flags
            } else {
                flags | MSG_DONTWAIT
            };
            let r = if send {
                self.sys_sendmsg(fd, msg, f)
            } else {
                self.sys_recvmsg(fd, msg, f)
            };
            match r {
                Ok(len) => {
                    let len = u32::try_from(len).unwrap_or(u32::MAX);
                    self.mm.write(msg + 56, &len.to_le_bytes())?;
                    done += 1;
                    // A stream at its end has no more messages.
                    if !send && len == 0 {
                        break;
                    }
                }
                Err(_) if done > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(i64::try_from(done).unwrap_or(0))
    }
}
