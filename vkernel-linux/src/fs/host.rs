//! A host directory tree, reached only beneath its root.
//!
//! Every access opens a path *relative to the tree's root fd* with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`:
//! the host kernel refuses `..` above the root and every symlink on the way,
//! so no host path outside the tree is ever opened, even if the tree changes
//! under the vkernel. Symlinks are read with `readlinkat` and followed by
//! the vkernel's own resolver (`super::path`), inside the vproc's root.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One host directory tree (the root, or a `--bind` directory).
#[derive(Debug)]
pub struct HostTree {
    root: OwnedFd,
    /// Writes reach the host (a `--bind ...:rw` directory).
    pub writable: bool,
    /// The host path, for messages.
    pub path: PathBuf,
}

/// What `lstat` says about a host entry.
pub type HostStat = libc::stat;

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Split `rel` into its parent and last component (`rel` is not empty).
fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&c| c == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&b""[..], rel),
    }
}

/// `rel` joined with `name`.
pub fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = rel.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

impl HostTree {
    /// Open the host directory `path` as a tree.
    pub fn open(path: &Path, writable: bool) -> io::Result<HostTree> {
        let c = cstr(path.as_os_str().as_bytes())?;
        // SAFETY: `c` is a valid NUL-terminated string that outlives the
        // call; the returned fd is owned below.
        let fd = check(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: `fd` was just returned by open and is owned by nobody else.
        let root = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(HostTree {
            root,
            writable,
            path: path.to_path_buf(),
        })
    }

    /// Open `rel` (relative to the root, "" for the root itself) with
    /// `flags`, beneath the root and through no symlink. With
    /// `O_PATH | O_NOFOLLOW` a final symlink is opened itself.
    pub fn open_at(&self, rel: &[u8], flags: i32, mode: u32) -> io::Result<OwnedFd> {
        let c = cstr(if rel.is_empty() { b"." } else { rel })?;
        // SAFETY: open_how is plain integers; all-zero is valid.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (flags | libc::O_CLOEXEC) as u64;
        if flags & libc::O_CREAT != 0 {
            how.mode = mode as u64;
        }
        how.resolve =
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: openat2 reads the path and `how` (both valid for the
        // call, `how`'s size passed) and returns a new fd or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.root.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new fd owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    /// The parent directory of `rel` (opened O_PATH) and its last name.
    fn parent<'a>(&self, rel: &'a [u8]) -> io::Result<(OwnedFd, CString, &'a [u8])> {
        let (dir, name) = split(rel);
        let d = self.open_at(dir, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        Ok((d, cstr(name)?, name))
    }

    /// lstat `rel` (a final symlink is described itself).
    pub fn lstat(&self, rel: &[u8]) -> io::Result<HostStat> {
        let fd = self.open_at(rel, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
        fstat(&fd)
    }

    /// The target of the symlink `rel`.
    pub fn readlink(&self, rel: &[u8]) -> io::Result<Vec<u8>> {
        let fd = self.open_at(rel, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
        let mut buf = vec![0u8; 4096];
        // SAFETY: readlinkat on an O_PATH fd of the link with an empty path
        // reads the link itself into `buf` (valid for its length).
        let n = unsafe {
            libc::readlinkat(
                fd.as_raw_fd(),
                c"".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// Open the regular file `rel` for reading, or reading and writing.
    pub fn open_file(&self, rel: &[u8], write: bool) -> io::Result<File> {
        let acc = if write { libc::O_RDWR } else { libc::O_RDONLY };
        let fd = self.open_at(rel, acc | libc::O_NOFOLLOW | libc::O_NONBLOCK, 0)?;
        Ok(File::from(fd))
    }

    /// The entries of directory `rel`: (name, host inode, DT_* type),
    /// without `.` and `..`.
    pub fn list(&self, rel: &[u8]) -> io::Result<Vec<(Vec<u8>, u64, u8)>> {
        let fd = self.open_at(rel, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
        // SAFETY: `raw` is an open directory fd; fdopendir takes it over
        // (closedir closes it) or fails and leaves it to us.
        let dir = unsafe { libc::fdopendir(raw) };
        if dir.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, the fd is still ours.
            unsafe { libc::close(raw) };
            return Err(e);
        }
        let mut out = Vec::new();
        loop {
            // SAFETY: `dir` is a valid DIR stream until closedir below.
            let ent = unsafe { libc::readdir64(dir) };
            if ent.is_null() {
                break;
            }
            // SAFETY: readdir64 returned a valid entry whose d_name is a
            // NUL-terminated string inside it, valid until the next call.
            let (name, ino, ty) = unsafe {
                let e = &*ent;
                let n = std::ffi::CStr::from_ptr(e.d_name.as_ptr())
                    .to_bytes()
                    .to_vec();
                (n, e.d_ino, e.d_type)
            };
            if name != b"." && name != b".." {
                out.push((name, ino, ty));
            }
        }
        // SAFETY: `dir` came from fdopendir and is closed once.
        unsafe { libc::closedir(dir) };
        Ok(out)
    }

    /// Create the regular file `rel` (it must not exist).
    pub fn create(&self, rel: &[u8], mode: u32) -> io::Result<()> {
        let fd = self.open_at(
            rel,
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
            mode,
        )?;
        drop(fd);
        Ok(())
    }

    /// mkdir `rel`.
    pub fn mkdir(&self, rel: &[u8], mode: u32) -> io::Result<()> {
        let (d, name, _) = self.parent(rel)?;
        // SAFETY: `d` is an open directory fd and `name` a single component.
        check(unsafe { libc::mkdirat(d.as_raw_fd(), name.as_ptr(), mode) }).map(|_| ())
    }

    /// symlink `rel` -> `target`.
    pub fn symlink(&self, rel: &[u8], target: &[u8]) -> io::Result<()> {
        let (d, name, _) = self.parent(rel)?;
        let t = cstr(target)?;
        // SAFETY: valid strings and an open directory fd.
        check(unsafe { libc::symlinkat(t.as_ptr(), d.as_raw_fd(), name.as_ptr()) }).map(|_| ())
    }

    /// unlink (or rmdir with `dir`) `rel`.
    pub fn unlink(&self, rel: &[u8], dir: bool) -> io::Result<()> {
        let (d, name, _) = self.parent(rel)?;
        let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: a single component in an open directory fd.
        check(unsafe { libc::unlinkat(d.as_raw_fd(), name.as_ptr(), flags) }).map(|_| ())
    }

    /// rename `from` to `to` (both in this tree) with renameat2 `flags`.
    pub fn rename(&self, from: &[u8], to: &[u8], flags: u32) -> io::Result<()> {
        let (d1, n1, _) = self.parent(from)?;
        let (d2, n2, _) = self.parent(to)?;
        // SAFETY: single components in open directory fds.
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                d1.as_raw_fd(),
                n1.as_ptr(),
                d2.as_raw_fd(),
                n2.as_ptr(),
                flags,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Set the times of `rel` (no symlink followed).
    pub fn set_times(&self, rel: &[u8], times: &[libc::timespec; 2]) -> io::Result<()> {
        let (d, name, _) = self.parent(rel)?;
        // SAFETY: a single component in an open directory fd; `times` is
        // two valid timespecs.
        check(unsafe {
            libc::utimensat(
                d.as_raw_fd(),
                name.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
        .map(|_| ())
    }

    /// chmod the regular file `rel` (opened, never through a symlink).
    pub fn chmod(&self, rel: &[u8], mode: u32) -> io::Result<()> {
        let fd = self.open_at(rel, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK, 0)?;
        // SAFETY: fchmod on an fd we own.
        check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(|_| ())
    }
}

/// fstat an open fd.
pub fn fstat(fd: &impl AsRawFd) -> io::Result<HostStat> {
    // SAFETY: all-zero is a valid stat for the call to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is writable; AT_EMPTY_PATH with "" describes the fd.
    check(unsafe {
        libc::fstatat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            &mut st,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

/// The errno of a host error (EIO if it has none).
pub fn errno_of(e: &io::Error) -> i64 {
    e.raw_os_error().unwrap_or(libc::EIO) as i64
}
