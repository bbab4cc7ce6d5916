//! gdb's file access on the target (`vFile`): gdb reads the program, the
//! dynamic loader and the libraries as the vproc sees them (its root may
//! be a disk image, not the host's files), and `/proc/PID/maps` (for
//! `info proc mappings`) as the vkernel makes it. Read-only: opening for
//! writing, unlink and the like are refused.

use std::collections::HashMap;
use std::sync::Arc;

use gdbstub::target::ext::host_io::{
    HostIo, HostIoClose, HostIoCloseOps, HostIoErrno, HostIoError, HostIoFstat, HostIoFstatOps,
    HostIoOpen, HostIoOpenFlags, HostIoOpenMode, HostIoOpenOps, HostIoPread, HostIoPreadOps,
    HostIoResult, HostIoStat,
};

use super::target::VprocTarget;
use crate::fs::{Fs, Kind, ROOT};

/// A file gdb opened.
pub(super) enum Open {
    /// Bytes made at open (`/proc/PID/maps`).
    Bytes(Vec<u8>),
    /// A file of the vproc's tree.
    Node(u64),
}

/// gdb's open files.
#[derive(Default)]
pub(super) struct Files {
    next: u32,
    open: HashMap<u32, Open>,
    /// The vproc's tree (taken from the first vproc when the session
    /// starts).
    pub(super) fs: Option<Arc<Fs>>,
}

fn errno<E>(e: HostIoErrno) -> HostIoError<E> {
    HostIoError::Errno(e)
}

impl VprocTarget {
    /// `/proc/PID/maps` (or `/proc/PID/task/TID/maps`) of the debugged
    /// process, if `path` names it.
    fn proc_maps(&self, path: &[u8]) -> Option<Vec<u8>> {
        let p = std::str::from_utf8(path).ok()?;
        let rest = p.strip_prefix("/proc/")?;
        let (pid, tail) = rest.split_once('/')?;
        let pid: i32 = pid.parse().ok()?;
        let ok = pid == self.tgid
            && (tail == "maps"
                || tail
                    .strip_prefix("task/")
                    .and_then(|t| t.split_once('/'))
                    .is_some_and(|(_, f)| f == "maps"));
        if !ok {
            return None;
        }
        self.maps(&self.exe)
    }
}

impl HostIo for VprocTarget {
    fn support_open(&mut self) -> Option<HostIoOpenOps<'_, Self>> {
        Some(self)
    }

    fn support_close(&mut self) -> Option<HostIoCloseOps<'_, Self>> {
        Some(self)
    }

    fn support_pread(&mut self) -> Option<HostIoPreadOps<'_, Self>> {
        Some(self)
    }

    fn support_fstat(&mut self) -> Option<HostIoFstatOps<'_, Self>> {
        Some(self)
    }
}

impl HostIoOpen for VprocTarget {
    fn open(
        &mut self,
        filename: &[u8],
        flags: HostIoOpenFlags,
        _mode: HostIoOpenMode,
    ) -> HostIoResult<u32, Self> {
        // O_RDONLY only (gdb's own flag values: 0 is read-only).
        if flags.bits() & 3 != 0 {
            return Err(errno(HostIoErrno::EACCES));
        }
        let file = match self.proc_maps(filename) {
            Some(b) => Open::Bytes(b),
            None => {
                let fs = self.files.fs.clone().ok_or(errno(HostIoErrno::ENOENT))?;
                let h = fs
                    .resolve(ROOT, filename, true)
                    .map_err(|_| errno(HostIoErrno::ENOENT))?;
                match fs.inode(h).kind {
                    Kind::File { .. } => Open::Node(h),
                    Kind::Dir(_) => return Err(errno(HostIoErrno::EISDIR)),
                    _ => return Err(errno(HostIoErrno::EACCES)),
                }
            }
        };
        let fd = self.files.next;
        self.files.next += 1;
        self.files.open.insert(fd, file);
        Ok(fd)
    }
}

impl HostIoClose for VprocTarget {
    fn close(&mut self, fd: u32) -> HostIoResult<(), Self> {
        self.files
            .open
            .remove(&fd)
            .map(|_| ())
            .ok_or(errno(HostIoErrno::EBADF))
    }
}

impl HostIoPread for VprocTarget {
    fn pread(
        &mut self,
        fd: u32,
        count: usize,
        offset: u64,
        buf: &mut [u8],
    ) -> HostIoResult<usize, Self> {
        let n = count.min(buf.len());
        match self.files.open.get(&fd).ok_or(errno(HostIoErrno::EBADF))? {
            Open::Bytes(b) => {
                let from = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
                let k = n.min(b.len() - from);
                buf[..k].copy_from_slice(&b[from..from + k]);
                Ok(k)
            }
            Open::Node(h) => {
                let fs = self.files.fs.as_ref().ok_or(errno(HostIoErrno::EBADF))?;
                fs.read(*h, offset, &mut buf[..n])
                    .map_err(|_| errno(HostIoErrno::EIO))
            }
        }
    }
}

impl HostIoFstat for VprocTarget {
    fn fstat(&mut self, fd: u32) -> HostIoResult<HostIoStat, Self> {
        let (size, mode, ino) = match self.files.open.get(&fd).ok_or(errno(HostIoErrno::EBADF))? {
            Open::Bytes(b) => (b.len() as u64, 0o100_444, 0),
            Open::Node(h) => {
                let fs = self.files.fs.as_ref().ok_or(errno(HostIoErrno::EBADF))?;
                let st = fs.inode(*h);
                (st.size, st.mode, st.st_ino)
            }
        };
        Ok(HostIoStat {
            st_dev: 0,
            st_ino: (ino & 0xffff_ffff) as u32,
            st_mode: HostIoOpenMode::from_bits_truncate(mode),
            st_nlink: 1,
            st_uid: 0,
            st_gid: 0,
            st_rdev: 0,
            st_size: size,
            st_blksize: 4096,
            st_blocks: size.div_ceil(512),
            st_atime: 0,
            st_mtime: 0,
            st_ctime: 0,
        })
    }
}
