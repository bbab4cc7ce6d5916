//! Hardware page tables and the pool they are allocated from.
//!
//! Every vmspace owns a hardware PML4 in the system region. Its upper half
//! is one shared entry mapping the system region; its lower half is filled
//! lazily from the vpagetable by the fault path.
//!
//! **Who writes what.** The host writes an entry directly only when it goes
//! from zero to non-zero (or gains write permission over the same frame):
//! both a real MMU and a shadow MMU re-walk the tables on the next fault, so
//! they see such a change. Anything that removes or downgrades a mapping is
//! queued as a mailbox command that the stub executes *in the guest* before
//! the vproc runs again: a shadow MMU (our hosts' PVM-derived KVM) only
//! notices page-table writes the guest makes, and only the guest can
//! `invlpg` its own TLB. Table pages of a destroyed vmspace are scrubbed the
//! same way before they return to the pool.
//!
//! **Bulk changes.** Each command costs the stub about ten instructions, and
//! a PVM-derived KVM emulates every one (about 1 µs each). So where many
//! entries of one table page change at once (a destroyed vmspace, fork's
//! write protection, a large munmap), the host rewrites the page itself
//! and the guest only *zaps* it ([`CMD_ZAP`]): one partial write that makes
//! a shadow MMU drop its copy of the page and re-read it from memory.

use std::collections::{BTreeMap, VecDeque};

use vkernel_guest::abi::{cmd, CMD_FLUSH, CMD_INVLPG, CMD_STORE, CMD_TOUCH, CMD_ZAP};
use vkernel_guest::layout::{PAGE_SIZE, SYS_PML4_INDEX, SYS_VA};
use vkernel_guest::x86::{PTE_A, PTE_ADDR_MASK, PTE_D, PTE_P, PTE_PS, PTE_U, PTE_W};

mod park;

pub(crate) use park::{agreement, Agreement, ADOPT_DIFFER_MAX, ADOPT_MIN, ADOPT_RUNS_MAX, WINDOW};

use crate::ram::Ram;
use crate::vpte::index;
use crate::walk_range::{walk_range, Leaf, Leaves, Tables};

/// A mailbox command: `[address | kind, value]`.
pub type Cmd = [u64; 2];

/// Errors of the table pool.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum PoolError {
    /// No free table page is left.
    #[error(
        "the hardware page-table pool is exhausted ({pages} pages); build the machine with a \
         larger sys_size, or run a vCPU so that destroyed vmspaces' tables are recycled"
    )]
    Exhausted {
        /// Pages in the pool.
        pages: u64,
    },
}

/// Above this many invalidated pages, one full TLB flush replaces the
/// per-page `invlpg`s.
const INVLPG_MAX: usize = 4;

/// A table page with more changed entries than this is rewritten by the
/// host and zapped ([`CMD_ZAP`]) instead of stored entry by entry.
const STORE_MAX: usize = 2;

/// A table page of 4 KiB entries with at least this many present entries
/// that a bulk change leaves as they are gets [`CMD_TOUCH`]es for the
/// changed ones instead of a [`CMD_ZAP`] of the page: the shadow entries
/// kept spare the vproc that many refaults (about one per 8 entries used,
/// each a shadow fault of some 18-35 µs on our hosts).
const TOUCH_KEPT_MIN: usize = 16;

/// At most this many runs of changed entries in one table page are touched
/// ([`CMD_TOUCH`], about 16 emulated instructions each); more, and the page
/// is zapped.
const TOUCH_RUNS_MAX: usize = 8;

/// Scrub commands waiting that make carrying them urgent.
const SCRUB_URGENT: usize = 256;

/// Bytes one page-directory entry with PS maps.
const PTE_PS_SIZE: u64 = 2 << 20;

/// How [`HwSpace::rewrite_range`] rewrites a range.
#[derive(Clone, Copy)]
pub(crate) struct RewriteHow<'a> {
    /// What happens to each present leaf.
    pub(crate) how: Rewrite,
    /// Write protection spares the entries `keep(va, entry)` accepts.
    pub(crate) keep: &'a dyn Fn(u64, u64) -> bool,
    /// A table page never zapped (stores instead).
    pub(crate) no_zap: Option<u64>,
    /// A page whose entry is the machine's, never rewritten (the exitless
    /// request page).
    pub(crate) pinned: Option<u64>,
}

