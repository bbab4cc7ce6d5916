//! Kick latency and FPU switch cost (part of the `devices` suite).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vkernel::core::fpu::{FpuContext, FpuMode};
use vkernel::core::prelude::*;
use vkernel::guest::programs;

const CODE_VA: u64 = 0x40_0000;

fn vmspace(m: &Machine, gpa: u64, code: &[u8]) -> Vmspace {
    m.ram().write(gpa, code).unwrap();
    let vms = m.vmspace_create().unwrap();
    vms.mmap(
        CODE_VA,
        0x1000,
        Backing::Linear {
            gpa,
            prot: Prot::RX,
        },
    )
    .unwrap();
    vms
}

pub fn measure(quick: bool) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let m = Machine::builder().ram_size(32 << 20).build().unwrap();
    let mut cpu = m.take_cpu(0).unwrap();

    // Kick latency: a spinning vproc; another thread kicks it and records
    // when; the vCPU thread notes when run() returned.
    let spin = vmspace(&m, 0x1000, programs::spin());
    let rounds = if quick { 20 } else { 100 };
    let mut lat = Vec::new();
    let kicker = cpu.kicker();
    for _ in 0..rounds {
        let go = Arc::new(AtomicBool::new(false));
        let (k, g) = (kicker.clone(), go.clone());
        let t = std::thread::spawn(move || {
            while !g.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            std::thread::sleep(Duration::from_millis(2));
            let at = Instant::now();
            k.kick();
            at
        });
        let mut f = TrapFrame::new(CODE_VA, 0);
        go.store(true, Ordering::Release);
        let trap = cpu.run(&spin, &mut f).unwrap();
        let back = Instant::now();
        let at = t.join().unwrap();
        assert_eq!(trap, Trap::Interrupted);
        lat.push(back.duration_since(at).as_nanos() as f64 / 1000.0);
    }
    out.push(("kick_latency_us".into(), super::median(&mut lat)));

    // FPU switch: two SSE vprocs alternating at every yield, each with its
    // own context, against the same loop sharing one context (no switch).
    let a = vmspace(&m, 0x2000, programs::sse());
    let b = vmspace(&m, 0x3000, programs::sse());
    let n = if quick { 200 } else { 1000 };
    let run_pair = |cpu: &mut Cpu, separate: bool| -> f64 {
        let (ca, cb) = (FpuContext::new(), FpuContext::new());
        let mut fa = TrapFrame::new(CODE_VA, 0);
        fa.rdi = 0.5f64.to_bits();
        fa.rcx = n;
        let mut fb = fa;
        let t = Instant::now();
        let mut done = 0;
        while done < 2 {
            done = 0;
            for (vms, f, c) in [(&a, &mut fa, &ca), (&b, &mut fb, &cb)] {
                if f.rax == programs::SYS_EXIT {
                    done += 1;
                    continue;
                }
                cpu.set_fpu(if separate { c } else { &ca });
                match cpu.run(vms, f).unwrap() {
                    Trap::Syscall if f.rax == 1001 => f.rax = 0,
                    Trap::Syscall => {}
                    other => panic!("fpu bench: {other:?}"),
                }
            }
        }
        t.elapsed().as_nanos() as f64 / (2 * n) as f64
    };
    let mut same = Vec::new();
    let mut sep = Vec::new();
    for _ in 0..3 {
        same.push(run_pair(&mut cpu, false));
        sep.push(run_pair(&mut cpu, true));
    }
    let cost = (super::median(&mut sep) - super::median(&mut same)).max(0.0);
    match m.fpu_mode() {
        FpuMode::Eager => {
            out.push(("fpu_switch_eager_ns".into(), cost));
            eprintln!("vkbench: CR0.TS is not honoured on this host: no lazy FPU figure");
            out.push(("fpu_switch_lazy_ns".into(), f64::NAN));
        }
        FpuMode::Lazy => {
            out.push(("fpu_switch_lazy_ns".into(), cost));
            out.push(("fpu_switch_eager_ns".into(), f64::NAN));
        }
    }
    out
}
