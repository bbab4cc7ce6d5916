//! What a machine starts with: the system region's contents (stub, GDT,
//! IDT, TSS, hardware page tables), each vCPU's registers and MSRs, and the
//! probes that find which trap path and FPU mode this host supports.
//! [`crate::machine::Machine::builder`] calls these once per machine.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_segment, kvm_sregs, Msrs};
use kvm_ioctls::{VcpuExit, VcpuFd};

use vkernel_guest::abi;
use vkernel_guest::layout::*;
use vkernel_guest::stub::{self, StubOffsets};
use vkernel_guest::x86::{self, msr, sel, PTE_A, PTE_D, PTE_NX, PTE_P, PTE_PS, PTE_U, PTE_W};

use crate::machine::{kvm_err, null_seg, seg, MachineError, TrapPath, INT80_VECTOR};
use crate::ram::Ram;

/// Write the IDT, stub, trampoline, upper-half tables and per-vCPU areas.
/// Returns the PML4 entry that maps the system region.
pub(crate) fn init_sys(
    sys: &Ram,
    sys_gpa: u64,
    sys_size: u64,
    vcpus: usize,
    o: &StubOffsets,
) -> u64 {
    let w = |off: u64, v: u64| sys.store(off, v).expect("inside the system region");
    // IDT: 32 interrupt gates to the stub, DPL0 (a user `int n` is #GP).
    // #UD switches to IST1, the vCPU's stack top (as RSP0 for a vproc's
    // exceptions): a `ud2` run at CPL0 (a PVM-derived KVM resuming a CPL0
    // entry from the last exit's RIP, see `Cpu::on_exception`) then leaves
    // the frame where the host looks, never on the stack it had.
    for (v, &h) in o.vectors.iter().enumerate() {
        let handler = SYS_VA + STUB_OFF + h;
        let ist = u64::from(v == 6);
        let lo = (handler & 0xffff)
            | ((sel::KCODE as u64) << 16)
            | (ist << 32)
            | (0x8Eu64 << 40)
            | (((handler >> 16) & 0xffff) << 48);
        let hi = handler >> 32;
        w(IDT_OFF + 16 * v as u64, lo);
        w(IDT_OFF + 16 * v as u64 + 8, hi);
    }
    // Gate 0x80, present and DPL0: a vproc's `int $0x80` (the i386 syscall)
    // is #GP with error code 0x402 on every host (a missing gate is #UD on
    // some PVM-derived hosts, a DPL3 gate triple-faults there), and the
    // vkernel can serve it. Nothing at CPL0 raises it; should anything do,
    // it arrives as vector 6 (the handler pushes no error code, as `int`).
    let handler = SYS_VA + STUB_OFF + o.vectors[6];
    let lo = (handler & 0xffff)
        | ((sel::KCODE as u64) << 16)
        | (0x8Eu64 << 40)
        | (((handler >> 16) & 0xffff) << 48);
    w(IDT_OFF + 16 * INT80_VECTOR, lo);
    w(IDT_OFF + 16 * INT80_VECTOR + 8, handler >> 32);
    sys.write(STUB_OFF, stub::stub_code()).expect("stub fits");
    sys.write(TRAMP_OFF, stub::tramp_code())
        .expect("trampoline fits");
    // Upper half: PML4[256] -> PDPT -> PD -> (PT for the first 2 MiB, then
    // 2 MiB pages for the pool).
    let t = PTE_P | PTE_W | PTE_U | PTE_A;
    w(UPPER_PDPT_OFF, (sys_gpa + UPPER_PD_OFF) | t);
    w(UPPER_PD_OFF, (sys_gpa + UPPER_PT_OFF) | t);
    for i in 1..(sys_size >> 21) {
        w(
            UPPER_PD_OFF + 8 * i,
            (sys_gpa + (i << 21)) | PTE_P | PTE_W | PTE_PS | PTE_A | PTE_D | PTE_NX,
        );
    }
    for i in 0..512u64 {
        let off = i * PAGE_SIZE;
        // Code pages (stub and trampoline) are executable and read-only;
        // the trampoline is reached by vprocs through TRAMP_VA only.
        let flags = if (STUB_OFF..TRAMP_OFF + PAGE_SIZE).contains(&off) {
            PTE_P | PTE_A
        } else {
            PTE_P | PTE_W | PTE_A | PTE_D | PTE_NX
        };
        w(UPPER_PT_OFF + 8 * i, (sys_gpa + off) | flags);
    }
    // Per-vCPU GDT + TSS + mailbox.
    for n in 0..vcpus {
        let area = cpu_area_off(n);
        let gdt = area + CPU_GDT_OFF;
        let tss = area + CPU_TSS_OFF;
        let tss_va = SYS_VA + tss;
        let descs: [u64; 7] = [
            0,
            0x00AF_9A00_0000_FFFF, // 0x08 kernel code64
            0x00CF_9200_0000_FFFF, // 0x10 kernel data
            0,                     // 0x18 unused
            0x00CF_FA00_0000_FFFF, // 0x20 user code32 (unused)
            0x00CF_F200_0000_FFFF, // 0x28 user data
            0x00AF_FA00_0000_FFFF, // 0x30 user code64
        ];
        for (i, d) in descs.iter().enumerate() {
            w(gdt + 8 * i as u64, *d);
        }
        let limit = TSS_LIMIT as u64;
        let tss_lo = (limit & 0xffff)
            | ((tss_va & 0xff_ffff) << 16)
            | (0x89u64 << 40)
            | (((tss_va >> 24) & 0xff) << 56);
        w(gdt + 56, tss_lo);
        w(gdt + 64, tss_va >> 32);
        // TSS: RSP0 at offset 4 and IST1 at 36 (unaligned: write bytes),
        // IOPB offset 104.
        let top = SYS_VA + cpu_stack_top_off(n);
        sys.write(tss + 4, &top.to_le_bytes()).expect("inside");
        sys.write(tss + 36, &top.to_le_bytes()).expect("inside");
        sys.write(tss + 102, &104u16.to_le_bytes()).expect("inside");
        set_io_bitmap(sys, n, &[abi::PORT_SYSCALL, abi::PORT_PROBE]);
        let mb = cpu_stack_top_off(n);
        w(mb + abi::MB_NCMDS, 0);
        w(mb + abi::MB_KSTACK, top - IRET_FRAME_SIZE);
    }
    (sys_gpa + UPPER_PDPT_OFF) | t
}

