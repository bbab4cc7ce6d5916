//! Memory introspection: pagemap, kpagemap, VSS/RSS/PSS/USS and working
//! sets (the seed's pagemap article, for vmspaces).
//!
//! A virtual kernel owns every vpagetable, so it can answer exactly how much
//! memory each vproc uses. [`MemStats::collect`] walks the vpagetables (and
//! linear mappings) of a set of vmspaces once, builds a table of how many of
//! those vmspaces map each RAM frame (the *kpagemap*), and derives per
//! vmspace:
//!
//! - **VSS**: bytes covered by the vmspace's mappings ([`Vmspace::mappings`]).
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

use std::fmt::Write as _;
use std::sync::Arc;

use vkernel_guest::x86::USER_END;

use crate::ram::Ram;
use crate::vmspace::{Backing, Vmspace, VmspaceError};
use crate::vpte::{level_size, Vpte};

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

/// Flags of one RAM frame in the [kpagemap](MemStats::kpage).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FrameFlags(u8);

impl FrameFlags {
    /// A vpagetable page reached from one of the vmspaces.
    pub const TABLE: FrameFlags = FrameFlags(1);
    /// Mapped as a user page by at least one vmspace.
    pub const USER: FrameFlags = FrameFlags(2);
    /// Some VPTE mapping it has A set.
    pub const ACCESSED: FrameFlags = FrameFlags(4);
    /// Some VPTE mapping it has M set.
    pub const MODIFIED: FrameFlags = FrameFlags(8);
    /// Mapped through a large (2 MiB or 1 GiB) VPTE.
    pub const LARGE: FrameFlags = FrameFlags(16);
    /// Mapped by a linear mapping.
    pub const LINEAR: FrameFlags = FrameFlags(32);
    /// Neither mapped nor a vpagetable page of any vmspace in the snapshot
    /// (the vkernel may still use it for itself).
    pub const FREE: FrameFlags = FrameFlags(64);

    /// No flags.
    pub const fn empty() -> FrameFlags {
        FrameFlags(0)
    }
    /// Are all of `other`'s flags set?
    pub const fn contains(self, other: FrameFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
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

impl std::ops::BitOr for FrameFlags {
    type Output = FrameFlags;
    fn bitor(self, o: FrameFlags) -> FrameFlags {
        FrameFlags(self.0 | o.0)
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
    pub fn pss_bytes(&self) -> u64 {
        (self.pss_pages * PAGE_SIZE as f64) as u64
    }
    /// USS in bytes.
    pub fn uss_bytes(&self) -> u64 {
        self.uss_pages * PAGE_SIZE
    }

    /// A readable report (the article's `memstats`).
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "vmspace {} ({})", self.id, self.name);
        let kib = |p: f64| p * (PAGE_SIZE / 1024) as f64;
        let rows: [(&str, f64, &str); 4] = [
            (
                "VSS",
                self.vss_bytes as f64 / PAGE_SIZE as f64,
                "virtual size",
            ),
            ("RSS", self.rss_pages as f64, "resident"),
            ("PSS", self.pss_pages, "proportional: shared pages divided"),
            ("USS", self.uss_pages as f64, "unique: freed on exit"),
        ];
        for (k, pages, what) in rows {
            let _ = writeln!(
                s,
                "  {k:<4} {:>14.1} pages {:>16.1} KiB   {what}",
                pages,
                kib(pages)
            );
        }
        for (k, v) in [
            ("shared", self.shared_pages),
            ("referenced", self.referenced_pages),
            ("modified", self.modified_pages),
            ("linear", self.linear_pages),
            ("large", self.large_pages),
            ("tables", self.table_pages),
            ("bad VPTEs", self.bad_entries),
        ] {
            let _ = writeln!(s, "  {k:<10} {v:>8} pages");
        }
        s
    }

    /// The same as one JSON object.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"id\": {}, \"name\": {}, \"vss_bytes\": {}, \"rss_pages\": {}, \"rss_bytes\": {}, \
             \"pss_pages\": {}, \"pss_bytes\": {}, \"uss_pages\": {}, \"uss_bytes\": {}, \
             \"shared_pages\": {}, \"referenced_pages\": {}, \"modified_pages\": {}, \
             \"linear_pages\": {}, \"large_pages\": {}, \"table_pages\": {}, \"bad_entries\": {}}}",
            self.id,
            json_str(&self.name),
            self.vss_bytes,
            self.rss_pages,
            self.rss_bytes(),
            json_f64(self.pss_pages),
            self.pss_bytes(),
            self.uss_pages,
            self.uss_bytes(),
            self.shared_pages,
            self.referenced_pages,
            self.modified_pages,
            self.linear_pages,
            self.large_pages,
            self.table_pages,
            self.bad_entries,
        )
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

/// A mapping as the snapshot saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Area {
    /// vpagetable-governed `[start, end)` with its root (None before SETMAP).
    Table {
        start: u64,
        end: u64,
        root: Option<u64>,
    },
    /// Linear `[start, end)` onto RAM at `gpa`.
    Linear {
        start: u64,
        end: u64,
        gpa: u64,
        writable: bool,
    },
}

