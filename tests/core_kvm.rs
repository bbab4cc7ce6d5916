//! Integration tests of the core mechanism on /dev/kvm: vpagetable-resolved
//! faults, traps, A/M emulation, invalidation, isolation and copyin/copyout.
//! Each test SKIPs loudly where /dev/kvm is absent.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

mod common;

use common::*;
use vkernel::core::prelude::*;
use vkernel::guest::programs;

const DATA: u64 = 0x1000_0000;
const RW: u64 = Vpte::RW | Vpte::U;

#[test]
fn probe_picks_the_path_this_host_needs() {
    let Some(m) = machine("probe_picks_the_path_this_host_needs", 16 << 20) else {
        return;
    };
    let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    let expected = if pvm {
        TrapPath::StaysInUserMode
    } else {
        TrapPath::Standard
    };
    eprintln!("trap path: {:?} (kvm_pvm loaded: {pvm})", m.trap_path());
    assert_eq!(m.trap_path(), expected);
}

#[test]
fn ten_thousand_resolved_faults_no_traps() {
    let Some(mut e) = Env::with_ram("ten_thousand_resolved_faults_no_traps", 128 << 20) else {
        return;
    };
    let pages = scaled(10_000);
    for write in [false, true] {
        let vms = e.vmspace_with(programs::touch());
        let (vpt, frames) = e.vpt_region(&vms, DATA, pages, RW);
        // Give each page a byte so the read sum is checkable.
        for (i, f) in frames.iter().enumerate() {
            e.m.ram().write(*f, &[(i % 7) as u8]).unwrap();
        }
        let before = e.cpu.stats();
        let mut f = frame(DATA, pages, write as u64);
        let sum = e.run_to_exit(&vms, &mut f);
        let after = e.cpu.stats();
        assert_eq!(after.page_faults, before.page_faults, "no PageFault trap");
        let exits = after.exits - before.exits;
        let resolved = after.resolved_faults - before.resolved_faults;
        eprintln!("write={write}: {pages} pages, {exits} exits, {resolved} resolved faults");
        if write {
            // Every page gets written: M must be set on each VPTE.
            for i in 0..pages {
                let v = vpt.lookup(e.m.ram(), DATA + i * 4096).unwrap();
                assert!(v.accessed() && v.modified(), "page {i}: {v:?}");
                let mut b = [0u8];
                e.m.ram().read(frames[i as usize], &mut b).unwrap();
                assert_eq!(b[0], i as u8);
            }
            assert!(exits <= pages + pages / 8 + 2, "{exits} exits");
        } else {
            let expect: u64 = (0..pages).map(|i| i % 7).sum();
            assert_eq!(sum, expect);
            // Fault-around: far fewer exits than pages.
            assert!(exits * 4 < pages, "{exits} exits for {pages} pages");
            // Read-only touching never sets M.
            assert!(!vpt.lookup(e.m.ram(), DATA).unwrap().modified());
        }
    }
}

#[test]
fn invalid_page_gives_one_page_fault() {
    let Some(mut e) = Env::new("invalid_page_gives_one_page_fault") else {
        return;
    };
    for (prog, access) in [
        (programs::load(), Access::Read),
        (programs::store(), Access::Write),
    ] {
        let vms = e.vmspace_with(prog);
        let (vpt, _) = e.vpt_region(&vms, DATA, 4, RW);
        vpt.unmap(e.m.ram(), DATA + 0x2000);
        let before = e.cpu.stats().page_faults;
        let mut f = frame(DATA + 0x2008, 5, 0);
        let (addr, a, reason) = e.run_to_fault(&vms, &mut f);
        assert_eq!(addr, DATA + 0x2008);
        assert_eq!(a, access);
        assert_eq!(reason, FaultReason::NotValid { level: 1 });
        assert_eq!(
            f.rip, CODE_VA,
            "the frame points at the faulting instruction"
        );
        assert_eq!(e.cpu.stats().page_faults, before + 1);
        // The vkernel maps the page; the vproc continues and finishes.
        let fr = e.frames.alloc(e.m.ram()).unwrap();
        e.m.ram().store(fr + 8, 0x77).unwrap();
        vpt.map(e.m.ram(), &mut e.frames, DATA + 0x2000, fr, RW)
            .unwrap();
        let r = e.run_to_exit(&vms, &mut f);
        if access == Access::Read {
            assert_eq!(r, 0x77);
        } else {
            assert_eq!(e.m.ram().load(fr + 8).unwrap(), 5);
        }
        assert_eq!(
            e.cpu.stats().page_faults,
            before + 1,
            "exactly one PageFault"
        );
    }
}

