//! eventfd, epoll and AF_UNIX stream sockets, socketpair and named (paths
//! and abstract names; issue 22): `tests/guests/events.c` prints the same
//! natively and under vkernel, on one and two vCPUs, for each compiler,
//! and no wake-up is lost (the watchdog never fires).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::{compile, compilers, have_kvm, scratch};
use vkernel::linux::fs::Fs;
use vkernel::linux::launch::Launch;
use vkernel::linux::stdio::BufferStdio;

/// `prog args` natively, stdin empty: (stdout, exit code).
fn native(prog: &Path, args: &[&str]) -> (String, i32) {
    let o = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

/// `prog args` under vkernel on `cpus` vCPUs, the host's / as its root
/// (read-only, under a writable overlay): (stdout, exit code, lost
/// wake-ups).
fn vk(prog: &Path, args: &[&str], cpus: usize) -> (String, i32, u64) {
    let stdio = BufferStdio::new(b"");
    let out = stdio.stdout.clone();
    let root = Arc::new(Fs::host(Path::new("/")).unwrap());
    let report = Launch::host_program(prog)
        .unwrap()
        .args(args)
        .root(root)
        .cpus(cpus)
        .run(Box::new(stdio))
        .expect("the virtual kernel runs");
    let stdout = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    (stdout, report.status.code(), report.lost_wakeups)
}

#[test]
fn events_match_native() {
    let test = "events_match_native";
    if !have_kvm(test) {
        return;
    }
    for cc in compilers() {
        let Some(prog) = compile(test, "events", cc) else {
            return;
        };
        for mode in [
            "eventfd", "epoll", "socket", "errors", "memfd", "timerfd", "scm", "signalfd",
        ] {
            let (want, code) = native(&prog, &[mode]);
            assert_eq!(code, 0, "{cc} {mode} natively:\n{want}");
            for cpus in [1, 2] {
                let (got, code, lost) = vk(&prog, &[mode], cpus);
                assert_eq!(got, want, "{cc} {mode} on {cpus} vCPUs");
                assert_eq!(code, 0, "{cc} {mode} on {cpus} vCPUs");
                assert_eq!(lost, 0, "{cc} {mode}: lost wake-ups on {cpus} vCPUs");
            }
        }
    }
}

#[test]
fn named_unix_sockets_match_native() {
    let test = "named_unix_sockets_match_native";
    if !have_kvm(test) {
        return;
    }
    for cc in compilers() {
        let Some(prog) = compile(test, "events", cc) else {
            return;
        };
        // Each run binds in a fresh directory (natively on the host; under
        // vkernel in the overlay above it, so the host stays clean).
        let dir = scratch(test);
        let d = dir.display().to_string();
        let (want, code) = native(&prog, &["unix", &d]);
        assert_eq!(code, 0, "{cc} natively:\n{want}");
        for cpus in [1, 2] {
            let dir = scratch(test);
            let d = dir.display().to_string();
            let (got, code, lost) = vk(&prog, &["unix", &d], cpus);
            assert_eq!(got, want, "{cc} on {cpus} vCPUs");
            assert_eq!(code, 0, "{cc} on {cpus} vCPUs");
            assert_eq!(lost, 0, "{cc}: lost wake-ups on {cpus} vCPUs");
            assert!(
                std::fs::read_dir(&dir).unwrap().next().is_none(),
                "the vproc's socket nodes stay in the overlay"
            );
        }
    }
}
