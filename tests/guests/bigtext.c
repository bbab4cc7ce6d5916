/* A program with 6 MiB of text, like a Go program or a large PIE: the
 * page cache may map its whole 2 MiB windows with one large page each
 * (linux::mm::pagecache::get_large). Every 4 KiB page of the region is
 * `lea 0(%rip), %rax; ret` then int3 padding.
 *   bigtext run      call every page, read every page's first bytes back
 *                    through a pipe (the kernel's copy from the text),
 *                    fork and call again in the child; print a summary
 *   bigtext scribble make one page writable, change it, then exec
 *                    `bigtext run` (SELF in argv[2]): the new process
 *                    must see the file's bytes, not the change */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGES 1536

__asm__(".text\n"
        ".p2align 12\n"
        ".globl big_text\n"
        "big_text:\n"
        ".rept 1536\n"
        "lea 0(%rip), %rax\n"
        "ret\n"
        ".fill 4096 - 8, 1, 0xcc\n"
        ".endr\n");
extern char big_text[];

typedef uintptr_t (*fn)(void);

/* Sum over every page of (what the page's code returns - its address). */
static uintptr_t call_all(void) {
    uintptr_t sum = 0;
    for (int i = 0; i < PAGES; i++) {
        char *p = big_text + (size_t)i * 4096;
        sum += ((fn)(void *)p)() - (uintptr_t)p;
    }
    return sum;
}

static int run(void) {
    uintptr_t sum = call_all();
    int pfd[2];
    if (pipe(pfd)) return 3;
    int same = 0;
    for (int i = 0; i < PAGES; i++) {
        char *p = big_text + (size_t)i * 4096;
        char got[16];
        if (write(pfd[1], p, sizeof got) != sizeof got) return 4;
        if (read(pfd[0], got, sizeof got) != sizeof got) return 5;
        same += memcmp(got, p, sizeof got) == 0 && (unsigned char)got[8] == 0xcc;
    }
    pid_t pid = fork();
    if (pid == 0) _exit(call_all() == sum ? 0 : 1);
    int st;
    waitpid(pid, &st, 0);
    printf("pages %d, returned %lu each, read back %d, child %s\n", PAGES,
           (unsigned long)(sum / PAGES), same,
           WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "agrees" : "differs");
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "run") == 0) return run();
    if (argc >= 3 && strcmp(argv[1], "scribble") == 0) {
        char *p = big_text + 700 * 4096;
        if (mprotect(p, 4096, PROT_READ | PROT_WRITE | PROT_EXEC)) return 6;
        memset(p, 0x90, 16);
        printf("scribbled: %s\n", (unsigned char)p[0] == 0x90 ? "yes" : "no");
        fflush(stdout);
        execl(argv[2], argv[2], "run", (char *)0);
        return 7;
    }
    fprintf(stderr, "usage: bigtext run | bigtext scribble SELF\n");
    return 2;
}
