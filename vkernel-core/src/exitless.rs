//! Exitless syscalls: a vproc's `syscall` served without a VM exit.
//!
//! Where KVM keeps CPL3 across `syscall` (our PVM-derived hosts), each vCPU's
//! LSTAR points at its own entry in the trampoline page, which posts the
//! call in the vCPU's request line of the vmspace's request page
//! ([`vkernel_guest::layout::SLOT_VA`], one page per vmspace, user-writable)
//! and spins (`pause`) for an answer, a bounded number of times. Where
//! `syscall` enters CPL0 (VT-x/SVM), each vCPU's LSTAR is its own entry in
//! the stub, which does the same with the vCPU's line in the system region
//! ([`vkernel_guest::layout::cpu_xline_off`], out of the vproc's reach) and
//! returns with `sysretq`. A host
//! thread (the *server*) polls the lines of the vmspaces the vCPUs are
//! running and answers through the handler the virtual kernel registered
//! ([`crate::machine::Machine::set_exitless_handler`]): "done, with this
//! return value" (the vproc resumes, no exit at all) or "take the exit"
//! (the trampoline exits as without a server, and [`crate::cpu::Cpu::run`]
//! returns `Trap::Syscall` as usual). With no server awake, or when its
//! budget runs out and it can take the request back, the trampoline exits
//! at once.
//!
//! A syscall site the virtual kernel has patched (a `jmp` to a stub of its
//! own instead of the `syscall` instruction, see the Linux personality's
//! `syscall patching`) reaches the same code without the `syscall`
//! instruction at all, through [`Machine::patched_entry_va`]: on PVM hosts
//! that is what saves the host kernel's syscall redirection (most of an
//! exitless call's cost there). It finds its vCPU's line through GS: while
//! a vproc that never set a GS base of its own runs on vCPU n, the GS base
//! is n + 1 (below 64 KiB: the vproc's own `gs:` accesses fault as they
//! would with base 0), and `gs:[SLOT_VA + XS_INDEX]` is n (see
//! `abi::XS_INDEX`).
//!
//! [`Machine::patched_entry_va`]: crate::machine::Machine::patched_entry_va
//!
//! The server sleeps after an idle period (a futex wait through a
//! condition variable) and says so in every line it polls (its map of
//! served numbers reads all zero); the vCPU thread
//! wakes it when a syscall takes the exit path, and before a program just
//! loaded runs (`Cpu::keep_exitless_awake`: it then stays awake a few
//! milliseconds however long the program's start goes without a call).
//! Both spins are bounded, so
//! an oversubscribed host degrades to the exit path, never to starvation.
//!
//! Where KVM keeps CPL3 across `syscall` the request line is hostile
//! input: the vproc (any thread of its process) can write it at any time.
//! (The CPL0 entry's line is in the system region, out of its reach; the
//! server treats both alike.) The server reads a request once, into
//! host memory, after winning the line with a compare-and-exchange; the
//! handler gets plain values and checks every pointer like any syscall.
//! A vproc reaches only its own vmspace's page; the server serves only the
//! line of the vCPU that runs the vmspace, in that vCPU's context.
//!
//! A kick that interrupts a vproc inside the trampoline (or the CPL0 entry)
//! is settled before `Cpu::run` returns (`cpu/settle.rs`,
//! `cpu/settle_cpl0.rs`): an answered request completes
//! (exactly once), one not taken yet is taken back and the vproc rewound to
//! its `syscall`, one the server is serving is waited for.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vkernel_guest::abi::{
    XS_ARGS, XS_DONE, XS_EXIT, XS_LINE, XS_NR, XS_POSTED, XS_RCX, XS_RET, XS_SERVES, XS_STATE,
    XS_TAKEN,
};

use crate::ram::Ram;

/// A syscall a vproc posted, as read (once) by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitlessRequest {
    /// The vCPU whose vproc made it.
    pub cpu: usize,
    /// The syscall number (RAX).
    pub nr: u64,
    /// RDI, RSI, RDX, R10, R8, R9.
    pub args: [u64; 6],
    /// Where the vproc resumes (RCX of its `syscall`, or the return
    /// address a patched site's stub set): the call site, for a virtual
    /// kernel that patches sites (the value is the vproc's: check it).
    pub ret: u64,
}

/// The handler's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitlessReply {
    /// Done: the vproc resumes after its `syscall` with RAX = this value.
    Done(u64),
    /// Take the exit: `Cpu::run` returns `Trap::Syscall` for this call (a
    /// call that blocks, changes the vproc or its mappings, or needs the
    /// vCPU thread).
    Exit,
}

/// The virtual kernel's handler: runs on the server thread while the vproc
/// waits on its vCPU; must not block.
pub type ExitlessHandler = Arc<dyn Fn(&ExitlessRequest) -> ExitlessReply + Send + Sync>;

/// Tuning of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitlessOptions {
    /// The server sleeps after this long without a request (default 1 ms):
    /// longer trades CPU for latency after a pause.
    pub idle: Duration,
    /// The syscall numbers the handler may answer (default: all). The
    /// trampoline takes the exit at once for any other number, without a
    /// round trip to the server. Numbers from 255 up share one bit: listing
    /// one of them lets them all through.
    pub serves: Option<Vec<u64>>,
}