impl Area {
    fn bytes(&self) -> u64 {
        match *self {
            Area::Table { start, end, .. } | Area::Linear { start, end, .. } => end - start,
        }
    }
}

fn areas_of(vms: &Vmspace) -> Vec<Area> {
    vms.mappings()
        .into_iter()
        .map(|(start, end, b)| match b {
            Backing::PageTable => Area::Table {
                start,
                end,
                root: vms.root_of(start),
            },
            Backing::Linear { gpa, prot } => Area::Linear {
                start,
                end,
                gpa,
                writable: prot.allows(crate::walker::Access::Write),
            },
        })
        .collect()
}

/// What a vpagetable walk reports.
trait Visitor {
    /// A table page.
    fn table(&mut self, gpa: u64);
    /// A valid leaf mapping `pages` 4 KiB pages from `va` onto frames from
    /// `frame` (already clipped to the walked range).
    fn leaf(&mut self, va: u64, frame: u64, pages: u64, e: Vpte, level: u8);
    /// A valid entry that points outside RAM or is malformed.
    fn bad(&mut self);
}

/// Walk the vpagetable at `root` over `[start, end)`, like the walker would
/// resolve each address, visiting only the entries that intersect the range.
fn walk_range<V: Visitor>(ram: &Ram, root: u64, start: u64, end: u64, v: &mut V) {
    fn rec<V: Visitor>(
        ram: &Ram,
        table: u64,
        level: u8,
        base: u64,
        start: u64,
        end: u64,
        v: &mut V,
    ) {
        v.table(table);
        let span = level_size(level);
        let first = start.saturating_sub(base) / span;
        let last = ((end - 1 - base) / span).min(511);
        for i in first..=last {
            let lo = base + i * span;
            let e = Vpte(ram.load(table + 8 * i).unwrap_or(0));
            if !e.valid() {
                continue;
            }
            if level == 1 || e.large() {
                if level == 4 || e.frame() & (span - 1) != 0 || !ram.contains(e.frame(), span) {
                    v.bad();
                    continue;
                }
                let s = lo.max(start);
                let t = (lo + span).min(end);
                v.leaf(s, e.frame() + (s - lo), (t - s) / PAGE_SIZE, e, level);
            } else if ram.contains(e.frame(), PAGE_SIZE) {
                rec(ram, e.frame(), level - 1, lo, start, end, v);
            } else {
                v.bad();
            }
        }
    }
    let end = end.min(USER_END);
    if start < end && root.is_multiple_of(PAGE_SIZE) && ram.contains(root, PAGE_SIZE) {
        rec(ram, root, 4, 0, start, end, v);
    }
}

/// Per-vmspace pass-1 visitor: counts vmspaces per frame and collects the
/// vmspace's distinct frames.
struct Counter<'a> {
    marker: u32,
    count: &'a mut [u32],
    flags: &'a mut [u8],
    last: &'a mut [u32],
    tlast: &'a mut [u32],
    distinct: Vec<u32>,
    u: Usage,
}

impl Counter<'_> {
    fn frames(&mut self, frame: u64, pages: u64, fl: u8) {
        let f0 = (frame / PAGE_SIZE) as usize;
        for f in f0..f0 + pages as usize {
            if self.last[f] != self.marker {
                self.last[f] = self.marker;
                self.count[f] = self.count[f].saturating_add(1);
                self.distinct.push(f as u32);
            }
            self.flags[f] |= fl;
        }
    }
}

