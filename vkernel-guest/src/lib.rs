//! # vkernel-guest
//!
//! Everything that executes inside the guest, and the ABI it shares with the
//! host:
//!
//! - [`layout`]: where the reserved system region lives in guest-physical and
//!   guest-virtual memory, and what each of its pages holds.
//! - [`abi`]: the I/O ports the guest exits through, the per-vCPU mailbox,
//!   and the command list the stub applies before resuming a vproc.
//! - [`stub`]: the CPL0 trap stub and the syscall trampoline, assembled by
//!   the project's own toolchain (`global_asm!`) and copied into the guest as
//!   position-independent bytes.
//! - [`x86`]: descriptor, page-table and register constants.
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod abi;
pub mod layout;
pub mod programs;
pub mod stub;
pub mod x86;
