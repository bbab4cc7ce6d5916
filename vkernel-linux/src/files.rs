//! Open files and the fd table of a vproc.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review
pub use super::fs::event::{EventFd, PidFd, SignalFd, TimerFd};
pub use super::fs::pipe::{wake_all, FdError, Pipe, Shared, Wake, WeakShared, PIPE_BUF};
pub use super::fs::socket::{
    Dgram, Port, SockState, SockType, Socket, UnixStream, AF_UNIX, MAX_DGRAM_QLEN, MAX_MESSAGE,
};
pub use super::fs::Backing;
use super::rlimit::Rlimits;

/// O_ACCMODE.
pub const O_ACCMODE: u32 = 3;
/// O_WRONLY.
pub const O_WRONLY: u32 = 1;
/// O_RDWR.
pub const O_RDWR: u32 = 2;
/// O_CREAT.
pub const O_CREAT: u32 = 0o100;
/// O_TRUNC.
pub const O_TRUNC: u32 = 0o1000;
/// O_APPEND.
pub const O_APPEND: u32 = 0o2000;
/// O_NONBLOCK.
pub const O_NONBLOCK: u32 = 0o4000;
/// O_DIRECTORY.
pub const O_DIRECTORY: u32 = 0o200000;
/// O_NOFOLLOW.
pub const O_NOFOLLOW: u32 = 0o400000;
/// O_CLOEXEC.
pub const O_CLOEXEC: u32 = 0o2000000;
/// O_LARGEFILE (x86-64's value).
pub const O_LARGEFILE: u32 = 0o100000;
/// O_EXCL.
pub const O_EXCL: u32 = 0o200;
/// O_NOCTTY.
pub const O_NOCTTY: u32 = 0o400;
/// O_PATH.
pub const O_PATH: u32 = 0o10000000;

/// What an open file is.
#[derive(Debug)]
pub enum FileKind {
    /// The console's input.
    Stdin,
    /// fd 1 of the vkernel (the console output).
    Stdout,
    /// fd 2 of the vkernel.
    Stderr,
    /// A file, directory or device of the tree (a node handle of
    /// [`super::fs::Fs`], or a `/proc` handle).
    Inode(u64),
    /// Read end of a pipe.
    PipeRead(Shared<Pipe>),
    /// Write end of a pipe.
    PipeWrite(Shared<Pipe>),
    /// An eventfd.
    EventFd(Shared<EventFd>),
    /// An epoll instance.
    Epoll(Shared<Epoll>),
    /// A timerfd.
    TimerFd(Shared<TimerFd>),
    /// A signalfd.
    SignalFd(Shared<SignalFd>),
    /// A pidfd.
    PidFd(Shared<PidFd>),
    /// An inotify instance.
    Inotify(Shared<super::fs::notify::Inotify>),
    /// An AF_UNIX stream socket.
    Socket(Socket),
    /// One end of a pseudo-terminal pair.
    Pty(PtyEnd),
    /// A POSIX message queue (mq_open).
    MsgQueue(Shared<super::fs::mqueue::MsgQueue>),
    /// `/proc/PID/mem`: a process's memory, the offset its address.
    ProcMem(MemFile),
}

/// How an open `/proc/PID/mem` reaches its process's memory (through the
/// process lock, which `crate::thread` keeps).
pub trait MemAccess: Send + Sync {
    /// Run `f` on the memory with the process lock held; None, at once,
    /// when another thread holds the lock or the process has ended.
    fn try_with_mm(&self, f: &mut dyn FnMut(&mut crate::mm::Mm) -> usize) -> Option<usize>;
    /// Has the process ended?
    fn gone(&self) -> bool;
}

/// An open `/proc/PID/mem`: the process it was opened on (it stays that
/// one: a fork of the opener reads the same memory, as on Linux).
#[derive(Clone)]
pub struct MemFile {
    /// Its process's memory.
    pub mem: std::sync::Arc<dyn MemAccess>,
    /// Its process id.
    pub tgid: i32,
    /// Its `/proc` handle (what fstat and `/proc/self/fd` show).
    pub node: u64,
}

impl std::fmt::Debug for MemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemFile({})", self.tgid)
    }
}

/// An open end of a pseudo-terminal pair: the master (`/dev/ptmx`) or the
/// slave (`/dev/pts/N`).
#[derive(Debug, Clone)]
pub struct PtyEnd {
    /// The pair.
    pub pty: Shared<super::fs::pty::Pty>,
    /// The master end?
    pub master: bool,
}

