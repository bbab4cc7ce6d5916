//! eventfd(2) objects: a 64-bit counter that writes add to and reads
//! take (all of it, or one at a time in semaphore mode), with the vprocs
//! that wait for it to move.

use std::sync::Arc;

use super::pipe::Wake;

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
    pub waiters: Vec<(i32, Arc<dyn Wake>)>,
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
        if !self.waiters.iter().any(|(p, _)| *p == pid) {
            self.waiters.push((pid, w));
        }
    }

    /// Take the waiters (wake them with the eventfd unlocked).
    pub fn take_waiters(&mut self) -> Vec<(i32, Arc<dyn Wake>)> {
        std::mem::take(&mut self.waiters)
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
