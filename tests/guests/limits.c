// Limits and error numbers (issue 20, items 9 and 10): one line per check,
// compared with the same program run natively. Nothing printed depends on
// the host (pids, the host's limits, addresses).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *en(int e) {
    switch (e) {
    case 0: return "ok";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EEXIST: return "EEXIST";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case EFBIG: return "EFBIG";
    case E2BIG: return "E2BIG";
    case ERANGE: return "ERANGE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case ENOTSOCK: return "ENOTSOCK";
    case EBUSY: return "EBUSY";
    case ENOTTY: return "ENOTTY";
    case ENXIO: return "ENXIO";
    default: return "other";
    }
}

#define R(x) ((x) < 0 ? en(errno) : "ok")

static char dir[64];

static void nofile(void) {
    struct rlimit host, l;
    getrlimit(RLIMIT_NOFILE, &host);
    // The starting limits are the ones the program was started with.
    printf("nofile: start soft>=1024 %d soft<=hard %d\n", host.rlim_cur >= 1024,
           host.rlim_cur <= host.rlim_max);
    // Open more than the old fixed 1,024 when the limit allows.
    int want = host.rlim_cur > 1500 ? 1500 : (int)host.rlim_cur - 10;
    int n = 0, last = -1;
    for (int i = 0; i < want; i++) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0) {
            break;
        }
        last = fd;
        n++;
    }
    printf("nofile: opened %d of %d\n", n, want);
    // Lowering below open fds is allowed; new fds are then refused.
    l.rlim_cur = 64;
    l.rlim_max = host.rlim_max;
    printf("nofile: lower to 64 %s\n", R(setrlimit(RLIMIT_NOFILE, &l)));
    getrlimit(RLIMIT_NOFILE, &l);
    printf("nofile: now %lu\n", (unsigned long)l.rlim_cur);
    printf("nofile: open %s\n", R(open("/dev/null", O_RDONLY)));
    printf("nofile: dup %s\n", R(dup(0)));
    printf("nofile: dup2 to 100 %s\n", R(dup2(0, 100)));
    printf("nofile: F_DUPFD 64 %s\n", R(fcntl(0, F_DUPFD, 64)));
    for (int fd = 3; fd <= last; fd++) {
        close(fd);
    }
    int fd = open("/dev/null", O_RDONLY);
    printf("nofile: after closing, open gives %d\n", fd);
    close(fd);
    int got = 0;
    for (;;) {
        int f = open("/dev/null", O_RDONLY);
        if (f < 0) {
            printf("nofile: EMFILE after %d more (%s)\n", got, en(errno));
            break;
        }
        got++;
    }
    for (int f = 3; f < 64; f++) {
        close(f);
    }
    // Inherited across fork.
    pid_t c = fork();
    if (c == 0) {
        struct rlimit k;
        getrlimit(RLIMIT_NOFILE, &k);
        printf("nofile: child sees %lu\n", (unsigned long)k.rlim_cur);
        fflush(stdout);
        _exit(0);
    }
    waitpid(c, NULL, 0);
    l.rlim_cur = 100;
    l.rlim_max = 50;
    printf("nofile: soft above hard %s\n", R(setrlimit(RLIMIT_NOFILE, &l)));
    l.rlim_cur = 100;
    l.rlim_max = (1 << 20) + 1;
    printf("nofile: hard above nr_open %s\n", R(setrlimit(RLIMIT_NOFILE, &l)));
    printf("nofile: resource 99 %s\n", R(getrlimit(99, &l)));
    struct rlimit o;
    printf("nofile: prlimit self %s\n", R(prlimit(0, RLIMIT_NOFILE, NULL, &o)));
    printf("nofile: prlimit no such pid %s\n",
           R(prlimit(0x3ffffff0, RLIMIT_NOFILE, NULL, &o)));
    printf("nofile: restore %s\n", R(setrlimit(RLIMIT_NOFILE, &host)));
}

static int hold[2];

// Each thread stays alive until main closes the pipe's write end.
static void *thr(void *a) {
    char c;
    read(hold[0], &c, 1);
    return a;
}

