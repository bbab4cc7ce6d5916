//! Device benchmarks for vkbench: disk throughput through
//! `vkernel_devices::Disk` against plain `std::fs` on the same file, and tap
//! frame rate through `vkernel_devices::Vke`.
//!
//! Included from `main.rs` with `mod devices;`. Uses only the public API of
//! `vkernel_devices` plus std and libc.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vkernel_devices::{Disk, Vke, VkeError};

const MIB: usize = 1 << 20;
const CHUNK: usize = MIB;
const ETHERTYPE_BENCH: u16 = 0x88b5;

/// Runs the device benchmarks. Keys:
///
/// - `disk_write_mb_s`, `disk_read_mb_s`: MiB/s through `Disk::write_at`
///   (+ `flush`) and `Disk::read_at`, 1 MiB chunks over a 64 MiB image
///   (16 MiB when `quick`);
/// - `std_write_mb_s`, `std_read_mb_s`: the same file, chunking and fsync
///   with plain `std::fs::File` sequential I/O, interleaved with the above
///   in the same run (after an untimed warm-up; best of 4 alternating
///   rounds each, 2 when `quick`);
/// - `tap_frames_per_s`: 64-byte frames sent with `Vke::send` and received
///   by an AF_PACKET socket on the tap, inside a scratch network namespace.
///   Omitted (with a `SKIP:` line on stderr) without the privileges.
pub fn measure(quick: bool) -> Vec<(&'static str, f64)> {
    let mut out = Vec::new();
    match disk_bench(quick) {
        Ok(v) => out.extend(v),
        Err(e) => eprintln!("SKIP: disk benchmark failed: {e}"),
    }
    match tap_bench(quick) {
        Ok(fps) => out.push(("tap_frames_per_s", fps)),
        Err(why) => eprintln!("SKIP: tap_frames_per_s: {why}"),
    }
    out
}

// ---- disk ------------------------------------------------------------------

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn mib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64().max(1e-9)
}

fn disk_write(
    path: &Path,
    size: usize,
    chunk: &[u8],
) -> Result<Duration, Box<dyn std::error::Error>> {
    let t = Instant::now();
    let disk = Disk::open(path)?;
    for off in (0..size).step_by(CHUNK) {
        disk.write_at(off as u64, chunk)?;
    }
    disk.flush()?;
    Ok(t.elapsed())
}

fn disk_read(
    path: &Path,
    size: usize,
    buf: &mut [u8],
) -> Result<Duration, Box<dyn std::error::Error>> {
    let t = Instant::now();
    let disk = Disk::open_read_only(path)?;
    for off in (0..size).step_by(CHUNK) {
        disk.read_at(off as u64, buf)?;
        black_box(&buf[0]);
    }
    Ok(t.elapsed())
}

fn std_write(path: &Path, size: usize, chunk: &[u8]) -> std::io::Result<Duration> {
    let t = Instant::now();
    let mut f = OpenOptions::new().write(true).open(path)?;
    for _ in (0..size).step_by(CHUNK) {
        f.write_all(chunk)?;
    }
    f.sync_all()?;
    Ok(t.elapsed())
}

fn std_read(path: &Path, size: usize, buf: &mut [u8]) -> std::io::Result<Duration> {
    let t = Instant::now();
    let mut f = File::open(path)?;
    for _ in (0..size).step_by(CHUNK) {
        f.read_exact(buf)?;
        black_box(&buf[0]);
    }
    Ok(t.elapsed())
}

