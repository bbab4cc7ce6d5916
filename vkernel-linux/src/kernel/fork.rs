//! fork: a child vproc sharing its parent's memory copy-on-write.

use super::*;

/// The ids of a new process-table entry.
pub(super) struct Ids {
    pub(super) ppid: i32,
    pub(super) tgid: i32,
    pub(super) threads: usize,
    pub(super) exit_signal: i32,
    pub(super) pgid: i32,
    pub(super) sid: i32,
    /// clone's flags (whether a traced parent's child is traced too).
    pub(super) flags: u64,
}

/// The vCPU a new child starts on: an idle one (nothing runnable) if
/// there is one, the parent's own first; else the parent's. Like Linux's
/// fork balancing, which moves a child only to a CPU clearly less loaded:
/// a child sent to a vCPU whose task is CPU-bound waited there a whole
/// granularity plus a tick (it starts at that queue's `min_vruntime`, so
/// it cannot preempt), while on the parent's vCPU it runs as soon as the
/// parent waits for it (a shell's fork, exec, wait4), and its wake-ups
/// stay on one vCPU thread instead of crossing to another (see
/// docs/PERFORMANCE.md, "Pipelines beside CPU spinners").
pub(super) fn fork_cpu(t: &Table, parent_cpu: usize) -> usize {
    (0..t.sched.nr_cpus())
        .filter(|&c| t.sched.nr_running(c) == 0)
        .min_by_key(|&c| c != parent_cpu)
        .unwrap_or(parent_cpu)
}

/// Enter a new embryo (a process or a thread of `parent`'s) as `id` in the
/// table; returns its scheduling policy (the parent's) and the vCPU it
/// should start on ([`fork_cpu`] for a process).
pub(super) fn insert_embryo(
    t: &mut Table,
    cpu: &Cpu,
    parent: &Vproc,
    id: i32,
    ids: Ids,
) -> (Policy, usize) {
    t.procs.insert(
        id,
        Entry {
            ppid: ids.ppid,
            tgid: ids.tgid,
            threads: ids.threads,
            exit_signal: ids.exit_signal,
            blocked: parent.sig.blocked,
            pgid: ids.pgid,
            sid: ids.sid,
            state: PState::Embryo,
            body: None,
            signals: Vec::new(),
            sig_flag: Arc::new(AtomicBool::new(false)),
            wake_pending: false,
            event_wait: false,
            watchdog_woke: false,
            woken_after_watchdog: false,
            comm: parent.comm.clone(),
            cmdline: parent.cmdline.clone(),
            seen: super::introspect::Seen::of(parent),
            started: Instant::now(),
            vms: None,
            itimers: Default::default(),
            ptimers: BTreeMap::new(),
            stop_report: None,
            cont_report: false,
            death: None,
            shared: Vec::new(),
            pdeathsig: 0,
            trace: None,
            lock: None,
        },
    );
    adopt_trace(t, parent, id, ids.flags);
    t.max_alive = t.max_alive.max(Kernel::alive(t));
    let policy = t
        .sched
        .task(tid(parent.pid))
        .map_or(Policy::NORMAL, |x| x.policy);
    let c = if ids.tgid == id {
        fork_cpu(t, cpu.index())
    } else {
        // A thread: the least loaded vCPU, this one on a tie (threads of
        // one process run in parallel; a condvar ping-pong between two
        // threads measured no better kept on the creator's vCPU).
        (0..t.sched.nr_cpus())
            .min_by_key(|&c| (t.sched.nr_running(c), c != cpu.index()))
            .unwrap_or(0)
    };
    // Within the creator's affinity, which the new task inherits.
    (policy, t.sched.allowed_cpu(tid(parent.pid), c))
}

/// A new task's CPU affinity is its creator's.
pub(super) fn inherit_affinity(t: &mut Table, parent: Pid, child: Pid, now: u64) {
    if let Some(m) = t.sched.affinity(tid(parent)) {
        if let Err(e) = t.sched.set_affinity(tid(child), m, now) {
            log::warn!("affinity of {child}: {e}");
        }
    }
}

/// A traced parent's new child `id` is traced too when the tracer asked
/// ([`super::ptrace::child_link`]): a seized one first stops with
/// PTRACE_EVENT_STOP, another gets SIGSTOP.
fn adopt_trace(t: &mut Table, parent: &Vproc, id: Pid, flags: u64) {
    if parent.ptrace.is_none() {
        return;
    }
    let Some(link) = super::ptrace::child_link(t, parent, flags) else {
        return;
    };
    let seized = link.seized;
    let Some(e) = t.procs.get_mut(&id) else {
        return;
    };
    e.trace = Some(link);
    if !seized {
        e.signals.push(SigInfo {
            signo: signal::SIGSTOP,
            ..Default::default()
        });
    }
}

