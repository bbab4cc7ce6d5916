//! What the threads of one process share, and the lock that guards it.
//!
//! A thread is a [`Vproc`] of its own (tid, registers, FPU context, signal
//! mask, alternate stack, pending signals); the threads of a process share
//! one [`Process`]: the address space ([`Mm`]), the fd table, the current
//! directory, the umask and the signal dispositions, and the group's kill
//! order (exit_group, a fatal signal, execve).
//!
//! The process lock: a thread holds its process's lock while it is in the
//! kernel, from the end of a guest run ([`Vproc::enter_kernel`]) until it
//! runs the guest again or is put back in the process table
//! ([`Vproc::leave_kernel`]). So the kernel work of the threads of one
//! process is serialised (their guest code runs in parallel on any vCPUs),
//! the lock is always taken before any other lock (process table, pipes),
//! and nothing that holds the process table ever waits for it.
//!
//! `Vproc::mm` is an [`MmRef`]: it dereferences to the shared [`Mm`],
//! taking the lock first if this thread does not hold it yet, so the code
//! that uses `self.mm` is the same for processes and threads. The other
//! shared parts live in the thread's own fields while it holds the lock
//! and in the [`Process`] otherwise (moved in at `enter_kernel`, out at
//! `leave_kernel`), but only while the process has more than one thread: a
//! single-threaded process keeps them in place and pays one uncontended
//! lock per trap, unless the exitless server may serve its calls
//! (`kernel::fast` reads the fd table and the current directory where
//! they live while no thread holds the lock).

use std::cell::{Cell, UnsafeCell};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::core::prelude::*;

use super::files::FdTable;
use super::mm::{Frames, Mm};
use super::signal::SigAction;
use super::{ExitStatus, Vproc};

/// Why the threads of a process must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kill {
    /// exit_group or a fatal signal: every thread ends, and the process
    /// ends with this status.
    Group(ExitStatus),
    /// execve in thread `survivor`: every other thread ends.
    Dethread(i32),
}

/// The parts of a process its threads share besides the memory; they live
/// here while no thread holds the process lock (see the module docs).
#[derive(Default)]
struct Parts {
    /// True when the values below are the live ones.
    home: bool,
    fds: FdTable,
    cwd: u64,
    umask: u32,
}

/// The process lock's state.
#[derive(Default)]
struct LockState {
    held: bool,
    /// Threads waiting for it.
    waiters: usize,
}

/// One process: what its threads share.
pub struct Process {
    /// Held by the thread in the kernel (see the module docs).
    held: Mutex<LockState>,
    freed: Condvar,
    mm: UnsafeCell<Mm>,
    parts: UnsafeCell<Parts>,
    /// The signal dispositions as the kernel sees them for delivery
    /// decisions of a multithreaded process (a leaf lock: taken under the
    /// process table, never while taking another).
    actions: Mutex<[SigAction; 65]>,
    vms: Arc<Vmspace>,
    frames: Frames,
    kill_flag: AtomicBool,
    kill: Mutex<Option<Kill>>,
    /// The exitless server queues patchable call sites for the vCPU thread
    /// to patch (and sends a queued site's next call to the exit path)
    /// until a patch failed here (`kernel::fast`).
    patch_forcing: AtomicBool,
}

// SAFETY: `mm` and `parts` are only touched by the thread that holds the
// process lock (`held`), which makes the accesses exclusive; `Mm` and
// `Parts` are `Send`, and everything else is `Sync` on its own.
unsafe impl Sync for Process {}
// SAFETY: as above; the cells hold `Send` values.
unsafe impl Send for Process {}

impl Process {
    fn acquire(&self) {
        let mut g = self.held.lock().unwrap_or_else(|e| e.into_inner());
        while g.held {
            g.waiters += 1;
            g = self.freed.wait(g).unwrap_or_else(|e| e.into_inner());
            g.waiters -= 1;
        }
        g.held = true;
    }

