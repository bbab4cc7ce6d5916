//! Loading a program into an empty address space, as Linux's
//! `load_elf_binary` does: the program's segments (an `ET_DYN` one at
//! [`PIE_BASE`](super::elf::PIE_BASE)), its dynamic loader (`PT_INTERP`)
//! where an mmap would go, the brk heap after the program, the main stack
//! with argv, envp and a complete auxv.
//!
//! Segments of a file with a stable identity ([`Image::source`]) are
//! private file mappings through the shared page cache (a second vproc
//! running the same program or loader copies nothing); other images
//! (bytes in memory) are copied page by page into their frames.

use std::sync::Arc;

use crate::core::prelude::*;

use super::elf::{self, Elf, ElfError, ReadAt, PF_W, PF_X};
use super::exec::Image;
use super::fs::{Fs, Kind};
use super::mm::{Mm, MmError, VmaKind, PAGE, PROT_EXEC, PROT_READ, PROT_WRITE};
use super::mm::{PREFILL_DATA_PAGES, STACK_SIZE, STACK_TOP};
use super::{random_bytes, Config};
use crate::mm::pagecache::FileSource;

/// Why a program's dynamic loader cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    /// Not in the vproc's filesystem.
    #[error(
        "its dynamic loader {path} is not in the vproc's filesystem (errno {errno}); \
         give a --disk image that holds it and the program's libraries (see `ldd PROGRAM`)"
    )]
    NotFound {
        /// The loader's path.
        path: String,
        /// The lookup's errno.
        errno: i64,
    },
    /// Not a regular file.
    #[error("its dynamic loader {path} is not a regular file")]
    NotFile {
        /// The loader's path.
        path: String,
    },
    /// Not a loadable ELF file.
    #[error("its dynamic loader {path} cannot be loaded: {source}")]
    Elf {
        /// The loader's path.
        path: String,
        /// Why.
        source: ElfError,
    },
    /// The loader wants a loader itself.
    #[error("its dynamic loader {path} asks for a dynamic loader itself (PT_INTERP)")]
    Nested {
        /// The loader's path.
        path: String,
    },
}

impl InterpError {
    /// The errno execve returns (ENOENT, EACCES or ELIBBAD, as Linux).
    pub fn errno(&self) -> i64 {
        match self {
            InterpError::NotFound { errno, .. } => *errno,
            InterpError::NotFile { .. } => libc::EACCES as i64,
            InterpError::Elf {
                source: ElfError::Io(_),
                ..
            } => libc::EIO as i64,
            InterpError::Elf { .. } | InterpError::Nested { .. } => libc::ELIBBAD as i64,
        }
    }
}

/// A program's dynamic loader, parsed and ready to be mapped.
pub struct Interp {
    /// Its headers (placed at [`PIE_BASE`](super::elf::PIE_BASE) until
    /// loaded).
    pub elf: Elf,
    /// Its file.
    pub image: Image,
}

/// The dynamic loader `elf` asks for, looked up in `fs` (from its root);
/// None for a static program.
pub fn find_interp(fs: &Arc<Fs>, elf: &Elf) -> Result<Option<Interp>, InterpError> {
    let Some(p) = &elf.interp else {
        return Ok(None);
    };
    let path = String::from_utf8_lossy(p).into_owned();
    let ino = fs
        .resolve(super::fs::ROOT, p, true)
        .map_err(|errno| InterpError::NotFound {
            path: path.clone(),
            errno,
        })?;
    if !matches!(fs.inode(ino).kind, Kind::File { .. }) {
        return Err(InterpError::NotFile { path });
    }
    let image = Image::Disk {
        fs: fs.clone(),
        ino,
    };
    let ielf = Elf::read(&image).map_err(|source| InterpError::Elf {
        path: path.clone(),
        source,
    })?;
    if ielf.interp.is_some() {
        return Err(InterpError::Nested { path });
    }
    Ok(Some(Interp { elf: ielf, image }))
}

fn prot_of(flags: u32) -> u32 {
    let mut prot = 0;
    if flags & elf::PF_R != 0 {
        prot |= PROT_READ;
    }
    if flags & PF_W != 0 {
        prot |= PROT_WRITE;
    }
    if flags & PF_X != 0 {
        prot |= PROT_EXEC;
    }
    prot
}

