//! The virtual kernel proper: a process table of vprocs, scheduled by
//! [`crate::core::sched::Scheduler`] (CFS and real-time classes) on one
//! thread per vCPU.
//!
//! [`run`] takes the first vproc (from [`Vproc::load`]) and runs it and
//! every process it forks until it exits. Each vCPU thread loops: lock the
//! table, `schedule` its runqueue, take the chosen vproc's body out of the
//! table, load its FPU state, run it trap after trap until it blocks
//! (pipe, wait4, nanosleep, pause), exits, yields, or a tick of the timer
//! (a `Timer` on a `vkernel_devices` event loop kicking busy vCPUs) makes
//! the scheduler preempt it; then put the body back. Idle vCPUs sleep on a
//! condition variable and pull work with `load_balance`.
//!
//! Blocking syscalls retry: a call that must wait registers the vproc as a
//! waiter (on a pipe, or as a parent), rewinds `rip` to the `syscall`
//! instruction and sleeps; a wake-up makes it runnable and the call runs
//! again. Wake-ups go through a small queue ([`Wake`]) that the vCPU
//! threads drain whenever they hold the table lock, so nothing is ever
//! woken under another lock, and a wake-up that comes before the sleep is
//! remembered (`wake_pending`).
//!
//! fork shares memory copy-on-write ([`super::mm::Mm::fork`]); the number
//! of vprocs is limited ([`Options::max_procs`]): fork beyond it fails
//! with EAGAIN.
//!
//! Layout: this module holds the public types and the process table
//! ([`Kernel`]: entries, wake-ups, signals, futexes, interval timers, exit
//! bookkeeping); `run` starts and ends a run (vCPU threads, the ticker);
//! `cpu_loop` is one vCPU's loop (pick a vproc, run a segment of it, put
//! it back); `fork` creates children; `thread` creates threads and holds
//! thread groups' signals, exits and robust lists; `futex` the futex
//! waiters; `calls` holds the process syscalls that need the table
//! (wait4, kill, process groups, priorities, scheduling); `introspect`
//! renders `ps` and memory statistics.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::core::memstat::MemStats;
use crate::core::prelude::*;
use crate::core::sched::{Policy, Scheduler, TaskId};
use crate::devices::{Event, EventLoop, Timer, Waker};

use super::events::Itimers;
use super::files::Wake;
use super::signal::{self, SigInfo};
use super::{debugger, ExitStatus, Vproc, VprocError, PPID};
use crate::abi::errno::*;

mod calls;
mod cpu_loop;
pub(crate) mod debug;
pub(crate) mod fast;
mod fork;
mod futex;
mod hostsig;
mod introspect;
mod kill;
mod next;
mod pidfd;
mod post;
mod ptimer;
pub mod ptrace;
mod reaper;
mod run;
mod session;
pub(crate) mod site_book;
mod spawn;
pub mod sysv;
pub mod sysv_shm;
mod thread;
mod trace_stop;
mod vfork;

use post::deliverable;

pub use cpu_loop::SI_KERNEL;
pub use introspect::ProcInfo;
pub use next::{CloneArgs, Halt, Next, Wait};
pub use ptimer::{PosixTimer, TimerNotify};
pub(crate) use run::run_with;
pub use spawn::{SpawnError, SpawnRequest, Spawner};
pub use thread::ROBUST_HEAD_SIZE;
pub use vfork::{VforkDone, VforkLink};

/// A process id.
pub type Pid = i32;

/// The watchdog of event waits: a vproc that waits for an event is
/// retried after this long anyway. Every wake-up is delivered (see the
/// module docs), so a retry that then succeeds means one was lost: it is
/// logged and counted ([`Report::lost_wakeups`]).
const WATCHDOG: Duration = Duration::from_secs(1);

