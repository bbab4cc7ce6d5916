//! The vpagetable walker: resolves a virtual address the way the MMU would.
//!
//! Given the root of a vpagetable in RAM, [`walk`] reads one entry per level,
//! checks each against RAM bounds and the requested access, and, when asked,
//! emulates the accessed and modified bits with compare-and-exchange (the
//! vkernel may edit entries concurrently: a lost race restarts the walk).
//! Anything the table cannot satisfy comes back as a [`FaultReason`]; the
//! walker never panics on garbage.

use crate::ram::Ram;
use crate::vpte::{index, level_size, Vpte};

/// Kind of memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Data read.
    Read,
    /// Data write.
    Write,
    /// Instruction fetch.
    Execute,
}

/// Why an access cannot be satisfied from the vpagetable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FaultReason {
    /// No vmspace region covers the address.
    #[error("no mapping covers the address")]
    NoRegion,
    /// The region has no vpagetable root yet (no SETMAP).
    #[error("the region has no vpagetable (SETMAP not done)")]
    NoPageTable,
    /// An entry on the path is not valid.
    #[error("entry not valid at level {level}")]
    NotValid {
        /// Level of the invalid entry (4 = root).
        level: u8,
    },
    /// The entries are valid but forbid the access.
    #[error("access not permitted")]
    Protection,
    /// A table or frame lies outside RAM.
    #[error("entry at level {level} points outside RAM ({gpa:#x})")]
    OutsideRam {
        /// Level of the offending entry.
        level: u8,
        /// The address it points at.
        gpa: u64,
    },
    /// An entry is malformed (large page at the root, misaligned large frame).
    #[error("malformed entry at level {level}")]
    Malformed {
        /// Level of the offending entry.
        level: u8,
    },
    /// The address is not a user address.
    #[error("address outside the user half")]
    NotUser,
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Guest-physical address of the 4 KiB frame that holds the address.
    pub frame: u64,
    /// Guest-physical address of the leaf VPTE.
    pub leaf_gpa: u64,
    /// The leaf VPTE (after A/M were set, if requested).
    pub vpte: Vpte,
    /// Level of the leaf: 1 (4 KiB), 2 (2 MiB) or 3 (1 GiB).
    pub level: u8,
    /// Effective write permission over all levels.
    pub writable: bool,
    /// Effective execute permission over all levels.
    pub executable: bool,
    /// Write permission of the levels above the leaf.
    pub upper_writable: bool,
    /// User permission of the levels above the leaf.
    pub upper_user: bool,
    /// Execute permission of the levels above the leaf.
    pub upper_executable: bool,
}

/// Whether the walk emulates accessed/modified bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulate {
    /// Set A on every level and M on the leaf for a write, like hardware.
    AccessedModified,
    /// Only look.
    No,
}

const RETRIES: usize = 16;

/// Walk the vpagetable rooted at `root` (guest-physical, 4 KiB aligned) for
/// a user `access` to `va`.
///
/// ```
/// use vkernel_core::{ram::Ram, vpte::Vpte, walker::*};
/// let ram = Ram::anonymous(1 << 20).unwrap();
/// // root 0x1000 -> 0x2000 -> 0x3000 -> 0x4000 -> frame 0x8000 for va 0
/// for (t, next) in [(0x1000, 0x2000), (0x2000, 0x3000), (0x3000, 0x4000), (0x4000, 0x8000)] {
///     ram.store(t, Vpte::page(next, Vpte::RW | Vpte::U).bits()).unwrap();
/// }
/// let t = walk(&ram, 0x1000, 0x10, Access::Write, Emulate::AccessedModified).unwrap();
/// assert_eq!(t.frame, 0x8000);
/// assert!(t.vpte.modified() && t.vpte.accessed());
/// ```
pub fn walk(
    ram: &Ram,
    root: u64,
    va: u64,
    access: Access,
    emulate: Emulate,
) -> Result<Translation, FaultReason> {
    if va >= vkernel_guest::x86::USER_END {
        return Err(FaultReason::NotUser);
    }
    for _ in 0..RETRIES {
        match walk_once(ram, root, va, access, emulate) {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => continue, // lost a race with a concurrent edit
            Err(e) => return Err(e),
        }
    }
    // Entries keep changing under us; report it like an invalid entry.
    Err(FaultReason::NotValid { level: 4 })
}

