//! ptrace(2) and process_vm_readv/writev: the requests of a tracer (strace,
//! gdb) on its tracees, in Linux's x86-64 ABI (`user_regs_struct`, the
//! FXSAVE and XSAVE images, `ptrace_syscall_info`, siginfo). The process
//! table keeps who traces whom and where tracees stop
//! ([`crate::kernel::ptrace`]); here the requests are decoded and their
//! data moved between the tracer's memory and the tracee's parked body.

use super::errno::*;
use super::table::Handler;
use super::{int32, uint32, R};
use crate::core::fpu::FXSAVE_LEN;
use crate::kernel::ptrace::{retry_busy, Access, Mode, Stop, O_ALL};
use crate::kernel::Kernel;
use crate::signal::{self, SigInfo};
use crate::Vproc;
use vkernel_core::trap::TrapFrame;

const TRACEME: u64 = 0;
const PEEKTEXT: u64 = 1;
const PEEKDATA: u64 = 2;
const PEEKUSER: u64 = 3;
const POKETEXT: u64 = 4;
const POKEDATA: u64 = 5;
const POKEUSER: u64 = 6;
const CONT: u64 = 7;
const KILL: u64 = 8;
const SINGLESTEP: u64 = 9;
const GETREGS: u64 = 12;
const SETREGS: u64 = 13;
const GETFPREGS: u64 = 14;
const SETFPREGS: u64 = 15;
const ATTACH: u64 = 16;
const DETACH: u64 = 17;
const SYSCALL: u64 = 24;
const SETOPTIONS: u64 = 0x4200;
const GETEVENTMSG: u64 = 0x4201;
const GETSIGINFO: u64 = 0x4202;
const SETSIGINFO: u64 = 0x4203;
const GETREGSET: u64 = 0x4204;
const SETREGSET: u64 = 0x4205;
const SEIZE: u64 = 0x4206;
const INTERRUPT: u64 = 0x4207;
const LISTEN: u64 = 0x4208;
const GETSIGMASK: u64 = 0x420a;
const SETSIGMASK: u64 = 0x420b;
const GET_SYSCALL_INFO: u64 = 0x420e;

/// NT_PRSTATUS: the general registers.
const NT_PRSTATUS: u64 = 1;
/// NT_PRFPREG: the FXSAVE image.
const NT_PRFPREG: u64 = 2;
/// NT_X86_XSTATE: the XSAVE image.
const NT_X86_XSTATE: u64 = 0x202;
/// AUDIT_ARCH_X86_64.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `user_regs_struct`: 27 registers.
const NREGS: usize = 27;
/// offsetof(struct user, u_debugreg).
const DEBUGREG: u64 = 848;
/// The user code and stack segment selectors the vproc runs with.
const USER_CS: u64 = 0x33;
const USER_SS: u64 = 0x2b;
/// The rflags bits a tracer may change (Linux's FLAG_MASK).
const FLAG_MASK: u64 = 0x0001
    | 0x0004
    | 0x0010
    | 0x0040
    | 0x0080
    | 0x0100
    | 0x0400
    | 0x0800
    | 0x4000
    | 0x1_0000
    | 0x4_0000
    | 0x20_0000;

/// `user_regs_struct` of a frame (`orig` is orig_rax).
fn regs_of(f: &TrapFrame, orig: u64) -> [u64; NREGS] {
    [
        f.r15, f.r14, f.r13, f.r12, f.rbp, f.rbx, f.r11, f.r10, f.r9, f.r8, f.rax, f.rcx, f.rdx,
        f.rsi, f.rdi, orig, f.rip, USER_CS, f.rflags, f.rsp, USER_SS, f.fs_base, f.gs_base, 0, 0,
        0, 0,
    ]
}

/// Set a frame from `user_regs_struct` `r`; returns orig_rax. EIO for
/// values the vproc could not run with (non-canonical bases).
fn set_regs(f: &mut TrapFrame, r: &[u64; NREGS]) -> Result<u64, i64> {
    if !crate::is_canonical(r[21]) || !crate::is_canonical(r[22]) {
        return Err(EIO);
    }
    let flags = (f.rflags & !FLAG_MASK) | (r[18] & FLAG_MASK);
    *f = TrapFrame {
        r15: r[0],
        r14: r[1],
        r13: r[2],
        r12: r[3],
        rbp: r[4],
        rbx: r[5],
        r11: r[6],
        r10: r[7],
        r9: r[8],
        r8: r[9],
        rax: r[10],
        rcx: r[11],
        rdx: r[12],
        rsi: r[13],
        rdi: r[14],
        rip: r[16],
        rflags: flags,
        rsp: r[19],
        fs_base: r[21],
        gs_base: r[22],
    };
    Ok(r[15])
}