/// What [`HwSpace::rewrite_range`] does to each present leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rewrite {
    /// Remove it.
    Remove,
    /// Take write permission away (copy-on-write after fork); read-only
    /// entries stay as they are.
    WriteProtect,
}

/// The pool of hardware page-table pages in the system region.
pub(crate) struct PtPool {
    sys: Ram,
    sys_gpa: u64,
    start: u64,
    next_fresh: u64,
    end: u64,
    free: Vec<u64>,
    scrub: VecDeque<Cmd>,
    /// Scrub commands ever queued.
    queued: u64,
    /// Scrub commands handed to vCPUs, by batch start -> batch end.
    inflight: BTreeMap<u64, u64>,
    /// Scrub commands ever handed out.
    issued: u64,
    /// (ticket, page): the page is clean once every command before the
    /// ticket has been applied.
    quarantine: VecDeque<(u64, u64)>,
    upper_entry: u64,
    /// Last-level tables of destroyed spaces kept for reuse, oldest first,
    /// as (window address, page) (see `park`).
    parked: VecDeque<(u64, u64)>,
}

impl PtPool {
    pub(crate) fn new(sys: Ram, sys_gpa: u64, start: u64, end: u64, upper_entry: u64) -> Self {
        PtPool {
            sys,
            sys_gpa,
            start,
            next_fresh: start,
            end,
            free: Vec::new(),
            scrub: VecDeque::new(),
            queued: 0,
            inflight: BTreeMap::new(),
            issued: 0,
            quarantine: VecDeque::new(),
            upper_entry,
            parked: VecDeque::new(),
        }
    }

    pub(crate) fn sys(&self) -> &Ram {
        &self.sys
    }

    /// Pages free now (never used, or scrubbed).
    pub(crate) fn free_pages(&self) -> u64 {
        (self.end - self.next_fresh) / PAGE_SIZE + self.free.len() as u64
    }

    /// [`PtPool::free_pages`] and the parked pages, which go back when
    /// pages run low (`park`).
    pub(crate) fn available_pages(&self) -> u64 {
        self.free_pages() + self.parked_pages() as u64
    }

    /// Allocate one zeroed table page; returns its offset in the system region.
    pub(crate) fn alloc(&mut self) -> Result<u64, PoolError> {
        self.reclaim();
        // Parked tables are a cache: they go back when pages run low.
        if self.parked_pages() > 0 && self.free_pages() < (self.end - self.start) / PAGE_SIZE / 8 {
            self.release_parked();
        }
        if let Some(p) = self.free.pop() {
            return Ok(p);
        }
        if self.next_fresh + PAGE_SIZE <= self.end {
            let p = self.next_fresh;
            self.next_fresh += PAGE_SIZE;
            return Ok(p);
        }
        Err(PoolError::Exhausted {
            pages: self.end / PAGE_SIZE,
        })
    }

    /// Return table pages of a destroyed vmspace. The host zeroes them
    /// now (no vCPU can run that vmspace again), and queues one
    /// [`CMD_ZAP`] per page and a flush: a shadow MMU drops its copies
    /// when a vCPU applies them. Only then are the pages reused, so no
    /// shadow of an old table can stand for a new one.
    pub(crate) fn release(&mut self, pages: &[u64]) {
        for &p in pages {
            self.sys
                .zero(p, PAGE_SIZE)
                .expect("pool page inside the system region");
            self.scrub.push_back(cmd(CMD_ZAP, SYS_VA + p, 0));
            self.queued += 1;
        }
        if !pages.is_empty() {
            self.scrub.push_back(cmd(CMD_FLUSH, 0, 0));
            self.queued += 1;
        }
        for &p in pages {
            self.quarantine.push_back((self.queued, p));
        }
        self.reclaim();
    }

