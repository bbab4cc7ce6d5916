//! The exitless fast path of the personality: the syscalls the machine's
//! exitless server may answer while the vproc waits on its vCPU, without a
//! VM exit (see `vkernel_core::exitless`).
//!
//! Served here: what neither blocks nor needs the vCPU thread. This module
//! answers the id calls, `clock_gettime`, `gettimeofday`, `uname`,
//! `getrandom` and `rt_sigprocmask`; [`io`] the read/write family, `lseek`,
//! `fstat` and `newfstatat`; [`mem`] `brk` growth and anonymous `mmap`.
//!
//! The rule is that a served call leaves exactly the state the exit path
//! would, so the server answers only what it is sure of and sends
//! everything else to the exit path (`ExitlessReply::Exit`), where the
//! ordinary dispatcher serves it as if the server did not exist: a call
//! that would block or fail, a page that is not present or not writable
//! (nothing is paged in here), a lock another thread holds (the server
//! never waits: it takes every lock with a try), every call of a vproc with
//! a signal queued (Linux delivers it on the way back) or with a call
//! waiting to be retried (its state lives in the vproc).
//!
//! Each vCPU thread publishes the vproc it is about to run
//! ([`FastPath::publish`]) and withdraws it when `Cpu::run` returns, which
//! is after any request of it was settled: the server never serves a vproc
//! that is not in the guest. What the server needs of the vproc is in the
//! published [`FastCtx`]; the fd table, the current directory and the
//! memory map are the process's, reached under the process lock
//! (`ProcessLock::try_with_parts`: while a process may be served, its
//! threads leave them there whenever they run the guest); the blocked
//! mask is the context's copy, which the vCPU thread takes back.

mod io;
mod mem;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::core::exitless::{ExitlessReply, ExitlessRequest};
use crate::fs::Fs;
use crate::signal;
use crate::stdio::SharedStdio;
use crate::thread::ProcessLock;

use super::Kernel;
use crate::syscalls::events::{clock_now, encode_timespec, encode_timeval};

/// The calls [`FastPath::serve`] may answer (the trampoline exits at once
/// for the others).
/// A fast (exitless) handler: the call's return value, or None when it is
/// the exit path's (it would block, needs the vCPU thread, or touches a
/// page not present). The syscall table ([`crate::syscalls::table`]) holds
/// one per call the server answers.
pub(crate) type FastHandler = fn(&Kernel, &mut FastCtx, i64, [u64; 6]) -> Option<u64>;

/// The calls the exitless server answers, with their fast handlers: the
/// syscall table takes them from here.
pub(crate) const FAST_CALLS: &[(i64, FastHandler)] = &[
    (libc::SYS_getpid, |_, c, _, _| Some(c.tgid as u64)),
    (libc::SYS_gettid, |_, c, _, _| Some(c.pid as u64)),
    (libc::SYS_getppid, |k, c, _, _| {
        let ppid = k.lock().procs.get(&c.tgid).map_or(crate::PPID, |e| e.ppid);
        Some(ppid as u64)
    }),
    (libc::SYS_getuid, root_id),
    (libc::SYS_getgid, root_id),
    (libc::SYS_geteuid, root_id),
    (libc::SYS_getegid, root_id),
    (libc::SYS_clock_gettime, |_, c, _, a| {
        let b = encode_timespec(clock_now(a[0] as i32));
        write_user(c, a[1], &b).then_some(0)
    }),
    (libc::SYS_gettimeofday, |_, c, _, a| {
        let tv = encode_timeval(clock_now(libc::CLOCK_REALTIME));
        let ok = (a[0] == 0 || write_user(c, a[0], &tv))
            && (a[1] == 0 || write_user(c, a[1], &[0u8; 8]));
        ok.then_some(0)
    }),
    (libc::SYS_uname, |_, c, _, a| {
        write_user(c, a[0], &crate::syscalls::uname_bytes()).then_some(0)
    }),
    (libc::SYS_getrandom, |_, c, _, a| {
        // As the exit path: up to 1 MiB, the flags do not matter.
        let mut b = vec![0u8; (a[1] as usize).min(1 << 20)];
        crate::random_bytes(&mut b);
        write_user(c, a[0], &b).then_some(b.len() as u64)
    }),
    (libc::SYS_rt_sigprocmask, |_, c, _, a| {
        sigprocmask(c, a[0], a[1], a[2])
    }),
    (libc::SYS_read, file_io),
    (libc::SYS_write, file_io),
    (libc::SYS_readv, file_io),
    (libc::SYS_writev, file_io),
    (libc::SYS_pread64, file_io),
    (libc::SYS_pwrite64, file_io),
    (libc::SYS_lseek, file_io),
    (libc::SYS_fstat, file_io),
    (libc::SYS_newfstatat, file_io),
    (libc::SYS_brk, memory),
    (libc::SYS_mmap, memory),
];

/// The id calls: every vproc runs as root.
fn root_id(_: &Kernel, _: &mut FastCtx, _: i64, _: [u64; 6]) -> Option<u64> {
    Some(0)
}

/// The file calls ([`io::serve`]).
fn file_io(_: &Kernel, c: &mut FastCtx, nr: i64, a: [u64; 6]) -> Option<u64> {
    io::serve(c, nr, a)
}

/// brk and anonymous mmap ([`mem::serve`]).
fn memory(_: &Kernel, c: &mut FastCtx, nr: i64, a: [u64; 6]) -> Option<u64> {
    mem::serve(c, nr, a)
}

