/* eventfd, epoll and AF_UNIX socketpair, printed the same natively and
 * under vkernel: `events MODE` with MODE one of eventfd, epoll, socket,
 * errors, all. Every line is deterministic (no pointers, no times). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <stddef.h>
#include <unistd.h>

#define PIDFD_NONBLOCK_ O_NONBLOCK
#define SAY(...) do { printf(__VA_ARGS__); fflush(stdout); } while (0)
static long R(long x) { return x < 0 ? -errno : x; }

/* A child that adds `v` to eventfd `fd` 20 ms from now: its pid. */
static pid_t add_later(int fd, uint64_t v) {
    pid_t c = fork();
    if (c == 0) {
        usleep(20000);
        write(fd, &v, 8);
        _exit(0);
    }
    return c;
}

static void t_eventfd(void) {
    int e = eventfd(5, EFD_NONBLOCK);
    uint64_t v = 0;
    { long r = R(read(e, &v, 8)); SAY("eventfd read %ld v=%llu\n", r, (unsigned long long)v); }
    SAY("eventfd empty read %ld\n", R(read(e, &v, 8)));
    SAY("eventfd short read %ld\n", R(read(e, &v, 4)));
    v = 3;
    SAY("eventfd write %ld\n", R(write(e, &v, 8)));
    v = 4;
    SAY("eventfd write %ld\n", R(write(e, &v, 8)));
    v = UINT64_MAX;
    SAY("eventfd write max %ld\n", R(write(e, &v, 8)));
    { long r = R(read(e, &v, 8)); SAY("eventfd read %ld v=%llu\n", r, (unsigned long long)v); }
    close(e);
    /* Semaphore mode. */
    int s = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK);
    for (int i = 0; i < 3; i++) {
        v = 0;
        long r = R(read(s, &v, 8));
        SAY("sem read %ld v=%llu\n", r, (unsigned long long)v);
    }
    close(s);
    SAY("eventfd bad flags %ld\n", R(eventfd(0, 0x7)));
    /* A blocking read woken by a child's write. */
    int b = eventfd(0, 0);
    pid_t c = add_later(b, 7);
    v = 0;
    { long r = R(read(b, &v, 8)); SAY("eventfd blocking read %ld v=%llu\n", r, (unsigned long long)v); }
    waitpid(c, 0, 0);
    close(b);
}

static void t_epoll(void) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int p[2];
    pipe(p);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 11};
    SAY("ctl add %ld\n", R(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev)));
    SAY("ctl add again %ld\n", R(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev)));
    struct epoll_event out[4];
    SAY("wait empty %ld\n", R(epoll_wait(ep, out, 4, 0)));
    write(p[1], "ab", 2);
    long n = R(epoll_wait(ep, out, 4, 0));
    SAY("wait lt %ld ev=%x data=%llu\n", n, out[0].events, (unsigned long long)out[0].data.u64);
    SAY("wait lt again %ld\n", R(epoll_wait(ep, out, 4, 0)));
    /* Edge triggered: once per change. */
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = 12;
    SAY("ctl mod et %ld\n", R(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev)));
    SAY("wait et %ld\n", R(epoll_wait(ep, out, 4, 0)));
    SAY("wait et again %ld\n", R(epoll_wait(ep, out, 4, 0)));
    write(p[1], "c", 1);
    n = R(epoll_wait(ep, out, 4, 0));
    SAY("wait et after write %ld data=%llu\n", n, (unsigned long long)out[0].data.u64);
    char buf[8];
    read(p[0], buf, sizeof buf);
    /* One-shot. */
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.u64 = 13;
    epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev);
    write(p[1], "d", 1);
    SAY("wait oneshot %ld\n", R(epoll_wait(ep, out, 4, 0)));
    SAY("wait oneshot again %ld\n", R(epoll_wait(ep, out, 4, 0)));
    SAY("ctl mod rearm %ld\n", R(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev)));
    SAY("wait rearmed %ld\n", R(epoll_wait(ep, out, 4, 0)));
    read(p[0], buf, sizeof buf);
    /* The write end: EPOLLOUT; after the reader goes, EPOLLERR. */
    ev.events = EPOLLOUT;
    ev.data.u64 = 14;
    epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &ev);
    SAY("ctl del %ld\n", R(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], 0)));
    SAY("ctl del again %ld\n", R(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], 0)));
    n = R(epoll_wait(ep, out, 4, 0));
    SAY("wait out %ld ev=%x\n", n, out[0].events);
    close(p[0]);
    n = R(epoll_wait(ep, out, 4, 0));
    SAY("wait out after close %ld ev=%x\n", n, out[0].events);
    /* Closing the last fd of a description takes it out of the set. */
    close(p[1]);
    SAY("wait after closes %ld\n", R(epoll_wait(ep, out, 4, 0)));
    /* An eventfd and a nested epoll set. */
    int e = eventfd(0, 0);
    ev.events = EPOLLIN;
    ev.data.u64 = 15;
    epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev);
    int outer = epoll_create1(0);
    ev.data.u64 = 16;
    SAY("nest %ld\n", R(epoll_ctl(outer, EPOLL_CTL_ADD, ep, &ev)));
    SAY("loop %ld\n", R(epoll_ctl(ep, EPOLL_CTL_ADD, outer, &ev)));
    SAY("outer wait empty %ld\n", R(epoll_wait(outer, out, 4, 0)));
    /* A child signals the eventfd while we wait. */
    pid_t c = add_later(e, 1);
    n = R(epoll_wait(outer, out, 4, 5000));
    SAY("outer wait %ld data=%llu\n", n, (unsigned long long)out[0].data.u64);
    n = R(epoll_wait(ep, out, 4, 0));
    SAY("inner wait %ld data=%llu\n", n, (unsigned long long)out[0].data.u64);
    waitpid(c, 0, 0);
    /* A timeout. */
    uint64_t v;
    read(e, &v, 8);
    SAY("wait timeout %ld\n", R(epoll_wait(ep, out, 4, 30)));
    /* poll() on an epoll fd. */
    struct pollfd pf = {.fd = ep, .events = POLLIN};
    SAY("poll epoll %ld\n", R(poll(&pf, 1, 0)));
    close(outer);
    close(e);
    close(ep);
}

