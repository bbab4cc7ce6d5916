//! Pre-populating hardware entries from the vpagetable ahead of the
//! vproc's first touches (a new program's image and stack), so each page
//! saves a fault.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::*;
use crate::hwpt::{
    agreement, Agreement, PtPool, ADOPT_DIFFER_MAX, ADOPT_MIN, ADOPT_RUNS_MAX, WINDOW,
};
use vkernel_guest::abi::{cmd, CMD_FLUSH, CMD_TOUCH};
use vkernel_guest::layout::SYS_VA;

/// A parked table page [`Vmspace::adopt_parked`] could take over.
struct Candidate {
    /// Its entries that stay as they are.
    kept: usize,
    /// The page.
    page: u64,
    /// The runs of entries to clear: (first index, count).
    runs: Vec<(u64, u64)>,
}

impl Vmspace {
    /// Install hardware entries now for every valid page of the vproc's
    /// vpagetable in `[start, end)` that has none, as fault-around installs
    /// neighbours: no VPTE A/M bit changes, hardware A clear (so
    /// [`Vmspace::harvest_accessed`] still tells which pages were used), a
    /// page the vproc may write but has not is read-only until its first
    /// write. The host writes only empty entries: no guest work, no exit.
    /// Use it where the vproc is about to touch the pages (a new program's
    /// image and stack): each saves a fault. Returns how many were
    /// installed. Large pages are left to the fault path.
    ///
    /// ```no_run
    /// # fn f(vms: &vkernel_core::vmspace::Vmspace) {
    /// let installed = vms.populate(0x40_0000, 0x60_0000).unwrap();
    /// # let _ = installed; }
    /// ```
    pub fn populate(&self, start: u64, end: u64) -> Result<usize, VmspaceError> {
        let end = check_range(start, end.saturating_sub(start))?;
        let vas = {
            let st = self.lock();
            let ram = &self.shared.machine.ram;
            let mut vas = Vec::new();
            for (&rs, r) in st.regions.range(..end) {
                let (s, e) = (rs.max(start), r.end.min(end));
                if s >= e {
                    continue;
                }
                if let Kind::PageTable { root: Some(root) } = r.kind {
                    let mut v = Leaves(|l: Leaf| {
                        if l.level == 1 {
                            vas.push(l.va)
                        }
                    });
                    walk_range(&VpTables(ram), root, s, e, &mut v);
                }
            }
            vas
        };
        Ok(self.install_pages(&vas))
    }

    /// [`Vmspace::populate`] for the pages `other` has hardware entries for
    /// in `[start, end)`: after fork, the child gets the parent's working
    /// set (read-only where copy-on-write) before it first runs, instead of
    /// one fault per page.
    pub fn populate_like(
        &self,
        other: &Vmspace,
        start: u64,
        end: u64,
    ) -> Result<usize, VmspaceError> {
        let end = check_range(start, end.saturating_sub(start))?;
        let vas = {
            let st = other.lock();
            let pool = other.shared.machine.pool.lock().unwrap();
            let mut vas = Vec::new();
            if let Some(hw) = &st.hw {
                // Every page of a 2 MiB entry: the other side may map the
                // window with 4 KiB pages (fork splits large pages).
                hw.for_each_span(&pool, start, end, &mut |va, e, _| {
                    vas.extend((va..e).step_by(PAGE_SIZE as usize))
                });
            }
            vas
        };
        Ok(self.install_pages(&vas))
    }

