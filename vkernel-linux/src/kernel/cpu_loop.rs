//! One vCPU's loop: pick a vproc, run a segment of it until it blocks,
//! exits, stops or is preempted, then put it back in the table.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

use super::fork::fork;
use super::ptrace::Stop;
use super::thread::{exit_mm, spawn_thread, CLONE_THREAD};
use super::trace_stop::Resumed;
use super::*;
use crate::thread::Kill;

enum Outcome {
    Preempt,
    Block(Wait),
    /// Stopped by this signal.
    Stop(i32),
    /// In a ptrace-stop.
    Trace(Stop),
    Exit,
}

/// What a halt in signal delivery makes of the segment: a traced vproc's
/// group-stop is a ptrace-stop too.
fn halted(body: &mut Vproc, h: Halt) -> Outcome {
    match h {
        Halt::Trace(s) => Outcome::Trace(s),
        Halt::Stop(sig) if body.traced() => Outcome::Trace(body.trace_halt(Stop::Group(sig))),
        Halt::Stop(sig) => Outcome::Stop(sig),
    }
}

/// Let the vCPU load its own FPU context once (a tiny vproc that uses
/// SSE) before the first vproc runs; from then on the core moves FPU
/// state between vprocs ([`Cpu::set_fpu`], [`Cpu::release_fpu`]), also
/// across vCPUs.
fn warm_up_fpu(machine: &Machine, cpu: &mut Cpu, frames: &crate::mm::Frames) {
    let mut run = || -> Option<()> {
        let f = frames.lock().ok()?.alloc(machine.ram()).ok()?;
        // movaps xmm0, xmm0; ud2
        let ok = machine
            .ram()
            .write(f, &[0x0f, 0x28, 0xc0, 0x0f, 0x0b])
            .is_ok()
            && {
                let vms = machine.vmspace_create().ok()?;
                vms.mmap(
                    0x40_0000,
                    0x1000,
                    Backing::Linear {
                        gpa: f,
                        prot: Prot::RX,
                    },
                )
                .ok()?;
                let mut frame = TrapFrame::new(0x40_0000, 0);
                matches!(cpu.run(&vms, &mut frame), Ok(Trap::Exception { .. }))
            };
        frames.lock().ok()?.free(f);
        ok.then_some(())
    };
    if run().is_none() {
        log::warn!("vCPU {}: FPU warm-up failed", cpu.index());
    }
}

/// Save the vproc's FPU registers into its context and give the context
/// up, so that any vCPU can run the vproc next.
fn release_fpu(cpu: &mut Cpu, body: &Vproc) {
    if let Err(e) = cpu.release_fpu() {
        log::warn!(
            "vCPU {}: FPU state of vproc {} not saved: {e}",
            cpu.index(),
            body.pid
        );
    }
}

pub(super) fn cpu_loop(
    k: &Arc<Kernel>,
    machine: &Machine,
    cpu: &mut Cpu,
) -> Result<CpuStats, VprocError> {
    let idx = cpu.index();
    {
        let frames = {
            let t = k.lock();
            t.procs
                .values()
                .find_map(|e| e.body.as_ref().map(|b| b.mm.frames().clone()))
        };
        if let Some(fr) = frames {
            warm_up_fpu(machine, cpu, &fr);
        }
    }
    while let Some(mut body) = pick_next(k, idx)? {
        // The process lock, from here until the body is back in the table
        // (released while the guest runs: see `crate::thread`).
        body.enter_kernel();
        let out = segment(k, machine, cpu, &mut body);
        if matches!(out, Ok(Outcome::Exit)) {
            k.begin_exit(&body);
            exit_mm(k, &mut body);
            if !body.threaded() {
                // The process's files close before its exit is reported
                // (Linux's exit_files): a parent that waits for it sees
                // its flock/OFD locks and pipe ends gone.
                drop(body.fds.close_all());
            }
        }
        body.leave_kernel();
        release_fpu(cpu, &body);
        let dead = put_back(k, idx, body, out?);
        drop(dead);
    }
    Ok(cpu.stats())
}

