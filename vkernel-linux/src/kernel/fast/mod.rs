//! The exitless fast path of the personality: the syscalls the machine's
//! exitless server may answer while the vproc waits on its vCPU, without a
//! VM exit (see `vkernel_core::exitless`).
//!
//! Served: what neither blocks nor needs the vCPU thread. This module is
//! the server (the published contexts and [`FastPath::serve`]); the
//! handlers are the syscall layer's (`syscalls/fast`: the id calls,
//! `clock_gettime`, `gettimeofday`, `uname`, `getrandom`,
//! `rt_sigprocmask`, the read/write family, `lseek`, `fstat`,
//! `newfstatat`, `getdents64`, `getcwd`, `open`/`openat` for reading,
//! `close`/`dup`/`dup2`/`dup3`/`fcntl` on the fd table,
//! `sendto`/`recvfrom` on stream sockets, `epoll_wait` with
//! ready items, `brk` growth and anonymous `mmap`), reached through the
//! [`FastLookup`] given at start.
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::core::exitless::{ExitlessReply, ExitlessRequest};
use crate::fs::Fs;
use crate::stdio::SharedStdio;
use crate::thread::ProcessLock;

use super::Kernel;

/// A fast (exitless) handler: the call's return value, or None when it is
/// the exit path's (it would block, needs the vCPU thread, or touches a
/// page not present). The syscall table ([`crate::syscalls::table`]) holds
/// one per call the server answers; the syscall layer gives the kernel a
/// [`FastLookup`] over them when it starts ([`crate::launch::run`]).
pub(crate) type FastHandler = fn(&Kernel, &mut FastCtx, i64, [u64; 6]) -> Option<u64>;

/// How the server finds the fast handler of a call number (the number as
/// the table knows it, and its handler): given by the syscall layer, so the
/// kernel never imports it.
pub(crate) type FastLookup = fn(u64) -> Option<(i64, FastHandler)>;

/// The exitless calls a kernel serves, as the syscall layer gives them.
#[derive(Clone, Debug)]
pub struct FastCalls {
    pub(crate) lookup: FastLookup,
    pub(crate) numbers: Vec<u64>,
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
    /// Patchable call sites the server answered while this context was
    /// published (the return address of their `syscall`, and the call):
    /// the vCPU thread takes them back ([`FastPath::withdraw`]) and
    /// patches them when the vproc next leaves the guest.
    pub(crate) to_patch: Vec<(u64, u64)>,
    /// The process's stub pages (`mm::patch`) when the context was
    /// published (only the vCPU thread adds pages, between stays): a call
    /// returning into one came through a rewritten site.
    pub(crate) stub_pages: Vec<u64>,
    /// set_tid_address and set_robust_list answered here: the vCPU thread
    /// stores them in the thread when it takes the context back.
    pub(crate) clear_child_tid: Option<u64>,
    pub(crate) robust_list: Option<u64>,
    /// The thread's name as PR_GET_NAME writes it (PR_SET_NAME here
    /// changes this copy and sets `renamed`, which the vCPU thread takes
    /// back).
    pub(crate) comm: [u8; crate::abi::COMM_LEN],
    /// PR_SET_NAME answered here.
    pub(crate) renamed: bool,
    /// The program's path (`/proc/self/exe`).
    pub(crate) exe: Arc<Vec<u8>>,
    /// The vCPU it runs on.
    pub(crate) cpu: usize,
}

/// Most call sites queued for patching in one stay in the guest; beyond,
/// a patchable site's call goes to the exit path, which patches it.
const MAX_QUEUED: usize = 64;

/// The per-vCPU contexts of one kernel.
pub(crate) struct FastPath {
    slots: Vec<Mutex<Option<FastCtx>>>,
    enabled: bool,
    lookup: FastLookup,
}

impl FastPath {
    /// Contexts for `cpus` vCPUs; `enabled`: the kernel registered the
    /// server's handler.
    pub(crate) fn new(cpus: usize, enabled: bool, lookup: FastLookup) -> FastPath {
        FastPath {
            slots: (0..cpus).map(|_| Mutex::new(None)).collect(),
            enabled,
            lookup,
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
        // A site the vCPU thread would patch is answered the first time
        // and queued for patching at the vproc's next exit (a fresh
        // process makes most of its calls once: an exit per site would
        // cost more than the patch saves); if it calls again before that
        // exit, the call goes to the exit path, which patches the queued
        // sites: from then on the call reaches us without `syscall`.
        let rewritten = c.stub_pages.contains(&(req.ret & !(crate::mm::PAGE - 1)));
        let patch = !rewritten && k.patch_entry.is_some() && patchable_site(c, req);
        if patch && (c.to_patch.len() >= MAX_QUEUED || c.to_patch.iter().any(|s| s.0 == req.ret)) {
            return ExitlessReply::Exit;
        }
        let fast = (self.lookup)(req.nr);
        match fast.and_then(|(nr, f)| f(k, c, nr, req.args)) {
            Some(v) => {
                if patch {
                    c.to_patch.push((req.ret, req.nr));
                }
                k.served[usize::from(!rewritten)].fetch_add(1, Ordering::Relaxed);
                ExitlessReply::Done(v)
            }
            None => ExitlessReply::Exit,
        }
    }
}

/// Write `b` at `va` in the vproc's memory, under the process lock, only
/// into pages present and writable (no paging in here).
pub(crate) fn write_user(c: &FastCtx, va: u64, b: &[u8]) -> bool {
    c.process
        .try_with(|vms| vms.copy_to_user(va, b).is_ok())
        .unwrap_or(false)
}

/// Is the site of `req` one the vCPU thread would patch (see `mm::patch`)?
/// Only bytes present in memory are read (nothing is paged in here).
fn patchable_site(c: &FastCtx, req: &ExitlessRequest) -> bool {
    if !c.process.patch_forcing() {
        return false;
    }
    let Some(at) = req.ret.checked_sub(crate::mm::PATCH_CODE as u64) else {
        return false;
    };
    let mut code = [0u8; crate::mm::PATCH_CODE];
    if !read_user(c, at, &mut code) {
        return false;
    }
    // The bytes after the return address up to the end of its page, and
    // the next page's if it is there.
    let mut after = [0u8; crate::mm::HOP_SCAN];
    let page_left = crate::mm::PAGE - (req.ret & (crate::mm::PAGE - 1));
    let first = usize::try_from(page_left).map_or(after.len(), |n| n.min(after.len()));
    let mut have = 0;
    if read_user(c, req.ret, &mut after[..first]) {
        have = first;
        if first < after.len() && read_user(c, req.ret + first as u64, &mut after[first..]) {
            have = after.len();
        }
    }
    let threads = c.process.threads();
    c.process
        .try_with_mm(|mm| {
            mm.patch_plan(req.ret, req.nr, threads, &code, &after[..have])
                .is_ok()
        })
        .unwrap_or(false)
}

/// Read `b` from `va` in the vproc's memory, under the process lock, only
/// from pages present and readable.
pub(crate) fn read_user(c: &FastCtx, va: u64, b: &mut [u8]) -> bool {
    c.process
        .try_with(|vms| vms.copy_from_user(va, b).is_ok())
        .unwrap_or(false)
}
