//! A Linux-ABI personality for vkernel: runs x86-64 Linux programs, static
//! or dynamically linked, as vprocs.
//!
//! [`Vproc::load`] maps an ELF (non-PIE or PIE, with its dynamic loader
//! from the vproc's filesystem: [`load`]) into a fresh vmspace and builds
//! the initial stack (argv, envp, auxv); file pages come from a page cache
//! shared by all vprocs ([`mm::pagecache`]). [`launch::run`] runs it as the
//! first process of a virtual kernel ([`kernel`]): its syscalls served
//! ([`syscalls`]), its first-touch page faults resolved ([`mm`]), signals
//! delivered ([`signal`]), fork (copy-on-write), threads, execve, wait4,
//! kill and pipes between vprocs, scheduled by [`crate::core::sched`] on
//! one or more vCPU threads. [`Vproc::run`] is the same with one vCPU and
//! the default options, returning the [`ExitStatus`]: there is one run
//! loop (`kernel::cpu_loop`), whether one vproc runs or many.
//!
//! The `vkernel` example is a thin command line over this module; the
//! `linux_*` integration tests and the `vkbench` benchmark use it too.
//! The facade crate re-exports it as `vkernel::linux` (feature `linux`).
#![deny(missing_docs)]

// The workspace crates under the names the personality's modules use.
use vkernel_core as core;
use vkernel_devices as devices;
use vkernel_guest as guest;

/// `eprintln!` that never panics: a vkernel message, log line or syscall
/// trace written to a closed or broken stderr (`vk ... 2>&1 | head -1`) is
/// dropped instead of panicking the thread that wrote it. The vproc's own
/// output does not go through here (see [`stdio`]).
#[macro_export]
macro_rules! vk_eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that never panics (see `vk_eprintln!`).
#[macro_export]
macro_rules! vk_eprint {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

pub mod abi;
pub mod debugger;
pub mod diag;
pub mod elf;
pub mod exec;
pub mod files;
pub mod fs;
pub mod gdb_remote;
pub mod kernel;
pub mod launch;
pub mod load;
pub mod mm;
pub mod net;

pub mod rlimit;
pub mod signal;
pub mod stdio;
mod step;
pub mod syscalls;
pub mod thread;

// The calls that wait and the i386 gate live with the other syscalls; the
// process table and the trap path name them here.
pub use syscalls::{compat32, events};

pub use load::{load_image, load_program, load_program_with};

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use crate::core::prelude::*;

use elf::{Elf, ElfError};
use exec::Image;
use files::FdTable;
use fs::Fs;
use kernel::Next;
use mm::{Mm, MmError};
use signal::Signals;
use stdio::{SharedStdio, Stdio};

/// The pid of the first vproc.
pub const PID: i32 = 100;
/// Its parent's pid.
pub const PPID: i32 = 1;

/// Errors of loading and running a vproc (the host side failed, or the
/// program cannot be loaded; what the vproc does wrong becomes a signal).
#[derive(Debug, thiserror::Error)]
pub enum VprocError {
    /// The program is not a runnable ELF.
    #[error("{path}: {source}")]
    Elf {
        /// The program.
        path: String,
        /// Why.
        source: ElfError,
    },
    /// The program's dynamic loader cannot be used.
    #[error("{path}: {source}")]
    Interp {
        /// The program.
        path: String,
        /// Why.
        source: load::InterpError,
    },
    /// Mapping the program or its stack failed.
    #[error("loading {path}: {source}")]
    Load {
        /// The program.
        path: String,
        /// Why.
        source: MmError,
    },
    /// The vCPU failed (a vkernel or host bug, not the vproc's fault).
    #[error("vCPU: {0}")]
    Run(#[from] RunError),
    /// A run option (`kernel::Options`) is out of range.
    #[error("invalid option: {0}")]
    Options(String),
    /// A vkernel thread (a vCPU or the scheduler tick) could not start.
    #[error(
        "cannot start the {what} thread: {source} (the host is out of threads or memory: \
         raise `ulimit -v`/`ulimit -u`, or run with fewer --cpus)"
    )]
    Thread {
        /// Which thread.
        what: String,
        /// The host error.
        source: std::io::Error,
    },
}

