//! The socket calls the exitless server answers: on a connected AF_UNIX
//! stream socket, `sendto` and `recvfrom` without an address and with
//! flags 0, MSG_DONTWAIT or MSG_NOSIGNAL (and read/write through
//! [`super::io`]), when the bytes are there to read (nothing sent along
//! them) or the whole write fits. A wait, an end of file, a broken pipe
//! (its SIGPIPE), a shut-down direction, MSG_PEEK/WAITALL and every other
//! socket kind take the exit path.

use super::io::{gather, pipe_read, pipe_write, total_len};
use crate::abi::socket::{MSG_DONTWAIT, MSG_NOSIGNAL};
use crate::files::{FileKind, Pipe, Shared, SockState, SockType, Socket};
use crate::kernel::fast::FastCtx;

/// What a connected stream socket reads from, if the server may.
pub(super) fn stream_rx(sk: &Socket) -> Option<Shared<Pipe>> {
    match &sk.state {
        SockState::Connected(s) if sk.ty == SockType::Stream && !s.shut_rd => Some(s.rx.clone()),
        _ => None,
    }
}

/// What a connected stream socket writes into, if the server may.
pub(super) fn stream_tx(sk: &Socket) -> Option<Shared<Pipe>> {
    match &sk.state {
        SockState::Connected(s) if sk.ty == SockType::Stream && !s.shut_wr => Some(s.tx.clone()),
        _ => None,
    }
}

/// sendto(fd, buf, len, flags, NULL, 0) and recvfrom(fd, buf, len, flags,
/// NULL, NULL) (`send`).
pub(super) fn serve(c: &FastCtx, a: [u64; 6], send: bool) -> Option<u64> {
    let flags = a[3];
    if flags & !(MSG_DONTWAIT | MSG_NOSIGNAL) != 0 || a[4] != 0 || a[5] != 0 {
        return None;
    }
    // The fd is an int: its low 32 bits.
    let fd = i64::from(crate::syscalls::int32(a[0]));
    c.process
        .try_with_parts(|p| {
            let vms = p.mm.vmspace();
            let file = p.fds.get(fd).ok()?.file.clone();
            let f = file.try_borrow()?;
            let FileKind::Socket(sk) = &f.kind else {
                return None;
            };
            let segs = [(a[1], a[2])];
            let total = total_len(&segs)?;
            if send {
                let tx = stream_tx(sk)?;
                drop(f);
                let data = gather(vms, &segs, total)?;
                pipe_write(&tx, &data)
            } else {
                let rx = stream_rx(sk)?;
                drop(f);
                pipe_read(vms, &rx, &segs, total)
            }
        })
        .flatten()
}