static void threads(void) {
    enum { N = 100 };
    pthread_t t[N];
    int ok = 0;
    pipe(hold);
    for (int i = 0; i < N; i++) {
        if (pthread_create(&t[i], NULL, thr, NULL) == 0) {
            ok++;
        } else {
            break;
        }
    }
    close(hold[1]);
    for (int i = 0; i < ok; i++) {
        pthread_join(t[i], NULL);
    }
    close(hold[0]);
    printf("threads: %d of %d live at once\n", ok, N);
}

static void bigarg(char *self) {
    for (size_t len = 100 << 10; len <= (200 << 10); len += 100 << 10) {
        char *a = malloc(len + 1);
        memset(a, 'x', len);
        a[len] = 0;
        pid_t c = fork();
        if (c == 0) {
            char *argv[] = {self, "noop", a, NULL};
            execv(self, argv);
            printf("arg: %zu KiB execve %s\n", len >> 10, en(errno));
            fflush(stdout);
            _exit(1);
        }
        int st;
        waitpid(c, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            printf("arg: %zu KiB execve ok\n", len >> 10);
        }
        free(a);
    }
}

static void overcommit(void) {
    size_t big = 100ULL << 30;
    void *p = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("overcommit: 100 GiB rw %s\n", p == MAP_FAILED ? en(errno) : "ok");
    if (p != MAP_FAILED) {
        munmap(p, big);
    }
    p = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
             -1, 0);
    printf("overcommit: 100 GiB noreserve %s\n", p == MAP_FAILED ? en(errno) : "ok");
    if (p != MAP_FAILED) {
        munmap(p, big);
    }
    p = mmap(NULL, big, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("overcommit: 100 GiB read-only %s\n", p == MAP_FAILED ? en(errno) : "ok");
    if (p != MAP_FAILED) {
        // Made writable: accounted now.
        printf("overcommit: mprotect rw %s\n", R(mprotect(p, big, PROT_READ | PROT_WRITE)));
        munmap(p, big);
    }
    p = mmap(NULL, 256 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("overcommit: 256 MiB rw %s\n", p == MAP_FAILED ? en(errno) : "ok");
    if (p != MAP_FAILED) {
        void *q = mremap(p, 256 << 20, big, MREMAP_MAYMOVE);
        printf("overcommit: mremap to 100 GiB %s\n", q == MAP_FAILED ? en(errno) : "ok");
        munmap(q == MAP_FAILED ? p : q, q == MAP_FAILED ? 256 << 20 : big);
    }
    // The break cannot grow by 100 GiB at once either.
    void *b0 = sbrk(0);
    printf("overcommit: brk +100 GiB %s\n",
           brk((char *)b0 + big) == 0 ? "ok" : en(errno));
}

static void longcwd(void) {
    char name[201];
    memset(name, 'd', 200);
    name[200] = 0;
    int depth = 0;
    if (chdir(dir) != 0) {
        printf("cwd: chdir %s\n", en(errno));
        return;
    }
    for (; depth < 24; depth++) {
        if (mkdir(name, 0700) != 0 || chdir(name) != 0) {
            printf("cwd: mkdir/chdir at depth %d: %s\n", depth, en(errno));
            break;
        }
    }
    char *buf = malloc(16384);
    char *r = getcwd(buf, 16384);
    printf("cwd: getcwd of %d levels %s\n", depth, r ? "ok" : en(errno));
    r = getcwd(NULL, 0);
    printf("cwd: getcwd(NULL, 0) %s\n", r ? "ok" : en(errno));
    free(buf);
    for (; depth > 0; depth--) {
        chdir("..");
        rmdir(name);
    }
    r = getcwd(NULL, 0);
    char small[4];
    printf("cwd: short buffer %s\n", getcwd(small, sizeof small) ? "ok" : en(errno));
    chdir("/");
}

static void renames(void) {
    char a[96], b[96];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    close(open(a, O_CREAT | O_WRONLY, 0600));
    close(open(b, O_CREAT | O_WRONLY, 0600));
    long r = syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, 1 /* RENAME_NOREPLACE */);
    printf("rename: noreplace onto existing %s\n", R(r));
    r = syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, a, 1);
    printf("rename: noreplace onto itself %s\n", R(r));
    unlink(b);
    r = syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, 1);
    printf("rename: noreplace onto free name %s\n", R(r));
    unlink(b);
}

