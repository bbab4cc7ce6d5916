//! execve(2): replace a vproc's program. The new image comes from the
//! root filesystem image, from `/proc/self/exe` (busybox runs its applets
//! that way), or is the virtual kernel's first program when its host path
//! is named. `#!` scripts run their interpreter (one level).
//!
//! The vproc keeps its vmspace: its vpagetable is replaced by a fresh one
//! ([`super::mm::Mm::reset`]), its frames are released (or their
//! copy-on-write references dropped), and the new ELF is loaded as at
//! boot.

use std::sync::Arc;

use super::elf::Elf;
use super::fs::Kind;
use super::mm::MmError;
use super::signal;
use super::syscalls::errno::*;
use super::{comm_of, load_image, Config, Vproc};

/// Longest argv + envp accepted (bytes).
const ARG_MAX: usize = 2 << 20;

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
            let a = self.mm.read_cstr(s, ARG_MAX).map_err(|e| match e {
                MmError::Invalid => E2BIG,
                e => e.errno(),
            })?;
            total += a.len() + 1;
            if total > ARG_MAX {
                return Err(E2BIG);
            }
            v.push(a);
            p += 8;
        }
    }

    /// The bytes of the program at `path`.
    fn exec_file(&self, path: &[u8]) -> Result<(Arc<Vec<u8>>, Vec<u8>), i64> {
        if path == b"/proc/self/exe" {
            return Ok((self.image.clone(), self.exe.clone()));
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
                let mut b = vec![0u8; node.size as usize];
                let n = self.fs.read(ino, 0, &mut b)?;
                b.truncate(n);
                let mut abs = self.fs.path_of(ino);
                if abs.is_empty() {
                    abs = path.to_vec();
                }
                Ok((Arc::new(b), abs))
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
        let mut argv = self.user_strings(argv)?;
        let envp = self.user_strings(envp)?;
        let (mut image, mut exe) = self.exec_file(&p)?;
        let mut run_path = p.clone();
        if image.starts_with(b"#!") {
            let line_end = image
                .iter()
                .position(|&c| c == b'\n')
                .unwrap_or(image.len());
            let line = String::from_utf8_lossy(&image[2..line_end.min(256)]).into_owned();
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
            if image.starts_with(b"#!") {
                return Err(ENOEXEC);
            }
        }
        let elf = Elf::parse(&image).map_err(|_| ENOEXEC)?;
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
        let loaded = self
            .mm
            .reset()
            .and_then(|_| load_image(&mut self.mm, &elf, &image, &cfg));
        match loaded {
            Ok(frame) => self.frame = frame,
            Err(e) => {
                // Past the point of no return the process dies, and says
                // why: a child's death would be silent otherwise. Out of
                // RAM is SIGBUS, as for a page fault that finds no frame.
                let signo = match e {
                    MmError::OutOfMemory => signal::SIGBUS,
                    _ => signal::SIGSEGV,
                };
                vk_eprintln!(
                    "vkernel: pid {}: execve {}: {e}",
                    self.pid,
                    String::from_utf8_lossy(&run_path)
                );
                self.death = Some(format!("execve could not load the program: {e}"));
                self.exit = Some(super::ExitStatus::Signaled(signo));
                return Ok(0);
            }
        }
        self.comm = comm_of(cfg.argv.first().map(|a| &a[..]).unwrap_or(&run_path));
        self.exe = exe;
        self.image = image;
        self.fds.close_on_exec();
        for a in self.sig.actions.iter_mut() {
            if a.handler != signal::SIG_IGN {
                *a = signal::SigAction::default();
            }
        }
        self.sig.altstack = (0, signal::SS_DISABLE, 0);
        self.clear_child_tid = 0;
        if self.fpu.is_some() {
            self.fpu = Some(super::kernel::initial_fpu());
            self.fpu_dirty = true;
        }
        // The new program starts with every register zero (TrapFrame::new).
        Ok(0)
    }
}
