//! `--net host`: the vprocs' Internet sockets beyond loopback are carried
//! out on host sockets the vkernel owns (as gVisor's `--network=host`),
//! so a vproc reaches what the vkernel process reaches and serves on the
//! host's ports. Less isolated than a tap: the vprocs share the host's
//! network identity.
//!
//! The vproc side is the tap stack's (a stream whose other end this
//! thread holds, a listener's backlog, a UDP queue); this thread moves
//! bytes between those pipes and the host sockets, woken by mio for the
//! sockets and by the pipes' waiters for the vprocs.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::{stream_pair, Cmd, Common, NetError, StackWake, STACK_PID};
use crate::fs::inet::InetName;
use crate::fs::pipe::{wake_all, Pipe, Wake, WeakShared};
use crate::fs::socket::{Connecting, Port, UnixStream};

const WAKE: Token = Token(usize::MAX);
/// Bytes moved per read from a host socket.
const CHUNK: usize = 64 << 10;

/// Start the host network's thread.
pub(crate) fn spawn() -> Result<Arc<Common>, NetError> {
    let poll = Poll::new().map_err(NetError::Thread)?;
    let waker = Waker::new(poll.registry(), WAKE).map_err(NetError::Thread)?;
    let common = Arc::new(Common {
        cmds: Mutex::new(Vec::new()),
        addr: std::sync::atomic::AtomicU32::new(0),
        conns: std::sync::atomic::AtomicUsize::new(0),
        dhcp_dns: Mutex::new(Vec::new()),
        counters: Default::default(),
        prefix: Default::default(),
        waker,
        cfg: None,
    });
    let c = common.clone();
    std::thread::Builder::new()
        .name("vk-hostnet".into())
        .spawn(move || {
            let run = std::panic::AssertUnwindSafe(|| HostNet::new(c, poll).run());
            if std::panic::catch_unwind(run).is_err() {
                log::error!("the host network thread failed: the network is down");
            }
        })
        .map_err(NetError::Thread)?;
    Ok(common)
}

/// The stored name of a host socket address.
pub(crate) fn name_of(a: SocketAddr) -> Vec<u8> {
    InetName::from(a).to_bytes()
}

/// A connection carried on a host TCP socket.
struct Conn {
    sock: std::net::TcpStream,
    end: Option<UnixStream>,
    connecting: Option<Arc<Connecting>>,
    /// Sent FIN to the host peer.
    fin: bool,
    /// Gave EOF to the vproc.
    eof: bool,
}

struct Listener {
    sock: std::net::TcpListener,
    port: WeakShared<Port>,
}

struct Udp {
    sock: std::net::UdpSocket,
    inbox: WeakShared<Pipe>,
}

/// A host ICMP echo socket carrying one vproc identifier's pings.
struct Ping {
    fd: std::os::fd::OwnedFd,
    inbox: WeakShared<Pipe>,
    /// The vproc's identifier (the host picks its own).
    id: u16,
    /// The vproc's socket is raw (its replies start with an IPv4 header).
    raw: bool,
}

struct HostNet {
    common: Arc<Common>,
    wake: Arc<dyn Wake>,
    poll: Poll,
    next: usize,
    conns: HashMap<usize, Conn>,
    listeners: HashMap<usize, Listener>,
    udp: HashMap<u16, (usize, Udp)>,
    /// Echo sockets by identifier and family (IPv6?).
    pings: HashMap<(u16, bool), Ping>,
    /// Connections accepted in this pump, joining `conns` after it.
    pending: Vec<(usize, Conn)>,
}

/// Errno of a host error (EIO when it has none).
fn errno(e: &std::io::Error) -> i64 {
    e.raw_os_error().map_or(5, i64::from)
}

impl HostNet {
    fn new(common: Arc<Common>, poll: Poll) -> HostNet {
        let wake: Arc<dyn Wake> = Arc::new(StackWake(common.clone()));
        HostNet {
            common,
            wake,
            poll,
            next: 0,
            conns: HashMap::new(),
            listeners: HashMap::new(),
            udp: HashMap::new(),
            pending: Vec::new(),
            pings: HashMap::new(),
        }
    }

