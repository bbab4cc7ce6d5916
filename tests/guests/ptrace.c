/* ptrace as strace and gdb use it, printed so that a native run and a
 * vkernel run can be compared line by line (no pids, no addresses):
 * TRACEME and the first SIGSTOP, syscall-entry/exit stops and the
 * numbers seen there, changing and skipping a call, PEEK/POKE and
 * process_vm_readv, GETREGS/SETREGS, signal-delivery-stops with the
 * signal suppressed or replaced, GETSIGINFO, fork and exec events with
 * an auto-attached child, PTRACE_EVENT_EXIT, SEIZE + INTERRUPT, a
 * tracee killed while stopped, and what gdb reads besides ptrace:
 * /proc/PID/auxv and /proc/PID/mem (its own and a stopped tracee's). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/auxv.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PTRACE_SEIZE
#define PTRACE_SEIZE 0x4206
#define PTRACE_INTERRUPT 0x4207
#endif
#ifndef PTRACE_EVENT_STOP
#define PTRACE_EVENT_STOP 128
#endif

static volatile long secret = 0x1234;
static char message[] = "read me through process_vm_readv";
static volatile int usr1, usr2;

static void on_usr1(int s) { (void)s; usr1++; }
static void on_usr2(int s) { (void)s; usr2++; }

static const char *describe(int st) {
    static char b[64];
    if (WIFEXITED(st)) snprintf(b, sizeof b, "exited %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) snprintf(b, sizeof b, "killed %d", WTERMSIG(st));
    else if (WIFSTOPPED(st))
        snprintf(b, sizeof b, "stopped %d event %d", WSTOPSIG(st), st >> 16);
    else snprintf(b, sizeof b, "status %#x", st);
    return b;
}

static int wait_for(pid_t p) {
    int st = 0;
    if (waitpid(p, &st, __WALL) != p) { perror("waitpid"); exit(1); }
    return st;
}

/* A child that is traced by its parent and stops itself first. */
static pid_t traced_child(void (*body)(void)) {
    pid_t p = fork();
    if (p == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        body();
        _exit(0);
    }
    int st = wait_for(p);
    printf("first stop: %s\n", describe(st));
    return p;
}

static void body_calls(void) {
    pid_t me = getpid();
    /* Changed by the tracer into getpid. */
    long r = syscall(SYS_getppid);
    /* Skipped by the tracer, which answers 42. */
    long u = syscall(SYS_getuid);
    printf("child: getppid became getpid: %s; getuid skipped: %ld; secret %#lx\n",
           r == me ? "yes" : "no", u, secret);
    fflush(stdout);
    _exit(7);
}

static void test_syscall_stops(void) {
    pid_t p = traced_child(body_calls);
    ptrace(PTRACE_SETOPTIONS, p, 0, PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXIT);
    /* Memory while it is stopped. */
    long w = ptrace(PTRACE_PEEKDATA, p, (void *)&secret, 0);
    printf("peek: %#lx\n", w);
    ptrace(PTRACE_POKEDATA, p, (void *)&secret, (void *)0x5678L);
    char buf[64] = {0};
    struct iovec l = {buf, sizeof message}, r = {message, sizeof message};
    long n = process_vm_readv(p, &l, 1, &r, 1, 0);
    printf("process_vm_readv: %ld \"%s\"\n", n, buf);
    int entries = 0, exits = 0, in_call = 0, getppid_seen = 0, getuid_seen = 0;
    for (;;) {
        ptrace(PTRACE_SYSCALL, p, 0, 0);
        int st = wait_for(p);
        if (WIFEXITED(st) || WIFSIGNALED(st)) {
            printf("end: %s\n", describe(st));
            break;
        }
        if (st >> 16 == PTRACE_EVENT_EXIT) {
            unsigned long msg = 0;
            ptrace(PTRACE_GETEVENTMSG, p, 0, &msg);
            printf("exit event: status %s\n", describe((int)msg));
            continue;
        }
        if (WSTOPSIG(st) != (SIGTRAP | 0x80)) {
            printf("other stop: %s\n", describe(st));
            continue;
        }
        struct user_regs_struct regs;
        ptrace(PTRACE_GETREGS, p, 0, &regs);
        if (!in_call) {
            entries++;
            if ((long)regs.rax != -38) printf("entry rax %lld\n", (long long)regs.rax);
            if (regs.orig_rax == SYS_getppid) {
                getppid_seen = 1;
                regs.orig_rax = SYS_getpid;
                ptrace(PTRACE_SETREGS, p, 0, &regs);
            } else if (regs.orig_rax == SYS_getuid) {
                getuid_seen = 1;
                regs.orig_rax = -1;
                regs.rax = 42;
                ptrace(PTRACE_SETREGS, p, 0, &regs);
            }
        } else {
            exits++;
        }
        in_call = !in_call;
    }
    printf("stops: entries %s exits, getppid %d, getuid %d\n",
           entries == exits + 1 ? "= 1 +" : "!=", getppid_seen, getuid_seen);
}

