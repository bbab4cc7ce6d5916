//! Building vpagetables: a frame allocator over a RAM range and a writer for
//! 4-level tables in the [`crate::vpte`] format.
//!
//! These are conveniences for virtual kernels; the vpagetable is just memory
//! in RAM, and a vkernel may build it any way it likes.
//!
//! ```
//! use vkernel_core::{ram::Ram, vptable::{FrameAlloc, VpTable}, vpte::Vpte};
//! let ram = Ram::anonymous(1 << 20).unwrap();
//! let mut frames = FrameAlloc::new(0, 1 << 20).unwrap();
//! let vpt = VpTable::new(&ram, &mut frames).unwrap();
//! let page = frames.alloc(&ram).unwrap();
//! vpt.map(&ram, &mut frames, 0x40_0000, page, Vpte::RW | Vpte::U).unwrap();
//! assert_eq!(vpt.lookup(&ram, 0x40_0000).unwrap().frame(), page);
//! ```

use crate::ram::{Ram, RamError};
use crate::vpte::{index, Vpte};

/// Errors building vpagetables.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum VptError {
    /// The frame allocator is empty.
    #[error("out of RAM frames")]
    OutOfFrames,
    /// An address or frame is not 4 KiB aligned.
    #[error("{0:#x} is not 4 KiB aligned")]
    Unaligned(u64),
    /// The virtual address is not a user address.
    #[error("{0:#x} is not a user address")]
    NotUser(u64),
    /// A large page is in the way.
    #[error("a large page maps {0:#x}")]
    LargePage(u64),
    /// RAM access failed.
    #[error(transparent)]
    Ram(#[from] RamError),
}

/// A page-frame allocator over `[start, end)` of RAM.
#[derive(Debug, Clone)]
pub struct FrameAlloc {
    next: u64,
    end: u64,
    free: Vec<u64>,
    /// Bottom of the 2 MiB blocks carved from the top of the range: 4 KiB
    /// frames grow up from the start, 2 MiB blocks down from the end, so
    /// neither breaks the other's runs up.
    large_next: u64,
    /// Free 2 MiB blocks.
    free_large: Vec<u64>,
    /// Where carving starts (the end rounded down to 2 MiB).
    large_top: u64,
    /// Extra references of shared frames (copy-on-write): absent means one.
    shared: std::collections::HashMap<u64, u32>,
    /// Frames never handed out read zero ([`FrameAlloc::with_host`]).
    fresh: bool,
    /// Free 2 MiB blocks given back to the host, which reads them as
    /// zero: handed out again without zeroing.
    clean_large: Vec<u64>,
    /// Free 4 KiB frames of a clean block broken up: zero too.
    clean: Vec<u64>,
    /// Where freed 2 MiB blocks go back to the host ([`FrameAlloc::with_host`]).
    host: Option<Ram>,
}

impl FrameAlloc {
    /// Allocate frames from `[start, end)` (4 KiB aligned).
    pub fn new(start: u64, end: u64) -> Result<FrameAlloc, VptError> {
        for a in [start, end] {
            if a % 4096 != 0 {
                return Err(VptError::Unaligned(a));
            }
        }
        let end = end.max(start);
        Ok(FrameAlloc {
            next: start,
            end,
            free: Vec::new(),
            large_next: (end & !(LARGE - 1)).max(start),
            large_top: (end & !(LARGE - 1)).max(start),
            free_large: Vec::new(),
            fresh: false,
            clean_large: Vec::new(),
            clean: Vec::new(),
            host: None,
            shared: std::collections::HashMap::new(),
        })
    }

    /// Hand out memory of `ram` as the host gave it: frames this allocator
    /// has never handed out need no zeroing when `ram` was fresh
    /// ([`Ram::take_fresh`]: only the first allocator over a RAM may
    /// assume it), and a freed 2 MiB block goes back to the host
    /// ([`Ram::discard`]), which frees the memory and reads it as zero
    /// after, instead of being zeroed again by a memset when it is reused.
    pub fn with_host(mut self, ram: &Ram) -> FrameAlloc {
        self.fresh = ram.take_fresh();
        self.host = Some(ram.clone());
        self
    }

