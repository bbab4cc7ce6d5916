//! The one syscall table: for every x86-64 syscall number the personality
//! knows, its handler (the exit path), its fast handler (the exitless
//! server, [`crate::kernel::fast`]) when the server answers it, and its
//! i386 (`int $0x80`) number when a 64-bit vproc may make it that way.
//! Names come from [`crate::abi::sysno`], which has one for every number,
//! served or not.
//!
//! Everything that used to be a list kept in step by hand derives from it:
//! the set the exitless server is told it serves, syscall patching's "is
//! this call served fast" test, the i386 translation ([`translate32`]) and
//! the one place an unknown number gets ENOSYS ([`crate::Vproc`]'s
//! `dispatch`).
//!
//! Each area module (`fs`, `stat`, `fsmod`, `io`, `mm`, `proc`, `signal`,
//! `time`, `info`) lists its calls as `(number, handler)` pairs next to its
//! handlers; a handler gets the vproc, the number (one handler may serve
//! several numbers) and the six argument registers. Most handlers produce
//! a value (or an errno); the few that change what runs next (exit,
//! exit_group, clone, fork, vfork, sched_yield: `proc`'s `CONTROL_CALLS`)
//! return a [`Next`]. Either way the table hands the exit path one
//! [`Next`] ([`Call::run`]), which the run loop acts on.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::sync::LazyLock;

use super::fast::FAST_CALLS;
use super::{EBLOCK, ERESTART, R};
use crate::core::prelude::TrapFrame;
use crate::kernel::fast::{FastCalls, FastHandler};
use crate::kernel::{Next, Wait};
use crate::Vproc;

/// An exit-path handler that produces a value: the vproc, the call's
/// number and its six argument registers; the value for rax or an errno
/// (or one of the internal codes of a call that waits, see
/// [`crate::kernel::Next`]).
pub(crate) type Handler = fn(&mut Vproc, i64, [u64; 6]) -> R;

/// An exit-path handler that says what runs next (exit, clone,
/// sched_yield): same arguments, a [`Next`].
pub(crate) type Steer = fn(&mut Vproc, i64, [u64; 6]) -> Next;

/// A call's exit-path handler.
#[derive(Clone, Copy)]
pub(crate) enum Call {
    /// One that produces a value or an errno.
    Value(Handler),
    /// One that says what happens next.
    Steer(Steer),
}

impl Call {
    /// Run the handler: what happens next. A value handler's result is
    /// [`Next::Ret`] (`-errno` for an error), its internal codes
    /// [`Next::Block`] (until the call's deadline, if it set one) and
    /// [`Next::Restart`].
    pub(crate) fn run(self, v: &mut Vproc, nr: i64, a: [u64; 6]) -> Next {
        match self {
            Call::Steer(f) => f(v, nr, a),
            Call::Value(f) => match f(v, nr, a) {
                Ok(x) => Next::Ret(x),
                Err(EBLOCK) => {
                    let until = match (v.call.deadline, v.call.wake_at) {
                        (Some(d), Some(w)) => Some(d.min(w)),
                        (d, w) => d.or(w),
                    };
                    Next::Block(until.map_or(Wait::Event, Wait::Until))
                }
                Err(ERESTART) => Next::Restart,
                Err(e) => Next::Ret(-e),
            },
        }
    }
}

/// One syscall.
pub(crate) struct Syscall {
    /// Its x86-64 number.
    pub(crate) nr: i64,
    /// The exit path's handler.
    pub(crate) call: Call,
    /// The exitless server's handler, for the calls it answers.
    pub(crate) fast: Option<FastHandler>,
}

/// How an i386 call's registers (ebx, ecx, edx, esi, edi) become the
/// x86-64 call's arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Args32 {
    /// No arguments.
    None,
    /// ebx.
    B,
    /// ebx, ecx.
    Bc,
    /// ebx, ecx, edx.
    Bcd,
    /// lseek: ebx, ecx sign-extended (a 32-bit offset), edx.
    Lseek,
    /// pread64: ebx, ecx, edx, then the 64-bit offset in esi (low) and
    /// edi (high).
    Pread,
}

