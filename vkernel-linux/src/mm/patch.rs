//! Syscall patching: call sites rewritten so that a served syscall reaches
//! the exitless server without executing `syscall` at all.
//!
//! On our PVM hosts the `syscall` instruction itself is most of an
//! exitless call's cost: the host kernel's switcher redirects it to the
//! guest's LSTAR (about 6 µs). So the first time a site of the form
//!
//! ```text
//! site:   b8 NN NN NN NN      mov eax, NN
//!         0f 05               syscall
//! ```
//!
//! makes a call (it took the exit path: rax == NN), the
//! `mov` becomes `jmp rel32` to a stub of its own in a stub page near the
//! site, and the `syscall` stays where it was:
//!
//! ```text
//! stub:   b8 NN NN NN NN      mov eax, NN
//!         48 8d 0d 08 00 00 00  lea rcx, [rip + 8]     ; = after
//!         ff 25 XX XX XX XX   jmp [page header]        ; the machine's patched entry
//!         0f 05               syscall                  ; slow path: after - 2
//! after:  e9 YY YY YY YY      jmp site + 7
//! ```
//!
//! The patched entry (`Machine::patched_entry_va`, in the trampoline page)
//! posts the call in the vCPU's request line and waits for the server, as
//! the `syscall` entry does. Whenever the call needs the exit path, or was
//! interrupted before it was posted, or must be restarted, the vproc runs
//! the stub's own `syscall` (RCX - 2): everything that rewinds a syscall by
//! two bytes keeps working. The `syscall` at the site itself is never
//! touched, so a thread blocked in it, a signal frame that returns to it
//! and a branch to it still find it.
//!
//! A `syscall` without such a `mov` before it (the number from a
//! register, or `xor eax, eax`) is a hop site ([`super::hop`]): its two
//! bytes become `jmp rel8` to five bytes of padding after the function's
//! next `ret`, which become `jmp rel32` to a stub whose first instruction
//! is a 5-byte `nop` (RAX already holds the number). [`Mm::patch_plan`]
//! says which form a site takes, for the vCPU thread and the exitless
//! server alike.
//!
//! What is patched, and when:
//! - only sites that just made a call (through the exit path, or answered
//!   by the server, which queued the site: so the `syscall` is a real
//!   instruction boundary, the one that just ran), in a private,
//!   executable area that is not writable; a call the server does not
//!   serve gains too: the patched entry sends it out through the
//!   trampoline's own exit, without the `syscall` instruction (execve and
//!   exit sites are only counted: their process is about to lose them);
//! - only at a site's third call in the address space
//!   ([`Patches::worth_patching`]): most sites of a short-lived process
//!   run once or twice, and patching one costs more than the `syscall`s
//!   it saves;
//! - not when `b8 nr` could be the tail of a longer instruction
//!   ([`could_be_tail`]); a fault in or just before a patched site's bytes
//!   puts it back for good ([`Mm::patch_fault`]);
//! - in a process with more than one thread, only where the 5 bytes lie in
//!   one aligned 8-byte word, written with one 8-byte store, so another
//!   thread fetches the old instruction or the new one, both valid;
//! - not in a process that set a GS base of its own (the patched entry
//!   finds its line through GS): `arch_prctl(ARCH_SET_GS)` restores every
//!   site first ([`Mm::unpatch_syscalls`]).
//!
//! A site lives as long as its mapping, unchanged ([`Mm::patch_drop`]):
//! unmapping, replacing or emptying its range forgets it; making it
//! writable or not executable, or moving it, puts its `mov` back first. A
//! stub page in such a range is dropped after every site using it is put
//! back. Putting back writes only over our own `jmp`, still in place.
//!
//! The page with the site gets a private copy (its file page stays as it
//! was), so the process's PSS/USS grow by a page per patched code page,
//! and reading its own code shows the `jmp`. Stub pages are areas named
//! `[vkernel-syscalls]` in /proc/self/maps; fork keeps them, execve drops
//! them (and makes the new program's, for its file's known sites).
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::collections::BTreeSet;

use super::*;

mod cpuid;
mod share;
pub use cpuid::{cpuid_book_leaf, cpuid_book_nr};

