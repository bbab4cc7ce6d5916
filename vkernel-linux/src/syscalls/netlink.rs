//! AF_NETLINK, NETLINK_ROUTE only: enough of rtnetlink for `ip addr`,
//! `ip link`, `ip route`, glibc's getifaddrs and if_nameindex to see the
//! vkernel's interfaces ([`super::ifaces`]). A netlink socket is a
//! datagram socket whose sends the vkernel answers into its own queue:
//! RTM_GETLINK, RTM_GETADDR and RTM_GETROUTE (dumps, or one link by index
//! or name) get RTM_NEW* messages and NLMSG_DONE; anything else gets
//! NLMSG_ERROR EOPNOTSUPP (changing links, addresses and routes is not an
//! unprivileged user's). With `--net host` the GET requests are asked of
//! a host netlink socket and its answers passed on.

use std::net::Ipv4Addr;

use super::errno::*;
use super::ifaces::Iface;
use super::R;
use crate::files::{self, FileKind, OpenFile, Shared, SockState};
use crate::Vproc;

/// AF_NETLINK.
pub(super) const AF_NETLINK: u16 = 16;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_MULTI: u16 = 2;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;

/// A netlink request's header.
#[derive(Clone, Copy)]
struct Header {
    ty: u16,
    flags: u16,
    seq: u32,
}

/// `data` padded to netlink's 4-byte alignment, appended to `out`.
fn put_aligned(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// An attribute (rtattr) of type `ty`.
fn attr(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&ty.to_le_bytes());
    put_aligned(out, data);
}

/// One netlink message of type `ty` carrying `body`.
fn message(out: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, pid: u32, body: &[u8]) {
    let len = u32::try_from(16 + body.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&pid.to_le_bytes());
    put_aligned(out, body);
}

/// RTM_NEWLINK's body for `i`.
fn link(i: &Iface) -> Vec<u8> {
    let mut b = vec![0u8, 0];
    b.extend_from_slice(&i.arphrd.to_le_bytes());
    b.extend_from_slice(&i.index.to_le_bytes());
    b.extend_from_slice(&i.flags.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    attr(&mut b, 3, format!("{}\0", i.name).as_bytes()); // IFLA_IFNAME
    attr(&mut b, 4, &i.mtu.to_le_bytes()); // IFLA_MTU
    attr(&mut b, 13, &1000u32.to_le_bytes()); // IFLA_TXQLEN
    attr(&mut b, 16, &[if i.arphrd == 1 { 6 } else { 0 }]); // IFLA_OPERSTATE
    attr(&mut b, 17, &[0]); // IFLA_LINKMODE
    attr(&mut b, 27, &0u32.to_le_bytes()); // IFLA_GROUP
    attr(&mut b, 6, b"noqueue\0"); // IFLA_QDISC
    attr(&mut b, 1, &i.mac); // IFLA_ADDRESS
    let bcast = if i.arphrd == 1 { [0xff; 6] } else { [0; 6] };
    attr(&mut b, 2, &bcast); // IFLA_BROADCAST
    b
}

/// RTM_NEWADDR's bodies for `i` and `family` (0: both).
fn addrs(i: &Iface, family: u8) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let scope = if i.arphrd == 772 { 254 } else { 0 };
    if let (Some((a, prefix)), 0 | 2) = (i.addr, family) {
        let mut b = vec![2, prefix, 0x80, scope];
        b.extend_from_slice(&i.index.to_le_bytes());
        attr(&mut b, 1, &a.octets()); // IFA_ADDRESS
        attr(&mut b, 2, &a.octets()); // IFA_LOCAL
        if let Some(bc) = i.broadcast() {
            attr(&mut b, 4, &bc.octets()); // IFA_BROADCAST
        }
        attr(&mut b, 3, format!("{}\0", i.name).as_bytes()); // IFA_LABEL
        attr(&mut b, 8, &0x80u32.to_le_bytes()); // IFA_FLAGS: permanent
        v.push(b);
    }
    if i.arphrd == 772 && matches!(family, 0 | 10) {
        let mut b = vec![10, 128, 0x80, 254];
        b.extend_from_slice(&i.index.to_le_bytes());
        attr(&mut b, 1, &std::net::Ipv6Addr::LOCALHOST.octets());
        attr(&mut b, 8, &0x80u32.to_le_bytes());
        v.push(b);
    }
    v
}

/// RTM_NEWROUTE's body: `dst/len` through interface `oif` (by
/// `gateway`, else on the link), from `src`.
fn route(
    dst: Ipv4Addr,
    len: u8,
    oif: u32,
    gateway: Option<Ipv4Addr>,
    src: Option<Ipv4Addr>,
) -> Vec<u8> {
    // rtmsg: family, dst_len, src_len, tos, table main, protocol
    // (kernel or boot), scope (link or universe), type unicast; flags.
    let (proto, scope) = if gateway.is_some() { (3, 0) } else { (2, 253) };
    let mut b = vec![2, len, 0, 0, 254, proto, scope, 1];
    b.extend_from_slice(&0u32.to_le_bytes());
    attr(&mut b, 15, &254u32.to_le_bytes()); // RTA_TABLE
    if len > 0 {
        attr(&mut b, 1, &dst.octets()); // RTA_DST
    }
    if let Some(g) = gateway {
        attr(&mut b, 5, &g.octets()); // RTA_GATEWAY
    }
    if let Some(s) = src {
        attr(&mut b, 7, &s.octets()); // RTA_PREFSRC
    }
    attr(&mut b, 4, &oif.to_le_bytes()); // RTA_OIF
    b
}

