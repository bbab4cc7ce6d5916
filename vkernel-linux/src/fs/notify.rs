//! inotify on the file tree: instances ([`Inotify`]: a queue of events and
//! its watches), the tree's registry of watches by node ([`Notifier`]),
//! and what the tree reports to it. The overlay's operations report
//! creation, deletion, moves, writes and attribute changes; the syscall
//! layer reports opens and closes (an open file of the tree carries a
//! [`CloseNote`] that reports its close when the description goes).
//!
//! Events follow Linux's `inotify(7)`: a watch on a directory gets events
//! about its entries with their names, a watch on any node gets events
//! about the node itself; IN_ONESHOT, IN_MASK_ADD, IN_MASK_CREATE,
//! IN_EXCL_UNLINK (accepted), IN_IGNORED when a watch goes, a move's two
//! halves sharing a cookie, an event equal to the last one queued merged
//! into it, and IN_Q_OVERFLOW past the queue's limit.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::pipe::{wake_all, Shared, Waiters, Wake, WeakShared};

/// IN_ACCESS.
pub const IN_ACCESS: u32 = 0x1;
/// IN_MODIFY.
pub const IN_MODIFY: u32 = 0x2;
/// IN_ATTRIB.
pub const IN_ATTRIB: u32 = 0x4;
/// IN_CLOSE_WRITE.
pub const IN_CLOSE_WRITE: u32 = 0x8;
/// IN_CLOSE_NOWRITE.
pub const IN_CLOSE_NOWRITE: u32 = 0x10;
/// IN_OPEN.
pub const IN_OPEN: u32 = 0x20;
/// IN_MOVED_FROM.
pub const IN_MOVED_FROM: u32 = 0x40;
/// IN_MOVED_TO.
pub const IN_MOVED_TO: u32 = 0x80;
/// IN_CREATE.
pub const IN_CREATE: u32 = 0x100;
/// IN_DELETE.
pub const IN_DELETE: u32 = 0x200;
/// IN_DELETE_SELF.
pub const IN_DELETE_SELF: u32 = 0x400;
/// IN_MOVE_SELF.
pub const IN_MOVE_SELF: u32 = 0x800;
/// Every event a watch may ask for (IN_ALL_EVENTS).
pub const IN_ALL_EVENTS: u32 = 0xfff;
/// IN_Q_OVERFLOW: events were lost.
pub const IN_Q_OVERFLOW: u32 = 0x4000;
/// IN_IGNORED: the watch went.
pub const IN_IGNORED: u32 = 0x8000;
/// IN_ONLYDIR.
pub const IN_ONLYDIR: u32 = 0x0100_0000;
/// IN_DONT_FOLLOW.
pub const IN_DONT_FOLLOW: u32 = 0x0200_0000;
/// IN_EXCL_UNLINK.
pub const IN_EXCL_UNLINK: u32 = 0x0400_0000;
/// IN_MASK_CREATE.
pub const IN_MASK_CREATE: u32 = 0x1000_0000;
/// IN_MASK_ADD.
pub const IN_MASK_ADD: u32 = 0x2000_0000;
/// IN_ISDIR: the event is about a directory.
pub const IN_ISDIR: u32 = 0x4000_0000;
/// IN_ONESHOT.
pub const IN_ONESHOT: u32 = 0x8000_0000;

/// Events an instance queues before it reports IN_Q_OVERFLOW
/// (fs.inotify.max_queued_events).
pub const MAX_QUEUED: usize = 16384;

/// sizeof(struct inotify_event) without its name.
pub const EVENT_HDR: usize = 16;

/// Errors of watch changes (as errnos for the vproc).
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum NotifyError {
    /// IN_MASK_CREATE on a node already watched (EEXIST).
    #[error("the node is watched already")]
    Exists,
    /// No such watch, or a mask without events (EINVAL).
    #[error("invalid watch")]
    Invalid,
}

/// One queued event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The watch.
    pub wd: i32,
    /// What happened (IN_*).
    pub mask: u32,
    /// Ties the two halves of a move.
    pub cookie: u32,
    /// The entry's name, for an event about a directory's entry.
    pub name: Vec<u8>,
}

impl Event {
    /// Its size as read: the header and the name padded with NULs to a
    /// multiple of 16 (none without a name).
    pub fn size(&self) -> usize {
        EVENT_HDR + padded(&self.name)
    }

    /// As `struct inotify_event` bytes.
    pub fn encode(&self) -> Vec<u8> {
        let len = padded(&self.name);
        let mut b = Vec::with_capacity(EVENT_HDR + len);
        b.extend_from_slice(&self.wd.to_le_bytes());
        b.extend_from_slice(&self.mask.to_le_bytes());
        b.extend_from_slice(&self.cookie.to_le_bytes());
        b.extend_from_slice(&u32::try_from(len).unwrap_or(0).to_le_bytes());
        b.extend_from_slice(&self.name);
        b.resize(EVENT_HDR + len, 0);
        b
    }
}

