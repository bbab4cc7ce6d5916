/* The root filesystem as a program sees it (tests/linux_rootfs.rs).
 *
 *   rootfs ops DIR     file and directory calls inside DIR (an empty
 *                      directory); prints what it sees, paths relative to
 *                      DIR, so a native run and a vkernel run compare.
 *   rootfs escape      tries to leave the root: every line must name a
 *                      file inside it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <termios.h>
#include <unistd.h>

static void check(const char *what, long r) {
    if (r < 0)
        printf("%s: %s\n", what, strerror(errno));
    else
        printf("%s: ok\n", what);
}

static void expect_errno(const char *what, long r) {
    printf("%s: %s\n", what, r < 0 ? strerror(errno) : "succeeded");
}

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted names of directory `p`, with types. */
static void list(const char *p) {
    int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        printf("list %s: %s\n", p, strerror(errno));
        return;
    }
    char buf[4096], *names[256];
    int n = 0;
    for (;;) {
        long got = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (got <= 0)
            break;
        for (long off = 0; off < got;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            if (n < 256) {
                char *s = malloc(300);
                snprintf(s, 300, "%s(%d)", d->d_name, d->d_type);
                names[n++] = s;
            }
            off += d->d_reclen;
        }
    }
    close(fd);
    qsort(names, n, sizeof *names, cmp);
    printf("list %s:", p);
    for (int i = 0; i < n; i++) {
        printf(" %s", names[i]);
        free(names[i]);
    }
    printf("\n");
}

static void show(const char *p) {
    char buf[256] = {0};
    int fd = open(p, O_RDONLY);
    if (fd < 0) {
        printf("%s: %s\n", p, strerror(errno));
        return;
    }
    long n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0 && buf[n - 1] == '\n')
        buf[n - 1] = 0;
    printf("%s: [%s]\n", p, buf);
}

