//! The stat family (stat, lstat, fstat, newfstatat, statx, statfs) and
//! directory listings (getdents, getdents64).
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::errno::*;
use super::table::Handler;
use super::{int, AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, R};
use crate::files::{FileKind, MemFile, OpenFile};
use crate::fs::{proc_item, DirEntry, Fs, Inode, ProcItem, Ts};
use crate::stdio::SharedStdio;
use crate::Vproc;

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
    blocks: u64,
    times: [Ts; 3],
}

/// The major and minor numbers of a glibc-encoded device number.
fn split_dev(d: u64) -> (u32, u32) {
    let major = ((d >> 8) & 0xfff) | ((d >> 32) & !0xfff);
    let minor = (d & 0xff) | ((d >> 12) & !0xff);
    (major as u32, minor as u32)
}

impl Stat {
    fn of(n: &Inode) -> Stat {
        Stat {
            dev: n.dev,
            ino: n.st_ino,
            mode: n.mode,
            nlink: n.nlink,
            uid: n.uid,
            gid: n.gid,
            rdev: n.rdev,
            size: n.size,
            blocks: n.blocks,
            times: n.times,
        }
    }

    /// An empty FIFO owned by root with inode `ino`: a pipe, or fds 0-2
    /// until their host fd says more.
    fn fifo(ino: u64) -> Stat {
        Stat {
            dev: 12,
            ino,
            mode: 0o010600,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            size: 0,
            blocks: 0,
            times: [Ts::default(); 3],
        }
    }

    /// What fstat reports for `f`, open as fd `fd`.
    fn of_file(fs: &Fs, stdio: &SharedStdio, fd: i64, f: &OpenFile) -> Stat {
        let n = match &f.kind {
            FileKind::Inode(h) | FileKind::ProcMem(MemFile { node: h, .. }) => {
                return Stat::of(&fs.inode(*h))
            }
            FileKind::PipeRead(_) | FileKind::PipeWrite(_) => return Stat::fifo(1000 + fd as u64),
            // Anonymous inodes (eventfd, epoll): no file type bits.
            FileKind::EventFd(_)
            | FileKind::Epoll(_)
            | FileKind::TimerFd(_)
            | FileKind::SignalFd(_)
            | FileKind::PidFd(_)
            | FileKind::Inotify(_) => {
                let mut st = Stat::fifo(1000 + fd as u64);
                st.mode = 0o600;
                return st;
            }
            FileKind::Socket(_) => {
                let mut st = Stat::fifo(1000 + fd as u64);
                st.mode = 0o140777;
                return st;
            }
            FileKind::Pty(e) => {
                let rdev = Vproc::pty_rdev(e);
                let index = (!e.master).then(|| e.pty.borrow().index);
                if let Some(h) = fs.pty_node(index) {
                    return Stat::of(&fs.inode(h));
                }
                let mut st = Stat::fifo(800 + fd as u64);
                (st.mode, st.rdev) = (0o020666, rdev as u64);
                return st;
            }
            FileKind::MsgQueue(q) => {
                let q = q.borrow();
                let mut st = Stat::fifo(700 + fd as u64);
                (st.mode, st.size) = (0o100000 | q.mode, q.bytes() as u64);
                return st;
            }
            FileKind::Stdin => 0,
            FileKind::Stdout => 1,
            FileKind::Stderr => 2,
        };
        let mut st = Stat::fifo(900 + n as u64);
        if let Some(h) = stdio.host_fd(n) {
            // SAFETY: an all-zero stat is a valid value for the call to
            // fill; `h` is one of this process's fds 0-2.
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
        st
    }

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
        put(64, &self.blocks.to_le_bytes());
        for (i, t) in self.times.iter().enumerate() {
            put(72 + 16 * i, &t.sec.to_le_bytes());
            put(80 + 16 * i, &(t.nsec as u64).to_le_bytes());
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
        put(48, &self.blocks.to_le_bytes());
        // atime, btime (= ctime), ctime, mtime.
        let [a, m, c] = self.times;
        for (off, t) in [(64, a), (80, c), (96, c), (112, m)] {
            put(off, &t.sec.to_le_bytes());
            put(off + 8, &t.nsec.to_le_bytes());
        }
        let (rmaj, rmin) = split_dev(self.rdev);
        let (dmaj, dmin) = split_dev(self.dev);
        put(128, &rmaj.to_le_bytes());
        put(132, &rmin.to_le_bytes());
        put(136, &dmaj.to_le_bytes());
        put(140, &dmin.to_le_bytes());
        b
    }
}

/// The record layout of a getdents call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dirent {
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
    pub(crate) fn record(self, ino: u64, off: u64, dtype: u8, name: &[u8]) -> Vec<u8> {
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

impl Vproc {
    /// The stat and directory calls: `(number, handler)` for the
    /// syscall table ([`super::table`]).
    pub(super) const STAT_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_stat, |v, _nr, a| {
            v.sys_fstatat(AT_FDCWD, a[0], a[1], 0)
        }),
        (libc::SYS_fstat, |v, _nr, a| {
            v.sys_fstatat(int(a[0]), 0, a[1], AT_EMPTY_PATH)
        }),
        (libc::SYS_lstat, |v, _nr, a| {
            v.sys_fstatat(AT_FDCWD, a[0], a[1], AT_SYMLINK_NOFOLLOW)
        }),
        (libc::SYS_newfstatat, |v, _nr, a| {
            v.sys_fstatat(int(a[0]), a[1], a[2], a[3])
        }),
        (libc::SYS_statx, |v, _nr, a| {
            v.sys_statx(int(a[0]), a[1], a[2], a[4])
        }),
        (libc::SYS_statfs, |v, _nr, a| {
            // The path must exist (ENOENT, ENOTDIR... as for stat).
            match v
                .user_path(a[0])
                .and_then(|p| v.lookup_at(AT_FDCWD, &p, true))
            {
                Ok(_) => v.sys_statfs(a[1]),
                Err(e) => Err(e),
            }
        }),
        (libc::SYS_fstatfs, |v, _nr, a| match v.fds.get(int(a[0])) {
            Ok(_) => v.sys_statfs(a[1]),
            Err(e) => Err(e.into()),
        }),
        (libc::SYS_getdents, |v, _nr, a| {
            v.sys_getdents(int(a[0]), a[1], a[2] as usize, Dirent::Legacy)
        }),
        (libc::SYS_getdents64, |v, _nr, a| {
            v.sys_getdents(int(a[0]), a[1], a[2] as usize, Dirent::D64)
        }),
    ];

