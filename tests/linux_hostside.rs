//! The `vkernel` example as a whole process, where it meets the host:
//! stdout/stderr that are closed pipes, SIGINT with and without a
//! terminal, the debugger prompt on a pty, host resource limits, a panic
//! in one of its threads. Exit statuses are compared with native Linux
//! running the same program. Every run has a generous timeout that only
//! turns a hang into a failure. Tests SKIP loudly without /dev/kvm.

use vkernel::linux;

mod common;

use common::{
    native_cmd, send_signal, shell_status, spawn_ready, stderr_within, vk_cmd, vkernel_and_busybox,
    vkernel_binary,
};

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Long enough for a loaded CI machine; only a hang gets near it.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A C guest from tests/guests built with musl-gcc (or `cc -static` where
/// musl-tools are missing).
fn guest(test: &str, name: &str) -> Option<PathBuf> {
    common::compile(test, name, "musl-gcc")
}

/// A pipe whose read end is already closed: every write gets EPIPE.
fn closed_pipe() -> OwnedFd {
    let (r, w) = std::io::pipe().expect("pipe");
    drop(r);
    w.into()
}

/// Wait for `child`, killing it (and failing) if it outlives TIMEOUT.
fn wait(child: &mut Child, what: &str) -> ExitStatus {
    common::wait_within(child, what, TIMEOUT)
}

/// Run `cmd` with stdin from /dev/null, and its stdout and stderr as
/// given; return the shell status.
fn run_with(mut cmd: Command, stdout: Stdio, stderr: Stdio, what: &str) -> i32 {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawn");
    shell_status(wait(&mut child, what))
}

/// `args` natively and under `vk run`, stdout to /dev/null and stderr a
/// closed pipe: the (native, vk) statuses.
fn with_closed_stderr(vk: &Path, args: &[&str]) -> (i32, i32) {
    let run = |cmd, what| run_with(cmd, Stdio::null(), closed_pipe().into(), what);
    (
        run(native_cmd(args), &format!("native {args:?}")),
        run(vk_cmd(vk, args), &format!("vk {args:?}")),
    )
}

// ---- item 6: messages to a broken stderr, panics -------------------------

#[test]
fn trace_to_a_closed_pipe_ends_like_native() {
    let Some(vk) = vkernel_and_busybox("trace_to_a_closed_pipe_ends_like_native") else {
        return;
    };
    let args = ["/bin/busybox", "echo", "hi"];
    // `vk run --trace busybox echo hi 2>&1 | <reader gone>`: every trace
    // line hits EPIPE; the vproc's own write gets EPIPE and SIGPIPE.
    let mut cmd = vk_cmd(&vk, &["--trace"]);
    cmd.args(args);
    let p = closed_pipe();
    let got = run_with(
        cmd,
        p.try_clone().unwrap().into(),
        p.into(),
        "vk --trace to a closed pipe",
    );
    let p = closed_pipe();
    let native = run_with(
        native_cmd(&args),
        p.try_clone().unwrap().into(),
        p.into(),
        "native",
    );
    assert_eq!(native, 141, "native busybox echo to a closed pipe");
    assert_eq!(got, native, "vk --trace echo to a closed pipe");
}

#[test]
fn trace_into_head_ends() {
    let Some(vk) = vkernel_and_busybox("trace_into_head_ends") else {
        return;
    };
    // `vk run --trace busybox seq 1 1000 2>&1 | head -1`: the reader goes
    // away after one line while trace lines keep coming.
    let (r, w) = std::io::pipe().expect("pipe");
    let w: OwnedFd = w.into();
    let mut child = vk_cmd(&vk, &["--trace", "/bin/busybox", "seq", "1", "1000"])
        .stdin(Stdio::null())
        .stdout(w.try_clone().unwrap())
        .stderr(w)
        .spawn()
        .expect("spawn vk");
    let mut r = std::io::BufReader::new(r);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut r, &mut line).expect("one line");
    assert!(!line.is_empty());
    drop(r);
    let s = shell_status(wait(&mut child, "vk --trace | head -1"));
    // The vproc dies of SIGPIPE (or finished before the reader left).
    assert!(s == 141 || s == 0, "status {s}");
}