impl Visitor for Counter<'_> {
    fn table(&mut self, gpa: u64) {
        let f = (gpa / PAGE_SIZE) as usize;
        self.flags[f] |= FrameFlags::TABLE.0;
        if self.tlast[f] != self.marker {
            self.tlast[f] = self.marker;
            self.u.table_pages += 1;
        }
    }
    fn leaf(&mut self, _va: u64, frame: u64, pages: u64, e: Vpte, level: u8) {
        let mut fl = FrameFlags::USER.0;
        self.u.rss_pages += pages;
        if e.accessed() {
            fl |= FrameFlags::ACCESSED.0;
            self.u.referenced_pages += pages;
        }
        if e.modified() {
            fl |= FrameFlags::MODIFIED.0;
            self.u.modified_pages += pages;
        }
        if level > 1 {
            fl |= FrameFlags::LARGE.0;
            self.u.large_pages += pages;
        }
        self.frames(frame, pages, fl);
    }
    fn bad(&mut self) {
        self.u.bad_entries += 1;
    }
}

impl MemStats {
    /// Snapshot `vmspaces` (all of one machine), named `vms<id>`. Cost:
    /// one pass over the vpagetable entries of their mappings plus a few
    /// bytes per RAM frame; a 1 GiB vmspace of 4 KiB pages takes a few
    /// milliseconds. Nothing is changed (A bits are read, not harvested).
    pub fn collect(vmspaces: &[&Vmspace]) -> Result<MemStats, MemstatError> {
        let named: Vec<(&Vmspace, String)> = vmspaces
            .iter()
            .map(|v| (*v, format!("vms{}", v.id())))
            .collect();
        Self::collect_inner(named)
    }

    /// Snapshot `vmspaces` with names (e.g. the vproc's command) for the
    /// reports.
    pub fn collect_named(vmspaces: &[(&Vmspace, &str)]) -> Result<MemStats, MemstatError> {
        Self::collect_inner(vmspaces.iter().map(|(v, n)| (*v, n.to_string())).collect())
    }

    fn collect_inner(named: Vec<(&Vmspace, String)>) -> Result<MemStats, MemstatError> {
        let Some((first, _)) = named.first() else {
            return Ok(MemStats {
                ram: None,
                usage: Vec::new(),
                areas: Vec::new(),
                count: Vec::new(),
                flags: Vec::new(),
            });
        };
        let machine = &first.shared.machine;
        let mut ids = std::collections::HashSet::new();
        for (v, _) in &named {
            if !Arc::ptr_eq(&v.shared.machine, machine) {
                return Err(MemstatError::WrongMachine);
            }
            if !ids.insert(v.id()) {
                return Err(MemstatError::Duplicate(v.id()));
            }
        }
        let input = named
            .iter()
            .map(|(v, n)| (v.id(), n.clone(), areas_of(v)))
            .collect();
        Self::from_areas(machine.ram.clone(), input)
    }

