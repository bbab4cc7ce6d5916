//! Exitless syscalls in the Linux personality (`linux::kernel::fast`): a
//! program mixing served calls (ids, clocks) with exit-path calls, a fork
//! and an interval timer matches native output with the server on and off,
//! and with it on the served calls cost no VM exit; a program using the
//! file, pipe, device, memory and signal-mask calls the server answers
//! (pipes between processes and threads on 2 vCPUs, blocked readers and
//! writers woken by served calls) matches native too, and each family of
//! those calls is answered by the server.

mod common;

use std::path::Path;
use std::sync::Arc;

use vkernel::linux;

use linux::fs::{Bind, Fs, RootSpec};
use linux::kernel::{Options, Report};
use linux::launch::Launch;

/// The tests here measure what the server answers: one at a time, so that
/// they do not take the host's cores from each other's servers.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `prog args` under a virtual kernel (`/tmp` in memory; `bind`: a
/// host directory shown read-write at `/host`): its stdout, report and
/// the count of calls the exitless server answered.
fn vk(
    prog: &Path,
    args: &[&str],
    exitless: bool,
    cpus: usize,
    bind: Option<&Path>,
) -> (String, Report, u64) {
    vk_opts(prog, args, exitless, true, cpus, bind)
}

/// [`vk`], with syscall patching on or off.
fn vk_opts(
    prog: &Path,
    args: &[&str],
    exitless: bool,
    patch_syscalls: bool,
    cpus: usize,
    bind: Option<&Path>,
) -> (String, Report, u64) {
    let binds: Vec<Bind> = bind
        .map(|h| Bind {
            host: h.to_path_buf(),
            guest: b"/host".to_vec(),
            writable: true,
        })
        .into_iter()
        .collect();
    let fs = Fs::new(RootSpec::Empty, &binds).expect("the tree with the bind");
    let l = Launch::bytes(std::fs::read(prog).unwrap(), prog.display().to_string())
        .args(args)
        .ram(256 << 20)
        .root(Arc::new(fs))
        .options(Options {
            cpus,
            exitless,
            patch_syscalls,
            ..Default::default()
        });
    common::in_time("the virtual kernel", 180, move || {
        let machine = l.machine().expect("a machine on /dev/kvm");
        let r = common::try_vk_on(&machine, l, b"").expect("the virtual kernel runs");
        (r.stdout, r.report, machine.exitless_stats().served)
    })
}

#[test]
fn served_calls_match_native_and_cost_no_exit() {
    let test = "served_calls_match_native_and_cost_no_exit";
    let _one = serial();
    for (cc, prog) in common::kvm_guests(test, "exitless") {
        let n = "20000";
        let want = common::native_stdout(cc, &prog, &[n]);
        for cpus in [1, 2] {
            for exitless in [true, false] {
                let (out, report, served) = vk(&prog, &[n], exitless, cpus, None);
                assert_eq!(out, want, "{cc}, {cpus} vCPUs, exitless {exitless}");
                assert_eq!(report.status.code(), 0);
                let exits: u64 = report.cpu_stats.iter().map(|s| s.exits).sum();
                let syscalls: u64 = report.cpu_stats.iter().map(|s| s.syscalls).sum();
                eprintln!(
                    "{test}: {cc}, {cpus} vCPUs, exitless {exitless}: {served} served, \
                     {syscalls} syscalls on the exit path, {exits} VM exits"
                );
                if exitless {
                    // The loops make 6 calls per iteration; the server
                    // answers what it can (all of them on an idle host).
                    assert!(served > 0, "nothing served");
                    // Served calls never reach the vCPU thread.
                    assert!(syscalls + served >= 150_000 / 2);
                } else {
                    assert_eq!(served, 0);
                }
            }
        }
    }
}

/// Syscall patching (`linux::mm::patch`): with it, served calls from four
/// threads, a forked child and a program that later takes GS for itself
/// give native results, sites get patched, and the calls cost neither an
/// exit nor the `syscall` instruction; off, or without a server, the same
/// output.
#[test]
fn patched_sites_match_native_with_threads_fork_and_gs() {
    let (test, n) = (
        "patched_sites_match_native_with_threads_fork_and_gs",
        "5000",
    );
    let _one = serial();
    for (cc, prog) in common::kvm_guests(test, "patching") {
        let want = common::native_stdout(cc, &prog, &[n]);
        assert!(want.contains("gs base is ours: 1"), "native: {want}");
        for cpus in [1, 2] {
            for (exitless, patch) in [(true, true), (true, false), (false, true)] {
                let (out, report, served) = vk_opts(&prog, &[n], exitless, patch, cpus, None);
                let what = format!(
                    "{cc}, {cpus} vCPUs, exitless {exitless}, patching {patch} (status {:?}, {:?})",
                    report.status, report.death
                );
                assert_eq!(out, want, "{what}");
                assert_eq!(report.status.code(), 0, "{what}");
                let syscalls: u64 = report.cpu_stats.iter().map(|s| s.syscalls).sum();
                eprintln!(
                    "{test}: {what}: {} sites patched, {served} served, {syscalls} syscalls \
                     on the exit path",
                    report.patched_sites
                );
                if exitless && patch {
                    // Deterministic, whatever the load: a patchable site's
                    // first call takes the exit path (the server sends it
                    // there if it is awake), which patches it.
                    assert!(report.patched_sites > 0, "{what}: nothing patched");
                } else {
                    assert_eq!(report.patched_sites, 0, "{what}");
                }
            }
        }
        // Only under the vkernel: the stub pages are named in the maps.
        let (out, _, _) = vk_opts(&prog, &[n, "maps"], true, true, 1, None);
        assert!(out.contains("stub pages in maps: 1"), "{cc}: {out}");
    }
}