    /// A zeroed frame. A freed frame is reused first (zeroed here: its
    /// memory is resident, which is cheaper than a host fault), then a
    /// frame never handed out (zeroed only if the RAM was not fresh),
    /// then one of a free 2 MiB block.
    pub fn alloc(&mut self, ram: &Ram) -> Result<u64, VptError> {
        let rest = |b: u64| (1..512u64).rev().map(move |i| b + i * 4096);
        let (f, is_zero) = if let Some(f) = self.free.pop() {
            (f, false)
        } else if self.next < self.small_limit() {
            self.next += 4096;
            (self.next - 4096, self.fresh)
        } else if let Some(f) = self.clean.pop() {
            (f, true)
        } else if let Some(b) = self.clean_large.pop() {
            // The 4 KiB frames ran into the 2 MiB blocks: break a free
            // block up (a clean one first: its frames need no zeroing).
            self.clean.extend(rest(b));
            (b, true)
        } else if let Some(b) = self.free_large.pop() {
            self.free.extend(rest(b));
            (b, false)
        } else {
            return Err(VptError::OutOfFrames);
        };
        if !is_zero {
            ram.zero(f, 4096)?;
        }
        Ok(f)
    }

    /// Where the 4 KiB frames must stop: the lowest carved 2 MiB block, or
    /// the end of the range while none is carved.
    fn small_limit(&self) -> u64 {
        if self.large_next == self.large_top {
            self.end
        } else {
            self.large_next
        }
    }

    /// A zeroed, 2 MiB aligned block of 512 frames, or `None` when no free
    /// block is left (fall back to 4 KiB frames then): from the free blocks,
    /// else carved from the top of the range while it stays clear of the 4
    /// KiB frames. Give it back with [`FrameAlloc::free_large`] (whole), or
    /// frame by frame with [`FrameAlloc::free`] after splitting it.
    pub fn alloc_large(&mut self, ram: &Ram) -> Result<Option<u64>, VptError> {
        let (b, is_zero) = if let Some(b) = self.clean_large.pop() {
            (b, true)
        } else if let Some(b) = self.free_large.pop() {
            (b, false)
        } else if self.large_next >= self.next.next_multiple_of(LARGE) + LARGE
            && self.large_next >= LARGE
        {
            self.large_next -= LARGE;
            (self.large_next, self.fresh)
        } else {
            return Ok(None);
        };
        if !is_zero {
            ram.zero(b, LARGE)?;
        }
        Ok(Some(b))
    }

    /// Give back a whole 2 MiB block from [`FrameAlloc::alloc_large`]: to
    /// the host as well when the allocator has one ([`FrameAlloc::with_host`]).
    pub fn free_large(&mut self, block: u64) {
        if self.host.as_ref().is_some_and(|r| r.discard(block, LARGE)) {
            self.clean_large.push(block);
        } else {
            self.free_large.push(block);
        }
    }

    /// Free 2 MiB blocks (handed back or never carved).
    pub fn available_large(&self) -> u64 {
        let carvable = self
            .large_next
            .saturating_sub(self.next.next_multiple_of(LARGE))
            / LARGE;
        (self.free_large.len() + self.clean_large.len()) as u64 + carvable
    }

    /// Drop one reference to a frame; the frame returns to the allocator
    /// when the last reference goes.
    pub fn free(&mut self, frame: u64) {
        match self.shared.get_mut(&frame) {
            Some(n) if *n > 2 => *n -= 1,
            // Back to a single (implicit) reference.
            Some(_) => {
                self.shared.remove(&frame);
            }
            None => self.free.push(frame),
        }
    }

    /// Take one more reference to an allocated frame (a page shared
    /// copy-on-write).
    pub fn share(&mut self, frame: u64) {
        *self.shared.entry(frame).or_insert(1) += 1;
    }

    /// References to an allocated frame (1 unless shared).
    pub fn refcount(&self, frame: u64) -> u32 {
        self.shared.get(&frame).copied().unwrap_or(1)
    }

    /// Frames still available.
    pub fn available(&self) -> u64 {
        self.small_limit().saturating_sub(self.next) / 4096
            + (self.free.len() + self.clean.len()) as u64
            + 512 * (self.free_large.len() + self.clean_large.len()) as u64
    }
}

/// A 4-level vpagetable in RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VpTable {
    root: u64,
}

const TABLE_FLAGS: u64 = Vpte::RW | Vpte::U;

