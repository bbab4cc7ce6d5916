//! The vproc's file tree (a small VFS).
//!
//! Backends, below an in-memory writable overlay:
//!
//! - a host directory tree, read-only (the default root is the host's `/`,
//!   whatever the invoking user can read; `--root DIR` picks another),
//!   reached only beneath its root ([`host`]);
//! - a tar image on a [`Disk`] (`--disk fs.tar`, [`tar`]);
//! - nothing (an empty root, for programs handed over in memory).
//!
//! Programs may create, write, truncate, rename and delete files and make
//! and remove directories anywhere: the changes live in memory
//! ([`overlay`]) and never reach the host, except in a directory exposed on
//! purpose with `--bind HOST[:GUEST]:rw`, whose changes are made on the
//! host. `/dev` and `/proc` are synthetic. Paths are resolved by the
//! vkernel ([`path`]) and cannot leave the root.
//!
//! Every file the vprocs reach is a node of one inode table ([`node`]); a
//! node's handle (`u64`) names it for the syscall layer ([`crate::files::FileKind::Inode`]).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::devices::{Disk, DiskError};

mod backing;
pub mod entries;
pub mod event;
pub mod host;
pub mod inet;
pub mod lock;
mod memfd;
mod mount;
pub mod mqueue;
pub mod node;
pub mod notify;
mod overlay;
pub mod path;
pub mod pipe;
pub mod pty;
mod shared;
pub mod socket;
pub mod sparse;
mod synthetic;
mod tar;
pub mod termios;
#[cfg(test)]
mod tests;
pub mod xattr;

pub use backing::Backing;
pub use memfd::{F_SEAL_FUTURE_WRITE, F_SEAL_GROW, F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_WRITE};
pub use mount::{Bind, RootSpec};
pub use node::{Errno, Ts};
pub use path::{
    pid_items, proc_handle, proc_item, NoProc, ProcItem, ProcView, NET_ITEMS, PID_ITEMS, PROC_BASE,
    TOP_ITEMS,
};
pub use shared::SharedPages;
pub use tar::build_image;

use host::HostTree;
use node::{Body, Dir, Meta, Node, Slot, Table, MEM_DEV, SYN_DEV, VERSION_DEV};

/// Errors of setting up the file tree.
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
    /// A host directory (root or bind) cannot be used.
    #[error("{path}: {why}")]
    Host {
        /// The host path.
        path: String,
        /// Why, and what to do.
        why: String,
    },
    /// A `--bind` argument is malformed.
    #[error(
        "--bind {arg:?}: {why}; the form is HOST[:GUEST][:rw], e.g. --bind /srv/data:/data:rw"
    )]
    BindSyntax {
        /// The argument.
        arg: String,
        /// What is wrong.
        why: String,
    },
}

/// Where a file or directory comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The tar image.
    Tar,
    /// A host tree.
    Host,
    /// Memory (the overlay).
    Memory,
    /// The synthetic /dev.
    Synthetic,
    /// /proc.
    Proc,
}

/// Kind of an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Regular file.
    File {
        /// Where its bytes are.
        source: Source,
    },
    /// Directory.
    Dir(Source),
    /// Symbolic link (its target; empty for /proc's, whose targets are
    /// per process).
    Symlink(Vec<u8>),
    /// Character device (rdev: major << 8 | minor).
    CharDev(u32),
    /// A host FIFO, socket or block device (shown, never opened).
    Special,
    /// A FIFO made in the overlay (see `Fs::mkfifo`): opens connect to
    /// this pipe.
    Fifo(crate::fs::pipe::Shared<crate::fs::pipe::Pipe>),
    /// An AF_UNIX socket bound in the overlay (`Fs::mksock`): connects
    /// meet at this port.
    Socket(crate::fs::pipe::Shared<crate::fs::socket::Port>),
}

