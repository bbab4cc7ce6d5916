//! The scheduler classes driving real vprocs on a vCPU: a periodic Timer on
//! the device event loop kicks the vCPU, the scheduler's tick decides, and
//! shares come from the scheduler's own accounting.
#![allow(clippy::cast_possible_truncation)] // ci/cast-baseline.txt: casts to review

mod common;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use vkernel::core::prelude::*;
use vkernel::core::sched::{Policy, Scheduler, TaskId};
use vkernel::devices::{Event, EventLoop, Timer};
use vkernel::guest::programs;

/// Tick source: a timerfd on the event loop, on its own thread, kicking the
/// vCPU at every expiration.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(kicker: Kicker, period: Duration) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut ev = EventLoop::new().unwrap();
            let mut timer = Timer::new().unwrap();
            timer.register(ev.handle()).unwrap();
            timer.arm_periodic(period).unwrap();
            ev.run(|e| {
                if let Event::Timer { .. } = e {
                    kicker.kick();
                }
                if s2.load(Ordering::Acquire) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        });
        Ticker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

struct Vproc {
    vms: Vmspace,
    frame: TrapFrame,
    done: bool,
}

#[test]
fn nice_levels_get_cpu_shares_near_their_weights() {
    let Some(mut e) = Env::new("nice_levels_get_cpu_shares_near_their_weights") else {
        return;
    };
    let mut procs: Vec<Vproc> = (0..2)
        .map(|_| Vproc {
            vms: e.vmspace_with(programs::spin()),
            frame: frame(0, 0, 0),
            done: false,
        })
        .collect();
    let mut sched = Scheduler::new(1).unwrap();
    let start = Instant::now();
    let now = || start.elapsed().as_nanos() as u64;
    sched
        .add_task(TaskId(0), Policy::Fair { nice: 0 }, 0, 0, now())
        .unwrap();
    sched
        .add_task(TaskId(1), Policy::Fair { nice: 5 }, 0, 0, now())
        .unwrap();
    let mut cur = sched.schedule(0, now()).unwrap().unwrap();
    let _ticker = Ticker::start(e.cpu.kicker(), Duration::from_millis(2));
    let secs = if scaled(100) < 100 { 1.0 } else { 3.0 };
    let mut preemptions = 0;
    while start.elapsed().as_secs_f64() < secs {
        let p = &mut procs[cur.0 as usize];
        match e.cpu.run(&p.vms, &mut p.frame).unwrap() {
            Trap::Interrupted => {
                if sched.tick(0, now()).unwrap() {
                    let next = sched.schedule(0, now()).unwrap().unwrap();
                    if next != cur {
                        preemptions += 1;
                    }
                    cur = next;
                }
            }
            other => panic!("spin vproc: {other:?}"),
        }
    }
    sched.update_accounting(0, now()).unwrap();
    let r0 = sched.runtime(TaskId(0)).unwrap() as f64;
    let r1 = sched.runtime(TaskId(1)).unwrap() as f64;
    let ratio = r0 / r1;
    eprintln!(
        "nice 0: {:.0} ms, nice 5: {:.0} ms, ratio {ratio:.2} (weights 1024/335 = 3.06), {preemptions} preemptions; spins {} / {}",
        r0 / 1e6,
        r1 / 1e6,
        procs[0].frame.rax,
        procs[1].frame.rax
    );
    assert!(preemptions >= 4, "the timer preempted the vprocs");
    assert!((1.8..5.0).contains(&ratio), "CPU share ratio {ratio:.2}");
    // The vprocs' own progress agrees in direction.
    assert!(procs[0].frame.rax > procs[1].frame.rax);
    assert!(!procs[0].done && !procs[1].done);
}

#[test]
fn a_real_time_vproc_preempts_fair_ones() {
    let Some(mut e) = Env::new("a_real_time_vproc_preempts_fair_ones") else {
        return;
    };
    let mut procs: Vec<Vproc> = (0..3)
        .map(|i| {
            let code = if i < 2 {
                programs::spin()
            } else {
                programs::syscall_check()
            };
            let mut f = frame(0, 0, 0);
            f.rcx = scaled(200);
            Vproc {
                vms: e.vmspace_with(code),
                frame: f,
                done: false,
            }
        })
        .collect();
    let mut sched = Scheduler::new(1).unwrap();
    let start = Instant::now();
    let now = || start.elapsed().as_nanos() as u64;
    sched
        .add_task(TaskId(0), Policy::Fair { nice: 0 }, 0, 0, now())
        .unwrap();
    sched
        .add_task(TaskId(1), Policy::Fair { nice: -5 }, 0, 0, now())
        .unwrap();
    let mut cur = sched.schedule(0, now()).unwrap().unwrap();
    let _ticker = Ticker::start(e.cpu.kicker(), Duration::from_millis(2));
    let mut rt_added = false;
    let mut ran_while_rt_runnable = 0u32;
    let mut rt_done_at = None;
    while start.elapsed() < Duration::from_secs(5) && rt_done_at.is_none() {
        if !rt_added && start.elapsed() > Duration::from_millis(100) {
            let preempt = sched
                .add_task(TaskId(2), Policy::Fifo { prio: 10 }, 0, 0, now())
                .unwrap();
            assert!(preempt, "a FIFO task preempts the fair one at once");
            cur = sched.schedule(0, now()).unwrap().unwrap();
            assert_eq!(cur, TaskId(2));
            rt_added = true;
        }
        if rt_added && cur != TaskId(2) {
            ran_while_rt_runnable += 1;
        }
        let p = &mut procs[cur.0 as usize];
        match e.cpu.run(&p.vms, &mut p.frame).unwrap() {
            Trap::Interrupted => {
                if sched.tick(0, now()).unwrap() {
                    cur = sched.schedule(0, now()).unwrap().unwrap();
                }
            }
            Trap::Syscall if p.frame.rax == programs::SYS_CHECK => {
                p.frame.rax = programs::check_result(p.frame.syscall_args());
            }
            Trap::Syscall if p.frame.rax == programs::SYS_EXIT => {
                p.done = true;
                sched.remove_task(cur, now()).unwrap();
                rt_done_at = Some(start.elapsed());
                cur = sched.schedule(0, now()).unwrap().unwrap();
            }
            other => panic!("{other:?}"),
        }
    }
    eprintln!("RT vproc finished at {rt_done_at:?}");
    assert!(procs[2].done, "the RT vproc ran to completion");
    assert_eq!(
        ran_while_rt_runnable, 0,
        "no fair vproc ran while the RT one was runnable"
    );
    // The fair ones ran before it arrived.
    assert!(procs[0].frame.rax + procs[1].frame.rax > 0);
}
