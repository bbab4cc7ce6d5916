//! FIFOs (named pipes, fifo(7)) made with mkfifo or mknod in the overlay:
//! every open of the node connects to the node's one pipe
//! ([`crate::files::Pipe`]), so reads and writes are a pipe's.
//!
//! Opening follows fifo(7) and Linux's `fifo_open`: for reading without
//! O_NONBLOCK it waits until a writer opens (or is already there); with
//! O_NONBLOCK it succeeds at once. For writing it waits until a reader
//! opens; with O_NONBLOCK and no reader it fails with ENXIO. A vproc
//! waiting in open counts as present for the other side (Linux counts it
//! in `pipe->readers`/`writers` before it sleeps), so two blocking opens
//! of both sides meet. An open waits through the usual retry machinery
//! (`EBLOCK`): `CallState::progress` holds 1 + the other side's open count
//! seen first, and a later count means someone came (even if it left
//! again), as Linux's `wait_for_partner`. When the last end closes the
//! data goes (an open finding no ends and no waiting opener empties the
//! buffer). O_RDWR (which Linux allows without waiting) is not supported
//! here: ENXIO.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::errno::*;
use super::R;
use crate::files::{self, FileKind, OpenFile, Pipe, Shared};
use crate::Vproc;

/// Take the openers of `p` that `gone` says are gone out of its waiting
/// list, and out of its reader and writer counts; returns the vprocs to
/// wake when a side's count fell to 0 (readers then see EOF, writers
/// EPIPE).
fn drop_openers(
    p: &mut Pipe,
    gone: impl Fn(&(i32, bool, std::sync::Weak<std::sync::atomic::AtomicBool>)) -> bool,
) -> Vec<(i32, std::sync::Arc<dyn files::Wake>)> {
    let mut left = Vec::new();
    for e in std::mem::take(&mut p.opening) {
        if gone(&e) {
            if e.1 {
                p.readers -= 1;
            } else {
                p.writers -= 1;
            }
        } else {
            left.push(e);
        }
    }
    p.opening = left;
    if p.readers == 0 || p.writers == 0 {
        p.take_waiters()
    } else {
        Vec::new()
    }
}

impl Vproc {
    /// open() of a FIFO node with `pipe`; `keep` are the status flags the
    /// open file keeps, `path` its name.
    pub(super) fn open_fifo(
        &mut self,
        pipe: Shared<Pipe>,
        flags: u32,
        keep: u32,
        path: &[u8],
    ) -> R {
        let acc = flags & files::O_ACCMODE;
        if acc == files::O_RDWR {
            return Err(ENXIO);
        }
        let reader = acc == 0;
        let other = usize::from(reader);
        let me = 1 - other;
        let nonblock = flags & files::O_NONBLOCK != 0;
        let first = self.call.progress == 0;
        let pid = self.pid;
        let mut p = pipe.borrow_mut();
        // Openers that died while they waited no longer count.
        let mut wake = drop_openers(&mut p, |e| e.2.strong_count() == 0);
        // This vproc's own place while it waited (its count stays taken).
        let before = p.opening.len();
        p.opening.retain(|e| e.0 != pid);
        let was_waiting = p.opening.len() != before;
        if first {
            if p.readers == 0 && p.writers == 0 {
                // Nobody had it open: what was left in it is gone.
                p.buf.clear();
            }
            p.opened[me] += 1;
        }
        let present = if reader { p.writers } else { p.readers } > 0;
        let came = !first && p.opened[other] as usize + 1 != self.call.progress;
        if !reader && nonblock && !present {
            drop(p);
            files::wake_all(wake);
            return Err(ENXIO);
        }
        if reader && nonblock || present || came {
            drop(p);
            let kind = if reader {
                FileKind::PipeRead(pipe.clone())
            } else {
                FileKind::PipeWrite(pipe.clone())
            };
            let file = OpenFile::new(kind, keep, path);
            let mut p = pipe.borrow_mut();
            if was_waiting {
                // The open file holds the count the wait held.
                if reader {
                    p.readers -= 1;
                } else {
                    p.writers -= 1;
                }
            }
            // The other side's waiting openers (and readers) learn of us.
            wake.extend(p.take_waiters());
            drop(p);
            files::wake_all(wake);
            return self.install_file(file, flags);
        }
        let Some(k) = self.k.clone() else {
            // Not launched yet (see `Vproc::kernel`).
            drop(p);
            files::wake_all(wake);
            return Err(ENOSYS);
        };
        if first {
            self.call.progress = p.opened[other] as usize + 1;
        }
        if !was_waiting {
            // Counted from now on, as Linux counts a sleeping opener.
            if reader {
                p.readers += 1;
            } else {
                p.writers += 1;
            }
        }
        p.opening
            .push((pid, reader, std::sync::Arc::downgrade(&self.sig_flag)));
        wake.extend(p.take_waiters());
        p.wait(pid, k);
        drop(p);
        files::wake_all(wake);
        self.block()
    }

    /// A signal ends an open() that waited (`nr`, `args`): it no longer
    /// counts as present for the FIFO's other side.
    pub(crate) fn fifo_open_cancel(&mut self, nr: u64, args: [u64; 6]) {
        let (dirfd, path) = match nr as i64 {
            libc::SYS_open => (libc::AT_FDCWD as i64, args[0]),
            libc::SYS_openat => (super::int(args[0]), args[1]),
            _ => return,
        };
        let Ok(p) = self.user_path(path) else { return };
        let Ok(h) = self.lookup_at(dirfd, &p, true) else {
            return;
        };
        if let crate::fs::Kind::Fifo(pipe) = self.fs.inode(h).kind {
            let pid = self.pid;
            let w = drop_openers(&mut pipe.borrow_mut(), |e| e.0 == pid);
            files::wake_all(w);
        }
    }
}
