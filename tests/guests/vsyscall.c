/* Calls through the legacy vsyscall page (gettimeofday, time, getcpu at
 * 0xffffffffff600000/400/800), as old binaries and Java do (issue 23). */
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
int main(void) {
    typedef long (*gtod_t)(struct timeval *, void *);
    typedef long (*time_t_)(long *);
    typedef long (*getcpu_t)(unsigned *, unsigned *, void *);
    struct timeval tv = {0};
    long r = ((gtod_t)0xffffffffff600000)(&tv, 0);
    long t2 = 0;
    long t = ((time_t_)0xffffffffff600400)(&t2);
    unsigned cpu = 99, node = 99;
    long g = ((getcpu_t)0xffffffffff600800)(&cpu, &node, 0);
    time_t now = time(0);
    printf("gettimeofday %ld ok %d; time %ld ok %d %d; getcpu %ld node %u cpu<64 %d\n", r, tv.tv_sec - now <= 1 && now - tv.tv_sec <= 1, 0L, t - now <= 1 && now - t <= 1, t == t2, g, node, cpu < 64);
    return 0;
}
