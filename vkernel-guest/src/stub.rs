//! The CPL0 trap stub and the syscall trampoline.
//!
//! Both are assembled into the host binary by `global_asm!` (so no cross
//! compiler is needed), are position independent, and are copied into the
//! system region when a machine is built: [`stub_code`] to the supervisor
//! code pages, [`tramp_code`] to the user-executable trampoline page.
//!
//! The stub is deliberately tiny. Every exception vector pushes its number
//! (and a zero error code where the CPU pushes none) and exits to the host
//! with one `out`; all decisions are the host's. On resume the stub applies
//! the commands the host left in the per-vCPU mailbox (hardware PTE stores,
//! table-page zaps, `invlpg`, full flushes: these must be done by the guest
//! so that a shadow MMU sees them) and returns to the vproc with `iretq`.
//!
//! Every instruction here is emulated one at a time by a PVM-derived KVM
//! (about 1 µs each): keep the paths short and the commands few.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use core::arch::global_asm;

use crate::abi;
use crate::layout;

/// Bytes into a CPL0 exitless entry (`StubOffsets::cpl0_xentries`) from
/// which RSP is the vCPU's stack (the vproc's is in the mailbox); before,
/// RSP is still the vproc's.
pub const CPL0_XENTRY_SWITCHED: u64 = 14;

