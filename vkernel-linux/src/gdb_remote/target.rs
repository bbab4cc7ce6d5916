//! The debugged process as gdbstub's target: registers from the parked
//! threads' trap frames and FXSAVE images, memory through the process's
//! memory map (writes into read-only text go to a private copy, as with
//! ptrace), the threads the stub traces, resume and single-step per
//! thread, the auxiliary vector (gdb finds a PIE's load address and the
//! dynamic loader's with it), and gdb's `kill`.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use gdbstub::common::{Signal, Tid};
use gdbstub::target::ext::auxv::{Auxv, AuxvOps};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::extended_mode::{
    Args, AttachKind, CurrentActivePid, CurrentActivePidOps, ExtendedMode, ExtendedModeOps,
    ShouldTerminate,
};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub_arch::x86::reg::X86_64CoreRegs;

use super::arch::{LinuxRegs, X86_64Linux};

use crate::core::fpu::FXSAVE_LEN;
use crate::kernel::debug::DebugEvent;
use crate::kernel::{Kernel, Pid};
use crate::mm::Mm;
use vkernel_core::trap::TrapFrame;

/// The rflags bits a debugger may change (as ptrace lets a tracer): CF,
/// PF, AF, ZF, SF, TF, DF, OF, NT, RF, AC.
const USER_FLAGS: u64 =
    0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x4000 | 0x1_0000 | 0x4_0000;

/// How long a request waits for the process's memory when one of its
/// threads holds the process lock.
const BUSY_WAIT: Duration = Duration::from_secs(1);

/// Errors of the target (reported to gdb as E01 and logged).
#[derive(Debug, thiserror::Error)]
pub enum TargetFault {
    /// A thread was not stopped or is gone.
    #[error("thread {0} is not stopped for the debugger (errno {1})")]
    NotStopped(Pid, i64),
}

/// The process the stub debugs.
pub struct VprocTarget {
    pub(super) k: Arc<Kernel>,
    /// Its process id (the first vproc's).
    pub(super) tgid: Pid,
    /// gdb's resume actions for the next resume: thread -> (step, signal).
    actions: HashMap<Pid, (bool, i32)>,
    /// Threads without an action stay stopped at the next resume (gdb's
    /// scheduler locking, or a vCont naming one thread only).
    locked: bool,
    /// Stops of other threads seen while all threads were being stopped,
    /// reported one by one before anything runs again.
    pub(super) queued: Vec<(Pid, i32)>,
    /// The program's path (what `/proc/PID/maps` shows for its image).
    pub(super) exe: Vec<u8>,
    /// Files gdb opened (`vFile`).
    pub(super) files: super::hostio::Files,
}

/// gdb's thread id of vproc thread `tid`.
pub(super) fn gdb_tid(tid: Pid) -> Tid {
    NonZeroUsize::new(usize::try_from(tid).unwrap_or(1)).unwrap_or(NonZeroUsize::MIN)
}

fn pid_of(tid: Tid) -> Pid {
    Pid::try_from(tid.get()).unwrap_or(0)
}

impl VprocTarget {
    /// The target for process `tgid` of `k`.
    pub(super) fn new(k: Arc<Kernel>, tgid: Pid) -> VprocTarget {
        VprocTarget {
            k,
            tgid,
            actions: HashMap::new(),
            locked: false,
            queued: Vec::new(),
            exe: Vec::new(),
            files: Default::default(),
        }
    }

    /// `/proc/PID/maps` of the process, its image shown as `exe`.
    pub(super) fn maps(&self, exe: &[u8]) -> Option<Vec<u8>> {
        self.with_mm(|mm| crate::syscalls::render_maps(mm.vmas(), exe).into_bytes())
    }

    /// gdb's resume action for thread `tid`: a step or a continue,
    /// delivering `signal`.
    fn set_action(&mut self, tid: Tid, step: bool, signal: Option<Signal>) {
        let sig = signal.map_or(0, |s| i32::from(s.0));
        self.actions.insert(pid_of(tid), (step, sig));
    }

