//! Kicks cost O(1) exits wherever they land: in the vproc, in the stub on
//! its way out, or in the stub applying mailbox commands (no single-stepping
//! through the stub's loops).

mod common;

use common::*;
use vkernel::core::prelude::*;
use vkernel::guest::programs;

const DATA: u64 = 0x1000_0000;
const PAGES: u64 = 1024;

/// Rounds of: invalidate the whole region (mailbox commands for the next
/// entry), then touch every page (a resolved fault per fault-around window,
/// each through the stub). Returns (exits, Interrupted returns, sums).
fn rounds(e: &mut Env, vms: &Vmspace, n: u64) -> (u64, u64, Vec<u64>) {
    let before = e.cpu.stats();
    let mut sums = Vec::new();
    let mut interrupted = 0;
    for _ in 0..n {
        vms.mcontrol(DATA, PAGES * 4096, Mcontrol::Inval).unwrap();
        let mut f = frame(DATA, PAGES, 0);
        loop {
            match e.run(vms, &mut f) {
                Trap::Interrupted => {
                    interrupted += 1;
                    // The frame is always the vproc's, never the stub's.
                    assert!(f.rip < 0x8000_0000_0000, "stub frame {:#x}", f.rip);
                }
                Trap::Syscall if f.rax == programs::SYS_EXIT => {
                    sums.push(f.rdi);
                    break;
                }
                other => panic!("{other:?} at {:#x}", f.rip),
            }
        }
    }
    (e.cpu.stats().exits - before.exits, interrupted, sums)
}

#[test]
fn kicks_cost_at_most_four_exits_wherever_they_land() {
    let test = "kicks_cost_at_most_four_exits_wherever_they_land";
    let Some(mut e) = Env::with_ram(test, 128 << 20) else {
        return;
    };
    let vms = e.vmspace_with(programs::touch());
    let (_vpt, frames) = e.vpt_region(&vms, DATA, PAGES, Vpte::RW | Vpte::U);
    for (i, f) in frames.iter().enumerate() {
        e.m.ram().store(*f, i as u64).unwrap();
    }
    let n = scaled(30);
    // The same work without kicks: the floor.
    let (quiet_exits, quiet_intr, quiet_sums) = rounds(&mut e, &vms, n);
    assert_eq!(quiet_intr, 0);
    // A kick storm: a kick every 20 µs from another thread.
    let storm = KickStorm::start(e.cpu.kicker());
    let in_stub_before = e.cpu.stats().kicks_in_stub;
    let (exits, intr, sums) = rounds(&mut e, &vms, n);
    let kicks = storm.stop();
    let in_stub = e.cpu.stats().kicks_in_stub - in_stub_before;
    assert_eq!(sums, quiet_sums, "the work's results change under kicks");
    let extra = exits.saturating_sub(quiet_exits);
    eprintln!(
        "{test}: {kicks} kicks, {intr} interrupted runs, {in_stub} landed in the stub; \
         {exits} exits vs {quiet_exits} without kicks"
    );
    assert!(intr > 0, "no kick interrupted a run");
    // Per kick (the bound): its own exit plus at most three.
    // Each answered kick costs its own exit, plus at most a few to reach
    // a point where the vproc's state is known (the stub's exit, or the
    // bounce after its commands). Single-stepping the stub cost hundreds.
    assert!(
        extra <= 4 * intr,
        "{extra} extra exits for {intr} kicks answered ({in_stub} in the stub)"
    );
}
