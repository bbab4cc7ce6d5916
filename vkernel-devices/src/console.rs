//! [`Console`]: the virtual kernel's controlling terminal.
//!
//! Input is read non-blocking and delivered as [`Event::ConsoleInput`];
//! output is written synchronously with [`Console::write_all`] (or through
//! [`std::io::Write`]).
//!
//! **Terminal mode.** When the input fd is a terminal and
//! [`ConsoleOptions::raw`] is set (the default), the terminal is put in raw
//! input mode: no line editing, no echo, no CR/NL translation, every byte
//! delivered as typed. Output post-processing (`OPOST`, e.g. `\n` ->
//! `\r\n`) is left as it was. `ISIG` stays on so that Ctrl-C still raises
//! SIGINT, while the quit and suspend characters are disabled — the same
//! shape as DragonFly's vkernel console. The original termios and fd flags
//! are restored when the console is dropped (not on `process::exit`). When
//! the input is not a terminal (pipes, files) it is used as is. On a
//! terminal, end of file (Ctrl-D on an empty line) is not the end: each one
//! is an [`Event::ConsoleEof`] and input goes on; only a hang-up closes it.
//!
//! **SIGINT.** With [`ConsoleOptions::catch_sigint`] (the default) the
//! console installs a SIGINT handler that writes one byte to a process-wide
//! self-pipe; the loop turns it into [`Event::ConsoleInterrupt`] and the
//! process keeps running. A self-pipe was chosen over `signalfd` because
//! `signalfd` only works if SIGINT is blocked in *every* thread, which a
//! library cannot guarantee (threads created before the console, by other
//! libraries or by the vkernel's vCPU code, would still take the default
//! action and kill the process). With a handler, whichever thread receives
//! the signal just writes to the pipe. The handler is installed with
//! `SA_RESTART`; the previous disposition is restored on drop. Only one
//! console at a time can catch SIGINT ([`ConsoleError::SigintInUse`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use vkernel_devices::{Console, Event, EventLoop};
//!
//! let mut ev = EventLoop::new()?;
//! let mut con = Console::stdio()?;
//! con.register(ev.handle())?;
//! con.write_all(b"vkernel> ")?;
//! for event in ev.poll_once(Some(Duration::from_secs(5)))? {
//!     match event {
//!         Event::ConsoleInput { data, .. } => con.write_all(&data)?,
//!         Event::ConsoleInterrupt { .. } => con.write_all(b"^C\r\n")?,
//!         _ => {}
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};

use nix::fcntl::OFlag;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices, Termios};

use crate::event_loop::{Event, EventLoopError, LoopHandle, Registration, Source, SourceId};
use crate::sys;

