//! podman runs containers in vkernels through `vkernel-oci`: echo, exit
//! codes, stdin, `-it` on a pty, `run -d` + `exec` + `kill` + `rm`, `exec`
//! inside the container (its files, its processes, `-i`, `-it` and its
//! Ctrl-C, a `kill`
//! of the container's process), a
//! dynamically linked program (python3 with its libraries) and a memory
//! limit. Images are made with `podman import` from local files (no
//! registry): busybox from Debian's busybox-static, python3 from the host.
//! Native runtimes (crun, runc) cannot run on our CI hosts (cgroups in
//! hybrid mode), so outputs are compared with what they print natively.
//!
//! Skips loudly (`SKIP:` and the skip log) without /dev/kvm, podman,
//! busybox-static or python3.11.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

const RUNTIME: &str = env!("CARGO_BIN_EXE_vkernel-oci");
const BB: &str = "localhost/vkernel-oci-test-busybox";
const PY: &str = "localhost/vkernel-oci-test-python";
/// Every podman command's time limit (a hang fails with its output).
const LIMIT: Duration = Duration::from_secs(120);

/// `sh -c script` within [`LIMIT`], with `$RT` the runtime and `$RUN` the
/// issue's podman command line up to the image.
fn sh(what: &str, script: &str) -> Output {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script).env("RT", RUNTIME).env(
        "RUN",
        format!(
            "podman --runtime {RUNTIME} run --rm --network none \
             --ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
        ),
    );
    common::hang::output_or_report(c, what, LIMIT, &|| String::new())
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Can podman run here? Builds the two images once; None (after a loud
/// SKIP) when something is missing.
fn ready(test: &str) -> Option<()> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    if !common::have_kvm(test) {
        return None;
    }
    match READY.get_or_init(build_images) {
        Ok(()) => Some(()),
        Err(why) => {
            common::skip(test, why);
            None
        }
    }
}

fn build_images() -> Result<(), String> {
    let have = |p: &str| std::path::Path::new(p).exists();
    if Command::new("podman").arg("--version").output().is_err() {
        return Err("podman is not installed (apt-get install podman)".into());
    }
    if !have("/bin/busybox") {
        return Err("/bin/busybox is missing (apt-get install busybox-static)".into());
    }
    if !have("/usr/bin/python3.11") {
        return Err("/usr/bin/python3.11 is missing (apt-get install python3)".into());
    }
    let o = sh(
        "podman info",
        "podman info --format '{{.Host.OCIRuntime.Name}}'",
    );
    if !o.status.success() {
        return Err(format!("podman cannot run here: {}", text(&o)));
    }
    let o = sh(
        "build images",
        r#"set -e
        d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
        # The previous run's images go first (each import makes a new one).
        podman rmi -f localhost/vkernel-oci-test-busybox localhost/vkernel-oci-test-python >/dev/null 2>&1 || true
        mkdir -p "$d/bb/bin" "$d/bb/etc" "$d/bb/tmp"
        cp /bin/busybox "$d/bb/bin/"
        for a in sh echo cat ls sleep true tty hostname id grep; do ln -s busybox "$d/bb/bin/$a"; done
        tar -cf "$d/bb.tar" -C "$d/bb" .
        podman import -q "$d/bb.tar" localhost/vkernel-oci-test-busybox >/dev/null
        S="$d/py"; L=usr/lib/x86_64-linux-gnu
        mkdir -p "$S/usr/bin" "$S/$L" "$S/usr/lib64" "$S/tmp" "$S/etc"
        ln -s usr/lib "$S/lib"; ln -s usr/lib64 "$S/lib64"; ln -s usr/bin "$S/bin"
        cp /usr/bin/python3.11 "$S/usr/bin/"; ln -s python3.11 "$S/usr/bin/python3"
        for l in $(ldd /usr/bin/python3.11 | grep -o '/[^ ]*'); do cp -L "$l" "$S/$L/"; done
        ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$S/usr/lib64/ld-linux-x86-64.so.2"
        tar -cf "$d/py.tar" -C "$S" . -C / --exclude=usr/lib/python3.11/test \
            --exclude='usr/lib/python3.11/*/tests' --exclude=usr/lib/python3.11/idlelib \
            --exclude=usr/lib/python3.11/tkinter --exclude=usr/lib/python3.11/ensurepip \
            --exclude=usr/lib/python3.11/lib2to3 usr/lib/python3.11
        podman import -q "$d/py.tar" localhost/vkernel-oci-test-python >/dev/null
        "#,
    );
    if !o.status.success() {
        return Err(format!("cannot build the test images: {}", text(&o)));
    }
    Ok(())
}

