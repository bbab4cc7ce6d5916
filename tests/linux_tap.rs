//! The tap network (issue 24, `--net tap:...`): a vkernel started in a
//! network namespace the test makes (so nothing can leave it) with a tap
//! whose host side is 10.77.N.1 and whose vkernel side is 10.77.N.2.
//! - the host side's `curl` fetches a file from `python3 -m http.server`
//!   in a vproc, byte for byte;
//! - a vproc fetches from a server on the host side (busybox wget and
//!   Python's urllib), talks UDP to an echo server there, sees a closed
//!   port refused (blocking, and non-blocking through SO_ERROR), and
//!   finds the `dns=` server in /etc/resolv.conf (tests/guests/tapnet.py);
//! - bad `--net` values are refused with what to write instead.
//!
//! Needs root (CAP_NET_ADMIN, for the namespace and the tap), `ip`,
//! `curl` and python3: without them the tests SKIP loudly. CI runs as
//! root with all of them installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{example_binary, have_kvm, scratch, skip};

/// A network namespace for one test, removed (with everything in it) on
/// drop.
struct NetNs {
    name: String,
    /// The subnet's third byte: 10.77.N.0/24.
    n: u32,
    children: Vec<Child>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl NetNs {
    /// A namespace with loopback up, or None (SKIP printed) when this
    /// machine cannot make one.
    fn new(test: &str) -> Option<NetNs> {
        if !have_kvm(test) {
            return None;
        }
        for tool in ["/usr/sbin/ip", "/usr/bin/curl", "/usr/bin/python3"] {
            if !Path::new(tool).exists() {
                skip(
                    test,
                    &format!("{tool} is missing (apt-get install iproute2 curl python3)"),
                );
                return None;
            }
        }
        let n = 100 + (std::process::id() % 50) * 3 + NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("vkt-{}-{n}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            skip(
                test,
                "cannot create a network namespace (needs root / CAP_NET_ADMIN)",
            );
            return None;
        }
        let ns = NetNs {
            name,
            n: n % 250,
            children: Vec::new(),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        Some(ns)
    }

    /// The host side's address.
    fn host(&self) -> String {
        format!("10.77.{}.1", self.n)
    }

    /// The vkernel side's address.
    fn guest(&self) -> String {
        format!("10.77.{}.2", self.n)
    }

    /// `--net` for a vkernel in this namespace.
    fn net_arg(&self) -> String {
        format!(
            "tap:vk{n},ip=10.77.{n}.2/24,gw=10.77.{n}.1,dns=10.77.{n}.1,host=10.77.{n}.1/24",
            n = self.n
        )
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// Run `args` in the namespace to the end.
    fn exec(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run ip netns exec")
    }

    /// Start `args` in the namespace, killed when the namespace goes.
    fn spawn(&mut self, args: &[&str], dir: &Path) -> &mut Child {
        let c = self
            .command(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a process in the namespace");
        self.children.push(c);
        self.children.last_mut().expect("just pushed")
    }

    /// `python3 -m http.server PORT --bind BIND --directory DIR` on the
    /// namespace's side, killed when the namespace goes.
    fn serve(&mut self, port: u16, bind: &str, dir: &Path) {
        let port = port.to_string();
        let d = dir.to_str().expect("a UTF-8 path").to_string();
        let args = [
            "python3",
            "-m",
            "http.server",
            &port,
            "--bind",
            bind,
            "--directory",
            &d,
        ];
        self.spawn(&args, dir);
    }

    /// `vkernel run ARGS` in the namespace, to its end.
    fn vk(&self, args: &[&str]) -> Output {
        let vk = example_binary("vkernel");
        let mut all = vec![vk.to_str().expect("a UTF-8 path"), "run"];
        all.extend_from_slice(args);
        self.command(&all).output().expect("run the vkernel")
    }

    /// A vkernel running `prog args` in the namespace with the tap.
    fn vkernel(&mut self, prog: &str, args: &[&str], dir: &Path) -> &mut Child {
        let vk = example_binary("vkernel");
        let net = self.net_arg();
        let mut all = vec![
            vk.to_str().expect("a UTF-8 path"),
            "run",
            "--cpus",
            "2",
            "--net",
            &net,
            prog,
        ];
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        self.spawn(&refs, dir)
    }

    /// Wait until something in the namespace accepts TCP on `addr:port`.
    fn wait_for_port(&self, addr: &str, port: u16, secs: u64) -> bool {
        let until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < until {
            let probe = format!(
                "import socket; socket.create_connection(('{addr}', {port}), timeout=1).close()"
            );
            if self.exec(&["python3", "-c", &probe]).status.success() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A file of `len` pseudo-random bytes in `dir`.
fn blob(dir: &Path, len: usize) -> PathBuf {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    let p = dir.join("blob");
    std::fs::write(&p, data).unwrap();
    p
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The host side's curl fetches a 3 MB file from `python3 -m
/// http.server` running in a vproc, byte for byte; busybox wget in
/// another vkernel fetches it from the host side's server.
#[test]
fn http_both_ways_over_the_tap() {
    let test = "http_both_ways_over_the_tap";
    let Some(mut ns) = NetNs::new(test) else {
        return;
    };
    let dir = scratch(test);
    let want = std::fs::read(blob(&dir, 3 << 20)).unwrap();
    let d = dir.to_str().unwrap().to_string();
    ns.vkernel(
        "/usr/bin/python3",
        &[
            "-m",
            "http.server",
            "8000",
            "--bind",
            "0.0.0.0",
            "--directory",
            &d,
        ],
        &dir,
    );
    let guest = ns.guest();
    assert!(
        ns.wait_for_port(&guest, 8000, 60),
        "the vproc's http.server never answered on {guest}:8000"
    );
    let url = format!("http://{guest}:8000/blob");
    let got = ns.exec(&["curl", "-sS", "-m", "60", &url]);
    assert!(got.status.success(), "curl {url}: {}", text(&got.stderr));
    assert_eq!(got.stdout.len(), want.len(), "bytes fetched from the vproc");
    assert!(
        got.stdout == want,
        "the file fetched from the vproc differs"
    );
    // That vkernel goes, and its tap with it.
    let mut first = ns.children.remove(0);
    let _ = first.kill();
    let _ = first.wait();

    // The other way: a server on the host side (on every address of
    // the namespace: the tap's goes with each vkernel), wget in a vproc.
    let host = ns.host();
    ns.serve(8080, "0.0.0.0", &dir);
    assert!(
        ns.wait_for_port("127.0.0.1", 8080, 30),
        "the host side's server did not start"
    );
    let url = format!("http://{host}:8080/blob");
    let script = format!("busybox wget -q -O - {url} | busybox md5sum");
    let out = ns.vk(&["--net", &ns.net_arg(), "/bin/busybox", "sh", "-c", &script]);
    let native = Command::new("md5sum")
        .arg(dir.join("blob"))
        .output()
        .unwrap();
    let sum = |o: &[u8]| text(o).split_whitespace().next().unwrap_or("").to_string();
    assert!(
        out.status.success(),
        "wget in a vproc: {}",
        text(&out.stderr)
    );
    assert_eq!(
        sum(&out.stdout),
        sum(&native.stdout),
        "wget's md5 of the host's file"
    );
}

/// tests/guests/tapnet.py in a vproc against a server, a UDP echo and a
/// closed port on the host side: refused connects (blocking and
/// through SO_ERROR), a non-blocking connect made, an HTTP fetch, UDP
/// both unconnected and connected, and the `dns=` resolv.conf.
#[test]
fn socket_api_over_the_tap() {
    let test = "socket_api_over_the_tap";
    let Some(mut ns) = NetNs::new(test) else {
        return;
    };
    let dir = scratch(test);
    let want = std::fs::read(blob(&dir, 1 << 20)).unwrap();
    let host = ns.host();
    ns.serve(8080, "0.0.0.0", &dir);
    let echo = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                s.bind(('0.0.0.0',9999))\nwhile True:\n d,a=s.recvfrom(2048)\n s.sendto(d,a)\n";
    ns.spawn(&["python3", "-c", echo], &dir);
    // A TCP echo that reads to end of file first, then answers and closes.
    let echo_all = concat!(
        "import socket\n",
        "l = socket.socket()\n",
        "l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n",
        "l.bind(('0.0.0.0', 9998))\n",
        "l.listen()\n",
        "while True:\n",
        "    c, _ = l.accept()\n",
        "    b = bytearray()\n",
        "    while True:\n",
        "        d = c.recv(65536)\n",
        "        if not d:\n",
        "            break\n",
        "        b += d\n",
        "    c.sendall(b)\n",
        "    c.close()\n",
    );
    ns.spawn(&["python3", "-c", echo_all], &dir);
    assert!(
        ns.wait_for_port("127.0.0.1", 8080, 30),
        "the host side's server did not start"
    );
    assert!(
        ns.wait_for_port("127.0.0.1", 9998, 30),
        "the host side's echo did not start"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/tapnet.py");
    let net = ns.net_arg();
    let out = ns.vk(&[
        "--net",
        &net,
        "/usr/bin/python3",
        script,
        &host,
        "8080",
        "9999",
        "9",
    ]);
    let got = text(&out.stdout);
    assert!(
        out.status.success(),
        "tapnet.py:\n{got}\n{}",
        text(&out.stderr)
    );
    let digest = {
        let o = Command::new("sha256sum")
            .arg(dir.join("blob"))
            .output()
            .unwrap();
        text(&o.stdout)[..16].to_string()
    };
    let expect = format!(
        "closed port: refused\n\
         nonblocking connect: EINPROGRESS\n\
         writable: True SO_ERROR: 0\n\
         peer: True own port > 0: True\n\
         refused via SO_ERROR: ECONNREFUSED\n\
         fetched: {} {digest}\n\
         udp echo: b'ping one' True\n\
         udp connected echo: b'ping two'\n\
         half-close echo: 2097152 True\n\
         resolv.conf: ['#', 'written', 'by', 'vkernel', '(--net)', 'nameserver', '{host}']\n",
        want.len()
    );
    assert_eq!(got, expect);
}

/// Bad `--net` values are refused before anything runs, saying what to
/// write instead.
#[test]
fn bad_net_values_are_refused_clearly() {
    let test = "bad_net_values_are_refused_clearly";
    if !have_kvm(test) {
        return;
    }
    let vk = example_binary("vkernel");
    for (arg, says) in [
        ("tap:vk0", "needs an address"),
        ("tap:vk0,ip=10.0.0.2", "want ADDR/PREFIX"),
        ("tap:vk0,ip=10.0.0.2/24,speed=9", "known: ip="),
        ("wifi", "unknown network"),
    ] {
        let o = Command::new(&vk)
            .args(["run", "--net", arg, "/bin/true"])
            .output()
            .unwrap();
        assert!(!o.status.success(), "--net {arg} was taken");
        let e = text(&o.stderr);
        assert!(e.contains(says), "--net {arg}: {e}");
    }
}

/// `--net tap:IFACE,dhcp`: dnsmasq on the host side gives the address,
/// the router and itself as DNS server; the vproc resolves a name only
/// that dnsmasq knows (glibc's resolver over UDP through the stack) and
/// fetches a file from the host side by that name.
#[test]
fn dhcp_and_dns_over_the_tap() {
    let test = "dhcp_and_dns_over_the_tap";
    let Some(mut ns) = NetNs::new(test) else {
        return;
    };
    if !Path::new("/usr/sbin/dnsmasq").exists() {
        skip(
            test,
            "/usr/sbin/dnsmasq is missing (apt-get install dnsmasq)",
        );
        return;
    }
    let dir = scratch(test);
    std::fs::write(dir.join("hello.txt"), b"hello over DHCP and DNS\n").unwrap();
    let (n, host) = (ns.n, ns.host());
    let tap = format!("vk{n}");
    let leases = dir.join("leases");
    let range = format!("--dhcp-range=10.77.{n}.50,10.77.{n}.99,255.255.255.0");
    let router = format!("--dhcp-option=option:router,{host}");
    let dns = format!("--dhcp-option=option:dns-server,{host}");
    let name = format!("--address=/web.vk.test/{host}");
    ns.spawn(
        &[
            "dnsmasq",
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--no-ping",
            "--bind-dynamic",
            &format!("--interface={tap}"),
            &range,
            &router,
            &dns,
            &name,
            &format!("--dhcp-leasefile={}", leases.display()),
            &format!("--pid-file={}", dir.join("pid").display()),
        ],
        &dir,
    );
    ns.serve(8080, "0.0.0.0", &dir);
    assert!(
        ns.wait_for_port("127.0.0.1", 8080, 30),
        "the host side's server did not start"
    );
    let probe = "import socket, urllib.request\n\
                 a = socket.gethostbyname('web.vk.test')\n\
                 print('resolved', a)\n\
                 print(urllib.request.urlopen('http://web.vk.test:8080/hello.txt', timeout=20).read().decode(), end='')\n\
                 print('own', open('/etc/hosts').read().split()[-2].startswith('10.77.'))\n";
    let out = ns.vk(&[
        "--net",
        &format!("tap:{tap},dhcp,host={host}/24"),
        "/usr/bin/python3",
        "-c",
        probe,
    ]);
    let err = text(&out.stderr);
    assert!(
        out.status.success(),
        "the probe: {}\n{err}",
        text(&out.stdout)
    );
    assert!(err.contains("DHCP gave 10.77."), "progress lines: {err}");
    assert_eq!(
        text(&out.stdout),
        format!("resolved {host}\nhello over DHCP and DNS\nown True\n")
    );
}

/// `--net host` (in a namespace of the test's, standing for the host):
/// a vproc fetches from a server on the host's loopback, the host's curl
/// fetches from a vproc's server on the host's ports (IPv4 and IPv6), a
/// UDP echo on the host answers, and a port nobody holds is refused.
#[test]
fn host_network_reaches_and_serves_the_host() {
    let test = "host_network_reaches_and_serves_the_host";
    let Some(mut ns) = NetNs::new(test) else {
        return;
    };
    let dir = scratch(test);
    let want = std::fs::read(blob(&dir, 1 << 20)).unwrap();
    let d = dir.to_str().unwrap().to_string();
    ns.serve(8080, "127.0.0.1", &dir);
    let echo = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                s.bind(('127.0.0.1',9999))\nwhile True:\n d,a=s.recvfrom(2048)\n s.sendto(d,a)\n";
    ns.spawn(&["python3", "-c", echo], &dir);
    assert!(
        ns.wait_for_port("127.0.0.1", 8080, 30),
        "the host's server did not start"
    );
    let vk = example_binary("vkernel");
    let probe = "import hashlib, socket, urllib.request\n\
                 b = urllib.request.urlopen('http://127.0.0.1:8080/blob', timeout=20).read()\n\
                 print('fetched', len(b), hashlib.sha256(b).hexdigest()[:16])\n\
                 u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(10)\n\
                 u.sendto(b'ping', ('127.0.0.1', 9999)); print('udp', u.recvfrom(64)[0])\n\
                 s = socket.socket()\n\
                 try:\n    s.connect(('127.0.0.1', 9)); print('port 9 connected?!')\n\
                 except ConnectionRefusedError:\n    print('port 9 refused')\n";
    let out = ns.vk(&["--net", "host", "/usr/bin/python3", "-c", probe]);
    assert!(
        out.status.success(),
        "probe: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let digest = {
        let o = Command::new("sha256sum")
            .arg(dir.join("blob"))
            .output()
            .unwrap();
        text(&o.stdout)[..16].to_string()
    };
    assert_eq!(
        text(&out.stdout),
        format!(
            "fetched {} {digest}\nudp b'ping'\nport 9 refused\n",
            want.len()
        )
    );
    // The other way: the vproc serves on the host's ports.
    for (bind, url) in [
        ("0.0.0.0", "http://127.0.0.1:8090/blob"),
        ("::", "http://[::1]:8090/blob"),
    ] {
        ns.spawn(
            &[
                vk.to_str().unwrap(),
                "run",
                "--net",
                "host",
                "/usr/bin/python3",
                "-m",
                "http.server",
                "8090",
                "--bind",
                bind,
                "--directory",
                &d,
            ],
            &dir,
        );
        let until = Instant::now() + Duration::from_secs(60);
        let got = loop {
            let got = ns.exec(&["curl", "-sS", "-m", "20", url]);
            if got.status.success() || Instant::now() > until {
                break got;
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        assert!(got.status.success(), "curl {url}: {}", text(&got.stderr));
        assert!(got.stdout == want, "{url}: the file differs");
        let mut c = ns.children.pop().unwrap();
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Ping over the tap: a vproc's busybox ping gets the host side's
/// answers, and the host side's ping gets the stack's.
#[test]
fn ping_over_the_tap() {
    let test = "ping_over_the_tap";
    let Some(mut ns) = NetNs::new(test) else {
        return;
    };
    let dir = scratch(test);
    let host = ns.host();
    let out = ns.vk(&[
        "--net",
        &ns.net_arg(),
        "/bin/busybox",
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        &host,
    ]);
    let got = text(&out.stdout);
    assert!(out.status.success(), "{got}{}", text(&out.stderr));
    assert!(
        got.contains("3 packets transmitted, 3 packets received"),
        "{got}"
    );
    // The stack answers the host side while a vproc runs.
    ns.vkernel("/bin/busybox", &["sleep", "30"], &dir);
    let guest = ns.guest();
    let until = Instant::now() + Duration::from_secs(30);
    let answered = loop {
        let o = ns.exec(&["busybox", "ping", "-c", "1", "-W", "1", &guest]);
        if o.status.success() || Instant::now() > until {
            break o;
        }
    };
    assert!(answered.status.success(), "{}", text(&answered.stdout));
}

/// The vkernel's interfaces as tools see them: iproute2's `ip` (over
/// rtnetlink), busybox ifconfig (socket ioctls), /proc/net/dev and
/// Python's if_nameindex show lo and the tap's eth0 with its address,
/// Ethernet address and routes.
#[test]
fn interfaces_as_tools_see_them() {
    let test = "interfaces_as_tools_see_them";
    let Some(ns) = NetNs::new(test) else {
        return;
    };
    let n = ns.n;
    let script = "ip -br addr; ip -br link; ip route; \
                  busybox ifconfig eth0 | busybox head -2; \
                  busybox grep -c eth0: /proc/net/dev; \
                  python3 -c 'import socket; print(socket.if_nameindex())'; \
                  busybox ls /sys/class/net; busybox cat /sys/class/net/eth0/address";
    let out = ns.vk(&["--net", &ns.net_arg(), "/bin/sh", "-c", script]);
    let got = text(&out.stdout);
    assert!(out.status.success(), "{got}{}", text(&out.stderr));
    let squeeze = |s: &str| {
        s.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        squeeze(&got),
        format!(
            "lo UNKNOWN 127.0.0.1/8 ::1/128\n\
             eth0 UP 10.77.{n}.2/24\n\
             lo UNKNOWN 00:00:00:00:00:00 <LOOPBACK,UP,LOWER_UP>\n\
             eth0 UP 02:76:6b:00:00:01 <BROADCAST,MULTICAST,UP,LOWER_UP>\n\
             10.77.{n}.0/24 dev eth0 proto kernel scope link src 10.77.{n}.2\n\
             default via 10.77.{n}.1 dev eth0\n\
             eth0 Link encap:Ethernet HWaddr 02:76:6B:00:00:01\n\
             inet addr:10.77.{n}.2 Bcast:10.77.{n}.255 Mask:255.255.255.0\n\
             1\n\
             [(1, 'lo'), (2, 'eth0')]\n\
             eth0\nlo\n02:76:6b:00:00:01"
        )
    );
}