/// fork: a child vproc sharing the parent's memory copy-on-write. Returns
/// the child's pid or -errno.
pub(super) fn fork(
    k: &Arc<Kernel>,
    machine: &Machine,
    cpu: &Cpu,
    parent: &mut Vproc,
    args: CloneArgs,
    vfork: Option<crate::files::Shared<super::VforkDone>>,
) -> i64 {
    let CloneArgs {
        flags,
        ptid,
        ctid,
        tls,
        stack,
    } = args;
    use super::thread::{
        CLONE_CHILD_CLEARTID, CLONE_CHILD_SETTID, CLONE_PARENT_SETTID, CLONE_SETTLS,
    };
    // Reserve a slot and a pid.
    let (pid, pgid, sid, nice_policy, target_cpu) = {
        let mut t = k.lock();
        if Kernel::alive(&t) >= k.opts.max_procs || Kernel::threads_alive(&t) >= k.opts.max_threads
        {
            t.eagain += 1;
            return -EAGAIN;
        }
        let pid = super::thread::alloc_pid(&mut t);
        let (pgid, sid) = t
            .procs
            .get(&parent.thread.tgid)
            .map_or((parent.pid, parent.pid), |e| (e.pgid, e.sid));
        let (policy, cpu) = insert_embryo(
            &mut t,
            cpu,
            parent,
            pid,
            Ids {
                ppid: parent.thread.tgid,
                tgid: pid,
                threads: 1,
                exit_signal: (flags & 0xff) as i32,
                pgid,
                sid,
                flags,
            },
        );
        (pid, pgid, sid, policy, cpu)
    };
    let _ = (pgid, sid);
    // Sites that became known since the parent's program started are
    // rewritten in it first: the child runs them from the parent's text.
    // (Not in a traced vproc or one whose calls are logged: every call of
    // those must stop.)
    if let Some(k) = parent.site_book_user() {
        let threads = parent.mm.threads();
        super::site_book::refresh_known(&mut parent.mm, &k, threads);
    }
    let built = (|| -> Result<Vproc, i64> {
        let vms = machine.vmspace_create().map_err(|_| EAGAIN)?;
        let mm = parent.mm.fork(vms).map_err(|e| e.errno())?;
        let mut child = parent.fork_body(crate::thread::MmRef::new(mm), pid);
        // The parent's live FPU registers are the child's too.
        match cpu.fork_fpu(&parent.fpu) {
            Ok(f) => child.fpu = f,
            Err(e) => log::warn!("fork: the child's FPU state starts afresh: {e}"),
        }
        child.exit_signal = (flags & 0xff) as i32;
        if flags & CLONE_SETTLS != 0 {
            child.frame.fs_base = tls;
        }
        if stack != 0 {
            child.frame.rsp = stack;
        }
        if flags & CLONE_CHILD_SETTID != 0 {
            child
                .mm
                .write(ctid, &pid.to_le_bytes())
                .map_err(|e| e.errno())?;
        }
        if flags & CLONE_CHILD_CLEARTID != 0 {
            child.clear_child_tid = ctid;
        }
        child.vfork = vfork.map(super::VforkLink::Child);
        Ok(child)
    })();
    let mut t = k.lock();
    let child = match built {
        Ok(c) => c,
        Err(e) => {
            t.procs.remove(&pid);
            return -e;
        }
    };
    let now = k.now();
    if let Err(e) = t.sched.add_task(tid(pid), nice_policy, 0, target_cpu, now) {
        log::warn!("add_task {pid}: {e}");
        t.procs.remove(&pid);
        drop(t);
        drop(child);
        return -EAGAIN;
    }
    inherit_affinity(&mut t, parent.pid, pid, now);
    let e = t.procs.get_mut(&pid).expect("reserved");
    e.state = PState::Runnable;
    e.sig_flag = child.sig_flag.clone();
    e.vms = Some(child.mm.vmspace_arc());
    e.lock = Some(child.mm.lock_handle());
    e.body = Some(Box::new(child));
    t.forks += 1;
    if target_cpu != cpu.index() {
        k.kick(&t, target_cpu);
    }
    k.notify();
    drop(t);
    if flags & CLONE_PARENT_SETTID != 0 {
        let _ = parent.mm.write(ptid, &pid.to_le_bytes());
    }
    pid as i64
}

/// clone, in kernel mode (`self.k` is set).
impl Vproc {
    /// The virtual kernel this vproc runs in; ENOSYS before
    /// [`crate::launch::run`] gave it one (nothing runs then).
    pub(crate) fn kernel(&self) -> Result<Arc<Kernel>, i64> {
        self.k.clone().ok_or(ENOSYS)
    }

    /// clone/fork/vfork: the flags are checked here, the child is made by
    /// the vCPU loop ([`Next::Clone`]).
    pub fn sys_clone(&mut self, flags: u64, stack: u64, ptid: u64, ctid: u64, tls: u64) -> Next {
        match self.clone_args(flags, stack, ptid, ctid, tls) {
            Ok(args) => Next::Clone(args),
            Err(e) => Next::Ret(-e),
        }
    }

    /// The arguments of a clone the vkernel supports, or the errno.
    fn clone_args(
        &self,
        flags: u64,
        stack: u64,
        ptid: u64,
        ctid: u64,
        tls: u64,
    ) -> Result<CloneArgs, i64> {
        use super::thread::{
            CLONE_FILES, CLONE_FS, CLONE_SIGHAND, CLONE_THREAD, CLONE_VFORK, CLONE_VM,
        };
        self.kernel()?;
        // Linux's rules: a thread shares the handlers, which need the
        // address space.
        if (flags & CLONE_THREAD != 0 && flags & CLONE_SIGHAND == 0)
            || (flags & CLONE_SIGHAND != 0 && flags & CLONE_VM == 0)
        {
            return Err(EINVAL);
        }
        let thread = flags & CLONE_THREAD != 0;
        if (thread && flags & (CLONE_FS | CLONE_FILES) != CLONE_FS | CLONE_FILES)
            || (!thread && flags & CLONE_VM != 0 && flags & CLONE_VFORK == 0)
        {
            // Threads with their own fd table or cwd, and processes that
            // share an address space, are not supported.
            log::warn!("clone flags {flags:#x}: not supported (ENOSYS)");
            return Err(ENOSYS);
        }
        Ok(CloneArgs {
            flags,
            ptid,
            ctid,
            tls,
            stack,
        })
    }
}
