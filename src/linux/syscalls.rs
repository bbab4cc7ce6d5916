//! The Linux x86-64 system calls a vproc can make.
//!
//! [`Vproc::syscall`] decodes `frame.rax` and the argument registers,
//! serves the call against the vproc's memory, files and signal state, and
//! puts the result (or `-errno`) into `frame.rax`. An unknown call returns
//! ENOSYS and is reported once on the host's stderr.

use crate::core::prelude::*;

use super::files::{self, Fd, FileKind, OpenFile, Pipe, Shared};
use super::fs::{self, Kind, S_IFCHR, S_IFDIR};
use super::mm::MmError;
use super::signal::{self, SigAction, SigInfo};
use super::stdio::ERESTART;
use super::{ExitStatus, Vproc};

/// Internal errno: the call must wait (`self.block` says for what); it is
/// retried from the `syscall` instruction once the vproc is woken.
pub const EBLOCK: i64 = 513;

/// Errnos used here.
pub mod errno {
    #![allow(missing_docs)]
    pub const EPERM: i64 = 1;
    pub const ENOENT: i64 = 2;
    pub const ESRCH: i64 = 3;
    pub const EINTR: i64 = 4;
    pub const EIO: i64 = 5;
    pub const ENXIO: i64 = 6;
    pub const E2BIG: i64 = 7;
    pub const EBADF: i64 = 9;
    pub const ECHILD: i64 = 10;
    pub const EAGAIN: i64 = 11;
    pub const ENOMEM: i64 = 12;
    pub const EACCES: i64 = 13;
    pub const EFAULT: i64 = 14;
    pub const EEXIST: i64 = 17;
    pub const ENOTDIR: i64 = 20;
    pub const EISDIR: i64 = 21;
    pub const EINVAL: i64 = 22;
    pub const ENOTTY: i64 = 25;
    pub const ESPIPE: i64 = 29;
    pub const EROFS: i64 = 30;
    pub const EPIPE: i64 = 32;
    pub const ERANGE: i64 = 34;
    pub const ENOSYS: i64 = 38;
    pub const ENOTEMPTY: i64 = 39;
    pub const ETIMEDOUT: i64 = 110;
    pub const EAFNOSUPPORT: i64 = 97;
    pub const ENOEXEC: i64 = 8;
    pub const EOPNOTSUPP: i64 = 95;
}
use errno::*;

const AT_FDCWD: i64 = -100;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_EMPTY_PATH: u64 = 0x1000;

type R = Result<i64, i64>;

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

/// Name of a syscall number (for logs).
pub fn name(nr: u64) -> &'static str {
    match nr {
        0 => "read",
        1 => "write",
        2 => "open",
        3 => "close",
        4 => "stat",
        5 => "fstat",
        6 => "lstat",
        7 => "poll",
        8 => "lseek",
        9 => "mmap",
        10 => "mprotect",
        11 => "munmap",
        12 => "brk",
        13 => "rt_sigaction",
        14 => "rt_sigprocmask",
        15 => "rt_sigreturn",
        16 => "ioctl",
        17 => "pread64",
        18 => "pwrite64",
        19 => "readv",
        20 => "writev",
        21 => "access",
        22 => "pipe",
        23 => "select",
        24 => "sched_yield",
        25 => "mremap",
        26 => "msync",
        27 => "mincore",
        28 => "madvise",
        32 => "dup",
        33 => "dup2",
        34 => "pause",
        35 => "nanosleep",
        37 => "alarm",
        38 => "setitimer",
        39 => "getpid",
        40 => "sendfile",
        41 => "socket",
        42 => "connect",
        56 => "clone",
        57 => "fork",
        58 => "vfork",
        59 => "execve",
        60 => "exit",
        61 => "wait4",
        62 => "kill",
        63 => "uname",
        72 => "fcntl",
        73 => "flock",
        74 => "fsync",
        76 => "truncate",
        77 => "ftruncate",
        78 => "getdents",
        79 => "getcwd",
        80 => "chdir",
        81 => "fchdir",
        82 => "rename",
        83 => "mkdir",
        84 => "rmdir",
        85 => "creat",
        86 => "link",
        87 => "unlink",
        88 => "symlink",
        89 => "readlink",
        90 => "chmod",
        92 => "chown",
        95 => "umask",
        96 => "gettimeofday",
        97 => "getrlimit",
        98 => "getrusage",
        99 => "sysinfo",
        100 => "times",
        102 => "getuid",
        104 => "getgid",
        105 => "setuid",
        106 => "setgid",
        107 => "geteuid",
        108 => "getegid",
        109 => "setpgid",
        110 => "getppid",
        111 => "getpgrp",
        112 => "setsid",
        115 => "getgroups",
        121 => "getpgid",
        124 => "getsid",
        127 => "rt_sigpending",
        130 => "rt_sigsuspend",
        131 => "sigaltstack",
        137 => "statfs",
        138 => "fstatfs",
        157 => "prctl",
        158 => "arch_prctl",
        160 => "setrlimit",
        186 => "gettid",
        200 => "tkill",
        201 => "time",
        202 => "futex",
        204 => "sched_getaffinity",
        217 => "getdents64",
        218 => "set_tid_address",
        228 => "clock_gettime",
        229 => "clock_getres",
        230 => "clock_nanosleep",
        231 => "exit_group",
        234 => "tgkill",
        257 => "openat",
        262 => "newfstatat",
        267 => "readlinkat",
        269 => "faccessat",
        270 => "pselect6",
        271 => "ppoll",
        273 => "set_robust_list",
        280 => "utimensat",
        292 => "dup3",
        293 => "pipe2",
        302 => "prlimit64",
        318 => "getrandom",
        332 => "statx",
        334 => "rseq",
        435 => "clone3",
        439 => "faccessat2",
        _ => "unknown",
    }
}

/// What stat reports.
struct Stat {
    dev: u64,
    ino: u64,
    mode: u32,
    nlink: u64,
    uid: u32,
    gid: u32,
    rdev: u64,
    size: u64,
    mtime: u64,
}

impl Stat {
    fn to_stat(&self) -> [u8; 144] {
        let mut b = [0u8; 144];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &self.dev.to_le_bytes());
        put(8, &self.ino.to_le_bytes());
        put(16, &self.nlink.to_le_bytes());
        put(24, &self.mode.to_le_bytes());
        put(28, &self.uid.to_le_bytes());
        put(32, &self.gid.to_le_bytes());
        put(40, &self.rdev.to_le_bytes());
        put(48, &self.size.to_le_bytes());
        put(56, &4096u64.to_le_bytes());
        put(64, &self.size.div_ceil(512).to_le_bytes());
        for off in [72, 88, 104] {
            put(off, &self.mtime.to_le_bytes());
        }
        b
    }

    fn to_statx(&self) -> [u8; 256] {
        let mut b = [0u8; 256];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &0x7ffu32.to_le_bytes());
        put(4, &4096u32.to_le_bytes());
        put(16, &(self.nlink as u32).to_le_bytes());
        put(20, &self.uid.to_le_bytes());
        put(24, &self.gid.to_le_bytes());
        put(28, &(self.mode as u16).to_le_bytes());
        put(32, &self.ino.to_le_bytes());
        put(40, &self.size.to_le_bytes());
        put(48, &self.size.div_ceil(512).to_le_bytes());
        for off in [64, 80, 96, 112] {
            put(off, &self.mtime.to_le_bytes());
        }
        put(128, &((self.rdev >> 8) as u32).to_le_bytes());
        put(132, &((self.rdev & 0xff) as u32).to_le_bytes());
        put(136, &((self.dev >> 8) as u32).to_le_bytes());
        put(140, &((self.dev & 0xff) as u32).to_le_bytes());
        b
    }
}

