//! Calls that change the tree: mkdir, unlink/rmdir, rename, symlink,
//! link, truncate, times, mode and owner. Changes land in the in-memory
//! overlay (or on the host in a `--bind ...:rw` directory), see
//! [`crate::fs`].
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::errno::*;
use super::table::Handler;
use super::{int, AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, R};
use crate::files::{self, FileKind};
use crate::fs::{Kind, Ts};
use crate::Vproc;

/// unlinkat: remove a directory.
const AT_REMOVEDIR: u64 = 0x200;
/// linkat: follow a final symlink.
const AT_SYMLINK_FOLLOW: u64 = 0x400;
/// fchmodat2 (Linux 6.6; newer than libc's numbers).
const SYS_FCHMODAT2: i64 = 452;
/// utimensat: set to the current time.
const UTIME_NOW: i64 = (1 << 30) - 1;
/// utimensat: leave alone.
const UTIME_OMIT: i64 = (1 << 30) - 2;

impl Vproc {
    /// The calls that change the tree: `(number, handler)` for the
    /// syscall table ([`super::table`]).
    pub(super) const FSMOD_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_memfd_create, |v, _nr, a| {
            v.sys_memfd_create(a[0], a[1])
        }),
        (libc::SYS_mkdir, |v, _nr, a| {
            v.sys_mkdirat(AT_FDCWD, a[0], a[1] as u32)
        }),
        (libc::SYS_mkdirat, |v, _nr, a| {
            v.sys_mkdirat(int(a[0]), a[1], a[2] as u32)
        }),
        (libc::SYS_rmdir, |v, _nr, a| {
            v.sys_unlinkat(AT_FDCWD, a[0], AT_REMOVEDIR)
        }),
        (libc::SYS_unlink, |v, _nr, a| {
            v.sys_unlinkat(AT_FDCWD, a[0], 0)
        }),
        (libc::SYS_unlinkat, |v, _nr, a| {
            v.sys_unlinkat(int(a[0]), a[1], a[2])
        }),
        (libc::SYS_rename, |v, _nr, a| {
            v.sys_renameat2(AT_FDCWD, a[0], AT_FDCWD, a[1], 0)
        }),
        (libc::SYS_renameat, |v, _nr, a| {
            v.sys_renameat2(int(a[0]), a[1], int(a[2]), a[3], 0)
        }),
        (libc::SYS_renameat2, |v, _nr, a| {
            v.sys_renameat2(int(a[0]), a[1], int(a[2]), a[3], a[4] as u32)
        }),
        (libc::SYS_symlink, |v, _nr, a| {
            v.sys_symlinkat(a[0], AT_FDCWD, a[1])
        }),
        (libc::SYS_symlinkat, |v, _nr, a| {
            v.sys_symlinkat(a[0], int(a[1]), a[2])
        }),
        (libc::SYS_link, |v, _nr, a| {
            v.sys_linkat(AT_FDCWD, a[0], AT_FDCWD, a[1], 0)
        }),
        (libc::SYS_linkat, |v, _nr, a| {
            v.sys_linkat(int(a[0]), a[1], int(a[2]), a[3], a[4])
        }),
        (libc::SYS_truncate, |v, _nr, a| {
            v.sys_truncate(a[0], a[1] as i64)
        }),
        (libc::SYS_ftruncate, |v, _nr, a| {
            v.sys_ftruncate(int(a[0]), a[1] as i64)
        }),
        (libc::SYS_utimensat, |v, _nr, a| {
            v.sys_utimensat(int(a[0]), a[1], a[2], a[3])
        }),
        (libc::SYS_utimes, |v, _nr, a| {
            v.sys_utimes(AT_FDCWD, a[0], a[1])
        }),
        (libc::SYS_futimesat, |v, _nr, a| {
            v.sys_utimes(a[0] as i32 as i64, a[1], a[2])
        }),
        (libc::SYS_utime, |v, _nr, a| v.sys_utime(a[0], a[1])),
        (libc::SYS_chmod, |v, _nr, a| {
            v.sys_attr(AT_FDCWD, a[0], 0, Some(a[1] as u32), None)
        }),
        (libc::SYS_fchmod, |v, _nr, a| {
            v.sys_attr(int(a[0]), 0, AT_EMPTY_PATH, Some(a[1] as u32), None)
        }),
        (libc::SYS_fchmodat, |v, _nr, a| {
            v.sys_attr(int(a[0]), a[1], 0, Some(a[2] as u32), None)
        }),
        (SYS_FCHMODAT2, |v, _nr, a| {
            v.sys_fchmodat2(int(a[0]), a[1], a[2] as u32, a[3])
        }),
        (libc::SYS_chown, Vproc::call_chown),
        (libc::SYS_lchown, Vproc::call_chown),
        (libc::SYS_fchown, |v, _nr, a| {
            v.sys_attr(
                int(a[0]),
                0,
                AT_EMPTY_PATH,
                None,
                Some((a[1] as u32, a[2] as u32)),
            )
        }),
        (libc::SYS_fchownat, |v, _nr, a| {
            v.sys_attr(
                int(a[0]),
                a[1],
                a[4],
                None,
                Some((a[2] as u32, a[3] as u32)),
            )
        }),
        (libc::SYS_mknod, |v, _nr, a| {
            v.sys_mknodat(AT_FDCWD, a[0], a[1] as u32)
        }),
        (libc::SYS_mknodat, |v, _nr, a| {
            v.sys_mknodat(int(a[0]), a[1], a[2] as u32)
        }),
        (libc::SYS_fadvise64, Vproc::call_fadvise64),
        (libc::SYS_readahead, Vproc::call_fadvise64),
        (libc::SYS_fallocate, |v, _nr, a| {
            v.sys_fallocate(int(a[0]), a[1] as u32, a[2] as i64, a[3] as i64)
        }),
        (libc::SYS_flock, |v, _nr, a| {
            v.sys_flock(int(a[0]), a[1] as u32)
        }),
        (libc::SYS_fsync, Vproc::call_fsync),
        (libc::SYS_fdatasync, Vproc::call_fsync),
        (libc::SYS_syncfs, Vproc::call_fsync),
        (libc::SYS_sync, |_v, _nr, _a| Ok(0)),
    ];

    /// `chown`, `lchown`.
    fn call_chown(v: &mut Vproc, nr: i64, a: [u64; 6]) -> R {
        let f = if nr == libc::SYS_lchown {
            AT_SYMLINK_NOFOLLOW
        } else {
            0
        };
        v.sys_attr(AT_FDCWD, a[0], f, None, Some((a[1] as u32, a[2] as u32)))
    }

    /// `fadvise64`, `readahead`.
    fn call_fadvise64(v: &mut Vproc, _nr: i64, a: [u64; 6]) -> R {
        v.fd_handle(int(a[0]), ESPIPE).map(|_| 0)
    }

    /// `fsync`, `fdatasync`, `syncfs`.
    fn call_fsync(v: &mut Vproc, _nr: i64, a: [u64; 6]) -> R {
        v.fds.get(int(a[0])).map(|_| 0).map_err(Into::into)
    }

    /// fallocate: mode 0 (or KEEP_SIZE) makes sure the range exists.
    fn sys_fallocate(&mut self, fd: i64, mode: u32, off: i64, len: i64) -> R {
        if off < 0 || len <= 0 {
            return Err(EINVAL);
        }
        if mode & !1 != 0 {
            return Err(EOPNOTSUPP);
        }
        let file = self.fds.get(fd)?.file.clone();
        let f = file.borrow();
        let FileKind::Inode(h) = f.kind else {
            return Err(ESPIPE);
        };
        if f.flags & files::O_ACCMODE == 0 {
            return Err(EBADF);
        }
        drop(f);
        if !matches!(self.fs.inode(h).kind, Kind::File { .. }) {
            return Err(ENODEV);
        }
        off.checked_add(len).ok_or(EFBIG)?;
        // FALLOC_FL_KEEP_SIZE (mode 1) changes nothing: the size stays and
        // the tree allocates on write.
        if mode == 0 {
            self.fs.allocate(h, off as u64, len as u64)?;
        }
        Ok(0)
    }

    /// mknod/mknodat: a regular file or a FIFO (see `fifo`); device and
    /// socket nodes are EPERM (the tree has no devices of a vproc's
    /// making), an unknown type EINVAL. An existing name is EEXIST first.
    fn sys_mknodat(&mut self, dirfd: i64, path: u64, mode: u32) -> R {
        let p = self.user_path(path)?;
        let (dir, name) = self.parent_at(dirfd, &p)?;
        let perm = mode & 0o7777 & !self.umask;
        let ty = mode & libc::S_IFMT;
        if !matches!(
            ty,
            0 | libc::S_IFREG | libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK | libc::S_IFSOCK
        ) {
            return Err(EINVAL);
        }
        if self.lookup_at(dirfd, &p, false).is_ok() {
            return Err(EEXIST);
        }
        match ty {
            0 | libc::S_IFREG => {
                self.fs.create(dir, &name, perm, true)?;
            }
            libc::S_IFIFO => {
                self.fs.mkfifo(dir, &name, perm)?;
            }
            _ => return Err(EPERM),
        }
        Ok(0)
    }

    fn sys_mkdirat(&mut self, dirfd: i64, path: u64, mode: u32) -> R {
        let p = self.user_path(path)?;
        let (dir, name) = self.parent_at(dirfd, &p)?;
        let mode = mode & 0o7777 & !self.umask;
        self.fs.mkdir(dir, &name, mode)?;
        Ok(0)
    }

    fn sys_unlinkat(&mut self, dirfd: i64, path: u64, flags: u64) -> R {
        if flags & !AT_REMOVEDIR != 0 {
            return Err(EINVAL);
        }
        let p = self.user_path(path)?;
        let (dir, name) = self.parent_at(dirfd, &p)?;
        let rmdir = flags & AT_REMOVEDIR != 0;
        if !rmdir && p.ends_with(b"/") {
            // unlink("dir/"): a directory (EISDIR) or not one (ENOTDIR).
            let h = self.fs.walk(self, dir, &name, false)?;
            return Err(if self.is_dir(h) { EISDIR } else { ENOTDIR });
        }
        self.fs.unlink(dir, &name, rmdir)?;
        Ok(0)
    }

    fn sys_renameat2(&mut self, od: i64, op: u64, nd: i64, np: u64, flags: u32) -> R {
        let (p1, p2) = (self.user_path(op)?, self.user_path(np)?);
        let (d1, n1) = self.parent_at(od, &p1)?;
        let (d2, n2) = self.parent_at(nd, &p2)?;
        self.fs.rename(d1, &n1, d2, &n2, flags)?;
        Ok(0)
    }

    fn sys_symlinkat(&mut self, target: u64, dirfd: i64, path: u64) -> R {
        let t = self.user_path(target)?;
        let p = self.user_path(path)?;
        let (dir, name) = self.parent_at(dirfd, &p)?;
        if p.ends_with(b"/") {
            return Err(ENOENT);
        }
        self.fs.symlink(dir, &name, &t)?;
        Ok(0)
    }

    fn sys_linkat(&mut self, od: i64, op: u64, nd: i64, np: u64, flags: u64) -> R {
        if flags & !(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH) != 0 {
            return Err(EINVAL);
        }
        let (p1, p2) = (self.user_path(op)?, self.user_path(np)?);
        let h = if p1.is_empty() && flags & AT_EMPTY_PATH != 0 {
            self.fd_handle(od, ENOENT)?
        } else {
            self.lookup_at(od, &p1, flags & AT_SYMLINK_FOLLOW != 0)?
        };
        let (dir, name) = self.parent_at(nd, &p2)?;
        self.fs.link(h, dir, &name)?;
        Ok(0)
    }

    fn sys_truncate(&mut self, path: u64, len: i64) -> R {
        if len < 0 {
            return Err(EINVAL);
        }
        let p = self.user_path(path)?;
        let h = self.lookup_at(AT_FDCWD, &p, true)?;
        match self.fs.inode(h).kind {
            Kind::Dir(_) => Err(EISDIR),
            Kind::File { .. } => {
                self.fs.truncate(h, len as u64)?;
                Ok(0)
            }
            _ => Err(EINVAL),
        }
    }

    fn sys_ftruncate(&mut self, fd: i64, len: i64) -> R {
        if len < 0 {
            return Err(EINVAL);
        }
        let file = self.fds.get(fd)?.file.clone();
        let f = file.borrow();
        let FileKind::Inode(h) = f.kind else {
            return Err(EINVAL);
        };
        if f.flags & files::O_ACCMODE == 0 || f.flags & files::O_PATH != 0 {
            return Err(if f.flags & files::O_PATH != 0 {
                EBADF
            } else {
                EINVAL
            });
        }
        drop(f);
        if !matches!(self.fs.inode(h).kind, Kind::File { .. }) {
            return Err(EINVAL);
        }
        self.fs.truncate(h, len as u64)?;
        Ok(0)
    }

    /// The node a path-or-fd call names (`path` 0 or empty with
    /// AT_EMPTY_PATH: `dirfd` itself).
    fn node_at(&mut self, dirfd: i64, path: u64, flags: u64) -> Result<u64, i64> {
        let p = if path == 0 {
            Vec::new()
        } else {
            self.user_path(path)?
        };
        if p.is_empty() {
            if path != 0 && flags & AT_EMPTY_PATH == 0 {
                return Err(ENOENT);
            }
            if dirfd == AT_FDCWD {
                return Ok(self.cwd);
            }
            return self.fd_handle(dirfd, EBADF);
        }
        self.lookup_at(dirfd, &p, flags & AT_SYMLINK_NOFOLLOW == 0)
    }

    fn read_ts(&mut self, at: u64) -> Result<Option<Ts>, i64> {
        let sec = self.mm.read_u64(at)? as i64;
        let nsec = self.mm.read_u64(at + 8)? as i64;
        match nsec {
            UTIME_NOW => Ok(Some(Ts::now())),
            UTIME_OMIT => Ok(None),
            0..=999_999_999 => Ok(Some(Ts {
                sec,
                nsec: nsec as u32,
            })),
            _ => Err(EINVAL),
        }
    }

    /// fchmodat2(dirfd, path, mode, flags): fchmodat with flags
    /// (AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH). A symlink's own mode cannot
    /// change: EOPNOTSUPP, as on Linux.
    fn sys_fchmodat2(&mut self, dirfd: i64, path: u64, mode: u32, flags: u64) -> R {
        if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
            return Err(EINVAL);
        }
        let h = self.node_at(dirfd, path, flags)?;
        if self.fs.inode(h).mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(EOPNOTSUPP);
        }
        self.fs.set_attr(h, Some(mode), None)?;
        Ok(0)
    }

    fn sys_utimensat(&mut self, dirfd: i64, path: u64, times: u64, flags: u64) -> R {
        if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
            return Err(EINVAL);
        }
        let (a, m) = if times == 0 {
            let now = Ts::now();
            (Some(now), Some(now))
        } else {
            (self.read_ts(times)?, self.read_ts(times + 16)?)
        };
        let h = self.node_at(dirfd, path, flags)?;
        if a.is_none() && m.is_none() {
            return Ok(0);
        }
        self.fs.set_times(h, a, m)?;
        Ok(0)
    }

    /// utime(path, times): a `struct utimbuf` of whole seconds.
    fn sys_utime(&mut self, path: u64, times: u64) -> R {
        let (a, m) = if times == 0 {
            let now = Ts::now();
            (now, now)
        } else {
            let s = |x: u64| Ts {
                sec: x as i64,
                nsec: 0,
            };
            (s(self.mm.read_u64(times)?), s(self.mm.read_u64(times + 8)?))
        };
        let h = self.node_at(AT_FDCWD, path, 0)?;
        self.fs.set_times(h, Some(a), Some(m))?;
        Ok(0)
    }

    /// utimes(path, tv) and futimesat(dirfd, path, tv).
    fn sys_utimes(&mut self, dirfd: i64, path: u64, times: u64) -> R {
        let (a, m) = if times == 0 {
            let now = Ts::now();
            (now, now)
        } else {
            let mut tv = [Ts::default(); 2];
            for (i, t) in tv.iter_mut().enumerate() {
                let sec = self.mm.read_u64(times + 16 * i as u64)? as i64;
                let usec = self.mm.read_u64(times + 16 * i as u64 + 8)? as i64;
                if !(0..1_000_000).contains(&usec) {
                    return Err(EINVAL);
                }
                *t = Ts {
                    sec,
                    nsec: usec as u32 * 1000,
                };
            }
            (tv[0], tv[1])
        };
        let h = self.node_at(dirfd, path, 0)?;
        self.fs.set_times(h, Some(a), Some(m))?;
        Ok(0)
    }

    fn sys_attr(
        &mut self,
        dirfd: i64,
        path: u64,
        flags: u64,
        mode: Option<u32>,
        owner: Option<(u32, u32)>,
    ) -> R {
        let h = self.node_at(dirfd, path, flags)?;
        self.fs.set_attr(h, mode, owner)?;
        Ok(0)
    }
}

