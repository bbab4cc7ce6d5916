/* Real-time scheduling: SCHED_FIFO spinners do not starve a normal process
 * (real-time throttling), SCHED_FIFO/SCHED_RR calls and their errors, and
 * a SCHED_FIFO task that yields goes behind its equal-priority peers.
 *
 *   sched_rt calls     the scheduling calls and their errnos
 *   sched_rt starve [N] two SCHED_FIFO spinners (at most N s, default 8)
 *                      and a normal child
 *   sched_rt yield     two SCHED_FIFO tasks taking turns by sched_yield
 *                      (one CPU: pinned natively)
 *
 * Spinners end by themselves after SPIN_LIMIT seconds (exit 0) so nothing
 * keeps spinning; the parent kills them as soon as the normal child has
 * run, so "killed by 9" is what a run with throttling prints. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long a spinner spins at most (seconds; "starve N" sets it). */
static int SPIN_LIMIT = 8;

/* musl's wrappers of these calls are ENOSYS stubs (POSIX wants process,
 * Linux gives thread semantics): the raw calls, for both libcs. */
static int x_setscheduler(pid_t pid, int policy, const struct sched_param *sp) {
    return syscall(SYS_sched_setscheduler, pid, policy, sp);
}
static int x_getscheduler(pid_t pid) { return syscall(SYS_sched_getscheduler, pid); }
static int x_setparam(pid_t pid, const struct sched_param *sp) {
    return syscall(SYS_sched_setparam, pid, sp);
}
static int x_getparam(pid_t pid, struct sched_param *sp) {
    return syscall(SYS_sched_getparam, pid, sp);
}
#define sched_setscheduler x_setscheduler
#define sched_getscheduler x_getscheduler
#define sched_setparam x_setparam
#define sched_getparam x_getparam

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void spin_until(double deadline) {
    volatile unsigned long n = 0;
    for (;;) {
        for (int i = 0; i < 1000000; i++)
            n++;
        if (now() > deadline)
            return;
    }
}

