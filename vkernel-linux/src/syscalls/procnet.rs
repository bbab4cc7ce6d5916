//! `/proc/net`: the vkernel's own network as `netstat`, `ss` (its
//! /proc fallback) and `ifconfig` read it. `tcp`/`tcp6` list listeners
//! and connection ends, `udp`/`udp6` bound datagram sockets (in Linux's
//! formats: addresses as the host-order hex of their network bytes,
//! states as TCP's numbers), and `dev` the interfaces: `lo`, and `eth0`
//! for the tap network with the stack's frame and byte counters.

use std::fmt::Write;
use std::net::Ipv6Addr;

use crate::fs::inet::{InetName, Proto};
use crate::fs::ProcItem;
use crate::Vproc;

/// TCP states as /proc/net/tcp numbers them.
const ESTABLISHED: u8 = 1;
const CLOSE: u8 = 7;
const CLOSE_WAIT: u8 = 8;
const LISTEN: u8 = 0x0a;

/// `n` as /proc/net/tcp prints it: IPv4 (`0100007F:1F90`) or IPv6 (four
/// host-order words).
fn addr(n: InetName, v6: bool) -> String {
    if !v6 {
        let b = n.v4().map_or([0; 4], |a| a.octets());
        return format!("{:08X}:{:04X}", u32::from_le_bytes(b), n.port);
    }
    let o = n.ip.octets();
    let mut s = String::new();
    for w in o.chunks(4) {
        let _ = write!(s, "{:08X}", u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    }
    format!("{s}:{:04X}", n.port)
}

/// Does `n` belong in the IPv6 table?
fn is_v6(n: InetName) -> bool {
    n.v4().is_none() || n.ip == Ipv6Addr::UNSPECIFIED
}

/// One socket's line of /proc/net/tcp or udp.
struct Row {
    local: InetName,
    remote: InetName,
    st: u8,
    /// Bytes queued to send and to read.
    q: (usize, usize),
    uid: u32,
}

fn line(out: &mut String, sl: usize, r: Row, v6: bool) {
    let _ = writeln!(
        out,
        "{sl:4}: {} {} {:02X} {:08X}:{:08X} 00:00000000 00000000 {:5} {:8} 0 1 0000000000000000 100 0 0 10 0",
        addr(r.local, v6),
        addr(r.remote, v6),
        r.st,
        r.q.0,
        r.q.1,
        r.uid,
        0
    );
}

impl Vproc {
    /// The text of a `/proc/net` file.
    pub(super) fn proc_net(&self, item: ProcItem) -> String {
        match item {
            ProcItem::NetTcp => self.net_sockets(Proto::Tcp, false),
            ProcItem::NetTcp6 => self.net_sockets(Proto::Tcp, true),
            ProcItem::NetUdp => self.net_sockets(Proto::Udp, false),
            ProcItem::NetUdp6 => self.net_sockets(Proto::Udp, true),
            _ => self.net_dev(),
        }
    }

    fn net_sockets(&self, proto: Proto, v6: bool) -> String {
        let mut out = if v6 {
            "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        } else {
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        }
        .to_string();
        let mut sl = 0;
        let (bound, conns) = {
            let mut ports = self.fs.inet();
            (ports.bound(), ports.conns())
        };
        let any = InetName::ANY;
        for b in bound
            .iter()
            .filter(|b| b.proto == proto && is_v6(b.name) == v6)
        {
            let p = b.port.borrow();
            let (st, q) = match proto {
                Proto::Tcp if p.listening => (LISTEN, (0, p.backlog.len())),
                Proto::Tcp => continue,
                _ => {
                    let rx = p.inbox.as_ref().and_then(|q| q.upgrade());
                    (CLOSE, (0, rx.map_or(0, |q| q.borrow().buf.len())))
                }
            };
            let uid = u32::try_from(p.cred[1]).unwrap_or(0);
            let row = Row {
                local: b.name,
                remote: any,
                st,
                q,
                uid,
            };
            line(&mut out, sl, row, v6);
            sl += 1;
        }
        if proto == Proto::Tcp {
            for c in conns.iter().filter(|c| is_v6(c.local) == v6) {
                let (Some(rx), Some(tx)) = (c.rx.upgrade(), c.tx.upgrade()) else {
                    continue;
                };
                let (rx, tx) = (rx.borrow(), tx.borrow());
                let st = if rx.writers == 0 {
                    CLOSE_WAIT
                } else {
                    ESTABLISHED
                };
                let row = Row {
                    local: c.local,
                    remote: c.remote,
                    st,
                    q: (tx.buf.len(), rx.buf.len()),
                    uid: c.uid,
                };
                line(&mut out, sl, row, v6);
                sl += 1;
            }
        }
        out
    }

    fn net_dev(&self) -> String {
        let mut out = String::from(
            "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
        );
        let row = |out: &mut String, name: &str, c: [u64; 5]| {
            let _ = writeln!(
                out,
                "{name:>6}: {:>8} {:>7}    0    0    0     0          0         0 {:>8} {:>7}    0 {:>4}    0     0       0          0",
                c[0], c[1], c[2], c[3], c[4]
            );
        };
        row(&mut out, "lo", [0; 5]);
        if let Some(net) = self.net().filter(|n| !n.is_host()) {
            row(&mut out, "eth0", net.counters());
        }
        out
    }
}