#[test]
fn served_fd_mem_and_signal_calls_match_native() {
    let test = "served_fd_mem_and_signal_calls_match_native";
    let _one = serial();
    for (cc, prog) in common::kvm_guests(test, "exitless_io") {
        let (d1, d2) = (common::scratch(test), common::scratch(test));
        let args = ["all", d1.to_str().unwrap(), d2.to_str().unwrap()];
        let want = common::native_stdout(cc, &prog, &args);
        assert!(want.contains("failures: 0"), "native ({cc}): {want}");
        let mut served_all = 0;
        for cpus in [1, 2] {
            for exitless in [true, false] {
                let host = common::scratch(test);
                let (out, report, served) = vk(
                    &prog,
                    &["all", "/host", "/tmp"],
                    exitless,
                    cpus,
                    Some(&host),
                );
                let what = format!("{cc}, {cpus} vCPUs, exitless {exitless}");
                assert_eq!(out, want, "{what}");
                assert_eq!(report.status.code(), 0, "{what}");
                let syscalls: u64 = report.cpu_stats.iter().map(|s| s.syscalls).sum();
                eprintln!("{test}: {what}: {served} served, {syscalls} on the exit path");
                if !exitless {
                    assert_eq!(served, 0, "{what}");
                }
                served_all += served;
            }
        }
        // On a busy host one run may see its server starved; each family
        // is checked in `server_answers_each_family_without_exits`.
        assert!(served_all > 0, "{cc}: nothing served");
    }
}

/// Each family of calls the server answers (writes to /dev/null, reads of
/// /dev/zero, pread/pwrite/lseek/fstat on a host file, a pipe written
/// and read by one process, send/recv/read/write on a stream socketpair,
/// epoll_wait with a ready item, brk, rt_sigprocmask, dup/dup2/dup3/fcntl/
/// close, openat for reading and close, flock and fcntl record locks that
/// complete at once, rt_sigaction, kill and tgkill of another process,
/// prctl's PR_SET_NAME and PR_GET_NAME, readlink of /proc/self/exe,
/// access, stat and open of files that do not exist (ENOENT),
/// wait4 with WNOHANG and of zombies, getrusage, sched_yield,
/// rt_sigprocmask beside a second thread):
/// 10,000 calls of it cost
/// far fewer than 10,000 exits. The server is a host thread: on a busy
/// host it may not run while a call waits, and the call exits, so a family
/// passes when one of several runs shows it (no timing is asserted).
#[test]
fn server_answers_each_family_without_exits() {
    let test = "server_answers_each_family_without_exits";
    let _one = serial();
    let cc = common::compilers()[0];
    let Some(prog) = common::kvm_guest(test, "exitless_io", cc) else {
        return;
    };
    let calls = 10_000u64;
    let n = calls.to_string();
    for family in [
        "null",
        "zero",
        "file",
        "pipe",
        "sock",
        "epoll",
        "mem",
        "map",
        "sig",
        "fd",
        "open",
        "lock",
        "sigaction",
        "kill",
        "name",
        "link",
        "probe",
        "wait",
        "rusage",
        "yield",
        "sigthr",
    ] {
        let mut seen = Vec::new();
        let ok = (0..20).any(|_| {
            let host = common::scratch(test);
            let (out, report, served) =
                vk(&prog, &["loop", family, &n, "/host"], true, 1, Some(&host));
            assert_eq!(out, format!("{family}: {calls} calls\n"), "{family}");
            assert_eq!(report.status.code(), 0, "{family}");
            let syscalls: u64 = report.cpu_stats.iter().map(|s| s.syscalls).sum();
            seen.push((served, syscalls));
            served >= calls / 2 && syscalls < calls / 2
        });
        eprintln!("{test}: {family}: (served, exit-path syscalls) per run: {seen:?}");
        assert!(
            ok,
            "{family}: the server answered too few of {calls} calls in every run: {seen:?}"
        );
    }
}

/// A site of a call the server does not serve is rewritten too (at its
/// third call): through the patched entry the call leaves by the
/// trampoline's own exit instead of executing `syscall`. 2,000 getpgid
/// calls from one site still all take the exit path, the site is
/// patched, and the answers are native's, with patching on and off.
#[test]
fn unserved_call_sites_are_rewritten_and_still_exit() {
    let test = "unserved_call_sites_are_rewritten_and_still_exit";
    let _one = serial();
    let cc = common::compilers()[0];
    let Some(prog) = common::kvm_guest(test, "exitless_io", cc) else {
        return;
    };
    let want = common::native_stdout(cc, &prog, &["loop", "unserved", "2000", "/tmp"]);
    assert_eq!(want, "unserved: 2000 calls\n");
    let mut patched = Vec::new();
    for patch in [true, false] {
        let (out, report, _) = vk_opts(
            &prog,
            &["loop", "unserved", "2000", "/tmp"],
            true,
            patch,
            1,
            None,
        );
        assert_eq!(out, want, "patching {patch}");
        assert_eq!(report.status.code(), 0, "patching {patch}");
        let exits: u64 = report.cpu_stats.iter().map(|s| s.syscalls).sum();
        assert!(
            exits >= 2000,
            "patching {patch}: {exits} calls through exits"
        );
        patched.push(report.patched_sites);
        // From the third call on, through the rewritten site.
        let rewritten = report.exit_calls_rewritten;
        assert!(
            if patch {
                rewritten >= 1990
            } else {
                rewritten == 0
            },
            "patching {patch}: {rewritten} exit-path calls from rewritten sites"
        );
    }
    eprintln!("{test}: sites patched with patching on and off: {patched:?}");
    assert!(patched[0] >= 1 && patched[1] == 0, "{patched:?}");
}