impl Default for ExitlessOptions {
    fn default() -> Self {
        ExitlessOptions {
            idle: Duration::from_millis(1),
            serves: None,
        }
    }
}

impl ExitlessOptions {
    /// The 256-bit map of `serves` the trampoline reads.
    fn serves_map(&self) -> [u64; 4] {
        match &self.serves {
            None => [u64::MAX; 4],
            Some(v) => {
                let mut m = [0u64; 4];
                for &nr in v {
                    let bit = nr.min(255);
                    m[bit as usize / 64] |= 1 << (bit % 64);
                }
                m
            }
        }
    }
}

/// Counters of the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitlessStats {
    /// Requests answered "done" (no exit).
    pub served: u64,
    /// Requests answered "take the exit".
    pub sent_to_exit: u64,
    /// Times the server went to sleep.
    pub sleeps: u64,
}

/// The machine's exitless state: which request page each vCPU runs, and
/// the server.
pub(crate) struct Exitless {
    sys: Ram,
    /// System-region offset of the request line each vCPU is using (its
    /// line in the request page of the vmspace it runs, or its own line in
    /// the system region where `syscall` enters CPL0; 0: none).
    current: Vec<AtomicU64>,
    awake: AtomicBool,
    woken: Mutex<bool>,
    wake_cv: Condvar,
    stop: AtomicBool,
    served: AtomicU64,
    sent_to_exit: AtomicU64,
    sleeps: AtomicU64,
    /// The server does not go to sleep before this instant (see
    /// [`Exitless::keep_awake`]).
    keep_until: Mutex<Option<Instant>>,
    handler: Mutex<Option<ExitlessHandler>>,
    /// The map of numbers the handler serves (written into each line).
    serves: [AtomicU64; 4],
    server: Mutex<Option<JoinHandle<()>>>,
}

impl Exitless {
    pub(crate) fn new(sys: Ram, vcpus: usize) -> Exitless {
        Exitless {
            sys,
            current: (0..vcpus).map(|_| AtomicU64::new(0)).collect(),
            awake: AtomicBool::new(false),
            woken: Mutex::new(false),
            wake_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            served: AtomicU64::new(0),
            sent_to_exit: AtomicU64::new(0),
            sleeps: AtomicU64::new(0),
            keep_until: Mutex::new(None),
            handler: Mutex::new(None),
            serves: std::array::from_fn(|_| AtomicU64::new(0)),
            server: Mutex::new(None),
        }
    }

    fn line(page: u64, cpu: usize) -> u64 {
        page + XS_LINE * cpu as u64
    }

    /// vCPU `cpu` is about to run the vmspace whose request page is at
    /// `page`: the server polls its line from now on.
    pub(crate) fn enter(&self, cpu: usize, page: u64) {
        let line = Self::line(page, cpu);
        for (i, w) in vkernel_guest::abi::xs_index_table().iter().enumerate() {
            let _ = self
                .sys
                .store(page + vkernel_guest::abi::XS_INDEX + 8 * i as u64, *w);
        }
        self.enter_line(cpu, line);
    }

    /// vCPU `cpu` is about to run a vproc that posts its requests in the
    /// line at system-region offset `line`: the server polls it from now
    /// on.
    pub(crate) fn enter_line(&self, cpu: usize, line: u64) {
        self.write_map(line, self.awake.load(Ordering::Acquire));
        self.current[cpu].store(line, Ordering::Release);
    }

    /// vCPU `cpu` stopped running it (its request, if any, is settled).
    pub(crate) fn leave(&self, cpu: usize) {
        self.current[cpu].store(0, Ordering::Release);
    }

    /// A syscall took the exit path: make sure the server is up for the
    /// next ones.
    pub(crate) fn wake(&self) {
        if !self.awake.load(Ordering::Relaxed) {
            *self.woken.lock().unwrap() = true;
            self.wake_cv.notify_one();
        }
    }

    /// Keep the server polling for at least `d` from now, and wake it if
    /// it sleeps: a vproc is about to make calls after a stretch without
    /// any that the idle timer would sleep through (a fresh program's
    /// start: static glibc asks `cpuid` 38 times, about 0.7-1.5 ms on our
    /// hosts, before its first call, and the calls that found the server
    /// asleep took exits).
    pub(crate) fn keep_awake(&self, d: Duration) {
        let until = Instant::now() + d;
        {
            let mut k = self.keep_until.lock().unwrap_or_else(|e| e.into_inner());
            if k.is_none_or(|t| t < until) {
                *k = Some(until);
            }
        }
        self.wake();
    }

