//! `cpuid` sites rewritten to their answer.
//!
//! KVM emulates every `cpuid` a vproc executes, at about 19 µs each on our
//! hosts (five times a native one), and a static glibc program asks 38 of
//! them at its start (the features, then the cache parameters twice per
//! level on AMD). With CPUID faulting on (`Cpu::set_cpuid_faulting`) a
//! learning process's `cpuid`s come to the vkernel instead, which answers
//! them from the vCPU's table and counts the sites in the site book, as
//! syscall sites are counted. A site whose leaf, and subleaf where the
//! answer depends on it, are constants of its code:
//!
//! ```text
//! site:   b8 LL LL LL LL      mov eax, leaf
//!        [31 c9               xor ecx, ecx          (subleaf 0)
//!       | b9 SS SS SS SS      mov ecx, subleaf]
//!         0f a2               cpuid
//! ret:
//! ```
//!
//! gets its `mov eax` rewritten into `jmp rel32` to a stub that loads the
//! answer and jumps back to `ret`:
//!
//! ```text
//! stub:  [31 c9               xor ecx, ecx          (the flags it sets)]
//!         b8 .. / bb .. / b9 .. / ba ..   mov eax/ebx/ecx/edx, answer
//!         e9 RR RR RR RR      jmp ret
//! ```
//!
//! Nothing is pushed and no flag changes that the original would not
//! change. The `cpuid` itself stays, so a branch to it (or to the `xor`)
//! still runs it. The answer is the vCPU's at the time of the rewrite:
//! KVM's table is the same on every vCPU here (no per-vCPU APIC ID in leaf
//! 1), and a program cannot tell a stale answer from one read just before
//! a migration. The `b8` is checked as [`super::is_site`] checks a syscall
//! site's (it cannot be the tail of a longer instruction), for leaves whose
//! `[rax + leaf]` cannot be mapped (below 32 Ki, and the extended leaves'
//! first 32 Ki, whose sign-extended displacement cancels RAX).

use super::*;

/// Bytes before a `cpuid`'s return address that [`cpuid_site`] reads: the
/// longest form (12 bytes) and the [`BEFORE`] bytes before it.
const CPUID_CODE: usize = BEFORE + 12;

/// The tag that marks a `cpuid` site in the site book, whose entries hold
/// a syscall number otherwise (see [`cpuid_book_nr`]).
const BOOK_CPUID: u64 = 1 << 40;

/// The site book's entry for a `cpuid` site of `leaf`.
pub fn cpuid_book_nr(leaf: u32) -> u64 {
    BOOK_CPUID | u64::from(leaf)
}

/// The leaf of a site book entry that is a `cpuid` site (see [`cpuid_book_nr`]).
pub fn cpuid_book_leaf(nr: u64) -> Option<u32> {
    (nr & !0xffff_ffff == BOOK_CPUID).then_some(nr as u32)
}

/// What the site sets ECX to before its `cpuid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ecx {
    /// Nothing (the leaf's answer does not depend on it).
    Untouched,
    /// `xor ecx, ecx`.
    Xor,
    /// `mov ecx, imm32`.
    Mov(u32),
}

/// Can a `b8 leaf` be trusted as a `mov` when it cannot be the tail of an
/// instruction accessing `[rax + leaf]` (see the module docs)?
fn leaf_in_reach(leaf: u32) -> bool {
    leaf < 0x8000 || (0x8000_0000..0x8000_8000).contains(&leaf)
}

/// Could the `b8` after `before` be anything but a `mov eax, imm32` that
/// a `jmp rel32` may replace? The syscall sites' rule ([`could_be_tail`]),
/// except that the byte right before may be a prefix that changes neither
/// the `mov` nor a `jmp` put in its place: a segment override, `rep`, or a
/// REX without W and B (`jbe` to a displacement of 0x26 or 0x46 looks like
/// one: glibc's `handle_amd` has both before a `mov eax, 0x8000000x`).
/// A REX.W or REX.B (`movabs`, `mov r8d`), an operand or address size
/// override or `lock` stays refused.
fn doubtful(before: &[u8; BEFORE]) -> bool {
    let mut b = *before;
    if matches!(
        b[BEFORE - 1],
        0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0xf2 | 0xf3 | 0x40 | 0x42 | 0x44 | 0x46
    ) {
        // As a prefix of the `mov`: harmless; as the end of the previous
        // instruction: the `mov` starts right after it.
        b[BEFORE - 1] = 0x90;
    }
    could_be_tail(&b)
}

