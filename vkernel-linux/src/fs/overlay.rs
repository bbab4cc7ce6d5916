//! Changes to the tree: the in-memory writable overlay over the read-only
//! backends, and the write-through of `--bind ...:rw` host directories.
//!
//! A lower file (tar or read-only host) opened for writing is copied up:
//! its node's contents become a memory buffer (same handle, new identity).
//! Names created, renamed or deleted change only the table's directory
//! maps (a deleted lower entry stays as a whiteout, [`Slot::Gone`]), so
//! nothing reaches the host. In a writable host tree the same calls are
//! made on the host first, beneath the tree's root ([`super::host`]).
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::sync::{Arc, RwLock};

use super::host::{errno_of, join};
use super::node::{Body, Dir, Errno, Meta, Node, Slot, Table, Ts, FILE_MAX, MEM_DEV};
use super::notify::{
    IN_ATTRIB, IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_ISDIR, IN_MODIFY, IN_MOVED_FROM,
    IN_MOVED_TO, IN_MOVE_SELF,
};
use super::sparse::{SparseFile, MAX_SIZE};
use super::{proc_item, Fs, Source, ROOT, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG};

const EEXIST: Errno = libc::EEXIST as Errno;
const EINVAL: Errno = libc::EINVAL as Errno;
const EISDIR: Errno = libc::EISDIR as Errno;
const ENOTDIR: Errno = libc::ENOTDIR as Errno;
const ENOTEMPTY: Errno = libc::ENOTEMPTY as Errno;
const EACCES: Errno = libc::EACCES as Errno;
const EXDEV: Errno = libc::EXDEV as Errno;
const EBUSY: Errno = libc::EBUSY as Errno;
const EFBIG: Errno = libc::EFBIG as Errno;
const ENOENT: Errno = libc::ENOENT as Errno;
const EPERM: Errno = libc::EPERM as Errno;

/// renameat2's RENAME_NOREPLACE.
pub const RENAME_NOREPLACE: u32 = 1;

/// Where a directory's changes go.
enum Place {
    /// The overlay (memory).
    Overlay,
    /// The writable host tree `.0`, directory `.1` in it.
    Host(usize, Vec<u8>),
}

impl Fs {
    fn place(&self, t: &Table, dir: u64) -> Result<Place, Errno> {
        if proc_item(dir).is_some() || dir == self.proc_dir {
            return Err(EACCES);
        }
        let d = t.get(dir)?.dir().ok_or(ENOTDIR)?;
        Ok(match &d.host {
            Some((tree, rel)) if self.trees[*tree].writable => Place::Host(*tree, rel.clone()),
            _ => Place::Overlay,
        })
    }

    /// Check `name` is a name a new entry may have.
    fn new_name(name: &[u8]) -> Result<(), Errno> {
        if name == b"." || name == b".." {
            return Err(EEXIST);
        }
        Ok(())
    }

    /// After the host made `name` in `dir` (tree `tree`, dir path `rel`):
    /// forget any old entry and look the new one up.
    fn host_made(&self, t: &mut Table, dir: u64, name: &[u8]) -> Result<u64, Errno> {
        if let Some(d) = t.get_mut(dir)?.dir_mut() {
            d.entries.remove(name);
            // Not `complete` any more for this name: looked up below.
            if d.complete {
                d.entries.insert(name.to_vec(), Slot::Lazy(0, 0));
            }
        }
        self.child_locked(t, dir, name)
    }

    fn touch_dir(t: &mut Table, dir: u64) {
        if let Ok(n) = t.get_mut(dir) {
            let now = Ts::now();
            (n.meta.mtime, n.meta.ctime) = (now, now);
        }
    }

