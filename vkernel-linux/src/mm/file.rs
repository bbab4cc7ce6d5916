//! File mappings: areas whose pages come from the shared page cache
//! ([`PageCache`]) instead of zeroed frames. A page is looked up (or read
//! from the file) on first touch and mapped read-only copy-on-write: the
//! cache keeps its own reference, so a write to a private mapping always
//! copies, and a second vproc mapping the same file shares its frames.
//! A page wholly past the end of the file is SIGBUS; the bytes of the last
//! page past the end read as zero.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::pagecache::CacheError;
use super::*;
use crate::core::vptable::LARGE;

/// Pages of a program's (or library's) writable file-backed segments that
/// exec, or the loader's `mmap`, copies at once instead of on their first
/// write.
pub const PREFILL_DATA_PAGES: usize = 32;

impl Mm {
    /// Give page `va` of the area starting at `start` its frame: a zeroed
    /// frame for anonymous memory, the cached file page for a file area
    /// (a private copy at once when `dirty` and the mapping is private).
    pub(super) fn populate(
        &mut self,
        start: u64,
        vma: &Vma,
        va: u64,
        dirty: bool,
    ) -> Result<u64, MmError> {
        if let Some(sm) = &vma.shm {
            let idx = sm.off.saturating_add(va - start) / PAGE;
            let f = match sm.obj.frame(idx, va) {
                Err(MmError::OutOfMemory) => {
                    self.cache.shrink(&self.frames);
                    sm.obj.frame(idx, va)?
                }
                r => r?,
            };
            let e = if vma.prot == 0 {
                Vpte(0)
            } else {
                Self::shared_entry(f, vma.prot, dirty)
            };
            if let Err(e) = self.vpt.set(&self.ram, &mut self.fr(), va, e) {
                self.fr().free(f);
                return Err(e.into());
            }
            self.pages.insert(va, f);
            self.stats.pages_mapped += 1;
            return Ok(f);
        }
        let Some(fm) = &vma.file else {
            if let Some((base, block)) = self.large_at(va) {
                return Ok(block + (va - base));
            }
            // The kernel's own first touch (read() into a fresh buffer)
            // maps a large page where a vproc's would.
            if let Some(base) = self.large_window(start, vma, va) {
                if self.map_large_at(base, vma.prot, dirty) {
                    if let Some((_, block)) = self.large_at(va) {
                        return Ok(block + (va - base));
                    }
                }
            }
            return self.map_new(va, vma.prot, dirty);
        };
        if let Some((base, block)) = self.large_at(va) {
            // A page cache block (never writable: see `file_large_window`).
            return Ok(block + (va - base));
        }
        let off = fm.off.saturating_add(va - start);
        let f = self
            .cache
            .get(&self.frames, &self.ram, &*fm.src, off / PAGE)
            .map_err(|e| match e {
                CacheError::OutOfMemory => MmError::OutOfMemory,
                CacheError::PastEof { .. } | CacheError::Read { .. } => MmError::Bus(va),
                CacheError::Ram(_) => MmError::Fault(va),
            })?;
        if let Err(e) = self.set_vpte(va, f, vma.prot) {
            self.fr().free(f);
            return Err(e);
        }
        self.pages.insert(va, f);
        self.stats.pages_mapped += 1;
        if dirty && !fm.shared {
            self.break_cow(va)?;
            return Ok(self.pages.get(&va).copied().unwrap_or(f));
        }
        Ok(f)
    }

    /// Make page `va` (inside an area) present and private to this vproc,
    /// whatever the area's permissions (the loader zeroes the tail of a
    /// segment's last file page this way). Returns its frame.
    pub(super) fn privatize(&mut self, va: u64) -> Result<u64, MmError> {
        let before = self.pages.get(&va).copied();
        let f = self.privatize_quiet(va)?;
        // A page that kept its frame (its own already) keeps its entry.
        if before != Some(f) {
            self.inval(va, va + PAGE);
        }
        Ok(f)
    }

