/* Allocation before main: from a constructor that runs before the program's own, and from a
 * library loaded with dlopen at run time (the loader's own allocations), blocks freed later in
 * main and in a destructor. Run preloaded by tests/c_abi.rs. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>

#include "common.h"

static unsigned char *early_big, *early_small;
static size_t early_n;

__attribute__((constructor(101))) static void early(void) {
    early_n = 4 * expected_threshold();
    early_big = malloc(early_n);
    early_small = calloc(10, 10);
    CHECK(early_big && early_small);
    fill(early_big, early_n, 77);
}

__attribute__((destructor)) static void late(void) {
    /* After main returned: the library still serves and frees blocks. */
    void *p = malloc(early_n);
    CHECK(p);
    free(p);
}

int main(void) {
    CHECK(intact(early_big, early_n, 77));
    for (int i = 0; i < 100; i++) CHECK(early_small[i] == 0);
    struct pagewise_stats s;
    pw_stats(&s);
    CHECK(s.threshold == expected_threshold());
    /* The constructor's block was pagewise's: the engine had started by then. */
    CHECK(s.large_allocs >= 1 && malloc_usable_size(early_big) == early_n);
    early_big = realloc(early_big, 2 * early_n);
    CHECK(early_big && intact(early_big, early_n, 77));
    free(early_big);
    free(early_small);
    /* The loader allocates through the library too (dlopen's link map, TLS). */
    void *h = dlopen("libm.so.6", RTLD_NOW);
    CHECK(h);
    CHECK(dlsym(h, "cos"));
    CHECK(dlclose(h) == 0);
    printf("startup: ok\n");
    return 0;
}
