//! AF_INET and AF_INET6 on the virtual kernel's loopback network (issue
//! 24): `tests/guests/inet.c` prints the same natively and under vkernel
//! (TCP connect/accept/names/options/half-close/non-blocking connect/a
//! closed port/4 MiB through epoll, UDP names/truncation/connect/size
//! limits, dual-stack and v6-only listeners, the errors, many short
//! connections), Python's http.server, socketserver, asyncio and UDP talk
//! over 127.0.0.1 and ::1 as natively, and nothing reaches the host's
//! network: a host port on 127.0.0.1 is not the vproc's, and an outside
//! address is unreachable.

mod common;

use common::{guest, host_root, kvm_guest, kvm_guests, native, scratch, vk_watched, what};

#[test]
fn inet_matches_native() {
    for (cc, prog) in kvm_guests("inet_matches_native", "inet") {
        for cpus in [1, 2] {
            let many = if cc == "gcc" && cpus == 1 {
                "1000"
            } else {
                "200"
            };
            for args in [
                &["tcp"][..],
                &["udp"],
                &["v6"],
                &["errors"],
                &["many", many],
            ] {
                let n = native(&prog, args);
                assert_eq!(n.status, 0, "{cc} {args:?} natively:\n{}", n.stdout);
                let r = vk_watched(&what(&prog, args, cpus), 120, guest(&prog, args, cpus));
                assert_eq!(r.out().shown(), n.shown(), "{cc} {args:?} on {cpus} vCPUs");
            }
        }
    }
}

/// `python3 -m http.server` and urllib in two processes, a socketserver
/// TCP echo, asyncio streams over ::1 and UDP over 127.0.0.1 print what
/// they print natively, on two vCPUs.
#[test]
fn python_talks_over_loopback_like_native() {
    let test = "python_talks_over_loopback_like_native";
    let Some(py) = common::kvm_tool(test, "/usr/bin/python3", " (apt-get install python3)") else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/web.py");
    let dir = scratch(test);
    let n = common::Native::new(&py)
        .args([script])
        .env([common::PATH_BIN])
        .cwd(&dir)
        .run();
    assert_eq!(n.status, 0, "natively:\n{}{}", n.stdout, n.stderr);
    let l = guest(&py, &[script], 2).root(host_root());
    let r = vk_watched(&what(&py, &[script], 2), 240, l);
    assert_eq!(r.out().shown(), n.shown(), "stderr: {}", r.stderr);
}

/// With no network option (`--net none`, the default) a vproc reaches
/// only its own loopback: a port the host listens on at 127.0.0.1 is
/// refused (and the host sees no connection), and outside addresses are
/// unreachable for TCP and UDP.
#[test]
fn loopback_never_reaches_the_host() {
    let test = "loopback_never_reaches_the_host";
    let Some(prog) = kvm_guest(test, "inet", "gcc") else {
        return;
    };
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let port = host.local_addr().unwrap().port().to_string();
    let args = ["escape", &port];
    let r = vk_watched(&what(&prog, &args, 1), 120, guest(&prog, &args, 1));
    assert_eq!(
        r.out().shown(),
        ("host port -111\noutside -101\nudp outside -101\n", 0)
    );
    assert!(
        host.accept().is_err(),
        "the host's listener saw a connection from the vproc"
    );
}

/// Ping on the loopback network: busybox's ping (a raw ICMP socket, as
/// root has) gets every echo answered by the vkernel, and an ICMP echo
/// socket (SOCK_DGRAM, IPPROTO_ICMP: unprivileged ping) gets the reply
/// with its own identifier, the data, and the socket's type and protocol.
#[test]
fn ping_answers_on_loopback() {
    let test = "ping_answers_on_loopback";
    let Some(bb) = common::kvm_busybox(test) else {
        return;
    };
    let args = ["ping", "-c", "3", "-i", "0.2", "127.0.0.1"];
    let r = vk_watched(&what(&bb, &args, 1), 60, guest(&bb, &args, 1));
    let out = r.out();
    assert_eq!(r.status(), 0, "{}{}", out.stdout, r.stderr);
    assert!(
        out.stdout
            .contains("3 packets transmitted, 3 packets received"),
        "{}",
        out.stdout
    );
    let Some(py) = common::kvm_tool(test, "/usr/bin/python3", " (apt-get install python3)") else {
        return;
    };
    let probe = "import socket, struct\n\
                 s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)\n\
                 s.sendto(struct.pack('!BBHHH', 8, 0, 0, 0, 7) + b'abc', ('127.0.0.1', 0))\n\
                 d, a = s.recvfrom(100)\n\
                 print(d[0], struct.unpack('!H', d[6:8])[0], d[8:], a)\n\
                 print(s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE), s.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL))\n\
                 try:\n    s.sendto(b'\\x00' * 8, ('127.0.0.1', 0))\nexcept OSError as e:\n    print('not a request:', e.errno)\n";
    let args = ["-c", probe];
    let r = vk_watched(
        &what(&py, &args, 1),
        60,
        guest(&py, &args, 1).root(host_root()),
    );
    assert_eq!(
        r.out().shown(),
        ("0 7 b'abc' ('127.0.0.1', 0)\n2 1\nnot a request: 22\n", 0),
        "{}",
        r.stderr
    );
}

/// /proc/net/{tcp,udp6,dev} list the vkernel's own sockets and
/// interfaces in Linux's formats: busybox netstat and iproute2's ss
/// (through its /proc fallback) show a listener, both ends of a
/// connection and a bound UDP socket.
#[test]
fn proc_net_lists_sockets() {
    let test = "proc_net_lists_sockets";
    let Some(py) = common::kvm_tool(test, "/usr/bin/python3", " (apt-get install python3)") else {
        return;
    };
    let probe = "import socket, subprocess\n\
                 l = socket.socket(); l.bind(('0.0.0.0', 7070)); l.listen()\n\
                 c = socket.create_connection(('127.0.0.1', 7070)); a, _ = l.accept()\n\
                 u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.bind(('::', 5353))\n\
                 print(open('/proc/net/tcp').read().splitlines()[1].split()[1:4])\n\
                 print(sorted(open('/proc/net/dev').read().split()[-17:-16]))\n\
                 out = subprocess.run(['busybox', 'netstat', '-tuan'], capture_output=True, text=True).stdout\n\
                 print('\\n'.join(' '.join(l.split()) for l in out.splitlines()[2:]))\n";
    let args = ["-c", probe];
    let r = vk_watched(
        &what(&py, &args, 1),
        60,
        guest(&py, &args, 1).root(host_root()),
    );
    assert_eq!(
        r.out().shown(),
        (
            "['00000000:1B9E', '00000000:0000', '0A']\n['lo:']\n\
             tcp 0 0 0.0.0.0:7070 0.0.0.0:* LISTEN\n\
             tcp 0 0 127.0.0.1:32768 127.0.0.1:7070 ESTABLISHED\n\
             tcp 0 0 127.0.0.1:7070 127.0.0.1:32768 ESTABLISHED\n\
             udp 0 0 :::5353 :::*\n",
            0
        ),
        "{}",
        r.stderr
    );
}