/// Write the hardware interrupt frame the stub's `iretq` pops for vCPU `n`:
/// a return to CPL3 at `rip` with `rflags` and stack `rsp`.
pub(crate) fn write_user_iret_frame(sys: &Ram, n: usize, rip: u64, rflags: u64, rsp: u64) {
    let f = cpu_stack_top_off(n) - 40;
    for (i, v) in [rip, sel::UCODE as u64, rflags, rsp, sel::UDATA as u64]
        .iter()
        .enumerate()
    {
        sys.store(f + 8 * i as u64, *v)
            .expect("per-vCPU area inside the system region");
    }
}

/// Point the return RIP of vCPU `n`'s pending `iretq` (the frame the stub
/// returns to the vproc through) at `rip`, leaving the rest of the frame.
pub(crate) fn redirect_user_iret(sys: &Ram, n: usize, rip: u64) {
    sys.store(cpu_stack_top_off(n) - 40, rip)
        .expect("per-vCPU area inside the system region");
}

/// TSS limit: the 104-byte TSS, a 32-byte I/O bitmap for ports 0..256 and
/// the terminating byte.
const TSS_LIMIT: u32 = 104 + 32;

/// Let CPL3 `out` reach only `ports` (all others raise #GP). Where KVM keeps
/// CPL3 across `syscall`, the trampoline's `out` runs at CPL3 and needs its
/// port; a vproc that executes `out` itself gets #GP on every other port.
pub(crate) fn set_io_bitmap(sys: &Ram, n: usize, ports: &[u16]) {
    let mut bm = [0xFFu8; 33];
    for &p in ports {
        bm[p as usize / 8] &= !(1 << (p % 8));
    }
    sys.write(cpu_area_off(n) + CPU_TSS_OFF + 104, &bm)
        .expect("TSS inside the per-vCPU area");
}

