//! CPU scheduling for vprocs: modular scheduler classes and CFS.
//!
//! This is the scheduler from the CFS posting, as a library: each CPU has a
//! [`RunQueue`] holding an ordered list of scheduler classes
//! ([`SchedClass`]); the first class that has a runnable task picks the
//! next one. Two classes are provided, in this order:
//!
//! - [`RtClass`]: SCHED_FIFO and SCHED_RR, priorities 1..=99, higher first;
//! - [`FairClass`]: CFS, a tree ordered by virtual runtime with Linux's
//!   nice-to-weight table, `min_vruntime` tracking, bounded sleeper credit,
//!   one granularity tunable and optional fairness by user ID first.
//!
//! [`Scheduler`] ties it together for N CPUs. It reads no clock: every
//! operation that can account time takes `now` in nanoseconds, and it
//! never sleeps or switches anything itself; it tells the caller (the
//! virtual kernel) which task to run.
//!
//! A typical loop for one CPU:
//!
//! ```text
//! on timer tick:      if sched.tick(cpu, now)? { run(sched.schedule(cpu, now)?) }
//! vproc blocks:       sched.sleep(id, now)?;  run(sched.schedule(cpu, now)?)
//! event wakes a task: if sched.wake(id, now)? { kick(cpu of id) }
//! sched_yield:        sched.yield_now(id, now)?; run(sched.schedule(cpu, now)?)
//! periodically:       sched.load_balance(now);
//! ```

mod class;
mod error;
mod fair;
mod rt;
mod runqueue;
mod task;
mod weights;

use std::collections::BTreeMap;

pub use class::{DequeueKind, EnqueueKind, SchedClass, Tunables};
pub use error::SchedError;
pub use fair::FairClass;
pub use rt::RtClass;
pub use runqueue::RunQueue;
pub use task::{Policy, Task, TaskId, TaskState, Uid, MAX_RT_PRIO, MIN_RT_PRIO};
pub use weights::{
    calc_delta_fair, nice_to_weight, valid_nice, MAX_NICE, MIN_NICE, NICE_0_LOAD, PRIO_TO_WEIGHT,
};

/// Result type of scheduler operations.
pub type Result<T> = std::result::Result<T, SchedError>;

/// The default class list: real-time first, then fair.
pub fn default_classes(tunables: &Tunables) -> Vec<Box<dyn SchedClass>> {
    vec![
        Box::new(RtClass::new(tunables)),
        Box::new(FairClass::new(tunables)),
    ]
}

/// The scheduler: per-CPU runqueues and the tasks on them.
#[derive(Debug)]
pub struct Scheduler {
    rqs: Vec<RunQueue>,
    tasks: BTreeMap<TaskId, Task>,
    tunables: Tunables,
    exited_runtime: BTreeMap<Uid, u64>,
}

/// Whether a task was the running task when it was detached.
#[derive(Debug, Clone, Copy)]
struct Detached {
    was_curr: bool,
}

impl Scheduler {
    /// A scheduler for `nr_cpus` CPUs with default tunables.
    pub fn new(nr_cpus: usize) -> Result<Self> {
        Self::with_tunables(nr_cpus, Tunables::default())
    }

    /// A scheduler for `nr_cpus` CPUs with the given tunables.
    pub fn with_tunables(nr_cpus: usize, tunables: Tunables) -> Result<Self> {
        Self::with_classes(nr_cpus, tunables, |_, t| default_classes(t))
    }

    /// A scheduler whose runqueues get their class lists from `make(cpu,
    /// tunables)`, in priority order.
    pub fn with_classes(
        nr_cpus: usize,
        tunables: Tunables,
        mut make: impl FnMut(usize, &Tunables) -> Vec<Box<dyn SchedClass>>,
    ) -> Result<Self> {
        if nr_cpus == 0 {
            return Err(SchedError::NoCpus);
        }
        tunables.validate().map_err(SchedError::InvalidTunable)?;
        Ok(Scheduler {
            rqs: (0..nr_cpus)
                .map(|cpu| RunQueue::new(cpu, make(cpu, &tunables)))
                .collect(),
            tasks: BTreeMap::new(),
            tunables,
            exited_runtime: BTreeMap::new(),
        })
    }

    /// Number of CPUs.
    pub fn nr_cpus(&self) -> usize {
        self.rqs.len()
    }

    /// The current tunables.
    pub fn tunables(&self) -> &Tunables {
        &self.tunables
    }

    /// One CPU's runqueue.
    pub fn runqueue(&self, cpu: usize) -> Option<&RunQueue> {
        self.rqs.get(cpu)
    }

    /// A task's state and accounting.
    pub fn task(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(&id)
    }

    /// All live tasks, by id.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }

    /// The task running on `cpu`, if any.
    pub fn current(&self, cpu: usize) -> Option<TaskId> {
        self.rqs.get(cpu).and_then(RunQueue::current)
    }

    /// Whether `cpu` should call [`Scheduler::schedule`].
    pub fn need_resched(&self, cpu: usize) -> bool {
        self.rqs.get(cpu).is_some_and(RunQueue::need_resched)
    }

    /// Runnable tasks on `cpu`, the running one included.
    pub fn nr_running(&self, cpu: usize) -> usize {
        self.rqs.get(cpu).map_or(0, RunQueue::nr_running)
    }

    /// Context switches on `cpu` so far.
    pub fn context_switches(&self, cpu: usize) -> u64 {
        self.rqs.get(cpu).map_or(0, RunQueue::nr_switches)
    }

    /// Context switches on all CPUs.
    pub fn total_context_switches(&self) -> u64 {
        self.rqs.iter().map(RunQueue::nr_switches).sum()
    }

    /// Total CPU time of a task (`sum_exec_runtime`), accounted up to the
    /// last scheduler event on its CPU (see [`Scheduler::update_accounting`]).
    pub fn runtime(&self, id: TaskId) -> Option<u64> {
        self.tasks.get(&id).map(|t| t.sum_exec_runtime)
    }

    /// A task's virtual runtime (meaningful for fair tasks).
    pub fn vruntime(&self, id: TaskId) -> Option<u64> {
        self.tasks.get(&id).map(|t| t.vruntime)
    }

