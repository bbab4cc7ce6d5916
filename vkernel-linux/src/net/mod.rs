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
mod stack;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

pub use config::{NetConfig, NetConfigError};
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
    /// DNS servers DHCP gave.
    pub dhcp_dns: Mutex<Vec<Ipv4Addr>>,
    /// Wakes the stack's thread.
    pub waker: mio::Waker,
    /// The configuration.
    pub cfg: NetConfig,
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

    /// The tap's name.
    pub fn tap(&self) -> &str {
        &self.name
    }

    /// The interface's IPv4 address (None while DHCP has not given one).
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

    /// Is `ip` the interface's own address?
    pub fn is_own(&self, ip: Ipv4Addr) -> bool {
        self.address() == Some(ip)
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &NetConfig {
        &self.common.cfg
    }

    fn send(&self, cmd: Cmd) {
        self.common
            .cmds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cmd);
        let _ = self.common.waker.wake();
    }

    /// Connect the stack's `end` of a new stream to `to` from local port
    /// `port`; `state` says when and how the handshake ended.
    pub fn connect(&self, end: UnixStream, to: (Ipv4Addr, u16), port: u16, state: Arc<Connecting>) {
        self.send(Cmd::Connect {
            end,
            to,
            port,
            state,
        });
    }

    /// TCP connections from the network to `port` go to `listener`'s
    /// backlog while it listens.
    pub fn listen(&self, port: u16, listener: WeakShared<Port>) {
        self.send(Cmd::Listen { port, listener });
    }

    /// UDP datagrams from the network to `port` go to `inbox` while it
    /// is open.
    pub fn udp_open(&self, port: u16, inbox: WeakShared<Pipe>) {
        self.send(Cmd::UdpOpen { port, inbox });
    }

    /// Send a UDP datagram from `port` (whose replies go to `inbox`) to
    /// `to`. Like UDP, it may be lost.
    pub fn udp_send(&self, port: u16, inbox: WeakShared<Pipe>, to: (Ipv4Addr, u16), data: Vec<u8>) {
        self.send(Cmd::UdpSend {
            port,
            inbox,
            to,
            data,
        });
    }

    /// Write the vprocs' /etc/resolv.conf (when DNS servers were given)
    /// and /etc/hosts into `fs` (in its overlay: the host's files stay
    /// as they are).
    pub fn install_etc(&self, fs: &crate::fs::Fs) -> Result<(), crate::fs::Errno> {
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

    /// The text of /etc/resolv.conf for the vprocs (the `dns=` servers).
    pub fn resolv_conf(&self) -> String {
        let mut s = String::from("# written by vkernel (--net)\n");
        for d in self.dns() {
            s.push_str(&format!("nameserver {d}\n"));
        }
        s
    }

    /// The DNS servers: `dns=` ones, then DHCP's.
    pub fn dns(&self) -> Vec<Ipv4Addr> {
        let mut v = self.common.cfg.dns.clone();
        let dhcp = self
            .common
            .dhcp_dns
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        v.extend(dhcp.iter().filter(|d| !self.common.cfg.dns.contains(d)));
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

/// A new stream for a connection through the stack: the vproc's end and
/// the stack's, each direction holding [`CONN_PIPE`] bytes.
pub fn stream_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair();
    for q in [&a.rx, &a.tx] {
        q.borrow_mut().capacity = CONN_PIPE;
    }
    (a, b)
}
