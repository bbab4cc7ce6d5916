//! Memory introspection: pagemap, kpagemap, VSS/RSS/PSS/USS and working
//! sets (the seed's pagemap article, for vmspaces).
//!
//! A virtual kernel owns every vpagetable, so it can answer exactly how much
//! memory each vproc uses. [`MemStats::collect`] walks the vpagetables (and
//! linear mappings) of a set of vmspaces once, builds a table of how many of
//! those vmspaces map each RAM frame (the *kpagemap*), and derives per
//! vmspace:
//!
//! - **VSS**: bytes covered by the vmspace's mappings ([`Vmspace::mappings`](crate::vmspace::Vmspace::mappings)).
//! - **RSS**: virtual pages that are resident: every valid leaf VPTE pointing
//!   inside RAM (a 2 MiB or 1 GiB leaf counts as 512 or 262144 pages), plus
//!   every page of a [`Backing::Linear`] mapping (linear mappings are RAM
//!   itself, so they are always resident).
//! - **PSS**: each RAM frame the vmspace maps, divided by the number of
//!   vmspaces in the snapshot that map it. So 1000 private pages plus 1000
//!   pages shared with one other vmspace give a PSS of 1500.
//! - **USS**: frames mapped by this vmspace only, the pages that come back
//!   when it is destroyed.
//!
//! Sharing is counted per *vmspace*, not per mapping: a frame that one
//! vmspace maps at two addresses counts twice in its RSS but once in its PSS
//! and USS, so the PSS of all vmspaces adds up to the frames they map.
//! vpagetable pages are the vkernel's, not the vproc's: they are reported
//! apart ([`Usage::table_pages`]) and not included in RSS/PSS/USS.
//!
//! The counts are only as complete as the set given: pass every live
//! vmspace of the machine, or pages shared with one left out look private.
//!
//! [`clear_refs`] and [`working_set`] implement the article's `clear_refs`:
//! clear the accessed bits of a vmspace (and drop the hardware entries that
//! would hide new references), let it run, then see which pages it needed.
//!
//! ```no_run
//! use vkernel_core::{machine::Machine, memstat::{self, MemStats}};
//! let m = Machine::builder().build()?;
//! let a = m.vmspace_create()?;
//! let b = m.vmspace_create()?;
//! let stats = MemStats::collect_named(&[(&a, "init"), (&b, "sh")])?;
//! print!("{}", stats.to_table()); // memrank
//! println!("{}", stats.usage(a.id()).unwrap().to_json()); // memstats --json
//! memstat::clear_refs(&a)?;
//! // ... run a for a while ...
//! println!("working set: {} pages", memstat::working_set(&a)?.pages);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod collect;
mod render;
#[cfg(test)]
mod tests;

pub(crate) use collect::Area;
pub use collect::{clear_refs, working_set};

use crate::ram::Ram;
use crate::vmspace::VmspaceError;

/// Bytes per page: all counts in this module are in 4 KiB pages.
pub const PAGE_SIZE: u64 = 4096;

/// Errors of memory introspection.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum MemstatError {
    /// The vmspaces of one snapshot belong to different machines.
    #[error("the vmspaces belong to different machines")]
    WrongMachine,
    /// The same vmspace was given twice.
    #[error("vmspace {0} is given twice")]
    Duplicate(u64),
    /// The vmspace is not part of this snapshot.
    #[error("vmspace {0} is not part of this snapshot")]
    UnknownVmspace(u64),
    /// RAM has more frames than a snapshot can index (2^32).
    #[error("RAM of {0:#x} bytes has too many frames to index")]
    RamTooLarge(u64),
    /// A vmspace call failed.
    #[error(transparent)]
    Vmspace(#[from] VmspaceError),
}

bitflags::bitflags! {
    /// Flags of one RAM frame in the [kpagemap](MemStats::kpage).
    #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
    pub struct FrameFlags: u8 {
        /// A vpagetable page reached from one of the vmspaces.
        const TABLE = 1;
        /// Mapped as a user page by at least one vmspace.
        const USER = 2;
        /// Some VPTE mapping it has A set.
        const ACCESSED = 4;
        /// Some VPTE mapping it has M set.
        const MODIFIED = 8;
        /// Mapped through a large (2 MiB or 1 GiB) VPTE.
        const LARGE = 16;
        /// Mapped by a linear mapping.
        const LINEAR = 32;
        /// Neither mapped nor a vpagetable page of any vmspace in the
        /// snapshot (the vkernel may still use it for itself).
        const FREE = 64;
    }
}

