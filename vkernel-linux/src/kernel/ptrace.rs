//! ptrace, the process table's side: who traces whom ([`Link`], in the
//! tracee's entry), the stops a tracee reports to its tracer's wait4,
//! and the tracer's requests on a stopped tracee (registers, memory,
//! resuming, detaching), served under the table lock on the parked body.
//!
//! The tracee's side (where it stops and what resuming does) is
//! `trace_stop.rs`; the syscall and its ABI (`user_regs_struct`,
//! `ptrace_syscall_info`) are `syscalls/ptrace.rs`.
//!
//! A tracee in a ptrace-stop is parked in the table in [`PState::Traced`]
//! with its body there, like a stopped process; its stop is in its body
//! ([`Tracing::at`]) and the wait status not yet reported in its
//! [`Link::report`]. The tracer's requests find the body there: the
//! registers are plain fields, the memory is reached through the
//! tracee's process lock, taken with a try (the table lock is held; a
//! thread of the tracee in the kernel makes the request retry).

use super::*;

/// PTRACE_EVENT_FORK.
pub const EVENT_FORK: u32 = 1;
/// PTRACE_EVENT_VFORK.
pub const EVENT_VFORK: u32 = 2;
/// PTRACE_EVENT_CLONE.
pub const EVENT_CLONE: u32 = 3;
/// PTRACE_EVENT_EXEC.
pub const EVENT_EXEC: u32 = 4;
/// PTRACE_EVENT_VFORK_DONE.
pub const EVENT_VFORK_DONE: u32 = 5;
/// PTRACE_EVENT_EXIT.
pub const EVENT_EXIT: u32 = 6;
/// PTRACE_EVENT_STOP.
pub const EVENT_STOP: u32 = 128;

/// PTRACE_O_TRACESYSGOOD.
pub const O_TRACESYSGOOD: u32 = 1;
/// PTRACE_O_TRACEFORK.
pub const O_TRACEFORK: u32 = 2;
/// PTRACE_O_TRACEVFORK.
pub const O_TRACEVFORK: u32 = 4;
/// PTRACE_O_TRACECLONE.
pub const O_TRACECLONE: u32 = 8;
/// PTRACE_O_TRACEEXEC.
pub const O_TRACEEXEC: u32 = 0x10;
/// PTRACE_O_TRACEVFORKDONE.
pub const O_TRACEVFORKDONE: u32 = 0x20;
/// PTRACE_O_TRACEEXIT.
pub const O_TRACEEXIT: u32 = 0x40;
/// PTRACE_O_TRACESECCOMP (accepted: no seccomp filter ever reports).
pub const O_TRACESECCOMP: u32 = 0x80;
/// PTRACE_O_EXITKILL.
pub const O_EXITKILL: u32 = 0x10_0000;
/// PTRACE_O_SUSPEND_SECCOMP (accepted: there is no seccomp to suspend).
pub const O_SUSPEND_SECCOMP: u32 = 0x20_0000;
/// Every option ptrace(PTRACE_SETOPTIONS) takes.
pub const O_ALL: u32 = 0xff | O_EXITKILL | O_SUSPEND_SECCOMP;

/// CLONE_UNTRACED: the child is never auto-attached.
const CLONE_UNTRACED: u64 = 0x0080_0000;
/// CLONE_PTRACE: the child is traced too, whatever the options.
const CLONE_PTRACE: u64 = 0x2000;

/// How a tracer let its tracee run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// PTRACE_CONT: until a signal or an event.
    #[default]
    Cont,
    /// PTRACE_SYSCALL: also at each syscall's entry and exit.
    Syscall,
    /// PTRACE_SINGLESTEP: one instruction (the trap flag), then SIGTRAP.
    Step,
}

