//! vCPUs: running a vproc until it traps (the seed's `VMSPACE_CTL_RUN`), and
//! kicking a running vCPU out of the guest.
//!
//! One [`Cpu::run`] costs one `KVM_RUN` per trap and no other vCPU ioctl:
//! registers travel through KVM's synced register block (`kvm_run.s.regs`),
//! the entry frame and the mailbox through the system region.

use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use kvm_bindings::{kvm_guest_debug, kvm_run, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};

use vkernel_guest::abi::{self, MB_CMDS, MB_MAX_CMDS, MB_NCMDS, MB_USER_RSP};
use vkernel_guest::layout::{cpu_stack_top_off, ENTRY_FRAME_SIZE, STUB_OFF, SYS_VA};
use vkernel_guest::x86::{self, is_canonical, PFEC_I, PFEC_W};

use crate::fpu::{FpuContext, FpuMode, FXSAVE_LEN};
use crate::hwpt::Cmd;
use crate::machine::{MachineError, MachineInner, TrapPath};
use crate::trap::{Trap, TrapFrame};
use crate::vmspace::Vmspace;
use crate::walker::Access;

/// Errors of [`Cpu::run`]: the host-side machinery failed (not the vproc).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The vmspace belongs to another machine.
    #[error("the vmspace belongs to another machine")]
    WrongMachine,
    /// The frame holds a value the CPU cannot load.
    #[error("trap frame field {field} = {value:#x} is not a canonical address")]
    BadFrame {
        /// Field name.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// KVM_RUN failed.
    #[error("KVM_RUN failed: {0}")]
    Kvm(std::io::Error),
    /// The guest triple-faulted (a stub or setup bug).
    #[error("the vCPU shut down (triple fault) at rip {rip:#x}")]
    Shutdown {
        /// Guest RIP.
        rip: u64,
    },
    /// KVM could not emulate something.
    #[error("KVM internal error (suberror {suberror}) at rip {rip:#x}")]
    Internal {
        /// KVM's suberror code.
        suberror: u32,
        /// Guest RIP.
        rip: u64,
    },
    /// An exception hit the stub itself.
    #[error("exception {vector} in the stub at rip {rip:#x} (cr2 {cr2:#x})")]
    StubFault {
        /// Vector.
        vector: u64,
        /// Guest RIP.
        rip: u64,
        /// CR2.
        cr2: u64,
    },
    /// The same fault kept being resolved without progress.
    #[error("page fault at {addr:#x} resolved {count} times without progress")]
    FaultLoop {
        /// Faulting address.
        addr: u64,
        /// Times resolved.
        count: u32,
    },
    /// Some other exit.
    #[error("unexpected vCPU exit: {0}")]
    Unexpected(String),
    /// The vproc's FPU context is live on another vCPU.
    #[error(
        "the FPU context is still loaded on vCPU {cpu}: call Cpu::release_fpu there before \
         running its vproc here"
    )]
    FpuBusy {
        /// The vCPU holding it.
        cpu: usize,
    },
    /// An earlier fatal error left this vCPU unusable.
    #[error("the vCPU is unusable after an earlier error: {0}")]
    Broken(String),
}

/// Shared state between a vCPU and its kickers.
pub(crate) struct KickState {
    inner: Mutex<KickInner>,
}

struct KickInner {
    /// The vCPU's kvm_run page; null once the Cpu (and its mapping) is gone.
    run: *mut kvm_run,
    /// The thread inside `Cpu::run`, if any.
    thread: Option<libc::pthread_t>,
    /// Kicks so far: the vCPU thread clears `immediate_exit` only if no
    /// kick came after the exit it is answering.
    kicks: u64,
}

// SAFETY: `run` is only dereferenced under the mutex, and the Cpu nulls it
// under the same mutex before its VcpuFd (which owns the mapping) is
// dropped; only the `immediate_exit` byte is accessed through it, and only
// as an AtomicU8 (see `immediate_exit`).
unsafe impl Send for KickState {}
// SAFETY: as above.
unsafe impl Sync for KickState {}

fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

extern "C" fn on_kick(_: libc::c_int) {}

/// Installs the kick signal's handler once per process; every later call
/// returns the first call's outcome (as an errno).
fn install_kick_handler() -> Result<(), MachineError> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let r = *INSTALLED.get_or_init(|| {
        // SAFETY: installs a handler that does nothing for a real-time
        // signal reserved for vkernel; without SA_RESTART so KVM_RUN returns
        // EINTR. `sa` is fully initialised (zeroed, then the fields set).
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as *const () as usize;
            sa.sa_flags = 0;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut())
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL))
        }
    });
    r.map_err(|errno| MachineError::KickSignal {
        signo: kick_signal(),
        source: std::io::Error::from_raw_os_error(errno),
    })
}

