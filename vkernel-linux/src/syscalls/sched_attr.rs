//! sched_setattr and sched_getattr: the extensible `struct sched_attr`
//! form of sched_setscheduler/sched_getparam/setpriority, over the same
//! scheduler classes ([`crate::core::sched`]). SCHED_DEADLINE has no
//! class here: admission refuses it (EBUSY, Linux's answer when no
//! bandwidth is left); utilization clamps are a kernel built without
//! them (EOPNOTSUPP).

use super::errno::*;
use super::table::Handler;
use super::{int32, uint32, R};
use crate::core::sched::Policy;
use crate::Vproc;

/// sched_setattr (libc has no number for it on every target).
const SYS_SCHED_SETATTR: i64 = 314;
/// sched_getattr.
const SYS_SCHED_GETATTR: i64 = 315;
/// `struct sched_attr` of Linux 4.x (SCHED_ATTR_SIZE_VER0).
const SIZE_VER0: u32 = 48;
/// With the utilization clamps (SCHED_ATTR_SIZE_VER1): the kernel's size.
const SIZE_VER1: u32 = 56;
/// SCHED_FLAG_RESET_ON_FORK.
const RESET_ON_FORK: u64 = 0x01;
/// SCHED_FLAG_RECLAIM and SCHED_FLAG_DL_OVERRUN (deadline flags).
const DL_FLAGS: u64 = 0x02 | 0x04;
/// SCHED_FLAG_KEEP_POLICY.
const KEEP_POLICY: u64 = 0x08;
/// SCHED_FLAG_KEEP_PARAMS.
const KEEP_PARAMS: u64 = 0x10;
/// SCHED_FLAG_UTIL_CLAMP_MIN | SCHED_FLAG_UTIL_CLAMP_MAX.
const UTIL_CLAMP: u64 = 0x20 | 0x40;
/// SCHED_DEADLINE.
const SCHED_DEADLINE: u32 = 6;

/// What a `struct sched_attr` says, as far as the vkernel's classes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Attr {
    policy: u32,
    flags: u64,
    nice: i32,
    prio: u32,
}

/// The Linux policy number of `p` (the fair class answers SCHED_OTHER,
/// as sched_getscheduler does).
fn policy_number(p: Policy) -> u32 {
    match p {
        Policy::Fifo { .. } => 1,
        Policy::RoundRobin { .. } => 2,
        Policy::Fair { .. } => 0,
    }
}

/// The policy `a` asks for, given the current one `cur`. As on Linux,
/// SCHED_FLAG_KEEP_PARAMS checks the request with the current parameters
/// and then changes nothing (it exists for the utilization clamps).
fn policy_of(a: Attr, cur: Policy) -> Result<Policy, i64> {
    let p = checked_policy(a, cur)?;
    Ok(if a.flags & KEEP_PARAMS != 0 { cur } else { p })
}

/// The policy `a` names, checked ([`policy_of`]).
fn checked_policy(a: Attr, cur: Policy) -> Result<Policy, i64> {
    if a.flags & !(RESET_ON_FORK | DL_FLAGS | KEEP_POLICY | KEEP_PARAMS | UTIL_CLAMP) != 0 {
        return Err(EINVAL);
    }
    if a.flags & UTIL_CLAMP != 0 {
        return Err(EOPNOTSUPP);
    }
    let policy = if a.flags & KEEP_POLICY != 0 {
        policy_number(cur)
    } else {
        a.policy
    };
    let keep = a.flags & KEEP_PARAMS != 0;
    match policy {
        // SCHED_OTHER, SCHED_BATCH, SCHED_IDLE: the fair class.
        0 | 3 | 5 => {
            if a.prio != 0 {
                return Err(EINVAL);
            }
            let nice = if keep {
                cur.nice().unwrap_or(0)
            } else {
                i8::try_from(a.nice.clamp(-20, 19)).unwrap_or(0)
            };
            Ok(Policy::Fair { nice })
        }
        1 | 2 => {
            let prio = if keep {
                cur.rt_prio().ok_or(EINVAL)?
            } else {
                u8::try_from(a.prio)
                    .ok()
                    .filter(|p| (1..=99).contains(p))
                    .ok_or(EINVAL)?
            };
            Ok(if policy == 1 {
                Policy::Fifo { prio }
            } else {
                Policy::RoundRobin { prio }
            })
        }
        SCHED_DEADLINE => Err(EBUSY),
        _ => Err(EINVAL),
    }
}

/// The bytes sched_getattr writes for `p` (the kernel's size).
fn encode(p: Policy) -> [u8; SIZE_VER1 as usize] {
    let mut b = [0u8; SIZE_VER1 as usize];
    b[0..4].copy_from_slice(&SIZE_VER1.to_le_bytes());
    b[4..8].copy_from_slice(&policy_number(p).to_le_bytes());
    b[16..20].copy_from_slice(&i32::from(p.nice().unwrap_or(0)).to_le_bytes());
    b[20..24].copy_from_slice(&u32::from(p.rt_prio().unwrap_or(0)).to_le_bytes());
    // sched_util_max: no clamp (SCHED_CAPACITY_SCALE).
    b[52..56].copy_from_slice(&1024u32.to_le_bytes());
    b
}

