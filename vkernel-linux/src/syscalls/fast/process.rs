//! wait4, getrusage and sched_yield in the exitless server, when they need
//! not switch the vCPU: wait4 reaping a zombie child or finding none ready
//! with WNOHANG (a shell's loop makes both after every command), getrusage
//! of the process or its children, sched_yield with nothing else queued on
//! the vCPU. A wait that must block, stop and continue reports, a tracer's
//! wait and a yield that hands over go to the exit path.

use super::answer;
use crate::kernel::fast::{write_user, FastCtx};
use crate::kernel::Kernel;
use crate::syscalls::info::{rusage, RUSAGE};
use crate::syscalls::int32;

/// wait4(pid, status, options, rusage) that does not wait.
pub(super) fn wait4(k: &Kernel, c: &mut FastCtx, a: [u64; 6]) -> Option<u64> {
    // pid_t and int arguments: the low 32 bits, as the exit path reads them.
    let want = int32(a[0]);
    let (status, usage) = (a[1], a[3]);
    // The status and the zeroed usage are written before the child is
    // reaped: a page the server cannot write sends the call to the exit
    // path with the child still there.
    let mut commit = |ws: i32| {
        (status == 0 || write_user(c, status, &ws.to_le_bytes()))
            && (usage == 0 || write_user(c, usage, &[0u8; RUSAGE]))
    };
    k.wait_ready(c.tgid, want, a[2], &mut commit).map(answer)
}

/// getrusage(who, usage): RUSAGE_SELF and RUSAGE_THREAD as the exit path
/// answers them (the process's CPU time as user time, its resident set as
/// the maximum), RUSAGE_CHILDREN zeros.
pub(super) fn getrusage(k: &Kernel, c: &mut FastCtx, who: u64, buf: u64) -> Option<u64> {
    let b = match int32(who) {
        0 | 1 => {
            let pages = c.process.try_with_mm(|mm| mm.resident_pages())?;
            rusage(k.cpu_time(c.pid), pages)
        }
        -1 => [0u8; RUSAGE],
        _ => return None,
    };
    write_user(c, buf, &b).then_some(0)
}

/// sched_yield with no other task queued on the caller's vCPU: nothing to
/// hand over to.
pub(super) fn sched_yield(k: &Kernel, c: &mut FastCtx) -> Option<u64> {
    k.yield_is_noop(c.cpu).then_some(0)
}