/// What the server needs of the vproc a vCPU runs.
pub(crate) struct FastCtx {
    /// Thread id.
    pub(crate) pid: i32,
    /// Process id.
    pub(crate) tgid: i32,
    /// Its process (the process lock, the vmspace, the fd table, the
    /// memory map).
    pub(crate) process: ProcessLock,
    /// Raised when a signal is queued for it.
    pub(crate) sig: Arc<AtomicBool>,
    /// The file tree.
    pub(crate) fs: Arc<Fs>,
    /// fds 0-2 of the vkernel.
    pub(crate) stdio: SharedStdio,
    /// Its blocked signals: rt_sigprocmask here changes this copy, which
    /// the vCPU thread takes back ([`FastPath::withdraw`]).
    pub(crate) blocked: u64,
    /// The signals queued in it (blocked ones: the others were delivered
    /// before it ran).
    pub(crate) pending: u64,
    /// It is its process's only thread (a thread's mask also steers the
    /// process's signals: that is the exit path's work).
    pub(crate) alone: bool,
    /// A call of it waits to be retried with its state (`pending_call`):
    /// everything goes to the exit path, which continues that call.
    pub(crate) retry: bool,
}

/// The per-vCPU contexts of one kernel.
pub(crate) struct FastPath {
    slots: Vec<Mutex<Option<FastCtx>>>,
    enabled: bool,
}

impl FastPath {
    /// Contexts for `cpus` vCPUs; `enabled`: the kernel registered the
    /// server's handler.
    pub(crate) fn new(cpus: usize, enabled: bool) -> FastPath {
        FastPath {
            slots: (0..cpus).map(|_| Mutex::new(None)).collect(),
            enabled,
        }
    }

    /// May the server serve calls of this kernel's vprocs? (Then the vCPU
    /// threads publish them, and leave the processes' shared parts where
    /// the server reads them.)
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// vCPU `cpu` runs `ctx` from now on.
    pub(crate) fn publish(&self, cpu: usize, ctx: FastCtx) {
        if let Some(s) = self.slots.get(cpu) {
            *s.lock().unwrap_or_else(|e| e.into_inner()) = Some(ctx);
        }
    }

    /// vCPU `cpu` left its vproc: the context, as the server left it.
    pub(crate) fn withdraw(&self, cpu: usize) -> Option<FastCtx> {
        self.slots
            .get(cpu)
            .and_then(|s| s.lock().unwrap_or_else(|e| e.into_inner()).take())
    }

    /// Answer `req` or send it to the exit path.
    pub(crate) fn serve(&self, k: &Kernel, req: &ExitlessRequest) -> ExitlessReply {
        let Some(slot) = self.slots.get(req.cpu) else {
            return ExitlessReply::Exit;
        };
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = slot.as_mut() else {
            return ExitlessReply::Exit;
        };
        if c.retry || c.sig.load(Ordering::SeqCst) {
            return ExitlessReply::Exit;
        }
        if k.patch_entry.is_some() && patchable_site(c, req) {
            // Once through the exit path, where it gets patched: from then
            // on the call reaches us without the `syscall` instruction.
            return ExitlessReply::Exit;
        }
        let fast = crate::syscalls::table::lookup(req.nr).and_then(|s| s.fast.map(|f| (s.nr, f)));
        match fast.and_then(|(nr, f)| f(k, c, nr, req.args)) {
            Some(v) => ExitlessReply::Done(v),
            None => ExitlessReply::Exit,
        }
    }
}

/// rt_sigprocmask(how, set, oldset) of a thread alone in its process,
/// unless it unblocks a queued signal (the exit path delivers it).
fn sigprocmask(c: &mut FastCtx, how: u64, set: u64, old: u64) -> Option<u64> {
    if !c.alone {
        return None;
    }
    let cur = c.blocked;
    let new = if set != 0 {
        let mut b = [0u8; 8];
        if !read_user(c, set, &mut b) {
            return None;
        }
        let s = u64::from_le_bytes(b);
        let never = signal::bit(signal::SIGKILL) | signal::bit(signal::SIGSTOP);
        (match how {
            0 => cur | s,
            1 => cur & !s,
            2 => s,
            _ => return None,
        }) & !never
    } else {
        cur
    };
    if c.pending & !new != 0 {
        return None;
    }
    if old != 0 && !write_user(c, old, &cur.to_le_bytes()) {
        return None;
    }
    c.blocked = new;
    Some(0)
}

/// Write `b` at `va` in the vproc's memory, under the process lock, only
/// into pages present and writable (no paging in here).
fn write_user(c: &FastCtx, va: u64, b: &[u8]) -> bool {
    c.process
        .try_with(|vms| vms.copy_to_user(va, b).is_ok())
        .unwrap_or(false)
}

/// Is the site of `req` one the vCPU thread would patch (see `mm::patch`)?
fn patchable_site(c: &FastCtx, req: &ExitlessRequest) -> bool {
    if !c.process.patch_forcing() {
        return false;
    }
    let Some(at) = req.ret.checked_sub(crate::mm::PATCH_CODE as u64) else {
        return false;
    };
    let mut code = [0u8; crate::mm::PATCH_CODE];
    read_user(c, at, &mut code) && crate::mm::patchable(&code, req.nr, req.ret, c.process.threads())
}

/// Read `b` from `va` in the vproc's memory, under the process lock, only
/// from pages present and readable.
fn read_user(c: &FastCtx, va: u64, b: &mut [u8]) -> bool {
    c.process
        .try_with(|vms| vms.copy_from_user(va, b).is_ok())
        .unwrap_or(false)
}
