//! Collecting a snapshot: one pass over the vpagetables (through the shared
//! [`crate::walk_range`]) and linear mappings of a set of vmspaces, the
//! kpagemap counts, pagemaps and working sets.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::sync::Arc;

use vkernel_guest::x86::USER_END;

use super::{
    FrameFlags, FrameTotals, Kpage, MemStats, MemstatError, PageEntry, Usage, WorkingSet, PAGE_SIZE,
};
use crate::ram::Ram;
use crate::vmspace::{Backing, Vmspace};
use crate::vpte::Vpte;
use crate::walk_range::{walk_range, Leaf, Visitor, VpTables};

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
        self.flags[f] |= FrameFlags::TABLE.bits();
        if self.tlast[f] != self.marker {
            self.tlast[f] = self.marker;
            self.u.table_pages += 1;
        }
    }
    fn leaf(&mut self, l: Leaf) {
        let (frame, pages, e, level) = (l.frame, l.pages(), Vpte(l.raw), l.level);
        let mut fl = FrameFlags::USER.bits();
        self.u.rss_pages += pages;
        if e.accessed() {
            fl |= FrameFlags::ACCESSED.bits();
            self.u.referenced_pages += pages;
        }
        if e.modified() {
            fl |= FrameFlags::MODIFIED.bits();
            self.u.modified_pages += pages;
        }
        if level > 1 {
            fl |= FrameFlags::LARGE.bits();
            self.u.large_pages += pages;
        }
        self.frames(frame, pages, fl);
    }
    fn bad(&mut self, _: u64, _: u8) {
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
                    } => walk_range(&VpTables(&ram), root, start, end, &mut c),
                    Area::Table { root: None, .. } => {}
                    Area::Linear {
                        start, end, gpa, ..
                    } => {
                        let pages = (end - start) / PAGE_SIZE;
                        if ram.contains(gpa, end - start) && gpa.is_multiple_of(PAGE_SIZE) {
                            c.u.rss_pages += pages;
                            c.u.linear_pages += pages;
                            c.frames(
                                gpa,
                                pages,
                                FrameFlags::USER.bits() | FrameFlags::LINEAR.bits(),
                            );
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
        if map_count == 0 && fl & FrameFlags::TABLE.bits() == 0 {
            FrameFlags::from_bits_retain(fl | FrameFlags::FREE.bits())
        } else {
            FrameFlags::from_bits_retain(fl)
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
            let table = fl & FrameFlags::TABLE.bits() != 0;
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
            fn leaf(&mut self, l: Leaf) {
                let (va, frame, pages, e, level) = (l.va, l.frame, l.pages(), Vpte(l.raw), l.level);
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
                } => walk_range(&VpTables(ram), root, start, end, &mut pm),
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
}

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

pub(super) fn referenced(ram: &Ram, id: u64, areas: &[Area]) -> WorkingSet {
    struct Ws {
        pages: u64,
        ranges: Vec<(u64, u64)>,
    }
    impl Visitor for Ws {
        fn leaf(&mut self, l: Leaf) {
            let (va, pages, e) = (l.va, l.pages(), Vpte(l.raw));
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
            walk_range(&VpTables(ram), root, start, end, &mut ws);
        }
    }
    WorkingSet {
        id,
        pages: ws.pages,
        ranges: ws.ranges,
    }
}
