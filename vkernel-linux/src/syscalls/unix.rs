//! Named AF_UNIX sockets: socket, bind (a path: a socket node in the
//! overlay; or an abstract name), listen, connect, accept/accept4,
//! getsockname, getpeername and SO_PEERCRED. The data path is
//! [`super::stream`]'s for streams and [`super::dgram`]'s for messages.
//!
//! A connection is made at connect (Linux's AF_UNIX does the same): the
//! client's end is connected at once and the accepting end waits in the
//! listener's backlog ([`crate::files::Port`]), already taking the
//! client's bytes; a full backlog makes connect wait (or EAGAIN).

use super::errno::*;
use super::{int, AT_FDCWD, R};
use crate::abi::socket::{
    AF_INET, AF_INET6, AF_UNIX, AF_UNIX_FAMILY, AF_UNSPEC_FAMILY, SOCK_CLOEXEC, SOCK_NONBLOCK,
};
use crate::files::{
    self, Fd, FileKind, OpenFile, Port, Shared, SockState, SockType, Socket, UnixStream,
};
use crate::fs::inet::{InetName, Proto};

use crate::fs::Kind;
use crate::Vproc;

/// sizeof(struct sockaddr_un).
const SUN_LEN: usize = 110;
/// The largest backlog listen takes (Linux's somaxconn).
const SOMAXCONN: usize = 4096;

/// A socket address: the sockaddr_un bytes after the family, or an
/// Internet name.
pub(super) enum Addr {
    /// An AF_INET or AF_INET6 name.
    Inet(InetName),
    /// A path in the file tree.
    Path(Vec<u8>),
    /// An abstract name (the bytes start with 0).
    Abstract(Vec<u8>),
    /// Only the family (bind: pick an abstract name).
    Unnamed,
}

impl Vproc {
    /// socket(domain, type, protocol): AF_UNIX sockets, and AF_INET and
    /// AF_INET6 stream (TCP) and datagram (UDP) sockets on the loopback
    /// network.
    pub(super) fn sys_socket(&mut self, domain: u64, ty: u64, protocol: u64) -> R {
        let raw = ty & 0xf == 3;
        let (ty, st, cloexec) = self.socket_type(domain, ty, protocol, false)?;
        let family = u16::try_from(domain).map_err(|_| EAFNOSUPPORT)?;
        let protocol = i32::try_from(protocol).unwrap_or(0);
        let sock = Socket {
            // A raw ICMP socket is an echo socket that sees IP headers.
            protocol: if raw {
                protocol | super::ping::RAW
            } else {
                protocol
            },
            ..Socket::new_in(family, ty)
        };
        let file = OpenFile::new(FileKind::Socket(sock), st, b"socket:");
        self.install_file(file, if cloexec { files::O_CLOEXEC } else { 0 })
    }

