//! Calls that wait: poll/select and their p-variants, futex, nanosleep,
//! pause/sigsuspend, and the interval timers (alarm, setitimer).
//!
//! A call that must wait returns [`EBLOCK`] (see [`Vproc::block`]),
//! which the syscall table turns into [`crate::kernel::Next::Block`]: the
//! frame is rewound to the `syscall` instruction and the call's
//! [`CallState`] (its deadline, how far it got) is kept in
//! `Vproc::pending_call`. When the vproc is woken (an event, its deadline)
//! the call runs again with that state, so a timeout counts from the first
//! attempt and a long pipe write continues where it stopped. When a signal
//! handler runs first, [`Vproc::interrupt_call`] decides what the call
//! returns, as Linux does: the bytes already moved, a transparent restart
//! (`SA_RESTART` on a restartable call), or EINTR.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::time::{Duration, Instant};

use super::errno::*;
use super::EBLOCK;
use crate::signal;
use crate::Vproc;

/// poll(2) event bits.
pub const POLLIN: u16 = 0x1;
/// Urgent data (never here).
pub const POLLPRI: u16 = 0x2;
/// Writable.
pub const POLLOUT: u16 = 0x4;
/// Error (a pipe whose readers are gone).
pub const POLLERR: u16 = 0x8;
/// Hang-up (a pipe whose writers are gone).
pub const POLLHUP: u16 = 0x10;
/// Not an open fd.
pub const POLLNVAL: u16 = 0x20;
/// Same as POLLIN for our files.
pub const POLLRDNORM: u16 = 0x40;
/// Same as POLLOUT for our files.
pub const POLLWRNORM: u16 = 0x100;

/// The longest any wait lasts (a larger timeout is clamped).
const MAX_WAIT: Duration = Duration::from_secs(366 * 86400);

/// What a waiting call has done so far; it survives the call's retries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallState {
    /// When the call gives up (its timeout, from the first attempt).
    pub deadline: Option<Instant>,
    /// Bytes already moved (a long pipe write), or 1 for a registered
    /// futex waiter.
    pub progress: usize,
    /// Wake up by then even without an event (a timerfd the call waits
    /// on expires); set afresh by each attempt.
    pub wake_at: Option<Instant>,
}

/// A call that waits; its frame is rewound to the `syscall` instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingCall {
    /// The syscall number.
    pub nr: u64,
    /// Its arguments (a retry must present the same ones).
    pub args: [u64; 6],
    /// What it has done so far.
    pub state: CallState,
    /// Where its frame was rewound to: the 2-byte instruction that
    /// retries it.
    pub at: u64,
    /// The RAX that instruction retries it with.
    pub rax: u64,
}

/// How a waiting call ends when a signal handler runs first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Restarted after the handler with `SA_RESTART`, else EINTR (read,
    /// write, wait4, futex...: Linux's ERESTARTSYS).
    IfSaRestart,
    /// Always EINTR (poll, select, nanosleep, pause, sigsuspend).
    Never,
}

/// The restart rule of syscall `nr`.
pub fn restart_rule(nr: u64) -> Restart {
    match nr {
        // poll, select, pause, nanosleep, rt_sigtimedwait, rt_sigsuspend,
        // pselect6, ppoll, clock_nanosleep, epoll_wait, epoll_pwait.
        7 | 23 | 34 | 35 | 128 | 130 | 232 | 270 | 271 | 230 | 281 => Restart::Never,
        _ => Restart::IfSaRestart,
    }
}

/// The interval timers of one process (ITIMER_REAL, _VIRTUAL, _PROF).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Itimers {
    /// ITIMER_REAL: when SIGALRM is due, and the reload interval.
    pub real: Option<(Instant, Duration)>,
    /// ITIMER_VIRTUAL / ITIMER_PROF: CPU time (ns, the scheduler's
    /// accounting) at which SIGVTALRM / SIGPROF is due, and the interval.
    pub cpu: [Option<(u64, u64)>; 2],
}

/// SIGALRM.
pub const SIGALRM: i32 = 14;
/// SIGVTALRM.
pub const SIGVTALRM: i32 = 26;
/// SIGPROF.
pub const SIGPROF: i32 = 27;

