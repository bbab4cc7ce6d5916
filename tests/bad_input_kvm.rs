//! Every public call given out-of-range, unaligned, overlapping or garbage
//! arguments returns an error and leaves state unchanged.

mod common;

use common::*;
use vkernel::core::machine::MachineError;
use vkernel::core::prelude::*;
use vkernel::guest::programs;

#[test]
fn machine_builder_rejects_bad_configurations() {
    if !std::path::Path::new("/dev/kvm").exists() {
        skip(
            "machine_builder_rejects_bad_configurations",
            "/dev/kvm is not available",
        );
        return;
    }
    let err = |b: vkernel::core::machine::MachineBuilder| b.build().unwrap_err();
    assert!(matches!(
        err(Machine::builder().ram_size(0)),
        MachineError::RamZero
    ));
    assert!(matches!(
        err(Machine::builder().ram_size(4097)),
        MachineError::RamUnaligned(4097)
    ));
    assert!(matches!(
        err(Machine::builder().ram_size(1 << 62)),
        MachineError::RamTooLarge { .. }
    ));
    assert!(matches!(
        err(Machine::builder().vcpus(0)),
        MachineError::Vcpus { .. }
    ));
    assert!(matches!(
        err(Machine::builder().vcpus(10_000)),
        MachineError::Vcpus { .. }
    ));
    assert!(matches!(
        err(Machine::builder().sys_size(3 << 20)),
        MachineError::SysSize(_)
    ));
    let e = err(Machine::builder().ram_path("/nonexistent-dir/ram"));
    assert!(matches!(e, MachineError::RamFile { .. }));
    assert!(e.to_string().contains("/nonexistent-dir/ram"), "{e}");
    // A RAM file on a path works and has the RAM's size.
    let dir = std::env::temp_dir().join(format!("vkernel-ram-{}", std::process::id()));
    let m = Machine::builder()
        .ram_size(8 << 20)
        .ram_path(&dir)
        .build()
        .unwrap();
    assert_eq!(std::fs::metadata(&dir).unwrap().len(), 8 << 20);
    m.ram().store(0x1000, 0x55).unwrap();
    drop(m);
    std::fs::remove_file(&dir).unwrap();
}