fn regs_bytes(r: &[u64; NREGS]) -> Vec<u8> {
    r.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn regs_from(b: &[u8]) -> [u64; NREGS] {
    let mut r = [0u64; NREGS];
    for (i, c) in b.chunks_exact(8).take(NREGS).enumerate() {
        r[i] = u64::from_le_bytes(c.try_into().expect("8 bytes"));
    }
    r
}

/// The siginfo PTRACE_GETSIGINFO gives at `stop`: the signal's own at a
/// signal-delivery-stop, a SIGTRAP saying what it is at syscall and
/// event stops; None (EINVAL) in a group-stop.
fn stop_siginfo(stop: Stop, own: Option<SigInfo>, pid: i32, sysgood: bool) -> Option<SigInfo> {
    let trap = |code: i32| SigInfo {
        signo: signal::SIGTRAP,
        code,
        pid,
        ..Default::default()
    };
    match stop {
        Stop::Signal(i) => Some(own.unwrap_or(i)),
        Stop::SyscallEntry | Stop::SyscallExit => {
            Some(trap(signal::SIGTRAP | if sysgood { 0x80 } else { 0 }))
        }
        Stop::Event(ev, sig) if sig == signal::SIGTRAP => {
            Some(trap(signal::SIGTRAP | (ev as i32) << 8))
        }
        Stop::Event(..) | Stop::Group(_) => None,
    }
}

/// `ptrace_syscall_info` at `stop` (op NONE, ENTRY or EXIT): its bytes,
/// as many as the op fills.
fn syscall_info(stop: Option<Stop>, f: &TrapFrame, nr: u64, args: &[u64; 6]) -> Vec<u8> {
    let mut b = vec![0u8; 24];
    b[4..8].copy_from_slice(&AUDIT_ARCH_X86_64.to_le_bytes());
    b[8..16].copy_from_slice(&f.rip.to_le_bytes());
    b[16..24].copy_from_slice(&f.rsp.to_le_bytes());
    match stop {
        Some(Stop::SyscallEntry) => {
            b[0] = 1;
            b.extend_from_slice(&nr.to_le_bytes());
            for a in args {
                b.extend_from_slice(&a.to_le_bytes());
            }
        }
        Some(Stop::SyscallExit) => {
            b[0] = 2;
            let rval = f.rax as i64;
            b.extend_from_slice(&rval.to_le_bytes());
            b.push(u8::from((-4095..0).contains(&rval)));
        }
        _ => {}
    }
    b
}

/// A signal number a tracer may give at resume (0: none).
fn resume_signal(data: u64) -> Result<i32, i64> {
    match i32::try_from(data) {
        Ok(s) if (0..=64).contains(&s) => Ok(s),
        _ => Err(EIO),
    }
}

impl Vproc {
    /// ptrace and process_vm_readv/writev: `(number, handler)` for the
    /// syscall table ([`super::table`]).
    pub(super) const PTRACE_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_ptrace, |v, _nr, a| {
            v.sys_ptrace(a[0], int32(a[1]), a[2], a[3])
        }),
        (libc::SYS_process_vm_readv, |v, _nr, a| {
            v.sys_process_vm(int32(a[0]), [a[1], a[2], a[3], a[4]], a[5], false)
        }),
        (libc::SYS_process_vm_writev, |v, _nr, a| {
            v.sys_process_vm(int32(a[0]), [a[1], a[2], a[3], a[4]], a[5], true)
        }),
    ];

    /// Run `f` on tracee `pid` under the table lock (stopped when
    /// `stopped`), retrying while a thread of the tracee holds its
    /// memory.
    fn on_tracee<T>(
        &mut self,
        pid: i32,
        stopped: bool,
        mut f: impl FnMut(&Kernel, &mut crate::kernel::Table, i32) -> Result<T, Access>,
    ) -> Result<T, i64> {
        let k = self.kernel()?;
        let me = self.pid;
        retry_busy(|| k.with_tracee(me, pid, stopped, |k, t, p| f(k, t, p)))
    }

    /// ptrace(request, pid, addr, data).
    pub fn sys_ptrace(&mut self, req: u64, pid: i32, addr: u64, data: u64) -> R {
        let k = self.kernel()?;
        match req {
            TRACEME => k.ptrace_traceme(self).map(|()| 0),
            ATTACH | SEIZE => {
                let options = if req == SEIZE {
                    if addr != 0 || data & !u64::from(O_ALL) != 0 {
                        return Err(EIO);
                    }
                    uint32(data)
                } else {
                    0
                };
                if pid <= 0 {
                    return Err(ESRCH);
                }
                k.ptrace_attach(self.pid, self.thread.tgid, pid, req == SEIZE, options)
                    .map(|()| 0)
            }
            PEEKTEXT | PEEKDATA | POKETEXT | POKEDATA | PEEKUSER | POKEUSER | GETREGS
            | GETFPREGS | SETREGS | SETFPREGS | GETREGSET | SETREGSET => {
                self.ptrace_data(req, pid, addr, data)
            }
            CONT | SYSCALL | SINGLESTEP | DETACH | KILL => {
                let (mode, sig) = match req {
                    KILL => (Mode::Cont, signal::SIGKILL),
                    SYSCALL => (Mode::Syscall, resume_signal(data)?),
                    SINGLESTEP => (Mode::Step, resume_signal(data)?),
                    _ => (Mode::Cont, resume_signal(data)?),
                };
                self.on_tracee(pid, true, |k, t, p| {
                    k.tracee_resume(t, p, mode, sig, req == DETACH).map(|()| 0)
                })
            }
            LISTEN => self.on_tracee(pid, true, |k, t, p| k.tracee_listen(t, p).map(|()| 0)),
            INTERRUPT => self.on_tracee(pid, false, |k, t, p| k.tracee_interrupt(t, p).map(|()| 0)),
            SETOPTIONS => {
                if data & !u64::from(O_ALL) != 0 {
                    return Err(EINVAL);
                }
                self.on_tracee(pid, true, |_, t, p| {
                    Kernel::tracee_set_options(t, p, uint32(data));
                    Ok(0)
                })
            }
            GETEVENTMSG | GETSIGMASK => {
                let v = self.on_tracee(pid, true, |_, t, p| {
                    let b = Kernel::tracee_body(t, p)?;
                    Ok(if req == GETEVENTMSG {
                        b.ptrace.as_ref().map_or(0, |x| x.eventmsg)
                    } else {
                        b.sig.blocked
                    })
                })?;
                if req == GETSIGMASK && addr != 8 {
                    return Err(EINVAL);
                }
                self.mm.write(data, &v.to_le_bytes())?;
                Ok(0)
            }
            SETSIGMASK => {
                if addr != 8 {
                    return Err(EINVAL);
                }
                let m = self.mm.read_u64(data)?
                    & !(signal::bit(signal::SIGKILL) | signal::bit(signal::SIGSTOP));
                self.on_tracee(pid, true, |_, t, p| {
                    Kernel::tracee_body(t, p)?.sig.blocked = m;
                    Ok(0)
                })
            }
            GETSIGINFO => {
                let info = self.on_tracee(pid, true, |_, t, p| {
                    let b = Kernel::tracee_body(t, p)?;
                    let x = b.ptrace.as_ref().ok_or(Access::Errno(EINVAL))?;
                    let sysgood = x.options & crate::kernel::ptrace::O_TRACESYSGOOD != 0;
                    let stop = x.at.or(x.last).ok_or(Access::Errno(EINVAL))?;
                    stop_siginfo(stop, x.siginfo, b.pid, sysgood).ok_or(Access::Errno(EINVAL))
                })?;
                self.mm.write(data, &signal::siginfo_bytes(&info))?;
                Ok(0)
            }
            SETSIGINFO => {
                let mut raw = [0u8; 128];
                self.mm.read(data, &mut raw)?;
                let signo = i32::from_le_bytes(raw[..4].try_into().expect("4 bytes"));
                let info = signal::siginfo_from_bytes(signo, &raw);
                self.on_tracee(pid, true, |_, t, p| {
                    let b = Kernel::tracee_body(t, p)?;
                    let x = b.ptrace.as_deref_mut().ok_or(Access::Errno(EINVAL))?;
                    x.siginfo = Some(info);
                    Ok(0)
                })
            }
            GET_SYSCALL_INFO => {
                let info = self.on_tracee(pid, true, |_, t, p| {
                    let b = Kernel::tracee_body(t, p)?;
                    let x = b.ptrace.as_ref().ok_or(Access::Errno(EINVAL))?;
                    Ok(syscall_info(x.at.or(x.last), &b.frame, x.orig_rax, &x.args))
                })?;
                let n = info.len().min(usize::try_from(addr).unwrap_or(usize::MAX));
                self.mm.write(data, &info[..n])?;
                Ok(info.len() as i64)
            }
            _ => Err(EIO),
        }
    }

    /// The requests that move memory or registers between the tracer
    /// and a stopped tracee.
    fn ptrace_data(&mut self, req: u64, pid: i32, addr: u64, data: u64) -> R {
        match req {
            PEEKTEXT | PEEKDATA => {
                let mut w = [0u8; 8];
                self.on_tracee(pid, true, |_, t, p| {
                    let b = Kernel::tracee_body(t, p)?;
                    b.mm.lock_handle()
                        .try_with_mm_mut(|mm| mm.read(addr, &mut w).map_err(|_| EIO))
                        .ok_or(Access::Busy)?
                        .map_err(Access::Errno)
                })?;
                self.mm.write(data, &w)?;
                Ok(0)
            }
            POKETEXT | POKEDATA => {
                let w = data.to_le_bytes();
                self.on_tracee(pid, true, |_, t, p| {
                    let b = Kernel::tracee_body(t, p)?;
                    b.mm.lock_handle()
                        .try_with_mm_mut(|mm| mm.write_force(addr, &w).map_err(|_| EIO))
                        .ok_or(Access::Busy)?
                        .map_err(Access::Errno)
                })?;
                Ok(0)
            }
            PEEKUSER => {
                let v = self.on_tracee(pid, true, |_, t, p| {
                    let b = Kernel::tracee_body(t, p)?;
                    peek_user(b, addr).map_err(Access::Errno)
                })?;
                self.mm.write(data, &v.to_le_bytes())?;
                Ok(0)
            }
            POKEUSER => self.on_tracee(pid, true, |_, t, p| {
                let b = Kernel::tracee_body(t, p)?;
                poke_user(b, addr, data).map_err(Access::Errno).map(|()| 0)
            }),
            GETREGS | GETFPREGS => {
                let bytes = self.on_tracee(pid, true, |_, t, p| {
                    let b = Kernel::tracee_body(t, p)?;
                    Ok(if req == GETREGS {
                        regs_bytes(&regs_of(&b.frame, b.orig_rax()))
                    } else {
                        b.fpu.fxsave().to_vec()
                    })
                })?;
                self.mm.write(data, &bytes)?;
                Ok(0)
            }
            SETREGS => {
                let r = regs_from(&self.mm.read_vec(data, NREGS * 8)?);
                self.set_tracee_regs(pid, r)
            }
            SETFPREGS => {
                let fx = self.mm.read_vec(data, FXSAVE_LEN)?;
                self.set_tracee_fp(pid, &fx)
            }
            GETREGSET => self.get_regset(pid, addr, data),
            SETREGSET => self.set_regset(pid, addr, data),
            _ => Err(EIO),
        }
    }

    /// PTRACE_SETREGS.
    fn set_tracee_regs(&mut self, pid: i32, r: [u64; NREGS]) -> R {
        self.on_tracee(pid, true, |_, t, p| {
            let b = Kernel::tracee_body(t, p)?;
            let orig = set_regs(&mut b.frame, &r).map_err(Access::Errno)?;
            if let Some(x) = b.ptrace.as_deref_mut() {
                x.orig_rax = orig;
            }
            Ok(0)
        })
    }

    /// PTRACE_SETFPREGS (an FXSAVE image).
    fn set_tracee_fp(&mut self, pid: i32, fx: &[u8]) -> R {
        let fx: [u8; FXSAVE_LEN] = fx.try_into().map_err(|_| EINVAL)?;
        self.on_tracee(pid, true, |_, t, p| {
            let b = Kernel::tracee_body(t, p)?;
            b.fpu.set_fxsave(&fx).map_err(|_| Access::Errno(EINVAL))?;
            Ok(0)
        })
    }

    /// PTRACE_GETREGSET: the register set `nt` into the iovec at `iov`,
    /// whose length becomes what was written.
    fn get_regset(&mut self, pid: i32, nt: u64, iov: u64) -> R {
        let base = self.mm.read_u64(iov)?;
        let len = self.mm.read_u64(iov + 8)?;
        let bytes = self.on_tracee(pid, true, |_, t, p| {
            let b = Kernel::tracee_body(t, p)?;
            match nt {
                NT_PRSTATUS => Ok(regs_bytes(&regs_of(&b.frame, b.orig_rax()))),
                NT_PRFPREG => Ok(b.fpu.fxsave().to_vec()),
                NT_X86_XSTATE => Ok(b.fpu.xsave_image()),
                _ => Err(Access::Errno(EINVAL)),
            }
        })?;
        let n = bytes.len().min(usize::try_from(len).unwrap_or(usize::MAX));
        self.mm.write(base, &bytes[..n])?;
        self.mm.write_u64(iov + 8, n as u64)?;
        Ok(0)
    }

    /// PTRACE_SETREGSET for the general and FXSAVE sets.
    fn set_regset(&mut self, pid: i32, nt: u64, iov: u64) -> R {
        let base = self.mm.read_u64(iov)?;
        let len = usize::try_from(self.mm.read_u64(iov + 8)?).map_err(|_| EINVAL)?;
        match nt {
            NT_PRSTATUS if len >= NREGS * 8 => {
                let r = regs_from(&self.mm.read_vec(base, NREGS * 8)?);
                self.set_tracee_regs(pid, r)
            }
            NT_PRFPREG if len >= FXSAVE_LEN => {
                let fx = self.mm.read_vec(base, FXSAVE_LEN)?;
                self.set_tracee_fp(pid, &fx)
            }
            _ => Err(EINVAL),
        }
    }

    /// process_vm_readv/writev(pid, local iov, count, remote iov, count,
    /// flags): bytes moved between this process and `pid`'s memory, up
    /// to the first remote byte that cannot be moved.
    fn sys_process_vm(&mut self, pid: i32, iovs: [u64; 4], flags: u64, write: bool) -> R {
        if flags != 0 {
            return Err(EINVAL);
        }
        let local = self.iovecs(iovs[0], iovs[1])?;
        let remote = self.iovecs(iovs[2], iovs[3])?;
        let k = self.kernel()?;
        let (lock, tgid) = k.mm_of(pid)?;
        let own = tgid == self.thread.tgid;
        let total: usize = local.iter().map(|x| x.1).sum();
        let mut moved = 0usize;
        // The local side as one buffer.
        let mut buf = vec![0u8; total];
        if write {
            let mut at = 0;
            for &(base, len) in &local {
                self.mm.read(base, &mut buf[at..at + len])?;
                at += len;
            }
        }
        for &(base, len) in &remote {
            let n = len.min(total - moved);
            if n == 0 {
                break;
            }
            let chunk = &mut buf[moved..moved + n];
            let mut io = |mm: &mut crate::mm::Mm| {
                if !write {
                    return mm.read_partial(base, chunk);
                }
                let ok = mm.accessible_len(base, n, true);
                mm.write(base, &chunk[..ok]).map_or(0, |()| ok)
            };
            let done = if own {
                io(&mut self.mm)
            } else {
                retry_busy(|| lock.try_with_mm_mut(&mut io).ok_or(Access::Busy))?
            };
            moved += done;
            if done < n {
                break;
            }
        }
        if moved == 0 && total > 0 && !remote.is_empty() {
            return Err(EFAULT);
        }
        if !write {
            let mut at = 0;
            for &(base, len) in &local {
                let n = len.min(moved - at);
                self.mm.write(base, &buf[at..at + n])?;
                at += n;
                if at >= moved {
                    break;
                }
            }
        }
        Ok(moved as i64)
    }
}

