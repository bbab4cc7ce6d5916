//! POSIX timers (timer_create and friends) of the process table: each
//! process's timers live on its leader's entry; `process_wakes` fires the
//! due ones (a signal to the process, or to one thread for
//! SIGEV_THREAD_ID) with SI_TIMER siginfo, counting the periods missed as
//! overruns. Timers go with their process, and execve deletes them.

use super::*;

/// SI_TIMER.
const SI_TIMER: i32 = -2;

/// How a timer tells its expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerNotify {
    /// SIGEV_NONE: nothing (timer_gettime shows it).
    None,
    /// SIGEV_SIGNAL: `signo` to the process.
    Process(i32),
    /// SIGEV_THREAD_ID: `signo` to thread `tid` (glibc's SIGEV_THREAD).
    Thread(i32, Pid),
}

/// One POSIX timer.
#[derive(Clone, Debug)]
pub struct PosixTimer {
    /// Its clock (CLOCK_REALTIME, _MONOTONIC, _BOOTTIME): what an
    /// absolute expiry is read on.
    pub clock: i32,
    /// How it tells its expiry.
    pub notify: TimerNotify,
    /// sigev_value, passed in si_value.
    pub value: u64,
    /// When it next expires (None: disarmed).
    pub next: Option<Instant>,
    /// Its period (zero: one shot).
    pub interval: Duration,
    /// Expirations missed at the last one (timer_getoverrun).
    pub overrun: i32,
}

/// The most timers a process has (Linux's limit is the signal queue's).
const MAX_TIMERS: usize = 4096;

impl Kernel {
    /// timer_create for process `pid`: the new timer's id (the lowest
    /// free one). EAGAIN past [`MAX_TIMERS`].
    pub fn ptimer_create(
        &self,
        pid: Pid,
        clock: i32,
        notify: TimerNotify,
        value: Option<u64>,
    ) -> Result<i32, i64> {
        let mut t = self.lock();
        let tgid = t.procs.get(&pid).map_or(pid, |e| e.tgid);
        let e = t.procs.get_mut(&tgid).ok_or(ESRCH)?;
        if e.ptimers.len() >= MAX_TIMERS {
            return Err(EAGAIN);
        }
        let id = (0..)
            .find(|i| !e.ptimers.contains_key(i))
            .expect("a free id");
        e.ptimers.insert(
            id,
            PosixTimer {
                clock,
                notify,
                // No sigevent: si_value is the timer's id.
                value: value.unwrap_or(u64::try_from(id).unwrap_or(0)),
                next: None,
                interval: Duration::ZERO,
                overrun: 0,
            },
        );
        Ok(id)
    }

    /// Run `f` on timer `id` of process `pid` (EINVAL when it has none).
    pub fn ptimer<R>(
        &self,
        pid: Pid,
        id: i32,
        f: impl FnOnce(&mut PosixTimer) -> R,
    ) -> Result<R, i64> {
        let mut t = self.lock();
        let tgid = t.procs.get(&pid).map_or(pid, |e| e.tgid);
        let timer = t
            .procs
            .get_mut(&tgid)
            .and_then(|e| e.ptimers.get_mut(&id))
            .ok_or(EINVAL)?;
        let r = f(timer);
        drop(t);
        // An idle vCPU may have to wake earlier for it.
        self.notify();
        Ok(r)
    }

    /// timer_delete (EINVAL when there is no such timer).
    pub fn ptimer_delete(&self, pid: Pid, id: i32) -> Result<(), i64> {
        let mut t = self.lock();
        let tgid = t.procs.get(&pid).map_or(pid, |e| e.tgid);
        let e = t.procs.get_mut(&tgid).ok_or(EINVAL)?;
        e.ptimers.remove(&id).map(|_| ()).ok_or(EINVAL)
    }

    /// execve: the process's timers go.
    pub fn ptimers_clear(&self, pid: Pid) {
        let mut t = self.lock();
        let tgid = t.procs.get(&pid).map_or(pid, |e| e.tgid);
        if let Some(e) = t.procs.get_mut(&tgid) {
            e.ptimers.clear();
        }
    }

    /// Fire the due timers of every live process at `now` (from
    /// `process_wakes`, the table locked).
    pub(super) fn fire_ptimers(&self, t: &mut Table, now: Instant) {
        let mut fire = Vec::new();
        for (p, e) in t.procs.iter_mut() {
            if matches!(e.state, PState::Zombie(_)) && e.threads == 0 {
                continue;
            }
            for (id, tm) in e.ptimers.iter_mut() {
                let Some(next) = tm.next.filter(|n| *n <= now) else {
                    continue;
                };
                let late = now - next;
                let missed = if tm.interval.is_zero() {
                    0
                } else {
                    late.as_nanos() / tm.interval.as_nanos()
                };
                tm.overrun = i32::try_from(missed).unwrap_or(i32::MAX);
                tm.next = (!tm.interval.is_zero()).then(|| {
                    let k = u32::try_from(missed + 1).unwrap_or(u32::MAX);
                    next + tm.interval.saturating_mul(k)
                });
                let info = |signo: i32| SigInfo {
                    signo,
                    code: SI_TIMER,
                    pid: *id,
                    uid: u32::try_from(tm.overrun).unwrap_or(0),
                    value: tm.value,
                    ..Default::default()
                };
                match tm.notify {
                    TimerNotify::None => {}
                    TimerNotify::Process(s) => fire.push((*p, None, info(s))),
                    TimerNotify::Thread(s, tid) => fire.push((*p, Some(tid), info(s))),
                }
            }
        }
        for (p, tid, info) in fire {
            match tid {
                Some(tid) if t.procs.get(&tid).is_some_and(|e| e.tgid == p) => {
                    self.post_signal(t, tid, info);
                }
                _ => {
                    self.post_process_signal(t, p, info);
                }
            }
        }
    }

    /// The earliest expiry of any armed timer.
    pub(super) fn next_ptimer(t: &Table) -> Option<Instant> {
        t.procs
            .values()
            .flat_map(|e| e.ptimers.values().filter_map(|x| x.next))
            .min()
    }
}
