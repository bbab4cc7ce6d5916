//! Host views of guest memory.
//!
//! [`Ram`] is a bounds-checked window onto memory the guest also sees: the
//! machine's RAM file, the system region, or (in unit tests) a plain
//! anonymous buffer. Everything read through it is untrusted: a vproc can
//! write the same bytes concurrently, so 64-bit entries are loaded and
//! compare-exchanged atomically and every address and length is checked.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

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

/// Size of a large (2 MiB) page.
pub const LARGE_PAGE: u64 = 2 << 20;

/// What backs a machine's RAM (see [`probe_backing`] and the README's
/// table of which backing gets host huge pages where).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum RamBacking {
    /// Probe the host at machine start ([`probe_backing`]): hugetlb pages
    /// when some are reserved, else anonymous memory with `MADV_HUGEPAGE`
    /// when transparent huge pages are enabled for it, else a memfd.
    #[default]
    Auto,
    /// Private anonymous memory, 2 MiB aligned, with `MADV_HUGEPAGE`:
    /// transparent huge pages in the host's `always` and `madvise` modes.
    /// There is no RAM file.
    Anonymous,
    /// A memfd (the seed's design): huge pages only where the host's
    /// `shmem_enabled` allows them.
    Memfd,
    /// A memfd with `MFD_HUGETLB` (2 MiB): needs reserved hugetlb pages
    /// (`/proc/sys/vm/nr_hugepages`) and a RAM size that is a multiple of 2 MiB.
    MemfdHugetlb,
    /// This file (tmpfs, hugetlbfs...), created if needed and sized to the RAM.
    File(std::path::PathBuf),
}

/// What the host offers for huge pages, read from sysfs and procfs.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HugeProbe {
    /// `/sys/kernel/mm/transparent_hugepage/enabled`: the selected mode
    /// (`always`, `madvise`, `never`), empty when unreadable.
    pub thp_anon: String,
    /// `/sys/kernel/mm/transparent_hugepage/shmem_enabled`: the selected mode.
    pub thp_shmem: String,
    /// `/proc/sys/vm/nr_hugepages`: reserved hugetlb pages (0 when unreadable).
    pub hugetlb_pages: u64,
}

/// The bracketed choice of a sysfs mode line (`always [madvise] never`).
fn selected_mode(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with('[') && w.ends_with(']'))
        .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
        .unwrap_or_default()
}

impl HugeProbe {
    /// Read the host's settings.
    pub fn read() -> HugeProbe {
        let rd = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        HugeProbe {
            thp_anon: selected_mode(&rd("/sys/kernel/mm/transparent_hugepage/enabled")),
            thp_shmem: selected_mode(&rd("/sys/kernel/mm/transparent_hugepage/shmem_enabled")),
            hugetlb_pages: rd("/proc/sys/vm/nr_hugepages").trim().parse().unwrap_or(0),
        }
    }

    /// Does anonymous memory with `MADV_HUGEPAGE` get transparent huge pages?
    pub fn anon_thp(&self) -> bool {
        matches!(self.thp_anon.as_str(), "always" | "madvise")
    }

    /// Does a memfd get transparent huge pages (with `MADV_HUGEPAGE`)?
    pub fn shmem_thp(&self) -> bool {
        matches!(
            self.thp_shmem.as_str(),
            "always" | "within_size" | "advise" | "force"
        )
    }
}

/// Pick the backing [`RamBacking::Auto`] stands for on this host, and say
/// why: hugetlb when pages are reserved and `ram_size` is a multiple of
/// 2 MiB, anonymous THP when enabled for anonymous memory, a memfd when
/// shmem THP is on (or nothing gives huge pages).
pub fn probe_backing(p: &HugeProbe, ram_size: u64) -> (RamBacking, String) {
    if p.hugetlb_pages > 0 && ram_size.is_multiple_of(LARGE_PAGE) {
        return (
            RamBacking::MemfdHugetlb,
            format!("{} hugetlb pages reserved", p.hugetlb_pages),
        );
    }
    if p.anon_thp() {
        return (
            RamBacking::Anonymous,
            format!("anonymous THP '{}'", p.thp_anon),
        );
    }
    if p.shmem_thp() {
        return (RamBacking::Memfd, format!("shmem THP '{}'", p.thp_shmem));
    }
    (
        RamBacking::Memfd,
        format!(
            "no huge pages offered (THP anon '{}', shmem '{}', {} hugetlb pages): 4 KiB host pages",
            p.thp_anon, p.thp_shmem, p.hugetlb_pages
        ),
    )
}

/// A bounds-checked host view of a guest-physical range starting at 0.
#[derive(Clone)]
pub struct Ram {
    ptr: *mut u8,
    size: u64,
    /// Every byte not written since the host created the memory reads
    /// zero (anonymous memory, a new memfd), and no allocator has claimed
    /// that yet ([`Ram::take_fresh`]); shared by the clones.
    fresh: Arc<std::sync::atomic::AtomicBool>,
    /// How [`Ram::discard`] gives bytes back to the host.
    discard: Discard,
    _owner: Owner,
}

