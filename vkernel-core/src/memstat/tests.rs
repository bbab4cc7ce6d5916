//! Unit tests of memory introspection (no KVM).

use vkernel_guest::x86::USER_END;

use super::collect::referenced;
use super::render::json_str;
use super::*;
use crate::vptable::{FrameAlloc, VpTable};
use crate::vpte::Vpte;

const RW: u64 = Vpte::RW | Vpte::U;
const DATA: u64 = 0x1000_0000;

struct World {
    ram: Ram,
    fa: FrameAlloc,
}

impl World {
    fn new() -> World {
        let ram = Ram::anonymous(64 << 20).unwrap();
        let fa = FrameAlloc::new(0x10_0000, 64 << 20).unwrap();
        World { ram, fa }
    }
    fn table(&mut self) -> VpTable {
        VpTable::new(&self.ram, &mut self.fa).unwrap()
    }
    fn map_new(&mut self, t: &VpTable, va: u64, pages: u64) -> Vec<u64> {
        (0..pages)
            .map(|i| {
                let f = self.fa.alloc(&self.ram).unwrap();
                t.map(&self.ram, &mut self.fa, va + i * PAGE_SIZE, f, RW)
                    .unwrap();
                f
            })
            .collect()
    }
    fn map_frames(&mut self, t: &VpTable, va: u64, frames: &[u64]) {
        for (i, f) in frames.iter().enumerate() {
            t.map(&self.ram, &mut self.fa, va + i as u64 * PAGE_SIZE, *f, RW)
                .unwrap();
        }
    }
    fn stats(&self, input: Vec<(u64, Vec<Area>)>) -> MemStats {
        MemStats::from_areas(
            self.ram.clone(),
            input
                .into_iter()
                .map(|(id, a)| (id, format!("v{id}"), a))
                .collect(),
        )
        .unwrap()
    }
}

fn tab(start: u64, pages: u64, t: &VpTable) -> Area {
    Area::Table {
        start,
        end: start + pages * PAGE_SIZE,
        root: Some(t.root()),
    }
}

/// The seed's example: 1000 private + 1000 shared with one other.
#[test]
fn seed_example_pss_1500_uss_1000() {
    let mut w = World::new();
    let (ta, tb) = (w.table(), w.table());
    w.map_new(&ta, DATA, 1000);
    let shared = w.map_new(&ta, DATA + 1000 * PAGE_SIZE, 1000);
    w.map_frames(&tb, DATA, &shared);
    let s = w.stats(vec![
        (1, vec![tab(DATA, 2000, &ta)]),
        (2, vec![tab(DATA, 1000, &tb)]),
    ]);
    let a = s.usage(1).unwrap();
    assert_eq!(a.pss_pages, 1500.0);
    assert_eq!(a.uss_pages, 1000);
    assert_eq!(a.rss_pages, 2000);
    assert_eq!(a.shared_pages, 1000);
    assert_eq!(a.vss_bytes, 2000 * PAGE_SIZE);
    // Root, level 3, level 2 and four level-1 tables.
    assert_eq!(a.table_pages, 7);
    let b = s.usage(2).unwrap();
    assert_eq!((b.pss_pages, b.uss_pages, b.rss_pages), (500.0, 0, 1000));
    assert_eq!(s.ranked()[0].id, 1);
    let t = s.totals();
    assert_eq!((t.user, t.shared, t.table), (2000, 1000, 7 + 5));
    assert_eq!(t.user + t.table + t.free, t.ram);
    // Sum of PSS is the frames mapped.
    assert_eq!(a.pss_pages + b.pss_pages, t.user as f64);
    // kpagemap and pagemap agree.
    let k = s.kpage(shared[7]).unwrap();
    assert_eq!(k.map_count, 2);
    assert!(k.flags.contains(FrameFlags::USER));
    assert!(s
        .kpage(ta.root())
        .unwrap()
        .flags
        .contains(FrameFlags::TABLE));
    assert!(s.kpage(0).unwrap().flags.contains(FrameFlags::FREE));
    let pm = s.pagemap(1).unwrap();
    assert_eq!(pm.len(), 2000);
    assert_eq!(pm[1000].frame, shared[0]);
    assert_eq!(pm[1000].map_count, 2);
    assert_eq!(pm[0].map_count, 1);
    assert_eq!(s.pagemap(9), Err(MemstatError::UnknownVmspace(9)));
    // Reports.
    assert!(s.to_table().contains("1500.0") || s.to_table().contains("6000.0"));
    let j = s.to_json();
    assert!(j.contains("\"pss_pages\": 1500.000"), "{j}");
    assert!(a.to_table().contains("PSS"));
}

#[test]
fn same_frame_twice_in_one_vmspace_counts_once_for_pss() {
    let mut w = World::new();
    let t = w.table();
    let f = w.map_new(&t, DATA, 1);
    w.map_frames(&t, DATA + PAGE_SIZE, &f);
    let s = w.stats(vec![(1, vec![tab(DATA, 2, &t)])]);
    let u = s.usage(1).unwrap();
    assert_eq!((u.rss_pages, u.pss_pages, u.uss_pages), (2, 1.0, 1));
    assert_eq!(s.kpage(f[0]).unwrap().map_count, 1);
}

