/* Threads: pthreads summing under a mutex and a condition variable,
 * pthread_join, thread-local storage, exit_group from a thread, signals to
 * a thread (pthread_kill) and to the process (kill, taken by the thread
 * that does not block it), robust mutexes whose owner dies, and raw clone
 * with bad inputs (a child stack in unmapped memory, a CLEARTID address
 * outside the address space). Usage: threads MODE; the output is
 * deterministic, so it can be compared with a native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NTHREADS 4
#define PER 20000

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long total;
static int finished;
static __thread long tls_sum;
static __thread int tls_id = -1;

static long gettid_raw(void) { return syscall(SYS_gettid); }

static void *summer(void *arg) {
    long id = (long)arg;
    tls_id = (int)id;
    for (long i = 1; i <= PER; i++) {
        tls_sum += i * (id + 1);
        pthread_mutex_lock(&mu);
        total += i * (id + 1);
        pthread_mutex_unlock(&mu);
    }
    pthread_mutex_lock(&mu);
    finished++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    long same_pid = getpid() == (pid_t)(long)syscall(SYS_getpid);
    long own_tid = gettid_raw() != getpid();
    return (void *)(tls_sum * 4 + same_pid * 2 + own_tid + (tls_id == id ? 0 : 1000));
}

static int mode_sum(void) {
    pthread_t t[NTHREADS];
    for (long i = 0; i < NTHREADS; i++)
        if (pthread_create(&t[i], NULL, summer, (void *)i) != 0) {
            printf("pthread_create failed\n");
            return 1;
        }
    pthread_mutex_lock(&mu);
    while (finished < NTHREADS)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    long expect = 0;
    for (long i = 0; i < NTHREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        long v = (long)r;
        long want = (long)PER * (PER + 1) / 2 * (i + 1);
        printf("thread %ld: tls sum ok %d, getpid shared %ld, own tid %ld\n", i,
               v / 4 == want, (v >> 1) & 1, v & 1);
        expect += want;
    }
    printf("total %ld (expected %ld), main tls %ld id %d\n", total, expect, tls_sum, tls_id);
    return total == expect ? 0 : 1;
}

static void *exiter(void *arg) {
    (void)arg;
    printf("thread: calling exit(7)\n");
    exit(7);
}

static int mode_exitgroup(void) {
    pthread_t t;
    printf("main: waiting\n");
    fflush(stdout);
    pthread_create(&t, NULL, exiter, NULL);
    pthread_join(t, NULL);
    printf("main: not reached\n");
    return 0;
}

static volatile long handled_tid;
static int handled_sig;
static volatile int ready, go_on;

static void handler(int sig) {
    handled_tid = gettid_raw();
    __atomic_store_n(&handled_sig, sig, __ATOMIC_SEQ_CST);
}

static void *target(void *arg) {
    long *tid = arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    *tid = gettid_raw();
    __atomic_store_n(&ready, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&go_on, __ATOMIC_SEQ_CST))
        sched_yield();
    return NULL;
}

static int mode_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    /* The main thread blocks SIGUSR2: kill() must reach the other one. */
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    long tid = 0;
    pthread_t t;
    pthread_create(&t, NULL, target, &tid);
    while (!__atomic_load_n(&ready, __ATOMIC_SEQ_CST))
        sched_yield();
    pthread_kill(t, SIGUSR1);
    while (!__atomic_load_n(&handled_sig, __ATOMIC_SEQ_CST))
        sched_yield();
    printf("SIGUSR1 by pthread_kill: in the thread %d\n", handled_tid == tid);
    handled_sig = 0;
    kill(getpid(), SIGUSR2);
    while (!__atomic_load_n(&handled_sig, __ATOMIC_SEQ_CST))
        sched_yield();
    printf("SIGUSR2 by kill: sig %d, in the unblocking thread %d\n", handled_sig,
           handled_tid == tid);
    printf("tgkill to a wrong group: %s\n",
           syscall(SYS_tgkill, getpid() + 1000, tid, SIGUSR1) == -1 && errno == ESRCH
               ? "ESRCH"
               : "delivered");
    __atomic_store_n(&go_on, 1, __ATOMIC_SEQ_CST);
    pthread_join(t, NULL);
    printf("joined\n");
    return 0;
}