/// Take the next vproc for vCPU `idx` out of the table, idling until there
/// is one; `None` when the virtual kernel ends.
fn pick_next(k: &Arc<Kernel>, idx: usize) -> Result<Option<Box<Vproc>>, VprocError> {
    let mut t = k.lock();
    loop {
        let seen = k.events_seen();
        k.process_wakes(&mut t);
        if t.exit.is_some() || k.done.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let now = k.now();
        let mut next = t
            .sched
            .schedule(idx, now)
            .map_err(|e| VprocError::Run(RunError::Broken(e.to_string())))?;
        if next.is_none() && t.sched.load_balance(now) > 0 {
            next = t
                .sched
                .schedule(idx, now)
                .map_err(|e| VprocError::Run(RunError::Broken(e.to_string())))?;
            for c in 0..k.kickers.len() {
                if c != idx && t.sched.need_resched(c) {
                    k.kick(&t, c);
                }
            }
        }
        if let Some(id) = next {
            let pid = id.0 as Pid;
            let e = t.procs.get_mut(&pid).expect("scheduled vprocs exist");
            if let Some(mut b) = e.body.take() {
                e.state = PState::Running(idx);
                // A retried rt_sigtimedwait says again what it waits for.
                b.thread.sigwait = 0;
                super::ptrace::sync_body(&mut b, e.trace.as_mut());
                e.blocked = b.sig.blocked;
                b.watchdog_retry = std::mem::take(&mut e.watchdog_woke);
                for s in e.signals.drain(..) {
                    b.queue_signal(s);
                }
                e.sig_flag.store(false, Ordering::SeqCst);
                t.running[idx] = Some(pid);
                return Ok(Some(b));
            }
            log::warn!("vCPU {idx}: vproc {pid} scheduled but not in the table");
        }
        // Idle: wait for a wake-up, a deadline, or the debugger.
        t.running[idx] = None;
        let soon = Instant::now() + Duration::from_millis(20);
        // Real-time vprocs throttled here run again at their next period.
        let unthrottle = t
            .sched
            .unthrottle_at(idx)
            .map(|ns| k.start + Duration::from_nanos(ns));
        let until = Kernel::next_deadline(&t)
            .into_iter()
            .chain(unthrottle)
            .fold(soon, Instant::min);
        let wait = until.saturating_duration_since(Instant::now());
        drop(t);
        k.idle_wait(seen, wait.max(Duration::from_micros(50)));
        t = k.lock();
        if idx == 0 {
            let stdio = t
                .procs
                .values()
                .find_map(|e| e.body.as_ref().map(|b| b.stdio.clone()));
            if let Some(st) = stdio {
                if st.interrupt_pending() {
                    drop(t);
                    if st.take_interrupt() {
                        if st.interactive() {
                            idle_debugger(k, &st);
                        } else {
                            interrupt_foreground(k);
                        }
                    }
                    t = k.lock();
                }
            }
        }
    }
}

