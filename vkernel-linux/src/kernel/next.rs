//! What happens after a syscall: the control value a handler returns and
//! the run loop turns into the vproc's next state (Sentry's
//! `SyscallControl`).
//!
//! Most handlers only produce a value for rax (`Result<i64, i64>`, a value
//! or an errno); the syscall layer turns that into [`Next::Ret`], and the
//! two internal codes a waiting helper returns (Linux's way: an errno the
//! vproc never sees) into [`Next::Block`] and [`Next::Restart`]. The few
//! handlers that change what runs next (exit, clone, sched_yield) return a
//! [`Next`] themselves.

use std::time::Instant;

use crate::ExitStatus;

use super::ptrace;

/// What a blocked vproc waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// A wake-up (pipe, child exit, signal); the call is retried.
    Event,
    /// A wake-up or the deadline (nanosleep: the result is already set).
    Until(Instant),
}

/// fork/vfork/clone's arguments, for the run loop that makes the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloneArgs {
    /// clone flags (low byte: the exit signal).
    pub flags: u64,
    /// CLONE_PARENT_SETTID target.
    pub ptid: u64,
    /// CLONE_CHILD_SETTID / CLEARTID target.
    pub ctid: u64,
    /// CLONE_SETTLS value.
    pub tls: u64,
    /// The child's stack pointer (0: the parent's).
    pub stack: u64,
}

/// What a syscall handler says happens next.
///
/// ```
/// use vkernel_linux::kernel::{Next, Wait};
/// // A read that found its pipe empty waits for a writer:
/// let next = Next::Block(Wait::Event);
/// assert!(next.rewinds());
/// assert!(!Next::Ret(3).rewinds());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The call is done: this value (or `-errno`) goes in rax and the
    /// vproc runs on.
    Ret(i64),
    /// The call waits: the vproc sleeps until woken or the deadline, then
    /// the call runs again from its `syscall` instruction with the state
    /// it kept ([`crate::syscalls::events::CallState`]).
    Block(Wait),
    /// A debugger request or a signal interrupted the call: it runs again
    /// after the interruption (or ends with EINTR if a handler runs and
    /// the call does not restart).
    Restart,
    /// fork/vfork/clone: the run loop makes the child (a process or a
    /// thread) and puts its pid (or `-errno`) in the caller's rax.
    Clone(CloneArgs),
    /// sched_yield: rax is 0 and the vCPU runs another vproc if one is
    /// waiting.
    Yield,
    /// exit (`group` false: this thread) or exit_group (every thread).
    Exit {
        /// The exit status.
        status: ExitStatus,
        /// The whole thread group ends.
        group: bool,
    },
}

impl Next {
    /// True when the call is not finished: its frame is rewound to the
    /// `syscall` instruction to run again.
    pub fn rewinds(&self) -> bool {
        matches!(self, Next::Block(_) | Next::Restart)
    }
}

/// Why signal delivery stopped a vproc ([`Vproc::deliver_pending`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Halt {
    /// The default action of this stop signal: a group-stop.
    Stop(i32),
    /// A ptrace-stop (signal-delivery-stop) for its tracer.
    Trace(ptrace::Stop),
}
