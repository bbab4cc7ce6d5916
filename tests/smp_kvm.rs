//! Several vCPUs, one thread each: independent vmspaces in parallel, one
//! vmspace shared by two vCPUs, and a munmap that must stop a vmspace that is
//! running on another vCPU.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

mod common;

use std::sync::Arc;

use common::*;
use vkernel::core::prelude::*;
use vkernel::guest::programs;

const DATA: u64 = 0x1000_0000;

fn smp_machine(test: &str, cpus: usize) -> Option<Machine> {
    if !std::path::Path::new("/dev/kvm").exists() {
        skip(test, "/dev/kvm is not available");
        return None;
    }
    Some(
        Machine::builder()
            .ram_size(128 << 20)
            .vcpus(cpus)
            .build()
            .expect("machine"),
    )
}

#[test]
fn vcpus_run_vmspaces_in_parallel() {
    let Some(m) = smp_machine("vcpus_run_vmspaces_in_parallel", 2) else {
        return;
    };
    let mut frames = FrameAlloc::new(FRAMES_START, 128 << 20).unwrap();
    let n = scaled(2000);
    let mut handles = Vec::new();
    for i in 0..2 {
        let vms = code_vmspace(&m, &mut frames, programs::syscall_check());
        let mut cpu = m.take_cpu(i).unwrap();
        handles.push(std::thread::spawn(move || {
            let mut f = TrapFrame::new(CODE_VA, 0);
            f.rcx = n;
            let mut count = 0;
            loop {
                match cpu.run(&vms, &mut f).unwrap() {
                    Trap::Syscall if f.rax == programs::SYS_CHECK => {
                        f.rax = programs::check_result(f.syscall_args());
                        count += 1;
                    }
                    Trap::Syscall if f.rax == programs::SYS_EXIT => break,
                    other => panic!("cpu {i}: {other:?}"),
                }
            }
            assert_eq!(f.rdi, 0);
            count
        }));
    }
    for h in handles {
        assert_eq!(h.join().unwrap(), n);
    }
}

