//! Demand paging: the VPTEs of the vproc's pages, and the page faults the
//! vpagetable could not resolve ([`Mm::handle_fault`]): a first touch
//! maps a zeroed frame (and up to `fault_around` neighbours, more on a
//! sequential sweep), a write to a copy-on-write page breaks the sharing.

use super::*;
use crate::core::vptable::LARGE;

/// Pages either side of a first touch of a private read-only file area
/// that [`Mm::map_cached_around`] maps from the page cache.
const CACHED_AROUND: u64 = 256;

impl Mm {
    /// VPTE for `frame` at a page with `prot`: a frame someone else also
    /// holds stays read-only and copy-on-write.
    pub(super) fn entry(&self, frame: u64, prot: u32, dirty: bool) -> Vpte {
        let mut e = Vpte::page(frame, Self::flags(prot, dirty) | Vpte::V);
        if self.fr().refcount(frame) > 1 {
            e = e.without(Vpte::RW | Vpte::M).with(Vpte::COW);
        }
        e
    }

    /// Break copy-on-write at `page` if its VPTE says so: afterwards the
    /// page has a frame of its own, writable. Returns whether it was COW.
    pub(super) fn break_cow(&mut self, page: u64) -> Result<bool, MmError> {
        let cow = self
            .vpt
            .lookup(&self.ram, page)
            .is_some_and(|e| e.valid() && e.bits() & Vpte::COW != 0);
        if !cow {
            return Ok(false);
        }
        let done = self.vpt.cow_fault(&self.ram, &mut self.fr(), page)?;
        if done {
            if let Some(e) = self.vpt.lookup(&self.ram, page) {
                self.pages.insert(page, e.frame());
            }
            self.stats.cow_breaks += 1;
            self.inval(page, page + PAGE);
        }
        Ok(done)
    }

    pub(super) fn flags(prot: u32, dirty: bool) -> u64 {
        let mut f = Vpte::U | Vpte::A;
        if prot & PROT_WRITE != 0 {
            f |= Vpte::RW;
            if dirty {
                f |= Vpte::M;
            }
        }
        if prot & PROT_EXEC == 0 {
            f |= Vpte::NX;
        }
        f
    }

    pub(super) fn inval(&self, start: u64, end: u64) {
        let s = start.max(USER_START);
        let e = end.min(USER_END);
        if s < e {
            // The range is inside the one PageTable mapping made in `new`.
            let _ = self.vms.mcontrol(s, e - s, Mcontrol::Inval);
        }
    }

    /// Take write permission away from the hardware entries in
    /// `[start, end)` whose VPTEs no longer allow writes (read-only entries
    /// stay: nothing the vproc reads refaults).
    pub(super) fn write_protect(&self, start: u64, end: u64) {
        let s = start.max(USER_START);
        let e = end.min(USER_END);
        if s < e {
            let _ = self.vms.mcontrol(s, e - s, Mcontrol::WriteProtect);
        }
    }

    /// Give the first `max` pages of `[start, end)` that lie in private
    /// writable anonymous areas (a program's bss, the stack, the heap) and
    /// have no frame yet a zeroed frame now, writable and modified: a
    /// program writes them at once, and each would otherwise cost a fault
    /// through an exit. Returns how many were mapped.
    pub fn prefill_zero(&mut self, start: u64, end: u64, max: usize) -> usize {
        let pages: Vec<(u64, u32)> = self
            .writable_pages(start, end, |v| {
                v.file.is_none() && v.shm.is_none() && v.kind != VmaKind::SyscallStubs
            })
            .into_iter()
            .filter(|(va, _)| !self.pages.contains_key(va))
            .take(max)
            .collect();
        let mut n = 0;
        for (va, prot) in pages {
            if self.map_new(va, prot, true).is_err() {
                break;
            }
            n += 1;
        }
        n
    }

    /// Every page of `[start, end)` in a writable area that `pick` takes,
    /// with the area's rights, in address order.
    pub(super) fn writable_pages(
        &self,
        start: u64,
        end: u64,
        pick: impl Fn(&Vma) -> bool,
    ) -> Vec<(u64, u32)> {
        self.vmas
            .range(..end)
            .filter(|(s, v)| v.end > start && **s < end && v.prot & PROT_WRITE != 0 && pick(v))
            .flat_map(|(s, v)| {
                let first = (*s).max(start);
                let n = v.end.min(end).saturating_sub(first) / PAGE;
                (0..n).map(move |i| (first + i * PAGE, v.prot))
            })
            .collect()
    }

