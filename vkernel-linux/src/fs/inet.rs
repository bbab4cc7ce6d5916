//! The virtual kernel's loopback network: AF_INET and AF_INET6 names
//! (addresses and ports) and the ports bound to them. A TCP port leads to
//! a listen backlog and a UDP port to a datagram queue, as a bound
//! AF_UNIX name does ([`super::socket::Port`]): connections and datagrams
//! between vprocs go through the same queues as Unix sockets, with
//! Internet names. Only loopback addresses (127.0.0.0/8, ::1, and the
//! unspecified address, which Linux connects to loopback) are reachable;
//! anything else is unreachable (the vkernel has no other network).
//!
//! Names are kept in one form for both families: the bytes of a
//! `sockaddr_in6` after its family (port, flow info, address, scope), an
//! IPv4 address as its v4-mapped IPv6 address; [`InetName::encode`] gives
//! a socket's own family's form back.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use super::pipe::{Shared, WeakShared};
use super::socket::Port;

/// AF_INET.
pub const AF_INET: u16 = 2;
/// AF_INET6.
pub const AF_INET6: u16 = 10;
/// The first ephemeral port (net.ipv4.ip_local_port_range).
pub const EPHEMERAL_FIRST: u16 = 32768;
/// The last ephemeral port.
pub const EPHEMERAL_LAST: u16 = 60999;

/// A transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP (SOCK_STREAM).
    Tcp,
    /// UDP (SOCK_DGRAM).
    Udp,
    /// ICMP echo ("ping") sockets: the port is the echo identifier.
    Icmp,
}

/// An Internet socket name: an address (IPv4 as v4-mapped IPv6) and a
/// port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InetName {
    /// The address.
    pub ip: Ipv6Addr,
    /// The port.
    pub port: u16,
}

/// Why a sockaddr was refused.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum InetError {
    /// Too short, or a bad length (EINVAL).
    #[error("invalid address length")]
    Length,
    /// Another family (EAFNOSUPPORT).
    #[error("address family not supported")]
    Family,
}

impl InetName {
    /// The unspecified address, port 0.
    pub const ANY: InetName = InetName {
        ip: Ipv6Addr::UNSPECIFIED,
        port: 0,
    };

