//! The vproc's read-only root filesystem: a tar archive on a
//! [`crate::devices::Disk`], read with the `tar` crate.
//!
//! At mount time the archive is scanned once (headers only) into an inode
//! table; file contents are read from the disk with `pread` when the vproc
//! reads them. Build an image from a directory with
//! `tar -cf fs.tar -C DIR .` (or `vkernel mkimage DIR fs.tar`).

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::devices::{Disk, DiskError};

/// Errors of the filesystem.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The disk failed.
    #[error("disk: {0}")]
    Disk(#[from] DiskError),
    /// The archive is not a valid tar file.
    #[error(
        "{path}: not a readable tar archive ({source}); build one with `tar -cf IMAGE -C DIR .`"
    )]
    Tar {
        /// The image.
        path: String,
        /// What the tar reader said.
        source: io::Error,
    },
    /// An entry of the archive points outside the image.
    #[error("{path}: entry {entry:?}: {why}; the archive is truncated or corrupt, rebuild it with `tar -cf IMAGE -C DIR .`")]
    Corrupt {
        /// The image.
        path: String,
        /// The entry's name.
        entry: String,
        /// What is wrong with it.
        why: String,
    },
    /// Building an image failed.
    #[error("cannot build image {path}: {source}")]
    Build {
        /// The image.
        path: String,
        /// Why.
        source: io::Error,
    },
}

/// Kind of an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Regular file: its bytes are at `offset` in the image.
    File {
        /// Byte offset of the data in the image.
        offset: u64,
    },
    /// Directory: name -> inode.
    Dir(BTreeMap<Vec<u8>, u64>),
    /// Symbolic link.
    Symlink(Vec<u8>),
    /// Character device (only synthetic ones: /dev/null, /dev/zero).
    CharDev(u32),
}

/// One inode.
#[derive(Clone, Debug)]
pub struct Inode {
    /// Inode number.
    pub ino: u64,
    /// Mode bits (type and permissions).
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (seconds).
    pub mtime: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// What it is.
    pub kind: Kind,
    /// Parent directory (for directories; root is its own parent).
    pub parent: u64,
}

/// S_IFDIR.
pub const S_IFDIR: u32 = 0o040000;
/// S_IFREG.
pub const S_IFREG: u32 = 0o100000;
/// S_IFLNK.
pub const S_IFLNK: u32 = 0o120000;
/// S_IFCHR.
pub const S_IFCHR: u32 = 0o020000;

/// Errno values the filesystem returns.
pub mod errno {
    /// No such file.
    pub const ENOENT: i64 = 2;
    /// Not a directory.
    pub const ENOTDIR: i64 = 20;
    /// Too many symlinks.
    pub const ELOOP: i64 = 40;
    /// Name too long.
    pub const ENAMETOOLONG: i64 = 36;
    /// I/O error.
    pub const EIO: i64 = 5;
}

/// The filesystem.
pub struct Fs {
    disk: Option<Disk>,
    inodes: Vec<Inode>,
}

/// Root inode number.
pub const ROOT: u64 = 1;

struct DiskReader<'a> {
    disk: &'a Disk,
    pos: u64,
}

impl Read for DiskReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.disk.size().saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.disk
            .read_at(self.pos, &mut buf[..n])
            .map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for DiskReader<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pos = match pos {
            SeekFrom::Start(p) => p,
            SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
            SeekFrom::End(d) => self.disk.size().saturating_add_signed(d),
        };
        Ok(self.pos)
    }
}

fn dir(ino: u64, mode: u32) -> Inode {
    Inode {
        ino,
        mode: S_IFDIR | mode,
        size: 4096,
        mtime: 0,
        uid: 0,
        gid: 0,
        kind: Kind::Dir(BTreeMap::new()),
        parent: ROOT,
    }
}

fn components(p: &[u8]) -> Vec<&[u8]> {
    p.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect()
}

