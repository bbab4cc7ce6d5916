//! Pipes and the objects vprocs share: [`Shared`] (a mutex with
//! RefCell-like names), [`Pipe`] (the bounded byte buffer behind pipe(2)
//! and FIFOs in the file tree) and [`Wake`] (how a pipe wakes its
//! waiters). They live beside the file tree because a FIFO node holds its
//! pipe; the fd table ([`crate::files`]) re-exports them.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// Errors of fd-table and pipe operations (as errnos for the vproc).
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum FdError {
    /// Not an open fd.
    #[error("bad file descriptor")]
    BadFd,
    /// The table is full.
    #[error("too many open files")]
    TooMany,
    /// An argument out of range.
    #[error("invalid argument")]
    Invalid,
    /// Beyond what a vproc may ask.
    #[error("operation not permitted")]
    NotPermitted,
    /// The object is in use.
    #[error("device or resource busy")]
    Busy,
}

impl FdError {
    /// The errno.
    pub fn errno(self) -> i64 {
        match self {
            FdError::BadFd => libc::EBADF as i64,
            FdError::TooMany => libc::EMFILE as i64,
            FdError::Invalid => libc::EINVAL as i64,
            FdError::NotPermitted => libc::EPERM as i64,
            FdError::Busy => libc::EBUSY as i64,
        }
    }
}

/// An object shared between vprocs (and vCPU threads): a mutex with
/// RefCell-like method names. Never borrow the same object twice at once.
#[derive(Debug, Default)]
pub struct Shared<T>(Arc<Mutex<T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

/// Two handles are equal when they are the same object.
impl<T> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other)
    }
}

impl<T> Eq for Shared<T> {}

impl<T> Shared<T> {
    /// Wrap `v`.
    pub fn new(v: T) -> Shared<T> {
        Shared(Arc::new(Mutex::new(v)))
    }

    /// Lock it.
    pub fn borrow(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lock it if no other thread holds it (the exitless server never
    /// waits for an object).
    pub fn try_borrow(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Lock it (same as `borrow`).
    pub fn borrow_mut(&self) -> MutexGuard<'_, T> {
        self.borrow()
    }

    /// A number naming the object while it lives (for `pipe:[N]`).
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as *const u8 as usize
    }

    /// Same object?
    pub fn ptr_eq(&self, other: &Shared<T>) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// A handle that does not keep the object alive (an epoll set's
    /// reference to an open file description).
    pub fn downgrade(&self) -> WeakShared<T> {
        WeakShared(Arc::downgrade(&self.0))
    }
}

/// A [`Shared`] that does not keep its object alive.
#[derive(Debug)]
pub struct WeakShared<T>(std::sync::Weak<Mutex<T>>);

impl<T> Clone for WeakShared<T> {
    fn clone(&self) -> Self {
        WeakShared(self.0.clone())
    }
}

impl<T> WeakShared<T> {
    /// The object, if it still lives.
    pub fn upgrade(&self) -> Option<Shared<T>> {
        self.0.upgrade().map(Shared)
    }
}

/// Something that wakes blocked vprocs (the process table).
pub trait Wake: Send + Sync {
    /// Make `pid` runnable again (it retries its call).
    fn wake(&self, pid: i32);

    /// Send `sig` from the kernel (SI_KERNEL) to process `target`, or to
    /// process group `-target` when negative: a terminal's hangup and
    /// job-control signals. Delivery may follow the call.
    fn signal(&self, _target: i32, _sig: i32) {}
}

/// The vprocs waiting on an object, each once, with what wakes them.
#[derive(Default)]
pub struct Waiters(Vec<(i32, Arc<dyn Wake>)>);

impl std::fmt::Debug for Waiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(p, _)| p))
            .finish()
    }
}

impl Waiters {
    /// Register `pid` (once).
    pub fn add(&mut self, pid: i32, w: Arc<dyn Wake>) {
        if !self.0.iter().any(|(p, _)| *p == pid) {
            self.0.push((pid, w));
        }
    }

    /// `pid` no longer waits (it gave up: a timeout).
    pub fn remove(&mut self, pid: i32) {
        self.0.retain(|(p, _)| *p != pid);
    }

    /// Take them all (wake them with the object unlocked: [`wake_all`]).
    pub fn take(&mut self) -> Vec<(i32, Arc<dyn Wake>)> {
        std::mem::take(&mut self.0)
    }
}

