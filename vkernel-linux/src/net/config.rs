//! `--net tap:IFACE[,ip=A/P][,gw=G][,dns=D]...[,dhcp][,mtu=N][,host=A/P]`:
//! what the tap network is, parsed ([`NetConfig::parse`]), and the host
//! side of a tap the vkernel made ([`configure_host_side`]).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::NetError;

/// How the tap network is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// The host tap interface (created if missing and allowed).
    pub tap: String,
    /// The vprocs' static IPv4 address and prefix length.
    pub ip: Option<(Ipv4Addr, u8)>,
    /// The default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers (written to the vprocs' /etc/resolv.conf).
    pub dns: Vec<Ipv4Addr>,
    /// Ask for the address, gateway and DNS with DHCPv4 instead.
    pub dhcp: bool,
    /// The link's MTU (bytes of IP packet per frame).
    pub mtu: usize,
    /// Give the host side of the tap this address and bring it up (needs
    /// CAP_NET_ADMIN; without it, configure the tap with `ip`).
    pub host: Option<(Ipv4Addr, u8)>,
    /// The vkernel's Ethernet address.
    pub mac: [u8; 6],
}

/// Why a `--net` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetConfigError {
    /// Not `none` or `tap:...`.
    #[error(
        "unknown network `{0}`: use none (loopback only), tap:IFACE,ip=A/P[,gw=G][,dns=D] \
         or tap:IFACE,dhcp"
    )]
    Kind(String),
    /// A `key=value` the parser does not know or cannot read.
    #[error("bad --net option `{0}`: {1}")]
    Option(String, &'static str),
    /// Neither an address nor DHCP.
    #[error("--net tap:{0} needs an address: add ip=ADDR/PREFIX (e.g. ip=10.0.2.15/24) or dhcp")]
    NoAddress(String),
    /// An empty interface name.
    #[error("--net tap: needs an interface name, e.g. tap:vk0")]
    NoName,
}

/// `A/P` as an address and a prefix length (0..=32).
fn cidr(v: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = v.split_once('/')?;
    let p: u8 = p.parse().ok().filter(|&p| p <= 32)?;
    Some((a.parse().ok()?, p))
}

impl NetConfig {
    /// Parse a `--net tap:...` value.
    ///
    /// ```
    /// use vkernel_linux::net::NetConfig;
    /// let c = NetConfig::parse("tap:vk0,ip=10.0.2.15/24,gw=10.0.2.2,dns=10.0.2.3").unwrap();
    /// assert_eq!(c.tap, "vk0");
    /// assert_eq!(c.ip.unwrap().1, 24);
    /// assert_eq!(c.dns.len(), 1);
    /// assert!(NetConfig::parse("tap:vk0").is_err()); // no address
    /// ```
    pub fn parse(s: &str) -> Result<NetConfig, NetConfigError> {
        let rest = s
            .strip_prefix("tap:")
            .ok_or_else(|| NetConfigError::Kind(s.to_string()))?;
        let mut parts = rest.split(',');
        let tap = parts.next().unwrap_or("").to_string();
        if tap.is_empty() {
            return Err(NetConfigError::NoName);
        }
        let mut c = NetConfig {
            tap,
            ip: None,
            gateway: None,
            dns: Vec::new(),
            dhcp: false,
            mtu: 1500,
            host: None,
            mac: [0x02, 0x76, 0x6b, 0x00, 0x00, 0x01],
        };
        for part in parts {
            let bad = |why| NetConfigError::Option(part.to_string(), why);
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            match k {
                "ip" => c.ip = Some(cidr(v).ok_or(bad("want ADDR/PREFIX, e.g. 10.0.2.15/24"))?),
                "host" => c.host = Some(cidr(v).ok_or(bad("want ADDR/PREFIX, e.g. 10.0.2.2/24"))?),
                "gw" => c.gateway = Some(v.parse().map_err(|_| bad("want an IPv4 address"))?),
                "dns" => c
                    .dns
                    .push(v.parse().map_err(|_| bad("want an IPv4 address"))?),
                "dhcp" if v.is_empty() => c.dhcp = true,
                "mtu" => {
                    c.mtu = v
                        .parse()
                        .ok()
                        .filter(|m| (576..=9000).contains(m))
                        .ok_or(bad("want 576 to 9000"))?
                }
                "mac" => {
                    let b: Vec<u8> = v
                        .split(':')
                        .filter_map(|x| u8::from_str_radix(x, 16).ok())
                        .collect();
                    if b.len() != 6 || b[0] & 1 != 0 {
                        return Err(bad("want a unicast aa:bb:cc:dd:ee:ff"));
                    }
                    c.mac.copy_from_slice(&b);
                }
                _ => return Err(bad("known: ip=, gw=, dns=, dhcp, mtu=, mac=, host=")),
            }
        }
        if c.ip.is_none() && !c.dhcp {
            return Err(NetConfigError::NoAddress(c.tap));
        }
        Ok(c)
    }
}

