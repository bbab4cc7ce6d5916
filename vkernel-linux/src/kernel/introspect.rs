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
