//! Signal calls: sigaction, sigprocmask, sigaltstack, kill, tkill,
//! tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo, sigpending, sigtimedwait,
//! pause and sigsuspend (whose handler waits, in [`super::events`]), and
//! prctl's parent-death signal. rt_sigreturn is served in
//! [`Vproc::syscall`]; delivery and the signal frame are
//! [`crate::signal`].
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::time::{Duration, Instant};

use super::errno::*;
use super::events::timespec;
use super::table::Handler;
use super::{int, R};
use crate::signal::{self, SigAction};
use crate::Vproc;

impl Vproc {
    /// The signal calls: `(number, handler)` for the
    /// syscall table ([`super::table`]).
    pub(super) const SIGNAL_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_rt_sigaction, |v, _nr, a| {
            v.sys_sigaction(int(a[0]) as i32, a[1], a[2])
        }),
        (libc::SYS_rt_sigprocmask, |v, _nr, a| {
            v.sys_sigprocmask(a[0], a[1], a[2])
        }),
        (libc::SYS_sigaltstack, |v, _nr, a| {
            v.sys_sigaltstack(a[0], a[1])
        }),
        (libc::SYS_rt_sigpending, |v, _nr, a| v.sys_sigpending(a[0])),
        (libc::SYS_rt_sigtimedwait, |v, _nr, a| {
            v.sys_sigtimedwait(a[0], a[1], a[2], a[3])
        }),
        (libc::SYS_pause, |v, _nr, _a| v.sys_pause(None)),
        (libc::SYS_rt_sigsuspend, |v, _nr, a| {
            match v.mm.read_u64(a[0]) {
                Ok(m) => v.sys_pause(Some(m)),
                Err(e) => Err(e.into()),
            }
        }),
        (libc::SYS_kill, |v, _nr, a| {
            v.sys_kill(int(a[0]) as i32, int(a[1]) as i32)
        }),
        (libc::SYS_tkill, |v, _nr, a| {
            v.sys_tgkill(-1, int(a[0]) as i32, int(a[1]) as i32)
        }),
        (libc::SYS_tgkill, |v, _nr, a| {
            v.sys_tgkill(int(a[0]) as i32, int(a[1]) as i32, int(a[2]) as i32)
        }),
        (libc::SYS_rt_sigqueueinfo, |v, _nr, a| {
            v.sys_sigqueueinfo(None, int(a[0]) as i32, int(a[1]) as i32, a[2])
        }),
        (libc::SYS_rt_tgsigqueueinfo, |v, _nr, a| {
            v.sys_sigqueueinfo(
                Some(int(a[1]) as i32),
                int(a[0]) as i32,
                int(a[2]) as i32,
                a[3],
            )
        }),
    ];

    /// rt_sigpending: the pending signals that are blocked.
    fn sys_sigpending(&mut self, set: u64) -> R {
        let shared = match &self.k {
            Some(k) if self.threaded() => k.shared_pending(self.thread.tgid),
            _ => 0,
        };
        let pend = shared | signal::mask_of(&self.sig.pending);
        self.mm.write_u64(set, pend & self.sig.blocked)?;
        Ok(0)
    }

    /// rt_sigtimedwait(set, info, timeout, sigsetsize): take a pending
    /// signal of `set` (this thread's, else the process's shared ones)
    /// without running its handler; wait for one (while waiting, the
    /// signals of `set` are routed to this thread as if unblocked).
    fn sys_sigtimedwait(&mut self, set: u64, info: u64, timeout: u64, size: u64) -> R {
        if size != 8 {
            return Err(EINVAL);
        }
        let never = signal::bit(signal::SIGKILL) | signal::bit(signal::SIGSTOP);
        let want = self.mm.read_u64(set)? & !never;
        let t = if timeout != 0 && self.call.deadline.is_none() {
            Some(timespec(&self.mm.read_vec(timeout, 16)?)?)
        } else {
            timeout.ne(&0).then_some(Duration::ZERO)
        };
        let deadline = self.call_deadline(t);
        self.thread.sigwait = 0;
        let mine = signal::next_index(&self.sig.pending, want);
        let got = match mine {
            Some(i) => Some(self.sig.pending.remove(i)),
            None => match self.k.clone() {
                Some(k) => k.take_shared_one(self.thread.tgid, want),
                None => None,
            },
        };
        if let Some(s) = got {
            if info != 0 {
                self.mm.write(info, &signal::siginfo_bytes(&s))?;
            }
            return Ok(s.signo as i64);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(EAGAIN);
        }
        self.thread.sigwait = want;
        self.block()
    }

    /// rt_sigqueueinfo(tgid, sig, info) (`tid` None) and
    /// rt_tgsigqueueinfo(tgid, tid, sig, info): send `sig` with the
    /// caller's siginfo (si_code, si_pid, si_uid, si_value kept). Another
    /// process may only be sent a code < 0 other than SI_TKILL (what
    /// sigqueue sends, SI_QUEUE): EPERM otherwise, as on Linux.
    fn sys_sigqueueinfo(&mut self, tid: Option<i32>, tgid: i32, sig: i32, uinfo: u64) -> R {
        let mut b = [0u8; 128];
        self.mm.read(uinfo, &mut b)?;
        let info = signal::siginfo_from_bytes(sig, &b);
        if (info.code >= 0 || info.code == signal::SI_TKILL) && tgid != self.thread.tgid {
            return Err(EPERM);
        }
        if !(0..=64).contains(&sig) {
            return Err(EINVAL);
        }
        match tid {
            Some(tid) => {
                if tgid <= 0 || tid <= 0 {
                    return Err(EINVAL);
                }
                self.tgkill_info(tgid, tid, info)
            }
            None if tgid <= 0 => Err(ESRCH),
            None => self.kill_info(tgid, info),
        }
    }

    fn sys_sigaction(&mut self, sig: i32, act: u64, old: u64) -> R {
        if !(1..=64).contains(&sig) {
            return Err(EINVAL);
        }
        let cur = self.sig.actions[sig as usize];
        if act != 0 {
            if sig == signal::SIGKILL || sig == signal::SIGSTOP {
                return Err(EINVAL);
            }
            let mut b = [0u8; 32];
            self.mm.read(act, &mut b)?;
            let new = SigAction::decode(&b);
            self.sig.actions[sig as usize] = new;
            if new.ignores(sig) {
                // Pending instances are discarded, blocked or not, as on
                // Linux (this thread's, the other threads' and the
                // process's shared ones).
                self.sig.pending.retain(|p| p.signo != sig);
                if let Some(k) = self.k.clone() {
                    k.discard_pending(self.thread.tgid, sig);
                }
            }
        }
        if old != 0 {
            self.mm.write(old, &cur.encode())?;
        }
        Ok(0)
    }

    fn sys_sigprocmask(&mut self, how: u64, set: u64, old: u64) -> R {
        let cur = self.sig.blocked;
        if set != 0 {
            let s = self.mm.read_u64(set)?;
            let never = signal::bit(signal::SIGKILL) | signal::bit(signal::SIGSTOP);
            self.sig.blocked = match how {
                0 => cur | s,
                1 => cur & !s,
                2 => s,
                _ => return Err(EINVAL),
            } & !never;
            if self.threaded() {
                // Process-directed signals go to a thread that takes them;
                // shared ones it unblocks are its own now.
                if let Some(k) = self.k.clone() {
                    for s in k.set_blocked_hint(self.pid, self.thread.tgid, self.sig.blocked) {
                        self.queue_signal(s);
                    }
                }
            }
        }
        if old != 0 {
            self.mm.write_u64(old, cur)?;
        }
        Ok(0)
    }

    fn sys_sigaltstack(&mut self, ss: u64, old: u64) -> R {
        let (sp, flags, size) = self.sig.altstack;
        if old != 0 {
            let on = self.frame.rsp > sp && self.frame.rsp <= sp.wrapping_add(size);
            let mut b = [0u8; 24];
            b[..8].copy_from_slice(&sp.to_le_bytes());
            let fl = if on { signal::SS_ONSTACK } else { flags };
            b[8..12].copy_from_slice(&fl.to_le_bytes());
            b[16..].copy_from_slice(&size.to_le_bytes());
            self.mm.write(old, &b)?;
        }
        if ss != 0 {
            let b = self.mm.read_vec(ss, 24)?;
            let nsp = u64::from_le_bytes(b[..8].try_into().expect("8"));
            let nfl = u32::from_le_bytes(b[8..12].try_into().expect("4"));
            let nsz = u64::from_le_bytes(b[16..].try_into().expect("8"));
            if nfl & signal::SS_DISABLE != 0 {
                self.sig.altstack = (0, signal::SS_DISABLE, 0);
            } else {
                if nsz < 2048 {
                    return Err(ENOMEM);
                }
                self.sig.altstack = (nsp, 0, nsz);
            }
        }
        Ok(0)
    }
}
