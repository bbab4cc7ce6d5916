//! Limits, error numbers, directory order and the command line (issue 20,
//! items 9, 10, 12 and 13), through the `vkernel` example as a whole
//! process, compared with the same programs run natively:
//!
//! - `tests/guests/limits.c` (musl-gcc and gcc): RLIMIT_NOFILE from the
//!   host and enforced, threads beyond the old 64, E2BIG for a 200 KiB
//!   argument, overcommit of a 100 GiB mapping, getcwd of a long path,
//!   RENAME_NOREPLACE, closed fds, missing pids, socket calls on a pipe,
//!   pipe FIONREAD/F_*PIPE_SZ and `/proc/self/fd/N`, sparse files at
//!   100 GiB, mkfifo and FIFO opens;
//! - `--max-threads`;
//! - the host's readdir order (`busybox find`);
//! - options after PROGRAM belong to the program, `--version`.
//!
//! Every run has a generous timeout that only turns a hang into a failure.
//! Tests SKIP loudly without /dev/kvm (and without busybox where needed).

mod common;

use common::{native_cmd, output_within, text, vkernel_binary, BUSYBOX};

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// Long enough for a loaded CI machine; only a hang gets near it.
const TIMEOUT: Duration = Duration::from_secs(180);

/// `vkernel ARGS` to its end within [`TIMEOUT`].
fn vk(vk: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(vk);
    c.args(args);
    output_within(c, &format!("vkernel {args:?}"), TIMEOUT)
}

/// `ARGS` natively to their end within [`TIMEOUT`].
fn native(args: &[&str]) -> Output {
    output_within(native_cmd(args), &format!("native {args:?}"), TIMEOUT)
}

/// Compare two outputs line by line, with a readable message.
fn assert_same_lines(native: &str, vk: &str, what: &str) {
    for (i, (n, v)) in native.lines().zip(vk.lines()).enumerate() {
        assert_eq!(v, n, "{what}: line {} differs", i + 1);
    }
    assert_eq!(
        vk.lines().count(),
        native.lines().count(),
        "{what}: line counts differ\nnative:\n{native}\nvkernel:\n{vk}"
    );
}

#[test]
fn limits_and_errors_match_native() {
    let test = "limits_and_errors_match_native";
    let Some(vkb) = vkernel_binary(test) else {
        return;
    };
    for cc in common::compilers() {
        let Some(prog) = common::compile(test, "limits", cc) else {
            return;
        };
        let p = prog.to_str().expect("utf-8 path");
        let n = native(&[p]);
        assert!(n.status.success(), "native {cc}: {:?}", n);
        let v = vk(&vkb, &["run", "--cpus", "2", "--mem", "1024", p]);
        eprintln!("{cc}: vkernel stderr: {}", text(&v.stderr));
        assert!(v.status.success(), "vkernel {cc}: {:?}", v.status);
        let (ns, vs) = (text(&n.stdout), text(&v.stdout));
        // The checks that are the point of each item, by name, so a
        // regression says which one.
        for must in [
            "threads: 100 of 100 live at once",
            "arg: 200 KiB execve E2BIG",
            "overcommit: 100 GiB rw ENOMEM",
            "rename: noreplace onto existing EEXIST",
            "sock: getsockname ENOTSOCK",
            "pipe: FIONREAD read end 58",
            "pipe: stat /dev/fd/N fifo 1",
            "pipe: F_GETPIPE_SZ 65536",
            "sparse: pwrite at 100 GiB ok",
            "fifo: read 'through the fifo'",
        ] {
            assert!(ns.contains(must), "native {cc} lacks {must:?}:\n{ns}");
            assert!(vs.contains(must), "vkernel {cc} lacks {must:?}:\n{vs}");
        }
        assert_same_lines(&ns, &vs, cc);
    }
}

#[test]
fn max_threads_bounds_threads_not_processes() {
    let test = "max_threads_bounds_threads_not_processes";
    let Some(vkb) = vkernel_binary(test) else {
        return;
    };
    let Some(prog) = common::compile(test, "limits", "musl-gcc") else {
        return;
    };
    let p = prog.to_str().expect("utf-8 path");
    // The main thread and 19 more make 20.
    let v = vk(&vkb, &["run", "--max-threads", "20", p, "threads"]);
    assert_eq!(text(&v.stdout), "threads: 19 of 100 live at once\n");
    // --max-procs no longer counts threads.
    let v = vk(&vkb, &["run", "--max-procs", "4", p, "threads"]);
    assert_eq!(text(&v.stdout), "threads: 100 of 100 live at once\n");
}