#[test]
fn fatal_signal_with_a_closed_stderr_keeps_its_status() {
    let t = "fatal_signal_with_a_closed_stderr_keeps_its_status";
    let (Some(vk), Some(prog)) = (vkernel_binary(t), guest(t, "crash")) else {
        return;
    };
    let prog = prog.to_str().unwrap();
    // `(vk run ./crash ill 2>&1 >/dev/null) | true`: the death message
    // goes to a closed pipe.
    let (native, got) = with_closed_stderr(&vk, &[prog, "ill"]);
    assert_eq!(native, 132);
    assert_eq!(got, native, "a ud2 under vk, stderr a closed pipe");
}

#[test]
fn logging_to_a_closed_stderr_is_dropped() {
    let Some(vk) = vkernel_and_busybox("logging_to_a_closed_stderr_is_dropped") else {
        return;
    };
    let mut cmd = vk_cmd(&vk, &["/bin/busybox", "true"]);
    cmd.env("RUST_LOG", "trace");
    let got = run_with(cmd, Stdio::null(), closed_pipe().into(), "RUST_LOG=trace");
    assert_eq!(got, 0);
}

/// Set in the child run of [`panic_in_a_thread_ends_the_process`].
const PANIC_CHILD: &str = "VKERNEL_TEST_PANIC_CHILD";

#[test]
fn panic_child() {
    // Only does something as the child of the test below: a vkernel
    // thread panics while the main thread waits for it forever (as the
    // vCPU loop waits for others), which used to hang the process.
    if std::env::var_os(PANIC_CHILD).is_none() {
        return;
    }
    linux::stdio::install_panic_hook();
    let (_tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("vcpu1".into())
        .spawn(|| panic!("injected failure"))
        .unwrap();
    let _ = rx.recv();
    unreachable!("the panic hook ends the process");
}

#[test]
fn panic_in_a_thread_ends_the_process() {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "panic_child", "--nocapture", "--test-threads=1"])
        .env(PANIC_CHILD, "1");
    let (s, err) = stderr_within(
        cmd,
        Stdio::null(),
        "a process whose thread panicked",
        TIMEOUT,
    );
    assert_eq!(s, linux::stdio::INTERNAL_ERROR_STATUS, "{s:?}: {err}");
    assert!(
        err.contains("internal error in thread 'vcpu1'") && err.contains("injected failure"),
        "{err}"
    );
    // With stderr gone too, the status is the same.
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "panic_child", "--nocapture", "--test-threads=1"])
        .env(PANIC_CHILD, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(closed_pipe())
        .spawn()
        .unwrap();
    let s = wait(&mut child, "a panic with a closed stderr");
    assert_eq!(s.code(), Some(linux::stdio::INTERNAL_ERROR_STATUS));
}

// ---- item 11: host EPIPE is SIGPIPE for the vproc -------------------------

/// Run `cmd`, read its stdout up to the first newline, close it, and
/// return the status.
fn first_line_then_close(cmd: Command, what: &str) -> (String, ExitStatus) {
    let (mut child, out, line) = common::spawn_first_line(cmd, Stdio::null(), Stdio::piped());
    drop(out);
    let s = wait(&mut child, what);
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(!err.contains("SIGPIPE"), "a shell says nothing: {err}");
    (line, s)
}

#[test]
fn host_epipe_is_sigpipe() {
    let Some(vk) = vkernel_and_busybox("host_epipe_is_sigpipe") else {
        return;
    };
    let args = ["/bin/busybox", "seq", "1", "1000000"];
    // `seq 1 1000000 | head -1`.
    let (nl, native) = first_line_then_close(native_cmd(&args), "native seq");
    let (vl, got) = first_line_then_close(vk_cmd(&vk, &args), "vk seq");
    assert_eq!(native.signal(), Some(libc::SIGPIPE));
    // The vkernel itself ignores the host's SIGPIPE: it exits, with the
    // status a shell shows for the vproc's death.
    assert_eq!(got.code(), Some(141), "{got:?}");
    assert_eq!(vl, nl);
}

