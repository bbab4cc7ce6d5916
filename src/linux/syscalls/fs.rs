//! File-system calls: open, stat, directories (getdents), the current
//! directory, access and readlink, and the writes a read-only tree refuses
//! (EROFS). The tree itself is [`crate::linux::fs`].

use super::errno::*;
use super::{int, AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, R};
use crate::linux::files::{self, Fd, FileKind, OpenFile};
use crate::linux::fs::{self, Kind, S_IFCHR, S_IFDIR};
use crate::linux::mm::MmError;
use crate::linux::Vproc;

/// What stat reports.
struct Stat {
    dev: u64,
    ino: u64,
    mode: u32,
    nlink: u64,
    uid: u32,
    gid: u32,
    rdev: u64,
    size: u64,
    mtime: u64,
}

impl Stat {
    fn to_stat(&self) -> [u8; 144] {
        let mut b = [0u8; 144];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &self.dev.to_le_bytes());
        put(8, &self.ino.to_le_bytes());
        put(16, &self.nlink.to_le_bytes());
        put(24, &self.mode.to_le_bytes());
        put(28, &self.uid.to_le_bytes());
        put(32, &self.gid.to_le_bytes());
        put(40, &self.rdev.to_le_bytes());
        put(48, &self.size.to_le_bytes());
        put(56, &4096u64.to_le_bytes());
        put(64, &self.size.div_ceil(512).to_le_bytes());
        for off in [72, 88, 104] {
            put(off, &self.mtime.to_le_bytes());
        }
        b
    }

    fn to_statx(&self) -> [u8; 256] {
        let mut b = [0u8; 256];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &0x7ffu32.to_le_bytes());
        put(4, &4096u32.to_le_bytes());
        put(16, &(self.nlink as u32).to_le_bytes());
        put(20, &self.uid.to_le_bytes());
        put(24, &self.gid.to_le_bytes());
        put(28, &(self.mode as u16).to_le_bytes());
        put(32, &self.ino.to_le_bytes());
        put(40, &self.size.to_le_bytes());
        put(48, &self.size.div_ceil(512).to_le_bytes());
        for off in [64, 80, 96, 112] {
            put(off, &self.mtime.to_le_bytes());
        }
        put(128, &((self.rdev >> 8) as u32).to_le_bytes());
        put(132, &((self.rdev & 0xff) as u32).to_le_bytes());
        put(136, &((self.dev >> 8) as u32).to_le_bytes());
        put(140, &((self.dev & 0xff) as u32).to_le_bytes());
        b
    }
}

/// The record layout of a getdents call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dirent {
    /// getdents (78), `struct linux_dirent`: d_ino u64, d_off u64,
    /// d_reclen u16, the name and its NUL, padding, and d_type as the
    /// record's last byte.
    Legacy,
    /// getdents64 (217), `struct linux_dirent64`: d_ino u64, d_off u64,
    /// d_reclen u16, d_type u8, the name and its NUL, padding.
    D64,
}

impl Dirent {
    /// One record, its length a multiple of 8 as Linux makes it.
    fn record(self, ino: u64, off: u64, dtype: u8, name: &[u8]) -> Vec<u8> {
        let reclen = match self {
            // offsetof(d_name) = 18, then NUL and d_type.
            Dirent::Legacy => (18 + name.len() + 2).div_ceil(8) * 8,
            // offsetof(d_name) = 19, then NUL.
            Dirent::D64 => (19 + name.len() + 1).div_ceil(8) * 8,
        };
        let mut r = Vec::with_capacity(reclen);
        r.extend_from_slice(&ino.to_le_bytes());
        r.extend_from_slice(&off.to_le_bytes());
        r.extend_from_slice(&(reclen as u16).to_le_bytes());
        if self == Dirent::D64 {
            r.push(dtype);
        }
        r.extend_from_slice(name);
        r.resize(reclen, 0);
        if self == Dirent::Legacy {
            r[reclen - 1] = dtype;
        }
        r
    }
}

