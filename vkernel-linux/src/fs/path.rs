//! Path resolution, done by the vkernel one component at a time.
//!
//! `..` goes to the parent node and stops at the root (the root is its own
//! parent); a symlink's target is resolved again from the directory that
//! holds it, or from the vproc's root when it is absolute; at most
//! [`MAX_LINKS`] symlinks are followed (then ELOOP). Host directories are
//! only ever asked about one name at a time (see [`super::host`]), so no
//! path reaches the host outside a tree. `/proc` is synthetic: its entries
//! are per vproc ([`ProcView`]), and its magic links (`/proc/self/root`,
//! `cwd`, `fd/N`) lead to nodes of this tree, never out of it.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::node::Errno;
use super::{components, Fs, ROOT};

/// Most symlinks followed in one resolution (Linux: 40).
pub const MAX_LINKS: u32 = 40;

/// Longest path accepted.
pub const PATH_MAX: usize = 4096;

/// Longest name accepted.
pub const NAME_MAX: usize = 255;

const ENOENT: Errno = libc::ENOENT as Errno;
const ENOTDIR: Errno = libc::ENOTDIR as Errno;
const ELOOP: Errno = libc::ELOOP as Errno;
const ENAMETOOLONG: Errno = libc::ENAMETOOLONG as Errno;

/// Handles at or above this are `/proc/PID/...` entries, not table nodes.
pub const PROC_BASE: u64 = 1 << 62;

/// An entry of `/proc/PID`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcItem {
    /// `/proc/PID` itself.
    PidDir,
    /// `/proc/self` (a symlink to `PID`).
    SelfLink,
    /// `exe`: the program.
    Exe,
    /// `cwd`: the current directory.
    Cwd,
    /// `root`: the vproc's root (always `/`).
    Root,
    /// `fd`: the open fds.
    FdDir,
    /// `maps`: the memory map.
    Maps,
    /// `status`: name, pid, memory.
    Status,
    /// `mounts` (also `/proc/mounts`).
    Mounts,
    /// `/proc/meminfo`.
    Meminfo,
    /// `stat`: the process's line of fields.
    Stat,
    /// `cmdline`: its arguments.
    Cmdline,
    /// `comm`: its command name.
    Comm,
    /// `statm`: its memory in pages.
    Statm,
    /// `/proc/uptime`.
    Uptime,
    /// `/proc/loadavg`.
    Loadavg,
    /// `/proc/stat`: CPU times and counts.
    SysStat,
    /// `/proc/cpuinfo`.
    Cpuinfo,
    /// `fd/N`.
    Fd(i32),
    /// `/proc/net`.
    NetDir,
    /// `/proc/net/tcp`: IPv4 TCP sockets.
    NetTcp,
    /// `/proc/net/tcp6`.
    NetTcp6,
    /// `/proc/net/udp`: IPv4 UDP sockets.
    NetUdp,
    /// `/proc/net/udp6`.
    NetUdp6,
    /// `/proc/net/dev`: interfaces and their counters.
    NetDev,
    /// `environ`: its environment.
    Environ,
    /// `limits`: its resource limits.
    Limits,
    /// `fdinfo`: a file per open fd.
    FdInfoDir,
    /// `fdinfo/N`: position, flags, mount and inode of fd N.
    FdInfo(i32),
    /// `task`: a directory per thread (each like `/proc/TID`).
    TaskDir,
    /// `mountinfo`: the mounts with their ids.
    Mountinfo,
    /// `auxv`: the auxiliary vector its exec built.
    Auxv,
    /// `mem`: its memory, by address (read and written like a file).
    Mem,
}

/// The files of `/proc/net`.
pub const NET_ITEMS: [ProcItem; 5] = [
    ProcItem::NetDev,
    ProcItem::NetTcp,
    ProcItem::NetTcp6,
    ProcItem::NetUdp,
    ProcItem::NetUdp6,
];

