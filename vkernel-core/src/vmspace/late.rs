//! Parked tables taken over late: a window whose table was built fresh
//! (no parked page agreed when the image was set up) swaps it for a parked
//! one once the window has filled up and agrees.
//!
//! A dynamic program's loader shares a 2 MiB window with the libraries it
//! maps (`ld.so` and libc at the top of the mmap area). At execve only the
//! loader is mapped there, so the parked table of the last run of the
//! program, which maps libc too, differs in hundreds of entries and is not
//! taken (`Vmspace::adopt_parked`): the new table's shadows are built again,
//! one shadow fault per 8 pages touched (26 a run of `/bin/true` in libc
//! alone). Once the loader has mapped the libraries, the window's entries
//! are the last run's again but for its private pages: installing them
//! marks the window due (it now has at least half the entries of a parked
//! page of its own), and at the next exit ([`Vmspace::adopt_parked_late`],
//! called by the vkernel with no vCPU running the space and no command
//! waiting) the fresh table is compared
//! with the parked pages of its window, entry by entry, and the best one
//! (at least [`LATE_MIN`] entries kept, its differing entries in few runs)
//! takes its place: it gets the fresh table's entries where they differ
//! (the host writes them, the guest touches them, `CMD_TOUCH`, so a shadow
//! MMU drops exactly their shadows), the page-directory entry is pointed at
//! it (written by the host, touched by the guest) and the fresh page goes to
//! the scrub queue. Every address translates as before the swap; only the
//! table holding the entries changed, and with it the shadows that come
//! along. On a real MMU (nested paging) the flush that follows (the
//! generation bump) drops the paging-structure caches that still name the
//! fresh page.

use super::*;
use crate::hwpt::{agreement, Agreement, PtPool, ADOPT_DIFFER_MAX, ADOPT_RUNS_MAX, WINDOW};
use vkernel_guest::abi::{cmd, CMD_FLUSH, CMD_TOUCH};
use vkernel_guest::layout::SYS_VA;

/// A parked page is taken over late only when at least this many of its
/// present entries stay (as at `populate`, `hwpt::park::ADOPT_MIN`).
pub(crate) const LATE_MIN: usize = 16;

/// The windows of an image that may take over a parked table late.
#[derive(Debug, Default)]
pub(crate) struct Late {
    /// Windows that filled up (to half a parked page's entries) since the
    /// last exit: [`Vmspace::adopt_parked_late`] looks at them.
    due: Vec<u64>,
    /// Windows already looked at (each is, once an image).
    tried: Vec<u64>,
}

impl Vmspace {
    /// `Vmspace::install_pages` just installed entries in `windows`: those
    /// with a parked page of their own that they now fill to half its
    /// entries become due for a look at the next exit.
    pub(super) fn note_filled(st: &mut VmState, pool: &PtPool, windows: &[u64]) {
        let Some(hw) = st.hw.as_ref() else { return };
        for &w in windows {
            if st.late.due.contains(&w) || st.late.tried.contains(&w) {
                continue;
            }
            let parked = pool.parked_for(w);
            let Some(most) = parked.iter().map(|&p| pool.present(p)).min() else {
                continue;
            };
            let have = hw.window_table(pool, w).map_or(0, |t| pool.present(t));
            if have > 0 && 2 * have >= most {
                st.late.due.push(w);
            }
        }
    }
}

/// A parked page that can replace a window's table.
struct Swap {
    /// Entries that stay as they are.
    kept: usize,
    /// The parked page.
    page: u64,
    /// What each of its 512 entries must become.
    target: Vec<u64>,
    /// Runs of its entries to touch after they are rewritten.
    runs: Vec<(u64, u64)>,
}

