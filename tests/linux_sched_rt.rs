//! Real-time scheduling in the `vkernel` example's Linux personality:
//! SCHED_FIFO spinners are throttled (Linux's sched_rt_runtime_us of
//! sched_rt_period_us) so a normal process still runs; the scheduling
//! calls and their errnos; SCHED_FIFO yield order; a pipeline beside CPU
//! spinners completes. Compared with native runs where the host lets us
//! use SCHED_FIFO (root), else with the output Linux gives. Tests SKIP
//! loudly without /dev/kvm.

mod common;

use common::{have_kvm, image_root, native, program, Run, PATH_BIN};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vkernel::linux;

use linux::kernel::Options;
use linux::launch::{Launch, LaunchError};
use linux::stdio::BufferStdio;

/// Run `prog args` as the first vproc of a virtual kernel in a thread of
/// its own: a hang fails the test after 120 s instead of stalling.
fn vk(prog: &Path, args: &[&str], disk: Option<&Path>, opts: &Options) -> Run {
    let mut l = program(prog)
        .args(args)
        .env([PATH_BIN])
        .ram(256 << 20)
        .options(opts.clone());
    if let Some(d) = disk {
        l = l.root(image_root(d));
    }
    common::vk_in_time(&common::what(prog, args, opts.cpus), 120, l)
}

/// sched_rt.c built with musl-gcc, when /dev/kvm is there.
fn guest(test: &str) -> Option<PathBuf> {
    common::kvm_guest(test, "sched_rt", "musl-gcc")
}

/// The native output of `prog args` if the host let it use SCHED_FIFO
/// (the program prints "no-rt" when not: no CAP_SYS_NICE).
fn native_rt(prog: &Path, args: &[&str]) -> Option<String> {
    let n = native(prog, args);
    let out = n.stdout;
    assert_eq!(n.status, 0, "native {args:?}: {out}");
    if out.contains("no-rt") {
        eprintln!("native {args:?}: no SCHED_FIFO on this host; comparing with Linux's output");
        None
    } else {
        Some(out)
    }
}

fn opts(cpus: usize) -> Options {
    Options {
        cpus,
        ..Options::default()
    }
}

/// What `sched_rt calls` prints on Linux (as root).
const CALLS: &str = "max fifo 99 rr 99 other 0
min fifo 1 rr 1 other 0
policy 0
other prio 5: EINVAL
fifo prio 0: EINVAL
rr prio 100: EINVAL
policy 77: EINVAL
pid -1: EINVAL
no such pid: ESRCH
null param: EINVAL
bad param: EFAULT
policy 2
rr interval: 0 0.100000000
rr interval bad address: EFAULT
rr interval no such pid: ESRCH
setparam 42: 0
policy 2 prio 42
setparam 0 on rr: EINVAL
fifo 7: 0
fifo interval: 0 0.000000000
child policy 1 prio 7
back to other: 0
setparam 3 on other: EINVAL
policy 0
zombie (SIGCHLD 1): policy 1 prio 5
set on zombie: 0
reaped: ESRCH
";

/// What `sched_rt starve` prints when the normal child runs while the
/// spinners spin (they are killed, not ended by their time limit).
const STARVE: &str = "spinners are SCHED_FIFO: 1 1
normal child runs, policy 0
normal child: exited 3
spinner: killed by 9
spinner: killed by 9
";

/// What `sched_rt yield` prints on one CPU.
const YIELD: &str = "parent forked
parent 1
child 1
parent 2
child 2
parent 3
child 3
parent 4
child 4
child: exited 0
";

/// sched_setscheduler, sched_setparam, sched_getparam, sched_getscheduler,
/// sched_rr_get_interval (RR: 100 ms, FIFO: 0) and their errnos; a zombie
/// answers with the policy it died with (its SIGCHLD, blocked and ignored
/// by default, stays pending for sigtimedwait).
#[test]
fn linux_sched_calls_match_native() {
    for r in prints_like_linux("linux_sched_calls_match_native", "calls", CALLS) {
        assert_eq!(r.report.status.code(), 0);
    }
}

/// `sched_rt MODE` on one vCPU prints what it prints natively, or where
/// the host refuses SCHED_FIFO what Linux prints (`linux`), for each
/// compiler: the runs.
fn prints_like_linux(test: &str, mode: &str, linux: &str) -> Vec<Run> {
    let mut runs = Vec::new();
    for (cc, p) in common::kvm_guests(test, "sched_rt") {
        let want = native_rt(&p, &[mode]).unwrap_or_else(|| linux.into());
        assert_eq!(want, linux, "native ({cc})");
        let r = vk(&p, &[mode], None, &opts(1));
        assert_eq!(r.stdout, want, "{mode} ({cc}); stderr {}", r.stderr);
        runs.push(r);
    }
    runs
}

