//! Linux signals for a vproc: dispositions (`rt_sigaction`), the blocked
//! mask, the alternate stack, and the x86-64 `rt_sigframe` (siginfo +
//! ucontext + fxsave area) that handlers get and `rt_sigreturn` reads back.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use crate::core::fpu::{FpuContext, FXSAVE_LEN};
use crate::core::prelude::*;

use super::mm::{Mm, MmError};

/// SIGHUP.
pub const SIGHUP: i32 = 1;
/// SIGINT.
pub const SIGINT: i32 = 2;
/// SIGQUIT.
pub const SIGQUIT: i32 = 3;
/// SIGILL.
pub const SIGILL: i32 = 4;
/// SIGTRAP.
pub const SIGTRAP: i32 = 5;
/// SIGABRT.
pub const SIGABRT: i32 = 6;
/// SIGBUS.
pub const SIGBUS: i32 = 7;
/// SIGFPE.
pub const SIGFPE: i32 = 8;
/// SIGKILL.
pub const SIGKILL: i32 = 9;
/// SIGSEGV.
pub const SIGSEGV: i32 = 11;
/// SIGPIPE.
pub const SIGPIPE: i32 = 13;
/// SIGCHLD.
pub const SIGCHLD: i32 = 17;
/// SIGCONT.
pub const SIGCONT: i32 = 18;
/// SIGSTOP.
pub const SIGSTOP: i32 = 19;
/// SIGTSTP.
pub const SIGTSTP: i32 = 20;
/// SIGTTIN.
pub const SIGTTIN: i32 = 21;
/// SIGTTOU.
pub const SIGTTOU: i32 = 22;
/// SIGURG.
pub const SIGURG: i32 = 23;
/// SIGWINCH.
pub const SIGWINCH: i32 = 28;
/// The first real-time signal (the kernel's SIGRTMIN; the libcs keep the
/// first two or three for themselves).
pub const SIGRTMIN: i32 = 32;
/// The last real-time signal.
pub const SIGRTMAX: i32 = 64;

/// si_code SI_USER (kill).
pub const SI_USER: i32 = 0;
/// si_code SI_QUEUE (sigqueue).
pub const SI_QUEUE: i32 = -1;
/// si_code SI_TKILL (tkill, tgkill).
pub const SI_TKILL: i32 = -6;

/// Most instances of real-time signals one queue holds (Linux's
/// RLIMIT_SIGPENDING plays this part); sigqueue beyond gets EAGAIN.
pub const MAX_QUEUED: usize = 1024;

/// SA_NOCLDSTOP.
pub const SA_NOCLDSTOP: u64 = 1;
/// SA_SIGINFO.
pub const SA_SIGINFO: u64 = 4;
/// SA_RESTART.
pub const SA_RESTART: u64 = 0x1000_0000;
/// SA_ONSTACK.
pub const SA_ONSTACK: u64 = 0x0800_0000;
/// SA_RESTORER.
pub const SA_RESTORER: u64 = 0x0400_0000;
/// SA_NODEFER.
pub const SA_NODEFER: u64 = 0x4000_0000;
/// SA_RESETHAND.
pub const SA_RESETHAND: u64 = 0x8000_0000;

/// SIG_DFL.
pub const SIG_DFL: u64 = 0;
/// SIG_IGN.
pub const SIG_IGN: u64 = 1;

/// SS_ONSTACK.
pub const SS_ONSTACK: u32 = 1;
/// SS_DISABLE.
pub const SS_DISABLE: u32 = 2;

/// Signal names for messages.
pub fn name(sig: i32) -> &'static str {
    const N: [&str; 32] = [
        "0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    N.get(sig as usize).copied().unwrap_or("SIGRT")
}

/// Errors of signal handling.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignalError {
    /// The user stack could not take the frame (the vproc dies with SIGSEGV).
    #[error("cannot write the signal frame: {0}")]
    Frame(#[from] MmError),
}

/// One disposition (`struct kernel_sigaction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    /// Handler address, SIG_DFL or SIG_IGN.
    pub handler: u64,
    /// SA_* flags.
    pub flags: u64,
    /// The sa_restorer trampoline.
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}

impl SigAction {
    /// The disposition in `struct kernel_sigaction`'s bytes.
    pub fn decode(b: &[u8; 32]) -> SigAction {
        let w = |i: usize| u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        SigAction {
            handler: w(0),
            flags: w(1),
            restorer: w(2),
            mask: w(3),
        }
    }

