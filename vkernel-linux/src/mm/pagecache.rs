//! The page cache: file pages in RAM frames, shared by every vproc of a
//! virtual kernel.
//!
//! A file mapping (a program's or library's segments, `mmap` of a file)
//! does not copy the file: its pages are frames of this cache, keyed by
//! the file's identity ([`FileSource::file_id`]) and the page index, filled
//! from the file on first use ([`PageCache::get`]). The cache holds one
//! reference to each of its frames ([`FrameAlloc`] reference counts), every
//! mapping one more, so a cached frame is never the last reference of a
//! mapping: a write to a private mapping always takes a copy (the
//! copy-on-write break of [`crate::core::vptable::VpTable::cow_fault`]),
//! and two vprocs that map the same library share its frames, which
//! memstat's PSS shows.
//!
//! Bytes of the last page past the end of the file read as zero. Frames
//! only the cache holds are given back when RAM runs out
//! ([`PageCache::shrink`]). A file the vprocs change gets a new identity
//! (the root filesystem's overlay gives a copied-up or rewritten file a
//! fresh [`crate::fs::Backing::file_id`]), so later mappings never
//! see stale pages; host files changed behind the vkernel's back are not
//! noticed.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::core::ram::Ram;
use crate::core::vptable::{FrameAlloc, VptError};

/// Page size.
const PAGE: u64 = 4096;
/// Pages of a 2 MiB block.
const BLOCK_PAGES: u64 = 512;

impl FileSource for crate::fs::Backing {
    fn file_id(&self) -> (u64, u64) {
        crate::fs::Backing::file_id(self)
    }
    fn size(&self) -> u64 {
        crate::fs::Backing::size(self)
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<usize, i64> {
        crate::fs::Backing::read_at(self, off, buf)
    }
    fn backing(&self) -> Option<&crate::fs::Backing> {
        Some(self)
    }
    fn path(&self) -> Option<Vec<u8>> {
        Some(self.fs().path_of(self.handle()))
    }
}

/// A file whose pages can be mapped: a stable identity, its size and
/// random-access reads. Implemented by [`crate::exec::Image`] (a
/// host file, a file of the tar image); the root filesystem's open files
/// offer it too.
pub trait FileSource: Send + Sync {
    /// A stable identity of the file (device, inode) within one virtual
    /// kernel: two opens of the same file give the same pair.
    fn file_id(&self) -> (u64, u64);
    /// The file's size in bytes.
    fn size(&self) -> u64;
    /// Read up to `buf.len()` bytes at `off`; the count read (short at the
    /// end of the file) or an errno.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<usize, i64>;
    /// The root filesystem's node behind it, if it is one (a shared
    /// mapping of it shares the node's pages).
    fn backing(&self) -> Option<&crate::fs::Backing> {
        None
    }
    /// The path `/proc/PID/maps` shows for mappings of it, if known.
    fn path(&self) -> Option<Vec<u8>> {
        None
    }
}

/// Errors of the page cache.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum CacheError {
    /// No RAM frame is left, even after dropping unused cached pages.
    #[error("out of RAM frames for the page cache (start the virtual kernel with a larger --mem)")]
    OutOfMemory,
    /// The page lies wholly past the end of the file (SIGBUS on access).
    #[error("page {index} is past the end of the {size}-byte file")]
    PastEof {
        /// Page index.
        index: u64,
        /// File size.
        size: u64,
    },
    /// Reading the file failed.
    #[error("reading the file at offset {off} failed (errno {errno})")]
    Read {
        /// Byte offset.
        off: u64,
        /// The errno the file gave.
        errno: i64,
    },
    /// RAM access failed (a vkernel bug).
    #[error("RAM: {0}")]
    Ram(VptError),
}

/// Counters of a page cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found the page.
    pub hits: u64,
    /// Pages read from their file.
    pub fills: u64,
    /// Pages given back by [`PageCache::shrink`].
    pub evictions: u64,
    /// 2 MiB blocks read whole ([`PageCache::get_large`]).
    pub large_fills: u64,
    /// Pages cached now.
    pub pages: u64,
}

