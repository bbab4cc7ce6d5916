//! Calls of issue 23 against native: capget's version probe, sched_setaffinity (an empty mask refused, a
//! vCPU's taken) and execveat (by a path relative to a directory fd, and
//! by the program's own fd with AT_EMPTY_PATH) print the same natively
//! and under vkernel (`tests/guests/privs.c`, issue 23).

mod common;

use common::{guest, kvm_guests, native, vk_watched, what};

#[test]
fn privileged_calls_match_native() {
    for (cc, prog) in kvm_guests("privileged_calls_match_native", "privs") {
        let n = native(&prog, &[]);
        assert_eq!(n.status, 0, "{cc} natively:\n{}", n.stdout);
        let r = vk_watched(
            &what(&prog, &[], 1),
            60,
            guest(&prog, &[], 1).root(common::host_root()),
        );
        assert_eq!(r.out().shown(), n.shown(), "{cc}: {}", r.stderr);
    }
}

/// Calls through the legacy vsyscall page (tests/guests/vsyscall.c) work
/// as natively (Linux's default emulates them): gettimeofday, time and
/// getcpu, returning to the caller.
#[test]
fn vsyscall_page_calls_match_native() {
    for (cc, prog) in kvm_guests("vsyscall_page_calls_match_native", "vsyscall") {
        let n = native(&prog, &[]);
        assert_eq!(n.status, 0, "{cc} natively:\n{}", n.stdout);
        let r = vk_watched(&what(&prog, &[], 1), 60, guest(&prog, &[], 1));
        assert_eq!(r.out().shown(), n.shown(), "{cc}: {}", r.stderr);
    }
}

/// splice (pipe to a file at an offset, a file from an offset to a
/// pipe), tee (a pipe's bytes copied, not consumed) and vmsplice, with
/// their errors, print the same as natively (tests/guests/splice.c).
#[test]
fn splice_tee_vmsplice_match_native() {
    for (cc, prog) in kvm_guests("splice_tee_vmsplice_match_native", "splice") {
        let n = native(&prog, &[]);
        assert_eq!(n.status, 0, "{cc} natively:\n{}", n.stdout);
        let r = vk_watched(&what(&prog, &[], 1), 60, guest(&prog, &[], 1));
        assert_eq!(r.out().shown(), n.shown(), "{cc}: {}", r.stderr);
    }
}

/// Privileged calls answer as for a root without capabilities (mount,
/// chroot, unshare of a namespace: EPERM; unshare(0): 0), mlock and
/// friends succeed over mapped memory and say ENOMEM over a hole,
/// personality is PER_LINUX and utime sets both times
/// (tests/guests/denied.c; natively CI runs as root, so there is no
/// native run to compare with: the expected lines are Linux's for a
/// process without capabilities).
#[test]
fn privileged_calls_are_denied_like_an_unprivileged_root() {
    for (cc, prog) in kvm_guests(
        "privileged_calls_are_denied_like_an_unprivileged_root",
        "denied",
    ) {
        let r = vk_watched(&what(&prog, &[], 1), 60, guest(&prog, &[], 1));
        assert_eq!(
            r.out().shown(),
            (
                "mount: -1 1\nchroot: -1 1\nunshare(0): 0 0\nunshare(NEWNET): -1 1\n\
                 mlock: 0 0\nmunlock: 0 0\nmlock unmapped: -1 12\nmlockall: 0 0\n\
                 munlockall: 0 0\npersonality: 0 0\nutime: 0 0\ntimes 1000 2000\n",
                0
            ),
            "{cc}: {}",
            r.stderr
        );
    }
}

/// Extended attributes in the overlay (tests/guests/xattr.py): user.* and
/// trusted.* set, read, listed and removed, XATTR_CREATE on an existing
/// one (EEXIST), a missing one (ENODATA), an unknown namespace
/// (EOPNOTSUPP), user.* on a symlink (EPERM), as natively.
#[test]
fn extended_attributes_match_native() {
    let test = "extended_attributes_match_native";
    let Some(py) = common::kvm_tool(test, "/usr/bin/python3", " (apt-get install python3)") else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/xattr.py");
    let n = native(&py, &[script]);
    assert_eq!(n.status, 0, "natively:\n{}", n.stdout);
    let r = vk_watched(
        &what(&py, &[script], 1),
        60,
        guest(&py, &[script], 1).root(common::host_root()),
    );
    assert_eq!(r.out().shown(), n.shown(), "{}", r.stderr);
}
