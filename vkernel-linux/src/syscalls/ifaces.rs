//! The vkernel's network interfaces as programs ask for them: `lo`
//! (127.0.0.1/8, ::1) always, and `eth0` for the tap network (its address,
//! the vkernel's Ethernet address, the MTU); the socket ioctls that
//! `ifconfig`, `if_nametoindex` and friends use (SIOCGIFCONF and the
//! SIOCGIF* getters; setting anything is EPERM). With `--net host` the
//! interfaces are the host's: the getters are asked of a host socket.

use std::net::Ipv4Addr;

use super::errno::*;
use super::R;
use crate::Vproc;

/// IFF_UP.
pub(super) const IFF_UP: u32 = 0x1;
/// IFF_BROADCAST.
const IFF_BROADCAST: u32 = 0x2;
/// IFF_LOOPBACK.
const IFF_LOOPBACK: u32 = 0x8;
/// IFF_RUNNING.
const IFF_RUNNING: u32 = 0x40;
/// IFF_MULTICAST.
const IFF_MULTICAST: u32 = 0x1000;
/// IFF_LOWER_UP (netlink only: beyond ifreq's 16 bits).
pub(super) const IFF_LOWER_UP: u32 = 0x1_0000;

/// Bytes of a `struct ifreq`.
const IFREQ: usize = 40;

/// One interface.
#[derive(Clone, Debug)]
pub(super) struct Iface {
    /// Its name.
    pub name: &'static str,
    /// Its index (1: lo).
    pub index: u32,
    /// IFF_* flags.
    pub flags: u32,
    /// Its IPv4 address and prefix length.
    pub addr: Option<(Ipv4Addr, u8)>,
    /// Its link-layer address.
    pub mac: [u8; 6],
    /// Its MTU.
    pub mtu: u32,
    /// Its ARPHRD_* type.
    pub arphrd: u16,
}

impl Iface {
    /// The netmask of its prefix.
    pub fn netmask(&self) -> Ipv4Addr {
        let p = self.addr.map_or(0, |a| a.1);
        Ipv4Addr::from(if p == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(p))
        })
    }

    /// Its broadcast address (none for loopback).
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        if self.flags & IFF_BROADCAST == 0 {
            return None;
        }
        let (a, _) = self.addr?;
        Some(Ipv4Addr::from(u32::from(a) | !u32::from(self.netmask())))
    }
}

/// A sockaddr_in of `a` (16 bytes).
fn sockaddr_in(a: Ipv4Addr) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = 2; // AF_INET
    b[4..8].copy_from_slice(&a.octets());
    b
}

impl Vproc {
    /// The interfaces this vkernel has (`--net host`: see
    /// [`Vproc::host_ifreq`]).
    pub(super) fn interfaces(&self) -> Vec<Iface> {
        let mut v = vec![Iface {
            name: "lo",
            index: 1,
            flags: IFF_UP | IFF_LOOPBACK | IFF_RUNNING | IFF_LOWER_UP,
            addr: Some((Ipv4Addr::LOCALHOST, 8)),
            mac: [0; 6],
            mtu: 65536,
            arphrd: 772,
        }];
        if let Some(net) = self.net().filter(|n| !n.is_host()) {
            let cfg = net.config();
            v.push(Iface {
                name: "eth0",
                index: 2,
                flags: IFF_UP | IFF_BROADCAST | IFF_RUNNING | IFF_MULTICAST | IFF_LOWER_UP,
                addr: net.address().map(|a| (a, net.prefix())),
                mac: cfg.map_or([0; 6], |c| c.mac),
                mtu: cfg.map_or(1500, |c| u32::try_from(c.mtu).unwrap_or(1500)),
                arphrd: 1,
            });
        }
        v
    }

    /// The interface ioctls on a socket (0x89xx requests).
    pub(super) fn if_ioctl(&mut self, req: u32, arg: u64) -> R {
        const SIOCGIFCONF: u32 = 0x8912;
        if self.net().is_some_and(|n| n.is_host()) {
            return self.host_ifreq(req, arg);
        }
        if req == SIOCGIFCONF {
            return self.ifconf(arg);
        }
        // The setters (SIOCSIF*, SIOCADDRT...): not an unprivileged
        // user's.
        if matches!(
            req,
            0x890b
                | 0x890c
                | 0x8914
                | 0x8916
                | 0x8918
                | 0x891a
                | 0x891c
                | 0x891e
                | 0x8922
                | 0x8924
                | 0x8934
                | 0x8943
        ) {
            return Err(EPERM);
        }
        let mut r = [0u8; IFREQ];
        self.mm.read(arg, &mut r)?;
        let ifs = self.interfaces();
        let found = if req == 0x8910 {
            // SIOCGIFNAME: by index.
            let idx = u32::from_le_bytes([r[16], r[17], r[18], r[19]]);
            ifs.iter().find(|i| i.index == idx)
        } else {
            let end = r[..16].iter().position(|&b| b == 0).unwrap_or(16);
            ifs.iter().find(|i| i.name.as_bytes() == &r[..end])
        };
        let i = found.ok_or(ENODEV)?;
        let int = |v: u32| v.to_le_bytes();
        let mut body = [0u8; 24];
        match req {
            0x8910 => {
                r[..16].fill(0);
                r[..i.name.len()].copy_from_slice(i.name.as_bytes());
                self.mm.write(arg, &r)?;
                return Ok(0);
            }
            // SIOCGIFFLAGS: the low 16 bits.
            0x8913 => body[..2].copy_from_slice(&i.flags.to_le_bytes()[..2]),
            0x8915 | 0x8917 => {
                body[..16].copy_from_slice(&sockaddr_in(i.addr.ok_or(EADDRNOTAVAIL)?.0))
            }
            0x8919 => body[..16]
                .copy_from_slice(&sockaddr_in(i.broadcast().unwrap_or(Ipv4Addr::UNSPECIFIED))),
            0x891b => {
                i.addr.ok_or(EADDRNOTAVAIL)?;
                body[..16].copy_from_slice(&sockaddr_in(i.netmask()))
            }
            0x891d => body[..4].copy_from_slice(&int(0)),
            0x8921 => body[..4].copy_from_slice(&int(i.mtu)),
            0x8927 => {
                body[..2].copy_from_slice(&i.arphrd.to_le_bytes());
                body[2..8].copy_from_slice(&i.mac);
            }
            0x8933 => body[..4].copy_from_slice(&int(i.index)),
            0x8942 => body[..4].copy_from_slice(&int(1000)),
            0x8970 => {}
            _ => return Err(ENOTTY),
        }
        r[16..].copy_from_slice(&body);
        self.mm.write(arg, &r)?;
        Ok(0)
    }

