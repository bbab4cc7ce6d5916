//! Parked hardware tables (`hwpt::park`) on real vprocs: a finished
//! vmspace's last-level table is taken over by the next vmspace that maps
//! the same window, its agreeing entries kept and the others cleared
//! before the new vproc runs, so the new vproc reads its own frames and
//! never the old ones a shadow MMU cached.

mod common;

use common::*;
use vkernel::core::prelude::*;
use vkernel::guest::programs;

const DATA: u64 = 0x1000_0000;
const PAGES: u64 = 100;
/// Pages 90.. get other frames in the second vmspace.
const SAME: u64 = 90;

#[test]
fn a_parked_table_is_adopted_and_its_stale_entries_never_reach_the_new_vproc() {
    let Some(mut e) =
        Env::new("a_parked_table_is_adopted_and_its_stale_entries_never_reach_the_new_vproc")
    else {
        return;
    };
    let ram = e.m.ram().clone();
    // The first vproc reads a page of each of 100 frames holding byte i:
    // 90 read-only (a program's text), 10 writable (its data). Its
    // window's table is full and a shadow MMU has every entry.
    let map = |e: &mut Env, vms: &Vmspace, frames: &[u64]| {
        let vpt = VpTable::new(&ram, &mut e.frames).unwrap();
        for (i, &f) in frames.iter().enumerate() {
            let rw = if (i as u64) < SAME { 0 } else { Vpte::RW };
            vpt.map(&ram, &mut e.frames, DATA + i as u64 * 4096, f, rw | Vpte::U)
                .unwrap();
        }
        vms.mmap(DATA, PAGES * 4096, Backing::PageTable).unwrap();
        vms.mcontrol(DATA, PAGES * 4096, Mcontrol::SetMap { root: vpt.root() })
            .unwrap();
        vpt
    };
    let frames: Vec<u64> = (0..PAGES)
        .map(|i| {
            let f = e.frames.alloc(&ram).unwrap();
            ram.write(f, &i.to_le_bytes()[..1]).unwrap();
            f
        })
        .collect();
    let a = e.vmspace_with(programs::touch());
    let _avpt = map(&mut e, &a, &frames);
    assert_eq!(
        e.run_to_exit(&a, &mut frame(DATA, PAGES, 0)),
        (0..PAGES).sum::<u64>()
    );
    // The second maps the same frames for the text and fresh ones holding
    // 100 + i for the data.
    let b = e.vmspace_with(programs::touch());
    let mut bframes = frames.clone();
    for (i, f) in (0..PAGES)
        .zip(bframes.iter_mut())
        .skip_while(|(i, _)| *i < SAME)
    {
        *f = e.frames.alloc(&ram).unwrap();
        ram.write(*f, &(100 + i).to_le_bytes()[..1]).unwrap();
    }
    let _bvpt = map(&mut e, &b, &bframes);
    // The first vmspace is finished: its tables go back, the window's parked.
    a.retire().unwrap();
    b.populate(DATA, DATA + PAGES * 4096).unwrap();
    let st = b.stats();
    eprintln!(
        "adopted {} table(s), {} entries kept",
        st.tables_adopted, st.entries_kept
    );
    // Page i of b reads as b's frame: the old frames' bytes would give
    // sum(90..100) where b's give sum(190..200).
    let want: u64 = (0..SAME).sum::<u64>() + (SAME..PAGES).map(|i| 100 + i).sum::<u64>();
    let pf0 = e.cpu.stats().page_faults;
    assert_eq!(e.run_to_exit(&b, &mut frame(DATA, PAGES, 0)), want);
    assert_eq!(
        e.cpu.stats().page_faults,
        pf0,
        "no page fault reached the host"
    );
    assert_eq!(st.tables_adopted, 1, "the window's table was taken over");
    assert!(st.entries_kept >= 16, "{} entries kept", st.entries_kept);
}