impl FrameFlags {
    fn names(self) -> Vec<&'static str> {
        [
            (Self::TABLE, "table"),
            (Self::USER, "user"),
            (Self::ACCESSED, "accessed"),
            (Self::MODIFIED, "modified"),
            (Self::LARGE, "large"),
            (Self::LINEAR, "linear"),
            (Self::FREE, "free"),
        ]
        .into_iter()
        .filter(|(f, _)| self.contains(*f))
        .map(|(_, n)| n)
        .collect()
    }
}

impl std::fmt::Debug for FrameFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FrameFlags({})", self.names().join("|"))
    }
}

/// One RAM frame in the kpagemap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kpage {
    /// Guest-physical address of the frame.
    pub gpa: u64,
    /// How many vmspaces of the snapshot map it.
    pub map_count: u32,
    /// What it is used for.
    pub flags: FrameFlags,
}

/// One resident virtual page in a vmspace's pagemap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageEntry {
    /// Virtual address of the 4 KiB page.
    pub va: u64,
    /// Guest-physical address of the RAM frame behind it.
    pub frame: u64,
    /// The leaf VPTE has A set (always false for linear mappings, whose
    /// references are not tracked).
    pub accessed: bool,
    /// The leaf VPTE has M set (always false for linear mappings).
    pub modified: bool,
    /// The leaf VPTE allows writes (for linear mappings: the protection).
    pub writable: bool,
    /// Level of the leaf: 1 (4 KiB), 2 (2 MiB), 3 (1 GiB); 0 for a linear
    /// mapping.
    pub level: u8,
    /// How many vmspaces of the snapshot map the frame.
    pub map_count: u32,
}

/// Memory use of one vmspace (what `memstats` prints).
#[derive(Clone, Debug, PartialEq)]
pub struct Usage {
    /// The vmspace's id.
    pub id: u64,
    /// Its name in the snapshot (`vms<id>` unless one was given).
    pub name: String,
    /// Virtual set size: bytes covered by mappings.
    pub vss_bytes: u64,
    /// Resident set size, in pages (virtual pages backed by a RAM frame).
    pub rss_pages: u64,
    /// Proportional set size, in pages: each frame divided by the number
    /// of vmspaces that map it.
    pub pss_pages: f64,
    /// Unique set size, in pages: frames no other vmspace maps.
    pub uss_pages: u64,
    /// Frames this vmspace shares with at least one other vmspace.
    pub shared_pages: u64,
    /// Resident pages whose VPTE has A set. The snapshot reads the VPTEs
    /// as they are; call [`working_set`] first to fold in the hardware A
    /// bits of fault-around neighbours.
    pub referenced_pages: u64,
    /// Resident pages whose VPTE has M set.
    pub modified_pages: u64,
    /// Resident pages of linear mappings (included in RSS).
    pub linear_pages: u64,
    /// Resident pages mapped by large VPTEs (included in RSS).
    pub large_pages: u64,
    /// Distinct vpagetable pages reached from this vmspace (not in RSS).
    pub table_pages: u64,
    /// Valid VPTEs skipped because they point outside RAM or are malformed
    /// (the walker would fault on them too).
    pub bad_entries: u64,
}

impl Usage {
    /// RSS in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.rss_pages * PAGE_SIZE
    }
    /// PSS in bytes (rounded down).
    // f64 -> u64 saturates: a non-negative page count times 4096 fits.
    #[allow(clippy::cast_possible_truncation)]
    pub fn pss_bytes(&self) -> u64 {
        (self.pss_pages * PAGE_SIZE as f64) as u64
    }
    /// USS in bytes.
    pub fn uss_bytes(&self) -> u64 {
        self.uss_pages * PAGE_SIZE
    }
}

/// Frame counts over all of RAM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameTotals {
    /// Frames of RAM.
    pub ram: u64,
    /// Frames mapped by at least one vmspace.
    pub user: u64,
    /// Frames mapped by two or more vmspaces.
    pub shared: u64,
    /// vpagetable pages.
    pub table: u64,
    /// Frames that are neither ([`FrameFlags::FREE`]).
    pub free: u64,
}

/// A snapshot of memory use of a set of vmspaces: per-vmspace [`Usage`], the
/// kpagemap, and per-vmspace pagemaps.
#[derive(Clone, Debug)]
pub struct MemStats {
    ram: Option<Ram>,
    usage: Vec<Usage>,
    areas: Vec<Vec<Area>>,
    count: Vec<u32>,
    flags: Vec<u8>,
}

/// The pages a vmspace referenced since its last [`clear_refs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkingSet {
    /// The vmspace's id.
    pub id: u64,
    /// Referenced 4 KiB pages (a referenced large page counts in full).
    pub pages: u64,
    /// The referenced pages as `[start, end)` virtual ranges, in order.
    pub ranges: Vec<(u64, u64)>,
}

impl WorkingSet {
    /// Bytes referenced.
    pub fn bytes(&self) -> u64 {
        self.pages * PAGE_SIZE
    }
}
