//! memfd files (memfd_create): memory files in no directory, and their
//! seals (F_ADD_SEALS), kept by node and checked where a write, a
//! truncate or a writable shared mapping would change a sealed file.

use std::sync::Arc;

use super::node::Errno;
use super::{node, sparse, Fs, S_IFREG};

/// F_SEAL_SEAL: no more seals.
pub const F_SEAL_SEAL: u32 = 1;
/// F_SEAL_SHRINK: the size never goes down.
pub const F_SEAL_SHRINK: u32 = 2;
/// F_SEAL_GROW: the size never goes up.
pub const F_SEAL_GROW: u32 = 4;
/// F_SEAL_WRITE: the contents never change.
pub const F_SEAL_WRITE: u32 = 8;
/// F_SEAL_FUTURE_WRITE: no new writable mapping or write.
pub const F_SEAL_FUTURE_WRITE: u32 = 16;

impl Fs {
    /// memfd_create: a memory file named `memfd:NAME` in no directory,
    /// with seals `seals` (F_SEAL_SEAL unless sealing is allowed).
    pub fn memfd(&self, name: &[u8], seals: u32) -> u64 {
        let mut shown = b"memfd:".to_vec();
        shown.extend_from_slice(name);
        let h = self.lock().add_orphan(
            &shown,
            S_IFREG | 0o777,
            node::Body::Mem(Arc::new(std::sync::RwLock::new(sparse::SparseFile::new()))),
        );
        self.seals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(h, seals);
        h
    }

    /// The seals of node `h` (0 for files that are not memfds).
    pub fn seals(&self, h: u64) -> u32 {
        let s = self.seals.lock().unwrap_or_else(|e| e.into_inner());
        s.get(&h).copied().unwrap_or(0)
    }

    /// F_ADD_SEALS: EINVAL for a file that is not a memfd, EPERM once
    /// F_SEAL_SEAL is set.
    pub fn add_seals(&self, h: u64, add: u32) -> Result<(), Errno> {
        let mut s = self.seals.lock().unwrap_or_else(|e| e.into_inner());
        let cur = s.get_mut(&h).ok_or(libc::EINVAL as Errno)?;
        if *cur & F_SEAL_SEAL != 0 {
            return Err(libc::EPERM as Errno);
        }
        *cur |= add;
        Ok(())
    }

    /// May `h` change from `size` bytes to `end` bytes, its contents
    /// written (`write`)? EPERM where a seal forbids it.
    pub fn seal_check(&self, h: u64, size: u64, end: u64, write: bool) -> Result<(), Errno> {
        let seals = self.seals(h);
        if seals == 0 {
            return Ok(());
        }
        let bad = (write && seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE) != 0)
            || (end > size && seals & F_SEAL_GROW != 0)
            || (end < size && seals & F_SEAL_SHRINK != 0);
        if bad {
            Err(libc::EPERM as Errno)
        } else {
            Ok(())
        }
    }

    /// Node `h` was freed: forget its seals.
    pub(crate) fn forget_seals(&self, h: u64) {
        let mut s = self.seals.lock().unwrap_or_else(|e| e.into_inner());
        s.remove(&h);
    }
}
