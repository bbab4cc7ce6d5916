//! Calls that wait, in the `vkernel` example's Linux personality: pipes
//! that fill, poll/select, timers, pause/sigsuspend, futex timeouts,
//! sendfile, stop/continue, and sleepers next to CPU-bound vprocs. Each
//! compares with the same program run natively, and every run asserts that
//! the lost-wake-up watchdog never had to fire. Tests SKIP loudly without
//! /dev/kvm (and per compiler when one is missing).

mod common;

use common::{busybox_image, image_root, native, program, Run, PATH_BIN};

use std::path::Path;

use vkernel::linux::kernel::Options;

/// Run `prog args` as the first vproc of a virtual kernel, in a thread of
/// its own: a run that hangs fails the test after a generous timeout
/// instead of stalling the suite.
fn vk(prog: &Path, args: &[&str], disk: Option<&Path>, opts: &Options) -> Run {
    let mut l = program(prog)
        .args(args)
        .env([PATH_BIN])
        .options(opts.clone());
    if let Some(d) = disk {
        l = l.root(image_root(d));
    }
    common::vk_watched(&common::what(prog, args, opts.cpus), 180, l)
}

fn opts(cpus: usize, tick_ms: u64) -> Options {
    Options {
        cpus,
        tick: std::time::Duration::from_millis(tick_ms),
        ..Options::default()
    }
}

/// Items 2, 4, 5, 9, 10 of the reliability issue: the waits.c checks
/// print what they print natively, on 1 and 2 vCPUs, musl and glibc.
#[test]
fn linux_waits_match_native() {
    for (cc, p) in common::kvm_guests("linux_waits_match_native", "waits") {
        let n = native(&p, &[]);
        common::assert_same_as(&format!("waits ({cc})"), &n, &[1, 2], |cpus| {
            vk(&p, &[], None, &opts(cpus, 4))
        });
    }
}

/// Item 4: timers fire into a vproc that never makes a syscall.
#[test]
fn linux_timers_kill_spinning_vprocs() {
    let Some(p) = common::kvm_guest("linux_timers_kill_spinning_vprocs", "waits", "musl-gcc")
    else {
        return;
    };
    for (arg, want) in [("alarm-exit", 142), ("vtalarm-exit", 154)] {
        assert_eq!(native(&p, &[arg]).status, want, "native {arg}");
        for cpus in [1, 2] {
            let r = vk(&p, &[arg], None, &opts(cpus, 4));
            assert_eq!(r.report.status.code(), want, "{arg} on {cpus} vCPUs");
        }
    }
}

/// Item 3: sleepers wake while CPU-bound vprocs hold every vCPU.
#[test]
fn linux_sleepers_wake_beside_spinners() {
    let test = "linux_sleepers_wake_beside_spinners";
    let Some(bb) = common::kvm_busybox(test) else {
        return;
    };
    let cases: [(&[&str], usize); 3] = [
        (
            &[
                "sh",
                "-c",
                "(while :; do :; done) & busybox sleep 1; kill $!; echo done",
            ],
            1,
        ),
        (
            &[
                "sh",
                "-c",
                "(while :; do :; done) & a=$!; (while :; do :; done) & b=$!; busybox sleep 1; kill $a $b; echo done",
            ],
            2,
        ),
        (
            &["timeout", "1", "/bin/busybox", "sh", "-c", "while :; do :; done"],
            1,
        ),
    ];
    let image = busybox_image(test, &bb);
    for (args, cpus) in cases {
        let n = native(&bb, args);
        let r = vk(&bb, args, Some(&image), &opts(cpus, 4));
        assert_eq!(
            (r.stdout.as_str(), r.report.status.code()),
            n.shown(),
            "{args:?} on {cpus} vCPUs; stderr {}",
            r.stderr
        );
    }
}

/// Items 1 and 10: sendfile through pipes (busybox cat) loses nothing, and
/// a stopped and continued child exits normally.
#[test]
fn linux_pipelines_lose_nothing() {
    let Some((bb, image)) = common::kvm_busybox_image("linux_pipelines_lose_nothing") else {
        return;
    };
    let size = std::fs::metadata(&bb).unwrap().len();
    let cases: [(&[&str], String); 3] = [
        (
            &[
                "sh",
                "-c",
                "busybox seq 300000 | busybox cat | busybox wc -l",
            ],
            "300000\n".into(),
        ),
        (
            &["sh", "-c", "busybox cat /bin/busybox | busybox wc -c"],
            format!("{size}\n"),
        ),
        (
            &[
                "sh",
                "-c",
                "busybox sleep 1 & p=$!; kill -STOP $p; kill -CONT $p; wait $p; echo $?",
            ],
            "0\n".into(),
        ),
    ];
    for (args, want) in &cases {
        for cpus in [1, 2] {
            let r = vk(&bb, args, Some(&image), &opts(cpus, 4));
            assert_eq!(
                r.stdout,
                *want,
                "{args:?} on {cpus} vCPUs; stderr {}; deaths {:?}",
                r.stderr,
                r.report
                    .procs
                    .iter()
                    .filter_map(|p| p.death.as_ref().map(|d| (p.pid, &p.comm, d)))
                    .collect::<Vec<_>>()
            );
            assert_eq!(r.report.status.code(), 0);
        }
    }
}

/// Item 18: pipelines at a 1 ms tick on 2 vCPUs never need the watchdog
/// (`vk` asserts `lost_wakeups == 0` on every run). VKERNEL_STRESS_RUNS
/// runs more (the closing note's figure used several hundred).
#[test]
fn linux_pipeline_stress_loses_no_wakeup() {
    let Some(bb) = common::kvm_busybox("linux_pipeline_stress_loses_no_wakeup") else {
        return;
    };
    let runs: usize = std::env::var("VKERNEL_STRESS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let args = [
        "sh",
        "-c",
        "busybox seq 2000 | busybox grep 7 | busybox sort -r | busybox head -3; \
         echo a b c | busybox wc -w",
    ];
    let n_out = native(&bb, &args).stdout;
    for i in 0..runs {
        let r = vk(&bb, &args, None, &opts(1 + i % 2, 1));
        assert_eq!(r.stdout, n_out, "run {i}; stderr {}", r.stderr);
    }
}
