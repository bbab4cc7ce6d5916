/* FPU state across signals, fork, execve and vprocs sharing vCPUs: the
 * MXCSR and x87 rounding modes (callee-saved control state) and an XMM
 * value must follow each process exactly as on Linux.
 *   - a handler that changes the rounding mode does not leak it: the
 *     signal frame's FPU state is restored by rt_sigreturn;
 *   - a handler that edits the saved state in its ucontext
 *     (uc_mcontext.fpregs->mxcsr) changes the interrupted code's mode;
 *   - a forked child starts with its parent's mode; execve resets it;
 *   - several processes with different modes, yielding to each other,
 *     each keep their own. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

/* Rounding control, the same encoding in MXCSR (bits 13-14) and the x87
 * control word (bits 10-11). Plain asm: static glibc keeps fenv in libm. */
enum { RC_NEAREST, RC_DOWN, RC_UP, RC_ZERO };

static void set_round(int rc)
{
    unsigned m;
    unsigned short cw;
    __asm__ volatile("stmxcsr %0" : "=m"(m));
    m = (m & ~(3u << 13)) | ((unsigned)rc << 13);
    __asm__ volatile("ldmxcsr %0" ::"m"(m));
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    cw = (unsigned short)((cw & ~(3u << 10)) | ((unsigned)rc << 10));
    __asm__ volatile("fldcw %0" ::"m"(cw));
}

/* The SSE mode, or -1 when the x87 mode differs from it. */
static int get_round(void)
{
    unsigned m;
    unsigned short cw;
    __asm__ volatile("stmxcsr %0" : "=m"(m));
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    int sse = (m >> 13) & 3, x87 = (cw >> 10) & 3;
    return sse == x87 ? sse : -1;
}

static const char *mode_name(int m)
{
    switch (m) {
    case RC_NEAREST: return "nearest";
    case RC_UP: return "upward";
    case RC_DOWN: return "downward";
    case RC_ZERO: return "towardzero";
    }
    return "mixed";
}

/* 1/10 rounded by the current SSE mode, as raw bits (nearest rounds it
 * up, toward zero and downward truncate). */
static unsigned long long tenth(void)
{
    volatile double a = 1.0, b = 10.0;
    double q = a / b;
    unsigned long long u;
    memcpy(&u, &q, sizeof u);
    return u;
}

static void on_usr1(int sig)
{
    (void)sig;
    set_round(RC_UP);
    /* Clobber every XMM register the interrupted code could hold. */
    __asm__ volatile("pcmpeqd %%xmm0, %%xmm0\n\tpcmpeqd %%xmm8, %%xmm8\n\tpcmpeqd %%xmm15, %%xmm15"
                     ::: "xmm0", "xmm8", "xmm15");
}

static void on_usr2(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)si;
    ucontext_t *uc = ctx;
    /* RC bits 13-14 of MXCSR: 11 = toward zero. */
    uc->uc_mcontext.fpregs->mxcsr |= 3u << 13;
}

static void __attribute__((noreturn)) yielding_child(int mode, int rounds)
{
    set_round(mode);
    unsigned long long want = tenth();
    int ok = 1;
    for (int i = 0; i < rounds; i++) {
        sched_yield();
        ok &= get_round() == mode && tenth() == want;
    }
    _exit(ok ? 0 : 1);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && strcmp(argv[1], "execd") == 0) {
        printf("after execve: %s\n", mode_name(get_round()));
        return 0;
    }
    unsigned long long nearest = tenth();

    /* A handler's mode does not leak into the interrupted code. */
    signal(SIGUSR1, on_usr1);
    set_round(RC_DOWN);
    unsigned long long down = tenth();
    raise(SIGUSR1);
    printf("after handler: %s, same quotient %d\n", mode_name(get_round()), tenth() == down);

    /* A handler that edits its saved FPU state changes the mode. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr2;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR2, &sa, NULL);
    set_round(RC_NEAREST);
    raise(SIGUSR2);
    printf("after edited frame: sse rounding %s\n",
           tenth() == nearest ? "nearest" : "changed");
    set_round(RC_NEAREST);

    /* fork copies the mode; execve resets it. */
    set_round(RC_ZERO);
    pid_t p = fork();
    if (p == 0) {
        printf("child after fork: %s\n", mode_name(get_round()));
        char *av[] = {argv[0], "execd", NULL};
        execv("/proc/self/exe", av);
        _exit(127);
    }
    int st;
    waitpid(p, &st, 0);
    printf("parent still %s, child status %d\n", mode_name(get_round()), WEXITSTATUS(st));
    set_round(RC_NEAREST);

    /* Processes with different modes share the vCPUs. */
    int modes[] = {RC_UP, RC_DOWN, RC_ZERO, RC_NEAREST};
    pid_t kids[4];
    for (int i = 0; i < 4; i++) {
        kids[i] = fork();
        if (kids[i] == 0)
            yielding_child(modes[i], 2000);
    }
    int all = 1;
    for (int i = 0; i < 4; i++) {
        waitpid(kids[i], &st, 0);
        int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        printf("child %s: kept %d\n", mode_name(modes[i]), ok);
        all &= ok;
    }
    printf("all children kept their modes: %d; parent %s\n", all, mode_name(get_round()));
    return 0;
}
