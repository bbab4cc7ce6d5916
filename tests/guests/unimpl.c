/* Calls _sysctl (156), which the vkernel does not serve (ENOSYS, as Linux
 * since 5.5), three times, then says "done". Nothing is written to
 * stderr. */
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(void) {
    for (int i = 0; i < 3; i++)
        syscall(156, 0, 0, 0, 0);
    printf("done\n");
    return 0;
}
