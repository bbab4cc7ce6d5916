/* vkbench's linux guest: getppid round trip and first-touch write fault
 * cost, measured inside the program. Prints "getppid_ns X" and
 * "first_touch_ns Y". Usage: bench ITERS PAGES */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 10000;
    long pages = argc > 2 ? atol(argv[2]) : 4096;
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) syscall(SYS_getppid);
    double t1 = now_ns();
    char *m = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 1;
    double t2 = now_ns();
    for (long i = 0; i < pages; i++) m[i * 4096] = 1;
    double t3 = now_ns();
    printf("getppid_ns %.1f\nfirst_touch_ns %.1f\n", (t1 - t0) / iters, (t3 - t2) / pages);
    return 0;
}
