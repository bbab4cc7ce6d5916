//! [`Backing`]: what an open file of the tree offers file-backed mmap and
//! the page cache.

use std::sync::Arc;

use super::Fs;

/// An open regular file's contents, for file-backed mmap and the page
/// cache. Holding one keeps the file's contents alive (even after it is
/// deleted), as an open fd does.
#[derive(Debug)]
pub struct Backing {
    fs: Arc<Fs>,
    ino: u64,
}

impl Backing {
    /// Hold node `h` of `fs`.
    pub fn new(fs: Arc<Fs>, h: u64) -> Backing {
        if let Ok(n) = fs.lock().get_mut(h) {
            n.opens += 1;
        }
        Backing { fs, ino: h }
    }

    /// The node's handle.
    pub fn handle(&self) -> u64 {
        self.ino
    }

    /// The tree it belongs to.
    pub fn fs(&self) -> &Arc<Fs> {
        &self.fs
    }

    /// Read up to `buf.len()` bytes at `off`; 0 at or past the end.
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<usize, i64> {
        self.fs.read(self.ino, off, buf)
    }

    /// The current size.
    pub fn size(&self) -> u64 {
        self.fs.inode(self.ino).size
    }

    /// A stable identity of the contents: (device-ish, inode-ish). Equal
    /// for the same file opened twice (also through two host paths of one
    /// host file), distinct for distinct files, and new whenever the
    /// contents change through the vkernel (an overlay copy-up, a write, a
    /// truncate): a page cache keyed by it never serves stale pages for
    /// changes made by vprocs.
    pub fn file_id(&self) -> (u64, u64) {
        self.fs.file_id(self.ino)
    }
}

impl Clone for Backing {
    fn clone(&self) -> Backing {
        Backing::new(self.fs.clone(), self.ino)
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        let mut t = self.fs.lock();
        if let Ok(n) = t.get_mut(self.ino) {
            n.opens = n.opens.saturating_sub(1);
            if n.opens == 0 && n.meta.nlink == 0 {
                t.free(self.ino);
                drop(t);
                self.fs.forget_seals(self.ino);
                t = self.fs.lock();
            }
        }
        drop(t);
        let mut c = self.fs.host_files.lock().unwrap_or_else(|e| e.into_inner());
        c.remove(&(self.ino, true));
    }
}
