//! System V semaphores and message queues, one namespace per virtual
//! kernel: the sets and queues by id, their keys, and each process's
//! semaphore undo adjustments (SEM_UNDO, applied when it exits). Pure
//! logic: the syscalls (`syscalls/sysv.rs`) copy in and out, block and
//! wake; what waits here is woken through [`Waiters`].

use std::collections::{HashMap, VecDeque};

use crate::fs::pipe::Waiters;

impl super::Kernel {
    /// The System V IPC namespace.
    pub(crate) fn sysv_lock(&self) -> std::sync::MutexGuard<'_, SysV> {
        self.sysv.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// IPC_PRIVATE: always a new object.
pub const IPC_PRIVATE: i32 = 0;
/// Most semaphores in a set (Linux's SEMMSL).
pub const SEMMSL: usize = 32_000;
/// Largest semaphore value (SEMVMX).
pub const SEMVMX: i32 = 32_767;
/// Most operations in one semop (SEMOPM).
pub const SEMOPM: usize = 500;
/// Largest message (MSGMAX).
pub const MSGMAX: usize = 8192;
/// Bytes a queue holds by default (MSGMNB).
pub const MSGMNB: usize = 16_384;

/// Owner, permissions and times of an IPC object (`struct ipc64_perm`
/// and the times of the *_ds structs).
#[derive(Clone, Debug, Default)]
pub struct Perm {
    /// Its key.
    pub key: i32,
    /// The mode bits (low 9).
    pub mode: u32,
    /// Changed by IPC_SET or made (seconds since the epoch).
    pub ctime: i64,
}

/// One semaphore.
#[derive(Clone, Debug, Default)]
pub struct Sem {
    /// Its value.
    pub val: i32,
    /// The pid of the last operation.
    pub pid: i32,
}

/// A semaphore set.
#[derive(Debug, Default)]
pub struct SemSet {
    /// Owner and mode.
    pub perm: Perm,
    /// The semaphores.
    pub sems: Vec<Sem>,
    /// Last semop (seconds since the epoch).
    pub otime: i64,
    /// Vprocs blocked in semop on it, with what they wait for: (pid,
    /// semaphore, waits for zero).
    pub waiting: Vec<(i32, u16, bool)>,
    /// Who to wake when it changes.
    pub waiters: Waiters,
}

/// One semop operation (`struct sembuf`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemOp {
    /// The semaphore.
    pub num: u16,
    /// Add this (0: wait for zero).
    pub op: i16,
    /// IPC_NOWAIT, SEM_UNDO.
    pub flg: i16,
}

/// SEM_UNDO.
pub const SEM_UNDO: i16 = 0x1000;
/// IPC_NOWAIT.
pub const IPC_NOWAIT: i16 = 0o4000;

/// Why an IPC call fails (errno values).
pub type Errno = i64;

/// A message.
#[derive(Clone, Debug)]
pub struct Msg {
    /// Its type (> 0).
    pub mtype: i64,
    /// Its text.
    pub text: Vec<u8>,
}

/// A message queue.
#[derive(Debug, Default)]
pub struct MsgQueue {
    /// Owner and mode.
    pub perm: Perm,
    /// The messages, oldest first.
    pub msgs: VecDeque<Msg>,
    /// Bytes it may hold (msg_qbytes).
    pub max_bytes: usize,
    /// pids of the last send and receive, and their times.
    pub last: [(i32, i64); 2],
    /// Who to wake when it changes.
    pub waiters: Waiters,
}

impl MsgQueue {
    /// Bytes of text queued.
    pub fn bytes(&self) -> usize {
        self.msgs.iter().map(|m| m.text.len()).sum()
    }

