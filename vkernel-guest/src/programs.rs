//! Small guest programs assembled in the repo, used by the integration
//! tests, the benchmarks and the example's built-in demo.
//!
//! Each is position independent: copy its bytes anywhere a vproc can
//! execute and start it with the registers its doc names. They end with
//! `syscall` number [`SYS_EXIT`] unless noted; a failed self-check executes
//! `ud2` (#UD).

use core::arch::global_asm;

/// Syscall number the programs use to say they are done (`rdi` = status).
pub const SYS_EXIT: u64 = 60;
/// Syscall number of the checked-syscall loop: the host must return
/// `rdi + 2*rsi + 3*rdx + 5*r10 + 7*r8 + 11*r9` (wrapping).
pub const SYS_CHECK: u64 = 1000;

/// Expected result of [`SYS_CHECK`].
pub fn check_result(a: [u64; 6]) -> u64 {
    a[0].wrapping_add(a[1].wrapping_mul(2))
        .wrapping_add(a[2].wrapping_mul(3))
        .wrapping_add(a[3].wrapping_mul(5))
        .wrapping_add(a[4].wrapping_mul(7))
        .wrapping_add(a[5].wrapping_mul(11))
}

global_asm!(
    r#"
    .pushsection .text.vkprogs,"ax",@progbits

    // syscall_check: rcx = iterations. Calls SYS_CHECK with arguments derived
    // from the counter and checks the result and that rbx/rbp/r12-r15 survive.
    .globl vkprog_syscall_check
vkprog_syscall_check:
    mov r12, rcx
    mov r13, 0x1122334455667788
    mov rbp, 0x0badc0de
    xor r14, r14
1:
    cmp r14, r12
    je 2f
    mov rdi, r14
    lea rsi, [r14 + 1]
    mov rdx, r13
    mov r10, r14
    shl r10, 7
    mov r8, 0x55
    mov r9, r14
    not r9
    // expected value in rbx
    mov rbx, rdi
    lea r15, [rsi + rsi]
    add rbx, r15
    lea r15, [rdx + rdx*2]
    add rbx, r15
    lea r15, [r10 + r10*4]
    add rbx, r15
    imul r15, r8, 7
    add rbx, r15
    imul r15, r9, 11
    add rbx, r15
    mov eax, 1000
    syscall
    cmp rax, rbx
    jne 9f
    cmp rbp, 0x0badc0de
    jne 9f
    inc r14
    jmp 1b
2:
    mov eax, 60
    xor edi, edi
    syscall
    ud2
9:
    ud2
    .globl vkprog_syscall_check_end
vkprog_syscall_check_end:

    // syscall_regs: rcx = iterations, rdi = 1 to check the live DF too.
    // Calls SYS_CHECK (rdi = the counter, the other arguments 0) with RSP
    // set to a counter-derived value (not a stack: the program never uses
    // one), DF and CF set, and checks what Linux's `sysret` leaves: RAX the
    // result, RCX the return address, R11 the RFLAGS of the `syscall` (DF,
    // CF, IF and bit 1 set), RSP and (with rdi = 1) DF as they were.
    .globl vkprog_syscall_regs
vkprog_syscall_regs:
    mov r12, rcx
    mov rbx, rdi
    xor r14, r14
1:
    cmp r14, r12
    je 2f
    mov rdi, r14
    xor esi, esi
    xor edx, edx
    xor r10d, r10d
    xor r8d, r8d
    xor r9d, r9d
    lea rsp, [r14 * 8 + 0x123450]
    mov r13, rsp
    lea r15, [rip + 3f]
    mov eax, 1000
    std
    stc
    syscall
3:
    cmp rax, rdi
    jne 9f
    cmp rcx, r15
    jne 9f
    cmp rsp, r13
    jne 9f
    bt r11, 10
    jnc 9f
    bt r11, 0
    jnc 9f
    bt r11, 9
    jnc 9f
    bt r11, 1
    jnc 9f
    test rbx, rbx
    jz 5f
    // DF is live: lodsb steps backwards.
    lea rsi, [rip + 4f]
    lodsb
    lea rdx, [rip + 4f - 1]
    cmp rsi, rdx
    jne 9f
5:
    cld
    inc r14
    jmp 1b
2:
    mov eax, 60
    xor edi, edi
    syscall
    ud2
9:
    ud2
4:
    .byte 0
    .globl vkprog_syscall_regs_end
vkprog_syscall_regs_end:

    // touch: rdi = base, rsi = pages, rdx = 1 to write (else read).
    // Touches one byte in each page; exits with the sum of bytes read.
    .globl vkprog_touch
vkprog_touch:
    xor eax, eax
    xor ecx, ecx
1:
    cmp rcx, rsi
    je 3f
    mov r8, rcx
    shl r8, 12
    add r8, rdi
    test rdx, rdx
    jz 2f
    mov byte ptr [r8], cl
    inc rcx
    jmp 1b
2:
    movzx r9d, byte ptr [r8]
    add rax, r9
    inc rcx
    jmp 1b
3:
    mov rdi, rax
    mov eax, 60
    syscall
    ud2
    .globl vkprog_touch_end
vkprog_touch_end:

    // load: rdi = address. Reads 8 bytes into rdi and exits.
    .globl vkprog_load
vkprog_load:
    mov rdi, [rdi]
    mov eax, 60
    syscall
    ud2
    .globl vkprog_load_end
vkprog_load_end:

    // store: rdi = address, rsi = value. Writes 8 bytes and exits.
    .globl vkprog_store
vkprog_store:
    mov [rdi], rsi
    mov eax, 60
    xor edi, edi
    syscall
    ud2
    .globl vkprog_store_end
vkprog_store_end:

    // jump: jumps to rdi.
    .globl vkprog_jump
vkprog_jump:
    jmp rdi
    .globl vkprog_jump_end
vkprog_jump_end:

    // spin: loops forever, counting in rax.
    .globl vkprog_spin
vkprog_spin:
    inc rax
    jmp vkprog_spin
    .globl vkprog_spin_end
vkprog_spin_end:

    // ud: executes ud2.
    .globl vkprog_ud
vkprog_ud:
    ud2
    .globl vkprog_ud_end
vkprog_ud_end:

    // divzero: divides by zero.
    .globl vkprog_divzero
vkprog_divzero:
    xor ecx, ecx
    mov eax, 1
    xor edx, edx
    div ecx
    ud2
    .globl vkprog_divzero_end
vkprog_divzero_end:

    // int3: executes int3 (#BP; a #GP where the gate is DPL0).
    .globl vkprog_int3
vkprog_int3:
    int3
    ud2
    .globl vkprog_int3_end
vkprog_int3_end:

    // outport: executes `out 0xe0, al` (must not fake a stub exit).
    .globl vkprog_outport
vkprog_outport:
    out 0xe0, al
    mov eax, 60
    syscall
    .globl vkprog_outport_end
vkprog_outport_end:

    // sse: rdi = multiplier (double bits), rcx = iterations. Computes
    // xmm0 = xmm0 * rdi-as-double + 1.0 in a loop, calling syscall 1001
    // (yield) every iteration, then exits with xmm0's bits in rdi.
    .globl vkprog_sse
vkprog_sse:
    movq xmm1, rdi
    mov rax, 0x3ff0000000000000
    movq xmm2, rax
    xorpd xmm0, xmm0
    mov r12, rcx
1:
    test r12, r12
    jz 2f
    mulsd xmm0, xmm1
    addsd xmm0, xmm2
    mov eax, 1001
    syscall
    dec r12
    jmp 1b
2:
    movq rdi, xmm0
    mov eax, 60
    syscall
    ud2
    .globl vkprog_sse_end
vkprog_sse_end:

    .popsection
"#
);

