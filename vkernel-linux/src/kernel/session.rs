//! Sessions and process groups as terminals see them: a process's group
//! and session, whether a group is orphaned, and what a session leader's
//! exit does to its controlling terminal.

use super::*;

impl Kernel {
    /// sched_setaffinity: thread `pid` runs on the vCPUs of `mask` from
    /// now on (EINVAL when it names none, ESRCH for no such thread).
    pub(crate) fn set_affinity(&self, pid: Pid, mask: u64) -> Result<(), i64> {
        let mut t = self.lock();
        let now = self.now();
        if t.sched.task(tid(pid)).is_none() {
            return Err(ESRCH);
        }
        t.sched
            .set_affinity(tid(pid), mask, now)
            .map_err(|_| EINVAL)?;
        self.kick_rescheduled(&t);
        Ok(())
    }

    /// Kick every vCPU the scheduler wants to switch (a task moved to it
    /// or one that now preempts its current one), and wake idle ones.
    pub(super) fn kick_rescheduled(&self, t: &Table) {
        for c in 0..self.kickers.len() {
            if t.sched.need_resched(c) {
                self.kick(t, c);
            }
        }
        self.notify();
    }

    /// sched_getaffinity: the vCPUs thread `pid` may run on.
    pub(crate) fn affinity(&self, pid: Pid) -> Option<u64> {
        self.lock().sched.affinity(tid(pid))
    }

    /// The process group and session of process `tgid`, if it is in the
    /// table.
    pub(crate) fn job_ids(&self, tgid: Pid) -> Option<(Pid, Pid)> {
        self.lock().procs.get(&tgid).map(|e| (e.pgid, e.sid))
    }

    /// Does process group `pgid` have a member in session `sid`?
    pub(crate) fn group_in_session(&self, pgid: Pid, sid: Pid) -> bool {
        self.lock()
            .procs
            .values()
            .any(|e| e.pgid == pgid && e.sid == sid && e.threads > 0)
    }

    /// Is process group `pgid` orphaned: no live member has its parent in
    /// another group of the same session? (Terminal stop signals to such
    /// a group are discarded: nobody would continue it.)
    pub(crate) fn pgrp_orphaned(&self, pgid: Pid) -> bool {
        let t = self.lock();
        !t.procs.iter().any(|(p, e)| {
            e.tgid == *p
                && e.pgid == pgid
                && e.threads > 0
                && t.procs
                    .get(&e.ppid)
                    .is_some_and(|q| q.pgid != pgid && q.sid == e.sid)
        })
    }

    /// A session leader ended: its controlling terminal (a pseudo-terminal)
    /// is released and the foreground group gets SIGHUP and SIGCONT, as
    /// Linux's `disassociate_ctty`.
    pub(super) fn session_leader_exit(&self, t: &mut Table, body: &Vproc, sid: Pid) {
        let Some(p) = body.fs.devpts().of_session(sid) else {
            return;
        };
        let fg = {
            let mut p = p.borrow_mut();
            p.session = 0;
            std::mem::take(&mut p.fgpgrp)
        };
        if fg > 0 {
            self.post_kernel_signal(t, -fg, signal::SIGHUP);
            self.post_kernel_signal(t, -fg, signal::SIGCONT);
        }
    }
}
