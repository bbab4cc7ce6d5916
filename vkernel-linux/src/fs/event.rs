//! eventfd(2) objects: a 64-bit counter that writes add to and reads
//! take (all of it, or one at a time in semaphore mode), with the vprocs
//! that wait for it to move.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pipe::{Waiters, Wake};

/// The largest value an eventfd counter holds (a write that would pass
/// it waits, or fails with EAGAIN).
pub const EVENTFD_MAX: u64 = u64::MAX - 1;

/// Why an eventfd operation did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventFdError {
    /// It would block: nothing to read, or no room for the write.
    WouldBlock,
    /// The value is not one a write may add (u64::MAX).
    Invalid,
}

/// One eventfd.
#[derive(Default)]
pub struct EventFd {
    /// The counter.
    pub count: u64,
    /// EFD_SEMAPHORE: a read takes 1, not the whole count.
    pub semaphore: bool,
    /// Vprocs waiting for the counter to move.
    pub waiters: Waiters,
    /// Bumped on every change (edge-triggered epoll).
    pub seq: u64,
}

impl std::fmt::Debug for EventFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventFd")
            .field("count", &self.count)
            .field("semaphore", &self.semaphore)
            .finish()
    }
}

impl EventFd {
    /// A counter starting at `initval`.
    ///
    /// ```
    /// use vkernel_linux::fs::event::EventFd;
    /// let mut e = EventFd::new(2, true);
    /// assert_eq!(e.read(), Ok(1));
    /// assert_eq!(e.read(), Ok(1));
    /// assert!(e.read().is_err());
    /// ```
    pub fn new(initval: u32, semaphore: bool) -> EventFd {
        EventFd {
            count: u64::from(initval),
            semaphore,
            ..EventFd::default()
        }
    }

    /// read(2): the value read (the whole count, or 1 in semaphore mode).
    pub fn read(&mut self) -> Result<u64, EventFdError> {
        if self.count == 0 {
            return Err(EventFdError::WouldBlock);
        }
        let v = if self.semaphore { 1 } else { self.count };
        self.count -= v;
        self.seq = self.seq.wrapping_add(1);
        Ok(v)
    }

    /// write(2) of `v`.
    pub fn write(&mut self, v: u64) -> Result<(), EventFdError> {
        if v == u64::MAX {
            return Err(EventFdError::Invalid);
        }
        if v > EVENTFD_MAX - self.count {
            return Err(EventFdError::WouldBlock);
        }
        self.count += v;
        self.seq = self.seq.wrapping_add(1);
        Ok(())
    }

    /// Can a read proceed now?
    pub fn readable(&self) -> bool {
        self.count > 0
    }

    /// Can a write of 1 proceed now?
    pub fn writable(&self) -> bool {
        self.count < EVENTFD_MAX
    }

    /// Register `pid` as waiting.
    pub fn wait(&mut self, pid: i32, w: Arc<dyn Wake>) {
        self.waiters.add(pid, w);
    }

    /// Take the waiters (wake them with the eventfd unlocked).
    pub fn take_waiters(&mut self) -> Vec<(i32, Arc<dyn Wake>)> {
        self.waiters.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_reads_and_writes_like_linux() {
        let mut e = EventFd::new(0, false);
        assert_eq!(e.read(), Err(EventFdError::WouldBlock));
        e.write(3).unwrap();
        e.write(4).unwrap();
        assert_eq!(e.read(), Ok(7));
        assert_eq!(e.write(u64::MAX), Err(EventFdError::Invalid));
        e.write(EVENTFD_MAX).unwrap();
        assert!(!e.writable());
        assert_eq!(e.write(1), Err(EventFdError::WouldBlock));
        assert_eq!(e.read(), Ok(EVENTFD_MAX));
        assert!(e.writable() && !e.readable());
    }
}

/// One timerfd: a timer on the host's clock whose expirations a read
/// collects. Times are kept as host instants (an absolute time on
/// CLOCK_REALTIME is turned into one when the timer is set).
#[derive(Default)]
pub struct TimerFd {
    /// The clock it was made on (what gettime reports against).
    pub clock: i32,
    /// The next expiration, if armed.
    pub next: Option<Instant>,
    /// The period after each expiration (zero: one-shot).
    pub interval: Duration,
    /// Expirations not read yet.
    pub ticks: u64,
    /// Vprocs waiting for an expiration or a change.
    pub waiters: Waiters,
    /// Bumped on every change (edge-triggered epoll).
    pub seq: u64,
}

impl std::fmt::Debug for TimerFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerFd")
            .field("clock", &self.clock)
            .field("armed", &self.next.is_some())
            .field("ticks", &self.ticks)
            .finish()
    }
}

