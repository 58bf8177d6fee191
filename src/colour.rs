//! Where in its first page a large block starts: its colour (issue #20).
//!
//! The engine's blocks are mappings, so a block left at the start of its first page begins on a
//! page boundary, and so does every page-strided offset in it: a program that writes one byte
//! per page of a fresh buffer writes each page's first cache line. On this machine (2-vCPU VM)
//! such writes cost about twice as much when they fall within 64 bytes of a page boundary, and
//! `mixed_threads8` (8 threads, each writing one byte per page of 4–5 MiB zeroed buffers) took
//! 6% longer for it (`worker_pagewise mixed_threads8 5M --touch-offset 2224` against 0; README,
//! "Many threads"). glibc's heap puts a block wherever its chunk lies,
//! jemalloc places large blocks at a random cache line of their first page
//! ([`opt.cache_oblivious`](https://jemalloc.net/jemalloc.3.html), one extra page per block).
//!
//! pagewise colours only within the slack a block already has (its length rounded up to a page,
//! less its size), so a coloured block costs no page and no byte of address space: a block
//! whose size is a multiple of a page (a `Vec` doubled to 4 MiB) stays page-aligned.
//!
//! The colour is recoverable from the pointer alone, which `dealloc` and `realloc` need: it is
//! the pointer's offset in its page, below a page by construction. [`crate::fallback`]'s blocks
//! sit at [`crate::fallback::offset`] past a page boundary, and no colour equals it, so the
//! ownership test stays one comparison.

use crate::fallback;
use crate::os::PAGE;

/// The lowest colour: the first cache lines of a page are the slow ones (see the module
/// documentation), and colours below it would meet the fallback's offsets.
const LOW: usize = 128;

/// The highest colour: the last cache line of a page is slow too.
const HIGH: usize = PAGE - 128;

/// The colour of a block of `size` bytes at `align` (a power of two): a multiple of the
/// alignment and of a cache line in `LOW..=HIGH` that fits in the block's slack and is not the
/// fallback's offset, or 0 where none does (alignment of a page or more, or too little slack).
///
/// Chosen from the size, so that blocks of different sizes spread over the page's cache lines
/// while a block freed and asked for again at the same size keeps its address.
#[inline]
pub(crate) fn pick(size: usize, align: usize) -> usize {
    if align >= PAGE {
        return 0;
    }
    let step = if align < 64 { 64 } else { align };
    // The fallback's blocks sit at max(align, 16): below LOW for step 64, `step` itself above.
    let low = if step == 64 { LOW } else { (2 * step).max(LOW) };
    let slack = size.wrapping_neg() & (PAGE - 1);
    let high = slack.min(HIGH);
    if high < low {
        return 0;
    }
    let choices = (high - low) / step + 1;
    // Fibonacci hashing of the size: neighbouring sizes land on distant colours.
    let h = (size as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    let c = low + step * (h as usize % choices);
    debug_assert!(c != fallback::offset(align) && c % step == 0 && c <= slack);
    c
}

/// The colour of a block of the engine, from its pointer.
#[inline]
pub(crate) fn of(p: *mut u8) -> usize {
    p as usize & (PAGE - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_fit_the_slack_keep_the_alignment_and_avoid_the_fallback() {
        let mut seen = std::collections::BTreeSet::new();
        for align in [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048] {
            for size in (256 << 10..(256 << 10) + 3 * PAGE).step_by(8) {
                let c = pick(size, align);
                if c == 0 {
                    continue;
                }
                assert!((LOW..=HIGH).contains(&c), "size {size} align {align}: {c}");
                assert_eq!(c % align.max(64), 0, "size {size} align {align}: {c}");
                let pages = size.div_ceil(PAGE);
                assert_eq!((size + c).div_ceil(PAGE), pages, "no page added");
                assert_ne!(c, fallback::offset(align));
                seen.insert(c);
            }
        }
        // Sizes spread over the page: nine in ten of the allowed cache lines are used.
        let lines = (HIGH - LOW) / 64 + 1;
        assert!(
            seen.len() * 10 >= lines * 9,
            "{} of {lines}: {seen:?}",
            seen.len()
        );
    }

    #[test]
    fn no_colour_without_room() {
        assert_eq!(pick(4 << 20, 8), 0, "a multiple of a page has no slack");
        assert_eq!(pick((4 << 20) - 100, 8), 0, "100 bytes of slack: below LOW");
        assert_eq!(
            pick((4 << 20) - 1000, 2048),
            0,
            "2048: only the fallback's offset fits"
        );
        assert_eq!(pick((4 << 20) - 1000, PAGE), 0);
        assert_eq!(pick((4 << 20) - 1000, 1 << 21), 0);
        assert_ne!(pick((4 << 20) - 1000, 8), 0);
    }
}
