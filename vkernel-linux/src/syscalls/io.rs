//! Calls that move bytes through file descriptors: read/write and their
//! vector and positional forms, sendfile, pipes, dup, fcntl, ioctl, close;
//! poll and select (whose handlers wait, in [`super::events`]).
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::errno::*;
use super::table::Handler;
use super::{int, R};
use crate::files::{self, Fd, FileKind, OpenFile, Pipe, Shared};
use crate::fs::Kind;
use crate::signal::{self, SigInfo};
use crate::Vproc;

impl Vproc {
    /// The file-descriptor calls: `(number, handler)` for the
    /// syscall table ([`super::table`]).
    pub(super) const IO_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_read, |v, _nr, a| {
            v.sys_read(int(a[0]), a[1], a[2] as usize, None)
        }),
        (libc::SYS_pread64, |v, _nr, a| {
            v.sys_read(int(a[0]), a[1], a[2] as usize, Some(a[3]))
        }),
        (libc::SYS_readv, |v, _nr, a| {
            v.sys_readv(int(a[0]), a[1], a[2], None)
        }),
        (libc::SYS_write, |v, _nr, a| {
            v.sys_write(int(a[0]), a[1], a[2] as usize)
        }),
        (libc::SYS_writev, |v, _nr, a| {
            v.sys_writev(int(a[0]), a[1], a[2], None)
        }),
        (libc::SYS_pwrite64, |v, _nr, a| {
            v.sys_pwrite(int(a[0]), a[1], a[2] as usize, a[3] as i64)
        }),
        (libc::SYS_sendfile, |v, _nr, a| {
            v.sys_sendfile(int(a[0]), int(a[1]), a[2], a[3] as usize)
        }),
        (libc::SYS_close, |v, _nr, a| {
            v.close_fd(int(a[0])).map(|_| 0)
        }),
        (libc::SYS_pipe, |v, _nr, a| v.sys_pipe2(a[0], 0)),
        (libc::SYS_pipe2, |v, _nr, a| v.sys_pipe2(a[0], a[1] as u32)),
        (libc::SYS_dup, |v, _nr, a| v.sys_dup(int(a[0]), 0, false)),
        (libc::SYS_dup2, |v, _nr, a| {
            v.sys_dup3(int(a[0]), int(a[1]), 0, true)
        }),
        (libc::SYS_dup3, |v, _nr, a| {
            v.sys_dup3(int(a[0]), int(a[1]), a[2] as u32, false)
        }),
        (libc::SYS_close_range, |v, _nr, a| {
            v.sys_close_range(a[0], a[1], a[2] as u32)
        }),
        (libc::SYS_copy_file_range, |v, _nr, a| {
            v.sys_copy_file_range(a)
        }),
        (libc::SYS_fcntl, |v, _nr, a| {
            v.sys_fcntl(int(a[0]), a[1] as u32, a[2])
        }),
        (libc::SYS_ioctl, |v, _nr, a| {
            v.sys_ioctl(int(a[0]), a[1] as u32, a[2])
        }),
        (libc::SYS_poll, |v, _nr, a| {
            v.sys_poll_ms(a[0], a[1], a[2] as i32)
        }),
        (libc::SYS_ppoll, |v, _nr, a| v.sys_ppoll(a)),
        (libc::SYS_select, |v, _nr, a| v.sys_select(a)),
        (libc::SYS_pselect6, |v, _nr, a| v.sys_pselect6(a)),
    ];

    /// Linux's access_ok: the whole buffer below the top of user space.
    fn user_range_ok(buf: u64, len: usize) -> bool {
        buf.checked_add(len as u64)
            .is_some_and(|e| e <= crate::mm::USER_END)
    }

    /// Checks of read/write before the buffer is touched: the fd is open
    /// for that direction (EBADF), the buffer is below the top of user
    /// space (EFAULT). Returns whether the fd is /dev/null or /dev/zero.
    fn rw_check(&self, fd: i64, buf: u64, len: usize, write: bool) -> Result<Option<u32>, i64> {
        let file = self.fds.get(fd)?.file.clone();
        let f = file.borrow();
        let mode = f.flags & files::O_ACCMODE;
        let bad = f.flags & files::O_PATH != 0
            || if write {
                mode == 0 && !matches!(f.kind, FileKind::Stdin)
            } else {
                mode == files::O_WRONLY
            };
        if bad {
            return Err(EBADF);
        }
        if !Self::user_range_ok(buf, len) {
            return Err(EFAULT);
        }
        Ok(match &f.kind {
            FileKind::Inode(ino) => match self.fs.inode(*ino).kind {
                Kind::CharDev(d) => Some(d),
                _ => None,
            },
            _ => None,
        })
    }

    fn sys_write(&mut self, fd: i64, buf: u64, len: usize) -> R {
        if self.rw_check(fd, buf, len, true)?.is_some() {
            // /dev/null and /dev/zero never look at the buffer.
            return Ok(len as i64);
        }
        let len = len.min(1 << 24);
        // Write the readable head of the buffer; EFAULT only if there is
        // none.
        let mut data = vec![0u8; len];
        let n = self.mm.read_partial(buf, &mut data);
        if n == 0 && len > 0 {
            return Err(EFAULT);
        }
        data.truncate(n);
        self.write_fd(fd, &data)
    }

    /// Write to the host behind fd 1 or 2. A host pipe without readers
    /// (`vk run ... | head -1`) is a readerless pipe for the vproc too:
    /// EPIPE and SIGPIPE, as Linux gives a native process.
    fn write_host(&mut self, fd: i32, data: &[u8]) -> R {
        match self.stdio.write(fd, data) {
            Ok(n) => Ok(n as i64),
            Err(EPIPE) => {
                self.queue_signal(SigInfo {
                    signo: signal::SIGPIPE,
                    pid: self.pid,
                    ..Default::default()
                });
                Err(EPIPE)
            }
            Err(e) => Err(e),
        }
    }

    fn write_fd(&mut self, fd: i64, data: &[u8]) -> R {
        self.write_fd_as(fd, data, false)
    }

    /// pwrite64: write at `off`, the file offset untouched.
    fn sys_pwrite(&mut self, fd: i64, buf: u64, len: usize, off: i64) -> R {
        if self.rw_check(fd, buf, len, true)?.is_some() {
            return Ok(len as i64);
        }
        if off < 0 {
            return Err(EINVAL);
        }
        let file = self.fds.get(fd)?.file.clone();
        let kind = match &file.borrow().kind {
            FileKind::Inode(h) => Ok(*h),
            FileKind::ProcMem(m) => Err(m.clone()),
            _ => return Err(ESPIPE),
        };
        let len = len.min(1 << 24);
        let mut data = vec![0u8; len];
        let n = self.mm.read_partial(buf, &mut data);
        if n == 0 && len > 0 {
            return Err(EFAULT);
        }
        let w = match kind {
            Ok(h) => self.fs.write(h, Some(off as u64), &data[..n])?.0,
            Err(m) => self.mem_io(&m, off as u64, &mut data[..n], true)?,
        };
        Ok(w as i64)
    }

    /// write to an open file of the tree at its offset (at the end with
    /// O_APPEND), moving the offset.
    fn write_node(&mut self, f: &mut OpenFile, h: u64, data: &[u8]) -> R {
        if self.is_dir(h) {
            return Err(EISDIR);
        }
        let at = if f.flags & files::O_APPEND != 0 {
            None
        } else {
            Some(f.pos)
        };
        let (w, end) = self.fs.write(h, at, data)?;
        f.pos = end;
        Ok(w as i64)
    }

    /// write to `fd`; `nowait`: as with O_NONBLOCK (sendfile).
    fn write_fd_as(&mut self, fd: i64, data: &[u8], nowait: bool) -> R {
        let file = self.fds.get(fd)?.file.clone();
        let mut f = file.borrow();
        if f.flags & files::O_ACCMODE == 0 && !matches!(f.kind, FileKind::Stdin) {
            return Err(EBADF);
        }
        if let FileKind::Inode(h) = f.kind {
            return self.write_node(&mut f, h, data);
        }
        match &f.kind {
            FileKind::ProcMem(m) => {
                let (m, at) = (m.clone(), f.pos);
                drop(f);
                let n = self.mem_io(&m, at, &mut data.to_vec(), true)?;
                file.borrow_mut().pos = at.wrapping_add(n as u64);
                Ok(n as i64)
            }
            FileKind::MsgQueue(_) => Err(EINVAL),
            FileKind::Pty(e) => {
                let nonblock = f.flags & files::O_NONBLOCK != 0 || nowait;
                let e = e.clone();
                drop(f);
                self.pty_write(&e, nonblock, data)
            }
            FileKind::Stdout | FileKind::Stdin => self.write_host(1, data),
            FileKind::Stderr => self.write_host(2, data),
            FileKind::PipeWrite(p) => {
                let nonblock = f.flags & files::O_NONBLOCK != 0 || nowait;
                let p = p.clone();
                drop(f);
                self.pipe_send(&p, nonblock, data, true)
            }
            FileKind::Socket(sk) if sk.ty != files::SockType::Stream => {
                drop(f);
                let flags = if nowait {
                    crate::abi::socket::MSG_DONTWAIT
                } else {
                    0
                };
                self.sock_send(fd, data, flags, None, Default::default())
            }
            FileKind::Socket(sk) => {
                let nonblock = f.flags & files::O_NONBLOCK != 0 || nowait;
                let Some(st) = sk.stream() else {
                    return Err(ENOTCONN);
                };
                let (p, shut) = (st.tx.clone(), st.shut_wr);
                drop(f);
                if shut {
                    return self.broken_pipe(0, true);
                }
                if let Some(r) = self.tcp_send_into_void(fd, data.len()) {
                    return r;
                }
                self.pipe_send(&p, nonblock, data, true)
            }
            FileKind::EventFd(e) => {
                let nonblock = f.flags & files::O_NONBLOCK != 0 || nowait;
                let e = e.clone();
                drop(f);
                self.eventfd_write(&e, nonblock, data)
            }
            FileKind::Epoll(_)
            | FileKind::TimerFd(_)
            | FileKind::SignalFd(_)
            | FileKind::PidFd(_)
            | FileKind::Inotify(_) => Err(EINVAL),
            FileKind::Inode(_) | FileKind::PipeRead(_) => Err(EBADF),
        }
    }

    fn sys_read(&mut self, fd: i64, buf: u64, len: usize, at: Option<u64>) -> R {
        let dev = self.rw_check(fd, buf, len, false)?;
        let len = len.min(1 << 24);
        // Read only what fits in the writable head of the buffer (nothing
        // is consumed that cannot be delivered); EFAULT only if none does.
        let fits = self.mm.accessible_len(buf, len, true);
        if fits == 0 && len > 0 {
            return match dev {
                Some(d) if d & 0xff == 3 => Ok(0), // /dev/null: EOF
                _ => Err(EFAULT),
            };
        }
        let mut data = vec![0u8; fits];
        let n = self.read_fd(fd, &mut data, at)?;
        self.mm.write(buf, &data[..n])?;
        Ok(n as i64)
    }

    pub(super) fn read_fd(
        &mut self,
        fd: i64,
        data: &mut [u8],
        at: Option<u64>,
    ) -> Result<usize, i64> {
        let file = self.fds.get(fd)?.file.clone();
        let mut f = file.borrow_mut();
        if f.flags & files::O_ACCMODE == files::O_WRONLY {
            return Err(EBADF);
        }
        match &f.kind {
            // Reading fd 1/2 of a terminal reads the terminal.
            FileKind::Stdin | FileKind::Stdout | FileKind::Stderr => {
                if at.is_some() {
                    return Err(ESPIPE);
                }
                if let Some(k) = self.k.clone() {
                    // Wait in the process table, not on the vCPU thread.
                    if !data.is_empty() && !self.stdio.readable(Some((self.pid, k))) {
                        if f.flags & files::O_NONBLOCK != 0 {
                            return Err(EAGAIN);
                        }
                        drop(f);
                        return self.block().map(|_| 0);
                    }
                }
                self.stdio.read(data)
            }
            FileKind::PipeRead(p) => {
                if at.is_some() {
                    return Err(ESPIPE);
                }
                let nonblock = f.flags & files::O_NONBLOCK != 0;
                let p = p.clone();
                drop(f);
                self.pipe_recv(&p, nonblock, data)
            }
            FileKind::ProcMem(m) => {
                let (m, pos) = (m.clone(), at.unwrap_or(f.pos));
                drop(f);
                let n = self.mem_io(&m, pos, data, false)?;
                if at.is_none() {
                    file.borrow_mut().pos = pos.wrapping_add(n as u64);
                }
                Ok(n)
            }
            FileKind::MsgQueue(q) => {
                // Linux's status line, read like a small file.
                let s = q.borrow().status().into_bytes();
                let pos = at.unwrap_or(f.pos).min(s.len() as u64) as usize;
                let n = data.len().min(s.len() - pos);
                data[..n].copy_from_slice(&s[pos..pos + n]);
                if at.is_none() {
                    f.pos += n as u64;
                }
                Ok(n)
            }
            FileKind::Pty(e) => {
                if at.is_some() {
                    return Err(ESPIPE);
                }
                let nonblock = f.flags & files::O_NONBLOCK != 0;
                let e = e.clone();
                drop(f);
                self.pty_read(&e, nonblock, data).map(|n| n as usize)
            }
            FileKind::Socket(sk) if sk.ty != files::SockType::Stream => {
                if at.is_some() {
                    return Err(ESPIPE);
                }
                drop(f);
                let m = self.msg_recv(fd, 0)?.msg;
                let n = m.data.len().min(data.len());
                data[..n].copy_from_slice(&m.data[..n]);
                Ok(n)
            }
            FileKind::Socket(sk) => {
                if at.is_some() {
                    return Err(ESPIPE);
                }
                let nonblock = f.flags & files::O_NONBLOCK != 0;
                let Some(st) = sk.stream() else {
                    return Err(ENOTCONN);
                };
                let (p, shut) = (st.rx.clone(), st.shut_rd);
                drop(f);
                if shut {
                    return Ok(0);
                }
                self.pipe_recv(&p, nonblock, data)
            }
            FileKind::EventFd(e) => {
                if at.is_some() {
                    return Err(ESPIPE);
                }
                let nonblock = f.flags & files::O_NONBLOCK != 0;
                let e = e.clone();
                drop(f);
                self.eventfd_read(&e, nonblock, data)
            }
            FileKind::TimerFd(t) => {
                if at.is_some() {
                    return Err(ESPIPE);
                }
                let nonblock = f.flags & files::O_NONBLOCK != 0;
                let t = t.clone();
                drop(f);
                self.timerfd_read(&t, nonblock, data)
            }
            FileKind::PidFd(_) => Err(EINVAL),
            FileKind::Inotify(i) => {
                if at.is_some() {
                    return Err(ESPIPE);
                }
                let nonblock = f.flags & files::O_NONBLOCK != 0;
                let i = i.clone();
                drop(f);
                self.inotify_read(&i, nonblock, data)
            }
            FileKind::SignalFd(sf) => {
                if at.is_some() {
                    return Err(ESPIPE);
                }
                let nonblock = f.flags & files::O_NONBLOCK != 0;
                let mask = sf.borrow().mask;
                drop(f);
                self.signalfd_read(mask, nonblock, data)
            }
            FileKind::Epoll(_) => Err(EINVAL),
            FileKind::PipeWrite(_) => Err(EBADF),
            FileKind::Inode(ino) => {
                let ino = *ino;
                if self.is_dir(ino) {
                    return Err(EISDIR);
                }
                let pos = at.unwrap_or(f.pos);
                let n = self.fs.read(ino, pos, data)?;
                if at.is_none() {
                    f.pos += n as u64;
                }
                if n > 0 && f.note.is_some() {
                    drop(f);
                    self.fs.note_node(ino, crate::fs::notify::IN_ACCESS, false);
                }
                Ok(n)
            }
        }
    }

    pub(super) fn sys_sendfile(&mut self, out: i64, inp: i64, off: u64, count: usize) -> R {
        let ofile = self.fds.get(out)?.file.clone();
        let ifile = self.fds.get(inp)?.file.clone();
        // Both ends are checked before anything moves.
        {
            // One at a time: out and in may be the same open file.
            let of = ofile.borrow();
            if of.flags & files::O_ACCMODE == 0 && !matches!(of.kind, FileKind::Stdin) {
                return Err(EBADF);
            }
            drop(of);
            let inf = ifile.borrow();
            if inf.flags & files::O_ACCMODE == files::O_WRONLY {
                return Err(EBADF);
            }
            if matches!(inf.kind, FileKind::Inode(ino) if self.is_dir(ino)) {
                return Err(EINVAL);
            }
        }
        let pos = if off != 0 {
            let p = self.mm.read_u64(off)?;
            if (p as i64) < 0 {
                return Err(EINVAL);
            }
            Some(p)
        } else {
            None
        };
        if count == 0 {
            return Ok(0);
        }
        // Read no more than the output takes now, so nothing read is lost.
        let of = ofile.borrow();
        let limit = match (&of.kind, self.k.clone()) {
            (FileKind::PipeWrite(p), Some(k)) => {
                let mut p = p.borrow_mut();
                let room = p.capacity.saturating_sub(p.buf.len());
                if p.readers > 0 && room == 0 {
                    if of.flags & files::O_NONBLOCK != 0 {
                        return Err(EAGAIN);
                    }
                    p.wait(self.pid, k);
                    drop(p);
                    drop(of);
                    return self.block();
                }
                room.max(1)
            }
            _ => 1 << 20,
        };
        drop(of);
        let mut data = vec![0u8; count.min(limit).min(1 << 20)];
        let n = self.read_fd(inp, &mut data, pos)?;
        if n == 0 {
            return Ok(0);
        }
        // A pipe written by another vproc meanwhile may take less: what it
        // does not take goes back where it came from.
        let w = match self.write_fd_as(out, &data[..n], true) {
            Ok(w) => w as usize,
            Err(EAGAIN) if ofile.borrow().flags & files::O_NONBLOCK == 0 => {
                // Not even part of it fits now: undo the read, then wait.
                self.unread(&ifile, pos, &data[..n]);
                let Some(k) = self.k.clone() else {
                    return Err(EAGAIN);
                };
                if let FileKind::PipeWrite(p) = &ofile.borrow().kind {
                    p.borrow_mut().wait(self.pid, k);
                }
                return self.block();
            }
            Err(e) => {
                self.unread(&ifile, pos, &data[..n]);
                return Err(e);
            }
        };
        if w < n {
            self.unread(&ifile, pos, &data[w..n]);
        }
        if let Some(p) = pos {
            self.mm.write_u64(off, p + w as u64)?;
        }
        Ok(w as i64)
    }

    /// Give back bytes read from `file` that could not be written on
    /// (sendfile): the offset goes back, or a pipe gets them back in front.
    fn unread(&mut self, file: &Shared<OpenFile>, pos: Option<u64>, back: &[u8]) {
        let mut f = file.borrow_mut();
        match &f.kind {
            FileKind::PipeRead(p)
            | FileKind::Socket(files::Socket {
                state: files::SockState::Connected(files::UnixStream { rx: p, .. }),
                ..
            }) => {
                let mut p = p.borrow_mut();
                for &b in back.iter().rev() {
                    p.buf.push_front(b);
                }
            }
            FileKind::Inode(_) if pos.is_none() => {
                f.pos = f.pos.saturating_sub(back.len() as u64);
            }
            _ => {}
        }
    }

    pub(super) fn iovecs(&mut self, iov: u64, cnt: u64) -> Result<Vec<(u64, usize)>, i64> {
        if cnt > 1024 {
            return Err(EINVAL);
        }
        let raw = self.mm.read_vec(iov, 16 * cnt as usize)?;
        Ok(raw
            .chunks(16)
            .map(|c| {
                (
                    u64::from_le_bytes(c[..8].try_into().expect("8")),
                    u64::from_le_bytes(c[8..].try_into().expect("8")) as usize,
                )
            })
            .collect())
    }

    /// writev (`at` None) and pwritev (the file's bytes from `at`).
    pub(super) fn sys_writev(&mut self, fd: i64, iov: u64, cnt: u64, at: Option<u64>) -> R {
        if at.is_some() {
            self.rw_check(fd, 0, 0, true)?;
        }
        let v = self.iovecs(iov, cnt)?;
        if v.iter().any(|&(b, l)| !Self::user_range_ok(b, l)) {
            return Err(EFAULT);
        }
        let mut all = Vec::new();
        let mut want = 0usize;
        for (b, l) in v {
            let l = l.min((1 << 24) - all.len().min(1 << 24));
            want += l;
            let mut seg = vec![0u8; l];
            let n = self.mm.read_partial(b, &mut seg);
            all.extend_from_slice(&seg[..n]);
            if n < l {
                // Stop at the first byte that cannot be read.
                break;
            }
        }
        if all.is_empty() && want > 0 {
            return Err(EFAULT);
        }
        match at {
            None => self.write_fd(fd, &all),
            Some(off) => {
                let file = self.fds.get(fd)?.file.clone();
                let FileKind::Inode(h) = file.borrow().kind else {
                    return Err(ESPIPE);
                };
                let (w, _) = self.fs.write(h, Some(off), &all)?;
                Ok(w as i64)
            }
        }
    }

    /// readv (`at` None) and preadv (the file's bytes from `at`).
    pub(super) fn sys_readv(&mut self, fd: i64, iov: u64, cnt: u64, at: Option<u64>) -> R {
        let v = self.iovecs(iov, cnt)?;
        if v.iter().any(|&(b, l)| !Self::user_range_ok(b, l)) {
            return Err(EFAULT);
        }
        // Read only what fits up to the first byte that cannot be written.
        let mut total = 0usize;
        let mut want = 0usize;
        for &(b, l) in &v {
            let l = l.min((1 << 24) - total);
            want += l;
            let fits = self.mm.accessible_len(b, l, true);
            total += fits;
            if fits < l {
                break;
            }
        }
        if total == 0 && want > 0 {
            return Err(EFAULT);
        }
        let mut data = vec![0u8; total];
        let n = self.read_fd(fd, &mut data, at)?;
        let mut off = 0;
        for (b, l) in v {
            if off >= n {
                break;
            }
            let k = l.min(n - off);
            self.mm.write(b, &data[off..off + k])?;
            off += k;
        }
        Ok(n as i64)
    }

    fn sys_dup(&mut self, fd: i64, min: usize, cloexec: bool) -> R {
        let f = self.fds.get(fd)?.file.clone();
        Ok(self.fds.install(Fd { file: f, cloexec }, min)?)
    }

    fn sys_dup3(&mut self, old: i64, new: i64, flags: u32, dup2: bool) -> R {
        let f = self.fds.get(old)?.file.clone();
        if old == new {
            return if dup2 { Ok(new) } else { Err(EINVAL) };
        }
        let replaced = self.fds.get(new).ok().map(|s| s.file.clone());
        let r = self.fds.install_at(
            Fd {
                file: f,
                cloexec: flags & files::O_CLOEXEC != 0,
            },
            new,
        )?;
        if let Some(old) = replaced {
            // The fd replaced was closed: POSIX locks go with it.
            self.locks_fd_closed(&old);
        }
        Ok(r)
    }

    /// close_range: close fds `first..=last`, or mark them close-on-exec
    /// (CLOSE_RANGE_CLOEXEC); CLOSE_RANGE_UNSHARE changes nothing here.
    fn sys_close_range(&mut self, first: u64, last: u64, flags: u32) -> R {
        if flags & !6 != 0 || first > last {
            return Err(EINVAL);
        }
        let open: Vec<i64> = self
            .fds
            .iter()
            .map(|(i, _)| i as i64)
            .filter(|&i| i as u64 >= first && i as u64 <= last)
            .collect();
        for fd in open {
            if flags & 4 != 0 {
                self.fds.get_mut(fd)?.cloexec = true;
            } else {
                self.close_fd(fd)?;
            }
        }
        Ok(0)
    }

    /// copy_file_range between two regular files of the tree (up to 1 MiB
    /// a call); EXDEV for anything else, so that callers fall back to
    /// read and write.
    fn sys_copy_file_range(&mut self, a: [u64; 6]) -> R {
        let (fin, pin, fout, pout) = (int(a[0]), a[1], int(a[2]), a[3]);
        let (len, flags) = (a[4] as usize, a[5]);
        if flags != 0 {
            return Err(EINVAL);
        }
        let (i, o) = (
            self.fds.get(fin)?.file.clone(),
            self.fds.get(fout)?.file.clone(),
        );
        let node = |f: &Shared<OpenFile>, write: bool| -> Result<u64, i64> {
            let f = f.borrow();
            let acc = f.flags & files::O_ACCMODE;
            if f.flags & files::O_PATH != 0
                || (write && acc == 0)
                || (!write && acc == files::O_WRONLY)
                || (write && f.flags & files::O_APPEND != 0)
            {
                return Err(EBADF);
            }
            match f.kind {
                FileKind::Inode(h) => Ok(h),
                _ => Err(EXDEV),
            }
        };
        let (hin, hout) = (node(&i, false)?, node(&o, true)?);
        if self.is_dir(hin) || self.is_dir(hout) {
            return Err(EISDIR);
        }
        let read_off = |vp: &mut Vproc, p: u64, f: &Shared<OpenFile>| -> Result<u64, i64> {
            if p == 0 {
                return Ok(f.borrow().pos);
            }
            let v = vp.mm.read_u64(p)?;
            if (v as i64) < 0 {
                return Err(EINVAL);
            }
            Ok(v)
        };
        let (at_in, at_out) = (read_off(self, pin, &i)?, read_off(self, pout, &o)?);
        let mut data = vec![0u8; len.min(1 << 20)];
        let n = self.fs.read(hin, at_in, &mut data)?;
        if n == 0 {
            return Ok(0);
        }
        let (w, _) = self.fs.write(hout, Some(at_out), &data[..n])?;
        for (p, f, at) in [(pin, &i, at_in), (pout, &o, at_out)] {
            if p == 0 {
                f.borrow_mut().pos = at + w as u64;
            } else {
                self.mm.write_u64(p, at + w as u64)?;
            }
        }
        Ok(w as i64)
    }

    fn sys_pipe2(&mut self, fds: u64, flags: u32) -> R {
        let p = Shared::new(Pipe::default());
        let cloexec = flags & files::O_CLOEXEC != 0;
        let st = flags & files::O_NONBLOCK;
        let r = OpenFile::new(FileKind::PipeRead(p.clone()), st, b"pipe:");
        let w = OpenFile::new(FileKind::PipeWrite(p), st | files::O_WRONLY, b"pipe:");
        self.install_pair(r, w, cloexec, fds)
    }

    /// Install `a` and `b` as two new fds and write their numbers (two
    /// ints) at `out`; on any failure neither stays open.
    pub(super) fn install_pair(
        &mut self,
        a: Shared<OpenFile>,
        b: Shared<OpenFile>,
        cloexec: bool,
        out: u64,
    ) -> R {
        let fa = self.fds.install(Fd { file: a, cloexec }, 0)?;
        let fb = match self.fds.install(Fd { file: b, cloexec }, 0) {
            Ok(f) => f,
            Err(e) => {
                let _ = self.fds.close(fa);
                return Err(e.into());
            }
        };
        // fds are below RLIMIT_NOFILE, far below i32::MAX.
        let num = |fd: i64| i32::try_from(fd).unwrap_or(i32::MAX).to_le_bytes();
        let mut v = [0u8; 8];
        v[..4].copy_from_slice(&num(fa));
        v[4..].copy_from_slice(&num(fb));
        if let Err(e) = self.mm.write(out, &v) {
            let _ = self.fds.close(fa);
            let _ = self.fds.close(fb);
            return Err(e.into());
        }
        Ok(0)
    }

    fn sys_fcntl(&mut self, fd: i64, cmd: u32, arg: u64) -> R {
        match cmd {
            0 | 1030 => {
                // F_DUPFD, F_DUPFD_CLOEXEC: a minimum at or above the soft
                // RLIMIT_NOFILE is EINVAL (f_dupfd).
                self.fds.get(fd)?;
                if arg >= self.fds.limits.nofile() as u64 {
                    return Err(EINVAL);
                }
                self.sys_dup(fd, arg as usize, cmd == 1030)
            }
            1 => Ok(self.fds.get(fd)?.cloexec as i64),
            2 => {
                self.fds.get_mut(fd)?.cloexec = arg & 1 != 0;
                Ok(0)
            }
            3 => Ok(self.fds.get(fd)?.file.borrow().flags as i64),
            4 => {
                let f = self.fds.get(fd)?.file.clone();
                let mut f = f.borrow_mut();
                if f.flags & files::O_PATH != 0 {
                    return Err(EBADF);
                }
                // Only O_APPEND and O_NONBLOCK change; the rest stays.
                let set = files::O_APPEND | files::O_NONBLOCK;
                f.flags = (f.flags & !set) | (arg as u32 & set);
                Ok(0)
            }
            // F_SETPIPE_SZ, F_GETPIPE_SZ.
            1031 | 1032 => self.pipe_size(fd, cmd == 1031, arg),
            // F_ADD_SEALS, F_GET_SEALS.
            1033 | 1034 => self.sys_seals(fd, cmd == 1033, arg),
            5..=7 | 36..=38 => self.sys_fcntl_lock(fd, cmd, arg),
            _ => Err(EINVAL),
        }
    }

    /// F_GETPIPE_SZ / F_SETPIPE_SZ on either end of a pipe (EBADF on
    /// anything else, as Linux's get_pipe_info).
    fn pipe_size(&mut self, fd: i64, set: bool, arg: u64) -> R {
        let file = self.fds.get(fd)?.file.clone();
        let f = file.borrow();
        let (FileKind::PipeRead(p) | FileKind::PipeWrite(p)) = &f.kind else {
            return Err(EBADF);
        };
        let mut p = p.borrow_mut();
        if !set {
            return Ok(p.capacity as i64);
        }
        // The argument is an unsigned int.
        let n = p.set_capacity(arg & 0xffff_ffff)?;
        let w = p.take_waiters();
        drop(p);
        drop(f);
        files::wake_all(w);
        Ok(n as i64)
    }
}
