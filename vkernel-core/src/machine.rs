//! The machine: a KVM VM, its vCPUs, RAM backed by a memory file, and the
//! reserved system region that holds the stub and hardware page tables.
//!
//! ```no_run
//! use vkernel_core::machine::Machine;
//! let machine = Machine::builder().ram_size(64 << 20).vcpus(2).build()?;
//! println!("trap path: {:?}", machine.trap_path());
//! # Ok::<(), vkernel_core::machine::MachineError>(())
//! ```
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::fs::{File, OpenOptions};
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_segment, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{
    FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap, MmapRegion,
};

use vkernel_guest::abi;
use vkernel_guest::layout::*;
use vkernel_guest::stub::{self, StubOffsets};
use vkernel_guest::x86::{msr, PTE_A, PTE_P, PTE_U};

use crate::boot::{
    init_sys, probe, probe_fpu, reset_position, set_io_bitmap, set_msrs, setup_vcpu,
};
pub(crate) use crate::boot::{redirect_user_iret, write_user_iret_frame};
use crate::cpu::Cpu;
use crate::hwpt::PtPool;
use crate::kick::{KickState, Kicker};
use crate::ram::{HugeProbe, Ram, RamBacking};
use crate::vmspace::{Vmspace, VmspaceError};

/// Errors building a machine.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// /dev/kvm does not exist.
    #[error(
        "/dev/kvm does not exist: load the kvm module (modprobe kvm_intel or kvm_amd) and enable \
         virtualization in the firmware, or run on a host with nested virtualization"
    )]
    NoKvm,
    /// /dev/kvm is not accessible.
    #[error("/dev/kvm is not accessible ({0}): add your user to the 'kvm' group or run as root")]
    KvmAccess(std::io::Error),
    /// Another KVM ioctl failed.
    #[error("KVM {what} failed: {source}")]
    Kvm {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A KVM ioctl failed with ENOMEM (e.g. CREATE_VCPU under a tight
    /// `ulimit -v`: the vCPU's host mappings count against it).
    #[error(
        "KVM {what} failed: {source} (the host is out of memory or address space: raise \
         `ulimit -v`, or ask for less guest RAM or fewer vCPUs)"
    )]
    KvmNoMemory {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// RAM size is zero.
    #[error("RAM size is zero: give the machine some RAM (e.g. 64 MiB)")]
    RamZero,
    /// RAM size is not a multiple of 4 KiB.
    #[error("RAM size {0:#x} is not a multiple of 4 KiB")]
    RamUnaligned(u64),
    /// RAM size is more than the host or the guest address width allows.
    #[error("RAM size {size:#x} is larger than this host allows ({max:#x})")]
    RamTooLarge {
        /// Requested size.
        size: u64,
        /// Largest possible size.
        max: u64,
    },
    /// The RAM file could not be created or sized.
    #[error("cannot create the RAM file {path}: {source}")]
    RamFile {
        /// The path (or "memfd").
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Mapping guest memory failed.
    #[error(
        "cannot map guest memory: {0} (if the host is out of memory or address space, ask for \
         less guest RAM or raise `ulimit -v`)"
    )]
    Map(String),
    /// Bad vCPU count.
    #[error("{count} vCPUs asked for, but this host allows 1 to {max}: ask for at most {max}")]
    Vcpus {
        /// Requested count.
        count: usize,
        /// Maximum.
        max: usize,
    },
    /// Bad system-region size.
    #[error("system region size {0:#x} must be a multiple of 2 MiB between 4 MiB and 1 GiB")]
    SysSize(u64),
    /// The handler for the signal that kicks vCPUs out of the guest could
    /// not be installed (without it the first kick would kill the process).
    #[error("cannot install the vCPU kick signal handler (signal {signo}): {source}")]
    KickSignal {
        /// The real-time signal vkernel uses for kicks.
        signo: i32,
        /// The host error.
        source: std::io::Error,
    },
    /// The machine-start probe did not behave like any known KVM.
    #[error("trap-path probe failed: {0}")]
    Probe(String),
}

