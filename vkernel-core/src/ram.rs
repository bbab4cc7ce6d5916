//! Host views of guest memory.
//!
//! [`Ram`] is a bounds-checked window onto memory the guest also sees: the
//! machine's RAM file, the system region, or (in unit tests) a plain
//! anonymous buffer. Everything read through it is untrusted: a vproc can
//! write the same bytes concurrently, so 64-bit entries are loaded and
//! compare-exchanged atomically and every address and length is checked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Errors of guest-memory accesses.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum RamError {
    /// The access reaches outside the memory.
    #[error("guest-physical range {gpa:#x}+{len:#x} is outside the {size:#x}-byte memory")]
    OutOfRange {
        /// First byte of the access.
        gpa: u64,
        /// Length of the access.
        len: u64,
        /// Size of the memory.
        size: u64,
    },
    /// A 64-bit entry access is not 8-byte aligned.
    #[error("guest-physical address {0:#x} is not 8-byte aligned")]
    Unaligned(u64),
}

/// Keeps whatever owns a mapping alive as long as a [`Ram`] refers to it.
type Owner = Arc<dyn Send + Sync>;

struct AnonMapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; all accesses go through `Ram`,
// which uses atomics or volatile-free byte copies on memory that no Rust
// reference aliases.
unsafe impl Send for AnonMapping {}
// SAFETY: as above.
unsafe impl Sync for AnonMapping {}

impl Drop for AnonMapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` come from a successful mmap in `Ram::anonymous`
        // and are unmapped exactly once, here.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// A bounds-checked host view of a guest-physical range starting at 0.
#[derive(Clone)]
pub struct Ram {
    ptr: *mut u8,
    size: u64,
    _owner: Owner,
}

// SAFETY: `Ram` only hands out copies of bytes and atomic operations on the
// shared mapping; the owner keeps the mapping alive.
unsafe impl Send for Ram {}
// SAFETY: as above.
unsafe impl Sync for Ram {}

impl std::fmt::Debug for Ram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ram").field("size", &self.size).finish()
    }
}

impl Ram {
    /// A zero-filled anonymous buffer of `size` bytes (rounded up to a page),
    /// for tests and tools that exercise the walker without KVM.
    ///
    /// ```
    /// let ram = vkernel_core::ram::Ram::anonymous(1 << 20).unwrap();
    /// ram.store(0x1000, 42).unwrap();
    /// assert_eq!(ram.load(0x1000).unwrap(), 42);
    /// ```
    pub fn anonymous(size: u64) -> std::io::Result<Ram> {
        let len = size.div_ceil(4096).max(1) * 4096;
        // SAFETY: anonymous private mapping with no address hint; the result
        // is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let owner = Arc::new(AnonMapping {
            ptr: ptr.cast(),
            len: len as usize,
        });
        Ok(Ram {
            ptr: ptr.cast(),
            size,
            _owner: owner,
        })
    }

    /// Wrap an existing mapping.
    ///
    /// # Safety
    ///
    /// `ptr` must point to `size` bytes of readable and writable memory that
    /// stays mapped while `owner` is alive, and no Rust reference may alias
    /// it.
    pub unsafe fn from_raw(ptr: *mut u8, size: u64, owner: Arc<dyn Send + Sync>) -> Ram {
        Ram {
            ptr,
            size,
            _owner: owner,
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Host address of `gpa` (checked to lie inside with `len` bytes).
    pub fn host_ptr(&self, gpa: u64, len: u64) -> Result<*mut u8, RamError> {
        self.check(gpa, len)?;
        // SAFETY: `check` guarantees gpa + len <= size, so the offset stays
        // inside the mapping.
        Ok(unsafe { self.ptr.add(gpa as usize) })
    }

    /// Does `[gpa, gpa+len)` lie inside this memory?
    pub fn contains(&self, gpa: u64, len: u64) -> bool {
        self.check(gpa, len).is_ok()
    }

    fn check(&self, gpa: u64, len: u64) -> Result<(), RamError> {
        match gpa.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(RamError::OutOfRange {
                gpa,
                len,
                size: self.size,
            }),
        }
    }

    fn atomic(&self, gpa: u64) -> Result<&AtomicU64, RamError> {
        if !gpa.is_multiple_of(8) {
            return Err(RamError::Unaligned(gpa));
        }
        let p = self.host_ptr(gpa, 8)?;
        // SAFETY: `p` is 8-aligned (the mapping is page aligned and gpa is a
        // multiple of 8), inside the mapping, and AtomicU64 has the layout of
        // u64; the memory lives as long as `self`.
        Ok(unsafe { &*(p as *const AtomicU64) })
    }

    /// Atomically load the 64-bit entry at `gpa`.
    pub fn load(&self, gpa: u64) -> Result<u64, RamError> {
        Ok(self.atomic(gpa)?.load(Ordering::Acquire))
    }

    /// Atomically store `val` at `gpa`.
    pub fn store(&self, gpa: u64, val: u64) -> Result<(), RamError> {
        self.atomic(gpa)?.store(val, Ordering::Release);
        Ok(())
    }

    /// Compare-and-exchange the entry at `gpa`; returns whether it was `old`.
    pub fn cas(&self, gpa: u64, old: u64, new: u64) -> Result<bool, RamError> {
        Ok(self
            .atomic(gpa)?
            .compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire)
            .is_ok())
    }

    /// Copy bytes out of guest memory.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), RamError> {
        let p = self.host_ptr(gpa, buf.len() as u64)?;
        // SAFETY: the range was checked; the guest may change the bytes
        // concurrently, which only makes the copied values arbitrary.
        unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copy bytes into guest memory.
    pub fn write(&self, gpa: u64, buf: &[u8]) -> Result<(), RamError> {
        let p = self.host_ptr(gpa, buf.len() as u64)?;
        // SAFETY: the range was checked and `buf` cannot overlap guest memory
        // handed out as a Rust reference (none is).
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), p, buf.len()) };
        Ok(())
    }

    /// Fill `[gpa, gpa+len)` with zeroes.
    pub fn zero(&self, gpa: u64, len: u64) -> Result<(), RamError> {
        let p = self.host_ptr(gpa, len)?;
        // SAFETY: the range was checked.
        unsafe { std::ptr::write_bytes(p, 0, len as usize) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_alignment() {
        let ram = Ram::anonymous(8192).unwrap();
        assert!(ram.store(8184, 7).is_ok());
        assert_eq!(ram.load(8184).unwrap(), 7);
        assert!(matches!(ram.load(8192), Err(RamError::OutOfRange { .. })));
        assert_eq!(ram.load(4), Err(RamError::Unaligned(4)));
        assert!(ram.read(8190, &mut [0u8; 4]).is_err());
        assert!(ram.read(u64::MAX - 1, &mut [0u8; 4]).is_err());
        assert!(ram.cas(0, 0, 5).unwrap());
        assert!(!ram.cas(0, 0, 6).unwrap());
        assert_eq!(ram.load(0).unwrap(), 5);
    }
}
