/* File locks between processes: fcntl record locks (F_SETLK, F_SETLKW,
 * F_GETLK), open file description locks (F_OFD_*) and flock(2). Prints one
 * line per check; the test compares the output with the same binary run
 * natively. Files live under /tmp with this process's pid in their names
 * (the pid itself is never printed).
 *
 * Usage: locks [CHECK]  (no argument: every check)
 */
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
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#define F_OFD_SETLKW 38
#endif

static char path[64];

static const char *ename(int e)
{
    switch (e) {
    case EAGAIN: return "EAGAIN";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EINTR: return "EINTR";
    case EDEADLK: return "EDEADLK";
    case EFAULT: return "EFAULT";
    case EOVERFLOW: return "EOVERFLOW";
    default: return "E?";
    }
}

static void say(const char *what, long r)
{
    if (r < 0)
        printf("%s: -1 %s\n", what, ename(errno));
    else
        printf("%s: %ld\n", what, r);
    fflush(stdout);
}

static int lk(int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = start;
    fl.l_len = len;
    return fcntl(fd, cmd, &fl);
}

/* F_GETLK (or F_OFD_GETLK) for `type` on start/len; prints what blocks it
 * (pid as "holder", "-1" or "other"). */
static void getlk(const char *what, int fd, int cmd, short type, off_t start, off_t len,
                  pid_t holder)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = start;
    fl.l_len = len;
    if (fcntl(fd, cmd, &fl) < 0) {
        printf("%s: -1 %s\n", what, ename(errno));
    } else if (fl.l_type == F_UNLCK) {
        printf("%s: unlocked\n", what);
    } else {
        printf("%s: %s start %ld len %ld whence %d pid %s\n", what,
               fl.l_type == F_WRLCK ? "write" : "read", (long)fl.l_start, (long)fl.l_len,
               fl.l_whence,
               fl.l_pid == holder ? "holder" : fl.l_pid == -1 ? "-1" : "other");
    }
    fflush(stdout);
}

static int openf(int flags)
{
    int fd = open(path, flags | O_CREAT, 0644);
    if (fd < 0) {
        perror(path);
        exit(2);
    }
    return fd;
}

