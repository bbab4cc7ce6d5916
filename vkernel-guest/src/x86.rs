//! x86-64 architectural constants used by the stub and the host.

/// Hardware page-table entry: present.
pub const PTE_P: u64 = 1 << 0;
/// Hardware page-table entry: writable.
pub const PTE_W: u64 = 1 << 1;
/// Hardware page-table entry: user accessible.
pub const PTE_U: u64 = 1 << 2;
/// Hardware page-table entry: accessed.
pub const PTE_A: u64 = 1 << 5;
/// Hardware page-table entry: dirty.
pub const PTE_D: u64 = 1 << 6;
/// Hardware page-table entry: large page (at PD/PDPT level).
pub const PTE_PS: u64 = 1 << 7;
/// Hardware page-table entry: no-execute (needs EFER.NXE).
pub const PTE_NX: u64 = 1 << 63;
/// Frame-address mask of a 4 KiB hardware entry.
pub const PTE_ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// CR0: protected mode, monitor coprocessor, extension type, numeric error,
/// write protect, alignment mask, paging.
pub const CR0_LONG: u64 = 0x8005_0033;
/// CR0.TS (task switched): makes the next FPU instruction raise #NM.
pub const CR0_TS: u64 = 1 << 3;
/// CR4: PAE, OSFXSR, OSXMMEXCPT.
pub const CR4_LONG: u64 = 0x620;
/// EFER: SCE (syscall), LME, LMA, NXE.
pub const EFER_LONG: u64 = 0xD01;

/// MSR numbers.
pub mod msr {
    /// Segment selectors for syscall/sysret.
    pub const STAR: u32 = 0xC000_0081;
    /// 64-bit syscall entry point.
    pub const LSTAR: u32 = 0xC000_0082;
    /// Compatibility-mode syscall entry point.
    pub const CSTAR: u32 = 0xC000_0083;
    /// RFLAGS bits cleared on syscall.
    pub const FMASK: u32 = 0xC000_0084;
    /// GS base swapped in by `swapgs`.
    pub const KERNEL_GS_BASE: u32 = 0xC000_0102;
}

/// GDT selectors.
pub mod sel {
    /// Kernel 64-bit code.
    pub const KCODE: u16 = 0x08;
    /// Kernel data.
    pub const KDATA: u16 = 0x10;
    /// Base for sysret (user SS = base+8, user CS = base+16).
    pub const USER_BASE: u16 = 0x20;
    /// User data (RPL 3).
    pub const UDATA: u16 = 0x28 | 3;
    /// User 64-bit code (RPL 3).
    pub const UCODE: u16 = 0x30 | 3;
    /// 64-bit TSS (two slots).
    pub const TSS: u16 = 0x38;
}

/// RFLAGS: reserved bit 1, always set.
pub const RFLAGS_FIXED: u64 = 0x2;
/// RFLAGS: interrupt enable.
pub const RFLAGS_IF: u64 = 0x200;
/// RFLAGS bits a vproc may change (CF PF AF ZF SF TF DF OF AC ID and IF kept).
pub const RFLAGS_USER_MASK: u64 = 0x0025_0DD5;
/// RFLAGS cleared on syscall entry (TF, IF, DF, IOPL, NT, AC).
pub const SYSCALL_FMASK: u64 = 0x4_7700;

/// Exceptions that push an error code.
pub const fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// #PF error code: the page was present (protection violation).
pub const PFEC_P: u64 = 1 << 0;
/// #PF error code: the access was a write.
pub const PFEC_W: u64 = 1 << 1;
/// #PF error code: the access came from CPL3.
pub const PFEC_U: u64 = 1 << 2;
/// #PF error code: a reserved bit was set in a paging entry.
pub const PFEC_RSVD: u64 = 1 << 3;
/// #PF error code: instruction fetch.
pub const PFEC_I: u64 = 1 << 4;

/// Is `va` canonical with 48-bit virtual addresses?
pub const fn is_canonical(va: u64) -> bool {
    let top = (va as i64) >> 47;
    top == 0 || top == -1
}

/// One past the highest address a vproc can map (the page above holds the
/// trampoline, see [`crate::layout::TRAMP_VA`]).
pub const USER_END: u64 = 0x0000_7FFF_FFFF_F000;
