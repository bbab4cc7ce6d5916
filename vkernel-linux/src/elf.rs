//! Parsing x86-64 ELF executables: non-PIE `ET_EXEC`, PIE and shared
//! objects (`ET_DYN`), static or with a dynamic loader (`PT_INTERP`, whose
//! path [`Elf::interp`] gives; the loader itself is parsed the same way and
//! placed with [`Elf::relocate`]).
//!
//! Only what loading needs is read: the file header and the program
//! headers, through [`ReadAt`] (never the whole file). The header layouts
//! and constants are the `object` crate's (`object::elf`); the checks and
//! messages are ours. Every offset and size comes from an untrusted file
//! and is checked before use.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use object::elf::{FileHeader64, ProgramHeader64};
use object::LittleEndian as LE;

/// Load address of PIE programs (Linux's `ELF_ET_DYN_BASE` shape).
pub const PIE_BASE: u64 = 0x5555_5555_4000;

/// Segments must end below this address (the top of the user range,
/// where vkernel keeps its trampoline page).
pub const USER_LIMIT: u64 = 0x7fff_0000_0000;

use object::elf::{PT_GNU_STACK, PT_INTERP, PT_LOAD, PT_PHDR};
/// Segment flag: executable.
pub const PF_X: u32 = object::elf::PF_X;
/// Segment flag: writable.
pub const PF_W: u32 = object::elf::PF_W;
/// Segment flag: readable.
pub const PF_R: u32 = object::elf::PF_R;

/// Why a file cannot be run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than what its headers promise.
    #[error("truncated ELF file: {what} needs bytes up to {need} but the file has {have}")]
    Truncated {
        /// Which part is cut off.
        what: &'static str,
        /// Bytes needed.
        need: u64,
        /// File size.
        have: u64,
    },
    /// No ELF magic.
    #[error("not an ELF file (no \\x7fELF magic); vkernel runs x86-64 Linux ELF programs")]
    NotElf,
    /// 32-bit or big-endian.
    #[error("not a 64-bit little-endian ELF file (class {class}, data {data}); vkernel runs x86-64 programs")]
    WrongClass {
        /// EI_CLASS.
        class: u8,
        /// EI_DATA.
        data: u8,
    },
    /// Another architecture.
    #[error(
        "ELF machine {machine} ({name}) is not x86-64 (62); vkernel runs x86-64 programs only"
    )]
    NotX86_64 {
        /// e_machine.
        machine: u16,
        /// A readable name of it.
        name: &'static str,
    },
    /// Neither an executable nor a PIE.
    #[error("ELF type {0} is not an executable (ET_EXEC=2 or PIE/shared object ET_DYN=3)")]
    NotExecutable(u16),
    /// The PT_INTERP entry is not a usable path.
    #[error("bad PT_INTERP: {0}")]
    BadInterp(&'static str),
    /// Something in the headers makes no sense.
    #[error("bad ELF header: {0}")]
    Bad(&'static str),
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Io(String),
}

/// One loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Virtual address (load bias applied).
    pub vaddr: u64,
    /// Size in memory.
    pub memsz: u64,
    /// File offset of its bytes.
    pub offset: u64,
    /// Bytes taken from the file (the rest is zero).
    pub filesz: u64,
    /// PF_R / PF_W / PF_X.
    pub flags: u32,
}

/// A parsed executable, ready to be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elf {
    /// Entry point (load bias applied).
    pub entry: u64,
    /// Address of the program headers in memory (for AT_PHDR).
    pub phdr: u64,
    /// Number of program headers.
    pub phnum: u64,
    /// Loadable segments.
    pub segments: Vec<Segment>,
    /// Load bias (0 for ET_EXEC).
    pub bias: u64,
    /// PT_GNU_STACK asks for an executable stack.
    pub exec_stack: bool,
    /// The dynamic loader's path (PT_INTERP), if the program needs one.
    pub interp: Option<Vec<u8>>,
    /// ET_DYN: may be placed at any page-aligned bias ([`Elf::relocate`]).
    pub dyn_: bool,
}

fn machine_name(m: u16) -> &'static str {
    use object::elf::*;
    match m {
        EM_386 => "i386",
        EM_MIPS => "MIPS",
        EM_PPC => "PowerPC",
        EM_PPC64 => "PowerPC64",
        EM_S390 => "s390",
        EM_ARM => "ARM",
        EM_AARCH64 => "AArch64",
        EM_RISCV => "RISC-V",
        EM_LOONGARCH => "LoongArch",
        _ => "unknown",
    }
}

/// Largest program header table accepted (Linux's limit too).
pub const MAX_PHDR_BYTES: u64 = 64 << 10;
/// Longest interpreter path (PATH_MAX, with its NUL).
const MAX_INTERP: u64 = 4096;

