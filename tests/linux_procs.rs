//! Processes in the `vkernel` example's Linux personality, through
//! `linux::launch::run`: fork (copy-on-write), execve, wait4, kill, pipes
//! between vprocs, the vproc limit, CFS shares by nice level and a
//! real-time vproc, on one and several vCPUs. Busybox pipelines must print
//! what they print natively. Tests SKIP loudly without /dev/kvm (and per
//! compiler when one is missing).

mod common;

use common::{busybox, Native, Out, Run, PATH_BIN};

use std::path::Path;
use std::time::Duration;

use vkernel::linux::kernel::Options;

/// Run `prog args` as the first vproc of a virtual kernel.
fn vk(prog: &Path, args: &[&str], stdin: &[u8], opts: &Options) -> Run {
    let l = common::program(prog)
        .args(args)
        .env([PATH_BIN])
        .options(opts.clone());
    common::vk(l, stdin)
}

/// `prog args` natively with [`PATH_BIN`] and `stdin`.
fn native(prog: &Path, args: &[&str], stdin: &[u8]) -> Out {
    Native::new(prog)
        .args(args)
        .env([PATH_BIN])
        .stdin(stdin)
        .run()
}

fn opts(cpus: usize) -> Options {
    Options {
        cpus,
        ..Options::default()
    }
}

#[test]
fn linux_fork_exec_wait_pipes_match_native() {
    for (cc, p) in common::kvm_guests("linux_fork_exec_wait_pipes_match_native", "procs") {
        let n = native(&p, &[], b"");
        common::assert_same_as(&format!("procs ({cc})"), &n, &[1, 2], |cpus| {
            let r = vk(&p, &[], b"", &opts(cpus));
            eprintln!(
                "procs ({cc}, {cpus} vCPUs): {} forks, {} context switches, {} vprocs at most",
                r.report.forks, r.report.context_switches, r.report.max_alive
            );
            assert!(r.report.forks >= 7);
            r
        });
    }
}

/// FPU state follows each process as on Linux: a signal handler's
/// rounding mode does not leak, an edited signal frame's MXCSR is
/// restored, fork copies the state and execve resets it, and processes
/// with different modes keep them while sharing vCPUs (the core moves the
/// state: `Cpu::set_fpu`, `release_fpu`, `read_fxsave`/`write_fxsave`,
/// `fork_fpu`).
#[test]
fn linux_fpu_state_follows_processes_like_native() {
    for (cc, p) in common::kvm_guests("linux_fpu_state_follows_processes_like_native", "fpustate") {
        let n = native(&p, &[], b"");
        assert!(
            n.stdout.contains("sse rounding changed"),
            "native: {}",
            n.stdout
        );
        common::assert_same_as(&format!("fpustate ({cc})"), &n, &[1, 2], |cpus| {
            vk(&p, &[], b"", &opts(cpus))
        });
    }
}

#[test]
fn linux_busybox_pipelines_match_native() {
    let Some(bb) = common::kvm_busybox("linux_busybox_pipelines_match_native") else {
        return;
    };
    let cases: &[(&str, &[u8])] = &[
        ("echo a b | wc -w", b""),
        ("seq 1 2000 | sort -r | head -n 3 | tr 1 X", b""),
        ("echo x | cat | cat | cat | cat", b""),
        ("cat | tr a-z A-Z | rev", b"hello\nworld\n"),
        ("seq 1 50 | grep 7 | wc -l; echo status $?", b""),
        ("x=$(echo sub | tr s S); echo \"[$x]\"", b""),
        ("(echo one; echo two) | sort -r; false | true; echo $?", b""),
        ("for i in 1 2 3; do echo $i | sed s/^/n/; done", b""),
        ("yes | head -n 4", b""),
        ("sh -c 'exit 9'; echo child status $?", b""),
        ("sleep 0.05 & echo started; wait; echo waited", b""),
        ("kill -9 $$; echo not reached", b""),
    ];
    for cpus in [1, 2] {
        for (script, input) in cases {
            let n = native(&bb, &["sh", "-c", script], input);
            let r = vk(&bb, &["sh", "-c", script], input, &opts(cpus));
            eprintln!(
                "{script:?} ({cpus} vCPUs): status {}, {} forks",
                r.report.status.code(),
                r.report.forks
            );
            assert_eq!(
                r.stdout, n.stdout,
                "{script:?} ({cpus} vCPUs): stderr {}",
                r.stderr
            );
            assert_eq!(
                r.report.status.code(),
                n.status,
                "{script:?} ({cpus} vCPUs)"
            );
        }
    }
}

