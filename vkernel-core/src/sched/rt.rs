//! The real-time class: SCHED_FIFO and SCHED_RR, priorities 1..=99.
//!
//! One FIFO list per priority; the highest non-empty priority runs, its
//! first task first. The running task stays at the head of its list, so a
//! preempted task resumes before its equal-priority peers. A FIFO task runs
//! until it blocks, yields or a higher priority becomes runnable; a RR task
//! additionally goes to the back of its list when its timeslice is used up.
//!
//! Throttling, as Linux's `sched_rt_period_us`/`sched_rt_runtime_us` with
//! one bandwidth per CPU (no runtime sharing between CPUs): the class
//! counts the CPU time its tasks use in the current period (`rt_time`);
//! once that exceeds the runtime the class is throttled: it picks nothing
//! and preempts nothing, so fair tasks run, until a period boundary takes
//! one runtime off `rt_time` per elapsed period and it is back under the
//! runtime. Periods are refreshed lazily, from the runqueue clock
//! ([`SchedClass::update_clock`]), not by a timer of their own.

use std::collections::{BTreeMap, VecDeque};

use super::class::{DequeueKind, EnqueueKind, SchedClass, Tunables};
use super::task::{Policy, Task, TaskId};

/// The real-time class's part of one runqueue.
#[derive(Debug, Clone, Default)]
pub struct RtClass {
    queues: BTreeMap<u8, VecDeque<TaskId>>,
    curr: Option<TaskId>,
    nr_running: usize,
    rr_timeslice_ns: u64,
    lb_list: Vec<TaskId>,
    lb_pos: usize,
    /// The throttling period (ns).
    rt_period_ns: u64,
    /// The runtime per period (ns); `None`: no throttling.
    rt_runtime_ns: Option<u64>,
    /// CPU time the class's tasks used in this period, less refreshes.
    rt_time: u64,
    /// Start of the current period on the runqueue clock (set by the
    /// first clock update).
    period_start: Option<u64>,
    /// Runtime used up: nothing of this class runs until a refresh.
    rt_throttled: bool,
}

impl RtClass {
    /// An empty real-time runqueue with the given tunables.
    pub fn new(tunables: &Tunables) -> Self {
        let mut rt = RtClass::default();
        rt.set_tunables(tunables);
        rt
    }

    /// CPU time used by real-time tasks in the current period that still
    /// counts against the runtime (ns).
    pub fn rt_time(&self) -> u64 {
        self.rt_time
    }

    /// The runtime per period if throttling is in effect: it is off with
    /// no runtime (-1) and, as on Linux, when the runtime covers the whole
    /// period.
    fn bandwidth(&self) -> Option<u64> {
        self.rt_runtime_ns.filter(|&r| r < self.rt_period_ns)
    }

    /// The queued task ids at `prio`, head (next to run) first.
    pub fn queue(&self, prio: u8) -> Vec<TaskId> {
        self.queues
            .get(&prio)
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }

    fn prio_of(task: &Task) -> u8 {
        task.policy.rt_prio().unwrap_or(0)
    }

    fn remove_from_queue(&mut self, prio: u8, id: TaskId) -> bool {
        let Some(q) = self.queues.get_mut(&prio) else {
            return false;
        };
        let found = match q.iter().position(|&t| t == id) {
            Some(pos) => {
                q.remove(pos);
                true
            }
            None => false,
        };
        if q.is_empty() {
            self.queues.remove(&prio);
        }
        found
    }
}

