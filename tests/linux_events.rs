//! eventfd, epoll, timerfd, signalfd, memfd, pidfd, inotify and AF_UNIX
//! stream sockets, socketpair and named (paths and abstract names; issue
//! 22): `tests/guests/events.c` prints the same
//! natively and under vkernel, on one and two vCPUs, for each compiler,
//! and no wake-up is lost (the watchdog never fires).

mod common;

use common::{guest, host_root, kvm_guests, native, scratch, vk_watched, what};

/// The modes of events.c that need no argument.
const MODES: [&str; 9] = [
    "eventfd", "epoll", "socket", "errors", "memfd", "timerfd", "scm", "signalfd", "pidfd",
];

#[test]
fn events_match_native() {
    for (cc, prog) in kvm_guests("events_match_native", "events") {
        for mode in MODES {
            let n = native(&prog, &[mode]);
            assert_eq!(n.status, 0, "{cc} {mode} natively:\n{}", n.stdout);
            for cpus in [1, 2] {
                let l = guest(&prog, &[mode], cpus).root(host_root());
                let r = vk_watched(&what(&prog, &[mode], cpus), 120, l);
                assert_eq!(r.out().shown(), n.shown(), "{cc} {mode} on {cpus} vCPUs");
            }
        }
    }
}

/// The modes of events.c that work in a directory: named sockets (paths
/// and abstract names) and inotify.
#[test]
fn named_sockets_and_inotify_match_native() {
    let test = "named_sockets_and_inotify_match_native";
    for (cc, prog) in kvm_guests(test, "events") {
        for mode in ["unix", "inotify"] {
            // Each run works in a fresh directory (natively on the host;
            // under vkernel in the overlay above it, so the host stays
            // clean).
            let d = scratch(test).display().to_string();
            let n = native(&prog, &[mode, &d]);
            assert_eq!(n.status, 0, "{cc} {mode} natively:\n{}", n.stdout);
            for cpus in [1, 2] {
                let dir = scratch(test);
                let args = [mode, dir.to_str().unwrap()];
                let l = guest(&prog, &args, cpus).root(host_root());
                let r = vk_watched(&what(&prog, &args, cpus), 120, l);
                assert_eq!(r.out().shown(), n.shown(), "{cc} {mode} on {cpus} vCPUs");
                assert!(
                    std::fs::read_dir(&dir).unwrap().next().is_none(),
                    "what the vproc made stays in the overlay"
                );
            }
        }
    }
}

/// Python's event loops and servers over Unix sockets (asyncio's Unix
/// server and client and create_subprocess_exec, socketserver, selectors,
/// multiprocessing.Pool, a datagram socketpair) print what they print
/// natively, on two vCPUs.
#[test]
fn python_programs_that_talk_match_native() {
    let test = "python_programs_that_talk_match_native";
    let Some(py) = common::kvm_tool(test, "/usr/bin/python3", " (apt-get install python3)") else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/talk.py");
    let n = native(&py, &[script]);
    assert_eq!(n.status, 0, "natively:\n{}{}", n.stdout, n.stderr);
    let l = guest(&py, &[script], 2).root(host_root());
    let r = vk_watched(&what(&py, &[script], 2), 240, l);
    assert_eq!(r.out().shown(), n.shown(), "stderr: {}", r.stderr);
}