    /// Hand up to `max` scrub commands to a vCPU; returns the batch id.
    pub(crate) fn take_scrub(&mut self, max: usize, out: &mut Vec<Cmd>) -> Option<u64> {
        let n = self.scrub.len().min(max);
        if n == 0 {
            return None;
        }
        out.extend(self.scrub.drain(..n));
        let start = self.issued;
        self.issued += n as u64;
        self.inflight.insert(start, self.issued);
        Some(start)
    }

    /// The vCPU that carried batch `id` has executed it.
    pub(crate) fn scrub_done(&mut self, id: u64) {
        self.inflight.remove(&id);
        self.reclaim();
    }

    fn reclaim(&mut self) {
        let applied = self.inflight.keys().next().copied().unwrap_or(self.issued);
        while let Some(&(ticket, page)) = self.quarantine.front() {
            if ticket > applied {
                break;
            }
            self.quarantine.pop_front();
            // The guest zeroed every entry that was set; make sure.
            if (0..512u64).all(|i| self.sys.load(page + 8 * i).unwrap_or(1) == 0) {
                self.free.push(page);
            } else {
                log::warn!("table page {page:#x} not clean after scrub; leaking it");
            }
        }
    }

    /// Is anything waiting to be scrubbed?
    pub(crate) fn has_scrub(&self) -> bool {
        !self.scrub.is_empty()
    }

    /// Must the scrub be carried even at the cost of an extra exit (a vCPU
    /// resting in user mode bounces into the stub for it)? Only when the
    /// backlog grows long or fresh pages run low; otherwise it waits for an
    /// entry that goes through the stub anyway.
    pub(crate) fn scrub_urgent(&self) -> bool {
        let total = (self.end - self.start) / PAGE_SIZE;
        self.scrub.len() >= SCRUB_URGENT || self.free_pages() < total / 8
    }

    /// Build a new address space: a PML4 with the shared upper half.
    pub(crate) fn new_space(&mut self) -> Result<HwSpace, PoolError> {
        let pml4 = self.alloc()?;
        self.sys
            .store(pml4 + 8 * SYS_PML4_INDEX as u64, self.upper_entry)
            .expect("pool page inside the system region");
        Ok(HwSpace {
            pml4,
            tables: vec![pml4],
        })
    }

    pub(crate) fn gpa(&self, off: u64) -> u64 {
        self.sys_gpa + off
    }
}

/// One vmspace's hardware page tables.
pub(crate) struct HwSpace {
    /// Offset of the PML4 in the system region.
    pub(crate) pml4: u64,
    tables: Vec<u64>,
}

/// What installing a leaf did.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) enum Installed {
    /// The host wrote the entry directly.
    Direct,
    /// The entry already had that value.
    Same,
    /// The entry changes a live mapping: a command was queued.
    Queued,
    /// A 2 MiB entry cannot go in because a table of 4 KiB entries is
    /// there: nothing changed (install 4 KiB entries instead; replacing a
    /// table with a large entry would have to go through the guest).
    Blocked,
}

/// May the host write `value` over `cur` itself? Only when `cur` is empty,
/// or (`upgrade_ok`) `value` only adds write permission (and D/A) over the
/// same frame and flags.
fn host_may_write(cur: u64, value: u64, upgrade_ok: bool) -> bool {
    let only_gains_write = cur & PTE_P != 0
        && (cur & PTE_ADDR_MASK) == (value & PTE_ADDR_MASK)
        && (cur | PTE_W | PTE_D | PTE_A) & !(value | PTE_A) == 0
        && value & !(cur | PTE_W | PTE_D | PTE_A) == 0;
    cur == 0 || (upgrade_ok && only_gains_write)
}

impl HwSpace {
    /// Offsets of all table pages (for release on destroy).
    pub(crate) fn pages(&self) -> &[u64] {
        &self.tables
    }

    /// Offset of the leaf entry for `va`, if its tables exist.
    pub(crate) fn leaf_off(&self, pool: &PtPool, va: u64) -> Option<u64> {
        let mut table = self.pml4;
        for level in (2..=4u8).rev() {
            let e = pool.sys.load(table + 8 * index(va, level) as u64).ok()?;
            if e & PTE_P == 0 || e & PTE_PS != 0 {
                return None;
            }
            table = (e & PTE_ADDR_MASK).checked_sub(pool.sys_gpa)?;
        }
        Some(table + 8 * index(va, 1) as u64)
    }

