//! eventfd, epoll and AF_UNIX socketpair (issue 22): `tests/guests/events.c`
//! prints the same natively and under vkernel, on one and two vCPUs, for
//! each compiler, and no wake-up is lost (the watchdog never fires).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{compile, compilers, have_kvm};
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

/// `prog args` under vkernel on `cpus` vCPUs: (stdout, exit code, lost
/// wake-ups).
fn vk(prog: &Path, args: &[&str], cpus: usize) -> (String, i32, u64) {
    let stdio = BufferStdio::new(b"");
    let out = stdio.stdout.clone();
    let report = Launch::host_program(prog)
        .unwrap()
        .args(args)
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
        for mode in ["eventfd", "epoll", "socket", "errors"] {
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
