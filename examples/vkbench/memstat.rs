//! `memstat`: PSS of a 1 GiB vmspace computed from its vpagetable
//! (`MemStats::collect`), against the floor a native process pays for the
//! same question: reading /proc/self/smaps_rollup while 1 GiB of anonymous
//! memory is resident in this very process. Both in the same run.
//!
//! The vmspace maps 262144 distinct 4 KiB frames through 4 KiB VPTEs (the
//! worst case for a walk; large VPTEs are cheaper). The frames' contents do
//! not matter to the accounting, so they are not touched: only the
//! vpagetable pages are.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::time::Instant;

use vkernel::core::memstat::MemStats;
use vkernel::core::prelude::*;

const GIB: u64 = 1 << 30;
const PAGES: u64 = GIB / 4096;
const DATA_VA: u64 = 0x1_0000_0000;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// (`Rss` in kB, `Pss` in kB) from an smaps_rollup text.
fn rollup(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// Seconds per smaps_rollup read and the resident pages it reported.
fn native(rounds: usize) -> Option<(f64, u64)> {
    // vec! of a non-zero byte writes every page: 1 GiB resident in 4 KiB
    // pages (transparent huge pages are used only where madvised on this
    // setup; AnonHugePages is printed so a reader can tell).
    let mem = vec![1u8; GIB as usize];
    let mut samples = Vec::new();
    let mut text = String::new();
    for _ in 0..rounds {
        let t = Instant::now();
        text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
        std::hint::black_box(rollup(&text));
        samples.push(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&mem);
    drop(mem);
    if let Some(l) = text.lines().find(|l| l.starts_with("AnonHugePages:")) {
        eprintln!("vkbench memstat: native {l}");
    }
    Some((median(&mut samples), rollup(&text).0 / 4))
}

pub fn measure(quick: bool) -> Vec<(String, f64)> {
    let rounds = if quick { 3 } else { 9 };
    let mut out = Vec::new();

    match native(rounds) {
        Some((secs, pages)) => {
            eprintln!(
                "vkbench memstat: smaps_rollup of {pages} resident pages in {:.3} ms",
                secs * 1e3
            );
            out.push(("native_smaps_ms".to_string(), secs * 1e3));
            out.push(("native_smaps_pages_per_s".to_string(), pages as f64 / secs));
        }
        None => {
            eprintln!("vkbench memstat: /proc/self/smaps_rollup is not readable");
            out.push(("native_smaps_pages_per_s".to_string(), f64::NAN));
        }
    }

    let machine = match Machine::builder().ram_size(GIB + (16 << 20)).build() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("vkbench memstat: {e}");
            out.push(("pss_pages_per_s".to_string(), f64::NAN));
            return out;
        }
    };
    let ram = machine.ram();
    // Tables come from above the data frames.
    let mut frames = FrameAlloc::new(GIB, GIB + (16 << 20)).unwrap();
    let vpt = VpTable::new(ram, &mut frames).unwrap();
    let t = Instant::now();
    for i in 0..PAGES {
        vpt.map(
            ram,
            &mut frames,
            DATA_VA + i * 4096,
            i * 4096,
            Vpte::RW | Vpte::U | Vpte::A,
        )
        .unwrap();
    }
    eprintln!(
        "vkbench memstat: built a 1 GiB vpagetable in {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let vms = machine.vmspace_create().unwrap();
    vms.mmap(DATA_VA, GIB, Backing::PageTable).unwrap();
    vms.mcontrol(DATA_VA, GIB, Mcontrol::SetMap { root: vpt.root() })
        .unwrap();

    let mut samples = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let s = MemStats::collect(&[&vms]).unwrap();
        let dt = t.elapsed().as_secs_f64();
        let u = s.usage(vms.id()).unwrap();
        assert_eq!(u.pss_pages, PAGES as f64, "PSS of the 1 GiB vmspace");
        assert_eq!(u.uss_pages, PAGES);
        samples.push(dt);
    }
    let secs = median(&mut samples);
    eprintln!(
        "vkbench memstat: PSS of a 1 GiB vmspace in {:.3} ms (goal: under 50 ms)",
        secs * 1e3
    );
    out.push(("pss_1gib_ms".to_string(), secs * 1e3));
    out.push(("pss_pages_per_s".to_string(), PAGES as f64 / secs));

    // The same memory shared with a second ("forked") vmspace: the frame
    // table now sees two mappers per frame.
    let child = machine.vmspace_create().unwrap();
    child.mmap(DATA_VA, GIB, Backing::PageTable).unwrap();
    child
        .mcontrol(DATA_VA, GIB, Mcontrol::SetMap { root: vpt.root() })
        .unwrap();
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let s = MemStats::collect(&[&vms, &child]).unwrap();
        samples.push(t.elapsed().as_secs_f64());
        assert_eq!(s.usage(vms.id()).unwrap().pss_pages, PAGES as f64 / 2.0);
    }
    out.push((
        "pss_2x1gib_shared_ms".to_string(),
        median(&mut samples) * 1e3,
    ));
    out
}
