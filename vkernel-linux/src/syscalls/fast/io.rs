//! The fd calls the exitless server answers: read, write, their vector
//! and positional forms, lseek, fstat, stat, lstat and newfstatat, openat
//! for reading, access and faccessat(2) (a missing file's ENOENT too),
//! getdents64 and getcwd, on files of the tree
//! (host-backed, in memory), /dev/null, /dev/zero and /dev/urandom, pipes
//! that have data (read) or room for the whole write, and the console when
//! its host side never blocks (a regular file or /dev/null:
//! `Stdio::write_never_blocks`; a terminal or a host pipe can, so those go
//! to the exit path).
//!
//! Everything runs under the process lock (`try_with_parts`), and each
//! open file and pipe is locked with a try: the locks are the exit path's,
//! so the two never interleave inside a call. A read copies out before it
//! consumes: its bytes are written to the user buffer first (present pages
//! only), and only then does a pipe drop them or a file offset move; a
//! failed copy leaves nothing changed for the exit path to redo.
//! A pipe that gains or loses bytes wakes its waiters (blocked readers
//! or writers on any vCPU, poll and select) exactly as the exit path does.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::cell::Cell;

use crate::abi::errno::{EACCES, ELOOP, ENAMETOOLONG, ENOENT, ENOTDIR};
use crate::core::prelude::Vmspace;
use crate::files::{self, FdTable, FileKind};
use crate::fs::{proc_item, Fs, Kind, ProcItem, ProcView, Source};
use crate::mm::USER_END;
use crate::syscalls::{dirent_records, fstat_bytes, seek_file, stat_bytes, Dirent};
use crate::thread::LockedParts;

use crate::kernel::fast::FastCtx;

/// Larger transfers take the exit path (bounds the time the server and
/// the process lock spend on one call).
const MAX_BYTES: u64 = 1 << 20;

/// Most iovecs (UIO_MAXIOV).
const MAX_IOV: u64 = 1024;

/// /dev/null, /dev/zero, /dev/random, /dev/urandom (major 1, as the tree
/// numbers them).
const DEV_NULL: u32 = 0x103;
const DEV_ZERO: u32 = 0x105;
const DEV_RANDOM: u32 = 0x108;
const DEV_URANDOM: u32 = 0x109;

/// `dirfd` meaning the current directory.
const AT_FDCWD: i64 = libc::AT_FDCWD as i64;

/// The fd calls, or None (the exit path).
pub(super) fn serve(c: &FastCtx, nr: i64, a: [u64; 6]) -> Option<u64> {
    let fd = a[0] as i32 as i64;
    c.process
        .try_with_parts(|p| {
            let vms = p.mm.vmspace();
            let fds = p.fds;
            match nr {
                libc::SYS_read => read(c, vms, fds, fd, &[(a[1], a[2])], None),
                libc::SYS_pread64 => read(c, vms, fds, fd, &[(a[1], a[2])], Some(offset(a[3])?)),
                libc::SYS_readv => read(c, vms, fds, fd, &iovecs(vms, a[1], a[2])?, None),
                libc::SYS_write => write(c, vms, fds, fd, &[(a[1], a[2])], Write::Plain),
                libc::SYS_pwrite64 => {
                    let at = offset(a[3])?;
                    write(c, vms, fds, fd, &[(a[1], a[2])], Write::At(at))
                }
                libc::SYS_writev => {
                    write(c, vms, fds, fd, &iovecs(vms, a[1], a[2])?, Write::Vector)
                }
                libc::SYS_lseek => {
                    let file = fds.get(fd).ok()?.file.clone();
                    let mut f = file.try_borrow()?;
                    seek_file(&c.fs, &mut f, a[1] as i64, a[2] as u32)
                        .ok()
                        .map(|v| v as u64)
                }
                libc::SYS_fstat => {
                    let st = fstat_fd(c, fds, fd)?;
                    vms.copy_to_user(a[1], &st).ok().map(|_| 0)
                }
                libc::SYS_newfstatat => newfstatat(c, &p, fd, a[1], a[2], a[3]),
                libc::SYS_stat => newfstatat(c, &p, AT_FDCWD, a[0], a[1], 0),
                libc::SYS_lstat => newfstatat(
                    c,
                    &p,
                    AT_FDCWD,
                    a[0],
                    a[1],
                    libc::AT_SYMLINK_NOFOLLOW as u64,
                ),
                libc::SYS_getcwd => getcwd(c, vms, p.cwd, a[0], a[1]),
                libc::SYS_getdents64 => getdents64(c, vms, fds, fd, a[1], a[2]),
                libc::SYS_readlink => readlink(c, &p, AT_FDCWD, a[0], a[1], a[2]),
                libc::SYS_readlinkat => readlink(c, &p, fd, a[1], a[2], a[3]),
                libc::SYS_access => faccessat(c, &p, AT_FDCWD, [a[0], a[1], 0]),
                libc::SYS_faccessat => faccessat(c, &p, fd, [a[1], a[2], 0]),
                libc::SYS_faccessat2 => faccessat(c, &p, fd, [a[1], a[2], a[3]]),
                _ => None,
            }
        })
        .flatten()
}