/// How the virtual kernel runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// vCPU threads (the machine needs at least this many vCPUs).
    pub cpus: usize,
    /// Most processes alive at once (zombies count, threads do not); fork
    /// beyond gets EAGAIN (Linux's RLIMIT_NPROC).
    pub max_procs: usize,
    /// Most threads alive at once, in all processes together (Linux's
    /// `kernel.threads-max`); clone beyond gets EAGAIN. 0: as Linux
    /// derives threads-max, guest RAM / 128 KiB (8,192 for 1 GiB).
    pub max_threads: usize,
    /// Scheduler tick: how often busy vCPUs are kicked.
    pub tick: Duration,
    /// Collect memory statistics of all vprocs when the first one exits.
    pub memstats: bool,
    /// Render those statistics as JSON instead of a table.
    pub memstats_json: bool,
    /// Serve the calls of `kernel::fast` without VM exits where the machine
    /// offers exitless syscalls (default on).
    pub exitless: bool,
    /// With `exitless`, where the machine offers a patched entry (PVM
    /// hosts): rewrite the call sites of served syscalls so they reach the
    /// server without the `syscall` instruction (see `mm::patch`).
    pub patch_syscalls: bool,
    /// With `patch_syscalls`, where KVM offers CPUID faulting: the first
    /// few processes of each program file answer their `cpuid`s in the
    /// vkernel and count the sites, and later processes of the file start
    /// with the sites rewritten to their answers (see `mm::patch::cpuid`).
    pub patch_cpuid: bool,
    /// Real-time throttling period in microseconds (Linux's
    /// `/proc/sys/kernel/sched_rt_period_us`, default 1,000,000).
    pub rt_period_us: u64,
    /// Real-time runtime per period in microseconds, per vCPU (Linux's
    /// `sched_rt_runtime_us`, default 950,000): SCHED_FIFO/SCHED_RR vprocs
    /// that used it up wait for the next period, so others run. -1: no
    /// throttling. Must not exceed `rt_period_us`.
    pub rt_runtime_us: i64,
    /// Forward SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH
    /// sent to this (host) process to the init vproc while the run lasts
    /// (default off: the handlers are process-wide; the CLI sets it).
    pub forward_signals: bool,
    /// With `forward_signals`: a SIGTERM this long or longer after the
    /// first one kills every vproc (SIGKILL).
    pub term_grace: Duration,
    /// The tap network (`--net tap:...`; None: loopback only).
    pub net: Option<Arc<crate::net::Net>>,
    /// A debugger for the first vproc (`vkernel run --gdb`): it is traced
    /// and stopped before its first instruction, and this starts the
    /// debugger's thread (see [`crate::gdb_remote`]); the run waits for
    /// that thread at its end.
    pub debugger: Option<Debugger>,
    /// The host name at start (`uname -n`; default `vkernel`).
    pub hostname: Option<Vec<u8>>,
    /// The user id every vproc sees (getuid and kin, /proc; default 0):
    /// one for the whole kernel; a non-zero one cannot setuid elsewhere.
    pub uid: u32,
    /// The group id every vproc sees (getgid and kin), as `uid`.
    pub gid: u32,
}

/// What starts a debugger's thread on the kernel and the first vproc's
/// pid (see [`Options::debugger`]).
#[derive(Clone)]
pub struct Debugger(pub Arc<dyn Fn(Arc<Kernel>, Pid) -> std::thread::JoinHandle<()> + Send + Sync>);

impl std::fmt::Debug for Debugger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Debugger")
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cpus: 1,
            max_procs: 64,
            max_threads: 0,
            tick: Duration::from_millis(4),
            memstats: false,
            memstats_json: false,
            exitless: true,
            patch_syscalls: true,
            patch_cpuid: true,
            rt_period_us: 1_000_000,
            rt_runtime_us: 950_000,
            forward_signals: false,
            term_grace: Duration::from_secs(10),
            net: None,
            debugger: None,
            hostname: None,
            uid: 0,
            gid: 0,
        }
    }
}

/// What became of one vproc.
#[derive(Clone, Debug)]
pub struct ProcRecord {
    /// Its pid.
    pub pid: Pid,
    /// Its parent's.
    pub ppid: Pid,
    /// Its command name at exit.
    pub comm: String,
    /// How it ended.
    pub status: ExitStatus,
    /// CPU time by the scheduler's accounting (ns).
    pub runtime_ns: u64,
    /// Its scheduling policy at exit.
    pub policy: Policy,
    /// Syscalls it made.
    pub syscalls: u64,
    /// How a fatal signal killed it (None: it exited).
    pub death: Option<String>,
}

