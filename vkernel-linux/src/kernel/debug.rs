//! The kernel side of a debugger outside the vprocs (`vkernel run --gdb`,
//! [`crate::gdb_remote`]): it traces the first vproc and its threads with
//! the same machinery as ptrace ([`super::ptrace`]), as a tracer that is
//! no vproc, [`STUB`]. Its tracees stop where a ptrace tracee stops and
//! wait parked in the process table; instead of SIGCHLD and a wait4
//! wake-up, the stub is woken through [`DebugEvents`]. Every request is
//! made by the stub's host thread under the table lock, never by a vCPU
//! thread.

use super::ptrace::{Access, Mode, O_EXITKILL, O_TRACECLONE};
use super::*;

/// The tracer id of the debugger stub: no vproc has it.
pub const STUB: Pid = -2;

/// How the stub learns that a tracee stopped or ended.
#[derive(Debug, Default)]
pub(crate) struct DebugEvents {
    count: Mutex<u64>,
    cond: Condvar,
}

impl DebugEvents {
    /// Something happened to a tracee of the stub.
    pub(super) fn notify(&self) {
        let mut n = self.count.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        self.cond.notify_all();
    }

    /// The event count now.
    fn now(&self) -> u64 {
        *self.count.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait at most `d` for the count to pass `seen`.
    fn wait(&self, seen: u64, d: Duration) {
        let n = self.count.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .cond
            .wait_timeout_while(n, d, |n| *n == seen)
            .unwrap_or_else(|e| e.into_inner());
    }
}

/// What happened to a tracee of the stub, as a wait status says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugEvent {
    /// Thread `tid` stopped: the signal it stopped for, and the ptrace
    /// event (0: none) of an event stop.
    Stopped {
        /// The thread.
        tid: Pid,
        /// Its stop signal.
        signo: i32,
        /// PTRACE_EVENT_* of an event stop, else 0.
        event: u32,
    },
    /// Thread (or process) `tid` ended with this wait status.
    Ended {
        /// The thread.
        tid: Pid,
        /// Its wait status (WIFEXITED / WIFSIGNALED).
        status: i32,
    },
    /// The run is over (its first vproc ended) and no stop or end is left
    /// to report: every vproc is gone, the traced ones too.
    RunOver,
}

impl Kernel {
    /// Trace process `pid` (with the threads it makes) for the stub, and
    /// stop it before its next instruction: its first, for the first
    /// vproc of a run.
    pub(crate) fn debug_attach(&self, pid: Pid) -> Result<(), i64> {
        let members: Vec<Pid> = {
            let t = self.lock();
            if t.procs.get(&pid).is_none_or(|e| e.tgid != pid) {
                return Err(ESRCH);
            }
            t.procs
                .iter()
                .filter(|(_, e)| e.tgid == pid && !matches!(e.state, PState::Zombie(_)))
                .map(|(p, _)| *p)
                .collect()
        };
        // Every thread it has (a running process's too: the vkdb prompt's
        // `gdb`), and those it makes from now on.
        for &m in &members {
            self.ptrace_attach(STUB, STUB, m, true, O_TRACECLONE | O_EXITKILL)?;
        }
        let mut t = self.lock();
        for m in members {
            self.tracee_interrupt(&mut t, m).map_err(access_errno)?;
        }
        Ok(())
    }

    /// Process `pid` the stub traces ended: its end is kept for the stub
    /// among the traced threads' ends (which outlive the process table:
    /// the run's teardown clears the table as soon as the first vproc
    /// ends, maybe before the stub looked), and its zombie goes to its
    /// parent as without a debugger.
    pub(super) fn debug_process_exit(&self, t: &mut Table, pid: Pid, ppid: Pid) {
        let Some(e) = t.procs.get_mut(&pid) else {
            return;
        };
        let PState::Zombie(status) = e.state else {
            return;
        };
        e.trace = None;
        t.trace_exits.push(super::ptrace::TraceExit {
            tracer_tgid: STUB,
            tid: pid,
            status: wstatus(status),
        });
        if t.procs.contains_key(&ppid) {
            self.wake_group_locked(t, ppid);
        }
        self.debug.notify();
    }