/// A file offset argument (negative ones are the exit path's EINVAL).
fn offset(v: u64) -> Option<u64> {
    (v as i64 >= 0).then_some(v)
}

/// The iovec array at `iov`, from present pages.
fn iovecs(vms: &Vmspace, iov: u64, cnt: u64) -> Option<Vec<(u64, u64)>> {
    if cnt > MAX_IOV {
        return None;
    }
    let mut raw = vec![0u8; 16 * cnt as usize];
    vms.copy_from_user(iov, &mut raw).ok()?;
    Some(
        raw.chunks(16)
            .map(|c| {
                (
                    u64::from_le_bytes(c[..8].try_into().expect("8")),
                    u64::from_le_bytes(c[8..].try_into().expect("8")),
                )
            })
            .collect(),
    )
}

/// The total length of user buffers `segs`, if each lies below the top of
/// user space (else the exit path's EFAULT) and all are not too large.
pub(super) fn total_len(segs: &[(u64, u64)]) -> Option<usize> {
    let mut total = 0u64;
    for &(b, l) in segs {
        if b.checked_add(l).is_none_or(|e| e > USER_END) {
            return None;
        }
        total += l;
        if total > MAX_BYTES {
            return None;
        }
    }
    Some(total as usize)
}

/// Copy `data` into the user buffers `segs`, in order (present, writable
/// pages only).
pub(super) fn scatter(vms: &Vmspace, segs: &[(u64, u64)], mut data: &[u8]) -> Option<()> {
    for &(b, l) in segs {
        if data.is_empty() {
            break;
        }
        let n = (l as usize).min(data.len());
        vms.copy_to_user(b, &data[..n]).ok()?;
        data = &data[n..];
    }
    Some(())
}

/// The bytes of the user buffers `segs` (present pages only).
pub(super) fn gather(vms: &Vmspace, segs: &[(u64, u64)], total: usize) -> Option<Vec<u8>> {
    let mut data = vec![0u8; total];
    let mut off = 0;
    for &(b, l) in segs {
        let l = l as usize;
        vms.copy_from_user(b, &mut data[off..off + l]).ok()?;
        off += l;
    }
    Some(data)
}

/// What the server may do with node `h` of the tree.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Node {
    /// A regular file that is no `/proc` file: read and written through
    /// the tree.
    File,
    /// /dev/null, /dev/zero, /dev/random or /dev/urandom: read through the
    /// tree; write and pwrite64 take everything without looking.
    MemDev,
    /// Anything else (the exit path's).
    Other,
}

fn node(fs: &Fs, h: u64) -> Node {
    if proc_item(h).is_some() {
        return Node::Other;
    }
    match fs.inode(h).kind {
        Kind::File { source } if source != Source::Proc => Node::File,
        Kind::CharDev(DEV_NULL | DEV_ZERO | DEV_RANDOM | DEV_URANDOM) => Node::MemDev,
        _ => Node::Other,
    }
}

