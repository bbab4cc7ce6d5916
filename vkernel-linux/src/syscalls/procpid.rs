//! The per-process `/proc` files beyond what the process table makes
//! (`procsys.rs`): `maps` with the files' paths, offsets and inodes,
//! `environ`, `limits`, `fdinfo/N`, `mountinfo`, the fd links and the
//! `fd`, `fdinfo` and `task` listings, for the caller and for other
//! processes. Another process's fds and memory are read while it is
//! parked in the process table and single-threaded
//! ([`crate::kernel::Kernel::with_parked`]); while it runs on a vCPU its
//! `fd` and `fdinfo` are empty and its `maps` is empty, the rest comes
//! from what it showed at its last put back ([`crate::kernel::Seen`]).

use crate::files::{FileKind, OpenFile, Shared};
use crate::fs::{ProcItem, ProcView};
use crate::mm::{Vma, VmaKind};
use crate::rlimit::Rlimits;
use crate::Vproc;

/// `/proc/PID/maps` of the areas `vmas`; image areas without a file of
/// their own show `exe`.
pub(crate) fn render_maps<'a>(vmas: impl Iterator<Item = (u64, &'a Vma)>, exe: &[u8]) -> String {
    let exe = String::from_utf8_lossy(exe).into_owned();
    let mut s = String::new();
    for (start, v) in vmas {
        let p = |b: u32, c: char| if v.prot & b != 0 { c } else { '-' };
        let (off, dev, ino, path) = match &v.file {
            Some(f) => {
                let (dev, ino) = f.src.file_id();
                let path = f
                    .src
                    .path()
                    .map(|p| String::from_utf8_lossy(&p).into_owned());
                (f.off, dev, ino, path)
            }
            None => (0, 0, 0, None),
        };
        let name = match (path, v.kind) {
            (Some(p), _) => p,
            (None, VmaKind::Image) => exe.clone(),
            (None, VmaKind::Brk) => "[heap]".into(),
            (None, VmaKind::Stack) => "[stack]".into(),
            (None, VmaKind::SyscallStubs) => "[vkernel-syscalls]".into(),
            (None, _) => String::new(),
        };
        // 's': MAP_SHARED, as Linux marks it.
        let shared = v.shm.is_some() || v.file.as_ref().is_some_and(|f| f.shared);
        let (major, minor) = ((dev >> 8) & 0xfff, (dev & 0xff) | ((dev >> 12) & !0xff));
        let line = format!(
            "{start:08x}-{:08x} {}{}{}{} {off:08x} {major:02x}:{minor:02x} {ino}",
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
    s
}

/// `/proc/PID/limits` in Linux's table.
fn render_limits(l: &Rlimits) -> String {
    const ROWS: [(&str, &str); 16] = [
        ("Max cpu time", "seconds"),
        ("Max file size", "bytes"),
        ("Max data size", "bytes"),
        ("Max stack size", "bytes"),
        ("Max core file size", "bytes"),
        ("Max resident set", "bytes"),
        ("Max processes", "processes"),
        ("Max open files", "files"),
        ("Max locked memory", "bytes"),
        ("Max address space", "bytes"),
        ("Max file locks", "locks"),
        ("Max pending signals", "signals"),
        ("Max msgqueue size", "bytes"),
        ("Max nice priority", ""),
        ("Max realtime priority", ""),
        ("Max realtime timeout", "us"),
    ];
    let v = |x: u64| {
        if x == u64::MAX {
            "unlimited".to_string()
        } else {
            x.to_string()
        }
    };
    let mut s = format!(
        "{:<25} {:<20} {:<20} {:<10}\n",
        "Limit", "Soft Limit", "Hard Limit", "Units"
    );
    for (i, (name, unit)) in ROWS.iter().enumerate() {
        let Some(r) = u32::try_from(i).ok().and_then(|i| l.get(i)) else {
            continue;
        };
        // Linux's widths, trailing blanks included.
        s += &format!("{name:<25} {:<20} {:<20} ", v(r.cur), v(r.max));
        if !unit.is_empty() {
            s += &format!("{unit:<10}");
        }
        s.push('\n');
    }
    s
}

/// The mounts as `mountinfo` lists them (ids, parents, device numbers).
const MOUNTINFO: &str = "1 0 0:1 / / rw,relatime - vkernel vkernel rw\n\
                         2 1 0:4 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n\
                         3 1 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw\n\
                         4 3 0:6 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts \
                         rw,gid=5,mode=620,ptmxmode=666\n";

impl Vproc {
    /// The per-process files this module makes: `item` of process `pid`
    /// (None: not one of them).
    pub(super) fn proc_pid_file(&self, pid: i32, item: ProcItem) -> Option<Vec<u8>> {
        let me = pid == self.pid;
        Some(match item {
            ProcItem::Environ if me => self.environ.to_vec(),
            ProcItem::Environ => self.k.as_ref()?.seen(pid)?.environ.to_vec(),
            ProcItem::Limits if me => render_limits(&self.fds.limits).into_bytes(),
            ProcItem::Limits => render_limits(&self.k.as_ref()?.seen(pid)?.limits).into_bytes(),
            ProcItem::Mountinfo => MOUNTINFO.as_bytes().to_vec(),
            ProcItem::Auxv if me => self.mm.auxv.to_vec(),
            ProcItem::Auxv => self.auxv_of(pid),
            ProcItem::Maps if me => render_maps(self.mm.vmas(), &self.exe).into_bytes(),
            ProcItem::Maps => {
                // Asked before: the table is locked while `with_parked` reads.
                let exe = self.exe_of(pid).unwrap_or_default();
                self.k
                    .as_ref()?
                    .with_parked(pid, |_, mm| render_maps(mm.vmas(), &exe))
                    .unwrap_or_default()
                    .into_bytes()
            }
            ProcItem::FdInfo(n) => {
                let f = self.file_of(pid, n)?;
                self.fdinfo(&f).into_bytes()
            }
            _ => return None,
        })
    }

    /// fd `n` of process `pid` (the caller's own, or another's while it is
    /// parked).
    pub(super) fn file_of(&self, pid: i32, n: i32) -> Option<Shared<OpenFile>> {
        if pid == self.pid {
            return self.fds.get(n as i64).ok().map(|f| f.file.clone());
        }
        self.k
            .as_ref()?
            .with_parked(pid, |fds, _| fds.get(n as i64).ok().map(|f| f.file.clone()))?
    }

    /// `fdinfo/N` of the open file `f`.
    fn fdinfo(&self, f: &Shared<OpenFile>) -> String {
        let f = f.borrow();
        let (mnt, ino) = match &f.kind {
            FileKind::Inode(h) => {
                let st = self.fs.inode(*h);
                (1, st.ino)
            }
            _ => (0, 0),
        };
        let mut s = format!(
            "pos:\t{}\nflags:\t0{:o}\nmnt_id:\t{mnt}\nino:\t{ino}\n",
            f.pos, f.flags
        );
        match &f.kind {
            FileKind::EventFd(e) => s += &format!("eventfd-count: {:x}\n", e.borrow().count),
            FileKind::Pty(e) if !e.master => {}
            FileKind::Pty(e) => s += &format!("tty-index:\t{}\n", e.pty.borrow().index),
            _ => {}
        }
        s
    }

    /// The link `fd/N` of process `pid` reads as.
    pub(super) fn fd_link(&self, pid: i32, n: i32) -> Vec<u8> {
        match self.file_of(pid, n) {
            Some(f) => self.file_name(&f),
            None => Vec::new(),
        }
    }

    /// What `/proc/PID/fd/N` names for the open file `file`.
    pub(super) fn file_name(&self, file: &Shared<OpenFile>) -> Vec<u8> {
        let f = file.borrow();
        match &f.kind {
            FileKind::Inode(h) => {
                let mut p = self.fs.path_of(*h);
                if crate::fs::proc_item(*h).is_none() && self.fs.inode(*h).nlink == 0 {
                    p.extend_from_slice(b" (deleted)");
                }
                p
            }
            FileKind::ProcMem(m) => self.fs.path_of(m.node),
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
                format!("socket:[{}]", 5000 + ((file.id() >> 4) & 0xffff)).into_bytes()
            }
            FileKind::Pty(_) | FileKind::MsgQueue(_) => f.path.clone(),
            FileKind::Stdin => self.console_name(0),
            FileKind::Stdout => self.console_name(1),
            FileKind::Stderr => self.console_name(2),
        }
    }

    /// The status lines about signals (`SigQ` to `SigCgt`) and
    /// capabilities of the caller.
    pub(super) fn status_signals(&self) -> String {
        let mut ign = 0u64;
        let mut cgt = 0u64;
        for sig in 1..=64 {
            let a = self.action(sig);
            if a.handler == crate::signal::SIG_IGN {
                ign |= crate::signal::bit(sig);
            } else if a.handler != crate::signal::SIG_DFL {
                cgt |= crate::signal::bit(sig);
            }
        }
        let pnd = self
            .sig
            .pending
            .iter()
            .fold(0u64, |m, s| m | crate::signal::bit(s.signo));
        format!(
            "SigQ:\t{}/{}\nSigPnd:\t{pnd:016x}\nShdPnd:\t{:016x}\nSigBlk:\t{:016x}\n\
             SigIgn:\t{ign:016x}\nSigCgt:\t{cgt:016x}\nCapInh:\t0000000000000000\n\
             CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
             CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\n",
            self.sig.pending.len(),
            crate::signal::MAX_QUEUED,
            0,
            self.sig.blocked,
        )
    }

    /// The fds of process `pid` (`fd/` and `fdinfo/`).
    pub(super) fn fds_of_pid(&self, pid: i32) -> Vec<i32> {
        if pid == self.pid {
            return self
                .fds
                .iter()
                .filter_map(|(i, _)| i32::try_from(i).ok())
                .collect();
        }
        self.k
            .as_ref()
            .and_then(|k| {
                k.with_parked(pid, |fds, _| {
                    fds.iter()
                        .filter_map(|(i, _)| i32::try_from(i).ok())
                        .collect()
                })
            })
            .unwrap_or_default()
    }
}