#[test]
fn linux_fork_bomb_hits_the_vproc_limit() {
    let test = "linux_fork_bomb_hits_the_vproc_limit";
    let Some(p) = common::kvm_guest(test, "forkbomb", "musl-gcc") else {
        return;
    };
    let limit = 24;
    let r = vk(
        &p,
        &[],
        b"",
        &Options {
            max_procs: limit,
            ..opts(1)
        },
    );
    eprintln!(
        "{}forks {}, refused {}, at most {} vprocs",
        r.stdout, r.report.forks, r.report.fork_eagain, r.report.max_alive
    );
    assert_eq!(r.report.status.code(), 0, "{}", r.stdout);
    assert!(r.report.fork_eagain >= 1, "fork failed with EAGAIN");
    assert!(r.report.max_alive <= limit);
    assert!(r.stdout.contains("before EAGAIN"), "{}", r.stdout);
    // A shell bomb: the shell gives up with "can't fork", the others are
    // killed when it exits, and the host lives.
    if let Some(bb) = busybox(test) {
        let r = vk(
            &bb,
            &[
                "sh",
                "-c",
                "i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done; echo all forked",
            ],
            b"",
            &Options {
                max_procs: 8,
                ..opts(1)
            },
        );
        eprintln!("shell bomb: {:?} / {:?}", r.stdout, r.stderr);
        assert!(r.report.fork_eagain >= 1);
        assert!(r.report.max_alive <= 8);
        assert!(r.stderr.contains("can't fork"), "{}", r.stderr);
        assert!(!r.stdout.contains("all forked"));
    }
}

#[test]
fn linux_nice_levels_share_the_cpu_by_weight() {
    let Some(p) = common::kvm_guest("linux_nice_levels_share_the_cpu_by_weight", "spin", "gcc")
    else {
        return;
    };
    let secs = if common::scaled(100) < 100 { "1" } else { "2" };
    let r = vk(
        &p,
        &[secs, "5", "rt"],
        b"",
        &Options {
            tick: Duration::from_millis(4),
            ..opts(1)
        },
    );
    let runtime = |nice: i8| {
        r.report
            .procs
            .iter()
            .find(|x| x.policy == vkernel::core::sched::Policy::Fair { nice } && x.pid != 100)
            .map(|x| x.runtime_ns as f64)
            .unwrap()
    };
    let (r0, r5) = (runtime(0), runtime(5));
    let ratio = r0 / r5;
    eprintln!(
        "{}nice 0: {:.0} ms, nice 5: {:.0} ms, ratio {ratio:.2} (weights 1024/335 = 3.06), {} context switches",
        r.stdout,
        r0 / 1e6,
        r5 / 1e6,
        r.report.context_switches
    );
    assert!((1.8..5.0).contains(&ratio), "CPU share ratio {ratio:.2}");
    // The SCHED_FIFO vproc ran alone: its wall time is its CPU time.
    let rt = r
        .report
        .procs
        .iter()
        .find(|x| x.policy.is_rt())
        .expect("the real-time vproc");
    let wall: f64 = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("rt setscheduler 0 policy 1 wall_ms "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the real-time vproc reports");
    let share = rt.runtime_ns as f64 / 1e6 / wall;
    eprintln!(
        "real-time vproc: {:.0} ms CPU in {wall:.0} ms",
        rt.runtime_ns as f64 / 1e6
    );
    assert!(
        share > 0.7,
        "the FIFO vproc had the vCPU to itself ({share:.2})"
    );
}

/// vfork and posix_spawn (tests/guests/vfork.c): posix_spawn reports a
/// missing program and a failing file action (ENOENT) as its child
/// leaves them in the parent's memory; a vfork child's writes to the
/// stack and a global are the parent's after its _exit or execve; the
/// parent resumes only then. As natively.
#[test]
fn vfork_shares_the_parents_memory_like_native() {
    for (cc, prog) in common::kvm_guests("vfork_shares_the_parents_memory_like_native", "vfork") {
        let n = common::native(&prog, &[]);
        assert_eq!(n.status, 0, "{cc} natively:\n{}", n.stdout);
        let r = common::vk_watched(
            &common::what(&prog, &[], 2),
            60,
            common::guest(&prog, &[], 2).root(common::host_root()),
        );
        assert_eq!(r.out().shown(), n.shown(), "{cc}: {}", r.stderr);
    }
}
