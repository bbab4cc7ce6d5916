//! A vmspace's hardware tables as a whole: started over at execve
//! ([`Vmspace::reset_hw`]), handed back when its process is gone
//! ([`Vmspace::retire`]), asked whether a range has entries
//! ([`Vmspace::hw_mapped`]).

use super::*;

impl Vmspace {
    /// Does any page of `[start, end)` have a hardware entry now? Where
    /// none has, removing or downgrading the range's mappings queues no
    /// command for the guest (nothing for a vCPU to apply or forget), so a
    /// vkernel may do it without the vproc leaving user mode (the exitless
    /// server's munmap and mprotect). Another vCPU running the vmspace may
    /// install an entry right after: callers check with no other thread of
    /// the address space able to run.
    ///
    /// ```no_run
    /// # fn f(vms: &vkernel_core::vmspace::Vmspace) {
    /// if !vms.hw_mapped(0x40_0000, 0x60_0000) { /* no invalidation needed */ }
    /// # }
    /// ```
    pub fn hw_mapped(&self, start: u64, end: u64) -> bool {
        let st = self.lock();
        let Some(hw) = &st.hw else { return false };
        let pool = self.shared.machine.pool.lock().unwrap();
        let mut any = false;
        hw.for_each_leaf(&pool, start, end.min(USER_END), &mut |_, _| any = true);
        any
    }

    /// Start over with empty hardware page tables (a new PML4), as for an
    /// execve: nothing of the old mappings stays. The old tables go to the
    /// pool's scrub queue, which vCPUs carry when it costs them no exit; no
    /// command waits for the vproc's next entry, which only loads the new
    /// CR3. Returns `false`, changing nothing, while a vCPU runs the
    /// vmspace: invalidate with [`Mcontrol::Inval`] then.
    pub fn reset_hw(&self) -> Result<bool, VmspaceError> {
        let mut st = self.lock();
        if st.running != 0 {
            return Ok(false);
        }
        self.swap_hw(&mut st)?;
        Ok(true)
    }

    /// Give the vmspace empty tables (the shared upper half and the
    /// machine's pages) and the old ones back to the pool. Commands for
    /// the old tables die with them: they are zeroed now, and none is
    /// parked (`hwpt::park`) while one waits.
    fn swap_hw(&self, st: &mut VmState) -> Result<(), VmspaceError> {
        let machine = &self.shared.machine;
        let mut pool = machine.pool.lock().unwrap();
        let hw = new_hw(machine, &mut pool, st.slot)?;
        let park = st.pending.is_empty();
        st.pending.clear();
        st.gen += 1;
        if let Some(old) = st.hw.replace(hw) {
            pool.release_space(&old, &MACHINE_PAGES, park);
        }
        Ok(())
    }

    /// The vmspace's process is gone: remove every mapping, as a
    /// [`Vmspace::munmap`] of the whole user range would, but hand the
    /// hardware tables back to the pool at once instead of removing their
    /// entries one command at a time: no vCPU will run these tables again,
    /// and their reusable last-level pages are parked for the next process
    /// that maps the same windows the same way (see `hwpt::park`). Empty
    /// tables take their place, so the vmspace stays usable. While a vCPU
    /// runs it, this is that `munmap`.
    ///
    /// ```no_run
    /// # fn f(vms: &vkernel_core::vmspace::Vmspace) {
    /// vms.retire().unwrap();
    /// # }
    /// ```
    pub fn retire(&self) -> Result<(), VmspaceError> {
        let mut st = self.lock();
        if st.running != 0 {
            drop(st);
            return self.munmap(0, USER_END);
        }
        st.regions.clear();
        self.swap_hw(&mut st)
    }
}
