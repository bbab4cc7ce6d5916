//! System V shared memory segments: each is a memory file (as memfd's)
//! that `shmat` maps shared; the registry keeps the file while the
//! segment exists, and each attachment's mapping keeps it after
//! IPC_RMID until it is detached, as on Linux.

use std::collections::{HashMap, HashSet};

use super::sysv::{Errno, Got, Perm, IPC_PRIVATE};
use crate::fs::Backing;

/// Largest segment (Linux's SHMMAX default, capped to what a vproc can
/// map).
pub const SHMMAX: u64 = 1 << 40;

/// One segment.
pub struct ShmSeg {
    /// Owner and mode.
    pub perm: Perm,
    /// Its size in bytes.
    pub size: u64,
    /// Its memory file.
    pub file: Backing,
    /// Creator's and last shmat/shmdt's pids.
    pub cpid: i32,
    /// Last attach or detach's pid.
    pub lpid: i32,
    /// Attachments made by shmat and not detached (fork and exit do not
    /// count: an approximation of Linux's shm_nattch).
    pub nattch: u64,
    /// Last attach and detach times.
    pub times: [i64; 2],
    /// IPC_RMID came while attached: it goes at the last shmdt (and
    /// its key is free already).
    pub removed: bool,
}

/// The segments of one virtual kernel.
#[derive(Default)]
pub struct ShmSegs {
    /// Segments by id.
    pub segs: HashMap<i32, ShmSeg>,
    keys: HashMap<i32, i32>,
    next: i32,
    /// The nodes of every segment's memory file (shmdt recognizes an
    /// attachment by it, also after IPC_RMID).
    pub files: HashSet<u64>,
}

impl std::fmt::Debug for ShmSegs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmSegs")
            .field("segs", &self.segs.len())
            .finish()
    }
}

impl ShmSegs {
    /// shmget's lookup of `key` with `flags` (IPC_CREAT, IPC_EXCL).
    pub fn lookup(&self, key: i32, flags: i32) -> Result<Got, Errno> {
        if key == IPC_PRIVATE {
            return Ok(Got::Make);
        }
        match self.keys.get(&key) {
            Some(_) if flags & 0o3000 == 0o3000 => Err(17),
            Some(&id) => Ok(Got::Found(id)),
            None if flags & 0o1000 != 0 => Ok(Got::Make),
            None => Err(2),
        }
    }

    /// Register a new segment.
    pub fn add(&mut self, seg: ShmSeg) -> i32 {
        self.next = (self.next + 1) & 0x7fff;
        let id = self.next * 32_768 + i32::try_from(self.segs.len() % 32_768).unwrap_or(0);
        if seg.perm.key != IPC_PRIVATE {
            self.keys.insert(seg.perm.key, id);
        }
        self.files.insert(seg.file.handle());
        self.segs.insert(id, seg);
        id
    }

    /// IPC_RMID: the segment's key is free at once; the segment goes
    /// now, or at its last shmdt while attached (its attachments keep the
    /// memory either way).
    pub fn remove(&mut self, id: i32) -> Option<()> {
        let seg = self.segs.get_mut(&id)?;
        if seg.perm.key != IPC_PRIVATE {
            self.keys.remove(&seg.perm.key);
            seg.perm.key = IPC_PRIVATE;
        }
        seg.removed = true;
        if seg.nattch == 0 {
            self.segs.remove(&id);
        }
        Some(())
    }

    /// One attachment of the segment of memory file `node` went.
    pub fn detached(&mut self, node: u64, pid: i32, now: i64) {
        let Some((&id, seg)) = self.segs.iter_mut().find(|(_, s)| s.file.handle() == node) else {
            return;
        };
        seg.nattch = seg.nattch.saturating_sub(1);
        seg.lpid = pid;
        seg.times[1] = now;
        if seg.removed && seg.nattch == 0 {
            self.segs.remove(&id);
        }
    }
}