    /// The snapshot proper, from mappings already read (unit-testable
    /// without KVM).
    pub(crate) fn from_areas(
        ram: Ram,
        input: Vec<(u64, String, Vec<Area>)>,
    ) -> Result<MemStats, MemstatError> {
        let nframes = ram.size() / PAGE_SIZE;
        if nframes > u32::MAX as u64 || input.len() >= u32::MAX as usize {
            return Err(MemstatError::RamTooLarge(ram.size()));
        }
        let n = nframes as usize;
        let mut count = vec![0u32; n];
        let mut flags = vec![0u8; n];
        let mut last = vec![0u32; n];
        let mut tlast = vec![0u32; n];
        let mut usage = Vec::with_capacity(input.len());
        let mut distinct = Vec::with_capacity(input.len());
        let mut areas = Vec::with_capacity(input.len());
        for (i, (id, name, a)) in input.into_iter().enumerate() {
            let mut c = Counter {
                marker: i as u32 + 1,
                count: &mut count,
                flags: &mut flags,
                last: &mut last,
                tlast: &mut tlast,
                distinct: Vec::new(),
                u: Usage {
                    id,
                    name,
                    vss_bytes: 0,
                    rss_pages: 0,
                    pss_pages: 0.0,
                    uss_pages: 0,
                    shared_pages: 0,
                    referenced_pages: 0,
                    modified_pages: 0,
                    linear_pages: 0,
                    large_pages: 0,
                    table_pages: 0,
                    bad_entries: 0,
                },
            };
            for area in &a {
                c.u.vss_bytes += area.bytes();
                match *area {
                    Area::Table {
                        start,
                        end,
                        root: Some(root),
                    } => walk_range(&ram, root, start, end, &mut c),
                    Area::Table { root: None, .. } => {}
                    Area::Linear {
                        start, end, gpa, ..
                    } => {
                        let pages = (end - start) / PAGE_SIZE;
                        if ram.contains(gpa, end - start) && gpa.is_multiple_of(PAGE_SIZE) {
                            c.u.rss_pages += pages;
                            c.u.linear_pages += pages;
                            c.frames(gpa, pages, FrameFlags::USER.0 | FrameFlags::LINEAR.0);
                        } else {
                            c.u.bad_entries += 1;
                        }
                    }
                }
            }
            distinct.push(std::mem::take(&mut c.distinct));
            usage.push(c.u);
            areas.push(a);
        }
        drop((last, tlast));
        // Pass 2: PSS/USS from the final counts, via a histogram of map
        // counts so the sum is a few divisions, not one per page.
        let mut hist = vec![0u64; usage.len() + 1];
        let top = usage.len();
        for (u, d) in usage.iter_mut().zip(&distinct) {
            hist.iter_mut().for_each(|h| *h = 0);
            for &f in d {
                let c = count[f as usize] as usize;
                hist[c.min(top)] += 1;
            }
            u.uss_pages = hist[1];
            u.shared_pages = hist[2..].iter().sum();
            u.pss_pages = hist
                .iter()
                .enumerate()
                .skip(1)
                .map(|(c, &h)| h as f64 / c as f64)
                .sum();
        }
        Ok(MemStats {
            ram: Some(ram),
            usage,
            areas,
            count,
            flags,
        })
    }

    /// Per-vmspace usage, in the order given.
    pub fn usages(&self) -> &[Usage] {
        &self.usage
    }

    /// Usage of the vmspace with `id`.
    pub fn usage(&self, id: u64) -> Option<&Usage> {
        self.usage.iter().find(|u| u.id == id)
    }

    /// Usage sorted by decreasing PSS (ties by id): the article's `memrank`.
    pub fn ranked(&self) -> Vec<&Usage> {
        let mut v: Vec<&Usage> = self.usage.iter().collect();
        v.sort_by(|a, b| b.pss_pages.total_cmp(&a.pss_pages).then(a.id.cmp(&b.id)));
        v
    }

    /// The kpagemap entry of the frame holding `gpa`, if it is in RAM.
    pub fn kpage(&self, gpa: u64) -> Option<Kpage> {
        let f = (gpa / PAGE_SIZE) as usize;
        let (&map_count, &fl) = (self.count.get(f)?, self.flags.get(f)?);
        Some(Kpage {
            gpa: f as u64 * PAGE_SIZE,
            map_count,
            flags: Self::final_flags(map_count, fl),
        })
    }

    fn final_flags(map_count: u32, fl: u8) -> FrameFlags {
        if map_count == 0 && fl & FrameFlags::TABLE.0 == 0 {
            FrameFlags(fl | FrameFlags::FREE.0)
        } else {
            FrameFlags(fl)
        }
    }

