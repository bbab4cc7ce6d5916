/* Syscall patching (linux::mm::patch) against programs that do what a
 * native program may: one check per case, each printing a deterministic
 * line, so the output under the vkernel must equal the native one.
 *   a: rewrite the immediate of a `mov eax, N; syscall` site (in a JIT
 *      page and in the program's own text) through mprotect;
 *   b: a `b8 N 0f 05` that is the tail of a longer instruction (lea; a
 *      store whose displacement ends in b8);
 *   c: unmap a JIT page with a site, map data there, then ARCH_SET_GS;
 *   d: MAP_FIXED over the free space below the text (where the vkernel
 *      keeps its stub page), then call the sites again;
 *   e: reload the GS selector, then call; read %gs:0, %gs:0x50, %gs:0x1000
 *      (native: SIGSEGV);
 *   f: sites with the number in a register (hop sites, mm::hop): live data
 *      in the red zone across the call, a branch to the `syscall` itself,
 *      and glibc's or musl's read() of a pipe one byte at a time;
 *   g: read() of a pipe through the C library (a hop site with glibc)
 *      blocks, then is woken by a byte and interrupted by SIGCHLD (its
 *      handler without SA_RESTART) at once, as a shell reading a command
 *      substitution: every byte arrives, every interrupted read says EINTR.
 * Usage: patch_hostile [CHECKS [ITERS]] (CHECKS: letters, default abcdefg;
 * each runs in a child, then all of them once more in this process). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define ARCH_SET_GS 0x1001

static long iters = 1000;

/* Sites in the text: nops (no byte before the mov that could make it the
 * tail of something), `mov eax, N; syscall; ret`. */
long text_site(void);     /* getpid, its immediate rewritten to getppid by (a) */
long text_site2(void);    /* getppid */
long lea_site(void);      /* mov eax, 39; lea edi, [rax + 39]; syscall */
long disp_site(long rdi); /* mov eax, 39; movl $39, -0x472d2e30(%rdi); syscall */
__asm__(".text\n"
        ".p2align 6\n"
        ".globl text_site\n"
        "text_site:\n"
        "  nop; nop; nop; nop; nop\n"
        "  mov $39, %eax\n"
        "  syscall\n"
        "  ret\n"
        ".p2align 4\n"
        ".globl text_site2\n"
        "text_site2:\n"
        "  nop; nop; nop; nop; nop\n"
        "  mov $110, %eax\n"
        "  syscall\n"
        "  ret\n"
        ".p2align 4\n"
        ".globl lea_site\n"
        "lea_site:\n"
        "  mov $39, %eax\n"
        "  lea 0x27(%rax), %edi\n" /* 8d b8 27 00 00 00 */
        "  syscall\n"
        "  ret\n"
        ".p2align 4\n"
        ".globl disp_site\n"
        "disp_site:\n"
        "  mov $39, %eax\n"
        /* movl $0x27, -0x472d2e30(%rdi): c7 87 d0 d1 d2 b8 27 00 00 00 */
        "  .byte 0xc7, 0x87, 0xd0, 0xd1, 0xd2, 0xb8, 0x27, 0x00, 0x00, 0x00\n"
        "  syscall\n"
        "  ret\n");

/* The code of a JIT site: nops, mov eax, 39; syscall; ret. */
static const unsigned char jit_code[] = {0x90, 0x90, 0x90, 0x90, 0x90, 0xb8, 39, 0,
                                         0,    0,    0x0f, 0x05, 0xc3};
#define JIT_OFF 0x40 /* the code's offset in its page */

static long count(long (*f)(void), long want) {
    long ok = 0;
    for (long i = 0; i < iters; i++) ok += f() == want;
    return ok;
}

static void *jit_page(void) {
    unsigned char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    memset(p, 0xcc, 4096);
    memcpy(p + JIT_OFF, jit_code, sizeof jit_code);
    if (mprotect(p, 4096, PROT_READ | PROT_EXEC) != 0) return NULL;
    return p;
}

static void set_imm(unsigned char *site, int nr) {
    /* site points at b8; only the immediate changes. */
    memcpy(site + 1, &nr, 4);
}