static void t_socket(void) {
    int sv[2];
    SAY("socketpair %ld\n", R(socketpair(AF_UNIX, SOCK_STREAM, 0, sv)));
    struct stat st;
    fstat(sv[0], &st);
    SAY("is socket %d\n", S_ISSOCK(st.st_mode));
    int type = 0;
    socklen_t len = sizeof type;
    { long r = R(getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &type, &len)); SAY("SO_TYPE %ld %d len %u\n", r, type, (unsigned)len); }
    SAY("send %ld\n", R(send(sv[0], "hello", 5, 0)));
    char buf[64] = {0};
    SAY("peek %ld\n", R(recv(sv[1], buf, sizeof buf, MSG_PEEK)));
    { long r = R(recv(sv[1], buf, sizeof buf, 0)); SAY("recv %ld %.5s\n", r, buf); }
    SAY("recv dontwait %ld\n", R(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT)));
    /* Both directions, and read/write work too. */
    SAY("write back %ld\n", R(write(sv[1], "xyz", 3)));
    memset(buf, 0, sizeof buf);
    { long r = R(read(sv[0], buf, sizeof buf)); SAY("read %ld %s\n", r, buf); }
    /* sendmsg/recvmsg with two iovecs. */
    struct iovec iv[2] = {{"ab", 2}, {"cde", 3}};
    struct msghdr m = {.msg_iov = iv, .msg_iovlen = 2};
    SAY("sendmsg %ld\n", R(sendmsg(sv[0], &m, 0)));
    char x[3] = {0}, y[8] = {0};
    struct iovec ov[2] = {{x, 2}, {y, 8}};
    struct msghdr r = {.msg_iov = ov, .msg_iovlen = 2};
    { long n = R(recvmsg(sv[1], &r, 0)); SAY("recvmsg %ld %.2s %s flags %d\n", n, x, y, r.msg_flags); }
    /* Across fork, with MSG_WAITALL collecting two writes. */
    pid_t c = fork();
    if (c == 0) {
        close(sv[0]);
        write(sv[1], "12345", 5);
        usleep(20000);
        write(sv[1], "67890", 5);
        _exit(0);
    }
    memset(buf, 0, sizeof buf);
    { long r = R(recv(sv[0], buf, 10, MSG_WAITALL)); SAY("waitall %ld %s\n", r, buf); }
    waitpid(c, 0, 0);
    /* The peer's last end closed: EOF, then EPIPE (no signal). */
    close(sv[1]);
    SAY("eof %ld\n", R(recv(sv[0], buf, sizeof buf, 0)));
    SAY("eof again %ld\n", R(read(sv[0], buf, sizeof buf)));
    SAY("send to closed %ld\n", R(send(sv[0], "z", 1, MSG_NOSIGNAL)));
    close(sv[0]);
    /* shutdown. */
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
    SAY("shutdown wr %ld\n", R(shutdown(sv[0], SHUT_WR)));
    SAY("peer reads eof %ld\n", R(read(sv[1], buf, sizeof buf)));
    SAY("write after shutdown %ld\n", R(send(sv[0], "q", 1, MSG_NOSIGNAL)));
    SAY("other way still works %ld\n", R(write(sv[1], "ok", 2)));
    SAY("read it %ld\n", R(read(sv[0], buf, sizeof buf)));
    SAY("nonblock read %ld\n", R(read(sv[0], buf, sizeof buf)));
    SAY("shutdown bad %ld\n", R(shutdown(sv[0], 7)));
    /* SIGPIPE on a write nobody will read. */
    signal(SIGPIPE, SIG_IGN);
    SAY("shutdown rd %ld\n", R(shutdown(sv[1], SHUT_RD)));
    SAY("write to shut reader %ld\n", R(write(sv[0], "q", 1)));
    close(sv[0]);
    close(sv[1]);
    /* Not sockets. */
    SAY("send on pipe-less fd %ld\n", R(send(0, "a", 1, 0)));
    SAY("send on bad fd %ld\n", R(send(99, "a", 1, 0)));
    SAY("socketpair inet %ld\n", R(socketpair(AF_INET, SOCK_STREAM, 0, sv)));
    SAY("socketpair bad family %ld\n", R(socketpair(12345, SOCK_STREAM, 0, sv)));
    /* sendmmsg / recvmmsg (MSG_WAITFORONE: the later ones do not wait). */
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    struct iovec mv[3] = {{"aa", 2}, {"bbb", 3}, {"c", 1}};
    struct mmsghdr mm[3];
    memset(mm, 0, sizeof mm);
    for (int i = 0; i < 3; i++) {
        mm[i].msg_hdr.msg_iov = &mv[i];
        mm[i].msg_hdr.msg_iovlen = 1;
    }
    long sn = R(sendmmsg(sv[0], mm, 3, 0));
    SAY("sendmmsg %ld lens %u %u %u\n", sn, mm[0].msg_len, mm[1].msg_len, mm[2].msg_len);
    char rb[3][5];
    memset(rb, 0, sizeof rb);
    struct iovec rv[3] = {{rb[0], 4}, {rb[1], 4}, {rb[2], 4}};
    struct mmsghdr rm[3];
    memset(rm, 0, sizeof rm);
    for (int i = 0; i < 3; i++) {
        rm[i].msg_hdr.msg_iov = &rv[i];
        rm[i].msg_hdr.msg_iovlen = 1;
    }
    long rn = R(recvmmsg(sv[1], rm, 3, MSG_WAITFORONE, 0));
    SAY("recvmmsg %ld %s/%u %s/%u\n", rn, rb[0], rm[0].msg_len, rb[1], rm[1].msg_len);
    close(sv[0]);
    close(sv[1]);
    /* epoll on a socket. */
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = 21};
    epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev);
    struct epoll_event out[2];
    SAY("sock wait empty %ld\n", R(epoll_wait(ep, out, 2, 0)));
    write(sv[1], "k", 1);
    long n = R(epoll_wait(ep, out, 2, 0));
    SAY("sock wait %ld ev=%x\n", n, out[0].events);
    read(sv[0], buf, 1);
    close(sv[1]);
    n = R(epoll_wait(ep, out, 2, 0));
    SAY("sock wait hup %ld ev=%x\n", n, out[0].events);
    close(ep);
    close(sv[0]);
}

