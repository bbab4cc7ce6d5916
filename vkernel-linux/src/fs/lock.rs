//! Advisory file locks of one virtual kernel, shared by all its vprocs:
//! POSIX record locks (fcntl F_SETLK/F_SETLKW/F_GETLK), open file
//! description locks (F_OFD_*) and flock(2) locks.
//!
//! Locks are kept per file ([`LockKey`]: a node of the tree, a pipe, the
//! console), so two opens of one file meet. Byte-range locks (POSIX and
//! OFD) share one list per file and conflict with each other when their
//! owners differ ([`Owner`]: a process for POSIX locks, an open file
//! description for OFD locks); a write lock conflicts with any other lock
//! of an overlapping range. Ranges of one owner are split, merged and
//! converted as Linux does (`posix_lock_inode`). flock locks live in a
//! separate list and never meet the range locks (Linux: the two kinds do
//! not interact).
//!
//! Waiting: a request that would block registers its waiter (a pid and a
//! [`Wake`]) on the file in the same critical section as the conflict
//! check, and every change that can let a waiter through (an unlock, a
//! downgrade, a release on close or exit) wakes all the file's waiters;
//! they retry. A POSIX waiter is also recorded for deadlock detection: a
//! request of process A that would wait for a lock of B, while B waits for
//! a lock of A (through up to [`MAX_DEADLOCK_STEPS`] owners), is EDEADLK.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fs::pipe::Wake;

/// The largest file offset (Linux's OFFSET_MAX): a range that ends here
/// runs to the end of the file and beyond (l_len 0).
pub const OFFSET_MAX: u64 = i64::MAX as u64;

/// How many owners the deadlock check follows (Linux:
/// MAX_DEADLK_ITERATIONS).
pub const MAX_DEADLOCK_STEPS: usize = 10;

/// Why a lock request did not succeed.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum LockError {
    /// A conflicting lock is held and the request does not wait (EAGAIN,
    /// EWOULDBLOCK).
    #[error("a conflicting lock is held")]
    WouldBlock,
    /// Waiting would deadlock (EDEADLK).
    #[error("waiting would deadlock")]
    Deadlock,
    /// The waiter is registered: block and retry when woken.
    #[error("wait for the lock")]
    Wait,
    /// A malformed range (EINVAL).
    #[error("invalid lock range")]
    Invalid,
    /// A range past the largest offset (EOVERFLOW).
    #[error("lock range overflows")]
    Overflow,
}

impl LockError {
    /// The errno (Wait: the caller blocks instead).
    pub fn errno(self) -> i64 {
        match self {
            LockError::WouldBlock => libc::EAGAIN as i64,
            LockError::Deadlock => libc::EDEADLK as i64,
            LockError::Wait => libc::EAGAIN as i64,
            LockError::Invalid => libc::EINVAL as i64,
            LockError::Overflow => libc::EOVERFLOW as i64,
        }
    }
}

/// The file a lock is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockKey {
    /// A node of the tree (or a `/proc` handle).
    Node(u64),
    /// A pipe (its object's id while it lives).
    Pipe(usize),
    /// The console's input (0) or output (1, 2).
    Console(u8),
}

/// Who holds a byte-range lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// A POSIX lock of process `tgid`.
    Process(i32),
    /// An OFD lock of open file description `id` ([`Locks::new_file_id`]).
    File(u64),
}

/// Read (shared) or write (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockType {
    /// F_RDLCK, LOCK_SH.
    Read,
    /// F_WRLCK, LOCK_EX.
    Write,
}

/// A held byte-range lock: bytes `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeLock {
    /// Its owner.
    pub owner: Owner,
    /// Read or write.
    pub ty: LockType,
    /// First byte.
    pub start: u64,
    /// Last byte ([`OFFSET_MAX`]: to the end of the file and beyond).
    pub end: u64,
}

impl RangeLock {
    /// Does a request of `owner` for `ty` on `start..=end` conflict with
    /// this lock?
    pub fn conflicts(&self, owner: Owner, ty: LockType, start: u64, end: u64) -> bool {
        self.owner != owner
            && self.start <= end
            && start <= self.end
            && (self.ty == LockType::Write || ty == LockType::Write)
    }

    /// What F_GETLK reports as l_pid: the process of a POSIX lock, -1 for
    /// an OFD lock.
    pub fn pid(&self) -> i32 {
        match self.owner {
            Owner::Process(p) => p,
            Owner::File(_) => -1,
        }
    }

