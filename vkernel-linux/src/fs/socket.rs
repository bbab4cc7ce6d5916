//! AF_UNIX sockets: a connected pair of ends ([`UnixStream`], two pipes
//! crossing: byte streams for SOCK_STREAM, message queues for
//! SOCK_SEQPACKET), a datagram socket's queue and peer ([`Dgram`]), a
//! socket's life ([`Socket`]: fresh, bound, listening, connected) and the
//! rendezvous a bound name leads to ([`Port`]: a listen backlog, or a
//! datagram socket's queue), which a socket node of the tree or an
//! abstract name holds. They live beside the file tree because a socket
//! node holds its port; the fd table ([`crate::files`]) re-exports them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::pipe::{wake_all, Pipe, Shared, Waiters, Wake, WeakShared};

/// An AF_UNIX socket's type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SockType {
    /// SOCK_STREAM: a connected byte stream.
    #[default]
    Stream,
    /// SOCK_DGRAM (and SOCK_RAW, which Linux makes one): messages to any
    /// bound name, or to a connected peer.
    Dgram,
    /// SOCK_SEQPACKET: connected, with message boundaries.
    SeqPacket,
}

impl SockType {
    /// The type of socket(2)'s `type & 0xf`, if AF_UNIX has it.
    pub fn from_raw(t: u64) -> Option<SockType> {
        match t {
            1 => Some(SockType::Stream),
            2 | 3 => Some(SockType::Dgram),
            5 => Some(SockType::SeqPacket),
            _ => None,
        }
    }

    /// Its SOCK_* number (SO_TYPE).
    pub fn raw(self) -> i32 {
        match self {
            SockType::Stream => 1,
            SockType::Dgram => 2,
            SockType::SeqPacket => 5,
        }
    }
}

/// The largest message a datagram or seqpacket socket sends (Linux: the
/// send buffer less 32 bytes; more is EMSGSIZE).
pub const MAX_MESSAGE: usize = SOCK_BUF - 32;

/// How many messages a datagram socket's queue holds for senders other
/// than its peer (net.unix.max_dgram_qlen).
pub const MAX_DGRAM_QLEN: usize = 512;

/// Bytes a stream socket's direction holds before the sender waits
/// (Linux's default socket send buffer, net.core.wmem_default).
pub const SOCK_BUF: usize = 212_992;

/// One end of a connected AF_UNIX stream: it reads from one pipe and
/// writes into the other, which its peer reads. Each end counts as the
/// reader of `rx` and a writer of `tx` from its making until it shuts that
/// direction down or goes (so a connection waiting in a backlog already
/// takes the client's bytes).
#[derive(Debug)]
pub struct UnixStream {
    /// What the peer sent.
    pub rx: Shared<Pipe>,
    /// What this end sends.
    pub tx: Shared<Pipe>,
    /// shutdown(SHUT_RD) done: no longer a reader of `rx`.
    pub shut_rd: bool,
    /// shutdown(SHUT_WR) done: no longer a writer of `tx`.
    pub shut_wr: bool,
    /// The peer's address (sockaddr_un bytes after the family), if it
    /// had one.
    pub peer: Option<Vec<u8>>,
    /// The peer's credentials when they connected: pid, uid, gid
    /// (SO_PEERCRED).
    pub peer_cred: [i32; 3],
    /// This end's own name when the connection gives it one (an accepted
    /// Internet connection: where the client connected).
    pub local: Option<Vec<u8>>,
}

impl UnixStream {
    /// A connected pair: what one end sends, the other receives.
    ///
    /// ```
    /// use vkernel_linux::fs::socket::UnixStream;
    /// let (a, b) = UnixStream::pair();
    /// a.tx.borrow_mut().buf.extend(b"hi");
    /// assert_eq!(b.rx.borrow().buf.len(), 2);
    /// ```
    pub fn pair() -> (UnixStream, UnixStream) {
        UnixStream::pair_of(SockType::Stream)
    }

