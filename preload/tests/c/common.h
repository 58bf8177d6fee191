/* Shared by the C tests of libpagewise.so (run preloaded by tests/c_abi.rs). */
#ifndef PAGEWISE_TEST_COMMON_H
#define PAGEWISE_TEST_COMMON_H

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pagewise.h"

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

/* The library's own functions, looked up at run time: a test that runs without the library
 * preloaded fails here instead of passing on glibc alone. */
static inline void pw_stats(struct pagewise_stats *out) {
    static void (*f)(struct pagewise_stats *);
    if (!f) f = (void (*)(struct pagewise_stats *))dlsym(RTLD_DEFAULT, "pagewise_stats");
    if (!f) {
        fprintf(stderr, "pagewise_stats not found: libpagewise.so is not preloaded\n");
        abort();
    }
    f(out);
}

static inline void pw_purge(void) {
    static void (*f)(void);
    if (!f) f = (void (*)(void))dlsym(RTLD_DEFAULT, "pagewise_purge");
    if (!f) abort();
    f();
}

/* PAGEWISE_THRESHOLD as the test runs it (the library's threshold is checked against it). */
static inline size_t expected_threshold(void) {
    const char *t = getenv("PAGEWISE_THRESHOLD");
    return t ? (size_t)strtoull(t, NULL, 10) : 256 * 1024;
}

/* A byte pattern that depends on the block's identity and the offset. */
static inline unsigned char pattern(uintptr_t seed, size_t i) {
    return (unsigned char)(seed * 31 + i * 7 + (i >> 12));
}

static inline void fill(void *p, size_t n, uintptr_t seed) {
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++) c[i] = pattern(seed, i);
}

/* Whether the first n bytes still hold what fill() wrote: every byte of short blocks, a few
 * per page (and the last) of long ones. */
static inline int intact(const void *p, size_t n, uintptr_t seed) {
    const unsigned char *c = p;
    size_t step = n > 65536 ? 509 : 1;
    for (size_t i = 0; i < n; i += step)
        if (c[i] != pattern(seed, i)) return 0;
    return n == 0 || c[n - 1] == pattern(seed, n - 1);
}

#endif
