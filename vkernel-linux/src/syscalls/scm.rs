//! SCM_RIGHTS and SCM_CREDENTIALS over AF_UNIX sockets. sendmsg's control
//! data names fds (and may state credentials); their open file
//! descriptions travel attached to the first byte sent with them
//! ([`crate::files::Pipe::attached`]) or to the message
//! ([`crate::files::Pipe::records`]), and the recvmsg that reads it
//! installs new fds for them and writes a cmsg. A read that does not ask
//! for them (read, recv, a too small control buffer) closes them, as Linux
//! does.
//!
//! Credentials: every message of a datagram or seqpacket socket carries
//! its sender's (pid, uid, gid), or those sendmsg stated; a stream carries
//! them when stated or when the sender set SO_PASSCRED. A receiver that
//! set SO_PASSCRED gets an SCM_CREDENTIALS cmsg (for a stream without
//! any, its peer's SO_PEERCRED). Vprocs are root, so any stated
//! credentials are allowed (as CAP_SYS_ADMIN and CAP_SETUID allow).

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

/// What one message carries besides its bytes.
#[derive(Default)]
pub(super) struct Passed {
    /// SCM_RIGHTS' open files.
    pub(super) files: Vec<Shared<OpenFile>>,
    /// The sender's credentials (pid, uid, gid), stated or its own.
    pub(super) cred: Option<[i32; 3]>,
}

impl Passed {
    /// Nothing worth attaching to a stream's bytes?
    pub(super) fn is_empty(&self) -> bool {
        self.files.is_empty() && self.cred.is_none()
    }
}

/// CMSG_ALIGN.
fn align(n: usize) -> usize {
    (n + 7) & !7
}

impl Vproc {
    /// What sendmsg's control data (`control`, `len` bytes) passes:
    /// files and stated credentials. EINVAL for a malformed message or an
    /// unknown SOL_SOCKET one, EBADF for an fd not open; other levels are
    /// skipped.
    pub(super) fn scm_parse(&mut self, control: u64, len: u64) -> Result<Passed, i64> {
        if len == 0 {
            return Ok(Passed::default());
        }
        let len = usize::try_from(len).map_err(|_| EINVAL)?;
        if len > 1 << 16 {
            return Err(ENOBUFS);
        }
        let b = self.mm.read_vec(control, len)?;
        let mut files = Vec::new();
        let mut cred = None;
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
                (SOL_SOCKET, SCM_CREDENTIALS) => {
                    let data = &b[at + CMSG_HDR..at + clen];
                    if data.len() != 12 {
                        return Err(EINVAL);
                    }
                    let v = |i: usize| i32::from_le_bytes(data[i..i + 4].try_into().expect("4"));
                    cred = Some([v(0), v(4), v(8)]);
                }
                (SOL_SOCKET, _) => return Err(EINVAL),
                // Other levels' messages are not the socket layer's:
                // Linux skips them.
                _ => {}
            }
            at += align(clen);
        }
        Ok(Passed { files, cred })
    }

    /// Deliver what came with the bytes recvmsg read: the credentials
    /// when `passcred` (the receiver's SO_PASSCRED; `fallback` when none
    /// came), then an fd for each file that fits the control buffer
    /// (`control`, `room` bytes), each as its cmsg. Returns
    /// msg_controllen and msg_flags (MSG_CTRUNC when something did not
    /// fit: files that did not are closed).
    pub(super) fn scm_deliver(
        &mut self,
        control: u64,
        room: u64,
        got: super::stream::Attached,
        passcred: Option<[i32; 3]>,
        cloexec: bool,
    ) -> Result<(u64, u32), i64> {
        let mut files = Vec::new();
        let mut cred = None;
        for p in got.into_iter().filter_map(|a| a.downcast::<Passed>().ok()) {
            files.extend(p.files);
            cred = cred.or(p.cred);
        }
        let room = usize::try_from(room).unwrap_or(usize::MAX);
        let mut b = Vec::new();
        let mut flags = 0;
        if let Some(fallback) = passcred {
            // struct ucred; no sender known: pid 0 and the overflow ids.
            let c = cred.unwrap_or(fallback);
            if room >= CMSG_HDR {
                // Linux's put_cmsg: a cmsg cut to the room is still
                // written, its length saying how much of it there is.
                let len = (CMSG_HDR + 12).min(room);
                b.extend_from_slice(&(len as u64).to_le_bytes());
                b.extend_from_slice(&SOL_SOCKET.to_le_bytes());
                b.extend_from_slice(&SCM_CREDENTIALS.to_le_bytes());
                for v in c {
                    b.extend_from_slice(&v.to_le_bytes());
                }
                b.truncate(len);
                if len < CMSG_HDR + 12 {
                    flags |= MSG_CTRUNC;
                }
                b.resize(align(b.len()), 0);
            } else {
                flags |= MSG_CTRUNC;
            }
        }
        if !files.is_empty() {
            let fit = room.saturating_sub(b.len() + CMSG_HDR) / 4;
            let n = files.len().min(fit);
            if n < files.len() {
                flags |= MSG_CTRUNC;
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
            if !fds.is_empty() {
                let clen = CMSG_HDR + 4 * fds.len();
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
                // msg_controllen counts each cmsg's CMSG_SPACE, cut to the
                // room (Linux's put_cmsg and scm_detach_fds).
                return Ok((align(b.len()).min(room) as u64, flags));
            }
        }
        if b.is_empty() {
            return Ok((0, flags));
        }
        self.mm.write(control, &b[..b.len().min(room)])?;
        Ok((b.len().min(room) as u64, flags))
    }
}