/// Errors of [`Console`].
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Duplicating stdin/stdout failed.
    #[error("cannot duplicate the standard fds: {0}")]
    Dup(#[source] io::Error),
    /// Querying or changing the fd flags failed.
    #[error("cannot change the console fd flags: {0}")]
    Fcntl(#[source] io::Error),
    /// Reading or setting the terminal attributes failed.
    #[error("cannot set the terminal mode: {0}")]
    Termios(#[source] io::Error),
    /// Another console already catches SIGINT.
    #[error("another Console already catches SIGINT; create this one with catch_sigint = false")]
    SigintInUse,
    /// Creating the self-pipe or installing the SIGINT handler failed.
    #[error("cannot install the SIGINT handler: {0}")]
    Signal(#[source] io::Error),
    /// Writing console output failed.
    #[error("console write failed: {0}")]
    Write(#[source] io::Error),
    /// Registering on the event loop failed.
    #[error(transparent)]
    EventLoop(#[from] EventLoopError),
}

/// How a [`Console`] treats its terminal and SIGINT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleOptions {
    /// Put a terminal input in raw mode (ignored for non-terminals).
    /// Default: true.
    pub raw: bool,
    /// Turn SIGINT into [`Event::ConsoleInterrupt`]. Default: true.
    pub catch_sigint: bool,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        ConsoleOptions {
            raw: true,
            catch_sigint: true,
        }
    }
}

// ---- the process-wide SIGINT self-pipe ------------------------------------

/// (read end, write end), both non-blocking and close-on-exec; created once
/// and never closed, so the handler can never write to a recycled fd.
static SIGINT_PIPE: OnceLock<(OwnedFd, OwnedFd)> = OnceLock::new();
/// The write end while a console catches SIGINT, -1 otherwise.
static SIGINT_WRITE_FD: AtomicI32 = AtomicI32::new(-1);
static SIGINT_CLAIMED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_signo: libc::c_int) {
    let fd = SIGINT_WRITE_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    // SAFETY: only async-signal-safe calls (errno access, write(2)). The fd
    // is the never-closed pipe write end; the buffer is a local byte. errno
    // is saved and restored so the interrupted code does not see ours.
    unsafe {
        let errno = *libc::__errno_location();
        let byte = 1u8;
        libc::write(fd, (&byte as *const u8).cast(), 1);
        *libc::__errno_location() = errno;
    }
}

/// Owns the SIGINT disposition while a console catches it.
struct SigintGuard {
    read_fd: RawFd,
    old: SigAction,
}

impl SigintGuard {
    fn install() -> Result<SigintGuard, ConsoleError> {
        if SIGINT_CLAIMED.swap(true, Ordering::AcqRel) {
            return Err(ConsoleError::SigintInUse);
        }
        let result = Self::install_claimed();
        if result.is_err() {
            SIGINT_CLAIMED.store(false, Ordering::Release);
        }
        result
    }

    fn install_claimed() -> Result<SigintGuard, ConsoleError> {
        let pipe = match SIGINT_PIPE.get() {
            Some(p) => p,
            None => {
                let p = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
                    .map_err(|e| ConsoleError::Signal(e.into()))?;
                // Only the claimant gets here, so there is no race.
                SIGINT_PIPE.get_or_init(|| p)
            }
        };
        // Discard bytes from signals that arrived under a previous console.
        let mut buf = [0u8; 64];
        while matches!(sys::read_retry(pipe.0.as_fd(), &mut buf), Ok(n) if n > 0) {}
        SIGINT_WRITE_FD.store(pipe.1.as_raw_fd(), Ordering::Release);
        let action = SigAction::new(
            SigHandler::Handler(on_sigint),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: `on_sigint` only performs async-signal-safe operations.
        let old = unsafe { nix::sys::signal::sigaction(Signal::SIGINT, &action) }.map_err(|e| {
            SIGINT_WRITE_FD.store(-1, Ordering::Release);
            ConsoleError::Signal(e.into())
        })?;
        Ok(SigintGuard {
            read_fd: pipe.0.as_raw_fd(),
            old,
        })
    }

    /// Drains the pipe; true if at least one SIGINT arrived.
    fn drain(&self) -> bool {
        let Some(pipe) = SIGINT_PIPE.get() else {
            return false;
        };
        let mut any = false;
        let mut buf = [0u8; 64];
        while let Ok(n) = sys::read_retry(pipe.0.as_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            any = true;
        }
        any
    }
}

impl Drop for SigintGuard {
    fn drop(&mut self) {
        // SAFETY: restores the disposition that was in place before
        // `install`; it was valid then and handlers are process-global.
        if let Err(e) = unsafe { nix::sys::signal::sigaction(Signal::SIGINT, &self.old) } {
            log::warn!("console: cannot restore the SIGINT disposition: {e}");
        }
        SIGINT_WRITE_FD.store(-1, Ordering::Release);
        SIGINT_CLAIMED.store(false, Ordering::Release);
    }
}

// ---- the console -----------------------------------------------------------

struct Inner {
    input: OwnedFd,
    output: OwnedFd,
    /// Input fd flags before we set O_NONBLOCK.
    input_flags: OFlag,
    /// Terminal attributes before raw mode, if we changed them.
    saved_termios: Option<libc::termios>,
    sigint: Option<SigintGuard>,
    closed: AtomicBool,
    /// The input is a terminal: end of file there is Ctrl-D, not the end.
    terminal: bool,
}

impl Source for Inner {
    fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.input.as_raw_fd()];
        if let Some(g) = &self.sigint {
            fds.push(g.read_fd);
        }
        fds
    }

    fn ready(&self, id: SourceId, sub: usize, out: &mut Vec<Event>) {
        if sub == 1 {
            if self.sigint.as_ref().is_some_and(|g| g.drain()) {
                out.push(Event::ConsoleInterrupt { source: id });
            }
            return;
        }
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        let mut eof = false;
        loop {
            match sys::read_retry(self.input.as_fd(), &mut buf) {
                // Ctrl-D on a terminal that is still there: one end of
                // file, in order with the bytes around it; keep reading.
                Ok(0) if self.terminal && !sys::hung_up(self.input.as_fd()) => {
                    if !data.is_empty() {
                        out.push(Event::ConsoleInput {
                            source: id,
                            data: std::mem::take(&mut data),
                        });
                    }
                    out.push(Event::ConsoleEof { source: id });
                }
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // A terminal whose other side went away (pty master closed).
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    eof = true;
                    break;
                }
                Err(error) => {
                    out.push(Event::SourceError { source: id, error });
                    break;
                }
            }
        }
        if !data.is_empty() {
            out.push(Event::ConsoleInput { source: id, data });
        }
        if eof && !self.closed.swap(true, Ordering::AcqRel) {
            out.push(Event::ConsoleClosed { source: id });
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = self.saved_termios {
            let t = Termios::from(t);
            if let Err(e) = termios::tcsetattr(self.input.as_fd(), SetArg::TCSANOW, &t) {
                log::warn!("console: cannot restore the terminal mode: {e}");
            }
        }
        if let Err(e) = sys::set_flags(self.input.as_fd(), self.input_flags) {
            log::warn!("console: cannot restore the input fd flags: {e}");
        }
    }
}

/// The console: terminal (or pipe) input as events, synchronous output.
/// Dropping it restores the terminal, the fd flags and SIGINT, and
/// deregisters it.
pub struct Console {
    inner: Arc<Inner>,
    reg: Option<Registration>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("input", &self.inner.input.as_raw_fd())
            .field("output", &self.inner.output.as_raw_fd())
            .field("raw", &self.is_raw())
            .field("catches_sigint", &self.catches_sigint())
            .field("source", &self.reg.as_ref().map(|r| r.id()))
            .finish()
    }
}