static void check_a(void) {
    long pid = getpid(), ppid = getppid();
    unsigned char *p = jit_page();
    if (!p) {
        printf("a: jit page failed\n");
        return;
    }
    long (*f)(void) = (long (*)(void))(p + JIT_OFF);
    long before = count(f, pid);
    mprotect(p, 4096, PROT_READ | PROT_WRITE);
    set_imm(p + JIT_OFF + 5, 110);
    mprotect(p, 4096, PROT_READ | PROT_EXEC);
    long after = count(f, ppid);
    printf("a: jit getpid %ld/%ld, rewritten to getppid %ld/%ld\n", before, iters, after, iters);
    munmap(p, 4096);

    /* The same in the program's own text (two pages: the site may sit
     * near the end of one). */
    uintptr_t pg = (uintptr_t)text_site & ~(uintptr_t)4095;
    before = count(text_site, pid);
    if (mprotect((void *)pg, 8192, PROT_READ | PROT_WRITE | PROT_EXEC) != 0) {
        printf("a: mprotect text failed\n");
        return;
    }
    set_imm((unsigned char *)text_site + 5, 110);
    long rwx = count(text_site, ppid);
    mprotect((void *)pg, 8192, PROT_READ | PROT_EXEC);
    after = count(text_site, ppid);
    printf("a: text getpid %ld/%ld, rewritten %ld/%ld (rwx) %ld/%ld (rx)\n", before, iters, rwx,
           iters, after, iters);
}

static volatile int target;

static void check_b(void) {
    long pid = getpid(), ok = 0;
    for (long i = 0; i < iters; i++) ok += lea_site() == pid;
    printf("b: lea tail %ld/%ld\n", ok, iters);
    ok = 0;
    long rdi = (long)&target + 0x472d2e30;
    for (long i = 0; i < iters; i++) {
        target = 0;
        ok += disp_site(rdi) == pid && target == 39;
    }
    printf("b: displacement tail %ld/%ld\n", ok, iters);
}