/// A ptrace-stop: where a tracee stopped, what its tracer's wait4 reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Before a syscall runs (`orig_rax` holds its number).
    SyscallEntry,
    /// After a syscall ran (rax holds its result).
    SyscallExit,
    /// signal-delivery-stop: this signal was about to be delivered; the
    /// tracer's resume says which (if any) is.
    Signal(SigInfo),
    /// group-stop by this stop signal.
    Group(i32),
    /// PTRACE_EVENT_*, with the signal the status carries (SIGTRAP; for
    /// PTRACE_EVENT_STOP in a group-stop, the stop signal).
    Event(u32, i32),
}

impl Stop {
    /// The wait status the tracer sees.
    pub fn status(&self, options: u32, seized: bool) -> i32 {
        let stopped = |sig: i32| (sig << 8) | 0x7f;
        match *self {
            Stop::SyscallEntry | Stop::SyscallExit => {
                let good = if options & O_TRACESYSGOOD != 0 {
                    0x80
                } else {
                    0
                };
                stopped(signal::SIGTRAP | good)
            }
            Stop::Signal(info) => stopped(info.signo),
            Stop::Group(sig) if seized => stopped(sig) | ((EVENT_STOP as i32) << 16),
            Stop::Group(sig) => stopped(sig),
            Stop::Event(ev, sig) => stopped(sig) | ((ev as i32) << 16),
        }
    }

    /// The signal si_status and WSTOPSIG carry.
    fn signo(&self) -> i32 {
        (self.status(0, false) >> 8) & 0x7f
    }
}

/// A waiting call a tracee stopped in, as its tracer is shown it.
#[derive(Clone, Copy, Debug)]
pub struct Restart {
    /// rax of the rewound call (its number, for the retry).
    pub rax: u64,
    /// The errno rax shows: ERESTARTSYS, ERESTARTNOHAND (calls that
    /// never restart after a handler: pause, sigsuspend, poll, select,
    /// epoll_wait) or ERESTART_RESTARTBLOCK (nanosleep), as Linux.
    pub code: i64,
}

impl Restart {
    /// For a waiting call `nr` (rewound: rax holds `rax`).
    pub fn of(nr: u64, rax: u64) -> Restart {
        let code = match nr as i64 {
            libc::SYS_pause
            | libc::SYS_rt_sigsuspend
            | libc::SYS_poll
            | libc::SYS_ppoll
            | libc::SYS_select
            | libc::SYS_pselect6
            | libc::SYS_epoll_wait
            | libc::SYS_epoll_pwait
            | libc::SYS_epoll_pwait2 => 514,
            libc::SYS_nanosleep | libc::SYS_clock_nanosleep => 516,
            _ => 512,
        };
        Restart { rax, code }
    }
}

/// The tracee side of a trace, in its body ([`Vproc::ptrace`]).
#[derive(Clone, Debug, Default)]
pub struct Tracing {
    /// PTRACE_O_* in force.
    pub options: u32,
    /// Attached with PTRACE_SEIZE (or auto-attached under one).
    pub seized: bool,
    /// The tracer's process (the sender of a signal it injects instead).
    pub tracer_tgid: Pid,
    /// How the tracer resumed it last.
    pub mode: Mode,
    /// The signal the tracer gave at its last resume (0: none).
    pub inject: i32,
    /// The stop it is in (set when it stops, taken when it resumes).
    pub at: Option<Stop>,
    /// The last stop it reported (PTRACE_GET_SYSCALL_INFO's subject).
    pub last: Option<Stop>,
    /// The syscall number at entry (orig_rax; the tracer may change it,
    /// -1 skips the call).
    pub orig_rax: u64,
    /// The syscall's arguments at its entry stop.
    pub args: [u64; 6],
    /// The signal of its last signal-delivery-stop (PTRACE_GETSIGINFO).
    pub siginfo: Option<SigInfo>,
    /// PTRACE_GETEVENTMSG.
    pub eventmsg: u64,
    /// After the event stop it is in, a syscall-exit stop is due.
    pub exit_stop_due: bool,
    /// PTRACE_EVENT_EXIT was reported: the exit goes on.
    pub exit_reported: bool,
    /// execve succeeded in the call being served.
    pub execed: bool,
    /// The vproc stopped in a waiting call (kept rewound for its retry):
    /// what the tracer sees instead, as on Linux (rip after the `syscall`,
    /// rax the restart errno), and what goes back at the resume.
    pub restart: Option<Restart>,
    /// ... and its retry, a new call for the tracer, stops at its entry.
    pub reentry: bool,
    /// PTRACE_INTERRUPT (or an auto-attached seized child's first stop).
    pub interrupt: bool,
    /// The tracer let go (PTRACE_DETACH, or it exited): once the stop it
    /// is in is resumed, the trace ends.
    pub detached: bool,
}