    /// Parse a `sockaddr_in` (`family` AF_INET) or `sockaddr_in6`
    /// (AF_INET6) from `b`.
    ///
    /// ```
    /// use vkernel_linux::fs::inet::{InetName, AF_INET};
    /// let b = [2, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    /// let n = InetName::parse(AF_INET, &b).unwrap();
    /// assert_eq!(n.port, 8080);
    /// assert!(n.is_loopback());
    /// ```
    pub fn parse(family: u16, b: &[u8]) -> Result<InetName, InetError> {
        let need = if family == AF_INET { 16 } else { 24 };
        if b.len() < need {
            return Err(InetError::Length);
        }
        let fam = u16::from_le_bytes([b[0], b[1]]);
        let port = u16::from_be_bytes([b[2], b[3]]);
        match (family, fam) {
            (AF_INET, AF_INET) => {
                let v4 = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
                Ok(InetName {
                    ip: v4.to_ipv6_mapped(),
                    port,
                })
            }
            (AF_INET6, AF_INET6) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b[8..24]);
                Ok(InetName {
                    ip: Ipv6Addr::from(a),
                    port,
                })
            }
            _ => Err(InetError::Family),
        }
    }

    /// The name as stored (the bytes of a sockaddr_in6 after its family).
    pub fn to_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(26);
        b.extend_from_slice(&self.port.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&self.ip.octets());
        b.extend_from_slice(&[0; 4]);
        b
    }

    /// A stored name back (None for bytes that are not one).
    pub fn from_bytes(b: &[u8]) -> Option<InetName> {
        if b.len() != 26 {
            return None;
        }
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[6..22]);
        Some(InetName {
            ip: Ipv6Addr::from(a),
            port: u16::from_be_bytes([b[0], b[1]]),
        })
    }

    /// The sockaddr a socket of `family` reports: a `sockaddr_in` (16
    /// bytes) or a `sockaddr_in6` (28 bytes).
    pub fn encode(self, family: u16) -> Vec<u8> {
        let mut b = family.to_le_bytes().to_vec();
        if family == AF_INET {
            b.extend_from_slice(&self.port.to_be_bytes());
            let v4 = self.ip.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED);
            b.extend_from_slice(&v4.octets());
            b.extend_from_slice(&[0; 8]);
        } else {
            b.extend(self.to_bytes());
        }
        b
    }

    /// The host form of the name (an IPv4-mapped address as IPv4).
    pub fn socket_addr(self) -> SocketAddr {
        match self.v4() {
            Some(a) => (a, self.port).into(),
            None => (self.ip, self.port).into(),
        }
    }

    /// The IPv4 address, if it is one (v4-mapped).
    pub fn v4(self) -> Option<Ipv4Addr> {
        self.ip.to_ipv4_mapped()
    }

    /// The unspecified address of either family (INADDR_ANY, ::).
    pub fn is_unspecified(self) -> bool {
        self.ip.is_unspecified() || self.v4().is_some_and(|a| a.is_unspecified())
    }

    /// A loopback address (127.0.0.0/8, ::1).
    pub fn is_loopback(self) -> bool {
        self.ip.is_loopback() || self.v4().is_some_and(|a| a.is_loopback())
    }

    /// An address this vkernel has (bind may take it): loopback or
    /// unspecified.
    pub fn is_local(self) -> bool {
        self.is_loopback() || self.is_unspecified()
    }

    /// Where a connect to this name goes: the unspecified address means
    /// loopback (Linux's rule), in the name's own family.
    pub fn destination(self) -> InetName {
        if !self.is_unspecified() {
            return self;
        }
        let ip = if self.v4().is_some() {
            Ipv4Addr::LOCALHOST.to_ipv6_mapped()
        } else {
            Ipv6Addr::LOCALHOST
        };
        InetName { ip, ..self }
    }
}

impl From<SocketAddr> for InetName {
    /// The stored form of a host address (IPv4 as v4-mapped IPv6).
    fn from(a: SocketAddr) -> InetName {
        let ip = match a {
            SocketAddr::V4(v) => v.ip().to_ipv6_mapped(),
            SocketAddr::V6(v) => *v.ip(),
        };
        InetName { ip, port: a.port() }
    }
}

/// One socket bound to a port.
struct Binding {
    /// The address it is bound to (unspecified: every local one).
    ip: Ipv6Addr,
    /// An AF_INET6 socket with IPV6_V6ONLY (no v4-mapped peers).
    v6only: bool,
    /// SO_REUSEPORT: others with it may share the name.
    reuseport: bool,
    /// Its port.
    port: WeakShared<Port>,
}

/// A TCP connection's end, for `/proc/net/tcp`.
#[derive(Clone)]
pub struct ConnRecord {
    /// Its own name.
    pub local: InetName,
    /// Its peer's.
    pub remote: InetName,
    /// What it receives (gone, or no reader left: the end closed).
    pub rx: WeakShared<super::pipe::Pipe>,
    /// What it sends.
    pub tx: WeakShared<super::pipe::Pipe>,
    /// Its owner's uid.
    pub uid: u32,
}

/// A socket bound to a port, as `/proc/net` lists it.
pub struct BoundRecord {
    /// TCP or UDP.
    pub proto: Proto,
    /// The name it is bound to.
    pub name: InetName,
    /// Its port (a listener's backlog, a UDP socket's queue).
    pub port: Shared<Port>,
}

/// The bound ports of the loopback network.
#[derive(Default)]
pub struct InetPorts {
    /// Bindings by protocol and port.
    bound: HashMap<(Proto, u16), Vec<Binding>>,
    /// Where the next ephemeral port search starts.
    next: u16,
    /// TCP connection ends (pruned when they close).
    conns: Vec<ConnRecord>,
    /// `conns`' length after the last pruning.
    pruned: usize,
}

