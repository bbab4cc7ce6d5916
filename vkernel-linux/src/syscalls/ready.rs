//! Readiness of open files, for poll/select and epoll: what events a file
//! has now ([`Vproc::poll_file`]), how to be woken when that changes
//! ([`Vproc::watch_file`]), and a file's change count for edge-triggered
//! epoll ([`seq_with`]). The exit path and the exitless server look the
//! same way ([`Look`]).

use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use super::events::{POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::files::{self, epoll_flags::*, FileKind, OpenFile, Shared, SockState, Wake};
use crate::stdio::SharedStdio;
use crate::Vproc;

/// How deep epoll sets inside epoll sets are looked into (Linux refuses
/// to build chains deeper than 5).
pub const EPOLL_MAX_NESTS: u32 = 4;

/// What a waiter must wake for beyond the objects it registered on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watch {
    /// The earliest timerfd expiration.
    pub until: Option<Instant>,
    /// Signals signalfds take.
    pub signals: u64,
}

impl Watch {
    /// Both `self` and `o`.
    pub fn merge(self, o: Watch) -> Watch {
        Watch {
            until: match (self.until, o.until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            signals: self.signals | o.signals,
        }
    }
}

/// EPOLLRDHUP as a poll bit (POLLRDHUP).
pub const POLLRDHUP: u16 = 0x2000;

/// How readiness is looked at: by the exit path (locks wait; the vproc's
/// pending signals and the console are known) or by the exitless server
/// (locks are only tried; what needs the vproc is not known). A look that
/// cannot tell says None.
pub(crate) struct Look<'a> {
    /// The console, when it may be asked.
    pub(crate) stdio: Option<&'a SharedStdio>,
    /// The pending signals (signalfd), when known.
    pub(crate) pending: Option<u64>,
    /// Only try locks (the exitless server never waits for an object).
    pub(crate) try_only: bool,
}

impl Look<'_> {
    /// Lock `s` (or try to).
    fn lock<'b, T>(&self, s: &'b Shared<T>) -> Option<MutexGuard<'b, T>> {
        if self.try_only {
            s.try_borrow()
        } else {
            Some(s.borrow())
        }
    }
}

/// The change count of `f`'s object by `look`, for edge-triggered epoll
/// (the outer None: `look` could not tell); the inner None for files
/// that do not count (their readiness never changes, or is the host's:
/// edge-triggered items on them report at every readiness).
pub(crate) fn seq_with(look: &Look<'_>, f: &OpenFile) -> Option<Option<u64>> {
    let mix = |a: u64, b: u64| a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b;
    Some(match &f.kind {
        FileKind::PipeRead(p) | FileKind::PipeWrite(p) => Some(look.lock(p)?.seq),
        FileKind::EventFd(e) => Some(look.lock(e)?.seq),
        FileKind::PidFd(p) => Some(look.lock(p)?.seq),
        FileKind::Inotify(i) => Some(look.lock(i)?.seq),
        FileKind::TimerFd(t) => {
            let mut t = look.lock(t)?;
            t.update(Instant::now());
            Some(t.seq)
        }
        FileKind::Socket(s) => match &s.state {
            SockState::Connected(s) => Some(mix(look.lock(&s.rx)?.seq, look.lock(&s.tx)?.seq)),
            SockState::Listening(p) | SockState::Bound(p) => Some(look.lock(p)?.seq),
            SockState::Dgram(d) => {
                let a = look.lock(&d.inbox)?.seq;
                let b = match &d.peer {
                    Some((q, _)) => look.lock(q)?.seq,
                    None => 0,
                };
                Some(mix(a, b))
            }
            SockState::Fresh => Some(0),
        },
        FileKind::Inode(_) | FileKind::ProcMem(_) => Some(0),
        FileKind::Pty(e) => Some(look.lock(&e.pty)?.seq),
        FileKind::MsgQueue(q) => Some(look.lock(q)?.seq),
        FileKind::Stdin
        | FileKind::Stdout
        | FileKind::Stderr
        | FileKind::Epoll(_)
        | FileKind::SignalFd(_) => None,
    })
}

