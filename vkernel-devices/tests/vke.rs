//! Tap (vke) tests inside a network namespace created by the test.
//!
//! Needs root (or CAP_SYS_ADMIN + CAP_NET_ADMIN), `ip` (iproute2) and
//! /dev/net/tun. When any of them is missing the tests print a line starting
//! with `SKIP:` and pass.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use vkernel_devices::{Event, EventLoop, Vke, VkeError};

const ETHERTYPE_TEST: u16 = 0x88b5; // IEEE local experimental
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV4: u16 = 0x0800;
const VK_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x02];

/// A network namespace named `vkt-<pid>-<tag>`, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn create(tag: &str) -> Option<Netns> {
        let name = format!("vkt-{}-{tag}", std::process::id());
        match Command::new("ip").args(["netns", "add", &name]).output() {
            Err(e) => {
                println!("SKIP: cannot run `ip` ({e}); install iproute2");
                None
            }
            Ok(o) if !o.status.success() => {
                println!(
                    "SKIP: `ip netns add {name}` failed (needs root/CAP_SYS_ADMIN): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Ok(_) => Some(Netns { name }),
        }
    }

    /// Runs `f` on a thread that has entered the namespace.
    fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open netns");
            // SAFETY: setns on this thread only, with a valid netns fd.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread panicked")
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Opens the tap inside the namespace; None (after a SKIP line) if not
/// permitted.
fn open_tap(ns: &Netns, name: &'static str) -> Option<Vke> {
    match ns.run(move || Vke::open(name)) {
        Ok(v) => Some(v),
        Err(e @ (VkeError::PermissionDenied { .. } | VkeError::NoTunDevice)) => {
            println!("SKIP: {e}");
            None
        }
        Err(e) => panic!("opening the tap failed: {e}"),
    }
}

/// A raw AF_PACKET socket bound to `ifname`, created inside the namespace.
fn packet_socket(ns: &Netns, ifname: &'static str) -> OwnedFd {
    ns.run(move || {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2) call; the fd is owned right below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is a fresh socket nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let cname = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: cname is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        assert!(ifindex > 0, "if_nametoindex({ifname})");
        // SAFETY: sockaddr_ll is plain data; zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: sll is a valid sockaddr_ll and we pass its exact size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: SO_RCVTIMEO takes a timeval of exactly this size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        fd
    })
}

fn frame(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len().max(46));
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f.resize(f.len().max(60), 0);
    f
}

fn ethertype(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[12], f[13]])
}

/// Waits for a frame from the tap that satisfies `pred`.
fn wait_frame(ev: &mut EventLoop, pred: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        for e in ev.poll_once(Some(Duration::from_millis(100))).unwrap() {
            match e {
                Event::VkeFrame { frame, .. } if pred(&frame) => return Some(frame),
                Event::VkeFrame { .. } => {} // IPv6 ND/MLD noise etc.
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    None
}

fn packet_recv(fd: &OwnedFd, pred: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let end = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 2048];
    while Instant::now() < end {
        // SAFETY: buf is writable for its whole length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 && pred(&buf[..n as usize]) {
            return Some(buf[..n as usize].to_vec());
        }
    }
    None
}

#[test]
fn bad_names_are_rejected() {
    assert!(matches!(
        Vke::open("this-name-is-way-too-long"),
        Err(VkeError::BadName(_))
    ));
    assert!(matches!(Vke::open("a/b"), Err(VkeError::BadName(_))));
}

/// Drops all effective capabilities of the calling thread (capabilities
/// are per thread on Linux; the thread keeps its permitted set).
fn drop_effective_caps() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut hdr = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget fills two `Data` entries for version 3.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut Header, data.as_mut_ptr()) };
    assert_eq!(rc, 0, "capget: {}", std::io::Error::last_os_error());
    for d in &mut data {
        d.effective = 0;
    }
    // SAFETY: capset reads the header and two `Data` entries; it only
    // affects the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) };
    assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
}

