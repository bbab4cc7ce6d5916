//! inotify: inotify_init/inotify_init1, inotify_add_watch,
//! inotify_rm_watch, and reading events. The tree reports what happens
//! to its nodes ([`crate::fs::notify`]).

use super::errno::*;
use super::table::Handler;
use super::{int, R};
use crate::files::{self, FileKind, OpenFile, Shared};
use crate::fs::notify::{Inotify, NotifyError, IN_DONT_FOLLOW, IN_ONLYDIR};
use crate::Vproc;

/// IN_NONBLOCK and IN_CLOEXEC: inotify_init1's flags.
const IN_FLAGS: u64 = 0o4000 | 0o2000000;

impl Vproc {
    /// The inotify calls: `(number, handler)` for the syscall table.
    pub(super) const NOTIFY_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_inotify_init, |v, _nr, _a| v.sys_inotify_init1(0)),
        (libc::SYS_inotify_init1, |v, _nr, a| {
            v.sys_inotify_init1(a[0])
        }),
        (libc::SYS_inotify_add_watch, |v, _nr, a| {
            v.sys_inotify_add_watch(int(a[0]), a[1], a[2])
        }),
        (libc::SYS_inotify_rm_watch, |v, _nr, a| {
            v.sys_inotify_rm_watch(int(a[0]), int(a[1]))
        }),
    ];

    /// inotify_init1(flags).
    fn sys_inotify_init1(&mut self, flags: u64) -> R {
        if flags & !IN_FLAGS != 0 {
            return Err(EINVAL);
        }
        // O_RDONLY is 0.
        let st = if flags & u64::from(files::O_NONBLOCK) != 0 {
            files::O_NONBLOCK
        } else {
            0
        };
        let ino = Shared::new(Inotify::default());
        let file = OpenFile::new(FileKind::Inotify(ino), st, b"anon_inode:inotify");
        let cloexec = flags & u64::from(files::O_CLOEXEC) != 0;
        self.install_file(file, if cloexec { files::O_CLOEXEC } else { 0 })
    }

    /// The inotify instance of `fd` (EBADF, EINVAL when not one).
    fn inotify_of(&self, fd: i64) -> Result<Shared<Inotify>, i64> {
        match &self.fds.get(fd)?.file.borrow().kind {
            FileKind::Inotify(i) => Ok(i.clone()),
            _ => Err(EINVAL),
        }
    }

    /// inotify_add_watch(fd, path, mask).
    fn sys_inotify_add_watch(&mut self, fd: i64, path: u64, mask: u64) -> R {
        let ino = self.inotify_of(fd)?;
        let mask = u32::try_from(mask).map_err(|_| EINVAL)?;
        let p = self.user_path(path)?;
        let h = self.lookup_at(super::AT_FDCWD, &p, mask & IN_DONT_FOLLOW == 0)?;
        if mask & IN_ONLYDIR != 0 && !self.is_dir(h) {
            return Err(ENOTDIR);
        }
        match self.fs.notifier().add_watch(&ino, h, mask) {
            Ok(wd) => Ok(i64::from(wd)),
            Err(NotifyError::Exists) => Err(EEXIST),
            Err(NotifyError::Invalid) => Err(EINVAL),
        }
    }

    /// inotify_rm_watch(fd, wd).
    fn sys_inotify_rm_watch(&mut self, fd: i64, wd: i64) -> R {
        let ino = self.inotify_of(fd)?;
        let wd = i32::try_from(wd).map_err(|_| EINVAL)?;
        self.fs
            .notifier()
            .rm_watch(&ino, wd)
            .map(|()| 0)
            .map_err(|_| EINVAL)
    }

    /// read(2) of an inotify instance: whole events while they fit
    /// (EINVAL when not even the first does), waiting for one unless
    /// `nonblock`.
    pub(super) fn inotify_read(
        &mut self,
        i: &Shared<Inotify>,
        nonblock: bool,
        data: &mut [u8],
    ) -> Result<usize, i64> {
        let mut q = i.borrow_mut();
        let Some(first) = q.events.front() else {
            if nonblock {
                return Err(EAGAIN);
            }
            let k = self.kernel()?;
            q.wait(self.pid, k);
            drop(q);
            return self.block().map(|_| 0);
        };
        if first.size() > data.len() {
            return Err(EINVAL);
        }
        let mut n = 0;
        while let Some(e) = q.events.front() {
            if n + e.size() > data.len() {
                break;
            }
            let b = e.encode();
            data[n..n + b.len()].copy_from_slice(&b);
            n += b.len();
            q.events.pop_front();
        }
        Ok(n)
    }
}
