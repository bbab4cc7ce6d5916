//! Calls that describe the system: uname, sysinfo, getrandom, and the
//! optional calls answered as a kernel without them (prctl, rseq).
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::errno::*;
use super::table::Handler;
use super::R;
use crate::Vproc;

impl Vproc {
    /// The system-information calls: `(number, handler)` for the
    /// syscall table ([`super::table`]).
    pub(super) const INFO_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_uname, |v, _nr, a| v.sys_uname(a[0])),
        (libc::SYS_sethostname, |v, _nr, a| {
            v.sys_set_uts(false, a[0], a[1])
        }),
        (libc::SYS_setdomainname, |v, _nr, a| {
            v.sys_set_uts(true, a[0], a[1])
        }),
        (libc::SYS_sysinfo, |v, _nr, a| v.sys_sysinfo(a[0])),
        (libc::SYS_getrandom, |v, _nr, a| {
            v.sys_getrandom(a[0], a[1] as usize)
        }),
        (libc::SYS_prctl, |v, _nr, a| v.sys_prctl(a)),
        (libc::SYS_rseq, |_v, _nr, _a| Err(ENOSYS)),
        (libc::SYS_get_mempolicy, |v, _nr, a| v.sys_get_mempolicy(a)),
        // One NUMA node: any policy over node 0 is what the vkernel does.
        (libc::SYS_set_mempolicy, |v, _nr, a| {
            v.node_mask_ok(a[0], a[1], a[2])
        }),
        (libc::SYS_mbind, |v, _nr, a| {
            v.node_mask_ok(a[2], a[3], a[4])
        }),
    ];

    /// get_mempolicy(mode, nodemask, maxnode, addr, flags): MPOL_DEFAULT
    /// over the one node (node 0), as a one-node machine answers.
    fn sys_get_mempolicy(&mut self, a: [u64; 6]) -> R {
        const MPOL_F_NODE: u64 = 1;
        const MPOL_F_ADDR: u64 = 2;
        const MPOL_F_MEMS_ALLOWED: u64 = 4;
        if a[4] & !(MPOL_F_NODE | MPOL_F_ADDR | MPOL_F_MEMS_ALLOWED) != 0 {
            return Err(EINVAL);
        }
        if a[0] != 0 {
            // The mode, or with MPOL_F_NODE the node: 0 either way.
            self.mm.write(a[0], &0i32.to_le_bytes())?;
        }
        if a[1] != 0 {
            if a[2] == 0 {
                return Err(EINVAL);
            }
            let words = usize::try_from(a[2].div_ceil(64))
                .map_err(|_| EINVAL)?
                .min(16);
            let mut mask = vec![0u8; 8 * words];
            if a[4] & MPOL_F_MEMS_ALLOWED != 0 || a[4] == 0 {
                mask[0] = u8::from(a[4] & MPOL_F_MEMS_ALLOWED != 0);
            }
            self.mm.write(a[1], &mask)?;
        }
        Ok(0)
    }

    /// set_mempolicy/mbind's mode and node mask: MPOL_DEFAULT (0) to
    /// MPOL_LOCAL (4) over node 0 only; another node is EINVAL.
    fn node_mask_ok(&mut self, mode: u64, mask: u64, maxnode: u64) -> R {
        // The mode's flags (MPOL_F_STATIC_NODES...) are its high bits.
        if mode & 0xffff > 4 {
            return Err(EINVAL);
        }
        if mask != 0 && maxnode > 1 {
            let words = usize::try_from(maxnode.div_ceil(64))
                .map_err(|_| EINVAL)?
                .min(16);
            let b = self.mm.read_vec(mask, 8 * words)?;
            if b[0] & !1 != 0 || b[1..].iter().any(|&x| x != 0) {
                return Err(EINVAL);
            }
        }
        Ok(0)
    }

    /// getrusage: the CPU time the scheduler counted for this vproc (all
    /// of it as user time) and its resident memory; children's usage is
    /// not kept (zeros).
    pub(super) fn sys_getrusage(&mut self, who: i64, buf: u64) -> R {
        let b = match who {
            0 | 1 => {
                let ns = match &self.k {
                    Some(k) => k.cpu_time(self.pid),
                    None => self.started.elapsed().as_nanos() as u64,
                };
                rusage(ns, self.mm.resident_pages())
            }
            -1 => [0u8; RUSAGE],
            _ => return Err(EINVAL),
        };
        self.mm.write(buf, &b)?;
        Ok(0)
    }

    /// getrandom: up to 1 MiB of the host's randomness.
    fn sys_getrandom(&mut self, buf: u64, len: usize) -> R {
        let n = len.min(1 << 20);
        let mut b = vec![0u8; n];
        crate::random_bytes(&mut b);
        self.mm.write(buf, &b)?;
        Ok(n as i64)
    }

    fn sys_uname(&mut self, buf: u64) -> R {
        let b = match &self.k {
            Some(k) => uname_bytes(k),
            None => uname_of(b"vkernel", b"(none)"),
        };
        self.mm.write(buf, &b)?;
        Ok(0)
    }

    /// sethostname/setdomainname(name, len) in the virtual kernel's own
    /// UTS namespace (vprocs are root: allowed); at most 64 bytes.
    fn sys_set_uts(&mut self, domain: bool, name: u64, len: u64) -> R {
        if len > 64 {
            return Err(EINVAL);
        }
        let b = self.mm.read_vec(name, len as usize)?;
        self.kernel()?.set_uts(domain, b);
        Ok(0)
    }

    fn sys_sysinfo(&mut self, buf: u64) -> R {
        let mut b = [0u8; 112];
        // The virtual kernel's uptime, its threads, and the threads
        // running or runnable as the three loads (SI_LOAD_SHIFT 16).
        let (up, loads, all) = match &self.k {
            Some(k) => (k.uptime().as_secs(), k.loadavg(), k.load().1),
            None => (self.started.elapsed().as_secs(), [0.0; 3], 1),
        };
        b[..8].copy_from_slice(&up.to_le_bytes());
        for (i, l) in loads.iter().enumerate() {
            let fixed = (l * 65536.0) as u64;
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&fixed.to_le_bytes());
        }
        let total = self.mm.ram().size();
        let free = self.mm.free_frames() * 4096;
        b[32..40].copy_from_slice(&total.to_le_bytes());
        b[40..48].copy_from_slice(&free.to_le_bytes());
        b[80..82].copy_from_slice(&u16::try_from(all).unwrap_or(u16::MAX).to_le_bytes());
        b[104..108].copy_from_slice(&1u32.to_le_bytes());
        self.mm.write(buf, &b)?;
        Ok(0)
    }
}

