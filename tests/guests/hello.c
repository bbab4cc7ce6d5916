/* Prints its arguments and some libc basics; exits with 3. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/utsname.h>
#include <time.h>
#include <errno.h>
#include <sys/syscall.h>

int main(int argc, char **argv) {
    printf("hello from %s\n", argc > 0 ? "a static program" : "?");
    for (int i = 1; i < argc; i++)
        printf("argv[%d] = %s\n", i, argv[i]);
    struct utsname u;
    if (uname(&u) == 0)
        printf("sysname %s machine %s\n", u.sysname, u.machine);
    struct timespec ts;
    printf("clock_gettime %d\n", clock_gettime(CLOCK_MONOTONIC, &ts));
    printf("getpid>0 %d getppid>0 %d\n", getpid() > 0, getppid() > 0);
    char buf[64];
    snprintf(buf, sizeof buf, "%.3f %e %g", 3.14159, 1e-10, 2.5);
    puts(buf);
    long r = syscall(999);
    printf("syscall 999: %ld errno %d\n", r, errno);
    fprintf(stderr, "to stderr\n");
    fflush(stdout);
    return 3;
}