impl TimerFd {
    /// A disarmed timer on `clock`.
    pub fn new(clock: i32) -> TimerFd {
        TimerFd {
            clock,
            ..TimerFd::default()
        }
    }

    /// Count the expirations up to `now`.
    pub fn update(&mut self, now: Instant) {
        let Some(n) = self.next else { return };
        if now < n {
            return;
        }
        if self.interval.is_zero() {
            self.ticks += 1;
            self.next = None;
        } else {
            let late = (now - n).as_nanos() / self.interval.as_nanos();
            let k = u64::try_from(late)
                .unwrap_or(u64::MAX - 1)
                .saturating_add(1);
            self.ticks = self.ticks.saturating_add(k);
            let step = self
                .interval
                .saturating_mul(u32::try_from(k).unwrap_or(u32::MAX));
            self.next = n.checked_add(step);
        }
        self.seq = self.seq.wrapping_add(1);
    }

    /// read(2): the expirations since the last read (None: none yet).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use vkernel_linux::fs::event::TimerFd;
    /// let mut t = TimerFd::new(1);
    /// let now = Instant::now();
    /// t.set(now, Some(Duration::from_millis(10)), Duration::from_millis(10));
    /// assert_eq!(t.read(now), None);
    /// assert_eq!(t.read(now + Duration::from_millis(35)), Some(3));
    /// ```
    pub fn read(&mut self, now: Instant) -> Option<u64> {
        self.update(now);
        if self.ticks == 0 {
            return None;
        }
        self.seq = self.seq.wrapping_add(1);
        Some(std::mem::take(&mut self.ticks))
    }

    /// What is left until the next expiration, and the interval.
    pub fn get(&mut self, now: Instant) -> (Duration, Duration) {
        self.update(now);
        let left = self.next.map_or(Duration::ZERO, |n| {
            n.saturating_duration_since(now)
                .max(Duration::from_nanos(1))
        });
        (left, self.interval)
    }

    /// timerfd_settime: arm to expire `value` from now (None: disarm),
    /// then every `interval`. Returns the old setting; unread
    /// expirations are dropped.
    pub fn set(
        &mut self,
        now: Instant,
        value: Option<Duration>,
        interval: Duration,
    ) -> (Duration, Duration) {
        let old = self.get(now);
        self.ticks = 0;
        self.next = value.map(|v| now.checked_add(v).unwrap_or(now));
        self.interval = if value.is_some() {
            interval
        } else {
            Duration::ZERO
        };
        self.seq = self.seq.wrapping_add(1);
        old
    }

    /// Register `pid` as waiting.
    pub fn wait(&mut self, pid: i32, w: Arc<dyn Wake>) {
        self.waiters.add(pid, w);
    }

    /// Take the waiters (wake them with the timer unlocked).
    pub fn take_waiters(&mut self) -> Vec<(i32, Arc<dyn Wake>)> {
        self.waiters.take()
    }
}

/// One signalfd: the signals (a mask, bit `n - 1` for signal `n`) its
/// reads take from the reading thread's pending ones. Waking goes through
/// the process table: a reader waits as rt_sigtimedwait does
/// (`ThreadInfo::sigwait`).
#[derive(Debug, Default)]
pub struct SignalFd {
    /// The signals it takes.
    pub mask: u64,
}

/// A pidfd (pidfd_open): a process, and whether it has ended. The process
/// table marks it and wakes its waiters when the process's last thread
/// ends; poll, select and epoll then see it readable.
#[derive(Default)]
pub struct PidFd {
    /// The process (its leader's pid).
    pub pid: i32,
    /// The process ended (a zombie, or reaped).
    pub exited: bool,
    /// Vprocs waiting for it to end (poll, select, epoll).
    pub waiters: Waiters,
    /// Bumped when it ends (edge-triggered epoll).
    pub seq: u64,
}

impl std::fmt::Debug for PidFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PidFd")
            .field("pid", &self.pid)
            .field("exited", &self.exited)
            .finish()
    }
}

impl PidFd {
    /// A pidfd of process `pid`, not ended yet.
    pub fn new(pid: i32) -> PidFd {
        PidFd {
            pid,
            ..PidFd::default()
        }
    }

    /// Register `pid` as waiting for the end.
    pub fn wait(&mut self, pid: i32, w: Arc<dyn Wake>) {
        self.waiters.add(pid, w);
    }

    /// The process ended: mark it, and take the waiters to wake.
    pub fn end(&mut self) -> Vec<(i32, Arc<dyn Wake>)> {
        self.exited = true;
        self.seq = self.seq.wrapping_add(1);
        self.waiters.take()
    }
}