/// Bytes one level-2 leaf (a large page) maps.
pub const LARGE: u64 = 2 << 20;

impl VpTable {
    /// A new, empty table.
    pub fn new(ram: &Ram, frames: &mut FrameAlloc) -> Result<VpTable, VptError> {
        Ok(VpTable {
            root: frames.alloc(ram)?,
        })
    }

    /// An existing table rooted at `root`.
    pub fn from_root(root: u64) -> VpTable {
        VpTable { root }
    }

    /// Guest-physical address of the root (for [`crate::vmspace::Mcontrol::SetMap`]).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Address of the leaf entry for `va`, creating tables when `frames` is
    /// given.
    pub fn leaf_gpa(
        &self,
        ram: &Ram,
        frames: Option<&mut FrameAlloc>,
        va: u64,
    ) -> Result<Option<u64>, VptError> {
        self.entry_gpa(ram, frames, va, 1)
    }

    /// Address of the level-2 entry for `va`, creating the tables above it
    /// when `frames` is given (`None` when they are missing).
    fn pde_gpa(
        &self,
        ram: &Ram,
        frames: Option<&mut FrameAlloc>,
        va: u64,
    ) -> Result<Option<u64>, VptError> {
        self.entry_gpa(ram, frames, va, 2)
    }

    /// Address of the level-`level` entry for `va`, creating the tables
    /// above it when `frames` is given (`None` when they are missing); a
    /// large page on the way is an error.
    fn entry_gpa(
        &self,
        ram: &Ram,
        mut frames: Option<&mut FrameAlloc>,
        va: u64,
        level: u8,
    ) -> Result<Option<u64>, VptError> {
        if va >= vkernel_guest::x86::USER_END {
            return Err(VptError::NotUser(va));
        }
        let mut table = self.root;
        for l in (level + 1..=4u8).rev() {
            let gpa = table + 8 * index(va, l) as u64;
            let e = Vpte(ram.load(gpa)?);
            if e.valid() && e.large() {
                return Err(VptError::LargePage(va));
            }
            table = if e.valid() {
                e.frame()
            } else if let Some(f) = frames.as_deref_mut() {
                let t = f.alloc(ram)?;
                ram.store(gpa, Vpte::page(t, TABLE_FLAGS).bits())?;
                t
            } else {
                return Ok(None);
            };
        }
        Ok(Some(table + 8 * index(va, level) as u64))
    }

    /// Map the 2 MiB window at `va` to the 2 MiB block `frame` (both 2 MiB
    /// aligned) with one level-2 leaf (`flags`; PS and V are added). An
    /// empty table of 4 KiB entries in the way is freed; a table with any
    /// valid entry, or a large page already there, is an error
    /// ([`VptError::LargePage`] for the latter too: unmap first).
    pub fn map_large(
        &self,
        ram: &Ram,
        frames: &mut FrameAlloc,
        va: u64,
        frame: u64,
        flags: u64,
    ) -> Result<(), VptError> {
        for a in [va, frame] {
            if a % LARGE != 0 {
                return Err(VptError::Unaligned(a));
            }
        }
        let gpa = self
            .pde_gpa(ram, Some(frames), va)?
            .expect("tables are created");
        let cur = Vpte(ram.load(gpa)?);
        if cur.valid() {
            let table = cur.frame();
            if cur.large()
                || !ram.contains(table, 4096)
                || (0..512u64).any(|i| ram.load(table + 8 * i).unwrap_or(1) != 0)
            {
                return Err(VptError::LargePage(va));
            }
            frames.free(table);
        }
        ram.store(gpa, Vpte::page(frame, flags | Vpte::PS).bits())?;
        Ok(())
    }

    /// The level-2 leaf mapping `va`, if a large page does: (its address,
    /// the entry).
    pub fn lookup_large(&self, ram: &Ram, va: u64) -> Option<(u64, Vpte)> {
        let gpa = self.pde_gpa(ram, None, va).ok()??;
        let e = Vpte(ram.load(gpa).ok()?);
        (e.valid() && e.large()).then_some((gpa, e))
    }

    /// Remove the large page mapping `va`; returns its entry (the caller
    /// frees the block and invalidates the hardware entries).
    pub fn unmap_large(&self, ram: &Ram, va: u64) -> Option<Vpte> {
        let (gpa, e) = self.lookup_large(ram, va)?;
        ram.cas(gpa, e.bits(), 0).ok()?.then_some(e)
    }