#[test]
fn write_to_read_only_vpte_is_a_protection_fault() {
    let Some(mut e) = Env::new("write_to_read_only_vpte_is_a_protection_fault") else {
        return;
    };
    let vms = e.vmspace_with(programs::store());
    let (vpt, frames) = e.vpt_region(&vms, DATA, 1, Vpte::U);
    let mut f = frame(DATA + 16, 9, 0);
    assert_eq!(
        e.run_to_fault(&vms, &mut f),
        (DATA + 16, Access::Write, FaultReason::Protection)
    );
    assert_eq!(
        e.m.ram().load(frames[0] + 16).unwrap(),
        0,
        "nothing written"
    );
    assert!(!vpt.lookup(e.m.ram(), DATA).unwrap().modified());
    // A read of the same page works.
    let vms2 = e.vmspace_with(programs::load());
    vms2.mmap(DATA, 4096, Backing::PageTable).unwrap();
    vms2.mcontrol(DATA, 4096, Mcontrol::SetMap { root: vpt.root() })
        .unwrap();
    let mut f = frame(DATA + 16, 0, 0);
    assert_eq!(e.run_to_exit(&vms2, &mut f), 0);
}

#[test]
fn modified_bit_set_only_on_write_and_rearmed() {
    let Some(mut e) = Env::new("modified_bit_set_only_on_write_and_rearmed") else {
        return;
    };
    let load = e.vmspace_with(programs::load());
    let (vpt, _) = e.vpt_region(&load, DATA, 1, RW);
    let store = e.vmspace_with(programs::store());
    store.mmap(DATA, 4096, Backing::PageTable).unwrap();
    store
        .mcontrol(DATA, 4096, Mcontrol::SetMap { root: vpt.root() })
        .unwrap();
    let ram = e.m.ram().clone();
    let v = || vpt.lookup(&ram, DATA).unwrap();
    assert!(!v().accessed() && !v().modified());
    let mut f = frame(DATA, 0, 0);
    e.run_to_exit(&load, &mut f);
    assert!(
        v().accessed() && !v().modified(),
        "read: A only ({:?})",
        v()
    );
    let r0 = e.cpu.stats().resolved_faults;
    let mut f = frame(DATA, 1, 0);
    e.run_to_exit(&store, &mut f);
    assert!(v().modified(), "write sets M");
    assert!(
        e.cpu.stats().resolved_faults > r0,
        "the first write faulted"
    );
    // Clear M (and A): the hardware entry is invalidated with it.
    let old = store.clear_vpte_bits(DATA, Vpte::M | Vpte::A).unwrap();
    assert!(old.modified());
    assert!(!v().modified() && !v().accessed());
    let mut f = frame(DATA, 0, 0);
    e.run_to_exit(&load, &mut f);
    // (A stays clear here: the load vmspace's own mapping was not
    // invalidated, so its read was not seen, exactly like a TLB hit.)
    assert!(!v().modified(), "a read after clearing leaves M clear");
    // The store vmspace had a writable entry: clearing M must have removed it.
    let r1 = e.cpu.stats().resolved_faults;
    let mut f = frame(DATA, 2, 0);
    e.run_to_exit(&store, &mut f);
    assert!(v().modified(), "M re-armed: the next write sets it again");
    assert!(
        e.cpu.stats().resolved_faults > r1,
        "the write after clearing faulted again"
    );
}

