//! Where a `syscall` whose number is not a `mov eax, imm32` right before it
//! (glibc's `read`: `xor eax, eax; syscall`; `syscall(3)`: the number from
//! a register) can hop to its stub without changing any instruction
//! boundary: dead alignment padding a short jump away.
//!
//! Such a site's two `syscall` bytes become `jmp rel8` (two bytes: every
//! instruction around keeps its boundaries, so a branch to the `syscall`,
//! a thread blocked in it, a signal frame or a restart that returns to it
//! or after it still find an instruction there), and the first five bytes
//! of the padding become `jmp rel32` to the site's stub. Nothing is
//! pushed: the red zone below RSP is the program's, as around `syscall`.
//!
//! The padding is found by decoding forward from the `syscall`'s return
//! address, a known instruction boundary (the call just returned there),
//! through a short list of instruction forms compilers put after a call
//! (compare, test, conditional jumps, moves between registers or to and
//! from memory, calls, stack adjustment) until the first `ret` or `jmp`;
//! the bytes after it must be `nop`s or `int3`s up to an 8-byte aligned
//! address (alignment padding, which no compiler branches into), at least
//! five of them, within a `jmp rel8` of the return address. Any byte the
//! decoder does not know ends the search: that site keeps its `syscall`.

/// How far after the return address the padding may start and still be
/// reached by `jmp rel8` (its displacement counts from the return
/// address) with five bytes to spare.
pub const HOP_REACH: usize = 127;

/// Bytes after a return address that [`hop_after`] reads (a hop within
/// reach, and the rest of its padding up to an aligned end).
pub const HOP_SCAN: usize = HOP_REACH + 5 + 8;

/// Where the decoded instruction leaves control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// To the next instruction (maybe also elsewhere: a conditional jump,
    /// a call that returns).
    Next,
    /// Never to the next instruction (`ret`, `jmp`).
    End,
}

/// The length of the ModRM operand (ModRM byte, SIB, displacement) at
/// the start of `b`.
fn modrm_len(b: &[u8]) -> Option<usize> {
    let m = *b.first()?;
    let (md, rm) = (m >> 6, m & 7);
    let sib = md != 3 && rm == 4;
    let disp = match md {
        0 if rm == 5 => 4,
        0 if sib => match b.get(1)? & 7 {
            5 => 4,
            _ => 0,
        },
        1 => 1,
        2 => 4,
        _ => 0,
    };
    Some(1 + usize::from(sib) + disp)
}

/// The length and flow of the instruction at the start of `b`, for the
/// forms this module knows; None for anything else.
fn insn(b: &[u8]) -> Option<(usize, Flow)> {
    let mut i = 0;
    // FS/GS segment overrides (TLS: errno), then at most one REX.
    while matches!(b.get(i)?, 0x64 | 0x65) {
        i += 1;
    }
    let rex_w = match b.get(i)? {
        r @ 0x40..=0x4f => {
            i += 1;
            r & 8 != 0
        }
        _ => false,
    };
    let op = *b.get(i)?;
    let rest = b.get(i + 1..)?;
    let with_modrm = |extra: usize| modrm_len(rest).map(|n| (i + 1 + n + extra, Flow::Next));
    match op {
        // ALU, test, mov, lea between registers and memory.
        0x01 | 0x03 | 0x09 | 0x0b | 0x21 | 0x23 | 0x29 | 0x2b | 0x31 | 0x33 | 0x39 | 0x3b
        | 0x85 | 0x89 | 0x8b | 0x8d => with_modrm(0),
        // Group 1 with imm8 / imm32; mov r/m, imm32.
        0x83 => with_modrm(1),
        0x81 | 0xc7 => with_modrm(4),
        // test r/m, imm32 (/0) is longer; not, neg, mul... (/2-/7) are not.
        0xf7 => match (rest.first()? >> 3) & 7 {
            0 | 1 => with_modrm(4),
            _ => with_modrm(0),
        },
        // cmp/and/or... eax, imm32.
        0x3d | 0x25 | 0x0d | 0x2d | 0x05 | 0x35 | 0xa9 => Some((i + 5, Flow::Next)),
        // mov r32, imm32 (imm64 with REX.W).
        0xb8..=0xbf => Some((i + if rex_w { 9 } else { 5 }, Flow::Next)),
        // push / pop register, leave.
        0x50..=0x5f | 0xc9 => Some((i + 1, Flow::Next)),
        // Conditional jumps, call.
        0x70..=0x7f => Some((i + 2, Flow::Next)),
        0xe8 => Some((i + 5, Flow::Next)),
        0x0f => match *rest.first()? {
            0x80..=0x8f => Some((i + 6, Flow::Next)),
            // setcc, cmovcc, movzx/movsx.
            0x90..=0x9f | 0x40..=0x4f | 0xb6 | 0xb7 | 0xbe | 0xbf => {
                modrm_len(rest.get(1..)?).map(|n| (i + 2 + n, Flow::Next))
            }
            // Another system call.
            0x05 => Some((i + 2, Flow::Next)),
            _ => None,
        },
        0xc3 => Some((i + 1, Flow::End)),
        0xeb => Some((i + 2, Flow::End)),
        0xe9 => Some((i + 5, Flow::End)),
        _ => None,
    }
}