    /// Current leaf value for `va` (0 when absent); a 2 MiB entry covering
    /// `va` counts as its leaf.
    pub(crate) fn leaf(&self, pool: &PtPool, va: u64) -> u64 {
        if let Some(e) = self.pd_entry(pool, va).filter(|e| e & PTE_PS != 0) {
            return e;
        }
        self.leaf_off(pool, va)
            .and_then(|o| pool.sys.load(o).ok())
            .unwrap_or(0)
    }

    /// The level-2 (page directory) entry for `va`, if its tables exist.
    fn pd_entry(&self, pool: &PtPool, va: u64) -> Option<u64> {
        let mut table = self.pml4;
        for level in [4u8, 3] {
            let e = pool.sys.load(table + 8 * index(va, level) as u64).ok()?;
            if e & PTE_P == 0 || e & PTE_PS != 0 {
                return None;
            }
            table = (e & PTE_ADDR_MASK).checked_sub(pool.sys_gpa)?;
        }
        pool.sys.load(table + 8 * index(va, 2) as u64).ok()
    }

    /// Offset of the level-`stop` entry for `va`, creating the tables above
    /// it as needed.
    fn entry_off(&mut self, pool: &mut PtPool, va: u64, stop: u8) -> Result<u64, PoolError> {
        let mut table = self.pml4;
        for level in ((stop + 1)..=4u8).rev() {
            let off = table + 8 * index(va, level) as u64;
            let e = pool.sys.load(off).expect("table inside the system region");
            if e & PTE_P == 0 {
                let page = pool.alloc()?;
                self.tables.push(page);
                let entry = pool.gpa(page) | PTE_P | PTE_W | PTE_U | PTE_A;
                pool.sys.store(off, entry).expect("inside");
                table = page;
            } else {
                table = (e & PTE_ADDR_MASK) - pool.sys_gpa;
            }
        }
        Ok(table + 8 * index(va, stop) as u64)
    }

    /// Install `value` (a 2 MiB frame's address and flags; PS is added) as
    /// the page-directory entry for the aligned 2 MiB window of `va`, so an
    /// MMU maps the window in one go. Rules as for [`HwSpace::install`];
    /// where a table of 4 KiB entries is in the way, nothing changes
    /// ([`Installed::Blocked`]).
    pub(crate) fn install_large(
        &mut self,
        pool: &mut PtPool,
        va: u64,
        value: u64,
        upgrade_ok: bool,
        cmds: &mut Vec<Cmd>,
    ) -> Result<Installed, PoolError> {
        let value = value | PTE_PS;
        let off = self.entry_off(pool, va, 2)?;
        let cur = pool.sys.load(off).expect("inside");
        if cur == value {
            return Ok(Installed::Same);
        }
        if cur & PTE_P != 0 && cur & PTE_PS == 0 {
            return Ok(Installed::Blocked);
        }
        if host_may_write(cur, value, upgrade_ok) {
            pool.sys.store(off, value).expect("inside");
            Ok(Installed::Direct)
        } else {
            cmds.push(cmd(CMD_STORE, SYS_VA + off, value));
            cmds.push(cmd(CMD_INVLPG, va & !(PTE_PS_SIZE - 1), 0));
            Ok(Installed::Queued)
        }
    }

    /// Install `value` as the leaf for `va`, creating tables as needed.
    ///
    /// `upgrade_ok`: a change that only adds write permission over the same
    /// frame may be written by the host.
    pub(crate) fn install(
        &mut self,
        pool: &mut PtPool,
        va: u64,
        value: u64,
        upgrade_ok: bool,
        cmds: &mut Vec<Cmd>,
    ) -> Result<Installed, PoolError> {
        // A 2 MiB entry covers `va`: it must go first, through the guest
        // (a shadow MMU only sees guest writes); the vproc refaults after
        // and the 4 KiB entry goes in then.
        let pd = self.entry_off(pool, va, 2)?;
        let pde = pool.sys.load(pd).expect("inside");
        if pde & PTE_P != 0 && pde & PTE_PS != 0 {
            cmds.push(cmd(CMD_STORE, SYS_VA + pd, 0));
            cmds.push(cmd(CMD_INVLPG, va, 0));
            return Ok(Installed::Queued);
        }
        let off = self.entry_off(pool, va, 1)?;
        let cur = pool.sys.load(off).expect("inside");
        if cur == value {
            return Ok(Installed::Same);
        }
        if host_may_write(cur, value, upgrade_ok) {
            pool.sys.store(off, value).expect("inside");
            Ok(Installed::Direct)
        } else {
            cmds.push(cmd(CMD_STORE, SYS_VA + off, value));
            cmds.push(cmd(CMD_INVLPG, va, 0));
            Ok(Installed::Queued)
        }
    }

