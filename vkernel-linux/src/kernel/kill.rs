//! Signals sent to another process: the part of kill(2) and tgkill(2)
//! that needs only the process table, shared by the exit path
//! (`Vproc::kill_info`, `Vproc::tgkill_info`) and the exitless server
//! (which answers a vproc's kill of another process without an exit).
//! Sending to the caller's own process, to a process group or to every
//! process stays with the exit path: the caller's thread takes its share
//! itself there.

use super::*;

impl Kernel {
    /// kill(`pid`, `info`) from process `me`, when `pid` (> 0) names
    /// another process or one of its threads: Ok(0), ESRCH (no such
    /// process, or it ended), or EAGAIN (a real-time signal's queue is
    /// full; never for SI_USER, as Linux). None when the call is not of
    /// that kind: the caller's general path.
    pub(crate) fn kill_other(&self, me: Pid, pid: i32, info: SigInfo) -> Option<Result<i64, i64>> {
        if pid <= 0 || !(0..=64).contains(&info.signo) {
            return None;
        }
        let mut t = self.lock();
        // kill(tid) of a thread reaches its process, as on Linux.
        let target = t.procs.get(&pid).map_or(pid, |e| e.tgid);
        if target == me {
            return None;
        }
        let alive = t.procs.get(&target).is_some_and(|e| e.tgid == target)
            && Kernel::process_alive(&t, target);
        if !alive {
            return Some(Err(ESRCH));
        }
        if info.signo == 0 {
            return Some(Ok(0));
        }
        let queued = self.post_process_signal(&mut t, target, info);
        Some(if queued || info.code == signal::SI_USER {
            Ok(0)
        } else {
            Err(EAGAIN)
        })
    }

    /// tgkill(`tgid`, `tid`, `info`) (tgid -1: tkill) from process `me`,
    /// when `tid` is a thread of another process: Ok(0), ESRCH (no such
    /// thread in `tgid`, or it ended) or EAGAIN (its queue is full).
    /// None for the caller's own threads and bad arguments.
    pub(crate) fn tgkill_other(
        &self,
        me: Pid,
        tgid: i32,
        tid: i32,
        info: SigInfo,
    ) -> Option<Result<i64, i64>> {
        if tid <= 0 || (tgid != -1 && tgid <= 0) || !(0..=64).contains(&info.signo) {
            return None;
        }
        let mut t = self.lock();
        let Some(e) = t.procs.get(&tid) else {
            return Some(Err(ESRCH));
        };
        if e.tgid == me {
            return None;
        }
        if (tgid != -1 && e.tgid != tgid) || matches!(e.state, PState::Zombie(_)) {
            return Some(Err(ESRCH));
        }
        if info.signo == 0 {
            return Some(Ok(0));
        }
        Some(if self.post_signal(&mut t, tid, info) {
            Ok(0)
        } else {
            Err(EAGAIN)
        })
    }
}