global_asm!(
    r#"
    .pushsection .text.vkstub,"ax",@progbits
    .balign 4096
    .globl vkstub_start
vkstub_start:

    // Each vector leaves with one `out` to its own port (the host reads
    // the vector from the port): no vector push, no jump. Where the CPU
    // pushes no error code a 0 stands in, so the frame is the same for all.
    // If the host resumes without preparing an entry, the vector pops the
    // error code and returns.
    .macro VK_NOERR v
    .balign 16
vkstub_vec_\v:
    push 0
    out {port_vec} + \v, al
    add rsp, 8
    iretq
    .endm
    .macro VK_ERR v
    .balign 16
vkstub_vec_\v:
    out {port_vec} + \v, al
    add rsp, 8
    iretq
    .endm

    VK_NOERR 0
    VK_NOERR 1
    VK_NOERR 2
    VK_NOERR 3
    VK_NOERR 4
    VK_NOERR 5
    VK_NOERR 7
    VK_ERR 8
    VK_NOERR 9
    VK_ERR 10
    VK_ERR 11
    VK_ERR 12
    VK_ERR 13
    VK_ERR 14
    VK_NOERR 15
    VK_NOERR 16
    VK_ERR 17
    VK_NOERR 18
    VK_NOERR 19
    VK_NOERR 20
    VK_ERR 21
    VK_NOERR 22
    VK_NOERR 23
    VK_NOERR 24
    VK_NOERR 25
    VK_NOERR 26
    VK_NOERR 27
    VK_NOERR 28
    VK_ERR 29
    VK_ERR 30
    VK_NOERR 31

    // #UD, on IST1 (the stack top, as RSP0): a `ud2` run at CPL0 (an
    // entry from user mode at CPL0 that KVM resumed from the last exit's
    // RIP, see `Cpu::on_exception`) leaves its frame where the host looks.
    VK_NOERR 6

    // The mailbox program (see `abi::MB_CMDS`): the host enters at CPL0
    // at the first op's address with RSI at the word after it and RSP at
    // the vproc's RAX, RCX, RSI and RDI (saved by the host 8 bytes below
    // the iret frame, where an exception's error code goes: stack top -
    // 80); the mailbox is at RSP + 80. Each op
    // reads its operands with `lodsq` and ends by jumping to the next op
    // (`lodsq; jmp rax`): no dispatch, since every instruction here is
    // emulated one at a time on a PVM-derived KVM. `vkstub_op_done`
    // restores the registers and returns to the vproc. With no commands
    // the host enters at `vkstub_iret` with RSP at the iret frame.
    .balign 16
    .globl vkstub_resume
vkstub_resume:
    .globl vkstub_iret
vkstub_iret:
    iretq

    // [n, page...]: forget what the MMU cached of n table pages (see
    // `abi::CMD_ZAP`).
    .globl vkstub_op_zap
vkstub_op_zap:
    lodsq
    mov rcx, rax
1:
    lodsq
    lock or word ptr [rax + 6], 0
    loop 1b
    lodsq
    jmp rax

    // [address, value]: store value at address.
    .globl vkstub_op_store
vkstub_op_store:
    lodsq
    mov rdi, rax
    movsq
    lodsq
    jmp rax

    // [n, va...]: `invlpg` each.
    .globl vkstub_op_invlpg
vkstub_op_invlpg:
    lodsq
    mov rcx, rax
1:
    lodsq
    invlpg [rax]
    loop 1b
    lodsq
    jmp rax

    // []: flush the TLB (reload CR3).
    .globl vkstub_op_flush
vkstub_op_flush:
    mov rax, cr3
    mov cr3, rax
    lodsq
    jmp rax

    // [first, n]: write n entries back onto themselves (see
    // `abi::CMD_TOUCH`).
    .globl vkstub_op_touch
vkstub_op_touch:
    lodsq
    mov rdi, rax
    lodsq
    mov rcx, rax
    push rsi
    mov rsi, rdi
    rep movsq
    pop rsi
    lodsq
    jmp rax

    // []: set CR0.TS.
    .globl vkstub_op_set_ts
vkstub_op_set_ts:
    mov rax, cr0
    or rax, 8
    mov cr0, rax
    lodsq
    jmp rax

    // []: clear CR0.TS.
    .globl vkstub_op_clts
vkstub_op_clts:
    clts
    lodsq
    jmp rax

    // The end: the mailbox is applied; back to the vproc.
    .globl vkstub_op_done
vkstub_op_done:
    mov qword ptr [rsp + {saved} + {entry} + {ncmds}], 0
    pop rax
    pop rcx
    pop rsi
    pop rdi
    add rsp, 8
    iretq

    .balign 16
    .globl vkstub_syscall
vkstub_syscall:
    swapgs
    mov gs:[{user_rsp}], rsp
    mov rsp, gs:[{kstack}]
    swapgs
    out {port_sys}, al
    .globl vkstub_syscall_out_end
vkstub_syscall_out_end:
    jmp vkstub_iret

    // Exitless syscalls where `syscall` enters CPL0 (VT-x/SVM). LSTAR of
    // vCPU n is `vkstub_xentry_n`: it saves the vproc's RSP in its mailbox
    // and switches to its stack (RIP-relative: no `swapgs`, so GS stays
    // the vproc's throughout), then `vkstub_xcommon` addresses the vCPU's
    // request line (system region, above the mailbox) from RSP. With a
    // server awake and the number served it posts the call and spins
    // (`pause`) for DONE (`sysretq` to the vproc: no exit) or EXIT; out of
    // budget it takes the request back with a compare-and-exchange. Every
    // other way out is `vkstub_xslow`: port 0xe3, RAX/RCX/R11 the call's,
    // the vproc's RSP in the mailbox, as after the plain entry above. A
    // kick inside [xentries, xend) is settled by the host
    // (`Cpu::settle_cpl0_exitless`). RAX and RCX are scratch once posted
    // (the line keeps them); R11 (the vproc's RFLAGS) is never touched.
    .macro VK_KXENTRY n
    .balign {xs_entry}
vkstub_xentry_\n:
    mov [rip + vkstub_start - {stub_off} + {area_off} + {area_size} * \n + {top_off} + {user_rsp}], rsp
    lea rsp, [rip + vkstub_start - {stub_off} + {area_off} + {area_size} * \n + {top_off} - {iret}]
    jmp vkstub_xcommon
    .endm
    .balign {xs_entry}
    .globl vkstub_xentries
vkstub_xentries:
    VK_KXENTRY 0
    VK_KXENTRY 1
    VK_KXENTRY 2
    VK_KXENTRY 3
    VK_KXENTRY 4
    VK_KXENTRY 5
    VK_KXENTRY 6
    VK_KXENTRY 7
    VK_KXENTRY 8
    VK_KXENTRY 9
    VK_KXENTRY 10
    VK_KXENTRY 11
    VK_KXENTRY 12
    VK_KXENTRY 13
    VK_KXENTRY 14
    VK_KXENTRY 15
    VK_KXENTRY 16
    VK_KXENTRY 17
    VK_KXENTRY 18
    VK_KXENTRY 19
    VK_KXENTRY 20
    VK_KXENTRY 21
    VK_KXENTRY 22
    VK_KXENTRY 23
    VK_KXENTRY 24
    VK_KXENTRY 25
    VK_KXENTRY 26
    VK_KXENTRY 27
    VK_KXENTRY 28
    VK_KXENTRY 29

    .balign 16
    .globl vkstub_xcommon
vkstub_xcommon:
    // (A sleeping server's map is all zero: the check below exits.)
    // `sysretq` needs a lower-half return address (always so: the last
    // user page is never mapped); a single-stepping vproc (TF) returns
    // through the exit path's `iretq`, as Linux does.
    bt rcx, 47
    jc vkstub_xslow
    test r11d, 0x100
    jnz vkstub_xslow
    // Bit n of the map: syscall n may be served; bit 255: 255 and above.
    cmp rax, 255
    jae 4f
    bt qword ptr [rsp + {xl} + {xs_serves}], rax
    jnc vkstub_xslow
    jmp 5f
4:
    bt qword ptr [rsp + {xl} + {xs_serves} + 24], 63
    jnc vkstub_xslow
5:
    mov [rsp + {xl} + {xs_nr}], rax
    mov [rsp + {xl} + {xs_args}], rdi
    mov [rsp + {xl} + {xs_args} + 8], rsi
    mov [rsp + {xl} + {xs_args} + 16], rdx
    mov [rsp + {xl} + {xs_args} + 24], r10
    mov [rsp + {xl} + {xs_args} + 32], r8
    mov [rsp + {xl} + {xs_args} + 40], r9
    mov [rsp + {xl} + {xs_rcx}], rcx
    mov qword ptr [rsp + {xl} + {xs_state}], {xs_posted}
    .globl vkstub_xposted
vkstub_xposted:
    mov eax, {xs_spins}
1:
    pause
    mov rcx, [rsp + {xl} + {xs_state}]
    cmp rcx, {xs_done}
    je vkstub_xdone
    cmp rcx, {xs_exit}
    je 3f
    dec eax
    jnz 1b
    // Out of budget: take the request back unless the server has it.
    mov eax, {xs_posted}
    xor ecx, ecx
    lock cmpxchg [rsp + {xl} + {xs_state}], rcx
    je vkstub_xexit
2:
    // The server has it: its answer comes in microseconds.
    pause
    mov rcx, [rsp + {xl} + {xs_state}]
    cmp rcx, {xs_done}
    je vkstub_xdone
    cmp rcx, {xs_exit}
    jne 2b
3:
    mov qword ptr [rsp + {xl} + {xs_state}], {xs_idle}
    .globl vkstub_xexit
vkstub_xexit:
    mov rax, [rsp + {xl} + {xs_nr}]
    mov rcx, [rsp + {xl} + {xs_rcx}]
    jmp vkstub_xslow
    .globl vkstub_xdone
vkstub_xdone:
    mov rax, [rsp + {xl} + {xs_ret}]
    mov rcx, [rsp + {xl} + {xs_rcx}]
    mov qword ptr [rsp + {xl} + {xs_state}], {xs_idle}
    mov rsp, [rsp + {iret} + {user_rsp}]
    sysretq
    .globl vkstub_xend
vkstub_xend:
    .globl vkstub_xslow
vkstub_xslow:
    out {port_xsys}, al
    .globl vkstub_xslow_end
vkstub_xslow_end:
    jmp vkstub_iret

    .balign 16
    .globl vkstub_vectors
vkstub_vectors:
    .quad vkstub_vec_0 - vkstub_start, vkstub_vec_1 - vkstub_start
    .quad vkstub_vec_2 - vkstub_start, vkstub_vec_3 - vkstub_start
    .quad vkstub_vec_4 - vkstub_start, vkstub_vec_5 - vkstub_start
    .quad vkstub_vec_6 - vkstub_start, vkstub_vec_7 - vkstub_start
    .quad vkstub_vec_8 - vkstub_start, vkstub_vec_9 - vkstub_start
    .quad vkstub_vec_10 - vkstub_start, vkstub_vec_11 - vkstub_start
    .quad vkstub_vec_12 - vkstub_start, vkstub_vec_13 - vkstub_start
    .quad vkstub_vec_14 - vkstub_start, vkstub_vec_15 - vkstub_start
    .quad vkstub_vec_16 - vkstub_start, vkstub_vec_17 - vkstub_start
    .quad vkstub_vec_18 - vkstub_start, vkstub_vec_19 - vkstub_start
    .quad vkstub_vec_20 - vkstub_start, vkstub_vec_21 - vkstub_start
    .quad vkstub_vec_22 - vkstub_start, vkstub_vec_23 - vkstub_start
    .quad vkstub_vec_24 - vkstub_start, vkstub_vec_25 - vkstub_start
    .quad vkstub_vec_26 - vkstub_start, vkstub_vec_27 - vkstub_start
    .quad vkstub_vec_28 - vkstub_start, vkstub_vec_29 - vkstub_start
    .quad vkstub_vec_30 - vkstub_start, vkstub_vec_31 - vkstub_start
    .globl vkstub_end
vkstub_end:

    .balign 4096
    .globl vktramp_start
vktramp_start:
    .globl vktramp_syscall
vktramp_syscall:
    out {port_sys}, al
    ud2
    .balign 16
    .globl vktramp_probe_entry
vktramp_probe_entry:
    out {port_probe}, al
    ud2
    .balign 16
    .globl vktramp_probe_user
vktramp_probe_user:
    syscall
    ud2
    .balign 16
    // Leaves through `syscall` (LSTAR is still the probe entry), not a CPL3
    // `out`: where `syscall` enters CPL0 the I/O bitmap is not consulted, so
    // the probe works even where a CPL3 `out` to a permitted port faults
    // (QEMU TCG rejects every CPL3 `out` when TR is a busy TSS).
    .globl vktramp_probe_fpu
vktramp_probe_fpu:
    xorps xmm0, xmm0
    syscall
    ud2

    // Exitless syscalls. LSTAR of vCPU n is `vktramp_xentry_n`: r11 (which
    // `syscall` clobbers anyway) becomes the address of the vCPU's request
    // line in the page below (`SLOT_VA`); `vktramp_xcommon` posts the call
    // there and waits for the host's server, or exits like the trampoline
    // above (port 0xe3) when no server is awake, when its budget runs out
    // and it can take the request back, or when the server says so. The
    // host settles a request a kick interrupts (see `Cpu::settle_exitless`).
    .macro VK_XENTRY n
    .balign {xs_entry}
vktramp_xentry_\n:
    mov [rip + vktramp_start - 4096 + {xs_line} * \n + {xs_r11}], r11
    lea r11, [rip + vktramp_start - 4096 + {xs_line} * \n]
    jmp vktramp_xcommon
    .endm
    .balign {xs_entry}
    .globl vktramp_xentries
vktramp_xentries:
    VK_XENTRY 0
    VK_XENTRY 1
    VK_XENTRY 2
    VK_XENTRY 3
    VK_XENTRY 4
    VK_XENTRY 5
    VK_XENTRY 6
    VK_XENTRY 7
    VK_XENTRY 8
    VK_XENTRY 9
    VK_XENTRY 10
    VK_XENTRY 11
    VK_XENTRY 12
    VK_XENTRY 13
    VK_XENTRY 14
    VK_XENTRY 15
    VK_XENTRY 16
    VK_XENTRY 17
    VK_XENTRY 18
    VK_XENTRY 19
    VK_XENTRY 20
    VK_XENTRY 21
    VK_XENTRY 22
    VK_XENTRY 23
    VK_XENTRY 24
    VK_XENTRY 25
    VK_XENTRY 26
    VK_XENTRY 27
    VK_XENTRY 28
    VK_XENTRY 29

    // A patched call site (see `vkernel::linux` "syscall patching"): its
    // stub jumps here with RAX = the number and RCX = the return address,
    // right after a real `syscall` the stub keeps for the slow path (RCX -
    // 2). The vCPU's index is the byte at gs:[SLOT_VA + XS_INDEX] (the
    // host loads GS base n + 1 on vCPU n, see `abi::XS_INDEX`); RAX and
    // RCX stay the call's until it is posted.
    .balign 8
vktramp_slot_va:
    .quad {slot_va}
    .globl vktramp_pentry
vktramp_pentry:
    movabs r11, {xs_index_va}
    movzx r11d, byte ptr gs:[r11]
    shl r11d, {xs_line_shift}
    add r11, qword ptr [rip + vktramp_slot_va]
    mov qword ptr [r11 + {xs_r11}], {xs_patched_rflags}
    .globl vktramp_xcommon
vktramp_xcommon:
    // Bit n of the map: syscall n may be served; bit 255: 255 and above.
    cmp rax, 255
    jae 4f
    bt qword ptr [r11 + {xs_serves}], rax
    jnc vktramp_xslow
    jmp 5f
4:
    bt qword ptr [r11 + {xs_serves} + 24], 63
    jnc vktramp_xslow
5:
    mov [r11 + {xs_nr}], rax
    mov [r11 + {xs_args}], rdi
    mov [r11 + {xs_args} + 8], rsi
    mov [r11 + {xs_args} + 16], rdx
    mov [r11 + {xs_args} + 24], r10
    mov [r11 + {xs_args} + 32], r8
    mov [r11 + {xs_args} + 40], r9
    mov [r11 + {xs_rcx}], rcx
    mov qword ptr [r11 + {xs_state}], {xs_posted}
    .globl vktramp_xposted
vktramp_xposted:
    mov eax, {xs_spins}
1:
    pause
    mov rcx, [r11 + {xs_state}]
    cmp rcx, {xs_done}
    je vktramp_xdone
    cmp rcx, {xs_exit}
    je 3f
    dec eax
    jnz 1b
    // Out of budget: take the request back unless the server has it.
    mov eax, {xs_posted}
    xor ecx, ecx
    lock cmpxchg [r11 + {xs_state}], rcx
    je vktramp_xexit
2:
    // The server has it: its answer comes in microseconds.
    pause
    mov rcx, [r11 + {xs_state}]
    cmp rcx, {xs_done}
    je vktramp_xdone
    cmp rcx, {xs_exit}
    jne 2b
3:
    mov qword ptr [r11 + {xs_state}], {xs_idle}
    .globl vktramp_xexit
vktramp_xexit:
    mov rax, [r11 + {xs_nr}]
    mov rcx, [r11 + {xs_rcx}]
    .globl vktramp_xout
vktramp_xout:
    out {port_xsys}, al
    ud2
    .globl vktramp_xslow
vktramp_xslow:
    out {port_xsys}, al
    ud2
    .globl vktramp_xdone
vktramp_xdone:
    mov rax, [r11 + {xs_ret}]
    mov rcx, [r11 + {xs_rcx}]
    mov qword ptr [r11 + {xs_state}], {xs_idle}
    mov r11, [r11 + {xs_r11}]
    // As `sysret` would from R11: the direction flag (`syscall` cleared
    // it through FMASK; a patched site's entry left it as it was). The
    // arithmetic flags are the trampoline's, which compiled code treats
    // as clobbered by a syscall.
    bt r11, 10
    jnc 6f
    std
6:
    jmp rcx
    .globl vktramp_xend
vktramp_xend:
    .globl vktramp_end
vktramp_end:
    .balign 4096
    .popsection
"#,
    port_vec = const abi::PORT_VECTOR_BASE,
    port_sys = const abi::PORT_SYSCALL,
    port_probe = const abi::PORT_PROBE,
    ncmds = const abi::MB_NCMDS,
    saved = const layout::PROGRAM_SAVED_SIZE,
    entry = const layout::ENTRY_FRAME_SIZE,
    user_rsp = const abi::MB_USER_RSP,
    kstack = const abi::MB_KSTACK,
    port_xsys = const abi::PORT_XSYSCALL,
    xs_line = const abi::XS_LINE,
    xs_state = const abi::XS_STATE,
    xs_nr = const abi::XS_NR,
    xs_args = const abi::XS_ARGS,
    xs_ret = const abi::XS_RET,
    xs_rcx = const abi::XS_RCX,
    slot_va = const layout::SLOT_VA,
    xs_index_va = const layout::SLOT_VA + abi::XS_INDEX,
    xs_line_shift = const abi::XS_LINE.trailing_zeros(),
    xs_patched_rflags = const abi::XS_PATCHED_RFLAGS,
    xs_r11 = const abi::XS_R11,
    xs_serves = const abi::XS_SERVES,
    xs_entry = const abi::XS_ENTRY,
    xs_idle = const abi::XS_IDLE,
    xs_posted = const abi::XS_POSTED,
    xs_done = const abi::XS_DONE,
    xs_exit = const abi::XS_EXIT,
    xs_spins = const abi::XS_SPINS,
    stub_off = const layout::STUB_OFF,
    area_off = const layout::CPU_AREA_OFF,
    area_size = const layout::CPU_AREA_SIZE,
    top_off = const layout::CPU_STACK_TOP_OFF,
    iret = const layout::IRET_FRAME_SIZE,
    xl = const layout::IRET_FRAME_SIZE + layout::MAILBOX_SIZE,
);