    /// The regular file `name` in `dir`, created with `mode` if missing;
    /// with `excl`, it must not exist. Returns it and whether it is new.
    pub fn create(
        &self,
        dir: u64,
        name: &[u8],
        mode: u32,
        excl: bool,
    ) -> Result<(u64, bool), Errno> {
        Self::new_name(name)?;
        let mut t = self.lock();
        match self.child_locked(&mut t, dir, name) {
            Ok(h) if excl => {
                let _ = h;
                return Err(EEXIST);
            }
            Ok(h) => return Ok((h, false)),
            Err(ENOENT) => {}
            Err(e) => return Err(e),
        }
        let h = match self.place(&t, dir)? {
            Place::Host(tree, rel) => {
                self.trees[tree]
                    .create(&join(&rel, name), mode & 0o7777)
                    .map_err(|e| errno_of(&e))?;
                self.host_made(&mut t, dir, name)?
            }
            Place::Overlay => t.add_mem(
                dir,
                name,
                S_IFREG | (mode & 0o7777),
                Body::Mem(Arc::new(RwLock::new(SparseFile::new()))),
            ),
        };
        Self::touch_dir(&mut t, dir);
        drop(t);
        self.note_entry(dir, name, h, IN_CREATE, 0);
        Ok((h, true))
    }

    /// mkdir `name` in `dir`.
    pub fn mkdir(&self, dir: u64, name: &[u8], mode: u32) -> Result<u64, Errno> {
        Self::new_name(name)?;
        let mut t = self.lock();
        match self.child_locked(&mut t, dir, name) {
            Ok(_) => return Err(EEXIST),
            Err(ENOENT) => {}
            Err(e) => return Err(e),
        }
        let h = match self.place(&t, dir)? {
            Place::Host(tree, rel) => {
                self.trees[tree]
                    .mkdir(&join(&rel, name), mode & 0o7777)
                    .map_err(|e| errno_of(&e))?;
                self.host_made(&mut t, dir, name)?
            }
            Place::Overlay => t.add_mem(
                dir,
                name,
                S_IFDIR | (mode & 0o7777),
                Body::Dir(Dir::new(Source::Memory)),
            ),
        };
        Self::touch_dir(&mut t, dir);
        drop(t);
        self.note_entry(dir, name, h, IN_CREATE, 0);
        Ok(h)
    }

    /// mkfifo `name` in `dir` (mode bits `mode`): a FIFO node whose opens
    /// connect to one pipe ([`crate::files::Pipe`]). In the
    /// overlay only: in a writable host tree it is EPERM (a host FIFO
    /// could not be opened through the vkernel).
    pub fn mkfifo(&self, dir: u64, name: &[u8], mode: u32) -> Result<u64, Errno> {
        use crate::fs::pipe::{Pipe, Shared};
        Self::new_name(name)?;
        let mut t = self.lock();
        match self.child_locked(&mut t, dir, name) {
            Ok(_) => return Err(EEXIST),
            Err(ENOENT) => {}
            Err(e) => return Err(e),
        }
        let h = match self.place(&t, dir)? {
            Place::Host(..) => return Err(libc::EPERM as Errno),
            Place::Overlay => t.add_mem(
                dir,
                name,
                S_IFIFO | (mode & 0o7777),
                Body::Fifo(Shared::new(Pipe::default())),
            ),
        };
        Self::touch_dir(&mut t, dir);
        drop(t);
        self.note_entry(dir, name, h, IN_CREATE, 0);
        Ok(h)
    }

    /// bind(2) of an AF_UNIX socket to `name` in `dir`: a socket node
    /// (mode bits `mode`) whose connects meet at `port`. EADDRINUSE when
    /// the name exists; in the overlay only (EPERM in a writable host
    /// tree, whose node no host program could reach).
    pub fn mksock(
        &self,
        dir: u64,
        name: &[u8],
        mode: u32,
        port: crate::fs::pipe::Shared<crate::fs::socket::Port>,
    ) -> Result<u64, Errno> {
        Self::new_name(name)?;
        let mut t = self.lock();
        match self.child_locked(&mut t, dir, name) {
            Ok(_) => return Err(libc::EADDRINUSE as Errno),
            Err(ENOENT) => {}
            Err(e) => return Err(e),
        }
        let h = match self.place(&t, dir)? {
            Place::Host(..) => return Err(libc::EPERM as Errno),
            Place::Overlay => t.add_mem(
                dir,
                name,
                libc::S_IFSOCK | (mode & 0o7777),
                Body::Socket(port),
            ),
        };
        Self::touch_dir(&mut t, dir);
        drop(t);
        self.note_entry(dir, name, h, IN_CREATE, 0);
        Ok(h)
    }