    /// The next stop or end of a tracee of the stub, waiting at most `d`.
    pub(crate) fn debug_wait(&self, d: Duration) -> Option<DebugEvent> {
        let deadline = Instant::now() + d;
        loop {
            let seen = self.debug.now();
            let (_, found) = {
                let mut t = self.lock();
                self.traced_waitable(&mut t, STUB, -1, true, false)
            };
            if let Some((tid, ws)) = found {
                return Some(if ws & 0xff == 0x7f {
                    DebugEvent::Stopped {
                        tid,
                        signo: (ws >> 8) & 0x7f,
                        event: ((ws >> 16) & 0xff) as u32,
                    }
                } else {
                    DebugEvent::Ended { tid, status: ws }
                });
            }
            if self.debug_run_over() {
                return Some(DebugEvent::RunOver);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.debug.wait(seen, left);
        }
    }

    /// Is the run over (its first vproc ended)?
    pub(crate) fn debug_run_over(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    /// The threads of process `tgid` the stub traces (alive ones).
    pub(crate) fn debug_threads(&self, tgid: Pid) -> Vec<Pid> {
        let t = self.lock();
        t.procs
            .iter()
            .filter(|(_, e)| {
                e.tgid == tgid
                    && e.trace.as_ref().is_some_and(|l| l.tracer == STUB)
                    && !matches!(e.state, PState::Zombie(_))
            })
            .map(|(p, _)| *p)
            .collect()
    }

    /// Is thread `tid` in a ptrace-stop for the stub?
    pub(crate) fn debug_stopped(&self, tid: Pid) -> bool {
        let t = self.lock();
        t.procs.get(&tid).is_some_and(|e| {
            e.state == PState::Traced && e.trace.as_ref().is_some_and(|l| l.tracer == STUB)
        })
    }

    /// Run `f` on the parked body of stopped thread `tid`.
    pub(crate) fn debug_with<R>(
        &self,
        tid: Pid,
        f: impl FnOnce(&mut Vproc) -> R,
    ) -> Result<R, i64> {
        self.with_tracee(STUB, tid, true, |_, t, p| Kernel::tracee_body(t, p).map(f))
            .map_err(access_errno)
    }

    /// Resume stopped thread `tid`: one instruction (`step`) or until its
    /// next stop, delivering `signo` (0: none).
    pub(crate) fn debug_resume(&self, tid: Pid, step: bool, signo: i32) -> Result<(), i64> {
        let mode = if step { Mode::Step } else { Mode::Cont };
        self.with_tracee(STUB, tid, true, |k, t, p| {
            k.tracee_resume(t, p, mode, signo, false)
        })
        .map_err(access_errno)
    }

    /// Stop running thread `tid` soon (it reports PTRACE_EVENT_STOP).
    pub(crate) fn debug_interrupt(&self, tid: Pid) -> Result<(), i64> {
        self.with_tracee(STUB, tid, false, |k, t, p| k.tracee_interrupt(t, p))
            .map_err(access_errno)
    }

    /// The stub lets go of every tracee (gdb detached or went away): they
    /// run on, untraced.
    pub(crate) fn debug_detach_all(&self) {
        let mut t = self.lock();
        t.trace_exits.retain(|x| x.tracer_tgid != STUB);
        let mine: Vec<Pid> = t
            .procs
            .iter()
            .filter(|(_, e)| e.trace.as_ref().is_some_and(|l| l.tracer == STUB))
            .map(|(p, _)| *p)
            .collect();
        for pid in mine {
            // As PTRACE_DETACH with no signal: a thread stopped for one
            // (a breakpoint's SIGTRAP gdb has dealt with) does not get it.
            let stopped = t.procs.get(&pid).is_some_and(|e| e.state == PState::Traced);
            if !stopped
                || self
                    .tracee_resume(&mut t, pid, Mode::Cont, 0, true)
                    .is_err()
            {
                self.untrace(&mut t, pid);
            }
        }
    }

    /// gdb's `kill`: SIGKILL to process `tgid`.
    pub(crate) fn debug_kill(&self, tgid: Pid) {
        let mut t = self.lock();
        self.post_process_signal(
            &mut t,
            tgid,
            SigInfo {
                signo: signal::SIGKILL,
                ..Default::default()
            },
        );
    }
}

fn access_errno(a: Access) -> i64 {
    match a {
        Access::Errno(e) => e,
        Access::Busy => EAGAIN,
    }
}
