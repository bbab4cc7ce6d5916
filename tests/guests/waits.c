/* Calls that wait, and what ends their waits: pipes that fill up, poll and
 * select with timeouts, timers (alarm, setitimer), pause, sigsuspend,
 * futex timeouts, nanosleep interrupted by a handler, sendfile into a full
 * pipe, stop and continue. Prints one line per check; the test compares
 * the output with the same binary run natively.
 *
 * Usage: waits [CHECK]  (no argument: every check but "alarm-exit")
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* <linux/futex.h> is not in musl's headers. */
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* Elapsed time rounded to a coarse bucket, so that output is stable. */
static const char *took(double t0, double want)
{
    double d = now() - t0;
    if (d < want * 0.8)
        return "early";
    if (d > want + 2.0)
        return "late";
    return "on-time";
}

static volatile sig_atomic_t got;
static void on_sig(int s) { got = s; }

static void handler(int sig, int restart)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(sig, &sa, 0);
}

/* A 1 MiB blocking write to a pipe is written whole while a child drains. */
static void big_write(void)
{
    int p[2];
    pipe(p);
    pid_t c = fork();
    if (c == 0) {
        close(p[1]);
        char buf[4096];
        long total = 0;
        ssize_t n;
        while ((n = read(p[0], buf, sizeof buf)) > 0)
            total += n;
        _exit(total == (1 << 20) ? 0 : 1);
    }
    close(p[0]);
    char *big = calloc(1, 1 << 20);
    ssize_t w = write(p[1], big, 1 << 20);
    close(p[1]);
    int st;
    waitpid(c, &st, 0);
    printf("big-write: wrote %zd, reader %s\n", w, WEXITSTATUS(st) == 0 ? "got all" : "short");
    free(big);
}

/* poll: an empty pipe is not readable, a timeout is honoured, a pipe whose
 * writer is gone reports POLLHUP. */
static void polls(void)
{
    int p[2];
    pipe(p);
    struct pollfd f = {p[0], POLLIN, 0};
    double t0 = now();
    int r = poll(&f, 1, 300);
    printf("poll-empty: %d revents=%#x %s\n", r, f.revents, took(t0, 0.3));
    t0 = now();
    r = poll(0, 0, 200);
    printf("poll-none: %d %s\n", r, took(t0, 0.2));
    write(p[1], "x", 1);
    r = poll(&f, 1, -1);
    printf("poll-data: %d revents=%#x\n", r, f.revents);
    close(p[1]);
    char c;
    read(p[0], &c, 1);
    r = poll(&f, 1, 1000);
    printf("poll-hup: %d revents=%#x\n", r, f.revents);
    close(p[0]);

    pipe(p);
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    struct timeval tv = {0, 250000};
    t0 = now();
    r = select(p[0] + 1, &rs, 0, 0, &tv);
    printf("select-empty: %d %s\n", r, took(t0, 0.25));
    write(p[1], "y", 1);
    FD_SET(p[0], &rs);
    tv.tv_sec = 5;
    r = select(p[0] + 1, &rs, 0, 0, &tv);
    printf("select-data: %d isset=%d\n", r, FD_ISSET(p[0], &rs));
    /* A full pipe is not writable. */
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    char buf[4096] = {0};
    while (write(p[1], buf, sizeof buf) > 0)
        ;
    struct pollfd g = {p[1], POLLOUT, 0};
    r = poll(&g, 1, 100);
    printf("poll-full: %d revents=%#x\n", r, g.revents);
    close(p[0]);
    close(p[1]);
}

/* Fork a child that writes the byte `b` to `fd` after `ns` ns and exits. */
static pid_t write_later(int fd, long ns, char b)
{
    pid_t c = fork();
    if (c == 0) {
        struct timespec d = {0, ns};
        nanosleep(&d, 0);
        write(fd, &b, 1);
        _exit(0);
    }
    return c;
}

/* A child writes to a pipe after a while; poll in the parent wakes. */
static void poll_wakes(void)
{
    int p[2];
    pipe(p);
    pid_t c = write_later(p[1], 200000000, 'z');
    struct pollfd f = {p[0], POLLIN, 0};
    double t0 = now();
    int r = poll(&f, 1, 10000);
    printf("poll-wake: %d revents=%#x %s\n", r, f.revents, took(t0, 0.2));
    waitpid(c, 0, 0);
    close(p[0]);
    close(p[1]);
}

