//! The vproc's standard input, output and error.
//!
//! [`ConsoleStdio`] is the real thing: output through the
//! [`crate::devices::Console`] driver (stderr goes to the host's stderr),
//! input as console events from an event loop on its own thread, and
//! SIGINT turned into a debugger request that kicks the vCPU out of the
//! guest. [`BufferStdio`] serves tests and benchmarks: input from a byte
//! string, output captured in memory.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::core::prelude::Kicker;

use super::files::Wake;
use crate::devices::{Console, ConsoleError, ConsoleOptions, Event, EventLoop, EventLoopError};

/// Errno: the call was interrupted and will be restarted after the
/// virtual kernel handled the interruption (Linux's ERESTARTSYS).
pub const ERESTART: i64 = 512;

/// Errors setting up the console.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// The console driver failed.
    #[error("console: {0}")]
    Console(#[from] ConsoleError),
    /// The event loop failed.
    #[error("event loop: {0}")]
    EventLoop(#[from] EventLoopError),
    /// The console's stand-in input pipe could not be created.
    #[error("cannot create the console's input pipe: {0} (the host is out of file descriptors?)")]
    Pipe(std::io::Error),
    /// The event-loop thread could not start.
    #[error(
        "cannot start the console thread: {0} (the host is out of threads or memory: raise \
         `ulimit -v`/`ulimit -u`)"
    )]
    Thread(std::io::Error),
}

/// Where fds 0, 1 and 2 of the vproc lead.
pub trait Stdio: Send {
    /// Write to fd 1 or 2. Returns bytes written or a negative errno.
    fn write(&mut self, fd: i32, data: &[u8]) -> Result<usize, i64>;
    /// Read stdin, blocking until at least one byte or end of file. May
    /// return `Err(ERESTART)` when a debugger request interrupted it.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, i64>;
    /// The host fd behind fd 0/1/2, for terminal ioctls and fstat.
    fn host_fd(&self, fd: i32) -> Option<RawFd>;
    /// Would a read return at once (input, end of file, or an
    /// interruption)? With `waiter`, when not, `waiter` is registered
    /// (in the same critical section) and woken when that changes.
    fn readable(&self, _waiter: Option<(i32, Arc<dyn Wake>)>) -> bool {
        true
    }
    /// True once after SIGINT arrived on the console.
    fn take_interrupt(&mut self) -> bool {
        false
    }
    /// True while a SIGINT is waiting to be taken (blocking calls return
    /// `Err(ERESTART)` then).
    fn interrupt_pending(&self) -> bool {
        false
    }
    /// True if a person at a terminal can answer the debugger prompt
    /// (stdin is a terminal). Otherwise SIGINT does what it does to a
    /// foreground process on Linux: the vprocs get it (and usually die).
    fn interactive(&self) -> bool {
        false
    }
    /// A line for the debugger prompt (None at end of input).
    fn read_line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        loop {
            match self.read(&mut b) {
                Ok(1) if b[0] == b'\n' => break,
                Ok(1) => line.push(b[0]),
                _ if line.is_empty() => return None,
                _ => break,
            }
        }
        Some(String::from_utf8_lossy(&line).into_owned())
    }
    /// Flush buffered output.
    fn flush(&mut self) {}
    /// Does a write to fd 1 or 2 always finish without waiting for
    /// anybody (a host regular file or /dev/null, memory)? The exitless
    /// server writes only then; a pipe or a terminal can block.
    fn write_never_blocks(&self, _fd: i32) -> bool {
        false
    }
}

/// One [`Stdio`] shared by every vproc of a virtual kernel (and its vCPU
/// threads). Same methods, through a mutex.
#[derive(Clone)]
pub struct SharedStdio(Arc<Mutex<Box<dyn Stdio>>>);