    /// The index of the message `msgrcv` with type `t` takes
    /// (`except`: MSG_EXCEPT).
    pub fn pick(&self, t: i64, except: bool) -> Option<usize> {
        if t == 0 {
            return (!self.msgs.is_empty()).then_some(0);
        }
        if t > 0 {
            return self.msgs.iter().position(|m| (m.mtype == t) != except);
        }
        // The lowest type not above |t|, the oldest of those.
        let limit = t.checked_neg().unwrap_or(i64::MAX);
        let low = self
            .msgs
            .iter()
            .filter(|m| m.mtype <= limit)
            .map(|m| m.mtype)
            .min()?;
        self.msgs.iter().position(|m| m.mtype == low)
    }
}

/// The virtual kernel's System V IPC namespace.
#[derive(Debug, Default)]
pub struct SysV {
    /// Semaphore sets by id.
    pub sems: HashMap<i32, SemSet>,
    /// Message queues by id.
    pub msgs: HashMap<i32, MsgQueue>,
    /// Ids by (is a queue?, key).
    keys: HashMap<(bool, i32), i32>,
    /// The next id's sequence number.
    seq: i32,
    /// SEM_UNDO adjustments by process: (set, semaphore) -> amount.
    undo: HashMap<i32, HashMap<(i32, u16), i32>>,
    /// Shared memory segments.
    pub shm: super::sysv_shm::ShmSegs,
    /// Vprocs that waited on an object when it was removed, by id: their
    /// retried call gets EIDRM (any other call on the id, EINVAL).
    gone: VecDeque<(i32, i32)>,
}

/// What a get call found or made.
pub enum Got {
    /// This id exists.
    Found(i32),
    /// Nothing has the key; make one (IPC_CREAT).
    Make,
}

impl SysV {
    /// Look `key` up for semget/msgget with `flags` (IPC_CREAT 0o1000,
    /// IPC_EXCL 0o2000).
    pub fn lookup(&self, queue: bool, key: i32, flags: i32) -> Result<Got, Errno> {
        if key == IPC_PRIVATE {
            return Ok(Got::Make);
        }
        match self.keys.get(&(queue, key)) {
            Some(_) if flags & 0o3000 == 0o3000 => Err(17), // EEXIST
            Some(&id) => Ok(Got::Found(id)),
            None if flags & 0o1000 != 0 => Ok(Got::Make),
            None => Err(2), // ENOENT
        }
    }

    fn new_id(&mut self, queue: bool, key: i32) -> i32 {
        self.seq = self.seq.wrapping_add(1) & 0x7fff;
        let id = self.seq * 32_768
            + i32::try_from(self.sems.len() + self.msgs.len()).unwrap_or(0) % 32_768;
        if key != IPC_PRIVATE {
            self.keys.insert((queue, key), id);
        }
        id
    }

    /// A new semaphore set of `n` semaphores (values 0).
    pub fn make_sems(&mut self, key: i32, n: usize, mode: u32, now: i64) -> i32 {
        let id = self.new_id(false, key);
        self.sems.insert(
            id,
            SemSet {
                perm: Perm {
                    key,
                    mode: mode & 0o777,
                    ctime: now,
                },
                sems: vec![Sem::default(); n],
                ..SemSet::default()
            },
        );
        id
    }

    /// A new message queue.
    pub fn make_queue(&mut self, key: i32, mode: u32, now: i64) -> i32 {
        let id = self.new_id(true, key);
        self.msgs.insert(
            id,
            MsgQueue {
                perm: Perm {
                    key,
                    mode: mode & 0o777,
                    ctime: now,
                },
                max_bytes: MSGMNB,
                ..MsgQueue::default()
            },
        );
        id
    }