/* Run f(arg) in a child, return its exit status (or -1). */
static int child(int (*f)(int), int arg)
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0)
        _exit(f(arg));
    int st;
    waitpid(c, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* --- counter: N processes increment a number in a file under a lock --- */

enum { POSIX, OFD, FLOCK };

static int bump(int fd, int how)
{
    switch (how) {
    case POSIX: return lk(fd, F_SETLKW, F_WRLCK, 0, 0);
    case OFD: return lk(fd, F_OFD_SETLKW, F_WRLCK, 0, 0);
    default: return flock(fd, LOCK_EX);
    }
}

static int unbump(int fd, int how)
{
    switch (how) {
    case POSIX: return lk(fd, F_SETLK, F_UNLCK, 0, 0);
    case OFD: return lk(fd, F_OFD_SETLK, F_UNLCK, 0, 0);
    default: return flock(fd, LOCK_UN);
    }
}

static void counter(const char *name, int how, int procs, int rounds)
{
    int fd = openf(O_RDWR | O_TRUNC);
    pwrite(fd, "0\n", 2, 0);
    close(fd);
    fflush(stdout);
    for (int i = 0; i < procs; i++) {
        if (fork() == 0) {
            /* Each its own open: OFD and flock locks then meet. */
            int f = openf(O_RDWR);
            for (int r = 0; r < rounds; r++) {
                if (bump(f, how) < 0)
                    _exit(3);
                char b[32] = {0};
                pread(f, b, sizeof b - 1, 0);
                int n = atoi(b) + 1;
                int len = snprintf(b, sizeof b, "%d\n", n);
                pwrite(f, b, len, 0);
                if (unbump(f, how) < 0)
                    _exit(4);
            }
            _exit(0);
        }
    }
    int bad = 0, st;
    while (wait(&st) > 0)
        bad += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    char b[32] = {0};
    fd = openf(O_RDONLY);
    pread(fd, b, sizeof b - 1, 0);
    close(fd);
    printf("counter %s: %d x %d = %d (failed children %d)\n", name, procs, rounds, atoi(b), bad);
    fflush(stdout);
}

/* --- F_GETLK, ranges, errors --- */

static pid_t parent;

static int getlk_child(int unused)
{
    (void)unused;
    int fd = openf(O_RDWR);
    getlk("child getlk write 0..EOF", fd, F_GETLK, F_WRLCK, 0, 0, parent);
    getlk("child getlk read 0..9", fd, F_GETLK, F_RDLCK, 0, 10, parent);
    getlk("child getlk read 40..49", fd, F_GETLK, F_RDLCK, 40, 10, parent);
    getlk("child getlk write 40..49", fd, F_GETLK, F_WRLCK, 40, 10, parent);
    getlk("child getlk read 60", fd, F_GETLK, F_RDLCK, 60, 1, parent);
    getlk("child getlk write 60", fd, F_GETLK, F_WRLCK, 60, 1, parent);
    getlk("child getlk write 185..195", fd, F_GETLK, F_WRLCK, 185, 11, parent);
    getlk("child getlk write 5000", fd, F_GETLK, F_WRLCK, 5000, 1, parent);
    getlk("child ofd getlk write 60", fd, F_OFD_GETLK, F_WRLCK, 60, 1, parent);
    say("child setlk read 60 (shared)", lk(fd, F_SETLK, F_RDLCK, 60, 1));
    say("child setlk write 12 (conflict)", lk(fd, F_SETLK, F_WRLCK, 12, 1));
    say("child setlk write 45 (free)", lk(fd, F_SETLK, F_WRLCK, 45, 1));
    return 0;
}

static void check_getlk(void)
{
    int fd = openf(O_RDWR | O_TRUNC);
    /* 10..99 write, then 40..49 unlocked, 50..99 read, 190..199 by a
     * negative length, 1000..EOF write. */
    say("setlk write 10..99", lk(fd, F_SETLK, F_WRLCK, 10, 90));
    say("unlock 40..49", lk(fd, F_SETLK, F_UNLCK, 40, 10));
    say("setlk read 50..99", lk(fd, F_SETLK, F_RDLCK, 50, 50));
    say("setlk write 200 len -10", lk(fd, F_SETLK, F_WRLCK, 200, -10));
    say("setlk write 1000..EOF", lk(fd, F_SETLK, F_WRLCK, 1000, 0));
    /* The owner itself never conflicts with its own locks. */
    getlk("own getlk write 0..EOF", fd, F_GETLK, F_WRLCK, 0, 0, parent);
    /* SEEK_CUR and SEEK_END bases. */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_END, .l_start = 4000, .l_len = 1};
    lseek(fd, 0, SEEK_SET);
    pwrite(fd, "abcdef", 6, 0);
    say("setlk write SEEK_END+4000", fcntl(fd, F_SETLK, &fl));
    lseek(fd, 3000, SEEK_SET);
    fl.l_whence = SEEK_CUR;
    fl.l_start = 2000;
    say("setlk write SEEK_CUR+2000", fcntl(fd, F_SETLK, &fl));
    say("child", child(getlk_child, 0));
    close(fd);
}