/// Map the segments of `elf` (file `image`; page-cache source `src`, if
/// any). Returns each segment's page-aligned span.
fn map_segments(
    mm: &mut Mm,
    elf: &Elf,
    image: &(impl ReadAt + ?Sized),
    src: Option<&Arc<dyn FileSource>>,
) -> Result<Vec<(u64, u64)>, MmError> {
    let mut spans = Vec::new();
    for s in &elf.segments {
        let start = s.vaddr & !(PAGE - 1);
        let end = (s.vaddr + s.memsz + PAGE - 1) & !(PAGE - 1);
        let prot = prot_of(s.flags);
        spans.push((start, end));
        if let Some(src) = src {
            match mm.map_segment(s.vaddr, s.memsz, s.offset, s.filesz, prot, src) {
                Ok(()) => continue,
                // Not mappable from the file: copy it.
                Err(MmError::Invalid) => {}
                Err(e) => return Err(e),
            }
        }
        let base = s.offset;
        mm.load_area_from(
            start,
            end,
            prot,
            VmaKind::Image,
            s.vaddr - start,
            s.filesz,
            &mut |off, buf| {
                let at = base.saturating_add(off);
                image
                    .read_exact_at(at, buf)
                    .map_err(|_| MmError::ProgramRead(at))
            },
        )?;
    }
    Ok(spans)
}

/// Map the segments of `elf` (whose file is `image`) into the empty `mm`,
/// add the stack and build it for `cfg`'s argv and envp. Returns the
/// initial registers. Each segment's file bytes are read page by page
/// straight into its frames; its BSS (memory size beyond the file size,
/// past the last file page) is demand-zero memory that costs nothing until
/// touched. A PT_INTERP is not followed: see [`load_program`].
pub fn load_image(
    mm: &mut Mm,
    elf: &Elf,
    image: &(impl ReadAt + ?Sized),
    cfg: &Config,
) -> Result<TrapFrame, MmError> {
    load_program(mm, elf, image, None, None, cfg)
}

/// Map the program `elf` (file `image`, page-cache source `src`) and its
/// dynamic loader `interp` into the empty `mm`, add the stack and build
/// it. The loader goes where a first mmap of its size would; the vproc
/// starts at the loader's entry (the program's without one), AT_BASE is
/// the loader's load address, AT_ENTRY the program's entry.
pub fn load_program(
    mm: &mut Mm,
    elf: &Elf,
    image: &(impl ReadAt + ?Sized),
    src: Option<&Arc<dyn FileSource>>,
    interp: Option<&Interp>,
    cfg: &Config,
) -> Result<TrapFrame, MmError> {
    load_program_with(mm, elf, image, src, interp, cfg, &mut |_| {})
}

/// [`load_program`], with `before_run` called on the memory map once the
/// program, its interpreter and its stack are mapped and before any of
/// their pages gets a hardware entry (execve rewrites known syscall sites
/// there).
pub fn load_program_with(
    mm: &mut Mm,
    elf: &Elf,
    image: &(impl ReadAt + ?Sized),
    src: Option<&Arc<dyn FileSource>>,
    interp: Option<&Interp>,
    cfg: &Config,
    before_run: &mut dyn FnMut(&mut Mm),
) -> Result<TrapFrame, MmError> {
    let mut spans = map_segments(mm, elf, image, src)?;
    let top = spans.iter().map(|&(_, end)| end).max().unwrap_or(0);
    mm.brk_start = top;
    mm.brk = top;
    let stack_prot = PROT_READ | PROT_WRITE | if elf.exec_stack { PROT_EXEC } else { 0 };
    mm.add_vma(
        STACK_TOP - STACK_SIZE,
        STACK_TOP,
        stack_prot,
        VmaKind::Stack,
    )?;
    let (start, base) = match interp {
        None => (elf.entry, 0),
        Some(i) => {
            let placed = if i.elf.dyn_ {
                let (lo, hi) = i.elf.span();
                let at = mm.find_free(hi - lo)?;
                let bias = at.wrapping_add(i.elf.bias).wrapping_sub(lo);
                i.elf.relocate(bias).map_err(|_| MmError::NoSpace)?
            } else {
                i.elf.clone()
            };
            let isrc = i.image.source();
            spans.extend(map_segments(mm, &placed, &i.image, isrc.as_ref())?);
            (placed.entry, placed.bias)
        }
    };
    let rsp = build_stack(mm, elf, base, cfg)?;
    // The caller's last changes to the image (rewriting known syscall
    // sites), before any page has a hardware entry.
    before_run(mm);
    // The vproc is about to run its image and stack: map what the page
    // cache already holds of them, and install the hardware entries of
    // everything mapped (host writes only), instead of a fault per window.
    // Everything is mapped before anything is populated: a window's
    // table is taken over from a finished process's (hwpt's parked tables)
    // only where its entries agree with the whole image's mappings.
    // The data's pages are copied and the bss's given zeroed frames (up
    // to PREFILL_DATA_PAGES a segment): the program writes them at once.
    for &(lo, hi) in &spans {
        if lo < hi {
            let copied = mm.prefill_private(lo, hi, PREFILL_DATA_PAGES);
            mm.prefill_zero(lo, hi, PREFILL_DATA_PAGES.saturating_sub(copied));
            mm.map_cached(lo, hi);
        }
    }
    for &(lo, hi) in &spans {
        if lo < hi {
            mm.vmspace().populate(lo, hi)?;
        }
    }
    // And the stack below the arguments, where the program's first frames
    // go (busybox reads /proc/self/exe into a PATH_MAX buffer there).
    let stack_lo = (rsp & !(PAGE - 1)).saturating_sub(STACK_PREFILL_PAGES as u64 * PAGE);
    mm.prefill_zero(stack_lo, rsp & !(PAGE - 1), STACK_PREFILL_PAGES);
    mm.vmspace().populate(stack_lo, STACK_TOP)?;
    Ok(TrapFrame::new(start, rsp))
}

