//! The fair class: CFS.
//!
//! Runnable entities sit in a tree ordered by virtual runtime (vruntime):
//! the CPU time an entity has received, scaled by `NICE_0_LOAD / weight`.
//! The leftmost entity, the one that has received the least weighted
//! service, runs next. Each queue tracks a monotonic `min_vruntime`; new
//! tasks start there and waking tasks are credited at most one latency
//! period below it, so sleeping never banks unbounded CPU time.
//!
//! One tunable, the granularity, decides how far past strict fairness the
//! running task may go before a tick preempts it, and how much fairer a
//! waking task must be to preempt it.
//!
//! With uid fairness on, scheduling is two-level: the top tree holds one
//! entity per user ID (all of weight `NICE_0_LOAD`, so each uid gets an
//! equal share), and each uid entity has its own vruntime, `min_vruntime`
//! and tree of that user's tasks. The running task is kept out of its tree
//! (and its uid entity out of the top tree) until it is put back.

use std::collections::{BTreeMap, BTreeSet};

use super::class::{DequeueKind, EnqueueKind, SchedClass, Tunables};
use super::task::{Policy, Task, TaskId, Uid};
use super::weights::{calc_delta_fair, nice_to_weight, NICE_0_LOAD};

/// One tree of entities keyed by `(vruntime, key)`.
#[derive(Debug, Clone)]
struct CfsRq<K: Ord + Copy> {
    tree: BTreeSet<(u64, K)>,
    min_vruntime: u64,
    load: u64,
    nr_running: usize,
    /// The running entity (not in `tree`) and its vruntime.
    curr: Option<(K, u64)>,
}

impl<K: Ord + Copy> CfsRq<K> {
    fn new() -> Self {
        CfsRq {
            tree: BTreeSet::new(),
            min_vruntime: 0,
            load: 0,
            nr_running: 0,
            curr: None,
        }
    }

    fn is_curr(&self, key: K) -> bool {
        matches!(self.curr, Some((k, _)) if k == key)
    }

    fn leftmost_vruntime(&self) -> Option<u64> {
        self.tree.first().map(|&(v, _)| v)
    }

    fn rightmost_vruntime(&self) -> Option<u64> {
        self.tree.last().map(|&(v, _)| v)
    }

    /// `min_vruntime = max(min_vruntime, min(curr, leftmost))`.
    fn update_min_vruntime(&mut self) {
        let curr = self.curr.map(|(_, v)| v);
        let candidate = match (curr, self.leftmost_vruntime()) {
            (Some(c), Some(l)) => c.min(l),
            (Some(c), None) => c,
            (None, Some(l)) => l,
            (None, None) => return,
        };
        self.min_vruntime = self.min_vruntime.max(candidate);
    }

    fn add(&mut self, key: K, vruntime: u64, weight: u64) {
        self.tree.insert((vruntime, key));
        self.load += weight;
        self.nr_running += 1;
    }

    /// Takes an entity off: out of the tree, or clears `curr` if it runs.
    fn remove(&mut self, key: K, vruntime: u64, weight: u64) {
        if self.is_curr(key) {
            self.curr = None;
        } else {
            self.tree.remove(&(vruntime, key));
        }
        self.load = self.load.saturating_sub(weight);
        self.nr_running = self.nr_running.saturating_sub(1);
        self.update_min_vruntime();
    }

    /// Moves a queued entity behind every other in the tree; returns its
    /// new vruntime.
    fn move_to_back(&mut self, key: K, vruntime: u64) -> u64 {
        let running = self.is_curr(key);
        if !running {
            self.tree.remove(&(vruntime, key));
        }
        let new_v = match self.rightmost_vruntime() {
            Some(r) if r >= vruntime => r.saturating_add(1),
            _ => vruntime,
        };
        if running {
            self.curr = Some((key, new_v));
        } else {
            self.tree.insert((new_v, key));
        }
        new_v
    }
}

/// A user ID's scheduling entity on one runqueue (uid fairness).
#[derive(Debug, Clone)]
struct UidGroup {
    vruntime: u64,
    weight: u64,
    on_rq: bool,
    sum_exec_runtime: u64,
    rq: CfsRq<TaskId>,
}

impl UidGroup {
    fn new() -> Self {
        UidGroup {
            vruntime: 0,
            weight: NICE_0_LOAD,
            on_rq: false,
            sum_exec_runtime: 0,
            rq: CfsRq::new(),
        }
    }
}

