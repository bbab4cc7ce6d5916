//! [`Timer`]: a timerfd, the analog of kqueue's `EVFILT_TIMER`.
//!
//! One-shot or periodic, on `CLOCK_MONOTONIC`. Registered on an
//! [`EventLoop`](crate::EventLoop), every expiration batch is reported as
//! [`Event::Timer`] with the expiration count, so a periodic timer that the
//! virtual kernel could not service in time reports how many ticks it
//! missed instead of silently dropping them.
//!
//! ```
//! use std::time::Duration;
//! use vkernel_devices::{Event, EventLoop, Timer};
//!
//! let mut ev = EventLoop::new()?;
//! let mut t = Timer::new()?;
//! t.register(ev.handle())?;
//! t.arm_oneshot(Duration::from_millis(5))?;
//! let events = ev.poll_once(Some(Duration::from_secs(1)))?;
//! assert!(matches!(events[0], Event::Timer { expirations: 1, .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::event_loop::{Event, EventLoopError, LoopHandle, Registration, Source, SourceId};
use crate::sys;

/// Errors of [`Timer`].
#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    /// `timerfd_create` failed.
    #[error("cannot create a timerfd: {0}")]
    Create(#[source] io::Error),
    /// `timerfd_settime` / `timerfd_gettime` failed.
    #[error("cannot set or query the timer: {0}")]
    Set(#[source] io::Error),
    /// A periodic timer needs a non-zero period.
    #[error("a periodic timer needs a non-zero period")]
    ZeroPeriod,
    /// Reading the expiration count failed.
    #[error("cannot read the timer's expiration count: {0}")]
    Read(#[source] io::Error),
    /// Registering on the event loop failed.
    #[error(transparent)]
    EventLoop(#[from] EventLoopError),
}

struct Inner {
    fd: TimerFd,
}

impl Inner {
    /// Reads and resets the expiration count (0 if it has not expired).
    fn take_expirations(&self) -> io::Result<u64> {
        let mut buf = [0u8; 8];
        match sys::read_retry(self.fd.as_fd(), &mut buf) {
            Ok(8) => Ok(u64::from_ne_bytes(buf)),
            Ok(n) => Err(io::Error::other(format!("short timerfd read ({n} bytes)"))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }
}

impl Source for Inner {
    fn fds(&self) -> Vec<RawFd> {
        vec![self.fd.as_fd().as_raw_fd()]
    }

    fn ready(&self, id: SourceId, _sub: usize, out: &mut Vec<Event>) {
        match self.take_expirations() {
            Ok(0) => {} // disarmed, rearmed or read by the owner meanwhile
            Ok(expirations) => out.push(Event::Timer {
                source: id,
                expirations,
            }),
            Err(error) => out.push(Event::SourceError { source: id, error }),
        }
    }
}

/// A monotonic timer (timerfd). Dropping it deregisters it.
pub struct Timer {
    inner: Arc<Inner>,
    reg: Option<Registration>,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("fd", &self.inner.fd.as_fd().as_raw_fd())
            .field("source", &self.reg.as_ref().map(|r| r.id()))
            .finish()
    }
}

fn timespec(d: Duration) -> TimeSpec {
    // A zero it_value disarms a timerfd; "expire now" means the smallest
    // non-zero delay.
    TimeSpec::from_duration(d.max(Duration::from_nanos(1)))
}

impl Timer {
    /// Creates a disarmed timer.
    pub fn new() -> Result<Timer, TimerError> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(|e| TimerError::Create(e.into()))?;
        Ok(Timer {
            inner: Arc::new(Inner { fd }),
            reg: None,
        })
    }

    /// Registers the timer on a loop; expirations become [`Event::Timer`].
    pub fn register(&mut self, handle: &LoopHandle) -> Result<SourceId, TimerError> {
        Ok(Registration::register_into(
            &mut self.reg,
            handle,
            self.inner.clone(),
        )?)
    }

    /// The id this timer's events carry, if registered.
    pub fn source_id(&self) -> Option<SourceId> {
        self.reg.as_ref().map(|r| r.id())
    }

    /// Arms the timer to expire once after `delay` (zero means "as soon as
    /// possible"). Replaces any previous setting.
    pub fn arm_oneshot(&self, delay: Duration) -> Result<(), TimerError> {
        self.set(Expiration::OneShot(timespec(delay)))
    }

    /// Arms the timer to expire every `period`, first after one period.
    pub fn arm_periodic(&self, period: Duration) -> Result<(), TimerError> {
        self.arm(period, Some(period))
    }

    /// Arms the timer: first expiration after `first`, then every
    /// `interval` if given. Replaces any previous setting.
    pub fn arm(&self, first: Duration, interval: Option<Duration>) -> Result<(), TimerError> {
        let exp = match interval {
            None => Expiration::OneShot(timespec(first)),
            Some(p) if p.is_zero() => return Err(TimerError::ZeroPeriod),
            Some(p) => Expiration::IntervalDelayed(timespec(first), TimeSpec::from_duration(p)),
        };
        self.set(exp)
    }

    fn set(&self, exp: Expiration) -> Result<(), TimerError> {
        self.inner
            .fd
            .set(exp, TimerSetTimeFlags::empty())
            .map_err(|e| TimerError::Set(e.into()))
    }

    /// Disarms the timer. Expirations already counted but not yet reported
    /// are discarded too.
    pub fn disarm(&self) -> Result<(), TimerError> {
        self.inner
            .fd
            .unset()
            .map_err(|e| TimerError::Set(e.into()))?;
        self.inner.take_expirations().map_err(TimerError::Read)?;
        Ok(())
    }

    /// Time until the next expiration, `None` if disarmed.
    pub fn remaining(&self) -> Result<Option<Duration>, TimerError> {
        let exp = self.inner.fd.get().map_err(|e| TimerError::Set(e.into()))?;
        Ok(match exp {
            None => None,
            Some(Expiration::OneShot(v))
            | Some(Expiration::IntervalDelayed(v, _))
            | Some(Expiration::Interval(v)) => Some(Duration::from(v)).filter(|d| !d.is_zero()),
        })
    }

    /// Reads and resets the expiration count without the loop (0 if the
    /// timer has not expired since the last read). Useful for a timer that
    /// is not registered, or to poll one between loop iterations.
    pub fn take_expirations(&self) -> Result<u64, TimerError> {
        self.inner.take_expirations().map_err(TimerError::Read)
    }
}

impl AsFd for Timer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }
}