    /// Check socket/socketpair's (`pair`) arguments: the socket type, the
    /// open file's status flags and whether the fds are close-on-exec.
    /// AF_UNIX takes every type; AF_INET/AF_INET6 take SOCK_STREAM (TCP)
    /// and SOCK_DGRAM (UDP), and no socketpair (EOPNOTSUPP, as Linux).
    pub(super) fn socket_type(
        &mut self,
        domain: u64,
        ty: u64,
        protocol: u64,
        pair: bool,
    ) -> Result<(SockType, u32, bool), i64> {
        const AF_NETLINK: u64 = super::netlink::AF_NETLINK as u64;
        let inet = match domain {
            AF_UNIX => false,
            AF_INET | AF_INET6 | AF_NETLINK if pair => return Err(EOPNOTSUPP),
            AF_INET | AF_INET6 | AF_NETLINK => true,
            _ => return Err(EAFNOSUPPORT),
        };
        if ty & !(0xf | SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
            return Err(EINVAL);
        }
        let kind = if domain == AF_NETLINK {
            // NETLINK_ROUTE only (sock_diag and the others are not
            // offered: `ss` then reads /proc/net).
            match (ty & 0xf, protocol) {
                (2 | 3, 0) => SockType::Dgram,
                (2 | 3, _) => return Err(EPROTONOSUPPORT),
                _ => return Err(ESOCKTNOSUPPORT),
            }
        } else if inet {
            // TCP and UDP (IPPROTO_TCP 6, IPPROTO_UDP 17), and ICMP echo
            // sockets (IPPROTO_ICMP 1, IPPROTO_ICMPV6 58: unprivileged
            // ping). Raw sockets are refused as for an unprivileged user
            // (EPERM: ping then falls back to an echo socket); SCTP is
            // not offered.
            match (ty & 0xf, protocol) {
                (1, 0 | 6) => SockType::Stream,
                // UDP-Lite (136) is UDP on a network that never corrupts.
                (2, 0 | 17 | 136) => SockType::Dgram,
                (2, 1) if domain == AF_INET => SockType::Dgram,
                (2, 58) if domain == AF_INET6 => SockType::Dgram,
                // Raw ICMP: for ping (echo requests and replies only).
                (3, 1) if domain == AF_INET => SockType::Dgram,
                (3, _) => return Err(EPERM),
                (1..=2, _) => return Err(EPROTONOSUPPORT),
                (4..=6 | 10, _) => return Err(ESOCKTNOSUPPORT),
                _ => return Err(EINVAL),
            }
        } else {
            if protocol != 0 && protocol != AF_UNIX {
                return Err(EPROTONOSUPPORT);
            }
            SockType::from_raw(ty & 0xf).ok_or(ESOCKTNOSUPPORT)?
        };
        let nonblock = if ty & SOCK_NONBLOCK != 0 {
            files::O_NONBLOCK
        } else {
            0
        };
        Ok((kind, files::O_RDWR | nonblock, ty & SOCK_CLOEXEC != 0))
    }

    /// The sockaddr of a `family` socket at `addr` (`len` bytes).
    pub(super) fn sockaddr_for(&mut self, family: u16, addr: u64, len: u64) -> Result<Addr, i64> {
        if family == files::AF_UNIX {
            return self.sockaddr(addr, len);
        }
        if family == super::netlink::AF_NETLINK {
            // Only the kernel (port 0) answers: the name is not needed.
            return if len >= 12 {
                Ok(Addr::Unnamed)
            } else {
                Err(EINVAL)
            };
        }
        let len = usize::try_from(len).map_err(|_| EINVAL)?;
        if len > 128 {
            return Err(EINVAL);
        }
        let b = self.mm.read_vec(addr, len)?;
        match InetName::parse(family, &b) {
            Ok(n) => Ok(Addr::Inet(n)),
            Err(crate::fs::inet::InetError::Length) => Err(EINVAL),
            Err(crate::fs::inet::InetError::Family) => Err(EAFNOSUPPORT),
        }
    }

    /// The sockaddr_un at `addr` (`len` bytes).
    pub(super) fn sockaddr(&mut self, addr: u64, len: u64) -> Result<Addr, i64> {
        let len = usize::try_from(len).map_err(|_| EINVAL)?;
        if !(2..=SUN_LEN).contains(&len) {
            return Err(EINVAL);
        }
        let b = self.mm.read_vec(addr, len)?;
        if u16::from_le_bytes([b[0], b[1]]) != AF_UNIX_FAMILY {
            return Err(EINVAL);
        }
        let rest = &b[2..];
        Ok(match rest.first() {
            None => Addr::Unnamed,
            Some(0) => Addr::Abstract(rest.to_vec()),
            Some(_) => {
                let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
                Addr::Path(rest[..end].to_vec())
            }
        })
    }

    /// This process's credentials as a peer sees them.
    pub(super) fn cred(&self) -> [i32; 3] {
        [self.thread.tgid, 0, 0]
    }

    /// bind(fd, addr, len).
    pub(super) fn sys_bind(&mut self, fd: i64, addr: u64, len: u64) -> R {
        let file = self.socket_of(fd)?;
        let family = Self::family_of(&file);
        if family == super::netlink::AF_NETLINK {
            return self.netlink_bind(&file, addr, len);
        }
        let a = self.sockaddr_for(family, addr, len)?;
        self.bind_name(&file, a)
    }

