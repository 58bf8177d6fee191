/* Every exported function of libpagewise.so and its C contract, for both kinds of block (glibc's
 * below the threshold, pagewise's from it on), alignments from 8 B to 1 GiB, realloc chains
 * through the threshold, and the ownership rule: blocks glibc made are never taken for
 * pagewise's, page-aligned ones included. Run preloaded by tests/c_abi.rs. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"

/* glibc's own allocator, bypassing the library (what glibc-internal callers may use). */
extern void *__libc_memalign(size_t align, size_t size);
extern void *__libc_malloc(size_t size);
extern void __libc_free(void *p);

static size_t T;          /* the threshold */
static const size_t PAGE = 4096;

static struct pagewise_stats now(void) {
    struct pagewise_stats s;
    pw_stats(&s);
    return s;
}

static size_t round_page(size_t n) { return (n + PAGE - 1) & ~(PAGE - 1); }

/* A new block of n bytes from malloc, and whether pagewise made it. */
static void *counted_malloc(size_t n, int *ours) {
    uint64_t before = now().large_allocs;
    void *p = malloc(n);
    *ours = now().large_allocs == before + 1;
    return p;
}

static void test_threshold_and_struct(void) {
    CHECK(sizeof(struct pagewise_stats) == 29 * sizeof(uint64_t));
    struct pagewise_stats s = now();
    CHECK(s.threshold == T);
    void (*f)(struct pagewise_stats *) = (void (*)(struct pagewise_stats *))dlsym(RTLD_DEFAULT, "pagewise_stats");
    f(NULL); /* allowed: writes nothing */
}

static void test_malloc_zero_and_both_kinds(void) {
    void *a = malloc(0), *b = malloc(0);
    CHECK(a && b && a != b);
    free(a);
    free(b);
    free(NULL);

    int ours;
    void *small = counted_malloc(T - 1, &ours);
    CHECK(small && !ours);
    CHECK(malloc_usable_size(small) >= T - 1);
    fill(small, T - 1, 1);

    uint64_t frees = now().large_frees;
    void *big = counted_malloc(T, &ours);
    CHECK(big && ours);
    CHECK((uintptr_t)big % PAGE == 0);
    CHECK(malloc_usable_size(big) == round_page(T));
    fill(big, malloc_usable_size(big), 2); /* the whole usable size is the program's */
    CHECK(intact(small, T - 1, 1));
    CHECK(intact(big, malloc_usable_size(big), 2));
    free(small);
    CHECK(now().large_frees == frees);
    free(big);
    CHECK(now().large_frees == frees + 1);
    CHECK(malloc_usable_size(NULL) == 0);
}

static void test_calloc(void) {
    size_t sizes[] = {1, 100, T - 1, T, 3 * T + 5, 8 << 20};
    for (unsigned round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            size_t n = sizes[i];
            unsigned char *p = calloc(n, 1);
            CHECK(p);
            size_t step = n > 65536 ? 4093 : 1;
            for (size_t j = 0; j < n; j += step) CHECK(p[j] == 0);
            CHECK(p[n - 1] == 0);
            memset(p, 0xa5, n); /* the next round may get these pages back: calloc must clear */
            free(p);
        }
    }
    errno = 0;
    CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc((size_t)1 << 33, (size_t)1 << 33) == NULL && errno == ENOMEM);
    void *z = calloc(0, 12345);
    CHECK(z);
    free(z);
}