#[test]
fn readdir_order_is_the_hosts() {
    let test = "readdir_order_is_the_hosts";
    let Some(vkb) = common::vkernel_and_busybox(test) else {
        return;
    };
    let bb = common::BUSYBOX;
    let dirs = ["/usr/share/doc", "/usr/bin", "/etc"];
    let mut args = vec![bb, "find"];
    args.extend(dirs);
    let n = native(&args);
    let mut vargs = vec!["run", bb, "find"];
    vargs.extend(dirs);
    let v = vk(&vkb, &vargs);
    let (ns, vs) = (text(&n.stdout), text(&v.stdout));
    assert!(ns.lines().count() > 10, "native find listed little: {ns}");
    let mut sorted: Vec<&str> = ns.lines().collect();
    sorted.sort_unstable();
    if sorted == ns.lines().collect::<Vec<_>>() {
        eprintln!("{test}: the host lists these directories sorted; the check is weak here");
    }
    assert_same_lines(&ns, &vs, "busybox find");
    // tar packs in readdir order too: the member lists agree.
    let tar_list = |out: &Output| -> Vec<String> {
        text(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let n = native(&[
        bb,
        "sh",
        "-c",
        "busybox tar -cf - /usr/share/doc 2>/dev/null | busybox tar -tf -",
    ]);
    let v = vk(
        &vkb,
        &[
            "run",
            bb,
            "sh",
            "-c",
            "busybox tar -cf - /usr/share/doc 2>/dev/null | busybox tar -tf -",
        ],
    );
    assert_eq!(tar_list(&v), tar_list(&n), "tar member order");
}

#[test]
fn options_after_program_belong_to_it() {
    let test = "options_after_program_belong_to_it";
    let Some(vkb) = common::vkernel_and_busybox(test) else {
        return;
    };
    // -e is also the vkernel's --env; after PROGRAM it is the program's.
    let args = [
        BUSYBOX, "echo", "-e", "a\\tb", "--help", "-e", "--cpus", "2",
    ];
    let n = native(&args);
    let mut vargs = vec!["run"];
    vargs.extend(args);
    let v = vk(&vkb, &vargs);
    assert_eq!(text(&v.stdout), text(&n.stdout));
    assert_eq!(text(&v.stdout), "a\tb --help -e --cpus 2\n");
    // The vkernel's own options still go before PROGRAM.
    let v = vk(
        &vkb,
        &[
            "run",
            "-e",
            "FOO=bar",
            "--cpus",
            "2",
            BUSYBOX,
            "sh",
            "-c",
            "echo $FOO",
        ],
    );
    assert_eq!(text(&v.stdout), "bar\n");
    // `--` works too, and an unknown option before PROGRAM is an error.
    let v = vk(&vkb, &["run", "--", BUSYBOX, "echo", "x"]);
    assert_eq!(text(&v.stdout), "x\n");
    let v = vk(&vkb, &["run", "--no-such-option", BUSYBOX, "true"]);
    assert_eq!(v.status.code(), Some(2), "{}", text(&v.stderr));
    // perl -e, the case of the issue, where perl is installed.
    if Path::new("/usr/bin/perl").exists() {
        let v = vk(&vkb, &["run", "/usr/bin/perl", "-e", "print 1+1"]);
        assert_eq!(text(&v.stdout), "2", "{}", text(&v.stderr));
    } else {
        eprintln!("{test}: /usr/bin/perl not installed; the perl case is not run");
    }
    let v = vk(&vkb, &["--version"]);
    assert!(v.status.success());
    assert_eq!(
        text(&v.stdout).trim(),
        format!("vkernel {}", env!("CARGO_PKG_VERSION"))
    );
    let v = vk(&vkb, &["run", "--help"]);
    let help = text(&v.stdout);
    assert!(!help.contains("static x86-64"), "{help}");
    assert!(help.contains("PROGRAM"), "{help}");
}