/// How a vproc ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// exit(code).
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
}

impl ExitStatus {
    /// The status a shell reports: the code, or 128 + signal.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c & 0xff,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

/// What to run and how. The default is an empty program with no
/// arguments, no environment, fault-around of 16 pages and no trace;
/// [`launch::Launch`] fills it in.
#[derive(Clone, Debug)]
pub struct Config {
    /// The ELF file's bytes, for [`Vproc::load`] ([`Vproc::load_from`]
    /// takes the program as an [`Image`] instead and ignores this).
    pub image: Vec<u8>,
    /// The path it was run as (AT_EXECFN).
    pub path: String,
    /// Its absolute path (what readlink("/proc/self/exe") says).
    pub exe: String,
    /// argv (argv[0] included).
    pub argv: Vec<Vec<u8>>,
    /// The environment.
    pub envp: Vec<Vec<u8>>,
    /// Pages mapped per first-touch fault.
    pub fault_around: u64,
    /// Log every syscall to the host's stderr.
    pub trace: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            image: Vec::new(),
            path: String::new(),
            exe: String::new(),
            argv: Vec::new(),
            envp: Vec::new(),
            fault_around: 16,
            trace: false,
        }
    }
}

/// The program the virtual kernel started with (execve of its host path
/// finds it again).
#[derive(Debug)]
pub struct Boot {
    /// Its host path.
    pub exe: Vec<u8>,
    /// The path it was run as.
    pub path: Vec<u8>,
    /// Its file.
    pub image: Image,
}

/// One thread of a Linux process, running as a vproc (a single-threaded
/// process is one `Vproc`).
///
/// Who owns what (each field says it again):
/// - **The thread's own**: touched only by the vCPU thread that runs it,
///   or by whoever holds the process table while its body rests there
///   (`kernel::Entry::body`).
/// - **Its process's**, shared by its threads under the process lock
///   ([`thread`]): `mm`; and `fds`, `cwd`, `umask` and `sig.actions`,
///   which live here while this thread holds the lock and in the
///   [`thread::Process`] otherwise (moved by `enter_kernel` and
///   `leave_kernel`).
/// - **The virtual kernel's**, shared by every vproc, each with a lock of
///   its own: `fs`, `stdio`, `boot`, `k`, `unimplemented`.
///
/// Every `Vproc` is built in one place, [`Vproc::assemble`], from an
/// [`Origin`]: a loaded program ([`Vproc::load_from`]) or the vproc that
/// forks or clones it ([`Vproc::fork_body`]).
pub struct Vproc {
    // The thread's own.
    /// Its thread id (the process id for the first thread).
    pub pid: i32,
    /// Its thread group, robust list, death signal wishes (see [`thread`]).
    pub thread: thread::ThreadInfo,
    /// Its registers (valid between runs).
    pub frame: TrapFrame,
    /// FPU/SSE state, moved on and off vCPUs by the core
    /// ([`Cpu::set_fpu`], [`Cpu::release_fpu`]).
    pub fpu: crate::core::fpu::FpuContext,
    /// Signal state: its mask and queue are its own; the dispositions
    /// (`sig.actions`) are its process's (see above).
    pub sig: Signals,
    /// Raised (by any thread, atomically) when another vproc queued a
    /// signal for this one in the process table.
    pub sig_flag: Arc<AtomicBool>,
    /// The mask rt_sigsuspend replaced (restored after the handler).
    pub saved_mask: Option<u64>,
    /// Its side of a vfork in progress (see `kernel::vfork`).
    pub vfork: Option<kernel::VforkLink>,
    /// Signal sent to the parent at exit (SIGCHLD).
    pub exit_signal: i32,
    /// set_tid_address.
    pub clear_child_tid: u64,
    /// Command name (argv[0]'s last component) for ps and reports.
    pub comm: String,
    /// The call that waits, its frame rewound to the `syscall`.
    pub pending_call: Option<events::PendingCall>,
    /// The state of the call being served (restored on its retries).
    pub call: events::CallState,
    /// The watchdog ended the last event wait (see `kernel`).
    pub watchdog_retry: bool,
    /// A program was just loaded (the first, or by execve): its next run
    /// asks the exitless server to stay awake through the program's start
    /// (see `Cpu::keep_exitless_awake`).
    pub fresh_image: bool,
    /// How the vproc ended, once that is decided (exit or exit_group, a
    /// fatal signal, a kill order, the debugger's quit); the run loop then
    /// ends it.
    pub exit: Option<ExitStatus>,
    /// How the last fatal signal came about (for the host's message).
    pub death: Option<String>,
    /// Start of its life.
    pub started: Instant,
    /// Syscalls served.
    pub syscalls: u64,
    /// Log its syscalls.
    pub trace: bool,
    /// Its ptrace state while a tracer traces it (see `kernel::ptrace`).
    pub ptrace: Option<Box<kernel::ptrace::Tracing>>,

