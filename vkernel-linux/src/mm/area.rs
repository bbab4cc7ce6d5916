//! The areas (VMAs) of an address space: finding them and free ranges,
//! adding areas (and loading a program's segments into them), and
//! unmapping ranges with their frames.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::*;

/// Split the area that straddles `at` in two there.
pub(super) fn split_at(vmas: &mut BTreeMap<u64, Vma>, at: u64) {
    if let Some((&s, v)) = vmas.range(..at).next_back() {
        if v.end > at {
            let mut upper = v.clone();
            if let Some(f) = upper.file.as_mut() {
                // Saturates for offsets no file reaches (SIGBUS there).
                f.off = f.off.saturating_add(at - s);
            }
            if let Some(m) = upper.shm.as_mut() {
                m.off = m.off.saturating_add(at - s);
            }
            vmas.get_mut(&s).expect("present").end = at;
            vmas.insert(at, upper);
        }
    }
}

impl Mm {
    /// The area containing `va`.
    pub fn find(&self, va: u64) -> Option<(u64, Vma)> {
        self.vmas
            .range(..=va)
            .next_back()
            .filter(|(_, v)| v.end > va)
            .map(|(s, v)| (*s, v.clone()))
    }

    /// The file and file offset of `va` where it lies in a private
    /// mapping of a file; None elsewhere.
    pub fn file_pos(&self, va: u64) -> Option<((u64, u64), u64)> {
        let (start, v) = self.find(va)?;
        let f = v.file.as_ref().filter(|f| !f.shared)?;
        Some((f.src.file_id(), f.off.saturating_add(va - start)))
    }

    /// The private, executable, read-only mappings of files that overlap
    /// `[start, end)`, where syscall sites may be rewritten: (area start,
    /// area end, file, file offset of the area's start).
    pub fn code_files_in(&self, start: u64, end: u64) -> Vec<(u64, u64, (u64, u64), u64)> {
        self.vmas
            .range(..end)
            .filter(|(_, v)| v.end > start && v.prot & PROT_EXEC != 0 && v.prot & PROT_WRITE == 0)
            .filter_map(|(&s, v)| {
                let f = v.file.as_ref().filter(|f| !f.shared)?;
                Some((s, v.end, f.src.file_id(), f.off))
            })
            .collect()
    }

    pub(super) fn range_free(&self, start: u64, end: u64) -> bool {
        if start < USER_START || end > USER_END || start >= end {
            return false;
        }
        self.vmas
            .range(..end)
            .next_back()
            .is_none_or(|(_, v)| v.end <= start)
    }

    /// Note on the shared objects of the areas in `[start, end)` that they
    /// are mapped writable now (`prot`).
    pub(super) fn note_shared_prot(&self, start: u64, end: u64, prot: u32) {
        if prot & PROT_WRITE == 0 {
            return;
        }
        for (_, v) in self
            .vmas
            .range(..end)
            .filter(|(s, v)| v.end > start && **s < end)
        {
            if let Some(sm) = &v.shm {
                sm.obj.note_writable();
            }
        }
    }

    /// Add an area over a free range. The page below the trampoline
    /// (`SLOT_VA`) is the vkernel's where exitless syscalls are on (the
    /// vmspace's request page): no area may cover it.
    pub fn add_vma(
        &mut self,
        start: u64,
        end: u64,
        prot: u32,
        kind: VmaKind,
    ) -> Result<(), MmError> {
        let slot = crate::guest::layout::SLOT_VA;
        if !self.range_free(start, end) || (start < slot + PAGE && end > slot) {
            return Err(MmError::NoSpace);
        }
        self.vmas.insert(
            start,
            Vma {
                end,
                prot,
                kind,
                file: None,
                shm: None,
            },
        );
        Ok(())
    }

    /// Load bytes into a new area at `[start, end)` (page aligned): `data`
    /// goes at `start + data_off`. See [`Mm::load_area_from`].
    pub fn load_area(
        &mut self,
        start: u64,
        end: u64,
        prot: u32,
        kind: VmaKind,
        data_off: u64,
        data: &[u8],
    ) -> Result<(), MmError> {
        self.load_area_from(
            start,
            end,
            prot,
            kind,
            data_off,
            data.len() as u64,
            &mut |off, buf| {
                let src = data
                    .get(off as usize..off as usize + buf.len())
                    .ok_or(MmError::Invalid)?;
                buf.copy_from_slice(src);
                Ok(())
            },
        )
    }

