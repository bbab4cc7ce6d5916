/* TCP over loopback, measured by the program itself (vkbench net):
 * loopback_gbps: 64 MiB from one process to another over 127.0.0.1 in
 * 256 KiB writes; tcp_rr_ns: a byte's round trip between two processes
 * (TCP_NODELAY); tcp_conn_per_s: connect, accept and close both ends, in
 * one process. `netbench ROUNDS CONNS`. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "now.h"

static int listener(struct sockaddr_in *a) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    a->sin_family = AF_INET;
    a->sin_port = 0;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l, (void *)a, sizeof *a) || listen(l, 64)) exit(2);
    socklen_t al = sizeof *a;
    getsockname(l, (void *)a, &al);
    return l;
}

/* A child connected to `a` that runs `body` on its socket, then exits. */
static pid_t child(struct sockaddr_in *a, void (*body)(int, long), long n) {
    pid_t p = fork();
    if (p == 0) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (void *)a, sizeof *a)) _exit(3);
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        body(c, n);
        _exit(0);
    }
    return p;
}

static char buf[256 << 10];

static void send_all(int c, long total) {
    for (long sent = 0; sent < total; sent += sizeof buf)
        for (size_t off = 0; off < sizeof buf;) {
            ssize_t n = write(c, buf + off, sizeof buf - off);
            if (n <= 0) _exit(4);
            off += n;
        }
}

static void echo(int c, long rounds) {
    char b;
    for (long i = 0; i < rounds; i++)
        if (read(c, &b, 1) != 1 || write(c, &b, 1) != 1) _exit(5);
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 2000;
    long conns = argc > 2 ? atol(argv[2]) : 500;
    struct sockaddr_in a;
    int l = listener(&a);
    const long total = 64L << 20;
    pid_t p = child(&a, send_all, total);
    int s = accept(l, 0, 0);
    double t0 = now_ns();
    for (long got = 0; got < total;) {
        ssize_t n = read(s, buf, sizeof buf);
        if (n <= 0) return 6;
        got += n;
    }
    double t1 = now_ns();
    waitpid(p, NULL, 0);
    close(s);
    printf("loopback_gbps %.3f\n", total * 8.0 / (t1 - t0));
    p = child(&a, echo, rounds);
    s = accept(l, 0, 0);
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char b = 'x';
    t0 = now_ns();
    for (long i = 0; i < rounds; i++)
        if (write(s, &b, 1) != 1 || read(s, &b, 1) != 1) return 7;
    t1 = now_ns();
    waitpid(p, NULL, 0);
    close(s);
    printf("tcp_rr_ns %.1f\n", (t1 - t0) / rounds);
    t0 = now_ns();
    for (long i = 0; i < conns; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (void *)&a, sizeof a)) return 8;
        int x = accept(l, 0, 0);
        close(x);
        close(c);
    }
    t1 = now_ns();
    printf("tcp_conn_per_s %.1f\n", conns / ((t1 - t0) / 1e9));
    return 0;
}
