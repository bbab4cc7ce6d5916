//! The Linux x86-64 system calls a vproc can make.
//!
//! [`Vproc::syscall`] decodes `frame.rax` and the argument registers,
//! serves the call against the vproc's memory, files and signal state, and
//! puts the result (or `-errno`) into `frame.rax`. An unknown call returns
//! ENOSYS and is reported once on the host's stderr.
//!
//! The dispatch matches on libc's `SYS_*` numbers and hands each call to
//! the handlers of its area:
//!
//! | module | calls |
//! |---|---|
//! | `fs` | open, cwd, access, readlink, lseek, umask |
//! | `stat` | stat, lstat, fstat, newfstatat, statx, statfs, getdents |
//! | `fsmod` | mkdir, unlink/rmdir, rename, symlink, link, truncate, fallocate, utimensat, chmod/chown, xattrs (none), fadvise |
//! | `procfs` | what `/proc/self` shows (maps, status, fd/, links) |
//! | `locking` | fcntl's record and OFD locks, flock (the table is [`super::fs::lock`]) |
//! | `io` | read/write and their vector and positional forms, sendfile, copy_file_range, pipes, dup, fcntl, ioctl, close, close_range, poll/select, socket |
//! | `mm` | mmap, munmap, mprotect, mremap, madvise, brk (the memory itself is [`super::mm`]) |
//! | `proc` | exit, clone/fork, execve, wait4, ids, groups and sessions, scheduling, rlimits, arch_prctl, futex |
//! | `signal` | sigaction, sigprocmask, sigaltstack, kill/tkill/tgkill, sigpending, pause/sigsuspend |
//! | `time` | clocks, time, gettimeofday, times, sleeps, alarm and interval timers |
//! | `info` | uname, sysinfo, getrandom, prctl, rseq |
//! | [`events`] | the handlers of calls that wait, and the wait/restart machinery |
//! | [`compat32`] | `int $0x80` from a 64-bit vproc |
//!
//! Handlers return `Result<i64, i64>`: `Ok(value)` or `Err(errno)` with
//! errnos from [`errno`] (libc's `E*`), or the internal [`EBLOCK`] /
//! [`ERESTART`] codes.

use crate::core::prelude::*;

use super::files;
use super::mm::MmError;
use super::signal::SigInfo;
pub use super::stdio::ERESTART;
use super::Vproc;

pub mod compat32;
pub mod events;
mod fifo;
mod fs;
mod fsmod;
mod info;
mod io;
mod locking;
mod mm;
mod overcommit;
mod proc;
mod procfs;
mod signal;
mod stat;
mod time;

// What the exitless fast path (`kernel::fast`) shares with the handlers.
pub(crate) use fs::seek_file;
pub(crate) use info::uname_bytes;
pub(crate) use stat::{fstat_bytes, stat_bytes};

/// Internal errno: the call must wait (`self.block` says for what); it is
/// retried from the `syscall` instruction once the vproc is woken. Not a
/// Linux errno: it never reaches the vproc.
pub const EBLOCK: i64 = 513;

/// Linux errnos, as the `i64` a handler returns in `Err`; the values are
/// libc's `E*` constants.
pub mod errno {
    /// `pub const E: i64 = libc::E as i64;` for each name.
    macro_rules! errnos {
        ($($e:ident),* $(,)?) => {
            $(
                #[doc = concat!("`", stringify!($e), "` (libc::", stringify!($e), ").")]
                pub const $e: i64 = libc::$e as i64;
            )*
        };
    }
    errnos!(
        EPERM,
        ENOENT,
        ESRCH,
        EINTR,
        EIO,
        ENXIO,
        E2BIG,
        ENOEXEC,
        EBADF,
        ECHILD,
        EAGAIN,
        ENOMEM,
        EACCES,
        EFAULT,
        EEXIST,
        ENODEV,
        ENOTDIR,
        EISDIR,
        EINVAL,
        ENOTTY,
        ESPIPE,
        EROFS,
        EPIPE,
        ERANGE,
        ENAMETOOLONG,
        ENOSYS,
        ENOTEMPTY,
        EXDEV,
        ENODATA,
        ENOSPC,
        EFBIG,
        EBUSY,
        ELOOP,
        EOVERFLOW,
        EOPNOTSUPP,
        EAFNOSUPPORT,
        ETIMEDOUT,
        ENOTSOCK,
    );
}
use errno::*;

/// `dirfd` meaning the current directory.
const AT_FDCWD: i64 = libc::AT_FDCWD as i64;
/// fstatat: do not follow a final symlink.
const AT_SYMLINK_NOFOLLOW: u64 = libc::AT_SYMLINK_NOFOLLOW as u64;
/// fstatat: an empty path means `dirfd` itself.
const AT_EMPTY_PATH: u64 = libc::AT_EMPTY_PATH as u64;

