//! Orphans and their new parent. When a process ends, its children go to
//! the nearest living ancestor that made itself a *child subreaper*
//! (prctl PR_SET_CHILD_SUBREAPER: what init systems and container inits
//! such as catatonit, tini or `podman run --init` rely on); without one,
//! to the reaper outside the virtual kernel ([`PPID`], as to init), which
//! reaps them at once once they have ended. A child that had already
//! ended when it is handed to a subreaper is reported to it as its own
//! child's end would be (its exit signal, a wake-up of its waits), so the
//! subreaper's wait collects it.
//!
//! The mark is the process's: a fork child starts without it, execve
//! keeps it, and it goes when the process ends.

use super::*;

/// Most ancestors looked at for a subreaper (a guard against a cycle in
/// the parent links, which the table never makes).
const MAX_DEPTH: usize = 4096;

impl Kernel {
    /// Mark process `tgid` a child subreaper, or clear the mark.
    pub(crate) fn set_child_subreaper(&self, tgid: Pid, on: bool) {
        let mut t = self.lock();
        if on {
            t.subreapers.insert(tgid);
        } else {
            t.subreapers.remove(&tgid);
        }
    }

    /// Is process `tgid` a child subreaper?
    pub(crate) fn child_subreaper(&self, tgid: Pid) -> bool {
        self.lock().subreapers.contains(&tgid)
    }

    /// Process `pid` ended (its entry is a zombie now): give its children
    /// to their new parent (see the module docs), sending each one's
    /// PR_SET_PDEATHSIG.
    pub(super) fn reparent_orphans(&self, t: &mut Table, pid: Pid) {
        t.subreapers.remove(&pid);
        let reaper = new_reaper(t, pid);
        let orphans: Vec<Pid> = t
            .procs
            .iter()
            .filter(|(_, e)| e.ppid == pid)
            .map(|(p, _)| *p)
            .collect();
        for o in orphans {
            let e = t.procs.get_mut(&o).expect("listed");
            if e.pdeathsig != 0 && !matches!(e.state, PState::Zombie(_)) {
                // PR_SET_PDEATHSIG: as from the parent (SI_USER), to the
                // child's process.
                let (tgid, signo) = (e.tgid, e.pdeathsig);
                self.post_process_signal(
                    t,
                    tgid,
                    SigInfo {
                        signo,
                        pid,
                        ..Default::default()
                    },
                );
            }
            let e = t.procs.get_mut(&o).expect("listed");
            e.ppid = reaper;
            let ended = match e.state {
                PState::Zombie(st) if e.threads == 0 && e.trace.is_none() => Some(st),
                _ => None,
            };
            match ended {
                Some(_) if reaper == PPID => {
                    t.procs.remove(&o);
                }
                Some(st) => self.report_child_end(t, reaper, o, st),
                None => {}
            }
        }
    }

    /// Tell `parent` that its child `pid` (its own, or one it adopted as a
    /// subreaper) has ended with `status`: the child's exit signal, and
    /// the parent's waits wake.
    pub(super) fn report_child_end(
        &self,
        t: &mut Table,
        parent: Pid,
        pid: Pid,
        status: ExitStatus,
    ) {
        let (code, st) = match status {
            ExitStatus::Exited(c) => (1, c),
            ExitStatus::Signaled(s) => (2, s),
        };
        let exit_signal = t.procs.get(&pid).map_or(0, |e| e.exit_signal);
        if exit_signal > 0 && exit_signal <= 64 {
            self.post_process_signal(
                t,
                parent,
                SigInfo {
                    signo: exit_signal,
                    code,
                    pid,
                    err: st as u64,
                    ..Default::default()
                },
            );
        }
        self.wake_group_locked(t, parent);
    }
}

/// The new parent of the children of `pid`: its nearest living ancestor
/// marked a child subreaper, else [`PPID`].
fn new_reaper(t: &Table, pid: Pid) -> Pid {
    if t.subreapers.is_empty() {
        return PPID;
    }
    let mut at = t.procs.get(&pid).map_or(PPID, |e| e.ppid);
    for _ in 0..MAX_DEPTH {
        if at == PPID {
            break;
        }
        let Some(e) = t.procs.get(&at) else {
            break;
        };
        if t.subreapers.contains(&at) && !matches!(e.state, PState::Zombie(_)) {
            return at;
        }
        at = e.ppid;
    }
    PPID
}
