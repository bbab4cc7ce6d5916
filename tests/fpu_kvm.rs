//! Lazy FPU handoff: vprocs with different SSE state interleaved on one vCPU
//! keep their own results; FPU-free vprocs cost no save/restore where the
//! host honours CR0.TS.

mod common;

use common::*;
use vkernel::core::fpu::{FpuContext, FpuMode};
use vkernel::core::prelude::*;
use vkernel::guest::programs;

fn expected(m: f64, n: u64) -> f64 {
    let mut x = 0.0f64;
    for _ in 0..n {
        x = x * m + 1.0;
    }
    x
}

/// A frame entering the program with `rdi` and a loop count of `n` (rcx).
fn looping(rdi: u64, n: u64) -> TrapFrame {
    let mut f = frame(rdi, 0, 0);
    f.rcx = n;
    f
}

#[test]
fn interleaved_sse_vprocs_keep_their_state() {
    let Some(mut e) = Env::new("interleaved_sse_vprocs_keep_their_state") else {
        return;
    };
    eprintln!("FPU mode on this host: {:?}", e.m.fpu_mode());
    let n = scaled(200).max(4);
    let a = e.vmspace_with(programs::sse());
    let b = e.vmspace_with(programs::sse());
    let (fa, fb) = (FpuContext::new(), FpuContext::new());
    let (mut ta, mut tb) = (looping(0.5f64.to_bits(), n), looping(1.25f64.to_bits(), n));
    let mut done = [None, None];
    let s0 = e.cpu.stats();
    // Alternate at every yield (syscall 1001).
    while done.iter().any(|d| d.is_none()) {
        for (i, (vms, f, ctx)) in [(&a, &mut ta, &fa), (&b, &mut tb, &fb)]
            .into_iter()
            .enumerate()
        {
            if done[i].is_some() {
                continue;
            }
            e.cpu.set_fpu(ctx);
            match e.run(vms, f) {
                Trap::Syscall if f.rax == 1001 => f.rax = 0,
                Trap::Syscall if f.rax == programs::SYS_EXIT => done[i] = Some(f.rdi),
                other => panic!("vproc {i}: {other:?}"),
            }
        }
    }
    let got_a = f64::from_bits(done[0].unwrap());
    let got_b = f64::from_bits(done[1].unwrap());
    assert_eq!(got_a, expected(0.5, n));
    assert_eq!(got_b, expected(1.25, n));
    let s = e.cpu.stats();
    eprintln!(
        "{} switches: {} FPU saves, {} restores, {} #NM traps",
        2 * n,
        s.fpu_saves - s0.fpu_saves,
        s.fpu_restores - s0.fpu_restores,
        s.fpu_traps - s0.fpu_traps
    );
    assert!(s.fpu_restores - s0.fpu_restores >= 2 * n - 1);
    if e.m.fpu_mode() == FpuMode::Lazy {
        assert!(s.fpu_traps - s0.fpu_traps >= 2 * n - 1);
    }
}

#[test]
fn fpu_free_vprocs_cost_no_fpu_switch() {
    let Some(mut e) = Env::new("fpu_free_vprocs_cost_no_fpu_switch") else {
        return;
    };
    let n = scaled(100).max(4);
    let fpu = e.vmspace_with(programs::sse());
    let plain = e.vmspace_with(programs::syscall_check());
    let (cf, cp) = (FpuContext::new(), FpuContext::new());
    let (mut tf, mut tp) = (looping(2.0f64.to_bits(), n), looping(0, 10 * n));
    let mut result = None;
    let s0 = e.cpu.stats();
    while result.is_none() {
        e.cpu.set_fpu(&cf);
        match e.run(&fpu, &mut tf) {
            Trap::Syscall if tf.rax == 1001 => tf.rax = 0,
            Trap::Syscall if tf.rax == programs::SYS_EXIT => result = Some(tf.rdi),
            other => panic!("{other:?}"),
        }
        // The FPU-free vproc runs a few syscalls in between.
        e.cpu.set_fpu(&cp);
        for _ in 0..3 {
            match e.run(&plain, &mut tp) {
                Trap::Syscall if tp.rax == programs::SYS_CHECK => {
                    tp.rax = programs::check_result(tp.syscall_args())
                }
                Trap::Syscall => {}
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(f64::from_bits(result.unwrap()), expected(2.0, n));
    let s = e.cpu.stats();
    let (saves, restores) = (s.fpu_saves - s0.fpu_saves, s.fpu_restores - s0.fpu_restores);
    eprintln!(
        "mode {:?}: {saves} saves, {restores} restores over {n} round trips",
        e.m.fpu_mode()
    );
    match e.m.fpu_mode() {
        // Only the very first load of the FPU vproc's state.
        FpuMode::Lazy => assert!(
            restores <= 1 && saves <= 1,
            "{saves} saves, {restores} restores"
        ),
        FpuMode::Eager => assert!(restores >= n),
    }
}