/// A name's room in an event: with its NUL, rounded up to 16.
fn padded(name: &[u8]) -> usize {
    if name.is_empty() {
        0
    } else {
        (name.len() + 1).div_ceil(EVENT_HDR) * EVENT_HDR
    }
}

/// An inotify instance: its queue and its watches.
#[derive(Default)]
pub struct Inotify {
    /// Events not read yet.
    pub events: VecDeque<Event>,
    /// Vprocs waiting for an event (read, poll, select, epoll).
    pub waiters: Waiters,
    /// Bumped on every event (edge-triggered epoll).
    pub seq: u64,
    /// Its watches: descriptor -> (node, mask).
    pub watches: BTreeMap<i32, (u64, u32)>,
    /// The last descriptor given.
    last_wd: i32,
}

impl std::fmt::Debug for Inotify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inotify")
            .field("queued", &self.events.len())
            .field("watches", &self.watches.len())
            .finish()
    }
}

impl Inotify {
    /// Bytes queued (FIONREAD).
    pub fn queued_bytes(&self) -> usize {
        self.events.iter().map(Event::size).sum()
    }

    /// Register `pid` as waiting for an event.
    pub fn wait(&mut self, pid: i32, w: Arc<dyn Wake>) {
        self.waiters.add(pid, w);
    }

    /// Queue `e` (merged into an equal last one; IN_Q_OVERFLOW once full)
    /// and take the waiters to wake.
    fn push(&mut self, e: Event) -> Vec<(i32, Arc<dyn Wake>)> {
        if self.events.back() == Some(&e) {
            return Vec::new();
        }
        if self.events.len() >= MAX_QUEUED {
            let overflow = Event {
                wd: -1,
                mask: IN_Q_OVERFLOW,
                cookie: 0,
                name: Vec::new(),
            };
            if self.events.back() != Some(&overflow) {
                self.events.push_back(overflow);
            }
            return Vec::new();
        }
        self.events.push_back(e);
        self.seq = self.seq.wrapping_add(1);
        self.waiters.take()
    }
}

/// A watch as the registry holds it.
struct Watch {
    /// Its instance.
    ino: WeakShared<Inotify>,
    /// Its descriptor there.
    wd: i32,
    /// The events it wants, with its flags.
    mask: u32,
}

