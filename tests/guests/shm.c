/* Shared memory across fork: MAP_SHARED|MAP_ANONYMOUS counters (atomics
 * and a process-shared mutex), a cross-process futex wake, MADV_DONTNEED
 * and mremap on shared memory, a writable MAP_SHARED file in /tmp seen
 * through the mapping and read()/pread(), write() seen through a
 * mapping, msync, SIGBUS past EOF, and sem_open across fork. Prints the
 * same lines natively and under vkernel. Usage: shm [TEST [DIR]] (DIR:
 * where the shared file goes, kept as DIR/shm-file; /tmp and removed by
 * default). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void wait_child(pid_t p) {
    int st;
    if (waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        printf("child failed (%#x)\n", st);
        exit(1);
    }
}

static void *shared_anon(size_t len) {
    void *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap shared anon");
    return p;
}

static void atomics_counter(void) {
    long *c = shared_anon(4096);
    pid_t p = fork();
    if (p < 0) die("fork");
    for (int i = 0; i < 1000; i++) {
        __atomic_fetch_add(c, 1, __ATOMIC_SEQ_CST);
        if (i % 100 == 0) sched_yield();
    }
    if (p == 0) _exit(0);
    wait_child(p);
    printf("atomic counter: %ld\n", *c);
    munmap(c, 4096);
}

struct locked {
    pthread_mutex_t m;
    long n;
};

static void mutex_counter(void) {
    struct locked *l = shared_anon(4096);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&l->m, &a);
    pid_t p = fork();
    if (p < 0) die("fork");
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&l->m);
        long v = l->n;
        if (i % 50 == 0) sched_yield();
        l->n = v + 1;
        pthread_mutex_unlock(&l->m);
    }
    if (p == 0) _exit(0);
    wait_child(p);
    printf("mutex counter: %ld\n", l->n);
}

#define FUTEX_WAIT 0
#define FUTEX_WAKE 1

static long futex(int *w, int op, int v) {
    return syscall(SYS_futex, w, op, v, NULL, NULL, 0);
}

static void futex_wake_across_fork(void) {
    int *w = shared_anon(8192);
    /* The futex word in the second page, at different addresses in the
     * two processes after the child remaps the area elsewhere. */
    int *word = w + 1024 + 3;
    pid_t p = fork();
    if (p < 0) die("fork");
    if (p == 0) {
        char *moved = mremap(w, 8192, 8192, MREMAP_MAYMOVE | MREMAP_FIXED,
                             (char *)w + (1 << 24));
        if (moved == MAP_FAILED) die("mremap");
        int *cw = (int *)(moved + 4096) + 3;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, 0);
        __atomic_store_n(cw, 1, __ATOMIC_SEQ_CST);
        futex(cw, FUTEX_WAKE, 1);
        _exit(0);
    }
    int waits = 0;
    while (__atomic_load_n(word, __ATOMIC_SEQ_CST) == 0) {
        futex(word, FUTEX_WAIT, 0);
        waits++;
    }
    wait_child(p);
    printf("futex: woken, word %d\n", *word);
}

static void dontneed_keeps_data(void) {
    char *m = shared_anon(3 * 4096);
    strcpy(m + 4096, "kept");
    if (madvise(m, 3 * 4096, MADV_DONTNEED)) die("madvise");
    printf("after MADV_DONTNEED: '%s'\n", m + 4096);
    if (mprotect(m, 3 * 4096, PROT_READ)) die("mprotect");
    pid_t p = fork();
    if (p < 0) die("fork");
    if (p == 0) {
        if (mprotect(m, 3 * 4096, PROT_READ | PROT_WRITE)) die("mprotect child");
        strcpy(m + 8192, "from child after mprotect");
        _exit(0);
    }
    wait_child(p);
    printf("read-only in parent: '%s'\n", m + 8192);
    char *g = mremap(m, 3 * 4096, 6 * 4096, MREMAP_MAYMOVE);
    if (g == MAP_FAILED) die("mremap grow");
    if (mprotect(g, 6 * 4096, PROT_READ | PROT_WRITE)) die("mprotect grown");
    p = fork();
    if (p == 0) {
        strcpy(g + 2 * 4096, "child after mremap");
        /* Past the object's size (the original length): SIGBUS. */
        strcpy(g + 5 * 4096, "grown page");
        _exit(0);
    }
    int st;
    waitpid(p, &st, 0);
    printf("after mremap: '%s' '%s', child signal %d\n", g + 4096, g + 2 * 4096,
           WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    /* old_len 0 duplicates a shared mapping: an alias of the same pages. */
    char *alias = mremap(g + 4096, 0, 4096, MREMAP_MAYMOVE);
    if (alias == MAP_FAILED) die("mremap alias");
    strcpy(alias + 8, "via the alias");
    printf("alias: '%s' differs %d\n", g + 4096 + 8, alias != g + 4096);
    errno = 0;
    char *pa = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *bad = mremap(pa, 0, 4096, MREMAP_MAYMOVE);
    printf("alias of private: %s\n", bad == MAP_FAILED ? strerror(errno) : "allowed");
    errno = 0;
    int r = msync(pa + (1 << 30), 4096, MS_SYNC);
    printf("msync unmapped: %d %s\n", r, strerror(errno));
}

/* A process-shared robust mutex whose owner exits holding it: the
 * waiter in the other process gets EOWNERDEAD. */
static void robust_owner_dies(void) {
    pthread_mutex_t *m = shared_anon(4096);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(m, &a);
    int fds[2];
    if (pipe(fds)) die("pipe");
    pid_t p = fork();
    if (p < 0) die("fork");
    if (p == 0) {
        pthread_mutex_lock(m);
        if (write(fds[1], "x", 1) != 1) _exit(1);
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, 0);
        _exit(0);
    }
    char c;
    if (read(fds[0], &c, 1) != 1) die("read");
    int r = pthread_mutex_lock(m);
    printf("robust: lock after the owner died: %s\n", r == EOWNERDEAD ? "EOWNERDEAD" : strerror(r));
    if (r == EOWNERDEAD) pthread_mutex_consistent(m);
    pthread_mutex_unlock(m);
    wait_child(p);
}

