//! What the host process has left for the vkernel's own use.
//!
//! Under a tight `ulimit -v` an allocation or a thread start that fails
//! late aborts the process (std panics in a new thread whose signal stack
//! does not fit); checking first gives a clear error instead.

/// Address space a new thread needs, with room to spare: std's default
/// stack (2 MiB), its guard page and its signal stack.
pub const THREAD_ROOM: usize = 4 << 20;

/// Is there `len` bytes of address space left (under `ulimit -v`)? Reserves
/// them (PROT_NONE, nothing committed) and gives them back at once.
///
/// ```
/// vkernel_core::host::address_space_left(vkernel_core::host::THREAD_ROOM).unwrap();
/// ```
pub fn address_space_left(len: usize) -> std::io::Result<()> {
    // SAFETY: a fresh PROT_NONE reservation with no address hint, checked
    // against MAP_FAILED and unmapped at once; nothing refers to it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        libc::munmap(p, len);
    }
    Ok(())
}