    /// A connected pair of type `ty`: byte streams, or message queues for
    /// SOCK_SEQPACKET.
    pub fn pair_of(ty: SockType) -> (UnixStream, UnixStream) {
        let queue = || {
            Shared::new(if ty == SockType::Stream {
                Pipe::default()
            } else {
                Pipe::messages(SOCK_BUF)
            })
        };
        let (a, b) = (queue(), queue());
        for p in [&a, &b] {
            let mut p = p.borrow_mut();
            p.readers = 1;
            p.writers = 1;
            p.capacity = SOCK_BUF;
        }
        let end = |rx: &Shared<Pipe>, tx: &Shared<Pipe>| UnixStream {
            rx: rx.clone(),
            tx: tx.clone(),
            shut_rd: false,
            shut_wr: false,
            peer: None,
            peer_cred: [0; 3],
            local: None,
        };
        (end(&a, &b), end(&b, &a))
    }

    /// shutdown(2): `rd` stops receiving (the peer's writes fail with
    /// EPIPE), `wr` stops sending (the peer reads EOF). Returns the
    /// waiters to wake.
    pub fn shutdown(&mut self, rd: bool, wr: bool) -> Vec<(i32, Arc<dyn Wake>)> {
        let mut w = Vec::new();
        if rd && !self.shut_rd {
            self.shut_rd = true;
            let mut p = self.rx.borrow_mut();
            p.readers -= 1;
            w.extend(p.take_waiters());
        }
        if wr && !self.shut_wr {
            self.shut_wr = true;
            let mut p = self.tx.borrow_mut();
            p.writers -= 1;
            w.extend(p.take_waiters());
        }
        w
    }
}

impl Drop for UnixStream {
    fn drop(&mut self) {
        wake_all(self.shutdown(true, true));
    }
}

/// Where connections to a bound name meet: the listen backlog.
#[derive(Default)]
pub struct Port {
    /// listen(2) was called (and the socket is still open).
    pub listening: bool,
    /// Connections not accepted yet: the accepting ends.
    pub backlog: VecDeque<UnixStream>,
    /// The backlog's limit (listen's argument).
    pub max: usize,
    /// Vprocs waiting to accept, to connect (backlog full), or in poll.
    pub waiters: Waiters,
    /// Bumped on every change (edge-triggered epoll).
    pub seq: u64,
    /// The address it is bound to (sockaddr_un bytes after the family).
    pub name: Vec<u8>,
    /// The listener's credentials at listen time (the client's
    /// SO_PEERCRED).
    pub cred: [i32; 3],
    /// The type of the socket bound here (a connect of another type is
    /// refused).
    pub ty: SockType,
    /// A bound datagram socket's queue, while the socket lives.
    pub inbox: Option<WeakShared<Pipe>>,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("listening", &self.listening)
            .field("backlog", &self.backlog.len())
            .field("max", &self.max)
            .finish()
    }
}

impl Port {
    /// Register `pid` as waiting.
    pub fn wait(&mut self, pid: i32, w: Arc<dyn Wake>) {
        self.waiters.add(pid, w);
    }

    /// Take the waiters (wake them with the port unlocked) and count a
    /// change.
    pub fn take_waiters(&mut self) -> Vec<(i32, Arc<dyn Wake>)> {
        self.seq = self.seq.wrapping_add(1);
        self.waiters.take()
    }

    /// Is the backlog full (Linux lets one more than `max` wait)?
    pub fn full(&self) -> bool {
        self.backlog.len() > self.max
    }
}

/// A datagram socket's own parts: its queue, where it sends by default,
/// and its port once bound.
#[derive(Debug)]
pub struct Dgram {
    /// What others sent it (a message queue; its reader while open).
    pub inbox: Shared<Pipe>,
    /// The connected peer: its queue and its name.
    pub peer: Option<(Shared<Pipe>, Option<Vec<u8>>)>,
    /// Its port, once bound (the name leads senders to `inbox`).
    pub port: Option<Shared<Port>>,
    /// shutdown(SHUT_RD) done: an empty queue reads as end of file.
    pub shut_rd: bool,
}

impl Dgram {
    /// A fresh datagram socket: an empty queue, no peer, no name.
    pub fn new() -> Dgram {
        let mut q = Pipe::messages(SOCK_BUF);
        q.readers = 1;
        Dgram {
            inbox: Shared::new(q),
            peer: None,
            port: None,
            shut_rd: false,
        }
    }

    /// Forget the connected peer: no default destination, and messages
    /// from anyone are taken again (AF_UNSPEC connect, a peer gone).
    pub fn disconnect(&mut self) {
        self.peer = None;
        self.inbox.borrow_mut().only_from = None;
    }

