//! Threads in the process table: clone(CLONE_THREAD), process-directed
//! signals, group exits and de-threading (execve), and what a thread leaves
//! behind when it ends (robust futexes, CLONE_CHILD_CLEARTID). What threads
//! share and the process lock are [`crate::thread`].

use super::*;
use crate::files::FdTable;
use crate::thread::Kill;

/// clone: share the address space.
pub(super) const CLONE_VM: u64 = 0x100;
/// clone: share cwd and umask.
pub(super) const CLONE_FS: u64 = 0x200;
/// clone: share the fd table.
pub(super) const CLONE_FILES: u64 = 0x400;
/// clone: share the signal handlers.
pub(super) const CLONE_SIGHAND: u64 = 0x800;
/// clone: the parent waits for the child's exec or exit.
pub(super) const CLONE_VFORK: u64 = 0x4000;
/// clone: a thread of the same process.
pub(super) const CLONE_THREAD: u64 = 0x10000;
/// clone: the child's FS base.
pub(super) const CLONE_SETTLS: u64 = 0x80000;
/// clone: write the child's tid at `ptid`.
pub(super) const CLONE_PARENT_SETTID: u64 = 0x100000;
/// clone: clear `ctid` and wake it when the child ends.
pub(super) const CLONE_CHILD_CLEARTID: u64 = 0x200000;
/// clone: write the child's tid at `ctid`.
pub(super) const CLONE_CHILD_SETTID: u64 = 0x1000000;

const FUTEX_WAITERS: u32 = 0x8000_0000;
const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// Most robust-list entries walked (Linux's ROBUST_LIST_LIMIT).
const ROBUST_LIST_LIMIT: usize = 2048;
/// The size of `struct robust_list_head`.
pub const ROBUST_HEAD_SIZE: u64 = 24;

/// A free pid (tid) in the table.
pub(super) fn alloc_pid(t: &mut Table) -> Pid {
    let mut pid = t.next_pid;
    while t.procs.contains_key(&pid) {
        pid = if pid >= 4_000_000 { 2 } else { pid + 1 };
    }
    t.next_pid = pid + 1;
    pid
}

/// clone(CLONE_THREAD): a new thread of `parent`'s process. Returns its tid
/// or -errno.
pub(super) fn spawn_thread(k: &Arc<Kernel>, cpu: &Cpu, parent: &mut Vproc, args: CloneArgs) -> i64 {
    let CloneArgs {
        flags,
        ptid,
        ctid,
        tls,
        stack,
    } = args;
    let tgid = parent.thread.tgid;
    if flags & CLONE_SETTLS != 0 && !crate::canonical(tls) {
        // As arch_prctl(ARCH_SET_FS) refuses it.
        return -EPERM;
    }
    if parent.mm.kill_order().is_some() {
        // The process is going away (exit_group, execve in a thread).
        return -EAGAIN;
    }
    let (ntid, policy, target_cpu) = {
        let mut t = k.lock();
        if Kernel::threads_alive(&t) >= k.opts.max_threads {
            t.eagain += 1;
            return -EAGAIN;
        }
        let Some(leader) = t.procs.get(&tgid) else {
            return -EAGAIN;
        };
        let (ppid, pgid, sid) = (leader.ppid, leader.pgid, leader.sid);
        let ntid = alloc_pid(&mut t);
        let (policy, c) = super::fork::insert_embryo(
            &mut t,
            cpu,
            parent,
            ntid,
            super::fork::Ids {
                ppid,
                tgid,
                threads: 0,
                exit_signal: 0,
                pgid,
                sid,
                flags,
            },
        );
        (ntid, policy, c)
    };
    let mut child = parent.fork_body(parent.mm.share(), ntid);
    child.thread.tgid = tgid;
    // The live fd table stays with the parent until it leaves the kernel;
    // then it lives in the process (see `crate::thread`).
    child.fds = FdTable::default();
    child.exit_signal = 0;
    child.sig.altstack = (0, signal::SS_DISABLE, 0);
    match cpu.fork_fpu(&parent.fpu) {
        Ok(f) => child.fpu = f,
        Err(e) => log::warn!("clone: the thread's FPU state starts afresh: {e}"),
    }
    if flags & CLONE_SETTLS != 0 {
        child.frame.fs_base = tls;
    }
    if stack != 0 {
        child.frame.rsp = stack;
    }
    // The memory is shared: both writes land in the parent's view too. A
    // bad address is ignored, as Linux does.
    if flags & CLONE_CHILD_SETTID != 0 {
        let _ = parent.mm.write(ctid, &ntid.to_le_bytes());
    }
    if flags & CLONE_PARENT_SETTID != 0 {
        let _ = parent.mm.write(ptid, &ntid.to_le_bytes());
    }
    child.clear_child_tid = if flags & CLONE_CHILD_CLEARTID != 0 {
        ctid
    } else {
        0
    };
    let mut t = k.lock();
    let now = k.now();
    if let Err(e) = t.sched.add_task(tid(ntid), policy, 0, target_cpu, now) {
        log::warn!("add_task {ntid}: {e}");
        t.procs.remove(&ntid);
        drop(t);
        drop(child);
        return -EAGAIN;
    }
    super::fork::inherit_affinity(&mut t, parent.pid, ntid, now);
    if let Some(l) = t.procs.get_mut(&tgid) {
        l.threads += 1;
    }
    let e = t.procs.get_mut(&ntid).expect("reserved");
    e.state = PState::Runnable;
    e.sig_flag = child.sig_flag.clone();
    e.lock = Some(child.mm.lock_handle());
    e.body = Some(Box::new(child));
    if target_cpu != cpu.index() {
        k.kick(&t, target_cpu);
    }
    k.notify();
    ntid as i64
}

