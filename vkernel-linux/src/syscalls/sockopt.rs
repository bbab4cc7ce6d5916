//! Socket options: getsockopt and setsockopt. The options a socket acts
//! on are its own fields (SO_RCVTIMEO, SO_SNDTIMEO, SO_PASSCRED); the
//! state-derived ones are read from its state (SO_TYPE, SO_DOMAIN,
//! SO_PROTOCOL, SO_ACCEPTCONN, SO_PEERCRED, the buffer sizes); integer
//! options of Internet sockets that change nothing on a loopback network
//! (SO_REUSEADDR, SO_KEEPALIVE, TCP_NODELAY, IP_TTL, IPV6_V6ONLY...) are
//! kept as set and read back, with Linux's defaults before. IPV6_V6ONLY
//! and SO_REUSEPORT count at bind. Anything else is ENOPROTOOPT.

use super::errno::*;
use super::inet::{IPPROTO_IPV6, IPV6_V6ONLY, SO_REUSEPORT};
use super::R;
use crate::abi::socket::{SOL_SOCKET, SO_RCVTIMEO, SO_SNDTIMEO};
use crate::files::{FileKind, SockState, SockType};
use crate::Vproc;

/// IPPROTO_IP.
const IPPROTO_IP: u64 = 0;
/// IPPROTO_TCP.
const IPPROTO_TCP: u64 = 6;
/// SO_LINGER (a struct linger: kept as on/off and seconds).
const SO_LINGER: u64 = 13;
/// Where SO_LINGER's seconds are kept beside its on/off.
const SO_LINGER_SECS: u64 = 1013;

/// The default of an integer option a socket of `family` and type `ty`
/// keeps as set, or None when it has no such option.
fn default_opt(inet: bool, ty: SockType, level: u64, name: u64) -> Option<i32> {
    let tcp = inet && ty == SockType::Stream;
    match (level, name) {
        // SO_REUSEADDR, SO_KEEPALIVE, SO_BROADCAST, SO_OOBINLINE,
        // SO_PRIORITY, SO_REUSEPORT, SO_RCVLOWAT, SO_SNDLOWAT.
        (SOL_SOCKET, 2 | 6 | 9 | 10 | 12 | SO_REUSEPORT) => Some(0),
        (SOL_SOCKET, 18 | 19) => Some(1),
        // IP_TOS, IP_TTL, IP_RECVERR, IP_MULTICAST_TTL/LOOP.
        (IPPROTO_IP, 1 | 11) if inet => Some(0),
        (IPPROTO_IP, 2) if inet => Some(64),
        (IPPROTO_IP, 33) if inet => Some(1),
        (IPPROTO_IP, 34) if inet => Some(1),
        // UDPLITE_SEND_CSCOV, UDPLITE_RECV_CSCOV.
        (136, 10 | 11) if inet && ty == SockType::Dgram => Some(0),
        // IPV6_UNICAST_HOPS, IPV6_V6ONLY, IPV6_RECVERR.
        (IPPROTO_IPV6, 16) if inet => Some(64),
        (IPPROTO_IPV6, IPV6_V6ONLY | 25) if inet => Some(0),
        // TCP_NODELAY, TCP_MAXSEG, TCP_CORK, TCP_KEEPIDLE, TCP_KEEPINTVL,
        // TCP_KEEPCNT, TCP_SYNCNT, TCP_QUICKACK, TCP_USER_TIMEOUT.
        (IPPROTO_TCP, 1 | 3) if tcp => Some(0),
        (IPPROTO_TCP, 2) if tcp => Some(65483),
        (IPPROTO_TCP, 4) if tcp => Some(7200),
        (IPPROTO_TCP, 5) if tcp => Some(75),
        (IPPROTO_TCP, 6) if tcp => Some(9),
        (IPPROTO_TCP, 7) if tcp => Some(6),
        (IPPROTO_TCP, 12) if tcp => Some(1),
        (IPPROTO_TCP, 18) if tcp => Some(0),
        _ => None,
    }
}

