//! What a return from `KVM_RUN` means: a pure classifier from what KVM
//! returned, the vCPU's registers and where the host left the vCPU to a
//! kind of exit ([`ExitKind`]). [`crate::cpu::Cpu`]'s run loop then calls
//! one handler per kind (interrupted run, single step, exception, syscall).
//! Nothing here touches KVM, so every rule is unit-tested without it.

use kvm_bindings::kvm_regs;
use vkernel_guest::abi;

/// #NM (device not available): a vproc's first FPU instruction while CR0.TS
/// is set (lazy FPU handoff).
pub(crate) const VEC_NM: u64 = 7;
/// #PF (page fault).
pub(crate) const VEC_PF: u64 = 14;
/// #UD (invalid opcode).
pub(crate) const VEC_UD: u64 = 6;

/// Where the host left the vCPU for the next entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Position {
    /// CPL0 in the stub at the resume point, RSP = stack top - 56.
    Kernel,
    /// CPL3 with the vproc's registers live (quirk syscall exit or a kick).
    User,
}

/// What `KVM_RUN` returned, reduced to what the classifier needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RawExit {
    /// KVM_EXIT_IO, an `out` to this port (the stub's trampolines).
    Out(u16),
    /// KVM_EXIT_SHUTDOWN (triple fault).
    Shutdown,
    /// KVM_EXIT_INTERNAL_ERROR with this suberror.
    InternalError(u32),
    /// Any other exit, described.
    Other(String),
    /// `KVM_RUN` failed with this errno (EINTR: a kick).
    Errno(i32),
}

/// The vCPU's registers around one `KVM_RUN`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Snapshot {
    /// What the vCPU would hold once the synced registers written for this
    /// entry are applied.
    pub entry: kvm_regs,
    /// What it held at the last real exit (if the entry's writes were not
    /// applied).
    pub last_exit: kvm_regs,
    /// What it holds now.
    pub now: kvm_regs,
    /// CS.RPL is 3 now.
    pub user_mode: bool,
}

/// What the host set up for the entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Expect<'a> {
    /// Where the entry started.
    pub pos: Position,
    /// The entry detours through the stub (at `kcall`) to apply commands.
    pub bounce: bool,
    /// The stub's kernel-call address (the bounce target).
    pub kcall: u64,
    /// RIP of a CPL0 entry into the stub (the mailbox program's first op,
    /// or the bare `iretq`).
    pub resume_rip: u64,
    /// RSP of that entry (the iret frame, or the registers the program
    /// saves below it).
    pub resume_rsp: u64,
    /// Where the stub is on its way out to the host (each vector up to its
    /// `out`; the CPL0 syscall entry up to its `out`): half-open
    /// guest-virtual ranges. Elsewhere in the stub it is on its way back.
    pub stub_exiting: &'a [(u64, u64)],
    /// Where a vproc lands when KVM completes a trampoline's syscall `out`
    /// over the registers written for the entry (the `ud2` after each; 0
    /// where unused, and where syscalls enter CPL0): no vproc code runs
    /// from there.
    pub clobbered_rips: [u64; 3],
    /// The CPL0 exitless entry's code a kick settles (half-open; empty
    /// where unused): the vproc's syscall, posted or about to be.
    pub cpl0_exitless: (u64, u64),
}

/// Where a kick (EINTR) found the vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interruption {
    /// Nothing of the guest ran: the registers are as written for the
    /// entry, as at the last exit, or as at the last exit with its `out`
    /// completed (rip + 2: KVM completes the last exit's `out` before it
    /// looks at `immediate_exit`, and on PVM that may move rip past the
    /// resume rip we wrote). The entry's writes may not have been applied.
    NothingRan,
    /// At CPL3 at the bounce address on the way into the stub: the vproc
    /// has not run; its commands stay queued.
    BeforeBounce,
    /// At CPL3 in the vproc: its registers are live.
    InVproc,
    /// At the stub's resume point, never entered (immediate exit).
    NeverEntered,
    /// Inside the stub on its way out to the host: let it exit, then
    /// answer the kick.
    StubExiting,
    /// Inside the stub on its way back to the vproc (applying commands):
    /// its `iretq` is redirected to the bounce address, so it comes back
    /// to the host once the commands are applied, before the vproc runs.
    StubResuming,
    /// Inside the CPL0 exitless syscall entry (before its exit): the host
    /// settles the request (`Cpu::settle_cpl0_exitless`); left to run on,
    /// it could return to the vproc without an exit.
    Cpl0Exitless,
}

