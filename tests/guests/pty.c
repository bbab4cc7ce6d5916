/* Pseudo-terminals as programs use them (issue 23), printed so that a run
 * natively and a run under vkernel can be compared line by line: openpty
 * and ptsname, canonical editing and echo, raw mode, VMIN/VTIME, window
 * sizes, a session's controlling terminal (/dev/tty, tcgetpgrp, TIOCSCTTY),
 * signals from the keyboard (^C, ^Z), SIGWINCH, a hangup when the master
 * closes, EIO on the master once the slave closed, poll, packet mode. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static void hex(const char *what, const char *b, int n) {
    printf("%s %d:", what, n);
    for (int i = 0; i < n; i++)
        printf(" %02x", (unsigned char)b[i]);
    printf("\n");
}

/* Read what the master has now (poll first: never block). */
static int drain(int m, char *buf, int len) {
    struct pollfd p = {m, POLLIN, 0};
    int got = 0;
    while (got < len && poll(&p, 1, 200) == 1 && (p.revents & POLLIN)) {
        int n = read(m, buf + got, len - got);
        if (n <= 0)
            break;
        got += n;
    }
    return got;
}

static volatile int got_sig[65];
static void on_sig(int s) { got_sig[s]++; }

static int open_pair(int *m, int *s) {
    *m = posix_openpt(O_RDWR | O_NOCTTY);
    if (*m < 0 || grantpt(*m) || unlockpt(*m))
        return -1;
    char *name = ptsname(*m);
    printf("ptsname prefix ok: %d\n", name && strncmp(name, "/dev/pts/", 9) == 0);
    *s = open(name, O_RDWR | O_NOCTTY);
    return *s < 0 ? -1 : 0;
}

static void basics(void) {
    int m, s;
    if (open_pair(&m, &s)) {
        printf("open_pair failed %d\n", errno);
        exit(1);
    }
    char *tn = ttyname(s);
    printf("isatty slave %d master %d ttyname matches %d\n", isatty(s), isatty(m),
           tn && strcmp(tn, ptsname(m)) == 0);
    struct stat st;
    fstat(s, &st);
    printf("slave chr %d major %u\n", S_ISCHR(st.st_mode), major(st.st_rdev));
    fstat(m, &st);
    printf("master chr %d rdev %u:%u\n", S_ISCHR(st.st_mode), major(st.st_rdev),
           minor(st.st_rdev));

    struct termios t;
    tcgetattr(s, &t);
    printf("default icanon %d echo %d isig %d icrnl %d onlcr %d vmin %d\n",
           !!(t.c_lflag & ICANON), !!(t.c_lflag & ECHO), !!(t.c_lflag & ISIG),
           !!(t.c_iflag & ICRNL), !!(t.c_oflag & ONLCR), t.c_cc[VMIN]);

    /* Canonical: a line with an erase, ended by CR (ICRNL). */
    char buf[256];
    write(m, "abc\x7f" "d\r", 6);
    int n = read(s, buf, sizeof buf);
    hex("canon read", buf, n);
    n = drain(m, buf, sizeof buf);
    hex("echo", buf, n);

    /* Slave output through ONLCR. */
    write(s, "x\ny", 3);
    n = drain(m, buf, sizeof buf);
    hex("onlcr", buf, n);

    /* A line typed in two writes arrives whole. */
    write(m, "part", 4);
    write(m, "\n", 1);
    n = read(s, buf, sizeof buf);
    hex("line", buf, n);
    drain(m, buf, sizeof buf);

    /* Raw mode. */
    struct termios raw = t;
    cfmakeraw(&raw);
    tcsetattr(s, TCSANOW, &raw);
    write(m, "\x03q\r", 3);
    n = read(s, buf, sizeof buf);
    hex("raw read", buf, n);
    n = drain(m, buf, sizeof buf);
    printf("raw echo %d\n", n);

    /* VMIN 0, VTIME 0: a read returns 0 at once. */
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    tcsetattr(s, TCSANOW, &raw);
    printf("vmin0 read %zd\n", read(s, buf, sizeof buf));
    /* VMIN 0, VTIME 2: waits 0.2 s for a byte, then returns 0. */
    raw.c_cc[VTIME] = 2;
    tcsetattr(s, TCSANOW, &raw);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ssize_t vt = read(s, buf, sizeof buf);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    printf("vtime read %zd waited about 0.2 s %d\n", vt, ms >= 150 && ms < 3000);
    write(m, "k", 1);
    vt = read(s, buf, sizeof buf);
    printf("vtime read with data %zd\n", vt);
    raw.c_cc[VTIME] = 0;
    /* Non-blocking slave read in canonical mode with nothing: EAGAIN. */
    tcsetattr(s, TCSANOW, &t);
    fcntl(s, F_SETFL, O_NONBLOCK);
    errno = 0;
    ssize_t nr = read(s, buf, sizeof buf);
    printf("nonblock read %zd errno %d\n", nr, errno);
    fcntl(s, F_SETFL, 0);

    /* Window size. */
    struct winsize ws = {24, 80, 0, 0}, back = {0};
    ioctl(m, TIOCSWINSZ, &ws);
    ioctl(s, TIOCGWINSZ, &back);
    printf("winsize %d %d\n", back.ws_row, back.ws_col);

    /* Packet mode. */
    int on = 1;
    printf("pkt %d\n", ioctl(m, TIOCPKT, &on));
    write(s, "hi", 2);
    n = drain(m, buf, sizeof buf);
    hex("pkt read", buf, n);
    on = 0;
    ioctl(m, TIOCPKT, &on);

    /* poll: the master is writable, readable once the slave wrote. */
    struct pollfd p = {m, POLLIN | POLLOUT, 0};
    poll(&p, 1, 0);
    printf("master poll in %d out %d\n", !!(p.revents & POLLIN), !!(p.revents & POLLOUT));
    write(s, "z", 1);
    poll(&p, 1, 1000);
    printf("master poll in %d\n", !!(p.revents & POLLIN));
    drain(m, buf, sizeof buf);

    /* The slave closes: the master reads EIO and polls POLLHUP. */
    close(s);
    p.events = POLLIN;
    poll(&p, 1, 1000);
    printf("master poll hup %d\n", !!(p.revents & POLLHUP));
    errno = 0;
    nr = read(m, buf, sizeof buf);
    printf("master read after close %zd errno %d\n", nr, errno);
    close(m);
}