static socklen_t addr_of(struct sockaddr_un *a, const char *path) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    strncpy(a->sun_path, path, sizeof a->sun_path - 1);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
}

/* Named sockets in directory `dir` (and abstract names made from it). */
static void t_unix(const char *dir) {
    char path[200];
    snprintf(path, sizeof path, "%s/sock", dir);
    struct sockaddr_un a, got;
    socklen_t alen = addr_of(&a, path), glen;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    SAY("socket %d\n", s >= 0);
    glen = sizeof got;
    long gr = R(getsockname(s, (void *)&got, &glen));
    SAY("getsockname unbound %ld len %u\n", gr, (unsigned)glen);
    SAY("connect missing %ld\n", R(connect(s, (void *)&a, alen)));
    SAY("bind %ld\n", R(bind(s, (void *)&a, alen)));
    SAY("bind again %ld\n", R(bind(s, (void *)&a, alen)));
    int s2 = socket(AF_UNIX, SOCK_STREAM, 0);
    SAY("bind taken %ld\n", R(bind(s2, (void *)&a, alen)));
    struct stat st;
    stat(path, &st);
    SAY("is socket node %d\n", S_ISSOCK(st.st_mode));
    SAY("open node %ld\n", R(open(path, O_RDONLY)));
    SAY("connect not listening %ld\n", R(connect(s2, (void *)&a, alen)));
    glen = sizeof got;
    getsockname(s, (void *)&got, &glen);
    SAY("getsockname len ok %d name ok %d\n", glen == alen, !strcmp(got.sun_path, path));
    SAY("accept not listening %ld\n", R(accept(s, 0, 0)));
    SAY("listen %ld\n", R(listen(s, 5)));
    int v = 0;
    socklen_t vl = sizeof v;
    getsockopt(s, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl);
    SAY("SO_ACCEPTCONN %d\n", v);
    fcntl(s, F_SETFL, O_NONBLOCK);
    SAY("accept empty %ld\n", R(accept(s, 0, 0)));
    fcntl(s, F_SETFL, 0);
    int rep[2];
    pipe(rep);
    pid_t c = fork();
    if (c == 0) {
        /* The child's lines go through a pipe, printed after it ends. */
        char o[512];
        int k = socket(AF_UNIX, SOCK_STREAM, 0);
        long r = R(connect(k, (void *)&a, alen));
        int len = snprintf(o, sizeof o, "child connect %ld\n", r);
        send(k, "hello from child", 16, 0);
        char buf[32] = {0};
        r = R(recv(k, buf, sizeof buf, 0));
        len += snprintf(o + len, sizeof o - len, "child got %ld %s\n", r, buf);
        struct sockaddr_un p;
        socklen_t pl = sizeof p;
        getpeername(k, (void *)&p, &pl);
        len += snprintf(o + len, sizeof o - len, "child peer len ok %d name ok %d\n", pl == alen,
                        !strcmp(p.sun_path, path));
        struct ucred cr;
        socklen_t cl = sizeof cr;
        r = R(getsockopt(k, SOL_SOCKET, SO_PEERCRED, &cr, &cl));
        len += snprintf(o + len, sizeof o - len, "child peercred %ld is parent %d\n", r,
                        cr.pid == getppid());
        write(rep[1], o, len);
        _exit(0);
    }
    close(rep[1]);
    struct sockaddr_un p;
    socklen_t pl = sizeof p;
    int n = accept4(s, (void *)&p, &pl, SOCK_CLOEXEC);
    SAY("accept %d peer len %u\n", n >= 0, (unsigned)pl);
    char buf[32] = {0};
    long r = R(recv(n, buf, 16, MSG_WAITALL));
    SAY("server got %ld %s\n", r, buf);
    struct ucred cr;
    socklen_t cl = sizeof cr;
    getsockopt(n, SOL_SOCKET, SO_PEERCRED, &cr, &cl);
    SAY("server peercred is child %d\n", cr.pid == c);
    send(n, "welcome", 7, 0);
    waitpid(c, 0, 0);
    char o[512] = {0};
    read(rep[0], o, sizeof o - 1);
    close(rep[0]);
    SAY("%s", o);
    SAY("after child %ld\n", R(recv(n, buf, sizeof buf, 0)));
    close(n);
    /* A full backlog: listen(0) takes one pending connection. */
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    char p2[200];
    snprintf(p2, sizeof p2, "%s/sock2", dir);
    socklen_t l2 = addr_of(&a, p2);
    bind(l, (void *)&a, l2);
    listen(l, 0);
    int c1 = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int c2 = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    SAY("first pending %ld\n", R(connect(c1, (void *)&a, l2)));
    SAY("second pending %ld\n", R(connect(c2, (void *)&a, l2)));
    SAY("connected again %ld\n", R(connect(c1, (void *)&a, l2)));
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 31}, out[2];
    epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
    SAY("listener ready %ld\n", R(epoll_wait(ep, out, 2, 0)));
    SAY("data before accept %ld\n", R(send(c1, "early", 5, 0)));
    int a1 = accept(l, 0, 0);
    memset(buf, 0, sizeof buf);
    r = R(read(a1, buf, sizeof buf));
    SAY("read early %ld %s\n", r, buf);
    SAY("listener idle %ld\n", R(epoll_wait(ep, out, 2, 0)));
    SAY("now room %ld\n", R(connect(c2, (void *)&a, l2)));
    close(ep);
    close(a1);
    close(c1);
    close(c2);
    close(l);
    /* Abstract names and autobind. */
    int x = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "vk-%s", strrchr(dir, '/') + 1);
    socklen_t xl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a.sun_path + 1));
    SAY("bind abstract %ld\n", R(bind(x, (void *)&a, xl)));
    SAY("listen abstract %ld\n", R(listen(x, 1)));
    int y = socket(AF_UNIX, SOCK_STREAM, 0);
    SAY("bind abstract taken %ld\n", R(bind(y, (void *)&a, xl)));
    SAY("connect abstract %ld\n", R(connect(y, (void *)&a, xl)));
    glen = sizeof got;
    getsockname(x, (void *)&got, &glen);
    SAY("abstract name len ok %d\n", glen == xl);
    int z = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un fam = {.sun_family = AF_UNIX};
    SAY("autobind %ld\n", R(bind(z, (void *)&fam, sizeof(sa_family_t))));
    glen = sizeof got;
    getsockname(z, (void *)&got, &glen);
    SAY("autobind len %u first byte %d\n", (unsigned)glen, got.sun_path[0]);
    close(x);
    close(y);
    close(z);
    /* After unlink, the name is gone. */
    unlink(path);
    alen = addr_of(&a, path);
    int w = socket(AF_UNIX, SOCK_STREAM, 0);
    SAY("connect unlinked %ld\n", R(connect(w, (void *)&a, alen)));
    SAY("bind bad family %ld\n", R(bind(w, (void *)&fam, 1)));
    close(w);
    close(s);
    close(s2);
    unlink(p2);
}

