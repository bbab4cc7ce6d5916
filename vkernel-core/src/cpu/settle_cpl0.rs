//! Settling an exitless request when a kick stops a vCPU inside the CPL0
//! exitless syscall entry (`TrapPath::Standard`, VT-x/SVM hosts; see
//! [`crate::exitless`] and `vkstub_xentry_n` / `vkstub_xcommon` in
//! `vkernel_guest::stub`). The counterpart of `settle.rs` (the CPL3
//! trampoline of PVM-derived hosts).
//!
//! Left to run on, the entry could return to the vproc with `sysretq` and
//! no exit at all, so the kick would not be answered: the host settles the
//! request and returns the vproc's frame, where it must resume, with the
//! line free for whatever runs on this vCPU next. Where the vCPU stopped
//! (its RIP in the entry) and the line's state decide:
//! - before the request was posted: nothing was asked; rewind to the
//!   `syscall` (RIP = RCX - 2, RAX and RCX as they are);
//! - posted, not taken: take it back (compare-and-exchange), rewind (RAX
//!   and RCX from the line: the entry uses them as scratch once posted);
//! - taken by the server: wait for its answer (it never blocks), then as
//!   below;
//! - answered, or already taking the answer: complete it (RAX = the return
//!   value, RIP = RCX), exactly once;
//! - the server said "exit", or the entry took the request back itself:
//!   rewind (the `syscall` runs again and takes the exit).
//!
//! In every case the vproc's RSP is the one the entry saved in the mailbox
//! (or still in RSP, in the first two instructions of its per-vCPU entry),
//! its RFLAGS are R11 (the entry never touches R11) and its GS base is live
//! (the entry does no `swapgs`). The line is in the system region: the
//! vproc cannot write it, so what it holds is what the entry and the
//! server wrote.

use vkernel_guest::abi::{MB_USER_RSP, XS_ENTRY, XS_IDLE, XS_NR, XS_RCX, XS_RET, XS_STATE};
use vkernel_guest::layout::{cpu_xline_off, STUB_OFF, SYS_VA};
use vkernel_guest::stub::{StubOffsets, CPL0_XENTRY_SWITCHED};

use super::settle::Posted;
use super::Cpu;
use crate::machine::TrapPath;
use crate::trap::TrapFrame;

/// Where in the CPL0 exitless entry a vCPU stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Nothing posted yet: RAX and RCX are the call's.
    BeforePost,
    /// Posted: the line's state says what happened.
    Posted,
    /// On the exit path with the request taken back (state idle): RAX and
    /// RCX are being reloaded from the line.
    Exiting,
    /// Taking the server's answer.
    Answered,
}

impl Cpu {
    /// Is the CPL0 exitless entry this vCPU's `syscall` entry?
    pub(super) fn cpl0_exitless_on(&self) -> bool {
        self.m.exitless.is_some() && self.m.path == TrapPath::Standard
    }

    /// The guest-virtual range of the CPL0 exitless entry a kick settles
    /// (empty where it is not in use).
    pub(super) fn cpl0_exitless_range(&self) -> (u64, u64) {
        if !self.cpl0_exitless_on() {
            return (0, 0);
        }
        let o = &self.m.offsets;
        (
            SYS_VA + STUB_OFF + o.cpl0_xentries,
            SYS_VA + STUB_OFF + o.cpl0_xend,
        )
    }

    /// A kick found the vCPU with exactly the registers of the last exit
    /// (`Interruption::NothingRan`): did it run all the same? It can have:
    /// a settled request rewinds the vproc to its `syscall`, which posts
    /// the same call again and can be stopped at the same instruction of
    /// the spin with the same registers (the loop's counter and the state
    /// it read cycle through few values). A settle leaves the line idle,
    /// so a request in the line means the vCPU ran and posted it: it must
    /// be settled, or it would be answered by the server and then again
    /// when the rewound vproc runs (seen once in ~100,000 kicks in the SVM
    /// stage's storm). Where the vCPU really did not run, the line is idle
    /// and the frame of the last settle stands (settling the same state
    /// twice gives the same frame in every stage but one: an answer
    /// completed and the line freed).
    pub(super) fn cpl0_posted_since_settle(&self, now: &kvm_bindings::kvm_regs) -> bool {
        let (lo, hi) = self.cpl0_exitless_range();
        (lo..hi).contains(&now.rip)
            && self.sys_load(cpu_xline_off(self.index) + XS_STATE) != XS_IDLE
    }