/// The `immediate_exit` byte of a vCPU's `kvm_run` page as an atomic, so
/// the vCPU thread and kicking threads never race on a plain byte.
///
/// # Safety
///
/// `run` must point to a live `kvm_run` mapping that outlives the returned
/// reference.
unsafe fn immediate_exit<'a>(run: *mut kvm_run) -> &'a AtomicU8 {
    // SAFETY: the caller guarantees the mapping is live for 'a; AtomicU8
    // has the size and alignment (1) of u8, so any u8 field is a valid
    // AtomicU8, and every access to this byte from Rust goes through an
    // atomic (KVM itself only reads it).
    unsafe { AtomicU8::from_ptr(std::ptr::addr_of_mut!((*run).immediate_exit)) }
}

impl KickState {
    pub(crate) fn new(fd: &mut VcpuFd) -> Result<KickState, MachineError> {
        install_kick_handler()?;
        Ok(KickState {
            inner: Mutex::new(KickInner {
                run: fd.get_kvm_run() as *mut kvm_run,
                thread: None,
                kicks: 0,
            }),
        })
    }

    fn set_thread(&self, t: Option<libc::pthread_t>) {
        self.inner.lock().unwrap().thread = t;
    }

    /// Kicks so far.
    fn kicks(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).kicks
    }

    /// Clear `immediate_exit` after a kick was seen (the vCPU thread's
    /// side of the same atomic byte the kickers set), unless another kick
    /// came after the count `seen` (read when KVM_RUN returned): that one
    /// must make the next entry exit too, or it would be lost.
    fn clear_immediate_exit(&self, seen: u64) {
        let k = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !k.run.is_null() && k.kicks == seen {
            // SAFETY: non-null under the lock: the mapping is alive while
            // the lock is held (see KickState).
            unsafe { immediate_exit(k.run) }.store(0, Ordering::SeqCst);
        }
    }

    /// The vCPU is going away: kicks become no-ops.
    fn detach(&self) {
        let mut k = self.inner.lock().unwrap();
        k.run = std::ptr::null_mut();
        k.thread = None;
    }
}

/// Forces a vCPU out of `KVM_RUN` from any thread; [`Cpu::run`] then
/// returns [`Trap::Interrupted`]. A kick that arrives while the vCPU is not
/// in the guest makes the next run return at once: no wakeup is lost. A
/// kick after the [`Cpu`] was dropped does nothing.
#[derive(Clone)]
pub struct Kicker(Arc<KickState>);

impl Kicker {
    pub(crate) fn new(k: Arc<KickState>) -> Kicker {
        Kicker(k)
    }

    /// Kick the vCPU.
    pub fn kick(&self) {
        let mut k = self.0.inner.lock().unwrap_or_else(|e| e.into_inner());
        if k.run.is_null() {
            return;
        }
        k.kicks += 1;
        // SAFETY: non-null under the lock means the Cpu and its kvm_run
        // mapping are alive (see KickState), and the lock is held for the
        // reference's whole use.
        unsafe { immediate_exit(k.run) }.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if let Some(t) = k.thread {
            // SAFETY: `t` is the thread inside Cpu::run, which clears it
            // under this lock before returning, so the thread is alive.
            unsafe { libc::pthread_kill(t, kick_signal()) };
        }
    }
}

impl std::fmt::Debug for Kicker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kicker")
    }
}

/// Counters of one vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// KVM_RUN returns (VM exits seen by the host).
    pub exits: u64,
    /// Page faults resolved from a vpagetable without a trap.
    pub resolved_faults: u64,
    /// Syscall traps returned.
    pub syscalls: u64,
    /// PageFault traps returned.
    pub page_faults: u64,
    /// Exception traps returned.
    pub exceptions: u64,
    /// Interrupted returns.
    pub interrupts: u64,
    /// Extra exits spent entering the stub to apply commands.
    pub bounces: u64,
    /// Entries that had to load system registers (CR3, FS/GS base).
    pub sregs_loads: u64,
    /// FPU states saved from the vCPU (owner switches).
    pub fpu_saves: u64,
    /// FPU states loaded into the vCPU.
    pub fpu_restores: u64,
    /// #NM traps taken to hand the FPU over lazily.
    pub fpu_traps: u64,
    /// Kicks that landed while the vCPU executed stub code (it was then
    /// single-stepped back to the vproc).
    pub kicks_in_stub: u64,
    /// Faults installed before resuming a vproc whose last PageFault the
    /// vkernel fixed (each saves one exit).
    pub prefaults: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    /// CPL0 in the stub at the resume point, RSP = stack top - 56.
    Kernel,
    /// CPL3 with the vproc's registers live (quirk syscall exit or a kick).
    User,
}

/// A vCPU. Move it to the thread that runs it.
pub struct Cpu {
    m: Arc<MachineInner>,
    index: usize,
    fd: VcpuFd,
    kick: Arc<KickState>,
    pos: Position,
    cur_vms: u64,
    /// CR3 to load; kept until an entry is known to have happened.
    new_cr3: Option<u64>,
    /// The last KVM_RUN returned before entering the guest: whether it
    /// applied the synced registers is not known, so write them all again.
    force_dirty: bool,
    /// Registers at the last real exit (what the vCPU holds if an entry's
    /// register writes were not applied).
    exit_regs: kvm_bindings::kvm_regs,
    seen_gen: u64,
    target: TrapFrame,
    queue: VecDeque<Cmd>,
    bounce: bool,
    scrub_batch: Option<u64>,
    /// The mailbox holds the scrub batch (it went out with the last entry).
    scrub_in_mailbox: bool,
    kick_pending: bool,
    /// The kick count when the last interrupted KVM_RUN returned.
    kicks_seen: u64,
    stepping: bool,
    last_fault: (u64, u32),
    /// The last PageFault returned: (vmspace, addr, access, rip).
    returned_fault: Option<(u64, u64, Access, u64)>,
    stats: CpuStats,
    fpu_current: FpuContext,
    fpu_loaded: Option<FpuContext>,
    ts_set: bool,
    broken: Option<String>,
    top: u64,
}