static void t_memfd(void) {
    int m = memfd_create("test", MFD_ALLOW_SEALING | MFD_CLOEXEC);
    SAY("memfd %d cloexec %d\n", m >= 0, (fcntl(m, F_GETFD) & FD_CLOEXEC) != 0);
    char link[64], lp[256] = {0};
    snprintf(link, sizeof link, "/proc/self/fd/%d", m);
    long r = R(readlink(link, lp, sizeof lp - 1));
    SAY("link %ld %s\n", r, lp);
    SAY("write %ld\n", R(write(m, "hello", 5)));
    SAY("ftruncate %ld\n", R(ftruncate(m, 8192)));
    struct stat st;
    fstat(m, &st);
    SAY("size %lld regular %d\n", (long long)st.st_size, S_ISREG(st.st_mode));
    char *p = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
    SAY("mmap %d first %.5s\n", p != MAP_FAILED, p);
    pid_t c = fork();
    if (c == 0) {
        memcpy(p + 4096, "from child", 10);
        _exit(0);
    }
    waitpid(c, 0, 0);
    char buf[16] = {0};
    r = R(pread(m, buf, 10, 4096));
    SAY("child's write seen %ld %s\n", r, buf);
    munmap(p, 8192);
    SAY("get seals %ld\n", R(fcntl(m, F_GET_SEALS)));
    SAY("seal shrink grow %ld\n", R(fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW)));
    SAY("grow %ld\n", R(ftruncate(m, 16384)));
    SAY("shrink %ld\n", R(ftruncate(m, 10)));
    SAY("write past end %ld\n", R(pwrite(m, "x", 1, 8192)));
    SAY("write inside %ld\n", R(pwrite(m, "y", 1, 100)));
    SAY("seal write %ld\n", R(fcntl(m, F_ADD_SEALS, F_SEAL_WRITE)));
    SAY("write sealed %ld\n", R(pwrite(m, "y", 1, 100)));
    p = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
    SAY("mmap writable sealed %ld\n", p == MAP_FAILED ? -(long)errno : 0L);
    p = mmap(0, 8192, PROT_READ, MAP_SHARED, m, 0);
    SAY("mmap read-only sealed %d %.5s\n", p != MAP_FAILED, p);
    SAY("seal seal %ld\n", R(fcntl(m, F_ADD_SEALS, F_SEAL_SEAL)));
    SAY("seal more %ld\n", R(fcntl(m, F_ADD_SEALS, F_SEAL_WRITE)));
    SAY("get seals %ld\n", R(fcntl(m, F_GET_SEALS)));
    SAY("seal bad %ld\n", R(fcntl(m, F_ADD_SEALS, 0x1000)));
    close(m);
    int n = memfd_create("plain", 0);
    SAY("plain seals %ld\n", R(fcntl(n, F_GET_SEALS)));
    SAY("plain add %ld\n", R(fcntl(n, F_ADD_SEALS, F_SEAL_GROW)));
    close(n);
    SAY("bad flags %ld\n", R(memfd_create("x", 0x100)));
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    SAY("long name %ld\n", R(memfd_create(longname, 0)));
    SAY("seals of a pipe %ld\n", R(fcntl(1, F_GET_SEALS)) < 0 ? -22L : 0L);
}