    // Its process's.
    /// Its memory, shared with the other threads of its process under the
    /// process lock (see [`thread`]).
    pub mm: thread::MmRef,
    /// Its open files (the process's; see above).
    pub fds: FdTable,
    /// Current directory (inode; the process's).
    pub cwd: u64,
    /// umask (the process's).
    pub umask: u32,
    /// personality(2)'s value (the thread's, inherited by its children):
    /// PER_LINUX, with ADDR_NO_RANDOMIZE when asked.
    pub personality: u32,
    /// prctl(2)'s attributes (the thread's, inherited by its children).
    pub prctl: thread::PrctlFlags,
    /// The program's path (execve changes it for the whole process).
    pub exe: Arc<Vec<u8>>,
    /// The program's file (execve("/proc/self/exe") runs it again).
    pub image: Image,
    /// Its arguments as `/proc/PID/cmdline` shows them (each with its
    /// NUL), from the last execve.
    pub cmdline: Arc<Vec<u8>>,
    /// Its environment as `/proc/PID/environ` shows it (each string with
    /// its NUL), from the last execve.
    pub environ: Arc<Vec<u8>>,

    // The virtual kernel's.
    /// The root filesystem.
    pub fs: Arc<Fs>,
    /// fds 0-2 as the host provides them.
    pub stdio: SharedStdio,
    /// The first program of the virtual kernel.
    pub boot: Arc<Boot>,
    /// The virtual kernel it runs in: set by [`launch::run`] before it
    /// first runs (None only between [`Vproc::load`] and the launch; what
    /// needs it then fails with ENOSYS, see [`Vproc::kernel`]).
    pub k: Option<Arc<kernel::Kernel>>,
    /// The unimplemented calls of this run ([`diag`]).
    pub unimplemented: Arc<diag::Unimplemented>,
}

/// What a new vproc takes from where it comes from: a loaded program or
/// the vproc that forks or clones it. Everything else starts fresh
/// ([`Vproc::assemble`]).
pub struct Origin {
    /// Its thread id.
    pub pid: i32,
    /// Its memory: a new process's, a fork's copy, or the cloning thread's
    /// own (shared).
    pub mm: thread::MmRef,
    /// Its first registers.
    pub frame: TrapFrame,
    /// Its signal mask and dispositions (the queue starts empty).
    pub sig: Signals,
    /// Its command name.
    pub comm: String,
    /// Log its syscalls.
    pub trace: bool,
    /// Its open files.
    pub fds: FdTable,
    /// Its current directory.
    pub cwd: u64,
    /// Its umask.
    pub umask: u32,
    /// The program's path.
    pub exe: Arc<Vec<u8>>,
    /// The program's file.
    pub image: Image,
    /// Its arguments (`/proc/PID/cmdline`).
    pub cmdline: Arc<Vec<u8>>,
    /// Its environment (`/proc/PID/environ`).
    pub environ: Arc<Vec<u8>>,
    /// The root filesystem.
    pub fs: Arc<Fs>,
    /// fds 0-2.
    pub stdio: SharedStdio,
    /// The first program of the virtual kernel.
    pub boot: Arc<Boot>,
    /// The virtual kernel (None before the launch).
    pub k: Option<Arc<kernel::Kernel>>,
    /// The run's unimplemented-call registry.
    pub unimplemented: Arc<diag::Unimplemented>,
}