    /// symlink `name` -> `target` in `dir`.
    pub fn symlink(&self, dir: u64, name: &[u8], target: &[u8]) -> Result<u64, Errno> {
        Self::new_name(name)?;
        if target.is_empty() {
            return Err(ENOENT);
        }
        let mut t = self.lock();
        match self.child_locked(&mut t, dir, name) {
            Ok(_) => return Err(EEXIST),
            Err(ENOENT) => {}
            Err(e) => return Err(e),
        }
        let h = match self.place(&t, dir)? {
            Place::Host(tree, rel) => {
                self.trees[tree]
                    .symlink(&join(&rel, name), target)
                    .map_err(|e| errno_of(&e))?;
                self.host_made(&mut t, dir, name)?
            }
            Place::Overlay => t.add_mem(dir, name, S_IFLNK | 0o777, Body::Symlink(target.to_vec())),
        };
        Self::touch_dir(&mut t, dir);
        drop(t);
        self.note_entry(dir, name, h, IN_CREATE, 0);
        Ok(h)
    }

    /// A hard link `name` in `dir` to node `h` (overlay only).
    pub fn link(&self, h: u64, dir: u64, name: &[u8]) -> Result<(), Errno> {
        Self::new_name(name)?;
        let mut t = self.lock();
        match self.child_locked(&mut t, dir, name) {
            Ok(_) => return Err(EEXIST),
            Err(ENOENT) => {}
            Err(e) => return Err(e),
        }
        let n = t.get(h)?;
        if n.dir().is_some() {
            return Err(EPERM);
        }
        if matches!(self.place(&t, dir)?, Place::Host(..))
            || matches!(n.body, Body::Host { tree, .. } if self.trees[tree].writable)
        {
            return Err(EXDEV);
        }
        t.get_mut(h)?.meta.nlink += 1;
        t.link(dir, name, h);
        Self::touch_dir(&mut t, dir);
        drop(t);
        self.note_node(h, IN_ATTRIB, false);
        self.note_entry(dir, name, h, IN_CREATE, 0);
        Ok(())
    }

    /// Is directory `h` empty (nothing but deleted entries)?
    fn is_empty_dir(&self, h: u64) -> Result<bool, Errno> {
        Ok(self.list(h)?.iter().all(Option::is_none))
    }

    /// unlink `name` from `dir` (rmdir with `rmdir`).
    pub fn unlink(&self, dir: u64, name: &[u8], rmdir: bool) -> Result<(), Errno> {
        if name == b"." {
            return Err(if rmdir { EINVAL } else { EISDIR });
        }
        if name == b".." {
            return Err(if rmdir { ENOTEMPTY } else { EISDIR });
        }
        let h = self.child(dir, name)?;
        let is_dir = self.is_dir_handle(h);
        if rmdir && !is_dir {
            return Err(ENOTDIR);
        }
        if !rmdir && is_dir {
            return Err(EISDIR);
        }
        if h == ROOT || h == self.proc_dir {
            return Err(EBUSY);
        }
        if rmdir && !self.is_empty_dir(h)? {
            return Err(ENOTEMPTY);
        }
        let mut t = self.lock();
        if let Place::Host(tree, rel) = self.place(&t, dir)? {
            self.trees[tree]
                .unlink(&join(&rel, name), rmdir)
                .map_err(|e| errno_of(&e))?;
        }
        if let Some(d) = t.get_mut(dir)?.dir_mut() {
            d.entries.insert(name.to_vec(), Slot::Gone);
        }
        t.drop_link(h);
        Self::touch_dir(&mut t, dir);
        let gone = t.get(h).map_or(true, |n| n.meta.nlink == 0 || is_dir);
        drop(t);
        self.deleted(dir, name, h, is_dir, gone);
        Ok(())
    }

    /// Is `a` the directory `d` or one of its ancestors?
    fn is_ancestor(&self, t: &Table, a: u64, mut d: u64) -> bool {
        for _ in 0..4096 {
            if d == a {
                return true;
            }
            if d == ROOT {
                return false;
            }
            d = t.get(d).map_or(ROOT, |n| n.parent);
        }
        true
    }

