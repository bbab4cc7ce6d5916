//! File locks between vprocs (item 3 of the reliability issue): fcntl
//! record locks, OFD locks and flock(2), compared with the same program
//! run natively (musl and glibc, 1 and 2 vCPUs), and a `flock(1)`-guarded
//! shell counter under the `vkernel` example. Tests SKIP loudly without
//! /dev/kvm (and per compiler or tool when one is missing).

mod common;

use common::{have_kvm, native, Run};

use std::path::Path;
use std::process::{Command, Stdio};

/// Run `prog args` as the first vproc of a virtual kernel (an empty tree:
/// `/tmp` in memory), in a thread of its own: a hang fails the test after
/// a generous timeout instead of stalling the suite.
fn vk(prog: &Path, args: &[&str], cpus: usize) -> Run {
    let l = common::guest(prog, args, cpus).tick(std::time::Duration::from_millis(4));
    common::vk_watched(&common::what(prog, args, cpus), 300, l)
}

/// Compare each `locks CHECK` of `checks` (`CHECK:CPUS,...` words) with
/// native for every compiler, on each vCPU count of its list.
fn compare(test: &str, checks: &str) {
    for (cc, p) in common::kvm_guests(test, "locks") {
        for word in checks.split_whitespace() {
            let (check, cpus) = word.split_once(':').expect("CHECK:CPUS");
            let cpus_list: Vec<usize> = cpus.split(',').map(|c| c.parse().unwrap()).collect();
            let n = native(&p, &[check]);
            common::assert_same_as(&format!("locks {check} ({cc})"), &n, &cpus_list, |cpus| {
                vk(&p, &[check], cpus)
            });
        }
    }
}

/// The counter: 4 processes x 300 increments of a number in a file, each
/// under an F_SETLKW write lock, make 1,200 (also with OFD locks and
/// flock, 4 x 100 each), on 1 and 2 vCPUs.
#[test]
fn linux_locks_counter_is_exact() {
    compare(
        "linux_locks_counter_is_exact",
        "counter:1,2 counter-ofd:2 counter-flock:2",
    );
}

/// F_GETLK reports the holder (type, range, l_pid), ranges split, merge
/// and convert, SEEK_CUR/SEEK_END bases and negative lengths; the errors
/// (EBADF for the access mode and O_PATH, EINVAL, EOVERFLOW, EFAULT,
/// flock(LOCK_NB) alone).
#[test]
fn linux_locks_getlk_and_errors_match_native() {
    compare(
        "linux_locks_getlk_and_errors_match_native",
        "getlk:1 errors:1",
    );
}

/// POSIX locks go on any close of any fd of the file by the process (and
/// dup2 over one), are not inherited by fork; OFD locks belong to the
/// open file description (dup and fork share them, the last close frees
/// them) and conflict with POSIX locks; flock locks likewise, converted
/// non-atomically, and independent of fcntl locks; pipes take locks too;
/// threads of a process share its POSIX locks (one owner, and a close in
/// any thread releases them).
#[test]
fn linux_locks_owners_match_native() {
    compare(
        "linux_locks_owners_match_native",
        "close:1 ofd:1 flock:1,2 pipe:1 threads:2",
    );
}

/// Blocking waits: a blocked locker gets the lock when it is released
/// (POSIX, OFD, flock), a cycle of two processes is EDEADLK for one, and
/// SIGALRM interrupts F_SETLKW, F_OFD_SETLKW and flock with EINTR (and
/// restarts them with SA_RESTART), on 1 and 2 vCPUs.
#[test]
fn linux_locks_waits_match_native() {
    compare(
        "linux_locks_waits_match_native",
        "wait:1,2 deadlock:1,2 signal:1,2",
    );
}

/// The shell counter: `flock(1)` (util-linux, dynamically linked,
/// from the host's read-only tree) guards a read-increment-write of a file
/// in /tmp; 3 background loops x 10 make 30, on 2 vCPUs.
#[test]
fn linux_locks_flock_tool_counter() {
    let test = "linux_locks_flock_tool_counter";
    if !have_kvm(test) {
        return;
    }
    for tool in ["/bin/sh", "/usr/bin/flock", "/bin/cat"] {
        if !Path::new(tool).exists() {
            common::skip(test, &format!("{tool} not found (util-linux, coreutils)"));
            return;
        }
    }
    let script = "echo 0 > /tmp/c; for p in 1 2 3; do ( i=0; while [ $i -lt 10 ]; do \
         flock /tmp/c.lock sh -c 'n=$(cat /tmp/c); echo $((n+1)) > /tmp/c'; i=$((i+1)); \
         done ) & done; wait; cat /tmp/c";
    let o = Command::new(common::example_binary("vkernel"))
        .args(["run", "--cpus", "2", "/bin/sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "vkernel run: {}; stderr {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        out.trim(),
        "30",
        "stderr {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
