/* Exercises brk, malloc, mmap/munmap/mprotect/mremap/madvise. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>

static uint64_t sum(const unsigned char *p, size_t n) {
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) s = s * 31 + p[i];
    return s;
}

int main(void) {
    /* brk */
    /* (musl's sbrk only takes 0: use the system call) */
    char *b0 = (char *)syscall(SYS_brk, 0);
    char *b1 = (char *)syscall(SYS_brk, b0 + 3 * 4096 + 100);
    if (b1 != b0 + 3 * 4096 + 100) { puts("brk failed"); return 1; }
    memset(b0, 0x5a, 3 * 4096 + 100);
    printf("brk shrink ok %d\n", (char *)syscall(SYS_brk, b0 + 4096) == b0 + 4096);
    /* malloc of many sizes */
    uint64_t total = 0;
    void *ptrs[200];
    for (int i = 0; i < 200; i++) {
        size_t n = (size_t)(i * 997) % 70000 + 1;
        ptrs[i] = malloc(n);
        memset(ptrs[i], i, n);
        total += sum(ptrs[i], n < 64 ? n : 64);
    }
    for (int i = 0; i < 200; i += 2) free(ptrs[i]);
    for (int i = 1; i < 200; i += 2) free(ptrs[i]);
    printf("malloc checksum %llu\n", (unsigned long long)total);
    /* big calloc (mmap-backed) must read as zero */
    size_t big = 8 << 20;
    unsigned char *z = calloc(big, 1);
    size_t nz = 0;
    for (size_t i = 0; i < big; i += 4096) nz += z[i] != 0;
    printf("calloc nonzero pages %zu\n", nz);
    free(z);
    /* anonymous mmap, munmap a hole, mprotect */
    size_t len = 64 * 4096;
    unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) { puts("mmap failed"); return 1; }
    for (size_t i = 0; i < len; i++) m[i] = (unsigned char)(i * 7);
    printf("mmap sum %llu\n", (unsigned long long)sum(m, len));
    printf("munmap %d\n", munmap(m + 8 * 4096, 4 * 4096));
    printf("mprotect %d\n", mprotect(m, 4096, PROT_READ));
    printf("read after mprotect %d\n", m[5]);
    /* mremap grow with move */
    unsigned char *r = mremap(m + 16 * 4096, 8 * 4096, 200 * 4096, MREMAP_MAYMOVE);
    if (r == MAP_FAILED) { puts("mremap failed"); return 1; }
    printf("mremap keeps data %d\n", r[0] == (unsigned char)(16 * 4096 * 7) && r[8 * 4096 - 1] == (unsigned char)((24 * 4096 - 1) * 7));
    r[150 * 4096] = 9;
    printf("mremap tail %d %d\n", r[150 * 4096], r[199 * 4096]);
    /* madvise DONTNEED zeroes private anonymous memory */
    r[0] = 1;
    madvise(r, 4096, MADV_DONTNEED);
    printf("after DONTNEED %d\n", r[0]);
    /* mmap hint and MAP_FIXED */
    unsigned char *f = mmap(r, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    printf("fixed same %d zero %d\n", f == r, f[0]);
    /* PROT_NONE then back */
    mprotect(f, 4096, PROT_NONE);
    mprotect(f, 4096, PROT_READ | PROT_WRITE);
    f[1] = 4;
    printf("reprotect %d\n", f[1]);
    return 0;
}