/// Bytes of one stub slot (slot 0 of a page is the header: the entry
/// address the stubs jump through).
const SLOT: u64 = 32;
/// Slots of a stub page.
const SLOTS: u64 = PAGE / SLOT;
/// Most sites patched per process.
const MAX_SITES: usize = 4096;
/// A site is patched at its call number `PATCH_AFTER`, counted in its
/// address space ([`Patches::worth_patching`]) or, for a program file's
/// site, over every process (`kernel::site_book`).
pub const PATCH_AFTER: u32 = 3;
/// Reach of a `jmp rel32` (kept clear of the edge).
const REACH: u64 = (1 << 31) - 2 * PAGE;
/// Bytes before a site that [`is_site`] looks at.
pub const BEFORE: usize = 5;
/// The code a site check reads: [`BEFORE`] bytes, then `mov eax, nr;
/// syscall`.
pub const CODE: usize = BEFORE + 7;
/// Offset of a stub's own `syscall` (the slow path: RCX - 2).
const STUB_SYSCALL: u64 = 18;
/// Offset of a stub's `after` (its `syscall`'s return address).
const STUB_AFTER: u64 = 20;
/// Longest x86 instruction: one that starts this far before a site can
/// still cover its bytes.
const MAX_INSN: u64 = 15;

/// One patched site.
#[derive(Clone, Copy, Debug)]
struct Site {
    /// The 5 bytes it held (`mov eax, nr`; a hop site: the `syscall`'s 2).
    old: [u8; 5],
    /// Its stub.
    stub: u64,
    /// A site whose `syscall` hops to its stub through padding (see
    /// `mm::hop`): the padding's address and the 5 bytes it held. The
    /// site's address is then its `syscall`'s.
    hop: Option<(u64, [u8; 5])>,
    /// A `cpuid` site ([`cpuid`]): its stub holds the answer and has no
    /// `syscall`.
    cpuid: bool,
}

impl Site {
    /// The `syscall` of the site at `at` (the slow path of its stub
    /// returns to the same point of the original).
    fn syscall(&self, at: u64) -> u64 {
        if self.hop.is_some() {
            at
        } else {
            at + 5
        }
    }

    /// Does the site at `at` cover a byte of `[start, end)`?
    fn overlaps(&self, at: u64, start: u64, end: u64) -> bool {
        let len = if self.hop.is_some() { 2 } else { 5 };
        let hit = |a: u64, n: u64| a < end && a + n > start;
        hit(at, len) || self.hop.is_some_and(|(h, _)| hit(h, 5))
    }
}

/// What patching a site writes (see [`Mm::patch_syscall`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// `mov eax, nr` at `site` becomes `jmp rel32` to the stub.
    Mov {
        /// The `mov`'s address.
        site: u64,
    },
    /// The `syscall` at `site` becomes `jmp rel8` to `hop`, five bytes of
    /// padding that become `jmp rel32` to the stub (`mm::hop`).
    Hop {
        /// The `syscall`'s address.
        site: u64,
        /// The padding's.
        hop: u64,
    },
}

/// Bytes of a 5-byte `nop` (a hop stub's first instruction, where a `mov`
/// stub sets EAX).
const NOP5: [u8; 5] = [0x0f, 0x1f, 0x44, 0x00, 0x00];

/// The patching state of one address space.
#[derive(Clone, Debug, Default)]
pub struct Patches {
    /// Stub pages: page address -> slots in use (the header included).
    pages: BTreeMap<u64, u64>,
    /// Patched sites.
    sites: BTreeMap<u64, Site>,
    /// Sites found inside a longer instruction (a fault in their bytes):
    /// never patched again.
    refused: BTreeSet<u64>,
    /// Addresses in stub pages dropped by the last drops -> where the same
    /// point of the original site is (`syscall` and its return address),
    /// for the thread whose call dropped them.
    moved: BTreeMap<u64, u64>,
    /// Bumped whenever stub pages are dropped.
    epoch: u64,
    /// No more patching (the process set a GS base of its own).
    off: bool,
    /// Calls seen so far at each site not yet patched, by the return
    /// address of its `syscall` (see [`Patches::worth_patching`]).
    seen: BTreeMap<u64, u32>,
    /// The process's `cpuid`s come to the vkernel to be counted (CPUID
    /// faulting on while it runs: see [`cpuid`]).
    cpuid_learning: bool,
    /// The kernel's site book generation whose known sites this memory's
    /// program files have had rewritten (see `kernel::site_book`).
    known_gen: u64,
}