/// How a user `syscall` reaches the host on this KVM, found by the probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapPath {
    /// Architectural (VT-x/SVM): `syscall` enters CPL0 at LSTAR; the CPL0
    /// entry switches stacks and exits; the vproc resumes through `iretq`.
    Standard,
    /// The host's KVM keeps CPL3 across `syscall` (PVM-derived software
    /// KVM): LSTAR points at a user-executable trampoline that exits at
    /// CPL3, and the host emulates the return (RIP=RCX, RFLAGS=R11).
    StaysInUserMode,
}

/// Builder for a [`Machine`].
#[derive(Clone, Debug)]
pub struct MachineBuilder {
    ram_size: u64,
    vcpus: usize,
    ram_backing: RamBacking,
    sys_size: u64,
    exitless: bool,
}

impl Default for MachineBuilder {
    fn default() -> Self {
        MachineBuilder {
            ram_size: 64 << 20,
            vcpus: 1,
            ram_backing: backing_from_env(),
            sys_size: DEFAULT_SYS_SIZE,
            exitless: true,
        }
    }
}

/// The default RAM backing: `VKERNEL_RAM_BACKING` (`auto`, `anonymous`,
/// `memfd` or `hugetlb`) when set, else [`RamBacking::Auto`].
fn backing_from_env() -> RamBacking {
    match std::env::var("VKERNEL_RAM_BACKING").as_deref() {
        Ok("anonymous") => RamBacking::Anonymous,
        Ok("memfd") => RamBacking::Memfd,
        Ok("hugetlb") => RamBacking::MemfdHugetlb,
        Ok("auto") | Err(_) => RamBacking::Auto,
        Ok(other) => {
            log::warn!("vkernel: VKERNEL_RAM_BACKING={other} is not auto, anonymous, memfd or hugetlb: using auto");
            RamBacking::Auto
        }
    }
}

impl MachineBuilder {
    /// RAM size in bytes (default 64 MiB; a multiple of 4 KiB).
    pub fn ram_size(mut self, bytes: u64) -> Self {
        self.ram_size = bytes;
        self
    }
    /// Exitless syscalls (default on): a vproc's syscall can be served by a
    /// host thread without a VM exit once the virtual kernel registers a
    /// handler ([`Machine::set_exitless_handler`]), on both trap paths; see
    /// [`crate::exitless`]. Off, every syscall exits.
    pub fn exitless(mut self, on: bool) -> Self {
        self.exitless = on;
        self
    }
    /// Number of vCPUs (default 1).
    pub fn vcpus(mut self, n: usize) -> Self {
        self.vcpus = n;
        self
    }
    /// Back RAM with this file (tmpfs, hugetlbfs...) instead of a memfd. The
    /// file is created if needed and sized to the RAM size.
    pub fn ram_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.ram_backing = RamBacking::File(path.into());
        self
    }
    /// What backs RAM (default [`RamBacking::Auto`]: probed at machine start
    /// for what gives the host's huge pages; see [`crate::ram::probe_backing`]).
    pub fn ram_backing(mut self, backing: RamBacking) -> Self {
        self.ram_backing = backing;
        self
    }
    /// Size of the system region, which bounds the hardware page-table pool
    /// (default 64 MiB).
    pub fn sys_size(mut self, bytes: u64) -> Self {
        self.sys_size = bytes;
        self
    }

    /// Create the VM, RAM, vCPUs, and run the trap-path probe.
    pub fn build(self) -> Result<Machine, MachineError> {
        Machine::build(self)
    }
}

pub(crate) struct MachineInner {
    _vm: VmFd,
    _kvm: Kvm,
    pub(crate) ram: Ram,
    pub(crate) sys: Ram,
    pub(crate) sys_gpa: u64,
    pub(crate) path: TrapPath,
    pub(crate) fpu_mode: crate::fpu::FpuMode,
    pub(crate) offsets: StubOffsets,
    /// Where the stub is on its way out to the host (guest-virtual,
    /// half-open ranges: `stub::exiting_ranges`).
    pub(crate) stub_exiting: Vec<(u64, u64)>,
    /// Exitless syscalls, where on (see [`crate::exitless`]).
    pub(crate) exitless: Option<Arc<crate::exitless::Exitless>>,
    pub(crate) pool: Mutex<PtPool>,
    pub(crate) kickers: Vec<Kicker>,
    next_vmspace_id: AtomicU64,
    pub(crate) vcpu_count: usize,
    ram_file: Option<File>,
    ram_backing: RamBacking,
}