    /// l_len as F_GETLK reports it (0: to the end).
    pub fn len(&self) -> i64 {
        if self.end == OFFSET_MAX {
            0
        } else {
            (self.end - self.start + 1) as i64
        }
    }

    /// Never true: a lock holds at least one byte (for clippy's len rule).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The bytes `start..=end` a `struct flock` names: `base` is where
/// l_whence points (0, the file offset or the file size), then l_start and
/// l_len as Linux reads them (`flock_to_posix_lock`): l_len 0 runs to the
/// end and beyond, a negative l_len ends just before the start.
pub fn flock_range(base: i64, l_start: i64, l_len: i64) -> Result<(u64, u64), LockError> {
    let start = base.checked_add(l_start).ok_or(LockError::Overflow)?;
    if start < 0 {
        return Err(LockError::Invalid);
    }
    if l_len > 0 {
        if l_len - 1 > i64::MAX - start {
            return Err(LockError::Overflow);
        }
        Ok((start as u64, (start + (l_len - 1)) as u64))
    } else if l_len < 0 {
        let s = start.checked_add(l_len).ok_or(LockError::Invalid)?;
        if s < 0 {
            return Err(LockError::Invalid);
        }
        Ok((s as u64, (start - 1) as u64))
    } else {
        Ok((start as u64, OFFSET_MAX))
    }
}

/// The first lock in `locks` that conflicts with a request of `owner`.
pub fn first_conflict(
    locks: &[RangeLock],
    owner: Owner,
    ty: LockType,
    start: u64,
    end: u64,
) -> Option<RangeLock> {
    locks
        .iter()
        .find(|l| l.conflicts(owner, ty, start, end))
        .copied()
}

/// Apply a request of `owner` to the locks of one file: `ty` None unlocks
/// `start..=end`, else the owner holds `ty` there afterwards. The owner's
/// other ranges are cut where they overlap, and ranges of one type that
/// touch are merged. Conflicts with other owners are the caller's check.
/// Returns whether another owner could now get something it could not
/// before (a range given up or a write lock downgraded).
pub fn apply(
    locks: &mut Vec<RangeLock>,
    owner: Owner,
    ty: Option<LockType>,
    start: u64,
    end: u64,
) -> bool {
    let mut released = false;
    let mut kept = Vec::with_capacity(locks.len() + 2);
    for l in locks.drain(..) {
        if l.owner != owner || l.end < start || l.start > end {
            kept.push(l);
            continue;
        }
        // The overlapped part goes; what sticks out stays.
        if ty.is_none() || (l.ty == LockType::Write && ty == Some(LockType::Read)) {
            released = true;
        }
        if l.start < start {
            kept.push(RangeLock {
                end: start - 1,
                ..l
            });
        }
        if l.end > end {
            kept.push(RangeLock {
                start: end + 1,
                ..l
            });
        }
    }
    *locks = kept;
    let Some(ty) = ty else {
        return released;
    };
    // Merge with the owner's ranges of the same type that touch it.
    let (mut s, mut e) = (start, end);
    locks.retain(|l| {
        let touches = l.owner == owner
            && l.ty == ty
            && (l.end.checked_add(1) == Some(s) || e.checked_add(1) == Some(l.start));
        if touches {
            s = s.min(l.start);
            e = e.max(l.end);
        }
        !touches
    });
    locks.push(RangeLock {
        owner,
        ty,
        start: s,
        end: e,
    });
    locks.sort_by_key(|l| l.start);
    released
}

/// A byte-range lock request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Who asks.
    pub owner: Owner,
    /// None: unlock.
    pub ty: Option<LockType>,
    /// First byte.
    pub start: u64,
    /// Last byte.
    pub end: u64,
}

/// Who waits, and how to wake it.
pub struct Waiter {
    /// The waiting thread (its pid, for [`Wake::wake`]).
    pub tid: i32,
    /// The process table.
    pub wake: Arc<dyn Wake>,
}

/// A POSIX request that waits (for deadlock detection).
#[derive(Debug, Clone, Copy)]
struct Blocked {
    tid: i32,
    key: LockKey,
    req: Request,
}