    /// Its `struct kernel_sigaction` bytes.
    pub fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, v) in [self.handler, self.flags, self.restorer, self.mask]
            .iter()
            .enumerate()
        {
            b[8 * i..8 * i + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Does this disposition ignore `signo` (SIG_IGN, or the default
    /// action of a signal ignored by default)?
    pub fn ignores(&self, signo: i32) -> bool {
        self.handler == SIG_IGN
            || (self.handler == SIG_DFL && default_action(signo) == Default_::Ignore)
    }
}

/// What a signal's default action is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Default_ {
    /// Terminate the process.
    Terminate,
    /// Ignore.
    Ignore,
    /// Stop the process (until SIGCONT).
    Stop,
}

/// Default action of `sig`.
pub fn default_action(sig: i32) -> Default_ {
    match sig {
        SIGCHLD | SIGCONT | SIGURG | SIGWINCH => Default_::Ignore,
        SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU => Default_::Stop,
        _ => Default_::Terminate,
    }
}

/// Does `sig` stop a process by default?
pub fn is_stop(sig: i32) -> bool {
    default_action(sig) == Default_::Stop
}

/// Details for siginfo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigInfo {
    /// Signal number.
    pub signo: i32,
    /// si_code (SEGV_MAPERR=1, SEGV_ACCERR=2, ILL_ILLOPN=2, FPE_INTDIV=1, SI_USER=0, SI_TKILL=-6).
    pub code: i32,
    /// si_addr for faults.
    pub addr: u64,
    /// si_pid for kill.
    pub pid: i32,
    /// Exception vector (sigcontext trapno).
    pub trapno: u64,
    /// Error code (sigcontext err); for SIGCHLD the child's status.
    pub err: u64,
    /// si_uid of the sender.
    pub uid: u32,
    /// si_value (sigqueue, rt_sigqueueinfo).
    pub value: u64,
}

/// Is `sig` a real-time signal (queued per instance)?
pub fn is_rt(sig: i32) -> bool {
    (SIGRTMIN..=SIGRTMAX).contains(&sig)
}

/// Add `info` to a pending queue as Linux does: a standard signal (1-31)
/// already pending is not queued again (one instance, the first one's
/// siginfo); every instance of a real-time signal is queued with its
/// siginfo, up to [`MAX_QUEUED`] of them. False when it was not added
/// for that limit.
pub fn enqueue(queue: &mut Vec<SigInfo>, info: SigInfo) -> bool {
    if !is_rt(info.signo) {
        if !queue.iter().any(|p| p.signo == info.signo) {
            queue.push(info);
        }
        return true;
    }
    if queue.iter().filter(|p| is_rt(p.signo)).count() >= MAX_QUEUED {
        return false;
    }
    queue.push(info);
    true
}

/// The pending signal of `queue` taken next among those in `accept`:
/// SIGKILL first, else the lowest-numbered, and of a real-time signal
/// the oldest instance, as Linux dequeues.
pub fn next_index(queue: &[SigInfo], accept: u64) -> Option<usize> {
    queue
        .iter()
        .enumerate()
        .filter(|(_, p)| accept & bit(p.signo) != 0)
        .min_by_key(|(i, p)| (p.signo != SIGKILL, p.signo, *i))
        .map(|(i, _)| i)
}

/// The signals of `queue` as a mask.
pub fn mask_of(queue: &[SigInfo]) -> u64 {
    queue.iter().fold(0, |m, p| m | bit(p.signo))
}

/// Per-process signal state.
#[derive(Clone, Debug)]
pub struct Signals {
    /// Dispositions, index = signal number (0 unused).
    pub actions: [SigAction; 65],
    /// Blocked mask (bit sig-1).
    pub blocked: u64,
    /// Pending signals (bit sig-1) with their infos.
    pub pending: Vec<SigInfo>,
    /// sigaltstack: (ss_sp, ss_flags, ss_size).
    pub altstack: (u64, u32, u64),
}

impl Default for Signals {
    fn default() -> Self {
        Signals {
            actions: [SigAction::default(); 65],
            blocked: 0,
            pending: Vec::new(),
            altstack: (0, SS_DISABLE, 0),
        }
    }
}

/// Bit of `sig` in a mask.
pub fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// The 128-byte `siginfo_t` of `info` (signal frames, rt_sigtimedwait).
pub fn siginfo_bytes(info: &SigInfo) -> [u8; 128] {
    let mut b = [0u8; 128];
    b[..4].copy_from_slice(&info.signo.to_le_bytes());
    b[8..12].copy_from_slice(&info.code.to_le_bytes());
    if matches!(info.signo, SIGSEGV | SIGBUS | SIGILL | SIGFPE | SIGTRAP) && info.code > 0 {
        b[16..24].copy_from_slice(&info.addr.to_le_bytes());
    } else {
        b[16..20].copy_from_slice(&info.pid.to_le_bytes());
        b[20..24].copy_from_slice(&info.uid.to_le_bytes());
        if info.signo == SIGCHLD && info.code > 0 {
            // si_status: the exit code or the signal.
            b[24..28].copy_from_slice(&(info.err as i32).to_le_bytes());
        } else {
            b[24..32].copy_from_slice(&info.value.to_le_bytes());
        }
    }
    b
}