#[test]
fn syscalls_with_checked_arguments_and_results() {
    let Some(mut e) = Env::new("syscalls_with_checked_arguments_and_results") else {
        return;
    };
    let n = scaled(100_000);
    let vms = e.vmspace_with(programs::syscall_check());
    let mut f = frame(0, 0, 0);
    f.rcx = n;
    let e0 = e.cpu.stats().exits;
    let mut count = 0u64;
    loop {
        match e.run(&vms, &mut f) {
            Trap::Syscall if f.rax == programs::SYS_CHECK => {
                let a = f.syscall_args();
                assert_eq!(a[0], count, "argument 1 is the counter");
                assert_eq!(a[1], count + 1);
                assert_eq!(a[2], 0x1122_3344_5566_7788);
                assert_eq!(a[3], count << 7);
                assert_eq!(a[4], 0x55);
                assert_eq!(a[5], !count);
                assert_eq!(f.rcx, f.rip, "rcx holds the return address");
                f.rax = programs::check_result(a);
                count += 1;
            }
            Trap::Syscall if f.rax == programs::SYS_EXIT => break,
            other => panic!("after {count} syscalls: {other:?} at {:#x}", f.rip),
        }
    }
    assert_eq!(count, n);
    assert_eq!(f.rdi, 0, "the guest checked every result");
    // One exit per syscall (plus the exit call and the code page fault).
    let exits = e.cpu.stats().exits - e0;
    assert!(exits <= n + 3, "{exits} exits for {n} syscalls");
}

#[test]
fn two_vmspaces_cannot_read_each_other() {
    let Some(mut e) = Env::new("two_vmspaces_cannot_read_each_other") else {
        return;
    };
    let a = e.vmspace_with(programs::load());
    let b = e.vmspace_with(programs::load());
    let (_, fa) = e.vpt_region(&a, DATA, 1, RW);
    let (_, fb) = e.vpt_region(&b, DATA, 1, RW);
    e.m.ram().store(fa[0], 0xAAAA).unwrap();
    e.m.ram().store(fb[0], 0xBBBB).unwrap();
    let (_, fa2) = e.vpt_region(&a, DATA + 0x10_0000, 1, RW);
    e.m.ram().store(fa2[0], 0xA2).unwrap();
    for _ in 0..3 {
        let mut f = frame(DATA, 0, 0);
        assert_eq!(e.run_to_exit(&a, &mut f), 0xAAAA);
        let mut f = frame(DATA, 0, 0);
        assert_eq!(e.run_to_exit(&b, &mut f), 0xBBBB);
    }
    // b cannot see a's second page at the same virtual address.
    let mut f = frame(DATA + 0x10_0000, 0, 0);
    assert!(matches!(
        e.run(&b, &mut f),
        Trap::PageFault {
            reason: FaultReason::NoRegion,
            ..
        }
    ));
    // Nor the stub, the system region, or the trampoline for writing.
    for addr in [
        0xffff_8000_0000_1000u64,
        0xffff_8000_0020_0000,
        0xffff_8000_0000_0000,
    ] {
        let mut f = frame(addr, 0, 0);
        match e.run(&b, &mut f) {
            Trap::PageFault { addr: a2, .. } => assert_eq!(a2, addr),
            other => panic!("reading {addr:#x}: {other:?}"),
        }
    }
    // RAM outside any mapping is unreachable: its guest-physical address
    // means nothing as a virtual address.
    let mut f = frame(fa[0], 0, 0);
    assert!(matches!(e.run(&b, &mut f), Trap::PageFault { .. }));
}