static void test_failures_set_enomem(void) {
    errno = 0;
    CHECK(malloc(SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc(PTRDIFF_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(malloc((size_t)1 << 47) == NULL && errno == ENOMEM); /* more than the address space */
    errno = 0;
    CHECK(memalign(1 << 20, SIZE_MAX - 4096) == NULL && errno == ENOMEM);

    for (int k = 0; k < 2; k++) {
        size_t n = k ? 2 * T : 100;
        void *p = malloc(n);
        fill(p, n, 3);
        errno = 0;
        CHECK(realloc(p, PTRDIFF_MAX) == NULL && errno == ENOMEM);
        CHECK(intact(p, n, 3)); /* a failed realloc leaves the block */
        errno = 0;
        CHECK(reallocarray(p, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
        CHECK(intact(p, n, 3));
        void *q = reallocarray(p, 4, n);
        CHECK(q && intact(q, n, 3));
        free(q);
    }
    /* A successful large allocation leaves errno as it was (the engine's work is invisible). */
    errno = 12345;
    void *p = malloc(5 * T);
    CHECK(p && errno == 12345);
    free(p);
}

static void test_realloc_contracts(void) {
    void *p = realloc(NULL, 3 * T);
    CHECK(p);
    fill(p, 3 * T, 4);
    uint64_t frees = now().large_frees;
    CHECK(realloc(p, 0) == NULL); /* glibc: frees, returns NULL */
    CHECK(now().large_frees == frees + 1);
    p = realloc(NULL, 10);
    CHECK(p);
    CHECK(realloc(p, 0) == NULL);
    /* Shrinking and growing a pagewise block within its pages keeps it in place. */
    p = malloc(4 * T);
    fill(p, 4 * T, 5);
    void *q = realloc(p, 4 * T - 1);
    CHECK(q == p && intact(q, 4 * T - 1, 5));
    free(q);
}

/* Alignments from 8 B to 1 GiB, through every aligned entry point, small and large sizes. */
static void test_alignments(void) {
    size_t sizes[] = {1, 100, T - 1, T, 3 * T + 5};
    for (size_t align = 8; align <= ((size_t)1 << 30); align <<= 1) {
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            size_t n = sizes[i];
            void *p[3] = {0};
            CHECK(posix_memalign(&p[0], align, n) == 0);
            p[1] = memalign(align, n);
            p[2] = aligned_alloc(align, n);
            for (int k = 0; k < 3; k++) {
                CHECK(p[k] && (uintptr_t)p[k] % align == 0);
                CHECK(malloc_usable_size(p[k]) >= n);
                fill(p[k], n, align + i + k);
            }
            for (int k = 0; k < 3; k++) {
                CHECK(intact(p[k], n, align + i + k));
                if (k == 1) {
                    /* realloc keeps the content (not the alignment, as in glibc) */
                    void *q = realloc(p[k], n + T);
                    CHECK(q && intact(q, n, align + i + k));
                    p[k] = q;
                }
                free(p[k]);
            }
        }
    }
    /* posix_memalign: EINVAL for an alignment that is not a power-of-two multiple of
     * sizeof(void *), ENOMEM when it cannot serve; errno untouched either way. */
    size_t bad[] = {0, 1, 2, 4, 3, 24, 4097, (size_t)1 << 63 | 8};
    void *p = (void *)0x1;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        errno = 77;
        CHECK(posix_memalign(&p, bad[i], 64) == EINVAL && errno == 77);
        CHECK(p == (void *)0x1); /* not written */
    }
    errno = 77;
    CHECK(posix_memalign(&p, 4096, PTRDIFF_MAX) == ENOMEM && errno == 77);
    CHECK(posix_memalign(&p, 64, 0) == 0 && p);
    free(p);
    /* memalign and aligned_alloc (glibc 2.36) round an odd alignment up to a power of two. */
    p = memalign(48, 2 * T);
    CHECK(p && (uintptr_t)p % 64 == 0);
    free(p);
    p = memalign(3, 10);
    CHECK(p && (uintptr_t)p % 4 == 0);
    free(p);
}

static void test_valloc_pvalloc(void) {
    size_t sizes[] = {0, 1, 5000, T, 3 * T + 5};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        void *v = valloc(n), *pv = pvalloc(n);
        CHECK(v && pv && (uintptr_t)v % PAGE == 0 && (uintptr_t)pv % PAGE == 0);
        CHECK(malloc_usable_size(v) >= n);
        CHECK(malloc_usable_size(pv) >= round_page(n));
        fill(pv, round_page(n), 9);
        CHECK(intact(pv, round_page(n), 9));
        free(v);
        free(pv);
    }
    errno = 0;
    CHECK(pvalloc(SIZE_MAX - 10) == NULL && errno == ENOMEM);
}

/* realloc up through the threshold in uneven steps, then back down, keeping the content. */
static void test_realloc_chains(void) {
    for (int variant = 0; variant < 2; variant++) {
        size_t n = 24;
        unsigned char *p = malloc(n);
        fill(p, n, 10);
        uint64_t allocs = now().large_allocs;
        while (n < (64u << 20)) {
            size_t next = n * 2 + (variant ? 4095 : 13);
            p = realloc(p, next);
            CHECK(p && intact(p, n, 10));
            fill(p, next, 10);
            n = next;
        }
        CHECK(now().large_allocs > allocs); /* it crossed into pagewise's blocks */
        CHECK(malloc_usable_size(p) == round_page(n));
        uint64_t frees = now().large_frees;
        while (n > 10) {
            size_t next = n / 3;
            p = realloc(p, next);
            CHECK(p && intact(p, next, 10));
            n = next;
        }
        CHECK(now().large_frees > frees); /* and back into glibc's */
        int ours;
        void *probe = counted_malloc(1, &ours);
        CHECK(!ours);
        free(probe);
        free(p);
    }
    /* From glibc's block straight to a large one and back, content kept both ways. */
    unsigned char *p = malloc(1000);
    fill(p, 1000, 11);
    p = realloc(p, 10 * T);
    CHECK(p && intact(p, 1000, 11) && (uintptr_t)p % PAGE == 0);
    fill(p, 10 * T, 12);
    p = realloc(p, 777);
    CHECK(p && intact(p, 777, 12));
    free(p);
}

/* Page-aligned blocks that glibc made (what glibc-internal callers get from __libc_memalign)
 * go back to glibc: pagewise never frees, caches or resizes them as its own. */
static void test_ownership(void) {
    size_t sizes[] = {PAGE, T, 4 * T, 8 << 20};
    for (int round = 0; round < 50; round++) {
        size_t n = sizes[round % 4];
        /* A pagewise block of the same size, freed first: its address may come back from glibc. */
        free(malloc(n < T ? T : n));
        unsigned char *g = __libc_memalign(PAGE, n);
        CHECK(g && (uintptr_t)g % PAGE == 0);
        fill(g, n, 13);
        struct pagewise_stats before = now();
        CHECK(malloc_usable_size(g) >= n && malloc_usable_size(g) < n + PAGE + 64);
        /* realloc within glibc keeps it glibc's (small), or moves it to pagewise (large). */
        if (n < T) {
            g = realloc(g, n + 16);
            CHECK(g && intact(g, n, 13));
        }
        free(g);
        struct pagewise_stats after = now();
        CHECK(after.large_frees == before.large_frees);
        CHECK(after.large_allocs == before.large_allocs);
        CHECK(after.cached_bytes <= before.cached_bytes);
    }
    /* glibc blocks mapped at the address pagewise just unmapped: still glibc's. The kernel
     * puts a mapping in the highest gap that fits it, which is often the hole pagewise just
     * left; glibc blocks that land elsewhere are kept, filling those other gaps, until glibc
     * has mapped pagewise's range a few times. */
    enum { ROUNDS = 200 };
    static unsigned char *kept[ROUNDS];
    int reused = 0, rounds = 0;
    for (; rounds < ROUNDS && reused < 5; rounds++) {
        void *mine = malloc(16 << 20);
        uintptr_t at = (uintptr_t)mine;
        free(mine);
        pw_purge();
        unsigned char *g = __libc_memalign(PAGE, 8 << 20); /* fits in the hole left */
        CHECK(g);
        fill(g, 8 << 20, 14);
        kept[rounds] = g;
        if ((uintptr_t)g >= at && (uintptr_t)g < at + (16 << 20)) {
            reused++;
            uint64_t frees = now().large_frees;
            free(g);
            CHECK(now().large_frees == frees);
            kept[rounds] = NULL;
        }
    }
    for (int i = 0; i < rounds; i++) {
        if (!kept[i]) continue;
        uint64_t frees = now().large_frees;
        CHECK(intact(kept[i], 8 << 20, 14));
        free(kept[i]);
        CHECK(now().large_frees == frees);
    }
    printf("ownership: glibc mapped pagewise's freed range %d times in %d rounds\n", reused, rounds);
    CHECK(reused > 0); /* else this part tested nothing */
}

static void test_purge(void) {
    void *p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = malloc((size_t)(i + 1) << 20);
        memset(p[i], 1, (size_t)(i + 1) << 20);
    }
    for (int i = 0; i < 4; i++) free(p[i]);
    pw_purge();
    CHECK(now().cached_bytes == 0);
}

int main(void) {
    T = expected_threshold();
    test_threshold_and_struct();
    test_malloc_zero_and_both_kinds();
    test_calloc();
    test_failures_set_enomem();
    test_realloc_contracts();
    test_alignments();
    test_valloc_pvalloc();
    test_realloc_chains();
    test_ownership();
    test_purge();
    struct pagewise_stats s = now();
    printf("api: ok (large_allocs=%llu large_frees=%llu mremaps=%llu cache_hits=%llu)\n",
           (unsigned long long)s.large_allocs, (unsigned long long)s.large_frees,
           (unsigned long long)s.mremaps, (unsigned long long)s.cache_hits);
    return 0;
}
