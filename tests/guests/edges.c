/* Edge cases of memory calls, instructions and user pointers (issue 12,
 * items 12 and 17). Each mode prints what it sees; the test compares the
 * output and exit status with a native run. Usage: edges MODE. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef MREMAP_MAYMOVE
#define MREMAP_MAYMOVE 1
#endif
#ifndef MREMAP_FIXED
#define MREMAP_FIXED 2
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define T(x)                                                              \
    do {                                                                  \
        errno = 0;                                                        \
        long r_ = (long)(x);                                              \
        printf("%-58s = %ld (errno %d)\n", #x, r_, r_ < 0 ? errno : 0);   \
    } while (0)

static char *anon(size_t len) {
    char *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(99);
    }
    return p;
}

static int mm(void) {
    char *a = anon(4 * 4096);
    volatile char stack_probe[64];
    memset(a, 7, 4 * 4096);
    /* Wrapping lengths and out-of-range addresses. */
    T(syscall(SYS_munmap, a, 0xfffffffffffdac73UL));
    T(syscall(SYS_munmap, a, -4096L));
    T(syscall(SYS_madvise, a, -4096L, MADV_DONTNEED));
    T(syscall(SYS_madvise, a, -1L, MADV_DONTNEED));
    T(syscall(SYS_munmap, 0xffff800000000000UL, 4096));
    T(syscall(SYS_munmap, 0x7ffffffff000UL, 4096));
    T(syscall(SYS_munmap, 0x7ffffffff000UL, 0));
    T(syscall(SYS_munmap, a + 1, 4096));
    T(syscall(SYS_munmap, a, 0));
    stack_probe[0] = 1; /* the stack is still there */
    printf("stack ok %d, a[0] %d\n", stack_probe[0], a[0]);
    /* mprotect. */
    T(syscall(SYS_mprotect, a, 4096, 0xff));
    T(syscall(SYS_mprotect, a, 4096, PROT_READ | 8));
    T(syscall(SYS_mprotect, a + 1, 4096, PROT_READ));
    T(syscall(SYS_mprotect, a, -4096L, PROT_READ));
    T(syscall(SYS_mprotect, a, 0, PROT_READ));
    T(syscall(SYS_mprotect, 0xffff800000000000UL, 4096, PROT_READ));
    T(syscall(SYS_mprotect, a, 4096, PROT_READ | PROT_WRITE));
    /* mmap. */
    T(syscall(SYS_mmap, a + 1, 4096, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0));
    T(syscall(SYS_mmap, 0x7ffffffff000UL, 4096, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0));
    T(syscall(SYS_mmap, 0xffff800000000000UL, 4096, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0));
    T(syscall(SYS_mmap, 0, 0, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    T(syscall(SYS_mmap, 0, -1L, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    T(syscall(SYS_mmap, 0, 1L << 47, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    T(syscall(SYS_mmap, 0, 4096, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 5));
    T(syscall(SYS_mmap, 0, 4096, 3, 0x26, -1, 0));
    T(syscall(SYS_mmap, 0, 4096, 3, MAP_PRIVATE, 999, 0));
    T(syscall(SYS_mmap, a, 4096, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0));
    T(syscall(SYS_mmap, 0, 4096, 0xff, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) > 0);
    T(syscall(SYS_mmap, a + 1, 4096, 3, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) > 0);
    /* madvise. */
    T(syscall(SYS_madvise, a, 4096, 77));
    T(syscall(SYS_madvise, a + 1, 4096, MADV_DONTNEED));
    T(syscall(SYS_madvise, a, 0, MADV_DONTNEED));
    T(syscall(SYS_madvise, 0xffff800000000000UL, 4096, MADV_DONTNEED));
    T(syscall(SYS_madvise, a, 4096, MADV_DONTNEED));
    printf("after DONTNEED a[0] %d a[4096] %d\n", a[0], a[4096]);
    /* mremap. */
    T(syscall(SYS_mremap, a, 4096, 8192, 8, 0));
    T(syscall(SYS_mremap, a, 4096, 8192, MREMAP_FIXED, 0x200000));
    T(syscall(SYS_mremap, a + 1, 4096, 8192, 0, 0));
    T(syscall(SYS_mremap, a, 4096, 0, 0, 0));
    T(syscall(SYS_mremap, 0x10000000UL, 8192, 4096, 0, 0));
    T(syscall(SYS_mremap, a, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, a + 1));
    T(syscall(SYS_mremap, a, 8192, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, a + 4096));
    T(syscall(SYS_mremap, a + 3 * 4096, 4096, 4096, 0, 0) == (long)(a + 3 * 4096));
    /* brk far away or into the kernel half leaves it unchanged. */
    long b0 = syscall(SYS_brk, 0);
    T(syscall(SYS_brk, 0xffff800000000000UL) == b0);
    T(syscall(SYS_brk, -4096L) == b0);
    return 0;
}

static const char msg80[] = "hello from int $0x80\n";

static int int80(void) {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(4), "b"(1), "c"(msg80), "d"(sizeof msg80 - 1) : "memory");
    printf("write = %ld\n", r);
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20) : "memory");
    printf("getpid matches %d\n", r == getpid());
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(45), "b"(0) : "memory");
    printf("brk(0) matches %d\n", r == syscall(SYS_brk, 0));
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(9999) : "memory");
    printf("unknown = %ld\n", r);
    fflush(stdout);
    __asm__ volatile("int $0x80" ::"a"(1), "b"(7) : "memory");
    return 1;
}

