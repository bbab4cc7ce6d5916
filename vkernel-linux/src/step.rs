//! One trap of a vproc and the signals that follow: [`Vproc::step`] runs
//! it on a vCPU until it traps and handles the trap (a syscall through
//! [`crate::syscalls`], a page fault through [`crate::mm`], an exception
//! as the signal Linux sends); [`Vproc::deliver_pending`] delivers what is
//! pending. The run loop (`kernel::cpu_loop`) calls both.

use crate::core::prelude::*;
use crate::signal::{self, SigInfo};
use crate::syscalls::compat32;
use crate::{canonical, is_canonical, kernel, mm, ExitStatus, Step, Vproc, VprocError};

/// How long the exitless server stays awake for a program just loaded
/// (its start makes no call for a while, then many: static glibc asks
/// `cpuid` 38 times first, 0.7-1.5 ms on our hosts, longer than the
/// server's 1 ms idle timer).
const FRESH_IMAGE_AWAKE: std::time::Duration = std::time::Duration::from_millis(5);

impl Vproc {
    /// Run the vproc until its next trap and handle it (a syscall, a fault,
    /// an exception; a fault's signal is delivered). What the run loop
    /// does next is its own: a syscall's [`Next`], then the pending
    /// signals ([`Vproc::deliver_pending`]).
    pub fn step(&mut self, cpu: &mut Cpu) -> Result<Step, VprocError> {
        {
            let f = &self.frame;
            // Only what the vCPU could not load is refused: a user rip (a
            // kernel-half one faults anyway), canonical FS/GS bases (any,
            // as wrfsbase/wrgsbase allow). RSP is a plain register until
            // used: Linux does not look at it, nor does the vkernel.
            if !canonical(f.rip) || !is_canonical(f.fs_base) || !is_canonical(f.gs_base) {
                let info = SigInfo {
                    signo: signal::SIGSEGV,
                    code: 0x80,
                    ..Default::default()
                };
                self.force_signal(cpu, info);
                return Ok(Step::Ran);
            }
            let before = self.frame;
            cpu.set_fpu(&self.fpu);
            // The stub pages, read while the process lock is held (reading
            // the memory map takes it: after `leave_kernel` that would keep
            // it for the whole stay, and the server could serve nothing).
            let stub_pages: Vec<u64> = self.mm.patches().stub_pages().collect();
            // A learning process's `cpuid`s come here (`answer_cpuid`).
            let learn = self.mm.patches().cpuid_learning()
                && self.ptrace.is_none()
                && !self.trace
                && self.k.as_ref().is_some_and(|k| k.learn_cpuid);
            cpu.set_cpuid_faulting(learn);
            // Other threads of the process may enter the kernel while this
            // one runs (see `thread`).
            self.leave_kernel();
            // --trace logs every call: the exit path serves them all then.
            let fast = self
                .k
                .as_ref()
                .filter(|k| k.fast.enabled() && !self.trace && self.ptrace.is_none())
                .cloned();
            if let Some(k) = &fast {
                k.fast
                    .publish(cpu.index(), self.fast_ctx(stub_pages, cpu.index()));
                if std::mem::take(&mut self.fresh_image) {
                    cpu.keep_exitless_awake(FRESH_IMAGE_AWAKE);
                }
            }
            // The server takes the process lock with a try: held through
            // the stay, it could serve no call that needs the process.
            debug_assert!(
                fast.is_none() || !self.mm.held(),
                "the process lock is held while the vproc runs"
            );
            let ran = cpu.run(self.mm.vmspace(), &mut self.frame);
            let back = fast.and_then(|k| k.fast.withdraw(cpu.index()));
            let to_patch = back.map(|c| self.take_back(c)).unwrap_or_default();
            self.enter_kernel();
            for (ret, nr) in to_patch {
                self.patch_site(ret, nr);
            }
            let trap = match ran {
                Ok(Trap::Interrupted) => {
                    // Defensive: never keep a frame the CPU cannot load.
                    if !canonical(self.frame.rip) {
                        self.frame = before;
                    }
                    Trap::Interrupted
                }
                Ok(t) => t,
                Err(RunError::BadFrame { field: "rsp", .. }) => {
                    // Returning to a non-canonical RSP through the stub's
                    // iretq would break the vCPU (the syscall path resumes
                    // without it): the vproc gets the #GP's SIGSEGV.
                    self.force_signal(
                        cpu,
                        SigInfo {
                            signo: signal::SIGSEGV,
                            code: 0x80,
                            trapno: 13,
                            ..Default::default()
                        },
                    );
                    return Ok(Step::Ran);
                }
                Err(RunError::FaultLoop { addr, .. }) => {
                    self.force_signal(
                        cpu,
                        SigInfo {
                            signo: signal::SIGSEGV,
                            code: 2,
                            addr,
                            trapno: 14,
                            ..Default::default()
                        },
                    );
                    return Ok(Step::Ran);
                }
                Err(e) => return Err(e.into()),
            };
            Ok(match trap {
                Trap::Syscall => {
                    self.syscalls += 1;
                    if self.ptrace.is_some() && self.trace_syscall_entry() {
                        Step::TraceEntry
                    } else {
                        Step::Syscall(self.syscall(cpu))
                    }
                }
                Trap::PageFault { addr, access, .. } => match self.vsyscall(addr, access) {
                    Some(()) => {
                        self.syscalls += 1;
                        Step::Syscall(self.syscall(cpu))
                    }
                    None => {
                        self.page_fault(cpu, addr, access);
                        Step::Ran
                    }
                },
                Trap::Exception {
                    vector: 13,
                    error_code: 0,
                } if self.insn_at_rip() == CPUID => {
                    // CPUID faulting: answered (or, if it cannot be, run
                    // again under KVM with faulting off).
                    if self.answer_cpuid(cpu) && self.frame.rflags & TF != 0 {
                        // As after the instruction: the single step's trap.
                        self.exception(cpu, 1, 0);
                    }
                    Step::Ran
                }
                Trap::Exception { vector, error_code }
                    if compat32::is_int80(vector, error_code, self.insn_at_rip()) =>
                {
                    self.syscalls += 1;
                    Step::Syscall(self.syscall32(cpu))
                }
                Trap::Exception { vector, error_code } => {
                    self.exception(cpu, vector, error_code);
                    Step::Ran
                }
                Trap::Interrupted => Step::Interrupted,
            })
        }
    }