impl SharedStdio {
    /// Share `s`.
    pub fn new(s: Box<dyn Stdio>) -> SharedStdio {
        SharedStdio(Arc::new(Mutex::new(s)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Box<dyn Stdio>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// See [`Stdio::write`].
    pub fn write(&self, fd: i32, data: &[u8]) -> Result<usize, i64> {
        self.lock().write(fd, data)
    }

    /// [`Stdio::write`] for the exitless server: None, without writing,
    /// when another thread holds the stdio or the write could block
    /// ([`Stdio::write_never_blocks`]).
    pub fn try_write_never_blocking(&self, fd: i32, data: &[u8]) -> Option<Result<usize, i64>> {
        let mut g = match self.0.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        g.write_never_blocks(fd).then(|| g.write(fd, data))
    }

    /// See [`Stdio::read`].
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, i64> {
        self.lock().read(buf)
    }

    /// See [`Stdio::host_fd`].
    pub fn host_fd(&self, fd: i32) -> Option<RawFd> {
        self.lock().host_fd(fd)
    }

    /// See [`Stdio::readable`].
    pub fn readable(&self, waiter: Option<(i32, Arc<dyn Wake>)>) -> bool {
        self.lock().readable(waiter)
    }

    /// See [`Stdio::take_interrupt`].
    pub fn take_interrupt(&self) -> bool {
        self.lock().take_interrupt()
    }

    /// See [`Stdio::interrupt_pending`].
    pub fn interrupt_pending(&self) -> bool {
        self.lock().interrupt_pending()
    }

    /// See [`Stdio::interactive`].
    pub fn interactive(&self) -> bool {
        self.lock().interactive()
    }

    /// See [`Stdio::read_line`].
    pub fn read_line(&self) -> Option<String> {
        self.lock().read_line()
    }

    /// See [`Stdio::flush`].
    pub fn flush(&self) {
        self.lock().flush()
    }
}

/// Captured output shared with the caller.
pub type Captured = Arc<Mutex<Vec<u8>>>;

/// In-memory stdio: stdin from bytes, stdout/stderr captured.
#[derive(Debug, Default)]
pub struct BufferStdio {
    input: VecDeque<u8>,
    /// What fd 1 received.
    pub stdout: Captured,
    /// What fd 2 received.
    pub stderr: Captured,
    /// Also copy output to the host's stdout/stderr.
    pub echo: bool,
}

impl BufferStdio {
    /// Stdin holds `input`.
    pub fn new(input: &[u8]) -> BufferStdio {
        BufferStdio {
            input: input.iter().copied().collect(),
            ..Default::default()
        }
    }
}

impl Stdio for BufferStdio {
    fn write(&mut self, fd: i32, data: &[u8]) -> Result<usize, i64> {
        let target = if fd == 2 { &self.stderr } else { &self.stdout };
        target.lock().unwrap().extend_from_slice(data);
        if self.echo {
            if fd == 2 {
                let _ = std::io::stderr().write_all(data);
            } else {
                let _ = std::io::stdout().write_all(data);
            }
        }
        Ok(data.len())
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, i64> {
        let n = buf.len().min(self.input.len());
        for b in buf.iter_mut().take(n) {
            *b = self.input.pop_front().expect("counted");
        }
        Ok(n)
    }

    fn host_fd(&self, _fd: i32) -> Option<RawFd> {
        None
    }

    fn write_never_blocks(&self, _fd: i32) -> bool {
        // Memory, unless echoed to the host's stdout/stderr.
        !self.echo
    }
}

/// Console input not read yet.
#[derive(Default)]
struct Input {
    buf: VecDeque<u8>,
    /// Bytes taken out of `buf` so far.
    taken: u64,
    /// Ends of file typed on a terminal (Ctrl-D), each as the count of
    /// bytes before it in the stream: a read stops there and returns 0
    /// once, and input goes on after it.
    eofs: VecDeque<u64>,
    /// The input is closed for good.
    eof: bool,
}

impl Input {
    /// A Ctrl-D at the current end of the stream.
    fn push_eof(&mut self) {
        self.eofs.push_back(self.taken + self.buf.len() as u64);
    }

    /// Take what a read returns now: `Some(n)` bytes (0 at an end of
    /// file), or `None` when the reader has to wait.
    fn take(&mut self, out: &mut [u8]) -> Option<usize> {
        if out.is_empty() {
            // A zero-length read consumes nothing, not even a Ctrl-D.
            return Some(0);
        }
        if self.eofs.front() == Some(&self.taken) {
            self.eofs.pop_front();
            return Some(0);
        }
        let avail = self
            .eofs
            .front()
            .map_or(self.buf.len(), |&at| (at - self.taken) as usize);
        if avail > 0 {
            let n = out.len().min(avail);
            for (o, b) in out.iter_mut().zip(self.buf.drain(..n)) {
                *o = b;
            }
            self.taken += n as u64;
            return Some(n);
        }
        self.eof.then_some(0)
    }
}

struct Shared {
    input: Mutex<Input>,
    /// Vprocs waiting for input (woken on input, end of file, Ctrl-C).
    waiters: Mutex<Vec<(i32, Arc<dyn Wake>)>>,
    cond: Condvar,
    interrupt: AtomicBool,
    stop: AtomicBool,
}

/// Stdio through the Console driver and an event-loop thread.
pub struct ConsoleStdio {
    console: Console,
    /// stdin is a terminal (see [`Stdio::interactive`]).
    terminal: bool,
    shared: Arc<Shared>,
    waker: crate::devices::Waker,
    thread: Option<std::thread::JoinHandle<()>>,
    direct_stdin: bool,
    /// fds 1 and 2 of the host are regular files or /dev/null (see
    /// [`Stdio::write_never_blocks`]).
    never_blocks: [bool; 2],
    /// The host fds 0-2 stand for ([`ConsoleStdio::with_fds`]; None: this
    /// process's own).
    own: Option<[std::fs::File; 3]>,
}

/// Is host fd `fd` a regular file or /dev/null (a write never waits)?
fn host_fd_never_blocks(fd: RawFd) -> bool {
    // SAFETY: an all-zero stat is a valid value for the call to fill.
    let mut s: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `s` is a valid, writable struct stat; a bad fd only fails.
    if unsafe { libc::fstat(fd, &mut s) } != 0 {
        return false;
    }
    match s.st_mode & libc::S_IFMT {
        libc::S_IFREG => true,
        libc::S_IFCHR => s.st_rdev == libc::makedev(1, 3),
        _ => false,
    }
}

impl ConsoleStdio {
    /// Open the process's stdin/stdout as the console. SIGINT kicks the
    /// vCPU behind `kicker` and raises a debugger request.
    pub fn new(kicker: Kicker) -> Result<ConsoleStdio, StdioError> {
        let output = std::io::stdout()
            .lock()
            .try_clone_fd()
            .map_err(ConsoleError::Dup)?;
        let input = std::io::stdin()
            .lock()
            .try_clone_fd()
            .map_err(ConsoleError::Dup)?;
        Self::open(input, output, None, Some(kicker))
    }

    /// fds 0, 1 and 2 over the host fds `stdin`, `stdout` and `stderr`
    /// (a process spawned into a running kernel with another process's
    /// stdio, see [`crate::kernel::Spawner`]). SIGINT is not caught: the
    /// host signal is the vkernel process's, not this stdio's.
    pub fn with_fds(
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<ConsoleStdio, StdioError> {
        let input = stdin.try_clone_fd().map_err(ConsoleError::Dup)?;
        let output = stdout.try_clone_fd().map_err(ConsoleError::Dup)?;
        let own = [stdin.into(), stdout.into(), stderr.into()];
        Self::open(input, output, Some(own), None)
    }

    /// The console over `input` and `output`; `own`: the host fds 0-2
    /// stand for (None: this process's own).
    fn open(
        input: OwnedFd,
        output: OwnedFd,
        own: Option<[std::fs::File; 3]>,
        kicker: Option<Kicker>,
    ) -> Result<ConsoleStdio, StdioError> {
        let mut ev = EventLoop::new()?;
        // Keep the terminal cooked: the vproc sets its own modes (TCSETS).
        let options = ConsoleOptions {
            raw: false,
            catch_sigint: kicker.is_some(),
        };
        let terminal = input.as_fd().is_terminal();
        let mut console = Console::with_options(
            input,
            output.try_clone_fd().map_err(ConsoleError::Dup)?,
            options,
        )?;
        let (id, direct_stdin) = match console.register(ev.handle()) {
            Ok(id) => (id, false),
            Err(_) => {
                // stdin cannot be polled (a regular file, /dev/null): the
                // console gets a silent pipe as input (it still catches
                // SIGINT) and stdin is read directly.
                drop(console);
                let (r, w) = std::io::pipe().map_err(StdioError::Pipe)?;
                std::mem::forget(w);
                console = Console::with_options(r.into(), output, options)?;
                (console.register(ev.handle())?, true)
            }
        };
        let waker = ev.waker();
        let shared = Arc::new(Shared {
            input: Mutex::new(Input::default()),
            waiters: Mutex::new(Vec::new()),
            cond: Condvar::new(),
            interrupt: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        // A thread whose stack fits but whose signal stack does not panics
        // inside std as it starts (under a tight `ulimit -v`): make sure
        // both fit, with room to spare, or say so.
        crate::core::host::address_space_left(crate::core::host::THREAD_ROOM)
            .map_err(StdioError::Thread)?;
        let thread = std::thread::Builder::new()
            .name("vkernel-console".into())
            .spawn(move || {
                let r = ev.run(|e| {
                    match e {
                        Event::ConsoleInput { source, data } if source == id => {
                            sh.input.lock().unwrap().buf.extend(data);
                            sh.cond.notify_all();
                        }
                        Event::ConsoleClosed { source } if source == id => {
                            sh.input.lock().unwrap().eof = true;
                            sh.cond.notify_all();
                        }
                        Event::ConsoleEof { source } if source == id => {
                            sh.input.lock().unwrap().push_eof();
                            sh.cond.notify_all();
                        }
                        Event::ConsoleInterrupt { .. } => {
                            sh.interrupt.store(true, Ordering::SeqCst);
                            if let Some(k) = &kicker {
                                k.kick();
                            }
                            sh.cond.notify_all();
                        }
                        _ => {}
                    }
                    // Wake waiting readers outside every lock.
                    let w =
                        std::mem::take(&mut *sh.waiters.lock().unwrap_or_else(|e| e.into_inner()));
                    super::files::wake_all(w);
                    if sh.stop.load(Ordering::SeqCst) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
                if let Err(e) = r {
                    // Report instead of leaving readers waiting forever:
                    // stdin ends here.
                    log::warn!(target: crate::diag::TARGET, "console input stopped: {e}; stdin is at end of file");
                    sh.input.lock().unwrap_or_else(|e| e.into_inner()).eof = true;
                    sh.cond.notify_all();
                    let w =
                        std::mem::take(&mut *sh.waiters.lock().unwrap_or_else(|e| e.into_inner()));
                    super::files::wake_all(w);
                }
            })
            .map_err(StdioError::Thread)?;
        let raw = |fd: i32| own.as_ref().map_or(fd, |o| o[fd as usize].as_raw_fd());
        Ok(ConsoleStdio {
            terminal,
            console,
            shared,
            waker,
            thread: Some(thread),
            direct_stdin,
            never_blocks: [host_fd_never_blocks(raw(1)), host_fd_never_blocks(raw(2))],
            own,
        })
    }
}

/// The errno of a host I/O error (EIO when it carries none, e.g. a write
/// that wrote nothing).
pub fn host_errno(e: &std::io::Error) -> i64 {
    e.raw_os_error().map_or(5, i64::from)
}

trait CloneFd {
    fn try_clone_fd(&self) -> Result<std::os::fd::OwnedFd, std::io::Error>;
}

impl<T: std::os::fd::AsFd> CloneFd for T {
    fn try_clone_fd(&self) -> Result<std::os::fd::OwnedFd, std::io::Error> {
        self.as_fd().try_clone_to_owned()
    }
}

impl Drop for ConsoleStdio {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Stdio for ConsoleStdio {
    fn write_never_blocks(&self, fd: i32) -> bool {
        self.never_blocks[usize::from(fd == 2)]
    }

    fn write(&mut self, fd: i32, data: &[u8]) -> Result<usize, i64> {
        // The host's errno goes to the vproc as it is (ENOSPC, EPIPE, ...);
        // bytes already written are reported as a short count.
        let mut done = 0;
        while done < data.len() {
            let r = if fd == 2 {
                match &self.own {
                    Some(o) => (&o[2]).write(&data[done..]),
                    None => std::io::stderr().write(&data[done..]),
                }
            } else {
                self.console.write(&data[done..])
            };
            match r {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if done == 0 => return Err(host_errno(&e)),
                Err(_) => break,
            }
        }
        Ok(done)
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, i64> {
        if self.direct_stdin {
            use std::io::Read;
            return match &self.own {
                Some(o) => (&o[0]).read(buf),
                None => std::io::stdin().read(buf),
            }
            .map_err(|e| host_errno(&e));
        }
        let mut st = self.shared.input.lock().unwrap();
        loop {
            if let Some(n) = st.take(buf) {
                return Ok(n);
            }
            if self.shared.interrupt.load(Ordering::SeqCst) {
                return Err(ERESTART);
            }
            st = self.shared.cond.wait(st).unwrap();
        }
    }

    fn host_fd(&self, fd: i32) -> Option<RawFd> {
        let i = usize::try_from(fd).ok().filter(|&i| i <= 2)?;
        Some(self.own.as_ref().map_or(fd, |o| o[i].as_raw_fd()))
    }

    fn readable(&self, waiter: Option<(i32, Arc<dyn Wake>)>) -> bool {
        if self.direct_stdin {
            return true;
        }
        let st = self.shared.input.lock().unwrap_or_else(|e| e.into_inner());
        if !st.buf.is_empty()
            || !st.eofs.is_empty()
            || st.eof
            || self.shared.interrupt.load(Ordering::SeqCst)
        {
            return true;
        }
        if let Some((pid, w)) = waiter {
            // Registered while the input is locked: the console thread
            // adds input under that lock and wakes the waiters after it.
            let mut ws = self
                .shared
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !ws.iter().any(|(p, _)| *p == pid) {
                ws.push((pid, w));
            }
        }
        false
    }

    fn take_interrupt(&mut self) -> bool {
        self.shared.interrupt.swap(false, Ordering::SeqCst)
    }

    fn interrupt_pending(&self) -> bool {
        self.shared.interrupt.load(Ordering::SeqCst)
    }

    fn interactive(&self) -> bool {
        self.terminal
    }

    fn read_line(&mut self) -> Option<String> {
        if self.direct_stdin {
            let mut s = String::new();
            return match std::io::stdin().read_line(&mut s) {
                Ok(0) | Err(_) => None,
                Ok(_) => Some(s.trim_end_matches('\n').to_string()),
            };
        }
        let mut line = Vec::new();
        loop {
            let mut st = self.shared.input.lock().unwrap();
            let mut c = [0u8];
            match st.take(&mut c) {
                Some(1) if c[0] == b'\n' => break,
                Some(1) => {
                    line.push(c[0]);
                    continue;
                }
                // Ctrl-D (taken once: the next prompt reads new input) or
                // the end of the input.
                Some(_) if line.is_empty() => return None,
                Some(_) => break,
                None => {}
            }
            // A second Ctrl-C at the prompt: give up the prompt.
            if self.shared.interrupt.swap(false, Ordering::SeqCst) {
                return None;
            }
            drop(self.shared.cond.wait(st).unwrap());
        }
        Some(String::from_utf8_lossy(&line).into_owned())
    }
}

/// Give the vkernel process a /dev/null for each of its fds 0, 1 and 2
/// that is closed (`vkernel run ... >&-`), before anything else can take
/// those numbers: otherwise the next file the vkernel opens (/dev/kvm, a
/// VM fd) would become "stdout", and the vproc's writes would go there.
/// The vproc then sees /dev/null there, as a container runtime gives its
/// first process. Rust's runtime already does this on Linux before
/// `main`; this does not rely on it. Returns the fds it filled.
pub fn fill_closed_stdio() -> Vec<RawFd> {
    let mut filled = Vec::new();
    for fd in 0..=2 {
        // SAFETY: F_GETFD only asks whether `fd` is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        // SAFETY: open with a valid NUL-terminated path; the lower fds are
        // open (filled in order), so it returns `fd`.
        let got = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if got < 0 {
            continue;
        }
        if got != fd {
            // SAFETY: both fds are valid; `got` is ours to close.
            unsafe {
                libc::dup2(got, fd);
                libc::close(got);
            }
        }
        filled.push(fd);
    }
    filled
}

/// The exit status after an internal error of the vkernel itself (a panic
/// in any of its threads): 70, `EX_SOFTWARE` of sysexits.h.
pub const INTERNAL_ERROR_STATUS: i32 = 70;

/// The terminal attributes of stdin when the vkernel started (if it is a
/// terminal), for [`install_panic_hook`] to put back.
static START_TERMIOS: std::sync::OnceLock<libc::termios> = std::sync::OnceLock::new();

/// Make a panic in any vkernel thread end the whole process at once: print
/// the message (best effort: stderr may be gone), put the terminal back as
/// it was at start, and exit with [`INTERNAL_ERROR_STATUS`]. Without this a
/// panicking thread unwinds while the others (vCPUs, tick, console) keep
/// running, and the process can hang instead of ending.
pub fn install_panic_hook() {
    // SAFETY: tcgetattr writes a termios into the zeroed local, which is
    // only kept when the call succeeded.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut t) == 0 {
            let _ = START_TERMIOS.set(t);
        }
    }
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        vk_eprintln!(
            "vkernel: internal error in thread '{name}': {info}\n\
             vkernel: this is a vkernel bug; exiting with status {INTERNAL_ERROR_STATUS} \
             (please report it with the command line that caused it)"
        );
        if let Some(t) = START_TERMIOS.get() {
            // SAFETY: restores attributes read from the same fd at start.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
        }
        // SAFETY: _exit ends the process without running destructors or
        // atexit handlers, which could wait on locks the other threads
        // hold; all vproc output was written through unbuffered fds.
        unsafe { libc::_exit(INTERNAL_ERROR_STATUS) }
    }));
}

#[cfg(test)]
mod tests {
    use super::Input;

    #[test]
    fn ctrl_d_is_one_empty_read_and_input_goes_on() {
        let mut i = Input::default();
        let mut b = [0u8; 8];
        assert_eq!(i.take(&mut b), None, "nothing yet: wait");
        i.buf.extend(b"ab");
        i.push_eof();
        i.push_eof();
        i.buf.extend(b"cd");
        assert_eq!(i.take(&mut []), Some(0));
        assert_eq!(i.take(&mut b), Some(2), "stops at the Ctrl-D");
        assert_eq!(&b[..2], b"ab");
        assert_eq!(i.take(&mut b), Some(0), "first Ctrl-D");
        assert_eq!(i.take(&mut b), Some(0), "second Ctrl-D");
        assert_eq!(i.take(&mut b[..1]), Some(1));
        assert_eq!(i.take(&mut b), Some(1));
        assert_eq!(b[0], b'd');
        assert_eq!(i.take(&mut b), None, "not the end: wait for more");
        i.eof = true;
        assert_eq!(i.take(&mut b), Some(0));
        assert_eq!(i.take(&mut b), Some(0), "a closed input stays at its end");
    }
}
