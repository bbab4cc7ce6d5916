/* POSIX message queues (issue 23), printed for a comparison with a native
 * run: attributes, priority order, size and full/empty errors, absolute
 * timeouts, a receiver blocked in another process, mq_notify with a
 * signal, the status line a read of the queue's fd gives, poll, unlink. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile int notified, note_code, note_value;
static void on_note(int s, siginfo_t *si, void *u) {
    (void)s;
    (void)u;
    notified++;
    note_code = si->si_code;
    note_value = si->si_value.sival_int;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    char name[64];
    snprintf(name, sizeof name, "/vk-mq-test-%d", getpid());
    struct mq_attr a = {0, 4, 64, 0};
    mqd_t q = mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, &a);
    printf("open %d\n", q >= 0);
    errno = 0;
    mqd_t again = mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, &a);
    int e = errno;
    printf("excl %d errno %d\n", (int)again, e);
    struct mq_attr bad = {0, 0, 64, 0};
    errno = 0;
    mqd_t b = mq_open("/vk-mq-bad", O_CREAT | O_RDWR, 0600, &bad);
    e = errno;
    printf("zero maxmsg %d errno %d\n", (int)b, e);
    errno = 0;
    b = mq_open("/vk-mq-missing", O_RDWR);
    e = errno;
    printf("missing %d errno %d\n", (int)b, e);

    struct mq_attr got;
    mq_getattr(q, &got);
    printf("attr flags %ld maxmsg %ld msgsize %ld cur %ld\n", got.mq_flags, got.mq_maxmsg,
           got.mq_msgsize, got.mq_curmsgs);

    mq_send(q, "low", 3, 1);
    mq_send(q, "high", 4, 9);
    mq_send(q, "low2", 4, 1);
    char big[100] = {0};
    errno = 0;
    int r = mq_send(q, big, 65, 0);
    e = errno;
    printf("too big %d errno %d\n", r, e);
    errno = 0;
    r = mq_send(q, "p", 1, 40000);
    e = errno;
    printf("bad prio %d errno %d\n", r, e);

    char st[128] = {0};
    ssize_t sn = read(q, st, sizeof st - 1);
    printf("status %zd: %s", sn, st);

    char buf[64];
    unsigned prio;
    errno = 0;
    r = mq_receive(q, buf, 10, &prio);
    e = errno;
    printf("small buffer %d errno %d\n", r, e);
    for (int i = 0; i < 3; i++) {
        ssize_t n = mq_receive(q, buf, sizeof buf, &prio);
        printf("got %.*s prio %u\n", (int)n, buf, prio);
    }

    struct mq_attr nb = {O_NONBLOCK, 0, 0, 0};
    mq_setattr(q, &nb, NULL);
    errno = 0;
    r = mq_receive(q, buf, sizeof buf, &prio);
    e = errno;
    printf("empty nonblock %d errno %d\n", r, e);
    nb.mq_flags = 0;
    mq_setattr(q, &nb, NULL);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    errno = 0;
    r = mq_timedreceive(q, buf, sizeof buf, &prio, &ts);
    e = errno;
    printf("timed out %d errno %d\n", r, e);

    for (int i = 0; i < 4; i++)
        mq_send(q, "f", 1, 0);
    clock_gettime(CLOCK_REALTIME, &ts);
    errno = 0;
    r = mq_timedsend(q, "f", 1, 0, &ts);
    e = errno;
    printf("full timed %d errno %d\n", r, e);
    struct pollfd p = {q, POLLIN | POLLOUT, 0};
    poll(&p, 1, 0);
    printf("poll full in %d out %d\n", !!(p.revents & POLLIN), !!(p.revents & POLLOUT));
    for (int i = 0; i < 4; i++)
        mq_receive(q, buf, sizeof buf, &prio);
    poll(&p, 1, 0);
    printf("poll empty in %d out %d\n", !!(p.revents & POLLIN), !!(p.revents & POLLOUT));

    /* A child blocks in receive; the parent's send wakes it. */
    pid_t c = fork();
    if (c == 0) {
        ssize_t n = mq_receive(q, buf, sizeof buf, &prio);
        _exit(n == 5 && memcmp(buf, "wakey", 5) == 0 ? 0 : 1);
    }
    usleep(100000);
    mq_send(q, "wakey", 5, 3);
    int status;
    waitpid(c, &status, 0);
    printf("child woken %d\n", WEXITSTATUS(status));

    /* Notification by a signal on the empty-to-non-empty change. */
    struct sigaction sa = {0};
    sa.sa_sigaction = on_note;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    struct sigevent ev = {0};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR1;
    ev.sigev_value.sival_int = 77;
    printf("notify %d\n", mq_notify(q, &ev));
    errno = 0;
    r = mq_notify(q, &ev);
    e = errno;
    printf("notify again %d errno %d\n", r, e);
    memset(st, 0, sizeof st);
    pread(q, st, sizeof st - 1, 0);
    printf("status %s", strncmp(st, "QSIZE:0 ", 8) == 0 ? "registered\n" : st);
    mq_send(q, "n", 1, 0);
    for (int i = 0; i < 100 && !notified; i++)
        usleep(10000);
    printf("notified %d code %d value %d\n", notified, note_code, note_value);
    mq_send(q, "m", 1, 0);
    usleep(50000);
    printf("used up %d\n", notified);

    errno = 0;
    b = mq_open("/a/b", O_RDWR);
    e = errno;
    printf("slash %d errno %d\n", (int)b, e);
    mq_close(q);
    printf("unlink %d\n", mq_unlink(name));
    errno = 0;
    r = mq_unlink(name);
    e = errno;
    printf("unlink again %d errno %d\n", r, e);
    return 0;
}