extern "C" {
    static vkstub_start: u8;
    static vkstub_end: u8;
    static vkstub_iret: u8;
    static vkstub_op_zap: u8;
    static vkstub_op_store: u8;
    static vkstub_op_invlpg: u8;
    static vkstub_op_flush: u8;
    static vkstub_op_touch: u8;
    static vkstub_op_set_ts: u8;
    static vkstub_op_clts: u8;
    static vkstub_op_done: u8;
    static vkstub_syscall: u8;
    static vkstub_syscall_out_end: u8;
    static vkstub_vectors: [u64; 32];
    static vktramp_start: u8;
    static vktramp_end: u8;
    static vktramp_syscall: u8;
    static vktramp_probe_entry: u8;
    static vktramp_probe_user: u8;
    static vktramp_probe_fpu: u8;
    static vktramp_xentries: u8;
    static vktramp_xcommon: u8;
    static vktramp_pentry: u8;
    static vktramp_xposted: u8;
    static vktramp_xexit: u8;
    static vktramp_xout: u8;
    static vktramp_xslow: u8;
    static vktramp_xdone: u8;
    static vktramp_xend: u8;
    static vkstub_xentries: u8;
    static vkstub_xcommon: u8;
    static vkstub_xposted: u8;
    static vkstub_xexit: u8;
    static vkstub_xdone: u8;
    static vkstub_xend: u8;
    static vkstub_xslow: u8;
    static vkstub_xslow_end: u8;
}