static void body_signals(void) {
    signal(SIGUSR1, on_usr1);
    signal(SIGUSR2, on_usr2);
    raise(SIGUSR1); /* suppressed by the tracer */
    raise(SIGUSR2); /* replaced by SIGUSR1 */
    printf("child: usr1 %d usr2 %d\n", usr1, usr2);
    fflush(stdout);
    _exit(0);
}

static void test_signals(void) {
    pid_t p = traced_child(body_signals);
    ptrace(PTRACE_CONT, p, 0, 0);
    int st = wait_for(p);
    siginfo_t si;
    ptrace(PTRACE_GETSIGINFO, p, 0, &si);
    printf("signal stop: %s, siginfo signo %d code %d\n", describe(st), si.si_signo, si.si_code);
    ptrace(PTRACE_CONT, p, 0, 0);
    st = wait_for(p);
    printf("signal stop: %s\n", describe(st));
    ptrace(PTRACE_CONT, p, 0, SIGUSR1);
    st = wait_for(p);
    printf("end: %s\n", describe(st));
}

static void body_fork(void) {
    pid_t g = fork();
    if (g == 0) _exit(3);
    int st = 0;
    waitpid(g, &st, 0);
    printf("child: grandchild %s\n", describe(st));
    fflush(stdout);
    char *argv[] = {"/proc/self/exe", "exec-child", NULL};
    execv("/proc/self/exe", argv);
    _exit(99);
}

static void test_fork_exec(void) {
    pid_t p = traced_child(body_fork);
    ptrace(PTRACE_SETOPTIONS, p, 0, PTRACE_O_TRACEFORK | PTRACE_O_TRACEEXEC);
    ptrace(PTRACE_CONT, p, 0, 0);
    /* The grandchild's stops race with its parent's: said at the end. */
    char gseen[256] = "";
    for (;;) {
        int st = 0;
        pid_t w = waitpid(-1, &st, __WALL);
        if (w < 0) break;
        if (w != p) {
            strcat(gseen, "grandchild: ");
            strcat(gseen, describe(st));
            strcat(gseen, "\n");
        } else {
            printf("%s: %s\n", w == p ? "child" : "?", describe(st));
        }
        if (WIFEXITED(st) || WIFSIGNALED(st)) {
            if (w == p) break;
            continue;
        }
        if (w == p && st >> 16 == PTRACE_EVENT_FORK) {
            unsigned long msg = 0;
            ptrace(PTRACE_GETEVENTMSG, p, 0, &msg);
            printf("fork event names a new pid: %s\n", msg > (unsigned long)p ? "yes" : "no");
        }
        ptrace(PTRACE_CONT, w, 0, 0);
    }
    printf("%s", gseen);
}

static const char rodata[] = "read-only";

