/* Fork until the system says EAGAIN (every child also forks a short-lived
 * grandchild and then waits); then kill the children and reap them. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int max = argc > 1 ? atoi(argv[1]) : 100000;
    static pid_t kids[100000];
    setvbuf(stdout, NULL, _IONBF, 0);
    int n = 0, eagain = 0, grand_eagain = 0;
    while (n < max) {
        pid_t p = fork();
        if (p < 0) {
            eagain = errno == EAGAIN;
            break;
        }
        if (p == 0) {
            pid_t g = fork();
            if (g == 0) _exit(0);
            if (g > 0) waitpid(g, NULL, 0);
            for (;;) pause();
        }
        kids[n++] = p;
    }
    printf("forked %d children before %s\n", n, eagain ? "EAGAIN" : "the end");
    for (int i = 0; i < n; i++) kill(kids[i], SIGKILL);
    int reaped = 0, st;
    while (wait(&st) > 0)
        if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) reaped++;
    printf("reaped %d killed children\n", reaped);
    (void)grand_eagain;
    return eagain && reaped == n ? 0 : 1;
}