/// A snapshot of one inode.
#[derive(Clone, Debug)]
pub struct Inode {
    /// Its handle.
    pub ino: u64,
    /// Reported device.
    pub dev: u64,
    /// Reported inode number.
    pub st_ino: u64,
    /// Mode bits (type and permissions).
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (seconds).
    pub mtime: u64,
    /// Access, modification and change times.
    pub times: [Ts; 3],
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Links.
    pub nlink: u64,
    /// Device number of a device file.
    pub rdev: u64,
    /// 512-byte blocks.
    pub blocks: u64,
    /// What it is.
    pub kind: Kind,
    /// Parent directory (the root is its own parent).
    pub parent: u64,
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Name.
    pub name: Vec<u8>,
    /// Reported inode number.
    pub ino: u64,
    /// `DT_*` type.
    pub dtype: u8,
}

/// S_IFDIR.
pub const S_IFDIR: u32 = 0o040000;
/// S_IFREG.
pub const S_IFREG: u32 = 0o100000;
/// S_IFLNK.
pub const S_IFLNK: u32 = 0o120000;
/// S_IFIFO.
pub const S_IFIFO: u32 = 0o010000;
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

/// Root inode number.
pub const ROOT: u64 = 1;

/// Host files kept open for reading at most (then the cache restarts).
const OPEN_HOST_FILES: usize = 256;

/// The file tree, shared by every vproc of a virtual kernel.
pub struct Fs {
    disk: Option<Disk>,
    trees: Vec<HostTree>,
    table: Mutex<Table>,
    host_files: Mutex<HashMap<(u64, bool), Arc<File>>>,
    proc_dir: u64,
    locks: Arc<lock::Locks>,
    /// Pages of shared file mappings, by node (see `shared`).
    shared: shared::SharedMap,
    /// AF_UNIX sockets bound to abstract names (Linux's abstract
    /// namespace; one per virtual kernel, as the tree is).
    abstract_names: Mutex<HashMap<Vec<u8>, pipe::WeakShared<socket::Port>>>,
    /// The seals of memfd files (F_ADD_SEALS), by node.
    seals: Mutex<HashMap<u64, u32>>,
    /// inotify watches on its nodes.
    notifier: Arc<notify::Notifier>,
    /// The loopback network's bound ports (AF_INET, AF_INET6).
    inet: Mutex<inet::InetPorts>,
    /// The pseudo-terminal pairs (`/dev/pts`).
    devpts: pty::Devpts,
    /// The `/dev/pts` directory (0: the tree has none).
    pts_dir: u64,
    /// Extended attributes of the nodes.
    xattrs: xattr::Xattrs,
    /// POSIX message queues by name.
    mqueues: mqueue::MqNames,
}

impl std::fmt::Debug for Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fs")
            .field("trees", &self.trees)
            .field("nodes", &self.lock().nodes.len())
            .finish()
    }
}

/// The path components of `p` (no empty ones, no `.`).
pub(crate) fn components(p: &[u8]) -> Vec<&[u8]> {
    p.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect()
}

/// The `DT_*` type of `mode`.
pub fn dtype_of(mode: u32) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => libc::DT_DIR,
        libc::S_IFLNK => libc::DT_LNK,
        libc::S_IFCHR => libc::DT_CHR,
        libc::S_IFBLK => libc::DT_BLK,
        libc::S_IFIFO => libc::DT_FIFO,
        libc::S_IFSOCK => libc::DT_SOCK,
        _ => libc::DT_REG,
    }
}

impl Fs {
    /// The advisory file locks of the vprocs of this tree (fcntl, flock).
    pub fn locks(&self) -> &Arc<lock::Locks> {
        &self.locks
    }

    /// An empty tree (just `/`, `/dev`, `/proc` and `/tmp`).
    pub fn empty() -> Fs {
        Fs::new(RootSpec::Empty, &[]).expect("an empty tree needs no host")
    }

    /// A tree whose root is the tar image on `disk`.
    pub fn mount(disk: Disk) -> Result<Fs, FsError> {
        Fs::new(RootSpec::Tar(disk), &[])
    }

    /// A tree whose root is the host directory `root`, read-only.
    pub fn host(root: &Path) -> Result<Fs, FsError> {
        Fs::new(RootSpec::Host(root.to_path_buf()), &[])
    }