fn addr<T>(p: *const T) -> usize {
    p as usize
}

/// The stub's machine code, to be copied to [`crate::layout::STUB_OFF`].
pub fn stub_code() -> &'static [u8] {
    // SAFETY: both symbols are defined in the same section by the
    // global_asm! above, start before end, and the bytes between them are
    // read-only code that lives for the whole program.
    unsafe {
        let start = core::ptr::addr_of!(vkstub_start);
        let len = addr(core::ptr::addr_of!(vkstub_end)) - addr(start);
        core::slice::from_raw_parts(start, len)
    }
}

/// The trampoline page's machine code, to be copied to
/// [`crate::layout::TRAMP_OFF`].
pub fn tramp_code() -> &'static [u8] {
    // SAFETY: as in `stub_code`, for the trampoline's own pair of symbols.
    unsafe {
        let start = core::ptr::addr_of!(vktramp_start);
        let len = addr(core::ptr::addr_of!(vktramp_end)) - addr(start);
        core::slice::from_raw_parts(start, len)
    }
}

/// Offsets of the stub's entry points, relative to the start of the stub
/// (or of the trampoline, for the `tramp_*` fields).
#[derive(Clone, Copy, Debug)]
pub struct StubOffsets {
    /// Handler of each exception vector 0..32.
    pub vectors: [u64; 32],
    /// The bare `iretq` back to the vproc: the entry when there are no
    /// commands (one instruction; RSP at the iret frame, stack top - 40).
    pub iret: u64,
    /// The mailbox program's ops (see [`ProgramOps`]).
    pub ops: ProgramOps,
    /// CPL0 `syscall` entry (standard VT-x/SVM semantics).
    pub syscall: u64,
    /// Just past the CPL0 `syscall` entry's `out`.
    pub syscall_out_end: u64,
    /// CPL3 trampoline a `syscall` lands on where KVM keeps CPL3.
    pub tramp_syscall: u64,
    /// Probe: the LSTAR target during the machine-start probe.
    pub tramp_probe_entry: u64,
    /// Probe: user code that executes `syscall`.
    pub tramp_probe_user: u64,
    /// Probe: user code that executes one SSE instruction, then exits
    /// through `syscall` to the probe entry.
    pub tramp_probe_fpu: u64,
    /// Exitless: vCPU n's `syscall` entry is `xentries + abi::XS_ENTRY * n`.
    pub xentries: u64,
    /// Exitless: the entry of patched call sites (reads the line from GS,
    /// then falls into `xcommon`).
    pub pentry: u64,
    /// Exitless: the common code (posting starts here).
    pub xcommon: u64,
    /// Exitless: just after the request is posted.
    pub xposted: u64,
    /// Exitless: the exit path that reloads RAX and RCX from the line.
    pub xexit: u64,
    /// Exitless: that path's `out` (a `ud2` follows it).
    pub xout: u64,
    /// Exitless: the exit taken when no server is awake (`out`, `ud2`).
    pub xslow: u64,
    /// Exitless: the answered path (RAX from the line, then `jmp rcx`).
    pub xdone: u64,
    /// Exitless: end of the code.
    pub xend: u64,
    /// CPL0 exitless entry (VT-x/SVM): vCPU n's `syscall` entry is
    /// `cpl0_xentries + abi::XS_ENTRY * n` (stub offsets from here on).
    pub cpl0_xentries: u64,
    /// CPL0 exitless: the common code (RSP switched; posting starts here).
    pub cpl0_xcommon: u64,
    /// CPL0 exitless: just after the request is posted.
    pub cpl0_xposted: u64,
    /// CPL0 exitless: the exit path that reloads RAX and RCX from the line.
    pub cpl0_xexit: u64,
    /// CPL0 exitless: the answered path (RAX from the line, `sysretq`).
    pub cpl0_xdone: u64,
    /// CPL0 exitless: end of the code a kick settles ([`Self::cpl0_xentries`]
    /// up to here).
    pub cpl0_xend: u64,
    /// CPL0 exitless: the exit (`out` to port 0xe3), after `cpl0_xend`.
    pub cpl0_xslow: u64,
    /// CPL0 exitless: just past that `out`.
    pub cpl0_xslow_end: u64,
}

