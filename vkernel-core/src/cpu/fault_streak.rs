//! Telling a page fault that keeps coming back without progress (a
//! hardware entry the host cannot make the guest see) from the same
//! fault met again and again by different vprocs or after progress.
//!
//! A fault the vpagetable resolves resumes the vproc without leaving
//! [`super::Cpu::run`]; if the instruction faults again at the same
//! address, and again, the vproc makes no progress and would spin inside
//! `run` for ever. [`FaultStreak`] counts such faults; the run gives up
//! with [`super::RunError::FaultLoop`] at [`FAULT_LOOP_MAX`].
//!
//! Only faults of one vmspace at one address from one instruction count,
//! and a run that starts anywhere but at that instruction of that vmspace
//! ends the streak: the vproc went somewhere. Before, consecutive faults
//! at one address counted whoever made them: 64 fresh children of one
//! parent, each faulting once on the same text page as its first touch,
//! killed the 64th with SIGSEGV.

/// Resolved faults at one place before the run reports a loop.
pub const FAULT_LOOP_MAX: u32 = 64;

/// Consecutive resolved faults of one vmspace at one address and RIP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStreak {
    /// (vmspace id, fault address, faulting RIP) of the streak.
    at: Option<(u64, u64, u64)>,
    /// Faults in it.
    count: u32,
}

impl FaultStreak {
    /// A run of vmspace `vms` starts at `rip`: anywhere but the streak's
    /// instruction of its vmspace, the vproc moved on.
    pub fn start_run(&mut self, vms: u64, rip: u64) {
        if self.at.is_some_and(|(v, _, r)| (v, r) != (vms, rip)) {
            self.clear();
        }
    }

    /// A fault at `addr` from `rip` in vmspace `vms` was resolved: true
    /// when that makes [`FAULT_LOOP_MAX`] in a row (the streak ends).
    pub fn resolved(&mut self, vms: u64, addr: u64, rip: u64) -> bool {
        if self.at == Some((vms, addr, rip)) {
            self.count += 1;
        } else {
            *self = FaultStreak {
                at: Some((vms, addr, rip)),
                count: 1,
            };
        }
        if self.count >= FAULT_LOOP_MAX {
            self.clear();
            return true;
        }
        false
    }

    /// Forget the streak (a fault that was not resolved, a loop reported).
    pub fn clear(&mut self) {
        *self = FaultStreak::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_that_never_goes_away_is_a_loop() {
        let mut s = FaultStreak::default();
        for _ in 1..FAULT_LOOP_MAX {
            assert!(!s.resolved(3, 0x1000, 0x401000));
        }
        assert!(s.resolved(3, 0x1000, 0x401000));
        // The streak ends with the report.
        assert!(!s.resolved(3, 0x1000, 0x401000));
    }

    #[test]
    fn interrupted_runs_at_the_same_instruction_keep_counting() {
        let mut s = FaultStreak::default();
        for _ in 1..FAULT_LOOP_MAX {
            s.start_run(3, 0x401000);
            assert!(!s.resolved(3, 0x1000, 0x401000));
        }
        s.start_run(3, 0x401000);
        assert!(s.resolved(3, 0x1000, 0x401000));
    }

    #[test]
    fn the_same_fault_in_other_vmspaces_is_no_loop() {
        // Fresh children of one parent, each faulting once at the same
        // place of the same text, one after the other on one vCPU.
        let mut s = FaultStreak::default();
        for child in 0..10 * u64::from(FAULT_LOOP_MAX) {
            s.start_run(child, 0x43acde);
            assert!(!s.resolved(child, 0x43ace0, 0x43ace0));
        }
    }

    #[test]
    fn a_run_elsewhere_ends_the_streak() {
        let mut s = FaultStreak::default();
        for _ in 0..10 * FAULT_LOOP_MAX {
            // The same process: a syscall, then the same first touch.
            s.start_run(3, 0x401002);
            assert!(!s.resolved(3, 0x7000, 0x401010));
        }
    }
}
