//! Parked table pages: the last-level tables of a finished address space,
//! kept with their contents for the next address space that maps the same
//! 2 MiB window with the same frames.
//!
//! A shadow MMU keys its shadow of a guest table by the table's frame. A
//! new process gets new table pages, so KVM builds new shadows and takes a
//! fault for every group of 8 pages it touches, although a `busybox` exec'd
//! after the last one maps the same page-cache frames of the same text at
//! the same addresses. So a destroyed space's last-level tables with enough
//! present entries are not scrubbed but parked (nothing is written to them:
//! no vCPU can reach them, and KVM's shadow of each stays valid for its
//! contents). When [`crate::vmspace::Vmspace::populate`] or `populate_like`
//! is about to build a window's table from nothing, it checks the parked
//! pages of that window entry by entry against the new vpagetable and
//! adopts the best one: entries that map what the new space maps stay (and
//! their shadows with them), the others are cleared by the host and
//! [`CMD_TOUCH`]ed by the guest before the vproc first runs, so no shadow of
//! an old entry outlives it. On a real MMU (nested paging) this is only
//! page-table reuse; the CR3 load and flush that precede the first run
//! handle its TLB.

use super::*;

/// Most table pages parked at once (the oldest goes to the scrub queue).
const PARK_MAX: usize = 16;

/// A last-level table is parked only with at least this many present
/// entries: fewer are not worth a page of the pool.
const PARK_MIN: usize = 16;

/// A parked page is adopted only when at least this many of its present
/// entries stay as they are.
pub(crate) const ADOPT_MIN: usize = 16;

/// ... and its entries to clear form at most this many runs (one
/// [`CMD_TOUCH`] each, about 16 emulated instructions).
pub(crate) const ADOPT_RUNS_MAX: usize = 16;

/// ... and at most this many of its entries differ: a page that agrees
/// worse stays parked for a process it suits, and the window gets a fresh
/// table (a second flavour joins the rotation: a shell's forked children
/// and the program they exec map the same text with different private
/// pages).
pub(crate) const ADOPT_DIFFER_MAX: u64 = 32;

/// Bytes a last-level table maps.
pub(crate) const WINDOW: u64 = 2 << 20;

/// Agreeing entries between two runs of differing ones that are cleared
/// with them, so that one [`CMD_TOUCH`] covers both (a run costs the stub
/// about four times an entry).
const RUN_GAP: u64 = 4;

/// How a parked page's present entries agree with what a new space would
/// install ([`agreement`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Agreement {
    /// Entries that stay as they are (and keep their shadows).
    pub(crate) kept: usize,
    /// Runs to clear and touch, (first index, count): every differing
    /// entry, and the agreeing ones in gaps of at most [`RUN_GAP`] between
    /// two of them.
    pub(crate) runs: Vec<(u64, u64)>,
}

/// [`Agreement`] of a page's present entries, given in ascending index
/// order as (index, agrees).
pub(crate) fn agreement(present: impl Iterator<Item = (u64, bool)>) -> Agreement {
    // Agreeing entries since the last differing one, and those a run took
    // in when it bridged their gap.
    let (mut kept, mut since, mut absorbed) = (0usize, 0usize, 0usize);
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for (i, agrees) in present {
        if agrees {
            kept += 1;
            since += 1;
            continue;
        }
        match runs.last_mut() {
            Some((first, n)) if *first + *n + RUN_GAP >= i => {
                *n = i + 1 - *first;
                absorbed += since;
            }
            _ => runs.push((i, 1)),
        }
        since = 0;
    }
    Agreement {
        kept: kept - absorbed,
        runs,
    }
}

impl PtPool {
    /// Release the table pages of a destroyed (or reset) address space,
    /// parking its last-level tables worth keeping when `park`; windows
    /// holding an address of `exclude` (the machine's own pages) are never
    /// parked. `park` must be false while a command for these tables was
    /// still to be carried out by the guest: the host may already have
    /// written an entry whose old shadow only that command drops.
    pub(crate) fn release_space(&mut self, hw: &HwSpace, exclude: &[u64], park: bool) {
        let mut kept = Vec::new();
        let tables = if park {
            hw.leaf_tables(self)
        } else {
            Vec::new()
        };
        for (window, page) in tables {
            if exclude.iter().any(|&x| x & !(WINDOW - 1) == window) {
                continue;
            }
            if self.present(page) >= PARK_MIN {
                kept.push(page);
                self.parked.push_back((window, page));
            }
        }
        let rest: Vec<u64> = hw
            .pages()
            .iter()
            .copied()
            .filter(|p| !kept.contains(p))
            .collect();
        self.release(&rest);
        while self.parked.len() > PARK_MAX {
            if let Some((_, p)) = self.parked.pop_front() {
                self.release(&[p]);
            }
        }
    }

