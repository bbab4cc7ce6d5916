/* AF_UNIX datagram and seqpacket sockets, printed the same natively and
 * under vkernel: `dgram MODE` with MODE one of pair, named, seqpacket,
 * errors, all; `dgram path DIR` binds in directory DIR. Every line is
 * deterministic (no pointers, no times, no buffer-size-dependent counts). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define SAY(...) do { printf(__VA_ARGS__); fflush(stdout); } while (0)
static long R(long x) { return x < 0 ? -errno : x; }

/* An abstract address "\0vk-NAME": its length. */
static socklen_t abstract(struct sockaddr_un *a, const char *name) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "vk-%d-%s", getpid(), name);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a->sun_path + 1));
}

static short revents(int fd) {
    struct pollfd p = {fd, POLLIN | POLLOUT | POLLRDHUP, 0};
    poll(&p, 1, 0);
    return p.revents;
}

/* recvmsg into a `room`-byte buffer: length, flags and the sender's name. */
static void show_recv(const char *what, int s, size_t room, int flags) {
    char buf[256] = {0};
    struct sockaddr_un from;
    memset(&from, 0, sizeof from);
    struct iovec iov = {buf, room};
    struct msghdr m = {0};
    m.msg_name = &from;
    m.msg_namelen = sizeof from;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    long r = R(recvmsg(s, &m, flags));
    const char *name = m.msg_namelen > 3 ? from.sun_path + 1 : "";
    /* The name holds our pid: print what follows it. */
    const char *dash = strchr(name, '-');
    dash = dash ? strchr(dash + 1, '-') : NULL;
    SAY("%s: %ld [%.*s] trunc %d namelen>0 %d from %s\n", what, r, r > 0 ? (int)(r < (long)room ? r : (long)room) : 0,
        buf, !!(m.msg_flags & MSG_TRUNC), m.msg_namelen > 0, dash ? dash + 1 : "-");
}

/* A socketpair of `type`, and whether SO_TYPE says so. */
static void pair_of(int type, const char *name, int sv[2]) {
    SAY("socketpair %ld\n", R(socketpair(AF_UNIX, type, 0, sv)));
    int t = 0;
    socklen_t tl = sizeof t;
    getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &t, &tl);
    SAY("type %s %d\n", name, t == type);
}