    /// Is the server asked to stay awake ([`Exitless::keep_awake`])?
    fn kept_awake(&self) -> bool {
        self.keep_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| Instant::now() < t)
    }

    pub(crate) fn stats(&self) -> ExitlessStats {
        ExitlessStats {
            served: self.served.load(Ordering::Relaxed),
            sent_to_exit: self.sent_to_exit.load(Ordering::Relaxed),
            sleeps: self.sleeps.load(Ordering::Relaxed),
        }
    }

    /// Serve with `handler` from now on: the server starts on the first
    /// call (with `opts`); later calls replace the handler. False when the
    /// server thread cannot start.
    pub(crate) fn start(self: &Arc<Self>, handler: ExitlessHandler, opts: ExitlessOptions) -> bool {
        for (w, v) in self.serves.iter().zip(opts.serves_map()) {
            w.store(v, Ordering::Relaxed);
        }
        *self.handler.lock().unwrap() = Some(handler);
        let mut s = self.server.lock().unwrap();
        if s.is_some() {
            return true;
        }
        // A thread whose stack fits but whose signal stack does not panics
        // inside std as it starts (under a tight `ulimit -v`).
        if let Err(e) = crate::host::address_space_left(crate::host::THREAD_ROOM) {
            log::warn!(
                "vkernel: no address space for the exitless server ({e}): every syscall exits"
            );
            return false;
        }
        let me = self.clone();
        let t = std::thread::Builder::new()
            .name("vkernel-exitless".into())
            .spawn(move || me.serve(opts));
        match t {
            Ok(t) => {
                *s = Some(t);
                true
            }
            Err(e) => {
                log::warn!("vkernel: cannot start the exitless server ({e}): every syscall exits");
                false
            }
        }
    }

    /// Stop the server and wait for it.
    pub(crate) fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        *self.woken.lock().unwrap() = true;
        self.wake_cv.notify_one();
        if let Some(t) = self.server.lock().unwrap().take() {
            let _ = t.join();
        }
    }

    /// Write the served-number map into `line`: the handler's while the
    /// server is awake, all zero (every call exits) while it sleeps.
    fn write_map(&self, line: u64, awake: bool) {
        for (i, w) in self.serves.iter().enumerate() {
            let v = if awake { w.load(Ordering::Relaxed) } else { 0 };
            let _ = self.sys.store(line + XS_SERVES + 8 * i as u64, v);
        }
    }

    fn set_awake(&self, on: bool) {
        self.awake.store(on, Ordering::Release);
        for c in &self.current {
            let line = c.load(Ordering::Acquire);
            if line != 0 {
                self.write_map(line, on);
            }
        }
    }

    /// One pass over the lines; returns whether any request was answered.
    fn poll(&self) -> bool {
        let mut any = false;
        for (cpu, c) in self.current.iter().enumerate() {
            let line = c.load(Ordering::Acquire);
            if line == 0 {
                continue;
            }
            if self.sys.load(line + XS_STATE) != Ok(XS_POSTED)
                || self.sys.cas(line + XS_STATE, XS_POSTED, XS_TAKEN) != Ok(true)
            {
                continue;
            }
            // Read once, into host memory; never again.
            let load = |off: u64| self.sys.load(line + off).unwrap_or(0);
            let req = ExitlessRequest {
                cpu,
                nr: load(XS_NR),
                args: std::array::from_fn(|i| load(XS_ARGS + 8 * i as u64)),
                ret: load(XS_RCX),
            };
            let handler = self.handler.lock().unwrap().clone();
            let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                handler.map_or(ExitlessReply::Exit, |h| h(&req))
            }))
            .unwrap_or_else(|_| {
                log::error!(
                    "vkernel: the exitless handler panicked on syscall {}",
                    req.nr
                );
                ExitlessReply::Exit
            });
            match reply {
                ExitlessReply::Done(v) => {
                    let _ = self.sys.store(line + XS_RET, v);
                    let _ = self.sys.store(line + XS_STATE, XS_DONE);
                    self.served.fetch_add(1, Ordering::Relaxed);
                }
                ExitlessReply::Exit => {
                    let _ = self.sys.store(line + XS_STATE, XS_EXIT);
                    self.sent_to_exit.fetch_add(1, Ordering::Relaxed);
                }
            }
            any = true;
        }
        any
    }

    fn serve(&self, opts: ExitlessOptions) {
        self.set_awake(true);
        let mut last = Instant::now();
        let mut spins = 0u32;
        while !self.stop.load(Ordering::Acquire) {
            if self.poll() {
                last = Instant::now();
                spins = 0;
                continue;
            }
            spins += 1;
            // The clock is read once every 64 idle passes.
            if spins.is_multiple_of(64) && last.elapsed() >= opts.idle && !self.kept_awake() {
                self.sleep();
                last = Instant::now();
                continue;
            }
            std::hint::spin_loop();
        }
        self.set_awake(false);
    }

    fn sleep(&self) {
        self.sleeps.fetch_add(1, Ordering::Relaxed);
        self.set_awake(false);
        // A request posted just before the lines said "asleep".
        self.poll();
        let mut w = self.woken.lock().unwrap();
        while !*w && !self.stop.load(Ordering::Acquire) {
            w = self.wake_cv.wait(w).unwrap();
        }
        *w = false;
        drop(w);
        self.set_awake(true);
    }
}