/// Zeroed pages a new image's stack gets below its arguments at exec.
pub const STACK_PREFILL_PAGES: usize = 4;

/// The CPUID leaf 1 EDX of the x86-64 baseline (what AT_HWCAP reports).
const HWCAP: u64 = 0x178b_fbff;

/// Build the initial stack: strings, AT_RANDOM bytes, auxv, envp, argv,
/// argc. Returns the initial rsp (16-byte aligned, pointing at argc).
fn build_stack(mm: &mut Mm, elf: &Elf, base: u64, cfg: &Config) -> Result<u64, MmError> {
    let mut sp = STACK_TOP;
    let push_bytes = |mm: &mut Mm, b: &[u8], sp: &mut u64| -> Result<u64, MmError> {
        *sp -= b.len() as u64 + 1;
        mm.write(*sp, b)?;
        mm.write(*sp + b.len() as u64, &[0])?;
        Ok(*sp)
    };
    let execfn = push_bytes(mm, cfg.path.as_bytes(), &mut sp)?;
    let mut envs = Vec::new();
    for e in cfg.envp.iter().rev() {
        envs.push(push_bytes(mm, e, &mut sp)?);
    }
    envs.reverse();
    let mut args = Vec::new();
    for a in cfg.argv.iter().rev() {
        args.push(push_bytes(mm, a, &mut sp)?);
    }
    args.reverse();
    let platform = push_bytes(mm, b"x86_64", &mut sp)?;
    sp &= !15;
    sp -= 16;
    let mut rnd = [0u8; 16];
    random_bytes(&mut rnd);
    mm.write(sp, &rnd)?;
    let random = sp;
    // The vproc runs as root (getuid and friends say 0).
    let auxv: Vec<(u64, u64)> = vec![
        (libc::AT_PHDR, elf.phdr),
        (libc::AT_PHENT, 56),
        (libc::AT_PHNUM, elf.phnum),
        (libc::AT_PAGESZ, PAGE),
        (libc::AT_BASE, base),
        (libc::AT_FLAGS, 0),
        (libc::AT_ENTRY, elf.entry),
        (libc::AT_UID, 0),
        (libc::AT_EUID, 0),
        (libc::AT_GID, 0),
        (libc::AT_EGID, 0),
        (libc::AT_PLATFORM, platform),
        (libc::AT_HWCAP, HWCAP),
        (libc::AT_CLKTCK, 100),
        (libc::AT_SECURE, 0),
        (libc::AT_RANDOM, random),
        (libc::AT_HWCAP2, 0),
        (libc::AT_EXECFN, execfn),
        (libc::AT_MINSIGSTKSZ, 2048),
        (libc::AT_NULL, 0),
    ];
    let auxv_len = auxv.len();
    let words = 1 + args.len() + 1 + envs.len() + 1 + 2 * auxv_len;
    if words % 2 == 1 {
        sp -= 8;
    }
    let mut v: Vec<u64> = Vec::with_capacity(words);
    v.push(args.len() as u64);
    v.extend(&args);
    v.push(0);
    v.extend(&envs);
    v.push(0);
    for (k, val) in auxv {
        v.push(k);
        v.push(val);
    }
    let at = v.len() - 2 * auxv_len;
    mm.auxv = v[at..].iter().flat_map(|w| w.to_ne_bytes()).collect();
    sp -= 8 * v.len() as u64;
    let bytes: Vec<u8> = v.iter().flat_map(|w| w.to_le_bytes()).collect();
    mm.write(sp, &bytes)?;
    Ok(sp)
}