impl MachineInner {
    pub(crate) fn new_vmspace_id(&self) -> u64 {
        self.next_vmspace_id.fetch_add(1, Ordering::Relaxed)
    }
    /// The user address that bounces a vCPU from CPL3 into the stub: a
    /// supervisor-only page, so fetching it raises #PF.
    pub(crate) fn kcall_va(&self) -> u64 {
        SYS_VA + STUB_OFF
    }
}

/// A virtual machine that runs vmspaces. Cheap to clone: clones are handles
/// on the same machine.
#[derive(Clone)]
pub struct Machine {
    pub(crate) inner: Arc<MachineInner>,
    cpus: Arc<Mutex<Vec<Option<Cpu>>>>,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("ram_size", &self.inner.ram.size())
            .field("vcpus", &self.inner.vcpu_count)
            .field("trap_path", &self.inner.path)
            .finish()
    }
}

pub(crate) fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> MachineError {
    move |e| {
        let source = std::io::Error::from_raw_os_error(e.errno());
        if e.errno() == libc::ENOMEM {
            MachineError::KvmNoMemory { what, source }
        } else {
            MachineError::Kvm { what, source }
        }
    }
}

pub(crate) fn seg(selector: u16, code: bool, dpl: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 11 } else { 3 },
        present: 1,
        dpl,
        db: if code { 0 } else { 1 },
        s: 1,
        l: if code { 1 } else { 0 },
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

pub(crate) fn null_seg() -> kvm_segment {
    kvm_segment {
        unusable: 1,
        ..Default::default()
    }
}

impl Machine {
    /// A builder with defaults: 64 MiB of memfd RAM, one vCPU.
    pub fn builder() -> MachineBuilder {
        MachineBuilder::default()
    }

    fn build(b: MachineBuilder) -> Result<Machine, MachineError> {
        validate(&b)?;
        let (kvm, cpuid) = open_kvm(&b)?;
        let vm = kvm.create_vm().map_err(kvm_err("CREATE_VM"))?;
        let (ram_file, ram_backing, ram, sys, sys_gpa) = map_memory(&b, &vm)?;

        let offsets = stub::offsets();
        let upper_entry = init_sys(&sys, sys_gpa, b.sys_size, b.vcpus, &offsets);
        let mut pool = PtPool::new(sys.clone(), sys_gpa, POOL_OFF, b.sys_size, upper_entry);
        let mut null = pool
            .new_space()
            .map_err(|e| MachineError::Map(e.to_string()))?;
        null.install(
            &mut pool,
            TRAMP_VA,
            tramp_entry(sys_gpa),
            false,
            &mut Vec::new(),
        )
        .map_err(|e| MachineError::Map(e.to_string()))?;

        let mut fds = Vec::new();
        for i in 0..b.vcpus {
            let fd = vm.create_vcpu(i as u64).map_err(kvm_err("CREATE_VCPU"))?;
            fd.set_cpuid2(&cpuid).map_err(kvm_err("SET_CPUID2"))?;
            setup_vcpu(&fd, i, sys_gpa + null.pml4)?;
            fds.push(fd);
        }
        let (path, fpu_mode, kick_states) =
            probe_and_configure(&mut fds, &sys, sys_gpa + null.pml4, &offsets, b.exitless)?;
        let exitless = b
            .exitless
            .then(|| Arc::new(crate::exitless::Exitless::new(sys.clone(), b.vcpus)));
        let inner = Arc::new(MachineInner {
            _vm: vm,
            _kvm: kvm,
            ram,
            sys,
            sys_gpa,
            path,
            fpu_mode,
            stub_exiting: stub::exiting_ranges()
                .into_iter()
                .map(|(a, b)| (SYS_VA + STUB_OFF + a, SYS_VA + STUB_OFF + b))
                .collect(),
            exitless,
            offsets,
            pool: Mutex::new(pool),
            kickers: kick_states.iter().map(|k| Kicker::new(k.clone())).collect(),
            next_vmspace_id: AtomicU64::new(1),
            vcpu_count: b.vcpus,
            ram_file,
            ram_backing,
        });
        let cpus = fds
            .into_iter()
            .zip(kick_states)
            .enumerate()
            .map(|(i, (fd, k))| Some(Cpu::new(inner.clone(), i, fd, k)))
            .collect();
        Ok(Machine {
            inner,
            cpus: Arc::new(Mutex::new(cpus)),
        })
    }
}

