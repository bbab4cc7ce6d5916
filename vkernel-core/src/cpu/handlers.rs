//! The run loop's handlers, one per kind of exit (see [`super::exit`]):
//! an interrupted run, a single step, an exception (FPU handoff, page
//! faults) and a syscall.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use vkernel_guest::abi::{self, MB_USER_RSP};
use vkernel_guest::layout::{ENTRY_FRAME_SIZE, SYS_VA};
use vkernel_guest::x86::{is_canonical, PFEC_I, PFEC_W};

use super::exit::{Interruption, Position, VEC_NM, VEC_PF, VEC_UD};
use super::fault_streak::FAULT_LOOP_MAX;
use super::{Cpu, Next, RunError};
use crate::machine::TrapPath;
use crate::trap::{Trap, TrapFrame};
use crate::vmspace::Vmspace;
use crate::walker::Access;

impl Cpu {
    /// A kick (EINTR): see [`Interruption`].
    pub(super) fn on_interrupted(
        &mut self,
        i: Interruption,
        now: kvm_bindings::kvm_regs,
        kicks_at_exit: u64,
        frame: &mut TrapFrame,
    ) -> Result<Next, RunError> {
        self.kicks_seen = kicks_at_exit;
        self.kick.clear_immediate_exit(kicks_at_exit);
        // Registers equal to the last exit's inside the CPL0 exitless
        // entry, with a request posted: it ran (see settle_cpl0.rs).
        // The same inside the CPL3 trampoline (where KVM keeps CPL3).
        let i = if i == Interruption::NothingRan && self.cpl0_posted_since_settle(&now) {
            Interruption::Cpl0Exitless
        } else if i == Interruption::NothingRan && self.cpl3_posted_since_settle(&now) {
            Interruption::InVproc
        } else {
            i
        };
        // An exception KVM has queued or begun delivering (a fetch fault
        // right after an invalidation, the bounce #PF at `kcall_va`) must
        // arrive before anything else: it belongs to this vproc, writing the
        // registers now would replace CR2 (which KVM already set for it)
        // with the stale value in the synced block, and an injected
        // exception survives register writes (the bounce #PF was delivered
        // with the next entry's frame: "page fault at kcall_va at rip of
        // the vproc"). Let it arrive; the kick is answered at its exit.
        if self.exception_on_its_way()? {
            if i != Interruption::NothingRan {
                self.exited(now);
            }
            self.kick_due.owe_at_next_exit();
            return Ok(Next::Resume);
        }
        if i == Interruption::NothingRan {
            // The registers and CR3 we wrote may not have been applied.
            // Prepare everything again next time.
            self.force_dirty = true;
            if self.kick_due.owed_at_next_exit() {
                return Ok(Next::Resume);
            }
            return Ok(self.drain_or_interrupted(frame));
        }
        self.exited(now);
        match i {
            Interruption::NothingRan | Interruption::NeverEntered => {
                return Ok(self.drain_or_interrupted(frame));
            }
            Interruption::BeforeBounce => {
                // The vproc itself has not run; its commands are still to
                // be applied.
                self.pos = Position::User;
                return Ok(self.drain_or_interrupted(frame));
            }
            Interruption::InVproc => {
                self.pos = Position::User;
                self.target = self.frame_from_regs();
                // An exception the vproc raised may be on its way in (KVM
                // queued it, then saw the signal; a fetch fault right after
                // an invalidation, say). It belongs to this vproc: returned
                // now, it would be delivered into whatever runs next here
                // (another vproc, which got a fault at the wrong address and
                // resumed at the bounce address: SIGSEGV). Let it arrive;
                // the kick is answered at the next run.
            }
            Interruption::StubExiting => {
                // It exits by itself in a few instructions; the kick is
                // answered there.
                self.stats.kicks_in_stub += 1;
                self.kick_due.owe_at_next_exit();
                return Ok(Next::Resume);
            }
            Interruption::Cpl0Exitless => {
                // Left to run on, it could return to the vproc with no
                // exit: settle its request here (settle_cpl0.rs) and
                // answer the kick now.
                self.stats.kicks_in_stub += 1;
                self.target = self.settle_cpl0_exitless(now);
                self.pos = Position::Kernel;
                return Ok(self.drain_or_interrupted(frame));
            }
            Interruption::StubResuming => {
                // Applying commands: however many are left, its `iretq`
                // goes to the bounce address instead of the vproc, and the
                // kick is answered there (two exits in all, no stepping).
                self.stats.kicks_in_stub += 1;
                if !self.bounce {
                    let kcall = self.m.kcall_va();
                    crate::machine::redirect_user_iret(&self.m.sys, self.index, kcall);
                    self.bounce = true;
                }
                self.kick_due.drain_first();
                return Ok(Next::Resume);
            }
        }
        Ok(self.interrupted(frame))
    }

    /// Has KVM queued or begun delivering an exception to the guest?
    fn exception_on_its_way(&self) -> Result<bool, RunError> {
        let ev = self.fd.get_vcpu_events().map_err(super::kvm_io)?;
        Ok(ev.exception.injected != 0 || ev.exception.pending != 0)
    }

    /// Answer a kick that came before the entry's commands were applied:
    /// apply them first (the stub bounces back to the host), because they
    /// may be the only copy of a vmspace's pending removals.
    pub(super) fn drain_or_interrupted(&mut self, frame: &mut TrapFrame) -> Next {
        if self.owes_commands() {
            self.kick_due.drain_first();
            return Next::Reenter;
        }
        self.interrupted(frame)
    }

