//! The one range walk: visit every leaf of a 4-level, x86-style table tree
//! that intersects a virtual range `[start, end)`.
//!
//! Three places walk a range of tables: [`crate::vptable::VpTable::for_each_leaf`]
//! (fork, `clear_refs`), [`crate::memstat`] (RSS/PSS/pagemap, working sets)
//! and the hardware page tables of [`crate::hwpt`] (invalidation, A-bit
//! harvest). They all use [`walk_range`] here, over a [`Tables`] format that
//! says how to read an entry and where tables and frames may lie, so they
//! agree on what a leaf is.
//!
//! **The rule for leaves**, the same as the [walker](crate::walker) applies
//! when it resolves one address ([`leaf_shape_ok`]):
//!
//! - an entry is a leaf at level 1, or at level 2 (2 MiB) or 3 (1 GiB) when
//!   PS is set;
//! - PS at the root (level 4) is malformed;
//! - a large leaf whose frame is not aligned to its size is malformed;
//! - a leaf whose frame (all of its size) is not inside RAM, or a table
//!   entry pointing at a table outside RAM, is bad.
//!
//! Malformed and bad entries are never visited as leaves: the walk reports
//! them to [`Visitor::bad`] and goes on, just as the walker faults on them.
//! Only the range's pages are reported: a large leaf that straddles `start`
//! or `end` is visited once, clipped to the range. Addresses at or above
//! [`USER_END`] are never walked.

use vkernel_guest::x86::USER_END;

use crate::ram::Ram;
use crate::vpte::{level_size, Vpte};

/// Is a leaf at `level` (1..=4) with frame `frame` well formed? A PS entry
/// at the root never is, and a large frame must be aligned to its size.
/// The walker and every range walk use this one rule.
pub fn leaf_shape_ok(level: u8, frame: u64) -> bool {
    (1..=3).contains(&level) && frame.is_multiple_of(level_size(level))
}

/// A table format the range walk can read.
pub(crate) trait Tables {
    /// The raw entry stored at `at` (an address returned by
    /// [`Tables::table_at`] plus 8 times the index); `None` reads as empty.
    fn load(&self, at: u64) -> Option<u64>;
    /// Is the present/valid bit set?
    fn valid(&self, raw: u64) -> bool;
    /// Is the large-page bit set?
    fn large(&self, raw: u64) -> bool;
    /// The table or frame address held in the entry.
    fn addr(&self, raw: u64) -> u64;
    /// Where the table page at `addr` is read, or `None` when it lies
    /// outside the memory the tables live in (or is not page aligned).
    fn table_at(&self, addr: u64) -> Option<u64>;
    /// May a leaf map the `size` bytes at `frame`?
    fn frame_ok(&self, frame: u64, size: u64) -> bool;
}

/// One leaf inside the walked range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Leaf {
    /// First virtual address of the leaf inside the range.
    pub va: u64,
    /// End of the leaf inside the range (exclusive).
    pub end: u64,
    /// Where the entry is stored (as [`Tables::load`] reads it).
    pub at: u64,
    /// The raw entry.
    pub raw: u64,
    /// The frame behind `va` (the leaf's frame plus `va`'s offset in it).
    pub frame: u64,
    /// 1 (4 KiB), 2 (2 MiB) or 3 (1 GiB).
    pub level: u8,
}

impl Leaf {
    /// 4 KiB pages of the leaf inside the range.
    pub fn pages(&self) -> u64 {
        (self.end - self.va) / 4096
    }
}

/// What a range walk reports.
pub(crate) trait Visitor {
    /// A table page reached by the walk (its [`Tables::table_at`] address).
    fn table(&mut self, _at: u64) {}
    /// A well-formed leaf.
    fn leaf(&mut self, leaf: Leaf);
    /// A valid entry that is malformed or points outside memory; `at` is
    /// where it is stored.
    fn bad(&mut self, _at: u64, _level: u8) {}
}