#[test]
fn jumps_into_the_void_trap_cleanly() {
    let Some(mut e) = Env::new("jumps_into_the_void_trap_cleanly") else {
        return;
    };
    let vms = e.vmspace_with(programs::jump());
    let mut f = frame(0x5555_0000, 0, 0);
    assert_eq!(
        e.run_to_fault(&vms, &mut f),
        (0x5555_0000, Access::Execute, FaultReason::NoRegion)
    );
    assert_eq!(f.rip, 0x5555_0000);
    // Executing a no-execute data page.
    let (_, _) = e.vpt_region(&vms, DATA, 1, RW | Vpte::NX);
    let mut f = frame(DATA, 0, 0);
    assert!(matches!(
        e.run(&vms, &mut f),
        Trap::PageFault {
            access: Access::Execute,
            reason: FaultReason::Protection,
            ..
        }
    ));
    // A non-canonical target: #GP.
    let mut f = frame(0x8000_0000_0000_0000, 0, 0);
    assert!(matches!(
        e.run(&vms, &mut f),
        Trap::Exception { vector: 13, .. }
    ));
    // The machine still works afterwards.
    let mut f = frame(CODE_VA + 0x100, 0, 0);
    assert!(matches!(
        e.run(&vms, &mut f),
        Trap::Exception { .. } | Trap::PageFault { .. }
    ));
}

#[test]
fn exceptions_reach_the_host() {
    let Some(mut e) = Env::new("exceptions_reach_the_host") else {
        return;
    };
    let cases: [(&[u8], u8, Option<u64>); 4] = [
        (programs::ud(), 6, Some(0)),
        (programs::divzero(), 0, Some(0)),
        // int3 through a DPL0 gate: #GP with the gate's selector as error
        // code on VT-x/SVM; a PVM-derived KVM delivers #BP (checked below).
        (programs::int3(), 13, Some(3 * 8 + 2)),
        // A vproc's own `out` to the stub's port: #GP, not a fake stub exit.
        (programs::outport(), 13, Some(0)),
    ];
    for (code, vector, err) in cases {
        let vms = e.vmspace_with(code);
        let mut f = frame(0, 0, 0);
        match e.run(&vms, &mut f) {
            Trap::Exception {
                vector: 3,
                error_code: 0,
            } if vector == 13 && e.m.trap_path() == TrapPath::StaysInUserMode => {
                eprintln!("int3 gave #BP on this KVM (PVM quirk)");
            }
            Trap::Exception {
                vector: v,
                error_code,
            } => {
                assert_eq!(
                    v, vector,
                    "expected vector {vector}, got {v} (error {error_code:#x})"
                );
                if let Some(err) = err {
                    // QEMU TCG before 8.0 (Debian 12's 7.2, used by the SVM
                    // stage, ci/svm-guest.sh, which sets VKERNEL_TEST_TCG)
                    // gives IDT-caused faults in long mode the error code
                    // vector * 16 + 2 instead of vector * 8 + 2 (fixed by
                    // QEMU's "target/i386: fix error code for exceptions
                    // caused by IDT accesses").
                    let qemu_idt_bug = err & 2 != 0 && error_code == (err >> 3) * 16 + (err & 7);
                    if qemu_idt_bug && std::env::var_os("VKERNEL_TEST_TCG").is_some() {
                        eprintln!("error code {error_code:#x}, not {err:#x}: QEMU TCG's IDT error-code bug");
                    } else {
                        assert_eq!(error_code, err);
                    }
                }
                assert!(f.rip >= CODE_VA && f.rip < CODE_VA + 0x20);
            }
            other => panic!("vector {vector}: {other:?} at {:#x}", f.rip),
        }
    }
    // #DB from the trap flag: one instruction, then a debug trap.
    let vms = e.vmspace_with(programs::spin());
    let mut f = frame(0, 0, 0);
    f.rflags |= 0x100;
    assert!(matches!(
        e.run(&vms, &mut f),
        Trap::Exception { vector: 1, .. }
    ));
    assert_eq!(f.rax, 1, "exactly one instruction ran");
    // #AC: alignment checking on with an unaligned load.
    let vms = e.vmspace_with(programs::load());
    e.vpt_region(&vms, DATA, 1, RW);
    let mut f = frame(DATA + 1, 0, 0);
    f.rflags |= 1 << 18;
    match e.run(&vms, &mut f) {
        Trap::Exception { vector: 17, .. } => {}
        // QEMU TCG never raises #AC (alignment checking is not emulated):
        // the load just runs and the program exits.
        Trap::Syscall if std::env::var_os("VKERNEL_TEST_TCG").is_some() => {
            eprintln!("no #AC: QEMU TCG does not emulate alignment checking")
        }
        other => panic!("expected #AC, got {other:?} at {:#x}", f.rip),
    }
}

