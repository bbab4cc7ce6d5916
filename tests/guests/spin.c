/* CPU shares: fork two busy loops for SECONDS of wall time; the second
 * renices itself to NICE (setpriority). With "rt", a third child becomes
 * SCHED_FIFO and spins for a fixed amount of work, reporting its wall time. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static unsigned long spin_until(double end) {
    unsigned long n = 0;
    volatile unsigned long x = 0;
    while (now() < end)
        for (int i = 0; i < 200000; i++) x += i, n++;
    return n;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 2.0;
    int nice = argc > 2 ? atoi(argv[2]) : 5;
    int rt = argc > 3 && strcmp(argv[3], "rt") == 0;
    setvbuf(stdout, NULL, _IONBF, 0);
    double end = now() + secs;
    for (int i = 0; i < 2; i++) {
        if (fork() == 0) {
            if (i == 1) setpriority(PRIO_PROCESS, 0, nice);
            unsigned long n = spin_until(end);
            printf("spinner %d nice %d iterations %lu\n", i, getpriority(PRIO_PROCESS, 0), n);
            _exit(0);
        }
    }
    if (rt) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (fork() == 0) {
            struct sched_param sp = {.sched_priority = 10};
            int r = sched_setscheduler(0, SCHED_FIFO, &sp);
            double t0 = now();
            volatile unsigned long x = 0;
            for (unsigned long i = 0; i < 300000000UL; i++) x += i;
            printf("rt setscheduler %d policy %d wall_ms %.0f\n", r, sched_getscheduler(0), (now() - t0) * 1e3);
            _exit(0);
        }
    }
    while (wait(NULL) > 0) {
    }
    return 0;
}
