/* Sessions, absolute real-time sleeps, pending and queued signals, the
 * parent-death signal. Prints one line per check, never a pid or a time:
 * the test compares the output with the same binary run natively.
 *
 * Usage: sigs2 [CHECK]  (no argument: every check)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* Elapsed time rounded to a coarse bucket, so that output is stable. */
static const char *took(double t0, double want)
{
    double d = now() - t0;
    if (d < want * 0.8)
        return "early";
    if (d > want + 2.0)
        return "late";
    return "on-time";
}

static const char *err(int r)
{
    return r == 0 ? "ok" : strerror(errno);
}

/* Item 4: setsid and setpgid, each in a child (the top process is a
 * session leader neither natively nor under the vkernel). */
static void sessions(void)
{
    pid_t sid0 = getsid(0);
    int go[2], ready[2];
    if (pipe(go) || pipe(ready))
        exit(2);
    pid_t b = fork();
    if (b == 0) {
        /* A stale register must not become the pid. */
        long r = syscall(SYS_setsid, (long)getppid());
        printf("setsid: %s\n", r == getpid() ? "own-pid" : strerror(errno));
        printf("setsid-again: %s\n", err(setsid() < 0 ? -1 : 0));
        printf("leader-setpgid-self: %s\n", err(setpgid(0, 0)));
        printf("leader-setpgid-nogroup: %s\n", err(setpgid(0, 999999)));
        printf("getsid-is-self: %d\n", getsid(0) == getpid());
        printf("getpgrp-is-self: %d\n", getpgrp() == getpid());
        fflush(stdout);
        char c = 0;
        if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(3);
        _exit(0);
    }
    char c;
    if (read(ready[0], &c, 1) != 1)
        exit(2);
    printf("parent-sid-same: %d\n", getsid(0) == sid0);
    printf("setpgid-child-other-session: %s\n", err(setpgid(b, b)));
    printf("getsid-child: %d\n", getsid(b) == b);
    c = 0;
    if (write(go[1], &c, 1) != 1)
        exit(2);
    waitpid(b, 0, 0);

    pid_t a = fork();
    if (a == 0) {
        printf("setpgid-nogroup: %s\n", err(setpgid(0, 999999)));
        printf("setpgid-negative: %s\n", err(setpgid(0, -1)));
        printf("setpgid-nosuch: %s\n", err(setpgid(999999, 0)));
        printf("setpgid-self: %s\n", err(setpgid(0, 0)));
        printf("setsid-group-leader: %s\n", err(setsid() < 0 ? -1 : 0));
        printf("setpgid-back: %s\n", err(setpgid(0, getpgid(getppid()))));
        printf("setsid-after-back: %s\n", err(setsid() < 0 ? -1 : 0));
        fflush(stdout);
        _exit(0);
    }
    waitpid(a, 0, 0);
    printf("getsid-nosuch: %s\n", err(getsid(999999) < 0 ? -1 : 0));
    printf("getpgid-nosuch: %s\n", err(getpgid(999999) < 0 ? -1 : 0));
}

/* Item 5: absolute sleeps on the real-time clock, and a condition wait
 * with a real-time deadline (glibc: FUTEX_WAIT_BITSET|FUTEX_CLOCK_REALTIME). */
static void abstime(void)
{
    struct timespec t;
    double waits[] = {0.1, 0.6};
    for (int i = 0; i < 2; i++) {
        clock_gettime(CLOCK_REALTIME, &t);
        double t0 = now();
        t.tv_nsec += (long)(waits[i] * 1e9);
        t.tv_sec += t.tv_nsec / 1000000000;
        t.tv_nsec %= 1000000000;
        int r = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &t, 0);
        printf("abs-realtime-%g: %d %s\n", waits[i], r, took(t0, waits[i]));
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
    double t0 = now();
    t.tv_nsec += 300000000;
    t.tv_sec += t.tv_nsec / 1000000000;
    t.tv_nsec %= 1000000000;
    int r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, 0);
    printf("abs-monotonic: %d %s\n", r, took(t0, 0.3));
    /* A deadline in the past returns at once. */
    t.tv_sec = 1;
    t.tv_nsec = 0;
    t0 = now();
    r = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &t, 0);
    printf("abs-past: %d %s\n", r, now() - t0 < 0.5 ? "at-once" : "slow");

    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    pthread_mutex_lock(&m);
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += 1;
    t0 = now();
    r = pthread_cond_timedwait(&cv, &m, &t);
    printf("cond-timedwait-realtime: %s %s\n", strerror(r), took(t0, 1.0));
    pthread_mutex_unlock(&m);
}