    /// [`Mm::privatize`] without invalidating the page's old mapping: the
    /// caller invalidates the pages it privatized in one go.
    pub(super) fn privatize_quiet(&mut self, va: u64) -> Result<u64, MmError> {
        let (start, vma) = self.find(va).ok_or(MmError::Fault(va))?;
        let f = match self.pages.get(&va) {
            Some(&f) => f,
            None => self.populate(start, &vma, va, false)?,
        };
        let mut fr = self.fr();
        if fr.refcount(f) == 1 {
            return Ok(f);
        }
        let nf = fr.alloc(&self.ram)?;
        let mut buf = vec![0u8; PAGE as usize];
        if self
            .ram
            .read(f, &mut buf)
            .and_then(|_| self.ram.write(nf, &buf))
            .is_err()
        {
            fr.free(nf);
            return Err(MmError::Fault(va));
        }
        fr.free(f);
        drop(fr);
        self.pages.insert(va, nf);
        self.set_vpte(va, nf, vma.prot)?;
        self.stats.cow_breaks += 1;
        Ok(nf)
    }

    /// A private file area a loader just mapped (a library's code, its
    /// read-only or writable data): as execve does for the program's image
    /// (`load::load_image`), give the first [`PREFILL_DATA_PAGES`] pages of
    /// a writable one their own copies (the loader's relocations write
    /// them at once), map every page of a read-only one that the page
    /// cache holds, and install the hardware entries of both now, instead
    /// of an exit for each first touch (a dynamic `/bin/true` took 14 of
    /// them in libc's code and 6 copy-on-write faults in its data). Pages
    /// not cached stay for the first touch: nothing is read here for a
    /// read-only area. Best effort: a failure leaves the pages to their
    /// faults. Only adds mappings: no command for the guest.
    pub fn fill_segment(&mut self, start: u64, len: u64, writable: bool) {
        let end = start.saturating_add(len);
        let mapped = if writable {
            self.prefill_private(start, end, PREFILL_DATA_PAGES)
        } else {
            self.map_cached(start, end)
        };
        if mapped > 0 {
            let _ = self.vms.populate(start, end);
        }
    }