/* AT_ENTRY and AT_PAGESZ as /proc/PID/auxv lists them. */
static void auxv_of(const char *path, unsigned long *entry, unsigned long *pagesz) {
    unsigned long v[2 * 64];
    int fd = open(path, O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, v, sizeof v);
    if (fd >= 0) close(fd);
    *entry = *pagesz = 0;
    for (ssize_t i = 0; i + 1 < n / 8; i += 2) {
        if (v[i] == AT_ENTRY) *entry = v[i + 1];
        if (v[i] == AT_PAGESZ) *pagesz = v[i + 1];
        if (v[i] == AT_NULL) {
            printf("auxv: ends with AT_NULL: %s\n", (i + 2) * 8 == n ? "yes" : "no");
            return;
        }
    }
    printf("auxv: no AT_NULL (%zd bytes)\n", n);
}

static void body_wait(void) {
    for (;;) pause();
}

static void test_proc_mem(void) {
    unsigned long entry, pagesz;
    auxv_of("/proc/self/auxv", &entry, &pagesz);
    printf("own auxv: AT_ENTRY %s getauxval, AT_PAGESZ %lu\n",
           entry == getauxval(AT_ENTRY) ? "=" : "!=", pagesz);
    int fd = open("/proc/self/mem", O_RDWR);
    long v = 0;
    ssize_t r = pread(fd, &v, sizeof v, (off_t)(unsigned long)&secret);
    printf("own mem: pread %zd, secret %#lx\n", r, v);
    /* Read-only data can be written through mem (a private copy). */
    r = pwrite(fd, "R", 1, (off_t)(unsigned long)rodata);
    const char *volatile ro = rodata;
    printf("own mem: pwrite into rodata %zd: \"%s\"\n", r, ro);
    errno = 0;
    r = pread(fd, &v, sizeof v, 4096);
    printf("own mem: unmapped address: %zd %s\n", r, strerror(errno));
    lseek(fd, (off_t)(unsigned long)message, SEEK_SET);
    char b[5] = {0};
    printf("own mem: lseek+read %zd \"%s\"\n", read(fd, b, 4), b);
    close(fd);

    pid_t p = traced_child(body_wait);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/auxv", (int)p);
    unsigned long centry, cpagesz;
    auxv_of(path, &centry, &cpagesz);
    printf("tracee auxv: AT_ENTRY %s ours\n", centry == entry ? "=" : "!=");
    snprintf(path, sizeof path, "/proc/%d/task/%d/mem", (int)p, (int)p);
    fd = open(path, O_RDWR);
    long nv = 0x4321;
    r = pwrite(fd, &nv, sizeof nv, (off_t)(unsigned long)&secret);
    long peek = ptrace(PTRACE_PEEKDATA, p, (void *)&secret, 0);
    v = 0;
    ssize_t r2 = pread(fd, &v, sizeof v, (off_t)(unsigned long)&secret);
    printf("tracee mem: pwrite %zd, peek %#lx, pread %zd %#lx\n", r, peek, r2, v);
    close(fd);
    kill(p, SIGKILL);
    printf("end: %s\n", describe(wait_for(p)));
}

static void test_seize_interrupt_kill(void) {
    pid_t p = fork();
    if (p == 0) {
        for (;;) usleep(1000);
    }
    long r = ptrace(PTRACE_SEIZE, p, 0, PTRACE_O_TRACESYSGOOD);
    printf("seize: %ld\n", r);
    ptrace(PTRACE_INTERRUPT, p, 0, 0);
    int st = wait_for(p);
    printf("interrupt: %s\n", describe(st));
    kill(p, SIGKILL);
    st = wait_for(p);
    printf("end: %s\n", describe(st));
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "exec-child") == 0) {
        printf("exec-child runs\n");
        return 5;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    test_syscall_stops();
    test_signals();
    test_fork_exec();
    test_seize_interrupt_kill();
    test_proc_mem();
    printf("ptrace on self: %s\n", ptrace(PTRACE_ATTACH, getpid(), 0, 0) < 0 ? "refused" : "allowed");
    return 0;
}
