//! Starting a virtual kernel: the layer above `kernel` and `syscalls` that
//! joins them. The kernel (process table, run loop, exitless server) never
//! imports the syscall layer; [`run`] hands it the syscall table's exitless
//! handlers.
//!
//! ```no_run
//! # fn f(machine: &vkernel_core::machine::Machine, init: vkernel_linux::Vproc)
//! # -> Result<(), vkernel_linux::VprocError> {
//! use vkernel_linux::kernel::Options;
//! let report = vkernel_linux::launch::run(machine, init, &Options::default())?;
//! println!("exit: {:?}", report.status);
//! # Ok(()) }
//! ```

use crate::core::machine::Machine;
use crate::kernel::{Options, Report};
use crate::{Vproc, VprocError};

/// Run `init` and everything it forks on `opts.cpus` vCPUs of `machine`
/// until `init` exits (see [`crate::kernel`]).
pub fn run(machine: &Machine, init: Vproc, opts: &Options) -> Result<Report, VprocError> {
    crate::kernel::run_with(machine, init, opts, &crate::syscalls::table::fast_calls())
}