    fn release(&self) {
        let mut g = self.held.lock().unwrap_or_else(|e| e.into_inner());
        g.held = false;
        // A notify is a host syscall: only when a thread waits.
        if g.waiters > 0 {
            self.freed.notify_one();
        }
    }
}

/// A weak handle on a process for the exitless server
/// (`kernel::fast`): it does not count as a thread.
#[derive(Clone)]
pub(crate) struct ProcessLock(std::sync::Weak<Process>);

impl crate::files::MemAccess for ProcessLock {
    fn try_with_mm(&self, f: &mut dyn FnMut(&mut Mm) -> usize) -> Option<usize> {
        self.try_with_mm_mut(f)
    }

    fn gone(&self) -> bool {
        self.0.strong_count() == 0
    }
}

impl ProcessLock {
    /// Run `f` on the process's vmspace with the process lock held (no
    /// other thread of it in the kernel meanwhile); None, at once, when
    /// another thread holds the lock or the process is gone (the server
    /// never waits for a thread's kernel work).
    pub(crate) fn try_with<R>(&self, f: impl FnOnce(&Vmspace) -> R) -> Option<R> {
        let p = self.0.upgrade()?;
        let held = Held::try_take(&p)?;
        let r = f(&p.vms);
        drop(held);
        Some(r)
    }

    /// Threads of the process (0: gone).
    pub(crate) fn threads(&self) -> usize {
        self.0.strong_count()
    }

    /// Does the server queue patchable sites for patching?
    pub(crate) fn patch_forcing(&self) -> bool {
        self.0
            .upgrade()
            .is_some_and(|p| p.patch_forcing.load(Ordering::Relaxed))
    }

    /// Run `f` on the process's memory map with the process lock held;
    /// None, at once, when another thread holds the lock or the process
    /// is gone.
    pub(crate) fn try_with_mm<R>(&self, f: impl FnOnce(&Mm) -> R) -> Option<R> {
        let p = self.0.upgrade()?;
        let held = Held::try_take(&p)?;
        // SAFETY: this thread holds the process lock (taken just above), so
        // no other thread touches `mm` until `held` lets it go below; the
        // reference does not outlive `f`.
        let r = f(unsafe { &*p.mm.get() });
        drop(held);
        Some(r)
    }

    /// Run `f` on the process's signal dispositions (the exitless
    /// server's rt_sigaction) with the process lock taken with a try, only
    /// while the shared parts are home: no thread of the process is in the
    /// kernel, whose copy would be the live one (`Vproc::leave_kernel`
    /// puts a thread's dispositions here, `Vproc::enter_kernel` takes
    /// them back).
    pub(crate) fn try_with_actions<R>(
        &self,
        f: impl FnOnce(&mut [SigAction; 65]) -> R,
    ) -> Option<R> {
        let p = self.0.upgrade()?;
        let held = Held::try_take(&p)?;
        // SAFETY: this thread holds the process lock (taken just above), so
        // no other thread touches `parts` until `held` lets it go below.
        let home = unsafe { &*p.parts.get() }.home;
        let r = home.then(|| f(&mut p.actions.lock().unwrap_or_else(|e| e.into_inner())));
        drop(held);
        r
    }

    /// Run `f` on the process's memory map, to read or write it (a
    /// tracer's PEEK/POKE, process_vm_readv), with the process lock held;
    /// None, at once, when another thread holds the lock or the process
    /// is gone.
    pub(crate) fn try_with_mm_mut<R>(&self, f: impl FnOnce(&mut Mm) -> R) -> Option<R> {
        let p = self.0.upgrade()?;
        let held = Held::try_take(&p)?;
        // SAFETY: this thread holds the process lock (taken just above), so
        // no other thread touches `mm` until `held` lets it go below; the
        // reference does not outlive `f`.
        let r = f(unsafe { &mut *p.mm.get() });
        drop(held);
        Some(r)
    }