impl SchedClass for RtClass {
    fn name(&self) -> &'static str {
        "rt"
    }

    fn handles(&self, policy: &Policy) -> bool {
        policy.is_rt()
    }

    fn nr_running(&self) -> usize {
        self.nr_running
    }

    fn set_tunables(&mut self, tunables: &Tunables) {
        self.rr_timeslice_ns = tunables.rr_timeslice_ns;
        self.rt_period_ns = tunables.rt_period_ns.max(1);
        self.rt_runtime_ns = tunables.rt_runtime_ns;
        match self.bandwidth() {
            None => {
                self.rt_time = 0;
                self.rt_throttled = false;
            }
            Some(r) if self.rt_throttled && self.rt_time < r => self.rt_throttled = false,
            Some(_) => {}
        }
    }

    fn update_clock(&mut self, now: u64) {
        let start = *self.period_start.get_or_insert(now);
        let end = start.saturating_add(self.rt_period_ns);
        if now < end {
            return;
        }
        let periods = (now - start) / self.rt_period_ns;
        self.period_start = Some(start + periods * self.rt_period_ns);
        let Some(runtime) = self.bandwidth() else {
            return;
        };
        self.rt_time = self.rt_time.saturating_sub(periods.saturating_mul(runtime));
        if self.rt_throttled && self.rt_time < runtime {
            self.rt_throttled = false;
        }
    }

    fn throttled(&self) -> bool {
        self.rt_throttled
    }

    fn unthrottle_at(&self) -> Option<u64> {
        if !self.rt_throttled {
            return None;
        }
        self.period_start
            .map(|s| s.saturating_add(self.rt_period_ns))
    }

    fn enqueue_task(&mut self, task: &mut Task, _kind: EnqueueKind) {
        let prio = Self::prio_of(task);
        self.queues.entry(prio).or_default().push_back(task.id);
        self.nr_running += 1;
    }

    fn dequeue_task(&mut self, task: &mut Task, now: u64, _kind: DequeueKind) {
        self.update_curr(task, now);
        if self.curr == Some(task.id) {
            self.curr = None;
        }
        if self.remove_from_queue(Self::prio_of(task), task.id) {
            self.nr_running -= 1;
        }
    }

    fn requeue_task(&mut self, task: &mut Task, now: u64) {
        self.update_curr(task, now);
        let prio = Self::prio_of(task);
        if self.remove_from_queue(prio, task.id) {
            self.queues.entry(prio).or_default().push_back(task.id);
        }
    }

    fn task_new(&mut self, task: &mut Task) {
        task.time_slice = self.rr_timeslice_ns;
    }

    fn task_init(&mut self, task: &mut Task) {
        task.time_slice = self.rr_timeslice_ns;
    }

    fn task_tick(&mut self, task: &mut Task, now: u64) -> bool {
        self.update_curr(task, now);
        if self.rt_throttled {
            return true;
        }
        if !matches!(task.policy, Policy::RoundRobin { .. }) || task.time_slice > 0 {
            return false;
        }
        task.time_slice = self.rr_timeslice_ns;
        let prio = Self::prio_of(task);
        let peers = self.queues.get(&prio).map_or(0, VecDeque::len);
        if peers > 1 {
            self.remove_from_queue(prio, task.id);
            self.queues.entry(prio).or_default().push_back(task.id);
            true
        } else {
            false
        }
    }

    fn check_preempt_curr(&mut self, curr: &mut Task, woken: &Task, now: u64) -> bool {
        self.update_curr(curr, now);
        Self::prio_of(woken) > Self::prio_of(curr)
    }

    fn pick_next_task(&mut self) -> Option<TaskId> {
        if self.rt_throttled {
            return None;
        }
        let (_, q) = self.queues.iter().next_back()?;
        let id = *q.front()?;
        self.curr = Some(id);
        Some(id)
    }

    fn put_prev_task(&mut self, task: &mut Task, now: u64) {
        self.update_curr(task, now);
        if self.curr == Some(task.id) {
            self.curr = None;
        }
    }

    fn set_curr_task(&mut self, task: &mut Task, _now: u64) {
        self.curr = Some(task.id);
    }

    fn update_curr(&mut self, task: &mut Task, now: u64) {
        if self.curr != Some(task.id) {
            return;
        }
        let delta = task.account_exec(now);
        if matches!(task.policy, Policy::RoundRobin { .. }) {
            task.time_slice = task.time_slice.saturating_sub(delta);
        }
        if let Some(runtime) = self.bandwidth() {
            // Only the part of the run inside the current period counts: a
            // task that ran alone through whole periods without a clock
            // update (nobody else wanted the CPU, so no tick) is charged
            // for this period, not throttled for the ones gone by.
            let in_period = self.period_start.map_or(delta, |s| now.saturating_sub(s));
            self.rt_time = if delta > in_period {
                in_period
            } else {
                self.rt_time.saturating_add(delta)
            };
            if self.rt_time > runtime {
                self.rt_throttled = true;
            }
        }
    }

    fn load_balance_start(&mut self) -> Option<TaskId> {
        let curr = self.curr;
        self.lb_list = self
            .queues
            .values()
            .flat_map(|q| q.iter().copied())
            .filter(|&id| Some(id) != curr)
            .collect();
        self.lb_pos = 0;
        self.load_balance_next()
    }

    fn load_balance_next(&mut self) -> Option<TaskId> {
        let id = self.lb_list.get(self.lb_pos).copied();
        if id.is_some() {
            self.lb_pos += 1;
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::task::TaskState;

    fn task(id: u64, policy: Policy) -> Task {
        let mut t = Task::new(TaskId(id), policy, 0, 0);
        t.state = TaskState::Runnable;
        t
    }

    fn setup(rt: &mut RtClass, t: &mut Task) {
        rt.task_init(t);
        rt.task_new(t);
        rt.enqueue_task(t, EnqueueKind::New);
    }

    #[test]
    fn higher_priority_first_then_fifo_order() {
        let mut rt = RtClass::new(&Tunables::default());
        let mut a = task(1, Policy::Fifo { prio: 10 });
        let mut b = task(2, Policy::Fifo { prio: 50 });
        let mut c = task(3, Policy::Fifo { prio: 10 });
        for t in [&mut a, &mut b, &mut c] {
            setup(&mut rt, t);
        }
        assert_eq!(rt.nr_running(), 3);
        assert_eq!(rt.pick_next_task(), Some(TaskId(2)));
        rt.dequeue_task(&mut b, 0, DequeueKind::Sleep);
        rt.put_prev_task(&mut b, 0);
        assert_eq!(rt.pick_next_task(), Some(TaskId(1)));
        // A preempted task stays at the head of its list.
        rt.put_prev_task(&mut a, 5);
        assert_eq!(rt.pick_next_task(), Some(TaskId(1)));
        // Yield moves it behind its peer.
        rt.requeue_task(&mut a, 6);
        rt.put_prev_task(&mut a, 6);
        assert_eq!(rt.queue(10), vec![TaskId(3), TaskId(1)]);
        assert_eq!(rt.pick_next_task(), Some(TaskId(3)));
        assert_eq!(a.sum_exec_runtime, 6);
    }

    #[test]
    fn round_robin_slice_rotation() {
        let tun = Tunables {
            rr_timeslice_ns: 10,
            ..Tunables::default()
        };
        let mut rt = RtClass::new(&tun);
        let mut a = task(1, Policy::RoundRobin { prio: 5 });
        let mut b = task(2, Policy::RoundRobin { prio: 5 });
        setup(&mut rt, &mut a);
        setup(&mut rt, &mut b);
        assert_eq!(rt.pick_next_task(), Some(TaskId(1)));
        a.exec_start = 0;
        assert!(!rt.task_tick(&mut a, 5));
        assert!(rt.task_tick(&mut a, 10));
        assert_eq!(a.time_slice, 10);
        assert_eq!(rt.queue(5), vec![TaskId(2), TaskId(1)]);
    }

    #[test]
    fn fifo_never_tick_preempted_and_equal_prio_does_not_preempt() {
        let mut rt = RtClass::new(&Tunables {
            rt_runtime_ns: None,
            ..Tunables::default()
        });
        let mut a = task(1, Policy::Fifo { prio: 5 });
        let mut b = task(2, Policy::Fifo { prio: 5 });
        let mut c = task(3, Policy::RoundRobin { prio: 6 });
        setup(&mut rt, &mut a);
        assert_eq!(rt.pick_next_task(), Some(TaskId(1)));
        assert!(!rt.task_tick(&mut a, 1_000_000_000_000));
        setup(&mut rt, &mut b);
        assert!(!rt.check_preempt_curr(&mut a, &b, 1_000_000_000_001));
        setup(&mut rt, &mut c);
        assert!(rt.check_preempt_curr(&mut a, &c, 1_000_000_000_002));
    }

    #[test]
    fn load_balance_iterator_skips_current() {
        let mut rt = RtClass::new(&Tunables::default());
        let mut ts: Vec<Task> = (1..=3).map(|i| task(i, Policy::Fifo { prio: 7 })).collect();
        for t in ts.iter_mut() {
            setup(&mut rt, t);
        }
        assert_eq!(rt.pick_next_task(), Some(TaskId(1)));
        let mut seen = Vec::new();
        let mut it = rt.load_balance_start();
        while let Some(id) = it {
            seen.push(id);
            it = rt.load_balance_next();
        }
        assert_eq!(seen, vec![TaskId(2), TaskId(3)]);
    }
}