impl Patches {
    /// Sites patched so far (and still patched).
    pub fn sites(&self) -> usize {
        self.sites.len()
    }

    /// Is `va` in one of the stub pages (a call returning there came
    /// through a rewritten site)?
    pub fn in_stub(&self, va: u64) -> bool {
        self.pages.contains_key(&(va & !(PAGE - 1)))
    }

    /// The addresses of the stub pages.
    pub fn stub_pages(&self) -> impl Iterator<Item = u64> + '_ {
        self.pages.keys().copied()
    }

    /// Do the process's `cpuid`s come to the vkernel to be counted and
    /// rewritten (CPUID faulting on while it runs)? Kept across fork,
    /// decided anew at execve (`kernel::site_book`).
    pub fn cpuid_learning(&self) -> bool {
        self.cpuid_learning
    }

    /// Set whether the process's `cpuid`s come to the vkernel.
    pub fn set_cpuid_learning(&mut self, on: bool) {
        self.cpuid_learning = on;
    }

    /// The site book generation whose known sites were last rewritten
    /// here (kept across fork).
    pub fn known_gen(&self) -> u64 {
        self.known_gen
    }

    /// Record that the known sites of generation `g` were rewritten.
    pub fn set_known_gen(&mut self, g: u64) {
        self.known_gen = g;
    }

    /// Bumped whenever stub pages are dropped (see [`Mm::patch_resume`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// A served call returned to `ret`: has its site made enough calls in
    /// this address space (`PATCH_AFTER`, 3, this one included) that
    /// patching it pays? Most sites of a short-lived process run once or
    /// twice (a fork+exec cycle's `busybox true`: its `brk` site three
    /// times), and patching a site (a private copy of its code page, a
    /// guest store and a shadow refault of the page, a stub page) costs
    /// more than the few `syscall`s it saves: 200 cycles took 0.93-0.99 s
    /// patching every site at its first call, against 0.86-0.91 s with
    /// `--no-syscall-patching`. A site in a loop makes its third call at
    /// once. The counts are kept across fork (the child runs its parent's
    /// code) and forgotten at execve; past `MAX_SITES` sites counted,
    /// every call counts as enough.
    pub fn worth_patching(&mut self, ret: u64) -> bool {
        if self.seen.len() >= MAX_SITES {
            return true;
        }
        let n = self.seen.entry(ret).or_insert(0);
        *n = n.saturating_add(1);
        *n >= PATCH_AFTER
    }
}

/// Why a site was not patched (for counters and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoPatch {
    /// Patching is off for this process, or the site budget is spent.
    Off,
    /// The bytes before the return address are not `mov eax, nr; syscall`
    /// (or might be the tail of a longer instruction).
    Pattern,
    /// The site is not in a private, executable, read-only area.
    Area,
    /// Several threads run this code and the 5 bytes straddle an 8-byte
    /// word (they cannot be replaced in one store).
    Straddles,
    /// No free page within a `jmp rel32` of the site.
    NoRoom,
    /// Reading or writing the vproc's memory failed.
    Mem(MmError),
}

impl From<MmError> for NoPatch {
    fn from(e: MmError) -> NoPatch {
        NoPatch::Mem(e)
    }
}

/// `a` and `b` within a `jmp rel32` of each other.
fn near(a: u64, b: u64) -> bool {
    a.abs_diff(b) < REACH
}

/// Could `b` be a prefix (legacy or REX) of the instruction after it?
fn is_prefix(b: u8) -> bool {
    matches!(
        b,
        0x40..=0x4f | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 | 0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65
    )
}

