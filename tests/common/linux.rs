//! The Linux-personality test kit: run a program under vkernel and
//! natively, find busybox, build a busybox disk image. Every
//! `tests/linux_*.rs` uses these instead of helpers of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use vkernel::devices::Disk;
use vkernel::linux::fs::Fs;
use vkernel::linux::kernel::{Options, Report};
use vkernel::linux::launch::Launch;
use vkernel::linux::stdio::BufferStdio;

use super::{scratch, skip};

/// Debian's busybox-static.
pub const BUSYBOX: &str = "/bin/busybox";

/// What a program printed and how it ended (the exit code, or 128 + the
/// signal that killed it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Out {
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Its exit status as a shell reports it.
    pub status: i32,
}

/// A vkernel run: what the program printed, and the virtual kernel's
/// report (its status is `report.status`).
pub struct Run {
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// The virtual kernel's report.
    pub report: Report,
    /// Wall time from the launch to the end of the run.
    pub elapsed: Duration,
    /// Syscalls the machine's exitless server answered.
    pub served: u64,
}

/// /bin/busybox, or a loud SKIP for `test` when it is not installed.
pub fn busybox(test: &str) -> Option<PathBuf> {
    let p = PathBuf::from(BUSYBOX);
    if p.exists() {
        Some(p)
    } else {
        skip(
            test,
            "/bin/busybox not found (apt-get install busybox-static)",
        );
        None
    }
}

/// A tar image holding `bb` as /bin/busybox (for execve by path).
pub fn busybox_image(test: &str, bb: &Path) -> PathBuf {
    let dir = scratch(test);
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(bb, root.join("bin/busybox")).unwrap();
    let image = dir.join("fs.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&image)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar failed");
    image
}

/// The launch the tests use: host program `prog` (its bytes, known by its
/// canonical path) with `args`, the environment `PATH=/bin`, 512 MiB of
/// RAM, the kernel options `opts`, and the tar image `disk` as the root
/// (else an empty tree).
pub fn launch(prog: &Path, args: &[&str], disk: Option<&Path>, opts: &Options) -> Launch {
    let path = std::fs::canonicalize(prog)
        .unwrap_or_else(|e| panic!("{}: {e}", prog.display()))
        .display()
        .to_string();
    let image = std::fs::read(prog).unwrap();
    let fs = match disk {
        Some(d) => Fs::mount(Disk::open_read_only(d).unwrap()).unwrap(),
        None => Fs::empty(),
    };
    Launch::bytes(image, path)
        .args(args)
        .env(["PATH=/bin"])
        .root(std::sync::Arc::new(fs))
        .options(opts.clone())
}

/// Run `l` with `stdin` in a thread of its own: a run that hangs fails
/// the test after 300 s instead of stalling the suite. Asserts that the
/// lost-wake-up watchdog never fired.
pub fn vk_run(l: Launch, stdin: &[u8]) -> Run {
    let stdin = stdin.to_vec();
    let what = format!("a vkernel run on {} vCPUs", l.kernel_options().cpus);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let stdio = BufferStdio::new(&stdin);
        let (out, err) = (stdio.stdout.clone(), stdio.stderr.clone());
        let start = std::time::Instant::now();
        let machine = match l.machine() {
            Ok(m) => m,
            Err(e) => {
                let _ = tx.send(Err(format!("no machine: {e}")));
                return;
            }
        };
        let report = match l.run_on(&machine, Box::new(stdio)) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(format!("the virtual kernel failed: {e}")));
                return;
            }
        };
        let elapsed = start.elapsed();
        let served = machine.exitless_stats().served;
        let text = |b: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>| {
            String::from_utf8_lossy(&b.lock().unwrap()).into_owned()
        };
        let _ = tx.send(Ok(Run {
            stdout: text(&out),
            stderr: text(&err),
            report,
            elapsed,
            served,
        }));
    });
    let run = rx
        .recv_timeout(Duration::from_secs(300))
        .unwrap_or_else(|_| panic!("{what}: no result in 300 s (a hang, or a panic above)"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(
        run.report.lost_wakeups, 0,
        "the watchdog ended a wait that no wake-up ended; stderr: {}",
        run.stderr
    );
    run
}

/// A launch of host program `prog` (known by `prog` as given) with
/// `args`, an empty environment and an empty tree, 256 MiB of RAM and
/// the kernel options `opts`.
pub fn launch_bare(prog: &Path, args: &[&str], opts: &Options) -> Launch {
    Launch::bytes(std::fs::read(prog).unwrap(), prog.display().to_string())
        .args(args)
        .ram(256 << 20)
        .options(opts.clone())
}

/// [`launch`] + [`vk_run`] with empty stdin.
pub fn vk(prog: &Path, args: &[&str], disk: Option<&Path>, opts: &Options) -> Run {
    vk_run(launch(prog, args, disk, opts), b"")
}

/// Kernel options with `cpus` vCPUs (the rest default).
pub fn cpus(n: usize) -> Options {
    Options {
        cpus: n,
        ..Options::default()
    }
}

/// `prog args` natively with the environment `PATH=/bin` only and `stdin`
/// (empty: /dev/null), in `cwd` if given.
pub fn native_in(prog: &Path, args: &[&str], stdin: &[u8], cwd: Option<&Path>) -> Out {
    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;
    let mut c = Command::new(prog);
    c.args(args)
        .env_clear()
        .env("PATH", "/bin")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    c.stdin(if stdin.is_empty() {
        Stdio::null()
    } else {
        Stdio::piped()
    });
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", prog.display()));
    if !stdin.is_empty() {
        child.stdin.take().unwrap().write_all(stdin).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    Out {
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        status: o
            .status
            .code()
            .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0)),
    }
}

/// `prog args` natively (see [`native_in`]), stdin empty: (stdout,
/// status).
pub fn native(prog: &Path, args: &[&str]) -> (String, i32) {
    let o = native_in(prog, args, b"", None);
    (o.stdout, o.status)
}

/// Kernel options with `cpus` vCPUs and a `tick_ms` scheduler tick.
pub fn opts(cpus: usize, tick_ms: u64) -> Options {
    Options {
        cpus,
        tick: Duration::from_millis(tick_ms),
        ..Options::default()
    }
}
