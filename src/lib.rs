//! # vkernel
//!
//! Build *virtual kernels*: kernels that run as ordinary Linux processes and
//! run their own processes ("vprocs") in hardware-isolated address spaces
//! ("vmspaces") on KVM. This crate is a facade over the workspace crates:
//!
//! - [`core`]: machine, RAM, vmspaces, vpagetables, the walker, traps.
//! - [`devices`]: timer, console, disk and tap drivers on a mio event loop.
//! - [`guest`]: code that runs inside the guest and guest program loading.
//! - [`linux`] (feature `linux`, on by default): a Linux-ABI personality
//!   that runs static x86-64 Linux programs as vprocs; the `vkernel`
//!   example is a thin command line over it.
#![deny(missing_docs)]

pub use vkernel_core as core;
pub use vkernel_devices as devices;
pub use vkernel_guest as guest;

#[cfg(feature = "linux")]
pub use vkernel_linux as linux;