    /// [`ProcessLock::try_with_parts`], with the fd table to change (the
    /// exitless server's open, close, dup and fcntl).
    pub(crate) fn try_with_parts_mut<R>(
        &self,
        f: impl FnOnce(LockedPartsMut<'_>) -> R,
    ) -> Option<R> {
        let p = self.0.upgrade()?;
        let held = Held::try_take(&p)?;
        // SAFETY: this thread holds the process lock (taken just above), so
        // no other thread touches `mm` or `parts` until `held` lets it go
        // below; the references do not outlive `f`.
        let (mm, parts) = unsafe { (&mut *p.mm.get(), &mut *p.parts.get()) };
        let r = parts.home.then(|| {
            f(LockedPartsMut {
                mm,
                fds: &mut parts.fds,
                cwd: parts.cwd,
            })
        });
        drop(held);
        r
    }

    /// Run `f` on the process's memory map, fd table and current
    /// directory with the process lock held; None, at once, when another
    /// thread holds the lock, the process is gone, or the shared parts are
    /// not home (a thread keeps them while it runs alone: see
    /// [`Vproc::leave_kernel`]).
    pub(crate) fn try_with_parts<R>(&self, f: impl FnOnce(LockedParts<'_>) -> R) -> Option<R> {
        let p = self.0.upgrade()?;
        let held = Held::try_take(&p)?;
        // SAFETY: this thread holds the process lock (taken just above), so
        // no other thread touches `mm` or `parts` until `held` lets it go
        // below; the references do not outlive `f`.
        let (mm, parts) = unsafe { (&mut *p.mm.get(), &*p.parts.get()) };
        let r = parts.home.then(|| {
            f(LockedParts {
                mm,
                fds: &parts.fds,
                cwd: parts.cwd,
            })
        });
        drop(held);
        r
    }
}

/// The process lock, taken by the exitless server; let go when dropped
/// (also when the server's handler panics: the core answers EXIT then, and
/// the process must not stay locked).
struct Held<'a>(&'a Process);

impl<'a> Held<'a> {
    /// Take `p`'s lock if nobody holds it.
    fn try_take(p: &'a Process) -> Option<Held<'a>> {
        let mut g = p.held.lock().unwrap_or_else(|e| e.into_inner());
        if g.held {
            return None;
        }
        g.held = true;
        Some(Held(p))
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// What [`ProcessLock::try_with_parts`] lends: the shared parts of a
/// process whose lock the caller holds.
pub(crate) struct LockedParts<'a> {
    /// The memory map.
    pub(crate) mm: &'a mut Mm,
    /// The fd table.
    pub(crate) fds: &'a FdTable,
    /// The current directory.
    pub(crate) cwd: u64,
}

/// What [`ProcessLock::try_with_parts_mut`] lends: as [`LockedParts`],
/// with the fd table to change.
pub(crate) struct LockedPartsMut<'a> {
    /// The memory map.
    pub(crate) mm: &'a mut Mm,
    /// The fd table.
    pub(crate) fds: &'a mut FdTable,
    /// The current directory.
    pub(crate) cwd: u64,
}

/// A thread's handle on its process's memory (`Vproc::mm`): dereferences
/// to the [`Mm`], taking the process lock on first use.
pub struct MmRef {
    p: Arc<Process>,
    held: Cell<bool>,
}

impl MmRef {
    /// A new process around `mm` (one thread: this handle).
    pub fn new(mm: Mm) -> MmRef {
        let vms = mm.vmspace_arc();
        let frames = mm.frames().clone();
        MmRef {
            p: Arc::new(Process {
                held: Mutex::new(LockState::default()),
                freed: Condvar::new(),
                mm: UnsafeCell::new(mm),
                parts: UnsafeCell::new(Parts::default()),
                actions: Mutex::new([SigAction::default(); 65]),
                vms,
                frames,
                kill_flag: AtomicBool::new(false),
                kill: Mutex::new(None),
                patch_forcing: AtomicBool::new(true),
            }),
            held: Cell::new(false),
        }
    }