/// A handler's result: the value for rax, or an errno.
type R = Result<i64, i64>;

/// An `int` argument (fd, pid, signal): the low 32 bits of the register,
/// sign-extended (the upper half is undefined).
fn int(x: u64) -> i64 {
    x as i32 as i64
}

impl From<MmError> for i64 {
    fn from(e: MmError) -> i64 {
        e.errno()
    }
}

impl From<files::FdError> for i64 {
    fn from(e: files::FdError) -> i64 {
        e.errno()
    }
}

/// `(libc::SYS_x, "SYS_x")` for each name.
macro_rules! syscall_table {
    ($($n:ident),* $(,)?) => {
        &[$((libc::$n, stringify!($n))),*]
    };
}

/// The calls the logs name: every call the dispatch knows, numbered by
/// libc's constants.
const NAMES: &[(i64, &str)] = syscall_table!(
    SYS_read,
    SYS_write,
    SYS_open,
    SYS_close,
    SYS_stat,
    SYS_fstat,
    SYS_lstat,
    SYS_poll,
    SYS_lseek,
    SYS_mmap,
    SYS_mprotect,
    SYS_munmap,
    SYS_brk,
    SYS_rt_sigaction,
    SYS_rt_sigprocmask,
    SYS_rt_sigreturn,
    SYS_ioctl,
    SYS_pread64,
    SYS_pwrite64,
    SYS_readv,
    SYS_writev,
    SYS_access,
    SYS_pipe,
    SYS_select,
    SYS_sched_yield,
    SYS_mremap,
    SYS_msync,
    SYS_mincore,
    SYS_madvise,
    SYS_dup,
    SYS_dup2,
    SYS_pause,
    SYS_nanosleep,
    SYS_getitimer,
    SYS_alarm,
    SYS_setitimer,
    SYS_getpid,
    SYS_sendfile,
    SYS_socket,
    SYS_connect,
    SYS_accept,
    SYS_accept4,
    SYS_sendto,
    SYS_recvfrom,
    SYS_sendmsg,
    SYS_recvmsg,
    SYS_sendmmsg,
    SYS_recvmmsg,
    SYS_shutdown,
    SYS_bind,
    SYS_listen,
    SYS_getsockname,
    SYS_getpeername,
    SYS_socketpair,
    SYS_setsockopt,
    SYS_getsockopt,
    SYS_clone,
    SYS_fork,
    SYS_vfork,
    SYS_execve,
    SYS_exit,
    SYS_wait4,
    SYS_kill,
    SYS_uname,
    SYS_fcntl,
    SYS_flock,
    SYS_fsync,
    SYS_fdatasync,
    SYS_truncate,
    SYS_ftruncate,
    SYS_getdents,
    SYS_getcwd,
    SYS_chdir,
    SYS_fchdir,
    SYS_rename,
    SYS_mkdir,
    SYS_rmdir,
    SYS_creat,
    SYS_link,
    SYS_unlink,
    SYS_symlink,
    SYS_readlink,
    SYS_chmod,
    SYS_fchmod,
    SYS_chown,
    SYS_fchown,
    SYS_lchown,
    SYS_umask,
    SYS_gettimeofday,
    SYS_getrlimit,
    SYS_getrusage,
    SYS_sysinfo,
    SYS_times,
    SYS_getuid,
    SYS_getgid,
    SYS_setuid,
    SYS_setgid,
    SYS_geteuid,
    SYS_getegid,
    SYS_setpgid,
    SYS_getppid,
    SYS_getpgrp,
    SYS_setsid,
    SYS_setreuid,
    SYS_setregid,
    SYS_getgroups,
    SYS_setresuid,
    SYS_getresuid,
    SYS_setresgid,
    SYS_getresgid,
    SYS_getpgid,
    SYS_getsid,
    SYS_rt_sigpending,
    SYS_rt_sigsuspend,
    SYS_sigaltstack,
    SYS_statfs,
    SYS_fstatfs,
    SYS_getpriority,
    SYS_setpriority,
    SYS_sched_setparam,
    SYS_sched_getparam,
    SYS_sched_setscheduler,
    SYS_sched_getscheduler,
    SYS_sched_get_priority_max,
    SYS_sched_get_priority_min,
    SYS_sched_rr_get_interval,
    SYS_prctl,
    SYS_arch_prctl,
    SYS_setrlimit,
    SYS_gettid,
    SYS_tkill,
    SYS_time,
    SYS_futex,
    SYS_sched_getaffinity,
    SYS_getdents64,
    SYS_set_tid_address,
    SYS_clock_gettime,
    SYS_clock_getres,
    SYS_clock_nanosleep,
    SYS_exit_group,
    SYS_tgkill,
    SYS_openat,
    SYS_mkdirat,
    SYS_newfstatat,
    SYS_unlinkat,
    SYS_renameat,
    SYS_linkat,
    SYS_symlinkat,
    SYS_readlinkat,
    SYS_fchmodat,
    SYS_faccessat,
    SYS_pselect6,
    SYS_ppoll,
    SYS_set_robust_list,
    SYS_get_robust_list,
    SYS_rt_sigtimedwait,
    SYS_rt_sigqueueinfo,
    SYS_rt_tgsigqueueinfo,
    SYS_utimensat,
    SYS_dup3,
    SYS_pipe2,
    SYS_prlimit64,
    SYS_renameat2,
    SYS_getrandom,
    SYS_statx,
    SYS_rseq,
    SYS_clone3,
    SYS_faccessat2,
    SYS_utimes,
    SYS_fchownat,
    SYS_mknod,
    SYS_mknodat,
    SYS_syncfs,
    SYS_sync,
    SYS_setxattr,
    SYS_lsetxattr,
    SYS_fsetxattr,
    SYS_getxattr,
    SYS_lgetxattr,
    SYS_fgetxattr,
    SYS_listxattr,
    SYS_llistxattr,
    SYS_flistxattr,
    SYS_removexattr,
    SYS_lremovexattr,
    SYS_fremovexattr,
    SYS_fadvise64,
    SYS_readahead,
    SYS_fallocate,
    SYS_close_range,
    SYS_copy_file_range,
);

