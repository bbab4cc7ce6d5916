//! The i386 system call gate, `int $0x80`, from a 64-bit vproc.
//!
//! Linux serves `int $0x80` from a 64-bit process with the i386 call table:
//! the number in eax, the arguments in ebx, ecx, edx, esi, edi, ebp (32
//! bits each), the result in rax. The vkernel's IDT has a DPL0 gate at
//! 0x80, so the vproc's `int $0x80` arrives as a #GP with error code 0x402
//! (some hosts report a #UD instead); [`is_int80`] recognises it from the
//! trap and the bytes `CD 80` at rip, and [`translate`] maps the i386 calls
//! whose arguments mean the same in both ABIs to their x86-64 handlers.
//! Others return ENOSYS.

use crate::core::prelude::*;

/// The error code of a #GP raised by `int $0x80` through a DPL0 gate.
pub const INT80_GP_ERROR: u64 = (0x80 << 3) | 2;

/// Whether an exception `vector`/`error_code` at an instruction whose
/// first two bytes are `insn` is the vproc's `int $0x80`.
pub fn is_int80(vector: u8, error_code: u64, insn: [u8; 2]) -> bool {
    insn == [0xcd, 0x80] && ((vector == 13 && error_code == INT80_GP_ERROR) || vector == 6)
}

/// The x86-64 call and arguments for i386 call `nr` with the registers of
/// `f`, or None (ENOSYS) for a call this vkernel does not translate.
pub fn translate(f: &TrapFrame) -> Option<(u64, [u64; 6])> {
    let r = |v: u64| v & 0xffff_ffff;
    let (b, c, d, si, di) = (r(f.rbx), r(f.rcx), r(f.rdx), r(f.rsi), r(f.rdi));
    // Signed 32-bit arguments (offsets).
    let s = |v: u64| v as u32 as i32 as i64 as u64;
    let (nr, a): (u64, [u64; 6]) = match r(f.rax) {
        1 => (60, [b, 0, 0, 0, 0, 0]),                 // exit
        3 => (0, [b, c, d, 0, 0, 0]),                  // read
        4 => (1, [b, c, d, 0, 0, 0]),                  // write
        5 => (2, [b, c, d, 0, 0, 0]),                  // open
        6 => (3, [b, 0, 0, 0, 0, 0]),                  // close
        10 => (87, [b, 0, 0, 0, 0, 0]),                // unlink
        12 => (80, [b, 0, 0, 0, 0, 0]),                // chdir
        19 => (8, [b, s(c), d, 0, 0, 0]),              // lseek
        20 => (39, [0; 6]),                            // getpid
        24 | 199 => (102, [0; 6]),                     // getuid
        33 => (21, [b, c, 0, 0, 0, 0]),                // access
        37 => (62, [b, c, 0, 0, 0, 0]),                // kill
        41 => (32, [b, 0, 0, 0, 0, 0]),                // dup
        42 => (22, [b, 0, 0, 0, 0, 0]),                // pipe
        45 => (12, [b, 0, 0, 0, 0, 0]),                // brk
        47 | 200 => (104, [0; 6]),                     // getgid
        49 | 201 => (107, [0; 6]),                     // geteuid
        50 | 202 => (108, [0; 6]),                     // getegid
        57 => (109, [b, c, 0, 0, 0, 0]),               // setpgid
        60 => (95, [b, 0, 0, 0, 0, 0]),                // umask
        63 => (33, [b, c, 0, 0, 0, 0]),                // dup2
        64 => (110, [0; 6]),                           // getppid
        65 => (111, [0; 6]),                           // getpgrp
        66 => (112, [0; 6]),                           // setsid
        85 => (89, [b, c, d, 0, 0, 0]),                // readlink
        91 => (11, [b, c, 0, 0, 0, 0]),                // munmap
        122 => (63, [b, 0, 0, 0, 0, 0]),               // uname
        125 => (10, [b, c, d, 0, 0, 0]),               // mprotect
        132 => (121, [b, 0, 0, 0, 0, 0]),              // getpgid
        133 => (81, [b, 0, 0, 0, 0, 0]),               // fchdir
        143 => (73, [b, c, 0, 0, 0, 0]),               // flock
        158 => (24, [0; 6]),                           // sched_yield
        180 => (17, [b, c, d, si | (di << 32), 0, 0]), // pread64
        183 => (79, [b, c, 0, 0, 0, 0]),               // getcwd
        224 => (186, [0; 6]),                          // gettid
        252 => (231, [b, 0, 0, 0, 0, 0]),              // exit_group
        330 => (292, [b, c, d, 0, 0, 0]),              // dup3
        331 => (293, [b, c, 0, 0, 0, 0]),              // pipe2
        _ => return None,
    };
    Some((nr, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int80_is_recognised_only_at_cd80() {
        assert!(is_int80(13, 0x402, [0xcd, 0x80]));
        assert!(is_int80(6, 0, [0xcd, 0x80]));
        assert!(!is_int80(13, 0, [0xcd, 0x80]));
        assert!(!is_int80(13, 0x402, [0x0f, 0x05]));
    }

    #[test]
    fn write_takes_32_bit_arguments() {
        let mut f = TrapFrame::new(0, 0);
        f.rax = 0xdead_0000_0000_0004;
        f.rbx = 0xffff_ffff_0000_0001;
        f.rcx = 0x40_1000;
        f.rdx = 5;
        assert_eq!(translate(&f), Some((1, [1, 0x40_1000, 5, 0, 0, 0])));
        f.rax = 9999;
        assert_eq!(translate(&f), None);
    }
}
