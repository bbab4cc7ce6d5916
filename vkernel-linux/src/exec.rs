//! execve(2): replace a vproc's program. The new image comes from the
//! root filesystem image, from `/proc/self/exe` (busybox runs its applets
//! that way), or is the virtual kernel's first program when its host path
//! is named. `#!` scripts run their interpreter (one level).
//!
//! The vproc keeps its vmspace: its vpagetable is replaced by a fresh one
//! ([`super::mm::Mm::reset`]), its frames are released (or their
//! copy-on-write references dropped), and the new ELF is loaded as at
//! boot.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::fmt;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::elf::{Elf, ElfError, ReadAt};
use super::fs::{Fs, Kind};
use super::mm::MmError;
use super::signal;
use super::{comm_of, load, load_program_with, Config, Vproc};
use crate::abi::errno::*;
use crate::mm::pagecache::FileSource;

/// Longest argv + envp accepted: bytes of the strings and their pointers
/// (Linux: a quarter of the 8 MiB RLIMIT_STACK).
const ARG_MAX: usize = 2 << 20;

/// Longest single argument or environment string, its NUL included
/// (Linux's MAX_ARG_STRLEN, 32 pages): longer is E2BIG.
const MAX_ARG_STRLEN: usize = 32 * 4096;

/// Longest `#!` line read.
const SHEBANG_MAX: u64 = 256;

/// Where a program's bytes come from. The loader reads the ELF headers and
/// the loaded segments from it on demand ([`ReadAt`]); nothing holds a
/// whole program file in host memory. Cloning is cheap (execve of
/// `/proc/self/exe` and fork share it).
#[derive(Clone)]
pub enum Image {
    /// Bytes in memory (the built-in demo, programs handed over by tests).
    Bytes(Arc<Vec<u8>>),
    /// An open regular file on the host and its size when it was opened.
    Host {
        /// The open file (kept open: `/proc/self/exe` runs it again even if
        /// its path was replaced).
        file: Arc<std::fs::File>,
        /// Its size.
        size: u64,
    },
    /// A regular file in the root filesystem image.
    Disk {
        /// The filesystem.
        fs: Arc<Fs>,
        /// The file's inode.
        ino: u64,
    },
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Image::Bytes(b) => write!(f, "Image::Bytes({} bytes)", b.len()),
            Image::Host { size, .. } => write!(f, "Image::Host({size} bytes)"),
            Image::Disk { ino, .. } => write!(f, "Image::Disk(inode {ino})"),
        }
    }
}

impl ReadAt for Image {
    fn size(&self) -> u64 {
        match self {
            Image::Bytes(b) => b.len() as u64,
            Image::Host { size, .. } => *size,
            Image::Disk { fs, ino } => fs.inode(*ino).size,
        }
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        let size = self.size();
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > size)
        {
            return Err(format!(
                "{} bytes at offset {offset} reach past the end of the {size}-byte file",
                buf.len()
            ));
        }
        match self {
            Image::Bytes(b) => b[..].read_exact_at(offset, buf),
            Image::Host { file, .. } => file.read_exact_at(buf, offset).map_err(|e| {
                format!(
                    "reading {} bytes at offset {offset}: {e} (did the file shrink?)",
                    buf.len()
                )
            }),
            Image::Disk { fs, ino } => match fs.read(*ino, offset, buf) {
                Ok(n) if n == buf.len() => Ok(()),
                Ok(n) => Err(format!(
                    "the disk image gave {n} of {} bytes at offset {offset}",
                    buf.len()
                )),
                Err(e) => Err(format!(
                    "the disk image failed reading offset {offset} (errno {e})"
                )),
            },
        }
    }
}

/// An [`Image`] with a stable identity, as a page-cache source.
struct ImageSource {
    image: Image,
    id: (u64, u64),
    /// The path it was run by (a host file's own name is the host's).
    name: Option<Vec<u8>>,
}

impl FileSource for ImageSource {
    fn file_id(&self) -> (u64, u64) {
        self.id
    }

    fn size(&self) -> u64 {
        self.image.size()
    }

