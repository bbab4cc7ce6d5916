//! The container's life cycle: `create`, `start`, `state`, `kill`,
//! `delete`, as runc has them.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::Spec;

use crate::hooks::{self, HookError, Point};
use crate::plan::{Plan, PlanError};
use crate::signals::{self, SignalError};
use crate::spawn::{self, LogArgs, SpawnError};
use crate::state::{self, Record, StateError, Status, EXEC_FIFO};

/// How long `start` waits for a created vkernel to take the FIFO.
const START_WAIT: Duration = Duration::from_secs(30);
/// How long `delete --force` waits for a killed vkernel to end.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Errors of the life-cycle commands.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The state directory.
    #[error(transparent)]
    State(#[from] StateError),
    /// config.json could not be read.
    #[error("{path}: {source} (give --bundle, the directory holding config.json)")]
    Spec {
        /// The file.
        path: String,
        /// The parse error.
        source: oci_spec::OciSpecError,
    },
    /// exec's process.json could not be read.
    #[error("--process {path}: {why} (give a process.json as the runtime spec's `process`)")]
    Process {
        /// The file.
        path: String,
        /// What failed.
        why: String,
    },
    /// config.json asks for what the vkernel cannot give.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The vkernel process did not start.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// A hook failed.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// A bad signal.
    #[error(transparent)]
    Signal(#[from] SignalError),
    /// A command the container's status does not allow.
    #[error("container {id} is {status}: {what}")]
    Status {
        /// The container.
        id: String,
        /// Its status.
        status: &'static str,
        /// What to do.
        what: &'static str,
    },
    /// The exec FIFO.
    #[error("exec FIFO {path}: {source} (`delete --force` the container and create it again)")]
    Fifo {
        /// The FIFO.
        path: String,
        /// The host error.
        source: std::io::Error,
    },
    /// The vkernel process ended before `start` (its error is in the log).
    #[error(
        "container {0}'s vkernel ended before start (see --log): delete it and create it again"
    )]
    DiedBeforeStart(String),
    /// A file (pid file, state directory) could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The host error.
        source: std::io::Error,
    },
    /// `exec` could not run its process in the container.
    #[error(transparent)]
    Exec(#[from] crate::execsock::ExecSockError),
    /// kill(2) failed.
    #[error("cannot signal container {id} (pid {pid}): {source}")]
    Kill {
        /// The container.
        id: String,
        /// The vkernel's pid.
        pid: i32,
        /// The host error.
        source: std::io::Error,
    },
}

impl LifecycleError {
    /// The exit status to report: 127 or 126 when exec's program cannot
    /// be found or run (as runc), else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            LifecycleError::Exec(crate::execsock::ExecSockError::Refused { code, .. }) => *code,
            _ => 1,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LifecycleError + '_ {
    move |source| LifecycleError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The name of a status in messages.
pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Created => "created",
        Status::Running => "running",
        Status::Stopped => "stopped",
    }
}

/// Read `bundle/config.json` and translate it.
pub fn load_spec(bundle: &Path) -> Result<(Spec, Plan), LifecycleError> {
    let path = bundle.join("config.json");
    let spec = Spec::load(&path).map_err(|source| LifecycleError::Spec {
        path: path.display().to_string(),
        source,
    })?;
    let plan = Plan::from_spec(&spec, bundle)?;
    for n in &plan.notes {
        log::info!("{n}");
    }
    Ok((spec, plan))
}

/// What `create` (and `run`) are given.
pub struct CreateArgs<'a> {
    /// `--root`.
    pub root: &'a Path,
    /// The container id.
    pub id: &'a str,
    /// `--bundle`.
    pub bundle: &'a Path,
    /// `--pid-file`.
    pub pid_file: Option<&'a Path>,
    /// `--console-socket`.
    pub console_socket: Option<&'a Path>,
    /// The log, for the vkernel process.
    pub log: &'a LogArgs,
}

/// `create`: the vkernel process starts and waits on the exec FIFO;
/// the record and the pid file are written; the create hooks run.
/// Returns the child (for `run`, which waits for it).
pub fn create(a: &CreateArgs) -> Result<std::process::Child, LifecycleError> {
    let dir = state::container_dir(a.root, a.id)?;
    let bundle = std::fs::canonicalize(a.bundle).map_err(io(a.bundle))?;
    let (spec, plan) = load_spec(&bundle)?;
    std::fs::create_dir_all(a.root).map_err(io(a.root))?;
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(StateError::Exists(a.id.to_string()).into())
        }
        Err(e) => return Err(io(&dir)(e)),
    }
    let r = create_in(a, &dir, &bundle, &spec, &plan);
    if r.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    r
}

