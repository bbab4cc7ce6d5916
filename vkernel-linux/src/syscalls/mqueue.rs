//! POSIX message queues: mq_open, mq_unlink, mq_timedsend,
//! mq_timedreceive (blocking with an absolute CLOCK_REALTIME timeout),
//! mq_notify (SIGEV_SIGNAL, SIGEV_NONE) and mq_getsetattr; a queue's fd
//! reads as Linux's status line and polls like Linux's. The queues are
//! [`crate::fs::mqueue`].

use std::time::Instant;

use super::errno::*;
use super::table::Handler;
use super::{int, uint32, R};
use crate::files::{self, FileKind, OpenFile, Shared};
use crate::fs::mqueue::{self, MsgQueue, Notify};
use crate::signal::SigInfo;
use crate::Vproc;

/// si_code of a message-queue notification (SI_MESGQ).
const SI_MESGQ: i32 = -3;
/// Size of `struct mq_attr` (four longs and four reserved).
const ATTR_SIZE: usize = 64;

impl Vproc {
    /// The message-queue calls: `(number, handler)` for the syscall
    /// table ([`super::table`]).
    pub(super) const MQUEUE_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_mq_open, |v, _nr, a| {
            v.sys_mq_open(a[0], uint32(a[1]), uint32(a[2]), a[3])
        }),
        (libc::SYS_mq_unlink, |v, _nr, a| v.sys_mq_unlink(a[0])),
        (libc::SYS_mq_timedsend, |v, _nr, a| {
            v.sys_mq_timedsend(int(a[0]), a[1], a[2], a[3], a[4])
        }),
        (libc::SYS_mq_timedreceive, |v, _nr, a| {
            v.sys_mq_timedreceive(int(a[0]), a[1], a[2], a[3], a[4])
        }),
        (libc::SYS_mq_notify, |v, _nr, a| {
            v.sys_mq_notify(int(a[0]), a[1])
        }),
        (libc::SYS_mq_getsetattr, |v, _nr, a| {
            v.sys_mq_getsetattr(int(a[0]), a[1], a[2])
        }),
    ];

    /// A queue name from the vproc (glibc passes it without its `/`): no
    /// `/` inside (EACCES), not empty (ENOENT), at most NAME_MAX bytes.
    fn mq_name(&mut self, p: u64) -> Result<Vec<u8>, i64> {
        let name = self.user_path(p)?;
        if name.len() > 255 {
            return Err(ENAMETOOLONG);
        }
        if name.is_empty() || name == b"." || name == b".." {
            return Err(ENOENT);
        }
        if name.contains(&b'/') {
            return Err(EACCES);
        }
        Ok(name)
    }

    fn sys_mq_open(&mut self, name: u64, flags: u32, mode: u32, attr: u64) -> R {
        let name = self.mq_name(name)?;
        let acc = flags & files::O_ACCMODE;
        if acc == files::O_ACCMODE {
            return Err(EINVAL);
        }
        let (maxmsg, msgsize) = if flags & files::O_CREAT != 0 && attr != 0 {
            let a = self.mm.read_vec(attr, ATTR_SIZE)?;
            let long = |i: usize| i64::from_le_bytes(a[i * 8..i * 8 + 8].try_into().expect("8"));
            let (Ok(m), Ok(s)) = (usize::try_from(long(1)), usize::try_from(long(2))) else {
                return Err(EINVAL);
            };
            if m == 0 || s == 0 || m > mqueue::HARD_MAXMSG || s > mqueue::HARD_MSGSIZE {
                return Err(EINVAL);
            }
            if m.saturating_mul(s) > mqueue::QUEUE_BYTES_MAX {
                return Err(libc::EMFILE as i64);
            }
            (m, s)
        } else {
            (mqueue::DEFAULT_MAXMSG, mqueue::DEFAULT_MSGSIZE)
        };
        let q = if flags & files::O_CREAT != 0 {
            let mode = mode & 0o777 & !self.umask;
            let (q, made) = self
                .fs
                .mqueues()
                .get_or_create(&name, || MsgQueue::new(maxmsg, msgsize, mode));
            if !made && flags & files::O_EXCL != 0 {
                return Err(EEXIST);
            }
            q
        } else {
            self.fs.mqueues().get(&name).ok_or(ENOENT)?
        };
        let keep = flags & (files::O_ACCMODE | files::O_NONBLOCK);
        let mut path = b"/".to_vec();
        path.extend_from_slice(&name);
        let f = OpenFile::new(FileKind::MsgQueue(q), keep, &path);
        self.install_file(f, flags)
    }

    fn sys_mq_unlink(&mut self, name: u64) -> R {
        let name = self.mq_name(name)?;
        if self.fs.mqueues().unlink(&name) {
            Ok(0)
        } else {
            Err(ENOENT)
        }
    }

    /// The queue open as `fd` and whether the description is
    /// non-blocking; EBADF unless it is a queue open for `write` (true)
    /// or reading.
    fn mq_of(&self, fd: i64, write: Option<bool>) -> Result<(Shared<MsgQueue>, bool), i64> {
        let file = self.fds.get(fd)?.file.clone();
        let f = file.borrow();
        let FileKind::MsgQueue(q) = &f.kind else {
            return Err(EBADF);
        };
        let acc = f.flags & files::O_ACCMODE;
        match write {
            Some(true) if acc == 0 => return Err(EBADF),
            Some(false) if acc == files::O_WRONLY => return Err(EBADF),
            _ => {}
        }
        Ok((q.clone(), f.flags & files::O_NONBLOCK != 0))
    }

    /// The deadline of an absolute CLOCK_REALTIME timeout (0: none);
    /// EINVAL for a malformed one.
    fn mq_deadline(&mut self, abs: u64) -> Result<Option<Instant>, i64> {
        if abs == 0 {
            return Ok(None);
        }
        let at = super::events::timespec_abs(&self.mm.read_vec(abs, 16)?)?;
        let left = super::events::until_on_clock(libc::CLOCK_REALTIME, at);
        Ok(self.call_deadline(Some(left)))
    }

    fn sys_mq_timedsend(&mut self, fd: i64, msg: u64, len: u64, prio: u64, abs: u64) -> R {
        let (q, nonblock) = self.mq_of(fd, Some(true))?;
        let prio = u32::try_from(prio)
            .ok()
            .filter(|&p| p < mqueue::PRIO_MAX)
            .ok_or(EINVAL)?;
        let msgsize = q.borrow().msgsize;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= msgsize)
            .ok_or(EMSGSIZE)?;
        let data = self.mm.read_vec(msg, len)?;
        let mut g = q.borrow_mut();
        if g.is_full() {
            if nonblock {
                return Err(EAGAIN);
            }
            drop(g);
            let deadline = self.mq_deadline(abs)?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ETIMEDOUT);
            }
            let k = self.kernel()?;
            q.borrow_mut().wait(self.pid, k);
            return self.block();
        }
        let note = g.send(prio, &data);
        let w = g.take_waiters();
        drop(g);
        files::wake_all(w);
        if let Some(n) = note {
            self.mq_notify_fire(n);
        }
        Ok(0)
    }

    /// Send a notification's signal to its process.
    fn mq_notify_fire(&mut self, n: Notify) {
        if n.how != 0 || n.signo == 0 {
            return;
        }
        let info = SigInfo {
            signo: n.signo,
            code: SI_MESGQ,
            pid: self.thread.tgid,
            value: n.value,
            ..Default::default()
        };
        let _ = self.kill_info(n.pid, info);
    }

    fn sys_mq_timedreceive(&mut self, fd: i64, msg: u64, len: u64, prio: u64, abs: u64) -> R {
        let (q, nonblock) = self.mq_of(fd, Some(false))?;
        let mut g = q.borrow_mut();
        if len < g.msgsize as u64 {
            return Err(EMSGSIZE);
        }
        let Some((p, data)) = g.receive() else {
            if nonblock {
                return Err(EAGAIN);
            }
            drop(g);
            let deadline = self.mq_deadline(abs)?;
            let mut g = q.borrow_mut();
            if deadline.is_some_and(|d| Instant::now() >= d) {
                g.receiving.retain(|&r| r != self.pid);
                return Err(ETIMEDOUT);
            }
            let k = self.kernel()?;
            g.wait(self.pid, k);
            if !g.receiving.contains(&self.pid) {
                g.receiving.push(self.pid);
            }
            drop(g);
            return self.block();
        };
        g.receiving.retain(|&r| r != self.pid);
        let w = g.take_waiters();
        drop(g);
        files::wake_all(w);
        // The message is taken: a fault writing it out loses it, as on
        // Linux (the copy happens after the dequeue there too).
        self.mm.write(msg, &data)?;
        if prio != 0 {
            self.mm.write(prio, &p.to_le_bytes())?;
        }
        Ok(data.len() as i64)
    }

    /// A receive interrupted by a signal no longer waits (notifications
    /// may be sent again).
    pub(super) fn mq_receive_cancel(&mut self, fd: i64) {
        if let Ok((q, _)) = self.mq_of(fd, None) {
            q.borrow_mut().receiving.retain(|&r| r != self.pid);
        }
    }

    fn sys_mq_notify(&mut self, fd: i64, sev: u64) -> R {
        let (q, _) = self.mq_of(fd, None)?;
        let me = self.thread.tgid;
        if sev == 0 {
            let mut g = q.borrow_mut();
            if g.notify.is_some_and(|n| n.pid == me) {
                g.notify = None;
            }
            return Ok(0);
        }
        // struct sigevent: sigev_value (8), sigev_signo (4), sigev_notify (4).
        let b = self.mm.read_vec(sev, 16)?;
        let value = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let signo = i32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
        let how = i32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
        match how {
            0 if !(1..=64).contains(&signo) => return Err(EINVAL),
            0 | 1 => {}
            // SIGEV_THREAD needs glibc's netlink notification socket,
            // which this vkernel does not offer.
            _ => return Err(EINVAL),
        }
        let mut g = q.borrow_mut();
        if g.notify.is_some() {
            return Err(EBUSY);
        }
        g.notify = Some(Notify {
            pid: me,
            how,
            signo,
            value,
        });
        Ok(0)
    }

    fn sys_mq_getsetattr(&mut self, fd: i64, new: u64, old: u64) -> R {
        let (q, _) = self.mq_of(fd, None)?;
        let file = self.fds.get(fd)?.file.clone();
        let set = if new != 0 {
            let a = self.mm.read_vec(new, ATTR_SIZE)?;
            Some(i64::from_le_bytes(a[..8].try_into().expect("8 bytes")))
        } else {
            None
        };
        if old != 0 {
            let flags = (file.borrow().flags & files::O_NONBLOCK) as i64;
            let g = q.borrow();
            let mut a = [0u8; ATTR_SIZE];
            for (i, v) in [flags, g.maxmsg as i64, g.msgsize as i64, g.len() as i64]
                .into_iter()
                .enumerate()
            {
                a[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
            }
            drop(g);
            self.mm.write(old, &a)?;
        }
        if let Some(fl) = set {
            let mut f = file.borrow_mut();
            if fl & i64::from(files::O_NONBLOCK) != 0 {
                f.flags |= files::O_NONBLOCK;
            } else {
                f.flags &= !files::O_NONBLOCK;
            }
        }
        Ok(0)
    }
}