    /// A tree with root `root` and the host directories `binds`.
    pub fn new(root: RootSpec, binds: &[Bind]) -> Result<Fs, FsError> {
        let mut t = Table::default();
        t.alloc(Node::new(0, b"", Meta::default(), Body::Free));
        let mut fs = Fs {
            disk: None,
            trees: Vec::new(),
            table: Mutex::new(Table::default()),
            host_files: Mutex::new(HashMap::new()),
            proc_dir: 0,
            locks: Arc::default(),
            shared: Default::default(),
            abstract_names: Mutex::default(),
            seals: Mutex::default(),
            notifier: Arc::default(),
            inet: Mutex::default(),
            devpts: pty::Devpts::default(),
            pts_dir: 0,
            xattrs: xattr::Xattrs::default(),
            mqueues: mqueue::MqNames::default(),
        };
        let shadow = match root {
            RootSpec::Empty => {
                let mut m = Meta::fresh(S_IFDIR | 0o755, 1);
                m.nlink = 2;
                t.alloc(Node::new(ROOT, b"", m, Body::Dir(Dir::new(Source::Memory))));
                false
            }
            RootSpec::Tar(disk) => {
                let mut m = Meta::fresh(S_IFDIR | 0o755, 1);
                (m.dev, m.mtime, m.atime, m.ctime) =
                    (node::TAR_DEV, Ts::default(), Ts::default(), Ts::default());
                t.alloc(Node::new(ROOT, b"", m, Body::Dir(Dir::new(Source::Tar))));
                tar::load(&mut t, &disk)?;
                fs.disk = Some(disk);
                false
            }
            RootSpec::Host(p) => {
                let (tree, st) = open_tree(&p, false)?;
                fs.trees.push(tree);
                let mut d = Dir::new(Source::Host);
                (d.host, d.complete) = (Some((0, Vec::new())), false);
                t.alloc(Node::new(ROOT, b"", Meta::from_host(&st), Body::Dir(d)));
                true
            }
        };
        fs.add_synthetic(&mut t, shadow);
        fs.table = Mutex::new(t);
        for b in binds {
            fs.add_bind(b)?;
        }
        Ok(fs)
    }

