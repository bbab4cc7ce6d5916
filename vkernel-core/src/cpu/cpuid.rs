//! `cpuid` seen by the virtual kernel: CPUID faulting and KVM's answers.
//!
//! A vproc's `cpuid` never leaves the host kernel: KVM emulates it (on our
//! PVM hosts about 19 µs each, five times a native one) and the virtual
//! kernel does not see it. With CPUID faulting on
//! ([`Cpu::set_cpuid_faulting`]: `MSR_MISC_FEATURES_ENABLES` bit 0, which
//! KVM offers every guest when `MSR_PLATFORM_INFO` bit 31 says so), a
//! `cpuid` at CPL3 raises #GP instead and comes back as a trap; the
//! virtual kernel answers it from the vCPU's CPUID table
//! ([`CpuidTable::answer`], KVM's own rules) and may rewrite the site so
//! that later runs take the answer without any trap (the Linux
//! personality's `mm::cpuid_patch`).

use kvm_bindings::{kvm_cpuid_entry2, kvm_msr_entry, Msrs, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

use super::Cpu;

/// `MSR_PLATFORM_INFO`: bit 31 says CPUID faulting is supported.
const MSR_PLATFORM_INFO: u32 = 0xce;
/// Its CPUID-faulting bit.
const PLATFORM_INFO_CPUID_FAULT: u64 = 1 << 31;
/// `MSR_MISC_FEATURES_ENABLES`: bit 0 turns CPUID faulting on.
const MSR_MISC_FEATURES_ENABLES: u32 = 0x140;
/// Its CPUID-faulting bit.
const MISC_CPUID_FAULT: u64 = 1;
/// Most entries a vCPU's table holds (KVM's limit).
const MAX_ENTRIES: usize = kvm_bindings::KVM_MAX_CPUID_ENTRIES;

/// One entry of a CPUID table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidEntry {
    /// The leaf (EAX).
    pub function: u32,
    /// The subleaf (ECX), where `indexed`.
    pub index: u32,
    /// The answer depends on the subleaf.
    pub indexed: bool,
    /// EAX, EBX, ECX, EDX.
    pub regs: [u32; 4],
}

impl From<&kvm_cpuid_entry2> for CpuidEntry {
    fn from(e: &kvm_cpuid_entry2) -> CpuidEntry {
        CpuidEntry {
            function: e.function,
            index: e.index,
            indexed: e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX != 0,
            regs: [e.eax, e.ebx, e.ecx, e.edx],
        }
    }
}

/// A vCPU's CPUID table and KVM's rules for answering from it
/// (`kvm_cpuid` in arch/x86/kvm/cpuid.c).
///
/// ```
/// use vkernel_core::cpu::{CpuidEntry, CpuidTable};
/// let t = CpuidTable::new(vec![CpuidEntry {
///     function: 0,
///     index: 0,
///     indexed: false,
///     regs: [1, 0x6874_7541, 0x444d_4163, 0x6974_6e65], // AuthenticAMD
/// }]);
/// assert_eq!(t.answer(0, 7)[0], 1);
/// assert_eq!(t.answer(5, 0), [0; 4], "past the last basic leaf on AMD");
/// ```
#[derive(Clone, Debug, Default)]
pub struct CpuidTable {
    entries: Vec<CpuidEntry>,
}

impl CpuidTable {
    /// A table of `entries`.
    pub fn new(entries: Vec<CpuidEntry>) -> CpuidTable {
        CpuidTable { entries }
    }

    /// The entries.
    pub fn entries(&self) -> &[CpuidEntry] {
        &self.entries
    }

    /// The entry for `leaf` and `subleaf` (the subleaf counts only for
    /// an indexed entry).
    fn find(&self, leaf: u32, subleaf: u32) -> Option<&CpuidEntry> {
        self.entries
            .iter()
            .find(|e| e.function == leaf && (!e.indexed || e.index == subleaf))
    }

    /// The vendor answers out-of-range leaves as Intel does (with the last
    /// basic leaf): GenuineIntel, and Centaur and Zhaoxin, which follow it.
    fn intel_like(&self) -> bool {
        let Some(v) = self.find(0, 0) else {
            return false;
        };
        let [_, b, c, d] = v.regs;
        matches!(
            (b, d, c),
            (0x756e_6547, 0x4965_6e69, 0x6c65_746e) // GenuineIntel
                | (0x746e_6543, 0x4872_7561, 0x736c_7561) // CentaurHauls
                | (0x6853_2020, 0x6867_6e61, 0x2020_6961) // "  Shanghai  "
        )
    }

