//! Process calls: exit, clone/fork/vfork, execve, wait4, the ids, process
//! groups and sessions, scheduling and priorities, resource limits,
//! set_tid_address, arch_prctl and futex. The process table behind them is
//! [`crate::kernel`]; execve is [`crate::exec`]; futex waits,
//! in [`super::events`].

use super::errno::*;
use super::{int, R};
use crate::{ExitStatus, Vproc};

impl Vproc {
    /// The process calls, or None if `nr` is not one.
    pub(super) fn proc_call(&mut self, nr: i64, a: [u64; 6]) -> Option<R> {
        if let Some(r) = self.id_call(nr, a) {
            return Some(r);
        }
        Some(match nr {
            libc::SYS_exit | libc::SYS_exit_group => {
                self.exit = Some(ExitStatus::Exited(a[0] as i32 & 0xff));
                // exit ends this thread only (the process with its last
                // thread); exit_group ends every thread.
                self.thread.exit_thread = nr == libc::SYS_exit;
                Ok(0)
            }
            libc::SYS_clone => self.sys_clone(a[0], a[1], a[2], a[3], a[4]),
            // vfork is fork: the child gets a copy-on-write address space.
            libc::SYS_fork | libc::SYS_vfork => {
                self.sys_clone(crate::signal::SIGCHLD as u64, 0, 0, 0, 0)
            }
            libc::SYS_clone3 => Err(ENOSYS),
            libc::SYS_execve => self.execve_threads(a),
            libc::SYS_wait4 => {
                if self.k.is_some() {
                    self.sys_wait4(int(a[0]) as i32, a[1], a[2], a[3])
                } else {
                    Err(ECHILD)
                }
            }
            libc::SYS_sched_yield => {
                self.yield_cpu = self.k.is_some();
                Ok(0)
            }
            libc::SYS_getpriority => self.sys_priority(false, a[0], int(a[1]) as i32, 0),
            libc::SYS_setpriority => {
                self.sys_priority(true, a[0], int(a[1]) as i32, int(a[2]) as i32)
            }
            libc::SYS_sched_setparam
            | libc::SYS_sched_getparam
            | libc::SYS_sched_setscheduler
            | libc::SYS_sched_getscheduler => self.sys_sched(
                nr as u64,
                int(a[0]) as i32,
                int(a[1]) as i32,
                if nr == libc::SYS_sched_setscheduler {
                    a[2]
                } else {
                    a[1]
                },
            ),
            libc::SYS_sched_rr_get_interval => {
                self.sys_sched_rr_get_interval(int(a[0]) as i32, a[1])
            }
            // SCHED_FIFO and SCHED_RR have priorities 1..=99, the others 0.
            libc::SYS_sched_get_priority_max => Ok(if matches!(a[0], 1 | 2) { 99 } else { 0 }),
            libc::SYS_sched_get_priority_min => Ok(if matches!(a[0], 1 | 2) { 1 } else { 0 }),
            libc::SYS_sched_getaffinity => {
                // Linux checks the length, then looks the pid up.
                if a[1] < 8 {
                    return Some(Err(EINVAL));
                }
                if let Err(e) = self.check_pid(int(a[0]) as i32) {
                    return Some(Err(e));
                }
                // One CPU.
                self.mm.write_u64(a[2], 1).map(|_| 8).map_err(Into::into)
            }
            libc::SYS_getrlimit => self.sys_prlimit(0, a[0] as u32, 0, a[1]),
            libc::SYS_prlimit64 => self.sys_prlimit(int(a[0]) as i32, a[1] as u32, a[2], a[3]),
            libc::SYS_setrlimit => self.sys_prlimit(0, a[0] as u32, a[1], 0),
            libc::SYS_getrusage => self.sys_getrusage(int(a[0]), a[1]),
            libc::SYS_set_tid_address => {
                self.clear_child_tid = a[0];
                Ok(self.pid as i64)
            }
            libc::SYS_set_robust_list => self.sys_set_robust_list(a[0], a[1]),
            libc::SYS_get_robust_list => self.sys_get_robust_list(int(a[0]) as i32, a[1], a[2]),
            libc::SYS_arch_prctl => self.sys_arch_prctl(a[0], a[1]),
            libc::SYS_futex => self.sys_futex(a),
            _ => return None,
        })
    }

    /// The id calls: every vproc runs as root; pids, groups and sessions
    /// come from the process table.
    fn id_call(&mut self, nr: i64, a: [u64; 6]) -> Option<R> {
        Some(match nr {
            libc::SYS_getpid => Ok(self.thread.tgid as i64),
            libc::SYS_gettid => Ok(self.pid as i64),
            libc::SYS_getppid => Ok(self.sys_getppid()),
            libc::SYS_getuid | libc::SYS_getgid | libc::SYS_geteuid | libc::SYS_getegid => Ok(0),
            libc::SYS_setuid
            | libc::SYS_setgid
            | libc::SYS_setreuid
            | libc::SYS_setregid
            | libc::SYS_setresuid
            | libc::SYS_setresgid => Ok(0),
            libc::SYS_getresuid | libc::SYS_getresgid => {
                for p in [a[0], a[1], a[2]] {
                    if p != 0 {
                        if let Err(e) = self.mm.write(p, &[0u8; 4]) {
                            return Some(Err(e.into()));
                        }
                    }
                }
                Ok(0)
            }
            libc::SYS_getgroups => Ok(0),
            libc::SYS_setpgid => self.sys_setpgid(int(a[0]) as i32, int(a[1]) as i32),
            libc::SYS_getpgrp => self.sys_pgid(libc::SYS_getpgid as u64, 0),
            libc::SYS_getpgid | libc::SYS_getsid => self.sys_pgid(nr as u64, int(a[0]) as i32),
            libc::SYS_setsid => self.sys_setsid(),
            _ => return None,
        })
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
