//! The file-lock calls: fcntl's F_GETLK/F_SETLK/F_SETLKW and their OFD
//! forms, and flock(2), over the virtual kernel's lock table
//! ([`crate::fs::lock`]). Also the POSIX rule that a process's
//! record locks on a file go when it closes any fd of that file.

use super::errno::*;
use super::R;
use crate::files::{self, FileKind, MemFile, OpenFile, Shared};
use crate::fs::lock::{
    flock_range, FileLockId, LockError, LockKey, LockType, Locks, Owner, Request, Waiter,
};
use crate::fs::Fs;
use crate::Vproc;

/// fcntl commands.
const F_GETLK: u32 = 5;
const F_SETLK: u32 = 6;
const F_SETLKW: u32 = 7;
const F_OFD_GETLK: u32 = 36;
const F_OFD_SETLK: u32 = 37;
const F_OFD_SETLKW: u32 = 38;

/// l_type values.
const F_RDLCK: i16 = 0;
const F_WRLCK: i16 = 1;
const F_UNLCK: i16 = 2;

/// flock(2) operations.
const LOCK_SH: u32 = 1;
const LOCK_EX: u32 = 2;
const LOCK_NB: u32 = 4;
const LOCK_UN: u32 = 8;
/// The old mandatory-lock bit: Linux ignores such requests (returns 0).
const LOCK_MAND: u32 = 32;

/// Size of the x86-64 `struct flock`.
pub(crate) const FLOCK_SIZE: usize = 32;

/// The x86-64 `struct flock`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flock {
    ty: i16,
    whence: i16,
    start: i64,
    len: i64,
    pid: i32,
}

impl Flock {
    /// The fields of the caller's bytes.
    pub(crate) fn decode(b: &[u8; FLOCK_SIZE]) -> Flock {
        let i64_at = |o: usize| i64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        Flock {
            ty: i16::from_le_bytes([b[0], b[1]]),
            whence: i16::from_le_bytes([b[2], b[3]]),
            start: i64_at(8),
            len: i64_at(16),
            pid: i32::from_le_bytes(b[24..28].try_into().expect("4 bytes")),
        }
    }

    /// Write the fields back over `b` (padding as the vproc left it).
    pub(crate) fn encode(&self, b: &mut [u8; FLOCK_SIZE]) {
        b[0..2].copy_from_slice(&self.ty.to_le_bytes());
        b[2..4].copy_from_slice(&self.whence.to_le_bytes());
        b[8..16].copy_from_slice(&self.start.to_le_bytes());
        b[16..24].copy_from_slice(&self.len.to_le_bytes());
        b[24..28].copy_from_slice(&self.pid.to_le_bytes());
    }
}

/// The lock-table key of an open file.
pub(super) fn key_of(f: &OpenFile) -> LockKey {
    match &f.kind {
        FileKind::Inode(h) | FileKind::ProcMem(MemFile { node: h, .. }) => LockKey::Node(*h),
        FileKind::PipeRead(p) | FileKind::PipeWrite(p) => LockKey::Pipe(p.id()),
        // Objects without a node: keyed by the object while it lives.
        FileKind::EventFd(e) => LockKey::Pipe(e.id()),
        FileKind::Epoll(e) => LockKey::Pipe(e.id()),
        FileKind::TimerFd(t) => LockKey::Pipe(t.id()),
        FileKind::SignalFd(t) => LockKey::Pipe(t.id()),
        FileKind::PidFd(t) => LockKey::Pipe(t.id()),
        FileKind::Inotify(t) => LockKey::Pipe(t.id()),
        FileKind::Pty(e) => LockKey::Pipe(e.pty.id()),
        FileKind::MsgQueue(q) => LockKey::Pipe(q.id()),
        FileKind::Socket(s) => LockKey::Pipe(s as *const _ as usize),
        FileKind::Stdin => LockKey::Console(0),
        FileKind::Stdout => LockKey::Console(1),
        FileKind::Stderr => LockKey::Console(2),
    }
}

fn errno(e: LockError) -> i64 {
    e.errno()
}