static int rsp(void) {
    long r;
    /* A syscall with a kernel-half RSP: Linux does not look at it. */
    __asm__ volatile("mov %%rsp, %%r12\n\tmovabs $0xffff800000001000, %%rsp\n\t"
                     "syscall\n\tmov %%r12, %%rsp"
                     : "=a"(r)
                     : "a"(SYS_getpid)
                     : "rcx", "r11", "r12", "memory");
    printf("getpid with a kernel-half rsp matches %d\n", r == getpid());
    return 0;
}

static int gs(void) {
    unsigned long v = 0xffff800000001000UL, g = 0;
    __asm__ volatile("wrgsbase %0" ::"r"(v));
    long p = syscall(SYS_getpid);
    __asm__ volatile("rdgsbase %0" : "=r"(g));
    printf("getpid ok %d, gs base %#lx\n", p > 0, g);
    v = 0;
    __asm__ volatile("wrgsbase %0" ::"r"(v));
    return 0;
}

static int straddle(void) {
    char *p = anon(2 * 4096);
    munmap(p + 4096, 4096);
    memset(p, 'a', 4096);
    p[4095] = '\n';
    fflush(stdout);
    /* The readable head is written. */
    long w = write(1, p + 4000, 200);
    printf("write straddling = %ld\n", w);
    T(write(1, p + 4096, 10));
    struct iovec iov[2] = {{p + 4090, 6}, {p + 4096, 10}};
    p[4090] = 'v';
    fflush(stdout);
    w = writev(1, iov, 2);
    printf("\nwritev straddling = %ld\n", w);
    /* What fits is read. */
    int z = open("/dev/zero", O_RDONLY);
    memset(p + 4000, 'b', 96);
    T(read(z, p + 4090, 10));
    printf("zeroed %d %d\n", p[4090] == 0 && p[4095] == 0, p[4089]);
    T(read(z, p + 4096, 10));
    struct iovec riov[2] = {{p + 4000, 4}, {p + 4094, 10}};
    T(readv(z, riov, 2));
    /* The whole buffer must be below the top of user space. */
    T(write(1, p, 0x7fffffffffffffffL));
    return 0;
}

static int null(void) {
    int fd = open("/dev/null", O_RDWR);
    T(syscall(SYS_write, fd, 0x10UL, 100));
    T(syscall(SYS_write, fd, 0x7ffffffff000UL, 100));
    T(syscall(SYS_read, fd, 0x10UL, 100));
    return 0;
}

static int enospc(void) {
    long r = write(1, "x", 1);
    fprintf(stderr, "write to a full device = %ld (errno %d)\n", r, r < 0 ? errno : 0);
    return 0;
}