/// The tree's watches, by node.
#[derive(Default)]
pub struct Notifier {
    /// Watches of each node.
    by_node: Mutex<HashMap<u64, Vec<Watch>>>,
    /// The last move cookie given.
    cookie: Mutex<u32>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Notifier {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<Watch>>> {
        self.by_node.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Is anything watched? (Nothing to report otherwise.)
    pub fn active(&self) -> bool {
        !self.lock().is_empty()
    }

    /// A new cookie for a move's two halves.
    pub fn cookie(&self) -> u32 {
        let mut c = self.cookie.lock().unwrap_or_else(|e| e.into_inner());
        *c = c.wrapping_add(1).max(1);
        *c
    }

    /// inotify_add_watch of node `h` with `mask` for `ino`: its watch
    /// descriptor (the same one again for a node it watches already).
    pub fn add_watch(&self, ino: &Shared<Inotify>, h: u64, mask: u32) -> Result<i32, NotifyError> {
        if mask & IN_ALL_EVENTS == 0 {
            return Err(NotifyError::Invalid);
        }
        let mut map = self.lock();
        let mut i = ino.borrow_mut();
        let old = i.watches.iter().find(|(_, w)| w.0 == h).map(|(wd, _)| *wd);
        if let Some(wd) = old {
            if mask & IN_MASK_CREATE != 0 {
                return Err(NotifyError::Exists);
            }
            let entry = i.watches.get_mut(&wd).expect("found");
            let m = if mask & IN_MASK_ADD != 0 {
                entry.1 | mask
            } else {
                mask
            };
            entry.1 = m;
            if let Some(w) = map.get_mut(&h).and_then(|v| {
                v.iter_mut()
                    .find(|w| w.wd == wd && w.ino.upgrade().as_ref() == Some(ino))
            }) {
                w.mask = m;
            }
            return Ok(wd);
        }
        i.last_wd += 1;
        let wd = i.last_wd;
        i.watches.insert(wd, (h, mask));
        map.entry(h).or_default().push(Watch {
            ino: ino.downgrade(),
            wd,
            mask,
        });
        Ok(wd)
    }

    /// inotify_rm_watch: the watch goes, IN_IGNORED is queued.
    pub fn rm_watch(&self, ino: &Shared<Inotify>, wd: i32) -> Result<(), NotifyError> {
        let w = {
            let mut map = self.lock();
            let mut i = ino.borrow_mut();
            let (h, _) = i.watches.remove(&wd).ok_or(NotifyError::Invalid)?;
            Self::unregister(&mut map, h, ino, wd);
            i.push(Event {
                wd,
                mask: IN_IGNORED,
                cookie: 0,
                name: Vec::new(),
            })
        };
        wake_all(w);
        Ok(())
    }

    /// Forget watch `wd` of `ino` on node `h`.
    fn unregister(map: &mut HashMap<u64, Vec<Watch>>, h: u64, ino: &Shared<Inotify>, wd: i32) {
        if let Some(v) = map.get_mut(&h) {
            v.retain(|w| !(w.wd == wd && w.ino.upgrade().as_ref().is_none_or(|x| x == ino)));
            if v.is_empty() {
                map.remove(&h);
            }
        }
    }

    /// Report `mask` about node `h` itself (`name` empty) or about its
    /// entry `name`, with `cookie`. `gone`: the node went (its watches end
    /// with IN_IGNORED).
    pub fn report(&self, h: u64, mask: u32, name: &[u8], cookie: u32, gone: bool) {
        let mut wake = Vec::new();
        {
            let mut map = self.lock();
            let Some(list) = map.get_mut(&h) else {
                return;
            };
            let mut ended = Vec::new();
            list.retain(|w| {
                let Some(ino) = w.ino.upgrade() else {
                    return false;
                };
                let mut i = ino.borrow_mut();
                let mut keep = true;
                if w.mask & mask & IN_ALL_EVENTS != 0 {
                    wake.extend(i.push(Event {
                        wd: w.wd,
                        mask,
                        cookie,
                        name: name.to_vec(),
                    }));
                    if w.mask & IN_ONESHOT != 0 {
                        keep = false;
                    }
                }
                if gone {
                    keep = false;
                }
                if !keep {
                    ended.push((ino.clone(), w.wd));
                }
                keep
            });
            if list.is_empty() {
                map.remove(&h);
            }
            for (ino, wd) in ended {
                let mut i = ino.borrow_mut();
                i.watches.remove(&wd);
                wake.extend(i.push(Event {
                    wd,
                    mask: IN_IGNORED,
                    cookie: 0,
                    name: Vec::new(),
                }));
            }
        }
        wake_all(wake);
    }

    /// An inotify instance's last fd closed: its watches go.
    pub fn release(&self, ino: &Shared<Inotify>) {
        let mut map = self.lock();
        let watches: Vec<(i32, u64)> = ino
            .borrow()
            .watches
            .iter()
            .map(|(wd, (h, _))| (*wd, *h))
            .collect();
        for (wd, h) in watches {
            Self::unregister(&mut map, h, ino, wd);
        }
    }
}

/// What an open file of the tree reports when its description goes
/// (IN_CLOSE_WRITE or IN_CLOSE_NOWRITE), made at open while something is
/// watched.
pub struct CloseNote {
    /// The tree's registry.
    pub notifier: Arc<Notifier>,
    /// The node.
    pub node: u64,
    /// Its directory and name there, when it has them.
    pub entry: Option<(u64, Vec<u8>)>,
    /// Opened for writing.
    pub write: bool,
    /// A directory (IN_ISDIR).
    pub dir: bool,
}

impl std::fmt::Debug for CloseNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloseNote")
            .field("node", &self.node)
            .finish()
    }
}

impl Drop for CloseNote {
    fn drop(&mut self) {
        let mut mask = if self.write {
            IN_CLOSE_WRITE
        } else {
            IN_CLOSE_NOWRITE
        };
        if self.dir {
            mask |= IN_ISDIR;
        }
        self.notifier.report(self.node, mask, b"", 0, false);
        if let Some((d, name)) = &self.entry {
            self.notifier.report(*d, mask, name, 0, false);
        }
    }
}

impl super::Fs {
    /// The tree's inotify registry.
    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    /// Report `mask` about entry `name` of directory `dir` (IN_ISDIR added
    /// for a directory `h`).
    pub(crate) fn note_entry(&self, dir: u64, name: &[u8], h: u64, mask: u32, cookie: u32) {
        if let Some(mask) = self.watched_mask(h, mask) {
            self.notifier.report(dir, mask, name, cookie, false);
        }
    }

    /// `mask` with IN_ISDIR for a directory `h`, when anything is watched.
    fn watched_mask(&self, h: u64, mask: u32) -> Option<u32> {
        if !self.notifier.active() {
            return None;
        }
        Some(if self.is_dir_handle(h) {
            mask | IN_ISDIR
        } else {
            mask
        })
    }

