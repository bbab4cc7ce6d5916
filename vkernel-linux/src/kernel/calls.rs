//! Process syscalls that need the process table: wait4, kill, process
//! groups and sessions, priorities, scheduling policies.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::*;

/// wait4's WNOHANG.
const WNOHANG: u64 = 1;
/// WUNTRACED (waitid's WSTOPPED).
const WUNTRACED: u64 = 2;
/// WCONTINUED.
const WCONTINUED: u64 = 8;
/// WNOWAIT.
const WNOWAIT: u64 = 0x0100_0000;
/// __WALL, __WCLONE: taken, as every child is waited for alike.
const WALL: u64 = 0x4000_0000 | 0x8000_0000;

/// The process syscalls, in kernel mode (`self.k` is set).
impl Vproc {
    /// wait4(pid, status, options, rusage).
    pub fn sys_wait4(
        &mut self,
        want: i32,
        status: u64,
        options: u64,
        rusage: u64,
    ) -> Result<i64, i64> {
        if options & !(WNOHANG | WUNTRACED | WCONTINUED | WNOWAIT | WALL) != 0 {
            return Err(EINVAL);
        }
        match self.find_waitable(want, options, true)? {
            Some((p, ws)) => {
                if status != 0 {
                    self.mm.write(status, &ws.to_le_bytes())?;
                }
                if rusage != 0 {
                    self.mm.write(rusage, &[0u8; 144])?;
                }
                Ok(p as i64)
            }
            None if options & WNOHANG != 0 => Ok(0),
            None => self.block(),
        }
    }

    /// waitid(idtype, id, infop, options, rusage): P_ALL, P_PID, P_PGID
    /// (0: the caller's group) and P_PIDFD; the child's state as a
    /// SIGCHLD siginfo (CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_STOPPED,
    /// CLD_CONTINUED). WEXITED must be asked for exited children to count.
    pub fn sys_waitid(
        &mut self,
        idtype: u64,
        id: i64,
        infop: u64,
        options: u64,
        rusage: u64,
    ) -> Result<i64, i64> {
        const WEXITED: u64 = 4;
        let kinds = WEXITED | WUNTRACED | WCONTINUED;
        if options & !(WNOHANG | kinds | WNOWAIT | WALL) != 0 || options & kinds == 0 {
            return Err(EINVAL);
        }
        let id32 = i32::try_from(id).map_err(|_| EINVAL)?;
        let want = match idtype {
            0 => -1,
            1 if id32 > 0 => id32,
            2 if id32 >= 0 => -id32,
            3 => match &self.fds.get(id)?.file.borrow().kind {
                crate::files::FileKind::PidFd(p) => p.borrow().pid,
                _ => return Err(EINVAL),
            },
            _ => return Err(EINVAL),
        };
        // P_PGID 0: the caller's group (wait4's 0).
        let want = if idtype == 2 && id32 == 0 { 0 } else { want };
        let found = self.find_waitable(want, options, options & WEXITED != 0)?;
        if found.is_none() && options & WNOHANG == 0 {
            return self.block();
        }
        let mut info = [0u8; 128];
        if let Some((p, ws)) = found {
            let (code, st) = match ws {
                0xffff => (6, signal::SIGCONT),                // CLD_CONTINUED
                w if w & 0xff == 0x7f => (5, (w >> 8) & 0xff), // CLD_STOPPED
                w if w & 0x7f == 0 => (1, (w >> 8) & 0xff),    // CLD_EXITED
                w if w & 0x80 != 0 => (3, w & 0x7f),           // CLD_DUMPED
                w => (2, w & 0x7f),                            // CLD_KILLED
            };
            info[..4].copy_from_slice(&signal::SIGCHLD.to_le_bytes());
            info[8..12].copy_from_slice(&i32::to_le_bytes(code));
            info[16..20].copy_from_slice(&p.to_le_bytes());
            info[24..28].copy_from_slice(&st.to_le_bytes());
        }
        if infop != 0 {
            self.mm.write(infop, &info)?;
        }
        if rusage != 0 {
            self.mm.write(rusage, &[0u8; 144])?;
        }
        Ok(0)
    }

