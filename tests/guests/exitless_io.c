/* Exitless syscalls beyond the id calls: the read/write family, lseek,
 * fstat and fstatat on files (DIR1 and DIR2: host-backed and in memory
 * under the vkernel), pipes between two processes and two threads (a
 * reader blocked while the writer writes, a writer blocked while the
 * reader reads, a poll waiting), /dev/null and /dev/zero, brk, anonymous
 * mmap, rt_sigprocmask (a signal blocked, sent, then unblocked is
 * delivered at once), uname and getrandom. Prints a deterministic summary
 * (no addresses, inode numbers or times) and exits 0 when all is well.
 *
 * Usage: exitless_io all DIR1 DIR2
 *        exitless_io loop FAMILY N DIR   (N calls of one family, for
 *        counting what the server answered: null zero file pipe sock
 *        epoll mem map fd open lock sigaction kill sig) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

static int fails;
#define CHECK(c)                                                              \
    do {                                                                      \
        if (!(c)) {                                                           \
            printf("FAIL line %d: %s (errno %d)\n", __LINE__, #c, errno);     \
            fails++;                                                          \
        }                                                                     \
    } while (0)

static unsigned sum(const unsigned char *b, size_t n) {
    unsigned s = 0;
    for (size_t i = 0; i < n; i++) s = s * 31 + b[i];
    return s;
}

static void files(const char *dir, const char *label) {
    char path[512];
    snprintf(path, sizeof path, "%s/exitless-io.txt", dir);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    CHECK(fd >= 0);
    char line[16];
    for (int i = 0; i < 200; i++) {
        snprintf(line, sizeof line, "line %04d\n", i);
        CHECK(write(fd, line, 10) == 10);
    }
    CHECK(lseek(fd, 0, SEEK_CUR) == 2000);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 2000 && S_ISREG(st.st_mode));
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    unsigned char all[4096];
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, all + got, 7);
        CHECK(n >= 0);
        if (n <= 0) break;
        got += n;
    }
    CHECK(got == 2000);
    char b[16] = {0};
    CHECK(pread(fd, b, 10, 100) == 10 && memcmp(b, "line 0010\n", 10) == 0);
    CHECK(lseek(fd, 0, SEEK_CUR) == 2000);
    CHECK(pwrite(fd, "XXXX", 4, 0) == 4);
    CHECK(pread(fd, b, 10, 0) == 10 && memcmp(b, "XXXX 0000\n", 10) == 0);
    struct iovec wv[3] = {{"abc", 3}, {"", 0}, {"defgh\n", 6}};
    CHECK(writev(fd, wv, 3) == 9);
    char r1[4] = {0}, r2[6] = {0};
    struct iovec rv[2] = {{r1, 3}, {r2, 5}};
    CHECK(lseek(fd, 1996, SEEK_SET) == 1996);
    CHECK(readv(fd, rv, 2) == 8 && memcmp(r1, "199", 3) == 0 && memcmp(r2, "\nabcd", 5) == 0);
    CHECK(lseek(fd, -3, SEEK_END) == 2006);
    CHECK(read(fd, b, 16) == 3 && memcmp(b, "gh\n", 3) == 0);
    CHECK(read(fd, b, 16) == 0);
    int ap = open(path, O_WRONLY | O_APPEND);
    CHECK(ap >= 0);
    CHECK(write(ap, "tail\n", 5) == 5);
    CHECK(lseek(ap, 0, SEEK_CUR) == 2014);
    close(ap);
    CHECK(stat(path, &st) == 0 && st.st_size == 2014);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    CHECK(dfd >= 0);
    CHECK(fstatat(dfd, "exitless-io.txt", &st, 0) == 0 && st.st_size == 2014);
    CHECK(fstatat(fd, "", &st, AT_EMPTY_PATH) == 0 && st.st_size == 2014);
    CHECK(fstatat(dfd, "missing", &st, 0) == -1 && errno == ENOENT);
    CHECK(fstatat(dfd, ".", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode));
    /* Probes for files, as a loader's access and an interpreter's imports
     * make them: the answers, errors included. */
    CHECK(access(path, R_OK | W_OK) == 0);
    CHECK(access(path, X_OK) == -1 && errno == EACCES);
    CHECK(faccessat(dfd, "exitless-io.txt", F_OK, 0) == 0);
    CHECK(faccessat(dfd, ".", X_OK, AT_EACCESS) == 0);
    CHECK(syscall(SYS_faccessat2, dfd, "missing", F_OK, AT_SYMLINK_NOFOLLOW) == -1 && errno == ENOENT);
    CHECK(faccessat(dfd, "missing/deeper", R_OK, 0) == -1 && errno == ENOENT);
    CHECK(faccessat(dfd, "exitless-io.txt/child", R_OK, 0) == -1 && errno == ENOTDIR);
    CHECK(faccessat(dfd, "exitless-io.txt", 8, 0) == -1 && errno == EINVAL);
    CHECK(open("/no/such/dir/file", O_RDONLY) == -1 && errno == ENOENT);
    CHECK(openat(dfd, "missing", O_RDONLY | O_CLOEXEC) == -1 && errno == ENOENT);
    CHECK(stat("/no/such/file", &st) == -1 && errno == ENOENT);
    close(dfd);
    CHECK(write(fd + 100, "x", 1) == -1 && errno == EBADF);
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    got = read(fd, all, sizeof all);
    printf("files %s: size %zu sum %08x\n", label, got, sum(all, got));
    close(fd);
    unlink(path);
}

