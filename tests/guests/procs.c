/* Processes: fork (copy-on-write), wait4 statuses, getppid, pipes between
 * processes, kill, execve of /proc/self/exe, vfork, WNOHANG, SIGCHLD. The
 * output is deterministic: it must match a native run. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile int chld;
static void on_chld(int s) { (void)s; chld++; }
static void on_usr1(int s) { (void)s; }

static unsigned sum(const unsigned char *p, size_t n) {
    unsigned s = 0;
    for (size_t i = 0; i < n; i++) s = s * 31 + p[i];
    return s;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && strcmp(argv[1], "execd") == 0) {
        printf("exec'd: argc %d, argv[2] %s\n", argc, argc > 2 ? argv[2] : "-");
        return 5;
    }
    signal(SIGCHLD, on_chld);
    pid_t me = getpid();
    /* fork, getppid, exit status */
    pid_t p = fork();
    if (p == 0) {
        printf("child: getppid is the parent: %s\n", getppid() == me ? "yes" : "no");
        _exit(7);
    }
    int st;
    pid_t w = waitpid(p, &st, 0);
    printf("wait: right pid %s, exited %d, status %d\n", w == p ? "yes" : "no", WIFEXITED(st), WEXITSTATUS(st));
    /* copy-on-write: 4 MiB the child changes */
    size_t n = 4 << 20;
    unsigned char *big = malloc(n);
    for (size_t i = 0; i < n; i++) big[i] = (unsigned char)(i * 7);
    unsigned before = sum(big, n);
    p = fork();
    if (p == 0) {
        for (size_t i = 0; i < n; i += 4096) big[i] ^= 0xff;
        _exit(sum(big, n) != before ? 1 : 0);
    }
    waitpid(p, &st, 0);
    printf("cow: child saw its own copy %d, parent unchanged %s\n", WEXITSTATUS(st), sum(big, n) == before ? "yes" : "no");
    /* a pipe between processes, in both directions of blocking */
    int fd[2];
    pipe(fd);
    p = fork();
    if (p == 0) {
        close(fd[0]);
        char buf[100000];
        memset(buf, 'z', sizeof buf);
        const char *m = "hello through a pipe\n";
        write(fd[1], m, strlen(m));
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        size_t off = 0;
        while (off < sizeof buf) {
            ssize_t k = write(fd[1], buf + off, sizeof buf - off);
            if (k <= 0) _exit(3);
            off += k;
        }
        _exit(0);
    }
    close(fd[1]);
    char rb[4096];
    ssize_t k = read(fd[0], rb, 21);
    printf("pipe: %.*s", (int)k, rb);
    size_t total = 0, zs = 0;
    while ((k = read(fd[0], rb, sizeof rb)) > 0) {
        total += k;
        for (ssize_t i = 0; i < k; i++) zs += rb[i] == 'z';
    }
    close(fd[0]);
    waitpid(p, &st, 0);
    printf("pipe: %zu more bytes, all z %s, writer status %d\n", total, zs == total ? "yes" : "no", WEXITSTATUS(st));
    /* SIGPIPE: writing to a pipe nobody reads */
    pipe(fd);
    p = fork();
    if (p == 0) {
        close(fd[0]);
        /* Let the parent close its read end first. */
        struct timespec ts = {0, 30 * 1000 * 1000};
        nanosleep(&ts, NULL);
        write(fd[1], "x", 1);
        _exit(0);
    }
    close(fd[0]);
    close(fd[1]);
    waitpid(p, &st, 0);
    printf("sigpipe: killed %d by %d\n", WIFSIGNALED(st), WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    /* WNOHANG, kill, pause */
    int ready[2];
    pipe(ready);
    p = fork();
    if (p == 0) {
        signal(SIGUSR1, on_usr1);
        write(ready[1], "r", 1);
        for (;;) pause();
    }
    printf("wnohang: %d\n", waitpid(p, &st, WNOHANG));
    read(ready[0], rb, 1);
    close(ready[0]);
    close(ready[1]);
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
    kill(p, SIGUSR1);
    kill(p, SIGTERM);
    waitpid(p, &st, 0);
    printf("kill: signaled %d by %d\n", WIFSIGNALED(st), WTERMSIG(st));
    /* execve */
    p = fork();
    if (p == 0) {
        char *av[] = {argv[0], "execd", "arg2", NULL};
        execv("/proc/self/exe", av);
        _exit(99);
    }
    waitpid(p, &st, 0);
    printf("exec: status %d\n", WEXITSTATUS(st));
    /* vfork */
    p = vfork();
    if (p == 0) _exit(11);
    waitpid(p, &st, 0);
    printf("vfork: status %d\n", WEXITSTATUS(st));
    /* no children left */
    int r = wait(&st);
    printf("wait with no children: %d errno ECHILD %s\n", r, errno == ECHILD ? "yes" : "no");
    printf("sigchld handled: %s\n", chld > 0 ? "yes" : "no");
    r = kill(999999, 0);
    printf("kill(no such pid): %d errno ESRCH %s\n", r, errno == ESRCH ? "yes" : "no");
    return 0;
}