/// The site of the `cpuid` returning to `ret`, given `code` (the
/// [`CPUID_CODE`] bytes before `ret`): the `mov eax, leaf`'s address and
/// what the site does to ECX; None if the code is not one of the forms, or
/// the answer would depend on an ECX the code does not set (`varies`).
fn cpuid_site(code: &[u8; CPUID_CODE], ret: u64, leaf: u32, varies: bool) -> Option<(u64, Ecx)> {
    let n = CPUID_CODE;
    if code[n - 2..] != [0x0f, 0xa2] || !leaf_in_reach(leaf) {
        return None;
    }
    let mov_at = |back: usize| -> bool {
        let at = n - back;
        let before: &[u8; BEFORE] = code[at - BEFORE..at].try_into().expect("BEFORE bytes");
        code[at] == 0xb8 && code[at + 1..at + 5] == leaf.to_le_bytes() && !doubtful(before)
    };
    let (back, ecx) = if code[n - 7] == 0xb9 && mov_at(12) {
        let sub = u32::from_le_bytes(code[n - 6..n - 2].try_into().expect("4 bytes"));
        (12, Ecx::Mov(sub))
    } else if code[n - 4..n - 2] == [0x31, 0xc9] && mov_at(9) {
        (9, Ecx::Xor)
    } else if !varies && mov_at(7) {
        (7, Ecx::Untouched)
    } else {
        return None;
    };
    Some((ret - back as u64, ecx))
}

/// The stub of a `cpuid` site: `ecx` as the site sets it, then the answer
/// `regs` (EAX, EBX, ECX, EDX), then back to `ret`; `stub` is its address.
fn cpuid_stub(ecx: Ecx, regs: [u32; 4], stub: u64, ret: u64) -> [u8; SLOT as usize] {
    let mut b = [0xccu8; SLOT as usize];
    let mut i = 0;
    if ecx == Ecx::Xor {
        b[..2].copy_from_slice(&[0x31, 0xc9]);
        i = 2;
    }
    // mov eax, ebx, ecx, edx (b8, bb, b9, ba).
    for (op, v) in [0xb8u8, 0xbb, 0xb9, 0xba].into_iter().zip(regs) {
        b[i] = op;
        b[i + 1..i + 5].copy_from_slice(&v.to_le_bytes());
        i += 5;
    }
    b[i] = 0xe9;
    let back = ret.wrapping_sub(stub + i as u64 + 5) as i64 as i32;
    b[i + 1..i + 5].copy_from_slice(&back.to_le_bytes());
    b
}