static void t_pair(void) {
    int sv[2];
    pair_of(SOCK_DGRAM, "dgram", sv);
    SAY("poll empty %#x\n", revents(sv[0]));
    SAY("send hello %ld\n", R(send(sv[0], "hello", 5, 0)));
    SAY("send world %ld\n", R(send(sv[0], "world!", 6, 0)));
    SAY("send empty %ld\n", R(send(sv[0], "", 0, 0)));
    SAY("poll full %#x\n", revents(sv[1]));
    int n = -1;
    ioctl(sv[1], FIONREAD, &n);
    SAY("fionread %d\n", n);
    char b[16] = {0};
    SAY("peek %ld\n", R(recv(sv[1], b, sizeof b, MSG_PEEK)));
    show_recv("short", sv[1], 3, 0);
    SAY("trunc flag %ld\n", R(recv(sv[1], b, 2, MSG_TRUNC)));
    show_recv("empty", sv[1], 16, 0);
    SAY("none %ld\n", R(recv(sv[1], b, sizeof b, MSG_DONTWAIT)));
    /* read/write keep boundaries too. */
    SAY("write %ld\n", R(write(sv[1], "abc", 3)));
    SAY("write %ld\n", R(write(sv[1], "defg", 4)));
    memset(b, 0, sizeof b);
    SAY("read %ld %s\n", R(read(sv[0], b, sizeof b)), b);
    memset(b, 0, sizeof b);
    SAY("read %ld %s\n", R(read(sv[0], b, sizeof b)), b);
    /* sendto with an address on a connected pair: to that address. */
    struct sockaddr_un a;
    socklen_t al = abstract(&a, "nobody");
    SAY("sendto missing %ld\n", R(sendto(sv[0], "x", 1, 0, (void *)&a, al)));
    /* Too large a datagram. */
    static char big[300000];
    SAY("send huge %ld\n", R(send(sv[0], big, sizeof big, 0)));
    /* Fill without waiting: EAGAIN at some point, nothing lost. */
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    long sent = 0, r;
    while ((r = send(sv[0], big, 1000, 0)) == 1000)
        sent++;
    SAY("filled with eagain %d\n", r < 0 && errno == EAGAIN);
    SAY("poll full sender out %d\n", !!(revents(sv[0]) & POLLOUT));
    long got = 0;
    while (recv(sv[1], big, sizeof big, MSG_DONTWAIT) == 1000)
        got++;
    SAY("all received %d\n", got == sent);
    /* A blocked receiver woken by a child. */
    pid_t c = fork();
    if (c == 0) {
        usleep(20000);
        send(sv[0], "late", 4, 0);
        _exit(0);
    }
    memset(b, 0, sizeof b);
    SAY("blocking recv %ld %s\n", R(recv(sv[1], b, sizeof b, 0)), b);
    waitpid(c, 0, 0);
    /* SCM_RIGHTS: a pipe's read end travels with a datagram. */
    int pp[2];
    pipe(pp);
    write(pp[1], "piped", 5);
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } cb;
    struct iovec iov = {"fd", 2};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cb.buf;
    m.msg_controllen = sizeof cb.buf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &pp[0], sizeof(int));
    SAY("sendmsg fd %ld\n", R(sendmsg(sv[0], &m, 0)));
    close(pp[0]);
    close(pp[1]);
    memset(&cb, 0, sizeof cb);
    char fb[8] = {0};
    struct iovec riov = {fb, sizeof fb};
    struct msghdr rm = {0};
    rm.msg_iov = &riov;
    rm.msg_iovlen = 1;
    rm.msg_control = cb.buf;
    rm.msg_controllen = sizeof cb.buf;
    SAY("recvmsg fd %ld %s\n", R(recvmsg(sv[1], &rm, 0)), fb);
    cm = CMSG_FIRSTHDR(&rm);
    if (cm && cm->cmsg_type == SCM_RIGHTS) {
        int got;
        memcpy(&got, CMSG_DATA(cm), sizeof got);
        memset(fb, 0, sizeof fb);
        SAY("read passed pipe %ld %s\n", R(read(got, fb, sizeof fb)), fb);
        close(got);
    }
    /* The peer goes: sends are refused, then not connected. */
    close(sv[1]);
    SAY("poll peer gone %#x\n", revents(sv[0]));
    SAY("send to closed %ld\n", R(send(sv[0], "x", 1, MSG_NOSIGNAL)));
    SAY("send again %ld\n", R(send(sv[0], "x", 1, MSG_NOSIGNAL)));
    close(sv[0]);
}

