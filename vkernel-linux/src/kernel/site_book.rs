//! The syscall sites of program files, counted across processes.
//!
//! Syscall patching (`mm::patch`) rewrites a site once it has made
//! [`PATCH_AFTER`] calls. Counted per process, a site that every fresh
//! process calls once or twice (a fork+exec loop's `busybox true`: its
//! `set_tid_address`, `prlimit64`, `getrandom`, `prctl` sites) would never
//! be rewritten, and each of its calls would execute `syscall` (15-32 µs
//! on our hosts). The book counts the calls of sites in private mappings
//! of files by the file and the offset of the site's return address, over
//! every process of the vkernel: a site known to be called
//! ([`SiteBook::known_in`]) is rewritten in each new mapping of its file
//! before the program runs (at execve, and after a library's mmap), where
//! the tables are fresh and a private copy of a code page costs no guest
//! work.
//!
//! `cpuid` sites are counted in the same book (`mm::patch::cpuid`,
//! entries tagged by `cpuid_book_nr`): the first [`LEARN_RUNS`] processes
//! of a program file run with CPUID faulting on, so that their `cpuid`s
//! come to the vkernel ([`SiteBook::learning_run`]); later ones start with
//! the known sites rewritten and run with it off (a site that cannot be
//! rewritten then costs KVM's emulation, less than a trap).
//!
//! A process that started before a site became known still runs it from
//! its own (unrewritten) text: a shell whose fork children call
//! `set_robust_list`, `rt_sigaction` and `execve` through sites the shell
//! itself never calls. The book's generation counts the sites that became
//! known; at each fork the parent rewrites the sites known since its last
//! rewrite ([`refresh_known`]), so its children inherit them rewritten.
//!
//! Only the place is remembered; the bytes are checked again at each
//! rewrite (`Mm::patch_plan`), so a file whose code changed gets no
//! rewrite that does not fit it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::Kernel;
use crate::mm::{cpuid_book_leaf, Mm, PATCH_AFTER};

/// Most files the book follows.
const MAX_FILES: usize = 256;
/// Most sites it follows in one file.
const MAX_SITES_PER_FILE: usize = 1024;
/// Processes of a program file whose `cpuid`s come to the vkernel: a site
/// each of them runs once is known after them.
pub(crate) const LEARN_RUNS: u32 = PATCH_AFTER;

/// A file as the page cache names it: (device, inode).
pub(crate) type FileId = (u64, u64);

/// The sites of one file: the file offset of each site's return address
/// -> (the call it makes, calls counted).
type FileSites = HashMap<u64, (u64, u32)>;

/// The kernel-wide count of syscall sites in program files.
#[derive(Default)]
pub(crate) struct SiteBook {
    files: Mutex<HashMap<FileId, FileSites>>,
    /// Learning processes started so far, by program file.
    learners: Mutex<HashMap<FileId, u32>>,
    /// Sites that became known so far (their [`PATCH_AFTER`]th call).
    generation: AtomicU64,
}

impl SiteBook {
    /// A call `nr` returned to file offset `off` of `file`: is the site
    /// now worth rewriting (its call number [`PATCH_AFTER`] or later,
    /// counted over every process)? Past the book's size limits, every
    /// call is.
    pub(crate) fn note(&self, file: FileId, off: u64, nr: u64) -> bool {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if !files.contains_key(&file) && files.len() >= MAX_FILES {
            return true;
        }
        let sites = files.entry(file).or_default();
        if !sites.contains_key(&off) && sites.len() >= MAX_SITES_PER_FILE {
            return true;
        }
        let e = sites.entry(off).or_insert((nr, 0));
        // A different call at the same place: the file changed, count anew.
        if e.0 != nr {
            *e = (nr, 0);
        }
        e.1 = e.1.saturating_add(1);
        if e.1 == PATCH_AFTER {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
        e.1 >= PATCH_AFTER
    }

    /// How many sites became known so far: a process whose memory saw an
    /// older count has sites to rewrite ([`refresh_known`]).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// A process of the program files `files` (its program and
    /// interpreter) starts: is it one of the first [`LEARN_RUNS`] of any
    /// of them, whose `cpuid`s come to the vkernel to be counted? Counts
    /// it for each file that still learns.
    pub(crate) fn learning_run(&self, files: &[FileId]) -> bool {
        let mut l = self.learners.lock().unwrap_or_else(|e| e.into_inner());
        let mut learning = false;
        for f in files {
            if !l.contains_key(f) && l.len() >= MAX_FILES {
                continue;
            }
            let n = l.entry(*f).or_insert(0);
            if *n < LEARN_RUNS {
                *n += 1;
                learning = true;
            }
        }
        learning
    }

    /// The sites of `file` worth rewriting whose return address lies in
    /// the file range `[start, end)`: (file offset, call).
    pub(crate) fn known_in(&self, file: FileId, start: u64, end: u64) -> Vec<(u64, u64)> {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sites) = files.get(&file) else {
            return Vec::new();
        };
        let mut v: Vec<(u64, u64)> = sites
            .iter()
            .filter(|(&off, &(_, n))| n >= PATCH_AFTER && off >= start && off < end)
            .map(|(&off, &(nr, _))| (off, nr))
            .collect();
        v.sort_unstable();
        v
    }
}

