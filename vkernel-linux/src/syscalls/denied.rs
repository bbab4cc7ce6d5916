//! Calls that only a privileged process may make, answered as Linux
//! answers a root without capabilities (which every vproc is: capget says
//! so, though setuid and setgroups are taken and change nothing): EPERM
//! for mounting, chroot, namespaces, modules, swap, reboot,
//! raw I/O ports, the kernel log, accounting, quotas and kexec. And calls
//! whose work the vkernel has no need of: mlock and friends (guest RAM is
//! never swapped), sync_file_range (the overlay is memory), personality
//! (PER_LINUX only), restart_syscall.

use super::errno::*;
use super::table::Handler;
use super::R;
use crate::Vproc;

/// `(number, handler)`: each of these is EPERM.
const PRIVILEGED: [i64; 27] = [
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_setns,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_syslog,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_vhangup,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_fsconfig,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_quotactl_fd,
];

fn eperm(_v: &mut Vproc, _nr: i64, _a: [u64; 6]) -> R {
    Err(EPERM)
}

/// MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT.
const MCL_ALL: u64 = 7;

impl Vproc {
    /// `(number, handler)` for the syscall table.
    pub(super) const DENIED_CALLS: &'static [(i64, Handler)] = &[
        (PRIVILEGED[0], eperm),
        (PRIVILEGED[1], eperm),
        (PRIVILEGED[2], eperm),
        (PRIVILEGED[3], eperm),
        (PRIVILEGED[4], eperm),
        (PRIVILEGED[5], eperm),
        (PRIVILEGED[6], eperm),
        (PRIVILEGED[7], eperm),
        (PRIVILEGED[8], eperm),
        (PRIVILEGED[9], eperm),
        (PRIVILEGED[10], eperm),
        (PRIVILEGED[11], eperm),
        (PRIVILEGED[12], eperm),
        (PRIVILEGED[13], eperm),
        (PRIVILEGED[14], eperm),
        (PRIVILEGED[15], eperm),
        (PRIVILEGED[16], eperm),
        (PRIVILEGED[17], eperm),
        (PRIVILEGED[18], eperm),
        (PRIVILEGED[19], eperm),
        (PRIVILEGED[20], eperm),
        (PRIVILEGED[21], eperm),
        (PRIVILEGED[22], eperm),
        (PRIVILEGED[23], eperm),
        (PRIVILEGED[24], eperm),
        (PRIVILEGED[25], eperm),
        (PRIVILEGED[26], eperm),
        // The file-system ids are the ids: 0, and stay 0 (as setuid).
        (libc::SYS_setfsuid, |_v, _nr, _a| Ok(0)),
        (libc::SYS_setfsgid, |_v, _nr, _a| Ok(0)),
        // Taken as setuid is (the ids stay 0; getgroups says none).
        (libc::SYS_setgroups, |_v, _nr, _a| Ok(0)),
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
            v.fds.get(i64::from(i32::from_le_bytes(
                a[0].to_le_bytes()[..4].try_into().expect("4 bytes"),
            )))?;
            if a[3] & !7 != 0 || (a[1] as i64) < 0 || (a[2] as i64) < 0 {
                return Err(EINVAL);
            }
            Ok(0)
        }),
        // PER_LINUX (0) is the only personality; 0xffffffff asks.
        (libc::SYS_personality, |_v, _nr, a| {
            match a[0] & 0xffff_ffff {
                0xffff_ffff | 0 => Ok(0),
                _ => Err(EINVAL),
            }
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