impl Vproc {
    /// Is `file` a netlink socket?
    pub(super) fn is_netlink(file: &Shared<OpenFile>) -> bool {
        Self::family_of(file) == AF_NETLINK
    }

    /// The socket's netlink port id, bound on first use (the tgid, as
    /// Linux gives a process's first netlink socket).
    fn netlink_pid(&self, file: &Shared<OpenFile>) -> u32 {
        let mut f = file.borrow_mut();
        let FileKind::Socket(s) = &mut f.kind else {
            return 0;
        };
        if let Some(n) = s.name.as_deref().filter(|n| n.len() >= 4) {
            return u32::from_le_bytes([n[0], n[1], n[2], n[3]]);
        }
        let pid = u32::try_from(self.thread.tgid).unwrap_or(0);
        let mut name = pid.to_le_bytes().to_vec();
        name.extend_from_slice(&0u32.to_le_bytes());
        s.name = Some(name);
        pid
    }

    /// bind(2) of a netlink socket: its port id (0: the vkernel picks)
    /// and multicast groups (kept, never sent to).
    pub(super) fn netlink_bind(&mut self, file: &Shared<OpenFile>, addr: u64, len: u64) -> R {
        if len < 12 {
            return Err(EINVAL);
        }
        let b = self.mm.read_vec(addr, 12)?;
        if u16::from_le_bytes([b[0], b[1]]) != AF_NETLINK {
            return Err(EINVAL);
        }
        let pid = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        if pid != 0 {
            let mut f = file.borrow_mut();
            if let FileKind::Socket(s) = &mut f.kind {
                s.name = Some(b[4..12].to_vec());
            }
        }
        self.netlink_pid(file);
        Ok(0)
    }

    /// A sockaddr_nl for `name` (the port id and groups; none: the
    /// kernel's, 0).
    pub(super) fn sockaddr_nl(name: Option<&[u8]>) -> Vec<u8> {
        let mut b = AF_NETLINK.to_le_bytes().to_vec();
        b.extend_from_slice(&[0, 0]);
        match name.filter(|n| n.len() == 8) {
            Some(n) => b.extend_from_slice(n),
            None => b.extend_from_slice(&[0; 8]),
        }
        b
    }

    /// A message sent on netlink socket `file`: the answers go to its
    /// queue.
    pub(super) fn netlink_send(&mut self, file: &Shared<OpenFile>, data: &[u8]) -> R {
        let pid = self.netlink_pid(file);
        let inbox = match &file.borrow().kind {
            FileKind::Socket(s) => match &s.state {
                SockState::Dgram(d) => d.inbox.clone(),
                _ => return Err(EINVAL),
            },
            _ => return Err(ENOTSOCK),
        };
        let replies = if self.net().is_some_and(|n| n.is_host()) {
            host_netlink(data, pid)?
        } else {
            self.netlink_answer(data, pid)
        };
        let mut q = inbox.borrow_mut();
        for r in replies {
            if !q.fits(r.len()) {
                return Err(ENOBUFS);
            }
            // From the kernel: port id 0, no groups (receivers check it).
            q.push_message(&r, Some(vec![0; 8]), None);
        }
        let w = q.take_waiters();
        drop(q);
        files::wake_all(w);
        Ok(data.len() as i64)
    }

    /// The answers to the requests in `data` (each answer one datagram).
    fn netlink_answer(&self, data: &[u8], pid: u32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 16 <= data.len() {
            let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
            if len < 16 || at + len > data.len() {
                break;
            }
            let h = Header {
                ty: u16::from_le_bytes([data[at + 4], data[at + 5]]),
                flags: u16::from_le_bytes([data[at + 6], data[at + 7]]),
                seq: u32::from_le_bytes(data[at + 8..at + 12].try_into().expect("4 bytes")),
            };
            let body = &data[at + 16..at + len];
            out.push(self.rtnl_one(h, body, &data[at..at + 16], pid));
            at += len.next_multiple_of(4);
        }
        out
    }