    /// Total CPU time of all tasks of `uid`, exited ones included.
    pub fn uid_runtime(&self, uid: Uid) -> u64 {
        let live: u64 = self
            .tasks
            .values()
            .filter(|t| t.uid == uid)
            .map(|t| t.sum_exec_runtime)
            .sum();
        live.saturating_add(self.exited_runtime.get(&uid).copied().unwrap_or(0))
    }

    /// Accounts the running task of `cpu` up to `now`, so that runtime
    /// queries are current.
    pub fn update_accounting(&mut self, cpu: usize, now: u64) -> Result<()> {
        self.check_cpu(cpu)?;
        let now = self.rqs[cpu].observe(now);
        self.update_curr(cpu, now);
        Ok(())
    }

    /// Creates a runnable task on `cpu` (task_init, task_new, enqueue).
    /// Returns whether it should preempt the task running there (or the
    /// CPU is idle): then call [`Scheduler::schedule`] for that CPU.
    pub fn add_task(
        &mut self,
        id: TaskId,
        policy: Policy,
        uid: Uid,
        cpu: usize,
        now: u64,
    ) -> Result<bool> {
        if self.tasks.contains_key(&id) {
            return Err(SchedError::DuplicateTask(id));
        }
        self.check_cpu(cpu)?;
        validate_policy(&policy)?;
        let ci = self.rqs[cpu]
            .class_index(&policy)
            .ok_or(SchedError::NoClassForPolicy)?;
        let now = self.rqs[cpu].observe(now);
        self.update_curr(cpu, now);
        let mut task = Task::new(id, policy, uid, cpu);
        let class = &mut self.rqs[cpu].classes[ci];
        class.task_init(&mut task);
        class.task_new(&mut task);
        task.state = TaskState::Runnable;
        class.enqueue_task(&mut task, EnqueueKind::New);
        self.tasks.insert(id, task);
        Ok(self.check_preempt(cpu, id, now))
    }

    /// Removes a task (exit). Its runtime stays counted in
    /// [`Scheduler::uid_runtime`]. If it was running, its CPU needs a
    /// [`Scheduler::schedule`].
    pub fn remove_task(&mut self, id: TaskId, now: u64) -> Result<()> {
        let task = self.tasks.get(&id).ok_or(SchedError::UnknownTask(id))?;
        if task.is_queued() {
            self.deactivate(id, now)?;
        }
        if let Some(task) = self.tasks.remove(&id) {
            *self.exited_runtime.entry(task.uid).or_insert(0) += task.sum_exec_runtime;
        }
        Ok(())
    }

    /// The task blocks (sleeps): it leaves its runqueue. If it was running,
    /// its CPU needs a [`Scheduler::schedule`].
    pub fn sleep(&mut self, id: TaskId, now: u64) -> Result<()> {
        let task = self.tasks.get(&id).ok_or(SchedError::UnknownTask(id))?;
        if !task.is_queued() {
            return Err(SchedError::NotRunnable(id));
        }
        self.deactivate(id, now)
    }

    /// Same as [`Scheduler::sleep`].
    pub fn block(&mut self, id: TaskId, now: u64) -> Result<()> {
        self.sleep(id, now)
    }

    /// A sleeping task becomes runnable on the CPU it last ran on. Returns
    /// whether it should preempt the task running there (or that CPU is
    /// idle): then call [`Scheduler::schedule`] for `task(id).cpu`.
    pub fn wake(&mut self, id: TaskId, now: u64) -> Result<bool> {
        let task = self.tasks.get(&id).ok_or(SchedError::UnknownTask(id))?;
        if task.is_queued() {
            return Err(SchedError::AlreadyRunnable(id));
        }
        let cpu = task.cpu;
        let now = self.rqs[cpu].observe(now);
        self.update_curr(cpu, now);
        self.enqueue(id, EnqueueKind::Wakeup)?;
        Ok(self.check_preempt(cpu, id, now))
    }

    /// sched_yield: puts a runnable task behind all others of its priority
    /// (requeue_task). If it is running, its CPU needs a
    /// [`Scheduler::schedule`] (flagged in [`Scheduler::need_resched`]).
    pub fn yield_now(&mut self, id: TaskId, now: u64) -> Result<()> {
        let task = self.tasks.get_mut(&id).ok_or(SchedError::UnknownTask(id))?;
        if !task.is_queued() {
            return Err(SchedError::NotRunnable(id));
        }
        let rq = &mut self.rqs[task.cpu];
        let now = rq.observe(now);
        let ci = rq
            .class_index(&task.policy)
            .ok_or(SchedError::NoClassForPolicy)?;
        rq.classes[ci].requeue_task(task, now);
        if rq.curr == Some(id) {
            rq.need_resched = true;
        }
        Ok(())
    }

    /// Timer tick on `cpu`: accounts the running task (task_tick) and
    /// returns whether it should be preempted (or the idle CPU has work),
    /// in which case call [`Scheduler::schedule`].
    pub fn tick(&mut self, cpu: usize, now: u64) -> Result<bool> {
        self.check_cpu(cpu)?;
        let rq = &mut self.rqs[cpu];
        let now = rq.observe(now);
        match rq.curr {
            Some(id) => {
                if let Some(task) = self.tasks.get_mut(&id) {
                    if let Some(ci) = rq.class_index(&task.policy) {
                        if rq.classes[ci].task_tick(task, now) {
                            rq.need_resched = true;
                        }
                    }
                }
            }
            None => {
                if rq.nr_running() > 0 {
                    rq.need_resched = true;
                }
            }
        }
        Ok(rq.need_resched)
    }

    /// Switches `cpu` to its next task: put_prev_task for the running task,
    /// then pick_next_task from the first class that has one. Returns the
    /// task to run, or `None` if the CPU should idle.
    pub fn schedule(&mut self, cpu: usize, now: u64) -> Result<Option<TaskId>> {
        self.check_cpu(cpu)?;
        let rq = &mut self.rqs[cpu];
        let now = rq.observe(now);
        rq.need_resched = false;
        let prev = rq.curr.take();
        if let Some(task) = prev.and_then(|id| self.tasks.get_mut(&id)) {
            if let Some(ci) = rq.class_index(&task.policy) {
                rq.classes[ci].put_prev_task(task, now);
            }
            if task.state == TaskState::Running {
                task.state = TaskState::Runnable;
            }
        }
        let next = rq.classes.iter_mut().find_map(|c| c.pick_next_task());
        if let Some(task) = next.and_then(|id| self.tasks.get_mut(&id)) {
            task.state = TaskState::Running;
            task.exec_start = now;
            task.prev_sum_exec_runtime = task.sum_exec_runtime;
            if prev != Some(task.id) {
                task.nr_switches += 1;
                rq.nr_switches += 1;
            }
            rq.curr = Some(task.id);
        }
        Ok(next)
    }