static void t_named(void) {
    int srv = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a, b2, c2;
    socklen_t al = abstract(&a, "srv"), bl = abstract(&b2, "cli"), cl = abstract(&c2, "other");
    SAY("bind %ld\n", R(bind(srv, (void *)&a, al)));
    SAY("listen dgram %ld\n", R(listen(srv, 5)));
    SAY("accept dgram %ld\n", R(accept(srv, 0, 0)));
    int cli = socket(AF_UNIX, SOCK_DGRAM, 0);
    SAY("send unconnected %ld\n", R(send(cli, "x", 1, 0)));
    SAY("sendto unbound client %ld\n", R(sendto(cli, "one", 3, 0, (void *)&a, al)));
    show_recv("from unbound", srv, 64, 0);
    SAY("bind client %ld\n", R(bind(cli, (void *)&b2, bl)));
    SAY("sendto bound client %ld\n", R(sendto(cli, "two", 3, 0, (void *)&a, al)));
    show_recv("from bound", srv, 64, 0);
    /* A reply to the sender's name. */
    SAY("reply %ld\n", R(sendto(srv, "back", 4, 0, (void *)&b2, bl)));
    show_recv("reply", cli, 64, 0);
    /* connect: the default destination, and a filter on what comes in. */
    SAY("connect %ld\n", R(connect(cli, (void *)&a, al)));
    struct sockaddr_un p;
    socklen_t pl = sizeof p;
    long gp = R(getpeername(cli, (void *)&p, &pl));
    SAY("getpeername %ld len ok %d\n", gp, pl == al);
    SAY("send connected %ld\n", R(send(cli, "three", 5, 0)));
    show_recv("connected", srv, 64, 0);
    int other = socket(AF_UNIX, SOCK_DGRAM, 0);
    bind(other, (void *)&c2, cl);
    SAY("connect srv to cli %ld\n", R(connect(srv, (void *)&b2, bl)));
    SAY("other to srv refused %ld\n", R(sendto(other, "no", 2, 0, (void *)&a, al)));
    SAY("other to cli %ld\n", R(sendto(other, "no", 2, 0, (void *)&b2, bl)));
    SAY("cli to srv %ld\n", R(sendto(cli, "yes", 3, 0, (void *)&a, al)));
    show_recv("filtered", srv, 64, 0);
    /* Disconnect with AF_UNSPEC. */
    struct sockaddr un = {AF_UNSPEC};
    SAY("disconnect %ld\n", R(connect(srv, &un, sizeof un)));
    SAY("other to srv now %ld\n", R(sendto(other, "ok", 2, 0, (void *)&a, al)));
    show_recv("after disconnect", srv, 64, 0);
    /* Stream and seqpacket sockets cannot connect to a datagram name. */
    int st = socket(AF_UNIX, SOCK_STREAM, 0);
    SAY("stream to dgram %ld\n", R(connect(st, (void *)&a, al)));
    int sq = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    SAY("seqpacket to dgram %ld\n", R(connect(sq, (void *)&a, al)));
    /* The server goes: its name is free, senders are refused. */
    close(srv);
    SAY("to closed server %ld\n", R(sendto(other, "x", 1, 0, (void *)&a, al)));
    SAY("connected to closed %ld\n", R(send(cli, "x", 1, 0)));
    int again = socket(AF_UNIX, SOCK_DGRAM, 0);
    SAY("rebind freed name %ld\n", R(bind(again, (void *)&a, al)));
    /* A receiver with a timeout. */
    struct timeval tv = {0, 20000};
    setsockopt(again, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char b[8];
    SAY("recv timeout %ld\n", R(recv(again, b, sizeof b, 0)));
    /* epoll on a datagram socket. */
    int ep = epoll_create1(0);
    struct epoll_event ev = {EPOLLIN, {.fd = again}};
    epoll_ctl(ep, EPOLL_CTL_ADD, again, &ev);
    pid_t c = fork();
    if (c == 0) {
        usleep(20000);
        sendto(other, "wake", 4, 0, (void *)&a, al);
        _exit(0);
    }
    struct epoll_event out;
    SAY("epoll wait %ld\n", R(epoll_wait(ep, &out, 1, 5000)));
    show_recv("epoll", again, 64, 0);
    waitpid(c, 0, 0);
    close(ep);
    close(again);
    close(cli);
    close(other);
    close(st);
    close(sq);
}

static void t_seqpacket(void) {
    int sv[2];
    pair_of(SOCK_SEQPACKET, "seqpacket", sv);
    SAY("send %ld\n", R(send(sv[0], "first", 5, 0)));
    SAY("send %ld\n", R(send(sv[0], "second", 6, 0)));
    SAY("send empty %ld\n", R(send(sv[0], "", 0, 0)));
    show_recv("whole", sv[1], 64, 0);
    show_recv("cut", sv[1], 3, 0);
    show_recv("empty", sv[1], 64, 0);
    SAY("waitall is per message %ld\n", R(send(sv[0], "ab", 2, 0)));
    char b[16] = {0};
    SAY("recv waitall %ld\n", R(recv(sv[1], b, sizeof b, MSG_WAITALL)));
    /* Listen, connect, accept on an abstract name. */
    int l = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    struct sockaddr_un a;
    socklen_t al = abstract(&a, "seq");
    SAY("bind %ld\n", R(bind(l, (void *)&a, al)));
    SAY("listen %ld\n", R(listen(l, 4)));
    int c = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    SAY("recv unconnected %ld\n", R(recv(c, b, sizeof b, MSG_DONTWAIT)));
    SAY("send unconnected %ld\n", R(send(c, "x", 1, MSG_NOSIGNAL)));
    SAY("poll unconnected %#x\n", revents(c));
    int st = socket(AF_UNIX, SOCK_STREAM, 0);
    SAY("stream to seqpacket %ld\n", R(connect(st, (void *)&a, al)));
    SAY("connect %ld\n", R(connect(c, (void *)&a, al)));
    int s = accept(l, 0, 0);
    SAY("accept %d\n", s >= 0);
    int t = 0;
    socklen_t tl = sizeof t;
    getsockopt(s, SOL_SOCKET, SO_TYPE, &t, &tl);
    SAY("accepted type seqpacket %d\n", t == SOCK_SEQPACKET);
    SAY("send %ld\n", R(send(c, "over", 4, 0)));
    SAY("sendto ignores address %ld\n", R(sendto(c, "there", 5, 0, (void *)&a, al)));
    show_recv("accepted 1", s, 64, 0);
    show_recv("accepted 2", s, 64, 0);
    /* The peer goes: EOF, then EPIPE without SIGPIPE... as Linux says. */
    close(c);
    SAY("poll peer gone %#x\n", revents(s));
    SAY("recv eof %ld\n", R(recv(s, b, sizeof b, 0)));
    signal(SIGPIPE, SIG_IGN);
    SAY("send to gone %ld\n", R(send(s, "x", 1, 0)));
    signal(SIGPIPE, SIG_DFL);
    close(s);
    close(l);
    close(st);
    close(sv[0]);
    close(sv[1]);
}

static void t_errors(void) {
    SAY("bad type %ld\n", R(socket(AF_UNIX, 9, 0)));
    SAY("raw %ld\n", R(socket(AF_UNIX, SOCK_RAW, 0)));
    int sv[2];
    socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
    SAY("oob %ld\n", R(send(sv[0], "x", 1, MSG_OOB)));
    SAY("bad buffer %ld\n", R(send(sv[0], (void *)-4096L, 10, 0)));
    send(sv[0], "abc", 3, 0);
    SAY("recv bad buffer %ld\n", R(recv(sv[1], (void *)-4096L, 10, 0)));
    struct msghdr m = {0};
    m.msg_iov = (void *)-4096L;
    m.msg_iovlen = 1;
    SAY("sendmsg bad iov %ld\n", R(sendmsg(sv[0], &m, 0)));
    struct sockaddr_un a = {AF_UNIX, "/nonexistent/dir/sock"};
    SAY("sendto missing path %ld\n", R(sendto(sv[0], "x", 1, 0, (void *)&a, sizeof a)));
    a.sun_family = AF_INET;
    SAY("sendto bad family %ld\n", R(sendto(sv[0], "x", 1, 0, (void *)&a, sizeof a)));
    SAY("sendto short addr %ld\n", R(sendto(sv[0], "x", 1, 0, (void *)&a, 1)));
    SAY("shutdown rd %ld\n", R(shutdown(sv[1], SHUT_RD)));
    char b[8];
    SAY("recv after shutdown %ld\n", R(recv(sv[1], b, sizeof b, MSG_DONTWAIT)));
    close(sv[0]);
    close(sv[1]);
}

/* recvmsg with `room` bytes of control: what came, cmsg by cmsg. */
static void show_cmsgs(const char *what, int s, size_t room, pid_t expect) {
    char data[16] = {0};
    union { char buf[256]; struct cmsghdr align; } cb;
    memset(&cb, 0, sizeof cb);
    struct iovec iov = {data, sizeof data};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cb.buf;
    m.msg_controllen = room;
    long r = R(recvmsg(s, &m, 0));
    SAY("%s: %ld [%s] controllen %zu ctrunc %d\n", what, r, data, (size_t)m.msg_controllen,
        !!(m.msg_flags & MSG_CTRUNC));
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_type == SCM_CREDENTIALS) {
            struct ucred u;
            memcpy(&u, CMSG_DATA(c), sizeof u);
            SAY("  creds len %zu pid ok %d uid %u gid %u\n", (size_t)c->cmsg_len, u.pid == expect,
                u.uid, u.gid);
        } else if (c->cmsg_type == SCM_RIGHTS) {
            int fd;
            memcpy(&fd, CMSG_DATA(c), sizeof fd);
            SAY("  rights len %zu\n", (size_t)c->cmsg_len);
            close(fd);
        }
    }
}

