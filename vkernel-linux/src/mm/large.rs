//! Large pages in a vproc's memory, like Linux's transparent huge pages: a
//! first touch in an aligned 2 MiB window that lies wholly inside an
//! anonymous private area (an anonymous mmap or the brk heap) maps the
//! window with one 2 MiB block and one level-2 VPTE ([`Mm::map_large_at`]);
//! the vmspace then installs one 2 MiB hardware entry for it. Everything
//! that works on single pages (munmap, mprotect, mremap, MADV_DONTNEED,
//! fork) first splits the large pages it touches into 512 4 KiB VPTEs over
//! the same frames ([`Mm::split_large_in`]); a window an unmap covers
//! wholly is freed as one block instead. fork splits every large page: the
//! child and the parent then share 4 KiB frames copy-on-write, so a write
//! after fork copies 4 KiB, not 2 MiB.

use super::*;
use crate::core::vptable::LARGE;

impl Mm {
    /// The large page covering `va`, if any: (window start, block).
    pub(super) fn large_at(&self, va: u64) -> Option<(u64, u64)> {
        let base = va & !(LARGE - 1);
        self.large.get(&base).map(|&b| (base, b))
    }

    /// The 2 MiB window of `page` if a first touch there may map a large
    /// page: an anonymous private area (not the stack) covers the whole
    /// window and none of its pages is mapped yet.
    pub(super) fn large_window(&self, start: u64, vma: &Vma, page: u64) -> Option<u64> {
        let base = page & !(LARGE - 1);
        let ok = self.large_area(vma)
            && start <= base
            && base + LARGE <= vma.end
            && !self.large.contains_key(&base)
            && self.pages.range(base..base + LARGE).next().is_none();
        ok.then_some(base)
    }

    /// May `vma`'s windows get large pages (an anonymous private area, not
    /// the stack, with large pages on)? Fault-around in such an area stays
    /// inside the faulting page's window, so that the next window is still
    /// empty when it is first touched.
    pub(super) fn large_area(&self, vma: &Vma) -> bool {
        self.large_pages
            && vma.file.is_none()
            && vma.shm.is_none()
            && matches!(vma.kind, VmaKind::Anon | VmaKind::Brk)
            && vma.prot != 0
    }

    /// Map the window at `base` with a fresh zeroed 2 MiB block. Returns
    /// false, changing nothing, when no block is free (the caller maps
    /// 4 KiB pages instead).
    pub(super) fn map_large_at(&mut self, base: u64, prot: u32, dirty: bool) -> bool {
        let mut fr = self.fr();
        let Ok(Some(block)) = fr.alloc_large(&self.ram) else {
            return false;
        };
        if self
            .vpt
            .map_large(&self.ram, &mut fr, base, block, Self::flags(prot, dirty))
            .is_err()
        {
            fr.free_large(block);
            return false;
        }
        drop(fr);
        self.large.insert(base, block);
        self.stats.pages_mapped += LARGE / PAGE;
        self.stats.large_pages_mapped += 1;
        true
    }

    /// Split every large page overlapping `[start, end)` into 4 KiB pages
    /// (VPTEs and `pages` entries over the same frames); with `drop_covered`,
    /// a large page the range covers wholly is unmapped and its block freed
    /// instead. The hardware entries of dropped windows are invalidated
    /// (in one go); split ones stay valid for the same frames until the
    /// caller changes them.
    pub(super) fn split_large_in(&mut self, start: u64, end: u64, drop_covered: bool) {
        let lo = start & !(LARGE - 1);
        let bases: Vec<(u64, u64)> = self.large.range(lo..end).map(|(a, b)| (*a, *b)).collect();
        let mut dropped: Option<(u64, u64)> = None;
        for (base, block) in bases {
            let mut fr = self.fr();
            if drop_covered && start <= base && base + LARGE <= end {
                self.vpt.unmap_large(&self.ram, base);
                fr.free_large(block);
                drop(fr);
                self.large.remove(&base);
                let (lo, _) = dropped.unwrap_or((base, base));
                dropped = Some((lo, base + LARGE));
                continue;
            }
            match self.vpt.split_large(&self.ram, &mut fr, base) {
                Ok(_) => {
                    drop(fr);
                    self.large.remove(&base);
                    for i in 0..LARGE / PAGE {
                        self.pages.insert(base + i * PAGE, block + i * PAGE);
                    }
                    self.stats.large_splits += 1;
                }
                // No frame for the new table: leave the large page as it
                // is (the operation then treats it as one unit).
                Err(_) => continue,
            }
        }
        if let Some((lo, hi)) = dropped {
            self.inval(lo, hi);
        }
    }

    /// The VPTE a 4 KiB access to `page` goes through: the leaf, or for a
    /// large page a 4 KiB view of it (the frame of `page` in the block,
    /// the large leaf's bits without PS).
    pub fn user_pte(&self, page: u64) -> Option<Vpte> {
        if let Some((gpa, e)) = self.vpt.lookup_large(&self.ram, page) {
            let _ = gpa;
            let frame = e.frame() + (page & (LARGE - 1) & !(PAGE - 1));
            return Some(Vpte::page(frame, e.bits() & !Vpte::FRAME_MASK & !Vpte::PS));
        }
        self.vpt.lookup(&self.ram, page)
    }

    /// Map first touches with large pages where they fit (default on).
    pub fn set_large_pages(&mut self, on: bool) {
        self.large_pages = on;
    }

    /// Large pages mapped now.
    pub fn large_pages(&self) -> usize {
        self.large.len()
    }
}
