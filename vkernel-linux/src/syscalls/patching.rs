//! When a vproc's syscall sites are rewritten (`mm::patch` says how): at a
//! site's third call, counted in the process for anonymous code and over
//! every process for program files (`kernel::site_book`), and, for a file
//! whose sites are known, in each new mapping of it before the program
//! runs.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::kernel::site_book::patch_known;
use crate::kernel::Kernel;
use crate::mm::Mm;
use crate::Vproc;

impl Vproc {
    /// Patch the site whose `syscall` of call `nr` returned to `ret`: just
    /// now through the exit path, or earlier in this stay in the guest
    /// through the exitless server, which queued it (see `kernel::fast`),
    /// once the site is worth it. A call the server does not serve gains
    /// too: through the patched entry it leaves by the trampoline's own
    /// exit, without the `syscall` instruction (about 15 µs on our hosts).
    /// A site of execve or exit is only counted (its process is about to
    /// lose it: the rewrite is for the file's next processes).
    pub(crate) fn patch_site(&mut self, ret: u64, nr: u64) {
        let Some(k) = &self.k else { return };
        let Some(entry) = k.patch_entry else { return };
        // The `syscall`'s last byte is in the site's area; its return
        // address may be the first byte past it.
        let worth = match self.mm.file_pos(ret.wrapping_sub(1)) {
            Some((file, off)) => k.sites.note(file, off + 1, nr),
            None => self.mm.patches_mut().worth_patching(ret),
        };
        let ends = [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_exit,
            libc::SYS_exit_group,
        ]
        .iter()
        .any(|&n| u64::try_from(n) == Ok(nr));
        if !worth || ends {
            return;
        }
        let threads = self.mm.threads();
        match self.mm.patch_syscall(ret, nr, entry, threads) {
            Ok(()) => {
                k.patched.fetch_add(1, Ordering::Relaxed);
            }
            // Not a site of the pattern: nothing to do.
            Err(crate::mm::NoPatch::Pattern) => {}
            // A site the server may think patchable was not patched: stop
            // it sending such calls here.
            Err(_) if crate::syscalls::table::is_fast(nr) => self.mm.stop_patch_forcing(),
            Err(_) => {}
        }
    }

    /// What execve runs on the new program's memory before it gets
    /// hardware entries: its and its interpreter's known sites rewritten
    /// (see `kernel::site_book::patch_known`), and whether its `cpuid`s
    /// come to the vkernel (one of the first processes of its files:
    /// `SiteBook::learning_run`), unless the vproc is traced or its calls
    /// are logged.
    pub(crate) fn known_site_rewriter(&self) -> impl FnMut(&mut Mm) {
        let k = self.site_book_user();
        move |mm: &mut Mm| {
            if let Some(k) = &k {
                // execve left one thread.
                mm.patches_mut().set_known_gen(k.sites.generation());
                patch_known(mm, k, 1, 0, u64::MAX);
                if k.learn_cpuid {
                    let mut files: Vec<_> = mm
                        .code_files_in(0, u64::MAX)
                        .into_iter()
                        .map(|(_, _, f, _)| f)
                        .collect();
                    files.sort_unstable();
                    files.dedup();
                    let learn = k.sites.learning_run(&files);
                    mm.patches_mut().set_cpuid_learning(learn);
                }
            }
        }
    }

    /// The kernel whose known sites this vproc's new mappings get: None
    /// for a traced vproc (its calls must all stop) or one whose calls are
    /// logged.
    pub(crate) fn site_book_user(&self) -> Option<Arc<Kernel>> {
        (self.ptrace.is_none() && !self.trace)
            .then(|| self.k.clone())
            .flatten()
    }
}

impl Vproc {
    /// The vproc's `cpuid` at RIP raised #GP with CPUID faulting on (a
    /// learning process: see `kernel::site_book`): answer it as KVM would
    /// (from the vCPUs' table, read once), count its site in the site book
    /// and rewrite it once it is worth it (`mm::patch::cpuid`). False when
    /// the table cannot be read: faulting goes off for the process and the
    /// instruction runs again, under KVM.
    pub(crate) fn answer_cpuid(&mut self, cpu: &mut crate::core::cpu::Cpu) -> bool {
        let Some(k) = self.k.clone() else {
            return false;
        };
        let table = match k.cpuid_table.get() {
            Some(t) => t,
            None => {
                match cpu.cpuid_table() {
                    Ok(t) => k.cpuid_table.get_or_init(|| t),
                    Err(e) => {
                        log::warn!("vkernel: cannot read the vCPU's CPUID table ({e}): not answering cpuid");
                        self.mm.patches_mut().set_cpuid_learning(false);
                        cpu.set_cpuid_faulting(false);
                        return false;
                    }
                }
            }
        };
        let f = &mut self.frame;
        // cpuid reads EAX and ECX, the low halves.
        let low = |v: u64| u32::try_from(v & 0xffff_ffff).unwrap_or(0);
        let (leaf, subleaf) = (low(f.rax), low(f.rcx));
        let [a, b, c, d] = table.answer(leaf, subleaf);
        let whole_leaf = f.rax == u64::from(leaf);
        (f.rax, f.rbx, f.rcx, f.rdx) = (a.into(), b.into(), c.into(), d.into());
        f.rip = f.rip.wrapping_add(2);
        let ret = f.rip;
        k.cpuid_counts[0].fetch_add(1, Ordering::Relaxed);
        // Only a site whose `mov eax, leaf` may have set RAX is a candidate.
        if whole_leaf && self.site_book_user().is_some() {
            let nr = crate::mm::cpuid_book_nr(leaf);
            let worth = match self.mm.file_pos(ret.wrapping_sub(1)) {
                Some((file, off)) => k.sites.note(file, off + 1, nr),
                None => self.mm.patches_mut().worth_patching(ret),
            };
            if worth {
                let threads = self.mm.threads();
                crate::kernel::site_book::patch_cpuid(&mut self.mm, &k, ret, leaf, threads);
            }
        }
        true
    }
}
