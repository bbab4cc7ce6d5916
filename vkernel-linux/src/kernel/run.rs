//! Starting and ending a run: the process table, one thread per vCPU,
//! the scheduler tick, and the report.

use super::cpu_loop::cpu_loop;
use super::fast::FastCalls;
use super::*;
use crate::core::exitless::{ExitlessOptions, ExitlessReply};
use crate::core::sched::Tunables;

/// Run `init` and everything it forks on `opts.cpus` vCPUs of `machine`
/// until `init` exits, the exitless server answering `calls` (the syscall
/// layer's: [`crate::launch::run`] is the public entry point); `spawner`
/// adds processes from other host threads while the run lasts.
pub(crate) fn run_with(
    machine: &Machine,
    mut init: Vproc,
    opts: &Options,
    calls: &FastCalls,
    spawner: Option<&Spawner>,
) -> Result<Report, VprocError> {
    // Whatever way this returns, the spawner learns the run is over.
    struct Detach<'a>(Option<&'a Spawner>);
    impl Drop for Detach<'_> {
        fn drop(&mut self) {
            if let Some(s) = self.0 {
                s.detach();
            }
        }
    }
    let _detach = Detach(spawner);
    let mut cpus = take_cpus(machine, opts.cpus.max(1))?;
    let opts = &Options {
        max_threads: match opts.max_threads {
            0 => default_max_threads(machine.ram_size()),
            n => n,
        },
        ..opts.clone()
    };
    let patch_entry = (opts.exitless && opts.patch_syscalls)
        .then(|| machine.patched_entry_va())
        .flatten();
    let k = new_kernel(&cpus, &init, opts, patch_entry, calls, spawner)?;
    if opts.exitless {
        // The server holds the kernel weakly: once this run ends, its
        // handler sends everything to the exit path.
        let w = Arc::downgrade(&k);
        machine.set_exitless_handler(
            Arc::new(move |req| {
                w.upgrade()
                    .map_or(ExitlessReply::Exit, |k| k.fast.serve(&k, req))
            }),
            ExitlessOptions {
                serves: Some(calls.numbers.clone()),
                ..Default::default()
            },
        );
    }
    init.k = Some(k.clone());
    let init_pid = init.pid;
    let tmpl = spawner.map(|_| super::spawn::Template::of(&mut init));
    add_init(&k, init)?;
    // Spawns (and their signals) may come from now on: the first vproc
    // is in the table.
    if let (Some(s), Some(t)) = (spawner, tmpl) {
        s.attach(&k, machine, t);
    }
    let debugger = match &opts.debugger {
        Some(d) => {
            k.debug_attach(init_pid).map_err(|e| {
                VprocError::Run(RunError::Broken(format!("debugger attach: errno {e}")))
            })?;
            Some((d.0)(k.clone(), init_pid))
        }
        None => None,
    };
    // Caught from here until the run ends (dropped at return).
    let _host_signals = opts
        .forward_signals
        .then(super::hostsig::HostSignals::install)
        .flatten();
    let results = run_threads(&k, machine, &mut cpus);
    let mut cpu_stats = Vec::new();
    for r in results {
        cpu_stats.push(r?);
    }
    let report = finish(&k, cpu_stats);
    if let Some(h) = debugger {
        // It reports the end to gdb, then returns.
        let _ = h.join();
    }
    drop(k);
    drop(cpus);
    Ok(report)
}

/// The machine's first `ncpu` vCPUs.
fn take_cpus(machine: &Machine, ncpu: usize) -> Result<Vec<Cpu>, VprocError> {
    let mut cpus = Vec::new();
    for i in 0..ncpu {
        match machine.take_cpu(i) {
            Some(c) => cpus.push(c),
            None => {
                return Err(VprocError::Run(RunError::Broken(format!(
                    "vCPU {i} is missing or taken (build the machine with .vcpus({ncpu}))"
                ))))
            }
        }
    }
    Ok(cpus)
}

