//! vCPUs: running a vproc until it traps (the seed's `VMSPACE_CTL_RUN`), and
//! kicking a running vCPU out of the guest.
//!
//! One [`Cpu::run`] costs one `KVM_RUN` per trap and no other vCPU ioctl:
//! registers travel through KVM's synced register block (`kvm_run.s.regs`),
//! the entry frame and the mailbox through the system region.

use std::collections::VecDeque;
use std::sync::Arc;

use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};

use vkernel_guest::abi::{self, MB_MAX_CMDS, MB_NCMDS};
use vkernel_guest::layout::{
    cpu_stack_top_off, cpu_xline_off, IRET_FRAME_SIZE, STUB_OFF, SYS_VA, TRAMP_VA,
};
use vkernel_guest::x86::{self, is_canonical};

mod cpuid;
mod exit;
mod fault_streak;
mod fpu;
mod handlers;
mod kick_due;
mod program;
mod settle;
mod settle_cpl0;

use crate::fpu::{FpuContext, FpuMode, FXSAVE_LEN};
use crate::hwpt::Cmd;
use crate::kick::KickState;
pub use crate::kick::Kicker;
use crate::machine::MachineInner;
use crate::trap::{Trap, TrapFrame};
use crate::vmspace::Vmspace;
use crate::walker::Access;
pub use cpuid::{CpuidEntry, CpuidTable};
use exit::{classify, ExitKind, Expect, Position, RawExit, Snapshot};
use fault_streak::FaultStreak;
use kick_due::KickDue;
pub(crate) use program::write as write_program;

/// What the run loop does after handling an exit.
enum Next {
    /// Run again without preparing a new entry.
    Resume,
    /// Prepare a new entry (registers, mailbox commands), then run.
    Reenter,
    /// Return this trap to the caller.
    Return(Trap),
}

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
    /// Entries from user mode that went into the stub at CPL0 to apply
    /// commands and on to the vproc with no bounce exit (see
    /// `Cpu::enter_stub_for_commands`).
    pub stub_bounces: u64,
    /// Entries that had to load system registers (CR3, FS/GS base).
    pub sregs_loads: u64,
    /// FPU states saved from the vCPU (owner switches).
    pub fpu_saves: u64,
    /// FPU states loaded into the vCPU.
    pub fpu_restores: u64,
    /// #NM traps taken to hand the FPU over lazily.
    pub fpu_traps: u64,
    /// Kicks that landed while the vCPU executed stub code: the stub runs
    /// on to its exit (or, applying commands, its `iretq` is sent to the
    /// bounce address), and the kick is answered there: at most two more
    /// exits, however long the stub's work.
    pub kicks_in_stub: u64,
    /// Syscalls that took the exitless trampoline's exit path (no server
    /// awake, its budget ran out, or the server sent them to the exit).
    pub exitless_exits: u64,
    /// Resumes after a syscall that KVM ran from the exit state instead of
    /// the registers written for the entry (it completed the trampoline's
    /// `out` over them), caught at the trampoline's `ud2` and re-entered.
    pub clobbered_resumes: u64,
    /// Faults installed before resuming a vproc whose last PageFault the
    /// vkernel fixed (each saves one exit).
    pub prefaults: u64,
}

