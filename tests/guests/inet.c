/* AF_INET and AF_INET6 sockets on loopback, printed the same natively and
 * under vkernel: `inet MODE` with MODE one of tcp, udp, v6, errors,
 * many, all. Every line is deterministic: ports are ephemeral, so only
 * their relations are printed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SAY(...) do { printf(__VA_ARGS__); fflush(stdout); } while (0)
static long R(long x) { return x < 0 ? -errno : x; }

static struct sockaddr_in lo4(unsigned short port) {
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* A listening TCP socket on 127.0.0.1 and its port. */
static int listener(unsigned short *port) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = lo4(0);
    bind(l, (void *)&a, sizeof a);
    listen(l, 16);
    socklen_t al = sizeof a;
    getsockname(l, (void *)&a, &al);
    *port = ntohs(a.sin_port);
    return l;
}

static void show_name(const char *what, int s, int peer, unsigned short port) {
    struct sockaddr_storage st;
    socklen_t l = sizeof st;
    long r = R(peer ? getpeername(s, (void *)&st, &l) : getsockname(s, (void *)&st, &l));
    if (r < 0) {
        SAY("%s: %ld\n", what, r);
        return;
    }
    char buf[64] = "?";
    unsigned short p = 0;
    if (st.ss_family == AF_INET) {
        struct sockaddr_in *a = (void *)&st;
        inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
        p = ntohs(a->sin_port);
    } else if (st.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (void *)&st;
        inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
        p = ntohs(a->sin6_port);
    }
    SAY("%s: family %d len %u addr %s port %s\n", what, st.ss_family, (unsigned)l, buf,
        port ? (p == port ? "same" : "other") : (p >= 32768 ? "ephemeral" : p ? "low" : "0"));
}

static void t_tcp(void) {
    unsigned short port;
    int l = listener(&port);
    show_name("listener", l, 0, port);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    show_name("unbound", c, 0, 0);
    struct sockaddr_in a = lo4(port);
    SAY("connect %ld\n", R(connect(c, (void *)&a, sizeof a)));
    SAY("connect again %ld\n", R(connect(c, (void *)&a, sizeof a)));
    show_name("client", c, 0, 0);
    show_name("client peer", c, 1, port);
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    int s = accept(l, (void *)&from, &fl);
    SAY("accept %d len %u family %d\n", s >= 0, (unsigned)fl, from.sin_family);
    show_name("accepted", s, 0, port);
    show_name("accepted peer", s, 1, 0);
    char b[64] = {0};
    SAY("send %ld\n", R(send(c, "hello", 5, 0)));
    SAY("recv %ld %s\n", R(recv(s, b, sizeof b, 0)), b);
    /* Options read back as set. */
    int one = 1, v = -1;
    socklen_t vl = sizeof v;
    SAY("nodelay %ld\n", R(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one)));
    getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &v, &vl);
    SAY("nodelay reads %d\n", v != 0);
    SAY("keepalive %ld\n", R(setsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one)));
    vl = sizeof v;
    getsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &v, &vl);
    SAY("keepalive reads %d\n", v != 0);
    vl = sizeof v;
    getsockopt(c, SOL_SOCKET, SO_TYPE, &v, &vl);
    SAY("type %d\n", v);
    vl = sizeof v;
    getsockopt(c, SOL_SOCKET, SO_DOMAIN, &v, &vl);
    SAY("domain %d\n", v);
    vl = sizeof v;
    getsockopt(c, SOL_SOCKET, SO_PROTOCOL, &v, &vl);
    SAY("protocol %d\n", v);
    /* Half close: the server reads EOF, then answers. */
    SAY("shutdown wr %ld\n", R(shutdown(c, SHUT_WR)));
    SAY("server eof %ld\n", R(recv(s, b, sizeof b, 0)));
    SAY("server answers %ld\n", R(send(s, "bye", 3, 0)));
    memset(b, 0, sizeof b);
    SAY("client reads %ld %s\n", R(recv(c, b, sizeof b, 0)), b);
    close(s);
    SAY("client eof %ld\n", R(recv(c, b, sizeof b, 0)));
    signal(SIGPIPE, SIG_IGN);
    close(c);
    /* A non-blocking connect: EINPROGRESS, writable, SO_ERROR 0, then 0. */
    c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    SAY("nb connect %ld\n", R(connect(c, (void *)&a, sizeof a)));
    struct pollfd p = {c, POLLOUT, 0};
    int pr = poll(&p, 1, 5000);
    SAY("poll %d out %d\n", pr, !!(p.revents & POLLOUT));
    int e = -1;
    socklen_t el = sizeof e;
    getsockopt(c, SOL_SOCKET, SO_ERROR, &e, &el);
    SAY("so_error %d\n", e);
    SAY("nb connect again %ld\n", R(connect(c, (void *)&a, sizeof a)));
    SAY("nb connect third %ld\n", R(connect(c, (void *)&a, sizeof a)));
    s = accept(l, 0, 0);
    /* A peer that closes: EPIPE (SIGPIPE ignored). */
    close(s);
    usleep(10000);
    long w1 = R(send(c, "x", 1, 0));
    usleep(10000);
    long w2 = R(send(c, "x", 1, MSG_NOSIGNAL));
    SAY("send to closed: first %s then %ld\n", w1 == 1 || w1 == -EPIPE || w1 == -ECONNRESET ? "ok" : "bad", w2 == -ECONNRESET ? -EPIPE : w2);
    close(c);
    /* A closed port. */
    close(l);
    c = socket(AF_INET, SOCK_STREAM, 0);
    SAY("connect closed port %ld\n", R(connect(c, (void *)&a, sizeof a)));
    close(c);
    /* Large transfer to a child, epoll-driven on the reading side. */
    l = listener(&port);
    a = lo4(port);
    pid_t ch = fork();
    if (ch == 0) {
        int k = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(k, (void *)&a, sizeof a)) _exit(1);
        static char big[1 << 16];
        for (int i = 0; i < (int)sizeof big; i++) big[i] = (char)(i * 7);
        for (int i = 0; i < 64; i++)
            if (write(k, big, sizeof big) != sizeof big) _exit(2);
        _exit(0);
    }
    s = accept(l, 0, 0);
    fcntl(s, F_SETFL, O_NONBLOCK);
    int ep = epoll_create1(0);
    struct epoll_event ev = {EPOLLIN | EPOLLRDHUP, {.fd = s}}, out;
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    long total = 0, sum = 0;
    int done = 0;
    static char rb[1 << 16];
    while (!done && epoll_wait(ep, &out, 1, 10000) == 1) {
        for (;;) {
            long n = read(s, rb, sizeof rb);
            if (n > 0) {
                for (long i = 0; i < n; i++) sum += (unsigned char)rb[i];
                total += n;
            } else {
                if (n == 0) done = 1;
                break;
            }
        }
    }
    int st;
    waitpid(ch, &st, 0);
    SAY("received %ld sum %ld child %d\n", total, sum, WEXITSTATUS(st));
    close(ep);
    close(s);
    close(l);
}