/// The poll(2) events of the open file `f` now, by `look`; `depth` counts
/// the epoll sets around it.
pub(crate) fn poll_with(look: &Look<'_>, f: &OpenFile, depth: u32) -> Option<u16> {
    let ready = |yes: bool| if yes { POLLIN | POLLRDNORM } else { 0 };
    Some(match &f.kind {
        FileKind::PipeRead(p) => {
            let p = look.lock(p)?;
            let mut r = ready(!p.buf.is_empty());
            if p.writers == 0 {
                r |= POLLHUP;
            }
            r
        }
        FileKind::PipeWrite(p) => {
            let p = look.lock(p)?;
            if p.readers == 0 {
                POLLERR | POLLOUT | POLLWRNORM
            } else if p.buf.len() + files::PIPE_BUF.min(p.capacity) <= p.capacity {
                POLLOUT | POLLWRNORM
            } else {
                0
            }
        }
        FileKind::Stdin | FileKind::Stdout | FileKind::Stderr => {
            let mut r = 0;
            if !matches!(f.kind, FileKind::Stdin) || f.flags & files::O_ACCMODE != 0 {
                r |= POLLOUT | POLLWRNORM;
            }
            r | ready(look.stdio?.readable(None))
        }
        FileKind::Inode(_) | FileKind::ProcMem(_) => POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM,
        FileKind::Pty(e) => Vproc::pty_events(&*look.lock(&e.pty)?, e.master),
        FileKind::MsgQueue(q) => {
            let q = look.lock(q)?;
            let mut r = ready(!q.is_empty());
            if !q.is_full() {
                r |= POLLOUT | POLLWRNORM;
            }
            r
        }
        FileKind::Inotify(i) => ready(!look.lock(i)?.events.is_empty()),
        FileKind::PidFd(p) => ready(look.lock(p)?.exited),
        FileKind::SignalFd(sf) => {
            let mask = look.lock(sf)?.mask;
            ready(look.pending? & mask != 0)
        }
        FileKind::TimerFd(t) => {
            let mut t = look.lock(t)?;
            t.update(Instant::now());
            ready(t.ticks > 0)
        }
        FileKind::EventFd(e) => {
            let e = look.lock(e)?;
            let mut r = ready(e.readable());
            if e.writable() {
                r |= POLLOUT | POLLWRNORM;
            }
            r
        }
        FileKind::Socket(sk) => return socket_events(look, sk),
        FileKind::Epoll(ep) => {
            if depth >= EPOLL_MAX_NESTS {
                return Some(0);
            }
            let items: Vec<_> = look
                .lock(ep)?
                .items
                .iter()
                .filter(|i| !i.disabled)
                .map(|i| (i.file.clone(), i.events))
                .collect();
            let mut any = false;
            for (file, events) in items {
                let Some(file) = file.upgrade() else {
                    continue;
                };
                let have = poll_with(look, &*look.lock(&file)?, depth + 1)?;
                if u32::from(have) & (events | EPOLLERR | EPOLLHUP) != 0 {
                    any = true;
                    break;
                }
            }
            ready(any)
        }
    })
}

/// A socket's poll events, by `look`.
fn socket_events(look: &Look<'_>, sk: &crate::files::Socket) -> Option<u16> {
    // A connect through the network: nothing until the handshake ends;
    // a refused one is an error (Linux: POLLOUT, POLLERR and POLLHUP).
    match sk.connecting.as_ref().map(|c| c.result()) {
        Some(None) => return Some(0),
        Some(Some(Err(_))) => return Some(POLLOUT | POLLWRNORM | POLLERR | POLLHUP),
        _ => {}
    }
    let s = match &sk.state {
        SockState::Connected(s) => s,
        SockState::Listening(p) => {
            return Some(if look.lock(p)?.backlog.is_empty() {
                0
            } else {
                POLLIN | POLLRDNORM
            });
        }
        // Not connected: Linux says hung up (and writable).
        SockState::Fresh | SockState::Bound(_) => return Some(POLLOUT | POLLWRNORM | POLLHUP),
        SockState::Dgram(d) => return dgram_events(look, d),
    };
    let mut r = 0;
    let rx_gone = {
        let rx = look.lock(&s.rx)?;
        if rx.has_data() {
            r |= POLLIN | POLLRDNORM;
        }
        if rx.writers == 0 {
            // The peer will send no more: readable (EOF).
            r |= POLLIN | POLLRDNORM | POLLRDHUP;
        }
        rx.writers == 0
    };
    let tx = look.lock(&s.tx)?;
    if tx.readers == 0 {
        // A write fails at once (EPIPE): writable, as Linux says; no
        // POLLERR (that is a pending socket error).
        r |= POLLOUT | POLLWRNORM;
    } else if tx.buf.len() + files::PIPE_BUF.min(tx.capacity) <= tx.capacity {
        r |= POLLOUT | POLLWRNORM;
    }
    if rx_gone && tx.readers == 0 {
        r |= POLLHUP;
    }
    Some(r)
}

impl Vproc {
    /// The poll(2) events `fd` has now (`POLLNVAL` when not open).
    pub fn poll_fd(&self, fd: i64) -> u16 {
        let Ok(slot) = self.fds.get(fd) else {
            return POLLNVAL;
        };
        let f = slot.file.borrow();
        self.poll_file(&f, 0)
    }