    /// Split the large page mapping `va` into a table of 512 4 KiB leaves
    /// over the same frames with the same bits (A, M, RW, NX, software
    /// bits), so that part of it can be unmapped, protected or shared on
    /// its own. The walker's A/M updates racing with the split are kept
    /// (compare-and-exchange). Returns whether a large page was split; the
    /// caller invalidates the hardware entries (a 2 MiB entry stays valid
    /// for the same frames, but the caller may be about to change them).
    pub fn split_large(
        &self,
        ram: &Ram,
        frames: &mut FrameAlloc,
        va: u64,
    ) -> Result<bool, VptError> {
        let Some((gpa, mut e)) = self.lookup_large(ram, va) else {
            return Ok(false);
        };
        let table = frames.alloc(ram)?;
        loop {
            let flags = e.bits() & !Vpte::FRAME_MASK & !Vpte::PS;
            for i in 0..512u64 {
                ram.store(
                    table + 8 * i,
                    Vpte::page(e.frame() + i * 4096, flags).bits(),
                )?;
            }
            let upper = Vpte::page(table, TABLE_FLAGS | (e.bits() & Vpte::A));
            if ram.cas(gpa, e.bits(), upper.bits())? {
                return Ok(true);
            }
            e = Vpte(ram.load(gpa)?);
            if !e.valid() || !e.large() {
                frames.free(table);
                return Ok(false);
            }
        }
    }

    /// Map the page at `va` to `frame` with `flags` (V is added).
    pub fn map(
        &self,
        ram: &Ram,
        frames: &mut FrameAlloc,
        va: u64,
        frame: u64,
        flags: u64,
    ) -> Result<(), VptError> {
        for a in [va, frame] {
            if a % 4096 != 0 {
                return Err(VptError::Unaligned(a));
            }
        }
        let gpa = self
            .leaf_gpa(ram, Some(frames), va)?
            .expect("tables are created");
        ram.store(gpa, Vpte::page(frame, flags).bits())?;
        Ok(())
    }

    /// Write a raw leaf entry for `va` (tables are created).
    pub fn set(
        &self,
        ram: &Ram,
        frames: &mut FrameAlloc,
        va: u64,
        e: Vpte,
    ) -> Result<(), VptError> {
        let gpa = self
            .leaf_gpa(ram, Some(frames), va)?
            .expect("tables are created");
        ram.store(gpa, e.bits())?;
        Ok(())
    }

    /// The leaf entry for `va`, if its tables exist.
    pub fn lookup(&self, ram: &Ram, va: u64) -> Option<Vpte> {
        let gpa = self.leaf_gpa(ram, None, va).ok()??;
        ram.load(gpa).ok().map(Vpte)
    }

    /// Clear the leaf entry for `va`; returns what it was. Remember to
    /// invalidate the hardware mapping ([`crate::vmspace::Mcontrol::Inval`]).
    pub fn unmap(&self, ram: &Ram, va: u64) -> Option<Vpte> {
        let gpa = self.leaf_gpa(ram, None, va).ok()??;
        let old = ram.load(gpa).ok()?;
        ram.store(gpa, 0).ok()?;
        Some(Vpte(old))
    }

    /// Visit every valid leaf in `[start, end)` as `(va, leaf_gpa, vpte)`, in
    /// address order. Large pages are visited once, at their first address
    /// inside the range. Entries the walker would fault on (pointing outside
    /// RAM, a misaligned large frame, PS at the root) are skipped: the rule
    /// of [`crate::walk_range`].
    pub fn for_each_leaf(
        &self,
        ram: &Ram,
        start: u64,
        end: u64,
        f: &mut dyn FnMut(u64, u64, Vpte),
    ) {
        let mut v =
            crate::walk_range::Leaves(|l: crate::walk_range::Leaf| f(l.va, l.at, Vpte(l.raw)));
        crate::walk_range::walk_range(
            &crate::walk_range::VpTables(ram),
            self.root,
            start,
            end,
            &mut v,
        );
    }

