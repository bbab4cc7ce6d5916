//! Adding a process to a running kernel from another host thread: what
//! `vkernel-oci exec` needs to run a command inside a running container.
//!
//! A [`Spawner`] is made before the run and handed to it
//! ([`crate::launch::Launch::spawner`]); while the run lasts,
//! [`Spawner::spawn`] loads a program of the kernel's file tree into a new
//! vproc of the *same* kernel (same process table, file tree and overlay,
//! network, page cache and frames) with fds 0-2 of its own (a
//! [`Stdio`]), and [`Spawner::wait`] returns its exit status. Its parent
//! is the vkernel side ([`PPID`]), as the first vproc's is: it is reaped
//! as soon as it ends, its status kept for `wait`. When the run ends (the
//! first vproc exited), what is left is killed with the rest: `wait` then
//! says SIGKILL, and later spawns fail with [`SpawnError::Ended`].

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{tid, Entry, Kernel, PState, Pid, Policy, Table};
use crate::core::machine::Machine;
use crate::exec::Image;
use crate::files::Wake;
use crate::fs::{Fs, Kind};
use crate::mm::{Kin, Mm};
use crate::stdio::Stdio;
use crate::{Boot, Config, ExitStatus, Vproc, VprocError, PPID};

/// Why a process could not be spawned or waited for.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The run has not started within the wait.
    #[error("the virtual kernel did not start within {0:?}: spawn once its run began")]
    NotStarted(Duration),
    /// The run is over (its first vproc exited).
    #[error("the virtual kernel's run has ended: nothing more can run in it")]
    Ended,
    /// The program is not in the kernel's file tree.
    #[error("{path}: not found in the virtual kernel's file tree (errno {errno}): give a path that exists there")]
    NotFound {
        /// The path.
        path: String,
        /// The lookup's errno.
        errno: i64,
    },
    /// The program is not a regular file.
    #[error("{path}: not a regular file: give a program's path")]
    NotFile {
        /// The path.
        path: String,
    },
    /// The program could not be loaded.
    #[error(transparent)]
    Load(#[from] VprocError),
    /// The process limit ([`super::Options::max_procs`]) is reached.
    #[error("the virtual kernel runs its most processes ({0}): wait for some to end")]
    Limit(usize),
    /// The scheduler refused the new task.
    #[error("the scheduler refused the new process: {0}")]
    Sched(String),
    /// `pid` was not spawned through this spawner (or was waited for).
    #[error("process {0} was not spawned here or was already waited for")]
    Unknown(Pid),
}

/// A process to add to a running kernel.
pub struct SpawnRequest {
    /// The program: a path in the kernel's file tree (relative ones from
    /// `cwd`). An ELF file (a `#!` script: name its interpreter).
    pub program: Vec<u8>,
    /// argv (argv[0] included; empty: the program's path).
    pub argv: Vec<Vec<u8>>,
    /// The environment (`NAME=value`).
    pub envp: Vec<Vec<u8>>,
    /// Its current directory in the tree (one that is not a directory
    /// there: `/`).
    pub cwd: Vec<u8>,
    /// Its fds 0-2.
    pub stdio: Box<dyn Stdio>,
}

/// What a spawned process takes from the first vproc: its kernel's
/// memory, file tree, boot program, unimplemented-call registry and trace
/// setting.
#[derive(Clone)]
pub(crate) struct Template {
    kin: Kin,
    fs: Arc<Fs>,
    boot: Arc<Boot>,
    unimplemented: Arc<crate::diag::Unimplemented>,
    trace: bool,
}

impl Template {
    /// `init`'s, before it first runs.
    pub(crate) fn of(init: &mut Vproc) -> Template {
        // Deref takes the process lock: leave it as it was.
        let held = init.mm.held();
        let kin = init.mm.kin();
        if !held {
            init.mm.unlock();
        }
        Template {
            kin,
            fs: init.fs.clone(),
            boot: init.boot.clone(),
            unimplemented: init.unimplemented.clone(),
            trace: init.trace,
        }
    }
}

/// What a spawn takes from the running kernel.
struct Attached {
    k: Weak<Kernel>,
    machine: Machine,
    tmpl: Template,
}

enum Phase {
    /// The run has not begun.
    Waiting,
    Running(Attached),
    Ended,
}

struct State {
    phase: Phase,
    /// Spawned processes: None while they run, then their status.
    exits: HashMap<Pid, Option<ExitStatus>>,
}

struct Inner {
    st: Mutex<State>,
    cond: Condvar,
}

/// A handle that adds processes to a running kernel from any host thread
/// (see the module docs). Cheap to clone: clones are the same handle.
#[derive(Clone)]
pub struct Spawner(Arc<Inner>);

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spawner")
    }
}

impl Default for Spawner {
    fn default() -> Self {
        Spawner::new()
    }
}

/// How long [`Spawner::spawn`] waits for the run to begin.
const START_WAIT: Duration = Duration::from_secs(30);