static void devices(void) {
    int null = open("/dev/null", O_WRONLY);
    int zero = open("/dev/zero", O_RDONLY);
    CHECK(null >= 0 && zero >= 0);
    int ok = 0;
    for (int i = 0; i < 10000; i++) ok += write(null, "x", 1) == 1;
    struct iovec v[2] = {{"ab", 2}, {"cde", 3}};
    CHECK(writev(null, v, 2) == 5);
    unsigned char z[8192];
    memset(z, 0xff, sizeof z);
    CHECK(read(zero, z, sizeof z) == (ssize_t)sizeof z);
    int zeros = 1;
    for (size_t i = 0; i < sizeof z; i++) zeros &= z[i] == 0;
    for (int i = 0; i < 1000; i++) ok += read(zero, z, 1) == 1 && z[0] == 0;
    int rn = open("/dev/null", O_RDONLY);
    CHECK(read(rn, z, 10) == 0);
    printf("devices: %d ok, zeros %d\n", ok, zeros);
    close(null);
    close(zero);
    close(rn);
}

/* Pipes between processes: the child blocks in read before the parent
 * writes; another child blocks in poll. */
static void pipes_procs(void) {
    int p[2], q[2];
    CHECK(pipe(p) == 0 && pipe(q) == 0);
    pid_t reader = fork();
    if (reader == 0) {
        close(p[1]);
        unsigned char b[300];
        unsigned long total = 0;
        unsigned s = 0;
        for (;;) {
            ssize_t n = read(p[0], b, sizeof b);
            if (n <= 0) break;
            total += n;
            s += sum(b, n);
        }
        _exit(total == 100 * 1000 ? 0 : 1);
    }
    pid_t poller = fork();
    if (poller == 0) {
        close(q[1]);
        struct pollfd pf = {q[0], POLLIN, 0};
        int r = poll(&pf, 1, -1);
        char c;
        _exit(r == 1 && (pf.revents & POLLIN) && read(q[0], &c, 1) == 1 && c == 'q' ? 0 : 1);
    }
    close(p[0]);
    close(q[0]);
    usleep(30000); /* both children wait by now */
    char msg[100];
    memset(msg, 'm', sizeof msg);
    int ok = 0;
    for (int i = 0; i < 1000; i++) ok += write(p[1], msg, sizeof msg) == sizeof msg;
    CHECK(write(q[1], "q", 1) == 1);
    close(p[1]);
    close(q[1]);
    int st1 = -1, st2 = -1;
    waitpid(reader, &st1, 0);
    waitpid(poller, &st2, 0);
    printf("pipes between processes: %d writes, reader %d, poller %d\n", ok,
           WIFEXITED(st1) ? WEXITSTATUS(st1) : -1, WIFEXITED(st2) ? WEXITSTATUS(st2) : -1);
}

