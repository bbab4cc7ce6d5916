//! The event loop: one [`mio::Poll`] that turns driver notifications into
//! [`Event`]s.
//!
//! Drivers ([`Timer`](crate::Timer), [`Console`](crate::Console),
//! [`Vke`](crate::Vke), [`DiskQueue`](crate::DiskQueue)) register themselves
//! through a [`LoopHandle`] and get a [`SourceId`]; every event they produce
//! carries that id. The loop is edge-triggered: when the host says a source
//! is ready, the loop drains it (reads until `WouldBlock`) and hands back the
//! data, so callers never have to re-arm anything.
//!
//! Two ways to drive it:
//!
//! - [`EventLoop::poll_once`] / [`EventLoop::poll_into`] from the virtual
//!   kernel's own thread (e.g. between two vCPU runs);
//! - [`EventLoop::spawn`], which moves the loop to its own thread and
//!   delivers events over a channel ([`LoopThread`]).
//!
//! A [`Waker`] (or [`LoopHandle::wake`]) wakes a blocked loop from any
//! thread; the loop then reports [`Event::Wake`].
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::ops::ControlFlow;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::disk::{DiskCompletion, DiskError, RequestId};

/// Identifies one registered driver on one [`EventLoop`]. Ids are never
/// reused by a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(u64);

impl SourceId {
    /// The raw number behind the id (for logs).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "source#{}", self.0)
    }
}

/// Something that happened on a registered driver.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A [`Timer`](crate::Timer) expired `expirations` times since it was
    /// last read (more than 1 means periodic expirations were missed).
    Timer {
        /// The timer.
        source: SourceId,
        /// Number of expirations (the timerfd's 8-byte counter).
        expirations: u64,
    },
    /// Bytes typed on (or piped into) a [`Console`](crate::Console).
    ConsoleInput {
        /// The console.
        source: SourceId,
        /// Everything that was readable, in order.
        data: Vec<u8>,
    },
    /// SIGINT arrived (e.g. Ctrl-C on the console's terminal). Several
    /// signals that arrive before the loop runs are reported once.
    ConsoleInterrupt {
        /// The console that catches SIGINT.
        source: SourceId,
    },
    /// The console's input reached end of file (pipe closed, terminal hung
    /// up). No more input events follow.
    ConsoleClosed {
        /// The console.
        source: SourceId,
    },
    /// End of file typed on a terminal input (Ctrl-D on an empty line):
    /// one read should return 0 bytes, but the terminal stays open and
    /// more input may follow, as with a terminal on Linux.
    ConsoleEof {
        /// The console.
        source: SourceId,
    },
    /// A request submitted to a [`DiskQueue`](crate::DiskQueue) completed.
    DiskDone {
        /// The disk queue.
        source: SourceId,
        /// The id [`DiskQueue::submit`](crate::DiskQueue::submit) returned.
        request: RequestId,
        /// What the request produced.
        result: Result<DiskCompletion, DiskError>,
    },
    /// An Ethernet frame the host sent to a [`Vke`](crate::Vke) tap.
    VkeFrame {
        /// The tap.
        source: SourceId,
        /// One whole Ethernet frame (no packet-info header).
        frame: Vec<u8>,
    },
    /// Reading a source failed unexpectedly (the source stays registered).
    SourceError {
        /// The source.
        source: SourceId,
        /// The host error.
        error: io::Error,
    },
    /// [`Waker::wake`] or [`LoopHandle::wake`] was called (several calls
    /// before the loop runs are reported once).
    Wake,
}

impl Event {
    /// The source the event belongs to (`None` for [`Event::Wake`]).
    pub fn source(&self) -> Option<SourceId> {
        match self {
            Event::Timer { source, .. }
            | Event::ConsoleInput { source, .. }
            | Event::ConsoleInterrupt { source }
            | Event::ConsoleClosed { source }
            | Event::ConsoleEof { source }
            | Event::DiskDone { source, .. }
            | Event::VkeFrame { source, .. }
            | Event::SourceError { source, .. } => Some(*source),
            Event::Wake => None,
        }
    }
}

