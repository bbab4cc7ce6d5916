//! `/proc/self`: what the vproc sees of itself. The tree resolves
//! `/proc` paths through [`ProcView`] (implemented here by the vproc);
//! this module renders the files (`maps`, `status`), the links' targets
//! and the directory listings.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use crate::files::FileKind;
use crate::fs::{
    proc_handle, proc_item, DirEntry, ProcItem, ProcView, NET_ITEMS, OTHER_PID_ITEMS, PID_ITEMS,
    TOP_ITEMS,
};
use crate::mm::VmaKind;
use crate::Vproc;

impl ProcView for Vproc {
    fn pid(&self) -> i32 {
        self.pid
    }

    fn fd_node(&self, n: i32) -> Option<Option<u64>> {
        let fd = self.fds.get(n as i64).ok()?;
        let f = fd.file.borrow();
        Some(match f.kind {
            FileKind::Inode(h) => Some(h),
            _ => None,
        })
    }

    fn fds(&self) -> Vec<i32> {
        self.fds.iter().map(|(i, _)| i as i32).collect()
    }

    fn cwd(&self) -> u64 {
        self.cwd
    }

    fn exe(&self) -> Vec<u8> {
        self.exe.clone()
    }

    fn pids(&self) -> Vec<i32> {
        match &self.k {
            Some(k) => k.process_ids(),
            None => Vec::new(),
        }
    }
}

impl Vproc {
    /// The contents of `/proc` file `item` of process `pid` now.
    pub(super) fn proc_contents(&self, pid: i32, item: ProcItem) -> Vec<u8> {
        if let Some(b) = self.proc_system(pid, item) {
            return b;
        }
        let mut s = String::new();
        match item {
            ProcItem::Maps => {
                let exe = String::from_utf8_lossy(&self.exe).into_owned();
                for (start, v) in self.mm.vmas() {
                    let p = |b: u32, c: char| if v.prot & b != 0 { c } else { '-' };
                    let name = match v.kind {
                        VmaKind::Image => exe.as_str(),
                        VmaKind::Brk => "[heap]",
                        VmaKind::Stack => "[stack]",
                        VmaKind::SyscallStubs => "[vkernel-syscalls]",
                        _ => "",
                    };
                    // 's': MAP_SHARED, as Linux marks it.
                    let shared = v.shm.is_some() || v.file.as_ref().is_some_and(|f| f.shared);
                    let line = format!(
                        "{start:08x}-{:08x} {}{}{}{} 00000000 00:00 0",
                        v.end,
                        p(1, 'r'),
                        p(2, 'w'),
                        p(4, 'x'),
                        if shared { 's' } else { 'p' },
                    );
                    if name.is_empty() {
                        s += &format!("{line}\n");
                    } else {
                        s += &format!("{line:<73}{name}\n");
                    }
                }
            }
            ProcItem::Status => {
                let pid = self.pid;
                let rss = self.mm.resident_pages() * 4;
                s = format!(
                    "Name:\t{}\nUmask:\t{:04o}\nState:\tR (running)\nTgid:\t{pid}\nPid:\t{pid}\n\
                     PPid:\t{}\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t64\n\
                     VmRSS:\t{rss} kB\nThreads:\t1\nSigBlk:\t{:016x}\n",
                    self.comm,
                    self.umask,
                    self.sys_getppid(),
                    self.sig.blocked,
                );
            }
            ProcItem::Mounts => {
                s = "vkernel / vkernel rw 0 0\nproc /proc proc rw,nosuid,nodev,noexec 0 0\n\
                     devtmpfs /dev devtmpfs rw,nosuid 0 0\n"
                    .to_string();
            }
            ProcItem::Meminfo => {
                let total = self.mm.ram().size() >> 10;
                let free = self.mm.free_frames() * 4;
                s = format!(
                    "MemTotal:       {total:8} kB\nMemFree:        {free:8} kB\n\
                     MemAvailable:   {free:8} kB\nBuffers:               0 kB\n\
                     Cached:                0 kB\nSwapTotal:             0 kB\n\
                     SwapFree:              0 kB\n"
                );
            }
            _ => {}
        }
        s.into_bytes()
    }