/// An empty process table for `cpus`; pids continue after `init`'s.
fn new_kernel(
    cpus: &[Cpu],
    init: &Vproc,
    opts: &Options,
    patch_entry: Option<u64>,
    calls: &FastCalls,
    spawner: Option<&Spawner>,
) -> Result<Arc<Kernel>, VprocError> {
    let ncpu = cpus.len();
    let sched = Scheduler::with_tunables(ncpu, sched_tunables(opts)?)
        .map_err(|e| VprocError::Run(RunError::Broken(e.to_string())))?;
    let k = Arc::new(Kernel {
        table: Mutex::new(Table {
            procs: BTreeMap::new(),
            sched,
            next_pid: init.pid + 1,
            init: init.pid,
            exit: None,
            records: Vec::new(),
            forks: 0,
            eagain: 0,
            max_alive: 1,
            syscalls: 0,
            running: vec![None; ncpu],
            memstats: None,
            futexes: Vec::new(),
            lost_wakeups: 0,
            pidfds: Vec::new(),
            trace_exits: Vec::new(),
            subreapers: Default::default(),
            loadavg: ([0.0; 3], Instant::now()),
        }),
        uts: Mutex::new((
            opts.hostname.clone().unwrap_or_else(|| b"vkernel".to_vec()),
            b"(none)".to_vec(),
        )),
        sysv: Mutex::default(),
        debug: Default::default(),
        events: Mutex::new(0),
        idle: Condvar::new(),
        wakes: Mutex::new(Vec::new()),
        kernel_signals: Mutex::new(Vec::new()),
        wakes_flag: AtomicBool::new(false),
        kickers: cpus.iter().map(|c| c.kicker()).collect(),
        entered: (0..ncpu).map(|_| AtomicU64::new(0)).collect(),
        start: Instant::now(),
        done: AtomicBool::new(false),
        ticker: Mutex::new(None),
        fast: super::fast::FastPath::new(ncpu, opts.exitless, calls.lookup),
        patch_entry,
        patched: AtomicU64::new(0),
        learn_cpuid: patch_entry.is_some() && opts.patch_cpuid,
        cpuid_table: std::sync::OnceLock::new(),
        cpuid_counts: Default::default(),
        sites: Default::default(),
        served: [AtomicU64::new(0), AtomicU64::new(0)],
        exit_calls: Default::default(),
        unimplemented: init.unimplemented.clone(),
        spawner: spawner.cloned(),
        opts: Options {
            cpus: ncpu,
            ..opts.clone()
        },
    });
    Ok(k)
}

/// The scheduler's tunables for `opts`: Linux's defaults, with the
/// real-time throttling of `rt_period_us`/`rt_runtime_us` (checked as
/// Linux checks its sysctls: a period of at least 1 µs, a runtime of -1 or
/// at most the period).
pub(super) fn sched_tunables(opts: &Options) -> Result<Tunables, VprocError> {
    let bad = VprocError::Options;
    if opts.rt_period_us == 0 || opts.rt_period_us > i32::MAX as u64 {
        return Err(bad(format!(
            "rt_period_us {} is not in 1..={}",
            opts.rt_period_us,
            i32::MAX
        )));
    }
    let rt_runtime_ns = match opts.rt_runtime_us {
        -1 => None,
        r if r >= 0 && r as u64 <= opts.rt_period_us => Some(r as u64 * 1000),
        r => {
            return Err(bad(format!(
                "rt_runtime_us {r} is neither -1 nor in 0..=rt_period_us ({})",
                opts.rt_period_us
            )))
        }
    };
    Ok(Tunables {
        rt_period_ns: opts.rt_period_us * 1000,
        rt_runtime_ns,
        ..Tunables::default()
    })
}

/// Linux's default `kernel.threads-max` for `ram` bytes of RAM: one
/// thread per 128 KiB (`set_max_threads`: totalram / (8 * THREAD_SIZE)),
/// at least 20.
pub fn default_max_threads(ram: u64) -> usize {
    ((ram / (128 << 10)) as usize).max(20)
}

/// Put `init` in the table, runnable.
fn add_init(k: &Kernel, init: Vproc) -> Result<(), VprocError> {
    let mut t = k.lock();
    super::spawn::insert_runnable(k, &mut t, init, 0)
        .map_err(|e| VprocError::Run(RunError::Broken(e)))
}