impl Tracing {
    /// The tracer let go while the vproc is in (or stopping at) the stop
    /// `at`: it runs on untraced, delivering the signal it stopped for.
    fn let_go(&mut self) {
        self.detached = true;
        self.mode = Mode::Cont;
        self.inject = match self.at {
            Some(Stop::Signal(i)) => i.signo,
            _ => 0,
        };
    }
}

/// The tracer side of a trace, in the tracee's entry.
#[derive(Clone, Debug, Default)]
pub(super) struct Link {
    /// The tracer thread.
    pub(super) tracer: Pid,
    /// Its process: any of its threads may wait for the tracee.
    pub(super) tracer_tgid: Pid,
    pub(super) seized: bool,
    pub(super) options: u32,
    /// The wait status of a stop not yet reported.
    pub(super) report: Option<i32>,
    /// PTRACE_LISTEN: stopped, but SIGCONT makes it report again.
    pub(super) listening: bool,
    /// SIGCONT came while it was trapped (a later LISTEN re-traps).
    pub(super) notify: bool,
    /// PTRACE_INTERRUPT to carry out when it next runs.
    pub(super) interrupt: bool,
}

/// A traced thread's exit, kept for its tracer's wait4 after the thread
/// left the table (a process's leader stays as a zombie instead).
#[derive(Clone, Copy, Debug)]
pub(super) struct TraceExit {
    pub(super) tracer_tgid: Pid,
    pub(super) tid: Pid,
    pub(super) status: i32,
}

/// The trace a new child starts under, if any: auto-attached when its
/// parent is traced with the option for this kind of clone (or
/// CLONE_PTRACE), never with CLONE_UNTRACED.
pub(super) fn child_link(t: &Table, parent: &Vproc, flags: u64) -> Option<Link> {
    let p = parent.ptrace.as_ref().filter(|p| !p.detached)?;
    let link = t.procs.get(&parent.pid)?.trace.as_ref()?;
    if flags & CLONE_UNTRACED != 0 {
        return None;
    }
    let want = if flags & super::thread::CLONE_VFORK != 0 {
        O_TRACEVFORK
    } else if flags & 0xff == signal::SIGCHLD as u64 {
        O_TRACEFORK
    } else {
        O_TRACECLONE
    };
    if p.options & want == 0 && flags & CLONE_PTRACE == 0 {
        return None;
    }
    Some(Link {
        tracer: link.tracer,
        tracer_tgid: link.tracer_tgid,
        seized: p.seized,
        options: p.options,
        // A seized child's first stop is PTRACE_EVENT_STOP; another
        // gets SIGSTOP (queued by the caller).
        interrupt: p.seized,
        ..Default::default()
    })
}

/// The event a clone with `flags` reports to a tracer that asked for it.
pub fn clone_event(flags: u64, options: u32) -> Option<u32> {
    let (ev, want) = if flags & super::thread::CLONE_VFORK != 0 {
        (EVENT_VFORK, O_TRACEVFORK)
    } else if flags & 0xff == signal::SIGCHLD as u64 {
        (EVENT_FORK, O_TRACEFORK)
    } else {
        (EVENT_CLONE, O_TRACECLONE)
    };
    (options & want != 0).then_some(ev)
}

/// Why a tracer's request on a tracee failed: an errno, or "try again"
/// (a thread of the tracee holds its process lock for a moment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The request fails with this errno.
    Errno(i64),
    /// The tracee's memory is busy: retry.
    Busy,
}