#[test]
fn unprivileged_open_gives_a_clear_error() {
    // Inside a namespace when we can make one, so a surprise success could
    // not leave an interface on the host.
    let ns = Netns::create("noperm");
    let path = ns.as_ref().map(|n| format!("/run/netns/{}", n.name));
    let result = std::thread::spawn(move || {
        if let Some(path) = path {
            let f = std::fs::File::open(path).unwrap();
            // SAFETY: setns on this thread only, with a valid netns fd.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        }
        drop_effective_caps();
        Vke::open("vktnoperm").map(|v| v.name().to_string())
    })
    .join()
    .unwrap();
    match result {
        Err(e @ VkeError::PermissionDenied { .. }) => {
            let msg = e.to_string();
            println!("unprivileged open: {msg}");
            assert!(msg.contains("CAP_NET_ADMIN"), "{msg}");
            assert!(msg.contains("/dev/net/tun"), "{msg}");
            assert!(
                msg.contains("ip tuntap add dev vktnoperm mode tap user"),
                "{msg}"
            );
        }
        Err(VkeError::NoTunDevice) => println!("SKIP: no /dev/net/tun"),
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}

#[test]
fn frames_both_ways_with_packet_socket() {
    let Some(ns) = Netns::create("pkt") else {
        return;
    };
    let Some(mut vke) = open_tap(&ns, "vkt0") else {
        return;
    };
    assert_eq!(vke.name(), "vkt0");
    let host_mac = vke.host_mac().unwrap();
    println!("tap {} host MAC {host_mac:02x?}", vke.name());
    ns.ip(&["link", "set", "vkt0", "up"]);
    ns.ip(&["addr", "add", "10.77.0.1/24", "dev", "vkt0"]);
    let sock = packet_socket(&ns, "vkt0");

    let mut ev = EventLoop::new().unwrap();
    let id = vke.register(ev.handle()).unwrap();

    // Host -> driver: the host transmits on the tap, the driver receives.
    let out = frame([0xff; 6], host_mac, ETHERTYPE_TEST, b"host to vke");
    // SAFETY: `out` is readable for its whole length.
    let n = unsafe { libc::send(sock.as_raw_fd(), out.as_ptr().cast(), out.len(), 0) };
    assert_eq!(n, out.len() as isize, "{}", std::io::Error::last_os_error());
    let got = wait_frame(&mut ev, |f| ethertype(f) == ETHERTYPE_TEST)
        .expect("frame from the host arrives as VkeFrame");
    assert_eq!(got, out);

    // Driver -> host: the driver sends to the tap's own MAC; the host
    // receives it on the interface.
    let sent = frame(host_mac, VK_MAC, ETHERTYPE_TEST, b"vke to host");
    vke.send(&sent).unwrap();
    let seen = packet_recv(&sock, |f| f.len() >= 14 && f[6..12] == VK_MAC)
        .expect("frame from the driver seen by the host");
    assert_eq!(&seen[..sent.len()], &sent[..]);
    assert!(matches!(
        vke.send(&[0u8; 10]),
        Err(VkeError::FrameTooShort(10))
    ));

    drop(vke);
    assert_eq!(ev.handle().source_count(), 0);
    let _ = id;
}

#[test]
fn kernel_arp_and_udp_through_the_tap() {
    // The host's IP stack talks to the "virtual kernel": it ARPs for
    // 10.78.0.2, the driver answers, and the UDP datagram that was waiting
    // for the answer arrives addressed to the driver's MAC.
    let Some(ns) = Netns::create("arp") else {
        return;
    };
    let Some(mut vke) = open_tap(&ns, "vkt1") else {
        return;
    };
    ns.ip(&["link", "set", "vkt1", "up"]);
    ns.ip(&["addr", "add", "10.78.0.1/24", "dev", "vkt1"]);
    let mut ev = EventLoop::new().unwrap();
    vke.register(ev.handle()).unwrap();

    ns.run(|| {
        let s = UdpSocket::bind((Ipv4Addr::new(10, 78, 0, 1), 0)).unwrap();
        s.send_to(b"hello vkernel", (Ipv4Addr::new(10, 78, 0, 2), 7777))
            .unwrap();
    });

    // ARP who-has 10.78.0.2 tell 10.78.0.1.
    let arp = wait_frame(&mut ev, |f| {
        ethertype(f) == ETHERTYPE_ARP
            && f.len() >= 42
            && f[20..22] == [0, 1]
            && f[38..42] == [10, 78, 0, 2]
    })
    .expect("the kernel's ARP request arrives");
    let host_mac: [u8; 6] = arp[22..28].try_into().unwrap();
    assert_eq!(host_mac, vke.host_mac().unwrap());
    println!("ARP request from {host_mac:02x?}");

    // Reply: 10.78.0.2 is-at VK_MAC.
    let mut reply = Vec::new();
    reply.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]); // Ethernet/IPv4, op=reply
    reply.extend_from_slice(&VK_MAC);
    reply.extend_from_slice(&[10, 78, 0, 2]);
    reply.extend_from_slice(&host_mac);
    reply.extend_from_slice(&[10, 78, 0, 1]);
    vke.send(&frame(host_mac, VK_MAC, ETHERTYPE_ARP, &reply))
        .unwrap();

    // The queued datagram now goes to VK_MAC.
    let udp = wait_frame(&mut ev, |f| {
        ethertype(f) == ETHERTYPE_IPV4 && f[0..6] == VK_MAC
    })
    .expect("the UDP datagram arrives after the ARP reply");
    let ip = &udp[14..];
    assert_eq!(ip[9], 17, "UDP");
    assert_eq!(&ip[16..20], &[10, 78, 0, 2]);
    let ihl = (ip[0] & 0xf) as usize * 4;
    let payload = &ip[ihl + 8..];
    assert!(payload.starts_with(b"hello vkernel"));
    println!("UDP datagram received through the driver");
}
