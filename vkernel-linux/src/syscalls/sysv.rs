//! System V semaphores and message queues (semget, semop, semtimedop,
//! semctl, msgget, msgsnd, msgrcv, msgctl) over the virtual kernel's
//! namespace (`kernel::sysv`): the calls copy in and out, and a call that
//! must wait registers on the set or queue and blocks (woken by the
//! change it waits for, or EIDRM when the object goes). Every vproc is
//! root, so permission bits are kept and reported but not enforced.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::errno::*;
use super::int32 as int;
use super::table::Handler;
use super::R;
use crate::fs::pipe::wake_all;
use crate::kernel::sysv::{Got, Msg, Perm, SemOp, IPC_NOWAIT, MSGMAX, SEMMSL, SEMOPM, SEMVMX};
use crate::Vproc;

const IPC_RMID: i64 = 0;
const IPC_SET: i64 = 1;
const IPC_STAT: i64 = 2;
const IPC_INFO: i64 = 3;
const MSG_NOERROR: u64 = 0o10000;
const MSG_EXCEPT: u64 = 0o20000;
const MSG_COPY: u64 = 0o40000;

/// Seconds since the epoch, for the IPC objects' times.
pub(super) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// `struct ipc64_perm` (48 bytes) of `p`, with id sequence `id`.
fn perm_bytes(p: &Perm, id: i32) -> Vec<u8> {
    let mut b = Vec::with_capacity(48);
    b.extend_from_slice(&p.key.to_le_bytes());
    b.extend_from_slice(&[0u8; 16]); // uid, gid, cuid, cgid: root
    b.extend_from_slice(&u16::try_from(p.mode & 0o7777).unwrap_or(0).to_le_bytes());
    b.extend_from_slice(&[0u8; 2]);
    b.extend_from_slice(&u16::try_from(id / 32_768).unwrap_or(0).to_le_bytes());
    b.extend_from_slice(&[0u8; 2]);
    b.resize(48, 0);
    b
}