    /// rename `n1` in `d1` to `n2` in `d2` (renameat2 `flags`).
    pub fn rename(&self, d1: u64, n1: &[u8], d2: u64, n2: &[u8], flags: u32) -> Result<(), Errno> {
        if flags & !RENAME_NOREPLACE != 0 {
            return Err(EINVAL);
        }
        for n in [n1, n2] {
            if n == b"." || n == b".." {
                return Err(EBUSY);
            }
        }
        let src = self.child(d1, n1)?;
        let dst = match self.child(d2, n2) {
            Ok(h) => Some(h),
            Err(ENOENT) => None,
            Err(e) => return Err(e),
        };
        // RENAME_NOREPLACE refuses any existing name, the source's own
        // included (Linux checks it before the same-file shortcut).
        if dst.is_some() && flags & RENAME_NOREPLACE != 0 {
            return Err(EEXIST);
        }
        if dst == Some(src) {
            return Ok(());
        }
        let src_dir = self.is_dir_handle(src);
        if let Some(d) = dst {
            match (src_dir, self.is_dir_handle(d)) {
                (true, false) => return Err(ENOTDIR),
                (false, true) => return Err(EISDIR),
                (true, true) if !self.is_empty_dir(d)? => return Err(ENOTEMPTY),
                _ => {}
            }
        }
        let mut t = self.lock();
        if src == ROOT || src == self.proc_dir || (src_dir && self.is_ancestor(&t, src, d2)) {
            return Err(EINVAL);
        }
        match (self.place(&t, d1)?, self.place(&t, d2)?) {
            (Place::Host(a, r1), Place::Host(b, r2)) if a == b => {
                let (from, to) = (join(&r1, n1), join(&r2, n2));
                self.trees[a]
                    .rename(&from, &to, flags)
                    .map_err(|e| errno_of(&e))?;
                rebase(&mut t, src, &from, &to);
            }
            (Place::Overlay, Place::Overlay) => {}
            _ => return Err(EXDEV),
        }
        if let Some(d) = t.get_mut(d1)?.dir_mut() {
            d.entries.insert(n1.to_vec(), Slot::Gone);
        }
        t.link(d2, n2, src);
        if let Ok(n) = t.get_mut(src) {
            n.parent = d2;
            n.name = n2.to_vec();
            n.meta.ctime = Ts::now();
        }
        if let Some(d) = dst {
            t.drop_link(d);
        }
        Self::touch_dir(&mut t, d1);
        Self::touch_dir(&mut t, d2);
        drop(t);
        self.moved((d1, n1), (d2, n2), src, src_dir, dst);
        Ok(())
    }