/// The entries of `/proc/PID` for the vproc itself, in listing order.
pub const PID_ITEMS: [ProcItem; 18] = [
    ProcItem::Auxv,
    ProcItem::Cmdline,
    ProcItem::Comm,
    ProcItem::Cwd,
    ProcItem::Environ,
    ProcItem::Exe,
    ProcItem::FdDir,
    ProcItem::FdInfoDir,
    ProcItem::Limits,
    ProcItem::Maps,
    ProcItem::Mem,
    ProcItem::Mountinfo,
    ProcItem::Mounts,
    ProcItem::Root,
    ProcItem::Stat,
    ProcItem::Statm,
    ProcItem::Status,
    ProcItem::TaskDir,
];

/// The entries of `/proc/PID`: all of [`PID_ITEMS`] for the caller
/// itself (`own`), all but `mounts` for another process (its fds and
/// memory are shown while it is parked in the process table, see
/// [`ProcView::fds_of`]).
pub fn pid_items(own: bool) -> impl Iterator<Item = ProcItem> {
    PID_ITEMS
        .into_iter()
        .filter(move |&i| own || i != ProcItem::Mounts)
}

/// The files of `/proc` itself (besides `self` and the pids).
pub const TOP_ITEMS: [ProcItem; 7] = [
    ProcItem::Cpuinfo,
    ProcItem::Loadavg,
    ProcItem::Meminfo,
    ProcItem::Mounts,
    ProcItem::NetDir,
    ProcItem::SysStat,
    ProcItem::Uptime,
];

impl ProcItem {
    /// Its name in its directory.
    pub fn name(self) -> Vec<u8> {
        match self {
            ProcItem::PidDir => b"PID".to_vec(),
            ProcItem::SelfLink => b"self".to_vec(),
            ProcItem::Exe => b"exe".to_vec(),
            ProcItem::Cwd => b"cwd".to_vec(),
            ProcItem::Root => b"root".to_vec(),
            ProcItem::FdDir => b"fd".to_vec(),
            ProcItem::Maps => b"maps".to_vec(),
            ProcItem::Status => b"status".to_vec(),
            ProcItem::Mounts => b"mounts".to_vec(),
            ProcItem::Meminfo => b"meminfo".to_vec(),
            ProcItem::Stat | ProcItem::SysStat => b"stat".to_vec(),
            ProcItem::Cmdline => b"cmdline".to_vec(),
            ProcItem::Comm => b"comm".to_vec(),
            ProcItem::Statm => b"statm".to_vec(),
            ProcItem::Uptime => b"uptime".to_vec(),
            ProcItem::Loadavg => b"loadavg".to_vec(),
            ProcItem::Cpuinfo => b"cpuinfo".to_vec(),
            ProcItem::Fd(n) => n.to_string().into_bytes(),
            ProcItem::NetDir => b"net".to_vec(),
            ProcItem::NetTcp => b"tcp".to_vec(),
            ProcItem::NetTcp6 => b"tcp6".to_vec(),
            ProcItem::NetUdp => b"udp".to_vec(),
            ProcItem::NetUdp6 => b"udp6".to_vec(),
            ProcItem::NetDev => b"dev".to_vec(),
            ProcItem::Environ => b"environ".to_vec(),
            ProcItem::Limits => b"limits".to_vec(),
            ProcItem::FdInfoDir => b"fdinfo".to_vec(),
            ProcItem::FdInfo(n) => n.to_string().into_bytes(),
            ProcItem::TaskDir => b"task".to_vec(),
            ProcItem::Mountinfo => b"mountinfo".to_vec(),
            ProcItem::Auxv => b"auxv".to_vec(),
            ProcItem::Mem => b"mem".to_vec(),
        }
    }

    /// A directory?
    pub fn is_dir(self) -> bool {
        matches!(
            self,
            ProcItem::PidDir
                | ProcItem::FdDir
                | ProcItem::NetDir
                | ProcItem::FdInfoDir
                | ProcItem::TaskDir
        )
    }