/// The `DT_*` type of an inode of this `mode`.
fn dirent_type(mode: u32) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => libc::DT_DIR,
        libc::S_IFLNK => libc::DT_LNK,
        libc::S_IFCHR => libc::DT_CHR,
        _ => libc::DT_REG,
    }
}

impl Vproc {
    /// The file-system calls, or None if `nr` is not one.
    pub(super) fn fs_call(&mut self, nr: i64, a: [u64; 6]) -> Option<R> {
        Some(match nr {
            libc::SYS_open => self.sys_openat(AT_FDCWD, a[0], a[1] as u32),
            libc::SYS_openat => self.sys_openat(int(a[0]), a[1], a[2] as u32),
            libc::SYS_stat => self.sys_fstatat(AT_FDCWD, a[0], a[1], 0),
            libc::SYS_fstat => self.sys_fstatat(int(a[0]), 0, a[1], AT_EMPTY_PATH),
            libc::SYS_lstat => self.sys_fstatat(AT_FDCWD, a[0], a[1], AT_SYMLINK_NOFOLLOW),
            libc::SYS_newfstatat => self.sys_fstatat(int(a[0]), a[1], a[2], a[3]),
            libc::SYS_statx => self.sys_statx(int(a[0]), a[1], a[2], a[4]),
            libc::SYS_statfs | libc::SYS_fstatfs => self.sys_statfs(a[1]),
            libc::SYS_lseek => self.sys_lseek(int(a[0]), a[1] as i64, a[2] as u32),
            libc::SYS_access => self.sys_faccessat(AT_FDCWD, a[0], a[1] as u32),
            libc::SYS_faccessat | libc::SYS_faccessat2 => {
                self.sys_faccessat(int(a[0]), a[1], a[2] as u32)
            }
            libc::SYS_getdents => self.sys_getdents(int(a[0]), a[1], a[2] as usize, Dirent::Legacy),
            libc::SYS_getdents64 => self.sys_getdents(int(a[0]), a[1], a[2] as usize, Dirent::D64),
            libc::SYS_getcwd => self.sys_getcwd(a[0], a[1] as usize),
            libc::SYS_chdir => self.sys_chdir(a[0]),
            libc::SYS_fchdir => self.sys_fchdir(int(a[0])),
            libc::SYS_readlink => self.sys_readlinkat(AT_FDCWD, a[0], a[1], a[2] as usize),
            libc::SYS_readlinkat => self.sys_readlinkat(int(a[0]), a[1], a[2], a[3] as usize),
            libc::SYS_umask => {
                let old = self.umask;
                self.umask = a[0] as u32 & 0o777;
                Ok(old as i64)
            }
            libc::SYS_fsync | libc::SYS_fdatasync | libc::SYS_flock => Ok(0),
            // The tree is read-only.
            libc::SYS_truncate
            | libc::SYS_ftruncate
            | libc::SYS_rename
            | libc::SYS_mkdir
            | libc::SYS_rmdir
            | libc::SYS_creat
            | libc::SYS_link
            | libc::SYS_unlink
            | libc::SYS_symlink
            | libc::SYS_chmod
            | libc::SYS_fchmod
            | libc::SYS_chown
            | libc::SYS_fchown
            | libc::SYS_lchown
            | libc::SYS_mkdirat
            | libc::SYS_unlinkat
            | libc::SYS_renameat
            | libc::SYS_linkat
            | libc::SYS_symlinkat
            | libc::SYS_fchmodat
            | libc::SYS_utimensat
            | libc::SYS_renameat2 => Err(EROFS),
            _ => return None,
        })
    }

    fn sys_fchdir(&mut self, fd: i64) -> R {
        let f = self.fds.get(fd)?.file.clone();
        let f = f.borrow();
        match f.kind {
            FileKind::Inode(ino) if self.is_dir(ino) => {
                self.cwd = ino;
                Ok(0)
            }
            _ => Err(ENOTDIR),
        }
    }