/// MFD_CLOEXEC.
const MFD_CLOEXEC: u64 = 1;
/// MFD_ALLOW_SEALING.
const MFD_ALLOW_SEALING: u64 = 2;
/// MFD_HUGETLB (and its size bits): accepted; the file is memory either way.
const MFD_HUGETLB: u64 = 4;
/// MFD_NOEXEC_SEAL and MFD_EXEC (Linux 6.3).
const MFD_EXEC_BITS: u64 = 0x18;

impl Vproc {
    /// memfd_create(name, flags): a memory file in no directory, shared
    /// with whoever gets the fd (fork, SCM_RIGHTS), mappable MAP_SHARED.
    fn sys_memfd_create(&mut self, name: u64, flags: u64) -> R {
        let hugetlb_sizes = 0x3f << 26;
        if flags & !(MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_EXEC_BITS | hugetlb_sizes)
            != 0
        {
            return Err(EINVAL);
        }
        let n = match self.mm.read_cstr(name, 4096) {
            Ok(n) => n,
            Err(crate::mm::MmError::Invalid) => return Err(EINVAL),
            Err(_) => return Err(EFAULT),
        };
        if n.len() > 249 {
            // NAME_MAX - strlen("memfd:").
            return Err(EINVAL);
        }
        let seals = if flags & MFD_ALLOW_SEALING != 0 {
            0
        } else {
            crate::fs::F_SEAL_SEAL
        };
        let h = self.fs.memfd(&n, seals);
        let mut path = b"/memfd:".to_vec();
        path.extend_from_slice(&n);
        let file = crate::files::OpenFile::node(
            crate::fs::Backing::new(self.fs.clone(), h),
            files::O_RDWR | files::O_LARGEFILE,
            &path,
        );
        let cloexec = if flags & MFD_CLOEXEC != 0 {
            files::O_CLOEXEC
        } else {
            0
        };
        self.install_file(file, cloexec)
    }

    /// fcntl F_ADD_SEALS (`add`) and F_GET_SEALS.
    pub(super) fn sys_seals(&mut self, fd: i64, add: bool, arg: u64) -> R {
        let file = self.fds.get(fd)?.file.clone();
        let f = file.borrow();
        let FileKind::Inode(h) = f.kind else {
            return Err(EINVAL);
        };
        if !add {
            return Ok(i64::from(self.fs.seals(h)));
        }
        let known = crate::fs::F_SEAL_SEAL
            | crate::fs::F_SEAL_SHRINK
            | crate::fs::F_SEAL_GROW
            | crate::fs::F_SEAL_WRITE
            | crate::fs::F_SEAL_FUTURE_WRITE;
        let add = u32::try_from(arg).map_err(|_| EINVAL)?;
        if add & !known != 0 {
            return Err(EINVAL);
        }
        if f.flags & files::O_ACCMODE == 0 {
            // Sealing needs a writable fd.
            return Err(EPERM);
        }
        self.fs.add_seals(h, add)?;
        Ok(0)
    }
}