static long ms_since(struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static void t_timerfd(void) {
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    SAY("timerfd %d\n", t >= 0);
    uint64_t n = 0;
    SAY("read disarmed %ld\n", R(read(t, &n, 8)));
    struct itimerspec its = {.it_value = {0, 30 * 1000000}};
    SAY("settime %ld\n", R(timerfd_settime(t, 0, &its, 0)));
    struct itimerspec cur;
    timerfd_gettime(t, &cur);
    SAY("armed %d\n", cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec > 0);
    SAY("read early %ld\n", R(read(t, &n, 8)));
    /* poll wakes at the expiration (nothing else wakes it). */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct pollfd pf = {.fd = t, .events = POLLIN};
    long r = R(poll(&pf, 1, 2000));
    long ms = ms_since(&t0);
    SAY("poll %ld revents %x in time %d\n", r, pf.revents, ms >= 20 && ms < 1000);
    r = R(read(t, &n, 8));
    SAY("read %ld n=%llu\n", r, (unsigned long long)n);
    SAY("short read %ld\n", R(read(t, &n, 4)));
    /* Periodic, through epoll. */
    its.it_interval.tv_nsec = 10 * 1000000;
    its.it_value.tv_nsec = 10 * 1000000;
    timerfd_settime(t, 0, &its, 0);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 41}, out[2];
    epoll_ctl(ep, EPOLL_CTL_ADD, t, &ev);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    r = R(epoll_wait(ep, out, 2, 2000));
    ms = ms_since(&t0);
    SAY("epoll %ld data %llu in time %d\n", r, (unsigned long long)out[0].data.u64, ms < 1000);
    usleep(50000);
    r = R(read(t, &n, 8));
    SAY("periodic read %ld several %d\n", r, n >= 3);
    /* A blocking read. */
    int b = timerfd_create(CLOCK_REALTIME, 0);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct itimerspec abs = {.it_value = now};
    abs.it_value.tv_nsec += 20 * 1000000;
    if (abs.it_value.tv_nsec >= 1000000000) {
        abs.it_value.tv_sec++;
        abs.it_value.tv_nsec -= 1000000000;
    }
    SAY("settime abs %ld\n", R(timerfd_settime(b, TFD_TIMER_ABSTIME, &abs, 0)));
    r = R(read(b, &n, 8));
    SAY("blocking read %ld n=%llu\n", r, (unsigned long long)n);
    /* Disarm, and the old value comes back. */
    struct itimerspec zero = {0}, old;
    SAY("disarm %ld\n", R(timerfd_settime(t, 0, &zero, &old)));
    SAY("old interval %ld ms\n", old.it_interval.tv_nsec / 1000000);
    timerfd_gettime(t, &cur);
    SAY("disarmed %d\n", cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0);
    SAY("bad clock %ld\n", R(timerfd_create(12345, 0)));
    SAY("bad flags %ld\n", R(timerfd_create(CLOCK_MONOTONIC, 0x1)));
    SAY("bad settime flags %ld\n", R(timerfd_settime(t, 0x80, &its, 0)));
    struct itimerspec bad = {.it_value = {0, 2000000000L}};
    SAY("bad value %ld\n", R(timerfd_settime(t, 0, &bad, 0)));
    SAY("settime not timerfd %ld\n", R(timerfd_settime(ep, 0, &its, 0)));
    SAY("write %ld\n", R(write(t, &n, 8)));
    close(ep);
    close(t);
    close(b);
}

static long send_fds(int s, const char *data, int n, const int *fds, int nfds) {
    char cbuf[CMSG_SPACE(sizeof(int) * 8)];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iv = {(void *)data, (size_t)n};
    struct msghdr m = {.msg_iov = &iv, .msg_iovlen = 1};
    if (nfds > 0) {
        m.msg_control = cbuf;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    return R(sendmsg(s, &m, 0));
}

/* recvmsg into buf; prints the count, the data, the fds received and
 * msg_flags; returns the first fd (or -1). */
static int recv_fds(int s, size_t room, size_t ctl, const char *what) {
    char buf[32] = {0};
    char cbuf[CMSG_SPACE(sizeof(int) * 8)];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iv = {buf, room};
    struct msghdr m = {.msg_iov = &iv, .msg_iovlen = 1, .msg_control = ctl ? cbuf : 0,
                       .msg_controllen = ctl};
    long r = R(recvmsg(s, &m, MSG_CMSG_CLOEXEC));
    int nfd = 0, first = -1, cloexec = 0;
    for (struct cmsghdr *c = ctl ? CMSG_FIRSTHDR(&m) : 0; c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int *fds = (int *)CMSG_DATA(c);
            for (int i = 0; i < k; i++) {
                if (first < 0) first = fds[i];
                cloexec += (fcntl(fds[i], F_GETFD) & FD_CLOEXEC) != 0;
                nfd++;
            }
        }
    }
    SAY("%s: %ld [%s] fds %d cloexec %d ctrunc %d\n", what, r, buf, nfd, cloexec,
        (m.msg_flags & MSG_CTRUNC) != 0);
    return first;
}