impl Spawner {
    /// A spawner for a run that has not started yet: give it to the
    /// launch ([`crate::launch::Launch::spawner`]).
    pub fn new() -> Spawner {
        Spawner(Arc::new(Inner {
            st: Mutex::new(State {
                phase: Phase::Waiting,
                exits: HashMap::new(),
            }),
            cond: Condvar::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Is the run going on now?
    pub fn running(&self) -> bool {
        matches!(self.lock().phase, Phase::Running(_))
    }

    /// The run began (its first vproc is in the table): spawns go to `k`
    /// on `machine`, as `tmpl` says.
    pub(crate) fn attach(&self, k: &Arc<Kernel>, machine: &Machine, tmpl: Template) {
        let mut st = self.lock();
        if matches!(st.phase, Phase::Waiting) {
            st.phase = Phase::Running(Attached {
                k: Arc::downgrade(k),
                machine: machine.clone(),
                tmpl,
            });
        }
        drop(st);
        self.0.cond.notify_all();
    }

    /// The run ended: every spawned process still running was killed with
    /// it.
    pub(crate) fn detach(&self) {
        let mut st = self.lock();
        st.phase = Phase::Ended;
        for s in st.exits.values_mut() {
            s.get_or_insert(ExitStatus::Signaled(crate::signal::SIGKILL));
        }
        drop(st);
        self.0.cond.notify_all();
    }

    /// Process `pid` ended with `status` (the table's lock is held).
    fn exited(&self, pid: Pid, status: ExitStatus) {
        let mut st = self.lock();
        if let Some(s) = st.exits.get_mut(&pid) {
            *s = Some(status);
            drop(st);
            self.0.cond.notify_all();
        }
    }

    /// Load `req.program` into a new process of the running kernel and
    /// make it runnable; returns its pid. Waits for the run to begin (up
    /// to 30 s).
    pub fn spawn(&self, req: SpawnRequest) -> Result<Pid, SpawnError> {
        let deadline = Instant::now() + START_WAIT;
        let (k, machine, tmpl) = {
            let mut st = self.lock();
            loop {
                match &st.phase {
                    Phase::Running(a) => {
                        let k = a.k.upgrade().ok_or(SpawnError::Ended)?;
                        break (k, a.machine.clone(), a.tmpl.clone());
                    }
                    Phase::Ended => return Err(SpawnError::Ended),
                    Phase::Waiting => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Err(SpawnError::NotStarted(START_WAIT));
                        }
                        st = self
                            .0
                            .cond
                            .wait_timeout(st, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
            }
        };
        if k.done.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SpawnError::Ended);
        }
        let pid = {
            let mut t = k.lock();
            if Kernel::alive(&t) >= k.opts.max_procs {
                return Err(SpawnError::Limit(k.opts.max_procs));
            }
            super::thread::alloc_pid(&mut t)
        };
        let mut vp = load(&machine, &tmpl.kin, &tmpl.fs, req, pid, tmpl.trace)?;
        vp.boot = tmpl.boot;
        vp.unimplemented = tmpl.unimplemented;
        vp.k = Some(k.clone());
        let mut t = k.lock();
        if k.done.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SpawnError::Ended);
        }
        let cpu = (0..t.sched.nr_cpus())
            .min_by_key(|&c| t.sched.nr_running(c))
            .unwrap_or(0);
        insert_runnable(&k, &mut t, vp, cpu).map_err(SpawnError::Sched)?;
        self.lock().exits.insert(pid, None);
        k.kick(&t, cpu);
        drop(t);
        k.notify();
        Ok(pid)
    }

    /// Wait until spawned process `pid` ends; its status (SIGKILL if the
    /// run ended first). The status is then forgotten.
    pub fn wait(&self, pid: Pid) -> Result<ExitStatus, SpawnError> {
        loop {
            if let Some(s) = self.wait_timeout(pid, Duration::from_secs(3600))? {
                return Ok(s);
            }
        }
    }

    /// [`Spawner::wait`] for at most `timeout`: None if `pid` still runs.
    pub fn wait_timeout(
        &self,
        pid: Pid,
        timeout: Duration,
    ) -> Result<Option<ExitStatus>, SpawnError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            match st.exits.get(&pid) {
                None => return Err(SpawnError::Unknown(pid)),
                Some(Some(s)) => {
                    let s = *s;
                    st.exits.remove(&pid);
                    return Ok(Some(s));
                }
                Some(None) => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            st = self
                .0
                .cond
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The kernel of the run going on, if one is.
    fn running_kernel(&self) -> Option<Arc<Kernel>> {
        match &self.lock().phase {
            Phase::Running(a) => a.k.upgrade(),
            _ => None,
        }
    }

    /// Send signal `sig` to process `pid` of the running kernel (any
    /// process, as `kill` from outside it; a negative `pid`: that process
    /// group); false if the run is not going on.
    pub fn signal(&self, pid: Pid, sig: i32) -> bool {
        let Some(k) = self.running_kernel() else {
            return false;
        };
        k.signal(pid, sig);
        true
    }

    /// Send `sig` to process `pid` and to every process descended from it:
    /// what Ctrl-C on its terminal reaches (the vkernel keeps no
    /// foreground group for a host terminal; a shell's jobs are its
    /// descendants). False if the run is not going on.
    pub fn signal_tree(&self, pid: Pid, sig: i32) -> bool {
        let Some(k) = self.running_kernel() else {
            return false;
        };
        let tree = {
            let t = k.lock();
            let mut tree = vec![pid];
            let mut i = 0;
            while let Some(&p) = tree.get(i) {
                tree.extend(
                    t.procs
                        .iter()
                        .filter(|(c, e)| **c == e.tgid && e.ppid == p)
                        .map(|(c, _)| *c),
                );
                i += 1;
            }
            tree
        };
        for p in tree {
            k.signal(p, sig);
        }
        true
    }
}

/// The program of `req` loaded into a new vmspace of `machine` sharing
/// `kin`'s frames and page cache, as process `pid`.
fn load(
    machine: &Machine,
    kin: &Kin,
    fs: &Arc<Fs>,
    req: SpawnRequest,
    pid: Pid,
    trace: bool,
) -> Result<Vproc, SpawnError> {
    let path = String::from_utf8_lossy(&req.program).into_owned();
    let cwd = fs
        .resolve(crate::fs::ROOT, &req.cwd, true)
        .ok()
        .filter(|&d| fs.is_dir_handle(d))
        .unwrap_or(crate::fs::ROOT);
    let ino = fs
        .resolve(cwd, &req.program, true)
        .map_err(|errno| SpawnError::NotFound {
            path: path.clone(),
            errno,
        })?;
    if !matches!(fs.inode(ino).kind, Kind::File { .. }) {
        return Err(SpawnError::NotFile { path });
    }
    let image = Image::Disk {
        fs: fs.clone(),
        ino,
    };
    let argv = if req.argv.is_empty() {
        vec![req.program.clone()]
    } else {
        req.argv
    };
    let cfg = Config {
        path: path.clone(),
        exe: path,
        argv,
        envp: req.envp,
        trace,
        ..Config::default()
    };
    let lerr = |source| VprocError::Load {
        path: cfg.path.clone(),
        source,
    };
    let vms = machine
        .vmspace_create()
        .map_err(|e| lerr(crate::mm::MmError::from(e)))?;
    let mm = Mm::new_kin(kin, vms).map_err(lerr)?;
    let mut vp = Vproc::load_into(mm, cfg, image, fs.clone(), req.stdio)?;
    vp.pid = pid;
    vp.thread = crate::thread::ThreadInfo::new(pid);
    vp.cwd = cwd;
    Ok(vp)
}

/// Enter `body` in the table as a runnable process on `cpu`, child of the
/// vkernel side ([`PPID`]), leading a process group of its own in the
/// console's session (as the first vproc).
pub(super) fn insert_runnable(
    k: &Kernel,
    t: &mut Table,
    body: Vproc,
    cpu: usize,
) -> Result<(), String> {
    let pid = body.pid;
    let now = k.now();
    t.sched
        .add_task(tid(pid), Policy::NORMAL, 0, cpu, now)
        .map_err(|e| e.to_string())?;
    t.procs.insert(
        pid,
        Entry {
            ppid: PPID,
            tgid: pid,
            threads: 1,
            exit_signal: body.exit_signal,
            blocked: body.sig.blocked,
            pgid: pid,
            // The console's session, led from outside the vkernel (as a
            // shell leads the session of what it starts): the vproc is no
            // session leader, so opening a terminal does not make it its
            // controlling terminal.
            sid: PPID,
            state: PState::Runnable,
            sig_flag: body.sig_flag.clone(),
            vms: Some(body.mm.vmspace_arc()),
            lock: Some(body.mm.lock_handle()),
            comm: body.comm.clone(),
            cmdline: body.cmdline.clone(),
            seen: super::introspect::Seen::of(&body),
            started: Instant::now(),
            body: Some(Box::new(body)),
            signals: Vec::new(),
            wake_pending: false,
            event_wait: false,
            watchdog_woke: false,
            woken_after_watchdog: false,
            itimers: Default::default(),
            ptimers: std::collections::BTreeMap::new(),
            stop_report: None,
            cont_report: false,
            death: None,
            shared: Vec::new(),
            pdeathsig: 0,
            trace: None,
        },
    );
    t.max_alive = t.max_alive.max(Kernel::alive(t));
    Ok(())
}

impl Kernel {
    /// Process `pid` ended with `status`: tell its spawner, if the host
    /// spawned it.
    pub(super) fn spawned_exit(&self, pid: Pid, status: ExitStatus) {
        if let Some(s) = &self.spawner {
            s.exited(pid, status);
        }
    }
}