    /// Remove (or write-protect, except where `keep(va, entry)`) every present
    /// leaf in `[start, end)`;
    /// returns how many changed. A table page with at most [`STORE_MAX`]
    /// changes gets one guest store per entry (the shadow entry is updated
    /// in place). One with more is rewritten by the host, and then either
    /// (a table of 4 KiB entries whose other present entries are worth
    /// keeping, [`touch_runs`]) one [`CMD_TOUCH`] per run of changed
    /// entries, so a shadow MMU drops only those and keeps the rest of the
    /// page (fork write-protects a program's data beside its text), or one
    /// [`CMD_ZAP`], so the stub runs one instruction for the whole page.
    /// Then `invlpg` per page, or one flush. The table page `no_zap` (the
    /// one mapping the syscall trampoline) never gets a zap: a zapped
    /// trampoline entry makes a PVM-derived KVM emulate the trampoline's
    /// `out`, and complete it later over the registers written for the
    /// next entry.
    pub(crate) fn rewrite_range(
        &self,
        pool: &PtPool,
        start: u64,
        end: u64,
        how: &RewriteHow<'_>,
        cmds: &mut Vec<Cmd>,
    ) -> usize {
        let RewriteHow {
            how,
            keep,
            no_zap,
            pinned,
        } = *how;
        let mut by_table: BTreeMap<u64, TableChanges> = BTreeMap::new();
        self.for_each_leaf(pool, start, end, &mut |va, off| {
            if Some(va) == pinned {
                return;
            }
            let cur = pool.sys.load(off).unwrap_or(0);
            let new = match how {
                Rewrite::Remove => 0,
                Rewrite::WriteProtect if cur & PTE_W != 0 && !keep(va, cur) => cur & !PTE_W,
                Rewrite::WriteProtect => return,
            };
            // A 2 MiB leaf (PS) sits in a page directory, whose shadow a
            // few guest writes in a row drop anyway.
            let small = cur & PTE_PS == 0;
            let slot = by_table.entry(off & !(PAGE_SIZE - 1)).or_default();
            slot.leaves.push((va, off, new));
            slot.small = small;
        });
        let mut vas = Vec::new();
        for (table, TableChanges { leaves, small }) in by_table {
            let runs = if small && leaves.len() > STORE_MAX {
                touch_runs(pool, table, &leaves, no_zap == Some(table))
            } else {
                None
            };
            if runs.is_none() && (leaves.len() <= STORE_MAX || no_zap == Some(table)) {
                for (va, off, new) in leaves {
                    cmds.push(cmd(CMD_STORE, SYS_VA + off, new));
                    vas.push(va);
                }
                continue;
            }
            // The host rewrites the entries; the guest touches their runs
            // or zaps the page.
            for (va, off, new) in leaves {
                pool.sys
                    .store(off, new)
                    .expect("table inside the system region");
                vas.push(va);
            }
            match runs {
                Some(runs) => {
                    for (first, n) in runs {
                        cmds.push(cmd(CMD_TOUCH, SYS_VA + first, n));
                    }
                }
                None => cmds.push(cmd(CMD_ZAP, SYS_VA + table, 0)),
            }
        }
        if vas.len() > INVLPG_MAX {
            cmds.push(cmd(CMD_FLUSH, 0, 0));
        } else {
            for va in &vas {
                cmds.push(cmd(CMD_INVLPG, *va, 0));
            }
        }
        vas.len()
    }

