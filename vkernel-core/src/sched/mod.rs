//! CPU scheduling for vprocs: modular scheduler classes and CFS.
//!
//! This is the scheduler from the CFS posting, as a library: each CPU has a
//! [`RunQueue`] holding an ordered list of scheduler classes
//! ([`SchedClass`]); the first class that has a runnable task picks the
//! next one. Two classes are provided, in this order:
//!
//! - [`RtClass`]: SCHED_FIFO and SCHED_RR, priorities 1..=99, higher first,
//!   throttled per CPU to a runtime per period (Linux's defaults: 0.95 s
//!   per 1 s, see [`Tunables::rt_runtime_ns`]);
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

    /// Whether a throttled class (real-time tasks over their runtime for
    /// this period) holds back runnable tasks on `cpu`.
    pub fn throttled(&self, cpu: usize) -> bool {
        self.rqs.get(cpu).is_some_and(RunQueue::throttled)
    }

    /// When the throttled class of `cpu` may run again (the end of its
    /// period), if one is throttled: an idle CPU should look again then.
    pub fn unthrottle_at(&self, cpu: usize) -> Option<u64> {
        self.rqs.get(cpu).and_then(RunQueue::unthrottle_at)
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

    /// sched_rr_get_interval: a round-robin task's timeslice, 0 for a
    /// FIFO task (it has none), and a fair task's share of the latency
    /// period by weight among the fair tasks of its CPU (at least the
    /// granularity), like Linux's `sched_slice`.
    pub fn rr_interval(&self, id: TaskId) -> Option<u64> {
        let task = self.tasks.get(&id)?;
        Some(match task.policy {
            Policy::RoundRobin { .. } => self.tunables.rr_timeslice_ns,
            Policy::Fifo { .. } => 0,
            Policy::Fair { .. } => {
                let load: u64 = self
                    .tasks
                    .values()
                    .filter(|t| {
                        t.cpu == task.cpu && !t.policy.is_rt() && (t.is_queued() || t.id == task.id)
                    })
                    .map(|t| t.weight)
                    .sum();
                // weight <= load, so the share is at most latency_ns.
                let share = u64::try_from(
                    self.tunables.latency_ns as u128 * task.weight as u128 / load.max(1) as u128,
                )
                .unwrap_or(self.tunables.latency_ns);
                share.max(self.tunables.granularity_ns)
            }
        })
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
                        // A class above the running task's may have been
                        // unthrottled by this tick's clock update.
                        if rq.pickable(ci) {
                            rq.need_resched = true;
                        }
                    }
                }
            }
            None => {
                if rq.pickable(rq.classes.len()) {
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

    /// Restricts task `id` to the CPUs whose bits are set in `mask`
    /// (sched_setaffinity; bits beyond the scheduler's CPUs are ignored).
    /// A task on a CPU it may no longer use moves to the first allowed
    /// one; load balancing and [`Scheduler::allowed_cpu`] keep to the
    /// mask from then on.
    ///
    /// ```
    /// use vkernel_core::sched::{Policy, Scheduler, TaskId};
    /// let mut s = Scheduler::new(2).unwrap();
    /// s.add_task(TaskId(1), Policy::NORMAL, 0, 0, 0).unwrap();
    /// s.set_affinity(TaskId(1), 0b10, 0).unwrap();
    /// assert_eq!(s.task(TaskId(1)).unwrap().cpu, 1);
    /// assert_eq!(s.affinity(TaskId(1)), Some(0b10));
    /// assert!(s.set_affinity(TaskId(1), 0b100, 0).is_err());
    /// ```
    pub fn set_affinity(&mut self, id: TaskId, mask: u64, now: u64) -> Result<()> {
        let all = self.all_cpus();
        if mask & all == 0 {
            return Err(SchedError::NoAllowedCpu(mask));
        }
        let task = self.tasks.get_mut(&id).ok_or(SchedError::UnknownTask(id))?;
        task.allowed = mask & all;
        if !task.allows(task.cpu) {
            let to = (mask & all).trailing_zeros() as usize;
            self.migrate(id, to, now)?;
        }
        Ok(())
    }

    /// The CPUs task `id` may run on, one bit each.
    pub fn affinity(&self, id: TaskId) -> Option<u64> {
        self.tasks.get(&id).map(|t| t.allowed & self.all_cpus())
    }

    /// `cpu` if task `id` may run there, else its first allowed CPU (where
    /// a new or waking task is placed).
    pub fn allowed_cpu(&self, id: TaskId, cpu: usize) -> usize {
        match self.tasks.get(&id) {
            Some(t) if !t.allows(cpu) => (t.allowed & self.all_cpus()).trailing_zeros() as usize,
            _ => cpu,
        }
    }

    /// Every CPU's bit.
    fn all_cpus(&self) -> u64 {
        match self.rqs.len() {
            n if n >= 64 => u64::MAX,
            n => (1u64 << n) - 1,
        }
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
            // The first migratable task that may run on the idlest CPU.
            let mut candidate = None;
            for c in self.rqs[busiest].classes.iter_mut() {
                let mut next = c.load_balance_start();
                while let Some(id) = next {
                    if self.tasks.get(&id).is_some_and(|t| t.allows(idlest)) {
                        candidate = Some(id);
                        break;
                    }
                    next = c.load_balance_next();
                }
                if candidate.is_some() {
                    break;
                }
            }
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
            // Its class used up its runtime: switch it out.
            if rq.classes[ci].throttled() {
                rq.need_resched = true;
            }
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
        if rq.classes[wc].throttled() {
            // A throttled class waits for its next period.
            return false;
        }
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
mod tests;
