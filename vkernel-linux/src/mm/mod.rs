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
//! MAP_SHARED areas are the exception: their pages belong to a shared
//! memory object (`shm`), their VPTEs carry [`Vpte::SHARED`], and fork
//! shares them writable.
//!
//! | module | holds |
//! |---|---|
//! | this one | [`Mm`], its errors, the address-space layout, fork and reset |
//! | `area` | the areas (VMAs): lookup, free ranges, loading segments, unmapping |
//! | `fault` | VPTEs and demand faults ([`Mm::handle_fault`]), copy-on-write breaks |
//! | `calls` | mmap, munmap, mprotect, mremap, madvise, brk |
//! | `uaccess` | copyin/copyout: [`Mm::read`], [`Mm::write`] and their variants |
//! | `file` | file mappings: pages from the shared [`PageCache`], SIGBUS past EOF |
//! | `shm` | shared memory (MAP_SHARED): objects of frames shared across fork and by file |
//! | `patch` | syscall sites rewritten to reach the exitless server without `syscall` |
//! | `hop` | where a site without `mov eax, N` hops to its stub: padding after its `ret` |

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::core::prelude::*;
use crate::core::ram::Ram;
use crate::core::vptable::VptError;
use pagecache::{FileSource, PageCache};

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
/// Most modified pages fork copies at once (see `Mm::eager_fork_pages`).
pub const EAGER_FORK_MAX: usize = 64;
/// Largest brk growth (pages) mapped at once instead of on demand.
pub const EAGER_BRK: u64 = 16;
/// Pages a larger brk growth maps at once (its first: malloc's first
/// chunks go there).
pub const EAGER_BRK_LARGE: u64 = 2;
/// Largest anonymous private writable mmap (pages) given its frames at
/// once (see `syscalls::mm::settle_anon_map`).
pub const EAGER_ANON: u64 = 16;
/// Pages at the top of the stack fork copies when a process has more.
pub const EAGER_FORK_STACK: u64 = 4;

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
/// madvise: free a shared mapping's pages and their backing store (they
/// read as zero again, in every mapping, and in the file).
pub const MADV_REMOVE: u64 = 9;
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
    /// Write permission asked of a shared mapping of a file not opened
    /// for writing (EACCES).
    #[error("the file of a shared mapping was not opened for writing")]
    SharedWrite,
    /// Writing a shared mapping's pages back to its file failed (EIO).
    #[error("writing shared pages back to their file failed")]
    Io,
    /// A file mapping's page lies wholly past the end of its file (or the
    /// file could not be read): SIGBUS for the vproc, EFAULT for a call.
    #[error("address {0:#x} maps a page past the end of its file")]
    Bus(u64),
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
            MmError::OutOfMemory | MmError::NoSpace => libc::ENOMEM as i64,
            MmError::Fault(_) | MmError::Bus(_) => libc::EFAULT as i64,
            MmError::Invalid => libc::EINVAL as i64,
            MmError::Perm => libc::EPERM as i64,
            MmError::Exists => libc::EEXIST as i64,
            MmError::Vpt(_) | MmError::Vmspace(_) => libc::ENOMEM as i64,
            MmError::ProgramRead(_) | MmError::Io => libc::EIO as i64,
            MmError::SharedWrite => libc::EACCES as i64,
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
    /// The stubs of patched syscall sites (see `patch`).
    SyscallStubs,
}

/// The file behind a file-backed area.
#[derive(Clone)]
pub struct FileMap {
    /// The file.
    pub src: Arc<dyn FileSource>,
    /// File offset of the area's first byte (page aligned).
    pub off: u64,
    /// MAP_SHARED rather than MAP_PRIVATE (the area's pages are then those
    /// of its [`ShmMap`]).
    pub shared: bool,
    /// The file was opened for writing (a shared mapping may be writable).
    pub writable: bool,
}

impl std::fmt::Debug for FileMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (dev, ino) = self.src.file_id();
        write!(
            f,
            "FileMap({dev}:{ino} at {:#x}{})",
            self.off,
            if self.shared { ", shared" } else { "" }
        )
    }
}

