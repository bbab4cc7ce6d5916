/* Random system calls from a seed (issue 12, item 20): numbers 0..460 and
 * a few beyond, arguments from a pool of interesting values (small ints,
 * fds, pointers into a scratch area, NULL, kernel-half and non-canonical
 * addresses, wrapping lengths, random words). Calls that would
 * legitimately end or hang this program are skipped or tamed: exit,
 * signals to itself, pause/sigsuspend, fork and exec, rt_sigreturn,
 * signal handlers and masks, the FS base, and memory calls outside the
 * scratch area. Pipes are made non-blocking so no read waits. Calls that
 * wait (sleeps, polls, selects, futex waits) are made with any arguments:
 * an interval timer's SIGALRM (no SA_RESTART) ends them with EINTR.
 * Usage: sysfuzz SEED CASES. Prints "sysfuzz done" and exits 0. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

static uint64_t s;
static uint64_t rnd(void) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

static void on_alarm(int sig) { (void)sig; }

#define SCRATCH_LEN (64 * 4096UL)
static char *scratch;

/* A random address inside the scratch area (page aligned or not). */
static uint64_t in_scratch(void) {
    uint64_t off = rnd() % SCRATCH_LEN;
    if (rnd() & 1) off &= ~4095UL;
    return (uint64_t)scratch + off;
}

static uint64_t arg(void) {
    switch (rnd() % 16) {
    case 0: return 0;
    case 1: return rnd() % 8;
    case 2: return 3 + rnd() % 8; /* an fd we may own */
    case 3: return (uint64_t)-1;
    case 4: return in_scratch();
    case 5: return in_scratch();
    case 6: return 0xffff800000000000UL + (rnd() % 0x10000);
    case 7: return 0x8000000000000000UL | rnd();
    case 8: return -(rnd() % 0x10000);
    case 9: return rnd() % 0x10000;
    case 10: return 1UL << (rnd() % 64);
    case 11: return 4096 * (rnd() % 64);
    case 12: return 0x7ffffffff000UL - 4096 * (rnd() % 4);
    default: return rnd();
    }
}

/* Whether to skip `nr`, and taming of the others' arguments. */
static int tame(long nr, uint64_t *a) {
    switch (nr) {
    case 60: case 231:           /* exit, exit_group */
    case 62: case 200: case 234: /* kill, tkill, tgkill */
    case 129: case 297: case 424:/* sigqueue, pidfd_send_signal */
    case 34: case 130: case 128: /* pause, rt_sigsuspend, rt_sigtimedwait */
    case 232: case 281: case 441:/* epoll_wait, epoll_pwait(2) */
    case 14:                     /* rt_sigprocmask (SIGALRM must get through) */
    case 37: case 38:            /* alarm, setitimer (the interval timer) */
    case 222: case 223: case 224: case 225: case 226: /* timer_* */
    case 56: case 57: case 58: case 435: /* clone, fork, vfork, clone3 */
    case 59: case 322:           /* execve, execveat */
    case 15:                     /* rt_sigreturn */
    case 13:                     /* rt_sigaction (handlers at random places) */
    case 158:                    /* arch_prctl (the FS base holds the TLS) */
    case 317:                    /* seccomp */
    case 247:                    /* waitid */
    case 169:                    /* reboot */
    case 101:                    /* ptrace */
        return 1;
    }
    switch (nr) {
    case 0: case 17: case 19: case 295: /* reads: never from stdin */
        if (a[0] == 0) a[0] = 3;
        break;
    case 1: case 18: case 20: case 296: case 40: /* writes: not stdout/stderr */
        if (a[0] == 1 || a[0] == 2) a[0] = 3;
        break;
    case 3: case 16: case 72: /* close, ioctl, fcntl: keep 0-2 */
        if (a[0] < 3) a[0] = 3 + a[0];
        if (nr == 72 && a[1] == 4) a[1] = 3; /* no F_SETFL: pipes stay non-blocking */
        break;
    case 33: case 292: /* dup2, dup3: keep 0-2 */
        if (a[1] < 3) a[1] = 3 + a[1];
        break;
    case 22: /* pipe -> non-blocking pipe2 */
        a[1] = O_NONBLOCK;
        return -293;
    case 293:
        a[1] |= O_NONBLOCK;
        break;
    case 9: /* mmap: a fixed one only inside the scratch area */
        if (a[3] & (MAP_FIXED | 0x100000)) a[0] = in_scratch();
        break;
    case 10: case 11: case 28: /* mprotect, munmap, madvise: the scratch area */
        if (rnd() % 4) {
            a[0] = in_scratch();
            a[1] %= 2 * SCRATCH_LEN;
        } else if (a[0] < 0x800000000000UL) {
            /* From the scratch area with a wrapping length. */
            a[0] = (uint64_t)scratch;
            a[1] = -(rnd() % 0x10000) | 0x8000000000000000UL;
        }
        break;
    case 25: /* mremap: from and to the scratch area */
        a[0] = in_scratch();
        a[1] %= 2 * SCRATCH_LEN;
        a[2] %= 2 * SCRATCH_LEN;
        a[4] = in_scratch();
        break;
    case 12: /* brk: query, or far away (never shrink the heap) */
        a[0] = (rnd() & 1) ? 0 : 0xffff800000000000UL;
        break;
    case 160: case 302: /* setrlimit, prlimit64: leave the limits */
        return 1;
    case 112: case 109: /* setsid, setpgid: fine */
        break;
    case 271: /* ppoll: no temporary mask (it could block SIGALRM) */
        a[3] = 0;
        break;
    case 270: /* pselect6: likewise */
        a[5] = 0;
        break;
    }
    return 0;
}

int main(int argc, char **argv) {
    uint64_t seed = argc > 1 ? strtoull(argv[1], 0, 0) : 1;
    long cases = argc > 2 ? strtol(argv[2], 0, 0) : 1000;
    s = seed * 0x9e3779b97f4a7c15ULL | 1;
    signal(SIGPIPE, SIG_IGN);
    /* Every 5 ms a SIGALRM ends whatever call waits. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, 0);
    struct itimerval it = {{0, 5000}, {0, 5000}};
    setitimer(ITIMER_REAL, &it, 0);
    scratch = mmap(0, SCRATCH_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (scratch == MAP_FAILED) return 99;
    /* Some fds to play with: 3 /dev/null, 4 /dev/zero, 5-6 a pipe. */
    open("/dev/null", O_RDWR);
    open("/dev/zero", O_RDONLY);
    int p[2];
    if (pipe2(p, O_NONBLOCK) != 0) return 98;
    long done = 0;
    for (long i = 0; i < cases; i++) {
        long nr = rnd() % 16 == 0 ? (long)(rnd() % 0x100000) : (long)(rnd() % 461);
        uint64_t a[6];
        for (int k = 0; k < 6; k++) a[k] = arg();
        int t = tame(nr, a);
        if (t > 0) continue;
        if (t < 0) nr = -t;
        syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        done++;
    }
    printf("sysfuzz done: seed %llu, %ld calls\n", (unsigned long long)seed, done);
    return 0;
}
