/* Dies of the signal named by argv[1]: segv, ill, fpe, abort. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "segv";
    printf("about to %s\n", what);
    fflush(stdout);
    if (!strcmp(what, "segv")) *(volatile int *)8 = 1;
    if (!strcmp(what, "ill")) __asm__ volatile("ud2");
    if (!strcmp(what, "fpe")) { volatile int z = 0; printf("%d\n", 100 / z); }
    if (!strcmp(what, "abort")) abort();
    if (!strcmp(what, "stack")) { volatile char big[1 << 16]; big[0] = 1; return main(argc, argv) + big[0]; }
    return 0;
}