    /// Renice: sets a fair task's nice value (-20..=19) and recomputes its
    /// weight (task_init).
    pub fn set_nice(&mut self, id: TaskId, nice: i8, now: u64) -> Result<()> {
        let task = self.tasks.get(&id).ok_or(SchedError::UnknownTask(id))?;
        if !matches!(task.policy, Policy::Fair { .. }) {
            return Err(SchedError::NotFair(id));
        }
        self.set_policy(id, Policy::Fair { nice }, now)
    }

    /// sched_setscheduler: changes a task's policy, possibly moving it to
    /// another class.
    pub fn set_policy(&mut self, id: TaskId, policy: Policy, now: u64) -> Result<()> {
        validate_policy(&policy)?;
        let task = self.tasks.get(&id).ok_or(SchedError::UnknownTask(id))?;
        let cpu = task.cpu;
        let old_policy = task.policy;
        let queued = task.is_queued();
        let rq = &self.rqs[cpu];
        let old_ci = rq
            .class_index(&old_policy)
            .ok_or(SchedError::NoClassForPolicy)?;
        let new_ci = rq
            .class_index(&policy)
            .ok_or(SchedError::NoClassForPolicy)?;
        let now = self.rqs[cpu].observe(now);
        self.update_curr(cpu, now);
        let detached = if queued {
            Some(self.detach(id, now)?)
        } else {
            None
        };
        let task = self.tasks.get_mut(&id).ok_or(SchedError::UnknownTask(id))?;
        task.policy = policy;
        let class = &mut self.rqs[cpu].classes[new_ci];
        class.task_init(task);
        let kind = if new_ci == old_ci {
            EnqueueKind::Attach
        } else {
            class.task_new(task);
            EnqueueKind::New
        };
        if let Some(d) = detached {
            class.enqueue_task(task, kind);
            if d.was_curr {
                class.set_curr_task(task, now);
                let rq = &mut self.rqs[cpu];
                rq.curr = Some(id);
                if new_ci != old_ci || policy.rt_prio() < old_policy.rt_prio() {
                    rq.need_resched = true;
                }
            } else {
                self.check_preempt(cpu, id, now);
            }
        }
        Ok(())
    }

    /// Moves a task to another CPU's runqueue. A running task stops running
    /// (its old CPU needs a [`Scheduler::schedule`]); a runnable task may
    /// preempt the new CPU's current task (flagged in
    /// [`Scheduler::need_resched`]).
    pub fn migrate(&mut self, id: TaskId, cpu: usize, now: u64) -> Result<()> {
        self.check_cpu(cpu)?;
        let task = self.tasks.get(&id).ok_or(SchedError::UnknownTask(id))?;
        let src = task.cpu;
        if src == cpu {
            return Ok(());
        }
        let policy = task.policy;
        let src_ci = self.rqs[src]
            .class_index(&policy)
            .ok_or(SchedError::NoClassForPolicy)?;
        let dst_ci = self.rqs[cpu]
            .class_index(&policy)
            .ok_or(SchedError::NoClassForPolicy)?;
        if task.is_queued() {
            let src_now = self.rqs[src].observe(now);
            self.update_curr(src, src_now);
            let d = self.detach(id, src_now)?;
            if d.was_curr {
                self.rqs[src].need_resched = true;
            }
            let dst_now = self.rqs[cpu].observe(now);
            self.update_curr(cpu, dst_now);
            if let Some(task) = self.tasks.get_mut(&id) {
                task.cpu = cpu;
                if task.state == TaskState::Running {
                    task.state = TaskState::Runnable;
                }
                self.rqs[cpu].classes[dst_ci].enqueue_task(task, EnqueueKind::Attach);
            }
            self.check_preempt(cpu, id, dst_now);
        } else if let Some(task) = self.tasks.get_mut(&id) {
            self.rqs[src].classes[src_ci].migrate_task_from(task);
            task.cpu = cpu;
            self.rqs[cpu].classes[dst_ci].migrate_task_to(task);
        }
        Ok(())
    }

    /// Moves runnable, not running tasks from the busiest runqueue to the
    /// idlest (by number of runnable tasks), using the classes'
    /// load_balance_start/load_balance_next iterators, until the counts
    /// differ by at most one. Returns the number of tasks moved.
    pub fn load_balance(&mut self, now: u64) -> usize {
        let mut moved = 0;
        for _ in 0..=self.tasks.len() {
            let loads: Vec<usize> = self.rqs.iter().map(RunQueue::nr_running).collect();
            let (Some(busiest), Some(idlest)) = (
                (0..loads.len()).max_by_key(|&c| (loads[c], usize::MAX - c)),
                (0..loads.len()).min_by_key(|&c| (loads[c], c)),
            ) else {
                break;
            };
            if loads[busiest] < loads[idlest] + 2 {
                break;
            }
            let candidate = self.rqs[busiest]
                .classes
                .iter_mut()
                .find_map(|c| c.load_balance_start());
            let Some(id) = candidate else {
                break;
            };
            if self.migrate(id, idlest, now).is_err() {
                break;
            }
            moved += 1;
        }
        moved
    }

