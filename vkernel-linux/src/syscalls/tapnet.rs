//! Internet sockets beyond loopback, through the tap network's stack
//! ([`crate::net`], `--net tap:...`): where a name leads (loopback and the
//! interface's own address are delivered inside the vkernel, other IPv4
//! addresses go to the stack, anything else is unreachable), TCP connect
//! to another host (a stream whose other end the stack holds; blocking
//! until the handshake ends, or EINPROGRESS then poll and SO_ERROR),
//! listeners and UDP ports the stack feeds, and UDP sends to the network.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::errno::*;
use super::R;
use crate::files::{self, FileKind, OpenFile, Port, Shared, SockState};
use crate::fs::inet::InetName;
use crate::fs::socket::Connecting;
use crate::net::Net;
use crate::Vproc;

/// Where an Internet name leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Way {
    /// To this vkernel's own sockets (loopback, the tap's own address).
    Local,
    /// Out through the network (the tap's stack, or the host's).
    Out(SocketAddr),
}

impl Vproc {
    /// The tap network, if the vkernel has one.
    pub(super) fn net(&self) -> Option<Arc<Net>> {
        self.kernel().ok().and_then(|k| k.options().net.clone())
    }

    /// Is `n` an address of this vkernel's (loopback, unspecified, the
    /// tap's)?
    pub(super) fn is_own_name(&self, n: InetName) -> bool {
        n.is_local()
            || self
                .net()
                .is_some_and(|net| net.is_own(n.socket_addr().ip()))
    }

    /// Where a datagram or connection for `n` goes: ENETUNREACH without a
    /// network that reaches it (IPv6 beyond loopback never does).
    pub(super) fn way(&self, n: InetName) -> Result<Way, i64> {
        let to = n.destination();
        if to.is_loopback() {
            return Ok(Way::Local);
        }
        let net = self.net().ok_or(ENETUNREACH)?;
        let a = to.socket_addr();
        if net.is_host() {
            return Ok(Way::Out(a));
        }
        // The tap network is IPv4, unicast.
        let IpAddr::V4(v4) = a.ip() else {
            return Err(ENETUNREACH);
        };
        if net.address() == Some(v4) {
            return Ok(Way::Local);
        }
        if net.address().is_none() || v4.is_multicast() || v4.is_broadcast() {
            return Err(ENETUNREACH);
        }
        Ok(Way::Out(a))
    }

    /// TCP connect of `file` to `to` (another host) through the network.
    pub(super) fn tcp_connect_out(&mut self, file: &Shared<OpenFile>, to: SocketAddr) -> R {
        let net = self.net().ok_or(ENETUNREACH)?;
        if to.port() == 0 {
            return Err(ECONNREFUSED);
        }
        self.inet_autobind(file)?;
        let (mut client, end) = crate::net::stream_pair();
        let state = Arc::new(Connecting::default());
        let (port, nonblock) = {
            let f = file.borrow();
            let FileKind::Socket(s) = &f.kind else {
                return Err(ENOTSOCK);
            };
            let port = s
                .name
                .as_deref()
                .and_then(InetName::from_bytes)
                .map_or(0, |n| n.port);
            (port, f.flags & files::O_NONBLOCK != 0)
        };
        let peer = InetName::from(to);
        let own = InetName::from(net.connect(end, to, port, state.clone())?);
        let mut f = file.borrow_mut();
        let FileKind::Socket(s) = &mut f.kind else {
            return Err(ENOTSOCK);
        };
        client.peer = Some(peer.to_bytes());
        client.local = Some(own.to_bytes());
        self.note_conn(own, peer, &client);
        s.name = Some(own.to_bytes());
        s.connect_over(client);
        s.connecting = Some(state);
        s.connect_pending = true;
        let own_opts = s.opts.clone();
        super::sockopt::apply_buffers(s, &own_opts);
        drop(f);
        if nonblock {
            return Err(EINPROGRESS);
        }
        self.connect_again(file)
    }