    fn path(&self) -> Option<Vec<u8>> {
        match (&self.name, &self.image) {
            (_, Image::Disk { fs, ino }) => Some(fs.path_of(*ino)),
            (Some(n), _) => Some(n.clone()),
            _ => None,
        }
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<usize, i64> {
        let n = self.size().saturating_sub(off).min(buf.len() as u64) as usize;
        let buf = &mut buf[..n];
        match &self.image {
            Image::Bytes(b) => {
                buf.copy_from_slice(&b[off as usize..off as usize + n]);
                Ok(n)
            }
            Image::Host { file, .. } => file
                .read_at(buf, off)
                .map_err(|e| e.raw_os_error().map_or(EIO, |x| x as i64)),
            Image::Disk { fs, ino } => fs.read(*ino, off, buf),
        }
    }
}

impl Image {
    /// The file as a page-cache source: mappings of it share its pages
    /// with every other vproc mapping it. None for bytes in memory (no
    /// stable identity: they are loaded by copying).
    pub fn source(&self) -> Option<Arc<dyn FileSource>> {
        self.source_named(None)
    }

    /// [`Image::source`], shown as `name` in `/proc/PID/maps` (a file of
    /// the tree shows its own path).
    pub fn source_named(&self, name: Option<Vec<u8>>) -> Option<Arc<dyn FileSource>> {
        use std::os::unix::fs::MetadataExt;
        let id = match self {
            Image::Bytes(_) => return None,
            Image::Host { file, .. } => {
                let m = file.metadata().ok()?;
                (m.dev(), m.ino())
            }
            // The tree's own identity: it changes when a vproc rewrites
            // the file, so a cached old version is never mapped.
            Image::Disk { fs, ino } => fs.file_id(*ino),
        };
        Some(Arc::new(ImageSource {
            image: self.clone(),
            id,
            name,
        }))
    }

    /// The first bytes of the file (up to `n`), for the `#!` check.
    pub fn head(&self, n: u64) -> Result<Vec<u8>, String> {
        let mut b = vec![0u8; self.size().min(n) as usize];
        self.read_exact_at(0, &mut b)?;
        Ok(b)
    }
}

impl Vproc {
    fn user_strings(&mut self, mut p: u64) -> Result<Vec<Vec<u8>>, i64> {
        let mut v = Vec::new();
        let mut total = 0;
        if p == 0 {
            return Ok(v);
        }
        loop {
            let s = self.mm.read_u64(p)?;
            if s == 0 {
                return Ok(v);
            }
            let a = self.mm.read_cstr(s, MAX_ARG_STRLEN).map_err(|e| match e {
                MmError::Invalid => E2BIG,
                e => e.errno(),
            })?;
            if a.len() + 1 > MAX_ARG_STRLEN {
                return Err(E2BIG);
            }
            total += a.len() + 1 + 8;
            if total > ARG_MAX {
                return Err(E2BIG);
            }
            v.push(a);
            p += 8;
        }
    }

    /// The program at `path` and its absolute path.
    fn exec_file(&self, path: &[u8]) -> Result<(Image, Vec<u8>), i64> {
        if path == b"/proc/self/exe" {
            return Ok((self.image.clone(), self.exe.to_vec()));
        }
        match self.fs.resolve(self.cwd, path, true) {
            Ok(ino) => {
                let node = self.fs.inode(ino);
                match node.kind {
                    Kind::File { .. } => {}
                    _ => return Err(EACCES),
                }
                if node.mode & 0o111 == 0 {
                    return Err(EACCES);
                }
                let mut abs = self.fs.path_of(ino);
                if abs.is_empty() {
                    abs = path.to_vec();
                }
                let image = Image::Disk {
                    fs: self.fs.clone(),
                    ino,
                };
                Ok((image, abs))
            }
            Err(e) => {
                if path == &self.boot.exe[..] || path == &self.boot.path[..] {
                    Ok((self.boot.image.clone(), self.boot.exe.clone()))
                } else {
                    Err(e)
                }
            }
        }
    }

    /// execve(path, argv, envp).
    pub fn sys_execve(&mut self, path: u64, argv: u64, envp: u64) -> Result<i64, i64> {
        let p = self.user_path(path)?;
        self.execve_path(p, argv, envp)
    }