#[test]
fn stderr_epipe_is_sigpipe() {
    let Some(vk) = vkernel_and_busybox("stderr_epipe_is_sigpipe") else {
        return;
    };
    // The vproc writes to fd 2, a closed pipe: EPIPE and SIGPIPE there too.
    let args = ["/bin/busybox", "sh", "-c", "echo x >&2; echo survived"];
    let (native, got) = with_closed_stderr(&vk, &args);
    assert_eq!(native, 141);
    assert_eq!(got, native);
}

#[test]
fn host_write_errors_keep_their_errno() {
    let Some(vk) = vkernel_and_busybox("host_write_errors_keep_their_errno") else {
        return;
    };
    // stdout is /dev/full: the vproc sees ENOSPC (it used to see EIO).
    let args = ["/bin/busybox", "echo", "hi"];
    let run = |cmd: Command| {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        stderr_within(cmd, full.into(), "echo > /dev/full", TIMEOUT)
    };
    let (ns, nerr) = run(native_cmd(&args));
    let (vs, verr) = run(vk_cmd(&vk, &args));
    assert!(nerr.contains("No space left on device"), "{nerr}");
    assert_eq!((vs, verr), (ns, nerr));
}

// ---- item 13: SIGINT without a terminal, the debugger on a pty ------------

#[test]
fn sigint_without_a_terminal_ends_like_native() {
    let Some(vk) = vkernel_and_busybox("sigint_without_a_terminal_ends_like_native") else {
        return;
    };
    for (script, stdins) in [
        // A busy vproc on the vCPU.
        ("echo ready; while :; do :; done", &["null", "pipe"][..]),
        // Every vproc blocked (vCPU 0 idle).
        ("echo ready; busybox sleep 100", &["null", "pipe"]),
        // A vproc blocked reading stdin (a pipe that stays open).
        ("echo ready; busybox cat", &["pipe"]),
    ] {
        let args = ["/bin/busybox", "sh", "-c", script];
        for &stdin in stdins {
            let mk = || match stdin {
                "null" => Stdio::null(),
                _ => Stdio::piped(),
            };
            let mut native = spawn_ready(native_cmd(&args), mk());
            send_signal(&native, libc::SIGINT);
            let n = shell_status(wait(&mut native, "native"));
            let mut vkc = spawn_ready(vk_cmd(&vk, &args), mk());
            send_signal(&vkc, libc::SIGINT);
            let v = shell_status(wait(&mut vkc, "vk after SIGINT without a terminal"));
            assert_eq!(n, 130, "native {script}");
            assert_eq!(v, n, "vk {script} (stdin {stdin})");
        }
    }
}