/// Name of a syscall number (for logs), or "unknown".
pub fn name(nr: u64) -> &'static str {
    NAMES
        .iter()
        .find(|&&(n, _)| n as u64 == nr)
        .map_or("unknown", |&(_, s)| &s[4..])
}

impl Vproc {
    /// Serve the syscall in `self.frame`.
    pub fn syscall(&mut self, cpu: &Cpu) {
        let nr = self.frame.rax;
        let a = self.frame.syscall_args();
        if nr == libc::SYS_rt_sigreturn as u64 {
            // rt_sigreturn restores the whole frame, rax included.
            match super::signal::sigreturn(&mut self.mm, cpu, &self.fpu, &mut self.frame) {
                Ok(mask) => {
                    self.sig.blocked = mask
                        & !(super::signal::bit(super::signal::SIGKILL)
                            | super::signal::bit(super::signal::SIGSTOP));
                }
                Err(_) => self.force_signal(
                    cpu,
                    SigInfo {
                        signo: super::signal::SIGSEGV,
                        code: 0x80,
                        ..Default::default()
                    },
                ),
            }
            return;
        }
        self.maybe_patch(nr);
        let epoch = self.mm.patches().epoch();
        self.serve(nr, a, nr);
        if self.mm.patches().epoch() != epoch {
            // This call dropped stub pages (mmap, munmap, mprotect...): if
            // it came through one, it returns to the site itself.
            self.frame.rip = self.mm.patch_resume(self.frame.rip);
        }
    }

