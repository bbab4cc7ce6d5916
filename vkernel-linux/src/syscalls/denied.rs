//! Calls that only a privileged process may make, answered as Linux
//! answers a root without capabilities (which every vproc is: capget says
//! so, though setuid and setgroups are taken and change nothing): EPERM
//! for mounting, chroot, namespaces, modules, swap, reboot,
//! raw I/O ports, the kernel log, accounting, quotas and kexec. And calls
//! whose work the vkernel has no need of: mlock and friends (guest RAM is
//! never swapped), sync_file_range (the overlay is memory), personality
//! (PER_LINUX, optionally with ADDR_NO_RANDOMIZE), restart_syscall.

use super::errno::*;
use super::table::Handler;
use super::R;
use crate::Vproc;

fn eperm(_v: &mut Vproc, _nr: i64, _a: [u64; 6]) -> R {
    Err(EPERM)
}

/// MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT.
const MCL_ALL: u64 = 7;

impl Vproc {
    /// `(number, handler)` for the syscall table: the privileged calls
    /// first, each EPERM.
    pub(super) const DENIED_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_mount, eperm),
        (libc::SYS_umount2, eperm),
        (libc::SYS_pivot_root, eperm),
        (libc::SYS_chroot, eperm),
        (libc::SYS_setns, eperm),
        (libc::SYS_swapon, eperm),
        (libc::SYS_swapoff, eperm),
        (libc::SYS_reboot, eperm),
        (libc::SYS_iopl, eperm),
        (libc::SYS_ioperm, eperm),
        (libc::SYS_syslog, eperm),
        (libc::SYS_acct, eperm),
        (libc::SYS_quotactl, eperm),
        (libc::SYS_init_module, eperm),
        (libc::SYS_finit_module, eperm),
        (libc::SYS_delete_module, eperm),
        (libc::SYS_kexec_load, eperm),
        (libc::SYS_kexec_file_load, eperm),
        (libc::SYS_vhangup, eperm),
        (libc::SYS_open_tree, eperm),
        (libc::SYS_move_mount, eperm),
        (libc::SYS_fsopen, eperm),
        (libc::SYS_fsmount, eperm),
        (libc::SYS_fsconfig, eperm),
        (libc::SYS_fspick, eperm),
        (libc::SYS_mount_setattr, eperm),
        (libc::SYS_quotactl_fd, eperm),
        // Kept for getgroups (root may set any list).
        (libc::SYS_setgroups, |v, _nr, a| {
            let n = usize::try_from(super::int(a[0]))
                .ok()
                .filter(|&n| n <= 65536)
                .ok_or(EINVAL)?;
            let b = v.mm.read_vec(a[1], 4 * n)?;
            v.fds.groups = b
                .chunks(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            Ok(0)
        }),
        // unshare(0) changes nothing; every namespace needs CAP_SYS_ADMIN.
        (libc::SYS_unshare, |_v, _nr, a| {
            if a[0] == 0 {
                Ok(0)
            } else {
                Err(EPERM)
            }
        }),
        // Guest RAM is never swapped: locking changes nothing.
        (libc::SYS_mlock, |v, _nr, a| v.locked_range(a[0], a[1])),
        (libc::SYS_munlock, |v, _nr, a| v.locked_range(a[0], a[1])),
        (libc::SYS_mlock2, |v, _nr, a| {
            if a[2] & !1 != 0 {
                return Err(EINVAL);
            }
            v.locked_range(a[0], a[1])
        }),
        (libc::SYS_mlockall, |_v, _nr, a| {
            if a[0] == 0 || a[0] & !MCL_ALL != 0 || a[0] == 4 {
                Err(EINVAL)
            } else {
                Ok(0)
            }
        }),
        (libc::SYS_munlockall, |_v, _nr, _a| Ok(0)),
        (libc::SYS_sync_file_range, |v, _nr, a| {
            v.fds.get(super::int(a[0]))?;
            if a[3] & !7 != 0 || (a[1] as i64) < 0 || (a[2] as i64) < 0 {
                return Err(EINVAL);
            }
            Ok(0)
        }),
        // PER_LINUX (0) is the only personality, with ADDR_NO_RANDOMIZE
        // (honoured: the vkernel's layout is never randomized, debuggers
        // ask for it); 0xffffffff asks.
        (libc::SYS_personality, |v, _nr, a| {
            const ADDR_NO_RANDOMIZE: u32 = 0x0040000;
            let old = v.personality;
            match u32::try_from(a[0] & 0xffff_ffff).unwrap_or(u32::MAX) {
                0xffff_ffff => {}
                p if p & !ADDR_NO_RANDOMIZE == 0 => v.personality = p,
                _ => return Err(EINVAL),
            }
            Ok(i64::from(old))
        }),
        (libc::SYS_restart_syscall, |_v, _nr, _a| Err(EINTR)),
    ];

    /// mlock's range check: ENOMEM where nothing is mapped.
    fn locked_range(&mut self, start: u64, len: u64) -> R {
        let first = start & !4095;
        let end = start.checked_add(len).ok_or(ENOMEM)?;
        let mut at = first;
        for (s, vma) in self.mm.vmas() {
            if vma.end <= at {
                continue;
            }
            if s > at {
                break;
            }
            at = vma.end;
            if at >= end {
                break;
            }
        }
        if len > 0 && at < end {
            return Err(ENOMEM);
        }
        Ok(0)
    }
}
