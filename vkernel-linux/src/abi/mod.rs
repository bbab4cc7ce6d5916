//! The Linux ABI as the personality sees it: definitions only, no
//! behaviour, and no import from the rest of the crate.
//!
//! - [`errno`]: the errnos handlers return.
//! - [`sysno`]: every x86-64 syscall number's name.
//! - [`socket`]: address families, socket types and flags.

pub mod errno;
pub mod socket;
pub mod sysno;

/// TASK_COMM_LEN: a thread's name (`prctl` PR_SET_NAME, /proc/PID/comm)
/// and its NUL.
pub const COMM_LEN: usize = 16;
