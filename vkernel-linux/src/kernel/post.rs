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
    let h = b.action(signo).handler;
    h != signal::SIG_IGN
        && (h != signal::SIG_DFL || signal::default_action(signo) != signal::Default_::Ignore)
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
        let Some(e) = t.procs.get_mut(&pid) else {
            return true;
        };
        let wake = deliverable(e.body.as_deref(), info.signo);
        if let Some(b) = e.body.as_deref() {
            let h = b.action(info.signo).handler;
            // A blocked signal is never discarded as ignored (Linux's
            // sig_ignored): the disposition may change before it is
            // unblocked, and sigtimedwait takes it anyway.
            let held = (b.sig.blocked | b.thread.sigwait) & signal::bit(info.signo) != 0;
            if info.signo != signal::SIGKILL
                && !held
                && (h == signal::SIG_IGN
                    || (h == signal::SIG_DFL
                        && signal::default_action(info.signo) == signal::Default_::Ignore))
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