/// Put `body` back in the table after its segment ended with `out`; a vproc
/// that exited comes back to be dropped outside the lock.
fn put_back(k: &Kernel, idx: usize, body: Box<Vproc>, out: Outcome) -> Option<Box<Vproc>> {
    let mut t = k.lock();
    k.process_wakes(&mut t);
    t.running[idx] = None;
    let pid = body.pid;
    if let Some(e) = t.procs.get_mut(&pid) {
        e.blocked = body.sig.blocked & !body.thread.sigwait;
        // What /proc shows of it while it runs next time (execve changed
        // them, or PR_SET_NAME the name).
        if !Arc::ptr_eq(&e.cmdline, &body.cmdline) || e.comm != body.comm {
            e.cmdline = body.cmdline.clone();
            e.comm = body.comm.clone();
        }
        e.seen.update(&body);
    }
    if body.threaded() {
        // Shared signals this thread now takes.
        let tgid = body.thread.tgid;
        let mine = k.take_shared(&mut t, tgid, !(body.sig.blocked & !body.thread.sigwait));
        if let Some(e) = t.procs.get_mut(&pid) {
            for s in mine {
                signal::enqueue(&mut e.signals, s);
            }
        }
    }
    match out {
        Outcome::Exit => {
            k.exit_locked(&mut t, &body, idx);
            Some(body)
        }
        Outcome::Block(w) => {
            let e = t.procs.get_mut(&pid).expect("running vprocs exist");
            let wake =
                e.wake_pending || e.signals.iter().any(|s| deliverable(Some(&body), s.signo));
            e.wake_pending = false;
            e.event_wait = w == Wait::Event;
            if wake {
                e.state = PState::Runnable;
            } else {
                // An event wait is retried after WATCHDOG anyway; a
                // retry that succeeds is counted as a lost wake-up.
                e.state = PState::Sleeping(Some(match w {
                    Wait::Event => Instant::now() + WATCHDOG,
                    Wait::Until(d) => d,
                }));
                let now = k.now();
                if let Err(err) = t.sched.sleep(tid(pid), now) {
                    log::warn!("sleep {pid}: {err}");
                }
            }
            let e = t.procs.get_mut(&pid).expect("running vprocs exist");
            e.body = Some(body);
            None
        }
        Outcome::Preempt => {
            let e = t.procs.get_mut(&pid).expect("running vprocs exist");
            e.state = PState::Runnable;
            e.body = Some(body);
            None
        }
        Outcome::Trace(stop) => {
            let e = t.procs.get_mut(&pid).expect("running vprocs exist");
            e.body = Some(body);
            k.trace_stopped(&mut t, pid, stop);
            None
        }
        Outcome::Stop(sig) => {
            let e = t.procs.get_mut(&pid).expect("running vprocs exist");
            let resumed = e.signals.iter().any(|s| s.signo == signal::SIGCONT);
            e.body = Some(body);
            if resumed {
                // SIGCONT came while it was stopping.
                e.state = PState::Runnable;
            } else {
                e.state = PState::Stopped;
                e.stop_report = Some(sig);
                e.cont_report = false;
                let ppid = e.ppid;
                let now = k.now();
                if let Err(err) = t.sched.sleep(tid(pid), now) {
                    log::warn!("stop {pid}: {err}");
                }
                k.child_changed(&mut t, ppid, pid, 5, sig);
            }
            None
        }
    }
}

/// Ctrl-C while vCPU 0 idles: the debugger without a current vproc.
fn idle_debugger(k: &Arc<Kernel>, st: &crate::stdio::SharedStdio) {
    let _ = st.write(2, b"\n[vkernel debugger] all vprocs are blocked.\n");
    if debugger::prompt_kernel(k, st) == debugger::Outcome::Quit {
        kill_all(k);
    }
}

/// si_code of a signal the kernel sent (SI_KERNEL), as for a terminal's
/// SIGINT.
pub const SI_KERNEL: i32 = 0x80;

/// SIGINT with nobody at a terminal to answer the debugger (stdin is not
/// a terminal): as Linux does for a foreground job, init's process group
/// gets SIGINT from the kernel (and by default dies of it: exit 130).
fn interrupt_foreground(k: &Kernel) {
    let mut t = k.lock();
    let init = t.init;
    let pgid = t.procs.get(&init).map_or(init, |e| e.pgid);
    let pids: Vec<Pid> = t
        .procs
        .iter()
        .filter(|(_, e)| e.pgid == pgid)
        .map(|(p, _)| *p)
        .collect();
    for p in pids {
        k.post_signal(
            &mut t,
            p,
            SigInfo {
                signo: signal::SIGINT,
                code: SI_KERNEL,
                ..Default::default()
            },
        );
    }
}

/// Kill every vproc (the debugger's quit): init dies of SIGINT.
fn kill_all(k: &Kernel) {
    let mut t = k.lock();
    let pids: Vec<Pid> = t.procs.keys().copied().collect();
    for p in pids {
        k.post_signal(
            &mut t,
            p,
            SigInfo {
                signo: signal::SIGKILL,
                ..Default::default()
            },
        );
    }
    let init = t.init;
    if let Some(e) = t.procs.get_mut(&init) {
        if let Some(b) = e.body.as_mut() {
            b.death = Some("killed from the debugger".into());
        }
    }
}