fn walk_once(
    ram: &Ram,
    root: u64,
    va: u64,
    access: Access,
    emulate: Emulate,
) -> Result<Option<Translation>, FaultReason> {
    let mut table = root;
    let mut writable = true;
    let mut user = true;
    let mut executable = true;
    for level in (1..=4u8).rev() {
        let (upper_writable, upper_user, upper_executable) = (writable, user, executable);
        if !table.is_multiple_of(4096) {
            return Err(FaultReason::Malformed { level });
        }
        if !ram.contains(table, 4096) {
            // Blame the entry that pointed here (the root counts as level 4).
            return Err(FaultReason::OutsideRam {
                level: (level + 1).min(4),
                gpa: table,
            });
        }
        let gpa = table + 8 * index(va, level) as u64;
        let e = Vpte(
            ram.load(gpa)
                .map_err(|_| FaultReason::OutsideRam { level, gpa })?,
        );
        if !e.valid() {
            return Err(FaultReason::NotValid { level });
        }
        writable &= e.writable();
        user &= e.user();
        executable &= !e.no_exec();
        let leaf = level == 1 || e.large();
        if leaf {
            // The one rule for leaves, shared with every range walk.
            if !crate::walk_range::leaf_shape_ok(level, e.frame()) {
                return Err(FaultReason::Malformed { level });
            }
            let size = level_size(level);
            if !ram.contains(e.frame(), size) {
                return Err(FaultReason::OutsideRam {
                    level,
                    gpa: e.frame(),
                });
            }
            let allowed = user
                && match access {
                    Access::Read => true,
                    Access::Write => writable,
                    Access::Execute => executable,
                };
            if !allowed {
                return Err(FaultReason::Protection);
            }
            let mut new = e.with(Vpte::A);
            if access == Access::Write {
                new = new.with(Vpte::M);
            }
            if emulate == Emulate::AccessedModified && new != e {
                match ram.cas(gpa, e.bits(), new.bits()) {
                    Ok(true) => {}
                    Ok(false) => return Ok(None),
                    Err(_) => return Err(FaultReason::OutsideRam { level, gpa }),
                }
            }
            let vpte = if emulate == Emulate::AccessedModified {
                new
            } else {
                e
            };
            return Ok(Some(Translation {
                frame: e.frame() + ((va & (size - 1)) & !0xFFF),
                leaf_gpa: gpa,
                vpte,
                level,
                writable,
                executable,
                upper_writable,
                upper_user,
                upper_executable,
            }));
        }
        if emulate == Emulate::AccessedModified && !e.accessed() {
            match ram.cas(gpa, e.bits(), e.with(Vpte::A).bits()) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(_) => return Err(FaultReason::OutsideRam { level, gpa }),
            }
        }
        table = e.frame();
    }
    unreachable!("level 1 is always a leaf")
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: u64 = Vpte::RW | Vpte::U;

    /// Builds a 4-level path for `va` with tables at fixed frames.
    fn path(ram: &Ram, va: u64, leaf: Vpte) -> u64 {
        let root = 0x1000;
        let t3 = 0x2000;
        let t2 = 0x3000;
        let t1 = 0x4000;
        ram.store(root + 8 * index(va, 4) as u64, Vpte::page(t3, F).bits())
            .unwrap();
        ram.store(t3 + 8 * index(va, 3) as u64, Vpte::page(t2, F).bits())
            .unwrap();
        ram.store(t2 + 8 * index(va, 2) as u64, Vpte::page(t1, F).bits())
            .unwrap();
        ram.store(t1 + 8 * index(va, 1) as u64, leaf.bits())
            .unwrap();
        root
    }

    #[test]
    fn resolves_and_sets_a_then_m() {
        let ram = Ram::anonymous(1 << 20).unwrap();
        let va = 0x40_1234;
        let root = path(&ram, va, Vpte::page(0x9000, F));
        let t = walk(&ram, root, va, Access::Read, Emulate::AccessedModified).unwrap();
        assert_eq!(t.frame, 0x9000);
        assert_eq!(t.level, 1);
        assert!(t.vpte.accessed() && !t.vpte.modified());
        assert!(Vpte(ram.load(t.leaf_gpa).unwrap()).accessed());
        assert!(!Vpte(ram.load(t.leaf_gpa).unwrap()).modified());
        // Intermediate levels got A too, like hardware.
        assert!(Vpte(ram.load(root + 8 * index(va, 4) as u64).unwrap()).accessed());
        let t = walk(&ram, root, va, Access::Write, Emulate::AccessedModified).unwrap();
        assert!(t.vpte.modified());
        assert!(Vpte(ram.load(t.leaf_gpa).unwrap()).modified());
        // Clearing M re-arms it: a read leaves it clear, a write sets it.
        ram.store(t.leaf_gpa, t.vpte.without(Vpte::M).bits())
            .unwrap();
        walk(&ram, root, va, Access::Read, Emulate::AccessedModified).unwrap();
        assert!(!Vpte(ram.load(t.leaf_gpa).unwrap()).modified());
        walk(&ram, root, va, Access::Write, Emulate::AccessedModified).unwrap();
        assert!(Vpte(ram.load(t.leaf_gpa).unwrap()).modified());
    }

    #[test]
    fn look_only_changes_nothing() {
        let ram = Ram::anonymous(1 << 20).unwrap();
        let root = path(&ram, 0, Vpte::page(0x9000, F));
        let t = walk(&ram, root, 0, Access::Write, Emulate::No).unwrap();
        assert!(!t.vpte.accessed());
        assert!(!Vpte(ram.load(t.leaf_gpa).unwrap()).accessed());
    }

    #[test]
    fn invalid_and_protection() {
        let ram = Ram::anonymous(1 << 20).unwrap();
        let va = 0x7000_0000;
        let root = path(&ram, va, Vpte::page(0x9000, Vpte::U));
        assert_eq!(
            walk(
                &ram,
                root,
                va + 0x1000,
                Access::Read,
                Emulate::AccessedModified
            ),
            Err(FaultReason::NotValid { level: 1 })
        );
        assert_eq!(
            walk(
                &ram,
                root,
                0x100_0000_0000,
                Access::Read,
                Emulate::AccessedModified
            ),
            Err(FaultReason::NotValid { level: 4 })
        );
        // Read-only page: write is a protection fault and sets nothing.
        assert_eq!(
            walk(&ram, root, va, Access::Write, Emulate::AccessedModified),
            Err(FaultReason::Protection)
        );
        let leaf = Vpte(ram.load(0x4000 + 8 * index(va, 1) as u64).unwrap());
        assert!(!leaf.accessed() && !leaf.modified());
        // Supervisor-only page: no user access at all.
        path(&ram, va, Vpte::page(0x9000, Vpte::RW));
        assert_eq!(
            walk(&ram, root, va, Access::Read, Emulate::AccessedModified),
            Err(FaultReason::Protection)
        );
        // NX page: no execution.
        path(&ram, va, Vpte::page(0x9000, F | Vpte::NX));
        assert_eq!(
            walk(&ram, root, va, Access::Execute, Emulate::AccessedModified),
            Err(FaultReason::Protection)
        );
        assert!(walk(&ram, root, va, Access::Read, Emulate::AccessedModified).is_ok());
        // Kernel addresses are never user addresses.
        assert_eq!(
            walk(&ram, root, 0xffff_8000_0000_0000, Access::Read, Emulate::No),
            Err(FaultReason::NotUser)
        );
    }

    #[test]
    fn outside_ram_and_malformed() {
        let ram = Ram::anonymous(1 << 20).unwrap();
        let va = 0x1000;
        let root = path(&ram, va, Vpte::page(0x10_0000, F)); // frame == RAM size
        assert_eq!(
            walk(&ram, root, va, Access::Read, Emulate::AccessedModified),
            Err(FaultReason::OutsideRam {
                level: 1,
                gpa: 0x10_0000
            })
        );
        // Table pointer outside RAM.
        ram.store(0x1000, Vpte::page(0xdead_0000, F).bits())
            .unwrap();
        assert_eq!(
            walk(&ram, root, va, Access::Read, Emulate::No),
            Err(FaultReason::OutsideRam {
                level: 4,
                gpa: 0xdead_0000
            })
        );
        // Root itself outside RAM or unaligned.
        assert!(matches!(
            walk(&ram, 0x20_0000, va, Access::Read, Emulate::No),
            Err(FaultReason::OutsideRam { level: 4, .. })
        ));
        assert_eq!(
            walk(&ram, 0x1008, va, Access::Read, Emulate::No),
            Err(FaultReason::Malformed { level: 4 })
        );
        // Large page at the root is malformed.
        ram.store(0x1000, Vpte::page(0, F | Vpte::PS).bits())
            .unwrap();
        assert_eq!(
            walk(&ram, root, va, Access::Read, Emulate::No),
            Err(FaultReason::Malformed { level: 4 })
        );
    }

    #[test]
    fn large_pages() {
        let ram = Ram::anonymous(8 << 20).unwrap();
        let va = 0x4060_1234u64; // inside a 2 MiB page at 0x4060_0000
        let root = path(&ram, va, Vpte::page(0x9000, F));
        // Turn the level-2 entry into a 2 MiB page at 0x40_0000.
        let l2 = 0x3000 + 8 * index(va, 2) as u64;
        ram.store(l2, Vpte::page(0x40_0000, F | Vpte::PS).bits())
            .unwrap();
        let t = walk(&ram, root, va, Access::Write, Emulate::AccessedModified).unwrap();
        assert_eq!(t.level, 2);
        assert_eq!(t.frame, 0x40_0000 + 0x1000);
        assert!(Vpte(ram.load(l2).unwrap()).modified());
        // Misaligned large frame.
        ram.store(l2, Vpte::page(0x40_1000, F | Vpte::PS).bits())
            .unwrap();
        assert_eq!(
            walk(&ram, root, va, Access::Read, Emulate::No),
            Err(FaultReason::Malformed { level: 2 })
        );
        // Large page running past the end of RAM.
        ram.store(l2, Vpte::page(0x70_0000 & !0x1F_FFFF, F | Vpte::PS).bits())
            .unwrap();
        assert!(walk(&ram, root, va, Access::Read, Emulate::No).is_ok());
        ram.store(l2, Vpte::page(0x80_0000, F | Vpte::PS).bits())
            .unwrap();
        assert!(matches!(
            walk(&ram, root, va, Access::Read, Emulate::No),
            Err(FaultReason::OutsideRam { level: 2, .. })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let ram = Ram::anonymous(1 << 16).unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..(1 << 16) / 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ram.store(i * 8, x).unwrap();
        }
        for i in 0..2000u64 {
            let va = (i.wrapping_mul(0x1234_5678_9abc)) & 0x7fff_ffff_f000;
            let root = (i * 4096) % (1 << 16);
            let _ = walk(&ram, root, va, Access::Write, Emulate::AccessedModified);
        }
    }
}