/// epoll_ctl's event flags this vkernel knows.
pub mod epoll_flags {
    /// EPOLLIN.
    pub const EPOLLIN: u32 = 0x001;
    /// EPOLLPRI.
    pub const EPOLLPRI: u32 = 0x002;
    /// EPOLLOUT.
    pub const EPOLLOUT: u32 = 0x004;
    /// EPOLLERR.
    pub const EPOLLERR: u32 = 0x008;
    /// EPOLLHUP.
    pub const EPOLLHUP: u32 = 0x010;
    /// EPOLLRDNORM.
    pub const EPOLLRDNORM: u32 = 0x040;
    /// EPOLLWRNORM.
    pub const EPOLLWRNORM: u32 = 0x100;
    /// EPOLLRDHUP.
    pub const EPOLLRDHUP: u32 = 0x2000;
    /// EPOLLEXCLUSIVE.
    pub const EPOLLEXCLUSIVE: u32 = 1 << 28;
    /// EPOLLWAKEUP.
    pub const EPOLLWAKEUP: u32 = 1 << 29;
    /// EPOLLONESHOT.
    pub const EPOLLONESHOT: u32 = 1 << 30;
    /// EPOLLET.
    pub const EPOLLET: u32 = 1 << 31;
}

/// One file an epoll set watches.
#[derive(Debug)]
pub struct EpollItem {
    /// The fd number it was added as (the key with the description).
    pub fd: i32,
    /// The open file description (it leaves the set when it closes).
    pub file: WeakShared<OpenFile>,
    /// The events asked for, with EPOLLET/EPOLLONESHOT.
    pub events: u32,
    /// The user data returned with its events.
    pub data: u64,
    /// EPOLLONESHOT reported once: disabled until EPOLL_CTL_MOD.
    pub disabled: bool,
    /// Edge-triggered: the file's change count when last reported.
    pub seen: Option<u64>,
}

/// An epoll instance: its interest list and the vprocs in epoll_wait on it.
#[derive(Debug, Default)]
pub struct Epoll {
    /// The interest list.
    pub items: Vec<EpollItem>,
    /// The index of the item the last epoll_wait looked at first (the
    /// next one starts after it, so a busy item cannot starve the rest).
    pub cursor: usize,
}

/// An open file description.
#[derive(Debug)]
pub struct OpenFile {
    /// What it is.
    pub kind: FileKind,
    /// File offset (also the directory cursor).
    pub pos: u64,
    /// Status flags (O_ACCMODE, O_APPEND, O_NONBLOCK...).
    pub flags: u32,
    /// The path it was opened with.
    pub path: Vec<u8>,
    /// The file's contents, for a file of the tree (see [`OpenFile::backing`]).
    pub backing: Option<Backing>,
    /// Its identity as the owner of OFD and flock locks, made by its first
    /// such lock; dropped with the description, it releases them.
    pub lock_id: Option<super::fs::lock::FileLockId>,
    /// What its close reports to inotify watches (a file of the tree
    /// opened while something was watched).
    pub note: Option<super::fs::notify::CloseNote>,
}

impl OpenFile {
    /// A new open file.
    pub fn new(kind: FileKind, flags: u32, path: &[u8]) -> Shared<OpenFile> {
        match &kind {
            FileKind::PipeRead(p) => p.borrow_mut().readers += 1,
            FileKind::PipeWrite(p) => p.borrow_mut().writers += 1,
            FileKind::Pty(e) => {
                let mut p = e.pty.borrow_mut();
                if e.master {
                    p.masters += 1;
                } else {
                    p.slaves += 1;
                    p.slave_opened = true;
                }
            }
            _ => {}
        }
        Shared::new(OpenFile {
            kind,
            pos: 0,
            flags,
            path: path.to_vec(),
            backing: None,
            lock_id: None,
            note: None,
        })
    }

    /// A new open file of node `backing.handle()` of the tree.
    pub fn node(backing: Backing, flags: u32, path: &[u8]) -> Shared<OpenFile> {
        Shared::new(OpenFile {
            kind: FileKind::Inode(backing.handle()),
            pos: 0,
            flags,
            path: path.to_vec(),
            backing: Some(backing),
            lock_id: None,
            note: None,
        })
    }