    /// A handle for a new thread of the same process.
    pub fn share(&self) -> MmRef {
        MmRef {
            p: self.p.clone(),
            held: Cell::new(false),
        }
    }

    /// Patching failed in this process: the exitless server no longer
    /// queues patchable sites nor sends their calls to the exit path
    /// (`mm::patch`).
    pub fn stop_patch_forcing(&self) {
        self.p.patch_forcing.store(false, Ordering::Relaxed);
    }

    /// A weak handle for the exitless server.
    pub(crate) fn lock_handle(&self) -> ProcessLock {
        ProcessLock(Arc::downgrade(&self.p))
    }

    /// Take the process lock (no-op if held).
    pub fn lock(&self) {
        if !self.held.get() {
            self.p.acquire();
            self.held.set(true);
        }
    }

    /// Let the process lock go (no-op if not held). No reference into the
    /// memory can be alive: this takes `&mut self`.
    pub fn unlock(&mut self) {
        if self.held.replace(false) {
            self.p.release();
        }
    }

    /// Does this thread hold the process lock?
    pub fn held(&self) -> bool {
        self.held.get()
    }

    /// How many threads share this process now (handles alive; a thread
    /// that exited counts until its body is dropped).
    pub fn threads(&self) -> usize {
        Arc::strong_count(&self.p)
    }

    /// The vmspace (no lock needed).
    pub fn vmspace(&self) -> &Vmspace {
        &self.p.vms
    }

    /// The vmspace, shared (no lock needed).
    pub fn vmspace_arc(&self) -> Arc<Vmspace> {
        self.p.vms.clone()
    }

    /// The frame allocator (no lock needed).
    pub fn frames(&self) -> &Frames {
        &self.p.frames
    }

    /// Identity of the process (for futex keys): stable while it lives.
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.p.vms) as usize
    }

    /// The kill order of the process, if any (cheap when there is none).
    pub fn kill_order(&self) -> Option<Kill> {
        if !self.p.kill_flag.load(Ordering::SeqCst) {
            return None;
        }
        *self.p.kill.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Order the threads to end; the first group exit wins (a group exit
    /// also replaces a pending de-thread). Returns the order in force.
    pub fn set_kill(&self, k: Kill) -> Kill {
        let mut g = self.p.kill.lock().unwrap_or_else(|e| e.into_inner());
        let now = match (*g, k) {
            (Some(Kill::Group(s)), _) => Kill::Group(s),
            (_, k) => k,
        };
        *g = Some(now);
        self.p.kill_flag.store(true, Ordering::SeqCst);
        now
    }

    /// Forget a de-thread order (execve is done; a group exit stays).
    pub fn clear_dethread(&self) {
        let mut g = self.p.kill.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*g, Some(Kill::Dethread(_))) {
            *g = None;
            self.p.kill_flag.store(false, Ordering::SeqCst);
        }
    }

    /// The disposition of `signo` as last published by a thread of a
    /// multithreaded process.
    pub fn shared_action(&self, signo: i32) -> SigAction {
        self.p.actions.lock().unwrap_or_else(|e| e.into_inner())[signo as usize]
    }

    fn actions(&self) -> MutexGuard<'_, [SigAction; 65]> {
        self.p.actions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Deref for MmRef {
    type Target = Mm;

    fn deref(&self) -> &Mm {
        self.lock();
        // SAFETY: this thread holds the process lock (taken just above),
        // so no other thread touches the Mm until `unlock`, which needs
        // `&mut self` and so outlives every reference handed out here.
        unsafe { &*self.p.mm.get() }
    }
}

impl DerefMut for MmRef {
    fn deref_mut(&mut self) -> &mut Mm {
        self.lock();
        // SAFETY: as in `deref`; `&mut self` makes this the only reference
        // handed out by this handle, and the lock excludes the others.
        unsafe { &mut *self.p.mm.get() }
    }
}

impl Drop for MmRef {
    fn drop(&mut self) {
        self.unlock();
    }
}

/// A thread's own bookkeeping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadInfo {
    /// The thread group (process) id: what getpid returns.
    pub tgid: i32,
    /// The exit ends this thread only (SYS_exit, or killed by execve in
    /// another thread); otherwise it ends the whole group.
    pub exit_thread: bool,
    /// set_robust_list: the list head's address (0: none).
    pub robust_list: u64,
    /// The signals an rt_sigtimedwait of this thread waits for (they
    /// count as unblocked for routing and waking while it waits).
    pub sigwait: u64,
    /// PR_SET_PDEATHSIG of this thread (0: none; a new thread or process
    /// starts without).
    pub pdeathsig: i32,
}

/// The prctl(2) attributes of a thread besides PR_SET_PDEATHSIG (see
/// `syscalls::prctl`); a fork or clone child starts with its parent's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrctlFlags {
    /// PR_SET_DUMPABLE (Linux keeps it per address space; every thread of
    /// a vproc's process sets its own copy).
    pub dumpable: bool,
    /// PR_SET_KEEPCAPS.
    pub keepcaps: bool,
    /// PR_SET_NO_NEW_PRIVS (never cleared once set).
    pub no_new_privs: bool,
    /// PR_SET_THP_DISABLE.
    pub thp_disable: bool,
    /// PR_SET_TIMERSLACK, in nanoseconds.
    pub timerslack_ns: u64,
}