/// clone/fork/vfork: make the thread or process; a vfork parent then
/// waits (`wait`) for its child's exec or exit, which wakes it (the
/// wake-up may come before it is parked: it is then pending), unless the
/// child is done already.
fn make_child(
    k: &Arc<Kernel>,
    machine: &Machine,
    cpu: &Cpu,
    body: &mut Vproc,
    args: super::CloneArgs,
    wait: &mut Option<Wait>,
) -> i64 {
    if args.flags & CLONE_THREAD != 0 {
        return spawn_thread(k, cpu, body, args);
    }
    let v = super::vfork::rendezvous(args.flags);
    let r = fork(k, machine, cpu, body, args, v.clone());
    if let (Some(v), true) = (v, r > 0) {
        body.vfork = Some(super::VforkLink::Parent(v));
        // Registered (or, if the child already execed or exited, given
        // its pages) under the rendezvous's lock: the child may have run
        // on another vCPU since the fork.
        if body.vfork_waiting() {
            *wait = Some(Vproc::vfork_deadline());
        }
    }
    r
}

/// Run `body` until it blocks, exits or is preempted.
fn segment(
    k: &Arc<Kernel>,
    machine: &Machine,
    cpu: &mut Cpu,
    body: &mut Vproc,
) -> Result<Outcome, VprocError> {
    let idx = cpu.index();
    let tick_ns = k.opts.tick.as_nanos() as u64;
    let mut next_tick = k.now() + tick_ns;
    // A tracee resumed from a ptrace-stop: what its tracer chose first
    // (the syscall it stopped before runs now, as if it just trapped).
    let mut carried = None;
    if body.ptrace.is_some() {
        match body.trace_resume(cpu) {
            Some(Resumed::Stop(s)) => return Ok(Outcome::Trace(s)),
            Some(Resumed::GroupStop(sig)) => return Ok(Outcome::Stop(sig)),
            Some(Resumed::Run(step)) => carried = Some(step),
            None => {}
        }
        if carried.is_none() {
            if let Some(s) = body.trace_interrupt_due() {
                return Ok(Outcome::Trace(body.trace_halt(s)));
            }
        }
    }
    if carried.is_none() {
        if body.vfork_waiting() {
            return Ok(Outcome::Block(Vproc::vfork_deadline()));
        }
        if let Some(h) = body.deliver_pending(cpu) {
            return Ok(halted(body, h));
        }
        if let Some(m) = body.saved_mask.take() {
            // rt_sigsuspend woke without a handler running.
            body.sig.blocked = m;
        }
    }
    loop {
        let step = match carried.take() {
            Some(s) => s,
            None => {
                match look(k, cpu, body) {
                    ControlFlow::Break(out) => return Ok(out),
                    ControlFlow::Continue(true) => continue,
                    ControlFlow::Continue(false) => {}
                }
                k.entered[idx].store(k.now().max(1), Ordering::SeqCst);
                let step = body.step(cpu);
                k.entered[idx].store(0, Ordering::SeqCst);
                step?
            }
        };
        if step == crate::Step::TraceEntry {
            return Ok(Outcome::Trace(body.trace_halt(Stop::SyscallEntry)));
        }
        // What the syscall's handler said happens next.
        let mut wait = None;
        let mut yielded = false;
        if let crate::Step::Syscall(next) = step {
            match next {
                Next::Ret(_) | Next::Restart => {}
                Next::Block(w) => wait = Some(w),
                Next::Yield => yielded = true,
                Next::Clone(args) => {
                    let r = make_child(k, machine, cpu, body, args, &mut wait);
                    body.frame.rax = r as u64;
                    if body.trace {
                        vk_eprintln!("[vk {}] fork = {r}", body.pid);
                    }
                    if body.ptrace.is_some() {
                        if let Some(s) = body.trace_clone(args.flags, r) {
                            return Ok(Outcome::Trace(s));
                        }
                    }
                }
                Next::Exit { status, group } => body.end(status, group),
            }
            if body.ptrace.is_some() {
                if let Some(s) = body.trace_after_syscall(&next) {
                    return Ok(Outcome::Trace(s));
                }
            }
        }
        // Then the signals that came meanwhile (a stop leaves a waiting
        // call rewound: it is retried after SIGCONT).
        if let Some(h) = body.deliver_pending(cpu) {
            return Ok(halted(body, h));
        }
        if let Some(w) = wait {
            if body.exit.is_none() {
                return Ok(Outcome::Block(w));
            }
        }
        if yielded {
            let mut t = k.lock();
            let now = k.now();
            let _ = t.sched.yield_now(tid(body.pid), now);
            if t.sched.nr_running(idx) > 1 {
                return Ok(Outcome::Preempt);
            }
        }
        let now = k.now();
        let ticked = step == crate::Step::Interrupted || now >= next_tick;
        if ticked {
            next_tick = now + tick_ns;
            if let Some(out) = tick(k, cpu, body, step)? {
                return Ok(out);
            }
        } else if k.wakes_flag.load(Ordering::Relaxed) {
            let mut t = k.lock();
            k.process_wakes(&mut t);
            if t.sched.need_resched(idx) {
                return Ok(Outcome::Preempt);
            }
        }
    }
}

