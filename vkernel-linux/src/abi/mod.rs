//! The Linux ABI as the personality sees it: definitions only, no
//! behaviour, and no import from the rest of the crate.
//!
//! - [`errno`]: the errnos handlers return.
//! - [`sysno`]: every x86-64 syscall number's name.

pub mod errno;
pub mod sysno;
