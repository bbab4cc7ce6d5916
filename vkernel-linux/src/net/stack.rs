//! The network thread: smoltcp's interface on the tap, and the bytes
//! moved between its sockets and the vprocs' pipes and queues.
//!
//! One loop: take the vprocs' commands, let the interface receive and
//! send, move bytes (each connection, listener and UDP port: [`Stack::pump`]),
//! and sleep in mio until a frame arrives, a vproc wakes the thread
//! through a pipe (its waiter [`StackWake`]) or a TCP timer is due.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{dhcpv4, icmp, tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Cidr};
use vkernel_devices::Vke;

use super::device::TapDevice;
use super::{stream_pair, Cmd, Common, NetConfig, NetError, StackWake, STACK_PID};
use crate::fs::pipe::Pipe;
use crate::fs::pipe::{wake_all, Wake, WeakShared};
use crate::fs::socket::{Connecting, Port, UnixStream};

const TAP: Token = Token(0);
const WAKE: Token = Token(1);
/// The stack's buffer for each TCP direction.
const TCP_STACK_BUF: usize = 512 << 10;
/// Connections a listener keeps ready for SYNs.
const LISTEN_READY: usize = 4;
/// A connect not answered in this long fails (ETIMEDOUT); Linux's
/// default of 6 SYN retries takes about as long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(127);
/// UDP datagrams each port buffers in the stack.
const UDP_SLOTS: usize = 64;
const ECONNREFUSED: i64 = 111;
const ETIMEDOUT: i64 = 110;

/// Start the thread for `vke` configured by `cfg`.
pub(crate) fn spawn(vke: Vke, cfg: NetConfig) -> Result<Arc<Common>, NetError> {
    let poll = Poll::new().map_err(NetError::Thread)?;
    let waker = Waker::new(poll.registry(), WAKE).map_err(NetError::Thread)?;
    poll.registry()
        .register(&mut SourceFd(&vke.as_raw_fd()), TAP, Interest::READABLE)
        .map_err(NetError::Thread)?;
    let common = Arc::new(Common {
        cmds: Mutex::new(Vec::new()),
        addr: std::sync::atomic::AtomicU32::new(cfg.ip.map_or(0, |(a, _)| u32::from(a))),
        conns: std::sync::atomic::AtomicUsize::new(0),
        dhcp_dns: Mutex::new(Vec::new()),
        counters: Default::default(),
        prefix: std::sync::atomic::AtomicU8::new(cfg.ip.map_or(0, |(_, p)| p)),
        waker,
        cfg: Some(cfg.clone()),
    });
    let c = common.clone();
    std::thread::Builder::new()
        .name("vk-net".into())
        .spawn(move || {
            let run = std::panic::AssertUnwindSafe(|| Stack::new(vke, c, cfg, poll).run());
            if std::panic::catch_unwind(run).is_err() {
                log::error!("the network thread failed: the tap network is down");
            }
        })
        .map_err(NetError::Thread)?;
    Ok(common)
}

/// A TCP connection the stack carries.
struct Conn {
    tcp: SocketHandle,
    /// The stack's end of the vproc's stream (None: the vproc's end went
    /// and the socket is closing).
    end: Option<UnixStream>,
    /// A connect the vproc waits on.
    connecting: Option<Arc<Connecting>>,
    started: Instant,
    /// FIN sent (the vproc will send no more).
    fin: bool,
    /// End of file given to the vproc (the peer sent FIN).
    eof: bool,
}

/// A vproc's listener and the stack's sockets waiting for SYNs for it.
struct Listener {
    port: WeakShared<Port>,
    ready: Vec<SocketHandle>,
}

/// A UDP port and the queue its datagrams go to.
struct UdpPort {
    udp: SocketHandle,
    inbox: WeakShared<Pipe>,
}

struct Stack {
    iface: Interface,
    dev: TapDevice,
    sockets: SocketSet<'static>,
    common: Arc<Common>,
    wake: Arc<dyn Wake>,
    poll: Poll,
    conns: Vec<Conn>,
    listeners: HashMap<u16, Listener>,
    udp: HashMap<u16, UdpPort>,
    /// ICMP echo sockets by identifier (and whether the vproc's is raw).
    icmp: HashMap<u16, (UdpPort, bool)>,
    dhcp: Option<SocketHandle>,
    epoch: std::time::Instant,
}

