//! `/proc/self`: what the vproc sees of itself. The tree resolves
//! `/proc` paths through [`ProcView`] (implemented here by the vproc);
//! this module renders the files (`maps`, `status`), the links' targets
//! and the directory listings.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use crate::files::FileKind;
use crate::fs::{
    pid_items, proc_handle, proc_item, DirEntry, ProcItem, ProcView, NET_ITEMS, TOP_ITEMS,
};
use crate::Vproc;

impl ProcView for Vproc {
    fn pid(&self) -> i32 {
        self.pid
    }

    fn fd_node(&self, n: i32) -> Option<Option<u64>> {
        self.fd_node_of(self.pid, n)
    }

    fn fds(&self) -> Vec<i32> {
        self.fds_of_pid(self.pid)
    }

    fn cwd(&self) -> u64 {
        self.cwd
    }

    fn exe(&self) -> Vec<u8> {
        self.exe.to_vec()
    }

    fn pids(&self) -> Vec<i32> {
        match &self.k {
            Some(k) => k.process_ids(),
            None => Vec::new(),
        }
    }

    fn tids_of(&self, pid: i32) -> Vec<i32> {
        match &self.k {
            Some(k) => k.tids(pid),
            None if pid == self.pid => vec![pid],
            None => Vec::new(),
        }
    }

    fn fd_node_of(&self, pid: i32, n: i32) -> Option<Option<u64>> {
        let f = self.file_of(pid, n)?;
        let f = f.borrow();
        Some(match f.kind {
            FileKind::Inode(h) => Some(h),
            _ => None,
        })
    }

    fn fds_of(&self, pid: i32) -> Vec<i32> {
        self.fds_of_pid(pid)
    }

    fn cwd_of(&self, pid: i32) -> Option<u64> {
        Some(self.k.as_ref()?.seen(pid)?.cwd)
    }

    fn exe_of(&self, pid: i32) -> Option<Vec<u8>> {
        Some(self.k.as_ref()?.seen(pid)?.exe.to_vec())
    }
}

impl Vproc {
    /// The contents of `/proc` file `item` of process `pid` now.
    pub(super) fn proc_contents(&self, pid: i32, item: ProcItem) -> Vec<u8> {
        if let Some(b) = self.proc_system(pid, item) {
            return b;
        }
        if let Some(b) = self.proc_pid_file(pid, item) {
            return b;
        }
        let mut s = String::new();
        match item {
            ProcItem::Status => {
                let (pid, tgid) = (self.pid, self.thread.tgid);
                let rss = self.mm.resident_pages() * 4;
                let threads = self.tids_of(pid).len().max(1);
                let cpus = self.k.as_ref().map_or(1, |k| k.cpu_count());
                let (u, g) = self.ids();
                s = format!(
                    "Name:\t{}\nUmask:\t{:04o}\nState:\tR (running)\nTgid:\t{tgid}\nNgid:\t0\n\
                     Pid:\t{pid}\nPPid:\t{}\nTracerPid:\t0\nUid:\t{u}\t{u}\t{u}\t{u}\nGid:\t{g}\t{g}\t{g}\t{g}\n\
                     FDSize:\t64\nGroups:\t\nVmRSS:\t{rss} kB\nThreads:\t{threads}\n{}\
                     Cpus_allowed_list:\t0-{}\n",
                    self.comm,
                    self.umask,
                    self.sys_getppid(),
                    self.status_signals(),
                    cpus.saturating_sub(1),
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
    pub(super) fn proc_link(&self, pid: i32, item: ProcItem) -> Vec<u8> {
        if pid != self.pid {
            return match item {
                ProcItem::Exe => self.exe_of(pid).unwrap_or_default(),
                ProcItem::Cwd => self
                    .cwd_of(pid)
                    .map(|c| self.fs.path_of(c))
                    .unwrap_or_default(),
                ProcItem::Root => b"/".to_vec(),
                ProcItem::Fd(n) => self.fd_link(pid, n),
                _ => Vec::new(),
            };
        }
        match item {
            ProcItem::SelfLink => self.pid.to_string().into_bytes(),
            ProcItem::Exe => self.exe.to_vec(),
            ProcItem::Cwd => self.fs.path_of(self.cwd),
            ProcItem::Root => b"/".to_vec(),
            ProcItem::Fd(n) => self.fd_link(pid, n),
            _ => Vec::new(),
        }
    }

    /// What the vkernel's own fd `n` (behind the console) is: a terminal,
    /// `/dev/null`, a pipe, as the host names it; `/dev/tty` if unknown.
    pub(super) fn console_name(&self, n: i32) -> Vec<u8> {
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
            Some((pid, ProcItem::PidDir)) => pid_items(pid == self.pid)
                .map(|i| {
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
            Some((pid, d @ (ProcItem::FdDir | ProcItem::FdInfoDir))) => self
                .fds_of_pid(pid)
                .into_iter()
                .map(|n| {
                    let (i, t) = if d == ProcItem::FdDir {
                        (ProcItem::Fd(n), libc::DT_LNK)
                    } else {
                        (ProcItem::FdInfo(n), libc::DT_REG)
                    };
                    ent(i.name(), proc_handle(pid, i) & 0xffff_ffff_ffff, t)
                })
                .collect(),
            Some((pid, ProcItem::TaskDir)) => self
                .tids_of(pid)
                .into_iter()
                .map(|t| {
                    ent(
                        t.to_string().into_bytes(),
                        proc_handle(t, ProcItem::PidDir) & 0xffff_ffff_ffff,
                        libc::DT_DIR,
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
