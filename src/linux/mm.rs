//! A vproc's memory: areas (VMAs), demand paging through the vpagetable,
//! brk/mmap/munmap/mprotect/mremap, and copyin/copyout.
//!
//! The whole user range is one [`Backing::PageTable`] mapping governed by one
//! vpagetable. A page the vproc may use but never touched has no VPTE: its
//! first touch traps ([`Trap::PageFault`]), [`Mm::handle_fault`] gives it
//! (and up to `fault_around` neighbours in the same area) a zeroed frame and
//! a VPTE, and the walker installs it when the vproc runs again. Every frame
//! belongs to one page of this vproc, or, after fork, to the same page of
//! several vprocs, copy-on-write: [`Mm::fork`] shares every frame read-only
//! with the [`Vpte::COW`] bit ([`VpTable::fork_cow`]); the first write (a
//! protection fault, or a copyout by the kernel) gets a private copy, or
//! takes the frame back when no one else holds it ([`VpTable::cow_fault`]).
//! Frames are reference counted in the one [`FrameAlloc`] every vproc of
//! the virtual kernel shares; unmapping drops references.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::core::prelude::*;
use crate::core::ram::Ram;
use crate::core::vptable::VptError;

/// Page size.
pub const PAGE: u64 = 4096;
/// Lowest address a vproc may map (catches NULL dereferences).
pub const USER_START: u64 = 0x1_0000;
/// Top of the vproc's address space (vkernel reserves the page above).
pub const USER_END: u64 = 0x7fff_ffff_f000;
/// Top of the main stack.
pub const STACK_TOP: u64 = 0x7fff_fff0_0000;
/// Size reserved for the main stack (demand paged; RLIMIT_STACK).
pub const STACK_SIZE: u64 = 8 << 20;
/// mmap allocations go top-down from here.
pub const MMAP_TOP: u64 = 0x7fff_f000_0000;
/// First guest-physical frame the vproc's memory comes from.
pub const FRAMES_START: u64 = 0x10_0000;

/// Largest demand-fault window (pages) of a sequential sweep.
pub const MAX_WINDOW: u64 = 128;

/// PROT_READ.
pub const PROT_READ: u32 = 1;
/// PROT_WRITE.
pub const PROT_WRITE: u32 = 2;
/// PROT_EXEC.
pub const PROT_EXEC: u32 = 4;
/// PROT_SEM (accepted and ignored, as on x86-64 Linux).
pub const PROT_SEM: u32 = 8;
/// PROT_GROWSDOWN (mprotect: extend down to the start of a stack area).
pub const PROT_GROWSDOWN: u32 = 0x0100_0000;
/// PROT_GROWSUP (mprotect; no area grows up on x86-64).
pub const PROT_GROWSUP: u32 = 0x0200_0000;

/// mremap: the mapping may move.
pub const MREMAP_MAYMOVE: u64 = 1;
/// mremap: move to exactly `new_addr`.
pub const MREMAP_FIXED: u64 = 2;
/// mremap: move, and leave the old range mapped but empty.
pub const MREMAP_DONTUNMAP: u64 = 4;

/// madvise: drop the pages (they read as zero again).
pub const MADV_DONTNEED: u64 = 4;
/// madvise: MADV_DONTNEED that also applies to locked pages.
pub const MADV_DONTNEED_LOCKED: u64 = 24;

/// Errors of memory management.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum MmError {
    /// No RAM frame is left.
    #[error("the virtual kernel is out of RAM frames (start it with a larger --mem)")]
    OutOfMemory,
    /// No room in the address space, or a bad range.
    #[error("no room in the address space")]
    NoSpace,
    /// The address is not mapped (or not with the needed access).
    #[error("bad user address {0:#x}")]
    Fault(u64),
    /// Bad arguments.
    #[error("invalid argument")]
    Invalid,
    /// Not allowed (a fixed mapping below the lowest mappable address).
    #[error("operation not permitted")]
    Perm,
    /// MAP_FIXED_NOREPLACE over an existing mapping.
    #[error("the range is already mapped")]
    Exists,
    /// A vpagetable edit failed.
    #[error("vpagetable: {0}")]
    Vpt(VptError),
    /// A vmspace call failed.
    #[error("vmspace: {0}")]
    Vmspace(#[from] VmspaceError),
    /// The program file could not be read while loading it.
    #[error("cannot read the program file at offset {0} (did it shrink or change while loading?)")]
    ProgramRead(u64),
}

