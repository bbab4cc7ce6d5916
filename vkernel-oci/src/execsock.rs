//! The container's control socket: how `exec` runs a process *inside* the
//! running container's vkernel.
//!
//! The vkernel process serves `exec.sock` (mode 0600) in the container's
//! state directory on a thread of its own ([`serve`]). `exec` connects
//! ([`request`]) and sends, in one message, a 4-byte length and its stdio
//! (three fds, SCM_RIGHTS: its own 0-2, or a pty's slave), then the
//! [`ExecRequest`] as JSON. The vkernel looks the program up in the
//! container's tree, adds it to its process table through the library's
//! [`Spawner`] and answers one JSON line, `{"pid":N}` (the vproc's pid) or
//! `{"error":"...","code":127}`; when the vproc ends, a second line
//! `{"status":N}` (its code, or 128 + the signal; 137 when the container
//! stopped first). Bytes the client sends after the request are signal
//! numbers for the vproc (`exec` forwards the signals it gets), or for it
//! and its descendants when its stdio is a terminal (Ctrl-C).

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};
use vkernel::linux::fs::Fs;
use vkernel::linux::kernel::{SpawnRequest, Spawner};
use vkernel::linux::stdio::ConsoleStdio;

use crate::plan::Plan;
use crate::rootfs::{self, RootfsError};

/// The socket's name in the state directory.
pub const EXEC_SOCKET: &str = "exec.sock";

/// Longest request accepted (args and environment).
const MAX_REQUEST: usize = 1 << 20;

/// How long `exec` retries a socket that is not there yet (a container
/// that has just started).
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// Errors of the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ExecSockError {
    /// The socket could not be made.
    #[error("control socket {path}: {source} (is the state directory writable?)")]
    Bind {
        /// Its path.
        path: String,
        /// The host error.
        source: std::io::Error,
    },
    /// The container's vkernel does not answer.
    #[error("control socket {path}: {source} (the container's vkernel is gone or was started by an older vkernel-oci: restart the container)")]
    Connect {
        /// Its path.
        path: String,
        /// The host error.
        source: std::io::Error,
    },
    /// The exchange failed.
    #[error("control socket: {0} (the container's vkernel ended?)")]
    Io(#[from] std::io::Error),
    /// Sending the fds failed.
    #[error("control socket: sending the stdio failed: {0}")]
    Send(nix::Error),
    /// A request or a reply is damaged.
    #[error("control socket: bad message: {0}")]
    Bad(String),
    /// The vkernel could not start the process.
    #[error("{why}")]
    Refused {
        /// Why.
        why: String,
        /// The exit status to report (127: not found, 126: cannot run).
        code: u8,
    },
}

/// The process `exec` asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecRequest {
    /// argv (argv[0] looked up in the `PATH` of `env`).
    pub args: Vec<String>,
    /// `NAME=value` strings.
    pub env: Vec<String>,
    /// Its working directory in the container.
    pub cwd: String,
    /// The user id asked for.
    pub uid: u32,
    /// The group id asked for.
    pub gid: u32,
    /// Its stdio is a terminal (the fds are a pty's slave).
    pub terminal: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Reply {
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u8>,
}

/// Serve `dir/exec.sock` for the run of `spawner`'s kernel, whose tree is
/// `fs` and whose container is `plan`, on a thread of its own. Returns
/// once the socket listens.
pub fn serve(
    dir: &Path,
    spawner: Spawner,
    plan: Plan,
    fs: Arc<Fs>,
) -> Result<PathBuf, ExecSockError> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(EXEC_SOCKET);
    let err = |source| ExecSockError::Bind {
        path: path.display().to_string(),
        source,
    };
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(err)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    let plan = Arc::new(plan);
    std::thread::Builder::new()
        .name("vkernel-exec".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (s, p, f) = (spawner.clone(), plan.clone(), fs.clone());
                let r = std::thread::Builder::new()
                    .name("vkernel-exec-conn".into())
                    .spawn(move || {
                        if let Err(e) = handle(conn, &s, &p, &f) {
                            log::warn!("exec: {e}");
                        }
                    });
                if let Err(e) = r {
                    log::warn!("exec: no thread for a connection: {e}");
                }
            }
        })
        .map_err(err)?;
    Ok(path)
}

