//! `kernel::Spawner`: a host thread adds processes to a running kernel.
//! They share its process table (`/proc` shows the first vproc, `kill`
//! reaches it), its file tree and overlay (a file the first vproc wrote in
//! /tmp), its loopback network, and get fds 0-2 of their own (captured buffers, or host pipes
//! through `ConsoleStdio::with_fds`); their statuses come back through
//! `Spawner::wait`, and the run's end kills what is left.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{host_root, in_time, kvm_busybox, BUSYBOX};
use vkernel::linux::kernel::{SpawnError, SpawnRequest, Spawner};
use vkernel::linux::launch::Launch;
use vkernel::linux::stdio::{BufferStdio, ConsoleStdio};
use vkernel::linux::ExitStatus;

/// A request to run busybox `sh -c script`.
fn sh(script: &str, stdio: Box<dyn vkernel::linux::stdio::Stdio>) -> SpawnRequest {
    SpawnRequest {
        program: BUSYBOX.as_bytes().to_vec(),
        argv: ["sh", "-c", script]
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect(),
        envp: vec![b"PATH=/bin:/usr/bin".to_vec()],
        cwd: b"/tmp".to_vec(),
        stdio,
    }
}

#[test]
fn spawned_processes_join_the_running_kernel() {
    let test = "spawned_processes_join_the_running_kernel";
    if kvm_busybox(test).is_none() {
        return;
    }
    in_time(test, 120, || {
        let spawner = Spawner::new();
        let launch = Launch::host_program(BUSYBOX)
            .unwrap()
            .args([
                "sh",
                "-c",
                "echo over-loopback | nc -l -p 7777 & echo written-by-init >/tmp/mark; \
                 sleep 60; echo not-killed",
            ])
            .root(host_root())
            .cpus(2)
            .spawner(&spawner);
        let init_out = BufferStdio::new(b"");
        let init_stdout = init_out.stdout.clone();
        let run = std::thread::spawn(move || launch.run(Box::new(init_out)));

        // A first process: output, status, the overlay and the table.
        let io = BufferStdio::new(b"");
        let out = io.stdout.clone();
        let pid = spawner
            .spawn(sh(
                "while [ ! -e /tmp/mark ]; do sleep 0.05; done; cat /tmp/mark; \
                 pwd; test -d /proc/100 && echo sees-init; \
                 tr '\\0' ' ' </proc/100/cmdline; echo; echo $$ >/tmp/spawned; exit 3",
                Box::new(io),
            ))
            .unwrap();
        assert!(pid > 100, "pid {pid}");
        assert_eq!(spawner.wait(pid).unwrap(), ExitStatus::Exited(3));
        let text = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
        assert!(
            text.starts_with("written-by-init\n/tmp\nsees-init\n"),
            "{text}"
        );
        assert!(text.contains("sleep 60"), "{text}");
        // Waited for once: the status is gone.
        assert!(matches!(spawner.wait(pid), Err(SpawnError::Unknown(p)) if p == pid));

        // The kernel's loopback network: the first vproc's server answers.
        let io = BufferStdio::new(b"");
        let out = io.stdout.clone();
        let pid = spawner
            .spawn(sh(
                "until nc 127.0.0.1 7777 </dev/null; do sleep 0.05; done",
                Box::new(io),
            ))
            .unwrap();
        assert_eq!(spawner.wait(pid).unwrap(), ExitStatus::Exited(0));
        assert_eq!(&out.lock().unwrap()[..], b"over-loopback\n");

        // Host pipes as stdin and stdout.
        let (in_r, mut in_w) = std::io::pipe().unwrap();
        let (mut out_r, out_w) = std::io::pipe().unwrap();
        let err_w = out_w.try_clone().unwrap();
        let stdio = ConsoleStdio::with_fds(in_r.into(), out_w.into(), err_w.into()).unwrap();
        let pid2 = spawner
            .spawn(sh("tr a-z A-Z; echo to-stderr >&2", Box::new(stdio)))
            .unwrap();
        in_w.write_all(b"piped in\n").unwrap();
        drop(in_w);
        assert_eq!(spawner.wait(pid2).unwrap(), ExitStatus::Exited(0));
        let mut got = String::new();
        out_r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "PIPED IN\nto-stderr\n");

        // A long one, then a process that kills the first vproc: the run
        // ends and takes the long one with it.
        let long = spawner
            .spawn(sh("sleep 60", Box::new(BufferStdio::new(b""))))
            .unwrap();
        let killer = spawner
            .spawn(sh("kill -TERM 100", Box::new(BufferStdio::new(b""))))
            .unwrap();
        let report = run.join().unwrap().unwrap();
        assert_eq!(report.status, ExitStatus::Signaled(15));
        assert_eq!(
            spawner.wait_timeout(long, Duration::from_secs(5)).unwrap(),
            Some(ExitStatus::Signaled(9))
        );
        assert!(spawner.wait(killer).is_ok());
        assert!(!String::from_utf8_lossy(&init_stdout.lock().unwrap()).contains("not-killed"));
        assert!(!spawner.running());
        // After the end, nothing more runs.
        let e = spawner
            .spawn(sh("true", Box::new(BufferStdio::new(b""))))
            .unwrap_err();
        assert!(matches!(e, SpawnError::Ended), "{e}");
    });
}

#[test]
fn a_missing_program_is_not_spawned() {
    let test = "a_missing_program_is_not_spawned";
    if kvm_busybox(test).is_none() {
        return;
    }
    in_time(test, 60, || {
        let spawner = Spawner::new();
        let launch = Launch::host_program(BUSYBOX)
            .unwrap()
            .args(["sh", "-c", "sleep 30"])
            .root(host_root())
            .spawner(&spawner);
        let run = std::thread::spawn(move || launch.run(Box::new(BufferStdio::new(b""))));
        let mut req = sh("true", Box::new(BufferStdio::new(b"")));
        req.program = b"/nonexistent/prog".to_vec();
        let e = spawner.spawn(req).unwrap_err();
        assert!(matches!(e, SpawnError::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/prog"), "{e}");
        assert!(spawner.signal(100, 9));
        let report = run.join().unwrap().unwrap();
        assert_eq!(report.status, ExitStatus::Signaled(9));
    });
}
