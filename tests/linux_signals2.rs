//! Sessions, absolute real-time waits, pending and queued signals and the
//! parent-death signal (items 4, 5 and 7 of issue 20), and the vkernel's
//! own signals and closed stdio (item 8). Guest checks print what they
//! print natively (musl and glibc); item 8 runs the `vkernel` example as a
//! process and compares its exit status with the same shell run natively.
//! Tests SKIP loudly without /dev/kvm.

mod common;

use common::{native, native_cmd, send_signal, shell_status, spawn_ready, Run};

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Run `prog args` as the first vproc of a virtual kernel, in a thread of
/// its own: a hang fails the test after a generous timeout.
fn vk(prog: &Path, args: &[&str], cpus: usize) -> Run {
    let l = common::guest(prog, args, cpus);
    common::vk_watched(&common::what(prog, args, cpus), 180, l)
}

/// Run check `check` of sigs2.c natively and under the vkernel (1 and 2
/// vCPUs), musl and glibc, and compare.
fn sigs2_matches_native(test: &str, check: &str) {
    for (cc, p) in common::kvm_guests(test, "sigs2") {
        let n = native(&p, &[check]);
        assert!(
            !n.stdout.contains("early"),
            "native {check} ({cc}): {}",
            n.stdout
        );
        common::assert_same_as(&format!("sigs2 {check} ({cc})"), &n, &[1, 2], |cpus| {
            vk(&p, &[check], cpus)
        });
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

// ---- item 8: the vkernel's own signals, closed stdio ----------------------

/// Long enough for a loaded machine; only a hang gets near it.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Wait for `child`, killing it (and failing) if it outlives TIMEOUT.
fn wait(child: &mut Child, what: &str) -> ExitStatus {
    common::wait_within(child, what, TIMEOUT)
}

/// `vk run EXTRA... ARGS...`.
fn vk_cmd(vk: &Path, extra: &[&str], args: &[&str]) -> Command {
    let mut c = common::vk_cmd(vk, extra);
    c.args(args);
    c
}

/// Item 8: SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH sent to
/// the vkernel reach the init vproc's trap, and the vkernel exits with
/// init's status, as the shell does natively.
#[test]
fn vkernel_forwards_its_signals_to_init() {
    let Some(vk) = common::vkernel_and_busybox("vkernel_forwards_its_signals_to_init") else {
        return;
    };
    for (name, sig, code) in [
        ("TERM", libc::SIGTERM, 5),
        ("HUP", libc::SIGHUP, 6),
        ("QUIT", libc::SIGQUIT, 7),
        ("USR1", libc::SIGUSR1, 8),
        ("USR2", libc::SIGUSR2, 9),
        ("WINCH", libc::SIGWINCH, 10),
    ] {
        let script = format!("trap 'exit {code}' {name}; echo ready; while :; do sleep 0.05; done");
        let args = ["/bin/busybox", "sh", "-c", &script];
        let mut n = spawn_ready(native_cmd(&args), Stdio::null());
        send_signal(&n, sig);
        let ns = shell_status(wait(&mut n, "native"));
        let mut v = spawn_ready(vk_cmd(&vk, &[], &args), Stdio::null());
        send_signal(&v, sig);
        let vs = shell_status(wait(&mut v, &format!("vk after SIG{name}")));
        assert_eq!(ns, code, "native trap on SIG{name}");
        assert_eq!(vs, ns, "vk trap on SIG{name}");
    }
    // Without a trap, SIGTERM and SIGHUP end init (and the vkernel) with
    // their status, as natively.
    for sig in [libc::SIGTERM, libc::SIGHUP] {
        let args = [
            "/bin/busybox",
            "sh",
            "-c",
            "echo ready; while :; do sleep 0.05; done",
        ];
        let mut n = spawn_ready(native_cmd(&args), Stdio::null());
        send_signal(&n, sig);
        let ns = shell_status(wait(&mut n, "native"));
        let mut v = spawn_ready(vk_cmd(&vk, &[], &args), Stdio::null());
        send_signal(&v, sig);
        let vs = shell_status(wait(&mut v, "vk"));
        assert_eq!(ns, 128 + sig);
        assert_eq!(vs, ns, "vk, signal {sig} without a trap");
    }
}

/// Item 8: init ignores SIGTERM: a second SIGTERM within the grace period
/// is forwarded too; one after it kills every vproc (137).
#[test]
fn vkernel_second_sigterm_after_grace_kills() {
    let Some(vk) = common::vkernel_and_busybox("vkernel_second_sigterm_after_grace_kills") else {
        return;
    };
    let args = [
        "/bin/busybox",
        "sh",
        "-c",
        "trap '' TERM; echo ready; while :; do sleep 0.05; done",
    ];
    let mut v = spawn_ready(vk_cmd(&vk, &["--term-grace", "2"], &args), Stdio::null());
    send_signal(&v, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    send_signal(&v, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        v.try_wait().unwrap().is_none(),
        "SIGTERMs within the grace period end nothing when init ignores them"
    );
    std::thread::sleep(Duration::from_millis(1900));
    // Past the grace period (a loaded machine may have forwarded the first
    // one late: keep sending until the vkernel ends).
    let start = Instant::now();
    let vs = loop {
        if let Some(s) = v.try_wait().unwrap() {
            break shell_status(s);
        }
        if start.elapsed() > TIMEOUT {
            let _ = v.kill();
            panic!("vk still running {TIMEOUT:?} after a SIGTERM past the grace period");
        }
        send_signal(&v, libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(vs, 137);
}

/// Item 8: with the vkernel's stdout (or stdin) closed, the vproc's fd 1
/// (fd 0) is /dev/null: writes succeed, reads see end of file.
#[test]
fn vkernel_closed_stdio_is_dev_null() {
    let Some(vk) = common::vkernel_and_busybox("vkernel_closed_stdio_is_dev_null") else {
        return;
    };
    for (fd, script) in [
        (1, "echo hi; echo \"write=$?\" >&2"),
        (
            0,
            "read x; echo \"read=$? x=$x\" >&2; cat /proc/self/fd/0 >&2; echo cat=$? >&2",
        ),
    ] {
        let mut cmd = vk_cmd(&vk, &[], &["/bin/busybox", "sh", "-c", script]);
        // SAFETY: close(2) between fork and exec only touches the child's
        // own fd table, and is async-signal safe.
        unsafe {
            cmd.pre_exec(move || {
                libc::close(fd);
                Ok(())
            });
        }
        let (s, err) =
            common::stderr_within(cmd, Stdio::null(), "vk with a closed stdio fd", TIMEOUT);
        assert_eq!(s, 0, "fd {fd} closed: {err}");
        let want = if fd == 1 {
            "write=0\n"
        } else {
            "read=1 x=\ncat=0\n"
        };
        assert_eq!(err, want, "fd {fd} closed");
    }
}