/// The i386 calls a 64-bit vproc's `int $0x80` may make (what static
/// programs and test suites use): `(i386 number, x86-64 number, args)`.
const I386: &[(u32, i64, Args32)] = &[
    (1, libc::SYS_exit, Args32::B),
    (3, libc::SYS_read, Args32::Bcd),
    (4, libc::SYS_write, Args32::Bcd),
    (5, libc::SYS_open, Args32::Bcd),
    (6, libc::SYS_close, Args32::B),
    (10, libc::SYS_unlink, Args32::B),
    (12, libc::SYS_chdir, Args32::B),
    (19, libc::SYS_lseek, Args32::Lseek),
    (20, libc::SYS_getpid, Args32::None),
    (24, libc::SYS_getuid, Args32::None),
    (199, libc::SYS_getuid, Args32::None),
    (33, libc::SYS_access, Args32::Bc),
    (37, libc::SYS_kill, Args32::Bc),
    (41, libc::SYS_dup, Args32::B),
    (42, libc::SYS_pipe, Args32::B),
    (45, libc::SYS_brk, Args32::B),
    (47, libc::SYS_getgid, Args32::None),
    (200, libc::SYS_getgid, Args32::None),
    (49, libc::SYS_geteuid, Args32::None),
    (201, libc::SYS_geteuid, Args32::None),
    (50, libc::SYS_getegid, Args32::None),
    (202, libc::SYS_getegid, Args32::None),
    (57, libc::SYS_setpgid, Args32::Bc),
    (60, libc::SYS_umask, Args32::B),
    (63, libc::SYS_dup2, Args32::Bc),
    (64, libc::SYS_getppid, Args32::None),
    (65, libc::SYS_getpgrp, Args32::None),
    (66, libc::SYS_setsid, Args32::None),
    (85, libc::SYS_readlink, Args32::Bcd),
    (91, libc::SYS_munmap, Args32::Bc),
    (122, libc::SYS_uname, Args32::B),
    (125, libc::SYS_mprotect, Args32::Bcd),
    (132, libc::SYS_getpgid, Args32::B),
    (133, libc::SYS_fchdir, Args32::B),
    (143, libc::SYS_flock, Args32::Bc),
    (158, libc::SYS_sched_yield, Args32::None),
    (180, libc::SYS_pread64, Args32::Pread),
    (183, libc::SYS_getcwd, Args32::Bc),
    (224, libc::SYS_gettid, Args32::None),
    (252, libc::SYS_exit_group, Args32::B),
    (330, libc::SYS_dup3, Args32::Bcd),
    (331, libc::SYS_pipe2, Args32::Bc),
];

/// The table, indexed by number.
struct Table {
    calls: Vec<Option<Syscall>>,
    i386: Vec<Option<(i64, Args32)>>,
}

/// The area lists, in the order their modules are documented.
fn areas() -> [&'static [(i64, Handler)]; 25] {
    [
        Vproc::FS_CALLS,
        Vproc::STAT_CALLS,
        Vproc::FSMOD_CALLS,
        Vproc::XATTR_CALLS,
        Vproc::IO_CALLS,
        Vproc::VECIO_CALLS,
        Vproc::SOCKET_CALLS,
        Vproc::EPOLL_CALLS,
        Vproc::PIDFD_CALLS,
        Vproc::NOTIFY_CALLS,
        Vproc::MM_CALLS,
        Vproc::ID_CALLS,
        Vproc::PROC_CALLS,
        Vproc::SIGNAL_CALLS,
        Vproc::TIME_CALLS,
        Vproc::PTIMER_CALLS,
        Vproc::SCHED_ATTR_CALLS,
        Vproc::INFO_CALLS,
        Vproc::SYSV_CALLS,
        Vproc::MQUEUE_CALLS,
        Vproc::SHM_CALLS,
        Vproc::PRIV_CALLS,
        Vproc::SPLICE_CALLS,
        Vproc::PTRACE_CALLS,
        Vproc::DENIED_CALLS,
    ]
}

/// Every area's calls with their handlers: the value handlers, then the
/// steering ones.
fn listed() -> impl Iterator<Item = (i64, Call)> {
    areas()
        .into_iter()
        .flat_map(|a| a.iter().map(|&(nr, f)| (nr, Call::Value(f))))
        .chain(
            Vproc::CONTROL_CALLS
                .iter()
                .map(|&(nr, f)| (nr, Call::Steer(f))),
        )
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let mut calls: Vec<Option<Syscall>> = Vec::new();
    for (nr, call) in listed() {
        let i = usize::try_from(nr).expect("syscall numbers are positive");
        if calls.len() <= i {
            calls.resize_with(i + 1, || None);
        }
        // A number listed twice is a bug the unit tests catch; the first
        // area keeps it.
        calls[i].get_or_insert(Syscall {
            nr,
            call,
            fast: None,
        });
    }
    for &(nr, fast) in FAST_CALLS {
        if let Some(Some(s)) = usize::try_from(nr).ok().and_then(|i| calls.get_mut(i)) {
            s.fast = Some(fast);
        }
    }
    let mut i386 = Vec::new();
    for &(n32, nr, args) in I386 {
        let i = n32 as usize;
        if i386.len() <= i {
            i386.resize(i + 1, None);
        }
        i386[i] = Some((nr, args));
    }
    Table { calls, i386 }
});

/// The entry of call `nr`, or None for a call the personality does not
/// serve.
pub(crate) fn lookup(nr: u64) -> Option<&'static Syscall> {
    let i = usize::try_from(nr).ok()?;
    TABLE.calls.get(i)?.as_ref()
}

/// Every call the table serves, by number.
pub(crate) fn calls() -> impl Iterator<Item = &'static Syscall> {
    TABLE.calls.iter().flatten()
}

/// The exitless calls for the kernel's server: lookup by number, and the
/// numbers the trampoline sends to it.
pub(crate) fn fast_calls() -> FastCalls {
    FastCalls {
        lookup: |nr| lookup(nr).and_then(|s| s.fast.map(|f| (s.nr, f))),
        numbers: fast_numbers(),
    }
}

