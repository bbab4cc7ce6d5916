//! Property tests of the vpagetable walker (issue 12, item 20): random
//! vpagetables in a RAM buffer.
//!
//! - Garbage: random entries (valid or not, any flag bits, large-page bits
//!   at every level, pointers inside and outside RAM, unaligned, tables
//!   that point back at themselves): the walker returns a translation or a
//!   fault reason, never panics, a translation lies inside RAM, and the
//!   only change it makes to RAM is setting A/M bits.
//! - Well-formed: random 4 KiB / 2 MiB / 1 GiB mappings written by a small
//!   builder: the walker agrees with a plain map of the mappings.
//!
//! The default budget is small; `VKERNEL_FUZZ_CASES=N` runs N cases per
//! property.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::collections::BTreeMap;

use proptest::prelude::*;
use vkernel_core::ram::Ram;
use vkernel_core::vpte::{index, level_size, Vpte};
use vkernel_core::walker::{walk, Access, Emulate, FaultReason};

/// RAM of the garbage property: 16 pages, so random pointers often land
/// inside it (and make loops).
const GARBAGE_RAM: u64 = 16 * 4096;

fn cases(default: u32) -> u32 {
    std::env::var("VKERNEL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One random entry: mostly pointers into RAM with random flags, some
/// outside RAM, some unaligned, some pure noise.
fn entry() -> impl Strategy<Value = u64> {
    let flags = any::<u64>().prop_map(|f| f & !Vpte::FRAME_MASK);
    prop_oneof![
        2 => Just(0u64),
        6 => (0..GARBAGE_RAM / 4096, flags.clone())
            .prop_map(|(p, f)| (p * 4096) | f | Vpte::V),
        1 => (any::<u64>(), flags.clone()).prop_map(|(p, f)| (p & Vpte::FRAME_MASK) | f | Vpte::V),
        1 => (0..GARBAGE_RAM, flags).prop_map(|(p, f)| p | f),
        1 => any::<u64>(),
    ]
}

fn access() -> impl Strategy<Value = Access> {
    prop_oneof![
        Just(Access::Read),
        Just(Access::Write),
        Just(Access::Execute)
    ]
}

fn emulate() -> impl Strategy<Value = Emulate> {
    prop_oneof![Just(Emulate::AccessedModified), Just(Emulate::No)]
}

/// A virtual address whose indices point at a few slots (so random tables
/// are hit), or any address at all.
fn vaddr() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0..4u64, 0..4u64, 0..4u64, 0..4u64, 0..4096u64)
            .prop_map(|(a, b, c, d, o)| (a << 39) | (b << 30) | (c << 21) | (d << 12) | o),
        1 => any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn garbage_tables_never_panic_or_escape_ram(
        // Entries in the first 4 slots of each page (the slots vaddr() hits).
        slots in proptest::collection::vec(entry(), (GARBAGE_RAM / 4096 * 4) as usize),
        root in prop_oneof![
            6 => (0..GARBAGE_RAM / 4096).prop_map(|p| p * 4096),
            1 => any::<u64>(),
        ],
        va in vaddr(),
        acc in access(),
        em in emulate(),
    ) {
        let ram = Ram::anonymous(GARBAGE_RAM).unwrap();
        for (i, e) in slots.iter().enumerate() {
            let page = i as u64 / 4;
            ram.store(page * 4096 + 8 * (i as u64 % 4), *e).unwrap();
        }
        let mut before = vec![0u8; GARBAGE_RAM as usize];
        ram.read(0, &mut before).unwrap();
        let r = walk(&ram, root, va, acc, em);
        match r {
            Ok(t) => {
                prop_assert!(va < vkernel_guest::x86::USER_END);
                prop_assert!(t.frame.is_multiple_of(4096));
                prop_assert!(ram.contains(t.frame, 4096), "frame {:#x} outside RAM", t.frame);
                prop_assert!(ram.contains(t.leaf_gpa, 8));
                prop_assert!((1..=3).contains(&t.level));
                prop_assert!(t.vpte.valid());
                match acc {
                    Access::Read => {}
                    Access::Write => prop_assert!(t.writable),
                    Access::Execute => prop_assert!(t.executable),
                }
            }
            Err(FaultReason::NotUser) => prop_assert!(va >= vkernel_guest::x86::USER_END),
            Err(_) => {}
        }
        // The only change a walk makes: A (and M on a leaf) bits.
        let mut after = vec![0u8; GARBAGE_RAM as usize];
        ram.read(0, &mut after).unwrap();
        for (i, (b, a)) in before.chunks(8).zip(after.chunks(8)).enumerate() {
            let (b, a) = (
                u64::from_le_bytes(b.try_into().unwrap()),
                u64::from_le_bytes(a.try_into().unwrap()),
            );
            prop_assert_eq!(b & !(Vpte::A | Vpte::M), a & !(Vpte::A | Vpte::M), "word {} changed", i);
            if em == Emulate::No {
                prop_assert_eq!(a, b);
            }
        }
    }
}

