//! The virtual page table entry (VPTE) format.
//!
//! A vpagetable is a 4-level radix tree of 4 KiB table pages in RAM, 512
//! 64-bit entries each, translating 48-bit user virtual addresses the way
//! x86-64 hardware does (9 bits per level; level 4 is the root). It follows
//! DragonFly BSD's `vpte_t`; flag positions match x86 where x86 has the same
//! meaning.
//!
//! | bits  | name     | meaning |
//! |-------|----------|---------|
//! | 0     | V        | valid |
//! | 1     | RW       | writable (ANDed over all levels) |
//! | 2     | U        | user accessible (required on every level for a vproc) |
//! | 5     | A        | accessed: set by the walker on a resolved access |
//! | 6     | M        | modified: set by the walker on a resolved write |
//! | 7     | PS       | large page at level 2 (2 MiB) or 3 (1 GiB) |
//! | 8     | G        | global (kept for the vkernel; no effect) |
//! | 9     | WIRED    | software: the vkernel wired the page |
//! | 10    | MANAGED  | software: the page is managed by the vkernel's VM |
//! | 12-51 | frame    | guest-physical frame (must lie inside RAM) |
//! | 52    | COW      | software: shared copy-on-write (fork) |
//! | 53    | SHARED   | software: a page of shared memory (fork shares it writable) |
//! | 54-62 | SW       | free for the vkernel |
//! | 63    | NX       | no execute (ORed over all levels) |
//!
//! ```
//! use vkernel_core::vpte::Vpte;
//! let e = Vpte::page(0x5000, Vpte::RW | Vpte::U);
//! assert!(e.valid() && e.writable() && !e.modified());
//! assert_eq!(e.frame(), 0x5000);
//! ```

/// One virtual page table entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Vpte(pub u64);

impl Vpte {
    /// Valid.
    pub const V: u64 = 1 << 0;
    /// Writable.
    pub const RW: u64 = 1 << 1;
    /// User accessible.
    pub const U: u64 = 1 << 2;
    /// Accessed (emulated).
    pub const A: u64 = 1 << 5;
    /// Modified (emulated).
    pub const M: u64 = 1 << 6;
    /// Large page.
    pub const PS: u64 = 1 << 7;
    /// Global.
    pub const G: u64 = 1 << 8;
    /// Wired (software).
    pub const WIRED: u64 = 1 << 9;
    /// Managed (software).
    pub const MANAGED: u64 = 1 << 10;
    /// Software-defined bits 52..=62.
    pub const SW_MASK: u64 = 0x7FF0_0000_0000_0000;
    /// Software bit 52: the page is shared copy-on-write (see
    /// [`crate::vptable::VpTable::fork_cow`]).
    pub const COW: u64 = 1 << 52;
    /// Software bit 53: the page belongs to shared memory (MAP_SHARED):
    /// [`crate::vptable::VpTable::fork_cow`] gives the child the same
    /// frame with the same permissions and leaves the parent's entry as
    /// it is (no copy-on-write).
    pub const SHARED: u64 = 1 << 53;
    /// No execute.
    pub const NX: u64 = 1 << 63;
    /// Frame address mask.
    pub const FRAME_MASK: u64 = 0x000F_FFFF_FFFF_F000;
    /// Entries per table page.
    pub const ENTRIES: usize = 512;

    /// A valid leaf or table entry for `frame` with `flags` (V is added).
    pub const fn page(frame: u64, flags: u64) -> Vpte {
        Vpte((frame & Self::FRAME_MASK) | flags | Self::V)
    }

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }
    /// Is V set?
    pub const fn valid(self) -> bool {
        self.0 & Self::V != 0
    }
    /// Is RW set?
    pub const fn writable(self) -> bool {
        self.0 & Self::RW != 0
    }
    /// Is U set?
    pub const fn user(self) -> bool {
        self.0 & Self::U != 0
    }
    /// Is A set?
    pub const fn accessed(self) -> bool {
        self.0 & Self::A != 0
    }
    /// Is M set?
    pub const fn modified(self) -> bool {
        self.0 & Self::M != 0
    }
    /// Is PS set?
    pub const fn large(self) -> bool {
        self.0 & Self::PS != 0
    }
    /// Is NX set?
    pub const fn no_exec(self) -> bool {
        self.0 & Self::NX != 0
    }
    /// The frame address.
    pub const fn frame(self) -> u64 {
        self.0 & Self::FRAME_MASK
    }
    /// Same entry with `bits` set.
    pub const fn with(self, bits: u64) -> Vpte {
        Vpte(self.0 | bits)
    }
    /// Same entry with `bits` cleared.
    pub const fn without(self, bits: u64) -> Vpte {
        Vpte(self.0 & !bits)
    }
}

impl std::fmt::Debug for Vpte {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vpte({:#x} frame={:#x}", self.0, self.frame())?;
        for (bit, name) in [
            (Self::V, " V"),
            (Self::RW, " RW"),
            (Self::U, " U"),
            (Self::A, " A"),
            (Self::M, " M"),
            (Self::PS, " PS"),
            (Self::NX, " NX"),
        ] {
            if self.0 & bit != 0 {
                f.write_str(name)?;
            }
        }
        f.write_str(")")
    }
}

/// Index into the table at `level` (4 = root .. 1 = leaf) for `va`.
pub const fn index(va: u64, level: u8) -> usize {
    ((va >> (12 + 9 * (level as u64 - 1))) & 0x1FF) as usize
}

/// Bytes mapped by one entry at `level`.
pub const fn level_size(level: u8) -> u64 {
    1u64 << (12 + 9 * (level as u64 - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format() {
        let e = Vpte::page(0x1234_5000, Vpte::RW | Vpte::U);
        assert_eq!(e.bits(), 0x1234_5000 | 0x7);
        assert!(e.valid() && e.writable() && e.user());
        assert!(!e.accessed() && !e.modified() && !e.large() && !e.no_exec());
        let e2 = e.with(Vpte::A | Vpte::M | Vpte::NX);
        assert!(e2.accessed() && e2.modified() && e2.no_exec());
        assert_eq!(e2.frame(), 0x1234_5000);
        assert!(!e2.without(Vpte::M).modified());
        // Frame bits above 51 and software bits do not leak into the frame.
        assert_eq!(Vpte(u64::MAX).frame(), Vpte::FRAME_MASK);
        assert_eq!(Vpte::page(0xfff, 0).frame(), 0);
        // x86 positions.
        assert_eq!(Vpte::A, 0x20);
        assert_eq!(Vpte::M, 0x40);
        assert_eq!(Vpte::PS, 0x80);
    }

    #[test]
    fn indices() {
        let va = 0x0000_7fff_ffff_f000u64;
        assert_eq!(index(va, 4), 255);
        assert_eq!(index(va, 1), 511);
        assert_eq!(index(0x20_0000, 2), 1);
        assert_eq!(level_size(1), 4096);
        assert_eq!(level_size(2), 2 << 20);
        assert_eq!(level_size(3), 1 << 30);
    }
}
