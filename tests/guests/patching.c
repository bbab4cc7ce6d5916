/* Syscall patching (linux::mm::patch): served calls from several threads
 * and sites, then a fork, then a GS base of the program's own (which puts
 * every patched site back), then more calls. Prints a deterministic
 * summary; with argument "maps" it also prints whether /proc/self/maps
 * names the stub pages (only under the vkernel). Usage: patching ITERS [maps] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ARCH_SET_GS 0x1001
#define ARCH_GET_GS 0x1004

static long iters;

/* A `mov eax, N; syscall` site of our own, whatever the C library does. */
static long raw_getppid(void) {
    long r;
    __asm__ volatile("mov $110, %%eax\n\tsyscall" : "=a"(r) : : "rcx", "r11", "memory");
    return r;
}

static long loop(void) {
    pid_t pid = getpid(), ppid = getppid();
    long tid = syscall(SYS_gettid);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < iters; i++) {
        if (getpid() != pid || raw_getppid() != ppid || syscall(SYS_gettid) != tid) return 1;
        if (clock_gettime(CLOCK_MONOTONIC, &b) != 0) return 2;
        if (b.tv_sec < a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec < a.tv_nsec)) return 3;
        a = b;
    }
    return 0;
}

static void *thread(void *arg) {
    (void)arg;
    return (void *)loop();
}

static int stubs_in_maps(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int found = 0;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "[vkernel-syscalls]") && strstr(line, "r-xp")) found = 1;
    fclose(f);
    return found;
}

int main(int argc, char **argv) {
    iters = argc > 1 ? atol(argv[1]) : 20000;
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, thread, NULL);
    long main_r = loop();
    long r = main_r;
    for (int i = 0; i < 3; i++) {
        void *v;
        pthread_join(t[i], &v);
        r |= (long)v;
    }
    printf("threads: %ld\n", r);
    if (argc > 2 && strcmp(argv[2], "maps") == 0) printf("stub pages in maps: %d\n", stubs_in_maps());
    pid_t c = fork();
    if (c == 0) _exit(loop());
    int st = 0;
    waitpid(c, &st, 0);
    printf("child: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    /* A GS base of our own: the sites go back, GS stays ours. */
    static long gsvar[2] = {0x1234, 0x5678};
    printf("set gs: %ld\n", syscall(SYS_arch_prctl, ARCH_SET_GS, gsvar));
    printf("after gs: %ld\n", loop());
    long v;
    __asm__ volatile("mov %%gs:8, %0" : "=r"(v));
    unsigned long got = 0;
    syscall(SYS_arch_prctl, ARCH_GET_GS, &got);
    printf("gs:8 = %lx, gs base is ours: %d\n", v, got == (unsigned long)gsvar);
    return (int)(r | main_r);
}
