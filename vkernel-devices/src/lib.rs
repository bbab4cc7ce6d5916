//! # vkernel-devices
//!
//! Host-side drivers for a virtual kernel, all driven by one [`mio`] event
//! loop — the Linux analog of the kqueue loop DragonFly's vkernel uses:
//!
//! | seed (DragonFly vkernel)   | here                                   |
//! |----------------------------|----------------------------------------|
//! | `EVFILT_TIMER`             | [`Timer`] (timerfd)                    |
//! | the controlling terminal   | [`Console`] (raw tty or pipes, SIGINT) |
//! | vdisk (file image)         | [`Disk`] (pread/pwrite), [`DiskQueue`] |
//! | vke (tap interface)        | [`Vke`] (tun-tap, `IFF_TAP`)           |
//!
//! Drivers are independent objects. Each one can be *registered* on an
//! [`EventLoop`] through its [`LoopHandle`]; from then on the loop turns the
//! driver's host notifications into [`Event`]s. The virtual kernel either
//! drives the loop itself with [`EventLoop::poll_once`] or runs it on its own
//! thread with [`EventLoop::spawn`]. A [`Waker`] wakes the loop from any
//! thread.
//!
//! ```
//! use std::time::Duration;
//! use vkernel_devices::{Event, EventLoop, Timer};
//!
//! let mut ev = EventLoop::new()?;
//! let mut tick = Timer::new()?;
//! let tick_id = tick.register(ev.handle())?;
//! tick.arm_periodic(Duration::from_millis(10))?;
//! for event in ev.poll_once(Some(Duration::from_secs(1)))? {
//!     if let Event::Timer { source, expirations } = event {
//!         assert_eq!(source, tick_id);
//!         println!("{expirations} ticks");
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod console;
pub mod disk;
pub mod event_loop;
pub mod timer;
pub mod vke;

mod sys;

pub use console::{Console, ConsoleError, ConsoleOptions};
pub use disk::{
    Disk, DiskCompletion, DiskError, DiskOptions, DiskQueue, DiskRequest, RequestId,
    DEFAULT_SECTOR_SIZE,
};
pub use event_loop::{Event, EventLoop, EventLoopError, LoopHandle, LoopThread, SourceId, Waker};
pub use timer::{Timer, TimerError};
pub use vke::{Vke, VkeError};

/// Any error of this crate, for callers that do not care which driver failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An event-loop error.
    #[error(transparent)]
    EventLoop(#[from] EventLoopError),
    /// A timer error.
    #[error(transparent)]
    Timer(#[from] TimerError),
    /// A console error.
    #[error(transparent)]
    Console(#[from] ConsoleError),
    /// A disk error.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// A tap (vke) error.
    #[error(transparent)]
    Vke(#[from] VkeError),
}