impl std::fmt::Debug for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cpu").field("index", &self.index).finish()
    }
}

const FAULT_LOOP_MAX: u32 = 64;

impl Drop for Cpu {
    fn drop(&mut self) {
        // The kvm_run mapping goes with the VcpuFd: kicks must stop first.
        self.kick.detach();
        let _ = self.release_fpu();
    }
}

impl Cpu {
    pub(crate) fn new(
        m: Arc<MachineInner>,
        index: usize,
        mut fd: VcpuFd,
        kick: Arc<KickState>,
    ) -> Cpu {
        // Seed the synced register block with the real state, so the first
        // entry that edits it starts from truth.
        let regs = fd.get_regs().expect("GET_REGS on a fresh vCPU");
        let sregs = fd.get_sregs().expect("GET_SREGS on a fresh vCPU");
        fd.set_sync_valid_reg(SyncReg::Register);
        fd.set_sync_valid_reg(SyncReg::SystemRegister);
        {
            let s = fd.sync_regs_mut();
            s.regs = regs;
            s.sregs = sregs;
        }
        Cpu {
            m,
            index,
            fd,
            kick,
            pos: Position::Kernel,
            cur_vms: 0,
            new_cr3: None,
            force_dirty: false,
            exit_regs: regs,
            seen_gen: 0,
            target: TrapFrame::default(),
            queue: VecDeque::new(),
            bounce: false,
            scrub_batch: None,
            scrub_in_mailbox: false,
            kick_pending: false,
            kicks_seen: 0,
            stepping: false,
            last_fault: (u64::MAX, 0),
            returned_fault: None,
            stats: CpuStats::default(),
            fpu_current: FpuContext::new(),
            fpu_loaded: None,
            ts_set: false,
            broken: None,
            top: cpu_stack_top_off(index),
        }
    }

    /// Index of this vCPU.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Counters.
    pub fn stats(&self) -> CpuStats {
        self.stats
    }

    /// A kicker for this vCPU.
    pub fn kicker(&self) -> Kicker {
        Kicker(self.kick.clone())
    }

    /// Make `ctx` the FPU state of the vproc the next runs execute (the seed's
    /// per-process FPU context). Its registers are loaded lazily, on the
    /// vproc's first FPU instruction, where the host honours CR0.TS
    /// ([`crate::machine::Machine::fpu_mode`]); eagerly otherwise.
    pub fn set_fpu(&mut self, ctx: &FpuContext) {
        self.fpu_current = ctx.clone();
    }

    /// Save the vCPU's live FPU registers into their owner's context, so
    /// [`FpuContext::saved_xmm`] and [`FpuContext::xsave_image`] show current
    /// values. The context stays loaded here.
    pub fn sync_fpu(&mut self) -> Result<(), RunError> {
        if let Some(owner) = self.fpu_loaded.clone() {
            let x = self.fd.get_xsave().map_err(kvm_io)?;
            if owner.store_if_owner(self.index, &x) {
                self.stats.fpu_saves += 1;
            }
        }
        Ok(())
    }

    /// Whether `ctx` is the context whose registers this vCPU holds.
    fn holds_fpu(&self, ctx: &FpuContext) -> bool {
        self.fpu_loaded.as_ref().is_some_and(|l| l.same(ctx))
    }

    /// `ctx`'s current legacy FXSAVE area (a signal frame's FPU state): the
    /// live registers if this vCPU holds `ctx`, its saved image otherwise.
    /// Nothing moves.
    pub fn read_fxsave(&self, ctx: &FpuContext) -> Result<[u8; FXSAVE_LEN], RunError> {
        if self.holds_fpu(ctx) {
            let x = self.fd.get_xsave().map_err(kvm_io)?;
            Ok(crate::fpu::legacy_of(&x))
        } else {
            if let Some(cpu) = ctx.owner() {
                return Err(RunError::FpuBusy { cpu });
            }
            Ok(ctx.fxsave())
        }
    }

