//! File-system calls: open, the current directory, access, readlink,
//! lseek; the stat family and directories are in [`super::stat`], the
//! calls that change the tree in [`super::fsmod`], `/proc` in
//! [`super::procfs`]. The tree itself is [`crate::fs`].
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::errno::*;
use super::table::Handler;
use super::{int, AT_FDCWD, R};
use crate::files::{self, Backing, Fd, FileKind, OpenFile};
use crate::fs::{proc_item, Fs, Kind, ProcItem};
use crate::mm::MmError;
use crate::Vproc;

/// The console's rdev (`/dev/tty`, 5:0).
const TTY_RDEV: u32 = 5 << 8;

impl Vproc {
    /// The file-system calls: `(number, handler)` for the
    /// syscall table ([`super::table`]).
    pub(super) const FS_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_open, |v, _nr, a| {
            v.sys_openat(AT_FDCWD, a[0], a[1] as u32, a[2] as u32)
        }),
        (libc::SYS_openat, |v, _nr, a| {
            v.sys_openat(int(a[0]), a[1], a[2] as u32, a[3] as u32)
        }),
        (libc::SYS_creat, |v, _nr, a| {
            v.sys_openat(
                AT_FDCWD,
                a[0],
                files::O_CREAT | files::O_WRONLY | files::O_TRUNC,
                a[1] as u32,
            )
        }),
        (libc::SYS_lseek, |v, _nr, a| {
            v.sys_lseek(int(a[0]), a[1] as i64, a[2] as u32)
        }),
        (libc::SYS_access, |v, _nr, a| {
            v.sys_faccessat(AT_FDCWD, a[0], a[1] as u32, 0)
        }),
        (libc::SYS_faccessat, |v, _nr, a| {
            v.sys_faccessat(int(a[0]), a[1], a[2] as u32, 0)
        }),
        (libc::SYS_faccessat2, |v, _nr, a| {
            v.sys_faccessat(int(a[0]), a[1], a[2] as u32, a[3])
        }),
        (libc::SYS_getcwd, |v, _nr, a| {
            v.sys_getcwd(a[0], a[1] as usize)
        }),
        (libc::SYS_chdir, |v, _nr, a| v.sys_chdir(a[0])),
        (libc::SYS_fchdir, |v, _nr, a| v.sys_fchdir(int(a[0]))),
        (libc::SYS_readlink, |v, _nr, a| {
            v.sys_readlinkat(AT_FDCWD, a[0], a[1], a[2] as usize)
        }),
        (libc::SYS_readlinkat, |v, _nr, a| {
            v.sys_readlinkat(int(a[0]), a[1], a[2], a[3] as usize)
        }),
        (libc::SYS_umask, |v, _nr, a| {
            let old = v.umask;
            v.umask = a[0] as u32 & 0o777;
            Ok(old as i64)
        }),
    ];

    /// Is `h` a directory?
    pub(super) fn is_dir(&self, h: u64) -> bool {
        self.fs.is_dir_handle(h)
    }

    pub(crate) fn user_path(&mut self, p: u64) -> Result<Vec<u8>, i64> {
        if p == 0 {
            return Err(EFAULT);
        }
        let s = self.mm.read_cstr(p, 4096).map_err(|e| match e {
            MmError::Invalid => ENAMETOOLONG,
            e => e.errno(),
        })?;
        Ok(s)
    }

    /// The node an fd is open on (EBADF if not open, `not` if it is no
    /// node of the tree).
    pub(super) fn fd_handle(&self, fd: i64, not: i64) -> Result<u64, i64> {
        let f = self.fds.get(fd)?.file.clone();
        let f = f.borrow();
        match f.kind {
            FileKind::Inode(h) => Ok(h),
            _ => Err(not),
        }
    }

    /// The directory a *at call is relative to.
    pub(super) fn at_dir(&self, dirfd: i64) -> Result<u64, i64> {
        if dirfd == AT_FDCWD {
            return Ok(self.cwd);
        }
        let h = self.fd_handle(dirfd, ENOTDIR)?;
        if self.is_dir(h) {
            Ok(h)
        } else {
            Err(ENOTDIR)
        }
    }

    /// Resolve `p` relative to `dirfd`.
    pub(super) fn lookup_at(&self, dirfd: i64, p: &[u8], follow: bool) -> Result<u64, i64> {
        let base = self.at_dir(dirfd)?;
        self.fs.walk(self, base, p, follow)
    }

    /// Resolve all but the last component of `p` relative to `dirfd`.
    pub(super) fn parent_at(&self, dirfd: i64, p: &[u8]) -> Result<(u64, Vec<u8>), i64> {
        let base = self.at_dir(dirfd)?;
        self.fs.walk_parent(self, base, p)
    }

    /// The node `p` names for an open with `flags`, created if asked.
    fn open_node(&self, dirfd: i64, p: &[u8], flags: u32, mode: u32) -> Result<u64, i64> {
        let follow = flags & files::O_NOFOLLOW == 0;
        if flags & files::O_CREAT == 0 || flags & files::O_PATH != 0 {
            return self.lookup_at(dirfd, p, follow);
        }
        let excl = flags & files::O_EXCL != 0;
        let (mut dir, mut name) = self.parent_at(dirfd, p)?;
        if p.ends_with(b"/") || name == b"." || name == b".." {
            return Err(EISDIR);
        }
        // A dangling symlink is followed: the file is made where it points.
        for _ in 0..crate::fs::path::MAX_LINKS {
            match self.fs.walk(self, dir, &name, follow && !excl) {
                Ok(_) if excl => return Err(EEXIST),
                Ok(h) => return Ok(h),
                Err(ENOENT) => {}
                Err(e) => return Err(e),
            }
            let at = self.fs.walk(self, dir, &name, false);
            match at.ok().and_then(|h| self.fs.link_target(h)) {
                Some(target) if follow && !excl => {
                    (dir, name) = self.fs.walk_parent(self, dir, &target)?;
                    if target.ends_with(b"/") || name == b"." || name == b".." {
                        return Err(EISDIR);
                    }
                }
                _ => {
                    let mode = mode & 0o7777 & !self.umask;
                    return Ok(self.fs.create(dir, &name, mode, excl)?.0);
                }
            }
        }
        Err(ELOOP)
    }

    pub(super) fn install_file(&mut self, file: crate::files::Shared<OpenFile>, flags: u32) -> R {
        Ok(self.fds.install(
            Fd {
                file,
                cloexec: flags & files::O_CLOEXEC != 0,
            },
            0,
        )?)
    }

    fn sys_openat(&mut self, dirfd: i64, path: u64, flags: u32, mode: u32) -> R {
        let p = self.user_path(path)?;
        let acc = flags & files::O_ACCMODE;
        if acc == files::O_ACCMODE && flags & files::O_PATH == 0 {
            return Err(EINVAL);
        }
        if flags & 0o20000000 != 0 {
            // O_TMPFILE: not offered (callers fall back to a named file).
            return Err(EOPNOTSUPP);
        }
        if flags & files::O_CREAT != 0 && flags & files::O_DIRECTORY != 0 {
            return Err(EINVAL);
        }
        let write = acc != 0 && flags & files::O_PATH == 0;
        let h = self.open_node(dirfd, &p, flags, mode)?;
        // As on any 64-bit Linux, every open file is O_LARGEFILE.
        let keep = (flags | files::O_LARGEFILE)
            & !(files::O_CLOEXEC | files::O_CREAT | files::O_EXCL | files::O_TRUNC | 0o400);
        if let Some((_, item)) = proc_item(h) {
            return self.open_proc(h, item, flags, write, &p);
        }
        let node = self.fs.inode(h);
        let is_dir = matches!(node.kind, Kind::Dir(_));
        if flags & files::O_DIRECTORY != 0 && !is_dir {
            return Err(ENOTDIR);
        }
        if flags & files::O_PATH == 0 {
            match node.kind {
                Kind::Symlink(_) => return Err(ELOOP),
                Kind::Special | Kind::Socket(_) => return Err(ENXIO),
                Kind::Fifo(pipe) => return self.open_fifo(pipe, flags, keep, &p),
                Kind::Dir(_) if write || flags & files::O_CREAT != 0 => return Err(EISDIR),
                Kind::CharDev(crate::fs::pty::PTMX_RDEV) => return self.open_ptmx(flags, keep),
                Kind::CharDev(d) if crate::fs::pty::pts_index(d).is_some() => {
                    let i = crate::fs::pty::pts_index(d).expect("checked");
                    return self.open_pts(i, flags, keep);
                }
                Kind::CharDev(TTY_RDEV) => {
                    if let Some(r) = self.open_ctty(flags, keep) {
                        return r;
                    }
                    // The console is the vprocs' terminal only when the
                    // vkernel's own stdin is one (else ENXIO, as for a
                    // process without a controlling terminal).
                    let tty = |h| {
                        // SAFETY: isatty only inspects the fd.
                        unsafe { libc::isatty(h) == 1 }
                    };
                    if !self.stdio.host_fd(0).is_some_and(tty) {
                        return Err(ENXIO);
                    }
                    let f = OpenFile::new(FileKind::Stdout, files::O_RDWR, b"/dev/tty");
                    return self.install_file(f, flags);
                }
                Kind::File { .. } => {
                    if write {
                        self.fs.prepare_write(h)?;
                    }
                    // IN_OPEN before O_TRUNC's IN_MODIFY, as Linux.
                    let note = self.fs.open_note(h, write);
                    if flags & files::O_TRUNC != 0 && write {
                        self.fs.truncate(h, 0)?;
                    }
                    let file = OpenFile::node(Backing::new(self.fs.clone(), h), keep, &p);
                    file.borrow_mut().note = note;
                    return self.install_file(file, flags);
                }
                _ => {}
            }
        }
        let file = OpenFile::node(Backing::new(self.fs.clone(), h), keep, &p);
        if flags & files::O_PATH == 0 {
            file.borrow_mut().note = self.fs.open_note(h, write);
        }
        self.install_file(file, flags)
    }

    /// Open a `/proc` entry: a snapshot of a file, a directory, or (through
    /// `fd/N` of a pipe or the console) the open file itself.
    fn open_proc(&mut self, h: u64, item: ProcItem, flags: u32, write: bool, p: &[u8]) -> R {
        let keep = flags & !(files::O_CLOEXEC | files::O_CREAT | files::O_EXCL | files::O_TRUNC);
        match item {
            ProcItem::Mem => {
                let pid = proc_item(h).map_or(self.pid, |(pid, _)| pid);
                self.open_proc_mem(pid, h, keep, flags, p)
            }
            ProcItem::Fd(n) => {
                // Another process's pipe or socket is opened as itself,
                // as on Linux.
                let pid = proc_item(h).map_or(self.pid, |(pid, _)| pid);
                let file = self.file_of(pid, n).ok_or(ENOENT)?;
                self.install_file(file, flags)
            }
            _ if !item.is_dir() && !item.is_link() => {
                if write {
                    return Err(EACCES);
                }
                let pid = proc_item(h).map_or(self.pid, |(pid, _)| pid);
                let data = self.proc_contents(pid, item);
                let node = self.fs.anonymous(data);
                let file = OpenFile::node(Backing::new(self.fs.clone(), node), keep, p);
                self.install_file(file, flags)
            }
            _ if item.is_dir() => {
                if write {
                    return Err(EISDIR);
                }
                let file = OpenFile::new(FileKind::Inode(h), keep, p);
                self.install_file(file, flags)
            }
            _ if keep & files::O_PATH != 0 => {
                let file = OpenFile::new(FileKind::Inode(h), keep, p);
                self.install_file(file, flags)
            }
            _ => Err(ELOOP),
        }
    }

    fn sys_lseek(&mut self, fd: i64, off: i64, whence: u32) -> R {
        let file = self.fds.get(fd)?.file.clone();
        let mut f = file.borrow_mut();
        seek_file(&self.fs, &mut f, off, whence)
    }

    fn sys_getcwd(&mut self, buf: u64, size: usize) -> R {
        if self.fs.inode(self.cwd).nlink == 0 && proc_item(self.cwd).is_none() {
            return Err(ENOENT);
        }
        let mut p = self.fs.path_of(self.cwd);
        p.push(0);
        // A path longer than PATH_MAX cannot be returned at all (Linux's
        // d_path gives ENAMETOOLONG); a short buffer is ERANGE.
        if p.len() > 4096 {
            return Err(ENAMETOOLONG);
        }
        if p.len() > size {
            return Err(ERANGE);
        }
        self.mm.write(buf, &p)?;
        Ok(p.len() as i64)
    }

    fn sys_chdir(&mut self, path: u64) -> R {
        let p = self.user_path(path)?;
        let h = self.fs.walk(self, self.cwd, &p, true)?;
        if !self.is_dir(h) {
            return Err(ENOTDIR);
        }
        self.cwd = h;
        Ok(0)
    }

    fn sys_fchdir(&mut self, fd: i64) -> R {
        let h = self.fd_handle(fd, ENOTDIR)?;
        if !self.is_dir(h) {
            return Err(ENOTDIR);
        }
        self.cwd = h;
        Ok(0)
    }

    fn sys_readlinkat(&mut self, dirfd: i64, path: u64, buf: u64, size: usize) -> R {
        let p = self.user_path(path)?;
        if (size as i64) <= 0 {
            return Err(EINVAL);
        }
        let h = if p.is_empty() {
            self.fd_handle(dirfd, ENOENT)?
        } else {
            self.lookup_at(dirfd, &p, false)?
        };
        let target = match proc_item(h) {
            Some((pid, item)) if item.is_link() => self.proc_link(pid, item),
            Some(_) => return Err(EINVAL),
            None => self.fs.link_target(h).ok_or(EINVAL)?,
        };
        let n = target.len().min(size);
        self.mm.write(buf, &target[..n])?;
        Ok(n as i64)
    }

    fn sys_faccessat(&mut self, dirfd: i64, path: u64, mode: u32, flags: u64) -> R {
        if mode & !7 != 0 || flags & !(0x100 | 0x200 | 0x1000) != 0 {
            return Err(EINVAL);
        }
        let p = self.user_path(path)?;
        let h = if p.is_empty() && flags & 0x1000 != 0 {
            self.fd_handle(dirfd, EBADF)?
        } else {
            self.lookup_at(dirfd, &p, flags & 0x100 == 0)?
        };
        let n = self.fs.inode(h);
        if mode & 2 != 0 && proc_item(h).is_some_and(|(_, i)| !i.is_dir()) {
            return Err(EACCES);
        }
        // The vproc is root: only execute needs a bit (or a directory).
        if mode & 1 != 0 && n.mode & 0o111 == 0 && !matches!(n.kind, Kind::Dir(_)) {
            return Err(EACCES);
        }
        Ok(0)
    }

    /// Report whether the inode is a character device (for tests).
    pub fn is_chardev(&self, ino: u64) -> bool {
        matches!(self.fs.inode(ino).kind, Kind::CharDev(_))
    }
}

/// lseek on open file `f` (also the exitless fast path's).
pub(crate) fn seek_file(fs: &Fs, f: &mut OpenFile, off: i64, whence: u32) -> R {
    let h = match f.kind {
        FileKind::Inode(h) => h,
        // Offsets are addresses (Linux: unsigned offsets, no end).
        FileKind::ProcMem(_) => {
            f.pos = match whence {
                0 => off as u64,
                1 => f.pos.wrapping_add(off as u64),
                _ => return Err(EINVAL),
            };
            return Ok(f.pos as i64);
        }
        _ => return Err(ESPIPE),
    };
    let size = fs.inode(h).size as i64;
    let new = match whence {
        0 => off,
        1 => (f.pos as i64).checked_add(off).ok_or(EINVAL)?,
        2 => size.checked_add(off).ok_or(EINVAL)?,
        // SEEK_DATA, SEEK_HOLE: no holes.
        3 if off >= 0 && off < size => off,
        4 if off >= 0 && off < size => size,
        3 | 4 => return Err(ENXIO),
        _ => return Err(EINVAL),
    };
    if new < 0 {
        return Err(EINVAL);
    }
    f.pos = new as u64;
    Ok(new)
}