/// The fair class's part of one runqueue.
#[derive(Debug, Clone)]
pub struct FairClass {
    tunables: Tunables,
    /// Tasks, when uid fairness is off.
    flat: CfsRq<TaskId>,
    /// Uid entities, when uid fairness is on.
    top: CfsRq<Uid>,
    groups: BTreeMap<Uid, UidGroup>,
    nr_tasks: usize,
    lb_list: Vec<TaskId>,
    lb_pos: usize,
}

impl FairClass {
    /// An empty fair runqueue with the given tunables.
    pub fn new(tunables: &Tunables) -> Self {
        FairClass {
            tunables: *tunables,
            flat: CfsRq::new(),
            top: CfsRq::new(),
            groups: BTreeMap::new(),
            nr_tasks: 0,
            lb_list: Vec::new(),
            lb_pos: 0,
        }
    }

    /// Whether uid fairness (two-level scheduling) is on.
    pub fn uid_fairness(&self) -> bool {
        self.tunables.uid_fairness
    }

    /// The `min_vruntime` of the top-level queue: the task tree without
    /// uid fairness, the uid-entity tree with it.
    pub fn min_vruntime(&self) -> u64 {
        if self.uid_fairness() {
            self.top.min_vruntime
        } else {
            self.flat.min_vruntime
        }
    }

    /// The `min_vruntime` of the queue tasks of `uid` are placed against:
    /// the uid's own tree with uid fairness, the shared tree without.
    pub fn task_min_vruntime(&self, uid: Uid) -> u64 {
        if self.uid_fairness() {
            self.groups.get(&uid).map_or(0, |g| g.rq.min_vruntime)
        } else {
            self.flat.min_vruntime
        }
    }

    /// The vruntime of `uid`'s entity on this runqueue (uid fairness).
    pub fn uid_vruntime(&self, uid: Uid) -> Option<u64> {
        self.groups.get(&uid).map(|g| g.vruntime)
    }

    /// CPU time accounted to `uid`'s entity on this runqueue while uid
    /// fairness was on.
    pub fn uid_exec_runtime(&self, uid: Uid) -> Option<u64> {
        self.groups.get(&uid).map(|g| g.sum_exec_runtime)
    }

    /// Sum of the weights of the runnable tasks (or uid entities).
    pub fn load(&self) -> u64 {
        if self.uid_fairness() {
            self.top.load
        } else {
            self.flat.load
        }
    }

    /// The granularity converted to the virtual time of an entity.
    fn gran_vruntime(&self, weight: u64) -> u64 {
        calc_delta_fair(self.tunables.granularity_ns, weight)
    }

    fn task_rq_mut(&mut self, uid: Uid) -> &mut CfsRq<TaskId> {
        if self.tunables.uid_fairness {
            &mut self.groups.entry(uid).or_insert_with(UidGroup::new).rq
        } else {
            &mut self.flat
        }
    }

    fn task_rq(&self, uid: Uid) -> Option<&CfsRq<TaskId>> {
        if self.tunables.uid_fairness {
            self.groups.get(&uid).map(|g| &g.rq)
        } else {
            Some(&self.flat)
        }
    }

    fn is_curr(&self, task: &Task) -> bool {
        self.task_rq(task.uid).is_some_and(|rq| rq.is_curr(task.id))
    }
}