/// An AF_INET datagram socket to issue interface ioctls on.
fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the fd is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor this function owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An ifreq naming `name` (checked short enough by the tap's opening).
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s as libc::c_char;
    }
    ifr
}

/// A sockaddr_in with `ip`, as an ifreq's address member.
fn set_addr(ifr: &mut libc::ifreq, ip: Ipv4Addr) {
    let sin = libc::sockaddr_in {
        sin_family: libc::sa_family_t::try_from(libc::AF_INET).expect("AF_INET is 2"),
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in fits in the ifreq's sockaddr member (16 bytes
    // both); the write stays inside `ifr`.
    unsafe {
        std::ptr::write_unaligned(
            std::ptr::addr_of_mut!(ifr.ifr_ifru.ifru_addr).cast::<libc::sockaddr_in>(),
            sin,
        )
    };
}

/// Give the host side of tap `name` the address `ip/prefix` and bring it
/// up (SIOCSIFADDR, SIOCSIFNETMASK, SIOCSIFFLAGS).
pub fn configure_host_side(name: &str, ip: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
    let err = |what| {
        move |source| NetError::HostSide {
            name: name.to_string(),
            what,
            source,
        }
    };
    let sock = ioctl_socket().map_err(err("socket"))?;
    let call = |req: libc::c_ulong, ifr: &mut libc::ifreq| {
        // SAFETY: each request used here reads or writes one ifreq, which
        // `ifr` is; the socket is open.
        let rc = unsafe { libc::ioctl(sock.as_raw_fd(), req as _, ifr as *mut libc::ifreq) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let mut ifr = ifreq(name);
    set_addr(&mut ifr, ip);
    call(libc::SIOCSIFADDR, &mut ifr).map_err(err("address"))?;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    let mut ifr = ifreq(name);
    set_addr(&mut ifr, Ipv4Addr::from(mask));
    call(libc::SIOCSIFNETMASK, &mut ifr).map_err(err("netmask"))?;
    let mut ifr = ifreq(name);
    call(libc::SIOCGIFFLAGS, &mut ifr).map_err(err("flags"))?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    let up = libc::c_short::try_from(libc::IFF_UP | libc::IFF_RUNNING).expect("low flag bits");
    ifr.ifr_ifru.ifru_flags = flags | up;
    call(libc::SIOCSIFFLAGS, &mut ifr).map_err(err("up"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_static_dhcp_and_refuses_bad_values() {
        let c =
            NetConfig::parse("tap:vk0,ip=10.9.0.2/24,gw=10.9.0.1,dns=1.1.1.1,dns=9.9.9.9,mtu=1400")
                .unwrap();
        assert_eq!(c.ip, Some((Ipv4Addr::new(10, 9, 0, 2), 24)));
        assert_eq!(c.gateway, Some(Ipv4Addr::new(10, 9, 0, 1)));
        assert_eq!(c.dns.len(), 2);
        assert_eq!(c.mtu, 1400);
        assert!(NetConfig::parse("tap:vk0,dhcp").unwrap().dhcp);
        assert_eq!(NetConfig::parse("tap:,dhcp"), Err(NetConfigError::NoName));
        assert!(matches!(
            NetConfig::parse("wifi"),
            Err(NetConfigError::Kind(_))
        ));
        assert!(matches!(
            NetConfig::parse("tap:vk0,ip=10.0.0.1"),
            Err(NetConfigError::Option(..))
        ));
        assert!(matches!(
            NetConfig::parse("tap:vk0,ip=10.0.0.1/33"),
            Err(NetConfigError::Option(..))
        ));
        assert!(matches!(
            NetConfig::parse("tap:vk0,mac=01:00:00:00:00:01,dhcp"),
            Err(NetConfigError::Option(..))
        ));
        assert!(matches!(
            NetConfig::parse("tap:vk0,speed=10,dhcp"),
            Err(NetConfigError::Option(..))
        ));
        assert_eq!(
            NetConfig::parse("tap:vk0"),
            Err(NetConfigError::NoAddress("vk0".into()))
        );
    }
}
