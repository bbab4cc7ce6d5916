//! The memory calls behind mmap, munmap, mprotect, mremap, madvise and
//! brk, with Linux's argument checks; the syscall layer
//! ([`crate::syscalls`]) decodes the registers and calls these.

use super::*;

impl Mm {
    /// mmap(2) of anonymous memory, or of a file (`file`: its pages come
    /// from the shared page cache, see the `file` module), with Linux's
    /// checks: `len` not zero, a fixed `addr` page aligned, the range
    /// inside `[0, USER_END)`. `noreplace` (MAP_FIXED_NOREPLACE) implies
    /// `fixed`. A hint that does not fit is ignored. A shared file mapping
    /// may be writable only if the file was opened for writing
    /// ([`MmError::SharedWrite`]). Returns the address.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: u32,
        fixed: bool,
        noreplace: bool,
        file: Option<FileMap>,
    ) -> Result<u64, MmError> {
        self.map_range(addr, len, prot, fixed, noreplace, file, false)
    }

    /// mmap(2) of MAP_SHARED|MAP_ANONYMOUS memory: a new shared memory
    /// object, which fork shares with the child (see `shm`). The checks
    /// of [`Mm::mmap`].
    pub fn mmap_shared_anon(
        &mut self,
        addr: u64,
        len: u64,
        prot: u32,
        fixed: bool,
        noreplace: bool,
    ) -> Result<u64, MmError> {
        self.map_range(addr, len, prot, fixed, noreplace, None, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn map_range(
        &mut self,
        addr: u64,
        len: u64,
        prot: u32,
        fixed: bool,
        noreplace: bool,
        file: Option<FileMap>,
        shared_anon: bool,
    ) -> Result<u64, MmError> {
        let fixed = fixed || noreplace;
        if len == 0 {
            return Err(MmError::Invalid);
        }
        let len = align_up(len);
        if len == 0 || len > USER_END {
            return Err(MmError::NoSpace);
        }
        // Only R/W/X mean something; Linux ignores the other bits of mmap.
        let prot = prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
        if file.as_ref().is_some_and(|f| f.shared && !f.writable) && prot & PROT_WRITE != 0 {
            return Err(MmError::SharedWrite);
        }
        let start = if fixed {
            if addr > USER_END - len {
                return Err(MmError::NoSpace);
            }
            if !addr.is_multiple_of(PAGE) {
                return Err(MmError::Invalid);
            }
            if addr < USER_START {
                // mmap_min_addr: the vkernel keeps the low pages unmapped.
                return Err(MmError::Perm);
            }
            if noreplace && !self.range_empty(addr, addr + len) {
                return Err(MmError::Exists);
            }
            self.unmap(addr, addr + len);
            addr
        } else {
            let hint = addr & !(PAGE - 1);
            if hint != 0 && self.range_free(hint, hint.saturating_add(len)) {
                hint
            } else if let Some(f) = file.as_ref().filter(|f| !f.shared) {
                self.find_free_for_file(len, f.off)?
            } else {
                self.find_free(len)?
            }
        };
        match file {
            Some(f) => self.add_file_vma(start, start + len, prot, VmaKind::Anon, f)?,
            None => {
                self.add_vma(start, start + len, prot, VmaKind::Anon)?;
                if shared_anon {
                    let obj = ShmObject::anon(self.ram.clone(), self.frames.clone(), len);
                    self.vmas.get_mut(&start).expect("just added").shm =
                        Some(ShmMap { obj, off: 0 });
                }
            }
        }
        Ok(start)
    }

    /// munmap(2) with Linux's checks: `start` page aligned, `len` not zero
    /// and the range inside `[0, USER_END)` (EINVAL otherwise). Unmapping
    /// a range with nothing in it succeeds.
    pub fn munmap(&mut self, start: u64, len: u64) -> Result<(), MmError> {
        if !start.is_multiple_of(PAGE) || start > USER_END || len > USER_END - start {
            return Err(MmError::Invalid);
        }
        let end = start + align_up(len);
        if end == start {
            return Err(MmError::Invalid);
        }
        self.unmap(start, end);
        Ok(())
    }

    /// mprotect(2) with Linux's checks: `start` page aligned, only
    /// PROT_READ/WRITE/EXEC/SEM (plus one of GROWSDOWN/GROWSUP), the whole
    /// range mapped (ENOMEM otherwise).
    pub fn protect(&mut self, start: u64, len: u64, prot: u32) -> Result<(), MmError> {
        let grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
        let prot = prot & !grows;
        if grows == PROT_GROWSDOWN | PROT_GROWSUP || !start.is_multiple_of(PAGE) {
            return Err(MmError::Invalid);
        }
        if len == 0 {
            return Ok(());
        }
        let len = align_up(len);
        let end = start.wrapping_add(len);
        if end <= start {
            return Err(MmError::NoSpace);
        }
        if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM) != 0 {
            return Err(MmError::Invalid);
        }
        let prot = prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
        let mut start = start;
        match self.find(start) {
            None => return Err(MmError::NoSpace),
            Some((s, v)) => {
                if grows == PROT_GROWSUP || (grows == PROT_GROWSDOWN && v.kind != VmaKind::Stack) {
                    return Err(MmError::Invalid);
                }
                if grows == PROT_GROWSDOWN {
                    start = s;
                }
            }
        }
        // The whole range must be mapped.
        if !self.range_mapped(start, end) {
            return Err(MmError::NoSpace);
        }
        if prot & PROT_WRITE != 0
            && self.vmas.range(..end).any(|(_, v)| {
                v.end > start && v.file.as_ref().is_some_and(|f| f.shared && !f.writable)
            })
        {
            return Err(MmError::SharedWrite);
        }
        self.patch_protect(start, end, prot);
        let loss = self
            .vmas
            .range(..end)
            .filter(|(_, v)| v.end > start)
            .map(|(_, v)| ProtLoss::of(v.prot, prot))
            .max()
            .unwrap_or(ProtLoss::Nothing);
        split_at(&mut self.vmas, start);
        split_at(&mut self.vmas, end);
        for (_, v) in self.vmas.range_mut(start..end) {
            v.prot = prot;
        }
        self.note_shared_prot(start, end, prot);
        self.split_large_in(start, end, false);
        let pages: Vec<(u64, u64)> = self
            .pages
            .range(start..end)
            .map(|(a, f)| (*a, *f))
            .collect();
        for (va, f) in &pages {
            self.set_vpte(*va, *f, prot)?;
        }
        if let (Some(a), Some(b)) = (pages.first(), pages.last()) {
            match loss {
                ProtLoss::ReadOrExec => self.inval(a.0, b.0 + PAGE),
                ProtLoss::Write => self.write_protect(a.0, b.0 + PAGE),
                // The next fault installs what the pages gained.
                ProtLoss::Nothing => {}
            }
        }
        Ok(())
    }

    /// mremap(2) of an anonymous area, with Linux's checks (`flags` are
    /// MREMAP_*, `new_addr` is used with MREMAP_FIXED). Returns the new
    /// address.
    pub fn mremap(
        &mut self,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
    ) -> Result<u64, MmError> {
        if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) != 0 {
            return Err(MmError::Invalid);
        }
        let may_move = flags & MREMAP_MAYMOVE != 0;
        let dontunmap = flags & MREMAP_DONTUNMAP != 0;
        if flags & MREMAP_FIXED != 0 && !may_move {
            return Err(MmError::Invalid);
        }
        if dontunmap && (!may_move || old_len != new_len) {
            return Err(MmError::Invalid);
        }
        if !old.is_multiple_of(PAGE) {
            return Err(MmError::Invalid);
        }
        let old_len = align_up(old_len);
        let new_len = align_up(new_len);
        if new_len == 0 {
            return Err(MmError::Invalid);
        }
        let fixed = (flags & MREMAP_FIXED != 0).then_some(new_addr);
        if let Some(d) = fixed {
            if !d.is_multiple_of(PAGE) || new_len > USER_END || d > USER_END - new_len {
                return Err(MmError::Invalid);
            }
            if old.checked_add(old_len).is_none_or(|e| e > d) && d + new_len > old {
                return Err(MmError::Invalid);
            }
        }
        let Some((vs, vma)) = self.find(old) else {
            return Err(MmError::Fault(old));
        };
        if old_len == 0 {
            // Duplicating a mapping needs a shared one.
            let Some(sm) = vma.shm.clone().filter(|_| may_move && !dontunmap) else {
                return Err(MmError::Invalid);
            };
            let dest = match fixed {
                Some(d) => {
                    self.unmap(d, d + new_len);
                    d
                }
                None => self.find_free(new_len)?,
            };
            self.add_vma(dest, dest + new_len, vma.prot, vma.kind)?;
            let v = self.vmas.get_mut(&dest).expect("just added");
            v.file = vma.file.clone().map(|mut f| {
                f.off = f.off.saturating_add(old - vs);
                f
            });
            v.shm = Some(ShmMap {
                obj: sm.obj,
                off: sm.off.saturating_add(old - vs),
            });
            self.note_shared_prot(dest, dest + new_len, vma.prot);
            return Ok(dest);
        }
        let old_end = old + old_len;
        if old_end > vma.end || vs > old {
            return Err(MmError::Fault(old));
        }
        self.patch_drop(old, old_end, true);
        if fixed.is_none() && !dontunmap {
            if new_len <= old_len {
                self.unmap(old + new_len, old_end);
                return Ok(old);
            }
            if old_end == vma.end && self.range_free(old_end, old + new_len) {
                self.vmas.get_mut(&vs).expect("present").end = old + new_len;
                return Ok(old);
            }
            if !may_move {
                return Err(MmError::NoSpace);
            }
        }
        let dest = match fixed {
            Some(d) => {
                self.unmap(d, d + new_len);
                d
            }
            None => self.find_free(new_len)?,
        };
        match vma.file_off(vs, old) {
            // A file area keeps its file (pages past the old end come
            // from the file too).
            Some(off) => {
                let mut file = vma.file.clone().expect("file area");
                file.off = off;
                self.add_file_vma(dest, dest + new_len, vma.prot, vma.kind, file)?;
            }
            None => {
                self.add_vma(dest, dest + new_len, vma.prot, VmaKind::Anon)?;
                // Shared memory moves with its object.
                self.vmas.get_mut(&dest).expect("just added").shm =
                    vma.shm.as_ref().map(|sm| ShmMap {
                        obj: sm.obj.clone(),
                        off: sm.off.saturating_add(old - vs),
                    });
            }
        }
        self.split_large_in(old, old + old_len.min(new_len), false);
        let moved: Vec<(u64, u64)> = self
            .pages
            .range(old..old + old_len.min(new_len))
            .map(|(a, f)| (*a, *f))
            .collect();
        for (va, f) in &moved {
            self.vpt.unmap(&self.ram, *va);
            self.pages.remove(va);
            let nva = dest + (va - old);
            self.set_vpte(nva, *f, vma.prot)?;
            self.pages.insert(nva, *f);
        }
        if let (Some(a), Some(b)) = (moved.first(), moved.last()) {
            self.inval(a.0, b.0 + PAGE);
        }
        if !dontunmap {
            self.unmap(old, old_end);
        } else {
            // The old range stays mapped, empty: the moved frames are gone.
            self.discard(old, old_len);
        }
        Ok(dest)
    }

    /// madvise(2) with Linux's checks: a known `advice`, `start` page
    /// aligned, no wrap-around (EINVAL); MADV_DONTNEED drops the pages of
    /// the areas in the range, the other advice changes nothing here. A
    /// hole in the range gives ENOMEM (after the areas were advised).
    pub fn madvise(&mut self, start: u64, len: u64, advice: u64) -> Result<(), MmError> {
        match advice {
            0..=4 | 8..=25 => {}
            // MADV_HWPOISON / MADV_SOFT_OFFLINE need CAP_SYS_ADMIN.
            100 | 101 => return Err(MmError::Perm),
            _ => return Err(MmError::Invalid),
        }
        if !start.is_multiple_of(PAGE) {
            return Err(MmError::Invalid);
        }
        let alen = align_up(len);
        if len != 0 && alen == 0 {
            return Err(MmError::Invalid);
        }
        let end = start.checked_add(alen).ok_or(MmError::Invalid)?;
        if end == start {
            return Ok(());
        }
        if advice == 18 {
            // WIPEONFORK is refused here as on a file mapping (vkernel
            // does not implement it).
            return Err(MmError::Invalid);
        }
        if advice == MADV_REMOVE {
            self.remove(start, end)?;
        }
        if matches!(advice, MADV_DONTNEED | MADV_DONTNEED_LOCKED) {
            let ranges: Vec<(u64, u64)> = self
                .vmas
                .range(..end)
                .filter(|(s, v)| v.end > start && **s < end)
                .map(|(s, v)| ((*s).max(start), v.end.min(end)))
                .collect();
            for (s, e) in ranges {
                self.discard(s, e - s);
            }
        }
        if self.range_mapped(start, end) {
            Ok(())
        } else {
            Err(MmError::NoSpace)
        }
    }

    /// MADV_REMOVE over `[start, end)`: every area there must be shared
    /// (EINVAL for anonymous private memory, EACCES for a private file
    /// mapping) and writable by its file (EACCES; checked before any is
    /// changed); their objects' pages there read as zero from now on, in
    /// every vproc, and so do their files' bytes.
    fn remove(&mut self, start: u64, end: u64) -> Result<(), MmError> {
        let areas: Vec<(u64, u64, ShmMap)> = self
            .vmas
            .range(..end)
            .filter(|(s, v)| v.end > start && **s < end)
            .map(|(s, v)| {
                let Some(sm) = v.shm.clone() else {
                    // Linux: no file behind it, EINVAL; a private file
                    // mapping is not shared-writable, EACCES.
                    return Err(if v.file.is_some() {
                        MmError::SharedWrite
                    } else {
                        MmError::Invalid
                    });
                };
                if v.file.as_ref().is_some_and(|f| !f.writable) {
                    return Err(MmError::SharedWrite);
                }
                let (lo, hi) = ((*s).max(start), v.end.min(end));
                Ok((
                    sm.off.saturating_add(lo - s),
                    sm.off.saturating_add(hi - s),
                    sm,
                ))
            })
            .collect::<Result<_, _>>()?;
        for (lo, hi, sm) in areas {
            sm.obj
                .punch(lo / PAGE, hi.div_ceil(PAGE))
                .map_err(|_| MmError::Io)?;
        }
        Ok(())
    }

    /// Drop the frames of `[start, start + len)` (the pages read as zero
    /// again); the caller checked the range.
    pub(super) fn discard(&mut self, start: u64, len: u64) {
        let end = start.saturating_add(align_up(len));
        self.patch_drop(start, end, false);
        self.split_large_in(start, end, true);
        let pages: Vec<(u64, u64)> = self
            .pages
            .range(start..end)
            .map(|(a, f)| (*a, *f))
            .collect();
        for (va, f) in &pages {
            self.vpt.unmap(&self.ram, *va);
            self.pages.remove(va);
            self.fr().free(*f);
        }
        if let (Some(a), Some(b)) = (pages.first(), pages.last()) {
            self.inval(a.0, b.0 + PAGE);
        }
    }

    /// msync(2) with Linux's checks: `start` page aligned, `flags` only
    /// MS_ASYNC, MS_INVALIDATE, MS_SYNC and not both MS_ASYNC and MS_SYNC
    /// (EINVAL); a hole in the range is ENOMEM. The resident pages of the
    /// shared file areas in the range are written back to their files
    /// (MS_ASYNC too: the write is as cheap as scheduling it); EIO if a
    /// file refused them.
    pub fn msync(&mut self, start: u64, len: u64, flags: u32) -> Result<(), MmError> {
        const MS_ASYNC: u32 = 1;
        const MS_INVALIDATE: u32 = 2;
        const MS_SYNC: u32 = 4;
        if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
            || flags & (MS_ASYNC | MS_SYNC) == MS_ASYNC | MS_SYNC
            || !start.is_multiple_of(PAGE)
        {
            return Err(MmError::Invalid);
        }
        let end = start
            .checked_add(align_up(len))
            .filter(|&e| e >= start && (len == 0 || e > start))
            .ok_or(MmError::NoSpace)?;
        if end == start {
            return Ok(());
        }
        if !self.range_mapped(start, end) {
            return Err(MmError::NoSpace);
        }
        self.write_back(start, end)
    }

    /// Write the shared file pages of `[start, end)` back to their files.
    pub(super) fn write_back(&self, start: u64, end: u64) -> Result<(), MmError> {
        let mut r = Ok(());
        for (s, v) in self
            .vmas
            .range(..end)
            .filter(|(s, v)| v.end > start && **s < end)
        {
            let Some(sm) = &v.shm else { continue };
            let lo = (*s).max(start);
            let hi = v.end.min(end);
            let first = sm.off.saturating_add(lo - s) / PAGE;
            let last = sm.off.saturating_add(hi - s).div_ceil(PAGE);
            if sm.obj.write_back(first, last).is_err() {
                r = Err(MmError::Io);
            }
        }
        r
    }

    /// brk(2): returns the new (or unchanged) break.
    pub fn set_brk(&mut self, new: u64) -> u64 {
        if new < self.brk_start || new > self.brk_start + (1 << 40) {
            return self.brk;
        }
        let old_top = align_up(self.brk);
        let new_top = align_up(new);
        if new_top > old_top {
            if !self.range_free(old_top, new_top) {
                return self.brk;
            }
            match self.vmas.range_mut(..old_top).next_back() {
                Some((_, v)) if v.end == old_top && v.kind == VmaKind::Brk => v.end = new_top,
                _ => {
                    self.vmas.insert(
                        old_top,
                        Vma {
                            end: new_top,
                            prot: PROT_READ | PROT_WRITE,
                            kind: VmaKind::Brk,
                            file: None,
                            shm: None,
                        },
                    );
                }
            }
            // A small growth is malloc's next chunk, written at once: give
            // it frames now rather than a demand fault per page; a large one
            // (malloc's first, with its top pad) its first pages, where
            // malloc puts its first chunks. With hardware entries: empty
            // entries made present need no guest command.
            let eager = if new_top - old_top <= EAGER_BRK * PAGE {
                new_top
            } else {
                old_top + EAGER_BRK_LARGE * PAGE
            };
            let mut va = old_top;
            while va < eager && self.map_new(va, PROT_READ | PROT_WRITE, true).is_ok() {
                va += PAGE;
            }
            let _ = self.vmspace().populate(old_top, va);
        } else if new_top < old_top {
            self.unmap(new_top, old_top);
        }
        self.brk = new;
        new
    }
}