    /// A call into the legacy vsyscall page (0xffffffffff600000: old
    /// binaries and Java call gettimeofday, time and getcpu there), which
    /// no vmspace maps: as Linux's default (`vsyscall=xonly`) emulates it,
    /// an instruction fetch at one of its three entries becomes that
    /// syscall, returning to the caller (the return address is popped, as
    /// the entry's `ret` would). Some(()) when the frame is set up for the
    /// call; None for any other fault.
    fn vsyscall(&mut self, addr: u64, access: Access) -> Option<()> {
        const VSYSCALL: u64 = 0xffff_ffff_ff60_0000;
        if access != Access::Execute || addr & !0xfff != VSYSCALL || self.frame.rip != addr {
            return None;
        }
        let nr = match addr & 0xfff {
            0 => 96,      // gettimeofday
            0x400 => 201, // time
            0x800 => 309, // getcpu
            _ => return None,
        };
        let mut ret = [0u8; 8];
        self.mm.read(self.frame.rsp, &mut ret).ok()?;
        self.frame.rip = u64::from_le_bytes(ret);
        self.frame.rsp += 8;
        self.frame.rax = nr;
        Some(())
    }

    /// A page fault the vpagetable could not satisfy: the memory manager
    /// resolves it (a file page, copy-on-write, a stack growing) or the
    /// vproc gets SIGSEGV/SIGBUS as Linux would send.
    fn page_fault(&mut self, cpu: &Cpu, addr: u64, access: Access) {
        if let Err(sig) = self.mm.handle_fault(addr, access) {
            let (signo, code) = match sig {
                mm::FaultSignal::MapErr => (signal::SIGSEGV, 1),
                mm::FaultSignal::AccErr => (signal::SIGSEGV, 2),
                mm::FaultSignal::Oom => {
                    vk_eprintln!(
                        "vkernel: out of RAM frames at {addr:#x}; run with a larger --mem"
                    );
                    (signal::SIGBUS, 2)
                }
                // BUS_ADRERR: past the end of a mapped file.
                mm::FaultSignal::Bus => (signal::SIGBUS, 2),
            };
            let err = match access {
                Access::Read => 4,
                Access::Write => 6,
                Access::Execute => 0x14,
            };
            self.fault_signal(
                cpu,
                SigInfo {
                    signo,
                    code,
                    addr,
                    trapno: 14,
                    err,
                    ..Default::default()
                },
            );
        }
    }