/// Could `b8 nr` (with the syscall right after) be the tail of a longer
/// instruction that runs with RAX = nr, given the [`BEFORE`] bytes before
/// it (`before[4]` the nearest)? Bytes outside the area read as `nop`.
///
/// An instruction boundary cannot be found by looking backward, so this is
/// a rule about what such an instruction could be. The `b8` would be a
/// ModRM byte (`[rax + disp32]`, reg 7, the `nr` bytes its displacement),
/// a SIB byte (`[rax + rdi*4 + disp32]`), or a byte of a displacement or
/// immediate. As ModRM, the instruction accesses `rax + nr = 2 * nr` (RAX
/// is `nr` when the `syscall` runs and reg 7 is not RAX), an address below
/// 64 KiB, never mapped, so it could not have run, except: `lea` (`8d`),
/// no access; `idiv` (`f6`/`f7 /7`), which writes RAX; a two-byte opcode
/// (`0f xx`: `nop`, prefetch, `cmpxchg`...); a REX.B base (`r8`) or an
/// FS/GS segment; a VEX/EVEX encoding with a base other than RAX. As SIB
/// the address depends on RDI. All of those are refused. A `b8` inside a
/// displacement or immediate is not detected here: a fault in the
/// patched bytes puts the site back ([`Mm::patch_fault`]).
fn could_be_tail(before: &[u8; BEFORE]) -> bool {
    let [b5, b4, b3, b2, b1] = *before;
    is_prefix(b1)
        || matches!(
            b1,
            0x8d | 0xf6 | 0xf7 | 0x84 | 0x8c | 0x94 | 0x9c | 0xa4 | 0xac | 0xb4 | 0xbc
        )
        || matches!(b2, 0x40..=0x4f | 0x0f)
        || (b3 == 0x0f && b2 == 0x38)
        || b4 == 0xc4
        || b5 == 0x62
        || [b2, b3, b4, b5].iter().any(|&b| b == 0x64 || b == 0x65)
}

/// `code` ([`BEFORE`] bytes, then a site's 7) is `mov eax, nr; syscall`
/// that cannot be the tail of a longer instruction.
fn is_site(code: &[u8; CODE], nr: u64) -> bool {
    let before: &[u8; BEFORE] = code[..BEFORE].try_into().expect("BEFORE bytes");
    let site = &code[BEFORE..];
    u32::try_from(nr).is_ok_and(|nr32| {
        site[0] == 0xb8
            && site[1..5] == nr32.to_le_bytes()
            && site[5..] == [0x0f, 0x05]
            && !could_be_tail(before)
    })
}

/// May a site whose instruction ends at `ret` in `vma` be rewritten: code
/// (executable, not writable) of a private area, not a stub page, running
/// up to `ret` at least?
fn code_area(vma: &Vma, ret: u64) -> bool {
    vma.prot & PROT_EXEC != 0
        && vma.prot & PROT_WRITE == 0
        && vma.end >= ret
        && vma.kind != VmaKind::SyscallStubs
        && !vma.file.as_ref().is_some_and(|f| f.shared)
}

/// Can the 5 bytes at `site` be replaced while `threads` threads run? With
/// one, always; with more, only with one 8-byte store.
fn one_store(site: u64, threads: usize) -> bool {
    threads <= 1 || (site & 7) + 5 <= 8
}

/// The `jmp rel32` from `site` to `stub`.
fn jmp_bytes(site: u64, stub: u64) -> [u8; 5] {
    let mut jmp = [0u8; 5];
    jmp[0] = 0xe9;
    let rel = stub.wrapping_sub(site + 5) as i64 as i32;
    jmp[1..].copy_from_slice(&rel.to_le_bytes());
    jmp
}

/// The `jmp rel8` that replaces the `syscall` at `site` of a hop site,
/// to its padding at `hop` (within reach: `mm::hop`).
fn hop_jmp(site: u64, hop: u64) -> [u8; 2] {
    [0xeb, (hop - (site + 2)) as u8]
}

/// The stub of a site (see the module docs); `stub` is its address,
/// `page` its page's.
fn stub_bytes(nr: u32, stub: u64, page: u64, site: u64) -> [u8; SLOT as usize] {
    let mut mov = [0xb8u8, 0, 0, 0, 0];
    mov[1..].copy_from_slice(&nr.to_le_bytes());
    stub_with(mov, stub, page, site + 7)
}

