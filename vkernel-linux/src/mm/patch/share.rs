//! Patched pages shared between processes.
//!
//! Rewriting a program's known syscall and `cpuid` sites (`kernel::
//! site_book`) gives each of its code pages with a site a private copy,
//! and each process its own stub pages, although every process that maps
//! the same file at the same address with the same sites writes the same
//! bytes. So once a mapping's known sites are rewritten, each such page
//! is shared by content through the page cache ([`PageCache::share_copy`]):
//! the first process's copy is kept, later processes map it instead of
//! their own (read-only, as the file's own pages: a later rewrite in place
//! or a write after `mprotect` copies first). Besides the frames and the
//! copies saved, a shared page has the same frame in every process, which
//! the next process's page tables can keep.

use super::*;

impl Mm {
    /// Share by content the code pages of the sites rewritten in
    /// `[start, end)` and every stub page of the address space that is
    /// still this process's own (see the module). Call before their pages
    /// get hardware entries (a changed frame is invalidated otherwise).
    /// Returns how many pages now map a frame another process mapped first.
    pub fn share_patched(&mut self, start: u64, end: u64) -> usize {
        let mut pages: BTreeSet<u64> = BTreeSet::new();
        for (&at, site) in self.patch.sites.range(start..end) {
            let len = if site.hop.is_some() { 2 } else { 5 };
            pages.insert(at & !(PAGE - 1));
            pages.insert((at + len - 1) & !(PAGE - 1));
            if let Some((hop, _)) = site.hop {
                pages.insert(hop & !(PAGE - 1));
                pages.insert((hop + 4) & !(PAGE - 1));
            }
        }
        pages.extend(self.patch.pages.keys().copied());
        let mut shared = 0;
        for va in pages {
            let Some(&f) = self.pages.get(&va) else {
                continue;
            };
            let Some((_, vma)) = self.find(va) else {
                continue;
            };
            // Only a page no one else holds, in an area that cannot be
            // written without a copy first.
            if vma.prot & PROT_WRITE != 0 || vma.shm.is_some() || self.fr().refcount(f) != 1 {
                continue;
            }
            let Some(canon) = self.cache.share_copy(&self.frames, &self.ram, f) else {
                continue;
            };
            if self.set_vpte(va, canon, vma.prot).is_err() {
                self.fr().free(canon);
                continue;
            }
            self.pages.insert(va, canon);
            self.fr().free(f);
            self.inval(va, va + PAGE);
            shared += 1;
        }
        shared
    }
}
