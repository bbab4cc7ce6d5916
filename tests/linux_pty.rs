//! Pseudo-terminals (issue 23): `/dev/ptmx` and `/dev/pts/N` with the
//! line discipline, sessions' controlling terminals and job control,
//! against native; `script` and Python's `pty` module as users run them.

mod common;

use common::{guest, host_root, kvm_guests, native, scratch, vk_watched, what};

/// tests/guests/pty.c prints the same natively and under vkernel:
/// openpty/ptsname/ttyname, canonical editing with echo, raw mode,
/// VMIN 0, window sizes, packet mode, poll and EIO after the slave
/// closes; a session leader's controlling terminal (/dev/tty, tcgetpgrp,
/// ^C as SIGINT, SIGWINCH, SIGHUP when the master closes); ^Z stopping a
/// foreground job seen by its leader with WUNTRACED.
#[test]
fn pseudo_terminals_match_native() {
    for (cc, prog) in kvm_guests("pseudo_terminals_match_native", "pty") {
        let n = native(&prog, &[]);
        assert_eq!(n.status, 0, "{cc} natively:\n{}", n.stdout);
        let r = vk_watched(&what(&prog, &[], 2), 60, guest(&prog, &[], 2));
        assert_eq!(r.out().shown(), n.shown(), "{cc}: {}", r.stderr);
    }
}

/// `script -qc CMD /dev/null` runs CMD on a new pseudo-terminal: `tty`
/// names it, `stty` reads its attributes, and the output comes back
/// through the master with CR LF line ends, as natively.
#[test]
fn script_runs_a_command_on_a_pty() {
    let test = "script_runs_a_command_on_a_pty";
    let Some(script) = common::kvm_tool(test, "/usr/bin/script", " (apt-get install bsdutils)")
    else {
        return;
    };
    let cmd = "tty; stty -a | head -1; echo done";
    let args = ["-qc", cmd, "/dev/null"];
    let n = native(&script, &args);
    let r = vk_watched(
        &what(&script, &args, 1),
        60,
        guest(&script, &args, 1).root(host_root()),
    );
    let out = r.out();
    assert_eq!(r.status(), 0, "{}{}", out.stdout, r.stderr);
    // The terminal's number differs from a native run's.
    let norm = |s: &str| {
        s.lines()
            .map(|l| {
                if l.starts_with("/dev/pts/") {
                    "/dev/pts/N"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(norm(&out.stdout), norm(&n.stdout), "{}", r.stderr);
    assert!(out.stdout.contains("done\r\n"), "{}", out.stdout);
}

/// Python's `pty.spawn`-style use: os.forkpty, the child on its terminal
/// (ttyname, its own session, in the foreground), the parent reading
/// until EIO, the exit status; as natively.
#[test]
fn python_forkpty_like_native() {
    let test = "python_forkpty_like_native";
    let Some(py) = common::kvm_tool(test, "/usr/bin/python3", " (apt-get install python3)") else {
        return;
    };
    let code = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/guests/forkpty.py");
    let dir = scratch(test);
    let args = [code];
    let n = common::Native::new(&py).args(args).cwd(&dir).run();
    assert_eq!(n.status, 0, "natively:\n{}{}", n.stdout, n.stderr);
    let r = vk_watched(
        &what(&py, &args, 1),
        120,
        guest(&py, &args, 1).root(host_root()),
    );
    assert_eq!(r.out().shown(), n.shown(), "stderr: {}", r.stderr);
}