static void timers(void)
{
    handler(SIGALRM, 0);
    got = 0;
    double t0 = now();
    alarm(1);
    int r = pause();
    printf("pause: %d errno=%s sig=%d %s\n", r, strerror(errno), got, took(t0, 1.0));

    struct itimerval it = {{0, 0}, {0, 300000}};
    got = 0;
    t0 = now();
    setitimer(ITIMER_REAL, &it, 0);
    sigset_t none;
    sigemptyset(&none);
    r = sigsuspend(&none);
    printf("sigsuspend: %d errno=%s sig=%d %s\n", r, strerror(errno), got, took(t0, 0.3));

    /* alarm's return value: the seconds left of the previous one. */
    alarm(5);
    unsigned left = alarm(0);
    printf("alarm-left: %u\n", left);

    /* nanosleep interrupted by a handler: EINTR and the time left. */
    got = 0;
    struct itimerval it2 = {{0, 0}, {0, 200000}};
    setitimer(ITIMER_REAL, &it2, 0);
    struct timespec ts = {5, 0}, rem = {0, 0};
    t0 = now();
    r = nanosleep(&ts, &rem);
    printf("nanosleep-intr: %d errno=%s rem>=4s=%d %s\n", r, strerror(errno),
           rem.tv_sec >= 4, took(t0, 0.2));

    /* A pipe read with SA_RESTART restarts after the handler. */
    handler(SIGALRM, 1);
    int p[2];
    pipe(p);
    pid_t c = write_later(p[1], 500000000, 'r');
    setitimer(ITIMER_REAL, &it2, 0);
    char ch = 0;
    r = read(p[0], &ch, 1);
    printf("read-restart: %d %c\n", r, ch);
    waitpid(c, 0, 0);
    /* Without SA_RESTART it ends with EINTR. */
    handler(SIGALRM, 0);
    setitimer(ITIMER_REAL, &it2, 0);
    r = read(p[0], &ch, 1);
    printf("read-eintr: %d errno=%s\n", r, strerror(errno));
    close(p[0]);
    close(p[1]);
}

static void futexes(void)
{
    static uint32_t word = 7;
    struct timespec ts = {0, 300000000};
    double t0 = now();
    long r = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 7, &ts, 0, 0);
    printf("futex-timeout: %ld errno=%s %s\n", r, strerror(errno), took(t0, 0.3));
    r = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 8, &ts, 0, 0);
    printf("futex-mismatch: %ld errno=%s\n", r, strerror(errno));
    r = syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0);
    printf("futex-wake-none: %ld\n", r);
}

static void sendfiles(void)
{
    int p[2], q[2];
    pipe(p);
    pipe(q);
    errno = 0;
    long r = sendfile(q[0], p[0], 0, 9);
    printf("sendfile-rdonly-out: %ld errno=%s\n", r, strerror(errno));
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
}

static void stop_cont(void)
{
    pid_t c = fork();
    if (c == 0) {
        struct timespec d = {0, 300000000};
        nanosleep(&d, 0);
        _exit(7);
    }
    kill(c, SIGSTOP);
    int st;
    pid_t w = waitpid(c, &st, WUNTRACED);
    printf("stopped: %d sig=%d\n", w == c && WIFSTOPPED(st), WIFSTOPPED(st) ? WSTOPSIG(st) : 0);
    kill(c, SIGCONT);
    w = waitpid(c, &st, WCONTINUED);
    printf("continued: %d\n", w == c && WIFCONTINUED(st));
    w = waitpid(c, &st, 0);
    printf("exited: %d code=%d\n", w == c && WIFEXITED(st), WEXITSTATUS(st));
}

int main(int argc, char **argv)
{
    setvbuf(stdout, 0, _IONBF, 0);
    const char *only = argc > 1 ? argv[1] : 0;
    if (only && !strcmp(only, "alarm-exit")) {
        /* Killed by SIGALRM while spinning: exit status 142. */
        alarm(1);
        for (;;)
            ;
    }
    if (only && !strcmp(only, "vtalarm-exit")) {
        struct itimerval it = {{0, 0}, {0, 200000}};
        setitimer(ITIMER_VIRTUAL, &it, 0);
        for (;;)
            ;
    }
#define RUN(name, fn)                      \
    if (!only || !strcmp(only, name))      \
        fn();
    RUN("big-write", big_write);
    RUN("polls", polls);
    RUN("poll-wakes", poll_wakes);
    RUN("timers", timers);
    RUN("futexes", futexes);
    RUN("sendfiles", sendfiles);
    RUN("stop-cont", stop_cont);
    return 0;
}