/// SO_SNDBUF/SO_RCVBUF (and their FORCE forms, `name` 32/33) of `v` on
/// socket `s`: Linux keeps twice the value asked, at least 4,608 (send)
/// or 2,304 (receive) and at most twice net.core.[wr]mem_max (the FORCE
/// forms: up to 4 MiB); a connected socket's direction holds that many
/// bytes from now on (the last of its two ends to set it wins).
pub(super) fn set_buffer(s: &mut crate::files::Socket, name: u64, v: i32) {
    let send = matches!(name, 7 | 32);
    let max = if name >= 32 {
        4 << 20
    } else {
        2 * crate::fs::socket::SOCK_BUF
    };
    let min = if send { 4608 } else { 2304 };
    let size = usize::try_from(v.max(0))
        .unwrap_or(0)
        .saturating_mul(2)
        .clamp(min, max);
    s.opts.insert(
        (SOL_SOCKET, if send { 7 } else { 8 }),
        i32::try_from(size).unwrap_or(i32::MAX),
    );
    if let SockState::Connected(c) = &s.state {
        let q = if send { &c.tx } else { &c.rx };
        q.borrow_mut().capacity = size;
    }
}

/// Apply the buffer sizes socket `s` was given before it was connected
/// (or its listener was given) to its connection.
pub(super) fn apply_buffers(
    s: &mut crate::files::Socket,
    from: &std::collections::BTreeMap<(u64, u64), i32>,
) {
    for name in [7u64, 8] {
        if let Some(&v) = from.get(&(SOL_SOCKET, name)) {
            s.opts.insert((SOL_SOCKET, name), v);
            if let SockState::Connected(c) = &s.state {
                let q = if name == 7 { &c.tx } else { &c.rx };
                q.borrow_mut().capacity = usize::try_from(v).unwrap_or(0);
            }
        }
    }
}

impl Vproc {
    /// getsockopt(fd, level, name, val, lenp).
    pub(super) fn sys_getsockopt(
        &mut self,
        fd: i64,
        level: u64,
        name: u64,
        val: u64,
        lenp: u64,
    ) -> R {
        let file = self.socket_of(fd)?;
        if (level, name) == (SOL_SOCKET, 4) {
            // SO_ERROR
            let e = i32::try_from(Self::take_socket_error(&file)).unwrap_or(i32::MAX);
            return self.put_opt(&e.to_le_bytes(), val, lenp);
        }
        let f = file.borrow();
        let FileKind::Socket(sk) = &f.kind else {
            return Err(ENOTSOCK);
        };
        let (cap, listening, cred) = match &sk.state {
            SockState::Connected(s) => {
                let q = if name == 7 { &s.tx } else { &s.rx };
                (q.borrow().capacity, false, Some(s.peer_cred))
            }
            SockState::Listening(p) => {
                (crate::fs::pipe::PIPE_CAPACITY, true, Some(p.borrow().cred))
            }
            SockState::Dgram(d) => (d.inbox.borrow().capacity, false, None),
            _ => (crate::fs::pipe::PIPE_CAPACITY, false, None),
        };
        let (ty, family, inet, protocol) = (sk.ty, sk.family, sk.is_inet(), sk.protocol);
        let connected = matches!(sk.state, SockState::Connected(_));
        let timeo = [sk.rcvtimeo, sk.sndtimeo];
        let passcred = sk.passcred;
        let kept = sk.opts.get(&(level, name)).copied();
        let linger = [
            sk.opts.get(&(SOL_SOCKET, SO_LINGER)).copied().unwrap_or(0),
            sk.opts
                .get(&(SOL_SOCKET, SO_LINGER_SECS))
                .copied()
                .unwrap_or(0),
        ];
        drop(f);
        let v: i32 = match (level, name) {
            (SOL_SOCKET, 17) => return self.peercred(cred, val, lenp), // SO_PEERCRED
            (SOL_SOCKET, SO_RCVTIMEO | SO_SNDTIMEO) => {
                let t = timeo[usize::from(name == SO_SNDTIMEO)].unwrap_or_default();
                return self.put_opt(&super::events::encode_timeval(t), val, lenp);
            }
            (SOL_SOCKET, SO_LINGER) => {
                let mut b = linger[0].to_le_bytes().to_vec();
                b.extend_from_slice(&linger[1].to_le_bytes());
                return self.put_opt(&b, val, lenp);
            }
            (SOL_SOCKET, 3) if protocol & super::ping::RAW != 0 => 3, // SOCK_RAW
            (SOL_SOCKET, 3) => ty.raw(),                              // SO_TYPE
            (SOL_SOCKET, 39) => i32::from(family),                    // SO_DOMAIN
            (SOL_SOCKET, 38) => match (inet, ty) {
                // SO_PROTOCOL
                _ if protocol != 0 => protocol & 0xff,
                (true, SockType::Stream) => 6,
                (true, _) => 17,
                (false, _) => 0,
            },
            (SOL_SOCKET, 30) => i32::from(listening), // SO_ACCEPTCONN
            (SOL_SOCKET, 7 | 8) if connected || kept.is_none() => {
                i32::try_from(cap).unwrap_or(i32::MAX) // SO_SNDBUF, SO_RCVBUF
            }
            (SOL_SOCKET, 16) => i32::from(passcred), // SO_PASSCRED
            _ => match kept.or_else(|| default_opt(inet, ty, level, name)) {
                Some(v) => v,
                None if level != SOL_SOCKET && !inet => return Err(EOPNOTSUPP),
                None => return Err(ENOPROTOOPT),
            },
        };
        self.put_opt(&v.to_le_bytes(), val, lenp)
    }