    /// The first child matching `want` (wait4's pid argument) in a state
    /// `options` asks for (exited ones when `exited`), reaped unless
    /// WNOWAIT: its pid and wait status. ECHILD when no child matches.
    fn find_waitable(
        &mut self,
        want: i32,
        options: u64,
        exited: bool,
    ) -> Result<Option<(Pid, i32)>, i64> {
        let k = self.kernel().map_err(|_| ECHILD)?;
        let mut t = k.lock();
        // Children belong to the process: any thread may wait for them.
        let me = self.thread.tgid;
        // Its tracees' stops and exits first (reported whatever the
        // options say, as Linux does).
        let (traced_any, traced) = k.traced_waitable(
            &mut t,
            me,
            want,
            options & WALL != 0,
            options & WNOWAIT != 0,
        );
        if traced.is_some() {
            return Ok(traced);
        }
        let (any, found) = Kernel::scan_children(&mut t, me, want, options, exited);
        if let Some((p, _, true)) = found {
            if options & WNOWAIT == 0 {
                t.procs.remove(&p);
            }
        }
        if !any && !traced_any {
            return Err(ECHILD);
        }
        Ok(found.map(|(p, ws, _)| (p, ws)))
    }

    /// kill(pid, sig) to other processes (and this one): one thread of
    /// each target process takes it ([`Kernel::post_process_signal`]).
    pub fn sys_kill(&mut self, pid: i32, sig: i32) -> Result<i64, i64> {
        let info = SigInfo {
            signo: sig,
            code: 0,
            pid: self.thread.tgid,
            ..Default::default()
        };
        self.kill_info(pid, info)
    }

    /// kill with the siginfo `info` (kill: SI_USER; rt_sigqueueinfo: the
    /// caller's). EAGAIN when a real-time signal finds a queue full, except
    /// for kill (SI_USER), which Linux never fails for that.
    pub fn kill_info(&mut self, pid: i32, info: SigInfo) -> Result<i64, i64> {
        let sig = info.signo;
        if !(0..=64).contains(&sig) {
            return Err(EINVAL);
        }
        let k = self.kernel()?;
        let me = self.thread.tgid;
        if let Some(r) = k.kill_other(me, pid, info) {
            return r;
        }
        let mut mine = false;
        let mut full = false;
        {
            let mut t = k.lock();
            let mypgid = t.procs.get(&me).map_or(me, |e| e.pgid);
            // kill(tid) of a thread reaches its process, as on Linux.
            let pid = match t.procs.get(&pid) {
                Some(e) if pid > 0 => e.tgid,
                _ => pid,
            };
            let targets: Vec<Pid> = t
                .procs
                .iter()
                .filter(|(q, e)| {
                    e.tgid == **q
                        && Kernel::process_alive(&t, **q)
                        && match pid {
                            0 => e.pgid == mypgid,
                            -1 => **q != me,
                            p if p > 0 => **q == p,
                            p => e.pgid == -p,
                        }
                })
                .map(|(p, _)| *p)
                .collect();
            if targets.is_empty() && pid != -1 {
                return Err(ESRCH);
            }
            if sig == 0 {
                return Ok(0);
            }
            let every = sig == signal::SIGKILL || sig == signal::SIGCONT || signal::is_stop(sig);
            for p in targets {
                if p != me {
                    full |= !k.post_process_signal(&mut t, p, info);
                    continue;
                }
                // This thread is not in the table while it runs: it takes
                // its share itself.
                let picks: Vec<Pid> = if every {
                    Kernel::members(&t, p)
                } else {
                    let m = Some((self.pid, self.sig.blocked & !self.thread.sigwait));
                    match Kernel::pick_thread(&t, p, sig, m) {
                        Some(q) => vec![q],
                        None if k.share_signal(&mut t, p, info) => Vec::new(),
                        None => vec![self.pid],
                    }
                };
                for q in picks {
                    if q == self.pid {
                        mine = true;
                    } else {
                        full |= !k.post_signal(&mut t, q, info);
                    }
                }
            }
        }
        if mine {
            full |= !self.queue_signal(info);
        }
        if full && info.code != signal::SI_USER {
            return Err(EAGAIN);
        }
        Ok(0)
    }