/// Linux's default timer slack (50 µs).
pub const DEFAULT_TIMERSLACK_NS: u64 = 50_000;

impl Default for PrctlFlags {
    fn default() -> PrctlFlags {
        PrctlFlags {
            dumpable: true,
            keepcaps: false,
            no_new_privs: false,
            thp_disable: false,
            timerslack_ns: DEFAULT_TIMERSLACK_NS,
        }
    }
}

impl PrctlFlags {
    /// What execve leaves: dumpable again, keepcaps cleared, the rest
    /// kept (as Linux does for a program that gains no privileges).
    pub fn after_exec(self) -> PrctlFlags {
        PrctlFlags {
            dumpable: true,
            keepcaps: false,
            ..self
        }
    }
}

impl ThreadInfo {
    /// The first thread of process `pid`.
    pub fn new(pid: i32) -> ThreadInfo {
        ThreadInfo {
            tgid: pid,
            ..Default::default()
        }
    }
}

impl Vproc {
    /// Take the process lock and, in a multithreaded process, the shared
    /// fds, cwd, umask and dispositions (see the module docs).
    pub fn enter_kernel(&mut self) {
        self.mm.lock();
        // SAFETY: the process lock is held (just above); only its holder
        // touches the parts.
        let parts = unsafe { &mut *self.mm.p.parts.get() };
        if parts.home {
            parts.home = false;
            self.fds = std::mem::take(&mut parts.fds);
            self.cwd = parts.cwd;
            self.umask = parts.umask;
            self.sig.actions = *self.mm.actions();
        }
    }

    /// Give the shared parts back (if other threads share them, or the
    /// exitless server may serve this process's calls: it reads them there)
    /// and the process lock.
    pub fn leave_kernel(&mut self) {
        if !self.mm.held() {
            return;
        }
        let served = self.k.as_ref().is_some_and(|k| k.fast.enabled());
        if served || self.mm.threads() > 1 {
            // SAFETY: the process lock is held (checked above).
            let parts = unsafe { &mut *self.mm.p.parts.get() };
            if !parts.home {
                parts.home = true;
                parts.fds = std::mem::take(&mut self.fds);
                parts.cwd = self.cwd;
                parts.umask = self.umask;
                *self.mm.actions() = self.sig.actions;
            }
        }
        self.mm.unlock();
    }

    /// Is this vproc one of several threads of its process?
    pub fn threaded(&self) -> bool {
        self.mm.threads() > 1
    }
}