#[test]
fn munmap_and_inval_take_effect_before_the_vproc_runs_again() {
    let Some(mut e) = Env::new("munmap_and_inval_take_effect_before_the_vproc_runs_again") else {
        return;
    };
    let vms = e.vmspace_with(programs::load());
    let (vpt, frames) = e.vpt_region(&vms, DATA, 32, RW);
    e.m.ram().store(frames[3], 1).unwrap();
    let mut f = frame(DATA + 3 * 4096, 0, 0);
    assert_eq!(e.run_to_exit(&vms, &mut f), 1);
    // Point the VPTE at another frame without INVAL: the old mapping may
    // persist (like a TLB). After INVAL the new frame must be seen.
    let nf = e.frames.alloc(e.m.ram()).unwrap();
    e.m.ram().store(nf, 2).unwrap();
    vpt.map(e.m.ram(), &mut e.frames, DATA + 3 * 4096, nf, RW)
        .unwrap();
    vms.mcontrol(DATA + 3 * 4096, 4096, Mcontrol::Inval)
        .unwrap();
    let before = e.cpu.stats();
    let mut f = frame(DATA + 3 * 4096, 0, 0);
    assert_eq!(
        e.run_to_exit(&vms, &mut f),
        2,
        "INVAL dropped the stale mapping"
    );
    // Where syscalls leave the vCPU in user mode, the invalidation went in
    // at CPL0 straight from the last exit (`Cpu::enter_stub_for_commands`):
    // the stub applied it and returned to the vproc, no bounce exit.
    let after = e.cpu.stats();
    if e.m.trap_path() == TrapPath::StaysInUserMode {
        assert_eq!(after.stub_bounces, before.stub_bounces + 1, "{after:?}");
        assert_eq!(after.bounces, before.bounces, "{after:?}");
    }
    // Invalid VPTE + INVAL: the next access faults.
    vpt.unmap(e.m.ram(), DATA + 3 * 4096);
    vms.mcontrol(DATA, 32 * 4096, Mcontrol::Inval).unwrap();
    let mut f = frame(DATA + 3 * 4096, 0, 0);
    assert!(matches!(e.run(&vms, &mut f), Trap::PageFault { .. }));
    // munmap: the region and its hardware entries go away.
    let mut f = frame(DATA + 5 * 4096, 0, 0);
    assert_eq!(e.run_to_exit(&vms, &mut f), 0);
    vms.munmap(DATA, 32 * 4096).unwrap();
    let mut f = frame(DATA + 5 * 4096, 0, 0);
    assert!(matches!(
        e.run(&vms, &mut f),
        Trap::PageFault {
            reason: FaultReason::NoRegion,
            ..
        }
    ));
}