/* MAP_SHARED of /dev/zero is shared anonymous memory; MADV_REMOVE. */
static void zero_and_remove(void) {
    int fd = open("/dev/zero", O_RDWR);
    if (fd < 0) die("open /dev/zero");
    char *z = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *zp = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (z == MAP_FAILED || zp == MAP_FAILED) die("mmap /dev/zero");
    pid_t p = fork();
    if (p == 0) {
        strcpy(z + 4096, "child via /dev/zero");
        strcpy(zp, "private");
        _exit(0);
    }
    wait_child(p);
    printf("/dev/zero: shared '%s' private '%s'\n", z + 4096, zp);
    int r = madvise(z, 8192, MADV_REMOVE);
    printf("MADV_REMOVE shared: %d, then '%s'\n", r, z + 4096);
    errno = 0;
    char *ap = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    r = madvise(ap, 4096, MADV_REMOVE);
    printf("MADV_REMOVE private anonymous: %d %s\n", r, strerror(errno));
    char path[64];
    snprintf(path, sizeof path, "/tmp/vk-shm-rm-%d", (int)getpid());
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || pwrite(fd, "abcdefgh", 8, 4096 + 8) != 8) die("file");
    char *m = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) die("mmap");
    strcpy(m + 10, "mapped");
    r = madvise(m + 4096, 4096, MADV_REMOVE);
    char buf[8] = {1};
    if (pread(fd, buf, 8, 4096 + 8) != 8) die("pread");
    printf("MADV_REMOVE file: %d, map '%s' '%s', file zero %d\n", r, m + 10, m + 4096 + 8,
           !memcmp(buf, "\0\0\0\0\0\0\0\0", 8));
    char *pm = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    errno = 0;
    r = madvise(pm, 4096, MADV_REMOVE);
    printf("MADV_REMOVE private file: %d %s\n", r, strerror(errno));
    munmap(m, 8192);
    close(fd);
    unlink(path);
}

static void on_int(int sig) {
    (void)sig;
}

