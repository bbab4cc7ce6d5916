/* cpuid sites (linux::mm::patch::cpuid): the forms a C library uses, each
 * site run once per process, and a loop over leaves in registers.
 *   cpuid print          print every answer, one line each
 *   cpuid spawn N SELF   print its own answers, then run SELF print N
 *                        times (fork+exec) and compare each child's
 *                        output with its own: "children N same" or the
 *                        first difference.
 * Under a virtual kernel the first processes of a program answer their
 * cpuids in the vkernel and later ones start with the constant sites
 * rewritten: every child must see what KVM's own emulation gave the parent,
 * flags included (cpuid changes none). All run on one CPU (APIC IDs). */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char out[1 << 16];
static size_t len;

static void put(const char *what, unsigned leaf, unsigned sub, unsigned a, unsigned b, unsigned c,
                unsigned d) {
    len += snprintf(out + len, sizeof out - len, "%s %x.%x: %08x %08x %08x %08x\n", what, leaf, sub,
                    a, b, c, d);
}

/* mov eax, imm; cpuid (the leaf's answer does not depend on ECX). */
#define FORM_A(leaf)                                                                  \
    do {                                                                              \
        unsigned a, b, c, d;                                                          \
        __asm__ volatile("mov $" #leaf ", %%eax\n\tcpuid"                             \
                         : "=a"(a), "=b"(b), "=c"(c), "=d"(d));                       \
        put("a", leaf, 0, a, b, c, d);                                                \
    } while (0)

/* mov eax, imm; xor ecx, ecx; cpuid. */
#define FORM_B(leaf)                                                                  \
    do {                                                                              \
        unsigned a, b, c, d;                                                          \
        __asm__ volatile("mov $" #leaf ", %%eax\n\txor %%ecx, %%ecx\n\tcpuid"         \
                         : "=a"(a), "=b"(b), "=c"(c), "=d"(d));                       \
        put("b", leaf, 0, a, b, c, d);                                                \
    } while (0)

/* mov eax, imm; mov ecx, imm; cpuid. */
#define FORM_C(leaf, sub)                                                             \
    do {                                                                              \
        unsigned a, b, c, d;                                                          \
        __asm__ volatile("mov $" #leaf ", %%eax\n\tmov $" #sub ", %%ecx\n\tcpuid"     \
                         : "=a"(a), "=b"(b), "=c"(c), "=d"(d));                       \
        put("c", leaf, sub, a, b, c, d);                                              \
    } while (0)

static void regs(unsigned leaf, unsigned sub) {
    unsigned a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "0"(leaf), "2"(sub));
    put("r", leaf, sub, a, b, c, d);
}

static void print(void) {
    FORM_A(0);
    FORM_A(1);
    FORM_A(0x80000000);
    FORM_A(0x80000001);
    FORM_A(0x80000005);
    FORM_A(0x80000006);
    FORM_A(0x80000008);
    FORM_A(0x100);        /* past the last basic leaf */
    FORM_A(0x80000100);   /* past the last extended leaf */
    FORM_A(0x40000000);   /* the hypervisor's: answered, never rewritten */
    FORM_B(4);
    FORM_B(7);
    FORM_B(0xd);
    FORM_B(0xb);
    FORM_C(0xd, 1);
    FORM_C(4, 1);
    FORM_C(0xb, 0x1234);
    for (unsigned leaf = 0; leaf <= 0x24; leaf++)
        for (unsigned sub = 0; sub < 3; sub++) regs(leaf, sub);
    for (unsigned leaf = 0x80000000; leaf <= 0x80000024; leaf++) regs(leaf, 0);
    /* cpuid leaves the flags alone: a carry set before survives it. */
    unsigned char cf, zf;
    __asm__ volatile("stc\n\tmov $1, %%eax\n\tcpuid\n\tsetc %0"
                     : "=r"(cf)
                     :
                     : "eax", "ebx", "ecx", "edx", "cc");
    /* xor ecx, ecx sets ZF: the rewritten site must too. */
    __asm__ volatile("mov $1, %%eax\n\tcmp $2, %%eax\n\tmov $4, %%eax\n\txor %%ecx, %%ecx\n\t"
                     "cpuid\n\tsetz %0"
                     : "=r"(zf)
                     :
                     : "eax", "ebx", "ecx", "edx", "cc");
    len += snprintf(out + len, sizeof out - len, "flags cf=%d zf=%d\n", cf, zf);
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "print") == 0) {
        print();
        fwrite(out, 1, len, stdout);
        return 0;
    }
    if (argc < 4 || strcmp(argv[1], "spawn") != 0) {
        fprintf(stderr, "usage: cpuid print | cpuid spawn N SELF\n");
        return 2;
    }
    int n = atoi(argv[2]);
    /* APIC IDs (leaf 1's EBX, leaf 0xb's EDX) name the CPU that answers:
     * every process runs on the first CPU it may. */
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &set)) {
                CPU_ZERO(&set);
                CPU_SET(c, &set);
                sched_setaffinity(0, sizeof set, &set);
                break;
            }
    }
    print();
    static char got[1 << 16];
    for (int i = 1; i <= n; i++) {
        int p[2];
        if (pipe(p)) return 3;
        pid_t pid = fork();
        if (pid == 0) {
            dup2(p[1], 1);
            close(p[0]);
            close(p[1]);
            execl(argv[3], argv[3], "print", (char *)0);
            _exit(127);
        }
        close(p[1]);
        size_t g = 0;
        ssize_t r;
        while ((r = read(p[0], got + g, sizeof got - g)) > 0) g += r;
        close(p[0]);
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            printf("child %d: status %#x\n", i, st);
            return 1;
        }
        if (g != len || memcmp(got, out, len) != 0) {
            size_t k = 0;
            while (k < g && k < len && got[k] == out[k]) k++;
            while (k > 0 && out[k - 1] != '\n') k--;
            printf("child %d differs at: %.*s", i, (int)(strchr(out + k, '\n') - (out + k) + 1),
                   out + k);
            const char *e = memchr(got + k, '\n', g - k);
            printf("child %d saw:        %.*s\n", i, e ? (int)(e - (got + k)) : (int)(g - k),
                   got + k);
            return 1;
        }
    }
    printf("children %d same\n", n);
    /* The parent's own answers, for the record. */
    fwrite(out, 1, len, stderr);
    return 0;
}