    /// A symlink?
    pub fn is_link(self) -> bool {
        matches!(
            self,
            ProcItem::SelfLink | ProcItem::Exe | ProcItem::Cwd | ProcItem::Root | ProcItem::Fd(_)
        )
    }

    fn code(self) -> u64 {
        match self {
            ProcItem::PidDir => 1,
            ProcItem::SelfLink => 2,
            ProcItem::Exe => 3,
            ProcItem::Cwd => 4,
            ProcItem::Root => 5,
            ProcItem::FdDir => 6,
            ProcItem::Maps => 7,
            ProcItem::Status => 8,
            ProcItem::Mounts => 9,
            ProcItem::Meminfo => 10,
            ProcItem::Stat => 11,
            ProcItem::Cmdline => 12,
            ProcItem::Comm => 13,
            ProcItem::Statm => 14,
            ProcItem::Uptime => 15,
            ProcItem::Loadavg => 16,
            ProcItem::SysStat => 17,
            ProcItem::Cpuinfo => 18,
            ProcItem::NetDir => 19,
            ProcItem::NetTcp => 20,
            ProcItem::NetTcp6 => 21,
            ProcItem::NetUdp => 22,
            ProcItem::NetUdp6 => 23,
            ProcItem::NetDev => 24,
            ProcItem::Environ => 25,
            ProcItem::Limits => 26,
            ProcItem::FdInfoDir => 27,
            ProcItem::TaskDir => 28,
            ProcItem::Mountinfo => 29,
            ProcItem::Auxv => 30,
            ProcItem::Mem => 31,
            ProcItem::Fd(n) => 0x10000 + (n as u32 as u64 & 0xffff),
            ProcItem::FdInfo(n) => 0x20000 + (n as u32 as u64 & 0xffff),
        }
    }
}

/// The handle of `item` of process `pid`.
pub fn proc_handle(pid: i32, item: ProcItem) -> u64 {
    PROC_BASE | (pid as u32 as u64) << 24 | item.code()
}

/// The process and item of a `/proc` handle.
pub fn proc_item(h: u64) -> Option<(i32, ProcItem)> {
    if h & PROC_BASE == 0 {
        return None;
    }
    let pid = ((h >> 24) & 0xffff_ffff) as u32 as i32;
    let item = match h & 0xff_ffff {
        1 => ProcItem::PidDir,
        2 => ProcItem::SelfLink,
        3 => ProcItem::Exe,
        4 => ProcItem::Cwd,
        5 => ProcItem::Root,
        6 => ProcItem::FdDir,
        7 => ProcItem::Maps,
        8 => ProcItem::Status,
        9 => ProcItem::Mounts,
        10 => ProcItem::Meminfo,
        11 => ProcItem::Stat,
        12 => ProcItem::Cmdline,
        13 => ProcItem::Comm,
        14 => ProcItem::Statm,
        15 => ProcItem::Uptime,
        16 => ProcItem::Loadavg,
        17 => ProcItem::SysStat,
        18 => ProcItem::Cpuinfo,
        19 => ProcItem::NetDir,
        20 => ProcItem::NetTcp,
        21 => ProcItem::NetTcp6,
        22 => ProcItem::NetUdp,
        23 => ProcItem::NetUdp6,
        24 => ProcItem::NetDev,
        25 => ProcItem::Environ,
        26 => ProcItem::Limits,
        27 => ProcItem::FdInfoDir,
        28 => ProcItem::TaskDir,
        29 => ProcItem::Mountinfo,
        30 => ProcItem::Auxv,
        31 => ProcItem::Mem,
        c if c >= 0x20000 => ProcItem::FdInfo((c - 0x20000) as i32),
        c if c >= 0x10000 => ProcItem::Fd((c - 0x10000) as i32),
        _ => return None,
    };
    Some((pid, item))
}

