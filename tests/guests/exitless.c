/* Exitless syscalls: the calls the fast path serves (ids, clocks) and a
 * few it does not, interleaved, checked against each other; then a child
 * (fork) doing the same, and signals arriving while calls run. Prints a
 * deterministic summary. Usage: exitless ITERS */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile long alarms;
static void on_alarm(int s) { (void)s; alarms++; }

static int loop(long n) {
    pid_t pid = getpid(), ppid = getppid();
    long tid = syscall(SYS_gettid);
    struct timespec prev = {0, 0}, ts;
    for (long i = 0; i < n; i++) {
        if (getpid() != pid || getppid() != ppid || syscall(SYS_gettid) != tid) return 1;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 2;
        if (ts.tv_sec < prev.tv_sec || (ts.tv_sec == prev.tv_sec && ts.tv_nsec < prev.tv_nsec)) return 3;
        prev = ts;
        struct timeval tv;
        if (gettimeofday(&tv, NULL) != 0 || tv.tv_sec < 1000000000) return 4;
        if (getuid() != geteuid()) return 5;
        if (i % 1000 == 0 && write(1, "", 0) != 0) return 6; /* served when stdout never blocks */
    }
    /* A bad pointer: EFAULT, as natively (the exit path answers it). */
    if (syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (void *)8) != -1) return 7;
    return 0;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 20000;
    signal(SIGALRM, on_alarm);
    struct itimerval it = {{0, 2000}, {0, 2000}};
    setitimer(ITIMER_REAL, &it, NULL);
    int r = loop(n);
    printf("parent loop: %d\n", r);
    pid_t c = fork();
    if (c == 0) _exit(loop(n / 2));
    int st = 0;
    waitpid(c, &st, 0);
    printf("child loop: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("alarms seen: %s\n", alarms > 0 ? "yes" : "no");
    return r;
}
