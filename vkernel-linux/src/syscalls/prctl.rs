//! prctl(2): the options programs use at start and in sandboxes, kept in
//! the thread ([`crate::thread::PrctlFlags`], PR_SET_PDEATHSIG in the
//! process table), with Linux's argument checks: PDEATHSIG, DUMPABLE,
//! KEEPCAPS, NAME (the command name ps and /proc show), SECCOMP (none:
//! mode 0), CAPBSET_READ (the full bounding set), TIMERSLACK,
//! CHILD_SUBREAPER (the process table's, see `kernel::reaper`),
//! NO_NEW_PRIVS, TID_ADDRESS and THP_DISABLE. Other options are those of
//! a kernel built without them (EINVAL).

use super::errno::*;
use super::R;
use crate::thread::DEFAULT_TIMERSLACK_NS;
use crate::Vproc;

const PR_SET_PDEATHSIG: u64 = 1;
const PR_GET_PDEATHSIG: u64 = 2;
const PR_GET_DUMPABLE: u64 = 3;
const PR_SET_DUMPABLE: u64 = 4;
const PR_GET_KEEPCAPS: u64 = 7;
const PR_SET_KEEPCAPS: u64 = 8;
/// Set the thread's name (the exitless server answers it too).
pub(crate) const PR_SET_NAME: u64 = 15;
/// Read the thread's name (the exitless server answers it too).
pub(crate) const PR_GET_NAME: u64 = 16;
const PR_GET_SECCOMP: u64 = 21;
const PR_CAPBSET_READ: u64 = 23;
const PR_SET_TIMERSLACK: u64 = 29;
const PR_GET_TIMERSLACK: u64 = 30;
const PR_SET_CHILD_SUBREAPER: u64 = 36;
const PR_GET_CHILD_SUBREAPER: u64 = 37;
const PR_SET_NO_NEW_PRIVS: u64 = 38;
const PR_GET_NO_NEW_PRIVS: u64 = 39;
const PR_GET_TID_ADDRESS: u64 = 40;
const PR_SET_THP_DISABLE: u64 = 41;
const PR_GET_THP_DISABLE: u64 = 42;

/// The highest capability number (CAP_CHECKPOINT_RESTORE, Linux 5.9+).
const CAP_LAST_CAP: u64 = 40;

pub(crate) use crate::abi::COMM_LEN;

/// The name PR_SET_NAME takes from the first `b.len()` readable bytes of
/// its buffer: up to the first NUL, at most 15 bytes.
pub(crate) fn name_from(b: &[u8]) -> String {
    let end = b
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(b.len())
        .min(COMM_LEN - 1);
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// What PR_GET_NAME writes: the name (at most 15 bytes), NUL-padded.
pub(crate) fn name_bytes(comm: &str) -> [u8; COMM_LEN] {
    let mut b = [0u8; COMM_LEN];
    let c = comm.as_bytes();
    let n = c.len().min(COMM_LEN - 1);
    b[..n].copy_from_slice(&c[..n]);
    b
}

/// A 0-or-1 argument.
fn flag(v: u64) -> Result<bool, i64> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(EINVAL),
    }
}

/// The arguments an option does not use must be 0.
fn unused(args: &[u64]) -> Result<(), i64> {
    if args.iter().all(|&a| a == 0) {
        Ok(())
    } else {
        Err(EINVAL)
    }
}

impl Vproc {
    /// prctl(option, arg2, arg3, arg4, arg5).
    pub(super) fn sys_prctl(&mut self, a: [u64; 6]) -> R {
        match a[0] {
            PR_SET_PDEATHSIG => {
                if a[1] > 64 {
                    return Err(EINVAL);
                }
                self.set_pdeathsig(i32::try_from(a[1]).unwrap_or(0));
                Ok(0)
            }
            PR_GET_PDEATHSIG => {
                self.mm.write(a[1], &self.thread.pdeathsig.to_le_bytes())?;
                Ok(0)
            }
            PR_GET_DUMPABLE => Ok(i64::from(self.prctl.dumpable)),
            // SUID_DUMP_ROOT (2) is refused from user space, as on Linux.
            PR_SET_DUMPABLE => {
                self.prctl.dumpable = flag(a[1])?;
                Ok(0)
            }
            PR_GET_KEEPCAPS => Ok(i64::from(self.prctl.keepcaps)),
            PR_SET_KEEPCAPS => {
                self.prctl.keepcaps = flag(a[1])?;
                Ok(0)
            }
            PR_SET_NAME => {
                let mut b = [0u8; COMM_LEN];
                let n = self.mm.read_partial(a[1], &mut b);
                if n == 0 {
                    return Err(EFAULT);
                }
                self.comm = name_from(&b[..n]);
                Ok(0)
            }
            PR_GET_NAME => {
                self.mm.write(a[1], &name_bytes(&self.comm))?;
                Ok(0)
            }
            // No seccomp filter or strict mode can be set (SET_SECCOMP is
            // EINVAL, as without CONFIG_SECCOMP).
            PR_GET_SECCOMP => Ok(0),
            PR_CAPBSET_READ if a[1] <= CAP_LAST_CAP => Ok(1),
            PR_CAPBSET_READ => Err(EINVAL),
            PR_SET_TIMERSLACK => {
                self.prctl.timerslack_ns = match a[1] {
                    0 => DEFAULT_TIMERSLACK_NS,
                    ns => ns,
                };
                Ok(0)
            }
            PR_GET_TIMERSLACK => Ok(i64::try_from(self.prctl.timerslack_ns).unwrap_or(i64::MAX)),
            PR_SET_CHILD_SUBREAPER => {
                if let Some(k) = &self.k {
                    k.set_child_subreaper(self.thread.tgid, a[1] != 0);
                }
                Ok(0)
            }
            PR_GET_CHILD_SUBREAPER => {
                let on = self
                    .k
                    .as_ref()
                    .is_some_and(|k| k.child_subreaper(self.thread.tgid));
                self.mm.write(a[1], &i32::from(on).to_le_bytes())?;
                Ok(0)
            }
            PR_SET_NO_NEW_PRIVS => {
                unused(&a[2..5])?;
                if !flag(a[1])? {
                    return Err(EINVAL);
                }
                self.prctl.no_new_privs = true;
                Ok(0)
            }
            PR_GET_NO_NEW_PRIVS => {
                unused(&a[1..5])?;
                Ok(i64::from(self.prctl.no_new_privs))
            }
            PR_GET_TID_ADDRESS => {
                self.mm.write(a[1], &self.clear_child_tid.to_le_bytes())?;
                Ok(0)
            }
            PR_SET_THP_DISABLE => {
                unused(&a[2..5])?;
                self.prctl.thp_disable = a[1] != 0;
                Ok(0)
            }
            PR_GET_THP_DISABLE => {
                unused(&a[1..5])?;
                Ok(i64::from(self.prctl.thp_disable))
            }
            _ => Err(EINVAL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_zero_or_one() {
        assert_eq!(flag(0), Ok(false));
        assert_eq!(flag(1), Ok(true));
        assert_eq!(flag(2), Err(EINVAL));
        assert_eq!(unused(&[0, 0, 0]), Ok(()));
        assert_eq!(unused(&[0, 1]), Err(EINVAL));
    }
}