/// How often a request retries, 50 µs apart (about a second), when the
/// other process's memory is busy (a thread of it is in the kernel).
const BUSY_TRIES: u32 = 20_000;

/// Run `f` until it does not find the memory busy: its value or errno,
/// EAGAIN after [`BUSY_TRIES`]. (A tracer's requests, process_vm_*,
/// `/proc/PID/mem`; the gdb stub waits by the clock instead.)
pub(crate) fn retry_busy<T>(mut f: impl FnMut() -> Result<T, Access>) -> Result<T, i64> {
    for _ in 0..BUSY_TRIES {
        match f() {
            Ok(v) => return Ok(v),
            Err(Access::Errno(e)) => return Err(e),
            Err(Access::Busy) => std::thread::sleep(Duration::from_micros(50)),
        }
    }
    Err(EAGAIN)
}

impl Kernel {
    /// Make `tracer` (a thread of `tracer_tgid`) trace `pid`: ATTACH
    /// (`seize` false: the tracee gets SIGSTOP) or SEIZE with `options`.
    pub fn ptrace_attach(
        &self,
        tracer: Pid,
        tracer_tgid: Pid,
        pid: Pid,
        seize: bool,
        options: u32,
    ) -> Result<(), i64> {
        let mut t = self.lock();
        let e = t.procs.get_mut(&pid).ok_or(ESRCH)?;
        if matches!(e.state, PState::Zombie(_) | PState::Embryo) {
            return Err(ESRCH);
        }
        if e.tgid == tracer_tgid || e.trace.is_some() {
            return Err(EPERM);
        }
        e.trace = Some(Link {
            tracer,
            tracer_tgid,
            seized: seize,
            options,
            ..Default::default()
        });
        if e.state == PState::Stopped {
            // Already in a group-stop: it is trapped at once, and its
            // tracer sees the stop.
            let sig = e.stop_report.take().unwrap_or(signal::SIGSTOP);
            e.state = PState::Traced;
            let stop = Stop::Group(sig);
            if let Some(b) = e.body.as_deref_mut() {
                b.ptrace = Some(Box::new(Tracing {
                    options,
                    seized: seize,
                    tracer_tgid,
                    at: Some(stop),
                    last: Some(stop),
                    ..Default::default()
                }));
            }
            if let Some(l) = e.trace.as_mut() {
                l.report = Some(stop.status(options, seize));
            }
            self.notify_tracer(&mut t, pid, stop.signo());
        } else {
            // It takes up the trace when it next runs or looks.
            e.sig_flag.store(true, Ordering::SeqCst);
            if let Some(b) = e.body.as_deref_mut() {
                sync_body(b, e.trace.as_mut());
            }
            if let PState::Running(c) = e.state {
                self.kick(&t, c);
            }
        }
        if !seize {
            let info = SigInfo {
                signo: signal::SIGSTOP,
                pid: tracer_tgid,
                ..Default::default()
            };
            self.post_signal(&mut t, pid, info);
        }
        Ok(())
    }

    /// PTRACE_TRACEME: `pid` (the caller, in the kernel) is traced by its
    /// parent. EPERM if it is traced already.
    pub fn ptrace_traceme(&self, body: &mut Vproc) -> Result<(), i64> {
        let mut t = self.lock();
        let e = t.procs.get_mut(&body.pid).ok_or(ESRCH)?;
        if e.trace.is_some() || body.ptrace.is_some() {
            return Err(EPERM);
        }
        let ppid = e.ppid;
        if ppid == PPID {
            // The parent is outside the virtual kernel: nobody to trace.
            return Err(EPERM);
        }
        e.trace = Some(Link {
            tracer: ppid,
            tracer_tgid: ppid,
            ..Default::default()
        });
        sync_body(body, e.trace.as_mut());
        Ok(())
    }