    /// Bind the socket `file` to `a`.
    pub(super) fn bind_name(&mut self, file: &Shared<OpenFile>, a: Addr) -> R {
        // Linux looks at the name before at the socket: a name in use is
        // EADDRINUSE even for a socket bound already.
        if let Addr::Path(p) = &a {
            if self.lookup_at(AT_FDCWD, p, false).is_ok() {
                return Err(EADDRINUSE);
            }
        }
        let ty = match &file.borrow().kind {
            FileKind::Socket(Socket {
                state: SockState::Fresh,
                ty,
                ..
            }) => *ty,
            FileKind::Socket(Socket {
                state: SockState::Dgram(_),
                name: None,
                ..
            }) => SockType::Dgram,
            _ => return Err(EINVAL),
        };
        let port = Shared::new(Port {
            ty,
            ..Port::default()
        });
        let name = match a {
            Addr::Path(p) => {
                let (dir, leaf) = self.parent_at(AT_FDCWD, &p)?;
                let mode = 0o777 & !self.umask;
                self.fs.mksock(dir, &leaf, mode, port.clone())?;
                p
            }
            Addr::Abstract(n) => {
                if !self.fs.bind_abstract(&n, &port) {
                    return Err(EADDRINUSE);
                }
                n
            }
            Addr::Unnamed => self.autobind(&port)?,
            Addr::Inet(n) => self.inet_bind(file, ty, n, &port)?,
        };
        port.borrow_mut().name = name.clone();
        let mut f = file.borrow_mut();
        if let FileKind::Socket(s) = &mut f.kind {
            if let SockState::Dgram(d) = &mut s.state {
                port.borrow_mut().inbox = Some(d.inbox.downgrade());
                d.port = Some(port);
                if s.family != files::AF_UNIX {
                    self.net_udp_bound(&d.inbox, &name);
                }
            } else {
                s.state = SockState::Bound(port);
            }
            s.name = Some(name);
        }
        Ok(0)
    }

    /// Linux's autobind: an abstract name of five hex digits.
    fn autobind(&mut self, port: &Shared<Port>) -> Result<Vec<u8>, i64> {
        let mut seed = [0u8; 4];
        crate::random_bytes(&mut seed);
        let start = u32::from_le_bytes(seed);
        for i in 0..0x10_0000u32 {
            let mut n = vec![0u8];
            n.extend(format!("{:05x}", (start.wrapping_add(i)) & 0xf_ffff).into_bytes());
            if self.fs.bind_abstract(&n, port) {
                return Ok(n);
            }
        }
        Err(ENOSPC)
    }

    /// listen(fd, backlog): an Internet socket not bound yet takes an
    /// ephemeral port first.
    pub(super) fn sys_listen(&mut self, fd: i64, backlog: i64) -> R {
        let file = self.socket_of(fd)?;
        self.inet_autobind(&file)?;
        let cred = self.cred();
        let mut f = file.borrow_mut();
        let FileKind::Socket(s) = &mut f.kind else {
            return Err(ENOTSOCK);
        };
        if s.ty == SockType::Dgram {
            return Err(EOPNOTSUPP);
        }
        let max = usize::try_from(backlog.max(0)).unwrap_or(0).min(SOMAXCONN);
        let port = match std::mem::take(&mut s.state) {
            SockState::Bound(p) | SockState::Listening(p) => p,
            other => {
                s.state = other;
                return Err(EINVAL);
            }
        };
        {
            let mut p = port.borrow_mut();
            p.listening = true;
            p.max = max;
            p.cred = cred;
        }
        let name = s.name.clone();
        s.state = SockState::Listening(port.clone());
        drop(f);
        self.net_listen(&port, name.as_deref())
    }

