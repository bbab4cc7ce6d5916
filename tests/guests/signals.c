/* Signal handlers: SIGSEGV, SIGFPE, SIGILL recovered with siglongjmp,
 * raise(), SA_SIGINFO details, sigaltstack, masks. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sigjmp_buf jb;
static volatile int got;
static volatile void *fault_addr;

static void on_fault(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    got = sig;
    fault_addr = si->si_addr;
    siglongjmp(jb, 1);
}

static void on_usr1(int sig) { got = sig; }

static volatile double dsink;
static int on_alt;
static char altstack[65536];

static void on_usr2(int sig) {
    char here;
    (void)sig;
    on_alt = &here >= altstack && &here < altstack + sizeof altstack;
    /* Clobber FPU state in the handler: the interrupted code must not see it. */
    dsink = dsink * 3.0 + 1.0;
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGFPE, &sa, NULL);
    sigaction(SIGILL, &sa, NULL);
    if (sigsetjmp(jb, 1) == 0) {
        *(volatile int *)16 = 1;
    }
    printf("SIGSEGV handled: %d addr 16: %d\n", got == SIGSEGV, fault_addr == (void *)16);
    got = 0;
    if (sigsetjmp(jb, 1) == 0) {
        volatile int z = 0;
        printf("%d\n", 7 / z);
    }
    printf("SIGFPE handled: %d\n", got == SIGFPE);
    got = 0;
    if (sigsetjmp(jb, 1) == 0) {
        __asm__ volatile("ud2");
    }
    printf("SIGILL handled: %d\n", got == SIGILL);
    signal(SIGUSR1, on_usr1);
    got = 0;
    raise(SIGUSR1);
    printf("raise SIGUSR1: %d\n", got == SIGUSR1);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigprocmask(SIG_BLOCK, &s, NULL);
    got = 0;
    raise(SIGUSR1);
    printf("blocked: %d\n", got);
    sigprocmask(SIG_UNBLOCK, &s, NULL);
    printf("unblocked: %d\n", got == SIGUSR1);
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0 };
    sigaltstack(&ss, NULL);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR2, &sa, NULL);
    volatile double x = 1.5;
    raise(SIGUSR2);
    printf("altstack: %d fpu kept: %d\n", on_alt, x * 2 == 3.0);
    signal(SIGUSR1, SIG_IGN);
    raise(SIGUSR1);
    printf("ignored ok\n");
    fflush(stdout);
    return 0;
}
