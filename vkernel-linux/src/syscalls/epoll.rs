//! eventfd, timerfd and epoll: eventfd/eventfd2 make counters (read and
//! written in [`super::stream`]); timerfd_create/settime/gettime make
//! timers a read collects expirations of (on the host's clock; a waiter
//! wakes at the next expiration, [`Vproc::wake_by`]); epoll_create/epoll_create1, epoll_ctl and
//! epoll_wait/epoll_pwait/epoll_pwait2 watch any fd kind the vkernel has
//! (pipes, sockets, eventfds, the console, files, other epoll sets), level
//! or edge triggered, with EPOLLONESHOT.
//!
//! An epoll set refers to open file descriptions, weakly: an item leaves
//! the set when the last fd of its description closes, and a forked child
//! shares the set. Edge-triggered items report a ready file again only
//! after its object moved ([`super::ready::file_seq`]). Waiting registers
//! on every watched object and retries, like poll.

use std::time::{Duration, Instant};

use super::errno::*;
use super::events::{encode_timespec, timespec, timespec_abs, until_on_clock};
use super::ready::{poll_with, seq_with, Look};
use super::table::Handler;
use super::{int, R};
use crate::files::{
    self, epoll_flags::*, Epoll, EpollItem, EventFd, FileKind, OpenFile, Shared, TimerFd,
};
use crate::Vproc;

/// EFD_SEMAPHORE.
const EFD_SEMAPHORE: u64 = 1;
/// EPOLL_CTL_ADD.
const CTL_ADD: u64 = 1;
/// EPOLL_CTL_DEL.
const CTL_DEL: u64 = 2;
/// EPOLL_CTL_MOD.
const CTL_MOD: u64 = 3;
/// Size of a struct epoll_event (packed on x86-64).
pub(crate) const EVENT_SIZE: usize = 12;
/// The most events one epoll_wait returns (Linux: INT_MAX / 12).
pub(crate) const MAX_EVENTS: i64 = (i32::MAX / 12) as i64;