    /// The whole kpagemap, one entry per RAM frame in address order.
    pub fn kpagemap(&self) -> impl Iterator<Item = Kpage> + '_ {
        self.count
            .iter()
            .zip(&self.flags)
            .enumerate()
            .map(|(f, (&c, &fl))| Kpage {
                gpa: f as u64 * PAGE_SIZE,
                map_count: c,
                flags: Self::final_flags(c, fl),
            })
    }

    /// Frame counts over all of RAM.
    pub fn totals(&self) -> FrameTotals {
        let mut t = FrameTotals {
            ram: self.count.len() as u64,
            ..Default::default()
        };
        for (&c, &fl) in self.count.iter().zip(&self.flags) {
            t.user += (c > 0) as u64;
            t.shared += (c > 1) as u64;
            let table = fl & FrameFlags::TABLE.0 != 0;
            t.table += table as u64;
            t.free += (c == 0 && !table) as u64;
        }
        t
    }

    /// The pagemap of vmspace `id`: every resident 4 KiB page in address
    /// order, with its frame, A/M bits and the snapshot's map count. The
    /// vpagetables are walked again (entries changed since the snapshot
    /// show their new frames; map counts are the snapshot's). Pages that
    /// are not resident are left out.
    pub fn pagemap(&self, id: u64) -> Result<Vec<PageEntry>, MemstatError> {
        let i = self
            .usage
            .iter()
            .position(|u| u.id == id)
            .ok_or(MemstatError::UnknownVmspace(id))?;
        let ram = self.ram.as_ref().ok_or(MemstatError::UnknownVmspace(id))?;
        struct Pm<'a> {
            count: &'a [u32],
            out: Vec<PageEntry>,
        }
        impl Visitor for Pm<'_> {
            fn table(&mut self, _: u64) {}
            fn bad(&mut self) {}
            fn leaf(&mut self, va: u64, frame: u64, pages: u64, e: Vpte, level: u8) {
                for p in 0..pages {
                    let fr = frame + p * PAGE_SIZE;
                    self.out.push(PageEntry {
                        va: va + p * PAGE_SIZE,
                        frame: fr,
                        accessed: e.accessed(),
                        modified: e.modified(),
                        writable: e.writable(),
                        level,
                        map_count: self
                            .count
                            .get((fr / PAGE_SIZE) as usize)
                            .copied()
                            .unwrap_or(0),
                    });
                }
            }
        }
        let mut pm = Pm {
            count: &self.count,
            out: Vec::new(),
        };
        for a in &self.areas[i] {
            match *a {
                Area::Table {
                    start,
                    end,
                    root: Some(root),
                } => walk_range(ram, root, start, end, &mut pm),
                Area::Table { root: None, .. } => {}
                Area::Linear {
                    start,
                    end,
                    gpa,
                    writable,
                } => {
                    if !ram.contains(gpa, end - start) {
                        continue;
                    }
                    for va in (start..end).step_by(PAGE_SIZE as usize) {
                        let fr = gpa + (va - start);
                        pm.out.push(PageEntry {
                            va,
                            frame: fr,
                            accessed: false,
                            modified: false,
                            writable,
                            level: 0,
                            map_count: self.count[(fr / PAGE_SIZE) as usize],
                        });
                    }
                }
            }
        }
        Ok(pm.out)
    }

    /// `memrank`: a readable table of all vmspaces, largest PSS first, in
    /// KiB, followed by the frame totals.
    pub fn to_table(&self) -> String {
        let kib = PAGE_SIZE / 1024;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:>6} {:<16} {:>12} {:>12} {:>14} {:>12} {:>12}",
            "ID", "NAME", "VSS KiB", "RSS KiB", "PSS KiB", "USS KiB", "REF KiB"
        );
        for u in self.ranked() {
            let name: String = u.name.chars().take(16).collect();
            let _ = writeln!(
                s,
                "{:>6} {:<16} {:>12} {:>12} {:>14.1} {:>12} {:>12}",
                u.id,
                name,
                u.vss_bytes / 1024,
                u.rss_pages * kib,
                u.pss_pages * kib as f64,
                u.uss_pages * kib,
                u.referenced_pages * kib
            );
        }
        let t = self.totals();
        let _ = writeln!(
            s,
            "frames: {} RAM, {} user ({} shared), {} vpagetable, {} free",
            t.ram, t.user, t.shared, t.table, t.free
        );
        s
    }

    /// `memrank --json`: `{"page_size", "frames": {...}, "vmspaces": [...]}`
    /// with the vmspaces largest PSS first.
    pub fn to_json(&self) -> String {
        let t = self.totals();
        let vms: Vec<String> = self.ranked().iter().map(|u| u.to_json()).collect();
        format!(
            "{{\"page_size\": {PAGE_SIZE}, \"frames\": {{\"ram\": {}, \"user\": {}, \"shared\": {}, \
             \"table\": {}, \"free\": {}}}, \"vmspaces\": [{}]}}",
            t.ram,
            t.user,
            t.shared,
            t.table,
            t.free,
            vms.join(", ")
        )
    }
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
    /// A readable report: the total and the ranges.
    pub fn to_table(&self) -> String {
        let mut s = format!(
            "vmspace {}: working set {} pages ({} KiB) in {} ranges\n",
            self.id,
            self.pages,
            self.bytes() / 1024,
            self.ranges.len()
        );
        for (a, b) in &self.ranges {
            let _ = writeln!(s, "  {a:#014x}-{b:#014x} {:>8} pages", (b - a) / PAGE_SIZE);
        }
        s
    }
    /// The same as JSON: `{"id", "pages", "bytes", "ranges": [[start, end], ...]}`.
    pub fn to_json(&self) -> String {
        let r: Vec<String> = self
            .ranges
            .iter()
            .map(|(a, b)| format!("[{a}, {b}]"))
            .collect();
        format!(
            "{{\"id\": {}, \"pages\": {}, \"bytes\": {}, \"ranges\": [{}]}}",
            self.id,
            self.pages,
            self.bytes(),
            r.join(", ")
        )
    }
}