    /// Give `va` (page aligned) a zeroed frame mapped with `prot`. When
    /// RAM is short, file pages only the page cache holds are given back
    /// first.
    pub(super) fn map_new(&mut self, va: u64, prot: u32, dirty: bool) -> Result<u64, MmError> {
        // (The guard must be gone before shrink locks the frames again.)
        let first = self.fr().alloc(&self.ram);
        let f = match first {
            Ok(f) => f,
            Err(VptError::OutOfFrames) => {
                self.cache.shrink(&self.frames);
                self.fr().alloc(&self.ram)?
            }
            Err(e) => return Err(e.into()),
        };
        let mut fr = self.fr();
        let valid = if prot == 0 { 0 } else { Vpte::V };
        if let Err(e) = self.vpt.set(
            &self.ram,
            &mut fr,
            va,
            Vpte::page(f, Self::flags(prot, dirty) | valid),
        ) {
            fr.free(f);
            return Err(e.into());
        }
        drop(fr);
        self.pages.insert(va, f);
        self.stats.pages_mapped += 1;
        Ok(f)
    }

    /// VPTE for `frame` in a shared area: the area's permissions, marked
    /// [`Vpte::SHARED`], never copy-on-write.
    pub(super) fn shared_entry(frame: u64, prot: u32, dirty: bool) -> Vpte {
        Vpte::page(frame, Self::flags(prot, dirty) | Vpte::V | Vpte::SHARED)
    }

    /// VPTE for `frame` at page `va` with `prot`: a shared area's
    /// ([`Mm::shared_entry`]) or [`Mm::entry`].
    pub(super) fn entry_at(&self, va: u64, frame: u64, prot: u32, dirty: bool) -> Vpte {
        if self.find(va).is_some_and(|(_, v)| v.shm.is_some()) {
            Self::shared_entry(frame, prot, dirty)
        } else {
            self.entry(frame, prot, dirty)
        }
    }

    pub(super) fn set_vpte(&mut self, va: u64, frame: u64, prot: u32) -> Result<(), MmError> {
        let e = if prot == 0 {
            Vpte(0)
        } else {
            self.entry_at(va, frame, prot, false)
        };
        self.vpt.set(&self.ram, &mut self.fr(), va, e)?;
        Ok(())
    }

    /// Resolve a page fault the vpagetable could not: map the page (and
    /// neighbours) if an area allows the access.
    pub fn handle_fault(&mut self, addr: u64, access: Access) -> Result<(), FaultSignal> {
        let Some((start, vma)) = self.find(addr) else {
            return Err(FaultSignal::MapErr);
        };
        let need = match access {
            Access::Read => PROT_READ | PROT_WRITE | PROT_EXEC,
            Access::Write => PROT_WRITE,
            Access::Execute => PROT_EXEC,
        };
        if vma.prot & need == 0 {
            return Err(FaultSignal::AccErr);
        }
        let page = addr & !(PAGE - 1);
        let dirty = access == Access::Write;
        if self.large_at(page).is_some() {
            // The vpagetable could not resolve an access to a large page
            // the area allows (should not happen): go on with 4 KiB pages.
            self.split_large_in(page, page + PAGE, false);
            self.inval(page & !(LARGE - 1), (page & !(LARGE - 1)) + LARGE);
        }
        if let Some(base) = self.large_window(start, &vma, page) {
            if self.map_large_at(base, vma.prot, dirty) {
                self.stats.demand_faults += 1;
                self.sweep = (base + LARGE, MAX_WINDOW.max(self.fault_around));
                return Ok(());
            }
        }
        if let Some((base, first)) = self.file_large_window(start, &vma, page) {
            if self.map_file_large(base, &vma, first, true) {
                self.stats.demand_faults += 1;
                self.sweep = (base + LARGE, MAX_WINDOW.max(self.fault_around));
                return Ok(());
            }
        }
        if dirty && self.pages.contains_key(&page) {
            match self.break_cow(page) {
                Ok(true) => {
                    self.copy_around(start, &vma, page);
                    return Ok(());
                }
                Ok(false) => {}
                Err(_) => return Err(FaultSignal::Oom),
            }
        }
        if let Some(&f) = self.pages.get(&page) {
            let cur = self.vpt.lookup(&self.ram, page);
            let want = self.entry_at(page, f, vma.prot, dirty);
            if cur.map(|c| c.bits() & !(Vpte::A | Vpte::M))
                == Some(want.bits() & !(Vpte::A | Vpte::M))
            {
                // The VPTE already allows the access: the fault is stale.
                // Another thread changed the page while this one waited
                // for the process lock (a fork from another thread
                // write-protected it, then its eager copy made it
                // writable again). Drop what the vCPU may still cache and
                // retry; a vCPU that keeps faulting on an entry that
                // allows the access ends in the core's fault-loop check.
                self.inval(page, page + PAGE);
                return Ok(());
            }
            // Present but the VPTE disagrees with the area (should not
            // happen): rewrite it.
            self.vpt
                .set(&self.ram, &mut self.fr(), page, want)
                .map_err(|_| FaultSignal::Oom)?;
            self.inval(page, page + PAGE);
            return Ok(());
        }
        self.stats.demand_faults += 1;
        if self.collapse_window(start, &vma, page & !(LARGE - 1)) {
            self.sweep = (
                (page & !(LARGE - 1)) + LARGE,
                MAX_WINDOW.max(self.fault_around),
            );
            return Ok(());
        }
        let n = if page == self.sweep.0 {
            (self.sweep.1 * 2).min(MAX_WINDOW.max(self.fault_around))
        } else {
            self.fault_around
        };
        let (mut lo, mut hi) = if vma.kind == VmaKind::Stack {
            (page.saturating_sub((n - 1) * PAGE).max(start), page + PAGE)
        } else if page == self.sweep.0 {
            (page, (page + n * PAGE).min(vma.end))
        } else {
            // A first touch: the aligned window around the page, both
            // sides (a program's BSS and heap are touched out of order).
            let base = page - (page / PAGE % n) * PAGE;
            (base.max(start), (base + n * PAGE).min(vma.end))
        };
        if self.large_area(&vma) || self.large_file_area(&vma) {
            // Never into another 2 MiB window: it may still get a large
            // page at its first touch (a sweep goes on there).
            let win = page & !(LARGE - 1);
            (lo, hi) = (lo.max(win), hi.min(win + LARGE));
        }
        self.sweep = (hi, n);
        // Private anonymous pages are mapped writable (M set) even by a
        // read: they have nothing to write back, and a page read before
        // it is written (a sieve's `if (c[i])`) would otherwise take a
        // second fault, an exit, at its first write.
        let anon = vma.file.is_none() && vma.shm.is_none();
        self.populate(start, &vma, page, dirty || anon)
            .map_err(|e| match e {
                MmError::Bus(_) => FaultSignal::Bus,
                _ => FaultSignal::Oom,
            })?;
        // Neighbours of a file page are read ahead but stay shared (a
        // shared area's are not written yet).
        let ndirty = anon;
        let mut va = lo;
        while va < hi {
            if va != page
                && !self.pages.contains_key(&va)
                && self.populate(start, &vma, va, ndirty).is_err()
            {
                break;
            }
            va += PAGE;
        }
        self.map_cached_around(start, &vma, page);
        Ok(())
    }