    /// fork(2) for a vpagetable: a new table that maps the same frames as
    /// `self` over `[start, end)`, copy-on-write. Writable leaves lose RW and
    /// gain [`Vpte::COW`] in both tables, except leaves marked
    /// [`Vpte::SHARED`], which the child gets as they are (shared memory);
    /// every shared frame gets one more reference in `frames`. The child's
    /// leaves start with A and M clear. A large leaf must be read-only
    /// (not writable, not copy-on-write, not shared memory: a page cache
    /// block): the child maps the same block and each of its 512 frames
    /// gets a reference; split any other first ([`VptError::LargePage`]).
    ///
    /// The caller must invalidate the parent's range
    /// ([`crate::vmspace::Mcontrol::Inval`]): its writable hardware entries
    /// are now stale. Writes then fault as protection faults, which
    /// [`VpTable::cow_fault`] resolves.
    pub fn fork_cow(
        &self,
        ram: &Ram,
        frames: &mut FrameAlloc,
        start: u64,
        end: u64,
    ) -> Result<VpTable, VptError> {
        let child = VpTable::new(ram, frames)?;
        let mut leaves = Vec::new();
        self.for_each_leaf(ram, start, end, &mut |va, gpa, e| leaves.push((va, gpa, e)));
        for (va, gpa, e) in leaves {
            if e.large() {
                // A read-only large page (a page cache block) is shared as
                // it is: a reference on each of its frames. A writable or
                // copy-on-write one must be split first.
                if e.writable() || e.bits() & Vpte::COW != 0 || e.bits() & Vpte::SHARED != 0 {
                    return Err(VptError::LargePage(va));
                }
                (0..512u64).for_each(|i| frames.share(e.frame() + i * 4096));
                let flags = e.bits() & !Vpte::FRAME_MASK & !Vpte::PS & !(Vpte::A | Vpte::M);
                child.map_large(ram, frames, va, e.frame(), flags)?;
                continue;
            }
            if e.bits() & Vpte::SHARED != 0 {
                // Shared memory: both sides keep writing the same frame.
                frames.share(e.frame());
                child.set(ram, frames, va, e.without(Vpte::A | Vpte::M))?;
                continue;
            }
            let shared = if e.writable() || e.bits() & Vpte::COW != 0 {
                e.without(Vpte::RW).with(Vpte::COW)
            } else {
                e
            };
            // The parent's entry may change under us (A/M from a running
            // vproc): retry until the RW bit is gone atomically.
            let mut cur = e;
            while cur != shared.with(cur.bits() & (Vpte::A | Vpte::M)) {
                let want = cur.without(Vpte::RW).with(shared.bits() & Vpte::COW);
                if ram.cas(gpa, cur.bits(), want.bits())? {
                    break;
                }
                cur = Vpte(ram.load(gpa)?);
            }
            frames.share(e.frame());
            child.set(ram, frames, va, shared.without(Vpte::A | Vpte::M))?;
        }
        Ok(child)
    }

    /// Resolve a write fault on a copy-on-write page at `va`: the last
    /// holder of a frame takes it back writable; others get a private copy.
    /// Returns `false` when the page is not copy-on-write (a real
    /// protection fault). The vproc then retries the write; the walker
    /// installs the new entry.
    pub fn cow_fault(&self, ram: &Ram, frames: &mut FrameAlloc, va: u64) -> Result<bool, VptError> {
        let Some(gpa) = self.leaf_gpa(ram, None, va & !0xFFF)? else {
            return Ok(false);
        };
        let e = Vpte(ram.load(gpa)?);
        if !e.valid() || e.bits() & Vpte::COW == 0 {
            return Ok(false);
        }
        let old = e.frame();
        let frame = if frames.refcount(old) == 1 {
            old
        } else {
            let new = frames.alloc(ram)?;
            let mut buf = vec![0u8; 4096];
            ram.read(old, &mut buf)?;
            ram.write(new, &buf)?;
            frames.free(old);
            new
        };
        let ne = Vpte::page(
            frame,
            (e.bits() & !Vpte::FRAME_MASK & !Vpte::COW) | Vpte::RW,
        );
        ram.store(gpa, ne.bits())?;
        Ok(true)
    }