#[test]
fn echo_exit_codes_and_missing_programs() {
    if ready("echo_exit_codes_and_missing_programs").is_none() {
        return;
    }
    let o = sh("echo", &format!("$RUN {BB} echo hello from a vkernel"));
    assert_eq!(o.stdout, b"hello from a vkernel\n", "{}", text(&o));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = sh(
        "exit 3",
        &format!("$RUN {BB} sh -c 'echo $HOSTNAME; hostname; exit 3'"),
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let lines: Vec<&[u8]> = o.stdout.split(|b| *b == b'\n').collect();
    // podman's HOSTNAME and the vkernel's uname -n are the container's.
    assert_eq!(lines[0], lines[1], "{}", text(&o));
    // --user: the ids the vprocs see.
    let o = sh(
        "user",
        &format!("$RUN --user 1000:1001 {BB} sh -c 'echo $(id -u) $(id -g); grep ^Uid /proc/self/status'"),
    );
    assert_eq!(
        o.stdout,
        b"1000 1001\nUid:\t1000\t1000\t1000\t1000\n",
        "{}",
        text(&o)
    );
    let o = sh("missing", &format!("$RUN {BB} no-such-program"));
    assert_eq!(o.status.code(), Some(127), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("executable file not found"),
        "{}",
        text(&o)
    );
}

/// `--init`: podman runs catatonit (/run/podman-init) first, which makes itself a child
/// subreaper; an orphan's end is collected by it and the command's status
/// is the container's.
#[test]
fn init_adopts_orphans() {
    if ready("init_adopts_orphans").is_none() {
        return;
    }
    let o = sh(
        "init",
        &format!("$RUN --init {BB} sh -c '(sleep 0.2; echo orphan done) & echo parent $(cat /proc/$PPID/comm); exit 4'"),
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("parent podman-init"),
        "{}",
        text(&o)
    );
}

#[test]
fn stdin_is_piped_in() {
    if ready("stdin_is_piped_in").is_none() {
        return;
    }
    let o = sh(
        "stdin",
        &format!("printf 'line one\\nline two\\n' | $RUN -i {BB} sh -c 'cat; echo end'"),
    );
    assert_eq!(o.stdout, b"line one\nline two\nend\n", "{}", text(&o));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn it_gives_a_terminal() {
    if ready("it_gives_a_terminal").is_none() {
        return;
    }
    // script(1) gives podman a pty; podman -it gives the container one
    // through --console-socket.
    let o = sh(
        "-it",
        &format!(
            "(sleep 1; echo 'echo hello $((6 * 7)); [ -t 0 ] && echo stdin-is-a-tty'; \
             echo 'exit 4'; sleep 5) | script -qec \"$RUN -it {BB} sh\" /dev/null"
        ),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("hello 42"), "{}", text(&o));
    assert!(out.contains("stdin-is-a-tty"), "{}", text(&o));
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
}

#[test]
fn detached_exec_kill_and_rm() {
    if ready("detached_exec_kill_and_rm").is_none() {
        return;
    }
    let name = format!("vkoci-test-{}", std::process::id());
    let o = sh(
        "run -d, exec, kill, rm",
        &format!(
            r#"P="podman --runtime $RT"; n={name}
            $P rm -f $n >/dev/null 2>&1
            id=$($P run -d --name $n --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
                {BB} sh -c 'echo started; trap "echo got-term; exit 7" TERM; while true; do sleep 0.1; done') || exit 101
            sleep 1
            echo "state: $($P inspect $n --format '{{{{.State.Status}}}}')"
            $P exec $n sh -c 'echo from-exec; exit 5'
            echo "exec: $?"
            $P kill -s TERM $n >/dev/null
            $P wait $n >/dev/null
            echo "exit: $($P inspect $n --format '{{{{.State.ExitCode}}}}')"
            $P logs $n
            $P rm $n >/dev/null && echo removed
            test -e /run/vkernel-oci/$id && echo "left behind: $id"
            id=$($P run -d --name $n --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 {BB} sleep 100)
            $P kill $n >/dev/null
            $P wait $n >/dev/null
            echo "killed: $($P inspect $n --format '{{{{.State.ExitCode}}}}')"
            $P rm $n >/dev/null && echo removed
            test -e /run/vkernel-oci/$id && echo "left behind: $id"
            true"#
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "state: running\nfrom-exec\nexec: 5\nexit: 7\nstarted\ngot-term\nremoved\n\
         killed: 137\nremoved\n",
        "{}",
        text(&o)
    );
}

#[test]
fn exec_runs_inside_the_container() {
    if ready("exec_runs_inside_the_container").is_none() {
        return;
    }
    let name = format!("vkoci-exec-{}", std::process::id());
    let o = sh(
        "exec inside",
        &format!(
            r#"P="podman --runtime $RT"; n={name}
            $P rm -f $n >/dev/null 2>&1
            $P run -d --name $n --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
                {BB} sh -c 'echo from-init >/tmp/mark; sleep 1000' >/dev/null || exit 101
            $P exec $n sh -c 'while [ ! -e /tmp/mark ]; do sleep 0.05; done; cat /tmp/mark; \
                busybox ps | grep -q "[s]leep 1000" && echo ps-sees-init; \
                test -d /proc/100 && echo proc-sees-init; exit 3'
            echo "exec: $?"
            printf 'piped in\n' | $P exec -i $n sh -c 'cat; echo end'
            $P exec $n no-such-program 2>/dev/null
            echo "missing: $?"
            (sleep 1; echo 'echo tty $((6 * 7)); [ -t 0 ] && echo stdin-is-a-tty'; echo 'sleep 100'; \
                sleep 1; printf '\003'; sleep 1; echo 'echo after-ctrl-c $?'; echo 'exit 4'; sleep 3) \
                | script -qec "$P exec -it $n sh" /dev/null >$n.it 2>&1
            echo "it: $?"
            grep -q 'tty 42' $n.it && echo it-ran; grep -q stdin-is-a-tty $n.it && echo it-tty
            grep -q 'after-ctrl-c 130' $n.it && echo it-ctrl-c; rm -f $n.it
            $P exec $n sleep 1000 >/dev/null 2>&1 & bg=$!
            sleep 1
            $P exec $n sh -c 'kill -TERM 100; sleep 5' >/dev/null 2>&1
            $P wait $n >/dev/null
            wait $bg; echo "killed with the container: $?"
            echo "exit: $($P inspect $n --format '{{{{.State.ExitCode}}}}')"
            $P rm $n >/dev/null && echo removed
            true"#
        ),
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "from-init\nps-sees-init\nproc-sees-init\nexec: 3\npiped in\nend\nmissing: 127\n\
         it: 4\nit-ran\nit-tty\nit-ctrl-c\nkilled with the container: 137\nexit: 143\nremoved\n",
        "{}",
        text(&o)
    );
}

#[test]
fn a_dynamic_python() {
    if ready("a_dynamic_python").is_none() {
        return;
    }
    let o = sh(
        "python3",
        &format!(
            "$RUN {PY} python3 -c 'import os, sys, json; print(json.dumps([os.getcwd(), sys.argv[0]])); sys.exit(9)'"
        ),
    );
    assert_eq!(o.stdout, b"[\"/\", \"-c\"]\n", "{}", text(&o));
    assert_eq!(o.status.code(), Some(9), "{}", text(&o));
}

#[test]
fn a_memory_limit_is_the_guest_ram() {
    if ready("a_memory_limit_is_the_guest_ram").is_none() {
        return;
    }
    let hog =
        "x = []\nfor i in range(64):\n    x.append(bytearray(8 << 20))\nprint('allocated 512 MiB')";
    let o = sh(
        "memory hog",
        &format!("$RUN --memory 96m {PY} python3 -c \"{hog}\""),
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("allocated"),
        "{}",
        text(&o)
    );
    let o = sh(
        "within the limit",
        &format!("$RUN --memory 96m {PY} python3 -c \"x = bytearray(16 << 20); print('ok')\""),
    );
    assert_eq!(o.stdout, b"ok\n", "{}", text(&o));
}