    /// Replace `ctx`'s legacy FXSAVE area (`rt_sigreturn`), see
    /// [`FpuContext::set_fxsave`]: in the live registers if this vCPU holds
    /// `ctx`, in its saved image otherwise.
    pub fn write_fxsave(&self, ctx: &FpuContext, fx: &[u8; FXSAVE_LEN]) -> Result<(), RunError> {
        if self.holds_fpu(ctx) {
            let mut x = self.fd.get_xsave().map_err(kvm_io)?;
            crate::fpu::put_legacy(&mut x, fx);
            // SAFETY: `x` is the complete image KVM_GET_XSAVE just returned
            // for this vCPU, with only its legacy fields and two XSTATE_BV
            // bits changed.
            unsafe { self.fd.set_xsave(&x) }.map_err(kvm_io)
        } else {
            ctx.set_fxsave(fx).map_err(|_| RunError::FpuBusy {
                cpu: ctx.owner().unwrap_or(usize::MAX),
            })
        }
    }

    /// A new context with `ctx`'s current state (fork): read from the live
    /// registers if this vCPU holds `ctx`. Nothing moves.
    pub fn fork_fpu(&self, ctx: &FpuContext) -> Result<FpuContext, RunError> {
        if self.holds_fpu(ctx) {
            let x = self.fd.get_xsave().map_err(kvm_io)?;
            Ok(FpuContext::from_image(Box::new(x)))
        } else if let Some(cpu) = ctx.owner() {
            Err(RunError::FpuBusy { cpu })
        } else {
            Ok(ctx.duplicate())
        }
    }

    /// Save the live FPU registers into their owner's context and give the
    /// context up, so that another vCPU can load it: call this before a vproc
    /// migrates to another vCPU, or before editing its context.
    pub fn release_fpu(&mut self) -> Result<(), RunError> {
        self.sync_fpu()?;
        if let Some(owner) = self.fpu_loaded.take() {
            owner.release_owner(self.index);
        }
        Ok(())
    }

    /// Move the FPU to `fpu_current`: save the owner's state, load the new.
    fn swap_fpu(&mut self) -> Result<(), RunError> {
        let cur = self.fpu_current.clone();
        if let Some(other) = cur.owner().filter(|o| *o != self.index) {
            return Err(RunError::FpuBusy { cpu: other });
        }
        self.release_fpu()?;
        cur.with_state(|s| {
            // SAFETY: `s` is a complete 4 KiB kvm_xsave image, either built by
            // FpuContext::new in the reset layout or saved by KVM_GET_XSAVE
            // from this kind of vCPU.
            unsafe { self.fd.set_xsave(s) }
        })
        .map_err(kvm_io)?;
        cur.take_owner(self.index);
        self.stats.fpu_restores += 1;
        self.fpu_loaded = Some(cur);
        Ok(())
    }

    /// Run the vproc described by `frame` in `vms` until it traps.
    ///
    /// Page faults the vpagetable can satisfy are resolved inside and never
    /// returned. On return `frame` holds the vproc's registers at the trap.
    pub fn run(&mut self, vms: &Vmspace, frame: &mut TrapFrame) -> Result<Trap, RunError> {
        if let Some(b) = &self.broken {
            return Err(RunError::Broken(b.clone()));
        }
        if !Arc::ptr_eq(&vms.shared.machine, &self.m) {
            return Err(RunError::WrongMachine);
        }
        // RSP is checked only where an entry returns to the vproc through
        // the stub's `iretq` (see `prepare_entry`): loaded directly, it is
        // an ordinary register until the vproc uses it.
        for (field, value) in [
            ("rip", frame.rip),
            ("fs_base", frame.fs_base),
            ("gs_base", frame.gs_base),
        ] {
            if !is_canonical(value) {
                return Err(RunError::BadFrame { field, value });
            }
        }
        if let Some(other) = self.fpu_current.owner().filter(|o| *o != self.index) {
            // Checked before anything changes, in both FPU modes.
            return Err(RunError::FpuBusy { cpu: other });
        }
        if self.kick_pending {
            self.kick_pending = false;
            self.kick.clear_immediate_exit(self.kicks_seen);
            self.stats.interrupts += 1;
            return Ok(Trap::Interrupted);
        }
        {
            let mut st = vms.lock();
            st.running |= 1 << self.index;
            if self.cur_vms != vms.shared.id {
                let pml4 = st.hw.as_ref().expect("live vmspace").pml4;
                self.new_cr3 = Some(self.m.sys_gpa + pml4);
                self.cur_vms = vms.shared.id;
                self.seen_gen = st.gen;
            }
            if !st.pending.is_empty() {
                self.queue.extend(st.pending.drain(..));
                self.seen_gen = st.gen;
            } else if self.seen_gen != st.gen {
                self.queue.push_back(abi::cmd(abi::CMD_FLUSH, 0, 0));
                self.seen_gen = st.gen;
            }
        }
        let owner = self
            .fpu_loaded
            .as_ref()
            .is_some_and(|l| l.same(&self.fpu_current));
        if !owner {
            match self.m.fpu_mode {
                FpuMode::Lazy if !self.ts_set => {
                    self.queue.push_back(abi::cmd(abi::CMD_SET_TS, 0, 0));
                    self.ts_set = true;
                }
                FpuMode::Lazy => {}
                FpuMode::Eager => self.swap_fpu()?,
            }
        } else if self.ts_set {
            // Back to the owner before anyone else used the FPU.
            self.queue.push_back(abi::cmd(abi::CMD_CLTS, 0, 0));
            self.ts_set = false;
        }
        if self.scrub_batch.is_none() && self.queue.len() < MB_MAX_CMDS {
            let mut pool = self.m.pool.lock().unwrap();
            if pool.has_scrub() {
                let mut v = Vec::new();
                self.scrub_batch = pool.take_scrub(MB_MAX_CMDS - self.queue.len(), &mut v);
                // First in line, so the first mailbox chunk carries all of it.
                for c in v.into_iter().rev() {
                    self.queue.push_front(c);
                }
            }
        }
        // The vproc is about to retry the access that last trapped: if the
        // vkernel fixed its vpagetable, install the entry now and save the
        // exit the retry would cost.
        if let Some((id, addr, access, rip)) = self.returned_fault.take() {
            if id == vms.shared.id && rip == frame.rip {
                let mut cmds = Vec::new();
                if vms.resolve(addr, access, &mut cmds).is_ok() {
                    self.stats.prefaults += 1;
                    self.queue.extend(cmds);
                }
            }
        }
        self.target = *frame;
        // SAFETY: pthread_self has no preconditions.
        self.kick.set_thread(Some(unsafe { libc::pthread_self() }));
        let r = self.run_loop(vms, frame);
        self.kick.set_thread(None);
        vms.lock().running &= !(1 << self.index);
        if let Err(e) = &r {
            if !matches!(
                e,
                RunError::FaultLoop { .. } | RunError::FpuBusy { .. } | RunError::BadFrame { .. }
            ) {
                self.broken = Some(e.to_string());
            }
        }
        r
    }

