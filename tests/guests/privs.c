/* capget/capset, sched_setaffinity, clock_settime, execveat (issue 23).
 * Run as an unprivileged-like root: prints what both a vkernel and a
 * Linux without capabilities agree on. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc > 1) {
        printf("exec'd: %s\n", argv[1]);
        return 0;
    }
    setvbuf(stdout, 0, _IONBF, 0);
    struct { unsigned version; int pid; } h = {0x12345678, 0};
    int r = syscall(SYS_capget, &h, NULL);
    printf("capget probe: %d version %#x\n", r, h.version);
    cpu_set_t set;
    CPU_ZERO(&set);
    r = sched_setaffinity(0, sizeof set, &set);
    int e = errno;
    CPU_SET(0, &set);
    int ok = sched_setaffinity(0, sizeof set, &set);
    printf("affinity: empty %d %s, cpu0 %d\n", r, strerror(e), ok);
    int d = open("/bin", O_RDONLY | O_DIRECTORY);
    char *args[] = {"true", "relative", NULL};
    char *env[] = {NULL};
    r = syscall(SYS_execveat, d, "nonexistent-xyz", args, env, 0);
    e = errno;
    printf("execveat missing: %d %s\n", r, strerror(e));
    r = syscall(SYS_execveat, d, "", args, env, 0);
    e = errno;
    printf("execveat empty path without AT_EMPTY_PATH: %d %s\n", r, strerror(e));
    int self = open(argv[0], O_RDONLY);
    char *again[] = {argv[0], "by fd", NULL};
    syscall(SYS_execveat, self, "", again, env, AT_EMPTY_PATH);
    printf("execveat failed: %s\n", strerror(errno));
    return 1;
}
