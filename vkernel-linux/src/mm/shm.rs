//! Shared memory: the pages of MAP_SHARED areas.
//!
//! A [`ShmObject`] is a sparse array page index -> frame, reference
//! counted (`Arc`) by every area that maps it, in every vproc: a
//! `MAP_SHARED|MAP_ANONYMOUS` mapping makes one, and fork hands the same
//! object to the child (the areas are cloned), so parent and child see
//! each other's writes. A page's frame is allocated zeroed on first touch
//! (or filled from the file for a shared file mapping) and stays in the
//! object until the object goes: MADV_DONTNEED and munmap drop only the
//! mapping's reference, so the data stays, as Linux's shmem keeps it.
//!
//! Frames are counted in the [`FrameAlloc`] every vproc shares: the
//! object holds one reference of each of its frames, each mapped page one
//! more. A mapped page's VPTE carries [`crate::core::vpte::Vpte::SHARED`] and the area's
//! permissions (never copy-on-write), so `VpTable::fork_cow` shares it
//! writable with the child.
//!
//! A shared file mapping's object belongs to the file's node (one per
//! node of the root filesystem, looked up in [`ShmFiles`]), not to the
//! contents' identity, which changes when the file is written. Its pages
//! are written back to the file by msync, munmap and the end of the last
//! mapping; read() and write() on the file meet the resident pages (see
//! [`crate::fs::SharedPages`]).
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::{Frames, MmError, PAGE};
use crate::core::ram::Ram;
use crate::core::vptable::{FrameAlloc, VptError};
use crate::fs::Backing;

/// A shared memory object (see the module documentation).
pub struct ShmObject {
    ram: Ram,
    frames: Frames,
    pages: Mutex<BTreeMap<u64, u64>>,
    /// The file behind a shared file mapping.
    file: Option<Backing>,
    /// An anonymous object's size (bytes): its pages past it are SIGBUS
    /// (a shared mapping grown by mremap), as Linux's shmem's are.
    size: u64,
    /// Some area has mapped it writable: its pages may differ from the
    /// file's (write-back has nothing to do until then).
    written: AtomicBool,
}

impl std::fmt::Debug for ShmObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShmObject({:#x}", self.key())?;
        if let Some(b) = &self.file {
            write!(f, ", node {}", b.handle())?;
        }
        write!(f, ")")
    }
}

fn lock_frames(f: &Frames) -> MutexGuard<'_, FrameAlloc> {
    f.lock().unwrap_or_else(|e| e.into_inner())
}

