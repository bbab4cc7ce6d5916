//! The exitless server's handlers (see [`crate::kernel::fast`] for the
//! server and its rules): the id calls, `clock_gettime`, `gettimeofday`,
//! `uname` and `getrandom` here; [`signal`] `rt_sigprocmask`,
//! `rt_sigaction` and kill/tkill/tgkill of another process; [`io`] the read/write
//! family, `lseek`, `fstat`, `newfstatat`, `getdents64`, `getcwd` and
//! `open`/`openat` for reading, `readlink`/`readlinkat` (links of the
//! tree, `/proc/self/exe`); [`fd`] `close`, `dup`, `dup2`, `dup3`,
//! fcntl's fd and status-flag commands and ioctl's ENOTTY for files of
//! the tree; [`lock`] flock and fcntl's lock commands that complete at
//! once; [`sock`] `sendto` and `recvfrom` on stream sockets; [`poll`]
//! `epoll_wait` with ready items; [`mem`] `brk` growth, private `mmap`
//! (anonymous or of a file), and `munmap`, `mprotect` and MAP_FIXED over
//! ranges with no hardware entry; `set_tid_address`, `set_robust_list`, `rseq` (ENOSYS) and
//! reading the process's own limits (`prlimit64`, `getrlimit`) and the
//! thread's name (`prctl` PR_SET_NAME, PR_GET_NAME) here too; [`process`]
//! wait4 that reaps a zombie or finds none with WNOHANG, getrusage, and
//! sched_yield with nothing else to run.
//! A handler answers only what it is sure of and returns `None` for
//! everything else, which then takes the exit path.

mod fd;
mod io;
mod lock;
mod mem;
mod poll;
mod process;
mod signal;
mod sock;

use crate::kernel::fast::{write_user, FastCtx, FastHandler};
use crate::kernel::Kernel;
use crate::syscalls::events::{clock_now, encode_timespec, encode_timeval};

/// The calls the exitless server answers, with their fast handlers: the
/// syscall table takes them from here.
pub(crate) const FAST_CALLS: &[(i64, FastHandler)] = &[
    (libc::SYS_getpid, |_, c, _, _| Some(c.tgid as u64)),
    (libc::SYS_gettid, |_, c, _, _| Some(c.pid as u64)),
    (libc::SYS_getppid, |k, c, _, _| {
        let ppid = k.parent_of(c.tgid).unwrap_or(crate::PPID);
        Some(ppid as u64)
    }),
    (libc::SYS_getuid, own_id),
    (libc::SYS_getgid, own_id),
    (libc::SYS_geteuid, own_id),
    (libc::SYS_getegid, own_id),
    (libc::SYS_clock_gettime, |_, c, _, a| {
        let clock = crate::syscalls::int32(a[0]);
        // CPU-time clocks are the vproc's, which the exit path reads from
        // the scheduler (this thread is the server's).
        if clock == 2 || clock == 3 || clock < 0 {
            return None;
        }
        let b = encode_timespec(clock_now(clock));
        write_user(c, a[1], &b).then_some(0)
    }),
    (libc::SYS_gettimeofday, |_, c, _, a| {
        let tv = encode_timeval(clock_now(libc::CLOCK_REALTIME));
        let ok = (a[0] == 0 || write_user(c, a[0], &tv))
            && (a[1] == 0 || write_user(c, a[1], &[0u8; 8]));
        ok.then_some(0)
    }),
    (libc::SYS_uname, |k, c, _, a| {
        write_user(c, a[0], &crate::syscalls::uname_bytes(k)).then_some(0)
    }),
    (libc::SYS_getrandom, |_, c, _, a| {
        // As the exit path: up to 1 MiB, the flags do not matter.
        let mut b = vec![0u8; usize::try_from(a[1]).unwrap_or(usize::MAX).min(1 << 20)];
        crate::random_bytes(&mut b);
        write_user(c, a[0], &b).then_some(b.len() as u64)
    }),
    (libc::SYS_rt_sigprocmask, |k, c, _, a| {
        signal::sigprocmask(k, c, a[0], a[1], a[2])
    }),
    (libc::SYS_rt_sigaction, |_, c, _, a| {
        signal::sigaction(c, a[0], a[1], a[2])
    }),
    (libc::SYS_kill, |k, c, _, a| signal::kill(k, c, a[0], a[1])),
    (libc::SYS_tkill, |k, c, _, a| {
        signal::tgkill(k, c, -1, a[0], a[1])
    }),
    (libc::SYS_tgkill, |k, c, _, a| {
        signal::tgkill(k, c, crate::syscalls::int32(a[0]), a[1], a[2])
    }),
    (libc::SYS_read, file_io),
    (libc::SYS_write, file_io),
    (libc::SYS_readv, file_io),
    (libc::SYS_writev, file_io),
    (libc::SYS_pread64, file_io),
    (libc::SYS_pwrite64, file_io),
    (libc::SYS_lseek, file_io),
    (libc::SYS_fstat, file_io),
    (libc::SYS_newfstatat, file_io),
    (libc::SYS_stat, file_io),
    (libc::SYS_lstat, file_io),
    (libc::SYS_getcwd, file_io),
    (libc::SYS_getdents64, file_io),
    (libc::SYS_readlink, file_io),
    (libc::SYS_readlinkat, file_io),
    (libc::SYS_access, file_io),
    (libc::SYS_faccessat, file_io),
    (libc::SYS_faccessat2, file_io),
    (libc::SYS_open, fd_table),
    (libc::SYS_openat, fd_table),
    (libc::SYS_close, fd_table),
    (libc::SYS_dup, fd_table),
    (libc::SYS_dup2, fd_table),
    (libc::SYS_dup3, fd_table),
    (libc::SYS_fcntl, fd_table),
    (libc::SYS_ioctl, fd_table),
    (libc::SYS_flock, fd_table),
    (libc::SYS_epoll_wait, |_, c, nr, a| poll::serve(c, nr, a)),
    (libc::SYS_epoll_pwait, |_, c, nr, a| poll::serve(c, nr, a)),
    (libc::SYS_epoll_pwait2, |_, c, nr, a| poll::serve(c, nr, a)),
    (libc::SYS_sendto, |_, c, _, a| sock::serve(c, a, true)),
    (libc::SYS_recvfrom, |_, c, _, a| sock::serve(c, a, false)),
    (libc::SYS_brk, memory),
    (libc::SYS_mmap, memory),
    (libc::SYS_munmap, memory),
    (libc::SYS_mprotect, memory),
    // Once per thread or process, so once per fork+exec: the thread takes
    // the values back when it leaves the guest (`Vproc::take_back`).
    (libc::SYS_set_tid_address, |_, c, _, a| {
        c.clear_child_tid = Some(a[0]);
        Some(c.pid as u64)
    }),
    (libc::SYS_set_robust_list, |_, c, _, a| {
        // A wrong length is the exit path's EINVAL.
        (a[1] == crate::kernel::ROBUST_HEAD_SIZE).then(|| {
            c.robust_list = Some(a[0]);
            0
        })
    }),
    // Reading the process's own limits (glibc's start reads RLIMIT_STACK);
    // setting one, or another process's, is the exit path's.
    (libc::SYS_prlimit64, |_, c, _, a| {
        if a[0] != 0 || a[2] != 0 || a[3] == 0 {
            return None;
        }
        get_limit(c, a[1], a[3])
    }),
    (libc::SYS_getrlimit, |_, c, _, a| get_limit(c, a[0], a[1])),
    (libc::SYS_wait4, |k, c, _, a| process::wait4(k, c, a)),
    (libc::SYS_getrusage, |k, c, _, a| {
        process::getrusage(k, c, a[0], a[1])
    }),
    (libc::SYS_sched_yield, |k, c, _, _| {
        process::sched_yield(k, c)
    }),
    // The thread's name (busybox sets it at every applet's start); every
    // other option is the exit path's.
    (libc::SYS_prctl, |_, c, _, a| thread_name(c, a[0], a[1])),
    // Not provided (glibc goes on without it), as on the exit path.
    (libc::SYS_rseq, |_, _, _, _| {
        Some(answer(Err(crate::abi::errno::ENOSYS)))
    }),
];

