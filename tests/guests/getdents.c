/* The legacy getdents call (struct linux_dirent: d_type is the record's
   last byte) and getdents64 (d_type before the name) on the directory
   argv[1]: each entry's name, type and inode as stat sees them, the record
   layout, several buffer sizes, and EINVAL for a buffer too small for one
   record. Prints only what is the same natively and under vkernel. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }

/* List the directory with call `nr` through `size`-byte reads. */
static void list(const char *dir, long nr, size_t size) {
    const char *call = nr == SYS_getdents ? "getdents" : "getdents64";
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) { perror("open"); exit(1); }
    static char buf[4096] __attribute__((aligned(8)));
    char *lines[64];
    int k = 0, bad = 0;
    for (;;) {
        long n = syscall(nr, fd, buf, size);
        if (n < 0) { printf("%s %zu: errno %d\n", call, size, errno); break; }
        if (n == 0) break;
        for (long pos = 0; pos < n;) {
            unsigned long long ino;
            unsigned short reclen;
            memcpy(&ino, buf + pos, 8);
            memcpy(&reclen, buf + pos + 16, 2);
            const char *name;
            unsigned char type;
            size_t head;
            if (nr == SYS_getdents) {
                name = buf + pos + 18;
                type = (unsigned char)buf[pos + reclen - 1];
                head = 18 + 2; /* the name's NUL and d_type */
            } else {
                name = buf + pos + 19;
                type = (unsigned char)buf[pos + 18];
                head = 19 + 1;
            }
            if (reclen % 8 || pos + reclen > n || head + strnlen(name, reclen) > reclen) {
                printf("%s %zu: bad record at %ld (reclen %u)\n", call, size, pos, reclen);
                bad = 1;
                break;
            }
            if (strcmp(name, ".") && strcmp(name, "..") && k < 64) {
                struct stat st;
                int same = fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_ino == ino;
                int want = S_ISDIR(st.st_mode) ? 4 : S_ISLNK(st.st_mode) ? 10 : S_ISCHR(st.st_mode) ? 2 : 8;
                char *l;
                if (asprintf(&l, "%s type %u (stat says %d) ino matches stat %d", name, type, want, same) < 0) exit(1);
                lines[k++] = l;
            }
            pos += reclen;
        }
        if (bad) break;
    }
    close(fd);
    qsort(lines, k, sizeof *lines, cmp);
    for (int i = 0; i < k; i++) printf("%s %zu: %s\n", call, size, lines[i]);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    size_t sizes[] = {4096, 64, 8}; /* 64: one or two records a call */
    for (int i = 0; i < 3; i++) {
        list(argv[1], SYS_getdents, sizes[i]);
        list(argv[1], SYS_getdents64, sizes[i]);
    }
    return 0;
}