static int ops(const char *dir) {
    char cwd[4096];
    if (chdir(dir) < 0) {
        perror("chdir");
        return 1;
    }
    umask(022);
    int fd = open("a.txt", O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0640);
    check("create a.txt", fd);
    expect_errno("create a.txt again (O_EXCL)", open("a.txt", O_CREAT | O_EXCL | O_RDWR, 0640));
    check("write", write(fd, "hello world\n", 12));
    check("pwrite", pwrite(fd, "HELLO", 5, 0));
    char buf[64] = {0};
    long n = pread(fd, buf, sizeof buf - 1, 0);
    printf("pread %ld [%s]\n", n, buf);
    int fl = fcntl(fd, F_GETFL);
    printf("F_GETFL %#o\n", fl);
    check("F_SETFL O_APPEND", fcntl(fd, F_SETFL, fl | O_APPEND));
    lseek(fd, 0, SEEK_SET);
    check("append", write(fd, "tail\n", 5));
    printf("F_GETFD cloexec %d\n", fcntl(fd, F_GETFD) & FD_CLOEXEC);
    int d2 = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    printf("F_DUPFD_CLOEXEC >= 10: %d cloexec %d\n", d2 >= 10, fcntl(d2, F_GETFD) & FD_CLOEXEC);
    int d3 = dup3(fd, 20, 0);
    printf("dup3 -> %d cloexec %d\n", d3, fcntl(20, F_GETFD) & FD_CLOEXEC);
    expect_errno("dup3 same fd", dup3(fd, fd, 0));
    struct termios t;
    expect_errno("TCGETS on a file", ioctl(fd, TCGETS, &t));
    struct stat st;
    fstat(fd, &st);
    printf("fstat size %ld mode %o nlink %ld\n", (long)st.st_size, st.st_mode, (long)st.st_nlink);
    check("ftruncate 5", ftruncate(fd, 5));
    fstat(fd, &st);
    printf("size after ftruncate %ld\n", (long)st.st_size);
    close(fd);
    close(d2);
    close(d3);
    show("a.txt");
    fd = open("a.txt", O_WRONLY | O_TRUNC);
    check("O_TRUNC", fd);
    check("write after O_TRUNC", write(fd, "new\n", 4));
    close(fd);
    show("a.txt");
    check("mkdir sub", mkdir("sub", 0755));
    expect_errno("mkdir sub again", mkdir("sub", 0755));
    check("rename a.txt sub/b.txt", rename("a.txt", "sub/b.txt"));
    expect_errno("open a.txt", open("a.txt", O_RDONLY));
    show("sub/b.txt");
    fd = open("c.txt", O_CREAT | O_WRONLY, 0600);
    close(fd);
    expect_errno("renameat2 NOREPLACE", syscall(SYS_renameat2, AT_FDCWD, "c.txt", AT_FDCWD, "sub/b.txt", 1));
    check("symlink", symlink("sub/b.txt", "link"));
    n = readlink("link", buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("readlink link [%s]\n", buf);
    show("link");
    expect_errno("O_NOFOLLOW on a symlink", open("link", O_RDONLY | O_NOFOLLOW));
    expect_errno("O_DIRECTORY on a file", open("c.txt", O_RDONLY | O_DIRECTORY));
    fd = open("link", O_PATH | O_NOFOLLOW);
    check("O_PATH|O_NOFOLLOW on a symlink", fd);
    fstatat(fd, "", &st, AT_EMPTY_PATH);
    printf("O_PATH fstat is a link: %d\n", S_ISLNK(st.st_mode));
    expect_errno("read from O_PATH", read(fd, buf, 1));
    close(fd);
    lstat("link", &st);
    printf("lstat link: %d size %ld\n", S_ISLNK(st.st_mode), (long)st.st_size);
    struct timespec ts[2] = {{1000000000, 0}, {1234567890, 500}};
    check("utimensat", utimensat(AT_FDCWD, "c.txt", ts, 0));
    stat("c.txt", &st);
    printf("mtime %ld.%09ld\n", (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    check("access R_OK", faccessat(AT_FDCWD, "c.txt", R_OK, 0));
    expect_errno("access X_OK", faccessat(AT_FDCWD, "c.txt", X_OK, 0));
    expect_errno("access missing", access("nope", F_OK));
    list(".");
    list("sub");
    /* copy_file_range, fallocate, xattrs, FIOCLEX, close_range. */
    int in = open("sub/b.txt", O_RDONLY), out = open("copy", O_CREAT | O_RDWR, 0644);
    long total = 0;
    while ((n = copy_file_range(in, NULL, out, NULL, 2, 0)) > 0)
        total += n;
    printf("copy_file_range copied %ld\n", total);
    check("fallocate", fallocate(out, 0, 0, 10000));
    fstat(out, &st);
    printf("size after fallocate %ld\n", (long)st.st_size);
    check("FIOCLEX", ioctl(out, FIOCLEX));
    printf("cloexec after FIOCLEX %d\n", fcntl(out, F_GETFD) & FD_CLOEXEC);
    expect_errno("getxattr", getxattr("copy", "user.x", buf, sizeof buf));
    printf("listxattr %ld\n", (long)listxattr("copy", buf, sizeof buf));
    check("close_range", syscall(SYS_close_range, in, out, 0));
    expect_errno("fcntl on a closed fd", fcntl(out, F_GETFD));
    unlink("copy");
    expect_errno("rmdir non-empty", rmdir("sub"));
    expect_errno("unlink a directory", unlink("sub"));
    check("unlink sub/b.txt", unlink("sub/b.txt"));
    show("link");
    check("rmdir sub", rmdir("sub"));
    check("unlinkat", unlinkat(AT_FDCWD, "link", 0));
    check("mkdirat", mkdirat(AT_FDCWD, "d2", 0700));
    check("unlinkat AT_REMOVEDIR", unlinkat(AT_FDCWD, "d2", AT_REMOVEDIR));
    check("chdir ..", chdir(".."));
    check("chdir back", chdir(strrchr(dir, '/') + 1));
    getcwd(cwd, sizeof cwd);
    printf("getcwd ends with the dir: %d\n", strcmp(cwd, dir) == 0);
    int dfd = open(".", O_RDONLY | O_DIRECTORY);
    check("fchdir", fchdir(dfd));
    close(dfd);
    unlink("c.txt");
    list(".");
    /* Devices. */
    fd = open("/dev/null", O_RDWR);
    printf("/dev/null write %ld read %ld\n", (long)write(fd, "x", 1), (long)read(fd, buf, 4));
    close(fd);
    fd = open("/dev/zero", O_RDONLY);
    memset(buf, 7, 8);
    n = read(fd, buf, 8);
    printf("/dev/zero %ld %d\n", n, buf[0] + buf[7]);
    close(fd);
    fd = open("/dev/urandom", O_RDONLY);
    printf("/dev/urandom %ld\n", (long)read(fd, buf, 16));
    close(fd);
    /* Information. */
    struct sysinfo si;
    check("sysinfo", sysinfo(&si));
    printf("sysinfo has RAM: %d\n", si.totalram > 0 && si.mem_unit > 0);
    struct rlimit rl;
    check("prlimit64 NOFILE", prlimit(0, RLIMIT_NOFILE, NULL, &rl));
    printf("NOFILE soft > 2: %d\n", rl.rlim_cur > 2);
    struct rusage ru;
    check("getrusage", getrusage(RUSAGE_SELF, &ru));
    printf("maxrss > 0: %d\n", ru.ru_maxrss > 0);
    expect_errno("getrusage(7)", getrusage(7, &ru));
    n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("/proc/self/exe ends with rootfs: %d\n", n > 0 && strstr(buf, "rootfs") != NULL);
    fd = open("/proc/self/status", O_RDONLY);
    n = read(fd, buf, sizeof buf - 1);
    printf("/proc/self/status starts with Name: %d\n", n > 5 && memcmp(buf, "Name:", 5) == 0);
    close(fd);
    fd = open("/proc/self/maps", O_RDONLY);
    n = read(fd, buf, sizeof buf - 1);
    printf("/proc/self/maps readable: %d\n", n > 0);
    close(fd);
    n = readlink("/proc/self/cwd", cwd, sizeof cwd - 1);
    cwd[n > 0 ? n : 0] = 0;
    printf("/proc/self/cwd is the dir: %d\n", strcmp(cwd, dir) == 0);
    fd = open("/proc/self/fd/1", O_WRONLY);
    printf("/proc/self/fd/1 opens: %d\n", fd >= 0);
    close(fd);
    return 0;
}

static int escape(void) {
    static const char *paths[] = {
        "/../../../../etc/hostname",
        "/etc/../../etc/hostname",
        "/abs/hostname",
        "/up/hostname",
        "/uplink",
        "/proc/self/root/etc/hostname",
        "/proc/self/root/../../etc/hostname",
        "/proc/self/cwd/../../etc/hostname",
        "/outside",
        0,
    };
    for (int i = 0; paths[i]; i++)
        show(paths[i]);
    char buf[256];
    long n = readlink("/proc/self/root", buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("readlink /proc/self/root [%s]\n", buf);
    for (int i = 0; i < 8; i++)
        chdir("..");
    getcwd(buf, sizeof buf);
    printf("cwd after 8x chdir .. [%s]\n", buf);
    chdir("/proc/self/root/..");
    getcwd(buf, sizeof buf);
    printf("cwd after chdir /proc/self/root/.. [%s]\n", buf);
    show("etc/hostname");
    int fd = open("/loop1", O_RDONLY);
    printf("/loop1: %s\n", fd < 0 ? strerror(errno) : "opened");
    list("/");
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && strcmp(argv[1], "ops") == 0)
        return ops(argv[2]);
    if (argc >= 2 && strcmp(argv[1], "escape") == 0)
        return escape();
    fprintf(stderr, "usage: rootfs ops DIR | rootfs escape\n");
    return 2;
}
