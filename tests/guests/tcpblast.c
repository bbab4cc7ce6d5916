/* TCP bulk throughput (vkbench net's tap figures):
 *   tcpblast recv PORT           accept one connection, read to EOF, print
 *                                "gbps X bytes N" timed from the first byte
 *   tcpblast send HOST PORT MIB  connect, write MIB MiB in 256 KiB writes
 * Static, so it runs the same natively and as a vproc. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static char buf[256 << 10];

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "recv")) {
        int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
        if (bind(l, (void *)&a, sizeof a) || listen(l, 1)) {
            perror("bind/listen");
            return 1;
        }
        printf("listening\n");
        fflush(stdout);
        int c = accept(l, 0, 0);
        if (c < 0) {
            perror("accept");
            return 1;
        }
        long long total = 0;
        double t0 = 0;
        for (;;) {
            ssize_t n = read(c, buf, sizeof buf);
            if (n <= 0)
                break;
            if (!total)
                t0 = now();
            total += n;
        }
        double dt = now() - t0;
        printf("gbps %.3f bytes %lld\n", total * 8 / dt / 1e9, total);
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "send")) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
        inet_pton(AF_INET, argv[2], &a.sin_addr);
        for (int i = 0; connect(s, (void *)&a, sizeof a); i++) {
            if (i == 100) {
                perror("connect");
                return 1;
            }
            close(s);
            s = socket(AF_INET, SOCK_STREAM, 0);
            usleep(50000);
        }
        long long left = atoll(argv[4]) << 20;
        memset(buf, 'x', sizeof buf);
        double t0 = now();
        while (left > 0) {
            ssize_t n = write(s, buf, left < (long long)sizeof buf ? left : (long long)sizeof buf);
            if (n <= 0) {
                perror("write");
                return 1;
            }
            left -= n;
        }
        close(s);
        printf("sent in %.3f s\n", now() - t0);
        return 0;
    }
    fprintf(stderr, "usage: tcpblast recv PORT | send HOST PORT MIB\n");
    return 2;
}
