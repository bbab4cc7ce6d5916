//! 2 MiB pages end to end: a level-2 VPTE over a 2 MiB block becomes one
//! 2 MiB hardware entry (one fault maps 512 pages), A/M emulation on the
//! large leaf, splitting for a 4 KiB hole, memstat with large pages, and
//! the Linux personality's large pages (first touch, fork/COW, munmap,
//! mprotect, mremap, MADV_DONTNEED, brk) compared with native runs. Tests
//! SKIP loudly without /dev/kvm (and per compiler when one is missing).
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

mod common;

use common::*;
use vkernel::core::memstat::MemStats;
use vkernel::core::prelude::*;
use vkernel::core::vptable::LARGE;
use vkernel::guest::programs;
use vkernel::linux;

const DATA: u64 = 0x1000_0000;
const PAGES: u64 = LARGE / 4096;

/// Page faults taken so far, resolved in the vmspace or returned.
fn faults(e: &Env) -> u64 {
    let s = e.cpu.stats();
    s.resolved_faults + s.page_faults
}

/// A vmspace running `touch` with one large page at DATA; returns it, the
/// vpagetable and the block. The code page is faulted in first, so fault
/// counts that follow are the data's alone.
fn large_space(e: &mut Env, flags: u64) -> (Vmspace, VpTable, u64) {
    let vms = e.vmspace_with(programs::touch());
    let ram = e.m.ram().clone();
    let vpt = VpTable::new(&ram, &mut e.frames).unwrap();
    let block = e
        .frames
        .alloc_large(&ram)
        .unwrap()
        .expect("a free 2 MiB block");
    vpt.map_large(&ram, &mut e.frames, DATA, block, flags)
        .unwrap();
    vms.mmap(DATA, LARGE, Backing::PageTable).unwrap();
    vms.mcontrol(DATA, LARGE, Mcontrol::SetMap { root: vpt.root() })
        .unwrap();
    let mut f = frame(DATA, 0, 0);
    e.run_to_exit(&vms, &mut f);
    (vms, vpt, block)
}

#[test]
fn a_large_page_touched_sequentially_takes_one_fault() {
    let Some(mut e) = Env::new("a_large_page_touched_sequentially_takes_one_fault") else {
        return;
    };
    let (vms, vpt, block) = large_space(&mut e, Vpte::RW | Vpte::U);
    let pf = faults(&e);
    let mut f = frame(DATA, PAGES, 1);
    e.run_to_exit(&vms, &mut f);
    assert_eq!(faults(&e) - pf, 1, "one fault for 512 pages");
    assert_eq!(vms.stats().large_installed, 1);
    // The writes went to the block, byte i in page i.
    for i in [0u64, 1, 200, 511] {
        let mut b = [0u8; 1];
        e.m.ram().read(block + i * 4096, &mut b).unwrap();
        assert_eq!(b[0], i as u8);
    }
    // A and M live in the level-2 VPTE.
    let (_, l) = vpt.lookup_large(e.m.ram(), DATA).unwrap();
    assert!(l.accessed() && l.modified());
    // Reading it all back takes no fault.
    let mut f = frame(DATA, PAGES, 0);
    let sum = e.run_to_exit(&vms, &mut f);
    assert_eq!(sum, (0..PAGES).map(|i| i & 0xff).sum::<u64>());
    assert_eq!(faults(&e) - pf, 1);
    // memstat counts 512 resident pages, all large, PSS exact.
    let s = MemStats::collect(&[&vms]).unwrap();
    let u = s.usage(vms.id()).unwrap();
    assert_eq!(u.large_pages, PAGES);
    assert_eq!(u.rss_pages, PAGES + 1, "the block and the code page");
    assert_eq!(u.pss_pages, (PAGES + 1) as f64);
}