    /// A connected pair (socketpair): each sends to the other by default
    /// and takes messages only from it.
    pub fn pair() -> (Dgram, Dgram) {
        let (mut a, mut b) = (Dgram::new(), Dgram::new());
        a.inbox.borrow_mut().only_from = Some(b.inbox.id());
        b.inbox.borrow_mut().only_from = Some(a.inbox.id());
        a.peer = Some((b.inbox.clone(), None));
        b.peer = Some((a.inbox.clone(), None));
        (a, b)
    }
}

impl Default for Dgram {
    fn default() -> Self {
        Dgram::new()
    }
}

impl Drop for Dgram {
    fn drop(&mut self) {
        // Senders waiting for room see the socket gone (ECONNREFUSED).
        let w = {
            let mut q = self.inbox.borrow_mut();
            q.readers = 0;
            q.buf.clear();
            q.records = Some(VecDeque::new());
            q.take_waiters()
        };
        if let Some(p) = &self.port {
            let mut p = p.borrow_mut();
            p.inbox = None;
        }
        wake_all(w);
    }
}

/// Where a socket is in its life.
#[derive(Debug, Default)]
pub enum SockState {
    /// Made by socket(2): neither bound nor connected.
    #[default]
    Fresh,
    /// Bound to a name (its port takes no connections until listen).
    Bound(Shared<Port>),
    /// Listening on its port.
    Listening(Shared<Port>),
    /// Connected (socketpair, connect, or accept).
    Connected(UnixStream),
    /// A datagram socket (its whole life: bound and connected are its
    /// fields).
    Dgram(Dgram),
}

/// AF_UNIX.
pub const AF_UNIX: u16 = 1;

/// A socket: AF_UNIX, or AF_INET/AF_INET6 on the loopback network
/// ([`super::inet`]).
#[derive(Debug)]
pub struct Socket {
    /// Where it is in its life.
    pub state: SockState,
    /// Its own address (sockaddr_un bytes after the family), once bound.
    pub name: Option<Vec<u8>>,
    /// Its type.
    pub ty: SockType,
    /// SO_RCVTIMEO: a blocking receive gives up (EAGAIN) after this.
    pub rcvtimeo: Option<Duration>,
    /// SO_SNDTIMEO: a blocking send gives up after this.
    pub sndtimeo: Option<Duration>,
    /// SO_PASSCRED: receive the sender's credentials (SCM_CREDENTIALS),
    /// and send its own along a stream.
    pub passcred: bool,
    /// Its address family (AF_UNIX, AF_INET, AF_INET6).
    pub family: u16,
    /// Integer options set and read back as they are (SO_REUSEADDR,
    /// SO_KEEPALIVE, TCP_NODELAY, IPV6_V6ONLY...), by (level, name).
    pub opts: std::collections::BTreeMap<(u64, u64), i32>,
    /// A non-blocking connect said EINPROGRESS: the next connect says 0
    /// (then EISCONN), as Linux reports the connection made.
    pub connect_pending: bool,
    /// TCP: a send found the peer gone and was taken (Linux's peer answers
    /// it with a reset); the next send fails (EPIPE).
    pub reset: bool,
    /// The protocol socket(2) was given (SO_PROTOCOL; 0: the default).
    pub protocol: i32,
    /// A TCP connect to another host that the network stack has not
    /// answered yet (the socket is `Connected` to the stack's end; its
    /// bytes wait until the handshake ends).
    pub connecting: Option<Arc<Connecting>>,
    /// A pending socket error (SO_ERROR), such as a connect refused.
    pub error: Option<i64>,
    /// The port a connected Internet socket was bound to: held while it
    /// is connected, so no other socket takes its name.
    pub held: Option<Shared<Port>>,
}

/// How a TCP connect to another host ended, set by the network stack
/// (which then wakes the waiters of the connection's pipes).
///
/// ```
/// use vkernel_linux::fs::socket::Connecting;
/// let c = Connecting::default();
/// assert_eq!(c.result(), None);
/// c.fail(111);
/// assert_eq!(c.result(), Some(Err(111)));
/// ```
#[derive(Debug, Default)]
pub struct Connecting(std::sync::atomic::AtomicI64);

impl Connecting {
    /// None while the handshake runs; then made (Ok) or the errno.
    pub fn result(&self) -> Option<Result<(), i64>> {
        match self.0.load(std::sync::atomic::Ordering::Acquire) {
            0 => None,
            1 => Some(Ok(())),
            e => Some(Err(-e)),
        }
    }

