//! # vkernel-core
//!
//! The host side of a virtual kernel: a [`machine::Machine`] (KVM VM, vCPUs,
//! RAM backed by a memory file), [`vmspace::Vmspace`]s governed by
//! vpagetables ([`vpte`]) that the [`walker`] resolves like hardware, and
//! [`cpu::Cpu::run`], which runs a vproc until it traps.
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod ram;
pub mod vpte;
pub mod walker;