/// The outcome of [`run`].
#[derive(Debug)]
pub struct Report {
    /// The first vproc's exit status.
    pub status: ExitStatus,
    /// How it died, if a signal killed it.
    pub death: Option<String>,
    /// Every vproc that exited, in order.
    pub procs: Vec<ProcRecord>,
    /// Context switches counted by the scheduler.
    pub context_switches: u64,
    /// Successful forks.
    pub forks: u64,
    /// Forks refused with EAGAIN (the vproc limit).
    pub fork_eagain: u64,
    /// Most processes alive at once (threads not counted).
    pub max_alive: usize,
    /// Syscalls of all vprocs.
    pub syscalls: u64,
    /// Trap counters of each vCPU.
    pub cpu_stats: Vec<CpuStats>,
    /// Memory statistics (table) of all vprocs when the first one exited.
    pub memstats: Option<String>,
    /// Event waits the watchdog had to end (a lost wake-up each; 0 unless
    /// there is a bug).
    pub lost_wakeups: u64,
    /// Syscall sites patched (see [`Options::patch_syscalls`]).
    pub patched_sites: u64,
    /// Calls the exitless server answered that came through a rewritten
    /// site (no `syscall` instruction executed).
    pub served_rewritten: u64,
    /// Calls the exitless server answered that executed `syscall`.
    pub served_syscall: u64,
    /// Calls served through exits that came from rewritten sites (no
    /// `syscall` instruction: the trampoline's own exit).
    pub exit_calls_rewritten: u64,
    /// `cpuid`s of learning processes the vkernel answered (see
    /// [`Options::patch_cpuid`]).
    pub cpuid_answered: u64,
    /// `cpuid` sites rewritten to their answers.
    pub cpuid_sites: u64,
    /// The syscalls the run met that the personality does not serve, by
    /// number, each with its count and first caller ([`crate::diag`]).
    pub unimplemented: Vec<crate::diag::UnimplementedCall>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PState {
    /// Being created by fork.
    Embryo,
    Runnable,
    Running(usize),
    Sleeping(Option<Instant>),
    /// Stopped by SIGSTOP/SIGTSTP/SIGTTIN/SIGTTOU until SIGCONT.
    Stopped,
    /// In a ptrace-stop until its tracer resumes it (see `ptrace`).
    Traced,
    Zombie(ExitStatus),
}

/// A futex waiter: key ((vmspace, address), or (shared object, offset)),
/// pid, FUTEX_WAIT_BITSET bits.
type FutexWaiter = ((usize, u64), Pid, u32);

struct Entry {
    /// The parent process (its tgid).
    ppid: Pid,
    /// The thread group (process) this vproc is a thread of; a process's
    /// first thread (its leader) has tgid == pid, and its entry stands for
    /// the process (wait4, kill, process groups) until every thread ended.
    tgid: Pid,
    /// On a leader: threads of the group not yet ended (the leader
    /// included while it lives). The process ends when it drops to 0.
    threads: usize,
    /// On a leader: the signal the parent gets when the process ends.
    exit_signal: i32,
    /// The signal mask as last seen (for picking the thread that takes a
    /// process-directed signal).
    blocked: u64,
    pgid: Pid,
    sid: Pid,
    state: PState,
    body: Option<Box<Vproc>>,
    /// Signals from other vprocs, merged into the body when it runs.
    signals: Vec<SigInfo>,
    sig_flag: Arc<AtomicBool>,
    wake_pending: bool,
    /// Sleeping for an event (the deadline is the watchdog's).
    event_wait: bool,
    /// The watchdog ended its last event wait.
    watchdog_woke: bool,
    /// A real wake-up came after the watchdog's (while the vproc was
    /// already running to retry its call): the retry's success is that
    /// wake-up's, not a lost one.
    woken_after_watchdog: bool,
    comm: String,
    /// Its arguments as of its last put back (`/proc/PID/cmdline`).
    cmdline: Arc<Vec<u8>>,
    /// What else `/proc` shows of it while it runs, as of its last put
    /// back.
    seen: introspect::Seen,
    /// When it was made (`/proc/PID/stat`'s start time).
    started: Instant,
    vms: Option<Arc<Vmspace>>,
    /// alarm / setitimer.
    itimers: Itimers,
    /// On a leader: its POSIX timers, by id.
    ptimers: BTreeMap<i32, ptimer::PosixTimer>,
    /// Stopped by this signal and not yet reported to wait4(WUNTRACED).
    stop_report: Option<i32>,
    /// Continued and not yet reported to wait4(WCONTINUED).
    cont_report: bool,
    /// On a leader: how a fatal signal in one of its threads came about
    /// (the thread that ended the group).
    death: Option<String>,
    /// On a leader of a multithreaded process: process-directed signals
    /// every thread blocked when they came; the first thread that
    /// unblocks one (or waits for it in rt_sigtimedwait) takes it.
    shared: Vec<SigInfo>,
    /// PR_SET_PDEATHSIG: the signal this thread's process gets when its
    /// parent process ends (0: none).
    pdeathsig: i32,
    /// Its tracer, if it is traced (see `ptrace`).
    trace: Option<ptrace::Link>,
    /// Its process's memory, for another process's access
    /// (process_vm_readv, a tracer's PEEK/POKE).
    lock: Option<crate::thread::ProcessLock>,
}

/// The process table.
pub(crate) struct Table {
    procs: BTreeMap<Pid, Entry>,
    sched: Scheduler,
    next_pid: Pid,
    init: Pid,
    exit: Option<(ExitStatus, Option<String>)>,
    records: Vec<ProcRecord>,
    forks: u64,
    eagain: u64,
    max_alive: usize,
    syscalls: u64,
    running: Vec<Option<Pid>>,
    memstats: Option<String>,
    futexes: Vec<FutexWaiter>,
    lost_wakeups: u64,
    /// The load averages (1, 5, 15 minutes) and when they were last
    /// sampled (every 5 seconds, as Linux's calc_load).
    loadavg: ([f64; 3], Instant),
    /// Open pidfds and the processes they name.
    pidfds: Vec<(Pid, crate::files::WeakShared<crate::fs::event::PidFd>)>,
    /// Traced threads' exits their tracers have not collected.
    trace_exits: Vec<ptrace::TraceExit>,
    /// Processes marked PR_SET_CHILD_SUBREAPER (see `reaper`).
    subreapers: std::collections::BTreeSet<Pid>,
}

/// The shared state of a virtual kernel.
pub struct Kernel {
    table: Mutex<Table>,
    /// The virtual kernel's own host and domain names (its UTS
    /// namespace: sethostname here changes nothing on the host).
    uts: Mutex<(Vec<u8>, Vec<u8>)>,
    /// System V semaphores and message queues.
    pub(crate) sysv: Mutex<sysv::SysV>,
    /// Wakes a debugger stub when one of its tracees stops or ends.
    pub(crate) debug: debug::DebugEvents,
    /// Event count for idle vCPUs: bumped (under its own lock) by every
    /// change that may give an idle vCPU work, so a vCPU that read it
    /// before looking at the table never sleeps through one.
    events: Mutex<u64>,
    idle: Condvar,
    wakes: Mutex<Vec<Pid>>,
    /// Signals from the kernel waiting to be posted ([`Wake::signal`]):
    /// a process (positive) or a process group (negative), and the
    /// signal. Drained with `wakes`.
    kernel_signals: Mutex<Vec<(Pid, i32)>>,
    wakes_flag: AtomicBool,
    kickers: Vec<Kicker>,
    /// When each vCPU last entered its vproc (ns since start; 0: not in
    /// the guest).
    entered: Vec<AtomicU64>,
    start: Instant,
    done: AtomicBool,
    opts: Options,
    ticker: Mutex<Option<Waker>>,
    /// The vprocs the exitless server may serve, per vCPU.
    pub(crate) fast: fast::FastPath,
    /// Where patched syscall sites jump (None: no patching).
    pub(crate) patch_entry: Option<u64>,
    /// Sites patched.
    pub(crate) patched: AtomicU64,
    /// Learning processes' `cpuid`s come to the vkernel (see
    /// [`Options::patch_cpuid`]).
    pub(crate) learn_cpuid: bool,
    /// The vCPUs' CPUID table, read at the first `cpuid` answered.
    pub(crate) cpuid_table: std::sync::OnceLock<crate::core::cpu::CpuidTable>,
    /// `cpuid`s answered, sites rewritten.
    pub(crate) cpuid_counts: [AtomicU64; 2],
    /// The calls of program files' syscall sites, over every process
    /// (rewritten in each new mapping once known: `site_book`).
    pub(crate) sites: site_book::SiteBook,
    /// Calls the server answered: through rewritten sites, through
    /// `syscall`.
    pub(crate) served: [AtomicU64; 2],
    /// Calls served through exits: from rewritten sites, by `syscall`.
    pub(crate) exit_calls: [AtomicU64; 2],
    /// Where processes spawned from the host report their exits.
    spawner: Option<Spawner>,
    /// The unimplemented calls the run met (the init vproc's, shared by
    /// every vproc it begets).
    unimplemented: Arc<crate::diag::Unimplemented>,
}

impl Wake for Kernel {
    fn wake(&self, pid: Pid) {
        self.wakes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pid);
        self.wakes_flag.store(true, Ordering::SeqCst);
        // Serve it now if the table is free (no vCPU may be looking:
        // all may be running vprocs that never trap); otherwise whoever
        // holds the table drains the queue before letting it go, and the
        // ticker does at the next tick.
        let t = match self.table.try_lock() {
            Ok(t) => Some(t),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(mut t) = t {
            self.process_wakes(&mut t);
        }
        self.notify();
    }

