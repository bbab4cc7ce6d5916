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
//! makes a call the fast path serves (it took the exit path: rax == NN), the
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
//! What is patched, and when:
//! - only sites the exit path just served (so the bytes are a real
//!   instruction boundary: the `syscall` that just ran), whose call the
//!   fast path serves, in an executable area that is not writable;
//! - not when the byte before the `mov` could be a prefix of it (then it
//!   might be `mov r8d, NN`, say);
//! - in a process with more than one thread, only where the 5 bytes lie in
//!   one aligned 8-byte word, written with one 8-byte store, so another
//!   thread fetches the old instruction or the new one, both valid;
//! - not in a process that set a GS base of its own (the patched entry
//!   finds its line through GS): `arch_prctl(ARCH_SET_GS)` restores every
//!   site first ([`Mm::unpatch_syscalls`]).
//!
//! The page with the site gets a private copy (its file page stays as it
//! was), so the process's PSS/USS grow by a page per patched code page,
//! and reading its own code shows the `jmp`. Stub pages are areas named
//! `[vkernel-syscalls]` in /proc/self/maps; fork keeps them, execve drops
//! them.

use super::*;

/// Bytes of one stub slot (slot 0 of a page is the header: the entry
/// address the stubs jump through).
const SLOT: u64 = 32;
/// Slots of a stub page.
const SLOTS: u64 = PAGE / SLOT;
/// Most sites patched per process.
const MAX_SITES: usize = 4096;
/// Reach of a `jmp rel32` (kept clear of the edge).
const REACH: u64 = (1 << 31) - 2 * PAGE;

/// The patching state of one address space.
#[derive(Clone, Debug, Default)]
pub struct Patches {
    /// Stub pages: page address -> slots in use (the header included).
    pages: BTreeMap<u64, u64>,
    /// Patched sites -> the 5 bytes they held.
    sites: BTreeMap<u64, [u8; 5]>,
    /// No more patching (the process set a GS base of its own).
    off: bool,
}

impl Patches {
    /// Sites patched so far.
    pub fn sites(&self) -> usize {
        self.sites.len()
    }
}

/// Why a site was not patched (for counters and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoPatch {
    /// Patching is off for this process, or the site budget is spent.
    Off,
    /// The bytes before the return address are not `mov eax, nr; syscall`
    /// (or might be a longer instruction).
    Pattern,
    /// The site is not in an executable, read-only area.
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

/// Is `code`, the 8 bytes before a call's return address `ret`, a site
/// this module patches for call `nr` (`mov eax, nr; syscall` not preceded
/// by a byte that could be its prefix) that one store can rewrite with
/// `threads` threads running? The exitless server asks this of calls it
/// could answer and sends them to the exit path instead, where
/// [`Mm::patch_syscall`] patches them.
pub fn patchable(code: &[u8; 8], nr: u64, ret: u64, threads: usize) -> bool {
    is_site(code, nr) && one_store(ret.wrapping_sub(7), threads)
}

/// `code` (the byte before a site, then its 7) is `mov eax, nr; syscall`
/// with no byte before that could be a prefix of the `mov`.
fn is_site(code: &[u8; 8], nr: u64) -> bool {
    u32::try_from(nr).is_ok_and(|nr32| {
        code[1] == 0xb8
            && code[2..6] == nr32.to_le_bytes()
            && code[6..] == [0x0f, 0x05]
            && !is_prefix(code[0])
    })
}

/// Can the 5 bytes at `site` be replaced while `threads` threads run? With
/// one, always; with more, only with one 8-byte store.
fn one_store(site: u64, threads: usize) -> bool {
    threads <= 1 || (site & 7) + 5 <= 8
}