fn disk_bench(quick: bool) -> Result<Vec<(&'static str, f64)>, Box<dyn std::error::Error>> {
    let size = if quick { 16 * MIB } else { 64 * MIB };
    let rounds = if quick { 2 } else { 4 };
    let path = std::env::temp_dir().join(format!("vkbench-devices-{}.img", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let guard = RemoveOnDrop(path.clone());
    drop(Disk::create(&path, size as u64)?);

    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let mut buf = vec![0u8; CHUNK];
    // Untimed warm-up: allocate the image's blocks (it starts sparse) and
    // fault in the page cache, so the first timed writer is not penalized.
    std_write(&path, size, &chunk)?;
    std_read(&path, size, &mut buf)?;
    let (mut dw, mut dr, mut sw, mut sr) =
        (Duration::MAX, Duration::MAX, Duration::MAX, Duration::MAX);
    for round in 0..rounds {
        // Alternate which side goes first so neither always gets the
        // warmer cache.
        if round % 2 == 0 {
            dw = dw.min(disk_write(&path, size, &chunk)?);
            sw = sw.min(std_write(&path, size, &chunk)?);
            dr = dr.min(disk_read(&path, size, &mut buf)?);
            sr = sr.min(std_read(&path, size, &mut buf)?);
        } else {
            sw = sw.min(std_write(&path, size, &chunk)?);
            dw = dw.min(disk_write(&path, size, &chunk)?);
            sr = sr.min(std_read(&path, size, &mut buf)?);
            dr = dr.min(disk_read(&path, size, &mut buf)?);
        }
    }
    if buf != chunk {
        return Err("read back data differs from what was written".into());
    }
    drop(guard);
    Ok(vec![
        ("disk_read_mb_s", mib_per_s(size, dr)),
        ("disk_write_mb_s", mib_per_s(size, dw)),
        ("std_read_mb_s", mib_per_s(size, sr)),
        ("std_write_mb_s", mib_per_s(size, sw)),
    ])
}

// ---- tap -------------------------------------------------------------------

/// A scratch network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn create() -> Result<Netns, String> {
        let name = format!("vkb-{}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(|e| format!("cannot run `ip` ({e}); install iproute2"))?;
        if !out.status.success() {
            return Err(format!(
                "`ip netns add` failed (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Netns(name))
    }

    /// Runs `f` on a thread inside the namespace.
    fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<R, String> + Send + 'static,
    ) -> Result<R, String> {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let ns = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            // SAFETY: setns affects only this thread; `ns` is a netns fd.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns: {}", std::io::Error::last_os_error()));
            }
            f()
        })
        .join()
        .map_err(|_| "netns thread panicked".to_string())?
    }

    fn ip(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// AF_PACKET socket bound to `ifname` (call inside the namespace).
fn packet_socket(ifname: &str) -> Result<OwnedFd, String> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); the fd is owned right below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            proto as i32,
        )
    };
    if fd < 0 {
        return Err(format!(
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `fd` is a fresh socket owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let cname = std::ffi::CString::new(ifname).map_err(|e| e.to_string())?;
    // SAFETY: `cname` is NUL-terminated.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(format!("no interface {ifname}"));
    }
    // SAFETY: sockaddr_ll is plain data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(format!(
            "bind AF_PACKET: {}",
            std::io::Error::last_os_error()
        ));
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
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
    Ok(fd)
}

fn tap_bench(quick: bool) -> Result<f64, String> {
    let frames: u64 = if quick { 20_000 } else { 200_000 };
    let window: u64 = 256;
    let ns = Netns::create()?;
    let tap = "vkb0";
    let (vke, sock) = ns.run(move || {
        let vke = Vke::open(tap).map_err(|e| match e {
            VkeError::PermissionDenied { .. } | VkeError::NoTunDevice => {
                format!("not permitted: {e}")
            }
            e => e.to_string(),
        })?;
        let sock = packet_socket(tap)?;
        Ok((vke, sock))
    })?;
    ns.ip(&["link", "set", tap, "up"])?;
    let host_mac = vke.host_mac().map_err(|e| e.to_string())?;

    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let rx = {
        let received = received.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !done.load(Ordering::Relaxed) {
                // SAFETY: `buf` is writable for its whole length.
                let n =
                    unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n >= 14 && u16::from_be_bytes([buf[12], buf[13]]) == ETHERTYPE_BENCH {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let mut frame = vec![0u8; 64];
    frame[0..6].copy_from_slice(&host_mac);
    frame[6..12].copy_from_slice(&[0x02, 0, 0x5e, 0, 0, 0x42]);
    frame[12..14].copy_from_slice(&ETHERTYPE_BENCH.to_be_bytes());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(30);
    let mut sent = 0u64;
    let mut result = Ok(());
    while received.load(Ordering::Relaxed) < frames && Instant::now() < deadline {
        let got = received.load(Ordering::Relaxed);
        if sent < frames && sent - got < window {
            frame[14..22].copy_from_slice(&sent.to_be_bytes());
            if let Err(e) = vke.send(&frame) {
                result = Err(e.to_string());
                break;
            }
            sent += 1;
        } else if sent >= frames {
            // All sent; wait for the tail (or give up on dropped frames).
            if Instant::now() > start + Duration::from_secs(1) && sent - got < window {
                std::thread::sleep(Duration::from_millis(200));
                break;
            }
            std::thread::yield_now();
        } else {
            std::thread::yield_now();
        }
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let _ = rx.join();
    result?;
    let got = received.load(Ordering::Relaxed);
    if got == 0 {
        return Err("no frame arrived on the host side".into());
    }
    if got < frames {
        eprintln!("note: tap bench: {got} of {sent} frames arrived");
    }
    Ok(got as f64 / elapsed.as_secs_f64())
}