/// Before each run of the guest: an exit due (a kill order, exit, a
/// fatal signal: after PTRACE_EVENT_EXIT if traced) ends the segment;
/// signals and trace changes other vprocs left in the table are taken
/// (`Continue(true)`: look again, they may have ended it).
fn look(k: &Kernel, cpu: &Cpu, body: &mut Vproc) -> ControlFlow<Outcome, bool> {
    if body.exit.is_none() {
        match body.mm.kill_order() {
            Some(Kill::Group(st)) => {
                body.exit = Some(st);
                body.thread.exit_thread = false;
            }
            Some(Kill::Dethread(s)) if s != body.pid => {
                body.exit = Some(ExitStatus::Signaled(signal::SIGKILL));
                body.thread.exit_thread = true;
            }
            _ => {}
        }
    }
    if body.exit.is_some() {
        if body.ptrace.is_some() {
            if let Some(s) = body.trace_exit_event() {
                return ControlFlow::Break(Outcome::Trace(s));
            }
        }
        body.vfork_release();
        return ControlFlow::Break(Outcome::Exit);
    }
    if !body.sig_flag.swap(false, Ordering::SeqCst) {
        return ControlFlow::Continue(false);
    }
    let sigs: Vec<SigInfo> = {
        let mut t = k.lock();
        match t.procs.get_mut(&body.pid) {
            Some(e) => {
                super::ptrace::sync_body(body, e.trace.as_mut());
                std::mem::take(&mut e.signals)
            }
            None => Vec::new(),
        }
    };
    for s in sigs {
        body.queue_signal(s);
    }
    if body.ptrace.is_some() {
        if let Some(s) = body.trace_interrupt_due() {
            return ControlFlow::Break(Outcome::Trace(body.trace_halt(s)));
        }
    }
    if let Some(h) = body.deliver_pending(cpu) {
        return ControlFlow::Break(halted(body, h));
    }
    ControlFlow::Continue(true)
}

/// A tick (or a kick) in a segment: Ctrl-C's debugger or SIGINT, load
/// balancing, and whether the scheduler preempts the vproc.
fn tick(
    k: &Arc<Kernel>,
    cpu: &mut Cpu,
    body: &mut Vproc,
    step: crate::Step,
) -> Result<Option<Outcome>, VprocError> {
    let idx = cpu.index();
    let interrupt = step == crate::Step::Interrupted && idx == 0 && body.stdio.take_interrupt();
    if interrupt && !body.stdio.interactive() {
        interrupt_foreground(k);
    } else if interrupt {
        match debugger::prompt(body, cpu, k) {
            debugger::Outcome::Continue => {}
            debugger::Outcome::Quit => {
                kill_all(k);
                body.exit = Some(ExitStatus::Signaled(signal::SIGINT));
                return Ok(None);
            }
        }
    }
    if k.done.load(Ordering::SeqCst) {
        return Ok(Some(Outcome::Preempt));
    }
    let mut t = k.lock();
    k.process_wakes(&mut t);
    let now = k.now();
    let tick = t.sched.tick(idx, now).unwrap_or(false);
    if idx == 0 && k.kickers.len() > 1 && t.sched.load_balance(now) > 0 {
        for c in 1..k.kickers.len() {
            if t.sched.need_resched(c) || t.running[c].is_none() {
                k.kick(&t, c);
            }
        }
    }
    if tick || t.sched.need_resched(idx) {
        return Ok(Some(Outcome::Preempt));
    }
    Ok(None)
}