/// Random access to the bytes of an executable file. The loader reads only
/// the ELF header, the program headers and the loaded segments through it,
/// never the whole file.
pub trait ReadAt {
    /// The file's size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` with the bytes at `offset`; an error (a message) when the
    /// file is shorter or cannot be read.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), String>;
}

impl ReadAt for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len() as u64)
            .ok_or_else(|| {
                format!(
                    "{} bytes at offset {offset} reach past the end of the {}-byte file",
                    buf.len(),
                    self.len()
                )
            })?;
        buf.copy_from_slice(&self[offset as usize..end as usize]);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        self[..].read_exact_at(offset, buf)
    }
}

fn read_exact(f: &(impl ReadAt + ?Sized), offset: u64, len: u64) -> Result<Vec<u8>, ElfError> {
    let mut b = vec![0u8; len as usize];
    f.read_exact_at(offset, &mut b).map_err(ElfError::Io)?;
    Ok(b)
}

/// The fields of the ELF file header the loader uses.
struct Header {
    etype: u16,
    entry: u64,
    phoff: u64,
    phentsize: u64,
    phnum: u64,
}

/// Read and check the 64-byte ELF file header of `f`.
fn read_header(f: &(impl ReadAt + ?Sized)) -> Result<Header, ElfError> {
    let have = f.size();
    let file = read_exact(f, 0, have.min(64))?;
    let magic = &object::elf::ELFMAG[..];
    if file.len() < 4 || file[..4] != *magic {
        if file.len() < 4 && magic.starts_with(&file) && !file.is_empty() {
            return Err(ElfError::Truncated {
                what: "the ELF header",
                need: 64,
                have,
            });
        }
        return Err(ElfError::NotElf);
    }
    if file.len() < 20 {
        return Err(ElfError::Truncated {
            what: "the ELF header",
            need: 64,
            have,
        });
    }
    // Identification and machine are judged before the header's length,
    // so a short file of another kind says what it is: read them from
    // the header padded with zeros.
    let mut padded = [0u8; 64];
    padded[..file.len()].copy_from_slice(&file);
    let (hdr, _) = object::pod::from_bytes::<FileHeader64<LE>>(&padded)
        .map_err(|_| ElfError::Bad("the ELF header does not fit its layout"))?;
    let (class, data) = (hdr.e_ident.class, hdr.e_ident.data);
    if class != object::elf::ELFCLASS64 || data != object::elf::ELFDATA2LSB {
        return Err(ElfError::WrongClass { class, data });
    }
    let machine = hdr.e_machine.get(LE);
    if machine != object::elf::EM_X86_64 {
        return Err(ElfError::NotX86_64 {
            machine,
            name: machine_name(machine),
        });
    }
    if file.len() < 64 {
        return Err(ElfError::Truncated {
            what: "the ELF header",
            need: 64,
            have,
        });
    }
    let etype = hdr.e_type.get(LE);
    if etype != object::elf::ET_EXEC && etype != object::elf::ET_DYN {
        return Err(ElfError::NotExecutable(etype));
    }
    let entry = hdr.e_entry.get(LE);
    let phoff = hdr.e_phoff.get(LE);
    let phentsize = hdr.e_phentsize.get(LE) as u64;
    let phnum = hdr.e_phnum.get(LE) as u64;
    if phnum == 0 {
        return Err(ElfError::Bad("no program headers"));
    }
    let ph_min = std::mem::size_of::<ProgramHeader64<LE>>() as u64;
    if phentsize < ph_min {
        return Err(ElfError::Bad(
            "program header entries are smaller than 56 bytes",
        ));
    }
    Ok(Header {
        etype,
        entry,
        phoff,
        phentsize,
        phnum,
    })
}

impl Elf {
    /// Parse an ELF file held in memory.
    pub fn parse(file: &[u8]) -> Result<Elf, ElfError> {
        Elf::read(file)
    }

