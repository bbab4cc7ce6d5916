//! Posting signals to vprocs in the process table: whether a signal would
//! do anything to a parked vproc, and queueing it with the wake-up or kick
//! that makes its target look.

use super::*;

/// Would `info` do anything to a vproc with this signal state (handler or
/// default action that kills)? `None` state: assume yes.
pub(super) fn deliverable(body: Option<&Vproc>, signo: i32) -> bool {
    if signo == signal::SIGKILL {
        return true;
    }
    let Some(b) = body else {
        return true;
    };
    if b.thread.sigwait & signal::bit(signo) != 0 {
        // rt_sigtimedwait takes it.
        return true;
    }
    if b.sig.blocked & signal::bit(signo) != 0 {
        return false;
    }
    if b.ptrace.is_some() {
        // Its tracer sees every signal, ignored ones too.
        return true;
    }
    !b.action(signo).ignores(signo)
}

impl Vproc {
    /// The disposition of `signo` for this vproc, parked or in the kernel:
    /// a parked thread's own copy may be stale, its process's published
    /// one is not (and equals the thread's own while it is in a call).
    pub(crate) fn action(&self, signo: i32) -> signal::SigAction {
        if self.threaded() {
            self.mm.shared_action(signo)
        } else {
            self.sig.actions[signo as usize]
        }
    }
}

impl Kernel {
    /// SIGCONT (or SIGKILL) for a stopped vproc: it runs again.
    pub(super) fn resume_locked(&self, t: &mut Table, pid: Pid) {
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
        self.enqueue_locked(t, pid);
        self.child_changed(t, ppid, pid, 6, signal::SIGCONT);
    }

    /// Tell `ppid` that its child `pid` stopped (code 5, CLD_STOPPED) or
    /// continued (6, CLD_CONTINUED): SIGCHLD, and a wake-up for wait4.
    pub(super) fn child_changed(&self, t: &mut Table, ppid: Pid, pid: Pid, code: i32, sig: i32) {
        if ppid == PPID || !t.procs.contains_key(&ppid) {
            return;
        }
        if t.procs.get(&pid).is_some_and(|e| e.tgid != pid) {
            // Another thread of the process: the leader reports.
            return;
        }
        let nocldstop = t
            .procs
            .get(&ppid)
            .and_then(|e| e.body.as_deref())
            .is_some_and(|b| b.action(signal::SIGCHLD).flags & signal::SA_NOCLDSTOP != 0);
        if !nocldstop {
            self.post_process_signal(
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
        self.wake_group_locked(t, ppid);
    }

    /// Queue `info` for `pid` (another vproc, or one not running now).
    /// False only when a real-time signal found its queue full.
    pub(super) fn post_signal(&self, t: &mut Table, pid: Pid, info: SigInfo) -> bool {
        let Some(e) = t.procs.get_mut(&pid) else {
            return true;
        };
        if matches!(e.state, PState::Zombie(_) | PState::Embryo) {
            return true;
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
        if matches!(info.signo, signal::SIGKILL | signal::SIGCONT) {
            self.traced_signal(t, pid, info.signo);
        }
        let Some(e) = t.procs.get_mut(&pid) else {
            return true;
        };
        let wake = deliverable(e.body.as_deref(), info.signo);
        if let Some(b) = e.body.as_deref() {
            // A blocked signal is never discarded as ignored (Linux's
            // sig_ignored): the disposition may change before it is
            // unblocked, and sigtimedwait takes it anyway.
            let held = (b.sig.blocked | b.thread.sigwait) & signal::bit(info.signo) != 0;
            if info.signo != signal::SIGKILL
                && !held
                && b.ptrace.is_none()
                && b.action(info.signo).ignores(info.signo)
            {
                return true;
            }
        }
        if !signal::enqueue(&mut e.signals, info) {
            return false;
        }
        e.sig_flag.store(true, Ordering::SeqCst);
        match e.state {
            PState::Sleeping(_) if wake => self.wake_locked(t, pid),
            PState::Running(c) => self.kick(t, c),
            _ => {}
        }
        true
    }
}
