//! Overcommit accounting as Linux's default heuristic mode
//! (`vm.overcommit_memory` = 0, `__vm_enough_memory` with
//! OVERCOMMIT_GUESS): a single request that commits more memory than the
//! machine has in total, RAM plus swap, is refused with ENOMEM; anything
//! smaller is allowed, however much is committed already (the page fault
//! that finds no frame is what fails then).
//!
//! Here RAM is the guest RAM (`--mem`) and there is no swap. What counts
//! as a request, as on Linux:
//!
//! - mmap of a private writable mapping (anonymous or file), or of a
//!   shared anonymous one, without MAP_NORESERVE: its length;
//! - mprotect adding PROT_WRITE: the pages of the range in private areas
//!   that were not writable (the vkernel does not remember MAP_NORESERVE
//!   per area, so a read-only MAP_NORESERVE area made writable counts too:
//!   only matters for one call over the whole RAM);
//! - mremap growing a private writable area: the bytes added;
//! - brk growth: the bytes added.

use super::errno::ENOMEM;
use crate::mm::PROT_WRITE;
use crate::Vproc;

/// mmap's MAP_NORESERVE.
pub(super) const MAP_NORESERVE: u32 = 0x4000;

impl Vproc {
    /// Linux's heuristic check for committing `bytes` more: ENOMEM above
    /// total RAM + swap (0).
    pub(super) fn vm_enough_memory(&self, bytes: u64) -> Result<(), i64> {
        let total = self.mm.ram().size();
        if bytes > total {
            return Err(ENOMEM);
        }
        Ok(())
    }

    /// mmap: does a mapping with `prot` and `flags` commit memory?
    pub(super) fn mmap_commits(prot: u32, flags: u32, anon: bool) -> bool {
        const MAP_TYPE: u32 = 0xf;
        const MAP_PRIVATE: u32 = 2;
        if flags & MAP_NORESERVE != 0 {
            return false;
        }
        if flags & MAP_TYPE == MAP_PRIVATE {
            prot & PROT_WRITE != 0
        } else {
            anon
        }
    }

    /// mprotect(`start`, `len`, `prot`): the bytes it newly commits (the
    /// private, not yet writable parts of the range when `prot` adds
    /// PROT_WRITE).
    pub(super) fn mprotect_commits(&self, start: u64, len: u64, prot: u32) -> u64 {
        if prot & PROT_WRITE == 0 {
            return 0;
        }
        let end = start.saturating_add(len);
        self.mm
            .vmas()
            .filter(|(s, v)| *s < end && v.end > start)
            .filter(|(_, v)| v.prot & PROT_WRITE == 0 && !v.file.as_ref().is_some_and(|f| f.shared))
            .map(|(s, v)| v.end.min(end) - s.max(start))
            .sum()
    }

    /// mremap(`old`, `old_len`, `new_len`): the bytes it newly commits
    /// (the growth of a private writable area).
    pub(super) fn mremap_commits(&self, old: u64, old_len: u64, new_len: u64) -> u64 {
        if new_len <= old_len {
            return 0;
        }
        let accounted = self.mm.vmas().any(|(s, v)| {
            s <= old
                && old < v.end
                && v.prot & PROT_WRITE != 0
                && !v.file.as_ref().is_some_and(|f| f.shared)
        });
        if accounted {
            new_len - old_len
        } else {
            0
        }
    }
}
