/* fork() in a threaded program while the other threads allocate, resize and free blocks of both
 * kinds: the child keeps the blocks it inherited (content intact, freeable, resizable) and
 * allocates new ones from pagewise, from its main thread and from a thread of its own. Run
 * preloaded by tests/c_abi.rs. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

static atomic_int stop;
static size_t T;

static void *churn(void *arg) {
    uintptr_t id = (uintptr_t)arg;
    size_t sizes[] = {64, T, 3 * T + 100, 2 << 20, 1000, 5 << 20};
    unsigned i = 0;
    while (!atomic_load(&stop)) {
        size_t n = sizes[i++ % 6];
        unsigned char *p = malloc(n);
        CHECK(p);
        fill(p, n, id + i);
        p = realloc(p, n + T);
        CHECK(p && intact(p, n, id + i));
        free(p);
    }
    return NULL;
}

/* What a child does: work with what it inherited and with new blocks, in two threads. */
static void *child_work(void *arg) {
    uintptr_t seed = (uintptr_t)arg;
    struct pagewise_stats before, after;
    pw_stats(&before);
    for (int k = 0; k < 20; k++) {
        size_t n = (size_t)(k + 1) * T;
        unsigned char *p = malloc(n);
        CHECK(p);
        fill(p, n, seed + k);
        p = realloc(p, 2 * n);
        CHECK(p && intact(p, n, seed + k));
        free(p);
    }
    pw_stats(&after);
    CHECK(after.large_allocs >= before.large_allocs + 20);
    return NULL;
}

int main(void) {
    T = expected_threshold();
    pthread_t t[3];
    for (uintptr_t i = 0; i < 3; i++) CHECK(pthread_create(&t[i], NULL, churn, (void *)i) == 0);
    for (int round = 0; round < 16; round++) {
        size_t n = 4 * T + (size_t)round * 4096;
        unsigned char *big = malloc(n), *small = malloc(100);
        CHECK(big && small);
        fill(big, n, 1000 + round);
        fill(small, 100, 2000 + round);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            CHECK(intact(big, n, 1000 + round) && intact(small, 100, 2000 + round));
            big = realloc(big, 3 * n);
            CHECK(big && intact(big, n, 1000 + round));
            free(small);
            pthread_t c;
            CHECK(pthread_create(&c, NULL, child_work, (void *)1) == 0);
            child_work((void *)2);
            CHECK(pthread_join(c, NULL) == 0);
            free(big);
            exit(0); /* through atexit: PAGEWISE_STATS prints here too */
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "child of round %d failed (status %#x)\n", round, status);
            abort();
        }
        CHECK(intact(big, n, 1000 + round));
        free(big);
        free(small);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++) CHECK(pthread_join(t[i], NULL) == 0);
    printf("fork: ok (16 children)\n");
    return 0;
}