    /// What the exitless server needs of this vproc while it runs on vCPU
    /// `cpu` (`stub_pages`: its process's, read before the process lock
    /// went).
    fn fast_ctx(&self, stub_pages: Vec<u64>, cpu: usize) -> kernel::fast::FastCtx {
        kernel::fast::FastCtx {
            pid: self.pid,
            tgid: self.thread.tgid,
            process: self.mm.lock_handle(),
            sig: self.sig_flag.clone(),
            fs: self.fs.clone(),
            stdio: self.stdio.clone(),
            blocked: self.sig.blocked,
            pending: self
                .sig
                .pending
                .iter()
                .fold(0, |m, p| m | signal::bit(p.signo)),
            alone: !self.threaded(),
            retry: self.pending_call.is_some(),
            to_patch: Vec::new(),
            stub_pages,
            clear_child_tid: None,
            robust_list: None,
            comm: crate::syscalls::prctl::name_bytes(&self.comm),
            renamed: false,
            exe: self.exe.clone(),
            cpu,
        }
    }

    /// Take back what the server changed in the context `c` (the blocked
    /// mask, set_tid_address, set_robust_list, PR_SET_NAME): the sites it
    /// queued for patching.
    fn take_back(&mut self, c: kernel::fast::FastCtx) -> Vec<(u64, u64)> {
        self.sig.blocked = c.blocked;
        if let Some(t) = c.clear_child_tid {
            self.clear_child_tid = t;
        }
        if let Some(h) = c.robust_list {
            self.thread.robust_list = h;
        }
        if c.renamed {
            self.comm = crate::syscalls::prctl::name_from(&c.comm);
        }
        c.to_patch
    }

    /// An exception the vproc raised: the signal Linux sends for it.
    fn exception(&mut self, cpu: &Cpu, vector: u8, error_code: u64) {
        let (vector, error_code) = match user_gate(vector, error_code, self.insn_at_rip()) {
            Some((v, len)) => {
                // As through Linux's DPL3 gate: a trap, rip after it.
                self.frame.rip = self.frame.rip.wrapping_add(len);
                (v, 0)
            }
            None => (vector, error_code),
        };
        let rip = self.frame.rip;
        let (signo, code, addr) = match vector {
            0 => (signal::SIGFPE, 1, rip),
            16 | 19 => (signal::SIGFPE, 0, rip),
            6 => (signal::SIGILL, 2, rip),
            // A single step's #DB is TRAP_TRACE; int3 is SI_KERNEL.
            1 => (signal::SIGTRAP, 2, rip),
            3 => (signal::SIGTRAP, 0x80, 0),
            12 | 17 => (signal::SIGBUS, 0x80, 0),
            _ => (signal::SIGSEGV, 0x80, 0),
        };
        self.fault_signal(
            cpu,
            SigInfo {
                signo,
                code,
                addr,
                trapno: vector as u64,
                err: error_code,
                ..Default::default()
            },
        );
    }

