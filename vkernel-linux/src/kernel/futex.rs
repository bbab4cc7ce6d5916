//! Futex waiters of the process table, keyed by (process, address): the
//! threads of a process meet on the same key; a shared futex in a
//! MAP_SHARED area is keyed by (shared object, offset) instead
//! (`Mm::shared_futex_key`), so processes meet there too (see
//! `docs/design/linux.md`, "Threads" and "Shared memory").

use super::*;

impl Kernel {
    /// Register `pid` as waiting on the futex `key`.
    pub fn futex_wait(&self, key: (usize, u64), pid: Pid, bits: u32) {
        self.lock().futexes.push((key, pid, bits));
    }

    /// Is `pid` still registered on a futex (not woken yet)?
    pub fn futex_waiting(&self, pid: Pid) -> bool {
        self.lock().futexes.iter().any(|w| w.1 == pid)
    }

    /// Forget `pid`'s futex wait (timeout, signal, exit).
    pub fn futex_cancel(&self, pid: Pid) {
        self.lock().futexes.retain(|w| w.1 != pid);
    }

    /// Wake up to `n` waiters of `key` whose bits meet `bits`; with
    /// `requeue`, move up to that many of the rest to another key.
    /// Returns how many were woken (plus requeued, for requeue).
    pub fn futex_wake(
        &self,
        key: (usize, u64),
        n: usize,
        bits: u32,
        requeue: Option<((usize, u64), usize)>,
    ) -> usize {
        let mut t = self.lock();
        let mut woken = Vec::new();
        let mut moved = 0;
        let mut i = 0;
        while i < t.futexes.len() {
            let (k, pid, b) = t.futexes[i];
            if k == key && b & bits != 0 {
                if woken.len() < n {
                    woken.push(pid);
                    t.futexes.remove(i);
                    continue;
                }
                if let Some((to, max)) = requeue {
                    if moved < max {
                        t.futexes[i].0 = to;
                        moved += 1;
                    }
                }
            }
            i += 1;
        }
        for pid in &woken {
            self.wake_locked(&mut t, *pid);
        }
        woken.len() + moved
    }
}