impl Console {
    /// The process's stdin/stdout (duplicated, so dropping the console
    /// never closes fds 0 and 1) with default options.
    pub fn stdio() -> Result<Console, ConsoleError> {
        let input = io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(ConsoleError::Dup)?;
        let output = io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(ConsoleError::Dup)?;
        Console::with_options(input, output, ConsoleOptions::default())
    }

    /// A console over arbitrary fds (a pty slave, a pipe pair...) with
    /// default options. The console owns the fds.
    pub fn from_fds(input: OwnedFd, output: OwnedFd) -> Result<Console, ConsoleError> {
        Console::with_options(input, output, ConsoleOptions::default())
    }

    /// A console over arbitrary fds with explicit options.
    pub fn with_options(
        input: OwnedFd,
        output: OwnedFd,
        options: ConsoleOptions,
    ) -> Result<Console, ConsoleError> {
        let sigint = if options.catch_sigint {
            Some(SigintGuard::install()?)
        } else {
            None
        };
        let input_flags = sys::set_nonblocking(input.as_fd()).map_err(ConsoleError::Fcntl)?;
        let terminal = nix::unistd::isatty(input.as_fd()).unwrap_or(false);
        // From here on `Inner::drop` undoes whatever was changed.
        let mut inner = Inner {
            input,
            output,
            input_flags,
            saved_termios: None,
            sigint,
            closed: AtomicBool::new(false),
            terminal,
        };
        if options.raw && inner.terminal {
            let orig = termios::tcgetattr(inner.input.as_fd())
                .map_err(|e| ConsoleError::Termios(e.into()))?;
            let mut raw = orig.clone();
            termios::cfmakeraw(&mut raw);
            raw.output_flags = orig.output_flags;
            if options.catch_sigint {
                raw.local_flags.insert(LocalFlags::ISIG);
                raw.control_chars[SpecialCharacterIndices::VQUIT as usize] = 0;
                raw.control_chars[SpecialCharacterIndices::VSUSP as usize] = 0;
            }
            termios::tcsetattr(inner.input.as_fd(), SetArg::TCSANOW, &raw)
                .map_err(|e| ConsoleError::Termios(e.into()))?;
            inner.saved_termios = Some(libc::termios::from(orig));
        }
        Ok(Console {
            inner: Arc::new(inner),
            reg: None,
        })
    }

    /// Registers the console: input becomes [`Event::ConsoleInput`] /
    /// [`Event::ConsoleClosed`] (and, on a terminal, [`Event::ConsoleEof`]
    /// for each Ctrl-D on an empty line), SIGINT (if caught) becomes
    /// [`Event::ConsoleInterrupt`].
    pub fn register(&mut self, handle: &LoopHandle) -> Result<SourceId, ConsoleError> {
        Ok(Registration::register_into(
            &mut self.reg,
            handle,
            self.inner.clone(),
        )?)
    }

    /// The id this console's events carry, if registered.
    pub fn source_id(&self) -> Option<SourceId> {
        self.reg.as_ref().map(|r| r.id())
    }

    /// True if the input terminal was put in raw mode.
    pub fn is_raw(&self) -> bool {
        self.inner.saved_termios.is_some()
    }

    /// True if this console turns SIGINT into events.
    pub fn catches_sigint(&self) -> bool {
        self.inner.sigint.is_some()
    }

    /// Writes all of `data` to the output, waiting if the output is a full
    /// non-blocking fd.
    pub fn write_all(&self, data: &[u8]) -> Result<(), ConsoleError> {
        sys::write_all(self.inner.output.as_fd(), data).map_err(ConsoleError::Write)
    }
}

impl io::Write for &Console {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::write_all(self.inner.output.as_fd(), buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Write for Console {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
