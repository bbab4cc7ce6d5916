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
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    execl("/proc/self/exe", "prctl-exec", "exec", (char *)NULL);
    SAY("execl failed %d\n", errno);
    return 1;
}