/// Refuse sizes and counts no machine can have.
fn validate(b: &MachineBuilder) -> Result<(), MachineError> {
    if b.ram_size == 0 {
        return Err(MachineError::RamZero);
    }
    if !b.ram_size.is_multiple_of(PAGE_SIZE) {
        return Err(MachineError::RamUnaligned(b.ram_size));
    }
    if b.vcpus == 0 || b.vcpus > MAX_VCPUS {
        return Err(MachineError::Vcpus {
            count: b.vcpus,
            max: MAX_VCPUS,
        });
    }
    if !b.sys_size.is_multiple_of(2 << 20) || b.sys_size < (4 << 20) || b.sys_size > MAX_SYS_SIZE {
        return Err(MachineError::SysSize(b.sys_size));
    }
    Ok(())
}

/// Open /dev/kvm and check the builder against what it supports; the CPUID
/// the vCPUs get.
fn open_kvm(b: &MachineBuilder) -> Result<(Kvm, kvm_bindings::CpuId), MachineError> {
    let kvm = match std::fs::metadata("/dev/kvm") {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(MachineError::NoKvm),
        _ => Kvm::new()
            .map_err(|e| MachineError::KvmAccess(std::io::Error::from_raw_os_error(e.errno())))?,
    };
    let max_vcpus = kvm.get_max_vcpus();
    if b.vcpus > max_vcpus {
        return Err(MachineError::Vcpus {
            count: b.vcpus,
            max: max_vcpus,
        });
    }
    // Guest-physical width: RAM and the system region must fit below it.
    let cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("GET_SUPPORTED_CPUID"))?;
    let phys_bits = cpuid
        .as_slice()
        .iter()
        .find(|e| e.function == 0x8000_0008)
        .map(|e| e.eax & 0xff)
        .unwrap_or(36)
        .clamp(32, 52);
    let max_ram = (1u64 << phys_bits) - (2u64 << 30);
    if b.ram_size > max_ram {
        return Err(MachineError::RamTooLarge {
            size: b.ram_size,
            max: max_ram,
        });
    }
    Ok((kvm, cpuid))
}