/// A stub that runs `first`, then enters the patched entry with `ret` as
/// the call's return address (see the module docs).
fn stub_with(first: [u8; 5], stub: u64, page: u64, ret: u64) -> [u8; SLOT as usize] {
    let mut b = [0xccu8; SLOT as usize];
    b[..5].copy_from_slice(&first);
    // lea rcx, [rip + 8]: rip is stub + 12, `after` is stub + 20.
    b[5..12].copy_from_slice(&[0x48, 0x8d, 0x0d, 8, 0, 0, 0]);
    // jmp [rip + d]: rip is stub + 18, the header is at `page`.
    b[12] = 0xff;
    b[13] = 0x25;
    let d = page.wrapping_sub(stub + 18) as i64 as i32;
    b[14..18].copy_from_slice(&d.to_le_bytes());
    b[18] = 0x0f;
    b[19] = 0x05;
    // after: jmp ret (rip is stub + 25).
    b[20] = 0xe9;
    let back = ret.wrapping_sub(stub + 25) as i64 as i32;
    b[21..25].copy_from_slice(&back.to_le_bytes());
    b
}

impl Mm {
    /// The patching state.
    pub fn patches(&self) -> &Patches {
        &self.patch
    }

    /// The patching state, to change.
    pub fn patches_mut(&mut self) -> &mut Patches {
        &mut self.patch
    }

    /// How the call site whose `syscall` of call `nr` returns to `ret`
    /// would be patched with `threads` threads, given `code`, the
    /// [`CODE`] bytes before `ret`, and `after`, bytes from `ret` on (up to
    /// `mm::hop::HOP_SCAN`): a `mov eax, nr` site, else a hop site, else
    /// why not. Reads nothing itself (the exitless server gives the bytes
    /// it could read without paging anything in).
    pub fn patch_plan(
        &self,
        ret: u64,
        nr: u64,
        threads: usize,
        code: &[u8; CODE],
        after: &[u8],
    ) -> Result<Plan, NoPatch> {
        if self.patch.off || self.patch.sites.len() >= MAX_SITES {
            return Err(NoPatch::Off);
        }
        let sys = ret.checked_sub(2).ok_or(NoPatch::Pattern)?;
        let site = ret.checked_sub(7).ok_or(NoPatch::Pattern)?;
        let known = |a: &u64| self.patch.sites.contains_key(a) || self.patch.refused.contains(a);
        if known(&site) || known(&sys) {
            return Err(NoPatch::Pattern);
        }
        let (start, vma) = self.find(sys).ok_or(NoPatch::Area)?;
        if !code_area(&vma, ret) {
            return Err(NoPatch::Area);
        }
        if site >= start && is_site(code, nr) {
            return if one_store(site, threads) {
                Ok(Plan::Mov { site })
            } else {
                Err(NoPatch::Straddles)
            };
        }
        if code[CODE - 2..] != [0x0f, 0x05] {
            return Err(NoPatch::Pattern);
        }
        if threads > 1 && (sys & 7) + 2 > 8 {
            return Err(NoPatch::Straddles);
        }
        let inside = usize::try_from(vma.end - ret).unwrap_or(usize::MAX);
        let hop = super::hop::hop_after(&after[..after.len().min(inside)], ret)
            .ok_or(NoPatch::Pattern)?;
        // Padding another site already hops through is taken.
        if self
            .patch
            .sites
            .values()
            .any(|o| o.hop.is_some_and(|(h, _)| h.abs_diff(hop) < 5))
        {
            return Err(NoPatch::Pattern);
        }
        Ok(Plan::Hop { site: sys, hop })
    }