    /// The first two bytes of the instruction at rip (zeros if they cannot
    /// be read).
    fn insn_at_rip(&mut self) -> [u8; 2] {
        let mut b = [0u8; 2];
        if self.mm.read(self.frame.rip, &mut b).is_err() {
            b = [0; 2];
        }
        b
    }

    /// Deliver a synchronous signal (a fault): a blocked or ignored one
    /// kills, as on Linux.
    pub fn force_signal(&mut self, cpu: &Cpu, info: SigInfo) {
        let s = info.signo;
        let act = self.sig.actions[s as usize];
        if self.sig.blocked & signal::bit(s) != 0 || act.handler == signal::SIG_IGN {
            self.sig.actions[s as usize].handler = signal::SIG_DFL;
            self.sig.blocked &= !signal::bit(s);
        }
        if self.traced() {
            // Its tracer sees it first (a signal-delivery-stop).
            self.sig.pending.insert(0, info);
            return;
        }
        if self.sig.actions[s as usize].handler == signal::SIG_DFL {
            // Linux's `show_unhandled_signals` line: what a bug report needs.
            log::warn!(
                target: crate::diag::TARGET,
                "pid {} ({}): unhandled signal {s} code {} at {:#x} ip {:#x} sp {:#x} error {:#x} trap {}",
                self.pid,
                self.comm,
                info.code,
                info.addr,
                self.frame.rip,
                self.frame.rsp,
                info.err,
                info.trapno
            );
        }
        // A fault's signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP) is
        // never a stop signal.
        let stop = self.deliver(cpu, info);
        debug_assert!(stop.is_none(), "a forced signal stopped the vproc");
    }

    /// Queue a signal (kill, raise, SIGPIPE): a standard one once, each
    /// real-time one ([`signal::enqueue`]). False if the queue is full.
    pub fn queue_signal(&mut self, info: SigInfo) -> bool {
        signal::enqueue(&mut self.sig.pending, info)
    }

    /// Deliver the pending signals that are not blocked, until one ends
    /// the vproc ([`Vproc::exit`]) or stops it: then the stop signal, for
    /// the run loop to stop the process (a waiting call stays rewound and
    /// is retried after SIGCONT), or, for a traced vproc, the signal it
    /// stops for before delivery (its tracer decides what is delivered).
    #[must_use = "a stop signal's default action is the caller's to carry out"]
    pub fn deliver_pending(&mut self, cpu: &Cpu) -> Option<kernel::Halt> {
        while self.exit.is_none() {
            let accept = !self.sig.blocked | signal::bit(signal::SIGKILL);
            let i = signal::next_index(&self.sig.pending, accept)?;
            let info = self.sig.pending.remove(i);
            if info.signo != signal::SIGKILL && self.traced() {
                if self.pending_call.is_some() {
                    self.back_at_pending_call();
                    if let Some(stop) = self.trace_interrupted_call() {
                        self.sig.pending.insert(0, info);
                        return Some(kernel::Halt::Trace(stop));
                    }
                }
                let stop = self.trace_halt(kernel::ptrace::Stop::Signal(info));
                return Some(kernel::Halt::Trace(stop));
            }
            if let Some(stop) = self.deliver(cpu, info) {
                return Some(kernel::Halt::Stop(stop));
            }
        }
        None
    }

