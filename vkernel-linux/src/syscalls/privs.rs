//! Capabilities and the calls that change what only a privileged user
//! may: capget/capset (every vproc runs as uid 0 but holds no capability,
//! the truth about what the vkernel lets it do: no raw sockets, no
//! changing the clock), sched_setaffinity (a mask must name one of the
//! vkernel's vCPUs; the scheduler places vprocs itself), clock_settime and
//! settimeofday (EPERM), and execveat.

use super::errno::*;
use super::int32 as int;
use super::table::Handler;
use super::R;
use crate::Vproc;

/// _LINUX_CAPABILITY_VERSION_1, _2 and _3.
const CAP_V1: u32 = 0x1998_0330;
const CAP_V2: u32 = 0x2007_1026;
const CAP_V3: u32 = 0x2008_0522;
/// AT_EMPTY_PATH.
const AT_EMPTY_PATH: u64 = 0x1000;
/// AT_SYMLINK_NOFOLLOW.
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
/// AT_FDCWD.
const AT_FDCWD: i64 = -100;

impl Vproc {
    /// `(number, handler)` for the syscall table.
    pub(super) const PRIV_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_capget, |v, _nr, a| {
            v.sys_capget(a[0], a[1], false)
        }),
        (libc::SYS_capset, |v, _nr, a| v.sys_capget(a[0], a[1], true)),
        (libc::SYS_sched_setaffinity, |v, _nr, a| {
            v.sys_sched_setaffinity(int(a[0]), a[1], a[2])
        }),
        (libc::SYS_clock_settime, |_v, _nr, a| {
            if a[0] > 11 {
                Err(EINVAL)
            } else {
                Err(EPERM)
            }
        }),
        (libc::SYS_settimeofday, |_v, _nr, _a| Err(EPERM)),
        (libc::SYS_execveat, |v, _nr, a| {
            v.sys_execveat(i64::from(int(a[0])), a[1], a[2], a[3], a[4])
        }),
    ];

    /// capget (`set`: capset): the empty capability sets.
    fn sys_capget(&mut self, hdr: u64, data: u64, set: bool) -> R {
        let h = self.mm.read_vec(hdr, 8)?;
        let version = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let pid = i32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let words = match version {
            CAP_V1 => 1,
            CAP_V2 | CAP_V3 => 2,
            _ => {
                // Tell the caller the version this kernel speaks.
                self.mm.write(hdr, &CAP_V3.to_le_bytes())?;
                return if data == 0 && !set {
                    Ok(0)
                } else {
                    Err(EINVAL)
                };
            }
        };
        if pid < 0 {
            return Err(EINVAL);
        }
        if pid != 0 && pid != self.pid && !self.k.as_ref().is_some_and(|k| k.task_exists(pid)) {
            return Err(ESRCH);
        }
        if data == 0 {
            return Ok(0);
        }
        if set {
            if pid != 0 && pid != self.pid {
                return Err(EPERM);
            }
            // Only the empty sets: nothing can be gained.
            let d = self.mm.read_vec(data, 12 * words)?;
            return if d.iter().all(|&b| b == 0) {
                Ok(0)
            } else {
                Err(EPERM)
            };
        }
        self.mm.write(data, &vec![0u8; 12 * words])?;
        Ok(0)
    }

    /// sched_setaffinity: the thread runs only on the vCPUs of the mask
    /// from now on (the scheduler keeps to it: placement of new tasks,
    /// load balancing); EINVAL when it names none of them.
    fn sys_sched_setaffinity(&mut self, pid: i32, len: u64, mask: u64) -> R {
        if pid < 0 {
            return Err(ESRCH);
        }
        let target = if pid == 0 { self.pid } else { pid };
        if target != self.pid && !self.k.as_ref().is_some_and(|k| k.task_exists(target)) {
            return Err(ESRCH);
        }
        let len = usize::try_from(len.min(4096)).unwrap_or(0);
        let m = self.mm.read_vec(mask, len)?;
        // The first 64 CPUs (a vkernel has at most that many vCPUs).
        let mut word = [0u8; 8];
        let n = m.len().min(8);
        word[..n].copy_from_slice(&m[..n]);
        let bits = u64::from_le_bytes(word);
        match &self.k {
            Some(k) => k.set_affinity(target, bits).map(|()| 0),
            None if bits & 1 != 0 => Ok(0),
            None => Err(EINVAL),
        }
    }

    /// execveat(dirfd, path, argv, envp, flags): a path relative to
    /// `dirfd`, or with AT_EMPTY_PATH the file `dirfd` is open on (a file
    /// of the tree: a memfd, which has no path, is ENOENT).
    fn sys_execveat(&mut self, dirfd: i64, path: u64, argv: u64, envp: u64, flags: u64) -> R {
        if flags & !(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 {
            return Err(EINVAL);
        }
        let p = self.user_path(path)?;
        let full = if p.is_empty() {
            if flags & AT_EMPTY_PATH == 0 {
                return Err(ENOENT);
            }
            let h = self.inode_of_fd(dirfd)?;
            if self.fs.inode(h).nlink == 0 {
                return Err(ENOENT);
            }
            self.fs.path_of(h)
        } else if p.starts_with(b"/") || dirfd == AT_FDCWD {
            p
        } else {
            let h = self.inode_of_fd(dirfd)?;
            let mut d = self.fs.path_of(h);
            if !d.ends_with(b"/") {
                d.push(b'/');
            }
            d.extend_from_slice(&p);
            d
        };
        if flags & AT_SYMLINK_NOFOLLOW != 0
            && self
                .fs
                .resolve(self.cwd, &full, false)
                .is_ok_and(|h| self.fs.link_target(h).is_some())
        {
            return Err(ELOOP);
        }
        if self.threaded() {
            self.dethread()?;
        }
        let r = self.execve_path(full, argv, envp);
        self.mm.clear_dethread();
        if r.is_ok() {
            self.thread.robust_list = 0;
        }
        r
    }

    /// The tree node fd `fd` is open on (EBADF, or ENOTDIR/EACCES-like
    /// ENOENT for a pipe or socket).
    fn inode_of_fd(&self, fd: i64) -> Result<u64, i64> {
        let file = self.fds.get(fd)?.file.clone();
        let f = file.borrow();
        match f.kind {
            crate::files::FileKind::Inode(h) => Ok(h),
            _ => Err(ENOENT),
        }
    }
}
