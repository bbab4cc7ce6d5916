/* A program with 1.6 MB of initialised data (as CPython's static
 * objects): it writes one byte in every page, then sums the data. */
#include <stdio.h>

#define PAGES 400
static volatile unsigned char data[PAGES * 4096] = {1};

int main(void) {
    for (int i = 0; i < PAGES; i++) data[i * 4096 + 7] = (unsigned char)i;
    unsigned long sum = 0;
    for (int i = 0; i < PAGES * 4096; i += 512) sum += data[i] + data[i + 7];
    printf("pages %d sum %lu\n", PAGES, sum);
    return 0;
}
