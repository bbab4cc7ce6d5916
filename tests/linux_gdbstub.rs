//! The gdb stub (issue 28): `vkernel run --gdb ADDR` starts the program
//! stopped before its first instruction and serves gdb's remote protocol.
//! Debian's gdb drives the same session against the stub and against
//! `gdbserver` running the program natively, and what gdb prints is
//! compared: the same breakpoints hit (in the main thread and a second
//! one), backtraces, arguments and locals, `finish`'s value, `next`,
//! `stepi`, registers (rip, orig_rax), the thread list and the exit code.
//! (Not eflags: its parity and zero bits at a breakpoint depend on values
//! computed before, such as stack addresses, which differ between the
//! two.) SKIPs loudly
//! without /dev/kvm, gdb, gdbserver or gcc.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// gdb's commands after connecting.
const SESSION: &[&str] = &[
    "break add",
    "break worker",
    "continue",
    "bt",
    "print a",
    "print $orig_rax",
    "finish",
    "next",
    "print r",
    "info registers rip",
    "stepi",
    "continue",
    "info threads",
    "print *(int *)arg",
    "continue",
];

/// tests/guests/gdb_target.c built with -g and `link` (-pie, -static).
fn build(test: &str, link: &str) -> PathBuf {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/gdb_target.c");
    let out = common::scratch(test).join(format!("gdb_target{link}"));
    let st = Command::new("gcc")
        .args(["-g", "-O0", "-pthread", link, "-o"])
        .arg(&out)
        .arg(src)
        .status()
        .expect("gcc runs");
    assert!(st.success(), "gcc {link} failed on {src}");
    out
}

/// A TCP port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// gdb in batch mode on `prog` against `server`, running `cmds`;
/// `local_files`: `set sysroot /` first (the host's files, not the
/// target's through the stub). The remote protocol is logged beside
/// `prog` (for [`Server::report`]).
fn gdb_batch(server: &Server, local_files: bool, cmds: &[&str], prog: &Path) -> Command {
    let mut c = Command::new("/usr/bin/gdb");
    c.args(["-nx", "-batch", "-ex"])
        .arg(format!("set remotelogfile {}", server.log(prog).display()));
    if local_files {
        c.args(["-ex", "set sysroot /"]);
    }
    c.arg("-ex")
        .arg(format!("target extended-remote {}", server.addr));
    for cmd in cmds {
        c.args(["-ex", cmd]);
    }
    c.arg(prog);
    c
}

/// Run gdb command `c` against `server` (within two minutes): its
/// output. A hang fails with what the server printed, its host stacks and
/// the end of the remote protocol's log.
fn run_gdb(c: Command, server: &Server, prog: &Path) -> std::process::Output {
    common::hang::output_or_report(c, "gdb", Duration::from_secs(120), &|| server.report(prog))
}

/// [`SESSION`] in gdb on `prog` against `server`: gdb's stdout.
fn gdb(prog: &Path, server: &Server) -> String {
    let o = run_gdb(gdb_batch(server, true, SESSION, prog), server, prog);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A process serving gdb (the vkernel or gdbserver): its pid, the
/// address it serves at and what it printed on stderr.
struct Server {
    pid: u32,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Where gdb logs the remote protocol of a session on `prog`.
    fn log(&self, prog: &Path) -> PathBuf {
        prog.with_extension(format!("remote-{}.log", self.pid))
    }

    /// The status of `run` (this server) at its end, within a minute; a
    /// hang fails with [`Server::report`].
    fn end(&self, run: &mut Child, prog: &Path) -> std::process::ExitStatus {
        if let Some(st) = common::hang::wait_or_none(run, Duration::from_secs(60)) {
            return st;
        }
        let why = self.report(prog);
        let _ = run.kill();
        let _ = run.wait();
        panic!("vkernel --gdb: still running a minute after gdb ended (a hang)\n{why}");
    }

    /// What to know of it when gdb hangs on it.
    fn report(&self, prog: &Path) -> String {
        let remote = std::fs::read_to_string(self.log(prog)).unwrap_or_default();
        format!(
            "{}\n--- its stderr (last 40 lines):\n{}\n--- the remote log (last 60 lines):\n{}",
            common::hang::host_stacks(self.pid),
            common::hang::tail(&self.stderr.lock().unwrap(), 40),
            common::hang::tail(&remote, 60)
        )
    }
}

/// Read `child`'s stderr until a line containing `needle`: the line, and
/// the server whose later stderr is kept (read on, so the child never
/// blocks on it).
fn stderr_line(child: &mut Child, needle: &str) -> (String, Server) {
    let err = child.stderr.take().expect("piped stderr");
    let mut r = BufReader::new(err);
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line).expect("read stderr");
        assert!(n > 0, "no line with {needle:?} on stderr");
        if line.contains(needle) {
            let kept = Arc::new(Mutex::new(String::new()));
            let into = kept.clone();
            std::thread::spawn(move || {
                let mut l = String::new();
                while r.read_line(&mut l).is_ok_and(|n| n > 0) {
                    into.lock().unwrap().push_str(&l);
                    l.clear();
                }
            });
            let server = Server {
                pid: child.id(),
                addr: String::new(),
                stderr: kept,
            };
            return (line, server);
        }
    }
}