/// The locks of one file.
#[derive(Default)]
struct FileLocks {
    /// POSIX and OFD byte-range locks, sorted by start.
    ranges: Vec<RangeLock>,
    /// flock locks: open file description id and type.
    flocks: Vec<(u64, LockType)>,
    /// Threads waiting for a change.
    waiters: Vec<(i32, Arc<dyn Wake>)>,
}

impl FileLocks {
    fn is_empty(&self) -> bool {
        self.ranges.is_empty() && self.flocks.is_empty() && self.waiters.is_empty()
    }

    fn wait(&mut self, w: Waiter) {
        if !self.waiters.iter().any(|(p, _)| *p == w.tid) {
            self.waiters.push((w.tid, w.wake));
        }
    }
}

#[derive(Default)]
struct State {
    files: HashMap<LockKey, FileLocks>,
    blocked: Vec<Blocked>,
}

/// Waiters to wake once the table is unlocked.
type Wakes = Vec<(i32, Arc<dyn Wake>)>;

fn wake_all(w: Wakes) {
    for (pid, k) in w {
        k.wake(pid);
    }
}

impl State {
    /// Take the waiters of `key` and drop its entry if nothing is left.
    fn changed(&mut self, key: LockKey) -> Wakes {
        let Some(f) = self.files.get_mut(&key) else {
            return Vec::new();
        };
        let w = std::mem::take(&mut f.waiters);
        if f.is_empty() {
            self.files.remove(&key);
        }
        w
    }

    fn tidy(&mut self, key: LockKey) {
        if self.files.get(&key).is_some_and(FileLocks::is_empty) {
            self.files.remove(&key);
        }
    }

    /// Would process `me` waiting for `first` (a lock of another owner)
    /// close a cycle of waiting processes?
    fn deadlock(&self, me: i32, first: Owner) -> bool {
        let mut owner = first;
        for _ in 0..MAX_DEADLOCK_STEPS {
            let Owner::Process(p) = owner else {
                return false;
            };
            if p == me {
                return true;
            }
            // What is `p` waiting for, and whose lock holds it up?
            let Some(b) = self
                .blocked
                .iter()
                .find(|b| b.req.owner == Owner::Process(p))
            else {
                return false;
            };
            let Some(f) = self.files.get(&b.key) else {
                return false;
            };
            let ty = b.req.ty.unwrap_or(LockType::Read);
            let Some(c) = first_conflict(&f.ranges, b.req.owner, ty, b.req.start, b.req.end) else {
                return false;
            };
            owner = c.owner;
        }
        false
    }
}

/// The lock table of one virtual kernel.
#[derive(Default)]
pub struct Locks {
    state: Mutex<State>,
    next_file: AtomicU64,
}

impl std::fmt::Debug for Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Locks")
            .field("files", &s.files.len())
            .field("blocked", &s.blocked.len())
            .finish()
    }
}