    /// Where an absent `leaf` is answered from on an Intel-like vendor:
    /// the last basic leaf, when `leaf` is past the last of its class.
    fn out_of_range(&self, leaf: u32) -> Option<u32> {
        if !self.intel_like() {
            return None;
        }
        let class = if (0x4000_0000..=0x4fff_ffff).contains(&leaf) {
            leaf & 0xffff_ff00
        } else if leaf >= 0xc000_0000 {
            0xc000_0000
        } else {
            leaf & 0x8000_0000
        };
        if self.find(class, 0).is_some_and(|c| leaf <= c.regs[0]) {
            return None;
        }
        self.find(0, 0).map(|b| b.regs[0])
    }

    /// What `cpuid` with EAX = `leaf` and ECX = `subleaf` returns on the
    /// vCPU: the entry, or for a leaf past its class's last on an
    /// Intel-like vendor the last basic leaf's, else zeros (leaves 0xb and
    /// 0x1f then pass ECX's low byte through and give EDX, the x2APIC ID).
    pub fn answer(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        let mut function = leaf;
        let mut entry = self.find(leaf, subleaf);
        if entry.is_none() {
            if let Some(basic) = self.out_of_range(leaf) {
                function = basic;
                entry = self.find(basic, subleaf);
            }
        }
        match entry {
            Some(e) => e.regs,
            None if function == 0xb || function == 0x1f => match self.find(function, 1) {
                Some(e) => [0, 0, subleaf & 0xff, e.regs[3]],
                None => [0; 4],
            },
            None => [0; 4],
        }
    }

    /// Does the answer for `leaf` depend on ECX? (An indexed leaf, or the
    /// leaf an out-of-range one is answered from; 0xb and 0x1f always.)
    pub fn varies_with_subleaf(&self, leaf: u32) -> bool {
        let function = match self.find(leaf, 0) {
            Some(_) => leaf,
            None if self.entries.iter().any(|e| e.function == leaf) => leaf,
            None => self.out_of_range(leaf).unwrap_or(leaf),
        };
        function == 0xb
            || function == 0x1f
            || self
                .entries
                .iter()
                .any(|e| e.function == function && e.indexed)
    }
}

impl Cpu {
    /// Does KVM offer this vCPU CPUID faulting (`MSR_PLATFORM_INFO` bit
    /// 31)? Probed once, at the first call.
    pub fn cpuid_faulting_supported(&mut self) -> bool {
        if let Some(s) = self.cpuid_fault_supported {
            return s;
        }
        let supported = Msrs::from_entries(&[kvm_msr_entry {
            index: MSR_PLATFORM_INFO,
            ..Default::default()
        }])
        .ok()
        .and_then(|mut m| match self.fd.get_msrs(&mut m) {
            Ok(1) => Some(m.as_slice()[0].data & PLATFORM_INFO_CPUID_FAULT != 0),
            _ => None,
        })
        .unwrap_or(false);
        self.cpuid_fault_supported = Some(supported);
        supported
    }

    /// Turn CPUID faulting on or off for what this vCPU runs next: with it
    /// on, a vproc's `cpuid` comes back from [`Cpu::run`] as
    /// `Trap::Exception { vector: 13, error_code: 0 }` with RIP at the
    /// instruction (`0f a2`), to be answered with [`Cpu::cpuid_table`].
    /// Returns whether it is on now (never where KVM does not offer it).
    /// Only a change costs an ioctl.
    ///
    /// ```no_run
    /// # fn f(cpu: &mut vkernel_core::cpu::Cpu) {
    /// if cpu.set_cpuid_faulting(true) {
    ///     // every CPL3 `cpuid` now traps
    /// }
    /// # }
    /// ```
    pub fn set_cpuid_faulting(&mut self, on: bool) -> bool {
        if self.cpuid_fault_on == on {
            return on;
        }
        if on && !self.cpuid_faulting_supported() {
            return false;
        }
        let value = if on { MISC_CPUID_FAULT } else { 0 };
        match crate::boot::set_msrs(&self.fd, &[(MSR_MISC_FEATURES_ENABLES, value)]) {
            Ok(()) => self.cpuid_fault_on = on,
            Err(e) => {
                log::warn!("vkernel: CPUID faulting cannot be switched: {e}");
                self.cpuid_fault_supported = Some(false);
                self.cpuid_fault_on = false;
            }
        }
        self.cpuid_fault_on
    }

