/* A program for gdb to debug (tests/linux_ptrace.rs): a function with
 * arguments to break in and finish, a second thread to break in, and an
 * exit status. */
#include <pthread.h>
#include <stdio.h>

static int counter;

int add(int a, int b) {
    int c = a + b;
    return c;
}

static void *worker(void *arg) {
    counter += *(int *)arg;
    return NULL;
}

int main(void) {
    int r = add(2, 3);
    pthread_t t;
    int n = 7;
    pthread_create(&t, NULL, worker, &n);
    pthread_join(t, NULL);
    printf("r=%d counter=%d\n", r, counter);
    return r + counter - 9;
}
