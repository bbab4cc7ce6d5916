//! pidfds of the process table: each open pidfd is registered with the
//! process it names, and the process's end marks it and wakes whoever
//! polls it (see `syscalls/pidfd.rs` for the calls).

use super::*;
use crate::files::Shared;
use crate::fs::event::PidFd;

impl Kernel {
    /// Register `fd` as a pidfd of process `pid`: ESRCH when there is no
    /// such process (or it was reaped), EINVAL when `pid` is a thread but
    /// not its process's leader. A zombie's pidfd is ended at once.
    pub fn pidfd_watch(&self, pid: Pid, fd: &Shared<PidFd>) -> Result<(), i64> {
        let mut t = self.lock();
        let Some(e) = t.procs.get(&pid) else {
            return Err(ESRCH);
        };
        if e.tgid != pid {
            return Err(EINVAL);
        }
        if Self::process_alive(&t, pid) {
            t.pidfds.retain(|(_, w)| w.upgrade().is_some());
            t.pidfds.push((pid, fd.downgrade()));
        } else {
            // Nobody waits on a new file yet.
            let _ = fd.borrow_mut().end();
        }
        Ok(())
    }

    /// Process `pid` ended: end its pidfds and wake their waiters.
    pub(super) fn end_pidfds_locked(&self, t: &mut Table, pid: Pid) {
        let mut woken = Vec::new();
        t.pidfds.retain(|(p, w)| {
            let Some(fd) = w.upgrade() else {
                return false;
            };
            if *p != pid {
                return true;
            }
            woken.extend(fd.borrow_mut().end().into_iter().map(|(q, _)| q));
            false
        });
        for q in woken {
            self.wake_locked(t, q);
        }
    }
}