/// The article's `clear_refs`: clear the A bit of every leaf VPTE of the
/// vmspace's vpagetable mappings and drop the hardware entries that would
/// hide new references. Returns how many VPTEs had A set. Linear mappings
/// have no A bits and are not tracked.
pub fn clear_refs(vms: &Vmspace) -> Result<usize, MemstatError> {
    Ok(vms.clear_accessed(0, USER_END)?)
}

/// Pages of `vms` referenced since the last [`clear_refs`]: first folds the
/// hardware accessed bits of fault-around neighbours into the VPTEs (like
/// [`Vmspace::harvest_accessed`]), then counts the leaf VPTEs with A set.
pub fn working_set(vms: &Vmspace) -> Result<WorkingSet, MemstatError> {
    vms.harvest_accessed();
    Ok(referenced(
        &vms.shared.machine.ram,
        vms.id(),
        &areas_of(vms),
    ))
}

fn referenced(ram: &Ram, id: u64, areas: &[Area]) -> WorkingSet {
    struct Ws {
        pages: u64,
        ranges: Vec<(u64, u64)>,
    }
    impl Visitor for Ws {
        fn table(&mut self, _: u64) {}
        fn bad(&mut self) {}
        fn leaf(&mut self, va: u64, _: u64, pages: u64, e: Vpte, _: u8) {
            if !e.accessed() {
                return;
            }
            self.pages += pages;
            let end = va + pages * PAGE_SIZE;
            match self.ranges.last_mut() {
                Some(r) if r.1 == va => r.1 = end,
                _ => self.ranges.push((va, end)),
            }
        }
    }
    let mut ws = Ws {
        pages: 0,
        ranges: Vec::new(),
    };
    for a in areas {
        if let Area::Table {
            start,
            end,
            root: Some(root),
        } = *a
        {
            walk_range(ram, root, start, end, &mut ws);
        }
    }
    WorkingSet {
        id,
        pages: ws.pages,
        ranges: ws.ranges,
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vptable::{FrameAlloc, VpTable};

    const RW: u64 = Vpte::RW | Vpte::U;
    const DATA: u64 = 0x1000_0000;

    struct World {
        ram: Ram,
        fa: FrameAlloc,
    }

    impl World {
        fn new() -> World {
            let ram = Ram::anonymous(64 << 20).unwrap();
            let fa = FrameAlloc::new(0x10_0000, 64 << 20).unwrap();
            World { ram, fa }
        }
        fn table(&mut self) -> VpTable {
            VpTable::new(&self.ram, &mut self.fa).unwrap()
        }
        fn map_new(&mut self, t: &VpTable, va: u64, pages: u64) -> Vec<u64> {
            (0..pages)
                .map(|i| {
                    let f = self.fa.alloc(&self.ram).unwrap();
                    t.map(&self.ram, &mut self.fa, va + i * PAGE_SIZE, f, RW)
                        .unwrap();
                    f
                })
                .collect()
        }
        fn map_frames(&mut self, t: &VpTable, va: u64, frames: &[u64]) {
            for (i, f) in frames.iter().enumerate() {
                t.map(&self.ram, &mut self.fa, va + i as u64 * PAGE_SIZE, *f, RW)
                    .unwrap();
            }
        }
        fn stats(&self, input: Vec<(u64, Vec<Area>)>) -> MemStats {
            MemStats::from_areas(
                self.ram.clone(),
                input
                    .into_iter()
                    .map(|(id, a)| (id, format!("v{id}"), a))
                    .collect(),
            )
            .unwrap()
        }
    }

    fn tab(start: u64, pages: u64, t: &VpTable) -> Area {
        Area::Table {
            start,
            end: start + pages * PAGE_SIZE,
            root: Some(t.root()),
        }
    }

    /// The seed's example: 1000 private + 1000 shared with one other.
    #[test]
    fn seed_example_pss_1500_uss_1000() {
        let mut w = World::new();
        let (ta, tb) = (w.table(), w.table());
        w.map_new(&ta, DATA, 1000);
        let shared = w.map_new(&ta, DATA + 1000 * PAGE_SIZE, 1000);
        w.map_frames(&tb, DATA, &shared);
        let s = w.stats(vec![
            (1, vec![tab(DATA, 2000, &ta)]),
            (2, vec![tab(DATA, 1000, &tb)]),
        ]);
        let a = s.usage(1).unwrap();
        assert_eq!(a.pss_pages, 1500.0);
        assert_eq!(a.uss_pages, 1000);
        assert_eq!(a.rss_pages, 2000);
        assert_eq!(a.shared_pages, 1000);
        assert_eq!(a.vss_bytes, 2000 * PAGE_SIZE);
        // Root, level 3, level 2 and four level-1 tables.
        assert_eq!(a.table_pages, 7);
        let b = s.usage(2).unwrap();
        assert_eq!((b.pss_pages, b.uss_pages, b.rss_pages), (500.0, 0, 1000));
        assert_eq!(s.ranked()[0].id, 1);
        let t = s.totals();
        assert_eq!((t.user, t.shared, t.table), (2000, 1000, 7 + 5));
        assert_eq!(t.user + t.table + t.free, t.ram);
        // Sum of PSS is the frames mapped.
        assert_eq!(a.pss_pages + b.pss_pages, t.user as f64);
        // kpagemap and pagemap agree.
        let k = s.kpage(shared[7]).unwrap();
        assert_eq!(k.map_count, 2);
        assert!(k.flags.contains(FrameFlags::USER));
        assert!(s
            .kpage(ta.root())
            .unwrap()
            .flags
            .contains(FrameFlags::TABLE));
        assert!(s.kpage(0).unwrap().flags.contains(FrameFlags::FREE));
        let pm = s.pagemap(1).unwrap();
        assert_eq!(pm.len(), 2000);
        assert_eq!(pm[1000].frame, shared[0]);
        assert_eq!(pm[1000].map_count, 2);
        assert_eq!(pm[0].map_count, 1);
        assert_eq!(s.pagemap(9), Err(MemstatError::UnknownVmspace(9)));
        // Reports.
        assert!(s.to_table().contains("1500.0") || s.to_table().contains("6000.0"));
        let j = s.to_json();
        assert!(j.contains("\"pss_pages\": 1500.000"), "{j}");
        assert!(a.to_table().contains("PSS"));
    }

    #[test]
    fn same_frame_twice_in_one_vmspace_counts_once_for_pss() {
        let mut w = World::new();
        let t = w.table();
        let f = w.map_new(&t, DATA, 1);
        w.map_frames(&t, DATA + PAGE_SIZE, &f);
        let s = w.stats(vec![(1, vec![tab(DATA, 2, &t)])]);
        let u = s.usage(1).unwrap();
        assert_eq!((u.rss_pages, u.pss_pages, u.uss_pages), (2, 1.0, 1));
        assert_eq!(s.kpage(f[0]).unwrap().map_count, 1);
    }

    #[test]
    fn large_pages_linear_and_bad_entries() {
        let mut w = World::new();
        let t = w.table();
        // A 2 MiB leaf at 0x4000_0000 onto frames [8 MiB, 10 MiB): create
        // the tables down to level 1, then overwrite the level-2 entry
        // (root[0] -> level 3 [1] -> level 2 [0]).
        t.leaf_gpa(&w.ram, Some(&mut w.fa), 0x4000_0000).unwrap();
        let root = t.root();
        let l3 = Vpte(w.ram.load(root).unwrap()).frame();
        let l2gpa = Vpte(w.ram.load(l3 + 8).unwrap()).frame();
        w.ram
            .store(l2gpa, Vpte::page(8 << 20, RW | Vpte::PS | Vpte::A).bits())
            .unwrap();
        // A valid entry pointing outside RAM, and a misaligned large one.
        w.ram
            .store(l2gpa + 8, Vpte::page(1 << 40, RW | Vpte::PS).bits())
            .unwrap();
        w.ram
            .store(l2gpa + 16, Vpte::page(0x1000, RW | Vpte::PS).bits())
            .unwrap();
        let area = Area::Table {
            start: 0x4000_0000,
            end: 0x4000_0000 + (6 << 20),
            root: Some(root),
        };
        let lin = Area::Linear {
            start: 0x40_0000,
            end: 0x40_2000,
            gpa: 0,
            writable: false,
        };
        let s = w.stats(vec![(1, vec![area, lin]), (2, vec![lin])]);
        let u = s.usage(1).unwrap();
        assert_eq!(u.rss_pages, 512 + 2);
        assert_eq!(u.large_pages, 512);
        assert_eq!(u.linear_pages, 2);
        assert_eq!(u.referenced_pages, 512);
        assert_eq!(u.bad_entries, 2);
        assert_eq!(u.pss_pages, 513.0);
        assert_eq!(u.uss_pages, 512);
        assert!(s.kpage(9 << 20).unwrap().flags.contains(FrameFlags::LARGE));
        assert!(s.kpage(0).unwrap().flags.contains(FrameFlags::LINEAR));
        // A range that starts inside the large page sees only its tail.
        let part = Area::Table {
            start: 0x4000_0000 + (1 << 20),
            end: 0x4000_0000 + (2 << 20),
            root: Some(root),
        };
        let s = w.stats(vec![(3, vec![part])]);
        assert_eq!(s.usage(3).unwrap().rss_pages, 256);
        let pm = s.pagemap(3).unwrap();
        assert_eq!(pm[0].frame, (8 << 20) + (1 << 20));
        assert_eq!(pm[0].level, 2);
        let ws = referenced(&w.ram, 3, &[part]);
        assert_eq!(ws.pages, 256);
        assert_eq!(
            ws.ranges,
            vec![(0x4000_0000 + (1 << 20), 0x4000_0000 + (2 << 20))]
        );
    }

    #[test]
    fn garbage_tables_are_bounded_and_safe() {
        let w = World::new();
        // A root whose every entry points back at itself: the walk follows
        // it for four levels, then treats root entries as leaves.
        let root = 0x20_0000u64;
        for i in 0..512 {
            w.ram
                .store(root + 8 * i, Vpte::page(root, RW).bits())
                .unwrap();
        }
        let area = Area::Table {
            start: 0,
            end: 64 * PAGE_SIZE,
            root: Some(root),
        };
        let s = w.stats(vec![(1, vec![area])]);
        let u = s.usage(1).unwrap();
        assert_eq!(u.rss_pages, 64);
        assert_eq!(u.pss_pages, 1.0, "all 64 pages are the same frame");
        assert_eq!(u.table_pages, 1);
        // Root outside RAM or unaligned: nothing, no panic.
        for root in [1 << 40, 0x20_0008] {
            let a = Area::Table {
                start: 0,
                end: USER_END,
                root: Some(root),
            };
            assert_eq!(w.stats(vec![(1, vec![a])]).usage(1).unwrap().rss_pages, 0);
        }
    }

    #[test]
    fn empty_snapshot_and_json_escaping() {
        let s = MemStats::collect(&[]).unwrap();
        assert!(s.usages().is_empty());
        assert_eq!(s.totals(), FrameTotals::default());
        assert_eq!(json_str("a\"b\\\n\u{1}"), "\"a\\\"b\\\\\\n\\u0001\"");
        let ws = WorkingSet {
            id: 1,
            pages: 2,
            ranges: vec![(0x1000, 0x3000)],
        };
        assert_eq!(
            ws.to_json(),
            "{\"id\": 1, \"pages\": 2, \"bytes\": 8192, \"ranges\": [[4096, 12288]]}"
        );
    }
}