/// read, pread64 (`at`), readv on `fd` into `segs`.
fn read(
    c: &FastCtx,
    vms: &Vmspace,
    fds: &FdTable,
    fd: i64,
    segs: &[(u64, u64)],
    at: Option<u64>,
) -> Option<u64> {
    let file = fds.get(fd).ok()?.file.clone();
    let mut f = file.try_borrow()?;
    if f.flags & files::O_PATH != 0 || f.flags & files::O_ACCMODE == files::O_WRONLY {
        return None;
    }
    let total = total_len(segs)?;
    match &f.kind {
        FileKind::PipeRead(p) if at.is_none() => {
            let p = p.clone();
            drop(f);
            pipe_read(vms, &p, segs, total)
        }
        FileKind::Socket(sk) if at.is_none() => {
            let p = super::sock::stream_rx(sk)?;
            drop(f);
            pipe_read(vms, &p, segs, total)
        }
        FileKind::Inode(h) => {
            let h = *h;
            if node(&c.fs, h) == Node::Other {
                return None;
            }
            let mut data = vec![0u8; total];
            let n = c.fs.read(h, at.unwrap_or(f.pos), &mut data).ok()?;
            scatter(vms, segs, &data[..n])?;
            if at.is_none() {
                f.pos += n as u64;
            }
            if n > 0 && f.note.is_some() {
                drop(f);
                c.fs.note_node(h, crate::fs::notify::IN_ACCESS, false);
            }
            Some(n as u64)
        }
        _ => None,
    }
}

/// Which write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    /// write.
    Plain,
    /// pwrite64 at this offset.
    At(u64),
    /// writev.
    Vector,
}

/// write, pwrite64, writev of `segs` to `fd`.
fn write(
    c: &FastCtx,
    vms: &Vmspace,
    fds: &FdTable,
    fd: i64,
    segs: &[(u64, u64)],
    how: Write,
) -> Option<u64> {
    let file = fds.get(fd).ok()?.file.clone();
    let mut f = file.try_borrow()?;
    let mode = f.flags & files::O_ACCMODE;
    if f.flags & files::O_PATH != 0 || (mode == 0 && !matches!(f.kind, FileKind::Stdin)) {
        return None;
    }
    let total = total_len(segs)?;
    let kind = match f.kind {
        FileKind::Inode(h) => node(&c.fs, h),
        _ => Node::Other,
    };
    // write and pwrite64 to a device never look at the buffer (the exit
    // path's rule); writev goes through the tree below.
    if how != Write::Vector && kind == Node::MemDev {
        return Some(total as u64);
    }
    let data = gather(vms, segs, total)?;
    match &f.kind {
        FileKind::Inode(h) => {
            let h = *h;
            if kind == Node::Other {
                return None;
            }
            let at = match how {
                Write::At(off) => Some(off),
                _ if f.flags & files::O_APPEND != 0 => None,
                _ => Some(f.pos),
            };
            let (w, end) = c.fs.write(h, at, &data).ok()?;
            if !matches!(how, Write::At(_)) {
                f.pos = end;
            }
            Some(w as u64)
        }
        FileKind::PipeWrite(p) if !matches!(how, Write::At(_)) => {
            let p = p.clone();
            drop(f);
            pipe_write(&p, &data)
        }
        FileKind::Socket(sk) if !matches!(how, Write::At(_)) => {
            let p = super::sock::stream_tx(sk)?;
            drop(f);
            pipe_write(&p, &data)
        }
        FileKind::Stdout | FileKind::Stdin | FileKind::Stderr if !matches!(how, Write::At(_)) => {
            let host = if matches!(f.kind, FileKind::Stderr) {
                2
            } else {
                1
            };
            drop(f);
            // An error (EPIPE and its SIGPIPE above all) is the exit
            // path's to report: it tries the write again.
            c.stdio
                .try_write_never_blocking(host, &data)?
                .ok()
                .map(|n| n as u64)
        }
        _ => None,
    }
}

/// A read of up to `total` bytes from pipe `p` into `segs`, when it has
/// some and nothing sent along them (an empty pipe waits or ends: the
/// exit path's; so are SCM_RIGHTS' files).
pub(super) fn pipe_read(
    vms: &Vmspace,
    p: &files::Shared<files::Pipe>,
    segs: &[(u64, u64)],
    total: usize,
) -> Option<u64> {
    let mut p = p.try_borrow()?;
    if p.buf.is_empty() || !p.attached.is_empty() {
        return None;
    }
    let n = total.min(p.buf.len());
    // The ring's two halves, as slices (no copy before the user's).
    let (a, b) = p.buf.as_slices();
    let k = a.len().min(n);
    scatter(vms, segs, &[&a[..k], &b[..n - k]].concat())?;
    p.buf.drain(..n);
    let w = p.take_waiters();
    drop(p);
    files::wake_all(w);
    Some(n as u64)
}

