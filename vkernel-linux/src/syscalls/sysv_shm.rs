//! System V shared memory (shmget, shmat, shmdt, shmctl) over the
//! virtual kernel's segments (`kernel::sysv_shm`): a segment is a memory
//! file mapped MAP_SHARED by shmat, so every process that attaches it (and
//! every child that inherits an attachment through fork) shares its pages.

use std::sync::Arc;

use super::errno::*;
use super::int32 as int;
use super::sysv::now;
use super::table::Handler;
use super::R;
use crate::kernel::sysv::{Got, Perm};
use crate::kernel::sysv_shm::{ShmSeg, SHMMAX};
use crate::mm::FileMap;
use crate::Vproc;

const SHM_RDONLY: u64 = 0o10000;
const SHM_RND: u64 = 0o20000;
const SHM_REMAP: u64 = 0o40000;
const SHM_EXEC: u64 = 0o100000;

impl Vproc {
    /// The System V shared memory calls: `(number, handler)` for the
    /// syscall table.
    pub(super) const SHM_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_shmget, |v, _nr, a| {
            v.sys_shmget(int(a[0]), a[1], int(a[2]))
        }),
        (libc::SYS_shmat, |v, _nr, a| {
            v.sys_shmat(int(a[0]), a[1], a[2])
        }),
        (libc::SYS_shmdt, |v, _nr, a| v.sys_shmdt(a[0])),
        (libc::SYS_shmctl, |v, _nr, a| {
            v.sys_shmctl(int(a[0]), i64::from(int(a[1]) & !0x100), a[2])
        }),
    ];

    fn sys_shmget(&mut self, key: i32, size: u64, flags: i32) -> R {
        let k = self.kernel()?;
        let mut v = k.sysv_lock();
        match v.shm.lookup(key, flags)? {
            Got::Found(id) => {
                if v.shm.segs.get(&id).is_some_and(|s| size > s.size) {
                    return Err(EINVAL);
                }
                Ok(i64::from(id))
            }
            Got::Make => {
                if size == 0 || size > SHMMAX {
                    return Err(EINVAL);
                }
                let name = format!("SYSV{:08x}", key as u32);
                let h = self.fs.memfd(name.as_bytes(), crate::fs::F_SEAL_SEAL);
                self.fs.truncate(h, size).map_err(|_| ENOMEM)?;
                let file = crate::fs::Backing::new(self.fs.clone(), h);
                let seg = ShmSeg {
                    perm: Perm {
                        key,
                        mode: u32::try_from(flags & 0o777).unwrap_or(0),
                        ctime: now(),
                    },
                    size,
                    file,
                    cpid: self.thread.tgid,
                    lpid: 0,
                    nattch: 0,
                    times: [0; 2],
                    removed: false,
                };
                Ok(i64::from(v.shm.add(seg)))
            }
        }
    }

    fn sys_shmat(&mut self, id: i32, addr: u64, flags: u64) -> R {
        let addr = if flags & SHM_RND != 0 {
            addr & !4095
        } else {
            addr
        };
        if !addr.is_multiple_of(4096) {
            return Err(EINVAL);
        }
        let k = self.kernel()?;
        let (file, size) = {
            let v = k.sysv_lock();
            let seg = v.shm.segs.get(&id).ok_or(EINVAL)?;
            (seg.file.clone(), seg.size)
        };
        let mut prot = 1;
        if flags & SHM_RDONLY == 0 {
            prot |= 2;
        }
        if flags & SHM_EXEC != 0 {
            prot |= 4;
        }
        let map = FileMap {
            src: Arc::new(file),
            off: 0,
            shared: true,
            writable: true,
        };
        let fixed = addr != 0;
        let at = self
            .mm
            .mmap(
                addr,
                size,
                prot,
                fixed,
                fixed && flags & SHM_REMAP == 0,
                Some(map),
            )
            // An address in use without SHM_REMAP is EINVAL.
            .map_err(|e| {
                if e.errno() == EEXIST {
                    EINVAL
                } else {
                    e.errno()
                }
            })?;
        let mut v = k.sysv_lock();
        if let Some(seg) = v.shm.segs.get_mut(&id) {
            seg.nattch += 1;
            seg.lpid = self.thread.tgid;
            seg.times[0] = now();
        }
        Ok(at as i64)
    }

    fn sys_shmdt(&mut self, addr: u64) -> R {
        if !addr.is_multiple_of(4096) {
            return Err(EINVAL);
        }
        let k = self.kernel()?;
        let files = k.sysv_lock().shm.files.clone();
        // The attachment at `addr`: its areas of the segment's file
        // (mprotect may have split it), contiguous from `addr`.
        let mut id = None;
        let mut end = addr;
        for (start, vma) in self.mm.vmas() {
            let Some(f) = vma.file.as_ref().filter(|f| f.shared) else {
                continue;
            };
            let Some(fid) = f.src.backing().map(|b| b.handle()) else {
                continue;
            };
            if start == addr && files.contains(&fid) && f.off == 0 {
                id = Some(fid);
                end = vma.end;
            } else if id == Some(fid) && start == end && f.off == start - addr {
                // A piece of the same attachment (mprotect split it): its
                // offset goes on; another attachment starts at 0.
                end = vma.end;
            }
        }
        let fid = id.ok_or(EINVAL)?;
        self.mm.munmap(addr, end - addr).map_err(|e| e.errno())?;
        k.sysv_lock().shm.detached(fid, self.thread.tgid, now());
        Ok(0)
    }

    fn sys_shmctl(&mut self, id: i32, cmd: i64, buf: u64) -> R {
        let k = self.kernel()?;
        let mut v = k.sysv_lock();
        match cmd {
            // IPC_INFO, SHM_INFO: shminfo's limits.
            3 | 14 => {
                let mut b = Vec::new();
                for x in [SHMMAX, 1, 4096, 4096, 1 << 24] {
                    b.extend_from_slice(&x.to_le_bytes());
                }
                b.resize(80, 0);
                drop(v);
                self.mm.write(buf, &b)?;
                Ok(0)
            }
            0 => {
                // IPC_RMID
                v.shm.remove(id).ok_or(EINVAL)?;
                Ok(0)
            }
            2 | 13 => {
                // IPC_STAT, SHM_STAT: struct shmid64_ds.
                let s = v.shm.segs.get(&id).ok_or(EINVAL)?;
                let mut b = Vec::with_capacity(112);
                b.extend_from_slice(&s.perm.key.to_le_bytes());
                b.extend_from_slice(&[0u8; 16]);
                // SHM_DEST once removed while attached.
                let mode = s.perm.mode | if s.removed { 0o1000 } else { 0 };
                b.extend_from_slice(&u16::try_from(mode).unwrap_or(0).to_le_bytes());
                b.resize(48, 0);
                for x in [s.size as i64, s.times[0], s.times[1], s.perm.ctime] {
                    b.extend_from_slice(&x.to_le_bytes());
                }
                b.extend_from_slice(&s.cpid.to_le_bytes());
                b.extend_from_slice(&s.lpid.to_le_bytes());
                b.extend_from_slice(&s.nattch.to_le_bytes());
                b.resize(112, 0);
                drop(v);
                self.mm.write(buf, &b)?;
                Ok(if cmd == 13 { i64::from(id) } else { 0 })
            }
            1 => {
                // IPC_SET: the mode.
                drop(v);
                let b = self.mm.read_vec(buf, 48)?;
                let mode = u16::from_le_bytes([b[20], b[21]]);
                let mut v = k.sysv_lock();
                let s = v.shm.segs.get_mut(&id).ok_or(EINVAL)?;
                s.perm.mode = u32::from(mode) & 0o777;
                s.perm.ctime = now();
                Ok(0)
            }
            // SHM_LOCK, SHM_UNLOCK: nothing is swapped.
            11 | 12 => v.shm.segs.get(&id).map(|_| 0).ok_or(EINVAL),
            _ => Err(EINVAL),
        }
    }
}