pub(crate) fn kernel_sregs(fd: &VcpuFd, n: usize, cr3: u64) -> Result<kvm_sregs, MachineError> {
    let mut s = fd.get_sregs().map_err(kvm_err("GET_SREGS"))?;
    s.cs = seg(sel::KCODE, true, 0);
    s.ss = seg(sel::KDATA, false, 0);
    s.ds = null_seg();
    s.es = null_seg();
    s.fs = null_seg();
    s.gs = null_seg();
    s.fs.unusable = 0;
    s.gs.unusable = 0;
    s.fs.present = 1;
    s.gs.present = 1;
    s.fs.type_ = 3;
    s.gs.type_ = 3;
    s.fs.s = 1;
    s.gs.s = 1;
    let area = cpu_area_off(n);
    s.gdt.base = SYS_VA + area + CPU_GDT_OFF;
    s.gdt.limit = 8 * 9 - 1;
    s.idt.base = SYS_VA + IDT_OFF;
    s.idt.limit = (16 * (INT80_VECTOR + 1) - 1) as u16;
    s.tr = kvm_segment {
        base: SYS_VA + area + CPU_TSS_OFF,
        limit: TSS_LIMIT,
        selector: sel::TSS,
        type_: 11,
        present: 1,
        dpl: 0,
        db: 0,
        s: 0,
        l: 0,
        g: 0,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    s.ldt = null_seg();
    s.cr0 = x86::CR0_LONG;
    s.cr3 = cr3;
    s.cr4 = x86::CR4_LONG;
    s.efer = x86::EFER_LONG;
    Ok(s)
}

pub(crate) fn set_msrs(fd: &VcpuFd, entries: &[(u32, u64)]) -> Result<(), MachineError> {
    let e: Vec<kvm_msr_entry> = entries
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&e).map_err(|e| MachineError::Map(format!("{e:?}")))?;
    let n = fd.set_msrs(&msrs).map_err(kvm_err("SET_MSRS"))?;
    if n != entries.len() {
        return Err(MachineError::Kvm {
            what: "SET_MSRS (an MSR was rejected)",
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        });
    }
    Ok(())
}

pub(crate) fn setup_vcpu(fd: &VcpuFd, n: usize, cr3: u64) -> Result<(), MachineError> {
    set_msrs(
        fd,
        &[
            (
                msr::STAR,
                ((sel::USER_BASE as u64) << 48) | ((sel::KCODE as u64) << 32),
            ),
            (msr::LSTAR, 0),
            (msr::CSTAR, 0),
            (msr::FMASK, x86::SYSCALL_FMASK),
            (msr::KERNEL_GS_BASE, SYS_VA + cpu_stack_top_off(n)),
        ],
    )?;
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    fd.set_fpu(&fpu).map_err(kvm_err("SET_FPU"))?;
    reset_position(fd, n, cr3)
}

/// Put a vCPU at the stub's `iretq` at CPL0 with an empty mailbox.
pub(crate) fn reset_position(fd: &VcpuFd, n: usize, cr3: u64) -> Result<(), MachineError> {
    let s = kernel_sregs(fd, n, cr3)?;
    fd.set_sregs(&s).map_err(kvm_err("SET_SREGS"))?;
    let regs = kvm_bindings::kvm_regs {
        rip: SYS_VA + STUB_OFF + stub::offsets().iret,
        rsp: SYS_VA + cpu_stack_top_off(n) - IRET_FRAME_SIZE,
        rflags: x86::RFLAGS_FIXED,
        ..Default::default()
    };
    fd.set_regs(&regs).map_err(kvm_err("SET_REGS"))
}