type Key = (u64, u64, u64);

/// The page cache of one virtual kernel (shared by its vprocs).
#[derive(Debug, Default)]
pub struct PageCache {
    inner: Mutex<Inner>,
    /// The objects of shared file mappings (one per mapped node).
    pub shm_files: super::ShmFiles,
}

#[derive(Debug, Default)]
struct Inner {
    pages: HashMap<Key, u64>,
    /// Frames shared by content ([`PageCache::share_copy`]): a hash of the
    /// 4 KiB -> the frames with such content.
    copies: HashMap<u64, Vec<u64>>,
    stats: CacheStats,
}

impl PageCache {
    /// An empty cache.
    pub fn new() -> Arc<PageCache> {
        Arc::new(PageCache::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The frame holding page `index` of `src`, with one reference taken
    /// for the caller (who gives it back with [`FrameAlloc::free`]). The
    /// page is read from the file if it is not cached yet.
    pub fn get(
        &self,
        frames: &Mutex<FrameAlloc>,
        ram: &Ram,
        src: &dyn FileSource,
        index: u64,
    ) -> Result<u64, CacheError> {
        let (dev, ino) = src.file_id();
        let key = (dev, ino, index);
        {
            let mut c = self.lock();
            if let Some(&f) = c.pages.get(&key) {
                lock(frames).share(f);
                c.stats.hits += 1;
                return Ok(f);
            }
        }
        let size = src.size();
        let off = index
            .checked_mul(PAGE)
            .ok_or(CacheError::PastEof { index, size })?;
        if off >= size {
            return Err(CacheError::PastEof { index, size });
        }
        // Read outside every lock: the file may be slow.
        let mut buf = vec![0u8; PAGE as usize];
        let want = (size - off).min(PAGE) as usize;
        read_full(src, off, &mut buf[..want])?;
        let mut c = self.lock();
        if let Some(&f) = c.pages.get(&key) {
            // Filled by someone else meanwhile.
            lock(frames).share(f);
            c.stats.hits += 1;
            return Ok(f);
        }
        let f = {
            let mut fr = lock(frames);
            let f = match fr.alloc(ram) {
                Ok(f) => f,
                Err(VptError::OutOfFrames) => {
                    Self::shrink_locked(&mut c, &mut fr);
                    fr.alloc(ram).map_err(|_| CacheError::OutOfMemory)?
                }
                Err(e) => return Err(CacheError::Ram(e)),
            };
            if let Err(e) = ram.write(f, &buf) {
                fr.free(f);
                return Err(CacheError::Ram(e.into()));
            }
            // The cache's reference and the caller's.
            fr.share(f);
            f
        };
        c.pages.insert(key, f);
        c.stats.fills += 1;
        c.stats.pages = c.pages.len() as u64;
        Ok(f)
    }

    /// The frame holding page `index` of `src` if it is cached, with one
    /// reference taken for the caller; never reads the file.
    pub fn cached(
        &self,
        frames: &Mutex<FrameAlloc>,
        src: &dyn FileSource,
        index: u64,
    ) -> Option<u64> {
        let (dev, ino) = src.file_id();
        let mut c = self.lock();
        let f = *c.pages.get(&(dev, ino, index))?;
        lock(frames).share(f);
        c.stats.hits += 1;
        Some(f)
    }

    /// The 2 MiB block holding pages `first..first + 512` of `src` (`first`
    /// a multiple of 512) in order, with one reference taken on each of
    /// its frames for the caller (given back frame by frame with
    /// [`FrameAlloc::free`]). With `read`, the range is read from the file
    /// into a fresh block when none of its pages is cached yet. None when
    /// it cannot be one block: some of its pages are cached apart, the
    /// range reaches past the file's last page, or no free block is left.
    /// The block's pages are ordinary cached pages after: a 4 KiB mapping
    /// shares them, and [`PageCache::shrink`] gives them back one by one.
    pub fn get_large(
        &self,
        frames: &Mutex<FrameAlloc>,
        ram: &Ram,
        src: &dyn FileSource,
        first: u64,
        read: bool,
    ) -> Result<Option<u64>, CacheError> {
        let (dev, ino) = src.file_id();
        if !first.is_multiple_of(BLOCK_PAGES) {
            return Ok(None);
        }
        let key = |i: u64| (dev, ino, first + i);
        {
            let mut c = self.lock();
            match Self::block_of(&c, &key) {
                Some(Some(b)) => {
                    let mut fr = lock(frames);
                    (0..BLOCK_PAGES).for_each(|i| fr.share(b + i * PAGE));
                    c.stats.hits += BLOCK_PAGES;
                    return Ok(Some(b));
                }
                Some(None) => return Ok(None),
                None if !read => return Ok(None),
                None => {}
            }
        }
        let size = src.size();
        let Some(off) = first.checked_mul(PAGE) else {
            return Ok(None);
        };
        let len = BLOCK_PAGES * PAGE;
        if off.saturating_add(len) > size.next_multiple_of(PAGE) {
            return Ok(None);
        }
        // Read outside every lock: the file may be slow.
        let mut buf = vec![0u8; len as usize];
        let want = (size - off).min(len) as usize;
        read_full(src, off, &mut buf[..want])?;
        let mut c = self.lock();
        if Self::block_of(&c, &key).is_some() {
            // Some of it was cached meanwhile: 4 KiB pages then.
            return Ok(None);
        }
        let mut fr = lock(frames);
        let block = match fr.alloc_large(ram) {
            Ok(Some(b)) => b,
            Ok(None) => {
                Self::shrink_locked(&mut c, &mut fr);
                match fr.alloc_large(ram) {
                    Ok(Some(b)) => b,
                    _ => return Ok(None),
                }
            }
            Err(e) => return Err(CacheError::Ram(e)),
        };
        if let Err(e) = ram.write(block, &buf) {
            fr.free_large(block);
            return Err(CacheError::Ram(e.into()));
        }
        for i in 0..BLOCK_PAGES {
            let f = block + i * PAGE;
            // The cache's reference (the frame's own) and the caller's.
            fr.share(f);
            c.pages.insert(key(i), f);
        }
        c.stats.fills += BLOCK_PAGES;
        c.stats.large_fills += 1;
        c.stats.pages = c.pages.len() as u64;
        Ok(Some(block))
    }

    /// How the 512 pages named by `key(0..512)` are cached: not at all
    /// (None), as one block in order (Some(Some(block))), or otherwise
    /// (Some(None)).
    fn block_of(c: &Inner, key: &dyn Fn(u64) -> Key) -> Option<Option<u64>> {
        let Some(&b) = c.pages.get(&key(0)) else {
            return (1..BLOCK_PAGES)
                .any(|i| c.pages.contains_key(&key(i)))
                .then_some(None);
        };
        let whole = b.is_multiple_of(BLOCK_PAGES * PAGE)
            && (1..BLOCK_PAGES).all(|i| c.pages.get(&key(i)) == Some(&(b + i * PAGE)));
        Some(whole.then_some(b))
    }

    /// Whether page `index` of `src` is cached (mincore); takes no
    /// reference and never reads the file.
    pub fn contains(&self, src: &dyn FileSource, index: u64) -> bool {
        let (dev, ino) = src.file_id();
        self.lock().pages.contains_key(&(dev, ino, index))
    }

    /// Whether the cache holds `frame` as page `index` of `src` (a mapping
    /// still shares the file's page); takes no reference.
    pub fn holds(&self, src: &dyn FileSource, index: u64, frame: u64) -> bool {
        let (dev, ino) = src.file_id();
        self.lock().pages.get(&(dev, ino, index)) == Some(&frame)
    }

    /// Give back every cached frame no mapping uses; returns how many.
    pub fn shrink(&self, frames: &Mutex<FrameAlloc>) -> u64 {
        let mut c = self.lock();
        Self::shrink_locked(&mut c, &mut lock(frames))
    }

    /// A private frame whose bytes every process that maps the same
    /// program page the same way would write alike (a code page whose
    /// known syscall sites were rewritten, a stub page: see
    /// `Mm::share_patched`): the frame already shared with the same 4 KiB,
    /// with one reference taken for the caller, who then maps it instead
    /// of its own and frees that; or None, and `frame` itself is kept for
    /// the next caller (the cache takes a reference on it, so a later
    /// write by its owner copies first, as for any shared page).
    pub fn share_copy(&self, frames: &Mutex<FrameAlloc>, ram: &Ram, frame: u64) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        let mut bytes = vec![0u8; PAGE as usize];
        ram.read(frame, &mut bytes).ok()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        let hash = h.finish();
        let mut c = self.lock();
        let mut other = vec![0u8; PAGE as usize];
        let same = c.copies.get(&hash).and_then(|v| {
            v.iter()
                .copied()
                .find(|&f| f != frame && ram.read(f, &mut other).is_ok() && other == bytes)
        });
        let mut fr = lock(frames);
        if let Some(f) = same {
            fr.share(f);
            return Some(f);
        }
        let known = c.copies.entry(hash).or_default();
        if !known.contains(&frame) {
            fr.share(frame);
            known.push(frame);
        }
        None
    }

    fn shrink_locked(c: &mut Inner, fr: &mut FrameAlloc) -> u64 {
        let mut copies = 0;
        c.copies.retain(|_, v| {
            v.retain(|&f| {
                let last = fr.refcount(f) == 1;
                if last {
                    fr.free(f);
                    copies += 1;
                }
                !last
            });
            !v.is_empty()
        });
        c.stats.evictions += copies;
        let before = c.pages.len();
        c.pages.retain(|_, f| {
            if fr.refcount(*f) == 1 {
                fr.free(*f);
                false
            } else {
                true
            }
        });
        let n = (before - c.pages.len()) as u64;
        c.stats.evictions += n;
        c.stats.pages = c.pages.len() as u64;
        n + copies
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        self.lock().stats
    }
}

/// Read `buf.len()` bytes of `src` from `off` (short at the end of the
/// file: the rest of `buf` stays as it was, zero).
fn read_full(src: &dyn FileSource, off: u64, buf: &mut [u8]) -> Result<(), CacheError> {
    let mut got = 0;
    while got < buf.len() {
        match src.read_at(off + got as u64, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(errno) => {
                return Err(CacheError::Read {
                    off: off + got as u64,
                    errno,
                })
            }
        }
    }
    Ok(())
}

fn lock(m: &Mutex<FrameAlloc>) -> std::sync::MutexGuard<'_, FrameAlloc> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(Vec<u8>, u64);