impl Vproc {
    /// The System V IPC calls: `(number, handler)` for the syscall table.
    pub(super) const SYSV_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_semget, |v, _nr, a| {
            v.sys_semget(int(a[0]), int(a[1]), int(a[2]))
        }),
        (libc::SYS_semop, |v, _nr, a| {
            v.sys_semop(int(a[0]), a[1], a[2], 0)
        }),
        (libc::SYS_semtimedop, |v, _nr, a| {
            v.sys_semop(int(a[0]), a[1], a[2], a[3])
        }),
        (libc::SYS_semctl, |v, _nr, a| {
            v.sys_semctl(int(a[0]), int(a[1]), i64::from(int(a[2]) & !0x100), a[3])
        }),
        (libc::SYS_msgget, |v, _nr, a| {
            v.sys_msgget(int(a[0]), int(a[1]))
        }),
        (libc::SYS_msgsnd, |v, _nr, a| {
            v.sys_msgsnd(int(a[0]), a[1], a[2], a[3])
        }),
        (libc::SYS_msgrcv, |v, _nr, a| {
            v.sys_msgrcv(int(a[0]), a[1], a[2], a[3] as i64, a[4])
        }),
        (libc::SYS_msgctl, |v, _nr, a| {
            v.sys_msgctl(int(a[0]), i64::from(int(a[1]) & !0x100), a[2])
        }),
    ];

    fn sys_semget(&mut self, key: i32, n: i32, flags: i32) -> R {
        let k = self.kernel()?;
        let mut v = k.sysv_lock();
        match v.lookup(false, key, flags)? {
            Got::Found(id) => {
                let have = v.sems.get(&id).map_or(0, |s| s.sems.len());
                if usize::try_from(n).is_ok_and(|n| n > have) {
                    return Err(EINVAL);
                }
                Ok(i64::from(id))
            }
            Got::Make => {
                let n = usize::try_from(n).map_err(|_| EINVAL)?;
                if n == 0 || n > SEMMSL {
                    return Err(EINVAL);
                }
                Ok(i64::from(v.make_sems(key, n, flags as u32, now())))
            }
        }
    }

    fn sys_semop(&mut self, id: i32, sops: u64, nsops: u64, timeout: u64) -> R {
        let n = usize::try_from(nsops).map_err(|_| EINVAL)?;
        if n == 0 {
            return Err(EINVAL);
        }
        if n > SEMOPM {
            return Err(E2BIG);
        }
        let raw = self.mm.read_vec(sops, n * 6)?;
        let ops: Vec<SemOp> = raw
            .chunks(6)
            .map(|c| SemOp {
                num: u16::from_le_bytes([c[0], c[1]]),
                op: i16::from_le_bytes([c[2], c[3]]),
                flg: i16::from_le_bytes([c[4], c[5]]),
            })
            .collect();
        let limit = if timeout != 0 {
            let t = self.mm.read_vec(timeout, 16)?;
            let s = i64::from_le_bytes(t[..8].try_into().expect("8 bytes"));
            let ns = i64::from_le_bytes(t[8..].try_into().expect("8 bytes"));
            if s < 0 || !(0..1_000_000_000).contains(&ns) {
                return Err(EINVAL);
            }
            Some(Duration::new(
                s.unsigned_abs(),
                u32::try_from(ns).unwrap_or(0),
            ))
        } else {
            None
        };
        let deadline = self.call_deadline(limit);
        let k = self.kernel()?;
        let mut v = k.sysv_lock();
        let done = v.semop(id, &ops, self.pid, self.thread.tgid, now())?;
        let set = v.sems.get_mut(&id).ok_or(EINVAL)?;
        if done {
            let w = set.waiters.take();
            drop(v);
            wake_all(w);
            return Ok(0);
        }
        let expired = deadline.is_some_and(|d| std::time::Instant::now() >= d);
        if ops.iter().any(|o| o.flg & IPC_NOWAIT != 0) || expired {
            set.waiting.retain(|w| w.0 != self.pid);
            set.waiters.remove(self.pid);
            return Err(EAGAIN);
        }
        set.waiters.add(self.pid, k.clone());
        drop(v);
        self.block()
    }

    fn sys_semctl(&mut self, id: i32, num: i32, cmd: i64, arg: u64) -> R {
        let k = self.kernel()?;
        let mut v = k.sysv_lock();
        if cmd == IPC_INFO || cmd == 19 {
            // IPC_INFO, SEM_INFO: struct seminfo (10 ints).
            let info: [i32; 10] = [
                32_000,
                32_000,
                500,
                1_024_000_000,
                500,
                32_000,
                250,
                256,
                32_767,
                0,
            ];
            let b: Vec<u8> = info.iter().flat_map(|x| x.to_le_bytes()).collect();
            drop(v);
            self.mm.write(arg, &b)?;
            return Ok(0);
        }
        if cmd == IPC_RMID {
            let w = v.remove(false, id).ok_or(EINVAL)?;
            drop(v);
            wake_all(w);
            return Ok(0);
        }
        let set = v.sems.get_mut(&id).ok_or(EINVAL)?;
        let count = set.sems.len();
        let sem = usize::try_from(num).ok().filter(|&i| i < count);
        let r = match cmd {
            IPC_STAT | 18 => {
                // struct semid64_ds.
                let mut b = perm_bytes(&set.perm, id);
                for x in [set.otime, 0, set.perm.ctime, 0, count as i64, 0, 0] {
                    b.extend_from_slice(&x.to_le_bytes());
                }
                drop(v);
                self.mm.write(arg, &b)?;
                return Ok(if cmd == 18 { i64::from(id) } else { 0 });
            }
            IPC_SET => {
                drop(v);
                let b = self.mm.read_vec(arg, 48)?;
                let mode = u16::from_le_bytes([b[20], b[21]]);
                let mut v = k.sysv_lock();
                let set = v.sems.get_mut(&id).ok_or(EINVAL)?;
                set.perm.mode = u32::from(mode) & 0o777;
                set.perm.ctime = now();
                return Ok(0);
            }
            11 => i64::from(set.sems[sem.ok_or(EINVAL)?].pid), // GETPID
            12 => i64::from(set.sems[sem.ok_or(EINVAL)?].val), // GETVAL
            13 => {
                // GETALL
                let b: Vec<u8> = set
                    .sems
                    .iter()
                    .flat_map(|s| u16::try_from(s.val).unwrap_or(0).to_le_bytes())
                    .collect();
                drop(v);
                self.mm.write(arg, &b)?;
                return Ok(0);
            }
            14 | 15 => {
                // GETNCNT, GETZCNT
                let i = u16::try_from(sem.ok_or(EINVAL)?).map_err(|_| EINVAL)?;
                v.count_waiting(id, i, cmd == 15) as i64
            }
            16 => {
                // SETVAL
                let i = sem.ok_or(EINVAL)?;
                let val = int(arg);
                if !(0..=SEMVMX).contains(&val) {
                    return Err(ERANGE);
                }
                set.sems[i].val = val;
                set.sems[i].pid = self.thread.tgid;
                set.perm.ctime = now();
                let w = set.waiters.take();
                v.clear_undo(id, u16::try_from(i).ok());
                drop(v);
                wake_all(w);
                0
            }
            17 => {
                // SETALL
                drop(v);
                let b = self.mm.read_vec(arg, count * 2)?;
                let vals: Vec<i32> = b
                    .chunks(2)
                    .map(|c| i32::from(u16::from_le_bytes([c[0], c[1]])))
                    .collect();
                if vals.iter().any(|&x| x > SEMVMX) {
                    return Err(ERANGE);
                }
                let mut v = k.sysv_lock();
                let set = v.sems.get_mut(&id).ok_or(EINVAL)?;
                for (s, x) in set.sems.iter_mut().zip(vals) {
                    s.val = x;
                    s.pid = self.thread.tgid;
                }
                set.perm.ctime = now();
                let w = set.waiters.take();
                v.clear_undo(id, None);
                drop(v);
                wake_all(w);
                0
            }
            _ => return Err(EINVAL),
        };
        Ok(r)
    }

    fn sys_msgget(&mut self, key: i32, flags: i32) -> R {
        let k = self.kernel()?;
        let mut v = k.sysv_lock();
        match v.lookup(true, key, flags)? {
            Got::Found(id) => Ok(i64::from(id)),
            Got::Make => Ok(i64::from(v.make_queue(key, flags as u32, now()))),
        }
    }

    fn sys_msgsnd(&mut self, id: i32, msgp: u64, size: u64, flags: u64) -> R {
        let size = usize::try_from(size).map_err(|_| EINVAL)?;
        if size > MSGMAX {
            return Err(EINVAL);
        }
        let b = self.mm.read_vec(msgp, 8 + size)?;
        let mtype = i64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        if mtype < 1 {
            return Err(EINVAL);
        }
        let k = self.kernel()?;
        let mut v = k.sysv_lock();
        if !v.msgs.contains_key(&id) {
            return Err(v.missing(id, self.pid));
        }
        let q = v.msgs.get_mut(&id).ok_or(EINVAL)?;
        if q.bytes() + size > q.max_bytes || q.msgs.len() >= q.max_bytes {
            if flags & IPC_NOWAIT as u64 != 0 {
                return Err(EAGAIN);
            }
            q.waiters.add(self.pid, k.clone());
            drop(v);
            return self.block();
        }
        q.msgs.push_back(Msg {
            mtype,
            text: b[8..].to_vec(),
        });
        q.last[0] = (self.thread.tgid, now());
        let w = q.waiters.take();
        drop(v);
        wake_all(w);
        Ok(0)
    }

    fn sys_msgrcv(&mut self, id: i32, msgp: u64, size: u64, mtype: i64, flags: u64) -> R {
        if flags & MSG_COPY != 0 {
            // Checkpoint/restore's peek by index: not offered.
            return Err(EINVAL);
        }
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s <= i32::MAX as usize)
            .ok_or(EINVAL)?;
        let k = self.kernel()?;
        let mut v = k.sysv_lock();
        if !v.msgs.contains_key(&id) {
            return Err(v.missing(id, self.pid));
        }
        let q = v.msgs.get_mut(&id).ok_or(EINVAL)?;
        let Some(i) = q.pick(mtype, flags & MSG_EXCEPT != 0) else {
            if flags & IPC_NOWAIT as u64 != 0 {
                return Err(ENOMSG);
            }
            q.waiters.add(self.pid, k.clone());
            drop(v);
            return self.block();
        };
        if q.msgs[i].text.len() > size && flags & MSG_NOERROR == 0 {
            return Err(E2BIG);
        }
        let m = q.msgs.remove(i).expect("picked");
        q.last[1] = (self.thread.tgid, now());
        let w = q.waiters.take();
        drop(v);
        wake_all(w);
        let n = m.text.len().min(size);
        let mut b = m.mtype.to_le_bytes().to_vec();
        b.extend_from_slice(&m.text[..n]);
        // The message is gone from the queue even if the copy faults, as
        // on Linux.
        self.mm.write(msgp, &b)?;
        Ok(n as i64)
    }

    fn sys_msgctl(&mut self, id: i32, cmd: i64, buf: u64) -> R {
        let k = self.kernel()?;
        let mut v = k.sysv_lock();
        match cmd {
            IPC_INFO | 12 => {
                // IPC_INFO, MSG_INFO: struct msginfo (7 ints and a short).
                let info: [i32; 8] = [0, 0, 8192, 16_384, 32_000, 0, 8, 0];
                let b: Vec<u8> = info.iter().flat_map(|x| x.to_le_bytes()).collect();
                drop(v);
                self.mm.write(buf, &b[..30])?;
                Ok(0)
            }
            IPC_RMID => {
                let w = v.remove(true, id).ok_or(EINVAL)?;
                drop(v);
                wake_all(w);
                Ok(0)
            }
            IPC_STAT | 11 => {
                let q = v.msgs.get(&id).ok_or(EINVAL)?;
                let mut b = perm_bytes(&q.perm, id);
                for x in [
                    q.last[0].1,
                    q.last[1].1,
                    q.perm.ctime,
                    q.bytes() as i64,
                    q.msgs.len() as i64,
                    q.max_bytes as i64,
                ] {
                    b.extend_from_slice(&x.to_le_bytes());
                }
                b.extend_from_slice(&q.last[0].0.to_le_bytes());
                b.extend_from_slice(&q.last[1].0.to_le_bytes());
                b.resize(120, 0);
                drop(v);
                self.mm.write(buf, &b)?;
                Ok(if cmd == 11 { i64::from(id) } else { 0 })
            }
            IPC_SET => {
                drop(v);
                let b = self.mm.read_vec(buf, 120)?;
                let mode = u16::from_le_bytes([b[20], b[21]]);
                let qbytes = u64::from_le_bytes(b[88..96].try_into().expect("8 bytes"));
                let mut v = k.sysv_lock();
                let q = v.msgs.get_mut(&id).ok_or(EINVAL)?;
                q.perm.mode = u32::from(mode) & 0o777;
                q.max_bytes = usize::try_from(qbytes).unwrap_or(usize::MAX).min(1 << 24);
                q.perm.ctime = now();
                let w = q.waiters.take();
                drop(v);
                wake_all(w);
                Ok(0)
            }
            _ => Err(EINVAL),
        }
    }
}