    /// Report `mask` about node `h`: to its own watches and to its
    /// directory's, with its name there. `gone`: the node went.
    pub(crate) fn note_node(&self, h: u64, mask: u32, gone: bool) {
        let Some(mask) = self.watched_mask(h, mask) else {
            return;
        };
        if mask & (IN_DELETE_SELF | IN_MOVE_SELF) == 0 {
            if let Some((dir, name)) = self.entry_of(h) {
                self.notifier.report(dir, mask, &name, 0, false);
            }
        }
        self.notifier.report(h, mask, b"", 0, gone);
    }

    /// Node `h`'s directory and name there, if it is a node of the tree.
    pub(crate) fn entry_of(&self, h: u64) -> Option<(u64, Vec<u8>)> {
        self.with_node(h, |n| (n.parent, n.name.clone()))
            .ok()
            .filter(|(_, name)| !name.is_empty())
    }

    /// What an open file of node `h` reports at its close, if anything is
    /// watched now (an IN_OPEN is reported here too).
    pub fn open_note(&self, h: u64, write: bool) -> Option<CloseNote> {
        if !self.notifier.active() {
            return None;
        }
        self.note_node(h, IN_OPEN, false);
        Some(CloseNote {
            notifier: self.notifier.clone(),
            node: h,
            entry: self.entry_of(h),
            write,
            dir: self.is_dir_handle(h),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(wd: i32, mask: u32, name: &[u8]) -> Event {
        Event {
            wd,
            mask,
            cookie: 0,
            name: name.to_vec(),
        }
    }

    #[test]
    fn events_encode_with_padded_names() {
        assert_eq!(ev(1, IN_IGNORED, b"").size(), 16);
        let e = ev(2, IN_CREATE, b"file");
        assert_eq!(e.size(), 32);
        let b = e.encode();
        assert_eq!(b.len(), 32);
        assert_eq!(&b[..4], &2i32.to_le_bytes());
        assert_eq!(&b[12..16], &16u32.to_le_bytes());
        assert_eq!(&b[16..21], b"file\0");
        // A 15-byte name and its NUL fill 16 bytes; 16 need 32.
        assert_eq!(ev(1, 0, &[b'a'; 15]).size(), 32);
        assert_eq!(ev(1, 0, &[b'a'; 16]).size(), 48);
    }

    #[test]
    fn equal_events_merge_and_a_full_queue_overflows_once() {
        let mut i = Inotify::default();
        let _ = i.push(ev(1, IN_MODIFY, b"f"));
        let _ = i.push(ev(1, IN_MODIFY, b"f"));
        assert_eq!(i.events.len(), 1);
        for n in 0..MAX_QUEUED + 10 {
            let _ = i.push(ev(1, IN_MODIFY, n.to_string().as_bytes()));
        }
        assert_eq!(i.events.len(), MAX_QUEUED + 1);
        assert_eq!(i.events.back().unwrap().mask, IN_Q_OVERFLOW);
    }

    #[test]
    fn watches_add_replace_report_and_go() {
        let n = Notifier::default();
        let ino = Shared::new(Inotify::default());
        assert_eq!(n.add_watch(&ino, 7, 0), Err(NotifyError::Invalid));
        let wd = n.add_watch(&ino, 7, IN_CREATE).unwrap();
        assert_eq!(n.add_watch(&ino, 7, IN_DELETE | IN_MASK_ADD), Ok(wd));
        assert_eq!(
            n.add_watch(&ino, 7, IN_CREATE | IN_MASK_CREATE),
            Err(NotifyError::Exists)
        );
        n.report(7, IN_MODIFY, b"x", 0, false);
        n.report(7, IN_DELETE, b"x", 0, false);
        assert_eq!(ino.borrow().events.len(), 1);
        n.rm_watch(&ino, wd).unwrap();
        assert_eq!(ino.borrow().events.back().unwrap().mask, IN_IGNORED);
        assert!(!n.active());
        assert_eq!(n.rm_watch(&ino, wd), Err(NotifyError::Invalid));
        // A one-shot watch ends after its first event.
        let wd = n.add_watch(&ino, 8, IN_CREATE | IN_ONESHOT).unwrap();
        n.report(8, IN_CREATE, b"a", 0, false);
        n.report(8, IN_CREATE, b"b", 0, false);
        let masks: Vec<u32> = ino.borrow().events.iter().map(|e| e.mask).collect();
        assert_eq!(&masks[masks.len() - 2..], &[IN_CREATE, IN_IGNORED]);
        assert!(!ino.borrow().watches.contains_key(&wd));
    }
}