    /// PR_SET_PDEATHSIG: remember `sig` for this thread, in the table (the
    /// parent's exit, [`Kernel::process_exit_locked`], sends it).
    pub fn set_pdeathsig(&mut self, sig: i32) {
        self.thread.pdeathsig = sig;
        if let Some(k) = &self.k {
            if let Some(e) = k.lock().procs.get_mut(&self.pid) {
                e.pdeathsig = sig;
            }
        }
    }

    /// getppid.
    pub fn sys_getppid(&self) -> i64 {
        let ppid = self.k.as_ref().and_then(|k| k.parent_of(self.thread.tgid));
        ppid.unwrap_or(PPID) as i64
    }

    /// setpgid(pid, pgid), with Linux's checks: `pid` is this process or
    /// a child of it in the same session (ESRCH otherwise, EPERM in
    /// another session), a thread that is not a leader is EINVAL, a
    /// session leader cannot move (EPERM), and a group other than the
    /// process's own must exist in the caller's session (EPERM). (Linux's
    /// EACCES for a child that has called execve is not checked.)
    pub fn sys_setpgid(&mut self, pid: i32, pgid: i32) -> Result<i64, i64> {
        let Some(k) = self.k.clone() else {
            return Ok(0);
        };
        let me = self.thread.tgid;
        let pid = if pid == 0 { me } else { pid };
        let pgid = if pgid == 0 { pid } else { pgid };
        if pgid < 0 {
            return Err(EINVAL);
        }
        let mut t = k.lock();
        let mysid = t.procs.get(&me).map_or(me, |e| e.sid);
        let Some(e) = t.procs.get(&pid) else {
            return Err(ESRCH);
        };
        if e.tgid != pid {
            return Err(EINVAL);
        }
        if pid != me {
            if e.ppid != me {
                return Err(ESRCH);
            }
            if e.sid != mysid {
                return Err(EPERM);
            }
        }
        if e.sid == pid {
            // A session leader.
            return Err(EPERM);
        }
        if pgid != pid && !t.procs.values().any(|g| g.pgid == pgid && g.sid == mysid) {
            return Err(EPERM);
        }
        // Every thread of the process carries its group.
        for e in t.procs.values_mut().filter(|e| e.tgid == pid) {
            e.pgid = pgid;
        }
        Ok(0)
    }

    /// getpgid(pid) (and getpgrp) and getsid(pid): ESRCH for a process
    /// that does not exist.
    pub fn sys_pgid(&mut self, which: u64, pid: i32) -> Result<i64, i64> {
        let Some(k) = self.k.clone() else {
            return Ok(crate::PID as i64);
        };
        let target = if pid == 0 { self.thread.tgid } else { pid };
        let t = k.lock();
        let Some(e) = t.procs.get(&target).filter(|_| target > 0) else {
            return Err(ESRCH);
        };
        Ok(match which {
            124 => e.sid,
            _ => e.pgid,
        } as i64)
    }

    /// setsid(): a new session and process group, both with this
    /// process's id; EPERM if a process group with that id exists (the
    /// caller leads one).
    pub fn sys_setsid(&mut self) -> Result<i64, i64> {
        let k = self.kernel()?;
        let me = self.thread.tgid;
        let mut t = k.lock();
        if t.procs.values().any(|e| e.pgid == me) {
            return Err(EPERM);
        }
        for e in t.procs.values_mut().filter(|e| e.tgid == me) {
            e.sid = me;
            e.pgid = me;
        }
        Ok(me as i64)
    }

    /// setpriority / getpriority (PRIO_PROCESS only).
    pub fn sys_priority(&mut self, set: bool, which: u64, who: i32, prio: i32) -> Result<i64, i64> {
        if which != 0 {
            return if set { Ok(0) } else { Ok(20) };
        }
        let Some(k) = self.k.clone() else {
            return if set { Ok(0) } else { Ok(20) };
        };
        let target = if who == 0 { self.pid } else { who };
        let mut t = k.lock();
        let now = k.now();
        let Some(task) = t.sched.task(tid(target)) else {
            return Err(ESRCH);
        };
        let cur = task.policy.nice().unwrap_or(0);
        if !set {
            return Ok(20 - cur as i64);
        }
        let nice = prio.clamp(-20, 19) as i8;
        if task.policy.is_rt() {
            return Ok(0);
        }
        t.sched
            .set_nice(tid(target), nice, now)
            .map_err(|_| EINVAL)?;
        Ok(0)
    }