/// Offsets of the ops of the mailbox program (see [`abi::MB_CMDS`]): each
/// applies one kind of command, then jumps to the next op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramOps {
    /// `[n, page...]`: [`abi::CMD_ZAP`] each page.
    pub zap: u64,
    /// `[address, value]`: [`abi::CMD_STORE`].
    pub store: u64,
    /// `[n, va...]`: [`abi::CMD_INVLPG`] each address.
    pub invlpg: u64,
    /// `[]`: [`abi::CMD_FLUSH`].
    pub flush: u64,
    /// `[first, n]`: [`abi::CMD_TOUCH`].
    pub touch: u64,
    /// `[]`: [`abi::CMD_SET_TS`].
    pub set_ts: u64,
    /// `[]`: [`abi::CMD_CLTS`].
    pub clts: u64,
    /// `[]`: the end (marks the mailbox applied, returns to the vproc).
    pub done: u64,
}

/// Where the stub is on its way out to the host: each vector up to and
/// including its `out`, and the CPL0 syscall entry up to its `out`, as
/// half-open offset ranges. Everywhere else in the stub it is on its way
/// back to the vproc.
pub fn exiting_ranges() -> Vec<(u64, u64)> {
    let code = stub_code();
    let o = offsets();
    let mut v: Vec<(u64, u64)> = o
        .vectors
        .iter()
        .map(|&start| {
            // The vector's `out imm8, al` (e6 ib) ends its way out.
            let at = code[start as usize..]
                .iter()
                .position(|&b| b == 0xe6)
                .expect("every vector has an out");
            (start, start + at as u64 + 2)
        })
        .collect();
    v.push((o.syscall, o.syscall_out_end));
    v.push((o.cpl0_xslow, o.cpl0_xslow_end));
    v
}