    /// Parked pages for `window`, newest first.
    pub(crate) fn parked_for(&self, window: u64) -> Vec<u64> {
        self.parked
            .iter()
            .rev()
            .filter(|&&(w, _)| w == window)
            .map(|&(_, p)| p)
            .collect()
    }

    /// Take `page` out of the parked set (it is being adopted).
    pub(crate) fn unpark(&mut self, page: u64) {
        self.parked.retain(|&(_, p)| p != page);
    }

    /// Give every parked page back to the scrub queue (the pool runs low).
    pub(crate) fn release_parked(&mut self) {
        let pages: Vec<u64> = self.parked.drain(..).map(|(_, p)| p).collect();
        self.release(&pages);
    }

    /// Pages parked now.
    pub(crate) fn parked_pages(&self) -> usize {
        self.parked.len()
    }

    /// Present entries of table page `page`.
    pub(crate) fn present(&self, page: u64) -> usize {
        (0..512u64)
            .filter(|i| self.sys.load(page + 8 * i).is_ok_and(|e| e & PTE_P != 0))
            .count()
    }

    /// Clear entry `i` of table page `page` (a parked page being adopted:
    /// the guest touches it before the page is used).
    pub(crate) fn clear_entry(&mut self, page: u64, i: u64) {
        self.sys
            .store(page + 8 * i, 0)
            .expect("pool page inside the system region");
    }

    /// Entry `i` of table page `page` (0 when unreadable).
    pub(crate) fn entry(&self, page: u64, i: u64) -> u64 {
        self.sys.load(page + 8 * i).unwrap_or(0)
    }
}

