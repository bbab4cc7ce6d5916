//! Memory introspection on /dev/kvm: VSS/RSS/PSS/USS with exact numbers
//! for vprocs that really run, numbers after munmap, a fork-like COW and
//! exit, and clear_refs working sets measured from real guest references.
//! Each test SKIPs loudly where /dev/kvm is absent.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

mod common;

use common::*;
use vkernel::core::memstat::{self, FrameFlags, MemStats};
use vkernel::core::prelude::*;
use vkernel::guest::programs;

const DATA: u64 = 0x1000_0000;
const PAGE: u64 = 4096;
const RW: u64 = Vpte::RW | Vpte::U;

/// Map `frames` at `va` in a new vpagetable of `vms` with `flags`.
fn share_region(e: &mut Env, vms: &Vmspace, va: u64, frames: &[u64], flags: u64) -> VpTable {
    let vpt = VpTable::new(e.m.ram(), &mut e.frames).unwrap();
    for (i, f) in frames.iter().enumerate() {
        vpt.map(e.m.ram(), &mut e.frames, va + i as u64 * PAGE, *f, flags)
            .unwrap();
    }
    let len = frames.len() as u64 * PAGE;
    vms.mmap(va, len, Backing::PageTable).unwrap();
    vms.mcontrol(va, len, Mcontrol::SetMap { root: vpt.root() })
        .unwrap();
    vpt
}

/// Map the code frame of `from` (a vmspace made by `Env::vmspace_with`)
/// into `to` at the same place.
fn share_code(from: &Vmspace, to: &Vmspace) {
    let (s, e, b) = from.mappings()[0];
    assert_eq!(s, CODE_VA);
    to.mmap(s, e - s, b).unwrap();
}

fn pss_uss(s: &MemStats, v: &Vmspace) -> (f64, u64) {
    let u = s.usage(v.id()).unwrap();
    (u.pss_pages, u.uss_pages)
}

#[test]
fn seed_example_pss_1500_uss_1000() {
    let Some(mut e) = Env::new("seed_example_pss_1500_uss_1000") else {
        return;
    };
    // a: 1000 private pages + 1000 pages shared with b.
    let a = e.m.vmspace_create().unwrap();
    let b = e.m.vmspace_create().unwrap();
    let (_, fa) = e.vpt_region(&a, DATA, 2000, RW);
    share_region(&mut e, &b, DATA, &fa[1000..], RW);
    let s = MemStats::collect_named(&[(&a, "a"), (&b, "b")]).unwrap();
    assert_eq!(pss_uss(&s, &a), (1500.0, 1000));
    assert_eq!(pss_uss(&s, &b), (500.0, 0));
    let ua = s.usage(a.id()).unwrap();
    assert_eq!(ua.rss_pages, 2000);
    assert_eq!(ua.vss_bytes, 2000 * PAGE);
    assert_eq!(ua.shared_pages, 1000);
    assert_eq!(ua.pss_bytes(), 1500 * PAGE);
    assert_eq!(s.ranked()[0].name, "a");

    // Now both run (sharing one code page): every data page gets written by
    // a real guest, and the numbers include the code page exactly.
    let code = e.vmspace_with(programs::touch());
    share_code(&code, &a);
    share_code(&code, &b);
    drop(code);
    let mut f = frame(DATA, 2000, 1);
    e.run_to_exit(&a, &mut f);
    let mut f = frame(DATA, 1000, 1);
    e.run_to_exit(&b, &mut f);
    a.harvest_accessed();
    b.harvest_accessed();
    let s = MemStats::collect_named(&[(&a, "a"), (&b, "b")]).unwrap();
    assert_eq!(pss_uss(&s, &a), (1500.5, 1000));
    assert_eq!(pss_uss(&s, &b), (500.5, 0));
    let ua = s.usage(a.id()).unwrap();
    assert_eq!(ua.rss_pages, 2001);
    assert_eq!(ua.linear_pages, 1);
    assert_eq!(ua.referenced_pages, 2000);
    assert_eq!(ua.modified_pages, 2000);
    // The kpagemap agrees: shared frames have map count 2, private 1, and
    // the PSS of both adds up to the frames they map.
    let k = s.kpage(fa[1500]).unwrap();
    assert_eq!(k.map_count, 2);
    assert!(k.flags.contains(FrameFlags::USER | FrameFlags::MODIFIED));
    assert_eq!(s.kpage(fa[5]).unwrap().map_count, 1);
    let t = s.totals();
    assert_eq!(t.user, 2001);
    assert_eq!(t.shared, 1001);
    assert_eq!(ua.pss_pages + s.usage(b.id()).unwrap().pss_pages, 2001.0);
    let pm = s.pagemap(a.id()).unwrap();
    assert_eq!(pm.len(), 2001);
    assert!(pm.iter().filter(|p| p.level == 1).all(|p| p.modified));
    // Reports: memrank table and JSON, memstats for one.
    let table = s.to_table();
    eprint!("{table}");
    assert!(table.contains("6002.0"), "a's PSS in KiB:\n{table}");
    let json = s.to_json();
    assert!(json.contains("\"pss_pages\": 1500.500"), "{json}");
    assert!(json.find("\"name\": \"a\"") < json.find("\"name\": \"b\""));
    eprint!("{}", ua.to_table());
}