    /// Patch the call site whose `syscall` returns to `ret` with call `nr`
    /// (see the module docs); `entry` is the machine's patched entry,
    /// `threads` how many threads share this address space.
    pub fn patch_syscall(
        &mut self,
        ret: u64,
        nr: u64,
        entry: u64,
        threads: usize,
    ) -> Result<(), NoPatch> {
        // The bytes before the return address; before the start of the
        // area, `nop`s (no instruction of this area starts there).
        let (start, vma) = self.find(ret.saturating_sub(2)).ok_or(NoPatch::Area)?;
        let mut code = [0x90u8; CODE];
        let from = ret.saturating_sub(CODE as u64).max(start);
        let skip = CODE - (ret - from) as usize;
        self.read(from, &mut code[skip..])?;
        let mut after = vec![0u8; super::hop::HOP_SCAN.min(vma.end.saturating_sub(ret) as usize)];
        self.read(ret, &mut after)?;
        match self.patch_plan(ret, nr, threads, &code, &after)? {
            Plan::Mov { site } => {
                let stub = self.stub_slot(site, entry)?;
                let page = stub & !(PAGE - 1);
                self.poke(stub, &stub_bytes(nr as u32, stub, page, site))?;
                self.poke_bytes(site, &jmp_bytes(site, stub))?;
                *self.patch.pages.get_mut(&page).expect("stub page") += 1;
                let mut old = [0u8; 5];
                old.copy_from_slice(&code[BEFORE..BEFORE + 5]);
                self.patch.sites.insert(
                    site,
                    Site {
                        old,
                        stub,
                        hop: None,
                        cpuid: false,
                    },
                );
            }
            Plan::Hop { site, hop } => {
                let stub = self.stub_slot(site, entry)?;
                let page = stub & !(PAGE - 1);
                let mut hop_old = [0u8; 5];
                self.read(hop, &mut hop_old)?;
                self.poke(stub, &stub_with(NOP5, stub, page, ret))?;
                // The padding first (nothing runs it), then the `syscall`.
                self.poke_bytes(hop, &jmp_bytes(hop, stub))?;
                self.poke_bytes(site, &hop_jmp(site, hop))?;
                *self.patch.pages.get_mut(&page).expect("stub page") += 1;
                let old = [0x0f, 0x05, 0, 0, 0];
                let hop = Some((hop, hop_old));
                let cpuid = false;
                let s = Site {
                    old,
                    stub,
                    hop,
                    cpuid,
                };
                self.patch.sites.insert(site, s);
            }
        }
        Ok(())
    }

    /// Put every patched site back as it was and patch no more (the
    /// process is about to use GS for itself). The stub pages stay: a
    /// thread may be returning through one.
    pub fn unpatch_syscalls(&mut self) {
        self.patch.off = true;
        let sites = std::mem::take(&mut self.patch.sites);
        for (site, s) in sites {
            self.restore(site, s);
        }
    }

    /// Put `site` back (its `mov`, or its `syscall` and padding) if it
    /// still holds exactly the `jmp` to its stub in an executable area:
    /// an area unmapped, replaced or rewritten since has lost the site, and
    /// its bytes are not ours.
    fn restore(&mut self, site: u64, s: Site) {
        let live = |mm: &Mm, at: u64, n: u64| {
            let mapped = mm.pages.contains_key(&(at & !(PAGE - 1)))
                && mm.pages.contains_key(&((at + n - 1) & !(PAGE - 1)));
            mapped
                && mm.find(at).is_some_and(|(_, v)| {
                    v.prot & PROT_EXEC != 0 && v.kind != VmaKind::SyscallStubs && v.end >= at + n
                })
        };
        match s.hop {
            None => {
                let mut now = [0u8; 5];
                if live(self, site, 5)
                    && self.read(site, &mut now).is_ok()
                    && now == jmp_bytes(site, s.stub)
                {
                    let _ = self.poke_bytes(site, &s.old);
                }
            }
            Some((hop, hop_old)) => {
                let mut now = [0u8; 2];
                if live(self, site, 2)
                    && self.read(site, &mut now).is_ok()
                    && now == hop_jmp(site, hop)
                {
                    let _ = self.poke_bytes(site, &s.old[..2]);
                }
                let mut now = [0u8; 5];
                if live(self, hop, 5)
                    && self.read(hop, &mut now).is_ok()
                    && now == jmp_bytes(hop, s.stub)
                {
                    let _ = self.poke_bytes(hop, &hop_old);
                }
            }
        }
    }