impl Locks {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new id for an open file description that takes a lock.
    pub fn new_file_id(&self) -> u64 {
        self.next_file.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// F_GETLK: the first lock that would keep `req` out, if any.
    pub fn test(&self, key: LockKey, req: Request) -> Option<RangeLock> {
        let s = self.lock();
        let f = s.files.get(&key)?;
        first_conflict(
            &f.ranges,
            req.owner,
            req.ty.unwrap_or(LockType::Read),
            req.start,
            req.end,
        )
    }

    /// F_SETLK(W), F_OFD_SETLK(W): apply `req`. On a conflict: `wait`
    /// None is [`LockError::WouldBlock`]; otherwise the waiter is
    /// registered and the answer is [`LockError::Wait`], or
    /// [`LockError::Deadlock`] when a POSIX request would close a cycle.
    pub fn set(&self, key: LockKey, req: Request, wait: Option<Waiter>) -> Result<(), LockError> {
        let mut s = self.lock();
        let tid = wait.as_ref().map(|w| w.tid);
        if let Some(tid) = tid {
            s.blocked.retain(|b| b.tid != tid);
        }
        if let Some(ty) = req.ty {
            let c = s
                .files
                .get(&key)
                .and_then(|f| first_conflict(&f.ranges, req.owner, ty, req.start, req.end));
            if let Some(c) = c {
                let Some(w) = wait else {
                    return Err(LockError::WouldBlock);
                };
                if let Owner::Process(me) = req.owner {
                    if s.deadlock(me, c.owner) {
                        return Err(LockError::Deadlock);
                    }
                    s.blocked.push(Blocked {
                        tid: w.tid,
                        key,
                        req,
                    });
                }
                s.files.entry(key).or_default().wait(w);
                return Err(LockError::Wait);
            }
        }
        let f = s.files.entry(key).or_default();
        let released = apply(&mut f.ranges, req.owner, req.ty, req.start, req.end);
        let w = if released {
            s.changed(key)
        } else {
            s.tidy(key);
            Vec::new()
        };
        drop(s);
        wake_all(w);
        Ok(())
    }

    /// flock(2) for open file description `file`: `ty` None unlocks. A
    /// conversion first drops the old lock (as Linux does: not atomic).
    pub fn flock(
        &self,
        key: LockKey,
        file: u64,
        ty: Option<LockType>,
        wait: Option<Waiter>,
    ) -> Result<(), LockError> {
        let mut s = self.lock();
        let f = s.files.entry(key).or_default();
        let mine = f.flocks.iter().position(|&(id, _)| id == file);
        let mut released = false;
        if let Some(i) = mine {
            if Some(f.flocks[i].1) == ty {
                return Ok(());
            }
            f.flocks.remove(i);
            released = true;
        }
        let mut out = Ok(());
        if let Some(ty) = ty {
            let busy = f
                .flocks
                .iter()
                .any(|&(_, t)| t == LockType::Write || ty == LockType::Write);
            if !busy {
                f.flocks.push((file, ty));
            } else if let Some(w) = wait {
                f.wait(w);
                out = Err(LockError::Wait);
            } else {
                out = Err(LockError::WouldBlock);
            }
        }
        let w = if released {
            s.changed(key)
        } else {
            s.tidy(key);
            Vec::new()
        };
        drop(s);
        wake_all(w);
        out
    }

    /// A waiting call of thread `tid` ends without the lock (a signal, an
    /// exit): it no longer counts for deadlock detection.
    pub fn cancel_wait(&self, tid: i32) {
        self.lock().blocked.retain(|b| b.tid != tid);
    }

    /// Process `tgid` closed an fd of `key`: its POSIX locks there go.
    pub fn close_posix(&self, key: LockKey, tgid: i32) {
        let mut s = self.lock();
        let Some(f) = s.files.get_mut(&key) else {
            return;
        };
        let before = f.ranges.len();
        f.ranges.retain(|l| l.owner != Owner::Process(tgid));
        let w = if f.ranges.len() != before {
            s.changed(key)
        } else {
            Vec::new()
        };
        drop(s);
        wake_all(w);
    }

    /// Process `tgid` ended: all its POSIX locks and waits go.
    pub fn exit_process(&self, tgid: i32) {
        let mut s = self.lock();
        s.blocked.retain(|b| b.req.owner != Owner::Process(tgid));
        let keys: Vec<LockKey> = s
            .files
            .iter()
            .filter(|(_, f)| f.ranges.iter().any(|l| l.owner == Owner::Process(tgid)))
            .map(|(k, _)| *k)
            .collect();
        let mut w = Vec::new();
        for k in keys {
            if let Some(f) = s.files.get_mut(&k) {
                f.ranges.retain(|l| l.owner != Owner::Process(tgid));
            }
            w.extend(s.changed(k));
        }
        drop(s);
        wake_all(w);
    }

    /// Thread `tid` of process `tgid` ended; `process_ended`: it was the
    /// last one, and the process's POSIX locks go too.
    pub fn exit_thread(&self, tid: i32, tgid: i32, process_ended: bool) {
        self.cancel_wait(tid);
        if process_ended {
            self.exit_process(tgid);
        }
    }

    /// The last reference to open file description `file` went: its OFD
    /// and flock locks on `key` go.
    pub fn close_file(&self, key: LockKey, file: u64) {
        let mut s = self.lock();
        let Some(f) = s.files.get_mut(&key) else {
            return;
        };
        let before = (f.ranges.len(), f.flocks.len());
        f.ranges.retain(|l| l.owner != Owner::File(file));
        f.flocks.retain(|&(id, _)| id != file);
        let w = if (f.ranges.len(), f.flocks.len()) != before {
            s.changed(key)
        } else {
            s.tidy(key);
            Vec::new()
        };
        drop(s);
        wake_all(w);
    }

    /// How many files have locks or waiters (for tests and reports).
    pub fn files(&self) -> usize {
        self.lock().files.len()
    }
}

/// The lock identity of an open file description that took an OFD or
/// flock lock; dropped with the description (its last fd), it releases
/// them.
#[derive(Debug)]
pub struct FileLockId {
    locks: Arc<Locks>,
    key: LockKey,
    id: u64,
}

impl FileLockId {
    /// A new identity for a description of `key`.
    pub fn new(locks: &Arc<Locks>, key: LockKey) -> FileLockId {
        FileLockId {
            locks: locks.clone(),
            key,
            id: locks.new_file_id(),
        }
    }