macro_rules! program {
    ($(#[$doc:meta])* $name:ident, $start:ident, $end:ident) => {
        $(#[$doc])*
        pub fn $name() -> &'static [u8] {
            extern "C" {
                static $start: u8;
                static $end: u8;
            }
            // SAFETY: both labels are defined by the global_asm! above in
            // one section, start before end; the bytes are read-only code.
            unsafe {
                let s = core::ptr::addr_of!($start);
                let len = core::ptr::addr_of!($end) as usize - s as usize;
                core::slice::from_raw_parts(s, len)
            }
        }
    };
}

program!(
    /// `rcx` iterations of a checked [`SYS_CHECK`] syscall, then exit 0.
    syscall_check, vkprog_syscall_check, vkprog_syscall_check_end
);
program!(
    /// `rcx` iterations of [`SYS_CHECK`] (`rdi` = the counter, the other
    /// arguments 0) with RSP set to a counter-derived value, DF and CF set;
    /// checks RAX, RCX (the return address), R11 (the `syscall`'s RFLAGS),
    /// RSP and, when started with `rdi` = 1, the live DF after each, as
    /// Linux's `sysret` leaves them; then exit 0.
    syscall_regs, vkprog_syscall_regs, vkprog_syscall_regs_end
);
program!(
    /// Touch `rsi` pages from `rdi` (write if `rdx` = 1), exit with the sum read.
    touch, vkprog_touch, vkprog_touch_end
);
program!(
    /// Load 8 bytes from `rdi`, exit with them in `rdi`.
    load, vkprog_load, vkprog_load_end
);
program!(
    /// Store `rsi` at `rdi`, exit 0.
    store, vkprog_store, vkprog_store_end
);
program!(
    /// Jump to `rdi`.
    jump, vkprog_jump, vkprog_jump_end
);
program!(
    /// Spin forever incrementing `rax`.
    spin, vkprog_spin, vkprog_spin_end
);
program!(
    /// Execute `ud2`.
    ud, vkprog_ud, vkprog_ud_end
);
program!(
    /// Divide by zero.
    divzero, vkprog_divzero, vkprog_divzero_end
);
program!(
    /// Execute `int3`.
    int3, vkprog_int3, vkprog_int3_end
);
program!(
    /// Execute `out 0xe0, al` from user mode.
    outport, vkprog_outport, vkprog_outport_end
);
program!(
    /// SSE loop: `rcx` iterations of x = x*m + 1 (m = `rdi` as f64 bits),
    /// syscall 1001 after each; exit with x's bits in `rdi`.
    sse, vkprog_sse, vkprog_sse_end
);