/// RAM (anonymous memory, a memfd or the builder's file; see
/// [`RamBacking`]) and the system region, mapped here and into `vm` (slots 0
/// and 1). Returns the RAM file (none for anonymous memory), the backing
/// used, RAM, the system region and its guest-physical address.
#[allow(clippy::type_complexity)]
fn map_memory(
    b: &MachineBuilder,
    vm: &VmFd,
) -> Result<(Option<File>, RamBacking, Ram, Ram, u64), MachineError> {
    let probe = HugeProbe::read();
    let mut backing = b.ram_backing.clone();
    if backing == RamBacking::Auto {
        let (chosen, why) = crate::ram::probe_backing(&probe, b.ram_size);
        log::info!("vkernel: RAM backing {chosen:?} ({why})");
        backing = chosen;
    }
    // Anonymous memory: no file, its own mapping.
    let mut anon = None;
    let mut file = None;
    match &backing {
        RamBacking::Auto | RamBacking::Anonymous => {}
        RamBacking::MemfdHugetlb => match memfd_flags(
            "vkernel-ram",
            libc::MFD_CLOEXEC | libc::MFD_HUGETLB | libc::MFD_HUGE_2MB,
        )
        .and_then(|f| {
            f.set_len(b.ram_size)
                .map_err(|source| MachineError::RamFile {
                    path: "memfd (hugetlb)".into(),
                    source,
                })
                .map(|_| f)
        }) {
            Ok(f) => file = Some((f, "memfd (hugetlb)".to_string())),
            Err(e) => {
                log::warn!("vkernel: hugetlb RAM failed ({e}); using anonymous memory");
                backing = RamBacking::Anonymous;
            }
        },
        RamBacking::Memfd => file = Some((memfd("vkernel-ram")?, "memfd".to_string())),
        RamBacking::File(p) => {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
                .map_err(|source| MachineError::RamFile {
                    path: p.display().to_string(),
                    source,
                })?;
            file = Some((f, p.display().to_string()));
        }
    }
    if backing == RamBacking::Anonymous {
        let (ram, advised) = Ram::anonymous_aligned(b.ram_size, true).map_err(|e| {
            MachineError::Map(format!("anonymous RAM of {} bytes: {e}", b.ram_size))
        })?;
        if !advised || !probe.anon_thp() {
            log::info!(
                "vkernel: anonymous RAM without transparent huge pages (THP '{}')",
                probe.thp_anon
            );
        }
        anon = Some(ram);
    }
    if let Some((f, name)) = &file {
        f.set_len(b.ram_size)
            .map_err(|source| MachineError::RamFile {
                path: name.clone(),
                source,
            })?;
    }
    let sys_file = memfd("vkernel-sys")?;
    sys_file
        .set_len(b.sys_size)
        .map_err(|source| MachineError::RamFile {
            path: "memfd (system region)".into(),
            source,
        })?;
    let sys_gpa = sys_gpa(b.ram_size);
    let region = |file: File, size: u64, gpa: u64| -> Result<GuestRegionMmap, MachineError> {
        let m = MmapRegion::<()>::from_file(FileOffset::new(file, 0), size as usize)
            .map_err(|e| MachineError::Map(e.to_string()))?;
        GuestRegionMmap::new(m, GuestAddress(gpa))
            .ok_or_else(|| MachineError::Map("region wraps the address space".into()))
    };
    // Sorted by address: RAM (when it is a file) first.
    let mut regions = Vec::new();
    if let Some((f, name)) = &file {
        let clone = f.try_clone().map_err(|source| MachineError::RamFile {
            path: name.clone(),
            source,
        })?;
        regions.push(region(clone, b.ram_size, 0)?);
    }
    regions.push(region(sys_file, b.sys_size, sys_gpa)?);
    let mem =
        GuestMemoryMmap::from_regions(regions).map_err(|e| MachineError::Map(e.to_string()))?;
    let ram_ptr = match &anon {
        Some(ram) => ram
            .host_ptr(0, b.ram_size)
            .map_err(|e| MachineError::Map(e.to_string()))?,
        None => mem
            .get_host_address(GuestAddress(0))
            .map_err(|e| MachineError::Map(e.to_string()))?,
    };
    if backing == RamBacking::Memfd && probe.shmem_thp() {
        // SAFETY: advice on the live shared mapping of exactly the RAM size.
        unsafe {
            libc::madvise(ram_ptr.cast(), b.ram_size as usize, libc::MADV_HUGEPAGE);
        }
    }
    let sys_ptr = mem
        .get_host_address(GuestAddress(sys_gpa))
        .map_err(|e| MachineError::Map(e.to_string()))?;
    for (slot, gpa, size, ptr) in [
        (0u32, 0u64, b.ram_size, ram_ptr),
        (1, sys_gpa, b.sys_size, sys_ptr),
    ] {
        let r = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: ptr as u64,
        };
        // SAFETY: the region is a live shared mapping of `size` bytes
        // owned by `mem`, which the machine keeps alive as long as the VM.
        unsafe { vm.set_user_memory_region(r) }.map_err(kvm_err("SET_USER_MEMORY_REGION"))?;
    }
    let owner: Arc<dyn Send + Sync> = Arc::new(mem);
    let ram = match anon {
        Some(ram) => ram,
        None => {
            // SAFETY: the pointer comes from `mem`'s live mapping of
            // exactly the RAM size; `owner` keeps it mapped.
            let ram = unsafe { Ram::from_raw(ram_ptr, b.ram_size, owner.clone()) };
            // A memfd made just now reads zero; a RAM file may hold anything.
            if matches!(backing, RamBacking::Memfd | RamBacking::MemfdHugetlb) {
                ram.known_zero()
            } else {
                ram
            }
        }
    };
    // SAFETY: the pointer comes from `mem`'s live mapping of exactly the
    // system region's size; `owner` keeps it mapped.
    let sys = unsafe { Ram::from_raw(sys_ptr, b.sys_size, owner) };
    Ok((file.map(|(f, _)| f), backing, ram, sys, sys_gpa))
}

