//! fork: a child vproc sharing its parent's memory copy-on-write.

use super::*;

/// fork: a child vproc sharing the parent's memory copy-on-write. Returns
/// the child's pid or -errno.
#[allow(clippy::too_many_arguments)]
pub(super) fn fork(
    k: &Arc<Kernel>,
    machine: &Machine,
    cpu: &Cpu,
    parent: &mut Vproc,
    flags: u64,
    ptid: u64,
    ctid: u64,
    tls: u64,
    stack: u64,
) -> i64 {
    const CLONE_SETTLS: u64 = 0x80000;
    const CLONE_PARENT_SETTID: u64 = 0x100000;
    const CLONE_CHILD_CLEARTID: u64 = 0x200000;
    const CLONE_CHILD_SETTID: u64 = 0x1000000;
    // Reserve a slot and a pid.
    let (pid, pgid, sid, nice_policy, target_cpu) = {
        let mut t = k.lock();
        if Kernel::alive(&t) >= k.opts.max_procs {
            t.eagain += 1;
            return -EAGAIN;
        }
        let mut pid = t.next_pid;
        while t.procs.contains_key(&pid) {
            pid = if pid >= 4_000_000 { 2 } else { pid + 1 };
        }
        t.next_pid = pid + 1;
        let (pgid, sid) = t
            .procs
            .get(&parent.pid)
            .map_or((parent.pid, parent.pid), |e| (e.pgid, e.sid));
        t.procs.insert(
            pid,
            Entry {
                ppid: parent.pid,
                pgid,
                sid,
                state: PState::Embryo,
                body: None,
                signals: Vec::new(),
                sig_flag: Arc::new(AtomicBool::new(false)),
                wake_pending: false,
                event_wait: false,
                watchdog_woke: false,
                comm: parent.comm.clone(),
                vms: None,
                itimers: Default::default(),
                stop_report: None,
                cont_report: false,
            },
        );
        t.max_alive = t.max_alive.max(t.procs.len());
        let policy = t
            .sched
            .task(tid(parent.pid))
            .map_or(Policy::NORMAL, |x| x.policy);
        let cpu = (0..t.sched.nr_cpus())
            .min_by_key(|&c| (t.sched.nr_running(c), c != cpu.index()))
            .unwrap_or(0);
        (pid, pgid, sid, policy, cpu)
    };
    let _ = (pgid, sid);
    let built = (|| -> Result<Vproc, i64> {
        let vms = machine.vmspace_create().map_err(|_| EAGAIN)?;
        let mm = parent.mm.fork(vms).map_err(|e| e.errno())?;
        let mut child = parent.fork_body(mm, pid);
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
    let e = t.procs.get_mut(&pid).expect("reserved");
    e.state = PState::Runnable;
    e.sig_flag = child.sig_flag.clone();
    e.vms = Some(child.mm.vmspace_arc());
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
    pub(super) fn kernel(&self) -> Result<Arc<Kernel>, i64> {
        self.k.clone().ok_or(ENOSYS)
    }

    /// clone/fork/vfork: left to the vCPU loop.
    pub fn sys_clone(
        &mut self,
        flags: u64,
        stack: u64,
        ptid: u64,
        ctid: u64,
        tls: u64,
    ) -> Result<i64, i64> {
        const CLONE_VM: u64 = 0x100;
        const CLONE_VFORK: u64 = 0x4000;
        const CLONE_THREAD: u64 = 0x10000;
        self.kernel()?;
        if flags & CLONE_THREAD != 0 || (flags & CLONE_VM != 0 && flags & CLONE_VFORK == 0) {
            // Threads share an address space: not supported.
            return Err(ENOSYS);
        }
        self.request = Some(Request::Fork {
            flags,
            ptid,
            ctid,
            tls,
            stack,
        });
        Ok(0)
    }
}
