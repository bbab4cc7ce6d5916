//! `/proc/PID/mem` and `/proc/PID/auxv`: a process's memory read and
//! written like a file whose offsets are its addresses, and the auxiliary
//! vector its exec built. Debuggers use both: gdb reads the auxv to find
//! where a position-independent program was loaded (AT_ENTRY, AT_PHDR)
//! and moves all memory (breakpoints included) through `mem`.
//!
//! As on Linux, a write through `mem` may change read-only memory (a
//! breakpoint in program text goes into the process's private copy of the
//! page, [`crate::mm::Mm::write_force`]); an address with no area is EIO.
//! Another process's memory is reached through its process lock, taken
//! with a try: while one of its threads is in the kernel the access
//! retries (as ptrace's PEEK/POKE do), so nothing waits for a process lock
//! while holding another.

use super::errno::*;
use super::R;
use crate::files::{FileKind, MemAccess, MemFile, OpenFile};
use crate::kernel::ptrace::{retry_busy, Access};
use crate::mm::Mm;
use crate::Vproc;
use std::sync::Arc;

impl Vproc {
    /// Open `/proc/PID/mem` (handle `h`) of process `pid`.
    pub(super) fn open_proc_mem(
        &mut self,
        pid: i32,
        h: u64,
        keep: u32,
        flags: u32,
        path: &[u8],
    ) -> R {
        let (lock, tgid) = self.kernel()?.mm_of(pid).map_err(|_| ENOENT)?;
        let m = MemFile {
            mem: Arc::new(lock),
            tgid,
            node: h,
        };
        let file = OpenFile::new(FileKind::ProcMem(m), keep, path);
        self.install_file(file, flags)
    }

    /// Move bytes between `buf` and the memory of `m`'s process from
    /// address `at`: how many moved, up to the first byte outside its
    /// areas; EIO when none could; 0 once the process has ended.
    pub(super) fn mem_io(
        &mut self,
        m: &MemFile,
        at: u64,
        buf: &mut [u8],
        write: bool,
    ) -> Result<usize, i64> {
        let mut io = |mm: &mut Mm| {
            if !write {
                return mm.read_partial(at, buf);
            }
            // Any mapped byte: debuggers patch text that is not writable.
            let n = mm.accessible_len(at, buf.len(), false);
            mm.write_force(at, &buf[..n]).map_or(0, |()| n)
        };
        let n = if m.tgid == self.thread.tgid {
            io(&mut self.mm)
        } else {
            let mem = &m.mem;
            let moved = retry_busy(|| match mem.try_with_mm(&mut io) {
                Some(n) => Ok(Some(n)),
                None if mem.gone() => Ok(None),
                None => Err(Access::Busy),
            })?;
            match moved {
                Some(n) => n,
                None => return Ok(0),
            }
        };
        if n == 0 && !buf.is_empty() {
            return Err(EIO);
        }
        Ok(n)
    }

    /// `/proc/PID/auxv` of process `pid` (empty if it has gone).
    pub(super) fn auxv_of(&self, pid: i32) -> Vec<u8> {
        let Some(k) = self.k.as_ref() else {
            return Vec::new();
        };
        match k.mm_of(pid) {
            Ok((_, tgid)) if tgid == self.thread.tgid => self.mm.auxv.to_vec(),
            Ok((lock, _)) => {
                let gone = || {
                    if lock.gone() {
                        Access::Errno(ESRCH)
                    } else {
                        Access::Busy
                    }
                };
                retry_busy(|| lock.try_with_mm_mut(|mm| mm.auxv.clone()).ok_or_else(gone))
                    .map(|a| a.to_vec())
                    .unwrap_or_default()
            }
            Err(_) => Vec::new(),
        }
    }
}
