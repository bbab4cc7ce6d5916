/* POSIX timers, printed the same natively and under vkernel: one-shot and
 * periodic SIGEV_SIGNAL timers with handlers and siginfo, overruns while
 * the signal is blocked, SIGEV_NONE with timer_gettime, SIGEV_THREAD
 * (a thread of the C library's), absolute expiry, delete, and errors. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SAY(...) do { printf(__VA_ARGS__); fflush(stdout); } while (0)
static long R(long x) { return x < 0 ? -errno : x; }

static volatile sig_atomic_t hits, code_ok, value_ok;

static void on_timer(int sig, siginfo_t *si, void *ctx) {
    (void)sig; (void)ctx;
    hits++;
    code_ok = si->si_code == SI_TIMER;
    value_ok = si->si_value.sival_int == 42;
}

static volatile int thread_hits;
static void on_thread(union sigval v) {
    if (v.sival_int == 7) __atomic_fetch_add(&thread_hits, 1, __ATOMIC_SEQ_CST);
}

static struct itimerspec ms(long value, long interval) {
    struct itimerspec it = {{interval / 1000, (interval % 1000) * 1000000},
                            {value / 1000, (value % 1000) * 1000000}};
    return it;
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_timer;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGRTMIN, &sa, NULL);
    struct sigevent ev = {0};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGRTMIN;
    ev.sigev_value.sival_int = 42;
    timer_t t;
    SAY("create %ld\n", R(timer_create(CLOCK_MONOTONIC, &ev, &t)));
    struct itimerspec it = ms(30, 0), cur;
    SAY("settime %ld\n", R(timer_settime(t, 0, &it, NULL)));
    timer_gettime(t, &cur);
    SAY("armed %d\n", cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec > 0);
    while (!hits) pause();
    SAY("one shot hits %d code %d value %d\n", (int)hits, (int)code_ok, (int)value_ok);
    timer_gettime(t, &cur);
    SAY("disarmed %d\n", cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0);
    /* Periodic: 5 hits. */
    hits = 0;
    it = ms(10, 10);
    timer_settime(t, 0, &it, NULL);
    while (hits < 5) pause();
    it = ms(0, 0);
    struct itimerspec old;
    timer_settime(t, 0, &it, &old);
    SAY("periodic ok %d old interval ms %ld\n", hits >= 5, old.it_interval.tv_nsec / 1000000);
    /* Blocked for a while: one delivery, overruns counted. */
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGRTMIN);
    sigprocmask(SIG_BLOCK, &m, NULL);
    hits = 0;
    it = ms(5, 5);
    timer_settime(t, 0, &it, NULL);
    usleep(100000);
    sigprocmask(SIG_UNBLOCK, &m, NULL);
    it = ms(0, 0);
    timer_settime(t, 0, &it, NULL);
    SAY("blocked then delivered %d overrun counted %d\n", hits >= 1, timer_getoverrun(t) >= 0);
    SAY("delete %ld\n", R(timer_delete(t)));
    SAY("delete again %ld\n", R(timer_delete(t)));
    SAY("settime deleted %ld\n", R(timer_settime(t, 0, &it, NULL)));
    /* SIGEV_NONE: nothing delivered, time runs. */
    struct sigevent none = {0};
    none.sigev_notify = SIGEV_NONE;
    timer_t n;
    timer_create(CLOCK_REALTIME, &none, &n);
    it = ms(200, 0);
    timer_settime(n, 0, &it, NULL);
    usleep(20000);
    timer_gettime(n, &cur);
    long left = cur.it_value.tv_nsec / 1000000;
    SAY("none runs %d\n", left > 50 && left < 200);
    timer_delete(n);
    /* SIGEV_THREAD. */
    struct sigevent th = {0};
    th.sigev_notify = SIGEV_THREAD;
    th.sigev_notify_function = on_thread;
    th.sigev_value.sival_int = 7;
    timer_t tt;
    SAY("thread create %ld\n", R(timer_create(CLOCK_MONOTONIC, &th, &tt)));
    it = ms(10, 0);
    timer_settime(tt, 0, &it, NULL);
    for (int i = 0; i < 200 && !__atomic_load_n(&thread_hits, __ATOMIC_SEQ_CST); i++) usleep(5000);
    SAY("thread ran %d\n", thread_hits == 1);
    timer_delete(tt);
    /* Absolute expiry on CLOCK_MONOTONIC, and one already past. */
    hits = 0;
    timer_create(CLOCK_MONOTONIC, &ev, &t);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    it = ms(0, 0);
    it.it_value = now;
    it.it_value.tv_nsec += 20000000;
    if (it.it_value.tv_nsec >= 1000000000) { it.it_value.tv_sec++; it.it_value.tv_nsec -= 1000000000; }
    SAY("abstime %ld\n", R(timer_settime(t, TIMER_ABSTIME, &it, NULL)));
    while (!hits) pause();
    it.it_value.tv_sec = 1;
    it.it_value.tv_nsec = 0;
    SAY("past abstime %ld\n", R(timer_settime(t, TIMER_ABSTIME, &it, NULL)));
    while (hits < 2) pause();
    SAY("abs hits %d\n", (int)hits);
    timer_delete(t);
    /* Errors. */
    SAY("bad clock %ld\n", R(timer_create(99, &ev, &t)));
    ev.sigev_signo = 99;
    SAY("bad signal %ld\n", R(timer_create(CLOCK_MONOTONIC, &ev, &t)));
    struct itimerspec bad = {{0, 0}, {0, 2000000000L}};
    timer_create(CLOCK_MONOTONIC, NULL, &t);
    SAY("bad nsec %ld\n", R(timer_settime(t, 0, &bad, NULL)));
    timer_delete(t);
    return 0;
}