#[test]
fn one_vmspace_on_two_vcpus_and_a_shootdown() {
    let Some(m) = smp_machine("one_vmspace_on_two_vcpus_and_a_shootdown", 2) else {
        return;
    };
    let mut frames = FrameAlloc::new(FRAMES_START, 128 << 20).unwrap();
    // Shared vmspace: each vCPU touches its own half, then spins on a
    // final page until the other side munmaps it.
    let vms = Arc::new(code_vmspace(&m, &mut frames, programs::touch()));
    let pages = scaled(512).max(16);
    let (_vpt, fr) = vpt_region(&m, &mut frames, &vms, DATA, 2 * pages, Vpte::RW | Vpte::U);
    let mut handles = Vec::new();
    for i in 0..2u64 {
        let vms = vms.clone();
        let mut cpu = m.take_cpu(i as usize).unwrap();
        handles.push(std::thread::spawn(move || {
            let mut f = TrapFrame::new(CODE_VA, 0);
            f.rdi = DATA + i * pages * 4096;
            f.rsi = pages;
            f.rdx = 1;
            match cpu.run(&vms, &mut f).unwrap() {
                Trap::Syscall if f.rax == programs::SYS_EXIT => {}
                other => panic!("cpu {i}: {other:?}"),
            }
            cpu
        }));
    }
    let mut cpus: Vec<Cpu> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, f) in fr.iter().enumerate() {
        let mut b = [0u8];
        m.ram().read(*f, &mut b).unwrap();
        assert_eq!(b[0], (i as u64 % pages) as u8, "page {i}");
    }
    // Now vCPU 1 spins in the vmspace while this thread munmaps the data:
    // the running vCPU is kicked, and afterwards its accesses fault.
    map_code(&m, &mut frames, &vms, 0x50_0000, programs::spin());
    let mut cpu1 = cpus.pop().unwrap();
    let v2 = vms.clone();
    let t = std::thread::spawn(move || {
        let mut f = TrapFrame::new(0x50_0000, 0);
        let trap = cpu1.run(&v2, &mut f).unwrap();
        (trap, cpu1)
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    vms.munmap(DATA, 2 * pages * 4096).unwrap();
    let (trap, mut cpu1) = t.join().unwrap();
    assert_eq!(
        trap,
        Trap::Interrupted,
        "munmap kicked the vCPU running the vmspace"
    );
    // On both vCPUs the old data is gone.
    map_code(&m, &mut frames, &vms, 0x60_0000, programs::load());
    for cpu in [&mut cpus[0], &mut cpu1] {
        let mut f = TrapFrame::new(0x60_0000, 0);
        f.rdi = DATA + 4096;
        assert!(matches!(
            cpu.run(&vms, &mut f).unwrap(),
            Trap::PageFault {
                reason: FaultReason::NoRegion,
                ..
            }
        ));
    }
}

#[test]
fn fpu_context_follows_a_vproc_between_vcpus() {
    use vkernel::core::fpu::FpuContext;
    let Some(m) = smp_machine("fpu_context_follows_a_vproc_between_vcpus", 2) else {
        return;
    };
    let mut frames = FrameAlloc::new(FRAMES_START, 128 << 20).unwrap();
    let vms = code_vmspace(&m, &mut frames, programs::sse());
    let mut c0 = m.take_cpu(0).unwrap();
    let mut c1 = m.take_cpu(1).unwrap();
    let ctx = FpuContext::new();
    let mut f = TrapFrame::new(CODE_VA, 0);
    f.rdi = 3.0f64.to_bits();
    f.rcx = 6;
    let mut x = 0.0f64;
    let mut on_first = true;
    loop {
        let cpu = if on_first { &mut c0 } else { &mut c1 };
        cpu.set_fpu(&ctx);
        let trap = match cpu.run(&vms, &mut f) {
            Err(RunError::FpuBusy { .. }) => {
                // The other vCPU still holds the state: release it there.
                let other = if on_first { &mut c1 } else { &mut c0 };
                other.release_fpu().unwrap();
                let cpu = if on_first { &mut c0 } else { &mut c1 };
                cpu.run(&vms, &mut f).unwrap()
            }
            r => r.unwrap(),
        };
        match trap {
            Trap::Syscall if f.rax == 1001 => {
                x = x * 3.0 + 1.0;
                f.rax = 0;
                on_first = !on_first; // migrate at every yield
            }
            Trap::Syscall if f.rax == programs::SYS_EXIT => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        f64::from_bits(f.rdi),
        x,
        "the SSE state moved with the vproc"
    );
    // A kicker outliving its vCPU is harmless.
    let k = c1.kicker();
    drop(c1);
    k.kick();
    // Machine handles are cheap clones of one machine.
    let m2 = m.clone();
    assert!(m2.vmspace_create().is_ok());
}

/// A kick that lands before an entry applied its mailbox commands (the
/// invalidation of a fork, say) must not leave them behind on that vCPU:
/// the vproc may run next on another vCPU, whose entry would not carry
/// them, and write through the stale hardware entry into a frame that is
/// no longer its own (a forked parent into its child's copy-on-write
/// stack: the child later returned to a corrupted address, SIGSEGV).
#[test]
fn commands_of_a_kicked_entry_are_applied_before_another_vcpu_runs_the_vmspace() {
    let Some(m) = smp_machine(
        "commands_of_a_kicked_entry_are_applied_before_another_vcpu_runs_the_vmspace",
        2,
    ) else {
        return;
    };
    let mut frames = FrameAlloc::new(FRAMES_START, 128 << 20).unwrap();
    let vms = code_vmspace(&m, &mut frames, programs::store());
    let (vpt, fr) = vpt_region(&m, &mut frames, &vms, DATA, 1, Vpte::RW | Vpte::U);
    let old = fr[0];
    let mut cpu0 = m.take_cpu(0).unwrap();
    let mut cpu1 = m.take_cpu(1).unwrap();
    let store = |cpu: &mut Cpu, value: u64| {
        let mut f = TrapFrame::new(CODE_VA, 0);
        f.rdi = DATA;
        f.rsi = value;
        let trap = cpu.run(&vms, &mut f).unwrap();
        (trap, f)
    };
    // vCPU 0 installs a writable hardware entry for DATA -> old.
    let (trap, f) = store(&mut cpu0, 0x1111);
    assert!(
        matches!(trap, Trap::Syscall if f.rax == programs::SYS_EXIT),
        "{trap:?}"
    );
    assert_eq!(m.ram().load(old).unwrap(), 0x1111);
    // The vpagetable moves DATA to a new frame (as a copy-on-write fault
    // or a remap does) and the old hardware entry is invalidated.
    let new = frames.alloc(m.ram()).unwrap();
    vpt.map(m.ram(), &mut frames, DATA, new, Vpte::RW | Vpte::U)
        .unwrap();
    vms.mcontrol(DATA, 4096, Mcontrol::Inval).unwrap();
    // A kick before vCPU 0's next entry: that run is interrupted (after it
    // took the invalidation's commands from the vmspace).
    cpu0.kicker().kick();
    let (trap, _) = store(&mut cpu0, 0x2222);
    assert_eq!(trap, Trap::Interrupted);
    // vCPU 1 runs the vmspace next: its store must reach the new frame.
    let (trap, f) = store(&mut cpu1, 0x3333);
    assert!(
        matches!(trap, Trap::Syscall if f.rax == programs::SYS_EXIT),
        "{trap:?}"
    );
    assert_eq!(
        m.ram().load(old).unwrap(),
        0x1111,
        "vCPU 1 wrote through the stale entry into the old frame"
    );
    assert_eq!(m.ram().load(new).unwrap(), 0x3333);
    // And vCPU 0 goes on normally.
    let (trap, f) = store(&mut cpu0, 0x4444);
    assert!(
        matches!(trap, Trap::Syscall if f.rax == programs::SYS_EXIT),
        "{trap:?}"
    );
    assert_eq!(m.ram().load(new).unwrap(), 0x4444);
}
