/* File-backed mmap: private copy-on-write, shared read-only, mprotect,
 * partial munmap, MAP_FIXED over a file mapping, the zero tail of the last
 * page and SIGBUS past it. Usage: filemap FILE (at least 2 pages + a bit,
 * not a page multiple). Prints one line per check; the output must match
 * native Linux. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static sigjmp_buf env;

static void on_bus(int sig) { siglongjmp(env, sig); }

static unsigned sum(const unsigned char *p, size_t n) {
    unsigned s = 0;
    for (size_t i = 0; i < n; i++)
        s = s * 31 + p[i];
    return s;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        perror("open");
        return 1;
    }
    size_t size = st.st_size, pg = 4096;
    size_t len = (size + pg - 1) / pg * pg;
    unsigned char buf[3 * 4096];
    ssize_t got = pread(fd, buf, size < sizeof buf ? size : sizeof buf, 0);
    printf("size %zu read %zd sum %u\n", size, got, sum(buf, got));

    unsigned char *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        perror("mmap private");
        return 1;
    }
    printf("private sum %u eq %d\n", sum(p, got), memcmp(p, buf, got) == 0);
    /* The tail of the last page reads as zero. */
    int zero = 1;
    for (size_t i = size; i < len; i++)
        zero &= p[i] == 0;
    printf("tail zero %d\n", zero);
    /* A private write is copy-on-write: a second mapping still sees the file. */
    p[1] = 'X';
    unsigned char *q = mmap(0, len, PROT_READ, MAP_SHARED, fd, 0);
    printf("shared ro %s\n", q == MAP_FAILED ? strerror(errno) : "ok");
    if (q != MAP_FAILED)
        printf("cow %c %d\n", p[1], q[1] == buf[1]);
    /* Shared writable mapping of a read-only fd, and mprotect to write. */
    void *w = mmap(0, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("shared rw %s\n", w == MAP_FAILED ? strerror(errno) : "mapped");
    if (q != MAP_FAILED)
        printf("mprotect shared rw %s\n",
               mprotect(q, pg, PROT_READ | PROT_WRITE) ? strerror(errno) : "ok");
    /* mprotect of a private file mapping: read-only, then back. */
    printf("mprotect private ro %d\n", mprotect(p, pg, PROT_READ));
    printf("mprotect private rw %d\n", mprotect(p, pg, PROT_READ | PROT_WRITE));
    p[2] = 'Y';
    printf("after %c%c\n", p[1], p[2]);
    /* Partial munmap, then MAP_FIXED of another offset over the hole. */
    printf("munmap middle %d\n", munmap(p + pg, pg));
    unsigned char *f = mmap(p + pg, pg, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 2 * pg);
    printf("fixed %d same %d\n", f == p + pg, f != MAP_FAILED && memcmp(f, buf + 2 * pg, size - 2 * pg < pg ? size - 2 * pg : pg) == 0);
    printf("first page kept %c\n", p[1]);
    /* Past the last page of the file: SIGBUS. */
    unsigned char *big = mmap(0, len + 2 * pg, PROT_READ, MAP_PRIVATE, fd, 0);
    signal(SIGBUS, on_bus);
    int sig = sigsetjmp(env, 1);
    if (sig == 0) {
        volatile unsigned char c = big[len + 10];
        printf("no fault %d\n", c);
    } else {
        printf("past eof signal %d\n", sig);
    }
    printf("last page ok %d\n", big[len - 1]);
    /* A file mapping at an offset past the end: mapping works, touch faults. */
    unsigned char *past = mmap(0, pg, PROT_READ, MAP_PRIVATE, fd, len + pg);
    printf("map past end %s\n", past == MAP_FAILED ? strerror(errno) : "ok");
    sig = sigsetjmp(env, 1);
    if (sig == 0 && past != MAP_FAILED)
        printf("no fault %d\n", past[0]);
    else
        printf("past end signal %d\n", sig);
    /* A write-only fd cannot be mapped. */
    printf("bad fd %s\n",
           mmap(0, pg, PROT_READ, MAP_PRIVATE, 1000, 0) == MAP_FAILED ? strerror(errno) : "mapped");
    return 0;
}
