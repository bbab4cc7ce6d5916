/* splice, tee and vmsplice (issue 23): prints the same natively and
 * under vkernel. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static void show(const char *what, ssize_t r) {
    if (r < 0)
        printf("%s: -1 %s\n", what, strerror(errno));
    else
        printf("%s: %zd\n", what, r);
}

int main(void) {
    setvbuf(stdout, 0, _IONBF, 0);
    int a[2], b[2];
    pipe(a);
    pipe(b);
    write(a[1], "hello world", 11);
    show("tee 5", tee(a[0], b[1], 5, 0));
    char buf[64] = {0};
    show("read teed", read(b[0], buf, sizeof buf));
    printf("teed: %s\n", buf);
    char path[] = "/tmp/vk-splice-XXXXXX";
    int f = mkstemp(path);
    unlink(path);
    write(f, "0123456789", 10);
    loff_t off = 3;
    show("splice pipe->file at 3", splice(a[0], 0, f, &off, 64, 0));
    printf("off now %lld\n", (long long)off);
    memset(buf, 0, sizeof buf);
    pread(f, buf, sizeof buf, 0);
    printf("file: %s\n", buf);
    off = 2;
    show("splice file->pipe from 2", splice(f, &off, b[1], 0, 6, 0));
    printf("off now %lld\n", (long long)off);
    memset(buf, 0, sizeof buf);
    show("read", read(b[0], buf, sizeof buf));
    printf("got: %s\n", buf);
    struct iovec iov[2] = {{"vm", 2}, {"splice", 6}};
    show("vmsplice", vmsplice(a[1], iov, 2, 0));
    memset(buf, 0, sizeof buf);
    read(a[0], buf, sizeof buf);
    printf("vmspliced: %s\n", buf);
    show("splice file->file", splice(f, 0, f, 0, 4, 0));
    off = 0;
    show("splice offset on a pipe", splice(a[0], &off, f, 0, 4, 0));
    show("tee empty nonblock", tee(a[0], b[1], 4, SPLICE_F_NONBLOCK));
    show("splice empty nonblock", splice(a[0], 0, f, 0, 4, SPLICE_F_NONBLOCK));
    close(a[1]);
    show("splice after eof", splice(a[0], 0, b[1], 0, 4, 0));
    return 0;
}