    /// Deliver `info`: its handler's frame, or its default action (the
    /// end of the vproc, or the stop signal returned).
    pub(crate) fn deliver(&mut self, cpu: &Cpu, info: SigInfo) -> Option<i32> {
        let s = info.signo;
        let act = self.sig.actions[s as usize];
        if s == signal::SIGKILL || act.handler == signal::SIG_DFL {
            if s != signal::SIGKILL && signal::default_action(s) == signal::Default_::Ignore {
                return None;
            }
            if s != signal::SIGKILL && signal::is_stop(s) {
                return Some(s);
            }
            self.death = Some(format!(
                "killed by {} (si_code {}, address {:#x}) at rip {:#x}",
                signal::name(s),
                info.code,
                info.addr,
                self.frame.rip
            ));
            self.exit = Some(ExitStatus::Signaled(s));
            return None;
        }
        if act.handler == signal::SIG_IGN {
            return None;
        }
        // A waiting call ends (EINTR, bytes moved) or restarts.
        self.back_at_pending_call();
        if let Some(p) = self.pending_call.take() {
            self.interrupt_call(p, act.flags & signal::SA_RESTART != 0);
        }
        // After rt_sigsuspend the handler returns to the mask before it.
        let old = self.saved_mask.take().unwrap_or(self.sig.blocked);
        let mut frame = self.frame;
        match signal::setup_frame(
            &mut self.mm,
            cpu,
            &self.fpu,
            &mut frame,
            &act,
            &info,
            old,
            &self.sig,
        ) {
            Ok(()) => {
                self.frame = frame;
                let mut add = act.mask;
                if act.flags & signal::SA_NODEFER == 0 {
                    add |= signal::bit(s);
                }
                self.sig.blocked |=
                    add & !(signal::bit(signal::SIGKILL) | signal::bit(signal::SIGSTOP));
                if act.flags & signal::SA_RESETHAND != 0 {
                    self.sig.actions[s as usize].handler = signal::SIG_DFL;
                }
            }
            Err(_) => {
                // No room for the frame: the vproc dies with SIGSEGV.
                self.death = Some(format!(
                    "killed by SIGSEGV: no room for the {} frame at rsp {:#x}",
                    signal::name(s),
                    self.frame.rsp
                ));
                self.exit = Some(ExitStatus::Signaled(signal::SIGSEGV));
            }
        }
        None
    }
}

/// The `cpuid` instruction.
const CPUID: [u8; 2] = [0x0f, 0xa2];
/// RFLAGS.TF.
const TF: u64 = 1 << 8;

/// The #GP error code's bit saying the selector is an IDT gate.
const GP_IDT: u64 = 2;

/// `int3` (`cc`) or `int $3` (`cd 03`) at CPL3 meets the machine's DPL0
/// gate 3 and raises #GP on a host that checks the gate's DPL (VT-x/SVM;
/// PVM delivers #BP itself). Linux's gate 3 is DPL3: the breakpoint is a
/// #BP trap. Returns #BP's vector and the length of the instruction to
/// step over, or None for any other exception. Only the IDT bit of the
/// error code is looked at, not the gate's index: under QEMU's nested SVM
/// (the CI's SVM stage) an `int3` arrives as #GP with error code 0x32
/// (gate 6), not 0x1a; a #GP naming an IDT gate with `cc` at rip can only
/// be the `int3`.
fn user_gate(vector: u8, error_code: u64, insn: [u8; 2]) -> Option<(u8, u64)> {
    if vector != 13 || error_code & GP_IDT == 0 {
        return None;
    }
    match insn {
        [0xcc, _] => Some((3, 1)),
        [0xcd, 0x03] => Some((3, 2)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakpoints_through_a_dpl0_gate_are_breakpoints() {
        assert_eq!(user_gate(13, 0x1a, [0xcc, 0x90]), Some((3, 1)));
        assert_eq!(user_gate(13, 0x1a, [0xcd, 0x03]), Some((3, 2)));
        assert_eq!(user_gate(13, 0x32, [0xcc, 0x90]), Some((3, 1)));
        // Another vector's gate, another instruction, another exception.
        assert_eq!(user_gate(13, 0x22, [0xcd, 0x04]), None);
        assert_eq!(user_gate(13, 0x1a, [0x0f, 0x05]), None);
        assert_eq!(user_gate(13, 0, [0xcc, 0x90]), None);
        assert_eq!(user_gate(3, 0, [0xcc, 0x90]), None);
    }
}
