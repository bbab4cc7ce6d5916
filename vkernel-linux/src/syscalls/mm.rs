//! Memory calls: mmap, munmap, mprotect, mremap, madvise, brk. They check
//! the arguments Linux checks here and leave the areas and pages to
//! [`crate::mm::Mm`].
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::errno::*;
use super::table::Handler;
use super::R;
use crate::exec::Image;
use crate::files::{FileKind, OpenFile, O_ACCMODE, O_RDWR, O_WRONLY};
use crate::fs::{Fs, Kind};
use crate::kernel::site_book::patch_known;
use crate::kernel::Kernel;
use crate::mm::{FileMap, Mm, EAGER_ANON, PROT_EXEC, PROT_WRITE, USER_END};
use crate::Vproc;
use std::sync::Arc;

/// What a mapping of the regular file `ino`, open as `f`, reads its pages
/// from: the open file's own backing (its identity changes when a vproc
/// rewrites the file, so the page cache never serves stale pages), or the
/// image's file. None when the file has neither.
pub(crate) fn map_source(
    fs: &Arc<Fs>,
    f: &OpenFile,
    ino: u64,
) -> Option<Arc<dyn crate::mm::pagecache::FileSource>> {
    match f.backing() {
        Some(b) => Some(Arc::new(b.clone())),
        None => Image::Disk {
            fs: fs.clone(),
            ino,
        }
        .source(),
    }
}

/// What follows a private mapping of a file at `[start, end)` (whole
/// pages) with `prot`, on the exit path and in the exitless server alike:
/// a library's code gets its file's known sites rewritten (`sites`: the
/// kernel whose site book this vproc's mappings use, and the threads that
/// share the memory; None for a traced or logged vproc), and a loader's
/// segment (code, or an area placed with MAP_FIXED over its reservation)
/// its pages at once (`Mm::fill_segment`).
pub(crate) fn settle_file_map(
    mm: &mut Mm,
    sites: Option<(&Kernel, usize)>,
    (start, end): (u64, u64),
    prot: u32,
    fixed: bool,
) {
    let code = prot & PROT_EXEC != 0;
    if let (true, Some((k, threads))) = (code, sites) {
        patch_known(mm, k, threads, start, end);
    }
    if code || fixed {
        mm.fill_segment(start, end - start, prot & PROT_WRITE != 0);
    } else if prot & PROT_WRITE == 0 && end > start {
        // A small read-only file (ld.so.cache) whole; a loader's
        // reservation (larger) its first page, where its first segment
        // starts (the headers it reads next), not a fault. Only that page:
        // the segments placed over the rest must find them empty to be
        // served without an exit.
        let small = (end - start) / crate::mm::PAGE <= EAGER_ANON;
        let len = if small { end - start } else { crate::mm::PAGE };
        mm.fill_segment(start, len, false);
        // The reservation's first segment (the headers, then the dynamic
        // symbols the loader looks up next) is the file's first PT_LOAD,
        // which its headers in that page describe; its whole pages (not
        // one it may share with the next segment) are mapped over by
        // nothing else.
        if !small {
            if let Some(first) = first_load_pages(mm, start) {
                let len = (first * crate::mm::PAGE).min(end - start);
                mm.fill_segment(start, len, false);
            }
        }
    }
}