fn now(clock: i32) -> (u64, u64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec the call fills; an unsupported clock
    // id only makes it fail, and then ts stays zero.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64, ts.tv_nsec as u64)
}

impl Vproc {
    /// Serve the syscall in `self.frame`.
    pub fn syscall(&mut self, cpu: &Cpu) {
        let nr = self.frame.rax;
        let a = self.frame.syscall_args();
        if nr == 15 {
            // rt_sigreturn restores the whole frame, rax included.
            match signal::sigreturn(&mut self.mm, cpu, &self.fpu, &mut self.frame) {
                Ok(mask) => {
                    self.sig.blocked =
                        mask & !(signal::bit(signal::SIGKILL) | signal::bit(signal::SIGSTOP));
                }
                Err(_) => self.force_signal(
                    cpu,
                    SigInfo {
                        signo: signal::SIGSEGV,
                        code: 0x80,
                        ..Default::default()
                    },
                ),
            }
            return;
        }
        self.serve(nr, a, nr);
    }

    /// Serve the vproc's `int $0x80` (an i386 call, see [`super::compat32`]);
    /// rip is at the `int` instruction.
    pub fn syscall32(&mut self, _cpu: &Cpu) {
        let nr32 = self.frame.rax;
        self.frame.rip += 2;
        match super::compat32::translate(&self.frame) {
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
                self.pending_call = Some(super::events::PendingCall {
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

    fn dispatch(&mut self, nr: u64, a: [u64; 6]) -> R {
        // int arguments (fds, pids, signals) are 32 bits: the upper half of
        // the register is undefined.
        let i = |x: u64| x as i32 as i64;
        match nr {
            0 => self.sys_read(i(a[0]), a[1], a[2] as usize, None),
            1 => self.sys_write(i(a[0]), a[1], a[2] as usize),
            2 => self.sys_openat(AT_FDCWD, a[0], a[1] as u32),
            3 => Ok(self.fds.close(i(a[0])).map(|_| 0)?),
            4 => self.sys_fstatat(AT_FDCWD, a[0], a[1], 0),
            5 => self.sys_fstatat(i(a[0]), 0, a[1], AT_EMPTY_PATH),
            6 => self.sys_fstatat(AT_FDCWD, a[0], a[1], AT_SYMLINK_NOFOLLOW),
            7 => self.sys_poll_ms(a[0], a[1], a[2] as i32),
            8 => self.sys_lseek(i(a[0]), a[1] as i64, a[2] as u32),
            9 => self.sys_mmap(a),
            10 => {
                self.mm.protect(a[0], a[1], a[2] as u32)?;
                Ok(0)
            }
            11 => {
                self.mm.munmap(a[0], a[1])?;
                Ok(0)
            }
            12 => Ok(self.mm.set_brk(a[0]) as i64),
            13 => self.sys_sigaction(i(a[0]) as i32, a[1], a[2]),
            14 => self.sys_sigprocmask(a[0], a[1], a[2]),
            16 => self.sys_ioctl(i(a[0]), a[1] as u32, a[2]),
            17 => self.sys_read(i(a[0]), a[1], a[2] as usize, Some(a[3])),
            18 => Err(EROFS),
            19 => self.sys_readv(i(a[0]), a[1], a[2]),
            20 => self.sys_writev(i(a[0]), a[1], a[2]),
            21 => self.sys_faccessat(AT_FDCWD, a[0], a[1] as u32),
            22 => self.sys_pipe2(a[0], 0),
            23 => self.sys_select(a),
            270 => self.sys_pselect6(a),
            24 => {
                self.yield_cpu = self.k.is_some();
                Ok(0)
            }
            25 => Ok(self.mm.mremap(a[0], a[1], a[2], a[3], a[4])? as i64),
            26 | 74 | 75 => Ok(0),
            27 => Err(ENOSYS),
            28 => {
                self.mm.madvise(a[0], a[1], a[2] as i32 as i64 as u64)?;
                Ok(0)
            }
            32 => self.sys_dup(i(a[0]), 0, false),
            33 => self.sys_dup3(i(a[0]), i(a[1]), 0, true),
            34 => self.sys_pause(None),
            130 => {
                let m = self.mm.read_u64(a[0])?;
                self.sys_pause(Some(m))
            }
            35 => self.sys_nanosleep(a[0]),
            36 => self.sys_getitimer(i(a[0]) as i32, a[1]),
            37 => self.sys_alarm(a[0] as u32),
            38 => self.sys_setitimer(i(a[0]) as i32, a[1], a[2]),
            39 | 186 => Ok(self.pid as i64),
            40 => self.sys_sendfile(i(a[0]), i(a[1]), a[2], a[3] as usize),
            41 => Err(EAFNOSUPPORT),
            56 => self.sys_clone(a[0], a[1], a[2], a[3], a[4]),
            // vfork is fork: the child gets a copy-on-write address space.
            57 | 58 => self.sys_clone(signal::SIGCHLD as u64, 0, 0, 0, 0),
            435 => Err(ENOSYS),
            59 => self.sys_execve(a[0], a[1], a[2]),
            60 | 231 => {
                self.exit = Some(ExitStatus::Exited(a[0] as i32 & 0xff));
                Ok(0)
            }
            61 => {
                if self.k.is_some() {
                    self.sys_wait4(i(a[0]) as i32, a[1], a[2], a[3])
                } else {
                    Err(ECHILD)
                }
            }
            62 => self.sys_kill(i(a[0]) as i32, i(a[1]) as i32),
            63 => self.sys_uname(a[0]),
            72 => self.sys_fcntl(i(a[0]), a[1] as u32, a[2]),
            73 => Ok(0),
            76 | 77 | 82 | 83 | 84 | 85 | 86 | 87 | 88 | 90 | 91 | 92 | 93 | 94 | 258 | 263
            | 264 | 265 | 266 | 268 | 280 | 316 => Err(EROFS),
            78 | 217 => self.sys_getdents64(i(a[0]), a[1], a[2] as usize),
            79 => self.sys_getcwd(a[0], a[1] as usize),
            80 => self.sys_chdir(a[0]),
            81 => {
                let f = self.fds.get(i(a[0]))?.file.clone();
                let f = f.borrow();
                match f.kind {
                    FileKind::Inode(ino) if self.is_dir(ino) => {
                        self.cwd = ino;
                        Ok(0)
                    }
                    _ => Err(ENOTDIR),
                }
            }
            89 => self.sys_readlinkat(AT_FDCWD, a[0], a[1], a[2] as usize),
            95 => {
                let old = self.umask;
                self.umask = a[0] as u32 & 0o777;
                Ok(old as i64)
            }
            96 => {
                if a[0] != 0 {
                    let (s, ns) = now(libc::CLOCK_REALTIME);
                    let mut b = [0u8; 16];
                    b[..8].copy_from_slice(&s.to_le_bytes());
                    b[8..].copy_from_slice(&(ns / 1000).to_le_bytes());
                    self.mm.write(a[0], &b)?;
                }
                if a[1] != 0 {
                    self.mm.write(a[1], &[0u8; 8])?;
                }
                Ok(0)
            }
            97 => self.sys_prlimit(0, a[0] as u32, 0, a[1]),
            98 => {
                self.mm.write(a[1], &[0u8; 144])?;
                Ok(0)
            }
            99 => self.sys_sysinfo(a[0]),
            100 => {
                if a[0] != 0 {
                    self.mm.write(a[0], &[0u8; 32])?;
                }
                Ok((self.started.elapsed().as_millis() / 10) as i64)
            }
            102 | 104 | 107 | 108 => Ok(0),
            105 | 106 | 160 | 113 | 114 | 117 | 119 => Ok(0),
            109 => self.sys_setpgid(i(a[0]) as i32, i(a[1]) as i32),
            110 => Ok(self.sys_getppid()),
            111 => self.sys_pgid(121, 0),
            121 | 124 | 112 => self.sys_pgid(nr, i(a[0]) as i32),
            140 => self.sys_priority(false, a[0], i(a[1]) as i32, 0),
            141 => self.sys_priority(true, a[0], i(a[1]) as i32, i(a[2]) as i32),
            142 => Ok(0),
            143..=145 => self.sys_sched(
                nr,
                i(a[0]) as i32,
                i(a[1]) as i32,
                if nr == 144 { a[2] } else { a[1] },
            ),
            146 => Ok(if matches!(a[0], 1 | 2) { 99 } else { 0 }),
            147 => Ok(if matches!(a[0], 1 | 2) { 1 } else { 0 }),
            115 => Ok(0),
            118 | 120 => {
                for p in [a[0], a[1], a[2]] {
                    if p != 0 {
                        self.mm.write(p, &[0u8; 4])?;
                    }
                }
                Ok(0)
            }
            127 => {
                let pend: u64 = self
                    .sig
                    .pending
                    .iter()
                    .fold(0, |m, p| m | signal::bit(p.signo));
                self.mm.write_u64(a[0], pend & self.sig.blocked)?;
                Ok(0)
            }
            131 => self.sys_sigaltstack(a[0], a[1]),
            137 | 138 => {
                let mut b = [0u8; 120];
                b[..8].copy_from_slice(&0x01021994u64.to_le_bytes());
                b[8..16].copy_from_slice(&4096u64.to_le_bytes());
                self.mm.write(a[1], &b)?;
                Ok(0)
            }
            157 => Err(EINVAL),
            158 => self.sys_arch_prctl(a[0], a[1]),
            200 => self.sys_kill(i(a[0]) as i32, i(a[1]) as i32),
            201 => {
                let (s, _) = now(libc::CLOCK_REALTIME);
                if a[0] != 0 {
                    self.mm.write_u64(a[0], s)?;
                }
                Ok(s as i64)
            }
            202 => self.sys_futex(a),
            204 => {
                if a[1] < 8 {
                    return Err(EINVAL);
                }
                self.mm.write_u64(a[2], 1)?;
                Ok(8)
            }
            218 => {
                self.clear_child_tid = a[0];
                Ok(self.pid as i64)
            }
            228 => {
                let (s, ns) = now(a[0] as i32);
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&s.to_le_bytes());
                b[8..].copy_from_slice(&ns.to_le_bytes());
                self.mm.write(a[1], &b)?;
                Ok(0)
            }
            229 => {
                if a[1] != 0 {
                    let mut b = [0u8; 16];
                    b[8..].copy_from_slice(&1u64.to_le_bytes());
                    self.mm.write(a[1], &b)?;
                }
                Ok(0)
            }
            230 => self.sys_clock_nanosleep(a[0] as i32, a[1], a[2]),
            234 => {
                if i(a[0]) as i32 != i(a[1]) as i32 {
                    return Err(ESRCH);
                }
                self.sys_kill(i(a[1]) as i32, i(a[2]) as i32)
            }
            257 => self.sys_openat(i(a[0]), a[1], a[2] as u32),
            262 => self.sys_fstatat(i(a[0]), a[1], a[2], a[3]),
            267 => self.sys_readlinkat(i(a[0]), a[1], a[2], a[3] as usize),
            269 | 439 => self.sys_faccessat_at(i(a[0]), a[1], a[2] as u32),
            271 => self.sys_ppoll(a),
            273 => Ok(0),
            292 => self.sys_dup3(i(a[0]), i(a[1]), a[2] as u32, false),
            293 => self.sys_pipe2(a[0], a[1] as u32),
            302 => self.sys_prlimit(i(a[0]) as i32, a[1] as u32, a[2], a[3]),
            318 => {
                let n = (a[1] as usize).min(1 << 20);
                let mut b = vec![0u8; n];
                super::random_bytes(&mut b);
                self.mm.write(a[0], &b)?;
                Ok(n as i64)
            }
            332 => self.sys_statx(i(a[0]), a[1], a[2], a[4]),
            334 => Err(ENOSYS),
            _ => {
                if self.unknown.insert(nr) {
                    vk_eprintln!(
                        "vkernel: unimplemented syscall {nr} ({}) -> ENOSYS",
                        name(nr)
                    );
                }
                Err(ENOSYS)
            }
        }
    }

    fn is_dir(&self, ino: u64) -> bool {
        matches!(self.fs.inode(ino).kind, Kind::Dir(_))
    }

    pub(super) fn user_path(&mut self, p: u64) -> Result<Vec<u8>, i64> {
        if p == 0 {
            return Err(EFAULT);
        }
        let s = self.mm.read_cstr(p, 4096).map_err(|e| match e {
            MmError::Invalid => 36,
            e => e.errno(),
        })?;
        Ok(s)
    }

    /// The directory a *at call is relative to.
    fn at_dir(&self, dirfd: i64) -> Result<u64, i64> {
        if dirfd == AT_FDCWD {
            return Ok(self.cwd);
        }
        let f = self.fds.get(dirfd)?.file.clone();
        let f = f.borrow();
        match f.kind {
            FileKind::Inode(ino) if self.is_dir(ino) => Ok(ino),
            _ => Err(ENOTDIR),
        }
    }

    /// Linux's access_ok: the whole buffer below the top of user space.
    fn user_range_ok(buf: u64, len: usize) -> bool {
        buf.checked_add(len as u64)
            .is_some_and(|e| e <= super::mm::USER_END)
    }

    /// Checks of read/write before the buffer is touched: the fd is open
    /// for that direction (EBADF), the buffer is below the top of user
    /// space (EFAULT). Returns whether the fd is /dev/null or /dev/zero.
    fn rw_check(&self, fd: i64, buf: u64, len: usize, write: bool) -> Result<Option<u32>, i64> {
        let file = self.fds.get(fd)?.file.clone();
        let f = file.borrow();
        let mode = f.flags & files::O_ACCMODE;
        let bad = if write {
            mode == 0 && !matches!(f.kind, FileKind::Stdin)
        } else {
            mode == files::O_WRONLY
        };
        if bad {
            return Err(EBADF);
        }
        if !Self::user_range_ok(buf, len) {
            return Err(EFAULT);
        }
        Ok(match &f.kind {
            FileKind::Inode(ino) => match self.fs.inode(*ino).kind {
                Kind::CharDev(d) => Some(d),
                _ => None,
            },
            _ => None,
        })
    }

    fn sys_write(&mut self, fd: i64, buf: u64, len: usize) -> R {
        if self.rw_check(fd, buf, len, true)?.is_some() {
            // /dev/null and /dev/zero never look at the buffer.
            return Ok(len as i64);
        }
        let len = len.min(1 << 24);
        // Write the readable head of the buffer; EFAULT only if there is
        // none.
        let mut data = vec![0u8; len];
        let n = self.mm.read_partial(buf, &mut data);
        if n == 0 && len > 0 {
            return Err(EFAULT);
        }
        data.truncate(n);
        self.write_fd(fd, &data)
    }

    /// Write to the host behind fd 1 or 2. A host pipe without readers
    /// (`vk run ... | head -1`) is a readerless pipe for the vproc too:
    /// EPIPE and SIGPIPE, as Linux gives a native process.
    fn write_host(&mut self, fd: i32, data: &[u8]) -> R {
        match self.stdio.write(fd, data) {
            Ok(n) => Ok(n as i64),
            Err(EPIPE) => {
                self.queue_signal(SigInfo {
                    signo: signal::SIGPIPE,
                    pid: self.pid,
                    ..Default::default()
                });
                Err(EPIPE)
            }
            Err(e) => Err(e),
        }
    }

    fn write_fd(&mut self, fd: i64, data: &[u8]) -> R {
        self.write_fd_as(fd, data, false)
    }

    /// write to `fd`; `nowait`: as with O_NONBLOCK (sendfile).
    fn write_fd_as(&mut self, fd: i64, data: &[u8], nowait: bool) -> R {
        let file = self.fds.get(fd)?.file.clone();
        let f = file.borrow();
        if f.flags & files::O_ACCMODE == 0 && !matches!(f.kind, FileKind::Stdin) {
            return Err(EBADF);
        }
        match &f.kind {
            FileKind::Stdout | FileKind::Stdin => self.write_host(1, data),
            FileKind::Stderr => self.write_host(2, data),
            FileKind::PipeWrite(p) => {
                let nonblock = f.flags & files::O_NONBLOCK != 0 || nowait;
                let mut p = p.borrow_mut();
                // A blocking write moves everything, in as many rounds as
                // the pipe needs; `progress` counts what earlier rounds of
                // this call moved.
                let done = self.call.progress.min(data.len());
                if p.readers == 0 {
                    drop(p);
                    drop(f);
                    self.queue_signal(SigInfo {
                        signo: signal::SIGPIPE,
                        pid: self.pid,
                        ..Default::default()
                    });
                    return if done > 0 {
                        Ok(done as i64)
                    } else {
                        Err(EPIPE)
                    };
                }
                let rest = &data[done..];
                let Some(k) = self.k.clone() else {
                    // Alone, nobody would ever drain it: take it all.
                    p.buf.extend(rest);
                    return Ok(data.len() as i64);
                };
                let room = files::PIPE_CAPACITY.saturating_sub(p.buf.len());
                // Writes up to PIPE_BUF are atomic: all or wait.
                let fits = if rest.len() <= files::PIPE_BUF {
                    room >= rest.len()
                } else {
                    room > 0
                };
                if !fits && !rest.is_empty() {
                    if nonblock {
                        return if done > 0 {
                            Ok(done as i64)
                        } else {
                            Err(EAGAIN)
                        };
                    }
                    p.wait(self.pid, k);
                    drop(p);
                    drop(f);
                    return self.block_on(None);
                }
                let n = room.min(rest.len());
                p.buf.extend(&rest[..n]);
                let w = p.take_waiters();
                let done = done + n;
                let more = done < data.len() && !nonblock;
                if more {
                    p.wait(self.pid, k);
                }
                drop(p);
                drop(f);
                files::wake_all(w);
                if more {
                    self.call.progress = done;
                    return self.block_on(None);
                }
                Ok(done as i64)
            }
            FileKind::Inode(ino) => match self.fs.inode(*ino).kind {
                Kind::CharDev(_) => Ok(data.len() as i64),
                _ => Err(EBADF),
            },
            FileKind::PipeRead(_) => Err(EBADF),
        }
    }

    fn sys_read(&mut self, fd: i64, buf: u64, len: usize, at: Option<u64>) -> R {
        let dev = self.rw_check(fd, buf, len, false)?;
        let len = len.min(1 << 24);
        // Read only what fits in the writable head of the buffer (nothing
        // is consumed that cannot be delivered); EFAULT only if none does.
        let fits = self.mm.accessible_len(buf, len, true);
        if fits == 0 && len > 0 {
            return match dev {
                Some(d) if d & 0xff == 3 => Ok(0), // /dev/null: EOF
                _ => Err(EFAULT),
            };
        }
        let mut data = vec![0u8; fits];
        let n = self.read_fd(fd, &mut data, at)?;
        self.mm.write(buf, &data[..n])?;
        Ok(n as i64)
    }

    fn read_fd(&mut self, fd: i64, data: &mut [u8], at: Option<u64>) -> Result<usize, i64> {
        let file = self.fds.get(fd)?.file.clone();
        let mut f = file.borrow_mut();
        if f.flags & files::O_ACCMODE == files::O_WRONLY {
            return Err(EBADF);
        }
        match &f.kind {
            // Reading fd 1/2 of a terminal reads the terminal.
            FileKind::Stdin | FileKind::Stdout | FileKind::Stderr => {
                if at.is_some() {
                    return Err(ESPIPE);
                }
                if let Some(k) = self.k.clone() {
                    // Wait in the process table, not on the vCPU thread.
                    if !data.is_empty() && !self.stdio.readable(Some((self.pid, k))) {
                        if f.flags & files::O_NONBLOCK != 0 {
                            return Err(EAGAIN);
                        }
                        drop(f);
                        return self.block_on(None).map(|_| 0);
                    }
                }
                self.stdio.read(data)
            }
            FileKind::PipeRead(p) => {
                if at.is_some() {
                    return Err(ESPIPE);
                }
                let nonblock = f.flags & files::O_NONBLOCK != 0;
                let mut p = p.borrow_mut();
                if p.buf.is_empty() {
                    if p.writers == 0 || data.is_empty() {
                        return Ok(0);
                    }
                    // Alone, nobody else can ever fill it while we wait.
                    return match self.k.clone() {
                        Some(k) if !nonblock => {
                            p.wait(self.pid, k);
                            drop(p);
                            drop(f);
                            self.block_on(None).map(|_| 0)
                        }
                        _ => Err(EAGAIN),
                    };
                }
                let n = data.len().min(p.buf.len());
                for b in data.iter_mut().take(n) {
                    *b = p.buf.pop_front().expect("counted");
                }
                let w = p.take_waiters();
                drop(p);
                files::wake_all(w);
                Ok(n)
            }
            FileKind::PipeWrite(_) => Err(EBADF),
            FileKind::Inode(ino) => {
                let ino = *ino;
                if self.is_dir(ino) {
                    return Err(EISDIR);
                }
                let pos = at.unwrap_or(f.pos);
                let n = self.fs.read(ino, pos, data)?;
                if at.is_none() {
                    f.pos += n as u64;
                }
                Ok(n)
            }
        }
    }

    fn sys_sendfile(&mut self, out: i64, inp: i64, off: u64, count: usize) -> R {
        let ofile = self.fds.get(out)?.file.clone();
        let ifile = self.fds.get(inp)?.file.clone();
        // Both ends are checked before anything moves.
        {
            // One at a time: out and in may be the same open file.
            let of = ofile.borrow();
            if of.flags & files::O_ACCMODE == 0 && !matches!(of.kind, FileKind::Stdin) {
                return Err(EBADF);
            }
            drop(of);
            let inf = ifile.borrow();
            if inf.flags & files::O_ACCMODE == files::O_WRONLY {
                return Err(EBADF);
            }
            if matches!(inf.kind, FileKind::Inode(ino) if self.is_dir(ino)) {
                return Err(EINVAL);
            }
        }
        let pos = if off != 0 {
            let p = self.mm.read_u64(off)?;
            if (p as i64) < 0 {
                return Err(EINVAL);
            }
            Some(p)
        } else {
            None
        };
        if count == 0 {
            return Ok(0);
        }
        // Read no more than the output takes now, so nothing read is lost.
        let of = ofile.borrow();
        let limit = match (&of.kind, self.k.clone()) {
            (FileKind::PipeWrite(p), Some(k)) => {
                let mut p = p.borrow_mut();
                let room = files::PIPE_CAPACITY.saturating_sub(p.buf.len());
                if p.readers > 0 && room == 0 {
                    if of.flags & files::O_NONBLOCK != 0 {
                        return Err(EAGAIN);
                    }
                    p.wait(self.pid, k);
                    drop(p);
                    drop(of);
                    return self.block_on(None);
                }
                room.max(1)
            }
            _ => 1 << 20,
        };
        drop(of);
        let mut data = vec![0u8; count.min(limit).min(1 << 20)];
        let n = self.read_fd(inp, &mut data, pos)?;
        if n == 0 {
            return Ok(0);
        }
        // A pipe written by another vproc meanwhile may take less: what it
        // does not take goes back where it came from.
        let w = match self.write_fd_as(out, &data[..n], true) {
            Ok(w) => w as usize,
            Err(EAGAIN) if ofile.borrow().flags & files::O_NONBLOCK == 0 => {
                // Not even part of it fits now: undo the read, then wait.
                self.unread(&ifile, pos, &data[..n]);
                let Some(k) = self.k.clone() else {
                    return Err(EAGAIN);
                };
                if let FileKind::PipeWrite(p) = &ofile.borrow().kind {
                    p.borrow_mut().wait(self.pid, k);
                }
                return self.block_on(None);
            }
            Err(e) => {
                self.unread(&ifile, pos, &data[..n]);
                return Err(e);
            }
        };
        if w < n {
            self.unread(&ifile, pos, &data[w..n]);
        }
        if let Some(p) = pos {
            self.mm.write_u64(off, p + w as u64)?;
        }
        Ok(w as i64)
    }

    /// Give back bytes read from `file` that could not be written on
    /// (sendfile): the offset goes back, or a pipe gets them back in front.
    fn unread(&mut self, file: &Shared<OpenFile>, pos: Option<u64>, back: &[u8]) {
        let mut f = file.borrow_mut();
        match &f.kind {
            FileKind::PipeRead(p) => {
                let mut p = p.borrow_mut();
                for &b in back.iter().rev() {
                    p.buf.push_front(b);
                }
            }
            FileKind::Inode(_) if pos.is_none() => {
                f.pos = f.pos.saturating_sub(back.len() as u64);
            }
            _ => {}
        }
    }

    fn iovecs(&mut self, iov: u64, cnt: u64) -> Result<Vec<(u64, usize)>, i64> {
        if cnt > 1024 {
            return Err(EINVAL);
        }
        let raw = self.mm.read_vec(iov, 16 * cnt as usize)?;
        Ok(raw
            .chunks(16)
            .map(|c| {
                (
                    u64::from_le_bytes(c[..8].try_into().expect("8")),
                    u64::from_le_bytes(c[8..].try_into().expect("8")) as usize,
                )
            })
            .collect())
    }

    fn sys_writev(&mut self, fd: i64, iov: u64, cnt: u64) -> R {
        let v = self.iovecs(iov, cnt)?;
        if v.iter().any(|&(b, l)| !Self::user_range_ok(b, l)) {
            return Err(EFAULT);
        }
        let mut all = Vec::new();
        let mut want = 0usize;
        for (b, l) in v {
            let l = l.min((1 << 24) - all.len().min(1 << 24));
            want += l;
            let mut seg = vec![0u8; l];
            let n = self.mm.read_partial(b, &mut seg);
            all.extend_from_slice(&seg[..n]);
            if n < l {
                // Stop at the first byte that cannot be read.
                break;
            }
        }
        if all.is_empty() && want > 0 {
            return Err(EFAULT);
        }
        self.write_fd(fd, &all)
    }

    fn sys_readv(&mut self, fd: i64, iov: u64, cnt: u64) -> R {
        let v = self.iovecs(iov, cnt)?;
        if v.iter().any(|&(b, l)| !Self::user_range_ok(b, l)) {
            return Err(EFAULT);
        }
        // Read only what fits up to the first byte that cannot be written.
        let mut total = 0usize;
        let mut want = 0usize;
        for &(b, l) in &v {
            let l = l.min((1 << 24) - total);
            want += l;
            let fits = self.mm.accessible_len(b, l, true);
            total += fits;
            if fits < l {
                break;
            }
        }
        if total == 0 && want > 0 {
            return Err(EFAULT);
        }
        let mut data = vec![0u8; total];
        let n = self.read_fd(fd, &mut data, None)?;
        let mut off = 0;
        for (b, l) in v {
            if off >= n {
                break;
            }
            let k = l.min(n - off);
            self.mm.write(b, &data[off..off + k])?;
            off += k;
        }
        Ok(n as i64)
    }

    fn sys_openat(&mut self, dirfd: i64, path: u64, flags: u32) -> R {
        let p = self.user_path(path)?;
        let acc = flags & files::O_ACCMODE;
        let stdio = match &p[..] {
            b"/dev/stdin" => Some(0),
            b"/dev/stdout" => Some(1),
            b"/dev/stderr" | b"/dev/tty" => Some(if &p[..] == b"/dev/tty" { 1 } else { 2 }),
            _ => None,
        };
        if let Some(n) = stdio {
            if &p[..] == b"/dev/tty" && self.stdio.host_fd(0).is_none() {
                return Err(ENXIO);
            }
            let fd = self.fds.get(n)?.clone();
            return Ok(self.fds.install(
                Fd {
                    file: fd.file,
                    cloexec: flags & files::O_CLOEXEC != 0,
                },
                0,
            )?);
        }
        let base = self.at_dir(dirfd)?;
        let follow = flags & files::O_NOFOLLOW == 0;
        let ino = match self.fs.resolve(base, &p, follow) {
            Ok(ino) => ino,
            Err(fs::errno::ENOENT) if flags & files::O_CREAT != 0 => return Err(EROFS),
            Err(e) => return Err(e),
        };
        let node = self.fs.inode(ino);
        let is_dir = matches!(node.kind, Kind::Dir(_));
        if flags & files::O_DIRECTORY != 0 && !is_dir {
            return Err(ENOTDIR);
        }
        if matches!(node.kind, Kind::Symlink(_)) && flags & files::O_PATH == 0 {
            return Err(40);
        }
        let dev = matches!(node.kind, Kind::CharDev(_));
        if !dev && (acc != 0 || flags & files::O_TRUNC != 0) {
            return Err(if is_dir { EISDIR } else { EROFS });
        }
        if flags & files::O_CREAT != 0 && flags & 0o200 != 0 {
            return Err(EEXIST);
        }
        let file = OpenFile::new(FileKind::Inode(ino), flags & !files::O_CLOEXEC, &p);
        Ok(self.fds.install(
            Fd {
                file,
                cloexec: flags & files::O_CLOEXEC != 0,
            },
            0,
        )?)
    }

    fn stat_fd(&self, fd: i64) -> Result<Stat, i64> {
        let file = self.fds.get(fd)?.file.clone();
        let f = file.borrow();
        match &f.kind {
            FileKind::Inode(ino) => Ok(self.stat_ino(*ino)),
            FileKind::PipeRead(_) | FileKind::PipeWrite(_) => Ok(Stat {
                dev: 12,
                ino: 1000 + fd as u64,
                mode: 0o010600,
                nlink: 1,
                uid: 0,
                gid: 0,
                rdev: 0,
                size: 0,
                mtime: 0,
            }),
            k => {
                let n = match k {
                    FileKind::Stdin => 0,
                    FileKind::Stdout => 1,
                    _ => 2,
                };
                let mut st = Stat {
                    dev: 12,
                    ino: 900 + n as u64,
                    mode: 0o010600,
                    nlink: 1,
                    uid: 0,
                    gid: 0,
                    rdev: 0,
                    size: 0,
                    mtime: 0,
                };
                if let Some(h) = self.stdio.host_fd(n) {
                    // SAFETY: an all-zero stat is a valid value for the call
                    // to fill; `h` is one of this process's fds 0-2.
                    let mut s: libc::stat = unsafe { std::mem::zeroed() };
                    // SAFETY: `s` is a valid, writable struct stat.
                    if unsafe { libc::fstat(h, &mut s) } == 0 {
                        st.mode = s.st_mode;
                        st.rdev = s.st_rdev;
                        st.size = if s.st_mode & libc::S_IFMT == libc::S_IFREG {
                            s.st_size as u64
                        } else {
                            0
                        };
                    }
                }
                Ok(st)
            }
        }
    }

    fn stat_ino(&self, ino: u64) -> Stat {
        let n = self.fs.inode(ino);
        let rdev = match n.kind {
            Kind::CharDev(d) => d as u64,
            _ => 0,
        };
        Stat {
            dev: 0x801,
            ino,
            mode: n.mode,
            nlink: if n.mode & S_IFDIR == S_IFDIR { 2 } else { 1 },
            uid: n.uid,
            gid: n.gid,
            rdev,
            size: n.size,
            mtime: n.mtime,
        }
    }

    fn stat_path(&mut self, dirfd: i64, path: u64, flags: u64) -> Result<Stat, i64> {
        let p = if path == 0 {
            Vec::new()
        } else {
            self.user_path(path)?
        };
        if p.is_empty() {
            if flags & AT_EMPTY_PATH != 0 {
                if dirfd == AT_FDCWD {
                    return Ok(self.stat_ino(self.cwd));
                }
                return self.stat_fd(dirfd);
            }
            return Err(ENOENT);
        }
        let base = self.at_dir(dirfd)?;
        let ino = self
            .fs
            .resolve(base, &p, flags & AT_SYMLINK_NOFOLLOW == 0)?;
        Ok(self.stat_ino(ino))
    }

    fn sys_fstatat(&mut self, dirfd: i64, path: u64, buf: u64, flags: u64) -> R {
        let st = self.stat_path(dirfd, path, flags)?;
        self.mm.write(buf, &st.to_stat())?;
        Ok(0)
    }

    fn sys_statx(&mut self, dirfd: i64, path: u64, flags: u64, buf: u64) -> R {
        let st = self.stat_path(dirfd, path, flags)?;
        self.mm.write(buf, &st.to_statx())?;
        Ok(0)
    }

    fn sys_lseek(&mut self, fd: i64, off: i64, whence: u32) -> R {
        let file = self.fds.get(fd)?.file.clone();
        let mut f = file.borrow_mut();
        let FileKind::Inode(ino) = f.kind else {
            return Err(ESPIPE);
        };
        let size = self.fs.inode(ino).size as i64;
        let new = match whence {
            0 => off,
            1 => (f.pos as i64).checked_add(off).ok_or(EINVAL)?,
            2 => size.checked_add(off).ok_or(EINVAL)?,
            _ => return Err(EINVAL),
        };
        if new < 0 {
            return Err(EINVAL);
        }
        f.pos = new as u64;
        Ok(new)
    }

    fn sys_getdents64(&mut self, fd: i64, buf: u64, len: usize) -> R {
        let file = self.fds.get(fd)?.file.clone();
        let mut f = file.borrow_mut();
        let FileKind::Inode(ino) = f.kind else {
            return Err(ENOTDIR);
        };
        if !self.is_dir(ino) {
            return Err(ENOTDIR);
        }
        let entries = self.fs.entries(ino);
        let mut out = Vec::new();
        let mut pos = f.pos as usize;
        while pos < entries.len() {
            let (name, child) = &entries[pos];
            let reclen = (19 + name.len() + 1).div_ceil(8) * 8;
            if out.len() + reclen > len.min(1 << 20) {
                break;
            }
            let dtype = match self.fs.inode(*child).mode & 0o170000 {
                0o040000 => 4u8,
                0o120000 => 10,
                0o020000 => 2,
                _ => 8,
            };
            let start = out.len();
            out.extend_from_slice(&child.to_le_bytes());
            out.extend_from_slice(&((pos + 1) as u64).to_le_bytes());
            out.extend_from_slice(&(reclen as u16).to_le_bytes());
            out.push(dtype);
            out.extend_from_slice(name);
            out.resize(start + reclen, 0);
            pos += 1;
        }
        if out.is_empty() && pos < entries.len() {
            return Err(EINVAL);
        }
        self.mm.write(buf, &out)?;
        f.pos = pos as u64;
        Ok(out.len() as i64)
    }

    fn sys_getcwd(&mut self, buf: u64, size: usize) -> R {
        let mut p = self.fs.path_of(self.cwd);
        p.push(0);
        if p.len() > size {
            return Err(ERANGE);
        }
        self.mm.write(buf, &p)?;
        Ok(p.len() as i64)
    }

    fn sys_chdir(&mut self, path: u64) -> R {
        let p = self.user_path(path)?;
        let ino = self.fs.resolve(self.cwd, &p, true)?;
        if !self.is_dir(ino) {
            return Err(ENOTDIR);
        }
        self.cwd = ino;
        Ok(0)
    }

    fn sys_readlinkat(&mut self, dirfd: i64, path: u64, buf: u64, size: usize) -> R {
        let p = self.user_path(path)?;
        let target = if p == b"/proc/self/exe" {
            self.exe.clone()
        } else {
            let base = self.at_dir(dirfd)?;
            let ino = self.fs.resolve(base, &p, false)?;
            match &self.fs.inode(ino).kind {
                Kind::Symlink(t) => t.clone(),
                _ => return Err(EINVAL),
            }
        };
        let n = target.len().min(size);
        self.mm.write(buf, &target[..n])?;
        Ok(n as i64)
    }

    fn sys_faccessat(&mut self, dirfd: i64, path: u64, mode: u32) -> R {
        self.sys_faccessat_at(dirfd, path, mode)
    }

    fn sys_faccessat_at(&mut self, dirfd: i64, path: u64, mode: u32) -> R {
        let p = self.user_path(path)?;
        let base = self.at_dir(dirfd)?;
        let ino = self.fs.resolve(base, &p, true)?;
        let n = self.fs.inode(ino);
        if mode & 2 != 0 && !matches!(n.kind, Kind::CharDev(_)) {
            return Err(EROFS);
        }
        if mode & 1 != 0 && n.mode & 0o111 == 0 {
            return Err(EACCES);
        }
        Ok(0)
    }

    fn sys_dup(&mut self, fd: i64, min: usize, cloexec: bool) -> R {
        let f = self.fds.get(fd)?.file.clone();
        Ok(self.fds.install(Fd { file: f, cloexec }, min)?)
    }

    fn sys_dup3(&mut self, old: i64, new: i64, flags: u32, dup2: bool) -> R {
        let f = self.fds.get(old)?.file.clone();
        if old == new {
            return if dup2 { Ok(new) } else { Err(EINVAL) };
        }
        Ok(self.fds.install_at(
            Fd {
                file: f,
                cloexec: flags & files::O_CLOEXEC != 0,
            },
            new,
        )?)
    }

    fn sys_pipe2(&mut self, fds: u64, flags: u32) -> R {
        let p = Shared::new(Pipe::default());
        let cloexec = flags & files::O_CLOEXEC != 0;
        let st = flags & files::O_NONBLOCK;
        let r = self.fds.install(
            Fd {
                file: OpenFile::new(FileKind::PipeRead(p.clone()), st, b"pipe:"),
                cloexec,
            },
            0,
        )?;
        let w = match self.fds.install(
            Fd {
                file: OpenFile::new(FileKind::PipeWrite(p), st | files::O_WRONLY, b"pipe:"),
                cloexec,
            },
            0,
        ) {
            Ok(w) => w,
            Err(e) => {
                let _ = self.fds.close(r);
                return Err(e.into());
            }
        };
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&(r as i32).to_le_bytes());
        b[4..].copy_from_slice(&(w as i32).to_le_bytes());
        if let Err(e) = self.mm.write(fds, &b) {
            let _ = self.fds.close(r);
            let _ = self.fds.close(w);
            return Err(e.into());
        }
        Ok(0)
    }

    fn sys_fcntl(&mut self, fd: i64, cmd: u32, arg: u64) -> R {
        match cmd {
            0 => self.sys_dup(fd, arg as usize, false),
            1030 => self.sys_dup(fd, arg as usize, true),
            1 => Ok(self.fds.get(fd)?.cloexec as i64),
            2 => {
                self.fds.get_mut(fd)?.cloexec = arg & 1 != 0;
                Ok(0)
            }
            3 => Ok(self.fds.get(fd)?.file.borrow().flags as i64),
            4 => {
                let f = self.fds.get(fd)?.file.clone();
                let mut f = f.borrow_mut();
                let keep = f.flags & files::O_ACCMODE;
                f.flags = keep | (arg as u32 & (files::O_APPEND | files::O_NONBLOCK));
                Ok(0)
            }
            5..=7 | 36..=38 => {
                self.fds.get(fd)?;
                Ok(0)
            }
            _ => Err(EINVAL),
        }
    }

    fn sys_ioctl(&mut self, fd: i64, req: u32, arg: u64) -> R {
        let file = self.fds.get(fd)?.file.clone();
        let n = match file.borrow().kind {
            FileKind::Stdin => 0,
            FileKind::Stdout => 1,
            FileKind::Stderr => 2,
            FileKind::PipeRead(ref p) if req == 0x541B => {
                let len = p.borrow().buf.len() as u32;
                self.mm.write(arg, &len.to_le_bytes())?;
                return Ok(0);
            }
            _ => return Err(ENOTTY),
        };
        let Some(h) = self.stdio.host_fd(n) else {
            return Err(ENOTTY);
        };
        // SAFETY: isatty only inspects the fd.
        if unsafe { libc::isatty(h) } != 1 {
            return Err(ENOTTY);
        }
        let size = match req {
            0x5401..=0x5404 => 36, // TCGETS, TCSETS, TCSETSW, TCSETSF
            0x5413 | 0x5414 => 8,  // TIOCGWINSZ, TIOCSWINSZ
            0x540F => {
                // TIOCGPGRP: the vproc's own group owns the terminal.
                self.mm.write(arg, &self.pid.to_le_bytes())?;
                return Ok(0);
            }
            0x5410 => return Ok(0), // TIOCSPGRP
            0x541B => 4,            // FIONREAD
            _ => return Err(ENOTTY),
        };
        let get = matches!(req, 0x5401 | 0x5413 | 0x541B);
        let mut buf = [0u8; 64];
        if !get {
            self.mm.read(arg, &mut buf[..size])?;
        }
        // SAFETY: the request is one of the terminal ioctls above, whose
        // argument is a buffer of at most `size` (<= 64) bytes; `buf` is 64
        // bytes and lives across the call.
        let r = unsafe { libc::ioctl(h, req as libc::c_ulong, buf.as_mut_ptr()) };
        if r < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(25) as i64);
        }
        if get {
            self.mm.write(arg, &buf[..size])?;
        }
        Ok(0)
    }