/// Address space the vkernel keeps free for its own allocations once its
/// threads run.
const HEADROOM: usize = 16 << 20;

/// Is there [`HEADROOM`] (plus `extra`) of address space left (under
/// `ulimit -v`)? An
/// allocation failing later would abort the process; failing here gives a
/// clear error instead.
fn address_space_headroom(extra: usize) -> Result<(), VprocError> {
    crate::core::host::address_space_left(HEADROOM + extra).map_err(|source| VprocError::Thread {
        what: "vCPU (no address space left for the vkernel itself)".into(),
        source,
    })
}

/// Run the vCPU loops (vCPU 0 on this thread) and the ticker until the
/// virtual kernel ends; one result per vCPU (or thread that failed).
fn run_threads(
    k: &Arc<Kernel>,
    machine: &Machine,
    cpus: &mut [Cpu],
) -> Vec<Result<CpuStats, VprocError>> {
    let mut results: Vec<Result<CpuStats, VprocError>> = Vec::new();
    // Room for the threads' stacks (2 MiB each) and the headroom.
    if let Err(e) = address_space_headroom(cpus.len() * (2 << 20)) {
        results.push(Err(e));
        return results;
    }
    std::thread::scope(|s| {
        let ticker = {
            let k = k.clone();
            std::thread::Builder::new()
                .name("vkernel-tick".into())
                .spawn_scoped(s, move || ticker(&k))
        };
        let ticker = match ticker {
            Ok(t) => t,
            Err(source) => {
                results.push(Err(VprocError::Thread {
                    what: "scheduler tick".into(),
                    source,
                }));
                return;
            }
        };
        // The vCPUs stay owned here: a Kicker must never outlive its Cpu.
        let mut handles = Vec::new();
        let mut it = cpus.iter_mut();
        let cpu0 = it.next().expect("one vCPU");
        let mut spawned = Ok(());
        for (i, cpu) in it.enumerate() {
            let k = k.clone();
            let h = std::thread::Builder::new()
                .name(format!("vcpu{}", i + 1))
                .spawn_scoped(s, move || {
                    let r = cpu_loop(&k, machine, cpu);
                    if r.is_err() {
                        // The vproc this vCPU ran is lost: end the whole
                        // virtual kernel rather than let its parent wait
                        // forever.
                        stop_all(&k);
                    }
                    r
                });
            match h {
                Ok(h) => handles.push(h),
                Err(source) => {
                    spawned = Err(VprocError::Thread {
                        what: format!("vCPU {}", i + 1),
                        source,
                    });
                    break;
                }
            }
        }
        if spawned.is_ok() {
            spawned = address_space_headroom(0);
        }
        match spawned {
            Ok(()) => results.push(cpu_loop(k, machine, cpu0)),
            Err(e) => results.push(Err(e)),
        }
        // Whatever happened on vCPU 0, stop the others and the ticker.
        // Kick until every vCPU thread is out: one kick can be lost when it
        // lands while its vCPU thread clears the previous one (seen on our
        // PVM hosts under load), and a vproc that never traps would then
        // hold its vCPU forever.
        stop_all(k);
        while handles.iter().any(|h| !h.is_finished()) {
            stop_all(k);
            std::thread::sleep(Duration::from_millis(2));
        }
        for h in handles {
            results.push(h.join().unwrap_or_else(|_| {
                Err(VprocError::Run(RunError::Broken(
                    "a vCPU thread panicked".into(),
                )))
            }));
        }
        let _ = ticker.join();
    });
    results
}