impl Kernel {
    /// The live threads of process `tgid` (not yet ended, not embryos).
    pub(super) fn members(t: &Table, tgid: Pid) -> Vec<Pid> {
        t.procs
            .iter()
            .filter(|(_, e)| {
                e.tgid == tgid && !matches!(e.state, PState::Zombie(_) | PState::Embryo)
            })
            .map(|(p, _)| *p)
            .collect()
    }

    /// Does the process `tgid` still have threads?
    /// Post `sig` (SI_KERNEL) to process `target`, or to every process
    /// of group `-target` ([`Wake::signal`]).
    pub(super) fn post_kernel_signal(&self, t: &mut Table, target: Pid, sig: i32) {
        let info = SigInfo {
            signo: sig,
            code: super::SI_KERNEL,
            ..Default::default()
        };
        let targets: Vec<Pid> = t
            .procs
            .iter()
            .filter(|(q, e)| {
                e.tgid == **q
                    && e.threads > 0
                    && if target > 0 {
                        **q == target
                    } else {
                        e.pgid == -target
                    }
            })
            .map(|(q, _)| *q)
            .collect();
        for p in targets {
            self.post_process_signal(t, p, info);
        }
    }

    pub(super) fn process_alive(t: &Table, tgid: Pid) -> bool {
        t.procs
            .get(&tgid)
            .is_some_and(|e| e.tgid == tgid && e.threads > 0)
    }

    /// The thread of process `tgid` that takes a process-directed `signo`:
    /// `me` (a running thread: its tid and the mask it accepts by) if it
    /// is one and accepts it, else the first other that accepts it (the
    /// leader first). None: every thread blocks it.
    pub(super) fn pick_thread(
        t: &Table,
        tgid: Pid,
        signo: i32,
        me: Option<(Pid, u64)>,
    ) -> Option<Pid> {
        let members = Self::members(t, tgid);
        let bit = signal::bit(signo);
        let mine = me.map(|m| m.0);
        if let Some((p, blocked)) = me {
            if members.contains(&p) && blocked & bit == 0 {
                return Some(p);
            }
        }
        let open =
            |p: &Pid| Some(*p) != mine && t.procs.get(p).is_some_and(|e| e.blocked & bit == 0);
        if members.contains(&tgid) && open(&tgid) {
            return Some(tgid);
        }
        members.iter().copied().find(|p| open(p))
    }