/// What an mprotect takes away from pages that had `old` and get `new`,
/// and so what their hardware entries must lose at once: removing read or
/// exec needs the entries gone (they refault from the VPTEs); removing
/// only write, write protection (read-only entries stay, so the pages a
/// vproc reads do not refault: glibc's RELRO mprotect at every start);
/// gaining rights, nothing (the next fault installs them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ProtLoss {
    Nothing,
    Write,
    ReadOrExec,
}

impl ProtLoss {
    fn of(old: u32, new: u32) -> ProtLoss {
        // On x86 any access right implies read.
        let loses_read = old != 0 && new == 0;
        let loses_exec = old & PROT_EXEC != 0 && new & PROT_EXEC == 0;
        if loses_read || loses_exec {
            ProtLoss::ReadOrExec
        } else if old & PROT_WRITE != 0 && new & PROT_WRITE == 0 {
            ProtLoss::Write
        } else {
            ProtLoss::Nothing
        }
    }
}

#[cfg(test)]
mod prot_loss_tests {
    use super::*;

    #[test]
    fn what_an_mprotect_takes_away() {
        let (r, w, x) = (PROT_READ, PROT_WRITE, PROT_EXEC);
        assert_eq!(ProtLoss::of(r | w, r), ProtLoss::Write, "RELRO");
        assert_eq!(ProtLoss::of(r | w | x, r | x), ProtLoss::Write);
        assert_eq!(ProtLoss::of(r | x, r), ProtLoss::ReadOrExec);
        assert_eq!(ProtLoss::of(r, 0), ProtLoss::ReadOrExec);
        assert_eq!(
            ProtLoss::of(r | w, x),
            ProtLoss::Write,
            "write goes, exec comes"
        );
        assert_eq!(ProtLoss::of(r, r | w), ProtLoss::Nothing);
        assert_eq!(ProtLoss::of(0, r), ProtLoss::Nothing);
        assert_eq!(ProtLoss::of(r, r | x), ProtLoss::Nothing);
        assert!(ProtLoss::ReadOrExec > ProtLoss::Write && ProtLoss::Write > ProtLoss::Nothing);
    }
}
