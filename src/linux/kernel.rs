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
use super::syscalls::errno::*;
use super::{debugger, ExitStatus, Vproc, VprocError, PPID};

/// A process id.
pub type Pid = i32;

/// What a blocked vproc waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// A wake-up (pipe, child exit, signal); the call is retried.
    Event,
    /// A wake-up or the deadline (nanosleep: the result is already set).
    Until(Instant),
}

/// The watchdog of event waits: a vproc that waits for an event is
/// retried after this long anyway. Every wake-up is delivered (see the
/// module docs), so a retry that then succeeds means one was lost: it is
/// logged and counted ([`Report::lost_wakeups`]).
const WATCHDOG: Duration = Duration::from_secs(1);

/// Work a syscall leaves for the vCPU loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// fork/vfork/clone without CLONE_VM: clone flags, parent and child tid
    /// pointers, TLS and stack for the child.
    Fork {
        /// clone flags (low byte: the exit signal).
        flags: u64,
        /// CLONE_PARENT_SETTID target.
        ptid: u64,
        /// CLONE_CHILD_SETTID / CLEARTID target.
        ctid: u64,
        /// CLONE_SETTLS value.
        tls: u64,
        /// The child's stack pointer (0: the parent's).
        stack: u64,
    },
}

/// How the virtual kernel runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// vCPU threads (the machine needs at least this many vCPUs).
    pub cpus: usize,
    /// Most vprocs alive at once (zombies count); fork beyond gets EAGAIN.
    pub max_procs: usize,
    /// Scheduler tick: how often busy vCPUs are kicked.
    pub tick: Duration,
    /// Collect memory statistics of all vprocs when the first one exits.
    pub memstats: bool,
    /// Render those statistics as JSON instead of a table.
    pub memstats_json: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cpus: 1,
            max_procs: 64,
            tick: Duration::from_millis(4),
            memstats: false,
            memstats_json: false,
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
    /// Most vprocs alive at once.
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
    Zombie(ExitStatus),
}

/// A futex waiter: (vmspace, address), pid, FUTEX_WAIT_BITSET bits.
type FutexWaiter = ((usize, u64), Pid, u32);

struct Entry {
    ppid: Pid,
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
    comm: String,
    vms: Option<Arc<Vmspace>>,
    /// alarm / setitimer.
    itimers: Itimers,
    /// Stopped by this signal and not yet reported to wait4(WUNTRACED).
    stop_report: Option<i32>,
    /// Continued and not yet reported to wait4(WCONTINUED).
    cont_report: bool,
}

/// The process table.
struct Table {
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
}

/// The shared state of a virtual kernel.
pub struct Kernel {
    table: Mutex<Table>,
    /// Event count for idle vCPUs: bumped (under its own lock) by every
    /// change that may give an idle vCPU work, so a vCPU that read it
    /// before looking at the table never sleeps through one.
    events: Mutex<u64>,
    idle: Condvar,
    wakes: Mutex<Vec<Pid>>,
    wakes_flag: AtomicBool,
    kickers: Vec<Kicker>,
    /// When each vCPU last entered its vproc (ns since start; 0: not in
    /// the guest).
    entered: Vec<AtomicU64>,
    start: Instant,
    done: AtomicBool,
    opts: Options,
    ticker: Mutex<Option<Waker>>,
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

/// Would `info` do anything to a vproc with this signal state (handler or
/// default action that kills)? `None` state: assume yes.
fn deliverable(body: Option<&Vproc>, signo: i32) -> bool {
    if signo == signal::SIGKILL {
        return true;
    }
    let Some(b) = body else {
        return true;
    };
    if b.sig.blocked & signal::bit(signo) != 0 {
        return false;
    }
    let h = b.sig.actions[signo as usize].handler;
    h != signal::SIG_IGN
        && (h != signal::SIG_DFL || signal::default_action(signo) != signal::Default_::Ignore)
}

impl Kernel {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
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
        since != 0 && self.now().saturating_sub(since) >= self.opts.tick.as_nanos() as u64 / 2
    }

    fn wake_locked(&self, t: &mut Table, pid: Pid) {
        let now = self.now();
        let Some(e) = t.procs.get_mut(&pid) else {
            return;
        };
        // A real wake-up: whatever the watchdog did before does not count.
        e.watchdog_woke = false;
        match e.state {
            PState::Sleeping(_) => {
                e.state = PState::Runnable;
                e.wake_pending = false;
                match t.sched.wake(tid(pid), now) {
                    Ok(true) => {
                        let cpu = t.sched.task(tid(pid)).map_or(0, |x| x.cpu);
                        self.kick(t, cpu);
                    }
                    Ok(false) => {}
                    Err(e) => log::warn!("wake {pid}: {e}"),
                }
                self.notify();
            }
            PState::Runnable | PState::Running(_) | PState::Embryo | PState::Stopped => {
                e.wake_pending = true
            }
            PState::Zombie(_) => {}
        }
    }

    /// SIGCONT (or SIGKILL) for a stopped vproc: it runs again.
    fn resume_locked(&self, t: &mut Table, pid: Pid) {
        let now = self.now();
        let Some(e) = t.procs.get_mut(&pid) else {
            return;
        };
        if e.state != PState::Stopped {
            return;
        }
        e.state = PState::Runnable;
        e.stop_report = None;
        e.cont_report = true;
        let ppid = e.ppid;
        match t.sched.wake(tid(pid), now) {
            Ok(true) => {
                let cpu = t.sched.task(tid(pid)).map_or(0, |x| x.cpu);
                self.kick(t, cpu);
            }
            Ok(false) => {}
            Err(e) => log::warn!("continue {pid}: {e}"),
        }
        self.notify();
        self.child_changed(t, ppid, pid, 6, signal::SIGCONT);
    }

    /// Tell `ppid` that its child `pid` stopped (code 5, CLD_STOPPED) or
    /// continued (6, CLD_CONTINUED): SIGCHLD, and a wake-up for wait4.
    fn child_changed(&self, t: &mut Table, ppid: Pid, pid: Pid, code: i32, sig: i32) {
        if ppid == PPID || !t.procs.contains_key(&ppid) {
            return;
        }
        let nocldstop = t
            .procs
            .get(&ppid)
            .and_then(|e| e.body.as_deref())
            .is_some_and(|b| {
                b.sig.actions[signal::SIGCHLD as usize].flags & signal::SA_NOCLDSTOP != 0
            });
        if !nocldstop {
            self.post_signal(
                t,
                ppid,
                SigInfo {
                    signo: signal::SIGCHLD,
                    code,
                    pid,
                    err: sig as u64,
                    ..Default::default()
                },
            );
        }
        self.wake_locked(t, ppid);
    }

