//! `run` (create + start + wait), `exec` (another process for a running
//! container), `ps` and `features`.
//!
//! `exec` runs the process inside the container's vkernel, through its
//! control socket ([`crate::execsock`]): a vproc of the same kernel, with
//! the container's processes, files (its overlay) and loopback network.

use std::path::Path;
use std::process::Child;

use oci_spec::runtime::Process;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use crate::console::{self, ConsoleError};
use crate::execsock::{self, ExecRequest};
use crate::lifecycle::{self, status_name, CreateArgs, LifecycleError};
use crate::plan::PlanError;
use crate::spawn::{LogArgs, SpawnError};
use crate::state::Status;

/// The exit status of a finished vkernel process, as runc reports a
/// container's: its code, or 128 + the signal that killed it.
pub fn exit_code(child: &mut Child) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match child.wait() {
        Ok(st) => match (st.code(), st.signal()) {
            (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(255),
            (None, Some(s)) => u8::try_from(128 + (s & 0x7f)).unwrap_or(255),
            _ => 255,
        },
        Err(_) => 255,
    }
}

/// `run`: create and start; then (unless `detach`) wait for the
/// container's end, delete it (unless `keep`) and return its status.
pub fn run(a: &CreateArgs, detach: bool, keep: bool) -> Result<u8, LifecycleError> {
    let mut child = lifecycle::create(a)?;
    if let Err(e) = lifecycle::start(a.root, a.id) {
        let _ = lifecycle::delete(a.root, a.id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let code = exit_code(&mut child);
    if !keep {
        lifecycle::delete(a.root, a.id, true)?;
    }
    Ok(code)
}

/// What `exec` is given.
pub struct ExecArgs<'a> {
    /// `--root`.
    pub root: &'a Path,
    /// The container.
    pub id: &'a str,
    /// `--process`: a process.json, or None for `command`.
    pub process: Option<&'a Path>,
    /// The command (without `--process`).
    pub command: &'a [String],
    /// `--env` additions (without `--process`).
    pub env: &'a [(String, String)],
    /// `--cwd` (without `--process`).
    pub cwd: Option<&'a Path>,
    /// `--tty` (without `--process`).
    pub tty: bool,
    /// `--user UID[:GID]` (without `--process`).
    pub user: Option<(u32, Option<u32>)>,
    /// `--pid-file`.
    pub pid_file: Option<&'a Path>,
    /// `--console-socket`.
    pub console_socket: Option<&'a Path>,
    /// `--detach`.
    pub detach: bool,
    /// The log, for the vkernel process.
    pub log: &'a LogArgs,
}

/// `exec`: run another process inside a running container's vkernel.
/// Returns its exit status (0 when detached).
pub fn exec(a: &ExecArgs) -> Result<u8, LifecycleError> {
    let (dir, rec) = lifecycle::load(a.root, a.id)?;
    let status = rec.status(&dir);
    if status != Status::Running {
        return Err(LifecycleError::Status {
            id: a.id.into(),
            status: status_name(status),
            what: "exec needs a running container",
        });
    }
    let (_, mut plan) = lifecycle::load_spec(&rec.bundle)?;
    let mut notes = Vec::new();
    match a.process {
        Some(p) => {
            let process: Process = std::fs::read(p)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_slice(&t).map_err(|e| e.to_string()))
                .map_err(|why| LifecycleError::Process {
                    path: p.display().to_string(),
                    why,
                })?;
            plan.set_process(&process, &mut notes)?;
        }
        None => {
            if a.command.is_empty() {
                return Err(PlanError::NoArgs.into());
            }
            plan.args = a.command.to_vec();
            plan.env
                .extend(a.env.iter().map(|(k, v)| format!("{k}={v}")));
            if let Some(c) = a.cwd {
                plan.cwd = c.display().to_string();
            }
            plan.terminal = a.tty;
            if let Some((uid, gid)) = a.user {
                plan.uid = uid;
                plan.gid = gid.unwrap_or(plan.gid);
            }
        }
    }
    for n in &notes {
        log::info!("{n}");
    }
    let req = ExecRequest {
        args: plan.args.clone(),
        env: plan.env.clone(),
        cwd: plan.cwd.clone(),
        uid: plan.uid,
        gid: plan.gid,
        terminal: plan.terminal,
    };
    let sock = dir.join(execsock::EXEC_SOCKET);
    let (started, slave) = if plan.terminal {
        let socket = a
            .console_socket
            .ok_or(SpawnError::Console(ConsoleError::NoSocket))?;
        let pty = console::send_pty(socket, plan.console_size).map_err(SpawnError::Console)?;
        let s = pty.slave.as_fd();
        (execsock::request(&sock, &req, [s, s, s])?, Some(pty.slave))
    } else {
        // SAFETY: fds 0-2 stay open for as long as these borrows are used
        // (the request returns before anything could close them).
        let fd = |n| unsafe { BorrowedFd::borrow_raw(n) };
        let started = execsock::request(&sock, &req, [fd(0), fd(1), fd(2)])?;
        (started, None)
    };
    log::info!("exec: pid {} in container {}", started.pid, a.id);
    if a.detach {
        // The pid file names a host process that ends with the exec'd
        // process's status (conmon waits for it): a waiter of our own.
        let waiter = fork_waiter(started, slave)?;
        if let Some(p) = a.pid_file {
            lifecycle::write_pid_file(p, waiter)?;
        }
        return Ok(0);
    }
    if let Some(p) = a.pid_file {
        lifecycle::write_pid_file(p, i32::try_from(std::process::id()).unwrap_or(0))?;
    }
    execsock::forward_signals(started.socket());
    Ok(started.wait())
}

