//! `core`: trap round trips, resolved and unresolved faults, vmspace
//! creation, each against the raw exit floor measured in the same run.

use std::time::Instant;

use vkernel::core::prelude::*;
use vkernel::guest::programs;

const CODE_VA: u64 = 0x40_0000;
const DATA_VA: u64 = 0x1000_0000;

struct Setup {
    machine: Machine,
    cpu: Cpu,
    frames: FrameAlloc,
}

fn setup(ram: u64) -> Setup {
    let machine = Machine::builder()
        .ram_size(ram)
        .build()
        .unwrap_or_else(|e| {
            eprintln!("vkbench: {e}");
            std::process::exit(1)
        });
    let cpu = machine.take_cpu(0).unwrap();
    let frames = FrameAlloc::new(0x10_0000, ram).unwrap();
    Setup {
        machine,
        cpu,
        frames,
    }
}

/// Map `code` read+execute at CODE_VA through a linear mapping of RAM page 0.
fn load_code(s: &Setup, vms: &Vmspace, code: &[u8]) {
    s.machine.ram().write(0, code).unwrap();
    vms.mmap(
        CODE_VA,
        0x1000,
        Backing::Linear {
            gpa: 0,
            prot: Prot::RX,
        },
    )
    .unwrap();
}

pub fn measure(quick: bool) -> Vec<(String, f64)> {
    let scale = if quick { 10 } else { 1 };
    let mut out = Vec::new();
    let raw = super::raw::raw_exit_ns(20_000 / scale, 5);
    out.push(("raw_exit_ns".to_string(), raw));
    let raw_user = super::raw::raw_user_exit_ns(5_000 / scale, 5);
    out.push(("raw_user_exit_ns".to_string(), raw_user));
    let raw_sys = super::raw::raw_user_syscall_exit_ns(5_000 / scale, 5);
    out.push(("raw_user_syscall_exit_ns".to_string(), raw_sys));

    let mut s = setup(512 << 20);
    // Syscall round trip.
    let vms = s.machine.vmspace_create().unwrap();
    load_code(&s, &vms, programs::syscall_check());
    let n = 20_000 / scale as u64;
    let mut samples = Vec::new();
    for _ in 0..5 {
        let mut f = TrapFrame::new(CODE_VA, 0);
        f.rcx = n;
        let t = Instant::now();
        loop {
            match s.cpu.run(&vms, &mut f).unwrap() {
                Trap::Syscall if f.rax == programs::SYS_CHECK => {
                    f.rax = programs::check_result(f.syscall_args())
                }
                Trap::Syscall if f.rax == programs::SYS_EXIT => break,
                other => panic!("syscall bench: {other:?}"),
            }
        }
        samples.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    let sys = super::median(&mut samples);
    out.push(("syscall_trap_ns".into(), sys));
    out.push(("syscall_over_raw".into(), sys / raw));
    out.push(("syscall_over_raw_user".into(), sys / raw_user));
    out.push(("syscall_over_raw_user_syscall".into(), sys / raw_sys));
    drop(vms);

    // Resolved faults: read-touch N pages all valid in the vpagetable.
    let pages = 8192 / scale as u64;
    for (name, write) in [("resolved_fault", false), ("resolved_write_fault", true)] {
        let vms = s.machine.vmspace_create().unwrap();
        load_code(&s, &vms, programs::touch());
        let vpt = VpTable::new(s.machine.ram(), &mut s.frames).unwrap();
        let mut data = Vec::new();
        for i in 0..pages {
            let f = s.frames.alloc(s.machine.ram()).unwrap();
            data.push(f);
            vpt.map(
                s.machine.ram(),
                &mut s.frames,
                DATA_VA + i * 4096,
                f,
                Vpte::RW | Vpte::U,
            )
            .unwrap();
        }
        vms.mmap(DATA_VA, pages * 4096, Backing::PageTable).unwrap();
        vms.mcontrol(DATA_VA, pages * 4096, Mcontrol::SetMap { root: vpt.root() })
            .unwrap();
        let e0 = s.cpu.stats().exits;
        let mut f = TrapFrame::new(CODE_VA, 0);
        f.rdi = DATA_VA;
        f.rsi = pages;
        f.rdx = write as u64;
        let t = Instant::now();
        let trap = s.cpu.run(&vms, &mut f).unwrap();
        let el = t.elapsed().as_nanos() as f64;
        assert_eq!(trap, Trap::Syscall);
        assert_eq!(f.rax, programs::SYS_EXIT);
        let exits = (s.cpu.stats().exits - e0 - 1) as f64;
        out.push((format!("{name}_ns"), el / pages as f64));
        out.push((format!("exits_per_{name}"), exits / pages as f64));
        drop(vms);
        vpt.free_tables(s.machine.ram(), &mut s.frames);
        for d in data {
            s.frames.free(d);
        }
    }

    // Unresolved faults: every page invalid; the "vkernel" maps it on the trap.
    {
        let pages = 2048 / scale as u64;
        let vms = s.machine.vmspace_create().unwrap();
        vms.set_fault_around(1);
        load_code(&s, &vms, programs::touch());
        let vpt = VpTable::new(s.machine.ram(), &mut s.frames).unwrap();
        vms.mmap(DATA_VA, pages * 4096, Backing::PageTable).unwrap();
        vms.mcontrol(DATA_VA, pages * 4096, Mcontrol::SetMap { root: vpt.root() })
            .unwrap();
        let mut f = TrapFrame::new(CODE_VA, 0);
        f.rdi = DATA_VA;
        f.rsi = pages;
        f.rdx = 1;
        let e0 = s.cpu.stats().exits;
        let t = Instant::now();
        loop {
            match s.cpu.run(&vms, &mut f).unwrap() {
                Trap::PageFault { addr, .. } => {
                    let fr = s.frames.alloc(s.machine.ram()).unwrap();
                    vpt.map(
                        s.machine.ram(),
                        &mut s.frames,
                        addr & !0xfff,
                        fr,
                        Vpte::RW | Vpte::U,
                    )
                    .unwrap();
                }
                Trap::Syscall => break,
                other => panic!("unresolved bench: {other:?}"),
            }
        }
        out.push((
            "unresolved_fault_ns".into(),
            t.elapsed().as_nanos() as f64 / pages as f64,
        ));
        out.push((
            "exits_per_unresolved_fault".into(),
            (s.cpu.stats().exits - e0) as f64 / pages as f64,
        ));
    }

    // vmspace create / destroy.
    let n = 2000 / scale as usize;
    let mut v = Vec::with_capacity(n);
    let t = Instant::now();
    for _ in 0..n {
        v.push(s.machine.vmspace_create().unwrap());
    }
    out.push((
        "vmspace_create_us".into(),
        t.elapsed().as_nanos() as f64 / n as f64 / 1000.0,
    ));
    let t = Instant::now();
    for x in v {
        x.destroy();
    }
    out.push((
        "vmspace_destroy_us".into(),
        t.elapsed().as_nanos() as f64 / n as f64 / 1000.0,
    ));
    out
}
