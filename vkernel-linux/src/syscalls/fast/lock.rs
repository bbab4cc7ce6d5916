//! The file-lock calls the exitless server answers: flock(2) and fcntl's
//! lock commands (F_GETLK, F_SETLK, F_SETLKW and their OFD forms) when
//! they complete at once: a lock taken or released, a question answered,
//! or a conflict where the caller said not to wait (EAGAIN). A conflict
//! the caller would wait on, and every error, go to the exit path, which
//! registers the waiter (and checks for a deadlock) or reports the error;
//! nothing changed here first, except what Linux also does first (a flock
//! conversion drops the old lock before it looks for the new one).
//!
//! The decoding is the exit path's (`syscalls::locking`); the lock table
//! is the same one, and a lock that goes wakes its waiters from this
//! thread as it does from a vCPU thread. Each open file is locked with a
//! try (the server never waits for an object).

use super::answer;
use crate::abi::errno::EAGAIN;
use crate::files::FdTable;
use crate::fs::lock::LockError;
use crate::kernel::fast::FastCtx;
use crate::syscalls::locking::{
    flock_may_wait, flock_op, flock_target, getlk, posix_call, Flock, FLOCK_SIZE,
};
use crate::thread::LockedPartsMut;

/// flock(fd, op).
pub(super) fn flock(c: &FastCtx, fds: &FdTable, fd: i64, op: u32) -> Option<u64> {
    let Some(ty) = flock_op(op).ok()? else {
        return Some(0);
    };
    let file = fds.get(fd).ok()?.file.clone();
    let target = flock_target(&c.fs, &mut *file.try_borrow()?, ty).ok()?;
    let Some((key, id)) = target else {
        return Some(0);
    };
    match c.fs.locks().flock(key, id, ty, None) {
        Ok(()) => Some(0),
        Err(LockError::WouldBlock) if !flock_may_wait(op) => Some(answer(Err(EAGAIN))),
        Err(_) => None,
    }
}

/// fcntl(fd, cmd, arg) for a lock command.
pub(super) fn fcntl(
    c: &FastCtx,
    p: &LockedPartsMut<'_>,
    fd: i64,
    cmd: u32,
    arg: u64,
) -> Option<u64> {
    let file = p.fds.get(fd).ok()?.file.clone();
    let vms = p.mm.vmspace();
    let mut raw = [0u8; FLOCK_SIZE];
    vms.copy_from_user(arg, &mut raw).ok()?;
    let mut fl = Flock::decode(&raw);
    let call = posix_call(&c.fs, &mut *file.try_borrow()?, c.tgid, cmd, &fl).ok()?;
    let locks = c.fs.locks();
    if call.get {
        getlk(locks, &call, &mut fl);
        fl.encode(&mut raw);
        return vms.copy_to_user(arg, &raw).ok().map(|_| 0);
    }
    match locks.set(call.key, call.req, None) {
        Ok(()) => Some(0),
        Err(LockError::WouldBlock) if !call.may_wait => Some(answer(Err(EAGAIN))),
        Err(_) => None,
    }
}