    /// sched_setscheduler / sched_setparam / sched_getscheduler /
    /// sched_getparam: `nr` is the call, `param` the `struct sched_param`
    /// (one int, the real-time priority).
    pub fn sys_sched(&mut self, nr: u64, pid: i32, policy: i32, param: u64) -> Result<i64, i64> {
        const SETPARAM: u64 = libc::SYS_sched_setparam as u64;
        const GETPARAM: u64 = libc::SYS_sched_getparam as u64;
        const SETSCHEDULER: u64 = libc::SYS_sched_setscheduler as u64;
        const GETSCHEDULER: u64 = libc::SYS_sched_getscheduler as u64;
        let k = self.kernel()?;
        if pid < 0 || (param == 0 && nr != GETSCHEDULER) {
            return Err(EINVAL);
        }
        let target = if pid == 0 { self.pid } else { pid };
        let prio = if matches!(nr, SETPARAM | SETSCHEDULER) {
            let mut b = [0u8; 4];
            self.mm.read(param, &mut b)?;
            i32::from_le_bytes(b)
        } else {
            0
        };
        let mut t = k.lock();
        let now = k.now();
        // A zombie (exited, not reaped) still answers with the policy it
        // died with, as on Linux; setting one on it changes nothing.
        let (cur, zombie) = match t.sched.task(tid(target)) {
            Some(task) => (task.policy, false),
            // The first vproc's parent (the vkernel's side, as init):
            // SCHED_OTHER, and not to be changed.
            None if target == crate::PPID && !t.procs.contains_key(&target) => {
                if matches!(nr, SETPARAM | SETSCHEDULER) {
                    return Err(EPERM);
                }
                (Policy::Fair { nice: 0 }, true)
            }
            None => (zombie_policy(&t, target).ok_or(ESRCH)?, true),
        };
        match nr {
            SETPARAM | SETSCHEDULER => {
                // sched_setparam keeps the policy.
                let policy = if nr == SETPARAM {
                    match cur {
                        Policy::Fifo { .. } => 1,
                        Policy::RoundRobin { .. } => 2,
                        Policy::Fair { .. } => 0,
                    }
                } else {
                    policy
                };
                // SCHED_RESET_ON_FORK may be or'ed in; children of a
                // vproc inherit its policy either way.
                let p = match policy & !0x4000_0000 {
                    0 | 3 | 5 => {
                        if prio != 0 {
                            return Err(EINVAL);
                        }
                        Policy::Fair {
                            nice: cur.nice().unwrap_or(0),
                        }
                    }
                    1 | 2 => {
                        if !(1..=99).contains(&prio) {
                            return Err(EINVAL);
                        }
                        if policy & 0xff == 1 {
                            Policy::Fifo { prio: prio as u8 }
                        } else {
                            Policy::RoundRobin { prio: prio as u8 }
                        }
                    }
                    _ => return Err(EINVAL),
                };
                if zombie {
                    return Ok(0);
                }
                t.sched
                    .set_policy(tid(target), p, now)
                    .map_err(|_| EINVAL)?;
                // A real-time vproc may now preempt the one running.
                k.kick_rescheduled(&t);
                Ok(0)
            }
            GETSCHEDULER => Ok(match cur {
                Policy::Fifo { .. } => 1,
                Policy::RoundRobin { .. } => 2,
                _ => 0,
            }),
            GETPARAM => {
                let p = cur.rt_prio().unwrap_or(0) as i32;
                drop(t);
                self.mm.write(param, &p.to_le_bytes())?;
                Ok(0)
            }
            _ => Err(ENOSYS),
        }
    }

    /// The scheduling policy of thread `pid` (0: the caller): a zombie's is
    /// the one it died with (sched_getattr).
    pub fn sched_policy(&self, pid: i32) -> Result<Policy, i64> {
        let k = self.kernel()?;
        if pid < 0 {
            return Err(EINVAL);
        }
        let target = if pid == 0 { self.pid } else { pid };
        let t = k.lock();
        match t.sched.task(tid(target)) {
            Some(task) => Ok(task.policy),
            None => zombie_policy(&t, target).ok_or(ESRCH),
        }
    }