/// The kinds of exit the run loop handles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ExitKind {
    /// EAGAIN: run again as is.
    Retry,
    /// Exception vector N reached the stub (`abi::PORT_VECTOR_BASE` + N).
    Exception(u64),
    /// The syscall trampoline (`abi::PORT_SYSCALL`).
    Syscall,
    /// The exitless trampoline's exit path (`abi::PORT_XSYSCALL`).
    XSyscall,
    /// An `out` to a port nobody uses.
    UnknownPort(u16),
    /// A kick (EINTR).
    Interrupted(Interruption),
    /// Triple fault.
    Shutdown,
    /// KVM could not emulate something.
    InternalError(u32),
    /// An exit the stub never causes.
    Unexpected(String),
    /// `KVM_RUN` failed with this errno.
    Failed(i32),
}

/// Classify one return from `KVM_RUN`.
pub(crate) fn classify(raw: &RawExit, s: &Snapshot, e: &Expect) -> ExitKind {
    match raw {
        RawExit::Out(p) if (abi::PORT_VECTOR_BASE..abi::PORT_VECTOR_BASE + 32).contains(p) => {
            ExitKind::Exception(u64::from(*p - abi::PORT_VECTOR_BASE))
        }
        RawExit::Out(abi::PORT_SYSCALL) => ExitKind::Syscall,
        RawExit::Out(abi::PORT_XSYSCALL) => ExitKind::XSyscall,
        RawExit::Out(p) => ExitKind::UnknownPort(*p),
        RawExit::Shutdown => ExitKind::Shutdown,
        RawExit::InternalError(sub) => ExitKind::InternalError(*sub),
        RawExit::Other(what) => ExitKind::Unexpected(what.clone()),
        RawExit::Errno(libc::EINTR) => ExitKind::Interrupted(classify_interruption(s, e)),
        RawExit::Errno(libc::EAGAIN) => ExitKind::Retry,
        RawExit::Errno(errno) => ExitKind::Failed(*errno),
    }
}