    /// A write fault just gave `page` of a private writable file area its
    /// own copy: give the neighbours in its aligned window of
    /// `fault_around` pages that still share the file's page (never
    /// written: a page a fork shares is left to its own fault) their copies
    /// too, writable and modified. A program's initialised data is written
    /// page after page at its start (CPython's static objects: 293
    /// copy-on-write faults, an exit each, in `import json, os, re,
    /// subprocess`), and a copy costs a microsecond where the fault costs
    /// tens. The price: those pages count as private (RSS, USS) before
    /// they are written, as after a fault-around of anonymous memory.
    fn copy_around(&mut self, start: u64, vma: &Vma, page: u64) {
        let Some(fm) = vma.file.as_ref().filter(|f| !f.shared) else {
            return;
        };
        if vma.shm.is_some() || vma.prot & PROT_WRITE == 0 {
            return;
        }
        let n = self.fault_around.max(1);
        let base = page - (page / PAGE % n) * PAGE;
        let (lo, hi) = (base.max(start), (base + n * PAGE).min(vma.end));
        let mut copied = Vec::new();
        let mut va = lo;
        while va < hi {
            let shares_file = self.pages.get(&va).is_some_and(|&f| {
                let index = fm.off.saturating_add(va - start) / PAGE;
                self.cache.holds(&*fm.src, index, f)
            });
            if va != page && shares_file {
                let Ok(f) = self.privatize_quiet(va) else {
                    break;
                };
                let e = self.entry(f, vma.prot, true);
                if self.vpt.set(&self.ram, &mut self.fr(), va, e).is_err() {
                    break;
                }
                copied.push(va);
            }
            va += PAGE;
        }
        if let (Some(&first), Some(&last)) = (copied.first(), copied.last()) {
            // The vCPU may hold the old read-only entries: one invalidation
            // for the window (a run of changed entries is one guest touch,
            // where one command per page would be emulated each).
            self.inval(first, last + PAGE);
        }
    }

    /// A first touch of a private read-only file area (a library's
    /// read-only data, a segment a loader mapped over its reservation):
    /// map every page of the area within [`CACHED_AROUND`] pages that the
    /// page cache holds, with their hardware entries, as `mmap` does for a
    /// loader's segments (`Mm::fill_segment`): a library's read-only
    /// data took a fault, an exit, per 16 pages. Nothing is read from the
    /// file here.
    fn map_cached_around(&mut self, start: u64, vma: &Vma, page: u64) {
        let private_ro = vma.file.as_ref().is_some_and(|f| !f.shared)
            && vma.shm.is_none()
            && vma.prot & PROT_WRITE == 0;
        if !private_ro {
            return;
        }
        let lo = start.max(page.saturating_sub(CACHED_AROUND * PAGE));
        let hi = vma.end.min(page.saturating_add(CACHED_AROUND * PAGE));
        self.fill_segment(lo, hi - lo, false);
    }
}
