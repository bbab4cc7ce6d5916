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
pub mod kernel;
pub mod launch;
pub mod load;
pub mod mm;

pub mod rlimit;
pub mod signal;
pub mod stdio;
pub mod syscalls;
pub mod thread;

// The calls that wait and the i386 gate live with the other syscalls; the
// process table and the trap path name them here.
pub use syscalls::{compat32, events};

pub use load::{load_image, load_program};

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
use signal::{SigInfo, Signals};
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

/// One Linux process running as a vproc.
pub struct Vproc {
    /// Its process id.
    pub pid: i32,
    /// Its memory, shared with the other threads of its process (see
    /// [`thread`]).
    pub mm: thread::MmRef,
    /// Its thread group and robust list (see [`thread`]).
    pub thread: thread::ThreadInfo,
    /// Its registers (valid between runs).
    pub frame: TrapFrame,
    /// Its open files.
    pub fds: FdTable,
    /// The root filesystem (shared by all vprocs).
    pub fs: Arc<Fs>,
    /// Current directory (inode).
    pub cwd: u64,
    /// Signal state.
    pub sig: Signals,
    /// fds 0-2 (shared by all vprocs).
    pub stdio: SharedStdio,
    /// The program's path.
    pub exe: Vec<u8>,
    /// The program's file (execve("/proc/self/exe") runs it again).
    pub image: Image,
    /// The first program of the virtual kernel.
    pub boot: Arc<Boot>,
    /// Command name (argv[0]'s last component) for ps and reports.
    pub comm: String,
    /// The virtual kernel it runs in: set by [`launch::run`] before it
    /// first runs (None only between [`Vproc::load`] and the launch; what
    /// needs it then fails with ENOSYS, see [`Vproc::kernel`]).
    pub k: Option<Arc<kernel::Kernel>>,
    /// FPU/SSE state, moved on and off vCPUs by the core
    /// ([`Cpu::set_fpu`], [`Cpu::release_fpu`]).
    pub fpu: crate::core::fpu::FpuContext,
    /// Raised when another vproc queued a signal for this one.
    pub sig_flag: Arc<AtomicBool>,
    /// The mask rt_sigsuspend replaced (restored after the handler).
    pub saved_mask: Option<u64>,
    /// Signal sent to the parent at exit (SIGCHLD).
    pub exit_signal: i32,
    /// set_tid_address.
    pub clear_child_tid: u64,
    /// The unimplemented calls of this run, shared by all its vprocs
    /// ([`diag`]).
    pub unimplemented: Arc<diag::Unimplemented>,
    /// umask.
    pub umask: u32,
    /// Log syscalls.
    pub trace: bool,
    /// How the vproc ended, once that is decided (exit or exit_group, a
    /// fatal signal, a kill order, the debugger's quit); the run loop then
    /// ends it.
    pub exit: Option<ExitStatus>,
    /// Start of its life.
    pub started: Instant,
    /// Syscalls served.
    pub syscalls: u64,
    /// How the last fatal signal came about (for the host's message).
    pub death: Option<String>,
    /// The call that waits, its frame rewound to the `syscall`.
    pub pending_call: Option<events::PendingCall>,
    /// The state of the call being served (restored on its retries).
    pub call: events::CallState,
    /// The watchdog ended the last event wait (see `kernel`).
    pub watchdog_retry: bool,
}

