//! The vprocs' network beyond loopback: a user-space TCP/IP stack
//! (smoltcp) whose link layer is the vkernel's Ethernet, the [`Vke`] tap
//! driver. `--net tap:IFACE,...` starts it ([`NetConfig`], [`Net::start`]).
//!
//! The stack runs on a thread of its own ([`stack`]) and meets the vprocs
//! where the loopback network does, at pipes and ports
//! ([`crate::fs::socket`]): a TCP connection to another host is a
//! connected stream whose other end the stack holds (it moves the bytes
//! between the pipes and its TCP socket), a vproc's listener on the
//! interface's address gets the stack's connections in its backlog, and a
//! UDP socket's queue gets the datagrams the stack receives for its port.
//! So read, write, poll, epoll and blocking are the loopback network's
//! own; the stack wakes the vprocs waiting on a pipe as a vproc does, and
//! a vproc wakes the stack the same way (its [`Wake`] is a mio waker).
//!
//! Addressing is IPv4 on the tap: a static address (`ip=A/P`, `gw=G`) or
//! DHCPv4 (`dhcp`). IPv6 stays on loopback.
//!
//! ```no_run
//! use vkernel_linux::net::{Net, NetConfig};
//! let cfg = NetConfig::parse("tap:vk0,ip=10.9.0.2/24,gw=10.9.0.1")?;
//! let net = Net::start(cfg)?;
//! assert_eq!(net.address().map(|a| a.to_string()), Some("10.9.0.2".into()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod device;
mod hostnet;
mod stack;
mod sysfs;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

pub use config::{NetConfig, NetConfigError};
pub use sysfs::install_sys_class_net;
use vkernel_devices::{Vke, VkeError};

use crate::fs::pipe::Pipe;
use crate::fs::pipe::{Wake, WeakShared};
use crate::fs::socket::{Connecting, Port, UnixStream};

/// Bytes a tap TCP connection's pipes hold in each direction (the
/// stack's own socket buffers add as much again).
pub const CONN_PIPE: usize = 1 << 20;

/// Errors starting the network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The tap could not be opened or created.
    #[error(transparent)]
    Tap(#[from] VkeError),
    /// The stack's thread could not be started.
    #[error("cannot start the network thread: {0}")]
    Thread(#[source] std::io::Error),
    /// Configuring the host side of the tap failed.
    #[error("cannot configure the host side of tap `{name}` ({what}): {source}")]
    HostSide {
        /// The interface.
        name: String,
        /// What was being done.
        what: &'static str,
        /// The host error.
        #[source]
        source: std::io::Error,
    },
}

/// What a vproc asks of the stack.
pub(crate) enum Cmd {
    /// Connect to `to` from the interface's address and port `port`; the
    /// stack holds `end` and says how it went in `state`.
    Connect {
        end: UnixStream,
        to: (Ipv4Addr, u16),
        port: u16,
        state: Arc<Connecting>,
    },
    /// Take connections to `port` into the listener `listener`.
    Listen {
        port: u16,
        listener: WeakShared<Port>,
    },
    /// Deliver UDP datagrams for `port` into `inbox`.
    UdpOpen { port: u16, inbox: WeakShared<Pipe> },
    /// Send a UDP datagram from `port` to `to`.
    UdpSend {
        port: u16,
        inbox: WeakShared<Pipe>,
        to: (Ipv4Addr, u16),
        data: Vec<u8>,
    },
    /// Send the ICMP echo request `data` (identifier `id`, checksummed)
    /// to `to`; replies for `id` go to `inbox`.
    Ping {
        id: u16,
        inbox: WeakShared<Pipe>,
        to: IpAddr,
        data: Vec<u8>,
        raw: bool,
    },
    /// `--net host`: carry `end` on the host socket `sock` (connecting).
    HostConnect {
        end: UnixStream,
        sock: std::net::TcpStream,
        state: Arc<Connecting>,
    },
    /// `--net host`: the host listener `sock` feeds `listener`.
    HostListen {
        sock: std::net::TcpListener,
        listener: WeakShared<Port>,
    },
    /// `--net host`: send a UDP datagram from host port `port` to `to`.
    UdpSendTo {
        port: u16,
        inbox: WeakShared<Pipe>,
        to: SocketAddr,
        data: Vec<u8>,
    },
}

/// What the vprocs and the stack share.
pub(crate) struct Common {
    /// Commands not taken yet.
    pub cmds: Mutex<Vec<Cmd>>,
    /// The interface's IPv4 address (0: none yet, as while DHCP asks).
    pub addr: AtomicU32,
    /// TCP connections the stack still carries (open, or closed by the
    /// vproc with bytes still to send).
    pub conns: std::sync::atomic::AtomicUsize,
    /// The address's prefix length.
    pub prefix: std::sync::atomic::AtomicU8,
    /// The tap's counters: bytes and frames received, bytes and frames
    /// sent, frames dropped on sending.
    pub counters: Arc<[std::sync::atomic::AtomicU64; 5]>,
    /// DNS servers DHCP gave.
    pub dhcp_dns: Mutex<Vec<Ipv4Addr>>,
    /// Wakes the stack's thread.
    pub waker: mio::Waker,
    /// The tap's configuration (None: `--net host`).
    pub cfg: Option<NetConfig>,
}

/// Wakes the stack when a pipe it moves bytes through changed.
pub(crate) struct StackWake(pub Arc<Common>);

impl Wake for StackWake {
    fn wake(&self, _pid: i32) {
        let _ = self.0.waker.wake();
    }
}

/// The pid the stack registers as on the pipes it waits on (no vproc has
/// it).
pub(crate) const STACK_PID: i32 = -7;

/// The vprocs' handle on the tap network (one per virtual kernel).
pub struct Net {
    common: Arc<Common>,
    name: String,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("tap", &self.name)
            .field("addr", &self.address())
            .finish()
    }
}