    /// Patch the site of this call, just served through the exit path, if
    /// the fast path serves it (see `mm::patch`).
    fn maybe_patch(&mut self, nr: u64) {
        let Some(k) = &self.k else { return };
        let Some(entry) = k.patch_entry else { return };
        if !crate::kernel::fast::SERVED.contains(&(nr as i64)) {
            return;
        }
        let threads = self.mm.threads();
        match self.mm.patch_syscall(self.frame.rip, nr, entry, threads) {
            Ok(()) => {
                k.patched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            // Not a site of the pattern: nothing to do.
            Err(crate::mm::NoPatch::Pattern) => {}
            // A site the server may think patchable was not patched: stop
            // it sending such calls here.
            Err(_) => self.mm.stop_patch_forcing(),
        }
    }

    /// The vproc's instruction at RIP faulted: deliver `info`, unless the
    /// fault is syscall patching's ([`Vproc::patch_trap`]).
    pub fn fault_signal(&mut self, cpu: &Cpu, info: SigInfo) {
        // #DB, #BP and #OF are traps (RIP is past the instruction): never
        // patching's, and running on would skip their signal.
        if matches!(info.trapno, 1 | 3 | 4) || !self.patch_trap() {
            self.force_signal(cpu, info);
        }
    }

    /// The vproc's instruction at RIP faulted: true when the fault is
    /// syscall patching's and the vproc is set to run on without a signal. In the patched entry's GS read (the
    /// vproc reloaded GS, so the base is no longer the one the vCPU gave
    /// it): the call goes through the stub's own `syscall` (RCX - 2, RAX
    /// is still the number). Near a patched site: the site was not an
    /// instruction boundary; it is put back and the instruction runs again
    /// (see `mm::patch`).
    pub(crate) fn patch_trap(&mut self) -> bool {
        let Some(entry) = self.k.as_ref().and_then(|k| k.patch_entry) else {
            return false;
        };
        let rip = self.frame.rip;
        let back = self.frame.rcx.wrapping_sub(2);
        if (entry..entry + vkernel_guest::abi::XS_PENTRY_LEN).contains(&rip)
            && crate::canonical(back)
        {
            self.frame.rip = back;
            return true;
        }
        self.mm.patch_fault(rip)
    }

    /// Serve the vproc's `int $0x80` (an i386 call, see [`compat32`]);
    /// rip is at the `int` instruction.
    pub fn syscall32(&mut self, _cpu: &Cpu) {
        let nr32 = self.frame.rax;
        self.frame.rip += 2;
        match compat32::translate(&self.frame) {
            Some((nr, a)) => self.serve(nr, a, nr32),
            None => {
                if self.trace {
                    vk_eprintln!("[vk] int80 {} = -ENOSYS", nr32 as u32);
                }
                self.frame.rax = (-ENOSYS) as u64;
            }
        }
    }

    /// Run call `nr` with arguments `a`; a restarted call re-executes the
    /// 2-byte instruction before rip with rax = `restart_nr`.
    fn serve(&mut self, nr: u64, a: [u64; 6], restart_nr: u64) {
        // A retry of a waiting call continues with its state.
        let (state, retry) = match self.pending_call.take() {
            Some(p) if p.nr == nr && p.args == a => (p.state, true),
            _ => (Default::default(), false),
        };
        self.call = state;
        let watchdog = std::mem::take(&mut self.watchdog_retry) && retry;
        let r = self.dispatch(nr, a);
        let v = match r {
            Ok(v) => v,
            Err(ERESTART) | Err(EBLOCK) => {
                if self.trace && !retry {
                    vk_eprintln!(
                        "[vk] {}({:#x}, {:#x}, {:#x}, {:#x}) waits",
                        name(nr),
                        a[0],
                        a[1],
                        a[2],
                        a[3]
                    );
                }
                // Retry the call when woken (or after the interruption).
                self.frame.rip -= 2;
                self.frame.rax = restart_nr;
                self.pending_call = Some(events::PendingCall {
                    nr,
                    args: a,
                    state: std::mem::take(&mut self.call),
                });
                return;
            }
            Err(e) => -e,
        };
        if watchdog {
            if let Some(k) = &self.k {
                k.lost_wakeup(self.pid, nr);
            }
        }
        if self.trace {
            vk_eprintln!(
                "[vk] {}({:#x}, {:#x}, {:#x}, {:#x}) = {}",
                name(nr),
                a[0],
                a[1],
                a[2],
                a[3],
                v
            );
        }
        self.frame.rax = v as u64;
    }

    /// Run call `nr`: each area's dispatch in turn, until one knows it.
    fn dispatch(&mut self, nr: u64, a: [u64; 6]) -> R {
        let Ok(n) = i64::try_from(nr) else {
            return self.unknown_call(nr);
        };
        if let Some(r) = self.fs_call(n, a) {
            return r;
        }
        if let Some(r) = self.io_call(n, a) {
            return r;
        }
        if let Some(r) = self.mm_call(n, a) {
            return r;
        }
        if let Some(r) = self.proc_call(n, a) {
            return r;
        }
        if let Some(r) = self.signal_call(n, a) {
            return r;
        }
        if let Some(r) = self.time_call(n, a) {
            return r;
        }
        if let Some(r) = self.info_call(n, a) {
            return r;
        }
        self.unknown_call(nr)
    }

    /// A call no area serves: ENOSYS, reported once per number.
    fn unknown_call(&mut self, nr: u64) -> R {
        if self.unknown.insert(nr) {
            vk_eprintln!(
                "vkernel: unimplemented syscall {nr} ({}) -> ENOSYS",
                name(nr)
            );
        }
        Err(ENOSYS)
    }
}

#[cfg(test)]
mod tests {
    use super::name;

    #[test]
    fn names_come_from_libc_numbers() {
        assert_eq!(name(0), "read");
        assert_eq!(name(78), "getdents");
        assert_eq!(name(217), "getdents64");
        assert_eq!(name(262), "newfstatat");
        assert_eq!(name(439), "faccessat2");
        assert_eq!(name(100_000), "unknown");
        assert_eq!(name(u64::MAX), "unknown");
    }

    #[test]
    fn every_number_has_one_name() {
        let mut nrs: Vec<i64> = super::NAMES.iter().map(|&(n, _)| n).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), super::NAMES.len());
        assert!(super::NAMES.iter().all(|(_, s)| s.starts_with("SYS_")));
    }
}
