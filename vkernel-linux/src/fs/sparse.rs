//! The contents of an in-memory file: sparse, like a tmpfs file. Only the
//! 4 KiB pages that were written hold memory; the rest of the file up to
//! its size reads as zeros. A write at 100 GiB costs one page, and the
//! overlay's usage caps count allocated pages only (see `node::charge`).
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::collections::BTreeMap;

/// Page size of the contents.
pub const PAGE: u64 = 4096;

/// Largest size a file may have (tmpfs's MAX_LFS_FILESIZE): beyond, a
/// write or truncate is EFBIG.
pub const MAX_SIZE: u64 = i64::MAX as u64;

/// A sparse byte array: a size and the pages written.
#[derive(Clone, Debug, Default)]
pub struct SparseFile {
    size: u64,
    pages: BTreeMap<u64, Box<[u8; PAGE as usize]>>,
}

impl SparseFile {
    /// An empty file.
    pub fn new() -> SparseFile {
        SparseFile::default()
    }

    /// A file holding `data` (every page allocated).
    pub fn from_vec(data: Vec<u8>) -> SparseFile {
        let mut f = SparseFile::new();
        f.write_at(0, &data);
        f
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Empty?
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Bytes of memory its pages hold.
    pub fn allocated(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }

    /// What [`SparseFile::allocated`] will be after writing `len` bytes at
    /// `at` (`at + len` must not overflow).
    pub fn allocated_after_write(&self, at: u64, len: u64) -> u64 {
        if len == 0 {
            return self.allocated();
        }
        let (first, last) = (at / PAGE, (at + len - 1) / PAGE);
        let present = self.pages.range(first..=last).count() as u64;
        self.allocated() + (last - first + 1 - present) * PAGE
    }

    /// What [`SparseFile::allocated`] will be after [`SparseFile::set_len`]
    /// to `len`.
    pub fn allocated_after_truncate(&self, len: u64) -> u64 {
        self.pages.range(..len.div_ceil(PAGE)).count() as u64 * PAGE
    }

    /// Read at `pos` into `buf`: the count (0 at or past the end).
    pub fn read_at(&self, pos: u64, buf: &mut [u8]) -> usize {
        if pos >= self.size {
            return 0;
        }
        let n = ((self.size - pos).min(buf.len() as u64)) as usize;
        let mut done = 0;
        while done < n {
            let at = pos + done as u64;
            let (idx, off) = (at / PAGE, (at % PAGE) as usize);
            let k = (PAGE as usize - off).min(n - done);
            match self.pages.get(&idx) {
                Some(p) => buf[done..done + k].copy_from_slice(&p[off..off + k]),
                None => buf[done..done + k].fill(0),
            }
            done += k;
        }
        n
    }

    /// Write `data` at `at`, growing the file (`at + data.len()` must not
    /// overflow; the caller checks [`MAX_SIZE`]).
    pub fn write_at(&mut self, at: u64, data: &[u8]) {
        let mut done = 0;
        while done < data.len() {
            let a = at + done as u64;
            let (idx, off) = (a / PAGE, (a % PAGE) as usize);
            let k = (PAGE as usize - off).min(data.len() - done);
            let page = self
                .pages
                .entry(idx)
                .or_insert_with(|| Box::new([0u8; PAGE as usize]));
            page[off..off + k].copy_from_slice(&data[done..done + k]);
            done += k;
        }
        self.size = self.size.max(at + data.len() as u64);
    }

    /// fallocate: give every page of `[at, at + len)` memory (zeros where
    /// nothing was written) and grow the size to cover it.
    pub fn allocate(&mut self, at: u64, len: u64) {
        if len == 0 {
            return;
        }
        for idx in at / PAGE..=(at + len - 1) / PAGE {
            self.pages
                .entry(idx)
                .or_insert_with(|| Box::new([0u8; PAGE as usize]));
        }
        self.size = self.size.max(at + len);
    }

    /// Set the size: pages past it are freed, the bytes of the last page
    /// past it zeroed (a later growth reads zeros there).
    pub fn set_len(&mut self, len: u64) {
        if len < self.size {
            let keep = len.div_ceil(PAGE);
            self.pages.split_off(&keep);
            if !len.is_multiple_of(PAGE) {
                if let Some(p) = self.pages.get_mut(&(len / PAGE)) {
                    p[(len % PAGE) as usize..].fill(0);
                }
            }
        }
        self.size = len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_writes_cost_one_page() {
        let mut f = SparseFile::new();
        let far = 100u64 << 30;
        assert_eq!(f.allocated_after_write(far, 1), PAGE);
        f.write_at(far, b"z");
        assert_eq!(f.len(), far + 1);
        assert_eq!(f.allocated(), PAGE);
        let mut b = [1u8; 3];
        assert_eq!(f.read_at(far - 1, &mut b), 2);
        assert_eq!(&b[..2], &[0, b'z']);
        assert_eq!(f.read_at(5 << 30, &mut b), 3);
        assert_eq!(b, [0, 0, 0]);
        assert_eq!(f.read_at(far + 1, &mut b), 0);
    }

    #[test]
    fn writes_across_pages_and_truncate() {
        let mut f = SparseFile::from_vec(vec![7u8; 10_000]);
        assert_eq!(f.allocated(), 3 * PAGE);
        assert_eq!(f.allocated_after_write(8000, 10_000), 5 * PAGE);
        f.write_at(4090, &[9u8; 20]);
        let mut b = [0u8; 22];
        f.read_at(4089, &mut b);
        assert_eq!(b[0], 7);
        assert!(b[1..21].iter().all(|&x| x == 9));
        assert_eq!(b[21], 7);
        assert_eq!(f.allocated_after_truncate(4097), 2 * PAGE);
        f.set_len(4097);
        assert_eq!(f.allocated(), 2 * PAGE);
        f.set_len(9000);
        let mut c = [1u8; 4];
        f.read_at(4096, &mut c);
        assert_eq!(c, [9, 0, 0, 0], "bytes past an old end read as zeros");
        f.set_len(0);
        assert_eq!(f.allocated(), 0);
        assert!(f.is_empty());
    }
}