/// A pty master with everything the other side printed collected.
struct Pty {
    master: std::fs::File,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    /// Open a pty; returns it and the slave side.
    fn open() -> (Pty, OwnedFd) {
        let (mut m, mut s) = (-1, -1);
        // SAFETY: openpty writes two new fds into the locals; the name,
        // termios and winsize arguments may be null.
        let rc = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both fds are fresh and owned by nobody else.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        let master = std::fs::File::from(master);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut r = master.try_clone().unwrap();
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = r.read(&mut b) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&b[..n]);
            }
        });
        (Pty { master, seen }, slave)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Wait until `pat` was printed `n` times in all.
    fn wait_for(&self, pat: &str, n: usize) {
        let start = Instant::now();
        while self.text().matches(pat).count() < n {
            assert!(
                start.elapsed() < TIMEOUT,
                "waiting for {pat:?} x{n}; got:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, b: &[u8]) {
        self.master.write_all(b).unwrap();
    }
}

/// Spawn `cmd` with the pty's `slave` side as stdin, stdout and stderr.
fn on_pty(mut cmd: Command, slave: OwnedFd) -> Child {
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .expect("spawn vk on a pty")
}

/// vk running a busybox shell loop that spins after printing "ready",
/// on a new pty that is its controlling terminal (Ctrl-C there opens the
/// vkdb prompt): the pty and the child, once "ready" came.
fn spinning_on_a_terminal(vk: &std::path::Path) -> (Pty, Child) {
    let (pty, slave) = Pty::open();
    let mut cmd = vk_cmd(
        vk,
        &[
            "/bin/busybox",
            "sh",
            "-c",
            "echo ready; while :; do :; done",
        ],
    );
    let sfd = slave.as_raw_fd();
    // SAFETY: only async-signal-safe calls between fork and exec: a new
    // session with the pty as its controlling terminal.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            libc::ioctl(sfd, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let child = on_pty(cmd, slave);
    pty.wait_for("ready", 1);
    (pty, child)
}

#[test]
fn debugger_reads_new_input_after_ctrl_d() {
    let Some(vk) = vkernel_and_busybox("debugger_reads_new_input_after_ctrl_d") else {
        return;
    };
    let (mut pty, mut child) = spinning_on_a_terminal(&vk);
    // Ctrl-C: the prompt. Ctrl-D at the prompt: continue.
    pty.send(b"\x03");
    pty.wait_for("(vkdb) ", 1);
    pty.send(b"\x04");
    // The guest runs again; a second Ctrl-C stops it again, and the new
    // prompt reads new input (it used to see the old end of file for
    // ever, and the guest kept spinning).
    std::thread::sleep(Duration::from_millis(200));
    pty.send(b"\x03");
    pty.wait_for("(vkdb) ", 2);
    pty.send(b"ps\n");
    pty.wait_for("PPID", 1);
    pty.wait_for("(vkdb) ", 3);
    pty.send(b"q\n");
    let s = wait(&mut child, "vk after q at the prompt");
    assert_eq!(shell_status(s), 130, "{}", pty.text());
}

/// `gdb ADDR` at the vkdb prompt attaches the gdb stub to the running
/// process on that vCPU (issue 28): after `c`, it stops, gdb connects
/// with `target remote`, reads its registers and kills it.
#[test]
fn debugger_prompt_attaches_gdb_to_a_running_process() {
    let test = "debugger_prompt_attaches_gdb_to_a_running_process";
    let Some(vk) = vkernel_and_busybox(test) else {
        return;
    };
    if !std::path::Path::new("/usr/bin/gdb").exists() {
        common::skip(test, "/usr/bin/gdb not found (apt-get install gdb)");
        return;
    }
    let (mut pty, mut child) = spinning_on_a_terminal(&vk);
    pty.send(b"\x03");
    pty.wait_for("(vkdb) ", 1);
    pty.send(b"gdb 127.0.0.1:0\n");
    pty.wait_for("waiting for gdb on ", 1);
    pty.wait_for("(vkdb) ", 2);
    let text = pty.text();
    let addr = text
        .split("waiting for gdb on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the stub's address")
        .to_string();
    pty.send(b"c\n");
    let mut g = Command::new("/usr/bin/gdb");
    g.args(["-nx", "-batch", "-ex", "set sysroot /", "-ex"])
        .arg(format!("target remote {addr}"))
        .args(["-ex", "info registers rip", "-ex", "kill", "/bin/busybox"]);
    let o = common::output_within(g, "gdb", TIMEOUT);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("rip            0x"), "{out}");
    assert!(out.contains("killed]"), "{out}");
    let s = wait(&mut child, "vk after gdb's kill");
    assert_ne!(shell_status(s), 0, "{}", pty.text());
}

#[test]
fn ctrl_d_on_a_terminal_is_one_end_of_file() {
    let Some(vk) = vkernel_and_busybox("ctrl_d_on_a_terminal_is_one_end_of_file") else {
        return;
    };
    // Two cats in a row on a terminal: each ends at its own Ctrl-D, as
    // natively.
    let script = "echo ready; busybox cat; busybox cat; echo done";
    let (mut pty, slave) = Pty::open();
    let mut child = on_pty(vk_cmd(&vk, &["/bin/busybox", "sh", "-c", script]), slave);
    pty.wait_for("ready", 1);
    pty.send(b"abc\n");
    pty.wait_for("abc", 2); // the echo and cat's copy
    pty.send(b"\x04");
    pty.send(b"xyz\n");
    pty.wait_for("xyz", 2);
    pty.send(b"\x04");
    pty.wait_for("done", 1);
    let s = wait(&mut child, "vk with two cats");
    assert_eq!(shell_status(s), 0, "{}", pty.text());
}