    /// Give thread `pid` (0: the caller) policy `p` (sched_setattr); a
    /// zombie keeps its own.
    pub fn set_sched_policy(&mut self, pid: i32, p: Policy) -> Result<(), i64> {
        let k = self.kernel()?;
        if pid < 0 {
            return Err(EINVAL);
        }
        let target = if pid == 0 { self.pid } else { pid };
        let mut t = k.lock();
        let now = k.now();
        if t.sched.task(tid(target)).is_none() {
            return zombie_policy(&t, target).map(|_| ()).ok_or(ESRCH);
        }
        t.sched
            .set_policy(tid(target), p, now)
            .map_err(|_| EINVAL)?;
        k.kick_rescheduled(&t);
        Ok(())
    }

    /// sched_rr_get_interval(pid, tp): the round-robin timeslice of
    /// SCHED_RR (100 ms), 0 for SCHED_FIFO, a fair vproc's share of the
    /// latency period ([`crate::core::sched::Scheduler::rr_interval`]).
    pub fn sys_sched_rr_get_interval(&mut self, pid: i32, tp: u64) -> Result<i64, i64> {
        let k = self.kernel()?;
        if pid < 0 {
            return Err(EINVAL);
        }
        let target = if pid == 0 { self.pid } else { pid };
        let ns = k.lock().sched.rr_interval(tid(target)).ok_or(ESRCH)?;
        let mut ts = [0u8; 16];
        ts[..8].copy_from_slice(&((ns / 1_000_000_000) as i64).to_le_bytes());
        ts[8..].copy_from_slice(&((ns % 1_000_000_000) as i64).to_le_bytes());
        self.mm.write(tp, &ts)?;
        Ok(0)
    }
}

/// The policy a zombie thread `pid` died with (its exit record), if `pid`
/// is a zombie.
fn zombie_policy(t: &Table, pid: Pid) -> Option<Policy> {
    let e = t.procs.get(&pid)?;
    if !matches!(e.state, PState::Zombie(_)) {
        return None;
    }
    t.records
        .iter()
        .rev()
        .find(|r| r.pid == pid)
        .map(|r| r.policy)
}

impl Kernel {
    /// Is `pid` a thread in the table, not yet reaped (a zombie counts,
    /// as Linux finds a task until it is reaped)?
    pub fn task_exists(&self, pid: i32) -> bool {
        self.lock()
            .procs
            .get(&pid)
            .is_some_and(|e| !matches!(e.state, PState::Embryo))
    }

    /// How many vCPUs the vprocs are scheduled on.
    pub fn cpu_count(&self) -> usize {
        self.entered.len()
    }

    /// The vCPU running thread `pid` now, if one is.
    pub fn cpu_of(&self, pid: i32) -> Option<usize> {
        self.lock().running.iter().position(|r| *r == Some(pid))
    }

    /// CPU time of thread `pid` (`process`: of its whole process, ended
    /// threads included) as the scheduler has accounted it, brought up
    /// to now for a thread running on a vCPU (CLOCK_THREAD_CPUTIME_ID,
    /// CLOCK_PROCESS_CPUTIME_ID). None: no such thread.
    pub fn cpu_clock_time(&self, pid: i32, process: bool) -> Option<std::time::Duration> {
        let now = self.now();
        let mut t = self.lock();
        let tgid = t.procs.get(&pid)?.tgid;
        let members: Vec<i32> = if process {
            Kernel::members(&t, tgid)
        } else {
            vec![pid]
        };
        for cpu in 0..t.running.len() {
            if t.running[cpu].is_some_and(|r| members.contains(&r)) {
                let _ = t.sched.update_accounting(cpu, now);
            }
        }
        let mut ns: u64 = members
            .iter()
            .map(|&p| t.sched.runtime(tid(p)).unwrap_or(0))
            .sum();
        if process {
            ns += t
                .records
                .iter()
                .filter(|r| r.pid == tgid)
                .map(|r| r.runtime_ns)
                .sum::<u64>();
        }
        Some(std::time::Duration::from_nanos(ns))
    }

    /// The process (tgid) thread `pid` belongs to.
    pub fn tgid_of(&self, pid: i32) -> Option<i32> {
        self.lock().procs.get(&pid).map(|e| e.tgid)
    }

