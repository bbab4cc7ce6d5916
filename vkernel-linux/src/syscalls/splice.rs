//! splice, tee and vmsplice over the vkernel's pipes. Nothing is moved
//! by reference (pipes here hold bytes, not pages): splice copies between
//! a pipe and another file as sendfile does (a file offset read from and
//! written back to `off_in`/`off_out`), tee copies a pipe's bytes into
//! another pipe without consuming them, and vmsplice is writev into (or
//! readv from) a pipe.

use super::errno::*;
use super::int;
use super::table::Handler;
use super::R;
use crate::files::{self, FileKind, OpenFile, Pipe, Shared};
use crate::Vproc;

const SPLICE_F_NONBLOCK: u64 = 2;
const SPLICE_FLAGS: u64 = 0xf;

/// The pipe `file` is an end of (None: not a pipe).
fn pipe_of(file: &Shared<OpenFile>) -> Option<Shared<Pipe>> {
    match &file.borrow().kind {
        FileKind::PipeRead(p) | FileKind::PipeWrite(p) => Some(p.clone()),
        _ => None,
    }
}

impl Vproc {
    /// `(number, handler)` for the syscall table.
    pub(super) const SPLICE_CALLS: &'static [(i64, Handler)] = &[
        (libc::SYS_splice, |v, _nr, a| {
            v.sys_splice(int(a[0]), a[1], int(a[2]), a[3], a[4], a[5])
        }),
        (libc::SYS_tee, |v, _nr, a| {
            v.sys_tee(int(a[0]), int(a[1]), a[2], a[3])
        }),
        (libc::SYS_vmsplice, |v, _nr, a| {
            v.sys_vmsplice(int(a[0]), a[1], a[2], a[3])
        }),
    ];

    fn sys_splice(
        &mut self,
        fin: i64,
        off_in: u64,
        fout: i64,
        off_out: u64,
        len: u64,
        flags: u64,
    ) -> R {
        if flags & !SPLICE_FLAGS != 0 {
            return Err(EINVAL);
        }
        let (i, o) = (
            self.fds.get(fin)?.file.clone(),
            self.fds.get(fout)?.file.clone(),
        );
        let (pin, pout) = (pipe_of(&i), pipe_of(&o));
        if pin.is_none() && pout.is_none() {
            return Err(EINVAL);
        }
        if (pin.is_some() && off_in != 0) || (pout.is_some() && off_out != 0) {
            return Err(ESPIPE);
        }
        if o.borrow().flags & files::O_APPEND != 0 && pout.is_none() {
            return Err(EINVAL);
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len == 0 {
            return Ok(0);
        }
        if flags & SPLICE_F_NONBLOCK != 0 {
            if let Some(p) = &pin {
                let p = p.borrow();
                if p.buf.is_empty() && p.writers > 0 {
                    return Err(EAGAIN);
                }
            }
            if let Some(p) = &pout {
                let p = p.borrow();
                if p.readers > 0 && p.buf.len() >= p.capacity {
                    return Err(EAGAIN);
                }
            }
        }
        if off_out == 0 {
            // Into a pipe, a socket or a file at its offset: sendfile's
            // copy (off_in is its offset).
            return self.sys_sendfile(fout, fin, off_in, len);
        }
        // From a pipe into a file at *off_out.
        let h = {
            let of = o.borrow();
            match of.kind {
                FileKind::Inode(h) if of.flags & files::O_ACCMODE != 0 => h,
                FileKind::Inode(_) => return Err(EBADF),
                _ => return Err(EINVAL),
            }
        };
        let at = self.mm.read_u64(off_out)?;
        if (at as i64) < 0 {
            return Err(EINVAL);
        }
        let mut buf = vec![0u8; len.min(1 << 20)];
        let n = self.read_fd(fin, &mut buf, None)?;
        if n == 0 {
            return Ok(0);
        }
        let (w, _) = self.fs.write(h, Some(at), &buf[..n])?;
        self.mm.write_u64(off_out, at + w as u64)?;
        Ok(w as i64)
    }

    fn sys_tee(&mut self, fin: i64, fout: i64, len: u64, flags: u64) -> R {
        if flags & !SPLICE_FLAGS != 0 {
            return Err(EINVAL);
        }
        let (i, o) = (
            self.fds.get(fin)?.file.clone(),
            self.fds.get(fout)?.file.clone(),
        );
        let (Some(pin), Some(pout)) = (pipe_of(&i), pipe_of(&o)) else {
            return Err(EINVAL);
        };
        // One lock at a time: both may be the same open file.
        let reads = matches!(i.borrow().kind, FileKind::PipeRead(_));
        let writes = matches!(o.borrow().kind, FileKind::PipeWrite(_));
        if !reads || !writes {
            return Err(EBADF);
        }
        if pin.ptr_eq(&pout) {
            return Err(EINVAL);
        }
        let nonblock = flags & SPLICE_F_NONBLOCK != 0;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let data: Vec<u8> = {
            let p = pin.borrow_mut();
            if p.buf.is_empty() {
                if p.writers == 0 {
                    return Ok(0);
                }
                if nonblock {
                    return Err(EAGAIN);
                }
                let k = self.kernel()?;
                let mut p = p;
                p.wait(self.pid, k);
                drop(p);
                return self.block();
            }
            p.buf.iter().take(len).copied().collect()
        };
        let mut q = pout.borrow_mut();
        if q.readers == 0 {
            return Err(EPIPE);
        }
        let room = q.capacity.saturating_sub(q.buf.len());
        if room == 0 {
            if nonblock {
                return Err(EAGAIN);
            }
            let k = self.kernel()?;
            q.wait(self.pid, k);
            drop(q);
            return self.block();
        }
        let n = data.len().min(room);
        q.buf.extend(&data[..n]);
        let w = q.take_waiters();
        drop(q);
        files::wake_all(w);
        Ok(n as i64)
    }

    fn sys_vmsplice(&mut self, fd: i64, iov: u64, nr: u64, flags: u64) -> R {
        if flags & !SPLICE_FLAGS != 0 {
            return Err(EINVAL);
        }
        let file = self.fds.get(fd)?.file.clone();
        let write = match file.borrow().kind {
            FileKind::PipeWrite(_) => true,
            FileKind::PipeRead(_) => false,
            _ => return Err(EBADF),
        };
        if write {
            self.sys_writev(fd, iov, nr, None)
        } else {
            self.sys_readv(fd, iov, nr, None)
        }
    }
}
