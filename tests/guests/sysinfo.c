/* The calls programs ask about their machine and children with, printed
 * the same natively and under vkernel: sched_getaffinity (as many CPUs
 * as argv[1] says), getcpu, statfs/statvfs sizes, preadv/pwritev and
 * their 2 forms, and waitid (P_PID, P_ALL, P_PGID, P_PIDFD, WNOWAIT,
 * WNOHANG, stopped, continued and killed children). `sysinfo CPUS DIR`. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define SAY(...) do { printf(__VA_ARGS__); fflush(stdout); } while (0)
static long R(long x) { return x < 0 ? -errno : x; }

static void show(const char *what, long r, siginfo_t *si, pid_t c) {
    SAY("%s: %ld signo %d code %d pid ok %d status %d\n", what, r, si->si_signo, si->si_code,
        si->si_pid == c, si->si_status);
}

int main(int argc, char **argv) {
    int cpus = argc > 1 ? atoi(argv[1]) : 1;
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    cpu_set_t s;
    CPU_ZERO(&s);
    long r = R(sched_getaffinity(0, sizeof s, &s));
    SAY("getaffinity %ld count ok %d\n", r, CPU_COUNT(&s) == cpus);
    SAY("getaffinity short %ld\n", R(syscall(SYS_sched_getaffinity, 0, 4, &s)));
    unsigned cpu = 99, node = 99;
    r = R(syscall(SYS_getcpu, &cpu, &node, 0));
    SAY("getcpu %ld cpu ok %d node %u\n", r, (int)cpu < cpus, node);
    struct statvfs v;
    r = R(statvfs(dir, &v));
    SAY("statvfs %ld sizes ok %d\n", r, v.f_blocks > 0 && v.f_bsize > 0 && v.f_bavail <= v.f_blocks);
    char path[256];
    snprintf(path, sizeof path, "%s/sysinfo-vec", dir);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    struct iovec w[2] = {{"hello ", 6}, {"world", 5}};
    SAY("pwritev %ld offset stays %ld\n", R(pwritev(fd, w, 2, 3)), (long)lseek(fd, 0, SEEK_CUR));
    char a[4] = {0}, b[9] = {0};
    struct iovec rv[2] = {{a, 3}, {b, 8}};
    r = R(preadv(fd, rv, 2, 3));
    SAY("preadv %ld [%s][%s]\n", r, a, b);
    SAY("preadv negative %ld\n", R(preadv(fd, rv, 2, -5)));
    /* The 2 forms as raw calls (musl has no wrappers): offset low and
     * high words, then the RWF_* flags (RWF_DSYNC is 2). */
    SAY("preadv2 at -1 %ld\n", R(syscall(SYS_preadv2, fd, rv, 2, -1L, 0L, 0)));
    SAY("preadv2 bad flag %ld\n", R(syscall(SYS_preadv2, fd, rv, 2, 0L, 0L, 0x40)));
    SAY("pwritev2 %ld\n", R(syscall(SYS_pwritev2, fd, w, 1, 0L, 0L, 2)));
    int p[2];
    pipe(p);
    SAY("preadv pipe %ld\n", R(preadv(p[0], rv, 2, 0)));
    close(p[0]);
    close(p[1]);
    close(fd);
    unlink(path);
    siginfo_t si;
    pid_t c = fork();
    if (c == 0) _exit(7);
    memset(&si, 0, sizeof si);
    r = R(waitid(P_PID, c, &si, WEXITED | WNOWAIT));
    show("waitid nowait", r, &si, c);
    memset(&si, 0, sizeof si);
    r = R(waitid(P_ALL, 0, &si, WEXITED));
    show("waitid all", r, &si, c);
    memset(&si, 0xff, sizeof si);
    r = R(waitid(P_ALL, 0, &si, WEXITED | WNOHANG));
    SAY("waitid none %ld\n", r);
    c = fork();
    if (c == 0) {
        pause();
        _exit(0);
    }
    memset(&si, 0xff, sizeof si);
    r = R(waitid(P_PID, c, &si, WEXITED | WNOHANG));
    SAY("waitid nohang running %ld pid %d\n", r, si.si_pid);
    kill(c, SIGSTOP);
    memset(&si, 0, sizeof si);
    r = R(waitid(P_PGID, 0, &si, WSTOPPED));
    show("waitid stopped", r, &si, c);
    kill(c, SIGCONT);
    memset(&si, 0, sizeof si);
    r = R(waitid(P_PID, c, &si, WCONTINUED));
    show("waitid continued", r, &si, c);
    int pfd = (int)syscall(SYS_pidfd_open, c, 0);
    kill(c, SIGKILL);
    memset(&si, 0, sizeof si);
    r = R(waitid(P_PIDFD, pfd, &si, WEXITED));
    show("waitid pidfd killed", r, &si, c);
    SAY("waitid no kinds %ld\n", R(waitid(P_ALL, 0, &si, WNOHANG)));
    SAY("waitid bad type %ld\n", R(waitid(9, 0, &si, WEXITED)));
    SAY("waitid no child %ld\n", R(waitid(P_ALL, 0, &si, WEXITED)));
    /* One NUMA node. */
    int mode = -1;
    unsigned long mask[2] = {9, 9};
    r = R(syscall(SYS_get_mempolicy, &mode, mask, 128, 0, 0));
    SAY("get_mempolicy %ld mode %d mask %lx\n", r, mode, mask[0]);
    r = R(syscall(SYS_get_mempolicy, NULL, mask, 128, 0, 4));
    SAY("mems allowed %ld mask %lx\n", r, mask[0]);
    unsigned long node0 = 1, node1 = 2;
    SAY("set_mempolicy bind 0 %ld\n", R(syscall(SYS_set_mempolicy, 2, &node0, 64)));
    SAY("set_mempolicy default %ld\n", R(syscall(SYS_set_mempolicy, 0, NULL, 0)));
    SAY("set_mempolicy node 1 %ld\n", R(syscall(SYS_set_mempolicy, 2, &node1, 64)));
    return 0;
}