impl Vproc {
    /// The eventfd and epoll calls: `(number, handler)` for the syscall
    /// table.
    pub(super) const EPOLL_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_eventfd, |v, _nr, a| v.sys_eventfd2(a[0], 0)),
        (libc::SYS_eventfd2, |v, _nr, a| v.sys_eventfd2(a[0], a[1])),
        (libc::SYS_epoll_create, |v, _nr, a| {
            if int(a[0]) <= 0 {
                return Err(EINVAL);
            }
            v.sys_epoll_create1(0)
        }),
        (libc::SYS_epoll_create1, |v, _nr, a| {
            v.sys_epoll_create1(a[0])
        }),
        (libc::SYS_signalfd, |v, _nr, a| {
            v.sys_signalfd4(int(a[0]), a[1], a[2], 0)
        }),
        (libc::SYS_signalfd4, |v, _nr, a| {
            v.sys_signalfd4(int(a[0]), a[1], a[2], a[3])
        }),
        (libc::SYS_timerfd_create, |v, _nr, a| {
            v.sys_timerfd_create(int(a[0]), a[1])
        }),
        (libc::SYS_timerfd_settime, |v, _nr, a| {
            v.sys_timerfd_settime(int(a[0]), a[1], a[2], a[3])
        }),
        (libc::SYS_timerfd_gettime, |v, _nr, a| {
            v.sys_timerfd_gettime(int(a[0]), a[1])
        }),
        (libc::SYS_epoll_ctl, |v, _nr, a| {
            v.sys_epoll_ctl(int(a[0]), a[1], int(a[2]), a[3])
        }),
        (libc::SYS_epoll_wait, |v, _nr, a| {
            let t = (int(a[3]) >= 0).then(|| Duration::from_millis(int(a[3]) as u64));
            v.sys_epoll_wait(int(a[0]), a[1], int(a[2]), t, None)
        }),
        (libc::SYS_epoll_pwait, |v, _nr, a| {
            let t = (int(a[3]) >= 0).then(|| Duration::from_millis(int(a[3]) as u64));
            let mask = v.read_sigmask(a[4], a[5])?;
            v.sys_epoll_wait(int(a[0]), a[1], int(a[2]), t, mask)
        }),
        (libc::SYS_epoll_pwait2, |v, _nr, a| {
            let t = if a[3] != 0 {
                Some(timespec(&v.mm.read_vec(a[3], 16)?)?)
            } else {
                None
            };
            let mask = v.read_sigmask(a[4], a[5])?;
            v.sys_epoll_wait(int(a[0]), a[1], int(a[2]), t, mask)
        }),
    ];

    /// eventfd2(initval, flags).
    fn sys_eventfd2(&mut self, initval: u64, flags: u64) -> R {
        let known = EFD_SEMAPHORE | u64::from(files::O_NONBLOCK | files::O_CLOEXEC);
        if flags & !known != 0 {
            return Err(EINVAL);
        }
        // eventfd's initval is an unsigned int: the low 32 bits.
        let e = EventFd::new((initval & 0xffff_ffff) as u32, flags & EFD_SEMAPHORE != 0);
        let st = files::O_RDWR
            | if flags & u64::from(files::O_NONBLOCK) != 0 {
                files::O_NONBLOCK
            } else {
                0
            };
        let cloexec = flags & u64::from(files::O_CLOEXEC) != 0;
        let file = OpenFile::new(
            FileKind::EventFd(Shared::new(e)),
            st,
            b"anon_inode:[eventfd]",
        );
        self.install_file(file, if cloexec { files::O_CLOEXEC } else { 0 })
    }

    /// epoll_create1(flags).
    fn sys_epoll_create1(&mut self, flags: u64) -> R {
        if flags & !u64::from(files::O_CLOEXEC) != 0 {
            return Err(EINVAL);
        }
        let file = OpenFile::new(
            FileKind::Epoll(Shared::new(Epoll::default())),
            files::O_RDWR,
            b"anon_inode:[eventpoll]",
        );
        let cloexec = if flags != 0 { files::O_CLOEXEC } else { 0 };
        self.install_file(file, cloexec)
    }

    /// The epoll set of `epfd` (EBADF when not open, EINVAL when not an
    /// epoll fd).
    fn epoll_of(&self, epfd: i64) -> Result<(Shared<OpenFile>, Shared<Epoll>), i64> {
        let file = self.fds.get(epfd)?.file.clone();
        let ep = match &file.borrow().kind {
            FileKind::Epoll(ep) => ep.clone(),
            _ => return Err(EINVAL),
        };
        Ok((file, ep))
    }

    /// epoll_ctl(epfd, op, fd, event).
    fn sys_epoll_ctl(&mut self, epfd: i64, op: u64, fd: i64, event: u64) -> R {
        // Linux's order: both fds open, the target pollable, then epfd an
        // epoll set.
        self.fds.get(epfd)?;
        let target = self.fds.get(fd)?.file.clone();
        if !self.pollable(&target.borrow()) {
            return Err(EPERM);
        }
        let (epfile, ep) = self.epoll_of(epfd)?;
        if epfd == fd || target.ptr_eq(&epfile) {
            return Err(EINVAL);
        }
        if let FileKind::Epoll(inner) = &target.borrow().kind {
            if contains(inner, &ep, 0) {
                return Err(ELOOP);
            }
        }
        let (events, data) = if op == CTL_DEL {
            (0, 0)
        } else {
            let b = self.mm.read_vec(event, EVENT_SIZE)?;
            (
                u32::from_le_bytes(b[..4].try_into().expect("4 bytes")),
                u64::from_le_bytes(b[4..12].try_into().expect("8 bytes")),
            )
        };
        let mut set = ep.borrow_mut();
        let at = set
            .items
            .iter()
            .position(|i| i.fd as i64 == fd && i.file.upgrade().is_some_and(|f| f.ptr_eq(&target)));
        match (op, at) {
            (CTL_ADD, Some(_)) => Err(EEXIST),
            (CTL_ADD, None) => {
                set.items.retain(|i| i.file.upgrade().is_some());
                set.items.push(EpollItem {
                    fd: i32::try_from(fd).map_err(|_| EBADF)?,
                    file: target.downgrade(),
                    events,
                    data,
                    disabled: false,
                    seen: None,
                });
                Ok(0)
            }
            (CTL_MOD, Some(i)) => {
                if set.items[i].events & EPOLLEXCLUSIVE != 0 {
                    return Err(EINVAL);
                }
                let it = &mut set.items[i];
                it.events = events;
                it.data = data;
                it.disabled = false;
                it.seen = None;
                Ok(0)
            }
            (CTL_DEL, Some(i)) => {
                set.items.remove(i);
                Ok(0)
            }
            (CTL_MOD | CTL_DEL, None) => Err(ENOENT),
            _ => Err(EINVAL),
        }
    }

    /// Can epoll watch `f`? Not regular files and directories (always
    /// ready: Linux refuses them), nor fds 0-2 when the host's are such
    /// files.
    fn pollable(&self, f: &OpenFile) -> bool {
        let n = match f.kind {
            FileKind::Inode(_) => return false,
            FileKind::Stdin => 0,
            FileKind::Stdout => 1,
            FileKind::Stderr => 2,
            _ => return true,
        };
        let Some(h) = self.stdio.host_fd(n) else {
            // Memory buffers: like pipes.
            return true;
        };
        // SAFETY: an all-zero stat is a valid value for fstat to fill; `h`
        // is one of this process's fds 0-2.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a valid, writable struct stat.
        if unsafe { libc::fstat(h, &mut st) } != 0 {
            return true;
        }
        !matches!(st.st_mode & libc::S_IFMT, libc::S_IFREG | libc::S_IFDIR)
    }

    /// epoll_wait and its p-forms: `timeout` None waits forever; `mask`
    /// is epoll_pwait's temporary signal mask.
    fn sys_epoll_wait(
        &mut self,
        epfd: i64,
        events: u64,
        max: i64,
        timeout: Option<Duration>,
        mask: Option<u64>,
    ) -> R {
        if max <= 0 || max > MAX_EVENTS {
            return Err(EINVAL);
        }
        let (_, ep) = self.epoll_of(epfd)?;
        // 0 < max <= MAX_EVENTS: it fits.
        let max = usize::try_from(max).map_err(|_| EINVAL)?;
        let bytes = max * EVENT_SIZE;
        if events
            .checked_add(bytes as u64)
            .is_none_or(|e| e > crate::mm::USER_END)
        {
            return Err(EFAULT);
        }
        let deadline = self.call_deadline(timeout);
        self.temp_mask(mask);
        if mask.is_some() && self.signal_deliverable_now() {
            return Err(EINTR);
        }
        let expired = deadline.is_some_and(|d| Instant::now() >= d);
        if !expired {
            // Register before looking: a change in between wakes us.
            let files: Vec<_> = ep.borrow().items.iter().map(|i| i.file.clone()).collect();
            for f in files.iter().filter_map(|f| f.upgrade()) {
                let w = self.watch_file(&f.borrow(), 1);
                self.wait_also(w);
            }
        }
        let ready = collect_ready(&self.look(), &ep, max).unwrap_or_default();
        if ready.is_empty() && !expired {
            return self.block();
        }
        self.restore_temp_mask(mask.is_some());
        commit_ready(&ep, &ready, false);
        self.mm.write(events, &encode_events(&ready))?;
        Ok(ready.len() as i64)
    }
}

