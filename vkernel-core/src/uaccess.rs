//! copyin/copyout: reading and writing a vproc's memory by virtual address
//! through its vpagetable, page by page, with the permissions and A/M
//! updates a real user access would have.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use crate::ram::RamError;
use crate::vmspace::Vmspace;
use crate::walker::{Access, Emulate, FaultReason};

/// Errors of user-memory copies (EFAULT).
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum UaccessError {
    /// A page in the range cannot be accessed.
    #[error("bad user address {addr:#x}: {reason}")]
    Fault {
        /// First inaccessible address.
        addr: u64,
        /// Why.
        reason: FaultReason,
    },
    /// The range wraps around the address space.
    #[error("user range {addr:#x}+{len:#x} wraps")]
    Wraps {
        /// Start.
        addr: u64,
        /// Length.
        len: usize,
    },
    /// RAM access failed (a translation pointed outside RAM).
    #[error(transparent)]
    Ram(#[from] RamError),
}

pub(crate) fn copy(
    vms: &Vmspace,
    va: u64,
    len: usize,
    access: Access,
    mut f: impl FnMut(u64, usize, usize) -> Result<(), RamError>,
) -> Result<(), UaccessError> {
    if va.checked_add(len as u64).is_none() {
        return Err(UaccessError::Wraps { addr: va, len });
    }
    let mut done = 0usize;
    while done < len {
        let cur = va + done as u64;
        let n = ((4096 - (cur & 0xFFF)) as usize).min(len - done);
        let frame = {
            let st = vms.lock();
            vms.translate_locked(&st, cur & !0xFFF, access, Emulate::AccessedModified)
                .map_err(|reason| UaccessError::Fault { addr: cur, reason })?
                .0
        };
        f(frame + (cur & 0xFFF), done, n)?;
        done += n;
    }
    Ok(())
}