    impl FileSource for Mem {
        fn file_id(&self) -> (u64, u64) {
            (7, self.1)
        }
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<usize, i64> {
            let s = self.0.get(off as usize..).unwrap_or(&[]);
            let n = s.len().min(buf.len());
            buf[..n].copy_from_slice(&s[..n]);
            Ok(n)
        }
    }

    #[test]
    fn copies_with_the_same_bytes_share_one_frame_until_unused() {
        let ram = Ram::anonymous(1 << 20).unwrap();
        let frames = Mutex::new(FrameAlloc::new(0, 1 << 20).unwrap());
        let c = PageCache::new();
        let copy = |byte: u8| {
            let f = lock(&frames).alloc(&ram).unwrap();
            ram.write(f, &[byte; 4096]).unwrap();
            f
        };
        // The first copy is kept (the cache takes a reference on it).
        let a = copy(1);
        assert_eq!(c.share_copy(&frames, &ram, a), None);
        assert_eq!(lock(&frames).refcount(a), 2);
        // Again: nothing changes.
        assert_eq!(c.share_copy(&frames, &ram, a), None);
        assert_eq!(lock(&frames).refcount(a), 2);
        // A second process's identical copy gets the first one.
        let b = copy(1);
        assert_eq!(c.share_copy(&frames, &ram, b), Some(a));
        assert_eq!(lock(&frames).refcount(a), 3);
        lock(&frames).free(b);
        // Different bytes are kept apart.
        let d = copy(2);
        assert_eq!(c.share_copy(&frames, &ram, d), None);
        // Bytes changed behind the cache's back (never done: a holder
        // copies first) are not shared out.
        ram.write(a, &[9]).unwrap();
        let e = copy(1);
        assert_eq!(c.share_copy(&frames, &ram, e), None);
        // Frames only the cache holds go when RAM runs short.
        for f in [a, a, d, e] {
            lock(&frames).free(f);
        }
        let before = lock(&frames).available();
        assert_eq!(c.shrink(&frames), 3);
        assert_eq!(lock(&frames).available(), before + 3);
    }