    /// statfs/fstatfs: a tmpfs-like tree whose size is the overlay's
    /// memory budget and whose free space is what it has left (`df`).
    fn sys_statfs(&mut self, buf: u64) -> R {
        let (budget, used) = self.fs.usage();
        let blocks = budget / 4096;
        let free = budget.saturating_sub(used) / 4096;
        let mut b = [0u8; 120];
        b[..8].copy_from_slice(&0x01021994u64.to_le_bytes());
        b[8..16].copy_from_slice(&4096u64.to_le_bytes());
        // f_blocks, f_bfree, f_bavail; f_files and f_ffree (nodes are not
        // counted: a tmpfs-like million).
        b[16..24].copy_from_slice(&blocks.to_le_bytes());
        b[24..32].copy_from_slice(&free.to_le_bytes());
        b[32..40].copy_from_slice(&free.to_le_bytes());
        b[40..48].copy_from_slice(&1_048_576u64.to_le_bytes());
        b[48..56].copy_from_slice(&1_048_576u64.to_le_bytes());
        // f_namelen, f_frsize.
        b[64..72].copy_from_slice(&255u64.to_le_bytes());
        b[72..80].copy_from_slice(&4096u64.to_le_bytes());
        self.mm.write(buf, &b)?;
        Ok(0)
    }