static void check_c(void) {
    long pid = getpid();
    unsigned char *p = jit_page();
    if (!p) {
        printf("c: jit page failed\n");
        return;
    }
    long ok = count((long (*)(void))(p + JIT_OFF), pid);
    munmap(p, 4096);
    unsigned char *d = mmap(p, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (d != p) {
        printf("c: remap failed\n");
        return;
    }
    memset(d, 0x5a, 4096);
    static long gsvar[2] = {1, 2};
    long r = syscall(SYS_arch_prctl, ARCH_SET_GS, gsvar);
    int bad = 0;
    for (int i = 0; i < 4096; i++) bad += d[i] != 0x5a;
    printf("c: jit %ld/%ld, set gs %ld, data bytes changed %d\n", ok, iters, r, bad);
}

extern char __executable_start[];

static void check_d(void) {
    long pid = getpid(), ppid = getppid();
    long a = count(text_site2, ppid), b = 0;
    for (long i = 0; i < iters; i++) b += getpid() == pid;
    /* 1 MiB just below the program: free natively. */
    uintptr_t start = ((uintptr_t)__executable_start & ~(uintptr_t)4095) - (1 << 20);
    void *m = mmap((void *)start, 1 << 20, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (m != (void *)start) {
        printf("d: map below text failed\n");
        return;
    }
    memset(m, 0x5a, 1 << 20);
    long c = count(text_site2, ppid), e = 0;
    for (long i = 0; i < iters; i++) e += getpid() == pid;
    munmap(m, 1 << 20);
    long f = count(text_site2, ppid);
    printf("d: before %ld %ld, over the space below the text %ld %ld, after unmap %ld /%ld\n", a,
           b, c, e, f, iters);
}

static sigjmp_buf env;

static void on_segv(int sig) {
    siglongjmp(env, sig);
}

static int gs_read(long off) {
    volatile long v = 0;
    int sig = sigsetjmp(env, 1);
    if (sig == 0) {
        switch (off) {
        case 0: __asm__ volatile("mov %%gs:0, %0" : "=r"(v)); break;
        case 0x50: __asm__ volatile("mov %%gs:0x50, %0" : "=r"(v)); break;
        default: __asm__ volatile("mov %%gs:0x1000, %0" : "=r"(v)); break;
        }
    }
    (void)v;
    return sig;
}

static void check_e(void) {
    long pid = getpid(), ppid = getppid();
    long a = count(text_site2, ppid);
    /* Reload GS with its own selector (0: Intel clears the base). */
    __asm__ volatile("mov %%gs, %%ax\n\tmov %%ax, %%gs" : : : "rax");
    long b = count(text_site2, ppid), c = 0;
    for (long i = 0; i < iters; i++) c += getpid() == pid;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sigaction(SIGSEGV, &sa, NULL);
    int s0 = gs_read(0), s1 = gs_read(0x50), s2 = gs_read(0x1000);
    long d = count(text_site2, ppid);
    printf("e: %ld/%ld, after gs reload %ld %ld, gs:0 gs:0x50 gs:0x1000 signals %d %d %d, "
           "then %ld\n",
           a, iters, b, c, s0, s1, s2, d);
}

/* Hop sites: `syscall` with the number from a register, a `ret` and
 * padding after it. rz_call stores a pattern at -8 and -128(%rsp) (the red
 * zone, below the stack pointer), makes call NR and returns its result if
 * the pattern survived (else -12345); jt_call branches to its `syscall`. */
long rz_call(long nr);
long jt_call(long nr);
__asm__(".text\n"
        ".p2align 4\n"
        ".globl rz_call\n"
        "rz_call:\n"
        "  movabs $0x1122334455667788, %rcx\n"
        "  mov %rcx, -8(%rsp)\n"
        "  mov %rcx, -128(%rsp)\n"
        "  mov %rdi, %rax\n"
        "  syscall\n"
        "  movabs $0x1122334455667788, %rdx\n"
        "  cmp %rdx, -8(%rsp)\n"
        "  jne 1f\n"
        "  cmp %rdx, -128(%rsp)\n"
        "  jne 1f\n"
        "  ret\n"
        "  .fill 16, 1, 0xcc\n"
        "1:\n"
        "  mov $-12345, %rax\n"
        "  ret\n"
        ".p2align 4\n"
        ".globl jt_call\n"
        "jt_call:\n"
        "  mov %rdi, %rax\n"
        "  jmp 2f\n"
        "  ud2\n"
        "2:\n"
        "  syscall\n"
        "  ret\n"
        "  .fill 16, 1, 0xcc\n");

static void check_f(void) {
    long ppid = getppid(), rz = 0, jt = 0, sum = 0, got = 0;
    for (long i = 0; i < iters; i++) {
        rz += rz_call(SYS_getppid) == ppid;
        jt += jt_call(SYS_getppid) == ppid;
    }
    int p[2];
    if (pipe(p) != 0) {
        printf("f: pipe failed\n");
        return;
    }
    long n = iters < 4096 ? iters : 4096;
    for (long i = 0; i < n; i++) {
        unsigned char b = (unsigned char)i;
        if (write(p[1], &b, 1) != 1) break;
    }
    for (long i = 0; i < n; i++) {
        unsigned char b;
        if (read(p[0], &b, 1) != 1) break;
        sum += b;
        got++;
    }
    close(p[0]);
    close(p[1]);
    printf("f: red zone kept %ld/%ld, branch to syscall %ld/%ld, read %ld bytes summing %ld\n",
           rz, iters, jt, iters, got, sum);
}

static volatile sig_atomic_t chld_seen;

static void on_chld(int sig) {
    (void)sig;
    chld_seen++;
}

/* As a shell reading a command substitution: a child writes a byte and
 * exits; the parent's read of the pipe (blocked) is woken by the byte and
 * interrupted by SIGCHLD, whose handler has no SA_RESTART. */
static void check_g(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_chld; /* no SA_RESTART: a waiting read says EINTR */
    sigaction(SIGCHLD, &sa, NULL);
    long n = iters < 300 ? iters : 300, got = 0, odd = 0;
    for (long i = 0; i < n; i++) {
        int p[2];
        if (pipe(p) != 0) {
            printf("g: pipe failed\n");
            return;
        }
        fflush(stdout);
        pid_t c = fork();
        if (c == 0) {
            unsigned char b = (unsigned char)i;
            _exit(write(p[1], &b, 1) == 1 ? 0 : 1);
        }
        close(p[1]);
        for (;;) {
            unsigned char b;
            ssize_t r = read(p[0], &b, 1);
            if (r == 1) {
                got += b == (unsigned char)i;
                continue;
            }
            if (r == 0) break;
            if (errno != EINTR) {
                fprintf(stderr, "g: read %zd errno %d\n", r, errno);
                odd++;
                break;
            }
        }
        close(p[0]);
        int st = 0;
        while (waitpid(c, &st, 0) < 0 && errno == EINTR) {
        }
        if (st != 0) fprintf(stderr, "g: child status %#x\n", st);
        odd += st != 0;
    }
    signal(SIGCHLD, SIG_DFL);
    printf("g: %ld/%ld bytes, %ld odd returns\n", got, n, odd);
}

/* Run a check in a child (c and e change GS; each starts clean). */
static void in_child(void (*f)(void)) {
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        f();
        fflush(stdout);
        _exit(0);
    }
    int st = 0;
    waitpid(c, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        printf("child died: %s %d\n", WIFSIGNALED(st) ? "signal" : "status",
               WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

int main(int argc, char **argv) {
    const char *checks = argc > 1 ? argv[1] : "abcdefg";
    if (argc > 2) iters = atol(argv[2]);
    void (*fns[7])(void) = {check_a, check_b, check_c, check_d, check_e, check_f, check_g};
    for (const char *c = checks; *c; c++)
        if (*c >= 'a' && *c <= 'g') in_child(fns[*c - 'a']);
    /* Once more in this process, in order (c and e, which change GS,
     * last). */
    for (const char *c = checks; *c; c++)
        if (*c >= 'a' && *c <= 'g' && *c != 'c' && *c != 'e') fns[*c - 'a']();
    if (strchr(checks, 'e')) check_e();
    if (strchr(checks, 'c')) check_c();
    return 0;
}
