/* vfork and posix_spawn as programs rely on them (issue 23): the parent
 * waits until the child execs or exits, and sees what the child wrote
 * (posix_spawn's child reports a failed exec that way); the parent resumes
 * at the child's exec even if the new program waits for it. Printed for a
 * comparison with a native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static volatile int shared_global;

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    pid_t pid;
    char *missing[] = {"/nonexistent/prog", 0};
    int r = posix_spawn(&pid, missing[0], NULL, NULL, missing, environ);
    printf("spawn missing: %d\n", r);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 3, "/nonexistent/dir/file", O_RDONLY, 0);
    char *t[] = {"/bin/true", 0};
    r = posix_spawn(&pid, t[0], &fa, NULL, t, environ);
    printf("spawn bad file action: %d\n", r);
    posix_spawn_file_actions_destroy(&fa);

    r = posix_spawn(&pid, t[0], NULL, NULL, t, environ);
    int st = -1;
    waitpid(pid, &st, 0);
    printf("spawn true: %d status %d\n", r, WEXITSTATUS(st));

    /* vfork: the child's writes are the parent's. */
    volatile int on_stack = 1;
    shared_global = 1;
    pid = vfork();
    if (pid == 0) {
        on_stack = 42;
        shared_global = 43;
        _exit(7);
    }
    waitpid(pid, &st, 0);
    printf("vfork: stack %d global %d status %d\n", on_stack, shared_global, WEXITSTATUS(st));

    /* vfork + exec: the parent resumes once the child execs. */
    shared_global = 0;
    pid = vfork();
    if (pid == 0) {
        shared_global = 5;
        execve(t[0], t, environ);
        _exit(127);
    }
    printf("vfork exec: global %d\n", shared_global);
    waitpid(pid, &st, 0);
    printf("vfork exec status %d\n", WEXITSTATUS(st));
    /* The parent resumes at the child's exec even when the new program
     * waits for the parent (here: for input on a pipe). */
    int fds[2];
    pipe(fds);
    pid = vfork();
    if (pid == 0) {
        dup2(fds[0], 0);
        close(fds[0]);
        close(fds[1]);
        char *cat[] = {"/bin/sh", "-c", "read line; test \"$line\" = hello", 0};
        execve(cat[0], cat, environ);
        _exit(127);
    }
    close(fds[0]);
    write(fds[1], "hello\n", 6);
    close(fds[1]);
    waitpid(pid, &st, 0);
    printf("vfork exec of a reader: status %d\n", WEXITSTATUS(st));
    return 0;
}