    /// Make node `h` writable: a lower file is copied into memory (a new
    /// identity); a file of a writable host tree stays where it is.
    pub fn prepare_write(&self, h: u64) -> Result<(), Errno> {
        let size = {
            let t = self.lock();
            let n = t.get(h)?;
            match &n.body {
                Body::Mem(_) | Body::Dev(_) => return Ok(()),
                Body::Host { tree, .. } if self.trees[*tree].writable => return Ok(()),
                Body::Host { .. } | Body::Tar { .. } => n.meta.size,
                Body::Dir(_) => return Err(EISDIR),
                _ => return Err(EACCES),
            }
        };
        if size > FILE_MAX {
            return Err(EFBIG);
        }
        let mut data = vec![0u8; size as usize];
        let mut got = 0;
        while got < data.len() {
            let n = self.read(h, got as u64, &mut data[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        data.truncate(got);
        let mut t = self.lock();
        if !matches!(t.get(h)?.body, Body::Host { .. } | Body::Tar { .. }) {
            return Ok(());
        }
        let data = SparseFile::from_vec(data);
        t.charge(0, data.allocated())?;
        let ino = t.next_id();
        let version = t.next_id();
        let n = t.get_mut(h)?;
        {
            n.body = Body::Mem(Arc::new(RwLock::new(data)));
            n.meta.dev = MEM_DEV;
            n.meta.ino = ino;
            n.version = version;
        }
        Ok(())
    }

    /// A change of `h`'s contents: new version, new mtime.
    fn changed(t: &mut Table, h: u64) {
        let v = t.next_id();
        if let Ok(n) = t.get_mut(h) {
            n.version = v;
            n.meta.blocks = None;
            let now = Ts::now();
            (n.meta.mtime, n.meta.ctime) = (now, now);
        }
    }

    /// The host tree and path of a writable host file.
    fn rw_host(&self, n: &Node) -> Option<(usize, Vec<u8>)> {
        match &n.body {
            Body::Host { tree, rel } if self.trees[*tree].writable => Some((*tree, rel.clone())),
            _ => None,
        }
    }

    /// Write `data` at `pos` (None: at the end) of file `h` (made writable
    /// by [`Fs::prepare_write`]); returns the count and the end offset.
    pub fn write(&self, h: u64, pos: Option<u64>, data: &[u8]) -> Result<(usize, u64), Errno> {
        if self.seals(h) != 0 {
            let size = self.inode(h).size;
            let end = pos.unwrap_or(size).saturating_add(data.len() as u64);
            self.seal_check(h, size, end.max(size), !data.is_empty())?;
        }
        let (n, end) = self.write_file(h, pos, data)?;
        // A device reports its own offset (0 for /dev/null), not the end
        // of the bytes written: it has no shared mappings to tell.
        if let Some(start) = end.checked_sub(n as u64) {
            self.shared_written(h, start, &data[..n]);
        }
        if n > 0 {
            self.note_node(h, IN_MODIFY, false);
        }
        Ok((n, end))
    }

    /// [`Fs::write`] without telling shared file mappings.
    pub(super) fn write_file(
        &self,
        h: u64,
        pos: Option<u64>,
        data: &[u8],
    ) -> Result<(usize, u64), Errno> {
        let mut t = self.lock();
        let n = t.get(h)?;
        if let Some((tree, rel)) = self.rw_host(n) {
            drop(t);
            let f = self.host_file(h, tree, &rel, true)?;
            let at = match pos {
                Some(p) => p,
                None => super::host::fstat(&*f).map_err(|e| errno_of(&e))?.st_size as u64,
            };
            let w =
                std::os::unix::fs::FileExt::write_at(&*f, data, at).map_err(|e| errno_of(&e))?;
            let mut t = self.lock();
            if let Ok(n) = t.get_mut(h) {
                n.meta.size = n.meta.size.max(at + w as u64);
            }
            Self::changed(&mut t, h);
            return Ok((w, at + w as u64));
        }
        let buf = match &n.body {
            Body::Mem(d) => d.clone(),
            Body::Dev(r) if r & 0xff == 7 => return Err(libc::ENOSPC as Errno),
            Body::Dev(_) => return Ok((data.len(), pos.unwrap_or(0))),
            Body::Dir(_) => return Err(EISDIR),
            _ => return Err(libc::EBADF as Errno),
        };
        let mut d = buf.write().unwrap_or_else(|e| e.into_inner());
        let at = pos.unwrap_or(d.len());
        let end = at.checked_add(data.len() as u64).ok_or(EFBIG)?;
        if end > MAX_SIZE {
            return Err(EFBIG);
        }
        t.charge(
            d.allocated(),
            d.allocated_after_write(at, data.len() as u64),
        )?;
        d.write_at(at, data);
        drop(d);
        Self::changed(&mut t, h);
        Ok((data.len(), end))
    }

    /// fallocate mode 0: make `[off, off + len)` of file `h` hold memory
    /// (an in-memory file's pages are allocated and counted, ENOSPC or
    /// EFBIG past the caps) and grow its size to cover it.
    pub fn allocate(&self, h: u64, off: u64, len: u64) -> Result<(), Errno> {
        self.allocate_node(h, off, len)?;
        self.note_node(h, IN_MODIFY, false);
        Ok(())
    }

    /// [`Fs::allocate`] without reporting it.
    fn allocate_node(&self, h: u64, off: u64, len: u64) -> Result<(), Errno> {
        let end = off.checked_add(len).ok_or(EFBIG)?;
        if end > MAX_SIZE {
            return Err(EFBIG);
        }
        self.prepare_write(h)?;
        let mut t = self.lock();
        let d = match &t.get(h)?.body {
            Body::Mem(d) => d.clone(),
            _ => {
                drop(t);
                if end > self.inode(h).size {
                    self.truncate(h, end)?;
                }
                return Ok(());
            }
        };
        let mut d = d.write().unwrap_or_else(|e| e.into_inner());
        t.charge(d.allocated(), d.allocated_after_write(off, len))?;
        let grows = end > d.len();
        d.allocate(off, len);
        drop(d);
        if grows {
            Self::changed(&mut t, h);
        }
        Ok(())
    }

    /// Set file `h`'s size.
    pub fn truncate(&self, h: u64, len: u64) -> Result<(), Errno> {
        self.truncate_node(h, len)?;
        self.note_node(h, IN_MODIFY, false);
        Ok(())
    }

    /// [`Fs::truncate`] without reporting it.
    fn truncate_node(&self, h: u64, len: u64) -> Result<(), Errno> {
        if len > MAX_SIZE {
            return Err(EFBIG);
        }
        self.seal_check(h, self.inode(h).size, len, false)?;
        self.prepare_write(h)?;
        let mut t = self.lock();
        let n = t.get(h)?;
        if let Some((tree, rel)) = self.rw_host(n) {
            drop(t);
            let f = self.host_file(h, tree, &rel, true)?;
            f.set_len(len).map_err(|e| errno_of(&e))?;
            let mut t = self.lock();
            if let Ok(n) = t.get_mut(h) {
                n.meta.size = len;
            }
            Self::changed(&mut t, h);
            drop(t);
            self.shared_truncated(h, len);
            return Ok(());
        }
        match &n.body {
            Body::Mem(d) => {
                let d = d.clone();
                let mut d = d.write().unwrap_or_else(|e| e.into_inner());
                t.charge(d.allocated(), d.allocated_after_truncate(len))?;
                d.set_len(len);
            }
            Body::Dev(_) => return Ok(()),
            Body::Dir(_) => return Err(EISDIR),
            _ => return Err(EINVAL),
        }
        Self::changed(&mut t, h);
        drop(t);
        self.shared_truncated(h, len);
        Ok(())
    }

    /// Set times (None: leave as is).
    pub fn set_times(&self, h: u64, atime: Option<Ts>, mtime: Option<Ts>) -> Result<(), Errno> {
        self.set_times_node(h, atime, mtime)?;
        self.note_node(h, IN_ATTRIB, false);
        Ok(())
    }

    /// [`Fs::set_times`] without reporting it.
    fn set_times_node(&self, h: u64, atime: Option<Ts>, mtime: Option<Ts>) -> Result<(), Errno> {
        if proc_item(h).is_some() {
            return Err(EPERM);
        }
        let mut t = self.lock();
        let (parent, name) = {
            let n = t.get(h)?;
            (n.parent, n.name.clone())
        };
        if let Place::Host(tree, rel) = self.place(&t, parent).unwrap_or(Place::Overlay) {
            let omit = libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            };
            let ts = |x: Option<Ts>| {
                x.map_or(omit, |x| libc::timespec {
                    tv_sec: x.sec,
                    tv_nsec: x.nsec as i64,
                })
            };
            if h != ROOT {
                self.trees[tree]
                    .set_times(&join(&rel, &name), &[ts(atime), ts(mtime)])
                    .map_err(|e| errno_of(&e))?;
            }
        }
        let n = t.get_mut(h)?;
        if let Some(a) = atime {
            n.meta.atime = a;
        }
        if let Some(m) = mtime {
            n.meta.mtime = m;
        }
        n.meta.ctime = Ts::now();
        Ok(())
    }

    /// chmod / chown (None: leave as is). Recorded in the table; made on
    /// the host too in a writable host tree (mode only).
    pub fn set_attr(
        &self,
        h: u64,
        mode: Option<u32>,
        owner: Option<(u32, u32)>,
    ) -> Result<(), Errno> {
        self.set_attr_node(h, mode, owner)?;
        self.note_node(h, IN_ATTRIB, false);
        Ok(())
    }

    /// [`Fs::set_attr`] without reporting it.
    fn set_attr_node(
        &self,
        h: u64,
        mode: Option<u32>,
        owner: Option<(u32, u32)>,
    ) -> Result<(), Errno> {
        if proc_item(h).is_some() {
            return Err(EPERM);
        }
        let mut t = self.lock();
        let n = t.get(h)?;
        if let (Some(m), Some((tree, rel))) = (mode, self.rw_host(n)) {
            self.trees[tree]
                .chmod(&rel, m & 0o7777)
                .map_err(|e| errno_of(&e))?;
        }
        let n = t.get_mut(h)?;
        if let Some(m) = mode {
            n.meta.mode = (n.meta.mode & libc::S_IFMT) | (m & 0o7777);
        }
        if let Some((u, g)) = owner {
            if u != u32::MAX {
                n.meta.uid = u;
            }
            if g != u32::MAX {
                n.meta.gid = g;
            }
        }
        n.meta.ctime = Ts::now();
        Ok(())
    }

    /// A file with no name holding `data` (a /proc snapshot); it goes
    /// away when its last [`super::Backing`] does.
    pub fn anonymous(&self, data: Vec<u8>) -> u64 {
        let data = SparseFile::from_vec(data);
        let mut t = self.lock();
        // Small snapshots, counted (freed with the node) but never refused.
        t.mem_bytes += data.allocated();
        let ino = t.next_id();
        let mut m = Meta::fresh(S_IFREG | 0o444, ino);
        m.nlink = 0;
        m.dev = 0x4;
        let mut node = Node::new(
            self.proc_dir,
            b"",
            m,
            Body::Mem(Arc::new(RwLock::new(data))),
        );
        node.version = t.next_id();
        t.alloc(node)
    }
}

/// After a host rename of `from` to `to`: the host paths of `h` and of
/// everything known below it.
fn rebase(t: &mut Table, h: u64, from: &[u8], to: &[u8]) {
    let mut stack = vec![h];
    while let Some(x) = stack.pop() {
        let Ok(n) = t.get_mut(x) else { continue };
        let fix = |rel: &mut Vec<u8>| {
            if rel.starts_with(from) && (rel.len() == from.len() || rel[from.len()] == b'/') {
                let mut r = to.to_vec();
                r.extend_from_slice(&rel[from.len()..]);
                *rel = r;
            }
        };
        match &mut n.body {
            Body::Host { rel, .. } => fix(rel),
            Body::Dir(d) => {
                if let Some((_, rel)) = &mut d.host {
                    fix(rel);
                }
                for s in d.entries.values() {
                    if let Slot::Node(c) = s {
                        stack.push(*c);
                    }
                }
            }
            _ => {}
        }
    }
}

impl Fs {
    /// `name` (node `h`) left `dir`: the node's watches get IN_ATTRIB (a
    /// link fewer) and, when it is `gone`, IN_DELETE_SELF (and end); then
    /// IN_DELETE in `dir`.
    fn deleted(&self, dir: u64, name: &[u8], h: u64, is_dir: bool, gone: bool) {
        let n = self.notifier();
        if !n.active() {
            return;
        }
        let isdir = if is_dir { IN_ISDIR } else { 0 };
        // The node's events first (a link fewer, then gone), as Linux.
        if !is_dir {
            n.report(h, IN_ATTRIB, b"", 0, false);
        }
        if gone {
            n.report(h, IN_DELETE_SELF | isdir, b"", 0, true);
        }
        n.report(dir, IN_DELETE | isdir, name, 0, false);
    }

    /// Node `src` moved from `from` to `to` (replacing `dst`): the two
    /// halves with one cookie, IN_MOVE_SELF, and the replaced node gone.
    fn moved(
        &self,
        from: (u64, &[u8]),
        to: (u64, &[u8]),
        src: u64,
        is_dir: bool,
        dst: Option<u64>,
    ) {
        let n = self.notifier();
        if !n.active() {
            return;
        }
        let isdir = if is_dir { IN_ISDIR } else { 0 };
        let cookie = n.cookie();
        n.report(from.0, IN_MOVED_FROM | isdir, from.1, cookie, false);
        n.report(to.0, IN_MOVED_TO | isdir, to.1, cookie, false);
        n.report(src, IN_MOVE_SELF | isdir, b"", 0, false);
        if let Some(d) = dst {
            n.report(d, IN_DELETE_SELF, b"", 0, true);
        }
    }
}