    /// The port `a` names (ECONNREFUSED when nobody listens there).
    fn port_of(&mut self, a: &Addr) -> Result<Shared<Port>, i64> {
        let port = self.find_port(a, SockType::Stream)?;
        if !port.borrow().listening {
            return Err(ECONNREFUSED);
        }
        Ok(port)
    }

    /// The port bound to `a` for a socket of type `ty`: ENOENT (and the
    /// path lookup's other errors) for a path that is not there,
    /// ECONNREFUSED for a file that is not a socket or a name nobody
    /// holds, ENETUNREACH for an Internet address off the loopback
    /// network.
    pub(super) fn find_port(&mut self, a: &Addr, ty: SockType) -> Result<Shared<Port>, i64> {
        Ok(match a {
            Addr::Inet(n) => {
                let to = n.destination();
                if self.way(to)? != super::tapnet::Way::Local {
                    // Another host: no port of this vkernel's.
                    return Err(ECONNREFUSED);
                }
                let proto = if ty == SockType::Dgram {
                    Proto::Udp
                } else {
                    Proto::Tcp
                };
                self.fs.inet().find(proto, to).ok_or(ECONNREFUSED)?
            }
            Addr::Path(p) => {
                let h = self.lookup_at(AT_FDCWD, p, true)?;
                match self.fs.inode(h).kind {
                    Kind::Socket(port) => port,
                    _ => return Err(ECONNREFUSED),
                }
            }
            Addr::Abstract(n) => self.fs.find_abstract(n).ok_or(ECONNREFUSED)?,
            Addr::Unnamed => return Err(EINVAL),
        })
    }

    /// connect(fd, addr, len).
    pub(super) fn sys_connect(&mut self, fd: i64, addr: u64, len: u64) -> R {
        let file = self.socket_of(fd)?;
        let family = Self::family_of(&file);
        if family == super::netlink::AF_NETLINK {
            // Talking to the kernel (port 0) is all a netlink socket does.
            return Ok(0);
        }
        let ty = match &file.borrow().kind {
            FileKind::Socket(s) => s.ty,
            _ => return Err(ENOTSOCK),
        };
        if ty == SockType::Dgram {
            let unspec = len >= 2 && {
                let b = self.mm.read_vec(addr, 2)?;
                u16::from_le_bytes([b[0], b[1]]) == AF_UNSPEC_FAMILY
            };
            let a = if unspec {
                None
            } else {
                Some(self.sockaddr_for(family, addr, len)?)
            };
            return self.dgram_connect(fd, a);
        }
        let a = self.sockaddr_for(family, addr, len)?;
        if let Addr::Inet(to) = a {
            return self.inet_connect(&file, to);
        }
        let (nonblock, own, state_err) = {
            let f = file.borrow();
            let FileKind::Socket(s) = &f.kind else {
                return Err(ENOTSOCK);
            };
            let state_err = match s.state {
                SockState::Connected(_) => Some(EISCONN),
                SockState::Listening(_) => Some(EINVAL),
                _ => None,
            };
            (f.flags & files::O_NONBLOCK != 0, s.name.clone(), state_err)
        };
        let port = self.port_of(&a)?;
        let p = port.borrow_mut();
        if p.ty != ty {
            return Err(ECONNREFUSED);
        }
        // Linux's order: the listener's backlog, then this socket's state.
        if p.full() && state_err.is_none() {
            return self.wait_backlog(p, nonblock);
        }
        if let Some(e) = state_err {
            return Err(if p.full() { EAGAIN } else { e });
        }
        let (mut client, mut server) = UnixStream::pair_of(ty);
        client.peer = Some(p.name.clone());
        client.peer_cred = p.cred;
        server.peer = own;
        server.peer_cred = self.cred();
        // A bound client gives up its port (nobody can connect to a
        // connected socket).
        self.join(&file, p, client, server, None, false);
        Ok(0)
    }

    /// Wait for room in the full backlog `p` (EAGAIN when `nonblock`).
    pub(super) fn wait_backlog(
        &mut self,
        mut p: std::sync::MutexGuard<'_, Port>,
        nonblock: bool,
    ) -> R {
        if nonblock {
            return Err(EAGAIN);
        }
        let k = self.kernel()?;
        p.wait(self.pid, k);
        drop(p);
        self.block()
    }

