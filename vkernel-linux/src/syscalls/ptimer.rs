//! POSIX timers: timer_create, timer_settime, timer_gettime,
//! timer_getoverrun and timer_delete on CLOCK_REALTIME, CLOCK_MONOTONIC
//! and CLOCK_BOOTTIME, notifying by SIGEV_SIGNAL, SIGEV_THREAD_ID (what
//! glibc's SIGEV_THREAD uses) or SIGEV_NONE. The process table keeps and
//! fires them (`kernel/ptimer.rs`).

use std::time::{Duration, Instant};

use super::errno::*;
use super::events::{timespec, timespec_abs, until_on_clock};
use super::table::Handler;
use super::{int32, R};
use crate::kernel::TimerNotify;
use crate::Vproc;

/// sigev_notify values.
const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;
const SIGEV_THREAD_ID: i32 = 4;
/// TIMER_ABSTIME.
const TIMER_ABSTIME: u64 = 1;

impl Vproc {
    /// The POSIX timer calls: `(number, handler)` for the syscall table.
    pub(super) const PTIMER_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_timer_create, |v, _nr, a| {
            v.sys_timer_create(int32(a[0]), a[1], a[2])
        }),
        (libc::SYS_timer_settime, |v, _nr, a| {
            v.sys_timer_settime(int32(a[0]), a[1], a[2], a[3])
        }),
        (libc::SYS_timer_gettime, |v, _nr, a| {
            v.sys_timer_gettime(int32(a[0]), a[1])
        }),
        (libc::SYS_timer_getoverrun, |v, _nr, a| {
            let id = int32(a[0]);
            let k = v.kernel()?;
            k.ptimer(v.pid, id, |t| i64::from(t.overrun))
        }),
        (libc::SYS_timer_delete, |v, _nr, a| {
            let k = v.kernel()?;
            k.ptimer_delete(v.pid, int32(a[0])).map(|()| 0)
        }),
    ];

    /// timer_create(clockid, sevp, timerid).
    fn sys_timer_create(&mut self, clock: i32, sevp: u64, idp: u64) -> R {
        match clock {
            libc::CLOCK_REALTIME | libc::CLOCK_MONOTONIC | libc::CLOCK_BOOTTIME => {}
            // The alarm clocks need CAP_WAKE_ALARM.
            libc::CLOCK_REALTIME_ALARM | libc::CLOCK_BOOTTIME_ALARM => return Err(EPERM),
            // CPU-time clocks are not offered.
            _ => return Err(EINVAL),
        }
        let (notify, value) = if sevp == 0 {
            (TimerNotify::Process(super::events::SIGALRM), None)
        } else {
            let b = self.mm.read_vec(sevp, 20)?;
            let value = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
            let i = |o: usize| i32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
            let (signo, how, tid) = (i(8), i(12), i(16));
            let sig_ok = (1..=64).contains(&signo);
            let notify = match how {
                SIGEV_NONE => TimerNotify::None,
                SIGEV_SIGNAL if sig_ok => TimerNotify::Process(signo),
                SIGEV_THREAD_ID if sig_ok => {
                    // The thread must be one of this process's.
                    let k = self.kernel()?;
                    if k.tgid_of(tid) != Some(self.thread.tgid) {
                        return Err(EINVAL);
                    }
                    TimerNotify::Thread(signo, tid)
                }
                _ => return Err(EINVAL),
            };
            (notify, Some(value))
        };
        let k = self.kernel()?;
        let id = k.ptimer_create(self.pid, clock, notify, value)?;
        if let Err(e) = self.mm.write(idp, &id.to_le_bytes()) {
            let _ = k.ptimer_delete(self.pid, id);
            return Err(e.into());
        }
        Ok(0)
    }

    /// timer_settime(id, flags, new, old): arm (relative or TIMER_ABSTIME
    /// on the clock), disarm (zero value), report the old setting.
    fn sys_timer_settime(&mut self, id: i32, flags: u64, new: u64, old: u64) -> R {
        let b = self.mm.read_vec(new, 32)?;
        let interval = timespec(&b[..16])?;
        let k = self.kernel()?;
        let clock = k.ptimer(self.pid, id, |t| t.clock)?;
        let value = if flags & TIMER_ABSTIME != 0 {
            // An expiry already past fires at once.
            until_on_clock(clock, timespec_abs(&b[16..])?).max(Duration::from_nanos(1))
        } else {
            timespec(&b[16..])?
        };
        let abs_zero = b[16..] == [0u8; 16];
        let now = Instant::now();
        let before = k.ptimer(self.pid, id, |t| {
            let before = (t.next.map(|n| n.saturating_duration_since(now)), t.interval);
            if abs_zero {
                t.next = None;
                t.interval = Duration::ZERO;
            } else {
                t.next = Some(now + value);
                t.interval = interval;
            }
            t.overrun = 0;
            before
        })?;
        if old != 0 {
            self.put_itimerspec(old, shown(before))?;
        }
        Ok(0)
    }

    /// timer_gettime(id, cur): time to the next expiry and the period.
    fn sys_timer_gettime(&mut self, id: i32, cur: u64) -> R {
        let now = Instant::now();
        let k = self.kernel()?;
        let v = k.ptimer(self.pid, id, |t| {
            (t.next.map(|n| n.saturating_duration_since(now)), t.interval)
        })?;
        self.put_itimerspec(cur, shown(v))?;
        Ok(0)
    }
}

/// A timer's (time left, period) as an itimerspec shows it: disarmed as
/// zero left, an armed one never at zero.
fn shown((left, interval): (Option<Duration>, Duration)) -> (Duration, Duration) {
    (
        left.map_or(Duration::ZERO, |l| l.max(Duration::from_nanos(1))),
        interval,
    )
}