/// Probe the trap path and the FPU handoff on vCPU 0, then give every vCPU
/// its syscall entry, I/O bitmap and resting position, and a kick state.
fn probe_and_configure(
    fds: &mut [VcpuFd],
    sys: &Ram,
    null_cr3: u64,
    offsets: &StubOffsets,
    exitless: bool,
) -> Result<(TrapPath, crate::fpu::FpuMode, Vec<Arc<KickState>>), MachineError> {
    let path = probe(&mut fds[0], sys, null_cr3, offsets)?;
    log::info!(
        "vkernel: trap path {:?} ({})",
        path,
        match path {
            TrapPath::Standard => "syscall enters CPL0 as on VT-x/SVM",
            TrapPath::StaysInUserMode =>
                "syscall stays at CPL3 on this KVM; using the user trampoline",
        }
    );
    let fpu_mode = probe_fpu(&mut fds[0], sys, null_cr3, offsets);
    log::info!("vkernel: FPU handoff {fpu_mode:?}");
    let lstar = |i: usize| match path {
        // Each vCPU's own exitless entry (its request line).
        TrapPath::Standard if exitless => {
            SYS_VA + STUB_OFF + offsets.cpl0_xentries + abi::XS_ENTRY * i as u64
        }
        TrapPath::Standard => SYS_VA + STUB_OFF + offsets.syscall,
        TrapPath::StaysInUserMode if exitless => {
            TRAMP_VA + offsets.xentries + abi::XS_ENTRY * i as u64
        }
        TrapPath::StaysInUserMode => TRAMP_VA + offsets.tramp_syscall,
    };
    let user_ports: &[u16] = match path {
        TrapPath::Standard => &[],
        TrapPath::StaysInUserMode => &[abi::PORT_SYSCALL, abi::PORT_XSYSCALL],
    };
    for n in 0..fds.len() {
        set_io_bitmap(sys, n, user_ports);
    }
    let mut kick_states = Vec::new();
    for (i, fd) in fds.iter_mut().enumerate() {
        set_msrs(
            fd,
            &[
                (msr::LSTAR, lstar(i)),
                (msr::KERNEL_GS_BASE, SYS_VA + cpu_stack_top_off(i)),
            ],
        )?;
        // Back to the resting CPL0 position (the probe left vCPU 0 at CPL3).
        reset_position(fd, i, null_cr3)?;
        kick_states.push(Arc::new(KickState::new(fd)?));
    }
    Ok((path, fpu_mode, kick_states))
}

impl Machine {
    /// The trap path the probe chose for this host.
    pub fn trap_path(&self) -> TrapPath {
        self.inner.path
    }

    /// How FPU state moves between vprocs on this host (probed).
    pub fn fpu_mode(&self) -> crate::fpu::FpuMode {
        self.inner.fpu_mode
    }

    /// RAM: the host's view of guest-physical `[0, ram_size)`.
    pub fn ram(&self) -> &Ram {
        &self.inner.ram
    }

    /// RAM size in bytes.
    pub fn ram_size(&self) -> u64 {
        self.inner.ram.size()
    }

    /// The RAM file (a memfd or the file given to the builder); none when
    /// RAM is anonymous memory.
    pub fn ram_file(&self) -> Option<&File> {
        self.inner.ram_file.as_ref()
    }

    /// What backs RAM ([`RamBacking::Auto`] resolved by the probe).
    pub fn ram_backing(&self) -> &RamBacking {
        &self.inner.ram_backing
    }

    /// Number of vCPUs.
    pub fn vcpu_count(&self) -> usize {
        self.inner.vcpu_count
    }

    /// Take vCPU `index` to run it (typically on its own thread). Each vCPU
    /// can be taken once.
    pub fn take_cpu(&self, index: usize) -> Option<Cpu> {
        self.cpus.lock().unwrap().get_mut(index)?.take()
    }