/// Bytes a new pipe holds before writers block (Linux: 16 pages).
pub const PIPE_CAPACITY: usize = 65536;

/// Largest size F_SETPIPE_SZ gives a pipe: Linux's `fs.pipe-max-size`
/// default. Linux lets root go beyond it; here every vproc is held to it
/// (EPERM), so a pipe never buffers more than 1 MiB of host memory.
pub const PIPE_MAX_SIZE: usize = 1 << 20;

/// Writes up to this size to a pipe are atomic (Linux's PIPE_BUF).
pub const PIPE_BUF: usize = 4096;

/// A pipe's buffer and the vprocs waiting on it.
pub struct Pipe {
    /// Bytes written and not yet read.
    pub buf: VecDeque<u8>,
    /// Bytes it holds before writers block (F_GETPIPE_SZ).
    pub capacity: usize,
    /// Open read ends.
    pub readers: usize,
    /// Open write ends.
    pub writers: usize,
    /// Vprocs blocked on this pipe (readers waiting for data or EOF,
    /// writers waiting for room or the last reader to go).
    pub waiters: Vec<(i32, Arc<dyn Wake>)>,
    /// A FIFO's opens so far, for reading and for writing (Linux's
    /// r_counter and w_counter): an open that waits for the other side
    /// ends when the other side's count moves.
    pub opened: [u64; 2],
    /// Vprocs blocked in open() of a FIFO: pid, for reading?, and a token
    /// that dies with the vproc (its signal flag), so one killed while it
    /// waited no longer counts.
    pub opening: Vec<(i32, bool, std::sync::Weak<std::sync::atomic::AtomicBool>)>,
    /// Bumped on every change waiters are woken for (data in or out, an
    /// end closing): edge-triggered epoll reports a ready pipe again only
    /// after it moved.
    pub seq: u64,
    /// Things sent along with the bytes of a stream socket (SCM_RIGHTS'
    /// open files): the offset from the head of `buf` of the first byte
    /// they came with, how many bytes came with them, and the thing. A
    /// read collects one and stops at the end of its bytes (Linux's
    /// unix_stream_read_generic stops after an skb with files).
    pub attached: VecDeque<(usize, usize, Box<dyn std::any::Any + Send>)>,
    /// A datagram or seqpacket socket's queue: the messages whose bytes
    /// `buf` holds, in order (None: a byte stream).
    pub records: Option<VecDeque<Record>>,
    /// A connected datagram socket's queue takes messages only from its
    /// peer, the socket whose queue has this id (Linux's unix_may_send).
    pub only_from: Option<usize>,
}

/// One message of a datagram or seqpacket queue.
pub struct Record {
    /// Its length: the next `len` bytes of the queue's buffer.
    pub len: usize,
    /// The sender's address (sockaddr_un bytes after the family), if it
    /// had one.
    pub from: Option<Vec<u8>>,
    /// What was sent along (SCM_RIGHTS' files).
    pub attach: Option<Box<dyn std::any::Any + Send>>,
}

/// A message taken from (or looked at in) a queue.
pub struct Message {
    /// Its bytes (all of them: a receiver with less room cuts them).
    pub data: Vec<u8>,
    /// The sender's address, if it had one.
    pub from: Option<Vec<u8>>,
    /// What was sent along (none when only looked at).
    pub attach: Option<Box<dyn std::any::Any + Send>>,
}

impl std::fmt::Debug for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe")
            .field("buffered", &self.buf.len())
            .field("capacity", &self.capacity)
            .field("readers", &self.readers)
            .field("writers", &self.writers)
            .field("waiters", &self.waiters.len())
            .finish()
    }
}

impl Default for Pipe {
    fn default() -> Self {
        Pipe {
            buf: VecDeque::new(),
            capacity: PIPE_CAPACITY,
            readers: 0,
            writers: 0,
            waiters: Vec::new(),
            opened: [0; 2],
            opening: Vec::new(),
            seq: 0,
            attached: VecDeque::new(),
            records: None,
            only_from: None,
        }
    }
}