    /// Run `f` on the process's memory, retrying while a thread of it is
    /// in the kernel; None when the process is gone.
    fn with_mm<R>(&self, mut f: impl FnMut(&mut Mm) -> R) -> Option<R> {
        let (lock, _) = self.k.mm_of(self.tgid).ok()?;
        // Bounded by the clock (a second), not by a count of tries as
        // `retry_busy` is: each gdb packet may read memory, and a count of
        // short sleeps lasts far longer on a loaded host.
        let start = std::time::Instant::now();
        loop {
            if let Some(r) = lock.try_with_mm_mut(&mut f) {
                return Some(r);
            }
            if start.elapsed() > BUSY_WAIT {
                return None;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Stop every thread of the process that runs (all-stop mode), and
    /// wait until each is stopped; stops for signals met meanwhile are
    /// queued for gdb. Returns the process's wait status if it ended
    /// meanwhile (SIGKILL's when the whole run ended).
    pub(super) fn stop_all(&mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let running: Vec<Pid> = self
                .k
                .debug_threads(self.tgid)
                .into_iter()
                .filter(|&t| !self.k.debug_stopped(t))
                .collect();
            if running.is_empty() || std::time::Instant::now() > deadline {
                return None;
            }
            for &t in &running {
                let _ = self.k.debug_interrupt(t);
            }
            match self.k.debug_wait(Duration::from_millis(50)) {
                // A clone event (event != 0) needs nothing: the new thread
                // stops at its first instruction and is listed from now on.
                Some(DebugEvent::Stopped {
                    tid,
                    signo,
                    event: 0,
                }) => self.queued.push((tid, signo)),
                Some(DebugEvent::Ended { tid, status }) if tid == self.tgid => return Some(status),
                Some(DebugEvent::RunOver) => return Some(KILLED),
                _ => {}
            }
        }
    }
}

/// The wait status of a process SIGKILL ended.
pub(super) const KILLED: i32 = crate::signal::SIGKILL;

impl Target for VprocTarget {
    type Arch = X86_64Linux;
    type Error = TargetFault;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_auxv(&mut self) -> Option<AuxvOps<'_, Self>> {
        Some(self)
    }

    fn support_extended_mode(&mut self) -> Option<ExtendedModeOps<'_, Self>> {
        Some(self)
    }

    fn support_host_io(&mut self) -> Option<gdbstub::target::ext::host_io::HostIoOps<'_, Self>> {
        Some(self)
    }

    // gdb inserts breakpoints itself (int3 written through memory).
    fn guard_rail_implicit_sw_breakpoints(&self) -> bool {
        true
    }
}

/// gdb's registers from a trap frame and an FXSAVE image.
fn to_gdb(f: &TrapFrame, fx: &[u8; FXSAVE_LEN], regs: &mut X86_64CoreRegs) {
    regs.regs = [
        f.rax, f.rbx, f.rcx, f.rdx, f.rsi, f.rdi, f.rbp, f.rsp, f.r8, f.r9, f.r10, f.r11, f.r12,
        f.r13, f.r14, f.r15,
    ];
    regs.rip = f.rip;
    regs.eflags = (f.rflags & 0xffff_ffff) as u32;
    regs.segments.cs = 0x33;
    regs.segments.ss = 0x2b;
    let u16_at = |o: usize| u32::from(u16::from_le_bytes([fx[o], fx[o + 1]]));
    let u32_at = |o: usize| u32::from_le_bytes(fx[o..o + 4].try_into().expect("4 bytes"));
    for (i, st) in regs.st.iter_mut().enumerate() {
        st.copy_from_slice(&fx[32 + 16 * i..32 + 16 * i + 10]);
    }
    // The abridged tag (a bit per register, set: not empty) as the full
    // tag word (00 valid, 11 empty).
    let abridged = fx[4];
    let mut ftag = 0u32;
    for i in 0..8 {
        if abridged & (1 << i) == 0 {
            ftag |= 3 << (2 * i);
        }
    }
    regs.fpu.fctrl = u16_at(0);
    regs.fpu.fstat = u16_at(2);
    regs.fpu.ftag = ftag;
    regs.fpu.fop = u16_at(6);
    regs.fpu.fioff = u32_at(8);
    regs.fpu.fiseg = u16_at(12);
    regs.fpu.fooff = u32_at(16);
    regs.fpu.foseg = u16_at(20);
    regs.mxcsr = u32_at(24);
    for (i, x) in regs.xmm.iter_mut().enumerate() {
        *x = u128::from_le_bytes(fx[160 + 16 * i..176 + 16 * i].try_into().expect("16 bytes"));
    }
}