/// Entry-point offsets of the assembled stub.
pub fn offsets() -> StubOffsets {
    // SAFETY: reading symbol addresses (not their contents) is always sound;
    // `vkstub_vectors` is a read-only table of 32 quads assembled above.
    unsafe {
        let s = addr(core::ptr::addr_of!(vkstub_start)) as u64;
        let t = addr(core::ptr::addr_of!(vktramp_start)) as u64;
        StubOffsets {
            vectors: core::ptr::read(core::ptr::addr_of!(vkstub_vectors)),
            iret: addr(core::ptr::addr_of!(vkstub_iret)) as u64 - s,
            ops: ProgramOps {
                zap: addr(core::ptr::addr_of!(vkstub_op_zap)) as u64 - s,
                store: addr(core::ptr::addr_of!(vkstub_op_store)) as u64 - s,
                invlpg: addr(core::ptr::addr_of!(vkstub_op_invlpg)) as u64 - s,
                flush: addr(core::ptr::addr_of!(vkstub_op_flush)) as u64 - s,
                touch: addr(core::ptr::addr_of!(vkstub_op_touch)) as u64 - s,
                set_ts: addr(core::ptr::addr_of!(vkstub_op_set_ts)) as u64 - s,
                clts: addr(core::ptr::addr_of!(vkstub_op_clts)) as u64 - s,
                done: addr(core::ptr::addr_of!(vkstub_op_done)) as u64 - s,
            },
            syscall: addr(core::ptr::addr_of!(vkstub_syscall)) as u64 - s,
            syscall_out_end: addr(core::ptr::addr_of!(vkstub_syscall_out_end)) as u64 - s,
            tramp_syscall: addr(core::ptr::addr_of!(vktramp_syscall)) as u64 - t,
            tramp_probe_entry: addr(core::ptr::addr_of!(vktramp_probe_entry)) as u64 - t,
            tramp_probe_user: addr(core::ptr::addr_of!(vktramp_probe_user)) as u64 - t,
            tramp_probe_fpu: addr(core::ptr::addr_of!(vktramp_probe_fpu)) as u64 - t,
            xentries: addr(core::ptr::addr_of!(vktramp_xentries)) as u64 - t,
            pentry: addr(core::ptr::addr_of!(vktramp_pentry)) as u64 - t,
            xcommon: addr(core::ptr::addr_of!(vktramp_xcommon)) as u64 - t,
            xposted: addr(core::ptr::addr_of!(vktramp_xposted)) as u64 - t,
            xexit: addr(core::ptr::addr_of!(vktramp_xexit)) as u64 - t,
            xout: addr(core::ptr::addr_of!(vktramp_xout)) as u64 - t,
            xslow: addr(core::ptr::addr_of!(vktramp_xslow)) as u64 - t,
            xdone: addr(core::ptr::addr_of!(vktramp_xdone)) as u64 - t,
            xend: addr(core::ptr::addr_of!(vktramp_xend)) as u64 - t,
            cpl0_xentries: addr(core::ptr::addr_of!(vkstub_xentries)) as u64 - s,
            cpl0_xcommon: addr(core::ptr::addr_of!(vkstub_xcommon)) as u64 - s,
            cpl0_xposted: addr(core::ptr::addr_of!(vkstub_xposted)) as u64 - s,
            cpl0_xexit: addr(core::ptr::addr_of!(vkstub_xexit)) as u64 - s,
            cpl0_xdone: addr(core::ptr::addr_of!(vkstub_xdone)) as u64 - s,
            cpl0_xend: addr(core::ptr::addr_of!(vkstub_xend)) as u64 - s,
            cpl0_xslow: addr(core::ptr::addr_of!(vkstub_xslow)) as u64 - s,
            cpl0_xslow_end: addr(core::ptr::addr_of!(vkstub_xslow_end)) as u64 - s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout;

    #[test]
    fn patched_entry_reads_gs_only_in_its_first_bytes() {
        let o = offsets();
        assert_eq!(o.xcommon - o.pentry, abi::XS_PENTRY_LEN);
        let t = tramp_code();
        // The one GS access: movzx r11d, byte ptr gs:[r11].
        let p = &t[o.pentry as usize..o.xcommon as usize];
        assert_eq!(p.iter().filter(|&&b| b == 0x65).count(), 1, "{p:02x?}");
        let w = abi::xs_index_table();
        assert_eq!(w[0] & 0xff, abi::XS_INDEX_POISON as u64);
        assert_eq!((w[0] >> 8) & 0xff, 0);
        assert_eq!(w[3] >> 56, 30);
        assert!(abi::XS_LINE * layout::MAX_VCPUS as u64 <= abi::XS_INDEX);
        assert!(abi::xs_gs_base(layout::MAX_VCPUS - 1) < 32);
    }

    #[test]
    fn stub_fits_and_entries_are_inside() {
        let code = stub_code();
        assert!(!code.is_empty());
        assert!(
            code.len() as u64 <= layout::STUB_MAX,
            "stub is {} bytes",
            code.len()
        );
        assert!(tramp_code().len() as u64 <= layout::PAGE_SIZE);
        let o = offsets();
        for v in o.vectors {
            assert!(v < code.len() as u64);
        }
        assert_eq!(o.vectors[0], 0);
        for op in [
            o.ops.zap,
            o.ops.store,
            o.ops.invlpg,
            o.ops.flush,
            o.ops.touch,
            o.ops.set_ts,
            o.ops.clts,
            o.ops.done,
        ] {
            assert!(op < code.len() as u64);
        }
        // Every op but the last ends `lodsq; jmp rax` (48 ad ff e0); the
        // last ends in `iretq`.
        for op in [o.ops.zap, o.ops.store, o.ops.flush, o.ops.clts] {
            let end = code[op as usize..]
                .windows(4)
                .position(|w| w == [0x48, 0xad, 0xff, 0xe0])
                .expect("op ends by jumping to the next");
            assert!(end < 48, "op at {op:#x}");
        }
        // vector 0 pushes a dummy error code (6a 00), then exits through
        // its own port (e6 80).
        assert_eq!(
            &code[0..4],
            &[0x6a, 0x00, 0xe6, abi::PORT_VECTOR_BASE as u8]
        );
        // vector 14 has an error code: it exits at once (e6 8e).
        let v14 = o.vectors[14] as usize;
        assert_eq!(
            &code[v14..v14 + 2],
            &[0xe6, abi::PORT_VECTOR_BASE as u8 + 14]
        );
        // vector 6 pushes 0 and exits as vector 0 does (e6 86).
        let v6 = o.vectors[6] as usize;
        assert_eq!(
            &code[v6..v6 + 4],
            &[0x6a, 0x00, 0xe6, abi::PORT_VECTOR_BASE as u8 + 6]
        );
        let r = exiting_ranges();
        assert_eq!(r[0], (0, 4));
        assert_eq!(r[14], (o.vectors[14], o.vectors[14] + 2));
        assert_eq!(r[6], (o.vectors[6], o.vectors[6] + 4));
        assert_eq!(code[o.iret as usize..][..2], [0x48, 0xcf]);
        // The trampoline's syscall entry is `out 0xe1, al` (e6 e1).
        let t = tramp_code();
        assert_eq!(&t[o.tramp_syscall as usize..][..2], &[0xe6, 0xe1]);
        // Exitless entries: XS_ENTRY bytes apart, each saving R11 in its
        // line and pointing R11 at the line, in the page below.
        for n in [0u64, 1, 29] {
            let e = (o.xentries + abi::XS_ENTRY * n) as usize;
            let rel = |at: usize| i32::from_le_bytes(t[at + 3..at + 7].try_into().unwrap()) as i64;
            assert_eq!(&t[e..e + 3], &[0x4c, 0x89, 0x1d]); // mov [rip+d], r11
            let line = -4096 + (abi::XS_LINE * n) as i64;
            assert_eq!(e as i64 + 7 + rel(e), line + abi::XS_R11 as i64);
            assert_eq!(&t[e + 7..e + 10], &[0x4c, 0x8d, 0x1d]); // lea r11, [rip+d]
            assert_eq!(e as i64 + 14 + rel(e + 7), line);
        }
        assert_eq!(
            &t[o.xout as usize..][..2],
            &[0xe6, abi::PORT_XSYSCALL as u8]
        );
        assert_eq!(
            &t[o.xslow as usize..][..2],
            &[0xe6, abi::PORT_XSYSCALL as u8]
        );
        assert!(o.xend as usize <= t.len());
    }

    #[test]
    fn cpl0_exitless_entries_reach_their_own_mailbox_and_line() {
        let code = stub_code();
        let o = offsets();
        // Stub offset `at` runs at SYS_VA + STUB_OFF + at; per-vCPU area
        // offsets are system-region offsets.
        let rel = |at: usize| i32::from_le_bytes(code[at + 3..at + 7].try_into().unwrap()) as i64;
        for n in [0usize, 1, layout::MAX_VCPUS - 1] {
            let e = (o.cpl0_xentries + abi::XS_ENTRY * n as u64) as usize;
            let sys = |at: usize| (layout::STUB_OFF + at as u64) as i64;
            assert_eq!(&code[e..e + 3], &[0x48, 0x89, 0x25]); // mov [rip+d], rsp
            let top = layout::cpu_stack_top_off(n) as i64;
            assert_eq!(sys(e) + 7 + rel(e), top + abi::MB_USER_RSP as i64);
            assert_eq!(&code[e + 7..e + 10], &[0x48, 0x8d, 0x25]); // lea rsp, [rip+d]
            assert_eq!(
                sys(e) + 14 + rel(e + 7),
                top - layout::IRET_FRAME_SIZE as i64
            );
            assert_eq!(CPL0_XENTRY_SWITCHED, 14);
            // From the switched RSP, the line is at + 40 + MAILBOX_SIZE.
            assert_eq!(
                (top - layout::IRET_FRAME_SIZE as i64)
                    + (layout::IRET_FRAME_SIZE + layout::MAILBOX_SIZE) as i64,
                layout::cpu_xline_off(n) as i64
            );
            assert!(e as u64 + abi::XS_ENTRY <= o.cpl0_xcommon || n == layout::MAX_VCPUS - 1);
        }
        assert!(o.cpl0_xentries < o.cpl0_xcommon);
        assert!(o.cpl0_xcommon < o.cpl0_xposted && o.cpl0_xposted < o.cpl0_xexit);
        assert!(o.cpl0_xexit < o.cpl0_xdone && o.cpl0_xdone < o.cpl0_xend);
        assert_eq!(o.cpl0_xend, o.cpl0_xslow);
        // The way out is `out 0xe3, al`; the answered path ends in sysretq.
        assert_eq!(
            &code[o.cpl0_xslow as usize..][..2],
            &[0xe6, abi::PORT_XSYSCALL as u8]
        );
        assert_eq!(o.cpl0_xslow_end, o.cpl0_xslow + 2);
        assert_eq!(&code[o.cpl0_xend as usize - 3..][..3], &[0x48, 0x0f, 0x07]);
        assert!(exiting_ranges().contains(&(o.cpl0_xslow, o.cpl0_xslow_end)));
    }
}