    /// The answer to one request.
    fn rtnl_one(&self, h: Header, body: &[u8], head: &[u8], pid: u32) -> Vec<u8> {
        let ifs = self.interfaces();
        let dump = h.flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        let multi = if dump { NLM_F_MULTI } else { 0 };
        let error = |out: &mut Vec<u8>, e: i32| {
            let mut b = (-e).to_le_bytes().to_vec();
            b.extend_from_slice(head);
            message(out, NLMSG_ERROR, 0, h.seq, pid, &b);
        };
        match h.ty {
            RTM_GETLINK => {
                let want = if dump {
                    None
                } else {
                    Some(requested(body, &ifs))
                };
                match want {
                    Some(None) => {
                        error(&mut out, 19); // ENODEV
                        return out;
                    }
                    Some(Some(i)) => message(&mut out, RTM_NEWLINK, 0, h.seq, pid, &link(&ifs[i])),
                    None => {
                        for i in &ifs {
                            message(&mut out, RTM_NEWLINK, multi, h.seq, pid, &link(i));
                        }
                    }
                }
            }
            RTM_GETADDR => {
                let family = body.first().copied().unwrap_or(0);
                for i in &ifs {
                    for a in addrs(i, family) {
                        message(&mut out, RTM_NEWADDR, multi, h.seq, pid, &a);
                    }
                }
            }
            RTM_GETROUTE => {
                let family = body.first().copied().unwrap_or(0);
                if matches!(family, 0 | 2) {
                    for i in ifs.iter().filter(|i| i.arphrd == 1) {
                        if let Some((a, p)) = i.addr {
                            let net = Ipv4Addr::from(u32::from(a) & u32::from(i.netmask()));
                            message(
                                &mut out,
                                RTM_NEWROUTE,
                                multi,
                                h.seq,
                                pid,
                                &route(net, p, i.index, None, Some(a)),
                            );
                            if let Some(g) =
                                self.net().and_then(|n| n.config().and_then(|c| c.gateway))
                            {
                                message(
                                    &mut out,
                                    RTM_NEWROUTE,
                                    multi,
                                    h.seq,
                                    pid,
                                    &route(Ipv4Addr::UNSPECIFIED, 0, i.index, Some(g), None),
                                );
                            }
                        }
                    }
                }
            }
            _ => {
                error(&mut out, 95); // EOPNOTSUPP
                return out;
            }
        }
        if dump {
            message(
                &mut out,
                NLMSG_DONE,
                NLM_F_MULTI,
                h.seq,
                pid,
                &0i32.to_le_bytes(),
            );
        } else if h.flags & NLM_F_ACK != 0 {
            error(&mut out, 0);
        }
        out
    }
}

/// Which interface a single RTM_GETLINK names (by index, or IFLA_IFNAME).
fn requested(body: &[u8], ifs: &[Iface]) -> Option<usize> {
    let index = body
        .get(4..8)
        .map_or(0, |b| i32::from_le_bytes(b.try_into().expect("4 bytes")));
    if index > 0 {
        return ifs
            .iter()
            .position(|i| i64::from(i.index) == i64::from(index));
    }
    let mut at = 16;
    while at + 4 <= body.len() {
        let len = usize::from(u16::from_le_bytes([body[at], body[at + 1]]));
        let ty = u16::from_le_bytes([body[at + 2], body[at + 3]]);
        if len < 4 || at + len > body.len() {
            break;
        }
        if ty == 3 {
            let name = &body[at + 4..at + len];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            return ifs.iter().position(|i| i.name.as_bytes() == name);
        }
        at += len.next_multiple_of(4);
    }
    None
}

/// `--net host`: the GET requests in `data` asked of a host rtnetlink
/// socket; its answers with the vproc socket's port id.
fn host_netlink(data: &[u8], pid: u32) -> Result<Vec<Vec<u8>>, i64> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // Only requests that read (RTM_GET*: type 2 mod 4).
    let ty = data
        .get(4..6)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
    if data.len() < 16 || ty < 16 || ty % 4 != 2 {
        return Err(EPERM);
    }
    // SAFETY: socket(2) with constant arguments; checked below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(EIO);
    }
    // SAFETY: fd is a new socket owned from here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: SO_RCVTIMEO reads one timeval, which `tv` is.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::addr_of!(tv).cast(),
            libc::socklen_t::try_from(std::mem::size_of_val(&tv)).expect("small"),
        )
    };
    // SAFETY: `data` is readable for its length; no address (the kernel).
    if unsafe { libc::send(sock.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) } < 0 {
        return Err(EIO);
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let Ok(n) = usize::try_from(n) else {
            break;
        };
        let mut m = buf[..n].to_vec();
        let mut at = 0;
        let mut end = false;
        while at + 16 <= m.len() {
            let len = u32::from_le_bytes(m[at..at + 4].try_into().expect("4 bytes")) as usize;
            let t = u16::from_le_bytes([m[at + 4], m[at + 5]]);
            m[at + 12..at + 16].copy_from_slice(&pid.to_le_bytes());
            end |= t == NLMSG_DONE || t == NLMSG_ERROR;
            if len < 16 {
                break;
            }
            at += len.next_multiple_of(4);
        }
        out.push(m);
        let dump = u16::from_le_bytes([data[6], data[7]]) & NLM_F_DUMP == NLM_F_DUMP;
        if end || !dump {
            break;
        }
    }
    Ok(out)
}