static pthread_mutex_t rmu;
static volatile int locked;

static void *owner(void *arg) {
    pthread_mutex_lock(&rmu);
    __atomic_store_n(&locked, 1, __ATOMIC_SEQ_CST);
    if (arg)
        syscall(SYS_exit, 0); /* dies without pthread_exit's cleanup */
    return NULL;              /* pthread_exit while holding it */
}

static int mode_robust(int raw) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&rmu, &a);
    pthread_t t;
    pthread_create(&t, NULL, owner, raw ? (void *)1 : NULL);
    if (raw) {
        while (!__atomic_load_n(&locked, __ATOMIC_SEQ_CST))
            sched_yield();
    } else {
        pthread_join(t, NULL);
    }
    int r = pthread_mutex_lock(&rmu);
    printf("lock after the owner died: %s\n",
           r == EOWNERDEAD ? "EOWNERDEAD" : r == 0 ? "0" : strerror(r));
    if (r == EOWNERDEAD) {
        printf("consistent: %d\n", pthread_mutex_consistent(&rmu));
        pthread_mutex_unlock(&rmu);
        printf("lock again: %d\n", pthread_mutex_lock(&rmu));
        pthread_mutex_unlock(&rmu);
    }
    return 0;
}

/* clone(flags, stack, ptid, ctid, 0); the child calls fn on its stack,
 * then exits (SYS_exit). */