/// A write of `data` to a pipe with readers and room for all of it.
pub(super) fn pipe_write(p: &files::Shared<files::Pipe>, data: &[u8]) -> Option<u64> {
    let mut p = p.try_borrow()?;
    if p.readers == 0 || p.capacity.saturating_sub(p.buf.len()) < data.len() {
        return None;
    }
    p.buf.extend(data);
    let w = p.take_waiters();
    drop(p);
    files::wake_all(w);
    Some(data.len() as u64)
}

/// The `struct stat` of open fd `fd` (the console's asks the host: the
/// exit path's).
fn fstat_fd(c: &FastCtx, fds: &FdTable, fd: i64) -> Option<[u8; 144]> {
    let file = fds.get(fd).ok()?.file.clone();
    let f = file.try_borrow()?;
    match f.kind {
        FileKind::Inode(_) | FileKind::PipeRead(_) | FileKind::PipeWrite(_) => {
            Some(fstat_bytes(&c.fs, &c.stdio, fd, &f))
        }
        _ => None,
    }
}

/// newfstatat(dirfd, path, buf, flags): lookups that need no `/proc`
/// view of the vproc.
fn newfstatat(
    c: &FastCtx,
    p: &LockedParts<'_>,
    dirfd: i64,
    path: u64,
    buf: u64,
    flags: u64,
) -> Option<u64> {
    let vms = p.mm.vmspace();
    let name = if path == 0 {
        Vec::new()
    } else {
        user_cstr(vms, path)?
    };
    let st = if name.is_empty() {
        if flags & libc::AT_EMPTY_PATH as u64 == 0 {
            return None;
        }
        if dirfd == AT_FDCWD {
            stat_bytes(&c.fs.inode(p.cwd))
        } else {
            fstat_fd(c, p.fds, dirfd)?
        }
    } else {
        let follow = flags & libc::AT_SYMLINK_NOFOLLOW as u64 == 0;
        match lookup_at(c, At::new(p.fds, p.cwd, dirfd), &name, follow)? {
            Ok(h) => stat_bytes(&c.fs.inode(h)),
            Err(e) => return Some(super::answer(Err(e))),
        }
    };
    vms.copy_to_user(buf, &st).ok().map(|_| 0)
}

/// Where a path is looked up from: `dirfd` (AT_FDCWD: `cwd`) in the
/// process's `fds`.
#[derive(Clone, Copy)]
struct At<'a> {
    fds: &'a FdTable,
    cwd: u64,
    dirfd: i64,
}