/// Errors of the event loop.
#[derive(Debug, thiserror::Error)]
pub enum EventLoopError {
    /// Creating the epoll instance or its waker failed.
    #[error("cannot create the event loop: {0}")]
    Create(#[source] io::Error),
    /// `epoll_wait` failed with something other than EINTR.
    #[error("polling the event loop failed: {0}")]
    Poll(#[source] io::Error),
    /// Adding a file descriptor to epoll failed.
    #[error("cannot register fd {fd} with the event loop: {source}")]
    Register {
        /// The fd.
        fd: RawFd,
        /// The host error.
        #[source]
        source: io::Error,
    },
    /// The driver is already registered on a loop; drop it or create a new
    /// one to register it elsewhere.
    #[error("this driver is already registered as {0}")]
    AlreadyRegistered(SourceId),
    /// Spawning the loop thread failed.
    #[error("cannot spawn the event-loop thread: {0}")]
    Spawn(#[source] io::Error),
    /// The loop thread panicked.
    #[error("the event-loop thread panicked")]
    ThreadPanicked,
}

/// Sub-tokens per source: a source may register up to this many fds.
const SUBS: usize = 4;
const WAKER_TOKEN: Token = Token(0);

/// What the loop needs from a driver.
pub(crate) trait Source: Send + Sync {
    /// The fds to watch for readability; the index is the `sub` passed to
    /// [`Source::ready`]. At most [`SUBS`].
    fn fds(&self) -> Vec<RawFd>;
    /// fd number `sub` became readable: drain it and push events.
    fn ready(&self, id: SourceId, sub: usize, out: &mut Vec<Event>);
}

struct Entry {
    source: Arc<dyn Source>,
    fds: Vec<RawFd>,
}

struct Shared {
    registry: mio::Registry,
    waker: mio::Waker,
    sources: Mutex<HashMap<u64, Entry>>,
    posted: Mutex<Vec<Event>>,
    woken: AtomicBool,
    next_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a driver callback must not wedge the loop forever.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn wake_poll(&self) {
        if let Err(e) = self.waker.wake() {
            log::warn!("event loop: waking epoll failed: {e}");
        }
    }
}

/// A cloneable, thread-safe handle on an [`EventLoop`]: drivers register
/// through it, and it can wake the loop. It stays usable after the loop was
/// moved to its own thread with [`EventLoop::spawn`].
#[derive(Clone)]
pub struct LoopHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopHandle").finish_non_exhaustive()
    }
}

impl LoopHandle {
    /// Wakes the loop; it reports [`Event::Wake`].
    pub fn wake(&self) {
        self.shared.woken.store(true, Ordering::Release);
        self.shared.wake_poll();
    }

    /// A [`Waker`] for this loop (a handle that can only wake).
    pub fn waker(&self) -> Waker {
        Waker {
            shared: self.shared.clone(),
        }
    }

    /// Number of registered sources.
    pub fn source_count(&self) -> usize {
        lock(&self.shared.sources).len()
    }

    pub(crate) fn allocate_id(&self) -> SourceId {
        SourceId(self.shared.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Registers `source` under a fresh id. The entry is visible to the
    /// loop before epoll can report on it, so no edge is lost.
    pub(crate) fn add(&self, source: Arc<dyn Source>) -> Result<SourceId, EventLoopError> {
        let id = self.allocate_id();
        let fds = source.fds();
        assert!(
            fds.len() <= SUBS,
            "a source may register at most {SUBS} fds"
        );
        lock(&self.shared.sources).insert(
            id.0,
            Entry {
                source,
                fds: fds.clone(),
            },
        );
        for (sub, fd) in fds.iter().enumerate() {
            let token = Token(id.0 as usize * SUBS + sub);
            if let Err(source) =
                self.shared
                    .registry
                    .register(&mut SourceFd(fd), token, Interest::READABLE)
            {
                self.remove(id);
                return Err(EventLoopError::Register { fd: *fd, source });
            }
        }
        Ok(id)
    }

    /// Removes a source; its fds leave epoll before the loop drops its
    /// reference (which may close them).
    pub(crate) fn remove(&self, id: SourceId) {
        let entry = lock(&self.shared.sources).remove(&id.0);
        if let Some(entry) = entry {
            for fd in &entry.fds {
                // ENOENT (never added, or already closed) is fine here.
                let _ = self.shared.registry.deregister(&mut SourceFd(fd));
            }
        }
    }

    /// Queues an event produced off the loop thread and wakes the loop.
    pub(crate) fn post(&self, event: Event) {
        lock(&self.shared.posted).push(event);
        self.shared.wake_poll();
    }
}

/// Wakes an [`EventLoop`] from any thread. Cheap to clone.
#[derive(Clone)]
pub struct Waker {
    shared: Arc<Shared>,
}

impl fmt::Debug for Waker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waker").finish_non_exhaustive()
    }
}

impl Waker {
    /// Wakes the loop: a blocked [`EventLoop::poll_once`] returns with an
    /// [`Event::Wake`].
    pub fn wake(&self) {
        self.shared.woken.store(true, Ordering::Release);
        self.shared.wake_poll();
    }
}

/// The event loop (one epoll instance). See the [module docs](self).
pub struct EventLoop {
    poll: Poll,
    events: Events,
    handle: LoopHandle,
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("sources", &self.handle.source_count())
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    /// Creates an empty loop.
    pub fn new() -> Result<EventLoop, EventLoopError> {
        let poll = Poll::new().map_err(EventLoopError::Create)?;
        let registry = poll
            .registry()
            .try_clone()
            .map_err(EventLoopError::Create)?;
        let waker =
            mio::Waker::new(poll.registry(), WAKER_TOKEN).map_err(EventLoopError::Create)?;
        Ok(EventLoop {
            poll,
            events: Events::with_capacity(256),
            handle: LoopHandle {
                shared: Arc::new(Shared {
                    registry,
                    waker,
                    sources: Mutex::new(HashMap::new()),
                    posted: Mutex::new(Vec::new()),
                    woken: AtomicBool::new(false),
                    next_id: AtomicU64::new(1),
                }),
            },
        })
    }