    /// Free every table page (not the leaf frames) back to `frames`.
    pub fn free_tables(self, ram: &Ram, frames: &mut FrameAlloc) {
        fn rec(ram: &Ram, frames: &mut FrameAlloc, table: u64, level: u8) {
            if level > 1 {
                for i in 0..512u64 {
                    let e = Vpte(ram.load(table + 8 * i).unwrap_or(0));
                    if e.valid() && !e.large() && ram.contains(e.frame(), 4096) {
                        rec(ram, frames, e.frame(), level - 1);
                    }
                }
            }
            frames.free(table);
        }
        rec(ram, frames, self.root, 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walker::{walk, Access, Emulate};

    #[test]
    fn map_walk_unmap() {
        let ram = Ram::anonymous(1 << 20).unwrap();
        let mut fa = FrameAlloc::new(0x1000, 1 << 20).unwrap();
        let vpt = VpTable::new(&ram, &mut fa).unwrap();
        let f = fa.alloc(&ram).unwrap();
        vpt.map(&ram, &mut fa, 0x7000_0000, f, Vpte::RW | Vpte::U)
            .unwrap();
        let t = walk(
            &ram,
            vpt.root(),
            0x7000_0123,
            Access::Write,
            Emulate::AccessedModified,
        )
        .unwrap();
        assert_eq!(t.frame, f);
        assert!(vpt.lookup(&ram, 0x7000_0000).unwrap().modified());
        assert!(vpt.unmap(&ram, 0x7000_0000).unwrap().valid());
        assert!(walk(&ram, vpt.root(), 0x7000_0000, Access::Read, Emulate::No).is_err());
        assert_eq!(
            vpt.map(&ram, &mut fa, 0x1001, f, 0),
            Err(VptError::Unaligned(0x1001))
        );
        let before = fa.available();
        vpt.free_tables(&ram, &mut fa);
        assert_eq!(fa.available(), before + 4);
    }

    #[test]
    fn fork_shares_frames_copy_on_write() {
        let ram = Ram::anonymous(1 << 20).unwrap();
        let mut fa = FrameAlloc::new(0x1000, 1 << 20).unwrap();
        let parent = VpTable::new(&ram, &mut fa).unwrap();
        let (w, r) = (fa.alloc(&ram).unwrap(), fa.alloc(&ram).unwrap());
        ram.store(w, 0x1111).unwrap();
        parent
            .map(&ram, &mut fa, 0x1000, w, Vpte::RW | Vpte::U | Vpte::M)
            .unwrap();
        parent.map(&ram, &mut fa, 0x2000, r, Vpte::U).unwrap();
        let child = parent.fork_cow(&ram, &mut fa, 0, 1 << 30).unwrap();
        for t in [&parent, &child] {
            let e = t.lookup(&ram, 0x1000).unwrap();
            assert!(!e.writable() && e.bits() & Vpte::COW != 0 && e.frame() == w);
            let e = t.lookup(&ram, 0x2000).unwrap();
            assert!(
                !e.writable() && e.bits() & Vpte::COW == 0,
                "read-only stays plain"
            );
        }
        assert!(!child.lookup(&ram, 0x1000).unwrap().modified());
        assert_eq!(fa.refcount(w), 2);
        // Child writes: private copy, parent keeps the original.
        assert!(child.cow_fault(&ram, &mut fa, 0x1008).unwrap());
        let ce = child.lookup(&ram, 0x1000).unwrap();
        assert!(ce.writable() && ce.frame() != w);
        assert_eq!(ram.load(ce.frame()).unwrap(), 0x1111);
        assert_eq!(fa.refcount(w), 1);
        // Parent writes: last holder, takes the frame back without a copy.
        assert!(parent.cow_fault(&ram, &mut fa, 0x1000).unwrap());
        assert_eq!(parent.lookup(&ram, 0x1000).unwrap().frame(), w);
        assert!(parent.lookup(&ram, 0x1000).unwrap().writable());
        // Not COW: a real protection fault.
        assert!(!parent.cow_fault(&ram, &mut fa, 0x2000).unwrap());
        // A shared leaf stays writable on both sides, same frame.
        let s = fa.alloc(&ram).unwrap();
        let flags = Vpte::RW | Vpte::U | Vpte::M | Vpte::SHARED;
        parent.map(&ram, &mut fa, 0x3000, s, flags).unwrap();
        let child2 = parent.fork_cow(&ram, &mut fa, 0x3000, 0x4000).unwrap();
        for t in [&parent, &child2] {
            let e = t.lookup(&ram, 0x3000).unwrap();
            assert!(e.writable() && e.bits() & Vpte::COW == 0 && e.frame() == s);
        }
        assert!(!child2.lookup(&ram, 0x3000).unwrap().modified());
        assert_eq!(fa.refcount(s), 2);
        assert!(!child2.cow_fault(&ram, &mut fa, 0x3000).unwrap());
        assert!(!parent.cow_fault(&ram, &mut fa, 0x9000).unwrap());
        // Frees drop references one at a time (r is shared by the fork).
        assert_eq!(fa.refcount(r), 2);
        let before = fa.available();
        fa.free(r);
        assert_eq!(fa.available(), before);
        fa.free(r);
        assert_eq!(fa.available(), before + 1);
    }

    #[test]
    fn allocator_runs_out() {
        let ram = Ram::anonymous(1 << 16).unwrap();
        let mut fa = FrameAlloc::new(0, 0x2000).unwrap();
        fa.alloc(&ram).unwrap();
        fa.alloc(&ram).unwrap();
        assert_eq!(fa.alloc(&ram), Err(VptError::OutOfFrames));
        fa.free(0x1000);
        assert_eq!(fa.alloc(&ram), Ok(0x1000));
    }

    #[test]
    fn large_page_walks_as_one_leaf_and_splits_exactly() {
        let ram = Ram::anonymous(16 << 20).unwrap();
        let mut fa = FrameAlloc::new(0x1000, 16 << 20).unwrap();
        let vpt = VpTable::new(&ram, &mut fa).unwrap();
        let big = fa.alloc_large(&ram).unwrap().unwrap();
        assert_eq!(big % LARGE, 0);
        let va = 0x4000_0000;
        vpt.map_large(&ram, &mut fa, va, big, Vpte::RW | Vpte::U)
            .unwrap();
        let t = walk(
            &ram,
            vpt.root(),
            va + 0x12345,
            Access::Write,
            Emulate::AccessedModified,
        )
        .unwrap();
        assert_eq!((t.level, t.frame), (2, big + 0x12000));
        let (_, e) = vpt.lookup_large(&ram, va + 0x1f_f000).unwrap();
        assert!(e.large() && e.accessed() && e.modified());
        // 4 KiB operations refuse the large page until it is split.
        assert_eq!(
            vpt.map(&ram, &mut fa, va, big, Vpte::U),
            Err(VptError::LargePage(va))
        );
        assert!(vpt.split_large(&ram, &mut fa, va + 0x5000).unwrap());
        assert!(vpt.lookup_large(&ram, va).is_none());
        for i in [0u64, 1, 0x12, 511] {
            let e = vpt.lookup(&ram, va + i * 4096).unwrap();
            assert_eq!(e.frame(), big + i * 4096);
            assert!(e.valid() && !e.large() && e.writable() && e.modified() && e.accessed());
        }
        // A hole in the middle leaves the rest mapped.
        vpt.unmap(&ram, va + 0x3000).unwrap();
        assert!(walk(&ram, vpt.root(), va + 0x3000, Access::Read, Emulate::No).is_err());
        let t = walk(&ram, vpt.root(), va + 0x4000, Access::Read, Emulate::No).unwrap();
        assert_eq!((t.level, t.frame), (1, big + 0x4000));
        assert!(
            !vpt.split_large(&ram, &mut fa, va).unwrap(),
            "nothing left to split"
        );
    }

    #[test]
    fn map_large_replaces_only_an_empty_table() {
        let ram = Ram::anonymous(16 << 20).unwrap();
        let mut fa = FrameAlloc::new(0x1000, 16 << 20).unwrap();
        let vpt = VpTable::new(&ram, &mut fa).unwrap();
        let big = fa.alloc_large(&ram).unwrap().unwrap();
        let small = fa.alloc(&ram).unwrap();
        vpt.map(&ram, &mut fa, 0x20_0000, small, Vpte::U).unwrap();
        assert_eq!(
            vpt.map_large(&ram, &mut fa, 0x20_0000, big, Vpte::U),
            Err(VptError::LargePage(0x20_0000))
        );
        vpt.unmap(&ram, 0x20_0000).unwrap();
        vpt.map_large(&ram, &mut fa, 0x20_0000, big, Vpte::U)
            .unwrap();
        assert!(vpt.unmap_large(&ram, 0x3f_f000).unwrap().large());
        assert!(vpt.lookup_large(&ram, 0x20_0000).is_none());
        assert_eq!(
            vpt.map_large(&ram, &mut fa, 0x20_1000, big, Vpte::U),
            Err(VptError::Unaligned(0x20_1000))
        );
    }

    #[test]
    fn large_blocks_come_from_the_top_and_fall_back() {
        let ram = Ram::anonymous(8 << 20).unwrap();
        let mut fa = FrameAlloc::new(0x1000, 8 << 20).unwrap();
        let before = fa.available();
        let a = fa.alloc_large(&ram).unwrap().unwrap();
        let b = fa.alloc_large(&ram).unwrap().unwrap();
        assert_eq!((a, b), (6 << 20, 4 << 20));
        assert_eq!(fa.available(), before - 1024);
        let small = fa.alloc(&ram).unwrap();
        assert!(small < b, "4 KiB frames stay below the blocks");
        // Carving stops at the 2 MiB block the small frames are in.
        assert_eq!(fa.alloc_large(&ram).unwrap(), Some(2 << 20));
        assert_eq!(fa.alloc_large(&ram).unwrap(), None);
        fa.free_large(a);
        assert_eq!(fa.alloc_large(&ram).unwrap(), Some(a));
        fa.free_large(a);
        // Once the small range is used up, a free block is broken up.
        let mut n = 0;
        while fa.alloc(&ram).is_ok() {
            n += 1;
        }
        assert!(n >= 512, "the free block fed 4 KiB frames ({n})");
        assert_eq!(fa.available(), 0);
    }

    /// Fill `[at, at+len)` with 0xaa.
    fn scribble(ram: &Ram, at: u64, len: u64) {
        ram.write(at, &vec![0xaa; usize::try_from(len).unwrap()])
            .unwrap();
    }

    fn is_zero(ram: &Ram, at: u64, len: u64) -> bool {
        let mut b = vec![1u8; usize::try_from(len).unwrap()];
        ram.read(at, &mut b).unwrap();
        b.iter().all(|&x| x == 0)
    }

    #[test]
    fn freed_blocks_go_back_to_the_host_and_come_back_zero() {
        let (ram, _) = Ram::anonymous_aligned(8 << 20, false).unwrap();
        let mut fa = FrameAlloc::new(0x1000, 8 << 20).unwrap().with_host(&ram);
        let a = fa.alloc_large(&ram).unwrap().unwrap();
        assert!(is_zero(&ram, a, LARGE));
        scribble(&ram, a, LARGE);
        let before = fa.available_large();
        fa.free_large(a);
        // Given back: the host reads it as zero before anyone zeroes it.
        assert!(is_zero(&ram, a, LARGE));
        assert_eq!(fa.available_large(), before + 1);
        assert_eq!(fa.alloc_large(&ram).unwrap(), Some(a));
        // Broken up into 4 KiB frames once the small range is used up:
        // each still reads zero.
        fa.free_large(a);
        let mut seen = 0;
        while let Ok(f) = fa.alloc(&ram) {
            assert!(is_zero(&ram, f, 4096), "frame {f:#x}");
            scribble(&ram, f, 4096);
            seen += 1;
        }
        assert!(seen > 512);
        // A freed 4 KiB frame is zeroed when it is handed out again.
        fa.free(a + 4096);
        assert_eq!(fa.alloc(&ram).unwrap(), a + 4096);
        assert!(is_zero(&ram, a + 4096, 4096));
    }

    #[test]
    fn only_the_first_allocator_over_fresh_ram_skips_zeroing() {
        let ram = Ram::anonymous(4 << 20).unwrap();
        let first = FrameAlloc::new(0x1000, 4 << 20).unwrap().with_host(&ram);
        assert!(first.fresh);
        // Whatever the first one handed out may have been written...
        scribble(&ram, 0x1000, 0x10000);
        // ... so a second allocator over the same RAM zeroes.
        let mut second = FrameAlloc::new(0x1000, 4 << 20).unwrap().with_host(&ram);
        assert!(!second.fresh);
        let f = second.alloc(&ram).unwrap();
        assert_eq!(f, 0x1000);
        assert!(is_zero(&ram, f, 4096));
        // Without a host, the allocator zeroes as before.
        assert!(!FrameAlloc::new(0, 4096).unwrap().fresh);
    }
}