/// What `/proc/self` shows: the vproc doing the lookup.
pub trait ProcView {
    /// Its pid (0: none, `/proc/self` does not exist).
    fn pid(&self) -> i32;
    /// fd `n`: None if not open, `Some(None)` if open on something that is
    /// no node of the tree (a pipe, the console), else its node.
    fn fd_node(&self, n: i32) -> Option<Option<u64>>;
    /// Its open fds.
    fn fds(&self) -> Vec<i32>;
    /// Its current directory.
    fn cwd(&self) -> u64;
    /// Its program's path.
    fn exe(&self) -> Vec<u8>;
    /// The other processes it sees in `/proc` (none by default).
    fn pids(&self) -> Vec<i32> {
        Vec::new()
    }
    /// The threads of process `pid` (`/proc/PID/task`; none by default).
    fn tids_of(&self, _pid: i32) -> Vec<i32> {
        Vec::new()
    }
    /// fd `n` of another process `pid`, as [`ProcView::fd_node`]; None
    /// also while that process runs on a vCPU.
    fn fd_node_of(&self, _pid: i32, _n: i32) -> Option<Option<u64>> {
        None
    }
    /// The open fds of another process `pid` (none while it runs).
    fn fds_of(&self, _pid: i32) -> Vec<i32> {
        Vec::new()
    }
    /// The current directory of another process `pid`.
    fn cwd_of(&self, _pid: i32) -> Option<u64> {
        None
    }
    /// The program of another process `pid`.
    fn exe_of(&self, _pid: i32) -> Option<Vec<u8>> {
        None
    }
}

/// No process: `/proc` is empty.
pub struct NoProc;

impl ProcView for NoProc {
    fn pid(&self) -> i32 {
        0
    }
    fn fd_node(&self, _: i32) -> Option<Option<u64>> {
        None
    }
    fn fds(&self) -> Vec<i32> {
        Vec::new()
    }
    fn cwd(&self) -> u64 {
        ROOT
    }
    fn exe(&self) -> Vec<u8> {
        Vec::new()
    }
}

