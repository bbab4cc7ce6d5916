//! AF_UNIX messages: datagram sockets (SOCK_DGRAM, and SOCK_RAW, which
//! Linux makes one) and the data path of seqpacket sockets. A message
//! keeps its boundaries: a receive takes one message, cut to the room
//! given (MSG_TRUNC says so), and a send queues one whole message or
//! waits for room (EMSGSIZE beyond [`MAX_MESSAGE`]).
//!
//! A datagram socket owns its queue ([`Dgram::inbox`]); sending looks up
//! the queue of a bound name (the port's) or of the connected peer. A
//! connected datagram socket takes messages only from its peer (EPERM
//! for others, as Linux's unix_may_send); a peer that went is refused
//! once (ECONNREFUSED) and then forgotten (ENOTCONN). Seqpacket sockets
//! are connected like streams ([`super::unix`]) over two message queues.

use std::time::{Duration, Instant};

use super::errno::*;
use super::unix::Addr;
use super::{EBLOCK, R};
use crate::abi::socket::{MSG_DONTWAIT, MSG_OOB, MSG_PEEK};
use crate::files::{
    self, FileKind, Pipe, Shared, SockState, SockType, MAX_DGRAM_QLEN, MAX_MESSAGE,
};
use crate::fs::pipe::Message;
use crate::Vproc;

/// One message received: the message (empty at end of file) and the
/// queue it came from (to put it back if it cannot be delivered).
pub(super) struct Received {
    /// The message.
    pub(super) msg: Message,
    /// Where it was (None at end of file).
    pub(super) queue: Option<Shared<Pipe>>,
    /// It was only looked at (MSG_PEEK).
    pub(super) peeked: bool,
}

impl Received {
    /// Nothing: end of file.
    fn eof() -> Received {
        Received {
            msg: Message {
                data: Vec::new(),
                from: None,
                attach: None,
            },
            queue: None,
            peeked: false,
        }
    }

    /// It could not be delivered: back in front of its queue.
    pub(super) fn put_back(self) {
        if let (Some(q), false) = (self.queue, self.peeked) {
            q.borrow_mut().unpop_message(self.msg);
        }
    }
}

/// Where one send goes.
struct Route {
    /// The receiving queue.
    queue: Shared<Pipe>,
    /// This socket's name (the receiver's "from").
    from: Option<Vec<u8>>,
    /// This socket's own queue id (a datagram socket's), for the
    /// receiver's peer filter.
    own: Option<usize>,
    /// The queue is the connected peer's (forget it when it went).
    to_peer: bool,
    /// May wait for room.
    nonblock: bool,
}

impl Vproc {
    /// The deadline SO_RCVTIMEO/SO_SNDTIMEO `timeo` sets for this call.
    pub(super) fn sock_deadline(&mut self, timeo: Option<Duration>) -> Option<Instant> {
        self.call_deadline(timeo.filter(|t| !t.is_zero()))
    }

    /// A socket call's result under a timeout: a wait past `deadline`
    /// ends with EAGAIN (what moved so far stays moved).
    pub(super) fn sock_timed(&mut self, deadline: Option<Instant>, r: R) -> R {
        match (r, deadline) {
            (Err(EBLOCK), Some(d)) if Instant::now() >= d => {
                if self.call.progress > 0 {
                    Ok(self.call.progress as i64)
                } else {
                    Err(EAGAIN)
                }
            }
            (r, _) => r,
        }
    }