/// How a [`Ram`] gives memory back to the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Discard {
    /// `MADV_DONTNEED` (private anonymous memory: reads zero after).
    DontNeed,
    /// `MADV_REMOVE` (a shared mapping of a file: punches a hole, reads
    /// zero after; refused by file systems without holes).
    Remove,
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
            fresh: Arc::new(true.into()),
            discard: Discard::DontNeed,
            _owner: owner,
        })
    }

    /// Private anonymous memory of `size` bytes (rounded up to 2 MiB)
    /// starting on a 2 MiB boundary; with `huge`, advised `MADV_HUGEPAGE` so
    /// the host backs it with transparent huge pages where it can (the
    /// advice failing is not an error: the memory stays usable with 4 KiB
    /// pages). Returns the memory and whether the advice was taken.
    pub fn anonymous_aligned(size: u64, huge: bool) -> std::io::Result<(Ram, bool)> {
        let len = size.div_ceil(LARGE_PAGE).max(1) * LARGE_PAGE;
        let span = len + LARGE_PAGE;
        // SAFETY: anonymous private mapping with no address hint; the result
        // is checked against MAP_FAILED before use.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                span as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = raw as u64;
        let start = base.next_multiple_of(LARGE_PAGE);
        let (head, tail) = (start - base, base + span - (start + len));
        // SAFETY: the head and tail trimmed here lie inside the mapping just
        // made and outside the part kept; nothing refers to them.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head as usize);
            }
            if tail > 0 {
                libc::munmap((start + len) as *mut libc::c_void, tail as usize);
            }
        }
        let advised = huge
            // SAFETY: advice on the mapping kept above, of exactly `len` bytes.
            && unsafe { libc::madvise(start as *mut libc::c_void, len as usize, libc::MADV_HUGEPAGE) }
                == 0;
        let owner = Arc::new(AnonMapping {
            ptr: start as *mut u8,
            len: len as usize,
        });
        Ok((
            Ram {
                ptr: start as *mut u8,
                size,
                fresh: Arc::new(true.into()),
                discard: Discard::DontNeed,
                _owner: owner,
            },
            advised,
        ))
    }

    /// Wrap an existing mapping.
    ///
    /// # Safety
    ///
    /// `ptr` must point to `size` bytes of readable and writable memory that
    /// stays mapped while `owner` is alive, and no Rust reference may alias
    /// it.
    /// The mapping is taken to be a shared mapping of a file (what
    /// [`Ram::discard`] punches holes in) whose bytes may hold anything;
    /// see [`Ram::known_zero`].
    pub unsafe fn from_raw(ptr: *mut u8, size: u64, owner: Arc<dyn Send + Sync>) -> Ram {
        Ram {
            ptr,
            size,
            fresh: Arc::new(false.into()),
            discard: Discard::Remove,
            _owner: owner,
        }
    }

    /// Declare that every byte of this memory reads zero until written (a
    /// memfd just created and sized): frames taken from it for the first
    /// time need no zeroing ([`Ram::take_fresh`]).
    pub fn known_zero(self) -> Ram {
        self.fresh.store(true, Ordering::Release);
        self
    }

    /// Does every byte not yet written read zero (see [`Ram::known_zero`])?
    /// True only for the first caller (of all the clones): the one frame
    /// allocator that hands the memory out first may skip zeroing frames
    /// it has never handed out; after it, the memory holds what it wrote.
    pub fn take_fresh(&self) -> bool {
        self.fresh.swap(false, Ordering::AcqRel)
    }

    /// Give `[gpa, gpa+len)` (page aligned) back to the host: the host
    /// frees the memory behind it and the range reads zero afterwards.
    /// False when the host refused (the bytes are then unchanged).
    pub fn discard(&self, gpa: u64, len: u64) -> bool {
        if !gpa.is_multiple_of(4096) || !len.is_multiple_of(4096) {
            return false;
        }
        let Ok(p) = self.host_ptr(gpa, len) else {
            return false;
        };
        let advice = match self.discard {
            Discard::DontNeed => libc::MADV_DONTNEED,
            Discard::Remove => libc::MADV_REMOVE,
        };
        // SAFETY: the page-aligned range lies inside the mapping (checked);
        // the advice only drops its contents, which nothing references
        // (the caller gives back memory it no longer hands out).
        unsafe { libc::madvise(p.cast(), len as usize, advice) == 0 }
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

    #[test]
    fn aligned_anonymous_memory_starts_on_2mib() {
        let (ram, _) = Ram::anonymous_aligned(3 << 20, true).unwrap();
        assert_eq!(ram.host_ptr(0, 1).unwrap() as u64 % LARGE_PAGE, 0);
        ram.store((3 << 20) - 8, 9).unwrap();
        assert!(ram.load(3 << 20).is_err());
    }

    #[test]
    fn backing_probe_prefers_what_gives_huge_pages() {
        assert_eq!(selected_mode("always [madvise] never"), "madvise");
        let stock = HugeProbe {
            thp_anon: "madvise".into(),
            thp_shmem: "never".into(),
            hugetlb_pages: 0,
        };
        assert_eq!(probe_backing(&stock, 64 << 20).0, RamBacking::Anonymous);
        let reserved = HugeProbe {
            hugetlb_pages: 64,
            ..stock.clone()
        };
        assert_eq!(
            probe_backing(&reserved, 64 << 20).0,
            RamBacking::MemfdHugetlb
        );
        // Not a multiple of 2 MiB: no hugetlb.
        assert_eq!(
            probe_backing(&reserved, (64 << 20) + 4096).0,
            RamBacking::Anonymous
        );
        let none = HugeProbe {
            thp_anon: "never".into(),
            ..stock
        };
        assert_eq!(probe_backing(&none, 64 << 20).0, RamBacking::Memfd);
    }
}
