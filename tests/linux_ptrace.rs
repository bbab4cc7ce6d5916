//! ptrace (issue 23): a tracer inside the virtual kernel tracing vprocs,
//! against native: tests/guests/ptrace.c's requests, and Debian's
//! `strace -f` as users run it.

mod common;

use common::{guest, host_root, kvm_guests, native, vk_watched, what};

/// tests/guests/ptrace.c prints the same natively and under vkernel, on
/// one vCPU and two: TRACEME, syscall stops with a changed and a skipped
/// call, PEEK/POKE, process_vm_readv, signal-delivery-stops with the
/// signal suppressed and replaced, GETSIGINFO, fork and exec events with
/// the auto-attached grandchild, PTRACE_EVENT_EXIT, SEIZE + INTERRUPT,
/// SIGKILL of a stopped tracee, and attaching to oneself refused.
#[test]
fn ptrace_requests_match_native() {
    for (cc, prog) in kvm_guests("ptrace_requests_match_native", "ptrace") {
        let n = native(&prog, &[]);
        assert_eq!(n.status, 0, "{cc} natively:\n{}", n.stdout);
        for cpus in [1, 2] {
            let r = vk_watched(&what(&prog, &[], cpus), 60, guest(&prog, &[], cpus));
            assert_eq!(
                r.out().shown(),
                n.shown(),
                "{cc}, {cpus} vCPUs: {}",
                r.stderr
            );
        }
    }
}

/// Numbers (pids, addresses, counts of environment variables) differ
/// between runs: each run of digits (and a hex number) reads `N`, and
/// what strace pads or pluralises by them is made alike.
fn shape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            if c == '0' && chars.peek() == Some(&'x') {
                chars.next();
            }
            while chars.peek().is_some_and(|d| d.is_ascii_hexdigit()) {
                chars.next();
            }
            out.push('N');
        } else {
            out.push(c);
        }
    }
    // "[pid   N]" is padded to the pid's width; "/* 1 var */".
    out.replace("[pid   N]", "[pid N]")
        .replace("[pid  N]", "[pid N]")
        .replace(" vars */", " var */")
}

/// `strace -f -e trace=execve sh -c 'true; /bin/true'` in a vproc shows
/// the shell's exec, the child it forks ("Process N attached"), that
/// child's exec and both exits, as natively.
#[test]
fn strace_follows_forks_and_execs() {
    let test = "strace_follows_forks_and_execs";
    let Some(strace) = common::kvm_tool(test, "/usr/bin/strace", " (apt-get install strace)")
    else {
        return;
    };
    let args = [
        "-f",
        "-e",
        "trace=execve",
        "/bin/sh",
        "-c",
        "true; /bin/true; exit 3",
    ];
    let n = common::Native::new(&strace).args(args).run();
    assert_eq!(n.status, 3, "natively:\n{}{}", n.stdout, n.stderr);
    for cpus in [1, 2] {
        let r = vk_watched(
            &what(&strace, &args, cpus),
            60,
            guest(&strace, &args, cpus).root(host_root()),
        );
        assert_eq!(r.status(), 3, "{cpus} vCPUs: {}", r.stderr);
        // strace writes its trace on stderr; the vkernel adds nothing
        // there in a good run.
        let vk = r.out().stderr;
        assert_eq!(shape(&vk), shape(&n.stderr), "{cpus} vCPUs");
        assert!(vk.contains("execve(\"/bin/true\""), "{vk}");
        assert!(vk.contains("+++ exited with 3 +++"), "{vk}");
    }
}

/// Every call of a pipeline, traced: `strace -f -c` (a summary) counts
/// the same kinds of calls inside and outside, and the pipeline's output
/// is intact.
#[test]
fn strace_counts_a_pipelines_calls() {
    let test = "strace_counts_a_pipelines_calls";
    let Some(strace) = common::kvm_tool(test, "/usr/bin/strace", " (apt-get install strace)")
    else {
        return;
    };
    let args = [
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "/bin/sh",
        "-c",
        "echo hi | cat; echo done",
    ];
    let n = common::Native::new(&strace).args(args).run();
    assert_eq!(n.status, 0, "natively:\n{}{}", n.stdout, n.stderr);
    let r = vk_watched(
        &what(&strace, &args, 2),
        60,
        guest(&strace, &args, 2).root(host_root()),
    );
    assert_eq!(r.status(), 0, "{}", r.stderr);
    assert_eq!(r.out().stdout, n.stdout, "{}", r.stderr);
}