    /// Where a message from socket `fd` to `to` (None: its peer) goes.
    fn route(&mut self, fd: i64, to: Option<Addr>, flags: u64) -> Result<Route, i64> {
        let file = self.socket_of(fd)?;
        let f = file.borrow();
        let FileKind::Socket(sk) = &f.kind else {
            return Err(ENOTSOCK);
        };
        let nonblock = f.flags & files::O_NONBLOCK != 0 || flags & MSG_DONTWAIT != 0;
        match &sk.state {
            // Seqpacket: connected, any address is ignored.
            SockState::Connected(s) => {
                if s.shut_wr {
                    return Err(EPIPE);
                }
                Ok(Route {
                    queue: s.tx.clone(),
                    from: None,
                    own: None,
                    to_peer: true,
                    nonblock,
                })
            }
            SockState::Dgram(d) => {
                let own = Some(d.inbox.id());
                let from = sk.name.clone();
                if let Some(a) = to {
                    drop(f);
                    let port = self.find_port(&a, SockType::Dgram)?;
                    let p = port.borrow();
                    if p.ty != SockType::Dgram {
                        return Err(ECONNREFUSED);
                    }
                    let queue = p.inbox.as_ref().and_then(|q| q.upgrade());
                    return Ok(Route {
                        queue: queue.ok_or(ECONNREFUSED)?,
                        from,
                        own,
                        to_peer: false,
                        nonblock,
                    });
                }
                let (queue, _) = d.peer.as_ref().ok_or(ENOTCONN)?;
                Ok(Route {
                    queue: queue.clone(),
                    from,
                    own,
                    to_peer: true,
                    nonblock,
                })
            }
            _ => Err(ENOTCONN),
        }
    }

    /// Send `data` as one message on socket `fd` (a datagram or seqpacket
    /// socket), to `to` or its peer, with `attach` going along.
    pub(super) fn msg_send(
        &mut self,
        fd: i64,
        data: &[u8],
        flags: u64,
        to: Option<Addr>,
        attach: Option<Box<dyn std::any::Any + Send>>,
    ) -> R {
        if flags & MSG_OOB != 0 {
            return Err(EOPNOTSUPP);
        }
        let file = self.socket_of(fd)?;
        if Self::is_netlink(&file) {
            return self.netlink_send(&file, data);
        }
        if Self::family_of(&file) != files::AF_UNIX {
            return self.udp_send(&file, fd, data, flags, to);
        }
        let r = self.route(fd, to, flags)?;
        if data.len() > MAX_MESSAGE {
            return Err(EMSGSIZE);
        }
        let mut q = r.queue.borrow_mut();
        if q.readers == 0 {
            drop(q);
            if r.own.is_none() {
                // A seqpacket peer that went: EPIPE (no SIGPIPE).
                return Err(EPIPE);
            }
            if r.to_peer {
                self.forget_peer(fd);
            }
            return Err(ECONNREFUSED);
        }
        if q.only_from.is_some() && q.only_from != r.own {
            return Err(EPERM);
        }
        let from_peer = r.own.is_none() || q.only_from == r.own;
        if !q.fits(data.len()) || (!from_peer && q.queued() > MAX_DGRAM_QLEN) {
            if r.nonblock {
                return Err(EAGAIN);
            }
            let k = self.kernel()?;
            q.wait(self.pid, k);
            drop(q);
            return self.block();
        }
        q.push_message(data, r.from, attach);
        let w = q.take_waiters();
        drop(q);
        files::wake_all(w);
        Ok(data.len() as i64)
    }

    /// A UDP send on the loopback network: an unbound sender takes an
    /// ephemeral port first; a datagram nobody takes (no socket on the
    /// port, a full queue, a receiver connected elsewhere) is dropped, as
    /// UDP drops it, and the send still succeeds.
    fn udp_send(
        &mut self,
        file: &Shared<files::OpenFile>,
        fd: i64,
        data: &[u8],
        flags: u64,
        to: Option<Addr>,
    ) -> R {
        if super::ping::is_ping_file(file) {
            return self.ping_send(file, data, to);
        }
        // The largest UDP payload over IPv4 (65,535 less the headers).
        if data.len() > 65_507 {
            return Err(EMSGSIZE);
        }
        self.inet_autobind(file)?;
        if let Some(to) = self.out_destination(file, to.as_ref())? {
            return self.udp_send_out(file, data, to);
        }
        let r = match self.route(fd, to, flags) {
            Ok(r) => r,
            Err(ECONNREFUSED) => return Ok(data.len() as i64),
            Err(e) => return Err(e),
        };
        // A sender bound to the unspecified address sends from loopback
        // (the address the route to the receiver gives it).
        let from = r
            .from
            .map(|b| match crate::fs::inet::InetName::from_bytes(&b) {
                Some(n) if n.is_unspecified() => n.destination().to_bytes(),
                _ => b,
            });
        let mut q = r.queue.borrow_mut();
        let taken = q.readers > 0
            && q.only_from.is_none_or(|o| Some(o) == r.own)
            && q.fits(data.len())
            && q.queued() <= MAX_DGRAM_QLEN;
        if taken {
            q.push_message(data, from, None);
            let w = q.take_waiters();
            drop(q);
            files::wake_all(w);
        }
        Ok(data.len() as i64)
    }