    /// The id ([`Owner::File`]).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for FileLockId {
    fn drop(&mut self) {
        self.locks.close_file(self.key, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Owner = Owner::Process(10);
    const B: Owner = Owner::Process(20);
    const R: LockType = LockType::Read;
    const W: LockType = LockType::Write;

    fn l(owner: Owner, ty: LockType, start: u64, end: u64) -> RangeLock {
        RangeLock {
            owner,
            ty,
            start,
            end,
        }
    }

    #[test]
    fn flock_ranges_follow_linux() {
        assert_eq!(flock_range(0, 0, 0), Ok((0, OFFSET_MAX)));
        assert_eq!(flock_range(0, 10, 5), Ok((10, 14)));
        assert_eq!(flock_range(100, 10, 1), Ok((110, 110)));
        // Negative length: the bytes before the start.
        assert_eq!(flock_range(0, 10, -5), Ok((5, 9)));
        assert_eq!(flock_range(0, 5, -6), Err(LockError::Invalid));
        assert_eq!(flock_range(0, -1, 1), Err(LockError::Invalid));
        assert_eq!(flock_range(0, i64::MAX, 2), Err(LockError::Overflow));
        assert_eq!(flock_range(0, i64::MAX, 1), Ok((OFFSET_MAX, OFFSET_MAX)));
        assert_eq!(flock_range(i64::MAX, 1, 1), Err(LockError::Overflow));
    }

    #[test]
    fn conflicts_need_another_owner_an_overlap_and_a_writer() {
        let a = l(A, R, 10, 19);
        assert!(!a.conflicts(B, R, 0, 100));
        assert!(a.conflicts(B, W, 19, 30));
        assert!(!a.conflicts(B, W, 20, 30));
        assert!(!a.conflicts(A, W, 0, 100));
        let w = l(A, W, 10, OFFSET_MAX);
        assert!(w.conflicts(B, R, 1 << 40, 1 << 40));
        assert!(w.conflicts(Owner::File(1), R, 10, 10));
        assert_eq!(w.len(), 0);
        assert_eq!(l(A, W, 10, 19).len(), 10);
        assert_eq!(l(Owner::File(3), W, 0, 0).pid(), -1);
        assert_eq!(w.pid(), 10);
    }

    #[test]
    fn unlocking_the_middle_splits() {
        let mut v = vec![l(A, W, 0, 99)];
        assert!(apply(&mut v, A, None, 40, 49));
        assert_eq!(v, vec![l(A, W, 0, 39), l(A, W, 50, 99)]);
        // Unlocking what is not locked releases nothing.
        assert!(!apply(&mut v, A, None, 40, 49));
        assert!(!apply(&mut v, B, None, 0, 99));
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn same_type_ranges_merge_when_they_touch_or_overlap() {
        let mut v = Vec::new();
        apply(&mut v, A, Some(R), 0, 9);
        apply(&mut v, A, Some(R), 20, 29);
        apply(&mut v, A, Some(R), 10, 19);
        assert_eq!(v, vec![l(A, R, 0, 29)]);
        apply(&mut v, A, Some(R), 25, OFFSET_MAX);
        assert_eq!(v, vec![l(A, R, 0, OFFSET_MAX)]);
        // Another owner's ranges stay apart.
        apply(&mut v, B, Some(R), 30, 39);
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn a_different_type_in_the_middle_splits_and_a_downgrade_releases() {
        let mut v = vec![l(A, R, 0, 99)];
        assert!(!apply(&mut v, A, Some(W), 10, 19));
        assert_eq!(v, vec![l(A, R, 0, 9), l(A, W, 10, 19), l(A, R, 20, 99)]);
        // Back to read: one range again, and readers may now come in.
        assert!(apply(&mut v, A, Some(R), 10, 19));
        assert_eq!(v, vec![l(A, R, 0, 99)]);
        // Upgrading all of it.
        assert!(!apply(&mut v, A, Some(W), 0, 99));
        assert_eq!(v, vec![l(A, W, 0, 99)]);
    }

    #[test]
    fn first_conflict_reports_the_holder() {
        let v = vec![l(A, R, 0, 9), l(B, W, 10, 19)];
        assert_eq!(first_conflict(&v, A, W, 5, 15), Some(l(B, W, 10, 19)));
        assert_eq!(first_conflict(&v, B, W, 0, 30), Some(l(A, R, 0, 9)));
        assert_eq!(first_conflict(&v, Owner::Process(3), R, 0, 9), None);
    }

    struct NoWake;
    impl Wake for NoWake {
        fn wake(&self, _pid: i32) {}
    }

    fn waiter(tid: i32) -> Option<Waiter> {
        Some(Waiter {
            tid,
            wake: Arc::new(NoWake),
        })
    }

    fn req(owner: Owner, ty: Option<LockType>, start: u64, end: u64) -> Request {
        Request {
            owner,
            ty,
            start,
            end,
        }
    }

    #[test]
    fn two_processes_waiting_for_each_other_deadlock() {
        let t = Locks::default();
        let k = LockKey::Node(7);
        t.set(k, req(A, Some(W), 0, 0), None).unwrap();
        t.set(k, req(B, Some(W), 1, 1), None).unwrap();
        // A waits for B's byte 1 ...
        assert_eq!(
            t.set(k, req(A, Some(W), 1, 1), waiter(10)),
            Err(LockError::Wait)
        );
        // ... so B waiting for A's byte 0 would close the cycle.
        assert_eq!(
            t.set(k, req(B, Some(W), 0, 0), waiter(20)),
            Err(LockError::Deadlock)
        );
        // Without waiting it is a plain conflict.
        assert_eq!(
            t.set(k, req(B, Some(W), 0, 0), None),
            Err(LockError::WouldBlock)
        );
        // Once A gives up waiting there is no cycle.
        t.cancel_wait(10);
        assert_eq!(
            t.set(k, req(B, Some(W), 0, 0), waiter(20)),
            Err(LockError::Wait)
        );
        // A's exit frees byte 0.
        t.exit_process(10);
        assert_eq!(t.set(k, req(B, Some(W), 0, 0), waiter(20)), Ok(()));
        t.exit_process(20);
        assert_eq!(t.files(), 0);
    }

    #[test]
    fn ofd_locks_conflict_with_posix_locks_and_go_with_their_file() {
        let t = Arc::new(Locks::default());
        let k = LockKey::Node(1);
        let id = FileLockId::new(&t, k);
        let f = Owner::File(id.id());
        t.set(k, req(f, Some(W), 0, OFFSET_MAX), None).unwrap();
        assert_eq!(
            t.set(k, req(A, Some(R), 5, 5), None),
            Err(LockError::WouldBlock)
        );
        assert_eq!(t.test(k, req(A, Some(R), 5, 5)).map(|l| l.pid()), Some(-1));
        drop(id);
        assert_eq!(t.set(k, req(A, Some(R), 5, 5), None), Ok(()));
        t.close_posix(k, 10);
        assert_eq!(t.files(), 0);
    }

    #[test]
    fn flock_shares_excludes_and_converts() {
        let t = Locks::default();
        let k = LockKey::Node(2);
        t.flock(k, 1, Some(R), None).unwrap();
        t.flock(k, 2, Some(R), None).unwrap();
        assert_eq!(t.flock(k, 3, Some(W), None), Err(LockError::WouldBlock));
        // Converting 1 to exclusive fails (2 shares) and drops 1's lock.
        assert_eq!(t.flock(k, 1, Some(W), None), Err(LockError::WouldBlock));
        t.flock(k, 2, None, None).unwrap();
        t.flock(k, 3, Some(W), None).unwrap();
        assert_eq!(t.flock(k, 1, Some(R), waiter(5)), Err(LockError::Wait));
        // flock never meets range locks.
        t.set(k, req(A, Some(W), 0, OFFSET_MAX), None).unwrap();
        t.close_file(k, 3);
        t.flock(k, 1, Some(R), None).unwrap();
        t.close_file(k, 1);
        t.close_posix(k, 10);
        assert_eq!(t.files(), 0);
    }
}