    fn sys_load(&self, off: u64) -> u64 {
        self.m
            .sys
            .load(off)
            .expect("per-vCPU area inside the system region")
    }

    fn sys_store(&self, off: u64, v: u64) {
        self.m
            .sys
            .store(off, v)
            .expect("per-vCPU area inside the system region")
    }

    fn user_rflags(f: &TrapFrame) -> u64 {
        (f.rflags & x86::RFLAGS_USER_MASK) | x86::RFLAGS_FIXED | x86::RFLAGS_IF
    }

    /// Set up registers, the iret frame and the mailbox for the next entry.
    /// Refuses (before changing anything the vCPU holds) an entry that
    /// must `iretq` to a non-canonical RSP: an emulated `iretq` (PVM-derived
    /// KVM) fails with an internal error there.
    fn prepare_entry(&mut self) -> Result<(), RunError> {
        let regs_before = self.fd.sync_regs().regs;
        let mb = self.top;
        // Commands a kicked entry never applied go first.
        let left = self.sys_load(mb + MB_NCMDS) as usize;
        if left > 0 {
            for i in (0..left.min(MB_MAX_CMDS)).rev() {
                let a = self.sys_load(mb + MB_CMDS + 16 * i as u64);
                let b = self.sys_load(mb + MB_CMDS + 16 * i as u64 + 8);
                self.queue.push_front([a, b]);
            }
            self.sys_store(mb + MB_NCMDS, 0);
        }
        let t = self.target;
        if (self.pos == Position::Kernel || !self.queue.is_empty()) && !is_canonical(t.rsp) {
            return Err(RunError::BadFrame {
                field: "rsp",
                value: t.rsp,
            });
        }
        let kcall = self.m.kcall_va();
        let (rip, rsp, rflags, regs_rip, regs_rsp);
        match self.pos {
            Position::Kernel => {
                let n = self.queue.len().min(MB_MAX_CMDS);
                for i in 0..n {
                    let [a, b] = self.queue.pop_front().unwrap();
                    self.sys_store(mb + MB_CMDS + 16 * i as u64, a);
                    self.sys_store(mb + MB_CMDS + 16 * i as u64 + 8, b);
                }
                self.sys_store(mb + MB_NCMDS, n as u64);
                if n > 0 && self.scrub_batch.is_some() {
                    self.scrub_in_mailbox = true;
                }
                self.bounce = !self.queue.is_empty();
                if self.bounce {
                    (rip, rsp, rflags) = (kcall, t.rsp, x86::RFLAGS_FIXED);
                } else {
                    (rip, rsp, rflags) = (t.rip, t.rsp, Self::user_rflags(&t));
                }
                crate::machine::write_user_iret_frame(&self.m.sys, self.index, rip, rflags, rsp);
                regs_rip = SYS_VA + STUB_OFF + self.m.offsets.resume;
                regs_rsp = SYS_VA + mb - ENTRY_FRAME_SIZE;
                rflags_set(&mut self.fd, x86::RFLAGS_FIXED);
            }
            Position::User => {
                self.bounce = !self.queue.is_empty();
                regs_rip = if self.bounce { kcall } else { t.rip };
                regs_rsp = t.rsp;
                rflags_set(&mut self.fd, Self::user_rflags(&t));
            }
        }
        let s = self.fd.sync_regs_mut();
        let r = &mut s.regs;
        r.rax = t.rax;
        r.rbx = t.rbx;
        r.rcx = t.rcx;
        r.rdx = t.rdx;
        r.rsi = t.rsi;
        r.rdi = t.rdi;
        r.rbp = t.rbp;
        r.r8 = t.r8;
        r.r9 = t.r9;
        r.r10 = t.r10;
        r.r11 = t.r11;
        r.r12 = t.r12;
        r.r13 = t.r13;
        r.r14 = t.r14;
        r.r15 = t.r15;
        r.rip = regs_rip;
        r.rsp = regs_rsp;
        let mut sdirty = false;
        if let Some(cr3) = self.new_cr3 {
            s.sregs.cr3 = cr3;
            sdirty = true;
        }
        if s.sregs.fs.base != t.fs_base {
            s.sregs.fs.base = t.fs_base;
            sdirty = true;
        }
        if s.sregs.gs.base != t.gs_base {
            s.sregs.gs.base = t.gs_base;
            sdirty = true;
        }
        // Writing registers is not free on every KVM (a PVM-derived one
        // reloads more state): only do it when something changed.
        if s.regs != regs_before || self.force_dirty {
            self.fd.set_sync_dirty_reg(SyncReg::Register);
        }
        if self.force_dirty {
            sdirty = true;
            self.force_dirty = false;
        }
        if sdirty {
            self.stats.sregs_loads += 1;
            self.fd.set_sync_dirty_reg(SyncReg::SystemRegister);
        }
        Ok(())
    }