impl SchedClass for FairClass {
    fn name(&self) -> &'static str {
        "fair"
    }

    fn handles(&self, policy: &Policy) -> bool {
        matches!(policy, Policy::Fair { .. })
    }

    fn nr_running(&self) -> usize {
        self.nr_tasks
    }

    fn tunables_need_requeue(&self, new: &Tunables) -> bool {
        new.uid_fairness != self.tunables.uid_fairness
    }

    fn set_tunables(&mut self, tunables: &Tunables) {
        debug_assert!(
            self.nr_tasks == 0 || tunables.uid_fairness == self.tunables.uid_fairness,
            "uid fairness switched with tasks queued"
        );
        self.tunables = *tunables;
    }

    fn enqueue_task(&mut self, task: &mut Task, kind: EnqueueKind) {
        let latency = self.tunables.latency_ns;
        let rq = self.task_rq_mut(task.uid);
        match kind {
            EnqueueKind::New => {}
            EnqueueKind::Wakeup => {
                let floor = rq.min_vruntime.saturating_sub(latency);
                task.vruntime = task.vruntime.max(floor);
            }
            EnqueueKind::Attach => {
                task.vruntime = task.vruntime.saturating_add(rq.min_vruntime);
            }
        }
        rq.add(task.id, task.vruntime, task.weight);
        self.nr_tasks += 1;

        if self.tunables.uid_fairness {
            let top = &mut self.top;
            if let Some(g) = self.groups.get_mut(&task.uid) {
                if !g.on_rq {
                    let floor = match kind {
                        EnqueueKind::Wakeup => top.min_vruntime.saturating_sub(latency),
                        EnqueueKind::New | EnqueueKind::Attach => top.min_vruntime,
                    };
                    g.vruntime = g.vruntime.max(floor);
                    g.on_rq = true;
                    top.add(task.uid, g.vruntime, g.weight);
                }
            }
        }
    }

    fn dequeue_task(&mut self, task: &mut Task, now: u64, kind: DequeueKind) {
        self.update_curr(task, now);
        let rq = self.task_rq_mut(task.uid);
        rq.remove(task.id, task.vruntime, task.weight);
        if kind == DequeueKind::Detach {
            task.vruntime = task.vruntime.saturating_sub(rq.min_vruntime);
        }
        self.nr_tasks = self.nr_tasks.saturating_sub(1);

        if self.tunables.uid_fairness {
            if let Some(g) = self.groups.get_mut(&task.uid) {
                if g.on_rq && g.rq.nr_running == 0 {
                    g.on_rq = false;
                    self.top.remove(task.uid, g.vruntime, g.weight);
                }
            }
        }
    }

    fn requeue_task(&mut self, task: &mut Task, now: u64) {
        self.update_curr(task, now);
        let rq = self.task_rq_mut(task.uid);
        task.vruntime = rq.move_to_back(task.id, task.vruntime);
    }

    fn task_new(&mut self, task: &mut Task) {
        task.vruntime = self.task_rq_mut(task.uid).min_vruntime;
    }

    fn task_init(&mut self, task: &mut Task) {
        task.weight = nice_to_weight(task.policy.nice().unwrap_or(0));
    }

    fn task_tick(&mut self, task: &mut Task, now: u64) -> bool {
        self.update_curr(task, now);
        if !self.is_curr(task) {
            return false;
        }
        if self.tunables.uid_fairness {
            let Some(g) = self.groups.get(&task.uid) else {
                return false;
            };
            if let Some(left) = self.top.leftmost_vruntime() {
                if g.vruntime > left.saturating_add(self.gran_vruntime(g.weight)) {
                    return true;
                }
            }
            g.rq.leftmost_vruntime().is_some_and(|left| {
                task.vruntime > left.saturating_add(self.gran_vruntime(task.weight))
            })
        } else {
            self.flat.leftmost_vruntime().is_some_and(|left| {
                task.vruntime > left.saturating_add(self.gran_vruntime(task.weight))
            })
        }
    }

    fn check_preempt_curr(&mut self, curr: &mut Task, woken: &Task, now: u64) -> bool {
        self.update_curr(curr, now);
        if !self.is_curr(curr) {
            return false;
        }
        if self.tunables.uid_fairness && curr.uid != woken.uid {
            let (Some(gc), Some(gw)) = (self.groups.get(&curr.uid), self.groups.get(&woken.uid))
            else {
                return false;
            };
            return gc.vruntime > gw.vruntime.saturating_add(self.gran_vruntime(gw.weight));
        }
        curr.vruntime
            > woken
                .vruntime
                .saturating_add(self.gran_vruntime(woken.weight))
    }

    fn pick_next_task(&mut self) -> Option<TaskId> {
        if self.tunables.uid_fairness {
            let &(gv, uid) = self.top.tree.first()?;
            let g = self.groups.get_mut(&uid)?;
            let (v, id) = g.rq.tree.pop_first()?;
            g.rq.curr = Some((id, v));
            self.top.tree.remove(&(gv, uid));
            self.top.curr = Some((uid, gv));
            Some(id)
        } else {
            let (v, id) = self.flat.tree.pop_first()?;
            self.flat.curr = Some((id, v));
            Some(id)
        }
    }

    fn put_prev_task(&mut self, task: &mut Task, now: u64) {
        self.update_curr(task, now);
        let queued = task.is_queued();
        let rq = self.task_rq_mut(task.uid);
        if rq.is_curr(task.id) {
            rq.curr = None;
            if queued {
                rq.tree.insert((task.vruntime, task.id));
            }
        }
        if self.tunables.uid_fairness && self.top.is_curr(task.uid) {
            self.top.curr = None;
            if let Some(g) = self.groups.get(&task.uid) {
                if g.on_rq {
                    self.top.tree.insert((g.vruntime, task.uid));
                }
            }
        }
    }

    fn set_curr_task(&mut self, task: &mut Task, _now: u64) {
        let rq = self.task_rq_mut(task.uid);
        if rq.tree.remove(&(task.vruntime, task.id)) {
            rq.curr = Some((task.id, task.vruntime));
        }
        if self.tunables.uid_fairness {
            if let Some(g) = self.groups.get(&task.uid) {
                if self.top.tree.remove(&(g.vruntime, task.uid)) {
                    self.top.curr = Some((task.uid, g.vruntime));
                }
            }
        }
    }

    fn update_curr(&mut self, task: &mut Task, now: u64) {
        if !self.is_curr(task) {
            return;
        }
        let delta = task.account_exec(now);
        task.vruntime = task
            .vruntime
            .saturating_add(calc_delta_fair(delta, task.weight));
        if self.tunables.uid_fairness {
            let Some(g) = self.groups.get_mut(&task.uid) else {
                return;
            };
            g.rq.curr = Some((task.id, task.vruntime));
            g.rq.update_min_vruntime();
            g.vruntime = g.vruntime.saturating_add(calc_delta_fair(delta, g.weight));
            g.sum_exec_runtime = g.sum_exec_runtime.saturating_add(delta);
            if self.top.is_curr(task.uid) {
                self.top.curr = Some((task.uid, g.vruntime));
            }
            self.top.update_min_vruntime();
        } else {
            self.flat.curr = Some((task.id, task.vruntime));
            self.flat.update_min_vruntime();
        }
    }

    fn migrate_task_from(&mut self, task: &mut Task) {
        let min = self.task_min_vruntime(task.uid);
        task.vruntime = task.vruntime.saturating_sub(min);
    }

    fn migrate_task_to(&mut self, task: &mut Task) {
        let min = self.task_rq_mut(task.uid).min_vruntime;
        task.vruntime = task.vruntime.saturating_add(min);
    }

    /// Candidates from the right of the tree first: the task that would
    /// run last here (the most virtual runtime, usually a CPU-bound task
    /// that just ran) moves, not the one about to run (a woken or new
    /// task, placed left), which would only start waiting afresh behind
    /// the other CPU's task. Linux takes the least recently run first.
    fn load_balance_start(&mut self) -> Option<TaskId> {
        self.lb_list = if self.tunables.uid_fairness {
            let mut all: Vec<(u64, TaskId)> = self
                .groups
                .values()
                .flat_map(|g| g.rq.tree.iter().copied())
                .collect();
            all.sort_unstable_by(|a, b| b.cmp(a));
            all.into_iter().map(|(_, id)| id).collect()
        } else {
            self.flat.tree.iter().rev().map(|&(_, id)| id).collect()
        };
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

    const MS: u64 = 1_000_000;

    fn fair(uid_fairness: bool) -> FairClass {
        FairClass::new(&Tunables {
            uid_fairness,
            ..Tunables::default()
        })
    }

    fn add(c: &mut FairClass, id: u64, nice: i8, uid: Uid) -> Task {
        let mut t = Task::new(TaskId(id), Policy::Fair { nice }, uid, 0);
        c.task_init(&mut t);
        c.task_new(&mut t);
        t.state = TaskState::Runnable;
        c.enqueue_task(&mut t, EnqueueKind::New);
        t
    }

    fn run(c: &mut FairClass, t: &mut Task, from: u64, to: u64) {
        t.exec_start = from;
        c.set_curr_task(t, from);
        c.put_prev_task(t, to);
    }

    #[test]
    fn lowest_vruntime_runs_first() {
        let mut c = fair(false);
        let mut a = add(&mut c, 1, 0, 0);
        let mut b = add(&mut c, 2, 0, 0);
        assert_eq!(c.pick_next_task(), Some(TaskId(1)));
        a.exec_start = 0;
        c.put_prev_task(&mut a, 3 * MS);
        assert_eq!(a.vruntime, 3 * MS);
        assert_eq!(c.pick_next_task(), Some(TaskId(2)));
        b.exec_start = 3 * MS;
        c.put_prev_task(&mut b, 4 * MS);
        assert_eq!(c.pick_next_task(), Some(TaskId(2)));
        c.put_prev_task(&mut b, 4 * MS);
        assert_eq!(c.min_vruntime(), MS);
    }

    #[test]
    fn vruntime_scales_with_weight() {
        let mut c = fair(false);
        let mut a = add(&mut c, 1, 0, 0);
        let mut b = add(&mut c, 2, 5, 0);
        run(&mut c, &mut a, 0, 10 * MS);
        run(&mut c, &mut b, 10 * MS, 20 * MS);
        assert_eq!(a.vruntime, 10 * MS);
        assert_eq!(a.sum_exec_runtime, 10 * MS);
        assert_eq!(b.sum_exec_runtime, 10 * MS);
        assert_eq!(b.vruntime, 10 * MS * 1024 / 335);
    }

    #[test]
    fn new_task_placed_at_min_vruntime_and_sleeper_credit_bounded() {
        let mut c = fair(false);
        let mut a = add(&mut c, 1, 0, 0);
        let mut b = add(&mut c, 2, 0, 0);
        // b sleeps at vruntime 0, a runs 500 ms.
        b.state = TaskState::Sleeping;
        c.dequeue_task(&mut b, 0, DequeueKind::Sleep);
        run(&mut c, &mut a, 0, 500 * MS);
        assert_eq!(c.min_vruntime(), 500 * MS);
        let n = add(&mut c, 3, 0, 0);
        assert_eq!(n.vruntime, 500 * MS);
        b.state = TaskState::Runnable;
        c.enqueue_task(&mut b, EnqueueKind::Wakeup);
        assert_eq!(b.vruntime, 500 * MS - Tunables::default().latency_ns);
        assert_eq!(c.pick_next_task(), Some(TaskId(2)));
        assert_eq!(c.nr_running(), 3);
    }

    #[test]
    fn detach_attach_keeps_relative_vruntime() {
        let mut c = fair(false);
        let mut a = add(&mut c, 1, 0, 0);
        let mut b = add(&mut c, 2, 0, 0);
        run(&mut c, &mut a, 0, 30 * MS);
        run(&mut c, &mut b, 30 * MS, 40 * MS);
        assert_eq!(c.min_vruntime(), 10 * MS);
        c.dequeue_task(&mut a, 40 * MS, DequeueKind::Detach);
        assert_eq!(a.vruntime, 20 * MS);
        let mut other = fair(false);
        let mut x = add(&mut other, 9, 0, 0);
        run(&mut other, &mut x, 0, 100 * MS);
        other.enqueue_task(&mut a, EnqueueKind::Attach);
        assert_eq!(a.vruntime, 120 * MS);
    }

    #[test]
    fn uid_entities_have_their_own_trees() {
        let mut c = fair(true);
        let mut a = add(&mut c, 1, 0, 100);
        let mut b1 = add(&mut c, 2, 0, 200);
        let _b2 = add(&mut c, 3, 0, 200);
        assert_eq!(c.load(), 2 * NICE_0_LOAD);
        assert_eq!(c.pick_next_task(), Some(TaskId(1)));
        a.exec_start = 0;
        c.put_prev_task(&mut a, 10 * MS);
        assert_eq!(c.uid_vruntime(100), Some(10 * MS));
        assert_eq!(c.pick_next_task(), Some(TaskId(2)));
        b1.exec_start = 10 * MS;
        c.put_prev_task(&mut b1, 15 * MS);
        // uid 200 (5 ms) is still behind uid 100 (10 ms): its other task runs.
        assert_eq!(c.pick_next_task(), Some(TaskId(3)));
        assert_eq!(c.uid_exec_runtime(200), Some(5 * MS));
        assert_eq!(c.task_min_vruntime(200), 0);
    }

    #[test]
    fn yield_moves_behind_all_others() {
        let mut c = fair(false);
        let mut a = add(&mut c, 1, 0, 0);
        let _b = add(&mut c, 2, 0, 0);
        let _d = add(&mut c, 3, 0, 0);
        assert_eq!(c.pick_next_task(), Some(TaskId(1)));
        c.requeue_task(&mut a, 0);
        assert_eq!(a.vruntime, 1);
        c.put_prev_task(&mut a, 0);
        assert_eq!(c.pick_next_task(), Some(TaskId(2)));
    }
}