/// The length of the `nop` or `int3` at the start of `b` (padding
/// forms: `90`, `cc`, `0f 1f /0` with any `66`/`2e` prefixes).
fn pad(b: &[u8]) -> Option<usize> {
    match *b.first()? {
        0x90 | 0xcc => return Some(1),
        _ => {}
    }
    let mut i = 0;
    while matches!(b.get(i)?, 0x66 | 0x2e) {
        i += 1;
    }
    match (b.get(i)?, b.get(i + 1)?) {
        (0x0f, 0x1f) if (b.get(i + 2)? >> 3) & 7 == 0 => {
            modrm_len(b.get(i + 2..)?).map(|n| i + 2 + n)
        }
        (0x90, _) if i > 0 => Some(i + 1),
        _ => None,
    }
}

/// `code` holds the bytes from a `syscall`'s return address `ret` on (up
/// to [`HOP_SCAN`], fewer at the end of its area): the address of five
/// bytes of dead padding within a `jmp rel8` of `ret`, if there are.
pub fn hop_after(code: &[u8], ret: u64) -> Option<u64> {
    let mut at = 0usize;
    loop {
        if at > HOP_REACH {
            return None;
        }
        let (n, flow) = insn(code.get(at..)?)?;
        at += n;
        if flow == Flow::End {
            break;
        }
    }
    // Alignment padding from here to an 8-byte aligned address.
    let start = at;
    if start > HOP_REACH {
        return None;
    }
    let mut end = start;
    while !(ret + end as u64).is_multiple_of(8) || end - start < 5 {
        end += pad(code.get(end..)?)?;
        if end > code.len() {
            return None;
        }
    }
    Some(ret + start as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc 2.36's `read` (Debian's busybox-static), from its `syscall`'s
    /// return address 0x47b6fd: `cmp rax, -4096; ja; ret`, then 10 bytes of
    /// `cs nopw` up to 0x47b710.
    #[test]
    fn glibc_read_hops_into_its_padding() {
        let code = [
            0x48, 0x3d, 0x00, 0xf0, 0xff, 0xff, // cmp rax, -4096
            0x77, 0x5b, // ja
            0xc3, // ret
            0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00, // nopw
            0x48, 0x83, 0xec, 0x28, // sub rsp, 0x28 (a jump target)
        ];
        assert_eq!(hop_after(&code, 0x47b6fd), Some(0x47b706));
    }

    /// Its cancellable path: moves through the stack, a call, `add rsp`,
    /// `ret`, then a 5-byte `nopl` up to 0x47b760.
    #[test]
    fn a_longer_path_with_memory_operands_and_a_call() {
        let code = [
            0x48, 0x3d, 0x00, 0xf0, 0xff, 0xff, // cmp rax, -4096
            0x77, 0x34, // ja
            0x44, 0x89, 0xc7, // mov edi, r8d
            0x48, 0x89, 0x44, 0x24, 0x08, // mov [rsp + 8], rax
            0xe8, 0xbf, 0x4a, 0xfb, 0xff, // call
            0x48, 0x8b, 0x44, 0x24, 0x08, // mov rax, [rsp + 8]
            0x48, 0x83, 0xc4, 0x28, // add rsp, 0x28
            0xc3, // ret
            0x0f, 0x1f, 0x44, 0x00, 0x00, // nopl
            0x48, 0xc7, 0xc2, 0xe0, 0xff, 0xff, 0xff,
        ];
        assert_eq!(hop_after(&code, 0x47b73c), Some(0x47b75b));
    }

    #[test]
    fn no_hop_without_known_code_padding_or_reach() {
        // Padding too short (3 bytes to the aligned end).
        let short = [0xc3, 0x0f, 0x1f, 0x00, 0x55];
        assert_eq!(hop_after(&short, 0x1004), None);
        // An instruction the decoder does not know (a SSE move).
        let unknown = [
            0x0f, 0x11, 0x44, 0x24, 0x08, 0xc3, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc,
        ];
        assert_eq!(hop_after(&unknown, 0x1000), None);
        // Code, not padding, after the `ret`.
        let code_after = [0xc3, 0x48, 0x83, 0xec, 0x28, 0x90, 0x90, 0x90];
        assert_eq!(hop_after(&code_after, 0x1000), None);
        // Padding out of a `jmp rel8`'s reach.
        let mut far = Vec::new();
        for _ in 0..70 {
            far.extend_from_slice(&[0x89, 0xc7]); // mov edi, eax
        }
        far.push(0xc3);
        far.extend_from_slice(&[0xcc; 16]);
        assert_eq!(hop_after(&far, 0x1000), None);
        // The end of the area before the padding ends.
        assert_eq!(hop_after(&[0xc3, 0xcc, 0xcc], 0x1000), None);
    }

    #[test]
    fn int3_padding_and_a_jmp_end_too() {
        let code = [0xeb, 0x10, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc];
        assert_eq!(hop_after(&code, 0x2000), Some(0x2002));
    }
}