    fn register(&mut self, fd: i32) -> usize {
        self.next += 1;
        let t = self.next;
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(t),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("host network: cannot watch a socket: {e}");
        }
        t
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(64);
        loop {
            self.commands();
            while self.pump() {}
            self.common.conns.store(self.conns.len(), Ordering::Release);
            if let Err(e) = self.poll.poll(&mut events, Some(Duration::from_secs(1))) {
                if e.kind() != ErrorKind::Interrupted {
                    log::error!("the host network thread's poll failed: {e}");
                    return;
                }
            }
        }
    }

    fn commands(&mut self) {
        let cmds = std::mem::take(&mut *self.common.cmds.lock().unwrap_or_else(|e| e.into_inner()));
        for cmd in cmds {
            match cmd {
                Cmd::HostConnect { end, sock, state } => {
                    let t = self.register(sock.as_raw_fd());
                    self.conns.insert(
                        t,
                        Conn {
                            sock,
                            end: Some(end),
                            connecting: Some(state),
                            fin: false,
                            eof: false,
                        },
                    );
                }
                Cmd::HostListen { sock, listener } => {
                    let t = self.register(sock.as_raw_fd());
                    self.listeners.insert(
                        t,
                        Listener {
                            sock,
                            port: listener,
                        },
                    );
                }
                Cmd::UdpOpen { port, inbox } => self.udp_open(port, inbox),
                Cmd::UdpSendTo {
                    port,
                    inbox,
                    to,
                    data,
                } => {
                    self.udp_open(port, inbox);
                    if let Some((_, u)) = self.udp.get(&port) {
                        if let Err(e) = u.sock.send_to(&data, to) {
                            log::debug!("host UDP datagram to {to} dropped: {e}");
                        }
                    }
                }
                Cmd::Ping {
                    id,
                    inbox,
                    to,
                    data,
                    raw,
                } => self.ping(id, inbox, to, &data, raw),
                _ => {}
            }
        }
    }

    fn ping(
        &mut self,
        id: u16,
        inbox: WeakShared<Pipe>,
        to: std::net::IpAddr,
        data: &[u8],
        raw: bool,
    ) {
        let v6 = to.is_ipv6();
        if !self.pings.contains_key(&(id, v6)) {
            let (family, proto) = if v6 {
                (libc::AF_INET6, libc::IPPROTO_ICMPV6)
            } else {
                (libc::AF_INET, libc::IPPROTO_ICMP)
            };
            // SAFETY: socket(2) with constant arguments; checked below.
            let fd = unsafe {
                libc::socket(
                    family,
                    libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    proto,
                )
            };
            if fd < 0 {
                log::warn!(
                    "host network: no ICMP echo socket on the host ({}): net.ipv4.ping_group_range \
                     must include the vkernel's group",
                    std::io::Error::last_os_error()
                );
                return;
            }
            // SAFETY: fd is a new socket owned from here.
            let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            self.register(fd.as_raw_fd());
            self.pings.insert(
                (id, v6),
                Ping {
                    fd,
                    inbox: inbox.clone(),
                    id,
                    raw,
                },
            );
        }
        let Some(p) = self.pings.get_mut(&(id, v6)) else {
            return;
        };
        p.inbox = inbox;
        p.raw = raw;
        let (sa, len) = super::sockaddr(SocketAddr::new(to, 0));
        // SAFETY: `data` is a readable buffer of its length; `sa` holds a
        // sockaddr of `len` bytes.
        let rc = unsafe {
            libc::sendto(
                p.fd.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                0,
                std::ptr::addr_of!(sa).cast(),
                len,
            )
        };
        if rc < 0 {
            log::debug!("echo request to {to}: {}", std::io::Error::last_os_error());
        }
    }

    /// Echo replies from the host's sockets, with the vproc's identifier.
    fn pump_pings(&mut self) -> bool {
        let mut moved = false;
        let mut buf = vec![0u8; 65536];
        self.pings.retain(|_, p| p.inbox.upgrade().is_some());
        for p in self.pings.values() {
            let Some(inbox) = p.inbox.upgrade() else {
                continue;
            };
            loop {
                // SAFETY: sockaddr_storage is plain old data.
                let mut sa: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
                let mut len = libc::socklen_t::try_from(std::mem::size_of_val(&sa)).expect("small");
                // SAFETY: `buf` is writable for its length, `sa` for `len`.
                let n = unsafe {
                    libc::recvfrom(
                        p.fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        std::ptr::addr_of_mut!(sa).cast(),
                        &mut len,
                    )
                };
                let Ok(n) = usize::try_from(n) else {
                    break;
                };
                let Some(from) = super::from_sockaddr(&sa) else {
                    continue;
                };
                if n < 8 {
                    continue;
                }
                let msg = &mut buf[..n];
                msg[4..6].copy_from_slice(&p.id.to_be_bytes());
                msg[2] = 0;
                msg[3] = 0;
                let c = super::checksum(msg);
                msg[2..4].copy_from_slice(&c.to_be_bytes());
                let mut m = Vec::with_capacity(n + 20);
                if let (true, SocketAddr::V4(src)) = (p.raw, from) {
                    let lo = std::net::Ipv4Addr::LOCALHOST;
                    m.extend(super::ipv4_header(*src.ip(), lo, n));
                }
                m.extend_from_slice(msg);
                let mut q = inbox.borrow_mut();
                if q.readers > 0 && q.fits(m.len()) {
                    q.push_message(&m, Some(name_of(from)), None);
                    let w = q.take_waiters();
                    drop(q);
                    wake_all(w);
                }
                moved = true;
            }
        }
        moved
    }

    fn udp_open(&mut self, port: u16, inbox: WeakShared<Pipe>) {
        if let Some((_, u)) = self.udp.get_mut(&port) {
            if u.inbox.upgrade().is_none() {
                u.inbox = inbox;
            }
            return;
        }
        // Dual-stack [::]:port takes IPv4 and IPv6 datagrams.
        let sock = std::net::UdpSocket::bind(("::", port))
            .or_else(|_| std::net::UdpSocket::bind(("0.0.0.0", port)));
        match sock {
            Ok(sock) => {
                let _ = sock.set_nonblocking(true);
                let t = self.register(sock.as_raw_fd());
                self.udp.insert(port, (t, Udp { sock, inbox }));
            }
            Err(e) => log::warn!("host network: UDP port {port} unavailable on the host: {e}"),
        }
    }

    /// Move what can move; true if anything did.
    fn pump(&mut self) -> bool {
        let mut moved = false;
        let keys: Vec<usize> = self.conns.keys().copied().collect();
        for t in keys {
            let (m, done) = self.pump_conn(t);
            moved |= m;
            if done {
                if let Some(c) = self.conns.remove(&t) {
                    let _ = self
                        .poll
                        .registry()
                        .deregister(&mut SourceFd(&c.sock.as_raw_fd()));
                }
            }
        }
        moved | self.pump_listeners() | self.pump_udp() | self.pump_pings()
    }

    fn pump_conn(&mut self, t: usize) -> (bool, bool) {
        let wake = self.wake.clone();
        let Some(c) = self.conns.get_mut(&t) else {
            return (false, true);
        };
        let mut woken = Vec::new();
        let mut moved = false;
        if let Some(state) = &c.connecting {
            match c.sock.take_error() {
                Ok(Some(e)) | Err(e) => {
                    state.fail(errno(&e));
                    c.end = None;
                    return (true, true);
                }
                Ok(None) => {}
            }
            if c.sock.peer_addr().is_err() {
                // Still connecting; the vproc may give up.
                if let Some(end) = &c.end {
                    end.rx.borrow_mut().wait(STACK_PID, wake);
                    if end.rx.borrow().writers == 0 && end.tx.borrow().readers == 0 {
                        return (true, true);
                    }
                }
                return (false, false);
            }
            state.made();
            c.connecting = None;
            if let Some(end) = &c.end {
                woken.extend(end.rx.borrow_mut().take_waiters());
                woken.extend(end.tx.borrow_mut().take_waiters());
            }
            moved = true;
        }
        let Some(end) = &mut c.end else {
            return (false, true);
        };
        // Out: the vproc's bytes to the host socket.
        {
            let mut q = end.rx.borrow_mut();
            let mut took = false;
            while !q.buf.is_empty() {
                let (a, _) = q.buf.as_slices();
                match (&c.sock).write(a) {
                    Ok(0) => break,
                    Ok(n) => {
                        q.buf.drain(..n);
                        took = true;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        // The peer is gone: what is left goes nowhere.
                        q.buf.clear();
                        took = true;
                        break;
                    }
                }
            }
            if took {
                moved = true;
                woken.extend(q.take_waiters());
            }
            if q.writers == 0 && q.buf.is_empty() && !c.fin {
                let _ = c.sock.shutdown(Shutdown::Write);
                c.fin = true;
                moved = true;
            }
            q.wait(STACK_PID, wake.clone());
        }
        // In: the host peer's bytes to the vproc.
        let mut reset = false;
        {
            let mut q = end.tx.borrow_mut();
            let mut got = false;
            let mut buf = [0u8; CHUNK];
            while !c.eof && (q.readers == 0 || q.buf.len() < q.capacity) {
                let room = if q.readers == 0 {
                    CHUNK
                } else {
                    (q.capacity - q.buf.len()).min(CHUNK)
                };
                match (&c.sock).read(&mut buf[..room]) {
                    Ok(0) => {
                        c.eof = true;
                    }
                    Ok(n) => {
                        if q.readers > 0 {
                            q.buf.extend(&buf[..n]);
                            got = true;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        c.eof = true;
                        reset = true;
                    }
                }
            }
            if got {
                moved = true;
                woken.extend(q.take_waiters());
            }
            q.wait(STACK_PID, wake);
        }
        if c.eof && !end.shut_wr {
            woken.extend(end.shutdown(reset, true));
            moved = true;
        }
        let gone = end.tx.borrow().readers == 0 && {
            let q = end.rx.borrow();
            q.writers == 0 && q.buf.is_empty()
        };
        wake_all(woken);
        if gone {
            c.end = None;
            return (true, true);
        }
        (moved, false)
    }

    fn pump_listeners(&mut self) -> bool {
        let mut moved = false;
        let mut dead = Vec::new();
        for (&t, l) in self.listeners.iter() {
            let Some(port) = l.port.upgrade().filter(|p| p.borrow().listening) else {
                dead.push(t);
                continue;
            };
            loop {
                let mut p = port.borrow_mut();
                if p.full() {
                    // The host queues the rest; an accept wakes this thread.
                    p.wait(STACK_PID, self.wake.clone());
                    break;
                }
                let (sock, peer) = match l.sock.accept() {
                    Ok(x) => x,
                    Err(_) => break,
                };
                let _ = sock.set_nonblocking(true);
                let _ = sock.set_nodelay(true);
                let (mine, mut theirs) = stream_pair();
                theirs.peer = Some(name_of(peer));
                theirs.local = sock.local_addr().ok().map(name_of);
                p.backlog.push_back(theirs);
                let w = p.take_waiters();
                drop(p);
                wake_all(w);
                self.next += 1;
                let tok = self.next;
                let _ = self.poll.registry().register(
                    &mut SourceFd(&sock.as_raw_fd()),
                    Token(tok),
                    Interest::READABLE | Interest::WRITABLE,
                );
                self.pending.push((
                    tok,
                    Conn {
                        sock,
                        end: Some(mine),
                        connecting: None,
                        fin: false,
                        eof: false,
                    },
                ));
                moved = true;
            }
        }
        for (t, c) in self.pending.drain(..) {
            self.conns.insert(t, c);
        }
        for t in dead {
            if let Some(l) = self.listeners.remove(&t) {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&l.sock.as_raw_fd()));
            }
        }
        moved
    }

    fn pump_udp(&mut self) -> bool {
        let mut moved = false;
        let mut dead = Vec::new();
        let mut buf = vec![0u8; 65536];
        for (&port, (_, u)) in self.udp.iter() {
            let Some(inbox) = u.inbox.upgrade() else {
                dead.push(port);
                continue;
            };
            let mut woken = Vec::new();
            while let Ok((n, from)) = u.sock.recv_from(&mut buf) {
                let from = match from {
                    SocketAddr::V6(v) => match v.ip().to_ipv4_mapped() {
                        Some(a) => SocketAddr::from((a, v.port())),
                        None => from,
                    },
                    v4 => v4,
                };
                let mut q = inbox.borrow_mut();
                if q.readers > 0 && q.fits(n) {
                    q.push_message(&buf[..n], Some(name_of(from)), None);
                    woken.extend(q.take_waiters());
                }
                moved = true;
            }
            wake_all(woken);
        }
        for port in dead {
            if let Some((_, u)) = self.udp.remove(&port) {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&u.sock.as_raw_fd()));
            }
        }
        moved
    }
}