/* sendmsg with stated credentials and/or an fd. */
static long send_with(int s, const char *text, const struct ucred *u, int fd) {
    union { char buf[64]; struct cmsghdr align; } cb;
    memset(&cb, 0, sizeof cb);
    struct iovec iov = {(void *)text, strlen(text)};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cb.buf;
    size_t len = 0;
    struct cmsghdr *c = (struct cmsghdr *)cb.buf;
    if (u) {
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_CREDENTIALS;
        c->cmsg_len = CMSG_LEN(sizeof *u);
        memcpy(CMSG_DATA(c), u, sizeof *u);
        len += CMSG_SPACE(sizeof *u);
        c = (struct cmsghdr *)(cb.buf + len);
    }
    if (fd >= 0) {
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof fd);
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
        len += CMSG_SPACE(sizeof fd);
    }
    m.msg_controllen = len;
    return R(sendmsg(s, &m, 0));
}

static void t_cred(void) {
    int on = 1, sv[2];
    socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
    send(sv[0], "plain", 5, 0);
    show_cmsgs("no passcred", sv[1], 256, getpid());
    SAY("passcred %ld\n", R(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on)));
    int v = 0;
    socklen_t vl = sizeof v;
    getsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &v, &vl);
    SAY("passcred reads %d\n", v);
    send(sv[0], "plain", 5, 0);
    show_cmsgs("passcred", sv[1], 256, getpid());
    struct ucred u = {getpid(), 0, 0};
    SAY("stated %ld\n", send_with(sv[0], "stated", &u, -1));
    show_cmsgs("stated", sv[1], 256, getpid());
    struct ucred bad = {getpid(), 0, 0};
    SAY("both %ld\n", send_with(sv[0], "both", &bad, 0));
    show_cmsgs("both", sv[1], 256, getpid());
    send(sv[0], "short", 5, 0);
    show_cmsgs("short control", sv[1], 20, getpid());
    pid_t c = fork();
    if (c == 0) {
        send(sv[0], "child", 5, 0);
        _exit(0);
    }
    waitpid(c, 0, 0);
    show_cmsgs("from child", sv[1], 256, c);
    /* A bad SCM_CREDENTIALS length. */
    union { char buf[64]; struct cmsghdr align; } cb;
    memset(&cb, 0, sizeof cb);
    struct cmsghdr *cm = (struct cmsghdr *)cb.buf;
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_CREDENTIALS;
    cm->cmsg_len = CMSG_LEN(8);
    struct iovec iov = {"x", 1};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cb.buf;
    m.msg_controllen = CMSG_SPACE(8);
    SAY("bad creds len %ld\n", R(sendmsg(sv[0], &m, 0)));
    close(sv[0]);
    close(sv[1]);
    /* A stream: the receiver asks, the sender does not. */
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
    send(sv[0], "stream", 6, 0);
    show_cmsgs("stream", sv[1], 256, getpid());
    close(sv[0]);
    close(sv[1]);
}