static void t_scm(void) {
    int sv[2], p[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pipe(p);
    SAY("send pipe end %ld\n", send_fds(sv[0], "x", 1, &p[1], 1));
    int w = recv_fds(sv[1], 8, CMSG_SPACE(sizeof(int) * 8), "got");
    write(w, "through a passed fd", 19);
    close(w);
    char buf[32] = {0};
    long r = R(read(p[0], buf, sizeof buf - 1));
    SAY("pipe read %ld %s\n", r, buf);
    /* Three at once, across fork: the child passes its own pipe's ends. */
    pid_t c = fork();
    if (c == 0) {
        int q[2];
        pipe(q);
        int three[3] = {q[0], q[1], q[1]};
        send_fds(sv[1], "ch", 2, three, 3);
        _exit(0);
    }
    waitpid(c, 0, 0);
    char cb[CMSG_SPACE(sizeof(int) * 8)];
    struct iovec iv = {buf, 8};
    struct msghdr m = {.msg_iov = &iv, .msg_iovlen = 1, .msg_control = cb, .msg_controllen = sizeof cb};
    memset(buf, 0, sizeof buf);
    r = R(recvmsg(sv[0], &m, 0));
    struct cmsghdr *ch = CMSG_FIRSTHDR(&m);
    int *fds = (int *)CMSG_DATA(ch);
    int n = (int)((ch->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    SAY("child's fds %ld [%s] n %d\n", r, buf, n);
    write(fds[1], "pq", 2);
    memset(buf, 0, sizeof buf);
    r = R(read(fds[0], buf, 2));
    SAY("its pipe works %ld %s\n", r, buf);
    for (int i = 0; i < n; i++) close(fds[i]);
    /* A read goes on into a message with files and stops after it;
     * read() drops the files it passes. */
    send_fds(sv[0], "ab", 2, 0, 0);
    send_fds(sv[0], "cd", 2, &p[1], 1);
    send_fds(sv[0], "ef", 2, &p[1], 1);
    recv_fds(sv[1], 10, CMSG_SPACE(sizeof(int) * 8), "before the files");
    memset(buf, 0, sizeof buf);
    r = R(read(sv[1], buf, 10));
    SAY("read() takes %ld %s\n", r, buf);
    /* A control buffer too small: MSG_CTRUNC, the fd is closed. */
    send_fds(sv[0], "gh", 2, &p[1], 1);
    recv_fds(sv[1], 10, 8, "small control");
    /* Errors. */
    int bad = 99;
    SAY("send bad fd %ld\n", send_fds(sv[0], "z", 1, &bad, 1));
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec zv = {"z", 1};
    struct msghdr zm = {.msg_iov = &zv, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    struct cmsghdr *zc = CMSG_FIRSTHDR(&zm);
    zc->cmsg_level = 99;
    zc->cmsg_type = SCM_RIGHTS;
    zc->cmsg_len = CMSG_LEN(sizeof(int));
    SAY("send bad level %ld\n", R(sendmsg(sv[0], &zm, 0)));
    zc->cmsg_level = SOL_SOCKET;
    zc->cmsg_len = 4;
    SAY("send short cmsg %ld\n", R(sendmsg(sv[0], &zm, 0)));
    /* The message with the foreign level went (its cmsg ignored). */
    memset(buf, 0, sizeof buf);
    r = R(read(sv[1], buf, sizeof buf));
    SAY("ignored cmsg's data %ld %s\n", r, buf);
    /* The last reference to a passed file is the message: closing every
     * fd of the pipe's write end but the one in flight keeps it open. */
    int q[2];
    pipe(q);
    send_fds(sv[0], "k", 1, &q[1], 1);
    close(q[1]);
    struct pollfd pf = {.fd = q[0], .events = POLLIN};
    SAY("writer in flight keeps the pipe open %ld\n", R(poll(&pf, 1, 0)));
    int got = recv_fds(sv[1], 1, CMSG_SPACE(sizeof(int)), "in flight");
    close(got);
    r = R(read(q[0], buf, 1));
    SAY("then EOF %ld\n", r);
    close(q[0]);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
}

static void show_ssi(const char *what, int fd) {
    struct signalfd_siginfo si;
    memset(&si, 0, sizeof si);
    long r = R(read(fd, &si, sizeof si));
    SAY("%s: %ld signo %u code %d from self %d status %d\n", what, r, si.ssi_signo, si.ssi_code,
        si.ssi_pid == (uint32_t)getpid(), si.ssi_status);
}

static void t_signalfd(void) {
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGUSR2);
    sigaddset(&m, SIGCHLD);
    sigprocmask(SIG_BLOCK, &m, 0);
    int s = signalfd(-1, &m, SFD_NONBLOCK | SFD_CLOEXEC);
    SAY("signalfd %d\n", s >= 0);
    struct signalfd_siginfo si;
    SAY("empty %ld\n", R(read(s, &si, sizeof si)));
    SAY("short %ld\n", R(read(s, &si, 8)));
    raise(SIGUSR1);
    struct pollfd pf = {.fd = s, .events = POLLIN};
    SAY("poll %ld\n", R(poll(&pf, 1, 0)));
    show_ssi("raise", s);
    pid_t c = fork();
    if (c == 0) _exit(7);
    /* Blocking: wait for the SIGCHLD through epoll. */
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 51}, out[1];
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    long r = R(epoll_wait(ep, out, 1, 5000));
    SAY("epoll %ld data %llu\n", r, (unsigned long long)out[0].data.u64);
    show_ssi("child", s);
    waitpid(c, 0, 0);
    /* A blocking read woken by another process's kill. */
    int b = signalfd(-1, &m, 0);
    c = fork();
    if (c == 0) {
        usleep(20000);
        kill(getppid(), SIGUSR2);
        _exit(0);
    }
    struct signalfd_siginfo bi;
    r = R(read(b, &bi, sizeof bi));
    SAY("blocking read %ld signo %u from child %d\n", r, bi.ssi_signo, bi.ssi_pid == (uint32_t)c);
    waitpid(c, 0, 0);
    /* Drain the SIGCHLD of that child. */
    fcntl(b, F_SETFL, O_NONBLOCK);
    while (read(b, &bi, sizeof bi) > 0) {
    }
    /* A new mask: SIGUSR1 only. */
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, SIGUSR1);
    SAY("remask %d\n", signalfd(s, &one, 0) == s);
    raise(SIGUSR2);
    SAY("not in mask %ld\n", R(read(s, &si, sizeof si)));
    raise(SIGUSR1);
    show_ssi("in mask", s);
    SAY("bad size %ld\n", R(syscall(SYS_signalfd4, -1, &m, 4, 0)));
    SAY("bad flags %ld\n", R(signalfd(-1, &m, 0x1)));
    SAY("not a signalfd %ld\n", R(signalfd(ep, &m, 0)));
    /* SIGUSR2 is still pending (blocked): take it with sigwait. */
    int sig = 0;
    sigset_t u2;
    sigemptyset(&u2);
    sigaddset(&u2, SIGUSR2);
    sigwait(&u2, &sig);
    SAY("still pending %d\n", sig);
    close(ep);
    close(s);
    close(b);
    sigprocmask(SIG_UNBLOCK, &m, 0);
}

static int pidfd_open_(pid_t pid, unsigned flags) {
    return (int)syscall(SYS_pidfd_open, pid, flags);
}

static long pidfd_kill(int fd, int sig) {
    return syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
}

/* pidfds: readable when the process ends, signals through them, errors. */
static void t_pidfd(void) {
    SAY("open bad flags %ld\n", R(pidfd_open_(getpid(), 1)));
    SAY("open no such %ld\n", R(pidfd_open_(999999, 0)));
    SAY("open zero %ld\n", R(pidfd_open_(0, 0)));
    int self = pidfd_open_(getpid(), 0);
    SAY("open self %d cloexec %d\n", self >= 0, (fcntl(self, F_GETFD) & FD_CLOEXEC) != 0);
    SAY("signal 0 to self %ld\n", R(pidfd_kill(self, 0)));
    SAY("bad flags %ld\n", R(syscall(SYS_pidfd_send_signal, self, 0, NULL, 1)));
    SAY("not a pidfd %ld\n", R(pidfd_kill(0, 0)));
    char b[8];
    SAY("read %ld\n", R(read(self, b, sizeof b)));
    close(self);
    /* A child that waits to be killed. */
    pid_t c = fork();
    if (c == 0) {
        pause();
        _exit(0);
    }
    int fd = pidfd_open_(c, PIDFD_NONBLOCK_);
    struct pollfd p = {fd, POLLIN, 0};
    SAY("poll running %d\n", poll(&p, 1, 0));
    SAY("kill %ld\n", R(pidfd_kill(fd, SIGTERM)));
    SAY("poll ended %d revents %#x\n", poll(&p, 1, 5000), p.revents);
    SAY("signal zombie %ld\n", R(pidfd_kill(fd, 0)));
    int st;
    waitpid(c, &st, 0);
    SAY("child signaled %d by %d\n", WIFSIGNALED(st), WTERMSIG(st));
    SAY("signal reaped %ld\n", R(pidfd_kill(fd, SIGTERM)));
    close(fd);
    /* epoll wakes when a child exits by itself. */
    c = fork();
    if (c == 0) {
        usleep(20000);
        _exit(3);
    }
    fd = pidfd_open_(c, 0);
    int ep = epoll_create1(0);
    struct epoll_event ev = {EPOLLIN, {.u64 = 7}}, out;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    long n = R(epoll_wait(ep, &out, 1, 5000));
    SAY("epoll %ld data %lu\n", n, n > 0 ? (unsigned long)out.data.u64 : 0UL);
    waitpid(c, &st, 0);
    SAY("child exited %d\n", WEXITSTATUS(st));
    close(ep);
    close(fd);
}

/* Read and print every queued inotify event; `base` is the first watch. */
static void show_events(const char *what, int in, int base) {
    char buf[4096] __attribute__((aligned(8)));
    long n = R(read(in, buf, sizeof buf));
    SAY("%s: read %ld\n", what, n);
    static uint32_t last_cookie;
    for (long off = 0; n > 0 && off < n;) {
        struct inotify_event *e = (void *)(buf + off);
        SAY("  wd %d mask %#x len %u name %s cookie %s\n", e->wd < 0 ? -1 : e->wd - base, e->mask,
            e->len, e->len ? e->name : "-",
            e->cookie == 0 ? "0" : e->cookie == last_cookie ? "same" : "new");
        if (e->cookie)
            last_cookie = e->cookie;
        off += sizeof *e + e->len;
    }
}

/* inotify on directory `dir`. */
static void t_inotify(const char *dir) {
    char f[256], g[256], sub[256];
    snprintf(f, sizeof f, "%s/f", dir);
    snprintf(g, sizeof g, "%s/g", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    SAY("init1 bad flags %ld\n", R(inotify_init1(1)));
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    SAY("init1 %d\n", in >= 0);
    SAY("add bad fd %ld\n", R(inotify_add_watch(0, dir, IN_ALL_EVENTS)));
    SAY("add missing %ld\n", R(inotify_add_watch(in, "/nonexistent/x", IN_ALL_EVENTS)));
    SAY("add mask 0 %ld\n", R(inotify_add_watch(in, dir, 0)));
    SAY("rm bad wd %ld\n", R(inotify_rm_watch(in, 12345)));
    char b[8];
    SAY("read empty %ld\n", R(read(in, b, sizeof b)));
    int wd = inotify_add_watch(in, dir, IN_ALL_EVENTS);
    SAY("watch dir %d\n", wd > 0);
    SAY("same node same wd %d\n", inotify_add_watch(in, dir, IN_ALL_EVENTS) == wd);
    SAY("mask create on watched %ld\n", R(inotify_add_watch(in, dir, IN_ALL_EVENTS | IN_MASK_CREATE)));
    int fd = open(f, O_CREAT | O_WRONLY, 0644);
    write(fd, "hello", 5);
    write(fd, "again", 5);
    close(fd);
    int q = -1;
    ioctl(in, FIONREAD, &q);
    SAY("fionread %d\n", q);
    struct pollfd p = {in, POLLIN, 0};
    SAY("poll %d\n", poll(&p, 1, 0));
    SAY("read small %ld\n", R(read(in, b, sizeof b)));
    show_events("create write close", in, wd);
    SAY("only dir on file %ld\n", R(inotify_add_watch(in, f, IN_MODIFY | IN_ONLYDIR)));
    int fw = inotify_add_watch(in, f, IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF);
    fd = open(f, O_RDONLY);
    read(fd, b, sizeof b);
    close(fd);
    chmod(f, 0600);
    show_events("read chmod", in, wd);
    rename(f, g);
    show_events("rename", in, wd);
    mkdir(sub, 0755);
    rmdir(sub);
    show_events("mkdir rmdir", in, wd);
    fd = open(g, O_WRONLY | O_TRUNC);
    close(fd);
    show_events("truncate", in, wd);
    unlink(g);
    show_events("unlink", in, wd);
    SAY("rm gone watch %ld\n", R(inotify_rm_watch(in, fw)));
    /* One shot. */
    int os = inotify_add_watch(in, dir, IN_CREATE | IN_ONESHOT);
    SAY("oneshot same wd %d\n", os == wd);
    fd = open(f, O_CREAT | O_WRONLY, 0644);
    close(fd);
    unlink(f);
    show_events("oneshot", in, wd);
    /* A blocking read woken by a child's create, and rm_watch. */
    int bl = inotify_init1(0);
    int w2 = inotify_add_watch(bl, dir, IN_CREATE);
    pid_t c = fork();
    if (c == 0) {
        usleep(20000);
        close(open(f, O_CREAT | O_WRONLY, 0644));
        _exit(0);
    }
    show_events("blocking", bl, w2);
    waitpid(c, 0, 0);
    SAY("rm %ld\n", R(inotify_rm_watch(bl, w2)));
    SAY("rm again %ld\n", R(inotify_rm_watch(bl, w2)));
    show_events("after rm", bl, w2);
    unlink(f);
    close(bl);
    close(in);
}

static void t_errors(void) {
    struct epoll_event ev = {.events = EPOLLIN};
    int ep = epoll_create1(0);
    SAY("create1 bad %ld\n", R(epoll_create1(1)));
    SAY("create 0 %ld\n", R(epoll_create(0)));
    SAY("ctl bad epfd %ld\n", R(epoll_ctl(99, EPOLL_CTL_ADD, 0, &ev)));
    int p[2];
    pipe(p);
    SAY("ctl not epoll %ld\n", R(epoll_ctl(p[0], EPOLL_CTL_ADD, p[1], &ev)));
    SAY("ctl self %ld\n", R(epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev)));
    int f = open("/", O_RDONLY | O_DIRECTORY);
    SAY("ctl dir %ld\n", R(epoll_ctl(ep, EPOLL_CTL_ADD, f, &ev)));
    SAY("ctl bad op %ld\n", R(epoll_ctl(ep, 9, p[0], &ev)));
    SAY("ctl mod missing %ld\n", R(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev)));
    SAY("wait maxevents 0 %ld\n", R(epoll_wait(ep, (void *)&ev, 0, 0)));
    SAY("wait bad buffer %ld\n", R(epoll_wait(ep, (void *)-4096L, 1, 0)));
    SAY("read epoll %ld\n", R(read(ep, &ev, sizeof ev)));
    close(f);
    close(p[0]);
    close(p[1]);
    close(ep);
}

int main(int argc, char **argv) {
    const char *m = argc > 1 ? argv[1] : "all";
    int all = !strcmp(m, "all");
    if (all || !strcmp(m, "eventfd")) t_eventfd();
    if (all || !strcmp(m, "epoll")) t_epoll();
    if (all || !strcmp(m, "socket")) t_socket();
    if (all || !strcmp(m, "errors")) t_errors();
    if (all || !strcmp(m, "memfd")) t_memfd();
    if (all || !strcmp(m, "timerfd")) t_timerfd();
    if (all || !strcmp(m, "scm")) t_scm();
    if (all || !strcmp(m, "signalfd")) t_signalfd();
    if (all || !strcmp(m, "pidfd")) t_pidfd();
    if (!strcmp(m, "unix")) t_unix(argc > 2 ? argv[2] : "/tmp");
    if (!strcmp(m, "inotify")) t_inotify(argc > 2 ? argv[2] : "/tmp");
    return 0;
}