    /// Install the hardware entry of each page in `vas` that has none.
    /// A window with no table yet first takes over a parked one that maps
    /// it the same way ([`Vmspace::adopt_parked`]).
    fn install_pages(&self, vas: &[u64]) -> usize {
        let mut st = self.lock();
        let mut pool = self.shared.machine.pool.lock().unwrap();
        if st.running == 0 && pool.parked_pages() > 0 {
            let mut windows: Vec<u64> = vas.iter().map(|va| va & !(WINDOW - 1)).collect();
            windows.dedup();
            for w in windows {
                self.adopt_parked(&mut st, &mut pool, w);
            }
        }
        let mut n = 0;
        let mut cmds = Vec::new();
        for &va in vas {
            let Ok((frame, flags, large)) = self.translate_full(&st, va, Access::Read, Emulate::No)
            else {
                continue;
            };
            let Some(hw) = st.hw.as_mut() else { break };
            if hw.leaf(&pool, va) != 0 {
                continue;
            }
            if let Some(big) = large {
                let base = va & !(LARGE - 1);
                match hw.install_large(&mut pool, base, big | flags, false, &mut cmds) {
                    Ok(Installed::Direct) => {
                        n += 1;
                        st.stats.large_installed += 1;
                        continue;
                    }
                    Ok(Installed::Blocked) => {}
                    _ => continue,
                }
            }
            if let Ok(Installed::Direct) =
                hw.install(&mut pool, va, frame | flags, false, &mut cmds)
            {
                n += 1;
            }
        }
        debug_assert!(cmds.is_empty(), "only empty entries are installed");
        st.stats.installed += n as u64;
        n
    }

    /// Give window `w` (which has no table in this space yet) the parked
    /// table page whose present entries best agree with this space's
    /// mappings, if one agrees well enough ([`ADOPT_MIN`] entries kept,
    /// the rest in at most [`ADOPT_RUNS_MAX`] runs). Entries that differ
    /// are cleared by the host and touched by the guest ([`CMD_TOUCH`])
    /// before the vproc runs, so a shadow MMU keeps the shadows of the
    /// entries that agree and drops the others'. Only while no vCPU runs
    /// the space (a new image, a forked child).
    fn adopt_parked(&self, st: &mut VmState, pool: &mut PtPool, w: u64) {
        let Some(hw) = st.hw.as_ref() else { return };
        if hw.has_window(pool, w) {
            return;
        }
        // A window the new space maps with a 2 MiB page keeps it.
        if matches!(
            self.translate_full(st, w, Access::Read, Emulate::No),
            Ok((_, _, Some(_)))
        ) {
            return;
        }
        let same = |a: u64, b: u64| (a ^ b) & !(PTE_A | PTE_D) == 0;
        let mut best: Option<Candidate> = None;
        for page in pool.parked_for(w) {
            let present = (0..512u64).filter_map(|i| {
                let e = pool.entry(page, i);
                if e & PTE_P == 0 {
                    return None;
                }
                let want =
                    match self.translate_full(st, w + i * PAGE_SIZE, Access::Read, Emulate::No) {
                        Ok((frame, flags, None)) => frame | flags,
                        _ => 0,
                    };
                Some((i, same(e, want)))
            });
            let Agreement { kept, runs } = agreement(present);
            let differ: u64 = runs.iter().map(|r| r.1).sum();
            let better = best.as_ref().is_none_or(|b| kept > b.kept);
            if kept >= ADOPT_MIN
                && runs.len() <= ADOPT_RUNS_MAX
                && differ <= ADOPT_DIFFER_MAX
                && better
            {
                best = Some(Candidate { kept, page, runs });
            }
        }
        let Some(Candidate { kept, page, runs }) = best else {
            return;
        };
        let Some(hw) = st.hw.as_mut() else { return };
        // Taken first: a page left parked must keep its entries as its
        // shadow has them.
        match hw.adopt(pool, w, page) {
            Ok(true) => {}
            _ => return,
        }
        for &(first, n) in &runs {
            for i in first..first + n {
                pool.clear_entry(page, i);
            }
        }
        if !runs.is_empty() {
            for (first, n) in runs {
                st.pending
                    .push(cmd(CMD_TOUCH, SYS_VA + page + 8 * first, n));
            }
            st.pending.push(cmd(CMD_FLUSH, 0, 0));
            st.gen += 1;
        }
        st.stats.tables_adopted += 1;
        st.stats.entries_kept += kept as u64;
    }
}