    /// The vproc's `syscall` reached the trampoline.
    pub(super) fn on_syscall(&mut self, frame: &mut TrapFrame, exitless: bool) -> Next {
        let mut f = self.frame_from_regs();
        if exitless {
            self.stats.exitless_exits += 1;
        }
        if exitless && self.m.path == TrapPath::StaysInUserMode {
            // The exitless trampoline used R11 and kept the `syscall`'s
            // (the vproc's RFLAGS) in its request line: the vproc's own
            // memory, so only its user-settable bits count (`run` masks
            // them), and where the line is not one the vCPU's RFLAGS do.
            // (The CPL0 exitless entry leaves R11 alone.)
            f.r11 = self.saved_r11(f.r11).unwrap_or(f.rflags);
        }
        match self.m.path {
            TrapPath::StaysInUserMode => {
                self.pos = Position::User;
                self.after_tramp_out = true;
            }
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
        Next::Return(Trap::Syscall)
    }

    /// An exception reached the stub's handler: the FPU handoff (#NM), page
    /// faults (#PF), or a trap for the caller.
    pub(super) fn on_exception(
        &mut self,
        vms: &Vmspace,
        frame: &mut TrapFrame,
        vector: u64,
        after_tramp: bool,
    ) -> Result<Next, RunError> {
        let top_va = SYS_VA + self.top;
        let s = self.fd.sync_regs();
        if s.regs.rsp != top_va - ENTRY_FRAME_SIZE {
            return Err(RunError::StubFault {
                vector,
                rip: s.regs.rip,
                cr2: s.sregs.cr2,
            });
        }
        let cr2 = s.sregs.cr2;
        let base = self.top - ENTRY_FRAME_SIZE;
        let error_code = self.sys_load(base);
        let rip = self.sys_load(base + 8);
        let cs = self.sys_load(base + 16);
        let rflags = self.sys_load(base + 24);
        let rsp = self.sys_load(base + 32);
        if vector == VEC_UD
            && after_tramp
            && self.tramp_ud2s().contains(&rip)
            && self.clobber_retries < 4
        {
            // KVM completed the trampoline's `out` over the registers
            // written for this entry (PVM-derived hosts, rarely, under
            // load) and ran from the last exit's RIP into the `ud2` after
            // the `out`: at CPL3 with the vproc's exit state, or at CPL0
            // with the kernel's segments an entry straight from a
            // syscall's exit wrote (`enter_stub_for_commands`; its #UD
            // came on IST1). Neither a program nor the vproc ran: enter
            // again with the frame the vkernel meant (`self.target`; a
            // program's commands are queued again).
            self.pos = Position::Kernel;
            self.clobber_retries += 1;
            self.stats.clobbered_resumes += 1;
            return Ok(Next::Reenter);
        }
        if cs & 3 != 3 {
            return Err(RunError::StubFault { vector, rip, cr2 });
        }
        self.pos = Position::Kernel;
        let mut f = self.frame_from_regs();
        f.rip = rip;
        f.rsp = rsp;
        f.rflags = rflags;
        if vector == VEC_NM && self.ts_set {
            // The vproc's first FPU instruction: hand over.
            self.stats.fpu_traps += 1;
            self.swap_fpu()?;
            self.queue.push_back(abi::cmd(abi::CMD_CLTS, 0, 0));
            self.ts_set = false;
            self.target = f;
            return Ok(Next::Reenter);
        }
        if vector == VEC_PF {
            self.clobber_retries = 0;
            return self.on_page_fault(vms, f, error_code, cr2, frame);
        }
        self.clobber_retries = 0;
        self.target = f;
        *frame = f;
        self.stats.exceptions += 1;
        Ok(Next::Return(Trap::Exception {
            vector: vector as u8,
            error_code,
        }))
    }

    /// A page fault at `addr`: the bounce into the stub, one the
    /// vpagetable resolves (the vproc resumes), or a trap for the caller.
    pub(super) fn on_page_fault(
        &mut self,
        vms: &Vmspace,
        f: TrapFrame,
        error_code: u64,
        addr: u64,
        frame: &mut TrapFrame,
    ) -> Result<Next, RunError> {
        if self.bounce && addr == self.m.kcall_va() {
            // Entered the stub to apply commands; go on.
            self.stats.bounces += 1;
            if self.kick_due.drains() && self.queue.is_empty() {
                // Everything is applied: answer the kick.
                self.kick_due.drained();
                return Ok(self.interrupted(frame));
            }
            return Ok(Next::Reenter);
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
                if self.last_fault.resolved(vms.id(), addr, f.rip) {
                    self.target = f;
                    *frame = f;
                    return Err(RunError::FaultLoop {
                        addr,
                        count: FAULT_LOOP_MAX,
                    });
                }
                // The vproc's state is now the faulting frame: an interrupt
                // before it resumes must report this, not the state at run().
                self.target = f;
                if !cmds.is_empty() {
                    self.queue.extend(cmds);
                    return Ok(Next::Reenter);
                } else if !is_canonical(f.rsp) {
                    // The stub's `iretq` would load it.
                    *frame = f;
                    return Err(RunError::BadFrame {
                        field: "rsp",
                        value: f.rsp,
                    });
                }
                Ok(Next::Resume)
            }
            Err(reason) => {
                self.last_fault.clear();
                self.target = f;
                *frame = f;
                self.stats.page_faults += 1;
                self.returned_fault = Some((vms.shared.id, addr, access, f.rip));
                Ok(Next::Return(Trap::PageFault {
                    addr,
                    access,
                    reason,
                }))
            }
        }
    }
}