impl From<VptError> for MmError {
    fn from(e: VptError) -> MmError {
        match e {
            VptError::OutOfFrames => MmError::OutOfMemory,
            e => MmError::Vpt(e),
        }
    }
}

impl MmError {
    /// The errno a syscall returns for this error.
    pub fn errno(self) -> i64 {
        match self {
            MmError::OutOfMemory | MmError::NoSpace => 12,
            MmError::Fault(_) => 14,
            MmError::Invalid => 22,
            MmError::Perm => 1,
            MmError::Exists => 17,
            MmError::Vpt(_) | MmError::Vmspace(_) => 12,
            MmError::ProgramRead(_) => 5,
        }
    }
}

/// Fills a buffer with the data of [`Mm::load_area_from`] at an offset.
pub type ReadData<'a> = dyn FnMut(u64, &mut [u8]) -> Result<(), MmError> + 'a;

/// What an area is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmaKind {
    /// A segment of the program image.
    Image,
    /// The brk heap.
    Brk,
    /// The main stack (fault-around goes downwards).
    Stack,
    /// An anonymous (or copied-file) mmap.
    Anon,
}

/// A virtual memory area `[start, end)`; the start is the map key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vma {
    /// End (exclusive).
    pub end: u64,
    /// PROT_* bits.
    pub prot: u32,
    /// What it is.
    pub kind: VmaKind,
}

/// Why a page fault could not be resolved: the signal to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultSignal {
    /// No area at the address (SIGSEGV, SEGV_MAPERR).
    MapErr,
    /// An area without the needed permission (SIGSEGV, SEGV_ACCERR).
    AccErr,
    /// Out of RAM (SIGBUS).
    Oom,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmStats {
    /// Page-fault traps resolved by writing VPTEs.
    pub demand_faults: u64,
    /// Pages given a frame.
    pub pages_mapped: u64,
    /// Copy-on-write breaks (faults and kernel copyouts).
    pub cow_breaks: u64,
}

/// The frame allocator every vproc of a virtual kernel shares.
pub type Frames = Arc<Mutex<FrameAlloc>>;

/// The memory of one vproc.
pub struct Mm {
    ram: Ram,
    frames: Frames,
    vpt: VpTable,
    vms: Arc<Vmspace>,
    vmas: BTreeMap<u64, Vma>,
    pages: BTreeMap<u64, u64>,
    /// First address of the brk heap.
    pub brk_start: u64,
    /// Current break.
    pub brk: u64,
    fault_around: u64,
    /// End of the last demand-fault window and the current window size:
    /// faults that continue a sequential sweep get a doubled window (up to
    /// MAX_WINDOW pages), which saves traps on large first-touch sweeps.
    sweep: (u64, u64),
    /// Counters.
    pub stats: MmStats,
}

fn align_up(v: u64) -> u64 {
    v.wrapping_add(PAGE - 1) & !(PAGE - 1)
}

fn split_at(vmas: &mut BTreeMap<u64, Vma>, at: u64) {
    if let Some((&s, &v)) = vmas.range(..at).next_back() {
        if v.end > at {
            vmas.get_mut(&s).expect("present").end = at;
            vmas.insert(at, v);
        }
    }
}

impl Mm {
    /// A fresh address space on `machine` with frames from
    /// `[FRAMES_START, ram size)`.
    pub fn new(machine: &Machine) -> Result<Mm, MmError> {
        let frames = FrameAlloc::new(FRAMES_START, machine.ram_size() & !(PAGE - 1))?;
        Mm::with_parts(
            machine.ram().clone(),
            Arc::new(Mutex::new(frames)),
            machine.vmspace_create()?,
        )
    }