/// A child process that waits for `started`'s end and exits with its
/// status, forwarding the signals it gets; its pid. With a terminal
/// (`slave`), the waiter makes it the controlling terminal of a session
/// of its own, so Ctrl-C there reaches it (and so the process's group).
fn fork_waiter(
    started: execsock::Started,
    slave: Option<std::os::fd::OwnedFd>,
) -> Result<i32, LifecycleError> {
    // SAFETY: exec is single-threaded (no thread was started), so the
    // child may run ordinary code after fork.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            if let Some(t) = &slave {
                // SAFETY: setsid and TIOCSCTTY on a valid fd change only
                // this process's session; failing, Ctrl-C stays inert.
                unsafe {
                    if libc::setsid() >= 0 {
                        libc::ioctl(t.as_raw_fd(), libc::TIOCSCTTY, 0);
                    }
                }
            }
            // Our stdio is the process's (it holds its own copies): let
            // the caller's pipes close when it ends, not when we do.
            if let Ok(null) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                for fd in 0..=2 {
                    // SAFETY: dup2 onto fds 0-2 of this process only.
                    unsafe { libc::dup2(null.as_raw_fd(), fd) };
                }
            }
            execsock::forward_signals(started.socket());
            let code = started.wait();
            drop(slave);
            std::process::exit(i32::from(code));
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(child.as_raw()),
        Err(e) => Err(LifecycleError::Io {
            path: "fork (exec's waiter)".into(),
            source: e.into(),
        }),
    }
}

/// `ps`: the container's host processes (its one vkernel process).
pub fn ps(root: &Path, id: &str, format: &str) -> Result<String, LifecycleError> {
    let (dir, rec) = lifecycle::load(root, id)?;
    let pids: Vec<i32> = if rec.status(&dir) == Status::Stopped {
        Vec::new()
    } else {
        vec![rec.pid]
    };
    if format == "json" {
        return Ok(serde_json::to_string(&pids).expect("plain data"));
    }
    let mut out = String::from("PID CMD\n");
    for p in pids {
        out.push_str(&format!("{p} vkernel-oci\n"));
    }
    Ok(out)
}

/// `features`: what this runtime supports, as runc's JSON.
pub fn features() -> String {
    let v = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["bind", "rbind", "ro", "rw"],
        "linux": {
            "namespaces": [],
            "capabilities": [],
            "cgroup": {"v1": false, "v2": false, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": false},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {
            "org.opencontainers.runtime-spec.features": "vkernel: the vkernel is the sandbox; see docs/OCI.md"
        }
    });
    serde_json::to_string_pretty(&v).expect("plain data")
}
