//! The memory calls the exitless server answers: brk queries and growth
//! (a shrink unmaps pages, which must reach the vCPUs' TLBs: the exit
//! path's); private mmap, of anonymous memory or of a regular file (a
//! loader mapping a library: its known syscall sites rewritten and its
//! segments filled from the page cache as on the exit path); and, in a
//! process of one thread, MAP_FIXED mmap, munmap and mprotect to rights
//! without write over ranges none of whose pages has a hardware entry.
//! Such a call queues no command for the guest (nothing a vCPU cached can
//! be stale), so the vproc may go on in user mode; where a page of the
//! range has an entry, or another thread could install one, the call is
//! the exit path's. Each does what the exit path's handler does, with the
//! same `Mm` calls, under the process lock.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use crate::files::{FdTable, FileKind, O_ACCMODE, O_RDWR, O_WRONLY};
use crate::fs::Kind as NodeKind;
use crate::kernel::fast::FastCtx;
use crate::kernel::Kernel;
use crate::mm::{FileMap, Mm, PROT_WRITE, USER_END};
use crate::syscalls::mm::{map_source, settle_anon_map, settle_file_map};

const PAGE: u64 = 4096;

/// brk, mmap, munmap and mprotect, or None (the exit path).
pub(super) fn serve(k: &Kernel, c: &FastCtx, nr: i64, a: [u64; 6]) -> Option<u64> {
    c.process
        .try_with_parts(|p| match nr {
            libc::SYS_brk => brk(p.mm, a[0]),
            libc::SYS_mmap => mmap(k, c, p.mm, p.fds, a),
            libc::SYS_munmap => munmap(c, p.mm, a[0], a[1]),
            libc::SYS_mprotect => mprotect(c, p.mm, a[0], a[1], a[2] as u32),
            _ => None,
        })
        .flatten()
}

/// brk(new): a query (a value `set_brk` refuses) or a growth.
fn brk(mm: &mut Mm, new: u64) -> Option<u64> {
    let top = |v: u64| v.div_ceil(PAGE) * PAGE;
    let in_range = new >= mm.brk_start && new <= mm.brk_start.saturating_add(1 << 40);
    // A shrink, or a growth the overcommit heuristic may refuse
    // (`syscalls::overcommit`): the exit path's.
    if in_range && (top(new) < top(mm.brk) || new - mm.brk > mm.ram().size()) {
        return None;
    }
    Some(mm.set_brk(new))
}

/// `[addr, addr + len)` rounded out to pages, when `addr` is aligned, the
/// length not zero and the range inside user space; None otherwise (the
/// exit path's errors).
fn page_range(addr: u64, len: u64) -> Option<(u64, u64)> {
    if !addr.is_multiple_of(PAGE) || len == 0 {
        return None;
    }
    let end = addr.checked_add(len.checked_next_multiple_of(PAGE)?)?;
    (end <= USER_END).then_some((addr, end))
}

/// May the server change `[start, end)`'s mappings? Only in a process of
/// one thread (no other vCPU can install an entry meanwhile) and where no
/// page has a hardware entry (no command for the guest).
fn untouched(c: &FastCtx, mm: &Mm, start: u64, end: u64) -> bool {
    c.alone && !mm.vmspace().hw_mapped(start, end)
}

/// mmap(addr, len, prot, flags, fd, off), private: anonymous memory, or a
/// regular file open for reading; MAP_FIXED only over untouched ranges.
fn mmap(k: &Kernel, c: &FastCtx, mm: &mut Mm, fds: &FdTable, a: [u64; 6]) -> Option<u64> {
    const MAP_TYPE: u32 = 0xf;
    const MAP_PRIVATE: u32 = 2;
    const MAP_FIXED: u32 = 0x10;
    const MAP_ANON: u32 = 0x20;
    const MAP_FIXED_NOREPLACE: u32 = 0x10_0000;
    let (addr, len, prot, flags, off) = (a[0], a[1], a[2] as u32, a[3] as u32, a[5]);
    // The exit path's argument checks fail (or the call is not this one).
    if flags & MAP_TYPE != MAP_PRIVATE
        || flags & MAP_FIXED_NOREPLACE != 0
        || len == 0
        || !off.is_multiple_of(PAGE)
        || (off / PAGE).checked_add(len.div_ceil(PAGE)).is_none()
        // Larger than RAM: the overcommit check is the exit path's.
        || len > mm.ram().size()
    {
        return None;
    }
    let fixed = flags & MAP_FIXED != 0;
    if fixed {
        let (start, end) = page_range(addr, len)?;
        if !untouched(c, mm, start, end) {
            return None;
        }
    }
    let map = if flags & MAP_ANON != 0 {
        None
    } else {
        let file = fds.get(a[4] as i32 as i64).ok()?.file.clone();
        let f = file.try_borrow()?;
        let FileKind::Inode(ino) = f.kind else {
            return None;
        };
        // A regular file open for reading (devices, directories and
        // write-only files are the exit path's, with its errors).
        if !matches!(c.fs.inode(ino).kind, NodeKind::File { .. }) || f.flags & O_ACCMODE == O_WRONLY
        {
            return None;
        }
        Some(FileMap {
            src: map_source(&c.fs, &f, ino)?,
            off,
            shared: false,
            writable: f.flags & O_ACCMODE == O_RDWR,
        })
    };
    let file = map.is_some();
    let r = mm.mmap(addr, len, prot, fixed, false, map).ok()?;
    let end = r.saturating_add(len.div_ceil(PAGE) * PAGE);
    if file {
        // The server serves no traced or logged vproc: its mappings get
        // the site book's sites.
        settle_file_map(mm, Some((k, c.process.threads())), (r, end), prot, fixed);
    } else {
        settle_anon_map(mm, (r, end), prot);
    }
    Some(r)
}

/// munmap of an untouched range.
fn munmap(c: &FastCtx, mm: &mut Mm, addr: u64, len: u64) -> Option<u64> {
    let (start, end) = page_range(addr, len)?;
    if !untouched(c, mm, start, end) {
        return None;
    }
    mm.munmap(addr, len).ok().map(|()| 0)
}

/// mprotect of an untouched range to rights without write (nothing to
/// commit: `syscalls::overcommit`).
fn mprotect(c: &FastCtx, mm: &mut Mm, addr: u64, len: u64, prot: u32) -> Option<u64> {
    if prot & PROT_WRITE != 0 {
        return None;
    }
    let (start, end) = page_range(addr, len)?;
    if !untouched(c, mm, start, end) {
        return None;
    }
    mm.protect(addr, len, prot).ok().map(|()| 0)
}
