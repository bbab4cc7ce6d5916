//! The exitless fast path of the personality: the syscalls the machine's
//! exitless server may answer while the vproc waits on its vCPU, without a
//! VM exit (see `vkernel_core::exitless`).
//!
//! Served here: calls that neither block nor change the vproc, its
//! mappings or the vCPU: the id calls, `clock_gettime` and
//! `gettimeofday`. Everything else, and every call of a vproc with a
//! signal queued (Linux delivers it on the way back), goes to the exit path
//! and the ordinary dispatcher. A result that must be written to user
//! memory is written through the vmspace under the process lock, only into
//! pages already present and writable; anything else (a page never
//! touched, a bad pointer) takes the exit path, which pages in or answers
//! EFAULT as usual.
//!
//! Each vCPU thread publishes the vproc it is about to run
//! ([`FastPath::publish`]) and withdraws it when `Cpu::run` returns, which
//! is after any request of it was settled: the server never serves a vproc
//! that is not in the guest.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::core::exitless::{ExitlessReply, ExitlessRequest};
use crate::linux::thread::ProcessLock;

use super::Kernel;

/// The calls [`FastPath::serve`] may answer (the trampoline exits at once
/// for the others).
pub(crate) const SERVED: &[i64] = &[
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getppid,
    libc::SYS_getuid,
    libc::SYS_getgid,
    libc::SYS_geteuid,
    libc::SYS_getegid,
    libc::SYS_clock_gettime,
    libc::SYS_gettimeofday,
];

/// What the server needs of the vproc a vCPU runs.
pub(crate) struct FastCtx {
    /// Thread id.
    pub(crate) pid: i32,
    /// Process id.
    pub(crate) tgid: i32,
    /// Its process (the process lock, the vmspace).
    pub(crate) process: ProcessLock,
    /// Raised when a signal is queued for it.
    pub(crate) sig: Arc<AtomicBool>,
}

/// The per-vCPU contexts of one kernel.
pub(crate) struct FastPath {
    slots: Vec<Mutex<Option<FastCtx>>>,
}

impl FastPath {
    pub(crate) fn new(cpus: usize) -> FastPath {
        FastPath {
            slots: (0..cpus).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// vCPU `cpu` runs `ctx` from now on (None: nothing).
    pub(crate) fn publish(&self, cpu: usize, ctx: Option<FastCtx>) {
        if let Some(s) = self.slots.get(cpu) {
            *s.lock().unwrap_or_else(|e| e.into_inner()) = ctx;
        }
    }

    /// Answer `req` or send it to the exit path.
    pub(crate) fn serve(&self, k: &Kernel, req: &ExitlessRequest) -> ExitlessReply {
        use ExitlessReply::{Done, Exit};
        let Some(slot) = self.slots.get(req.cpu) else {
            return Exit;
        };
        let slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = slot.as_ref() else {
            return Exit;
        };
        if c.sig.load(Ordering::SeqCst) {
            return Exit;
        }
        if k.patch_entry.is_some() && patchable_site(c, req) {
            // Once through the exit path, where it gets patched: from then
            // on the call reaches us without the `syscall` instruction.
            return Exit;
        }
        let a = req.args;
        match req.nr as i64 {
            libc::SYS_getpid => Done(c.tgid as u64),
            libc::SYS_gettid => Done(c.pid as u64),
            libc::SYS_getppid => {
                let ppid = k
                    .lock()
                    .procs
                    .get(&c.tgid)
                    .map_or(crate::linux::PPID, |e| e.ppid);
                Done(ppid as u64)
            }
            libc::SYS_getuid | libc::SYS_getgid | libc::SYS_geteuid | libc::SYS_getegid => Done(0),
            libc::SYS_clock_gettime => {
                let now = crate::linux::syscalls::events::clock_now(a[0] as i32);
                let b = crate::linux::syscalls::events::encode_timespec(now);
                if write_user(c, a[1], &b) {
                    Done(0)
                } else {
                    Exit
                }
            }
            libc::SYS_gettimeofday => {
                let now = crate::linux::syscalls::events::clock_now(libc::CLOCK_REALTIME);
                let tv = crate::linux::syscalls::events::encode_timeval(now);
                let ok = (a[0] == 0 || write_user(c, a[0], &tv))
                    && (a[1] == 0 || write_user(c, a[1], &[0u8; 8]));
                if ok {
                    Done(0)
                } else {
                    Exit
                }
            }
            _ => Exit,
        }
    }
}

/// Is the site of `req` one the vCPU thread would patch (see `mm::patch`)?
fn patchable_site(c: &FastCtx, req: &ExitlessRequest) -> bool {
    if !c.process.patch_forcing() {
        return false;
    }
    let Some(at) = req.ret.checked_sub(8) else {
        return false;
    };
    let mut code = [0u8; 8];
    c.process
        .try_with(|vms| vms.copy_from_user(at, &mut code).is_ok())
        .unwrap_or(false)
        && crate::linux::mm::patchable(&code, req.nr, req.ret, c.process.threads())
}

/// Write `b` at `va` in the vproc's memory, under the process lock, only
/// into pages present and writable (no paging in here).
fn write_user(c: &FastCtx, va: u64, b: &[u8]) -> bool {
    c.process
        .try_with(|vms| vms.copy_to_user(va, b).is_ok())
        .unwrap_or(false)
}