#[test]
fn a_large_page_read_then_written_gains_write_in_place() {
    let Some(mut e) = Env::new("a_large_page_read_then_written_gains_write_in_place") else {
        return;
    };
    let (vms, vpt, _) = large_space(&mut e, Vpte::RW | Vpte::U);
    let pf = faults(&e);
    let mut f = frame(DATA, PAGES, 0);
    assert_eq!(e.run_to_exit(&vms, &mut f), 0);
    let (_, l) = vpt.lookup_large(e.m.ram(), DATA).unwrap();
    assert!(l.accessed() && !l.modified(), "a read sets A only: {l:?}");
    // The first write faults once (M emulation), the entry is upgraded.
    let mut f = frame(DATA, PAGES, 1);
    e.run_to_exit(&vms, &mut f);
    assert_eq!(faults(&e) - pf, 2);
    let (_, l) = vpt.lookup_large(e.m.ram(), DATA).unwrap();
    assert!(l.modified());
    // Clearing M drops the 2 MiB entry: the next write is seen again.
    vms.clear_vpte_bits(DATA + 0x5000, Vpte::M).unwrap();
    let mut f = frame(DATA, PAGES, 1);
    e.run_to_exit(&vms, &mut f);
    assert_eq!(faults(&e) - pf, 3);
    assert!(vpt.lookup_large(e.m.ram(), DATA).unwrap().1.modified());
}

