//! Exitless syscalls in the Linux personality (`linux::kernel::fast`): a
//! program mixing served calls (ids, clocks) with exit-path calls, a fork
//! and an interval timer matches native output with the server on and off,
//! and with it on the served calls cost no VM exit.

use vkernel::linux;

mod common;

use common::{compile, compilers, have_kvm};

use std::path::Path;
use std::process::Command;

use vkernel::core::prelude::*;

use linux::fs::Fs;
use linux::kernel::{self, Options, Report};
use linux::stdio::BufferStdio;
use linux::{Config, Vproc};

fn vk(prog: &Path, args: &[&str], exitless: bool, cpus: usize) -> (String, Report, u64) {
    vk_opts(prog, args, exitless, true, cpus)
}

fn vk_opts(
    prog: &Path,
    args: &[&str],
    exitless: bool,
    patch_syscalls: bool,
    cpus: usize,
) -> (String, Report, u64) {
    let prog = prog.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let machine = Machine::builder()
            .ram_size(256 << 20)
            .vcpus(cpus)
            .exitless(exitless)
            .build()
            .expect("a machine on /dev/kvm");
        let stdio = BufferStdio::new(b"");
        let out = stdio.stdout.clone();
        let path = prog.display().to_string();
        let mut argv = vec![path.clone().into_bytes()];
        argv.extend(args.iter().map(|a| a.as_bytes().to_vec()));
        let cfg = Config {
            image: std::fs::read(&prog).unwrap(),
            path: path.clone(),
            exe: path,
            argv,
            envp: Vec::new(),
            fault_around: 16,
            trace: false,
        };
        let vp = Vproc::load(&machine, cfg, Fs::empty(), Box::new(stdio)).unwrap();
        let opts = Options {
            cpus,
            exitless,
            patch_syscalls,
            ..Default::default()
        };
        let report = kernel::run(&machine, vp, &opts).expect("the virtual kernel runs");
        let served = machine.exitless_stats().served;
        let stdout = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
        let _ = tx.send((stdout, report, served));
    });
    rx.recv_timeout(std::time::Duration::from_secs(180))
        .expect("no result in 180 s (a hang, or a panic above)")
}

#[test]
fn served_calls_match_native_and_cost_no_exit() {
    let test = "served_calls_match_native_and_cost_no_exit";
    if !have_kvm(test) {
        return;
    }
    for cc in compilers() {
        let Some(prog) = compile(test, "exitless", cc) else {
            return;
        };
        let n = "20000";
        let native = Command::new(&prog).arg(n).output().unwrap();
        let want = String::from_utf8_lossy(&native.stdout).into_owned();
        assert!(native.status.success(), "native: {want}");
        for cpus in [1, 2] {
            for exitless in [true, false] {
                let (out, report, served) = vk(&prog, &[n], exitless, cpus);
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
    let test = "patched_sites_match_native_with_threads_fork_and_gs";
    if !have_kvm(test) {
        return;
    }
    for cc in compilers() {
        let Some(prog) = compile(test, "patching", cc) else {
            return;
        };
        let n = "5000";
        let native = Command::new(&prog).arg(n).output().unwrap();
        let want = String::from_utf8_lossy(&native.stdout).into_owned();
        assert!(native.status.success(), "native: {want}");
        assert!(want.contains("gs base is ours: 1"), "native: {want}");
        for cpus in [1, 2] {
            for (exitless, patch) in [(true, true), (true, false), (false, true)] {
                let (out, report, served) = vk_opts(&prog, &[n], exitless, patch, cpus);
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
                    assert!(report.patched_sites > 0, "{what}: nothing patched");
                    assert!(served > 0, "{what}: nothing served");
                } else {
                    assert_eq!(report.patched_sites, 0, "{what}");
                }
            }
        }
        // Only under the vkernel: the stub pages are named in the maps.
        let (out, _, _) = vk_opts(&prog, &[n, "maps"], true, true, 1);
        assert!(out.contains("stub pages in maps: 1"), "{cc}: {out}");
    }
}
