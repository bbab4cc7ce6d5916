//! vfork (clone with CLONE_VFORK): the parent waits until its child
//! execs or exits; with CLONE_VM as well (vfork(2), glibc's posix_spawn)
//! the child ran in the parent's memory, so what it wrote is the parent's
//! too (posix_spawn's child reports a failed exec that way).
//!
//! A vkernel child gets a copy-on-write copy of the address space, as for
//! fork, instead of the parent's own: when it execs or exits, the private
//! pages it modified are copied into the parent before the parent runs
//! again. The parent does not run meanwhile, so the parent's memory ends
//! exactly as if it had been shared. Mappings the child made or removed
//! are not carried over (Linux's would be; a vfork child only calls exec
//! or _exit). Signals for the parent wait with it, as on Linux, except
//! a fatal one (SIGKILL, or one it neither blocks nor handles whose
//! default is to terminate), which ends the wait (the child's writes are
//! then dropped).

use std::time::{Duration, Instant};

use super::*;
use crate::files::Shared;

/// How long a parent waits for its vfork child before going on as after
/// a fork (Linux waits for ever).
const VFORK_WAIT: Duration = Duration::from_secs(3600);

/// The rendezvous of a vfork parent and child.
#[derive(Default)]
pub struct VforkDone {
    /// The child execed or exited.
    done: bool,
    /// The child shares (emulates sharing) the parent's memory.
    memory: bool,
    /// The pages the child wrote: address and contents.
    pages: Vec<(u64, Vec<u8>)>,
    /// The parent, waiting.
    waiters: Vec<(Pid, Arc<dyn Wake>)>,
}

impl std::fmt::Debug for VforkDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VforkDone")
            .field("done", &self.done)
            .field("pages", &self.pages.len())
            .finish()
    }
}

/// A vproc's side of a vfork.
#[derive(Clone, Debug)]
pub enum VforkLink {
    /// The parent: it waits for the child.
    Parent(Shared<VforkDone>),
    /// The child: its exec or exit ends the parent's wait.
    Child(Shared<VforkDone>),
}

/// The rendezvous for a clone with `flags` (None without CLONE_VFORK).
pub(super) fn rendezvous(flags: u64) -> Option<Shared<VforkDone>> {
    use super::thread::{CLONE_VFORK, CLONE_VM};
    (flags & CLONE_VFORK != 0).then(|| {
        Shared::new(VforkDone {
            memory: flags & CLONE_VM != 0,
            ..Default::default()
        })
    })
}

impl VforkDone {
    /// Register `pid` (the parent) to be woken when the child is done.
    pub(super) fn wait(&mut self, pid: Pid, w: Arc<dyn Wake>) {
        if !self.waiters.iter().any(|(p, _)| *p == pid) {
            self.waiters.push((pid, w));
        }
    }
}

impl Kernel {
    /// The signals queued for `pid` in the table, not yet taken.
    pub(super) fn queued_signals(&self, pid: Pid) -> Vec<SigInfo> {
        self.lock()
            .procs
            .get(&pid)
            .map(|e| e.signals.clone())
            .unwrap_or_default()
    }
}

impl Vproc {
    /// The child's exec (at its point of no return) or exit: hand the
    /// pages it wrote to the parent and wake it.
    pub(crate) fn vfork_release(&mut self) {
        let Some(VforkLink::Child(v)) = self.vfork.take() else {
            return;
        };
        let memory = v.borrow().memory;
        let pages = if memory {
            self.mm.dirty_private_pages()
        } else {
            Vec::new()
        };
        let w = {
            let mut g = v.borrow_mut();
            g.done = true;
            g.pages = pages;
            std::mem::take(&mut g.waiters)
        };
        crate::files::wake_all(w);
    }

    /// The parent about to run: true while it must go on waiting for its
    /// vfork child (it is then registered to be woken); once the child is
    /// done, its pages are written into this address space first.
    pub(super) fn vfork_waiting(&mut self) -> bool {
        let Some(VforkLink::Parent(v)) = self.vfork.clone() else {
            return false;
        };
        let mut g = v.borrow_mut();
        if !g.done {
            let queued = self
                .k
                .as_ref()
                .map(|k| k.queued_signals(self.pid))
                .unwrap_or_default();
            let killed = self.exit.is_some()
                || self
                    .sig
                    .pending
                    .iter()
                    .chain(&queued)
                    .any(|s| self.fatal(s.signo));
            if killed {
                drop(g);
                self.vfork = None;
                return false;
            }
            if let Some(k) = &self.k {
                g.wait(self.pid, k.clone());
            }
            return true;
        }
        let pages = std::mem::take(&mut g.pages);
        drop(g);
        self.vfork = None;
        for (va, data) in pages {
            if let Err(e) = self.mm.write(va, &data) {
                log::debug!("vfork: the child's page at {va:#x} stays the child's: {e}");
            }
        }
        false
    }

    /// Would `signo` end this vproc (SIGKILL, or a signal it neither
    /// blocks nor handles whose default is to terminate)? Such a signal
    /// ends a vfork wait, as Linux's killable wait.
    fn fatal(&self, signo: i32) -> bool {
        if signo == signal::SIGKILL {
            return true;
        }
        if self.sig.blocked & signal::bit(signo) != 0 {
            return false;
        }
        self.action(signo).handler == signal::SIG_DFL
            && signal::default_action(signo) == signal::Default_::Terminate
    }

    /// How long the parent sleeps at a time while it waits.
    pub(super) fn vfork_deadline() -> Wait {
        Wait::Until(Instant::now() + VFORK_WAIT)
    }
}