impl Vproc {
    /// The sched_attr calls: `(number, handler)` for the syscall table
    /// ([`super::table`]).
    pub(super) const SCHED_ATTR_CALLS: &'static [(i64, Handler)] = &[
        (SYS_SCHED_SETATTR, |v, _nr, a| {
            v.sys_sched_setattr(int32(a[0]), a[1], uint32(a[2]))
        }),
        (SYS_SCHED_GETATTR, |v, _nr, a| {
            v.sys_sched_getattr(int32(a[0]), a[1], uint32(a[2]), uint32(a[3]))
        }),
    ];

    /// sched_setattr(pid, attr, flags).
    fn sys_sched_setattr(&mut self, pid: i32, attr: u64, flags: u32) -> R {
        if flags != 0 || pid < 0 || attr == 0 {
            return Err(EINVAL);
        }
        let mut w = [0u8; 4];
        self.mm.read(attr, &mut w)?;
        let size = match u32::from_le_bytes(w) {
            0 => SIZE_VER0,
            s => s,
        };
        if !(SIZE_VER0..=4096).contains(&size) {
            // Linux tells the caller the size it knows.
            self.mm.write(attr, &SIZE_VER1.to_le_bytes())?;
            return Err(E2BIG);
        }
        let mut b = vec![0u8; size as usize];
        self.mm.read(attr, &mut b)?;
        if b.iter().skip(SIZE_VER1 as usize).any(|&x| x != 0) {
            self.mm.write(attr, &SIZE_VER1.to_le_bytes())?;
            return Err(E2BIG);
        }
        let word = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let a = Attr {
            policy: word(4),
            flags: u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
            nice: word(16) as i32,
            prio: word(20),
        };
        let cur = self.sched_policy(pid)?;
        let p = policy_of(a, cur)?;
        self.set_sched_policy(pid, p)?;
        Ok(0)
    }

    /// sched_getattr(pid, attr, size, flags).
    fn sys_sched_getattr(&mut self, pid: i32, attr: u64, size: u32, flags: u32) -> R {
        if flags != 0 || pid < 0 || attr == 0 || !(SIZE_VER0..=4096).contains(&size) {
            return Err(EINVAL);
        }
        let mut b = encode(self.sched_policy(pid)?);
        let n = SIZE_VER1.min(size);
        b[0..4].copy_from_slice(&n.to_le_bytes());
        self.mm.write(attr, &b[..n as usize])?;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(policy: u32, flags: u64, nice: i32, prio: u32) -> Attr {
        Attr {
            policy,
            flags,
            nice,
            prio,
        }
    }

    #[test]
    fn attributes_map_to_the_classes() {
        let fair = Policy::Fair { nice: 3 };
        assert_eq!(
            policy_of(attr(0, 0, -5, 0), fair),
            Ok(Policy::Fair { nice: -5 })
        );
        assert_eq!(
            policy_of(attr(3, 0, 40, 0), fair),
            Ok(Policy::Fair { nice: 19 })
        );
        assert_eq!(
            policy_of(attr(1, 0, 0, 10), fair),
            Ok(Policy::Fifo { prio: 10 })
        );
        assert_eq!(
            policy_of(attr(2, RESET_ON_FORK, 0, 99), fair),
            Ok(Policy::RoundRobin { prio: 99 })
        );
        assert_eq!(policy_of(attr(1, 0, 0, 0), fair), Err(EINVAL));
        assert_eq!(policy_of(attr(0, 0, 0, 1), fair), Err(EINVAL));
        assert_eq!(policy_of(attr(SCHED_DEADLINE, 0, 0, 0), fair), Err(EBUSY));
        assert_eq!(policy_of(attr(0, 0x20, 0, 0), fair), Err(EOPNOTSUPP));
        assert_eq!(policy_of(attr(0, 0x100, 0, 0), fair), Err(EINVAL));
        assert_eq!(policy_of(attr(9, 0, 0, 0), fair), Err(EINVAL));
    }

    #[test]
    fn keep_flags_keep_what_is_there() {
        let rr = Policy::RoundRobin { prio: 7 };
        assert_eq!(
            policy_of(attr(0, KEEP_POLICY, 0, 20), rr),
            Ok(Policy::RoundRobin { prio: 20 })
        );
        assert_eq!(policy_of(attr(1, KEEP_PARAMS, 0, 0), rr), Ok(rr));
        assert_eq!(
            policy_of(attr(1, KEEP_PARAMS, 0, 0), Policy::NORMAL),
            Err(EINVAL)
        );
        let fair = Policy::Fair { nice: -2 };
        assert_eq!(policy_of(attr(0, KEEP_PARAMS, 10, 0), fair), Ok(fair));
    }

    #[test]
    fn getattr_reports_the_kernels_size() {
        let b = encode(Policy::Fifo { prio: 42 });
        assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), SIZE_VER1);
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 42);
        let b = encode(Policy::Fair { nice: -3 });
        assert_eq!(i32::from_le_bytes(b[16..20].try_into().unwrap()), -3);
    }
}