/// Walk the tables rooted at `root` over `[start, end)` in address order.
/// Bounded: at most four levels, and only the entries that intersect the
/// range are read.
pub(crate) fn walk_range<T: Tables + ?Sized, V: Visitor + ?Sized>(
    t: &T,
    root: u64,
    start: u64,
    end: u64,
    v: &mut V,
) {
    let end = end.min(USER_END);
    if start >= end {
        return;
    }
    if let Some(at) = t.table_at(root) {
        rec(t, at, 4, 0, start, end, v);
    }
}

fn rec<T: Tables + ?Sized, V: Visitor + ?Sized>(
    t: &T,
    table: u64,
    level: u8,
    base: u64,
    start: u64,
    end: u64,
    v: &mut V,
) {
    v.table(table);
    let span = level_size(level);
    let first = start.saturating_sub(base) / span;
    let last = ((end - 1 - base) / span).min(511);
    for i in first..=last {
        let lo = base + i * span;
        let at = table + 8 * i;
        let raw = t.load(at).unwrap_or(0);
        if !t.valid(raw) {
            continue;
        }
        let addr = t.addr(raw);
        if level == 1 || t.large(raw) {
            if !leaf_shape_ok(level, addr) || !t.frame_ok(addr, span) {
                v.bad(at, level);
                continue;
            }
            let va = lo.max(start);
            v.leaf(Leaf {
                va,
                end: (lo + span).min(end),
                at,
                raw,
                frame: addr + (va - lo),
                level,
            });
        } else if let Some(child) = t.table_at(addr) {
            rec(t, child, level - 1, lo, start, end, v);
        } else {
            v.bad(at, level);
        }
    }
}

/// Vpagetables in RAM ([`crate::vpte`] format): tables and frames must lie
/// inside RAM.
pub(crate) struct VpTables<'a>(pub &'a Ram);

impl Tables for VpTables<'_> {
    fn load(&self, at: u64) -> Option<u64> {
        self.0.load(at).ok()
    }
    fn valid(&self, raw: u64) -> bool {
        Vpte(raw).valid()
    }
    fn large(&self, raw: u64) -> bool {
        Vpte(raw).large()
    }
    fn addr(&self, raw: u64) -> u64 {
        Vpte(raw).frame()
    }
    fn table_at(&self, addr: u64) -> Option<u64> {
        (addr.is_multiple_of(4096) && self.0.contains(addr, 4096)).then_some(addr)
    }
    fn frame_ok(&self, frame: u64, size: u64) -> bool {
        self.0.contains(frame, size)
    }
}

/// A closure as a leaf-only [`Visitor`].
pub(crate) struct Leaves<F: FnMut(Leaf)>(pub F);

