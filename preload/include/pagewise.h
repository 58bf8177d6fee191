/*
 * pagewise.h: the extra functions of libpagewise.so, pagewise's malloc for any program
 * (LD_PRELOAD=target/release/libpagewise.so prog). The library also exports malloc, free, calloc,
 * realloc, reallocarray, posix_memalign, aligned_alloc, memalign, valloc, pvalloc and
 * malloc_usable_size with their C and glibc contracts; requests below PAGEWISE_THRESHOLD (256 KiB
 * by default) go to glibc's malloc, larger ones are pagewise's own mappings.
 *
 * A program that may run without the library can look the functions up at run time:
 *     void (*stats)(struct pagewise_stats *) = dlsym(RTLD_DEFAULT, "pagewise_stats");
 */
#ifndef PAGEWISE_H
#define PAGEWISE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The counters of pagewise's large blocks, as pagewise::Stats in Rust (see its documentation for
 * each field; byte counts are of mapped ranges, rounded to pages), plus the threshold.
 */
struct pagewise_stats {
    uint64_t large_allocs;          /* large blocks handed out by pagewise */
    uint64_t large_frees;           /* large blocks freed */
    uint64_t reallocs;              /* realloc calls on large blocks */
    uint64_t mremaps;               /* of those, moved with mremap instead of copied */
    uint64_t copied_reallocs;       /* of those, copied into a new block */
    uint64_t in_place_reallocs;     /* of those, served without moving */
    uint64_t cache_hits;            /* large allocations served from the cache */
    uint64_t grown_hits;            /* ... by growing a smaller cached range */
    uint64_t moved_ranges;          /* cached ranges whose pages were moved into a new block */
    uint64_t cache_misses;          /* large allocations that needed a fresh mapping */
    uint64_t fallback_allocs;       /* large requests glibc served: the kernel refused a mapping */
    uint64_t live_bytes;            /* bytes in live large blocks */
    uint64_t cached_bytes;          /* bytes of freed ranges held in the cache */
    uint64_t cached_resident_bytes; /* of those, resident */
    uint64_t cached_lazy_bytes;     /* of those, MADV_FREE'd */
    uint64_t released_bytes;        /* bytes given back to the kernel */
    uint64_t mmap_calls;
    uint64_t munmap_calls;
    uint64_t madvise_calls;
    uint64_t populate_calls;
    uint64_t decay_releases;        /* cached ranges released after PAGEWISE_DECAY_MS idle */
    uint64_t pressure_releases;     /* ... because memory was short */
    uint64_t purge_releases;        /* ... by pagewise_purge() */
    uint64_t recycle_releases;      /* ... just before a miss faulted fresh pages in */
    uint64_t pressure_on;           /* 1 while the pressure signal is on */
    uint64_t limit_bytes;           /* the soft limit in force (PAGEWISE_LIMIT), 0 for none */
    uint64_t limit_releases;        /* cached ranges released to stay under it */
    uint64_t budget_releases;       /* cached ranges released to keep the cache in its budget */
    uint64_t threshold;             /* requests of this many bytes and more are pagewise's */
};

/* Fills *out with the counters now. */
void pagewise_stats(struct pagewise_stats *out);

/* Gives every cached range back to the kernel now (munmap), so that RSS falls at once. */
void pagewise_purge(void);

#ifdef __cplusplus
}
#endif

#endif /* PAGEWISE_H */