static void check_errors(void)
{
    int rw = openf(O_RDWR), ro = openf(O_RDONLY), wo = openf(O_WRONLY);
    int op = open(path, O_PATH);
    struct flock fl;
    say("write lock on O_RDONLY", lk(ro, F_SETLK, F_WRLCK, 0, 1));
    say("read lock on O_WRONLY", lk(wo, F_SETLK, F_RDLCK, 0, 1));
    say("ofd write lock on O_RDONLY", lk(ro, F_OFD_SETLK, F_WRLCK, 0, 1));
    say("unlock on O_RDONLY", lk(ro, F_SETLK, F_UNLCK, 0, 1));
    say("getlk write on O_RDONLY", lk(ro, F_GETLK, F_WRLCK, 0, 1));
    say("setlk on O_PATH", lk(op, F_SETLK, F_RDLCK, 0, 1));
    say("getlk on O_PATH", lk(op, F_GETLK, F_RDLCK, 0, 1));
    say("flock on O_PATH", flock(op, LOCK_SH));
    say("setlk bad fd", lk(99, F_SETLK, F_RDLCK, 0, 1));
    say("setlk type 7", lk(rw, F_SETLK, 7, 0, 1));
    say("getlk F_UNLCK", lk(rw, F_GETLK, F_UNLCK, 0, 1));
    say("setlk start -1", lk(rw, F_SETLK, F_RDLCK, -1, 1));
    say("setlk start 5 len -6", lk(rw, F_SETLK, F_RDLCK, 5, -6));
    say("setlk overflow", lk(rw, F_SETLK, F_RDLCK, 0x7fffffffffffffffLL, 2));
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_RDLCK;
    fl.l_whence = 7;
    say("setlk whence 7", fcntl(rw, F_SETLK, &fl));
    fl.l_whence = SEEK_SET;
    fl.l_pid = 5;
    say("ofd setlk l_pid 5", fcntl(rw, F_OFD_SETLK, &fl));
    say("ofd getlk l_pid 5", fcntl(rw, F_OFD_GETLK, &fl));
    say("setlk bad address", fcntl(rw, F_SETLK, (void *)8));
    say("getlk bad address", fcntl(rw, F_GETLK, (void *)8));
    say("flock LOCK_NB only", flock(rw, LOCK_NB));
    say("flock 0", flock(rw, 0));
    say("flock LOCK_SH|LOCK_EX", flock(rw, LOCK_SH | LOCK_EX));
    say("flock LOCK_UN|LOCK_NB", flock(rw, LOCK_UN | LOCK_NB));
    say("flock bad fd", flock(99, LOCK_SH));
    close(rw);
    close(ro);
    close(wo);
    close(op);
}

/* --- the POSIX close rule, fork --- */

static int probe_child(int type)
{
    int fd = openf(O_RDWR);
    getlk("  child sees", fd, F_GETLK, type, 0, 0, parent);
    return 0;
}

static int nolocks_child(int fd)
{
    /* The child inherits the fd but not the lock. */
    getlk("  child getlk via inherited fd", fd, F_GETLK, F_WRLCK, 0, 0, parent);
    say("  child setlk via inherited fd", lk(fd, F_SETLK, F_WRLCK, 0, 0));
    say("  child unlock via inherited fd", lk(fd, F_SETLK, F_UNLCK, 0, 0));
    return 0;
}

static void check_close_rule(void)
{
    int a = openf(O_RDWR | O_TRUNC);
    say("lock via fd a", lk(a, F_SETLK, F_WRLCK, 0, 0));
    say("child", child(nolocks_child, a));
    probe_child(F_RDLCK);
    child(probe_child, F_RDLCK);
    int b = openf(O_RDONLY);
    say("close another fd b of the file", close(b));
    child(probe_child, F_RDLCK);

    say("lock via fd a again", lk(a, F_SETLK, F_WRLCK, 0, 0));
    int d = dup(a);
    say("close a dup", close(d));
    child(probe_child, F_RDLCK);

    say("lock via fd a again", lk(a, F_SETLK, F_WRLCK, 0, 0));
    int c = openf(O_RDONLY);
    say("dup2 over an fd of the file", dup2(0, c));
    child(probe_child, F_RDLCK);
    close(c);

    say("lock via fd a again", lk(a, F_SETLK, F_WRLCK, 0, 0));
    int e = open("/dev/null", O_RDONLY);
    say("close an fd of another file", close(e));
    child(probe_child, F_RDLCK);
    close(a);
}

