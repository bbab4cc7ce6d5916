//! The trap ABI shared by the stub and the host.
//!
//! The guest leaves with `out imm8, al` to one of these ports; the host reads
//! the registers from KVM's synced register block (no extra ioctl) and the
//! entry frame from the per-vCPU stack in the system region.
//!
//! Each exception vector `v` leaves through its own port,
//! [`PORT_VECTOR_BASE`] + `v`, so the stub runs one or two instructions to
//! get out. Stack layout at an exception exit (RSP = stack top - 48):
//!
//! ```text
//! top-48  error code (0 where the CPU pushes none)
//! top-40  RIP   \
//! top-32  CS     |
//! top-24  RFLAGS | hardware interrupt frame; iretq pops it on resume
//! top-16  RSP    |
//! top-8   SS    /
//! top     mailbox
//! ```

/// Exception vector `v` reached the stub: it exits through port
/// `PORT_VECTOR_BASE + v` (CPL0, frame on the per-vCPU stack). The TSS I/O
/// bitmap keeps these ports from CPL3, so a vproc cannot fake one.
pub const PORT_VECTOR_BASE: u16 = 0x80;
/// A `syscall` reached the host (from the CPL0 entry or the CPL3 trampoline).
pub const PORT_SYSCALL: u16 = 0xE1;
/// The machine-start probe's syscall landed.
pub const PORT_PROBE: u16 = 0xE2;
/// An exitless trampoline's syscall takes the exit path (no server awake,
/// its budget ran out, or the server said so): like [`PORT_SYSCALL`], but
/// R11 is the trampoline's (the host takes RFLAGS from the vCPU). The CPL0
/// exitless entry (VT-x/SVM hosts) exits through it too, with the vproc's
/// R11 intact.
pub const PORT_XSYSCALL: u16 = 0xE3;

/// Exitless syscalls: the request line of vCPU `n` is at
/// `layout::SLOT_VA + n * XS_LINE` (one page per vmspace, user-writable)
/// where KVM keeps CPL3 across `syscall`, and at
/// `layout::cpu_xline_off(n)` in the system region (out of the vproc's
/// reach) where `syscall` enters CPL0. Same layout in both.
pub const XS_LINE: u64 = 128;
/// Line: state (u64): [`XS_IDLE`], [`XS_POSTED`], [`XS_TAKEN`], [`XS_DONE`]
/// or [`XS_EXIT`].
pub const XS_STATE: u64 = 0;
/// Line: the syscall number (RAX).
pub const XS_NR: u64 = 8;
/// Line: the six arguments (RDI, RSI, RDX, R10, R8, R9).
pub const XS_ARGS: u64 = 16;
/// Line: the return value the server wrote.
pub const XS_RET: u64 = 64;
/// Line: the return address (RCX of the `syscall`).
pub const XS_RCX: u64 = 72;
/// Offset in the request page of the vCPU index table (32 bytes after the
/// lines, written by the host): byte 0 is [`XS_INDEX_POISON`], byte `n +
/// 1` holds `n`. A patched call site (`vktramp_pentry`) reads its vCPU's
/// index as `gs:[SLOT_VA + XS_INDEX]`, since the host loads the GS base of
/// a vproc that never set its own with [`xs_gs_base`]`(n)` on vCPU `n`: a
/// base below 64 KiB, so the vproc's own `gs:` accesses fault as with a
/// base of 0 (off by at most 30 bytes). A GS reloaded to base 0 reads the
/// poison, whose line is not canonical: the entry faults and the vproc is
/// rewound to its stub's `syscall`.
pub const XS_INDEX: u64 = 4096 - 32;
/// The index table's byte 0 (a base of 0): a line past the request page.
pub const XS_INDEX_POISON: u8 = 0xff;
/// Bytes of `vktramp_pentry` before the common code: the part that reads
/// GS. A fault there means the vproc changed its GS (a selector load);
/// the call is retried through the stub's `syscall`.
pub const XS_PENTRY_LEN: u64 = 34;

/// The GS base vCPU `n` runs a vproc with when the vproc never set its
/// own (see [`XS_INDEX`]).
pub const fn xs_gs_base(n: usize) -> u64 {
    n as u64 + 1
}

