//! What a hung test leaves behind: the partial output of the command
//! that hung and the host thread stacks of the processes it waited on
//! (the host's gdb attached for a moment), so a hang seen once in CI can
//! be understood from its log.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Every host thread's backtrace in process `pid` (the host's gdb
/// attached in batch mode), or why there is none.
pub fn host_stacks(pid: u32) -> String {
    if !std::path::Path::new("/usr/bin/gdb").exists() {
        return format!("(no /usr/bin/gdb to show process {pid}'s stacks)");
    }
    let o = Command::new("timeout")
        .args(["60", "/usr/bin/gdb", "-nx", "-batch", "-p"])
        .arg(pid.to_string())
        .args(["-ex", "thread apply all bt 30"])
        .stdin(Stdio::null())
        .output();
    match o {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            // Only the stacks, not gdb's loading chatter.
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("Thread ") || l.starts_with('#') || l.is_empty())
                .collect();
            format!("host stacks of process {pid}:\n{}", kept.join("\n"))
        }
        Err(e) => format!("(gdb -p {pid}: {e})"),
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Run `cmd` (stdin from /dev/null) to its end within `timeout`,
/// collecting stdout and stderr. A hang calls `report` (while everything
/// still hangs: the place to take stacks), kills the command and fails
/// with its partial output and the report.
pub fn output_or_report(
    mut cmd: Command,
    what: &str,
    timeout: Duration,
    report: &dyn Fn() -> String,
) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let status = match wait_or_none(&mut child, timeout) {
        Some(s) => s,
        None => {
            let mine = host_stacks(child.id());
            let theirs = report();
            let _ = child.kill();
            let _ = child.wait();
            let out = out.join().unwrap_or_default();
            let err = err.join().unwrap_or_default();
            panic!(
                "{what}: still running after {timeout:?} (a hang)\n\
                 --- its stdout (last 40 lines):\n{}\n--- its stderr (last 40 lines):\n{}\n\
                 --- {mine}\n--- {theirs}",
                tail(&String::from_utf8_lossy(&out), 40),
                tail(&String::from_utf8_lossy(&err), 40),
            );
        }
    };
    Output {
        status,
        stdout: out.join().expect("reader"),
        stderr: err.join().expect("reader"),
    }
}

/// Wait for `child` at most `timeout`: its status, or None (still
/// running).
pub fn wait_or_none(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