    /// execve of the program at `p` (a path in the vproc's tree).
    pub(crate) fn execve_path(&mut self, p: Vec<u8>, argv: u64, envp: u64) -> Result<i64, i64> {
        let mut argv = self.user_strings(argv)?;
        let envp = self.user_strings(envp)?;
        let (mut image, mut exe) = self.exec_file(&p)?;
        let mut run_path = p.clone();
        let head = image.head(SHEBANG_MAX).map_err(|_| EIO)?;
        if head.starts_with(b"#!") {
            let line_end = head.iter().position(|&c| c == b'\n').unwrap_or(head.len());
            let line = String::from_utf8_lossy(&head[2..line_end]).into_owned();
            let mut parts = line.trim().splitn(2, [' ', '\t']);
            let interp = parts.next().unwrap_or("").as_bytes().to_vec();
            if interp.is_empty() {
                return Err(ENOEXEC);
            }
            let mut nargv = vec![interp.clone()];
            if let Some(arg) = parts.next().map(str::trim).filter(|a| !a.is_empty()) {
                nargv.push(arg.as_bytes().to_vec());
            }
            nargv.push(p.clone());
            nargv.extend(argv.into_iter().skip(1));
            argv = nargv;
            (image, exe) = self.exec_file(&interp)?;
            run_path = interp;
            if image.head(2).map_err(|_| EIO)?.starts_with(b"#!") {
                return Err(ENOEXEC);
            }
        }
        let elf = Elf::read(&image).map_err(|e| match e {
            ElfError::Io(_) => EIO,
            _ => ENOEXEC,
        })?;
        let interp = load::find_interp(&self.fs, &elf).map_err(|e| {
            if self.trace {
                vk_eprintln!(
                    "[vk {}] execve {}: {e}",
                    self.pid,
                    String::from_utf8_lossy(&run_path)
                );
            }
            e.errno()
        })?;
        if self.trace {
            vk_eprintln!(
                "[vk {}] execve {} {:?}",
                self.pid,
                String::from_utf8_lossy(&run_path),
                argv.iter()
                    .map(|a| String::from_utf8_lossy(a))
                    .collect::<Vec<_>>()
            );
        }
        // The point of no return: the old program is gone.
        let cfg = Config {
            image: Vec::new(),
            path: String::from_utf8_lossy(&run_path).into_owned(),
            exe: String::from_utf8_lossy(&exe).into_owned(),
            argv,
            envp,
            fault_around: 0,
            trace: self.trace,
        };
        // A vfork parent waits no longer: what this child wrote goes to it
        // before the old memory goes.
        self.vfork_release();
        // The program's and its interpreter's known syscall sites are
        // rewritten before any of their pages gets a hardware entry.
        let mut rewrite = self.known_site_rewriter();
        let loaded = self.mm.reset().and_then(|_| {
            let src = image.source_named(Some(exe.clone()));
            load_program_with(
                &mut self.mm,
                &elf,
                &image,
                src.as_ref(),
                interp.as_ref(),
                &cfg,
                &mut rewrite,
            )
        });
        match loaded {
            Ok(frame) => {
                self.frame = frame;
                self.fresh_image = true;
            }
            Err(e) => {
                // Past the point of no return the process dies, and says
                // why in the log (`--log`), and `--ps` shows the death. Out of
                // RAM is SIGBUS, as for a page fault that finds no frame.
                let signo = match e {
                    MmError::OutOfMemory => signal::SIGBUS,
                    _ => signal::SIGSEGV,
                };
                let what = format!(
                    "pid {} ({}): execve {}: {e}",
                    self.pid,
                    self.comm,
                    String::from_utf8_lossy(&run_path)
                );
                if signo == signal::SIGBUS {
                    // Out of guest RAM is the vkernel's own failure.
                    vk_eprintln!("vkernel: {what}; run with a larger --mem");
                } else {
                    log::warn!(target: crate::diag::TARGET, "{what}; the process dies");
                }
                self.death = Some(format!("execve could not load the program: {e}"));
                self.exit = Some(super::ExitStatus::Signaled(signo));
                return Ok(0);
            }
        }
        // The name of the file execve was given (a script's, not its
        // interpreter's), as Linux names the task: not argv[0].
        self.comm = comm_of(&p);
        self.prctl = self.prctl.after_exec();
        self.cmdline = Arc::new(crate::cmdline_of(&cfg.argv));
        self.environ = Arc::new(crate::cmdline_of(&cfg.envp));
        // POSIX timers do not survive execve.
        if let Some(k) = &self.k {
            k.ptimers_clear(self.pid);
        }
        self.exe = Arc::new(exe);
        self.image = image;
        for closed in self.fds.close_on_exec() {
            self.locks_fd_closed(&closed.file);
        }
        for a in self.sig.actions.iter_mut() {
            if a.handler != signal::SIG_IGN {
                *a = signal::SigAction::default();
            }
        }
        self.sig.altstack = (0, signal::SS_DISABLE, 0);
        self.clear_child_tid = 0;
        // A fresh FPU state; the core loads it on the next run.
        self.fpu = crate::core::fpu::FpuContext::new();
        if let Some(p) = self.ptrace.as_deref_mut() {
            // Its tracer hears of it when the call returns.
            p.execed = true;
        }
        // The new program starts with every register zero (TrapFrame::new).
        Ok(0)
    }
}