/// One `exec`: receive, spawn, answer, wait, answer.
fn handle(
    conn: UnixStream,
    spawner: &Spawner,
    plan: &Plan,
    fs: &Arc<Fs>,
) -> Result<(), ExecSockError> {
    let (req, fds) = receive(&conn)?;
    // On a terminal a signal (Ctrl-C) is for the process and its
    // descendants (its jobs); else for the process, as runc forwards.
    let terminal = req.terminal;
    let mut out = &conn;
    let send = |out: &mut &UnixStream, r: &Reply| -> Result<(), ExecSockError> {
        let mut line = serde_json::to_vec(r).map_err(|e| ExecSockError::Bad(e.to_string()))?;
        line.push(b'\n');
        out.write_all(&line)?;
        Ok(())
    };
    let pid = match start(req, fds, spawner, plan, fs) {
        Ok(pid) => pid,
        Err(ExecSockError::Refused { why, code }) => {
            return send(
                &mut out,
                &Reply {
                    error: Some(why),
                    code: Some(code),
                    ..Reply::default()
                },
            )
        }
        Err(e) => {
            let r = Reply {
                error: Some(e.to_string()),
                code: Some(1),
                ..Reply::default()
            };
            return send(&mut out, &r);
        }
    };
    // The client may be gone (--detach without a waiter): the process runs
    // on regardless, its status is collected below.
    let _ = send(
        &mut out,
        &Reply {
            pid: Some(pid),
            ..Reply::default()
        },
    );
    let _ = conn.set_nonblocking(true);
    let mut signals_open = true;
    let status = loop {
        match spawner.wait_timeout(pid, Duration::from_millis(100)) {
            Ok(Some(s)) => break s.code(),
            Ok(None) => {}
            Err(_) => break 137,
        }
        if signals_open {
            let mut b = [0u8; 16];
            match (&conn).read(&mut b) {
                Ok(0) => signals_open = false,
                Ok(n) => {
                    for &sig in &b[..n] {
                        if terminal {
                            spawner.signal_tree(pid, i32::from(sig));
                        } else {
                            spawner.signal(pid, i32::from(sig));
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => signals_open = false,
            }
        }
    };
    let _ = conn.set_nonblocking(false);
    let _ = send(
        &mut out,
        &Reply {
            status: Some(u8::try_from(status & 0xff).unwrap_or(255)),
            ..Reply::default()
        },
    );
    Ok(())
}

/// Look the program up and add it to the kernel.
fn start(
    req: ExecRequest,
    fds: [OwnedFd; 3],
    spawner: &Spawner,
    plan: &Plan,
    fs: &Arc<Fs>,
) -> Result<i32, ExecSockError> {
    if req.args.is_empty() {
        return Err(ExecSockError::Refused {
            why: "exec: no command given (args is empty)".into(),
            code: 1,
        });
    }
    let lookup = Plan {
        args: req.args.clone(),
        env: req.env.clone(),
        cwd: req.cwd.clone(),
        ..plan.clone()
    };
    let (_, path) = rootfs::find_program(fs, &lookup).map_err(|e| {
        let code = match e {
            RootfsError::NotFound(_) => 127,
            RootfsError::CannotRun { .. } => 126,
            _ => 1,
        };
        ExecSockError::Refused {
            why: e.to_string(),
            code,
        }
    })?;
    if (req.uid, req.gid) != (plan.uid, plan.gid) {
        log::info!(
            "exec --user {}:{}: the vkernel has one identity, the process runs as {}:{}",
            req.uid,
            req.gid,
            plan.uid,
            plan.gid
        );
    }
    let [i, o, e] = fds;
    let stdio = ConsoleStdio::with_fds(i, o, e).map_err(|e| ExecSockError::Refused {
        why: format!("exec: its stdio: {e}"),
        code: 1,
    })?;
    let pid = spawner
        .spawn(SpawnRequest {
            program: path.into_bytes(),
            argv: req.args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            envp: req.env.iter().map(|v| v.as_bytes().to_vec()).collect(),
            cwd: req.cwd.into_bytes(),
            stdio: Box::new(crate::init::Container(stdio)),
        })
        .map_err(|e| ExecSockError::Refused {
            why: format!("exec: {e}"),
            code: 126,
        })?;
    Ok(pid)
}

/// The request and its three fds.
fn receive(conn: &UnixStream) -> Result<(ExecRequest, [OwnedFd; 3]), ExecSockError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    let mut fds: Vec<OwnedFd> = Vec::new();
    {
        let mut iov = [IoSliceMut::new(&mut len)];
        let mut space = nix::cmsg_space!([RawFd; 3]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| ExecSockError::Io(e.into()))?;
        got += msg.bytes;
        for c in msg.cmsgs().map_err(|e| ExecSockError::Io(e.into()))? {
            if let ControlMessageOwned::ScmRights(v) = c {
                for fd in v {
                    // SAFETY: the fd was just received: nothing else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
    }
    if got < 4 {
        (&*conn).read_exact(&mut len[got..])?;
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_REQUEST {
        return Err(ExecSockError::Bad(format!("a request of {n} bytes")));
    }
    let mut body = vec![0u8; n];
    (&*conn).read_exact(&mut body)?;
    let req: ExecRequest =
        serde_json::from_slice(&body).map_err(|e| ExecSockError::Bad(e.to_string()))?;
    let fds: [OwnedFd; 3] = fds
        .try_into()
        .map_err(|v: Vec<OwnedFd>| ExecSockError::Bad(format!("{} fds instead of 3", v.len())))?;
    Ok((req, fds))
}

/// An exec that was started: read its pid, then its status.
pub struct Started {
    conn: BufReader<UnixStream>,
    /// The vproc's pid in the container.
    pub pid: i32,
}

impl Started {
    /// Wait for the process's end: its status (137 when the container's
    /// vkernel ended first).
    pub fn wait(mut self) -> u8 {
        let mut line = String::new();
        match self.conn.read_line(&mut line) {
            Ok(n) if n > 0 => serde_json::from_str::<Reply>(&line)
                .ok()
                .and_then(|r| r.status)
                .unwrap_or(137),
            _ => 137,
        }
    }

    /// The socket (to forward signals: one byte each).
    pub fn socket(&self) -> &UnixStream {
        self.conn.get_ref()
    }
}

/// Connect to `sock`, send `req` with `stdio` as the process's fds 0-2,
/// and read the pid (or why it did not start).
pub fn request(
    sock: &Path,
    req: &ExecRequest,
    stdio: [BorrowedFd<'_>; 3],
) -> Result<Started, ExecSockError> {
    let deadline = Instant::now() + CONNECT_WAIT;
    let conn = loop {
        match UnixStream::connect(sock) {
            Ok(c) => break c,
            Err(e)
                if Instant::now() < deadline
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(source) => {
                return Err(ExecSockError::Connect {
                    path: sock.display().to_string(),
                    source,
                })
            }
        }
    };
    let body = serde_json::to_vec(req).map_err(|e| ExecSockError::Bad(e.to_string()))?;
    let len = u32::try_from(body.len())
        .map_err(|_| ExecSockError::Bad("request too large".into()))?
        .to_le_bytes();
    let fds = stdio.map(|f| f.as_raw_fd());
    let n = sendmsg::<()>(
        conn.as_raw_fd(),
        &[IoSlice::new(&len)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(ExecSockError::Send)?;
    if n < len.len() {
        (&conn).write_all(&len[n..])?;
    }
    (&conn).write_all(&body)?;
    let mut conn = BufReader::new(conn);
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let r: Reply = serde_json::from_str(&line).map_err(|e| {
        ExecSockError::Bad(format!("{e} in {line:?} (the container's vkernel ended?)"))
    })?;
    match (r.pid, r.error) {
        (Some(pid), _) => Ok(Started { conn, pid }),
        (None, Some(why)) => Err(ExecSockError::Refused {
            why,
            code: r.code.unwrap_or(1),
        }),
        (None, None) => Err(ExecSockError::Bad(line)),
    }
}

/// The signals `exec` passes on to its process, as runc's exec does.
const FORWARDED: [nix::sys::signal::Signal; 6] = [
    nix::sys::signal::Signal::SIGTERM,
    nix::sys::signal::Signal::SIGINT,
    nix::sys::signal::Signal::SIGHUP,
    nix::sys::signal::Signal::SIGQUIT,
    nix::sys::signal::Signal::SIGUSR1,
    nix::sys::signal::Signal::SIGUSR2,
];

/// From now on, send the [`FORWARDED`] signals this process gets to the
/// exec'd process over `sock` (a thread waits for them; they are blocked
/// everywhere else). Best effort: without a thread they keep their
/// default action.
pub fn forward_signals(sock: &UnixStream) {
    use nix::sys::signal::{SigSet, SigmaskHow};
    let Ok(sock) = sock.try_clone() else { return };
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    if nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).is_err() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("exec-signals".into())
        .spawn(move || loop {
            let Ok(sig) = set.wait() else { return };
            let Ok(b) = u8::try_from(sig as i32) else {
                continue;
            };
            if (&sock).write_all(&[b]).is_err() {
                return;
            }
        });
    if spawned.is_err() {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    }
}
