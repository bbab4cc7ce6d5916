//! The memory calls the exitless server answers: brk queries and growth
//! (a shrink unmaps pages, which must reach the vCPUs' TLBs: the exit
//! path's), and private anonymous mmap at an address of the kernel's
//! choosing (MAP_FIXED may replace areas: the exit path's). Both only add
//! areas, and pages the vproc has never touched, to the memory map under
//! the process lock, exactly as the exit path's handlers (the same `Mm`
//! calls) do.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use crate::mm::Mm;

use crate::kernel::fast::FastCtx;

const PAGE: u64 = 4096;

/// brk and mmap, or None (the exit path).
pub(super) fn serve(c: &FastCtx, nr: i64, a: [u64; 6]) -> Option<u64> {
    c.process
        .try_with_parts(|p| match nr {
            libc::SYS_brk => brk(p.mm, a[0]),
            libc::SYS_mmap => mmap(p.mm, a),
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

/// mmap(addr, len, prot, flags, fd, off) of private anonymous memory
/// where the kernel picks the address (`addr` is a hint).
fn mmap(mm: &mut Mm, a: [u64; 6]) -> Option<u64> {
    const MAP_TYPE: u32 = 0xf;
    const MAP_PRIVATE: u32 = 2;
    const MAP_FIXED: u32 = 0x10;
    const MAP_ANON: u32 = 0x20;
    const MAP_FIXED_NOREPLACE: u32 = 0x10_0000;
    let (addr, len, prot, flags, off) = (a[0], a[1], a[2] as u32, a[3] as u32, a[5]);
    // The exit path's argument checks fail (or the call is not this one).
    if flags & MAP_ANON == 0
        || flags & MAP_TYPE != MAP_PRIVATE
        || flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0
        || len == 0
        || !off.is_multiple_of(PAGE)
        || (off / PAGE).checked_add(len.div_ceil(PAGE)).is_none()
        // Larger than RAM: the overcommit check is the exit path's.
        || len > mm.ram().size()
    {
        return None;
    }
    mm.mmap(addr, len, prot, false, false, None).ok()
}