    /// Where a UDP send to `to` (or the connected peer) goes when it
    /// leaves the vkernel: the network's address and port.
    fn out_destination(
        &self,
        file: &Shared<files::OpenFile>,
        to: Option<&Addr>,
    ) -> Result<Option<std::net::SocketAddr>, i64> {
        let n = match to {
            Some(Addr::Inet(n)) => *n,
            Some(_) => return Ok(None),
            None => {
                let f = file.borrow();
                let peer = match &f.kind {
                    FileKind::Socket(sk) => match &sk.state {
                        SockState::Dgram(d) => d.peer.as_ref().and_then(|(_, n)| n.clone()),
                        _ => None,
                    },
                    _ => None,
                };
                match peer
                    .as_deref()
                    .and_then(crate::fs::inet::InetName::from_bytes)
                {
                    Some(n) => n,
                    None => return Ok(None),
                }
            }
        };
        let dest = n.destination();
        Ok(match self.way(dest)? {
            super::tapnet::Way::Out(to) => Some(to),
            // The host network: a loopback port no vproc holds is the
            // host's.
            super::tapnet::Way::Local
                if self.net().is_some_and(|n| n.is_host())
                    && self
                        .fs
                        .inet()
                        .find(crate::fs::inet::Proto::Udp, dest)
                        .is_none() =>
            {
                Some(dest.socket_addr())
            }
            super::tapnet::Way::Local => None,
        })
    }

    /// connect(2) of a UDP socket to `to` on the network: its default
    /// destination; its own address becomes the tap's.
    fn udp_connect_out(
        &mut self,
        file: &Shared<files::OpenFile>,
        to: crate::fs::inet::InetName,
    ) -> R {
        let dest = to.socket_addr();
        let mut f = file.borrow_mut();
        let FileKind::Socket(sk) = &mut f.kind else {
            return Err(ENOTSOCK);
        };
        let SockState::Dgram(d) = &mut sk.state else {
            return Err(EINVAL);
        };
        // Nothing inside the vkernel sends to the network's peer's queue:
        // sends go to the network (`out_destination`).
        d.peer = Some((Shared::new(Pipe::messages(0)), Some(to.to_bytes())));
        d.inbox.borrow_mut().only_from = None;
        let inbox = d.inbox.clone();
        let name = sk
            .name
            .as_deref()
            .and_then(crate::fs::inet::InetName::from_bytes);
        drop(f);
        if let Some(n) = name {
            // Its own address becomes the one the network reaches the
            // peer from.
            let own = self.local_name_for(dest, n.port).ok_or(ENETUNREACH)?;
            if let Some(net) = self.net() {
                net.udp_open(n.port, inbox.downgrade());
            }
            let mut f = file.borrow_mut();
            if let FileKind::Socket(sk) = &mut f.kind {
                sk.name = Some(own.to_bytes());
            }
        }
        Ok(0)
    }

    /// A datagram socket's connected peer went: forget it.
    fn forget_peer(&mut self, fd: i64) {
        if let Ok(slot) = self.fds.get(fd) {
            let file = slot.file.clone();
            let mut f = file.borrow_mut();
            if let FileKind::Socket(sk) = &mut f.kind {
                if let SockState::Dgram(d) = &mut sk.state {
                    d.disconnect();
                }
            }
        }
    }