/// The numbers the exitless server answers (what it is told it serves).
pub(crate) fn fast_numbers() -> Vec<u64> {
    calls()
        .filter(|s| s.fast.is_some())
        .map(|s| s.nr as u64)
        .collect()
}

/// Does the exitless server answer call `nr`?
pub(crate) fn is_fast(nr: u64) -> bool {
    lookup(nr).is_some_and(|s| s.fast.is_some())
}

/// The x86-64 call and arguments of the i386 call in `f` (number in eax,
/// arguments in ebx, ecx, edx, esi, edi; only the low 32 bits count), or
/// None for a call the table has no i386 number for.
pub(crate) fn translate32(f: &TrapFrame) -> Option<(u64, [u64; 6])> {
    let r = |v: u64| v & 0xffff_ffff;
    let (b, c, d, si, di) = (r(f.rbx), r(f.rcx), r(f.rdx), r(f.rsi), r(f.rdi));
    let (nr, args) = (*TABLE.i386.get(r(f.rax) as usize)?)?;
    let a = match args {
        Args32::None => [0; 6],
        Args32::B => [b, 0, 0, 0, 0, 0],
        Args32::Bc => [b, c, 0, 0, 0, 0],
        Args32::Bcd => [b, c, d, 0, 0, 0],
        // A signed 32-bit offset.
        Args32::Lseek => [b, c as u32 as i32 as i64 as u64, d, 0, 0, 0],
        Args32::Pread => [b, c, d, si | (di << 32), 0, 0],
    };
    Some((nr as u64, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_number_is_listed_twice() {
        let mut seen = std::collections::HashSet::new();
        for (nr, _) in listed() {
            assert!(seen.insert(nr), "syscall {nr} is in two area lists");
        }
        assert!(seen.len() > 150, "the areas list {} calls", seen.len());
    }

    #[test]
    fn every_fast_call_has_an_exit_path_handler() {
        for &(nr, _) in FAST_CALLS {
            assert!(lookup(nr as u64).is_some(), "fast call {nr} has no handler");
            assert!(is_fast(nr as u64));
        }
        assert_eq!(fast_numbers().len(), FAST_CALLS.len());
        assert!(!is_fast(libc::SYS_execve as u64));
    }

    #[test]
    fn every_i386_call_is_served_and_numbered_once() {
        let mut seen = std::collections::HashSet::new();
        for &(n32, nr, _) in I386 {
            assert!(seen.insert(n32), "i386 call {n32} listed twice");
            assert!(
                lookup(nr as u64).is_some(),
                "i386 {n32} -> {nr} is not served"
            );
        }
    }

    #[test]
    fn entries_have_linux_names() {
        // Names come from abi::sysno (`super::super::name`), which must
        // know every call the table serves.
        assert!(lookup(0).is_some());
        assert_eq!(super::super::name(0), "read");
        assert!(lookup(libc::SYS_newfstatat as u64).is_some());
        assert_eq!(
            super::super::name(libc::SYS_newfstatat as u64),
            "newfstatat"
        );
        assert!(calls().all(|s| crate::abi::sysno::name(s.nr as u64).is_some()));
        assert!(lookup(libc::SYS_io_uring_setup as u64).is_none());
        assert!(lookup(u64::MAX).is_none());
    }

    #[test]
    fn unserved_calls_are_the_documented_ones() {
        // docs/SYSCALLS.md's first table: one row per number the table
        // does not serve (rt_sigreturn is served by the run loop).
        let doc = include_str!("../../../docs/SYSCALLS.md");
        let first = doc.split("## Served, but").next().unwrap_or(doc);
        let documented: std::collections::BTreeSet<u64> = first
            .lines()
            .filter_map(|l| l.strip_prefix("| "))
            .filter_map(|l| l.split(' ').next()?.parse().ok())
            .collect();
        let unserved: std::collections::BTreeSet<u64> = (0..=crate::abi::sysno::MAX_NR)
            .filter(|&nr| crate::abi::sysno::name(nr).is_some() && lookup(nr).is_none())
            .filter(|&nr| nr != libc::SYS_rt_sigreturn as u64)
            .collect();
        assert_eq!(
            documented, unserved,
            "docs/SYSCALLS.md must list exactly the unserved numbers"
        );
    }

    #[test]
    fn i386_arguments_are_32_bit() {
        let mut f = TrapFrame::new(0, 0);
        f.rax = 0xdead_0000_0000_0004;
        f.rbx = 0xffff_ffff_0000_0001;
        f.rcx = 0x40_1000;
        f.rdx = 5;
        assert_eq!(translate32(&f), Some((1, [1, 0x40_1000, 5, 0, 0, 0])));
        f.rax = 19;
        f.rcx = 0xffff_fffe;
        assert_eq!(translate32(&f), Some((8, [1, (-2i64) as u64, 5, 0, 0, 0])));
        f.rax = 180;
        f.rsi = 0x10;
        f.rdi = 0x2;
        assert_eq!(
            translate32(&f),
            Some((17, [1, 0xffff_fffe, 5, 0x2_0000_0010, 0, 0]))
        );
        f.rax = 9999;
        assert_eq!(translate32(&f), None);
    }
}
