//! ioctl(2): the requests every file takes (FIOCLEX, FIONBIO), the
//! interface requests of sockets, FIONREAD of queues, pseudo-terminals'
//! requests (`pty.rs`) and the console's terminal requests, passed to the
//! host's terminal.

use super::errno::*;
use super::R;
use crate::files::{self, FileKind};
use crate::Vproc;

impl Vproc {
    /// ioctl(fd, req, arg).
    pub(super) fn sys_ioctl(&mut self, fd: i64, req: u32, arg: u64) -> R {
        // The requests every kind of file takes.
        match req {
            0x5450 | 0x5451 => {
                // FIONCLEX, FIOCLEX.
                self.fds.get_mut(fd)?.cloexec = req == 0x5451;
                return Ok(0);
            }
            0x5421 => {
                // FIONBIO.
                let mut b = [0u8; 4];
                self.mm.read(arg, &mut b)?;
                let on = u32::from_le_bytes(b) != 0;
                let file = self.fds.get(fd)?.file.clone();
                let mut f = file.borrow_mut();
                if on {
                    f.flags |= files::O_NONBLOCK;
                } else {
                    f.flags &= !files::O_NONBLOCK;
                }
                return Ok(0);
            }
            _ => {}
        }
        let file = self.fds.get(fd)?.file.clone();
        if (0x8900..0x8a00).contains(&req) && matches!(file.borrow().kind, FileKind::Socket(_)) {
            return self.if_ioctl(req, arg);
        }
        if let FileKind::Pty(e) = &file.borrow().kind {
            let e = e.clone();
            return self.pty_ioctl(&e, req, arg);
        }
        let n = match file.borrow().kind {
            FileKind::Stdin => 0,
            FileKind::Stdout => 1,
            FileKind::Stderr => 2,
            FileKind::PipeRead(ref p)
            | FileKind::PipeWrite(ref p)
            | FileKind::Socket(files::Socket {
                state: files::SockState::Connected(files::UnixStream { rx: ref p, .. }),
                ..
            }) if req == 0x541B => {
                let len = u32::try_from(p.borrow().buf.len()).unwrap_or(u32::MAX);
                self.mm.write(arg, &len.to_le_bytes())?;
                return Ok(0);
            }
            FileKind::Inotify(ref i) if req == 0x541B => {
                let len = u32::try_from(i.borrow().queued_bytes()).unwrap_or(u32::MAX);
                self.mm.write(arg, &len.to_le_bytes())?;
                return Ok(0);
            }
            // A datagram socket: the length of the next message.
            FileKind::Socket(files::Socket {
                state: files::SockState::Dgram(ref d),
                ..
            }) if req == 0x541B => {
                let q = d.inbox.borrow();
                let len = q
                    .records
                    .as_ref()
                    .and_then(|r| r.front())
                    .map_or(0, |r| r.len);
                let len = u32::try_from(len).unwrap_or(u32::MAX);
                self.mm.write(arg, &len.to_le_bytes())?;
                return Ok(0);
            }
            _ => return Err(ENOTTY),
        };
        let Some(h) = self.stdio.host_fd(n) else {
            return Err(ENOTTY);
        };
        // SAFETY: isatty only inspects the fd.
        if unsafe { libc::isatty(h) } != 1 {
            return Err(ENOTTY);
        }
        let size = match req {
            0x5401..=0x5404 => 36, // TCGETS, TCSETS, TCSETSW, TCSETSF
            0x5413 | 0x5414 => 8,  // TIOCGWINSZ, TIOCSWINSZ
            0x540F => {
                // TIOCGPGRP: the vproc's own group owns the terminal.
                self.mm.write(arg, &self.pid.to_le_bytes())?;
                return Ok(0);
            }
            0x5410 => return Ok(0), // TIOCSPGRP
            0x541B => 4,            // FIONREAD
            _ => return Err(ENOTTY),
        };
        let get = matches!(req, 0x5401 | 0x5413 | 0x541B);
        let mut buf = [0u8; 64];
        if !get {
            self.mm.read(arg, &mut buf[..size])?;
        }
        // SAFETY: the request is one of the terminal ioctls above, whose
        // argument is a buffer of at most `size` (<= 64) bytes; `buf` is 64
        // bytes and lives across the call.
        let r = unsafe { libc::ioctl(h, req as libc::c_ulong, buf.as_mut_ptr()) };
        if r < 0 {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::ENOTTY) as i64);
        }
        if get {
            self.mm.write(arg, &buf[..size])?;
        }
        Ok(0)
    }
}
