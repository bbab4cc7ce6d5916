//! AF_UNIX stream sockets: a connected pair of ends ([`UnixStream`], two
//! pipes crossing), a socket's life ([`Socket`]: fresh, bound, listening,
//! connected) and the rendezvous a bound name leads to ([`Port`]: its
//! listen backlog), which a socket node of the tree or an abstract name
//! holds. They live beside the file tree because a socket node holds its
//! port; the fd table ([`crate::files`]) re-exports them.

use std::collections::VecDeque;
use std::sync::Arc;

use super::pipe::{wake_all, Pipe, Shared, Waiters, Wake};

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
        let (a, b) = (Shared::new(Pipe::default()), Shared::new(Pipe::default()));
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
}

/// An AF_UNIX stream socket.
#[derive(Debug, Default)]
pub struct Socket {
    /// Where it is in its life.
    pub state: SockState,
    /// Its own address (sockaddr_un bytes after the family), once bound.
    pub name: Option<Vec<u8>>,
}

impl Socket {
    /// A connected socket over `s`.
    pub fn connected(s: UnixStream) -> Socket {
        Socket {
            state: SockState::Connected(s),
            name: None,
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