impl std::fmt::Debug for InetPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InetPorts")
            .field("bound", &self.bound.len())
            .finish()
    }
}

/// Does an address bound as `a` (or `b`) cover the other's? The
/// unspecified address covers every address of its family (both, for a
/// dual-stack IPv6 socket).
fn overlaps(a: &Binding, b_ip: Ipv6Addr, b_v6only: bool) -> bool {
    let v4 = |ip: Ipv6Addr| ip.to_ipv4_mapped().is_some();
    let any = |ip: Ipv6Addr| {
        ip.is_unspecified() || ip.to_ipv4_mapped().is_some_and(|x| x.is_unspecified())
    };
    if a.ip == b_ip {
        return true;
    }
    let covers = |any_ip: Ipv6Addr, v6only: bool, other: Ipv6Addr| {
        any(any_ip)
            && if v4(any_ip) {
                v4(other)
            } else {
                !(v6only && v4(other))
            }
    };
    covers(a.ip, a.v6only, b_ip) || covers(b_ip, b_v6only, a.ip)
}

/// Is the connection end of `r` still open?
fn open(r: &ConnRecord) -> bool {
    r.rx.upgrade().is_some_and(|p| p.borrow().readers > 0)
}

impl InetPorts {
    /// Note a TCP connection end (for `/proc/net/tcp`).
    pub fn note_conn(&mut self, r: ConnRecord) {
        if self.conns.len() >= 2 * self.pruned.max(32) {
            self.conns.retain(open);
            self.pruned = self.conns.len();
        }
        self.conns.push(r);
    }

    /// The open TCP connection ends.
    pub fn conns(&mut self) -> Vec<ConnRecord> {
        self.conns.retain(open);
        self.pruned = self.conns.len();
        self.conns.clone()
    }

    /// The sockets bound to ports, by protocol and port.
    pub fn bound(&mut self) -> Vec<BoundRecord> {
        self.prune();
        let mut v: Vec<BoundRecord> = self
            .bound
            .iter()
            .flat_map(|(&(proto, number), bs)| {
                bs.iter().filter_map(move |b| {
                    Some(BoundRecord {
                        proto,
                        name: InetName {
                            ip: b.ip,
                            port: number,
                        },
                        port: b.port.upgrade()?,
                    })
                })
            })
            .collect();
        v.sort_by_key(|r| r.name.port);
        v
    }

    /// Drop bindings whose sockets went.
    fn prune(&mut self) {
        self.bound.retain(|_, v| {
            v.retain(|b| b.port.upgrade().is_some());
            !v.is_empty()
        });
    }

    /// Bind `port` to `name` for `proto` (port 0: an ephemeral one):
    /// the name bound, or None when it is taken (EADDRINUSE) or no
    /// ephemeral port is left.
    pub fn bind(
        &mut self,
        proto: Proto,
        name: InetName,
        v6only: bool,
        reuseport: bool,
        port: &Shared<Port>,
    ) -> Option<InetName> {
        self.prune();
        let free = |s: &Self, p: u16| {
            s.bound.get(&(proto, p)).is_none_or(|v| {
                v.iter()
                    .all(|b| !overlaps(b, name.ip, v6only) || (b.reuseport && reuseport))
            })
        };
        let number = if name.port != 0 {
            if !free(self, name.port) {
                return None;
            }
            name.port
        } else {
            let span = u32::from(EPHEMERAL_LAST - EPHEMERAL_FIRST) + 1;
            let start = u32::from(self.next.max(EPHEMERAL_FIRST) - EPHEMERAL_FIRST);
            let found = (0..span)
                .map(|i| {
                    let off = u16::try_from((start + i) % span).expect("within the range");
                    EPHEMERAL_FIRST + off
                })
                .find(|&p| free(self, p))?;
            self.next = if found == EPHEMERAL_LAST {
                EPHEMERAL_FIRST
            } else {
                found + 1
            };
            found
        };
        self.bound
            .entry((proto, number))
            .or_default()
            .push(Binding {
                ip: name.ip,
                v6only,
                reuseport,
                port: port.downgrade(),
            });
        Some(InetName {
            port: number,
            ..name
        })
    }