static long raw_clone(unsigned long flags, void *stack, int *ptid, void *ctid, void (*fn)(void)) {
    long ret;
    register long r10 __asm__("r10") = (long)ctid;
    register long r8 __asm__("r8") = 0;
    register long r9 __asm__("r9") = (long)fn;
    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "xor %%ebp, %%ebp\n\t"
                     "call *%%r9\n\t"
                     "mov $60, %%eax\n\t"
                     "xor %%edi, %%edi\n\t"
                     "syscall\n\t"
                     "1:\n\t"
                     : "=a"(ret)
                     : "a"(56L), "D"(flags), "S"(stack), "d"(ptid), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

#define THREAD_FLAGS                                                                        \
    (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM)

static volatile int child_ran;
static void child_fn(void) { __atomic_store_n(&child_ran, 1, __ATOMIC_SEQ_CST); }
static char child_stack[65536] __attribute__((aligned(16)));

static int mode_badstack(void) {
    const char m[] = "cloning with a stack in unmapped memory\n";
    write(1, m, sizeof m - 1);
    /* The child's first push faults: SIGSEGV ends the whole process. */
    long r = raw_clone(THREAD_FLAGS, (void *)0x2000, NULL, NULL, child_fn);
    if (r < 0) {
        printf("clone failed: %ld\n", r);
        return 1;
    }
    for (;;)
        pause();
}

static int mode_cleartid(void) {
    int ptid = 0;
    /* A CLEARTID address past the end of the user address space, and
     * PARENT_SETTID. */
    long r = raw_clone(THREAD_FLAGS | CLONE_CHILD_CLEARTID | CLONE_PARENT_SETTID,
                       child_stack + sizeof child_stack, &ptid, (void *)0x800000000000UL,
                       child_fn);
    if (r < 0) {
        printf("clone failed: %ld\n", r);
        return 1;
    }
    while (!__atomic_load_n(&child_ran, __ATOMIC_SEQ_CST))
        sched_yield();
    printf("child ran, parent tid written %d\n", ptid == r);
    /* A good CLEARTID address: cleared and woken when the child ends. */
    static int ctid = -1;
    child_ran = 0;
    r = raw_clone(THREAD_FLAGS | CLONE_CHILD_CLEARTID | CLONE_CHILD_SETTID,
                  child_stack + sizeof child_stack, NULL, &ctid, child_fn);
    while (1) {
        int v = __atomic_load_n(&ctid, __ATOMIC_SEQ_CST);
        if (v == 0)
            break;
        struct timespec ts = {5, 0};
        syscall(SYS_futex, &ctid, 0 /* FUTEX_WAIT */, v, &ts, NULL, 0);
    }
    printf("ctid cleared after the child's exit, child ran %d\n", child_ran);
    return 0;
}

static char *self_path;
static char pidbuf[32];

static void *spinner(void *arg) {
    (void)arg;
    for (;;)
        sched_yield();
}

static void *execer(void *arg) {
    (void)arg;
    char *av[] = {self_path, "execd", pidbuf, NULL};
    execv(self_path, av);
    printf("execv failed\n");
    exit(1);
}

/* execve in a multithreaded process: the other threads end first, the
 * process keeps its pid. From the main thread, or from another one. */
static int mode_exec(int from_thread) {
    snprintf(pidbuf, sizeof pidbuf, "%d", getpid());
    pthread_t t;
    pthread_create(&t, NULL, spinner, NULL);
    if (from_thread) {
        pthread_t e;
        pthread_create(&e, NULL, execer, NULL);
        pthread_join(e, NULL);
        printf("not reached\n");
        return 1;
    }
    execer(NULL);
    return 1;
}

/* Two threads hand a token back and forth through one condition
 * variable; meanwhile threads are created and joined in waves (exit
 * paths, CLEARTID wake-ups, pid reuse). */
static int token, rounds_done;
static void *ponger(void *arg) {
    long me = (long)arg;
    for (int i = 0; i < 3000; i++) {
        pthread_mutex_lock(&mu);
        while (token != me)
            pthread_cond_wait(&cv, &mu);
        token = 1 - me;
        rounds_done++;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}
static void *tiny(void *arg) { return (void *)((long)arg * 3); }

static int mode_churn(void) {
    pthread_t a, b;
    pthread_create(&a, NULL, ponger, (void *)0);
    pthread_create(&b, NULL, ponger, (void *)1);
    long sum = 0;
    for (int wave = 0; wave < 25; wave++) {
        pthread_t t[8];
        for (long i = 0; i < 8; i++)
            if (pthread_create(&t[i], NULL, tiny, (void *)i) != 0) {
                printf("create failed in wave %d\n", wave);
                return 1;
            }
        for (int i = 0; i < 8; i++) {
            void *r;
            pthread_join(t[i], &r);
            sum += (long)r;
        }
    }
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    printf("ping-pong rounds %d, churn sum %ld\n", rounds_done, sum);
    return 0;
}

/* fork from a thread: the child is a process of one thread; the parent's
 * other thread reaps it. */
static void *forker(void *arg) {
    (void)arg;
    pid_t c = fork();
    if (c == 0) {
        printf("child: one thread, getpid == gettid %d\n", getpid() == gettid_raw());
        _exit(5);
    }
    return (void *)(long)c;
}

static int mode_forkthread(void) {
    pthread_t t;
    void *r;
    pthread_create(&t, NULL, forker, NULL);
    pthread_join(t, &r);
    int st = 0;
    pid_t w = waitpid((pid_t)(long)r, &st, 0);
    printf("main thread reaped the child of another thread: %d, exit %d\n",
           w == (pid_t)(long)r, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}

/* A parent stops, continues and kills a multithreaded child. */
static int mode_stopcont(void) {
    int p[2];
    if (pipe(p) != 0)
        return 1;
    pid_t c = fork();
    if (c == 0) {
        pthread_t t[3];
        for (int i = 0; i < 3; i++)
            pthread_create(&t[i], NULL, spinner, NULL);
        write(p[1], "r", 1);
        for (;;)
            pause();
    }
    char ch;
    read(p[0], &ch, 1);
    int st = 0;
    kill(c, SIGSTOP);
    waitpid(c, &st, WUNTRACED);
    printf("stopped %d by %d\n", WIFSTOPPED(st), WIFSTOPPED(st) ? WSTOPSIG(st) : 0);
    kill(c, SIGCONT);
    kill(c, SIGTERM);
    waitpid(c, &st, 0);
    printf("then killed %d by %d\n", WIFSIGNALED(st), WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return 0;
}

/* alarm() in a multithreaded process: the timer is the process's, and
 * SIGALRM goes to the thread that does not block it. */
static void *sleeper(void *arg) {
    long *tid = arg;
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGALRM);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    *tid = gettid_raw();
    while (!__atomic_load_n(&handled_sig, __ATOMIC_SEQ_CST))
        pause();
    return NULL;
}

static int mode_alarm(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigaction(SIGALRM, &sa, NULL);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    long tid = 0;
    pthread_t t;
    pthread_create(&t, NULL, sleeper, &tid);
    alarm(1);
    pthread_join(t, NULL);
    printf("SIGALRM taken by the thread that does not block it: %d\n", handled_tid == tid);
    return 0;
}

/* Process-directed signals every thread blocks stay pending for the
 * process (sigpending shows them); the first thread that unblocks one
 * takes it; sigwait in a thread takes one; sigtimedwait times out. */
static volatile int step, worker_done;
static void *unblocker(void *arg) {
    long *tid = arg;
    *tid = gettid_raw();
    while (!__atomic_load_n(&step, __ATOMIC_SEQ_CST))
        sched_yield();
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    __atomic_store_n(&worker_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void *waiter(void *arg) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    int sig = 0;
    int r = sigwait(&s, &sig);
    *(long *)arg = r == 0 ? sig : -r;
    return NULL;
}

static int mode_sigshared(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    long tid = 0;
    pthread_t t;
    pthread_create(&t, NULL, unblocker, &tid);
    kill(getpid(), SIGUSR1);
    sigset_t p;
    sigpending(&p);
    printf("pending for the process: %d\n", sigismember(&p, SIGUSR1));
    __atomic_store_n(&step, 1, __ATOMIC_SEQ_CST);
    pthread_join(t, NULL);
    printf("taken by the thread that unblocked it: %d (sig %d)\n", handled_tid == tid,
           handled_sig);
    long got = 0;
    pthread_create(&t, NULL, waiter, &got);
    kill(getpid(), SIGUSR2);
    pthread_join(t, NULL);
    printf("sigwait in a thread: %ld\n", got);
    struct timespec ts = {0, 20 * 1000 * 1000};
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    int r = sigtimedwait(&s, NULL, &ts);
    printf("sigtimedwait with nothing pending: %d %s\n", r, r < 0 && errno == EAGAIN ? "EAGAIN" : "?");
    return 0;
}

int main(int argc, char **argv) {
    self_path = argv[0];
    if (argc > 2 && !strcmp(argv[1], "execd")) {
        printf("after execve: same pid %d\n", getpid() == atoi(argv[2]));
        return 0;
    }
    const char *m = argc > 1 ? argv[1] : "sum";
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(m, "sum"))
        return mode_sum();
    if (!strcmp(m, "exitgroup"))
        return mode_exitgroup();
    if (!strcmp(m, "signals"))
        return mode_signals();
    if (!strcmp(m, "robust"))
        return mode_robust(0);
    if (!strcmp(m, "robustraw"))
        return mode_robust(1);
    if (!strcmp(m, "badstack"))
        return mode_badstack();
    if (!strcmp(m, "cleartid"))
        return mode_cleartid();
    if (!strcmp(m, "sigshared"))
        return mode_sigshared();
    if (!strcmp(m, "churn"))
        return mode_churn();
    if (!strcmp(m, "forkthread"))
        return mode_forkthread();
    if (!strcmp(m, "stopcont"))
        return mode_stopcont();
    if (!strcmp(m, "alarm"))
        return mode_alarm();
    if (!strcmp(m, "exec"))
        return mode_exec(0);
    if (!strcmp(m, "execthread"))
        return mode_exec(1);
    printf("unknown mode %s\n", m);
    return 2;
}