/// Is fcntl's `cmd` one of the lock commands (F_GETLK..F_SETLKW and the
/// OFD forms)?
pub(crate) fn is_lock_cmd(cmd: u32) -> bool {
    matches!(
        cmd,
        F_GETLK | F_SETLK | F_SETLKW | F_OFD_GETLK | F_OFD_SETLK | F_OFD_SETLKW
    )
}

/// What flock(2)'s `op` asks: `None` for the old mandatory-lock bit
/// (Linux ignores such a request and returns 0), else the lock to hold
/// (`Some(None)`: unlock). May it wait: `op & LOCK_NB == 0`.
pub(crate) fn flock_op(op: u32) -> Result<Option<Option<LockType>>, i64> {
    if op & LOCK_MAND != 0 {
        return Ok(None);
    }
    match op & !LOCK_NB {
        LOCK_SH => Ok(Some(Some(LockType::Read))),
        LOCK_EX => Ok(Some(Some(LockType::Write))),
        LOCK_UN => Ok(Some(None)),
        _ => Err(EINVAL),
    }
}

/// May flock(2)'s `op` wait for a conflicting lock to go?
pub(crate) fn flock_may_wait(op: u32) -> bool {
    op & LOCK_NB == 0
}

/// The lock key and flock owner (the description's id, made on first
/// use) of the open file `f` for a flock of `ty`; None: unlocking a
/// description that never locked (nothing to do). EBADF for O_PATH.
pub(crate) fn flock_target(
    fs: &Fs,
    f: &mut OpenFile,
    ty: Option<LockType>,
) -> Result<Option<(LockKey, u64)>, i64> {
    if f.flags & files::O_PATH != 0 {
        return Err(EBADF);
    }
    if ty.is_none() && f.lock_id.is_none() {
        return Ok(None);
    }
    Ok(Some((key_of(f), lock_id(fs, f))))
}

/// The OFD/flock owner id of `f`, made on first use.
fn lock_id(fs: &Fs, f: &mut OpenFile) -> u64 {
    let key = key_of(f);
    f.lock_id
        .get_or_insert_with(|| FileLockId::new(fs.locks(), key))
        .id()
}

/// One fcntl lock command, decoded (see [`posix_call`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PosixCall {
    /// The file's lock-table key.
    pub(crate) key: LockKey,
    /// What is asked.
    pub(crate) req: Request,
    /// F_GETLK or F_OFD_GETLK: a question, nothing changes.
    pub(crate) get: bool,
    /// F_SETLKW or F_OFD_SETLKW: a conflict waits.
    pub(crate) may_wait: bool,
}

/// Decode fcntl lock command `cmd` with the caller's `fl` on the open
/// file `f` of process `tgid` (its errors: EBADF for O_PATH or a lock
/// the access mode does not allow, EINVAL, EOVERFLOW).
pub(crate) fn posix_call(
    fs: &Fs,
    f: &mut OpenFile,
    tgid: i32,
    cmd: u32,
    fl: &Flock,
) -> Result<PosixCall, i64> {
    if f.flags & files::O_PATH != 0 {
        return Err(EBADF);
    }
    let ofd = matches!(cmd, F_OFD_GETLK | F_OFD_SETLK | F_OFD_SETLKW);
    let get = matches!(cmd, F_GETLK | F_OFD_GETLK);
    let ty = match fl.ty {
        F_RDLCK => Some(LockType::Read),
        F_WRLCK => Some(LockType::Write),
        F_UNLCK if !get => None,
        _ => return Err(EINVAL),
    };
    let base = match fl.whence {
        0 => 0,
        1 => f.pos as i64,
        2 => match f.kind {
            FileKind::Inode(h) => fs.inode(h).size as i64,
            _ => 0,
        },
        _ => return Err(EINVAL),
    };
    let mode = f.flags & files::O_ACCMODE;
    let (start, end) = flock_range(base, fl.start, fl.len).map_err(errno)?;
    if !get {
        let ok = match ty {
            Some(LockType::Read) => mode != files::O_WRONLY,
            Some(LockType::Write) => mode == files::O_WRONLY || mode == files::O_RDWR,
            None => true,
        };
        if !ok {
            return Err(EBADF);
        }
    }
    let owner = if ofd {
        if fl.pid != 0 {
            return Err(EINVAL);
        }
        Owner::File(lock_id(fs, f))
    } else {
        Owner::Process(tgid)
    };
    Ok(PosixCall {
        key: key_of(f),
        req: Request {
            owner,
            ty,
            start,
            end,
        },
        get,
        may_wait: matches!(cmd, F_SETLKW | F_OFD_SETLKW),
    })
}

