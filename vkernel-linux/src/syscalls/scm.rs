//! SCM_RIGHTS: open files passed over AF_UNIX stream sockets. sendmsg's
//! control data names fds; their open file descriptions travel attached
//! to the first byte sent with them ([`crate::files::Pipe::attached`]),
//! and the recvmsg that reads that byte installs new fds for them and
//! writes a cmsg. A read that does not ask for them (read, recv, a too
//! small control buffer) closes them, as Linux does.

use super::errno::*;
use crate::files::{Fd, OpenFile, Shared};
use crate::Vproc;

/// SOL_SOCKET.
const SOL_SOCKET: u32 = 1;
/// SCM_RIGHTS.
const SCM_RIGHTS: u32 = 1;
/// SCM_CREDENTIALS.
const SCM_CREDENTIALS: u32 = 2;
/// sizeof(struct cmsghdr): len (8), level (4), type (4).
const CMSG_HDR: usize = 16;
/// Linux's SCM_MAX_FD: the most fds one message carries.
const SCM_MAX_FD: usize = 253;
/// MSG_CTRUNC.
const MSG_CTRUNC: u32 = 0x8;

/// The open files one message carries.
pub(super) struct Rights(pub(super) Vec<Shared<OpenFile>>);

/// CMSG_ALIGN.
fn align(n: usize) -> usize {
    (n + 7) & !7
}

impl Vproc {
    /// The files sendmsg's control data (`control`, `len` bytes) passes.
    /// EINVAL for a malformed message or an unknown SOL_SOCKET one, EBADF
    /// for an fd not open; SCM_CREDENTIALS is accepted and not passed on,
    /// other levels are skipped.
    pub(super) fn scm_parse(
        &mut self,
        control: u64,
        len: u64,
    ) -> Result<Vec<Shared<OpenFile>>, i64> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let len = usize::try_from(len).map_err(|_| EINVAL)?;
        if len > 1 << 16 {
            return Err(ENOBUFS);
        }
        let b = self.mm.read_vec(control, len)?;
        let mut files = Vec::new();
        let mut at = 0;
        while at + CMSG_HDR <= b.len() {
            let clen = u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
            let level = u32::from_le_bytes(b[at + 8..at + 12].try_into().expect("4 bytes"));
            let ty = u32::from_le_bytes(b[at + 12..at + 16].try_into().expect("4 bytes"));
            let clen = usize::try_from(clen).map_err(|_| EINVAL)?;
            if clen < CMSG_HDR || at + clen > b.len() {
                return Err(EINVAL);
            }
            match (level, ty) {
                (SOL_SOCKET, SCM_RIGHTS) => {
                    let data = &b[at + CMSG_HDR..at + clen];
                    if data.len() % 4 != 0 || files.len() + data.len() / 4 > SCM_MAX_FD {
                        return Err(EINVAL);
                    }
                    for c in data.chunks(4) {
                        let fd = i32::from_le_bytes(c.try_into().expect("4 bytes"));
                        files.push(self.fds.get(i64::from(fd))?.file.clone());
                    }
                }
                (SOL_SOCKET, SCM_CREDENTIALS) => {}
                (SOL_SOCKET, _) => return Err(EINVAL),
                // Other levels' messages are not the socket layer's:
                // Linux skips them.
                _ => {}
            }
            at += align(clen);
        }
        Ok(files)
    }

    /// Deliver what came with the bytes recvmsg read: install an fd for
    /// each file that fits the control buffer (`control`, `room` bytes)
    /// and write its cmsg. Returns msg_controllen and msg_flags
    /// (MSG_CTRUNC when files did not fit: those are closed).
    pub(super) fn scm_deliver(
        &mut self,
        control: u64,
        room: u64,
        got: super::stream::Attached,
        cloexec: bool,
    ) -> Result<(u64, u32), i64> {
        let files: Vec<Shared<OpenFile>> = got
            .into_iter()
            .filter_map(|a| a.downcast::<Rights>().ok())
            .flat_map(|r| r.0)
            .collect();
        if files.is_empty() {
            return Ok((0, 0));
        }
        let room = usize::try_from(room).unwrap_or(usize::MAX);
        let fit = room.saturating_sub(CMSG_HDR) / 4;
        let n = files.len().min(fit);
        let mut flags = if n < files.len() { MSG_CTRUNC } else { 0 };
        if n == 0 {
            return Ok((0, flags));
        }
        let mut fds = Vec::with_capacity(n);
        for file in files.into_iter().take(n) {
            match self.fds.install(Fd { file, cloexec }, 0) {
                Ok(fd) => fds.push(fd),
                // No fd left (RLIMIT_NOFILE): the rest are lost, as on
                // Linux (MSG_CTRUNC).
                Err(_) => {
                    flags |= MSG_CTRUNC;
                    break;
                }
            }
        }
        let clen = CMSG_HDR + 4 * fds.len();
        let mut b = Vec::with_capacity(clen);
        b.extend_from_slice(&(clen as u64).to_le_bytes());
        b.extend_from_slice(&SOL_SOCKET.to_le_bytes());
        b.extend_from_slice(&SCM_RIGHTS.to_le_bytes());
        for fd in &fds {
            b.extend_from_slice(&i32::try_from(*fd).unwrap_or(-1).to_le_bytes());
        }
        if let Err(e) = self.mm.write(control, &b) {
            for fd in fds {
                let _ = self.fds.close(fd);
            }
            return Err(e.into());
        }
        Ok((clen as u64, flags))
    }
}
