//! ptrace, the tracee's side: where a traced vproc stops (syscall entry
//! and exit, signal delivery, events, PTRACE_INTERRUPT) and what its
//! tracer's resume does (run the syscall it stopped before, deliver the
//! signal the tracer chose, go on to the stop that is due next). The run
//! loop (`cpu_loop::segment`) calls these; the table side is `ptrace.rs`.

use super::ptrace::{self, Mode, Stop};
use super::*;

/// The trap flag (single step).
const TF: u64 = 0x100;

/// What resuming a tracee from its stop leads to.
pub(super) enum Resumed {
    /// Another stop, at once (a syscall-exit stop after an event stop, a
    /// group-stop by an injected stop signal).
    Stop(Stop),
    /// An untraced group-stop (the tracer let go, then injected a stop
    /// signal).
    GroupStop(i32),
    /// The step that resuming made (the syscall it stopped before, run
    /// now): the loop goes on with it as if the vproc had just trapped.
    Run(crate::Step),
}

impl Vproc {
    /// The trace, if the vproc is traced and its tracer has not let go.
    fn tracing(&mut self) -> Option<&mut ptrace::Tracing> {
        self.ptrace.as_deref_mut().filter(|p| !p.detached)
    }

    /// orig_rax as a tracer sees it (the call number at a syscall stop;
    /// -1 when not traced or not in a call).
    pub(crate) fn orig_rax(&self) -> u64 {
        self.ptrace.as_ref().map_or(u64::MAX, |p| p.orig_rax)
    }

    /// Is the vproc traced, by a tracer that has not let go?
    pub(crate) fn traced(&self) -> bool {
        self.ptrace.as_ref().is_some_and(|p| !p.detached)
    }

    /// At a syscall trap: note the call for the tracer; true when the
    /// vproc stops at its entry (PTRACE_SYSCALL, not a retry of a waiting
    /// call): rax then reads -ENOSYS and `orig_rax` the number, as on
    /// Linux.
    pub(crate) fn trace_syscall_entry(&mut self) -> bool {
        let pending = self.pending_call.is_some();
        let (rax, args) = (self.frame.rax, self.frame.syscall_args());
        let Some(p) = self.tracing() else {
            return false;
        };
        p.orig_rax = rax;
        p.args = args;
        let retry = pending && !std::mem::take(&mut p.reentry);
        if retry || p.mode != Mode::Syscall {
            return false;
        }
        self.frame.rax = (-ENOSYS) as u64;
        true
    }

    /// The vproc stops at `stop`: remembered for the resume and for the
    /// tracer's queries; a single step's trap flag comes off.
    pub(crate) fn trace_halt(&mut self, stop: Stop) -> Stop {
        self.back_at_pending_call();
        let waiting = self.pending_call.as_ref().map(|c| c.nr);
        if let Some(p) = self.ptrace.as_deref_mut() {
            // In a waiting call (kept rewound for its retry): shown as
            // Linux shows it, interrupted, until the resume.
            if let (Some(nr), None, false) = (waiting, p.restart, stop == Stop::SyscallEntry) {
                let r = ptrace::Restart::of(nr, self.frame.rax);
                p.restart = Some(r);
                self.frame.rip = self.frame.rip.wrapping_add(2);
                self.frame.rax = (-r.code) as u64;
            }
            if p.mode == Mode::Step {
                self.frame.rflags &= !TF;
            }
            p.at = Some(stop);
            p.last = Some(stop);
            if let Stop::Signal(i) = stop {
                p.siginfo = Some(i);
            }
        }
        stop
    }

    /// A signal came for a vproc waiting in a call it stopped at the entry
    /// of: as on Linux, the call first reports its exit with
    /// -ERESTARTSYS (the tracer then sees the signal, and the call's
    /// retry is a new call to it).
    pub(crate) fn trace_interrupted_call(&mut self) -> Option<Stop> {
        let p = self.tracing()?;
        if p.mode != Mode::Syscall || p.reentry {
            return None;
        }
        p.reentry = true;
        Some(self.trace_halt(Stop::SyscallExit))
    }

    /// PTRACE_INTERRUPT (or a seized child's first stop) is due.
    pub(super) fn trace_interrupt_due(&mut self) -> Option<Stop> {
        let p = self.tracing()?;
        std::mem::take(&mut p.interrupt).then_some(Stop::Event(ptrace::EVENT_STOP, signal::SIGTRAP))
    }