/// A ready item of an epoll set, as collected (not yet marked reported).
pub(crate) struct Ready {
    /// Its events.
    pub(crate) events: u32,
    /// Its user data.
    pub(crate) data: u64,
    /// Its place in the set.
    index: usize,
    /// The file's change count (edge-triggered items).
    seq: Option<u64>,
    /// EPOLLONESHOT: disabled once reported.
    oneshot: bool,
}

/// `ready` as struct epoll_event bytes (packed: events, then data).
pub(crate) fn encode_events(ready: &[Ready]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ready.len() * EVENT_SIZE);
    for r in ready {
        out.extend_from_slice(&r.events.to_le_bytes());
        out.extend_from_slice(&r.data.to_le_bytes());
    }
    out
}

/// The set's ready items by `look`, at most `max`, starting after the
/// last call's first item (None: `look` could not tell). Nothing is
/// marked reported until [`commit_ready`].
pub(crate) fn collect_ready(look: &Look<'_>, ep: &Shared<Epoll>, max: usize) -> Option<Vec<Ready>> {
    // Look at the files with the set unlocked (a file may be another
    // set, which may look at this one).
    let snapshot: Vec<_> = {
        let mut set = if look.try_only {
            ep.try_borrow()?
        } else {
            ep.borrow_mut()
        };
        set.items.retain(|i| i.file.upgrade().is_some());
        let n = set.items.len();
        let start = if n == 0 { 0 } else { set.cursor % n };
        set.cursor = start + 1;
        (0..n)
            .map(|k| (start + k) % n)
            .map(|i| {
                let it = &set.items[i];
                (i, it.file.clone(), it.events, it.disabled, it.seen, it.data)
            })
            .collect()
    };
    let mut ready = Vec::new();
    for (index, file, want, disabled, seen, data) in snapshot {
        if ready.len() >= max {
            break;
        }
        if disabled {
            continue;
        }
        let Some(file) = file.upgrade() else { continue };
        let (have, seq) = {
            let f = if look.try_only {
                file.try_borrow()?
            } else {
                file.borrow()
            };
            (u32::from(poll_with(look, &f, 1)?), seq_with(look, &f)?)
        };
        let events =
            have & (want | EPOLLERR | EPOLLHUP) & !(EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE);
        if events == 0 {
            continue;
        }
        if want & EPOLLET != 0 && seq.is_some() && seq == seen {
            continue;
        }
        ready.push(Ready {
            events,
            data,
            index,
            seq,
            oneshot: want & EPOLLONESHOT != 0,
        });
    }
    Some(ready)
}