    /// An empty address space in `vms` (a fresh vmspace) with frames from
    /// `frames`.
    pub fn with_parts(ram: Ram, frames: Frames, vms: Vmspace) -> Result<Mm, MmError> {
        let vpt = VpTable::new(&ram, &mut frames.lock().unwrap())?;
        let vms = Arc::new(vms);
        vms.mmap(USER_START, USER_END - USER_START, Backing::PageTable)?;
        vms.mcontrol(
            USER_START,
            USER_END - USER_START,
            Mcontrol::SetMap { root: vpt.root() },
        )?;
        Ok(Mm {
            ram,
            frames,
            vpt,
            vms,
            vmas: BTreeMap::new(),
            pages: BTreeMap::new(),
            brk_start: 0,
            brk: 0,
            fault_around: 16,
            sweep: (0, 16),
            stats: MmStats::default(),
        })
    }

    /// The vmspace the vproc runs in.
    pub fn vmspace(&self) -> &Vmspace {
        &self.vms
    }

    /// The vmspace, shared (for memory statistics of all vprocs).
    pub fn vmspace_arc(&self) -> Arc<Vmspace> {
        self.vms.clone()
    }

    /// The shared frame allocator.
    pub fn frames(&self) -> &Frames {
        &self.frames
    }

    fn fr(&self) -> MutexGuard<'_, FrameAlloc> {
        self.frames.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// fork(2): a new address space in `vms` (a fresh vmspace) with the same
    /// areas and contents, sharing every frame copy-on-write.
    pub fn fork(&mut self, vms: Vmspace) -> Result<Mm, MmError> {
        let mut fr = self.fr();
        let cvpt = self
            .vpt
            .fork_cow(&self.ram, &mut fr, USER_START, USER_END)?;
        // Pages without a valid VPTE (PROT_NONE) were not shared: copy them.
        let mut pages = self.pages.clone();
        for (&va, &f) in &self.pages {
            if self.vpt.lookup(&self.ram, va).is_some_and(|e| e.valid()) {
                continue;
            }
            let nf = fr.alloc(&self.ram)?;
            let mut buf = vec![0u8; PAGE as usize];
            self.ram
                .read(f, &mut buf)
                .and_then(|_| self.ram.write(nf, &buf))
                .map_err(|_| MmError::Fault(va))?;
            pages.insert(va, nf);
        }
        drop(fr);
        // The parent's writable hardware entries are stale now.
        self.inval(USER_START, USER_END);
        let vms = Arc::new(vms);
        vms.mmap(USER_START, USER_END - USER_START, Backing::PageTable)?;
        vms.mcontrol(
            USER_START,
            USER_END - USER_START,
            Mcontrol::SetMap { root: cvpt.root() },
        )?;
        vms.set_fault_around(MAX_WINDOW.max(self.fault_around));
        Ok(Mm {
            ram: self.ram.clone(),
            frames: self.frames.clone(),
            vpt: cvpt,
            vms,
            vmas: self.vmas.clone(),
            pages,
            brk_start: self.brk_start,
            brk: self.brk,
            fault_around: self.fault_around,
            sweep: (0, self.fault_around),
            stats: MmStats::default(),
        })
    }

    /// Drop every page and table (the vmspace keeps pointing at the old
    /// root until [`Mm::reset`] or the end).
    fn release(&mut self) {
        let pages = std::mem::take(&mut self.pages);
        let mut fr = self.fr();
        for f in pages.into_values() {
            fr.free(f);
        }
        self.vpt.free_tables(&self.ram, &mut fr);
    }

    /// execve(2): forget everything, start from an empty address space in
    /// the same vmspace.
    pub fn reset(&mut self) -> Result<(), MmError> {
        self.release();
        self.vmas.clear();
        self.brk_start = 0;
        self.brk = 0;
        self.sweep = (0, self.fault_around);
        let vpt = VpTable::new(&self.ram, &mut self.fr());
        // Even on failure the old tables are gone: point at a valid root.
        self.vpt = vpt?;
        self.vms.mcontrol(
            USER_START,
            USER_END - USER_START,
            Mcontrol::SetMap {
                root: self.vpt.root(),
            },
        )?;
        Ok(())
    }