    /// An option's value `v` at `val`, cut to the room at `lenp`, whose
    /// length it writes there.
    fn put_opt(&mut self, v: &[u8], val: u64, lenp: u64) -> R {
        let len = self.user_u32(lenp)?;
        if (len as i32) < 0 {
            return Err(EINVAL);
        }
        let n = (len as usize).min(v.len());
        self.mm.write(val, &v[..n])?;
        self.mm
            .write(lenp, &u32::try_from(n).unwrap_or(0).to_le_bytes())?;
        Ok(0)
    }

    /// setsockopt(fd, level, name, val, len): SO_RCVTIMEO, SO_SNDTIMEO and
    /// SO_PASSCRED are kept and act; SO_SNDBUF, SO_RCVBUF and their FORCE
    /// forms are accepted and the buffers keep their size; the integer
    /// options of [`default_opt`] are kept as set.
    pub(super) fn sys_setsockopt(
        &mut self,
        fd: i64,
        level: u64,
        name: u64,
        val: u64,
        len: u64,
    ) -> R {
        let file = self.socket_of(fd)?;
        let (inet, ty) = match &file.borrow().kind {
            FileKind::Socket(s) => (s.is_inet(), s.ty),
            _ => return Err(ENOTSOCK),
        };
        match (level, name) {
            (SOL_SOCKET, SO_RCVTIMEO | SO_SNDTIMEO) => {
                if len < 16 {
                    return Err(EINVAL);
                }
                let b = self.mm.read_vec(val, 16)?;
                let t = super::events::timeval(&b).map_err(|_| EDOM)?;
                let t = (!t.is_zero()).then_some(t);
                if let FileKind::Socket(s) = &mut file.borrow_mut().kind {
                    if name == SO_RCVTIMEO {
                        s.rcvtimeo = t;
                    } else {
                        s.sndtimeo = t;
                    }
                }
                Ok(0)
            }
            (SOL_SOCKET, SO_LINGER) => {
                if len < 8 {
                    return Err(EINVAL);
                }
                let b = self.mm.read_vec(val, 8)?;
                let on = i32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
                let secs = i32::from_le_bytes(b[4..].try_into().expect("4 bytes"));
                if let FileKind::Socket(s) = &mut file.borrow_mut().kind {
                    s.opts.insert((SOL_SOCKET, SO_LINGER), i32::from(on != 0));
                    s.opts.insert((SOL_SOCKET, SO_LINGER_SECS), secs);
                }
                Ok(0)
            }
            (SOL_SOCKET, 16) => {
                let on = self.opt_int(val, len)? != 0;
                if let FileKind::Socket(s) = &mut file.borrow_mut().kind {
                    s.passcred = on;
                }
                Ok(0)
            }
            (SOL_SOCKET, 7 | 8 | 32 | 33) => {
                let v = self.opt_int(val, len)?;
                let mut f = file.borrow_mut();
                if let FileKind::Socket(s) = &mut f.kind {
                    set_buffer(s, name, v);
                }
                Ok(0)
            }
            _ if default_opt(inet, ty, level, name).is_some() => {
                let v = self.opt_int(val, len)?;
                if let FileKind::Socket(s) = &mut file.borrow_mut().kind {
                    s.opts.insert((level, name), v);
                }
                Ok(0)
            }
            _ if level != SOL_SOCKET && !inet => Err(EOPNOTSUPP),
            _ => Err(ENOPROTOOPT),
        }
    }

    /// An integer option's value: the int at `val` (EINVAL when `len` is
    /// shorter; one byte is taken as Linux takes it).
    fn opt_int(&mut self, val: u64, len: u64) -> Result<i32, i64> {
        match len {
            0 => Err(EINVAL),
            1..=3 => Ok(i32::from(self.mm.read_vec(val, 1)?[0])),
            _ => Ok(self.user_u32(val)? as i32),
        }
    }
}