    /// Run `f` on tracee `pid` of `tracer`, stopped (`stopped`) or not,
    /// under the table lock: its body and link. ESRCH when `pid` is not
    /// traced by `tracer` or not in a ptrace-stop (when asked).
    pub(crate) fn with_tracee<R>(
        &self,
        tracer: Pid,
        pid: Pid,
        stopped: bool,
        f: impl FnOnce(&Kernel, &mut Table, Pid) -> Result<R, Access>,
    ) -> Result<R, Access> {
        let mut t = self.lock();
        let e = t.procs.get(&pid).ok_or(Access::Errno(ESRCH))?;
        let mine = e.trace.as_ref().is_some_and(|l| l.tracer == tracer);
        if !mine {
            return Err(Access::Errno(ESRCH));
        }
        if stopped && !(e.state == PState::Traced && e.body.is_some()) {
            return Err(Access::Errno(ESRCH));
        }
        f(self, &mut t, pid)
    }

    /// The parked body of tracee `pid` (it is stopped: checked by
    /// [`Kernel::with_tracee`]).
    pub(crate) fn tracee_body(t: &mut Table, pid: Pid) -> Result<&mut Vproc, Access> {
        t.procs
            .get_mut(&pid)
            .and_then(|e| e.body.as_deref_mut())
            .ok_or(Access::Errno(ESRCH))
    }

    /// Set PTRACE_O_* on stopped tracee `pid`.
    pub(crate) fn tracee_set_options(t: &mut Table, pid: Pid, options: u32) {
        if let Some(e) = t.procs.get_mut(&pid) {
            if let Some(l) = e.trace.as_mut() {
                l.options = options;
            }
            if let Some(p) = e.body.as_deref_mut().and_then(|b| b.ptrace.as_deref_mut()) {
                p.options = options;
            }
        }
    }

    /// Resume stopped tracee `pid` in `mode`, delivering `sig` (0: none)
    /// if it stopped for a signal; `detach` ends the trace.
    pub(crate) fn tracee_resume(
        &self,
        t: &mut Table,
        pid: Pid,
        mode: Mode,
        sig: i32,
        detach: bool,
    ) -> Result<(), Access> {
        let e = t.procs.get_mut(&pid).ok_or(Access::Errno(ESRCH))?;
        let b = e.body.as_deref_mut().ok_or(Access::Errno(ESRCH))?;
        if let Some(p) = b.ptrace.as_deref_mut() {
            p.mode = mode;
            p.inject = sig;
            p.detached |= detach;
        }
        if detach {
            e.trace = None;
        } else if let Some(l) = e.trace.as_mut() {
            l.report = None;
            l.listening = false;
        }
        e.state = PState::Runnable;
        self.enqueue_locked(t, pid);
        Ok(())
    }

    /// PTRACE_LISTEN on `pid` (seized, in a group-stop or event stop): it
    /// stays stopped until SIGCONT (or a pending notice) makes it report
    /// PTRACE_EVENT_STOP again.
    pub(crate) fn tracee_listen(&self, t: &mut Table, pid: Pid) -> Result<(), Access> {
        let e = t.procs.get_mut(&pid).ok_or(Access::Errno(ESRCH))?;
        let at = e.body.as_deref().and_then(|b| b.ptrace.as_ref()?.at);
        let l = e.trace.as_mut().ok_or(Access::Errno(ESRCH))?;
        if !l.seized || !matches!(at, Some(Stop::Group(_) | Stop::Event(EVENT_STOP, _))) {
            return Err(Access::Errno(EIO));
        }
        l.report = None;
        if std::mem::take(&mut l.notify) {
            self.retrap_notify(t, pid);
        } else {
            l.listening = true;
        }
        Ok(())
    }