/// Read a `struct timespec` as a duration; EINVAL when malformed.
pub fn timespec(b: &[u8]) -> Result<Duration, i64> {
    Ok(timespec_abs(b)?.min(MAX_WAIT))
}

/// Read a `struct timespec` that is a point on a clock (TIMER_ABSTIME,
/// FUTEX_WAIT_BITSET): not clamped, since a real-time deadline (seconds
/// since 1970) is far beyond [`MAX_WAIT`]; clamp the time left instead
/// ([`until_on_clock`]).
pub fn timespec_abs(b: &[u8]) -> Result<Duration, i64> {
    let s = i64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let ns = i64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
    if s < 0 || !(0..1_000_000_000).contains(&ns) {
        return Err(EINVAL);
    }
    Ok(Duration::new(s as u64, ns as u32))
}

/// The time left until the absolute `at` on `clock` (zero when past).
pub fn until_on_clock(clock: i32, at: Duration) -> Duration {
    at.saturating_sub(clock_now(clock)).min(MAX_WAIT)
}

/// Read a `struct timeval` as a duration; EINVAL when malformed.
pub fn timeval(b: &[u8]) -> Result<Duration, i64> {
    let s = i64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let us = i64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
    if s < 0 || !(0..1_000_000).contains(&us) {
        return Err(EINVAL);
    }
    Ok(Duration::new(s as u64, us as u32 * 1000).min(MAX_WAIT))
}

/// A duration as a `struct timespec`.
pub(crate) fn encode_timespec(d: Duration) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&d.as_secs().to_le_bytes());
    b[8..].copy_from_slice(&u64::from(d.subsec_nanos()).to_le_bytes());
    b
}

/// A duration as a `struct timeval`.
pub(crate) fn encode_timeval(d: Duration) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&d.as_secs().to_le_bytes());
    b[8..].copy_from_slice(&u64::from(d.subsec_micros()).to_le_bytes());
    b
}

/// The host's `clock` now (zero for a clock it does not have).
pub(crate) fn clock_now(clock: i32) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec the call fills; an unsupported clock
    // id only makes it fail, and then ts stays zero.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