/// The pages of the first PT_LOAD (file offset 0) that the ELF headers in
/// the page mapped at `start` describe, up to the page where another
/// PT_LOAD starts (at most 64), or None (no such page in memory, not an
/// ELF64 file, no such segment). The bytes are the vproc's memory: every
/// field is checked.
fn first_load_pages(mm: &Mm, start: u64) -> Option<u64> {
    let mut h = [0u8; 4096];
    mm.vmspace().copy_from_user(start, &mut h).ok()?;
    if h[..4] != *b"\x7fELF" || h[4] != 2 {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes([h[o], h[o + 1]]);
    let u64_at = |o: usize| {
        h.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let (entsize, num) = (usize::from(u16_at(0x36)), usize::from(u16_at(0x38)));
    if entsize < 56 {
        return None;
    }
    let page = crate::mm::PAGE;
    // (vaddr, offset, filesz) of each PT_LOAD.
    let mut loads = Vec::new();
    for i in 0..num {
        let ph = phoff.checked_add(i.checked_mul(entsize)?)?;
        let ty = h.get(ph..ph + 4)?;
        if u32::from_le_bytes(ty.try_into().ok()?) == 1 {
            loads.push((u64_at(ph + 0x10)?, u64_at(ph + 8)?, u64_at(ph + 0x20)?));
        }
    }
    let &(base, _, filesz) = loads.iter().find(|l| l.1 == 0)?;
    let next = loads
        .iter()
        .filter(|l| l.0 > base)
        .map(|l| (l.0 - base) / page)
        .min()
        .unwrap_or(u64::MAX);
    Some(filesz.div_ceil(page).min(next).min(64))
}

/// After an anonymous private mmap of `[start, end)` with `prot`: a small
/// writable one (at most [`EAGER_ANON`] pages: a loader's bss, its own
/// allocations, a small buffer), which is written at once, gets its
/// zeroed frames and hardware entries now instead of a fault through an
/// exit per page.
pub(crate) fn settle_anon_map(mm: &mut Mm, (start, end): (u64, u64), prot: u32) {
    let pages = (end - start) / crate::mm::PAGE;
    if prot & PROT_WRITE != 0 && pages <= EAGER_ANON {
        let n = mm.prefill_zero(start, end, EAGER_ANON as usize);
        if n > 0 {
            let _ = mm.vmspace().populate(start, end);
        }
    }
}

/// The device number of /dev/zero (1, 5).
const DEV_ZERO: u32 = 0x105;

impl Vproc {
    /// The memory calls: `(number, handler)` for the
    /// syscall table ([`super::table`]).
    pub(super) const MM_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_mmap, |v, _nr, a| v.sys_mmap(a)),
        (libc::SYS_munmap, |v, _nr, a| {
            v.mm.munmap(a[0], a[1]).map(|_| 0).map_err(Into::into)
        }),
        (libc::SYS_mprotect, |v, _nr, a| {
            // A misaligned start is EINVAL first (in `protect`).
            if a[0].is_multiple_of(4096) {
                let more = v.mprotect_commits(a[0], a[1], a[2] as u32);
                v.vm_enough_memory(more)?
            }
            v.mm.protect(a[0], a[1], a[2] as u32)
                .map(|_| 0)
                .map_err(Into::into)
        }),
        (libc::SYS_mremap, |v, _nr, a| {
            // Growing an accounted area commits the growth.
            let more = v.mremap_commits(a[0], a[1], a[2]);
            v.vm_enough_memory(more)?;
            v.mm.mremap(a[0], a[1], a[2], a[3], a[4])
                .map(|v| v as i64)
                .map_err(Into::into)
        }),
        // advice is an int.
        (libc::SYS_madvise, |v, _nr, a| {
            v.mm.madvise(a[0], a[1], a[2] as i32 as i64 as u64)
                .map(|_| 0)
                .map_err(Into::into)
        }),
        (libc::SYS_brk, |v, _nr, a| {
            // A growth Linux's heuristic refuses leaves the break.
            let grow = a[0].saturating_sub(v.mm.brk);
            if v.vm_enough_memory(grow).is_err() {
                return Ok(v.mm.brk as i64);
            }
            Ok(v.mm.set_brk(a[0]) as i64)
        }),
        (libc::SYS_msync, |v, _nr, a| {
            v.mm.msync(a[0], a[1], a[2] as u32)
                .map(|_| 0)
                .map_err(Into::into)
        }),
        (libc::SYS_mincore, |v, _nr, a| {
            let vec = v.mm.mincore(a[0], a[1])?;
            v.mm.write(a[2], &vec)?;
            Ok(0)
        }),
    ];

    fn sys_mmap(&mut self, a: [u64; 6]) -> R {
        let (addr, len, prot, flags, fd, off) = (
            a[0],
            a[1],
            a[2] as u32,
            a[3] as u32,
            a[4] as i32 as i64,
            a[5],
        );
        const MAP_TYPE: u32 = 0xf;
        const MAP_PRIVATE: u32 = 2;
        const MAP_FIXED: u32 = 0x10;
        const MAP_ANON: u32 = 0x20;
        const MAP_FIXED_NOREPLACE: u32 = 0x10_0000;
        // Linux's order: offset, fd, length, address, then the map type.
        if !off.is_multiple_of(4096) {
            return Err(EINVAL);
        }
        let file = if flags & MAP_ANON == 0 {
            Some(self.fds.get(fd)?.file.clone())
        } else {
            None
        };
        if len == 0 {
            return Err(EINVAL);
        }
        let pages = len.div_ceil(4096);
        if (off / 4096).checked_add(pages).is_none() {
            return Err(EOVERFLOW);
        }
        if !matches!(flags & MAP_TYPE, 1..=3) {
            // Checked after the length and a fixed address, as Linux does.
            let alen = pages.wrapping_mul(4096);
            let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
            if alen == 0 || alen > USER_END {
                return Err(ENOMEM);
            }
            if fixed && addr > USER_END - alen {
                return Err(ENOMEM);
            }
            return Err(EINVAL);
        }
        // Overcommit (see `overcommit`): after the argument checks.
        if Self::mmap_commits(prot, flags, flags & MAP_ANON != 0) {
            self.vm_enough_memory(pages.saturating_mul(4096))?;
        }
        let fixed = flags & MAP_FIXED != 0;
        let noreplace = flags & MAP_FIXED_NOREPLACE != 0;
        let map = if let Some(file) = file {
            let f = file.borrow();
            let FileKind::Inode(ino) = f.kind else {
                return Err(ENODEV);
            };
            let zero = match self.fs.inode(ino).kind {
                Kind::File { .. } => false,
                Kind::CharDev(DEV_ZERO) => true,
                Kind::CharDev(_) => return Err(ENODEV),
                _ => return Err(EACCES),
            };
            if f.flags & O_ACCMODE == O_WRONLY {
                return Err(EACCES);
            }
            if zero {
                // /dev/zero maps anonymous memory (shared: a new object);
                // writing a shared one needs the fd open for writing.
                let shared = flags & MAP_TYPE != MAP_PRIVATE;
                if shared && prot & 2 != 0 && f.flags & O_ACCMODE != O_RDWR {
                    return Err(EACCES);
                }
                drop(f);
                let r = if shared {
                    self.mm.mmap_shared_anon(addr, len, prot, fixed, noreplace)
                } else {
                    self.mm.mmap(addr, len, prot, fixed, noreplace, None)
                };
                return r.map(|v| v as i64).map_err(|e| e.errno());
            }
            // A memfd sealed against writes maps shared only read-only.
            let seals = self.fs.seals(ino);
            if flags & MAP_TYPE != MAP_PRIVATE
                && prot & 2 != 0
                && seals & (crate::fs::F_SEAL_WRITE | crate::fs::F_SEAL_FUTURE_WRITE) != 0
            {
                return Err(EPERM);
            }
            let src = map_source(&self.fs, &f, ino).ok_or(ENODEV)?;
            Some(FileMap {
                src,
                off,
                // MAP_SHARED and MAP_SHARED_VALIDATE.
                shared: flags & MAP_TYPE != MAP_PRIVATE,
                writable: f.flags & O_ACCMODE == O_RDWR,
            })
        } else {
            None
        };
        let private_file = map.as_ref().is_some_and(|m| !m.shared);
        let private_anon = map.is_none() && flags & MAP_TYPE == MAP_PRIVATE;
        let r = if map.is_none() && flags & MAP_TYPE != MAP_PRIVATE {
            self.mm.mmap_shared_anon(addr, len, prot, fixed, noreplace)
        } else {
            self.mm.mmap(addr, len, prot, fixed, noreplace, map)
        }
        .map_err(|e| e.errno())?;
        if private_file {
            let k = self.site_book_user();
            let threads = self.mm.threads();
            let end = r.saturating_add(pages.saturating_mul(4096));
            let sites = k.as_deref().map(|k| (k, threads));
            settle_file_map(&mut self.mm, sites, (r, end), prot, fixed);
        } else if private_anon {
            let end = r.saturating_add(pages.saturating_mul(4096));
            settle_anon_map(&mut self.mm, (r, end), prot);
        }
        Ok(r as i64)
    }
}