    /// The connection is made.
    pub fn made(&self) {
        self.0.store(1, std::sync::atomic::Ordering::Release);
    }

    /// The connect failed with errno `e` (ECONNREFUSED, ETIMEDOUT...).
    pub fn fail(&self, e: i64) {
        self.0
            .store(-e.max(2), std::sync::atomic::Ordering::Release);
    }
}

impl Default for Socket {
    fn default() -> Self {
        Socket {
            state: SockState::Fresh,
            name: None,
            ty: SockType::Stream,
            rcvtimeo: None,
            sndtimeo: None,
            passcred: false,
            family: AF_UNIX,
            opts: std::collections::BTreeMap::new(),
            connect_pending: false,
            reset: false,
            protocol: 0,
            connecting: None,
            error: None,
            held: None,
        }
    }
}

impl Socket {
    /// Is it an Internet socket (AF_INET, AF_INET6)?
    pub fn is_inet(&self) -> bool {
        self.family != AF_UNIX
    }

    /// A fresh AF_UNIX socket of type `ty` (a datagram socket has its
    /// queue from the start).
    pub fn new(ty: SockType) -> Socket {
        Socket::new_in(AF_UNIX, ty)
    }

    /// A fresh socket of `family` and type `ty`.
    pub fn new_in(family: u16, ty: SockType) -> Socket {
        Socket {
            state: if ty == SockType::Dgram {
                SockState::Dgram(Dgram::new())
            } else {
                SockState::Fresh
            },
            ty,
            family,
            ..Socket::default()
        }
    }

    /// A connected socket over `s`.
    pub fn connected(s: UnixStream) -> Socket {
        Socket {
            state: SockState::Connected(s),
            ..Socket::default()
        }
    }

    /// A connected socket of type `ty` over `s`.
    pub fn connected_of(ty: SockType, s: UnixStream) -> Socket {
        Socket {
            ty,
            ..Socket::connected(s)
        }
    }

    /// A datagram socket over `d`.
    pub fn dgram(d: Dgram) -> Socket {
        Socket {
            state: SockState::Dgram(d),
            ty: SockType::Dgram,
            ..Socket::default()
        }
    }

    /// The connection, if connected.
    pub fn stream(&self) -> Option<&UnixStream> {
        match &self.state {
            SockState::Connected(s) => Some(s),
            _ => None,
        }
    }

    /// The connection, if connected.
    pub fn stream_mut(&mut self) -> Option<&mut UnixStream> {
        match &mut self.state {
            SockState::Connected(s) => Some(s),
            _ => None,
        }
    }

    /// Become connected over `s`, holding the port it was bound to.
    pub fn connect_over(&mut self, s: UnixStream) {
        if let SockState::Bound(p) = std::mem::replace(&mut self.state, SockState::Connected(s)) {
            self.held = Some(p);
        }
    }

    /// The socket's last fd closed: a listener stops listening (clients
    /// waiting in its backlog see their connection end). Returns the
    /// waiters to wake.
    pub fn close(&mut self) -> Vec<(i32, Arc<dyn Wake>)> {
        match std::mem::take(&mut self.state) {
            SockState::Listening(p) | SockState::Bound(p) => {
                let mut port = p.borrow_mut();
                port.listening = false;
                let pending = std::mem::take(&mut port.backlog);
                let w = port.take_waiters();
                drop(port);
                drop(pending);
                w
            }
            // The stream's own drop wakes its peer.
            _ => Vec::new(),
        }
    }
}

impl super::Fs {
    /// Bind `port` to the abstract name `name`; false when a live socket
    /// holds it (EADDRINUSE).
    pub fn bind_abstract(&self, name: &[u8], port: &Shared<Port>) -> bool {
        let mut names = self
            .abstract_names
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        names.retain(|_, p| p.upgrade().is_some());
        if names.contains_key(name) {
            return false;
        }
        names.insert(name.to_vec(), port.downgrade());
        true
    }

    /// The port bound to the abstract name `name`, if a socket holds it.
    pub fn find_abstract(&self, name: &[u8]) -> Option<Shared<Port>> {
        let names = self
            .abstract_names
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        names.get(name).and_then(super::pipe::WeakShared::upgrade)
    }
}
