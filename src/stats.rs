//! [`Stats`]: what an allocator did, as cheap relaxed counters and a `Copy` snapshot.
//!
//! Counters are updated with `Relaxed` atomics on the large-block path only (small blocks go to
//! the inner allocator and are not counted), so a snapshot is consistent per field, not across
//! fields.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::cache::CachedBytes;

macro_rules! counters {
    (
        $( $(#[$doc:meta])* $field:ident, )*
        @from_the_cache { $( $(#[$cdoc:meta])* $cfield:ident, )* }
        $( $(#[$doc2:meta])* $field2:ident, )*
    ) => {
        /// The live counters of one allocator (the cache keeps its own byte counts).
        #[derive(Debug)]
        pub(crate) struct Counters {
            $( pub(crate) $field: AtomicU64, )*
            $( pub(crate) $field2: AtomicU64, )*
        }

        impl Counters {
            pub(crate) const fn new() -> Counters {
                Counters {
                    $( $field: AtomicU64::new(0), )*
                    $( $field2: AtomicU64::new(0), )*
                }
            }

            /// The counters, with the cache's byte counts as the cache gives them.
            pub(crate) fn snapshot(&self, cache: CachedBytes) -> Stats {
                let [$( $cfield, )*] = [cache.total, cache.resident, cache.lazy];
                Stats {
                    $( $field: self.$field.load(Relaxed), )*
                    $( $cfield, )*
                    $( $field2: self.$field2.load(Relaxed), )*
                }
            }

            /// Zeroes every counter (a new owner of the engine, see `Engine::adopt`).
            pub(crate) fn reset(&self) {
                $( self.$field.store(0, Relaxed); )*
                $( self.$field2.store(0, Relaxed); )*
            }
        }

        /// A snapshot of an allocator's counters (see [`PageAlloc::stats`](crate::PageAlloc::stats)).
        /// All byte figures are of mapped ranges, rounded to pages.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub struct Stats {
            $( $(#[$doc])* pub $field: u64, )*
            $( $(#[$cdoc])* pub $cfield: u64, )*
            $( $(#[$doc2])* pub $field2: u64, )*
        }

        impl fmt::Display for Stats {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let fields = [
                    $( (stringify!($field), self.$field), )*
                    $( (stringify!($cfield), self.$cfield), )*
                    $( (stringify!($field2), self.$field2), )*
                ];
                for (i, (name, value)) in fields.into_iter().enumerate() {
                    let sep = if i == 0 { "" } else { " " };
                    write!(f, "{sep}{name}={value}")?;
                }
                Ok(())
            }
        }
    };
}

counters! {
    /// Large blocks handed out (by `alloc`, `alloc_zeroed`, or a `realloc` that crossed the
    /// threshold upwards).
    large_allocs,
    /// Large blocks freed.
    large_frees,
    /// `realloc` calls on large blocks.
    reallocs,
    /// Reallocs that moved pages with `mremap` instead of copying.
    mremaps,
    /// Reallocs that copied into a new block: the block needs more than page alignment, spans
    /// two mappings, or `mremap` ran out of memory. A realloc that failed is not counted.
    copied_reallocs,
    /// Reallocs served without moving: same rounded size, a shrink, or growth into the cached
    /// range right after the block.
    in_place_reallocs,
    /// Large allocations served from the cache.
    cache_hits,
    /// Large allocations served by growing a smaller cached range with `mremap` (its pages
    /// serve the head of the block, only the tail is new).
    grown_hits,
    /// Cached ranges whose pages were moved (`mremap(MREMAP_FIXED)`) into a block grown from
    /// another cached range, instead of fresh pages.
    moved_ranges,
    /// Moves of cached ranges into a block that the kernel refused (near `vm.max_map_count`, or
    /// a source it cannot move). The range is unmapped, not cached again, and the block is
    /// served all the same (issue #20).
    failed_moves,
    /// Large allocations that needed a fresh mapping (and got one).
    cache_misses,
    /// Large allocations served by the inner allocator because the kernel refused a mapping
    /// even after the cache was given back (`vm.max_map_count` reached, or out of memory):
    /// glibc's heap, with `System`, still grows where `mmap` cannot. Such blocks are freed and
    /// resized by the inner allocator; see `PageAlloc`.
    fallback_allocs,
    /// Bytes in large blocks currently allocated.
    live_bytes,
    @from_the_cache {
        /// Bytes of freed ranges held in the cache (resident, lazily freed or already dropped).
        cached_bytes,
        /// Of `cached_bytes`, those whose pages are resident (retained).
        cached_resident_bytes,
        /// Of `cached_bytes`, those marked `MADV_FREE` (resident until the kernel reclaims them).
        cached_lazy_bytes,
    }
    /// Bytes given back to the kernel for real (`munmap`, or `MADV_DONTNEED` of resident or lazily
    /// freed pages).
    released_bytes,
    /// `mmap` calls.
    mmap_calls,
    /// `munmap` calls.
    munmap_calls,
    /// `madvise` calls (release advice and `MADV_HUGEPAGE`; populate is counted apart).
    madvise_calls,
    /// Populate calls (`MADV_POPULATE_WRITE` or `MAP_POPULATE`).
    populate_calls,
    /// Cached ranges released because they sat idle past the decay time.
    decay_releases,
    /// Cached ranges released because memory is short: the pressure signal was on, or the kernel
    /// refused a new mapping (the cache is given back and the mapping tried again).
    pressure_releases,
    /// Cached ranges released by `purge()` or `reconfigure()`.
    purge_releases,
    /// Cached ranges released because a miss was about to fault in fresh pages: the kernel hands
    /// their pages to the new mapping, so the process does not hold both.
    recycle_releases,
    /// 1 while the pressure signal is above its threshold, else 0.
    pressure_on,
    /// The soft limit in force now, in bytes; 0 for none (`PAGEWISE_LIMIT`). It follows the
    /// cgroup's limit as that changes (read again when the snapshot is taken, if the last
    /// reading is older than 25 ms).
    limit_bytes,
    /// Cached ranges of this allocator released to stay under the soft limit. The limit is the
    /// process's: whichever allocator finds usage over it, the oldest cached ranges of every
    /// allocator go first, each counted here by the allocator that held it.
    limit_releases,
    /// Cached ranges released to keep the cache's resident bytes within its budget, which
    /// follows the live large bytes: at most a tenth over their recent peak, or 8 MiB.
    budget_releases,
    /// Compare-and-swaps on cache slots lost to another thread, in every allocator of the process
    /// together (read when the snapshot is taken): the contention on the cache's slots. A lost
    /// hold is never waited for: the slot is skipped or the scan made again.
    lost_holds,
    /// 1 when this allocator runs on the shared overflow engine, else 0: it was first used while
    /// 64 other allocators with a cache were alive (see [`PageAlloc`](crate::PageAlloc)). It then
    /// has no cache, unmaps at free, does not prefetch, ignores `reconfigure`, and its counters
    /// are those of every allocator on the overflow engine together.
    overflow_engine,
}

impl Counters {
    #[inline]
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// Subtracts from a gauge (live or cached bytes). A gauge never goes below zero: every
    /// subtraction matches an earlier addition of the same amount.
    #[inline]
    pub(crate) fn sub(c: &AtomicU64, n: u64) {
        let before = c.fetch_sub(n, Relaxed);
        debug_assert!(before >= n, "gauge underflow: {before} - {n}");
    }

    /// A large block served by the inner allocator (see `fallback`).
    pub(crate) fn note_fallback(&self) {
        Counters::add(&self.fallback_allocs, 1);
        Counters::add(&self.large_allocs, 1);
    }

    /// A fallback block freed.
    pub(crate) fn note_fallback_free(&self) {
        Counters::add(&self.large_frees, 1);
    }

    /// A realloc that copied into a new block because the engine could not resize it (the
    /// engine counts its own reallocs; `fallback_block`: one the engine never saw).
    pub(crate) fn note_copied_realloc(&self, fallback_block: bool) {
        if fallback_block {
            Counters::add(&self.reallocs, 1);
        }
        Counters::add(&self.copied_reallocs, 1);
    }
}
