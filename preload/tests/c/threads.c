/* Threads allocating, resizing and freeing blocks of both kinds, handing them to each other
 * through shared slots (so that a block is often freed or resized by another thread than the
 * one that made it), checking every block's content at each step. Run preloaded by
 * tests/c_abi.rs. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "common.h"

#define THREADS 4
#define SLOTS 64
#define OPS 1000

struct block {
    unsigned char *p;
    size_t n;
    uintptr_t seed;
};

static _Atomic(struct block *) slots[SLOTS];
static size_t T;

static uint64_t next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Sizes around the threshold and far above it, and small ones. */
static size_t size_for(uint64_t r) {
    switch (r % 6) {
    case 0: return 1 + r % 512;
    case 1: return T - 64 + r % 128; /* straddles the threshold */
    case 2: return T + r % (4 * T);
    case 3: return (1 + r % 4) << 20;
    case 4: return 1 + r % 200000;
    default: return 16 + r % 4096;
    }
}

static void check(struct block *b) {
    if (!intact(b->p, b->n, b->seed)) {
        fprintf(stderr, "block %p (%zu bytes) lost its content\n", (void *)b->p, b->n);
        abort();
    }
}

static void *worker(void *arg) {
    uint64_t s = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);
    for (int op = 0; op < OPS; op++) {
        uint64_t r = next(&s);
        struct block *b = atomic_exchange(&slots[r % SLOTS], NULL);
        if (b) check(b);
        switch (b ? (r >> 8) % 3 : 0) {
        case 0: /* new block (freeing what was there) */
            if (b) {
                free(b->p);
                free(b);
            }
            b = malloc(sizeof *b);
            CHECK(b);
            b->n = size_for(r >> 16);
            b->p = (r >> 40) % 4 == 0 ? calloc(1, b->n) : malloc(b->n);
            CHECK(b->p);
            if ((r >> 40) % 4 == 0)
                for (size_t i = 0; i < b->n; i += 4096) CHECK(b->p[i] == 0);
            break;
        case 1: { /* resize, keeping the content */
            size_t m = size_for(r >> 16);
            unsigned char *q = realloc(b->p, m);
            CHECK(q);
            b->p = q;
            b->n = b->n < m ? b->n : m;
            check(b);
            b->n = m;
            break;
        }
        default: /* free */
            free(b->p);
            free(b);
            continue;
        }
        CHECK(malloc_usable_size(b->p) >= b->n);
        b->seed = r;
        fill(b->p, b->n, b->seed);
        struct block *old = atomic_exchange(&slots[(r >> 24) % SLOTS], b);
        if (old) {
            check(old);
            free(old->p);
            free(old);
        }
    }
    return NULL;
}

int main(void) {
    T = expected_threshold();
    pthread_t t[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    for (int i = 0; i < SLOTS; i++) {
        struct block *b = slots[i];
        if (b) {
            check(b);
            free(b->p);
            free(b);
        }
    }
    struct pagewise_stats s;
    pw_stats(&s);
    CHECK(s.large_allocs > 0 && s.large_allocs == s.large_frees && s.live_bytes == 0);
    printf("threads: ok (large_allocs=%llu reallocs=%llu mremaps=%llu)\n",
           (unsigned long long)s.large_allocs, (unsigned long long)s.reallocs,
           (unsigned long long)s.mremaps);
    return 0;
}
