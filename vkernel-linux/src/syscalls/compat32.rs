//! The i386 system call gate, `int $0x80`, from a 64-bit vproc.
//!
//! Linux serves `int $0x80` from a 64-bit process with the i386 call table:
//! the number in eax, the arguments in ebx, ecx, edx, esi, edi, ebp (32
//! bits each), the result in rax. The vkernel's IDT has a DPL0 gate at
//! 0x80, so the vproc's `int $0x80` arrives as a #GP with error code 0x402
//! (some hosts report a #UD instead); [`is_int80`] recognises it from the
//! trap and the bytes `CD 80` at rip, and the syscall table
//! ([`super::table::translate32`]) maps the i386 calls whose arguments
//! mean the same in both ABIs to their x86-64 handlers. Others return
//! ENOSYS.

/// The error code of a #GP raised by `int $0x80` through a DPL0 gate.
pub const INT80_GP_ERROR: u64 = (0x80 << 3) | 2;

/// Whether an exception `vector`/`error_code` at an instruction whose
/// first two bytes are `insn` is the vproc's `int $0x80`.
pub fn is_int80(vector: u8, error_code: u64, insn: [u8; 2]) -> bool {
    insn == [0xcd, 0x80] && ((vector == 13 && error_code == INT80_GP_ERROR) || vector == 6)
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
}
