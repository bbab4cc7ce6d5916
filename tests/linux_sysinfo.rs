//! What programs ask about their machine and children (issue 23, part):
//! `tests/guests/sysinfo.c` prints the same natively and under vkernel
//! (on as many vCPUs as the host gives this process): sched_getaffinity
//! counts the vCPUs, getcpu names one, statvfs gives the overlay's size,
//! preadv/pwritev and their 2 forms, and waitid in each of its modes.
//! busybox's `nproc` and `df` see the same.

mod common;

use common::{guest, kvm_busybox, kvm_guests, native, scratch, vk_watched, what};

/// The host's CPUs for this process (what sched_getaffinity counts).
fn host_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn sysinfo_matches_native() {
    let test = "sysinfo_matches_native";
    let cpus = host_cpus();
    for (cc, prog) in kvm_guests(test, "sysinfo") {
        let n_arg = cpus.to_string();
        let d = scratch(test);
        let args = [n_arg.as_str(), d.to_str().unwrap()];
        let n = native(&prog, &args);
        assert_eq!(n.status, 0, "{cc} natively:\n{}", n.stdout);
        let args = [n_arg.as_str(), "/tmp"];
        let r = vk_watched(&what(&prog, &args, cpus), 120, guest(&prog, &args, cpus));
        assert_eq!(r.out().shown(), n.shown(), "{cc} on {cpus} vCPUs");
    }
}

/// The calls issue 23's ENOSYS list lost last (docs/SYSCALLS.md):
/// mincore, sched_setattr/sched_getattr, fchmodat2, setfsuid/setfsgid.
/// The real-time part runs where the host lets the native run use
/// SCHED_RR (root outside an RT-starved cgroup).
#[test]
fn more_calls_match_native() {
    let test = "more_calls_match_native";
    for (cc, prog) in kvm_guests(test, "morecalls") {
        let d = scratch(test);
        let dir = d.to_str().unwrap();
        let mut n = native(&prog, &["rt", dir]);
        let rt = !n.stdout.contains("setattr rr 12 -1\n");
        if !rt {
            eprintln!("{test}: no SCHED_RR natively here; comparing the fair part only");
            n = native(&prog, &[dir]);
        }
        assert_eq!(n.status, 0, "{cc} natively:\n{}", n.stdout);
        let args: Vec<&str> = if rt { vec!["rt", "/tmp"] } else { vec!["/tmp"] };
        let r = vk_watched(&what(&prog, &args, 1), 120, guest(&prog, &args, 1));
        assert_eq!(r.out().shown(), n.shown(), "{cc}");
    }
}

/// prctl's options (tests/guests/prctl.c): defaults, set and get, the
/// argument checks, the name in /proc/self/comm, what a fork child
/// inherits and what execve resets.
#[test]
fn prctl_matches_native() {
    let test = "prctl_matches_native";
    for (cc, prog) in kvm_guests(test, "prctl") {
        let n = native(&prog, &[]);
        assert_eq!(n.status, 0, "{cc} natively:\n{}", n.stdout);
        let r = vk_watched(&what(&prog, &[], 1), 120, guest(&prog, &[], 1));
        assert_eq!(r.out().shown(), n.shown(), "{cc}");
    }
}

#[test]
fn busybox_nproc_and_df_see_the_vkernel() {
    let test = "busybox_nproc_and_df_see_the_vkernel";
    let Some(bb) = kvm_busybox(test) else {
        return;
    };
    let r = vk_watched("nproc", 60, guest(&bb, &["nproc"], 2));
    assert_eq!(r.out().shown(), ("2\n", 0));
    let r = vk_watched("df", 60, guest(&bb, &["df", "-k", "/tmp"], 1));
    assert_eq!(r.status(), 0, "{}", r.stderr);
    let line = r.stdout.lines().nth(1).unwrap_or_default().to_string();
    let size: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(size > 0, "df shows a size: {}", r.stdout);
}

/// sethostname changes the virtual kernel's own host name (uname, every
/// process of it) and never the host's.
#[test]
fn hostname_is_the_vkernels_own() {
    let test = "hostname_is_the_vkernels_own";
    let Some(bb) = kvm_busybox(test) else {
        return;
    };
    let before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let script = "hostname; hostname box1; hostname; sh -c 'uname -n'";
    let r = vk_watched(script, 60, guest(&bb, &["sh", "-c", script], 1));
    assert_eq!(r.out().shown(), ("vkernel\nbox1\nbox1\n", 0));
    let after = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    assert_eq!(before, after, "the host's name did not change");
}