// ---- item 14: resource messages --------------------------------------------

/// Run vk to the end; (status, stderr).
fn vk_output(cmd: Command) -> (i32, String) {
    stderr_within(cmd, Stdio::null(), "vk", TIMEOUT)
}

#[test]
fn too_many_cpus_says_what_was_asked() {
    let Some(vk) = vkernel_and_busybox("too_many_cpus_says_what_was_asked") else {
        return;
    };
    let (s, err) = vk_output(vk_cmd(&vk, &["--cpus", "1000", "/bin/busybox", "true"]));
    assert_eq!(s, 1, "{err}");
    assert!(err.contains("1000 vCPUs"), "{err}");
    assert!(err.contains("allows 1 to"), "{err}");
    assert!(!err.contains("permissions"), "{err}");
}

#[test]
fn address_space_limits_give_clear_errors() {
    let Some(vk) = vkernel_and_busybox("address_space_limits_give_clear_errors") else {
        return;
    };
    // From too small for guest RAM, through too small for the threads
    // (each needs a stack mapping), up to the first limit that is enough:
    // never a panic, never a hang, never a permission hint.
    let mut thread_failures = 0;
    let mut ok = false;
    for mib in (40u64..=2048).step_by(2) {
        let mut cmd = vk_cmd(&vk, &["--mem", "64", "--cpus", "4", "/bin/busybox", "true"]);
        let limit = mib << 20;
        // SAFETY: setrlimit only, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let r = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &r) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let (s, err) = vk_output(cmd);
        assert!(!err.contains("panicked"), "ulimit -v {mib} MiB: {err}");
        assert!(!err.contains("permissions"), "ulimit -v {mib} MiB: {err}");
        if s == 0 {
            ok = true;
            break;
        }
        assert_eq!(s, 1, "ulimit -v {mib} MiB: {err}");
        assert!(
            err.contains("ulimit -v"),
            "ulimit -v {mib} MiB: the message says what to do: {err}"
        );
        if err.contains("cannot start the") {
            thread_failures += 1;
        }
    }
    assert!(ok, "no limit up to 2 GiB was enough");
    assert!(thread_failures > 0, "no limit hit a thread start");
}

#[test]
fn child_out_of_ram_is_sigbus_with_a_message() {
    let Some(vk) = vkernel_and_busybox("child_out_of_ram_is_sigbus_with_a_message") else {
        return;
    };
    // Somewhere between too little RAM for the parent and enough for both,
    // the child runs out while it fills a 4 MiB buffer (execve itself
    // needs little: programs are mapped from the page cache, lazily).
    let mut hit = false;
    for mem in 2..=8 {
        let mut cmd = vk_cmd(
            &vk,
            &[
                "--mem",
                &mem.to_string(),
                "/bin/busybox",
                "sh",
                "-c",
                "busybox dd if=/dev/zero of=/dev/null bs=4M count=1 2>/dev/null; echo $? >&2",
            ],
        );
        cmd.stdout(Stdio::null());
        let (s, err) = vk_output(cmd);
        // The shell saw the child die of SIGBUS (128 + 7).
        if err.lines().any(|l| l == "135") {
            hit = true;
            assert!(err.contains("out of RAM"), "--mem {mem}: {err}");
        }
        assert!(
            !err.lines().any(|l| l == "139"),
            "--mem {mem}: no silent SIGSEGV: {err}"
        );
        assert_ne!(s, 101, "--mem {mem}: {err}");
    }
    assert!(hit, "no --mem in 2..=8 ran out of RAM in the child");
}