/// One mapping of the well-formed property.
#[derive(Clone, Copy, Debug)]
struct Map {
    level: u8,
    slot: u64,
    frame_slot: u64,
    flags: u64,
}

/// RAM of the well-formed property: 4 MiB (tables below 2 MiB, 4 KiB
/// frames and the 2 MiB frame above); 1 GiB frames need RAM at 0 of 1 GiB,
/// so they point at 0 and the walker must refuse them as outside RAM.
const FORMED_RAM: u64 = 4 << 20;

fn map() -> impl Strategy<Value = Map> {
    let flags = (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(w, u, x)| {
        (if w { Vpte::RW } else { 0 })
            | (if u { Vpte::U } else { 0 })
            | (if x { 0 } else { Vpte::NX })
    });
    (
        prop_oneof![8 => Just(1u8), 2 => Just(2u8), 1 => Just(3u8)],
        0..64u64,
        0..64u64,
        flags,
    )
        .prop_map(|(level, slot, frame_slot, flags)| Map {
            level,
            slot,
            frame_slot,
            flags,
        })
}

/// The virtual base of a mapping: 4 KiB pages in the first GiB, 2 MiB
/// pages in the second, 1 GiB pages from the fifth on: never overlapping.
fn vbase(m: &Map) -> u64 {
    match m.level {
        1 => m.slot * 4096,
        2 => (1 << 30) + m.slot * (2 << 20),
        _ => (4 + m.slot) * (1 << 30),
    }
}

fn fbase(m: &Map) -> u64 {
    match m.level {
        1 => (2 << 20) + m.frame_slot * 4096,
        2 => 2 << 20,
        _ => 0,
    }
}

/// Write the mappings with a bump allocator for tables (below 2 MiB).
/// Later mappings of the same slot replace earlier ones.
fn build(ram: &Ram, maps: &[Map]) -> (u64, BTreeMap<u64, Map>) {
    let root = 0x1000u64;
    let mut next = root + 4096;
    let mut model = BTreeMap::new();
    for m in maps {
        let va = vbase(m);
        let mut table = root;
        for level in (m.level + 1..=4).rev() {
            let gpa = table + 8 * index(va, level) as u64;
            let e = Vpte(ram.load(gpa).unwrap());
            table = if e.valid() {
                e.frame()
            } else {
                let t = next;
                next += 4096;
                assert!(next < 2 << 20, "tables fit below 2 MiB");
                ram.store(gpa, Vpte::page(t, Vpte::RW | Vpte::U).bits())
                    .unwrap();
                t
            };
        }
        let ps = if m.level > 1 { Vpte::PS } else { 0 };
        let gpa = table + 8 * index(va, m.level) as u64;
        ram.store(gpa, Vpte::page(fbase(m), m.flags | ps | Vpte::V).bits())
            .unwrap();
        model.insert(va, *m);
    }
    (root, model)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(128)))]

    #[test]
    fn well_formed_tables_agree_with_the_model(
        maps in proptest::collection::vec(map(), 1..24),
        probes in proptest::collection::vec(
            (any::<prop::sample::Index>(), 0..(1u64 << 30), access(), any::<bool>()),
            1..32,
        ),
    ) {
        let ram = Ram::anonymous(FORMED_RAM).unwrap();
        let (root, model) = build(&ram, &maps);
        let list: Vec<(u64, Map)> = model.iter().map(|(a, m)| (*a, *m)).collect();
        for (pick, off, acc, inside) in probes {
            let (base, m) = list[pick.index(list.len())];
            let size = level_size(m.level);
            // A probe inside a mapping, or just past it (maybe unmapped).
            let va = if inside { base + off % size } else { base + size + off % 4096 };
            let want = model
                .range(..=va)
                .next_back()
                .filter(|(b, m)| va < **b + level_size(m.level))
                .map(|(b, m)| (*b, *m));
            let got = walk(&ram, root, va, acc, Emulate::AccessedModified);
            match want {
                None => prop_assert!(
                    matches!(got, Err(FaultReason::NotValid { .. })),
                    "unmapped {:#x}: {:?}", va, got
                ),
                Some((_, m)) if m.level == 3 => prop_assert_eq!(
                    got,
                    Err(FaultReason::OutsideRam { level: 3, gpa: 0 }),
                    "1 GiB frame beyond RAM at {:#x}", va
                ),
                Some((b, m)) => {
                    let allowed = m.flags & Vpte::U != 0
                        && match acc {
                            Access::Read => true,
                            Access::Write => m.flags & Vpte::RW != 0,
                            Access::Execute => m.flags & Vpte::NX == 0,
                        };
                    if !allowed {
                        prop_assert_eq!(got, Err(FaultReason::Protection), "{:#x} {:?}", va, m);
                    } else {
                        let t = got.unwrap();
                        prop_assert_eq!(t.level, m.level);
                        prop_assert_eq!(t.frame, fbase(&m) + ((va - b) & !0xfff));
                        prop_assert!(t.vpte.accessed());
                        if acc == Access::Write {
                            prop_assert!(t.vpte.modified());
                        }
                    }
                }
            }
        }
    }
}