/* Read fd to its end, n bytes at a time into b: the bytes read. */
static unsigned long drain(int fd, unsigned char *b, size_t n) {
    unsigned long total = 0;
    for (;;) {
        ssize_t r = read(fd, b, n);
        if (r <= 0) break;
        total += r;
    }
    return total;
}

static int tp[2];
static void *thread_reader(void *arg) {
    (void)arg;
    unsigned char b[512];
    return (void *)drain(tp[0], b, sizeof b);
}

static int wp[2];
static void *thread_writer(void *arg) {
    (void)arg;
    static char chunk[4096];
    memset(chunk, 'w', sizeof chunk);
    unsigned long total = 0;
    for (int i = 0; i < 64; i++) { /* 256 KiB: blocks once the pipe is full */
        ssize_t n = write(wp[1], chunk, sizeof chunk);
        if (n <= 0) break;
        total += n;
    }
    close(wp[1]);
    return (void *)total;
}

/* Pipes between threads: a reader blocked while the writer writes, a
 * writer blocked while the reader reads. */
static void pipes_threads(void) {
    CHECK(pipe(tp) == 0 && pipe(wp) == 0);
    pthread_t r, w;
    CHECK(pthread_create(&r, NULL, thread_reader, NULL) == 0);
    usleep(30000);
    char msg[64];
    memset(msg, 't', sizeof msg);
    for (int i = 0; i < 1000; i++) CHECK(write(tp[1], msg, sizeof msg) == sizeof msg);
    close(tp[1]);
    void *rt;
    pthread_join(r, &rt);
    CHECK(pthread_create(&w, NULL, thread_writer, NULL) == 0);
    usleep(30000);
    unsigned char b[1000];
    unsigned long got = drain(wp[0], b, sizeof b);
    void *wt;
    pthread_join(w, &wt);
    close(tp[0]);
    close(wp[0]);
    printf("pipes between threads: reader got %lu, writer wrote %lu, read %lu\n",
           (unsigned long)rt, (unsigned long)wt, got);
}

static void memory(void) {
    long base = syscall(SYS_brk, 0);
    CHECK(syscall(SYS_brk, 0) == base);
    int ok = 0;
    for (int i = 1; i <= 64; i++) ok += syscall(SYS_brk, base + 1000 * i) == base + 1000 * i;
    memset((void *)base, 0x5a, 64000);
    CHECK(syscall(SYS_brk, base + 4096) == base + 4096); /* shrink: exit path */
    CHECK(syscall(SYS_brk, base) == base);
    int maps = 0;
    for (int i = 0; i < 200; i++) {
        size_t len = 4096 * (1 + i % 8);
        unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) continue;
        int clean = m[0] == 0 && m[len - 1] == 0;
        m[len - 1] = 7;
        maps += clean && m[len - 1] == 7;
        munmap(m, len);
    }
    void *bad = mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(bad == MAP_FAILED && errno == EINVAL);
    printf("memory: %d brk growths, %d maps\n", ok, maps);
}

static volatile int usr1;
static void on_usr1(int s) {
    (void)s;
    usr1++;
}

static void signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t s, old, pend, cur;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    int ok = 0;
    for (int i = 0; i < 1000; i++) {
        ok += sigprocmask(SIG_BLOCK, &s, &old) == 0 && !sigismember(&old, SIGUSR1);
        ok += sigprocmask(SIG_SETMASK, &old, NULL) == 0;
    }
    CHECK(sigprocmask(SIG_BLOCK, &s, NULL) == 0);
    kill(getpid(), SIGUSR1);
    int before = usr1;
    sigpending(&pend);
    CHECK(sigprocmask(SIG_BLOCK, NULL, &cur) == 0 && sigismember(&cur, SIGUSR1));
    CHECK(sigprocmask(SIG_UNBLOCK, &s, NULL) == 0);
    int after = usr1;
    printf("signals: %d ok, before %d, pending %d, after %d\n", ok, before,
           sigismember(&pend, SIGUSR1), after);
}