impl Fs {
    /// An empty filesystem (just `/`, `/dev/null`, `/dev/zero`, `/tmp`).
    pub fn empty() -> Fs {
        let mut fs = Fs {
            disk: None,
            inodes: vec![dir(0, 0), dir(ROOT, 0o755)],
        };
        fs.add_synthetic();
        fs
    }

    fn add_synthetic(&mut self) {
        let dev = self.mkdir_p(b"dev");
        for (name, minor) in [(&b"null"[..], 3u32), (&b"zero"[..], 5)] {
            if self.child(dev, name).is_none() {
                let ino = self.inodes.len() as u64;
                self.inodes.push(Inode {
                    ino,
                    mode: S_IFCHR | 0o666,
                    size: 0,
                    mtime: 0,
                    uid: 0,
                    gid: 0,
                    kind: Kind::CharDev((1 << 8) | minor),
                    parent: dev,
                });
                self.link(dev, name, ino);
            }
        }
    }

    /// Mount a tar image.
    pub fn mount(disk: Disk) -> Result<Fs, FsError> {
        let mut fs = Fs::empty();
        let path = disk.path().display().to_string();
        let tar_err = |source| FsError::Tar {
            path: path.clone(),
            source,
        };
        let mut hard_links = Vec::new();
        {
            let mut ar = tar::Archive::new(DiskReader {
                disk: &disk,
                pos: 0,
            });
            for entry in ar.entries_with_seek().map_err(tar_err)? {
                let entry = entry.map_err(tar_err)?;
                let name = entry.path_bytes().into_owned();
                let comps: Vec<Vec<u8>> = components(&name).iter().map(|c| c.to_vec()).collect();
                if comps.iter().any(|c| c == b"..") {
                    // What GNU tar does too: a member may not climb out.
                    log::warn!(
                        "{path}: skipping entry {:?}: its name contains `..`",
                        String::from_utf8_lossy(&name)
                    );
                    continue;
                }
                let h = entry.header();
                let mode = h.mode().unwrap_or(0o644) & 0o7777;
                let mtime = h.mtime().unwrap_or(0);
                let uid = h.uid().unwrap_or(0) as u32;
                let gid = h.gid().unwrap_or(0) as u32;
                let et = h.entry_type();
                if comps.is_empty() {
                    if et.is_dir() {
                        self_set_mode(&mut fs.inodes[ROOT as usize], mode, mtime);
                    }
                    continue;
                }
                let parent_path = &comps[..comps.len() - 1];
                let leaf = comps[comps.len() - 1].clone();
                let mut parent = ROOT;
                for c in parent_path {
                    parent = fs.mkdir_in(parent, c);
                }
                let kind = if et.is_dir() {
                    let ino = fs.mkdir_in(parent, &leaf);
                    self_set_mode(&mut fs.inodes[ino as usize], mode, mtime);
                    continue;
                } else if et.is_symlink() {
                    Kind::Symlink(
                        entry
                            .link_name_bytes()
                            .map(|l| l.into_owned())
                            .unwrap_or_default(),
                    )
                } else if et.is_hard_link() {
                    if let Some(l) = entry.link_name_bytes() {
                        hard_links.push((parent, leaf, l.into_owned()));
                    }
                    continue;
                } else if et.is_file() || et == tar::EntryType::Continuous {
                    let offset = entry.raw_file_position();
                    let size = entry.size();
                    if offset.checked_add(size).is_none_or(|end| end > disk.size()) {
                        return Err(FsError::Corrupt {
                            path: path.clone(),
                            entry: String::from_utf8_lossy(&name).into_owned(),
                            why: format!(
                                "its {size} bytes at offset {offset} reach past the end of the {}-byte image",
                                disk.size()
                            ),
                        });
                    }
                    Kind::File { offset }
                } else {
                    continue;
                };
                let size = match &kind {
                    Kind::Symlink(t) => t.len() as u64,
                    _ => entry.size(),
                };
                let ifmt = match kind {
                    Kind::Symlink(_) => S_IFLNK,
                    _ => S_IFREG,
                };
                let ino = fs.inodes.len() as u64;
                fs.inodes.push(Inode {
                    ino,
                    mode: ifmt | mode,
                    size,
                    mtime,
                    uid,
                    gid,
                    kind,
                    parent,
                });
                fs.link(parent, &leaf, ino);
            }
        }
        for (parent, leaf, target) in hard_links {
            let mut p = b"/".to_vec();
            p.extend_from_slice(&target);
            // Like Linux: no hard links to directories (they would make
            // loops of the tree).
            if let Ok(ino) = fs.resolve(ROOT, &p, false) {
                if !matches!(fs.inodes[ino as usize].kind, Kind::Dir(_)) {
                    fs.link(parent, &leaf, ino);
                }
            }
        }
        fs.disk = Some(disk);
        fs.add_synthetic();
        Ok(fs)
    }

