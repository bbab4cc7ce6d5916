//! Vmspaces: hardware-isolated address spaces governed by vpagetables.
//!
//! The verbs are the seed's (DragonFly's `vmspace_*` calls): [`Vmspace::mmap`],
//! [`Vmspace::munmap`], [`Vmspace::mcontrol`] with [`Mcontrol::SetMap`] and
//! [`Mcontrol::Inval`], and [`crate::cpu::Cpu::run`] for `VMSPACE_CTL_RUN`.
//! Destroying a vmspace (explicitly or by dropping it) frees its hardware
//! page tables.
//!
//! ```no_run
//! use vkernel_core::{machine::Machine, vmspace::{Backing, Mcontrol}};
//! let m = Machine::builder().build()?;
//! let vms = m.vmspace_create()?;
//! vms.mmap(0x40_0000, 0x10_0000, Backing::PageTable)?;
//! vms.mcontrol(0x40_0000, 0x10_0000, Mcontrol::SetMap { root: 0x1000 })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use vkernel_guest::layout::PAGE_SIZE;
use vkernel_guest::x86::{PTE_A, PTE_ADDR_MASK, PTE_D, PTE_NX, PTE_P, PTE_U, PTE_W, USER_END};

use crate::hwpt::{Cmd, HwSpace, Installed, PoolError, Rewrite, RewriteHow};
use crate::machine::MachineInner;
use crate::vpte::{index, Vpte};
use crate::walk_range::{walk_range, Leaf, Leaves, VpTables};
use crate::walker::{walk, Access, Emulate, FaultReason, Translation};

mod accessed;
mod populate;
mod tables;

/// Errors of vmspace calls. A call that fails changes nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum VmspaceError {
    /// Address or length not page aligned.
    #[error("address {addr:#x} or length {len:#x} is not 4 KiB aligned")]
    Unaligned {
        /// Address.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// Zero length.
    #[error("length is zero")]
    ZeroLength,
    /// Range outside the user half of the address space.
    #[error("range {addr:#x}+{len:#x} is outside the user address space [0, {USER_END:#x})")]
    OutOfRange {
        /// Address.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// The range overlaps an existing mapping.
    #[error("range {addr:#x}+{len:#x} overlaps the mapping at {existing:#x}")]
    Overlap {
        /// Address.
        addr: u64,
        /// Length.
        len: u64,
        /// Start of the mapping it overlaps.
        existing: u64,
    },
    /// A linear mapping's RAM range or a vpagetable root is outside RAM.
    #[error("guest-physical range {gpa:#x}+{len:#x} is outside RAM ({ram_size:#x} bytes)")]
    OutsideRam {
        /// Guest-physical address.
        gpa: u64,
        /// Length.
        len: u64,
        /// RAM size.
        ram_size: u64,
    },
    /// Part of the range is not mapped, or is mapped with the wrong kind.
    #[error("range {addr:#x}+{len:#x} is not fully covered by vpagetable mappings")]
    NotPageTable {
        /// Address.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// No hardware page-table page is left.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The vmspace belongs to another machine.
    #[error("the vmspace belongs to another machine")]
    WrongMachine,
}

bitflags::bitflags! {
    /// Access a linear mapping permits.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Prot: u8 {
        /// Readable.
        const READ = 1;
        /// Writable (implies readable on x86).
        const WRITE = 2;
        /// Executable.
        const EXEC = 4;
        /// Read, write, execute.
        const RWX = 7;
        /// Read and write.
        const RW = 3;
        /// Read and execute.
        const RX = 5;
    }
}

impl Prot {
    /// Does this allow `a`? Any permission allows reads (x86 cannot map a
    /// page writable or executable but unreadable).
    pub fn allows(self, a: Access) -> bool {
        match a {
            Access::Read => !self.is_empty(),
            Access::Write => self.contains(Prot::WRITE),
            Access::Execute => self.contains(Prot::EXEC),
        }
    }
}

/// What backs a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Translated through a vpagetable (set its root with
    /// [`Mcontrol::SetMap`]); the seed's `MAP_VPAGETABLE`.
    PageTable,
    /// Mapped linearly onto RAM starting at `gpa`, with `prot`.
    Linear {
        /// Guest-physical start in RAM (4 KiB aligned).
        gpa: u64,
        /// Permitted access.
        prot: Prot,
    },
}