    /// The host name and domain name uname reports.
    pub fn uts(&self) -> (Vec<u8>, Vec<u8>) {
        self.uts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// sethostname (`domain` false) or setdomainname.
    pub fn set_uts(&self, domain: bool, name: Vec<u8>) {
        let mut u = self.uts.lock().unwrap_or_else(|e| e.into_inner());
        if domain {
            u.1 = name;
        } else {
            u.0 = name;
        }
    }
}

/// wait4 and sched_yield for the exitless server, and the child search
/// they share with the exit path.
impl Kernel {
    /// The first child of process `me` matching `want` (wait4's pid
    /// argument) in a state `options` asks for (exited ones when
    /// `exited`; stop and continue reports are consumed unless WNOWAIT):
    /// whether any child matches, and the found one's pid, wait status
    /// and whether it is a zombie (left in the table).
    fn scan_children(
        t: &mut Table,
        me: Pid,
        want: i32,
        options: u64,
        exited: bool,
    ) -> (bool, Option<(Pid, i32, bool)>) {
        let mypgid = t.procs.get(&me).map_or(me, |e| e.pgid);
        // A process is its leader's entry; it is a zombie once all its
        // threads ended.
        let matches = |pid: Pid, e: &Entry| {
            e.ppid == me
                && e.tgid == pid
                && match want {
                    -1 => true,
                    0 => e.pgid == mypgid,
                    p if p > 0 => pid == p,
                    p => e.pgid == -p,
                }
        };
        let mut any = false;
        for (p, e) in t.procs.iter_mut() {
            if !matches(*p, e) {
                continue;
            }
            any = true;
            // A child another process traces is its tracer's to report
            // first.
            let traced = e.trace.as_ref().is_some_and(|l| l.tracer_tgid != me);
            if let PState::Zombie(s) = e.state {
                if e.threads == 0 && exited && !traced {
                    return (true, Some((*p, wstatus(s), true)));
                }
            }
            if options & WUNTRACED != 0 {
                if let Some(sig) = e.stop_report {
                    if options & WNOWAIT == 0 {
                        e.stop_report = None;
                    }
                    return (true, Some((*p, (sig << 8) | 0x7f, false)));
                }
            }
            if options & WCONTINUED != 0 && e.cont_report {
                if options & WNOWAIT == 0 {
                    e.cont_report = false;
                }
                return (true, Some((*p, 0xffff, false)));
            }
        }
        (any, None)
    }

    /// wait4(`want`, .., `options`) by process `me` when it need not
    /// wait, for the exitless server: a zombie child reaped once `commit`
    /// (writing its pid's wait status to the caller) agrees, Ok(pid); none
    /// ready with WNOHANG, Ok(0); no child, ECHILD. None, changing nothing,
    /// for the exit path: options beyond WNOHANG and __WALL, a process that
    /// traces others, nothing ready without WNOHANG, or `commit` refused.
    pub(crate) fn wait_ready(
        &self,
        me: Pid,
        want: i32,
        options: u64,
        commit: &mut dyn FnMut(i32) -> bool,
    ) -> Option<Result<i64, i64>> {
        if options & !(WNOHANG | WALL) != 0 || want == i32::MIN {
            return None;
        }
        let mut t = self.lock();
        let tracer = t.trace_exits.iter().any(|x| x.tracer_tgid == me)
            || t.procs
                .values()
                .any(|e| e.trace.as_ref().is_some_and(|l| l.tracer_tgid == me));
        if tracer {
            return None;
        }
        match Self::scan_children(&mut t, me, want, options, true) {
            (_, Some((p, ws, true))) => {
                if !commit(ws) {
                    return None;
                }
                t.procs.remove(&p);
                Some(Ok(i64::from(p)))
            }
            (_, Some(_)) => None,
            (false, None) => Some(Err(ECHILD)),
            (true, None) if options & WNOHANG != 0 => Some(Ok(0)),
            (true, None) => None,
        }
    }

    /// Would sched_yield on vCPU `cpu` run the caller again at once (no
    /// other task is queued there)? Then the exitless server answers it.
    pub(crate) fn yield_is_noop(&self, cpu: usize) -> bool {
        self.lock().sched.nr_running(cpu) <= 1
    }
}