#[test]
fn a_4k_hole_in_a_split_large_page_faults_and_the_rest_stays() {
    let Some(mut e) = Env::new("a_4k_hole_in_a_split_large_page_faults_and_the_rest_stays") else {
        return;
    };
    let (vms, vpt, block) = large_space(&mut e, Vpte::RW | Vpte::U);
    let mut f = frame(DATA, PAGES, 1);
    e.run_to_exit(&vms, &mut f);
    // munmap of page 7: split the large VPTE, clear one leaf, invalidate.
    let ram = e.m.ram().clone();
    assert!(vpt.split_large(&ram, &mut e.frames, DATA).unwrap());
    let hole = DATA + 7 * 4096;
    assert_eq!(vpt.unmap(&ram, hole).unwrap().frame(), block + 7 * 4096);
    vms.mcontrol(hole, 4096, Mcontrol::Inval).unwrap();
    // Reading everything: the hole faults to the host, nothing else does.
    let mut f = frame(DATA, PAGES, 0);
    let mut host_faults = 0;
    let sum = loop {
        match e.run(&vms, &mut f) {
            Trap::PageFault { addr, reason, .. } => {
                assert_eq!(addr, hole);
                assert!(
                    matches!(reason, FaultReason::NotValid { level: 1 }),
                    "{reason:?}"
                );
                host_faults += 1;
                let fresh = e.frames.alloc(&ram).unwrap();
                vpt.map(&ram, &mut e.frames, hole, fresh, Vpte::RW | Vpte::U)
                    .unwrap();
            }
            Trap::Syscall if f.rax == programs::SYS_EXIT => break f.rdi,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(host_faults, 1);
    // Page 7 reads zero now; the others kept their bytes.
    assert_eq!(sum, (0..PAGES).map(|i| i & 0xff).sum::<u64>() - 7);
    let s = MemStats::collect(&[&vms]).unwrap();
    let u = s.usage(vms.id()).unwrap();
    assert_eq!((u.large_pages, u.rss_pages), (0, PAGES + 1));
}

#[test]
fn two_vmspaces_sharing_a_large_page_split_pss() {
    let Some(mut e) = Env::new("two_vmspaces_sharing_a_large_page_split_pss") else {
        return;
    };
    let (a, vpt, _) = large_space(&mut e, Vpte::U);
    let b = e.vmspace_with(programs::touch());
    b.mmap(DATA, LARGE, Backing::PageTable).unwrap();
    b.mcontrol(DATA, LARGE, Mcontrol::SetMap { root: vpt.root() })
        .unwrap();
    let pf = faults(&e);
    for v in [&a, &b] {
        let mut f = frame(DATA, PAGES, 0);
        assert_eq!(e.run_to_exit(v, &mut f), 0);
    }
    // One data fault each (plus b's code page).
    assert_eq!(faults(&e) - pf, 3);
    let s = MemStats::collect(&[&a, &b]).unwrap();
    for v in [&a, &b] {
        let u = s.usage(v.id()).unwrap();
        assert_eq!(u.pss_pages, PAGES as f64 / 2.0 + 1.0);
        assert_eq!(u.uss_pages, 1);
    }
}

// ---- the Linux personality ----

fn vk(prog: &std::path::Path, args: &[&str]) -> Run {
    common::vk(program(prog).args(args).env([PATH_BIN]), b"")
}

fn native(prog: &std::path::Path, args: &[&str]) -> String {
    let o = Native::new(prog).args(args).host_env().run();
    assert_eq!(o.status, 0, "native run failed: {o:?}");
    o.stdout
}

#[test]
fn linux_large_pages_keep_fork_munmap_mprotect_mremap_brk_exact() {
    for (cc, p) in common::kvm_guests(
        "linux_large_pages_keep_fork_munmap_mprotect_mremap_brk_exact",
        "largepages",
    ) {
        let want = native(&p, &[]);
        let r = vk(&p, &[]);
        assert_eq!(r.stdout, want, "{cc}: vkernel output differs from native");
        assert_eq!(r.report.status, linux::ExitStatus::Exited(0));
        assert!(want.contains("cow child: 256 p, 768 c"), "{want}");
        assert!(
            want.contains("hole: 511 pages kept, hole read faults 1"),
            "{want}"
        );
    }
}

#[test]
fn linux_first_touch_of_64_mib_takes_a_fault_per_2_mib() {
    for (cc, p) in common::kvm_guests(
        "linux_first_touch_of_64_mib_takes_a_fault_per_2_mib",
        "largepages",
    ) {
        let want = native(&p, &["touch", "64"]);
        let r = vk(&p, &["touch", "64"]);
        assert_eq!(r.stdout, want);
        let faults: u64 = r.report.cpu_stats.iter().map(|s| s.page_faults).sum();
        eprintln!("{cc}: touch 64 MiB: {faults} page faults");
        // 32 windows of 2 MiB, plus the program's own few pages (image,
        // stack, the misaligned head of the area). With 4 KiB pages and
        // fault-around (at most 128 pages a fault) it takes over 128.
        assert!(
            (32..32 + 16).contains(&faults),
            "{faults} page faults for 32 large pages"
        );
    }
}

#[test]
fn linux_large_pages_return_whole_blocks_and_split_ones_page_by_page() {
    use linux::mm::{Mm, PROT_READ, PROT_WRITE};
    let Some(machine) = machine(
        "linux_large_pages_return_whole_blocks_and_split_ones_page_by_page",
        128 << 20,
    ) else {
        return;
    };
    let mut mm = Mm::new(&machine).unwrap();
    let base = 0x4000_0000;
    mm.mmap(base, 8 << 20, PROT_READ | PROT_WRITE, true, false, None)
        .unwrap();
    let free0 = mm.free_frames();
    // One first touch per 2 MiB window maps the whole window.
    for i in 0..4u64 {
        mm.handle_fault(base + i * LARGE + 0x1234, Access::Write)
            .unwrap();
    }
    assert_eq!(mm.large_pages(), 4);
    assert_eq!(mm.resident_pages(), 4 * PAGES as usize);
    // 4 blocks, and the two table pages above the level-2 leaves.
    assert_eq!(mm.free_frames(), free0 - 4 * PAGES - 2);
    let t = mm.vmspace().walk(base + LARGE + 0x5000).unwrap();
    assert_eq!(t.level, 2);
    mm.write(base + LARGE + 0x5000, b"kept").unwrap();
    // munmap of one page splits that window only; the rest stays mapped.
    mm.munmap(base + LARGE, 4096).unwrap();
    assert_eq!(mm.large_pages(), 3);
    assert_eq!(mm.resident_pages(), 4 * PAGES as usize - 1);
    assert!(mm.vmspace().walk(base + LARGE).is_err());
    let t = mm.vmspace().walk(base + LARGE + 0x5000).unwrap();
    assert_eq!(t.level, 1);
    let mut b = [0u8; 4];
    mm.read(base + LARGE + 0x5000, &mut b).unwrap();
    assert_eq!(&b, b"kept");
    // mprotect of part of a window splits it too.
    mm.protect(base + 2 * LARGE, 4096, PROT_READ).unwrap();
    assert_eq!(mm.large_pages(), 2);
    assert!(!mm.vmspace().walk(base + 2 * LARGE).unwrap().vpte.writable());
    assert!(mm
        .vmspace()
        .walk(base + 2 * LARGE + 4096)
        .unwrap()
        .vpte
        .writable());
    // Unmapping everything gives every frame back; the vpagetable keeps
    // its table pages (those two and the two 4 KiB tables the splits made).
    mm.munmap(base, 8 << 20).unwrap();
    assert_eq!((mm.large_pages(), mm.resident_pages()), (0, 0));
    assert_eq!(mm.free_frames(), free0 - 4);
}

/// A first touch of 40,000 pages of one plain mmap (wherever it lands,
/// not 2 MiB aligned) takes about a fault per 2 MiB window: fault-around
/// in the misaligned head never spills into the next window, which then
/// gets a large page at its first touch (issue 26; it took one fault per
/// 128 pages, and 4 KiB pages to the end, before).
#[test]
fn linux_first_touch_at_any_alignment_takes_a_fault_per_2_mib() {
    for (cc, p) in common::kvm_guests(
        "linux_first_touch_at_any_alignment_takes_a_fault_per_2_mib",
        "largepages",
    ) {
        let want = native(&p, &["pages", "40000"]);
        let r = vk(&p, &["pages", "40000"]);
        assert_eq!(r.stdout, want);
        let faults: u64 = r.report.cpu_stats.iter().map(|s| s.page_faults).sum();
        eprintln!("{cc}: pages 40000: {faults} page faults");
        // 78 whole windows, the head and tail of the area (fault-around
        // doubling up to 128 pages a fault) and the program's own pages.
        assert!(faults <= 78 + 40, "{faults} page faults for 40,000 pages");
    }
}

/// VmRSS of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// Memory a vproc frees goes back to the host: the vkernel's resident
/// set grows by the 512 MiB a vproc touches and shrinks again when it
/// unmaps them (whole 2 MiB blocks are given back with MADV_DONTNEED or a
/// punched hole, issue 26), while the vkernel keeps running.
#[test]
fn linux_freed_memory_goes_back_to_the_host() {
    use std::io::{BufRead, Write};
    let test = "linux_freed_memory_goes_back_to_the_host";
    let Some(vk) = vkernel_binary(test) else {
        return;
    };
    let Some(p) = kvm_guest(test, "largepages", "gcc") else {
        return;
    };
    let p = p.to_str().expect("UTF-8 path").to_string();
    let mut cmd = vk_cmd(&vk, &["--mem", "1024", "--", &p, "rss", "512"]);
    let (mut child, mut out, line) = spawn_first_line(
        std::mem::replace(&mut cmd, std::process::Command::new("true")),
        std::process::Stdio::piped(),
        std::process::Stdio::inherit(),
    );
    assert_eq!(line, "touched\n");
    let touched = rss_kib(child.id());
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(b"\n").expect("write");
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    assert_eq!(line, "freed\n");
    let freed = rss_kib(child.id());
    eprintln!("{test}: VmRSS {touched} KiB touched, {freed} KiB freed");
    stdin.write_all(b"\n").expect("write");
    drop(stdin);
    let st = wait_within(&mut child, test, std::time::Duration::from_secs(60));
    assert!(st.success(), "{st}");
    assert!(touched > 512 * 1024, "touched: {touched} KiB");
    assert!(
        freed + 400 * 1024 < touched,
        "{freed} KiB after freeing, {touched} KiB before"
    );
}

/// A window first mapped with 4 KiB pages becomes one large page at a
/// later touch once it qualifies (issue 26's collapse, as khugepaged):
/// the pages already there keep their bytes, the rest reads zero, and the
/// small frames are given back. A window whose pages a fork shares
/// copy-on-write is left alone.
#[test]
fn linux_a_window_of_small_pages_collapses_into_a_large_one() {
    use linux::mm::{Mm, PROT_READ, PROT_WRITE};
    let Some(machine) = machine(
        "linux_a_window_of_small_pages_collapses_into_a_large_one",
        128 << 20,
    ) else {
        return;
    };
    let mut mm = Mm::new(&machine).unwrap();
    let base = 0x4000_0000;
    mm.mmap(base, 4 << 20, PROT_READ | PROT_WRITE, true, false, None)
        .unwrap();
    // Small pages first (as when no block was free).
    mm.set_large_pages(false);
    mm.handle_fault(base + 0x3000, Access::Write).unwrap();
    mm.write(base + 0x3000, b"kept").unwrap();
    let small = mm.resident_pages();
    assert!((1..512).contains(&small), "{small} pages");
    assert_eq!(mm.large_pages(), 0);
    let free0 = mm.free_frames();
    mm.set_large_pages(true);
    // A touch of a page not mapped yet in that window collapses it.
    mm.handle_fault(base + 0x10_0000, Access::Read).unwrap();
    assert_eq!(mm.large_pages(), 1);
    assert_eq!(mm.resident_pages(), PAGES as usize);
    assert_eq!(mm.vmspace().walk(base + 0x3000).unwrap().level, 2);
    let mut b = [0u8; 4];
    mm.read(base + 0x3000, &mut b).unwrap();
    assert_eq!(&b, b"kept");
    mm.read(base + 0x10_0000, &mut b).unwrap();
    assert_eq!(b, [0; 4]);
    // The small frames went back, the level-1 table too; one block taken.
    assert_eq!(mm.free_frames(), free0 + small as u64 + 1 - PAGES);
    // After a fork, the second window's small pages are shared: no
    // collapse there.
    mm.set_large_pages(false);
    mm.handle_fault(base + LARGE + 0x5000, Access::Write)
        .unwrap();
    mm.set_large_pages(true);
    let child = mm.fork(machine.vmspace_create().unwrap()).unwrap();
    mm.handle_fault(base + LARGE + 0x10_0000, Access::Read)
        .unwrap();
    assert_eq!(mm.vmspace().walk(base + LARGE + 0x5000).unwrap().level, 1);
    drop(child);
}

/// A deep stack (6 MiB, touched from the top down) gets large pages below
/// the top window, which holds exec's arguments (issue 26 item 2): a
/// third of the faults it took with 4 KiB pages (111), and the same
/// output as natively.
#[test]
fn linux_a_deep_stack_gets_large_pages() {
    for (cc, p) in common::kvm_guests("linux_a_deep_stack_gets_large_pages", "largepages") {
        let want = native(&p, &["stack", "6"]);
        let r = vk(&p, &["stack", "6"]);
        assert_eq!(r.stdout, want, "{cc}");
        let faults: u64 = r.report.cpu_stats.iter().map(|s| s.page_faults).sum();
        eprintln!("{cc}: stack 6 MiB: {faults} page faults");
        assert!(faults < 60, "{cc}: {faults} page faults for a 6 MiB stack");
    }
}

/// Program text in whole 2 MiB windows (tests/guests/bigtext.c: 6 MiB of
/// code, like a Go program's) is mapped with page cache blocks, one large
/// page per window (`linux::mm::pagecache::PageCache::get_large`): every
/// page's code runs, the kernel's copies from the text read the file's
/// bytes, a forked child shares the blocks and runs them too, and a page
/// made writable and changed by one process is that process's copy: the
/// program it execs next sees the file's bytes. Outputs equal native.
#[test]
fn linux_program_text_maps_whole_windows_with_page_cache_blocks() {
    let test = "linux_program_text_maps_whole_windows_with_page_cache_blocks";
    for (cc, p) in common::kvm_guests(test, "bigtext") {
        let path = p.display().to_string();
        for args in [vec!["run"], vec!["scribble", path.as_str()]] {
            let want = native(&p, &args);
            let opts = linux::kernel::Options {
                memstats: true,
                memstats_json: true,
                ..Default::default()
            };
            // The program from the host's file (through the page cache).
            let l = linux::launch::Launch::host_program(&p)
                .unwrap()
                .args(&args)
                .env([PATH_BIN])
                .root(common::host_root())
                .options(opts);
            let r = common::vk_watched(test, 120, l);
            assert_eq!(r.stdout, want, "{cc} {args:?}");
            assert_eq!(
                r.report.status,
                linux::ExitStatus::Exited(0),
                "{cc} {args:?}"
            );
            assert!(want.contains("read back 1536, child agrees"), "{want}");
            // The first vproc to exit (the forked child) maps the text's two
            // whole windows ([0x600000, 0xa00000)) large; after `scribble`
            // (whose write read its page alone into the cache) one of them.
            let stats = r.report.memstats.clone().unwrap_or_default();
            let large: u64 = stats
                .split("\"large_pages\": ")
                .skip(1)
                .filter_map(|s| {
                    s.split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .sum();
            eprintln!("{test}: {cc} {args:?}: {large} pages in large pages");
            let windows = if args[0] == "run" { 2 } else { 1 };
            assert!(
                large >= windows * PAGES,
                "{cc} {args:?}: {large} large ({stats})"
            );
        }
    }
}