pub(crate) fn random_bytes(buf: &mut [u8]) {
    use std::io::Read;
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        if f.read_exact(buf).is_ok() {
            return;
        }
    }
    // Only the low bits matter to a seed.
    let mut x =
        u64::try_from(Instant::now().elapsed().as_nanos() & u128::from(u64::MAX)).unwrap_or(0) | 1;
    for b in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x.to_le_bytes()[0];
    }
}

/// Canonical user address?
pub fn canonical(a: u64) -> bool {
    a < 0x0000_8000_0000_0000
}

/// Canonical address (either half)?
pub fn is_canonical(a: u64) -> bool {
    let top = a >> 47;
    top == 0 || top == 0x1_ffff
}

impl Vproc {
    /// Load `cfg.image` into a new vmspace of `machine` with root
    /// filesystem `fs` and standard fds `stdio`.
    pub fn load(
        machine: &Machine,
        mut cfg: Config,
        fs: Fs,
        stdio: Box<dyn Stdio>,
    ) -> Result<Vproc, VprocError> {
        let image = Image::Bytes(Arc::new(std::mem::take(&mut cfg.image)));
        Vproc::load_from(machine, cfg, image, Arc::new(fs), stdio)
    }

    /// Load the program `image` (a host file, a file of `fs`, or bytes)
    /// into a new vmspace of `machine` with root filesystem `fs` and
    /// standard fds `stdio`; `cfg.image` is not used. Only the ELF headers
    /// and the loaded segments are read.
    pub fn load_from(
        machine: &Machine,
        cfg: Config,
        image: Image,
        fs: Arc<Fs>,
        stdio: Box<dyn Stdio>,
    ) -> Result<Vproc, VprocError> {
        let mut mm = Mm::new(machine).map_err(|source| VprocError::Load {
            path: cfg.path.clone(),
            source,
        })?;
        mm.set_fault_around(cfg.fault_around);
        Vproc::load_into(mm, cfg, image, fs, stdio)
    }

    /// [`Vproc::load_from`] into the empty address space `mm` (one of
    /// [`Mm::new_kin`], to share a running kernel's frames and page cache);
    /// `cfg.fault_around` is not applied (`mm` has its own).
    pub fn load_into(
        mut mm: Mm,
        cfg: Config,
        image: Image,
        fs: Arc<Fs>,
        stdio: Box<dyn Stdio>,
    ) -> Result<Vproc, VprocError> {
        let path = cfg.path.clone();
        let elf = Elf::read(&image).map_err(|source| VprocError::Elf {
            path: path.clone(),
            source,
        })?;
        let lerr = |source| VprocError::Load {
            path: path.clone(),
            source,
        };
        let interp = load::find_interp(&fs, &elf).map_err(|source| VprocError::Interp {
            path: path.clone(),
            source,
        })?;
        let exe = if cfg.exe.starts_with('/') {
            cfg.exe.clone().into_bytes()
        } else {
            format!("/{}", cfg.exe).into_bytes()
        };
        let src = image.source_named(Some(exe.clone()));
        let frame = load_program(&mut mm, &elf, &image, src.as_ref(), interp.as_ref(), &cfg)
            .map_err(lerr)?;
        let boot = Arc::new(Boot {
            exe: exe.clone(),
            path: cfg.path.into_bytes(),
            image: image.clone(),
        });
        Ok(Vproc::assemble(Origin {
            pid: PID,
            mm: thread::MmRef::new(mm),
            frame,
            sig: Signals::default(),
            comm: comm_of(cfg.argv.first().map(|a| &a[..]).unwrap_or(b"")),
            trace: cfg.trace,
            fds: FdTable::with_stdio(),
            cwd: fs::ROOT,
            umask: 0o022,
            exe: Arc::new(exe),
            image,
            cmdline: Arc::new(cmdline_of(&cfg.argv)),
            environ: Arc::new(cmdline_of(&cfg.envp)),
            fs,
            stdio: SharedStdio::new(stdio),
            boot,
            k: None,
            unimplemented: Arc::default(),
        }))
    }