/// Mark `ready` reported: edge-triggered items remember the change count
/// they were reported at, one-shot items are disabled (None: `try_only`
/// and the set was busy).
pub(crate) fn commit_ready(ep: &Shared<Epoll>, ready: &[Ready], try_only: bool) -> Option<()> {
    let mut set = if try_only {
        ep.try_borrow()?
    } else {
        ep.borrow_mut()
    };
    for r in ready {
        if let Some(it) = set.items.get_mut(r.index) {
            it.seen = r.seq;
            if r.oneshot {
                it.disabled = true;
            }
        }
    }
    Some(())
}

/// TFD_TIMER_ABSTIME.
const TFD_TIMER_ABSTIME: u64 = 1;
/// TFD_TIMER_CANCEL_ON_SET (refused: the vkernel does not see the
/// host's clock being set).
const TFD_TIMER_CANCEL_ON_SET: u64 = 2;

impl Vproc {
    /// timerfd_create(clockid, flags).
    fn sys_timerfd_create(&mut self, clock: i64, flags: u64) -> R {
        let clock = match clock {
            0 => libc::CLOCK_REALTIME,
            1 => libc::CLOCK_MONOTONIC,
            7 => libc::CLOCK_BOOTTIME,
            // The _ALARM clocks need CAP_WAKE_ALARM.
            8 | 9 => return Err(EPERM),
            _ => return Err(EINVAL),
        };
        if flags & !u64::from(files::O_NONBLOCK | files::O_CLOEXEC) != 0 {
            return Err(EINVAL);
        }
        let st = files::O_RDWR
            | if flags & u64::from(files::O_NONBLOCK) != 0 {
                files::O_NONBLOCK
            } else {
                0
            };
        let file = OpenFile::new(
            FileKind::TimerFd(Shared::new(TimerFd::new(clock))),
            st,
            b"anon_inode:[timerfd]",
        );
        let cloexec = if flags & u64::from(files::O_CLOEXEC) != 0 {
            files::O_CLOEXEC
        } else {
            0
        };
        self.install_file(file, cloexec)
    }