    fn sys_mmap(&mut self, a: [u64; 6]) -> R {
        let (addr, len, prot, flags, fd, off) = (
            a[0],
            a[1],
            a[2] as u32,
            a[3] as u32,
            a[4] as i32 as i64,
            a[5],
        );
        const MAP_TYPE: u32 = 0xf;
        const MAP_FIXED: u32 = 0x10;
        const MAP_ANON: u32 = 0x20;
        const MAP_FIXED_NOREPLACE: u32 = 0x10_0000;
        // Linux's order: offset, fd, length, address, then the map type.
        if !off.is_multiple_of(4096) {
            return Err(EINVAL);
        }
        let file = if flags & MAP_ANON == 0 {
            Some(self.fds.get(fd)?.file.clone())
        } else {
            None
        };
        if len == 0 {
            return Err(EINVAL);
        }
        let pages = len.div_ceil(4096);
        if (off / 4096).checked_add(pages).is_none() {
            return Err(75); // EOVERFLOW
        }
        if !matches!(flags & MAP_TYPE, 1..=3) {
            // Checked after the length and a fixed address, as Linux does.
            let alen = pages.wrapping_mul(4096);
            let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
            if alen == 0 || alen > super::mm::USER_END {
                return Err(ENOMEM);
            }
            if fixed && addr > super::mm::USER_END - alen {
                return Err(ENOMEM);
            }
            return Err(EINVAL);
        }
        let fixed = flags & MAP_FIXED != 0;
        let noreplace = flags & MAP_FIXED_NOREPLACE != 0;
        let data = if let Some(file) = file {
            let f = file.borrow();
            let FileKind::Inode(ino) = f.kind else {
                return Err(19); // ENODEV
            };
            match self.fs.inode(ino).kind {
                Kind::File { .. } => {}
                Kind::CharDev(_) => return Err(19),
                _ => return Err(EACCES),
            }
            let size = self.fs.inode(ino).size;
            let n = len.min(size.saturating_sub(off)).min(1 << 30) as usize;
            let mut d = vec![0u8; n];
            self.fs.read(ino, off, &mut d)?;
            Some(d)
        } else {
            None
        };
        let r = self
            .mm
            .mmap(addr, len, prot, fixed, noreplace, data.as_deref())
            .map_err(|e| e.errno())?;
        Ok(r as i64)
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
            let b = self.mm.read_vec(act, 32)?;
            let w = |i: usize| u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().expect("8"));
            self.sig.actions[sig as usize] = SigAction {
                handler: w(0),
                flags: w(1),
                restorer: w(2),
                mask: w(3),
            };
        }
        if old != 0 {
            let mut b = [0u8; 32];
            for (i, v) in [cur.handler, cur.flags, cur.restorer, cur.mask]
                .iter()
                .enumerate()
            {
                b[8 * i..8 * i + 8].copy_from_slice(&v.to_le_bytes());
            }
            self.mm.write(old, &b)?;
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
                    return Err(12);
                }
                self.sig.altstack = (nsp, 0, nsz);
            }
        }
        Ok(0)
    }

    fn sys_kill(&mut self, pid: i32, sig: i32) -> R {
        if self.k.is_some() {
            return self.sys_kill_k(pid, sig);
        }
        if pid != self.pid && pid != 0 && pid != -1 {
            return Err(ESRCH);
        }
        if !(0..=64).contains(&sig) {
            return Err(EINVAL);
        }
        if sig != 0 {
            self.queue_signal(SigInfo {
                signo: sig,
                code: 0,
                pid: self.pid,
                ..Default::default()
            });
        }
        Ok(0)
    }

    fn sys_uname(&mut self, buf: u64) -> R {
        let mut b = [0u8; 390];
        for (i, s) in [
            &b"Linux"[..],
            b"vkernel",
            b"6.1.0-vkernel",
            b"#1 SMP vkernel",
            b"x86_64",
            b"(none)",
        ]
        .iter()
        .enumerate()
        {
            b[65 * i..65 * i + s.len()].copy_from_slice(s);
        }
        self.mm.write(buf, &b)?;
        Ok(0)
    }

    fn sys_prlimit(&mut self, pid: i32, res: u32, new: u64, old: u64) -> R {
        if pid != 0 && pid != self.pid && self.k.is_none() {
            return Err(ESRCH);
        }
        let _ = new;
        let inf = u64::MAX;
        let (cur, max) = match res {
            3 => (super::mm::STACK_SIZE, inf),
            7 => (files::MAX_FDS as u64, files::MAX_FDS as u64),
            0..=15 => (inf, inf),
            _ => return Err(EINVAL),
        };
        if old != 0 {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&cur.to_le_bytes());
            b[8..].copy_from_slice(&max.to_le_bytes());
            self.mm.write(old, &b)?;
        }
        Ok(0)
    }

    fn sys_sysinfo(&mut self, buf: u64) -> R {
        let mut b = [0u8; 112];
        let up = self.started.elapsed().as_secs();
        b[..8].copy_from_slice(&up.to_le_bytes());
        let total = self.mm.ram().size();
        let free = self.mm.free_frames() * 4096;
        b[32..40].copy_from_slice(&total.to_le_bytes());
        b[40..48].copy_from_slice(&free.to_le_bytes());
        b[80..82].copy_from_slice(&1u16.to_le_bytes());
        b[104..108].copy_from_slice(&1u32.to_le_bytes());
        self.mm.write(buf, &b)?;
        Ok(0)
    }

    fn sys_arch_prctl(&mut self, code: u64, addr: u64) -> R {
        match code {
            0x1002 => {
                if !super::canonical(addr) {
                    return Err(EPERM);
                }
                self.frame.fs_base = addr;
                Ok(0)
            }
            0x1001 => {
                if !super::canonical(addr) {
                    return Err(EPERM);
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

    /// Report whether the inode is a character device (for tests).
    pub fn is_chardev(&self, ino: u64) -> bool {
        self.fs.inode(ino).mode & 0o170000 == S_IFCHR
    }
}
