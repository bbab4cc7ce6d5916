/* Calls kexec_load (246), which the vkernel does not serve (ENOSYS), three
 * times, then says "done". Nothing is written to stderr. */
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(void) {
    for (int i = 0; i < 3; i++)
        syscall(246, 0, 0, 0, 0);
    printf("done\n");
    return 0;
}