    /// fork(2): a copy of this vproc with memory `mm` (a new process over
    /// [`Mm::fork`]'s copy, or this process's own for a new thread) and
    /// pid `pid`; its fork returns 0.
    pub fn fork_body(&self, mm: thread::MmRef, pid: i32) -> Vproc {
        let mut frame = self.frame;
        frame.rax = 0;
        let mut sig = self.sig.clone();
        sig.pending.clear();
        let mut child = Vproc::assemble(Origin {
            pid,
            mm,
            frame,
            sig,
            comm: self.comm.clone(),
            trace: self.trace,
            fds: self.fds.clone(),
            cwd: self.cwd,
            umask: self.umask,
            exe: self.exe.clone(),
            image: self.image.clone(),
            cmdline: self.cmdline.clone(),
            environ: self.environ.clone(),
            fs: self.fs.clone(),
            stdio: self.stdio.clone(),
            boot: self.boot.clone(),
            k: self.k.clone(),
            unimplemented: self.unimplemented.clone(),
        });
        child.personality = self.personality;
        child.prctl = self.prctl;
        child
    }

    /// The one place a `Vproc` is built: what `o` gives, and a fresh
    /// thread (new FPU state, no pending call, no exit, SIGCHLD to the
    /// parent at exit).
    pub fn assemble(o: Origin) -> Vproc {
        Vproc {
            pid: o.pid,
            thread: thread::ThreadInfo::new(o.pid),
            frame: o.frame,
            fpu: crate::core::fpu::FpuContext::new(),
            sig: o.sig,
            sig_flag: Arc::new(AtomicBool::new(false)),
            saved_mask: None,
            vfork: None,
            exit_signal: signal::SIGCHLD,
            clear_child_tid: 0,
            comm: o.comm,
            pending_call: None,
            call: Default::default(),
            watchdog_retry: false,
            fresh_image: true,
            exit: None,
            death: None,
            started: Instant::now(),
            syscalls: 0,
            trace: o.trace,
            ptrace: None,
            mm: o.mm,
            fds: o.fds,
            cwd: o.cwd,
            umask: o.umask,
            personality: 0,
            prctl: thread::PrctlFlags::default(),
            exe: o.exe,
            image: o.image,
            cmdline: o.cmdline,
            environ: o.environ,
            fs: o.fs,
            stdio: o.stdio,
            boot: o.boot,
            k: o.k,
            unimplemented: o.unimplemented,
        }
    }

    /// Run this vproc and everything it forks as a virtual kernel with
    /// one vCPU of `machine` (vCPU 0, which must not be taken) and the
    /// default [`kernel::Options`], until it exits: [`launch::run`] with
    /// one vCPU, for a caller that only wants the status.
    ///
    /// ```no_run
    /// # fn f(machine: &vkernel_core::machine::Machine, vp: vkernel_linux::Vproc)
    /// # -> Result<(), vkernel_linux::VprocError> {
    /// let status = vp.run(machine)?;
    /// println!("exit code {}", status.code());
    /// # Ok(()) }
    /// ```
    pub fn run(self, machine: &Machine) -> Result<ExitStatus, VprocError> {
        launch::run(machine, self, &kernel::Options::default()).map(|r| r.status)
    }

    /// exit (`group` false: this thread) or exit_group: the vproc ends
    /// with `status` ([`Next::Exit`]).
    pub fn end(&mut self, status: ExitStatus, group: bool) {
        self.exit = Some(status);
        self.thread.exit_thread = !group;
    }
}

/// What one [`Vproc::step`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The vproc trapped and the trap was handled.
    Ran,
    /// A syscall was served; its handler said what happens next (a
    /// value is already in rax).
    Syscall(Next),
    /// The vCPU was kicked (timer, another vCPU, the console).
    Interrupted,
    /// A traced vproc trapped for a syscall and stops at its entry
    /// (PTRACE_SYSCALL) before it runs.
    TraceEntry,
}

/// `argv` as `/proc/PID/cmdline` shows it: each argument and its NUL.
pub(crate) fn cmdline_of(argv: &[Vec<u8>]) -> Vec<u8> {
    let mut b = Vec::new();
    for a in argv {
        b.extend_from_slice(a);
        b.push(0);
    }
    b
}

/// The last path component of `argv0`, for ps.
pub fn comm_of(argv0: &[u8]) -> String {
    let base = argv0.rsplit(|&c| c == b'/').next().unwrap_or(argv0);
    String::from_utf8_lossy(&base[..base.len().min(15)]).into_owned()
}