/* --- OFD locks --- */

static int ofd_child(int a)
{
    int x = openf(O_RDWR);
    say("  child ofd setlk on own open", lk(x, F_OFD_SETLK, F_WRLCK, 0, 1));
    getlk("  child ofd getlk via inherited fd", a, F_OFD_GETLK, F_WRLCK, 0, 1, parent);
    getlk("  child posix getlk", x, F_GETLK, F_WRLCK, 0, 1, parent);
    return 0;
}

static int ofd_release_child(int unused)
{
    (void)unused;
    int x = openf(O_RDWR);
    say("  child ofd setlk", lk(x, F_OFD_SETLK, F_WRLCK, 0, 1));
    return 0;
}

static void check_ofd(void)
{
    int a = openf(O_RDWR | O_TRUNC), b = openf(O_RDWR);
    say("ofd write lock via a", lk(a, F_OFD_SETLK, F_WRLCK, 0, 10));
    say("ofd write lock via b (other open)", lk(b, F_OFD_SETLK, F_WRLCK, 5, 1));
    say("posix write lock via b", lk(b, F_SETLK, F_WRLCK, 5, 1));
    getlk("ofd getlk via b", b, F_OFD_GETLK, F_WRLCK, 0, 0, parent);
    getlk("posix getlk via b", b, F_GETLK, F_WRLCK, 0, 0, parent);
    int c = openf(O_RDONLY);
    say("close another fd", close(c));
    say("ofd write lock via b again", lk(b, F_OFD_SETLK, F_WRLCK, 5, 1));
    int d = dup(a);
    say("ofd lock via a dup (same description)", lk(d, F_OFD_SETLK, F_RDLCK, 0, 5));
    getlk("ofd getlk via b after downgrade", b, F_OFD_GETLK, F_WRLCK, 0, 0, parent);
    say("child", child(ofd_child, a));
    /* The description lives on in d: the lock stays. */
    say("close a", close(a));
    say("child", child(ofd_release_child, 0));
    say("close d (the last fd)", close(d));
    say("child", child(ofd_release_child, 0));
    /* A POSIX lock is not an OFD lock of the same process. */
    say("posix lock via b", lk(b, F_SETLK, F_WRLCK, 100, 1));
    int e = openf(O_RDWR);
    say("ofd lock via e over it", lk(e, F_OFD_SETLK, F_WRLCK, 100, 1));
    getlk("ofd getlk via e", e, F_OFD_GETLK, F_WRLCK, 100, 1, parent);
    close(b);
    close(e);
}

/* --- flock --- */

static int flock_child(int a)
{
    say("  child flock EX|NB on inherited fd", flock(a, LOCK_EX | LOCK_NB));
    int x = openf(O_RDONLY);
    say("  child flock EX|NB on own open", flock(x, LOCK_EX | LOCK_NB));
    say("  child flock UN on inherited fd", flock(a, LOCK_UN));
    say("  child flock EX|NB on own open", flock(x, LOCK_EX | LOCK_NB));
    return 0;
}

static void check_flock(void)
{
    int a = openf(O_RDWR | O_TRUNC), b = openf(O_RDONLY);
    say("flock SH via a", flock(a, LOCK_SH));
    say("flock SH via b", flock(b, LOCK_SH));
    say("flock EX|NB via b (a shares)", flock(b, LOCK_EX | LOCK_NB));
    /* The failed conversion dropped b's shared lock (Linux). */
    say("flock EX|NB via a", flock(a, LOCK_EX | LOCK_NB));
    say("flock SH|NB via b", flock(b, LOCK_SH | LOCK_NB));
    say("fcntl write lock beside flock", lk(a, F_SETLK, F_WRLCK, 0, 0));
    int c = openf(O_RDWR);
    say("flock EX|NB via c", flock(c, LOCK_EX | LOCK_NB));
    close(c);
    say("flock still held after close(c): EX|NB via b", flock(b, LOCK_SH | LOCK_NB));
    say("child", child(flock_child, a));
    /* The child's LOCK_UN on the shared description released a's lock. */
    say("flock SH|NB via b after child", flock(b, LOCK_SH | LOCK_NB));
    say("flock UN via b", flock(b, LOCK_UN));
    say("flock UN via b again", flock(b, LOCK_UN));
    close(a);
    close(b);
}

