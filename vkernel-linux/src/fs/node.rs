//! The inode table behind [`super::Fs`]: one [`Node`] per file the vprocs
//! have reached, whatever backend it comes from.
//!
//! A node's handle (its index in the table) never changes and is never
//! reused; the numbers `stat` reports are [`Meta::dev`] / [`Meta::ino`]
//! (the host's for host files, made up for the others).
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::sync::{Arc, RwLock};

use super::entries::Entries;
use super::sparse::SparseFile;
use super::Source;

/// An errno for the vproc.
pub type Errno = i64;

/// Device number reported for files of the tar image.
pub const TAR_DEV: u64 = 0x801;
/// Device number reported for files that live in memory (the overlay).
pub const MEM_DEV: u64 = 0x2a;
/// Device number of the synthetic /dev and /proc directories.
pub const SYN_DEV: u64 = 0x5;
/// Device part of [`super::Backing::file_id`] for contents changed through
/// the vkernel (each change gets a new number).
pub const VERSION_DEV: u64 = u64::MAX;

/// A time stamp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ts {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds.
    pub nsec: u32,
}

impl Ts {
    /// The host's clock now.
    pub fn now() -> Ts {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ts {
            sec: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
        }
    }
}

/// What `stat` reports of a node.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    /// Type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Links.
    pub nlink: u64,
    /// Size (for in-memory files, the live length is used instead).
    pub size: u64,
    /// Access time.
    pub atime: Ts,
    /// Modification time.
    pub mtime: Ts,
    /// Change time.
    pub ctime: Ts,
    /// Reported device.
    pub dev: u64,
    /// Reported inode number.
    pub ino: u64,
    /// Device number of a device file.
    pub rdev: u64,
    /// 512-byte blocks the host reports (None: computed from the size).
    pub blocks: Option<u64>,
}

impl Meta {
    /// From a host `stat`.
    pub fn from_host(st: &libc::stat) -> Meta {
        Meta {
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            nlink: st.st_nlink,
            size: st.st_size as u64,
            atime: Ts {
                sec: st.st_atime,
                nsec: st.st_atime_nsec as u32,
            },
            mtime: Ts {
                sec: st.st_mtime,
                nsec: st.st_mtime_nsec as u32,
            },
            ctime: Ts {
                sec: st.st_ctime,
                nsec: st.st_ctime_nsec as u32,
            },
            dev: st.st_dev,
            ino: st.st_ino,
            rdev: st.st_rdev,
            blocks: Some(st.st_blocks as u64),
        }
    }

    /// A new in-memory object of `mode` created now.
    pub fn fresh(mode: u32, ino: u64) -> Meta {
        let now = Ts::now();
        Meta {
            mode,
            nlink: 1,
            atime: now,
            mtime: now,
            ctime: now,
            dev: MEM_DEV,
            ino,
            ..Default::default()
        }
    }
}

/// One entry of a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// A node of the table.
    Node(u64),
    /// A host entry not looked at yet: its host inode and `DT_*` type.
    Lazy(u64, u8),
    /// Deleted (a whiteout over the lower layer); kept so that directory
    /// positions stay put while a program deletes what it lists.
    Gone,
}

/// A directory.
#[derive(Clone, Debug)]
pub struct Dir {
    /// Known entries, in listing order (positions are indices).
    pub entries: Entries,
    /// The host directory below it (tree index, path in the tree).
    pub host: Option<(usize, Vec<u8>)>,
    /// Every host entry is in `entries` (the host was listed).
    pub complete: bool,
    /// Where it comes from.
    pub source: Source,
}

impl Dir {
    /// An empty directory of `source` with no host part.
    pub fn new(source: Source) -> Dir {
        Dir {
            entries: Entries::new(),
            host: None,
            complete: true,
            source,
        }
    }
}

/// What a node is.
#[derive(Clone, Debug)]
pub enum Body {
    /// Deleted and closed: nothing left.
    Free,
    /// A file of the tar image, its bytes at `offset`.
    Tar {
        /// Offset in the image.
        offset: u64,
    },
    /// A host file.
    Host {
        /// Tree index.
        tree: usize,
        /// Path in the tree.
        rel: Vec<u8>,
    },
    /// A file in memory (created by a vproc, or copied up), sparse.
    Mem(Arc<RwLock<SparseFile>>),
    /// A directory.
    Dir(Dir),
    /// A symlink and its target.
    Symlink(Vec<u8>),
    /// A character device of the synthetic /dev (its rdev).
    Dev(u32),
    /// A host FIFO, socket or device: visible, never opened.
    Special,
    /// A FIFO made in the overlay (mkfifo): the pipe its opens connect to.
    Fifo(crate::fs::pipe::Shared<crate::fs::pipe::Pipe>),
    /// A socket bound in the overlay: the port its connects meet at.
    Socket(crate::fs::pipe::Shared<crate::fs::socket::Port>),
}

/// One node.
#[derive(Clone, Debug)]
pub struct Node {
    /// Parent directory (the root is its own parent).
    pub parent: u64,
    /// Its name in the parent.
    pub name: Vec<u8>,
    /// What stat says.
    pub meta: Meta,
    /// Contents.
    pub body: Body,
    /// Open files (and mappings) holding it.
    pub opens: u32,
    /// 0 while the contents are the lower layer's; else a number that
    /// changes with every change of the contents.
    pub version: u64,
}

impl Node {
    /// A new node.
    pub fn new(parent: u64, name: &[u8], meta: Meta, body: Body) -> Node {
        Node {
            parent,
            name: name.to_vec(),
            meta,
            body,
            opens: 0,
            version: 0,
        }
    }