/// The vkernel binary when /dev/kvm, gdb and gcc are there (else None,
/// after a loud SKIP).
fn vkernel_gdb_gcc(test: &str) -> Option<PathBuf> {
    let vk = common::vkernel_binary(test)?;
    if !Path::new("/usr/bin/gdb").exists() || !common::have_cc("gcc") {
        common::skip(test, "gdb or gcc not found (apt-get install gdb gcc)");
        return None;
    }
    Some(vk)
}

/// `vkernel run --cpus CPUS --gdb 127.0.0.1:0 PROG` (stdout as given):
/// the process, and it as a server at the address its stub waits at
/// (from its announcement on stderr).
fn start(vk: &Path, cpus: &str, prog: &Path, stdout: Stdio) -> (Child, Server) {
    let mut run = Command::new(vk)
        .args(["run", "--cpus", cpus, "--gdb", "127.0.0.1:0", "--"])
        .arg(prog)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vkernel");
    let (line, mut server) = stderr_line(&mut run, "waiting for gdb on ");
    server.addr = line
        .split("waiting for gdb on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the address")
        .to_string();
    (run, server)
}

/// What gdb printed, made comparable between the two targets: numbers
/// as N, blanks as one, gdbserver's thread names and the lines only one
/// side prints (file transfer notes, "[Thread ... exited]", whose order
/// against the exit is a race) left out, and the frame of thread 1 in
/// `info threads` (where the main thread is when the worker stops is a
/// race natively too).
fn shape(s: &str) -> String {
    let mut out = Vec::new();
    for l in s.lines() {
        if l.starts_with("Reading ")
            || l.starts_with("warning: ")
            || (l.starts_with("[Thread ") && l.ends_with(" exited]"))
        {
            continue;
        }
        let mut l = l.to_string();
        while let Some(i) = l.find(" \"gdb_target") {
            let end = l[i + 2..].find('"').map_or(l.len(), |j| i + 3 + j);
            l.replace_range(i..end, "");
        }
        let n = common::numbers_as_n(&l);
        let n = n.split_whitespace().collect::<Vec<_>>().join(" ");
        let n = match n.strip_prefix("N Thread N.N ") {
            Some(_) => "N Thread N.N".to_string(),
            None => n,
        };
        out.push(n);
    }
    out.join("\n")
}

#[test]
fn gdb_through_the_stub_matches_gdbserver() {
    let test = "gdb_through_the_stub_matches_gdbserver";
    let Some(vk) = common::vkernel_binary(test) else {
        return;
    };
    for tool in ["/usr/bin/gdb", "/usr/bin/gdbserver"] {
        if !Path::new(tool).exists() {
            common::skip(
                test,
                &format!("{tool} not found (apt-get install gdb gdbserver)"),
            );
            return;
        }
    }
    if !common::have_cc("gcc") {
        common::skip(test, "gcc not found (apt-get install gcc)");
        return;
    }
    for link in ["-pie", "-static"] {
        let prog = build(test, link);
        // Natively, under gdbserver.
        let port = free_port();
        let mut server = Command::new("/usr/bin/gdbserver")
            .arg("--once")
            .arg(format!("127.0.0.1:{port}"))
            .arg(&prog)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gdbserver");
        let (_, mut native_server) = stderr_line(&mut server, "Listening on port");
        native_server.addr = format!("127.0.0.1:{port}");
        let native = gdb(&prog, &native_server);
        // In extended mode gdbserver outlives its program: done with it.
        let _ = server.kill();
        let _ = server.wait();
        for want in [
            "Breakpoint 1, add (a=2, b=3)",
            "Value returned is $3 = 5",
            "hit Breakpoint 2, worker",
            "$5 = 7",
            "exited with code 03",
        ] {
            assert!(native.contains(want), "natively, no {want:?}:\n{native}");
        }
        for cpus in ["1", "2"] {
            let (mut run, at) = start(&vk, cpus, &prog, Stdio::piped());
            let got = gdb(&prog, &at);
            let mut out = run.stdout.take().expect("piped stdout");
            let st = at.end(&mut run, &prog);
            let mut printed = String::new();
            std::io::Read::read_to_string(&mut out, &mut printed).expect("stdout");
            assert_eq!(
                st.code(),
                Some(3),
                "{link}, {cpus} vCPUs: vkernel's status\n{got}"
            );
            assert_eq!(printed, "r=5 counter=7\n", "{link}, {cpus} vCPUs");
            assert_eq!(shape(&got), shape(&native), "{link}, {cpus} vCPUs");
        }
    }
}

