//! pidfds: pidfd_open (a file that names a process and becomes readable
//! when it ends) and pidfd_send_signal (a signal to the process it
//! names). The process table keeps the registrations
//! (`kernel/pidfd.rs`).

use super::errno::*;
use super::table::Handler;
use super::{int, R};
use crate::files::{self, FileKind, OpenFile, PidFd, Shared};
use crate::signal::{self, SigInfo};
use crate::Vproc;

/// PIDFD_NONBLOCK (O_NONBLOCK).
const PIDFD_NONBLOCK: u64 = 0o4000;
/// PIDFD_SIGNAL_THREAD: to the thread the pidfd names.
const PIDFD_SIGNAL_THREAD: u64 = 1;
/// PIDFD_SIGNAL_THREAD_GROUP: to its process (the default).
const PIDFD_SIGNAL_THREAD_GROUP: u64 = 2;
/// PIDFD_SIGNAL_PROCESS_GROUP: to its process group.
const PIDFD_SIGNAL_PROCESS_GROUP: u64 = 4;

impl Vproc {
    /// The pidfd calls: `(number, handler)` for the syscall table.
    pub(super) const PIDFD_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_pidfd_open, |v, _nr, a| {
            v.sys_pidfd_open(int(a[0]), a[1])
        }),
        (libc::SYS_pidfd_send_signal, |v, _nr, a| {
            v.sys_pidfd_send_signal(int(a[0]), int(a[1]), a[2], a[3])
        }),
    ];

    /// pidfd_open(pid, flags): a close-on-exec pidfd of process `pid`.
    fn sys_pidfd_open(&mut self, pid: i64, flags: u64) -> R {
        if flags & !PIDFD_NONBLOCK != 0 || pid <= 0 {
            return Err(EINVAL);
        }
        let pid = i32::try_from(pid).map_err(|_| ESRCH)?;
        let fd = Shared::new(PidFd::new(pid));
        self.kernel()?.pidfd_watch(pid, &fd)?;
        let st = files::O_RDWR
            | if flags & PIDFD_NONBLOCK != 0 {
                files::O_NONBLOCK
            } else {
                0
            };
        let file = OpenFile::new(FileKind::PidFd(fd), st, b"anon_inode:[pidfd]");
        self.install_file(file, files::O_CLOEXEC)
    }

    /// pidfd_send_signal(pidfd, sig, info, flags): as kill (info NULL) or
    /// rt_sigqueueinfo (info given) to the process, its leader thread
    /// (PIDFD_SIGNAL_THREAD) or its process group
    /// (PIDFD_SIGNAL_PROCESS_GROUP). A zombie takes and ignores it, as on
    /// Linux; ESRCH once it was reaped.
    fn sys_pidfd_send_signal(&mut self, fd: i64, sig: i64, uinfo: u64, flags: u64) -> R {
        if flags & !(PIDFD_SIGNAL_THREAD | PIDFD_SIGNAL_THREAD_GROUP | PIDFD_SIGNAL_PROCESS_GROUP)
            != 0
            || flags.count_ones() > 1
        {
            return Err(EINVAL);
        }
        let (pid, exited) = match &self.fds.get(fd)?.file.borrow().kind {
            FileKind::PidFd(p) => {
                let p = p.borrow();
                (p.pid, p.exited)
            }
            // A `/proc/PID` directory names its process too (Linux's
            // first pidfds).
            FileKind::Inode(h) => match crate::fs::proc_item(*h) {
                Some((pid, crate::fs::ProcItem::PidDir)) => (pid, false),
                _ => return Err(EBADF),
            },
            _ => return Err(EBADF),
        };
        let sig = i32::try_from(sig).map_err(|_| EINVAL)?;
        if !(0..=64).contains(&sig) {
            return Err(EINVAL);
        }
        if exited {
            return if self.kernel()?.task_exists(pid) {
                Ok(0)
            } else {
                Err(ESRCH)
            };
        }
        let info = if uinfo == 0 {
            SigInfo {
                signo: sig,
                pid: self.thread.tgid,
                ..Default::default()
            }
        } else {
            let mut b = [0u8; 128];
            self.mm.read(uinfo, &mut b)?;
            let info = signal::siginfo_from_bytes(sig, &b);
            // Only a process may fake kernel codes to itself.
            if (info.code >= 0 || info.code == signal::SI_TKILL) && pid != self.thread.tgid {
                return Err(EPERM);
            }
            info
        };
        match flags {
            PIDFD_SIGNAL_THREAD => self.tgkill_info(pid, pid, info),
            PIDFD_SIGNAL_PROCESS_GROUP => {
                let pgid = i32::try_from(self.sys_pgid(1, pid)?).map_err(|_| ESRCH)?;
                self.kill_info(-pgid, info)
            }
            _ => self.kill_info(pid, info),
        }
    }
}