/* --- waiting: a blocked locker gets the lock when it is released --- */

static int fds[2];

static int blocked_child(int how)
{
    int x = openf(O_RDWR);
    close(fds[0]);
    int r = how == FLOCK ? flock(x, LOCK_EX) : lk(x, how == OFD ? F_OFD_SETLKW : F_SETLKW, F_WRLCK, 0, 1);
    write(fds[1], r == 0 ? "got" : "err", 3);
    return 0;
}

static void check_wait(const char *name, int how)
{
    int a = openf(O_RDWR | O_TRUNC);
    if (how == FLOCK)
        flock(a, LOCK_EX);
    else
        lk(a, how == OFD ? F_OFD_SETLK : F_SETLK, F_WRLCK, 0, 1);
    pipe(fds);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0)
        _exit(blocked_child(how));
    close(fds[1]);
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    int early = poll(&p, 1, 300);
    if (how == FLOCK)
        flock(a, LOCK_UN);
    else if (how == OFD)
        lk(a, F_OFD_SETLK, F_UNLCK, 0, 1); /* the child holds the description too */
    else
        close(a); /* any close releases the process's POSIX locks */
    char buf[4] = {0};
    read(fds[0], buf, 3);
    printf("wait %s: ready before release %d, then %s\n", name, early, buf);
    waitpid(c, 0, 0);
    close(fds[0]);
    if (how != POSIX)
        close(a);
}

/* --- EDEADLK --- */

static void check_deadlock(void)
{
    int a = openf(O_RDWR | O_TRUNC);
    lk(a, F_SETLK, F_WRLCK, 0, 1);
    int p[2];
    pipe(p);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int x = openf(O_RDWR);
        lk(x, F_SETLK, F_WRLCK, 1, 1);
        write(p[1], "x", 1);
        int r = lk(x, F_SETLKW, F_WRLCK, 0, 1);
        _exit(r == 0 ? 0 : errno == EDEADLK ? 1 : 2);
    }
    char ch;
    read(p[0], &ch, 1);
    usleep(200000); /* let the child block on byte 0 */
    int r = lk(a, F_SETLKW, F_WRLCK, 1, 1);
    int mine = r < 0 ? (errno == EDEADLK ? 1 : 2) : 0;
    if (mine == 1)
        lk(a, F_SETLK, F_UNLCK, 0, 1); /* let the child through */
    int st;
    waitpid(c, &st, 0);
    int theirs = WIFEXITED(st) ? WEXITSTATUS(st) : 3;
    /* Which one it is depends on timing; that one does is the check. */
    printf("deadlock: exactly one EDEADLK %s, no other error %s\n",
           mine + theirs == 1 ? "yes" : "no", mine != 2 && theirs < 2 ? "yes" : "no");
    close(a);
    close(p[0]);
    close(p[1]);
}

/* --- signals while waiting --- */

static volatile sig_atomic_t alarms;
static void on_alarm(int s)
{
    (void)s;
    alarms++;
}

static void timer_ms(int ms)
{
    struct itimerval it = {{0, 0}, {ms / 1000, (ms % 1000) * 1000}};
    setitimer(ITIMER_REAL, &it, 0);
}

