//! Process calls: exit, clone/fork/vfork, execve, wait4, the ids, process
//! groups and sessions, scheduling and priorities, resource limits,
//! set_tid_address, arch_prctl and futex. The process table behind them is
//! [`crate::kernel`]; execve is [`crate::exec`]; futex waits,
//! in [`super::events`].
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::errno::*;
use super::table::{Handler, Steer};
use super::{int, R};
use crate::kernel::Next;
use crate::{ExitStatus, Vproc};

impl Vproc {
    /// The process calls: `(number, handler)` for the
    /// syscall table ([`super::table`]).
    pub(super) const PROC_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_clone3, |_v, _nr, _a| Err(ENOSYS)),
        (libc::SYS_execve, |v, _nr, a| v.execve_threads(a)),
        (libc::SYS_wait4, |v, _nr, a| {
            v.sys_wait4(int(a[0]) as i32, a[1], a[2], a[3])
        }),
        (libc::SYS_waitid, |v, _nr, a| {
            v.sys_waitid(a[0], i64::from(int(a[1]) as i32), a[2], a[3], a[4])
        }),
        (libc::SYS_getpriority, |v, _nr, a| {
            v.sys_priority(false, a[0], int(a[1]) as i32, 0)
        }),
        (libc::SYS_setpriority, |v, _nr, a| {
            v.sys_priority(true, a[0], int(a[1]) as i32, int(a[2]) as i32)
        }),
        (libc::SYS_sched_setparam, Vproc::call_sched_setparam),
        (libc::SYS_sched_getparam, Vproc::call_sched_setparam),
        (libc::SYS_sched_setscheduler, Vproc::call_sched_setparam),
        (libc::SYS_sched_getscheduler, Vproc::call_sched_setparam),
        (libc::SYS_sched_rr_get_interval, |v, _nr, a| {
            v.sys_sched_rr_get_interval(int(a[0]) as i32, a[1])
        }),
        // SCHED_FIFO and SCHED_RR have priorities 1..=99, the others 0.
        (libc::SYS_sched_get_priority_max, |_v, _nr, a| {
            match int(a[0]) {
                1 | 2 => Ok(99),
                0 | 3 | 5 | 6 => Ok(0),
                _ => Err(EINVAL),
            }
        }),
        (libc::SYS_sched_get_priority_min, |_v, _nr, a| {
            match int(a[0]) {
                1 | 2 => Ok(1),
                0 | 3 | 5 | 6 => Ok(0),
                _ => Err(EINVAL),
            }
        }),
        (libc::SYS_getcpu, |v, _nr, a| {
            // The vCPU running the caller; one NUMA node.
            let cpu = v.k.as_ref().and_then(|k| k.cpu_of(v.pid)).unwrap_or(0);
            if a[0] != 0 {
                v.mm.write(a[0], &u32::try_from(cpu).unwrap_or(0).to_le_bytes())?;
            }
            if a[1] != 0 {
                v.mm.write(a[1], &0u32.to_le_bytes())?;
            }
            Ok(0)
        }),
        (libc::SYS_sched_getaffinity, |v, _nr, a| {
            // Linux checks the length, then looks the pid up.
            if a[1] < 8 {
                return Err(EINVAL);
            }
            let pid = int(a[0]) as i32;
            v.check_pid(pid)?;
            // The vCPUs it may run on (sched_setaffinity; all by default),
            // as a mask of 64-bit words; the kernel's mask size is
            // returned.
            let n = v.k.as_ref().map_or(1, |k| k.cpu_count()).max(1);
            let words = n.div_ceil(64);
            if a[1] < 8 * words as u64 {
                return Err(EINVAL);
            }
            let target = if pid == 0 { v.pid } else { pid };
            let allowed = v.k.as_ref().and_then(|k| k.affinity(target));
            let mut mask = vec![0u8; 8 * words];
            for c in 0..n {
                if allowed.is_none_or(|m| c >= 64 || m & (1 << c) != 0) {
                    mask[c / 8] |= 1 << (c % 8);
                }
            }
            v.mm.write(a[2], &mask)?;
            Ok(8 * words as i64)
        }),
        (libc::SYS_getrlimit, |v, _nr, a| {
            v.sys_prlimit(0, a[0] as u32, 0, a[1])
        }),
        (libc::SYS_prlimit64, |v, _nr, a| {
            v.sys_prlimit(int(a[0]) as i32, a[1] as u32, a[2], a[3])
        }),
        (libc::SYS_setrlimit, |v, _nr, a| {
            v.sys_prlimit(0, a[0] as u32, a[1], 0)
        }),
        (libc::SYS_getrusage, |v, _nr, a| {
            v.sys_getrusage(int(a[0]), a[1])
        }),
        (libc::SYS_set_tid_address, |v, _nr, a| {
            v.clear_child_tid = a[0];
            Ok(v.pid as i64)
        }),
        (libc::SYS_set_robust_list, |v, _nr, a| {
            v.sys_set_robust_list(a[0], a[1])
        }),
        (libc::SYS_get_robust_list, |v, _nr, a| {
            v.sys_get_robust_list(int(a[0]) as i32, a[1], a[2])
        }),
        (libc::SYS_arch_prctl, |v, _nr, a| {
            v.sys_arch_prctl(a[0], a[1])
        }),
        (libc::SYS_futex, |v, _nr, a| v.sys_futex(a)),
    ];

    /// The process calls that change what runs next: `(number, handler)`
    /// for the syscall table; each returns a [`Next`].
    pub(super) const CONTROL_CALLS: &'static [(i64, Steer)] = &[
        (libc::SYS_exit, Vproc::call_exit),
        (libc::SYS_exit_group, Vproc::call_exit),
        (libc::SYS_clone, |v, _nr, a| {
            v.sys_clone(a[0], a[1], a[2], a[3], a[4])
        }),
        // vfork is fork: the child gets a copy-on-write address space.
        (libc::SYS_fork, Vproc::call_fork),
        (libc::SYS_vfork, Vproc::call_fork),
        (libc::SYS_sched_yield, |_v, _nr, _a| Next::Yield),
    ];

    /// `exit` ends this thread only (the process with its last thread);
    /// `exit_group` ends every thread.
    fn call_exit(_v: &mut Vproc, nr: i64, a: [u64; 6]) -> Next {
        Next::Exit {
            status: ExitStatus::Exited(a[0] as i32 & 0xff),
            group: nr != libc::SYS_exit,
        }
    }

    /// `fork`, `vfork`.
    // vfork is fork: the child gets a copy-on-write address space.
    /// `fork`, `vfork` (CLONE_VM | CLONE_VFORK: see `kernel::vfork`).
    fn call_fork(v: &mut Vproc, nr: i64, _a: [u64; 6]) -> Next {
        let vfork = if nr == libc::SYS_vfork {
            0x100 | 0x4000
        } else {
            0
        };
        v.sys_clone(vfork | crate::signal::SIGCHLD as u64, 0, 0, 0, 0)
    }

    /// `sched_setparam`, `sched_getparam`, `sched_setscheduler`, `sched_getscheduler`.
    fn call_sched_setparam(v: &mut Vproc, nr: i64, a: [u64; 6]) -> R {
        v.sys_sched(
            nr as u64,
            int(a[0]) as i32,
            int(a[1]) as i32,
            if nr == libc::SYS_sched_setscheduler {
                a[2]
            } else {
                a[1]
            },
        )
    }

    /// The id calls: every vproc runs as root; pids, groups and sessions: `(number, handler)` for the
    /// syscall table ([`super::table`]).
    pub(super) const ID_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_getpid, |v, _nr, _a| Ok(v.thread.tgid as i64)),
        (libc::SYS_gettid, |v, _nr, _a| Ok(v.pid as i64)),
        (libc::SYS_getppid, |v, _nr, _a| Ok(v.sys_getppid())),
        (libc::SYS_getuid, Vproc::call_getuid),
        (libc::SYS_getgid, Vproc::call_getuid),
        (libc::SYS_geteuid, Vproc::call_getuid),
        (libc::SYS_getegid, Vproc::call_getuid),
        (libc::SYS_setuid, Vproc::call_setuid),
        (libc::SYS_setgid, Vproc::call_setuid),
        (libc::SYS_setreuid, Vproc::call_setuid),
        (libc::SYS_setregid, Vproc::call_setuid),
        (libc::SYS_setresuid, Vproc::call_setuid),
        (libc::SYS_setresgid, Vproc::call_setuid),
        // setfsuid/setfsgid return the previous fs id, the process's own
        // id, which stays (the ids do not change, as with setuid).
        (libc::SYS_setfsuid, Vproc::call_getuid),
        (libc::SYS_setfsgid, Vproc::call_getuid),
        (libc::SYS_getresuid, Vproc::call_getresuid),
        (libc::SYS_getresgid, Vproc::call_getresuid),
        (libc::SYS_getgroups, |v, _nr, a| {
            let n = v.fds.groups.len();
            let size = usize::try_from(int(a[0])).map_err(|_| EINVAL)?;
            if size == 0 {
                return Ok(n as i64);
            }
            if size < n {
                return Err(EINVAL);
            }
            let b: Vec<u8> = v.fds.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
            v.mm.write(a[1], &b)?;
            Ok(n as i64)
        }),
        (libc::SYS_setpgid, |v, _nr, a| {
            v.sys_setpgid(int(a[0]) as i32, int(a[1]) as i32)
        }),
        (libc::SYS_getpgrp, |v, _nr, _a| {
            v.sys_pgid(libc::SYS_getpgid as u64, 0)
        }),
        (libc::SYS_getpgid, Vproc::call_getpgid),
        (libc::SYS_getsid, Vproc::call_getpgid),
        (libc::SYS_setsid, |v, _nr, _a| v.sys_setsid()),
    ];

    /// `getuid`, `getgid`, `geteuid`, `getegid`.
    fn call_getuid(v: &mut Vproc, nr: i64, _a: [u64; 6]) -> R {
        Ok(i64::from(v.id_for(nr)))
    }

    /// The user and group ids every vproc has
    /// ([`crate::kernel::Options::uid`], `gid`; 0, 0 outside a kernel).
    pub(super) fn ids(&self) -> (u32, u32) {
        self.k
            .as_ref()
            .map_or((0, 0), |k| (k.options().uid, k.options().gid))
    }

    /// The user id (for the uid calls) or the group id (the gid calls)
    /// every vproc has ([`Vproc::ids`]).
    fn id_for(&self, nr: i64) -> u32 {
        let (uid, gid) = self.ids();
        id_of_call(nr, uid, gid)
    }

    /// `setuid`, `setgid`, `setreuid`, `setregid`, `setresuid`, `setresgid`:
    /// the ids do not change; root's calls succeed, another user's only
    /// when they ask for the id it has (-1: unchanged).
    fn call_setuid(v: &mut Vproc, nr: i64, a: [u64; 6]) -> R {
        let root = v.id_for(libc::SYS_getuid) == 0;
        let id = v.id_for(nr);
        let n = match nr {
            libc::SYS_setuid | libc::SYS_setgid => 1,
            libc::SYS_setreuid | libc::SYS_setregid => 2,
            _ => 3,
        };
        let asked = a[..n].iter().map(|&x| x as u32).filter(|&x| x != u32::MAX);
        if root || asked.into_iter().all(|x| x == id) {
            Ok(0)
        } else {
            Err(EPERM)
        }
    }

    /// `getresuid`, `getresgid`.
    fn call_getresuid(v: &mut Vproc, nr: i64, a: [u64; 6]) -> R {
        let id = v.id_for(nr).to_le_bytes();
        for p in [a[0], a[1], a[2]] {
            if p != 0 {
                if let Err(e) = v.mm.write(p, &id) {
                    return Err(e.into());
                }
            }
        }
        Ok(0)
    }

    /// `getpgid`, `getsid`.
    fn call_getpgid(v: &mut Vproc, nr: i64, a: [u64; 6]) -> R {
        v.sys_pgid(nr as u64, int(a[0]) as i32)
    }

    /// execve: in a multithreaded process the other threads end first.
    fn execve_threads(&mut self, a: [u64; 6]) -> R {
        if self.threaded() {
            self.dethread()?;
        }
        let r = self.sys_execve(a[0], a[1], a[2]);
        self.mm.clear_dethread();
        if r.is_ok() {
            self.thread.robust_list = 0;
        }
        r
    }

    /// A pid argument of a call about a task (0: the caller): ESRCH for a
    /// negative pid or one that names no live thread.
    fn check_pid(&self, pid: i32) -> Result<(), i64> {
        if pid == 0 || pid == self.pid {
            return Ok(());
        }
        if pid < 0 {
            return Err(ESRCH);
        }
        match &self.k {
            Some(k) if k.task_exists(pid) => Ok(()),
            _ => Err(ESRCH),
        }
    }

    /// getrlimit / setrlimit / prlimit64 (see [`crate::rlimit`]).
    /// Only the caller's own process is reachable: another live process
    /// gets EPERM (its limits live with its fd table, which its own
    /// threads hold), a pid that does not exist ESRCH.
    fn sys_prlimit(&mut self, pid: i32, res: u32, new: u64, old: u64) -> R {
        use crate::rlimit::Rlimit;
        self.check_pid(pid)?;
        let own = pid == 0 || pid == self.pid || pid == self.thread.tgid || {
            self.k
                .as_ref()
                .is_some_and(|k| k.tgid_of(pid) == Some(self.thread.tgid))
        };
        if !own {
            return Err(EPERM);
        }
        let cur = self.fds.limits.get(res).ok_or(EINVAL)?;
        let new = if new != 0 {
            let mut b = [0u8; 16];
            self.mm.read(new, &mut b)?;
            let l = Rlimit {
                cur: u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
                max: u64::from_le_bytes(b[8..].try_into().expect("8 bytes")),
            };
            Some(l)
        } else {
            None
        };
        if let Some(l) = new {
            self.fds.limits.set(res, l).map_err(|e| e.errno())?;
        }
        if old != 0 {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&cur.cur.to_le_bytes());
            b[8..].copy_from_slice(&cur.max.to_le_bytes());
            // EFAULT here leaves the new limit set, as on Linux.
            self.mm.write(old, &b)?;
        }
        Ok(0)
    }

    fn sys_arch_prctl(&mut self, code: u64, addr: u64) -> R {
        match code {
            0x1002 => {
                if !crate::canonical(addr) {
                    return Err(EPERM);
                }
                self.frame.fs_base = addr;
                Ok(0)
            }
            0x1001 => {
                if !crate::canonical(addr) {
                    return Err(EPERM);
                }
                if addr != 0 {
                    // Patched sites find the exitless line through GS.
                    self.mm.unpatch_syscalls();
                }
                self.frame.gs_base = addr;
                Ok(0)
            }
            0x1003 => {
                self.mm.write_u64(addr, self.frame.fs_base)?;
                Ok(0)
            }
            0x1004 => {
                self.mm.write_u64(addr, self.frame.gs_base)?;
                Ok(0)
            }
            _ => Err(EINVAL),
        }
    }
}

/// The id an id call answers with: the group id `gid` for the gid calls
/// (getgid, getegid, getresgid, setgid, setregid, setresgid, setfsgid),
/// else the user id `uid` ([`crate::kernel::Options::uid`]).
pub(crate) fn id_of_call(nr: i64, uid: u32, gid: u32) -> u32 {
    match nr {
        libc::SYS_getgid
        | libc::SYS_getegid
        | libc::SYS_getresgid
        | libc::SYS_setgid
        | libc::SYS_setregid
        | libc::SYS_setresgid
        | libc::SYS_setfsgid => gid,
        _ => uid,
    }
}