/* Item 7: a blocked signal whose default is to be ignored stays pending. */
static void pending(void)
{
    sigset_t s, p;
    sigemptyset(&s);
    sigaddset(&s, SIGCHLD);
    sigaddset(&s, SIGWINCH);
    sigaddset(&s, SIGURG);
    sigprocmask(SIG_BLOCK, &s, 0);
    pid_t c = fork();
    if (c == 0)
        _exit(7);
    siginfo_t si;
    struct timespec ts = {5, 0};
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    int r = sigtimedwait(&chld, &si, &ts);
    printf("sigtimedwait-chld: %s code=%d status=%d pid-ok=%d\n",
           r == SIGCHLD ? "SIGCHLD" : strerror(errno), si.si_code, si.si_status,
           si.si_pid == c);
    waitpid(c, 0, 0);

    c = fork();
    if (c == 0)
        _exit(3);
    waitpid(c, 0, 0);
    sigpending(&p);
    printf("pending-chld-after-reap: %d\n", sigismember(&p, SIGCHLD));
    r = sigwaitinfo(&chld, &si);
    printf("sigwaitinfo-chld: %s code=%d status=%d\n",
           r == SIGCHLD ? "SIGCHLD" : strerror(errno), si.si_code, si.si_status);
    sigpending(&p);
    printf("pending-chld-after-wait: %d\n", sigismember(&p, SIGCHLD));

    raise(SIGWINCH);
    sigpending(&p);
    printf("pending-winch: %d\n", sigismember(&p, SIGWINCH));
    sigset_t w;
    sigemptyset(&w);
    sigaddset(&w, SIGWINCH);
    ts.tv_sec = 0;
    r = sigtimedwait(&w, &si, &ts);
    printf("sigtimedwait-winch: %s code=%d\n", r == SIGWINCH ? "SIGWINCH" : strerror(errno),
           si.si_code);
    /* Ignoring a pending signal discards it. */
    raise(SIGURG);
    sigpending(&p);
    printf("pending-urg: %d\n", sigismember(&p, SIGURG));
    signal(SIGURG, SIG_IGN);
    sigpending(&p);
    printf("pending-urg-after-ign: %d\n", sigismember(&p, SIGURG));
    signal(SIGURG, SIG_DFL);
    /* Unblocked, an ignored-by-default signal is discarded at once. */
    sigprocmask(SIG_UNBLOCK, &s, 0);
    raise(SIGWINCH);
    sigpending(&p);
    printf("pending-winch-unblocked: %d\n", sigismember(&p, SIGWINCH));
}

static int seen[16][3];
static volatile int nseen;

static void on_info(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (nseen < 16) {
        seen[nseen][0] = sig;
        seen[nseen][1] = si->si_code;
        seen[nseen][2] = si->si_value.sival_int;
        nseen++;
    }
}

static const char *signame(int sig)
{
    static char b[16];
    if (sig == SIGUSR1)
        return "USR1";
    if (sig == SIGUSR2)
        return "USR2";
    snprintf(b, sizeof b, "RTMIN+%d", sig - SIGRTMIN);
    return b;
}

/* Item 7: real-time signals queue, each with its siginfo; standard ones
 * coalesce; the lowest number comes first. */