    /// VPTE for `frame` at a page with `prot`: a frame someone else also
    /// holds stays read-only and copy-on-write.
    fn entry(&self, frame: u64, prot: u32, dirty: bool) -> Vpte {
        let mut e = Vpte::page(frame, Self::flags(prot, dirty) | Vpte::V);
        if self.fr().refcount(frame) > 1 {
            e = e.without(Vpte::RW | Vpte::M).with(Vpte::COW);
        }
        e
    }

    /// Break copy-on-write at `page` if its VPTE says so: afterwards the
    /// page has a frame of its own, writable. Returns whether it was COW.
    fn break_cow(&mut self, page: u64) -> Result<bool, MmError> {
        let cow = self
            .vpt
            .lookup(&self.ram, page)
            .is_some_and(|e| e.valid() && e.bits() & Vpte::COW != 0);
        if !cow {
            return Ok(false);
        }
        let done = self.vpt.cow_fault(&self.ram, &mut self.fr(), page)?;
        if done {
            if let Some(e) = self.vpt.lookup(&self.ram, page) {
                self.pages.insert(page, e.frame());
            }
            self.stats.cow_breaks += 1;
            self.inval(page, page + PAGE);
        }
        Ok(done)
    }

    /// The vpagetable.
    pub fn vptable(&self) -> VpTable {
        self.vpt
    }

    /// The RAM.
    pub fn ram(&self) -> &Ram {
        &self.ram
    }

    /// Pages mapped per demand-fault trap (1..=512).
    pub fn set_fault_around(&mut self, pages: u64) {
        self.fault_around = pages.clamp(1, 512);
        self.vms.set_fault_around(MAX_WINDOW.max(self.fault_around));
    }

    /// The areas, in address order, as (start, vma).
    pub fn vmas(&self) -> impl Iterator<Item = (u64, &Vma)> {
        self.vmas.iter().map(|(s, v)| (*s, v))
    }

    /// Frames still free.
    pub fn free_frames(&self) -> u64 {
        self.fr().available()
    }

    /// Pages currently backed by a frame.
    pub fn resident_pages(&self) -> usize {
        self.pages.len()
    }

    /// The area containing `va`.
    pub fn find(&self, va: u64) -> Option<(u64, Vma)> {
        self.vmas
            .range(..=va)
            .next_back()
            .filter(|(_, v)| v.end > va)
            .map(|(s, v)| (*s, *v))
    }

    fn range_free(&self, start: u64, end: u64) -> bool {
        if start < USER_START || end > USER_END || start >= end {
            return false;
        }
        self.vmas
            .range(..end)
            .next_back()
            .is_none_or(|(_, v)| v.end <= start)
    }

    fn flags(prot: u32, dirty: bool) -> u64 {
        let mut f = Vpte::U | Vpte::A;
        if prot & PROT_WRITE != 0 {
            f |= Vpte::RW;
            if dirty {
                f |= Vpte::M;
            }
        }
        if prot & PROT_EXEC == 0 {
            f |= Vpte::NX;
        }
        f
    }

    fn inval(&self, start: u64, end: u64) {
        let s = start.max(USER_START);
        let e = end.min(USER_END);
        if s < e {
            // The range is inside the one PageTable mapping made in `new`.
            let _ = self.vms.mcontrol(s, e - s, Mcontrol::Inval);
        }
    }

    /// Give `va` (page aligned) a zeroed frame mapped with `prot`.
    fn map_new(&mut self, va: u64, prot: u32, dirty: bool) -> Result<u64, MmError> {
        let mut fr = self.fr();
        let f = fr.alloc(&self.ram)?;
        let valid = if prot == 0 { 0 } else { Vpte::V };
        if let Err(e) = self.vpt.set(
            &self.ram,
            &mut fr,
            va,
            Vpte::page(f, Self::flags(prot, dirty) | valid),
        ) {
            fr.free(f);
            return Err(e.into());
        }
        drop(fr);
        self.pages.insert(va, f);
        self.stats.pages_mapped += 1;
        Ok(f)
    }

