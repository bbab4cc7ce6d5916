//! The program's stderr belongs to the program (issue 29): under vkernel a
//! program's standard error is byte for byte what it is natively; the
//! vkernel's own diagnostics (unimplemented syscalls, warnings) go to
//! `--log FILE` / `VKERNEL_LOG`, or to stderr with `-v`, and `--stats`
//! lists the unimplemented calls a run met. Runs the `vkernel` binary as a
//! fresh process, as a user does.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{compile, compile_linked, have_cc, scratch, skip, vkernel_binary};

/// `cmd` with stdin from /dev/null, collected (status, stdout, stderr).
fn output(mut cmd: Command, what: &str) -> Output {
    cmd.stdin(std::process::Stdio::null())
        .env_remove("RUST_LOG")
        .env_remove("VKERNEL_LOG");
    cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// `vkernel run [opts] PROGRAM ARGS...`.
fn vk_run(vk: &Path, opts: &[&str], prog: &[&str]) -> Output {
    let mut c = Command::new(vk);
    c.arg("run").args(opts).args(prog);
    output(c, &format!("vkernel run {prog:?}"))
}

/// PROGRAM ARGS... natively.
fn native(prog: &[&str]) -> Output {
    let mut c = Command::new(prog[0]);
    c.args(&prog[1..]);
    output(c, &format!("native {prog:?}"))
}

/// Status, stdout and stderr are the same under vkernel as natively.
fn same_as_native(vk: &Path, prog: &[&str]) {
    let (n, v) = (native(prog), vk_run(vk, &[], prog));
    assert_eq!(
        String::from_utf8_lossy(&v.stderr),
        String::from_utf8_lossy(&n.stderr),
        "stderr of {prog:?}"
    );
    assert_eq!(v.stdout, n.stdout, "stdout of {prog:?}");
    assert_eq!(v.status.code(), n.status.code(), "status of {prog:?}");
}

#[test]
fn bash_echo_prints_exactly_hi() {
    let t = "bash_echo_prints_exactly_hi";
    let Some(vk) = vkernel_binary(t) else { return };
    if !Path::new("/bin/bash").exists() {
        return skip(t, "/bin/bash is missing");
    }
    // stdout and stderr on one pipe, as `2>&1` gives a script.
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(format!(
        "'{}' run /bin/bash -c 'echo hi' 2>&1",
        vk.display()
    ));
    let o = output(c, "sh -c 'vkernel run /bin/bash -c echo hi 2>&1'");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi\n");
    assert!(o.status.success());
}

#[test]
fn stderr_matches_native() {
    let t = "stderr_matches_native";
    let Some(vk) = vkernel_binary(t) else { return };
    if Path::new("/bin/bash").exists() {
        same_as_native(&vk, &["/bin/bash", "-c", "echo out; echo err >&2; exit 3"]);
    }
    if Path::new("/usr/bin/python3").exists() {
        same_as_native(&vk, &["/usr/bin/python3", "-c", "print(1)"]);
    }
    // A musl dynamic program: the loader's calls (membarrier...) say
    // nothing on stderr.
    if have_cc("musl-gcc") && Path::new("/lib/ld-musl-x86_64.so.1").exists() {
        let p = compile_linked(t, "hello", "musl-gcc", "-no-pie").expect("musl-gcc");
        let p = p.to_str().expect("utf-8 path");
        same_as_native(&vk, &[p, "a", "b"]);
    } else {
        eprintln!("{t}: musl-gcc or /lib/ld-musl-x86_64.so.1 missing: no musl dynamic program");
    }
    let Some(u) = compile(t, "unimpl", "musl-gcc") else {
        return;
    };
    same_as_native(&vk, &[u.to_str().expect("utf-8 path")]);
}

#[test]
fn unimplemented_calls_go_to_the_log() {
    let t = "unimplemented_calls_go_to_the_log";
    let Some(vk) = vkernel_binary(t) else { return };
    let Some(u) = compile(t, "unimpl", "musl-gcc") else {
        return;
    };
    let u = u.to_str().expect("utf-8 path");
    let comm = Path::new(u).file_name().unwrap().to_string_lossy();
    // comm is the first 15 bytes of the program's name.
    let comm: String = comm.chars().take(15).collect();
    let line = format!("pid 100 ({comm}): unimplemented syscall 156 (_sysctl) -> ENOSYS");

    // --log FILE: the line is in the file, once; stderr is empty.
    let log = scratch(t).join("vk.log");
    let o = vk_run(&vk, &["--log", log.to_str().unwrap()], &[u]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "done\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    let text = std::fs::read_to_string(&log).expect("the log file");
    assert_eq!(text.matches(&line).count(), 1, "log: {text}");
    assert!(text.contains("156 _sysctl"), "the exit summary: {text}");
    assert!(
        text.contains("3 calls, first by pid 100"),
        "the exit summary: {text}"
    );

    // VKERNEL_LOG=FILE does the same.
    let log2 = scratch(t).join("vk2.log");
    let o = Command::new(&vk)
        .args(["run", u])
        .env("VKERNEL_LOG", &log2)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("vkernel run");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    let text = std::fs::read_to_string(&log2).expect("the VKERNEL_LOG file");
    assert!(text.contains(&line), "VKERNEL_LOG: {text}");

    // -v: on stderr.
    let o = vk_run(&vk, &["-v"], &[u]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&line), "-v stderr: {err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "done\n");

    // --stats: the list of unimplemented calls, with count and first caller.
    let o = vk_run(&vk, &["--stats"], &[u]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.lines()
            .any(|l| l.contains("156 _sysctl") && l.contains("3 calls, first by pid 100")),
        "--stats: {err}"
    );
    assert!(!err.contains(&line), "--stats alone does not log: {err}");

    // An unwritable --log is a clear error before anything runs.
    let o = vk_run(&vk, &["--log", "/nonexistent-dir/vk.log"], &[u]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--log /nonexistent-dir/vk.log"));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
}