    /// Visit every present leaf in `[start, end)` as (va, entry offset): 4
    /// KiB entries and 2 MiB ones ([`HwSpace::install_large`]); a 2 MiB
    /// entry that straddles the range is visited once, at the first address
    /// of the range it covers (removing it removes the whole 2 MiB, which
    /// refaults from the vpagetable). The walk is the shared
    /// [`crate::walk_range`] one.
    pub(crate) fn for_each_leaf(
        &self,
        pool: &PtPool,
        start: u64,
        end: u64,
        f: &mut dyn FnMut(u64, u64),
    ) {
        let mut v = Leaves(|l: Leaf| f(l.va, l.at));
        walk_range(&HwTables(pool), pool.gpa(self.pml4), start, end, &mut v);
    }

    /// [`HwSpace::for_each_leaf`] with each leaf's end inside the range:
    /// (va, end, entry offset); a 2 MiB entry spans up to 512 pages.
    pub(crate) fn for_each_span(
        &self,
        pool: &PtPool,
        start: u64,
        end: u64,
        f: &mut dyn FnMut(u64, u64, u64),
    ) {
        let mut v = Leaves(|l: Leaf| f(l.va, l.end, l.at));
        walk_range(&HwTables(pool), pool.gpa(self.pml4), start, end, &mut v);
    }
}

/// The changed leaves of one table page in [`HwSpace::rewrite_range`].
#[derive(Default)]
struct TableChanges {
    /// (va, entry offset, new value), in ascending order.
    leaves: Vec<(u64, u64, u64)>,
    /// The page holds 4 KiB entries (not a directory's 2 MiB ones).
    small: bool,
}

/// The runs of changed entries `(first entry offset, count)` to touch in
/// table page `table`, or `None` when zapping the page is the better deal:
/// too few present entries stay as they are (fewer than
/// [`TOUCH_KEPT_MIN`], unless the page must never be zapped) or the
/// changes are scattered over more than [`TOUCH_RUNS_MAX`] runs. `leaves`
/// are the changes in ascending entry order.
fn touch_runs(
    pool: &PtPool,
    table: u64,
    leaves: &[(u64, u64, u64)],
    never_zap: bool,
) -> Option<Vec<(u64, u64)>> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &(_, off, _) in leaves {
        match runs.last_mut() {
            Some((first, n)) if *first + 8 * *n == off => *n += 1,
            _ => runs.push((off, 1)),
        }
    }
    if runs.len() > TOUCH_RUNS_MAX {
        return None;
    }
    let kept = pool.present(table).saturating_sub(leaves.len());
    (never_zap || kept >= TOUCH_KEPT_MIN).then_some(runs)
}

/// The hardware tables of the pool as a [`Tables`] format: tables are read
/// at their offset in the system region; leaf frames are RAM addresses the
/// host installed.
struct HwTables<'a>(&'a PtPool);

