/* prctl's options, printed the same natively and under vkernel: the
 * values a fresh process has, setting and reading each back, the
 * argument checks, what a fork child inherits and what execve resets
 * (`prctl` runs itself again with "exec"). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define SAY(...) do { printf(__VA_ARGS__); fflush(stdout); } while (0)
static long R(long x) { return x < 0 ? -errno : x; }

static void names(const char *who) {
    char name[32];
    memset(name, 'x', sizeof name);
    long r = R(prctl(PR_GET_NAME, name, 0, 0, 0));
    name[31] = 0;
    FILE *f = fopen("/proc/self/comm", "r");
    char comm[64] = "?";
    if (f) {
        if (!fgets(comm, sizeof comm, f)) strcpy(comm, "?");
        fclose(f);
    }
    comm[strcspn(comm, "\n")] = 0;
    SAY("%s: get_name %ld [%s] comm [%s]\n", who, r, name, comm);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "exec")) {
        SAY("exec: dumpable %ld keepcaps %ld no_new_privs %ld thp %ld slack %ld\n",
            R(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)), R(prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0)),
            R(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)), R(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)),
            R(prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)));
        names("exec");
        return 0;
    }
    SAY("dumpable %ld keepcaps %ld no_new_privs %ld thp %ld\n", R(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)),
        R(prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0)), R(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)),
        R(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)));
    SAY("set dumpable 0 %ld get %ld; 2 %ld; 1 %ld\n", R(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)),
        R(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)), R(prctl(PR_SET_DUMPABLE, 2, 0, 0, 0)),
        R(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)));
    SAY("set keepcaps 1 %ld get %ld; 5 %ld\n", R(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)),
        R(prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0)), R(prctl(PR_SET_KEEPCAPS, 5, 0, 0, 0)));
    SAY("set name %ld\n", R(prctl(PR_SET_NAME, "a-rather-long-thread-name", 0, 0, 0)));
    names("after set");
    SAY("set name bad %ld\n", R(prctl(PR_SET_NAME, (char *)8, 0, 0, 0)));
    SAY("capbset 0 %ld 41 %ld\n", R(prctl(PR_CAPBSET_READ, 0, 0, 0, 0)),
        R(prctl(PR_CAPBSET_READ, 41, 0, 0, 0)));
    SAY("slack set %ld get %ld\n", R(prctl(PR_SET_TIMERSLACK, 12345, 0, 0, 0)),
        R(prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)));
    SAY("nnp bad %ld %ld get bad %ld\n", R(prctl(PR_SET_NO_NEW_PRIVS, 2, 0, 0, 0)),
        R(prctl(PR_SET_NO_NEW_PRIVS, 1, 1, 0, 0)), R(prctl(PR_GET_NO_NEW_PRIVS, 1, 0, 0, 0)));
    SAY("nnp %ld get %ld\n", R(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)),
        R(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)));
    SAY("thp %ld get %ld bad %ld\n", R(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)),
        R(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)), R(prctl(PR_SET_THP_DISABLE, 1, 1, 0, 0)));
    int *tid = NULL;
    long r = R(prctl(PR_GET_TID_ADDRESS, &tid, 0, 0, 0));
    SAY("tid address %ld set %d\n", r, tid != NULL);
    SAY("unknown %ld\n", R(prctl(9999, 0, 0, 0, 0)));
    pid_t c = fork();
    if (c == 0) {
        SAY("child: keepcaps %ld nnp %ld thp %ld slack %ld\n", R(prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0)),
            R(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)), R(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)),
            R(prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)));
        names("child");
        _exit(0);
    }
    waitpid(c, NULL, 0);
    /* A child subreaper adopts its orphaned grandchildren: one that ends
     * after its parent, one that ended before (a zombie when adopted). */
    int on = 9;
    SAY("subreaper get %ld [%d]\n", R(prctl(PR_GET_CHILD_SUBREAPER, &on, 0, 0, 0)), on);
    SAY("subreaper set %ld\n", R(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)));
    prctl(PR_GET_CHILD_SUBREAPER, &on, 0, 0, 0);
    SAY("subreaper now %d\n", on);
    int p[2];
    if (pipe(p)) return 1;
    pid_t me = getpid();
    c = fork();
    if (c == 0) {
        int child_on = 9;
        prctl(PR_GET_CHILD_SUBREAPER, &child_on, 0, 0, 0);
        SAY("middle: subreaper %d\n", child_on);
        if (fork() == 0) {
            /* Ends at once: a zombie when its parent ends. */
            _exit(5);
        }
        if (fork() == 0) {
            char b;
            close(p[1]);
            read(p[0], &b, 1); /* until the middle process is gone */
            SAY("late: adopted by the subreaper %d\n", getppid() == me);
            _exit(7);
        }
        usleep(100000);
        _exit(3);
    }
    close(p[0]);
    int st = 0;
    waitpid(c, &st, 0);
    SAY("middle ended %d\n", WEXITSTATUS(st));
    close(p[1]);
    int codes = 0;
    for (int i = 0; i < 2; i++) {
        pid_t w = wait(&st);
        if (w > 0) codes += WEXITSTATUS(st);
    }
    SAY("adopted ends: sum %d, then %ld\n", codes, R(wait(&st)));
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    execl("/proc/self/exe", "prctl-exec", "exec", (char *)NULL);
    SAY("execl failed %d\n", errno);
    return 1;
}