    /// `[start, end)` is about to be unmapped, replaced, moved, emptied or
    /// reprotected (`write`: put its own sites back, its pages stay; else
    /// they are going away and are only forgotten). Every site in it is
    /// forgotten, and every stub page in it is dropped: all sites that jump
    /// there are put back first, so the program may have that range (Linux
    /// would let it: the stub page exists only under the vkernel).
    pub fn patch_drop(&mut self, start: u64, end: u64, write: bool) {
        if self.patch.sites.is_empty() && self.patch.pages.is_empty() {
            return;
        }
        let inside: Vec<(u64, Site)> = self
            .patch
            .sites
            .range(start.saturating_sub(super::hop::HOP_SCAN as u64)..end)
            .filter(|(&a, s)| s.overlaps(a, start, end))
            .map(|(&a, &s)| (a, s))
            .collect();
        for (site, s) in inside {
            self.patch.sites.remove(&site);
            if write {
                self.restore(site, s);
            }
        }
        let stub_pages: Vec<u64> = self
            .patch
            .pages
            .range(start & !(PAGE - 1)..end)
            .map(|(&p, _)| p)
            .collect();
        if stub_pages.is_empty() {
            return;
        }
        self.patch.moved.clear();
        self.patch.epoch += 1;
        for p in stub_pages {
            self.patch.pages.remove(&p);
            let users: Vec<(u64, Site)> = self
                .patch
                .sites
                .iter()
                .filter(|(_, s)| s.stub & !(PAGE - 1) == p)
                .map(|(&a, &s)| (a, s))
                .collect();
            for (site, s) in users {
                self.patch.sites.remove(&site);
                self.restore(site, s);
                if s.cpuid {
                    // Its stub runs no call: nothing returns into it.
                    continue;
                }
                // A thread in the stub's slow path (or returning from it)
                // resumes at the same point of the site.
                self.patch
                    .moved
                    .insert(s.stub + STUB_SYSCALL, s.syscall(site));
                self.patch
                    .moved
                    .insert(s.stub + STUB_AFTER, s.syscall(site) + 2);
            }
        }
    }

    /// mprotect of `[start, end)` to `prot` is about to happen: a site
    /// whose code becomes writable (the program may rewrite it: it must
    /// see and change its own `mov`) or stops being executable is put
    /// back, and a stub page it reaches is dropped (see [`Mm::patch_drop`]).
    pub fn patch_protect(&mut self, start: u64, end: u64, prot: u32) {
        if prot & PROT_WRITE != 0 || prot & PROT_EXEC == 0 {
            self.patch_drop(start, end, true);
        } else {
            // Sites stay; stub pages in the range are the program's now.
            let stubs = self
                .patch
                .pages
                .range(start & !(PAGE - 1)..end)
                .next()
                .is_some();
            if stubs {
                self.patch_drop(start, end, true);
            }
        }
    }

    /// Where a thread resumes whose call returned to `rip` while stub
    /// pages were dropped (see [`Patches::epoch`]): the same point of the
    /// original site when `rip` was in a dropped stub.
    pub fn patch_resume(&self, rip: u64) -> u64 {
        self.patch.moved.get(&rip).copied().unwrap_or(rip)
    }

    /// The vproc faulted at `rip`. Inside the bytes a patch covers, or in
    /// an instruction that starts up to 14 bytes before and may run into
    /// them, the site was not the instruction boundary it looked like (its
    /// `b8 nr` is the tail of a longer instruction, or code branches into
    /// the middle of it): put the site back, never patch it again, and let
    /// the vproc run the instruction again (true). A fault that was not
    /// ours recurs and is delivered then.
    pub fn patch_fault(&mut self, rip: u64) -> bool {
        let near = |a: u64| a != rip && rip.saturating_add(MAX_INSN) > a && a + 5 > rip;
        let hit: Vec<(u64, Site)> = self
            .patch
            .sites
            .range(rip.saturating_sub(super::hop::HOP_SCAN as u64)..rip.saturating_add(MAX_INSN))
            .filter(|(&a, s)| match s.hop {
                // Its `syscall` is a known boundary; code running into the
                // padding was not padding.
                Some((h, _)) => near(h),
                None => near(a),
            })
            .map(|(&a, &s)| (a, s))
            .collect();
        for &(site, s) in &hit {
            self.patch.sites.remove(&site);
            self.patch.refused.insert(site);
            self.restore(site, s);
        }
        !hit.is_empty()
    }

    /// A free stub slot within reach of `site`, with a new stub page when
    /// no page has room.
    fn stub_slot(&mut self, site: u64, entry: u64) -> Result<u64, NoPatch> {
        let reach = |p: u64| near(p, site) && near(p + PAGE, site);
        let have = self
            .patch
            .pages
            .iter()
            .find(|&(&p, &used)| used < SLOTS && reach(p))
            .map(|(&p, &used)| p + used * SLOT);
        if let Some(s) = have {
            // The area may have been unmapped or changed by the vproc:
            // then that page is not ours any more.
            if self
                .find(s)
                .is_some_and(|(_, v)| v.kind == VmaKind::SyscallStubs)
            {
                return Ok(s);
            }
            self.patch.pages.remove(&(s & !(PAGE - 1)));
        }
        let page = self.free_page_near(site).ok_or(NoPatch::NoRoom)?;
        self.add_vma(
            page,
            page + PAGE,
            PROT_READ | PROT_EXEC,
            VmaKind::SyscallStubs,
        )?;
        if let Err(e) = self.map_new(page, PROT_READ | PROT_EXEC, false) {
            self.vmas.remove(&page);
            return Err(e.into());
        }
        self.poke(page, &entry.to_le_bytes())?;
        self.patch.pages.insert(page, 1);
        Ok(page + SLOT)
    }