    /// Drain the wake-up queue and expire sleep deadlines.
    fn process_wakes(&self, t: &mut Table) {
        if self.wakes_flag.swap(false, Ordering::SeqCst) {
            let w = std::mem::take(&mut *self.wakes.lock().unwrap());
            for pid in w {
                self.wake_locked(t, pid);
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
                if d <= now && !matches!(e.state, PState::Zombie(_)) {
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
                let used = t.sched.runtime(tid(p)).unwrap_or(0);
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
        for (pid, signo) in fire {
            self.post_signal(
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
            .min()
    }

    /// CPU time of `pid` by the scheduler's accounting (ns).
    pub fn cpu_time(&self, pid: Pid) -> u64 {
        self.lock().sched.runtime(tid(pid)).unwrap_or(0)
    }

    /// Run `f` on the interval timers of `pid`.
    pub fn swap_itimer<R>(&self, pid: Pid, f: impl FnOnce(&mut Itimers) -> R) -> R {
        let mut t = self.lock();
        let mut none = Itimers::default();
        let timers = t.procs.get_mut(&pid).map_or(&mut none, |e| &mut e.itimers);
        let r = f(timers);
        drop(t);
        // An idle vCPU may have to wake earlier for it.
        self.notify();
        r
    }

    /// The watchdog ended an event wait of `pid` and its call `nr` then
    /// succeeded: a wake-up was lost. Logged and counted.
    pub fn lost_wakeup(&self, pid: Pid, nr: u64) {
        log::warn!(
            "vproc {pid}: {} waited for a wake-up that never came (watchdog retry)",
            super::syscalls::name(nr)
        );
        self.lock().lost_wakeups += 1;
    }

    /// Register `pid` as waiting on the futex `key`.
    pub fn futex_wait(&self, key: (usize, u64), pid: Pid, bits: u32) {
        self.lock().futexes.push((key, pid, bits));
    }

    /// Is `pid` still registered on a futex (not woken yet)?
    pub fn futex_waiting(&self, pid: Pid) -> bool {
        self.lock().futexes.iter().any(|w| w.1 == pid)
    }

    /// Forget `pid`'s futex wait (timeout, signal, exit).
    pub fn futex_cancel(&self, pid: Pid) {
        self.lock().futexes.retain(|w| w.1 != pid);
    }

    /// Wake up to `n` waiters of `key` whose bits meet `bits`; with
    /// `requeue`, move up to that many of the rest to another key.
    /// Returns how many were woken (plus requeued, for requeue).
    pub fn futex_wake(
        &self,
        key: (usize, u64),
        n: usize,
        bits: u32,
        requeue: Option<((usize, u64), usize)>,
    ) -> usize {
        let mut t = self.lock();
        let mut woken = Vec::new();
        let mut moved = 0;
        let mut i = 0;
        while i < t.futexes.len() {
            let (k, pid, b) = t.futexes[i];
            if k == key && b & bits != 0 {
                if woken.len() < n {
                    woken.push(pid);
                    t.futexes.remove(i);
                    continue;
                }
                if let Some((to, max)) = requeue {
                    if moved < max {
                        t.futexes[i].0 = to;
                        moved += 1;
                    }
                }
            }
            i += 1;
        }
        for pid in &woken {
            self.wake_locked(&mut t, *pid);
        }
        woken.len() + moved
    }

    /// Queue `info` for `pid` (another vproc, or one not running now).
    fn post_signal(&self, t: &mut Table, pid: Pid, info: SigInfo) {
        let Some(e) = t.procs.get_mut(&pid) else {
            return;
        };
        if matches!(e.state, PState::Zombie(_) | PState::Embryo) {
            return;
        }
        if info.signo == signal::SIGCONT {
            // Continues the process even when ignored or blocked, and
            // discards pending stop signals.
            e.signals.retain(|s| !signal::is_stop(s.signo));
            if let Some(b) = e.body.as_deref_mut() {
                b.sig.pending.retain(|s| !signal::is_stop(s.signo));
            }
            if e.state == PState::Stopped {
                self.resume_locked(t, pid);
            }
        } else if signal::is_stop(info.signo) {
            e.signals.retain(|s| s.signo != signal::SIGCONT);
        } else if info.signo == signal::SIGKILL && e.state == PState::Stopped {
            self.resume_locked(t, pid);
        }
        let Some(e) = t.procs.get_mut(&pid) else {
            return;
        };
        let wake = deliverable(e.body.as_deref(), info.signo);
        if let Some(b) = e.body.as_deref() {
            let h = b.sig.actions[info.signo as usize].handler;
            if info.signo != signal::SIGKILL
                && (h == signal::SIG_IGN
                    || (h == signal::SIG_DFL
                        && signal::default_action(info.signo) == signal::Default_::Ignore))
            {
                return;
            }
        }
        if !e.signals.iter().any(|s| s.signo == info.signo) {
            e.signals.push(info);
        }
        e.sig_flag.store(true, Ordering::SeqCst);
        match e.state {
            PState::Sleeping(_) if wake => self.wake_locked(t, pid),
            PState::Running(c) => self.kick(t, c),
            _ => {}
        }
    }

    fn alive(t: &Table) -> usize {
        t.procs.len()
    }

    /// A vproc exited: zombie, accounting, orphans, SIGCHLD, wake the parent.
    fn exit_locked(&self, t: &mut Table, body: &Vproc, cpu: usize) {
        let pid = body.pid;
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
        t.records.push(ProcRecord {
            pid,
            ppid,
            comm: body.comm.clone(),
            status,
            runtime_ns: runtime,
            policy,
            syscalls: body.syscalls,
            death: body.death.clone(),
        });
        if let Some(e) = t.procs.get_mut(&pid) {
            e.state = PState::Zombie(status);
            e.vms = None;
            e.signals.clear();
        }
        // Orphans go to the reaper (pid 1, outside the virtual kernel),
        // which reaps them at once.
        let orphans: Vec<Pid> = t
            .procs
            .iter()
            .filter(|(_, e)| e.ppid == pid)
            .map(|(p, _)| *p)
            .collect();
        for o in orphans {
            let e = t.procs.get_mut(&o).expect("listed");
            e.ppid = PPID;
            if matches!(e.state, PState::Zombie(_)) {
                t.procs.remove(&o);
            }
        }
        if pid == t.init {
            t.exit = Some((status, body.death.clone()));
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
            t.procs.remove(&pid);
            return;
        }
        let (code, st) = match status {
            ExitStatus::Exited(c) => (1, c),
            ExitStatus::Signaled(s) => (2, s),
        };
        if body.exit_signal > 0 && body.exit_signal <= 64 {
            self.post_signal(
                t,
                ppid,
                SigInfo {
                    signo: body.exit_signal,
                    code,
                    pid,
                    err: st as u64,
                    ..Default::default()
                },
            );
        }
        self.wake_locked(t, ppid);
    }

    /// A table for ps (the debugger).
    pub fn ps(&self) -> String {
        let t = self.lock();
        let mut s =
            String::from("  PID  PPID  PGID STATE        CPU   RUNTIME_MS POLICY          CMD\n");
        for (pid, e) in &t.procs {
            let task = t.sched.task(tid(*pid));
            let st = match e.state {
                PState::Embryo => "embryo".to_string(),
                PState::Runnable => "runnable".to_string(),
                PState::Running(c) => format!("running/{c}"),
                PState::Sleeping(None) => "sleeping".to_string(),
                PState::Sleeping(Some(_)) => "sleep-timed".to_string(),
                PState::Stopped => "stopped".to_string(),
                PState::Zombie(_) => "zombie".to_string(),
            };
            s += &format!(
                "{pid:5} {:5} {:5} {st:12} {:3} {:12.1} {:15} {}\n",
                e.ppid,
                e.pgid,
                task.map_or(0, |x| x.cpu),
                task.map_or(0, |x| x.sum_exec_runtime) as f64 / 1e6,
                format!("{:?}", task.map_or(Policy::NORMAL, |x| x.policy)),
                e.comm
            );
        }
        s += &format!(
            "{} vprocs (limit {}), {} forks, {} refused, {} context switches\n",
            t.procs.len(),
            self.opts.max_procs,
            t.forks,
            t.eagain,
            t.sched.total_context_switches()
        );
        s
    }

    /// Memory statistics of every vproc that is not running right now
    /// (`memrank`: ranked by PSS).
    /// memstats (one vproc when `pid` is given, else every vproc) or
    /// memrank (`ranked`: every vproc sorted by PSS, then frame totals), as
    /// a table or JSON. Sharing is computed over all live vprocs.
    pub fn memstats(&self, pid: Option<u32>, ranked: bool, json: bool) -> String {
        let vms: Vec<(Arc<Vmspace>, String)> = {
            let t = self.lock();
            t.procs
                .iter()
                .filter_map(|(p, e)| e.vms.clone().map(|v| (v, format!("{p} {}", e.comm))))
                .collect()
        };
        let named: Vec<(&Vmspace, &str)> = vms.iter().map(|(v, n)| (&**v, n.as_str())).collect();
        let m = match MemStats::collect_named(&named) {
            Ok(m) => m,
            Err(e) => return format!("memstats: {e}\n"),
        };
        if let Some(pid) = pid {
            let prefix = format!("{pid} ");
            return match m.usages().iter().find(|u| u.name.starts_with(&prefix)) {
                Some(u) if json => u.to_json() + "\n",
                Some(u) => u.to_table(),
                None => format!("memstats: no vproc {pid} with a vmspace here\n"),
            };
        }
        match (ranked, json) {
            (_, true) => m.to_json() + "\n",
            (true, false) => m.to_table(),
            (false, false) => m.usages().iter().map(|u| u.to_table()).collect(),
        }
    }
}

/// Why a run segment ended.
enum Outcome {
    Preempt,
    Block(Wait),
    /// Stopped by this signal.
    Stop(i32),
    Exit,
}

/// Run `init` and everything it forks on `opts.cpus` vCPUs of `machine`
/// until `init` exits.
pub fn run(machine: &Machine, mut init: Vproc, opts: &Options) -> Result<Report, VprocError> {
    let ncpu = opts.cpus.max(1);
    let mut cpus = Vec::new();
    for i in 0..ncpu {
        match machine.take_cpu(i) {
            Some(c) => cpus.push(c),
            None => {
                return Err(VprocError::Run(RunError::Broken(format!(
                    "vCPU {i} is missing or taken (build the machine with .vcpus({ncpu}))"
                ))))
            }
        }
    }
    let sched =
        Scheduler::new(ncpu).map_err(|e| VprocError::Run(RunError::Broken(e.to_string())))?;
    let k = Arc::new(Kernel {
        table: Mutex::new(Table {
            procs: BTreeMap::new(),
            sched,
            next_pid: init.pid + 1,
            init: init.pid,
            exit: None,
            records: Vec::new(),
            forks: 0,
            eagain: 0,
            max_alive: 1,
            syscalls: 0,
            running: vec![None; ncpu],
            memstats: None,
            futexes: Vec::new(),
            lost_wakeups: 0,
        }),
        events: Mutex::new(0),
        idle: Condvar::new(),
        wakes: Mutex::new(Vec::new()),
        wakes_flag: AtomicBool::new(false),
        kickers: cpus.iter().map(|c| c.kicker()).collect(),
        entered: (0..ncpu).map(|_| AtomicU64::new(0)).collect(),
        start: Instant::now(),
        done: AtomicBool::new(false),
        ticker: Mutex::new(None),
        opts: Options {
            cpus: ncpu,
            ..opts.clone()
        },
    });
    init.k = Some(k.clone());
    let pid = init.pid;
    {
        let mut t = k.lock();
        let now = k.now();
        t.sched
            .add_task(tid(pid), Policy::NORMAL, 0, 0, now)
            .map_err(|e| VprocError::Run(RunError::Broken(e.to_string())))?;
        t.procs.insert(
            pid,
            Entry {
                ppid: PPID,
                pgid: pid,
                sid: pid,
                state: PState::Runnable,
                sig_flag: init.sig_flag.clone(),
                vms: Some(init.mm.vmspace_arc()),
                comm: init.comm.clone(),
                body: Some(Box::new(init)),
                signals: Vec::new(),
                wake_pending: false,
                event_wait: false,
                watchdog_woke: false,
                itimers: Default::default(),
                stop_report: None,
                cont_report: false,
            },
        );
    }
    let mut results: Vec<Result<CpuStats, VprocError>> = Vec::new();
    std::thread::scope(|s| {
        let ticker = {
            let k = k.clone();
            std::thread::Builder::new()
                .name("vkernel-tick".into())
                .spawn_scoped(s, move || ticker(&k))
        };
        let ticker = match ticker {
            Ok(t) => t,
            Err(source) => {
                results.push(Err(VprocError::Thread {
                    what: "scheduler tick".into(),
                    source,
                }));
                return;
            }
        };
        // The vCPUs stay owned here: a Kicker must never outlive its Cpu.
        let mut handles = Vec::new();
        let mut it = cpus.iter_mut();
        let cpu0 = it.next().expect("one vCPU");
        let mut spawned = Ok(());
        for (i, cpu) in it.enumerate() {
            let k = k.clone();
            let h = std::thread::Builder::new()
                .name(format!("vcpu{}", i + 1))
                .spawn_scoped(s, move || {
                    let r = cpu_loop(&k, machine, cpu);
                    if r.is_err() {
                        // The vproc this vCPU ran is lost: end the whole
                        // virtual kernel rather than let its parent wait
                        // forever.
                        stop_all(&k);
                    }
                    r
                });
            match h {
                Ok(h) => handles.push(h),
                Err(source) => {
                    spawned = Err(VprocError::Thread {
                        what: format!("vCPU {}", i + 1),
                        source,
                    });
                    break;
                }
            }
        }
        match spawned {
            Ok(()) => results.push(cpu_loop(&k, machine, cpu0)),
            Err(e) => results.push(Err(e)),
        }
        // Whatever happened on vCPU 0, stop the others and the ticker.
        // Kick until every vCPU thread is out: one kick can be lost when it
        // lands while its vCPU thread clears the previous one (seen on our
        // PVM hosts under load), and a vproc that never traps would then
        // hold its vCPU forever.
        stop_all(&k);
        while handles.iter().any(|h| !h.is_finished()) {
            stop_all(&k);
            std::thread::sleep(Duration::from_millis(2));
        }
        for h in handles {
            results.push(h.join().unwrap_or_else(|_| {
                Err(VprocError::Run(RunError::Broken(
                    "a vCPU thread panicked".into(),
                )))
            }));
        }
        let _ = ticker.join();
    });
    let mut cpu_stats = Vec::new();
    for r in results {
        cpu_stats.push(r?);
    }
    // Tear down: bodies go after the lock is released.
    let (bodies, report) = {
        let mut t = k.lock();
        let bodies: Vec<Box<Vproc>> = t.procs.values_mut().filter_map(|e| e.body.take()).collect();
        let (status, death) = t
            .exit
            .clone()
            .unwrap_or((ExitStatus::Signaled(signal::SIGKILL), None));
        let syscalls = t.syscalls + bodies.iter().map(|b| b.syscalls).sum::<u64>();
        let report = Report {
            status,
            death,
            procs: std::mem::take(&mut t.records),
            context_switches: t.sched.total_context_switches(),
            forks: t.forks,
            fork_eagain: t.eagain,
            max_alive: t.max_alive,
            syscalls,
            cpu_stats,
            memstats: t.memstats.take(),
            lost_wakeups: t.lost_wakeups,
        };
        t.procs.clear();
        (bodies, report)
    };
    for b in &bodies {
        b.stdio.flush();
    }
    drop(bodies);
    drop(k);
    drop(cpus);
    Ok(report)
}

/// End the run: every vCPU loop and the ticker return soon.
fn stop_all(k: &Kernel) {
    k.done.store(true, Ordering::SeqCst);
    if let Some(w) = k.ticker.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        w.wake();
    }
    // Every vCPU, even one that just entered the guest: a spinning vproc
    // would not come back by itself once the ticker has stopped.
    for kk in &k.kickers {
        kk.kick();
    }
    k.notify();
}

/// The tick source: a timerfd on an event loop, kicking busy vCPUs.
fn ticker(k: &Kernel) {
    let run = || -> Result<(), String> {
        let mut ev = EventLoop::new().map_err(|e| e.to_string())?;
        let mut timer = Timer::new().map_err(|e| e.to_string())?;
        timer.register(ev.handle()).map_err(|e| e.to_string())?;
        timer.arm_periodic(k.opts.tick).map_err(|e| e.to_string())?;
        *k.ticker.lock().unwrap() = Some(ev.waker());
        if k.done.load(Ordering::SeqCst) {
            return Ok(());
        }
        ev.run(|e| {
            if let Event::Timer { .. } = e {
                // Expire deadlines and timers, drain wake-ups: a vCPU whose
                // vproc never traps would not. Then kick only vCPUs whose
                // vproc may have to give way: every kick costs an exit.
                let mut t = k.lock();
                k.process_wakes(&mut t);
                for i in 0..k.kickers.len() {
                    if k.deep_in_guest(i) && (t.sched.nr_running(i) > 1 || t.sched.need_resched(i))
                    {
                        k.kickers[i].kick();
                    }
                }
                drop(t);
                // Idle vCPUs look for sleepers whose time has come.
                k.notify();
            }
            if k.done.load(Ordering::SeqCst) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .map_err(|e| e.to_string())?;
        Ok(())
    };
    if let Err(e) = run() {
        log::warn!("ticker: {e}; no preemption");
    }
}

/// Let the vCPU load its own FPU context once (a tiny vproc that uses
/// SSE) before the first vproc runs; from then on the core moves FPU
/// state between vprocs ([`Cpu::set_fpu`], [`Cpu::release_fpu`]), also
/// across vCPUs.
fn warm_up_fpu(machine: &Machine, cpu: &mut Cpu, frames: &super::mm::Frames) {
    let mut run = || -> Option<()> {
        let f = frames.lock().ok()?.alloc(machine.ram()).ok()?;
        // movaps xmm0, xmm0; ud2
        let ok = machine
            .ram()
            .write(f, &[0x0f, 0x28, 0xc0, 0x0f, 0x0b])
            .is_ok()
            && {
                let vms = machine.vmspace_create().ok()?;
                vms.mmap(
                    0x40_0000,
                    0x1000,
                    Backing::Linear {
                        gpa: f,
                        prot: Prot::RX,
                    },
                )
                .ok()?;
                let mut frame = TrapFrame::new(0x40_0000, 0);
                matches!(cpu.run(&vms, &mut frame), Ok(Trap::Exception { .. }))
            };
        frames.lock().ok()?.free(f);
        ok.then_some(())
    };
    if run().is_none() {
        log::warn!("vCPU {}: FPU warm-up failed", cpu.index());
    }
}

/// Save the vproc's FPU registers into its context and give the context
/// up, so that any vCPU can run the vproc next.
fn release_fpu(cpu: &mut Cpu, body: &Vproc) {
    if let Err(e) = cpu.release_fpu() {
        log::warn!(
            "vCPU {}: FPU state of vproc {} not saved: {e}",
            cpu.index(),
            body.pid
        );
    }
}

fn cpu_loop(k: &Arc<Kernel>, machine: &Machine, cpu: &mut Cpu) -> Result<CpuStats, VprocError> {
    let idx = cpu.index();
    {
        let frames = {
            let t = k.lock();
            t.procs
                .values()
                .find_map(|e| e.body.as_ref().map(|b| b.mm.frames().clone()))
        };
        if let Some(fr) = frames {
            warm_up_fpu(machine, cpu, &fr);
        }
    }
    loop {
        // Pick the next vproc.
        let mut body = {
            let mut t = k.lock();
            loop {
                let seen = k.events_seen();
                k.process_wakes(&mut t);
                if t.exit.is_some() || k.done.load(Ordering::SeqCst) {
                    return Ok(cpu.stats());
                }
                let now = k.now();
                let mut next = t
                    .sched
                    .schedule(idx, now)
                    .map_err(|e| VprocError::Run(RunError::Broken(e.to_string())))?;
                if next.is_none() && t.sched.load_balance(now) > 0 {
                    next = t
                        .sched
                        .schedule(idx, now)
                        .map_err(|e| VprocError::Run(RunError::Broken(e.to_string())))?;
                    for c in 0..k.kickers.len() {
                        if c != idx && t.sched.need_resched(c) {
                            k.kick(&t, c);
                        }
                    }
                }
                if let Some(id) = next {
                    let pid = id.0 as Pid;
                    let e = t.procs.get_mut(&pid).expect("scheduled vprocs exist");
                    if let Some(mut b) = e.body.take() {
                        e.state = PState::Running(idx);
                        b.watchdog_retry = std::mem::take(&mut e.watchdog_woke);
                        for s in e.signals.drain(..) {
                            b.queue_signal(s);
                        }
                        e.sig_flag.store(false, Ordering::SeqCst);
                        t.running[idx] = Some(pid);
                        break b;
                    }
                    log::warn!("vCPU {idx}: vproc {pid} scheduled but not in the table");
                }
                // Idle: wait for a wake-up, a deadline, or the debugger.
                t.running[idx] = None;
                let soon = Instant::now() + Duration::from_millis(20);
                let until = Kernel::next_deadline(&t).unwrap_or(soon).min(soon);
                let wait = until.saturating_duration_since(Instant::now());
                drop(t);
                k.idle_wait(seen, wait.max(Duration::from_micros(50)));
                t = k.lock();
                if idx == 0 {
                    let stdio = t
                        .procs
                        .values()
                        .find_map(|e| e.body.as_ref().map(|b| b.stdio.clone()));
                    if let Some(st) = stdio {
                        if st.interrupt_pending() {
                            drop(t);
                            if st.take_interrupt() {
                                if st.interactive() {
                                    idle_debugger(k, &st);
                                } else {
                                    interrupt_foreground(k);
                                }
                            }
                            t = k.lock();
                        }
                    }
                }
            }
        };
        let out = segment(k, machine, cpu, &mut body);
        release_fpu(cpu, &body);
        let out = out?;
        let dead = {
            let mut t = k.lock();
            k.process_wakes(&mut t);
            t.running[idx] = None;
            let pid = body.pid;
            match out {
                Outcome::Exit => {
                    k.exit_locked(&mut t, &body, idx);
                    Some(body)
                }
                Outcome::Block(w) => {
                    let e = t.procs.get_mut(&pid).expect("running vprocs exist");
                    let wake = e.wake_pending
                        || e.signals.iter().any(|s| deliverable(Some(&body), s.signo));
                    e.wake_pending = false;
                    e.event_wait = w == Wait::Event;
                    if wake {
                        e.state = PState::Runnable;
                    } else {
                        // An event wait is retried after WATCHDOG anyway; a
                        // retry that succeeds is counted as a lost wake-up.
                        e.state = PState::Sleeping(Some(match w {
                            Wait::Event => Instant::now() + WATCHDOG,
                            Wait::Until(d) => d,
                        }));
                        let now = k.now();
                        if let Err(err) = t.sched.sleep(tid(pid), now) {
                            log::warn!("sleep {pid}: {err}");
                        }
                    }
                    let e = t.procs.get_mut(&pid).expect("running vprocs exist");
                    e.body = Some(body);
                    None
                }
                Outcome::Preempt => {
                    let e = t.procs.get_mut(&pid).expect("running vprocs exist");
                    e.state = PState::Runnable;
                    e.body = Some(body);
                    None
                }
                Outcome::Stop(sig) => {
                    let e = t.procs.get_mut(&pid).expect("running vprocs exist");
                    let resumed = e.signals.iter().any(|s| s.signo == signal::SIGCONT);
                    e.body = Some(body);
                    if resumed {
                        // SIGCONT came while it was stopping.
                        e.state = PState::Runnable;
                    } else {
                        e.state = PState::Stopped;
                        e.stop_report = Some(sig);
                        e.cont_report = false;
                        let ppid = e.ppid;
                        let now = k.now();
                        if let Err(err) = t.sched.sleep(tid(pid), now) {
                            log::warn!("stop {pid}: {err}");
                        }
                        k.child_changed(&mut t, ppid, pid, 5, sig);
                    }
                    None
                }
            }
        };
        drop(dead);
    }
}

/// Ctrl-C while vCPU 0 idles: the debugger without a current vproc.
fn idle_debugger(k: &Arc<Kernel>, st: &super::stdio::SharedStdio) {
    let _ = st.write(2, b"\n[vkernel debugger] all vprocs are blocked.\n");
    if debugger::prompt_kernel(k, st) == debugger::Outcome::Quit {
        kill_all(k);
    }
}

/// si_code of a signal the kernel sent (SI_KERNEL), as for a terminal's
/// SIGINT.
pub const SI_KERNEL: i32 = 0x80;

/// SIGINT with nobody at a terminal to answer the debugger (stdin is not
/// a terminal): as Linux does for a foreground job, init's process group
/// gets SIGINT from the kernel (and by default dies of it: exit 130).
fn interrupt_foreground(k: &Kernel) {
    let mut t = k.lock();
    let init = t.init;
    let pgid = t.procs.get(&init).map_or(init, |e| e.pgid);
    let pids: Vec<Pid> = t
        .procs
        .iter()
        .filter(|(_, e)| e.pgid == pgid)
        .map(|(p, _)| *p)
        .collect();
    for p in pids {
        k.post_signal(
            &mut t,
            p,
            SigInfo {
                signo: signal::SIGINT,
                code: SI_KERNEL,
                ..Default::default()
            },
        );
    }
}

/// Kill every vproc (the debugger's quit): init dies of SIGINT.
fn kill_all(k: &Kernel) {
    let mut t = k.lock();
    let pids: Vec<Pid> = t.procs.keys().copied().collect();
    for p in pids {
        k.post_signal(
            &mut t,
            p,
            SigInfo {
                signo: signal::SIGKILL,
                ..Default::default()
            },
        );
    }
    let init = t.init;
    if let Some(e) = t.procs.get_mut(&init) {
        if let Some(b) = e.body.as_mut() {
            b.death = Some("killed from the debugger".into());
        }
    }
}

/// Run `body` until it blocks, exits or is preempted.
fn segment(
    k: &Arc<Kernel>,
    machine: &Machine,
    cpu: &mut Cpu,
    body: &mut Vproc,
) -> Result<Outcome, VprocError> {
    let idx = cpu.index();
    let tick_ns = k.opts.tick.as_nanos() as u64;
    let mut next_tick = k.now() + tick_ns;
    body.deliver_pending(cpu);
    if let Some(m) = body.saved_mask.take() {
        // rt_sigsuspend woke without a handler running.
        body.sig.blocked = m;
    }
    loop {
        if body.exit.is_some() {
            return Ok(Outcome::Exit);
        }
        if let Some(sig) = body.stop.take() {
            return Ok(Outcome::Stop(sig));
        }
        if body.sig_flag.swap(false, Ordering::SeqCst) {
            let sigs: Vec<SigInfo> = {
                let mut t = k.lock();
                t.procs
                    .get_mut(&body.pid)
                    .map(|e| std::mem::take(&mut e.signals))
                    .unwrap_or_default()
            };
            for s in sigs {
                body.queue_signal(s);
            }
            body.deliver_pending(cpu);
            continue;
        }
        k.entered[idx].store(k.now().max(1), Ordering::SeqCst);
        let step = body.step(cpu);
        k.entered[idx].store(0, Ordering::SeqCst);
        let step = step?;
        if let Some(req) = body.request.take() {
            let r = match req {
                Request::Fork {
                    flags,
                    ptid,
                    ctid,
                    tls,
                    stack,
                } => fork(k, machine, cpu, body, flags, ptid, ctid, tls, stack),
            };
            body.frame.rax = r as u64;
            if body.trace {
                vk_eprintln!("[vk {}] fork = {r}", body.pid);
            }
        }
        if let Some(w) = body.block.take() {
            if body.exit.is_none() {
                return Ok(Outcome::Block(w));
            }
        }
        if std::mem::take(&mut body.yield_cpu) {
            let mut t = k.lock();
            let now = k.now();
            let _ = t.sched.yield_now(tid(body.pid), now);
            if t.sched.nr_running(idx) > 1 {
                return Ok(Outcome::Preempt);
            }
        }
        let now = k.now();
        let ticked = step == super::Step::Interrupted || now >= next_tick;
        if ticked {
            next_tick = now + tick_ns;
        }
        if ticked {
            let interrupt =
                step == super::Step::Interrupted && idx == 0 && body.stdio.take_interrupt();
            if interrupt && !body.stdio.interactive() {
                interrupt_foreground(k);
            } else if interrupt {
                match debugger::prompt(body, cpu, Some(k)) {
                    debugger::Outcome::Continue => {}
                    debugger::Outcome::Quit => {
                        kill_all(k);
                        body.exit = Some(ExitStatus::Signaled(signal::SIGINT));
                        continue;
                    }
                }
            }
            if k.done.load(Ordering::SeqCst) {
                return Ok(Outcome::Preempt);
            }
            let mut t = k.lock();
            k.process_wakes(&mut t);
            let now = k.now();
            let tick = t.sched.tick(idx, now).unwrap_or(false);
            if idx == 0 && k.kickers.len() > 1 && t.sched.load_balance(now) > 0 {
                for c in 1..k.kickers.len() {
                    if t.sched.need_resched(c) || t.running[c].is_none() {
                        k.kick(&t, c);
                    }
                }
            }
            if tick || t.sched.need_resched(idx) {
                return Ok(Outcome::Preempt);
            }
        } else if k.wakes_flag.load(Ordering::Relaxed) {
            let mut t = k.lock();
            k.process_wakes(&mut t);
            if t.sched.need_resched(idx) {
                return Ok(Outcome::Preempt);
            }
        }
    }
}

/// fork: a child vproc sharing the parent's memory copy-on-write. Returns
/// the child's pid or -errno.
#[allow(clippy::too_many_arguments)]
fn fork(
    k: &Arc<Kernel>,
    machine: &Machine,
    cpu: &Cpu,
    parent: &mut Vproc,
    flags: u64,
    ptid: u64,
    ctid: u64,
    tls: u64,
    stack: u64,
) -> i64 {
    const CLONE_SETTLS: u64 = 0x80000;
    const CLONE_PARENT_SETTID: u64 = 0x100000;
    const CLONE_CHILD_CLEARTID: u64 = 0x200000;
    const CLONE_CHILD_SETTID: u64 = 0x1000000;
    // Reserve a slot and a pid.
    let (pid, pgid, sid, nice_policy, target_cpu) = {
        let mut t = k.lock();
        if Kernel::alive(&t) >= k.opts.max_procs {
            t.eagain += 1;
            return -EAGAIN;
        }
        let mut pid = t.next_pid;
        while t.procs.contains_key(&pid) {
            pid = if pid >= 4_000_000 { 2 } else { pid + 1 };
        }
        t.next_pid = pid + 1;
        let (pgid, sid) = t
            .procs
            .get(&parent.pid)
            .map_or((parent.pid, parent.pid), |e| (e.pgid, e.sid));
        t.procs.insert(
            pid,
            Entry {
                ppid: parent.pid,
                pgid,
                sid,
                state: PState::Embryo,
                body: None,
                signals: Vec::new(),
                sig_flag: Arc::new(AtomicBool::new(false)),
                wake_pending: false,
                event_wait: false,
                watchdog_woke: false,
                comm: parent.comm.clone(),
                vms: None,
                itimers: Default::default(),
                stop_report: None,
                cont_report: false,
            },
        );
        t.max_alive = t.max_alive.max(t.procs.len());
        let policy = t
            .sched
            .task(tid(parent.pid))
            .map_or(Policy::NORMAL, |x| x.policy);
        let cpu = (0..t.sched.nr_cpus())
            .min_by_key(|&c| (t.sched.nr_running(c), c != cpu.index()))
            .unwrap_or(0);
        (pid, pgid, sid, policy, cpu)
    };
    let _ = (pgid, sid);
    let built = (|| -> Result<Vproc, i64> {
        let vms = machine.vmspace_create().map_err(|_| EAGAIN)?;
        let mm = parent.mm.fork(vms).map_err(|e| e.errno())?;
        let mut child = parent.fork_body(mm, pid);
        // The parent's live FPU registers are the child's too.
        match cpu.fork_fpu(&parent.fpu) {
            Ok(f) => child.fpu = f,
            Err(e) => log::warn!("fork: the child's FPU state starts afresh: {e}"),
        }
        child.exit_signal = (flags & 0xff) as i32;
        if flags & CLONE_SETTLS != 0 {
            child.frame.fs_base = tls;
        }
        if stack != 0 {
            child.frame.rsp = stack;
        }
        if flags & CLONE_CHILD_SETTID != 0 {
            child
                .mm
                .write(ctid, &pid.to_le_bytes())
                .map_err(|e| e.errno())?;
        }
        if flags & CLONE_CHILD_CLEARTID != 0 {
            child.clear_child_tid = ctid;
        }
        Ok(child)
    })();
    let mut t = k.lock();
    let child = match built {
        Ok(c) => c,
        Err(e) => {
            t.procs.remove(&pid);
            return -e;
        }
    };
    let now = k.now();
    if let Err(e) = t.sched.add_task(tid(pid), nice_policy, 0, target_cpu, now) {
        log::warn!("add_task {pid}: {e}");
        t.procs.remove(&pid);
        drop(t);
        drop(child);
        return -EAGAIN;
    }
    let e = t.procs.get_mut(&pid).expect("reserved");
    e.state = PState::Runnable;
    e.sig_flag = child.sig_flag.clone();
    e.vms = Some(child.mm.vmspace_arc());
    e.body = Some(Box::new(child));
    t.forks += 1;
    if target_cpu != cpu.index() {
        k.kick(&t, target_cpu);
    }
    k.notify();
    drop(t);
    if flags & CLONE_PARENT_SETTID != 0 {
        let _ = parent.mm.write(ptid, &pid.to_le_bytes());
    }
    pid as i64
}

/// The process syscalls, in kernel mode (`self.k` is set).
impl Vproc {
    fn kernel(&self) -> Result<Arc<Kernel>, i64> {
        self.k.clone().ok_or(ENOSYS)
    }

    /// clone/fork/vfork: left to the vCPU loop.
    pub fn sys_clone(
        &mut self,
        flags: u64,
        stack: u64,
        ptid: u64,
        ctid: u64,
        tls: u64,
    ) -> Result<i64, i64> {
        const CLONE_VM: u64 = 0x100;
        const CLONE_VFORK: u64 = 0x4000;
        const CLONE_THREAD: u64 = 0x10000;
        self.kernel()?;
        if flags & CLONE_THREAD != 0 || (flags & CLONE_VM != 0 && flags & CLONE_VFORK == 0) {
            // Threads share an address space: not supported.
            return Err(ENOSYS);
        }
        self.request = Some(Request::Fork {
            flags,
            ptid,
            ctid,
            tls,
            stack,
        });
        Ok(0)
    }

    /// wait4(pid, status, options, rusage).
    pub fn sys_wait4(
        &mut self,
        want: i32,
        status: u64,
        options: u64,
        rusage: u64,
    ) -> Result<i64, i64> {
        const WNOHANG: u64 = 1;
        const WUNTRACED: u64 = 2;
        const WCONTINUED: u64 = 8;
        const WNOWAIT: u64 = 0x0100_0000;
        const WALL: u64 = 0x4000_0000 | 0x8000_0000;
        if options & !(WNOHANG | WUNTRACED | WCONTINUED | WNOWAIT | WALL) != 0 {
            return Err(EINVAL);
        }
        let k = self.kernel().map_err(|_| ECHILD)?;
        let found = {
            let mut t = k.lock();
            let me = self.pid;
            let mypgid = t.procs.get(&me).map_or(me, |e| e.pgid);
            let matches = |pid: Pid, e: &Entry| {
                e.ppid == me
                    && match want {
                        -1 => true,
                        0 => e.pgid == mypgid,
                        p if p > 0 => pid == p,
                        p => e.pgid == -p,
                    }
            };
            let mut any = false;
            let mut zombie = None;
            for (p, e) in t.procs.iter_mut() {
                if matches(*p, e) {
                    any = true;
                    if let PState::Zombie(s) = e.state {
                        zombie = Some((*p, wstatus(s), true));
                        break;
                    }
                    if options & WUNTRACED != 0 {
                        if let Some(sig) = e.stop_report {
                            if options & WNOWAIT == 0 {
                                e.stop_report = None;
                            }
                            zombie = Some((*p, (sig << 8) | 0x7f, false));
                            break;
                        }
                    }
                    if options & WCONTINUED != 0 && e.cont_report {
                        if options & WNOWAIT == 0 {
                            e.cont_report = false;
                        }
                        zombie = Some((*p, 0xffff, false));
                        break;
                    }
                }
            }
            if let Some((p, _, true)) = zombie {
                if options & WNOWAIT == 0 {
                    t.procs.remove(&p);
                }
            }
            if !any {
                return Err(ECHILD);
            }
            zombie
        };
        match found {
            Some((p, ws, _)) => {
                if status != 0 {
                    self.mm.write(status, &ws.to_le_bytes())?;
                }
                if rusage != 0 {
                    self.mm.write(rusage, &[0u8; 144])?;
                }
                Ok(p as i64)
            }
            None if options & WNOHANG != 0 => Ok(0),
            None => self.block_on(None),
        }
    }

    /// kill(pid, sig) to other vprocs (and this one).
    pub fn sys_kill_k(&mut self, pid: i32, sig: i32) -> Result<i64, i64> {
        if !(0..=64).contains(&sig) {
            return Err(EINVAL);
        }
        let k = self.kernel()?;
        let me = self.pid;
        let info = SigInfo {
            signo: sig,
            code: 0,
            pid: me,
            ..Default::default()
        };
        let mut mine = false;
        {
            let mut t = k.lock();
            let mypgid = t.procs.get(&me).map_or(me, |e| e.pgid);
            let targets: Vec<Pid> = t
                .procs
                .iter()
                .filter(|(q, e)| {
                    !matches!(e.state, PState::Zombie(_) | PState::Embryo)
                        && match pid {
                            0 => e.pgid == mypgid,
                            -1 => **q != me,
                            p if p > 0 => **q == p,
                            p => e.pgid == -p,
                        }
                })
                .map(|(p, _)| *p)
                .collect();
            if targets.is_empty() && pid != -1 {
                return Err(ESRCH);
            }
            if sig == 0 {
                return Ok(0);
            }
            for p in targets {
                if p == me {
                    mine = true;
                } else {
                    k.post_signal(&mut t, p, info);
                }
            }
        }
        if mine {
            self.queue_signal(info);
        }
        Ok(0)
    }

    /// getppid.
    pub fn sys_getppid(&self) -> i64 {
        match &self.k {
            Some(k) => k.lock().procs.get(&self.pid).map_or(PPID, |e| e.ppid) as i64,
            None => PPID as i64,
        }
    }

    /// setpgid(pid, pgid).
    pub fn sys_setpgid(&mut self, pid: i32, pgid: i32) -> Result<i64, i64> {
        let Some(k) = self.k.clone() else {
            return Ok(0);
        };
        if pgid < 0 {
            return Err(EINVAL);
        }
        let target = if pid == 0 { self.pid } else { pid };
        let mut t = k.lock();
        let Some(e) = t.procs.get_mut(&target) else {
            return Err(ESRCH);
        };
        e.pgid = if pgid == 0 { target } else { pgid };
        Ok(0)
    }

    /// getpgid(pid) (and getpgrp), getsid, setsid.
    pub fn sys_pgid(&mut self, which: u64, pid: i32) -> Result<i64, i64> {
        let Some(k) = self.k.clone() else {
            return Ok(super::PID as i64);
        };
        let target = if pid == 0 { self.pid } else { pid };
        let mut t = k.lock();
        let Some(e) = t.procs.get_mut(&target) else {
            return Err(ESRCH);
        };
        Ok(match which {
            124 => e.sid,
            112 => {
                e.sid = target;
                e.pgid = target;
                target
            }
            _ => e.pgid,
        } as i64)
    }

    /// setpriority / getpriority (PRIO_PROCESS only).
    pub fn sys_priority(&mut self, set: bool, which: u64, who: i32, prio: i32) -> Result<i64, i64> {
        if which != 0 {
            return if set { Ok(0) } else { Ok(20) };
        }
        let Some(k) = self.k.clone() else {
            return if set { Ok(0) } else { Ok(20) };
        };
        let target = if who == 0 { self.pid } else { who };
        let mut t = k.lock();
        let now = k.now();
        let Some(task) = t.sched.task(tid(target)) else {
            return Err(ESRCH);
        };
        let cur = task.policy.nice().unwrap_or(0);
        if !set {
            return Ok(20 - cur as i64);
        }
        let nice = prio.clamp(-20, 19) as i8;
        if task.policy.is_rt() {
            return Ok(0);
        }
        t.sched
            .set_nice(tid(target), nice, now)
            .map_err(|_| EINVAL)?;
        Ok(0)
    }

    /// sched_setscheduler / sched_getscheduler / sched_getparam.
    pub fn sys_sched(&mut self, nr: u64, pid: i32, policy: i32, param: u64) -> Result<i64, i64> {
        let k = self.kernel()?;
        let target = if pid == 0 { self.pid } else { pid };
        let prio = if param != 0 && nr == 144 {
            let mut b = [0u8; 4];
            self.mm.read(param, &mut b)?;
            i32::from_le_bytes(b)
        } else {
            0
        };
        let mut t = k.lock();
        let now = k.now();
        let Some(task) = t.sched.task(tid(target)) else {
            return Err(ESRCH);
        };
        let cur = task.policy;
        match nr {
            144 => {
                let p = match policy & 0xff {
                    0 | 3 | 5 => {
                        if prio != 0 {
                            return Err(EINVAL);
                        }
                        Policy::Fair {
                            nice: cur.nice().unwrap_or(0),
                        }
                    }
                    1 | 2 => {
                        if !(1..=99).contains(&prio) {
                            return Err(EINVAL);
                        }
                        if policy & 0xff == 1 {
                            Policy::Fifo { prio: prio as u8 }
                        } else {
                            Policy::RoundRobin { prio: prio as u8 }
                        }
                    }
                    _ => return Err(EINVAL),
                };
                t.sched
                    .set_policy(tid(target), p, now)
                    .map_err(|_| EINVAL)?;
                // A real-time vproc may now preempt the one running.
                for c in 0..k.kickers.len() {
                    if t.sched.need_resched(c) {
                        k.kick(&t, c);
                    }
                }
                Ok(0)
            }
            145 => Ok(match cur {
                Policy::Fifo { .. } => 1,
                Policy::RoundRobin { .. } => 2,
                _ => 0,
            }),
            _ => {
                let p = cur.rt_prio().unwrap_or(0) as i32;
                drop(t);
                self.mm.write(param, &p.to_le_bytes())?;
                Ok(0)
            }
        }
    }
}