/// F_GETLK's answer to `call`: the first lock in the way, or F_UNLCK in
/// `fl`'s type.
pub(crate) fn getlk(locks: &Locks, call: &PosixCall, fl: &mut Flock) {
    match locks.test(call.key, call.req) {
        None => fl.ty = F_UNLCK,
        Some(c) => {
            *fl = Flock {
                ty: match c.ty {
                    LockType::Read => F_RDLCK,
                    LockType::Write => F_WRLCK,
                },
                whence: 0,
                start: c.start as i64,
                len: c.len(),
                pid: c.pid(),
            };
        }
    }
}

impl Vproc {
    /// The waiter to register for a call that may wait (None when it may
    /// not).
    fn lock_waiter(&self, wait: bool) -> Option<Waiter> {
        if !wait {
            return None;
        }
        let k = self.k.clone()?;
        Some(Waiter {
            tid: self.pid,
            wake: k,
        })
    }

    /// A wait answer: block (retried when a lock goes).
    fn lock_wait(&mut self, e: LockError) -> R {
        if e == LockError::Wait {
            return self.block();
        }
        Err(errno(e))
    }

    /// fcntl F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK,
    /// F_OFD_SETLKW with the `struct flock` at `arg`.
    pub(super) fn sys_fcntl_lock(&mut self, fd: i64, cmd: u32, arg: u64) -> R {
        let file = self.fds.get(fd)?.file.clone();
        if file.borrow().flags & files::O_PATH != 0 {
            return Err(EBADF);
        }
        let mut raw = [0u8; FLOCK_SIZE];
        self.mm.read(arg, &mut raw)?;
        let mut fl = Flock::decode(&raw);
        let call = posix_call(&self.fs, &mut file.borrow_mut(), self.thread.tgid, cmd, &fl)?;
        let locks = self.fs.locks().clone();
        if call.get {
            getlk(&locks, &call, &mut fl);
            fl.encode(&mut raw);
            self.mm.write(arg, &raw)?;
            return Ok(0);
        }
        let wait = self.lock_waiter(call.may_wait);
        match locks.set(call.key, call.req, wait) {
            Ok(()) => Ok(0),
            Err(LockError::WouldBlock) => Err(EAGAIN),
            Err(e) => self.lock_wait(e),
        }
    }

    /// flock(2).
    pub(super) fn sys_flock(&mut self, fd: i64, op: u32) -> R {
        let Some(ty) = flock_op(op)? else {
            return Ok(0);
        };
        let file = self.fds.get(fd)?.file.clone();
        let Some((key, id)) = flock_target(&self.fs, &mut file.borrow_mut(), ty)? else {
            return Ok(0);
        };
        let wait = self.lock_waiter(flock_may_wait(op));
        match self.fs.locks().clone().flock(key, id, ty, wait) {
            Ok(()) => Ok(0),
            Err(LockError::WouldBlock) => Err(EAGAIN),
            Err(e) => self.lock_wait(e),
        }
    }

    /// close(fd), with the POSIX lock rule.
    pub(super) fn close_fd(&mut self, fd: i64) -> Result<(), i64> {
        let file = self.fds.get(fd)?.file.clone();
        self.fds.close(fd)?;
        self.locks_fd_closed(&file);
        Ok(())
    }

    /// The process closed an fd of `file` (close, dup2 over it,
    /// close_range, close-on-exec): its POSIX record locks on that file go,
    /// whichever fd took them.
    pub(crate) fn locks_fd_closed(&self, file: &Shared<OpenFile>) {
        let key = key_of(&file.borrow());
        self.fs.locks().close_posix(key, self.thread.tgid);
    }
}