impl PartialEq for FileMap {
    fn eq(&self, o: &FileMap) -> bool {
        self.src.file_id() == o.src.file_id() && self.off == o.off && self.shared == o.shared
    }
}

impl Eq for FileMap {}

/// The shared memory object behind a MAP_SHARED area.
#[derive(Clone, Debug)]
pub struct ShmMap {
    /// The object.
    pub obj: Arc<ShmObject>,
    /// Byte offset in the object of the area's first byte (page aligned).
    pub off: u64,
}

impl PartialEq for ShmMap {
    fn eq(&self, o: &ShmMap) -> bool {
        Arc::ptr_eq(&self.obj, &o.obj) && self.off == o.off
    }
}

impl Eq for ShmMap {}

/// A virtual memory area `[start, end)`; the start is the map key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    /// End (exclusive).
    pub end: u64,
    /// PROT_* bits.
    pub prot: u32,
    /// What it is.
    pub kind: VmaKind,
    /// The file its pages come from (None: anonymous, demand-zero).
    pub file: Option<FileMap>,
    /// MAP_SHARED (anonymous, or a file's): the object holding its pages.
    pub shm: Option<ShmMap>,
}

impl Vma {
    /// The file offset of `va` (inside the area starting at `start`).
    pub fn file_off(&self, start: u64, va: u64) -> Option<u64> {
        self.file.as_ref().map(|f| f.off.saturating_add(va - start))
    }
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
    /// A file mapping's page wholly past the end of the file, or the file
    /// could not be read (SIGBUS, BUS_ADRERR).
    Bus,
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
    /// Large (2 MiB) pages mapped by first touches.
    pub large_pages_mapped: u64,
    /// Large pages split into 4 KiB pages (munmap, mprotect, fork...).
    pub large_splits: u64,
    /// Windows of 4 KiB pages collapsed into a large page at a later
    /// touch ([`Mm::collapse_window`]).
    pub large_collapses: u64,
}

/// The frame allocator every vproc of a virtual kernel shares.
pub type Frames = Arc<Mutex<FrameAlloc>>;

/// The memory of one vproc.
pub struct Mm {
    ram: Ram,
    frames: Frames,
    cache: Arc<PageCache>,
    vpt: VpTable,
    vms: Arc<Vmspace>,
    vmas: BTreeMap<u64, Vma>,
    pages: BTreeMap<u64, u64>,
    /// Large pages: 2 MiB window start -> 2 MiB block (not in `pages`).
    large: BTreeMap<u64, u64>,
    /// The windows of `large` whose block is the page cache's (a file
    /// mapping's: each frame holds a reference for this mapping, freed
    /// one by one), not a block of this process's own.
    large_file: std::collections::BTreeSet<u64>,
    /// Whether first touches may map large pages.
    large_pages: bool,
    /// First address of the brk heap.
    pub brk_start: u64,
    /// Current break.
    pub brk: u64,
    /// The auxiliary vector exec put on the stack, as `/proc/PID/auxv`
    /// shows it (pairs of native-endian words, AT_NULL last).
    pub auxv: Arc<[u8]>,
    fault_around: u64,
    /// End of the last demand-fault window and the current window size:
    /// faults that continue a sequential sweep get a doubled window (up to
    /// MAX_WINDOW pages), which saves traps on large first-touch sweeps.
    sweep: (u64, u64),
    /// Counters.
    pub stats: MmStats,
    /// Patched syscall sites and their stubs.
    patch: patch::Patches,
}

fn align_up(v: u64) -> u64 {
    v.wrapping_add(PAGE - 1) & !(PAGE - 1)
}

mod area;
mod calls;
mod fault;
mod file;
pub use file::PREFILL_DATA_PAGES;
mod hop;
mod large;
pub mod pagecache;
mod patch;
mod shm;
mod uaccess;

pub use hop::HOP_SCAN;
pub use patch::{
    cpuid_book_leaf, cpuid_book_nr, NoPatch, Patches, Plan, CODE as PATCH_CODE, PATCH_AFTER,
};
pub use shm::{ShmFiles, ShmObject};

use area::split_at;
use large::free_block;

