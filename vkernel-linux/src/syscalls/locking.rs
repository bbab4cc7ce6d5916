//! The file-lock calls: fcntl's F_GETLK/F_SETLK/F_SETLKW and their OFD
//! forms, and flock(2), over the virtual kernel's lock table
//! ([`crate::fs::lock`]). Also the POSIX rule that a process's
//! record locks on a file go when it closes any fd of that file.

use super::errno::*;
use super::R;
use crate::files::{self, FileKind, MemFile, OpenFile, Shared};
use crate::fs::lock::{
    flock_range, FileLockId, LockError, LockKey, LockType, Owner, Request, Waiter,
};
use crate::Vproc;

/// fcntl commands.
const F_GETLK: u32 = 5;
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
const FLOCK_SIZE: usize = 32;

/// The x86-64 `struct flock`.
#[derive(Debug, Clone, Copy)]
struct Flock {
    ty: i16,
    whence: i16,
    start: i64,
    len: i64,
    pid: i32,
}

impl Flock {
    fn decode(b: &[u8; FLOCK_SIZE]) -> Flock {
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
    fn encode(&self, b: &mut [u8; FLOCK_SIZE]) {
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

    /// The OFD/flock owner id of `f`, made on first use.
    fn file_lock_id(&self, f: &mut OpenFile) -> u64 {
        let key = key_of(f);
        f.lock_id
            .get_or_insert_with(|| FileLockId::new(self.fs.locks(), key))
            .id()
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
        let ofd = matches!(cmd, F_OFD_GETLK | F_OFD_SETLK | F_OFD_SETLKW);
        let get = matches!(cmd, F_GETLK | F_OFD_GETLK);
        let ty = match fl.ty {
            F_RDLCK => Some(LockType::Read),
            F_WRLCK => Some(LockType::Write),
            F_UNLCK if !get => None,
            _ => return Err(EINVAL),
        };
        let (key, base, mode) = {
            let f = file.borrow();
            let base = match fl.whence {
                0 => 0,
                1 => f.pos as i64,
                2 => match f.kind {
                    FileKind::Inode(h) => self.fs.inode(h).size as i64,
                    _ => 0,
                },
                _ => return Err(EINVAL),
            };
            (key_of(&f), base, f.flags & files::O_ACCMODE)
        };
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
            Owner::File(self.file_lock_id(&mut file.borrow_mut()))
        } else {
            Owner::Process(self.thread.tgid)
        };
        let req = Request {
            owner,
            ty,
            start,
            end,
        };
        let locks = self.fs.locks().clone();
        if get {
            match locks.test(key, req) {
                None => fl.ty = F_UNLCK,
                Some(c) => {
                    fl = Flock {
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
            fl.encode(&mut raw);
            self.mm.write(arg, &raw)?;
            return Ok(0);
        }
        let wait = self.lock_waiter(matches!(cmd, F_SETLKW | F_OFD_SETLKW));
        match locks.set(key, req, wait) {
            Ok(()) => Ok(0),
            Err(LockError::WouldBlock) => Err(EAGAIN),
            Err(e) => self.lock_wait(e),
        }
    }

    /// flock(2).
    pub(super) fn sys_flock(&mut self, fd: i64, op: u32) -> R {
        if op & LOCK_MAND != 0 {
            return Ok(0);
        }
        let ty = match op & !LOCK_NB {
            LOCK_SH => Some(LockType::Read),
            LOCK_EX => Some(LockType::Write),
            LOCK_UN => None,
            _ => return Err(EINVAL),
        };
        let file = self.fds.get(fd)?.file.clone();
        let (key, id) = {
            let mut f = file.borrow_mut();
            if f.flags & files::O_PATH != 0 {
                return Err(EBADF);
            }
            if ty.is_none() && f.lock_id.is_none() {
                // Nothing was ever locked through this description.
                return Ok(0);
            }
            (key_of(&f), self.file_lock_id(&mut f))
        };
        let may_wait = op & LOCK_NB == 0;
        let wait = self.lock_waiter(may_wait);
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