    /// connect(2) again on a socket whose connect went to the stack: 0
    /// once made (then EISCONN), the failure once (the socket is fresh
    /// again), else EALREADY, or wait.
    pub(super) fn connect_again(&mut self, file: &Shared<OpenFile>) -> R {
        let mut f = file.borrow_mut();
        let nonblock = f.flags & files::O_NONBLOCK != 0;
        let FileKind::Socket(s) = &mut f.kind else {
            return Err(ENOTSOCK);
        };
        let Some(c) = s.connecting.clone() else {
            return Err(EISCONN);
        };
        match c.result() {
            Some(Ok(())) => {
                s.connecting = None;
                s.connect_pending = false;
                Ok(0)
            }
            Some(Err(e)) => {
                Self::connect_failed(s);
                Err(e)
            }
            None if nonblock => Err(EALREADY),
            None => {
                let SockState::Connected(c) = &s.state else {
                    return Err(EINVAL);
                };
                let rx = c.rx.clone();
                drop(f);
                let k = self.kernel()?;
                rx.borrow_mut().wait(self.pid, k);
                // The stack may have answered in between.
                if file_settled(file) {
                    return self.connect_again(file);
                }
                self.block()
            }
        }
    }

    /// A connect through the stack failed: the socket is as before it.
    fn connect_failed(s: &mut files::Socket) {
        s.connecting = None;
        s.connect_pending = false;
        // Bound to its name again, as before the connect.
        s.state = s.held.take().map_or(SockState::Fresh, SockState::Bound);
    }

    /// SO_ERROR: the pending error, cleared (a failed connect's, once).
    pub(super) fn take_socket_error(file: &Shared<OpenFile>) -> i64 {
        let mut f = file.borrow_mut();
        let FileKind::Socket(s) = &mut f.kind else {
            return 0;
        };
        if let Some(Some(Err(e))) = s.connecting.as_ref().map(|c| c.result()) {
            Self::connect_failed(s);
            return e;
        }
        s.error.take().unwrap_or(0)
    }

    /// A listener on the unspecified or the tap's address also takes the
    /// network's connections.
    pub(super) fn net_listen(&self, port: &Shared<Port>, name: Option<&[u8]>) -> R {
        let (Some(net), Some(n)) = (self.net(), name.and_then(InetName::from_bytes)) else {
            return Ok(0);
        };
        // The host network also listens on the host's loopback.
        let ours = n.is_unspecified() || net.is_own(n.socket_addr().ip());
        if (net.is_host() || !n.is_loopback()) && ours {
            net.listen(n.socket_addr(), port.downgrade())?;
        }
        Ok(0)
    }

    /// A UDP socket bound to the unspecified or the tap's address also
    /// gets the network's datagrams for its port.
    pub(super) fn net_udp_bound(&self, inbox: &Shared<crate::fs::pipe::Pipe>, name: &[u8]) {
        let (Some(net), Some(n)) = (self.net(), InetName::from_bytes(name)) else {
            return;
        };
        let ours = n.is_unspecified() || net.is_own(n.socket_addr().ip());
        if (net.is_host() || !n.is_loopback()) && ours {
            net.udp_open(n.port, inbox.downgrade());
        }
    }

    /// A UDP datagram from socket `file` to `to` on the network.
    pub(super) fn udp_send_out(
        &mut self,
        file: &Shared<OpenFile>,
        data: &[u8],
        to: SocketAddr,
    ) -> R {
        let net = self.net().ok_or(ENETUNREACH)?;
        if data.len() > net.max_datagram() {
            return Err(EMSGSIZE);
        }
        let f = file.borrow();
        let FileKind::Socket(s) = &f.kind else {
            return Err(ENOTSOCK);
        };
        let SockState::Dgram(d) = &s.state else {
            return Err(ENOTCONN);
        };
        let own = s
            .name
            .as_deref()
            .and_then(InetName::from_bytes)
            .ok_or(EINVAL)?;
        net.udp_send(own.port, d.inbox.downgrade(), to, data.to_vec());
        Ok(data.len() as i64)
    }

    /// The name a socket talking to `to` over the network has.
    pub(super) fn local_name_for(&self, to: SocketAddr, port: u16) -> Option<InetName> {
        let ip = self.net()?.local_for(to)?;
        Some(InetName::from(SocketAddr::from((ip, port))))
    }
}

/// Has the connect of socket `file` been answered?
fn file_settled(file: &Shared<OpenFile>) -> bool {
    match &file.borrow().kind {
        FileKind::Socket(s) => s.connecting.as_ref().is_none_or(|c| c.result().is_some()),
        _ => true,
    }
}