/// KVM does not say whether it entered the guest before the kick's signal
/// (a PVM-derived KVM reports neither KVM_EXIT_INTR nor a difference):
/// compare states.
fn classify_interruption(s: &Snapshot, e: &Expect) -> Interruption {
    let completed_out = {
        let mut x = s.last_exit;
        x.rip = x.rip.wrapping_add(2);
        s.now == x
    };
    let clobbered = s.user_mode && s.now.rip != 0 && e.clobbered_rips.contains(&s.now.rip);
    if s.now == s.entry || s.now == s.last_exit || completed_out || clobbered {
        Interruption::NothingRan
    } else if s.user_mode && e.bounce && s.now.rip == e.kcall {
        Interruption::BeforeBounce
    } else if s.user_mode {
        Interruption::InVproc
    } else if e.pos == Position::Kernel && s.now.rip == e.resume_rip && s.now.rsp == e.resume_rsp {
        Interruption::NeverEntered
    } else if (e.cpl0_exitless.0..e.cpl0_exitless.1).contains(&s.now.rip) {
        Interruption::Cpl0Exitless
    } else if e
        .stub_exiting
        .iter()
        .any(|&(lo, hi)| (lo..hi).contains(&s.now.rip))
    {
        Interruption::StubExiting
    } else {
        Interruption::StubResuming
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KCALL: u64 = 0xffff_8000_0000_1000;
    const RESUME: u64 = 0xffff_8000_0000_2000;
    const RESUME_RSP: u64 = 0xffff_8000_0001_0000;

    fn regs(rip: u64, rsp: u64, rax: u64) -> kvm_regs {
        kvm_regs {
            rip,
            rsp,
            rax,
            ..Default::default()
        }
    }

    const VECTORS: u64 = 0xffff_8000_0000_1000;
    const TRAMP_UD2: u64 = 0x7fff_ffff_f002;
    const EXITING: &[(u64, u64)] = &[(VECTORS, VECTORS + 0x200), (SYSCALL, SYSCALL + 0x10)];
    const SYSCALL: u64 = 0xffff_8000_0000_1800;
    const XENTRY: u64 = 0xffff_8000_0000_1a00;

    fn expect(pos: Position) -> Expect<'static> {
        Expect {
            pos,
            bounce: false,
            kcall: KCALL,
            resume_rip: RESUME,
            resume_rsp: RESUME_RSP,
            stub_exiting: EXITING,
            clobbered_rips: [TRAMP_UD2, 0, 0],
            cpl0_exitless: (XENTRY, XENTRY + 0x400),
        }
    }

    fn snap(now: kvm_regs, user_mode: bool) -> Snapshot {
        Snapshot {
            entry: regs(RESUME, RESUME_RSP, 1),
            last_exit: regs(0x40_1000, 0x7fff_0000, 2),
            now,
            user_mode,
        }
    }

    fn intr(s: &Snapshot, e: &Expect) -> ExitKind {
        classify(&RawExit::Errno(libc::EINTR), s, e)
    }

    #[test]
    fn trampoline_ports_and_failures() {
        let s = snap(regs(0, 0, 0), false);
        let e = expect(Position::Kernel);
        let c = |r| classify(&r, &s, &e);
        assert_eq!(
            c(RawExit::Out(abi::PORT_VECTOR_BASE + 14)),
            ExitKind::Exception(14)
        );
        assert_eq!(
            c(RawExit::Out(abi::PORT_VECTOR_BASE + 32)),
            ExitKind::UnknownPort(abi::PORT_VECTOR_BASE + 32)
        );
        assert_eq!(c(RawExit::Out(abi::PORT_SYSCALL)), ExitKind::Syscall);
        assert_eq!(c(RawExit::Out(abi::PORT_XSYSCALL)), ExitKind::XSyscall);
        assert_eq!(c(RawExit::Out(0x3f8)), ExitKind::UnknownPort(0x3f8));
        assert_eq!(c(RawExit::Errno(libc::EAGAIN)), ExitKind::Retry);
        assert_eq!(
            c(RawExit::Errno(libc::EFAULT)),
            ExitKind::Failed(libc::EFAULT)
        );
        assert_eq!(c(RawExit::Shutdown), ExitKind::Shutdown);
        assert_eq!(c(RawExit::InternalError(1)), ExitKind::InternalError(1));
        assert_eq!(
            c(RawExit::Other("Hlt".into())),
            ExitKind::Unexpected("Hlt".into())
        );
    }

    #[test]
    fn a_kick_before_anything_ran_is_nothing_ran() {
        let e = expect(Position::Kernel);
        let s0 = snap(regs(0, 0, 0), false);
        // As written for the entry.
        let s = snap(s0.entry, false);
        assert_eq!(
            intr(&s, &e),
            ExitKind::Interrupted(Interruption::NothingRan)
        );
        // As at the last exit (the writes were not applied), even at CPL3.
        let s = snap(s0.last_exit, true);
        assert_eq!(
            intr(&s, &e),
            ExitKind::Interrupted(Interruption::NothingRan)
        );
        // The last exit's `out` completed: rip + 2, nothing else changed.
        let mut done = s0.last_exit;
        done.rip += 2;
        let s = snap(done, true);
        assert_eq!(
            intr(&s, &e),
            ExitKind::Interrupted(Interruption::NothingRan)
        );
        // rip + 2 with another register changed: the guest ran.
        done.rax += 1;
        let s = snap(done, true);
        assert_eq!(intr(&s, &e), ExitKind::Interrupted(Interruption::InVproc));
        // At the trampoline's `ud2` with the written registers: KVM
        // completed the syscall `out` over the entry; the vproc never ran.
        let s = snap(regs(TRAMP_UD2, 0x7fff_0000, 1), true);
        assert_eq!(
            intr(&s, &e),
            ExitKind::Interrupted(Interruption::NothingRan)
        );
    }

    #[test]
    fn a_kick_in_the_vproc_or_on_the_way_to_the_bounce() {
        let mut e = expect(Position::User);
        let s = snap(regs(KCALL, 0x7fff_0000, 5), true);
        assert_eq!(intr(&s, &e), ExitKind::Interrupted(Interruption::InVproc));
        e.bounce = true;
        assert_eq!(
            intr(&s, &e),
            ExitKind::Interrupted(Interruption::BeforeBounce)
        );
        let s = snap(regs(0x40_2000, 0x7fff_0000, 5), true);
        assert_eq!(intr(&s, &e), ExitKind::Interrupted(Interruption::InVproc));
    }

    #[test]
    fn a_kick_at_cpl0_is_never_entered_or_in_the_stub() {
        let e = expect(Position::Kernel);
        // At the resume point with other registers than written: the
        // immediate exit came before the entry.
        let s = snap(regs(RESUME, RESUME_RSP, 9), false);
        assert_eq!(
            intr(&s, &e),
            ExitKind::Interrupted(Interruption::NeverEntered)
        );
        // Applying commands on the way back to the vproc.
        let s = snap(regs(RESUME + 8, RESUME_RSP, 9), false);
        assert_eq!(
            intr(&s, &e),
            ExitKind::Interrupted(Interruption::StubResuming)
        );
        // An entry from CPL3 that stopped at the resume point at CPL0.
        let s = snap(regs(RESUME, RESUME_RSP, 9), false);
        assert_eq!(
            intr(&s, &expect(Position::User)),
            ExitKind::Interrupted(Interruption::StubResuming)
        );
        // In a vector or the CPL0 syscall entry: on the way out.
        for rip in [VECTORS, VECTORS + 0x1f0, SYSCALL, SYSCALL + 8] {
            let s = snap(regs(rip, RESUME_RSP - 8, 9), false);
            assert_eq!(
                intr(&s, &e),
                ExitKind::Interrupted(Interruption::StubExiting),
                "{rip:#x}"
            );
        }
        let s = snap(regs(SYSCALL + 0x10, RESUME_RSP, 9), false);
        assert_eq!(
            intr(&s, &e),
            ExitKind::Interrupted(Interruption::StubResuming)
        );
    }

    #[test]
    fn a_kick_in_the_cpl0_exitless_entry_is_settled_by_the_host() {
        let e = expect(Position::Kernel);
        for rip in [XENTRY, XENTRY + 7, XENTRY + 0x3ff] {
            let s = snap(regs(rip, RESUME_RSP, 9), false);
            assert_eq!(
                intr(&s, &e),
                ExitKind::Interrupted(Interruption::Cpl0Exitless),
                "{rip:#x}"
            );
        }
        // Past the range (its exit `out`, listed as exiting, or elsewhere).
        let s = snap(regs(XENTRY + 0x400, RESUME_RSP, 9), false);
        assert_eq!(
            intr(&s, &e),
            ExitKind::Interrupted(Interruption::StubResuming)
        );
        // Where unused, the range is empty.
        let e = Expect {
            cpl0_exitless: (0, 0),
            ..expect(Position::Kernel)
        };
        let s = snap(regs(XENTRY, RESUME_RSP, 9), false);
        assert_eq!(
            intr(&s, &e),
            ExitKind::Interrupted(Interruption::StubResuming)
        );
    }

    #[test]
    fn single_steps_are_unexpected() {
        let s = snap(regs(RESUME + 8, RESUME_RSP, 0), false);
        assert!(matches!(
            classify(
                &RawExit::Other("Debug".into()),
                &s,
                &expect(Position::Kernel)
            ),
            ExitKind::Unexpected(_)
        ));
    }
}