    /// The contents behind a file of the tree (`read_at`, `file_id`,
    /// `size`): what file-backed mmap and the page cache read. None for
    /// pipes, the console and `/proc` directories.
    pub fn backing(&self) -> Option<&Backing> {
        self.backing.as_ref()
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        // The last end of one side gone: the other side's waiters see EOF
        // (readers) or EPIPE (writers).
        let w = match &mut self.kind {
            FileKind::PipeRead(p) => {
                let mut p = p.borrow_mut();
                p.readers -= 1;
                if p.readers == 0 {
                    p.take_waiters()
                } else {
                    Vec::new()
                }
            }
            FileKind::PipeWrite(p) => {
                let mut p = p.borrow_mut();
                p.writers -= 1;
                if p.writers == 0 {
                    p.take_waiters()
                } else {
                    Vec::new()
                }
            }
            FileKind::Socket(s) => s.close(),
            FileKind::Pty(e) => {
                let mut p = e.pty.borrow_mut();
                if e.master {
                    p.masters -= 1;
                    if p.masters == 0 {
                        p.hang_up()
                    } else {
                        Vec::new()
                    }
                } else {
                    p.slaves -= 1;
                    if p.slaves == 0 {
                        p.take_waiters()
                    } else {
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        };
        wake_all(w);
    }
}

/// One slot of the table.
#[derive(Debug, Clone)]
pub struct Fd {
    /// The open file.
    pub file: Shared<OpenFile>,
    /// FD_CLOEXEC.
    pub cloexec: bool,
}

/// The fd table, and the resource limits of the process that owns it
/// (see [`super::rlimit`]: the soft RLIMIT_NOFILE bounds the fds).
#[derive(Debug, Default, Clone)]
pub struct FdTable {
    slots: Vec<Option<Fd>>,
    /// The process's resource limits.
    pub limits: Rlimits,
    /// The process's supplementary groups (setgroups; every vproc is root,
    /// so any list is taken).
    pub groups: Vec<u32>,
}

impl FdTable {
    /// fds 0, 1 and 2 on the console, with the vkernel's own host limits
    /// ([`Rlimits::from_host`]).
    pub fn with_stdio() -> FdTable {
        let mut t = FdTable {
            limits: Rlimits::from_host(),
            ..FdTable::default()
        };
        t.slots.push(Some(Fd {
            file: OpenFile::new(FileKind::Stdin, 0, b"/dev/stdin"),
            cloexec: false,
        }));
        t.slots.push(Some(Fd {
            file: OpenFile::new(FileKind::Stdout, O_WRONLY, b"/dev/stdout"),
            cloexec: false,
        }));
        t.slots.push(Some(Fd {
            file: OpenFile::new(FileKind::Stderr, O_WRONLY, b"/dev/stderr"),
            cloexec: false,
        }));
        t
    }

    /// The open file of `fd`.
    pub fn get(&self, fd: i64) -> Result<&Fd, FdError> {
        if fd < 0 {
            return Err(FdError::BadFd);
        }
        self.slots
            .get(fd as usize)
            .and_then(|s| s.as_ref())
            .ok_or(FdError::BadFd)
    }

    /// Mutable slot of `fd`.
    pub fn get_mut(&mut self, fd: i64) -> Result<&mut Fd, FdError> {
        if fd < 0 {
            return Err(FdError::BadFd);
        }
        self.slots
            .get_mut(fd as usize)
            .and_then(|s| s.as_mut())
            .ok_or(FdError::BadFd)
    }

    /// The lowest free fd >= `min`, if it is below the soft
    /// RLIMIT_NOFILE (where [`FdTable::install`] would put a file).
    pub fn lowest_free(&self, min: usize) -> Option<usize> {
        let i = (min..)
            .find(|&i| self.slots.get(i).is_none_or(Option::is_none))
            .unwrap_or(usize::MAX);
        (i < self.limits.nofile()).then_some(i)
    }

    /// Install at the lowest free fd >= `min`.
    pub fn install(&mut self, fd: Fd, min: usize) -> Result<i64, FdError> {
        let mut i = min;
        while i < self.slots.len() && self.slots[i].is_some() {
            i += 1;
        }
        if i >= self.limits.nofile() {
            return Err(FdError::TooMany);
        }
        if i >= self.slots.len() {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(fd);
        Ok(i as i64)
    }

    /// Install at exactly `n`, closing what was there (EBADF at or above
    /// the soft RLIMIT_NOFILE, as dup2).
    pub fn install_at(&mut self, fd: Fd, n: i64) -> Result<i64, FdError> {
        if n < 0 || n as usize >= self.limits.nofile() {
            return Err(FdError::BadFd);
        }
        if n as usize >= self.slots.len() {
            self.slots.resize(n as usize + 1, None);
        }
        self.slots[n as usize] = Some(fd);
        Ok(n)
    }

    /// Close `fd`.
    pub fn close(&mut self, fd: i64) -> Result<(), FdError> {
        self.get(fd)?;
        self.slots[fd as usize] = None;
        Ok(())
    }

    /// Close every fd marked close-on-exec (execve); returns them.
    pub fn close_on_exec(&mut self) -> Vec<Fd> {
        let mut closed = Vec::new();
        for s in &mut self.slots {
            if s.as_ref().is_some_and(|f| f.cloexec) {
                closed.extend(s.take());
            }
        }
        closed
    }

    /// Close everything (exit). The open files go after the table.
    pub fn close_all(&mut self) -> Vec<Fd> {
        self.slots.drain(..).flatten().collect()
    }

    /// Open fds, for the debugger.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Fd)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|f| (i, f)))
    }
}