    /// Expose the host directory of `b` at its guest path.
    fn add_bind(&mut self, b: &Bind) -> Result<(), FsError> {
        let (tree, st) = open_tree(&b.host, b.writable)?;
        let idx = self.trees.len();
        self.trees.push(tree);
        let guest = String::from_utf8_lossy(&b.guest).into_owned();
        let fail = |why: String| FsError::Host {
            path: b.host.display().to_string(),
            why,
        };
        let mut cur = ROOT;
        for c in components(&b.guest) {
            cur = match self.walk(&NoProc, cur, c, true) {
                Ok(h) if self.is_dir_handle(h) => h,
                Ok(_) => {
                    return Err(fail(format!(
                        "cannot bind it at {guest}: {} is not a directory",
                        String::from_utf8_lossy(c)
                    )))
                }
                Err(_) => self
                    .mkdir(cur, c, 0o755)
                    .map_err(|e| fail(format!("cannot make {guest} for it (errno {e})")))?,
            };
        }
        if cur == ROOT || cur == self.proc_dir {
            return Err(fail(format!("cannot bind it over {guest}")));
        }
        let mut t = self.lock();
        let n = t.get_mut(cur).map_err(|_| fail("vanished".into()))?;
        let mut d = Dir::new(Source::Host);
        (d.host, d.complete) = (Some((idx, Vec::new())), false);
        n.body = Body::Dir(d);
        n.meta = Meta::from_host(&st);
        Ok(())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on node `h`.
    pub(crate) fn with_node<T>(&self, h: u64, f: impl FnOnce(&Node) -> T) -> Result<T, Errno> {
        let t = self.lock();
        t.get(h).map(f)
    }

    /// The target of symlink node `h` (None if `h` is no symlink).
    pub fn link_target(&self, h: u64) -> Option<Vec<u8>> {
        self.with_node(h, |n| match &n.body {
            Body::Symlink(t) => Some(t.clone()),
            _ => None,
        })
        .ok()
        .flatten()
    }

    /// The entry `name` of directory `dir`, looked up on the host if it is
    /// not known yet.
    pub(crate) fn child(&self, dir: u64, name: &[u8]) -> Result<u64, Errno> {
        let mut t = self.lock();
        self.child_locked(&mut t, dir, name)
    }

    pub(crate) fn child_locked(&self, t: &mut Table, dir: u64, name: &[u8]) -> Result<u64, Errno> {
        let d = t.get(dir)?.dir().ok_or(libc::ENOTDIR as i64)?;
        let slot = d.entries.get(name).cloned();
        let complete = d.complete;
        let host = d.host.clone();
        match slot {
            Some(Slot::Node(h)) => return Ok(h),
            Some(Slot::Gone) => return Err(libc::ENOENT as i64),
            None if complete => return Err(libc::ENOENT as i64),
            _ => {}
        }
        let Some((tree, rel)) = host else {
            return Err(libc::ENOENT as i64);
        };
        let rel = host::join(&rel, name);
        let st = self.trees[tree]
            .lstat(&rel)
            .map_err(|e| host::errno_of(&e))?;
        let body = match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                let mut d = Dir::new(Source::Host);
                (d.host, d.complete) = (Some((tree, rel)), false);
                Body::Dir(d)
            }
            libc::S_IFLNK => Body::Symlink(
                self.trees[tree]
                    .readlink(&rel)
                    .map_err(|e| host::errno_of(&e))?,
            ),
            libc::S_IFREG => Body::Host { tree, rel },
            _ => Body::Special,
        };
        let h = t.alloc(Node::new(dir, name, Meta::from_host(&st), body));
        t.link(dir, name, h);
        Ok(h)
    }

    /// Resolve `path` relative to directory `cwd`, with no process (so an
    /// empty `/proc`); follow a final symlink when `follow`.
    pub fn resolve(&self, cwd: u64, path: &[u8], follow: bool) -> Result<u64, Errno> {
        self.walk(&NoProc, cwd, path, follow)
    }

    /// A snapshot of inode `h` (a made-up one for a stale handle).
    pub fn inode(&self, h: u64) -> Inode {
        if let Some((_, item)) = proc_item(h) {
            let (mode, kind) = if item.is_dir() {
                (S_IFDIR | 0o555, Kind::Dir(Source::Proc))
            } else if item.is_link() {
                (S_IFLNK | 0o777, Kind::Symlink(Vec::new()))
            } else {
                // Linux's modes: a process's memory and auxv are its own.
                let perm = match item {
                    ProcItem::Mem => 0o600,
                    ProcItem::Auxv | ProcItem::Environ => 0o400,
                    _ => 0o444,
                };
                (
                    S_IFREG | perm,
                    Kind::File {
                        source: Source::Proc,
                    },
                )
            };
            return Inode {
                ino: h,
                dev: 0x4,
                st_ino: h & 0xffff_ffff_ffff,
                mode,
                size: 0,
                mtime: 0,
                times: [Ts::default(); 3],
                uid: 0,
                gid: 0,
                nlink: 1,
                rdev: 0,
                blocks: 0,
                kind,
                parent: self.parent_handle(h),
            };
        }
        let t = self.lock();
        let Ok(n) = t.get(h) else {
            return Inode {
                ino: h,
                dev: MEM_DEV,
                st_ino: 0,
                mode: S_IFREG,
                size: 0,
                mtime: 0,
                times: [Ts::default(); 3],
                uid: 0,
                gid: 0,
                nlink: 0,
                rdev: 0,
                blocks: 0,
                kind: Kind::File {
                    source: Source::Memory,
                },
                parent: ROOT,
            };
        };
        let kind = match &n.body {
            Body::Tar { .. } => Kind::File {
                source: Source::Tar,
            },
            Body::Host { .. } => Kind::File {
                source: Source::Host,
            },
            Body::Mem(_) | Body::Free => Kind::File {
                source: Source::Memory,
            },
            Body::Dir(d) => Kind::Dir(d.source),
            Body::Symlink(t) => Kind::Symlink(t.clone()),
            Body::Dev(r) => Kind::CharDev(*r),
            Body::Special => Kind::Special,
            Body::Fifo(p) => Kind::Fifo(p.clone()),
            Body::Socket(p) => Kind::Socket(p.clone()),
        };
        let m = &n.meta;
        Inode {
            ino: h,
            dev: m.dev,
            st_ino: m.ino,
            mode: m.mode,
            size: n.size(),
            mtime: m.mtime.sec.max(0) as u64,
            times: [m.atime, m.mtime, m.ctime],
            uid: m.uid,
            gid: m.gid,
            nlink: m.nlink,
            rdev: m.rdev,
            blocks: n.blocks(),
            kind,
            parent: n.parent,
        }
    }

    /// An open host file of node `h` (cached).
    fn host_file(&self, h: u64, tree: usize, rel: &[u8], write: bool) -> Result<Arc<File>, Errno> {
        let key = (h, write);
        let mut c = self.host_files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = c.get(&key) {
            return Ok(f.clone());
        }
        let f = Arc::new(
            self.trees[tree]
                .open_file(rel, write)
                .map_err(|e| host::errno_of(&e))?,
        );
        if c.len() >= OPEN_HOST_FILES {
            c.clear();
        }
        c.insert(key, f.clone());
        Ok(f)
    }

    /// Read file bytes at `pos` into `buf`; returns the count.
    pub fn read(&self, h: u64, pos: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let n = self.read_file(h, pos, buf)?;
        self.shared_read(h, pos, &mut buf[..n]);
        Ok(n)
    }

    /// [`Fs::read`] without the pages of shared file mappings.
    fn read_file(&self, h: u64, pos: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        enum Src {
            Tar(u64, u64),
            Host(usize, Vec<u8>),
            Mem(Arc<std::sync::RwLock<sparse::SparseFile>>),
            Dev(u32),
        }
        let src = {
            let t = self.lock();
            let n = t.get(h)?;
            match &n.body {
                Body::Tar { offset } => Src::Tar(*offset, n.meta.size),
                Body::Host { tree, rel } => Src::Host(*tree, rel.clone()),
                Body::Mem(d) => Src::Mem(d.clone()),
                Body::Dev(r) => Src::Dev(*r),
                Body::Dir(_) => return Err(libc::EISDIR as i64),
                _ => return Err(libc::EINVAL as i64),
            }
        };
        match src {
            Src::Tar(offset, size) => {
                if pos >= size {
                    return Ok(0);
                }
                let n = usize::try_from(size - pos)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let disk = self.disk.as_ref().ok_or(errno::EIO)?;
                disk.read_at(offset + pos, &mut buf[..n])
                    .map_err(|_| errno::EIO)?;
                Ok(n)
            }
            Src::Host(tree, rel) => {
                let f = self.host_file(h, tree, &rel, false)?;
                loop {
                    match f.read_at(buf, pos) {
                        Ok(n) => return Ok(n),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(host::errno_of(&e)),
                    }
                }
            }
            Src::Mem(d) => {
                let d = d.read().unwrap_or_else(|e| e.into_inner());
                Ok(d.read_at(pos, buf))
            }
            Src::Dev(r) => Ok(match r & 0xff {
                3 => 0,
                8 | 9 => {
                    crate::random_bytes(buf);
                    buf.len()
                }
                _ => {
                    buf.fill(0);
                    buf.len()
                }
            }),
        }
    }

    /// The listing of directory `h`, in a stable order (a host directory's
    /// own order, then names made in the overlay: see [`entries`]): `None`
    /// marks a deleted entry (kept so that positions do not move). `.` and
    /// `..` are not included.
    pub fn list(&self, h: u64) -> Result<Vec<Option<DirEntry>>, Errno> {
        let mut t = self.lock();
        let d = t.get(h)?.dir().ok_or(libc::ENOTDIR as i64)?;
        if let (false, Some((tree, rel))) = (d.complete, d.host.clone()) {
            let host = self.trees[tree]
                .list(&rel)
                .map_err(|e| host::errno_of(&e))?;
            let d = t.get_mut(h)?.dir_mut().ok_or(libc::ENOTDIR as i64)?;
            // The host's order (see `entries`).
            d.entries.merge_host(
                host.into_iter()
                    .map(|(name, ino, ty)| (name, Slot::Lazy(ino, ty)))
                    .collect(),
            );
            d.complete = true;
        }
        let d = t.get(h)?.dir().ok_or(libc::ENOTDIR as i64)?;
        Ok(d.entries
            .iter()
            .map(|(name, slot)| match slot {
                Slot::Node(c) => t.get(*c).ok().map(|n| DirEntry {
                    name: name.clone(),
                    ino: n.meta.ino,
                    dtype: dtype_of(n.meta.mode),
                }),
                Slot::Lazy(ino, ty) => Some(DirEntry {
                    name: name.clone(),
                    ino: *ino,
                    dtype: *ty,
                }),
                Slot::Gone => None,
            })
            .collect())
    }

    /// The entries of directory `h` as handles (including `.` and `..`);
    /// every entry is looked up.
    pub fn entries(&self, h: u64) -> Vec<(Vec<u8>, u64)> {
        let mut v = vec![(b".".to_vec(), h), (b"..".to_vec(), self.parent_handle(h))];
        for e in self.list(h).unwrap_or_default().into_iter().flatten() {
            if let Ok(c) = self.child(h, &e.name) {
                v.push((e.name, c));
            }
        }
        v
    }

    /// The absolute path of `h` (as the vproc sees it).
    pub fn path_of(&self, h: u64) -> Vec<u8> {
        let mut parts = Vec::new();
        let mut cur = h;
        for _ in 0..4096 {
            if cur == ROOT {
                break;
            }
            let name = match proc_item(cur) {
                Some((pid, ProcItem::PidDir)) => pid.to_string().into_bytes(),
                Some((_, item)) => item.name(),
                None => match self.with_node(cur, |n| n.name.clone()) {
                    Ok(n) => n,
                    Err(_) => break,
                },
            };
            parts.push(name);
            cur = self.parent_handle(cur);
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

    /// The in-memory overlay's budget and the bytes its files hold
    /// (statfs).
    pub fn usage(&self) -> (u64, u64) {
        (node::MEM_BUDGET, self.lock().mem_bytes)
    }

    /// The `/proc` directory's handle.
    pub fn proc_dir(&self) -> u64 {
        self.proc_dir
    }

    /// The identity of node `h`'s contents (see [`Backing::file_id`]).
    pub fn file_id(&self, h: u64) -> (u64, u64) {
        self.with_node(h, |n| {
            if n.version != 0 {
                (VERSION_DEV, n.version)
            } else {
                (n.meta.dev, n.meta.ino)
            }
        })
        .unwrap_or((VERSION_DEV, 0))
    }

    /// Check that the inode table is a consistent tree: every directory
    /// entry has a proper name (not empty, `.` or `..`, no `/`) and points
    /// at an existing node, every node's parent is a directory, and every
    /// tar file's bytes lie inside the image. For tests (fuzzing).
    pub fn check(&self) -> Result<(), String> {
        let disk_size = self.disk.as_ref().map_or(0, |d| d.size());
        let t = self.lock();
        for (i, node) in t.nodes.iter().enumerate().skip(1) {
            if matches!(node.body, Body::Free) {
                continue;
            }
            if !t.get(node.parent).is_ok_and(|p| p.dir().is_some()) {
                return Err(format!("inode {i}: parent {} is no directory", node.parent));
            }
            match &node.body {
                Body::Dir(d) => {
                    for (name, slot) in &d.entries {
                        if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/')
                        {
                            return Err(format!("directory {i} has an entry named {name:?}"));
                        }
                        if let Slot::Node(c) = slot {
                            if t.get(*c).is_err() {
                                return Err(format!(
                                    "directory {i}: {name:?} -> missing inode {c}"
                                ));
                            }
                        }
                    }
                }
                Body::Tar { offset }
                    if offset
                        .checked_add(node.meta.size)
                        .is_none_or(|e| e > disk_size) =>
                {
                    return Err(format!(
                        "file {i}: {} bytes at {offset} outside the {disk_size}-byte image",
                        node.meta.size
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Open `path` as a tree and describe its root.
fn open_tree(path: &Path, writable: bool) -> Result<(HostTree, libc::stat), FsError> {
    let fail = |why: String| FsError::Host {
        path: path.display().to_string(),
        why,
    };
    let tree = HostTree::open(path, writable).map_err(|e| {
        fail(format!(
            "cannot open it as a directory: {e}; give an existing directory you can read"
        ))
    })?;
    let st = tree
        .lstat(b"")
        .map_err(|e| fail(format!("cannot stat it: {e}")))?;
    Ok((tree, st))
}