impl HwSpace {
    /// Every last-level table page as (window address, page offset).
    pub(crate) fn leaf_tables(&self, pool: &PtPool) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let child = |e: u64| {
            (e & PTE_P != 0 && e & PTE_PS == 0)
                .then(|| (e & PTE_ADDR_MASK).checked_sub(pool.sys_gpa))
                .flatten()
        };
        for i4 in 0..256u64 {
            if i4 == SYS_PML4_INDEX as u64 {
                continue;
            }
            let Some(pdpt) = child(pool.entry(self.pml4, i4)) else {
                continue;
            };
            for i3 in 0..512u64 {
                let Some(pd) = child(pool.entry(pdpt, i3)) else {
                    continue;
                };
                for i2 in 0..512u64 {
                    if let Some(pt) = child(pool.entry(pd, i2)) {
                        out.push(((i4 << 39) | (i3 << 30) | (i2 << 21), pt));
                    }
                }
            }
        }
        out
    }

    /// Does this space have a table (or a 2 MiB entry) for the window of
    /// `va`?
    pub(crate) fn has_window(&self, pool: &PtPool, va: u64) -> bool {
        self.pd_entry(pool, va).is_some_and(|e| e & PTE_P != 0)
    }

    /// Make parked table page `page` this space's last-level table for the
    /// window of `va` (which has none), after its entries were checked
    /// against this space's mappings and the others cleared. Returns
    /// `false`, changing nothing, when the window already has one.
    pub(crate) fn adopt(
        &mut self,
        pool: &mut PtPool,
        va: u64,
        page: u64,
    ) -> Result<bool, PoolError> {
        let off = self.entry_off(pool, va, 2)?;
        if pool.sys.load(off).unwrap_or(1) != 0 {
            return Ok(false);
        }
        pool.unpark(page);
        let entry = pool.gpa(page) | PTE_P | PTE_W | PTE_U | PTE_A;
        pool.sys.store(off, entry).expect("inside");
        self.tables.push(page);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ram::Ram;

    const SYS_GPA: u64 = 1 << 30;
    const VA: u64 = 0x40_0000;

    fn pool() -> PtPool {
        let sys = Ram::anonymous(4 << 20).unwrap();
        PtPool::new(sys, SYS_GPA, 0, 4 << 20, 0)
    }

    /// A space with `n` read-only entries in the window at `VA`.
    fn space(pool: &mut PtPool, n: u64) -> HwSpace {
        let mut hw = pool.new_space().unwrap();
        let mut cmds = Vec::new();
        for i in 0..n {
            let e = (0x10_0000 + i * PAGE_SIZE) | PTE_P | PTE_U | PTE_A;
            hw.install(pool, VA + i * PAGE_SIZE, e, false, &mut cmds)
                .unwrap();
        }
        hw
    }

    #[test]
    fn differing_entries_form_runs_that_bridge_short_gaps() {
        // Present: 0..10 agree, 10 and 12 differ (11 absent), 13..20
        // agree, 30 differs, 31 agrees.
        let present = (0..32u64)
            .filter(|&i| i != 11 && !(20..30).contains(&i))
            .map(|i| (i, ![10, 12, 30].contains(&i)));
        let a = agreement(present);
        assert_eq!(a.runs, vec![(10, 3), (30, 1)]);
        // 10 + 7 + 1 agree; none was inside a bridged gap with agreeing
        // entries (11 is absent).
        assert_eq!(a.kept, 18);
        // An agreeing entry inside a bridged gap is cleared, not kept.
        let a = agreement([(0, false), (1, true), (2, true), (3, false), (4, true)].into_iter());
        assert_eq!(a.runs, vec![(0, 4)]);
        assert_eq!(a.kept, 1);
        // Far apart: two runs.
        let a = agreement([(0, false), (9, true), (10, false)].into_iter());
        assert_eq!(a.runs, vec![(0, 1), (10, 1)]);
        assert_eq!(a.kept, 1);
    }

    #[test]
    fn a_finished_spaces_full_tables_are_parked_with_their_entries() {
        let mut pool = pool();
        let hw = space(&mut pool, 100);
        let table = hw.leaf_off(&pool, VA).unwrap();
        assert_eq!(hw.leaf_tables(&pool), vec![(VA, table)]);
        pool.release_space(&hw, &[], true);
        assert_eq!(pool.parked_for(VA), vec![table]);
        assert_eq!(pool.present(table), 100, "nothing written to it");
        // Its other pages (PML4, PDPT, PD) were scrubbed as before.
        let mut cmds = Vec::new();
        pool.take_scrub(64, &mut cmds);
        assert_eq!(cmds.iter().filter(|c| c[0] & 7 == CMD_ZAP).count(), 3);
        // A new space takes it over for the same window.
        let mut b = pool.new_space().unwrap();
        assert!(!b.has_window(&pool, VA));
        assert_eq!(b.adopt(&mut pool, VA, table), Ok(true));
        assert!(pool.parked_for(VA).is_empty());
        assert_eq!(b.leaf_off(&pool, VA + 5 * PAGE_SIZE), Some(table + 5 * 8));
        assert_eq!(b.leaf(&pool, VA + 5 * PAGE_SIZE) & PTE_ADDR_MASK, 0x10_5000);
        // A window that has a table keeps it.
        let other = space(&mut pool, 20);
        let t2 = other.leaf_off(&pool, VA).unwrap();
        assert_eq!(b.adopt(&mut pool, VA, t2), Ok(false));
    }

    #[test]
    fn sparse_tables_machine_windows_and_spaces_with_commands_waiting_are_not_parked() {
        let mut pool = pool();
        let sparse = space(&mut pool, PARK_MIN as u64 - 1);
        pool.release_space(&sparse, &[], true);
        assert!(pool.parked_for(VA).is_empty());
        let full = space(&mut pool, 100);
        pool.release_space(&full, &[VA + 0x1234], true);
        assert!(pool.parked_for(VA).is_empty(), "the machine's window");
        let full = space(&mut pool, 100);
        pool.release_space(&full, &[], false);
        assert!(pool.parked_for(VA).is_empty(), "a command was waiting");
    }

    #[test]
    fn parking_is_bounded_and_gives_way_when_the_pool_runs_low() {
        let mut pool = pool();
        let mut tables = Vec::new();
        for _ in 0..PARK_MAX + 3 {
            let hw = space(&mut pool, 32);
            tables.push(hw.leaf_off(&pool, VA).unwrap());
            pool.release_space(&hw, &[], true);
        }
        assert_eq!(pool.parked_pages(), PARK_MAX);
        // Newest first; the oldest went to the scrub queue.
        assert_eq!(pool.parked_for(VA)[0], *tables.last().unwrap());
        assert!(!pool.parked_for(VA).contains(&tables[0]));
        pool.release_parked();
        assert_eq!(pool.parked_pages(), 0);
    }
}
