//! The fd-table calls the exitless server answers: close, dup, dup2,
//! dup3, fcntl's F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_SETFD, F_GETFL
//! and F_SETFL, and ioctl's ENOTTY for files of the tree; fcntl's lock
//! commands and flock go to [`super::lock`]. Each does what the exit path's handler does (`io.rs`,
//! `locking.rs`), in the same order, on the process's fd table under the
//! process lock (`ProcessLock::try_with_parts_mut`): a closed or replaced
//! fd releases the process's POSIX record locks on its file, and the last
//! handle on an open file description goes as it goes on the exit path
//! (pipe ends wake their peers, sockets close). An error (a bad fd, EMFILE,
//! a bad flag) is left to the exit path, which reports it; so is an open
//! file another thread has locked.

use crate::files::{self, Fd, FdTable, Shared};
use crate::kernel::fast::FastCtx;
use crate::syscalls::locking::{is_lock_cmd, key_of};
use crate::syscalls::{int, uint32};

/// `dirfd` meaning the current directory.
const AT_FDCWD: i64 = libc::AT_FDCWD as i64;

/// F_DUPFD_CLOEXEC.
const F_DUPFD_CLOEXEC: u32 = 1030;

/// The fd-table calls, or None (the exit path).
pub(super) fn serve(c: &FastCtx, nr: i64, a: [u64; 6]) -> Option<u64> {
    let fd = int(a[0]);
    let new = int(a[1]);
    c.process
        .try_with_parts_mut(|p| match nr {
            libc::SYS_close => close(c, p.fds, fd),
            libc::SYS_dup => dup(p.fds, fd, 0, false),
            libc::SYS_dup2 if fd == new => p.fds.get(fd).ok().and(u64::try_from(fd).ok()),
            libc::SYS_dup2 => dup3(c, p.fds, fd, new, false),
            libc::SYS_dup3 if fd == new => None,
            libc::SYS_dup3 => match uint32(a[2]) {
                0 => dup3(c, p.fds, fd, new, false),
                files::O_CLOEXEC => dup3(c, p.fds, fd, new, true),
                _ => None,
            },
            libc::SYS_fcntl if is_lock_cmd(uint32(a[1])) => {
                super::lock::fcntl(c, &p, fd, uint32(a[1]), a[2])
            }
            libc::SYS_fcntl => fcntl(p.fds, fd, uint32(a[1]), a[2]),
            libc::SYS_flock => super::lock::flock(c, p.fds, fd, uint32(a[1])),
            libc::SYS_ioctl => not_a_tty(p.fds, fd, uint32(a[1])),
            libc::SYS_openat => super::io::openat(c, p, fd, a[1], uint32(a[2])),
            libc::SYS_open => super::io::openat(c, p, AT_FDCWD, a[0], uint32(a[1])),
            _ => None,
        })
        .flatten()
}

/// The process closed an fd of `file`: its POSIX record locks on the file
/// go (`Vproc::locks_fd_closed`). None when the file is locked by another
/// thread (the caller then changes nothing).
fn key_for_close(file: &Shared<files::OpenFile>) -> Option<crate::fs::lock::LockKey> {
    let f = file.try_borrow()?;
    Some(key_of(&f))
}

/// close(fd). The last handle on its description goes here, under the
/// process lock, as on the exit path (its waiters are woken from this
/// thread).
fn close(c: &FastCtx, fds: &mut FdTable, fd: i64) -> Option<u64> {
    let key = key_for_close(&fds.get(fd).ok()?.file)?;
    fds.close(fd).ok()?;
    c.fs.locks().close_posix(key, c.tgid);
    Some(0)
}

/// dup(fd) and F_DUPFD: the lowest free fd at or above `min`.
fn dup(fds: &mut FdTable, fd: i64, min: usize, cloexec: bool) -> Option<u64> {
    let file = fds.get(fd).ok()?.file.clone();
    let n = fds.install(Fd { file, cloexec }, min).ok()?;
    u64::try_from(n).ok()
}

/// dup2/dup3 with `old != new`: `new` names `old`'s file, a file it named
/// before is closed (its POSIX locks go).
fn dup3(c: &FastCtx, fds: &mut FdTable, old: i64, new: i64, cloexec: bool) -> Option<u64> {
    let file = fds.get(old).ok()?.file.clone();
    if usize::try_from(new).map_or(true, |n| n >= fds.limits.nofile()) {
        return None;
    }
    let key = match fds.get(new) {
        Ok(r) => Some(key_for_close(&r.file)?),
        Err(_) => None,
    };
    let n = fds.install_at(Fd { file, cloexec }, new).ok()?;
    if let Some(k) = key {
        c.fs.locks().close_posix(k, c.tgid);
    }
    u64::try_from(n).ok()
}

/// ioctl on a file, directory or device of the tree: no request but the
/// ones every file takes (FIOCLEX, FIONCLEX, FIONBIO: the exit path's)
/// applies, so ENOTTY (programs ask TCGETS of every file they open to
/// learn whether it is a terminal).
fn not_a_tty(fds: &FdTable, fd: i64, req: u32) -> Option<u64> {
    if matches!(req, 0x5450 | 0x5451 | 0x5421) {
        return None;
    }
    let file = fds.get(fd).ok()?.file.clone();
    let f = file.try_borrow()?;
    matches!(f.kind, files::FileKind::Inode(_))
        .then_some(super::answer(Err(crate::abi::errno::ENOTTY)))
}

/// fcntl's fd-table and status-flag commands (the others: exit path).
fn fcntl(fds: &mut FdTable, fd: i64, cmd: u32, arg: u64) -> Option<u64> {
    match cmd {
        0 | F_DUPFD_CLOEXEC => {
            fds.get(fd).ok()?;
            let min = usize::try_from(arg).ok()?;
            if min >= fds.limits.nofile() {
                return None;
            }
            dup(fds, fd, min, cmd == F_DUPFD_CLOEXEC)
        }
        1 => Some(u64::from(fds.get(fd).ok()?.cloexec)),
        2 => {
            fds.get_mut(fd).ok()?.cloexec = arg & 1 != 0;
            Some(0)
        }
        3 => Some(u64::from(fds.get(fd).ok()?.file.try_borrow()?.flags)),
        4 => {
            let file = fds.get(fd).ok()?.file.clone();
            let mut f = file.try_borrow()?;
            if f.flags & files::O_PATH != 0 {
                return None;
            }
            // Only O_APPEND and O_NONBLOCK change, as on the exit path.
            let set = files::O_APPEND | files::O_NONBLOCK;
            f.flags = (f.flags & !set) | (uint32(arg) & set);
            Some(0)
        }
        _ => None,
    }
}
