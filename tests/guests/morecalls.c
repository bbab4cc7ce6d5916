/* Calls served since issue 23's last list, printed the same natively and
 * under vkernel: mincore (resident pages, its errnos), sched_setattr and
 * sched_getattr (fair and, with argv[1] "rt", real-time policies; sizes,
 * flags and errnos), fchmodat2 (flags, a symlink's mode) and setfsuid.
 * `morecalls [rt] DIR`. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SAY(...) do { printf(__VA_ARGS__); fflush(stdout); } while (0)
static long R(long x) { return x < 0 ? -errno : x; }

struct attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t prio;
    uint64_t runtime, deadline, period;
    uint32_t util_min, util_max;
};

static long setattr(struct attr *a) { return R(syscall(314, 0, a, 0)); }

static void getattr(const char *what) {
    struct attr a;
    memset(&a, 0xff, sizeof a);
    long r = R(syscall(315, 0, &a, sizeof a, 0));
    SAY("%s: getattr %ld size %u policy %u nice %d prio %u\n", what, r, a.size, a.policy, a.nice,
        a.prio);
}

int main(int argc, char **argv) {
    int rt = argc > 2 && strcmp(argv[1], "rt") == 0;
    const char *dir = argv[argc - 1];
    long pg = sysconf(_SC_PAGESIZE);
    /* mincore: the pages touched are resident (fault-around may map their
     * neighbours under vkernel, so only touched pages are printed). */
    char *m = mmap(NULL, 8 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    m[0] = 1;
    m[5 * pg] = 1;
    unsigned char vec[8];
    long r = R(mincore(m, 8 * pg, vec));
    SAY("mincore %ld touched %d %d\n", r, vec[0] & 1, vec[5] & 1);
    SAY("mincore unaligned %ld\n", R(mincore(m + 1, pg, vec)));
    SAY("mincore bad vec %ld\n", R(mincore(m, pg, (unsigned char *)8)));
    munmap(m + 2 * pg, pg);
    SAY("mincore hole %ld\n", R(mincore(m, 8 * pg, vec)));
    SAY("mincore zero length %ld\n", R(mincore(m, 0, vec)));
    /* sched_setattr / sched_getattr. */
    getattr("start");
    struct attr a = {.size = 48, .policy = 0, .nice = 5};
    SAY("setattr nice 5 %ld\n", setattr(&a));
    getattr("nice 5");
    SAY("getpriority %d\n", getpriority(PRIO_PROCESS, 0));
    a = (struct attr){.size = 0, .policy = 3, .nice = 7};
    SAY("setattr batch size 0 %ld\n", setattr(&a));
    a = (struct attr){.size = 40};
    SAY("setattr small %ld size now %u\n", setattr(&a), a.size);
    a = (struct attr){.size = 48, .policy = 0, .prio = 3};
    SAY("setattr fair prio %ld\n", setattr(&a));
    a = (struct attr){.size = 48, .policy = 9};
    SAY("setattr bad policy %ld\n", setattr(&a));
    a = (struct attr){.size = 48, .policy = 0, .flags = 1 << 12};
    SAY("setattr bad flag %ld\n", setattr(&a));
    SAY("setattr flags arg %ld\n", R(syscall(314, 0, &a, 1)));
    SAY("setattr bad pid %ld\n", R(syscall(314, -1, &a, 0)));
    SAY("getattr small size %ld\n", R(syscall(315, 0, &a, 40, 0)));
    SAY("getattr bad flags %ld\n", R(syscall(315, 0, &a, sizeof a, 1)));
    if (rt) {
        a = (struct attr){.size = 48, .policy = 2, .prio = 12, .flags = 1};
        SAY("setattr rr 12 %ld\n", setattr(&a));
        getattr("rr 12");
        a = (struct attr){.size = 48, .policy = 1, .flags = 0x10};
        SAY("setattr fifo keep params %ld\n", setattr(&a));
        getattr("fifo kept");
        a = (struct attr){.size = 48, .policy = 1, .prio = 100};
        SAY("setattr fifo 100 %ld\n", setattr(&a));
        a = (struct attr){.size = 48, .policy = 0};
        SAY("setattr back %ld\n", setattr(&a));
        getattr("back");
    }
    /* fchmodat2 and setfsuid. */
    char f[256], l[256];
    snprintf(f, sizeof f, "%s/morecalls-file", dir);
    snprintf(l, sizeof l, "%s/morecalls-link", dir);
    unlink(l);
    int fd = open(f, O_CREAT | O_RDWR | O_TRUNC, 0600);
    symlink(f, l);
    struct stat st;
    SAY("fchmodat2 %ld", R(syscall(452, AT_FDCWD, f, 0640, 0)));
    stat(f, &st);
    SAY(" mode %o\n", st.st_mode & 07777);
    SAY("fchmodat2 link nofollow %ld\n",
        R(syscall(452, AT_FDCWD, l, 0600, AT_SYMLINK_NOFOLLOW)));
    SAY("fchmodat2 empty path %ld", R(syscall(452, fd, "", 0604, AT_EMPTY_PATH)));
    fstat(fd, &st);
    SAY(" mode %o\n", st.st_mode & 07777);
    SAY("fchmodat2 bad flag %ld\n", R(syscall(452, AT_FDCWD, f, 0600, 0x1)));
    SAY("setfsuid %ld\n", R(syscall(SYS_setfsuid, 0)));
    SAY("setfsgid %ld\n", R(syscall(SYS_setfsgid, -1)));
    close(fd);
    unlink(l);
    unlink(f);
    return 0;
}