/// A window that gets its table before it is full (a loader alone where
/// its libraries will go) takes over the parked table late: once it has
/// filled up, the next exit (`Vmspace::adopt_parked_late`) swaps its fresh
/// table for the parked one, which keeps its agreeing entries (and their
/// shadows) and gets this space's own where they differ, and the vproc
/// reads its own frames through it.
#[test]
fn a_window_filled_after_its_table_was_built_takes_over_the_parked_table_late() {
    let Some(mut e) =
        Env::new("a_window_filled_after_its_table_was_built_takes_over_the_parked_table_late")
    else {
        return;
    };
    let ram = e.m.ram().clone();
    let frames: Vec<u64> = (0..PAGES)
        .map(|i| {
            let f = e.frames.alloc(&ram).unwrap();
            ram.write(f, &i.to_le_bytes()[..1]).unwrap();
            f
        })
        .collect();
    let map_pages = |e: &mut Env, vpt: &VpTable, frames: &[u64], pages: std::ops::Range<u64>| {
        for (i, &f) in (0u64..).zip(frames).filter(|(i, _)| pages.contains(i)) {
            let rw = if i < SAME { 0 } else { Vpte::RW };
            vpt.map(&ram, &mut e.frames, DATA + i * 4096, f, rw | Vpte::U)
                .unwrap();
        }
    };
    let space = |e: &mut Env| {
        let vms = e.vmspace_with(programs::touch());
        let vpt = VpTable::new(&ram, &mut e.frames).unwrap();
        vms.mmap(DATA, PAGES * 4096, Backing::PageTable).unwrap();
        vms.mcontrol(DATA, PAGES * 4096, Mcontrol::SetMap { root: vpt.root() })
            .unwrap();
        (vms, vpt)
    };
    // The first space maps and reads all 100 pages, then is gone: its
    // window's table is parked.
    let (a, avpt) = space(&mut e);
    map_pages(&mut e, &avpt, &frames, 0..PAGES);
    assert_eq!(
        e.run_to_exit(&a, &mut frame(DATA, PAGES, 0)),
        (0..PAGES).sum::<u64>()
    );
    a.retire().unwrap();
    // The second maps 10 pages first: the parked table differs too much
    // to be taken then, and the window gets a fresh one.
    let (b, bvpt) = space(&mut e);
    let mut bframes = frames.clone();
    for (i, f) in (0u64..).zip(bframes.iter_mut()).filter(|(i, _)| *i >= SAME) {
        *f = e.frames.alloc(&ram).unwrap();
        ram.write(*f, &(100 + i).to_le_bytes()[..1]).unwrap();
    }
    map_pages(&mut e, &bvpt, &bframes, 0..10);
    b.populate(DATA, DATA + PAGES * 4096).unwrap();
    assert_eq!(b.stats().tables_adopted, 0, "nothing taken at 10 pages");
    assert_eq!(b.adopt_parked_late(), 0, "not full yet: nothing due");
    assert_eq!(
        e.run_to_exit(&b, &mut frame(DATA, 10, 0)),
        (0..10).sum::<u64>()
    );
    // Then the other 90 (10 of them with frames of its own): the window is
    // full, and the next exit swaps the tables.
    map_pages(&mut e, &bvpt, &bframes, 10..PAGES);
    b.populate(DATA, DATA + PAGES * 4096).unwrap();
    assert_eq!(b.adopt_parked_late(), 1, "the parked table is taken late");
    let st = b.stats();
    eprintln!(
        "adopted {} table(s), {} entries kept",
        st.tables_adopted, st.entries_kept
    );
    assert_eq!(st.tables_adopted, 1);
    assert!(st.entries_kept >= 80, "{} entries kept", st.entries_kept);
    assert_eq!(b.adopt_parked_late(), 0, "a window is looked at once");
    let want: u64 = (0..SAME).sum::<u64>() + (SAME..PAGES).map(|i| 100 + i).sum::<u64>();
    let pf0 = e.cpu.stats().page_faults;
    assert_eq!(e.run_to_exit(&b, &mut frame(DATA, PAGES, 0)), want);
    assert_eq!(
        e.cpu.stats().page_faults,
        pf0,
        "no page fault reached the host"
    );
}