#[test]
fn destroyed_vmspaces_recycle_tables_without_leaking_mappings() {
    let Some(mut e) = Env::new("destroyed_vmspaces_recycle_tables_without_leaking_mappings") else {
        return;
    };
    let base = e.m.free_table_pages();
    let (vpt, frames) = {
        let vms = e.vmspace_with(programs::touch());
        let r = e.vpt_region(&vms, DATA, 64, RW);
        let mut f = frame(DATA, 64, 1);
        e.run_to_exit(&vms, &mut f);
        r
    }; // destroyed here
    for round in 0..scaled(20) {
        // A fresh vmspace reusing the recycled tables sees none of the old
        // mappings.
        let vms = e.vmspace_with(programs::load());
        let mut f = frame(DATA + 8 * 4096, 0, 0);
        match e.run(&vms, &mut f) {
            Trap::PageFault {
                reason: FaultReason::NoRegion,
                ..
            } => {}
            other => panic!("round {round}: {other:?}"),
        }
    }
    // After a run applied the scrub, the pool is back where it started.
    let vms = e.vmspace_with(programs::load());
    let mut f = frame(DATA, 0, 0);
    let _ = e.run(&vms, &mut f);
    drop(vms);
    let mut f = frame(DATA, 0, 0);
    let vms = e.vmspace_with(programs::load());
    let _ = e.run(&vms, &mut f);
    drop(vms);
    let vms = e.vmspace_with(programs::load());
    let _ = e.run(&vms, &mut f);
    drop(vms);
    let free = e.m.free_table_pages();
    assert!(
        free + 8 >= base,
        "pool leaked: {free} free vs {base} at start"
    );
    let _ = (vpt, frames);
}

#[test]
fn copyin_copyout_through_the_vpagetable() {
    let Some(mut e) = Env::new("copyin_copyout_through_the_vpagetable") else {
        return;
    };
    let vms = e.vmspace_with(programs::load());
    let (vpt, frames) = e.vpt_region(&vms, DATA, 3, RW);
    // Across a page boundary.
    let msg: Vec<u8> = (0..4000u32).map(|i| (i * 7) as u8).collect();
    vms.copy_to_user(DATA + 4000, &msg).unwrap();
    let mut back = vec![0u8; 4000];
    vms.copy_from_user(DATA + 4000, &mut back).unwrap();
    assert_eq!(back, msg);
    let mut raw = [0u8; 96];
    e.m.ram().read(frames[0] + 4000, &mut raw).unwrap();
    assert_eq!(&raw[..], &msg[..96]);
    assert!(vpt.lookup(e.m.ram(), DATA).unwrap().modified());
    assert!(vpt.lookup(e.m.ram(), DATA + 4096).unwrap().modified());
    assert!(!vpt.lookup(e.m.ram(), DATA + 8192).unwrap().accessed());
    // The vproc sees what copyout wrote.
    let mut f = frame(DATA + 4096, 0, 0);
    let got = e.run_to_exit(&vms, &mut f);
    assert_eq!(got.to_le_bytes()[..], msg[96..104]);
    // Unmapped: EFAULT at the first bad byte.
    let err = vms
        .copy_from_user(DATA + 3 * 4096 - 8, &mut [0u8; 16])
        .unwrap_err();
    assert!(
        matches!(err, vkernel::core::uaccess::UaccessError::Fault { addr, .. } if addr == DATA + 3 * 4096)
    );
    // Read-only page: copyout refused, copyin fine.
    vpt.map(e.m.ram(), &mut e.frames, DATA + 8192, frames[2], Vpte::U)
        .unwrap();
    assert!(vms.copy_to_user(DATA + 8192, b"x").is_err());
    assert!(vms.copy_from_user(DATA + 8192, &mut [0u8; 1]).is_ok());
    // Supervisor-only VPTE: no user access either way.
    vpt.map(e.m.ram(), &mut e.frames, DATA + 8192, frames[2], Vpte::RW)
        .unwrap();
    assert!(vms.copy_from_user(DATA + 8192, &mut [0u8; 1]).is_err());
    // Wrapping range.
    assert!(vms.copy_from_user(u64::MAX - 2, &mut [0u8; 8]).is_err());
}

#[test]
fn kicker_stops_a_spinning_vproc() {
    let Some(mut e) = Env::new("kicker_stops_a_spinning_vproc") else {
        return;
    };
    let vms = e.vmspace_with(programs::spin());
    let k = e.cpu.kicker();
    // A kick before the run: the run returns at once.
    k.kick();
    let mut f = frame(0, 0, 0);
    assert_eq!(e.run(&vms, &mut f), Trap::Interrupted);
    for _ in 0..5 {
        let k2 = k.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            k2.kick();
        });
        let start = std::time::Instant::now();
        assert_eq!(e.run(&vms, &mut f), Trap::Interrupted);
        eprintln!("kicked after {:?}, rax={}", start.elapsed(), f.rax);
        t.join().unwrap();
    }
    assert!(f.rax > 0, "the vproc made progress between kicks");
    // It resumes where it was.
    let before = f.rax;
    let k2 = k.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        k2.kick();
    });
    assert_eq!(e.run(&vms, &mut f), Trap::Interrupted);
    assert!(f.rax > before);
    t.join().unwrap();
}