/* Hostile pointers into served calls: the same errors as natively. */
static void *volatile low_ptr = (void *)8, *volatile kern_ptr = (void *)0xffff800000000000UL;
static void bad_pointers(void) {
    void *low = low_ptr, *kern = kern_ptr;
    unsigned char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int zero = open("/dev/zero", O_RDONLY), null = open("/dev/null", O_WRONLY);
    int p[2];
    CHECK(ro != MAP_FAILED && zero >= 0 && null >= 0 && pipe(p) == 0);
    int ok = 0;
    ok += read(zero, low, 10) == -1 && errno == EFAULT;
    ok += read(zero, kern, 10) == -1 && errno == EFAULT;
    ok += read(zero, ro, 10) == -1 && errno == EFAULT;
    ok += write(null, low, 10) == 10; /* /dev/null never looks */
    ok += write(p[1], low, 10) == -1 && errno == EFAULT;
    ok += write(p[1], "abc", 3) == 3;
    ok += read(p[0], ro, 3) == -1 && errno == EFAULT;
    char b[4] = {0};
    ok += read(p[0], b, 3) == 3 && memcmp(b, "abc", 3) == 0; /* nothing lost */
    ok += readv(zero, low, 1) == -1 && errno == EFAULT;
    struct iovec v = {kern, 4};
    ok += writev(p[1], &v, 1) == -1 && errno == EFAULT;
    ok += syscall(SYS_fstat, zero, low) == -1 && errno == EFAULT;
    ok += syscall(SYS_newfstatat, AT_FDCWD, low, b, 0) == -1 && errno == EFAULT;
    ok += syscall(SYS_rt_sigprocmask, SIG_BLOCK, low, NULL, 8) == -1 && errno == EFAULT;
    ok += syscall(SYS_uname, kern) == -1 && errno == EFAULT;
    ok += syscall(SYS_getrandom, ro, 8, 0) == -1 && errno == EFAULT;
    ok += syscall(SYS_lseek, zero, 0, 99) == -1 && errno == EINVAL;
    ok += syscall(SYS_mmap, 0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 1) == -1 && errno == EINVAL;
    printf("bad pointers: %d of 17 as expected\n", ok);
    munmap(ro, 4096);
    close(zero);
    close(null);
    close(p[0]);
    close(p[1]);
}

static void info(void) {
    struct utsname u;
    CHECK(uname(&u) == 0);
    unsigned char r[64];
    int ok = 0, nonzero = 0;
    for (int i = 0; i < 100; i++) {
        memset(r, 0, sizeof r);
        ok += syscall(SYS_getrandom, r, sizeof r, 0) == (long)sizeof r;
        for (size_t j = 0; j < sizeof r; j++) nonzero |= r[j];
    }
    printf("info: %s %s, getrandom %d ok, nonzero %d\n", u.sysname, u.machine, ok, nonzero != 0);
}

/* A thread that waits for a byte on the fd at `arg`. */
static void *wait_byte(void *arg) {
    char b;
    return (void *)(long)read(*(int *)arg, &b, 1);
}