/// Rewrite, before the program runs them, the known sites
/// (`SiteBook::known_in`) of the program files mapped executable in
/// `[start, end)` of `mm`, which `threads` threads share: at execve (the
/// program and its interpreter, before their pages get hardware entries)
/// and after mmap (a library, before it is touched). A private copy of a
/// code page then costs no guest work, and every call of those sites
/// skips the `syscall` instruction from the first. Not for a traced vproc
/// (its calls must all stop) or one whose calls are logged: the callers
/// check. Returns how many sites it rewrote.
pub(crate) fn patch_known(mm: &mut Mm, k: &Kernel, threads: usize, start: u64, end: u64) -> u64 {
    let Some(entry) = k.patch_entry else { return 0 };
    let (mut calls, mut cpuids) = (0, 0);
    for (vs, ve, file, off) in mm.code_files_in(start, end) {
        let len = ve - vs;
        for (site, nr) in k.sites.known_in(file, off, off.saturating_add(len)) {
            let ret = vs + (site - off);
            match cpuid_book_leaf(nr) {
                Some(leaf) => cpuids += u64::from(patch_cpuid(mm, k, ret, leaf, threads)),
                None => calls += u64::from(mm.patch_syscall(ret, nr, entry, threads).is_ok()),
            }
        }
    }
    if calls + cpuids > 0 {
        // Every process of the file writes the same bytes: share them.
        mm.share_patched(start, end);
        // The stubs run as soon as the sites do: their pages get hardware
        // entries now (host writes only), not a fault each.
        let pages: Vec<u64> = mm.patches().stub_pages().collect();
        for p in pages {
            let _ = mm.vmspace().populate(p, p + crate::mm::PAGE);
        }
    }
    k.patched.fetch_add(calls, Ordering::Relaxed);
    calls + cpuids
}

/// Rewrite in `mm` (of a running process, which `threads` threads share)
/// the sites that became known since its program files last had theirs
/// rewritten: at fork, in the parent, so that the child inherits them.
/// Returns how many sites it rewrote.
pub(crate) fn refresh_known(mm: &mut Mm, k: &Kernel, threads: usize) -> u64 {
    let g = k.sites.generation();
    if mm.patches().known_gen() == g {
        return 0;
    }
    mm.patches_mut().set_known_gen(g);
    patch_known(mm, k, threads, 0, u64::MAX)
}

/// Rewrite the `cpuid` of `leaf` returning to `ret` into its answer from
/// the vCPUs' table (`mm::patch::cpuid`), in `mm`, which `threads` threads
/// share. Nothing before the kernel has read the table (no `cpuid` was
/// answered yet) or without patching. Counted when done.
pub(crate) fn patch_cpuid(mm: &mut Mm, k: &Kernel, ret: u64, leaf: u32, threads: usize) -> bool {
    let (Some(entry), Some(t)) = (k.patch_entry, k.cpuid_table.get()) else {
        return false;
    };
    let answer = |l: u32, s: u32| t.answer(l, s);
    let how: (&dyn Fn(u32, u32) -> [u32; 4], bool) = (&answer, t.varies_with_subleaf(leaf));
    let done = mm.patch_cpuid(ret, leaf, how, entry, threads).is_ok();
    if done {
        k.cpuid_counts[1].fetch_add(1, Ordering::Relaxed);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_count_across_processes_and_become_known() {
        let b = SiteBook::default();
        let f = (3, 42);
        assert!(!b.note(f, 0x1234, 39));
        assert!(!b.note(f, 0x1234, 39), "a second process's call");
        assert!(b.known_in(f, 0, 0x10_0000).is_empty());
        assert!(b.note(f, 0x1234, 39), "the third call anywhere");
        assert_eq!(b.known_in(f, 0, 0x10_0000), vec![(0x1234, 39)]);
        assert!(
            b.known_in(f, 0x2000, 0x10_0000).is_empty(),
            "outside the range"
        );
        assert!(b.known_in((3, 43), 0, 0x10_0000).is_empty(), "another file");
        // Another call at the same place: the file changed.
        assert!(!b.note(f, 0x1234, 60));
        assert!(b.known_in(f, 0, 0x10_0000).is_empty());
    }

    #[test]
    fn the_generation_counts_sites_as_they_become_known() {
        let b = SiteBook::default();
        let f = (3, 42);
        assert_eq!(b.generation(), 0);
        b.note(f, 0x1234, 39);
        b.note(f, 0x1234, 39);
        assert_eq!(b.generation(), 0, "not known yet");
        b.note(f, 0x1234, 39);
        assert_eq!(b.generation(), 1, "known at its third call");
        b.note(f, 0x1234, 39);
        assert_eq!(b.generation(), 1, "later calls change nothing");
        for _ in 0..PATCH_AFTER {
            b.note(f, 0x2000, 1);
        }
        assert_eq!(b.generation(), 2, "another site");
    }

    #[test]
    fn the_first_processes_of_a_file_learn() {
        let b = SiteBook::default();
        let (bb, ld) = ((1, 1), (1, 2));
        for _ in 0..LEARN_RUNS {
            assert!(b.learning_run(&[bb]));
        }
        assert!(!b.learning_run(&[bb]), "busybox is learnt");
        assert!(
            b.learning_run(&[bb, ld]),
            "a program with a new interpreter"
        );
        assert!(!b.learning_run(&[]));
    }

    #[test]
    fn past_its_limits_every_call_is_worth_a_rewrite() {
        let b = SiteBook::default();
        for i in 0..MAX_SITES_PER_FILE as u64 {
            b.note((1, 1), i * 8, 0);
        }
        assert!(b.note((1, 1), 1 << 40, 0));
        for i in 0..MAX_FILES as u64 {
            b.note((2, i), 0, 0);
        }
        assert!(b.note((9, 9), 0, 0));
    }
}