#[test]
fn vmspace_calls_reject_garbage_and_change_nothing() {
    let Some(mut e) = Env::new("vmspace_calls_reject_garbage_and_change_nothing") else {
        return;
    };
    let vms = e.vmspace_with(programs::load());
    vms.mmap(0x1000_0000, 0x10000, Backing::PageTable).unwrap();
    let before = vms.mappings();
    let ram = e.m.ram_size();
    let bad: Vec<(Result<(), VmspaceError>, &str)> = vec![
        (vms.mmap(0x1000, 0, Backing::PageTable), "zero length"),
        (
            vms.mmap(0x1001, 0x1000, Backing::PageTable),
            "unaligned address",
        ),
        (
            vms.mmap(0x2000, 0x1001, Backing::PageTable),
            "unaligned length",
        ),
        (
            vms.mmap(0x1000_8000, 0x10000, Backing::PageTable),
            "overlap (tail)",
        ),
        (
            vms.mmap(0x0fff_f000, 0x2000, Backing::PageTable),
            "overlap (head)",
        ),
        (
            vms.mmap(0x0f00_0000, 0x0200_0000, Backing::PageTable),
            "overlap (covering)",
        ),
        (
            vms.mmap(0x7fff_ffff_f000, 0x1000, Backing::PageTable),
            "trampoline page",
        ),
        (
            vms.mmap(0xffff_8000_0000_0000, 0x1000, Backing::PageTable),
            "kernel half",
        ),
        (vms.mmap(!0xfff, 0x2000, Backing::PageTable), "wraps"),
        (
            vms.mmap(
                0x2000_0000,
                0x1000,
                Backing::Linear {
                    gpa: ram,
                    prot: Prot::RW,
                },
            ),
            "linear past RAM",
        ),
        (
            vms.mmap(
                0x2000_0000,
                0x2000,
                Backing::Linear {
                    gpa: ram - 0x1000,
                    prot: Prot::RW,
                },
            ),
            "linear straddling RAM end",
        ),
        (
            vms.mmap(
                0x2000_0000,
                0x1000,
                Backing::Linear {
                    gpa: 0x123,
                    prot: Prot::RW,
                },
            ),
            "linear unaligned gpa",
        ),
        (vms.munmap(0x1001, 0x1000), "munmap unaligned"),
        (vms.munmap(0x1000, 0), "munmap zero"),
        (
            vms.munmap(0x7fff_ffff_0000, 0x10_0000),
            "munmap past user space",
        ),
        (
            vms.mcontrol(0x1000_0000, 0x10000, Mcontrol::SetMap { root: ram }),
            "root outside RAM",
        ),
        (
            vms.mcontrol(0x1000_0000, 0x10000, Mcontrol::SetMap { root: 0x1008 }),
            "root unaligned",
        ),
        (
            vms.mcontrol(0x1000_0000, 0x20000, Mcontrol::SetMap { root: 0x1000 }),
            "SETMAP past the mapping",
        ),
        (
            vms.mcontrol(CODE_VA, 0x1000, Mcontrol::SetMap { root: 0x1000 }),
            "SETMAP on a linear mapping",
        ),
        (
            vms.mcontrol(0x1000_0001, 0x1000, Mcontrol::Inval),
            "INVAL unaligned",
        ),
    ];
    for (r, what) in bad {
        assert!(r.is_err(), "{what} was accepted");
        eprintln!("{what}: {}", r.unwrap_err());
        assert_eq!(vms.mappings(), before, "{what} changed the mappings");
        assert_eq!(vms.root_of(0x1000_0000), None);
    }
    // Garbage frames are rejected by run without touching the vCPU.
    for (field, f) in [
        ("rip", TrapFrame::new(0x8000_0000_0000_0000, 0)),
        ("rsp", TrapFrame::new(CODE_VA, 0x0000_8000_0000_0000)),
    ] {
        let mut f2 = f;
        match e.cpu.run(&vms, &mut f2) {
            Err(RunError::BadFrame { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{field}: {other:?}"),
        }
        assert_eq!(f2, f);
    }
    // The vCPU still works.
    vms.mcontrol(0x1000_0000, 0x10000, Mcontrol::SetMap { root: 0x1000 })
        .unwrap();
    let mut f = frame(0x1000_0000, 0, 0);
    assert!(matches!(e.run(&vms, &mut f), Trap::PageFault { .. }));
    // A vmspace from another machine is refused.
    let other = Machine::builder().ram_size(8 << 20).build().unwrap();
    let foreign = other.vmspace_create().unwrap();
    assert!(matches!(
        e.cpu.run(&foreign, &mut frame(0, 0, 0)),
        Err(RunError::WrongMachine)
    ));
}

#[test]
fn garbage_vpagetables_give_page_faults_not_panics() {
    let Some(mut e) = Env::new("garbage_vpagetables_give_page_faults_not_panics") else {
        return;
    };
    let vms = e.vmspace_with(programs::load());
    let data = 0x1000_0000u64;
    let root = e.frames.alloc(e.m.ram()).unwrap();
    vms.mmap(data, 0x20_0000, Backing::PageTable).unwrap();
    vms.mcontrol(data, 0x20_0000, Mcontrol::SetMap { root })
        .unwrap();
    let ram = e.m.ram().clone();
    let size = ram.size();
    // VPTE chains pointing outside RAM, at the system region, or misaligned
    // large pages: each is a PageFault with a reason.
    let t3 = e.frames.alloc(&ram).unwrap();
    let t2 = e.frames.alloc(&ram).unwrap();
    let t1 = e.frames.alloc(&ram).unwrap();
    let idx = |va: u64, l: u32| (va >> (12 + 9 * (l - 1))) & 511;
    ram.store(
        root + 8 * idx(data, 4),
        Vpte::page(t3, Vpte::RW | Vpte::U).bits(),
    )
    .unwrap();
    ram.store(
        t3 + 8 * idx(data, 3),
        Vpte::page(t2, Vpte::RW | Vpte::U).bits(),
    )
    .unwrap();
    ram.store(
        t2 + 8 * idx(data, 2),
        Vpte::page(t1, Vpte::RW | Vpte::U).bits(),
    )
    .unwrap();
    let cases = [
        (Vpte::page(size, Vpte::RW | Vpte::U), "frame == RAM size"),
        (
            Vpte::page(1 << 30, Vpte::RW | Vpte::U),
            "frame in the system region",
        ),
        (Vpte(u64::MAX), "all ones"),
        (Vpte::page(0x1000, Vpte::RW), "supervisor only"),
    ];
    for (leaf, what) in cases {
        ram.store(t1 + 8 * idx(data, 1), leaf.bits()).unwrap();
        vms.mcontrol(data, 0x1000, Mcontrol::Inval).unwrap();
        let mut f = frame(data, 0, 0);
        match e.run(&vms, &mut f) {
            Trap::PageFault { addr, reason, .. } => {
                assert_eq!(addr, data);
                eprintln!("{what}: {reason}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // A table pointer outside RAM.
    ram.store(
        t2 + 8 * idx(data, 2),
        Vpte::page(size + 0x1000, Vpte::RW | Vpte::U).bits(),
    )
    .unwrap();
    let mut f = frame(data, 0, 0);
    assert!(matches!(
        e.run(&vms, &mut f),
        Trap::PageFault {
            reason: FaultReason::OutsideRam { level: 2, .. },
            ..
        }
    ));
    // Random garbage tables never crash the host.
    let mut x = 0x243f_6a88_85a3_08d3u64;
    for t in [root, t3, t2, t1] {
        for i in 0..512 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ram.store(t + 8 * i, x).unwrap();
        }
    }
    vms.mcontrol(data, 0x20_0000, Mcontrol::Inval).unwrap();
    for i in 0..64u64 {
        let mut f = frame(data + i * 0x8000, 0, 0);
        match e.run(&vms, &mut f) {
            Trap::PageFault { .. } | Trap::Syscall => {}
            other => panic!("{other:?}"),
        }
    }
}
