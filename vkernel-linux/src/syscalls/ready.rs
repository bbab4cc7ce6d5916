//! Readiness of open files, for poll/select and epoll: what events a file
//! has now ([`Vproc::poll_file`]), how to be woken when that changes
//! ([`Vproc::watch_file`]), and a file's change count for edge-triggered
//! epoll ([`file_seq`]).

use std::sync::Arc;
use std::time::Instant;

use super::events::{POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, POLLRDNORM, POLLWRNORM};
use crate::files::{self, epoll_flags::*, FileKind, OpenFile, SockState, Wake};
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

/// The change count of `f`'s object, for edge-triggered epoll; None for
/// files that do not count (their readiness never changes, or is the
/// host's: edge-triggered items on them report at every readiness).
pub fn file_seq(f: &OpenFile) -> Option<u64> {
    match &f.kind {
        FileKind::PipeRead(p) | FileKind::PipeWrite(p) => Some(p.borrow().seq),
        FileKind::EventFd(e) => Some(e.borrow().seq),
        FileKind::PidFd(p) => Some(p.borrow().seq),
        FileKind::Inotify(i) => Some(i.borrow().seq),
        FileKind::TimerFd(t) => {
            let mut t = t.borrow_mut();
            t.update(Instant::now());
            Some(t.seq)
        }
        FileKind::Socket(s) => match &s.state {
            SockState::Connected(s) => {
                let (a, b) = (s.rx.borrow().seq, s.tx.borrow().seq);
                Some(a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b)
            }
            SockState::Listening(p) | SockState::Bound(p) => Some(p.borrow().seq),
            SockState::Dgram(d) => {
                let a = d.inbox.borrow().seq;
                let b = d.peer.as_ref().map_or(0, |(q, _)| q.borrow().seq);
                Some(a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b)
            }
            SockState::Fresh => Some(0),
        },
        FileKind::Inode(_) => Some(0),
        FileKind::Stdin
        | FileKind::Stdout
        | FileKind::Stderr
        | FileKind::Epoll(_)
        | FileKind::SignalFd(_) => None,
    }
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

    /// The poll(2) events of the open file `f` now; `depth` counts the
    /// epoll sets around it.
    pub fn poll_file(&self, f: &OpenFile, depth: u32) -> u16 {
        match &f.kind {
            FileKind::PipeRead(p) => {
                let p = p.borrow();
                let mut r = 0;
                if !p.buf.is_empty() {
                    r |= POLLIN | POLLRDNORM;
                }
                if p.writers == 0 {
                    r |= POLLHUP;
                }
                r
            }
            FileKind::PipeWrite(p) => {
                let p = p.borrow();
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
                if self.stdio.readable(None) {
                    r |= POLLIN | POLLRDNORM;
                }
                r
            }
            FileKind::Inode(_) => POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM,
            FileKind::Inotify(i) => {
                if i.borrow().events.is_empty() {
                    0
                } else {
                    POLLIN | POLLRDNORM
                }
            }
            FileKind::PidFd(p) => {
                if p.borrow().exited {
                    POLLIN | POLLRDNORM
                } else {
                    0
                }
            }
            FileKind::SignalFd(sf) => {
                let mask = sf.borrow().mask;
                if self
                    .sig
                    .pending
                    .iter()
                    .any(|p| crate::signal::bit(p.signo) & mask != 0)
                {
                    POLLIN | POLLRDNORM
                } else {
                    0
                }
            }
            FileKind::TimerFd(t) => {
                let mut t = t.borrow_mut();
                t.update(Instant::now());
                if t.ticks > 0 {
                    POLLIN | POLLRDNORM
                } else {
                    0
                }
            }
            FileKind::EventFd(e) => {
                let e = e.borrow();
                let mut r = 0;
                if e.readable() {
                    r |= POLLIN | POLLRDNORM;
                }
                if e.writable() {
                    r |= POLLOUT | POLLWRNORM;
                }
                r
            }
            FileKind::Socket(sk) => {
                let s = match &sk.state {
                    SockState::Connected(s) => s,
                    SockState::Listening(p) => {
                        return if p.borrow().backlog.is_empty() {
                            0
                        } else {
                            POLLIN | POLLRDNORM
                        };
                    }
                    // Not connected: Linux says hung up (and writable).
                    SockState::Fresh | SockState::Bound(_) => {
                        return POLLOUT | POLLWRNORM | POLLHUP
                    }
                    SockState::Dgram(d) => return dgram_events(d),
                };
                let mut r = 0;
                {
                    let rx = s.rx.borrow();
                    if rx.has_data() {
                        r |= POLLIN | POLLRDNORM;
                    }
                    if rx.writers == 0 {
                        // The peer will send no more: readable (EOF).
                        r |= POLLIN | POLLRDNORM | POLLRDHUP;
                    }
                }
                let tx = s.tx.borrow();
                if tx.readers == 0 {
                    // A write fails at once (EPIPE): writable, as Linux
                    // says; no POLLERR (that is a pending socket error).
                    r |= POLLOUT | POLLWRNORM;
                } else if tx.buf.len() + files::PIPE_BUF.min(tx.capacity) <= tx.capacity {
                    r |= POLLOUT | POLLWRNORM;
                }
                if s.rx.borrow().writers == 0 && tx.readers == 0 {
                    r |= POLLHUP;
                }
                r
            }
            FileKind::Epoll(ep) => {
                if depth >= EPOLL_MAX_NESTS {
                    return 0;
                }
                let items: Vec<_> = ep
                    .borrow()
                    .items
                    .iter()
                    .filter(|i| !i.disabled)
                    .map(|i| (i.file.clone(), i.events))
                    .collect();
                let ready = items.iter().any(|(file, events)| {
                    file.upgrade().is_some_and(|file| {
                        let have = self.poll_file(&file.borrow(), depth + 1);
                        u32::from(have) & (events | EPOLLERR | EPOLLHUP) != 0
                    })
                });
                if ready {
                    POLLIN | POLLRDNORM
                } else {
                    0
                }
            }
        }
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
            FileKind::Inode(_) => {}
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
fn dgram_events(d: &crate::files::Dgram) -> u16 {
    let mut r = 0;
    if d.inbox.borrow().has_data() || d.shut_rd {
        r |= POLLIN | POLLRDNORM;
    }
    if d.shut_rd {
        r |= POLLRDHUP;
    }
    let writable = d.peer.as_ref().is_none_or(|(q, _)| {
        let q = q.borrow();
        q.readers == 0 || q.buf.len() * 4 <= q.capacity
    });
    if writable {
        r |= POLLOUT | POLLWRNORM;
    }
    r
}