    /// Load `data_len` bytes, fetched page by page with `read(offset in
    /// the data, buffer)`, into a new area at `[start, end)` (page
    /// aligned), at `start + data_off`. The pages holding data get a frame
    /// now (bytes of them outside the data stay zero, so the partial page
    /// at the end of a segment's file bytes is zero past them); the pages
    /// past the data (a segment's BSS) are demand-zero, like anonymous
    /// memory. Pages already present (a segment sharing a page with the
    /// previous one) are reused.
    #[allow(clippy::too_many_arguments)]
    pub fn load_area_from(
        &mut self,
        start: u64,
        end: u64,
        prot: u32,
        kind: VmaKind,
        data_off: u64,
        data_len: u64,
        read: &mut ReadData<'_>,
    ) -> Result<(), MmError> {
        let data_start = start.checked_add(data_off).ok_or(MmError::Invalid)?;
        let data_end = data_start.checked_add(data_len).ok_or(MmError::Invalid)?;
        if !start.is_multiple_of(PAGE) || !end.is_multiple_of(PAGE) || start >= end {
            return Err(MmError::Invalid);
        }
        if data_end > end {
            return Err(MmError::Invalid);
        }
        // Clip against an area that already covers the first page.
        let mut s = start;
        while s < end && self.find(s).is_some() {
            s += PAGE;
        }
        if s < end {
            self.add_vma(s, end, prot, kind)?;
        }
        let eager_end = if data_len == 0 {
            start
        } else {
            align_up(data_end)
        };
        let mut buf = vec![0u8; PAGE as usize];
        let mut va = start;
        while va < eager_end {
            let f = if self.pages.contains_key(&va) || va < s {
                // A page of an earlier segment's area: its own copy (a file
                // page is never written in the page cache), with both
                // segments' bytes.
                let f = self.privatize(va)?;
                let p = self.find(va).map(|(_, v)| v.prot).unwrap_or(0) | prot;
                self.set_vpte(va, f, p)?;
                f
            } else {
                // Writable data the loader wrote is modified: the first
                // write must not fault to set M.
                self.map_new(va, prot, prot & PROT_WRITE != 0)?
            };
            // Copy the part of the data that falls into this page.
            let lo = va.max(data_start);
            let hi = (va + PAGE).min(data_end);
            if lo < hi {
                let chunk = &mut buf[..(hi - lo) as usize];
                read(lo - data_start, chunk)?;
                self.ram
                    .write(f + (lo - va), chunk)
                    .map_err(|_| MmError::Fault(va))?;
            }
            va += PAGE;
        }
        // Pages of the demand-zero part that an earlier area already gave a
        // frame (a shared first page) take this area's permissions too.
        let shared: Vec<(u64, u64)> = self
            .pages
            .range(eager_end..end)
            .map(|(a, f)| (*a, *f))
            .collect();
        for (va, f) in shared {
            let p = self.find(va).map(|(_, v)| v.prot).unwrap_or(0) | prot;
            self.set_vpte(va, f, p)?;
        }
        Ok(())
    }

    /// Find a free range of `len` bytes, top-down below MMAP_TOP.
    pub fn find_free(&self, len: u64) -> Result<u64, MmError> {
        let mut top = MMAP_TOP;
        for (&s, v) in self.vmas.range(..MMAP_TOP).rev() {
            if v.end <= top && top - v.end >= len {
                return Ok(top - len);
            }
            top = top.min(s);
        }
        if top >= USER_START + len {
            Ok(top - len)
        } else {
            Err(MmError::NoSpace)
        }
    }

    /// Like [`Mm::find_free`], for a file mapping of `len` bytes at file
    /// offset `off`: where it is 2 MiB or longer, the highest free place
    /// whose address agrees with `off` modulo 2 MiB, so that its whole 2
    /// MiB windows line up with 2 MiB blocks of the file and may be mapped
    /// with the page cache's blocks (a dynamic loader maps a large
    /// library's whole span this way first). Anywhere free otherwise.
    pub fn find_free_for_file(&self, len: u64, off: u64) -> Result<u64, MmError> {
        const LARGE: u64 = crate::core::vptable::LARGE;
        if len < LARGE {
            return self.find_free(len);
        }
        let fit = |lo: u64, hi: u64| highest_congruent(lo.max(USER_START), hi, len, off % LARGE);
        let mut top = MMAP_TOP;
        for (&s, v) in self.vmas.range(..MMAP_TOP).rev() {
            if v.end <= top {
                if let Some(at) = fit(v.end, top) {
                    return Ok(at);
                }
            }
            top = top.min(s);
        }
        fit(USER_START, top).map_or_else(|| self.find_free(len), Ok)
    }

    /// Unmap `[start, end)`: areas and frames go away.
    pub fn unmap(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        self.patch_drop(start, end, false);
        // Shared file pages reach the file (as on Linux by munmap: the
        // page cache's dirty pages are the file's).
        let _ = self.write_back(start, end);
        split_at(&mut self.vmas, start);
        split_at(&mut self.vmas, end);
        let keys: Vec<u64> = self.vmas.range(start..end).map(|(k, _)| *k).collect();
        for k in keys {
            self.vmas.remove(&k);
        }
        self.split_large_in(start, end, true);
        let pages: Vec<(u64, u64)> = self
            .pages
            .range(start..end)
            .map(|(a, f)| (*a, *f))
            .collect();
        if pages.is_empty() {
            return;
        }
        let mut fr = self.fr();
        for (va, f) in &pages {
            self.vpt.unmap(&self.ram, *va);
            fr.free(*f);
        }
        drop(fr);
        for (va, _) in &pages {
            self.pages.remove(va);
        }
        self.inval(pages[0].0, pages[pages.len() - 1].0 + PAGE);
    }

