/* Scheduler micro-benchmarks, measured by the program itself:
 * ctx_switch_ns: two processes ping-pong a byte through two pipes (one
 * round trip is two switches), pinned to one CPU where the OS allows;
 * fork_exit_wait_us: fork, the child _exits, the parent waits;
 * unix_pingpong_ns: one round trip of a byte over an AF_UNIX socketpair
 * between two processes; unix_stream_mib_s: 32 MiB sent in 1 MiB writes
 * over a socketpair to the other process; unix_evloop_ns: one turn of an
 * event loop in one process (send 64 bytes on a non-blocking socketpair,
 * epoll_wait finds the other end readable, recv them). */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "now.h"

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 2000;
    int forks = argc > 2 ? atoi(argv[2]) : 200;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    sched_setaffinity(0, sizeof one, &one);
    int a[2], b[2];
    if (pipe(a) || pipe(b)) return 1;
    pid_t p = fork();
    char c = 'x';
    if (p == 0) {
        for (int i = 0; i < rounds; i++) {
            if (read(a[0], &c, 1) != 1 || write(b[1], &c, 1) != 1) _exit(1);
        }
        _exit(0);
    }
    double t0 = now_ns();
    for (int i = 0; i < rounds; i++) {
        if (write(a[1], &c, 1) != 1 || read(b[0], &c, 1) != 1) return 1;
    }
    double t1 = now_ns();
    waitpid(p, NULL, 0);
    printf("ctx_switch_ns %.1f\n", (t1 - t0) / rounds / 2);
    t0 = now_ns();
    for (int i = 0; i < forks; i++) {
        pid_t q = fork();
        if (q == 0) _exit(0);
        if (q < 0 || waitpid(q, NULL, 0) != q) return 2;
    }
    t1 = now_ns();
    printf("fork_exit_wait_us %.2f\n", (t1 - t0) / forks / 1e3);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 3;
    p = fork();
    if (p == 0) {
        for (int i = 0; i < rounds; i++) {
            if (read(sv[1], &c, 1) != 1 || write(sv[1], &c, 1) != 1) _exit(1);
        }
        _exit(0);
    }
    t0 = now_ns();
    for (int i = 0; i < rounds; i++) {
        if (write(sv[0], &c, 1) != 1 || read(sv[0], &c, 1) != 1) return 4;
    }
    t1 = now_ns();
    waitpid(p, NULL, 0);
    printf("unix_pingpong_ns %.1f\n", (t1 - t0) / rounds);
    static char buf[1 << 20];
    const long total = 32L << 20;
    p = fork();
    if (p == 0) {
        for (long sent = 0; sent < total; sent += sizeof buf) {
            for (size_t off = 0; off < sizeof buf;) {
                ssize_t n = write(sv[1], buf + off, sizeof buf - off);
                if (n <= 0) _exit(1);
                off += n;
            }
        }
        _exit(0);
    }
    t0 = now_ns();
    for (long got = 0; got < total;) {
        ssize_t n = read(sv[0], buf, sizeof buf);
        if (n <= 0) return 5;
        got += n;
    }
    t1 = now_ns();
    waitpid(p, NULL, 0);
    printf("unix_stream_mib_s %.1f\n", 32.0 / ((t1 - t0) / 1e9));
    int ev[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, ev) != 0) return 6;
    int ep = epoll_create1(0);
    struct epoll_event e = {EPOLLIN, {.fd = ev[1]}}, out[4];
    epoll_ctl(ep, EPOLL_CTL_ADD, ev[1], &e);
    long turns = rounds * 10L;
    t0 = now_ns();
    for (long i = 0; i < turns; i++) {
        if (send(ev[0], buf, 64, 0) != 64) return 7;
        if (epoll_wait(ep, out, 4, -1) != 1) return 8;
        if (recv(ev[1], buf, sizeof buf, 0) != 64) return 9;
    }
    t1 = now_ns();
    printf("unix_evloop_ns %.1f\n", (t1 - t0) / turns);
    return 0;
}
