//! Layout of the reserved system region.
//!
//! Guest-physical `[0, ram_size)` is RAM: the memory file the vkernel owns.
//! Above it, at [`sys_gpa`], a separate memslot holds everything vprocs must
//! never reach: the IDT, the stub, per-vCPU GDT/TSS/stack/mailbox, and the
//! pool of hardware page-table pages. No VPTE can point there (the walker
//! only accepts frames inside RAM) and the region is mapped supervisor-only
//! in the upper half of every vmspace at [`SYS_VA`], except the one
//! trampoline page that a user `syscall` lands on where the host's KVM does
//! not switch privilege (see `docs/design/traps.md`).
//!
//! ```text
//! offset      size     what
//! 0x0000      4 KiB    IDT (256 gates)
//! 0x1000      8 KiB    stub code (supervisor, executable)
//! 0x3000      4 KiB    trampoline (user, executable)
//! 0x4000      4 KiB    upper-half PDPT (shared by all vmspaces)
//! 0x5000      4 KiB    upper-half PD
//! 0x6000      4 KiB    upper-half PT for the first 2 MiB
//! 0x10000+n*64K        per-vCPU area n: GDT+TSS, stack, mailbox, and
//!                      the CPL0 exitless request line (VT-x/SVM hosts)
//! 0x200000..  rest     hardware page-table pool (2 MiB mappings)
//! ```

/// User virtual address of the trampoline page: the last page of the user
/// half (Linux keeps the same page out of user space). A PVM-derived KVM
/// never lets CPL3 touch the upper half, so the page a CPL3 `syscall` lands
/// on must live here. Vprocs can map everything below it.
pub const TRAMP_VA: u64 = 0x0000_7FFF_FFFF_F000;

/// Page size.
pub const PAGE_SIZE: u64 = 4096;
/// User virtual address of a vmspace's exitless request page (the page
/// below the trampoline, where exitless syscalls are on): one request line
/// per vCPU (`abi::XS_LINE` bytes each), user-writable, private to the
/// vmspace. Vprocs cannot map it (the walker refuses it).
pub const SLOT_VA: u64 = TRAMP_VA - PAGE_SIZE;

/// Guest-virtual address of vCPU `n`'s line in a request page at
/// [`SLOT_VA`].
pub const fn slot_line_va(n: usize) -> u64 {
    SLOT_VA + crate::abi::XS_LINE * n as u64
}
/// Virtual base of the system region in every vmspace (PML4 slot 256).
pub const SYS_VA: u64 = 0xFFFF_8000_0000_0000;
/// PML4 index of [`SYS_VA`].
pub const SYS_PML4_INDEX: usize = 256;
/// Offset of the IDT.
pub const IDT_OFF: u64 = 0x0000;
/// Offset of the stub code.
pub const STUB_OFF: u64 = 0x1000;
/// Bytes reserved for the stub code.
pub const STUB_MAX: u64 = 0x2000;
/// Offset of the user-executable trampoline page.
pub const TRAMP_OFF: u64 = 0x3000;
/// Offset of the shared upper-half PDPT.
pub const UPPER_PDPT_OFF: u64 = 0x4000;
/// Offset of the shared upper-half PD.
pub const UPPER_PD_OFF: u64 = 0x5000;
/// Offset of the PT mapping the first 2 MiB with 4 KiB pages.
pub const UPPER_PT_OFF: u64 = 0x6000;
/// Offset of the first per-vCPU area.
pub const CPU_AREA_OFF: u64 = 0x10000;
/// Size of one per-vCPU area.
pub const CPU_AREA_SIZE: u64 = 0x10000;
/// Most vCPUs a machine can have (their areas fit in the first 2 MiB).
pub const MAX_VCPUS: usize = 30;
/// Offset of the GDT inside a per-vCPU area.
pub const CPU_GDT_OFF: u64 = 0x0;
/// Offset of the TSS inside a per-vCPU area.
pub const CPU_TSS_OFF: u64 = 0x800;
/// Offset of the stack top (and the mailbox) inside a per-vCPU area.
pub const CPU_STACK_TOP_OFF: u64 = 0xB000;
/// Size of the mailbox.
pub const MAILBOX_SIZE: u64 = 0x4000;
/// Offset, inside a per-vCPU area, of the vCPU's exitless request line
/// where `syscall` enters CPL0 (VT-x/SVM hosts): `abi::XS_LINE` bytes just
/// above the mailbox, in the system region, so the vproc cannot reach it.
/// The CPL0 exitless entry addresses it from its stack pointer.
pub const CPU_XLINE_OFF: u64 = CPU_STACK_TOP_OFF + MAILBOX_SIZE;
/// Offset of the hardware page-table pool.
pub const POOL_OFF: u64 = 0x20_0000;
/// Default size of the system region (pool of about 15,900 table pages).
pub const DEFAULT_SYS_SIZE: u64 = 64 << 20;
/// Largest system region (one upper-half PD maps 1 GiB).
pub const MAX_SYS_SIZE: u64 = 1 << 30;
/// Bytes below the stack top at an exception exit: the error code (a 0
/// where the CPU pushes none) under the 40-byte hardware interrupt frame.
pub const ENTRY_FRAME_SIZE: u64 = 48;
/// Bytes of the hardware interrupt frame the stub's `iretq` pops: the host
/// enters the stub with RSP = stack top - `IRET_FRAME_SIZE`.
pub const IRET_FRAME_SIZE: u64 = 40;
/// Bytes of the vproc's registers (RAX, RCX, RSI, RDI, in that order up
/// from RSP) the host saves below the error code's slot under the iret
/// frame when it enters the stub's mailbox program: RSP = stack top -
/// `PROGRAM_RSP_BELOW_TOP` there, and the program's last op pops them.
pub const PROGRAM_SAVED_SIZE: u64 = 32;
/// RSP of an entry into the mailbox program, below the stack top.
pub const PROGRAM_RSP_BELOW_TOP: u64 = ENTRY_FRAME_SIZE + PROGRAM_SAVED_SIZE;

/// Guest-physical base of the system region for a RAM of `ram_size` bytes:
/// the next 1 GiB boundary at or above the end of RAM.
pub const fn sys_gpa(ram_size: u64) -> u64 {
    (ram_size + (1 << 30) - 1) & !((1 << 30) - 1)
}

/// Offset of vCPU `n`'s area.
pub const fn cpu_area_off(n: usize) -> u64 {
    CPU_AREA_OFF + n as u64 * CPU_AREA_SIZE
}

/// Offset of vCPU `n`'s stack top (= its mailbox).
pub const fn cpu_stack_top_off(n: usize) -> u64 {
    cpu_area_off(n) + CPU_STACK_TOP_OFF
}

/// Offset of vCPU `n`'s CPL0 exitless request line ([`CPU_XLINE_OFF`]).
pub const fn cpu_xline_off(n: usize) -> u64 {
    cpu_area_off(n) + CPU_XLINE_OFF
}

// The line fits in the per-vCPU area, after the mailbox.
const _: () = assert!(CPU_XLINE_OFF + crate::abi::XS_LINE <= CPU_AREA_SIZE);