/// Does the guest honour CR0.TS? Set it with a mailbox command (as the run
/// loop does), run one SSE instruction at CPL3 and expect #NM; then clear it
/// and expect the instruction to run. The probe code then leaves through
/// `syscall` to the trap probe's entry: LSTAR must still point there (it
/// does until `build` sets the final LSTAR after this probe).
pub(crate) fn probe_fpu(
    fd: &mut VcpuFd,
    sys: &Ram,
    cr3: u64,
    o: &StubOffsets,
) -> crate::fpu::FpuMode {
    use crate::fpu::FpuMode;
    let top = cpu_stack_top_off(0);
    let mut attempt = |cmd: u64| -> Option<u16> {
        reset_position(fd, 0, cr3).ok()?;
        write_user_iret_frame(sys, 0, TRAMP_VA + o.tramp_probe_fpu, x86::RFLAGS_FIXED, 0);
        // The run loop's mailbox program, for one command (its ops use no
        // register of the probe's to keep).
        let (rip, rsp, rsi) = crate::cpu::write_program(sys, top, &[abi::cmd(cmd, 0, 0)], &o.ops);
        let mut regs = fd.get_regs().ok()?;
        (regs.rip, regs.rsp, regs.rsi) = (rip, rsp, rsi);
        fd.set_regs(&regs).ok()?;
        let r = match fd.run() {
            Ok(VcpuExit::IoOut(port, _)) => Some(port),
            _ => None,
        };
        let _ = sys.store(top + abi::MB_NCMDS, 0);
        r
    };
    let with_ts = attempt(abi::CMD_SET_TS);
    let without_ts = attempt(abi::CMD_CLTS);
    let _ = reset_position(fd, 0, cr3);
    // #NM (vector 7) with TS set, the probe's syscall without.
    match (with_ts, without_ts) {
        (Some(p), Some(abi::PORT_PROBE)) if p == abi::PORT_VECTOR_BASE + 7 => FpuMode::Lazy,
        other => {
            log::info!("vkernel: CR0.TS not honoured here ({other:?}): eager FPU switching");
            FpuMode::Eager
        }
    }
}

/// Run one `syscall` from CPL3 and see where it lands.
pub(crate) fn probe(
    fd: &mut VcpuFd,
    sys: &Ram,
    cr3: u64,
    o: &StubOffsets,
) -> Result<TrapPath, MachineError> {
    set_msrs(fd, &[(msr::LSTAR, TRAMP_VA + o.tramp_probe_entry)])?;
    reset_position(fd, 0, cr3)?;
    // The iret frame the resume point pops: CPL3 at the probe's user code.
    let top = cpu_stack_top_off(0);
    write_user_iret_frame(sys, 0, TRAMP_VA + o.tramp_probe_user, x86::RFLAGS_FIXED, 0);
    sys.store(top + abi::MB_NCMDS, 0).expect("inside");
    let exit = match fd.run() {
        Ok(VcpuExit::IoOut(port, _)) => format!("out {port:#x}"),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("KVM_RUN error {e}"),
    };
    let s = fd.get_sregs().map_err(kvm_err("GET_SREGS"))?;
    let r = fd.get_regs().map_err(kvm_err("GET_REGS"))?;
    if exit != format!("out {:#x}", abi::PORT_PROBE) {
        let st = |i: u64| sys.load(top - ENTRY_FRAME_SIZE + 8 * i).unwrap_or(0);
        return Err(MachineError::Probe(format!(
            "expected the probe syscall to exit through port {:#x}, got {exit} at rip {:#x} cs {:#x} \
             rsp {:#x}; stack: error {:#x} rip {:#x} cs {:#x} rflags {:#x} rsp {:#x} ss {:#x}, cr2 {:#x}",
            abi::PORT_PROBE,
            r.rip,
            s.cs.selector,
            r.rsp,
            st(0),
            st(1),
            st(2),
            st(3),
            st(4),
            st(5),
            s.cr2
        )));
    }
    let want_rcx = TRAMP_VA + o.tramp_probe_user + 2;
    if r.rcx != want_rcx {
        return Err(MachineError::Probe(format!(
            "syscall left rcx={:#x}, expected the return address {want_rcx:#x}",
            r.rcx
        )));
    }
    match s.cs.selector & 3 {
        0 => Ok(TrapPath::Standard),
        3 => Ok(TrapPath::StaysInUserMode),
        cpl => Err(MachineError::Probe(format!("syscall landed at CPL{cpl}"))),
    }
}
