//! A process's resource limits (getrlimit, setrlimit, prlimit64).
//!
//! Every limit starts at the vkernel's own host limit, as a fresh login
//! inherits its shell's (`ulimit -a` inside and outside agree), except
//! RLIMIT_STACK, whose soft value is the stack the loader reserves
//! ([`crate::mm::STACK_SIZE`]). The limits belong to the process:
//! they travel with its fd table ([`crate::files::FdTable`]), which
//! every thread of a process shares and fork and execve keep, as Linux
//! keeps them in `signal_struct`.
//!
//! Enforced: RLIMIT_NOFILE (the fd table refuses fds at or above the soft
//! value with EMFILE, EBADF for dup2 and EINVAL for F_DUPFD, as Linux
//! does). The others are kept and reported but not enforced.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

/// RLIMIT_STACK.
pub const RLIMIT_STACK: u32 = 3;
/// RLIMIT_NOFILE.
pub const RLIMIT_NOFILE: u32 = 7;
/// Number of limits (RLIM_NLIMITS).
pub const RLIM_NLIMITS: usize = 16;
/// RLIM_INFINITY.
pub const RLIM_INFINITY: u64 = u64::MAX;
/// Linux's `fs.nr_open` default: no RLIMIT_NOFILE hard value above it
/// (EPERM), even for root.
pub const NR_OPEN: u64 = 1 << 20;
/// RLIMIT_NOFILE of a table made without the host's values.
const DEFAULT_NOFILE: u64 = 1024;

/// Errors of changing a limit.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum RlimitError {
    /// Not a resource, or soft above hard.
    #[error("invalid resource or soft limit above the hard limit")]
    Invalid,
    /// Above what may be asked (RLIMIT_NOFILE above `fs.nr_open`).
    #[error("limit above the system's maximum")]
    NotPermitted,
}

impl RlimitError {
    /// The errno.
    pub fn errno(self) -> i64 {
        match self {
            RlimitError::Invalid => libc::EINVAL as i64,
            RlimitError::NotPermitted => libc::EPERM as i64,
        }
    }
}

/// One limit: soft (`cur`) and hard (`max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    /// The soft limit (what is enforced).
    pub cur: u64,
    /// The hard limit (the ceiling of `cur`).
    pub max: u64,
}

/// The limits of one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rlimits([Rlimit; RLIM_NLIMITS]);

impl Default for Rlimits {
    /// Unlimited, but RLIMIT_STACK at the reserved stack and
    /// RLIMIT_NOFILE at 1,024 (no host call: see [`Rlimits::from_host`]).
    fn default() -> Self {
        let inf = Rlimit {
            cur: RLIM_INFINITY,
            max: RLIM_INFINITY,
        };
        let mut l = [inf; RLIM_NLIMITS];
        l[RLIMIT_STACK as usize].cur = crate::mm::STACK_SIZE;
        l[RLIMIT_NOFILE as usize] = Rlimit {
            cur: DEFAULT_NOFILE,
            max: DEFAULT_NOFILE,
        };
        Rlimits(l)
    }
}

impl Rlimits {
    /// The vkernel's own host limits (RLIMIT_NOFILE capped at
    /// [`NR_OPEN`]; RLIMIT_STACK's soft value the reserved stack).
    pub fn from_host() -> Rlimits {
        let mut r = Rlimits::default();
        for (res, l) in r.0.iter_mut().enumerate() {
            if res == RLIMIT_STACK as usize {
                continue;
            }
            let mut h = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes one `struct rlimit` into `h`, which
            // lives across the call.
            if unsafe { libc::getrlimit(res as _, &mut h) } == 0 {
                *l = Rlimit {
                    cur: h.rlim_cur,
                    max: h.rlim_max,
                };
            }
        }
        let nofile = &mut r.0[RLIMIT_NOFILE as usize];
        nofile.max = nofile.max.min(NR_OPEN);
        nofile.cur = nofile.cur.min(nofile.max);
        r
    }

    /// Limit `res`, or None for a resource that does not exist.
    pub fn get(&self, res: u32) -> Option<Rlimit> {
        self.0.get(res as usize).copied()
    }

    /// Set limit `res` as a process with CAP_SYS_RESOURCE may (every vproc
    /// runs as root): soft at most hard, RLIMIT_NOFILE's hard at most
    /// [`NR_OPEN`]. Lowering RLIMIT_NOFILE below open fds is allowed (they
    /// stay open). Returns the old value.
    pub fn set(&mut self, res: u32, new: Rlimit) -> Result<Rlimit, RlimitError> {
        let slot = self.0.get_mut(res as usize).ok_or(RlimitError::Invalid)?;
        if new.cur > new.max {
            return Err(RlimitError::Invalid);
        }
        if res == RLIMIT_NOFILE && new.max > NR_OPEN {
            return Err(RlimitError::NotPermitted);
        }
        Ok(std::mem::replace(slot, new))
    }

    /// The soft RLIMIT_NOFILE: fds must be below it.
    pub fn nofile(&self) -> usize {
        let cur = self.0[RLIMIT_NOFILE as usize].cur;
        usize::try_from(cur).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_follows_linux_rules() {
        let mut r = Rlimits::default();
        let old = r
            .set(RLIMIT_NOFILE, Rlimit { cur: 10, max: 20 })
            .expect("lowering is allowed");
        assert_eq!(old.cur, DEFAULT_NOFILE);
        assert_eq!(r.nofile(), 10);
        // Root may raise the hard limit, up to nr_open.
        assert!(r.set(RLIMIT_NOFILE, Rlimit { cur: 30, max: 40 }).is_ok());
        assert_eq!(
            r.set(
                RLIMIT_NOFILE,
                Rlimit {
                    cur: 1,
                    max: NR_OPEN + 1
                }
            ),
            Err(RlimitError::NotPermitted)
        );
        assert_eq!(
            r.set(RLIMIT_NOFILE, Rlimit { cur: 5, max: 4 }),
            Err(RlimitError::Invalid)
        );
        assert_eq!(
            r.set(16, Rlimit { cur: 1, max: 1 }),
            Err(RlimitError::Invalid)
        );
        assert!(r.get(16).is_none());
        assert_eq!(r.get(RLIMIT_NOFILE), Some(Rlimit { cur: 30, max: 40 }));
    }

    #[test]
    fn host_limits_are_the_start() {
        let r = Rlimits::from_host();
        let mut h = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one struct into `h`.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut h) }, 0);
        assert_eq!(r.nofile() as u64, h.rlim_cur.min(NR_OPEN));
    }
}