/* A child in a new session takes the slave as its controlling terminal
 * and reports through `rep`; the parent drives the master. */
static void session(void) {
    int m, s;
    if (open_pair(&m, &s)) {
        printf("open_pair failed %d\n", errno);
        exit(1);
    }
    char *name = strdup(ptsname(m));
    int go[2], rep[2];
    pipe(go);
    pipe(rep);
    pid_t pid = fork();
    if (pid == 0) {
        close(m);
        close(s);
        signal(SIGINT, on_sig);
        signal(SIGWINCH, on_sig);
        signal(SIGHUP, on_sig);
        setsid();
        int fd = open(name, O_RDWR); /* becomes the controlling terminal */
        char line[128];
        int tty = open("/dev/tty", O_RDWR);
        int n = snprintf(line, sizeof line, "child: tty open %d fg is me %d sid %d\n",
                         tty >= 0, tcgetpgrp(fd) == getpid(), tcgetsid(fd) == getpid());
        write(rep[1], line, n);
        char c;
        read(go[0], &c, 1); /* parent sent ^C and resized */
        /* The read returns after the ^C interrupted nothing: the line. */
        char buf[64];
        int r = read(fd, buf, sizeof buf);
        n = snprintf(line, sizeof line, "child: sigint %d sigwinch %d read %d\n", got_sig[SIGINT],
                     got_sig[SIGWINCH], r);
        write(rep[1], line, n);
        read(go[0], &c, 1); /* parent closed the master */
        while (!got_sig[SIGHUP])
            usleep(1000);
        errno = 0;
        r = read(fd, buf, sizeof buf);
        int e1 = errno;
        errno = 0;
        int w = write(fd, "x", 1);
        n = snprintf(line, sizeof line, "child: sighup %d read %d write %d errno %d/%d\n",
                     got_sig[SIGHUP], r, w, e1, errno);
        write(rep[1], line, n);
        _exit(0);
    }
    close(s);
    char line[256];
    int n = read(rep[0], line, sizeof line);
    fwrite(line, 1, n, stdout);
    /* ^C (flushes and echoes ^C), a resize, then a line. */
    write(m, "\x03", 1);
    struct winsize ws = {30, 100, 0, 0};
    ioctl(m, TIOCSWINSZ, &ws);
    usleep(100000);
    write(m, "ok\n", 3);
    write(go[1], "g", 1);
    n = read(rep[0], line, sizeof line);
    fwrite(line, 1, n, stdout);
    char buf[256];
    n = drain(m, buf, sizeof buf);
    hex("session echo", buf, n);
    close(m);
    write(go[1], "g", 1);
    n = read(rep[0], line, sizeof line);
    fwrite(line, 1, n, stdout);
    int st;
    waitpid(pid, &st, 0);
    printf("child status %d\n", WEXITSTATUS(st));
}

/* ^Z stops the foreground group: a session leader runs a job in a group
 * of its own in the foreground (its group is not orphaned: the leader is
 * its parent in the same session), sees it stop, continues it. */
static void suspend(void) {
    int m, s;
    if (open_pair(&m, &s)) {
        printf("open_pair failed %d\n", errno);
        exit(1);
    }
    char *name = strdup(ptsname(m));
    int rep[2];
    pipe(rep);
    pid_t pid = fork();
    if (pid == 0) {
        close(m);
        close(s);
        setsid();
        int fd = open(name, O_RDWR);
        signal(SIGTTOU, SIG_IGN);
        pid_t job = fork();
        if (job == 0) {
            setpgid(0, 0);
            tcsetpgrp(fd, getpid());
            write(rep[1], "r", 1);
            char buf[16];
            int n = read(fd, buf, sizeof buf);
            _exit(n);
        }
        setpgid(job, job);
        int st;
        char line[128];
        waitpid(job, &st, WUNTRACED);
        int k = snprintf(line, sizeof line, "job stopped %d by %d\n", WIFSTOPPED(st),
                         WSTOPSIG(st));
        write(rep[1], line, k);
        kill(job, SIGCONT);
        waitpid(job, &st, 0);
        k = snprintf(line, sizeof line, "job then exited %d\n", WEXITSTATUS(st));
        write(rep[1], line, k);
        _exit(0);
    }
    close(s);
    char c, line[256];
    read(rep[0], &c, 1);
    usleep(100000);
    write(m, "\x1a", 1);
    int n = read(rep[0], line, sizeof line);
    fwrite(line, 1, n, stdout);
    write(m, "abc\n", 4);
    n = read(rep[0], line, sizeof line);
    fwrite(line, 1, n, stdout);
    int st;
    waitpid(pid, &st, 0);
    printf("leader exited %d\n", WEXITSTATUS(st));
    close(m);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    basics();
    session();
    suspend();
    return 0;
}
