//! futex(2) in the exitless server: FUTEX_WAKE and FUTEX_WAKE_BITSET
//! that find nobody to wake (0), and a FUTEX_WAIT or FUTEX_WAIT_BITSET
//! without a timeout whose
//! word no longer holds the expected value (EAGAIN, as Linux answers when
//! the word changed before the caller could sleep). A wait that would
//! sleep, a wake that finds a waiter (the woken task may preempt the
//! caller: the scheduler decides that on the exit path), a timeout to
//! read, a requeue and every error are the exit path's (`Vproc::sys_futex`), which registers the waiter before it
//! looks at the word.

use crate::kernel::fast::{read_user, FastCtx};
use crate::kernel::Kernel;
use crate::syscalls::uint32;

/// FUTEX_PRIVATE_FLAG and FUTEX_CLOCK_REALTIME (not part of the op).
const PRIVATE: u64 = 128;
const CLOCK_REALTIME: u64 = 256;

/// -EAGAIN as the server answers it.
const EAGAIN: u64 = (-(libc::EAGAIN as i64)) as u64;

/// futex(uaddr, op, val, timeout, uaddr2, val3), or None (the exit path).
pub(super) fn serve(k: &Kernel, c: &mut FastCtx, a: [u64; 6]) -> Option<u64> {
    let (uaddr, op) = (a[0], a[1] & !(PRIVATE | CLOCK_REALTIME));
    if !uaddr.is_multiple_of(4) {
        return None;
    }
    // The 32-bit operands, as the exit path truncates them.
    let (val, val3) = (uint32(a[2]), uint32(a[5]));
    match op {
        // FUTEX_WAIT, FUTEX_WAIT_BITSET with no timeout.
        0 | 9 if a[3] == 0 && (op == 0 || val3 != 0) => {
            let mut b = [0u8; 4];
            if !read_user(c, uaddr, &mut b) {
                return None;
            }
            (u32::from_le_bytes(b) != val).then_some(EAGAIN)
        }
        // FUTEX_WAKE, FUTEX_WAKE_BITSET.
        1 | 10 => {
            let bits = if op == 10 { val3 } else { u32::MAX };
            if bits == 0 {
                return None;
            }
            // A wake that finds a waiter goes through the exit path: the
            // woken task may preempt the caller there (served here, the
            // caller ran on to its next tick, and a waker looping on one
            // vCPU starved its waiter: stress-ng --futex fell 20x).
            let key = c.process.try_futex_key(uaddr, a[1] & PRIVATE != 0)?;
            (val == 0 || !k.futex_has_waiter(key, bits)).then_some(0)
        }
        _ => None,
    }
}