    /// statfs/fstatfs: the magic and block size of an ext2-like tree.
    fn sys_statfs(&mut self, buf: u64) -> R {
        let mut b = [0u8; 120];
        b[..8].copy_from_slice(&0x01021994u64.to_le_bytes());
        b[8..16].copy_from_slice(&4096u64.to_le_bytes());
        self.mm.write(buf, &b)?;
        Ok(0)
    }

    pub(super) fn is_dir(&self, ino: u64) -> bool {
        matches!(self.fs.inode(ino).kind, Kind::Dir(_))
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

    /// The directory a *at call is relative to.
    fn at_dir(&self, dirfd: i64) -> Result<u64, i64> {
        if dirfd == AT_FDCWD {
            return Ok(self.cwd);
        }
        let f = self.fds.get(dirfd)?.file.clone();
        let f = f.borrow();
        match f.kind {
            FileKind::Inode(ino) if self.is_dir(ino) => Ok(ino),
            _ => Err(ENOTDIR),
        }
    }

    fn sys_openat(&mut self, dirfd: i64, path: u64, flags: u32) -> R {
        let p = self.user_path(path)?;
        let acc = flags & files::O_ACCMODE;
        let stdio = match &p[..] {
            b"/dev/stdin" => Some(0),
            b"/dev/stdout" => Some(1),
            b"/dev/stderr" | b"/dev/tty" => Some(if &p[..] == b"/dev/tty" { 1 } else { 2 }),
            _ => None,
        };
        if let Some(n) = stdio {
            if &p[..] == b"/dev/tty" && self.stdio.host_fd(0).is_none() {
                return Err(ENXIO);
            }
            let fd = self.fds.get(n)?.clone();
            return Ok(self.fds.install(
                Fd {
                    file: fd.file,
                    cloexec: flags & files::O_CLOEXEC != 0,
                },
                0,
            )?);
        }
        let base = self.at_dir(dirfd)?;
        let follow = flags & files::O_NOFOLLOW == 0;
        let ino = match self.fs.resolve(base, &p, follow) {
            Ok(ino) => ino,
            Err(fs::errno::ENOENT) if flags & files::O_CREAT != 0 => return Err(EROFS),
            Err(e) => return Err(e),
        };
        let node = self.fs.inode(ino);
        let is_dir = matches!(node.kind, Kind::Dir(_));
        if flags & files::O_DIRECTORY != 0 && !is_dir {
            return Err(ENOTDIR);
        }
        if matches!(node.kind, Kind::Symlink(_)) && flags & files::O_PATH == 0 {
            return Err(ELOOP);
        }
        let dev = matches!(node.kind, Kind::CharDev(_));
        if !dev && (acc != 0 || flags & files::O_TRUNC != 0) {
            return Err(if is_dir { EISDIR } else { EROFS });
        }
        if flags & files::O_CREAT != 0 && flags & 0o200 != 0 {
            return Err(EEXIST);
        }
        let file = OpenFile::new(FileKind::Inode(ino), flags & !files::O_CLOEXEC, &p);
        Ok(self.fds.install(
            Fd {
                file,
                cloexec: flags & files::O_CLOEXEC != 0,
            },
            0,
        )?)
    }

    fn stat_fd(&self, fd: i64) -> Result<Stat, i64> {
        let file = self.fds.get(fd)?.file.clone();
        let f = file.borrow();
        match &f.kind {
            FileKind::Inode(ino) => Ok(self.stat_ino(*ino)),
            FileKind::PipeRead(_) | FileKind::PipeWrite(_) => Ok(Stat {
                dev: 12,
                ino: 1000 + fd as u64,
                mode: 0o010600,
                nlink: 1,
                uid: 0,
                gid: 0,
                rdev: 0,
                size: 0,
                mtime: 0,
            }),
            k => {
                let n = match k {
                    FileKind::Stdin => 0,
                    FileKind::Stdout => 1,
                    _ => 2,
                };
                let mut st = Stat {
                    dev: 12,
                    ino: 900 + n as u64,
                    mode: 0o010600,
                    nlink: 1,
                    uid: 0,
                    gid: 0,
                    rdev: 0,
                    size: 0,
                    mtime: 0,
                };
                if let Some(h) = self.stdio.host_fd(n) {
                    // SAFETY: an all-zero stat is a valid value for the call
                    // to fill; `h` is one of this process's fds 0-2.
                    let mut s: libc::stat = unsafe { std::mem::zeroed() };
                    // SAFETY: `s` is a valid, writable struct stat.
                    if unsafe { libc::fstat(h, &mut s) } == 0 {
                        st.mode = s.st_mode;
                        st.rdev = s.st_rdev;
                        st.size = if s.st_mode & libc::S_IFMT == libc::S_IFREG {
                            s.st_size as u64
                        } else {
                            0
                        };
                    }
                }
                Ok(st)
            }
        }
    }

    fn stat_ino(&self, ino: u64) -> Stat {
        let n = self.fs.inode(ino);
        let rdev = match n.kind {
            Kind::CharDev(d) => d as u64,
            _ => 0,
        };
        Stat {
            dev: 0x801,
            ino,
            mode: n.mode,
            nlink: if n.mode & S_IFDIR == S_IFDIR { 2 } else { 1 },
            uid: n.uid,
            gid: n.gid,
            rdev,
            size: n.size,
            mtime: n.mtime,
        }
    }

    fn stat_path(&mut self, dirfd: i64, path: u64, flags: u64) -> Result<Stat, i64> {
        let p = if path == 0 {
            Vec::new()
        } else {
            self.user_path(path)?
        };
        if p.is_empty() {
            if flags & AT_EMPTY_PATH != 0 {
                if dirfd == AT_FDCWD {
                    return Ok(self.stat_ino(self.cwd));
                }
                return self.stat_fd(dirfd);
            }
            return Err(ENOENT);
        }
        let base = self.at_dir(dirfd)?;
        let ino = self
            .fs
            .resolve(base, &p, flags & AT_SYMLINK_NOFOLLOW == 0)?;
        Ok(self.stat_ino(ino))
    }

    fn sys_fstatat(&mut self, dirfd: i64, path: u64, buf: u64, flags: u64) -> R {
        let st = self.stat_path(dirfd, path, flags)?;
        self.mm.write(buf, &st.to_stat())?;
        Ok(0)
    }

    fn sys_statx(&mut self, dirfd: i64, path: u64, flags: u64, buf: u64) -> R {
        let st = self.stat_path(dirfd, path, flags)?;
        self.mm.write(buf, &st.to_statx())?;
        Ok(0)
    }

    fn sys_lseek(&mut self, fd: i64, off: i64, whence: u32) -> R {
        let file = self.fds.get(fd)?.file.clone();
        let mut f = file.borrow_mut();
        let FileKind::Inode(ino) = f.kind else {
            return Err(ESPIPE);
        };
        let size = self.fs.inode(ino).size as i64;
        let new = match whence {
            0 => off,
            1 => (f.pos as i64).checked_add(off).ok_or(EINVAL)?,
            2 => size.checked_add(off).ok_or(EINVAL)?,
            _ => return Err(EINVAL),
        };
        if new < 0 {
            return Err(EINVAL);
        }
        f.pos = new as u64;
        Ok(new)
    }

    /// getdents/getdents64: as many whole records as fit in `len` bytes,
    /// from the directory's position on; EINVAL if not even one fits.
    fn sys_getdents(&mut self, fd: i64, buf: u64, len: usize, layout: Dirent) -> R {
        let file = self.fds.get(fd)?.file.clone();
        let mut f = file.borrow_mut();
        let FileKind::Inode(ino) = f.kind else {
            return Err(ENOTDIR);
        };
        if !self.is_dir(ino) {
            return Err(ENOTDIR);
        }
        let entries = self.fs.entries(ino);
        let mut out = Vec::new();
        let mut pos = f.pos as usize;
        while pos < entries.len() {
            let (name, child) = &entries[pos];
            let dtype = dirent_type(self.fs.inode(*child).mode);
            let rec = layout.record(*child, (pos + 1) as u64, dtype, name);
            if out.len() + rec.len() > len.min(1 << 20) {
                break;
            }
            out.extend_from_slice(&rec);
            pos += 1;
        }
        if out.is_empty() && pos < entries.len() {
            return Err(EINVAL);
        }
        self.mm.write(buf, &out)?;
        f.pos = pos as u64;
        Ok(out.len() as i64)
    }

    fn sys_getcwd(&mut self, buf: u64, size: usize) -> R {
        let mut p = self.fs.path_of(self.cwd);
        p.push(0);
        if p.len() > size {
            return Err(ERANGE);
        }
        self.mm.write(buf, &p)?;
        Ok(p.len() as i64)
    }

    fn sys_chdir(&mut self, path: u64) -> R {
        let p = self.user_path(path)?;
        let ino = self.fs.resolve(self.cwd, &p, true)?;
        if !self.is_dir(ino) {
            return Err(ENOTDIR);
        }
        self.cwd = ino;
        Ok(0)
    }

    fn sys_readlinkat(&mut self, dirfd: i64, path: u64, buf: u64, size: usize) -> R {
        let p = self.user_path(path)?;
        let target = if p == b"/proc/self/exe" {
            self.exe.clone()
        } else {
            let base = self.at_dir(dirfd)?;
            let ino = self.fs.resolve(base, &p, false)?;
            match &self.fs.inode(ino).kind {
                Kind::Symlink(t) => t.clone(),
                _ => return Err(EINVAL),
            }
        };
        let n = target.len().min(size);
        self.mm.write(buf, &target[..n])?;
        Ok(n as i64)
    }

    fn sys_faccessat(&mut self, dirfd: i64, path: u64, mode: u32) -> R {
        let p = self.user_path(path)?;
        let base = self.at_dir(dirfd)?;
        let ino = self.fs.resolve(base, &p, true)?;
        let n = self.fs.inode(ino);
        if mode & 2 != 0 && !matches!(n.kind, Kind::CharDev(_)) {
            return Err(EROFS);
        }
        if mode & 1 != 0 && n.mode & 0o111 == 0 {
            return Err(EACCES);
        }
        Ok(0)
    }

    /// Report whether the inode is a character device (for tests).
    pub fn is_chardev(&self, ino: u64) -> bool {
        self.fs.inode(ino).mode & 0o170000 == S_IFCHR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_dirent_ends_with_its_type() {
        let r = Dirent::Legacy.record(7, 1, libc::DT_DIR, b"abcdef");
        // 18 + 6 + NUL + type = 26 -> 32.
        assert_eq!(r.len(), 32);
        assert_eq!(u64::from_le_bytes(r[..8].try_into().unwrap()), 7);
        assert_eq!(u16::from_le_bytes(r[16..18].try_into().unwrap()), 32);
        assert_eq!(&r[18..25], b"abcdef\0");
        assert_eq!(r[31], libc::DT_DIR);
        // A name that leaves no padding: 18 + 4 + 2 = 24.
        let r = Dirent::Legacy.record(7, 1, libc::DT_REG, b"abcd");
        assert_eq!((r.len(), r[22], r[23]), (24, 0, libc::DT_REG));
    }

    #[test]
    fn dirent64_has_its_type_before_the_name() {
        let r = Dirent::D64.record(7, 1, libc::DT_LNK, b"abcd");
        assert_eq!(r.len(), 24);
        assert_eq!(r[18], libc::DT_LNK);
        assert_eq!(&r[19..24], b"abcd\0");
    }
}
