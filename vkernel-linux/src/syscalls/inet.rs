//! AF_INET and AF_INET6 sockets on the virtual kernel's loopback network
//! ([`crate::fs::inet`]): bind (loopback and unspecified addresses;
//! ephemeral ports), the automatic bind of listen, connect and sendto,
//! and TCP connect. TCP connections are the Unix streams' (two pipes
//! crossing, a listener's backlog) and UDP datagrams the Unix datagram
//! sockets' queues, with Internet names; addresses off the loopback
//! network are unreachable (ENETUNREACH).
//!
//! A non-blocking connect completes at once and says EINPROGRESS; the
//! socket is writable and SO_ERROR is 0, and the next connect says 0
//! (then EISCONN), as Linux reports a loopback connection made.

use super::errno::*;
use super::unix::Addr;
use super::R;
use crate::files::{self, FileKind, OpenFile, Port, Shared, SockState, SockType, UnixStream};
use crate::fs::inet::{InetName, Proto, AF_INET};
use crate::Vproc;

/// Bytes a TCP connection's direction holds before the sender waits:
/// Linux's largest autotuned send buffer (net.ipv4.tcp_wmem's maximum),
/// which a loopback stream reaches at once.
pub(super) const TCP_BUF: usize = 4 << 20;

/// IPPROTO_IPV6.
pub(super) const IPPROTO_IPV6: u64 = 41;
/// IPV6_V6ONLY.
pub(super) const IPV6_V6ONLY: u64 = 26;
/// SOL_SOCKET's SO_REUSEPORT.
pub(super) const SO_REUSEPORT: u64 = 15;

impl Vproc {
    /// A TCP send of `len` bytes on socket `fd` whose peer is gone, the
    /// first time: a peer that closed with everything read has not reset
    /// the connection yet on Linux, so the send is taken (Some(Ok), its
    /// bytes go nowhere); a peer that closed with bytes unread reset it at
    /// once (Some(ECONNRESET)). None: not such a send (later ones fail as a
    /// Unix stream's do, EPIPE).
    pub(super) fn tcp_send_into_void(&mut self, fd: i64, len: usize) -> Option<R> {
        let file = self.socket_of(fd).ok()?;
        let mut f = file.borrow_mut();
        let FileKind::Socket(s) = &mut f.kind else {
            return None;
        };
        if !s.is_inet() || s.reset {
            return None;
        }
        let SockState::Connected(c) = &s.state else {
            return None;
        };
        let (unread, room) = {
            let q = c.tx.borrow();
            if c.shut_wr || q.readers > 0 {
                return None;
            }
            (!q.buf.is_empty(), q.capacity)
        };
        s.reset = true;
        // The send buffer takes what it holds; the reset stops the rest.
        Some(if unread {
            Err(ECONNRESET)
        } else {
            Ok(len.min(room) as i64)
        })
    }

    /// Note a TCP connection end for `/proc/net/tcp`.
    pub(super) fn note_conn(&self, local: InetName, remote: InetName, end: &UnixStream) {
        self.fs.inet().note_conn(crate::fs::inet::ConnRecord {
            local,
            remote,
            rx: end.rx.downgrade(),
            tx: end.tx.downgrade(),
            // Every vproc runs as uid 0 (getuid).
            uid: 0,
        });
    }

    /// The address family of socket `file` (AF_UNIX for anything else).
    pub(super) fn family_of(file: &Shared<OpenFile>) -> u16 {
        match &file.borrow().kind {
            FileKind::Socket(s) => s.family,
            _ => files::AF_UNIX,
        }
    }