    fn frame_from_regs(&self) -> TrapFrame {
        let s = self.fd.sync_regs();
        let r = s.regs;
        TrapFrame {
            rax: r.rax,
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            rbp: r.rbp,
            rsp: r.rsp,
            r8: r.r8,
            r9: r.r9,
            r10: r.r10,
            r11: r.r11,
            r12: r.r12,
            r13: r.r13,
            r14: r.r14,
            r15: r.r15,
            rip: r.rip,
            rflags: r.rflags,
            fs_base: s.sregs.fs.base,
            gs_base: s.sregs.gs.base,
        }
    }

    fn set_stepping(&mut self, on: bool) -> Result<(), RunError> {
        let dbg = kvm_guest_debug {
            control: if on {
                KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP
            } else {
                0
            },
            ..Default::default()
        };
        self.fd
            .set_guest_debug(&dbg)
            .map_err(|e| RunError::Kvm(std::io::Error::from_raw_os_error(e.errno())))?;
        self.stepping = on;
        Ok(())
    }

    fn run_loop(&mut self, vms: &Vmspace, frame: &mut TrapFrame) -> Result<Trap, RunError> {
        let mut need_entry = true;
        let top_va = SYS_VA + self.top;
        loop {
            if need_entry {
                self.prepare_entry()?;
            }
            need_entry = false;
            // What the vCPU holds before this run, and what it will hold
            // once the synced registers are applied: an interrupted run that
            // comes back in either state ran nothing of the guest.
            let entry_regs = self.fd.sync_regs().regs;
            let res = self.fd.run();
            self.stats.exits += 1;
            // Kicks up to here are answered by this exit.
            let kicks_at_exit = self.kick.kicks();

            // Did the stub apply the mailbox?
            let applied = self.m.sys.load(self.top + MB_NCMDS).unwrap_or(1) == 0;
            let exit = match res {
                Ok(VcpuExit::IoOut(port, _)) => Ok(Some(port)),
                Ok(VcpuExit::Debug(_)) => Ok(None),
                Ok(VcpuExit::Shutdown) => Err(RunError::Shutdown {
                    rip: self.fd.sync_regs().regs.rip,
                }),
                Ok(VcpuExit::InternalError) => {
                    // SAFETY: after KVM_EXIT_INTERNAL_ERROR the `internal`
                    // member of the exit union is the valid one.
                    let sub = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
                    Err(RunError::Internal {
                        suberror: sub,
                        rip: self.fd.sync_regs().regs.rip,
                    })
                }
                Ok(other) => Err(RunError::Unexpected(format!("{other:?}"))),
                Err(e) if e.errno() == libc::EINTR => Err(RunError::Kvm(
                    std::io::Error::from_raw_os_error(libc::EINTR),
                )),
                Err(e) if e.errno() == libc::EAGAIN => {
                    continue;
                }
                Err(e) => Err(RunError::Kvm(std::io::Error::from_raw_os_error(e.errno()))),
            };
            if applied && self.scrub_in_mailbox {
                self.scrub_in_mailbox = false;
                if let Some(b) = self.scrub_batch.take() {
                    self.m.pool.lock().unwrap().scrub_done(b);
                }
            }
            if exit.is_ok() {
                self.new_cr3 = None;
                self.exit_regs = self.fd.sync_regs().regs;
            }
            let port = match exit {
                Ok(p) => p,
                Err(RunError::Kvm(e)) if e.raw_os_error() == Some(libc::EINTR) => {
                    self.kicks_seen = kicks_at_exit;
                    self.kick.clear_immediate_exit(kicks_at_exit);
                    // KVM does not say whether it entered the guest before the
                    // signal (a PVM-derived KVM reports neither
                    // KVM_EXIT_INTR nor a difference): compare states.
                    let now = self.fd.sync_regs().regs;
                    // KVM completes the `out` of the last exit before it
                    // looks at immediate_exit, and that completion (an
                    // emulated PIO on PVM) may move rip past the `out` over
                    // the resume rip we wrote: the exit state with rip + 2
                    // is nothing having run too (seen as a vproc resumed at
                    // the trampoline's ud2, SIGILL, under load).
                    let completed_out = {
                        let mut e = self.exit_regs;
                        e.rip = e.rip.wrapping_add(2);
                        now == e
                    };
                    if now == entry_regs || now == self.exit_regs || completed_out {
                        // Nothing of the guest ran, and the registers and
                        // CR3 we wrote may not have been applied. Prepare
                        // everything again next time.
                        self.force_dirty = true;
                        if self.stepping {
                            continue;
                        }
                        self.stats.interrupts += 1;
                        *frame = self.target;
                        return Ok(Trap::Interrupted);
                    }
                    self.exit_regs = now;
                    self.new_cr3 = None;
                    let s = self.fd.sync_regs();
                    if s.sregs.cs.selector & 3 == 3
                        && self.bounce
                        && s.regs.rip == self.m.kcall_va()
                    {
                        // Stopped on the way into the stub: the vproc itself
                        // has not run. Its commands stay queued.
                        self.pos = Position::User;
                        self.stats.interrupts += 1;
                        *frame = self.target;
                        return Ok(Trap::Interrupted);
                    }
                    if s.sregs.cs.selector & 3 == 3 {
                        // Stopped in the vproc: its registers are live.
                        self.pos = Position::User;
                        self.target = self.frame_from_regs();
                        *frame = self.target;
                        self.stats.interrupts += 1;
                        return Ok(Trap::Interrupted);
                    }
                    if self.pos == Position::Kernel
                        && s.regs.rip == SYS_VA + STUB_OFF + self.m.offsets.resume
                        && s.regs.rsp == top_va - ENTRY_FRAME_SIZE
                        && !self.stepping
                    {
                        // Never entered (immediate exit): nothing ran.
                        // The entry is prepared again next time.
                        self.stats.interrupts += 1;
                        *frame = self.target;
                        return Ok(Trap::Interrupted);
                    }
                    // Kicked inside the stub: step until the vproc runs.
                    self.stats.kicks_in_stub += 1;
                    self.set_stepping(true)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(port) = port else {
                // A single-step exit. Arriving at the bounce address is not
                // the vproc running: step on into the stub.
                let s = self.fd.sync_regs();
                if s.sregs.cs.selector & 3 == 3 && !(self.bounce && s.regs.rip == self.m.kcall_va())
                {
                    self.set_stepping(false)?;
                    self.pos = Position::User;
                    self.target = self.frame_from_regs();
                    *frame = self.target;
                    self.stats.interrupts += 1;
                    return Ok(Trap::Interrupted);
                }
                continue;
            };
            if self.stepping {
                self.set_stepping(false)?;
                self.kick_pending = true;
            }
            match port {
                abi::PORT_EXCEPTION => {
                    let s = self.fd.sync_regs();
                    if s.regs.rsp != top_va - ENTRY_FRAME_SIZE {
                        return Err(RunError::StubFault {
                            vector: self.sys_load_checked(s.regs.rsp),
                            rip: s.regs.rip,
                            cr2: s.sregs.cr2,
                        });
                    }
                    let base = self.top - ENTRY_FRAME_SIZE;
                    let vector = self.sys_load(base);
                    let error_code = self.sys_load(base + 8);
                    let rip = self.sys_load(base + 16);
                    let cs = self.sys_load(base + 24);
                    let rflags = self.sys_load(base + 32);
                    let rsp = self.sys_load(base + 40);
                    if cs & 3 != 3 {
                        return Err(RunError::StubFault {
                            vector,
                            rip,
                            cr2: s.sregs.cr2,
                        });
                    }
                    self.pos = Position::Kernel;
                    let mut f = self.frame_from_regs();
                    f.rip = rip;
                    f.rsp = rsp;
                    f.rflags = rflags;
                    if vector == 7 && self.ts_set {
                        // The vproc's first FPU instruction: hand over.
                        self.stats.fpu_traps += 1;
                        self.swap_fpu()?;
                        self.queue.push_back(abi::cmd(abi::CMD_CLTS, 0, 0));
                        self.ts_set = false;
                        self.target = f;
                        need_entry = true;
                        continue;
                    }
                    if vector == 14 {
                        let addr = s.sregs.cr2;
                        if self.bounce && addr == self.m.kcall_va() {
                            // Entered the stub to apply commands; go on.
                            self.stats.bounces += 1;
                            need_entry = true;
                            continue;
                        }
                        let access = if error_code & PFEC_I != 0 {
                            Access::Execute
                        } else if error_code & PFEC_W != 0 {
                            Access::Write
                        } else {
                            Access::Read
                        };
                        let mut cmds = Vec::new();
                        match vms.resolve(addr, access, &mut cmds) {
                            Ok(()) => {
                                self.stats.resolved_faults += 1;
                                if self.last_fault.0 == addr {
                                    self.last_fault.1 += 1;
                                    if self.last_fault.1 >= FAULT_LOOP_MAX {
                                        self.last_fault = (u64::MAX, 0);
                                        self.target = f;
                                        *frame = f;
                                        return Err(RunError::FaultLoop {
                                            addr,
                                            count: FAULT_LOOP_MAX,
                                        });
                                    }
                                } else {
                                    self.last_fault = (addr, 1);
                                }
                                // The vproc's state is now the faulting
                                // frame: an interrupt before it resumes must
                                // report this, not the state at run().
                                self.target = f;
                                if !cmds.is_empty() {
                                    self.queue.extend(cmds);
                                    need_entry = true;
                                } else if !is_canonical(f.rsp) {
                                    // The stub's `iretq` would load it.
                                    *frame = f;
                                    return Err(RunError::BadFrame {
                                        field: "rsp",
                                        value: f.rsp,
                                    });
                                }
                                continue;
                            }
                            Err(reason) => {
                                self.last_fault = (u64::MAX, 0);
                                self.target = f;
                                *frame = f;
                                self.stats.page_faults += 1;
                                self.returned_fault = Some((vms.shared.id, addr, access, f.rip));
                                return Ok(Trap::PageFault {
                                    addr,
                                    access,
                                    reason,
                                });
                            }
                        }
                    }
                    self.target = f;
                    *frame = f;
                    self.stats.exceptions += 1;
                    return Ok(Trap::Exception {
                        vector: vector as u8,
                        error_code,
                    });
                }
                abi::PORT_SYSCALL => {
                    let mut f = self.frame_from_regs();
                    match self.m.path {
                        TrapPath::StaysInUserMode => self.pos = Position::User,
                        TrapPath::Standard => {
                            self.pos = Position::Kernel;
                            f.rsp = self.sys_load(self.top + MB_USER_RSP);
                        }
                    }
                    f.rip = f.rcx;
                    f.rflags = f.r11;
                    self.target = f;
                    *frame = f;
                    self.stats.syscalls += 1;
                    return Ok(Trap::Syscall);
                }
                p => {
                    return Err(RunError::Unexpected(format!(
                        "out to port {p:#x} at rip {:#x}",
                        self.fd.sync_regs().regs.rip
                    )))
                }
            }
        }
    }

    fn sys_load_checked(&self, va: u64) -> u64 {
        va.checked_sub(SYS_VA)
            .and_then(|off| self.m.sys.load(off & !7).ok())
            .unwrap_or(u64::MAX)
    }
}

fn kvm_io(e: kvm_ioctls::Error) -> RunError {
    RunError::Kvm(std::io::Error::from_raw_os_error(e.errno()))
}

fn rflags_set(fd: &mut VcpuFd, v: u64) {
    fd.sync_regs_mut().regs.rflags = v;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kick_handler_is_installed_and_checked() {
        install_kick_handler().expect("installing the kick handler succeeds");
        // Twice is fine: the first outcome is kept.
        install_kick_handler().expect("a second call reports the first outcome");
        // SAFETY: queries (does not change) the disposition into a zeroed
        // sigaction.
        let old = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            assert_eq!(
                libc::sigaction(kick_signal(), std::ptr::null(), &mut old),
                0
            );
            old
        };
        // Without the handler the first kick would kill the process.
        assert_eq!(old.sa_sigaction, on_kick as *const () as usize);
        assert_eq!(old.sa_flags & libc::SA_RESTART, 0, "KVM_RUN must see EINTR");
    }

    #[test]
    fn kick_signal_error_says_what_failed() {
        let e = MachineError::KickSignal {
            signo: 37,
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        };
        let s = e.to_string();
        assert!(s.contains("kick signal handler") && s.contains("37"), "{s}");
    }

    #[test]
    fn immediate_exit_view_is_the_kvm_run_byte() {
        // SAFETY: kvm_run is plain data; all zeroes is a valid value.
        let mut run: Box<kvm_run> = Box::new(unsafe { std::mem::zeroed() });
        let p: *mut kvm_run = &mut *run;
        // Several threads set the byte while this one clears it: every
        // access is atomic, and the byte ends as the last store left it.
        std::thread::scope(|s| {
            let addr = p as usize;
            for _ in 0..3 {
                s.spawn(move || {
                    for _ in 0..10_000 {
                        // SAFETY: `run` outlives the scope.
                        unsafe { immediate_exit(addr as *mut kvm_run) }.store(1, Ordering::SeqCst);
                    }
                });
            }
            for _ in 0..10_000 {
                // SAFETY: as above.
                unsafe { immediate_exit(p) }.store(0, Ordering::SeqCst);
            }
        });
        // SAFETY: as above; no other thread is left.
        unsafe { immediate_exit(p) }.store(1, Ordering::SeqCst);
        assert_eq!(run.immediate_exit, 1);
        assert_eq!(run.request_interrupt_window, 0, "only its own byte changes");
        // SAFETY: as above.
        unsafe { immediate_exit(p) }.store(0, Ordering::SeqCst);
        assert_eq!(run.immediate_exit, 0);
    }
}
