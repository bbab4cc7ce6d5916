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
//! [`ERESTART`] codes of a call that waits; the few that change what runs
//! next return a [`Next`]. The table ([`table::Call::run`]) turns either
//! into one [`Next`], [`Vproc::syscall`] carries out its part on the frame
//! and returns it to the run loop (`kernel::cpu_loop`).

use crate::core::prelude::*;

use super::files;
use super::kernel::Next;
use super::mm::MmError;
use super::signal::SigInfo;
pub use super::stdio::ERESTART;
use super::Vproc;

pub mod compat32;
mod denied;
mod dgram;
mod epoll;
pub mod events;
mod fast;
mod fifo;
mod fs;
mod fsmod;
mod ifaces;
mod inet;
mod info;
mod io;
mod ioctl;
mod locking;
mod mm;
mod mqueue;
mod netlink;
mod notify;
mod overcommit;
mod patching;
mod pidfd;
mod ping;
pub(crate) mod prctl;
mod privs;
mod proc;
mod procfs;
mod procmem;
mod procnet;
mod procpid;
mod procsys;
mod ptimer;
mod ptrace;
mod pty;
mod ready;
mod sched_attr;
mod scm;
mod signal;
mod sockopt;
mod splice;
mod stat;
mod stream;
mod sysv;
mod sysv_shm;
pub(crate) mod table;
mod tapnet;
mod time;
mod unix;
mod vecio;
mod xattr;

// What the exitless fast path (`kernel::fast`) shares with the handlers.
pub(crate) use fs::seek_file;
pub(crate) use info::uname_bytes;
pub(crate) use procpid::render_maps;
pub(crate) use stat::{dirent_records, fstat_bytes, stat_bytes, Dirent};

/// Internal errno: the call must wait (until its deadline,
/// [`events::CallState::deadline`], if it set one); the table turns it
/// into [`Next::Block`] and the call is retried from the `syscall`
/// instruction once the vproc is woken. Like Linux's ERESTARTSYS it never
/// reaches the vproc.
pub const EBLOCK: i64 = 513;

pub use crate::abi::errno;
use errno::*;

/// `dirfd` meaning the current directory.
pub(crate) const AT_FDCWD: i64 = libc::AT_FDCWD as i64;
/// fstatat: do not follow a final symlink.
const AT_SYMLINK_NOFOLLOW: u64 = libc::AT_SYMLINK_NOFOLLOW as u64;
/// fstatat: an empty path means `dirfd` itself.
const AT_EMPTY_PATH: u64 = libc::AT_EMPTY_PATH as u64;

/// A handler's result: the value for rax, or an errno.
type R = Result<i64, i64>;

/// An `int` argument (fd, pid, signal): the low 32 bits of the register,
/// sign-extended (the upper half is undefined).
// The ABI's truncation: only the low half of the register is the int.
#[allow(clippy::cast_possible_truncation)]
fn int(x: u64) -> i64 {
    x as i32 as i64
}

/// An `int` argument as an `i32` (the low 32 bits of the register).
// The ABI's truncation, as `int`.
#[allow(clippy::cast_possible_truncation)]
pub(crate) fn int32(x: u64) -> i32 {
    x as i32
}

/// An `unsigned int` argument (flags, modes): the low 32 bits of the
/// register.
// The ABI's truncation, as `int`.
#[allow(clippy::cast_possible_truncation)]
pub(crate) fn uint32(x: u64) -> u32 {
    x as u32
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

/// The Linux name of syscall `nr` for messages, `--trace` and `--stats`
/// (`"getpeername"` for 52), whether or not the personality serves it;
/// `"unknown"` for a number x86-64 does not assign.
/// The table takes its names from the same list ([`crate::abi::sysno`]).
pub fn name(nr: u64) -> &'static str {
    crate::abi::sysno::name_of(nr)
}