/// gdb's `detach` lets the program run on to its end, untraced, and
/// `kill` ends it: the vkernel's status says so.
#[test]
fn gdb_detach_runs_on_and_kill_ends() {
    let test = "gdb_detach_runs_on_and_kill_ends";
    let Some(vk) = vkernel_gdb_gcc(test) else {
        return;
    };
    let prog = build(test, "-pie");
    for (last, want) in [("detach", Some(3)), ("kill", None)] {
        let (mut run, at) = start(&vk, "2", &prog, Stdio::null());
        let c = gdb_batch(&at, true, &["break worker", "continue", last], &prog);
        let o = run_gdb(c, &at, &prog);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("hit Breakpoint 1, worker"), "{last}: {text}");
        let st = at.end(&mut run, &prog);
        match want {
            Some(code) => assert_eq!(st.code(), Some(code), "{last}: {text}"),
            // Killed: the vkernel reports SIGKILL's status.
            None => assert_ne!(st.code(), Some(3), "{last}: {st}\n{text}"),
        }
    }
}

/// With gdb's default sysroot (`target:`), gdb reads the program and its
/// libraries from the vproc's own tree through the stub (vFile), stops in
/// libc (`break pthread_create`), lists the shared libraries and the
/// process's mappings (`info proc mappings` reads /proc/PID/maps as the
/// vkernel makes it).
#[test]
fn gdb_reads_files_mappings_and_libraries_through_the_stub() {
    let test = "gdb_reads_files_mappings_and_libraries_through_the_stub";
    let Some(vk) = vkernel_gdb_gcc(test) else {
        return;
    };
    let prog = build(test, "-pie");
    let (mut run, at) = start(&vk, "1", &prog, Stdio::null());
    let cmds = [
        "break pthread_create",
        "continue",
        "info sharedlibrary",
        "info proc mappings",
        "continue",
    ];
    let c = gdb_batch(&at, false, &cmds, &prog);
    let o = run_gdb(c, &at, &prog);
    let text = String::from_utf8_lossy(&o.stdout);
    let st = at.end(&mut run, &prog);
    assert_eq!(st.code(), Some(3), "{text}");
    let prog_path = prog.display().to_string();
    for want in [
        "Breakpoint 1, __pthread_create",
        "target:/lib/x86_64-linux-gnu/libc.so.6",
        "Mapped address spaces:",
        "[stack]",
        prog_path.as_str(),
        "libc.so.6",
        "exited with code 03",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
}

/// Ctrl-C in gdb (SIGINT to gdb, which sends the interrupt byte) stops a
/// program that spins without a system call: gdb reports SIGINT where it
/// is, and `kill` ends it.
#[test]
fn gdb_interrupts_a_spinning_program() {
    let test = "gdb_interrupts_a_spinning_program";
    let Some(vk) = vkernel_gdb_gcc(test) else {
        return;
    };
    let dir = common::scratch(test);
    let src = dir.join("spin.c");
    std::fs::write(
        &src,
        "int main(void) { volatile unsigned long i = 0; for (;;) i++; }\n",
    )
    .expect("write spin.c");
    let prog = dir.join("spin");
    let st = Command::new("gcc")
        .args(["-g", "-O0", "-o"])
        .arg(&prog)
        .arg(&src)
        .status()
        .expect("gcc runs");
    assert!(st.success());
    let (mut run, at) = start(&vk, "1", &prog, Stdio::null());
    let mut g = gdb_batch(&at, true, &["continue", "bt", "kill"], &prog)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gdb");
    std::thread::sleep(Duration::from_millis(1500));
    common::send_signal(&g, libc::SIGINT);
    let mut out = g.stdout.take().expect("piped");
    if common::hang::wait_or_none(&mut g, Duration::from_secs(60)).is_none() {
        let why = at.report(&prog);
        let _ = g.kill();
        panic!("gdb: still running 60 s after Ctrl-C (a hang)\n{why}");
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut out, &mut text).expect("gdb's output");
    let st = at.end(&mut run, &prog);
    assert!(text.contains("Program received signal SIGINT"), "{text}");
    assert!(text.contains("in main () at"), "{text}");
    assert!(text.contains("killed]"), "{text}");
    assert_ne!(st.code(), Some(0), "{st}");
}