impl<'a> At<'a> {
    fn new(fds: &'a FdTable, cwd: u64, dirfd: i64) -> At<'a> {
        At { fds, cwd, dirfd }
    }
}

/// The node `name` names from `at`, resolved without a `/proc` view of
/// the vproc, or the error the exit path would return too
/// ([`resolve_at`]); None where the exit path must resolve it: a `dirfd`
/// that is no directory of the tree, a lookup that asks for the vproc's
/// `/proc` (`/proc/self`, `/dev/fd`), or a `/proc` node.
fn lookup_at(c: &FastCtx, at: At<'_>, name: &[u8], follow: bool) -> Option<Result<u64, i64>> {
    match resolve_at(c, at, name, follow, None)? {
        Ok(h) => proc_item(h).is_none().then_some(Ok(h)),
        Err(e) => Some(Err(e)),
    }
}

/// The node `name` names from `at`, with a `/proc` view that knows the
/// calling thread's pid when `pid` is given (`/proc/self`) and nothing
/// else, or the lookup's error where the tree alone decided it (the view
/// was not asked): a name that does not exist, a component that is no
/// directory, too many links, too long a name. The exit path walks the
/// same tree with the same code, so it would answer the same: a program
/// probing for files (a loader's `access`, an interpreter's imports)
/// gets its ENOENT without an exit. None where a lookup asks the view
/// for more, `dirfd` is no directory of the tree, or on another error.
fn resolve_at(
    c: &FastCtx,
    at: At<'_>,
    name: &[u8],
    follow: bool,
    pid: Option<i32>,
) -> Option<Result<u64, i64>> {
    let At { fds, cwd, dirfd } = at;
    let base = if dirfd == AT_FDCWD {
        cwd
    } else {
        let file = fds.get(dirfd).ok()?.file.clone();
        let FileKind::Inode(h) = file.try_borrow()?.kind else {
            return None;
        };
        h
    };
    if !c.fs.is_dir_handle(base) {
        return None;
    }
    let view = ServerView {
        pid,
        asked: Cell::new(false),
    };
    let r = c.fs.walk(&view, base, name, follow);
    if view.asked.get() {
        return None;
    }
    match r {
        Ok(h) => Some(Ok(h)),
        Err(e) if matches!(e, ENOENT | ENOTDIR | ELOOP | ENAMETOOLONG) => Some(Err(e)),
        Err(_) => None,
    }
}

/// faccessat2(dirfd, [path, mode, flags]) (and access, faccessat) on the
/// tree, as the exit path's `sys_faccessat` answers it: the vproc is
/// root, so only execute needs a bit (or a directory); a missing file is
/// ENOENT. `/proc` nodes and `AT_EMPTY_PATH` are the exit path's.
fn faccessat(c: &FastCtx, p: &LockedParts<'_>, dirfd: i64, args: [u64; 3]) -> Option<u64> {
    let [path, mode, flags] = args;
    const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
    const AT_EACCESS: u64 = 0x200;
    // Bad mode or flags: the exit path's EINVAL.
    if mode & !7 != 0 || flags & !(AT_SYMLINK_NOFOLLOW | AT_EACCESS) != 0 {
        return None;
    }
    let name = user_cstr(p.mm.vmspace(), path)?;
    if name.is_empty() {
        return None;
    }
    let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
    let h = match lookup_at(c, At::new(p.fds, p.cwd, dirfd), &name, follow)? {
        Ok(h) => h,
        Err(e) => return Some(super::answer(Err(e))),
    };
    let n = c.fs.inode(h);
    let exec_denied = mode & 1 != 0 && n.mode & 0o111 == 0 && !matches!(n.kind, Kind::Dir(_));
    Some(super::answer(if exec_denied { Err(EACCES) } else { Ok(0) }))
}

/// getdents64(fd, buf, len) on a directory of the tree (not `/proc`):
/// the exit path's records ([`dirent_records`]), and the position moves
/// only once they are in the buffer.
fn getdents64(
    c: &FastCtx,
    vms: &Vmspace,
    fds: &FdTable,
    fd: i64,
    buf: u64,
    len: u64,
) -> Option<u64> {
    let file = fds.get(fd).ok()?.file.clone();
    let mut f = file.try_borrow()?;
    let FileKind::Inode(h) = f.kind else {
        return None;
    };
    if proc_item(h).is_some() || h == c.fs.proc_dir() || !c.fs.is_dir_handle(h) {
        return None;
    }
    let listing = c.fs.list(h).ok()?;
    let len = usize::try_from(len).ok()?;
    let (out, next) = dirent_records(&c.fs, h, listing, f.pos, len, Dirent::D64).ok()?;
    vms.copy_to_user(buf, &out).ok()?;
    f.pos = next;
    Some(out.len() as u64)
}

/// getcwd(buf, size) of a current directory that still exists outside
/// `/proc`, into a buffer large enough (the errors are the exit path's).
fn getcwd(c: &FastCtx, vms: &Vmspace, cwd: u64, buf: u64, size: u64) -> Option<u64> {
    if proc_item(cwd).is_some() || c.fs.inode(cwd).nlink == 0 {
        return None;
    }
    let mut p = c.fs.path_of(cwd);
    p.push(0);
    if p.len() > 4096 || p.len() as u64 > size {
        return None;
    }
    vms.copy_to_user(buf, &p).ok()?;
    Some(p.len() as u64)
}

/// openat(dirfd, path, flags) for reading an existing regular file or
/// directory of the tree (not `/proc`), as the exit path's `sys_openat`
/// opens one: the same open file (flags kept, path, inotify's IN_OPEN and
/// close note), installed at the lowest free fd. Creating, truncating,
/// writing, O_PATH, devices, FIFOs, symlinks and every error are the exit
/// path's.
pub(super) fn openat(
    c: &FastCtx,
    p: crate::thread::LockedPartsMut<'_>,
    dirfd: i64,
    path: u64,
    flags: u32,
) -> Option<u64> {
    let simple = files::O_CLOEXEC
        | files::O_DIRECTORY
        | files::O_NOFOLLOW
        | files::O_NONBLOCK
        | files::O_LARGEFILE
        | files::O_NOCTTY;
    if flags & files::O_ACCMODE != 0 || flags & !simple != 0 {
        return None;
    }
    let name = user_cstr(p.mm.vmspace(), path)?;
    if name.is_empty() {
        return None;
    }
    let follow = flags & files::O_NOFOLLOW == 0;
    let h = match lookup_at(c, At::new(p.fds, p.cwd, dirfd), &name, follow)? {
        Ok(h) => h,
        Err(e) => return Some(super::answer(Err(e))),
    };
    match c.fs.inode(h).kind {
        Kind::File { .. } if flags & files::O_DIRECTORY == 0 => {}
        Kind::Dir(_) => {}
        _ => return None,
    }
    let keep = (flags | files::O_LARGEFILE) & !(files::O_CLOEXEC | files::O_NOCTTY);
    let fd = i64::try_from(p.fds.lowest_free(0)?).ok()?;
    let file = files::OpenFile::node(crate::fs::Backing::new(c.fs.clone(), h), keep, &name);
    file.borrow_mut().note = c.fs.open_note(h, false);
    let cloexec = flags & files::O_CLOEXEC != 0;
    p.fds.install_at(files::Fd { file, cloexec }, fd).ok()?;
    u64::try_from(fd).ok()
}

/// The NUL-terminated string at `va` (at most 4096 bytes), from present
/// pages.
fn user_cstr(vms: &Vmspace, va: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut a = va;
    while out.len() <= 4096 {
        let mut chunk = vec![0u8; (4096 - (a & 0xfff)) as usize];
        vms.copy_from_user(a, &mut chunk).ok()?;
        if let Some(z) = chunk.iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..z]);
            return Some(out);
        }
        out.extend_from_slice(&chunk);
        a = a.checked_add(chunk.len() as u64)?;
    }
    None
}