/// The `struct utsname` uname returns in virtual kernel `k` (also the
/// exitless fast path's).
pub(crate) fn uname_bytes(k: &crate::kernel::Kernel) -> [u8; 390] {
    let (node, domain) = k.uts();
    uname_of(&node, &domain)
}

/// A `struct utsname` with host name `node` and domain name `domain`.
fn uname_of(node: &[u8], domain: &[u8]) -> [u8; 390] {
    let mut b = [0u8; 390];
    for (i, s) in [
        &b"Linux"[..],
        &node[..node.len().min(64)],
        b"6.1.0-vkernel",
        b"#1 SMP vkernel",
        b"x86_64",
        &domain[..domain.len().min(64)],
    ]
    .iter()
    .enumerate()
    {
        b[65 * i..65 * i + s.len()].copy_from_slice(s);
    }
    b
}

/// Bytes of `struct rusage`.
pub(super) const RUSAGE: usize = 144;

/// The `struct rusage` getrusage gives (the exit path's and the exitless
/// server's): `cpu_ns` of CPU time, all of it as user time, and a maximum
/// resident set of `rss_pages` pages; the rest zero.
pub(super) fn rusage(cpu_ns: u64, rss_pages: usize) -> [u8; RUSAGE] {
    let mut b = [0u8; RUSAGE];
    b[..8].copy_from_slice(&(cpu_ns / 1_000_000_000).to_le_bytes());
    b[8..16].copy_from_slice(&((cpu_ns / 1000) % 1_000_000).to_le_bytes());
    b[32..40].copy_from_slice(&(rss_pages as u64 * 4).to_le_bytes());
    b
}
