//! Floors: bare KVM_RUN loops with no vkernel machinery at all.
//!
//! - [`raw_exit_ns`]: a real-mode guest doing `out` + `jmp` (the floor the
//!   issue names).
//! - [`raw_user_exit_ns`]: the same loop in 64-bit long mode at CPL3 (with
//!   IOPL 3 so `out` is allowed): the cheapest way any vproc can reach the
//!   host. On a PVM-derived KVM every exit from CPL3 costs several times an
//!   exit from CPL0, so this is the fair floor for vproc traps.
//! - [`raw_user_syscall_exit_ns`]: the CPL3 loop reaching its `out` through
//!   a `syscall` (LSTAR at the `out`): what the host charges for the
//!   instruction itself on the way to an exit, the floor of a trap from an
//!   unrewritten site (`syscall_trap_ns`).
//! - [`cross_core_round_trip_ns`]: two host threads handing a value back
//!   and forth through one cache line, spinning with `pause` as the
//!   trampoline and the exitless server do: the floor of any exitless
//!   call (its request and its answer each cross between cores once).

use kvm_bindings::{kvm_regs, kvm_segment, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd};

struct Guest {
    _kvm: Kvm,
    _vm: kvm_ioctls::VmFd,
    vcpu: VcpuFd,
}

/// Which loop a floor guest runs.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Real mode, `out` + `jmp`.
    Real,
    /// Long mode at CPL3 with IOPL 3, `out` + `jmp`.
    User,
    /// Long mode at CPL3: `syscall` to LSTAR, where `out` + `jmp` back.
    UserSyscall,
}

fn guest(mode: Mode) -> Guest {
    let long_mode_cpl3 = mode != Mode::Real;
    let kvm = Kvm::new().expect("open /dev/kvm");
    let vm = kvm.create_vm().expect("create VM");
    let size = 0x40_0000usize;
    // SAFETY: anonymous private mapping checked against MAP_FAILED; it is
    // never unmapped (the VM may use it until the process exits).
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(mem, libc::MAP_FAILED, "mmap guest memory");
    let mem = mem as *mut u8;
    let w64 = |off: usize, v: u64| {
        // SAFETY: every offset used below is 8-aligned and inside `size`.
        unsafe { (mem.add(off) as *mut u64).write(v) }
    };
    // Page tables: PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> 2 MiB page 0.
    w64(0x1000, 0x2000 | 7);
    w64(0x2000, 0x3000 | 7);
    w64(0x3000, 0x87);
    // GDT at 0x500: null, kcode, kdata, ucode, udata.
    for (i, d) in [
        0u64,
        0x00AF_9A00_0000_FFFF,
        0x00CF_9200_0000_FFFF,
        0x00AF_FA00_0000_FFFF,
        0x00CF_F200_0000_FFFF,
    ]
    .iter()
    .enumerate()
    {
        w64(0x500 + 8 * i, *d);
    }
    let code: &[u8] = if mode == Mode::UserSyscall {
        // 0x8000: syscall; 0x8002: out 0x10, al (LSTAR); jmp 0x8000.
        &[0x0f, 0x05, 0xe6, 0x10, 0xeb, 0xfa]
    } else {
        &[0xe6, 0x10, 0xeb, 0xfc] // out 0x10, al; jmp -4
    };
    // SAFETY: 0x8000 + code.len() is inside the mapping.
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), mem.add(0x8000), code.len()) };
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: size as u64,
        userspace_addr: mem as u64,
    };
    // SAFETY: the region is a live mapping of `size` bytes for the VM's life.
    unsafe { vm.set_user_memory_region(region) }.expect("memslot");
    let vcpu = vm.create_vcpu(0).expect("vcpu");
    let mut s = vcpu.get_sregs().unwrap();
    let mut rflags = 2;
    if long_mode_cpl3 {
        let seg = |sel: u16, code: bool| kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            selector: sel | 3,
            type_: if code { 11 } else { 3 },
            present: 1,
            dpl: 3,
            db: if code { 0 } else { 1 },
            s: 1,
            l: if code { 1 } else { 0 },
            g: 1,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        s.cs = seg(0x18, true);
        s.ss = seg(0x20, false);
        s.ds = s.ss;
        s.es = s.ss;
        s.gdt.base = 0x500;
        s.gdt.limit = 39;
        s.tr = kvm_segment {
            base: 0x600,
            limit: 0x67,
            type_: 11,
            present: 1,
            ..Default::default()
        };
        s.cr3 = 0x1000;
        s.cr4 = 0x620;
        s.cr0 = 0x8005_0033;
        s.efer = 0xD01;
        rflags = 0x3002; // IOPL 3
    } else {
        s.cs.base = 0;
        s.cs.selector = 0;
    }
    vcpu.set_sregs(&s).unwrap();
    if mode == Mode::UserSyscall {
        // LSTAR at the `out`, STAR's selectors the GDT's, SFMASK 0 (IOPL
        // stays 3 where `syscall` enters CPL0).
        let msrs = [
            (0xC000_0082, 0x8002),
            (0xC000_0081, (0x13u64 << 48) | (0x08 << 32)),
            (0xC000_0084, 0),
        ];
        let entries: Vec<_> = msrs
            .iter()
            .map(|&(index, data)| kvm_bindings::kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let msrs = kvm_bindings::Msrs::from_entries(&entries).expect("msr list");
        assert_eq!(vcpu.set_msrs(&msrs).expect("set MSRs"), entries.len());
    }
    vcpu.set_regs(&kvm_regs {
        rip: 0x8000,
        rflags,
        ..Default::default()
    })
    .unwrap();
    Guest {
        _kvm: kvm,
        _vm: vm,
        vcpu,
    }
}

fn measure(g: &mut Guest, iters: u32, rounds: usize) -> f64 {
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        for _ in 0..iters {
            match g.vcpu.run() {
                Ok(VcpuExit::IoOut(0x10, _)) => {}
                other => panic!("raw exit loop: unexpected {other:?}"),
            }
        }
        samples.push(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    super::median(&mut samples)
}

/// Nanoseconds per bare real-mode `out` exit round trip.
pub fn raw_exit_ns(iters: u32, rounds: usize) -> f64 {
    measure(&mut guest(Mode::Real), iters, rounds)
}

/// Nanoseconds per bare CPL3 long-mode `out` exit round trip.
pub fn raw_user_exit_ns(iters: u32, rounds: usize) -> f64 {
    measure(&mut guest(Mode::User), iters, rounds)
}

/// Nanoseconds per CPL3 `syscall` whose LSTAR target exits with `out`.
pub fn raw_user_syscall_exit_ns(iters: u32, rounds: usize) -> f64 {
    measure(&mut guest(Mode::UserSyscall), iters, rounds)
}

/// Nanoseconds per round trip of a value between two host threads through
/// one cache line (each side spins with `pause` for the other's store):
/// what an exitless call's request line costs before any work is done.
pub fn cross_core_round_trip_ns(iters: u32, rounds: usize) -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let line = Arc::new(AtomicU64::new(0));
        let other = line.clone();
        let n = u64::from(iters);
        let peer = std::thread::spawn(move || {
            for i in 0..n {
                while other.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                other.store(2 * i + 2, Ordering::Release);
            }
        });
        let t = std::time::Instant::now();
        for i in 0..n {
            line.store(2 * i + 1, Ordering::Release);
            while line.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
            }
        }
        samples.push(t.elapsed().as_nanos() as f64 / f64::from(iters));
        let _ = peer.join();
    }
    super::median(&mut samples)
}