/// A vCPU. Move it to the thread that runs it.
pub struct Cpu {
    m: Arc<MachineInner>,
    index: usize,
    fd: VcpuFd,
    kick: Arc<KickState>,
    pos: Position,
    cur_vms: u64,
    /// CR3 of the last vmspace run here.
    cur_cr3: u64,
    /// CR3 to load; kept until an entry is known to have happened.
    new_cr3: Option<u64>,
    /// The last KVM_RUN returned before entering the guest: whether it
    /// applied the synced registers is not known, so write them all again.
    force_dirty: bool,
    /// The vCPU's GS base is the one it gave a vproc whose own is 0 (see
    /// [`Cpu::hw_gs_base`]).
    gs_masked: bool,
    /// Registers at the last real exit (what the vCPU holds if an entry's
    /// register writes were not applied).
    exit_regs: kvm_bindings::kvm_regs,
    seen_gen: u64,
    target: TrapFrame,
    queue: VecDeque<Cmd>,
    /// The commands of the mailbox program written for the last entry
    /// (queued again if a kicked entry never applied them).
    in_mailbox: Vec<Cmd>,
    /// RIP and RSP written for the last entry at CPL0 (an entry that
    /// never ran is still there).
    entry_at: (u64, u64),
    /// This entry goes to the bounce address (`kcall_va`) instead of the
    /// vproc: the stub applies the mailbox and comes straight back.
    bounce: bool,
    scrub_batch: Option<u64>,
    /// The mailbox holds the scrub batch (it went out with the last entry).
    scrub_in_mailbox: bool,
    /// Where the answer to the last kick stands (see `kick_due`).
    kick_due: KickDue,
    /// The kick count when the last interrupted KVM_RUN returned.
    kicks_seen: u64,
    /// The last real exit was the trampoline's syscall `out`.
    after_tramp_out: bool,
    /// Consecutive clobbered resumes re-entered (bounded).
    clobber_retries: u32,
    /// The exitless request page of the vmspace being run (while `run`
    /// runs, where exitless syscalls are on).
    running_slot: Option<u64>,
    /// Resolved faults at one place in a row (see [`fault_streak`]).
    last_fault: FaultStreak,
    /// The last PageFault returned: (vmspace, addr, access, rip).
    returned_fault: Option<(u64, u64, Access, u64)>,
    stats: CpuStats,
    fpu_current: FpuContext,
    fpu_loaded: Option<FpuContext>,
    ts_set: bool,
    broken: Option<String>,
    top: u64,
    /// KVM offers CPUID faulting here (None: not probed yet).
    cpuid_fault_supported: Option<bool>,
    /// CPUID faulting is on (see [`Cpu::set_cpuid_faulting`]).
    cpuid_fault_on: bool,
}