#[test]
fn numbers_stay_right_after_munmap_and_exit() {
    let Some(mut e) = Env::new("numbers_stay_right_after_munmap_and_exit") else {
        return;
    };
    let a = e.vmspace_with(programs::touch());
    let b = e.m.vmspace_create().unwrap();
    share_code(&a, &b);
    let (_, fa) = e.vpt_region(&a, DATA, 2000, RW);
    let bvpt = share_region(&mut e, &b, DATA, &fa[1000..], RW);
    e.vpt_region(&b, DATA + 0x100_0000, 300, RW); // b's own
    for (v, n) in [(&a, 2000), (&b, 1000)] {
        let mut f = frame(DATA, n, 0);
        e.run_to_exit(v, &mut f);
    }
    let s = MemStats::collect(&[&a, &b]).unwrap();
    assert_eq!(pss_uss(&s, &a), (1500.5, 1000));
    assert_eq!(pss_uss(&s, &b), (800.5, 300));

    // b unmaps half of what it shares with a.
    b.munmap(DATA, 500 * PAGE).unwrap();
    let s = MemStats::collect(&[&a, &b]).unwrap();
    assert_eq!(pss_uss(&s, &a), (1750.5, 1500));
    assert_eq!(pss_uss(&s, &b), (550.5, 300));
    assert_eq!(s.usage(b.id()).unwrap().rss_pages, 801);
    assert_eq!(s.usage(b.id()).unwrap().vss_bytes, 801 * PAGE);
    // b still runs over what it kept.
    let mut f = frame(DATA + 500 * PAGE, 500, 0);
    e.run_to_exit(&b, &mut f);

    // b exits: its vmspace is destroyed, a owns everything it maps.
    let b_table = bvpt.root();
    b.destroy();
    let s = MemStats::collect(&[&a]).unwrap();
    assert_eq!(pss_uss(&s, &a), (2001.0, 2001));
    assert_eq!(s.usage(a.id()).unwrap().rss_pages, 2001);
    let t = s.totals();
    assert_eq!(t.shared, 0);
    assert_eq!(t.user, 2001);
    // b's vpagetable is in the vkernel's RAM still, but nothing reaches it.
    assert!(s.kpage(b_table).unwrap().flags.contains(FrameFlags::FREE));
    // a unmaps everything: nothing resident but the code.
    a.munmap(DATA, 2000 * PAGE).unwrap();
    let s = MemStats::collect(&[&a]).unwrap();
    assert_eq!(pss_uss(&s, &a), (1.0, 1));
    assert_eq!(s.usage(a.id()).unwrap().table_pages, 0);
}

/// There is no fork in the core yet: a vkernel forks by copying the
/// parent's vpagetable read-only onto the same frames (copy on write), then
/// gives the child a private copy of each page it writes. The numbers
/// follow.
#[test]
fn fork_like_cow_sharing() {
    let Some(mut e) = Env::new("fork_like_cow_sharing") else {
        return;
    };
    let n = 1000u64;
    let parent = e.vmspace_with(programs::touch());
    let (pvpt, pf) = e.vpt_region(&parent, DATA, n, RW);
    let mut f = frame(DATA, n, 1);
    e.run_to_exit(&parent, &mut f);
    // "fork": the child maps the same frames read-only; so does the parent.
    let child = e.m.vmspace_create().unwrap();
    share_code(&parent, &child);
    let cvpt = share_region(&mut e, &child, DATA, &pf, Vpte::U);
    for (i, fr) in pf.iter().enumerate() {
        pvpt.map(
            e.m.ram(),
            &mut e.frames,
            DATA + i as u64 * PAGE,
            *fr,
            Vpte::U,
        )
        .unwrap();
    }
    parent.mcontrol(DATA, n * PAGE, Mcontrol::Inval).unwrap();
    let s = MemStats::collect(&[&parent, &child]).unwrap();
    assert_eq!(pss_uss(&s, &parent), (500.5, 0));
    assert_eq!(pss_uss(&s, &child), (500.5, 0));

    // The child writes 10 pages: each write is a protection fault the
    // "vkernel" answers with a private copy.
    let writes = 10;
    let mut f = frame(DATA, writes, 1);
    let mut copies = 0;
    loop {
        match e.run(&child, &mut f) {
            Trap::PageFault {
                addr,
                access: Access::Write,
                reason: FaultReason::Protection,
            } => {
                let va = addr & !0xFFF;
                let old = cvpt.lookup(e.m.ram(), va).unwrap().frame();
                let new = e.frames.alloc(e.m.ram()).unwrap();
                let mut buf = vec![0u8; PAGE as usize];
                e.m.ram().read(old, &mut buf).unwrap();
                e.m.ram().write(new, &buf).unwrap();
                cvpt.map(e.m.ram(), &mut e.frames, va, new, RW).unwrap();
                child.mcontrol(va, PAGE, Mcontrol::Inval).unwrap();
                copies += 1;
            }
            Trap::Syscall if f.rax == programs::SYS_EXIT => break,
            other => panic!("{other:?} at {:#x}", f.rip),
        }
    }
    assert_eq!(copies, writes);
    let s = MemStats::collect(&[&parent, &child]).unwrap();
    // 10 private pages each, 990 shared, and the shared code page.
    assert_eq!(pss_uss(&s, &parent), (10.0 + 495.0 + 0.5, 10));
    assert_eq!(pss_uss(&s, &child), (10.0 + 495.0 + 0.5, 10));
    assert_eq!(s.usage(child.id()).unwrap().modified_pages, 10);
    // The child exits: the parent's pages are all its own again.
    child.destroy();
    let s = MemStats::collect(&[&parent]).unwrap();
    assert_eq!(pss_uss(&s, &parent), (1001.0, 1001));
}