static void report(const char *what, int st) {
    if (WIFEXITED(st))
        printf("%s: exited %d\n", what, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        printf("%s: killed by %d\n", what, WTERMSIG(st));
    else
        printf("%s: status %#x\n", what, st);
}

static int set_fifo(pid_t pid, int prio) {
    struct sched_param sp = {.sched_priority = prio};
    return sched_setscheduler(pid, SCHED_FIFO, &sp);
}

static const char *err(long r) {
    return r == 0 ? "0" : errno == EINVAL ? "EINVAL" : errno == ESRCH ? "ESRCH" :
           errno == EFAULT ? "EFAULT" : errno == EPERM ? "EPERM" : strerror(errno);
}

static int calls(void) {
    struct sched_param sp = {.sched_priority = 0};
    struct timespec ts;
    printf("max fifo %d rr %d other %d\n", sched_get_priority_max(SCHED_FIFO),
           sched_get_priority_max(SCHED_RR), sched_get_priority_max(SCHED_OTHER));
    printf("min fifo %d rr %d other %d\n", sched_get_priority_min(SCHED_FIFO),
           sched_get_priority_min(SCHED_RR), sched_get_priority_min(SCHED_OTHER));
    printf("policy %d\n", sched_getscheduler(0));
    sp.sched_priority = 5;
    printf("other prio 5: %s\n", err(sched_setscheduler(0, SCHED_OTHER, &sp)));
    sp.sched_priority = 0;
    printf("fifo prio 0: %s\n", err(sched_setscheduler(0, SCHED_FIFO, &sp)));
    sp.sched_priority = 100;
    printf("rr prio 100: %s\n", err(sched_setscheduler(0, SCHED_RR, &sp)));
    sp.sched_priority = 1;
    printf("policy 77: %s\n", err(sched_setscheduler(0, 77, &sp)));
    printf("pid -1: %s\n", err(sched_setscheduler(-1, SCHED_FIFO, &sp)));
    printf("no such pid: %s\n", err(sched_setscheduler(999999, SCHED_FIFO, &sp)));
    printf("null param: %s\n", err(syscall(SYS_sched_setscheduler, 0, SCHED_FIFO, NULL)));
    printf("bad param: %s\n", err(syscall(SYS_sched_setscheduler, 0, SCHED_FIFO, (void *)8)));
    sp.sched_priority = 3;
    if (sched_setscheduler(0, SCHED_RR, &sp) != 0) {
        printf("no-rt: %s\n", err(-1));
        return 0;
    }
    printf("policy %d\n", sched_getscheduler(0));
    memset(&ts, 0, sizeof ts);
    long r = sched_rr_get_interval(0, &ts);
    printf("rr interval: %s %ld.%09ld\n", err(r), (long)ts.tv_sec, ts.tv_nsec);
    printf("rr interval bad address: %s\n",
           err(syscall(SYS_sched_rr_get_interval, 0, (void *)8)));
    printf("rr interval no such pid: %s\n", err(sched_rr_get_interval(999999, &ts)));
    /* sched_setparam keeps the policy, changes the priority. */
    sp.sched_priority = 42;
    printf("setparam 42: %s\n", err(sched_setparam(0, &sp)));
    sp.sched_priority = 0;
    sched_getparam(0, &sp);
    printf("policy %d prio %d\n", sched_getscheduler(0), sp.sched_priority);
    sp.sched_priority = 0;
    printf("setparam 0 on rr: %s\n", err(sched_setparam(0, &sp)));
    sp.sched_priority = 7;
    printf("fifo 7: %s\n", err(sched_setscheduler(0, SCHED_FIFO, &sp)));
    ts.tv_sec = ts.tv_nsec = 99;
    r = sched_rr_get_interval(0, &ts);
    printf("fifo interval: %s %ld.%09ld\n", err(r), (long)ts.tv_sec, ts.tv_nsec);
    /* A child inherits the policy. */
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        sched_getparam(0, &sp);
        printf("child policy %d prio %d\n", sched_getscheduler(0), sp.sched_priority);
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    sp.sched_priority = 0;
    printf("back to other: %s\n", err(sched_setscheduler(0, SCHED_OTHER, &sp)));
    printf("setparam 3 on other: %s\n", err(sched_setparam(0, &(struct sched_param){3})));
    printf("policy %d\n", sched_getscheduler(0));
    /* A zombie keeps answering with the policy it died with. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    fflush(stdout);
    c = fork();
    if (c == 0) {
        sched_setscheduler(0, SCHED_FIFO, &(struct sched_param){5});
        _exit(0);
    }
    struct timespec ten = {10, 0};
    int got = sigtimedwait(&chld, NULL, &ten);
    sp.sched_priority = 0;
    int zp = sched_getscheduler(c);
    sched_getparam(c, &sp);
    printf("zombie (SIGCHLD %d): policy %d prio %d\n", got == SIGCHLD, zp, sp.sched_priority);
    printf("set on zombie: %s\n",
           err(sched_setscheduler(c, SCHED_RR, &(struct sched_param){9})));
    waitpid(c, &st, 0);
    printf("reaped: %s\n", err(sched_getscheduler(c)));
    return 0;
}

static int starve(void) {
    double deadline = now() + SPIN_LIMIT;
    pid_t sp[2];
    fflush(stdout);
    for (int i = 0; i < 2; i++) {
        sp[i] = fork();
        if (sp[i] == 0) {
            spin_until(deadline);
            _exit(0);
        }
        if (set_fifo(sp[i], 10) != 0) {
            printf("no-rt: %s\n", err(-1));
            kill(sp[i], SIGKILL);
            waitpid(sp[i], NULL, 0);
            if (i == 1) {
                kill(sp[0], SIGKILL);
                waitpid(sp[0], NULL, 0);
            }
            return 0;
        }
    }
    printf("spinners are SCHED_FIFO: %d %d\n", sched_getscheduler(sp[0]) == SCHED_FIFO,
           sched_getscheduler(sp[1]) == SCHED_FIFO);
    fflush(stdout);
    pid_t n = fork();
    if (n == 0) {
        printf("normal child runs, policy %d\n", sched_getscheduler(0));
        fflush(stdout);
        _exit(3);
    }
    int st;
    waitpid(n, &st, 0);
    report("normal child", st);
    for (int i = 0; i < 2; i++)
        kill(sp[i], SIGKILL);
    for (int i = 0; i < 2; i++) {
        waitpid(sp[i], &st, 0);
        report("spinner", st);
    }
    return 0;
}

static int yield_turns(void) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    /* Natively both tasks must share one CPU; vkernel runs this on one
     * vCPU (its sched_setaffinity result does not matter here). */
    sched_setaffinity(0, sizeof one, &one);
    if (set_fifo(0, 20) != 0) {
        printf("no-rt: %s\n", err(-1));
        return 0;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    pid_t c = fork();
    const char *me = c == 0 ? "child" : "parent";
    if (c != 0) {
        /* The child waits behind the running parent (equal priority does
         * not preempt); each yield hands the CPU to the other. */
        printf("parent forked\n");
    }
    for (int i = 1; i <= 4; i++) {
        printf("%s %d\n", me, i);
        sched_yield();
    }
    if (c == 0)
        _exit(0);
    int st;
    waitpid(c, &st, 0);
    report("child", st);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "calls";
    if (!strcmp(mode, "calls"))
        return calls();
    if (!strcmp(mode, "starve")) {
        if (argc > 2)
            SPIN_LIMIT = atoi(argv[2]);
        return starve();
    }
    if (!strcmp(mode, "yield"))
        return yield_turns();
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