    /// No area overlaps `[start, end)`.
    pub(super) fn range_empty(&self, start: u64, end: u64) -> bool {
        self.vmas
            .range(..end)
            .next_back()
            .is_none_or(|(_, v)| v.end <= start)
    }

    /// Every byte of `[start, end)` is inside some area.
    /// mincore(2): one byte per page of `[start, start + len)`, 1 where
    /// the page is resident: given a frame in this address space, or held
    /// by the shared object or the page cache behind its area (a file's
    /// page another process read is resident here too, as on Linux).
    /// `start` must be page aligned (Invalid); a hole in the range is
    /// NoSpace (ENOMEM).
    pub fn mincore(&self, start: u64, len: u64) -> Result<Vec<u8>, MmError> {
        if !start.is_multiple_of(PAGE) {
            return Err(MmError::Invalid);
        }
        let end = start
            .checked_add(len.checked_add(PAGE - 1).ok_or(MmError::NoSpace)? & !(PAGE - 1))
            .filter(|&e| e <= USER_END)
            .ok_or(MmError::NoSpace)?;
        if !self.range_mapped(start, end) {
            return Err(MmError::NoSpace);
        }
        let mut out = Vec::with_capacity(((end - start) / PAGE) as usize);
        let mut va = start;
        while va < end {
            let (s, v) = self.find(va).ok_or(MmError::NoSpace)?;
            let resident = self.pages.contains_key(&va)
                || self
                    .large
                    .contains_key(&(va & !(crate::core::vptable::LARGE - 1)))
                || match (&v.shm, &v.file) {
                    (Some(sm), _) => sm.obj.has_page(sm.off.saturating_add(va - s) / PAGE),
                    (None, Some(f)) => self
                        .cache
                        .contains(f.src.as_ref(), f.off.saturating_add(va - s) / PAGE),
                    (None, None) => false,
                };
            out.push(u8::from(resident));
            va += PAGE;
        }
        Ok(out)
    }

    pub(super) fn range_mapped(&self, start: u64, end: u64) -> bool {
        let mut cur = start;
        while cur < end {
            match self.find(cur) {
                Some((_, v)) => cur = v.end,
                None => return false,
            }
        }
        true
    }
}

impl Mm {
    /// The private pages this address space has modified (the M bit of
    /// their VPTEs), with their contents: what a vfork child hands its
    /// parent (see `kernel::vfork`). Shared mappings (their pages are
    /// the parent's already), large pages and the syscall stubs are left
    /// out.
    pub fn dirty_private_pages(&self) -> Vec<(u64, Vec<u8>)> {
        let mut dirty = Vec::new();
        self.vpt
            .for_each_leaf(&self.ram, USER_START, USER_END, &mut |va, _, e| {
                if e.valid() && e.modified() && !e.large() && e.bits() & Vpte::SHARED == 0 {
                    dirty.push((va, e.frame()));
                }
            });
        dirty
            .into_iter()
            .filter(|&(va, _)| {
                self.vmas.range(..=va).next_back().is_some_and(|(_, v)| {
                    v.end > va && v.shm.is_none() && v.kind != VmaKind::SyscallStubs
                })
            })
            .filter_map(|(va, f)| {
                let mut buf = vec![0u8; usize::try_from(PAGE).expect("a page fits in memory")];
                self.ram.read(f, &mut buf).ok()?;
                Some((va, buf))
            })
            .collect()
    }
}

/// The highest `at` with `[at, at + len)` inside `[lo, hi)` and `at`
/// equal to `want` modulo 2 MiB (`want` below 2 MiB).
fn highest_congruent(lo: u64, hi: u64, len: u64, want: u64) -> Option<u64> {
    const LARGE: u64 = crate::core::vptable::LARGE;
    let top = hi.checked_sub(len)?;
    let at = (top.checked_sub(want)? & !(LARGE - 1)) + want;
    (at >= lo).then_some(at)
}

#[cfg(test)]
mod congruent_tests {
    use super::highest_congruent;

    #[test]
    fn file_mappings_line_up_with_2_mib_blocks_of_the_file() {
        const M2: u64 = 2 << 20;
        // A gap ending off any boundary: the highest aligned place below.
        assert_eq!(
            highest_congruent(0x1000_0000, 0x2000_3000, 5 * M2, 0),
            Some(0x2000_0000 - 6 * M2 + M2)
        );
        // A wanted remainder (the mapping starts at file offset 0x1000).
        let at = highest_congruent(0x1000_0000, 0x2000_3000, 5 * M2, 0x1000).unwrap();
        assert_eq!(at % M2, 0x1000);
        assert!(at + 5 * M2 <= 0x2000_3000);
        // A gap too small once aligned.
        assert_eq!(
            highest_congruent(0x1000_0000 + 0x1000, 0x1000_0000 + 3 * M2, 3 * M2, 0),
            None
        );
    }
}