/* mprotect's effect on pages already mapped: RW -> R keeps them readable
 * and makes every write fault (the vkernel write-protects its hardware
 * entries instead of dropping them), R -> RW lets writes through, R -> NONE
 * faults reads, RW -> RX faults writes. */
static sigjmp_buf protect_jb;
static void protect_segv(int s) {
    (void)s;
    siglongjmp(protect_jb, 1);
}
static int protect(void) {
    signal(SIGSEGV, protect_segv);
    size_t len = 1 << 20;
    char *p = anon(len);
    for (int i = 0; i < 256; i++) p[i * 4096] = (char)i;
    T(mprotect(p, len, PROT_READ));
    int sum = 0, faults = 0;
    for (int i = 0; i < 256; i++) sum += p[i * 4096];
    for (int i = 0; i < 256; i += 17) {
        if (!sigsetjmp(protect_jb, 1))
            p[i * 4096] = 1;
        else
            faults++;
    }
    printf("read-only: sum %d, %d of 16 writes faulted\n", sum, faults);
    T(mprotect(p, len, PROT_READ | PROT_WRITE));
    for (int i = 0; i < 256; i++) p[i * 4096] += 1;
    sum = 0;
    for (int i = 0; i < 256; i++) sum += p[i * 4096];
    printf("writable again: sum %d\n", sum);
    T(mprotect(p, len, PROT_NONE));
    faults = 0;
    if (!sigsetjmp(protect_jb, 1))
        sum += ((volatile char *)p)[8192];
    else
        faults++;
    printf("none: %d read faulted\n", faults);
    T(mprotect(p, len, PROT_READ | PROT_EXEC));
    faults = 0;
    if (!sigsetjmp(protect_jb, 1))
        p[4096] = 0;
    else
        faults++;
    printf("rx: %d write faulted, page 1 holds %d\n", faults, p[4096]);
    signal(SIGSEGV, SIG_DFL);
    return 0;
}

/* readlink as the exitless server answers it (links of the tree and
 * /proc/self/exe) and as the exit path does (errors, truncation). */
static int links(void) {
    char b[256];
    unlink("/tmp/edges_link");
    T(symlink("/etc/some-target", "/tmp/edges_link"));
    ssize_t n = 0;
    for (int i = 0; i < 100; i++) n = readlink("/proc/self/exe", b, sizeof b);
    b[n > 0 ? n : 0] = 0;
    printf("exe: %zd bytes, ends in %s\n", n > 0 ? (ssize_t)1 : n, strrchr(b, '/'));
    n = readlink("/tmp/edges_link", b, sizeof b);
    b[n > 0 ? n : 0] = 0;
    printf("link: %zd %s\n", n, b);
    n = readlink("/tmp/edges_link", b, 5);
    printf("short: %zd %.5s\n", n, b);
    T(readlink("/tmp", b, sizeof b));
    T(readlink("/nonexistent", b, sizeof b));
    T(readlink("/proc/self/exe", b, 0));
    int d = open("/tmp", O_RDONLY | O_DIRECTORY);
    n = readlinkat(d, "edges_link", b, sizeof b);
    b[n > 0 ? n : 0] = 0;
    printf("at: %zd %s\n", n, b);
    close(d);
    T(unlink("/tmp/edges_link"));
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, 0, _IONBF, 0);
    const char *m = argc > 1 ? argv[1] : "";
    if (!strcmp(m, "mm")) return mm();
    if (!strcmp(m, "int80")) return int80();
    if (!strcmp(m, "rsp")) return rsp();
    if (!strcmp(m, "gs")) return gs();
    if (!strcmp(m, "straddle")) return straddle();
    if (!strcmp(m, "null")) return null();
    if (!strcmp(m, "enospc")) return enospc();
    if (!strcmp(m, "protect")) return protect();
    if (!strcmp(m, "links")) return links();
    fprintf(stderr, "usage: edges mm|int80|rsp|gs|straddle|null|enospc|protect|links\n");
    return 2;
}
