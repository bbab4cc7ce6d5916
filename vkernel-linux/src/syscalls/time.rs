//! Time calls: the clocks (clock_gettime, clock_getres, gettimeofday,
//! time, times) and the calls that sleep or arm timers (nanosleep,
//! clock_nanosleep, alarm, setitimer, getitimer), whose handlers are in
//! [`super::events`].
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::errno::EINVAL;
use super::events::{clock_now, encode_timespec, encode_timeval};
use super::table::Handler;
use super::{int, R};
use crate::Vproc;

impl Vproc {
    /// The time calls: `(number, handler)` for the
    /// syscall table ([`super::table`]).
    pub(super) const TIME_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_clock_gettime, |v, _nr, a| {
            v.sys_clock_gettime(a[0] as i32, a[1])
        }),
        (libc::SYS_clock_getres, |v, _nr, a| v.sys_clock_getres(a[1])),
        (libc::SYS_gettimeofday, |v, _nr, a| {
            v.sys_gettimeofday(a[0], a[1])
        }),
        (libc::SYS_time, |v, _nr, a| v.sys_time(a[0])),
        (libc::SYS_times, |v, _nr, a| v.sys_times(a[0])),
        (libc::SYS_nanosleep, |v, _nr, a| v.sys_nanosleep(a[0])),
        (libc::SYS_clock_nanosleep, |v, _nr, a| {
            v.sys_clock_nanosleep(a[0] as i32, a[1], a[2])
        }),
        (libc::SYS_alarm, |v, _nr, a| v.sys_alarm(a[0] as u32)),
        (libc::SYS_setitimer, |v, _nr, a| {
            v.sys_setitimer(int(a[0]) as i32, a[1], a[2])
        }),
        (libc::SYS_getitimer, |v, _nr, a| {
            v.sys_getitimer(int(a[0]) as i32, a[1])
        }),
    ];

    fn sys_clock_gettime(&mut self, clock: i32, tp: u64) -> R {
        let t = match self.cpu_clock(clock) {
            Some(t) => t?,
            None => clock_now(clock),
        };
        self.mm.write(tp, &encode_timespec(t))?;
        Ok(0)
    }

    /// A CPU-time clock's reading: the vproc's own CPU time as the
    /// scheduler counts it (not the host thread's that serves the call,
    /// which may be the exitless server's). CLOCK_PROCESS_CPUTIME_ID,
    /// CLOCK_THREAD_CPUTIME_ID, and clock_getcpuclockid's ids (negative:
    /// `!pid << 3`, bit 2 for a thread). None: not a CPU-time clock.
    pub(super) fn cpu_clock(&mut self, clock: i32) -> Option<Result<std::time::Duration, i64>> {
        let (pid, process) = match clock {
            2 => (self.pid, true),
            3 => (self.pid, false),
            c if c < 0 => {
                let p = !(c >> 3);
                (if p == 0 { self.pid } else { p }, c & 4 == 0)
            }
            _ => return None,
        };
        Some(
            self.k
                .as_ref()
                .and_then(|k| k.cpu_clock_time(pid, process))
                .ok_or(EINVAL),
        )
    }

    /// clock_getres: every clock counts in nanoseconds.
    fn sys_clock_getres(&mut self, res: u64) -> R {
        if res != 0 {
            let mut b = [0u8; 16];
            b[8..].copy_from_slice(&1u64.to_le_bytes());
            self.mm.write(res, &b)?;
        }
        Ok(0)
    }

    /// gettimeofday: the real-time clock; the time zone is UTC.
    fn sys_gettimeofday(&mut self, tv: u64, tz: u64) -> R {
        if tv != 0 {
            self.mm
                .write(tv, &encode_timeval(clock_now(libc::CLOCK_REALTIME)))?;
        }
        if tz != 0 {
            self.mm.write(tz, &[0u8; 8])?;
        }
        Ok(0)
    }

    fn sys_time(&mut self, t: u64) -> R {
        let s = clock_now(libc::CLOCK_REALTIME).as_secs();
        if t != 0 {
            self.mm.write_u64(t, s)?;
        }
        Ok(s as i64)
    }

    /// times: the process's CPU time (all counted as user time; not its
    /// children's), and the clock ticks (100 Hz) since the vproc began.
    fn sys_times(&mut self, buf: u64) -> R {
        if buf != 0 {
            let cpu = self.cpu_clock(2).and_then(Result::ok).unwrap_or_default();
            let ticks = u64::try_from(cpu.as_millis() / 10).unwrap_or(u64::MAX);
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&ticks.to_le_bytes());
            self.mm.write(buf, &b)?;
        }
        Ok((self.started.elapsed().as_millis() / 10) as i64)
    }
}