impl Vproc {
    /// Serve the syscall in `self.frame`: what happens next. By the time
    /// it returns, the frame says it too: a finished call's value
    /// ([`Next::Ret`]) is in rax, a call that waits or restarts is rewound
    /// to its `syscall` instruction.
    pub fn syscall(&mut self, cpu: &Cpu) -> Next {
        let nr = self.frame.rax;
        let a = self.frame.syscall_args();
        if let Some(k) = &self.k {
            // Through a rewritten site (its stub's return address) or by
            // the `syscall` instruction (`--stats`).
            let by = usize::from(!self.mm.patches().in_stub(self.frame.rip));
            k.exit_calls[by].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if nr == libc::SYS_rt_sigreturn as u64 {
            // Its site (the C library's restorer) is rewritten as any
            // other: the frame it restores comes from the stack.
            self.maybe_patch(nr);
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
            return Next::Ret(self.frame.rax as i64);
        }
        self.maybe_patch(nr);
        let epoch = self.mm.patches().epoch();
        let next = self.serve(nr, a, nr);
        if self.mm.patches().epoch() != epoch {
            // This call dropped stub pages (mmap, munmap, mprotect...): if
            // it came through one, it returns to the site itself.
            self.frame.rip = self.mm.patch_resume(self.frame.rip);
        }
        next
    }

    /// Patch the site of this call, just served through the exit path,
    /// once it is worth it (see `mm::patch` and `Vproc::patch_site`).
    fn maybe_patch(&mut self, nr: u64) {
        self.patch_site(self.frame.rip, nr);
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
    pub fn syscall32(&mut self, _cpu: &Cpu) -> Next {
        let nr32 = self.frame.rax;
        self.frame.rip += 2;
        match table::translate32(&self.frame) {
            Some((nr, a)) => self.serve(nr, a, nr32),
            None => {
                if self.trace {
                    vk_eprintln!("[vk] int80 {} = -ENOSYS", nr32 & 0xffff_ffff);
                }
                self.frame.rax = (-ENOSYS) as u64;
                Next::Ret(-ENOSYS)
            }
        }
    }

    /// Run call `nr` with arguments `a` and carry out what its handler
    /// says on the frame: a value goes in rax; a call that waits or
    /// restarts re-executes the 2-byte instruction before rip with rax =
    /// `restart_nr` and keeps its state in `pending_call`. The rest
    /// ([`Next::Block`]'s sleep, clone, yield, exit) is the run loop's.
    fn serve(&mut self, nr: u64, a: [u64; 6], restart_nr: u64) -> Next {
        // A retry of a waiting call continues with its state.
        let (state, retry) = match self.pending_call.take() {
            Some(p) if p.nr == nr && p.args == a => (p.state, true),
            _ => (Default::default(), false),
        };
        self.call = state;
        self.call.wake_at = None;
        let watchdog = std::mem::take(&mut self.watchdog_retry) && retry;
        let next = self.dispatch(nr, a);
        if self.trace && !(retry && next.rewinds()) {
            let shown = match next {
                Next::Ret(v) => format!("= {v}"),
                Next::Block(_) | Next::Restart => "waits".to_string(),
                other => format!("-> {other:?}"),
            };
            vk_eprintln!(
                "[vk] {}({:#x}, {:#x}, {:#x}, {:#x}) {shown}",
                name(nr),
                a[0],
                a[1],
                a[2],
                a[3],
            );
        }
        match next {
            Next::Block(_) | Next::Restart => {
                // Retry the call when woken (or after the interruption).
                self.frame.rip -= 2;
                self.frame.rax = restart_nr;
                self.pending_call = Some(events::PendingCall {
                    nr,
                    args: a,
                    state: std::mem::take(&mut self.call),
                    at: self.frame.rip,
                    rax: restart_nr,
                });
            }
            Next::Ret(v) => {
                if watchdog {
                    if let Some(k) = &self.k {
                        k.lost_wakeup(self.pid, nr);
                    }
                }
                self.frame.rax = v as u64;
            }
            Next::Yield => self.frame.rax = 0,
            Next::Clone(_) | Next::Exit { .. } => {}
        }
        next
    }

    /// Run call `nr`: its handler in the syscall table ([`table`]), or
    /// ENOSYS from the one place unknown calls get it.
    fn dispatch(&mut self, nr: u64, a: [u64; 6]) -> Next {
        match table::lookup(nr) {
            Some(s) => s.call.run(self, s.nr, a),
            None => Next::Ret(-self.unknown_call(nr)),
        }
    }

    /// A call no area serves: ENOSYS, counted and logged once per run
    /// ([`crate::diag`]).
    fn unknown_call(&mut self, nr: u64) -> i64 {
        crate::diag::unimplemented(&self.unimplemented, nr, self.pid, &self.comm);
        ENOSYS
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
        assert_eq!(name(52), "getpeername");
        assert_eq!(name(100_000), "unknown");
        assert_eq!(name(u64::MAX), "unknown");
    }
}