/* N calls of one family and few others. */
static int loop(const char *family, long n, const char *dir) {
    char c = 0;
    if (!strcmp(family, "null")) {
        int fd = open("/dev/null", O_WRONLY);
        for (long i = 0; i < n; i++)
            if (write(fd, "x", 1) != 1) return 1;
    } else if (!strcmp(family, "zero")) {
        int fd = open("/dev/zero", O_RDONLY);
        for (long i = 0; i < n; i++)
            if (read(fd, &c, 1) != 1 || c) return 1;
    } else if (!strcmp(family, "file")) {
        char path[512];
        snprintf(path, sizeof path, "%s/exitless-loop.txt", dir);
        int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
        struct stat st;
        char fill[101];
        memset(fill, 'f', sizeof fill);
        if (write(fd, fill, sizeof fill) != sizeof fill) return 1;
        for (long i = 0; i < n / 4; i++) {
            if (pwrite(fd, "ab", 2, i % 100) != 2 || pread(fd, &c, 1, i % 100 + 1) != 1 || c != 'b') return 1;
            if (lseek(fd, 0, SEEK_END) != 101 || fstat(fd, &st) || st.st_size != 101) return 1;
        }
        unlink(path);
    } else if (!strcmp(family, "pipe")) {
        int p[2];
        if (pipe(p)) return 1;
        for (long i = 0; i < n / 2; i++)
            if (write(p[1], "p", 1) != 1 || read(p[0], &c, 1) != 1 || c != 'p') return 1;
    } else if (!strcmp(family, "sock")) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 1;
        for (long i = 0; i < n / 4; i++)
            if (send(sv[0], "s", 1, MSG_DONTWAIT) != 1 || recv(sv[1], &c, 1, 0) != 1 || c != 's' ||
                write(sv[1], "t", 1) != 1 || read(sv[0], &c, 1) != 1 || c != 't')
                return 1;
    } else if (!strcmp(family, "epoll")) {
        int sv[2], ep = epoll_create1(0);
        struct epoll_event ev = {EPOLLIN, {.u64 = 5}}, out;
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || epoll_ctl(ep, EPOLL_CTL_ADD, sv[1], &ev)) return 1;
        if (write(sv[0], "e", 1) != 1) return 1;
        for (long i = 0; i < n / 2; i++)
            if (epoll_wait(ep, &out, 1, -1) != 1 || out.data.u64 != 5 || epoll_wait(ep, &out, 1, 0) != 1)
                return 1;
    } else if (!strcmp(family, "mem")) {
        long base = syscall(SYS_brk, 0);
        for (long i = 0; i < n / 2; i++) {
            if (syscall(SYS_brk, base + 8 * (i + 1)) != base + 8 * (i + 1)) return 1;
            if (syscall(SYS_brk, 0) != base + 8 * (i + 1)) return 1;
        }
    } else if (!strcmp(family, "map")) {
        /* 4 calls a round, as a loader maps a library: a private file
         * mapping of 4 pages, a MAP_FIXED one of page 2 of the file over
         * its second page, mprotect of the third to PROT_NONE, munmap of
         * all; nothing is touched, so the server may answer each. Then
         * one touched round checks what the mappings show. */
        char path[512];
        snprintf(path, sizeof path, "%s/exitless-map.bin", dir);
        int w = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
        char page[4096];
        for (int i = 0; i < 4; i++) {
            memset(page, 'a' + i, sizeof page);
            if (write(w, page, sizeof page) != sizeof page) return 1;
        }
        for (long i = 0; i <= n / 4; i++) {
            char *m = mmap(NULL, 4 * 4096, PROT_READ, MAP_PRIVATE, w, 0);
            if (m == MAP_FAILED) return 1;
            if (mmap(m + 4096, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_FIXED, w, 2 * 4096) != m + 4096)
                return 1;
            if (mprotect(m + 2 * 4096, 4096, PROT_NONE)) return 1;
            if (i == n / 4) {
                /* Pages 0, 1 (file page 2) and 3 read as the file's. */
                if (m[0] != 'a' || m[4096] != 'c' || m[3 * 4096 + 5] != 'd') return 1;
            }
            if (munmap(m, 4 * 4096)) return 1;
        }
        close(w);
        unlink(path);
        n = n / 4 * 4;
    } else if (!strcmp(family, "fd")) {
        /* 8 calls a round: dup, fcntl x4, dup2 over an open fd, dup3,
         * close; a pipe end's last handle closes on the way. */
        int p[2];
        if (pipe(p)) return 1;
        for (long i = 0; i < n / 8; i++) {
            int d = dup(p[0]);
            if (d < 0 || fcntl(d, F_GETFD) != 0 || fcntl(d, F_SETFD, FD_CLOEXEC) ||
                (fcntl(d, F_GETFL) & O_ACCMODE) != O_RDONLY || fcntl(d, F_SETFL, O_NONBLOCK))
                return 1;
            if (dup2(p[1], d) != d || dup3(d, d + 1, O_CLOEXEC) != d + 1 || close(d + 1)) return 1;
            close(d);
        }
        char b = 0;
        if (write(p[1], "d", 1) != 1 || read(p[0], &b, 1) != 1 || b != 'd') return 1;
    } else if (!strcmp(family, "open")) {
        /* 6 calls a round: open a file and the directory for reading,
         * list the directory (to its end), close both; the fds are
         * reused each round. */
        char path[512];
        snprintf(path, sizeof path, "%s/exitless-open.txt", dir);
        int w = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
        if (w < 0 || write(w, "o", 1) != 1 || close(w)) return 1;
        char ents[4096];
        for (long i = 0; i < n / 6; i++) {
            int f = open(path, O_RDONLY | O_CLOEXEC);
            int d = open(dir, O_RDONLY | O_DIRECTORY);
            if (f != w || d != w + 1) return 1;
            if (syscall(SYS_getdents64, d, ents, sizeof ents) <= 0) return 1;
            if (syscall(SYS_getdents64, d, ents, sizeof ents) != 0) return 1;
            if (close(f) || close(d)) return 1;
        }
        if (open(path, O_RDONLY | O_DIRECTORY) != -1 || errno != ENOTDIR) return 1;
        unlink(path);
    } else if (!strcmp(family, "lock")) {
        /* 8 calls a round: flock exclusive, shared (a conversion),
         * non-blocking exclusive, unlock; fcntl F_SETLK write, F_GETLK
         * (free to this owner), F_OFD_SETLK read, F_SETLK unlock. */
        char path[512];
        snprintf(path, sizeof path, "%s/exitless-lock.txt", dir);
        int f = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
        if (f < 0) return 1;
        for (long i = 0; i < n / 8; i++) {
            struct flock w = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
            struct flock q = w, r = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 20, .l_len = 5};
            struct flock u = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
            if (flock(f, LOCK_EX) || flock(f, LOCK_SH) || flock(f, LOCK_EX | LOCK_NB) || flock(f, LOCK_UN))
                return 1;
            if (fcntl(f, F_SETLK, &w) || fcntl(f, F_GETLK, &q) || q.l_type != F_UNLCK ||
                fcntl(f, F_OFD_SETLK, &r) || fcntl(f, F_SETLK, &u))
                return 1;
        }
        close(f);
        unlink(path);
    } else if (!strcmp(family, "sigaction")) {
        /* 2 calls a round: rt_sigaction installing a handler, then
         * reading it back. */
        struct sigaction sa, got;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        for (long i = 0; i < n / 2; i++)
            if (sigaction(SIGUSR2, &sa, NULL) || sigaction(SIGUSR2, NULL, &got) || got.sa_handler != on_usr1)
                return 1;
    } else if (!strcmp(family, "kill")) {
        /* 3 calls a round to a child that blocks SIGUSR2: kill with
         * signal 0 (a probe), kill with SIGUSR2 (stays pending), tgkill
         * with signal 0. */
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGUSR2);
        sigprocmask(SIG_BLOCK, &s, NULL);
        pid_t c = fork();
        if (c == 0) {
            for (;;) pause();
        }
        for (long i = 0; i < n / 3; i++)
            if (kill(c, 0) || kill(c, SIGUSR2) || syscall(SYS_tgkill, c, c, 0)) return 1;
        kill(c, SIGKILL);
        int st = 0;
        if (waitpid(c, &st, 0) != c || !WIFSIGNALED(st) || kill(c, 0) != -1 || errno != ESRCH) return 1;
    } else if (!strcmp(family, "probe")) {
        /* 4 calls a round: access of a file that exists and of one that
         * does not, stat and open of a missing file (ENOENT each). */
        char path[512], missing[512];
        snprintf(path, sizeof path, "%s/exitless-probe.txt", dir);
        snprintf(missing, sizeof missing, "%s/exitless-missing.py", dir);
        int w = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
        if (w < 0 || close(w)) return 1;
        struct stat st;
        for (long i = 0; i < n / 4; i++) {
            if (access(path, R_OK)) return 1;
            if (access(missing, F_OK) != -1 || errno != ENOENT) return 1;
            if (stat(missing, &st) != -1 || errno != ENOENT) return 1;
            if (open(missing, O_RDONLY) != -1 || errno != ENOENT) return 1;
        }
        unlink(path);
    } else if (!strcmp(family, "link")) {
        /* 1 call a round: readlink of /proc/self/exe (busybox's start). */
        char b[4096];
        for (long i = 0; i < n; i++)
            if (readlink("/proc/self/exe", b, sizeof b) <= 0) return 1;
    } else if (!strcmp(family, "name")) {
        /* 2 calls a round: PR_SET_NAME with a new name, PR_GET_NAME
         * reading it back (15 bytes and the NUL at most). */
        char want[16], got[16];
        for (long i = 0; i < n / 2; i++) {
            snprintf(want, sizeof want, "name-%ld-and-more", i % 1000);
            if (prctl(PR_SET_NAME, want, 0, 0, 0) || prctl(PR_GET_NAME, got, 0, 0, 0)) return 1;
            if (strncmp(want, got, 15) || got[15] != 0) return 1;
        }
    } else if (!strcmp(family, "wait")) {
        /* 1 call a round: wait4 with WNOHANG for a child that lives on (0);
         * then 10 children that exit, each reaped as a zombie. */
        pid_t c = fork();
        if (c == 0) {
            for (;;) pause();
        }
        int st = 0;
        for (long i = 0; i < n; i++)
            if (waitpid(c, &st, WNOHANG) != 0) return 1;
        for (int i = 0; i < 10; i++) {
            pid_t z = fork();
            if (z == 0) _exit(i);
            siginfo_t si;
            /* Until it is a zombie (without reaping it). */
            if (waitid(P_PID, z, &si, WEXITED | WNOWAIT)) return 1;
            if (waitpid(-1, &st, WNOHANG) != z || !WIFEXITED(st) || WEXITSTATUS(st) != i) return 1;
        }
        kill(c, SIGKILL);
        if (waitpid(c, &st, 0) != c || !WIFSIGNALED(st) || waitpid(-1, &st, WNOHANG) != -1 || errno != ECHILD)
            return 1;
    } else if (!strcmp(family, "rusage")) {
        /* 2 calls a round: getrusage of the process and of its children. */
        struct rusage ru;
        for (long i = 0; i < n / 2; i++)
            if (getrusage(RUSAGE_SELF, &ru) || ru.ru_maxrss <= 0 || getrusage(RUSAGE_CHILDREN, &ru))
                return 1;
    } else if (!strcmp(family, "yield")) {
        for (long i = 0; i < n; i++)
            if (sched_yield()) return 1;
    } else if (!strcmp(family, "sigthr")) {
        /* 2 calls a round, as "sig", with a second thread alive (waiting
         * in a read): the mask also steers the process's signals. */
        int p[2];
        pthread_t t;
        if (pipe(p) || pthread_create(&t, NULL, wait_byte, &p[0])) return 1;
        sigset_t s, old;
        sigemptyset(&s);
        sigaddset(&s, SIGUSR2);
        for (long i = 0; i < n / 2; i++)
            if (sigprocmask(SIG_BLOCK, &s, &old) || sigprocmask(SIG_SETMASK, &old, NULL)) return 1;
        if (write(p[1], "q", 1) != 1 || pthread_join(t, NULL)) return 1;
    } else if (!strcmp(family, "unserved")) {
        /* 1 call a round the server does not serve (getpgid: the exit
         * path's), from one site. */
        pid_t g = getpgid(0);
        for (long i = 0; i < n; i++)
            if (g <= 0 || getpgid(0) != g) return 1;
    } else if (!strcmp(family, "sig")) {
        sigset_t s, old;
        sigemptyset(&s);
        sigaddset(&s, SIGUSR2);
        for (long i = 0; i < n / 2; i++)
            if (sigprocmask(SIG_BLOCK, &s, &old) || sigprocmask(SIG_SETMASK, &old, NULL)) return 1;
    } else {
        return 2;
    }
    printf("%s: %ld calls\n", family, n);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 5 && !strcmp(argv[1], "loop")) return loop(argv[2], atol(argv[3]), argv[4]);
    if (argc != 4 || strcmp(argv[1], "all")) {
        fprintf(stderr, "usage: exitless_io all DIR1 DIR2 | loop FAMILY N DIR\n");
        return 2;
    }
    files(argv[2], "dir1");
    files(argv[3], "dir2");
    devices();
    pipes_procs();
    pipes_threads();
    memory();
    signals();
    bad_pointers();
    info();
    printf("failures: %d\n", fails);
    return fails != 0;
}