    /// Keep `info`, which every thread of `tgid` blocks, in the process's
    /// shared pending set. False if the process has a single thread (the
    /// signal then stays pending on that thread, as before threads).
    pub(super) fn share_signal(&self, t: &mut Table, tgid: Pid, info: SigInfo) -> bool {
        if Self::members(t, tgid).len() < 2 {
            return false;
        }
        let Some(l) = t.procs.get_mut(&tgid) else {
            return false;
        };
        signal::enqueue(&mut l.shared, info);
        true
    }

    /// Take the shared signals of `tgid` whose bit is in `accept`.
    pub(super) fn take_shared(&self, t: &mut Table, tgid: Pid, accept: u64) -> Vec<SigInfo> {
        let Some(l) = t.procs.get_mut(&tgid) else {
            return Vec::new();
        };
        let (take, keep) = std::mem::take(&mut l.shared)
            .into_iter()
            .partition(|s| accept & signal::bit(s.signo) != 0);
        l.shared = keep;
        take
    }

    /// The process has one thread left: its shared signals become that
    /// thread's.
    pub(super) fn unshare_signals(&self, t: &mut Table, tgid: Pid) {
        let shared = self.take_shared(t, tgid, u64::MAX);
        if let Some(p) = Self::members(t, tgid).first().copied() {
            for s in shared {
                self.post_signal(t, p, s);
            }
        }
    }

    /// Queue a process-directed signal for process `tgid`: SIGKILL, stop
    /// signals and SIGCONT go to every thread, others to one thread that
    /// does not block them, or to the shared pending set. False only when
    /// a real-time signal found its queue full.
    pub(super) fn post_process_signal(&self, t: &mut Table, tgid: Pid, info: SigInfo) -> bool {
        let every = info.signo == signal::SIGKILL
            || info.signo == signal::SIGCONT
            || signal::is_stop(info.signo);
        if every {
            for p in Self::members(t, tgid) {
                self.post_signal(t, p, info);
            }
            true
        } else if let Some(p) = Self::pick_thread(t, tgid, info.signo, None) {
            self.post_signal(t, p, info)
        } else if !self.share_signal(t, tgid, info) {
            match Self::members(t, tgid).first().copied() {
                Some(p) => self.post_signal(t, p, info),
                None => true,
            }
        } else {
            true
        }
    }

    /// Wake every thread of process `tgid` (a child's exit or stop: any of
    /// them may wait in wait4; the others retry their call and wait again).
    pub(super) fn wake_group_locked(&self, t: &mut Table, tgid: Pid) {
        for p in Self::members(t, tgid) {
            self.wake_locked(t, p);
        }
    }

    /// Make every thread of `tgid` but `except` look at its process's kill
    /// order soon: wake sleepers, resume stopped ones, kick running ones.
    pub(super) fn poke_group(&self, t: &mut Table, tgid: Pid, except: Pid) {
        for p in Self::members(t, tgid) {
            if p == except {
                continue;
            }
            let Some(e) = t.procs.get_mut(&p) else {
                continue;
            };
            e.sig_flag.store(true, Ordering::SeqCst);
            match e.state {
                PState::Sleeping(_) => self.wake_locked(t, p),
                PState::Stopped => self.resume_locked(t, p),
                PState::Traced => self.traced_signal(t, p, signal::SIGKILL),
                PState::Running(c) => {
                    // A thread deep in a guest loop must come out now.
                    self.kickers[c].kick();
                    self.notify();
                }
                _ => {}
            }
        }
    }