    /// SIOCGIFCONF: the interfaces with an IPv4 address, as ifreqs.
    fn ifconf(&mut self, arg: u64) -> R {
        let mut c = [0u8; 16];
        self.mm.read(arg, &mut c)?;
        let len = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let buf = u64::from_le_bytes(c[8..16].try_into().expect("8 bytes"));
        let ifs: Vec<Iface> = self
            .interfaces()
            .into_iter()
            .filter(|i| i.addr.is_some())
            .collect();
        let room = usize::try_from(len.max(0)).unwrap_or(0) / IFREQ;
        let n = if buf == 0 {
            ifs.len()
        } else {
            room.min(ifs.len())
        };
        if buf != 0 {
            for (k, i) in ifs.iter().take(n).enumerate() {
                let mut r = [0u8; IFREQ];
                r[..i.name.len()].copy_from_slice(i.name.as_bytes());
                r[16..32]
                    .copy_from_slice(&sockaddr_in(i.addr.map_or(Ipv4Addr::UNSPECIFIED, |a| a.0)));
                self.mm.write(buf + (k * IFREQ) as u64, &r)?;
            }
        }
        let total = i32::try_from(n * IFREQ).unwrap_or(i32::MAX);
        self.mm.write(arg, &total.to_le_bytes())?;
        Ok(0)
    }

    /// `--net host`: an interface getter asked of a host socket (the
    /// setters are EPERM).
    fn host_ifreq(&mut self, req: u32, arg: u64) -> R {
        let getter = matches!(
            req,
            0x8910
                | 0x8912
                | 0x8913
                | 0x8915
                | 0x8917
                | 0x8919
                | 0x891b
                | 0x891d
                | 0x8921
                | 0x8927
                | 0x8933
                | 0x8942
                | 0x8970
        );
        if !getter {
            return Err(if (0x8900..0x8a00).contains(&req) {
                EPERM
            } else {
                ENOTTY
            });
        }
        // SAFETY: socket(2) with constant arguments; checked below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(EIO);
        }
        // SAFETY: fd is a new socket owned from here.
        let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let host = |req: u32, p: *mut u8| {
            // SAFETY: `p` points at an ifreq or ifconf this function owns,
            // the size each request reads and writes.
            let rc = unsafe {
                libc::ioctl(
                    std::os::fd::AsRawFd::as_raw_fd(&sock),
                    libc::c_ulong::from(req),
                    p,
                )
            };
            if rc < 0 {
                Err(i64::from(
                    std::io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(libc::EIO),
                ))
            } else {
                Ok(())
            }
        };
        if req == 0x8912 {
            let mut c = [0u8; 16];
            self.mm.read(arg, &mut c)?;
            let len = i32::from_le_bytes([c[0], c[1], c[2], c[3]]).clamp(0, 1 << 16);
            let user = u64::from_le_bytes(c[8..16].try_into().expect("8 bytes"));
            let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
            let mut ifc = libc::ifconf {
                ifc_len: if user == 0 { 0 } else { len },
                ifc_ifcu: libc::__c_anonymous_ifc_ifcu {
                    ifcu_buf: if user == 0 {
                        std::ptr::null_mut()
                    } else {
                        buf.as_mut_ptr().cast()
                    },
                },
            };
            host(req, std::ptr::addr_of_mut!(ifc).cast())?;
            let got = usize::try_from(ifc.ifc_len).unwrap_or(0).min(buf.len());
            if user != 0 {
                self.mm.write(user, &buf[..got])?;
            }
            self.mm.write(arg, &ifc.ifc_len.to_le_bytes())?;
            return Ok(0);
        }
        let mut r = [0u8; IFREQ];
        self.mm.read(arg, &mut r)?;
        host(req, r.as_mut_ptr())?;
        self.mm.write(arg, &r)?;
        Ok(0)
    }
}