impl Mm {
    /// Rewrite the `cpuid` of `leaf` returning to `ret` into a jump to a
    /// stub holding its answer (see the module docs): `answer(leaf,
    /// subleaf)` is what the vCPU answers, `varies` whether that depends
    /// on the subleaf, `entry` the machine's patched entry (every stub
    /// page's header), `threads` how many threads share this address
    /// space.
    pub fn patch_cpuid(
        &mut self,
        ret: u64,
        leaf: u32,
        (answer, varies): (&dyn Fn(u32, u32) -> [u32; 4], bool),
        entry: u64,
        threads: usize,
    ) -> Result<(), NoPatch> {
        if self.patch.off || self.patch.sites.len() >= MAX_SITES {
            return Err(NoPatch::Off);
        }
        let (start, vma) = self.find(ret.saturating_sub(2)).ok_or(NoPatch::Area)?;
        if !code_area(&vma, ret) {
            return Err(NoPatch::Area);
        }
        let mut code = [0x90u8; CPUID_CODE];
        let from = ret.saturating_sub(CPUID_CODE as u64).max(start);
        let skip = CPUID_CODE - (ret - from) as usize;
        self.read(from, &mut code[skip..])?;
        let (site, ecx) = cpuid_site(&code, ret, leaf, varies).ok_or(NoPatch::Pattern)?;
        if site < start
            || self.patch.sites.contains_key(&site)
            || self.patch.refused.contains(&site)
        {
            return Err(NoPatch::Pattern);
        }
        if !one_store(site, threads) {
            return Err(NoPatch::Straddles);
        }
        let subleaf = match ecx {
            Ecx::Mov(s) => s,
            Ecx::Xor | Ecx::Untouched => 0,
        };
        let stub = self.stub_slot(site, entry)?;
        let page = stub & !(PAGE - 1);
        self.poke(stub, &cpuid_stub(ecx, answer(leaf, subleaf), stub, ret))?;
        let mut old = [0u8; 5];
        self.read(site, &mut old)?;
        self.poke_bytes(site, &jmp_bytes(site, stub))?;
        *self.patch.pages.get_mut(&page).expect("stub page") += 1;
        let s = Site {
            old,
            stub,
            hop: None,
            cpuid: true,
        };
        self.patch.sites.insert(site, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `before` ([`BEFORE`] bytes), then `site` right before the return
    /// address, padded with `nop`s in front.
    fn code(before: [u8; BEFORE], site: &[u8]) -> [u8; CPUID_CODE] {
        let mut c = [0x90u8; CPUID_CODE];
        let at = CPUID_CODE - site.len();
        c[at - BEFORE..at].copy_from_slice(&before);
        c[at..].copy_from_slice(site);
        c
    }

    const RET: u64 = 0x40_1000;

    #[test]
    fn the_three_forms_are_found() {
        let nops = [0x90; BEFORE];
        // mov eax, 0x80000006; cpuid.
        let a = code(nops, &[0xb8, 6, 0, 0, 0x80, 0x0f, 0xa2]);
        assert_eq!(
            cpuid_site(&a, RET, 0x8000_0006, false),
            Some((RET - 7, Ecx::Untouched))
        );
        assert_eq!(
            cpuid_site(&a, RET, 0x8000_0006, true),
            None,
            "an indexed leaf needs ECX set by the site"
        );
        assert_eq!(cpuid_site(&a, RET, 4, false), None, "another leaf");
        // mov eax, 4; xor ecx, ecx; cpuid.
        let b = code(nops, &[0xb8, 4, 0, 0, 0, 0x31, 0xc9, 0x0f, 0xa2]);
        assert_eq!(cpuid_site(&b, RET, 4, true), Some((RET - 9, Ecx::Xor)));
        // mov eax, 0xd; mov ecx, 1; cpuid.
        let c = code(nops, &[0xb8, 0xd, 0, 0, 0, 0xb9, 1, 0, 0, 0, 0x0f, 0xa2]);
        assert_eq!(
            cpuid_site(&c, RET, 0xd, true),
            Some((RET - 12, Ecx::Mov(1)))
        );
        // mov eax, edi; mov ecx, esi; cpuid: the leaf is not in the code.
        let r = code(nops, &[0x89, 0xf8, 0x89, 0xf1, 0x0f, 0xa2]);
        assert_eq!(cpuid_site(&r, RET, 4, false), None);
    }

    #[test]
    fn doubtful_movs_and_far_leaves_are_refused() {
        // lea edi, [rax + 1]: the b8 is a ModRM byte.
        let lea = code(
            [0x90, 0x90, 0x90, 0x90, 0x8d],
            &[0xb8, 1, 0, 0, 0, 0x0f, 0xa2],
        );
        assert_eq!(cpuid_site(&lea, RET, 1, false), None);
        // jbe with displacement 0x26 (an ES override if read as a prefix)
        // or 0x46 (REX.RX) before the mov: still a mov (glibc's handle_amd);
        // 0x48 (REX.W: movabs) and 0x66 are not.
        for (b1, ok) in [
            (0x26, true),
            (0x46, true),
            (0x48, false),
            (0x41, false),
            (0x66, false),
        ] {
            let c = code([0, 0, 0x80, 0x76, b1], &[0xb8, 6, 0, 0, 0x80, 0x0f, 0xa2]);
            let want = ok.then_some((RET - 7, Ecx::Untouched));
            assert_eq!(cpuid_site(&c, RET, 0x8000_0006, false), want, "{b1:#x}");
        }
        // A hypervisor leaf: [rax + leaf] could be mapped.
        let hv = code([0x90; BEFORE], &[0xb8, 0, 0, 0, 0x40, 0x0f, 0xa2]);
        assert_eq!(cpuid_site(&hv, RET, 0x4000_0000, false), None);
        assert!(leaf_in_reach(0x24) && leaf_in_reach(0x8000_001d));
    }

    #[test]
    fn the_stub_loads_the_answer_and_jumps_back() {
        let stub = 0x3f_f020;
        let b = cpuid_stub(Ecx::Xor, [1, 2, 3, 4], stub, RET);
        assert_eq!(&b[..2], &[0x31, 0xc9]);
        assert_eq!(&b[2..7], &[0xb8, 1, 0, 0, 0]);
        assert_eq!(&b[7..12], &[0xbb, 2, 0, 0, 0]);
        assert_eq!(&b[12..17], &[0xb9, 3, 0, 0, 0]);
        assert_eq!(&b[17..22], &[0xba, 4, 0, 0, 0]);
        assert_eq!(b[22], 0xe9);
        let rel = i32::from_le_bytes(b[23..27].try_into().unwrap()) as i64;
        assert_eq!((stub + 27).wrapping_add(rel as u64), RET);
        let plain = cpuid_stub(Ecx::Mov(1), [1, 2, 3, 4], stub, RET);
        assert_eq!(plain[0], 0xb8, "no xor: the flags stay");
        assert_eq!(
            cpuid_book_leaf(cpuid_book_nr(0x8000_0006)),
            Some(0x8000_0006)
        );
        assert_eq!(cpuid_book_leaf(39), None);
    }
}