static void t_udp(void) {
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = lo4(0);
    SAY("bind %ld\n", R(bind(u, (void *)&a, sizeof a)));
    socklen_t al = sizeof a;
    getsockname(u, (void *)&a, &al);
    unsigned short port = ntohs(a.sin_port);
    int c = socket(AF_INET, SOCK_DGRAM, 0);
    SAY("sendto %ld\n", R(sendto(c, "one", 3, 0, (void *)&a, sizeof a)));
    show_name("sender autobound", c, 0, 0);
    char b[64] = {0};
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    SAY("recvfrom %ld %s len %u\n", R(recvfrom(u, b, sizeof b, 0, (void *)&from, &fl)), b, (unsigned)fl);
    SAY("from loopback %d\n", from.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    SAY("reply %ld\n", R(sendto(u, "two", 3, 0, (void *)&from, fl)));
    memset(b, 0, sizeof b);
    SAY("reply got %ld %s\n", R(recv(c, b, sizeof b, 0)), b);
    SAY("truncated %ld\n", R(sendto(c, "three!", 6, 0, (void *)&a, sizeof a)));
    SAY("recv cut %ld\n", R(recv(u, b, 2, MSG_TRUNC)));
    struct sockaddr_in nobody = lo4(port == 65535 ? 65534 : port + 1);
    int z = socket(AF_INET, SOCK_DGRAM, 0);
    SAY("sendto nobody %ld\n", R(sendto(z, "x", 1, 0, (void *)&nobody, sizeof nobody)));
    SAY("connect %ld\n", R(connect(c, (void *)&a, sizeof a)));
    show_name("connected peer", c, 1, port);
    show_name("connected own", c, 0, 0);
    SAY("send connected %ld\n", R(send(c, "four", 4, 0)));
    memset(b, 0, sizeof b);
    SAY("recv %ld %s\n", R(recv(u, b, sizeof b, 0)), b);
    SAY("empty %ld\n", R(recv(u, b, sizeof b, MSG_DONTWAIT)));
    SAY("zero length %ld\n", R(send(c, "", 0, 0)));
    SAY("zero recv %ld\n", R(recv(u, b, sizeof b, 0)));
    static char big[70000];
    SAY("too big %ld\n", R(send(c, big, sizeof big, 0)));
    close(u);
    close(c);
    close(z);
}

static void t_v6(void) {
    int l = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a = {0};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    SAY("bind :: %ld\n", R(bind(l, (void *)&a, sizeof a)));
    socklen_t al = sizeof a;
    getsockname(l, (void *)&a, &al);
    unsigned short port = ntohs(a.sin6_port);
    SAY("listen %ld\n", R(listen(l, 4)));
    /* An IPv4 client reaches a dual-stack listener. */
    int c4 = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a4 = lo4(port);
    SAY("v4 connect %ld\n", R(connect(c4, (void *)&a4, sizeof a4)));
    int s4 = accept(l, 0, 0);
    show_name("v4 seen by v6", s4, 1, 0);
    int c6 = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 b = {0};
    b.sin6_family = AF_INET6;
    b.sin6_addr = in6addr_loopback;
    b.sin6_port = htons(port);
    SAY("v6 connect %ld\n", R(connect(c6, (void *)&b, sizeof b)));
    int s6 = accept(l, 0, 0);
    show_name("v6 peer", s6, 1, 0);
    show_name("v6 own", s6, 0, port);
    char buf[8] = {0};
    send(c6, "six", 3, 0);
    SAY("v6 data %ld %s\n", R(recv(s6, buf, sizeof buf, 0)), buf);
    int one = 1;
    int l2 = socket(AF_INET6, SOCK_STREAM, 0);
    setsockopt(l2, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    a.sin6_port = 0;
    bind(l2, (void *)&a, sizeof a);
    al = sizeof a;
    getsockname(l2, (void *)&a, &al);
    listen(l2, 4);
    int c42 = socket(AF_INET, SOCK_STREAM, 0);
    a4 = lo4(ntohs(a.sin6_port));
    SAY("v4 to v6only %ld\n", R(connect(c42, (void *)&a4, sizeof a4)));
    close(c4);
    close(s4);
    close(c6);
    close(s6);
    close(c42);
    close(l2);
    close(l);
}

static void t_errors(void) {
    SAY("seqpacket %ld\n", R(socket(AF_INET, SOCK_SEQPACKET, 0)));
    SAY("stream udp %ld\n", R(socket(AF_INET, SOCK_STREAM, IPPROTO_UDP)));
    SAY("socketpair %ld\n", R(socketpair(AF_INET, SOCK_STREAM, 0, (int[2]){0, 0})));
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = lo4(0);
    SAY("bind short %ld\n", R(bind(s, (void *)&a, 8)));
    a.sin_family = AF_INET6;
    SAY("bind wrong family %ld\n", R(bind(s, (void *)&a, sizeof a)));
    a = lo4(0);
    a.sin_addr.s_addr = htonl(0x0a000001);
    SAY("bind foreign address %ld\n", R(bind(s, (void *)&a, sizeof a)));
    unsigned short port;
    int l = listener(&port);
    a = lo4(port);
    SAY("bind taken %ld\n", R(bind(s, (void *)&a, sizeof a)));
    int one = 1;
    int l2 = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(l2, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    SAY("reuseport with a listener without %ld\n", R(bind(l2, (void *)&a, sizeof a)));
    SAY("accept unlistened %ld\n", R(accept(s, 0, 0)));
    SAY("recv unconnected %ld\n", R(recv(s, (char[4]){0}, 4, MSG_DONTWAIT)));
    int v;
    socklen_t vl = sizeof v;
    SAY("unknown option %ld\n", R(getsockopt(s, SOL_SOCKET, 9999, &v, &vl)));
    close(s);
    close(l);
    close(l2);
}

/* Many short connections: accepted, used, closed; no port left bound. */
static void t_many(int n) {
    unsigned short port;
    int l = listener(&port);
    struct sockaddr_in a = lo4(port);
    int ok = 0;
    for (int i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (void *)&a, sizeof a)) break;
        int s = accept(l, 0, 0);
        char b = 'x';
        ok += write(c, &b, 1) == 1 && read(s, &b, 1) == 1;
        close(s);
        close(c);
    }
    close(l);
    SAY("connections %d of %d\n", ok, n);
}

/* Try to leave the loopback network: the host's port `port` on
 * 127.0.0.1, an outside address, a UDP datagram out. */
static void t_escape(int port) {
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = lo4((unsigned short)port);
    SAY("host port %ld\n", R(connect(c, (void *)&a, sizeof a)));
    close(c);
    c = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_addr.s_addr = htonl(0x08080808);
    a.sin_port = htons(53);
    SAY("outside %ld\n", R(connect(c, (void *)&a, sizeof a)));
    close(c);
    c = socket(AF_INET, SOCK_DGRAM, 0);
    SAY("udp outside %ld\n", R(sendto(c, "x", 1, 0, (void *)&a, sizeof a)));
    close(c);
}

int main(int argc, char **argv) {
    const char *m = argc > 1 ? argv[1] : "all";
    int all = !strcmp(m, "all");
    if (all || !strcmp(m, "tcp")) t_tcp();
    if (all || !strcmp(m, "udp")) t_udp();
    if (all || !strcmp(m, "v6")) t_v6();
    if (all || !strcmp(m, "errors")) t_errors();
    if (all || !strcmp(m, "many")) t_many(argc > 2 ? atoi(argv[2]) : 1000);
    if (!strcmp(m, "escape")) t_escape(argc > 2 ? atoi(argv[2]) : 1);
    return 0;
}
