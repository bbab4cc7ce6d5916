/* Large-page behaviour a vkernel must keep exact (tests/largepages_kvm.rs):
 * a first-touch sweep, copy-on-write after fork, a 4 KiB hole and a 4 KiB
 * read-only page inside a large page, mremap of part of one, brk growth.
 * Prints what it sees; the test compares it with a native run.
 * Usage: largepages [touch MIB | pages N | sieve N | rss MIB]: `pages`
 * touches N pages of one anonymous mmap wherever the kernel puts it (not
 * aligned); `rss` touches MIB MiB, says "touched", waits for a line on
 * stdin, unmaps them, says "freed" and waits for another line. */
#define _GNU_SOURCE
#include <alloca.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MIB (1UL << 20)
#define PG 4096UL

static sigjmp_buf jb;
static void on_segv(int s) { (void)s; siglongjmp(jb, 1); }

/* Does a read (or write) at p fault? */
static int faults(volatile char *p, int write) {
    if (sigsetjmp(jb, 1)) return 1;
    if (write) *p = 1; else (void)*p;
    return 0;
}

/* A 2 MiB aligned anonymous region of n MiB. */
static char *aligned(unsigned long n) {
    char *r = mmap(0, (n + 2) * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) { perror("mmap"); exit(1); }
    char *a = (char *)(((unsigned long)r + 2 * MIB - 1) & ~(2 * MIB - 1));
    return a;
}

static unsigned long sum(char *p, unsigned long len) {
    unsigned long s = 0;
    for (unsigned long i = 0; i < len; i += PG) s += (unsigned char)p[i] + (unsigned char)p[i + 100];
    return s;
}

static void touch(unsigned long mib) {
    char *a = aligned(mib);
    for (unsigned long i = 0; i < mib * MIB; i += PG) a[i] = (char)(i >> 12);
    unsigned long s = 0;
    for (unsigned long i = 0; i < mib * MIB; i += PG) s += (unsigned char)a[i];
    printf("touch %lu MiB: sum %lu\n", mib, s);
}

