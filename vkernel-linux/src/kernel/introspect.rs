//! Introspection of a running virtual kernel: `ps` and memory statistics.

use super::*;

impl Kernel {
    /// A table for ps (the debugger).
    pub fn ps(&self) -> String {
        let t = self.lock();
        let mut s =
            String::from("  PID  PPID  PGID STATE        CPU   RUNTIME_MS POLICY          CMD\n");
        for (pid, e) in &t.procs {
            let task = t.sched.task(tid(*pid));
            let st = match e.state {
                PState::Embryo => "embryo".to_string(),
                PState::Runnable => "runnable".to_string(),
                PState::Running(c) => format!("running/{c}"),
                PState::Sleeping(None) => "sleeping".to_string(),
                PState::Sleeping(Some(_)) => "sleep-timed".to_string(),
                PState::Stopped => "stopped".to_string(),
                PState::Traced => "traced".to_string(),
                PState::Zombie(_) => "zombie".to_string(),
            };
            s += &format!(
                "{pid:5} {:5} {:5} {st:12} {:3} {:12.1} {:15} {}\n",
                e.ppid,
                e.pgid,
                task.map_or(0, |x| x.cpu),
                task.map_or(0, |x| x.sum_exec_runtime) as f64 / 1e6,
                format!("{:?}", task.map_or(Policy::NORMAL, |x| x.policy)),
                e.comm
            );
        }
        s += &format!(
            "{} vprocs (limit {}), {} forks, {} refused, {} context switches\n",
            t.procs.len(),
            self.opts.max_procs,
            t.forks,
            t.eagain,
            t.sched.total_context_switches()
        );
        s
    }

    /// Memory statistics of every vproc that is not running right now
    /// (`memrank`: ranked by PSS).
    /// memstats (one vproc when `pid` is given, else every vproc) or
    /// memrank (`ranked`: every vproc sorted by PSS, then frame totals), as
    /// a table or JSON. Sharing is computed over all live vprocs.
    pub fn memstats(&self, pid: Option<u32>, ranked: bool, json: bool) -> String {
        let vms: Vec<(Arc<Vmspace>, String)> = {
            let t = self.lock();
            t.procs
                .iter()
                .filter_map(|(p, e)| e.vms.clone().map(|v| (v, format!("{p} {}", e.comm))))
                .collect()
        };
        let named: Vec<(&Vmspace, &str)> = vms.iter().map(|(v, n)| (&**v, n.as_str())).collect();
        let m = match MemStats::collect_named(&named) {
            Ok(m) => m,
            Err(e) => return format!("memstats: {e}\n"),
        };
        if let Some(pid) = pid {
            let prefix = format!("{pid} ");
            return match m.usages().iter().find(|u| u.name.starts_with(&prefix)) {
                Some(u) if json => u.to_json() + "\n",
                Some(u) => u.to_table(),
                None => format!("memstats: no vproc {pid} with a vmspace here\n"),
            };
        }
        match (ranked, json) {
            (_, true) => m.to_json() + "\n",
            (true, false) => m.to_table(),
            (false, false) => m.usages().iter().map(|u| u.to_table()).collect(),
        }
    }
}

/// What `/proc` shows of one process (its leader's entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    /// Its pid (the leader's).
    pub pid: i32,
    /// Its parent's.
    pub ppid: i32,
    /// Its process group.
    pub pgid: i32,
    /// Its session.
    pub sid: i32,
    /// Linux's state letter: R running or runnable, S sleeping, T
    /// stopped, Z zombie.
    pub state: char,
    /// Threads alive.
    pub threads: usize,
    /// Its command name.
    pub comm: String,
    /// Its arguments, each with its NUL (empty for a zombie, as Linux).
    pub cmdline: Arc<Vec<u8>>,
    /// CPU time of all its threads, in nanoseconds.
    pub runtime_ns: u64,
    /// When it was made, in nanoseconds since the virtual kernel started.
    pub start_ns: u64,
    /// Its nice value (its leader's).
    pub nice: i32,
}