    /// PTRACE_INTERRUPT: a running (or sleeping) seized tracee stops with
    /// PTRACE_EVENT_STOP soon; one in a ptrace-stop stays there.
    pub(crate) fn tracee_interrupt(&self, t: &mut Table, pid: Pid) -> Result<(), Access> {
        let e = t.procs.get_mut(&pid).ok_or(Access::Errno(ESRCH))?;
        let l = e.trace.as_mut().ok_or(Access::Errno(ESRCH))?;
        if !l.seized {
            return Err(Access::Errno(EIO));
        }
        if e.state == PState::Traced {
            if l.listening {
                l.listening = false;
                self.retrap_notify(t, pid);
            }
            return Ok(());
        }
        l.interrupt = true;
        e.sig_flag.store(true, Ordering::SeqCst);
        match e.state {
            PState::Sleeping(_) => self.wake_locked(t, pid),
            PState::Running(c) => self.kick(t, c),
            _ => {}
        }
        Ok(())
    }

    /// A listening (or notified) tracee reports PTRACE_EVENT_STOP with
    /// SIGTRAP: the group-stop it was in changed.
    fn retrap_notify(&self, t: &mut Table, pid: Pid) {
        let Some(e) = t.procs.get_mut(&pid) else {
            return;
        };
        let stop = Stop::Event(EVENT_STOP, signal::SIGTRAP);
        if let Some(p) = e.body.as_deref_mut().and_then(|b| b.ptrace.as_deref_mut()) {
            p.at = Some(stop);
            p.last = Some(stop);
        }
        if let Some(l) = e.trace.as_mut() {
            l.listening = false;
            l.report = Some(stop.status(l.options, l.seized));
        }
        self.notify_tracer(t, pid, signal::SIGTRAP);
    }

    /// SIGCONT (or SIGKILL) reached traced `pid` in a ptrace-stop: a
    /// listening tracee reports again, another remembers it for LISTEN;
    /// SIGKILL lets it run (to die).
    pub(super) fn traced_signal(&self, t: &mut Table, pid: Pid, signo: i32) {
        let Some(e) = t.procs.get_mut(&pid) else {
            return;
        };
        if e.state != PState::Traced {
            return;
        }
        if signo == signal::SIGKILL {
            e.state = PState::Runnable;
            if let Some(l) = e.trace.as_mut() {
                l.report = None;
            }
            self.enqueue_locked(t, pid);
            return;
        }
        if signo != signal::SIGCONT {
            return;
        }
        let Some(l) = e.trace.as_mut() else {
            return;
        };
        let ppid = e.ppid;
        if l.listening {
            self.retrap_notify(t, pid);
            self.child_changed(t, ppid, pid, 6, signal::SIGCONT);
        } else if l.seized {
            l.notify = true;
        }
    }

    /// A tracee stopped (or its stop changed): SIGCHLD (CLD_TRAPPED) to
    /// its tracer's process, and a wake-up for its wait4.
    pub(super) fn notify_tracer(&self, t: &mut Table, pid: Pid, sig: i32) {
        let Some(tracer) = tracer_of(t, pid) else {
            return;
        };
        if tracer == super::debug::STUB {
            self.debug.notify();
            return;
        }
        self.post_process_signal(
            t,
            tracer,
            SigInfo {
                signo: signal::SIGCHLD,
                code: 4, // CLD_TRAPPED
                pid,
                err: sig as u64,
                ..Default::default()
            },
        );
        self.wake_group_locked(t, tracer);
    }

    /// put_back of a tracee that stopped at `stop`: it waits in
    /// [`PState::Traced`] for its tracer, which is told; a tracee whose
    /// tracer let go meanwhile runs on.
    pub(super) fn trace_stopped(&self, t: &mut Table, pid: Pid, stop: Stop) {
        let Some(e) = t.procs.get_mut(&pid) else {
            return;
        };
        let Some(l) = e.trace.as_mut() else {
            if let Some(p) = e.body.as_deref_mut().and_then(|b| b.ptrace.as_deref_mut()) {
                p.let_go();
            }
            e.state = PState::Runnable;
            return;
        };
        if e.signals.iter().any(|s| s.signo == signal::SIGKILL) {
            // Killed while stopping: it runs on to die, and its tracer
            // sees its death, not a stop it never makes.
            e.state = PState::Runnable;
            return;
        }
        l.report = Some(stop.status(l.options, l.seized));
        e.state = PState::Traced;
        let now = self.now();
        if let Err(err) = t.sched.sleep(tid(pid), now) {
            log::warn!("ptrace stop {pid}: {err}");
        }
        self.notify_tracer(t, pid, stop.signo());
    }

