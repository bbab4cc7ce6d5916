//! A gdb remote stub for the first vproc (`vkernel run --gdb ADDR`),
//! built on the `gdbstub` crate: gdb connects with `target remote ADDR`
//! (or `target extended-remote ADDR`) over TCP or a Unix socket and finds
//! the program stopped before its first instruction.
//!
//! The stub is a tracer outside the vprocs ([`crate::kernel::debug`]): the
//! process and every thread it makes stop where a ptrace tracee would
//! (breakpoints gdb writes into the text through memory, single steps,
//! signals, thread creation); gdb sees all-stop mode (when one thread
//! stops, the stub stops the others before reporting), registers and
//! memory of the parked threads, the auxiliary vector (so it relocates a
//! PIE and finds the dynamic loader and the libraries through its
//! `r_debug`), the vproc's files (`vFile`: gdb reads the program and the
//! libraries from the vproc's own tree, a disk image's included, and
//! `/proc/PID/maps` for `info proc mappings`), and the process's end.
//! Ctrl-C in gdb interrupts every thread. Children the process forks run freely, untraced. When gdb
//! detaches or goes away, the process runs on untraced; gdb's `kill`
//! kills it.
//!
//! The registers are gdbserver's on Linux ([`arch`]): the core and SSE
//! sets, orig_rax and the fs/gs bases.
//!
//! Refused: hardware watchpoints (gdb falls back to software ones when
//! told `set can-use-hw-watchpoints 0`), `run`/`attach` from gdb (the
//! program is the one `vkernel run` started), thread-local variables
//! (gdb asks a remote stub for their addresses with qGetTLSAddr, which
//! needs the program's libthread_db: not served).

pub mod arch;
mod hostio;
mod target;

use std::io;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{self, BlockingEventLoop};
use gdbstub::stub::{DisconnectReason, GdbStub, MultiThreadStopReason};

use crate::kernel::debug::DebugEvent;
use crate::kernel::{Debugger, Kernel, Pid};
use target::{gdb_tid, VprocTarget};

/// Where gdb connects: `HOST:PORT` (TCP) or a Unix socket path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GdbAddr {
    /// A TCP address (`127.0.0.1:1234`).
    Tcp(std::net::SocketAddr),
    /// A Unix socket path (made by the stub, removed at its end).
    Unix(PathBuf),
}

impl std::str::FromStr for GdbAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<GdbAddr, String> {
        if s.is_empty() {
            return Err("an empty address (give HOST:PORT or a socket path)".into());
        }
        if s.contains('/') || !s.contains(':') {
            return Ok(GdbAddr::Unix(PathBuf::from(s)));
        }
        s.parse()
            .map(GdbAddr::Tcp)
            .map_err(|e| format!("{s}: not HOST:PORT ({e})"))
    }
}