/// `mcontrol` operations (the seed's `madvise` extensions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mcontrol {
    /// Set the vpagetable root (guest-physical, 4 KiB aligned, in RAM) of the
    /// range, which must be covered by [`Backing::PageTable`] mappings.
    SetMap {
        /// Root table (level 4) address.
        root: u64,
    },
    /// Drop hardware mappings for the range after the vkernel edited VPTEs.
    Inval,
    /// The vkernel took write permission away from VPTEs in the range and
    /// changed nothing else (fork's copy-on-write): writable hardware
    /// entries become read-only, read-only ones stay, so the vproc refaults
    /// none of the pages it only reads.
    WriteProtect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    PageTable { root: Option<u64> },
    Linear { gpa: u64, prot: Prot },
}

#[derive(Clone, Copy, Debug)]
struct Region {
    end: u64,
    kind: Kind,
}

/// Counters of one vmspace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmspaceStats {
    /// Faults resolved from the vpagetable (or a linear mapping) without a
    /// trap to the vkernel.
    pub resolved_faults: u64,
    /// Hardware entries installed (faulting pages and their neighbours).
    pub installed: u64,
    /// Hardware entries removed.
    pub invalidated: u64,
    /// 2 MiB hardware entries installed (a large VPTE over a whole
    /// window of the mapping): each maps 512 pages in one go.
    pub large_installed: u64,
    /// Last-level tables of a finished address space taken over by
    /// [`Vmspace::populate`] or [`Vmspace::populate_like`] (see
    /// `hwpt::park`): their shadows on a shadow MMU came with them.
    pub tables_adopted: u64,
    /// Entries of adopted tables that stayed as they were (each one a page
    /// the vproc can touch without a shadow fault).
    pub entries_kept: u64,
}

pub(crate) struct VmState {
    regions: BTreeMap<u64, Region>,
    pub(crate) hw: Option<HwSpace>,
    /// Commands that must run in the guest before this vmspace runs again.
    pub(crate) pending: Vec<Cmd>,
    /// Bumped whenever mappings were removed: vCPUs that saw an older value
    /// flush their TLB before running this vmspace.
    pub(crate) gen: u64,
    /// vCPUs running this vmspace right now (bit per vCPU).
    pub(crate) running: u64,
    /// System-region offset of the exitless request page (mapped at
    /// `SLOT_VA`), where exitless syscalls are on and KVM keeps CPL3 across
    /// `syscall`.
    pub(crate) slot: Option<u64>,
    fault_around: u64,
    pub(crate) stats: VmspaceStats,
}

pub(crate) struct VmShared {
    pub(crate) machine: Arc<MachineInner>,
    pub(crate) id: u64,
    pub(crate) state: Mutex<VmState>,
}

/// A vmspace. Dropping it destroys it.
pub struct Vmspace {
    pub(crate) shared: Arc<VmShared>,
}

impl std::fmt::Debug for Vmspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vmspace")
            .field("id", &self.shared.id)
            .finish()
    }
}

/// Default number of pages installed around a resolved fault.
pub const DEFAULT_FAULT_AROUND: u64 = 16;

/// Bytes a level-2 (2 MiB) leaf maps.
const LARGE: u64 = crate::ram::LARGE_PAGE;

/// Pages of every vmspace that are the machine's (the trampoline and the
/// exitless request page): their windows' tables are never parked.
const MACHINE_PAGES: [u64; 2] = [
    vkernel_guest::layout::TRAMP_VA,
    vkernel_guest::layout::SLOT_VA,
];

fn check_range(addr: u64, len: u64) -> Result<u64, VmspaceError> {
    if len == 0 {
        return Err(VmspaceError::ZeroLength);
    }
    if !addr.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(VmspaceError::Unaligned { addr, len });
    }
    match addr.checked_add(len) {
        Some(end) if end <= USER_END => Ok(end),
        _ => Err(VmspaceError::OutOfRange { addr, len }),
    }
}

