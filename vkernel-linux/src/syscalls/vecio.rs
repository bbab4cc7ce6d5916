//! The positional vector calls: preadv, pwritev, preadv2 and pwritev2
//! (readv and writev at an offset, which does not move; the 2 forms take
//! -1 for the file's offset, as readv/writev, and RWF_* flags).

use super::errno::*;
use super::int;
use super::table::Handler;
use crate::Vproc;

/// RWF_HIPRI, RWF_DSYNC, RWF_SYNC: hints a file of the tree meets as it
/// is (its writes are the tree's at once).
const RWF_HINTS: u64 = 0x1 | 0x2 | 0x4;

/// The offset argument of preadv/pwritev (`pos_l`; on x86-64 it holds the
/// whole offset): EINVAL when negative; for the 2 forms -1 means the
/// file's own offset.
fn position(pos: u64, two: bool) -> Result<Option<u64>, i64> {
    match pos as i64 {
        -1 if two => Ok(None),
        p if p < 0 => Err(EINVAL),
        p => Ok(Some(p as u64)),
    }
}

impl Vproc {
    /// The positional vector calls: `(number, handler)` for the syscall
    /// table.
    pub(super) const VECIO_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_preadv, |v, _nr, a| {
            let at = position(a[3], false)?;
            v.sys_readv(int(a[0]), a[1], a[2], at)
        }),
        (libc::SYS_pwritev, |v, _nr, a| {
            let at = position(a[3], false)?;
            v.sys_writev(int(a[0]), a[1], a[2], at)
        }),
        (libc::SYS_preadv2, |v, _nr, a| {
            let at = rwf(a[5]).and_then(|()| position(a[3], true))?;
            v.sys_readv(int(a[0]), a[1], a[2], at)
        }),
        (libc::SYS_pwritev2, |v, _nr, a| {
            let at = rwf(a[5]).and_then(|()| position(a[3], true))?;
            v.sys_writev(int(a[0]), a[1], a[2], at)
        }),
    ];
}

/// preadv2/pwritev2's flags: the hints are taken; RWF_NOWAIT, RWF_APPEND
/// and unknown flags are EOPNOTSUPP.
fn rwf(flags: u64) -> Result<(), i64> {
    if flags & !RWF_HINTS != 0 {
        return Err(EOPNOTSUPP);
    }
    Ok(())
}