#[test]
fn large_pages_linear_and_bad_entries() {
    let mut w = World::new();
    let t = w.table();
    // A 2 MiB leaf at 0x4000_0000 onto frames [8 MiB, 10 MiB): create
    // the tables down to level 1, then overwrite the level-2 entry
    // (root[0] -> level 3 [1] -> level 2 [0]).
    t.leaf_gpa(&w.ram, Some(&mut w.fa), 0x4000_0000).unwrap();
    let root = t.root();
    let l3 = Vpte(w.ram.load(root).unwrap()).frame();
    let l2gpa = Vpte(w.ram.load(l3 + 8).unwrap()).frame();
    w.ram
        .store(l2gpa, Vpte::page(8 << 20, RW | Vpte::PS | Vpte::A).bits())
        .unwrap();
    // A valid entry pointing outside RAM, and a misaligned large one.
    w.ram
        .store(l2gpa + 8, Vpte::page(1 << 40, RW | Vpte::PS).bits())
        .unwrap();
    w.ram
        .store(l2gpa + 16, Vpte::page(0x1000, RW | Vpte::PS).bits())
        .unwrap();
    let area = Area::Table {
        start: 0x4000_0000,
        end: 0x4000_0000 + (6 << 20),
        root: Some(root),
    };
    let lin = Area::Linear {
        start: 0x40_0000,
        end: 0x40_2000,
        gpa: 0,
        writable: false,
    };
    let s = w.stats(vec![(1, vec![area, lin]), (2, vec![lin])]);
    let u = s.usage(1).unwrap();
    assert_eq!(u.rss_pages, 512 + 2);
    assert_eq!(u.large_pages, 512);
    assert_eq!(u.linear_pages, 2);
    assert_eq!(u.referenced_pages, 512);
    assert_eq!(u.bad_entries, 2);
    assert_eq!(u.pss_pages, 513.0);
    assert_eq!(u.uss_pages, 512);
    assert!(s.kpage(9 << 20).unwrap().flags.contains(FrameFlags::LARGE));
    assert!(s.kpage(0).unwrap().flags.contains(FrameFlags::LINEAR));
    // A range that starts inside the large page sees only its tail.
    let part = Area::Table {
        start: 0x4000_0000 + (1 << 20),
        end: 0x4000_0000 + (2 << 20),
        root: Some(root),
    };
    let s = w.stats(vec![(3, vec![part])]);
    assert_eq!(s.usage(3).unwrap().rss_pages, 256);
    let pm = s.pagemap(3).unwrap();
    assert_eq!(pm[0].frame, (8 << 20) + (1 << 20));
    assert_eq!(pm[0].level, 2);
    let ws = referenced(&w.ram, 3, &[part]);
    assert_eq!(ws.pages, 256);
    assert_eq!(
        ws.ranges,
        vec![(0x4000_0000 + (1 << 20), 0x4000_0000 + (2 << 20))]
    );
}

#[test]
fn garbage_tables_are_bounded_and_safe() {
    let w = World::new();
    // A root whose every entry points back at itself: the walk follows
    // it for four levels, then treats root entries as leaves.
    let root = 0x20_0000u64;
    for i in 0..512 {
        w.ram
            .store(root + 8 * i, Vpte::page(root, RW).bits())
            .unwrap();
    }
    let area = Area::Table {
        start: 0,
        end: 64 * PAGE_SIZE,
        root: Some(root),
    };
    let s = w.stats(vec![(1, vec![area])]);
    let u = s.usage(1).unwrap();
    assert_eq!(u.rss_pages, 64);
    assert_eq!(u.pss_pages, 1.0, "all 64 pages are the same frame");
    assert_eq!(u.table_pages, 1);
    // Root outside RAM or unaligned: nothing, no panic.
    for root in [1 << 40, 0x20_0008] {
        let a = Area::Table {
            start: 0,
            end: USER_END,
            root: Some(root),
        };
        assert_eq!(w.stats(vec![(1, vec![a])]).usage(1).unwrap().rss_pages, 0);
    }
}

#[test]
fn empty_snapshot_and_json_escaping() {
    let s = MemStats::collect(&[]).unwrap();
    assert!(s.usages().is_empty());
    assert_eq!(s.totals(), FrameTotals::default());
    assert_eq!(json_str("a\"b\\\n\u{1}"), "\"a\\\"b\\\\\\n\\u0001\"");
    let ws = WorkingSet {
        id: 1,
        pages: 2,
        ranges: vec![(0x1000, 0x3000)],
    };
    assert_eq!(
        ws.to_json(),
        "{\"id\": 1, \"pages\": 2, \"bytes\": 8192, \"ranges\": [[4096, 12288]]}"
    );
}