impl ShmObject {
    /// A new, empty object of `size` bytes of anonymous memory (pages
    /// read as zero).
    pub fn anon(ram: Ram, frames: Frames, size: u64) -> Arc<ShmObject> {
        Arc::new(ShmObject {
            ram,
            frames,
            pages: Mutex::new(BTreeMap::new()),
            file: None,
            size,
            written: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, u64>> {
        self.pages.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A number naming the object while it lives (shared futex keys).
    pub fn key(&self) -> usize {
        self as *const ShmObject as usize
    }

    /// The file behind the object, if it is a shared file mapping's.
    pub fn file(&self) -> Option<&Backing> {
        self.file.as_ref()
    }

    /// The frame of page `index`, with one reference taken for the
    /// caller (who gives it back with [`FrameAlloc::free`]). A page not
    /// resident yet gets a zeroed frame, filled from the file for a file
    /// object; a page wholly past the end of the file (or of an anonymous
    /// object) is [`MmError::Bus`] (`va` names the faulting address).
    pub fn frame(&self, index: u64, va: u64) -> Result<u64, MmError> {
        if let Some(&f) = self.lock().get(&index) {
            lock_frames(&self.frames).share(f);
            return Ok(f);
        }
        let mut buf = Vec::new();
        if self.file.is_none() && index.checked_mul(PAGE).is_none_or(|o| o >= self.size) {
            return Err(MmError::Bus(va));
        }
        if let Some(b) = &self.file {
            // Read outside the object's lock (the file's read path looks
            // at the resident pages).
            let off = index.checked_mul(PAGE).ok_or(MmError::Bus(va))?;
            let size = b.size();
            if off >= size {
                return Err(MmError::Bus(va));
            }
            buf = vec![0u8; (size - off).min(PAGE) as usize];
            let mut got = 0;
            while got < buf.len() {
                match b.read_at(off + got as u64, &mut buf[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(_) => return Err(MmError::Bus(va)),
                }
            }
        }
        let mut pages = self.lock();
        let mut fr = lock_frames(&self.frames);
        if let Some(&f) = pages.get(&index) {
            // Filled by someone else meanwhile.
            fr.share(f);
            return Ok(f);
        }
        let f = fr.alloc(&self.ram).map_err(|e| match e {
            VptError::OutOfFrames => MmError::OutOfMemory,
            _ => MmError::Fault(va),
        })?;
        if !buf.is_empty() && self.ram.write(f, &buf).is_err() {
            fr.free(f);
            return Err(MmError::Fault(va));
        }
        // The object's reference and the caller's.
        fr.share(f);
        pages.insert(index, f);
        Ok(f)
    }

    /// An area maps the object writable (mmap, mprotect, mremap): from now
    /// on write-back compares its pages with the file's.
    pub fn note_writable(&self) {
        self.written.store(true, Ordering::Relaxed);
    }

    /// Whether page `index` is resident (mincore).
    pub fn has_page(&self, index: u64) -> bool {
        self.lock().contains_key(&index)
    }

    /// Resident pages.
    pub fn resident(&self) -> usize {
        self.lock().len()
    }

    /// Write the resident pages of `[first, end)` (page indexes) back to
    /// the file, up to its current size (msync, munmap). Nothing for
    /// anonymous memory. Returns an errno if a write failed.
    pub fn write_back(&self, first: u64, end: u64) -> Result<(), i64> {
        let Some(b) = &self.file else { return Ok(()) };
        if !self.written.load(Ordering::Relaxed) {
            // Only ever mapped read-only: the pages are the file's.
            return Ok(());
        }
        let size = b.size();
        let pages: Vec<(u64, u64)> = self
            .lock()
            .range(first..end)
            .map(|(i, f)| (*i, *f))
            .collect();
        let mut buf = vec![0u8; PAGE as usize];
        for (i, f) in pages {
            let off = i * PAGE;
            if off >= size {
                break;
            }
            let n = (size - off).min(PAGE) as usize;
            // A racing unmap may free the frame: the object's reference
            // keeps it while the object lives (it does: `self`).
            if self.ram.read(f, &mut buf[..n]).is_err() {
                continue;
            }
            b.fs().write_shared_back(b.handle(), off, &buf[..n])?;
        }
        Ok(())
    }

    /// MADV_REMOVE: pages `[first, end)` read as zero from now on, in
    /// every mapping (the resident frames are zeroed in place), and so do
    /// the file's bytes there (up to its size). Returns an errno if the
    /// file refused the zeros.
    pub fn punch(&self, first: u64, end: u64) -> Result<(), i64> {
        for (_, &f) in self.lock().range(first..end) {
            let _ = self.ram.zero(f, PAGE);
        }
        let Some(b) = &self.file else { return Ok(()) };
        let size = b.size();
        let zeros = vec![0u8; PAGE as usize];
        let mut off = first.saturating_mul(PAGE);
        while off < size && off < end.saturating_mul(PAGE) {
            let n = (size - off).min(PAGE) as usize;
            b.fs().write_shared_back(b.handle(), off, &zeros[..n])?;
            off += PAGE;
        }
        Ok(())
    }

    /// write() changed `data.len()` bytes of the file at `off`: copy them
    /// into the resident pages.
    fn file_written(&self, off: u64, data: &[u8]) {
        let Some(end) = off.checked_add(data.len() as u64) else {
            return;
        };
        let pages = self.lock();
        for (&i, &f) in pages.range(off / PAGE..end.div_ceil(PAGE)) {
            let p = i * PAGE;
            let lo = off.max(p);
            let hi = end.min(p + PAGE);
            let src = &data[(lo - off) as usize..(hi - off) as usize];
            let _ = self.ram.write(f + (lo - p), src);
        }
    }

    /// read() got `buf` from the file at `off`: the resident pages are
    /// newer (writes through a mapping reach the file at write-back).
    fn file_read(&self, off: u64, buf: &mut [u8]) {
        let Some(end) = off.checked_add(buf.len() as u64) else {
            return;
        };
        let pages = self.lock();
        for (&i, &f) in pages.range(off / PAGE..end.div_ceil(PAGE)) {
            let p = i * PAGE;
            let lo = off.max(p);
            let hi = end.min(p + PAGE);
            let dst = &mut buf[(lo - off) as usize..(hi - off) as usize];
            let _ = self.ram.read(f + (lo - p), dst);
        }
    }

    /// The file was truncated (or extended) to `len`: the bytes of the
    /// resident pages past it read as zero, as a shrunk file's do.
    fn file_truncated(&self, len: u64) {
        let pages = self.lock();
        for (&i, &f) in pages.range(len / PAGE..) {
            let p = i * PAGE;
            let lo = len.max(p);
            let _ = self.ram.zero(f + (lo - p), PAGE - (lo - p));
        }
    }
}

impl Drop for ShmObject {
    fn drop(&mut self) {
        // The last mapping went: the file gets the pages, the frames go.
        let _ = self.write_back(0, u64::MAX);
        let pages = std::mem::take(&mut *self.lock());
        let mut fr = lock_frames(&self.frames);
        for f in pages.into_values() {
            fr.free(f);
        }
    }
}

impl crate::fs::SharedPages for ShmObject {
    fn written(&self, off: u64, data: &[u8]) {
        self.file_written(off, data);
    }
    fn read(&self, off: u64, buf: &mut [u8]) {
        self.file_read(off, buf);
    }
    fn truncated(&self, len: u64) {
        self.file_truncated(len);
    }
}

/// The shared file mappings' objects of a virtual kernel: one per node of
/// the root filesystem while some area maps it.
#[derive(Default, Debug)]
pub struct ShmFiles {
    objs: Mutex<HashMap<(usize, u64), Weak<ShmObject>>>,
}

impl ShmFiles {
    /// The object of the file behind `b` if some area maps it now.
    pub fn existing(&self, b: &Backing) -> Option<Arc<ShmObject>> {
        let key = (Arc::as_ptr(b.fs()) as usize, b.handle());
        let m = self.objs.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&key).and_then(Weak::upgrade)
    }

    /// The object of the file behind `b`, made (and registered with the
    /// file tree, so read() and write() meet its pages) if no area maps
    /// it now.
    pub fn object(&self, ram: &Ram, frames: &Frames, b: &Backing) -> Arc<ShmObject> {
        let key = (Arc::as_ptr(b.fs()) as usize, b.handle());
        let mut m = self.objs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = m.get(&key).and_then(Weak::upgrade) {
            return o;
        }
        m.retain(|_, w| w.strong_count() > 0);
        let o = Arc::new(ShmObject {
            ram: ram.clone(),
            frames: frames.clone(),
            pages: Mutex::new(BTreeMap::new()),
            file: Some(b.clone()),
            size: 0,
            written: AtomicBool::new(false),
        });
        let weak: Weak<dyn crate::fs::SharedPages> = Arc::downgrade(&o) as _;
        b.fs().set_shared_pages(b.handle(), weak);
        m.insert(key, Arc::downgrade(&o));
        o
    }
}

impl super::Mm {
    /// Does any area map shared memory?
    pub fn has_shared(&self) -> bool {
        self.vmas.values().any(|v| v.shm.is_some())
    }

    /// The key of a shared futex at `uaddr` in a MAP_SHARED area: (the
    /// object, the byte offset in it), the same in every vproc that maps
    /// the object wherever it maps it. None for other memory (a private
    /// mapping's futex is keyed by process and address).
    pub fn shared_futex_key(&self, uaddr: u64) -> Option<(usize, u64)> {
        let (start, v) = self.find(uaddr)?;
        let sm = v.shm.as_ref()?;
        Some((sm.obj.key(), sm.off.checked_add(uaddr - start)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anon_object_shares_frames_keeps_data_and_frees_at_the_end() {
        let ram = Ram::anonymous(1 << 20).unwrap();
        let frames: Frames = Arc::new(Mutex::new(FrameAlloc::new(0, 1 << 20).unwrap()));
        let before = lock_frames(&frames).available();
        let o = ShmObject::anon(ram.clone(), frames.clone(), 2 * PAGE);
        let a = o.frame(1, 0x1000).unwrap();
        let b = o.frame(1, 0x9000).unwrap();
        assert_eq!(a, b, "one frame per page, whoever maps it");
        // The object's reference and two mappings'.
        assert_eq!(lock_frames(&frames).refcount(a), 3);
        ram.store(a, 0x55).unwrap();
        // Both mappings go (munmap, MADV_DONTNEED): the data stays.
        lock_frames(&frames).free(a);
        lock_frames(&frames).free(b);
        let c = o.frame(1, 0x1000).unwrap();
        assert_eq!((c, ram.load(c).unwrap()), (a, 0x55));
        lock_frames(&frames).free(c);
        assert_eq!(o.frame(2, 0x2000), Err(MmError::Bus(0x2000)));
        assert_eq!(o.resident(), 1);
        drop(o);
        assert_eq!(lock_frames(&frames).available(), before);
    }
}