static double mono(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* Waits with a CLOCK_REALTIME deadline (sem_timedwait: FUTEX_WAIT_BITSET
 * with FUTEX_CLOCK_REALTIME; clock_nanosleep TIMER_ABSTIME) wait until
 * it, and a signal with a handler interrupts the wait on a shared
 * semaphore (EINTR). */
static void realtime_deadlines(void) {
    sem_t *s = shared_anon(4096);
    sem_init(s, 1, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    double t0 = mono();
    int r = sem_timedwait(s, &ts);
    printf("sem_timedwait: %d %s, waited >= 50 ms %d\n", r, strerror(errno), mono() - t0 >= 0.05);
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    t0 = mono();
    r = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, 0);
    printf("clock_nanosleep abs: %d, waited >= 50 ms %d\n", r, mono() - t0 >= 0.05);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_int;
    sigaction(SIGINT, &sa, 0);
    pid_t parent = getpid();
    pid_t p = fork();
    if (p == 0) {
        sem_post(s);
        struct timespec d = {0, 100 * 1000 * 1000};
        nanosleep(&d, 0);
        kill(parent, SIGINT);
        _exit(0);
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    r = sem_timedwait(s, &ts);
    printf("posted: %d\n", r);
    errno = 0;
    r = sem_timedwait(s, &ts);
    printf("interrupted: %d %s\n", r, strerror(errno));
    wait_child(p);
    signal(SIGINT, SIG_DFL);
}

static sigjmp_buf jb;
static void on_bus(int sig) {
    siglongjmp(jb, sig);
}

/* The file lives in `dir` (kept there when `keep`, for the host to look). */
static void shared_file(const char *dir, int keep) {
    char path[256];
    if (keep)
        snprintf(path, sizeof path, "%s/shm-file", dir);
    else
        snprintf(path, sizeof path, "%s/vk-shm-%d", dir, (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) die("open");
    if (ftruncate(fd, 8192)) die("ftruncate");
    char *m = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) die("mmap file");
    pid_t p = fork();
    if (p < 0) die("fork");
    if (p == 0) {
        strcpy(m + 10, "written by the child");
        _exit(0);
    }
    wait_child(p);
    char buf[64] = {0};
    if (pread(fd, buf, 20, 10) != 20) die("pread");
    printf("file: map '%s' pread '%s'\n", m + 10, buf);
    if (pwrite(fd, "pwritten", 9, 4096 + 5) != 9) die("pwrite");
    printf("file: pwrite seen in map '%s'\n", m + 4096 + 5);
    /* A second mapping of the same file (another offset) sees the first. */
    int fd2 = open(path, O_RDWR);
    char *m2 = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 4096);
    if (m2 == MAP_FAILED) die("mmap 2");
    strcpy(m2 + 100, "via the second map");
    printf("file: first map sees '%s'\n", m + 4096 + 100);
    if (msync(m, 8192, MS_SYNC)) die("msync");
    if (msync(m + 1, 4096, MS_SYNC) == 0 || msync(m, 4096, MS_SYNC | MS_ASYNC) == 0)
        printf("msync accepted bad arguments\n");
    munmap(m2, 4096);
    close(fd2);
    /* SIGBUS past the end of the file. */
    signal(SIGBUS, on_bus);
    int sig = sigsetjmp(jb, 1);
    if (sig == 0) {
        volatile char c = m[2 * 4096];
        (void)c;
        printf("no SIGBUS past EOF\n");
    } else {
        printf("past EOF: signal %d\n", sig);
    }
    munmap(m, 3 * 4096);
    close(fd);
    /* What reached the file, through a fresh open. */
    fd = open(path, O_RDONLY);
    memset(buf, 0, sizeof buf);
    if (pread(fd, buf, 20, 10) != 20) die("pread 2");
    char b2[32] = {0};
    if (pread(fd, b2, 18, 4096 + 100) != 18) die("pread 3");
    printf("file after munmap: '%s' '%s'\n", buf, b2);
    close(fd);
    /* ftruncate down and up again: the mapped bytes past the cut read
     * as zero, the ones before stay. */
    fd = open(path, O_RDWR);
    m = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) die("mmap again");
    strcpy(m + 4096 + 50, "tail");
    strcpy(m + 90, "0123456789abcdef");
    if (ftruncate(fd, 100) || ftruncate(fd, 8192)) die("ftruncate");
    printf("truncated: '%s' '%s' tail gone %d\n", m + 10, m + 90, m[4096 + 50] == 0);
    munmap(m, 8192);
    close(fd);
    /* A read-only open refuses a writable shared mapping. */
    fd = open(path, O_RDONLY);
    void *r = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("writable shared map of O_RDONLY: %s\n", r == MAP_FAILED ? "refused" : "allowed");
    close(fd);
    if (!keep) unlink(path);
}

static void semaphores(void) {
    char name[64];
    snprintf(name, sizeof name, "/vk-shm-sem-%d", (int)getpid());
    sem_t *s = sem_open(name, O_CREAT | O_EXCL, 0600, 0);
    if (s == SEM_FAILED) die("sem_open");
    pid_t p = fork();
    if (p < 0) die("fork");
    if (p == 0) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, 0);
        for (int i = 0; i < 3; i++) sem_post(s);
        _exit(0);
    }
    for (int i = 0; i < 3; i++)
        if (sem_wait(s)) die("sem_wait");
    wait_child(p);
    int v = -1;
    sem_getvalue(s, &v);
    printf("sem: three posts taken, value %d\n", v);
    sem_close(s);
    sem_unlink(name);
}

int main(int argc, char **argv) {
    setvbuf(stdout, 0, _IONBF, 0);
    const char *only = argc > 1 ? argv[1] : "";
    if (!*only || !strcmp(only, "atomics")) atomics_counter();
    if (!*only || !strcmp(only, "mutex")) mutex_counter();
    if (!*only || !strcmp(only, "futex")) futex_wake_across_fork();
    if (!*only || !strcmp(only, "dontneed")) dontneed_keeps_data();
    if (!*only || !strcmp(only, "robust")) robust_owner_dies();
    if (!*only || !strcmp(only, "zero")) zero_and_remove();
    if (!*only || !strcmp(only, "deadlines")) realtime_deadlines();
    if (!*only || !strcmp(only, "file")) shared_file(argc > 2 ? argv[2] : "/tmp", argc > 2);
    if (!*only || !strcmp(only, "sem")) semaphores();
    return 0;
}
