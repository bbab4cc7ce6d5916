//! Unit tests of syscall patching (`mm::patch`).

use super::*;

#[test]
fn stub_jumps_where_it_should() {
    let page = 0x40_0000 - PAGE;
    let stub = page + SLOT;
    let site = 0x40_1215;
    let b = stub_bytes(39, stub, page, site);
    assert_eq!(&b[..5], &[0xb8, 39, 0, 0, 0]);
    // lea rcx lands on `after` (stub + 20), right after the syscall.
    let lea = i32::from_le_bytes(b[8..12].try_into().unwrap()) as i64;
    assert_eq!((stub + 12).wrapping_add(lea as u64), stub + 20);
    assert_eq!(&b[18..20], &[0x0f, 0x05]);
    let hdr = i32::from_le_bytes(b[14..18].try_into().unwrap()) as i64;
    assert_eq!((stub + 18).wrapping_add(hdr as u64), page);
    let back = i32::from_le_bytes(b[21..25].try_into().unwrap()) as i64;
    assert_eq!((stub + 25).wrapping_add(back as u64), site + 7);
}

#[test]
fn a_site_is_patched_at_its_third_call_and_forks_remember_it() {
    let mut p = Patches::default();
    assert!(!p.worth_patching(0x40_1000), "first call: not yet");
    assert!(!p.worth_patching(0x40_1000), "second call: not yet");
    assert!(p.worth_patching(0x40_1000), "third call: patch");
    assert!(!p.worth_patching(0x40_2000), "another site counts alone");
    assert!(!p.worth_patching(0x40_2000));
    let mut child = p.clone();
    assert!(
        child.worth_patching(0x40_2000),
        "the child runs its parent's code"
    );
    // Past the budget every call counts as enough.
    let mut full = Patches::default();
    for i in 0..MAX_SITES as u64 {
        full.worth_patching(0x50_0000 + i);
    }
    assert!(full.worth_patching(0x90_0000));
}

/// Five bytes before a site, then `mov eax, nr; syscall`.
/// `mov eax, nr; syscall` whose 5 bytes one store can rewrite with
/// `threads` threads (the checks [`Mm::patch_plan`] makes of a `mov`
/// site, given its bytes).
fn patchable(code: &[u8; CODE], nr: u64, ret: u64, threads: usize) -> bool {
    is_site(code, nr) && one_store(ret.wrapping_sub(7), threads)
}

fn code(before: [u8; BEFORE], nr: u32) -> [u8; CODE] {
    let mut c = [0u8; CODE];
    c[..BEFORE].copy_from_slice(&before);
    c[BEFORE] = 0xb8;
    c[BEFORE + 1..BEFORE + 5].copy_from_slice(&nr.to_le_bytes());
    c[BEFORE + 5..].copy_from_slice(&[0x0f, 0x05]);
    c
}

#[test]
fn patchable_sites() {
    // nops; mov eax, 39; syscall, returning to 0x401008 (site 0x401001).
    let c = code([0x90; 5], 39);
    assert!(patchable(&c, 39, 0x40_1008, 1));
    assert!(!patchable(&c, 110, 0x40_1008, 1), "another number");
    let r8 = code([0x90, 0x90, 0x90, 0x90, 0x41], 39); // mov r8d, 39
    assert!(!patchable(&r8, 39, 0x40_1008, 1));
    // Site 0x401005: its 5 bytes straddle a word, fine with one thread.
    assert!(patchable(&c, 39, 0x40_100c, 1));
    assert!(!patchable(&c, 39, 0x40_100c, 2));
    // Common bytes before a site: the end of an immediate, a register
    // move (mov edi, eax), a nop with a displacement.
    for b in [
        [0xba, 1, 0, 0, 0],
        [0x90, 0x90, 0x90, 0x89, 0xc7],
        [0x0f, 0x1f, 0x44, 0, 0],
    ] {
        assert!(patchable(&code(b, 39), 39, 0x40_1008, 1), "{b:02x?}");
    }
}

#[test]
fn tails_of_longer_instructions_are_refused() {
    let tail = |b: [u8; BEFORE]| !is_site(&code(b, 39), 39);
    // lea edi, [rax + 39] (issue 20): 8d b8 27 00 00 00.
    assert!(tail([0x90, 0x90, 0x90, 0x90, 0x8d]));
    // idiv dword [rax + disp]: writes RAX.
    assert!(tail([0x90, 0x90, 0x90, 0x90, 0xf7]));
    // Two-byte opcodes: nop dword [rax + disp] (0f 1f b8), cmpxchg.
    assert!(tail([0x90, 0x90, 0x90, 0x0f, 0x1f]));
    assert!(tail([0x90, 0x90, 0x90, 0x0f, 0xb1]));
    // REX.B base: mov edi, [r8 + disp] (41 8b b8).
    assert!(tail([0x90, 0x90, 0x90, 0x41, 0x8b]));
    // FS/GS: mov edi, fs:[rax + disp] (64 8b b8).
    assert!(tail([0x90, 0x90, 0x90, 0x64, 0x8b]));
    // b8 as SIB: mov edi, [rax + rdi*4 + disp] (8b bc b8).
    assert!(tail([0x90, 0x90, 0x90, 0x8b, 0xbc]));
    // 0f 38 xx, VEX (c4 .. .. op), EVEX (62 .. .. .. op).
    assert!(tail([0x90, 0x90, 0x0f, 0x38, 0x00]));
    assert!(tail([0x90, 0xc4, 0x62, 0x79, 0x10]));
    assert!(tail([0x62, 0xf1, 0x7c, 0x48, 0x10]));
    // An ALU op with b8 as ModRM accesses [rax + nr] = 2 * nr, never
    // mapped: it could not have run, so the site is a real `mov`.
    assert!(!tail([0x90, 0x90, 0x90, 0x90, 0x00]));
}

#[test]
fn jmp_reaches_its_stub() {
    let (site, stub) = (0x40_1235, 0x3f_f020);
    let j = jmp_bytes(site, stub);
    assert_eq!(j[0], 0xe9);
    let rel = i32::from_le_bytes(j[1..].try_into().unwrap()) as i64;
    assert_eq!((site + 5).wrapping_add(rel as u64), stub);
}

#[test]
fn prefixes_and_reach() {
    assert!(is_prefix(0x41) && is_prefix(0x66) && !is_prefix(0x90) && !is_prefix(0xc3));
    assert!(near(0x40_0000, 0x7fff_0000) && !near(0x40_0000, 0x5555_5555_4000));
}