    /// The free page nearest below the areas around `site` (the space
    /// below a program, a library or the lowest mapping), within reach.
    fn free_page_near(&self, site: u64) -> Option<u64> {
        let (mut cur, _) = self.find(site)?;
        loop {
            let below = self.vmas.range(..cur).next_back();
            let gap_top = match below {
                Some((_, v)) if v.end >= cur => None,
                _ => Some(cur),
            };
            if let Some(top) = gap_top {
                let p = top.checked_sub(PAGE)?;
                if !near(p, site) {
                    return None;
                }
                if self.range_free(p, p + PAGE) && p != crate::guest::layout::SLOT_VA {
                    return Some(p);
                }
            }
            let (&s, _) = below?;
            if !near(s, site) {
                return None;
            }
            cur = s;
        }
    }

    /// Write `b` at `va` (see [`Mm::poke`]), across a page boundary too (a
    /// site's bytes may cross one).
    fn poke_bytes(&mut self, va: u64, b: &[u8]) -> Result<(), MmError> {
        let split = (PAGE - (va & (PAGE - 1))).min(b.len() as u64) as usize;
        self.poke(va, &b[..split])?;
        if split < b.len() {
            self.poke(va + split as u64, &b[split..])?;
        }
        Ok(())
    }

    /// Write `b` into the vproc's code or stub page at `va` (one page),
    /// whatever the area's protection: the page gets a frame of its own
    /// first when anyone else holds its frame (the page cache, or another
    /// process after fork: read-only pages are shared without the COW
    /// bit), keeps its protection, and `b` goes in with one 8-byte store
    /// where it fits in one aligned word.
    fn poke(&mut self, va: u64, b: &[u8]) -> Result<(), MmError> {
        let page = va & !(PAGE - 1);
        if va + b.len() as u64 > page + PAGE {
            return Err(MmError::Invalid);
        }
        let (_, vma) = self.find(va).ok_or(MmError::Fault(va))?;
        if self.large_at(page).is_some() {
            // A page cache block (program text): this page gets its own.
            self.split_large_in(page, page + PAGE, false);
        }
        let f = self.frame_for(page, false)?;
        // Shared with the page cache or, after fork, with another process
        // (read-only pages are shared without the COW bit): copy it first.
        if self.fr().refcount(f) > 1 {
            let nf = self.fr().alloc(&self.ram)?;
            let mut buf = vec![0u8; PAGE as usize];
            let copied = self
                .ram
                .read(f, &mut buf)
                .and_then(|_| self.ram.write(nf, &buf));
            if copied.is_err() {
                self.fr().free(nf);
                return Err(MmError::Fault(va));
            }
            self.pages.insert(page, nf);
            if let Err(e) = self.set_vpte(page, nf, vma.prot) {
                self.pages.insert(page, f);
                self.fr().free(nf);
                return Err(e);
            }
            self.fr().free(f);
            self.stats.cow_breaks += 1;
            self.inval(page, page + PAGE);
        }
        let f = *self.pages.get(&page).ok_or(MmError::Fault(va))?;
        let off = va - page;
        let word = off & !7;
        if off + b.len() as u64 <= word + 8 {
            let mut w = self
                .ram
                .load(f + word)
                .map_err(|_| MmError::Fault(va))?
                .to_le_bytes();
            let s = (off - word) as usize;
            w[s..s + b.len()].copy_from_slice(b);
            self.ram
                .store(f + word, u64::from_le_bytes(w))
                .map_err(|_| MmError::Fault(va))
        } else {
            self.ram.write(f + off, b).map_err(|_| MmError::Fault(va))
        }
    }
}

#[cfg(test)]
mod tests;
