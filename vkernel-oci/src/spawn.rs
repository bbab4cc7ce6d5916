//! Starting the vkernel process: the runtime runs itself again as
//! `vkernel-oci init` (a fresh process, not a fork of a threaded one),
//! hands it the [`Plan`] in its environment, gives it the container's
//! stdio (the runtime's own, or a pty's slave with a console socket) and
//! a session of its own.

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::console::{self, ConsoleError};
use crate::init::PLAN_ENV;
use crate::plan::Plan;

/// Errors of starting the vkernel process.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The terminal could not be set up.
    #[error(transparent)]
    Console(#[from] ConsoleError),
    /// The process could not start.
    #[error("cannot start the vkernel process: {0} (out of processes or memory?)")]
    Start(std::io::Error),
    /// /dev/kvm cannot be opened: no vkernel can run.
    #[error(
        "cannot open /dev/kvm: {0} (vkernel-oci runs each container on KVM: load kvm_intel or \
         kvm_amd, and run the runtime as root or as a member of the kvm group)"
    )]
    Kvm(std::io::Error),
    /// A pty fd could not be duplicated.
    #[error("cannot duplicate the terminal's fd: {0} (out of file descriptors?)")]
    Dup(std::io::Error),
}

/// How the runtime was called, for the child: its log file and format.
#[derive(Clone, Debug, Default)]
pub struct LogArgs {
    /// `--log`.
    pub file: Option<PathBuf>,
    /// `--log-format`.
    pub format: Option<String>,
    /// `--debug`.
    pub debug: bool,
}

/// Can a vkernel run here? (/dev/kvm opens for reading and writing.) The
/// runtime asks before it starts a vkernel process, so `create` and
/// `exec` fail with the reason instead of a container that dies at once.
pub fn check_kvm() -> Result<(), SpawnError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(SpawnError::Kvm)
}

/// Start `vkernel-oci init` for `plan`; with `fifo`, it waits there for
/// `start`. With `plan.terminal`, the terminal's master goes to
/// `console_socket`.
pub fn spawn(
    plan: &Plan,
    log: &LogArgs,
    fifo: Option<&Path>,
    console_socket: Option<&Path>,
) -> Result<Child, SpawnError> {
    check_kvm()?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("vkernel-oci");
    if let Some(f) = &log.file {
        cmd.arg("--log").arg(f);
    }
    if let Some(f) = &log.format {
        cmd.arg("--log-format").arg(f);
    }
    if log.debug {
        cmd.arg("--debug");
    }
    cmd.arg("init");
    if let Some(f) = fifo {
        cmd.arg("--fifo").arg(f);
    }
    let plan_json = serde_json::to_string(plan).expect("a plan is plain data");
    cmd.env(PLAN_ENV, plan_json);
    let terminal = if plan.terminal {
        let socket = console_socket.ok_or(ConsoleError::NoSocket)?;
        let pty = console::send_pty(socket, plan.console_size)?;
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(SpawnError::Dup);
        cmd.stdin(Stdio::from(dup(&pty.slave)?))
            .stdout(Stdio::from(dup(&pty.slave)?))
            .stderr(Stdio::from(dup(&pty.slave)?));
        Some(pty.slave)
    } else {
        None
    };
    let ctty = terminal.is_some();
    let netns = plan.new_netns;
    // SAFETY: the closure runs in the child between fork and exec and
    // calls only async-signal-safe functions (unshare, setsid, ioctl).
    unsafe {
        cmd.pre_exec(move || {
            // Without the privilege (a rootless caller) the vkernel stays
            // in the caller's network namespace: its vprocs reach no host
            // network either way (--net none).
            if netns {
                libc::unshare(libc::CLONE_NEWNET);
            }
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if ctty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(SpawnError::Start)?;
    // Our copy of the slave closes here: the child holds it.
    drop(terminal);
    Ok(child)
}
