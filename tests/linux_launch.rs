//! The launch builder (`vkernel::linux::launch::Launch`) does what each of
//! its settings says: arguments and argv[0], environment, root and working
//! directory, vCPUs, exitless syscalls, and clear errors for a missing
//! program or an impossible machine.

mod common;

use common::{have_kvm, host_root, kvm_busybox, vk, BUSYBOX};
use vkernel::linux::launch::{Launch, LaunchError};
use vkernel::linux::stdio::BufferStdio;

#[test]
fn launch_settings_reach_the_program() {
    let test = "launch_settings_reach_the_program";
    if kvm_busybox(test).is_none() {
        return;
    }
    // Arguments, argv[0] and the environment.
    let r = vk(
        Launch::host_program(BUSYBOX)
            .unwrap()
            .argv0("sh")
            .args(["-c", "echo \"$0 $1 $GREETING\"; exit 7", "zero", "one"])
            .env(["GREETING=hello"]),
        b"",
    );
    assert_eq!(r.out().shown(), ("zero one hello\n", 7));
    // A host root and a working directory in it; two vCPUs, exitless off.
    let r = vk(
        Launch::host_program(BUSYBOX)
            .unwrap()
            .args(["sh", "-c", "pwd; nproc >/dev/null; echo ok"])
            .root(host_root())
            .cwd("/usr")
            .cpus(2)
            .exitless(false),
        b"",
    );
    assert_eq!(r.out().shown(), ("/usr\nok\n", 0));
}

#[test]
fn launch_errors_say_what_went_wrong() {
    let test = "launch_errors_say_what_went_wrong";
    let Err(e) = Launch::host_program("/nonexistent/prog") else {
        panic!("a missing program was accepted");
    };
    assert!(matches!(e, LaunchError::Program { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/prog"), "{e}");
    if !have_kvm(test) {
        return;
    }
    // Not an ELF file.
    let e = Launch::bytes(b"#!/bin/sh\n".to_vec(), "/script")
        .run(Box::new(BufferStdio::new(b"")))
        .unwrap_err();
    assert!(matches!(e, LaunchError::Vproc(_)), "{e}");
    assert!(e.to_string().contains("/script"), "{e}");
    // More vCPUs than a machine can have.
    let e = Launch::bytes(Vec::new(), "/x")
        .cpus(100_000)
        .run(Box::new(BufferStdio::new(b"")))
        .unwrap_err();
    assert!(matches!(e, LaunchError::Machine(_)), "{e}");
}
