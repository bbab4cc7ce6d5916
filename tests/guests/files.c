/* File syscalls against a directory tree: argv[1] is its root. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (chdir(argv[1]) != 0) { perror("chdir"); return 1; }
    int fd = open("etc/greeting", O_RDONLY);
    if (fd < 0) { perror("open"); return 1; }
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("read %zd: %s", n, buf);
    struct stat st;
    fstat(fd, &st);
    printf("fstat size %lld reg %d\n", (long long)st.st_size, S_ISREG(st.st_mode));
    printf("lseek %lld\n", (long long)lseek(fd, 6, SEEK_SET));
    n = read(fd, buf, 5); buf[n] = 0;
    printf("after seek: %s\n", buf);
    n = pread(fd, buf, 5, 0); buf[n] = 0;
    printf("pread: %s\n", buf);
    int d = dup(fd);
    printf("dup>fd %d\n", d > fd);
    close(fd);
    close(d);
    printf("stat dir %d\n", stat("etc", &st) == 0 && S_ISDIR(st.st_mode));
    errno = 0;
    printf("missing %d errno ENOENT %d\n", open("nope", O_RDONLY), errno == ENOENT);
    printf("access %d %d\n", access("etc/greeting", R_OK), access("nope", F_OK));
    char link[64];
    n = readlink("etc/link", link, sizeof link);
    printf("readlink %.*s\n", (int)n, link);
    fd = open("etc/link", O_RDONLY);
    n = read(fd, buf, 5); buf[n] = 0;
    printf("via symlink: %s\n", buf);
    close(fd);
    DIR *dir = opendir("etc");
    char *names[64]; int k = 0;
    struct dirent *e;
    while ((e = readdir(dir)) && k < 64)
        if (e->d_name[0] != '.') names[k++] = strdup(e->d_name);
    closedir(dir);
    qsort(names, k, sizeof *names, cmp);
    for (int i = 0; i < k; i++) printf("entry %s\n", names[i]);
    char cwd[256];
    chdir("etc");
    printf("cwd ends with /etc %d\n", strlen(getcwd(cwd, sizeof cwd)) >= 4 && !strcmp(cwd + strlen(cwd) - 4, "/etc"));
    int p[2];
    pipe(p);
    write(p[1], "through a pipe", 14);
    n = read(p[0], buf, sizeof buf); buf[n] = 0;
    printf("pipe: %s\n", buf);
    dup2(p[1], 9);
    printf("fcntl getfd %d\n", fcntl(9, F_GETFD));
    FILE *f = fopen("sub/data.txt", "r");
    int lines = 0;
    while (fgets(buf, sizeof buf, f)) lines++;
    fclose(f);
    printf("lines %d\n", lines);
    return 0;
}
