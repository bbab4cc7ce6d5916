//! The `/proc` files made from the process table and the machine:
//! `PID/stat`, `PID/statm`, `PID/cmdline`, `PID/comm` and `PID/status`
//! for any process, and `/proc/uptime`, `loadavg`, `stat` and `cpuinfo`.
//! Times are in clock ticks of 100 Hz (Linux's USER_HZ); the load averages
//! decay as Linux's do, sampled every 5 seconds.

use crate::fs::ProcItem;
use crate::kernel::ProcInfo;
use crate::Vproc;

/// Clock ticks per second of `/proc` times (USER_HZ).
const HZ: u64 = 100;

/// Nanoseconds as clock ticks.
fn ticks(ns: u64) -> u64 {
    ns / (1_000_000_000 / HZ)
}

impl Vproc {
    /// `item` of process `pid` when the process table makes it (None: the
    /// vproc's own view, `proc_contents`, makes it).
    pub(super) fn proc_system(&self, pid: i32, item: ProcItem) -> Option<Vec<u8>> {
        if matches!(
            item,
            ProcItem::NetTcp
                | ProcItem::NetTcp6
                | ProcItem::NetUdp
                | ProcItem::NetUdp6
                | ProcItem::NetDev
        ) {
            return Some(self.proc_net(item).into_bytes());
        }
        let k = self.k.as_ref()?;
        let text = match item {
            ProcItem::Uptime => {
                let up = k.uptime().as_secs_f64();
                let idle = up * k.cpu_count() as f64
                    - k.processes()
                        .iter()
                        .map(|p| p.runtime_ns as f64 / 1e9)
                        .sum::<f64>();
                format!("{up:.2} {:.2}\n", idle.max(0.0))
            }
            ProcItem::Loadavg => {
                let [a, b, c] = k.loadavg();
                let (busy, all) = k.load();
                let last = k.process_ids().into_iter().max().unwrap_or(0);
                format!("{a:.2} {b:.2} {c:.2} {busy}/{all} {last}\n")
            }
            ProcItem::SysStat => self.sys_stat(k),
            ProcItem::Cpuinfo => cpuinfo(k.cpu_count()),
            ProcItem::Stat | ProcItem::Statm | ProcItem::Cmdline | ProcItem::Comm => {
                let mut p = k.process(self.leader_of(pid))?;
                if p.pid == self.thread.tgid {
                    // The table learns of an execve at the next put back.
                    p.comm = self.comm.clone();
                    p.cmdline = self.cmdline.clone();
                }
                match item {
                    ProcItem::Cmdline => return Some(p.cmdline.to_vec()),
                    ProcItem::Comm => format!("{}\n", p.comm),
                    ProcItem::Statm => {
                        let rss = self.rss_of(&p);
                        format!("{rss} {rss} 0 0 0 0 0\n")
                    }
                    _ => self.stat_line(&p),
                }
            }
            ProcItem::Status if self.leader_of(pid) != self.thread.tgid => {
                let p = k.process(self.leader_of(pid))?;
                let state = match p.state {
                    'R' => "R (running)",
                    'T' => "T (stopped)",
                    'Z' => "Z (zombie)",
                    _ => "S (sleeping)",
                };
                let (u, g) = self.ids();
                format!(
                    "Name:\t{}\nState:\t{state}\nTgid:\t{}\nPid:\t{}\nPPid:\t{}\n\
                     Uid:\t{u}\t{u}\t{u}\t{u}\nGid:\t{g}\t{g}\t{g}\t{g}\nThreads:\t{}\n",
                    p.comm, p.pid, p.pid, p.ppid, p.threads
                )
            }
            _ => return None,
        };
        Some(text.into_bytes())
    }

    /// The process a `/proc` pid stands for (a thread's, its leader's).
    fn leader_of(&self, pid: i32) -> i32 {
        if pid == self.pid {
            return self.thread.tgid;
        }
        self.k.as_ref().and_then(|k| k.tgid_of(pid)).unwrap_or(pid)
    }

    /// Resident pages of process `p`: this process's own count, another's
    /// from a walk of its vmspace.
    fn rss_of(&self, p: &ProcInfo) -> u64 {
        if p.pid == self.thread.tgid {
            self.mm.resident_pages() as u64
        } else {
            self.k
                .as_ref()
                .and_then(|k| k.rss_bytes(p.pid))
                .map_or(0, |b| b / 4096)
        }
    }

    /// `/proc/PID/stat`: Linux's 52 fields for `p`.
    fn stat_line(&self, p: &ProcInfo) -> String {
        let rss = self.rss_of(p);
        // Another process's map is its own: its resident size stands in.
        let vsize = if p.pid == self.thread.tgid {
            self.mm.vmas().map(|(start, v)| v.end - start).sum::<u64>()
        } else {
            rss * 4096
        };
        let utime = ticks(p.runtime_ns);
        let prio = 20 + p.nice;
        format!(
            "{} ({}) {} {} {} {} 0 -1 4194304 0 0 0 0 {utime} 0 0 0 {prio} {} {} 0 {} {vsize} {rss} \
             18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
            p.pid,
            p.comm,
            p.state,
            p.ppid,
            p.pgid,
            p.sid,
            p.nice,
            p.threads,
            ticks(p.start_ns),
        )
    }

    /// `/proc/stat`: the vCPUs' time (busy as user time, the rest idle),
    /// boot time, processes made and running.
    fn sys_stat(&self, k: &crate::kernel::Kernel) -> String {
        let procs = k.processes();
        let up = k.uptime();
        let n = k.cpu_count().max(1) as u64;
        let busy = ticks(procs.iter().map(|p| p.runtime_ns).sum());
        let total = ticks(u64::try_from(up.as_nanos()).unwrap_or(u64::MAX)) * n;
        let idle = total.saturating_sub(busy);
        let mut s = format!("cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\n");
        for c in 0..n {
            s += &format!("cpu{c} {} 0 0 {} 0 0 0 0 0 0\n", busy / n, idle / n);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let btime = now.saturating_sub(up).as_secs();
        let (running, _) = k.load();
        let made = procs.iter().map(|p| p.pid).max().unwrap_or(0);
        s += &format!(
            "intr 0\nctxt 0\nbtime {btime}\nprocesses {made}\nprocs_running {running}\nprocs_blocked 0\n"
        );
        s
    }
}

/// `/proc/cpuinfo`: the host's first `n` processors as the host shows
/// them (a vCPU runs on the host's CPU), numbered 0..n.
fn cpuinfo(n: usize) -> String {
    let host = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let blocks: Vec<&str> = host
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .collect();
    let Some(first) = blocks.first() else {
        return String::new();
    };
    let mut s = String::new();
    for c in 0..n {
        let b = blocks.get(c).unwrap_or(first);
        for line in b.lines() {
            let key = line.split(':').next().unwrap_or("").trim();
            match key {
                "processor" => s += &format!("processor\t: {c}\n"),
                "siblings" | "cpu cores" => s += &format!("{key}\t: {n}\n"),
                _ => {
                    s += line;
                    s.push('\n');
                }
            }
        }
        s.push('\n');
    }
    s
}