    /// Bind Internet socket `file` (of type `ty`) to `n` through `port`:
    /// the name bound (its port chosen when 0). EADDRNOTAVAIL for an
    /// address the vkernel does not have, EADDRINUSE for a name taken.
    pub(super) fn inet_bind(
        &mut self,
        file: &Shared<OpenFile>,
        ty: SockType,
        n: InetName,
        port: &Shared<Port>,
    ) -> Result<Vec<u8>, i64> {
        if !self.is_own_name(n) {
            return Err(EADDRNOTAVAIL);
        }
        let (v6only, reuseport, ping) = match &file.borrow().kind {
            FileKind::Socket(s) => (
                s.opts
                    .get(&(IPPROTO_IPV6, IPV6_V6ONLY))
                    .is_some_and(|&v| v != 0),
                s.opts
                    .get(&(crate::abi::socket::SOL_SOCKET, SO_REUSEPORT))
                    .is_some_and(|&v| v != 0),
                super::ping::is_ping(s),
            ),
            _ => (false, false, false),
        };
        let proto = if ping {
            Proto::Icmp
        } else if ty == SockType::Dgram {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        let bound = self
            .fs
            .inet()
            .bind(proto, n, v6only, reuseport, port)
            .ok_or(EADDRINUSE)?;
        Ok(bound.to_bytes())
    }

    /// An Internet socket with no name yet takes an ephemeral port on the
    /// unspecified address of its family (listen, connect, sendto).
    pub(super) fn inet_autobind(&mut self, file: &Shared<OpenFile>) -> Result<(), i64> {
        let family = {
            let f = file.borrow();
            match &f.kind {
                FileKind::Socket(s) if s.is_inet() && s.name.is_none() => s.family,
                _ => return Ok(()),
            }
        };
        let any = if family == AF_INET {
            InetName {
                ip: std::net::Ipv4Addr::UNSPECIFIED.to_ipv6_mapped(),
                port: 0,
            }
        } else {
            InetName::ANY
        };
        self.bind_name(file, Addr::Inet(any)).map(|_| ())
    }

    /// TCP connect of `file` to `to`: the connection is made at once (the
    /// accepting end waits in the listener's backlog); EINPROGRESS for a
    /// non-blocking socket, which the next connect reports made.
    pub(super) fn inet_connect(&mut self, file: &Shared<OpenFile>, to: InetName) -> R {
        {
            let mut f = file.borrow_mut();
            let FileKind::Socket(s) = &mut f.kind else {
                return Err(ENOTSOCK);
            };
            match s.state {
                SockState::Connected(_) if s.connecting.is_some() => {
                    drop(f);
                    return self.connect_again(file);
                }
                SockState::Connected(_) if s.connect_pending => {
                    s.connect_pending = false;
                    return Ok(0);
                }
                SockState::Connected(_) => return Err(EISCONN),
                SockState::Listening(_) => return Err(EISCONN),
                _ => {}
            }
        }
        let dest = to.destination();
        if let super::tapnet::Way::Out(to) = self.way(dest)? {
            return self.tcp_connect_out(file, to);
        }
        let port = self
            .find_port(&Addr::Inet(to), SockType::Stream)
            .and_then(|p| {
                if p.borrow().listening {
                    Ok(p)
                } else {
                    Err(ECONNREFUSED)
                }
            });
        let port = match port {
            // The host network: a loopback port no vproc listens on is
            // the host's.
            Err(ECONNREFUSED) if self.net().is_some_and(|n| n.is_host()) => {
                return self.tcp_connect_out(file, dest.socket_addr());
            }
            p => p?,
        };
        self.inet_autobind(file)?;
        let (nonblock, own) = {
            let f = file.borrow();
            let own = match &f.kind {
                // The client's own address is the one it reaches the
                // server by (loopback), its port the one bound.
                FileKind::Socket(s) => {
                    s.name
                        .as_deref()
                        .and_then(InetName::from_bytes)
                        .map(|n| InetName {
                            ip: dest.ip,
                            port: n.port,
                        })
                }
                _ => None,
            };
            (f.flags & files::O_NONBLOCK != 0, own)
        };
        let p = port.borrow_mut();
        if p.full() {
            return self.wait_backlog(p, nonblock);
        }
        let (mut client, mut server) = UnixStream::pair_of(SockType::Stream);
        for q in [&client.rx, &client.tx] {
            q.borrow_mut().capacity = TCP_BUF;
        }
        client.peer = Some(dest.to_bytes());
        client.peer_cred = p.cred;
        server.peer = own.map(InetName::to_bytes);
        server.peer_cred = self.cred();
        server.local = Some(dest.to_bytes());
        if let Some(local) = own {
            self.note_conn(local, dest, &client);
        }
        self.join(
            file,
            p,
            client,
            server,
            own.map(InetName::to_bytes),
            nonblock,
        );
        if nonblock {
            Err(EINPROGRESS)
        } else {
            Ok(0)
        }
    }
}