/// The fields a `siginfo_t` from a vproc (rt_sigqueueinfo) carries that
/// are kept: si_code, si_pid, si_uid and si_value; `signo` is the call's.
pub fn siginfo_from_bytes(signo: i32, b: &[u8; 128]) -> SigInfo {
    let i32_at = |o: usize| i32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    SigInfo {
        signo,
        code: i32_at(8),
        pid: i32_at(16),
        uid: i32_at(20) as u32,
        value: u64::from_le_bytes(b[24..32].try_into().expect("8 bytes")),
        ..Default::default()
    }
}

const UC_OFF: u64 = 8;
const MCTX_OFF: u64 = UC_OFF + 40;
const SIGMASK_OFF: u64 = UC_OFF + 296;
const INFO_OFF: u64 = UC_OFF + 304;
const FRAME_SIZE: u64 = INFO_OFF + 128;
const FXSAVE_SIZE: u64 = 512;

/// Build an rt_sigframe for `info` on the user stack and point `frame` at
/// the handler `act`. `old_mask` goes into uc_sigmask.
#[allow(clippy::too_many_arguments)]
pub fn setup_frame(
    mm: &mut Mm,
    cpu: &Cpu,
    fpu: &FpuContext,
    frame: &mut TrapFrame,
    act: &SigAction,
    info: &SigInfo,
    old_mask: u64,
    sigs: &Signals,
) -> Result<(), SignalError> {
    let (ss_sp, ss_flags, ss_size) = sigs.altstack;
    let on_alt =
        ss_flags & SS_DISABLE == 0 && frame.rsp > ss_sp && frame.rsp <= ss_sp.wrapping_add(ss_size);
    let mut sp = if act.flags & SA_ONSTACK != 0 && ss_flags & SS_DISABLE == 0 && !on_alt {
        ss_sp.wrapping_add(ss_size)
    } else {
        frame.rsp.wrapping_sub(128)
    };
    // FPU state.
    sp = sp.wrapping_sub(FXSAVE_SIZE) & !63;
    let fpstate = sp;
    let fx = cpu.read_fxsave(fpu).ok();
    if let Some(fx) = &fx {
        mm.write(fpstate, fx)?;
    }
    sp = ((sp.wrapping_sub(FRAME_SIZE)) & !15).wrapping_sub(8);
    let mut b = vec![0u8; FRAME_SIZE as usize];
    let put = |b: &mut Vec<u8>, off: u64, v: u64| {
        b[off as usize..off as usize + 8].copy_from_slice(&v.to_le_bytes())
    };
    put(&mut b, 0, act.restorer);
    // ucontext: uc_flags, uc_link, uc_stack
    put(&mut b, UC_OFF, 0);
    put(&mut b, UC_OFF + 8, 0);
    put(&mut b, UC_OFF + 16, ss_sp);
    put(
        &mut b,
        UC_OFF + 24,
        if on_alt {
            SS_ONSTACK as u64
        } else {
            ss_flags as u64
        },
    );
    put(&mut b, UC_OFF + 32, ss_size);
    let f = frame;
    let regs = [
        f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15, f.rdi, f.rsi, f.rbp, f.rbx, f.rdx,
        f.rax, f.rcx, f.rsp, f.rip, f.rflags,
    ];
    for (i, r) in regs.iter().enumerate() {
        put(&mut b, MCTX_OFF + 8 * i as u64, *r);
    }
    // cs, gs, fs, ss (u16 each)
    put(&mut b, MCTX_OFF + 144, 0x33 | (0x2b << 48));
    put(&mut b, MCTX_OFF + 152, info.err);
    put(&mut b, MCTX_OFF + 160, info.trapno);
    put(&mut b, MCTX_OFF + 168, old_mask);
    put(&mut b, MCTX_OFF + 176, info.addr);
    put(
        &mut b,
        MCTX_OFF + 184,
        if fx.is_some() { fpstate } else { 0 },
    );
    put(&mut b, SIGMASK_OFF, old_mask);
    let i0 = INFO_OFF as usize;
    b[i0..i0 + 128].copy_from_slice(&siginfo_bytes(info));
    mm.write(sp, &b)?;
    f.rsp = sp;
    f.rip = act.handler;
    f.rdi = info.signo as u64;
    f.rsi = sp + INFO_OFF;
    f.rdx = sp + UC_OFF;
    f.rax = 0;
    // Clear DF and TF as Linux does.
    f.rflags &= !(0x400 | 0x100);
    Ok(())
}

