//! POSIX message queues: a queue's messages in priority order and the
//! names queues have (one namespace per virtual kernel, as Linux's
//! mqueue filesystem per IPC namespace). The calls are in
//! `syscalls/mqueue.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::pipe::{Shared, Waiters, Wake};

/// Priorities are below this (Linux's MQ_PRIO_MAX).
pub const PRIO_MAX: u32 = 32768;
/// A new queue's capacity when mq_open gives no attributes
/// (`/proc/sys/fs/mqueue/msg_default`).
pub const DEFAULT_MAXMSG: usize = 10;
/// A new queue's message size without attributes (`msgsize_default`).
pub const DEFAULT_MSGSIZE: usize = 8192;
/// Most messages a queue may hold (Linux's HARD_MSGMAX).
pub const HARD_MAXMSG: usize = 65536;
/// Largest message size (Linux's HARD_MSGSIZEMAX).
pub const HARD_MSGSIZE: usize = 16 << 20;
/// Most bytes one queue may be sized for (a vkernel bound in the spirit
/// of RLIMIT_MSGQUEUE): capacity times message size.
pub const QUEUE_BYTES_MAX: usize = 64 << 20;

/// Who is told when a message arrives in an empty queue (mq_notify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notify {
    /// The registered process.
    pub pid: i32,
    /// SIGEV_SIGNAL (0) or SIGEV_NONE (1).
    pub how: i32,
    /// The signal (SIGEV_SIGNAL).
    pub signo: i32,
    /// sigev_value, given as si_value.
    pub value: u64,
}

/// One queue.
pub struct MsgQueue {
    /// Most messages it holds (mq_maxmsg).
    pub maxmsg: usize,
    /// Largest message (mq_msgsize).
    pub msgsize: usize,
    /// Permission bits given at creation.
    pub mode: u32,
    /// The messages, highest priority first, oldest first within one.
    msgs: VecDeque<(u32, Vec<u8>)>,
    /// Vprocs waiting to send or receive.
    pub waiters: Waiters,
    /// Receivers blocked now (a notification is only sent when none is).
    pub receiving: Vec<i32>,
    /// The registration of mq_notify.
    pub notify: Option<Notify>,
    /// Bumped on every change waiters are woken for.
    pub seq: u64,
}

impl std::fmt::Debug for MsgQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsgQueue")
            .field("maxmsg", &self.maxmsg)
            .field("msgsize", &self.msgsize)
            .field("messages", &self.msgs.len())
            .finish()
    }
}

impl MsgQueue {
    /// An empty queue of `maxmsg` messages of up to `msgsize` bytes.
    ///
    /// ```
    /// use vkernel_linux::fs::mqueue::MsgQueue;
    /// let mut q = MsgQueue::new(4, 16, 0o600);
    /// q.send(1, b"low");
    /// q.send(5, b"high");
    /// assert_eq!(q.receive(), Some((5, b"high".to_vec())));
    /// ```
    pub fn new(maxmsg: usize, msgsize: usize, mode: u32) -> MsgQueue {
        MsgQueue {
            maxmsg,
            msgsize,
            mode,
            msgs: VecDeque::new(),
            waiters: Waiters::default(),
            receiving: Vec::new(),
            notify: None,
            seq: 0,
        }
    }

    /// Messages held (mq_curmsgs).
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// No message?
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Full?
    pub fn is_full(&self) -> bool {
        self.msgs.len() >= self.maxmsg
    }

    /// Bytes of the messages held (QSIZE of a read of the queue's fd).
    pub fn bytes(&self) -> usize {
        self.msgs.iter().map(|(_, m)| m.len()).sum()
    }

    /// Queue a message (the caller checked room and size). Returns the
    /// notification to send now, if this message makes the empty queue
    /// non-empty while nobody waits to receive (it is then used up).
    pub fn send(&mut self, prio: u32, data: &[u8]) -> Option<Notify> {
        let was_empty = self.msgs.is_empty();
        let at = self
            .msgs
            .iter()
            .position(|(p, _)| *p < prio)
            .unwrap_or(self.msgs.len());
        self.msgs.insert(at, (prio, data.to_vec()));
        if was_empty && self.receiving.is_empty() {
            self.notify.take()
        } else {
            None
        }
    }