static void queued(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigaddset(&s, SIGRTMIN);
    sigaddset(&s, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &s, 0);
    union sigval v;
    v.sival_int = 100;
    sigqueue(getpid(), SIGRTMIN + 1, v);
    for (int i = 1; i <= 3; i++) {
        v.sival_int = i;
        int r = sigqueue(getpid(), SIGRTMIN, v);
        if (r)
            printf("sigqueue: %s\n", strerror(errno));
    }
    kill(getpid(), SIGUSR1);
    kill(getpid(), SIGUSR1);
    siginfo_t si;
    struct timespec zero = {0, 0};
    int r;
    while ((r = sigtimedwait(&s, &si, &zero)) > 0)
        printf("took: %s code=%d value=%d\n", signame(r), si.si_code,
               si.si_code == SI_QUEUE ? si.si_value.sival_int : -1);
    printf("then: %s\n", strerror(errno));

    /* The same through a handler (each one blocks the others while it
     * runs, so they run one after the other). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_info;
    sa.sa_flags = SA_SIGINFO;
    sa.sa_mask = s;
    sigaction(SIGUSR1, &sa, 0);
    sigaction(SIGRTMIN, &sa, 0);
    sigaction(SIGRTMIN + 1, &sa, 0);
    for (int i = 1; i <= 3; i++) {
        v.sival_int = 10 + i;
        sigqueue(getpid(), SIGRTMIN, v);
    }
    kill(getpid(), SIGRTMIN);
    kill(getpid(), SIGUSR1);
    sigprocmask(SIG_UNBLOCK, &s, 0);
    for (int i = 0; i < nseen; i++)
        printf("handled: %s code=%d value=%d\n", signame(seen[i][0]), seen[i][1],
               seen[i][1] == SI_QUEUE ? seen[i][2] : -1);

    /* To another process: sigqueue reaches it with its value; a
     * siginfo claiming to come from kill() does not (EPERM). */
    sigprocmask(SIG_BLOCK, &s, 0);
    int p[2];
    if (pipe(p))
        exit(2);
    pid_t c = fork();
    if (c == 0) {
        struct timespec ts = {5, 0};
        for (int i = 0; i < 3; i++) {
            int r = sigtimedwait(&s, &si, &ts);
            printf("child-took: %s code=%d value=%d\n", r > 0 ? signame(r) : strerror(errno),
                   si.si_code, si.si_value.sival_int);
        }
        fflush(stdout);
        _exit(0);
    }
    for (int i = 1; i <= 3; i++) {
        v.sival_int = 20 + i;
        sigqueue(c, SIGRTMIN, v);
    }
    waitpid(c, 0, 0);
    memset(&si, 0, sizeof si);
    si.si_code = SI_USER;
    si.si_pid = getpid();
    r = syscall(SYS_rt_sigqueueinfo, (long)getppid(), (long)SIGUSR2, &si);
    printf("sigqueueinfo-si_user-other: %s\n", err(r));
    r = syscall(SYS_rt_sigqueueinfo, (long)getpid(), (long)SIGUSR1, &si);
    printf("sigqueueinfo-si_user-self: %s\n", err(r));
    while ((r = sigtimedwait(&s, &si, &zero)) > 0)
        printf("took: %s code=%d\n", signame(r), si.si_code);
    memset(&si, 0, sizeof si);
    si.si_code = SI_QUEUE;
    si.si_value.sival_int = 77;
    r = syscall(SYS_rt_tgsigqueueinfo, (long)getpid(), (long)syscall(SYS_gettid),
                (long)SIGRTMIN + 1, &si);
    printf("tgsigqueueinfo-self: %s\n", err(r));
    while ((r = sigtimedwait(&s, &si, &zero)) > 0)
        printf("took: %s code=%d value=%d\n", signame(r), si.si_code,
               si.si_code == SI_QUEUE ? si.si_value.sival_int : -1);
    sigprocmask(SIG_UNBLOCK, &s, 0);
}

/* Item 7: PR_SET_PDEATHSIG fires when the parent ends. */
static void pdeath(void)
{
    int r;
    printf("pdeathsig-bad: %s\n", err(prctl(PR_SET_PDEATHSIG, 100)));
    int out[2];
    if (pipe(out))
        exit(2);
    pid_t mid = fork();
    if (mid == 0) {
        int ready[2];
        if (pipe(ready))
            _exit(2);
        pid_t g = fork();
        if (g == 0) {
            sigset_t s;
            sigemptyset(&s);
            sigaddset(&s, SIGUSR1);
            sigprocmask(SIG_BLOCK, &s, 0);
            prctl(PR_SET_PDEATHSIG, SIGUSR1);
            int got = 0;
            prctl(PR_GET_PDEATHSIG, &got);
            pid_t c = fork();
            if (c == 0) {
                int inherited = -1;
                prctl(PR_GET_PDEATHSIG, &inherited);
                _exit(inherited);
            }
            int st;
            waitpid(c, &st, 0);
            char c1 = 1;
            if (write(ready[1], &c1, 1) != 1)
                _exit(2);
            siginfo_t si;
            struct timespec ts = {5, 0};
            int r = sigtimedwait(&s, &si, &ts);
            char msg[128];
            int n = snprintf(msg, sizeof msg,
                             "pdeath: get=%d fork-child=%d got=%s code=%d\n", got,
                             WEXITSTATUS(st), r == SIGUSR1 ? "SIGUSR1" : strerror(errno),
                             si.si_code);
            if (write(out[1], msg, n) != n)
                _exit(2);
            _exit(0);
        }
        char c1;
        if (read(ready[0], &c1, 1) != 1)
            _exit(2);
        _exit(0);
    }
    close(out[1]);
    waitpid(mid, 0, 0);
    char buf[256];
    int n = 0;
    while ((r = read(out[0], buf + n, sizeof buf - 1 - n)) > 0)
        n += r;
    buf[n] = 0;
    fputs(buf, stdout);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, 0, _IONBF, 0);
    const char *only = argc > 1 ? argv[1] : 0;
    struct {
        const char *name;
        void (*f)(void);
    } checks[] = {{"sessions", sessions},
                  {"abstime", abstime},
                  {"pending", pending},
                  {"queued", queued},
                  {"pdeath", pdeath}};
    for (unsigned i = 0; i < sizeof checks / sizeof checks[0]; i++)
        if (!only || !strcmp(only, checks[i].name))
            checks[i].f();
    return 0;
}