/// The report of a finished run; the vprocs left are flushed and dropped.
fn finish(k: &Kernel, cpu_stats: Vec<CpuStats>) -> Report {
    // Tear down: bodies go after the lock is released.
    let (bodies, report) = {
        let mut t = k.lock();
        let bodies: Vec<Box<Vproc>> = t.procs.values_mut().filter_map(|e| e.body.take()).collect();
        let (status, death) = t
            .exit
            .clone()
            .unwrap_or((ExitStatus::Signaled(signal::SIGKILL), None));
        let syscalls = t.syscalls + bodies.iter().map(|b| b.syscalls).sum::<u64>();
        let report = Report {
            status,
            death,
            procs: std::mem::take(&mut t.records),
            context_switches: t.sched.total_context_switches(),
            forks: t.forks,
            fork_eagain: t.eagain,
            max_alive: t.max_alive,
            syscalls,
            cpu_stats,
            memstats: t.memstats.take(),
            lost_wakeups: t.lost_wakeups,
            patched_sites: k.patched.load(Ordering::Relaxed),
            served_rewritten: k.served[0].load(Ordering::Relaxed),
            served_syscall: k.served[1].load(Ordering::Relaxed),
            exit_calls_rewritten: k.exit_calls[0].load(Ordering::Relaxed),
            cpuid_answered: k.cpuid_counts[0].load(Ordering::Relaxed),
            cpuid_sites: k.cpuid_counts[1].load(Ordering::Relaxed),
            unimplemented: k.unimplemented.calls(),
        };
        t.procs.clear();
        (bodies, report)
    };
    for b in &bodies {
        b.stdio.flush();
    }
    drop(bodies);
    report
}

/// End the run: every vCPU loop and the ticker return soon.
fn stop_all(k: &Kernel) {
    k.done.store(true, Ordering::SeqCst);
    if let Some(w) = k.ticker.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        w.wake();
    }
    // Every vCPU, even one that just entered the guest: a spinning vproc
    // would not come back by itself once the ticker has stopped.
    for kk in &k.kickers {
        kk.kick();
    }
    k.notify();
}

/// The tick source: a timerfd on an event loop, kicking busy vCPUs.
/// Does the vproc running on `cpu` have a signal or kill order it has not
/// looked at? [`Kernel::kick`] skips a vCPU that entered the guest less
/// than half a tick ago (it usually traps soon and looks then); a vproc
/// that never traps (a busy loop alone on its vCPU) is kicked by the
/// ticker instead, or a SIGTERM sent to it would wait forever.
fn signal_owed(t: &Table, cpu: usize) -> bool {
    t.running
        .get(cpu)
        .copied()
        .flatten()
        .and_then(|pid| t.procs.get(&pid))
        .is_some_and(|e| e.sig_flag.load(Ordering::SeqCst))
}

fn ticker(k: &Kernel) {
    let run = || -> Result<(), String> {
        let mut ev = EventLoop::new().map_err(|e| e.to_string())?;
        let mut timer = Timer::new().map_err(|e| e.to_string())?;
        timer.register(ev.handle()).map_err(|e| e.to_string())?;
        timer.arm_periodic(k.opts.tick).map_err(|e| e.to_string())?;
        *k.ticker.lock().unwrap() = Some(ev.waker());
        if k.done.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut forwarder = super::hostsig::Forwarder::default();
        ev.run(|e| {
            if let Event::Timer { .. } = e {
                // Expire deadlines and timers, drain wake-ups: a vCPU whose
                // vproc never traps would not. Then kick only vCPUs whose
                // vproc may have to give way: every kick costs an exit.
                let mut t = k.lock();
                if k.opts.forward_signals {
                    k.forward_host_signals(&mut t, &mut forwarder);
                }
                k.process_wakes(&mut t);
                for i in 0..k.kickers.len() {
                    if k.deep_in_guest(i)
                        && (t.sched.nr_running(i) > 1
                            || t.sched.need_resched(i)
                            || signal_owed(&t, i))
                    {
                        k.kickers[i].kick();
                    }
                }
                drop(t);
                // (Sleepers whose time has come and wake-ups were made
                // runnable above, which tells idle vCPUs; an idle vCPU
                // also wakes by itself at the next deadline. Waking every
                // idle vCPU at every tick cost an idle vkernel 1% of a
                // core.)
            }
            if k.done.load(Ordering::SeqCst) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .map_err(|e| e.to_string())?;
        Ok(())
    };
    if let Err(e) = run() {
        log::warn!("ticker: {e}; no preemption");
    }
}