impl Net {
    /// Open the tap (creating it when allowed), configure its host side
    /// when asked (`host=`), and start the stack's thread.
    pub fn start(cfg: NetConfig) -> Result<Arc<Net>, NetError> {
        let vke = Vke::open(&cfg.tap)?;
        let name = vke.name().to_string();
        if let Some((ip, prefix)) = cfg.host {
            config::configure_host_side(&name, ip, prefix)?;
        }
        stack::spawn(vke, cfg).map(|common| Arc::new(Net { common, name }))
    }

    /// `--net host`: start the thread that carries the vprocs' sockets on
    /// host sockets.
    pub fn start_host() -> Result<Arc<Net>, NetError> {
        hostnet::spawn().map(|common| {
            Arc::new(Net {
                common,
                name: "host".into(),
            })
        })
    }

    /// The tap's counters: bytes and frames received, bytes and frames
    /// sent, frames the tap refused (`/proc/net/dev`).
    pub fn counters(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.common.counters[i].load(Ordering::Relaxed))
    }

    /// The prefix length of the tap's address.
    pub fn prefix(&self) -> u8 {
        self.common.prefix.load(Ordering::Relaxed)
    }

    /// Is it `--net host`?
    pub fn is_host(&self) -> bool {
        self.common.cfg.is_none()
    }

    /// Wait (at most `limit`) until the stack has sent what the vprocs
    /// wrote before they closed their sockets: a program that writes and
    /// exits has its bytes delivered, as Linux keeps sending for a
    /// process that went. Call it after the last vproc exited. True when
    /// everything was delivered.
    pub fn flush(&self, limit: std::time::Duration) -> bool {
        let until = std::time::Instant::now() + limit;
        loop {
            let _ = self.common.waker.wake();
            std::thread::sleep(std::time::Duration::from_millis(2));
            if self.common.conns.load(Ordering::Acquire) == 0 {
                return true;
            }
            if std::time::Instant::now() >= until {
                return false;
            }
        }
    }

    /// The tap's name (`host` for the host network).
    pub fn tap(&self) -> &str {
        &self.name
    }

    /// The tap's IPv4 address (None while DHCP has not given one, and
    /// for the host network).
    pub fn address(&self) -> Option<Ipv4Addr> {
        match self.common.addr.load(Ordering::Acquire) {
            0 => None,
            a => Some(Ipv4Addr::from(a)),
        }
    }

    /// Wait (at most `limit`) for the interface's address: at once for a
    /// static one, else until DHCP gives one (None: it did not).
    pub fn wait_address(&self, limit: std::time::Duration) -> Option<Ipv4Addr> {
        let until = std::time::Instant::now() + limit;
        loop {
            if let Some(a) = self.address() {
                return Some(a);
            }
            if std::time::Instant::now() >= until {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Is `ip` an address of the network's own (the tap's; one of the
    /// host's, for the host network)?
    pub fn is_own(&self, ip: IpAddr) -> bool {
        if self.is_host() {
            return std::net::UdpSocket::bind((ip, 0)).is_ok();
        }
        matches!(ip, IpAddr::V4(a) if self.address() == Some(a))
    }

    /// The address a socket talking to `to` has (the tap's; the host's
    /// route's source, for the host network).
    pub fn local_for(&self, to: SocketAddr) -> Option<IpAddr> {
        if !self.is_host() {
            return self.address().map(IpAddr::V4);
        }
        let any: SocketAddr = if to.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let s = std::net::UdpSocket::bind(any).ok()?;
        s.connect(to).ok()?;
        s.local_addr().ok().map(|a| a.ip())
    }

    /// The configuration it was started with (None: the host network).
    pub fn config(&self) -> Option<&NetConfig> {
        self.common.cfg.as_ref()
    }

    /// The largest UDP payload a send may carry (no IP fragments on the
    /// tap).
    pub fn max_datagram(&self) -> usize {
        self.config().map_or(65_507, |c| c.mtu - 28)
    }

    fn send(&self, cmd: Cmd) {
        self.common
            .cmds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cmd);
        let _ = self.common.waker.wake();
    }

    /// Connect the network's `end` of a new stream to `to`, from local
    /// port `port` on the tap (the host picks it for the host network);
    /// `state` says when and how the handshake ended. Returns the local
    /// address, or the errno of a connect refused at once.
    pub fn connect(
        &self,
        end: UnixStream,
        to: SocketAddr,
        port: u16,
        state: Arc<Connecting>,
    ) -> Result<SocketAddr, i64> {
        if self.is_host() {
            let sock = host_connect(to).map_err(|e| e.raw_os_error().map_or(5, i64::from))?;
            let local = sock
                .local_addr()
                .map_err(|e| e.raw_os_error().map_or(5, i64::from))?;
            self.send(Cmd::HostConnect { end, sock, state });
            return Ok(local);
        }
        let (IpAddr::V4(ip), Some(own)) = (to.ip(), self.address()) else {
            return Err(101); // ENETUNREACH
        };
        self.send(Cmd::Connect {
            end,
            to: (ip, to.port()),
            port,
            state,
        });
        Ok((own, port).into())
    }

    /// TCP connections from the network to `at`'s port go to `listener`'s
    /// backlog while it listens (the host network listens on the host at
    /// `at`: its errors, EADDRINUSE or EACCES, are the caller's).
    pub fn listen(&self, at: SocketAddr, listener: WeakShared<Port>) -> Result<(), i64> {
        if self.is_host() {
            let sock = std::net::TcpListener::bind(at)
                .map_err(|e| e.raw_os_error().map_or(5, i64::from))?;
            let _ = sock.set_nonblocking(true);
            self.send(Cmd::HostListen { sock, listener });
            return Ok(());
        }
        self.send(Cmd::Listen {
            port: at.port(),
            listener,
        });
        Ok(())
    }

    /// UDP datagrams from the network to `port` go to `inbox` while it
    /// is open.
    pub fn udp_open(&self, port: u16, inbox: WeakShared<Pipe>) {
        self.send(Cmd::UdpOpen { port, inbox });
    }

    /// Send a UDP datagram from `port` (whose replies go to `inbox`) to
    /// `to`. Like UDP, it may be lost.
    pub fn udp_send(&self, port: u16, inbox: WeakShared<Pipe>, to: SocketAddr, data: Vec<u8>) {
        match to {
            _ if self.is_host() => self.send(Cmd::UdpSendTo {
                port,
                inbox,
                to,
                data,
            }),
            SocketAddr::V4(v) => self.send(Cmd::UdpSend {
                port,
                inbox,
                to: (*v.ip(), v.port()),
                data,
            }),
            SocketAddr::V6(_) => {}
        }
    }

    /// Send the ICMP echo request `data` (identifier `id`) to `to`;
    /// the replies go to `inbox` (after an IPv4 header, for a `raw`
    /// socket).
    pub fn ping(&self, id: u16, inbox: WeakShared<Pipe>, to: IpAddr, data: Vec<u8>, raw: bool) {
        self.send(Cmd::Ping {
            id,
            inbox,
            to,
            data,
            raw,
        });
    }

    /// Write the vprocs' /etc/resolv.conf (when DNS servers were given)
    /// and /etc/hosts into `fs` (in its overlay: the host's files stay
    /// as they are). The host network keeps the host's files.
    pub fn install_etc(&self, fs: &crate::fs::Fs) -> Result<(), crate::fs::Errno> {
        if self.is_host() {
            return Ok(());
        }
        let etc = match fs.resolve(crate::fs::ROOT, b"/etc", true) {
            Ok(h) => h,
            Err(_) => fs.mkdir(crate::fs::ROOT, b"etc", 0o755)?,
        };
        let mut files = vec![(&b"hosts"[..], self.hosts("vkernel"))];
        if !self.dns().is_empty() {
            files.push((&b"resolv.conf"[..], self.resolv_conf()));
        }
        for (name, text) in files {
            let (h, _) = fs.create(etc, name, 0o644, false)?;
            fs.truncate(h, 0)?;
            fs.write(h, Some(0), text.as_bytes())?;
        }
        Ok(())
    }

    /// The text of /etc/resolv.conf for the vprocs (the DNS servers).
    pub fn resolv_conf(&self) -> String {
        let mut s = String::from("# written by vkernel (--net)\n");
        for d in self.dns() {
            s.push_str(&format!("nameserver {d}\n"));
        }
        s
    }

    /// The DNS servers: `dns=` ones, then DHCP's.
    pub fn dns(&self) -> Vec<Ipv4Addr> {
        let mut v = self.config().map(|c| c.dns.clone()).unwrap_or_default();
        let dhcp = self
            .common
            .dhcp_dns
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let extra: Vec<Ipv4Addr> = dhcp.iter().copied().filter(|d| !v.contains(d)).collect();
        v.extend(extra);
        v
    }

    /// The text of /etc/hosts for the vprocs: loopback names and the
    /// interface's address under `hostname`.
    pub fn hosts(&self, hostname: &str) -> String {
        let mut s =
            String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        match self.address() {
            Some(a) => s.push_str(&format!("{a}\t{hostname}\n")),
            None => s.push_str(&format!("127.0.1.1\t{hostname}\n")),
        }
        s
    }
}

/// A non-blocking connect of a new host TCP socket to `to` (under way).
fn host_connect(to: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    let family = if to.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new socket this function owns from here.
    let sock = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let (raw, len) = sockaddr(to);
    // SAFETY: `raw` holds a sockaddr_in or sockaddr_in6 of `len` bytes.
    let rc = unsafe { libc::connect(fd, std::ptr::addr_of!(raw).cast(), len) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    let _ = sock.set_nodelay(true);
    Ok(sock)
}

/// The Internet checksum of `b` (ICMPv4's; RFC 1071).
///
/// ```
/// // A message carrying its checksum sums to zero.
/// let mut m = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
/// let c = vkernel_linux::net::checksum(&m);
/// m[2..4].copy_from_slice(&c.to_be_bytes());
/// assert_eq!(vkernel_linux::net::checksum(&m), 0);
/// ```
pub fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).expect("folded to 16 bits")
}