    /// A thread is about to end: if it ends the group (exit_group, a fatal
    /// signal), order every other thread to end and poke them, before
    /// anything (a CLEARTID wake-up) can let one of them run user code
    /// again.
    pub(super) fn begin_exit(&self, body: &Vproc) {
        if body.thread.exit_thread {
            return;
        }
        let status = body.exit.unwrap_or(ExitStatus::Exited(0));
        body.mm.set_kill(Kill::Group(status));
        if !body.threaded() {
            return;
        }
        let tgid = body.thread.tgid;
        let mut t = self.lock();
        self.poke_group(&mut t, tgid, body.pid);
        if let Some(l) = t.procs.get_mut(&tgid) {
            if l.death.is_none() {
                l.death = body.death.clone();
            }
        }
    }

    /// Remember the mask of thread `pid` of process `tgid` for
    /// [`Kernel::pick_thread`]; returns the shared signals it now takes.
    pub fn set_blocked_hint(&self, pid: Pid, tgid: Pid, blocked: u64) -> Vec<SigInfo> {
        let mut t = self.lock();
        if let Some(e) = t.procs.get_mut(&pid) {
            e.blocked = blocked;
        }
        self.take_shared(&mut t, tgid, !blocked)
    }

    /// [`Kernel::set_blocked_hint`] for the exitless server, when the new
    /// mask `blocked` of thread `pid` unblocks none of process `tgid`'s
    /// shared pending signals (those would be the thread's to deliver now,
    /// which only the exit path can): true when the hint was set.
    pub(crate) fn set_blocked_hint_quiet(&self, pid: Pid, tgid: Pid, blocked: u64) -> bool {
        let mut t = self.lock();
        let shared = t.procs.get(&tgid).map_or(0, |e| signal::mask_of(&e.shared));
        if shared & !blocked != 0 {
            return false;
        }
        if let Some(e) = t.procs.get_mut(&pid) {
            e.blocked = blocked;
        }
        true
    }

    /// The shared pending signals of process `tgid` (a mask).
    pub fn shared_pending(&self, tgid: Pid) -> u64 {
        self.lock()
            .procs
            .get(&tgid)
            .map_or(0, |e| signal::mask_of(&e.shared))
    }

    /// Take one shared pending signal of process `tgid` in `set`.
    pub fn take_shared_one(&self, tgid: Pid, set: u64) -> Option<SigInfo> {
        let mut t = self.lock();
        let l = t.procs.get_mut(&tgid)?;
        let i = signal::next_index(&l.shared, set)?;
        Some(l.shared.remove(i))
    }

    /// A disposition that ignores `signo` was set in process `tgid`: its
    /// pending instances go, from the shared set and every other thread
    /// (queued in the table, or in a parked thread's body), as Linux
    /// flushes them. A thread running now keeps what it already took.
    pub fn discard_pending(&self, tgid: Pid, signo: i32) {
        let mut t = self.lock();
        for p in Self::members(&t, tgid) {
            if let Some(e) = t.procs.get_mut(&p) {
                e.signals.retain(|s| s.signo != signo);
                if let Some(b) = e.body.as_deref_mut() {
                    b.sig.pending.retain(|s| s.signo != signo);
                }
            }
        }
        if let Some(l) = t.procs.get_mut(&tgid) {
            l.shared.retain(|s| s.signo != signo);
        }
    }

    /// Threads of process `tgid` that have not ended.
    pub fn group_threads(&self, tgid: Pid) -> usize {
        self.lock().procs.get(&tgid).map_or(0, |e| e.threads)
    }
}

/// A thread is about to end: hand its robust futexes on (FUTEX_OWNER_DIED,
/// one waiter woken) if other threads or processes can see them (other
/// threads share the memory, or the process has shared memory: a
/// process-shared robust mutex), and clear and wake its
/// CLONE_CHILD_CLEARTID word if other threads share the memory. The
/// process lock is held.
pub(super) fn exit_mm(k: &Kernel, body: &mut Vproc) {
    if !body.threaded() {
        if body.mm.has_shared() {
            walk_robust_list(k, body);
        }
        return;
    }
    walk_robust_list(k, body);
    let a = body.clear_child_tid;
    if a != 0 && body.mm.write(a, &0u32.to_le_bytes()).is_ok() && a.is_multiple_of(4) {
        k.futex_wake((body.mm.id(), a), 1, u32::MAX, None);
    }
    body.clear_child_tid = 0;
}