    /// The handle drivers register through.
    pub fn handle(&self) -> &LoopHandle {
        &self.handle
    }

    /// A [`Waker`] for this loop.
    pub fn waker(&self) -> Waker {
        self.handle.waker()
    }

    /// Waits until at least one event is available or `timeout` passes
    /// (`None`: no timeout) and returns the events (empty on timeout).
    ///
    /// EINTR from `epoll_wait` is retried with the remaining time, so a
    /// signal never makes this return early with nothing.
    pub fn poll_once(&mut self, timeout: Option<Duration>) -> Result<Vec<Event>, EventLoopError> {
        let mut out = Vec::new();
        self.poll_into(timeout, &mut out)?;
        Ok(out)
    }

    /// Like [`EventLoop::poll_once`] but appends to `out` (reusing its
    /// allocation); returns how many events were appended.
    pub fn poll_into(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<Event>,
    ) -> Result<usize, EventLoopError> {
        let start = out.len();
        let deadline = timeout.map(|t| Instant::now() + t);
        let shared = self.handle.shared.clone();
        loop {
            let pending = !lock(&shared.posted).is_empty() || shared.woken.load(Ordering::Acquire);
            let wait = if pending {
                Some(Duration::ZERO)
            } else {
                deadline.map(|d| d.saturating_duration_since(Instant::now()))
            };
            match self.poll.poll(&mut self.events, wait) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(EventLoopError::Poll(e)),
            }
            if !self.events.is_empty() {
                let sources = lock(&shared.sources);
                for ev in self.events.iter() {
                    let token = ev.token();
                    if token == WAKER_TOKEN {
                        continue;
                    }
                    let id = (token.0 / SUBS) as u64;
                    if let Some(entry) = sources.get(&id) {
                        entry.source.ready(SourceId(id), token.0 % SUBS, out);
                    }
                }
            }
            out.append(&mut lock(&shared.posted));
            if shared.woken.swap(false, Ordering::AcqRel) {
                out.push(Event::Wake);
            }
            if out.len() > start {
                return Ok(out.len() - start);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(0);
            }
        }
    }

    /// Runs the loop on the calling thread, handing every event to `f`,
    /// until `f` returns [`ControlFlow::Break`].
    pub fn run<F>(&mut self, mut f: F) -> Result<(), EventLoopError>
    where
        F: FnMut(Event) -> ControlFlow<()>,
    {
        let mut batch = Vec::new();
        loop {
            self.poll_into(None, &mut batch)?;
            for event in batch.drain(..) {
                if f(event).is_break() {
                    return Ok(());
                }
            }
        }
    }