/* Open fds of this process. */
static int count_fds(void) {
    int n = 0;
    for (int fd = 0; fd < 1024; fd++)
        n += fcntl(fd, F_GETFD) >= 0;
    return n;
}

/* Hostile use: many connections, a peer killed mid-transfer, bad
 * pointers in msghdr and cmsg. */
static void t_hostile(int conns) {
    int before = count_fds();
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a;
    socklen_t al = abstract(&a, "many");
    bind(l, (void *)&a, al);
    listen(l, 16);
    int ok = 0;
    for (int i = 0; i < conns; i++) {
        int c = socket(AF_UNIX, i % 2 ? SOCK_STREAM | SOCK_NONBLOCK : SOCK_STREAM, 0);
        if (connect(c, (void *)&a, al) != 0)
            break;
        int s = accept(l, 0, 0);
        char b = 'x';
        ok += s >= 0 && write(c, &b, 1) == 1 && read(s, &b, 1) == 1;
        close(c);
        close(s);
    }
    close(l);
    SAY("connections %d of %d, fds leaked %d\n", ok, conns, count_fds() - before);
    /* A writer killed while it sends 4 MiB: the reader gets a prefix of
     * the bytes, then end of file. */
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pid_t c = fork();
    if (c == 0) {
        close(sv[0]);
        static char big[1 << 16];
        for (int i = 0; i < (int)sizeof big; i++)
            big[i] = (char)(i & 0x7f);
        for (int i = 0; i < 64; i++)
            write(sv[1], big, sizeof big);
        _exit(0);
    }
    close(sv[1]);
    usleep(20000);
    kill(c, SIGKILL);
    long got = 0, r;
    int in_order = 1;
    static char buf[1 << 16];
    while ((r = read(sv[0], buf, sizeof buf)) > 0) {
        for (long i = 0; i < r; i++)
            in_order &= buf[i] == (char)((got + i) & 0x7f);
        got += r;
    }
    int st;
    waitpid(c, &st, 0);
    SAY("killed writer: some %d in order %d eof %ld killed %d\n", got > 0, in_order, r,
        WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    close(sv[0]);
    /* Bad pointers. */
    socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
    /* Raw calls: musl's wrappers copy the msghdr themselves. */
    SAY("sendmsg bad msghdr %ld\n", R(syscall(SYS_sendmsg, sv[0], -4096L, 0)));
    SAY("recvmsg bad msghdr %ld\n", R(syscall(SYS_recvmsg, sv[1], -4096L, MSG_DONTWAIT)));
    struct iovec iov = {"x", 1};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = (void *)-4096L;
    m.msg_controllen = 64;
    SAY("bad control %ld\n", R(syscall(SYS_sendmsg, sv[0], &m, 0)));
    union { char buf[64]; struct cmsghdr align; } cb;
    memset(&cb, 0, sizeof cb);
    struct cmsghdr *cm = (struct cmsghdr *)cb.buf;
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = 200;
    m.msg_control = cb.buf;
    m.msg_controllen = sizeof cb.buf;
    SAY("cmsg_len past control %ld\n", R(syscall(SYS_sendmsg, sv[0], &m, 0)));
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    int bad = 999;
    memcpy(CMSG_DATA(cm), &bad, sizeof bad);
    m.msg_controllen = CMSG_SPACE(sizeof(int));
    SAY("rights bad fd %ld\n", R(syscall(SYS_sendmsg, sv[0], &m, 0)));
    m.msg_iovlen = 1u << 20;
    SAY("iovlen huge %ld\n", R(syscall(SYS_sendmsg, sv[0], &m, 0)));
    char b[4];
    SAY("nothing was queued %ld\n", R(recv(sv[1], b, sizeof b, MSG_DONTWAIT)));
    close(sv[0]);
    close(sv[1]);
}

static void t_path(const char *dir) {
    char path[200];
    snprintf(path, sizeof path, "%s/dsock", dir);
    struct sockaddr_un a = {AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    socklen_t al = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    SAY("bind path %ld\n", R(bind(s, (void *)&a, al)));
    struct stat st;
    SAY("node is socket %d\n", stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
    int c = socket(AF_UNIX, SOCK_DGRAM, 0);
    SAY("sendto path %ld\n", R(sendto(c, "via path", 8, 0, (void *)&a, al)));
    show_recv("path", s, 64, 0);
    close(s);
    SAY("sendto closed path %ld\n", R(sendto(c, "x", 1, 0, (void *)&a, al)));
    unlink(path);
    SAY("sendto unlinked %ld\n", R(sendto(c, "x", 1, 0, (void *)&a, al)));
    close(c);
}

int main(int argc, char **argv) {
    const char *m = argc > 1 ? argv[1] : "all";
    int all = !strcmp(m, "all");
    if (all || !strcmp(m, "pair")) t_pair();
    if (all || !strcmp(m, "named")) t_named();
    if (all || !strcmp(m, "seqpacket")) t_seqpacket();
    if (all || !strcmp(m, "errors")) t_errors();
    if (all || !strcmp(m, "cred")) t_cred();
    if (all || !strcmp(m, "hostile")) t_hostile(argc > 2 ? atoi(argv[2]) : 10000);
    if (!strcmp(m, "path")) t_path(argc > 2 ? argv[2] : "/tmp");
    return 0;
}
