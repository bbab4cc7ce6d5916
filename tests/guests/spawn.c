/* posix_spawn (glibc: clone3, then clone with CLONE_VM|CLONE_VFORK) of a
 * shell pipeline, and its exit status through waitpid. Built dynamically
 * (gcc -pie) by tests/linux_dynamic.rs. */
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>

extern char **environ;

int main(void) {
    char *argv[] = {"sh", "-c", "echo child $0 | tr a-z A-Z; exit 5", 0};
    for (int i = 0; i < 3; i++) {
        pid_t pid = 0;
        int st = 0;
        int r = posix_spawn(&pid, "/bin/dash", 0, 0, argv, environ);
        fflush(stdout);
        if (r == 0 && waitpid(pid, &st, 0) != pid)
            return 1;
        printf("spawn %d exit %d\n", r, WEXITSTATUS(st));
        fflush(stdout);
    }
    return 0;
}
