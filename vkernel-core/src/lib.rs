//! # vkernel-core
//!
//! The host side of a virtual kernel: a [`machine::Machine`] (KVM VM, vCPUs,
//! RAM backed by a memory file), [`vmspace::Vmspace`]s governed by
//! vpagetables ([`vpte`]) that the [`walker`] resolves like hardware, and
//! [`cpu::Cpu::run`], which runs a vproc until it traps.
//!
//! ```no_run
//! use vkernel_core::prelude::*;
//! let machine = Machine::builder().ram_size(16 << 20).build()?;
//! let vms = machine.vmspace_create()?;
//! let mut cpu = machine.take_cpu(0).unwrap();
//! vms.mmap(0x1000, 0x1000, Backing::Linear { gpa: 0, prot: Prot::RX })?;
//! machine.ram().write(0, &[0x0f, 0x05])?; // syscall
//! let mut frame = TrapFrame::new(0x1000, 0);
//! assert_eq!(cpu.run(&vms, &mut frame)?, Trap::Syscall);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod boot;
pub mod cpu;
pub mod exitless;
pub mod fpu;
pub mod host;
pub mod hwpt;
pub mod kick;
pub mod machine;
pub mod memstat;
pub mod ram;
pub mod sched;
pub mod trap;
pub mod uaccess;
pub mod vmspace;
pub mod vptable;
pub mod vpte;
pub mod walk_range;
pub mod walker;

/// The types most programs need.
pub mod prelude {
    pub use crate::cpu::{Cpu, CpuStats, Kicker, RunError};
    pub use crate::machine::{Machine, MachineError, TrapPath};
    pub use crate::trap::{Access, FaultReason, Trap, TrapFrame};
    pub use crate::vmspace::{Backing, Mcontrol, Prot, Vmspace, VmspaceError};
    pub use crate::vptable::{FrameAlloc, VpTable};
    pub use crate::vpte::Vpte;
}