    /// The port a packet or connection for `to` reaches (a socket bound
    /// to that address, else one bound to the unspecified address of a
    /// family that takes it).
    pub fn find(&mut self, proto: Proto, to: InetName) -> Option<Shared<Port>> {
        self.prune();
        let v = self.bound.get(&(proto, to.port))?;
        let exact = v.iter().find(|b| b.ip == to.ip);
        let any = || {
            v.iter().find(|b| {
                let bv4 = b.ip.to_ipv4_mapped();
                match bv4 {
                    Some(a) => a.is_unspecified() && to.v4().is_some(),
                    None => b.ip.is_unspecified() && !(b.v6only && to.v4().is_some()),
                }
            })
        };
        exact.or_else(any).and_then(|b| b.port.upgrade())
    }
}

impl super::Fs {
    /// The loopback network's ports (one network per virtual kernel, as
    /// the tree and the abstract socket names are).
    pub fn inet(&self) -> std::sync::MutexGuard<'_, InetPorts> {
        self.inet.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], port: u16) -> InetName {
        InetName {
            ip: Ipv4Addr::from(a).to_ipv6_mapped(),
            port,
        }
    }

    #[test]
    fn names_round_trip_in_both_families() {
        let n = v4([127, 0, 0, 1], 80);
        assert_eq!(InetName::from_bytes(&n.to_bytes()), Some(n));
        let b = n.encode(AF_INET);
        assert_eq!(b.len(), 16);
        assert_eq!(InetName::parse(AF_INET, &b), Ok(n));
        assert_eq!(n.encode(AF_INET6).len(), 28);
        // An AF_INET6 socket wants a sockaddr_in6's 24 bytes at least, and
        // its family.
        assert_eq!(InetName::parse(AF_INET6, &b), Err(InetError::Length));
        let mut long = b.clone();
        long.resize(28, 0);
        assert_eq!(InetName::parse(AF_INET6, &long), Err(InetError::Family));
        assert_eq!(InetName::parse(AF_INET, &b[..8]), Err(InetError::Length));
        assert!(n.is_loopback() && n.is_local());
        assert!(!v4([10, 0, 0, 1], 1).is_local());
        assert_eq!(v4([0, 0, 0, 0], 9).destination(), v4([127, 0, 0, 1], 9));
    }

    #[test]
    fn ports_conflict_share_and_run_out_like_linux() {
        let mut p = InetPorts::default();
        let (a, b) = (Shared::new(Port::default()), Shared::new(Port::default()));
        let any4 = v4([0, 0, 0, 0], 5000);
        assert!(p.bind(Proto::Tcp, any4, false, false, &a).is_some());
        // 127.0.0.1:5000 overlaps 0.0.0.0:5000; UDP is another space.
        assert!(p
            .bind(Proto::Tcp, v4([127, 0, 0, 1], 5000), false, false, &b)
            .is_none());
        assert!(p.bind(Proto::Udp, any4, false, false, &b).is_some());
        assert!(p.find(Proto::Tcp, v4([127, 0, 0, 1], 5000)).is_some());
        // A dual-stack :: takes v4 peers; a v6-only one does not.
        let c = Shared::new(Port::default());
        let any6 = InetName {
            ip: Ipv6Addr::UNSPECIFIED,
            port: 6000,
        };
        p.bind(Proto::Tcp, any6, true, false, &c).unwrap();
        assert!(p.find(Proto::Tcp, v4([127, 0, 0, 1], 6000)).is_none());
        // Ephemeral ports come from Linux's range; a dropped socket frees
        // its port.
        let e = p
            .bind(Proto::Tcp, v4([127, 0, 0, 1], 0), false, false, &c)
            .unwrap();
        assert!((EPHEMERAL_FIRST..=EPHEMERAL_LAST).contains(&e.port));
        drop(a);
        assert!(p.bind(Proto::Tcp, any4, false, false, &b).is_some());
    }
}