/// Walk the robust list of a thread that ends (bounded; every address is
/// checked by the copyin).
fn walk_robust_list(k: &Kernel, body: &mut Vproc) {
    let head = std::mem::take(&mut body.thread.robust_list);
    if head == 0 {
        return;
    }
    let (Ok(first), Ok(off), Ok(pending)) = (
        body.mm.read_u64(head),
        body.mm.read_u64(head.wrapping_add(8)),
        body.mm.read_u64(head.wrapping_add(16)),
    ) else {
        return;
    };
    let tid = body.pid as u32;
    let mut entry = first;
    let mut n = 0;
    while entry & !1 != head && n < ROBUST_LIST_LIMIT {
        let e = entry & !1;
        let Ok(next) = body.mm.read_u64(e) else {
            break;
        };
        if e != pending & !1 {
            futex_death(k, body, e.wrapping_add(off), tid, entry & 1 != 0, false);
        }
        entry = next;
        n += 1;
    }
    if pending != 0 {
        let e = pending & !1;
        futex_death(k, body, e.wrapping_add(off), tid, pending & 1 != 0, true);
    }
}

/// The owner `tid` of the futex at `uaddr` died: mark it FUTEX_OWNER_DIED
/// (keeping FUTEX_WAITERS) and wake one waiter, as Linux's
/// handle_futex_death does.
fn futex_death(k: &Kernel, body: &mut Vproc, uaddr: u64, tid: u32, pi: bool, pending: bool) {
    if !uaddr.is_multiple_of(4) {
        return;
    }
    // Linux wakes robust futexes as shared ones.
    let key = body
        .mm
        .shared_futex_key(uaddr)
        .unwrap_or((body.mm.id(), uaddr));
    for _ in 0..16 {
        let mut b = [0u8; 4];
        if body.mm.read(uaddr, &mut b).is_err() {
            return;
        }
        let v = u32::from_le_bytes(b);
        if pending && !pi && v == 0 {
            k.futex_wake(key, 1, u32::MAX, None);
            return;
        }
        if v & FUTEX_TID_MASK != tid {
            return;
        }
        let new = (v & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
        match cas_user_u32(body, uaddr, v, new) {
            Some(true) => {
                if !pi {
                    k.futex_wake(key, 1, u32::MAX, None);
                }
                return;
            }
            Some(false) => continue,
            None => return,
        }
    }
}

/// Compare-and-exchange the user word at `va` (4-aligned): atomic against
/// the other threads' user code. None if it cannot be written.
fn cas_user_u32(body: &mut Vproc, va: u64, old: u32, new: u32) -> Option<bool> {
    let mm = &mut *body.mm;
    let pte = mm.user_pte(va & !0xfff);
    if let Some(p) = pte.filter(|p| p.valid() && p.writable()) {
        let gpa = p.frame() + (va & 0xfff);
        let ptr = mm.ram().host_ptr(gpa, 4).ok()?;
        // SAFETY: `host_ptr` checked that [gpa, gpa + 4) lies inside the
        // guest RAM mapping, which lives as long as `mm`; `va` and so `gpa`
        // are 4-aligned, and AtomicU32 has the layout of u32. The guest may
        // access the word concurrently, which is what the atomic is for.
        let a = unsafe { &*(ptr as *const std::sync::atomic::AtomicU32) };
        return Some(
            a.compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok(),
        );
    }
    // Not writable in the guest's page tables (copy-on-write, or not
    // mapped yet): no user thread can store to it without a fault, and
    // faults wait for the process lock this thread holds.
    let mut b = [0u8; 4];
    mm.read(va, &mut b).ok()?;
    if u32::from_le_bytes(b) != old {
        return Some(false);
    }
    mm.write(va, &new.to_le_bytes()).ok()?;
    Some(true)
}

/// The thread calls, in kernel mode.
impl Vproc {
    /// set_robust_list(head, len).
    pub fn sys_set_robust_list(&mut self, head: u64, len: u64) -> Result<i64, i64> {
        if len != ROBUST_HEAD_SIZE {
            return Err(EINVAL);
        }
        self.thread.robust_list = head;
        Ok(0)
    }

    /// get_robust_list(tid, head_ptr, len_ptr): this thread's, or a
    /// parked thread's of the same process.
    pub fn sys_get_robust_list(&mut self, pid: i32, head: u64, len: u64) -> Result<i64, i64> {
        let h = if pid == 0 || pid == self.pid {
            self.thread.robust_list
        } else {
            let k = self.kernel().map_err(|_| ESRCH)?;
            let t = k.lock();
            let e = t.procs.get(&pid).ok_or(ESRCH)?;
            if e.tgid != self.thread.tgid {
                return Err(EPERM);
            }
            e.body.as_ref().ok_or(EPERM)?.thread.robust_list
        };
        self.mm.write(head, &h.to_le_bytes())?;
        self.mm.write(len, &ROBUST_HEAD_SIZE.to_le_bytes())?;
        Ok(0)
    }

    /// Before execve in a multithreaded process: order the other threads
    /// to end and wait (the call is retried) until they did. Ok(()) when
    /// this thread is alone.
    pub fn dethread(&mut self) -> Result<(), i64> {
        let Some(k) = self.k.clone() else {
            return Ok(());
        };
        let tgid = self.thread.tgid;
        let left = {
            let mut t = k.lock();
            let n = t.procs.get(&tgid).map_or(0, |e| e.threads);
            if n > 1 {
                // An exit_group that came first stays in force: then this
                // thread ends too, at its next look at the order.
                self.mm.set_kill(Kill::Dethread(self.pid));
                k.poke_group(&mut t, tgid, self.pid);
            }
            n
        };
        if left > 1 {
            return self.block().map(|_| ());
        }
        Ok(())
    }

    /// tgkill(tgid, tid, sig) (tgid -1: tkill).
    pub fn sys_tgkill(&mut self, tgid: i32, tid: i32, sig: i32) -> Result<i64, i64> {
        let info = SigInfo {
            signo: sig,
            code: signal::SI_TKILL,
            pid: self.thread.tgid,
            ..Default::default()
        };
        self.tgkill_info(tgid, tid, info)
    }

    /// tgkill with the siginfo `info` (rt_tgsigqueueinfo: the caller's).
    /// EAGAIN when a real-time signal finds the queue full.
    pub fn tgkill_info(&mut self, tgid: i32, tid: i32, info: SigInfo) -> Result<i64, i64> {
        let sig = info.signo;
        if tid <= 0 || (tgid != -1 && tgid <= 0) || !(0..=64).contains(&sig) {
            return Err(EINVAL);
        }
        let Some(k) = self.k.clone() else {
            if tid != self.pid || (tgid != -1 && tgid != self.thread.tgid) {
                return Err(ESRCH);
            }
            if sig != 0 && !self.queue_signal(info) {
                return Err(EAGAIN);
            }
            return Ok(0);
        };
        if let Some(r) = k.tgkill_other(self.thread.tgid, tgid, tid, info) {
            return r;
        }
        let mut t = k.lock();
        let ok = t.procs.get(&tid).is_some_and(|e| {
            (tgid == -1 || e.tgid == tgid) && !matches!(e.state, PState::Zombie(_))
        });
        if !ok {
            return Err(ESRCH);
        }
        if sig == 0 {
            return Ok(0);
        }
        let queued = if tid == self.pid {
            drop(t);
            self.queue_signal(info)
        } else {
            k.post_signal(&mut t, tid, info)
        };
        if queued {
            Ok(0)
        } else {
            Err(EAGAIN)
        }
    }
}