/// What `/proc` shows of a process that may be running when asked: its
/// environment, program, current directory and limits as of its last put
/// back in the table.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// `/proc/PID/environ`.
    pub environ: Arc<Vec<u8>>,
    /// `/proc/PID/exe`'s target.
    pub exe: Arc<Vec<u8>>,
    /// `/proc/PID/cwd` (a node of the tree).
    pub cwd: u64,
    /// `/proc/PID/limits`.
    pub limits: crate::rlimit::Rlimits,
}

impl Seen {
    /// What `b` shows now.
    pub(super) fn of(b: &Vproc) -> Seen {
        Seen {
            environ: b.environ.clone(),
            exe: b.exe.clone(),
            cwd: b.cwd,
            limits: b.fds.limits.clone(),
        }
    }

    /// Catch up with `b` (cheap when nothing changed).
    pub(super) fn update(&mut self, b: &Vproc) {
        if !Arc::ptr_eq(&self.environ, &b.environ) {
            self.environ = b.environ.clone();
        }
        if self.exe[..] != b.exe[..] {
            self.exe = b.exe.clone();
        }
        self.cwd = b.cwd;
        if !b.threaded() {
            self.limits = b.fds.limits.clone();
        }
    }
}

impl Kernel {
    /// What `/proc` shows of process `pid` (a thread's id names its
    /// process) while it may be running.
    pub fn seen(&self, pid: Pid) -> Option<Seen> {
        let t = self.lock();
        let tgid = t.procs.get(&pid)?.tgid;
        t.procs.get(&tgid).map(|e| e.seen.clone())
    }

    /// Run `f` on the fd table and memory map of process `pid` when they
    /// can be read without waiting: some thread of it is parked in the
    /// table and no thread of it is in the kernel (the exitless server's
    /// way, [`crate::thread::ProcessLock::try_with_parts`]); or it is a
    /// single-threaded process parked with its parts in its body. None
    /// otherwise (it is running on a vCPU, or in the kernel).
    pub fn with_parked<T>(
        &self,
        pid: Pid,
        f: impl FnOnce(&crate::files::FdTable, &crate::mm::Mm) -> T,
    ) -> Option<T> {
        let t = self.lock();
        let tgid = t.procs.get(&pid)?.tgid;
        let body = t
            .procs
            .values()
            .filter(|e| e.tgid == tgid)
            .find_map(|e| e.body.as_deref())?;
        let lock = body.mm.lock_handle();
        let mut f = Some(f);
        if let Some(r) = lock.try_with_parts(|p| (f.take().expect("once"))(p.fds, p.mm)) {
            return Some(r);
        }
        let f = f?;
        if body.threaded() {
            return None;
        }
        // Parked and alone: its parts are in its body and its lock is free
        // (the exitless server serves running vprocs only).
        lock.try_with_mm(|mm| f(&body.fds, mm))
    }

    /// The thread ids of process `pid`, in order.
    pub fn tids(&self, pid: Pid) -> Vec<Pid> {
        let t = self.lock();
        let Some(tgid) = t.procs.get(&pid).map(|e| e.tgid) else {
            return Vec::new();
        };
        t.procs
            .iter()
            .filter(|(_, e)| {
                e.tgid == tgid && !matches!(e.state, PState::Embryo | PState::Zombie(_))
            })
            .map(|(p, _)| *p)
            .collect()
    }
}

/// Does `/proc` list entry `e` of pid `p`: a process (its leader) not
/// being made?
fn listed(p: Pid, e: &Entry) -> bool {
    e.tgid == p && !matches!(e.state, PState::Embryo)
}

impl Kernel {
    /// Every process not being made, by pid.
    pub fn processes(&self) -> Vec<ProcInfo> {
        let t = self.lock();
        t.procs
            .iter()
            .filter(|(p, e)| listed(**p, e))
            .map(|(p, e)| self.info_locked(&t, *p, e))
            .collect()
    }

    /// The pids of every process not being made (what `/proc` lists).
    pub fn process_ids(&self) -> Vec<i32> {
        let t = self.lock();
        t.procs
            .iter()
            .filter(|(p, e)| listed(**p, e))
            .map(|(p, _)| *p)
            .collect()
    }

    /// Process `pid` (its leader's pid), if it exists.
    pub fn process(&self, pid: i32) -> Option<ProcInfo> {
        let t = self.lock();
        let e = t.procs.get(&pid).filter(|e| e.tgid == pid)?;
        if matches!(e.state, PState::Embryo) {
            return None;
        }
        Some(self.info_locked(&t, pid, e))
    }

