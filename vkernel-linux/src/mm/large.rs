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

/// Give back the block of a large page: a block of the process's own
/// whole, a page cache block (`file`) frame by frame (the mapping's
/// reference on each).
pub(super) fn free_block(fr: &mut FrameAlloc, block: u64, file: bool) {
    if file {
        (0..LARGE / PAGE).for_each(|i| fr.free(block + i * PAGE));
    } else {
        fr.free_large(block);
    }
}

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

    /// May `vma`'s windows get large pages (an anonymous private area or
    /// the stack, with large pages on)? The stack's top window holds the
    /// arguments from exec and keeps 4 KiB pages; a deep stack's windows
    /// below it are large. Fault-around in such an area stays
    /// inside the faulting page's window, so that the next window is still
    /// empty when it is first touched.
    pub(super) fn large_area(&self, vma: &Vma) -> bool {
        self.large_pages
            && vma.file.is_none()
            && vma.shm.is_none()
            && matches!(vma.kind, VmaKind::Anon | VmaKind::Brk | VmaKind::Stack)
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

    /// Collapse the 2 MiB window at `base` into one large page, as
    /// Linux's khugepaged does, when a page of it that is not mapped yet
    /// is touched: the window lies wholly inside the eligible area
    /// `[start, vma.end)` (a brk heap grew over it, or the area's first
    /// touch came when no block was free) and its mapped pages are this
    /// process's own (no copy-on-write sharing, no shared mapping). Their
    /// VPTEs are removed and the hardware entries dropped first, so a
    /// thread on another vCPU that touches one faults and waits for the
    /// process lock instead of writing into a page being copied; then the
    /// pages are copied into a fresh block (the rest of it is zero) and
    /// the window is mapped large. False, changing nothing, when the
    /// window does not qualify or no block is free.
    pub(super) fn collapse_window(&mut self, start: u64, vma: &Vma, base: u64) -> bool {
        let end = base + LARGE;
        if !self.large_area(vma) || start > base || end > vma.end || self.large.contains_key(&base)
        {
            return false;
        }
        let small: Vec<(u64, u64)> = self.pages.range(base..end).map(|(a, f)| (*a, *f)).collect();
        if small.is_empty() {
            return false;
        }
        let ram = self.ram.clone();
        let mut old = Vec::with_capacity(small.len());
        {
            let fr = self.fr();
            for &(va, f) in &small {
                match self.vpt.lookup(&ram, va) {
                    Some(e)
                        if fr.refcount(f) == 1 && e.bits() & (Vpte::COW | Vpte::SHARED) == 0 =>
                    {
                        old.push((va, f, e));
                    }
                    _ => return false,
                }
            }
        }
        let Ok(Some(block)) = self.fr().alloc_large(&ram) else {
            return false;
        };
        for &(va, _, _) in &old {
            self.vpt.unmap(&ram, va);
        }
        self.inval(base, end);
        let mut dirty = false;
        let mut buf = [0u8; 4096];
        for &(va, f, e) in &old {
            dirty |= e.modified();
            if ram.read(f, &mut buf).is_err() || ram.write(block + (va - base), &buf).is_err() {
                // Cannot happen (frames lie in RAM); put the window back.
                return self.collapse_undo(&old, block);
            }
        }
        let mapped = self.vpt.map_large(
            &ram,
            &mut self.fr(),
            base,
            block,
            Self::flags(vma.prot, dirty),
        );
        if mapped.is_err() {
            return self.collapse_undo(&old, block);
        }
        for &(va, _, _) in &old {
            self.pages.remove(&va);
        }
        let mut fr = self.fr();
        for &(_, f, _) in &old {
            fr.free(f);
        }
        drop(fr);
        self.large.insert(base, block);
        self.stats.pages_mapped += LARGE / PAGE - old.len() as u64;
        self.stats.large_collapses += 1;
        true
    }

    /// A collapse that could not finish: the window's 4 KiB VPTEs go back
    /// as they were and the block is freed. Returns false.
    fn collapse_undo(&mut self, old: &[(u64, u64, Vpte)], block: u64) -> bool {
        let ram = self.ram.clone();
        let mut fr = self.fr();
        for &(va, _, e) in old {
            let _ = self.vpt.set(&ram, &mut fr, va, e);
        }
        fr.free_large(block);
        false
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
            let file = self.large_file.contains(&base);
            if drop_covered && start <= base && base + LARGE <= end {
                self.vpt.unmap_large(&self.ram, base);
                free_block(&mut fr, block, file);
                drop(fr);
                self.large.remove(&base);
                self.large_file.remove(&base);
                let (lo, _) = dropped.unwrap_or((base, base));
                dropped = Some((lo, base + LARGE));
                continue;
            }
            match self.vpt.split_large(&self.ram, &mut fr, base) {
                Ok(_) => {
                    drop(fr);
                    // Each 4 KiB page holds its frame's reference now.
                    self.large.remove(&base);
                    self.large_file.remove(&base);
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

    /// The 2 MiB window of `page` if the page cache's block may map it
    /// (`mm::pagecache::PageCache::get_large`), with the window's first
    /// page index in the file: a private file area that is not writable
    /// (program text, read-only data) covers the whole window, the file
    /// offset of the window's start is 2 MiB aligned, and none of its pages
    /// is mapped yet. (Go programs and large PIE programs such as gdb have
    /// such windows; busybox, python3 and libc have none: their text and
    /// data share every window.)
    pub(super) fn file_large_window(&self, start: u64, vma: &Vma, page: u64) -> Option<(u64, u64)> {
        let fm = vma.file.as_ref()?;
        let base = page & !(LARGE - 1);
        let off = fm.off.checked_add(base.checked_sub(start)?)?;
        let ok = self.large_file_area(vma)
            && base + LARGE <= vma.end
            && off.is_multiple_of(LARGE)
            && !self.large.contains_key(&base)
            && self.pages.range(base..base + LARGE).next().is_none();
        ok.then_some((base, off / PAGE))
    }

    /// May `vma`'s aligned windows be page cache blocks (a private file
    /// area that is not writable, with large pages on)? Fault-around
    /// there stays inside the faulting page's window, as in
    /// [`Mm::large_area`].
    pub(super) fn large_file_area(&self, vma: &Vma) -> bool {
        self.large_pages
            && vma.shm.is_none()
            && vma.prot != 0
            && vma.prot & PROT_WRITE == 0
            && vma.file.as_ref().is_some_and(|f| !f.shared)
    }

    /// Map the window at `base` of the file area `vma` with the page
    /// cache's block for its pages from `first` on (read from the file
    /// now with `read`, else only a block already cached). False, changing
    /// nothing, when there is none (the caller maps 4 KiB pages).
    pub(super) fn map_file_large(&mut self, base: u64, vma: &Vma, first: u64, read: bool) -> bool {
        let Some(fm) = &vma.file else { return false };
        let got = self
            .cache
            .get_large(&self.frames, &self.ram, &*fm.src, first, read);
        let Ok(Some(block)) = got else { return false };
        let mut fr = self.fr();
        let flags = Self::flags(vma.prot, false);
        if self
            .vpt
            .map_large(&self.ram, &mut fr, base, block, flags)
            .is_err()
        {
            free_block(&mut fr, block, true);
            return false;
        }
        drop(fr);
        self.large.insert(base, block);
        self.large_file.insert(base);
        self.stats.pages_mapped += LARGE / PAGE;
        self.stats.large_pages_mapped += 1;
        true
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