static void closedfd(void) {
    struct statfs s;
    int fd = open("/dev/null", O_RDONLY);
    close(fd);
    printf("closed: fstatfs %s\n", R(fstatfs(fd, &s)));
    printf("closed: fstatfs open fd %s\n", R(fstatfs(0, &s)));
    cpu_set_t set;
    printf("closed: sched_getaffinity(-1) %s\n",
           R(sched_getaffinity(-1, sizeof set, &set)));
    printf("closed: sched_getaffinity(no such pid) %s\n",
           R(sched_getaffinity(0x3ffffff0, sizeof set, &set)));
    printf("closed: sched_getaffinity(0) %s\n", R(sched_getaffinity(0, sizeof set, &set)));
}

static void sockets(void) {
    int p[2];
    pipe(p);
    struct sockaddr sa;
    socklen_t sl = sizeof sa;
    int v = 0;
    socklen_t vl = sizeof v;
    char c;
    printf("sock: getsockname %s\n", R(getsockname(p[0], &sa, &sl)));
    printf("sock: getpeername %s\n", R(getpeername(p[0], &sa, &sl)));
    printf("sock: connect %s\n", R(connect(p[0], &sa, sizeof sa)));
    printf("sock: bind %s\n", R(bind(p[0], &sa, sizeof sa)));
    printf("sock: listen %s\n", R(listen(p[0], 1)));
    printf("sock: accept %s\n", R(accept(p[0], &sa, &sl)));
    printf("sock: shutdown %s\n", R(shutdown(p[0], SHUT_RD)));
    printf("sock: getsockopt %s\n", R(getsockopt(p[0], SOL_SOCKET, SO_TYPE, &v, &vl)));
    printf("sock: setsockopt %s\n", R(setsockopt(p[0], SOL_SOCKET, SO_REUSEADDR, &v, vl)));
    printf("sock: sendto %s\n", R(sendto(p[1], "x", 1, 0, NULL, 0)));
    printf("sock: recvfrom %s\n", R(recvfrom(p[0], &c, 1, MSG_DONTWAIT, NULL, NULL)));
    printf("sock: getsockname bad fd %s\n", R(getsockname(999, &sa, &sl)));
    close(p[0]);
    close(p[1]);
}

static void pipes(void) {
    int p[2];
    pipe(p);
    char buf[58];
    memset(buf, 'p', sizeof buf);
    write(p[1], buf, sizeof buf);
    int n = -1;
    ioctl(p[0], FIONREAD, &n);
    printf("pipe: FIONREAD read end %d\n", n);
    n = -1;
    ioctl(p[1], FIONREAD, &n);
    printf("pipe: FIONREAD write end %d\n", n);
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/dev/fd/%d", p[0]);
    stat(path, &st);
    printf("pipe: stat /dev/fd/N fifo %d\n", S_ISFIFO(st.st_mode));
    lstat(path, &st);
    printf("pipe: lstat /dev/fd/N link %d\n", S_ISLNK(st.st_mode));
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
    stat(path, &st);
    printf("pipe: stat /proc/self/fd/N fifo %d\n", S_ISFIFO(st.st_mode));
    printf("pipe: F_GETPIPE_SZ %d\n", fcntl(p[0], F_GETPIPE_SZ));
    printf("pipe: F_SETPIPE_SZ 1 MiB %d\n", fcntl(p[1], F_SETPIPE_SZ, 1 << 20));
    printf("pipe: F_GETPIPE_SZ %d\n", fcntl(p[0], F_GETPIPE_SZ));
    printf("pipe: F_SETPIPE_SZ 1000 %d\n", fcntl(p[1], F_SETPIPE_SZ, 1000));
    // 58 bytes fit in one page; filling more and shrinking below is EBUSY.
    static char big[1 << 16];
    fcntl(p[1], F_SETPIPE_SZ, 1 << 17);
    write(p[1], big, sizeof big);
    int r = fcntl(p[1], F_SETPIPE_SZ, 4096);
    printf("pipe: shrink below content %s\n", r < 0 ? en(errno) : "ok");
    printf("pipe: F_GETPIPE_SZ on a file %s\n", R(fcntl(0 + open("/dev/null", O_RDONLY),
                                                    F_GETPIPE_SZ)));
    // Fill a 4 KiB pipe: non-blocking writes stop at its size.
    int q[2];
    pipe2(q, O_NONBLOCK);
    fcntl(q[1], F_SETPIPE_SZ, 4096);
    long total = 0;
    for (;;) {
        ssize_t w = write(q[1], big, 1024);
        if (w <= 0) {
            break;
        }
        total += w;
    }
    printf("pipe: a 4 KiB pipe holds %ld\n", total);
    close(q[0]);
    close(q[1]);
    close(p[0]);
    close(p[1]);
}