impl Vmspace {
    pub(crate) fn create(machine: Arc<MachineInner>) -> Result<Vmspace, VmspaceError> {
        let mut pool = machine.pool.lock().unwrap();
        // The request page is the StaysInUserMode path's; where `syscall`
        // enters CPL0 each vCPU's line is in the system region.
        let slot = match machine.exitless {
            Some(_) if machine.path == crate::machine::TrapPath::StaysInUserMode => {
                Some(pool.alloc()?)
            }
            _ => None,
        };
        let hw = match new_hw(&machine, &mut pool, slot) {
            Ok(hw) => hw,
            Err(e) => {
                if let Some(p) = slot {
                    pool.release(&[p]);
                }
                return Err(e.into());
            }
        };
        drop(pool);
        let id = machine.new_vmspace_id();
        Ok(Vmspace {
            shared: Arc::new(VmShared {
                machine,
                id,
                state: Mutex::new(VmState {
                    regions: BTreeMap::new(),
                    hw: Some(hw),
                    pending: Vec::new(),
                    gen: 0,
                    running: 0,
                    slot,
                    fault_around: DEFAULT_FAULT_AROUND,
                    stats: VmspaceStats::default(),
                }),
            }),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, VmState> {
        self.shared.state.lock().unwrap()
    }

    /// Unique id of this vmspace within its machine.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// Map `[addr, addr+len)` (the seed's `vmspace_mmap`).
    pub fn mmap(&self, addr: u64, len: u64, backing: Backing) -> Result<(), VmspaceError> {
        let end = check_range(addr, len)?;
        let kind = match backing {
            Backing::PageTable => Kind::PageTable { root: None },
            Backing::Linear { gpa, prot } => {
                let ram_size = self.shared.machine.ram.size();
                if gpa % PAGE_SIZE != 0 {
                    return Err(VmspaceError::Unaligned { addr: gpa, len });
                }
                if gpa.checked_add(len).is_none_or(|e| e > ram_size) {
                    return Err(VmspaceError::OutsideRam { gpa, len, ram_size });
                }
                Kind::Linear { gpa, prot }
            }
        };
        let mut st = self.lock();
        if let Some((&s, _)) = st
            .regions
            .range(..end)
            .next_back()
            .filter(|(_, r)| r.end > addr)
        {
            return Err(VmspaceError::Overlap {
                addr,
                len,
                existing: s,
            });
        }
        st.regions.insert(addr, Region { end, kind });
        Ok(())
    }

    /// Unmap `[addr, addr+len)` (the seed's `vmspace_munmap`): the parts of
    /// any mappings inside the range go away and their hardware entries are
    /// invalidated before the vmspace runs again. Unmapping a hole is not an
    /// error, as with munmap(2).
    pub fn munmap(&self, addr: u64, len: u64) -> Result<(), VmspaceError> {
        let end = check_range(addr, len)?;
        let mut st = self.lock();
        split_at(&mut st.regions, addr);
        split_at(&mut st.regions, end);
        let keys: Vec<u64> = st.regions.range(addr..end).map(|(k, _)| *k).collect();
        for k in keys {
            st.regions.remove(&k);
        }
        self.invalidate_locked(&mut st, addr, end, Rewrite::Remove);
        Ok(())
    }

    /// Control a range (the seed's `vmspace_mcontrol`).
    pub fn mcontrol(&self, addr: u64, len: u64, op: Mcontrol) -> Result<(), VmspaceError> {
        let end = check_range(addr, len)?;
        let mut st = self.lock();
        match op {
            Mcontrol::SetMap { root } => {
                let ram_size = self.shared.machine.ram.size();
                if root % PAGE_SIZE != 0 {
                    return Err(VmspaceError::Unaligned {
                        addr: root,
                        len: PAGE_SIZE,
                    });
                }
                if root.checked_add(PAGE_SIZE).is_none_or(|e| e > ram_size) {
                    return Err(VmspaceError::OutsideRam {
                        gpa: root,
                        len: PAGE_SIZE,
                        ram_size,
                    });
                }
                // Validate coverage before changing anything.
                let mut cur = addr;
                while cur < end {
                    match st.regions.range(..=cur).next_back() {
                        Some((_, r)) if r.end > cur && matches!(r.kind, Kind::PageTable { .. }) => {
                            cur = r.end
                        }
                        _ => return Err(VmspaceError::NotPageTable { addr, len }),
                    }
                }
                split_at(&mut st.regions, addr);
                split_at(&mut st.regions, end);
                for (_, r) in st.regions.range_mut(addr..end) {
                    r.kind = Kind::PageTable { root: Some(root) };
                }
                self.invalidate_locked(&mut st, addr, end, Rewrite::Remove);
            }
            Mcontrol::Inval => self.invalidate_locked(&mut st, addr, end, Rewrite::Remove),
            Mcontrol::WriteProtect => {
                self.invalidate_locked(&mut st, addr, end, Rewrite::WriteProtect)
            }
        }
        Ok(())
    }

    /// Number of pages installed around a resolved fault (default 16; 1
    /// installs only the faulting page). Neighbours are installed with the
    /// hardware accessed bit clear, so [`Vmspace::harvest_accessed`] can tell
    /// which of them were really used.
    pub fn set_fault_around(&self, pages: u64) {
        self.lock().fault_around = pages.clamp(1, 512);
    }

    /// Counters.
    pub fn stats(&self) -> VmspaceStats {
        self.lock().stats
    }

    /// The mappings, as (start, end, backing); vpagetable roots are in
    /// [`Vmspace::root_of`].
    pub fn mappings(&self) -> Vec<(u64, u64, Backing)> {
        self.lock()
            .regions
            .iter()
            .map(|(s, r)| {
                let b = match r.kind {
                    Kind::PageTable { .. } => Backing::PageTable,
                    Kind::Linear { gpa, prot } => Backing::Linear { gpa, prot },
                };
                (*s, r.end, b)
            })
            .collect()
    }

    /// The vpagetable root governing `va`, if any.
    pub fn root_of(&self, va: u64) -> Option<u64> {
        let st = self.lock();
        match find(&st.regions, va)?.1.kind {
            Kind::PageTable { root } => root,
            Kind::Linear { .. } => None,
        }
    }

    /// Translate `va` for `access` without changing anything (a debugger's
    /// walk). Returns the guest-physical address.
    pub fn translate(&self, va: u64, access: Access) -> Result<u64, FaultReason> {
        let st = self.lock();
        let (frame, _) = self.translate_locked(&st, va, access, Emulate::No)?;
        Ok(frame + (va & 0xFFF))
    }

    /// Walk the vpagetable for `va` without changing anything.
    pub fn walk(&self, va: u64) -> Result<Translation, FaultReason> {
        let root = self.root_of(va).ok_or(FaultReason::NoPageTable)?;
        walk(
            &self.shared.machine.ram,
            root,
            va,
            Access::Read,
            Emulate::No,
        )
    }

    /// Copy bytes out of the vproc's memory at `va`, through its vpagetable,
    /// as a user read would (sets A). Fails on the first page a user read
    /// could not access.
    pub fn copy_from_user(
        &self,
        va: u64,
        buf: &mut [u8],
    ) -> Result<(), crate::uaccess::UaccessError> {
        crate::uaccess::copy(self, va, buf.len(), Access::Read, |gpa, off, n| {
            self.shared.machine.ram.read(gpa, &mut buf[off..off + n])
        })
    }

    /// Copy bytes into the vproc's memory at `va`, as a user write would
    /// (sets A and M). Fails on the first page a user write could not
    /// access; earlier pages have been written, as with copyout(9).
    pub fn copy_to_user(&self, va: u64, buf: &[u8]) -> Result<(), crate::uaccess::UaccessError> {
        crate::uaccess::copy(self, va, buf.len(), Access::Write, |gpa, off, n| {
            self.shared.machine.ram.write(gpa, &buf[off..off + n])
        })
    }

    /// Translate one page for a user access; emulates A/M when asked.
    /// Returns (frame, hardware flags).
    pub(crate) fn translate_locked(
        &self,
        st: &VmState,
        va: u64,
        access: Access,
        emulate: Emulate,
    ) -> Result<(u64, u64), FaultReason> {
        self.translate_full(st, va, access, emulate)
            .map(|(frame, flags, _)| (frame, flags))
    }

    /// [`Vmspace::translate_locked`], plus the 2 MiB frame when a level-2
    /// (2 MiB) VPTE maps `va` and the mapping covers its whole aligned
    /// window: then one 2 MiB hardware entry may map the window.
    fn translate_full(
        &self,
        st: &VmState,
        va: u64,
        access: Access,
        emulate: Emulate,
    ) -> Result<(u64, u64, Option<u64>), FaultReason> {
        if va >= USER_END || self.is_slot(st, va) {
            return Err(FaultReason::NotUser);
        }
        if let Some((start, r)) = find(&st.regions, va) {
            if let Kind::PageTable { root: Some(root) } = r.kind {
                let t = walk(&self.shared.machine.ram, root, va, access, emulate)?;
                let mut f = PTE_P | PTE_U | PTE_A;
                if t.writable && t.vpte.modified() {
                    f |= PTE_W | PTE_D;
                }
                if !t.executable {
                    f |= PTE_NX;
                }
                let base = va & !(LARGE - 1);
                let large =
                    (t.level == 2 && start <= base && self.covers(st, r.end, base + LARGE, root))
                        .then(|| t.frame - ((va & (LARGE - 1)) & !0xFFF));
                return Ok((t.frame, f, large));
            }
        }
        self.translate_small(st, va, access, emulate)
            .map(|(frame, f)| (frame, f, None))
    }

    /// Is `va` in the exitless request page (the machine's, never the
    /// vpagetable's)?
    fn is_slot(&self, st: &VmState, va: u64) -> bool {
        st.slot.is_some() && va & !0xFFF == vkernel_guest::layout::SLOT_VA
    }

    /// Do regions with vpagetable `root` run on from `end` up to `want`?
    fn covers(&self, st: &VmState, mut end: u64, want: u64, root: u64) -> bool {
        while end < want {
            match st.regions.get(&end) {
                Some(r) if r.kind == (Kind::PageTable { root: Some(root) }) => end = r.end,
                _ => return false,
            }
        }
        true
    }

    fn translate_small(
        &self,
        st: &VmState,
        va: u64,
        access: Access,
        emulate: Emulate,
    ) -> Result<(u64, u64), FaultReason> {
        if va >= USER_END || self.is_slot(st, va) {
            return Err(FaultReason::NotUser);
        }
        let (start, r) = find(&st.regions, va).ok_or(FaultReason::NoRegion)?;
        match r.kind {
            Kind::PageTable { root: None } => Err(FaultReason::NoPageTable),
            Kind::PageTable { root: Some(root) } => {
                let t = walk(&self.shared.machine.ram, root, va, access, emulate)?;
                let mut f = PTE_P | PTE_U | PTE_A;
                if t.writable && t.vpte.modified() {
                    f |= PTE_W | PTE_D;
                }
                if !t.executable {
                    f |= PTE_NX;
                }
                Ok((t.frame, f))
            }
            Kind::Linear { gpa, prot } => {
                if !prot.allows(access) {
                    return Err(FaultReason::Protection);
                }
                Ok((gpa + ((va & !0xFFF) - start), linear_flags(prot) | PTE_A))
            }
        }
    }

    /// Resolve a user fault at `addr` without the vkernel: walk, emulate A/M,
    /// install the hardware entry and its valid neighbours.
    pub(crate) fn resolve(
        &self,
        addr: u64,
        access: Access,
        cmds: &mut Vec<Cmd>,
    ) -> Result<(), FaultReason> {
        let mut st = self.lock();
        let page = addr & !0xFFF;
        let (frame, flags, large) =
            self.translate_full(&st, page, access, Emulate::AccessedModified)?;
        let upgrade_ok = st.pending.is_empty();
        let mut pool = self.shared.machine.pool.lock().unwrap();
        let st = &mut *st;
        let hw = st.hw.as_mut().expect("a live vmspace has tables");
        if let Some(big) = large {
            // One 2 MiB entry for the whole window: no fault-around needed.
            let base = page & !(LARGE - 1);
            match hw.install_large(&mut pool, base, big | flags, upgrade_ok, cmds) {
                Ok(Installed::Blocked) => {}
                Ok(Installed::Same) => {
                    cmds.push(vkernel_guest::abi::cmd(
                        vkernel_guest::abi::CMD_INVLPG,
                        page,
                        0,
                    ));
                    st.stats.resolved_faults += 1;
                    return Ok(());
                }
                Ok(_) => {
                    st.stats.installed += 1;
                    st.stats.large_installed += 1;
                    st.stats.resolved_faults += 1;
                    return Ok(());
                }
                Err(_) => return Err(FaultReason::NotValid { level: 2 }),
            }
        }
        let res = hw.install(&mut pool, page, frame | flags, upgrade_ok, cmds);
        match res {
            Ok(Installed::Same) => {
                // The entry was already right: a stale TLB entry. Flush it.
                cmds.push(vkernel_guest::abi::cmd(
                    vkernel_guest::abi::CMD_INVLPG,
                    page,
                    0,
                ));
            }
            Ok(_) => st.stats.installed += 1,
            Err(_) => return Err(FaultReason::NotValid { level: 1 }),
        }
        st.stats.resolved_faults += 1;
        // Fault-around: valid neighbours in the same aligned window.
        let n = st.fault_around;
        if n > 1 {
            let (wstart, r) = find(&st.regions, page).map(|(s, r)| (s, *r)).unwrap();
            let win = n * PAGE_SIZE;
            let lo = (page / win * win).max(wstart);
            let hi = (page / win * win + win).min(r.end);
            let ram = &self.shared.machine.ram;
            // For a vpagetable region, read the neighbours from the same leaf table.
            let leaf = match r.kind {
                Kind::PageTable { root: Some(root) } => {
                    walk(ram, root, page, Access::Read, Emulate::No).ok()
                }
                _ => None,
            };
            let mut va = lo;
            while va < hi {
                if va != page && hw.leaf(&pool, va) == 0 {
                    let entry = match (r.kind, leaf) {
                        (Kind::Linear { gpa, prot }, _) => {
                            Some((gpa + (va - wstart)) | linear_flags(prot))
                        }
                        (Kind::PageTable { .. }, Some(t)) => neighbour(ram, &t, page, va),
                        _ => None,
                    };
                    if let Some(e) = entry {
                        if let Ok(Installed::Direct) = hw.install(&mut pool, va, e, false, cmds) {
                            st.stats.installed += 1;
                        }
                    }
                }
                va += PAGE_SIZE;
            }
        }
        Ok(())
    }

    fn invalidate_locked(&self, st: &mut VmState, start: u64, end: u64, how: Rewrite) {
        let pool = self.shared.machine.pool.lock().unwrap();
        let Some(hw) = &st.hw else { return };
        let mut cmds = Vec::new();
        // Write protection spares the pages the vkernel left writable (a
        // fork that gave the child its own copy of them).
        let still_writable = |va: u64, cur: u64| {
            how == Rewrite::WriteProtect
                && self
                    .translate_locked(st, va, Access::Read, Emulate::No)
                    .is_ok_and(|(frame, f)| f & PTE_W != 0 && frame == cur & PTE_ADDR_MASK)
        };
        let tramp_table = (self.shared.machine.path == crate::machine::TrapPath::StaysInUserMode)
            .then(|| hw.leaf_off(&pool, vkernel_guest::layout::TRAMP_VA))
            .flatten()
            .map(|off| off & !(PAGE_SIZE - 1));
        let spec = RewriteHow {
            how,
            keep: &still_writable,
            no_zap: tramp_table,
            pinned: st.slot.map(|_| vkernel_guest::layout::SLOT_VA),
        };
        let n = hw.rewrite_range(&pool, start, end, &spec, &mut cmds);
        drop(pool);
        if n > 0 {
            st.pending.extend(cmds);
            st.gen += 1;
            st.stats.invalidated += n as u64;
            // vCPUs running this vmspace right now must stop and flush.
            for (i, k) in self.shared.machine.kickers.iter().enumerate() {
                if st.running & (1 << i) != 0 {
                    k.kick();
                }
            }
        }
    }

    /// Destroy the vmspace (the seed's `vmspace_destroy`): its mappings go
    /// away and its hardware page tables return to the pool (after the guest
    /// scrubbed them).
    pub fn destroy(self) {
        drop(self)
    }
}

impl Drop for Vmspace {
    fn drop(&mut self) {
        let mut st = self.lock();
        st.regions.clear();
        let mut pool = self.shared.machine.pool.lock().unwrap();
        let park = st.pending.is_empty();
        if let Some(hw) = st.hw.take() {
            pool.release_space(&hw, &MACHINE_PAGES, park);
        }
        if let Some(p) = st.slot.take() {
            pool.release(&[p]);
        }
    }
}

/// Hardware entry for a fault-around neighbour `va` of `page`, read from the
/// same vpagetable leaf (or large page) without touching its A/M bits.
fn neighbour(ram: &crate::ram::Ram, t: &Translation, page: u64, va: u64) -> Option<u64> {
    if !t.upper_user {
        return None;
    }
    let (frame, e) = if t.level == 1 {
        let gpa = t.leaf_gpa - 8 * index(page, 1) as u64 + 8 * index(va, 1) as u64;
        let e = Vpte(ram.load(gpa).ok()?);
        if !e.valid() || e.large() || !ram.contains(e.frame(), PAGE_SIZE) {
            return None;
        }
        (e.frame(), e)
    } else {
        let size = crate::vpte::level_size(t.level);
        if (va & !(size - 1)) != (page & !(size - 1)) {
            return None;
        }
        let base = t.frame - ((page & (size - 1)) & !0xFFF);
        let e = Vpte(ram.load(t.leaf_gpa).ok()?);
        (base + (va & (size - 1)), e)
    };
    if !e.user() {
        return None;
    }
    let mut f = PTE_P | PTE_U;
    if t.upper_writable && e.writable() && e.modified() {
        f |= PTE_W | PTE_D;
    }
    if !t.upper_executable || e.no_exec() {
        f |= PTE_NX;
    }
    Some((frame & PTE_ADDR_MASK) | f)
}

/// Hardware flags of a linear mapping's page (the accessed bit aside).
fn linear_flags(prot: Prot) -> u64 {
    let mut f = PTE_P | PTE_U;
    if prot.allows(Access::Write) {
        f |= PTE_W | PTE_D;
    }
    if !prot.allows(Access::Execute) {
        f |= PTE_NX;
    }
    f
}

/// Empty hardware tables for a vmspace: the shared upper half, and the
/// trampoline page where the host's KVM keeps CPL3 across `syscall`.
fn new_hw(
    machine: &MachineInner,
    pool: &mut crate::hwpt::PtPool,
    slot: Option<u64>,
) -> Result<HwSpace, PoolError> {
    let mut hw = pool.new_space()?;
    let mut fixed = Vec::new();
    if machine.path == crate::machine::TrapPath::StaysInUserMode {
        fixed.push((
            vkernel_guest::layout::TRAMP_VA,
            crate::machine::tramp_entry(machine.sys_gpa),
        ));
    }
    if let Some(p) = slot {
        // The exitless request page: user read/write, never executable.
        let e = (machine.sys_gpa + p) | PTE_P | PTE_U | PTE_W | PTE_A | PTE_D | PTE_NX;
        fixed.push((vkernel_guest::layout::SLOT_VA, e));
    }
    for (va, e) in fixed {
        if let Err(err) = hw.install(pool, va, e, false, &mut Vec::new()) {
            pool.release(hw.pages());
            return Err(err);
        }
    }
    Ok(hw)
}

fn find(regions: &BTreeMap<u64, Region>, va: u64) -> Option<(u64, &Region)> {
    regions
        .range(..=va)
        .next_back()
        .filter(|(_, r)| r.end > va)
        .map(|(s, r)| (*s, r))
}

/// Split the region containing `at` (strictly inside) in two.
fn split_at(regions: &mut BTreeMap<u64, Region>, at: u64) {
    let Some((&s, &r)) = regions.range(..at).next_back() else {
        return;
    };
    if r.end <= at {
        return;
    }
    let tail_kind = match r.kind {
        Kind::Linear { gpa, prot } => Kind::Linear {
            gpa: gpa + (at - s),
            prot,
        },
        k => k,
    };
    regions.get_mut(&s).unwrap().end = at;
    regions.insert(
        at,
        Region {
            end: r.end,
            kind: tail_kind,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_linear_offsets() {
        let mut m = BTreeMap::new();
        m.insert(
            0x1000,
            Region {
                end: 0x5000,
                kind: Kind::Linear {
                    gpa: 0x10000,
                    prot: Prot::RW,
                },
            },
        );
        split_at(&mut m, 0x3000);
        split_at(&mut m, 0x3000);
        split_at(&mut m, 0x9000);
        assert_eq!(m.len(), 2);
        assert_eq!(m[&0x1000].end, 0x3000);
        assert_eq!(
            m[&0x3000].kind,
            Kind::Linear {
                gpa: 0x12000,
                prot: Prot::RW
            }
        );
        assert!(find(&m, 0x4fff).is_some());
        assert!(find(&m, 0x5000).is_none());
        assert!(find(&m, 0xfff).is_none());
    }

    #[test]
    fn range_checks() {
        assert_eq!(check_range(0, 0), Err(VmspaceError::ZeroLength));
        assert!(matches!(
            check_range(1, 4096),
            Err(VmspaceError::Unaligned { .. })
        ));
        assert!(matches!(
            check_range(0, 4095),
            Err(VmspaceError::Unaligned { .. })
        ));
        assert!(matches!(
            check_range(USER_END - 4096, 8192),
            Err(VmspaceError::OutOfRange { .. })
        ));
        assert!(matches!(
            check_range(!0xfff, 4096),
            Err(VmspaceError::OutOfRange { .. })
        ));
        assert_eq!(check_range(USER_END - 4096, 4096), Ok(USER_END));
    }
}