    fn signal(&self, target: Pid, sig: i32) {
        self.kernel_signals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((target, sig));
        // Posted with the wakes, by whoever holds the table next.
        self.wake(0);
    }
}

fn tid(pid: Pid) -> TaskId {
    TaskId(pid as u64)
}

/// wait4 status word.
fn wstatus(s: ExitStatus) -> i32 {
    match s {
        ExitStatus::Exited(c) => (c & 0xff) << 8,
        ExitStatus::Signaled(sig) => sig & 0x7f,
    }
}

impl Kernel {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Tell idle vCPUs to look at the table again.
    fn notify(&self) {
        *self.events.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.idle.notify_all();
    }

    fn events_seen(&self) -> u64 {
        *self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleep until [`Kernel::notify`] is called after `seen` was read, or
    /// `timeout` passes.
    fn idle_wait(&self, seen: u64, timeout: Duration) {
        let g = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if *g == seen {
            drop(
                self.idle
                    .wait_timeout(g, timeout)
                    .unwrap_or_else(|e| e.into_inner()),
            );
        }
    }

    /// The options it runs with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Get `cpu` to look at the table soon: kick it out of the guest if it
    /// is running a vproc now (between traps it looks anyway, and a kick
    /// that lands outside KVM_RUN makes the next entry an immediate exit,
    /// an exit wasted).
    fn kick(&self, _t: &Table, cpu: usize) {
        if self.deep_in_guest(cpu) {
            self.kickers[cpu].kick();
        }
        self.notify();
    }

    /// Has `cpu` been running its vproc without a trap for at least half a
    /// tick? Only then is it kicked: a kick that lands around an entry
    /// (immediate exit, command bounce, stub) costs an exit for nothing. A
    /// vCPU that traps often looks at the table at its traps instead.
    fn deep_in_guest(&self, cpu: usize) -> bool {
        let since = self.entered[cpu].load(Ordering::SeqCst);
        since != 0
            && self.now().saturating_sub(since)
                >= u64::try_from(self.opts.tick.as_nanos()).unwrap_or(u64::MAX) / 2
    }

    fn wake_locked(&self, t: &mut Table, pid: Pid) {
        let Some(e) = t.procs.get_mut(&pid) else {
            return;
        };
        // A real wake-up: whatever the watchdog did before does not count.
        e.watchdog_woke = false;
        match e.state {
            PState::Sleeping(_) => {
                e.state = PState::Runnable;
                e.wake_pending = false;
                self.enqueue_locked(t, pid);
            }
            PState::Runnable
            | PState::Running(_)
            | PState::Embryo
            | PState::Stopped
            | PState::Traced => {
                e.wake_pending = true;
                e.woken_after_watchdog = true;
            }
            PState::Zombie(_) => {}
        }
    }

    /// Put `pid` (just made runnable) back on a run queue; kick its vCPU if
    /// it should preempt what runs there, and tell idle vCPUs.
    fn enqueue_locked(&self, t: &mut Table, pid: Pid) {
        match t.sched.wake(tid(pid), self.now()) {
            Ok(true) => {
                let cpu = t.sched.task(tid(pid)).map_or(0, |x| x.cpu);
                self.kick(t, cpu);
            }
            Ok(false) => {}
            Err(e) => log::warn!("wake {pid}: {e}"),
        }
        self.notify();
    }

    /// Drain the wake-up queue and expire sleep deadlines.
    fn process_wakes(&self, t: &mut Table) {
        if self.wakes_flag.swap(false, Ordering::SeqCst) {
            let w = std::mem::take(&mut *self.wakes.lock().unwrap());
            for pid in w {
                self.wake_locked(t, pid);
            }
            let sigs = std::mem::take(&mut *self.kernel_signals.lock().unwrap());
            for (target, sig) in sigs {
                self.post_kernel_signal(t, target, sig);
            }
        }
        let now = Instant::now();
        let mut due = Vec::new();
        let mut fire = Vec::new();
        for (p, e) in t.procs.iter_mut() {
            if matches!(e.state, PState::Sleeping(Some(d)) if d <= now) {
                due.push((*p, e.event_wait));
            }
            if let Some((d, i)) = e.itimers.real {
                if d <= now && (!matches!(e.state, PState::Zombie(_)) || e.threads > 0) {
                    e.itimers.real = (!i.is_zero()).then(|| (now + i, i));
                    fire.push((*p, super::events::SIGALRM));
                }
            }
        }
        if t.procs
            .values()
            .any(|e| e.itimers.cpu.iter().any(Option::is_some))
        {
            // Bring the running vprocs' CPU time up to date.
            let ns = self.now();
            for c in 0..t.sched.nr_cpus() {
                let _ = t.sched.update_accounting(c, ns);
            }
        }
        for (w, signo) in [(0, super::events::SIGVTALRM), (1, super::events::SIGPROF)] {
            let armed: Vec<(Pid, u64, u64)> = t
                .procs
                .iter()
                .filter_map(|(p, e)| e.itimers.cpu[w].map(|(d, i)| (*p, d, i)))
                .collect();
            for (p, d, i) in armed {
                let used = Self::group_runtime(t, p);
                if used >= d {
                    if let Some(e) = t.procs.get_mut(&p) {
                        e.itimers.cpu[w] = (i > 0).then_some((used + i, i));
                    }
                    fire.push((p, signo));
                }
            }
        }
        // Timers first: a signal that ends an event wait at its watchdog
        // deadline is a wake-up, not a lost one.
        self.fire_ptimers(t, now);
        Self::sample_load(t, now);
        for (pid, signo) in fire {
            // The timers are the process's: one of its threads takes it.
            self.post_process_signal(
                t,
                pid,
                SigInfo {
                    signo,
                    code: 0x80,
                    ..Default::default()
                },
            );
        }
        for (pid, event_wait) in due {
            let still = t
                .procs
                .get(&pid)
                .is_some_and(|e| matches!(e.state, PState::Sleeping(_)));
            if still {
                self.wake_locked(t, pid);
                if let Some(e) = t.procs.get_mut(&pid) {
                    e.watchdog_woke = event_wait;
                    e.woken_after_watchdog = false;
                }
            }
        }
    }

    /// The earliest deadline of any sleeper or real-time timer.
    fn next_deadline(t: &Table) -> Option<Instant> {
        t.procs
            .values()
            .flat_map(|e| {
                let sleep = match e.state {
                    PState::Sleeping(Some(d)) => Some(d),
                    _ => None,
                };
                [sleep, e.itimers.real.map(|(d, _)| d)]
            })
            .flatten()
            .chain(Self::next_ptimer(t))
            .min()
    }

    /// CPU time of the process of `pid` (its live threads) by the
    /// scheduler's accounting (ns).
    pub fn cpu_time(&self, pid: Pid) -> u64 {
        let t = self.lock();
        let tgid = t.procs.get(&pid).map_or(pid, |e| e.tgid);
        Self::group_runtime(&t, tgid)
    }

    fn group_runtime(t: &Table, tgid: Pid) -> u64 {
        Self::members(t, tgid)
            .into_iter()
            .map(|p| t.sched.runtime(tid(p)).unwrap_or(0))
            .sum()
    }

    /// Run `f` on the interval timers of the process of `pid` (they
    /// belong to the process: its leader's entry).
    pub fn swap_itimer<R>(&self, pid: Pid, f: impl FnOnce(&mut Itimers) -> R) -> R {
        let mut t = self.lock();
        let mut none = Itimers::default();
        let tgid = t.procs.get(&pid).map_or(pid, |e| e.tgid);
        let timers = t.procs.get_mut(&tgid).map_or(&mut none, |e| &mut e.itimers);
        let r = f(timers);
        drop(t);
        // An idle vCPU may have to wake earlier for it.
        self.notify();
        r
    }

    /// The watchdog ended an event wait of `pid` and its call `nr` then
    /// succeeded: a wake-up was lost. Logged and counted.
    pub fn lost_wakeup(&self, pid: Pid, nr: u64) {
        // A real wake-up raced with the watchdog's (both near the same
        // instant): nothing was lost.
        if self
            .lock()
            .procs
            .get_mut(&pid)
            .is_some_and(|e| std::mem::take(&mut e.woken_after_watchdog))
        {
            return;
        }
        log::warn!(
            target: crate::diag::TARGET,
            "vproc {pid}: {} waited for a wake-up that never came (watchdog retry)",
            crate::abi::sysno::name_of(nr)
        );
        self.lock().lost_wakeups += 1;
    }

    /// The parent of process `tgid`, if it is in the table (getppid's
    /// answer; the exitless server asks too).
    pub(crate) fn parent_of(&self, tgid: Pid) -> Option<Pid> {
        self.lock().procs.get(&tgid).map(|e| e.ppid)
    }

    /// Processes in the table (a leader's entry stands for its process,
    /// zombies included).
    fn alive(t: &Table) -> usize {
        t.procs.iter().filter(|(pid, e)| **pid == e.tgid).count()
    }

    /// Threads in the table, every process's together.
    fn threads_alive(t: &Table) -> usize {
        t.procs.len()
    }

    /// A thread ended (after [`Kernel::begin_exit`]): accounting; the last
    /// thread ends the process ([`Kernel::process_exit_locked`]).
    fn exit_locked(&self, t: &mut Table, body: &Vproc, cpu: usize) {
        let pid = body.pid;
        let tgid = body.thread.tgid;
        let status = body.exit.unwrap_or(ExitStatus::Exited(0));
        let now = self.now();
        let _ = t.sched.update_accounting(cpu, now);
        let runtime = t.sched.runtime(tid(pid)).unwrap_or(0);
        let policy = t.sched.task(tid(pid)).map_or(Policy::NORMAL, |x| x.policy);
        if let Err(e) = t.sched.remove_task(tid(pid), now) {
            log::warn!("remove {pid}: {e}");
        }
        t.futexes.retain(|w| w.1 != pid);
        t.syscalls += body.syscalls;
        let left = match t.procs.get_mut(&tgid) {
            Some(l) => {
                l.threads = l.threads.saturating_sub(1);
                l.threads
            }
            None => 0,
        };
        body.fs.locks().exit_thread(pid, tgid, left == 0);
        if left == 0 && t.procs.get(&tgid).is_some_and(|e| e.sid == tgid) {
            self.session_leader_exit(t, body, tgid);
        }
        if left == 0 {
            // SEM_UNDO: the process's adjustments are applied.
            let woken = self.sysv_lock().exit_process(tgid);
            for mut w in woken {
                crate::fs::pipe::wake_all(w.take());
            }
        }
        if pid != tgid {
            self.traced_thread_exit(t, pid, status);
            t.procs.remove(&pid);
        } else if let Some(e) = t.procs.get_mut(&pid) {
            // The leader's entry stands for the process until it ends.
            e.state = PState::Zombie(status);
            e.vms = None;
            e.lock = None;
            e.signals.clear();
        }
        if left == 1 {
            self.unshare_signals(t, tgid);
        }
        if left > 0 {
            if let Some(crate::thread::Kill::Dethread(s)) = body.mm.kill_order() {
                // execve in thread `s` waits for this.
                self.wake_locked(t, s);
            }
            return;
        }
        // The process ends: with the group's status, else the leader's.
        let status = match body.mm.kill_order() {
            Some(crate::thread::Kill::Group(s)) => s,
            _ => match t.procs.get(&tgid).map(|e| e.state) {
                Some(PState::Zombie(s)) => s,
                _ => status,
            },
        };
        self.process_exit_locked(t, body, status, runtime, policy);
    }

    /// The last thread of process `body.thread.tgid` ended: zombie, record,
    /// orphans, SIGCHLD, wake the parent.
    fn process_exit_locked(
        &self,
        t: &mut Table,
        body: &Vproc,
        status: ExitStatus,
        runtime: u64,
        policy: Policy,
    ) {
        let pid = body.thread.tgid;
        if pid == t.init && self.opts.memstats {
            let vms: Vec<(Arc<Vmspace>, String)> = t
                .procs
                .iter()
                .filter_map(|(p, e)| {
                    let v = if *p == pid {
                        Some(body.mm.vmspace_arc())
                    } else {
                        e.vms.clone()
                    };
                    v.map(|v| (v, format!("{p} {}", e.comm)))
                })
                .collect();
            let named: Vec<(&Vmspace, &str)> =
                vms.iter().map(|(v, n)| (&**v, n.as_str())).collect();
            t.memstats = Some(match MemStats::collect_named(&named) {
                Ok(m) if self.opts.memstats_json => m.to_json() + "\n",
                Ok(m) => m.to_table(),
                Err(e) => format!("memstats: {e}\n"),
            });
        }
        let ppid = t.procs.get(&pid).map_or(PPID, |e| e.ppid);
        let death = t
            .procs
            .get(&pid)
            .and_then(|e| e.death.clone())
            .or_else(|| body.death.clone());
        t.records.push(ProcRecord {
            pid,
            ppid,
            comm: body.comm.clone(),
            status,
            runtime_ns: runtime,
            policy,
            syscalls: body.syscalls,
            death: death.clone(),
        });
        self.spawned_exit(pid, status);
        if let Some(e) = t.procs.get_mut(&pid) {
            e.state = PState::Zombie(status);
            e.vms = None;
            e.lock = None;
            e.signals.clear();
        }
        self.end_pidfds_locked(t, pid);
        self.tracer_gone(t, pid);
        self.traced_process_exit(t, pid, ppid);
        self.reparent_orphans(t, pid);
        if pid == t.init {
            t.exit = Some((status, death));
            self.done.store(true, Ordering::SeqCst);
            // Every vCPU must see it, also one that entered its vproc a
            // moment ago (a kick outside KVM_RUN makes the next entry exit
            // at once, so none is lost).
            for kk in &self.kickers {
                kk.kick();
            }
            self.notify();
            return;
        }
        if ppid == PPID || !t.procs.contains_key(&ppid) {
            if t.procs.get(&pid).is_some_and(|e| e.trace.is_none()) {
                t.procs.remove(&pid);
            }
            return;
        }
        self.report_child_end(t, ppid, pid, status);
    }
}