    fn link(&mut self, parent: u64, name: &[u8], ino: u64) {
        if let Kind::Dir(m) = &mut self.inodes[parent as usize].kind {
            m.insert(name.to_vec(), ino);
        }
    }

    fn mkdir_in(&mut self, parent: u64, name: &[u8]) -> u64 {
        if let Some(i) = self.child(parent, name) {
            if matches!(self.inodes[i as usize].kind, Kind::Dir(_)) {
                return i;
            }
        }
        let ino = self.inodes.len() as u64;
        let mut d = dir(ino, 0o755);
        d.parent = parent;
        self.inodes.push(d);
        self.link(parent, name, ino);
        ino
    }

    fn mkdir_p(&mut self, name: &[u8]) -> u64 {
        let mut p = ROOT;
        for c in components(name) {
            p = self.mkdir_in(p, c);
        }
        p
    }

    /// The entry `name` of directory `dir`.
    pub fn child(&self, dir: u64, name: &[u8]) -> Option<u64> {
        match &self.inodes.get(dir as usize)?.kind {
            Kind::Dir(m) => m.get(name).copied(),
            _ => None,
        }
    }

    /// The parent directory of `dir` (root's parent is root).
    fn parent_of(&self, ino: u64) -> u64 {
        self.inodes.get(ino as usize).map_or(ROOT, |i| i.parent)
    }

    /// The inode `ino`.
    pub fn inode(&self, ino: u64) -> &Inode {
        &self.inodes[ino as usize]
    }

    /// Resolve `path` relative to directory `cwd`; follow a final symlink
    /// when `follow`. Returns the inode or an errno.
    pub fn resolve(&self, cwd: u64, path: &[u8], follow: bool) -> Result<u64, i64> {
        self.resolve_depth(cwd, path, follow, 0)
    }