impl std::fmt::Debug for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cpu").field("index", &self.index).finish()
    }
}

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
            cur_cr3: 0,
            new_cr3: None,
            force_dirty: false,
            gs_masked: false,
            exit_regs: regs,
            seen_gen: 0,
            target: TrapFrame::default(),
            queue: VecDeque::new(),
            in_mailbox: Vec::new(),
            entry_at: (0, 0),
            bounce: false,
            scrub_batch: None,
            scrub_in_mailbox: false,
            kick_due: KickDue::Answered,
            kicks_seen: 0,
            after_tramp_out: false,
            clobber_retries: 0,
            running_slot: None,

            last_fault: FaultStreak::default(),
            returned_fault: None,
            stats: CpuStats::default(),
            fpu_current: FpuContext::new(),
            fpu_loaded: None,
            ts_set: false,
            broken: None,
            top: cpu_stack_top_off(index),
            cpuid_fault_supported: None,
            cpuid_fault_on: false,
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
        Kicker::new(self.kick.clone())
    }

    /// Keep the machine's exitless server polling for at least `d` from
    /// now (waking it if it sleeps), where the vproc about to run is known
    /// to make calls soon after a stretch without any: a fresh program's
    /// start. Nothing where the machine has no server.
    ///
    /// ```no_run
    /// # fn f(cpu: &vkernel_core::cpu::Cpu) {
    /// cpu.keep_exitless_awake(std::time::Duration::from_millis(5));
    /// # }
    /// ```
    pub fn keep_exitless_awake(&self, d: std::time::Duration) {
        if let Some(x) = &self.m.exitless {
            x.keep_awake(d);
        }
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
        self.last_fault.start_run(vms.id(), frame.rip);
        if self.kick_due.take_at_next_run() {
            self.kick.clear_immediate_exit(self.kicks_seen);
            self.stats.interrupts += 1;
            return Ok(Trap::Interrupted);
        }
        let slot = {
            let mut st = vms.lock();
            st.running |= 1 << self.index;
            let cr3 = self.m.sys_gpa + st.hw.as_ref().expect("live vmspace").pml4;
            if self.cur_vms != vms.shared.id || self.cur_cr3 != cr3 {
                // Another vmspace, or this one with new tables (reset_hw).
                self.new_cr3 = Some(cr3);
                self.cur_vms = vms.shared.id;
                self.cur_cr3 = cr3;
                self.seen_gen = st.gen;
                // And the guest reloads CR3 itself before the vproc runs. A
                // CR3 set from outside (KVM_SET_SREGS) is not a full flush
                // on a PVM-derived KVM: a vmspace whose entries another vCPU
                // removed or downgraded while it ran there kept stale
                // translations here, so a process that migrated back read
                // frames it no longer owned (busybox ash spinners died with
                // SIGSEGV or "stack smashing detected" beside a forking
                // shell; tests/linux_spin.rs). One emulated `mov cr3` per
                // switch (~1 µs) is the price.
                self.queue.push_back(abi::cmd(abi::CMD_FLUSH, 0, 0));
            }
            if !st.pending.is_empty() {
                self.queue.extend(st.pending.drain(..));
                self.seen_gen = st.gen;
            } else if self.seen_gen != st.gen {
                self.queue.push_back(abi::cmd(abi::CMD_FLUSH, 0, 0));
                self.seen_gen = st.gen;
            }
            st.slot
        };
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
            // Scrubs are not urgent: carried by an entry through the stub,
            // they cost no exit of their own.
            if pool.has_scrub() && (self.pos == Position::Kernel || pool.scrub_urgent()) {
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
        if let (Some(x), Some(page)) = (&self.m.exitless, slot) {
            x.enter(self.index, page);
            self.running_slot = Some(page);
        }
        if let Some(x) = self.m.exitless.as_ref().filter(|_| self.cpl0_exitless_on()) {
            x.enter_line(self.index, cpu_xline_off(self.index));
        }
        let r = self.run_loop(vms, frame);
        if let Some(x) = &self.m.exitless {
            x.leave(self.index);
            self.running_slot = None;
        }
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
        if self.sys_load(mb + MB_NCMDS) != 0 {
            for c in self.in_mailbox.drain(..).rev() {
                self.queue.push_front(c);
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
        self.enter_stub_for_commands();
        let kcall = self.m.kcall_va();
        let (rip, rsp, rflags, regs_rip, regs_rsp);
        let mut program_at = None;
        match self.pos {
            Position::Kernel => {
                let n = self.queue.len().min(MB_MAX_CMDS);
                self.in_mailbox.clear();
                self.in_mailbox.extend(self.queue.drain(..n));
                // Owing an interrupt, return to the host once the stub has
                // applied the mailbox instead of to the vproc.
                self.bounce = !self.queue.is_empty() || self.kick_due.drains();
                if self.bounce {
                    (rip, rsp, rflags) = (kcall, t.rsp, x86::RFLAGS_FIXED);
                } else {
                    (rip, rsp, rflags) = (t.rip, t.rsp, Self::user_rflags(&t));
                }
                crate::machine::write_user_iret_frame(&self.m.sys, self.index, rip, rflags, rsp);
                if n > 0 {
                    let rsi;
                    (regs_rip, regs_rsp, rsi) = self.write_program(&t);
                    program_at = Some(rsi);
                } else {
                    // Without commands the stub runs one instruction: `iretq`.
                    regs_rip = SYS_VA + STUB_OFF + self.m.offsets.iret;
                    regs_rsp = SYS_VA + mb - IRET_FRAME_SIZE;
                }
                rflags_set(&mut self.fd, x86::RFLAGS_FIXED);
            }
            Position::User => {
                // Commands `enter_stub_for_commands` left to a bounce (a
                // switch to another vmspace, a kick waiting): the vCPU goes
                // to the bounce address, the stub applies them and comes
                // back, and the host enters again.
                let n = self.queue.len();
                self.bounce = n > 0;
                regs_rip = if n > 0 { kcall } else { t.rip };
                regs_rsp = t.rsp;
                rflags_set(&mut self.fd, Self::user_rflags(&t));
            }
        }
        let gs = self.hw_gs_base(t.gs_base);
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
        if let Some(at) = program_at {
            r.rsi = at;
        }
        self.entry_at = (regs_rip, regs_rsp);
        let mut sdirty = false;
        if let Some(cr3) = self.new_cr3 {
            s.sregs.cr3 = cr3;
            sdirty = true;
        }
        if s.sregs.fs.base != t.fs_base {
            s.sregs.fs.base = t.fs_base;
            sdirty = true;
        }
        if s.sregs.gs.base != gs {
            s.sregs.gs.base = gs;
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
            gs_base: self.vproc_gs_base(s.sregs.gs.base),
        }
    }

    /// Does this vCPU give a vproc that never set a GS base of its own
    /// the base patched call sites find their line through (see
    /// [`crate::exitless`])?
    fn gs_masks(&self) -> bool {
        self.running_slot.is_some() && self.m.path == crate::machine::TrapPath::StaysInUserMode
    }

    /// The GS base the vCPU gets for a vproc whose own is `v`:
    /// `abi::xs_gs_base` where the vproc never set one.
    fn hw_gs_base(&mut self, v: u64) -> u64 {
        self.gs_masked = self.gs_masks() && v == 0;
        if self.gs_masked {
            abi::xs_gs_base(self.index)
        } else {
            v
        }
    }

    /// The vproc's GS base, from the vCPU's: 0 while it is the one
    /// [`Cpu::hw_gs_base`] gave for 0 (a vproc that set that small value
    /// itself keeps it).
    fn vproc_gs_base(&self, hw: u64) -> u64 {
        if self.gs_masked && hw == abi::xs_gs_base(self.index) {
            0
        } else {
            hw
        }
    }

    fn run_loop(&mut self, vms: &Vmspace, frame: &mut TrapFrame) -> Result<Trap, RunError> {
        let mut need_entry = true;
        self.kick_due.reset();
        loop {
            if need_entry {
                self.prepare_entry()?;
            }
            // What the vCPU holds before this run, and what it will hold
            // once the synced registers are applied: an interrupted run that
            // comes back in either state ran nothing of the guest.
            let entry = self.fd.sync_regs().regs;
            let raw = self.enter();
            self.stats.exits += 1;
            // Kicks up to here are answered by this exit.
            let kicks_at_exit = self.kick.kicks();
            // Did the stub apply the mailbox?
            let applied = self.m.sys.load(self.top + MB_NCMDS).unwrap_or(1) == 0;
            let snap = Snapshot {
                entry,
                last_exit: self.exit_regs,
                now: self.fd.sync_regs().regs,
                user_mode: self.fd.sync_regs().sregs.cs.selector & 3 == 3,
            };
            let kind = classify(&raw, &snap, &self.expect());
            if kind == ExitKind::Retry {
                need_entry = false;
                continue;
            }
            if applied && self.scrub_in_mailbox {
                self.scrub_in_mailbox = false;
                if let Some(b) = self.scrub_batch.take() {
                    self.m.pool.lock().unwrap().scrub_done(b);
                }
            }
            let owed =
                !matches!(kind, ExitKind::Interrupted(_)) && self.kick_due.owed_at_next_exit();
            let next = match kind {
                ExitKind::Interrupted(i) => {
                    self.on_interrupted(i, snap.now, kicks_at_exit, frame)?
                }
                ExitKind::Exception(vector) => {
                    let after_tramp = self.after_tramp_out;
                    self.exited(snap.now);
                    self.on_exception(vms, frame, vector, after_tramp)?
                }
                ExitKind::Syscall => {
                    self.exited(snap.now);
                    self.on_syscall(frame, false)
                }
                ExitKind::XSyscall => {
                    self.exited(snap.now);
                    if let Some(x) = &self.m.exitless {
                        x.wake();
                    }
                    self.on_syscall(frame, true)
                }
                ExitKind::UnknownPort(port) => {
                    self.exited(snap.now);
                    return Err(RunError::Unexpected(format!(
                        "out to port {port:#x} at rip {:#x}",
                        snap.now.rip
                    )));
                }
                ExitKind::Retry => Next::Resume,
                ExitKind::Shutdown => return Err(RunError::Shutdown { rip: snap.now.rip }),
                ExitKind::InternalError(suberror) => {
                    return Err(RunError::Internal {
                        suberror,
                        rip: snap.now.rip,
                    })
                }
                ExitKind::Unexpected(what) => return Err(RunError::Unexpected(what)),
                ExitKind::Failed(errno) => {
                    return Err(RunError::Kvm(std::io::Error::from_raw_os_error(errno)))
                }
            };
            // A kick that found the stub on its way out is answered now:
            // the vproc has not run since.
            let next = match next {
                Next::Return(trap) if owed => {
                    self.kick_due.answer_at_next_run();
                    Next::Return(trap)
                }
                Next::Resume | Next::Reenter if owed => {
                    self.kick_due.exit_came();
                    self.drain_or_interrupted(frame)
                }
                n => n,
            };
            match next {
                Next::Resume => need_entry = false,
                Next::Reenter => need_entry = true,
                Next::Return(trap) => return Ok(trap),
            }
        }
    }

    /// One KVM_RUN, reduced to what [`classify`] needs.
    fn enter(&mut self) -> RawExit {
        match self.fd.run() {
            Ok(VcpuExit::IoOut(port, _)) => RawExit::Out(port),
            Ok(VcpuExit::Shutdown) => RawExit::Shutdown,
            Ok(VcpuExit::InternalError) => {
                // SAFETY: after KVM_EXIT_INTERNAL_ERROR the `internal`
                // member of the exit union is the valid one.
                RawExit::InternalError(unsafe {
                    self.fd.get_kvm_run().__bindgen_anon_1.internal.suberror
                })
            }
            Ok(other) => RawExit::Other(format!("{other:?}")),
            Err(e) => RawExit::Errno(e.errno()),
        }
    }

    /// What this entry was set up for.
    fn expect(&self) -> Expect<'_> {
        Expect {
            pos: self.pos,
            bounce: self.bounce,
            kcall: self.m.kcall_va(),
            resume_rip: self.entry_at.0,
            resume_rsp: self.entry_at.1,
            stub_exiting: &self.m.stub_exiting,
            clobbered_rips: self.tramp_ud2s(),
            cpl0_exitless: self.cpl0_exitless_range(),
        }
    }

    /// A real exit: the entry's writes (CR3 above all) were applied.
    fn exited(&mut self, now: kvm_bindings::kvm_regs) {
        self.new_cr3 = None;
        self.exit_regs = now;
        self.after_tramp_out = false;
    }

    /// Where the `ud2`s after the trampolines' syscall `out`s are (zeros
    /// where syscalls enter CPL0).
    fn tramp_ud2s(&self) -> [u64; 3] {
        if self.m.path != crate::machine::TrapPath::StaysInUserMode {
            return [0; 3];
        }
        let o = &self.m.offsets;
        [
            TRAMP_VA + o.tramp_syscall + 2,
            TRAMP_VA + o.xout + 2,
            TRAMP_VA + o.xslow + 2,
        ]
    }

    /// Return `Trap::Interrupted` with the vproc's state as last known.
    /// Commands not yet applied: queued, or in the mailbox of an entry that
    /// never ran. They must be applied before `run` returns: they may belong
    /// to the vmspace's `pending` (drained only by the vCPU that runs it),
    /// and the vproc may next run on another vCPU, whose entry would not
    /// carry them (a forked parent then wrote through its stale writable
    /// entries into frames its child shares copy-on-write).
    fn owes_commands(&self) -> bool {
        !self.queue.is_empty() || self.sys_load(self.top + MB_NCMDS) != 0
    }

    fn interrupted(&mut self, frame: &mut TrapFrame) -> Next {
        self.stats.interrupts += 1;
        // A vproc stopped inside the exitless trampoline leaves with its
        // request settled (see settle.rs).
        let mut f = self.target;
        self.settle_exitless(&mut f);
        *frame = f;
        self.target = f;
        Next::Return(Trap::Interrupted)
    }
}

fn kvm_io(e: kvm_ioctls::Error) -> RunError {
    RunError::Kvm(std::io::Error::from_raw_os_error(e.errno()))
}

fn rflags_set(fd: &mut VcpuFd, v: u64) {
    fd.sync_regs_mut().regs.rflags = v;
}