    /// A handle that kicks vCPU `index` out of the guest from any thread.
    pub fn kicker(&self, index: usize) -> Option<Kicker> {
        self.inner.kickers.get(index).cloned()
    }

    /// Create an empty vmspace (the seed's `vmspace_create`).
    pub fn vmspace_create(&self) -> Result<Vmspace, VmspaceError> {
        Vmspace::create(self.inner.clone())
    }

    /// Free hardware page-table pages left in the pool (parked ones
    /// included: they are a cache the pool takes back when it runs low).
    pub fn free_table_pages(&self) -> u64 {
        self.inner.pool.lock().unwrap().available_pages()
    }

    /// Are exitless syscalls on (see [`MachineBuilder::exitless`])?
    pub fn exitless_enabled(&self) -> bool {
        self.inner.exitless.is_some()
    }

    /// Serve vprocs' syscalls without VM exits through `handler`, on a
    /// server thread (see [`crate::exitless`]); a later call replaces the
    /// handler (`opts` apply from the first). Returns false, changing
    /// nothing, where exitless syscalls are off.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use vkernel_core::exitless::{ExitlessReply, ExitlessOptions};
    /// # let m = vkernel_core::machine::Machine::builder().build().unwrap();
    /// m.set_exitless_handler(
    ///     Arc::new(|req| match req.nr {
    ///         39 => ExitlessReply::Done(1), // getpid
    ///         _ => ExitlessReply::Exit,
    ///     }),
    ///     ExitlessOptions::default(),
    /// );
    /// ```
    pub fn set_exitless_handler(
        &self,
        handler: crate::exitless::ExitlessHandler,
        opts: crate::exitless::ExitlessOptions,
    ) -> bool {
        self.inner
            .exitless
            .as_ref()
            .is_some_and(|x| x.start(handler, opts))
    }

    /// Where a patched syscall site's stub jumps (user-executable, in the
    /// trampoline page of every vmspace), with RAX = the syscall number,
    /// RCX = the return address and a real `syscall` instruction at RCX -
    /// 2 (the slow path, and where a call interrupted before it was posted
    /// is rewound to). None unless exitless syscalls are on and KVM keeps
    /// CPL3 across `syscall` (there the `syscall` instruction itself is the
    /// cost worth saving; on VT-x/SVM it is cheap). A vproc that set a GS
    /// base of its own must not use it (see [`crate::exitless`]).
    pub fn patched_entry_va(&self) -> Option<u64> {
        (self.inner.exitless.is_some() && self.inner.path == TrapPath::StaysInUserMode)
            .then(|| vkernel_guest::layout::TRAMP_VA + self.inner.offsets.pentry)
    }

    /// The exitless server's counters (zeros where it is off).
    pub fn exitless_stats(&self) -> crate::exitless::ExitlessStats {
        self.inner
            .exitless
            .as_ref()
            .map(|x| x.stats())
            .unwrap_or_default()
    }
}

impl Drop for MachineInner {
    fn drop(&mut self) {
        if let Some(x) = &self.exitless {
            x.shutdown();
        }
    }
}

/// Hardware entry mapping the trampoline page at [`TRAMP_VA`]: user,
/// read + execute.
pub(crate) fn tramp_entry(sys_gpa: u64) -> u64 {
    (sys_gpa + TRAMP_OFF) | PTE_P | PTE_U | PTE_A
}

fn memfd(name: &str) -> Result<File, MachineError> {
    memfd_flags(name, libc::MFD_CLOEXEC)
}

fn memfd_flags(name: &str, flags: libc::c_uint) -> Result<File, MachineError> {
    let cname = std::ffi::CString::new(name).expect("no NUL in name");
    // SAFETY: plain syscall with a valid NUL-terminated name; the returned
    // fd is checked and then owned by the File.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), flags) };
    if fd < 0 {
        return Err(MachineError::RamFile {
            path: format!("memfd {name}"),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The i386 syscall vector (`int $0x80`): a DPL0 gate, so a vproc's
/// `int $0x80` is a #GP with error code `INT80_VECTOR << 3 | 2`.
pub const INT80_VECTOR: u64 = 0x80;
