//! `/proc` as tools read it (issue 23, part): busybox `ps` lists a known
//! tree of processes with their parents, states and arguments; `top -bn1`
//! and `uptime` run; `/proc/PID/cmdline` and `stat` of another process,
//! `/proc/uptime`, `loadavg`, `stat` and `cpuinfo` say what the virtual
//! kernel is (its vCPUs, its uptime).

mod common;

use common::{guest, host_root, kvm_busybox, vk_watched};

/// `script` run by busybox sh on `cpus` vCPUs (the host's root, for
/// /proc/cpuinfo's source and busybox's applets): its stdout.
fn sh(bb: &std::path::Path, script: &str, cpus: usize) -> String {
    let r = vk_watched(
        script,
        120,
        guest(bb, &["sh", "-c", script], cpus).root(host_root()),
    );
    assert_eq!(r.status(), 0, "{script}: {}{}", r.stdout, r.stderr);
    r.stdout
}

#[test]
fn ps_lists_the_process_tree() {
    let Some(bb) = kvm_busybox("ps_lists_the_process_tree") else {
        return;
    };
    let out = sh(
        &bb,
        "sleep 5 & sleep 6 & sleep 0.3; echo me $$; busybox ps -o pid,ppid,stat,args; kill %1 %2",
        2,
    );
    let me: i32 = out
        .lines()
        .find_map(|l| l.strip_prefix("me "))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {out}"));
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|l| !l.starts_with("PID"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let child = |args: &str| {
        rows.iter()
            .find(|r| r.len() >= 4 && r[3..].join(" ") == args)
            .unwrap_or_else(|| panic!("no `{args}` in {out}"))
    };
    for sleeper in ["sleep 5", "sleep 6"] {
        let r = child(sleeper);
        assert_eq!(r[1], me.to_string(), "{sleeper}'s parent: {out}");
        assert!(r[2].starts_with('S'), "{sleeper} sleeps: {out}");
    }
    assert!(
        rows.iter()
            .any(|r| r.first() == Some(&me.to_string().as_str())),
        "the shell is listed: {out}"
    );
}

#[test]
fn proc_files_describe_the_vkernel() {
    let Some(bb) = kvm_busybox("proc_files_describe_the_vkernel") else {
        return;
    };
    let out = sh(
        &bb,
        "sleep 7 & sleep 0.2; tr '\\0' ' ' < /proc/$!/cmdline; echo; cut -d' ' -f2,3,4 /proc/$!/stat; \
         cat /proc/uptime /proc/loadavg; grep -c '^cpu' /proc/stat; grep -c ^processor /proc/cpuinfo; \
         kill $!",
        2,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "sleep 7 ", "{out}");
    assert!(lines[1].starts_with("(sleep) S "), "{out}");
    let up: Vec<f64> = lines[2]
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(up.len() == 2 && up[0] > 0.0 && up[0] < 60.0, "uptime {out}");
    let load: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(load.len(), 5, "loadavg {out}");
    assert!(load[3].contains('/'), "loadavg {out}");
    // cpu, cpu0, cpu1; two processors.
    assert_eq!(lines[4], "3", "{out}");
    assert_eq!(lines[5], "2", "{out}");
}

#[test]
fn top_and_uptime_run() {
    let Some(bb) = kvm_busybox("top_and_uptime_run") else {
        return;
    };
    let out = sh(&bb, "busybox top -bn1; busybox uptime", 1);
    assert!(out.contains("PID"), "{out}");
    assert!(out.contains("load average"), "{out}");
}

/// /proc of another process (tests/guests/procpid.sh under /bin/sh): a
/// sleeping child's environ, limits, exe and cwd links, fd/ and fdinfo/,
/// task/, maps naming the program and libc; the caller's status signal
/// lines; `ps -o comm` of the caller and the child, and `lsof -p` of the
/// child; as natively.
#[test]
fn other_processes_in_proc_match_native() {
    let test = "other_processes_in_proc_match_native";
    let Some(sh) = common::kvm_tool(test, "/bin/sh", "") else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/procpid.sh");
    let dir = common::scratch(test);
    let n = common::Native::new(&sh)
        .args([script])
        .env([common::PATH_BIN])
        .cwd(&dir)
        .run();
    assert_eq!(n.status, 0, "natively:\n{}{}", n.stdout, n.stderr);
    use std::os::unix::ffi::OsStrExt;
    let l = common::guest(&sh, &[script], 2)
        .root(common::host_root())
        .env([common::PATH_BIN])
        .cwd(dir.as_os_str().as_bytes());
    let r = common::vk_watched(&common::what(&sh, &[script], 2), 120, l);
    assert_eq!(r.out().shown(), n.shown(), "stderr: {}", r.stderr);
}

/// Listing /proc/self/fd while closing the fds listed (CPython's close_fds
/// fallback, tests/guests/closefds.py): positions are fd numbers, as on
/// Linux, so no fd after a closed one is skipped; the child of
/// `subprocess` with pass_fds sees only 0-2, the kept fd and its own.
#[test]
fn closing_fds_while_listing_them_skips_none() {
    let test = "closing_fds_while_listing_them_skips_none";
    let Some(py) = common::kvm_tool(test, "/usr/bin/python3", " (apt-get install python3)") else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/closefds.py");
    let n = common::native(&py, &[script]);
    assert_eq!(n.status, 0, "natively:\n{}", n.stdout);
    let r = common::vk_watched(
        &common::what(&py, &[script], 1),
        120,
        common::guest(&py, &[script], 1).root(common::host_root()),
    );
    assert_eq!(r.out().shown(), n.shown(), "stderr: {}", r.stderr);
}