impl Tables for HwTables<'_> {
    fn load(&self, at: u64) -> Option<u64> {
        self.0.sys.load(at).ok()
    }
    fn valid(&self, raw: u64) -> bool {
        raw & PTE_P != 0
    }
    fn large(&self, raw: u64) -> bool {
        raw & vkernel_guest::x86::PTE_PS != 0
    }
    fn addr(&self, raw: u64) -> u64 {
        raw & PTE_ADDR_MASK
    }
    fn table_at(&self, addr: u64) -> Option<u64> {
        let off = addr.checked_sub(self.0.sys_gpa)?;
        (off.is_multiple_of(PAGE_SIZE) && self.0.sys.contains(off, PAGE_SIZE)).then_some(off)
    }
    fn frame_ok(&self, _frame: u64, _size: u64) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYS_GPA: u64 = 1 << 30;
    const VA: u64 = 0x4000_0000;
    const BLOCK: u64 = 0x60_0000;

    fn pool() -> PtPool {
        let sys = Ram::anonymous(4 << 20).unwrap();
        PtPool::new(sys, SYS_GPA, 0, 4 << 20, 0)
    }

    fn no_keep(_: u64, _: u64) -> bool {
        false
    }

    /// A table page of 4 KiB entries: `ro` read-only pages from `VA`, then
    /// `rw` writable ones.
    fn text_and_data(pool: &mut PtPool, ro: u64, rw: u64) -> HwSpace {
        let mut hw = pool.new_space().unwrap();
        let mut cmds = Vec::new();
        for i in 0..ro + rw {
            let w = if i >= ro { PTE_W | PTE_D } else { 0 };
            let e = (0x10_0000 + i * PAGE_SIZE) | PTE_P | PTE_U | PTE_A | w;
            hw.install(pool, VA + i * PAGE_SIZE, e, false, &mut cmds)
                .unwrap();
        }
        assert!(cmds.is_empty());
        hw
    }

    fn write_protect(pool: &PtPool, hw: &HwSpace) -> (usize, Vec<Cmd>) {
        let mut cmds = Vec::new();
        let how = RewriteHow {
            how: Rewrite::WriteProtect,
            keep: &no_keep,
            no_zap: None,
            pinned: None,
        };
        let n = hw.rewrite_range(pool, VA, VA + (2 << 20), &how, &mut cmds);
        (n, cmds)
    }

    #[test]
    fn write_protecting_data_beside_text_touches_the_data_entries_only() {
        let mut pool = pool();
        // 100 pages of text, then 20 of written data (fork's case).
        let hw = text_and_data(&mut pool, 100, 20);
        let (n, cmds) = write_protect(&pool, &hw);
        assert_eq!(n, 20);
        let kinds: Vec<u64> = cmds.iter().map(|c| c[0] & 7).collect();
        assert!(
            !kinds.contains(&CMD_ZAP),
            "the text's shadow stays: {kinds:?}"
        );
        let touches: Vec<&Cmd> = cmds.iter().filter(|c| c[0] & 7 == CMD_TOUCH).collect();
        assert_eq!(touches.len(), 1, "one run");
        let first = hw.leaf_off(&pool, VA + 100 * PAGE_SIZE).unwrap();
        assert_eq!(touches[0][0] & !7, SYS_VA + first);
        assert_eq!(touches[0][1], 20);
        assert!(kinds.contains(&CMD_FLUSH));
        // The host already wrote the new values; the text is untouched.
        for i in 0..120 {
            let e = hw.leaf(&pool, VA + i * PAGE_SIZE);
            assert_eq!(e & PTE_W, 0, "page {i}");
            assert_eq!(e & PTE_ADDR_MASK, 0x10_0000 + i * PAGE_SIZE);
        }
    }

    #[test]
    fn scattered_or_lonely_changes_zap_the_page() {
        let mut pool = pool();
        // Few entries stay: the page is zapped (one instruction).
        let hw = text_and_data(&mut pool, 4, 40);
        let (_, cmds) = write_protect(&pool, &hw);
        assert!(cmds.iter().any(|c| c[0] & 7 == CMD_ZAP));
        assert!(!cmds.iter().any(|c| c[0] & 7 == CMD_TOUCH));
        // Changes in more runs than TOUCH_RUNS_MAX: zapped too.
        let mut hw = pool.new_space().unwrap();
        let mut cmds = Vec::new();
        for i in 0..200u64 {
            let w = if i % 10 == 0 { PTE_W } else { 0 };
            let e = (0x10_0000 + i * PAGE_SIZE) | PTE_P | PTE_U | w;
            hw.install(&mut pool, VA + i * PAGE_SIZE, e, false, &mut cmds)
                .unwrap();
        }
        let (n, cmds) = write_protect(&pool, &hw);
        assert_eq!(n, 20);
        assert!(cmds.iter().any(|c| c[0] & 7 == CMD_ZAP));
        // Two changes: guest stores, as before.
        let hw = text_and_data(&mut pool, 50, 2);
        let (_, cmds) = write_protect(&pool, &hw);
        assert_eq!(cmds.iter().filter(|c| c[0] & 7 == CMD_STORE).count(), 2);
    }

    #[test]
    fn a_2mib_entry_goes_in_directly_and_gains_write_in_place() {
        let mut pool = pool();
        let mut hw = pool.new_space().unwrap();
        let mut cmds = Vec::new();
        let ro = BLOCK | PTE_P | PTE_U | PTE_A;
        assert_eq!(
            hw.install_large(&mut pool, VA + 0x1234, ro, true, &mut cmds),
            Ok(Installed::Direct)
        );
        assert!(cmds.is_empty());
        // Every page of the window sees the 2 MiB entry.
        assert_eq!(hw.leaf(&pool, VA + 0x1f_f000), ro | PTE_PS);
        assert_eq!(hw.leaf_off(&pool, VA), None, "no 4 KiB table under it");
        // M emulation: the host upgrades it in place.
        let rw = ro | PTE_W | PTE_D;
        assert_eq!(
            hw.install_large(&mut pool, VA, rw, true, &mut cmds),
            Ok(Installed::Direct)
        );
        assert_eq!(
            hw.install_large(&mut pool, VA, rw, true, &mut cmds),
            Ok(Installed::Same)
        );
        // Another frame is a change the guest must make.
        assert_eq!(
            hw.install_large(&mut pool, VA, rw + (2 << 20), true, &mut cmds),
            Ok(Installed::Queued)
        );
        assert_eq!(cmds[0][0] & 7, CMD_STORE);
        assert!(cmds.iter().any(|c| c[0] & 7 == CMD_INVLPG));
        // The walk visits it once, as a span of 512 pages.
        let mut spans = Vec::new();
        hw.for_each_span(&pool, VA + 0x3000, VA + (4 << 20), &mut |a, b, _| {
            spans.push((a, b))
        });
        assert_eq!(spans, vec![(VA + 0x3000, VA + (2 << 20))]);
    }

    #[test]
    fn large_and_small_entries_do_not_overwrite_each_other_behind_the_guests_back() {
        let mut pool = pool();
        let mut hw = pool.new_space().unwrap();
        let mut cmds = Vec::new();
        // A table of 4 KiB entries blocks a 2 MiB entry.
        let small = 0x5000 | PTE_P | PTE_U;
        assert_eq!(
            hw.install(&mut pool, VA + 0x5000, small, false, &mut cmds),
            Ok(Installed::Direct)
        );
        assert_eq!(
            hw.install_large(&mut pool, VA, BLOCK | PTE_P | PTE_U, false, &mut cmds),
            Ok(Installed::Blocked)
        );
        assert_eq!(hw.leaf(&pool, VA + 0x5000), small);
        // A 4 KiB install under a live 2 MiB entry queues its removal.
        let va2 = VA + (2 << 20);
        hw.install_large(&mut pool, va2, BLOCK | PTE_P | PTE_U, false, &mut cmds)
            .unwrap();
        assert!(cmds.is_empty());
        assert_eq!(
            hw.install(&mut pool, va2 + 0x7000, small, false, &mut cmds),
            Ok(Installed::Queued)
        );
        assert_eq!(cmds[0], cmd(CMD_STORE, cmds[0][0] & !7, 0));
        assert_eq!(hw.leaf(&pool, va2) & PTE_PS, PTE_PS, "the guest removes it");
    }

    #[test]
    fn removing_a_page_of_a_2mib_entry_removes_the_entry() {
        let mut pool = pool();
        let mut hw = pool.new_space().unwrap();
        let mut cmds = Vec::new();
        let e = BLOCK | PTE_P | PTE_U | PTE_W;
        hw.install_large(&mut pool, VA, e, false, &mut cmds)
            .unwrap();
        let how = RewriteHow {
            how: Rewrite::WriteProtect,
            keep: &no_keep,
            no_zap: None,
            pinned: None,
        };
        assert_eq!(
            hw.rewrite_range(&pool, VA + 0x9000, VA + 0xa000, &how, &mut cmds),
            1
        );
        assert_eq!(
            cmds[0],
            cmd(CMD_STORE, cmds[0][0] & !7, (e | PTE_PS) & !PTE_W)
        );
        cmds.clear();
        let how = RewriteHow {
            how: Rewrite::Remove,
            ..how
        };
        assert_eq!(
            hw.rewrite_range(&pool, VA + 0x9000, VA + 0xa000, &how, &mut cmds),
            1
        );
        assert_eq!(cmds[0], cmd(CMD_STORE, cmds[0][0] & !7, 0));
        assert_eq!(cmds[1][0] & 7, CMD_INVLPG);
    }
}