/// The index table (see [`XS_INDEX`]) as four little-endian words.
pub const fn xs_index_table() -> [u64; 4] {
    let mut w = [0u64; 4];
    let mut i = 0;
    while i < 32 {
        let b = if i == 0 {
            XS_INDEX_POISON as u64
        } else {
            (i - 1) as u64
        };
        w[i / 8] |= b << (8 * (i % 8));
        i += 1;
    }
    w
}
/// Line: R11 of the `syscall` (the vproc's RFLAGS), restored on return.
pub const XS_R11: u64 = 88;
/// Line: a 256-bit map of the syscall numbers the server may answer
/// (written by the host; bit 255 stands for 255 and every number above);
/// the trampoline exits at once for the others, without a round trip to
/// the server. All zero while the server sleeps.
pub const XS_SERVES: u64 = 96;
/// RFLAGS a patched call site's request records for R11 (a patched site
/// reaches the trampoline by `jmp`, not `syscall`, so nothing saved the
/// vproc's own; compiled code treats the flags as clobbered by a syscall).
pub const XS_PATCHED_RFLAGS: u64 = 0x202;
/// Bytes of each vCPU's entry in the trampoline page.
pub const XS_ENTRY: u64 = 32;
/// State: no request.
pub const XS_IDLE: u64 = 0;
/// State: the vproc posted a request.
pub const XS_POSTED: u64 = 1;
/// State: the server took it (it will answer).
pub const XS_TAKEN: u64 = 2;
/// State: answered; the return value is at [`XS_RET`].
pub const XS_DONE: u64 = 3;
/// State: the server says: take the exit path.
pub const XS_EXIT: u64 = 4;
/// `pause` iterations the trampoline waits for an answer before it takes
/// the request back and exits: about 6 µs where a `pause` takes 40 ns (our
/// hosts), a fraction of an exit, and many times a running server's answer
/// (under a microsecond), so a server that is not running costs little.
pub const XS_SPINS: u64 = 150;

/// Mailbox: number of commands the mailbox program applies (nonzero while
/// it is unapplied; its last op zeroes it).
pub const MB_NCMDS: u64 = 0x00;
/// Mailbox: user RSP saved by the CPL0 syscall entry.
pub const MB_USER_RSP: u64 = 0x08;
/// Mailbox: kernel RSP the CPL0 syscall entry switches to (top - 40).
pub const MB_KSTACK: u64 = 0x10;
/// Mailbox: start of the mailbox program, quadwords the stub's ops read in
/// order: each op is the guest-virtual address of its code (an entry of
/// `stub::ProgramOps`) followed by its operands, and ends by jumping to the
/// next; the last is `done`. The host turns the queued commands ([`cmd`])
/// into it (zaps first, in one op; runs of `invlpg`s in one op; with a
/// flush, one flush last and no `invlpg`), so the stub never dispatches on
/// a kind: every instruction it runs is emulated on a PVM-derived KVM.
pub const MB_CMDS: u64 = 0x40;
/// Quadwords the mailbox program may take.
pub const MB_PROGRAM_WORDS: usize = ((crate::layout::MAILBOX_SIZE - MB_CMDS) / 8) as usize;
/// Commands that fit in one mailbox: each takes at most 3 quadwords of the
/// program (a store: op, address, value), and the end takes one.
pub const MB_MAX_CMDS: usize = (MB_PROGRAM_WORDS - 1) / 3;

/// Command kind in the low 3 bits of the first word: store the second word
/// at the (8-aligned) guest-virtual address in the first.
pub const CMD_STORE: u64 = 0;
/// Command kind: `invlpg` the address in the first word.
pub const CMD_INVLPG: u64 = 1;
/// Command kind: flush the whole TLB (reload CR3).
pub const CMD_FLUSH: u64 = 2;

/// Command kind: set CR0.TS (the next FPU instruction raises #NM).
pub const CMD_SET_TS: u64 = 3;
/// Command kind: clear CR0.TS (`clts`).
pub const CMD_CLTS: u64 = 4;
/// Command kind: make the MMU forget what it cached of the hardware table
/// page at this (4 KiB aligned) address, which the host rewrote. The stub
/// does an atomic 2-byte read-modify-write of the high bytes of the page's
/// first entry (`lock or word ptr [page + 6], 0`): the value stays, but a
/// shadow MMU drops its shadow of a page table written with a partial
/// (misaligned) write, and re-reads the page from memory when it is next
/// walked. One instruction per table page, however many entries changed. A
/// real MMU (nested paging) caches nothing but the TLB, which the flush or
/// `invlpg` that follows handles. Atomic, so it never undoes a concurrent
/// store to that entry (by the host, or a hardware A/D update).
pub const CMD_ZAP: u64 = 5;
/// Command kind: make the MMU forget what it cached of a run of entries of
/// one hardware table page, which the host rewrote: the first word holds
/// the (8-aligned) address of the run's first entry, the second how many
/// entries follow. The stub writes each entry back with its own value
/// (`rep movsq` with source and destination the same): a shadow MMU sees a
/// guest write to each and drops its copy of those entries only, keeping
/// its shadow of the rest of the page (program text beside the data that
/// fork write-protects). Not atomic per entry, unlike [`CMD_ZAP`]: a write
/// that lands on one of those entries between the stub's read and write
/// back is undone. Only the host's installs (an empty entry made present,
/// or write permission added) and an MMU's A/D updates can race with it;
/// an undone install refaults and is made again, and the vkernel keeps M
/// in the vpagetable, never in hardware D.
pub const CMD_TOUCH: u64 = 6;

/// Encode one mailbox command.
pub const fn cmd(kind: u64, addr: u64, value: u64) -> [u64; 2] {
    [(addr & !7) | kind, value]
}