    /// What a `/proc/self` link reads as.
    pub(super) fn proc_link(&self, item: ProcItem) -> Vec<u8> {
        match item {
            ProcItem::SelfLink => self.pid.to_string().into_bytes(),
            ProcItem::Exe => self.exe.clone(),
            ProcItem::Cwd => self.fs.path_of(self.cwd),
            ProcItem::Root => b"/".to_vec(),
            ProcItem::Fd(n) => {
                let Ok(fd) = self.fds.get(n as i64) else {
                    return Vec::new();
                };
                let f = fd.file.borrow();
                match &f.kind {
                    FileKind::Inode(h) => {
                        let mut p = self.fs.path_of(*h);
                        if proc_item(*h).is_none() && self.fs.inode(*h).nlink == 0 {
                            p.extend_from_slice(b" (deleted)");
                        }
                        p
                    }
                    FileKind::PipeRead(p) | FileKind::PipeWrite(p) => {
                        format!("pipe:[{}]", 4000 + ((p.id() >> 4) & 0xffff)).into_bytes()
                    }
                    FileKind::EventFd(_) => b"anon_inode:[eventfd]".to_vec(),
                    FileKind::Epoll(_) => b"anon_inode:[eventpoll]".to_vec(),
                    FileKind::TimerFd(_) => b"anon_inode:[timerfd]".to_vec(),
                    FileKind::SignalFd(_) => b"anon_inode:[signalfd]".to_vec(),
                    FileKind::PidFd(_) => b"anon_inode:[pidfd]".to_vec(),
                    FileKind::Inotify(_) => b"anon_inode:inotify".to_vec(),
                    FileKind::Socket(_) => {
                        format!("socket:[{}]", 5000 + ((fd.file.id() >> 4) & 0xffff)).into_bytes()
                    }
                    FileKind::Pty(_) | FileKind::MsgQueue(_) => f.path.clone(),
                    FileKind::Stdin => self.console_name(0),
                    FileKind::Stdout => self.console_name(1),
                    FileKind::Stderr => self.console_name(2),
                }
            }
            _ => Vec::new(),
        }
    }

    /// What the vkernel's own fd `n` (behind the console) is: a terminal,
    /// `/dev/null`, a pipe, as the host names it; `/dev/tty` if unknown.
    fn console_name(&self, n: i32) -> Vec<u8> {
        let Some(h) = self.stdio.host_fd(n) else {
            return b"/dev/tty".to_vec();
        };
        match std::fs::read_link(format!("/proc/self/fd/{h}")) {
            Ok(p) => {
                use std::os::unix::ffi::OsStrExt;
                p.as_os_str().as_bytes().to_vec()
            }
            Err(_) => b"/dev/tty".to_vec(),
        }
    }

    /// The listing of `/proc`, `/proc/PID` or `/proc/PID/fd`.
    pub(super) fn proc_list(&self, h: u64) -> Vec<DirEntry> {
        let ent = |name: Vec<u8>, ino: u64, dtype: u8| DirEntry { name, ino, dtype };
        let pid = self.pid;
        match proc_item(h) {
            None => {
                let mut v = vec![
                    ent(
                        pid.to_string().into_bytes(),
                        proc_handle(pid, ProcItem::PidDir) & 0xffff_ffff_ffff,
                        libc::DT_DIR,
                    ),
                    ent(b"self".to_vec(), 2, libc::DT_LNK),
                ];
                v.extend(self.pids().into_iter().filter(|&p| p != pid).map(|p| {
                    ent(
                        p.to_string().into_bytes(),
                        proc_handle(p, ProcItem::PidDir) & 0xffff_ffff_ffff,
                        libc::DT_DIR,
                    )
                }));
                v.extend(TOP_ITEMS.iter().map(|&i| {
                    let t = if i.is_dir() {
                        libc::DT_DIR
                    } else {
                        libc::DT_REG
                    };
                    ent(i.name(), proc_handle(pid, i) & 0xffff_ffff_ffff, t)
                }));
                v
            }
            Some((pid, ProcItem::PidDir)) => if pid == self.pid {
                &PID_ITEMS[..]
            } else {
                &OTHER_PID_ITEMS[..]
            }
            .iter()
            .map(|&i| {
                let t = if i.is_dir() {
                    libc::DT_DIR
                } else if i.is_link() {
                    libc::DT_LNK
                } else {
                    libc::DT_REG
                };
                ent(i.name(), proc_handle(pid, i) & 0xffff_ffff_ffff, t)
            })
            .collect(),
            Some((pid, ProcItem::FdDir)) => self
                .fds()
                .into_iter()
                .map(|n| {
                    let i = ProcItem::Fd(n);
                    ent(
                        i.name(),
                        proc_handle(pid, i) & 0xffff_ffff_ffff,
                        libc::DT_LNK,
                    )
                })
                .collect(),
            Some((pid, ProcItem::NetDir)) => NET_ITEMS
                .iter()
                .map(|&i| {
                    ent(
                        i.name(),
                        proc_handle(pid, i) & 0xffff_ffff_ffff,
                        libc::DT_REG,
                    )
                })
                .collect(),
            Some(_) => Vec::new(),
        }
    }
}