fn create_in(
    a: &CreateArgs,
    dir: &Path,
    bundle: &Path,
    spec: &Spec,
    plan: &Plan,
) -> Result<std::process::Child, LifecycleError> {
    let fifo = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|e| {
        LifecycleError::Fifo {
            path: fifo.display().to_string(),
            source: e.into(),
        }
    })?;
    let mut child = spawn::spawn(plan, a.log, Some(&fifo), a.console_socket)?;
    let pid = i32::try_from(child.id()).expect("pids fit in i32");
    let rec = Record {
        id: a.id.to_string(),
        pid,
        start_time: state::proc_stat(pid).map_or(0, |s| s.1),
        bundle: bundle.to_path_buf(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        created: state::now_secs(),
    };
    let done = (|| {
        rec.save(dir)?;
        if let Some(p) = a.pid_file {
            write_pid_file(p, pid)?;
        }
        let st = serde_json::to_vec(&rec.oci_state(Status::Created)).expect("plain data");
        for point in [
            Point::Prestart,
            Point::CreateRuntime,
            Point::CreateContainer,
        ] {
            hooks::run(point, spec.hooks().as_ref(), &st)?;
        }
        Ok(())
    })();
    if let Err(e) = done {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    Ok(child)
}

/// Write `pid` to `path` as runc does (atomically, no newline).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<(), LifecycleError> {
    let tmp = PathBuf::from(format!("{}.vkernel-tmp", path.display()));
    std::fs::write(&tmp, pid.to_string()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Load container `id`'s record and state directory.
pub fn load(root: &Path, id: &str) -> Result<(PathBuf, Record), LifecycleError> {
    let dir = state::container_dir(root, id)?;
    let rec = Record::load(&dir, id)?;
    Ok((dir, rec))
}

/// `start`: let a created container's vkernel run its process.
pub fn start(root: &Path, id: &str) -> Result<(), LifecycleError> {
    let (dir, rec) = load(root, id)?;
    let status = rec.status(&dir);
    if status != Status::Created {
        return Err(LifecycleError::Status {
            id: id.into(),
            status: status_name(status),
            what: "only a created container can be started",
        });
    }
    let spec = Spec::load(rec.bundle.join("config.json")).ok();
    let hooks = spec.as_ref().and_then(|s| s.hooks().clone());
    let st = serde_json::to_vec(&rec.oci_state(Status::Created)).expect("plain data");
    hooks::run(Point::StartContainer, hooks.as_ref(), &st)?;
    let fifo = dir.join(EXEC_FIFO);
    let fifo_err = |source| LifecycleError::Fifo {
        path: fifo.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .map_err(fifo_err)?;
    let deadline = Instant::now() + START_WAIT;
    let mut b = [0u8; 1];
    loop {
        match f.read(&mut b) {
            Ok(1) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(fifo_err(e)),
        }
        if !rec.alive() || Instant::now() > deadline {
            return Err(LifecycleError::DiedBeforeStart(id.into()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::fs::remove_file(&fifo).map_err(fifo_err)?;
    let st = serde_json::to_vec(&rec.oci_state(Status::Running)).expect("plain data");
    if let Err(e) = hooks::run(Point::Poststart, hooks.as_ref(), &st) {
        // As runc: a failed poststart hook is logged; the container runs.
        log::warn!("{e}");
    }
    Ok(())
}

/// `state`: runc's JSON for the container.
pub fn state_json(root: &Path, id: &str) -> Result<String, LifecycleError> {
    let (dir, rec) = load(root, id)?;
    let st = rec.oci_state(rec.status(&dir));
    Ok(serde_json::to_string_pretty(&st).expect("plain data"))
}

/// `kill`: the signal goes to the vkernel process, which forwards it to
/// the container's first process (SIGKILL ends the vkernel and every
/// vproc at once).
pub fn kill(root: &Path, id: &str, signal: &str, all: bool) -> Result<(), LifecycleError> {
    let sig = signals::parse(signal)?;
    let (dir, rec) = load(root, id)?;
    let status = rec.status(&dir);
    if status == Status::Stopped {
        if all {
            return Ok(());
        }
        return Err(LifecycleError::Status {
            id: id.into(),
            status: "stopped",
            what: "container not running (nothing to signal)",
        });
    }
    // SAFETY: kill has no memory effects; the pid is the live vkernel
    // process the record names (checked by its start time just above).
    if unsafe { libc::kill(rec.pid, sig) } != 0 {
        return Err(LifecycleError::Kill {
            id: id.into(),
            pid: rec.pid,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// `delete`: remove a stopped or created container (a created one's
/// vkernel, which never ran anything, is killed, as runc does; a running
/// one only with `force`); the poststop hooks run.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), LifecycleError> {
    let (dir, rec) = match load(root, id) {
        Ok(x) => x,
        Err(LifecycleError::State(StateError::NotFound { .. })) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let status = rec.status(&dir);
    if status != Status::Stopped {
        if status == Status::Running && !force {
            return Err(LifecycleError::Status {
                id: id.into(),
                status: status_name(status),
                what: "stop it first (kill), or delete it with --force",
            });
        }
        // SAFETY: as in `kill`: the record's live process.
        unsafe { libc::kill(rec.pid, libc::SIGKILL) };
        let deadline = Instant::now() + KILL_WAIT;
        while rec.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if let Ok(spec) = Spec::load(rec.bundle.join("config.json")) {
        let st = serde_json::to_vec(&rec.oci_state(Status::Stopped)).expect("plain data");
        if let Err(e) = hooks::run(Point::Poststop, spec.hooks().as_ref(), &st) {
            // As runc: poststop failures are logged, the delete goes on.
            log::warn!("{e}");
        }
    }
    std::fs::remove_dir_all(&dir).map_err(io(&dir))
}