/// The stub of a site (see the module docs); `stub` is its address,
/// `page` its page's.
fn stub_bytes(nr: u32, stub: u64, page: u64, site: u64) -> [u8; SLOT as usize] {
    let mut b = [0xccu8; SLOT as usize];
    b[0] = 0xb8;
    b[1..5].copy_from_slice(&nr.to_le_bytes());
    // lea rcx, [rip + 8]: rip is stub + 12, `after` is stub + 20.
    b[5..12].copy_from_slice(&[0x48, 0x8d, 0x0d, 8, 0, 0, 0]);
    // jmp [rip + d]: rip is stub + 18, the header is at `page`.
    b[12] = 0xff;
    b[13] = 0x25;
    let d = page.wrapping_sub(stub + 18) as i64 as i32;
    b[14..18].copy_from_slice(&d.to_le_bytes());
    b[18] = 0x0f;
    b[19] = 0x05;
    // after: jmp site + 7 (rip is stub + 25).
    b[20] = 0xe9;
    let back = (site + 7).wrapping_sub(stub + 25) as i64 as i32;
    b[21..25].copy_from_slice(&back.to_le_bytes());
    b
}

impl Mm {
    /// The patching state.
    pub fn patches(&self) -> &Patches {
        &self.patch
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
        if self.patch.off || self.patch.sites.len() >= MAX_SITES {
            return Err(NoPatch::Off);
        }
        let site = ret.checked_sub(7).ok_or(NoPatch::Pattern)?;
        if self.patch.sites.contains_key(&site) {
            return Err(NoPatch::Pattern);
        }
        let (start, vma) = self.find(site).ok_or(NoPatch::Area)?;
        if vma.prot & PROT_EXEC == 0 || vma.prot & PROT_WRITE != 0 || vma.end < ret {
            return Err(NoPatch::Area);
        }
        // The byte before the site, then the site (at the start of its area
        // there is no byte before to be a prefix: 0 is none).
        let mut code = [0u8; 8];
        if site > start {
            self.read(site - 1, &mut code)?;
        } else {
            self.read(site, &mut code[1..])?;
        }
        if !is_site(&code, nr) {
            return Err(NoPatch::Pattern);
        }
        if !one_store(site, threads) {
            return Err(NoPatch::Straddles);
        }
        let stub = self.stub_slot(site, entry)?;
        let page = stub & !(PAGE - 1);
        self.poke(stub, &stub_bytes(nr as u32, stub, page, site))?;
        let mut jmp = [0u8; 5];
        jmp[0] = 0xe9;
        let rel = stub.wrapping_sub(site + 5) as i64 as i32;
        jmp[1..].copy_from_slice(&rel.to_le_bytes());
        self.poke(site, &jmp)?;
        *self.patch.pages.get_mut(&page).expect("stub page") += 1;
        let mut old = [0u8; 5];
        old.copy_from_slice(&code[1..6]);
        self.patch.sites.insert(site, old);
        Ok(())
    }

    /// Put every patched site back as it was and patch no more (the
    /// process is about to use GS for itself). The stub pages stay: a
    /// thread may be returning through one.
    pub fn unpatch_syscalls(&mut self) {
        self.patch.off = true;
        let sites = std::mem::take(&mut self.patch.sites);
        for (site, old) in sites {
            // An area unmapped or remapped since has lost the site anyway.
            let _ = self.poke(site, &old);
        }
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
mod tests {
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
    fn patchable_sites() {
        // nop; mov eax, 39; syscall, returning to 0x401008 (site 0x401001).
        let code = [0x90, 0xb8, 39, 0, 0, 0, 0x0f, 0x05];
        assert!(patchable(&code, 39, 0x40_1008, 1));
        assert!(!patchable(&code, 110, 0x40_1008, 1), "another number");
        let mut r8 = code;
        r8[0] = 0x41; // mov r8d, 39
        assert!(!patchable(&r8, 39, 0x40_1008, 1));
        // Site 0x401005: its 5 bytes straddle a word, fine with one thread.
        assert!(patchable(&code, 39, 0x40_100c, 1));
        assert!(!patchable(&code, 39, 0x40_100c, 2));
    }

    #[test]
    fn prefixes_and_reach() {
        assert!(is_prefix(0x41) && is_prefix(0x66) && !is_prefix(0x90) && !is_prefix(0xc3));
        assert!(near(0x40_0000, 0x7fff_0000) && !near(0x40_0000, 0x5555_5555_4000));
    }
}