/// An IPv4 header for an ICMP message of `len` bytes from `src` to `dst`
/// (what a raw ICMP socket receives first).
pub fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> [u8; 20] {
    let total = u16::try_from(len + 20).unwrap_or(u16::MAX);
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[8] = 64; // TTL
    h[9] = 1; // ICMP
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// The address in a sockaddr_storage the host filled (None: not IP).
fn from_sockaddr(st: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(st.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says it holds a sockaddr_in.
            let sin: libc::sockaddr_in = unsafe { std::ptr::read(std::ptr::from_ref(st).cast()) };
            Some(SocketAddr::from((
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it holds a sockaddr_in6.
            let s6: libc::sockaddr_in6 = unsafe { std::ptr::read(std::ptr::from_ref(st).cast()) };
            Some(SocketAddr::from((
                std::net::Ipv6Addr::from(s6.sin6_addr.s6_addr),
                u16::from_be(s6.sin6_port),
            )))
        }
        _ => None,
    }
}

/// `a` as a sockaddr_storage and its length.
fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::sa_family_t::try_from(libc::AF_INET).expect("2"),
                sin_port: v.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: a sockaddr_in fits in a sockaddr_storage.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(st).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::sa_family_t::try_from(libc::AF_INET6).expect("10"),
                sin6_port: v.port().to_be(),
                sin6_flowinfo: v.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v.ip().octets(),
                },
                sin6_scope_id: v.scope_id(),
            };
            // SAFETY: a sockaddr_in6 fits in a sockaddr_storage.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(st).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (
        st,
        libc::socklen_t::try_from(len).expect("a sockaddr is small"),
    )
}

/// A new stream for a connection through the stack: the vproc's end and
/// the stack's, each direction holding [`CONN_PIPE`] bytes.
pub fn stream_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair();
    for q in [&a.rx, &a.tx] {
        q.borrow_mut().capacity = CONN_PIPE;
    }
    (a, b)
}