/// Item 11: two SCHED_FIFO spinners on one vCPU (and on two) no longer
/// starve a normal process: the real-time class is throttled to 0.95 s
/// per second and the normal child prints and exits long before the
/// spinners' 8 s limit.
#[test]
fn linux_fifo_spinners_do_not_starve_normal_processes() {
    let Some(p) = guest("linux_fifo_spinners_do_not_starve_normal_processes") else {
        return;
    };
    let want = native_rt(&p, &["starve"]).unwrap_or_else(|| STARVE.into());
    assert_eq!(want, STARVE, "native");
    for cpus in [1, 2] {
        let r = vk(&p, &["starve"], None, &opts(cpus));
        assert_eq!(
            r.stdout, want,
            "starve on {cpus} vCPUs ({:?}); stderr {}",
            r.elapsed, r.stderr
        );
        assert_eq!(r.report.status.code(), 0);
    }
    // A shorter period with half of it for real time works the same.
    let o = Options {
        rt_period_us: 100_000,
        rt_runtime_us: 50_000,
        ..opts(1)
    };
    let r = vk(&p, &["starve"], None, &o);
    assert_eq!(r.stdout, STARVE, "50 ms of 100 ms; stderr {}", r.stderr);
}

/// rt_runtime_us = -1 switches throttling off, as on Linux: the spinners
/// own the vCPU until their time limit (3 s here), and only then does
/// the parent get to ask about them (they have exited).
#[test]
fn linux_rt_throttling_off_lets_fifo_spinners_starve_others() {
    let Some(p) = guest("linux_rt_throttling_off_lets_fifo_spinners_starve_others") else {
        return;
    };
    let o = Options {
        rt_runtime_us: -1,
        ..opts(1)
    };
    let r = vk(&p, &["starve", "3"], None, &o);
    // The parent ran again only once the first spinner had ended by its
    // limit (the second one, forked then, ends at once): whatever it then
    // prints, it is not the throttled run's output.
    assert_ne!(r.stdout, STARVE, "stderr {}", r.stderr);
    assert!(!r.stdout.contains("spinner: killed by 9"), "{:?}", r.stdout);
    assert!(r.elapsed >= Duration::from_secs(3), "{:?}", r.elapsed);
    // Bad values are refused before anything runs.
    for (period, runtime) in [(0, -1), (1_000_000, 1_000_001), (1_000_000, -2)] {
        let o = Options {
            rt_period_us: period,
            rt_runtime_us: runtime,
            ..opts(1)
        };
        let l = Launch::bytes(std::fs::read(&p).unwrap(), p.display().to_string())
            .argv0("sched_rt")
            .args(["calls"])
            .ram(64 << 20)
            .options(o);
        match l.run(Box::new(BufferStdio::new(b""))) {
            Err(LaunchError::Vproc(linux::VprocError::Options(why))) => {
                assert!(why.contains("rt_"), "{why}")
            }
            other => panic!(
                "period {period} runtime {runtime}: {:?}",
                other.map(|r| r.status)
            ),
        }
    }
}

/// A SCHED_FIFO task that yields goes behind its equal-priority peer:
/// parent and child take turns on one CPU.
#[test]
fn linux_fifo_yield_goes_behind_equal_priority() {
    prints_like_linux(
        "linux_fifo_yield_goes_behind_equal_priority",
        "yield",
        YIELD,
    );
}

/// Item 11, second symptom: a fork/exec/pipe loop beside two CPU
/// spinners on 2 vCPUs at a 1 ms tick completes (a hang guard: 60 s, not
/// a speed test; it takes a few seconds).
#[test]
fn linux_pipeline_beside_spinners_completes() {
    let Some((bb, image)) = common::kvm_busybox_image("linux_pipeline_beside_spinners_completes")
    else {
        return;
    };
    let script = "(while :; do :; done) & a=$!; (while :; do :; done) & b=$!; \
                  n=0; for i in $(busybox seq 100); do echo $i | busybox cat >/dev/null; \
                  n=$((n+1)); done; echo $i | busybox cat; kill $a $b; echo $n";
    let n = native(&bb, &["sh", "-c", script]);
    assert_eq!(n.shown(), ("100\n100\n", 0));
    let o = Options {
        tick: Duration::from_millis(1),
        ..opts(2)
    };
    let r = vk(&bb, &["sh", "-c", script], Some(&image), &o);
    assert_eq!(
        (r.stdout.as_str(), r.report.status.code()),
        n.shown(),
        "stderr {}",
        r.stderr
    );
    assert!(
        r.elapsed < Duration::from_secs(60),
        "the pipeline beside spinners took {:?}",
        r.elapsed
    );
}

/// Item 11: `stress-ng --mutex` (SCHED_FIFO threads contending on a
/// mutex) on one vCPU hung forever without throttling; it completes now
/// (a hang guard of 60 s for a 2 s run, not a speed test). Runs the
/// `vkernel` example on the host's root (stress-ng is dynamic).
#[test]
fn linux_stress_ng_mutex_completes_on_one_vcpu() {
    let test = "linux_stress_ng_mutex_completes_on_one_vcpu";
    if !have_kvm(test) {
        return;
    }
    let Some(sng) = ["/usr/bin/stress-ng", "/bin/stress-ng"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        common::skip(test, "stress-ng not found (apt-get install stress-ng)");
        return;
    };
    let mut cmd = Command::new(common::example_binary("vkernel"));
    cmd.args(["run", "--cpus", "1"])
        .arg(&sng)
        .args(["--mutex", "2", "-t", "2"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    let out = common::output_within(
        cmd,
        "stress-ng --mutex 2 -t 2 under vkernel",
        Duration::from_secs(60),
    );
    let status = out.status;
    let text = common::text(&out.stdout) + &common::text(&out.stderr);
    assert!(
        status.success() && text.contains("successful run completed"),
        "{status}: {text}"
    );
}