    /// Take the first message.
    pub fn receive(&mut self) -> Option<(u32, Vec<u8>)> {
        self.msgs.pop_front()
    }

    /// Register `pid` as waiting.
    pub fn wait(&mut self, pid: i32, w: Arc<dyn Wake>) {
        self.waiters.add(pid, w);
    }

    /// Something changed: the waiters to wake.
    pub fn take_waiters(&mut self) -> Vec<(i32, Arc<dyn Wake>)> {
        self.seq = self.seq.wrapping_add(1);
        self.waiters.take()
    }

    /// What read(2) of the queue's fd says.
    pub fn status(&self) -> String {
        let (how, sig, pid) = self.notify.map_or((0, 0, 0), |n| (n.how, n.signo, n.pid));
        format!(
            "QSIZE:{:<10} NOTIFY:{:<5} SIGNO:{:<5} NOTIFY_PID:{:<6}\n",
            self.bytes(),
            how,
            sig,
            pid
        )
    }
}

/// The queues by name.
#[derive(Debug, Default)]
pub struct MqNames {
    names: Mutex<HashMap<Vec<u8>, Shared<MsgQueue>>>,
}

impl MqNames {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Shared<MsgQueue>>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The queue named `name`.
    pub fn get(&self, name: &[u8]) -> Option<Shared<MsgQueue>> {
        self.lock().get(name).cloned()
    }

    /// The queue named `name`, made by `make` when there is none: the
    /// queue and whether it was made.
    pub fn get_or_create(
        &self,
        name: &[u8],
        make: impl FnOnce() -> MsgQueue,
    ) -> (Shared<MsgQueue>, bool) {
        let mut m = self.lock();
        if let Some(q) = m.get(name) {
            return (q.clone(), false);
        }
        let q = Shared::new(make());
        m.insert(name.to_vec(), q.clone());
        (q, true)
    }

    /// Remove the name (the queue lives while it is open). False if
    /// there was none.
    pub fn unlink(&self, name: &[u8]) -> bool {
        self.lock().remove(name).is_some()
    }
}

impl super::Fs {
    /// The POSIX message queues of this virtual kernel.
    pub fn mqueues(&self) -> &MqNames {
        &self.mqueues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_order_then_arrival_order() {
        let mut q = MsgQueue::new(8, 16, 0);
        q.send(1, b"a");
        q.send(3, b"b");
        q.send(1, b"c");
        q.send(3, b"d");
        q.send(0, b"e");
        let got: Vec<Vec<u8>> = std::iter::from_fn(|| q.receive().map(|m| m.1)).collect();
        assert_eq!(got, [b"b", b"d", b"a", b"c", b"e"]);
    }

    #[test]
    fn notification_fires_once_on_empty_to_non_empty_without_receivers() {
        let mut q = MsgQueue::new(8, 16, 0);
        let n = Notify {
            pid: 5,
            how: 0,
            signo: 10,
            value: 7,
        };
        q.notify = Some(n);
        q.receiving.push(9);
        assert_eq!(q.send(0, b"x"), None, "a receiver waits: no notification");
        q.receive();
        q.receiving.clear();
        assert_eq!(q.send(0, b"x"), Some(n));
        assert_eq!(q.notify, None, "used up");
        assert!(q.status().starts_with("QSIZE:1 "));
    }

    #[test]
    fn names_are_created_once_and_unlinked() {
        let m = MqNames::default();
        let (a, made) = m.get_or_create(b"q", || MsgQueue::new(1, 1, 0));
        assert!(made);
        let (b, made) = m.get_or_create(b"q", || MsgQueue::new(2, 2, 0));
        assert!(!made && a.ptr_eq(&b));
        assert!(m.unlink(b"q"));
        assert!(!m.unlink(b"q"));
        assert!(m.get(b"q").is_none());
    }
}