    fn set_vpte(&mut self, va: u64, frame: u64, prot: u32) -> Result<(), MmError> {
        let e = if prot == 0 {
            Vpte(0)
        } else {
            self.entry(frame, prot, false)
        };
        self.vpt.set(&self.ram, &mut self.fr(), va, e)?;
        Ok(())
    }

    /// Resolve a page fault the vpagetable could not: map the page (and
    /// neighbours) if an area allows the access.
    pub fn handle_fault(&mut self, addr: u64, access: Access) -> Result<(), FaultSignal> {
        let Some((start, vma)) = self.find(addr) else {
            return Err(FaultSignal::MapErr);
        };
        let need = match access {
            Access::Read => PROT_READ | PROT_WRITE | PROT_EXEC,
            Access::Write => PROT_WRITE,
            Access::Execute => PROT_EXEC,
        };
        if vma.prot & need == 0 {
            return Err(FaultSignal::AccErr);
        }
        let page = addr & !(PAGE - 1);
        let dirty = access == Access::Write;
        if dirty && self.pages.contains_key(&page) {
            match self.break_cow(page) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(_) => return Err(FaultSignal::Oom),
            }
        }
        if let Some(&f) = self.pages.get(&page) {
            // Present but the VPTE disagrees with the area (should not
            // happen): rewrite it once; a repeat is a real protection fault.
            let cur = self.vpt.lookup(&self.ram, page);
            let want = self.entry(f, vma.prot, dirty);
            if cur.map(|c| c.bits() & !(Vpte::A | Vpte::M))
                == Some(want.bits() & !(Vpte::A | Vpte::M))
            {
                return Err(FaultSignal::AccErr);
            }
            self.vpt
                .set(&self.ram, &mut self.fr(), page, want)
                .map_err(|_| FaultSignal::Oom)?;
            self.inval(page, page + PAGE);
            return Ok(());
        }
        self.stats.demand_faults += 1;
        let n = if page == self.sweep.0 {
            (self.sweep.1 * 2).min(MAX_WINDOW.max(self.fault_around))
        } else {
            self.fault_around
        };
        let (lo, hi) = if vma.kind == VmaKind::Stack {
            (page.saturating_sub((n - 1) * PAGE).max(start), page + PAGE)
        } else {
            (page, (page + n * PAGE).min(vma.end))
        };
        self.sweep = (hi, n);
        self.map_new(page, vma.prot, dirty)
            .map_err(|_| FaultSignal::Oom)?;
        let mut va = lo;
        while va < hi {
            if va != page
                && !self.pages.contains_key(&va)
                && self.map_new(va, vma.prot, dirty).is_err()
            {
                break;
            }
            va += PAGE;
        }
        Ok(())
    }

    /// Add an area over a free range.
    pub fn add_vma(
        &mut self,
        start: u64,
        end: u64,
        prot: u32,
        kind: VmaKind,
    ) -> Result<(), MmError> {
        if !self.range_free(start, end) {
            return Err(MmError::NoSpace);
        }
        self.vmas.insert(start, Vma { end, prot, kind });
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
            let f = match self.pages.get(&va) {
                Some(&f) => {
                    let p = self.find(va).map(|(_, v)| v.prot).unwrap_or(0) | prot;
                    self.set_vpte(va, f, p)?;
                    f
                }
                None => self.map_new(va, prot, false)?,
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

    /// Unmap `[start, end)`: areas and frames go away.
    pub fn unmap(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        split_at(&mut self.vmas, start);
        split_at(&mut self.vmas, end);
        let keys: Vec<u64> = self.vmas.range(start..end).map(|(k, _)| *k).collect();
        for k in keys {
            self.vmas.remove(&k);
        }
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

    /// mmap(2) of anonymous memory (or a private copy of `data`), with
    /// Linux's checks: `len` not zero, a fixed `addr` page aligned, the
    /// range inside `[0, USER_END)`. `noreplace` (MAP_FIXED_NOREPLACE)
    /// implies `fixed`. A hint that does not fit is ignored. Returns the
    /// address.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: u32,
        fixed: bool,
        noreplace: bool,
        data: Option<&[u8]>,
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
            } else {
                self.find_free(len)?
            }
        };
        if let Some(d) = data {
            // Copied file contents: populate eagerly, readable by the kernel.
            let d = &d[..d.len().min(len as usize)];
            self.load_area(start, start + len, prot, VmaKind::Anon, 0, d)?;
            if d.len() < len as usize {
                // Pages past the data are demand-zero: drop the eager ones.
                let keep = align_up(d.len() as u64);
                let extra: Vec<(u64, u64)> = self
                    .pages
                    .range(start + keep..start + len)
                    .map(|(a, f)| (*a, *f))
                    .collect();
                for (va, f) in extra {
                    self.vpt.unmap(&self.ram, va);
                    self.pages.remove(&va);
                    self.fr().free(f);
                }
            }
        } else {
            self.add_vma(start, start + len, prot, VmaKind::Anon)?;
        }
        Ok(start)
    }

    /// No area overlaps `[start, end)`.
    fn range_empty(&self, start: u64, end: u64) -> bool {
        self.vmas
            .range(..end)
            .next_back()
            .is_none_or(|(_, v)| v.end <= start)
    }

    /// Every byte of `[start, end)` is inside some area.
    fn range_mapped(&self, start: u64, end: u64) -> bool {
        let mut cur = start;
        while cur < end {
            match self.find(cur) {
                Some((_, v)) => cur = v.end,
                None => return false,
            }
        }
        true
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
        split_at(&mut self.vmas, start);
        split_at(&mut self.vmas, end);
        for (_, v) in self.vmas.range_mut(start..end) {
            v.prot = prot;
        }
        let pages: Vec<(u64, u64)> = self
            .pages
            .range(start..end)
            .map(|(a, f)| (*a, *f))
            .collect();
        for (va, f) in &pages {
            self.set_vpte(*va, *f, prot)?;
        }
        if let (Some(a), Some(b)) = (pages.first(), pages.last()) {
            self.inval(a.0, b.0 + PAGE);
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
            return Err(MmError::Invalid);
        }
        let old_end = old + old_len;
        if old_end > vma.end || vs > old {
            return Err(MmError::Fault(old));
        }
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
        self.add_vma(dest, dest + new_len, vma.prot, VmaKind::Anon)?;
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
        if matches!(advice, 9 | 18) {
            // MADV_REMOVE needs a shared mapping; WIPEONFORK is refused
            // here as on a file mapping (vkernel does not implement it).
            return Err(MmError::Invalid);
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

    /// Drop the frames of `[start, start + len)` (the pages read as zero
    /// again); the caller checked the range.
    fn discard(&mut self, start: u64, len: u64) {
        let end = start.saturating_add(align_up(len));
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
                        },
                    );
                }
            }
        } else if new_top < old_top {
            self.unmap(new_top, old_top);
        }
        self.brk = new;
        new
    }

    /// The frame behind user page `page` for a kernel access, demand-mapping
    /// it if its area allows that access.
    fn frame_for(&mut self, page: u64, write: bool) -> Result<u64, MmError> {
        let (_, vma) = self.find(page).ok_or(MmError::Fault(page))?;
        let ok = if write {
            vma.prot & PROT_WRITE != 0
        } else {
            vma.prot & (PROT_READ | PROT_WRITE | PROT_EXEC) != 0
        };
        if !ok {
            return Err(MmError::Fault(page));
        }
        if write && self.pages.contains_key(&page) {
            self.break_cow(page)?;
        }
        if let Some(&f) = self.pages.get(&page) {
            return Ok(f);
        }
        self.map_new(page, vma.prot, write)
    }

    /// Copy from user memory (copyin).
    pub fn read(&mut self, va: u64, buf: &mut [u8]) -> Result<(), MmError> {
        let mut done = 0usize;
        while done < buf.len() {
            let a = va.checked_add(done as u64).ok_or(MmError::Fault(va))?;
            let page = a & !(PAGE - 1);
            let off = a - page;
            let n = ((PAGE - off) as usize).min(buf.len() - done);
            let f = self.frame_for(page, false)?;
            self.ram
                .read(f + off, &mut buf[done..done + n])
                .map_err(|_| MmError::Fault(a))?;
            done += n;
        }
        Ok(())
    }

    /// Copy to user memory (copyout).
    pub fn write(&mut self, va: u64, buf: &[u8]) -> Result<(), MmError> {
        let mut done = 0usize;
        while done < buf.len() {
            let a = va.checked_add(done as u64).ok_or(MmError::Fault(va))?;
            let page = a & !(PAGE - 1);
            let off = a - page;
            let n = ((PAGE - off) as usize).min(buf.len() - done);
            let f = self.frame_for(page, true)?;
            self.ram
                .write(f + off, &buf[done..done + n])
                .map_err(|_| MmError::Fault(a))?;
            done += n;
        }
        Ok(())
    }

    /// Copy from user memory up to the first byte the vproc cannot read;
    /// returns how many bytes were copied (a partial copyin, as Linux's
    /// write(2) of a buffer whose tail is unmapped).
    pub fn read_partial(&mut self, va: u64, buf: &mut [u8]) -> usize {
        let n = self.accessible_len(va, buf.len(), false);
        match self.read(va, &mut buf[..n]) {
            Ok(()) => n,
            Err(_) => 0,
        }
    }

    /// How many bytes from `va` (at most `len`) the vproc's areas allow
    /// reading (`write` false) or writing: the span up to the first byte
    /// outside an area with that permission. Maps nothing.
    pub fn accessible_len(&self, va: u64, len: usize, write: bool) -> usize {
        let end = va.saturating_add(len as u64).min(USER_END);
        let mut cur = va;
        while cur < end {
            let Some((_, v)) = self.find(cur) else {
                break;
            };
            let ok = if write {
                v.prot & PROT_WRITE != 0
            } else {
                v.prot & (PROT_READ | PROT_WRITE | PROT_EXEC) != 0
            };
            if !ok {
                break;
            }
            cur = v.end;
        }
        (cur.min(end).saturating_sub(va)) as usize
    }

    /// Read `len` bytes into a new vector.
    pub fn read_vec(&mut self, va: u64, len: usize) -> Result<Vec<u8>, MmError> {
        let mut v = vec![0u8; len];
        self.read(va, &mut v)?;
        Ok(v)
    }

    /// Read a u64.
    pub fn read_u64(&mut self, va: u64) -> Result<u64, MmError> {
        let mut b = [0u8; 8];
        self.read(va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Write a u64.
    pub fn write_u64(&mut self, va: u64, v: u64) -> Result<(), MmError> {
        self.write(va, &v.to_le_bytes())
    }

    /// Read a NUL-terminated string of at most `max` bytes.
    pub fn read_cstr(&mut self, va: u64, max: usize) -> Result<Vec<u8>, MmError> {
        let mut out = Vec::new();
        let mut a = va;
        loop {
            let page = a & !(PAGE - 1);
            let off = a - page;
            let f = self.frame_for(page, false)?;
            let mut chunk = vec![0u8; (PAGE - off) as usize];
            self.ram
                .read(f + off, &mut chunk)
                .map_err(|_| MmError::Fault(a))?;
            if let Some(z) = chunk.iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..z]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
            if out.len() > max {
                return Err(MmError::Invalid);
            }
            a = page + PAGE;
        }
    }
}

impl Drop for Mm {
    fn drop(&mut self) {
        // Detach the vpagetable first: the vmspace may outlive this Mm
        // (shared for statistics), and its tables go back to the allocator.
        let _ = self.vms.munmap(USER_START, USER_END - USER_START);
        self.release();
    }
}
