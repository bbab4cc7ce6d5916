//! ICMP echo sockets (Linux's "ping" sockets: `socket(AF_INET,
//! SOCK_DGRAM, IPPROTO_ICMP)`, and ICMPv6's): a send is one echo request
//! (an 8-byte ICMP header and its data), whose identifier becomes the
//! socket's own (its "port", chosen at the first send as a UDP port is)
//! and whose checksum is computed here; a receive gives each echo reply,
//! header included, with the peer's address. The vkernel answers its own
//! addresses (loopback) itself; other addresses go to the network (the
//! tap's stack, or the host's ping sockets).

use super::errno::*;
use super::tapnet::Way;
use super::unix::Addr;
use super::R;
use crate::files::{self, FileKind, OpenFile, Shared, SockState};
use crate::fs::inet::InetName;
use crate::Vproc;

/// Marks a raw ICMP socket's protocol (SOCK_RAW, IPPROTO_ICMP): what it
/// sends is sent as it is (its identifier and checksum are the
/// program's), and what it receives starts with an IPv4 header.
pub(super) const RAW: i32 = 0x100;

/// IPPROTO_ICMP.
const IPPROTO_ICMP: i32 = 1;
/// IPPROTO_ICMPV6.
const IPPROTO_ICMPV6: i32 = 58;

/// Is socket `s` an ICMP echo socket?
pub(super) fn is_ping(s: &files::Socket) -> bool {
    let p = s.protocol & !RAW;
    s.is_inet() && (p == IPPROTO_ICMP || p == IPPROTO_ICMPV6)
}

/// Is `file` an ICMP echo socket?
pub(super) fn is_ping_file(file: &Shared<OpenFile>) -> bool {
    matches!(&file.borrow().kind, FileKind::Socket(s) if is_ping(s))
}

use crate::net::checksum;

/// The echo `request` (type 8, or 128 for ICMPv6) with identifier `id`
/// turned into its reply (type 0, or 129), checksummed (ICMPv6's
/// checksum covers a pseudo-header the receiver does not check here, so
/// it is left as computed over the message).
fn reply_of(request: &[u8], v6: bool) -> Vec<u8> {
    let mut r = request.to_vec();
    r[0] = if v6 { 129 } else { 0 };
    r[2] = 0;
    r[3] = 0;
    let c = checksum(&r);
    r[2..4].copy_from_slice(&c.to_be_bytes());
    r
}

impl Vproc {
    /// Send echo request `data` on ICMP socket `file` to `to` (or its
    /// connected peer).
    pub(super) fn ping_send(
        &mut self,
        file: &Shared<OpenFile>,
        data: &[u8],
        to: Option<Addr>,
    ) -> R {
        let v6 = Self::family_of(file) != crate::fs::inet::AF_INET;
        let want = if v6 { 128 } else { 8 };
        if data.len() < 8 || data[0] != want || data[1] != 0 {
            return Err(EINVAL);
        }
        if data.len() > 65_507 {
            return Err(EMSGSIZE);
        }
        self.inet_autobind(file)?;
        let (id, dest, inbox, raw) = {
            let f = file.borrow();
            let FileKind::Socket(s) = &f.kind else {
                return Err(ENOTSOCK);
            };
            let SockState::Dgram(d) = &s.state else {
                return Err(EINVAL);
            };
            let id = s
                .name
                .as_deref()
                .and_then(InetName::from_bytes)
                .map_or(0, |n| n.port);
            let dest = match to {
                Some(Addr::Inet(n)) => n,
                Some(_) => return Err(EAFNOSUPPORT),
                None => d
                    .peer
                    .as_ref()
                    .and_then(|(_, n)| n.as_deref().and_then(InetName::from_bytes))
                    .ok_or(EDESTADDRREQ)?,
            };
            (id, dest, d.inbox.clone(), s.protocol & RAW != 0)
        };
        let mut msg = data.to_vec();
        // A raw socket's message goes as it is; an echo socket's carries
        // the socket's identifier and the kernel's checksum.
        let id = if raw {
            u16::from_be_bytes([msg[4], msg[5]])
        } else {
            msg[4..6].copy_from_slice(&id.to_be_bytes());
            msg[2] = 0;
            msg[3] = 0;
            let c = checksum(&msg);
            msg[2..4].copy_from_slice(&c.to_be_bytes());
            id
        };

        let dest = InetName {
            port: 0,
            ..dest.destination()
        };
        match self.way(dest)? {
            Way::Local => {
                // This vkernel's own address answers at once.
                let mut reply = reply_of(&msg, v6);
                if raw {
                    let lo = std::net::Ipv4Addr::LOCALHOST;
                    let mut r =
                        crate::net::ipv4_header(dest.v4().unwrap_or(lo), lo, reply.len()).to_vec();
                    r.extend(reply);
                    reply = r;
                }
                let mut q = inbox.borrow_mut();
                if q.readers > 0 && q.fits(reply.len()) {
                    q.push_message(&reply, Some(dest.to_bytes()), None);
                    let w = q.take_waiters();
                    drop(q);
                    files::wake_all(w);
                }
            }
            Way::Out(to) => {
                let net = self.net().ok_or(ENETUNREACH)?;
                net.ping(id, inbox.downgrade(), to.ip(), msg, raw);
            }
        }
        Ok(data.len() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_replies_as_rfc_1071() {
        // An echo request with id 0x1234, seq 1, data "hi".
        let mut m = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1, b'h', b'i'];
        let c = checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        // A message with its checksum sums to zero.
        assert_eq!(checksum(&m), 0);
        let r = reply_of(&m, false);
        assert_eq!(r[0], 0);
        assert_eq!(checksum(&r), 0);
        assert_eq!(&r[4..], &m[4..]);
        // Odd lengths pad with a zero byte.
        assert_eq!(checksum(&[0xff]), !0xff00);
    }
}