fn tcp_socket() -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; TCP_STACK_BUF]),
        tcp::SocketBuffer::new(vec![0; TCP_STACK_BUF]),
    );
    // The vproc's writes arrive in pipe-sized pieces; Nagle would hold
    // the tail of each back.
    s.set_nagle_enabled(false);
    s
}

fn v4(a: IpAddress) -> Ipv4Addr {
    match a {
        IpAddress::Ipv4(a) => a,
        #[allow(unreachable_patterns)]
        _ => Ipv4Addr::UNSPECIFIED,
    }
}

/// The stored name of an IPv4 endpoint.
fn name_of(e: IpEndpoint) -> Vec<u8> {
    super::hostnet::name_of((v4(e.addr), e.port).into())
}

impl Stack {
    fn new(vke: Vke, common: Arc<Common>, cfg: NetConfig, poll: Poll) -> Stack {
        let mut dev = TapDevice::new(vke, cfg.mtu, common.counters.clone());
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(cfg.mac)));
        config.random_seed = {
            let mut b = [0u8; 8];
            crate::random_bytes(&mut b);
            u64::from_le_bytes(b)
        };
        let epoch = std::time::Instant::now();
        let mut iface = Interface::new(config, &mut dev, Instant::from_micros(0));
        let mut sockets = SocketSet::new(Vec::new());
        if let Some((ip, prefix)) = cfg.ip {
            iface.update_ip_addrs(|a| {
                let _ = a.push(IpCidr::Ipv4(Ipv4Cidr::new(ip, prefix)));
            });
            if let Some(gw) = cfg.gateway {
                let _ = iface.routes_mut().add_default_ipv4_route(gw);
            }
        }
        let dhcp = cfg.dhcp.then(|| sockets.add(dhcpv4::Socket::new()));
        let wake: Arc<dyn Wake> = Arc::new(StackWake(common.clone()));
        Stack {
            iface,
            dev,
            sockets,
            common,
            wake,
            poll,
            conns: Vec::new(),
            listeners: HashMap::new(),
            udp: HashMap::new(),
            icmp: HashMap::new(),
            dhcp,
            epoch,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX))
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(8);
        loop {
            self.commands();
            for _ in 0..64 {
                let now = self.now();
                let polled = self.iface.poll(now, &mut self.dev, &mut self.sockets);
                let moved = self.pump();
                if polled == smoltcp::iface::PollResult::None && !moved {
                    break;
                }
            }
            let now = self.now();
            let delay = self
                .iface
                .poll_delay(now, &self.sockets)
                .map(|d| Duration::from_micros(d.total_micros()));
            if let Err(e) = self.poll.poll(&mut events, delay) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::error!("the network thread's poll failed: {e}");
                    return;
                }
            }
        }
    }

    /// Take the vprocs' commands.
    fn commands(&mut self) {
        let cmds = std::mem::take(&mut *self.common.cmds.lock().unwrap_or_else(|e| e.into_inner()));
        for cmd in cmds {
            match cmd {
                Cmd::Connect {
                    end,
                    to,
                    port,
                    state,
                } => self.connect(end, to, port, state),
                Cmd::Listen { port, listener } => {
                    let l = self.listeners.entry(port).or_insert_with(|| Listener {
                        port: listener.clone(),
                        ready: Vec::new(),
                    });
                    l.port = listener;
                }
                Cmd::UdpOpen { port, inbox } => self.udp_open(port, inbox),
                Cmd::HostConnect { .. } | Cmd::HostListen { .. } | Cmd::UdpSendTo { .. } => {}
                Cmd::Ping {
                    id,
                    inbox,
                    to,
                    data,
                    raw,
                } => self.ping(id, inbox, to, &data, raw),
                Cmd::UdpSend {
                    port,
                    inbox,
                    to,
                    data,
                } => {
                    self.udp_open(port, inbox);
                    if let Some(u) = self.udp.get(&port) {
                        let s = self.sockets.get_mut::<udp::Socket>(u.udp);
                        let to = IpEndpoint::new(IpAddress::Ipv4(to.0), to.1);
                        if let Err(e) = s.send_slice(&data, to) {
                            log::debug!("UDP datagram to {to} dropped: {e}");
                        }
                    }
                }
            }
        }
    }

    fn connect(&mut self, end: UnixStream, to: (Ipv4Addr, u16), port: u16, state: Arc<Connecting>) {
        let Some(own) = self.own() else {
            state.fail(101); // ENETUNREACH: no address yet
            return;
        };
        let mut s = tcp_socket();
        s.set_timeout(Some(CONNECT_TIMEOUT.into()));
        let remote = IpEndpoint::new(IpAddress::Ipv4(to.0), to.1);
        let local = IpEndpoint::new(IpAddress::Ipv4(own), port);
        if let Err(e) = s.connect(self.iface.context(), remote, local) {
            log::debug!("connect to {remote} refused by the stack: {e}");
            state.fail(ECONNREFUSED);
            return;
        }
        let tcp = self.sockets.add(s);
        self.conns.push(Conn {
            tcp,
            end: Some(end),
            connecting: Some(state),
            started: self.now(),
            fin: false,
            eof: false,
        });
    }

    fn own(&self) -> Option<Ipv4Addr> {
        match self.common.addr.load(Ordering::Acquire) {
            0 => None,
            a => Some(Ipv4Addr::from(a)),
        }
    }

    fn udp_open(&mut self, port: u16, inbox: WeakShared<Pipe>) {
        if let Some(u) = self.udp.get_mut(&port) {
            if u.inbox.upgrade().is_some() {
                return;
            }
            u.inbox = inbox;
            return;
        }
        let buf = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_SLOTS],
                vec![0; UDP_SLOTS * 2048],
            )
        };
        let mut s = udp::Socket::new(buf(), buf());
        if s.bind(port).is_err() {
            return;
        }
        let udp = self.sockets.add(s);
        self.udp.insert(port, UdpPort { udp, inbox });
    }

    fn ping(
        &mut self,
        id: u16,
        inbox: WeakShared<Pipe>,
        to: std::net::IpAddr,
        data: &[u8],
        raw: bool,
    ) {
        let std::net::IpAddr::V4(to) = to else {
            return;
        };
        let u = self.icmp.entry(id).or_insert_with(|| {
            let buf = || {
                icmp::PacketBuffer::new(
                    vec![icmp::PacketMetadata::EMPTY; UDP_SLOTS],
                    vec![0; UDP_SLOTS * 2048],
                )
            };
            let mut s = icmp::Socket::new(buf(), buf());
            let _ = s.bind(icmp::Endpoint::Ident(id));
            (
                UdpPort {
                    udp: self.sockets.add(s),
                    inbox: inbox.clone(),
                },
                raw,
            )
        });
        u.0.inbox = inbox;
        u.1 = raw;
        let u = &u.0;
        let s = self.sockets.get_mut::<icmp::Socket>(u.udp);
        if let Err(e) = s.send_slice(data, IpAddress::Ipv4(to)) {
            log::debug!("echo request to {to} dropped: {e}");
        }
    }

    /// Move what can move; true if anything did.
    fn pump(&mut self) -> bool {
        let mut moved = self.dhcp_poll();
        let mut i = 0;
        while i < self.conns.len() {
            let (m, done) = self.pump_conn(i);
            moved |= m;
            if done {
                let c = self.conns.swap_remove(i);
                self.sockets.remove(c.tcp);
            } else {
                i += 1;
            }
        }
        moved |= self.pump_listeners();
        moved |= self.pump_udp();
        self.common.conns.store(self.conns.len(), Ordering::Release);
        moved
    }

    /// One connection: (bytes or state moved, the connection is over).
    fn pump_conn(&mut self, i: usize) -> (bool, bool) {
        let now = self.now();
        let wake = self.wake.clone();
        let c = &mut self.conns[i];
        let s = self.sockets.get_mut::<tcp::Socket>(c.tcp);
        let mut moved = false;
        let mut woken = Vec::new();
        if let Some(state) = &c.connecting {
            match s.state() {
                tcp::State::SynSent | tcp::State::SynReceived => {
                    if let Some(end) = &c.end {
                        // The vproc may close before the answer.
                        end.rx.borrow_mut().wait(STACK_PID, wake.clone());
                        if end.rx.borrow().writers == 0 && end.tx.borrow().readers == 0 {
                            s.abort();
                            c.end = None;
                            return (true, true);
                        }
                    }
                    return (false, false);
                }
                tcp::State::Closed | tcp::State::TimeWait => {
                    let waited = now - c.started;
                    state.fail(if waited >= CONNECT_TIMEOUT.into() {
                        ETIMEDOUT
                    } else {
                        ECONNREFUSED
                    });
                    c.connecting = None;
                    // Dropping the end wakes the vproc's waiters.
                    c.end = None;
                    return (true, true);
                }
                _ => {
                    state.made();
                    c.connecting = None;
                    if let Some(end) = &c.end {
                        woken.extend(end.rx.borrow_mut().take_waiters());
                        woken.extend(end.tx.borrow_mut().take_waiters());
                    }
                    moved = true;
                }
            }
        }
        let Some(end) = &mut c.end else {
            // The vproc went: done once the socket has closed.
            return (
                false,
                matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait),
            );
        };
        // Out: what the vproc wrote (end.rx) into the socket.
        {
            let mut q = end.rx.borrow_mut();
            while s.can_send() && !q.buf.is_empty() {
                let (a, _) = q.buf.as_slices();
                match s.send_slice(a) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        q.buf.drain(..n);
                        moved = true;
                    }
                }
            }
            if moved {
                woken.extend(q.take_waiters());
            }
            if q.writers == 0 && q.buf.is_empty() && !c.fin {
                s.close();
                c.fin = true;
                moved = true;
            }
            q.wait(STACK_PID, wake.clone());
        }
        // In: what the peer sent into the vproc's pipe (end.tx).
        let gone = {
            let mut q = end.tx.borrow_mut();
            let mut got = false;
            if q.readers == 0 {
                // Nobody reads any more: drop what comes (Linux resets).
                while s.can_recv() {
                    if s.recv(|b| (b.len(), ())).is_err() {
                        break;
                    }
                }
            }
            while s.can_recv() && q.buf.len() < q.capacity {
                let room = q.capacity - q.buf.len();
                match s.recv(|b| {
                    let n = b.len().min(room);
                    (n, b[..n].to_vec())
                }) {
                    Ok(b) if !b.is_empty() => {
                        q.buf.extend(b);
                        got = true;
                    }
                    _ => break,
                }
            }
            if got {
                moved = true;
                woken.extend(q.take_waiters());
            }
            q.wait(STACK_PID, wake.clone());
            q.readers == 0
        };
        if !s.may_recv() && !s.can_recv() && !c.eof && s.state() != tcp::State::Established {
            // The peer's FIN (or reset): the vproc reads end of file.
            woken.extend(end.shutdown(false, true));
            c.eof = true;
            moved = true;
        }
        let closed = matches!(s.state(), tcp::State::Closed);
        if closed && !c.fin {
            // Reset by the peer: the vproc's writes fail (EPIPE).
            woken.extend(end.shutdown(true, true));
            c.fin = true;
            moved = true;
        }
        // The vproc closed its end: once the stack has taken all it wrote
        // (close(2) returns at once; the bytes still go, as on Linux).
        let vproc_gone = gone && {
            let q = end.rx.borrow();
            q.writers == 0 && q.buf.is_empty()
        };
        wake_all(woken);
        if vproc_gone {
            c.end = None;
            if s.recv_queue() > 0 {
                s.abort();
            } else if !c.fin {
                s.close();
            }
            return (true, closed);
        }
        (moved, closed && c.end.is_none())
    }

    fn pump_listeners(&mut self) -> bool {
        let mut moved = false;
        let own = self.own();
        let ports: Vec<u16> = self.listeners.keys().copied().collect();
        for number in ports {
            let Some(l) = self.listeners.get_mut(&number) else {
                continue;
            };
            let port = l.port.upgrade().filter(|p| p.borrow().listening);
            let Some(port) = port else {
                for h in std::mem::take(&mut l.ready) {
                    self.sockets.get_mut::<tcp::Socket>(h).abort();
                    self.sockets.remove(h);
                }
                self.listeners.remove(&number);
                continue;
            };
            let mut k = 0;
            while k < l.ready.len() {
                let h = l.ready[k];
                let s = self.sockets.get_mut::<tcp::Socket>(h);
                match s.state() {
                    tcp::State::Listen | tcp::State::SynReceived => k += 1,
                    tcp::State::Closed => {
                        self.sockets.remove(h);
                        l.ready.swap_remove(k);
                    }
                    _ => {
                        l.ready.swap_remove(k);
                        let (mine, mut theirs) = stream_pair();
                        theirs.peer = s.remote_endpoint().map(name_of);
                        theirs.local = s.local_endpoint().map(name_of);
                        let mut p = port.borrow_mut();
                        if p.full() {
                            s.abort();
                            drop(p);
                            continue;
                        }
                        // The vproc's end goes to the backlog; the stack
                        // keeps the other.
                        p.backlog.push_back(theirs);
                        let w = p.take_waiters();
                        drop(p);
                        wake_all(w);
                        self.conns.push(Conn {
                            tcp: h,
                            end: Some(mine),
                            connecting: None,
                            started: Instant::from_micros(0),
                            fin: false,
                            eof: false,
                        });
                        moved = true;
                    }
                }
            }
            while own.is_some() && l.ready.len() < LISTEN_READY {
                let mut s = tcp_socket();
                if s.listen(number).is_err() {
                    break;
                }
                l.ready.push(self.sockets.add(s));
            }
        }
        moved
    }

    fn pump_udp(&mut self) -> bool {
        let mut moved = false;
        let mut dead = Vec::new();
        for (&number, u) in self.udp.iter() {
            let Some(inbox) = u.inbox.upgrade() else {
                dead.push(number);
                continue;
            };
            let s = self.sockets.get_mut::<udp::Socket>(u.udp);
            let mut woken = Vec::new();
            while let Ok((data, meta)) = s.recv() {
                let mut q = inbox.borrow_mut();
                if q.readers > 0 && q.fits(data.len()) {
                    q.push_message(data, Some(name_of(meta.endpoint)), None);
                    woken.extend(q.take_waiters());
                }
                moved = true;
            }
            wake_all(woken);
        }
        for number in dead {
            if let Some(u) = self.udp.remove(&number) {
                self.sockets.remove(u.udp);
            }
        }
        let mut dead = Vec::new();
        let own = self.own().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
        for (&id, (u, raw)) in self.icmp.iter() {
            let Some(inbox) = u.inbox.upgrade() else {
                dead.push(id);
                continue;
            };
            let s = self.sockets.get_mut::<icmp::Socket>(u.udp);
            let mut woken = Vec::new();
            while let Ok((data, from)) = s.recv() {
                let mut q = inbox.borrow_mut();
                // Echo replies only (the identifier matched).
                if data.first() == Some(&0) && q.readers > 0 && q.fits(data.len() + 20) {
                    let mut m = Vec::with_capacity(data.len() + 20);
                    if *raw {
                        m.extend(super::ipv4_header(v4(from), own, data.len()));
                    }
                    m.extend_from_slice(data);
                    q.push_message(&m, Some(name_of(IpEndpoint::new(from, 0))), None);
                    woken.extend(q.take_waiters());
                }
                moved = true;
            }
            wake_all(woken);
        }
        for id in dead {
            if let Some((u, _)) = self.icmp.remove(&id) {
                self.sockets.remove(u.udp);
            }
        }
        moved
    }

    /// DHCP's answers configure the interface.
    fn dhcp_poll(&mut self) -> bool {
        let Some(h) = self.dhcp else {
            return false;
        };
        let event = self.sockets.get_mut::<dhcpv4::Socket>(h).poll();
        match event {
            None => false,
            Some(dhcpv4::Event::Configured(c)) => {
                let addr = c.address;
                self.iface.update_ip_addrs(|a| {
                    a.clear();
                    let _ = a.push(IpCidr::Ipv4(addr));
                });
                if let Some(r) = c.router {
                    let _ = self.iface.routes_mut().add_default_ipv4_route(r);
                }
                log::info!("DHCP gave {addr} (router {:?})", c.router);
                *self
                    .common
                    .dhcp_dns
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = c.dns_servers.iter().copied().collect();
                self.common
                    .prefix
                    .store(addr.prefix_len(), Ordering::Relaxed);
                self.common
                    .addr
                    .store(u32::from(addr.address()), Ordering::Release);
                true
            }
            Some(dhcpv4::Event::Deconfigured) => {
                self.iface.update_ip_addrs(|a| a.clear());
                self.iface.routes_mut().remove_default_ipv4_route();
                self.common.addr.store(0, Ordering::Release);
                true
            }
        }
    }
}