    /// Moves the loop to a new thread that sends every event to a channel.
    /// Drivers can still be registered through [`LoopThread::handle`].
    pub fn spawn(self) -> Result<LoopThread, EventLoopError> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = self.handle.clone();
        let thread_stop = stop.clone();
        let mut ev = self;
        let thread = thread::Builder::new()
            .name("vkernel-devices-loop".into())
            .spawn(move || {
                let mut batch = Vec::new();
                loop {
                    ev.poll_into(None, &mut batch)?;
                    for event in batch.drain(..) {
                        if matches!(event, Event::Wake) && thread_stop.load(Ordering::Acquire) {
                            continue; // our own stop request
                        }
                        if tx.send(event).is_err() {
                            return Ok(ev); // nobody listens any more
                        }
                    }
                    if thread_stop.load(Ordering::Acquire) {
                        return Ok(ev);
                    }
                }
            })
            .map_err(EventLoopError::Spawn)?;
        Ok(LoopThread {
            events: rx,
            handle,
            stop,
            thread: Some(thread),
        })
    }
}

/// An [`EventLoop`] running on its own thread (see [`EventLoop::spawn`]).
/// Dropping it stops the thread.
pub struct LoopThread {
    events: mpsc::Receiver<Event>,
    handle: LoopHandle,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<Result<EventLoop, EventLoopError>>>,
}

impl fmt::Debug for LoopThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopThread").finish_non_exhaustive()
    }
}

impl LoopThread {
    /// The channel the loop thread delivers events on.
    pub fn events(&self) -> &mpsc::Receiver<Event> {
        &self.events
    }

    /// Waits up to `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }

    /// The handle to register drivers and wake the loop.
    pub fn handle(&self) -> &LoopHandle {
        &self.handle
    }

    /// Stops the thread and gives the loop back (with its registrations).
    /// Events not yet taken from [`LoopThread::events`] are discarded.
    pub fn stop(mut self) -> Result<EventLoop, EventLoopError> {
        self.stop_and_join()
            .unwrap_or(Err(EventLoopError::ThreadPanicked))
    }

    fn stop_and_join(&mut self) -> Option<Result<EventLoop, EventLoopError>> {
        let thread = self.thread.take()?;
        self.stop.store(true, Ordering::Release);
        self.handle.wake();
        Some(thread.join().unwrap_or(Err(EventLoopError::ThreadPanicked)))
    }
}

impl Drop for LoopThread {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.stop_and_join() {
            log::warn!("event-loop thread ended with an error: {e}");
        }
    }
}

/// A driver's registration; deregisters on drop.
#[derive(Debug)]
pub(crate) struct Registration {
    handle: LoopHandle,
    id: SourceId,
}

impl Registration {
    fn new(handle: &LoopHandle, id: SourceId) -> Registration {
        Registration {
            handle: handle.clone(),
            id,
        }
    }

    pub(crate) fn id(&self) -> SourceId {
        self.id
    }

    /// Registers `source` (if `slot` is empty) and stores the registration.
    pub(crate) fn register_into(
        slot: &mut Option<Registration>,
        handle: &LoopHandle,
        source: Arc<dyn Source>,
    ) -> Result<SourceId, EventLoopError> {
        if let Some(reg) = slot {
            return Err(EventLoopError::AlreadyRegistered(reg.id));
        }
        let id = handle.add(source)?;
        *slot = Some(Registration::new(handle, id));
        Ok(id)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.handle.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_returns_empty() {
        let mut ev = EventLoop::new().unwrap();
        let t = Instant::now();
        let events = ev.poll_once(Some(Duration::from_millis(20))).unwrap();
        assert!(events.is_empty());
        assert!(t.elapsed() >= Duration::from_millis(15));
    }

    #[test]
    fn waker_from_other_thread() {
        let mut ev = EventLoop::new().unwrap();
        let waker = ev.waker();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            waker.wake();
            waker.wake();
        });
        let events = ev.poll_once(Some(Duration::from_secs(10))).unwrap();
        t.join().unwrap();
        assert!(matches!(events.as_slice(), [Event::Wake]), "{events:?}");
    }

    #[test]
    fn spawned_loop_delivers_and_stops() {
        let ev = EventLoop::new().unwrap();
        let lt = ev.spawn().unwrap();
        lt.handle().wake();
        let e = lt.recv_timeout(Duration::from_secs(10));
        assert!(matches!(e, Some(Event::Wake)), "{e:?}");
        let ev = lt.stop().unwrap();
        assert_eq!(ev.handle().source_count(), 0);
    }
}