static void check_signal(const char *name, int how, int restart)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGALRM, &sa, 0);
    int p[2];
    pipe(p);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int x = openf(O_RDWR);
        if (how == FLOCK)
            flock(x, LOCK_EX);
        else
            lk(x, F_SETLK, F_WRLCK, 0, 0);
        write(p[1], "x", 1);
        /* Hold it 600 ms (the parent's alarm comes after 150 ms). */
        usleep(600000);
        _exit(0);
    }
    char ch;
    read(p[0], &ch, 1);
    int a = openf(O_RDWR);
    alarms = 0;
    timer_ms(150);
    int r = how == FLOCK ? flock(a, LOCK_EX) : lk(a, how == OFD ? F_OFD_SETLKW : F_SETLKW, F_WRLCK, 0, 0);
    int e = errno;
    timer_ms(0);
    printf("signal %s%s: %d %s after %d alarm(s)\n", name, restart ? " SA_RESTART" : "", r,
           r < 0 ? ename(e) : "ok", (int)alarms);
    waitpid(c, 0, 0);
    close(a);
    close(p[0]);
    close(p[1]);
    signal(SIGALRM, SIG_DFL);
}

/* --- threads: POSIX locks belong to the process --- */

static int tfd, tfd2;

static void *lock_thread(void *a)
{
    (void)a;
    say("  thread setlk write over the main thread's lock", lk(tfd, F_SETLK, F_WRLCK, 0, 10));
    getlk("  thread getlk", tfd, F_GETLK, F_WRLCK, 0, 0, parent);
    return 0;
}

static void *close_thread(void *a)
{
    (void)a;
    say("  thread closes another fd of the file", close(tfd2));
    return 0;
}

static void check_threads(void)
{
    pthread_t t;
    tfd = openf(O_RDWR | O_TRUNC);
    say("main thread setlk write 0..9", lk(tfd, F_SETLK, F_WRLCK, 0, 10));
    pthread_create(&t, 0, lock_thread, 0);
    pthread_join(t, 0);
    child(probe_child, F_RDLCK);
    tfd2 = openf(O_RDONLY);
    pthread_create(&t, 0, close_thread, 0);
    pthread_join(t, 0);
    child(probe_child, F_RDLCK);
    close(tfd);
}

/* --- locks on pipes --- */

static void check_pipe(void)
{
    int p[2];
    pipe(p);
    say("pipe: read lock on read end", lk(p[0], F_SETLK, F_RDLCK, 0, 0));
    say("pipe: write lock on write end", lk(p[1], F_SETLK, F_WRLCK, 0, 0));
    say("pipe: flock", flock(p[0], LOCK_EX | LOCK_NB));
    getlk("pipe: getlk", p[0], F_GETLK, F_WRLCK, 0, 0, parent);
    close(p[0]);
    close(p[1]);
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : 0;
    parent = getpid();
    snprintf(path, sizeof path, "/tmp/vk-locks-%d", (int)parent);
#define RUN(name, call)                              \
    if (!only || !strcmp(only, name)) {              \
        call;                                        \
    }
    RUN("counter", counter("posix", POSIX, 4, 300));
    RUN("counter-ofd", counter("ofd", OFD, 4, 100));
    RUN("counter-flock", counter("flock", FLOCK, 4, 100));
    RUN("getlk", check_getlk());
    RUN("errors", check_errors());
    RUN("close", check_close_rule());
    RUN("ofd", check_ofd());
    RUN("flock", check_flock());
    RUN("wait", (check_wait("posix", POSIX), check_wait("ofd", OFD), check_wait("flock", FLOCK)));
    RUN("deadlock", check_deadlock());
    RUN("signal", (check_signal("posix", POSIX, 0), check_signal("ofd", OFD, 0),
                   check_signal("flock", FLOCK, 0), check_signal("posix", POSIX, 1),
                   check_signal("flock", FLOCK, 1)));
    RUN("pipe", check_pipe());
    RUN("threads", check_threads());
    unlink(path);
    return 0;
}