    fn stat_fd(&self, fd: i64) -> Result<Stat, i64> {
        let file = self.fds.get(fd)?.file.clone();
        let f = file.borrow();
        Ok(Stat::of_file(&self.fs, &self.stdio, fd, &f))
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
                    return Ok(Stat::of(&self.fs.inode(self.cwd)));
                }
                return self.stat_fd(dirfd);
            }
            return Err(ENOENT);
        }
        let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
        let h = self.lookup_at(dirfd, &p, follow)?;
        // `/proc/self/fd/N` (and `/dev/fd/N`) of a pipe or the console
        // leads to the open file itself: stat says what it is (a fifo for
        // `diff <(a) <(b)`), as Linux's magic links do.
        if follow {
            if let Some((_, crate::fs::path::ProcItem::Fd(n))) = crate::fs::path::proc_item(h) {
                return self.stat_fd(n as i64);
            }
        }
        Ok(Stat::of(&self.fs.inode(h)))
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

    /// The entries of directory `h` after `.` and `..` (None: deleted,
    /// skipped but counted so positions stay put).
    fn dir_listing(&self, h: u64) -> Result<Vec<Option<DirEntry>>, i64> {
        if proc_item(h).is_some() || h == self.fs.proc_dir() {
            return Ok(self.proc_list(h).into_iter().map(Some).collect());
        }
        self.fs.list(h)
    }

    /// getdents/getdents64: as many whole records as fit in `len` bytes,
    /// from the directory's position on; EINVAL if not even one fits.
    fn sys_getdents(&mut self, fd: i64, buf: u64, len: usize, layout: Dirent) -> R {
        let file = self.fds.get(fd)?.file.clone();
        let h = match file.borrow().kind {
            FileKind::Inode(h) => h,
            _ => return Err(ENOTDIR),
        };
        if !self.is_dir(h) {
            return Err(ENOTDIR);
        }
        let listing = self.dir_listing(h)?;
        let mut f = file.borrow_mut();
        let (out, next) = dirent_records(&self.fs, h, listing, f.pos, len, layout)?;
        self.mm.write(buf, &out)?;
        f.pos = next;
        Ok(out.len() as i64)
    }
}

/// The records getdents (`layout`) returns for directory `h` with
/// entries `listing` (after `.` and `..`; None: deleted, skipped but
/// counted so positions stay put) from position `pos` on: as many whole
/// records as fit in `len` bytes, and the position after them; EINVAL if
/// not even one fits (also the exitless fast path's).
pub(crate) fn dirent_records(
    fs: &Fs,
    h: u64,
    listing: Vec<Option<DirEntry>>,
    pos: u64,
    len: usize,
    layout: Dirent,
) -> Result<(Vec<u8>, u64), i64> {
    let dot = |name: &[u8], n: u64| {
        let i = fs.inode(n);
        Some(DirEntry {
            name: name.to_vec(),
            ino: i.st_ino,
            dtype: libc::DT_DIR,
        })
    };
    let mut entries = vec![dot(b".", h), dot(b"..", fs.parent_handle(h))];
    entries.extend(listing);
    // Each entry's position: its index, except in `/proc/PID/fd` and
    // `fdinfo`, where it is the fd number + 2 as on Linux, so that fds
    // closed while a program lists them (CPython's close_fds) do not
    // make it skip the ones after.
    let by_fd = matches!(
        proc_item(h),
        Some((_, ProcItem::FdDir | ProcItem::FdInfoDir))
    );
    let key = |i: usize, e: &Option<DirEntry>| -> u64 {
        match e {
            Some(e) if by_fd && i >= 2 => std::str::from_utf8(&e.name)
                .ok()
                .and_then(|n| n.parse::<u64>().ok())
                .map_or(i as u64, |n| n + 2),
            _ => i as u64,
        }
    };
    let mut out = Vec::new();
    let mut next = pos;
    let mut left = false;
    for (i, e) in entries.iter().enumerate() {
        let k = key(i, e);
        if k < pos {
            continue;
        }
        if let Some(e) = e {
            let rec = layout.record(e.ino, k + 1, e.dtype, &e.name);
            if out.len() + rec.len() > len.min(1 << 20) {
                left = true;
                break;
            }
            out.extend_from_slice(&rec);
        }
        next = k + 1;
    }
    if out.is_empty() && left {
        return Err(EINVAL);
    }
    Ok((out, next))
}

/// The `struct stat` fstat fills for `f`, open as fd `fd` (also the
/// exitless fast path's).
pub(crate) fn fstat_bytes(fs: &Fs, stdio: &SharedStdio, fd: i64, f: &OpenFile) -> [u8; 144] {
    Stat::of_file(fs, stdio, fd, f).to_stat()
}

/// The `struct stat` of inode `n`.
pub(crate) fn stat_bytes(n: &Inode) -> [u8; 144] {
    Stat::of(n).to_stat()
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

    #[test]
    fn device_numbers_split_as_glibc_encodes_them() {
        assert_eq!(split_dev(0x801), (8, 1));
        assert_eq!(split_dev((259 << 8) | 3), (259, 3));
        let big = ((0x1234u64 & 0xfffff000) << 32) | ((0x1234 & 0xfff) << 8) | 0x45;
        assert_eq!(split_dev(big), (0x1234, 0x45));
    }
}