impl std::fmt::Display for GdbAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GdbAddr::Tcp(a) => write!(f, "{a}"),
            GdbAddr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A bound listener, waiting for gdb.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// gdb's connection, or None if the run of `k` ends first.
    fn accept(&self, k: &Kernel) -> io::Result<Option<Box<dyn ConnectionExt<Error = io::Error>>>> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(true)?,
            Listener::Unix(l, _) => l.set_nonblocking(true)?,
        }
        loop {
            let got: io::Result<Box<dyn ConnectionExt<Error = io::Error>>> = match self {
                Listener::Tcp(l) => l.accept().and_then(|(s, _)| {
                    s.set_nonblocking(false)?;
                    s.set_nodelay(true)?;
                    Ok(Box::new(s) as Box<_>)
                }),
                Listener::Unix(l, _) => l.accept().and_then(|(s, _)| {
                    s.set_nonblocking(false)?;
                    Ok(Box::new(s) as Box<_>)
                }),
            };
            match got {
                Ok(c) => return Ok(Some(c)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if k.debug_run_over() {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Bind `addr` now (so a bad address fails before anything runs) and
/// return the hook that, once the run starts, waits there for gdb and
/// serves it ([`crate::kernel::Options::debugger`]). `announce` is
/// called with the address before the stub waits (the CLI prints it).
///
/// ```no_run
/// # use vkernel_linux as linux;
/// let addr: linux::gdb_remote::GdbAddr = "127.0.0.1:1234".parse().unwrap();
/// let hook = linux::gdb_remote::debugger(&addr, |a| eprintln!("waiting for gdb on {a}")).unwrap();
/// let opts = linux::kernel::Options { debugger: Some(hook), ..Default::default() };
/// # let _ = opts;
/// ```
pub fn debugger(addr: &GdbAddr, announce: fn(&GdbAddr)) -> io::Result<Debugger> {
    let listener = match addr {
        GdbAddr::Tcp(a) => Listener::Tcp(TcpListener::bind(a)?),
        GdbAddr::Unix(p) => Listener::Unix(UnixListener::bind(p)?, p.clone()),
    };
    let shown = match (addr, &listener) {
        // Port 0: the port the host gave.
        (GdbAddr::Tcp(_), Listener::Tcp(l)) => GdbAddr::Tcp(l.local_addr()?),
        _ => addr.clone(),
    };
    let slot = Arc::new(std::sync::Mutex::new(Some(listener)));
    Ok(Debugger(Arc::new(move |k: Arc<Kernel>, pid: Pid| {
        let listener = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        let shown = shown.clone();
        std::thread::Builder::new()
            .name("gdb-stub".into())
            .spawn(move || {
                if let Some(l) = listener {
                    announce(&shown);
                    serve(&l, k, pid);
                }
            })
            .expect("spawn the gdb stub thread")
    })))
}

/// Wait for gdb on `l` and serve it until it leaves or the process ends.
fn serve(l: &Listener, k: Arc<Kernel>, pid: Pid) {
    // The first stop (before the first instruction) comes before gdb's
    // first question.
    loop {
        match k.debug_wait(Duration::from_millis(100)) {
            Some(DebugEvent::Stopped { tid, .. }) if tid == pid => break,
            Some(DebugEvent::Ended { tid, .. }) if tid == pid => return,
            Some(DebugEvent::RunOver) => return,
            _ => {}
        }
    }
    let conn = match l.accept(&k) {
        Ok(Some(c)) => c,
        // The run ended (a signal from the host) before gdb came.
        Ok(None) => return,
        Err(e) => {
            log::error!("gdb stub: accept: {e}; the program runs on");
            k.debug_detach_all();
            return;
        }
    };
    let mut target = VprocTarget::new(k.clone(), pid);
    if let Ok((fs, exe)) = k.debug_with(pid, |b| (b.fs.clone(), b.exe.clone())) {
        target.files.fs = Some(fs);
        target.exe = exe.to_vec();
    }
    match GdbStub::new(conn).run_blocking::<EventLoop>(&mut target) {
        Ok(DisconnectReason::Kill) => k.debug_kill(pid),
        Ok(_) => {}
        Err(e) => log::error!("gdb stub: {e}; the program runs on"),
    }
    // Nobody traces them any more: they run on (or die of the kill), and
    // their ends go to their parents as without a debugger.
    k.debug_detach_all();
}

/// gdbstub's blocking event loop over the kernel's debug events.
enum EventLoop {}

impl BlockingEventLoop for EventLoop {
    type Target = VprocTarget;
    type Connection = Box<dyn ConnectionExt<Error = io::Error>>;
    type StopReason = MultiThreadStopReason<u64>;

    #[allow(clippy::type_complexity)]
    fn wait_for_stop_reason(
        target: &mut VprocTarget,
        conn: &mut Self::Connection,
    ) -> Result<
        run_blocking::Event<Self::StopReason>,
        run_blocking::WaitForStopReasonError<target::TargetFault, io::Error>,
    > {
        if let Some((tid, signo)) = target.queued.pop() {
            return Ok(run_blocking::Event::TargetStopped(signal_stop(tid, signo)));
        }
        loop {
            if conn
                .peek()
                .map_err(run_blocking::WaitForStopReasonError::Connection)?
                .is_some()
            {
                let b = conn
                    .read()
                    .map_err(run_blocking::WaitForStopReasonError::Connection)?;
                return Ok(run_blocking::Event::IncomingData(b));
            }
            let Some(ev) = target.k.debug_wait(Duration::from_millis(20)) else {
                continue;
            };
            if let Some(r) = on_event(target, ev) {
                return Ok(run_blocking::Event::TargetStopped(r));
            }
        }
    }

    fn on_interrupt(
        target: &mut VprocTarget,
    ) -> Result<Option<Self::StopReason>, target::TargetFault> {
        if let Some(status) = target.stop_all() {
            return Ok(Some(ended(status)));
        }
        // A stop met meanwhile is reported before the interrupt.
        if let Some((tid, signo)) = target.queued.pop() {
            return Ok(Some(signal_stop(tid, signo)));
        }
        Ok(Some(signal_stop(target.tgid, 2)))
    }
}

/// What gdb hears of `ev`, if anything: the end of the process, or a
/// thread's stop for a signal (after every other thread is stopped).
/// Thread creation and the stops the stub caused are handled here.
fn on_event(target: &mut VprocTarget, ev: DebugEvent) -> Option<MultiThreadStopReason<u64>> {
    match ev {
        DebugEvent::Ended { tid, status } if tid == target.tgid => Some(ended(status)),
        DebugEvent::Ended { .. } => None,
        DebugEvent::RunOver => Some(ended(target::KILLED)),
        DebugEvent::Stopped { tid, event, .. } if event != 0 => {
            // A clone event, or a new thread's first stop: it runs on.
            let _ = target.k.debug_resume(tid, false, 0);
            None
        }
        DebugEvent::Stopped { tid, signo, .. } => {
            if let Some(status) = target.stop_all() {
                return Some(ended(status));
            }
            Some(signal_stop(tid, signo))
        }
    }
}

fn signal_stop(tid: Pid, signo: i32) -> MultiThreadStopReason<u64> {
    MultiThreadStopReason::SignalWithThread {
        tid: gdb_tid(tid),
        signal: Signal(u8::try_from(signo).unwrap_or(0)),
    }
}

/// The process's end from its wait status.
fn ended(status: i32) -> MultiThreadStopReason<u64> {
    if status & 0x7f == 0 {
        MultiThreadStopReason::Exited(u8::try_from((status >> 8) & 0xff).unwrap_or(0))
    } else {
        MultiThreadStopReason::Terminated(Signal(u8::try_from(status & 0x7f).unwrap_or(0)))
    }
}