/// readlink(path, buf, size) and readlinkat(dirfd, ...): a symbolic link
/// of the tree, or the caller's own `/proc/self/exe` (the program's path,
/// which the context carries: busybox reads it at every start), as the
/// exit path's `sys_readlinkat` reads them (no NUL, truncated to `size`).
/// Every other `/proc` link and every error are the exit path's.
fn readlink(
    c: &FastCtx,
    p: &LockedParts<'_>,
    dirfd: i64,
    path: u64,
    buf: u64,
    size: u64,
) -> Option<u64> {
    let vms = p.mm.vmspace();
    let size = usize::try_from(size)
        .ok()
        .filter(|&n| n > 0 && n <= i64::MAX as usize)?;
    let name = user_cstr(vms, path)?;
    if name.is_empty() {
        return None;
    }
    let h = resolve_at(c, At::new(p.fds, p.cwd, dirfd), &name, false, Some(c.pid))?.ok()?;
    let target = match proc_item(h) {
        Some((pid, ProcItem::Exe)) if pid == c.pid => c.exe.to_vec(),
        Some(_) => return None,
        None => c.fs.link_target(h)?,
    };
    let n = target.len().min(size);
    vms.copy_to_user(buf, &target[..n]).ok()?;
    Some(n as u64)
}

/// The `/proc` view the server can give of the calling thread: at most
/// its pid (`/proc/self`); a lookup that asks for more (`/dev/fd`, its
/// fds, its cwd) is the exit path's.
struct ServerView {
    pid: Option<i32>,
    asked: Cell<bool>,
}

impl ServerView {
    fn ask<T>(&self, v: T) -> T {
        self.asked.set(true);
        v
    }
}

impl ProcView for ServerView {
    fn pid(&self) -> i32 {
        self.pid.unwrap_or_else(|| self.ask(0))
    }
    fn fd_node(&self, _: i32) -> Option<Option<u64>> {
        self.ask(None)
    }
    fn fds(&self) -> Vec<i32> {
        self.ask(Vec::new())
    }
    fn cwd(&self) -> u64 {
        self.ask(crate::fs::ROOT)
    }
    fn exe(&self) -> Vec<u8> {
        self.ask(Vec::new())
    }
}
