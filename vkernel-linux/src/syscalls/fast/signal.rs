//! The signal calls the exitless server answers: rt_sigprocmask of a
//! thread alone in its process (unless it unblocks a queued signal, which
//! the exit path delivers), and rt_sigaction that installs a handler or a
//! default action that does not ignore the signal, or only reads the
//! disposition. Making a signal ignored discards its queued instances in
//! every thread: the exit path's work (`Vproc::sys_sigaction`). kill,
//! tkill and tgkill of another process (`Kernel::kill_other`,
//! `Kernel::tgkill_other`, the exit path's own code); a signal for the
//! caller's own process is taken by its thread on the exit path.

use super::answer;
use crate::kernel::fast::{read_user, write_user, FastCtx};
use crate::kernel::Kernel;
use crate::signal::{self, SigAction, SigInfo};
use crate::syscalls::int32;

/// kill(pid, sig) of another process.
pub(super) fn kill(k: &Kernel, c: &FastCtx, pid: u64, sig: u64) -> Option<u64> {
    let info = SigInfo {
        signo: int32(sig),
        code: 0,
        pid: c.tgid,
        ..Default::default()
    };
    k.kill_other(c.tgid, int32(pid), info).map(answer)
}

/// tgkill(tgid, tid, sig) (tgid -1: tkill) of another process's thread.
pub(super) fn tgkill(k: &Kernel, c: &FastCtx, tgid: i32, tid: u64, sig: u64) -> Option<u64> {
    let info = SigInfo {
        signo: int32(sig),
        code: signal::SI_TKILL,
        pid: c.tgid,
        ..Default::default()
    };
    k.tgkill_other(c.tgid, tgid, int32(tid), info).map(answer)
}

/// rt_sigprocmask(how, set, oldset). In a process with several threads
/// the mask also steers its process-directed signals: the kernel's hint
/// for this thread changes with it, and a change that would make one of
/// the process's pending signals this thread's goes to the exit path.
pub(super) fn sigprocmask(
    k: &Kernel,
    c: &mut FastCtx,
    how: u64,
    set: u64,
    old: u64,
) -> Option<u64> {
    let cur = c.blocked;
    let new = if set != 0 {
        let mut b = [0u8; 8];
        if !read_user(c, set, &mut b) {
            return None;
        }
        let s = u64::from_le_bytes(b);
        let never = signal::bit(signal::SIGKILL) | signal::bit(signal::SIGSTOP);
        (match how {
            0 => cur | s,
            1 => cur & !s,
            2 => s,
            _ => return None,
        }) & !never
    } else {
        cur
    };
    if c.pending & !new != 0 {
        return None;
    }
    if old != 0 && !write_user(c, old, &cur.to_le_bytes()) {
        return None;
    }
    if !c.alone && new != cur && !k.set_blocked_hint_quiet(c.pid, c.tgid, new) {
        return None;
    }
    c.blocked = new;
    Some(0)
}

/// rt_sigaction(sig, act, oldact) (struct sigaction as the kernel's:
/// handler, flags, restorer, mask).
pub(super) fn sigaction(c: &mut FastCtx, sig: u64, act: u64, old: u64) -> Option<u64> {
    let signo = i32::try_from(sig).ok().filter(|s| (1..=64).contains(s))?;
    let new = if act != 0 {
        if signo == signal::SIGKILL || signo == signal::SIGSTOP {
            return None;
        }
        let mut b = [0u8; 32];
        if !read_user(c, act, &mut b) {
            return None;
        }
        let new = SigAction::decode(&b);
        if new.ignores(signo) {
            return None;
        }
        Some(new)
    } else {
        None
    };
    let i = usize::try_from(signo).ok()?;
    let cur = c.process.try_with_actions(|actions| {
        let cur = actions[i];
        if let Some(n) = new {
            actions[i] = n;
        }
        cur
    })?;
    if old != 0 {
        // A bad `oldact` after the change: the exit path does the call
        // again (the same change) and reports EFAULT, as Linux does.
        if !write_user(c, old, &cur.encode()) {
            return None;
        }
    }
    Some(0)
}