#[test]
fn kick_storm_never_corrupts_a_vproc() {
    let Some(mut e) = Env::new("kick_storm_never_corrupts_a_vproc") else {
        return;
    };
    // A vproc making checked syscalls and touching pages while another
    // thread kicks the vCPU as fast as it can: kicks land in the guest, in
    // the stub and in the host; every syscall result must still check out.
    let n = scaled(3000);
    let vms = e.vmspace_with(programs::syscall_check());
    let storm = KickStorm::start(e.cpu.kicker());
    // Phase 1: page faults resolved through the stub, one page at a time.
    let pages = scaled(3000);
    let tv = e.vmspace_with(programs::touch());
    tv.set_fault_around(1);
    let (_, frames) = e.vpt_region(&tv, DATA, pages, RW);
    for (i, fr) in frames.iter().enumerate() {
        e.m.ram().write(*fr, &[(i % 5) as u8]).unwrap();
    }
    let mut f = frame(DATA, pages, 0);
    let sum = loop {
        match e.run(&tv, &mut f) {
            Trap::Interrupted => {}
            Trap::Syscall if f.rax == programs::SYS_EXIT => break f.rdi,
            other => panic!("touch: {other:?} at {:#x}", f.rip),
        }
    };
    assert_eq!(sum, (0..pages).map(|i| i % 5).sum::<u64>());
    // Phase 2: syscalls.
    let mut f = frame(0, 0, 0);
    f.rcx = n;
    let (mut calls, mut interrupts) = (0u64, 0u64);
    loop {
        match e.run(&vms, &mut f) {
            Trap::Syscall if f.rax == programs::SYS_CHECK => {
                assert_eq!(f.syscall_args()[0], calls);
                f.rax = programs::check_result(f.syscall_args());
                calls += 1;
            }
            Trap::Syscall if f.rax == programs::SYS_EXIT => break,
            Trap::Interrupted => interrupts += 1,
            other => panic!("after {calls} calls: {other:?} at {:#x}", f.rip),
        }
    }
    // Phase 3: two vmspaces alternating at every run (a CR3 switch on each
    // entry), each reading its own value at the same virtual address.
    let v2 = [
        e.vmspace_with(programs::load()),
        e.vmspace_with(programs::load()),
    ];
    for (k, v) in v2.iter().enumerate() {
        let (_, fr) = e.vpt_region(v, DATA, 1, RW);
        e.m.ram().store(fr[0], 0x1000 + k as u64).unwrap();
    }
    let mut reads = 0;
    for round in 0..n {
        let k = (round % 2) as usize;
        let mut f = frame(DATA, 0, 0);
        loop {
            match e.run(&v2[k], &mut f) {
                Trap::Interrupted => interrupts += 1,
                Trap::Syscall if f.rax == programs::SYS_EXIT => {
                    assert_eq!(f.rdi, 0x1000 + k as u64, "vmspace {k} read another's page");
                    reads += 1;
                    break;
                }
                other => panic!("vmspace {k}: {other:?} at {:#x}", f.rip),
            }
        }
    }
    assert_eq!(reads, n);
    let kicks = storm.stop();
    eprintln!(
        "{calls} syscalls, {kicks} kicks, {interrupts} interrupted runs, {} landed in the stub",
        e.cpu.stats().kicks_in_stub
    );
    assert_eq!(calls, n);
    assert_eq!(f.rdi, 0, "the guest saw every result right");
    assert!(interrupts > 0);
}