    /// The vCPU's CPUID table as KVM holds it now (its runtime bits, such
    /// as OSXSAVE and the XSAVE sizes, included).
    pub fn cpuid_table(&self) -> std::io::Result<CpuidTable> {
        let c = self
            .fd
            .get_cpuid2(MAX_ENTRIES)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
        Ok(CpuidTable::new(
            c.as_slice().iter().map(CpuidEntry::from).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(function: u32, index: u32, indexed: bool, regs: [u32; 4]) -> CpuidEntry {
        CpuidEntry {
            function,
            index,
            indexed,
            regs,
        }
    }

    fn table(vendor: [u32; 3]) -> CpuidTable {
        let [b, d, c] = vendor;
        CpuidTable::new(vec![
            e(0, 0, false, [0xd, b, c, d]),
            e(1, 0, false, [0xa00f11, 0x800, 0xfed83203, 0x178bfbff]),
            e(4, 0, true, [0x121, 1, 2, 3]),
            e(4, 1, true, [0x122, 4, 5, 6]),
            e(0xb, 1, true, [1, 2, 0x201, 7]),
            e(0xd, 0, true, [7, 0x340, 0x340, 0]),
            e(0xd, 1, true, [0xf, 0, 0, 0]),
            e(0x8000_0000, 0, false, [0x8000_0008, 0, 0, 0]),
            e(0x8000_0006, 0, false, [0, 0x4200, 0x2006140, 0x9000]),
        ])
    }
    const AMD: [u32; 3] = [0x6874_7541, 0x6974_6e65, 0x444d_4163];
    const INTEL: [u32; 3] = [0x756e_6547, 0x4965_6e69, 0x6c65_746e];

    #[test]
    fn entries_are_found_by_leaf_and_by_subleaf_where_indexed() {
        let t = table(AMD);
        assert_eq!(t.answer(1, 99), [0xa00f11, 0x800, 0xfed83203, 0x178bfbff]);
        assert_eq!(t.answer(4, 1), [0x122, 4, 5, 6]);
        assert_eq!(t.answer(4, 2), [0; 4], "an indexed leaf's absent subleaf");
        assert_eq!(t.answer(0x8000_0006, 5), [0, 0x4200, 0x2006140, 0x9000]);
        assert!(t.varies_with_subleaf(4) && t.varies_with_subleaf(0xd));
        assert!(!t.varies_with_subleaf(1) && !t.varies_with_subleaf(0x8000_0006));
    }

    #[test]
    fn out_of_range_leaves_follow_the_vendor() {
        let amd = table(AMD);
        assert_eq!(amd.answer(0x20, 0), [0; 4]);
        assert_eq!(amd.answer(0x8000_0020, 0), [0; 4]);
        let intel = table(INTEL);
        // Past the last basic leaf (0xd): the last basic leaf's answer.
        assert_eq!(intel.answer(0x20, 1), [0xf, 0, 0, 0]);
        assert_eq!(intel.answer(0x8000_0020, 0), [7, 0x340, 0x340, 0]);
        assert!(intel.varies_with_subleaf(0x20));
        // In range but absent: zeros on every vendor.
        assert_eq!(intel.answer(5, 0), [0; 4]);
        assert_eq!(intel.answer(0x8000_0007, 0), [0; 4]);
    }

    #[test]
    fn topology_leaves_pass_the_subleaf_through() {
        let t = table(AMD);
        assert_eq!(t.answer(0xb, 1), [1, 2, 0x201, 7]);
        assert_eq!(t.answer(0xb, 0x1234), [0, 0, 0x34, 7]);
        assert!(t.varies_with_subleaf(0xb));
        assert_eq!(t.answer(0x1f, 3), [0; 4], "no 0x1f entry at all");
    }
}