    /// Put the accepting end `server` in the listener's backlog `p` (its
    /// waiters woken) and make socket `file` the connecting end `client`:
    /// `name` its own name from now on (when the connection gives it
    /// one), `pending` a connect to report made later (EINPROGRESS).
    pub(super) fn join(
        &mut self,
        file: &Shared<OpenFile>,
        mut p: std::sync::MutexGuard<'_, Port>,
        client: UnixStream,
        server: UnixStream,
        name: Option<Vec<u8>>,
        pending: bool,
    ) {
        p.backlog.push_back(server);
        let w = p.take_waiters();
        drop(p);
        files::wake_all(w);
        let mut f = file.borrow_mut();
        if let FileKind::Socket(s) = &mut f.kind {
            s.connect_over(client);
            if name.is_some() {
                s.name = name;
            }
            s.connect_pending = pending;
            let own = s.opts.clone();
            super::sockopt::apply_buffers(s, &own);
        }
    }

    /// accept4(fd, addr, lenp, flags).
    pub(super) fn sys_accept4(&mut self, fd: i64, addr: u64, lenp: u64, flags: u64) -> R {
        if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
            return Err(EINVAL);
        }
        let file = self.socket_of(fd)?;
        let (port, nonblock, name, ty, family, lopts) = {
            let f = file.borrow();
            let FileKind::Socket(s) = &f.kind else {
                return Err(ENOTSOCK);
            };
            if s.ty == SockType::Dgram {
                return Err(EOPNOTSUPP);
            }
            let SockState::Listening(p) = &s.state else {
                return Err(EINVAL);
            };
            (
                p.clone(),
                f.flags & files::O_NONBLOCK != 0,
                s.name.clone(),
                s.ty,
                s.family,
                s.opts.clone(),
            )
        };
        let mut p = port.borrow_mut();
        let Some(conn) = p.backlog.pop_front() else {
            if nonblock {
                return Err(EAGAIN);
            }
            let k = self.kernel()?;
            p.wait(self.pid, k);
            drop(p);
            return self.block();
        };
        // A connect waiting for room may go on.
        let w = p.take_waiters();
        drop(p);
        files::wake_all(w);
        let peer = conn.peer.clone();
        if family != files::AF_UNIX {
            let name = |b: &Option<Vec<u8>>| b.as_deref().and_then(InetName::from_bytes);
            if let (Some(l), Some(r)) = (name(&conn.local), name(&conn.peer)) {
                self.note_conn(l, r, &conn);
            }
        }
        let st = files::O_RDWR
            | if flags & SOCK_NONBLOCK != 0 {
                files::O_NONBLOCK
            } else {
                0
            };
        // An Internet connection's own name is where the client
        // connected (the listener's may be the unspecified address).
        let name = conn.local.clone().or(name);
        let mut sock = Socket {
            name,
            family,
            ..Socket::connected_of(ty, conn)
        };
        // What the listener was set to, its connections are (SO_RCVBUF...).
        super::sockopt::apply_buffers(&mut sock, &lopts);
        let cloexec = flags & SOCK_CLOEXEC != 0;
        let nfd = self.fds.install(
            Fd {
                file: OpenFile::new(FileKind::Socket(sock), st, b"socket:"),
                cloexec,
            },
            0,
        )?;
        if addr != 0 {
            if let Err(e) = self.put_sockaddr(addr, lenp, family, peer.as_deref()) {
                let _ = self.fds.close(nfd);
                return Err(e);
            }
        }
        Ok(nfd)
    }

    /// Write `name` as a sockaddr of `family` at `addr`, at most `*lenp`
    /// bytes, and its full length at `lenp` (Linux: the family, the path
    /// and its NUL; an abstract name as is; an Internet name as a
    /// sockaddr_in or sockaddr_in6, the unspecified one when unbound).
    pub(super) fn put_sockaddr(
        &mut self,
        addr: u64,
        lenp: u64,
        family: u16,
        name: Option<&[u8]>,
    ) -> R {
        let room = self.user_u32(lenp)?;
        if (room as i32) < 0 {
            return Err(EINVAL);
        }
        let b = match name {
            _ if family == super::netlink::AF_NETLINK => Self::sockaddr_nl(name),
            Some(n) => self.sockaddr_bytes(family, n),
            None if family != files::AF_UNIX => InetName::ANY.encode(family),
            None => AF_UNIX_FAMILY.to_le_bytes().to_vec(),
        };
        let n = b.len().min(room as usize);
        self.mm.write(addr, &b[..n])?;
        self.mm
            .write(lenp, &u32::try_from(b.len()).unwrap_or(0).to_le_bytes())?;
        Ok(0)
    }

    /// The sockaddr of `name` as Linux reports it to a `family` socket:
    /// the family, then a path with its NUL, or an abstract name as is; an
    /// Internet name in the family's form.
    pub(super) fn sockaddr_bytes(&self, family: u16, name: &[u8]) -> Vec<u8> {
        if family == super::netlink::AF_NETLINK {
            return Self::sockaddr_nl(Some(name));
        }
        if family != files::AF_UNIX {
            return InetName::from_bytes(name)
                .unwrap_or(InetName::ANY)
                .encode(family);
        }
        let mut b = AF_UNIX_FAMILY.to_le_bytes().to_vec();
        b.extend_from_slice(name);
        if name.first() != Some(&0) {
            b.push(0);
        }
        b
    }

    /// getsockname(fd, addr, lenp).
    pub(super) fn sys_getsockname(&mut self, fd: i64, addr: u64, lenp: u64) -> R {
        let file = self.socket_of(fd)?;
        let family = Self::family_of(&file);
        let name = match &file.borrow().kind {
            FileKind::Socket(s) => s.name.clone(),
            _ => return Err(ENOTSOCK),
        };
        self.put_sockaddr(addr, lenp, family, name.as_deref())
    }

    /// getpeername(fd, addr, lenp).
    pub(super) fn sys_getpeername(&mut self, fd: i64, addr: u64, lenp: u64) -> R {
        let file = self.socket_of(fd)?;
        let peer = match &file.borrow().kind {
            FileKind::Socket(s) => match (&s.state, s.stream()) {
                (SockState::Dgram(d), _) => match &d.peer {
                    Some((_, name)) => name.clone(),
                    None => return Err(ENOTCONN),
                },
                (_, Some(c)) => c.peer.clone(),
                _ => return Err(ENOTCONN),
            },
            _ => return Err(ENOTSOCK),
        };
        let family = Self::family_of(&file);
        self.put_sockaddr(addr, lenp, family, peer.as_deref())
    }

    /// SO_PEERCRED: struct ucred {pid, uid, gid} of the peer.
    pub(super) fn peercred(&mut self, cred: Option<[i32; 3]>, val: u64, lenp: u64) -> R {
        let Some(c) = cred else {
            // Not connected and not listening: Linux reports no peer.
            return self.peercred(Some([0, -1, -1]), val, lenp);
        };
        let room = self.user_u32(lenp)?;
        if (room as i32) < 0 {
            return Err(EINVAL);
        }
        let mut b = Vec::with_capacity(12);
        for v in c {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let n = b.len().min(room as usize);
        self.mm.write(val, &b[..n])?;
        self.mm
            .write(lenp, &u32::try_from(n).unwrap_or(0).to_le_bytes())?;
        Ok(0)
    }

    /// accept(fd, addr, lenp).
    pub(super) fn sys_accept(&mut self, fd: i64, addr: u64, lenp: u64) -> R {
        self.sys_accept4(fd, addr, lenp, 0)
    }

    /// listen's argument is an int.
    pub(super) fn listen_call(&mut self, a: [u64; 6]) -> R {
        self.sys_listen(int(a[0]), int(a[1]))
    }
}