    /// The timer of `fd` (EBADF; EINVAL when not a timerfd).
    fn timer_of(&self, fd: i64) -> Result<Shared<TimerFd>, i64> {
        let file = self.fds.get(fd)?.file.clone();
        let f = file.borrow();
        match &f.kind {
            FileKind::TimerFd(t) => Ok(t.clone()),
            _ => Err(EINVAL),
        }
    }

    /// Write an itimerspec {interval, value} at `p`.
    pub(super) fn put_itimerspec(
        &mut self,
        p: u64,
        (left, interval): (Duration, Duration),
    ) -> Result<(), i64> {
        let mut b = encode_timespec(interval).to_vec();
        b.extend_from_slice(&encode_timespec(left));
        self.mm.write(p, &b)?;
        Ok(())
    }

    /// timerfd_settime(fd, flags, new, old).
    fn sys_timerfd_settime(&mut self, fd: i64, flags: u64, new: u64, old: u64) -> R {
        if flags & !(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET) != 0 {
            return Err(EINVAL);
        }
        let t = self.timer_of(fd)?;
        let b = self.mm.read_vec(new, 32)?;
        let interval = timespec(&b[..16])?;
        let value = timespec_abs(&b[16..])?;
        if flags & TFD_TIMER_CANCEL_ON_SET != 0 {
            return Err(EINVAL);
        }
        let clock = t.borrow().clock;
        let value = if value.is_zero() {
            None
        } else if flags & TFD_TIMER_ABSTIME != 0 {
            Some(until_on_clock(clock, value))
        } else {
            Some(value.min(Duration::from_secs(366 * 86400)))
        };
        let (prev, w) = {
            let mut tm = t.borrow_mut();
            let prev = tm.set(Instant::now(), value, interval);
            (prev, tm.take_waiters())
        };
        // Waiters recompute when to wake.
        files::wake_all(w);
        if old != 0 {
            self.put_itimerspec(old, prev)?;
        }
        Ok(0)
    }

    /// timerfd_gettime(fd, cur).
    fn sys_timerfd_gettime(&mut self, fd: i64, cur: u64) -> R {
        let t = self.timer_of(fd)?;
        let now = t.borrow_mut().get(Instant::now());
        self.put_itimerspec(cur, now)?;
        Ok(0)
    }

    /// read(2) of a timerfd: 8 bytes, the expirations since the last read.
    pub(super) fn timerfd_read(
        &mut self,
        t: &Shared<TimerFd>,
        nonblock: bool,
        data: &mut [u8],
    ) -> Result<usize, i64> {
        if data.len() < 8 {
            return Err(EINVAL);
        }
        let mut tm = t.borrow_mut();
        if let Some(n) = tm.read(Instant::now()) {
            data[..8].copy_from_slice(&n.to_le_bytes());
            return Ok(8);
        }
        if nonblock {
            return Err(EAGAIN);
        }
        let k = self.kernel()?;
        tm.wait(self.pid, k);
        let next = tm.next;
        drop(tm);
        if let Some(n) = next {
            self.wake_by(n);
        }
        self.block().map(|_| 0)
    }
}

/// Does the set `outer` (or a set inside it) contain `inner`?
fn contains(outer: &Shared<Epoll>, inner: &Shared<Epoll>, depth: u32) -> bool {
    if outer.ptr_eq(inner) {
        return true;
    }
    if depth >= super::ready::EPOLL_MAX_NESTS {
        return true;
    }
    let files: Vec<_> = outer
        .borrow()
        .items
        .iter()
        .map(|i| i.file.clone())
        .collect();
    files
        .iter()
        .filter_map(|f| f.upgrade())
        .any(|f| match &f.borrow().kind {
            FileKind::Epoll(e) => contains(e, inner, depth + 1),
            _ => false,
        })
}