    /// Receive one message of socket `fd` (a datagram or seqpacket
    /// socket); MSG_PEEK leaves it queued.
    pub(super) fn msg_recv(&mut self, fd: i64, flags: u64) -> Result<Received, i64> {
        if flags & MSG_OOB != 0 {
            return Err(EOPNOTSUPP);
        }
        let file = self.socket_of(fd)?;
        let (queue, shut, paired, nonblock) = {
            let f = file.borrow();
            let FileKind::Socket(sk) = &f.kind else {
                return Err(ENOTSOCK);
            };
            let nonblock = f.flags & files::O_NONBLOCK != 0 || flags & MSG_DONTWAIT != 0;
            match &sk.state {
                SockState::Connected(s) => (s.rx.clone(), s.shut_rd, true, nonblock),
                SockState::Dgram(d) => (d.inbox.clone(), d.shut_rd, false, nonblock),
                _ => return Err(ENOTCONN),
            }
        };
        let mut q = queue.borrow_mut();
        let peek = flags & MSG_PEEK != 0;
        if let Some(msg) = q.pop_message(peek) {
            let w = if peek { Vec::new() } else { q.take_waiters() };
            drop(q);
            files::wake_all(w);
            return Ok(Received {
                msg,
                queue: Some(queue),
                peeked: peek,
            });
        }
        // A seqpacket peer that went (no writer left), or SHUT_RD; a
        // datagram socket has no end of file.
        if shut || paired && q.writers == 0 {
            return Ok(Received::eof());
        }
        if nonblock {
            return Err(EAGAIN);
        }
        let k = self.kernel()?;
        q.wait(self.pid, k);
        drop(q);
        self.block().map(|_| Received::eof())
    }

    /// connect(2) of a datagram socket: `a` becomes where it sends by
    /// default and the only sender it hears; AF_UNSPEC (`None`)
    /// disconnects.
    pub(super) fn dgram_connect(&mut self, fd: i64, a: Option<Addr>) -> R {
        let file = self.socket_of(fd)?;
        let Some(a) = a else {
            let mut f = file.borrow_mut();
            if let FileKind::Socket(sk) = &mut f.kind {
                if let SockState::Dgram(d) = &mut sk.state {
                    d.disconnect();
                }
            }
            return Ok(0);
        };
        if let Addr::Inet(to) = a {
            return self.udp_connect(&file, to);
        }
        let port = self.find_port(&a, SockType::Dgram)?;
        let (queue, name) = {
            let p = port.borrow();
            if p.ty != SockType::Dgram {
                return Err(ECONNREFUSED);
            }
            let q = p.inbox.as_ref().and_then(|q| q.upgrade());
            (q.ok_or(ECONNREFUSED)?, p.name.clone())
        };
        let mut f = file.borrow_mut();
        let FileKind::Socket(sk) = &mut f.kind else {
            return Err(ENOTSOCK);
        };
        let SockState::Dgram(d) = &mut sk.state else {
            return Err(EINVAL);
        };
        let own = d.inbox.id();
        // The other side (this one, connecting to itself) must hear from us
        // (unix_may_send).
        let other_filter = queue.borrow().only_from;
        if other_filter.is_some_and(|o| o != own) {
            return Err(EPERM);
        }
        d.inbox.borrow_mut().only_from = Some(queue.id());
        d.peer = Some((queue, Some(name)));
        Ok(0)
    }

    /// connect(2) of a UDP socket to `to`: its default destination and
    /// the only sender it hears. Nobody need be there (UDP has no
    /// handshake): datagrams to a port nobody holds are dropped.
    fn udp_connect(&mut self, file: &Shared<files::OpenFile>, to: crate::fs::inet::InetName) -> R {
        let dest = to.destination();
        let way = self.way(dest)?;
        self.inet_autobind(file)?;
        if let super::tapnet::Way::Out(_) = way {
            return self.udp_connect_out(file, dest);
        }
        let queue = match self.find_port(&Addr::Inet(dest), SockType::Dgram) {
            Ok(port) => port.borrow().inbox.as_ref().and_then(|q| q.upgrade()),
            Err(_) => None,
        }
        // Nobody there: a queue nobody reads takes (and drops) what is sent.
        .unwrap_or_else(|| Shared::new(Pipe::messages(0)));
        let mut f = file.borrow_mut();
        let FileKind::Socket(sk) = &mut f.kind else {
            return Err(ENOTSOCK);
        };
        let SockState::Dgram(d) = &mut sk.state else {
            return Err(EINVAL);
        };
        d.inbox.borrow_mut().only_from = Some(queue.id());
        d.peer = Some((queue, Some(dest.to_bytes())));
        // The socket's own address becomes the one it reaches the peer by.
        if let Some(n) = sk
            .name
            .as_deref()
            .and_then(crate::fs::inet::InetName::from_bytes)
        {
            if n.is_unspecified() {
                let own = crate::fs::inet::InetName { ip: dest.ip, ..n };
                sk.name = Some(own.to_bytes());
            }
        }
        Ok(0)
    }
}
