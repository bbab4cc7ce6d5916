//! Files with shared mappings: while some area maps a file MAP_SHARED,
//! its resident pages (frames of a shared memory object of the memory
//! manager) are the newest copy of those bytes. read() takes them over
//! the file's bytes, write() and truncate copy the change into them, and
//! the object writes them back to the file (msync, munmap, the end of the
//! last mapping) with [`Fs::write_shared_back`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::{Errno, Fs};

/// The resident pages of a file's shared mappings, as the file tree sees
/// them.
pub trait SharedPages: Send + Sync {
    /// `data` was written to the file at `off`.
    fn written(&self, off: u64, data: &[u8]);
    /// `buf` was read from the file at `off`: put the resident bytes over it.
    fn read(&self, off: u64, buf: &mut [u8]);
    /// The file's size was set to `len`.
    fn truncated(&self, len: u64);
}

/// Node handle -> its shared pages, while they live.
#[derive(Default)]
pub(super) struct SharedMap(Mutex<HashMap<u64, Weak<dyn SharedPages>>>);

impl std::fmt::Debug for SharedMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedMap")
    }
}

impl Fs {
    fn shared_pages(&self, h: u64) -> Option<Arc<dyn SharedPages>> {
        let m = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.is_empty() {
            return None;
        }
        m.get(&h).and_then(Weak::upgrade)
    }

    /// Node `h` is mapped shared: its reads and writes meet `pages`
    /// while they live.
    pub fn set_shared_pages(&self, h: u64, pages: Weak<dyn SharedPages>) {
        let mut m = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, w| w.strong_count() > 0);
        m.insert(h, pages);
    }

    pub(super) fn shared_read(&self, h: u64, off: u64, buf: &mut [u8]) {
        if let Some(p) = self.shared_pages(h) {
            p.read(off, buf);
        }
    }

    pub(super) fn shared_written(&self, h: u64, off: u64, data: &[u8]) {
        if let Some(p) = self.shared_pages(h) {
            p.written(off, data);
        }
    }

    pub(super) fn shared_truncated(&self, h: u64, len: u64) {
        if let Some(p) = self.shared_pages(h) {
            p.truncated(len);
        }
    }

    /// Write a shared mapping's page back to file `h` at `off` (copying a
    /// lower file up first, as a write does), without copying it into the
    /// mapping again. Bytes the same as the file's are left alone, so the
    /// file keeps its identity (and the page cache its pages) when nothing
    /// changed.
    pub fn write_shared_back(&self, h: u64, off: u64, data: &[u8]) -> Result<(), Errno> {
        let mut cur = vec![0u8; data.len()];
        let mut got = 0;
        while got < cur.len() {
            match self.read_file(h, off + got as u64, &mut cur[got..])? {
                0 => break,
                n => got += n,
            }
        }
        if got == data.len() && cur == data {
            return Ok(());
        }
        self.prepare_write(h)?;
        self.write_file(h, Some(off), data)?;
        Ok(())
    }
}