static void sparse(void) {
    char f[96];
    snprintf(f, sizeof f, "%s/sparse", dir);
    int fd = open(f, O_CREAT | O_RDWR, 0600);
    long long offs[] = {1LL << 30, 3LL << 30, 100LL << 30};
    for (int i = 0; i < 3; i++) {
        ssize_t w = pwrite(fd, "z", 1, offs[i]);
        printf("sparse: pwrite at %lld GiB %s\n", offs[i] >> 30, w == 1 ? "ok" : en(errno));
    }
    struct stat st;
    fstat(fd, &st);
    printf("sparse: size %lld\n", (long long)st.st_size);
    char b[2] = {1, 1};
    ssize_t r = pread(fd, b, 2, (3LL << 30) - 1);
    printf("sparse: read %zd: %d %d\n", r, b[0], b[1]);
    r = pread(fd, b, 2, 50LL << 30);
    printf("sparse: hole read %zd: %d %d\n", r, b[0], b[1]);
    printf("sparse: truncate to 2 GiB %s\n", R(ftruncate(fd, 2LL << 30)));
    r = pread(fd, b, 2, (1LL << 30));
    printf("sparse: after truncate %zd: %d %d\n", r, b[0], b[1]);
    close(fd);
    unlink(f);
}

static void fifo(void) {
    char f[96];
    snprintf(f, sizeof f, "%s/fifo", dir);
    printf("fifo: mkfifo %s\n", R(mkfifo(f, 0600)));
    struct stat st;
    stat(f, &st);
    printf("fifo: is fifo %d\n", S_ISFIFO(st.st_mode));
    printf("fifo: mkfifo again %s\n", R(mkfifo(f, 0600)));
    int nb = open(f, O_WRONLY | O_NONBLOCK);
    printf("fifo: open write nonblock without reader %s\n", nb < 0 ? en(errno) : "ok");
    pid_t c = fork();
    if (c == 0) {
        int w = open(f, O_WRONLY);
        write(w, "through the fifo", 16);
        close(w);
        _exit(0);
    }
    // Blocks until the child opens for writing.
    int r = open(f, O_RDONLY);
    char buf[64];
    size_t n = 0;
    ssize_t k;
    while ((k = read(r, buf + n, sizeof buf - 1 - n)) > 0) {
        n += k;
    }
    buf[n] = 0;
    printf("fifo: read '%s'\n", buf);
    close(r);
    waitpid(c, NULL, 0);
    int rn = open(f, O_RDONLY | O_NONBLOCK);
    printf("fifo: open read nonblock %s\n", rn < 0 ? en(errno) : "ok");
    ssize_t e = read(rn, buf, 1);
    printf("fifo: read with no writer %zd\n", e);
    close(rn);
    printf("fifo: unlink %s\n", R(unlink(f)));
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "noop") == 0) {
        return 0;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "threads") == 0) {
        threads();
        return 0;
    }
    snprintf(dir, sizeof dir, "/tmp/vk-limits-%d", getpid());
    mkdir(dir, 0700);
    nofile();
    threads();
    bigarg(argv[0]);
    overcommit();
    longcwd();
    renames();
    closedfd();
    sockets();
    pipes();
    sparse();
    fifo();
    rmdir(dir);
    return 0;
}
