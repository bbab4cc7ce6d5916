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
