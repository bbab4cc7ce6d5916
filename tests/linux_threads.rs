//! Threads in the `vkernel` example's Linux personality: a pthread program
//! (tests/guests/threads.c) whose threads sum under a mutex and a
//! condition variable, join, use thread-local storage, end the process
//! with exit_group, take signals (pthread_kill, and kill() to the process
//! reaching the thread that does not block it), and hand robust mutexes on
//! when they die; and raw clone with bad inputs (a child stack in unmapped
//! memory, a CLEARTID address outside the address space). Every case
//! compares stdout and exit status with the same program run natively, on
//! 1 and 2 vCPUs, musl and glibc, several times; a hang fails the test
//! after a generous timeout. Tests SKIP loudly without /dev/kvm.

mod common;

use common::native;

/// Run `mode` `times` times on 1 and 2 vCPUs with every compiler and
/// compare each run with native. `glibc_only`: musl's own behaviour
/// differs natively (see the case).
fn compare(test: &str, mode: &str, times: usize, glibc_only: bool) {
    for (cc, p) in common::kvm_guests(test, "threads") {
        if glibc_only && cc == "musl-gcc" {
            continue;
        }
        let n = native(&p, &[mode]);
        for cpus in [1, 2] {
            for i in 0..times {
                let l = common::guest(&p, &[mode], cpus);
                let r = common::vk_watched(&common::what(&p, &[mode], cpus), 120, l);
                let what = format!("{mode} ({cc}, {cpus} vCPUs, run {i}); stderr {}", r.stderr);
                assert_eq!(r.stdout, n.stdout, "{what}");
                assert_eq!(r.report.status.code(), n.status, "{what}");
            }
        }
    }
}

/// Four threads sum under a mutex, signal a condition variable, keep
/// thread-local sums and are joined; getpid is shared, gettid is not.
#[test]
fn linux_threads_sum_with_mutex_and_condvar() {
    compare("linux_threads_sum_with_mutex_and_condvar", "sum", 5, false);
}

/// A thread's exit(7) (exit_group) ends the process, whose main thread
/// waits in pthread_join: status 7.
#[test]
fn linux_threads_exit_group_ends_every_thread() {
    compare(
        "linux_threads_exit_group_ends_every_thread",
        "exitgroup",
        3,
        false,
    );
}

/// pthread_kill (tgkill) runs the handler in the target thread; kill() to
/// the process is taken by the thread that does not block it; tgkill with
/// the wrong thread group is ESRCH.
#[test]
fn linux_threads_signals_reach_threads() {
    compare("linux_threads_signals_reach_threads", "signals", 3, false);
}

/// A robust mutex whose owner thread ended holding it: the next locker
/// gets EOWNERDEAD (pthread_exit: musl hands it on itself, glibc through
/// the kernel's robust list walk).
#[test]
fn linux_threads_robust_mutex_owner_dies() {
    compare("linux_threads_robust_mutex_owner_dies", "robust", 2, false);
}

/// The owner ends with a raw SYS_exit: only the kernel's robust list walk
/// can hand the mutex on. (musl registers its robust list so that this
/// hangs natively too: glibc only.)
#[test]
fn linux_threads_robust_list_walk_on_raw_exit() {
    compare(
        "linux_threads_robust_list_walk_on_raw_exit",
        "robustraw",
        2,
        true,
    );
}

/// Bad input: clone with a child stack in unmapped memory. The child's
/// first push faults and SIGSEGV ends the whole process (139), nothing
/// hangs.
#[test]
fn linux_threads_clone_with_unmapped_stack() {
    compare(
        "linux_threads_clone_with_unmapped_stack",
        "badstack",
        2,
        false,
    );
}

/// Bad input: a CLEARTID address outside the address space (the thread
/// still ends, nothing hangs), then a good one (cleared and woken, as
/// pthread_join relies on), and CLONE_PARENT_SETTID.
#[test]
fn linux_threads_cleartid_outside_address_space() {
    compare(
        "linux_threads_cleartid_outside_address_space",
        "cleartid",
        2,
        false,
    );
}

/// execve in a multithreaded process (from the main thread, and from
/// another thread while the main one waits in pthread_join): the other
/// threads end first and the new program runs with the same pid.
#[test]
fn linux_threads_execve_ends_the_other_threads() {
    compare(
        "linux_threads_execve_ends_the_other_threads",
        "exec",
        2,
        false,
    );
    compare(
        "linux_threads_execve_ends_the_other_threads",
        "execthread",
        2,
        false,
    );
}

/// Two threads hand a token back and forth through one condition
/// variable while 200 short threads are created and joined in waves
/// (exit paths, CLEARTID wake-ups, tid reuse).
#[test]
fn linux_threads_condvar_ping_pong_and_thread_churn() {
    compare(
        "linux_threads_condvar_ping_pong_and_thread_churn",
        "churn",
        3,
        false,
    );
}

/// fork from a thread gives a process of one thread (getpid == gettid);
/// the main thread reaps it (children belong to the process).
#[test]
fn linux_threads_fork_from_a_thread() {
    // 20 rounds: a stale write fault after a fork from another thread
    // killed the parent about once in 100 runs under load (fixed in
    // `Mm::handle_fault`).
    compare("linux_threads_fork_from_a_thread", "forkthread", 20, false);
}

/// A parent stops (WUNTRACED sees it), continues and kills a child whose
/// threads spin: the stop and the kill reach every thread.
#[test]
fn linux_threads_stop_continue_kill_a_threaded_child() {
    compare(
        "linux_threads_stop_continue_kill_a_threaded_child",
        "stopcont",
        2,
        false,
    );
}

/// alarm() belongs to the process: SIGALRM goes to the thread that does
/// not block it.
#[test]
fn linux_threads_alarm_reaches_the_unblocking_thread() {
    compare(
        "linux_threads_alarm_reaches_the_unblocking_thread",
        "alarm",
        1,
        false,
    );
}

/// A process-directed signal every thread blocks stays pending for the
/// process (sigpending shows it) until a thread unblocks it (that thread
/// takes it); sigwait in a thread takes one; sigtimedwait times out.
#[test]
fn linux_threads_shared_pending_and_sigwait() {
    compare(
        "linux_threads_shared_pending_and_sigwait",
        "sigshared",
        2,
        false,
    );
}