impl Vmspace {
    /// At an exit, give windows whose tables were built fresh and have
    /// filled up since ([`Vmspace::note_filled`]) the parked table page
    /// that agrees best with them, if one agrees well (see the module
    /// docs). Does nothing while a vCPU runs the space or a command for it
    /// waits (the windows stay due). Returns how many tables were swapped.
    ///
    /// ```no_run
    /// # fn f(vms: &vkernel_core::vmspace::Vmspace) {
    /// let swapped = vms.adopt_parked_late();
    /// # let _ = swapped; }
    /// ```
    pub fn adopt_parked_late(&self) -> usize {
        let mut st = self.lock();
        if st.late.due.is_empty() || st.running != 0 || !st.pending.is_empty() {
            return 0;
        }
        let mut pool = self.shared.machine.pool.lock().unwrap();
        let due = std::mem::take(&mut st.late.due);
        st.late.tried.extend_from_slice(&due);
        let mut swapped = 0;
        for w in due {
            if MACHINE_PAGES.iter().any(|&m| m & !(WINDOW - 1) == w) {
                continue;
            }
            let Some(cur) = st.hw.as_ref().and_then(|hw| hw.window_table(&pool, w)) else {
                continue;
            };
            let best = pool
                .parked_for(w)
                .into_iter()
                .filter_map(|p| self.late_swap(&st, &pool, w, cur, p))
                .max_by_key(|s| s.kept);
            if let Some(s) = best {
                if self.apply_swap(&mut st, &mut pool, w, cur, s) {
                    swapped += 1;
                }
            }
        }
        swapped
    }

    /// How parked page `page` would replace `cur`, the table of window
    /// `w`: each entry becomes `cur`'s where that is present, else stays
    /// the parked one's where the vpagetable maps that page the same way,
    /// else empty. None when too few entries stay or too many differ.
    fn late_swap(&self, st: &VmState, pool: &PtPool, w: u64, cur: u64, page: u64) -> Option<Swap> {
        let same = |a: u64, b: u64| (a ^ b) & !(PTE_A | PTE_D) == 0;
        let mut target = Vec::with_capacity(512);
        let mut present = Vec::new();
        let mut differ = 0u64;
        for i in 0..512u64 {
            let (p, c) = (pool.entry(page, i), pool.entry(cur, i));
            let t = if c & PTE_P != 0 {
                c
            } else if p & PTE_P != 0 {
                match self.translate_full(st, w + i * PAGE_SIZE, Access::Read, Emulate::No) {
                    Ok((frame, flags, None)) if same(p, frame | flags) => p,
                    _ => 0,
                }
            } else {
                0
            };
            if p & PTE_P != 0 {
                let agrees = same(p, t);
                if !agrees {
                    differ += 1;
                    if differ > ADOPT_DIFFER_MAX {
                        return None;
                    }
                }
                present.push((i, agrees));
            }
            target.push(if p & PTE_P != 0 && same(p, t) { p } else { t });
        }
        let Agreement { kept, runs } = agreement(present.into_iter());
        (kept >= LATE_MIN && runs.len() <= ADOPT_RUNS_MAX).then_some(Swap {
            kept,
            page,
            target,
            runs,
        })
    }

    /// Carry out `s`: the parked page gets its target entries, the window's
    /// page-directory entry points at it, and the guest touches what
    /// changed before the vproc runs again. False, changing nothing, when
    /// the window's table is no longer `cur`.
    fn apply_swap(&self, st: &mut VmState, pool: &mut PtPool, w: u64, cur: u64, s: Swap) -> bool {
        let Some(hw) = st.hw.as_mut() else {
            return false;
        };
        let Some(pd_off) = hw.swap_table(pool, w, cur, s.page) else {
            return false;
        };
        for (i, &t) in (0u64..).zip(&s.target) {
            if pool.entry(s.page, i) != t {
                pool.set_entry(s.page, i, t);
            }
        }
        for &(first, n) in &s.runs {
            st.pending
                .push(cmd(CMD_TOUCH, SYS_VA + s.page + 8 * first, n));
        }
        st.pending.push(cmd(CMD_TOUCH, SYS_VA + pd_off, 1));
        st.pending.push(cmd(CMD_FLUSH, 0, 0));
        st.gen += 1;
        st.stats.tables_adopted += 1;
        st.stats.entries_kept += s.kept as u64;
        true
    }
}
