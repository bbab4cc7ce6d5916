//! fork-style copy-on-write through the vpagetable on real vprocs: shared
//! read-only frames, a write fault per written page, private copies, and
//! PSS that follows the sharing.

mod common;

use common::*;
use vkernel::core::memstat::MemStats;
use vkernel::core::prelude::*;
use vkernel::guest::programs;

const DATA: u64 = 0x1000_0000;

#[test]
fn fork_cow_shares_until_written() {
    let Some(mut e) = Env::new("fork_cow_shares_until_written") else {
        return;
    };
    let pages = 64u64;
    let parent = e.vmspace_with(programs::touch());
    let (pvpt, _) = e.vpt_region(&parent, DATA, pages, Vpte::RW | Vpte::U);
    // The parent writes every page (byte i in page i).
    let mut f = frame(DATA, pages, 1);
    e.run_to_exit(&parent, &mut f);
    // fork: the child gets the same frames, both sides copy-on-write.
    let ram = e.m.ram().clone();
    let cvpt = pvpt
        .fork_cow(&ram, &mut e.frames, DATA, DATA + pages * 4096)
        .unwrap();
    parent
        .mcontrol(DATA, pages * 4096, Mcontrol::Inval)
        .unwrap();
    let child = e.vmspace_with(programs::touch());
    child.mmap(DATA, pages * 4096, Backing::PageTable).unwrap();
    child
        .mcontrol(DATA, pages * 4096, Mcontrol::SetMap { root: cvpt.root() })
        .unwrap();
    let stats = MemStats::collect(&[&parent, &child]).unwrap();
    let (pu, cu) = (
        stats.usage(parent.id()).unwrap(),
        stats.usage(child.id()).unwrap(),
    );
    eprintln!(
        "after fork: parent PSS {} USS {}, child PSS {} USS {}",
        pu.pss_pages, pu.uss_pages, cu.pss_pages, cu.uss_pages
    );
    // Data shared by both; each has its own code page.
    assert_eq!(pu.pss_pages, pages as f64 / 2.0 + 1.0);
    assert_eq!(cu.uss_pages, 1);
    // The child reads the parent's data with no trap.
    let pf0 = e.cpu.stats().page_faults;
    let mut f = frame(DATA, pages, 0);
    let sum = e.run_to_exit(&child, &mut f);
    assert_eq!(sum, (0..pages).sum::<u64>());
    assert_eq!(e.cpu.stats().page_faults, pf0);
    // The child writes: one protection fault per page, each resolved by a
    // private copy.
    let mut f = frame(DATA, pages, 1);
    let mut cow_faults = 0;
    loop {
        match e.run(&child, &mut f) {
            Trap::PageFault {
                addr,
                access: Access::Write,
                reason: FaultReason::Protection,
            } => {
                assert!(cvpt.cow_fault(&ram, &mut e.frames, addr).unwrap());
                cow_faults += 1;
            }
            Trap::Syscall if f.rax == programs::SYS_EXIT => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(cow_faults, pages);
    // Scribble in the child's copies; the parent must not see it.
    child.copy_to_user(DATA, &[0xEE; 16]).unwrap();
    let mut b = [0u8; 2];
    parent.copy_from_user(DATA + 4096, &mut b).unwrap();
    assert_eq!(b[0], 1);
    let mut b = [0u8; 1];
    parent.copy_from_user(DATA, &mut b).unwrap();
    assert_eq!(b[0], 0, "the parent keeps its own page 0");
    let stats = MemStats::collect(&[&parent, &child]).unwrap();
    let pu = stats.usage(parent.id()).unwrap();
    assert_eq!(pu.uss_pages, pages + 1, "nothing shared any more");
    // The parent writes: its frames have one reference left, so it takes
    // them back writable without copying.
    let before = e.frames.available();
    let mut f = frame(DATA, pages, 1);
    loop {
        match e.run(&parent, &mut f) {
            Trap::PageFault {
                addr,
                reason: FaultReason::Protection,
                ..
            } => {
                assert!(pvpt.cow_fault(&ram, &mut e.frames, addr).unwrap());
            }
            Trap::Syscall if f.rax == programs::SYS_EXIT => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        e.frames.available(),
        before,
        "no copies for the last holder"
    );
}