pub(crate) fn random_bytes(buf: &mut [u8]) {
    use std::io::Read;
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        if f.read_exact(buf).is_ok() {
            return;
        }
    }
    let mut x = Instant::now().elapsed().as_nanos() as u64 | 1;
    for b in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
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
        let mut mm = Mm::new(machine).map_err(lerr)?;
        mm.set_fault_around(cfg.fault_around);
        let src = image.source();
        let frame = load_program(&mut mm, &elf, &image, src.as_ref(), interp.as_ref(), &cfg)
            .map_err(lerr)?;
        let exe = if cfg.exe.starts_with('/') {
            cfg.exe.into_bytes()
        } else {
            format!("/{}", cfg.exe).into_bytes()
        };
        let boot = Arc::new(Boot {
            exe: exe.clone(),
            path: cfg.path.into_bytes(),
            image: image.clone(),
        });
        Ok(Vproc {
            pid: PID,
            mm: thread::MmRef::new(mm),
            thread: thread::ThreadInfo::new(PID),
            frame,
            fds: FdTable::with_stdio(),
            fs,
            cwd: fs::ROOT,
            sig: Signals::default(),
            stdio: SharedStdio::new(stdio),
            exe,
            image,
            boot,
            comm: comm_of(cfg.argv.first().map(|a| &a[..]).unwrap_or(b"")),
            k: None,
            fpu: crate::core::fpu::FpuContext::new(),
            sig_flag: Arc::new(AtomicBool::new(false)),
            saved_mask: None,
            exit_signal: signal::SIGCHLD,
            clear_child_tid: 0,
            unimplemented: Arc::default(),
            umask: 0o022,
            trace: cfg.trace,
            exit: None,
            started: Instant::now(),
            syscalls: 0,
            death: None,
            pending_call: None,
            call: Default::default(),
            watchdog_retry: false,
        })
    }

    /// fork(2): a copy of this vproc with memory `mm` (a new process over
    /// [`Mm::fork`]'s copy, or this process's own for a new thread) and
    /// pid `pid`; its fork returns 0.
    pub fn fork_body(&self, mm: thread::MmRef, pid: i32) -> Vproc {
        let mut frame = self.frame;
        frame.rax = 0;
        let mut sig = self.sig.clone();
        sig.pending.clear();
        Vproc {
            pid,
            mm,
            thread: thread::ThreadInfo::new(pid),
            frame,
            fds: self.fds.clone(),
            fs: self.fs.clone(),
            cwd: self.cwd,
            sig,
            stdio: self.stdio.clone(),
            exe: self.exe.clone(),
            image: self.image.clone(),
            boot: self.boot.clone(),
            comm: self.comm.clone(),
            k: self.k.clone(),
            fpu: crate::core::fpu::FpuContext::new(),
            sig_flag: Arc::new(AtomicBool::new(false)),
            saved_mask: None,
            exit_signal: signal::SIGCHLD,
            clear_child_tid: 0,
            unimplemented: self.unimplemented.clone(),
            umask: self.umask,
            trace: self.trace,
            exit: None,
            started: Instant::now(),
            syscalls: 0,
            death: None,
            pending_call: None,
            call: Default::default(),
            watchdog_retry: false,
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

    /// Run the vproc until its next trap and handle it (a syscall, a fault,
    /// an exception; a fault's signal is delivered). What the run loop
    /// does next is its own: a syscall's [`Next`], then the pending
    /// signals ([`Vproc::deliver_pending`]).
    pub fn step(&mut self, cpu: &mut Cpu) -> Result<Step, VprocError> {
        {
            let f = &self.frame;
            // Only what the vCPU could not load is refused: a user rip (a
            // kernel-half one faults anyway), canonical FS/GS bases (any,
            // as wrfsbase/wrgsbase allow). RSP is a plain register until
            // used: Linux does not look at it, nor does the vkernel.
            if !canonical(f.rip) || !is_canonical(f.fs_base) || !is_canonical(f.gs_base) {
                let info = SigInfo {
                    signo: signal::SIGSEGV,
                    code: 0x80,
                    ..Default::default()
                };
                self.force_signal(cpu, info);
                return Ok(Step::Ran);
            }
            let before = self.frame;
            cpu.set_fpu(&self.fpu);
            // Other threads of the process may enter the kernel while this
            // one runs (see `thread`).
            self.leave_kernel();
            // --trace logs every call: the exit path serves them all then.
            let fast = self
                .k
                .as_ref()
                .filter(|k| k.fast.enabled() && !self.trace)
                .cloned();
            if let Some(k) = &fast {
                k.fast.publish(
                    cpu.index(),
                    kernel::fast::FastCtx {
                        pid: self.pid,
                        tgid: self.thread.tgid,
                        process: self.mm.lock_handle(),
                        sig: self.sig_flag.clone(),
                        fs: self.fs.clone(),
                        stdio: self.stdio.clone(),
                        blocked: self.sig.blocked,
                        pending: self
                            .sig
                            .pending
                            .iter()
                            .fold(0, |m, p| m | signal::bit(p.signo)),
                        alone: !self.threaded(),
                        retry: self.pending_call.is_some(),
                    },
                );
            }
            let ran = cpu.run(self.mm.vmspace(), &mut self.frame);
            if let Some(k) = fast {
                // The server's rt_sigprocmask changed the context's copy.
                if let Some(c) = k.fast.withdraw(cpu.index()) {
                    self.sig.blocked = c.blocked;
                }
            }
            self.enter_kernel();
            let trap = match ran {
                Ok(Trap::Interrupted) => {
                    // Defensive: never keep a frame the CPU cannot load.
                    if !canonical(self.frame.rip) {
                        self.frame = before;
                    }
                    Trap::Interrupted
                }
                Ok(t) => t,
                Err(RunError::BadFrame { field: "rsp", .. }) => {
                    // Returning to a non-canonical RSP through the stub's
                    // iretq would break the vCPU (the syscall path resumes
                    // without it): the vproc gets the #GP's SIGSEGV.
                    self.force_signal(
                        cpu,
                        SigInfo {
                            signo: signal::SIGSEGV,
                            code: 0x80,
                            trapno: 13,
                            ..Default::default()
                        },
                    );
                    return Ok(Step::Ran);
                }
                Err(RunError::FaultLoop { addr, .. }) => {
                    self.force_signal(
                        cpu,
                        SigInfo {
                            signo: signal::SIGSEGV,
                            code: 2,
                            addr,
                            trapno: 14,
                            ..Default::default()
                        },
                    );
                    return Ok(Step::Ran);
                }
                Err(e) => return Err(e.into()),
            };
            Ok(match trap {
                Trap::Syscall => {
                    self.syscalls += 1;
                    Step::Syscall(self.syscall(cpu))
                }
                Trap::PageFault { addr, access, .. } => {
                    self.page_fault(cpu, addr, access);
                    Step::Ran
                }
                Trap::Exception { vector, error_code }
                    if compat32::is_int80(vector, error_code, self.insn_at_rip()) =>
                {
                    self.syscalls += 1;
                    Step::Syscall(self.syscall32(cpu))
                }
                Trap::Exception { vector, error_code } => {
                    self.exception(cpu, vector, error_code);
                    Step::Ran
                }
                Trap::Interrupted => Step::Interrupted,
            })
        }
    }

    /// A page fault the vpagetable could not satisfy: the memory manager
    /// resolves it (a file page, copy-on-write, a stack growing) or the
    /// vproc gets SIGSEGV/SIGBUS as Linux would send.
    fn page_fault(&mut self, cpu: &Cpu, addr: u64, access: Access) {
        if let Err(sig) = self.mm.handle_fault(addr, access) {
            let (signo, code) = match sig {
                mm::FaultSignal::MapErr => (signal::SIGSEGV, 1),
                mm::FaultSignal::AccErr => (signal::SIGSEGV, 2),
                mm::FaultSignal::Oom => {
                    vk_eprintln!(
                        "vkernel: out of RAM frames at {addr:#x}; run with a larger --mem"
                    );
                    (signal::SIGBUS, 2)
                }
                // BUS_ADRERR: past the end of a mapped file.
                mm::FaultSignal::Bus => (signal::SIGBUS, 2),
            };
            let err = match access {
                Access::Read => 4,
                Access::Write => 6,
                Access::Execute => 0x14,
            };
            self.fault_signal(
                cpu,
                SigInfo {
                    signo,
                    code,
                    addr,
                    trapno: 14,
                    err,
                    ..Default::default()
                },
            );
        }
    }

    /// An exception the vproc raised: the signal Linux sends for it.
    fn exception(&mut self, cpu: &Cpu, vector: u8, error_code: u64) {
        let rip = self.frame.rip;
        let (signo, code, addr) = match vector {
            0 => (signal::SIGFPE, 1, rip),
            16 | 19 => (signal::SIGFPE, 0, rip),
            6 => (signal::SIGILL, 2, rip),
            1 | 3 => (signal::SIGTRAP, 0x80, 0),
            12 | 17 => (signal::SIGBUS, 0x80, 0),
            _ => (signal::SIGSEGV, 0x80, 0),
        };
        self.fault_signal(
            cpu,
            SigInfo {
                signo,
                code,
                addr,
                trapno: vector as u64,
                err: error_code,
                ..Default::default()
            },
        );
    }

    /// The first two bytes of the instruction at rip (zeros if they cannot
    /// be read).
    fn insn_at_rip(&mut self) -> [u8; 2] {
        let mut b = [0u8; 2];
        if self.mm.read(self.frame.rip, &mut b).is_err() {
            b = [0; 2];
        }
        b
    }

    /// Deliver a synchronous signal (a fault): a blocked or ignored one
    /// kills, as on Linux.
    pub fn force_signal(&mut self, cpu: &Cpu, info: SigInfo) {
        let s = info.signo;
        let act = self.sig.actions[s as usize];
        if self.sig.blocked & signal::bit(s) != 0 || act.handler == signal::SIG_IGN {
            self.sig.actions[s as usize].handler = signal::SIG_DFL;
            self.sig.blocked &= !signal::bit(s);
        }
        // A fault's signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP) is
        // never a stop signal.
        let stop = self.deliver(cpu, info);
        debug_assert!(stop.is_none(), "a forced signal stopped the vproc");
    }

    /// Queue a signal (kill, raise, SIGPIPE): a standard one once, each
    /// real-time one ([`signal::enqueue`]). False if the queue is full.
    pub fn queue_signal(&mut self, info: SigInfo) -> bool {
        signal::enqueue(&mut self.sig.pending, info)
    }

    /// Deliver the pending signals that are not blocked, until one ends
    /// the vproc ([`Vproc::exit`]) or stops it: then the stop signal, for
    /// the run loop to stop the process (a waiting call stays rewound and
    /// is retried after SIGCONT).
    #[must_use = "a stop signal's default action is the caller's to carry out"]
    pub fn deliver_pending(&mut self, cpu: &Cpu) -> Option<i32> {
        while self.exit.is_none() {
            let accept = !self.sig.blocked | signal::bit(signal::SIGKILL);
            let i = signal::next_index(&self.sig.pending, accept)?;
            let info = self.sig.pending.remove(i);
            if let Some(stop) = self.deliver(cpu, info) {
                return Some(stop);
            }
        }
        None
    }

    /// Deliver `info`: its handler's frame, or its default action (the
    /// end of the vproc, or the stop signal returned).
    fn deliver(&mut self, cpu: &Cpu, info: SigInfo) -> Option<i32> {
        let s = info.signo;
        let act = self.sig.actions[s as usize];
        if s == signal::SIGKILL || act.handler == signal::SIG_DFL {
            if s != signal::SIGKILL && signal::default_action(s) == signal::Default_::Ignore {
                return None;
            }
            if s != signal::SIGKILL && signal::is_stop(s) {
                return Some(s);
            }
            self.death = Some(format!(
                "killed by {} (si_code {}, address {:#x}) at rip {:#x}",
                signal::name(s),
                info.code,
                info.addr,
                self.frame.rip
            ));
            self.exit = Some(ExitStatus::Signaled(s));
            return None;
        }
        if act.handler == signal::SIG_IGN {
            return None;
        }
        // A waiting call ends (EINTR, bytes moved) or restarts.
        if let Some(p) = self.pending_call.take() {
            self.interrupt_call(p, act.flags & signal::SA_RESTART != 0);
        }
        // After rt_sigsuspend the handler returns to the mask before it.
        let old = self.saved_mask.take().unwrap_or(self.sig.blocked);
        let mut frame = self.frame;
        match signal::setup_frame(
            &mut self.mm,
            cpu,
            &self.fpu,
            &mut frame,
            &act,
            &info,
            old,
            &self.sig,
        ) {
            Ok(()) => {
                self.frame = frame;
                let mut add = act.mask;
                if act.flags & signal::SA_NODEFER == 0 {
                    add |= signal::bit(s);
                }
                self.sig.blocked |=
                    add & !(signal::bit(signal::SIGKILL) | signal::bit(signal::SIGSTOP));
                if act.flags & signal::SA_RESETHAND != 0 {
                    self.sig.actions[s as usize].handler = signal::SIG_DFL;
                }
            }
            Err(_) => {
                // No room for the frame: the vproc dies with SIGSEGV.
                self.death = Some(format!(
                    "killed by SIGSEGV: no room for the {} frame at rsp {:#x}",
                    signal::name(s),
                    self.frame.rsp
                ));
                self.exit = Some(ExitStatus::Signaled(signal::SIGSEGV));
            }
        }
        None
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
}

/// The last path component of `argv0`, for ps.
pub fn comm_of(argv0: &[u8]) -> String {
    let base = argv0.rsplit(|&c| c == b'/').next().unwrap_or(argv0);
    String::from_utf8_lossy(&base[..base.len().min(15)]).into_owned()
}