/// A name of `/proc/PID/fd` as an fd number (plain decimal only).
fn fd_number(name: &[u8]) -> Option<i32> {
    if name.is_empty() || name.len() > 9 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if name.len() > 1 && name[0] == b'0' {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

impl Fs {
    /// Resolve `path` from directory `start` (relative paths) or the root;
    /// follow a final symlink when `follow`.
    pub fn walk(
        &self,
        v: &dyn ProcView,
        start: u64,
        path: &[u8],
        follow: bool,
    ) -> Result<u64, Errno> {
        let mut links = 0;
        self.walk_from(v, start, path, follow, &mut links)
    }

    fn walk_from(
        &self,
        v: &dyn ProcView,
        start: u64,
        path: &[u8],
        follow: bool,
        links: &mut u32,
    ) -> Result<u64, Errno> {
        if path.is_empty() {
            return Err(ENOENT);
        }
        if path.len() > PATH_MAX {
            return Err(ENAMETOOLONG);
        }
        let mut cur = if path[0] == b'/' { ROOT } else { start };
        let comps = components(path);
        // A trailing slash asks for a directory: a final symlink is
        // followed then.
        let follow = follow || path.ends_with(b"/");
        for (i, c) in comps.iter().enumerate() {
            if !self.is_dir_handle(cur) {
                return Err(ENOTDIR);
            }
            if c.len() > NAME_MAX {
                return Err(ENAMETOOLONG);
            }
            if *c == b".." {
                cur = self.parent_handle(cur);
                continue;
            }
            let next = self.lookup(v, cur, c)?;
            cur = if i + 1 < comps.len() || follow {
                self.follow(v, cur, next, links)?
            } else {
                next
            };
        }
        if path.ends_with(b"/") && !self.is_dir_handle(cur) {
            return Err(ENOTDIR);
        }
        Ok(cur)
    }

    /// Where the node `h` in directory `dir` leads if it is a symlink
    /// (else `h`).
    fn follow(&self, v: &dyn ProcView, dir: u64, h: u64, links: &mut u32) -> Result<u64, Errno> {
        if let Some((pid, item)) = proc_item(h) {
            let me = pid == v.pid();
            return match item {
                ProcItem::SelfLink => Ok(proc_handle(v.pid(), ProcItem::PidDir)),
                ProcItem::Root => Ok(ROOT),
                ProcItem::Cwd if me => Ok(v.cwd()),
                ProcItem::Cwd => v.cwd_of(pid).ok_or(ENOENT),
                ProcItem::Exe => {
                    *links += 1;
                    if *links > MAX_LINKS {
                        return Err(ELOOP);
                    }
                    let exe = if me {
                        v.exe()
                    } else {
                        v.exe_of(pid).ok_or(ENOENT)?
                    };
                    self.walk_from(v, ROOT, &exe, true, links)
                }
                ProcItem::Fd(n) if !me => match v.fd_node_of(pid, n) {
                    Some(Some(node)) => Ok(node),
                    Some(None) => Ok(h),
                    None => Err(ENOENT),
                },
                ProcItem::Fd(n) => match v.fd_node(n) {
                    Some(Some(node)) => Ok(node),
                    Some(None) => Ok(h),
                    None => Err(ENOENT),
                },
                _ => Ok(h),
            };
        }
        let Some(target) = self.link_target(h) else {
            return Ok(h);
        };
        *links += 1;
        if *links > MAX_LINKS {
            return Err(ELOOP);
        }
        self.walk_from(v, dir, &target, true, links)
    }

    /// The entry `name` of directory `dir` (not followed).
    fn lookup(&self, v: &dyn ProcView, dir: u64, name: &[u8]) -> Result<u64, Errno> {
        if let Some((pid, item)) = proc_item(dir) {
            return match item {
                ProcItem::PidDir => pid_items(pid == v.pid())
                    .find(|i| i.name() == name)
                    .map(|i| proc_handle(pid, i))
                    .ok_or(ENOENT),
                ProcItem::FdDir | ProcItem::FdInfoDir => {
                    let n = fd_number(name).ok_or(ENOENT)?;
                    let open = if pid == v.pid() {
                        v.fd_node(n).is_some()
                    } else {
                        v.fd_node_of(pid, n).is_some()
                    };
                    if !open {
                        return Err(ENOENT);
                    }
                    Ok(proc_handle(
                        pid,
                        if item == ProcItem::FdDir {
                            ProcItem::Fd(n)
                        } else {
                            ProcItem::FdInfo(n)
                        },
                    ))
                }
                ProcItem::TaskDir => match fd_number(name) {
                    Some(t) if v.tids_of(pid).contains(&t) => Ok(proc_handle(t, ProcItem::PidDir)),
                    _ => Err(ENOENT),
                },
                ProcItem::NetDir => NET_ITEMS
                    .iter()
                    .find(|i| i.name() == name)
                    .map(|&i| proc_handle(pid, i))
                    .ok_or(ENOENT),
                _ => Err(ENOTDIR),
            };
        }
        if dir == self.proc_dir {
            let pid = v.pid();
            if pid > 0 && name == b"self" {
                return Ok(proc_handle(pid, ProcItem::SelfLink));
            }
            if pid > 0 && name == pid.to_string().as_bytes() {
                return Ok(proc_handle(pid, ProcItem::PidDir));
            }
            if let Some(other) = fd_number(name).filter(|n| v.pids().contains(n)) {
                return Ok(proc_handle(other, ProcItem::PidDir));
            }
            // A thread's id names it too (not listed, as on Linux).
            if let Some(t) = fd_number(name).filter(|&n| !v.tids_of(n).is_empty()) {
                return Ok(proc_handle(t, ProcItem::PidDir));
            }
            if let Some(&i) = TOP_ITEMS.iter().find(|i| i.name() == name) {
                if pid > 0 {
                    return Ok(proc_handle(pid, i));
                }
            }
            return Err(ENOENT);
        }
        self.child(dir, name)
    }

    /// Is `h` a directory?
    pub fn is_dir_handle(&self, h: u64) -> bool {
        match proc_item(h) {
            Some((_, item)) => item.is_dir(),
            None => self.with_node(h, |n| n.dir().is_some()).unwrap_or(false),
        }
    }

    /// The parent directory of `h` (the root's is the root).
    pub fn parent_handle(&self, h: u64) -> u64 {
        match proc_item(h) {
            Some((
                _,
                ProcItem::PidDir
                | ProcItem::SelfLink
                | ProcItem::Meminfo
                | ProcItem::Cpuinfo
                | ProcItem::Loadavg
                | ProcItem::Uptime
                | ProcItem::SysStat
                | ProcItem::NetDir,
            )) => self.proc_dir,
            Some((
                pid,
                ProcItem::NetTcp
                | ProcItem::NetTcp6
                | ProcItem::NetUdp
                | ProcItem::NetUdp6
                | ProcItem::NetDev,
            )) => proc_handle(pid, ProcItem::NetDir),
            Some((pid, ProcItem::Fd(_))) => proc_handle(pid, ProcItem::FdDir),
            Some((pid, ProcItem::FdInfo(_))) => proc_handle(pid, ProcItem::FdInfoDir),
            Some((pid, _)) => proc_handle(pid, ProcItem::PidDir),
            None => self.with_node(h, |n| n.parent).unwrap_or(ROOT),
        }
    }

    /// Resolve all of `path` but its last component: the directory and the
    /// last name (trailing slashes dropped). The name may be `.` or `..`:
    /// each call says what that means for it.
    pub fn walk_parent(
        &self,
        v: &dyn ProcView,
        start: u64,
        path: &[u8],
    ) -> Result<(u64, Vec<u8>), Errno> {
        if path.is_empty() {
            return Err(ENOENT);
        }
        if path.len() > PATH_MAX {
            return Err(ENAMETOOLONG);
        }
        let trimmed = {
            let mut e = path.len();
            while e > 1 && path[e - 1] == b'/' {
                e -= 1;
            }
            &path[..e]
        };
        if trimmed == b"/" {
            return Ok((ROOT, b".".to_vec()));
        }
        let (dir, name) = match trimmed.iter().rposition(|&c| c == b'/') {
            Some(0) => (ROOT, &trimmed[1..]),
            Some(i) => (self.walk(v, start, &trimmed[..i], true)?, &trimmed[i + 1..]),
            None => (start, trimmed),
        };
        if !self.is_dir_handle(dir) {
            return Err(ENOTDIR);
        }
        if name.len() > NAME_MAX {
            return Err(ENAMETOOLONG);
        }
        Ok((dir, name.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_handles_round_trip() {
        for item in [
            ProcItem::PidDir,
            ProcItem::SelfLink,
            ProcItem::Exe,
            ProcItem::Cwd,
            ProcItem::Root,
            ProcItem::FdDir,
            ProcItem::Maps,
            ProcItem::Status,
            ProcItem::Mounts,
            ProcItem::Meminfo,
            ProcItem::Fd(0),
            ProcItem::Fd(1023),
            ProcItem::FdInfo(0),
            ProcItem::FdInfo(65535),
            ProcItem::Environ,
            ProcItem::Limits,
            ProcItem::FdInfoDir,
            ProcItem::TaskDir,
            ProcItem::Mountinfo,
        ] {
            assert_eq!(proc_item(proc_handle(4242, item)), Some((4242, item)));
        }
        assert_eq!(proc_item(7), None);
    }

    #[test]
    fn fd_names_are_plain_decimals() {
        assert_eq!(fd_number(b"0"), Some(0));
        assert_eq!(fd_number(b"17"), Some(17));
        assert_eq!(fd_number(b"017"), None);
        assert_eq!(fd_number(b"+1"), None);
        assert_eq!(fd_number(b""), None);
    }
}