impl Pipe {
    /// F_SETPIPE_SZ: Linux's rounding (at least a page, else the next
    /// power of two), EPERM above [`PIPE_MAX_SIZE`], EBUSY when the bytes
    /// queued would not fit. Returns the new size; writers waiting for
    /// room are to be woken by the caller ([`Pipe::take_waiters`]).
    pub fn set_capacity(&mut self, want: u64) -> Result<usize, FdError> {
        let size = if want > 1 << 31 {
            return Err(FdError::Invalid);
        } else if want < 4096 {
            4096
        } else {
            want.next_power_of_two() as usize
        };
        if size > PIPE_MAX_SIZE {
            return Err(FdError::NotPermitted);
        }
        if self.buf.len() > size {
            return Err(FdError::Busy);
        }
        self.capacity = size;
        Ok(size)
    }

    /// Register `pid` as waiting on the pipe.
    pub fn wait(&mut self, pid: i32, w: Arc<dyn Wake>) {
        if !self.waiters.iter().any(|(p, _)| *p == pid) {
            self.waiters.push((pid, w));
        }
    }

    /// How many bytes a read may take now: up to the end of the first
    /// bytes something is attached to (all of `buf` when nothing is).
    pub fn readable_run(&self) -> usize {
        self.attached
            .front()
            .map_or(self.buf.len(), |&(o, l, _)| (o + l).min(self.buf.len()))
    }

    /// `n` bytes were read from the head: what was attached to them.
    pub fn consumed(&mut self, n: usize) -> Vec<Box<dyn std::any::Any + Send>> {
        let mut got = Vec::new();
        while self.attached.front().is_some_and(|&(o, _, _)| o < n) {
            got.push(self.attached.pop_front().expect("checked").2);
        }
        for (o, _, _) in self.attached.iter_mut() {
            *o -= n;
        }
        got
    }

    /// A message queue (a datagram or seqpacket socket's) holding up to
    /// `capacity` bytes.
    pub fn messages(capacity: usize) -> Pipe {
        Pipe {
            capacity,
            records: Some(VecDeque::new()),
            ..Pipe::default()
        }
    }

    /// Is there something to read: bytes, or a message (which may be
    /// empty)?
    pub fn has_data(&self) -> bool {
        !self.buf.is_empty() || self.records.as_ref().is_some_and(|r| !r.is_empty())
    }

    /// Queued messages (0 for a byte stream).
    pub fn queued(&self) -> usize {
        self.records.as_ref().map_or(0, VecDeque::len)
    }

    /// Does a message of `len` bytes fit now? One always fits an empty
    /// queue (the sender checked it against the largest message).
    pub fn fits(&self, len: usize) -> bool {
        self.queued() == 0 || self.buf.len() + len <= self.capacity
    }

    /// Queue a message (the caller checked [`Pipe::fits`]).
    pub fn push_message(
        &mut self,
        data: &[u8],
        from: Option<Vec<u8>>,
        attach: Option<Box<dyn std::any::Any + Send>>,
    ) {
        let records = self.records.get_or_insert_with(VecDeque::new);
        records.push_back(Record {
            len: data.len(),
            from,
            attach,
        });
        self.buf.extend(data);
    }

    /// Take the first message (`peek`: look at it and leave it).
    pub fn pop_message(&mut self, peek: bool) -> Option<Message> {
        let records = self.records.as_mut()?;
        let r = records.front()?;
        let data: Vec<u8> = self.buf.range(..r.len).copied().collect();
        if peek {
            return Some(Message {
                data,
                from: r.from.clone(),
                attach: None,
            });
        }
        let r = records.pop_front().expect("checked");
        self.buf.drain(..r.len);
        Some(Message {
            data,
            from: r.from,
            attach: r.attach,
        })
    }

    /// Put a message taken by [`Pipe::pop_message`] back in front (its
    /// receiver could not take it: a bad buffer loses nothing).
    pub fn unpop_message(&mut self, m: Message) {
        let records = self.records.get_or_insert_with(VecDeque::new);
        records.push_front(Record {
            len: m.data.len(),
            from: m.from,
            attach: m.attach,
        });
        for &b in m.data.iter().rev() {
            self.buf.push_front(b);
        }
    }

    /// Take the waiters (call [`wake_all`] on them with the pipe unlocked).
    pub fn take_waiters(&mut self) -> Vec<(i32, Arc<dyn Wake>)> {
        self.seq = self.seq.wrapping_add(1);
        std::mem::take(&mut self.waiters)
    }
}

/// Wake every waiter taken from a pipe.
pub fn wake_all(w: Vec<(i32, Arc<dyn Wake>)>) {
    for (pid, k) in w {
        k.wake(pid);
    }
}
