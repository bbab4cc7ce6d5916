//! The tar image backend: an archive on a [`Disk`], scanned once (headers
//! only) into the inode table; file contents are read from the disk with
//! `pread` when a vproc reads them. Build an image from a directory with
//! `tar -cf fs.tar -C DIR .` (or `vkernel mkimage DIR fs.tar`).
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use super::node::{Body, Dir, Meta, Node, Slot, Table, Ts, TAR_DEV};
use super::{components, FsError, Source, ROOT, S_IFDIR, S_IFLNK, S_IFREG};
use crate::devices::Disk;

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

fn meta(t: &Table, mode: u32, mtime: u64, uid: u32, gid: u32, size: u64) -> Meta {
    let ts = Ts {
        sec: mtime as i64,
        nsec: 0,
    };
    Meta {
        mode,
        uid,
        gid,
        nlink: 1,
        size,
        atime: ts,
        mtime: ts,
        ctime: ts,
        dev: TAR_DEV,
        ino: t.nodes.len() as u64,
        rdev: 0,
        blocks: None,
    }
}

/// The directory `name` in `parent`, made if missing.
pub(super) fn mkdir_in(t: &mut Table, parent: u64, name: &[u8]) -> u64 {
    if let Ok(Some(d)) = t.get(parent).map(|n| n.dir()) {
        if let Some(Slot::Node(i)) = d.entries.get(name) {
            let i = *i;
            if t.get(i).is_ok_and(|n| n.dir().is_some()) {
                return i;
            }
        }
    }
    let mut m = meta(t, S_IFDIR | 0o755, 0, 0, 0, 4096);
    m.nlink = 2;
    let h = t.alloc(Node::new(parent, name, m, Body::Dir(Dir::new(Source::Tar))));
    t.link(parent, name, h);
    h
}

/// Walk plain directories (no symlinks) from the root.
fn walk_plain(t: &Table, comps: &[&[u8]]) -> Option<u64> {
    let mut cur = ROOT;
    for c in comps {
        match t.get(cur).ok()?.dir()?.entries.get(c)? {
            Slot::Node(i) => cur = *i,
            _ => return None,
        }
    }
    Some(cur)
}

/// Scan the archive on `disk` into `t` under the root.
pub(super) fn load(t: &mut Table, disk: &Disk) -> Result<(), FsError> {
    let path = disk.path().display().to_string();
    let tar_err = |source| FsError::Tar {
        path: path.clone(),
        source,
    };
    let mut hard_links = Vec::new();
    let mut ar = tar::Archive::new(DiskReader { disk, pos: 0 });
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
        let Some((leaf, parent_path)) = comps.split_last() else {
            if et.is_dir() {
                set_dir_meta(t, ROOT, mode, mtime);
            }
            continue;
        };
        let mut parent = ROOT;
        for c in parent_path {
            parent = mkdir_in(t, parent, c);
        }
        let (body, size, ifmt) = if et.is_dir() {
            let ino = mkdir_in(t, parent, leaf);
            set_dir_meta(t, ino, mode, mtime);
            continue;
        } else if et.is_symlink() {
            let target = entry
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default();
            let n = target.len() as u64;
            (Body::Symlink(target), n, S_IFLNK)
        } else if et.is_hard_link() {
            if let Some(l) = entry.link_name_bytes() {
                hard_links.push((parent, leaf.clone(), l.into_owned()));
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
            (Body::Tar { offset }, size, S_IFREG)
        } else {
            continue;
        };
        let m = meta(t, ifmt | mode, mtime, uid, gid, size);
        let ino = t.alloc(Node::new(parent, leaf, m, body));
        t.link(parent, leaf, ino);
    }
    for (parent, leaf, target) in hard_links {
        // Like Linux: no hard links to directories (they would make loops
        // of the tree).
        if let Some(ino) = walk_plain(t, &components(&target)) {
            if let Ok(n) = t.get_mut(ino) {
                if n.dir().is_none() {
                    n.meta.nlink += 1;
                    t.link(parent, &leaf, ino);
                }
            }
        }
    }
    Ok(())
}

fn set_dir_meta(t: &mut Table, h: u64, mode: u32, mtime: u64) {
    if let Ok(n) = t.get_mut(h) {
        n.meta.mode = S_IFDIR | mode;
        let ts = Ts {
            sec: mtime as i64,
            nsec: 0,
        };
        (n.meta.mtime, n.meta.atime, n.meta.ctime) = (ts, ts, ts);
    }
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
