//! Accessed and modified bits: clearing them in the vpagetable (so the
//! next access is seen again) and harvesting the hardware A bits the
//! vCPUs set into the VPTEs (the seed's software-emulated A/M bits, read
//! by page aging and memory introspection).

use super::*;

impl Vmspace {
    /// Clear `bits` (A and/or M) in the leaf VPTE of `va` and invalidate the
    /// hardware entry, so the next access (or write) is seen again. Returns
    /// the VPTE as it was.
    pub fn clear_vpte_bits(&self, va: u64, bits: u64) -> Result<Vpte, FaultReason> {
        let mut st = self.lock();
        let root = match find(&st.regions, va).map(|r| r.1.kind) {
            Some(Kind::PageTable { root: Some(r) }) => r,
            Some(_) => return Err(FaultReason::NoPageTable),
            None => return Err(FaultReason::NoRegion),
        };
        let ram = &self.shared.machine.ram;
        let t = walk(ram, root, va, Access::Read, Emulate::No)?;
        loop {
            let old = ram.load(t.leaf_gpa).map_err(|_| FaultReason::OutsideRam {
                level: t.level,
                gpa: t.leaf_gpa,
            })?;
            if ram
                .cas(t.leaf_gpa, old, old & !bits)
                .map_err(|_| FaultReason::NotValid { level: 1 })?
            {
                let page = va & !0xFFF;
                self.invalidate_locked(&mut st, page, page + PAGE_SIZE, Rewrite::Remove);
                return Ok(Vpte(old));
            }
        }
    }

    /// Clear the accessed bit of every leaf VPTE in `[start, end)` that
    /// belongs to this vmspace's vpagetable mappings, and drop the hardware
    /// entries that would hide new references (the pagemap article's
    /// `clear_refs`). Returns how many VPTEs had A set.
    pub fn clear_accessed(&self, start: u64, end: u64) -> Result<usize, VmspaceError> {
        let end = end.min(USER_END);
        if start >= end {
            return Ok(0);
        }
        let mut st = self.lock();
        let ram = &self.shared.machine.ram;
        let mut n = 0;
        let ranges: Vec<(u64, u64, u64)> = st
            .regions
            .range(..end)
            .filter(|(s, r)| r.end > start && **s < end)
            .filter_map(|(s, r)| match r.kind {
                Kind::PageTable { root: Some(root) } => {
                    Some(((*s).max(start), r.end.min(end), root))
                }
                _ => None,
            })
            .collect();
        for (lo, hi, root) in ranges {
            crate::vptable::VpTable::from_root(root).for_each_leaf(
                ram,
                lo,
                hi,
                &mut |_, gpa, e| {
                    if e.accessed() {
                        let mut cur = e.bits();
                        while cur & Vpte::A != 0 {
                            match ram.cas(gpa, cur, cur & !Vpte::A) {
                                Ok(true) => {
                                    n += 1;
                                    break;
                                }
                                Ok(false) => cur = ram.load(gpa).unwrap_or(0),
                                Err(_) => break,
                            }
                        }
                    }
                },
            );
            self.invalidate_locked(&mut st, lo, hi, Rewrite::Remove);
        }
        Ok(n)
    }

    /// Fold the hardware accessed bits of installed entries into the leaf
    /// VPTEs' A bits (neighbours installed by fault-around carry their first
    /// use only in hardware). Returns how many VPTEs gained A.
    pub fn harvest_accessed(&self) -> usize {
        let st = self.lock();
        let Some(hw) = &st.hw else { return 0 };
        // Entries whose removal is still queued for the guest keep their old
        // bits in memory until the vproc runs again: they are not live.
        let dropped: std::collections::HashSet<u64> = st
            .pending
            .iter()
            .filter(|c| c[0] & 7 == vkernel_guest::abi::CMD_STORE && c[1] == 0)
            .map(|c| c[0] & !7)
            .collect();
        let pool = self.shared.machine.pool.lock().unwrap();
        let mut touched = Vec::new();
        hw.for_each_leaf(&pool, 0, USER_END, &mut |va, off| {
            if pool.sys().load(off).unwrap_or(0) & PTE_A != 0
                && !dropped.contains(&(vkernel_guest::layout::SYS_VA + off))
            {
                touched.push(va);
            }
        });
        drop(pool);
        let ram = &self.shared.machine.ram;
        let mut n = 0;
        for va in touched {
            if let Some((_, r)) = find(&st.regions, va) {
                if let Kind::PageTable { root: Some(root) } = r.kind {
                    if let Ok(t) = walk(ram, root, va, Access::Read, Emulate::No) {
                        if !t.vpte.accessed()
                            && ram.cas(t.leaf_gpa, t.vpte.bits(), t.vpte.with(Vpte::A).bits())
                                == Ok(true)
                        {
                            n += 1;
                        }
                    }
                }
            }
        }
        n
    }
}
