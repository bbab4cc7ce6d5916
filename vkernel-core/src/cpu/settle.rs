//! Settling an exitless request when a kick stops its vproc inside the
//! exitless trampoline (see [`crate::exitless`]): the vproc leaves `run`
//! in a state that needs nothing more from the server, so the request line
//! is free for whatever runs on this vCPU next.
//!
//! Where the vproc stopped (its RIP in the trampoline) and the line's state
//! decide:
//! - before the request was posted, or in the exit taken with no server:
//!   nothing was asked; rewind to the `syscall` (RIP = RCX - 2; a patched
//!   site's stub keeps a real `syscall` there too);
//! - posted, not taken: take it back (compare-and-exchange), rewind;
//! - taken by the server: wait for its answer (it never blocks), then as
//!   below;
//! - answered: complete it (RAX = the return value, RIP = RCX), exactly
//!   once;
//! - the server said "exit", or the trampoline took the request back
//!   itself: rewind (the `syscall` runs again and takes the exit).
//!
//! The line is the vproc's own memory: what it holds is used only to give
//! the vproc its registers back.

use vkernel_guest::abi::{
    XS_DONE, XS_IDLE, XS_LINE, XS_NR, XS_POSTED, XS_R11, XS_RCX, XS_RET, XS_STATE, XS_TAKEN,
};
use vkernel_guest::layout::{PAGE_SIZE, SLOT_VA, TRAMP_VA};
use vkernel_guest::x86::is_canonical;

use super::Cpu;
use crate::trap::TrapFrame;

/// How a posted request a kick interrupted ends (see
/// [`Cpu::settle_posted`]).
pub(super) enum Posted {
    /// Answered: the vproc resumes after its call with the answer.
    Complete,
    /// Not answered: the vproc is rewound to its `syscall`.
    Rewind,
}

impl Cpu {
    /// The system-region offset of the request line at `line_va` (the
    /// trampoline's R11) of the vmspace being run, if that is a line.
    fn line_at(&self, line_va: u64) -> Option<u64> {
        let page = self.running_slot?;
        ((SLOT_VA..SLOT_VA + PAGE_SIZE).contains(&line_va)
            && (line_va - SLOT_VA).is_multiple_of(XS_LINE))
        .then(|| page + (line_va - SLOT_VA))
    }

    /// The R11 (RFLAGS) a `syscall` saved in the request line at `line_va`
    /// (the trampoline's R11), if that is a line.
    pub(super) fn saved_r11(&self, line_va: u64) -> Option<u64> {
        let line = self.line_at(line_va)?;
        self.m.sys.load(line + XS_R11).ok()
    }

    /// Registers `now` equal to the last exit's, inside the trampoline's
    /// exitless code with the line holding a request: the vproc ran (it
    /// posted the same call again after a settled kick and a second kick
    /// stopped it at the same instruction with the same registers, which
    /// the classifier reads as "nothing ran"). A settle always leaves the
    /// line idle, so a request there is new.
    pub(super) fn cpl3_posted_since_settle(&self, now: &kvm_bindings::kvm_regs) -> bool {
        let o = &self.m.offsets;
        let at = |off: u64| TRAMP_VA + off;
        self.running_slot.is_some()
            && (at(o.xposted)..at(o.xend)).contains(&now.rip)
            && self
                .line_at(now.r11)
                .is_some_and(|line| self.m.sys.load(line + XS_STATE) != Ok(XS_IDLE))
    }

    /// Wait out a request posted in the line at system-region offset
    /// `line` whose vproc a kick stopped: take it back (POSTED to IDLE), or
    /// wait for the server's answer (TAKEN: it never blocks). The caller
    /// then completes or rewinds the vproc from the line and makes the line
    /// idle. Shared by the trampoline's settle and the CPL0 entry's.
    pub(super) fn settle_posted(&self, line: u64) -> Posted {
        loop {
            match self.m.sys.load(line + XS_STATE).unwrap_or(XS_IDLE) {
                XS_POSTED => {
                    if self.m.sys.cas(line + XS_STATE, XS_POSTED, XS_IDLE) == Ok(true) {
                        return Posted::Rewind;
                    }
                }
                XS_TAKEN => std::thread::yield_now(),
                XS_DONE => return Posted::Complete,
                // "Exit", taken back by the entry itself, or garbage.
                _ => return Posted::Rewind,
            }
        }
    }

    /// Settle the exitless request of a vproc stopped at `f` (see the
    /// module docs); `f` is left as the vproc must resume.
    pub(super) fn settle_exitless(&self, f: &mut TrapFrame) {
        if self.running_slot.is_none() {
            return;
        }
        let o = &self.m.offsets;
        let at = |off: u64| TRAMP_VA + off;
        // The per-vCPU entries, then a patched site's entry (`pentry`),
        // then the common code: stopped anywhere before `xposted`, nothing
        // is posted. A vproc stopped in vCPU n's entry must be rewound too:
        // resumed there on another vCPU, it would post into line n, which
        // belongs to whatever runs on vCPU n (it did: a thread got another
        // thread's gettid, 1 run in 10 of 4 threads on 2 vCPUs).
        if !(at(o.xentries)..at(o.xend)).contains(&f.rip) {
            return;
        }
        // The line the trampoline chose (R11), if it is one.
        let line = self.line_at(f.r11);
        let rewind = |f: &mut TrapFrame| {
            f.rip = resume_at(f.rcx.wrapping_sub(2));
        };
        if f.rip < at(o.xposted) || (at(o.xslow)..at(o.xdone)).contains(&f.rip) {
            // Nothing posted (or no server): RAX and RCX are the call's.
            rewind(f);
            return;
        }
        let Some(line) = line else {
            // A vproc that jumped in with a garbage R11: leave it as it is.
            return;
        };
        let load = |off: u64| self.m.sys.load(line + off).unwrap_or(0);
        let from_line = |f: &mut TrapFrame| {
            f.rax = load(XS_NR);
            f.rcx = load(XS_RCX);
            f.rip = resume_at(f.rcx.wrapping_sub(2));
        };
        let complete = |f: &mut TrapFrame| {
            f.rax = load(XS_RET);
            f.rcx = load(XS_RCX);
            f.r11 = load(XS_R11);
            f.rip = resume_at(f.rcx);
        };
        let set_idle = || {
            let _ = self.m.sys.store(line + XS_STATE, XS_IDLE);
        };
        if f.rip >= at(o.xdone) {
            // Answered, and already taking the answer.
            complete(f);
            set_idle();
            return;
        }
        if f.rip >= at(o.xexit) {
            // On the exit path with the request taken back.
            from_line(f);
            set_idle();
            return;
        }
        match self.settle_posted(line) {
            Posted::Complete => complete(f),
            // "Exit", taken back, or garbage the vproc wrote: the call
            // runs again.
            Posted::Rewind => from_line(f),
        }
        set_idle();
    }
}

/// A resume address: non-canonical values (a vproc that wrote garbage in
/// its line) become 0, where it faults.
fn resume_at(rip: u64) -> u64 {
    if is_canonical(rip) {
        rip
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn states_are_distinct() {
        use super::*;
        use vkernel_guest::abi::XS_EXIT;
        let s = [XS_IDLE, XS_POSTED, XS_TAKEN, XS_DONE, XS_EXIT];
        for (i, a) in s.iter().enumerate() {
            for b in &s[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
