/* vkbench's linux guest: getppid round trip and first-touch write fault
 * cost, measured inside the program. Prints "getppid_ns X",
 * "first_touch_ns Y" (PAGES pages of a fresh mmap) and
 * "first_touch_large_ns Z" (per 4 KiB page of a LARGE_MIB sweep of fresh
 * anonymous memory aligned to 2 MiB, where large pages can map it; no
 * madvise, so a host in THP "madvise" mode gives it 4 KiB pages).
 * Usage: bench ITERS PAGES [LARGE_MIB] (ITERS timed getppid calls after
 * 1,000 untimed ones) */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "now.h"

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 10000;
    long pages = argc > 2 ? atol(argv[2]) : 4096;
    /* getppid(), not syscall(SYS_getppid): the C library's own `mov eax, N;
     * syscall` site, which vkernel patches (syscall(3) loads the number from
     * a register). The round trip is timed warm: 1,000 calls first, so the
     * site's first call (an exit that patches it under vkernel, the
     * translation under qemu-user) is not spread over the timed ones. */
    for (long i = 0; i < 1000; i++) getppid();
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) getppid();
    double t1 = now_ns();
    char *m = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 1;
    double t2 = now_ns();
    for (long i = 0; i < pages; i++) m[i * 4096] = 1;
    double t3 = now_ns();
    long mib = argc > 3 ? atol(argv[3]) : 64;
    long lpages = mib * 256;
    char *r = mmap(NULL, (mib + 2) << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) return 1;
    char *l = (char *)(((unsigned long)r + (2UL << 20) - 1) & ~((2UL << 20) - 1));
    double t4 = now_ns();
    for (long i = 0; i < lpages; i++) l[i * 4096] = 1;
    double t5 = now_ns();
    printf("getppid_ns %.1f\nfirst_touch_ns %.1f\nfirst_touch_large_ns %.1f\n", (t1 - t0) / iters,
           (t3 - t2) / pages, (t5 - t4) / lpages);
    return 0;
}
