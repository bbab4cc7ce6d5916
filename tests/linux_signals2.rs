//! Sessions, absolute real-time waits, pending and queued signals and the
//! parent-death signal (items 4, 5 and 7 of issue 20), and the vkernel's
//! own signals and closed stdio (item 8). Guest checks print what they
//! print natively (musl and glibc); item 8 runs the `vkernel` example as a
//! process and compares its exit status with the same shell run natively.
//! Tests SKIP loudly without /dev/kvm.

use vkernel::linux;

mod common;

use common::have_kvm;

use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use vkernel::core::prelude::*;

use linux::fs::Fs;
use linux::kernel::{self, Options, Report};
use linux::stdio::BufferStdio;
use linux::{Config, Vproc};

struct Run {
    stdout: String,
    stderr: String,
    report: Report,
}

/// Run `prog args` as the first vproc of a virtual kernel, in a thread of
/// its own: a hang fails the test after a generous timeout.
fn vk(prog: &Path, args: &[&str], cpus: usize) -> Run {
    let prog = prog.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let what = format!("{} {args:?} on {cpus} vCPUs", prog.display());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let machine = Machine::builder()
            .ram_size(512 << 20)
            .vcpus(cpus)
            .build()
            .expect("a machine on /dev/kvm");
        let stdio = BufferStdio::new(b"");
        let (out, err) = (stdio.stdout.clone(), stdio.stderr.clone());
        let path = std::fs::canonicalize(&prog).unwrap().display().to_string();
        let mut argv = vec![path.clone().into_bytes()];
        argv.extend(args.iter().map(|a| a.as_bytes().to_vec()));
        let cfg = Config {
            image: std::fs::read(&prog).unwrap(),
            path: path.clone(),
            exe: path,
            argv,
            envp: vec![b"PATH=/bin".to_vec()],
            fault_around: 16,
            trace: false,
        };
        let vp = Vproc::load(&machine, cfg, Fs::empty(), Box::new(stdio)).unwrap();
        let opts = Options {
            cpus,
            ..Options::default()
        };
        let report = kernel::run(&machine, vp, &opts).expect("the virtual kernel runs");
        let stdout = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
        let stderr = String::from_utf8_lossy(&err.lock().unwrap()).into_owned();
        let _ = tx.send(Run {
            stdout,
            stderr,
            report,
        });
    });
    let run = rx
        .recv_timeout(Duration::from_secs(180))
        .unwrap_or_else(|_| panic!("{what}: no result in 180 s (a hang, or a panic above)"));
    assert_eq!(
        run.report.lost_wakeups, 0,
        "the watchdog ended a wait that no wake-up ended; stderr: {}",
        run.stderr
    );
    run
}

fn native(prog: &Path, args: &[&str]) -> (String, i32) {
    let o = Command::new(prog)
        .args(args)
        .env_clear()
        .env("PATH", "/bin")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        o.status
            .code()
            .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0)),
    )
}

/// Run check `check` of sigs2.c natively and under the vkernel (1 and 2
/// vCPUs), musl and glibc, and compare.
fn sigs2_matches_native(test: &str, check: &str) {
    if !have_kvm(test) {
        return;
    }
    for cc in common::compilers() {
        let Some(p) = common::compile(test, "sigs2", cc) else {
            continue;
        };
        let (n_out, n_status) = native(&p, &[check]);
        assert_eq!(n_status, 0, "native {check} ({cc}): {n_out}");
        assert!(!n_out.contains("early"), "native {check} ({cc}): {n_out}");
        for cpus in [1, 2] {
            let r = vk(&p, &[check], cpus);
            assert_eq!(
                r.stdout, n_out,
                "sigs2 {check} ({cc}, {cpus} vCPUs); stderr {}",
                r.stderr
            );
            assert_eq!(r.report.status.code(), 0);
        }
    }
}

/// Item 4: setsid in a fork child, a second setsid, setpgid's errors.
#[test]
fn linux_sessions_match_native() {
    sigs2_matches_native("linux_sessions_match_native", "sessions");
}

/// Item 5: clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME) and
/// pthread_cond_timedwait with a real-time deadline wait their time.
#[test]
fn linux_absolute_realtime_waits_match_native() {
    sigs2_matches_native("linux_absolute_realtime_waits_match_native", "abstime");
}

/// Item 7: a blocked SIGCHLD (SIGWINCH, SIGURG) stays pending and
/// sigtimedwait/sigwaitinfo return it.
#[test]
fn linux_blocked_ignored_signals_stay_pending() {
    sigs2_matches_native("linux_blocked_ignored_signals_stay_pending", "pending");
}

/// Item 7: real-time signals queue with their si_value; sigqueue,
/// rt_sigqueueinfo's EPERM, rt_tgsigqueueinfo.
#[test]
fn linux_realtime_signals_queue() {
    sigs2_matches_native("linux_realtime_signals_queue", "queued");
}

/// Item 7: PR_SET_PDEATHSIG fires when the parent ends.
#[test]
fn linux_pdeathsig_fires() {
    sigs2_matches_native("linux_pdeathsig_fires", "pdeath");
}
