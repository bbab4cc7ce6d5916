/* Privileged calls under vkernel answer as for a root without
 * capabilities; mlock and friends and utime work (issue 23). */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

static void show(const char *what, long r) {
    printf("%s: %ld %d\n", what, r, r < 0 ? errno : 0);
}

int main(void) {
    setvbuf(stdout, 0, _IONBF, 0);
    show("mount", mount("none", "/tmp", "tmpfs", 0, 0));
    show("chroot", chroot("/tmp"));
    show("unshare(0)", unshare(0));
    show("unshare(NEWNET)", unshare(CLONE_NEWNET));
    char *p = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    show("mlock", mlock(p, 8192));
    show("munlock", munlock(p, 8192));
    munmap(p, 8192);
    show("mlock unmapped", mlock(p, 8192));
    show("mlockall", mlockall(MCL_CURRENT));
    show("munlockall", munlockall());
    show("personality", personality(0xffffffff));
    FILE *f = fopen("/tmp/vk-denied-utime", "w");
    fclose(f);
    struct utimbuf t = {1000, 2000};
    show("utime", utime("/tmp/vk-denied-utime", &t));
    struct stat st;
    stat("/tmp/vk-denied-utime", &st);
    printf("times %ld %ld\n", (long)st.st_atime, (long)st.st_mtime);
    unlink("/tmp/vk-denied-utime");
    return 0;
}