/// What every address space of one kernel shares, for a new one that is
/// not forked from another (a process added from the host, see
/// `kernel::Spawner`): guest RAM, the frame allocator, the page cache, and
/// the large-page and fault-around settings.
#[derive(Clone)]
pub struct Kin {
    ram: Ram,
    frames: Frames,
    cache: Arc<PageCache>,
    large_pages: bool,
    fault_around: u64,
}

impl Mm {
    /// A fresh address space on `machine` with frames from
    /// `[FRAMES_START, ram size)`.
    pub fn new(machine: &Machine) -> Result<Mm, MmError> {
        let frames = FrameAlloc::new(FRAMES_START, machine.ram_size() & !(PAGE - 1))?
            .with_host(machine.ram());
        Mm::with_parts(
            machine.ram().clone(),
            Arc::new(Mutex::new(frames)),
            machine.vmspace_create()?,
        )
    }

    /// What a new address space of the same kernel shares with this one
    /// (see [`Kin`]).
    pub fn kin(&self) -> Kin {
        Kin {
            ram: self.ram.clone(),
            frames: self.frames.clone(),
            cache: self.cache.clone(),
            large_pages: self.large_pages,
            fault_around: self.fault_around,
        }
    }

    /// An empty address space in `vms` (a fresh vmspace) of the kernel
    /// `kin` comes from: its frames, its page cache and its settings.
    pub fn new_kin(kin: &Kin, vms: Vmspace) -> Result<Mm, MmError> {
        let mut mm = Mm::with_parts(kin.ram.clone(), kin.frames.clone(), vms)?;
        mm.cache = kin.cache.clone();
        mm.large_pages = kin.large_pages;
        mm.set_fault_around(kin.fault_around);
        Ok(mm)
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
            cache: PageCache::new(),
            vpt,
            vms,
            vmas: BTreeMap::new(),
            pages: BTreeMap::new(),
            large: BTreeMap::new(),
            large_file: Default::default(),
            large_pages: true,
            brk_start: 0,
            brk: 0,
            auxv: Arc::from(&[][..]),
            fault_around: 16,
            sweep: (0, 16),
            stats: MmStats::default(),
            patch: Default::default(),
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

    /// The page cache shared by every vproc forked from the first.
    pub fn page_cache(&self) -> &Arc<PageCache> {
        &self.cache
    }

    fn fr(&self) -> MutexGuard<'_, FrameAlloc> {
        self.frames.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// fork(2): a new address space in `vms` (a fresh vmspace) with the same
    /// areas and contents, sharing every frame copy-on-write.
    pub fn fork(&mut self, vms: Vmspace) -> Result<Mm, MmError> {
        // Large pages are shared as 4 KiB pages (a write copies 4 KiB),
        // except the page cache's read-only blocks, which the child maps
        // as they are.
        let own: Vec<u64> = self
            .large
            .keys()
            .filter(|b| !self.large_file.contains(b))
            .copied()
            .collect();
        for b in own {
            self.split_large_in(b, b + 1, false);
        }
        let eager = self.eager_fork_pages();
        let mut fr = self.fr();
        let cvpt = self
            .vpt
            .fork_cow(&self.ram, &mut fr, USER_START, USER_END)?;
        // The pages the parent has written, if few, are copied now: neither
        // side takes a copy-on-write fault for them (each costs a trap).
        for &va in &eager {
            // The child copies first, so the parent, then the last holder,
            // keeps its frame (and its hardware entry stays right).
            cvpt.cow_fault(&self.ram, &mut fr, va)?;
            self.vpt.cow_fault(&self.ram, &mut fr, va)?;
            if let Some(e) = cvpt.lookup(&self.ram, va) {
                cvpt.set(&self.ram, &mut fr, va, e.with(Vpte::M))?;
            }
        }
        // Pages without a valid VPTE (PROT_NONE) were not shared: copy them.
        let mut pages = self.pages.clone();
        for &va in &eager {
            if let Some(e) = cvpt.lookup(&self.ram, va) {
                pages.insert(va, e.frame());
            }
        }
        for (&va, &f) in &self.pages {
            if self.vpt.lookup(&self.ram, va).is_some_and(|e| e.valid()) {
                continue;
            }
            if self.find(va).is_some_and(|(_, v)| v.shm.is_some()) {
                // Shared memory stays shared, even PROT_NONE.
                fr.share(f);
                continue;
            }
            let nf = fr.alloc(&self.ram)?;
            let mut buf = vec![0u8; usize::try_from(PAGE).expect("a page fits in memory")];
            self.ram
                .read(f, &mut buf)
                .and_then(|_| self.ram.write(nf, &buf))
                .map_err(|_| MmError::Fault(va))?;
            pages.insert(va, nf);
        }
        drop(fr);
        // The parent's writable hardware entries are stale now.
        self.vms
            .mcontrol(USER_START, USER_END - USER_START, Mcontrol::WriteProtect)?;
        let vms = Arc::new(vms);
        vms.mmap(USER_START, USER_END - USER_START, Backing::PageTable)?;
        vms.mcontrol(
            USER_START,
            USER_END - USER_START,
            Mcontrol::SetMap { root: cvpt.root() },
        )?;
        vms.set_fault_around(MAX_WINDOW.max(self.fault_around));
        // The child starts with the parent's working set installed.
        vms.populate_like(&self.vms, USER_START, USER_END)?;
        Ok(Mm {
            ram: self.ram.clone(),
            frames: self.frames.clone(),
            cache: self.cache.clone(),
            vpt: cvpt,
            vms,
            vmas: self.vmas.clone(),
            pages,
            large: self.large.clone(),
            large_file: self.large_file.clone(),
            large_pages: self.large_pages,
            brk_start: self.brk_start,
            brk: self.brk,
            auxv: self.auxv.clone(),
            fault_around: self.fault_around,
            sweep: (0, self.fault_around),
            stats: MmStats::default(),
            patch: self.patch.clone(),
        })
    }

    /// The pages fork copies at once instead of sharing copy-on-write: the
    /// writable pages the parent has modified, when there are at most
    /// [`EAGER_FORK_MAX`] (a shell's data, heap and stack); otherwise only
    /// the modified pages at the top of the stack, which both sides write
    /// first. Copying a page costs about a microsecond; the copy-on-write
    /// fault it replaces costs a trap to the vkernel on each side.
    fn eager_fork_pages(&self) -> Vec<u64> {
        let mut dirty = Vec::new();
        self.vpt
            .for_each_leaf(&self.ram, USER_START, USER_END, &mut |va, _, e| {
                if e.valid()
                    && e.writable()
                    && e.modified()
                    && !e.large()
                    && e.bits() & Vpte::SHARED == 0
                {
                    dirty.push(va);
                }
            });
        if dirty.len() > EAGER_FORK_MAX {
            let stack_top = STACK_TOP - EAGER_FORK_STACK * PAGE;
            dirty.retain(|&va| (stack_top..STACK_TOP).contains(&va));
        }
        dirty
    }

    /// Drop every page and table (the vmspace keeps pointing at the old
    /// root until [`Mm::reset`] or the end).
    fn release(&mut self) {
        // Shared file pages reach their files (exit, exec).
        let _ = self.write_back(USER_START, USER_END);
        let pages = std::mem::take(&mut self.pages);
        let large = std::mem::take(&mut self.large);
        let large_file = std::mem::take(&mut self.large_file);
        let mut fr = self.fr();
        for f in pages.into_values() {
            fr.free(f);
        }
        for (base, b) in large {
            free_block(&mut fr, b, large_file.contains(&base));
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
        self.auxv = Arc::from(&[][..]);
        self.sweep = (0, self.fault_around);
        self.patch = Default::default();
        // New hardware tables: cheaper than invalidating every entry.
        self.vms.reset_hw()?;
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
        self.pages.len() + self.large.len() * (crate::core::vptable::LARGE / PAGE) as usize
    }
}

impl Drop for Mm {
    fn drop(&mut self) {
        // Detach the vpagetable first: the vmspace may outlive this Mm
        // (shared for statistics), and its tables go back to the allocator.
        // The process is gone: its hardware tables go back to the pool
        // whole (the reusable ones parked) instead of entry by entry.
        let _ = self.vms.retire();
        self.release();
    }
}