/// Write gdb's registers back into a trap frame and an FXSAVE image.
fn from_gdb(regs: &X86_64CoreRegs, f: &mut TrapFrame, fx: &mut [u8; FXSAVE_LEN]) {
    let r = &regs.regs;
    (f.rax, f.rbx, f.rcx, f.rdx, f.rsi, f.rdi, f.rbp, f.rsp) =
        (r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
    (f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15) =
        (r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
    if crate::canonical(regs.rip) {
        f.rip = regs.rip;
    }
    f.rflags = (f.rflags & !USER_FLAGS) | (u64::from(regs.eflags) & USER_FLAGS);
    for (i, st) in regs.st.iter().enumerate() {
        fx[32 + 16 * i..32 + 16 * i + 10].copy_from_slice(st);
    }
    let put16 = |fx: &mut [u8; FXSAVE_LEN], o: usize, v: u32| {
        fx[o..o + 2].copy_from_slice(&((v & 0xffff) as u16).to_le_bytes());
    };
    put16(fx, 0, regs.fpu.fctrl);
    put16(fx, 2, regs.fpu.fstat);
    put16(fx, 6, regs.fpu.fop);
    let mut abridged = 0u8;
    for i in 0..8 {
        if (regs.fpu.ftag >> (2 * i)) & 3 != 3 {
            abridged |= 1 << i;
        }
    }
    fx[4] = abridged;
    // MXCSR's reserved bits must stay clear (or the restore faults).
    fx[24..28].copy_from_slice(&(regs.mxcsr & 0xffff).to_le_bytes());
    for (i, x) in regs.xmm.iter().enumerate() {
        fx[160 + 16 * i..176 + 16 * i].copy_from_slice(&x.to_le_bytes());
    }
}

impl MultiThreadBase for VprocTarget {
    fn read_registers(&mut self, regs: &mut LinuxRegs, tid: Tid) -> TargetResult<(), Self> {
        let t = pid_of(tid);
        let (f, fx, orig) = self
            .k
            .debug_with(t, |b| (b.frame, b.fpu.fxsave(), b.orig_rax()))
            .map_err(|e| TargetError::Fatal(TargetFault::NotStopped(t, e)))?;
        to_gdb(&f, &fx, &mut regs.core);
        (regs.orig_rax, regs.fs_base, regs.gs_base) = (orig, f.fs_base, f.gs_base);
        Ok(())
    }

    fn write_registers(&mut self, regs: &LinuxRegs, tid: Tid) -> TargetResult<(), Self> {
        let t = pid_of(tid);
        let ok = self
            .k
            .debug_with(t, |b| {
                let mut fx = b.fpu.fxsave();
                from_gdb(&regs.core, &mut b.frame, &mut fx);
                // Non-canonical bases are refused (as ptrace does: EIO).
                if crate::canonical(regs.fs_base) && crate::canonical(regs.gs_base) {
                    (b.frame.fs_base, b.frame.gs_base) = (regs.fs_base, regs.gs_base);
                }
                if let Some(p) = b.ptrace.as_deref_mut() {
                    p.orig_rax = regs.orig_rax;
                }
                b.fpu.set_fxsave(&fx).is_ok()
            })
            .map_err(|e| TargetError::Fatal(TargetFault::NotStopped(t, e)))?;
        if ok {
            Ok(())
        } else {
            Err(TargetError::NonFatal)
        }
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], _tid: Tid) -> TargetResult<usize, Self> {
        let n = self.with_mm(|mm| mm.read_partial(start, data)).unwrap_or(0);
        if n == 0 && !data.is_empty() {
            return Err(TargetError::NonFatal);
        }
        Ok(n)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], _tid: Tid) -> TargetResult<(), Self> {
        let ok = self
            .with_mm(|mm| {
                mm.accessible_len(start, data.len(), false) == data.len()
                    && mm.write_force(start, data).is_ok()
            })
            .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err(TargetError::NonFatal)
        }
    }

    fn list_active_threads(&mut self, active: &mut dyn FnMut(Tid)) -> Result<(), Self::Error> {
        for t in self.k.debug_threads(self.tgid) {
            active(gdb_tid(t));
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadResume for VprocTarget {
    fn resume(&mut self) -> Result<(), Self::Error> {
        if !self.queued.is_empty() {
            // Another thread's stop is still to be reported: nothing runs
            // (the event loop reports it at once).
            return Ok(());
        }
        for t in self.k.debug_threads(self.tgid) {
            let (step, sig) = match self.actions.get(&t) {
                Some(&a) => a,
                None if self.locked => continue,
                None => (false, 0),
            };
            // One that is not stopped (still running) is refused: no matter.
            let _ = self.k.debug_resume(t, step, sig);
        }
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.actions.clear();
        self.locked = false;
        Ok(())
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }

    fn set_resume_action_continue(
        &mut self,
        tid: Tid,
        signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        self.set_action(tid, false, signal);
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSingleStep for VprocTarget {
    fn set_resume_action_step(
        &mut self,
        tid: Tid,
        signal: Option<Signal>,
    ) -> Result<(), Self::Error> {
        self.set_action(tid, true, signal);
        Ok(())
    }
}

impl MultiThreadSchedulerLocking for VprocTarget {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        self.locked = true;
        Ok(())
    }
}

impl Auxv for VprocTarget {
    fn get_auxv(&self, offset: u64, length: usize, buf: &mut [u8]) -> TargetResult<usize, Self> {
        let auxv = self.with_mm(|mm| mm.auxv.clone()).unwrap_or_default();
        let from = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(auxv.len());
        let n = length.min(buf.len()).min(auxv.len() - from);
        buf[..n].copy_from_slice(&auxv[from..from + n]);
        Ok(n)
    }
}

impl ExtendedMode for VprocTarget {
    fn run(&mut self, _filename: Option<&[u8]>, _args: Args<'_, '_>) -> TargetResult<Pid32, Self> {
        // The program is the one `vkernel run` started.
        Err(TargetError::NonFatal)
    }

    fn attach(&mut self, _pid: Pid32) -> TargetResult<(), Self> {
        Err(TargetError::NonFatal)
    }

    fn query_if_attached(&mut self, _pid: Pid32) -> TargetResult<AttachKind, Self> {
        // gdb detaches from it (rather than killing it) when it leaves.
        Ok(AttachKind::Attach)
    }

    fn kill(&mut self, _pid: Option<Pid32>) -> TargetResult<ShouldTerminate, Self> {
        self.k.debug_kill(self.tgid);
        Ok(ShouldTerminate::Yes)
    }

    fn restart(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    fn support_current_active_pid(&mut self) -> Option<CurrentActivePidOps<'_, Self>> {
        Some(self)
    }
}

impl CurrentActivePid for VprocTarget {
    fn current_active_pid(&mut self) -> Result<Pid32, Self::Error> {
        Ok(Pid32::new(usize::try_from(self.tgid).unwrap_or(1)).unwrap_or(Pid32::MIN))
    }
}

/// gdbstub's process id type.
type Pid32 = gdbstub::common::Pid;
