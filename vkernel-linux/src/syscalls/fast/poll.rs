//! epoll_wait in the exitless server (and epoll_pwait/epoll_pwait2 without
//! a signal mask): answered when items are ready, or at once for a zero
//! timeout. A wait, a signal mask, an item whose readiness needs the
//! vproc (a signalfd, the console) or a busy lock takes the exit path. The
//! events are copied out before the items are marked reported, so a
//! failed copy leaves the exit path to do it all again.

use super::super::epoll::{collect_ready, commit_ready, encode_events, EVENT_SIZE, MAX_EVENTS};
use super::super::ready::Look;
use crate::files::FileKind;
use crate::kernel::fast::{read_user, FastCtx};
use crate::mm::USER_END;
use crate::syscalls::int32;

/// epoll_wait(epfd, events, max, timeout), epoll_pwait(..., sigmask,
/// size) and epoll_pwait2(epfd, events, max, timespec, sigmask, size).
pub(super) fn serve(c: &FastCtx, nr: i64, a: [u64; 6]) -> Option<u64> {
    let zero = match nr {
        libc::SYS_epoll_wait => int32(a[3]) == 0,
        libc::SYS_epoll_pwait if a[4] == 0 => int32(a[3]) == 0,
        libc::SYS_epoll_pwait2 if a[4] == 0 => {
            if a[3] == 0 {
                false
            } else {
                let mut ts = [0u8; 16];
                read_user(c, a[3], &mut ts).then_some(())?;
                ts == [0u8; 16]
            }
        }
        _ => return None,
    };
    let max = i64::from(int32(a[2]));
    if max <= 0 || max > MAX_EVENTS {
        return None;
    }
    let max = usize::try_from(max).ok()?;
    let bytes = u64::try_from(max * EVENT_SIZE).ok()?;
    if a[1].checked_add(bytes).is_none_or(|e| e > USER_END) {
        return None;
    }
    let epfd = i64::from(int32(a[0]));
    c.process
        .try_with_parts(|p| {
            let file = p.fds.get(epfd).ok()?.file.clone();
            let ep = match &file.try_borrow()?.kind {
                FileKind::Epoll(ep) => ep.clone(),
                _ => return None,
            };
            let look = Look {
                stdio: None,
                pending: None,
                try_only: true,
            };
            let ready = collect_ready(&look, &ep, max)?;
            if ready.is_empty() && !zero {
                return None;
            }
            p.mm.vmspace()
                .copy_to_user(a[1], &encode_events(&ready))
                .ok()?;
            commit_ready(&ep, &ready, true)?;
            u64::try_from(ready.len()).ok()
        })
        .flatten()
}
