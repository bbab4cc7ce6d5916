//! Pre-populating hardware entries from the vpagetable ahead of the
//! vproc's first touches (a new program's image and stack), so each page
//! saves a fault.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::*;

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
    fn install_pages(&self, vas: &[u64]) -> usize {
        let mut st = self.lock();
        let mut pool = self.shared.machine.pool.lock().unwrap();
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
}