    /// Changes the tunables on every CPU. Switching uid fairness re-queues
    /// each CPU's fair tasks (running ones stay running).
    pub fn set_tunables(&mut self, tunables: Tunables, now: u64) -> Result<()> {
        tunables.validate().map_err(SchedError::InvalidTunable)?;
        for cpu in 0..self.rqs.len() {
            let now = self.rqs[cpu].observe(now);
            self.update_curr(cpu, now);
            for ci in 0..self.rqs[cpu].classes.len() {
                if !self.rqs[cpu].classes[ci].tunables_need_requeue(&tunables) {
                    self.rqs[cpu].classes[ci].set_tunables(&tunables);
                    continue;
                }
                let rq = &self.rqs[cpu];
                let ids: Vec<TaskId> = self
                    .tasks
                    .values()
                    .filter(|t| t.cpu == cpu && rq.class_index(&t.policy) == Some(ci))
                    .map(|t| t.id)
                    .collect();
                let mut curr = None;
                for &id in &ids {
                    if self.tasks.get(&id).is_some_and(Task::is_queued) {
                        if self.detach(id, now)?.was_curr {
                            curr = Some(id);
                        }
                    } else if let Some(task) = self.tasks.get_mut(&id) {
                        self.rqs[cpu].classes[ci].migrate_task_from(task);
                    }
                }
                let rq = &mut self.rqs[cpu];
                rq.classes[ci].set_tunables(&tunables);
                for &id in &ids {
                    let Some(task) = self.tasks.get_mut(&id) else {
                        continue;
                    };
                    if task.is_queued() {
                        rq.classes[ci].enqueue_task(task, EnqueueKind::Attach);
                        if curr == Some(id) {
                            rq.classes[ci].set_curr_task(task, now);
                            rq.curr = Some(id);
                        }
                    } else {
                        rq.classes[ci].migrate_task_to(task);
                    }
                }
            }
        }
        self.tunables = tunables;
        Ok(())
    }

    /// Sets the CFS granularity (nanoseconds) on every CPU.
    pub fn set_granularity(&mut self, granularity_ns: u64, now: u64) -> Result<()> {
        let t = Tunables {
            granularity_ns,
            ..self.tunables
        };
        self.set_tunables(t, now)
    }

    /// Switches fairness by user ID first on or off on every CPU.
    pub fn set_uid_fairness(&mut self, on: bool, now: u64) -> Result<()> {
        let t = Tunables {
            uid_fairness: on,
            ..self.tunables
        };
        self.set_tunables(t, now)
    }

    fn check_cpu(&self, cpu: usize) -> Result<()> {
        if cpu < self.rqs.len() {
            Ok(())
        } else {
            Err(SchedError::InvalidCpu {
                cpu,
                nr_cpus: self.rqs.len(),
            })
        }
    }

    /// Accounts the running task of `cpu` up to `now`.
    fn update_curr(&mut self, cpu: usize, now: u64) {
        let rq = &mut self.rqs[cpu];
        let Some(task) = rq.curr.and_then(|id| self.tasks.get_mut(&id)) else {
            return;
        };
        if let Some(ci) = rq.class_index(&task.policy) {
            rq.classes[ci].update_curr(task, now);
        }
    }

    /// Enqueues a sleeping task on its CPU.
    fn enqueue(&mut self, id: TaskId, kind: EnqueueKind) -> Result<()> {
        let task = self.tasks.get_mut(&id).ok_or(SchedError::UnknownTask(id))?;
        let rq = &mut self.rqs[task.cpu];
        let ci = rq
            .class_index(&task.policy)
            .ok_or(SchedError::NoClassForPolicy)?;
        task.state = TaskState::Runnable;
        rq.classes[ci].enqueue_task(task, kind);
        Ok(())
    }

    /// Takes a runnable task off its runqueue for good (sleep or exit).
    fn deactivate(&mut self, id: TaskId, now: u64) -> Result<()> {
        let task = self.tasks.get_mut(&id).ok_or(SchedError::UnknownTask(id))?;
        let rq = &mut self.rqs[task.cpu];
        let now = rq.observe(now);
        let ci = rq
            .class_index(&task.policy)
            .ok_or(SchedError::NoClassForPolicy)?;
        task.state = TaskState::Sleeping;
        rq.classes[ci].dequeue_task(task, now, DequeueKind::Sleep);
        if rq.curr == Some(id) {
            rq.classes[ci].put_prev_task(task, now);
            rq.curr = None;
            rq.need_resched = true;
        }
        Ok(())
    }

    /// Takes a runnable task off its runqueue to re-add it (migration,
    /// policy or tunable change). Its state is left as is.
    fn detach(&mut self, id: TaskId, now: u64) -> Result<Detached> {
        let task = self.tasks.get_mut(&id).ok_or(SchedError::UnknownTask(id))?;
        let rq = &mut self.rqs[task.cpu];
        let ci = rq
            .class_index(&task.policy)
            .ok_or(SchedError::NoClassForPolicy)?;
        let was_curr = rq.curr == Some(id);
        if was_curr {
            rq.classes[ci].put_prev_task(task, now);
            rq.curr = None;
        }
        rq.classes[ci].dequeue_task(task, now, DequeueKind::Detach);
        Ok(Detached { was_curr })
    }

    /// Whether the newly runnable `woken` on `cpu` should preempt the
    /// running task; sets `need_resched` if so. An idle CPU always should.
    fn check_preempt(&mut self, cpu: usize, woken: TaskId, now: u64) -> bool {
        let Some(woken_task) = self.tasks.get(&woken).cloned() else {
            return false;
        };
        let rq = &mut self.rqs[cpu];
        let Some(curr_id) = rq.curr else {
            rq.need_resched = true;
            return true;
        };
        if curr_id == woken {
            return false;
        }
        let Some(curr) = self.tasks.get_mut(&curr_id) else {
            return false;
        };
        let (Some(wc), Some(cc)) = (
            rq.class_index(&woken_task.policy),
            rq.class_index(&curr.policy),
        ) else {
            return false;
        };
        let preempt = match wc.cmp(&cc) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => rq.classes[wc].check_preempt_curr(curr, &woken_task, now),
            std::cmp::Ordering::Greater => false,
        };
        if preempt {
            rq.need_resched = true;
        }
        preempt
    }
}