static void cow(void) {
    char *a = aligned(4);
    for (unsigned long i = 0; i < 4 * MIB; i += PG) a[i] = 'p';
    pid_t c = fork();
    if (c == 0) {
        /* The child writes part of one large page and all of another. */
        for (unsigned long i = 0; i < MIB; i += PG) a[i] = 'c';
        for (unsigned long i = 2 * MIB; i < 4 * MIB; i += PG) a[i] = 'c';
        int pc = 0, cc = 0;
        for (unsigned long i = 0; i < 4 * MIB; i += PG) { pc += a[i] == 'p'; cc += a[i] == 'c'; }
        printf("cow child: %d p, %d c\n", pc, cc);
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    int pc = 0;
    for (unsigned long i = 0; i < 4 * MIB; i += PG) pc += a[i] == 'p';
    /* The parent writes after the child is gone: its frames are its own. */
    a[5 * PG] = 'q';
    printf("cow parent: %d p, status %d, wrote %c\n", pc, WEXITSTATUS(st), a[5 * PG]);
}

static void holes(void) {
    char *a = aligned(2);
    for (unsigned long i = 0; i < 2 * MIB; i += PG) a[i] = 'x';
    if (munmap(a + 7 * PG, PG)) perror("munmap");
    if (mprotect(a + 9 * PG, PG, PROT_READ)) perror("mprotect");
    int x = 0;
    for (unsigned long i = 0; i < 2 * MIB; i += PG)
        if (i != 7 * PG) x += a[i] == 'x';
    printf("hole: %d pages kept, hole read faults %d, hole write faults %d\n", x,
           faults(a + 7 * PG, 0), faults(a + 7 * PG, 1));
    printf("mprotect: ro page write faults %d, read %c, neighbour write faults %d\n",
           faults(a + 9 * PG, 1), a[9 * PG], faults(a + 10 * PG, 1));
    /* Map the hole again: fresh zero page. */
    char *h = mmap(a + 7 * PG, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    printf("remap hole: %s, reads %d\n", h == a + 7 * PG ? "same place" : "moved", h[0]);
    /* Move the last 1 MiB of another large page elsewhere. */
    char *b = aligned(2);
    for (unsigned long i = 0; i < 2 * MIB; i += PG) b[i] = (char)('a' + (i >> 12) % 26);
    char *d = mmap(0, MIB, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *m = mremap(b + MIB, MIB, MIB, MREMAP_MAYMOVE | MREMAP_FIXED, d);
    if (m == MAP_FAILED) perror("mremap");
    unsigned long s1 = sum(b, MIB), s2 = sum(m, MIB);
    printf("mremap: kept %lu, moved %lu, old tail faults %d\n", s1, s2, faults(b + MIB, 0));
    /* MADV_DONTNEED of a whole large page reads zero again. */
    madvise(b, 2 * MIB, MADV_DONTNEED);
    printf("dontneed: %lu\n", sum(b, MIB));
}

static void heap(void) {
    char *p = (char *)syscall(SYS_brk, 0);
    if ((char *)syscall(SYS_brk, p + 8 * MIB) != p + 8 * MIB) { printf("brk failed\n"); return; }
    for (unsigned long i = 0; i < 8 * MIB; i += PG) p[i] = 7;
    printf("brk: sum %lu\n", sum(p, 8 * MIB));
    syscall(SYS_brk, p + 3 * MIB);
    syscall(SYS_brk, p + 5 * MIB);
    printf("brk again: sum %lu\n", sum(p, 5 * MIB));
}

/* Touch n pages of one plain anonymous mmap, one byte each, as a program
 * that allocates a large array does. */
static void pages(unsigned long n) {
    char *m = mmap(0, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) { perror("mmap"); exit(1); }
    for (unsigned long i = 0; i < n; i++) m[i * PG] = 1;
    unsigned long s = 0;
    for (unsigned long i = 0; i < n; i++) s += (unsigned char)m[i * PG];
    printf("pages %lu: sum %lu\n", n, s);
}

/* Use mib MiB of stack (alloca), touched from the top down as a deep
 * recursion would. */
static void stack(unsigned long mib) {
    volatile char *s = alloca(mib * MIB);
    unsigned long sum = 0;
    for (long i = (long)(mib * MIB) - 1; i >= 0; i -= PG) s[i] = 1;
    for (long i = (long)(mib * MIB) - 1; i >= 0; i -= PG) sum += s[i];
    printf("stack %lu MiB: sum %lu\n", mib, sum);
}

static void wait_line(void) {
    int c;
    while ((c = getchar()) != EOF && c != '\n') {}
}

static void rss(unsigned long mib) {
    char *m = mmap(0, mib * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) { perror("mmap"); exit(1); }
    for (unsigned long i = 0; i < mib * MIB; i += PG) m[i] = 1;
    printf("touched\n");
    wait_line();
    munmap(m, mib * MIB);
    printf("freed\n");
    wait_line();
}

/* Sieve of Eratosthenes over n bytes of malloc'd memory (a first-touch
 * heavy program): prints the number of primes below n. */
static void sieve(unsigned long n) {
    char *c = calloc(n, 1);
    if (!c) { perror("calloc"); exit(1); }
    unsigned long primes = 0;
    for (unsigned long i = 2; i < n; i++) {
        if (c[i]) continue;
        primes++;
        for (unsigned long j = i * i; j < n; j += i) c[j] = 1;
    }
    printf("sieve %lu: %lu primes\n", n, primes);
}

int main(int argc, char **argv) {
    signal(SIGSEGV, on_segv);
    signal(SIGBUS, on_segv);
    setvbuf(stdout, 0, _IOLBF, 0);
    if (argc > 2 && !strcmp(argv[1], "touch")) { touch(strtoul(argv[2], 0, 10)); return 0; }
    if (argc > 2 && !strcmp(argv[1], "pages")) { pages(strtoul(argv[2], 0, 10)); return 0; }
    if (argc > 2 && !strcmp(argv[1], "stack")) { stack(strtoul(argv[2], 0, 10)); return 0; }
    if (argc > 2 && !strcmp(argv[1], "rss")) { rss(strtoul(argv[2], 0, 10)); return 0; }
    if (argc > 2 && !strcmp(argv[1], "sieve")) { sieve(strtoul(argv[2], 0, 10)); return 0; }
    touch(16);
    cow();
    holes();
    heap();
    return 0;
}