/// rt_sigreturn: restore registers, mask and FPU state from the frame the
/// handler returned through (`frame.rsp` points at the ucontext). Returns
/// the restored blocked mask.
pub fn sigreturn(
    mm: &mut Mm,
    cpu: &Cpu,
    fpu: &FpuContext,
    frame: &mut TrapFrame,
) -> Result<u64, SignalError> {
    let uc = frame.rsp;
    let b = mm.read_vec(uc, 304)?;
    let get = |off: u64| {
        let o = (off - UC_OFF) as usize;
        u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
    };
    let r: Vec<u64> = (0..18).map(|i| get(MCTX_OFF + 8 * i)).collect();
    let f = frame;
    let rflags_user = 0x0000_0000_0025_0DD5u64;
    [
        f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15, f.rdi, f.rsi, f.rbp, f.rbx, f.rdx,
        f.rax, f.rcx, f.rsp, f.rip,
    ] = [
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
        r[14], r[15], r[16],
    ];
    f.rflags = (f.rflags & !rflags_user) | (r[17] & rflags_user);
    let fpstate = get(MCTX_OFF + 184);
    if fpstate != 0 {
        let mut fx = [0u8; FXSAVE_LEN];
        mm.read(fpstate, &mut fx)?;
        if let Err(e) = cpu.write_fxsave(fpu, &fx) {
            log::warn!("rt_sigreturn: FPU state not restored: {e}");
        }
    }
    Ok(get(SIGMASK_OFF))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(signo: i32, value: u64) -> SigInfo {
        SigInfo {
            signo,
            value,
            ..Default::default()
        }
    }

    #[test]
    fn standard_signals_coalesce_realtime_ones_queue() {
        let mut q = Vec::new();
        assert!(enqueue(&mut q, info(SIGCHLD, 1)));
        assert!(enqueue(&mut q, info(SIGCHLD, 2)));
        for v in 1..=3 {
            assert!(enqueue(&mut q, info(SIGRTMIN + 2, v)));
        }
        assert_eq!(q.len(), 4, "one SIGCHLD, three SIGRTMIN+2");
        assert_eq!(q[0].value, 1, "the first SIGCHLD keeps its siginfo");
        assert_eq!(mask_of(&q), bit(SIGCHLD) | bit(SIGRTMIN + 2));
    }

    #[test]
    fn realtime_queue_is_bounded() {
        let mut q = Vec::new();
        for v in 0..MAX_QUEUED as u64 {
            assert!(enqueue(&mut q, info(SIGRTMAX, v)));
        }
        assert!(!enqueue(&mut q, info(SIGRTMIN, 0)), "full");
        assert!(
            enqueue(&mut q, info(SIGUSR1_FOR_TEST, 0)),
            "standard ones still"
        );
    }

    const SIGUSR1_FOR_TEST: i32 = 10;

    #[test]
    fn lowest_first_oldest_instance_first() {
        let mut q = Vec::new();
        for (s, v) in [
            (SIGRTMIN + 1, 100),
            (SIGRTMIN, 1),
            (SIGRTMIN, 2),
            (SIGCHLD, 0),
        ] {
            enqueue(&mut q, info(s, v));
        }
        let mut order = Vec::new();
        while let Some(i) = next_index(&q, u64::MAX) {
            let p = q.remove(i);
            order.push((p.signo, p.value));
        }
        assert_eq!(
            order,
            [
                (SIGCHLD, 0),
                (SIGRTMIN, 1),
                (SIGRTMIN, 2),
                (SIGRTMIN + 1, 100)
            ]
        );
        let q = vec![info(SIGCHLD, 0), info(SIGKILL, 0)];
        assert_eq!(next_index(&q, u64::MAX), Some(1), "SIGKILL first");
        assert_eq!(next_index(&q, bit(SIGHUP)), None);
    }

    #[test]
    fn siginfo_round_trip_keeps_queue_fields() {
        let s = SigInfo {
            signo: SIGRTMIN,
            code: SI_QUEUE,
            pid: 42,
            uid: 7,
            value: 0xdead_beef,
            ..Default::default()
        };
        let b = siginfo_bytes(&s);
        assert_eq!(siginfo_from_bytes(SIGRTMIN, &b), s);
    }
}
