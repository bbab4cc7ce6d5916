#define _GNU_SOURCE
/* System V semaphores and message queues (issue 23): prints the same
 * natively and under vkernel. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

union semun { int val; struct semid_ds *buf; unsigned short *array; };

static void sleep_ms(int ms) {
    struct timespec t = {0, ms * 1000000L};
    nanosleep(&t, 0);
}

static int op(int id, int num, int delta, int flg) {
    struct sembuf b = {num, delta, flg};
    int r = semop(id, &b, 1);
    return r < 0 ? -errno : r;
}

static void sems(void) {
    int id = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
    printf("semget: %s\n", id >= 0 ? "ok" : strerror(errno));
    union semun u = {.val = 3};
    int set = semctl(id, 0, SETVAL, u);
    printf("setval: %d getval: %d\n", set, semctl(id, 0, GETVAL));
    printf("take 4 nowait: %d\n", op(id, 0, -4, IPC_NOWAIT));
    int took = op(id, 0, -3, 0);
    printf("take 3: %d left %d\n", took, semctl(id, 0, GETVAL));
    struct sembuf two[2] = {{0, 1, 0}, {1, -1, IPC_NOWAIT}};
    int r = semop(id, two, 2);
    const char *e = r < 0 ? strerror(errno) : "";
    printf("all or nothing: %d %s, sem0 still %d\n", r, e, semctl(id, 0, GETVAL));
    pid_t c = fork();
    if (c == 0) {
        int r = op(id, 1, -1, 0);
        _exit(r == 0 ? 7 : 1);
    }
    sleep_ms(100);
    printf("waiting for sem1: ncnt %d\n", semctl(id, 1, GETNCNT));
    op(id, 1, 1, 0);
    int st;
    waitpid(c, &st, 0);
    int v1 = semctl(id, 1, GETVAL), lp = semctl(id, 1, GETPID);
    printf("child took it: %d, sem1 %d, lastpid is child %d\n", WEXITSTATUS(st), v1, lp == c);
    c = fork();
    if (c == 0) {
        op(id, 0, 5, SEM_UNDO);
        _exit(semctl(id, 0, GETVAL));
    }
    waitpid(c, &st, 0);
    printf("undo: child saw %d, after its exit %d\n", WEXITSTATUS(st), semctl(id, 0, GETVAL));
    struct timespec to = {0, 50000000};
    struct sembuf b = {1, -1, 0};
    r = semtimedop(id, &b, 1, &to);
    e = strerror(errno);
    printf("semtimedop: %d %s\n", r, e);
    unsigned short all[2];
    union semun ua = {.array = all};
    semctl(id, 0, GETALL, ua);
    struct semid_ds ds;
    union semun us = {.buf = &ds};
    semctl(id, 0, IPC_STAT, us);
    printf("getall: %d %d nsems %lu mode %o\n", all[0], all[1], (unsigned long)ds.sem_nsems, ds.sem_perm.mode & 0777);
    c = fork();
    if (c == 0) {
        int r = op(id, 1, -1, 0);
        _exit(r == -EIDRM ? 9 : 1);
    }
    sleep_ms(100);
    printf("rmid: %d\n", semctl(id, 0, IPC_RMID));
    waitpid(c, &st, 0);
    int after = op(id, 0, 1, 0);
    printf("waiter saw EIDRM: %d; after: %d\n", WEXITSTATUS(st) == 9, after);
    key_t k = 0x5eed0000 + getpid() % 1000;
    int a = semget(k, 1, IPC_CREAT | IPC_EXCL | 0600);
    int b2 = semget(k, 1, IPC_CREAT | IPC_EXCL | 0600);
    e = strerror(errno);
    int same = semget(k, 1, 0) == a, bigger = semget(k, 2, 0);
    printf("excl: %d %s; same key same id %d; bigger %d %s\n", b2, e, same, bigger, strerror(errno));
    semctl(a, 0, IPC_RMID);
}

struct m { long type; char text[64]; };

static void msgs(void) {
    int id = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    struct m s;
    long types[] = {5, 2, 9};
    for (int i = 0; i < 3; i++) {
        s.type = types[i];
        snprintf(s.text, sizeof s.text, "type %ld", types[i]);
        msgsnd(id, &s, strlen(s.text) + 1, 0);
    }
    struct msqid_ds ds;
    msgctl(id, IPC_STAT, &ds);
    printf("queued %lu bytes %lu\n", (unsigned long)ds.msg_qnum, (unsigned long)ds.__msg_cbytes);
    struct m r;
    ssize_t n = msgrcv(id, &r, sizeof r.text, -4, 0);
    printf("type <= 4: %zd %ld %s\n", n, r.type, r.text);
    n = msgrcv(id, &r, 3, 0, 0);
    const char *e = strerror(errno);
    printf("small buffer: %zd %s\n", n, e);
    n = msgrcv(id, &r, 3, 0, MSG_NOERROR);
    printf("noerror: %zd %ld %.3s\n", n, r.type, r.text);
    n = msgrcv(id, &r, sizeof r.text, 9, MSG_EXCEPT | IPC_NOWAIT);
    e = strerror(errno);
    printf("except 9: %zd %s\n", n, e);
    n = msgrcv(id, &r, sizeof r.text, 9, 0);
    printf("type 9: %zd %s\n", n, r.text);
    s.type = 0;
    int z = msgsnd(id, &s, 4, 0);
    e = strerror(errno);
    printf("type 0: %d %s\n", z, e);
    pid_t c = fork();
    if (c == 0) {
        ssize_t n = msgrcv(id, &r, sizeof r.text, 42, 0);
        _exit(n == 6 && !strcmp(r.text, "hello") ? 3 : 1);
    }
    sleep_ms(100);
    s.type = 42;
    strcpy(s.text, "hello");
    msgsnd(id, &s, 6, 0);
    int st;
    waitpid(c, &st, 0);
    printf("blocked receiver got it: %d\n", WEXITSTATUS(st) == 3);
    c = fork();
    if (c == 0) {
        ssize_t n = msgrcv(id, &r, sizeof r.text, 0, 0);
        _exit(n < 0 && errno == EIDRM ? 4 : 1);
    }
    sleep_ms(100);
    printf("rmid %d\n", msgctl(id, IPC_RMID, 0));
    waitpid(c, &st, 0);
    printf("receiver saw EIDRM: %d\n", WEXITSTATUS(st) == 4);
}

static void shms(void) {
    int id = shmget(IPC_PRIVATE, 10000, IPC_CREAT | 0600);
    char *p = shmat(id, 0, 0);
    printf("shmat: %s\n", p == (void *)-1 ? strerror(errno) : "ok");
    struct shmid_ds ds;
    shmctl(id, IPC_STAT, &ds);
    printf("size %zu nattch %lu mode %o zero %d\n", ds.shm_segsz, (unsigned long)ds.shm_nattch, ds.shm_perm.mode & 0777, p[9999]);
    strcpy(p, "parent");
    pid_t c = fork();
    if (c == 0) {
        /* The inherited attachment and a second one share the pages. */
        char *q = shmat(id, 0, SHM_RDONLY);
        int same = q != (void *)-1 && !strcmp(q, "parent");
        strcpy(p + 100, "child");
        shmdt(q);
        _exit(same ? 5 : 1);
    }
    int st;
    waitpid(c, &st, 0);
    printf("child saw parent's: %d; parent sees child's: %s\n", WEXITSTATUS(st) == 5, p + 100);
    /* A second attachment right after the first: detaching it leaves
     * the first. */
    char *r = mmap(0, 2 * 12288, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(r, 2 * 12288);
    char *r1 = shmat(id, r, 0), *r2 = shmat(id, r + 12288, 0);
    int qd = shmdt(r2);
    printf("adjacent: attached %d %d detached %d first still %s\n", r1 == r, r2 == r + 12288, qd, r1);
    shmdt(r1);
    int bad = shmdt(p + 4096);
    const char *e = strerror(errno);
    printf("shmdt inside: %d %s\n", bad, e);
    printf("rmid: %d\n", shmctl(id, IPC_RMID, 0));
    strcpy(p, "still here");
    void *again = shmat(id, 0, 0);
    e = strerror(errno);
    printf("after rmid: %s; attach again: %s\n", p, again == (void *)-1 ? e : "ok");
    printf("shmdt: %d\n", shmdt(p));
    key_t k = 0x5eed1000 + getpid() % 1000;
    int a = shmget(k, 4096, IPC_CREAT | IPC_EXCL | 0600);
    int b = shmget(k, 4096, IPC_CREAT | IPC_EXCL | 0600);
    e = strerror(errno);
    int same = shmget(k, 100, 0) == a, bigger = shmget(k, 8192, 0);
    printf("excl: %d %s; same %d; bigger %d %s\n", b, e, same, bigger, strerror(errno));
    shmctl(a, IPC_RMID, 0);
}

int main(void) {
    setvbuf(stdout, 0, _IONBF, 0);
    sems();
    msgs();
    shms();
    return 0;
}