    /// IPC_RMID of a set or a queue: its waiters, to wake (they find it
    /// gone: EIDRM).
    pub fn remove(
        &mut self,
        queue: bool,
        id: i32,
    ) -> Option<Vec<(i32, std::sync::Arc<dyn crate::fs::pipe::Wake>)>> {
        let (key, mut w) = if queue {
            let q = self.msgs.remove(&id)?;
            (q.perm.key, q.waiters)
        } else {
            let s = self.sems.remove(&id)?;
            for u in self.undo.values_mut() {
                u.retain(|&(set, _), _| set != id);
            }
            (s.perm.key, s.waiters)
        };
        if key != IPC_PRIVATE {
            self.keys.remove(&(queue, key));
        }
        let w = w.take();
        for &(pid, _) in &w {
            if self.gone.len() == 256 {
                self.gone.pop_front();
            }
            self.gone.push_back((id, pid));
        }
        Some(w)
    }

    /// The errno of a call by `pid` on an id that is not there: EIDRM
    /// for a call that waited on it when it was removed, else EINVAL.
    pub fn missing(&mut self, id: i32, pid: i32) -> Errno {
        match self.gone.iter().position(|&g| g == (id, pid)) {
            Some(i) => {
                self.gone.remove(i);
                43
            }
            None => 22,
        }
    }

    /// semop: apply all of `ops` to set `id` for process `tgid`, or none.
    /// Ok(true): done; Ok(false): it must wait (the caller blocks unless
    /// IPC_NOWAIT); Err: EINVAL, EIDRM, EFBIG, ERANGE.
    pub fn semop(
        &mut self,
        id: i32,
        ops: &[SemOp],
        pid: i32,
        tgid: i32,
        now: i64,
    ) -> Result<bool, Errno> {
        if !self.sems.contains_key(&id) {
            return Err(self.missing(id, pid));
        }
        let set = self.sems.get_mut(&id).ok_or(22)?;
        let n = set.sems.len();
        if ops.iter().any(|o| usize::from(o.num) >= n) {
            return Err(27); // EFBIG
        }
        // Try on a copy: all or nothing.
        let mut vals: Vec<i32> = set.sems.iter().map(|s| s.val).collect();
        for o in ops {
            let v = &mut vals[usize::from(o.num)];
            if o.op == 0 {
                if *v != 0 {
                    set.waiting.retain(|w| w.0 != pid);
                    set.waiting.push((pid, o.num, true));
                    return Ok(false);
                }
            } else {
                let nv = *v + i32::from(o.op);
                if nv < 0 {
                    set.waiting.retain(|w| w.0 != pid);
                    set.waiting.push((pid, o.num, false));
                    return Ok(false);
                }
                if nv > SEMVMX {
                    return Err(34); // ERANGE
                }
                *v = nv;
            }
        }
        set.waiting.retain(|w| w.0 != pid);
        for (s, v) in set.sems.iter_mut().zip(vals) {
            s.val = v;
        }
        for o in ops.iter().filter(|o| o.op != 0) {
            set.sems[usize::from(o.num)].pid = tgid;
            if o.flg & SEM_UNDO != 0 {
                *self
                    .undo
                    .entry(tgid)
                    .or_default()
                    .entry((id, o.num))
                    .or_default() -= i32::from(o.op);
            }
        }
        set.otime = now;
        Ok(true)
    }