    /// Give the first `max` pages of the private writable file areas in
    /// `[start, end)` their own copy now, writable and modified (a
    /// program's data segment, which it writes at once): a copy costs a
    /// microsecond, the copy-on-write fault it replaces a trap. Returns how
    /// many were copied.
    pub fn prefill_private(&mut self, start: u64, end: u64, max: usize) -> usize {
        let pages = self.writable_pages(start, end, |v| v.file.as_ref().is_some_and(|f| !f.shared));
        let mut n = 0;
        for (va, prot) in pages.into_iter().take(max) {
            let Ok(f) = self.privatize(va) else { break };
            let e = self.entry(f, prot, true);
            if self.vpt.set(&self.ram, &mut self.fr(), va, e).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Map now every page of the file areas in `[start, end)` whose file
    /// page is already in the page cache (read-only, shared, as a touch
    /// would map it): an exec of a program run before takes no fault for
    /// its image. Pages not cached stay for the first touch (nothing is
    /// read here). Returns how many were mapped.
    pub fn map_cached(&mut self, start: u64, end: u64) -> usize {
        let areas: Vec<(u64, Vma)> = self
            .vmas
            .range(..end)
            .filter(|(s, v)| v.end > start && v.file.is_some() && v.shm.is_none() && **s < end)
            .map(|(s, v)| (*s, v.clone()))
            .collect();
        let mut n = 0;
        for (vstart, vma) in areas {
            let Some(fm) = &vma.file else { continue };
            let mut va = vstart.max(start);
            while va < vma.end.min(end) {
                if let Some((base, _)) = self.large_at(va) {
                    va = base + LARGE;
                    continue;
                }
                // A window the cache holds as one block: one large page.
                if let Some((base, first)) = self.file_large_window(vstart, &vma, va) {
                    if base == va && self.map_file_large(base, &vma, first, false) {
                        n += (LARGE / PAGE) as usize;
                        va += LARGE;
                        continue;
                    }
                }
                if !self.pages.contains_key(&va) {
                    let off = fm.off.saturating_add(va - vstart);
                    if let Some(f) = self.cache.cached(&self.frames, &*fm.src, off / PAGE) {
                        if self.set_vpte(va, f, vma.prot).is_ok() {
                            self.pages.insert(va, f);
                            self.stats.pages_mapped += 1;
                            n += 1;
                        } else {
                            self.fr().free(f);
                        }
                    }
                }
                va += PAGE;
            }
        }
        n
    }

    /// Add a file area `[start, end)` (page aligned, free) whose first
    /// byte is at `file.off` in the file. Nothing is read until a touch.
    pub fn add_file_vma(
        &mut self,
        start: u64,
        end: u64,
        prot: u32,
        kind: VmaKind,
        mut file: FileMap,
    ) -> Result<(), MmError> {
        if file.shared && file.src.backing().is_none() {
            // No node to share pages through (not a file of the tree):
            // read-only, from the page cache.
            file.writable = false;
        }
        if file.shared && !file.writable && prot & PROT_WRITE != 0 {
            return Err(MmError::SharedWrite);
        }
        if !file.off.is_multiple_of(PAGE) {
            return Err(MmError::Invalid);
        }
        // A shared mapping of a file of the tree takes the node's object:
        // every vproc mapping the file sees the same pages.
        let shm = match (file.shared, file.src.backing()) {
            (true, Some(b)) => Some(ShmMap {
                obj: self.cache.shm_files.object(&self.ram, &self.frames, b),
                off: file.off,
            }),
            (false, Some(b)) => {
                // A private mapping starts from what the shared ones wrote
                // (the write-back gives the file a new identity, so the
                // page cache reads it again).
                if let Some(o) = self.cache.shm_files.existing(b) {
                    let _ = o.write_back(0, u64::MAX);
                }
                None
            }
            _ => None,
        };
        self.add_vma(start, end, prot, kind)?;
        let v = self.vmas.get_mut(&start).expect("just added");
        v.file = Some(file);
        v.shm = shm;
        self.note_shared_prot(start, end, prot);
        Ok(())
    }

    /// Map an ELF segment (`vaddr`, `memsz`, file bytes `filesz` at
    /// `offset`) from `src` as Linux does: the pages holding file bytes
    /// are a private file mapping, the bytes of the last one past the file
    /// bytes are zeroed (a private copy of that page), the rest is
    /// demand-zero. `Err(Invalid)` when the segment cannot be a file
    /// mapping (its address and offset disagree modulo the page size, or
    /// its pages overlap an area already there): load it by copying then.
    #[allow(clippy::too_many_arguments)]
    pub fn map_segment(
        &mut self,
        vaddr: u64,
        memsz: u64,
        offset: u64,
        filesz: u64,
        prot: u32,
        src: &Arc<dyn FileSource>,
    ) -> Result<(), MmError> {
        let start = vaddr & !(PAGE - 1);
        let vend = vaddr.checked_add(memsz).ok_or(MmError::Invalid)?;
        let end = align_up(vend);
        let fend = vaddr.checked_add(filesz).ok_or(MmError::Invalid)?;
        let file_end = align_up(fend).min(end);
        let lead = vaddr - start;
        if vaddr % PAGE != offset % PAGE || offset < lead || !self.range_free(start, end) {
            return Err(MmError::Invalid);
        }
        if filesz > 0 {
            let file = FileMap {
                src: src.clone(),
                off: offset - lead,
                shared: false,
                writable: false,
            };
            self.add_file_vma(start, file_end, prot, VmaKind::Image, file)?;
        }
        let anon_start = if filesz > 0 { file_end } else { start };
        if anon_start < end {
            self.add_vma(anon_start, end, prot, VmaKind::Image)?;
        }
        if filesz > 0 && memsz > filesz && !fend.is_multiple_of(PAGE) {
            let page = fend & !(PAGE - 1);
            let f = self.privatize(page)?;
            self.ram
                .zero(f + (fend - page), PAGE - (fend - page))
                .map_err(|_| MmError::Fault(page))?;
        }
        Ok(())
    }
}