    /// Every trace of the process `tgid` ends (it exited): its tracees
    /// run on untraced (or die, under PTRACE_O_EXITKILL), its tracees'
    /// exits nobody collected are handed to their parents.
    pub(super) fn tracer_gone(&self, t: &mut Table, tgid: Pid) {
        t.trace_exits.retain(|x| x.tracer_tgid != tgid);
        let mine: Vec<(Pid, u32)> = t
            .procs
            .iter()
            .filter_map(|(p, e)| {
                let l = e.trace.as_ref()?;
                (l.tracer_tgid == tgid).then_some((*p, l.options))
            })
            .collect();
        for (pid, options) in mine {
            self.untrace(t, pid);
            if options & O_EXITKILL != 0 {
                self.post_signal(
                    t,
                    pid,
                    SigInfo {
                        signo: signal::SIGKILL,
                        ..Default::default()
                    },
                );
            }
        }
    }

    /// End the trace of `pid`: a stopped tracee runs on (delivering the
    /// signal it stopped for), a zombie goes back to its parent's wait4.
    pub(super) fn untrace(&self, t: &mut Table, pid: Pid) {
        let Some(e) = t.procs.get_mut(&pid) else {
            return;
        };
        e.trace = None;
        match e.state {
            PState::Traced => {
                if let Some(p) = e.body.as_deref_mut().and_then(|b| b.ptrace.as_deref_mut()) {
                    p.let_go();
                }
                e.state = PState::Runnable;
                self.enqueue_locked(t, pid);
            }
            PState::Zombie(_) => {
                let ppid = e.ppid;
                if t.procs.contains_key(&ppid) {
                    self.wake_group_locked(t, ppid);
                } else {
                    t.procs.remove(&pid);
                }
            }
            _ => e.sig_flag.store(true, Ordering::SeqCst),
        }
    }

    /// A traced thread (not a process's leader) ended with `status`:
    /// kept for its tracer's wait4.
    pub(super) fn traced_thread_exit(&self, t: &mut Table, pid: Pid, status: ExitStatus) {
        let Some(tracer) = tracer_of(t, pid) else {
            return;
        };
        t.trace_exits.push(TraceExit {
            tracer_tgid: tracer,
            tid: pid,
            status: wstatus(status),
        });
        if tracer == super::debug::STUB {
            self.debug.notify();
            return;
        }
        self.wake_group_locked(t, tracer);
    }

    /// A traced process ended: its tracer (not its parent) hears of it
    /// too.
    pub(super) fn traced_process_exit(&self, t: &mut Table, pid: Pid, ppid: Pid) {
        let Some(tracer) = tracer_of(t, pid) else {
            return;
        };
        if tracer == super::debug::STUB {
            self.debug_process_exit(t, pid, ppid);
            return;
        }
        if tracer != ppid {
            self.post_process_signal(
                t,
                tracer,
                SigInfo {
                    signo: signal::SIGCHLD,
                    code: 1,
                    pid,
                    ..Default::default()
                },
            );
            self.wake_group_locked(t, tracer);
        }
    }