/// sizeof(struct signalfd_siginfo).
const SIGNALFD_SIGINFO: usize = 128;

impl Vproc {
    /// signalfd4(fd, mask, sizemask, flags): a new signalfd (fd -1) or a
    /// new mask for an existing one. SIGKILL and SIGSTOP are never taken.
    fn sys_signalfd4(&mut self, fd: i64, mask: u64, size: u64, flags: u64) -> R {
        if size != 8 {
            return Err(EINVAL);
        }
        if flags & !u64::from(files::O_NONBLOCK | files::O_CLOEXEC) != 0 {
            return Err(EINVAL);
        }
        let never =
            crate::signal::bit(crate::signal::SIGKILL) | crate::signal::bit(crate::signal::SIGSTOP);
        let mask = self.mm.read_u64(mask)? & !never;
        if fd != -1 {
            let file = self.fds.get(fd)?.file.clone();
            let f = file.borrow();
            let FileKind::SignalFd(sf) = &f.kind else {
                return Err(EINVAL);
            };
            sf.borrow_mut().mask = mask;
            return Ok(fd);
        }
        let st = files::O_RDWR
            | if flags & u64::from(files::O_NONBLOCK) != 0 {
                files::O_NONBLOCK
            } else {
                0
            };
        let file = OpenFile::new(
            FileKind::SignalFd(Shared::new(files::SignalFd { mask })),
            st,
            b"anon_inode:[signalfd]",
        );
        let cloexec = if flags & u64::from(files::O_CLOEXEC) != 0 {
            files::O_CLOEXEC
        } else {
            0
        };
        self.install_file(file, cloexec)
    }

    /// read(2) of a signalfd: a struct signalfd_siginfo for each pending
    /// signal of `mask` that fits (this thread's, then its process's).
    pub(super) fn signalfd_read(
        &mut self,
        mask: u64,
        nonblock: bool,
        data: &mut [u8],
    ) -> Result<usize, i64> {
        if data.len() < SIGNALFD_SIGINFO {
            return Err(EINVAL);
        }
        let mut n = 0;
        while n + SIGNALFD_SIGINFO <= data.len() {
            let got = match crate::signal::next_index(&self.sig.pending, mask) {
                Some(i) => Some(self.sig.pending.remove(i)),
                None => self
                    .k
                    .clone()
                    .and_then(|k| k.take_shared_one(self.thread.tgid, mask)),
            };
            let Some(s) = got else { break };
            data[n..n + SIGNALFD_SIGINFO].copy_from_slice(&signalfd_siginfo(&s));
            n += SIGNALFD_SIGINFO;
        }
        if n > 0 {
            return Ok(n);
        }
        if nonblock {
            return Err(EAGAIN);
        }
        // Woken as rt_sigtimedwait is when one of them comes.
        self.thread.sigwait |= mask;
        self.block().map(|_| 0)
    }
}

/// A struct signalfd_siginfo for `s`.
fn signalfd_siginfo(s: &crate::signal::SigInfo) -> [u8; SIGNALFD_SIGINFO] {
    let mut b = [0u8; SIGNALFD_SIGINFO];
    let mut put = |at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
    put(0, &s.signo.to_le_bytes());
    put(8, &s.code.to_le_bytes());
    put(12, &s.pid.to_le_bytes());
    put(16, &s.uid.to_le_bytes());
    put(36, &(s.trapno & 0xffff_ffff).to_le_bytes()[..4]);
    // ssi_status: a SIGCHLD's child status; ssi_int/ssi_ptr: si_value.
    put(40, &(s.err & 0xffff_ffff).to_le_bytes()[..4]);
    put(44, &(s.value & 0xffff_ffff).to_le_bytes()[..4]);
    put(48, &s.value.to_le_bytes());
    put(72, &s.addr.to_le_bytes());
    b
}