    fn resolve_depth(&self, cwd: u64, path: &[u8], follow: bool, depth: u32) -> Result<u64, i64> {
        if depth > 40 {
            return Err(errno::ELOOP);
        }
        if path.is_empty() {
            return Err(errno::ENOENT);
        }
        if path.len() > 4096 {
            return Err(errno::ENAMETOOLONG);
        }
        let mut cur = if path[0] == b'/' { ROOT } else { cwd };
        let comps = components(path);
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            if !matches!(self.inodes[cur as usize].kind, Kind::Dir(_)) {
                return Err(errno::ENOTDIR);
            }
            if *c == b".." {
                cur = self.parent_of(cur);
                continue;
            }
            let next = self.child(cur, c).ok_or(errno::ENOENT)?;
            if let Kind::Symlink(t) = &self.inodes[next as usize].kind {
                if !last || follow {
                    cur = self.resolve_depth(cur, t, true, depth + 1)?;
                    continue;
                }
            }
            cur = next;
        }
        if path.ends_with(b"/") && !matches!(self.inodes[cur as usize].kind, Kind::Dir(_)) {
            return Err(errno::ENOTDIR);
        }
        Ok(cur)
    }

    /// The absolute path of directory `ino`.
    pub fn path_of(&self, ino: u64) -> Vec<u8> {
        let mut parts = Vec::new();
        let mut cur = ino;
        let mut guard = 0;
        while cur != ROOT && guard < 256 {
            let p = self.parent_of(cur);
            if let Kind::Dir(m) = &self.inodes[p as usize].kind {
                if let Some((n, _)) = m.iter().find(|(_, &c)| c == cur) {
                    parts.push(n.clone());
                }
            }
            cur = p;
            guard += 1;
        }
        if parts.is_empty() {
            return b"/".to_vec();
        }
        let mut out = Vec::new();
        for p in parts.iter().rev() {
            out.push(b'/');
            out.extend_from_slice(p);
        }
        out
    }

    /// Read file bytes at `pos` into `buf`; returns the count.
    pub fn read(&self, ino: u64, pos: u64, buf: &mut [u8]) -> Result<usize, i64> {
        let i = &self.inodes[ino as usize];
        match i.kind {
            Kind::File { offset } => {
                if pos >= i.size {
                    return Ok(0);
                }
                let n = ((i.size - pos) as usize).min(buf.len());
                let disk = self.disk.as_ref().ok_or(errno::EIO)?;
                disk.read_at(offset + pos, &mut buf[..n])
                    .map_err(|_| errno::EIO)?;
                Ok(n)
            }
            Kind::CharDev(d) if d & 0xff == 5 => {
                buf.fill(0);
                Ok(buf.len())
            }
            _ => Ok(0),
        }
    }

    /// Check that the inode table is a consistent tree: every directory
    /// entry has a proper name (not empty, `.` or `..`, no `/`) and points
    /// at an existing inode, every directory's parent is a directory, and
    /// every file's bytes lie inside the image. For tests (fuzzing).
    pub fn check(&self) -> Result<(), String> {
        let disk_size = self.disk.as_ref().map_or(0, |d| d.size());
        let n = self.inodes.len() as u64;
        for (i, node) in self.inodes.iter().enumerate().skip(1) {
            if node.ino != i as u64 {
                return Err(format!("inode {i} says it is {}", node.ino));
            }
            match self.inodes.get(node.parent as usize).map(|p| &p.kind) {
                Some(Kind::Dir(_)) if node.parent != 0 => {}
                _ => return Err(format!("inode {i}: parent {} is no directory", node.parent)),
            }
            match &node.kind {
                Kind::Dir(m) => {
                    for (name, &c) in m {
                        if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/')
                        {
                            return Err(format!("directory {i} has an entry named {name:?}"));
                        }
                        if c == 0 || c >= n {
                            return Err(format!("directory {i}: {name:?} -> missing inode {c}"));
                        }
                    }
                }
                Kind::File { offset } => {
                    if offset.checked_add(node.size).is_none_or(|e| e > disk_size) {
                        return Err(format!(
                            "file {i}: {} bytes at {offset} outside the {disk_size}-byte image",
                            node.size
                        ));
                    }
                }
                Kind::Symlink(_) | Kind::CharDev(_) => {}
            }
        }
        Ok(())
    }

    /// The entries of directory `ino` (including `.` and `..`).
    pub fn entries(&self, ino: u64) -> Vec<(Vec<u8>, u64)> {
        let mut v = vec![(b".".to_vec(), ino), (b"..".to_vec(), self.parent_of(ino))];
        if let Kind::Dir(m) = &self.inodes[ino as usize].kind {
            v.extend(m.iter().map(|(n, i)| (n.clone(), *i)));
        }
        v
    }
}

fn self_set_mode(i: &mut Inode, mode: u32, mtime: u64) {
    i.mode = S_IFDIR | mode;
    i.mtime = mtime;
}

/// Build a tar image of `dir` at `image` (what `tar -cf IMAGE -C DIR .`
/// does), following no symlinks.
pub fn build_image(dir: &Path, image: &Path) -> Result<u64, FsError> {
    let err = |source| FsError::Build {
        path: image.display().to_string(),
        source,
    };
    let f = std::fs::File::create(image).map_err(err)?;
    let mut b = tar::Builder::new(f);
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).map_err(err)?;
    let f = b.into_inner().map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok(f.metadata().map_err(err)?.len())
}