/// A call's result as the server answers it: the value, or -errno.
pub(super) fn answer(r: Result<i64, i64>) -> u64 {
    match r {
        Ok(v) => v as u64,
        Err(e) => (-e) as u64,
    }
}

/// PR_SET_NAME and PR_GET_NAME on the context's copy of the name (the
/// exit path's encoding: `syscalls::prctl`); a buffer that cannot be read
/// or written whole is the exit path's (it reads what it can, or says
/// EFAULT).
fn thread_name(c: &mut FastCtx, option: u64, buf: u64) -> Option<u64> {
    use super::prctl::{name_bytes, name_from, COMM_LEN, PR_GET_NAME, PR_SET_NAME};
    match option {
        PR_SET_NAME => {
            let mut b = [0u8; COMM_LEN];
            if !crate::kernel::fast::read_user(c, buf, &mut b) {
                return None;
            }
            c.comm = name_bytes(&name_from(&b));
            c.renamed = true;
            Some(0)
        }
        PR_GET_NAME => write_user(c, buf, &c.comm).then_some(0),
        _ => None,
    }
}

/// Write the process's limit `res` at `old` (struct rlimit); an unknown
/// limit or an unwritable buffer is the exit path's (EINVAL, EFAULT).
fn get_limit(c: &mut FastCtx, res: u64, old: u64) -> Option<u64> {
    let res = u32::try_from(res).ok()?;
    let l = c
        .process
        .try_with_parts(|p| p.fds.limits.get(res))
        .flatten()?;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&l.cur.to_le_bytes());
    b[8..].copy_from_slice(&l.max.to_le_bytes());
    write_user(c, old, &b).then_some(0)
}

/// The id calls: the ids every vproc has ([`crate::kernel::Options::uid`]).
fn own_id(k: &Kernel, _: &mut FastCtx, nr: i64, _: [u64; 6]) -> Option<u64> {
    let o = k.options();
    Some(u64::from(super::proc::id_of_call(nr, o.uid, o.gid)))
}

/// The file calls ([`io::serve`]).
fn file_io(_: &Kernel, c: &mut FastCtx, nr: i64, a: [u64; 6]) -> Option<u64> {
    io::serve(c, nr, a)
}

/// The fd-table calls ([`fd::serve`]).
fn fd_table(_: &Kernel, c: &mut FastCtx, nr: i64, a: [u64; 6]) -> Option<u64> {
    fd::serve(c, nr, a)
}

/// brk, mmap, munmap and mprotect ([`mem::serve`]).
fn memory(k: &Kernel, c: &mut FastCtx, nr: i64, a: [u64; 6]) -> Option<u64> {
    mem::serve(k, c, nr, a)
}