    fn info_locked(&self, t: &Table, pid: Pid, e: &Entry) -> ProcInfo {
        // A process is as busy as its busiest thread.
        let states: Vec<&PState> = t
            .procs
            .values()
            .filter(|x| x.tgid == pid)
            .map(|x| &x.state)
            .collect();
        let state = if matches!(e.state, PState::Zombie(_)) && e.threads == 0 {
            'Z'
        } else if states
            .iter()
            .any(|s| matches!(s, PState::Running(_) | PState::Runnable))
        {
            'R'
        } else if states.iter().all(|s| matches!(s, PState::Stopped)) {
            'T'
        } else if states.iter().any(|s| matches!(s, PState::Traced)) {
            't'
        } else {
            'S'
        };
        let runtime_ns = t
            .procs
            .iter()
            .filter(|(_, x)| x.tgid == pid)
            .map(|(q, _)| t.sched.runtime(tid(*q)).unwrap_or(0))
            .sum::<u64>()
            + t.records
                .iter()
                .filter(|r| r.pid == pid)
                .map(|r| r.runtime_ns)
                .sum::<u64>();
        let nice = match t.sched.task(tid(pid)).map(|x| x.policy) {
            Some(Policy::Fair { nice }) => i32::from(nice),
            _ => 0,
        };
        ProcInfo {
            pid,
            ppid: e.ppid,
            pgid: e.pgid,
            sid: e.sid,
            state,
            threads: e.threads.max(usize::from(state != 'Z')),
            comm: e.comm.clone(),
            cmdline: if state == 'Z' {
                Arc::default()
            } else {
                e.cmdline.clone()
            },
            runtime_ns,
            start_ns: u64::try_from(e.started.saturating_duration_since(self.start).as_nanos())
                .unwrap_or(u64::MAX),
            nice,
        }
    }

    /// How long the virtual kernel has run.
    pub fn uptime(&self) -> Duration {
        self.start.elapsed()
    }

    /// The 1, 5 and 15 minute load averages (sampled every 5 seconds).
    pub fn loadavg(&self) -> [f64; 3] {
        let mut t = self.lock();
        Self::sample_load(&mut t, Instant::now());
        t.loadavg.0
    }

    /// Fold the threads running or runnable now into the load averages
    /// for every 5-second period since the last sample (Linux's
    /// calc_load: exponential decay over 1, 5 and 15 minutes).
    pub(super) fn sample_load(t: &mut Table, now: Instant) {
        const PERIOD: Duration = Duration::from_secs(5);
        let periods =
            (now.saturating_duration_since(t.loadavg.1).as_secs() / PERIOD.as_secs()).min(1000);
        if periods == 0 {
            return;
        }
        let n = t
            .procs
            .values()
            .filter(|e| matches!(e.state, PState::Running(_) | PState::Runnable))
            .count() as f64;
        let (avg, at) = &mut t.loadavg;
        for (a, minutes) in avg.iter_mut().zip([1.0f64, 5.0, 15.0]) {
            let e = (-5.0 / (60.0 * minutes)).exp();
            for _ in 0..periods {
                *a = *a * e + n * (1.0 - e);
            }
        }
        *at += PERIOD * u32::try_from(periods).unwrap_or(u32::MAX);
    }

    /// Threads running or waiting for a vCPU now, and threads in all.
    pub fn load(&self) -> (usize, usize) {
        let t = self.lock();
        let busy = t
            .procs
            .values()
            .filter(|e| matches!(e.state, PState::Running(_) | PState::Runnable))
            .count();
        let all = t
            .procs
            .values()
            .filter(|e| !matches!(e.state, PState::Zombie(_) | PState::Embryo))
            .count();
        (busy, all)
    }
}

impl Kernel {
    /// Resident bytes of process `pid` (its vmspace's pages backed by a
    /// frame, walked now), if it has a vmspace.
    pub fn rss_bytes(&self, pid: i32) -> Option<u64> {
        let vms = self.lock().procs.get(&pid).and_then(|e| e.vms.clone())?;
        let m = MemStats::collect_named(&[(&*vms, "")]).ok()?;
        m.usages().first().map(|u| u.rss_bytes())
    }
}