impl Vproc {
    pub(super) fn user_u32(&mut self, va: u64) -> Result<u32, i64> {
        let mut b = [0u8; 4];
        self.mm.read(va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Wake the waiting call by `t` at the latest (a timer it watches).
    pub fn wake_by(&mut self, t: Instant) {
        self.call.wake_at = Some(self.call.wake_at.map_or(t, |w| w.min(t)));
    }

    /// The deadline of the current call for `timeout` (None: none),
    /// counted from the call's first attempt.
    pub fn call_deadline(&mut self, timeout: Option<Duration>) -> Option<Instant> {
        let t = timeout?;
        Some(*self.call.deadline.get_or_insert_with(|| {
            let now = Instant::now();
            now.checked_add(t.min(MAX_WAIT)).unwrap_or(now + MAX_WAIT)
        }))
    }

    /// Wait for a wake-up or the call's deadline (if
    /// [`Vproc::call_deadline`] set one: it is kept in the call's
    /// [`CallState`], where the syscall table reads it), then retry the
    /// call: returns the internal [`EBLOCK`] for the caller to pass up.
    /// Registering where the wake-up comes from is the caller's job.
    pub fn block(&mut self) -> Result<i64, i64> {
        Err(EBLOCK)
    }

    /// Put the frame back where the waiting call was rewound to, if the
    /// vproc left the guest on its way back to that call instead (a
    /// patched hop site's `jmp`s, its stub's first instructions: see
    /// `mm::patch`, where a timer's kick can stop it). Nothing of the
    /// program ran on that way (RCX aside, which `syscall` clobbers), so
    /// the frame at the call is the same state; signal delivery and
    /// ptrace's stops count on it (they step over or re-run the 2-byte
    /// instruction at RIP: from a hop stub's first bytes that ran garbage,
    /// a shell's SIGSEGV at `stub + 2` after an EINTR).
    /// Not while a ptrace stop shows the call interrupted (its frame is
    /// then past the call on purpose, until the resume).
    pub fn back_at_pending_call(&mut self) {
        if self.ptrace.as_ref().is_some_and(|t| t.restart.is_some()) {
            return;
        }
        if let Some(p) = &self.pending_call {
            if self.frame.rip != p.at {
                self.frame.rip = p.at;
                self.frame.rax = p.rax;
            }
        }
    }

    /// A signal handler is about to run while the call in `p` waits (its
    /// frame rewound to the `syscall`): set what the call returns.
    /// `sa_restart` is the handler's SA_RESTART.
    pub fn interrupt_call(&mut self, p: PendingCall, sa_restart: bool) {
        if p.nr == 202 {
            if let Some(k) = &self.k {
                k.futex_cancel(self.pid);
            }
        }
        if p.nr == 243 {
            // mq_timedreceive: no longer a blocked receiver.
            self.mq_receive_cancel(p.args[0] as i64);
        }
        if matches!(p.nr, 72 | 73) {
            // fcntl F_SETLKW, flock: no longer waiting (deadlock checks).
            self.fs.locks().cancel_wait(self.pid);
        }
        // open/openat of a FIFO waiting for its other side.
        if matches!(p.nr, 2 | 257) {
            self.fifo_open_cancel(p.nr, p.args);
        }
        if p.state.progress > 0 && matches!(p.nr, 1 | 20 | 40) {
            // A write that moved some bytes returns their count.
            self.frame.rip += 2;
            self.frame.rax = p.state.progress as u64;
            return;
        }
        if sa_restart && restart_rule(p.nr) == Restart::IfSaRestart {
            // Transparent restart: the frame stays at the `syscall`.
            return;
        }
        // nanosleep / clock_nanosleep (relative) report the time left.
        let rem = match p.nr {
            35 => p.args[1],
            230 if p.args[1] & 1 == 0 => p.args[3],
            _ => 0,
        };
        if rem != 0 {
            if let Some(d) = p.state.deadline {
                let left = d.saturating_duration_since(Instant::now());
                let _ = self.mm.write(rem, &encode_timespec(left));
            }
        }
        self.frame.rip += 2;
        self.frame.rax = (-EINTR) as u64;
    }

    /// Is a signal pending that the current mask lets through?
    pub(super) fn signal_deliverable_now(&self) -> bool {
        let blocked = self.sig.blocked;
        self.sig
            .pending
            .iter()
            .any(|p| p.signo == signal::SIGKILL || blocked & signal::bit(p.signo) == 0)
    }

    /// Set a temporary signal mask for ppoll/pselect6 (restored when the
    /// call returns, or by the handler's sigreturn).
    pub(super) fn temp_mask(&mut self, mask: Option<u64>) {
        if let Some(m) = mask {
            if self.saved_mask.is_none() {
                self.saved_mask = Some(self.sig.blocked);
            }
            let never = signal::bit(signal::SIGKILL) | signal::bit(signal::SIGSTOP);
            self.sig.blocked = m & !never;
        }
    }

    pub(super) fn restore_temp_mask(&mut self, had: bool) {
        if had {
            if let Some(m) = self.saved_mask.take() {
                self.sig.blocked = m;
            }
        }
    }

    /// Read an optional sigset_t argument of ppoll/pselect6.
    pub(super) fn read_sigmask(&mut self, p: u64, size: u64) -> Result<Option<u64>, i64> {
        if p == 0 {
            return Ok(None);
        }
        if size != 8 {
            return Err(EINVAL);
        }
        Ok(Some(self.mm.read_u64(p)?))
    }

    /// poll / ppoll: `timeout` None waits forever.
    pub fn sys_poll(
        &mut self,
        fds: u64,
        n: u64,
        timeout: Option<Duration>,
        mask: Option<u64>,
    ) -> Result<i64, i64> {
        // Linux's limit: the RLIMIT_NOFILE soft limit.
        if n > self.fds.limits.nofile() as u64 {
            return Err(EINVAL);
        }
        let deadline = self.call_deadline(timeout);
        let mut b = self.mm.read_vec(fds, 8 * n as usize)?;
        self.temp_mask(mask);
        if mask.is_some() && self.signal_deliverable_now() {
            return Err(EINTR);
        }
        let expired = deadline.is_some_and(|d| Instant::now() >= d);
        if !expired {
            // Register before looking: a change in between then wakes us.
            for c in b.chunks(8) {
                let fd = i32::from_le_bytes(c[..4].try_into().expect("4 bytes"));
                if fd >= 0 {
                    let w = self.poll_register(fd as i64);
                    self.wait_also(w);
                }
            }
        }
        let mut ready = 0;
        for c in b.chunks_mut(8) {
            let fd = i32::from_le_bytes(c[..4].try_into().expect("4 bytes"));
            let ev = u16::from_le_bytes([c[4], c[5]]);
            let re = if fd < 0 {
                0
            } else {
                let have = self.poll_fd(fd as i64);
                have & (ev | POLLERR | POLLHUP | POLLNVAL)
            };
            c[6..8].copy_from_slice(&re.to_le_bytes());
            if re != 0 {
                ready += 1;
            }
        }
        if ready == 0 && !expired {
            return self.block();
        }
        self.restore_temp_mask(mask.is_some());
        self.mm.write(fds, &b)?;
        Ok(ready)
    }

    /// poll(fds, n, timeout_ms).
    pub fn sys_poll_ms(&mut self, fds: u64, n: u64, ms: i32) -> Result<i64, i64> {
        let t = (ms >= 0).then(|| Duration::from_millis(ms as u64));
        self.sys_poll(fds, n, t, None)
    }

    /// ppoll(fds, n, tsp, sigmask, sigsetsize).
    pub fn sys_ppoll(&mut self, a: [u64; 6]) -> Result<i64, i64> {
        let t = if a[2] != 0 {
            Some(timespec(&self.mm.read_vec(a[2], 16)?)?)
        } else {
            None
        };
        let mask = self.read_sigmask(a[3], a[4])?;
        self.sys_poll(a[0], a[1], t, mask)
    }

    /// select / pselect6 over fd_sets of `n` bits.
    fn select_common(
        &mut self,
        n: i64,
        sets: [u64; 3],
        timeout: Option<Duration>,
        mask: Option<u64>,
    ) -> Result<i64, i64> {
        if !(0..=1024).contains(&n) {
            return Err(EINVAL);
        }
        let deadline = self.call_deadline(timeout);
        let bytes = (n as usize).div_ceil(64) * 8;
        let mut inp = [vec![0u8; bytes], vec![0u8; bytes], vec![0u8; bytes]];
        for (i, &p) in sets.iter().enumerate() {
            if p != 0 && bytes > 0 {
                inp[i] = self.mm.read_vec(p, bytes)?;
            }
        }
        let mut out = [vec![0u8; bytes], vec![0u8; bytes], vec![0u8; bytes]];
        let mut ready = 0i64;
        let expired = deadline.is_some_and(|d| Instant::now() >= d);
        for fd in 0..n as usize {
            let bit = |s: &Vec<u8>| s[fd / 8] & (1 << (fd % 8)) != 0;
            let (r, w, e) = (bit(&inp[0]), bit(&inp[1]), bit(&inp[2]));
            if !(r || w || e) {
                continue;
            }
            if !expired {
                // Register before looking: a change in between wakes us.
                let w = self.poll_register(fd as i64);
                self.wait_also(w);
            }
            let have = self.poll_fd(fd as i64);
            if have & POLLNVAL != 0 {
                return Err(EBADF);
            }
            let hits = [
                r && have & (POLLIN | POLLHUP | POLLERR) != 0,
                w && have & (POLLOUT | POLLERR) != 0,
                e && have & POLLPRI != 0,
            ];
            for (i, hit) in hits.into_iter().enumerate() {
                if hit {
                    out[i][fd / 8] |= 1 << (fd % 8);
                    ready += 1;
                }
            }
        }
        self.temp_mask(mask);
        if mask.is_some() && self.signal_deliverable_now() {
            return Err(EINTR);
        }
        if ready == 0 && !expired {
            return self.block();
        }
        self.restore_temp_mask(mask.is_some());
        for (i, &p) in sets.iter().enumerate() {
            if p != 0 && bytes > 0 {
                self.mm.write(p, &out[i])?;
            }
        }
        Ok(ready)
    }

    /// select(n, r, w, e, timeval).
    pub fn sys_select(&mut self, a: [u64; 6]) -> Result<i64, i64> {
        let t = if a[4] != 0 {
            Some(timeval(&self.mm.read_vec(a[4], 16)?)?)
        } else {
            None
        };
        let r = self.select_common(a[0] as i32 as i64, [a[1], a[2], a[3]], t, None);
        if a[4] != 0 && r.is_ok() {
            // Linux writes back the time left.
            let left = self.call.deadline.map_or(Duration::ZERO, |d| {
                d.saturating_duration_since(Instant::now())
            });
            self.mm.write(a[4], &encode_timeval(left))?;
        }
        r
    }

    /// pselect6(n, r, w, e, timespec, {sigmask*, size}).
    pub fn sys_pselect6(&mut self, a: [u64; 6]) -> Result<i64, i64> {
        let t = if a[4] != 0 {
            Some(timespec(&self.mm.read_vec(a[4], 16)?)?)
        } else {
            None
        };
        let mask = if a[5] != 0 {
            let m = self.mm.read_vec(a[5], 16)?;
            let p = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
            let size = u64::from_le_bytes(m[8..].try_into().expect("8 bytes"));
            self.read_sigmask(p, size)?
        } else {
            None
        };
        self.select_common(a[0] as i32 as i64, [a[1], a[2], a[3]], t, mask)
    }

    /// nanosleep / clock_nanosleep: sleep until the deadline; a signal
    /// handler makes the call return EINTR with the time left.
    pub fn sys_sleep(&mut self, d: Duration) -> Result<i64, i64> {
        let deadline = self.call_deadline(Some(d)).expect("a timeout");
        if Instant::now() >= deadline {
            return Ok(0);
        }
        self.block()
    }

    /// nanosleep(req, rem).
    pub fn sys_nanosleep(&mut self, req: u64) -> Result<i64, i64> {
        let d = timespec(&self.mm.read_vec(req, 16)?)?;
        self.sys_sleep(d)
    }

    /// clock_nanosleep(clock, flags, req, rem).
    pub fn sys_clock_nanosleep(&mut self, clock: i32, flags: u64, req: u64) -> Result<i64, i64> {
        if !matches!(clock, 0 | 1 | 7 | 9) {
            // REALTIME, MONOTONIC, BOOTTIME, TAI.
            return Err(EINVAL);
        }
        let b = self.mm.read_vec(req, 16)?;
        let d = if flags & 1 != 0 {
            // TIMER_ABSTIME: a point on `clock`, turned into a deadline at
            // the first attempt (a retry keeps it).
            until_on_clock(clock, timespec_abs(&b)?)
        } else {
            timespec(&b)?
        };
        self.sys_sleep(d)
    }

    /// pause / rt_sigsuspend(mask): wait until a signal handler runs; the
    /// call then returns EINTR. A signal that only stops and continues
    /// the process, or is ignored, does not end it.
    pub fn sys_pause(&mut self, mask: Option<u64>) -> Result<i64, i64> {
        if let Some(m) = mask {
            // A retry after a spurious wake-up finds the mask already
            // restored by the vCPU loop: set it again.
            self.saved_mask.get_or_insert(self.sig.blocked);
            let never = signal::bit(signal::SIGKILL) | signal::bit(signal::SIGSTOP);
            self.sig.blocked = m & !never;
        }
        if self.signal_deliverable_now() {
            // Delivered right after this returns, with the old mask saved.
            return Err(EINTR);
        }
        self.block()
    }

    /// The waiters' key of the futex at `uaddr`: a shared futex (no
    /// FUTEX_PRIVATE_FLAG) in a MAP_SHARED area is keyed by the shared
    /// object and offset, so processes meet there; any other by (process,
    /// address).
    fn futex_key(&mut self, uaddr: u64, private: bool) -> (usize, u64) {
        if !private {
            if let Some(k) = self.mm.shared_futex_key(uaddr) {
                return k;
            }
        }
        (self.mm.id(), uaddr)
    }

    /// futex(uaddr, op, val, timeout, uaddr2, val3).
    pub fn sys_futex(&mut self, a: [u64; 6]) -> Result<i64, i64> {
        const PRIVATE: u64 = 128;
        const CLOCK_REALTIME: u64 = 256;
        let op = a[1] & !(PRIVATE | CLOCK_REALTIME);
        let uaddr = a[0];
        if !uaddr.is_multiple_of(4) {
            return Err(EINVAL);
        }
        match op {
            // FUTEX_WAIT, FUTEX_WAIT_BITSET.
            0 | 9 => {
                if op == 9 && a[5] as u32 == 0 {
                    return Err(EINVAL);
                }
                let timeout = if a[3] != 0 && self.call.deadline.is_none() {
                    let b = self.mm.read_vec(a[3], 16)?;
                    Some(if op == 9 {
                        // Absolute, on CLOCK_MONOTONIC or CLOCK_REALTIME.
                        let clock = if a[1] & CLOCK_REALTIME != 0 { 0 } else { 1 };
                        until_on_clock(clock, timespec_abs(&b)?)
                    } else {
                        timespec(&b)?
                    })
                } else if a[3] != 0 {
                    Some(Duration::ZERO)
                } else {
                    None
                };
                let deadline = self.call_deadline(timeout);
                let k = self.kernel()?;
                let key = self.futex_key(uaddr, a[1] & PRIVATE != 0);
                let bits = if op == 9 { a[5] as u32 } else { u32::MAX };
                if self.call.progress == 0 {
                    // Register first, then look at the word: a FUTEX_WAKE
                    // after the waker's store always finds this waiter.
                    k.futex_cancel(self.pid);
                    k.futex_wait(key, self.pid, bits);
                    let v = self.user_u32(uaddr);
                    if v != Ok(a[2] as u32) {
                        k.futex_cancel(self.pid);
                        return Err(v.err().unwrap_or(EAGAIN));
                    }
                    self.call.progress = 1;
                } else if !k.futex_waiting(self.pid) {
                    // Woken by FUTEX_WAKE.
                    return Ok(0);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    k.futex_cancel(self.pid);
                    return Err(ETIMEDOUT);
                }
                self.block()
            }
            // FUTEX_WAKE, FUTEX_WAKE_BITSET.
            1 | 10 => {
                let n = (a[2] as u32).min(i32::MAX as u32) as usize;
                let bits = if op == 10 { a[5] as u32 } else { u32::MAX };
                if bits == 0 {
                    return Err(EINVAL);
                }
                let Some(k) = self.k.clone() else {
                    return Ok(0);
                };
                let key = self.futex_key(uaddr, a[1] & PRIVATE != 0);
                Ok(k.futex_wake(key, n, bits, None) as i64)
            }
            // FUTEX_REQUEUE, FUTEX_CMP_REQUEUE.
            3 | 4 => {
                if !a[4].is_multiple_of(4) {
                    return Err(EINVAL);
                }
                if op == 4 && self.user_u32(uaddr)? != a[5] as u32 {
                    return Err(EAGAIN);
                }
                let Some(k) = self.k.clone() else {
                    return Ok(0);
                };
                let private = a[1] & PRIVATE != 0;
                let (from, to) = (
                    self.futex_key(uaddr, private),
                    self.futex_key(a[4], private),
                );
                let n = (a[2] as u32).min(i32::MAX as u32) as usize;
                let moved = (a[3] as u32).min(i32::MAX as u32) as usize;
                Ok(k.futex_wake(from, n, u32::MAX, Some((to, moved))) as i64)
            }
            _ => Err(ENOSYS),
        }
    }

    /// alarm(seconds): returns the seconds left of the previous alarm.
    pub fn sys_alarm(&mut self, secs: u32) -> Result<i64, i64> {
        let new = (secs > 0).then(|| (Duration::from_secs(u64::from(secs)), Duration::ZERO));
        let old = self.set_itimer_real(new);
        Ok(old.map_or(0, |(left, _)| {
            // Rounded to the nearest second, at least 1 while armed.
            (left.as_secs() + u64::from(left.subsec_nanos() >= 500_000_000)).max(1) as i64
        }))
    }

    /// setitimer(which, new, old).
    pub fn sys_setitimer(&mut self, which: i32, new: u64, old: u64) -> Result<i64, i64> {
        if !(0..=2).contains(&which) {
            return Err(EINVAL);
        }
        let (value, interval) = if new != 0 {
            let b = self.mm.read_vec(new, 32)?;
            (timeval(&b[16..])?, timeval(&b[..16])?)
        } else {
            (Duration::ZERO, Duration::ZERO)
        };
        let arm = (!value.is_zero()).then_some((value, interval));
        let prev = if which == 0 {
            self.set_itimer_real(arm)
        } else {
            self.set_itimer_cpu(which as usize - 1, arm)
        };
        if old != 0 {
            let (v, i) = prev.unwrap_or_default();
            let mut b = [0u8; 32];
            b[..16].copy_from_slice(&encode_timeval(i));
            b[16..].copy_from_slice(&encode_timeval(v));
            self.mm.write(old, &b)?;
        }
        Ok(0)
    }

    /// getitimer(which, cur).
    pub fn sys_getitimer(&mut self, which: i32, cur: u64) -> Result<i64, i64> {
        if !(0..=2).contains(&which) {
            return Err(EINVAL);
        }
        let now = self.get_itimer(which as usize);
        let (v, i) = now.unwrap_or_default();
        let mut b = [0u8; 32];
        b[..16].copy_from_slice(&encode_timeval(i));
        b[16..].copy_from_slice(&encode_timeval(v));
        self.mm.write(cur, &b)?;
        Ok(0)
    }

    /// Arm (or disarm, None) ITIMER_REAL: (value, interval). Returns what
    /// was left of the previous one.
    fn set_itimer_real(
        &mut self,
        arm: Option<(Duration, Duration)>,
    ) -> Option<(Duration, Duration)> {
        let now = Instant::now();
        let new = arm.map(|(v, i)| (now + v, i));
        let old = self
            .k
            .as_ref()
            .and_then(|k| k.swap_itimer(self.pid, |t| std::mem::replace(&mut t.real, new)));
        old.map(|(d, i)| {
            (
                d.saturating_duration_since(now)
                    .max(Duration::from_micros(1)),
                i,
            )
        })
    }

    /// Arm ITIMER_VIRTUAL (0) or ITIMER_PROF (1) on the CPU time.
    fn set_itimer_cpu(
        &mut self,
        which: usize,
        arm: Option<(Duration, Duration)>,
    ) -> Option<(Duration, Duration)> {
        let k = self.k.clone()?;
        let used = k.cpu_time(self.pid);
        let new = arm.map(|(v, i)| (used + v.as_nanos() as u64, i.as_nanos() as u64));
        let old = k.swap_itimer(self.pid, |t| std::mem::replace(&mut t.cpu[which], new));
        old.map(|(due, i)| {
            (
                Duration::from_nanos(due.saturating_sub(used).max(1000)),
                Duration::from_nanos(i),
            )
        })
    }

    fn get_itimer(&mut self, which: usize) -> Option<(Duration, Duration)> {
        let now = Instant::now();
        let t = self
            .k
            .as_ref()
            .map(|k| k.swap_itimer(self.pid, |t| *t))
            .unwrap_or_default();
        if which == 0 {
            t.real.map(|(d, i)| {
                (
                    d.saturating_duration_since(now)
                        .max(Duration::from_micros(1)),
                    i,
                )
            })
        } else {
            let used = self.k.as_ref().map_or(0, |k| k.cpu_time(self.pid));
            t.cpu[which - 1].map(|(due, i)| {
                (
                    Duration::from_nanos(due.saturating_sub(used).max(1000)),
                    Duration::from_nanos(i),
                )
            })
        }
    }
}