    /// Parse the ELF file `f`, reading only its header and program headers
    /// (at most 64 + [`MAX_PHDR_BYTES`] bytes, plus the interpreter's
    /// path). An `ET_DYN` file is placed at [`PIE_BASE`].
    pub fn read(f: &(impl ReadAt + ?Sized)) -> Result<Elf, ElfError> {
        let have = f.size();
        let Header {
            etype,
            entry,
            phoff,
            phentsize,
            phnum,
        } = read_header(f)?;
        let ph_size = phnum * phentsize;
        if ph_size > MAX_PHDR_BYTES {
            return Err(ElfError::Bad(
                "the program header table is larger than 64 KiB",
            ));
        }
        let ph_end = phoff
            .checked_add(ph_size)
            .ok_or(ElfError::Bad("program header table overflows"))?;
        if ph_end > have {
            return Err(ElfError::Truncated {
                what: "the program header table",
                need: ph_end,
                have,
            });
        }
        let table = read_exact(f, phoff, ph_size)?;
        let bias = if etype == object::elf::ET_DYN {
            PIE_BASE
        } else {
            0
        };
        let mut segments = Vec::new();
        let mut phdr_va = None;
        let mut exec_stack = false;
        let mut interp = None;
        for i in 0..phnum {
            let o = (i * phentsize) as usize;
            let (ph, _) = object::pod::from_bytes::<ProgramHeader64<LE>>(&table[o..])
                .map_err(|_| ElfError::Bad("a program header does not fit its layout"))?;
            let p_type = ph.p_type.get(LE);
            let flags = ph.p_flags.get(LE);
            let offset = ph.p_offset.get(LE);
            let vaddr = ph.p_vaddr.get(LE);
            let filesz = ph.p_filesz.get(LE);
            let memsz = ph.p_memsz.get(LE);
            match p_type {
                PT_INTERP => {
                    if interp.is_some() {
                        return Err(ElfError::BadInterp("more than one PT_INTERP"));
                    }
                    interp = Some(read_interp(f, offset, filesz)?);
                }
                PT_PHDR => phdr_va = Some(vaddr.wrapping_add(bias)),
                PT_GNU_STACK => exec_stack = flags & PF_X != 0,
                PT_LOAD => {
                    if filesz > memsz {
                        return Err(ElfError::Bad(
                            "a segment's file size exceeds its memory size",
                        ));
                    }
                    let fend = offset
                        .checked_add(filesz)
                        .ok_or(ElfError::Bad("segment file range overflows"))?;
                    if fend > have {
                        return Err(ElfError::Truncated {
                            what: "a loadable segment",
                            need: fend,
                            have,
                        });
                    }
                    let va = vaddr
                        .checked_add(bias)
                        .ok_or(ElfError::Bad("segment address overflows"))?;
                    let vend = va
                        .checked_add(memsz)
                        .ok_or(ElfError::Bad("segment address overflows"))?;
                    if vend > USER_LIMIT || va < 0x1000 {
                        return Err(ElfError::Bad("segment outside the user address range"));
                    }
                    if memsz > 0 {
                        segments.push(Segment {
                            vaddr: va,
                            memsz,
                            offset,
                            filesz,
                            flags,
                        });
                    }
                }
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(ElfError::Bad("no loadable segments"));
        }
        let phdr = match phdr_va {
            Some(p) => p,
            None => segments
                .iter()
                .find(|s| s.offset <= phoff && ph_end <= s.offset + s.filesz)
                .map(|s| s.vaddr + (phoff - s.offset))
                .unwrap_or(0),
        };
        let entry = entry.wrapping_add(bias);
        if !segments
            .iter()
            .any(|s| s.vaddr <= entry && entry < s.vaddr + s.memsz)
        {
            return Err(ElfError::Bad(
                "the entry point is outside every loadable segment",
            ));
        }
        Ok(Elf {
            entry,
            phdr,
            phnum,
            segments,
            bias,
            exec_stack,
            interp,
            dyn_: etype == object::elf::ET_DYN,
        })
    }

    /// Lowest and highest (exclusive, page-rounded) addresses of the
    /// loadable segments.
    pub fn span(&self) -> (u64, u64) {
        let lo = self.segments.iter().map(|s| s.vaddr).min().unwrap_or(0) & !0xfff;
        let hi = self
            .segments
            .iter()
            .map(|s| s.vaddr + s.memsz)
            .max()
            .unwrap_or(0);
        (lo, (hi + 0xfff) & !0xfff)
    }

    /// The same `ET_DYN` file placed at load bias `bias` (page aligned)
    /// instead of [`PIE_BASE`]; every segment must still fit in the user
    /// range (below the vkernel's trampoline page at 0x7fff_ffff_f000: the
    /// loader places a dynamic loader with the mmap areas, above
    /// [`USER_LIMIT`]). An `ET_EXEC` file cannot move.
    pub fn relocate(&self, bias: u64) -> Result<Elf, ElfError> {
        if !self.dyn_ {
            return Err(ElfError::Bad("an ET_EXEC file cannot be relocated"));
        }
        if bias & 0xfff != 0 {
            return Err(ElfError::Bad("load bias not page aligned"));
        }
        let mv = |a: u64| a.wrapping_sub(self.bias).wrapping_add(bias);
        let mut e = self.clone();
        for s in &mut e.segments {
            s.vaddr = mv(s.vaddr);
            let end = s.vaddr.checked_add(s.memsz);
            if s.vaddr < 0x1000 || end.is_none_or(|x| x > 0x7fff_ffff_f000) {
                return Err(ElfError::Bad("segment outside the user address range"));
            }
        }
        e.entry = mv(e.entry);
        if e.phdr != 0 {
            e.phdr = mv(e.phdr);
        }
        e.bias = bias;
        Ok(e)
    }
}

/// Read and check the interpreter path of a PT_INTERP entry.
fn read_interp(f: &(impl ReadAt + ?Sized), offset: u64, filesz: u64) -> Result<Vec<u8>, ElfError> {
    let have = f.size();
    if !(2..=MAX_INTERP).contains(&filesz) {
        return Err(ElfError::BadInterp(
            "the interpreter path is empty or longer than 4096 bytes",
        ));
    }
    let end = offset.checked_add(filesz).ok_or(ElfError::BadInterp(
        "the interpreter path's range overflows",
    ))?;
    if end > have {
        return Err(ElfError::Truncated {
            what: "the interpreter path (PT_INTERP)",
            need: end,
            have,
        });
    }
    let mut name = read_exact(f, offset, filesz)?;
    if name.pop() != Some(0) || name.contains(&0) {
        return Err(ElfError::BadInterp(
            "the interpreter path is not one NUL-terminated string",
        ));
    }
    Ok(name)
}

/// A minimal static ELF: one read+execute segment at 0x40_0000 holding
/// `code` (entry at its first byte). Used for the built-in demo and tests.
pub fn tiny_elf(code: &[u8]) -> Vec<u8> {
    let base = 0x40_0000u64;
    let hdr = 64 + 56;
    let total = (hdr + code.len()) as u64;
    let mut f = Vec::with_capacity(total as usize);
    f.extend_from_slice(b"\x7fELF");
    f.extend_from_slice(&[2, 1, 1, 0]);
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&62u16.to_le_bytes()); // x86-64
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&(base + hdr as u64).to_le_bytes()); // entry
    f.extend_from_slice(&64u64.to_le_bytes()); // phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // flags
    f.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    f.extend_from_slice(&56u16.to_le_bytes()); // phentsize
    f.extend_from_slice(&1u16.to_le_bytes()); // phnum
    f.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
    f.extend_from_slice(&PT_LOAD.to_le_bytes());
    f.extend_from_slice(&(PF_R | PF_X).to_le_bytes());
    f.extend_from_slice(&0u64.to_le_bytes()); // offset
    f.extend_from_slice(&base.to_le_bytes()); // vaddr
    f.extend_from_slice(&base.to_le_bytes()); // paddr
    f.extend_from_slice(&total.to_le_bytes()); // filesz
    f.extend_from_slice(&total.to_le_bytes()); // memsz
    f.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    f.extend_from_slice(code);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_parses() {
        let e = Elf::parse(&tiny_elf(&[0x90])).unwrap();
        assert_eq!(e.entry, 0x40_0000 + 120);
        assert_eq!(e.phdr, 0x40_0040);
        let mut t = tiny_elf(&[0x90]);
        t[18] = 183;
        assert!(matches!(Elf::parse(&t), Err(ElfError::NotX86_64 { .. })));
        assert!(matches!(
            Elf::parse(&tiny_elf(&[0x90])[..100]),
            Err(ElfError::Truncated { .. })
        ));
    }

    /// A 1 TiB file whose first bytes are an ELF: only its headers are
    /// read, in small pieces.
    struct Huge(Vec<u8>, std::cell::Cell<u64>);

    impl ReadAt for Huge {
        fn size(&self) -> u64 {
            1 << 40
        }
        fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
            self.1.set(self.1.get() + buf.len() as u64);
            buf.fill(0);
            if let Some(src) = self.0.get(offset as usize..) {
                let n = src.len().min(buf.len());
                buf[..n].copy_from_slice(&src[..n]);
            }
            Ok(())
        }
    }

    #[test]
    fn only_headers_are_read_and_tables_are_capped() {
        let f = Huge(tiny_elf(&[0x90]), Default::default());
        let e = Elf::read(&f).unwrap();
        assert_eq!(e.segments.len(), 1);
        assert!(f.1.get() <= 64 + 56, "read {} bytes", f.1.get());
        // 65535 program headers: more than 64 KiB of table.
        let mut t = tiny_elf(&[0x90]);
        t[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
        let f = Huge(t, Default::default());
        assert!(matches!(Elf::read(&f), Err(ElfError::Bad(_))));
        assert!(f.1.get() <= 64);
        // A segment's file bytes must lie within the file.
        let mut t = tiny_elf(&[0x90]);
        t[64 + 32..64 + 40].copy_from_slice(&(1u64 << 41).to_le_bytes());
        t[64 + 40..64 + 48].copy_from_slice(&(1u64 << 41).to_le_bytes());
        let f = Huge(t, Default::default());
        assert!(matches!(Elf::read(&f), Err(ElfError::Truncated { .. })));
    }
}