/// clear_refs, run a guest that touches 100 pages, and the working set is
/// exactly those 100 pages: fault-around neighbours are installed with the
/// hardware A bit clear and only count when the guest really uses them.
#[test]
fn working_set_after_clear_refs_is_exact() {
    let Some(mut e) = Env::new("working_set_after_clear_refs_is_exact") else {
        return;
    };
    let n = 1000u64;
    for fault_around in [16u64, 1, 64] {
        for write in [false, true] {
            let vms = e.vmspace_with(programs::touch());
            vms.set_fault_around(fault_around);
            e.vpt_region(&vms, DATA, n, RW);
            // Reference everything first.
            let mut f = frame(DATA, n, write as u64);
            e.run_to_exit(&vms, &mut f);
            let ws = memstat::working_set(&vms).unwrap();
            assert_eq!(ws.pages, n);
            let cleared = memstat::clear_refs(&vms).unwrap();
            assert_eq!(cleared as u64, n);
            // Touch 100 pages starting off any fault-around alignment.
            let first = 250u64;
            let before = vms.stats().installed;
            let mut f = frame(DATA + first * PAGE, 100, write as u64);
            e.run_to_exit(&vms, &mut f);
            let installed = vms.stats().installed - before;
            if fault_around > 1 {
                // Neighbours the guest never touched were installed too.
                assert!(installed > 100, "{installed} entries installed");
            }
            let ws = memstat::working_set(&vms).unwrap();
            eprintln!(
                "fault_around={fault_around} write={write}: working set {} pages, {} hardware \
                 entries installed by the run",
                ws.pages, installed
            );
            assert_eq!(ws.pages, 100, "fault_around={fault_around} write={write}");
            assert_eq!(
                ws.ranges,
                vec![(DATA + first * PAGE, DATA + (first + 100) * PAGE)]
            );
            let s = MemStats::collect(&[&vms]).unwrap();
            assert_eq!(s.usage(vms.id()).unwrap().referenced_pages, 100);
            // A second round sees only the new references.
            memstat::clear_refs(&vms).unwrap();
            let mut f = frame(DATA + 900 * PAGE, 7, write as u64);
            e.run_to_exit(&vms, &mut f);
            let ws = memstat::working_set(&vms).unwrap();
            assert_eq!(ws.pages, 7);
            assert_eq!(ws.ranges, vec![(DATA + 900 * PAGE, DATA + 907 * PAGE)]);
        }
    }
}

/// Right after clear_refs, before the vproc ran again, nothing has been
/// referenced (`Vmspace::harvest_accessed` alone would see the stale A bits
/// of the entries clear_refs dropped; `memstat::working_set` skips them).
#[test]
fn working_set_is_empty_right_after_clear_refs() {
    let Some(mut e) = Env::new("working_set_is_empty_right_after_clear_refs") else {
        return;
    };
    let vms = e.vmspace_with(programs::touch());
    e.vpt_region(&vms, DATA, 64, RW);
    let mut f = frame(DATA, 64, 0);
    e.run_to_exit(&vms, &mut f);
    memstat::clear_refs(&vms).unwrap();
    // The hardware entries of the first run are dropped, but the guest
    // zeroes them only when the vmspace runs next: their stale A bits must
    // not count (nor come back as VPTE A bits).
    assert_eq!(memstat::working_set(&vms).unwrap().pages, 0);
    assert_eq!(memstat::working_set(&vms).unwrap().pages, 0);
    let mut f = frame(DATA + 10 * PAGE, 5, 0);
    e.run_to_exit(&vms, &mut f);
    let ws = memstat::working_set(&vms).unwrap();
    assert_eq!(ws.ranges, vec![(DATA + 10 * PAGE, DATA + 15 * PAGE)]);
}