impl<F: FnMut(Leaf)> Visitor for Leaves<F> {
    fn leaf(&mut self, leaf: Leaf) {
        (self.0)(leaf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vptable::{FrameAlloc, VpTable};
    use crate::vpte::index;
    use crate::walker::{walk, Access, Emulate};

    const RW: u64 = Vpte::RW | Vpte::U;

    #[derive(Default)]
    struct Log {
        leaves: Vec<Leaf>,
        bad: Vec<(u64, u8)>,
        tables: usize,
    }
    impl Visitor for Log {
        fn table(&mut self, _: u64) {
            self.tables += 1;
        }
        fn leaf(&mut self, l: Leaf) {
            self.leaves.push(l);
        }
        fn bad(&mut self, at: u64, level: u8) {
            self.bad.push((at, level));
        }
    }

    /// A level-2 table for 0x4000_0000.. with a well-formed 2 MiB leaf, a
    /// misaligned one, one outside RAM and one 4 KiB table below.
    fn world() -> (Ram, VpTable, u64) {
        let ram = Ram::anonymous(16 << 20).unwrap();
        let mut fa = FrameAlloc::new(0x1000, 4 << 20).unwrap();
        let t = VpTable::new(&ram, &mut fa).unwrap();
        let base = 0x4000_0000u64;
        let f = fa.alloc(&ram).unwrap();
        t.map(&ram, &mut fa, base + 3 * (2 << 20), f, RW).unwrap();
        let l3 = Vpte(ram.load(t.root() + 8 * index(base, 4) as u64).unwrap()).frame();
        let l2 = Vpte(ram.load(l3 + 8 * index(base, 3) as u64).unwrap()).frame();
        ram.store(l2, Vpte::page(8 << 20, RW | Vpte::PS).bits())
            .unwrap();
        ram.store(l2 + 8, Vpte::page((8 << 20) + 0x1000, RW | Vpte::PS).bits())
            .unwrap();
        ram.store(l2 + 16, Vpte::page(1 << 40, RW | Vpte::PS).bits())
            .unwrap();
        (ram, t, base)
    }

    #[test]
    fn misaligned_large_pages_are_bad_everywhere() {
        let (ram, t, base) = world();
        let mut log = Log::default();
        walk_range(&VpTables(&ram), t.root(), base, base + (8 << 20), &mut log);
        // The aligned 2 MiB leaf and the 4 KiB page; the misaligned and the
        // outside-RAM large entries are bad.
        assert_eq!(log.leaves.len(), 2);
        assert_eq!(log.leaves[0].level, 2);
        assert_eq!(log.leaves[0].pages(), 512);
        assert_eq!(log.leaves[1].va, base + 3 * (2 << 20));
        assert_eq!(log.bad.len(), 2);
        assert!(log.bad.iter().all(|&(_, l)| l == 2));
        // The walker agrees on each address: resolves the leaves, faults
        // as malformed / outside RAM on the bad ones.
        let w = |va| walk(&ram, t.root(), va, Access::Read, Emulate::No);
        assert_eq!(w(base + 0x5000).unwrap().frame, (8 << 20) + 0x5000);
        assert!(w(base + 3 * (2 << 20)).is_ok());
        assert_eq!(
            w(base + (2 << 20)),
            Err(crate::walker::FaultReason::Malformed { level: 2 })
        );
        assert!(matches!(
            w(base + (4 << 20)),
            Err(crate::walker::FaultReason::OutsideRam { level: 2, .. })
        ));
        // for_each_leaf follows the same rule.
        let mut seen = Vec::new();
        t.for_each_leaf(&ram, base, base + (8 << 20), &mut |va, _, e| {
            seen.push((va, e.large()))
        });
        assert_eq!(seen, vec![(base, true), (base + 3 * (2 << 20), false)]);
    }

    #[test]
    fn clips_large_leaves_to_the_range() {
        let (ram, t, base) = world();
        let mut log = Log::default();
        let (s, e) = (base + 0x1_0000, base + 0x3_0000);
        walk_range(&VpTables(&ram), t.root(), s, e, &mut log);
        assert_eq!(log.leaves.len(), 1);
        let l = log.leaves[0];
        assert_eq!((l.va, l.end, l.frame), (s, e, (8 << 20) + 0x1_0000));
        assert!(log.bad.is_empty());
        // Root, level 3, level 2: the level-1 table is outside the range.
        assert_eq!(log.tables, 3);
    }

    #[test]
    fn root_ps_and_garbage_roots() {
        let ram = Ram::anonymous(1 << 20).unwrap();
        ram.store(0x1000, Vpte::page(0, RW | Vpte::PS).bits())
            .unwrap();
        let mut log = Log::default();
        walk_range(&VpTables(&ram), 0x1000, 0, USER_END, &mut log);
        assert!(log.leaves.is_empty());
        assert_eq!(log.bad, vec![(0x1000, 4)]);
        for root in [1 << 40, 0x1008] {
            let mut log = Log::default();
            walk_range(&VpTables(&ram), root, 0, u64::MAX, &mut log);
            assert_eq!((log.tables, log.leaves.len(), log.bad.len()), (0, 0, 0));
        }
        assert!(!leaf_shape_ok(4, 0));
        assert!(leaf_shape_ok(3, 1 << 30) && !leaf_shape_ok(3, 2 << 20));
        assert!(leaf_shape_ok(1, 0x1000));
    }
}