    #[test]
    fn shares_fills_once_zero_tail_and_shrinks() {
        let ram = Ram::anonymous(1 << 20).unwrap();
        let frames = Mutex::new(FrameAlloc::new(0, 1 << 20).unwrap());
        let c = PageCache::new();
        let file = Mem(vec![0xab; 5000], 1);
        let a = c.get(&frames, &ram, &file, 1).unwrap();
        let b = c.get(&frames, &ram, &file, 1).unwrap();
        assert_eq!(a, b);
        assert_eq!(lock(&frames).refcount(a), 3);
        let mut page = vec![0u8; 4096];
        ram.read(a, &mut page).unwrap();
        assert!(page[..904].iter().all(|&x| x == 0xab));
        assert!(page[904..].iter().all(|&x| x == 0));
        assert_eq!(
            c.get(&frames, &ram, &file, 2),
            Err(CacheError::PastEof {
                index: 2,
                size: 5000
            })
        );
        assert_eq!(c.shrink(&frames), 0);
        lock(&frames).free(a);
        lock(&frames).free(b);
        assert_eq!(c.shrink(&frames), 1);
        assert_eq!(c.stats().fills, 1);
        assert_eq!(c.stats().pages, 0);
    }

    #[test]
    fn a_whole_2_mib_range_is_one_block_shared_by_4k_lookups() {
        let ram = Ram::anonymous(8 << 20).unwrap();
        let frames = Mutex::new(FrameAlloc::new(0, 8 << 20).unwrap());
        let c = PageCache::new();
        // 2 MiB and a half of a file: one whole block, then a tail.
        let data: Vec<u8> = (0..(5u64 << 20) / 2).map(|i| (i / 4096) as u8).collect();
        let file = Mem(data, 2);
        assert_eq!(
            c.get_large(&frames, &ram, &file, 0, false),
            Ok(None),
            "not cached, no read"
        );
        let b = c.get_large(&frames, &ram, &file, 0, true).unwrap().unwrap();
        assert_eq!(b % (2 << 20), 0);
        let mut page = vec![0u8; 4096];
        ram.read(b + 300 * 4096, &mut page).unwrap();
        assert!(page.iter().all(|&x| x == 300u64 as u8));
        // A 4 KiB lookup finds the block's frame; a second block lookup
        // finds the block without reading.
        assert_eq!(c.get(&frames, &ram, &file, 300).unwrap(), b + 300 * 4096);
        assert_eq!(c.get_large(&frames, &ram, &file, 0, false), Ok(Some(b)));
        assert_eq!(lock(&frames).refcount(b + 300 * 4096), 4);
        assert_eq!(lock(&frames).refcount(b), 3);
        // Past the file's last page, or not aligned: no block.
        assert_eq!(c.get_large(&frames, &ram, &file, 512, true), Ok(None));
        assert_eq!(c.get_large(&frames, &ram, &file, 1, true), Ok(None));
        // A range with a page cached apart: no block.
        let other = Mem(vec![1; 4 << 20], 3);
        let f = c.get(&frames, &ram, &other, 700).unwrap();
        assert_eq!(c.get_large(&frames, &ram, &other, 512, true), Ok(None));
        lock(&frames).free(f);
        assert_eq!(c.stats().large_fills, 1);
    }
}