    /// Process `tgid` ended: its SEM_UNDO adjustments are applied
    /// (clamped at 0 and SEMVMX, as Linux does); the waiters to wake.
    pub fn exit_process(&mut self, tgid: i32) -> Vec<Waiters> {
        let Some(adj) = self.undo.remove(&tgid) else {
            return Vec::new();
        };
        let mut woken = Vec::new();
        let mut touched = Vec::new();
        for ((id, num), a) in adj {
            if let Some(s) = self
                .sems
                .get_mut(&id)
                .and_then(|set| set.sems.get_mut(usize::from(num)))
            {
                s.val = (s.val + a).clamp(0, SEMVMX);
                s.pid = tgid;
                touched.push(id);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            if let Some(set) = self.sems.get_mut(&id) {
                woken.push(std::mem::take(&mut set.waiters));
            }
        }
        woken
    }

    /// SETVAL/SETALL cleared the undo adjustments of these semaphores.
    pub fn clear_undo(&mut self, id: i32, num: Option<u16>) {
        for u in self.undo.values_mut() {
            u.retain(|&(set, n), _| set != id || num.is_some_and(|x| x != n));
        }
    }

    /// GETNCNT/GETZCNT: vprocs waiting on semaphore `num` for it to
    /// grow, or to be zero.
    pub fn count_waiting(&self, id: i32, num: u16, zero: bool) -> usize {
        self.sems.get(&id).map_or(0, |s| {
            s.waiting
                .iter()
                .filter(|w| w.1 == num && w.2 == zero)
                .count()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoWake;
    impl crate::fs::pipe::Wake for NoWake {
        fn wake(&self, _pid: i32) {}
    }

    fn op(num: u16, op: i16, flg: i16) -> SemOp {
        SemOp { num, op, flg }
    }

    #[test]
    fn semop_is_all_or_nothing_and_undo_restores() {
        let mut v = SysV::default();
        let id = v.make_sems(42, 2, 0o600, 0);
        assert!(matches!(v.lookup(false, 42, 0), Ok(Got::Found(x)) if x == id));
        assert_eq!(v.lookup(false, 42, 0o3000).err(), Some(17));
        assert_eq!(v.lookup(false, 7, 0).err(), Some(2));
        // Taking 1 from semaphore 1 (0) waits, and nothing changed.
        assert_eq!(
            v.semop(id, &[op(0, 5, 0), op(1, -1, 0)], 10, 10, 0),
            Ok(false)
        );
        assert_eq!(v.sems[&id].sems[0].val, 0);
        assert_eq!(v.count_waiting(id, 1, false), 1);
        assert_eq!(v.semop(id, &[op(1, 3, SEM_UNDO)], 11, 11, 0), Ok(true));
        assert_eq!(
            v.semop(id, &[op(0, 5, 0), op(1, -1, 0)], 10, 10, 0),
            Ok(true)
        );
        assert_eq!(v.count_waiting(id, 1, false), 0);
        assert_eq!(v.sems[&id].sems[1].val, 2);
        // Process 11 exits: its +3 is undone (clamped at 0).
        assert_eq!(v.exit_process(11).len(), 1);
        assert_eq!(v.sems[&id].sems[1].val, 0);
        assert_eq!(v.semop(id, &[op(2, 1, 0)], 1, 1, 0), Err(27));
        assert_eq!(v.semop(id, &[op(0, i16::MAX, 0)], 1, 1, 0), Err(34));
        // Vproc 10 waits, then the set goes: 10 gets EIDRM, others EINVAL.
        assert_eq!(v.semop(id, &[op(1, -1, 0)], 10, 10, 0), Ok(false));
        v.sems
            .get_mut(&id)
            .unwrap()
            .waiters
            .add(10, std::sync::Arc::new(NoWake));
        assert_eq!(v.remove(false, id).map(|w| w.len()), Some(1));
        assert_eq!(v.semop(id, &[op(0, 1, 0)], 1, 1, 0), Err(22));
        assert_eq!(v.semop(id, &[op(0, 1, 0)], 10, 10, 0), Err(43));
        assert_eq!(v.semop(id, &[op(0, 1, 0)], 10, 10, 0), Err(22));
        assert!(v.lookup(false, 42, 0).is_err());
    }

    #[test]
    fn msgrcv_picks_by_type_like_linux() {
        let mut q = MsgQueue::default();
        for t in [5, 2, 9, 2] {
            q.msgs.push_back(Msg {
                mtype: t,
                text: vec![],
            });
        }
        assert_eq!(q.pick(0, false), Some(0));
        assert_eq!(q.pick(2, false), Some(1));
        assert_eq!(q.pick(2, true), Some(0));
        assert_eq!(q.pick(-4, false), Some(1));
        assert_eq!(q.pick(-1, false), None);
        assert_eq!(q.pick(7, false), None);
    }
}