    /// How this vproc looks at readiness (everything known, locks wait).
    pub(crate) fn look(&self) -> Look<'_> {
        Look {
            stdio: Some(&self.stdio),
            pending: Some(crate::signal::mask_of(&self.sig.pending)),
            try_only: false,
        }
    }

    /// The poll(2) events of the open file `f` now; `depth` counts the
    /// epoll sets around it.
    pub fn poll_file(&self, f: &OpenFile, depth: u32) -> u16 {
        poll_with(&self.look(), f, depth).unwrap_or(0)
    }

    /// Ask to be woken when `fd` changes; returns what else the caller
    /// must wake for ([`Vproc::wait_also`]).
    pub(super) fn poll_register(&self, fd: i64) -> Watch {
        let Ok(slot) = self.fds.get(fd) else {
            return Watch::default();
        };
        let f = slot.file.borrow();
        self.watch_file(&f, 0)
    }

    /// Wake the waiting call for what `w` says too: a timer's expiration
    /// ([`Vproc::wake_by`]), signals a signalfd takes (as rt_sigtimedwait
    /// waits for blocked signals).
    pub(super) fn wait_also(&mut self, w: Watch) {
        if let Some(t) = w.until {
            self.wake_by(t);
        }
        self.thread.sigwait |= w.signals;
    }

    /// Ask to be woken when the open file `f` changes (pipes, sockets,
    /// eventfds, the console input, and what an epoll set watches);
    /// returns what nothing registered here wakes for: the earliest
    /// expiration of the timerfds among them, the signals of the
    /// signalfds.
    pub(super) fn watch_file(&self, f: &OpenFile, depth: u32) -> Watch {
        let Some(k) = self.k.as_ref() else {
            return Watch::default();
        };
        let w: Arc<dyn Wake> = k.clone();
        match &f.kind {
            FileKind::TimerFd(t) => {
                let mut t = t.borrow_mut();
                t.wait(self.pid, w);
                return Watch {
                    until: t.next,
                    signals: 0,
                };
            }
            FileKind::SignalFd(sf) => {
                return Watch {
                    until: None,
                    signals: sf.borrow().mask,
                };
            }
            FileKind::PipeRead(p) | FileKind::PipeWrite(p) => p.borrow_mut().wait(self.pid, w),
            FileKind::Pty(e) => e.pty.borrow_mut().wait(self.pid, w),
            FileKind::MsgQueue(q) => q.borrow_mut().wait(self.pid, w),
            FileKind::Socket(sk) => match &sk.state {
                SockState::Connected(s) => {
                    s.rx.borrow_mut().wait(self.pid, w.clone());
                    s.tx.borrow_mut().wait(self.pid, w);
                }
                SockState::Listening(p) | SockState::Bound(p) => p.borrow_mut().wait(self.pid, w),
                SockState::Dgram(d) => {
                    d.inbox.borrow_mut().wait(self.pid, w.clone());
                    if let Some((q, _)) = &d.peer {
                        q.borrow_mut().wait(self.pid, w);
                    }
                }
                SockState::Fresh => {}
            },
            FileKind::EventFd(e) => e.borrow_mut().wait(self.pid, w),
            FileKind::PidFd(p) => p.borrow_mut().wait(self.pid, w),
            FileKind::Inotify(i) => i.borrow_mut().wait(self.pid, w),
            FileKind::Stdin | FileKind::Stdout | FileKind::Stderr => {
                self.stdio.readable(Some((self.pid, w)));
            }
            FileKind::Inode(_) | FileKind::ProcMem(_) => {}
            FileKind::Epoll(ep) => {
                if depth >= EPOLL_MAX_NESTS {
                    return Watch::default();
                }
                let files: Vec<_> = ep.borrow().items.iter().map(|i| i.file.clone()).collect();
                return files
                    .iter()
                    .filter_map(|f| f.upgrade())
                    .map(|file| self.watch_file(&file.borrow(), depth + 1))
                    .fold(Watch::default(), Watch::merge);
            }
        }
        Watch::default()
    }
}

/// A datagram socket's poll events: readable with a message queued (or
/// after SHUT_RD), writable unless its peer's queue is over a quarter
/// full (Linux's unix_writable rule; a peer that went is writable: the
/// send fails at once).
fn dgram_events(look: &Look<'_>, d: &crate::files::Dgram) -> Option<u16> {
    let mut r = 0;
    if look.lock(&d.inbox)?.has_data() || d.shut_rd {
        r |= POLLIN | POLLRDNORM;
    }
    if d.shut_rd {
        r |= POLLRDHUP;
    }
    let writable = match &d.peer {
        None => true,
        Some((q, _)) => {
            let q = look.lock(q)?;
            q.readers == 0 || q.buf.len() * 4 <= q.capacity
        }
    };
    if writable {
        r |= POLLOUT | POLLWRNORM;
    }
    Some(r)
}