    /// Settle the request of a vCPU a kick stopped inside the CPL0 exitless
    /// entry with registers `now` (see the module docs); returns the
    /// vproc's frame, as it must resume (through the stub's `iretq`).
    pub(super) fn settle_cpl0_exitless(&self, now: kvm_bindings::kvm_regs) -> TrapFrame {
        let mut f = self.frame_from_regs();
        let (stage, switched) = stage_at(&self.m.offsets, now.rip - (SYS_VA + STUB_OFF));
        if switched {
            f.rsp = self.sys_load(self.top + MB_USER_RSP);
        }
        f.rflags = f.r11;
        let line = cpu_xline_off(self.index);
        let load = |off: u64| self.sys_load(line + off);
        let set_idle = || self.sys_store(line + XS_STATE, XS_IDLE);
        let rewind = |f: &mut TrapFrame| f.rip = f.rcx.wrapping_sub(2);
        let from_line = |f: &mut TrapFrame| {
            f.rax = load(XS_NR);
            f.rcx = load(XS_RCX);
            rewind(f);
        };
        let complete = |f: &mut TrapFrame| {
            f.rax = load(XS_RET);
            f.rcx = load(XS_RCX);
            f.rip = f.rcx;
        };
        match stage {
            Stage::BeforePost => rewind(&mut f),
            Stage::Exiting => {
                from_line(&mut f);
                set_idle();
            }
            Stage::Answered => {
                complete(&mut f);
                set_idle();
            }
            Stage::Posted => {
                match self.settle_posted(line) {
                    Posted::Complete => complete(&mut f),
                    Posted::Rewind => from_line(&mut f),
                }
                set_idle();
            }
        }
        f
    }
}

/// The stage of the entry at stub offset `off` (inside the range a kick
/// settles), and whether RSP has been switched to the vCPU's stack.
fn stage_at(o: &StubOffsets, off: u64) -> (Stage, bool) {
    let switched =
        off >= o.cpl0_xcommon || (off - o.cpl0_xentries) % XS_ENTRY >= CPL0_XENTRY_SWITCHED;
    let stage = if off < o.cpl0_xposted {
        Stage::BeforePost
    } else if off < o.cpl0_xexit {
        Stage::Posted
    } else if off < o.cpl0_xdone {
        Stage::Exiting
    } else {
        Stage::Answered
    };
    (stage, switched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_of_the_cpl0_entry() {
        let o = vkernel_guest::stub::offsets();
        // Each per-vCPU entry: RSP is the vproc's for its first two
        // instructions (before and after it is saved), then switched.
        for n in [0, 1, 29] {
            let e = o.cpl0_xentries + XS_ENTRY * n;
            assert_eq!(stage_at(&o, e), (Stage::BeforePost, false));
            assert_eq!(stage_at(&o, e + 7), (Stage::BeforePost, false));
            assert_eq!(stage_at(&o, e + 14), (Stage::BeforePost, true));
        }
        assert_eq!(stage_at(&o, o.cpl0_xcommon), (Stage::BeforePost, true));
        assert_eq!(stage_at(&o, o.cpl0_xposted - 1), (Stage::BeforePost, true));
        assert_eq!(stage_at(&o, o.cpl0_xposted), (Stage::Posted, true));
        assert_eq!(stage_at(&o, o.cpl0_xexit - 1), (Stage::Posted, true));
        assert_eq!(stage_at(&o, o.cpl0_xexit), (Stage::Exiting, true));
        assert_eq!(stage_at(&o, o.cpl0_xdone), (Stage::Answered, true));
        assert_eq!(stage_at(&o, o.cpl0_xend - 1), (Stage::Answered, true));
    }
}
