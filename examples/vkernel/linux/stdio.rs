//! The vproc's standard input, output and error.
//!
//! [`ConsoleStdio`] is the real thing: output through the
//! [`vkernel::devices::Console`] driver (stderr goes to the host's stderr),
//! input as console events from an event loop on its own thread, and
//! SIGINT turned into a debugger request that kicks the vCPU out of the
//! guest. [`BufferStdio`] serves tests and benchmarks: input from a byte
//! string, output captured in memory.

use std::collections::VecDeque;
use std::io::Write;
use std::ops::ControlFlow;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use vkernel::core::prelude::Kicker;
use vkernel::devices::{Console, ConsoleError, ConsoleOptions, Event, EventLoop, EventLoopError};

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
    /// The event-loop thread could not start.
    #[error("cannot start the console thread: {0}")]
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
    /// True once after SIGINT arrived on the console.
    fn take_interrupt(&mut self) -> bool {
        false
    }
    /// True while a SIGINT is waiting to be taken (blocking calls return
    /// `Err(ERESTART)` then).
    fn interrupt_pending(&self) -> bool {
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

    /// See [`Stdio::read`].
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, i64> {
        self.lock().read(buf)
    }

    /// See [`Stdio::host_fd`].
    pub fn host_fd(&self, fd: i32) -> Option<RawFd> {
        self.lock().host_fd(fd)
    }

    /// See [`Stdio::take_interrupt`].
    pub fn take_interrupt(&self) -> bool {
        self.lock().take_interrupt()
    }

    /// See [`Stdio::interrupt_pending`].
    pub fn interrupt_pending(&self) -> bool {
        self.lock().interrupt_pending()
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
}

#[derive(Default)]
struct Input {
    buf: VecDeque<u8>,
    eof: bool,
}

struct Shared {
    input: Mutex<Input>,
    cond: Condvar,
    interrupt: AtomicBool,
    stop: AtomicBool,
}

/// Stdio through the Console driver and an event-loop thread.
pub struct ConsoleStdio {
    console: Console,
    shared: Arc<Shared>,
    waker: vkernel::devices::Waker,
    thread: Option<std::thread::JoinHandle<()>>,
    direct_stdin: bool,
}

impl ConsoleStdio {
    /// Open the process's stdin/stdout as the console. SIGINT kicks the
    /// vCPU behind `kicker` and raises a debugger request.
    pub fn new(kicker: Kicker) -> Result<ConsoleStdio, StdioError> {
        let output = std::io::stdout()
            .lock()
            .try_clone_fd()
            .map_err(ConsoleError::Dup)?;
        let mut ev = EventLoop::new()?;
        // Keep the terminal cooked: the vproc sets its own modes (TCSETS).
        let options = ConsoleOptions {
            raw: false,
            catch_sigint: true,
        };
        let input = std::io::stdin()
            .lock()
            .try_clone_fd()
            .map_err(ConsoleError::Dup)?;
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
                let (r, w) = std::io::pipe().map_err(StdioError::Thread)?;
                std::mem::forget(w);
                console = Console::with_options(r.into(), output, options)?;
                (console.register(ev.handle())?, true)
            }
        };
        let waker = ev.waker();
        let shared = Arc::new(Shared {
            input: Mutex::new(Input::default()),
            cond: Condvar::new(),
            interrupt: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("vkernel-console".into())
            .spawn(move || {
                let _ = ev.run(|e| {
                    match e {
                        Event::ConsoleInput { source, data } if source == id => {
                            sh.input.lock().unwrap().buf.extend(data);
                            sh.cond.notify_all();
                        }
                        Event::ConsoleClosed { source } if source == id => {
                            sh.input.lock().unwrap().eof = true;
                            sh.cond.notify_all();
                        }
                        Event::ConsoleInterrupt { .. } => {
                            sh.interrupt.store(true, Ordering::SeqCst);
                            kicker.kick();
                            sh.cond.notify_all();
                        }
                        _ => {}
                    }
                    if sh.stop.load(Ordering::SeqCst) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
            })
            .map_err(StdioError::Thread)?;
        Ok(ConsoleStdio {
            console,
            shared,
            waker,
            thread: Some(thread),
            direct_stdin,
        })
    }
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
    fn write(&mut self, fd: i32, data: &[u8]) -> Result<usize, i64> {
        // The host's errno goes to the vproc as it is (ENOSPC, EPIPE, ...);
        // bytes already written are reported as a short count.
        let mut done = 0;
        while done < data.len() {
            let r = if fd == 2 {
                std::io::stderr().write(&data[done..])
            } else {
                self.console.write(&data[done..])
            };
            match r {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if done == 0 => return Err(e.raw_os_error().unwrap_or(5) as i64),
                Err(_) => break,
            }
        }
        Ok(done)
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, i64> {
        if self.direct_stdin {
            use std::io::Read;
            return std::io::stdin()
                .read(buf)
                .map_err(|e| e.raw_os_error().unwrap_or(5) as i64);
        }
        let mut st = self.shared.input.lock().unwrap();
        loop {
            if !st.buf.is_empty() {
                let n = buf.len().min(st.buf.len());
                for b in buf.iter_mut().take(n) {
                    *b = st.buf.pop_front().expect("counted");
                }
                return Ok(n);
            }
            if st.eof {
                return Ok(0);
            }
            if self.shared.interrupt.load(Ordering::SeqCst) {
                return Err(ERESTART);
            }
            st = self.shared.cond.wait(st).unwrap();
        }
    }

    fn host_fd(&self, fd: i32) -> Option<RawFd> {
        (0..=2).contains(&fd).then_some(fd)
    }

    fn take_interrupt(&mut self) -> bool {
        self.shared.interrupt.swap(false, Ordering::SeqCst)
    }

    fn interrupt_pending(&self) -> bool {
        self.shared.interrupt.load(Ordering::SeqCst)
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
            if let Some(c) = st.buf.pop_front() {
                drop(st);
                if c == b'\n' {
                    break;
                }
                line.push(c);
                continue;
            }
            if st.eof {
                if line.is_empty() {
                    return None;
                }
                break;
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