    /// wait4 by process `me` for its tracees: the first stop or exit of
    /// one matching `want` (a tid, -1, or a process group as wait4's
    /// argument; `clones`: threads too, __WALL), consumed unless `peek`.
    /// Returns the tid, the status, and whether a zombie was reaped.
    pub(super) fn traced_waitable(
        &self,
        t: &mut Table,
        me: Pid,
        want: i32,
        clones: bool,
        peek: bool,
    ) -> (bool, Option<(Pid, i32)>) {
        let mypgid = t.procs.get(&me).map_or(me, |e| e.pgid);
        let matches = |pid: Pid, e: &Entry| match want {
            -1 => true,
            0 => e.pgid == mypgid,
            p if p > 0 => pid == p,
            p => e.pgid == -p,
        };
        if let Some(i) = t
            .trace_exits
            .iter()
            .position(|x| x.tracer_tgid == me && clones && (want == -1 || want == x.tid))
        {
            let x = t.trace_exits[i];
            if !peek {
                t.trace_exits.remove(i);
            }
            return (true, Some((x.tid, x.status)));
        }
        let mut any = false;
        let mut found = None;
        for (p, e) in t.procs.iter_mut() {
            let mine = e.trace.as_ref().is_some_and(|l| l.tracer_tgid == me);
            if !mine || !matches(*p, e) || (e.tgid != *p && !clones) {
                continue;
            }
            let Some(l) = e.trace.as_mut() else {
                continue;
            };
            any = true;
            if let Some(ws) = l.report {
                if !peek {
                    l.report = None;
                }
                found = Some((*p, ws, false));
                break;
            }
            if let PState::Zombie(s) = e.state {
                if e.threads == 0 {
                    found = Some((*p, wstatus(s), true));
                    break;
                }
            }
        }
        if let Some((p, _, true)) = found {
            if !peek {
                let parent = t.procs.get(&p).is_some_and(|e| e.ppid == me);
                if parent {
                    t.procs.remove(&p);
                } else {
                    self.untrace(t, p);
                }
            }
        }
        (any, found.map(|(p, ws, _)| (p, ws)))
    }
}

/// The process tracing `pid`, if any.
fn tracer_of(t: &Table, pid: Pid) -> Option<Pid> {
    Some(t.procs.get(&pid)?.trace.as_ref()?.tracer_tgid)
}

/// Give a body the trace its entry says it is under (attached or let go
/// while it was away), and any PTRACE_INTERRUPT for it.
pub(super) fn sync_body(b: &mut Vproc, link: Option<&mut Link>) {
    match link {
        Some(l) => {
            let p = b.ptrace.get_or_insert_with(|| {
                Box::new(Tracing {
                    options: l.options,
                    seized: l.seized,
                    tracer_tgid: l.tracer_tgid,
                    ..Default::default()
                })
            });
            p.options = l.options;
            p.tracer_tgid = l.tracer_tgid;
            p.interrupt |= std::mem::take(&mut l.interrupt);
        }
        None => {
            if let Some(p) = b.ptrace.as_deref_mut() {
                p.detached = true;
                if p.at.is_none() {
                    b.ptrace = None;
                }
            }
        }
    }
}

impl Kernel {
    /// The memory of process `pid` (any thread id of it) for another
    /// process to read or write: its handle and thread group. ESRCH when
    /// it is gone (or a zombie).
    pub(crate) fn mm_of(&self, pid: Pid) -> Result<(crate::thread::ProcessLock, Pid), i64> {
        let t = self.lock();
        let tgid = t.procs.get(&pid).ok_or(ESRCH)?.tgid;
        t.procs
            .get(&tgid)
            .and_then(|e| e.lock.clone())
            .map(|l| (l, tgid))
            .ok_or(ESRCH)
    }
}

#[cfg(test)]
mod tests {
    use super::Restart;

    #[test]
    fn restart_codes_are_linuxs() {
        // wait4 and read restart after a SA_RESTART handler; pause and
        // poll never do; nanosleep goes through restart_syscall.
        let code = |nr: i64| Restart::of(nr as u64, nr as u64).code;
        assert_eq!(code(libc::SYS_wait4), 512);
        assert_eq!(code(libc::SYS_read), 512);
        assert_eq!(code(libc::SYS_pause), 514);
        assert_eq!(code(libc::SYS_epoll_wait), 514);
        assert_eq!(code(libc::SYS_nanosleep), 516);
        assert_eq!(Restart::of(202, 202).rax, 202);
    }
}