/// PTRACE_PEEKUSER: a register of `struct user`, or a debug register
/// (all zero: no hardware breakpoints are set).
fn peek_user(b: &Vproc, off: u64) -> Result<u64, i64> {
    if !off.is_multiple_of(8) {
        return Err(EIO);
    }
    if off < (NREGS * 8) as u64 {
        return Ok(regs_of(&b.frame, b.orig_rax())[(off / 8) as usize]);
    }
    if (DEBUGREG..DEBUGREG + 64).contains(&off) {
        return Ok(0);
    }
    Err(EIO)
}

/// PTRACE_POKEUSER: a register of `struct user`; a debug register only
/// cleared (hardware breakpoints are refused).
fn poke_user(b: &mut Vproc, off: u64, v: u64) -> Result<(), i64> {
    if !off.is_multiple_of(8) {
        return Err(EIO);
    }
    if off < (NREGS * 8) as u64 {
        let mut r = regs_of(&b.frame, b.orig_rax());
        r[(off / 8) as usize] = v;
        let orig = set_regs(&mut b.frame, &r)?;
        if let Some(x) = b.ptrace.as_deref_mut() {
            x.orig_rax = orig;
        }
        return Ok(());
    }
    if (DEBUGREG..DEBUGREG + 64).contains(&off) && v == 0 {
        return Ok(());
    }
    Err(EIO)
}