    /// The tracer resumed the vproc from the stop it was in: carry out
    /// what the stop and the tracer's choice mean.
    pub(super) fn trace_resume(&mut self, cpu: &Cpu) -> Option<Resumed> {
        let pid = self.pid;
        let doomed = match self.mm.kill_order() {
            Some(crate::thread::Kill::Group(_)) => true,
            Some(crate::thread::Kill::Dethread(s)) => s != pid,
            None => false,
        };
        let killed = doomed
            || self.exit.is_some()
            || self.sig.pending.iter().any(|s| s.signo == signal::SIGKILL);
        let p = self.ptrace.as_deref_mut()?;
        let at = p.at.take();
        let inject = std::mem::take(&mut p.inject);
        let (mode, detached, tracer) = (p.mode, p.detached, p.tracer_tgid);
        let exit_stop = std::mem::take(&mut p.exit_stop_due) && mode == Mode::Syscall;
        let orig = p.orig_rax;
        let siginfo = p.siginfo;
        if let Some(r) = p.restart.take() {
            // The call is retried unless the tracer said otherwise (rax
            // changed, or orig_rax -1: gdb calling a function), as Linux.
            if self.frame.rax == (-r.code) as u64 && orig != u64::MAX {
                self.frame.rip = self.frame.rip.wrapping_sub(2);
                self.frame.rax = r.rax;
            } else {
                self.pending_call = None;
            }
        }
        if detached {
            self.ptrace = None;
        } else if mode == Mode::Step {
            self.frame.rflags |= TF;
        }
        if killed {
            return None;
        }
        match at? {
            Stop::SyscallEntry => {
                if orig == u64::MAX {
                    // The tracer skipped the call: rax is what it left.
                    return Some(Resumed::Run(crate::Step::Syscall(Next::Ret(
                        self.frame.rax as i64,
                    ))));
                }
                self.frame.rax = orig;
                Some(Resumed::Run(crate::Step::Syscall(self.syscall(cpu))))
            }
            Stop::Signal(info) if inject != 0 => {
                let info = match siginfo {
                    Some(i) if i.signo == inject => i,
                    _ if inject == info.signo => info,
                    _ => SigInfo {
                        signo: inject,
                        pid: tracer,
                        ..Default::default()
                    },
                };
                let sig = self.deliver(cpu, info)?;
                Some(if self.ptrace.is_some() {
                    Resumed::Stop(self.trace_halt(Stop::Group(sig)))
                } else {
                    Resumed::GroupStop(sig)
                })
            }
            Stop::Event(..) if exit_stop && !detached => {
                Some(Resumed::Stop(self.trace_halt(Stop::SyscallExit)))
            }
            _ => None,
        }
    }

    /// After a syscall that completed (`next` neither waits nor exits):
    /// the exec event (or the SIGTRAP of a plain PTRACE_TRACEME/ATTACH
    /// tracee), then the syscall-exit stop under PTRACE_SYSCALL.
    pub(super) fn trace_after_syscall(&mut self, next: &Next) -> Option<Stop> {
        let pid = self.pid;
        let p = self.tracing()?;
        if next.rewinds() || matches!(next, Next::Exit { .. }) {
            return None;
        }
        let syscall = p.mode == Mode::Syscall;
        if std::mem::take(&mut p.execed) {
            if p.options & ptrace::O_TRACEEXEC != 0 {
                p.eventmsg = pid as u64;
                p.exit_stop_due = syscall;
                return Some(self.trace_halt(Stop::Event(ptrace::EVENT_EXEC, signal::SIGTRAP)));
            }
            if !p.seized {
                self.queue_signal(SigInfo {
                    signo: signal::SIGTRAP,
                    ..Default::default()
                });
            }
        }
        syscall.then(|| self.trace_halt(Stop::SyscallExit))
    }

    /// After fork/vfork/clone made child `r`: the event stop its tracer
    /// asked for (PTRACE_GETEVENTMSG gives the child's pid).
    pub(super) fn trace_clone(&mut self, flags: u64, r: i64) -> Option<Stop> {
        let p = self.tracing()?;
        if r <= 0 {
            return None;
        }
        let ev = ptrace::clone_event(flags, p.options)?;
        p.eventmsg = r as u64;
        p.exit_stop_due = p.mode == Mode::Syscall;
        Some(self.trace_halt(Stop::Event(ev, signal::SIGTRAP)))
    }

    /// The vproc is about to end: PTRACE_EVENT_EXIT first, once, if its
    /// tracer asked (not for SIGKILL, which ends it at once).
    pub(super) fn trace_exit_event(&mut self) -> Option<Stop> {
        let status = self.exit?;
        let p = self.tracing()?;
        if p.options & ptrace::O_TRACEEXIT == 0
            || p.exit_reported
            || status == ExitStatus::Signaled(signal::SIGKILL)
        {
            return None;
        }
        p.exit_reported = true;
        p.eventmsg = wstatus(status) as u64;
        Some(self.trace_halt(Stop::Event(ptrace::EVENT_EXIT, signal::SIGTRAP)))
    }
}