    /// Its 512-byte blocks now.
    pub fn blocks(&self) -> u64 {
        match (&self.body, self.meta.blocks) {
            (Body::Mem(d), _) => d.read().map_or(0, |d| d.allocated() / 512),
            (_, Some(b)) => b,
            _ => self.size().div_ceil(512),
        }
    }

    /// The directory, if it is one.
    pub fn dir(&self) -> Option<&Dir> {
        match &self.body {
            Body::Dir(d) => Some(d),
            _ => None,
        }
    }

    /// The directory, mutably.
    pub fn dir_mut(&mut self) -> Option<&mut Dir> {
        match &mut self.body {
            Body::Dir(d) => Some(d),
            _ => None,
        }
    }

    /// Its size now.
    pub fn size(&self) -> u64 {
        match &self.body {
            Body::Mem(d) => d.read().map_or(0, |d| d.len()),
            Body::Symlink(t) => t.len() as u64,
            _ => self.meta.size,
        }
    }
}

/// The table.
#[derive(Debug, Default)]
pub struct Table {
    /// Nodes by handle (0 is unused).
    pub nodes: Vec<Node>,
    /// Source of version and in-memory inode numbers.
    pub counter: u64,
    /// Bytes held by in-memory files (see [`MEM_BUDGET`]).
    pub mem_bytes: u64,
}

/// Most bytes all in-memory files may hold together (then ENOSPC), like a
/// tmpfs size limit: what vprocs write costs host memory. Allocated pages
/// count (files are sparse), not sizes.
pub const MEM_BUDGET: u64 = 4 << 30;

/// Most memory one in-memory file may hold (then EFBIG): allocated pages,
/// not its size, which may go up to [`super::sparse::MAX_SIZE`].
pub const FILE_MAX: u64 = 1 << 30;

impl Table {
    /// Account for an in-memory file's allocated bytes going from `old` to
    /// `new`: ENOSPC past the budget, EFBIG past the file limit.
    pub fn charge(&mut self, old: u64, new: u64) -> Result<(), Errno> {
        if new > FILE_MAX {
            return Err(libc::EFBIG as Errno);
        }
        if new > old {
            let more = new - old;
            if self.mem_bytes + more > MEM_BUDGET {
                return Err(libc::ENOSPC as Errno);
            }
            self.mem_bytes += more;
        } else {
            self.mem_bytes = self.mem_bytes.saturating_sub(old - new);
        }
        Ok(())
    }

    /// Free node `h`'s contents (nothing names or holds it any more).
    pub fn free(&mut self, h: u64) {
        let len = match self.nodes.get(h as usize).map(|n| &n.body) {
            Some(Body::Mem(d)) => d.read().map_or(0, |d| d.allocated()),
            _ => 0,
        };
        self.mem_bytes = self.mem_bytes.saturating_sub(len);
        if let Some(n) = self.nodes.get_mut(h as usize) {
            n.body = Body::Free;
        }
    }

    /// Add a node; its handle.
    pub fn alloc(&mut self, node: Node) -> u64 {
        self.nodes.push(node);
        (self.nodes.len() - 1) as u64
    }

    /// A fresh number (in-memory inodes, versions).
    pub fn next_id(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Node `h`.
    pub fn get(&self, h: u64) -> Result<&Node, Errno> {
        match self.nodes.get(h as usize) {
            Some(n) if h != 0 && !matches!(n.body, Body::Free) => Ok(n),
            _ => Err(libc::ENOENT as i64),
        }
    }

    /// Node `h`, mutably.
    pub fn get_mut(&mut self, h: u64) -> Result<&mut Node, Errno> {
        match self.nodes.get_mut(h as usize) {
            Some(n) if h != 0 && !matches!(n.body, Body::Free) => Ok(n),
            _ => Err(libc::ENOENT as i64),
        }
    }

    /// Link `child` into `dir` as `name` (replacing what was there).
    pub fn link(&mut self, dir: u64, name: &[u8], child: u64) {
        if let Ok(Some(d)) = self.get_mut(dir).map(|n| n.dir_mut()) {
            d.entries.insert(name.to_vec(), Slot::Node(child));
        }
    }

    /// A new in-memory node in `dir` as `name`.
    pub fn add_mem(&mut self, dir: u64, name: &[u8], mode: u32, body: Body) -> u64 {
        let ino = self.next_id();
        let mut node = Node::new(dir, name, Meta::fresh(mode, ino), body);
        if matches!(node.body, Body::Mem(_)) {
            node.version = self.next_id();
        }
        if matches!(node.body, Body::Dir(_)) {
            node.meta.nlink = 2;
            node.meta.size = 4096;
        }
        let h = self.alloc(node);
        self.link(dir, name, h);
        h
    }

    /// A memory file with no name in any directory (memfd_create): it
    /// lives while something holds it open. `name` is what paths show.
    pub fn add_orphan(&mut self, name: &[u8], mode: u32, body: Body) -> u64 {
        let ino = self.next_id();
        let mut node = Node::new(super::ROOT, name, Meta::fresh(mode, ino), body);
        node.version = self.next_id();
        node.meta.nlink = 0;
        self.alloc(node)
    }

    /// One link of `h` is gone; free its contents if nothing holds it.
    pub fn drop_link(&mut self, h: u64) {
        if let Ok(n) = self.get_mut(h) {
            n.meta.nlink = n.meta.nlink.saturating_sub(1);
            if matches!(n.body, Body::Dir(_)) {
                n.meta.nlink = 0;
            }
            n.meta.ctime = Ts::now();
            if n.meta.nlink == 0 && n.opens == 0 {
                self.free(h);
            }
        }
    }
}
