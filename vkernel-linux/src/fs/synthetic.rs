//! The synthetic parts of the tree: `/dev` (device nodes, `/dev/pts`,
//! `/dev/shm`), `/proc` and `/tmp`.

use super::node::{self, Body, Dir, Meta, Node, Table};
use super::{tar, Fs, Source, ROOT, SYN_DEV};
use libc::{S_IFCHR, S_IFDIR, S_IFLNK};

impl Fs {
    /// /dev (merged into an image's own, or replacing the host's), /proc
    /// and /tmp.
    pub(super) fn add_synthetic(&mut self, t: &mut Table, shadow: bool) {
        let syn_dir = |t: &mut Table, name: &[u8], mode: u32| {
            let mut m = Meta::fresh(S_IFDIR | mode, 0);
            (m.dev, m.ino, m.nlink) = (SYN_DEV, t.nodes.len() as u64, 2);
            let h = t.alloc(Node::new(
                ROOT,
                name,
                m,
                Body::Dir(Dir::new(Source::Synthetic)),
            ));
            t.link(ROOT, name, h);
            h
        };
        let dev = if shadow {
            syn_dir(t, b"dev", 0o755)
        } else {
            tar::mkdir_in(t, ROOT, b"dev")
        };
        let has = |t: &Table, d: u64, n: &[u8]| {
            t.get(d)
                .ok()
                .and_then(|x| x.dir())
                .is_some_and(|x| x.entries.contains_key(n))
        };
        for (name, major, minor) in [
            (&b"null"[..], 1u32, 3u32),
            (b"zero", 1, 5),
            (b"full", 1, 7),
            (b"random", 1, 8),
            (b"urandom", 1, 9),
            (b"tty", 5, 0),
            (b"ptmx", 5, 2),
        ] {
            if !has(t, dev, name) {
                let rdev = major << 8 | minor;
                let mut m = Meta::fresh(S_IFCHR | 0o666, 0);
                (m.dev, m.ino, m.rdev) = (SYN_DEV, t.nodes.len() as u64, rdev as u64);
                let h = t.alloc(Node::new(dev, name, m, Body::Dev(rdev)));
                t.link(dev, name, h);
            }
        }
        for (name, target) in [
            (&b"stdin"[..], &b"/proc/self/fd/0"[..]),
            (b"stdout", b"/proc/self/fd/1"),
            (b"stderr", b"/proc/self/fd/2"),
            (b"fd", b"/proc/self/fd"),
        ] {
            if !has(t, dev, name) {
                let mut m = Meta::fresh(S_IFLNK | 0o777, 0);
                (m.dev, m.ino) = (SYN_DEV, t.nodes.len() as u64);
                let h = t.alloc(Node::new(dev, name, m, Body::Symlink(target.to_vec())));
                t.link(dev, name, h);
            }
        }
        self.pts_dir = match t
            .get(dev)
            .ok()
            .and_then(|x| x.dir()?.entries.get(&b"pts"[..]))
        {
            Some(node::Slot::Node(h)) => *h,
            _ => t.add_mem(
                dev,
                b"pts",
                S_IFDIR | 0o755,
                Body::Dir(Dir::new(Source::Memory)),
            ),
        };
        if !has(t, dev, b"shm") {
            t.add_mem(
                dev,
                b"shm",
                S_IFDIR | 0o1777,
                Body::Dir(Dir::new(Source::Memory)),
            );
        }
        self.proc_dir = syn_dir(t, b"proc", 0o555);
        if let Ok(n) = t.get_mut(self.proc_dir) {
            n.meta.dev = 0x4;
            if let Some(d) = n.dir_mut() {
                d.source = Source::Proc;
            }
        }
        // /tmp: the host's, an image's, or a new one.
        let host_tmp = shadow
            && self.trees[0]
                .lstat(b"tmp")
                .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
        if !host_tmp && !has(t, ROOT, b"tmp") {
            t.add_mem(
                ROOT,
                b"tmp",
                S_IFDIR | 0o1777,
                Body::Dir(Dir::new(Source::Memory)),
            );
        }
    }
}