/// Checks a policy's nice or real-time priority range.
fn validate_policy(policy: &Policy) -> Result<()> {
    match *policy {
        Policy::Fair { nice } if !valid_nice(nice) => Err(SchedError::InvalidNice(nice)),
        Policy::Fifo { prio } | Policy::RoundRobin { prio }
            if !(MIN_RT_PRIO..=MAX_RT_PRIO).contains(&prio) =>
        {
            Err(SchedError::InvalidRtPriority(prio))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000_000_000;

    fn fair(nice: i8) -> Policy {
        Policy::Fair { nice }
    }

    /// Ticks every CPU every `tick` ns from `start` for `dur` ns, calling
    /// schedule whenever a tick asks for it; returns the end time.
    fn simulate(s: &mut Scheduler, start: u64, dur: u64, tick: u64) -> u64 {
        for cpu in 0..s.nr_cpus() {
            if s.current(cpu).is_none() || s.need_resched(cpu) {
                s.schedule(cpu, start).unwrap();
            }
        }
        let mut now = start;
        while now < start + dur {
            now += tick;
            for cpu in 0..s.nr_cpus() {
                if s.tick(cpu, now).unwrap() {
                    s.schedule(cpu, now).unwrap();
                }
            }
        }
        for cpu in 0..s.nr_cpus() {
            s.update_accounting(cpu, now).unwrap();
        }
        now
    }

    #[test]
    fn scheduler_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Scheduler>();
    }

    #[test]
    fn lowest_vruntime_runs_first() {
        let mut s = Scheduler::new(1).unwrap();
        s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
        s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
        assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
        assert_eq!(s.task(TaskId(1)).unwrap().state, TaskState::Running);
        // Task 1 ran 10 ms; task 2 (vruntime 0) is now the leftmost.
        assert_eq!(s.schedule(0, 10 * MS).unwrap(), Some(TaskId(2)));
        assert_eq!(s.vruntime(TaskId(1)), Some(10 * MS));
        assert_eq!(s.task(TaskId(1)).unwrap().state, TaskState::Runnable);
        assert_eq!(s.schedule(0, 13 * MS).unwrap(), Some(TaskId(2)));
        assert_eq!(s.schedule(0, 25 * MS).unwrap(), Some(TaskId(1)));
        assert_eq!(s.context_switches(0), 3);
    }

    #[test]
    fn rt_runs_before_fair_and_always_preempts_it() {
        let mut s = Scheduler::new(1).unwrap();
        assert!(s.add_task(TaskId(1), fair(-20), 0, 0, 0).unwrap());
        assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
        assert!(s
            .add_task(TaskId(2), Policy::Fifo { prio: 1 }, 0, 0, MS)
            .unwrap());
        assert!(s.need_resched(0));
        assert_eq!(s.schedule(0, MS).unwrap(), Some(TaskId(2)));
        // The fair task never runs while the RT task is runnable.
        simulate(&mut s, MS, SEC, MS);
        assert_eq!(s.current(0), Some(TaskId(2)));
        assert_eq!(s.runtime(TaskId(1)), Some(MS));
        // A fair task waking does not preempt RT.
        s.sleep(TaskId(1), SEC + MS).unwrap();
        assert!(!s.wake(TaskId(1), SEC + 2 * MS).unwrap());
        // Once the RT task blocks the fair one runs; RT waking preempts it.
        s.sleep(TaskId(2), SEC + 3 * MS).unwrap();
        assert_eq!(s.schedule(0, SEC + 3 * MS).unwrap(), Some(TaskId(1)));
        assert!(s.wake(TaskId(2), SEC + 4 * MS).unwrap());
        assert_eq!(s.schedule(0, SEC + 4 * MS).unwrap(), Some(TaskId(2)));
    }

    #[test]
    fn higher_rt_priority_first() {
        let mut s = Scheduler::new(1).unwrap();
        s.add_task(TaskId(1), Policy::RoundRobin { prio: 10 }, 0, 0, 0)
            .unwrap();
        s.add_task(TaskId(2), Policy::Fifo { prio: 90 }, 0, 0, 0)
            .unwrap();
        s.add_task(TaskId(3), Policy::Fifo { prio: 50 }, 0, 0, 0)
            .unwrap();
        assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(2)));
        s.sleep(TaskId(2), MS).unwrap();
        assert_eq!(s.schedule(0, MS).unwrap(), Some(TaskId(3)));
        // Lower priority waking does not preempt; higher does.
        assert!(s
            .add_task(TaskId(4), Policy::Fifo { prio: 20 }, 0, 0, 2 * MS)
            .is_ok());
        assert!(!s.need_resched(0));
        assert!(s.wake(TaskId(2), 3 * MS).unwrap());
        assert_eq!(s.schedule(0, 3 * MS).unwrap(), Some(TaskId(2)));
    }

    #[test]
    fn fifo_not_preempted_by_equal_priority() {
        let mut s = Scheduler::new(1).unwrap();
        s.add_task(TaskId(1), Policy::Fifo { prio: 10 }, 0, 0, 0)
            .unwrap();
        assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
        assert!(!s
            .add_task(TaskId(2), Policy::Fifo { prio: 10 }, 0, 0, 0)
            .unwrap());
        let end = simulate(&mut s, 0, 2 * SEC, MS);
        assert_eq!(s.current(0), Some(TaskId(1)));
        assert_eq!(s.runtime(TaskId(1)), Some(end));
        assert_eq!(s.runtime(TaskId(2)), Some(0));
        assert_eq!(s.context_switches(0), 1);
    }

    #[test]
    fn round_robin_rotates_after_its_slice() {
        let tun = Tunables {
            rr_timeslice_ns: 100 * MS,
            ..Tunables::default()
        };
        let mut s = Scheduler::with_tunables(1, tun).unwrap();
        s.add_task(TaskId(1), Policy::RoundRobin { prio: 10 }, 0, 0, 0)
            .unwrap();
        s.add_task(TaskId(2), Policy::RoundRobin { prio: 10 }, 0, 0, 0)
            .unwrap();
        assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
        for t in 1..100 {
            assert!(!s.tick(0, t * MS).unwrap(), "tick {t}");
        }
        assert!(s.tick(0, 100 * MS).unwrap());
        assert_eq!(s.schedule(0, 100 * MS).unwrap(), Some(TaskId(2)));
        for t in 101..200 {
            assert!(!s.tick(0, t * MS).unwrap(), "tick {t}");
        }
        assert!(s.tick(0, 200 * MS).unwrap());
        assert_eq!(s.schedule(0, 200 * MS).unwrap(), Some(TaskId(1)));
        assert_eq!(s.runtime(TaskId(1)), Some(100 * MS));
        assert_eq!(s.runtime(TaskId(2)), Some(100 * MS));
        // A lone RR task just gets a new slice.
        s.sleep(TaskId(2), 200 * MS).unwrap();
        for t in 201..=400 {
            assert!(!s.tick(0, t * MS).unwrap());
        }
    }

    #[test]
    fn vruntime_accounting_by_weight() {
        let mut s = Scheduler::new(1).unwrap();
        s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
        s.schedule(0, 0).unwrap();
        s.tick(0, 7 * MS).unwrap();
        assert_eq!(s.runtime(TaskId(1)), Some(7 * MS));
        assert_eq!(s.vruntime(TaskId(1)), Some(7 * MS));
        s.remove_task(TaskId(1), 7 * MS).unwrap();

        let mut s = Scheduler::new(1).unwrap();
        s.add_task(TaskId(2), fair(5), 0, 0, 0).unwrap();
        s.schedule(0, 0).unwrap();
        s.tick(0, 7 * MS).unwrap();
        assert_eq!(s.runtime(TaskId(2)), Some(7 * MS));
        let v = s.vruntime(TaskId(2)).unwrap();
        assert_eq!(v, 7 * MS * 1024 / 335);
        let ratio = v as f64 / (7 * MS) as f64;
        assert!((ratio - 1024.0 / 335.0).abs() < 1e-6);
    }

    #[test]
    fn nice_0_vs_nice_5_runtime_ratio() {
        let mut s = Scheduler::new(1).unwrap();
        s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
        s.add_task(TaskId(2), fair(5), 0, 0, 0).unwrap();
        let end = simulate(&mut s, 0, 10 * SEC, MS);
        let a = s.runtime(TaskId(1)).unwrap();
        let b = s.runtime(TaskId(2)).unwrap();
        assert_eq!(a + b, end);
        let ratio = a as f64 / b as f64;
        let want = 1024.0 / 335.0;
        assert!((ratio - want).abs() / want < 0.02, "ratio {ratio}");
    }

    fn switches_with_granularity(gran: u64) -> (u64, u64, u64) {
        let tun = Tunables {
            granularity_ns: gran,
            ..Tunables::default()
        };
        let mut s = Scheduler::with_tunables(1, tun).unwrap();
        s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
        s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
        simulate(&mut s, 0, 5 * SEC, MS);
        (
            s.context_switches(0),
            s.runtime(TaskId(1)).unwrap(),
            s.runtime(TaskId(2)).unwrap(),
        )
    }

    #[test]
    fn higher_granularity_fewer_preemptions() {
        let (low, a1, b1) = switches_with_granularity(MS);
        let (high, a2, b2) = switches_with_granularity(20 * MS);
        assert!(low > 3 * high, "low {low} high {high}");
        // Both stay fair over the long run.
        for (a, b) in [(a1, b1), (a2, b2)] {
            let share = a as f64 / (a + b) as f64;
            assert!((share - 0.5).abs() < 0.01, "share {share}");
        }
        // Changing it at runtime takes effect.
        let mut s = Scheduler::new(1).unwrap();
        s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
        s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
        let t = simulate(&mut s, 0, SEC, MS);
        let before = s.context_switches(0);
        s.set_granularity(50 * MS, t).unwrap();
        simulate(&mut s, t, SEC, MS);
        let after = s.context_switches(0) - before;
        assert!(after * 3 < before, "before {before} after {after}");
    }

    #[test]
    fn wakeup_preemption_decisions() {
        let mut s = Scheduler::new(1).unwrap();
        s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
        s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
        assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
        s.sleep(TaskId(2), 0).unwrap();
        s.tick(0, MS).unwrap();
        // Task 2 is only 1 ms behind: within the 4 ms granularity.
        assert!(!s.wake(TaskId(2), MS).unwrap());
        assert!(!s.need_resched(0));
        s.sleep(TaskId(2), MS).unwrap();
        s.tick(0, 100 * MS).unwrap();
        // After a long sleep it is placed one latency period (20 ms) behind.
        assert!(s.wake(TaskId(2), 100 * MS).unwrap());
        assert_eq!(s.vruntime(TaskId(2)), Some(80 * MS));
        assert!(s.need_resched(0));
        assert_eq!(s.schedule(0, 100 * MS).unwrap(), Some(TaskId(2)));
        // A brand-new task starts at min_vruntime, which never goes back
        // (it reached 100 ms while task 1 ran alone): no preemption.
        assert!(!s.add_task(TaskId(3), fair(0), 0, 0, 101 * MS).unwrap());
        assert_eq!(s.vruntime(TaskId(3)), Some(100 * MS));
        // Real time always preempts fair.
        assert!(s
            .add_task(TaskId(4), Policy::RoundRobin { prio: 1 }, 0, 0, 102 * MS)
            .unwrap());
    }

    fn uid_share(on: bool) -> f64 {
        let tun = Tunables {
            uid_fairness: on,
            ..Tunables::default()
        };
        let mut s = Scheduler::with_tunables(1, tun).unwrap();
        s.add_task(TaskId(1), fair(0), 1000, 0, 0).unwrap();
        for i in 0..9 {
            s.add_task(TaskId(100 + i), fair(0), 2000, 0, 0).unwrap();
        }
        let end = simulate(&mut s, 0, 10 * SEC, MS);
        assert_eq!(s.uid_runtime(1000) + s.uid_runtime(2000), end);
        s.uid_runtime(1000) as f64 / end as f64
    }

    #[test]
    fn uid_fairness_on_and_off() {
        let on = uid_share(true);
        assert!((on - 0.5).abs() < 0.02, "on {on}");
        let off = uid_share(false);
        assert!((off - 0.1).abs() < 0.02, "off {off}");
    }

    #[test]
    fn uid_fairness_switchable_at_runtime() {
        let mut s = Scheduler::new(2).unwrap();
        s.add_task(TaskId(1), fair(0), 1, 0, 0).unwrap();
        for i in 0..9 {
            s.add_task(TaskId(10 + i), fair(0), 2, 0, 0).unwrap();
        }
        // A sleeping task of uid 2 and a second CPU with uid 2 only.
        s.add_task(TaskId(50), fair(0), 2, 0, 0).unwrap();
        s.sleep(TaskId(50), 0).unwrap();
        s.add_task(TaskId(60), fair(0), 2, 1, 0).unwrap();
        let t = simulate(&mut s, 0, 5 * SEC, MS);
        let a0 = s.uid_runtime(1);
        assert!((a0 as f64 / t as f64 - 0.1).abs() < 0.02);
        s.set_uid_fairness(true, t).unwrap();
        assert!(s.tunables().uid_fairness);
        // The running tasks stayed running.
        assert!(s.current(0).is_some() && s.current(1) == Some(TaskId(60)));
        let t2 = simulate(&mut s, t, 5 * SEC, MS);
        let share = (s.uid_runtime(1) - a0) as f64 / (t2 - t) as f64;
        assert!((share - 0.5).abs() < 0.02, "share {share}");
        assert_eq!(s.runtime(TaskId(60)), Some(t2));
        s.wake(TaskId(50), t2).unwrap();
        s.set_uid_fairness(false, t2).unwrap();
        let a2 = s.uid_runtime(1);
        let t3 = simulate(&mut s, t2, 5 * SEC, MS);
        // CPU 0 now has 1 task of uid 1 and 10 of uid 2.
        let share = (s.uid_runtime(1) - a2) as f64 / (t3 - t2) as f64;
        assert!((share - 1.0 / 11.0).abs() < 0.02, "share {share}");
        for cpu in 0..2 {
            assert_eq!(
                s.runqueue(cpu).unwrap().nr_running(),
                s.tasks().filter(|t| t.cpu == cpu && t.is_queued()).count()
            );
        }
    }

    #[test]
    fn load_balance_evens_out_tasks() {
        let mut s = Scheduler::new(2).unwrap();
        for i in 0..8 {
            s.add_task(TaskId(i), fair(0), 0, 0, 0).unwrap();
        }
        s.schedule(0, 0).unwrap();
        assert_eq!(s.nr_running(0), 8);
        assert_eq!(s.nr_running(1), 0);
        assert_eq!(s.load_balance(0), 4);
        assert_eq!(s.nr_running(0), 4);
        assert_eq!(s.nr_running(1), 4);
        assert!(s.need_resched(1));
        assert_eq!(s.load_balance(0), 0);
        // The running task on CPU 0 was not moved.
        let curr = s.current(0).unwrap();
        assert_eq!(s.task(curr).unwrap().cpu, 0);
        let end = simulate(&mut s, 0, 4 * SEC, MS);
        for t in s.tasks() {
            let share = t.sum_exec_runtime as f64 / end as f64;
            assert!((share - 0.25).abs() < 0.01, "{} share {share}", t.id);
        }
        // Uneven again after exits on CPU 1.
        let on1: Vec<TaskId> = s.tasks().filter(|t| t.cpu == 1).map(|t| t.id).collect();
        for id in &on1[..3] {
            s.remove_task(*id, end).unwrap();
        }
        assert_eq!(s.load_balance(end), 1);
        assert_eq!(s.nr_running(0), 3);
        assert_eq!(s.nr_running(1), 2);
    }

    #[test]
    fn migrated_task_keeps_relative_vruntime() {
        let mut s = Scheduler::new(2).unwrap();
        s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
        s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
        s.add_task(TaskId(3), fair(0), 0, 1, 0).unwrap();
        let t = simulate(&mut s, 0, SEC, MS);
        // CPU 1's lone task has a much larger vruntime than CPU 0's pair.
        let v3 = s.vruntime(TaskId(3)).unwrap();
        assert!(v3 > s.vruntime(TaskId(1)).unwrap() + 400 * MS);
        let queued = if s.current(0) == Some(TaskId(1)) {
            TaskId(2)
        } else {
            TaskId(1)
        };
        s.migrate(queued, 1, t).unwrap();
        let v = s.vruntime(queued).unwrap();
        assert!(v + 10 * MS > v3 && v < v3 + 10 * MS, "v {v} v3 {v3}");
        // Migrating the running task flags its old CPU.
        let running = s.current(0).unwrap();
        s.migrate(running, 1, t).unwrap();
        assert!(s.need_resched(0));
        assert_eq!(s.schedule(0, t).unwrap(), None);
        assert_eq!(s.nr_running(1), 3);
    }

    #[test]
    fn sched_yield_requeues_behind_peers() {
        let mut s = Scheduler::new(1).unwrap();
        for i in 1..=3 {
            s.add_task(TaskId(i), fair(0), 0, 0, 0).unwrap();
        }
        assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
        s.yield_now(TaskId(1), 0).unwrap();
        assert!(s.need_resched(0));
        assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(2)));
        s.yield_now(TaskId(2), 0).unwrap();
        assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(3)));
        s.yield_now(TaskId(3), 0).unwrap();
        assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));

        // Real-time: behind equal priority, still ahead of lower priority.
        let mut s = Scheduler::new(1).unwrap();
        s.add_task(TaskId(1), Policy::Fifo { prio: 5 }, 0, 0, 0)
            .unwrap();
        s.add_task(TaskId(2), Policy::Fifo { prio: 5 }, 0, 0, 0)
            .unwrap();
        s.add_task(TaskId(3), Policy::Fifo { prio: 4 }, 0, 0, 0)
            .unwrap();
        assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
        s.yield_now(TaskId(1), MS).unwrap();
        assert_eq!(s.schedule(0, MS).unwrap(), Some(TaskId(2)));
        s.yield_now(TaskId(2), 2 * MS).unwrap();
        assert_eq!(s.schedule(0, 2 * MS).unwrap(), Some(TaskId(1)));
        // A lone task yielding keeps running.
        let mut s = Scheduler::new(1).unwrap();
        s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
        s.schedule(0, 0).unwrap();
        s.yield_now(TaskId(1), 0).unwrap();
        assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
    }

    #[test]
    fn renice_changes_weight_and_share() {
        let mut s = Scheduler::new(1).unwrap();
        s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
        s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
        let t = simulate(&mut s, 0, SEC, MS);
        let (a0, b0) = (s.runtime(TaskId(1)).unwrap(), s.runtime(TaskId(2)).unwrap());
        assert!((a0 as f64 / b0 as f64 - 1.0).abs() < 0.02);
        // Renice both the running and the waiting task.
        s.set_nice(TaskId(1), -5, t).unwrap();
        s.set_nice(TaskId(2), 5, t).unwrap();
        assert_eq!(s.task(TaskId(1)).unwrap().weight, 3121);
        assert_eq!(s.task(TaskId(2)).unwrap().weight, 335);
        assert_eq!(s.task(TaskId(2)).unwrap().policy, fair(5));
        let end = simulate(&mut s, t, 10 * SEC, MS);
        let a = s.runtime(TaskId(1)).unwrap() - a0;
        let b = s.runtime(TaskId(2)).unwrap() - b0;
        assert_eq!(a + b, end - t);
        let ratio = a as f64 / b as f64;
        let want = 3121.0 / 335.0;
        assert!((ratio - want).abs() / want < 0.05, "ratio {ratio}");
        assert_eq!(
            s.set_nice(TaskId(1), 20, end),
            Err(SchedError::InvalidNice(20))
        );
        assert_eq!(s.task(TaskId(1)).unwrap().weight, 3121);
    }

    #[test]
    fn set_policy_moves_between_classes() {
        let mut s = Scheduler::new(1).unwrap();
        s.add_task(TaskId(1), fair(0), 0, 0, 0).unwrap();
        s.add_task(TaskId(2), fair(0), 0, 0, 0).unwrap();
        assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
        // The waiting fair task becomes RT: it preempts.
        s.set_policy(TaskId(2), Policy::Fifo { prio: 3 }, MS)
            .unwrap();
        assert!(s.need_resched(0));
        assert_eq!(s.schedule(0, MS).unwrap(), Some(TaskId(2)));
        // The running RT task becomes fair again: resched, fair order.
        s.set_policy(TaskId(2), fair(0), 2 * MS).unwrap();
        assert!(s.need_resched(0));
        assert_eq!(s.runqueue(0).unwrap().classes()[0].nr_running(), 0);
        assert_eq!(s.runqueue(0).unwrap().classes()[1].nr_running(), 2);
        assert!(s.schedule(0, 2 * MS).unwrap().is_some());
        assert_eq!(
            s.set_nice(TaskId(9), 0, 0),
            Err(SchedError::UnknownTask(TaskId(9)))
        );
    }

    #[test]
    fn sleep_wake_remove_and_errors() {
        assert_eq!(Scheduler::new(0).unwrap_err(), SchedError::NoCpus);
        let bad = Tunables {
            rr_timeslice_ns: 0,
            ..Tunables::default()
        };
        assert!(matches!(
            Scheduler::with_tunables(1, bad),
            Err(SchedError::InvalidTunable(_))
        ));
        let mut s = Scheduler::new(2).unwrap();
        assert_eq!(
            s.add_task(TaskId(1), fair(0), 7, 2, 0),
            Err(SchedError::InvalidCpu { cpu: 2, nr_cpus: 2 })
        );
        assert_eq!(
            s.add_task(TaskId(1), fair(-21), 7, 0, 0),
            Err(SchedError::InvalidNice(-21))
        );
        assert_eq!(
            s.add_task(TaskId(1), Policy::Fifo { prio: 0 }, 7, 0, 0),
            Err(SchedError::InvalidRtPriority(0))
        );
        assert_eq!(
            s.add_task(TaskId(1), Policy::RoundRobin { prio: 100 }, 7, 0, 0),
            Err(SchedError::InvalidRtPriority(100))
        );
        assert!(s.tasks().next().is_none());
        assert!(s.add_task(TaskId(1), fair(0), 7, 0, 0).unwrap());
        assert_eq!(
            s.add_task(TaskId(1), fair(0), 7, 0, 0),
            Err(SchedError::DuplicateTask(TaskId(1)))
        );
        assert_eq!(
            s.wake(TaskId(1), 0),
            Err(SchedError::AlreadyRunnable(TaskId(1)))
        );
        assert_eq!(s.schedule(0, 0).unwrap(), Some(TaskId(1)));
        s.tick(0, 5 * MS).unwrap();
        s.sleep(TaskId(1), 6 * MS).unwrap();
        assert_eq!(
            s.sleep(TaskId(1), 6 * MS),
            Err(SchedError::NotRunnable(TaskId(1)))
        );
        assert_eq!(
            s.yield_now(TaskId(1), 6 * MS),
            Err(SchedError::NotRunnable(TaskId(1)))
        );
        assert_eq!(s.task(TaskId(1)).unwrap().state, TaskState::Sleeping);
        assert_eq!(s.current(0), None);
        assert!(s.need_resched(0));
        assert_eq!(s.schedule(0, 6 * MS).unwrap(), None);
        assert!(!s.tick(0, 7 * MS).unwrap());
        assert_eq!(s.runtime(TaskId(1)), Some(6 * MS));
        // Wake on an idle CPU: it should schedule.
        assert!(s.wake(TaskId(1), 10 * MS).unwrap());
        assert_eq!(s.schedule(0, 10 * MS).unwrap(), Some(TaskId(1)));
        s.remove_task(TaskId(1), 12 * MS).unwrap();
        assert!(s.need_resched(0));
        assert_eq!(s.task(TaskId(1)), None);
        assert_eq!(s.uid_runtime(7), 8 * MS);
        assert_eq!(
            s.remove_task(TaskId(1), 0),
            Err(SchedError::UnknownTask(TaskId(1)))
        );
        assert_eq!(s.schedule(0, 12 * MS).unwrap(), None);
        assert!(s.tick(5, 0).is_err());
        // A clock going backwards is ignored.
        s.add_task(TaskId(2), fair(0), 7, 1, 20 * MS).unwrap();
        s.schedule(1, 20 * MS).unwrap();
        s.tick(1, 10 * MS).unwrap();
        s.tick(1, 25 * MS).unwrap();
        assert_eq!(s.runtime(TaskId(2)), Some(5 * MS));
        // Errors display.
        let e: Box<dyn std::error::Error> = Box::new(SchedError::InvalidNice(30));
        assert_eq!(e.to_string(), "nice 30 is outside -20..=19");
    }
}
